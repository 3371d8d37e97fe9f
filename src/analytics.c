/*
 * analytics: see analytics.h.
 *
 * Readers: a route's view is the sum over workers of their structs of the
 * same name (struct analytics_view: counters and dense histograms). The
 * recent window is kept per route name in struct analytics_shared: the
 * previous tick's cumulative view and a ring of the changes since (sparse
 * histograms, counter deltas).
 */
#include "analytics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <xxhash.h>

#include "config.h"
#include "log.h"
#include "util.h"

#define ANALYTICS_MAX_WORKERS 256

/* Appends a string literal. */
#define ANALYTICS_PUT(out, lit) evbuffer_add((out), (lit), sizeof(lit) - 1)

static const char *const analytics_outcome_names[] = {
#define ANALYTICS_OUTCOME_NAME(name, help) #name,
    ANALYTICS_OUTCOMES(ANALYTICS_OUTCOME_NAME)
#undef ANALYTICS_OUTCOME_NAME
};

static const char *const analytics_cause_names[] = {
#define ANALYTICS_CAUSE_NAME(name, help) #name,
    ANALYTICS_CAUSES(ANALYTICS_CAUSE_NAME)
#undef ANALYTICS_CAUSE_NAME
};

/* Series names past the outcomes, for JSON and labels. */
static const char *const analytics_series_extra[] = {"total", "origin",  "tier",     "cold",
                                                     "warm",  "refresh", "stale_age"};

/* Prometheus "le" bounds of the classic histograms, µs. */
static const uint64_t analytics_le_us[] = {100,     250,     500,     1000,    2500,   5000,
                                           10000,   25000,   50000,   100000,  250000, 500000,
                                           1000000, 2500000, 5000000, 10000000};
#define ANALYTICS_NLE (sizeof(analytics_le_us) / sizeof(analytics_le_us[0]))

enum analytics_budget_state {
    ANALYTICS_BUDGET_NONE,
    ANALYTICS_BUDGET_OK,
    ANALYTICS_BUDGET_BREACH,
};

struct analytics_shared {
    struct analytics_shared *next;
    char *name;
    _Atomic int64_t cold_until_us; /* monotonic: requests before it are cold */
    /* Main thread only: */
    struct analytics_counts prev_c;
    struct hist *prev_h[ANALYTICS_NSERIES];
    struct analytics_counts ring_c[ANALYTICS_MAX_SLOTS];
    struct hist_sparse ring_h[ANALYTICS_MAX_SLOTS][ANALYTICS_NSERIES];
    unsigned ring_pos, ring_len;
    enum analytics_budget_state budget;
    char budget_text[256]; /* the last judgement, for JSON */
};

struct analytics {
    pthread_mutex_t mu; /* guards routes (workers add names) */
    struct analytics_shared *routes;
    struct analytics_route *const *workers[ANALYTICS_MAX_WORKERS];
    size_t nworkers;
    const struct config *cfg; /* one reference (main thread) */
    uint64_t start_us;
    unsigned slot_ms; /* start-up settings: a reload keeps them */
    unsigned nslots;
};

/* A route's merged view. */
struct analytics_view {
    struct analytics_counts c;
    struct hist *h[ANALYTICS_NSERIES]; /* NULL: no sample */
};

const char *
analytics_outcome_name(enum analytics_outcome o)
{
    return (unsigned)o < ANALYTICS_NOUTCOMES ? analytics_outcome_names[o] : "?";
}

const char *
analytics_cause_name(enum analytics_cause c)
{
    return c >= 0 && c < ANALYTICS_NCAUSES ? analytics_cause_names[c] : "none";
}

static const char *
analytics_series_name(size_t i)
{
    return i < ANALYTICS_NOUTCOMES ? analytics_outcome_names[i]
                                   : analytics_series_extra[i - ANALYTICS_NOUTCOMES];
}

static bool
analytics_is_hit(enum analytics_outcome o)
{
    return o == ANALYTICS_hit_memory || o == ANALYTICS_hit_redis || o == ANALYTICS_hit_memcached ||
           o == ANALYTICS_stale;
}

/* Body bytes that came from a stored object rather than the origin. */
static bool
analytics_from_cache(enum analytics_outcome o)
{
    return analytics_is_hit(o) || o == ANALYTICS_revalidated || o == ANALYTICS_coalesced;
}

/* --- set-up --------------------------------------------------------------- */

static const struct config_route *
analytics_route_config(const struct config *cfg, const char *name)
{
    for (size_t i = 0; cfg != NULL && i < cfg->nroutes; i++)
        if (strcmp(cfg->routes[i].name, name) == 0)
            return &cfg->routes[i];
    return NULL;
}

static unsigned
analytics_warmup_ms(const struct analytics *a, const char *name)
{
    const struct config_route *r = analytics_route_config(a->cfg, name);
    return r != NULL ? r->analytics_warmup_ms : 60000;
}

static void analytics_add_routes(struct analytics *a);

struct analytics *
analytics_new(const struct config *cfg)
{
    struct analytics *a = util_xcalloc(1, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
    a->cfg = config_ref((struct config *)cfg);
    a->start_us = util_now_us();
    a->slot_ms = cfg->analytics_slot_ms ? cfg->analytics_slot_ms : 5000;
    a->nslots = cfg->analytics_window_ms / a->slot_ms;
    if (a->nslots < 1)
        a->nslots = 1;
    if (a->nslots > ANALYTICS_MAX_SLOTS)
        a->nslots = ANALYTICS_MAX_SLOTS;
    analytics_add_routes(a);
    return a;
}

unsigned
analytics_slot_ms(const struct analytics *a)
{
    return a->slot_ms;
}

/* The window the recent figures cover, in seconds. */
static double
analytics_window_s(const struct analytics *a)
{
    return (double)a->slot_ms * a->nslots / 1000.0;
}

void
analytics_set_config(struct analytics *a, const struct config *cfg)
{
    config_unref((struct config **)&a->cfg);
    a->cfg = config_ref((struct config *)cfg);
    analytics_add_routes(a);
}

void
analytics_register_worker(struct analytics *a, struct analytics_route *const *head)
{
    UTIL_ASSERT(a->nworkers < ANALYTICS_MAX_WORKERS);
    a->workers[a->nworkers++] = head;
}

/* The shared record of name, made on first use (any thread). The main
 * thread makes those of every configured route (analytics_new, _set_config)
 * with their warm-up; one made here (a name a reload just added) starts
 * warm-up from the process start with the default. */
static struct analytics_shared *
analytics_shared_get(struct analytics *a, const char *name, unsigned warmup_ms)
{
    struct analytics_shared *s;
    pthread_mutex_lock(&a->mu);
    for (s = a->routes; s != NULL; s = s->next)
        if (strcmp(s->name, name) == 0)
            break;
    if (s == NULL) {
        s = util_xcalloc(1, sizeof(*s));
        s->name = util_xstrdup(name);
        atomic_store(&s->cold_until_us, (int64_t)(a->start_us + (uint64_t)warmup_ms * 1000));
        s->next = a->routes;
        a->routes = s;
    }
    pthread_mutex_unlock(&a->mu);
    return s;
}

/* Main thread: a shared record for every configured route. */
static void
analytics_add_routes(struct analytics *a)
{
    for (size_t i = 0; i < a->cfg->nroutes; i++)
        analytics_shared_get(a, a->cfg->routes[i].name, a->cfg->routes[i].analytics_warmup_ms);
}

struct analytics_route *
analytics_worker_route(struct analytics *a, struct analytics_route **head, const char *name)
{
    for (struct analytics_route *r = *head; r != NULL; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    struct analytics_route *r = util_xcalloc(1, sizeof(*r));
    r->name = util_xstrdup(name);
    r->shared = analytics_shared_get(a, name, 60000);
    r->next = *head;
    __atomic_store_n(head, r, __ATOMIC_RELEASE); /* readers walk the list from here */
    return r;
}

void
analytics_route_flushed(struct analytics *a, const char *route)
{
    unsigned ms = analytics_warmup_ms(a, route);
    struct analytics_shared *s = analytics_shared_get(a, route, ms);
    atomic_store(&s->cold_until_us, (int64_t)(util_now_us() + (uint64_t)ms * 1000));
}

/* --- recording (worker) --------------------------------------------------- */

static struct hist *
analytics_hist(struct analytics_route *r, size_t i)
{
    struct hist *h = atomic_load_explicit(&r->h[i], memory_order_relaxed);
    if (h == NULL) {
        h = calloc(1, sizeof(*h));
        if (h != NULL)
            atomic_store_explicit(&r->h[i], h, memory_order_release);
    }
    return h;
}

static void
analytics_add(struct analytics_route *r, size_t i, uint64_t us)
{
    struct hist *h = analytics_hist(r, i);
    if (h != NULL)
        hist_record(h, us);
}

/* Counts one miss of the sample's URL in the route's space-saving summary. */
static void
analytics_topk_record(struct analytics_route *r, const struct analytics_sample *s)
{
    char key[ANALYTICS_TOPK_KEY];
    size_t hl = s->host_len < sizeof(key) ? s->host_len : sizeof(key);
    size_t tl = s->target_len < sizeof(key) - hl ? s->target_len : sizeof(key) - hl;
    if (s->host != NULL)
        memcpy(key, s->host, hl);
    else
        hl = 0;
    memcpy(key + hl, s->target, tl);
    size_t len = hl + tl;
    uint64_t hash = XXH3_64bits(key, len);
    if (r->topk == NULL) {
        struct analytics_topk_entry *t = calloc(ANALYTICS_TOPK, sizeof(*t));
        if (t == NULL)
            return;
        __atomic_store_n(&r->topk, t, __ATOMIC_RELEASE); /* readers may look from now on */
    }
    struct analytics_topk_entry *e = NULL, *min = &r->topk[0];
    for (size_t i = 0; i < ANALYTICS_TOPK; i++) {
        struct analytics_topk_entry *x = &r->topk[i];
        if (x->count != 0 && x->hash == hash && x->key_len == len) {
            e = x;
            break;
        }
        if (x->count < min->count)
            min = x;
    }
    bool fresh = e == NULL;
    if (fresh)
        e = min; /* the least counted makes room (space-saving) */
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_acq_rel);
    if (fresh) {
        e->error = e->count;
        memset(e->causes, 0, sizeof(e->causes));
        e->hash = hash;
        e->key_len = (uint32_t)len;
        memcpy(e->key, key, len);
    }
    e->count++;
    if (s->cause != ANALYTICS_CAUSE_NONE)
        e->causes[s->cause]++;
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
}

void
analytics_record(struct analytics_route *r, const struct analytics_sample *s)
{
    struct analytics_counts *c = &r->c;
    if (s->refresh) {
        c->refreshes++;
        c->refresh_failures += s->failed;
        analytics_add(r, ANALYTICS_SERIES_REFRESH, s->total_us);
        return;
    }
    bool hit = analytics_is_hit(s->outcome);
    c->requests++;
    c->outcomes[s->outcome]++;
    if (s->outcome == ANALYTICS_miss || s->outcome == ANALYTICS_pass) {
        if (s->cause != ANALYTICS_CAUSE_NONE)
            c->causes[s->cause]++;
        if (s->target != NULL)
            analytics_topk_record(r, s);
    }
    if (analytics_from_cache(s->outcome))
        c->bytes_cache += s->body_bytes;
    else
        c->bytes_origin += s->body_bytes;
    c->coalesce_timeouts += s->coalesce_timeout;
    c->coalesce_uncacheable += s->coalesce_uncacheable;
    bool cold = (int64_t)util_now_us() <
                atomic_load_explicit(&r->shared->cold_until_us, memory_order_relaxed);
    if (cold) {
        c->cold_requests++;
        c->cold_hits += hit;
    } else {
        c->warm_requests++;
        c->warm_hits += hit;
    }
    analytics_add(r, s->outcome, s->total_us);
    analytics_add(r, ANALYTICS_SERIES_TOTAL, s->total_us);
    analytics_add(r, cold ? ANALYTICS_SERIES_COLD : ANALYTICS_SERIES_WARM, s->total_us);
    if (s->origin_us != 0)
        analytics_add(r, ANALYTICS_SERIES_ORIGIN, s->origin_us);
    if (s->tier_us != 0)
        analytics_add(r, ANALYTICS_SERIES_TIER, s->tier_us);
    if (s->outcome == ANALYTICS_stale)
        analytics_add(r, ANALYTICS_SERIES_STALE_AGE, s->stale_age_us);
}

/* --- reading (main thread) ------------------------------------------------ */

static void
analytics_counts_add(struct analytics_counts *dst, const struct analytics_counts *src, int sign)
{
    /* struct analytics_counts is uint64_t fields only. */
    uint64_t *d = (uint64_t *)dst;
    const volatile uint64_t *s = (const volatile uint64_t *)src;
    for (size_t i = 0; i < sizeof(*dst) / sizeof(uint64_t); i++)
        d[i] += sign > 0 ? s[i] : -s[i];
}

static void
analytics_view_free(struct analytics_view *v)
{
    for (size_t i = 0; i < ANALYTICS_NSERIES; i++) {
        free(v->h[i]);
        v->h[i] = NULL;
    }
}

/* Adds src into v's series i (allocating it). */
static void
analytics_view_merge(struct analytics_view *v, size_t i, const struct hist *src)
{
    if (v->h[i] == NULL && (v->h[i] = calloc(1, sizeof(struct hist))) == NULL)
        return;
    hist_merge(v->h[i], src);
}

/* The sum over workers of route name since start. */
static void
analytics_view_since_start(struct analytics *a, const char *name, struct analytics_view *v)
{
    memset(v, 0, sizeof(*v));
    for (size_t w = 0; w < a->nworkers; w++) {
        const struct analytics_route *r = __atomic_load_n(a->workers[w], __ATOMIC_ACQUIRE);
        for (; r != NULL; r = r->next) {
            if (strcmp(r->name, name) != 0)
                continue;
            analytics_counts_add(&v->c, &r->c, 1);
            for (size_t i = 0; i < ANALYTICS_NSERIES; i++) {
                const struct hist *h = atomic_load_explicit(&((struct analytics_route *)r)->h[i],
                                                            memory_order_acquire);
                if (h != NULL)
                    analytics_view_merge(v, i, h);
            }
        }
    }
}

/* The recent window of s: the sum of its ring. */
static void
analytics_view_recent(const struct analytics_shared *s, struct analytics_view *v)
{
    memset(v, 0, sizeof(*v));
    for (unsigned k = 0; k < s->ring_len; k++) {
        analytics_counts_add(&v->c, &s->ring_c[k], 1);
        for (size_t i = 0; i < ANALYTICS_NSERIES; i++) {
            const struct hist_sparse *d = &s->ring_h[k][i];
            if (d->n == 0 && d->len == 0)
                continue;
            if (v->h[i] == NULL && (v->h[i] = calloc(1, sizeof(struct hist))) == NULL)
                continue;
            hist_add_sparse(v->h[i], d);
        }
    }
}

/* --- budgets -------------------------------------------------------------- */

static void
analytics_judge(struct analytics *a, struct analytics_shared *s,
                const struct analytics_view *recent)
{
    const struct config_route *rc = analytics_route_config(a->cfg, s->name);
    if (rc == NULL || !rc->budget.set) {
        s->budget = ANALYTICS_BUDGET_NONE;
        s->budget_text[0] = '\0';
        return;
    }
    const struct config_budget *b = &rc->budget;
    const struct hist *h = recent->h[ANALYTICS_SERIES_TOTAL];
    struct {
        const char *name;
        double q;
        int64_t limit_us;
    } qs[] = {{"p50", 0.5, b->p50_us},
              {"p90", 0.9, b->p90_us},
              {"p95", 0.95, b->p95_us},
              {"p99", 0.99, b->p99_us},
              {"p999", 0.999, b->p999_us}};
    char text[sizeof(s->budget_text)];
    size_t n = 0;
    bool breach = false;
    text[0] = '\0';
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        if (qs[i].limit_us < 0 || h == NULL || h->n == 0)
            continue;
        uint64_t v = hist_quantile(h, qs[i].q);
        if (v > (uint64_t)qs[i].limit_us) {
            breach = true;
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s %.1f ms > %.1f ms",
                                  n ? ", " : "", qs[i].name, (double)v / 1000.0,
                                  (double)qs[i].limit_us / 1000.0);
            if (n >= sizeof(text))
                n = sizeof(text) - 1;
        }
    }
    const struct analytics_counts *c = &recent->c;
    if (b->hit_ratio >= 0 && c->requests > 0) {
        uint64_t hits = c->outcomes[ANALYTICS_hit_memory] + c->outcomes[ANALYTICS_hit_redis] +
                        c->outcomes[ANALYTICS_hit_memcached] + c->outcomes[ANALYTICS_stale];
        double ratio = (double)hits / (double)c->requests;
        if (ratio < b->hit_ratio) {
            breach = true;
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%shit_ratio %.3f < %.3f",
                                  n ? ", " : "", ratio, b->hit_ratio);
            if (n >= sizeof(text))
                n = sizeof(text) - 1;
        }
    }
    enum analytics_budget_state now = breach ? ANALYTICS_BUDGET_BREACH : ANALYTICS_BUDGET_OK;
    if (now == ANALYTICS_BUDGET_BREACH && s->budget != ANALYTICS_BUDGET_BREACH)
        log_warn("route %s: budget breached over the last %g s: %s", s->name, analytics_window_s(a),
                 text);
    else if (now == ANALYTICS_BUDGET_OK && s->budget == ANALYTICS_BUDGET_BREACH)
        log_warn("route %s: budget met again over the last %g s", s->name, analytics_window_s(a));
    s->budget = now;
    memcpy(s->budget_text, text, sizeof(text));
}

/* --- ticks ---------------------------------------------------------------- */

static void
analytics_tick_route(struct analytics *a, struct analytics_shared *s)
{
    struct analytics_view now;
    analytics_view_since_start(a, s->name, &now);
    unsigned slot = s->ring_pos;
    for (size_t i = 0; i < ANALYTICS_NSERIES; i++)
        hist_sparse_free(&s->ring_h[slot][i]);
    s->ring_c[slot] = now.c;
    analytics_counts_add(&s->ring_c[slot], &s->prev_c, -1);
    s->prev_c = now.c;
    for (size_t i = 0; i < ANALYTICS_NSERIES; i++) {
        if (now.h[i] == NULL)
            continue;
        if (s->prev_h[i] == NULL && (s->prev_h[i] = calloc(1, sizeof(struct hist))) == NULL)
            continue;
        if (hist_delta(now.h[i], s->prev_h[i], &s->ring_h[slot][i]) == 0)
            memcpy(s->prev_h[i], now.h[i], sizeof(struct hist));
    }
    analytics_view_free(&now);
    s->ring_pos = (slot + 1) % a->nslots;
    if (s->ring_len < a->nslots)
        s->ring_len++;
    struct analytics_view recent;
    analytics_view_recent(s, &recent);
    analytics_judge(a, s, &recent);
    analytics_view_free(&recent);
}

void
analytics_tick(struct analytics *a)
{
    pthread_mutex_lock(&a->mu);
    struct analytics_shared *first = a->routes;
    pthread_mutex_unlock(&a->mu);
    /* Entries are only ever added at the head: the rest is stable. */
    for (struct analytics_shared *s = first; s != NULL; s = s->next)
        analytics_tick_route(a, s);
}

void
analytics_free(struct analytics **ap)
{
    struct analytics *a = *ap;
    if (a == NULL)
        return;
    struct analytics_shared *s = a->routes;
    while (s != NULL) {
        struct analytics_shared *next = s->next;
        for (size_t i = 0; i < ANALYTICS_NSERIES; i++) {
            free(s->prev_h[i]);
            for (unsigned k = 0; k < ANALYTICS_MAX_SLOTS; k++)
                hist_sparse_free(&s->ring_h[k][i]);
        }
        free(s->name);
        free(s);
        s = next;
    }
    for (size_t w = 0; w < a->nworkers; w++) {
        struct analytics_route *r = *(struct analytics_route **)a->workers[w];
        while (r != NULL) {
            struct analytics_route *next = r->next;
            for (size_t i = 0; i < ANALYTICS_NSERIES; i++)
                free(atomic_load(&r->h[i]));
            free(r->topk);
            free(r->name);
            free(r);
            r = next;
        }
        *(struct analytics_route **)a->workers[w] = NULL;
    }
    config_unref((struct config **)&a->cfg);
    pthread_mutex_destroy(&a->mu);
    free(a);
    *ap = NULL;
}

/* --- JSON ----------------------------------------------------------------- */

static void analytics_json_topk(struct analytics *a, struct evbuffer *out, const char *name);

static double
analytics_ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void
analytics_json_quantiles(struct evbuffer *out, const struct hist *h)
{
    evbuffer_add_printf(out,
                        "{\"count\":%" PRIu64 ",\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,"
                        "\"p95\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}",
                        h->n, h->n ? analytics_ms(h->sum_us) / (double)h->n : 0.0,
                        analytics_ms(hist_quantile(h, 0.5)), analytics_ms(hist_quantile(h, 0.9)),
                        analytics_ms(hist_quantile(h, 0.95)), analytics_ms(hist_quantile(h, 0.99)),
                        analytics_ms(hist_quantile(h, 0.999)), analytics_ms(h->max_us));
}

static void
analytics_json_latency(struct evbuffer *out, const struct analytics_view *v)
{
    bool first = true;
    ANALYTICS_PUT(out, "{");
    for (size_t i = 0; i < ANALYTICS_NSERIES; i++) {
        if (v->h[i] == NULL || v->h[i]->n == 0)
            continue;
        evbuffer_add_printf(out, "%s\"%s\":", first ? "" : ",", analytics_series_name(i));
        analytics_json_quantiles(out, v->h[i]);
        first = false;
    }
    ANALYTICS_PUT(out, "}");
}

static uint64_t
analytics_hits(const struct analytics_counts *c)
{
    return c->outcomes[ANALYTICS_hit_memory] + c->outcomes[ANALYTICS_hit_redis] +
           c->outcomes[ANALYTICS_hit_memcached] + c->outcomes[ANALYTICS_stale];
}

static double
analytics_ratio(uint64_t part, uint64_t whole)
{
    return whole ? (double)part / (double)whole : 0.0;
}

static void
analytics_json_counts(struct evbuffer *out, const struct analytics_counts *c)
{
    evbuffer_add_printf(out, "\"requests\":%" PRIu64 ",\"hit_ratio\":%.4f,\"byte_hit_ratio\":%.4f,",
                        c->requests, analytics_ratio(analytics_hits(c), c->requests),
                        analytics_ratio(c->bytes_cache, c->bytes_cache + c->bytes_origin));
    ANALYTICS_PUT(out, "\"outcomes\":{");
    for (size_t i = 0; i < ANALYTICS_NOUTCOMES; i++)
        evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", analytics_outcome_names[i],
                            c->outcomes[i]);
    ANALYTICS_PUT(out, "},\"miss_causes\":{");
    for (size_t i = 0; i < ANALYTICS_NCAUSES; i++)
        evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", analytics_cause_names[i],
                            c->causes[i]);
    evbuffer_add_printf(out,
                        "},\"bytes\":{\"cache\":%" PRIu64 ",\"origin\":%" PRIu64 "},"
                        "\"coalescing\":{\"followers\":%" PRIu64 ",\"timeouts\":%" PRIu64
                        ",\"uncacheable\":%" PRIu64 "},"
                        "\"refresh\":{\"count\":%" PRIu64 ",\"failures\":%" PRIu64 "}",
                        c->bytes_cache, c->bytes_origin, c->outcomes[ANALYTICS_coalesced],
                        c->coalesce_timeouts, c->coalesce_uncacheable, c->refreshes,
                        c->refresh_failures);
}

/* Seconds saved by the cache: hits × (median without − median with). */
static double
analytics_saved_s(const struct analytics_view *v, size_t baseline)
{
    struct hist hits;
    const struct hist *base = v->h[baseline];
    uint64_t n = analytics_hits(&v->c) - v->c.outcomes[ANALYTICS_stale];
    if (base == NULL || base->n == 0 || n == 0)
        return 0.0;
    memset(&hits, 0, sizeof(hits));
    for (size_t i = ANALYTICS_hit_memory; i <= ANALYTICS_hit_memcached; i++)
        if (v->h[i] != NULL)
            hist_merge(&hits, v->h[i]);
    if (hits.n == 0)
        return 0.0;
    double d = (double)hist_quantile(base, 0.5) - (double)hist_quantile(&hits, 0.5);
    return d > 0 ? (double)n * d / 1e6 : 0.0;
}

/* Log-spaced bins for the dashboard's hit/miss histogram: 10 µs .. 10 s. */
#define ANALYTICS_BINS 36

static void
analytics_json_bins(struct evbuffer *out, const struct analytics_view *v)
{
    double bounds[ANALYTICS_BINS + 1];
    for (int i = 0; i <= ANALYTICS_BINS; i++)
        bounds[i] = 10.0 * pow(10.0, (double)i / 6.0); /* µs, 6 bins a decade */
    ANALYTICS_PUT(out, "{\"bounds_ms\":[");
    for (int i = 0; i <= ANALYTICS_BINS; i++)
        evbuffer_add_printf(out, "%s%.4g", i ? "," : "", bounds[i] / 1000.0);
    const size_t groups[2][3] = {
        {ANALYTICS_hit_memory, ANALYTICS_hit_redis, ANALYTICS_hit_memcached},
        {ANALYTICS_miss, ANALYTICS_miss, ANALYTICS_miss}};
    const char *names[2] = {"hit", "miss"};
    for (int g = 0; g < 2; g++) {
        evbuffer_add_printf(out, "],\"%s\":[", names[g]);
        for (int i = 0; i < ANALYTICS_BINS; i++) {
            uint64_t n = 0;
            for (int k = 0; k < 3; k++) {
                if (g == 1 && k > 0)
                    break;
                const struct hist *h = v->h[groups[g][k]];
                if (h != NULL)
                    n += hist_count_le(h, (uint64_t)bounds[i + 1]) -
                         hist_count_le(h, (uint64_t)bounds[i]);
            }
            evbuffer_add_printf(out, "%s%" PRIu64, i ? "," : "", n);
        }
    }
    ANALYTICS_PUT(out, "]}");
}

static void
analytics_json_route(struct analytics *a, struct evbuffer *out, const char *name,
                     const struct analytics_view *all, const struct analytics_view *recent,
                     const struct analytics_shared *s)
{
    const struct analytics_counts *c = &all->c;
    ANALYTICS_PUT(out, "{");
    if (name != NULL)
        evbuffer_add_printf(out, "\"name\":\"%s\",", name);
    analytics_json_counts(out, c);
    if (s != NULL) {
        int64_t left = atomic_load(&s->cold_until_us) - (int64_t)util_now_us();
        evbuffer_add_printf(out,
                            ",\"cold\":{\"active\":%s,\"left_s\":%.1f,\"warmup_s\":%.1f,"
                            "\"requests\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"hit_ratio\":%.4f",
                            left > 0 ? "true" : "false", left > 0 ? (double)left / 1e6 : 0.0,
                            (double)analytics_warmup_ms(a, name) / 1000.0, c->cold_requests,
                            c->cold_hits, analytics_ratio(c->cold_hits, c->cold_requests));
        if (all->h[ANALYTICS_SERIES_COLD] != NULL) {
            ANALYTICS_PUT(out, ",\"latency\":");
            analytics_json_quantiles(out, all->h[ANALYTICS_SERIES_COLD]);
        }
        evbuffer_add_printf(
            out, "},\"warm\":{\"requests\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"hit_ratio\":%.4f",
            c->warm_requests, c->warm_hits, analytics_ratio(c->warm_hits, c->warm_requests));
        if (all->h[ANALYTICS_SERIES_WARM] != NULL) {
            ANALYTICS_PUT(out, ",\"latency\":");
            analytics_json_quantiles(out, all->h[ANALYTICS_SERIES_WARM]);
        }
        ANALYTICS_PUT(out, "}");
        evbuffer_add_printf(out, ",\"budget\":{\"status\":\"%s\",\"detail\":\"%s\"}",
                            s->budget == ANALYTICS_BUDGET_NONE ? "none"
                            : s->budget == ANALYTICS_BUDGET_OK ? "ok"
                                                               : "breach",
                            s->budget_text);
        analytics_json_topk(a, out, name);
    }
    evbuffer_add_printf(out, ",\"time_saved_s\":%.3f,\"time_saved_bypass_s\":%.3f",
                        analytics_saved_s(all, ANALYTICS_miss),
                        analytics_saved_s(all, ANALYTICS_bypass));
    ANALYTICS_PUT(out, ",\"latency\":{\"since_start\":");
    analytics_json_latency(out, all);
    ANALYTICS_PUT(out, ",\"recent\":");
    analytics_json_latency(out, recent);
    ANALYTICS_PUT(out, "},\"recent\":{");
    analytics_json_counts(out, &recent->c);
    ANALYTICS_PUT(out, "},\"histogram\":");
    analytics_json_bins(out, all);
    ANALYTICS_PUT(out, "}");
}

/* A route's top missed URLs over every worker: entries of the same URL
 * summed, the ANALYTICS_TOP_SHOWN largest shown with their dominant cause. */
#define ANALYTICS_TOP_SHOWN 10

static int
analytics_topk_cmp(const void *a, const void *b)
{
    const struct analytics_topk_entry *x = a, *y = b;
    return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

static void
analytics_json_topk(struct analytics *a, struct evbuffer *out, const char *name)
{
    struct analytics_topk_entry *all = calloc(a->nworkers * ANALYTICS_TOPK + 1, sizeof(*all));
    size_t n = 0;
    ANALYTICS_PUT(out, ",\"top_missed\":[");
    for (size_t w = 0; all != NULL && w < a->nworkers; w++) {
        const struct analytics_route *r = __atomic_load_n(a->workers[w], __ATOMIC_ACQUIRE);
        for (; r != NULL; r = r->next) {
            struct analytics_topk_entry *t =
                __atomic_load_n(&((struct analytics_route *)r)->topk, __ATOMIC_ACQUIRE);
            if (strcmp(r->name, name) != 0 || t == NULL)
                continue;
            for (size_t i = 0; i < ANALYTICS_TOPK; i++) {
                struct analytics_topk_entry copy;
                uint32_t v1 = atomic_load_explicit(&t[i].seq, memory_order_acquire);
                memcpy((char *)&copy + sizeof(copy.seq), (char *)&t[i] + sizeof(t[i].seq),
                       sizeof(copy) - sizeof(copy.seq));
                atomic_thread_fence(memory_order_acquire);
                uint32_t v2 = atomic_load_explicit(&t[i].seq, memory_order_relaxed);
                if ((v1 & 1) || v1 != v2 || copy.count == 0 || copy.key_len > sizeof(copy.key))
                    continue; /* being written: it will be there next time */
                size_t j;
                for (j = 0; j < n; j++)
                    if (all[j].hash == copy.hash && all[j].key_len == copy.key_len)
                        break;
                if (j == n)
                    all[n++] = copy;
                else {
                    all[j].count += copy.count;
                    all[j].error += copy.error;
                    for (size_t c = 0; c < ANALYTICS_NCAUSES; c++)
                        all[j].causes[c] += copy.causes[c];
                }
            }
        }
    }
    if (all != NULL)
        qsort(all, n, sizeof(*all), analytics_topk_cmp);
    for (size_t i = 0; all != NULL && i < n && i < ANALYTICS_TOP_SHOWN; i++) {
        size_t dom = 0;
        for (size_t c = 1; c < ANALYTICS_NCAUSES; c++)
            if (all[i].causes[c] > all[i].causes[dom])
                dom = c;
        evbuffer_add_printf(out, "%s{\"url\":\"", i ? "," : "");
        for (size_t k = 0; k < all[i].key_len; k++) { /* printable ASCII: the parser's */
            char ch = all[i].key[k];
            if (ch == '"' || ch == '\\')
                evbuffer_add(out, "\\", 1);
            evbuffer_add(out, &ch, 1);
        }
        evbuffer_add_printf(
            out, "\",\"misses\":%" PRIu64 ",\"overcount\":%" PRIu64 ",\"cause\":\"%s\"}",
            all[i].count, all[i].error, all[i].causes[dom] ? analytics_cause_names[dom] : "none");
    }
    ANALYTICS_PUT(out, "]");
    free(all);
}

/* Adds v into sum (counts and histograms). */
static void
analytics_view_add(struct analytics_view *sum, const struct analytics_view *v)
{
    analytics_counts_add(&sum->c, &v->c, 1);
    for (size_t i = 0; i < ANALYTICS_NSERIES; i++)
        if (v->h[i] != NULL)
            analytics_view_merge(sum, i, v->h[i]);
}

void
analytics_format_json(struct analytics *a, struct evbuffer *out)
{
    struct analytics_view total, total_recent;
    memset(&total, 0, sizeof(total));
    memset(&total_recent, 0, sizeof(total_recent));
    pthread_mutex_lock(&a->mu);
    struct analytics_shared *first = a->routes;
    pthread_mutex_unlock(&a->mu);
    evbuffer_add_printf(out, "{\"enabled\":%s,\"window_s\":%g,\"slot_s\":%g,\"routes\":[",
                        a->cfg->analytics_enabled ? "true" : "false", analytics_window_s(a),
                        (double)a->slot_ms / 1000.0);
    bool comma = false;
    for (struct analytics_shared *s = first; s != NULL; s = s->next) {
        struct analytics_view all, recent;
        analytics_view_since_start(a, s->name, &all);
        analytics_view_recent(s, &recent);
        if (comma)
            ANALYTICS_PUT(out, ",");
        analytics_json_route(a, out, s->name, &all, &recent, s);
        comma = true;
        analytics_view_add(&total, &all);
        analytics_view_add(&total_recent, &recent);
        analytics_view_free(&all);
        analytics_view_free(&recent);
    }
    ANALYTICS_PUT(out, "],\"total\":");
    analytics_json_route(a, out, NULL, &total, &total_recent, NULL);
    ANALYTICS_PUT(out, "}");
    analytics_view_free(&total);
    analytics_view_free(&total_recent);
}

/* --- Prometheus ------------------------------------------------------------ */

void
analytics_format_prometheus(struct analytics *a, struct evbuffer *out)
{
    pthread_mutex_lock(&a->mu);
    struct analytics_shared *first = a->routes;
    pthread_mutex_unlock(&a->mu);
    size_t nroutes = 0;
    for (struct analytics_shared *s = first; s != NULL; s = s->next)
        nroutes++;
    if (nroutes == 0)
        return;
    struct analytics_view *all = util_xcalloc(nroutes, sizeof(*all));
    struct analytics_view *recent = util_xcalloc(nroutes, sizeof(*recent));
    struct analytics_shared **rs = util_xcalloc(nroutes, sizeof(*rs));
    size_t k = 0;
    for (struct analytics_shared *s = first; s != NULL; s = s->next, k++) {
        rs[k] = s;
        analytics_view_since_start(a, s->name, &all[k]);
        analytics_view_recent(s, &recent[k]);
    }

    evbuffer_add_printf(out, "# HELP tailcache_route_requests_total Requests per route.\n"
                             "# TYPE tailcache_route_requests_total counter\n");
    for (k = 0; k < nroutes; k++)
        evbuffer_add_printf(out, "tailcache_route_requests_total{route=\"%s\"} %" PRIu64 "\n",
                            rs[k]->name, all[k].c.requests);
    evbuffer_add_printf(out, "# HELP tailcache_route_outcomes_total Requests per route by how "
                             "they ended.\n# TYPE tailcache_route_outcomes_total counter\n");
    for (k = 0; k < nroutes; k++)
        for (size_t i = 0; i < ANALYTICS_NOUTCOMES; i++)
            evbuffer_add_printf(out,
                                "tailcache_route_outcomes_total{route=\"%s\",outcome=\"%s\"} "
                                "%" PRIu64 "\n",
                                rs[k]->name, analytics_outcome_names[i], all[k].c.outcomes[i]);
    evbuffer_add_printf(out, "# HELP tailcache_route_misses_total Misses per route by cause.\n"
                             "# TYPE tailcache_route_misses_total counter\n");
    for (k = 0; k < nroutes; k++)
        for (size_t i = 0; i < ANALYTICS_NCAUSES; i++)
            evbuffer_add_printf(
                out, "tailcache_route_misses_total{route=\"%s\",cause=\"%s\"} %" PRIu64 "\n",
                rs[k]->name, analytics_cause_names[i], all[k].c.causes[i]);
    evbuffer_add_printf(out, "# HELP tailcache_route_bytes_total Response body bytes per route, "
                             "from cached objects or from the origin.\n"
                             "# TYPE tailcache_route_bytes_total counter\n");
    for (k = 0; k < nroutes; k++)
        evbuffer_add_printf(out,
                            "tailcache_route_bytes_total{route=\"%s\",source=\"cache\"} %" PRIu64
                            "\ntailcache_route_bytes_total{route=\"%s\",source=\"origin\"} "
                            "%" PRIu64 "\n",
                            rs[k]->name, all[k].c.bytes_cache, rs[k]->name, all[k].c.bytes_origin);
    evbuffer_add_printf(out, "# HELP tailcache_route_phase_requests_total Requests in the warm-up "
                             "window after start or a flush (cold) and after it (warm).\n"
                             "# TYPE tailcache_route_phase_requests_total counter\n");
    for (k = 0; k < nroutes; k++)
        evbuffer_add_printf(out,
                            "tailcache_route_phase_requests_total{route=\"%s\",phase=\"cold\"} "
                            "%" PRIu64 "\ntailcache_route_phase_requests_total{route=\"%s\","
                            "phase=\"warm\"} %" PRIu64 "\n",
                            rs[k]->name, all[k].c.cold_requests, rs[k]->name,
                            all[k].c.warm_requests);
    evbuffer_add_printf(out, "# HELP tailcache_route_phase_hits_total Hits in the warm-up window "
                             "(cold) and after it (warm).\n"
                             "# TYPE tailcache_route_phase_hits_total counter\n");
    for (k = 0; k < nroutes; k++)
        evbuffer_add_printf(out,
                            "tailcache_route_phase_hits_total{route=\"%s\",phase=\"cold\"} "
                            "%" PRIu64 "\ntailcache_route_phase_hits_total{route=\"%s\","
                            "phase=\"warm\"} %" PRIu64 "\n",
                            rs[k]->name, all[k].c.cold_hits, rs[k]->name, all[k].c.warm_hits);

    evbuffer_add_printf(out, "# HELP tailcache_route_latency_seconds Latency per route and series "
                             "(an outcome, total, origin, tier, cold, warm, refresh, stale_age).\n"
                             "# TYPE tailcache_route_latency_seconds histogram\n");
    for (k = 0; k < nroutes; k++)
        for (size_t i = 0; i < ANALYTICS_NSERIES; i++) {
            const struct hist *h = all[k].h[i];
            if (h == NULL || h->n == 0)
                continue;
            for (size_t b = 0; b < ANALYTICS_NLE; b++)
                evbuffer_add_printf(out,
                                    "tailcache_route_latency_seconds_bucket{route=\"%s\","
                                    "series=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                                    rs[k]->name, analytics_series_name(i),
                                    (double)analytics_le_us[b] / 1e6,
                                    hist_count_le(h, analytics_le_us[b]));
            evbuffer_add_printf(out,
                                "tailcache_route_latency_seconds_bucket{route=\"%s\",series=\"%s\","
                                "le=\"+Inf\"} %" PRIu64 "\n"
                                "tailcache_route_latency_seconds_sum{route=\"%s\",series=\"%s\"} "
                                "%.6f\n"
                                "tailcache_route_latency_seconds_count{route=\"%s\",series=\"%s\"} "
                                "%" PRIu64 "\n",
                                rs[k]->name, analytics_series_name(i), h->n, rs[k]->name,
                                analytics_series_name(i), (double)h->sum_us / 1e6, rs[k]->name,
                                analytics_series_name(i), h->n);
        }
    evbuffer_add_printf(out,
                        "# HELP tailcache_route_latency_recent_seconds Latency quantiles per "
                        "route and series over the last %g s.\n"
                        "# TYPE tailcache_route_latency_recent_seconds gauge\n",
                        analytics_window_s(a));
    static const double qs[] = {0.5, 0.9, 0.95, 0.99, 0.999, 1.0};
    for (k = 0; k < nroutes; k++)
        for (size_t i = 0; i < ANALYTICS_NSERIES; i++) {
            const struct hist *h = recent[k].h[i];
            if (h == NULL || h->n == 0)
                continue;
            for (size_t q = 0; q < sizeof(qs) / sizeof(qs[0]); q++)
                evbuffer_add_printf(out,
                                    "tailcache_route_latency_recent_seconds{route=\"%s\","
                                    "series=\"%s\",quantile=\"%g\"} %.6f\n",
                                    rs[k]->name, analytics_series_name(i), qs[q],
                                    (double)hist_quantile(h, qs[q]) / 1e6);
        }
    evbuffer_add_printf(out,
                        "# HELP tailcache_route_hit_ratio_recent Hit ratio per route over the "
                        "last %g s.\n# TYPE tailcache_route_hit_ratio_recent gauge\n",
                        analytics_window_s(a));
    for (k = 0; k < nroutes; k++)
        evbuffer_add_printf(out, "tailcache_route_hit_ratio_recent{route=\"%s\"} %.4f\n",
                            rs[k]->name,
                            analytics_ratio(analytics_hits(&recent[k].c), recent[k].c.requests));
    evbuffer_add_printf(out,
                        "# HELP tailcache_route_budget_ok 1 when the route meets its budget "
                        "over the last %g s, 0 when it breaches it (routes with a budget).\n"
                        "# TYPE tailcache_route_budget_ok gauge\n",
                        analytics_window_s(a));
    for (k = 0; k < nroutes; k++)
        if (rs[k]->budget != ANALYTICS_BUDGET_NONE)
            evbuffer_add_printf(out, "tailcache_route_budget_ok{route=\"%s\"} %d\n", rs[k]->name,
                                rs[k]->budget == ANALYTICS_BUDGET_OK);
    for (k = 0; k < nroutes; k++) {
        analytics_view_free(&all[k]);
        analytics_view_free(&recent[k]);
    }
    free(all);
    free(recent);
    free(rs);
}
