/*
 * check_hist: unit tests of hist: the bucket layout, the accuracy of
 * quantiles against exact sample quantiles on synthetic latency
 * distributions, merging, sparse deltas and sliding windows, classic
 * Prometheus bucket counts, and one thread recording while another merges.
 *
 * Samples come from a splitmix64 generator with fixed seeds, so every run
 * sees the same numbers whatever libc's rand() state is. The exact quantile
 * uses hist.h's rank rule, written again here independently: the rank-th
 * smallest sample, rank = max(1, ceil(q * n)).
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "hist.h"

#define T_SEED 0x7a11cac4e5eedull
#define T_ACC_SAMPLES 500000u
#define T_MAX_REL_ERR (1.0 / 128) /* 2^-(HIST_SUB_BITS + 1); the brief asks for 1% */
#define T_LAST (HIST_NBUCKETS - 1)

static uint64_t
t_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]: never 0, so log() and pow(u, -a) stay finite. */
static double
t_unit(uint64_t *s)
{
    return (double)((t_next(s) >> 11) + 1) * 0x1p-53;
}

/* Standard normal, Box-Muller (one of the pair is enough here). */
static double
t_normal(uint64_t *s)
{
    double u1 = t_unit(s), u2 = t_unit(s);

    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Latencies are whole µs, at least 1 (the error bound is relative). */
static uint64_t
t_us(double x)
{
    if (!(x >= 1.0))
        return 1;
    if (x > 1e15)
        return (uint64_t)1e15;
    return (uint64_t)llround(x);
}

static uint64_t
t_gen_uniform(uint64_t *s)
{
    return 1 + t_next(s) % 1000000; /* 1 µs .. 1 s */
}

static uint64_t
t_gen_exponential(uint64_t *s)
{
    return t_us(-2000.0 * log(t_unit(s))); /* mean 2 ms */
}

static uint64_t
t_gen_lognormal(uint64_t *s)
{
    return t_us(exp(log(1000.0) + 1.5 * t_normal(s))); /* median 1 ms */
}

static uint64_t
t_gen_pareto_1_1(uint64_t *s)
{
    return t_us(100.0 * pow(t_unit(s), -1.0 / 1.1)); /* from 100 µs, heavy */
}

static uint64_t
t_gen_pareto_2(uint64_t *s)
{
    return t_us(100.0 * pow(t_unit(s), -1.0 / 2.0));
}

/* 90% cache hits near 200 µs, 10% misses near 50 ms. */
static uint64_t
t_gen_bimodal(uint64_t *s)
{
    if (t_unit(s) <= 0.9)
        return t_us(exp(log(200.0) + 0.2 * t_normal(s)));
    return t_us(exp(log(50000.0) + 0.3 * t_normal(s)));
}

static uint64_t
t_gen_constant(uint64_t *s)
{
    (void)t_next(s);
    return 12345;
}

/* Below 2^(HIST_SUB_BITS + 1) every bucket is one integer: no error. */
static uint64_t
t_gen_small(uint64_t *s)
{
    return t_next(s) % 128;
}

typedef uint64_t (*t_gen_fn)(uint64_t *s);

static const struct {
    const char *name;
    t_gen_fn gen;
} t_dists[] = {
    {"uniform", t_gen_uniform},     {"exponential", t_gen_exponential},
    {"lognormal", t_gen_lognormal}, {"pareto-1.1", t_gen_pareto_1_1},
    {"pareto-2", t_gen_pareto_2},   {"bimodal", t_gen_bimodal},
    {"constant", t_gen_constant},   {"small", t_gen_small},
};

#define T_NDISTS (sizeof(t_dists) / sizeof(t_dists[0]))

static int
t_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static uint64_t *
t_samples(t_gen_fn gen, uint64_t seed, size_t n)
{
    uint64_t *v = malloc(n * sizeof(*v));

    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < n; i++)
        v[i] = gen(&seed);
    return v;
}

static struct hist *
t_hist_new(void)
{
    struct hist *h = calloc(1, sizeof(*h));

    ck_assert_ptr_nonnull(h);
    return h;
}

/* The exact q-quantile of sorted samples, by hist.h's rank rule. */
static uint64_t
t_exact(const uint64_t *sorted, size_t n, double q)
{
    uint64_t rank = (uint64_t)ceil(q * (double)n);

    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

static double
t_rel_err(uint64_t got, uint64_t exact)
{
    double d = (double)got - (double)exact;

    if (exact == 0)
        return got == 0 ? 0 : INFINITY;
    return fabs(d) / (double)exact;
}

/* Samples below x in sorted: the exact "count below" */
static uint64_t
t_count_below(const uint64_t *sorted, size_t n, uint64_t x)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (sorted[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * Whether v lies in its bucket (or the last, beyond the range) and the
 * bucket's midpoint is within the error bound of v. A plain test, not
 * ck_assert: every Check assertion is a write to a pipe, too slow for a
 * million values.
 */
static bool
t_value_ok(uint64_t v)
{
    size_t b = hist_bucket(v);
    uint64_t low, mid;

    if (b >= HIST_NBUCKETS)
        return false;
    if (v >= HIST_MAX_US)
        return b == T_LAST;
    low = hist_bucket_low(b);
    mid = low + (hist_bucket_high(b) - low) / 2;
    return low <= v && v < hist_bucket_high(b) && (v == 0 || t_rel_err(mid, v) <= T_MAX_REL_ERR);
}

START_TEST(test_layout_buckets)
{
    ck_assert_uint_eq(hist_bucket_low(0), 0);
    ck_assert_uint_eq(hist_bucket_high(T_LAST), HIST_MAX_US);
    for (size_t i = 0; i < HIST_NBUCKETS; i++) {
        uint64_t low = hist_bucket_low(i), high = hist_bucket_high(i);

        ck_assert_uint_lt(low, high);
        if (i + 1 < HIST_NBUCKETS)
            ck_assert_uint_eq(high, hist_bucket_low(i + 1));
        ck_assert_uint_eq(hist_bucket(low), i);
        ck_assert_uint_eq(hist_bucket(high - 1), i);
        if (i < 2 * HIST_SUB)
            ck_assert_uint_eq(high - low, 1);
        else /* half a bucket is at most 1/128 of its start */
            ck_assert_uint_le((high - low) * HIST_SUB, low);
    }
}
END_TEST

START_TEST(test_layout_values)
{
    uint64_t special[64 * 3 + 8];
    size_t n = 0;
    uint64_t seed = T_SEED;

    for (unsigned e = 0; e < 64; e++) {
        special[n++] = ((uint64_t)1 << e) - 1;
        special[n++] = (uint64_t)1 << e;
        special[n++] = ((uint64_t)1 << e) + 1;
    }
    special[n++] = HIST_MAX_US - 1;
    special[n++] = HIST_MAX_US;
    special[n++] = HIST_MAX_US + 1;
    special[n++] = UINT64_MAX;
    special[n++] = UINT64_MAX - 1;
    special[n++] = 0;
    qsort(special, n, sizeof(special[0]), t_cmp_u64);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(t_value_ok(special[i]), "%llu", (unsigned long long)special[i]);
        if (i > 0) /* monotonic */
            ck_assert_uint_le(hist_bucket(special[i - 1]), hist_bucket(special[i]));
    }
    ck_assert_uint_eq(hist_bucket(HIST_MAX_US - 1), T_LAST);
    ck_assert_uint_eq(hist_bucket(UINT64_MAX), T_LAST);
    ck_assert_uint_eq(hist_bucket(63), 63);
    ck_assert_uint_eq(hist_bucket(64), 64);
    ck_assert_uint_eq(hist_bucket(127), 127);
    ck_assert_uint_eq(hist_bucket(128), 128);
    ck_assert_uint_eq(hist_bucket(129), 128);
    ck_assert_uint_eq(hist_bucket(130), 129);

    /* Random values of every bit length, in range and beyond. */
    for (size_t i = 0; i < 1000000; i++) {
        uint64_t r = t_next(&seed);
        unsigned bits = (unsigned)(r % 65);

        r = t_next(&seed);
        r = bits == 64 ? r : r & (((uint64_t)1 << bits) - 1);
        if (!t_value_ok(r))
            ck_abort_msg("%llu", (unsigned long long)r);
    }
}
END_TEST

START_TEST(test_empty)
{
    struct hist *h = t_hist_new();
    struct hist_sparse d;

    ck_assert_uint_eq(hist_quantile(h, 0), 0);
    ck_assert_uint_eq(hist_quantile(h, 0.5), 0);
    ck_assert_uint_eq(hist_quantile(h, 1), 0);
    ck_assert_uint_eq(hist_count_le(h, 1000), 0);
    ck_assert_uint_eq(hist_count_le(h, UINT64_MAX), 0);
    ck_assert_int_eq(hist_delta(h, h, &d), 0);
    ck_assert_uint_eq(d.len, 0);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_uint_eq(d.max_us, 0);
    hist_sparse_free(&d);
    hist_sparse_free(NULL);
    free(h);
}
END_TEST

/* The rank rule on values small enough to be exact: 1..10. */
START_TEST(test_rank_rule)
{
    struct hist *h = t_hist_new();

    for (uint64_t v = 10; v >= 1; v--)
        hist_record(h, v);
    ck_assert_uint_eq(h->n, 10);
    ck_assert_uint_eq(h->sum_us, 55);
    ck_assert_uint_eq(h->max_us, 10);
    ck_assert_uint_eq(hist_quantile(h, 0), 1);
    ck_assert_uint_eq(hist_quantile(h, 0.1), 1);  /* rank 1 */
    ck_assert_uint_eq(hist_quantile(h, 0.11), 2); /* rank ceil(1.1) = 2 */
    ck_assert_uint_eq(hist_quantile(h, 0.5), 5);
    ck_assert_uint_eq(hist_quantile(h, 0.51), 6);
    ck_assert_uint_eq(hist_quantile(h, 0.95), 10);
    ck_assert_uint_eq(hist_quantile(h, 1), 10);
    ck_assert_uint_eq(hist_quantile(h, -1), 1);
    ck_assert_uint_eq(hist_quantile(h, 2), 10);
    ck_assert_uint_eq(hist_quantile(h, NAN), 1);

    /* A bucket midpoint, capped at the max; q = 1 is the max exactly. */
    memset(h, 0, sizeof(*h));
    hist_record(h, 1000); /* bucket [1000, 1008) */
    hist_record(h, 1001);
    ck_assert_uint_eq(hist_quantile(h, 0), 1001);
    ck_assert_uint_eq(hist_quantile(h, 1), 1001);
    hist_record(h, 1007);
    ck_assert_uint_eq(hist_quantile(h, 0), 1004);
    ck_assert_uint_eq(hist_quantile(h, 1), 1007);

    /* A clamped sample: the max stays exact. */
    hist_record(h, HIST_MAX_US * 3);
    ck_assert_uint_eq(h->counts[T_LAST], 1);
    ck_assert_uint_eq(hist_quantile(h, 1), HIST_MAX_US * 3);

    /* Unknown max (a window): no cap, q = 1 is the top bucket's midpoint. */
    memset(h, 0, sizeof(*h));
    h->counts[hist_bucket(1000)] = 3;
    h->n = 3;
    ck_assert_uint_eq(hist_quantile(h, 1), 1004);
    ck_assert_uint_eq(hist_quantile(h, 0), 1004);
    free(h);
}
END_TEST

START_TEST(test_accuracy)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {
        {"min", 0},    {"p50", 0.5},     {"p90", 0.9}, {"p95", 0.95},
        {"p99", 0.99}, {"p99.9", 0.999}, {"max", 1},
    };
    const char *name = t_dists[_i].name;
    uint64_t *v = t_samples(t_dists[_i].gen, T_SEED + _i, T_ACC_SAMPLES);
    struct hist *h = t_hist_new();
    double worst = 0, worst_sweep = 0;
    char line[512];
    size_t off;

    for (size_t i = 0; i < T_ACC_SAMPLES; i++)
        hist_record(h, v[i]);
    qsort(v, T_ACC_SAMPLES, sizeof(v[0]), t_cmp_u64);
    ck_assert_uint_eq(h->n, T_ACC_SAMPLES);
    ck_assert_uint_eq(h->max_us, v[T_ACC_SAMPLES - 1]);

    off = (size_t)snprintf(line, sizeof(line), "accuracy %-12s", name);
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        uint64_t exact = t_exact(v, T_ACC_SAMPLES, qs[k].q);
        uint64_t got = hist_quantile(h, qs[k].q);
        double err = t_rel_err(got, exact);

        ck_assert_msg(exact < HIST_MAX_US, "%s %s: %llu out of range", name, qs[k].name,
                      (unsigned long long)exact);
        ck_assert_msg(err <= T_MAX_REL_ERR, "%s %s: %llu, exact %llu, error %g", name, qs[k].name,
                      (unsigned long long)got, (unsigned long long)exact, err);
        if (err > worst)
            worst = err;
        if (off < sizeof(line))
            off += (size_t)snprintf(line + off, sizeof(line) - off, " %s %llu/%llu", qs[k].name,
                                    (unsigned long long)got, (unsigned long long)exact);
    }
    /* Every thousandth quantile too, within range. */
    for (unsigned k = 0; k <= 1000; k++) {
        double q = k / 1000.0;
        uint64_t exact = t_exact(v, T_ACC_SAMPLES, q);
        double err = t_rel_err(hist_quantile(h, q), exact);

        if (exact >= HIST_MAX_US)
            continue;
        if (err > T_MAX_REL_ERR)
            ck_abort_msg("%s q=%g: error %g", name, q, err);
        if (err > worst_sweep)
            worst_sweep = err;
    }
    if (t_dists[_i].gen == t_gen_small || t_dists[_i].gen == t_gen_constant)
        ck_assert(worst == 0 && worst_sweep == 0);
    printf("%s; max rel err %.4f%% (named), %.4f%% (q = 0, 0.001 .. 1)\n", line, worst * 100,
           worst_sweep * 100);
    free(h);
    free(v);
}
END_TEST

START_TEST(test_merge)
{
    enum { N = 300000, PARTS = 4 };
    static const size_t cut[PARTS + 1] = {0, 1000, 51000, 200000, N};
    uint64_t *v = t_samples(t_gen_bimodal, T_SEED, N);
    struct hist *all = t_hist_new(), *sum = t_hist_new(), *x = t_hist_new(), *y = t_hist_new();
    struct hist *part[PARTS];

    for (size_t i = 0; i < N; i++)
        hist_record(all, v[i]);
    for (size_t p = 0; p < PARTS; p++) {
        part[p] = t_hist_new();
        for (size_t i = cut[p]; i < cut[p + 1]; i++)
            hist_record(part[p], v[i]);
        hist_merge(sum, part[p]);
    }
    ck_assert(memcmp(sum, all, sizeof(*all)) == 0);
    for (unsigned k = 0; k <= 1000; k++)
        ck_assert_uint_eq(hist_quantile(sum, k / 1000.0), hist_quantile(all, k / 1000.0));

    /* (a + b) + c == a + (b + c) == c + b + a */
    hist_merge(x, part[0]);
    hist_merge(x, part[1]);
    hist_merge(x, part[2]);
    memset(sum, 0, sizeof(*sum));
    hist_merge(sum, part[1]);
    hist_merge(sum, part[2]);
    hist_merge(y, part[0]);
    hist_merge(y, sum);
    ck_assert(memcmp(x, y, sizeof(*x)) == 0);
    memset(y, 0, sizeof(*y));
    hist_merge(y, part[2]);
    hist_merge(y, part[1]);
    hist_merge(y, part[0]);
    ck_assert(memcmp(x, y, sizeof(*x)) == 0);

    for (size_t p = 0; p < PARTS; p++)
        free(part[p]);
    free(all);
    free(sum);
    free(x);
    free(y);
    free(v);
}
END_TEST

/*
 * Phases of recording into one cumulative histogram, a snapshot after each.
 * The phases' scales differ so that the max grows in some and not others.
 */
START_TEST(test_delta_window)
{
    enum { PHASES = 12, PER = 20000, WIN = 3 };
    static const double scale[PHASES] = {1, 1, 4, 1, 0.5, 8, 1, 1, 2, 16, 1, 0.25};
    uint64_t seed = T_SEED;
    uint64_t *v = malloc(PHASES * PER * sizeof(*v));
    struct hist *live = t_hist_new(), *acc = t_hist_new(), *win = t_hist_new();
    struct hist *direct = t_hist_new();
    struct hist *snap[PHASES];
    struct hist_sparse d[PHASES];
    unsigned known = 0, unknown = 0;

    ck_assert_ptr_nonnull(v);
    for (size_t p = 0; p < PHASES; p++) {
        for (size_t i = 0; i < PER; i++) {
            v[p * PER + i] = t_us(scale[p] * exp(log(1000.0) + t_normal(&seed)));
            hist_record(live, v[p * PER + i]);
        }
        snap[p] = t_hist_new();
        hist_merge(snap[p], live);
        if (p == 0)
            continue;
        ck_assert_int_eq(hist_delta(snap[p], snap[p - 1], &d[p]), 0);
        ck_assert_uint_eq(d[p].n, PER);
        ck_assert_uint_gt(d[p].len, 0);
        ck_assert_uint_lt(d[p].len, HIST_NBUCKETS);
        for (size_t k = 0; k < d[p].len; k++) {
            ck_assert_uint_gt(d[p].count[k], 0);
            if (k > 0)
                ck_assert_uint_lt(d[p].idx[k - 1], d[p].idx[k]);
        }
    }

    /* first + every delta == last, max included */
    hist_merge(acc, snap[0]);
    for (size_t p = 1; p < PHASES; p++)
        hist_add_sparse(acc, &d[p]);
    ck_assert(memcmp(acc, snap[PHASES - 1], sizeof(*acc)) == 0);

    /* A window of the last WIN deltas holds exactly its phases' samples. */
    for (size_t end = WIN; end < PHASES; end++) {
        memset(win, 0, sizeof(*win));
        memset(direct, 0, sizeof(*direct));
        for (size_t p = end - WIN + 1; p <= end; p++) {
            hist_add_sparse(win, &d[p]);
            for (size_t i = 0; i < PER; i++)
                hist_record(direct, v[p * PER + i]);
        }
        ck_assert(memcmp(win->counts, direct->counts, sizeof(win->counts)) == 0);
        ck_assert_uint_eq(win->n, direct->n);
        ck_assert_uint_eq(win->sum_us, direct->sum_us);
        if (win->max_us != 0) {
            ck_assert_uint_eq(win->max_us, direct->max_us);
            known++;
            for (unsigned k = 0; k <= 100; k++)
                ck_assert_uint_eq(hist_quantile(win, k / 100.0), hist_quantile(direct, k / 100.0));
        } else {
            unknown++;
            ck_assert_uint_eq(hist_quantile(win, 0.5), hist_quantile(direct, 0.5));
            ck_assert_uint_eq(hist_bucket(hist_quantile(win, 1)), hist_bucket(direct->max_us));
        }
    }
    ck_assert_uint_gt(known, 0);
    ck_assert_uint_gt(unknown, 0);

    /* No change: an empty delta. */
    ck_assert_int_eq(hist_delta(snap[3], snap[3], &d[0]), 0);
    ck_assert_uint_eq(d[0].len, 0);
    ck_assert_ptr_null(d[0].idx);
    hist_sparse_free(&d[0]);

    for (size_t p = 0; p < PHASES; p++) {
        if (p > 0) {
            hist_sparse_free(&d[p]);
            ck_assert_ptr_null(d[p].idx);
            ck_assert_uint_eq(d[p].len, 0);
        }
        free(snap[p]);
    }
    free(live);
    free(acc);
    free(win);
    free(direct);
    free(v);
}
END_TEST

START_TEST(test_count_le)
{
    enum { N = 300000 };
    /* Prometheus' default buckets, 1 ms and up, in µs */
    static const uint64_t bounds[] = {1000,   2500,   5000,    10000,   25000,   50000,   100000,
                                      250000, 500000, 1000000, 2500000, 5000000, 10000000};
    uint64_t seed = T_SEED;
    uint64_t *v = malloc(N * sizeof(*v));
    struct hist *h = t_hist_new();
    uint64_t prev = 0;

    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < N; i++) {
        v[i] = t_us(exp(log(20000.0) + 2.0 * t_normal(&seed)));
        hist_record(h, v[i]);
    }
    qsort(v, N, sizeof(v[0]), t_cmp_u64);
    for (size_t k = 0; k < sizeof(bounds) / sizeof(bounds[0]); k++) {
        uint64_t start = hist_bucket_low(hist_bucket(bounds[k]));
        uint64_t c = hist_count_le(h, bounds[k]);

        ck_assert_uint_le((bounds[k] - start) * HIST_SUB, bounds[k]);
        ck_assert_uint_eq(c, t_count_below(v, N, start));
        ck_assert_uint_ge(c, prev);
        prev = c;
    }
    ck_assert_uint_gt(prev, N / 2);
    ck_assert_uint_lt(prev, N);

    /* Every bucket edge, and beyond the range: exact and monotonic. */
    prev = 0;
    for (size_t i = 0; i < HIST_NBUCKETS; i++) {
        uint64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);
        uint64_t c = hist_count_le(h, lo);

        ck_assert_uint_eq(c, t_count_below(v, N, lo));
        ck_assert_uint_ge(c, prev);
        ck_assert_uint_eq(hist_count_le(h, hi - 1), c);
        prev = c;
    }
    ck_assert_uint_eq(hist_count_le(h, HIST_MAX_US), prev);
    ck_assert_uint_eq(hist_count_le(h, UINT64_MAX), prev);
    ck_assert_uint_eq(prev, N - h->counts[T_LAST]);
    free(h);
    free(v);
}
END_TEST

struct t_writer {
    struct hist *h;
    uint64_t seed;
    size_t n;
    int done;
};

static void *
t_writer_run(void *arg)
{
    struct t_writer *w = arg;
    uint64_t seed = w->seed;

    for (size_t i = 0; i < w->n; i++)
        hist_record(w->h, t_gen_bimodal(&seed));
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

START_TEST(test_concurrent)
{
    enum { N = 2000000 };
    struct hist *live = t_hist_new(), *ref = t_hist_new(), *m = t_hist_new();
    struct t_writer w = {.h = live, .seed = T_SEED, .n = N};
    uint64_t seed = T_SEED, last_n = 0;
    unsigned merges = 0, bad = 0;
    pthread_t th;

    for (size_t i = 0; i < N; i++)
        hist_record(ref, t_gen_bimodal(&seed));
    ck_assert_int_eq(pthread_create(&th, NULL, t_writer_run, &w), 0);
    while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) {
        uint64_t q50, q99;

        memset(m, 0, sizeof(*m));
        hist_merge(m, live);
        q50 = hist_quantile(m, 0.5);
        q99 = hist_quantile(m, 0.99);
        /* Counts only grow. Plain tests: a Check assertion is a syscall. */
        if (m->n < last_n || m->n > N || q50 > q99)
            bad++;
        last_n = m->n;
        merges++;
    }
    ck_assert_uint_eq(bad, 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    memset(m, 0, sizeof(*m));
    hist_merge(m, live);
    ck_assert(memcmp(m, ref, sizeof(*m)) == 0);
    printf("concurrent: %u merges during %d records\n", merges, N);
    free(live);
    free(ref);
    free(m);
}
END_TEST

static Suite *
hist_suite(void)
{
    Suite *s = suite_create("hist");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"layout_buckets", test_layout_buckets},
        {"layout_values", test_layout_values},
        {"empty", test_empty},
        {"rank_rule", test_rank_rule},
        {"merge", test_merge},
        {"delta_window", test_delta_window},
        {"count_le", test_count_le},
        {"concurrent", test_concurrent},
    };
    TCase *tc;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    tc = tcase_create("accuracy");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_accuracy, 0, (int)T_NDISTS);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(hist_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
