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
 * on the platforms we build for).
 *
 * Windows: a reader keeps snapshots of a cumulative histogram and stores
 * the difference between two as a sparse delta (few buckets change in a
 * few seconds); a window is the sum of its deltas.
 */
#ifndef TAILCACHE_HIST_H
#define TAILCACHE_HIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_BITS 27                     /* HIST_MAX_US = 2^27 µs, about 134 s */
#define HIST_MAX_US ((uint64_t)1 << HIST_MAX_BITS)
#define HIST_NBUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
    uint64_t counts[HIST_NBUCKETS];
    uint64_t n;      /* samples */
    uint64_t sum_us; /* their sum */
    uint64_t max_us; /* the largest */
};

/* A histogram's change between two snapshots: nonzero bucket deltas. */
struct hist_sparse {
    uint32_t *idx;
    uint64_t *count;
    size_t len;
    uint64_t n, sum_us, max_us; /* max_us: the later snapshot's max if it grew, else 0 */
};

/* The bucket of a value, and a bucket's bounds [low, high) in µs. */
size_t hist_bucket(uint64_t us);
uint64_t hist_bucket_low(size_t i);
uint64_t hist_bucket_high(size_t i);

/* Records one sample (owner thread). */
void hist_record(struct hist *h, uint64_t us);

/* dst += src (src may be written concurrently by its owner). */
void hist_merge(struct hist *dst, const struct hist *src);

/* The q-quantile (0 <= q <= 1) in µs, the midpoint of its bucket (q = 1:
 * max_us exactly); 0 for an empty histogram. */
uint64_t hist_quantile(const struct hist *h, double q);

/* Samples in the buckets that end at or below bound_us, for classic
 * (Prometheus "le") buckets: the samples below the start of bound_us's own
 * bucket, which is at most 1/64 below bound_us. Monotonic in bound_us. */
uint64_t hist_count_le(const struct hist *h, uint64_t bound_us);

/* *out = now - prev (now a later snapshot of the same cumulative
 * histogram). Returns 0, or -1 on allocation failure. */
int hist_delta(const struct hist *now, const struct hist *prev, struct hist_sparse *out);

/* dst += s. */
void hist_add_sparse(struct hist *dst, const struct hist_sparse *s);

/* Frees a delta's arrays; leaves it empty. */
void hist_sparse_free(struct hist_sparse *s);

#endif
