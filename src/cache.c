/*
 * cache: the memory cache index (L1). The contract is in cache.h; this is
 * how it is kept.
 *
 * Shards. A key's shard is the top log2(nshards) bits of its hash; its
 * bucket inside the shard's table is the low bits. The two choices use
 * different bits, so every shard's table is loaded as evenly as the whole.
 * Each shard has its own mutex and, under it: a chained hash table
 * (obj->h_next) doubled when entries exceed buckets, the eviction queues
 * (obj->q_prev/q_next, newest at the head), the ghost, the byte budget
 * (max_bytes / nshards) and the statistics.
 *
 * Eviction. S3-FIFO (see cache.h): SMALL gets a tenth of the shard's
 * bytes, MAIN the rest; eviction takes from SMALL while SMALL is over its
 * tenth, else from MAIN. A lookup raises obj->freq (saturating at 3). The
 * SMALL tail with freq > 0 moves to MAIN with freq 0, else it is evicted;
 * the MAIN tail with freq > 0 goes back to the head with freq - 1, else it
 * is evicted. LRU mode keeps every entry on MAIN and moves a looked-up
 * entry to the head. An entry that replaces one with the same key takes
 * the old entry's queue: popularity belongs to the key, not the version.
 *
 * Ghost. Every eviction (from either queue, in both modes) records the
 * hash and charge in the shard's ghost: a FIFO ring of hashes with an
 * open-addressing set (linear probing, at most half full) for membership.
 * cache_was_evicted() needs main's evictions too; an entry that was good
 * enough for MAIN once may go back there directly. The ghost remembers as
 * many evicted bytes as MAIN may hold (as libCacheSim's S3-FIFO does), so
 * the ghost spans about as many entries as MAIN whatever the object size;
 * its slot count is fixed at cache_new() from MAIN's bytes divided by an
 * assumed mean object size of CACHE_GHOST_MEAN bytes, rounded up to a power
 * of two and bounded to [CACHE_GHOST_MIN, CACHE_GHOST_MAX]. A slot costs
 * 20 bytes (8 hash + 4 charge + 2 x 4 set), so the ghost costs 2% to 4% of
 * MAIN's bytes (more for tiny shards, at CACHE_GHOST_MIN; about 33 bytes
 * per cached 1 KiB object, as contrib/bench/evict-sim measures), and only
 * objects smaller on average than CACHE_GHOST_MEAN make the slot count
 * rather than the bytes the limit. Recording MAIN's evictions too (the
 * paper records SMALL's only) measured equal or up to 0.2 points better in
 * evict-sim. An insert that finds its hash in the ghost removes it (the
 * key is cached again).
 *
 * Locking. A shard lock is a leaf with respect to obj.c: under it this
 * file reads an object's key, hash and index fields, takes references
 * (obj_ref is an atomic add) and calls obj_size(), which takes no lock;
 * obj_size() is only correct because cache_insert() and cache_recharge()
 * are called by the thread filling the object (or after it is COMPLETE),
 * so its size fields do not move under us. The index's references to
 * entries an operation unlinks are collected and dropped after the shard
 * lock is released, because the last one frees the object. Only when one
 * call unlinks more than CACHE_DEFER_MAX entries are the rest dropped under
 * the lock; that is safe because obj.c never calls into cache.c, so the
 * only lock order is shard -> object.
 *
 * Sweeping. cache_sweep() must not hold a shard lock for a whole shard,
 * nor run match under it, nor allocate per entry. Per shard it walks the
 * buckets in reverse-binary order (the order of Redis's SCAN cursor): the
 * cursor is incremented as if its bits were reversed, so when the table
 * doubles between two lock holds (it never shrinks), the buckets already
 * walked are exactly those before the cursor in the new order too. The
 * lock can therefore be released between any two buckets, and every entry
 * linked for the whole sweep is visited exactly once whatever the growth
 * (a linear cursor would revisit, after a doubling, what it kept). A
 * bucket is taken whole (references to the entries key_filter accepts)
 * into a batch of CACHE_SWEEP_BATCH slots on the stack; when the next
 * chain does not fit, or CACHE_SWEEP_SCAN entries were looked at, the lock
 * is released and the batch handed to match and cache_remove(expected =
 * the entry), so an entry replaced meanwhile survives. A chain longer than
 * the batch alone (hash flooding, a table that could not grow) gets a heap
 * batch of its own; only if that allocation fails is it swept in part.
 *
 * Invariants (asserted, also in release builds): a linked entry has
 * refs > 0, linked set, exactly one queue and one hash chain; a shard's
 * bytes and entries equal the sums over its queues and never go below
 * zero; bytes <= budget after every operation; the object an operation
 * inserts or recharges is never the one it evicts.
 */
#include "cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "util.h"

#define CACHE_MAX_SHARDS 1024
#define CACHE_BUCKETS_MIN 64

#define CACHE_FREQ_MAX 3

/* SMALL's share of a shard's bytes, in tenths. */
#define CACHE_SMALL_TENTHS 1

#define CACHE_GHOST_MEAN 1024
#define CACHE_GHOST_MIN 64
#define CACHE_GHOST_MAX (1u << 20)

/* Entries one call may unlink before dropping references under the lock. */
#define CACHE_DEFER_MAX 32

/* cache_sweep(): references gathered per lock hold, and entries looked at. */
#define CACHE_SWEEP_BATCH 256
#define CACHE_SWEEP_SCAN 4096

enum cache_queue_id {
    CACHE_Q_NONE,
    CACHE_Q_SMALL,
    CACHE_Q_MAIN,
};

struct cache_queue {
    struct obj *head; /* newest */
    struct obj *tail; /* oldest, the next to be considered for eviction */
    size_t bytes;
    size_t count;
};

/*
 * The ring holds the evicted hashes oldest first from ring_first; a slot
 * whose hash was removed by a ghost hit is vacated (hash 0) and reclaimed
 * when it becomes the oldest. The set maps a hash to its ring slot (slot
 * index + 1; 0 is empty) and has twice as many slots as the ring.
 */
struct cache_ghost {
    uint64_t *hashes;
    uint32_t *charges;
    uint32_t *set;
    size_t cap; /* ring slots, a power of two */
    size_t set_mask;
    size_t first;
    size_t len; /* ring slots in use, vacated ones included */
    size_t live;
    size_t bytes;
    size_t max_bytes;
};

struct cache_shard {
    pthread_mutex_t mu;
    struct obj **buckets;
    size_t nbuckets; /* a power of two */
    size_t entries;
    size_t bytes;
    size_t max_bytes;
    size_t small_max;
    struct cache_queue small;
    struct cache_queue main;
    struct cache_ghost ghost;
    uint64_t lookups;
    uint64_t hits;
    uint64_t inserts;
    uint64_t evictions;
    uint64_t removals;
    uint64_t ghost_hits;
} __attribute__((aligned(64))); /* no false sharing between shard locks */

/* Recently invalidated hashes: a lossy direct-mapped table, for miss causes. */
#define CACHE_INVALIDATED_SLOTS 16384

struct cache {
    enum cache_eviction ev;
    unsigned nshards;
    unsigned shard_bits;
    struct cache_shard *shards;
    _Atomic uint64_t invalidated[CACHE_INVALIDATED_SLOTS];
};

/* References to drop once the shard lock is released. */
struct cache_defer {
    struct obj *objs[CACHE_DEFER_MAX];
    size_t n;
};

uint64_t
cache_hash(const char *key, size_t len)
{
    return XXH3_64bits(key, len);
}

static struct cache_shard *
cache_shard_of(const struct cache *c, uint64_t hash)
{
    /* A shift by 64 is undefined, hence the one-shard case. */
    if (c->shard_bits == 0)
        return &c->shards[0];
    return &c->shards[hash >> (64 - c->shard_bits)];
}

static void
cache_defer_add(struct cache_defer *d, struct obj *o)
{
    if (d->n < CACHE_DEFER_MAX)
        d->objs[d->n++] = o;
    else
        obj_unref(&o); /* under the lock; see the file comment */
}

static void
cache_defer_flush(struct cache_defer *d)
{
    for (size_t i = 0; i < d->n; i++)
        obj_unref(&d->objs[i]);
    d->n = 0;
}

/* ---- ghost ---------------------------------------------------------- */

/* The ghost's own key: 0 marks a vacated ring slot, so hash 0 becomes 1. */
static uint64_t
cache_ghost_key(uint64_t hash)
{
    return hash != 0 ? hash : 1;
}

static void
cache_ghost_init(struct cache_ghost *g, size_t max_bytes)
{
    size_t want = max_bytes / CACHE_GHOST_MEAN;
    size_t cap = CACHE_GHOST_MIN;

    while (cap < want && cap < CACHE_GHOST_MAX)
        cap *= 2;
    g->hashes = util_xcalloc(cap, sizeof(*g->hashes));
    g->charges = util_xcalloc(cap, sizeof(*g->charges));
    g->set = util_xcalloc(cap * 2, sizeof(*g->set));
    g->cap = cap;
    g->set_mask = cap * 2 - 1;
    g->max_bytes = max_bytes;
}

static void
cache_ghost_destroy(struct cache_ghost *g)
{
    free(g->hashes);
    free(g->charges);
    free(g->set);
    memset(g, 0, sizeof(*g));
}

/* The set position holding key, or SIZE_MAX. */
static size_t
cache_ghost_find(const struct cache_ghost *g, uint64_t key)
{
    for (size_t p = key & g->set_mask;; p = (p + 1) & g->set_mask) {
        uint32_t v = g->set[p];
        if (v == 0)
            return SIZE_MAX;
        if (g->hashes[v - 1] == key)
            return p;
    }
}

/* Empties set position p, shifting later members of its probe run back so
 * lookups never stop early (no tombstones). */
static void
cache_ghost_set_delete(struct cache_ghost *g, size_t p)
{
    size_t i = p;
    size_t j = p;

    for (;;) {
        j = (j + 1) & g->set_mask;
        if (g->set[j] == 0)
            break;
        size_t home = g->hashes[g->set[j] - 1] & g->set_mask;
        /* set[j] may move to i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            g->set[i] = g->set[j];
            i = j;
        }
    }
    g->set[i] = 0;
}

/* Forgets the member at set position p; its ring slot stays, vacated. */
static void
cache_ghost_vacate(struct cache_ghost *g, size_t p)
{
    size_t slot = g->set[p] - 1;

    UTIL_ASSERT(g->live > 0 && g->bytes >= g->charges[slot]);
    g->live--;
    g->bytes -= g->charges[slot];
    g->hashes[slot] = 0;
    g->charges[slot] = 0;
    cache_ghost_set_delete(g, p);
}

static void
cache_ghost_pop(struct cache_ghost *g)
{
    size_t slot = g->first;

    UTIL_ASSERT(g->len > 0);
    if (g->hashes[slot] != 0) {
        size_t p = cache_ghost_find(g, g->hashes[slot]);
        UTIL_ASSERT(p != SIZE_MAX && g->set[p] == slot + 1);
        cache_ghost_vacate(g, p);
    }
    g->first = (g->first + 1) & (g->cap - 1);
    g->len--;
}

static void
cache_ghost_add(struct cache_ghost *g, uint64_t hash, size_t charge)
{
    uint64_t key = cache_ghost_key(hash);
    uint32_t c32 = charge > UINT32_MAX ? UINT32_MAX : (uint32_t)charge;
    size_t p = cache_ghost_find(g, key);

    if (p != SIZE_MAX)
        cache_ghost_vacate(g, p);
    while (g->len == g->cap || (g->live > 0 && g->bytes + c32 > g->max_bytes))
        cache_ghost_pop(g);
    size_t slot = (g->first + g->len) & (g->cap - 1);
    g->hashes[slot] = key;
    g->charges[slot] = c32;
    g->len++;
    g->live++;
    g->bytes += c32;
    for (p = key & g->set_mask; g->set[p] != 0; p = (p + 1) & g->set_mask)
        ;
    g->set[p] = (uint32_t)slot + 1;
}

/* Removes hash from the ghost; true when it was there. */
static bool
cache_ghost_take(struct cache_ghost *g, uint64_t hash)
{
    size_t p = cache_ghost_find(g, cache_ghost_key(hash));

    if (p == SIZE_MAX)
        return false;
    cache_ghost_vacate(g, p);
    return true;
}

/* ---- queues and the hash table ------------------------------------- */

static struct cache_queue *
cache_shard_queue(struct cache_shard *sh, uint8_t id)
{
    UTIL_ASSERT(id == CACHE_Q_SMALL || id == CACHE_Q_MAIN);
    return id == CACHE_Q_SMALL ? &sh->small : &sh->main;
}

static void
cache_queue_push(struct cache_shard *sh, uint8_t id, struct obj *o)
{
    struct cache_queue *q = cache_shard_queue(sh, id);

    UTIL_ASSERT(o->queue == CACHE_Q_NONE);
    o->queue = id;
    o->q_prev = NULL;
    o->q_next = q->head;
    if (q->head != NULL)
        q->head->q_prev = o;
    else
        q->tail = o;
    q->head = o;
    q->bytes += o->charge;
    q->count++;
}

static void
cache_queue_remove(struct cache_shard *sh, struct obj *o)
{
    struct cache_queue *q = cache_shard_queue(sh, o->queue);

    UTIL_ASSERT(q->count > 0 && q->bytes >= o->charge);
    if (o->q_prev != NULL)
        o->q_prev->q_next = o->q_next;
    else
        q->head = o->q_next;
    if (o->q_next != NULL)
        o->q_next->q_prev = o->q_prev;
    else
        q->tail = o->q_prev;
    o->q_prev = o->q_next = NULL;
    o->queue = CACHE_Q_NONE;
    q->bytes -= o->charge;
    q->count--;
}

static void
cache_queue_move(struct cache_shard *sh, struct obj *o, uint8_t to)
{
    cache_queue_remove(sh, o);
    cache_queue_push(sh, to, o);
}

/* The slot holding the entry for key, or the NULL that ends its chain. */
static struct obj **
cache_shard_slot(struct cache_shard *sh, const char *key, size_t len, uint64_t hash)
{
    struct obj **pp = &sh->buckets[hash & (sh->nbuckets - 1)];

    for (; *pp != NULL; pp = &(*pp)->h_next) {
        const struct obj *o = *pp;
        if (o->hash == hash && o->key_len == len && memcmp(o->key, key, len) == 0)
            break;
    }
    return pp;
}

/* Doubles the table. On allocation failure the chains just grow longer. */
static void
cache_shard_grow(struct cache_shard *sh)
{
    size_t n = sh->nbuckets * 2;
    struct obj **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i < sh->nbuckets; i++) {
        struct obj *o = sh->buckets[i];
        while (o != NULL) {
            struct obj *next = o->h_next;
            struct obj **head = &b[o->hash & (n - 1)];
            o->h_next = *head;
            *head = o;
            o = next;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->nbuckets = n;
}

/* Links o (not yet in the table) with a new index reference. */
static void
cache_shard_link(struct cache_shard *sh, struct obj *o, size_t charge, uint8_t queue, uint8_t freq)
{
    struct obj **head = &sh->buckets[o->hash & (sh->nbuckets - 1)];

    UTIL_ASSERT(!o->linked && o->queue == CACHE_Q_NONE);
    obj_ref(o);
    o->linked = true;
    o->charge = charge;
    o->freq = freq;
    o->h_next = *head;
    *head = o;
    cache_queue_push(sh, queue, o);
    sh->entries++;
    sh->bytes += charge;
    sh->inserts++;
    if (sh->entries > sh->nbuckets)
        cache_shard_grow(sh);
}

/* Unlinks o; the index's reference goes to the caller (to defer). */
static void
cache_shard_unlink(struct cache_shard *sh, struct obj *o)
{
    struct obj **pp = &sh->buckets[o->hash & (sh->nbuckets - 1)];

    UTIL_ASSERT(o->linked && atomic_load(&o->refs) > 0);
    while (*pp != o) {
        UTIL_ASSERT(*pp != NULL); /* a linked entry is on its chain */
        pp = &(*pp)->h_next;
    }
    *pp = o->h_next;
    o->h_next = NULL;
    cache_queue_remove(sh, o);
    UTIL_ASSERT(sh->entries > 0 && sh->bytes >= o->charge);
    sh->entries--;
    sh->bytes -= o->charge;
    o->linked = false;
}

static void
cache_shard_evict_one(struct cache_shard *sh, struct obj *v, struct cache_defer *d)
{
    cache_ghost_add(&sh->ghost, v->hash, v->charge);
    cache_shard_unlink(sh, v);
    sh->evictions++;
    cache_defer_add(d, v);
}

/* The oldest entry of queue id other than keep, or NULL. */
static struct obj *
cache_shard_victim(struct cache_shard *sh, uint8_t id, const struct obj *keep)
{
    struct obj *v = cache_shard_queue(sh, id)->tail;

    if (v != NULL && v == keep)
        v = v->q_prev;
    return v;
}

/* One S3-FIFO step: either moves an entry along or evicts one. */
static void
cache_shard_s3fifo_step(struct cache_shard *sh, const struct obj *keep, struct cache_defer *d)
{
    struct obj *sv = cache_shard_victim(sh, CACHE_Q_SMALL, keep);
    struct obj *mv = cache_shard_victim(sh, CACHE_Q_MAIN, keep);

    if (sv != NULL && (sh->small.bytes > sh->small_max || mv == NULL)) {
        if (sv->freq > 0) {
            sv->freq = 0;
            cache_queue_move(sh, sv, CACHE_Q_MAIN);
        } else {
            cache_shard_evict_one(sh, sv, d);
        }
        return;
    }
    UTIL_ASSERT(mv != NULL);
    if (mv->freq > 0) {
        mv->freq--;
        cache_queue_move(sh, mv, CACHE_Q_MAIN);
    } else {
        cache_shard_evict_one(sh, mv, d);
    }
}

/* Evicts until the shard is within budget, never keep. */
static void
cache_shard_evict(const struct cache *c, struct cache_shard *sh, const struct obj *keep,
                  struct cache_defer *d)
{
    while (sh->bytes > sh->max_bytes) {
        if (c->ev == CACHE_EVICT_LRU) {
            struct obj *v = cache_shard_victim(sh, CACHE_Q_MAIN, keep);
            UTIL_ASSERT(v != NULL); /* keep alone fits, so someone else is here */
            cache_shard_evict_one(sh, v, d);
        } else {
            cache_shard_s3fifo_step(sh, keep, d);
        }
    }
    UTIL_ASSERT(sh->small.bytes + sh->main.bytes == sh->bytes);
    UTIL_ASSERT(sh->small.count + sh->main.count == sh->entries);
}

/* Counts an access to a linked entry. */
static void
cache_shard_touch(const struct cache *c, struct cache_shard *sh, struct obj *o)
{
    UTIL_ASSERT(o->linked && atomic_load(&o->refs) > 0);
    if (c->ev == CACHE_EVICT_LRU)
        cache_queue_move(sh, o, CACHE_Q_MAIN);
    else if (o->freq < CACHE_FREQ_MAX)
        o->freq++;
}

/*
 * Links o, taking the place (queue and freq) of old when there is one, else
 * going to MAIN on a ghost hit and to SMALL otherwise; then evicts.
 */
static void
cache_shard_place(const struct cache *c, struct cache_shard *sh, struct obj *o, size_t charge,
                  struct obj *old, struct cache_defer *d)
{
    uint8_t queue = c->ev == CACHE_EVICT_LRU ? CACHE_Q_MAIN : CACHE_Q_SMALL;
    uint8_t freq = 0;

    if (old != NULL) {
        queue = old->queue;
        freq = old->freq;
        cache_shard_unlink(sh, old);
        sh->removals++;
        cache_defer_add(d, old);
    } else if (cache_ghost_take(&sh->ghost, o->hash)) {
        sh->ghost_hits++;
        queue = CACHE_Q_MAIN;
    }
    cache_shard_link(sh, o, charge, queue, freq);
    cache_shard_evict(c, sh, o, d);
}

/* ---- the API ------------------------------------------------------- */

struct cache *
cache_new(size_t max_bytes, unsigned nshards, enum cache_eviction ev)
{
    struct cache *c = util_xcalloc(1, sizeof(*c));
    size_t shard_bytes;

    UTIL_ASSERT(nshards >= 1 && nshards <= CACHE_MAX_SHARDS && (nshards & (nshards - 1)) == 0);
    UTIL_ASSERT(ev == CACHE_EVICT_S3FIFO || ev == CACHE_EVICT_LRU);
    c->ev = ev;
    c->nshards = nshards;
    while ((1u << c->shard_bits) < nshards)
        c->shard_bits++;
    c->shards = aligned_alloc(64, nshards * sizeof(*c->shards));
    UTIL_ASSERT(c->shards != NULL); /* start-up code: aborting is allowed */
    memset(c->shards, 0, nshards * sizeof(*c->shards));
    shard_bytes = max_bytes / nshards; /* the stats' max_bytes is the sum of these */
    for (unsigned i = 0; i < nshards; i++) {
        struct cache_shard *sh = &c->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        sh->nbuckets = CACHE_BUCKETS_MIN;
        sh->buckets = util_xcalloc(sh->nbuckets, sizeof(*sh->buckets));
        sh->max_bytes = shard_bytes;
        sh->small_max = shard_bytes / 10 * CACHE_SMALL_TENTHS;
        cache_ghost_init(&sh->ghost,
                         ev == CACHE_EVICT_LRU ? shard_bytes : shard_bytes - sh->small_max);
    }
    return c;
}

size_t
cache_entry_limit(const struct cache *c)
{
    return c->shards[0].max_bytes;
}

/*
 * Walks one shard and checks every invariant the fast paths only check
 * locally. O(entries): run at teardown, where it costs nothing extra.
 */
static void
cache_shard_verify(const struct cache_shard *sh)
{
    size_t entries = 0;
    size_t bytes = 0;
    const struct cache_queue *qs[] = {&sh->small, &sh->main};

    for (size_t k = 0; k < 2; k++) {
        const struct cache_queue *q = qs[k];
        size_t n = 0;
        size_t b = 0;
        const struct obj *prev = NULL;
        for (const struct obj *o = q->head; o != NULL; prev = o, o = o->q_next) {
            UTIL_ASSERT(o->linked && atomic_load(&o->refs) > 0);
            UTIL_ASSERT(o->queue == (k == 0 ? CACHE_Q_SMALL : CACHE_Q_MAIN));
            UTIL_ASSERT(o->q_prev == prev && o->freq <= CACHE_FREQ_MAX);
            n++;
            b += o->charge;
        }
        UTIL_ASSERT(q->tail == prev && q->count == n && q->bytes == b);
        entries += n;
        bytes += b;
    }
    UTIL_ASSERT(entries == sh->entries && bytes == sh->bytes && bytes <= sh->max_bytes);
    entries = 0;
    for (size_t i = 0; i < sh->nbuckets; i++)
        for (const struct obj *o = sh->buckets[i]; o != NULL; o = o->h_next) {
            UTIL_ASSERT(o->linked && (o->hash & (sh->nbuckets - 1)) == i);
            entries++;
        }
    UTIL_ASSERT(entries == sh->entries);

    const struct cache_ghost *g = &sh->ghost;
    size_t live = 0;
    size_t gbytes = 0;
    UTIL_ASSERT(g->len <= g->cap);
    for (size_t k = 0; k < g->len; k++) {
        size_t slot = (g->first + k) & (g->cap - 1);
        if (g->hashes[slot] == 0)
            continue;
        size_t p = cache_ghost_find(g, g->hashes[slot]);
        UTIL_ASSERT(p != SIZE_MAX && g->set[p] == slot + 1);
        live++;
        gbytes += g->charges[slot];
    }
    UTIL_ASSERT(live == g->live && gbytes == g->bytes);
    for (size_t p = 0; p <= g->set_mask; p++)
        live -= g->set[p] != 0;
    UTIL_ASSERT(live == 0);
}

void
cache_free(struct cache **cp)
{
    struct cache *c = *cp;

    if (c == NULL)
        return;
    *cp = NULL;
    for (unsigned i = 0; i < c->nshards; i++) {
        struct cache_shard *sh = &c->shards[i];
        struct obj *o;
        /* No other thread may use a cache being freed, so no lock. */
        cache_shard_verify(sh);
        while ((o = sh->main.tail != NULL ? sh->main.tail : sh->small.tail) != NULL) {
            cache_shard_unlink(sh, o);
            obj_unref(&o);
        }
        UTIL_ASSERT(sh->entries == 0 && sh->bytes == 0);
        free(sh->buckets);
        cache_ghost_destroy(&sh->ghost);
        pthread_mutex_destroy(&sh->mu);
    }
    free(c->shards);
    free(c);
}

struct obj *
cache_lookup(struct cache *c, const char *key, size_t len, uint64_t hash)
{
    struct cache_shard *sh = cache_shard_of(c, hash);
    struct obj *o;

    pthread_mutex_lock(&sh->mu);
    sh->lookups++;
    o = *cache_shard_slot(sh, key, len, hash);
    if (o != NULL) {
        sh->hits++;
        cache_shard_touch(c, sh, o);
        obj_ref(o);
    }
    pthread_mutex_unlock(&sh->mu);
    return o;
}

/*
 * A rejected o leaves an entry with its key in place: whether a stale
 * version must go is the caller's decision (cache_remove).
 */
void
cache_note_invalidated(struct cache *c, uint64_t hash)
{
    atomic_store_explicit(&c->invalidated[hash % CACHE_INVALIDATED_SLOTS], hash | 1,
                          memory_order_relaxed);
}

bool
cache_was_invalidated(struct cache *c, uint64_t hash)
{
    return atomic_load_explicit(&c->invalidated[hash % CACHE_INVALIDATED_SLOTS],
                                memory_order_relaxed) == (hash | 1);
}

/* A key stored again is no longer "invalidated lately". */
static void
cache_forget_invalidated(struct cache *c, uint64_t hash)
{
    _Atomic uint64_t *slot = &c->invalidated[hash % CACHE_INVALIDATED_SLOTS];
    uint64_t want = hash | 1;
    if (atomic_load_explicit(slot, memory_order_relaxed) == want)
        atomic_compare_exchange_strong(slot, &want, 0);
}

int
cache_insert(struct cache *c, struct obj *o)
{
    struct cache_shard *sh = cache_shard_of(c, o->hash);
    struct cache_defer d = {.n = 0};
    size_t charge = obj_size(o);

    cache_forget_invalidated(c, o->hash);
    if (charge > sh->max_bytes)
        return -1;
    pthread_mutex_lock(&sh->mu);
    struct obj *old = *cache_shard_slot(sh, o->key, o->key_len, o->hash);
    UTIL_ASSERT(old != o); /* inserting a linked object is a caller bug */
    cache_shard_place(c, sh, o, charge, old, &d);
    pthread_mutex_unlock(&sh->mu);
    cache_defer_flush(&d);
    return 0;
}

/*
 * An existing entry counts as an access (the caller's lookup already
 * counted the miss, so lookups/hits are left alone). An o too large for a
 * shard is not linked and NULL is returned all the same: that takes a
 * shard smaller than one object's key and head, which configuration
 * validation rules out.
 */
struct obj *
cache_insert_or_get(struct cache *c, struct obj *o)
{
    struct cache_shard *sh = cache_shard_of(c, o->hash);
    struct cache_defer d = {.n = 0};
    size_t charge = obj_size(o);
    struct obj *old;

    cache_forget_invalidated(c, o->hash);
    pthread_mutex_lock(&sh->mu);
    old = *cache_shard_slot(sh, o->key, o->key_len, o->hash);
    UTIL_ASSERT(old != o);
    if (old != NULL) {
        cache_shard_touch(c, sh, old);
        obj_ref(old);
    } else if (charge <= sh->max_bytes) {
        cache_shard_place(c, sh, o, charge, NULL, &d);
    }
    pthread_mutex_unlock(&sh->mu);
    cache_defer_flush(&d);
    return old;
}

bool
cache_remove(struct cache *c, const char *key, size_t len, uint64_t hash,
             const struct obj *expected)
{
    struct cache_shard *sh = cache_shard_of(c, hash);
    struct obj *o;

    pthread_mutex_lock(&sh->mu);
    o = *cache_shard_slot(sh, key, len, hash);
    if (o != NULL && (expected == NULL || o == expected)) {
        cache_shard_unlink(sh, o);
        sh->removals++;
    } else {
        o = NULL;
    }
    pthread_mutex_unlock(&sh->mu);
    if (o == NULL)
        return false;
    obj_unref(&o);
    return true;
}

/*
 * When o alone has outgrown the shard it is evicted itself (and counted
 * so): keeping it would break the budget for good, and readers holding
 * references keep streaming it regardless.
 */
void
cache_recharge(struct cache *c, struct obj *o)
{
    struct cache_shard *sh = cache_shard_of(c, o->hash);
    struct cache_defer d = {.n = 0};

    pthread_mutex_lock(&sh->mu);
    if (o->linked) {
        size_t charge = obj_size(o);
        struct cache_queue *q = cache_shard_queue(sh, o->queue);
        UTIL_ASSERT(q->bytes >= o->charge && sh->bytes >= o->charge);
        q->bytes = q->bytes - o->charge + charge;
        sh->bytes = sh->bytes - o->charge + charge;
        o->charge = charge;
        if (charge > sh->max_bytes)
            cache_shard_evict_one(sh, o, &d);
        cache_shard_evict(c, sh, o, &d);
    }
    pthread_mutex_unlock(&sh->mu);
    cache_defer_flush(&d);
}

bool
cache_was_evicted(struct cache *c, uint64_t hash)
{
    struct cache_shard *sh = cache_shard_of(c, hash);
    bool found;

    pthread_mutex_lock(&sh->mu);
    found = cache_ghost_find(&sh->ghost, cache_ghost_key(hash)) != SIZE_MAX;
    pthread_mutex_unlock(&sh->mu);
    return found;
}

/* ---- sweeping ------------------------------------------------------ */

struct cache_sweep {
    bool (*key_filter)(void *arg, const char *key, size_t len);
    bool (*match)(void *arg, struct obj *o);
    void *arg;
    struct obj **batch; /* references to entries key_filter accepted */
    size_t n;
    size_t cap;
    struct obj **heap; /* the batch when a chain outgrew the stack's, or NULL */
    size_t removed;
};

static uint64_t
cache_bit_reverse(uint64_t v)
{
    v = (v >> 1 & 0x5555555555555555ull) | (v & 0x5555555555555555ull) << 1;
    v = (v >> 2 & 0x3333333333333333ull) | (v & 0x3333333333333333ull) << 2;
    v = (v >> 4 & 0x0f0f0f0f0f0f0f0full) | (v & 0x0f0f0f0f0f0f0f0full) << 4;
    v = (v >> 8 & 0x00ff00ff00ff00ffull) | (v & 0x00ff00ff00ff00ffull) << 8;
    v = (v >> 16 & 0x0000ffff0000ffffull) | (v & 0x0000ffff0000ffffull) << 16;
    return v >> 32 | v << 32;
}

/* The bucket after cursor in reverse-binary order under mask; 0 after the last. */
static uint64_t
cache_sweep_next(uint64_t cursor, uint64_t mask)
{
    /* Bits above the mask set, so the increment carries straight into it. */
    return cache_bit_reverse(cache_bit_reverse(cursor | ~mask) + 1);
}

/* Runs match on the batch without any lock and removes what it accepts,
 * unless the key now holds another entry; drops the batch's references. */
static void
cache_sweep_flush(struct cache *c, struct cache_sweep *sw)
{
    for (size_t i = 0; i < sw->n; i++) {
        struct obj *o = sw->batch[i];
        if ((sw->match == NULL || sw->match(sw->arg, o)) &&
            cache_remove(c, o->key, o->key_len, o->hash, o)) {
            cache_note_invalidated(c, o->hash);
            sw->removed++;
        }
        obj_unref(&sw->batch[i]);
    }
    sw->n = 0;
}

/* Gives the (empty) batch room for want references. Returns 0, or -1 when
 * memory runs out (the batch is unchanged). */
static int
cache_sweep_reserve(struct cache_sweep *sw, size_t want)
{
    struct obj **v = reallocarray(sw->heap, want, sizeof(*v));

    UTIL_ASSERT(sw->n == 0);
    if (v == NULL)
        return -1;
    sw->heap = v;
    sw->batch = v;
    sw->cap = want;
    return 0;
}

static void
cache_sweep_shard(struct cache *c, struct cache_shard *sh, struct cache_sweep *sw)
{
    uint64_t cursor = 0;
    size_t scanned = 0;
    bool squeeze = false; /* take what fits of a chain no batch could hold */

    pthread_mutex_lock(&sh->mu);
    for (;;) {
        uint64_t mask = sh->nbuckets - 1;
        struct obj *chain = sh->buckets[cursor & mask];
        size_t len = 0;

        for (const struct obj *o = chain; o != NULL; o = o->h_next)
            len++;
        if (!squeeze && (sw->n + len > sw->cap || scanned >= CACHE_SWEEP_SCAN)) {
            pthread_mutex_unlock(&sh->mu);
            if (sw->n > 0)
                cache_sweep_flush(c, sw);
            else if (len > sw->cap)
                squeeze = cache_sweep_reserve(sw, len) != 0;
            scanned = 0;
            pthread_mutex_lock(&sh->mu);
            continue; /* the table may have changed: look at the bucket again */
        }
        squeeze = false;
        for (struct obj *o = chain; o != NULL && sw->n < sw->cap; o = o->h_next) {
            UTIL_ASSERT(o->linked && atomic_load(&o->refs) > 0);
            if (sw->key_filter == NULL || sw->key_filter(sw->arg, o->key, o->key_len))
                sw->batch[sw->n++] = obj_ref(o);
        }
        scanned += len + 1;
        cursor = cache_sweep_next(cursor, mask);
        if (cursor == 0)
            break;
    }
    pthread_mutex_unlock(&sh->mu);
    cache_sweep_flush(c, sw);
}

size_t
cache_sweep(struct cache *c, bool (*key_filter)(void *arg, const char *key, size_t len),
            bool (*match)(void *arg, struct obj *o), void *arg)
{
    struct obj *stack[CACHE_SWEEP_BATCH];
    struct cache_sweep sw = {
        .key_filter = key_filter,
        .match = match,
        .arg = arg,
        .batch = stack,
        .cap = CACHE_SWEEP_BATCH,
    };

    for (unsigned i = 0; i < c->nshards; i++)
        cache_sweep_shard(c, &c->shards[i], &sw);
    free(sw.heap);
    return sw.removed;
}

void
cache_get_stats(struct cache *c, struct cache_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < c->nshards; i++) {
        struct cache_shard *sh = &c->shards[i];
        pthread_mutex_lock(&sh->mu);
        out->entries += sh->entries;
        out->bytes += sh->bytes;
        out->max_bytes += sh->max_bytes;
        out->lookups += sh->lookups;
        out->hits += sh->hits;
        out->inserts += sh->inserts;
        out->evictions += sh->evictions;
        out->removals += sh->removals;
        out->ghost_hits += sh->ghost_hits;
        pthread_mutex_unlock(&sh->mu);
    }
}
