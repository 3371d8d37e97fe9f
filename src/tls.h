/*
 * tls: TLS termination for the traffic listeners (OpenSSL 3, used through
 * bufferevent_openssl by conn.c).
 *
 * A struct tls_ctx is built from a config's tls section when the config
 * is loaded, and freed with it. It wraps one SSL_CTX holding every
 * certificate: the first is the context's own (the default), the others
 * are chosen per handshake from the client's SNI name by a certificate
 * callback (exact name, then a "*." wildcard matching one label, else the
 * default). The certificate table hangs off the SSL_CTX (ex_data), so it
 * lives exactly as long as OpenSSL's references to the SSL_CTX: a reload
 * frees the old tls_ctx while connections made under it keep their SSL
 * objects, and the SSL_CTX with its certificates goes with the last one.
 *
 * Session ticket keys are process-wide, so tickets survive a reload: a
 * current key that issues tickets and a previous one still accepted (its
 * tickets renewed), rotated by tls_tickets_rotate() from the main thread's
 * timer. Workers read them under a mutex in OpenSSL's ticket callback.
 *
 * ALPN: "http/1.1" is selected when offered; a client offering no protocol
 * we speak completes the handshake without ALPN (as nginx does).
 *
 * Threads: tls_ctx_new() and tls_ctx_free() on the main thread (file
 * I/O); tls_ctx_ssl_new() and the callbacks on any worker thread.
 */
#ifndef TAILCACHE_TLS_H
#define TAILCACHE_TLS_H

#include <stddef.h>

struct config_tls;
struct ssl_st;
struct tls_ctx;

/*
 * Reports one error while building a context: cert is the index in
 * tls.certificates with key "cert" or "key", or SIZE_MAX with key the
 * tls key at fault ("ciphers", "ciphersuites"); msg names the file.
 */
typedef void (*tls_error_fn)(void *arg, size_t cert, const char *key, const char *msg);

/*
 * Builds the server context for t (t->ncerts >= 1). Returns a new context,
 * or NULL after calling err once per problem found (every certificate is
 * tried, so one pass reports them all).
 */
struct tls_ctx *tls_ctx_new(const struct config_tls *t, tls_error_fn err, void *arg);

/* Drops the config's hold on the context and clears *tp; accepts NULL. */
void tls_ctx_free(struct tls_ctx **tp);

/* A new SSL object for an accepted connection, or NULL (out of memory).
 * The caller owns it (bufferevent_openssl frees it with the bufferevent). */
struct ssl_st *tls_ctx_ssl_new(struct tls_ctx *t);

/* Main thread: a new ticket key becomes current; the current one becomes
 * the previous, accepted one more period; the previous one is forgotten. */
void tls_tickets_rotate(void);

#endif
