/*
 * analytics: per-route latency and cache statistics, recorded by workers
 * without locks and read by the main thread.
 *
 * Each worker owns one struct analytics_route per route name it has
 * served (kept across reloads: same name, same statistics). A request is
 * recorded once, when it ends: its outcome (hit from memory, Redis or
 * memcached, miss, stale, revalidated, coalesced, pass, bypass, error),
 * for a miss its cause, its bytes, and its latencies into bounded-error
 * histograms (hist.h) by outcome, plus origin time and shared-tier lookup
 * time. Histograms are allocated on first use, so a route pays only for
 * the outcomes it sees: about 11 KiB per histogram per worker.
 *
 * The main thread merges the workers' structs when asked (since start)
 * and every analytics.slot (5 s by default; analytics_tick) keeps the
 * change since the previous tick as a sparse delta, so the recent window
 * (the last analytics.window, 60 s by default, sliding by one slot) is the
 * sum of the last deltas. Budgets are judged on that window at each tick.
 *
 * Cold and warm: each route has a warm-up window (routes[].analytics
 * warmup, 60 s by default) that starts at process start and again when
 * the route is flushed (analytics_route_flushed); requests are counted
 * separately during it and after it.
 *
 * Threads: analytics_record on the worker that owns the struct;
 * analytics_worker_route from the worker when it builds a generation;
 * everything else on the main thread. The route list is only ever added
 * to (at its head), so readers walk it without a lock.
 */
#ifndef TAILCACHE_ANALYTICS_H
#define TAILCACHE_ANALYTICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

struct config;
struct evbuffer;

#define ANALYTICS_MAX_SLOTS 60 /* analytics.window / analytics.slot at most */

/* X(name, "help"): how a request ended. */
#define ANALYTICS_OUTCOMES(X)                                                                      \
    X(hit_memory, "answered from the memory cache")                                                \
    X(hit_redis, "answered from the Redis tier")                                                   \
    X(hit_memcached, "answered from the memcached tier")                                           \
    X(miss, "fetched from the origin to be stored")                                                \
    X(stale, "a stale entry served (stale-while-revalidate, stale-if-error)")                      \
    X(revalidated, "an expired entry confirmed by a 304")                                          \
    X(coalesced, "served from another request's fetch")                                            \
    X(pass, "sent to the origin without the cache")                                                \
    X(bypass, "sent to the origin by bypass sampling (sample_bypass)")                             \
    X(error, "answered with an error of the proxy's own (502, 503, 504)")

enum analytics_outcome {
#define ANALYTICS_OUTCOME_ENUM(name, help) ANALYTICS_##name,
    ANALYTICS_OUTCOMES(ANALYTICS_OUTCOME_ENUM)
#undef ANALYTICS_OUTCOME_ENUM
        ANALYTICS_NOUTCOMES
};

/* X(name, "help"): why a request missed. */
#define ANALYTICS_CAUSES(X)                                                                        \
    X(cold, "the key was not in the cache and not evicted or invalidated lately")                  \
    X(expired, "only an expired entry was found")                                                  \
    X(evicted, "the key was evicted lately (ghost list)")                                          \
    X(invalidated, "the key was invalidated lately")                                               \
    X(not_storable, "the response is not storable, or a hit-for-miss marker sent it on")           \
    X(vary, "the resource is cached, but not this variant")                                        \
    X(tier_error, "a shared tier failed or timed out on the way")

enum analytics_cause {
    ANALYTICS_CAUSE_NONE = -1,
#define ANALYTICS_CAUSE_ENUM(name, help) ANALYTICS_CAUSE_##name,
    ANALYTICS_CAUSES(ANALYTICS_CAUSE_ENUM)
#undef ANALYTICS_CAUSE_ENUM
        ANALYTICS_NCAUSES
};

/* Latency series besides the per-outcome ones. */
enum analytics_series {
    ANALYTICS_SERIES_TOTAL = ANALYTICS_NOUTCOMES, /* every request */
    ANALYTICS_SERIES_ORIGIN,                      /* origin time of requests that went there */
    ANALYTICS_SERIES_TIER,                        /* shared-tier lookup time */
    ANALYTICS_SERIES_COLD,                        /* every request in the warm-up window */
    ANALYTICS_SERIES_WARM,                        /* every request after it */
    ANALYTICS_SERIES_REFRESH,                     /* background refreshes (not client requests) */
    ANALYTICS_SERIES_STALE_AGE,                   /* how stale the stale content served was */
    ANALYTICS_NSERIES
};

/* A route's counters on one worker: plain uint64_t, written by the worker. */
struct analytics_counts {
    uint64_t requests;
    uint64_t outcomes[ANALYTICS_NOUTCOMES];
    uint64_t causes[ANALYTICS_NCAUSES];
    uint64_t bytes_cache;  /* body bytes sent from cached objects */
    uint64_t bytes_origin; /* body bytes relayed from the origin */
    uint64_t cold_requests, cold_hits;
    uint64_t warm_requests, warm_hits;
    uint64_t coalesce_timeouts;           /* waits that gave up (coalesce_timeout) */
    uint64_t coalesce_uncacheable;        /* waits that ended in a response not storable */
    uint64_t refreshes, refresh_failures; /* background refreshes and those that failed */
};

/* Top missed keys: a space-saving summary (Metwally et al.) per route and
 * worker of the ANALYTICS_TOPK URLs that miss most, each with its count,
 * the count's overestimate bound and the misses by cause. The worker
 * writes an entry between two increments of seq (odd while it writes); a
 * reader copies it and keeps the copy only if seq was even and unchanged. */
#define ANALYTICS_TOPK 32
#define ANALYTICS_TOPK_KEY 120 /* bytes of "host/path?query" kept */

struct analytics_topk_entry {
    _Atomic uint32_t seq;
    uint32_t key_len;
    uint64_t hash; /* of the full key text */
    uint64_t count, error;
    uint32_t causes[ANALYTICS_NCAUSES];
    char key[ANALYTICS_TOPK_KEY];
};

/* One route on one worker. */
struct analytics_route {
    struct analytics_route *next; /* the worker's list; published with a release store */
    char *name;
    struct analytics_shared *shared;
    struct analytics_counts c;
    _Atomic(struct hist *) h[ANALYTICS_NSERIES]; /* NULL until the first sample */
    struct analytics_topk_entry *topk;           /* ANALYTICS_TOPK entries, made on first miss */
};

/* What a request contributes, gathered by conn.c when it ends. */
struct analytics_sample {
    enum analytics_outcome outcome;
    enum analytics_cause cause;
    bool refresh;              /* a background refresh: counted apart, not as a request */
    bool failed;               /* a refresh that did not get a usable response */
    bool coalesce_timeout;     /* gave up waiting on another fetch */
    bool coalesce_uncacheable; /* waited on a fetch that turned out not storable */
    uint64_t stale_age_us;     /* stale outcome: how far past its freshness */
    uint64_t now_us;           /* when it ended (util_now_us()) */
    uint64_t total_us;
    uint64_t origin_us; /* 0: did not go to the origin */
    uint64_t tier_us;   /* 0: no shared-tier lookup */
    uint64_t body_bytes;
    /* The URL, for the top missed keys (misses and passes only). */
    const char *host;
    size_t host_len;
    const char *target;
    size_t target_len;
};

/* Per route name, shared by workers and main (warm-up window, budgets). */
struct analytics_shared;

/* The process's analytics (main thread). */
struct analytics;

/* Main thread, at start-up. Never NULL. */
struct analytics *analytics_new(const struct config *cfg);
void analytics_free(struct analytics **ap);

/* Main thread: a reload (route settings: warm-up, budgets, bypass). */
void analytics_set_config(struct analytics *a, const struct config *cfg);

/* Main thread, before a worker starts: registers its list head so readers
 * find its routes. */
void analytics_register_worker(struct analytics *a, struct analytics_route *const *head);

/* Worker thread: its struct for route name (created on first use, then
 * the same one for ever). head: the worker's list. Never NULL. */
struct analytics_route *analytics_worker_route(struct analytics *a, struct analytics_route **head,
                                               const char *name);

/* Worker thread: records one request. */
void analytics_record(struct analytics_route *r, const struct analytics_sample *s);

/* Main thread: the route's warm-up window starts again (a flush). */
void analytics_route_flushed(struct analytics *a, const char *route);

/* Main thread, every analytics_slot_ms(): closes a window slot, judges
 * budgets (logging changes). */
void analytics_tick(struct analytics *a);

/* The slot length in milliseconds (set at start-up). */
unsigned analytics_slot_ms(const struct analytics *a);

/* Main thread: everything as JSON (an object: "window_s", "routes": [...],
 * "total": {...}) / as Prometheus text. */
void analytics_format_json(struct analytics *a, struct evbuffer *out);
void analytics_format_prometheus(struct analytics *a, struct evbuffer *out);

/* The outcome's and cause's names. */
const char *analytics_outcome_name(enum analytics_outcome o);
const char *analytics_cause_name(enum analytics_cause c);

#endif
