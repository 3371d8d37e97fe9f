/*
 * evict-sim: what S3-FIFO buys over LRU, measured on the real cache.
 *
 * Drives src/cache.c through cache_lookup() and cache_insert() with real
 * obj.c objects, all of one size (obj_size() == SIM_OBJ_SIZE, set through
 * the head's length), over synthetic traces:
 *
 *   zipf-A        SIM_REQUESTS requests over SIM_KEYS keys, Zipf(alpha A)
 *   zipf-A+scan   the same requests, and after every SIM_SCAN_EVERY of them
 *                 a scan of SIM_SCAN_LEN keys never requested before or after
 *
 * at cache sizes of 1%, 5% and 10% of the Zipf key space, and prints the
 * hit ratio (hits / all requests, scan requests included: they always miss)
 * for LRU and S3-FIFO. A miss inserts the object, as the proxy does.
 *
 * Everything is deterministic: one fixed seed for a splitmix64 generator,
 * Zipf by binary search in a precomputed CDF. The two policies of each row
 * run on two threads (the bench machine has two cores); a run takes a few
 * seconds.
 *
 * It then measures the memory each cached object costs beyond its header
 * and body bytes: sizeof(struct obj), allocator overhead of the object's
 * allocations (malloc_usable_size() minus what was asked, plus glibc's
 * 8-byte chunk header), and the index's own memory (hash buckets, ghost,
 * shards) from mallinfo2() deltas, all divided by the entries cached.
 *
 * Usage: evict-sim [-s nshards]     (default 1 shard: the policies alone)
 */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "obj.h"

#define SIM_KEYS 100000u
#define SIM_REQUESTS 1000000u
#define SIM_SCAN_EVERY 10000u
#define SIM_SCAN_LEN 20000u
#define SIM_OBJ_SIZE 1024u
#define SIM_SEED 0x5eed5eed5eedull
#define SIM_KEY_LEN 11                  /* "k" and ten digits */
#define SIM_CHUNK_HEADER sizeof(size_t) /* glibc malloc's per-chunk size word */

struct sim_trace {
    const char *name;
    uint32_t *ids; /* < SIM_KEYS: Zipf keys; above: scan keys, each once */
    size_t n;
};

struct sim_run {
    const struct sim_trace *trace;
    enum cache_eviction ev;
    size_t max_bytes;
    unsigned nshards;
    size_t head_len;
    double hit_ratio;
};

static uint64_t
sim_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void
sim_key(char *buf, uint32_t id)
{
    buf[0] = 'k';
    for (int i = SIM_KEY_LEN - 1; i >= 1; i--) {
        buf[i] = (char)('0' + id % 10);
        id /= 10;
    }
}

static void *
sim_xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "evict-sim: out of memory\n");
        exit(1);
    }
    return p;
}

/* The Zipf trace, with scans interleaved when scan is set. */
static void
sim_trace_make(struct sim_trace *t, const char *name, double alpha, bool scan)
{
    double *cdf = sim_xmalloc(SIM_KEYS * sizeof(*cdf));
    size_t cap = SIM_REQUESTS + (scan ? SIM_REQUESTS / SIM_SCAN_EVERY * SIM_SCAN_LEN : 0);
    uint64_t rng = SIM_SEED;
    uint32_t next_scan = SIM_KEYS;
    double sum = 0;

    for (uint32_t i = 0; i < SIM_KEYS; i++) {
        sum += 1.0 / pow(i + 1.0, alpha);
        cdf[i] = sum;
    }
    for (uint32_t i = 0; i < SIM_KEYS; i++)
        cdf[i] /= sum;
    cdf[SIM_KEYS - 1] = 1.0;
    t->name = name;
    t->ids = sim_xmalloc(cap * sizeof(*t->ids));
    t->n = 0;
    for (uint32_t r = 0; r < SIM_REQUESTS; r++) {
        double u = (double)(sim_next(&rng) >> 11) * 0x1.0p-53;
        uint32_t lo = 0, hi = SIM_KEYS - 1;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        t->ids[t->n++] = lo;
        if (scan && (r + 1) % SIM_SCAN_EVERY == 0)
            for (uint32_t s = 0; s < SIM_SCAN_LEN; s++)
                t->ids[t->n++] = next_scan++;
    }
    free(cdf);
}

static void *
sim_run_thread(void *arg)
{
    struct sim_run *run = arg;
    const struct sim_trace *t = run->trace;
    struct cache *c = cache_new(run->max_bytes, run->nshards, run->ev);
    struct obj_meta meta = {0};
    char *head = sim_xmalloc(run->head_len);
    char key[SIM_KEY_LEN];
    size_t hits = 0;

    memset(head, 'h', run->head_len);
    for (size_t i = 0; i < t->n; i++) {
        sim_key(key, t->ids[i]);
        uint64_t hash = cache_hash(key, SIM_KEY_LEN);
        struct obj *o = cache_lookup(c, key, SIM_KEY_LEN, hash);
        if (o != NULL) {
            hits++;
            obj_unref(&o);
            continue;
        }
        o = obj_new(OBJ_KIND_RESPONSE, key, SIM_KEY_LEN, hash);
        if (obj_set_head(o, 200, head, run->head_len, 0, &meta) != 0) {
            fprintf(stderr, "evict-sim: out of memory\n");
            exit(1);
        }
        obj_finish(o, OBJ_COMPLETE);
        if (cache_insert(c, o) != 0) {
            fprintf(stderr, "evict-sim: cache too small for one object\n");
            exit(1);
        }
        obj_unref(&o);
    }
    run->hit_ratio = (double)hits / (double)t->n;
    cache_free(&c);
    free(head);
    return NULL;
}

/* The head length that makes obj_size() SIM_OBJ_SIZE for our keys. */
static size_t
sim_head_len(void)
{
    char key[SIM_KEY_LEN];
    struct obj *o;
    size_t bare;

    sim_key(key, 0);
    o = obj_new(OBJ_KIND_RESPONSE, key, SIM_KEY_LEN, cache_hash(key, SIM_KEY_LEN));
    bare = obj_size(o);
    obj_unref(&o);
    if (bare >= SIM_OBJ_SIZE) {
        fprintf(stderr, "evict-sim: an empty object is already %zu bytes\n", bare);
        exit(1);
    }
    return SIM_OBJ_SIZE - bare;
}

static size_t
sim_heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* Per-object memory beyond header and body, for a cache of n objects. */
static void
sim_overhead(size_t n, unsigned nshards, size_t head_len)
{
    struct obj_meta meta = {0};
    char *head = sim_xmalloc(head_len);
    char key[SIM_KEY_LEN];
    size_t m0, m1, m2, obj_slack = 0, head_slack = 0;
    struct cache_stats st;
    struct cache *c;

    memset(head, 'h', head_len);
    m0 = sim_heap_in_use();
    c = cache_new(n * SIM_OBJ_SIZE, nshards, CACHE_EVICT_S3FIFO);
    m1 = sim_heap_in_use();
    for (uint32_t i = 0; i < n; i++) {
        sim_key(key, i);
        struct obj *o = obj_new(OBJ_KIND_RESPONSE, key, SIM_KEY_LEN, cache_hash(key, SIM_KEY_LEN));
        if (obj_set_head(o, 200, head, head_len, 0, &meta) != 0)
            exit(1);
        obj_finish(o, OBJ_COMPLETE);
        if (cache_insert(c, o) != 0)
            exit(1);
        if (i == 0) {
            /* obj.c allocates the key with the struct, the head apart. */
            obj_slack = malloc_usable_size(o) - (sizeof(*o) + SIM_KEY_LEN + 1) + SIM_CHUNK_HEADER;
            head_slack = malloc_usable_size(o->head) - head_len + SIM_CHUNK_HEADER;
        }
        obj_unref(&o);
    }
    m2 = sim_heap_in_use();
    cache_get_stats(c, &st);

    double e = (double)st.entries;
    double objects = (double)st.entries * (double)(sizeof(struct obj) + SIM_KEY_LEN + 1 +
                                                   obj_slack + head_len + head_slack);
    double fixed = (double)(m1 - m0) / e;             /* shards, ghost, first buckets */
    double grown = ((double)(m2 - m1) - objects) / e; /* bucket arrays grown */
    double per_obj = (double)(m2 - m0) / e;
    double overhead = per_obj - (double)head_len;

    printf("\nper-object memory, S3-FIFO, %zu-byte objects, %u shard(s), %.0f entries cached:\n",
           (size_t)SIM_OBJ_SIZE, nshards, e);
    printf("  sizeof(struct obj)                     %6zu\n", sizeof(struct obj));
    printf("  key + NUL (in the obj allocation)      %6d\n", SIM_KEY_LEN + 1);
    printf("  allocator, obj allocation              %6zu  (usable - asked + %zu header)\n",
           obj_slack, SIM_CHUNK_HEADER);
    printf("  allocator, head allocation             %6zu  (usable - head bytes + %zu header)\n",
           head_slack, SIM_CHUNK_HEADER);
    printf("  hash buckets, amortised                %6.1f\n", grown);
    printf("  ghost + shards + initial buckets       %6.1f\n", fixed);
    printf("  measured heap per object (mallinfo2)   %6.1f  (header bytes %zu, body 0)\n", per_obj,
           head_len);
    printf("  overhead beyond header and body        %6.1f  (goal <= 256)\n", overhead);
    printf("  overhead beyond header, body and key   %6.1f\n", overhead - (SIM_KEY_LEN + 1));
    cache_free(&c);
    free(head);
}

static void
sim_usage(void)
{
    fprintf(stderr, "usage: evict-sim [-s nshards]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    static const double pcts[] = {1, 5, 10};
    struct sim_trace traces[4];
    unsigned nshards = 1;
    size_t head_len;
    int ch;

    while ((ch = getopt(argc, argv, "s:h")) != -1) {
        if (ch != 's')
            sim_usage();
        nshards = (unsigned)strtoul(optarg, NULL, 10);
        if (nshards < 1 || nshards > 1024 || (nshards & (nshards - 1)) != 0) {
            fprintf(stderr, "evict-sim: -s wants a power of two, 1..1024\n");
            exit(2);
        }
    }
    if (optind != argc)
        sim_usage();
    head_len = sim_head_len();
    sim_trace_make(&traces[0], "zipf-0.8", 0.8, false);
    sim_trace_make(&traces[1], "zipf-1.0", 1.0, false);
    sim_trace_make(&traces[2], "zipf-0.8+scan", 0.8, true);
    sim_trace_make(&traces[3], "zipf-1.0+scan", 1.0, true);

    printf("evict-sim: %u keys, %u Zipf requests, obj_size %u bytes, %u shard(s), seed %#llx\n",
           SIM_KEYS, SIM_REQUESTS, SIM_OBJ_SIZE, nshards, (unsigned long long)SIM_SEED);
    printf("+scan: after every %u requests a scan of %u one-off keys (%zu requests in all)\n",
           SIM_SCAN_EVERY, SIM_SCAN_LEN, traces[2].n);
    printf("hit ratio = hits / all requests\n\n");
    printf("%-14s %6s %8s %8s %8s\n", "trace", "cache", "LRU", "S3-FIFO", "diff");
    for (size_t t = 0; t < 4; t++) {
        for (size_t p = 0; p < sizeof(pcts) / sizeof(pcts[0]); p++) {
            size_t max_bytes = (size_t)(SIM_KEYS * pcts[p] / 100) * SIM_OBJ_SIZE;
            struct sim_run runs[2] = {
                {&traces[t], CACHE_EVICT_LRU, max_bytes, nshards, head_len, 0},
                {&traces[t], CACHE_EVICT_S3FIFO, max_bytes, nshards, head_len, 0},
            };
            pthread_t tid[2];
            for (int i = 0; i < 2; i++)
                if (pthread_create(&tid[i], NULL, sim_run_thread, &runs[i]) != 0) {
                    fprintf(stderr, "evict-sim: pthread_create failed\n");
                    exit(1);
                }
            for (int i = 0; i < 2; i++)
                pthread_join(tid[i], NULL);
            printf("%-14s %5.0f%% %8.4f %8.4f %+8.4f\n", traces[t].name, pcts[p], runs[0].hit_ratio,
                   runs[1].hit_ratio, runs[1].hit_ratio - runs[0].hit_ratio);
            fflush(stdout);
        }
    }
    for (size_t t = 0; t < 4; t++)
        free(traces[t].ids);

    sim_overhead(SIM_KEYS / 10, nshards, head_len);
    return 0;
}
