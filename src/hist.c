/*
 * hist: log-linear latency histograms; the layout and the rules of error,
 * concurrency and windows are in hist.h.
 *
 * Bucket arithmetic. A value v < HIST_MAX_US is placed by the position e of
 * the highest set bit of (v | HIST_SUB), so every v < 2 * HIST_SUB has
 * e = HIST_SUB_BITS. With shift = e - HIST_SUB_BITS, the mantissa
 * v >> shift lies in [HIST_SUB, 2 * HIST_SUB) for large values and is v
 * itself for small ones, and
 *
 *     index = (shift << HIST_SUB_BITS) + (v >> shift)
 *
 * is contiguous: the first 2 * HIST_SUB buckets are single integers, then
 * each power of two adds HIST_SUB buckets of width 2^shift. Bucket i starts
 * at m << shift, where shift = max(0, i / HIST_SUB - 1) and
 * m = i - (shift << HIST_SUB_BITS), and ends at (m + 1) << shift.
 *
 * Nothing here keeps state; which thread may touch which histogram is the
 * caller's rule, written in hist.h.
 */
#include "hist.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define HIST_LAST (HIST_NBUCKETS - 1)

/* The largest value in range, 2^HIST_MAX_BITS - 1, lands in the last bucket. */
_Static_assert((((HIST_MAX_BITS - 1 - HIST_SUB_BITS) << HIST_SUB_BITS) + 2 * HIST_SUB) ==
                   HIST_NBUCKETS,
               "HIST_NBUCKETS matches the bucket arithmetic");

/* Branch-free on x86-64 and arm64: the clamp is a conditional move. */
static inline size_t
hist_index(uint64_t us)
{
    uint64_t v = us < HIST_MAX_US ? us : HIST_MAX_US - 1;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v | HIST_SUB)) - HIST_SUB_BITS;

    return ((size_t)shift << HIST_SUB_BITS) + (size_t)(v >> shift);
}

static inline unsigned
hist_shift(size_t i)
{
    size_t g = i >> HIST_SUB_BITS;

    return g > 0 ? (unsigned)g - 1 : 0;
}

size_t
hist_bucket(uint64_t us)
{
    return hist_index(us);
}

uint64_t
hist_bucket_low(size_t i)
{
    UTIL_ASSERT(i < HIST_NBUCKETS);
    unsigned shift = hist_shift(i);

    return (uint64_t)(i - ((size_t)shift << HIST_SUB_BITS)) << shift;
}

uint64_t
hist_bucket_high(size_t i)
{
    UTIL_ASSERT(i < HIST_NBUCKETS);
    unsigned shift = hist_shift(i);

    return (uint64_t)(i - ((size_t)shift << HIST_SUB_BITS) + 1) << shift;
}

/* The value a quantile in bucket i reports: the midpoint, rounded down,
 * which for a single-integer bucket is that integer. */
static uint64_t
hist_bucket_mid(size_t i)
{
    uint64_t low = hist_bucket_low(i);

    return low + ((hist_bucket_high(i) - low) >> 1);
}

void
hist_record(struct hist *h, uint64_t us)
{
    h->counts[hist_index(us)]++;
    h->n++;
    h->sum_us += us;
    h->max_us = us > h->max_us ? us : h->max_us;
}

void
hist_merge(struct hist *dst, const struct hist *src)
{
    uint64_t n = 0;
    uint64_t max;

    /*
     * Relaxed loads: the owner's plain stores are never torn on our
     * platforms, and the loads stop the compiler from reading a count twice
     * and seeing two values. n is the sum of the counts actually read, so
     * dst stays consistent even when src->n was read mid-record.
     */
    for (size_t i = 0; i < HIST_NBUCKETS; i++) {
        uint64_t c = __atomic_load_n(&src->counts[i], __ATOMIC_RELAXED);

        dst->counts[i] += c;
        n += c;
    }
    dst->n += n;
    dst->sum_us += __atomic_load_n(&src->sum_us, __ATOMIC_RELAXED);
    max = __atomic_load_n(&src->max_us, __ATOMIC_RELAXED);
    if (max > dst->max_us)
        dst->max_us = max;
}

uint64_t
hist_quantile(const struct hist *h, double q)
{
    uint64_t n = h->n;
    uint64_t rank, cum = 0;
    double x;
    size_t i;
    uint64_t v;

    if (n == 0)
        return 0;
    if (!(q > 0)) /* NaN too */
        q = 0;
    if (q > 1)
        q = 1;
    /* rank = max(1, ceil(q * n)), computed in double; no libm needed. */
    x = q * (double)n;
    rank = (uint64_t)x;
    if ((double)rank < x)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank >= n && h->max_us > 0)
        return h->max_us; /* the largest sample, exactly */
    for (i = 0; i < HIST_NBUCKETS; i++) {
        cum += h->counts[i];
        if (cum >= rank)
            break;
    }
    if (i == HIST_NBUCKETS) /* n above the counts: a histogram read torn */
        i = HIST_LAST;
    v = hist_bucket_mid(i);
    if (h->max_us > 0 && v > h->max_us)
        v = h->max_us;
    return v;
}

uint64_t
hist_count_le(const struct hist *h, uint64_t bound_us)
{
    size_t end = hist_index(bound_us);
    uint64_t c = 0;

    for (size_t i = 0; i < end; i++)
        c += h->counts[i];
    return c;
}

int
hist_delta(const struct hist *now, const struct hist *prev, struct hist_sparse *out)
{
    size_t len = 0, j = 0;
    uint64_t n = 0;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < HIST_NBUCKETS; i++) {
        UTIL_ASSERT(now->counts[i] >= prev->counts[i]);
        len += now->counts[i] != prev->counts[i];
    }
    if (len > 0) {
        out->idx = malloc(len * sizeof(*out->idx));
        out->count = malloc(len * sizeof(*out->count));
        if (out->idx == NULL || out->count == NULL)
            goto fail;
    }
    for (size_t i = 0; i < HIST_NBUCKETS; i++) {
        uint64_t d = now->counts[i] - prev->counts[i];

        if (d == 0)
            continue;
        UTIL_ASSERT(j < len); /* now or prev changed under us */
        out->idx[j] = (uint32_t)i;
        out->count[j] = d;
        n += d;
        j++;
    }
    UTIL_ASSERT(j == len);
    out->len = len;
    out->n = n;
    out->sum_us = now->sum_us - prev->sum_us;
    out->max_us = now->max_us > prev->max_us ? now->max_us : 0;
    return 0;

fail:
    hist_sparse_free(out);
    return -1;
}

void
hist_add_sparse(struct hist *dst, const struct hist_sparse *s)
{
    for (size_t k = 0; k < s->len; k++) {
        UTIL_ASSERT(s->idx[k] < HIST_NBUCKETS);
        dst->counts[s->idx[k]] += s->count[k];
    }
    dst->n += s->n;
    dst->sum_us += s->sum_us;
    if (s->max_us > dst->max_us)
        dst->max_us = s->max_us;
}

void
hist_sparse_free(struct hist_sparse *s)
{
    if (s == NULL)
        return;
    free(s->idx);
    free(s->count);
    memset(s, 0, sizeof(*s));
}
