/*
 * stats: summing and exporting the counters of STATS_COUNTERS.
 *
 * The registry is written by the main thread before workers start and read
 * afterwards, so it needs no lock.
 */
#include "stats.h"

#include <event2/buffer.h>

#include "log.h"
#include "util.h"

#define STATS_MAX_REGISTERED 512

static struct stats *stats_registered[STATS_MAX_REGISTERED];
static size_t stats_nregistered;

struct stats_desc {
    const char *name;
    const char *kind;
    const char *help;
    size_t offset;
};

static const struct stats_desc stats_descs[] = {
#define STATS_DESC(name, kind, help) {#name, #kind, help, offsetof(struct stats, name)},
    STATS_COUNTERS(STATS_DESC)
#undef STATS_DESC
};

#define STATS_N (sizeof(stats_descs) / sizeof(stats_descs[0]))

struct stats_hist_desc {
    const char *name;
    const char *help;
    size_t offset;
};

static const struct stats_hist_desc stats_hist_descs[] = {
#define STATS_HIST_DESC(name, help) {#name, help, offsetof(struct stats, name)},
    STATS_HISTS(STATS_HIST_DESC)
#undef STATS_HIST_DESC
};

#define STATS_NHIST (sizeof(stats_hist_descs) / sizeof(stats_hist_descs[0]))

static const uint64_t stats_hist_bounds[STATS_HIST_NBOUNDS] = STATS_HIST_BOUNDS_US;

void
stats_hist_record(struct stats_hist *h, uint64_t us)
{
    size_t i = 0;
    while (i < STATS_HIST_NBOUNDS && us > stats_hist_bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum_us += us;
}

static const struct stats_hist *
stats_hist_at(const struct stats *s, size_t i)
{
    return (const struct stats_hist *)((const char *)s + stats_hist_descs[i].offset);
}

void
stats_register(struct stats *s)
{
    UTIL_ASSERT(stats_nregistered < STATS_MAX_REGISTERED);
    stats_registered[stats_nregistered++] = s;
}

void
stats_unregister_all(void)
{
    stats_nregistered = 0;
}

void
stats_sum(struct stats *out)
{
    /* struct stats is uint64_t fields only: counters, then histograms. */
    size_t n = sizeof(struct stats) / sizeof(uint64_t);
    uint64_t *o = (uint64_t *)out;
    for (size_t i = 0; i < n; i++)
        o[i] = 0;
    for (size_t r = 0; r < stats_nregistered; r++) {
        const volatile uint64_t *in = (const volatile uint64_t *)stats_registered[r];
        for (size_t i = 0; i < n; i++)
            o[i] += in[i];
    }
    out->log_lines_dropped = log_dropped();
}

size_t
stats_count(void)
{
    return STATS_N;
}

const char *
stats_name(size_t i)
{
    return i < STATS_N ? stats_descs[i].name : NULL;
}

const char *
stats_kind(size_t i)
{
    return i < STATS_N ? stats_descs[i].kind : NULL;
}

const char *
stats_help(size_t i)
{
    return i < STATS_N ? stats_descs[i].help : NULL;
}

uint64_t
stats_value(const struct stats *s, size_t i)
{
    UTIL_ASSERT(i < STATS_N);
    return *(const uint64_t *)((const char *)s + stats_descs[i].offset);
}

void
stats_format_json(struct evbuffer *out, const struct stats *s)
{
    evbuffer_add(out, "{", 1);
    for (size_t i = 0; i < STATS_N; i++)
        evbuffer_add_printf(out, "%s\"%s\":%llu", i ? "," : "", stats_descs[i].name,
                            (unsigned long long)stats_value(s, i));
    for (size_t i = 0; i < STATS_NHIST; i++) {
        const struct stats_hist *h = stats_hist_at(s, i);
        uint64_t cum = 0;
        evbuffer_add_printf(out, ",\"%s_seconds\":{\"count\":%llu,\"sum\":%.6f,\"buckets\":{",
                            stats_hist_descs[i].name, (unsigned long long)h->count,
                            (double)h->sum_us / 1e6);
        for (size_t b = 0; b <= STATS_HIST_NBOUNDS; b++) {
            cum += h->buckets[b];
            if (b < STATS_HIST_NBOUNDS)
                evbuffer_add_printf(out, "\"%g\":%llu,", (double)stats_hist_bounds[b] / 1e6,
                                    (unsigned long long)cum);
            else
                evbuffer_add_printf(out, "\"+Inf\":%llu}}", (unsigned long long)cum);
        }
    }
    evbuffer_add(out, "}\n", 2);
}

void
stats_format_prometheus(struct evbuffer *out, const struct stats *s)
{
    for (size_t i = 0; i < STATS_N; i++) {
        const struct stats_desc *d = &stats_descs[i];
        bool counter = d->kind[0] == 'C';
        evbuffer_add_printf(out, "# HELP tailcache_%s%s %s\n# TYPE tailcache_%s%s %s\n", d->name,
                            counter ? "_total" : "", d->help, d->name, counter ? "_total" : "",
                            counter ? "counter" : "gauge");
        evbuffer_add_printf(out, "tailcache_%s%s %llu\n", d->name, counter ? "_total" : "",
                            (unsigned long long)stats_value(s, i));
    }
    for (size_t i = 0; i < STATS_NHIST; i++) {
        const struct stats_hist_desc *d = &stats_hist_descs[i];
        const struct stats_hist *h = stats_hist_at(s, i);
        uint64_t cum = 0;
        evbuffer_add_printf(
            out, "# HELP tailcache_%s_seconds %s\n# TYPE tailcache_%s_seconds histogram\n", d->name,
            d->help, d->name);
        for (size_t b = 0; b <= STATS_HIST_NBOUNDS; b++) {
            cum += h->buckets[b];
            if (b < STATS_HIST_NBOUNDS)
                evbuffer_add_printf(out, "tailcache_%s_seconds_bucket{le=\"%g\"} %llu\n", d->name,
                                    (double)stats_hist_bounds[b] / 1e6, (unsigned long long)cum);
            else
                evbuffer_add_printf(out, "tailcache_%s_seconds_bucket{le=\"+Inf\"} %llu\n", d->name,
                                    (unsigned long long)cum);
        }
        evbuffer_add_printf(out, "tailcache_%s_seconds_sum %.6f\ntailcache_%s_seconds_count %llu\n",
                            d->name, (double)h->sum_us / 1e6, d->name,
                            (unsigned long long)h->count);
    }
}
