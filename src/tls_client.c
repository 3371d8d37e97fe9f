/*
 * tls_client: see tls_client.h.
 *
 * Sessions are cached by the caller, not in the SSL_CTX: the context is
 * shared by every worker and a shared cache would need its lock on every
 * handshake. The context only hands each new session to the connection's
 * hooks (SSL_SESS_CACHE_CLIENT with no internal store), found through
 * one ex_data slot of the SSL.
 */
#include "tls_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"

struct tls_client {
    SSL_CTX *ctx;
    char *server_name; /* NULL: no SNI, no name check */
    bool verify;
};

static int tls_client_hooks_index = -1;
static pthread_once_t tls_client_once = PTHREAD_ONCE_INIT;

static void
tls_client_init_index(void)
{
    tls_client_hooks_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static struct tls_client_hooks *
tls_client_hooks_of(const SSL *ssl)
{
    return SSL_get_ex_data(ssl, tls_client_hooks_index);
}

static int
tls_client_on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_client_hooks *h = tls_client_hooks_of(ssl);

    if (h == NULL || h->on_session == NULL)
        return 0; /* not kept: OpenSSL drops its reference */
    h->on_session(h->arg, sess);
    return 1; /* the reference now belongs to the hook */
}

static void
tls_client_on_info(const SSL *ssl, int where, int ret)
{
    struct tls_client_hooks *h;

    if (!(where & SSL_CB_HANDSHAKE_DONE))
        return;
    h = tls_client_hooks_of(ssl);
    if (h != NULL && h->on_handshake != NULL)
        h->on_handshake(h->arg, SSL_session_reused(ssl) == 1);
}

/* Why the last OpenSSL call failed, or dflt when it left no error. */
static void
tls_client_ossl_reason(char *err, size_t errlen, const char *file, const char *dflt)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;

    snprintf(err, errlen, "cannot load \"%s\": %s", file, reason != NULL ? reason : dflt);
    ERR_clear_error();
}

/* A file that cannot be opened says why in the words of errno. */
static int
tls_client_readable(const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "rb");

    if (f == NULL) {
        snprintf(err, errlen, "cannot read \"%s\": %s", file, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

struct tls_client *
tls_client_new(const struct config_upstream_tls *t, const char **bad_key, char *err, size_t errlen)
{
    struct tls_client *tc = calloc(1, sizeof(*tc));
    int min = TLS1_2_VERSION;

    if (tc == NULL)
        abort();
    pthread_once(&tls_client_once, tls_client_init_index);
    ERR_clear_error();
    *bad_key = NULL;
    tc->ctx = SSL_CTX_new(TLS_client_method());
    if (tc->ctx == NULL)
        abort();
    tc->verify = t->verify;
    if (t->server_name != NULL)
        tc->server_name = strdup(t->server_name);

    if (t->min_version != NULL && strcmp(t->min_version, "1.3") == 0) {
        min = TLS1_3_VERSION;
    } else if (t->min_version != NULL && strcmp(t->min_version, "1.2") != 0) {
        *bad_key = "min_version";
        snprintf(err, errlen, "must be \"1.2\" or \"1.3\", got \"%s\"", t->min_version);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(tc->ctx, min);

    if (t->ca_file != NULL) {
        *bad_key = "ca_file";
        if (tls_client_readable(t->ca_file, err, errlen) < 0)
            goto fail;
        if (SSL_CTX_load_verify_locations(tc->ctx, t->ca_file, NULL) != 1) {
            tls_client_ossl_reason(err, errlen, t->ca_file, "no certificate found");
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(tc->ctx) != 1) {
        /* No system store is not fatal here: verification then fails
         * at connect time, with its reason in the log. */
        ERR_clear_error();
    }

    if (t->cert != NULL) {
        *bad_key = "cert";
        if (tls_client_readable(t->cert, err, errlen) < 0)
            goto fail;
        if (SSL_CTX_use_certificate_chain_file(tc->ctx, t->cert) != 1) {
            tls_client_ossl_reason(err, errlen, t->cert, "no certificate found");
            goto fail;
        }
    }
    if (t->key != NULL) {
        *bad_key = "key";
        if (tls_client_readable(t->key, err, errlen) < 0)
            goto fail;
        if (SSL_CTX_use_PrivateKey_file(tc->ctx, t->key, SSL_FILETYPE_PEM) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
                snprintf(err, errlen, "\"%s\" does not match the certificate in \"%s\"", t->key,
                         t->cert);
                ERR_clear_error();
            } else {
                tls_client_ossl_reason(err, errlen, t->key, "no private key found");
            }
            goto fail;
        }
        if (SSL_CTX_check_private_key(tc->ctx) != 1) {
            snprintf(err, errlen, "\"%s\" does not match the certificate in \"%s\"", t->key,
                     t->cert);
            ERR_clear_error();
            goto fail;
        }
    }
    *bad_key = NULL;

    SSL_CTX_set_verify(tc->ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(tc->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(tc->ctx, tls_client_on_new_session);
    SSL_CTX_set_info_callback(tc->ctx, tls_client_on_info);
    /* Partial writes and moving buffers: what a bufferevent does. */
    SSL_CTX_set_mode(tc->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return tc;

fail:
    tls_client_free(&tc);
    return NULL;
}

void
tls_client_free(struct tls_client **tcp)
{
    struct tls_client *tc = *tcp;

    if (tc == NULL)
        return;
    SSL_CTX_free(tc->ctx);
    free(tc->server_name);
    free(tc);
    *tcp = NULL;
}

SSL *
tls_client_ssl_new(const struct tls_client *tc, SSL_SESSION *resume, struct tls_client_hooks *hooks)
{
    SSL *ssl = SSL_new(tc->ctx);

    if (ssl == NULL)
        return NULL;
    if (tc->server_name != NULL) {
        if (SSL_set_tlsext_host_name(ssl, tc->server_name) != 1)
            goto fail;
        /* The name check: part of the chain verification, so only when
         * verifying (a failure is X509_V_ERR_HOSTNAME_MISMATCH). */
        if (tc->verify && SSL_set1_host(ssl, tc->server_name) != 1)
            goto fail;
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    if (resume != NULL)
        SSL_set_session(ssl, resume);
    if (hooks != NULL)
        SSL_set_ex_data(ssl, tls_client_hooks_index, hooks);
    return ssl;

fail:
    SSL_free(ssl);
    return NULL;
}

void
tls_client_ssl_detach(SSL *ssl)
{
    if (ssl == NULL)
        return;
    SSL_set_ex_data(ssl, tls_client_hooks_index, NULL);
    /* SSL_free() of a connection not shut down "invalidates" its current
     * session, which is the one the last ticket saved (nginx's
     * no_wait_shutdown does the same). A fatal alert has already made a
     * session unresumable on its own. */
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

const char *
tls_client_error(SSL *ssl, unsigned long ssl_err, bool *verify_failed, char *buf, size_t len)
{
    long v = SSL_get_verify_result(ssl);

    /* Without SSL_VERIFY_PEER the result is recorded but not acted on. */
    *verify_failed = (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) && v != X509_V_OK;
    if (*verify_failed) {
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (ssl_err != 0) {
        const char *reason = ERR_reason_error_string(ssl_err);
        if (reason != NULL)
            snprintf(buf, len, "%s", reason);
        else
            ERR_error_string_n(ssl_err, buf, len);
    } else {
        snprintf(buf, len, "connection closed during the handshake");
    }
    return buf;
}

void
tls_client_session_free(SSL_SESSION **sessp)
{
    if (*sessp == NULL)
        return;
    SSL_SESSION_free(*sessp);
    *sessp = NULL;
}
