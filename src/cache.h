/*
 * cache: the memory cache (L1) index, shared by all workers.
 *
 * A byte-bounded hash index of struct obj, split into shards by key hash
 * so workers rarely contend; each shard has its own lock, hash table,
 * eviction queues and byte budget (max_bytes / nshards).
 *
 * Eviction is S3-FIFO (Yang et al., SOSP 2023): new entries enter a small
 * FIFO (10% of the bytes); those accessed again while there move to the
 * main FIFO, the rest are evicted and remembered by hash in a ghost FIFO;
 * an entry whose hash is in the ghost goes straight to main. Main is a
 * FIFO with reinsertion (a per-entry counter, 0..3). One-hit wonders and
 * scans therefore pass through the small queue without flushing the
 * working set. Plain LRU is available for comparison (benchmarks).
 *
 * The ghost also answers "was this key evicted recently?" for the miss
 * cause statistics.
 *
 * References: see obj.h. The index holds one reference per linked entry;
 * cache_lookup() returns a new one; eviction and removal drop the index's.
 * An entry is never freed under a reader.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef TAILCACHE_CACHE_H
#define TAILCACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "obj.h"

struct cache;

enum cache_eviction {
    CACHE_EVICT_S3FIFO,
    CACHE_EVICT_LRU,
};

struct cache_stats {
    uint64_t entries;
    uint64_t bytes; /* sum of charges */
    uint64_t max_bytes;
    uint64_t lookups;
    uint64_t hits; /* lookups that found an entry */
    uint64_t inserts;
    uint64_t evictions;
    uint64_t removals;   /* cache_remove() and replacements */
    uint64_t ghost_hits; /* inserts whose hash was in the ghost */
};

/* A new cache of max_bytes in nshards shards (a power of two, 1..1024). Never NULL. */
struct cache *cache_new(size_t max_bytes, unsigned nshards, enum cache_eviction ev);

/* Unlinks and drops every entry, then frees; clears *cp; accepts NULL. */
void cache_free(struct cache **cp);

/* XXH3-64 of a key. */
uint64_t cache_hash(const char *key, size_t len);

/* The entry for key (new reference), or NULL. Counts an access. */
struct obj *cache_lookup(struct cache *c, const char *key, size_t len, uint64_t hash);

/*
 * Links o under o->key (the index takes its own reference), replacing and
 * dropping an entry with the same key, then evicts until the shard is
 * within budget (o itself is never evicted by its own insert). Returns 0,
 * or -1 when o alone is larger than a shard's budget (not linked).
 */
int cache_insert(struct cache *c, struct obj *o);

/*
 * Links o only if no entry has its key. Returns NULL when o was linked,
 * else the existing entry (new reference) and o is not linked. Used to
 * make the BUSY object of a miss the one all concurrent requests join.
 */
struct obj *cache_insert_or_get(struct cache *c, struct obj *o);

/*
 * Unlinks the entry with key when it is expected (or any entry when
 * expected is NULL). Returns true when something was unlinked.
 */
bool cache_remove(struct cache *c, const char *key, size_t len, uint64_t hash,
                  const struct obj *expected);

/* Recomputes a linked object's charge (obj_size) after it grew, and evicts
 * as needed. Does nothing when o is not linked. */
void cache_recharge(struct cache *c, struct obj *o);

/* The largest charge an entry may have: one shard's budget. */
size_t cache_entry_limit(const struct cache *c);

/* Remembers that the key of hash was invalidated (lossy: a later key of
 * another hash may take its place); cache_sweep() notes what it removes,
 * and storing the key again forgets it. */
void cache_note_invalidated(struct cache *c, uint64_t hash);

/* True when hash was noted invalidated and not stored since (miss causes). */
bool cache_was_invalidated(struct cache *c, uint64_t hash);

/* True when hash was evicted recently (it is in the ghost). */
bool cache_was_evicted(struct cache *c, uint64_t hash);

/*
 * Removes every linked entry that key_filter (may be NULL: all) and then
 * match (may be NULL: all) accept, shard by shard. key_filter runs under
 * the shard lock and must be cheap (it must not call into the cache);
 * match runs on a referenced entry without the shard lock (it may take the
 * object's lock, and even use the cache). Every entry linked for the whole
 * sweep is looked at exactly once; entries linked during the sweep may be
 * missed. An entry replaced or removed after key_filter took it is left
 * alone: the removal names the entry, not the key. Returns the number
 * removed (each also counted in the removals statistic). Shard locks are
 * held for bounded stretches only, but the sweep costs a walk of the whole
 * index: never call it on a worker's loop. Only when memory runs out and
 * one hash chain is longer than a batch (hundreds of entries) may that
 * chain be swept in part.
 */
size_t cache_sweep(struct cache *c, bool (*key_filter)(void *arg, const char *key, size_t len),
                   bool (*match)(void *arg, struct obj *o), void *arg);

/* Sums the shards' statistics. */
void cache_get_stats(struct cache *c, struct cache_stats *out);

#endif
