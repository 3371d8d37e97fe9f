/*
 * check_cache: unit tests of the memory cache index: references, replace
 * and remove, insert-or-get, the byte budget, S3-FIFO and LRU behaviour,
 * recharging, the ghost, statistics, sweeping (by key, by a match on the
 * object, entries replaced meanwhile, a table growing under the sweep, a
 * chain longer than a batch, sweeps racing other threads), and a
 * multi-threaded stress run.
 *
 * Objects are real obj.c objects; a test that must know an object is gone
 * holds its own reference and checks the count (the index's reference is
 * then dropped exactly once when refs returns to the test's one), and the
 * sanitizer build's leak check proves the last unref freed everything.
 * Caches are sized in "units": the obj_size() of one test object with a
 * key of TEST_KEY_LEN bytes and no head, so budgets are object counts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <xxhash.h>

#include "cache.h"

#define TEST_KEY_LEN 7 /* "k%06u" */

static void
test_key(char *buf, size_t len, unsigned i)
{
    snprintf(buf, len, "k%06u", i);
}

/* A new object for key number i with head_len head bytes (one reference). */
static struct obj *
test_obj(unsigned i, size_t head_len)
{
    char key[16];
    struct obj *o;

    test_key(key, sizeof(key), i);
    o = obj_new(OBJ_KIND_RESPONSE, key, strlen(key), cache_hash(key, strlen(key)));
    if (head_len > 0) {
        struct obj_meta meta = {0};
        char *head = malloc(head_len);
        ck_assert_ptr_nonnull(head);
        memset(head, 'h', head_len);
        ck_assert_int_eq(obj_set_head(o, 200, head, head_len, UINT64_MAX, &meta), 0);
        free(head);
    }
    return o;
}

static size_t
test_unit(void)
{
    struct obj *o = test_obj(0, 0);
    size_t n = obj_size(o);
    obj_unref(&o);
    return n;
}

static struct cache *
test_cache(unsigned objects, unsigned nshards, enum cache_eviction ev)
{
    return cache_new((size_t)objects * nshards * test_unit(), nshards, ev);
}

/* Inserts a fresh object for key i and drops the creator's reference. */
static void
test_put(struct cache *c, unsigned i)
{
    struct obj *o = test_obj(i, 0);
    ck_assert_int_eq(cache_insert(c, o), 0);
    obj_unref(&o);
}

/* Looks key i up (an access) and drops the reference; true on a hit. */
static bool
test_get(struct cache *c, unsigned i)
{
    char key[16];
    struct obj *o;

    test_key(key, sizeof(key), i);
    o = cache_lookup(c, key, strlen(key), cache_hash(key, strlen(key)));
    if (o == NULL)
        return false;
    ck_assert_uint_ge(atomic_load(&o->refs), 2); /* ours and the index's */
    obj_unref(&o);
    return true;
}

static bool
test_evicted(struct cache *c, unsigned i)
{
    char key[16];

    test_key(key, sizeof(key), i);
    return cache_was_evicted(c, cache_hash(key, strlen(key)));
}

static unsigned
test_refs(const struct obj *o)
{
    return atomic_load(&o->refs);
}

START_TEST(test_hash)
{
    ck_assert_uint_eq(cache_hash("abc", 3), XXH3_64bits("abc", 3));
    ck_assert_uint_ne(cache_hash("abc", 3), cache_hash("abd", 3));
    ck_assert_uint_eq(cache_hash("", 0), XXH3_64bits("", 0));
}
END_TEST

START_TEST(test_lookup_insert)
{
    struct cache *c = test_cache(16, 1, CACHE_EVICT_S3FIFO);
    struct obj *o = test_obj(1, 10);
    struct obj *r;

    ck_assert_ptr_null(cache_lookup(c, o->key, o->key_len, o->hash));
    ck_assert_int_eq(cache_insert(c, o), 0);
    ck_assert(o->linked);
    ck_assert_uint_eq(test_refs(o), 2);
    ck_assert_uint_eq(o->charge, obj_size(o));
    r = cache_lookup(c, o->key, o->key_len, o->hash);
    ck_assert_ptr_eq(r, o);
    ck_assert_uint_eq(test_refs(o), 3);
    obj_unref(&r);
    ck_assert_ptr_null(r);
    ck_assert_uint_eq(test_refs(o), 2);
    /* Same bytes, other length: not the same key. */
    ck_assert_ptr_null(cache_lookup(c, o->key, o->key_len - 1, o->hash));
    cache_free(&c);
    ck_assert_ptr_null(c);
    ck_assert(!o->linked);
    ck_assert_uint_eq(test_refs(o), 1);
    obj_unref(&o);
    cache_free(&c); /* NULL is fine */
}
END_TEST

START_TEST(test_hash_collision)
{
    struct cache *c = test_cache(16, 1, CACHE_EVICT_S3FIFO);
    struct obj *a = obj_new(OBJ_KIND_RESPONSE, "alpha", 5, 42);
    struct obj *b = obj_new(OBJ_KIND_RESPONSE, "bravo", 5, 42);
    struct obj *r;

    ck_assert_int_eq(cache_insert(c, a), 0);
    ck_assert_int_eq(cache_insert(c, b), 0);
    r = cache_lookup(c, "alpha", 5, 42);
    ck_assert_ptr_eq(r, a);
    obj_unref(&r);
    r = cache_lookup(c, "bravo", 5, 42);
    ck_assert_ptr_eq(r, b);
    obj_unref(&r);
    ck_assert_ptr_null(cache_lookup(c, "charl", 5, 42));
    ck_assert(cache_remove(c, "alpha", 5, 42, NULL));
    r = cache_lookup(c, "bravo", 5, 42);
    ck_assert_ptr_eq(r, b);
    obj_unref(&r);
    cache_free(&c);
    obj_unref(&a);
    obj_unref(&b);
}
END_TEST

START_TEST(test_replace)
{
    struct cache *c = test_cache(16, 1, CACHE_EVICT_S3FIFO);
    struct obj *a = test_obj(1, 0);
    struct obj *b = test_obj(1, 5);
    struct obj *r;
    struct cache_stats st;

    ck_assert_int_eq(cache_insert(c, a), 0);
    ck_assert_int_eq(cache_insert(c, b), 0);
    ck_assert(!a->linked);
    ck_assert_uint_eq(test_refs(a), 1); /* the index's reference dropped once */
    ck_assert(b->linked);
    r = cache_lookup(c, b->key, b->key_len, b->hash);
    ck_assert_ptr_eq(r, b);
    obj_unref(&r);
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 1);
    ck_assert_uint_eq(st.bytes, obj_size(b));
    ck_assert_uint_eq(st.removals, 1);
    ck_assert_uint_eq(st.inserts, 2);
    ck_assert_uint_eq(st.evictions, 0);
    ck_assert(!cache_was_evicted(c, a->hash)); /* replaced, not evicted */
    cache_free(&c);
    ck_assert_uint_eq(test_refs(b), 1);
    obj_unref(&a);
    obj_unref(&b);
}
END_TEST

START_TEST(test_remove)
{
    struct cache *c = test_cache(16, 1, CACHE_EVICT_S3FIFO);
    struct obj *a = test_obj(1, 0);
    struct obj *other = test_obj(1, 0);
    struct obj *b = test_obj(2, 0);
    struct cache_stats st;

    ck_assert_int_eq(cache_insert(c, a), 0);
    ck_assert_int_eq(cache_insert(c, b), 0);
    /* Only the expected entry goes. */
    ck_assert(!cache_remove(c, a->key, a->key_len, a->hash, other));
    ck_assert(a->linked);
    ck_assert(cache_remove(c, a->key, a->key_len, a->hash, a));
    ck_assert(!a->linked);
    ck_assert_uint_eq(test_refs(a), 1);
    ck_assert(!cache_remove(c, a->key, a->key_len, a->hash, NULL));
    ck_assert(cache_remove(c, b->key, b->key_len, b->hash, NULL));
    ck_assert_uint_eq(test_refs(b), 1);
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.removals, 2);
    ck_assert(!cache_was_evicted(c, a->hash)); /* removed, not evicted */
    /* A removed object may be linked again. */
    ck_assert_int_eq(cache_insert(c, a), 0);
    ck_assert_uint_eq(test_refs(a), 2);
    cache_free(&c);
    obj_unref(&a);
    obj_unref(&b);
    obj_unref(&other);
}
END_TEST

START_TEST(test_reader_survives_eviction)
{
    /* S3-FIFO: the creator's reference is the reader (a lookup would
     * promote the entry to MAIN, where one-off inserts never reach it). */
    struct cache *c = test_cache(8, 1, CACHE_EVICT_S3FIFO);
    struct obj *o = test_obj(1, 0);

    ck_assert_int_eq(cache_insert(c, o), 0);
    ck_assert_uint_eq(test_refs(o), 2);
    for (unsigned i = 100; i < 200 && o->linked; i++)
        test_put(c, i);
    ck_assert(!o->linked);
    ck_assert_uint_eq(test_refs(o), 1); /* the index's reference dropped once */
    ck_assert(memcmp(o->key, "k000001", TEST_KEY_LEN) == 0); /* still readable */
    ck_assert(test_evicted(c, 1));
    ck_assert(!test_get(c, 1));
    obj_unref(&o); /* the last reference frees it */
    cache_free(&c);

    /* LRU: a reader from cache_lookup(), the creator gone. */
    c = test_cache(8, 1, CACHE_EVICT_LRU);
    o = test_obj(1, 0);
    ck_assert_int_eq(cache_insert(c, o), 0);
    struct obj *reader = cache_lookup(c, o->key, o->key_len, o->hash);
    ck_assert_ptr_eq(reader, o);
    obj_unref(&o);
    ck_assert_uint_eq(test_refs(reader), 2);
    for (unsigned i = 100; i < 200 && reader->linked; i++)
        test_put(c, i);
    ck_assert(!reader->linked);
    ck_assert_uint_eq(test_refs(reader), 1);
    ck_assert(memcmp(reader->key, "k000001", TEST_KEY_LEN) == 0);
    obj_unref(&reader);
    cache_free(&c);
}
END_TEST

START_TEST(test_insert_or_get)
{
    struct cache *c = test_cache(16, 1, CACHE_EVICT_S3FIFO);
    struct obj *a = test_obj(1, 0);
    struct obj *b = test_obj(1, 0);
    struct obj *r;

    ck_assert_ptr_null(cache_insert_or_get(c, a));
    ck_assert(a->linked);
    ck_assert_uint_eq(test_refs(a), 2);
    r = cache_insert_or_get(c, b);
    ck_assert_ptr_eq(r, a);
    ck_assert_uint_eq(test_refs(a), 3);
    ck_assert(!b->linked);
    ck_assert_uint_eq(test_refs(b), 1);
    obj_unref(&r);
    /* After a remove, the next one wins. */
    ck_assert(cache_remove(c, a->key, a->key_len, a->hash, a));
    ck_assert_ptr_null(cache_insert_or_get(c, b));
    ck_assert(b->linked);
    cache_free(&c);
    ck_assert_uint_eq(test_refs(a), 1);
    ck_assert_uint_eq(test_refs(b), 1);
    obj_unref(&a);
    obj_unref(&b);
}
END_TEST

static void
test_budget_run(enum cache_eviction ev, unsigned nshards)
{
    struct cache *c = cache_new(64 * 1024, nshards, ev);
    struct cache_stats st;
    uint64_t x = 88172645463325252ull;

    for (unsigned i = 0; i < 5000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        struct obj *o = test_obj((unsigned)(x % 3000), (size_t)(x >> 40) % 3000);
        int rc = cache_insert(c, o);
        if (rc != 0)
            ck_assert_uint_gt(obj_size(o), 64 * 1024 / nshards);
        obj_unref(&o);
        if (x % 3 == 0)
            test_get(c, (unsigned)((x >> 20) % 3000));
        cache_get_stats(c, &st);
        ck_assert_uint_le(st.bytes, st.max_bytes);
    }
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.max_bytes, 64 * 1024 / nshards * nshards);
    ck_assert_uint_gt(st.evictions, 0);
    ck_assert_uint_gt(st.entries, 0);
    ck_assert_uint_eq(st.inserts, st.entries + st.evictions + st.removals);
    cache_free(&c); /* verifies every shard's invariants */
}

START_TEST(test_budget)
{
    test_budget_run(CACHE_EVICT_S3FIFO, 1);
    test_budget_run(CACHE_EVICT_S3FIFO, 4);
    test_budget_run(CACHE_EVICT_LRU, 1);
    test_budget_run(CACHE_EVICT_LRU, 8);
}
END_TEST

START_TEST(test_oversize)
{
    struct cache *c = cache_new(4096, 1, CACHE_EVICT_S3FIFO);
    struct obj *big = test_obj(1, 5000);
    struct obj *small = test_obj(2, 0);
    struct cache_stats st;

    ck_assert_int_eq(cache_insert(c, small), 0);
    ck_assert_int_eq(cache_insert(c, big), -1);
    ck_assert(!big->linked);
    ck_assert_uint_eq(test_refs(big), 1);
    ck_assert(small->linked); /* nothing was evicted for it */
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 1);
    ck_assert_uint_eq(st.inserts, 1);
    ck_assert_uint_eq(st.evictions, 0);
    cache_free(&c);
    obj_unref(&big);
    obj_unref(&small);
}
END_TEST

/* Fills a 20-object S3-FIFO cache with one-off entries 1000.. . */
static struct cache *
test_s3fifo_full(void)
{
    struct cache *c = test_cache(20, 1, CACHE_EVICT_S3FIFO);
    for (unsigned i = 0; i < 20; i++)
        test_put(c, 1000 + i);
    return c;
}

START_TEST(test_s3fifo_one_hit_wonder)
{
    struct cache *c = test_s3fifo_full();
    struct cache_stats st;

    test_put(c, 1); /* accessed again below */
    test_put(c, 2); /* one-hit wonder, inserted after 1 */
    ck_assert(test_get(c, 1));
    for (unsigned i = 0; i < 25; i++)
        test_put(c, 2000 + i);
    /* 2 is younger than 1 but went first: 1 was promoted to MAIN. */
    ck_assert(test_evicted(c, 2));
    ck_assert(!test_evicted(c, 1));
    ck_assert(!test_get(c, 2));
    ck_assert(test_get(c, 1));
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 20);
    cache_free(&c);
}
END_TEST

START_TEST(test_s3fifo_ghost_to_main)
{
    struct cache *c = test_s3fifo_full();
    struct cache_stats st;

    test_put(c, 1);
    for (unsigned i = 0; i < 25; i++)
        test_put(c, 2000 + i);
    ck_assert(test_evicted(c, 1));
    test_put(c, 1); /* a ghost hit: straight to MAIN */
    ck_assert(!test_evicted(c, 1));
    test_put(c, 2); /* a cold insert at the same time, to SMALL */
    for (unsigned i = 0; i < 25; i++)
        test_put(c, 3000 + i);
    ck_assert(test_evicted(c, 2));
    ck_assert(test_get(c, 1));
    ck_assert(!test_get(c, 2));
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.ghost_hits, 1);
    cache_free(&c);
}
END_TEST

/* Hot set: 20 keys read twice; then a scan of 2000 one-off keys in a
 * 100-object cache. Returns how many hot keys still hit. */
static unsigned
test_scan_run(enum cache_eviction ev)
{
    struct cache *c = test_cache(100, 1, ev);
    unsigned hits = 0;

    for (unsigned i = 0; i < 20; i++)
        test_put(c, i);
    for (unsigned r = 0; r < 2; r++)
        for (unsigned i = 0; i < 20; i++)
            ck_assert(test_get(c, i));
    for (unsigned i = 0; i < 2000; i++)
        test_put(c, 100000 + i);
    for (unsigned i = 0; i < 20; i++)
        hits += test_get(c, i);
    cache_free(&c);
    return hits;
}

START_TEST(test_scan_resistance)
{
    ck_assert_uint_eq(test_scan_run(CACHE_EVICT_S3FIFO), 20);
    ck_assert_uint_eq(test_scan_run(CACHE_EVICT_LRU), 0);
}
END_TEST

START_TEST(test_s3fifo_main_reinsertion)
{
    struct cache *c = test_cache(20, 1, CACHE_EVICT_S3FIFO);

    for (unsigned i = 0; i < 20; i++) {
        test_put(c, i);
        ck_assert(test_get(c, i));
    }
    /* Overflow: 0..19 move to MAIN with freq 0, and MAIN's tail goes. */
    test_put(c, 100);
    ck_assert(test_evicted(c, 0));
    ck_assert(test_get(c, 1)); /* read while in MAIN */
    /* SMALL is at (not over) its tenth, so MAIN evicts: 1 is reinserted, 2 goes. */
    test_put(c, 101);
    ck_assert(test_evicted(c, 2));
    ck_assert(!test_evicted(c, 1));
    ck_assert(test_get(c, 1));
    ck_assert(!test_get(c, 2));
    cache_free(&c);
}
END_TEST

START_TEST(test_lru_order)
{
    struct cache *c = test_cache(5, 1, CACHE_EVICT_LRU);

    for (unsigned i = 1; i <= 5; i++)
        test_put(c, i);
    ck_assert(test_get(c, 1)); /* 1 becomes the newest */
    test_put(c, 6);
    ck_assert(test_evicted(c, 2)); /* LRU records evictions in the ghost too */
    ck_assert(!test_evicted(c, 1));
    test_put(c, 7);
    ck_assert(test_evicted(c, 3));
    ck_assert(test_get(c, 1));
    ck_assert(test_get(c, 4));
    test_put(c, 8);
    test_put(c, 9);
    /* Order now, oldest first, was 5 6 7 1 4; 5 and 6 go. */
    ck_assert(test_evicted(c, 5));
    ck_assert(test_evicted(c, 6));
    ck_assert(!test_evicted(c, 7));
    ck_assert(test_get(c, 7));
    cache_free(&c);
}
END_TEST

START_TEST(test_recharge)
{
    size_t unit = test_unit();
    struct cache *c = cache_new(40 * unit, 1, CACHE_EVICT_S3FIFO);
    struct obj *o = test_obj(1, 0);
    struct obj *loose = test_obj(2, 0);
    struct cache_stats st;
    char body[1024];

    ck_assert_int_eq(cache_insert(c, o), 0);
    for (unsigned i = 0; i < 39; i++)
        test_put(c, 100 + i);
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 40);
    ck_assert_uint_eq(st.evictions, 0);

    /* o grows by several units (obj.c allocates whole segments): others
     * make room, o stays. */
    memset(body, 'b', sizeof(body));
    while (obj_size(o) < 4 * unit)
        ck_assert_int_eq(obj_append(o, body, sizeof(body)), 0);
    ck_assert_uint_lt(obj_size(o), 40 * unit);
    cache_recharge(c, o);
    ck_assert(o->linked);
    ck_assert_uint_eq(o->charge, obj_size(o));
    cache_get_stats(c, &st);
    ck_assert_uint_le(st.bytes, st.max_bytes);
    ck_assert_uint_gt(st.evictions, 0);
    ck_assert_uint_eq(st.entries, 40 - st.evictions);
    ck_assert_uint_eq(st.bytes, obj_size(o) + (st.entries - 1) * unit);

    /* Not linked: nothing happens. */
    cache_recharge(c, loose);
    ck_assert(!loose->linked);

    /* Outgrowing the whole shard evicts o itself. */
    while (obj_size(o) <= 40 * unit)
        ck_assert_int_eq(obj_append(o, body, sizeof(body)), 0);
    cache_recharge(c, o);
    ck_assert(!o->linked);
    ck_assert_uint_eq(test_refs(o), 1);
    ck_assert(cache_was_evicted(c, o->hash));
    cache_get_stats(c, &st);
    ck_assert_uint_le(st.bytes, st.max_bytes);
    ck_assert_uint_eq(st.bytes, st.entries * unit);
    cache_free(&c);
    obj_unref(&o);
    obj_unref(&loose);
}
END_TEST

START_TEST(test_was_evicted)
{
    struct cache *c = test_cache(4, 1, CACHE_EVICT_S3FIFO);

    ck_assert(!test_evicted(c, 1));
    for (unsigned i = 1; i <= 5; i++)
        test_put(c, i);
    ck_assert(test_evicted(c, 1));
    ck_assert(!test_evicted(c, 2));
    ck_assert(!test_evicted(c, 77)); /* never seen */
    test_put(c, 1);                  /* cached again: no longer "evicted" */
    ck_assert(!test_evicted(c, 1));
    cache_free(&c);
}
END_TEST

START_TEST(test_ghost_bounded)
{
    /* The ghost forgets: it remembers about as many bytes as MAIN holds. */
    struct cache *c = test_cache(50, 1, CACHE_EVICT_S3FIFO);

    for (unsigned i = 0; i < 5000; i++)
        test_put(c, i);
    ck_assert(!test_evicted(c, 0));
    ck_assert(!test_evicted(c, 4000));
    ck_assert(test_evicted(c, 4940));
    cache_free(&c);
}
END_TEST

START_TEST(test_stats)
{
    struct cache *c = test_cache(4, 1, CACHE_EVICT_S3FIFO);
    struct cache_stats st;
    struct obj *o;
    struct obj *r;

    for (unsigned i = 1; i <= 6; i++)
        test_put(c, i); /* 1 and 2 are evicted */
    test_put(c, 6);     /* a replacement */
    ck_assert(test_get(c, 3));
    ck_assert(!test_get(c, 1));
    ck_assert(!test_get(c, 99));
    ck_assert(cache_remove(c, "k000005", TEST_KEY_LEN, cache_hash("k000005", TEST_KEY_LEN), NULL));
    test_put(c, 1); /* a ghost hit; the cache is exactly full again */
    o = test_obj(6, 0);
    r = cache_insert_or_get(c, o); /* found: not an insert */
    ck_assert_ptr_nonnull(r);
    obj_unref(&r);
    obj_unref(&o);
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.lookups, 3);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_uint_eq(st.inserts, 8);
    ck_assert_uint_eq(st.evictions, 2);
    ck_assert_uint_eq(st.removals, 2);
    ck_assert_uint_eq(st.ghost_hits, 1);
    ck_assert_uint_eq(st.entries, 4);
    ck_assert_uint_eq(st.bytes, 4 * test_unit());
    ck_assert_uint_eq(st.max_bytes, 4 * test_unit());
    cache_free(&c);
}
END_TEST

/* ---- cache_sweep() -------------------------------------------------- */

/* What the sweep callbacks see and do. */
struct test_sweep {
    struct cache *c;
    const char *prefix;    /* key_filter: keys starting with it */
    const char *needle;    /* match: heads containing it (NULL: all) */
    unsigned calls[4096];  /* match calls per key number */
    unsigned filter_calls; /* key_filter calls */
    unsigned replace_mod;  /* match: replaces keys whose number % mod == 0 (0: none) */
    unsigned grow;         /* match: inserts this many "n" keys on its first call */
    bool keep_odd;         /* match: says no to odd key numbers */
    struct obj *replaced[4096];
};

static bool
test_sweep_on_key(void *arg, const char *key, size_t len)
{
    struct test_sweep *t = arg;
    size_t n = strlen(t->prefix);

    t->filter_calls++;
    return len >= n && memcmp(key, t->prefix, n) == 0;
}

static unsigned
test_key_number(const struct obj *o)
{
    return (unsigned)strtoul(o->key + 1, NULL, 10);
}

/* Reads the head under the object's lock, as the contract allows. */
static bool
test_sweep_on_match(void *arg, struct obj *o)
{
    struct test_sweep *t = arg;
    unsigned i = test_key_number(o);
    bool hit = true;

    ck_assert_uint_lt(i, 4096);
    ck_assert_uint_ge(test_refs(o), 2); /* the sweep's own, and the index's */
    t->calls[i]++;
    if (t->needle != NULL) {
        obj_lock(o);
        hit = o->head != NULL && memmem(o->head, o->head_len, t->needle, strlen(t->needle)) != NULL;
        obj_unlock(o);
    }
    if (t->replace_mod != 0 && i % t->replace_mod == 0) {
        /* Another thread replaces the entry between gathering and removal. */
        struct obj *n = test_obj(i, 3);
        ck_assert_int_eq(cache_insert(t->c, n), 0);
        t->replaced[i] = n;
    }
    for (; t->grow > 0; t->grow--) {
        char key[16];
        snprintf(key, sizeof(key), "n%06u", t->grow);
        struct obj *n = obj_new(OBJ_KIND_RESPONSE, key, strlen(key), cache_hash(key, strlen(key)));
        ck_assert_int_eq(cache_insert(t->c, n), 0);
        obj_unref(&n);
    }
    return hit && !(t->keep_odd && i % 2 == 1);
}

/* A new object for key i whose head is text. */
static struct obj *
test_obj_head(unsigned i, const char *text)
{
    struct obj *o = test_obj(i, 0);
    struct obj_meta meta = {0};

    ck_assert_int_eq(obj_set_head(o, 200, text, strlen(text), UINT64_MAX, &meta), 0);
    return o;
}

START_TEST(test_sweep_prefix)
{
    struct cache *c = test_cache(512, 4, CACHE_EVICT_S3FIFO);
    struct test_sweep *t = calloc(1, sizeof(*t));
    struct obj *held;
    struct cache_stats st;

    ck_assert_ptr_nonnull(t);
    for (unsigned i = 0; i < 300; i++)
        test_put(c, i);
    held = cache_lookup(c, "k000150", TEST_KEY_LEN, cache_hash("k000150", TEST_KEY_LEN));
    ck_assert_ptr_nonnull(held);
    t->c = c;
    t->prefix = "k0001"; /* 100..199 */
    ck_assert_uint_eq(cache_sweep(c, test_sweep_on_key, NULL, t), 100);
    ck_assert_uint_eq(t->filter_calls, 300); /* each entry once */
    for (unsigned i = 0; i < 300; i++)
        ck_assert_msg(test_get(c, i) == (i < 100 || i >= 200), "key %u", i);
    /* The index's reference was dropped; a reader's survives. */
    ck_assert(!held->linked);
    ck_assert_uint_eq(test_refs(held), 1);
    obj_unref(&held);
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 200);
    ck_assert_uint_eq(st.bytes, 200 * test_unit());
    ck_assert_uint_eq(st.removals, 100);
    ck_assert_uint_eq(st.evictions, 0);
    ck_assert_uint_eq(st.entries, st.inserts - st.evictions - st.removals);
    /* Nothing left to sweep. */
    ck_assert_uint_eq(cache_sweep(c, test_sweep_on_key, NULL, t), 0);
    free(t);
    cache_free(&c);
}
END_TEST

START_TEST(test_sweep_match)
{
    struct cache *c = test_cache(512, 2, CACHE_EVICT_LRU);
    struct test_sweep *t = calloc(1, sizeof(*t));
    struct cache_stats st;
    unsigned red = 0;

    ck_assert_ptr_nonnull(t);
    for (unsigned i = 0; i < 200; i++) {
        struct obj *o =
            test_obj_head(i, i % 3 == 0 ? "Surrogate-Key: red\r\n" : "Surrogate-Key: blue\r\n");
        ck_assert_int_eq(cache_insert(c, o), 0);
        obj_unref(&o);
        red += i % 3 == 0 && i >= 100;
    }
    /* A VARY-like entry without a head: match sees it and says no. */
    struct obj *bare = test_obj(150, 0);
    ck_assert_int_eq(cache_insert(c, bare), 0);
    obj_unref(&bare);
    t->c = c;
    t->prefix = "k0001";
    t->needle = "red";
    ck_assert_uint_eq(cache_sweep(c, test_sweep_on_key, test_sweep_on_match, t), red - 1);
    for (unsigned i = 0; i < 200; i++) {
        ck_assert_uint_eq(t->calls[i], i >= 100); /* match runs only on what the filter took */
        ck_assert_msg(test_get(c, i) == (i < 100 || i % 3 != 0 || i == 150), "key %u", i);
    }
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.removals, 1 + red - 1); /* the replaced 150, and the sweep */
    ck_assert_uint_eq(st.entries, st.inserts - st.evictions - st.removals);
    free(t);
    cache_free(&c);
}
END_TEST

/* An entry replaced after it was gathered is not removed: the removal
 * names the entry, not the key. */
START_TEST(test_sweep_replaced)
{
    struct cache *c = test_cache(512, 4, CACHE_EVICT_S3FIFO);
    struct test_sweep *t = calloc(1, sizeof(*t));
    struct cache_stats st;

    ck_assert_ptr_nonnull(t);
    for (unsigned i = 0; i < 100; i++)
        test_put(c, i);
    t->c = c;
    t->prefix = "k";
    t->replace_mod = 2;
    ck_assert_uint_eq(cache_sweep(c, test_sweep_on_key, test_sweep_on_match, t), 50);
    for (unsigned i = 0; i < 100; i++) {
        struct obj *o = cache_lookup(c, "", 0, 0);
        char key[16];
        ck_assert_ptr_null(o);
        test_key(key, sizeof(key), i);
        o = cache_lookup(c, key, strlen(key), cache_hash(key, strlen(key)));
        ck_assert_uint_eq(t->calls[i], 1);
        if (i % 2 == 0) {
            ck_assert_ptr_eq(o, t->replaced[i]);
            ck_assert(o->linked);
        } else {
            ck_assert_ptr_null(o);
        }
        obj_unref(&o);
        obj_unref(&t->replaced[i]);
    }
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 50);
    ck_assert_uint_eq(st.removals, 100); /* 50 replacements, 50 by the sweep */
    free(t);
    cache_free(&c);
}
END_TEST

START_TEST(test_sweep_all)
{
    struct cache *c = test_cache(512, 8, CACHE_EVICT_S3FIFO);
    struct cache_stats st;

    ck_assert_uint_eq(cache_sweep(c, NULL, NULL, NULL), 0);
    for (unsigned i = 0; i < 400; i++)
        test_put(c, i);
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 400);
    ck_assert_uint_eq(cache_sweep(c, NULL, NULL, NULL), 400);
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.removals, 400);
    ck_assert_uint_eq(st.evictions, 0);
    ck_assert(
        !cache_was_evicted(c, cache_hash("k000001", TEST_KEY_LEN))); /* removed, not evicted */
    test_put(c, 1);
    ck_assert(test_get(c, 1));
    cache_free(&c);
}
END_TEST

/*
 * The table doubles while the sweep is under way (match inserts keys the
 * filter rejects): every entry there from the start is still seen exactly
 * once, and none of the new ones is touched. The entries match keeps are
 * the ones a plain linear cursor would see twice.
 */
START_TEST(test_sweep_growth)
{
    struct cache *c = test_cache(8192, 1, CACHE_EVICT_S3FIFO);
    struct test_sweep *t = calloc(1, sizeof(*t));
    struct cache_stats st;

    ck_assert_ptr_nonnull(t);
    for (unsigned i = 0; i < 600; i++)
        test_put(c, i);
    t->c = c;
    t->prefix = "k";
    t->grow = 3000;
    t->keep_odd = true;
    ck_assert_uint_eq(cache_sweep(c, test_sweep_on_key, test_sweep_on_match, t), 300);
    for (unsigned i = 0; i < 600; i++) {
        ck_assert_msg(t->calls[i] == 1, "key %u: %u calls", i, t->calls[i]);
        ck_assert(test_get(c, i) == (i % 2 == 1));
    }
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 3300);
    ck_assert_uint_eq(st.removals, 300);
    free(t);
    cache_free(&c);
}
END_TEST

/* One chain longer than a batch (every key given the same hash): it gets
 * a batch of its own and is swept whole. */
START_TEST(test_sweep_long_chain)
{
    struct cache *c = test_cache(2048, 1, CACHE_EVICT_S3FIFO);
    struct test_sweep *t = calloc(1, sizeof(*t));
    struct cache_stats st;

    ck_assert_ptr_nonnull(t);
    for (unsigned i = 0; i < 1000; i++) {
        char key[16];
        test_key(key, sizeof(key), i);
        struct obj *o = obj_new(OBJ_KIND_RESPONSE, key, strlen(key), 42);
        ck_assert_int_eq(cache_insert(c, o), 0);
        obj_unref(&o);
    }
    t->c = c;
    t->prefix = "k";
    ck_assert_uint_eq(cache_sweep(c, test_sweep_on_key, test_sweep_on_match, t), 1000);
    for (unsigned i = 0; i < 1000; i++)
        ck_assert_uint_eq(t->calls[i], 1);
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 0);
    free(t);
    cache_free(&c);
}
END_TEST

/* Sweeps racing inserts, lookups and removes on other threads: the
 * invariants hold (cache_free verifies them) and nothing leaks. */
struct test_sweep_race {
    struct cache *c;
    atomic_bool *stop;
    unsigned seed;
};

static void *
test_sweep_racer(void *arg)
{
    struct test_sweep_race *r = arg;
    uint64_t x = 0x9e3779b97f4a7c15ull * (r->seed + 1);

    while (!atomic_load(r->stop)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned k = (unsigned)(x % 500);
        if (x >> 60 < 8) {
            test_put(r->c, k);
        } else if (x >> 60 < 14) {
            test_get(r->c, k);
        } else {
            char key[16];
            test_key(key, sizeof(key), k);
            cache_remove(r->c, key, strlen(key), cache_hash(key, strlen(key)), NULL);
        }
    }
    return NULL;
}

START_TEST(test_sweep_race)
{
    struct cache *c = test_cache(128, 4, CACHE_EVICT_S3FIFO);
    struct test_sweep *t = calloc(1, sizeof(*t));
    atomic_bool stop = false;
    struct test_sweep_race r[2];
    pthread_t tid[2];
    struct cache_stats st;
    size_t removed = 0;

    ck_assert_ptr_nonnull(t);
    t->c = c;
    t->prefix = "k0002";
    for (unsigned i = 0; i < 2; i++) {
        r[i] = (struct test_sweep_race){.c = c, .stop = &stop, .seed = i};
        ck_assert_int_eq(pthread_create(&tid[i], NULL, test_sweep_racer, &r[i]), 0);
    }
    for (unsigned n = 0; n < 200; n++)
        removed += cache_sweep(c, n % 2 ? test_sweep_on_key : NULL, NULL, t);
    atomic_store(&stop, true);
    for (unsigned i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
    cache_get_stats(c, &st);
    ck_assert_uint_le(removed, st.removals);
    ck_assert_uint_eq(st.entries, st.inserts - st.evictions - st.removals);
    free(t);
    cache_free(&c);
}
END_TEST

/*
 * The stress run: TEST_THREADS threads do random lookups, inserts,
 * insert-or-gets, removes and recharges over a small key space on a small
 * sharded cache. Every object created is kept with one extra reference, so
 * at the end each must be back to exactly that one after cache_free().
 */
#define TEST_THREADS 4
#define TEST_OPS 40000
#define TEST_KEYS 600

struct test_stress {
    struct cache *c;
    unsigned seed;
    struct obj **made;
    size_t nmade;
};

static void *
test_stress_thread(void *arg)
{
    struct test_stress *t = arg;
    uint64_t x = 0x9e3779b97f4a7c15ull * (t->seed + 1);
    char body[512];

    memset(body, 'b', sizeof(body));
    for (unsigned n = 0; n < TEST_OPS; n++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned k = (unsigned)(x % TEST_KEYS);
        unsigned op = (unsigned)((x >> 32) % 100);
        char key[16];
        test_key(key, sizeof(key), k);
        if (op < 50) {
            struct obj *o = cache_lookup(t->c, key, strlen(key), cache_hash(key, strlen(key)));
            if (o != NULL)
                ck_assert_str_eq(o->key, key);
            obj_unref(&o);
        } else if (op < 90) {
            struct obj *o = test_obj(k, (size_t)(x >> 50) % 700);
            t->made[t->nmade++] = obj_ref(o);
            if (op < 70) {
                cache_insert(t->c, o);
            } else if (op < 80) {
                struct obj *r = cache_insert_or_get(t->c, o);
                obj_unref(&r);
            } else {
                /* The filling thread grows its object and recharges it. */
                cache_insert(t->c, o);
                ck_assert_int_eq(obj_append(o, body, (size_t)(x >> 20) % sizeof(body) + 1), 0);
                cache_recharge(t->c, o);
            }
            obj_unref(&o);
        } else {
            cache_remove(t->c, key, strlen(key), cache_hash(key, strlen(key)), NULL);
        }
        if (n % 4096 == 0) {
            struct cache_stats st;
            cache_get_stats(t->c, &st);
            ck_assert_uint_le(st.bytes, st.max_bytes);
        }
    }
    return NULL;
}

START_TEST(test_stress)
{
    struct test_stress ts[TEST_THREADS];
    pthread_t tid[TEST_THREADS];
    struct cache *c = cache_new(96 * 1024, 4, _i == 0 ? CACHE_EVICT_S3FIFO : CACHE_EVICT_LRU);
    struct cache_stats st;
    size_t linked = 0;

    for (unsigned i = 0; i < TEST_THREADS; i++) {
        ts[i] = (struct test_stress){.c = c, .seed = i};
        ts[i].made = calloc(TEST_OPS, sizeof(*ts[i].made));
        ck_assert_ptr_nonnull(ts[i].made);
        ck_assert_int_eq(pthread_create(&tid[i], NULL, test_stress_thread, &ts[i]), 0);
    }
    for (unsigned i = 0; i < TEST_THREADS; i++)
        ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
    for (unsigned i = 0; i < TEST_THREADS; i++)
        for (size_t j = 0; j < ts[i].nmade; j++)
            linked += ts[i].made[j]->linked;
    cache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, linked);
    ck_assert_uint_le(st.bytes, st.max_bytes);
    ck_assert_uint_eq(st.entries, st.inserts - st.evictions - st.removals);
    ck_assert_uint_gt(st.evictions, 0);
    cache_free(&c); /* checks every shard's invariants, then drops the index's refs */
    for (unsigned i = 0; i < TEST_THREADS; i++) {
        for (size_t j = 0; j < ts[i].nmade; j++) {
            ck_assert(!ts[i].made[j]->linked);
            ck_assert_uint_eq(test_refs(ts[i].made[j]), 1);
            obj_unref(&ts[i].made[j]); /* frees: the leak checker sees any left */
        }
        free(ts[i].made);
    }
}
END_TEST

static Suite *
cache_suite(void)
{
    Suite *s = suite_create("cache");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"hash", test_hash},
        {"lookup_insert", test_lookup_insert},
        {"hash_collision", test_hash_collision},
        {"replace", test_replace},
        {"remove", test_remove},
        {"reader_survives_eviction", test_reader_survives_eviction},
        {"insert_or_get", test_insert_or_get},
        {"budget", test_budget},
        {"oversize", test_oversize},
        {"s3fifo_one_hit_wonder", test_s3fifo_one_hit_wonder},
        {"s3fifo_ghost_to_main", test_s3fifo_ghost_to_main},
        {"s3fifo_main_reinsertion", test_s3fifo_main_reinsertion},
        {"scan_resistance", test_scan_resistance},
        {"lru_order", test_lru_order},
        {"recharge", test_recharge},
        {"was_evicted", test_was_evicted},
        {"ghost_bounded", test_ghost_bounded},
        {"stats", test_stats},
        {"sweep_prefix", test_sweep_prefix},
        {"sweep_match", test_sweep_match},
        {"sweep_replaced", test_sweep_replaced},
        {"sweep_all", test_sweep_all},
        {"sweep_growth", test_sweep_growth},
        {"sweep_long_chain", test_sweep_long_chain},
        {"sweep_race", test_sweep_race},
    };
    TCase *tc;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    /* Once per eviction mode (_i selects it). */
    tc = tcase_create("stress");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_stress, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(cache_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
