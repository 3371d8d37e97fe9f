/*
 * hist-bench: what hist_record() costs, the price every request pays.
 *
 * Precomputes HB_VALUES latencies (log-normal, median 1 ms, sigma 1.5, the
 * shape of a cache's mix of hits and misses) from a fixed splitmix64 seed,
 * then records them HB_PASSES times into one histogram, each pass timed
 * with the monotonic clock, and prints nanoseconds per record over all
 * passes and in the best pass (the least disturbed by other processes on a
 * shared machine). The array is 8 MB, so
 * the loads stream from memory as request data would; the histogram itself
 * (11 KB) stays in L1, as a worker's own does. hist_record() is called
 * through the library, not inlined: the proxy calls it the same way.
 *
 * Build it without sanitizers for a meaningful number:
 *   mkdir build-rel && cd build-rel && ../configure && make contrib/bench/hist-bench
 *
 * Usage: hist-bench
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hist.h"

#define HB_VALUES 1000000u
#define HB_PASSES 100u /* 100M records */
#define HB_SEED 0x6b656e636821ull

static uint64_t
hb_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double
hb_unit(uint64_t *s)
{
    return (double)((hb_next(s) >> 11) + 1) * 0x1p-53;
}

static double
hb_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int
main(void)
{
    uint64_t *v = malloc(HB_VALUES * sizeof(*v));
    struct hist *h = calloc(1, sizeof(*h));
    uint64_t seed = HB_SEED;
    double total = 0, best = 0, records;

    if (v == NULL || h == NULL) {
        fprintf(stderr, "hist-bench: out of memory\n");
        return EXIT_FAILURE;
    }
    for (size_t i = 0; i < HB_VALUES; i++) {
        double normal = sqrt(-2.0 * log(hb_unit(&seed))) * cos(2.0 * M_PI * hb_unit(&seed));

        v[i] = (uint64_t)exp(log(1000.0) + 1.5 * normal);
    }
    /* One untimed pass: page faults and cache warm-up. */
    for (size_t i = 0; i < HB_VALUES; i++)
        hist_record(h, v[i]);

    for (unsigned p = 0; p < HB_PASSES; p++) {
        double t = hb_now(), dt;

        for (size_t i = 0; i < HB_VALUES; i++)
            hist_record(h, v[i]);
        dt = hb_now() - t;
        total += dt;
        if (best == 0 || dt < best)
            best = dt;
    }

    records = (double)HB_PASSES * HB_VALUES;
    printf("hist_record: %.0f records in %.3f s, %.2f ns per record (best pass of %u: %.2f ns)\n",
           records, total / 1e9, total / records, HB_VALUES, best / HB_VALUES);
    printf("p50 %llu us, p99 %llu us, p99.9 %llu us, max %llu us (n %llu)\n",
           (unsigned long long)hist_quantile(h, 0.5), (unsigned long long)hist_quantile(h, 0.99),
           (unsigned long long)hist_quantile(h, 0.999), (unsigned long long)h->max_us,
           (unsigned long long)h->n);
    free(h);
    free(v);
    return EXIT_SUCCESS;
}
