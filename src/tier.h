/*
 * tier: the shared cache tiers behind memory (Redis, memcached), as one
 * thread sees them.
 *
 * A route looks its tiers up in order (config routes[].cache.tiers; memory
 * is conn_cache's business, this module does the rest): the first tier
 * holding a usable object answers; a tier that is down, whose breaker is
 * open or that times out counts as a miss and the next one is asked. A
 * usable object decodes (envelope.h), carries the key asked for (memcached
 * keys are hashes) and is not covered by a ban (ban.h); whether it is
 * still fresh is for the caller to decide with the usual rules, since the
 * envelope keeps the original freshness facts (a promoted object never
 * gets a longer life than it had).
 *
 * Writes (tier_store) encode a COMPLETE object once and hand it to every
 * L2 tier of the route without waiting for an answer; Redis keeps it for
 * its remaining lifetime plus the stale allowances (SET PX), memcached
 * likewise (exptime), and objects over a tier's max_object_size skip it.
 * Tags (Surrogate-Key, Cache-Tag) of a stored object are added to Redis
 * sets "<prefix>tag:<tag>" so a tag purge can find them.
 *
 * Breakers: per thread and tier, breaker_failures consecutive errors or
 * timeouts open it for breaker_cooldown; then one probe is let through
 * and its result closes or reopens it. While open, lookups skip the tier
 * at no cost.
 *
 * Threads: struct tier_shared is made by the main thread before workers
 * start (it owns the memcached pool and points at the ban list) and lives
 * until they have stopped. Each thread that talks to the tiers (every
 * worker, and the main thread for invalidations) has its own struct
 * tier_thread on its own event_base, with its own Redis connection and
 * memcached completion queue; its functions must be called on that thread.
 */
#ifndef TAILCACHE_TIER_H
#define TAILCACHE_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "envelope.h"

struct ban_list;
struct event_base;
struct obj;
struct redis_client;
struct stats;
struct tier_lookup;
struct tier_shared;
struct tier_thread;

/* A usable object found in a tier; env points into memory valid during
 * the callback only. */
struct tier_hit {
    enum config_tier tier;
    struct envelope env;
};

/* hit: NULL when no tier had a usable object; failed: some tier on the
 * way failed, timed out or was skipped (breaker open, not connected).
 * Runs on the lookup's thread, never inside tier_lookup(). */
typedef void (*tier_lookup_cb)(void *arg, const struct tier_hit *hit, bool failed);

/* Settings from cfg (tier settings take effect at start-up; a reload keeps
 * them) and the memcached pool when configured. Returns NULL with the
 * reason logged. bans is borrowed. */
struct tier_shared *tier_shared_new(const struct config *cfg, struct ban_list *bans);

/* Stops the memcached pool and frees; call after every tier_thread is
 * freed. Clears *tsp; accepts NULL. */
void tier_shared_free(struct tier_shared **tsp);

/* A new Redis connection on base with the tier's settings (for the
 * invalidation channel), or NULL when Redis is not configured. name is
 * for log lines. */
struct redis_client *tier_redis_connect(struct tier_shared *ts, struct event_base *base,
                                        const char *name);

/* True when any L2 tier is configured. */
bool tier_shared_any(const struct tier_shared *ts);

/* The ban list the tiers check objects against (borrowed). */
struct ban_list *tier_shared_bans(const struct tier_shared *ts);

/* A thread's view on base, counting into *st (owned by that thread).
 * Connects to Redis at once when configured. Never NULL. */
struct tier_thread *tier_thread_new(struct tier_shared *ts, struct event_base *base,
                                    struct stats *st);

/* Cancels lookups in flight (their callbacks never run), closes the
 * connections, frees. Clears *ttp; accepts NULL. */
void tier_thread_free(struct tier_thread **ttp);

/* True while this thread's Redis connection is not up: lookups now would
 * skip the tier (workers wait for it at start-up, bounded). */
bool tier_thread_connecting(const struct tier_thread *tt);

/* True when tiers[0..n) names an L2 tier this process has configured. */
bool tier_route_has_l2(const struct tier_thread *tt, const enum config_tier *tiers, size_t n);

/*
 * Looks key up in the L2 tiers of tiers[0..n) (memory is skipped), in
 * order. Returns 0 and cb will be called exactly once, later, unless the
 * lookup is cancelled first; *handle names it until then. Returns -1 when
 * no tier can be asked now (none configured, all skipped): cb is never
 * called and the caller goes on at once.
 */
int tier_lookup(struct tier_thread *tt, const enum config_tier *tiers, size_t n, const char *key,
                size_t key_len, tier_lookup_cb cb, void *arg, struct tier_lookup **handle);

/* Cancels a lookup: its callback never runs. Clears *hp; accepts NULL. */
void tier_lookup_cancel(struct tier_lookup **hp);

/*
 * Writes a COMPLETE response object (or a Vary marker) to the L2 tiers of
 * tiers[0..n), without waiting. stored_at_us: wall-clock µs when the fetch
 * that made it started (what bans are compared with). Does nothing for an
 * object with no life left (lifetime and stale allowances spent).
 */
void tier_store(struct tier_thread *tt, const enum config_tier *tiers, size_t n, struct obj *o,
                int64_t stored_at_us);

/* Writes an envelope (e.g. a Vary marker) the same way, kept ttl_ms. */
void tier_store_envelope(struct tier_thread *tt, const enum config_tier *tiers, size_t n,
                         const struct envelope *e, int64_t ttl_ms);

/* Deletes key (a primary key prefix, see ban.h) from every L2 tier, and
 * for Redis the set of a tag. Without waiting. */
void tier_delete(struct tier_thread *tt, const char *key, size_t key_len);

/* Deletes every Redis object in the set of tag, and the set. */
void tier_delete_tag(struct tier_thread *tt, const char *tag, size_t len);

/*
 * The ban log, so bans outlive a restart (inval.h): the Redis list
 * "<prefix>bans" when Redis is configured, else the memcached value
 * "<prefix>bans" (records each as "<length>\n<record>").
 *
 * tier_ban_log_read: start-up, main thread, before workers run; calls
 * each() per record, oldest first. Blocks at most about connect_timeout +
 * timeout. Returns 0 when read (perhaps empty), -1 when the tier could not
 * be read, 1 when no tier is configured.
 */
int tier_ban_log_read(struct tier_shared *ts, void (*each)(void *arg, const char *rec, size_t len),
                      void *arg);

/* Appends a record to the Redis list, keeping the newest max. Returns 0,
 * or -1 when the log is not in Redis. */
int tier_ban_log_append(struct tier_thread *tt, const char *rec, size_t len, unsigned max);

/* Replaces the memcached log with blob (malloc'd, handed over). */
void tier_ban_log_put(struct tier_thread *tt, char *blob, size_t len);

/* This thread's Redis connection (for invalidations), or NULL. */
struct redis_client *tier_thread_redis(struct tier_thread *tt);

/* The Redis key prefix ("" when Redis is not configured). */
const char *tier_redis_prefix(const struct tier_thread *tt);

#endif
