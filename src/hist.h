/*
 * hist: latency histograms with bounded relative error, mergeable.
 *
 * Log-linear buckets over microseconds (the HDR histogram layout): values
 * below 2^HIST_SUB_BITS µs each have a bucket of their own; above, every
 * power of two is split into 2^HIST_SUB_BITS equal buckets. A quantile is
 * reported as the midpoint of its bucket, so its relative error is at most
 * 2^-(HIST_SUB_BITS + 1) (0.78% with 6 bits) for values up to
 * HIST_MAX_US; larger values are counted in the last bucket (max keeps the
 * exact largest).
 *
 * Counts are plain uint64_t: the owning thread records with plain
 * increments, no locks or atomics; a reader on another thread merges with
 * hist_merge() and may see a sample or two in flight (never a torn value
 * on the platforms we build for). hist_merge() is the only function that
 * may read a histogram its owner is writing: quantiles, count_le and deltas
 * are computed on the reader's own copies.
 *
 * Windows: a reader keeps snapshots of a cumulative histogram and stores
 * the difference between two as a sparse delta (few buckets change in a
 * few seconds); a window is the sum of its deltas.
 *
 * max_us == 0 with n > 0 means "largest sample unknown": a window whose
 * deltas never raised the cumulative maximum cannot know its own (see
 * struct hist_sparse). Quantiles then fall back to bucket midpoints.
 */
#ifndef TAILCACHE_HIST_H
#define TAILCACHE_HIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_BITS 27 /* HIST_MAX_US = 2^27 µs, about 134 s */
#define HIST_MAX_US ((uint64_t)1 << HIST_MAX_BITS)
#define HIST_NBUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
    uint64_t counts[HIST_NBUCKETS];
    uint64_t n;      /* samples */
    uint64_t sum_us; /* their sum */
    uint64_t max_us; /* the largest */
};

/*
 * A histogram's change between two snapshots: nonzero bucket deltas, in
 * increasing bucket order. max_us is the later snapshot's max if it grew
 * (then it is a sample of this interval, and the largest), else 0 (unknown:
 * every sample of the interval is at most the earlier max). Summing deltas
 * with hist_add_sparse() therefore gives a window the exact max of its
 * samples when any delta in it raised the max, and 0 otherwise.
 */
struct hist_sparse {
    uint32_t *idx;
    uint64_t *count;
    size_t len;
    uint64_t n, sum_us, max_us;
};

/*
 * The bucket of a value, and a bucket's bounds [low, high) in µs, for
 * i < HIST_NBUCKETS (asserted). Buckets are contiguous: bucket 0 starts at
 * 0, high(i) == low(i + 1), and the last ends at HIST_MAX_US. Values at or
 * above HIST_MAX_US go to the last bucket, outside its bounds. All O(1).
 */
size_t hist_bucket(uint64_t us);
uint64_t hist_bucket_low(size_t i);
uint64_t hist_bucket_high(size_t i);

/* Records one sample (owner thread). sum_us and max_us take the value
 * unclamped. */
void hist_record(struct hist *h, uint64_t us);

/* dst += src (src may be written concurrently by its owner). dst->n grows by
 * the sum of the counts read, so dst is self-consistent even when src was
 * caught mid-record; max is the larger of the two. */
void hist_merge(struct hist *dst, const struct hist *src);

/*
 * The q-quantile in µs; 0 for an empty histogram. q is clamped to [0, 1]
 * (NaN is 0).
 *
 * Rank rule: the quantile is the rank-th smallest sample, 1-based, with
 * rank = max(1, ceil(q * n)) computed in double. The answer is the midpoint
 * (rounded down) of the first bucket whose cumulative count reaches rank,
 * capped at max_us; a single-integer bucket (values below 2^(HIST_SUB_BITS
 * + 1)) reports its value exactly. When rank == n (q = 1, or q close
 * enough to 1) the answer is max_us exactly, if known (max_us > 0); rank 1
 * (q = 0) is the midpoint of the smallest sample's bucket. Relative error
 * against the exact rank-th sample: at most 2^-(HIST_SUB_BITS + 1) for
 * values below HIST_MAX_US.
 */
uint64_t hist_quantile(const struct hist *h, double q);

/* Samples in the buckets that end at or below bound_us, for classic
 * (Prometheus "le") buckets: the samples below the start of bound_us's own
 * bucket, which is at most 1/64 below bound_us. A lower bound of the true
 * "<= bound_us" count, short by the samples in [start, bound_us].
 * Monotonic in bound_us. Bounds at or above HIST_MAX_US all give the
 * samples outside the last bucket. */
uint64_t hist_count_le(const struct hist *h, uint64_t bound_us);

/* *out = now - prev (now a later snapshot of the same cumulative
 * histogram; a bucket that went down is asserted). *out is overwritten, not
 * freed; the caller owns its arrays (hist_sparse_free()). n is the sum of
 * the bucket deltas. Returns 0, or -1 on allocation failure with *out
 * left empty. */
int hist_delta(const struct hist *now, const struct hist *prev, struct hist_sparse *out);

/* dst += s (counts, n, sum_us; max_us is the larger of the two). */
void hist_add_sparse(struct hist *dst, const struct hist_sparse *s);

/* Frees a delta's arrays; leaves it empty. Accepts NULL. */
void hist_sparse_free(struct hist_sparse *s);

#endif
