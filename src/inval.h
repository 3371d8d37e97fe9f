/*
 * inval: applies invalidations to every layer and every node.
 *
 * An invalidation is a ban (ban.h). Applying one here means, in order:
 *   1. record it in the ban list, so no shared-tier object it covers is
 *      ever served again by this process (checked on every L2 hit);
 *   2. remove what it covers from the memory cache (cache_sweep, on the
 *      main thread: a walk of the index never runs on a worker's loop);
 *   3. delete it from the shared tiers: a URL's key from Redis and
 *      memcached, a tag's Redis set and its members, and for prefix,
 *      regex and route bans (and URLs whose keys have header or cookie
 *      parts) the matching Redis keys found by an incremental SCAN;
 *      memcached cannot be enumerated, so there the ban list (1.) stands
 *      guard until the objects expire;
 *   4. append it to the ban log (the Redis list "<prefix>bans", or without
 *      Redis a memcached value), read back at start-up, so a restarted
 *      node still knows what its tiers may hold that must not be served;
 *   5. publish it on the Redis channel (invalidation.channel) with this
 *      node's id, unless it came from there; every other node subscribed
 *      applies 1. and 2. when it arrives (its sender did 3. and 4.).
 *
 * Sources: the admin API (main thread: inval_apply), the PURGE method and
 * invalidation rules (worker threads: inval_submit, which records the ban
 * at once and hands the rest to the main thread), and the channel.
 *
 * Threads: made and freed by the main thread, on its event_base;
 * inval_submit() and inval_url_ban() may be called from any thread.
 */
#ifndef TAILCACHE_INVAL_H
#define TAILCACHE_INVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ban.h"

struct analytics;
struct cache;
struct config;
struct config_route;
struct event_base;
struct http_request;
struct stats;
struct tier_shared;

struct inval;

/* Main thread, before workers start. bans and ts are borrowed (ts may have
 * no tier configured). Subscribes to the channel when cfg says so.
 * Never NULL. */
struct inval *inval_new(struct event_base *base, struct cache *cache, struct ban_list *bans,
                        struct tier_shared *ts, struct config *cfg);

/* Main thread, at start-up before workers run: loads the ban log (bans
 * made before this process started, by any node) from the shared tiers.
 * Blocks at most about a tier timeout. When it cannot be read, objects
 * stored in the tiers before now count as invalidated (ban.h floor). */
void inval_load(struct inval *iv);

/* Main thread, after workers stopped. Clears *ivp; accepts NULL. */
void inval_free(struct inval **ivp);

/* Main thread: the configuration route bans and URL keys use from now on. */
void inval_set_config(struct inval *iv, struct config *cfg);

/* Main thread: where a route purge starts the route's warm-up window
 * again (borrowed; NULL: nowhere). */
void inval_set_analytics(struct inval *iv, struct analytics *an);

/* Main thread: the current configuration (borrowed). */
struct config *inval_config(struct inval *iv);

/* Main thread: applies b (takes its own reference) as described above and
 * returns the number of memory entries removed. */
size_t inval_apply(struct inval *iv, struct ban *b);

/* Any thread: records b at once (step 1) and queues the rest to the main
 * thread; takes its own reference. */
void inval_submit(struct inval *iv, struct ban *b);

/*
 * A URL ban (new reference) for GET scheme://host/path?query ("http" or
 * "https": their entries are apart) as the route
 * serving it keys it (query normalisation; header and cookie parts left
 * out, so it covers them all), or NULL with a message (no route, key too
 * long). req: a request whose host, path and query are used (method and
 * other fields ignored). Its argument (ban_arg) is the primary key to
 * remove directly. Any thread.
 */
struct ban *inval_url_ban(const struct config *cfg, const struct http_request *req,
                          const char *scheme, int64_t time_us, char *err, size_t errlen);

/* Main thread: the counters of invalidations applied here (registered
 * with stats by inval_new). */
struct stats *inval_stats(struct inval *iv);

#endif
