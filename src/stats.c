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
    uint64_t *o = (uint64_t *)out;
    for (size_t i = 0; i < STATS_N; i++)
        o[i] = 0;
    for (size_t r = 0; r < stats_nregistered; r++) {
        const volatile uint64_t *in = (const volatile uint64_t *)stats_registered[r];
        for (size_t i = 0; i < STATS_N; i++)
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
}
