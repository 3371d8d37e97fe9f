/*
 * conn_cache: the cache's part of a request on a caching route.
 *
 *   lookup   primary key -> (Vary marker -> variant key) -> entry
 *   hit      a fresh COMPLETE response: delivered from the object
 *   join     a BUSY object: wait for its head, then stream it as it fills
 *            (read-while-writing); coalesce_timeout bounds the wait
 *   miss     link a new BUSY object under the key (insert-or-get, so one
 *            of any number of concurrent misses wins) and fetch it; the
 *            response goes to this client as it arrives and is teed into
 *            the object for everyone else
 *   pass     not cacheable (method, hit-for-miss marker, HEAD miss)
 *
 * A fill that turns out not storable fails its object at once (waiters go
 * on their own) and leaves a hit-for-miss marker so later requests do not
 * queue behind fetches that cannot be shared. A fill that fails (upstream
 * error, client gone, too big) fails its object: a waiter that has sent
 * nothing fetches again, one that has sent part of the body is cut off,
 * never handed a truncated body as complete.
 *
 * Runs on the connection's worker thread; the cache and objects are
 * shared and thread-safe.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "analytics.h"
#include "ban.h"
#include "cache.h"
#include "cache_key.h"
#include "cache_policy.h"
#include "config.h"
#include "conn_int.h"
#include "envelope.h"
#include "inval.h"
#include "log.h"
#include "obj.h"
#include "rule.h"
#include "tier.h"
#include "upstream.h"
#include "util.h"
#include "worker.h"

#define CONN_CACHE_SEP '\x1e'    /* between the primary key and a variant's part */
#define CONN_CACHE_MAX_LOOKUPS 4 /* memory, shared tier marker, variant, and one retry */

static atomic_uint_fast64_t conn_cache_vary_ids;
static pthread_once_t conn_cache_vary_once = PTHREAD_ONCE_INIT;

static void
conn_cache_vary_seed(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)util_wall_us() * 0x9e3779b97f4a7c15ull;
    atomic_store(&conn_cache_vary_ids, r | 1);
}

/* A new Vary marker id. Ids start at a random point so that a restarted
 * process never reuses one still naming variants in a shared tier. */
static uint64_t
conn_cache_vary_id(void)
{
    pthread_once(&conn_cache_vary_once, conn_cache_vary_seed);
    return atomic_fetch_add(&conn_cache_vary_ids, 1);
}

static int64_t
conn_cache_now(void)
{
    return (int64_t)time(NULL);
}

static struct cache *
conn_cache_store(const struct conn *c)
{
    return c->w->cache;
}

static const struct cache_policy_route *
conn_cache_policy(const struct conn *c)
{
    return &c->x.gen->policies[c->x.route - c->x.gen->cfg->routes];
}

/* Notes why this request missed (analytics), unless a cause is set. */
static void
conn_cache_cause(struct conn *c, enum analytics_cause cause, bool override)
{
    if (c->x.miss_cause == 0 || override)
        c->x.miss_cause = (uint8_t)(cause + 1);
}

static void conn_cache_set_status(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Cache-Status for a relayed response, as a header line. */
static void
conn_cache_set_status(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->x.cache_lines, sizeof(c->x.cache_lines), "Cache-Status: tailcache; ");
    va_start(ap, fmt);
    n += vsnprintf(c->x.cache_lines + n, sizeof(c->x.cache_lines) - (size_t)n - 2, fmt, ap);
    va_end(ap);
    if ((size_t)n > sizeof(c->x.cache_lines) - 3)
        n = (int)sizeof(c->x.cache_lines) - 3;
    memcpy(c->x.cache_lines + n, "\r\n", 3);
}

/* Appends Server-Timing (cache and origin time) to a relayed response. */
static void
conn_cache_add_timing(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    if (!x->route->cache.server_timing)
        return;
    size_t n = strlen(x->cache_lines);
    uint64_t now = util_now_us();
    uint64_t origin = x->t_up_start ? now - x->t_up_start : 0;
    uint64_t total = now - x->t_start;
    snprintf(x->cache_lines + n, sizeof(x->cache_lines) - n,
             "Server-Timing: cache;dur=%.3f, origin;dur=%.3f\r\n",
             (double)(total - origin) / 1000.0, (double)origin / 1000.0);
}

const char *
conn_cache_request_lines(struct conn *c)
{
    return c->x.req_lines[0] != '\0' ? c->x.req_lines : NULL;
}

const char *
conn_cache_error_lines(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    if (!x->caching)
        return NULL;
    if (strstr(x->cache_lines, "detail=") != NULL)
        return x->cache_lines; /* already says why (only-if-cached...) */
    /* The error is ours, not the origin's: say that nothing came from
     * the cache and nothing was stored. */
    conn_cache_set_status(c, "fwd=%s; detail=proxy-error",
                          x->coalesced ? "miss; collapsed"
                          : x->stale   ? "stale"
                                       : "miss");
    return x->cache_lines;
}

const char *
conn_cache_response_lines(struct conn *c)
{
    if (!c->x.caching || c->x.cache_lines[0] == '\0')
        return NULL;
    if (strstr(c->x.cache_lines, "Server-Timing:") == NULL)
        conn_cache_add_timing(c);
    return c->x.cache_lines;
}

#define CONN_CACHE_HEAD_ROOM (64 * 1024) /* a shard's room kept for a body's head and key */

/* The largest body we try to store: max_object_size, but never more than
 * one shard can hold with its head (a bigger object would be evicted on
 * arrival). */
static uint64_t
conn_cache_object_limit(const struct conn *c)
{
    size_t shard = cache_entry_limit(c->w->cache);
    size_t room = shard > 2 * CONN_CACHE_HEAD_ROOM ? shard - CONN_CACHE_HEAD_ROOM : shard / 2;
    size_t max = conn_cfg(c)->cache_max_object;
    return max < room ? max : room;
}

/* --- keys ------------------------------------------------------------- */

static void
conn_cache_key_opts(const struct conn *c, struct cache_key_opts *o)
{
    const struct config_cache_key *k = &c->x.route->cache.key;
    o->sort_query = k->sort_query;
    o->ignore_query = k->ignore_query;
    o->drop_params = k->drop_query;
    o->ndrop_params = k->ndrop_query;
    o->headers = k->headers;
    o->nheaders = k->nheaders;
    o->cookies = k->cookies;
    o->ncookies = k->ncookies;
}

static bool
conn_cache_key_grow(struct conn *c)
{
    size_t cap = c->key_cap ? c->key_cap * 2 : 1024;
    if (cap > 256 * 1024)
        return false;
    char *k = realloc(c->key, cap);
    if (k == NULL)
        return false;
    c->key = k;
    c->key_cap = cap;
    return true;
}

/* Builds the primary key of the current request into c->key. */
static bool
conn_cache_primary_key(struct conn *c)
{
    struct cache_key_opts o;
    conn_cache_key_opts(c, &o);
    for (;;) {
        ssize_t n =
            c->key_cap ? cache_key_primary(c->key, c->key_cap, &c->req, conn_scheme(c), &o) : -1;
        if (n >= 0) {
            c->key_len = c->primary_len = (size_t)n;
            c->key_hash = cache_hash(c->key, c->key_len);
            return true;
        }
        if (!conn_cache_key_grow(c))
            return false;
    }
}

/* Appends the variant part for a Vary marker (id, names) to the primary key. */
static bool
conn_cache_variant_key(struct conn *c, uint64_t vary_id, const char *names, size_t names_len)
{
    for (;;) {
        size_t used = c->primary_len;
        int m = c->key_cap > used ? snprintf(c->key + used, c->key_cap - used, "%c%" PRIx64 "%c",
                                             CONN_CACHE_SEP, vary_id, CONN_CACHE_SEP)
                                  : -1;
        if (m > 0 && used + (size_t)m < c->key_cap) {
            used += (size_t)m;
            ssize_t n =
                cache_key_variant(c->key + used, c->key_cap - used, names, names_len, &c->req);
            if (n >= 0) {
                c->key_len = used + (size_t)n;
                c->key_hash = cache_hash(c->key, c->key_len);
                return true;
            }
            if (memchr(names, '*', names_len) != NULL)
                return false;
        }
        if (!conn_cache_key_grow(c))
            return false;
    }
}

/* --- delivering cached objects ------------------------------------------ */

static void conn_cache_lookup(struct conn *c);
static void conn_cache_fail_fill(struct conn *c);
static void conn_cache_hit_for_miss(struct conn *c, const char *reason);
static void conn_cache_deliver_entry(struct conn *c, struct obj *o, const struct obj_meta *meta,
                                     const char *status, int64_t age);
static void conn_cache_add_timing(struct conn *c);
static void conn_cache_pass(struct conn *c, const char *fwd);

static void
conn_cache_stop_timer(struct conn *c)
{
    if (c->ev_coalesce != NULL)
        event_del(c->ev_coalesce);
}

/* Sends more of the object; finishes or cuts the exchange at the end. */
static void
conn_cache_pump(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    uint64_t before = x->dlv.sent;
    enum deliver_result r = deliver_pump(&x->dlv, bufferevent_get_output(c->bev), CONN_OUT_HIGH);
    x->body_bytes += x->dlv.sent - before;
    c->w->stats.bytes_to_clients += x->dlv.sent - before;
    switch (r) {
    case DELIVER_MORE:
    case DELIVER_WAIT:
        return;
    case DELIVER_DONE:
        x->resp_done = true;
        conn_finish(c);
        return;
    case DELIVER_FAIL:
        log_info("conn=%" PRIu64 ": the fetch this response streamed from failed; cutting", c->id);
        conn_abort(c);
        return;
    }
}

/* Writes the head of o for this client and starts the body. Returns false
 * when o has no head yet (still BUSY, or FAILED). */
static bool
conn_cache_deliver(struct conn *c, struct obj *o, const char *status, int64_t age,
                   bool not_modified)
{
    struct conn_exchange *x = &c->x;
    char timing[80];
    if (x->route->cache.server_timing) {
        uint64_t now = util_now_us();
        uint64_t origin = x->t_up_start ? now - x->t_up_start : 0;
        int n = snprintf(timing, sizeof(timing), "cache;dur=%.3f",
                         (double)(now - x->t_start - origin) / 1000.0);
        if (origin != 0)
            snprintf(timing + n, sizeof(timing) - (size_t)n, ", origin;dur=%.3f",
                     (double)origin / 1000.0);
    }
    struct deliver_head h = {
        .age = age,
        .cache_status = status,
        .server_timing = x->route->cache.server_timing ? timing : NULL,
        .client_10 = c->req.head.version_minor == 0,
        .head_request = c->req.method_id == HTTP_M_HEAD,
        .not_modified = not_modified,
        .close = c->close_after,
    };
    if (h.client_10) {
        if (c->req.head.conn_keep_alive && !c->close_after)
            h.keep_alive_10 = true;
        else
            h.close = true;
    }
    bool close_needed;
    if (deliver_start(&x->dlv, c->ev_wake, bufferevent_get_output(c->bev), o, &h, &close_needed) <
        0)
        return false;
    if (close_needed || h.close)
        c->close_after = true;
    x->delivering = true;
    x->resp_started = true;
    x->status = not_modified ? 304 : o->status;
    conn_cache_stop_timer(c);
    conn_cache_pump(c);
    return true;
}

/* Delivers a COMPLETE entry, answering the client's own conditional. */
static void
conn_cache_deliver_entry(struct conn *c, struct obj *o, const struct obj_meta *meta,
                         const char *status, int64_t age)
{
    struct cache_policy_validators v;
    obj_lock(o);
    cache_policy_validators(o->head, o->head_len, &v);
    bool nm = cache_policy_not_modified(&c->req, o->status, &v, meta->date_value, conn_cache_now());
    obj_unlock(o);
    if (!conn_cache_deliver(c, o, status, age, nm))
        conn_respond_error(c, 502); /* cannot happen: a COMPLETE entry has a head */
}

/* The object we wait on or stream from changed (filling thread woke us). */
static void
conn_cache_on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct conn_exchange *x = &c->x;
    char status[96];
    (void)fd;
    (void)what;
    if (c->state != CONN_S_PROXY || x->dlv.o == NULL)
        return; /* a late wake for an exchange that is over */
    if (x->delivering) {
        conn_cache_pump(c);
        return;
    }
    struct obj *o = x->dlv.o;
    snprintf(status, sizeof(status), "tailcache; fwd=miss; collapsed");
    if (conn_cache_deliver(c, o, status, 0, false))
        return;
    if (obj_get_state(o) == OBJ_BUSY)
        return; /* no head yet */
    /* The fetch we waited on failed or was not storable: look again (a
     * hit-for-miss marker or a Vary marker may be there now). */
    x->waited_failed = true;
    deliver_stop(&x->dlv);
    conn_cache_stop_timer(c);
    conn_cache_lookup(c);
}

/* coalesce_timeout: stop waiting for another request's fetch. */
static void
conn_cache_on_coalesce_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state != CONN_S_PROXY || c->x.delivering || c->x.dlv.o == NULL)
        return;
    log_info("conn=%" PRIu64 ": waited coalesce_timeout for another fetch; fetching alone", c->id);
    deliver_stop(&c->x.dlv);
    c->w->stats.cache_coalesce_timeouts++;
    c->x.coalesce_timeout = true;
    conn_cache_pass(c, "miss; detail=coalesce-timeout");
}

static bool
conn_cache_events(struct conn *c)
{
    if (c->ev_wake == NULL)
        c->ev_wake = event_new(c->w->base, -1, 0, conn_cache_on_wake, c);
    if (c->ev_coalesce == NULL)
        c->ev_coalesce = evtimer_new(c->w->base, conn_cache_on_coalesce_timeout, c);
    return c->ev_wake != NULL && c->ev_coalesce != NULL;
}

/* Waits for o's fetch (another request's) and streams it once it has a head. */
static void
conn_cache_join(struct conn *c, struct obj *o)
{
    struct conn_exchange *x = &c->x;
    const struct config *cfg = conn_cfg(c);
    struct timeval tv = {cfg->coalesce_timeout_ms / 1000, (cfg->coalesce_timeout_ms % 1000) * 1000};
    x->coalesced = true;
    x->outcome = "coalesced";
    c->w->stats.cache_coalesced++;
    deliver_wait_head(&x->dlv, c->ev_wake, o);
    evtimer_add(c->ev_coalesce, &tv);
}

/* --- lookup ------------------------------------------------------------ */

/* Cache-Control: only-if-cached: a request that would go to the origin
 * is answered 504 instead (RFC 9111 5.2.1.7). Returns true when it was. */
static bool
conn_cache_only_if_cached(struct conn *c)
{
    struct cache_policy_cc cc;
    if (c->internal)
        return false; /* a refresh goes to the origin whatever its copy asked */
    cache_policy_cc_request(&c->req, &cc);
    if (!cc.only_if_cached)
        return false;
    c->x.outcome = "miss";
    conn_cache_set_status(c, "fwd=miss; detail=only-if-cached");
    conn_respond_error(c, 504);
    return true;
}

/* Sends the request upstream without the cache (nothing stored). */
static void
conn_cache_pass(struct conn *c, const char *fwd)
{
    c->x.outcome = c->x.coalesced ? "coalesced" : "pass";
    c->w->stats.cache_pass++;
    conn_cache_set_status(c, "fwd=%s", fwd);
    conn_upstream_send(c);
}

/* The leader fetches x->fill from the origin. */
static void
conn_cache_fetch(struct conn *c, const char *fwd)
{
    struct conn_exchange *x = &c->x;
    x->outcome = "miss";
    x->request_time = conn_cache_now();
    x->fetch_start_us = util_wall_us();
    c->w->stats.cache_misses++;
    conn_cache_set_status(c, "fwd=%s", fwd);
    conn_upstream_send(c);
}

static void conn_cache_on_l2(void *arg, const struct tier_hit *hit, bool failed);
static void conn_cache_store_l2(struct conn *c, struct obj *o);

/* Becomes the leader: links a BUSY object under the key, then looks in
 * the shared tiers (requests arriving meanwhile join the object as they
 * would an origin fetch) and fetches from the origin if they miss. */
static void
conn_cache_miss(struct conn *c, const char *fwd)
{
    struct conn_exchange *x = &c->x;
    struct cache *cache = conn_cache_store(c);
    const struct config_route_cache *rc = &x->route->cache;

    if (conn_cache_only_if_cached(c))
        return;
    if (c->req.method_id == HTTP_M_HEAD) {
        /* A HEAD response has no body to fill a GET object with. */
        conn_cache_pass(c, "miss; detail=head");
        return;
    }
    struct obj *o = obj_new(OBJ_KIND_RESPONSE, c->key, c->key_len, c->key_hash);
    struct obj *other = cache_insert_or_get(cache, o);
    if (other != NULL) {
        /* Another request got there first: join its fetch. */
        obj_unref(&o);
        if (obj_get_state(other) == OBJ_BUSY) {
            conn_cache_join(c, other);
            obj_unref(&other);
            return;
        }
        obj_unref(&other);
        conn_cache_pass(c, "miss");
        return;
    }
    x->fill = o;
    x->fill_linked = true;
    if (!c->internal && c->w->tiers != NULL &&
        tier_route_has_l2(c->w->tiers, rc->tiers, rc->ntiers)) {
        x->t_tier_start = util_now_us();
        if (tier_lookup(c->w->tiers, rc->tiers, rc->ntiers, c->key, c->key_len, conn_cache_on_l2, c,
                        &x->l2) == 0) {
            x->l2_fwd = fwd;
            x->outcome = "miss";
            return;
        }
        conn_cache_cause(c, ANALYTICS_CAUSE_tier_error, true); /* every tier skipped */
    }
    conn_cache_fetch(c, fwd);
}

/* Makes a memory object of what a shared tier had: a COMPLETE response or
 * a Vary marker, with the freshness facts it was stored with. Returns a
 * new reference, or NULL (too big for memory, out of memory). */
static struct obj *
conn_cache_promote(struct conn *c, const struct envelope *e)
{
    uint64_t h = cache_hash(e->key, e->key_len);
    if (e->kind == ENVELOPE_VARY) {
        struct obj *m = obj_new(OBJ_KIND_VARY, e->key, e->key_len, h);
        m->vary = util_xstrndup(e->head, e->head_len);
        m->vary_id = e->vary_id;
        obj_finish(m, OBJ_COMPLETE);
        return m;
    }
    if (e->body_len + e->head_len + e->key_len + 4096 > conn_cache_object_limit(c))
        return NULL;
    struct obj *o = obj_new(OBJ_KIND_RESPONSE, e->key, e->key_len, h);
    if (obj_set_head(o, e->status, e->head, e->head_len, e->body_len, &e->meta) < 0 ||
        (e->body_len > 0 && obj_append(o, e->body, e->body_len) < 0)) {
        obj_finish(o, OBJ_FAILED);
        obj_unref(&o);
        return NULL;
    }
    obj_finish(o, OBJ_COMPLETE);
    return o;
}

/* The shared tiers answered the leader's lookup. A hit replaces the BUSY
 * object in memory (whose waiters look again and find it) and the lookup
 * starts over, so freshness, Vary and the client's conditionals are
 * handled as for any memory entry. */
static void
conn_cache_on_l2(void *arg, const struct tier_hit *hit, bool failed)
{
    struct conn *c = arg;
    struct conn_exchange *x = &c->x;
    struct obj *p;
    x->l2 = NULL;
    x->tier_us += util_now_us() - x->t_tier_start;
    if (hit == NULL && failed)
        conn_cache_cause(c, ANALYTICS_CAUSE_tier_error, true);
    if (hit == NULL || (p = conn_cache_promote(c, &hit->env)) == NULL) {
        conn_cache_fetch(c, x->l2_fwd);
        return;
    }
    cache_insert(conn_cache_store(c), p);
    cache_recharge(conn_cache_store(c), p);
    obj_unref(&p);
    if (obj_get_state(x->fill) == OBJ_BUSY)
        obj_finish(x->fill, OBJ_FAILED);
    obj_unref(&x->fill);
    x->fill_linked = false;
    x->hit_tier = hit->tier == CONFIG_TIER_REDIS ? "redis" : "memcached";
    conn_cache_lookup(c);
}

/* Starts one background refresh of o (a copy of this request, made by
 * the proxy itself); at most one per object at a time. */
static void
conn_cache_bg_refresh(struct conn *c, struct obj *o)
{
    bool expected = false;
    /* A HEAD copy would fetch no body to refresh the entry with. */
    if (c->req.head.framing != HTTP_FRAMING_NONE || c->req.method_id != HTTP_M_GET ||
        !atomic_compare_exchange_strong(&o->refreshing, &expected, true))
        return;
    if (conn_start_internal(c->w, c->head, c->head_len, c->https) < 0) {
        atomic_store(&o->refreshing, false);
        log_warn("conn=%" PRIu64 ": cannot start a background refresh", c->id);
        return;
    }
    c->w->stats.cache_bg_refreshes++;
}

/* Fetches anew for an expired entry, revalidating with its validators when
 * it has some. The new object is linked only once its response proves
 * good, so the stale one stays available to stale-if-error meanwhile. */
static void
conn_cache_refetch(struct conn *c, struct obj *o, const struct cache_policy_info *info)
{
    struct conn_exchange *x = &c->x;
    struct cache_policy_validators v;
    struct cache_policy_conditional cond;

    c->w->stats.cache_expired++;
    conn_cache_cause(c, ANALYTICS_CAUSE_expired, false);
    if (conn_cache_only_if_cached(c))
        return;
    if (c->req.method_id == HTTP_M_HEAD) {
        x->stale = obj_ref(o);
        x->stale_if_error = info->stale_if_error;
        conn_cache_pass(c, "stale; detail=head");
        return;
    }
    /* One refetch per expired entry: later requests join it as they would
     * a miss's fetch. A 304 fails the new object, and its waiters look
     * again and find the entry refreshed. */
    struct obj *fill = obj_new(OBJ_KIND_RESPONSE, c->key, c->key_len, c->key_hash);
    struct obj *pending = NULL, *settled = NULL;
    obj_lock(o);
    if (o->pending != NULL)
        pending = obj_ref(o->pending);
    obj_unlock(o);
    if (pending != NULL && obj_get_state(pending) != OBJ_BUSY) {
        /* A refetch that settled without clearing itself: replace it. (Two
         * object locks are never held at once, hence the second look.) */
        obj_lock(o);
        if (o->pending == pending) {
            settled = o->pending;
            o->pending = NULL;
        }
        obj_unlock(o);
        obj_unref(&settled);
        obj_unref(&pending);
    }
    if (pending == NULL) {
        obj_lock(o);
        if (o->pending == NULL)
            o->pending = obj_ref(fill); /* o->pending holds one, the exchange the other */
        else
            pending = obj_ref(o->pending); /* lost a race: join the winner */
        obj_unlock(o);
    }
    if (pending != NULL) {
        obj_unref(&fill);
        conn_cache_join(c, pending);
        obj_unref(&pending);
        return;
    }
    x->fill = fill;
    x->stale = obj_ref(o);
    x->stale_if_error = info->stale_if_error;
    obj_lock(o);
    cache_policy_validators(o->head, o->head_len, &v);
    bool cond_ok = cache_policy_revalidation(&v, conn_cache_now(), &cond);
    int n = 0;
    if (cond_ok && cond.if_none_match != NULL)
        n += snprintf(x->req_lines + n, sizeof(x->req_lines) - (size_t)n, "If-None-Match: %.*s\r\n",
                      (int)cond.if_none_match_len, cond.if_none_match);
    if (cond_ok && cond.if_modified_since != NULL && (size_t)n < sizeof(x->req_lines))
        n += snprintf(x->req_lines + n, sizeof(x->req_lines) - (size_t)n,
                      "If-Modified-Since: %.*s\r\n", (int)cond.if_modified_since_len,
                      cond.if_modified_since);
    obj_unlock(o);
    if ((size_t)n >= sizeof(x->req_lines))
        n = 0; /* validators too long to send: fetch unconditionally */
    x->req_lines[n] = '\0';
    x->revalidating = n > 0;

    x->outcome = "miss";
    x->request_time = conn_cache_now();
    x->fetch_start_us = util_wall_us();
    c->w->stats.cache_misses++;
    conn_cache_set_status(c, "fwd=stale");
    conn_upstream_send(c);
}

/* Decides what to do with a COMPLETE response entry. */
static void
conn_cache_serve_complete(struct conn *c, struct obj *o)
{
    struct conn_exchange *x = &c->x;
    const struct cache_policy_route *pol = conn_cache_policy(c);
    struct cache_policy_cc req_cc;
    struct cache_policy_info info;
    struct obj_meta meta;
    int64_t now = conn_cache_now();
    char status[128];

    obj_get_meta(o, &meta);
    cache_policy_cc_request(&c->req, &req_cc);
    enum cache_policy_decision d =
        cache_policy_decide(&meta, &req_cc, pol->honour_client_no_cache, now, &info);
    if (c->internal) {
        /* A background refresh always goes to the origin, and whatever
         * becomes of it, the entry may be refreshed again afterwards. */
        d = CACHE_POLICY_STALE;
        if (x->refresh_of == NULL)
            x->refresh_of = obj_ref(o);
    }
    if (d == CACHE_POLICY_STALE) {
        conn_cache_refetch(c, o, &info);
        return;
    }
    if (d == CACHE_POLICY_STALE_REVALIDATE_BG) {
        snprintf(status, sizeof(status),
                 "tailcache; hit; ttl=%" PRId64 "; detail=stale-while-revalidate", info.ttl_left);
        x->outcome = "stale";
        x->stale_age = -info.ttl_left;
        c->w->stats.cache_stale_served++;
        conn_cache_bg_refresh(c, o);
    } else {
        snprintf(status, sizeof(status), "tailcache; hit; ttl=%" PRId64 "; detail=%s",
                 info.ttl_left, x->hit_tier != NULL ? x->hit_tier : "memory");
        x->outcome = x->hit_tier == NULL     ? "hit"
                     : x->hit_tier[0] == 'r' ? "hit-redis"
                                             : "hit-memcached";
    }
    c->w->stats.cache_hits++;
    conn_cache_deliver_entry(c, o, &meta, status, info.age);
}

/* Looks the request up and serves, joins, fetches or passes it. */
static void
conn_cache_lookup(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    struct cache *cache = conn_cache_store(c);

    if (++x->lookups > CONN_CACHE_MAX_LOOKUPS) {
        conn_cache_pass(c, "miss; detail=retries");
        return;
    }
    if (!conn_cache_primary_key(c)) {
        conn_cache_pass(c, "bypass; detail=key-too-long");
        return;
    }
    x->via_vary = false;
    struct obj *o = cache_lookup(cache, c->key, c->key_len, c->key_hash);
    if (o != NULL && o->kind == OBJ_KIND_VARY) {
        size_t n = strlen(o->vary);
        if (n >= sizeof(x->vary_names) || !conn_cache_variant_key(c, o->vary_id, o->vary, n)) {
            obj_unref(&o);
            conn_cache_pass(c, "bypass; detail=vary");
            return;
        }
        x->via_vary = true;
        x->vary_id = o->vary_id;
        memcpy(x->vary_names, o->vary, n + 1);
        obj_unref(&o);
        o = cache_lookup(cache, c->key, c->key_len, c->key_hash);
    }
    if (o == NULL) {
        bool evicted = cache_was_evicted(cache, c->key_hash);
        if (evicted)
            c->w->stats.cache_miss_evicted++;
        conn_cache_cause(c,
                         evicted                                     ? ANALYTICS_CAUSE_evicted
                         : cache_was_invalidated(cache, c->key_hash) ? ANALYTICS_CAUSE_invalidated
                         : x->via_vary                               ? ANALYTICS_CAUSE_vary
                                                                     : ANALYTICS_CAUSE_cold,
                         false);
        conn_cache_miss(c, x->via_vary ? "vary-miss" : "uri-miss");
        return;
    }
    if (o->kind == OBJ_KIND_HIT_FOR_MISS) {
        if (o->expires_at > conn_cache_now()) {
            obj_unref(&o);
            c->w->stats.cache_hit_for_miss++;
            conn_cache_cause(c, ANALYTICS_CAUSE_not_storable, true);
            conn_cache_pass(c, "uri-miss; detail=hit-for-miss");
            return;
        }
        cache_remove(cache, c->key, c->key_len, c->key_hash, o);
        obj_unref(&o);
        conn_cache_miss(c, "uri-miss");
        return;
    }
    switch (obj_get_state(o)) {
    case OBJ_BUSY:
        conn_cache_join(c, o);
        break;
    case OBJ_COMPLETE:
        conn_cache_serve_complete(c, o);
        break;
    case OBJ_FAILED:
        cache_remove(cache, c->key, c->key_len, c->key_hash, o);
        conn_cache_miss(c, "miss");
        break;
    }
    obj_unref(&o);
}

/* --- invalidation (RFC 9111 4.4) -------------------------------------- */

/* Removes the entry for path?query on the request's host (as a GET). */
static void
conn_cache_invalidate_uri(struct conn *c, const char *path, size_t path_len, const char *query,
                          size_t query_len)
{
    struct http_request *r = &c->req;
    const char *spath = r->path, *squery = r->query;
    size_t spath_len = r->path_len, squery_len = r->query_len;
    enum http_method smethod = r->method_id;
    r->path = path;
    r->path_len = path_len;
    r->query = query;
    r->query_len = query_len;
    r->method_id = HTTP_M_GET;
    if (conn_cache_primary_key(c)) {
        if (cache_remove(conn_cache_store(c), c->key, c->key_len, c->key_hash, NULL)) {
            cache_note_invalidated(conn_cache_store(c), c->key_hash);
            c->w->stats.cache_invalidations++;
        }
        if (c->w->tiers != NULL)
            tier_delete(c->w->tiers, c->key, c->key_len);
    }
    r->path = spath;
    r->path_len = spath_len;
    r->query = squery;
    r->query_len = squery_len;
    r->method_id = smethod;
}

/* Location / Content-Location of a successful unsafe request, same host only. */
static void
conn_cache_invalidate_location(struct conn *c, const struct http_header *h)
{
    const char *v = h->value, *end = h->value + h->value_len;
    if (h->value_len > 7 && strncasecmp(v, "http://", 7) == 0) {
        const char *host = v + 7;
        const char *slash = memchr(host, '/', (size_t)(end - host));
        size_t host_len = slash != NULL ? (size_t)(slash - host) : (size_t)(end - host);
        if (c->req.host == NULL || host_len != c->req.host_len ||
            strncasecmp(host, c->req.host, host_len) != 0 || slash == NULL)
            return;
        v = slash;
    }
    if (v >= end || *v != '/')
        return;
    const char *q = memchr(v, '?', (size_t)(end - v));
    const char *frag = memchr(v, '#', (size_t)(end - v));
    if (frag != NULL)
        end = frag;
    if (q != NULL && q < end)
        conn_cache_invalidate_uri(c, v, (size_t)(q - v), q + 1, (size_t)(end - q - 1));
    else
        conn_cache_invalidate_uri(c, v, (size_t)(end - v), NULL, 0);
}

/* Applies a ban from this worker: a URL's primary key leaves memory at
 * once; the ban list, the sweep, the shared tiers and the other nodes are
 * inval's (inval.h). */
static void
conn_cache_submit_ban(struct conn *c, struct ban *b)
{
    if (ban_kind_of(b) == BAN_URL) {
        size_t n;
        const char *k = ban_arg(b, &n);
        uint64_t h = cache_hash(k, n);
        if (cache_remove(conn_cache_store(c), k, n, h, NULL)) {
            cache_note_invalidated(conn_cache_store(c), h);
            c->w->stats.inval_removed++;
        }
    }
    if (c->w->inval != NULL)
        inval_submit(c->w->inval, b);
}

/* A URL ban for path[?query] on the request's host. */
static struct ban *
conn_cache_url_ban(struct conn *c, const char *target, size_t len, int64_t now_us)
{
    struct http_request r = c->req;
    char err[160];
    const char *q = memchr(target, '?', len);
    r.path = target;
    r.path_len = q != NULL ? (size_t)(q - target) : len;
    r.query = q != NULL ? q + 1 : NULL;
    r.query_len = q != NULL ? len - r.path_len - 1 : 0;
    struct ban *b = inval_url_ban(conn_cfg(c), &r, conn_scheme(c), now_us, err, sizeof(err));
    if (b == NULL)
        log_info("conn=%" PRIu64 ": invalidation of %.*s skipped: %s", c->id, (int)len, target,
                 err);
    return b;
}

/* routes[].cache.invalidate: the rules this successful write matches. */
static void
conn_cache_rules(struct conn *c)
{
    const struct config_route_cache *rc = &c->x.route->cache;
    int64_t now_us = util_wall_us();
    char buf[2048], err[160];
    for (size_t i = 0; i < rc->nrules; i++) {
        const struct config_inval_rule *rule = &rc->rules[i];
        struct rule_vars vars;
        if (!(rule->methods & (1u << c->req.method_id)) ||
            !rule_match(rule->match, c->req.path, c->req.path_len, &vars))
            continue;
        c->w->stats.inval_rules++;
        for (size_t j = 0; j < rule->npurge; j++) {
            ssize_t n = rule_expand(rule->match, &vars, rule->purge[j], buf, sizeof(buf));
            struct ban *b = n > 0 ? conn_cache_url_ban(c, buf, (size_t)n, now_us) : NULL;
            if (b != NULL)
                conn_cache_submit_ban(c, b);
            ban_unref(&b);
        }
        for (size_t j = 0; j < rule->ntags; j++) {
            ssize_t n = rule_expand(rule->match, &vars, rule->tags[j], buf, sizeof(buf));
            struct ban *b =
                n > 0 ? ban_new(BAN_TAG, buf, (size_t)n, NULL, NULL, now_us, err, sizeof(err))
                      : NULL;
            if (b != NULL)
                conn_cache_submit_ban(c, b);
            ban_unref(&b);
        }
    }
}

static void
conn_cache_invalidate(struct conn *c)
{
    conn_cache_invalidate_uri(c, c->req.path, c->req.path_len, c->req.query, c->req.query_len);
    for (unsigned i = 0; i < c->resp.head.nheaders; i++) {
        const struct http_header *h = &c->resp.head.headers[i];
        if (http_str_ieq(h->name, h->name_len, "location") ||
            http_str_ieq(h->name, h->name_len, "content-location"))
            conn_cache_invalidate_location(c, h);
    }
    if (c->x.route->cache.nrules > 0)
        conn_cache_rules(c);
}

/* --- PURGE ------------------------------------------------------------- */

static bool
conn_cache_cidr_has(const struct config_cidr *n, int family, const unsigned char *a)
{
    if (n->family != family)
        return false;
    unsigned full = n->prefix_len / 8, rest = n->prefix_len % 8;
    if (memcmp(n->addr, a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (n->addr[full] & mask) == (a[full] & mask);
}

/* True when the client may PURGE: its address is allowed, or it sent the token. */
static bool
conn_cache_purge_allowed(struct conn *c)
{
    const struct config_invalidation *iv = &conn_cfg(c)->invalidation;
    unsigned char a[16];
    int family = strchr(c->peer_ip, ':') != NULL ? AF_INET6 : AF_INET;
    if (inet_pton(family, c->peer_ip, a) == 1) {
        /* An IPv4 client on a dual-stack socket is ::ffff:a.b.c.d. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (family == AF_INET6 && memcmp(a, mapped, 12) == 0) {
            memmove(a, a + 12, 4);
            family = AF_INET;
        }
        for (size_t i = 0; i < iv->npurge_allow; i++)
            if (conn_cache_cidr_has(&iv->purge_allow[i], family, a))
                return true;
    }
    if (iv->purge_token == NULL)
        return false;
    const struct http_header *h = http_head_find(&c->req.head, "x-purge-token");
    size_t tlen = strlen(iv->purge_token);
    if (h == NULL || h->value_len != tlen)
        return false;
    unsigned char diff = 0; /* constant time: the token is a secret */
    for (size_t i = 0; i < tlen; i++)
        diff |= (unsigned char)(h->value[i] ^ iv->purge_token[i]);
    return diff == 0;
}

void
conn_cache_purge(struct conn *c)
{
    char body[256];
    if (!conn_cache_purge_allowed(c)) {
        c->w->stats.inval_purge_denied++;
        log_info("conn=%" PRIu64 ": %s: PURGE refused (not in invalidation.purge_allow, no "
                 "valid token)",
                 c->id, c->peer);
        int n = snprintf(body, sizeof(body), "{\"error\":\"PURGE not allowed\"}\n");
        conn_respond(c, 403, "application/json", body, (size_t)n);
        return;
    }
    struct ban *b = conn_cache_url_ban(
        c, c->req.path, c->req.path_len + (c->req.query != NULL ? c->req.query_len + 1 : 0),
        util_wall_us());
    if (b == NULL) {
        int n = snprintf(body, sizeof(body), "{\"error\":\"no route caches that URL\"}\n");
        conn_respond(c, 404, "application/json", body, (size_t)n);
        return;
    }
    uint64_t before = c->w->stats.inval_removed;
    conn_cache_submit_ban(c, b);
    ban_unref(&b);
    int n = snprintf(body, sizeof(body), "{\"kind\":\"url\",\"removed\":%" PRIu64 "}\n",
                     c->w->stats.inval_removed - before);
    conn_respond(c, 200, "application/json", body, (size_t)n);
}

/* --- revalidation and stale-if-error ------------------------------------ */

/* The upstream response head is consumed here: release the connection. */
static void
conn_cache_consume_upstream(struct conn *c, size_t head_len, bool reusable)
{
    struct conn_exchange *x = &c->x;
    struct evbuffer *in = bufferevent_get_input(x->up->bev);
    evbuffer_drain(in, head_len);
    x->t_up_end = util_now_us();
    upstream_release(&x->up, reusable && x->req_done && evbuffer_get_length(in) == 0);
}

/* Serves x->stale in place of an origin failure. */
static void
conn_cache_serve_stale(struct conn *c, const char *why)
{
    struct conn_exchange *x = &c->x;
    struct obj_meta meta;
    struct obj *o = x->stale;
    char status[128];
    conn_cache_fail_fill(c); /* clears o->pending while x->stale still names o */
    x->stale = NULL;         /* ours now */
    obj_get_meta(o, &meta);
    int64_t age = cache_policy_current_age(&meta, conn_cache_now());
    snprintf(status, sizeof(status), "tailcache; hit; ttl=%" PRId64 "; detail=%s",
             meta.lifetime - age, why);
    x->outcome = "stale";
    x->stale_age = age - meta.lifetime;
    c->w->stats.cache_stale_served++;
    conn_cache_deliver_entry(c, o, &meta, status, age);
    obj_unref(&o);
}

bool
conn_cache_stale_on_error(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    if (x->stale == NULL || !x->stale_if_error || x->delivering)
        return false;
    upstream_release(&x->up, false);
    log_info("conn=%" PRIu64 ": origin failed; serving the stale entry (stale-if-error)", c->id);
    conn_cache_serve_stale(c, "stale-if-error");
    return true;
}

bool
conn_cache_intercept(struct conn *c, size_t head_len)
{
    struct conn_exchange *x = &c->x;
    const struct http_response *resp = x->resp;
    const struct cache_policy_route *pol = conn_cache_policy(c);
    int64_t now = conn_cache_now();

    if (x->stale == NULL)
        return false;
    if (resp->status >= 500 && x->stale_if_error) {
        log_info("conn=%" PRIu64 ": origin answered %d; serving the stale entry (stale-if-error)",
                 c->id, resp->status);
        conn_cache_consume_upstream(c, head_len, false); /* resp points into it: last use above */
        conn_cache_serve_stale(c, "stale-if-error");
        return true;
    }
    if (resp->status != 304 || !x->revalidating)
        return false;

    struct obj *o = x->stale;
    struct cache_policy_validators v;
    struct obj_meta meta;
    enum cache_policy_reason reason;
    char small[4096];
    char *merged = small;
    bool refreshed = false;

    bool up_reusable = !resp->head.conn_close;
    obj_lock(o);
    cache_policy_validators(o->head, o->head_len, &v);
    bool matches = cache_policy_304_updates(&v, resp, now);
    size_t need =
        cache_policy_merge_304(o->head, o->head_len, resp, pol, now, small, sizeof(small));
    if (need >= sizeof(small)) {
        merged = malloc(need + 1);
        if (merged != NULL)
            cache_policy_merge_304(o->head, o->head_len, resp, pol, now, merged, need + 1);
    }
    int status = o->status;
    obj_unlock(o);
    if (matches && merged != NULL)
        refreshed = cache_policy_refresh(&c->req, status, merged, need, resp, pol, x->request_time,
                                         now, &meta, &reason);
    if (refreshed)
        refreshed = obj_revalidate(o, merged, need, &meta) == 0;
    if (merged != small)
        free(merged);
    /* resp points into the upstream input: only now may it go. */
    conn_cache_consume_upstream(c, head_len, up_reusable);
    conn_cache_fail_fill(c); /* the unlinked replacement is not needed */
    x->stale = NULL;
    if (!refreshed) {
        /* The 304 no longer lets us keep it (or does not match it): this
         * client still gets the entry it was validated against, nobody else. */
        log_info("conn=%" PRIu64 ": 304 did not refresh the entry; dropping it", c->id);
        cache_remove(conn_cache_store(c), o->key, o->key_len, o->hash, o);
    } else
        conn_cache_store_l2(c, o);
    atomic_store(&o->refreshing, false);
    c->w->stats.cache_revalidated++;
    x->outcome = "revalidated";
    obj_get_meta(o, &meta);
    int64_t age = cache_policy_current_age(&meta, now);
    char cs[128];
    snprintf(cs, sizeof(cs),
             "tailcache; fwd=stale; fwd-status=304; ttl=%" PRId64 "; detail=revalidated",
             meta.lifetime - age);
    conn_cache_deliver_entry(c, o, &meta, cs, age);
    obj_unref(&o);
    return true;
}

/* --- entry points ------------------------------------------------------ */

bool
conn_cache_begin(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    if (conn_cache_store(c) == NULL)
        return false;
    if (!x->route->cache.enabled) {
        /* A route that does not cache may still invalidate (rules). */
        if (x->route->cache.nrules > 0 &&
            (c->req.method_id == HTTP_M_POST || c->req.method_id == HTTP_M_PUT ||
             c->req.method_id == HTTP_M_PATCH || c->req.method_id == HTTP_M_DELETE)) {
            x->caching = true;
            x->cache_invalidate = true;
        }
        return false;
    }
    x->caching = true;
    switch (c->req.method_id) {
    case HTTP_M_GET:
    case HTTP_M_HEAD:
        if (c->req.head.framing != HTTP_FRAMING_NONE &&
            !(c->req.head.framing == HTTP_FRAMING_LENGTH && c->req.head.content_length == 0)) {
            /* A GET with a body: the origin may answer from the body, which
             * is not in the key, so storing the answer could poison the
             * entry for everyone. Forward it, store nothing. */
            x->outcome = "pass";
            c->w->stats.cache_pass++;
            conn_cache_set_status(c, "fwd=bypass; detail=request-body");
            return false;
        }
        break;
    case HTTP_M_POST:
    case HTTP_M_PUT:
    case HTTP_M_PATCH:
    case HTTP_M_DELETE:
        x->cache_invalidate = true;
        /* fallthrough */
    default:
        x->outcome = "pass";
        c->w->stats.cache_pass++;
        conn_cache_set_status(c, "fwd=method");
        return false;
    }
    if (x->route->sample_bypass > 0 && !c->internal &&
        worker_random(c->w) < x->route->sample_bypass) {
        /* Bypass sampling: this one sees the origin as if there were no
         * cache, so the statistics compare both under the same traffic. */
        x->outcome = "bypass";
        c->w->stats.cache_pass++;
        conn_cache_set_status(c, "fwd=bypass; detail=sample");
        conn_upstream_send(c);
        return true;
    }
    if (!conn_cache_events(c)) {
        conn_cache_pass(c, "bypass; detail=no-memory");
        return true;
    }
    conn_cache_lookup(c);
    return true;
}

/* Tee: copies body bytes into the object being filled. */
static void
conn_cache_tee(void *arg, struct evbuffer *src, size_t n)
{
    struct conn *c = arg;
    struct conn_exchange *x = &c->x;
    struct evbuffer_iovec v[16];
    struct evbuffer_ptr pos;
    size_t done = 0;

    if (x->fill == NULL)
        return;
    if (x->fill->body_len + n > conn_cache_object_limit(c)) {
        log_info("conn=%" PRIu64 ": response over cache.memory.max_object_size; not stored", c->id);
        /* The relay to this client goes on; a marker keeps the next
         * requests from queueing behind a fetch that cannot be shared. */
        conn_cache_hit_for_miss(c, "too_big");
        return;
    }
    evbuffer_ptr_set(src, &pos, 0, EVBUFFER_PTR_SET);
    while (done < n) {
        int k = evbuffer_peek(src, (ssize_t)(n - done), &pos, v, 16);
        if (k <= 0)
            break;
        for (int i = 0; i < k && i < 16 && done < n; i++) {
            size_t len = v[i].iov_len < n - done ? v[i].iov_len : n - done;
            if (obj_append(x->fill, v[i].iov_base, len) < 0) {
                conn_cache_fail_fill(c);
                return;
            }
            done += len;
        }
        evbuffer_ptr_set(src, &pos, done, EVBUFFER_PTR_SET);
    }
}

/* The refetch is settled (its object linked, completed or failed): the
 * expired entry stops pointing at it. */
static void
conn_cache_clear_pending(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    if (x->stale == NULL || x->fill == NULL)
        return;
    struct obj *drop = NULL;
    obj_lock(x->stale);
    if (x->stale->pending == x->fill) {
        drop = x->stale->pending;
        x->stale->pending = NULL;
    }
    obj_unlock(x->stale);
    obj_unref(&drop);
}

/* Fails the fill: unlinks it, wakes its waiters. */
static void
conn_cache_fail_fill(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    if (x->fill == NULL)
        return;
    conn_cache_clear_pending(c);
    cache_remove(conn_cache_store(c), x->fill->key, x->fill->key_len, x->fill->hash, x->fill);
    if (obj_get_state(x->fill) == OBJ_BUSY)
        obj_finish(x->fill, OBJ_FAILED);
    obj_unref(&x->fill);
}

/* The response is not storable: release waiters and remember for a while. */
static void
conn_cache_hit_for_miss(struct conn *c, const char *reason)
{
    struct conn_exchange *x = &c->x;
    conn_cache_clear_pending(c);
    if (x->stale != NULL)
        obj_unref(&x->stale); /* the marker below replaces the expired entry */
    struct obj *m = obj_new(OBJ_KIND_HIT_FOR_MISS, x->fill->key, x->fill->key_len, x->fill->hash);
    m->expires_at = conn_cache_now() + (conn_cfg(c)->hit_for_miss_ms + 999) / 1000;
    obj_finish(m, OBJ_COMPLETE);
    /* The marker replaces the BUSY object; its waiters see FAILED and
     * look again, finding the marker. */
    cache_insert(conn_cache_store(c), m);
    obj_unref(&m);
    if (obj_get_state(x->fill) == OBJ_BUSY)
        obj_finish(x->fill, OBJ_FAILED);
    obj_unref(&x->fill);
    c->w->stats.cache_not_stored++;
    x->outcome = "pass";
    conn_cache_cause(c, ANALYTICS_CAUSE_not_storable, true);
    conn_cache_set_status(c, "fwd=miss; detail=%s", reason);
}

/* A Vary response: key the fill by the variant, under a (new) marker. */
static bool
conn_cache_rekey_variant(struct conn *c, const char *names, size_t names_len)
{
    struct conn_exchange *x = &c->x;
    struct cache *cache = conn_cache_store(c);
    /* names is not NUL-terminated (cache_key.h): compare by length. */
    if (x->via_vary && strlen(x->vary_names) == names_len &&
        memcmp(x->vary_names, names, names_len) == 0)
        return true; /* already keyed by this variant */
    if (names_len >= sizeof(x->vary_names))
        return false;
    /* A new marker under the primary key; its id makes every older
     * variant unreachable, so a changed Vary can never resurrect them. */
    uint64_t id = conn_cache_vary_id();
    struct obj *marker =
        obj_new(OBJ_KIND_VARY, c->key, c->primary_len, cache_hash(c->key, c->primary_len));
    marker->vary = util_xstrndup(names, names_len);
    marker->vary_id = id;
    obj_finish(marker, OBJ_COMPLETE);
    if (!conn_cache_variant_key(c, id, names, names_len)) {
        obj_unref(&marker);
        return false;
    }
    cache_insert(cache, marker);
    obj_unref(&marker);
    /* The BUSY object under the primary key (replaced by the marker)
     * fails; its waiters look again and find the marker. */
    conn_cache_clear_pending(c);
    if (obj_get_state(x->fill) == OBJ_BUSY)
        obj_finish(x->fill, OBJ_FAILED);
    obj_unref(&x->fill);
    x->fill = obj_new(OBJ_KIND_RESPONSE, c->key, c->key_len, c->key_hash);
    cache_insert(cache, x->fill);
    x->fill_linked = true;
    x->via_vary = true;
    x->vary_id = id;
    memcpy(x->vary_names, names, names_len);
    x->vary_names[names_len] = '\0';
    return true;
}

void
conn_cache_on_response_head(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    const struct http_response *resp = x->resp;
    const struct cache_policy_route *pol;
    enum cache_policy_reason reason;
    int64_t now = conn_cache_now();
    char names[256];

    if (x->cache_invalidate) {
        if (resp->status >= 200 && resp->status < 400)
            conn_cache_invalidate(c);
        return;
    }
    if (x->fill == NULL)
        return;
    pol = conn_cache_policy(c);
    if (!cache_policy_storable(&c->req, resp, pol, now, &reason)) {
        struct cache_policy_cc req_cc;
        cache_policy_cc_request(&c->req, &req_cc);
        if (reason == CACHE_POLICY_R_AUTHORIZATION ||
            (reason == CACHE_POLICY_R_NO_STORE && req_cc.no_store)) {
            /* This request's own doing, not the resource's: no marker, or
             * one client could turn caching off for everyone. */
            c->w->stats.cache_not_stored++;
            x->outcome = "pass";
            conn_cache_cause(c, ANALYTICS_CAUSE_not_storable, true);
            conn_cache_set_status(c, "fwd=miss; detail=%s", cache_policy_reason_name(reason));
            conn_cache_fail_fill(c);
            return;
        }
        conn_cache_hit_for_miss(c, cache_policy_reason_name(reason));
        return;
    }
    if (resp->head.framing == HTTP_FRAMING_LENGTH &&
        resp->head.content_length > conn_cache_object_limit(c)) {
        conn_cache_hit_for_miss(c, "too_big");
        return;
    }
    ssize_t nn = cache_key_vary_names(names, sizeof(names), &resp->head);
    if (nn < 0) {
        conn_cache_hit_for_miss(c, "vary");
        return;
    }
    if (nn > 0 && !conn_cache_rekey_variant(c, names, (size_t)nn)) {
        conn_cache_hit_for_miss(c, "vary");
        return;
    }

    struct obj_meta meta;
    cache_policy_meta(resp, pol, x->request_time, now, &meta);
    char small[4096];
    char *head = small;
    size_t need = cache_policy_stored_head(resp, pol, now, small, sizeof(small));
    if (need >= sizeof(small)) {
        head = malloc(need + 1);
        if (head == NULL) {
            conn_cache_fail_fill(c);
            return;
        }
        cache_policy_stored_head(resp, pol, now, head, need + 1);
    }
    uint64_t body_max = resp->head.framing == HTTP_FRAMING_LENGTH ? resp->head.content_length
                        : resp->head.framing == HTTP_FRAMING_NONE ? 0
                                                                  : UINT64_MAX;
    int rc = obj_set_head(x->fill, resp->status, head, need, body_max, &meta);
    if (head != small)
        free(head);
    if (rc < 0) {
        conn_cache_fail_fill(c);
        return;
    }
    if (!x->fill_linked) {
        /* A refetch: the new response replaces the expired entry now. */
        cache_insert(conn_cache_store(c), x->fill);
        x->fill_linked = true;
    }
    conn_cache_clear_pending(c);
    obj_unref(&x->stale);
    x->resp_body.tee = conn_cache_tee;
    x->resp_body.tee_arg = c;
    c->w->stats.cache_stored++;
    conn_cache_set_status(c, "fwd=%s; stored; ttl=%" PRId64,
                          strstr(c->x.cache_lines, "fwd=stale") != NULL ? "stale" : "miss",
                          meta.lifetime);
}

bool
conn_cache_detach(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    char status[sizeof(x->cache_lines)];
    struct obj_meta meta;

    if (x->fill == NULL || x->fill->head == NULL || x->fill->body_max == UINT64_MAX)
        return false; /* not stored, or its length unknown: relay as it comes */
    if (c->sink == NULL && (c->sink = evbuffer_new()) == NULL)
        return false;
    /* The Cache-Status value this response was given, without its name. */
    const char *v = x->cache_lines + strlen("Cache-Status: ");
    size_t n = strcspn(v, "\r");
    memcpy(status, v, n);
    status[n] = '\0';
    obj_get_meta(x->fill, &meta);
    x->detached = true;
    conn_cache_deliver_entry(c, x->fill, &meta, status,
                             cache_policy_current_age(&meta, conn_cache_now()));
    return true;
}

/* Writes the completed fill (and the Vary marker it lives under) to the
 * route's shared tiers; nobody waits for it. */
static void
conn_cache_store_l2(struct conn *c, struct obj *o)
{
    struct conn_exchange *x = &c->x;
    const struct config_route_cache *rc = &x->route->cache;
    struct tier_thread *tt = c->w->tiers;
    if (tt == NULL || !tier_route_has_l2(tt, rc->tiers, rc->ntiers))
        return;
    tier_store(tt, rc->tiers, rc->ntiers, o, x->fetch_start_us);
    if (!x->via_vary || c->primary_len > o->key_len)
        return;
    struct obj_meta meta;
    obj_get_meta(o, &meta);
    int64_t left = meta.lifetime - cache_policy_current_age(&meta, conn_cache_now());
    left += meta.swr > meta.sie ? meta.swr : meta.sie;
    struct envelope e = {
        .kind = ENVELOPE_VARY,
        .stored_at_us = x->fetch_start_us,
        .vary_id = x->vary_id,
        .key = o->key, /* the variant key starts with the primary key */
        .key_len = c->primary_len,
        .head = x->vary_names,
        .head_len = strlen(x->vary_names),
    };
    tier_store_envelope(tt, rc->tiers, rc->ntiers, &e, left * 1000);
}

void
conn_cache_on_response_done(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    if (x->fill == NULL)
        return;
    if (obj_get_state(x->fill) == OBJ_BUSY)
        obj_finish(x->fill, OBJ_COMPLETE);
    cache_recharge(conn_cache_store(c), x->fill);
    if (obj_get_state(x->fill) == OBJ_COMPLETE)
        conn_cache_store_l2(c, x->fill);
    obj_unref(&x->fill);
}

void
conn_cache_end(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    tier_lookup_cancel(&x->l2);
    conn_cache_fail_fill(c);
    obj_unref(&x->stale);
    if (x->refresh_of != NULL) {
        atomic_store(&x->refresh_of->refreshing, false); /* a later request may try again */
        obj_unref(&x->refresh_of);
    }
    if (x->resp_body.tee != NULL) {
        x->resp_body.tee = NULL;
        x->resp_body.tee_arg = NULL;
    }
    deliver_stop(&x->dlv);
    x->delivering = false;
    conn_cache_stop_timer(c);
}

void
conn_cache_on_write(struct conn *c)
{
    if (c->x.delivering && !c->x.resp_done)
        conn_cache_pump(c);
}

void
conn_cache_free(struct conn *c)
{
    if (c->ev_wake != NULL)
        event_free(c->ev_wake);
    if (c->ev_coalesce != NULL)
        event_free(c->ev_coalesce);
    free(c->key);
}
