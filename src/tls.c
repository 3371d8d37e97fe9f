/*
 * tls: the server SSL_CTX, SNI certificate choice, ALPN and the
 * process-wide session ticket keys. See tls.h for lifetimes and threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "tls.h"
#include "util.h"

/* One certificate of the table: the leaf, its chain, its key and names. */
struct tls_cert {
    X509 *x509;
    STACK_OF(X509) * chain;
    EVP_PKEY *pkey;
    char **names; /* lower case; "*.example.com" for a wildcard */
    size_t nnames;
};

/* Hangs off the SSL_CTX as ex_data; freed when the SSL_CTX is. */
struct tls_table {
    struct tls_cert *certs; /* [0] is the default, also the SSL_CTX's own */
    size_t ncerts;
};

struct tls_ctx {
    SSL_CTX *ssl_ctx; /* one reference; SSL objects hold their own */
};

struct tls_ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static pthread_mutex_t tls_tickets_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tls_ticket_key tls_tickets[2]; /* [0] current, [1] previous */
static bool tls_tickets_ready;
static pthread_once_t tls_index_once = PTHREAD_ONCE_INIT;
static int tls_table_index = -1;

static void
tls_table_free(struct tls_table *tb)
{
    if (tb == NULL)
        return;
    for (size_t i = 0; i < tb->ncerts; i++) {
        struct tls_cert *c = &tb->certs[i];
        X509_free(c->x509);
        sk_X509_pop_free(c->chain, X509_free);
        EVP_PKEY_free(c->pkey);
        for (size_t j = 0; j < c->nnames; j++)
            free(c->names[j]);
        free(c->names);
    }
    free(tb->certs);
    free(tb);
}

static void
tls_table_on_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    tls_table_free(ptr);
}

static void
tls_index_init(void)
{
    tls_table_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_table_on_free);
    if (tls_table_index < 0)
        fatal("tls: cannot allocate an SSL_CTX ex_data index");
}

/* ------------------------------------------------------------------------ */
/* Session ticket keys                                                       */

static void
tls_ticket_key_fill(struct tls_ticket_key *k)
{
    if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
        RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
        fatal("tls: no random bytes for a session ticket key");
}

/* Caller holds tls_tickets_mu. */
static void
tls_tickets_init_locked(void)
{
    if (tls_tickets_ready)
        return;
    tls_ticket_key_fill(&tls_tickets[0]);
    tls_ticket_key_fill(&tls_tickets[1]); /* never issued: only a name no ticket carries */
    tls_tickets_ready = true;
}

void
tls_tickets_rotate(void)
{
    struct tls_ticket_key k;

    tls_ticket_key_fill(&k);
    pthread_mutex_lock(&tls_tickets_mu);
    tls_tickets_init_locked();
    tls_tickets[1] = tls_tickets[0];
    tls_tickets[0] = k;
    pthread_mutex_unlock(&tls_tickets_mu);
    OPENSSL_cleanse(&k, sizeof(k));
}

/*
 * OpenSSL's ticket callback (any worker thread). enc: pick the current key
 * and fill name, iv and both contexts; returns 1. Decrypt: 1 for the
 * current key, 2 for the previous (valid, but issue a fresh ticket), 0 for
 * an unknown name (full handshake), -1 on error.
 */
static int
tls_on_ticket(SSL *ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
              EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tls_ticket_key k;
    int rc = 0;
    OSSL_PARAM params[3];

    (void)ssl;
    pthread_mutex_lock(&tls_tickets_mu);
    tls_tickets_init_locked();
    if (enc) {
        k = tls_tickets[0];
        rc = 1;
    } else if (memcmp(name, tls_tickets[0].name, 16) == 0) {
        k = tls_tickets[0];
        rc = 1;
    } else if (memcmp(name, tls_tickets[1].name, 16) == 0) {
        k = tls_tickets[1];
        rc = 2;
    }
    pthread_mutex_unlock(&tls_tickets_mu);
    if (rc == 0)
        return 0;

    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1)
            rc = -1;
    } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) {
        rc = -1;
    }
    if (rc > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1)
        rc = -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Handshake callbacks                                                       */

/* ALPN: http/1.1 when offered; otherwise no ALPN at all (not a failure). */
static int
tls_on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;

    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static bool
tls_cert_has(const struct tls_cert *c, const char *name)
{
    for (size_t i = 0; i < c->nnames; i++)
        if (strcasecmp(c->names[i], name) == 0)
            return true;
    return false;
}

/* The certificate for an SNI name: exact, then "*.rest" for "label.rest". */
static const struct tls_cert *
tls_table_pick(const struct tls_table *tb, const char *name)
{
    const char *dot = name != NULL ? strchr(name, '.') : NULL;
    char wild[256];

    if (name == NULL || name[0] == '\0')
        return &tb->certs[0];
    for (size_t i = 0; i < tb->ncerts; i++)
        if (tls_cert_has(&tb->certs[i], name))
            return &tb->certs[i];
    if (dot != NULL && dot != name && dot[1] != '\0' &&
        (size_t)snprintf(wild, sizeof(wild), "*%s", dot) < sizeof(wild)) {
        for (size_t i = 0; i < tb->ncerts; i++)
            if (tls_cert_has(&tb->certs[i], wild))
                return &tb->certs[i];
    }
    return &tb->certs[0];
}

/* After the ClientHello: installs the certificate the SNI name asks for. */
static int
tls_on_cert(SSL *ssl, void *arg)
{
    const struct tls_table *tb = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_table_index);
    const struct tls_cert *c;

    (void)arg;
    if (tb == NULL || tb->ncerts <= 1)
        return 1;
    c = tls_table_pick(tb, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (c == &tb->certs[0])
        return 1; /* the context's own */
    return SSL_use_cert_and_key(ssl, c->x509, c->pkey, c->chain, 1) == 1 ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

/* The last OpenSSL error's reason, for messages; clears the queue. */
static const char *
tls_ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r != NULL ? r : "unknown OpenSSL error";
}

static void
tls_cert_add_name(struct tls_cert *c, const char *name, size_t len)
{
    char *s;

    if (len == 0 || memchr(name, '\0', len) != NULL)
        return; /* an embedded NUL: never a name we can match */
    s = util_xcalloc(len + 1, 1);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    c->names = realloc(c->names, (c->nnames + 1) * sizeof(*c->names));
    if (c->names == NULL)
        abort();
    c->names[c->nnames++] = s;
}

/* subjectAltName DNS entries, or the CN when there are none. */
static void
tls_cert_names(struct tls_cert *c)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(c->x509, NID_subject_alt_name, NULL, NULL);
    char cn[256];
    int n;

    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS)
            tls_cert_add_name(c, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                              (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (c->nnames > 0)
        return;
    n = X509_NAME_get_text_by_NID(X509_get_subject_name(c->x509), NID_commonName, cn, sizeof(cn));
    if (n > 0)
        tls_cert_add_name(c, cn, (size_t)n);
}

/* Loads cert i's files; returns 0, or -1 after reporting through err. */
static int
tls_cert_load(struct tls_cert *c, const struct config_tls_cert *cc, size_t i, tls_error_fn err,
              void *arg)
{
    char msg[512];
    FILE *f;
    X509 *extra;

    f = fopen(cc->cert, "r");
    if (f == NULL) {
        snprintf(msg, sizeof(msg), "cannot open %s: %s", cc->cert, strerror(errno));
        err(arg, i, "cert", msg);
        return -1;
    }
    c->x509 = PEM_read_X509(f, NULL, NULL, NULL);
    if (c->x509 == NULL) {
        snprintf(msg, sizeof(msg), "%s: no PEM certificate (%s)", cc->cert, tls_ssl_reason());
        fclose(f);
        err(arg, i, "cert", msg);
        return -1;
    }
    c->chain = sk_X509_new_null();
    if (c->chain == NULL)
        abort();
    while ((extra = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
        if (sk_X509_push(c->chain, extra) <= 0)
            abort();
    ERR_clear_error(); /* the end of the file reads as "no start line" */
    fclose(f);

    f = fopen(cc->key, "r");
    if (f == NULL) {
        snprintf(msg, sizeof(msg), "cannot open %s: %s", cc->key, strerror(errno));
        err(arg, i, "key", msg);
        return -1;
    }
    c->pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (c->pkey == NULL) {
        snprintf(msg, sizeof(msg), "%s: no PEM private key (%s)", cc->key, tls_ssl_reason());
        err(arg, i, "key", msg);
        return -1;
    }
    if (X509_check_private_key(c->x509, c->pkey) != 1) {
        ERR_clear_error();
        snprintf(msg, sizeof(msg), "%s does not match the certificate in %s", cc->key, cc->cert);
        err(arg, i, "key", msg);
        return -1;
    }
    tls_cert_names(c);
    return 0;
}

struct tls_ctx *
tls_ctx_new(const struct config_tls *t, tls_error_fn err, void *arg)
{
    struct tls_table *tb = util_xcalloc(1, sizeof(*tb));
    struct tls_ctx *tc = NULL;
    SSL_CTX *ctx = NULL;
    char msg[512];
    bool ok = true;

    UTIL_ASSERT(t->ncerts >= 1);
    pthread_once(&tls_index_once, tls_index_init);
    pthread_mutex_lock(&tls_tickets_mu);
    tls_tickets_init_locked();
    pthread_mutex_unlock(&tls_tickets_mu);

    tb->certs = util_xcalloc(t->ncerts, sizeof(*tb->certs));
    tb->ncerts = t->ncerts;
    for (size_t i = 0; i < t->ncerts; i++)
        if (tls_cert_load(&tb->certs[i], &t->certs[i], i, err, arg) < 0)
            ok = false;

    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        fatal("tls: cannot create an SSL_CTX: %s", tls_ssl_reason());
    SSL_CTX_set_min_proto_version(ctx, t->min_version == CONFIG_TLS_1_3 ? TLS1_3_VERSION
                                                                        : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
        snprintf(msg, sizeof(msg), "\"%s\" selects no cipher (%s)", t->ciphers, tls_ssl_reason());
        err(arg, SIZE_MAX, "ciphers", msg);
        ok = false;
    }
    if (t->ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1) {
        snprintf(msg, sizeof(msg), "\"%s\" selects no cipher suite (%s)", t->ciphersuites,
                 tls_ssl_reason());
        err(arg, SIZE_MAX, "ciphersuites", msg);
        ok = false;
    }
    if (!ok)
        goto fail;

    /* Resumption is by ticket only: the keys are process-wide, so tickets
     * outlive a reload, where a per-SSL_CTX session cache would not (and
     * would be one more lock shared by the workers). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (t->session_tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_on_ticket);
    } else {
        /* No tickets and no cache: TLS 1.3 would still make and send two
         * stateful tickets per handshake that nothing can ever resume. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    SSL_CTX_set_alpn_select_cb(ctx, tls_on_alpn, NULL);
    SSL_CTX_set_cert_cb(ctx, tls_on_cert, NULL);
    if (SSL_CTX_use_cert_and_key(ctx, tb->certs[0].x509, tb->certs[0].pkey, tb->certs[0].chain,
                                 1) != 1) {
        snprintf(msg, sizeof(msg), "%s: OpenSSL refuses it (%s)", t->certs[0].cert,
                 tls_ssl_reason());
        err(arg, 0, "cert", msg);
        goto fail;
    }
    if (SSL_CTX_set_ex_data(ctx, tls_table_index, tb) != 1)
        abort();
    tb = NULL; /* the SSL_CTX owns it now */
    tc = util_xcalloc(1, sizeof(*tc));
    tc->ssl_ctx = ctx;
    return tc;

fail:
    SSL_CTX_free(ctx);
    tls_table_free(tb);
    ERR_clear_error();
    return NULL;
}

void
tls_ctx_free(struct tls_ctx **tp)
{
    struct tls_ctx *tc = *tp;

    if (tc == NULL)
        return;
    *tp = NULL;
    SSL_CTX_free(tc->ssl_ctx);
    free(tc);
}

struct ssl_st *
tls_ctx_ssl_new(struct tls_ctx *t)
{
    return SSL_new(t->ssl_ctx);
}
