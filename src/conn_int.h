/*
 * conn_int: the inside of a client connection, shared by the two files
 * that drive it: conn.c (connections, proxying to upstreams) and
 * conn_cache.c (cache lookups, delivery from cached objects, filling them).
 * Nothing else includes this header.
 */
#ifndef TAILCACHE_CONN_INT_H
#define TAILCACHE_CONN_INT_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "body.h"
#include "conn.h"
#include "deliver.h"
#include "http_parser.h"

struct bufferevent;
struct config;
struct config_route;
struct event;
struct obj;
struct tier_lookup;
struct upstream_conn;
struct upstream_pool;
struct worker;
struct worker_gen;

#define CONN_OUT_HIGH (256 * 1024)     /* stop filling an output above this */
#define CONN_OUT_LOW (64 * 1024)       /* resume filling below this */
#define CONN_IN_HIGH (256 * 1024)      /* libevent stops reading above this */
#define CONN_RESP_HEAD_MAX (64 * 1024) /* least header bytes accepted from upstreams */
#define CONN_IO_MAX (128 * 1024) /* one read()/write() at most; libevent's default is 16 KiB */

/* X(name): the connection's states. */
#define CONN_STATES(X)                                                                             \
    X(IDLE)    /* between requests: waiting for the first byte of a head */                        \
    X(HEAD)    /* part of a request head received */                                               \
    X(PROXY)   /* a request is in flight */                                                        \
    X(CLOSING) /* the last response is being flushed, then close */                                \
    X(DEAD)    /* closed, waiting to be freed */

enum conn_state {
#define CONN_STATE_ENUM(name) CONN_S_##name,
    CONN_STATES(CONN_STATE_ENUM)
#undef CONN_STATE_ENUM
};

/* One request/response exchange; zeroed between requests. */
struct conn_exchange {
    struct worker_gen *gen; /* reference held while the request is in flight */
    const struct config_route *route;
    struct upstream_pool *pool;
    struct upstream_conn *up;
    int server;
    unsigned attempts; /* upstream attempts made, for retries */

    /* Request body, client -> upstream. */
    struct body_relay req_body;
    bool req_done; /* the whole request body is in the upstream output */

    /* Response, upstream -> client. */
    struct http_response *resp; /* parsed head; points into the upstream input */
    int status;
    bool resp_started; /* head written to the client */
    bool resp_done;
    bool up_keep_alive;
    struct body_relay resp_body;
    bool got_byte; /* any response byte from the upstream */
    bool detached; /* the client is served from x->fill; the upstream only fills it */
    bool up_done;  /* detached: the upstream response is complete */
    bool up_eof;   /* an until-close body ended; the rest is buffered */

    /* Cache (conn_cache.c). */
    bool caching;           /* the route caches this request */
    bool cache_invalidate;  /* an unsafe method: invalidate its URIs on success */
    struct obj *fill;       /* the object this request fills, as leader */
    bool fill_linked;       /* fill is in the index (a refetch links it at its head) */
    struct deliver dlv;     /* delivering a cached object */
    bool delivering;        /* dlv has written the head */
    bool coalesced;         /* joined another request's fetch */
    bool via_vary;          /* the key is a variant key under a Vary marker */
    struct obj *stale;      /* the expired entry being revalidated / kept for stale-if-error */
    struct obj *refresh_of; /* internal: the entry whose refreshing flag this exchange holds */
    bool revalidating;      /* the upstream request carries our validators */
    bool stale_if_error;    /* x->stale may be served if the origin fails */
    char req_lines[512];    /* validators added to the upstream request */
    uint64_t vary_id;
    char vary_names[256];
    unsigned lookups;       /* cache lookups made (restarts after a failed fetch) */
    struct tier_lookup *l2; /* a shared-tier lookup in flight for x->fill */
    const char *l2_fwd;     /* the miss's Cache-Status fwd=, kept across the L2 lookup */
    const char *hit_tier;   /* the next hit was promoted from this tier ("redis"...) */
    int64_t fetch_start_us; /* wall clock: when the fetch filling x->fill started */
    uint64_t tier_us;       /* time spent in a shared-tier lookup */
    uint64_t t_tier_start;  /* µs, the tier lookup started */
    uint8_t miss_cause;     /* enum analytics_cause + 1; 0: none */
    bool proxy_error;       /* the response is an error of the proxy's own */
    bool waited_failed;     /* a fetch this request waited on failed or was not storable */
    bool coalesce_timeout;  /* gave up waiting on another fetch */
    int64_t stale_age;      /* seconds past freshness of the stale entry served */
    int64_t request_time;   /* wall-clock seconds when the fetch started */
    const char *outcome;    /* the access log's cache= field */
    char cache_lines[224];  /* Cache-Status (and Server-Timing) for a relayed response */

    uint64_t t_start;    /* µs, request head complete */
    uint64_t t_up_start; /* µs, upstream request started; 0 if none */
    uint64_t t_up_end;   /* µs, upstream response complete */
    uint64_t body_bytes; /* response body bytes sent to the client */
};

struct conn {
    uint64_t id;
    struct worker *w;
    struct bufferevent *bev;
    enum conn_state state;
    TAILQ_ENTRY(conn) link;
    char peer_ip[INET6_ADDRSTRLEN];
    char peer[INET6_ADDRSTRLEN + 8];

    char *head; /* copy of the current request head */
    size_t head_cap;
    size_t head_len;
    struct http_request req;
    struct http_response resp;

    struct conn_exchange x;
    uint64_t head_start; /* µs, first byte of the current head */

    char *key; /* the current request's cache key; the buffer is reused */
    size_t key_cap;
    size_t key_len;
    size_t primary_len; /* the primary part of key */
    uint64_t key_hash;
    struct event *ev_wake;     /* a cached object grew or changed state */
    struct event *ev_coalesce; /* coalesce_timeout */
    struct evbuffer *sink;     /* where a detached fill's relay drops its bytes */
    bool close_after;          /* close once the current response is out */
    bool internal;             /* a background refresh made by the proxy itself */
    bool read_eof;             /* the client half-closed: answer what it sent, then close */
    bool in_process;           /* conn_process() is on the stack */
    bool https;                /* came over TLS (or refreshes such a request): scheme https */
    bool handshaking;          /* TLS handshake not complete: handshake_timeout applies */
};

/* conn.c, for conn_cache.c. */

/* Starts an internal request (the given head) on w, as if a client sent
 * it: a background refresh; https: as if it came over TLS (the entry's
 * scheme). Returns 0 or -1. */
int conn_start_internal(struct worker *w, const char *head, size_t len, bool https);

/* "https" or "http": the scheme of c's requests (cache keys, X-Forwarded-Proto). */
const char *conn_scheme(const struct conn *c);
const struct config *conn_cfg(const struct conn *c);
void conn_upstream_send(struct conn *c);
void conn_respond_error(struct conn *c, int status);
/* Answers the request itself (status, Content-Type, body; no-store). */
void conn_respond(struct conn *c, int status, const char *type, const char *body, size_t len);
void conn_abort(struct conn *c);
void conn_finish(struct conn *c);

/* conn_cache.c, for conn.c. */

/* Route matched: returns true when the cache took the request over (a
 * hit, a wait on another fetch, or a miss whose fetch it started). */
bool conn_cache_begin(struct conn *c);

/* PURGE: invalidates the URL when the client may (invalidation.purge_allow
 * or purge_token) and answers 200, else 403. */
void conn_cache_purge(struct conn *c);

/* The upstream response head is parsed: decide whether to store it. */
void conn_cache_on_response_head(struct conn *c);

/* After conn_cache_on_response_head(): when the response is being stored
 * and its length is known, starts serving the client from the object
 * instead of relaying (so a slow client does not slow the fill, nor the
 * other clients streaming it) and returns true. */
bool conn_cache_detach(struct conn *c);

/* The upstream response head arrived (head_len bytes in the upstream
 * input): returns true when the cache consumed it and answers the client
 * itself (a 304 that revalidated the entry, or an error hidden by
 * stale-if-error); the upstream connection is then released. */
bool conn_cache_intercept(struct conn *c, size_t head_len);

/* The upstream failed before a response: serves the stale entry when
 * stale-if-error allows; returns true when it did. */
bool conn_cache_stale_on_error(struct conn *c);

/* Header lines for the upstream request (validators), or NULL. */
const char *conn_cache_request_lines(struct conn *c);

/* Cache-Status for an error of the proxy's own on a caching route, or NULL. */
const char *conn_cache_error_lines(struct conn *c);

/* Header lines (Cache-Status...) for a relayed response, or NULL. */
const char *conn_cache_response_lines(struct conn *c);

/* The upstream response is complete. */
void conn_cache_on_response_done(struct conn *c);

/* The exchange ends (any way): fail an unfinished fill, stop delivering. */
void conn_cache_end(struct conn *c);

/* The client output drained: send more of a cached object. */
void conn_cache_on_write(struct conn *c);

/* Frees the connection's cache state (key buffer, events). */
void conn_cache_free(struct conn *c);

#endif
