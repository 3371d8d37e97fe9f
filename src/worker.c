/*
 * worker: see worker.h.
 */
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "analytics.h"
#include "cache_policy.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "route.h"
#include "tier.h"
#include "upstream.h"
#include "util.h"

static __thread struct worker *worker_current;

struct worker *
worker_self(void)
{
    return worker_current;
}

/* The route's cache settings in the form cache_policy takes. */
static void
worker_policy_from_config(struct cache_policy_route *p, const struct config_route_cache *rc)
{
    cache_policy_route_init(p);
    p->default_ttl = rc->ttl;
    p->force_ttl = rc->force_ttl;
    p->stale_while_revalidate = rc->stale_while_revalidate;
    p->stale_if_error = rc->stale_if_error;
    p->heuristic_max = rc->heuristic_max;
    p->allow_set_cookie = rc->set_cookie;
    p->honour_client_no_cache = rc->honour_client_no_cache;
    for (int s = 100; s < 600; s++)
        cache_policy_route_set_status(p, s, (rc->statuses[s / 64] >> (s % 64)) & 1);
}

static struct worker_gen *
worker_gen_new(struct worker *w, struct config *cfg)
{
    struct worker_gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        abort();
    g->cfg = config_ref(cfg);
    g->pools = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*g->pools));
    if (g->pools == NULL)
        abort();
    for (size_t i = 0; i < cfg->nupstreams; i++)
        g->pools[i] = upstream_pool_new(w->base, &cfg->upstreams[i], &w->stats);
    g->policies = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*g->policies));
    if (g->policies == NULL)
        abort();
    for (size_t i = 0; i < cfg->nroutes; i++)
        worker_policy_from_config(&g->policies[i], &cfg->routes[i].cache);
    if (cfg->analytics_enabled && w->analytics != NULL) {
        g->analytics = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*g->analytics));
        if (g->analytics == NULL)
            abort();
        for (size_t i = 0; i < cfg->nroutes; i++)
            g->analytics[i] =
                analytics_worker_route(w->analytics, &w->analytics_head, cfg->routes[i].name);
    }
    g->refs = 1;
    return g;
}

static void
worker_gen_free(struct worker_gen *g)
{
    for (size_t i = 0; i < g->cfg->nupstreams; i++)
        upstream_pool_free(&g->pools[i]);
    free(g->pools);
    free(g->policies);
    free(g->analytics);
    config_unref(&g->cfg);
    free(g);
}

struct worker_gen *
worker_gen_ref(struct worker *w)
{
    w->gen->refs++;
    return w->gen;
}

void
worker_gen_unref(struct worker_gen **gp)
{
    struct worker_gen *g = *gp;
    if (g == NULL)
        return;
    *gp = NULL;
    UTIL_ASSERT(g->refs > 0);
    if (--g->refs == 0)
        worker_gen_free(g);
}

/* Retires the current generation: idle upstream connections close now,
 * busy ones when their requests release them. */
static void
worker_gen_retire(struct worker *w)
{
    struct worker_gen *g = w->gen;
    g->retired = true;
    for (size_t i = 0; i < g->cfg->nupstreams; i++)
        upstream_pool_retire(g->pools[i]);
    worker_gen_unref(&w->gen);
}

static void
worker_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                 void *arg)
{
    conn_accept(arg, fd, sa, salen, false);
}

static void
worker_on_accept_tls(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                     void *arg)
{
    conn_accept(arg, fd, sa, salen, true);
}

static void
worker_on_accept_error(struct evconnlistener *l, void *arg)
{
    /* EMFILE and friends: keep the listener, the next accept may work. */
    log_warn("worker %u: accept failed: %s", ((struct worker *)arg)->idx,
             evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void
worker_maybe_exit(struct worker *w)
{
    if (w->draining && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

static void
worker_on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    conn_reap_all(w);
    worker_maybe_exit(w);
}

void
worker_conn_reaped(struct worker *w)
{
    UTIL_ASSERT(w->nconns > 0);
    w->nconns--;
    event_active(w->ev_reap, EV_TIMEOUT, 0);
}

static void
worker_on_reload(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->mu);
    struct config *cfg = w->pending_cfg;
    w->pending_cfg = NULL;
    pthread_mutex_unlock(&w->mu);
    if (cfg == NULL)
        return;
    worker_gen_retire(w);
    w->gen = worker_gen_new(w, cfg);
    config_unref(&cfg);
    w->stats.reloads++;
}

static void
worker_on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (w->draining)
        return;
    w->draining = true;
    for (size_t i = 0; i < w->nlisten; i++) {
        if (w->listeners[i] != NULL)
            evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
    conn_drain_all(w);
    worker_maybe_exit(w);
}

/* Start-up: a warm Redis tier should serve the very first requests, so
 * the listeners wait (connections queue in the backlog) until this
 * worker's Redis connection is up, or its connect timeout has passed. */
static void
worker_on_ready_check(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    if (!tier_thread_connecting(w->tiers) || util_now_us() >= w->ready_deadline) {
        event_del(w->ev_ready);
        for (size_t i = 0; i < w->nlisten; i++)
            if (w->listeners[i] != NULL)
                evconnlistener_enable(w->listeners[i]);
    }
}

int
worker_init(struct worker *w, unsigned idx, struct config *cfg, const struct worker_shared *sh,
            int *fds, size_t nfds, size_t ntls)
{
    memset(w, 0, sizeof(*w));
    w->idx = idx;
    w->cache = sh->cache;
    w->inval = sh->inval;
    w->analytics = sh->analytics;
    w->rng = (uint64_t)util_wall_us() ^ ((uint64_t)(idx + 1) * 0x9e3779b97f4a7c15ull);
    if (w->analytics != NULL)
        analytics_register_worker(w->analytics, &w->analytics_head);
    TAILQ_INIT(&w->conns);
    TAILQ_INIT(&w->reap);
    pthread_mutex_init(&w->mu, NULL);
    w->base = event_base_new();
    if (w->base == NULL) {
        log_err("worker %u: cannot create an event base", idx);
        return -1;
    }
    w->ev_reload = event_new(w->base, -1, 0, worker_on_reload, w);
    w->ev_stop = event_new(w->base, -1, 0, worker_on_stop, w);
    w->ev_reap = event_new(w->base, -1, 0, worker_on_reap, w);
    w->listeners = calloc(nfds ? nfds : 1, sizeof(*w->listeners));
    if (w->ev_reload == NULL || w->ev_stop == NULL || w->ev_reap == NULL || w->listeners == NULL)
        abort();
    w->gen = worker_gen_new(w, cfg);
    stats_register(&w->stats);
    if (sh->tiers != NULL && tier_shared_any(sh->tiers))
        w->tiers = tier_thread_new(sh->tiers, w->base, &w->stats);
    w->nlisten = nfds;
    bool wait_tiers = w->tiers != NULL && tier_thread_connecting(w->tiers);
    if (wait_tiers) {
        struct timeval every = {0, 2000};
        w->ready_deadline = util_now_us() + (uint64_t)cfg->redis.connect_timeout_ms * 1000;
        w->ev_ready = event_new(w->base, -1, EV_PERSIST, worker_on_ready_check, w);
        if (w->ev_ready == NULL || event_add(w->ev_ready, &every) < 0)
            abort();
    }
    for (size_t i = 0; i < nfds; i++) {
        w->listeners[i] = evconnlistener_new(
            w->base, i + ntls >= nfds ? worker_on_accept_tls : worker_on_accept, w,
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | (wait_tiers ? LEV_OPT_DISABLED : 0), -1,
            fds[i]);
        if (w->listeners[i] == NULL) {
            log_err("worker %u: cannot listen on socket %d", idx, fds[i]);
            close(fds[i]);
            return -1;
        }
        evconnlistener_set_error_cb(w->listeners[i], worker_on_accept_error);
    }
    return 0;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    worker_current = w;
    event_base_dispatch(w->base);
    /* Past the drain: whatever is still open is cut. */
    conn_close_all(w);
    conn_reap_all(w);
    tier_thread_free(&w->tiers); /* on its own thread, as its Redis connection wants */
    route_thread_cleanup();
    return NULL;
}

int
worker_start(struct worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        log_err("worker %u: cannot start its thread", w->idx);
        return -1;
    }
    return 0;
}

double
worker_random(struct worker *w)
{
    /* xorshift64*: plenty for sampling, and no lock or syscall. */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return (double)((x * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

void
worker_reload(struct worker *w, struct config *cfg)
{
    pthread_mutex_lock(&w->mu);
    config_unref(&w->pending_cfg);
    w->pending_cfg = config_ref(cfg);
    pthread_mutex_unlock(&w->mu);
    event_active(w->ev_reload, EV_TIMEOUT, 0);
}

void
worker_stop(struct worker *w)
{
    event_active(w->ev_stop, EV_TIMEOUT, 0);
}

void
worker_destroy(struct worker *w)
{
    for (size_t i = 0; i < w->nlisten; i++)
        if (w->listeners[i] != NULL)
            evconnlistener_free(w->listeners[i]);
    free(w->listeners);
    if (w->gen != NULL) {
        worker_gen_retire(w);
    }
    config_unref(&w->pending_cfg);
    tier_thread_free(&w->tiers); /* when the thread never ran */
    if (w->ev_reload != NULL)
        event_free(w->ev_reload);
    if (w->ev_stop != NULL)
        event_free(w->ev_stop);
    if (w->ev_reap != NULL)
        event_free(w->ev_reap);
    if (w->ev_ready != NULL)
        event_free(w->ev_ready);
    if (w->base != NULL)
        event_base_free(w->base);
    pthread_mutex_destroy(&w->mu);
}
