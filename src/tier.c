/*
 * tier: lookups, writes, deletes and breakers for the shared tiers
 * (tier.h).
 *
 * A lookup is a small record that walks the route's tier list: it starts
 * one operation at a time (a Redis GET on this thread's connection, or a
 * memcached GET queued to the pool and answered on this thread's base),
 * and moves to the next tier on a miss, an error or a timeout. Records
 * stay on the thread's list until their backend has answered, even when
 * cancelled, so a late answer never touches freed memory; the thread
 * frees what is left when it stops.
 *
 * Keys: Redis stores "<prefix><cache key>" (binary safe); memcached keys
 * must be short and printable, so they are "<prefix>" and the XXH3-128 of
 * the cache key in hex, and the envelope's own copy of the key tells a
 * hash collision from a hit.
 */
#include "tier.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <xxhash.h>

#include <event2/event.h>

#include "ban.h"
#include "cache_policy.h"
#include "http_parser.h"
#include "log.h"
#include "mc.h"
#include "obj.h"
#include "redis.h"
#include "stats.h"
#include "util.h"

#define TIER_MC_KEY_MAX 250
#define TIER_TAGS_MAX 32 /* tags indexed per object at most */
#define TIER_DEL_BATCH 256

struct tier_breaker {
    unsigned fails;
    uint64_t open_until_us; /* 0: closed */
    bool probing;           /* half-open: one probe is out */
};

struct tier_shared {
    struct config *cfg; /* one reference: the start-up settings */
    char redis_ip[INET6_ADDRSTRLEN];
    int redis_port;
    struct mc_pool *mc;
    struct ban_list *bans;
};

TAILQ_HEAD(tier_lookup_list, tier_lookup);

struct tier_thread {
    struct tier_shared *ts;
    struct event_base *base;
    struct stats *st;
    struct redis_client *redis;
    struct mc_done *mcd;
    struct tier_breaker br[CONFIG_TIERS_MAX];
    struct tier_lookup_list lookups;
    bool stopping;
};

struct tier_lookup {
    struct tier_thread *tt;
    tier_lookup_cb cb; /* NULL once cancelled */
    void *arg;
    enum config_tier tiers[CONFIG_TIERS_MAX];
    size_t ntiers;
    size_t next; /* index of the next tier to try */
    bool failed; /* a tier failed, timed out or was skipped */
    enum config_tier current;
    uint64_t t_op; /* µs, the current operation started */
    TAILQ_ENTRY(tier_lookup) link;
    size_t key_len;
    char key[];
};

/* --- shared ------------------------------------------------------------- */

/* The numeric IP and port of a resolved address. */
static void
tier_ip_port(const struct config_addr *a, char ip[INET6_ADDRSTRLEN], int *port)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, INET6_ADDRSTRLEN);
        *port = ntohs(in->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, INET6_ADDRSTRLEN);
        *port = ntohs(in6->sin6_port);
    }
}

struct tier_shared *
tier_shared_new(const struct config *cfg, struct ban_list *bans)
{
    struct tier_shared *ts = util_xcalloc(1, sizeof(*ts));
    ts->cfg = config_ref((struct config *)cfg);
    ts->bans = bans;
    if (cfg->redis.enabled)
        tier_ip_port(&cfg->redis.addr, ts->redis_ip, &ts->redis_port);
    if (cfg->memcached.enabled) {
        const struct config_memcached *m = &cfg->memcached;
        char(*hosts)[INET6_ADDRSTRLEN] = util_xcalloc(m->nservers, sizeof(*hosts));
        const char **hp = util_xcalloc(m->nservers, sizeof(*hp));
        int *ports = util_xcalloc(m->nservers, sizeof(*ports));
        for (size_t i = 0; i < m->nservers; i++) {
            tier_ip_port(&m->servers[i], hosts[i], &ports[i]);
            hp[i] = hosts[i];
        }
        struct mc_pool_opts o = {
            .hosts = hp,
            .ports = ports,
            .nservers = m->nservers,
            .threads = m->threads,
            .queue = m->queue,
            .connect_timeout_ms = m->connect_timeout_ms,
            .timeout_ms = m->timeout_ms,
            .retry_ms = m->retry_ms,
        };
        ts->mc = mc_pool_new(&o);
        free(hosts);
        free(hp);
        free(ports);
        if (ts->mc == NULL) {
            tier_shared_free(&ts);
            return NULL;
        }
    }
    return ts;
}

void
tier_shared_free(struct tier_shared **tsp)
{
    struct tier_shared *ts = *tsp;
    if (ts == NULL)
        return;
    mc_pool_free(&ts->mc);
    config_unref(&ts->cfg);
    free(ts);
    *tsp = NULL;
}

bool
tier_shared_any(const struct tier_shared *ts)
{
    return ts->cfg->redis.enabled || ts->cfg->memcached.enabled;
}

struct ban_list *
tier_shared_bans(const struct tier_shared *ts)
{
    return ts->bans;
}

/* --- thread ------------------------------------------------------------- */

struct redis_client *
tier_redis_connect(struct tier_shared *ts, struct event_base *base, const char *what)
{
    const struct config_redis *r = &ts->cfg->redis;
    char name[256];
    if (!r->enabled)
        return NULL;
    snprintf(name, sizeof(name), "%s %s", what, r->addr.text);
    struct redis_client_opts o = {
        .ip = ts->redis_ip,
        .port = ts->redis_port,
        .password = r->password,
        .db = r->db,
        .connect_timeout_ms = r->connect_timeout_ms,
        .timeout_ms = r->timeout_ms,
        .backoff_min_ms = r->backoff_min_ms,
        .backoff_max_ms = r->backoff_max_ms,
        .name = name,
    };
    return redis_client_new(base, &o);
}

struct tier_thread *
tier_thread_new(struct tier_shared *ts, struct event_base *base, struct stats *st)
{
    struct tier_thread *tt = util_xcalloc(1, sizeof(*tt));
    tt->ts = ts;
    tt->base = base;
    tt->st = st;
    TAILQ_INIT(&tt->lookups);
    tt->redis = tier_redis_connect(ts, base, "redis");
    if (ts->mc != NULL)
        tt->mcd = mc_done_new(base);
    return tt;
}

void
tier_thread_free(struct tier_thread **ttp)
{
    struct tier_thread *tt = *ttp;
    if (tt == NULL)
        return;
    tt->stopping = true;
    struct tier_lookup *lk;
    TAILQ_FOREACH(lk, &tt->lookups, link)
    lk->cb = NULL;
    /* Redis answers pending commands with ECLOSED now (records freed in
     * their callbacks); memcached results still on their way are dropped. */
    redis_client_free(&tt->redis);
    mc_done_free(&tt->mcd);
    while ((lk = TAILQ_FIRST(&tt->lookups)) != NULL) {
        TAILQ_REMOVE(&tt->lookups, lk, link);
        free(lk);
    }
    free(tt);
    *ttp = NULL;
}

bool
tier_thread_connecting(const struct tier_thread *tt)
{
    return tt != NULL && tt->redis != NULL && !redis_client_up(tt->redis);
}

struct redis_client *
tier_thread_redis(struct tier_thread *tt)
{
    return tt->redis;
}

const char *
tier_redis_prefix(const struct tier_thread *tt)
{
    return tt->ts->cfg->redis.enabled ? tt->ts->cfg->redis.prefix : "";
}

static bool
tier_configured(const struct tier_thread *tt, enum config_tier t)
{
    switch (t) {
    case CONFIG_TIER_REDIS:
        return tt->redis != NULL;
    case CONFIG_TIER_MEMCACHED:
        return tt->mcd != NULL;
    case CONFIG_TIER_MEMORY:
        break;
    }
    return false;
}

bool
tier_route_has_l2(const struct tier_thread *tt, const enum config_tier *tiers, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tier_configured(tt, tiers[i]))
            return true;
    return false;
}

/* --- breakers ----------------------------------------------------------- */

static bool
tier_breaker_allows(struct tier_breaker *b)
{
    if (b->open_until_us == 0)
        return true;
    if (b->probing || util_now_us() < b->open_until_us)
        return false;
    b->probing = true; /* half-open: this one is the probe */
    return true;
}

static void
tier_breaker_result(struct tier_thread *tt, enum config_tier t, bool ok)
{
    struct tier_breaker *b = &tt->br[t];
    const struct config *cfg = tt->ts->cfg;
    unsigned limit =
        t == CONFIG_TIER_REDIS ? cfg->redis.breaker_failures : cfg->memcached.breaker_failures;
    unsigned cooldown = t == CONFIG_TIER_REDIS ? cfg->redis.breaker_cooldown_ms
                                               : cfg->memcached.breaker_cooldown_ms;
    if (ok) {
        if (b->open_until_us != 0)
            log_info("%s tier: breaker closed", t == CONFIG_TIER_REDIS ? "redis" : "memcached");
        b->fails = 0;
        b->open_until_us = 0;
        b->probing = false;
        return;
    }
    b->fails++;
    if (b->probing || b->fails >= limit) {
        if (b->open_until_us == 0)
            log_warn("%s tier: %u failures in a row; skipping it for %u ms",
                     t == CONFIG_TIER_REDIS ? "redis" : "memcached", b->fails, cooldown);
        b->open_until_us = util_now_us() + (uint64_t)cooldown * 1000;
        b->probing = false;
    }
}

/* --- keys --------------------------------------------------------------- */

/* "<prefix><hex XXH3-128 of key>" into buf; returns its length. */
static size_t
tier_mc_key(const struct tier_thread *tt, const char *key, size_t len, char *buf, size_t cap)
{
    XXH128_hash_t h = XXH3_128bits(key, len);
    int n = snprintf(buf, cap, "%s%016" PRIx64 "%016" PRIx64, tt->ts->cfg->memcached.prefix,
                     (uint64_t)h.high64, (uint64_t)h.low64);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* "<prefix><key>" in a new buffer. */
static char *
tier_redis_key(const struct tier_thread *tt, const char *key, size_t len, size_t *out_len)
{
    const char *prefix = tt->ts->cfg->redis.prefix;
    size_t plen = strlen(prefix);
    char *k = malloc(plen + len + 1);
    if (k == NULL)
        return NULL;
    memcpy(k, prefix, plen);
    memcpy(k + plen, key, len);
    k[plen + len] = '\0';
    *out_len = plen + len;
    return k;
}

/* --- lookups ------------------------------------------------------------ */

static void tier_lookup_next(struct tier_lookup *lk);

static void
tier_lookup_done(struct tier_lookup *lk, const struct tier_hit *hit)
{
    struct tier_thread *tt = lk->tt;
    tier_lookup_cb cb = lk->cb;
    TAILQ_REMOVE(&tt->lookups, lk, link);
    if (cb != NULL)
        cb(lk->arg, hit, lk->failed);
    free(lk);
}

/* The counters each L2 tier has, in struct stats. */
enum tier_stat {
    TIER_HITS,
    TIER_MISSES,
    TIER_ERRORS,
    TIER_TIMEOUTS,
    TIER_SKIPPED,
};

static void
tier_count(struct tier_thread *tt, enum config_tier t, enum tier_stat k)
{
    struct stats *st = tt->st;
    uint64_t *redis[] = {&st->tier_redis_hits, &st->tier_redis_misses, &st->tier_redis_errors,
                         &st->tier_redis_timeouts, &st->tier_redis_skipped};
    uint64_t *mc[] = {&st->tier_memcached_hits, &st->tier_memcached_misses,
                      &st->tier_memcached_errors, &st->tier_memcached_timeouts,
                      &st->tier_memcached_skipped};
    (*(t == CONFIG_TIER_REDIS ? redis : mc)[k])++;
}

/* An answer came from the current tier: value is the stored bytes (NULL
 * for a miss). Decides hit or next tier. */
static void
tier_lookup_value(struct tier_lookup *lk, const char *value, size_t len)
{
    struct tier_thread *tt = lk->tt;
    struct tier_hit hit;
    if (value == NULL) {
        tier_count(tt, lk->current, TIER_MISSES);
        tier_lookup_next(lk);
        return;
    }
    int rc = envelope_decode(value, len, &hit.env);
    if (rc != ENVELOPE_OK || hit.env.key_len != lk->key_len ||
        memcmp(hit.env.key, lk->key, lk->key_len) != 0) {
        if (rc != ENVELOPE_OK)
            log_debug("%s tier: unreadable object (%s)",
                      lk->current == CONFIG_TIER_REDIS ? "redis" : "memcached",
                      rc == ENVELOPE_EVERSION ? "another envelope version" : "malformed");
        tier_count(tt, lk->current, TIER_MISSES);
        tier_lookup_next(lk);
        return;
    }
    if (ban_list_check(tt->ts->bans, lk->key, lk->key_len,
                       hit.env.kind == ENVELOPE_RESPONSE ? hit.env.head : NULL,
                       hit.env.kind == ENVELOPE_RESPONSE ? hit.env.head_len : 0,
                       hit.env.stored_at_us)) {
        tt->st->tier_banned++;
        tier_count(tt, lk->current, TIER_MISSES);
        tier_delete(tt, lk->key, lk->key_len);
        tier_lookup_next(lk);
        return;
    }
    tier_count(tt, lk->current, TIER_HITS);
    hit.tier = lk->current;
    tier_lookup_done(lk, &hit);
}

static void
tier_lookup_record_latency(struct tier_lookup *lk)
{
    uint64_t us = util_now_us() - lk->t_op;
    if (lk->current == CONFIG_TIER_REDIS)
        stats_hist_record(&lk->tt->st->tier_redis_lookup, us);
    else
        stats_hist_record(&lk->tt->st->tier_memcached_lookup, us);
}

/* What a tier answered a lookup: a value (NULL: none), or a failure. */
enum tier_answer {
    TIER_ANSWER_VALUE,
    TIER_ANSWER_TIMEOUT,
    TIER_ANSWER_ERROR,
};

static void
tier_lookup_answer(struct tier_lookup *lk, enum tier_answer a, const char *value, size_t len)
{
    struct tier_thread *tt = lk->tt;
    if (tt->stopping || lk->cb == NULL) {
        tier_lookup_done(lk, NULL);
        return;
    }
    tier_lookup_record_latency(lk);
    tier_breaker_result(tt, lk->current, a == TIER_ANSWER_VALUE);
    if (a == TIER_ANSWER_VALUE) {
        tier_lookup_value(lk, value, len);
        return;
    }
    tier_count(tt, lk->current, a == TIER_ANSWER_TIMEOUT ? TIER_TIMEOUTS : TIER_ERRORS);
    lk->failed = true;
    tier_lookup_next(lk);
}

static void
tier_on_redis_get(void *arg, struct redisReply *reply, enum redis_client_err err)
{
    if (err == REDIS_CLIENT_OK)
        tier_lookup_answer(arg, TIER_ANSWER_VALUE,
                           reply->type == REDIS_REPLY_STRING ? reply->str : NULL,
                           reply->type == REDIS_REPLY_STRING ? reply->len : 0);
    else
        tier_lookup_answer(
            arg, err == REDIS_CLIENT_ETIMEOUT ? TIER_ANSWER_TIMEOUT : TIER_ANSWER_ERROR, NULL, 0);
}

static void
tier_on_mc_get(void *arg, enum mc_result r, const char *value, size_t len)
{
    if (r == MC_OK || r == MC_NOTFOUND)
        tier_lookup_answer(arg, TIER_ANSWER_VALUE, r == MC_OK ? value : NULL, len);
    else
        tier_lookup_answer(arg, r == MC_TIMEOUT ? TIER_ANSWER_TIMEOUT : TIER_ANSWER_ERROR, NULL, 0);
}

/* Starts the operation on tier t; returns true when it is under way. */
static bool
tier_lookup_start(struct tier_lookup *lk, enum config_tier t)
{
    struct tier_thread *tt = lk->tt;
    if (!tier_configured(tt, t))
        return false;
    if (!tier_breaker_allows(&tt->br[t])) {
        tier_count(tt, t, TIER_SKIPPED);
        lk->failed = true;
        return false;
    }
    lk->current = t;
    lk->t_op = util_now_us();
    if (t == CONFIG_TIER_REDIS) {
        size_t klen;
        char *k = tier_redis_key(tt, lk->key, lk->key_len, &klen);
        const char *argv[2] = {"GET", k};
        size_t argvlen[2] = {3, klen};
        int rc = k != NULL
                     ? redis_client_command(tt->redis, tier_on_redis_get, lk, 2, argv, argvlen)
                     : -1;
        free(k);
        if (rc == 0)
            return true;
    } else {
        char k[TIER_MC_KEY_MAX + 1];
        size_t klen = tier_mc_key(tt, lk->key, lk->key_len, k, sizeof(k));
        if (klen > 0 &&
            mc_submit(tt->ts->mc, tt->mcd, MC_GET, k, klen, NULL, 0, 0, tier_on_mc_get, lk) == 0)
            return true;
    }
    /* Not connected, or the queue is full: skipped at no cost. A probe
     * that could not even start leaves the breaker half-open for the next. */
    tt->br[t].probing = false;
    tier_count(tt, t, TIER_SKIPPED);
    lk->failed = true;
    return false;
}

/* Tries the remaining tiers; completes the lookup as a miss after the last. */
static void
tier_lookup_next(struct tier_lookup *lk)
{
    while (lk->next < lk->ntiers) {
        enum config_tier t = lk->tiers[lk->next++];
        if (t != CONFIG_TIER_MEMORY && tier_lookup_start(lk, t))
            return;
    }
    tier_lookup_done(lk, NULL);
}

int
tier_lookup(struct tier_thread *tt, const enum config_tier *tiers, size_t n, const char *key,
            size_t key_len, tier_lookup_cb cb, void *arg, struct tier_lookup **handle)
{
    struct tier_lookup *lk = malloc(sizeof(*lk) + key_len + 1);
    if (lk == NULL)
        return -1;
    lk->tt = tt;
    lk->cb = cb;
    lk->arg = arg;
    lk->ntiers = n < CONFIG_TIERS_MAX ? n : CONFIG_TIERS_MAX;
    memcpy(lk->tiers, tiers, lk->ntiers * sizeof(tiers[0]));
    lk->next = 0;
    lk->failed = false;
    lk->key_len = key_len;
    memcpy(lk->key, key, key_len);
    lk->key[key_len] = '\0';
    TAILQ_INSERT_TAIL(&tt->lookups, lk, link);
    while (lk->next < lk->ntiers) {
        enum config_tier t = lk->tiers[lk->next++];
        if (t != CONFIG_TIER_MEMORY && tier_lookup_start(lk, t)) {
            *handle = lk;
            return 0;
        }
    }
    TAILQ_REMOVE(&tt->lookups, lk, link);
    free(lk);
    return -1;
}

void
tier_lookup_cancel(struct tier_lookup **hp)
{
    if (*hp != NULL)
        (*hp)->cb = NULL;
    *hp = NULL;
}

/* --- writes ------------------------------------------------------------- */

static void
tier_on_redis_write(void *arg, struct redisReply *reply, enum redis_client_err err)
{
    struct tier_thread *tt = arg;
    (void)reply;
    if (tt->stopping)
        return;
    if (err == REDIS_CLIENT_ETIMEOUT)
        tt->st->tier_redis_timeouts++;
    else if (err != REDIS_CLIENT_OK)
        tt->st->tier_redis_errors++;
}

static void
tier_on_mc_write(void *arg, enum mc_result r, const char *value, size_t len)
{
    struct tier_thread *tt = arg;
    (void)value;
    (void)len;
    if (r == MC_TIMEOUT)
        tt->st->tier_memcached_timeouts++;
    else if (r == MC_ERROR)
        tt->st->tier_memcached_errors++;
}

/* Adds the Redis key to the set of each tag named in the stored head. */
static void
tier_redis_tag(struct tier_thread *tt, const char *rkey, size_t rkey_len, const char *head,
               size_t head_len, const char *px, size_t px_len)
{
    const char *p = head, *end = head + head_len;
    unsigned ntags = 0;
    while (p < end && ntags < TIER_TAGS_MAX) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol != NULL ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL && (http_str_ieq(p, (size_t)(colon - p), "surrogate-key") ||
                              http_str_ieq(p, (size_t)(colon - p), "cache-tag"))) {
            const char *v = colon + 1;
            while (v < line_end && ntags < TIER_TAGS_MAX) {
                while (v < line_end && (*v == ' ' || *v == '\t' || *v == ',' || *v == '\r'))
                    v++;
                const char *t = v;
                while (v < line_end && *v != ' ' && *v != '\t' && *v != ',' && *v != '\r')
                    v++;
                if (v == t)
                    continue;
                size_t tlen = (size_t)(v - t);
                const char *prefix = tt->ts->cfg->redis.prefix;
                size_t plen = strlen(prefix);
                char *set = malloc(plen + 4 + tlen);
                if (set == NULL)
                    return;
                memcpy(set, prefix, plen);
                memcpy(set + plen, "tag:", 4);
                memcpy(set + plen + 4, t, tlen);
                size_t slen = plen + 4 + tlen;
                const char *sadd[3] = {"SADD", set, rkey};
                size_t sadd_len[3] = {4, slen, rkey_len};
                /* The set lives as long as its longest-lived member: set
                 * the expiry when it has none, raise it when it is shorter. */
                const char *nx[4] = {"PEXPIRE", set, px, "NX"};
                const char *gt[4] = {"PEXPIRE", set, px, "GT"};
                size_t exp_len[4] = {7, slen, px_len, 2};
                redis_client_command(tt->redis, tier_on_redis_write, tt, 3, sadd, sadd_len);
                redis_client_command(tt->redis, tier_on_redis_write, tt, 4, nx, exp_len);
                redis_client_command(tt->redis, tier_on_redis_write, tt, 4, gt, exp_len);
                free(set);
                ntags++;
            }
        }
        p = line_end + 1;
    }
}

void
tier_store_envelope(struct tier_thread *tt, const enum config_tier *tiers, size_t n,
                    const struct envelope *e, int64_t ttl_ms)
{
    const struct config *cfg = tt->ts->cfg;
    bool to_redis = false, to_mc = false;
    size_t size = envelope_size(e);
    if (ttl_ms <= 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (tiers[i] == CONFIG_TIER_REDIS && tt->redis != NULL) {
            if (size > cfg->redis.max_object_size)
                tt->st->tier_redis_too_large++;
            else
                to_redis = redis_client_up(tt->redis);
        } else if (tiers[i] == CONFIG_TIER_MEMCACHED && tt->mcd != NULL) {
            if (size > cfg->memcached.max_object_size)
                tt->st->tier_memcached_too_large++;
            else
                to_mc = true;
        }
    }
    if (!to_redis && !to_mc)
        return;
    char *buf = malloc(size);
    if (buf == NULL || envelope_encode(e, buf, size) != size) {
        free(buf);
        return;
    }
    if (to_redis) {
        char px[24];
        size_t klen;
        int pxn = snprintf(px, sizeof(px), "%" PRId64, ttl_ms);
        char *k = tier_redis_key(tt, e->key, e->key_len, &klen);
        if (k != NULL) {
            const char *argv[5] = {"SET", k, buf, "PX", px};
            size_t argvlen[5] = {3, klen, size, 2, (size_t)pxn};
            if (redis_client_command(tt->redis, tier_on_redis_write, tt, 5, argv, argvlen) == 0) {
                tt->st->tier_redis_stores++;
                if (e->kind == ENVELOPE_RESPONSE)
                    tier_redis_tag(tt, k, klen, e->head, e->head_len, px, (size_t)pxn);
            }
            free(k);
        }
    }
    if (to_mc) {
        char k[TIER_MC_KEY_MAX + 1];
        size_t klen = tier_mc_key(tt, e->key, e->key_len, k, sizeof(k));
        int64_t secs = (ttl_ms + 999) / 1000;
        /* memcached reads an expiry over 30 days as a Unix time. */
        uint32_t exptime = secs > 30 * 86400 ? (uint32_t)(time(NULL) + secs) : (uint32_t)secs;
        if (klen > 0 && mc_submit(tt->ts->mc, tt->mcd, MC_SET, k, klen, buf, size, exptime,
                                  tier_on_mc_write, tt) == 0)
            tt->st->tier_memcached_stores++;
        buf = NULL; /* handed over, whatever mc_submit returned */
    }
    free(buf);
}

void
tier_store(struct tier_thread *tt, const enum config_tier *tiers, size_t n, struct obj *o,
           int64_t stored_at_us)
{
    struct envelope e;
    struct iovec small[16];
    struct iovec *iov = small;
    int niov = 0;

    if (!tier_route_has_l2(tt, tiers, n))
        return;
    memset(&e, 0, sizeof(e));
    obj_get_meta(o, &e.meta);
    int64_t now = (int64_t)time(NULL);
    int64_t left = e.meta.lifetime - cache_policy_current_age(&e.meta, now);
    left += e.meta.swr > e.meta.sie ? e.meta.swr : e.meta.sie;
    if (left <= 0 || o->kind != OBJ_KIND_RESPONSE)
        return;
    /* A COMPLETE object's segments never change; its head may be replaced
     * by a revalidation, so it is copied under the lock. */
    obj_lock(o);
    if (o->state != OBJ_COMPLETE || o->head == NULL) {
        obj_unlock(o);
        return;
    }
    char *head = malloc(o->head_len + 1);
    size_t head_len = o->head_len;
    if (head != NULL)
        memcpy(head, o->head, head_len);
    int status = o->status;
    size_t nseg = 0;
    for (const struct obj_segment *s = o->first; s != NULL; s = s->next)
        nseg++;
    if (nseg > sizeof(small) / sizeof(small[0]))
        iov = malloc(nseg * sizeof(*iov));
    if (iov != NULL)
        for (const struct obj_segment *s = o->first; s != NULL; s = s->next)
            iov[niov++] = (struct iovec){(void *)s->data, s->len};
    obj_unlock(o);
    if (head != NULL && iov != NULL) {
        e.kind = ENVELOPE_RESPONSE;
        e.status = status;
        e.stored_at_us = stored_at_us;
        e.key = o->key;
        e.key_len = o->key_len;
        e.head = head;
        e.head_len = head_len;
        e.body_iov = iov;
        e.body_iovcnt = niov;
        tier_store_envelope(tt, tiers, n, &e, left * 1000);
    }
    if (iov != small)
        free(iov);
    free(head);
}

/* --- deletes ------------------------------------------------------------ */

void
tier_delete(struct tier_thread *tt, const char *key, size_t key_len)
{
    if (tt->redis != NULL) {
        size_t klen;
        char *k = tier_redis_key(tt, key, key_len, &klen);
        if (k != NULL) {
            const char *argv[2] = {"DEL", k};
            size_t argvlen[2] = {3, klen};
            redis_client_command(tt->redis, tier_on_redis_write, tt, 2, argv, argvlen);
            free(k);
        }
    }
    if (tt->mcd != NULL) {
        char k[TIER_MC_KEY_MAX + 1];
        size_t klen = tier_mc_key(tt, key, key_len, k, sizeof(k));
        if (klen > 0)
            mc_submit(tt->ts->mc, tt->mcd, MC_DELETE, k, klen, NULL, 0, 0, NULL, NULL);
    }
}

/* SMEMBERS answered: delete the members, then the set. */
static void
tier_on_tag_members(void *arg, struct redisReply *reply, enum redis_client_err err)
{
    struct tier_thread *tt = arg;
    if (tt->stopping || err != REDIS_CLIENT_OK || reply->type != REDIS_REPLY_ARRAY)
        return;
    const char *argv[TIER_DEL_BATCH + 1];
    size_t argvlen[TIER_DEL_BATCH + 1];
    size_t i = 0;
    while (i < reply->elements) {
        int argc = 1;
        argv[0] = "DEL";
        argvlen[0] = 3;
        for (; i < reply->elements && argc <= TIER_DEL_BATCH; i++) {
            const struct redisReply *m = reply->element[i];
            if (m->type != REDIS_REPLY_STRING)
                continue;
            argv[argc] = m->str;
            argvlen[argc] = m->len;
            argc++;
        }
        if (argc > 1)
            redis_client_command(tt->redis, tier_on_redis_write, tt, argc, argv, argvlen);
    }
}

void
tier_delete_tag(struct tier_thread *tt, const char *tag, size_t len)
{
    if (tt->redis == NULL)
        return;
    const char *prefix = tt->ts->cfg->redis.prefix;
    size_t plen = strlen(prefix);
    char *set = malloc(plen + 4 + len);
    if (set == NULL)
        return;
    memcpy(set, prefix, plen);
    memcpy(set + plen, "tag:", 4);
    memcpy(set + plen + 4, tag, len);
    const char *argv[2] = {"SMEMBERS", set};
    size_t argvlen[2] = {8, plen + 4 + len};
    redis_client_command(tt->redis, tier_on_tag_members, tt, 2, argv, argvlen);
    argv[0] = "DEL";
    argvlen[0] = 3;
    redis_client_command(tt->redis, tier_on_redis_write, tt, 2, argv, argvlen);
    free(set);
}

/* --- ban log ------------------------------------------------------------ */

#define TIER_BAN_LOG "bans"

struct tier_log_read {
    void (*each)(void *arg, const char *rec, size_t len);
    void *arg;
    bool done;
    int result;
};

static void
tier_on_log_lrange(void *arg, struct redisReply *reply, enum redis_client_err err)
{
    struct tier_log_read *r = arg;
    r->done = true;
    if (err != REDIS_CLIENT_OK || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < reply->elements; i++)
        if (reply->element[i]->type == REDIS_REPLY_STRING)
            r->each(r->arg, reply->element[i]->str, reply->element[i]->len);
    r->result = 0;
}

static void
tier_on_log_get(void *arg, enum mc_result res, const char *value, size_t len)
{
    struct tier_log_read *r = arg;
    r->done = true;
    if (res == MC_NOTFOUND) {
        r->result = 0;
        return;
    }
    if (res != MC_OK)
        return;
    const char *p = value, *end = value + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = 0;
        if (nl == NULL)
            break;
        for (const char *d = p; d < nl && n <= len; d++)
            n = n * 10 + (size_t)(*d - '0');
        p = nl + 1;
        if (n > (size_t)(end - p))
            break;
        r->each(r->arg, p, n);
        p += n;
    }
    r->result = 0;
}

/* One turn of a private loop, waking within 10 ms. */
static void
tier_run_once(struct event_base *base)
{
    struct timeval tv = {0, 10000};
    event_base_loopexit(base, &tv);
    event_base_loop(base, EVLOOP_ONCE);
}

int
tier_ban_log_read(struct tier_shared *ts, void (*each)(void *arg, const char *rec, size_t len),
                  void *arg)
{
    const struct config *cfg = ts->cfg;
    struct tier_log_read r = {.each = each, .arg = arg, .result = -1};
    if (!cfg->redis.enabled && ts->mc == NULL)
        return 1;
    struct event_base *base = event_base_new();
    if (base == NULL)
        return -1;
    if (cfg->redis.enabled) {
        uint64_t deadline =
            util_now_us() +
            (uint64_t)(cfg->redis.connect_timeout_ms + cfg->redis.timeout_ms) * 1000;
        struct redis_client *rc = tier_redis_connect(ts, base, "redis (ban log)");
        while (!redis_client_up(rc) && util_now_us() < deadline)
            tier_run_once(base);
        size_t plen = strlen(cfg->redis.prefix);
        char key[128];
        snprintf(key, sizeof(key), "%s%s", cfg->redis.prefix, TIER_BAN_LOG);
        const char *argv[4] = {"LRANGE", key, "0", "-1"};
        size_t argvlen[4] = {6, plen + strlen(TIER_BAN_LOG), 1, 2};
        if (redis_client_up(rc) &&
            redis_client_command(rc, tier_on_log_lrange, &r, 4, argv, argvlen) == 0)
            while (!r.done) /* the client's command timeout ends it */
                tier_run_once(base);
        redis_client_free(&rc);
    } else {
        struct mc_done *d = mc_done_new(base);
        char key[128];
        int n = snprintf(key, sizeof(key), "%s%s", cfg->memcached.prefix, TIER_BAN_LOG);
        if (mc_submit(ts->mc, d, MC_GET, key, (size_t)n, NULL, 0, 0, tier_on_log_get, &r) == 0)
            while (!r.done) /* the pool's timeouts end it */
                tier_run_once(base);
        mc_done_free(&d);
    }
    event_base_free(base);
    return r.result;
}

int
tier_ban_log_append(struct tier_thread *tt, const char *rec, size_t len, unsigned max)
{
    if (tt->redis == NULL)
        return -1;
    char key[128], keep[24];
    int kn = snprintf(key, sizeof(key), "%s%s", tt->ts->cfg->redis.prefix, TIER_BAN_LOG);
    int mn = snprintf(keep, sizeof(keep), "-%u", max);
    const char *push[3] = {"RPUSH", key, rec};
    size_t push_len[3] = {5, (size_t)kn, len};
    const char *trim[4] = {"LTRIM", key, keep, "-1"};
    size_t trim_len[4] = {5, (size_t)kn, (size_t)mn, 2};
    redis_client_command(tt->redis, tier_on_redis_write, tt, 3, push, push_len);
    redis_client_command(tt->redis, tier_on_redis_write, tt, 4, trim, trim_len);
    return 0;
}

void
tier_ban_log_put(struct tier_thread *tt, char *blob, size_t len)
{
    char key[128];
    if (tt->mcd == NULL) {
        free(blob);
        return;
    }
    int n = snprintf(key, sizeof(key), "%s%s", tt->ts->cfg->memcached.prefix, TIER_BAN_LOG);
    mc_submit(tt->ts->mc, tt->mcd, MC_SET, key, (size_t)n, blob, len, 0, tier_on_mc_write, tt);
}
