/*
 * worker: one thread with its own event_base, its own SO_REUSEPORT
 * listeners, upstream pools and counters.
 *
 * Configuration generations: a worker serves new requests with its
 * current generation (a config reference plus the upstream pools built
 * for it). Each request in flight holds a reference to the generation it
 * started with, so a reload never changes a request under way; a retired
 * generation is freed when its last request finishes.
 *
 * The main thread talks to a worker only through worker_reload() and
 * worker_stop(), which hand over state under a mutex and wake the
 * worker's base (event_active is thread-safe with libevent's pthreads
 * support). Everything else in struct worker belongs to the worker thread.
 */
#ifndef TAILCACHE_WORKER_H
#define TAILCACHE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "stats.h"

struct analytics;
struct analytics_route;
struct cache;
struct cache_policy_route;
struct config;
struct conn;
struct event;
struct event_base;
struct evconnlistener;
struct inval;
struct tier_shared;
struct tier_thread;
struct upstream_pool;

struct worker_gen {
    struct config *cfg;                  /* one reference */
    struct upstream_pool **pools;        /* indexed like cfg->upstreams */
    struct cache_policy_route *policies; /* indexed like cfg->routes */
    struct analytics_route **analytics;  /* indexed like cfg->routes; NULL: analytics off */
    unsigned refs;                       /* the worker's current pointer + requests in flight */
    bool retired;
};

TAILQ_HEAD(conn_list, conn);

struct worker {
    unsigned idx;
    pthread_t thread;
    struct event_base *base;
    int *listen_fds; /* owned until the listeners take them */
    size_t nlisten;
    struct evconnlistener **listeners;
    struct worker_gen *gen;
    struct cache *cache;                    /* the memory cache, shared by all workers */
    struct tier_thread *tiers;              /* this worker's view of the shared tiers */
    struct inval *inval;                    /* where invalidations go (borrowed) */
    struct analytics *analytics;            /* borrowed */
    struct analytics_route *analytics_head; /* this worker's routes (analytics.h) */
    uint64_t rng;                           /* xorshift state: bypass sampling */
    struct stats stats;
    struct event *ev_reload;
    struct event *ev_stop;
    struct event *ev_reap;
    struct event *ev_ready;     /* start-up: accept once the Redis tier is up (bounded) */
    uint64_t ready_deadline;    /* µs: accept anyway from then on */
    pthread_mutex_t mu;         /* guards pending_cfg and stop_requested */
    struct config *pending_cfg; /* handed over by worker_reload() */
    bool stop_requested;
    struct conn_list conns; /* open client connections */
    struct conn_list reap;  /* closed, freed at the next safe point */
    unsigned nconns;
    bool draining;
    uint64_t next_conn_id;
};

/* What every worker shares, made by the main thread (all borrowed). */
struct worker_shared {
    struct cache *cache;
    struct tier_shared *tiers;
    struct inval *inval;
    struct analytics *analytics;
};

/* Worker thread: a uniform random number in [0, 1). */
double worker_random(struct worker *w);

/*
 * Prepares a worker: base, events, first generation for cfg (takes a new
 * reference), its view of the shared tiers, listeners on the given
 * already-bound sockets (ownership of the fds passes to the worker); the
 * last ntls of them are TLS listeners (tls.listen).
 * Returns 0 or -1 with the reason logged.
 */
int worker_init(struct worker *w, unsigned idx, struct config *cfg, const struct worker_shared *sh,
                int *fds, size_t nfds, size_t ntls);

/* Starts the worker's thread; returns 0 or -1. */
int worker_start(struct worker *w);

/* Main thread: apply cfg (takes a new reference) for new requests. */
void worker_reload(struct worker *w, struct config *cfg);

/* Main thread: stop accepting and exit once in-flight requests are done. */
void worker_stop(struct worker *w);

/* Frees what worker_init made; the thread must have exited. */
void worker_destroy(struct worker *w);

/* Worker thread: a new reference to the current generation. */
struct worker_gen *worker_gen_ref(struct worker *w);

/* Worker thread: drops a generation reference, freeing a retired one at zero. */
void worker_gen_unref(struct worker_gen **gp);

/* Worker thread: called by conn when a connection is queued for freeing. */
void worker_conn_reaped(struct worker *w);

/* The calling thread's worker, or NULL on other threads. */
struct worker *worker_self(void);

#endif
