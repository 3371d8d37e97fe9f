/*
 * stats: the proxy's counters, declared once in STATS_COUNTERS.
 *
 * The table generates the struct fields, the JSON keys and the Prometheus
 * names with their HELP and TYPE lines. Each worker owns one struct stats
 * and bumps its fields with plain increments from its own thread; readers
 * (the admin listener on the main thread) sum every registered struct.
 * A reader may see a counter one increment behind; it never sees a torn
 * 64-bit value on the platforms we build for.
 */
#ifndef TAILCACHE_STATS_H
#define TAILCACHE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* X(name, kind, help): kind is COUNTER or GAUGE. */
#define STATS_COUNTERS(X)                                                                          \
    X(connections_accepted, COUNTER, "Client connections accepted")                                \
    X(connections_active, GAUGE, "Client connections open now")                                    \
    X(tls_handshakes, COUNTER, "TLS handshakes completed on the tls.listen listeners")             \
    X(tls_resumed, COUNTER, "TLS handshakes that resumed a session (a ticket)")                    \
    X(tls_handshake_errors, COUNTER,                                                               \
      "TLS handshakes that failed or timed out (the connection closed)")                           \
    X(requests, COUNTER, "Requests received (complete request heads)")                             \
    X(bad_requests, COUNTER, "Requests rejected by the parser or limits (4xx/5xx, not forwarded)") \
    X(no_route, COUNTER, "Requests that matched no route (404)")                                   \
    X(responses_1xx, COUNTER, "Interim responses sent to clients")                                 \
    X(responses_2xx, COUNTER, "Responses sent with a 2xx status")                                  \
    X(responses_3xx, COUNTER, "Responses sent with a 3xx status")                                  \
    X(responses_4xx, COUNTER, "Responses sent with a 4xx status")                                  \
    X(responses_5xx, COUNTER, "Responses sent with a 5xx status")                                  \
    X(upstream_requests, COUNTER, "Requests sent to upstream servers")                             \
    X(upstream_connects, COUNTER, "New upstream connections opened")                               \
    X(upstream_reuses, COUNTER, "Requests sent on a reused keep-alive upstream connection")        \
    X(upstream_retries, COUNTER,                                                                   \
      "Requests resent: reused connection found closed, or failed connect")                        \
    X(upstream_connect_errors, COUNTER, "Upstream connections that failed or timed out")           \
    X(upstream_timeouts, COUNTER, "Upstream requests that timed out (504)")                        \
    X(upstream_bad_responses, COUNTER, "Malformed upstream responses (502)")                       \
    X(upstream_unavailable, COUNTER, "Requests refused because every server was cooling down")     \
    X(upstream_aborted, COUNTER, "Responses cut because the upstream failed mid-body")             \
    X(upstream_tls_errors, COUNTER,                                                                \
      "Upstream TLS failures: certificate verification, handshake or alert")                       \
    X(upstream_tls_resumed, COUNTER, "Upstream TLS handshakes that resumed a saved session")       \
    X(client_aborted, COUNTER, "Requests abandoned because the client went away")                  \
    X(bytes_from_clients, COUNTER, "Request body bytes received from clients")                     \
    X(bytes_to_clients, COUNTER, "Response body bytes sent to clients")                            \
    X(cache_hits, COUNTER, "Requests answered from the memory cache")                              \
    X(cache_misses, COUNTER, "Cache misses that fetched from the origin as leader")                \
    X(cache_coalesced, COUNTER, "Requests that joined another request's fetch")                    \
    X(cache_coalesce_timeouts, COUNTER, "Joined requests that gave up waiting and fetched alone")  \
    X(cache_pass, COUNTER, "Requests on caching routes that bypassed the cache")                   \
    X(cache_hit_for_miss, COUNTER, "Requests sent on by a hit-for-miss marker")                    \
    X(cache_stored, COUNTER, "Responses stored in the memory cache")                               \
    X(cache_not_stored, COUNTER, "Fetched responses that were not storable")                       \
    X(cache_expired, COUNTER, "Lookups that found only a stale entry")                             \
    X(cache_miss_evicted, COUNTER, "Misses for keys evicted recently (ghost hits)")                \
    X(cache_invalidations, COUNTER, "Entries removed by successful unsafe requests")               \
    X(cache_revalidated, COUNTER, "Expired entries refreshed by a 304 from the origin")            \
    X(cache_stale_served, COUNTER,                                                                 \
      "Stale entries served (stale-while-revalidate, stale-if-error)")                             \
    X(cache_bg_refreshes, COUNTER, "Background refreshes started (stale-while-revalidate)")        \
    X(tier_redis_hits, COUNTER, "Redis tier lookups that found a usable object")                   \
    X(tier_redis_misses, COUNTER, "Redis tier lookups that found nothing usable")                  \
    X(tier_redis_errors, COUNTER, "Redis tier operations that failed")                             \
    X(tier_redis_timeouts, COUNTER, "Redis tier operations that timed out")                        \
    X(tier_redis_skipped, COUNTER, "Redis tier lookups skipped: not connected or breaker open")    \
    X(tier_redis_stores, COUNTER, "Objects written to the Redis tier")                             \
    X(tier_redis_too_large, COUNTER, "Objects not written to Redis: over max_object_size")         \
    X(tier_memcached_hits, COUNTER, "memcached tier lookups that found a usable object")           \
    X(tier_memcached_misses, COUNTER, "memcached tier lookups that found nothing usable")          \
    X(tier_memcached_errors, COUNTER, "memcached tier operations that failed")                     \
    X(tier_memcached_timeouts, COUNTER, "memcached tier operations that timed out")                \
    X(tier_memcached_skipped, COUNTER,                                                             \
      "memcached tier lookups skipped: queue full or breaker open")                                \
    X(tier_memcached_stores, COUNTER, "Objects written to the memcached tier")                     \
    X(tier_memcached_too_large, COUNTER, "Objects not written to memcached: over max_object_size") \
    X(tier_banned, COUNTER, "Shared-tier objects dropped because a ban covers them")               \
    X(inval_requests, COUNTER, "Invalidations applied on this node (any source)")                  \
    X(inval_removed, COUNTER, "Memory entries removed by invalidations")                           \
    X(inval_purge_denied, COUNTER, "PURGE requests refused (address or token)")                    \
    X(inval_rules, COUNTER, "Invalidation rules fired by successful writes")                       \
    X(inval_broadcast_sent, COUNTER, "Invalidations published to other nodes")                     \
    X(inval_broadcast_received, COUNTER, "Invalidations received from other nodes")                \
    X(reloads, COUNTER, "Configuration generations this worker has applied")                       \
    X(log_lines_dropped, COUNTER, "Log lines dropped because the log writer could not keep up")

/* X(name, help): latency histograms (seconds), fixed buckets of
 * STATS_HIST_BOUNDS_US; exported as Prometheus histograms, which add up
 * across nodes. (The analytics' bounded-error histograms come later.) */
#define STATS_HISTS(X)                                                                             \
    X(tier_redis_lookup, "Redis tier lookup latency")                                              \
    X(tier_memcached_lookup, "memcached tier lookup latency")

#define STATS_HIST_BOUNDS_US                                                                       \
    {                                                                                              \
        100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000              \
    }
#define STATS_HIST_NBOUNDS 12

struct stats_hist {
    uint64_t buckets[STATS_HIST_NBOUNDS + 1]; /* the last one: over every bound */
    uint64_t count;
    uint64_t sum_us;
};

struct stats {
#define STATS_FIELD(name, kind, help) uint64_t name;
    STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
#define STATS_HIST_FIELD(name, help) struct stats_hist name;
    STATS_HISTS(STATS_HIST_FIELD)
#undef STATS_HIST_FIELD
};

/* Records one sample of us microseconds (owner thread, plain increments). */
void stats_hist_record(struct stats_hist *h, uint64_t us);

/* Registers a worker's struct so readers include it; main thread, before workers run. */
void stats_register(struct stats *s);

/* Removes every registration (shutdown). */
void stats_unregister_all(void);

/* Sums every registered struct into *out, and fills the process-wide
 * counters (log_lines_dropped) that no worker owns. */
void stats_sum(struct stats *out);

/* Appends the summed counters as a JSON object / Prometheus text. */
void stats_format_json(struct evbuffer *out, const struct stats *s);
void stats_format_prometheus(struct evbuffer *out, const struct stats *s);

/* Number of counters in the table; name, kind and help of counter i (tests). */
size_t stats_count(void);
const char *stats_name(size_t i);
const char *stats_kind(size_t i);
const char *stats_help(size_t i);

/* Returns counter i of s. */
uint64_t stats_value(const struct stats *s, size_t i);

#endif
