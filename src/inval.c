/*
 * inval: see inval.h.
 *
 * Broadcast messages are one Redis PUBLISH payload, binary safe:
 *
 *   "TCB1\n" node-id '\n' kind '\n' time-us '\n' host-len '\n' host
 *   arg-len '\n' arg
 *
 * (kind as ban_kind_name(); host empty when none). A message from this
 * node's own id is ignored; one that does not parse is logged and dropped.
 */
#include "inval.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "analytics.h"
#include "cache.h"
#include "cache_key.h"
#include "config.h"
#include "http_parser.h"
#include "log.h"
#include "obj.h"
#include "redis.h"
#include "route.h"
#include "stats.h"
#include "tier.h"
#include "util.h"

#define INVAL_SCAN_COUNT "1000"
#define INVAL_SCAN_ROUNDS_MAX 100000 /* bounds one ban's walk of the Redis keyspace */
#define INVAL_DEL_BATCH 256
#define INVAL_BATCH 64 /* queued bans swept in one walk at most */

struct inval_item {
    struct ban *b;
    STAILQ_ENTRY(inval_item) link;
};

STAILQ_HEAD(inval_queue, inval_item);

struct inval {
    struct event_base *base;
    struct cache *cache;
    struct ban_list *bans;
    struct tier_shared *ts;
    struct config *cfg;       /* one reference; main thread */
    struct tier_thread *tt;   /* the main thread's view of the tiers */
    struct redis_client *sub; /* the channel subscriber, or NULL */
    struct stats st;          /* main-thread counters */
    pthread_mutex_t mu;       /* guards queue */
    struct inval_queue queue; /* bans submitted by workers */
    struct event *ev_queue;
    struct analytics *analytics; /* borrowed, may be NULL */
};

/* --- memory ------------------------------------------------------------- */

/* Bans swept together: one walk of the index serves them all. */
struct inval_set {
    struct ban **b;
    size_t n;
};

static bool
inval_key_filter(void *arg, const char *key, size_t len)
{
    const struct inval_set *set = arg;
    for (size_t i = 0; i < set->n; i++)
        if (!ban_key_only(set->b[i]) || ban_matches(set->b[i], key, len, NULL, 0))
            return true;
    return false;
}

static bool
inval_match(void *arg, struct obj *o)
{
    const struct inval_set *set = arg;
    bool hit = false;
    for (size_t i = 0; i < set->n && !hit; i++)
        if (ban_key_only(set->b[i]))
            hit = ban_matches(set->b[i], o->key, o->key_len, NULL, 0);
    if (hit)
        return true;
    obj_lock(o);
    for (size_t i = 0; i < set->n && !hit; i++)
        if (!ban_key_only(set->b[i]) && o->kind == OBJ_KIND_RESPONSE && o->head != NULL)
            hit = ban_matches(set->b[i], o->key, o->key_len, o->head, o->head_len);
    obj_unlock(o);
    return hit;
}

/* True when some route adds header or cookie parts to its keys: only
 * then can a URL have entries under keys other than its primary key. */
static bool
inval_keys_have_parts(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].cache.key.nheaders > 0 || cfg->routes[i].cache.key.ncookies > 0)
            return true;
    return false;
}

/* Removes from memory what bans[0..n) cover; returns how many entries. A
 * URL ban is one key unless keys have parts (its response, or the Vary
 * marker whose removal makes every variant unreachable); the others share
 * one walk of the index. bans is reordered. */
static size_t
inval_sweep(struct inval *iv, struct ban **bans, size_t n)
{
    size_t removed = 0, walk = 0;
    bool parts = inval_keys_have_parts(iv->cfg);
    for (size_t i = 0; i < n; i++) {
        if (ban_kind_of(bans[i]) == BAN_URL && !parts) {
            size_t len;
            const char *k = ban_arg(bans[i], &len);
            uint64_t h = cache_hash(k, len);
            if (cache_remove(iv->cache, k, len, h, NULL)) {
                cache_note_invalidated(iv->cache, h);
                removed++;
            }
        } else {
            struct ban *t = bans[walk];
            bans[walk++] = bans[i];
            bans[i] = t;
        }
    }
    if (walk > 0) {
        struct inval_set set = {bans, walk};
        removed += cache_sweep(iv->cache, inval_key_filter, inval_match, &set);
    }
    for (size_t i = 0; i < n && iv->analytics != NULL; i++) {
        size_t len;
        if (ban_kind_of(bans[i]) == BAN_ROUTE)
            analytics_route_flushed(iv->analytics, ban_arg(bans[i], &len)); /* cold again */
    }
    iv->st.inval_requests += n;
    iv->st.inval_removed += removed;
    return removed;
}

/* --- Redis: SCAN for the keys a ban covers -------------------------------- */

struct inval_scan {
    struct inval *iv;
    struct ban *b;
    unsigned rounds;
};

static void inval_scan_next(struct inval_scan *s, const char *cursor, size_t len);

static void
inval_scan_free(struct inval_scan *s)
{
    ban_unref(&s->b);
    free(s);
}

static void
inval_on_scan(void *arg, struct redisReply *reply, enum redis_client_err err)
{
    struct inval_scan *s = arg;
    struct inval *iv = s->iv;
    if (err != REDIS_CLIENT_OK || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        if (err != REDIS_CLIENT_ECLOSED)
            log_warn("invalidation: Redis SCAN stopped (%s); the ban list still covers what is "
                     "left",
                     err == REDIS_CLIENT_ETIMEOUT ? "timeout" : "error");
        inval_scan_free(s);
        return;
    }
    const char *prefix = tier_redis_prefix(iv->tt);
    size_t plen = strlen(prefix);
    const struct redisReply *keys = reply->element[1];
    const char *argv[INVAL_DEL_BATCH + 1];
    size_t argvlen[INVAL_DEL_BATCH + 1];
    int argc = 1;
    argv[0] = "DEL";
    argvlen[0] = 3;
    for (size_t i = 0; i < keys->elements; i++) {
        const struct redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING || k->len <= plen ||
            !ban_matches(s->b, k->str + plen, k->len - plen, NULL, 0))
            continue;
        argv[argc] = k->str;
        argvlen[argc] = k->len;
        if (++argc > INVAL_DEL_BATCH) {
            redis_client_command(tier_thread_redis(iv->tt), NULL, NULL, argc, argv, argvlen);
            argc = 1;
        }
    }
    if (argc > 1)
        redis_client_command(tier_thread_redis(iv->tt), NULL, NULL, argc, argv, argvlen);
    const struct redisReply *cur = reply->element[0];
    if ((cur->len == 1 && cur->str[0] == '0') || ++s->rounds >= INVAL_SCAN_ROUNDS_MAX) {
        inval_scan_free(s);
        return;
    }
    inval_scan_next(s, cur->str, cur->len);
}

static void
inval_scan_next(struct inval_scan *s, const char *cursor, size_t len)
{
    struct inval *iv = s->iv;
    const char *prefix = tier_redis_prefix(iv->tt);
    char match[160];
    size_t m = 0;
    /* The prefix as a glob, its special characters escaped, then "*". */
    for (const char *p = prefix; *p != '\0' && m + 3 < sizeof(match); p++) {
        if (*p == '*' || *p == '?' || *p == '[' || *p == ']' || *p == '\\')
            match[m++] = '\\';
        match[m++] = *p;
    }
    match[m++] = '*';
    const char *argv[6] = {"SCAN", cursor, "MATCH", match, "COUNT", INVAL_SCAN_COUNT};
    size_t argvlen[6] = {4, len, 5, m, 5, strlen(INVAL_SCAN_COUNT)};
    if (redis_client_command(tier_thread_redis(iv->tt), inval_on_scan, s, 6, argv, argvlen) < 0)
        inval_scan_free(s);
}

/* --- shared tiers --------------------------------------------------------- */

static void
inval_tiers(struct inval *iv, struct ban *b)
{
    size_t len;
    const char *arg = ban_arg(b, &len);
    switch (ban_kind_of(b)) {
    case BAN_URL:
        tier_delete(iv->tt, arg, len);
        return;
    case BAN_TAG:
        tier_delete_tag(iv->tt, arg, len);
        return;
    case BAN_PREFIX:
    case BAN_REGEX:
    case BAN_ROUTE:
        break;
    }
    if (tier_thread_redis(iv->tt) == NULL || !redis_client_up(tier_thread_redis(iv->tt)))
        return;
    struct inval_scan *s = util_xcalloc(1, sizeof(*s));
    s->iv = iv;
    s->b = ban_ref(b);
    inval_scan_next(s, "0", 1);
}

/* --- broadcast ------------------------------------------------------------ */

static bool
inval_broadcasting(const struct inval *iv)
{
    return iv->cfg->invalidation.broadcast && iv->cfg->redis.enabled;
}

/* The wire form of b (see the top of this file); malloc'd, or NULL. */
static char *
inval_encode(const struct inval *iv, const struct ban *b, size_t *out_len)
{
    size_t arg_len, host_len;
    const char *arg = ban_arg(b, &arg_len);
    const char *host = ban_host(b, &host_len);
    const char *node = iv->cfg->invalidation.node_id;
    size_t cap = 96 + strlen(node) + host_len + arg_len;
    char *msg = malloc(cap);
    if (msg == NULL)
        return NULL;
    int n = snprintf(msg, cap, "TCB1\n%s\n%s\n%" PRId64 "\n%zu\n", node,
                     ban_kind_name(ban_kind_of(b)), ban_time(b), host_len);
    size_t len = (size_t)n;
    memcpy(msg + len, host, host_len);
    len += host_len;
    len += (size_t)snprintf(msg + len, cap - len, "%zu\n", arg_len);
    memcpy(msg + len, arg, arg_len);
    *out_len = len + arg_len;
    return msg;
}

static void
inval_publish(struct inval *iv, struct ban *b)
{
    struct redis_client *rc = tier_thread_redis(iv->tt);
    size_t len;
    char *msg;
    if (!inval_broadcasting(iv) || rc == NULL || (msg = inval_encode(iv, b, &len)) == NULL)
        return;
    const char *channel = iv->cfg->invalidation.channel;
    const char *argv[3] = {"PUBLISH", channel, msg};
    size_t argvlen[3] = {7, strlen(channel), len};
    if (redis_client_command(rc, NULL, NULL, 3, argv, argvlen) == 0)
        iv->st.inval_broadcast_sent++;
    else
        log_warn("invalidation: Redis is down; this %s ban reaches no other node",
                 ban_kind_name(ban_kind_of(b)));
    free(msg);
}

/* Rewrites the memcached ban log (no Redis) from the ban list. */
static void
inval_log_rewrite(struct inval *iv)
{
    unsigned max = iv->cfg->invalidation.max_bans;
    struct ban **all = malloc(max * sizeof(*all));
    if (all == NULL)
        return;
    size_t n = ban_list_snapshot(iv->bans, all, max), used = 0, cap = 0, len;
    char *blob = NULL;
    for (size_t i = 0; i < n; i++) {
        char *rec = inval_encode(iv, all[i], &len);
        if (rec != NULL && used + len + 24 > cap) {
            size_t ncap = (used + len + 24) * 2;
            char *nb = realloc(blob, ncap);
            if (nb != NULL) {
                blob = nb;
                cap = ncap;
            }
        }
        if (rec != NULL && used + len + 24 <= cap) {
            used += (size_t)snprintf(blob + used, cap - used, "%zu\n", len);
            memcpy(blob + used, rec, len);
            used += len;
        }
        free(rec);
        ban_unref(&all[i]);
    }
    free(all);
    if (blob != NULL)
        tier_ban_log_put(iv->tt, blob, used);
}

/* Writes b to the ban log so it outlives restarts: appended to the Redis
 * list. Returns false when the log is not in Redis (then the caller
 * rewrites the memcached one, once per batch). */
static bool
inval_log_append(struct inval *iv, struct ban *b)
{
    size_t len;
    char *msg = inval_encode(iv, b, &len);
    if (msg == NULL)
        return true;
    int rc = tier_ban_log_append(iv->tt, msg, len, iv->cfg->invalidation.max_bans);
    free(msg);
    return rc == 0 || !iv->cfg->memcached.enabled;
}

/* Reads "<text>\n" from *p; returns its start and length, or NULL. */
static const char *
inval_field(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    if (nl == NULL)
        return NULL;
    *len = (size_t)(nl - s);
    *p = nl + 1;
    return s;
}

static bool
inval_number(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (max - (uint64_t)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Parses a wire-form ban; returns a new ban, or NULL with the reason
 * logged. *node, *node_len: the sender's id (pointing into data). */
static struct ban *
inval_decode(struct inval *iv, const char *data, size_t len, const char **node, size_t *node_len)
{
    const char *p = data, *end = data + len;
    const char *f[4];
    size_t flen[4], alen;
    uint64_t t, hl, al;
    char err[256];

    *node = "";
    *node_len = 0;
    if (len < 5 || memcmp(data, "TCB1\n", 5) != 0)
        goto bad;
    p += 5;
    for (int i = 0; i < 4; i++)
        if ((f[i] = inval_field(&p, end, &flen[i])) == NULL)
            goto bad;
    *node = f[0];
    *node_len = flen[0];
    if (!inval_number(f[2], flen[2], INT64_MAX, &t) || !inval_number(f[3], flen[3], len, &hl) ||
        hl > (size_t)(end - p))
        goto bad;
    const char *host = p;
    p += hl;
    const char *alf = inval_field(&p, end, &alen);
    if (alf == NULL || !inval_number(alf, alen, len, &al) || al != (size_t)(end - p))
        goto bad;
    size_t k;
    for (k = 0; k <= BAN_ROUTE; k++)
        if (strlen(ban_kind_name((enum ban_kind)k)) == flen[1] &&
            memcmp(ban_kind_name((enum ban_kind)k), f[1], flen[1]) == 0)
            break;
    if (k > BAN_ROUTE)
        goto bad;
    char *hostz = util_xstrndup(host, hl);
    struct ban *b =
        ban_new((enum ban_kind)k, p, al, hl ? hostz : NULL, iv->cfg, (int64_t)t, err, sizeof(err));
    free(hostz);
    if (b == NULL)
        log_warn("invalidation from node %.*s not applied: %s", (int)flen[0], f[0], err);
    return b;
bad:
    log_warn("invalidation: a record that does not parse (%zu bytes); ignored", len);
    return NULL;
}

static void
inval_on_message(void *arg, const char *data, size_t len)
{
    struct inval *iv = arg;
    const char *node, *own = iv->cfg->invalidation.node_id;
    size_t node_len;
    /* Our own messages come back too: skip them before anything else. */
    if (len > 5 && memcmp(data, "TCB1\n", 5) == 0 && len - 5 > strlen(own) &&
        memcmp(data + 5, own, strlen(own)) == 0 && data[5 + strlen(own)] == '\n')
        return;
    struct ban *b = inval_decode(iv, data, len, &node, &node_len);
    if (b == NULL)
        return;
    ban_list_add(iv->bans, b);
    size_t n = inval_sweep(iv, &b, 1);
    iv->st.inval_broadcast_received++;
    log_debug("invalidation (%s) from node %.*s: %zu memory entries removed",
              ban_kind_name(ban_kind_of(b)), (int)node_len, node, n);
    ban_unref(&b);
}

static void
inval_on_log_record(void *arg, const char *rec, size_t len)
{
    struct inval *iv = arg;
    const char *node;
    size_t node_len;
    struct ban *b = inval_decode(iv, rec, len, &node, &node_len);
    if (b != NULL) {
        ban_list_add(iv->bans, b);
        ban_unref(&b);
    }
}

void
inval_load(struct inval *iv)
{
    int rc = tier_ban_log_read(iv->ts, inval_on_log_record, iv);
    size_t n = ban_list_count(iv->bans);
    if (rc < 0) {
        /* Objects in the tiers may be covered by bans we cannot see: only
         * what is stored from now on is trusted. */
        ban_list_set_floor(iv->bans, util_wall_us());
        log_warn("invalidation: cannot read the ban log; shared-tier objects stored before now "
                 "are treated as invalidated");
        return;
    }
    if (rc == 0 && n >= iv->cfg->invalidation.max_bans) {
        /* The log was trimmed: older bans may be gone. */
        struct ban *oldest = NULL;
        if (ban_list_snapshot(iv->bans, &oldest, 1) == 1) {
            ban_list_set_floor(iv->bans, ban_time(oldest));
            ban_unref(&oldest);
        }
    }
    if (rc == 0)
        log_info("invalidation: %zu bans loaded from the ban log", n);
}

/* --- entry points --------------------------------------------------------- */

size_t
inval_apply(struct inval *iv, struct ban *b)
{
    ban_list_add(iv->bans, b);
    size_t n = inval_sweep(iv, &b, 1);
    inval_tiers(iv, b);
    if (!inval_log_append(iv, b))
        inval_log_rewrite(iv);
    inval_publish(iv, b);
    return n;
}

static void
inval_on_queue(evutil_socket_t fd, short what, void *arg)
{
    struct inval *iv = arg;
    struct inval_queue q;
    (void)fd;
    (void)what;
    STAILQ_INIT(&q);
    pthread_mutex_lock(&iv->mu);
    STAILQ_CONCAT(&q, &iv->queue);
    pthread_mutex_unlock(&iv->mu);
    /* Everything queued since the last turn is swept in one walk, so a
     * burst of writes firing rules costs one pass over memory. */
    struct ban *batch[INVAL_BATCH];
    size_t n = 0;
    bool rewrite = false;
    struct inval_item *it;
    while ((it = STAILQ_FIRST(&q)) != NULL) {
        STAILQ_REMOVE_HEAD(&q, link);
        inval_tiers(iv, it->b);
        rewrite |= !inval_log_append(iv, it->b);
        inval_publish(iv, it->b);
        batch[n++] = it->b;
        free(it);
        if (n == INVAL_BATCH || STAILQ_EMPTY(&q)) {
            inval_sweep(iv, batch, n);
            while (n > 0)
                ban_unref(&batch[--n]);
        }
    }
    if (rewrite)
        inval_log_rewrite(iv);
}

void
inval_submit(struct inval *iv, struct ban *b)
{
    struct inval_item *it = malloc(sizeof(*it));
    ban_list_add(iv->bans, b);
    if (it == NULL) {
        log_err("invalidation: out of memory; the ban holds, memory is swept at its next use");
        return;
    }
    it->b = ban_ref(b);
    pthread_mutex_lock(&iv->mu);
    STAILQ_INSERT_TAIL(&iv->queue, it, link);
    pthread_mutex_unlock(&iv->mu);
    event_active(iv->ev_queue, EV_TIMEOUT, 0);
}

struct ban *
inval_url_ban(const struct config *cfg, const struct http_request *req, const char *scheme,
              int64_t time_us, char *err, size_t errlen)
{
    const struct config_route *r = route_match(cfg, req->host, req->host ? req->host_len : 0,
                                               req->path, req->path_len, HTTP_M_GET);
    if (r == NULL) {
        snprintf(err, errlen, "no route serves GET for that URL");
        return NULL;
    }
    const struct config_cache_key *k = &r->cache.key;
    struct cache_key_opts o = {
        .sort_query = k->sort_query,
        .ignore_query = k->ignore_query,
        .drop_params = k->drop_query,
        .ndrop_params = k->ndrop_query,
    };
    struct http_request get = *req;
    get.method_id = HTTP_M_GET;
    get.method = "GET";
    get.method_len = 3;
    size_t cap = req->path_len + req->query_len + (req->host ? req->host_len : 0) + 64;
    char *key = malloc(cap);
    if (key == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ssize_t n = cache_key_primary(key, cap, &get, scheme, &o);
    struct ban *b = NULL;
    if (n < 0)
        snprintf(err, errlen, "the URL does not make a cache key");
    else
        b = ban_new(BAN_URL, key, (size_t)n, NULL, NULL, time_us, err, errlen);
    free(key);
    return b;
}

struct inval *
inval_new(struct event_base *base, struct cache *cache, struct ban_list *bans,
          struct tier_shared *ts, struct config *cfg)
{
    struct inval *iv = util_xcalloc(1, sizeof(*iv));
    iv->base = base;
    iv->cache = cache;
    iv->bans = bans;
    iv->ts = ts;
    iv->cfg = config_ref(cfg);
    pthread_mutex_init(&iv->mu, NULL);
    STAILQ_INIT(&iv->queue);
    iv->ev_queue = event_new(base, -1, 0, inval_on_queue, iv);
    if (iv->ev_queue == NULL)
        abort();
    iv->tt = tier_thread_new(ts, base, &iv->st);
    stats_register(&iv->st);
    if (inval_broadcasting(iv)) {
        iv->sub = tier_redis_connect(ts, base, "redis subscriber");
        redis_client_subscribe(iv->sub, cfg->invalidation.channel, inval_on_message, iv);
    }
    return iv;
}

void
inval_set_config(struct inval *iv, struct config *cfg)
{
    config_unref(&iv->cfg);
    iv->cfg = config_ref(cfg);
}

void
inval_set_analytics(struct inval *iv, struct analytics *an)
{
    iv->analytics = an;
}

struct config *
inval_config(struct inval *iv)
{
    return iv->cfg;
}

struct stats *
inval_stats(struct inval *iv)
{
    return &iv->st;
}

void
inval_free(struct inval **ivp)
{
    struct inval *iv = *ivp;
    if (iv == NULL)
        return;
    inval_on_queue(-1, 0, iv); /* what workers left: apply it, nothing is lost */
    redis_client_free(&iv->sub);
    tier_thread_free(&iv->tt);
    event_free(iv->ev_queue);
    pthread_mutex_destroy(&iv->mu);
    config_unref(&iv->cfg);
    free(iv);
    *ivp = NULL;
}
