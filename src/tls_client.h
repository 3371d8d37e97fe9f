/*
 * tls_client: the client side of TLS to upstream servers. One tls_client
 * per upstream pool with TLS on, built from upstreams.NAME.tls when the
 * configuration is loaded and freed with it; it wraps an SSL_CTX (trusted
 * CAs, client certificate, minimum version) that every worker shares.
 *
 * A connection's SSL comes from tls_client_ssl_new(): SNI and the name to
 * verify are set, a saved session is offered for resumption, and the
 * caller's hooks hear about new sessions (to save them for the next
 * connection) and about the end of the handshake. The hooks run on the
 * thread that drives the SSL, inside OpenSSL calls: they must not free it.
 *
 * tls_client_new() runs on the main thread (file I/O); the built
 * tls_client is read-only and may be used from any thread.
 */
#ifndef TAILCACHE_TLS_CLIENT_H
#define TAILCACHE_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct config_upstream_tls;
struct ssl_st;         /* SSL */
struct ssl_session_st; /* SSL_SESSION */
struct tls_client;

/* Owned by the caller, and must outlive the SSL or be detached first. */
struct tls_client_hooks {
    /* A session the server offers for resumption: a new reference, handed
     * over (free it with tls_client_session_free()). May be NULL. */
    void (*on_session)(void *arg, struct ssl_session_st *sess);
    /* The handshake finished; resumed: the offered session was reused.
     * TLS 1.3 may report it again after post-handshake messages. */
    void (*on_handshake)(void *arg, bool resumed);
    void *arg;
};

/*
 * Builds the context for t (t->enabled). Returns a new tls_client, or NULL
 * with *bad_key set to the key at fault ("ca_file", "cert", "key",
 * "min_version") and err holding what is wrong, without the key.
 */
struct tls_client *tls_client_new(const struct config_upstream_tls *t, const char **bad_key,
                                  char *err, size_t errlen);

/* Frees tc and clears *tcp; accepts NULL. Connections made from it keep
 * their own reference to the context. */
void tls_client_free(struct tls_client **tcp);

/*
 * A new client SSL for one connection: SNI and name check per the config,
 * resume offered when not NULL (borrowed), hooks attached when not NULL.
 * Returns NULL when OpenSSL cannot allocate.
 */
struct ssl_st *tls_client_ssl_new(const struct tls_client *tc, struct ssl_session_st *resume,
                                  struct tls_client_hooks *hooks);

/*
 * Before ssl is freed: forgets its hooks (later OpenSSL events call
 * nothing) and records the connection as shut down, so that OpenSSL does
 * not mark its session unresumable: closing a connection is not a
 * failure. Accepts NULL.
 */
void tls_client_ssl_detach(struct ssl_st *ssl);

/*
 * Why the handshake on ssl failed, into buf ("certificate verify failed:
 * hostname mismatch", or OpenSSL's last error given as ssl_err, 0 for
 * none). Returns buf. verify_failed tells a verification failure apart.
 */
const char *tls_client_error(struct ssl_st *ssl, unsigned long ssl_err, bool *verify_failed,
                             char *buf, size_t len);

/* Drops a session reference; accepts NULL and clears *sessp. */
void tls_client_session_free(struct ssl_session_st **sessp);

#endif
