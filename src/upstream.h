/*
 * upstream: per-worker pools of connections to the servers of one
 * configured upstream: server choice (round robin, skipping servers in a
 * passive-health cooldown), new connections, and idle keep-alive
 * connections kept for reuse.
 *
 * A pool belongs to one worker generation (see worker.h) and is used only
 * on that worker's thread. The pool owns its idle connections; a
 * connection handed out by upstream_take_idle() or upstream_connect() is
 * owned by the caller until upstream_release(). A retired pool (config
 * reloaded) closes idle connections and every connection released to it.
 *
 * A pool with TLS (upstreams.NAME.tls) wraps each new connection in an
 * OpenSSL bufferevent: BEV_EVENT_CONNECTED comes after the handshake, and
 * a failed handshake (an untrusted or wrong-name certificate) is a
 * connect error, logged with its reason when the connection is released.
 * The pool keeps the last TLS session of each server for resumption.
 */
#ifndef TAILCACHE_UPSTREAM_H
#define TAILCACHE_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "tls_client.h"

struct bufferevent;
struct event_base;
struct config_upstream;
struct stats;
struct upstream_pool;

struct upstream_conn {
    struct bufferevent *bev;
    struct upstream_pool *pool;
    unsigned server;
    bool reused;    /* handed out from the idle list */
    bool connected; /* the TCP connection is established (TLS: handshake done) */
    bool tls;       /* bev is an OpenSSL bufferevent */
    bool tls_done;  /* its handshake finished */
    struct tls_client_hooks tls_hooks;
    TAILQ_ENTRY(upstream_conn) link;
};

/* A new pool for cfg on base; never NULL (aborts on allocation failure). */
struct upstream_pool *upstream_pool_new(struct event_base *base, const struct config_upstream *cfg,
                                        struct stats *st);

/* Closes idle connections; later releases close too. */
void upstream_pool_retire(struct upstream_pool *p);

/* Frees a pool whose connections have all been released; accepts NULL. */
void upstream_pool_free(struct upstream_pool **p);

/* The next server to use, or -1 when every server is cooling down. */
int upstream_pick(struct upstream_pool *p, uint64_t now_ms);

/* An idle connection to server (new reference for the caller), or NULL. */
struct upstream_conn *upstream_take_idle(struct upstream_pool *p, unsigned server);

/* Starts a new connection to server; NULL when the socket cannot be made. */
struct upstream_conn *upstream_connect(struct upstream_pool *p, unsigned server);

/*
 * Gives a connection back: kept idle when reusable, the pool is live and
 * below its keep-alive limit, else closed. Clears *ucp; accepts NULL.
 */
void upstream_release(struct upstream_conn **ucp, bool reusable);

/* Records the outcome of an exchange with server for passive health. */
void upstream_report(struct upstream_pool *p, unsigned server, bool ok, uint64_t now_ms);

/* The configuration the pool was built from (borrowed). */
const struct config_upstream *upstream_pool_config(const struct upstream_pool *p);

/* "HOST:PORT" of server, for logs. */
const char *upstream_server_name(const struct upstream_pool *p, unsigned server);

#endif
