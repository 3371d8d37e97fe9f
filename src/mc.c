/*
 * mc: see mc.h.
 *
 * Shape. One queue (p->lock, p->cond) feeds p->nthreads threads; each
 * thread owns one memcached_st, configured identically, so a key maps to
 * the same server index in every thread. A request (struct mc_req) is
 * owned by exactly one place at a time: the submitter until it is queued,
 * the queue, the thread running it, then its mc_done's list until the
 * base's thread delivers it. Whoever drops a request frees its SET or
 * GET value with it.
 *
 * Failed servers. libmemcached 1.1.4 sets a server aside only after a
 * failed connect(), in whole seconds (RETRY_TIMEOUT), per memcached_st; a
 * server that accepts connections but does not answer (stopped, wedged)
 * is never set aside, so every request for it would wait the full poll
 * timeout; and auto-ejection (REMOVE_FAILED_SERVERS, DEAD_TIMEOUT) moves
 * the dead server's keys to the live ones, which then serve stale values
 * once it comes back. So libmemcached's own timeout state is switched off
 * (SERVER_TIMEOUT_LIMIT at its maximum) and the pool keeps one shared
 * health record per server instead: after a connection-level failure
 * (timeout, refused, reset, I/O error) the server is "down" for retry_ms
 * and its requests fail at once with MC_ERROR, without touching the
 * network. Once retry_ms has passed, one request at a time is let through
 * as a probe; success brings the server back, failure sets it aside for
 * another retry_ms. Keys never move between servers. State changes are
 * logged once each.
 *
 * The health records are shared by all threads (p->health_lock), so a
 * dead server costs the timeout about once per pool, at most once per
 * thread that was already talking to it.
 *
 * Lifetime of a mc_done. d->refs counts its owner (until mc_done_free)
 * plus every request submitted for it that has not been handed to its
 * list yet, plus a running delivery. mc_done_free marks it dead under
 * d->lock; after that nobody touches d->ev, results arriving are freed by
 * the thread that finished them, and the last reference frees d.
 *
 * Lock order: p->lock before d->lock; p->health_lock is taken alone.
 */
#include "mc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>
#include <libmemcached/memcached.h>

#include "log.h"
#include "util.h"

/* memcached's limit on key length. */
#define MC_KEY_MAX 250
/* Results delivered per activation of a mc_done's event before yielding. */
#define MC_DONE_BATCH 64
/* memcached reads a longer exptime as a Unix time, not a duration. */
#define MC_EXPTIME_RELATIVE_MAX (30 * 24 * 3600)

struct mc_req {
    TAILQ_ENTRY(mc_req) link;
    struct mc_done *done;
    mc_cb cb;
    void *arg;
    enum mc_op op;
    enum mc_result result;
    void *value; /* SET: handed over by the submitter; GET: the result */
    size_t vlen;
    time_t exptime; /* as memcached wants it */
    uint64_t deadline_ms;
    size_t klen;
    char key[MC_KEY_MAX];
};

TAILQ_HEAD(mc_req_list, mc_req);

struct mc_done {
    pthread_mutex_t lock;
    struct event *ev;         /* NULL once dead */
    struct mc_req_list ready; /* finished, not yet delivered */
    unsigned refs;
    bool armed; /* ev is active or being handled: no need to activate it */
    bool dead;
};

struct mc_server {
    char name[UTIL_ADDRSTRLEN];
    bool down;
    bool probing;      /* a request is testing a down server */
    uint64_t retry_ms; /* down: when the next probe may go */
    uint64_t downs;    /* times it went down */
};

struct mc_thread {
    struct mc_pool *pool;
    memcached_st *memc;
    uint64_t *downs_seen; /* per server: its downs when memc's connections were made */
    pthread_t tid;
    bool started;
};

struct mc_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct mc_req_list queue;
    unsigned queued;
    unsigned queue_max;
    bool stopping;

    unsigned timeout_ms;
    unsigned retry_ms;

    pthread_mutex_t health_lock;
    struct mc_server *servers;
    size_t nservers;

    struct mc_thread *threads;
    unsigned nthreads;
};

static void
mc_req_free(struct mc_req *r)
{
    free(r->value);
    free(r);
}

static void
mc_done_destroy(struct mc_done *d)
{
    UTIL_ASSERT(d->refs == 0 && d->dead && d->ev == NULL);
    UTIL_ASSERT(TAILQ_EMPTY(&d->ready));
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* Drops one reference; the caller holds d->lock, which this releases. */
static void
mc_done_unref_unlock(struct mc_done *d)
{
    UTIL_ASSERT(d->refs > 0);
    bool last = --d->refs == 0;
    pthread_mutex_unlock(&d->lock);
    if (last)
        mc_done_destroy(d);
}

/* A pool thread hands a finished request to its mc_done (or drops it). */
static void
mc_done_push(struct mc_req *r)
{
    struct mc_done *d = r->done;

    pthread_mutex_lock(&d->lock);
    if (!d->dead) {
        TAILQ_INSERT_TAIL(&d->ready, r, link);
        r = NULL;
        if (!d->armed) {
            d->armed = true;
            event_active(d->ev, 0, 0);
        }
    }
    mc_done_unref_unlock(d);
    if (r != NULL)
        mc_req_free(r);
}

static void
mc_done_deliver(struct mc_req *r)
{
    if (r->cb != NULL) {
        const char *value = NULL;
        size_t len = 0;
        if (r->op == MC_GET && r->result == MC_OK) {
            /* libmemcached returns NULL for an empty value. */
            value = r->value != NULL ? r->value : "";
            len = r->vlen;
        }
        r->cb(r->arg, r->result, value, len);
    }
    mc_req_free(r);
}

/*
 * Runs on d's base. A callback may submit more work or free d (or the
 * pool), so the lock is never held across one, d is pinned by a reference
 * of its own, and d->dead is checked before each delivery.
 */
static void
mc_done_on_ready(evutil_socket_t fd, short what, void *arg)
{
    struct mc_done *d = arg;

    pthread_mutex_lock(&d->lock);
    d->refs++;
    for (int n = 0; n < MC_DONE_BATCH; n++) {
        struct mc_req *r = TAILQ_FIRST(&d->ready);
        if (d->dead || r == NULL)
            break;
        TAILQ_REMOVE(&d->ready, r, link);
        pthread_mutex_unlock(&d->lock);
        mc_done_deliver(r);
        pthread_mutex_lock(&d->lock);
    }
    if (!d->dead) {
        if (TAILQ_EMPTY(&d->ready))
            d->armed = false;
        else
            event_active(d->ev, 0, 0); /* the rest after other events */
    }
    mc_done_unref_unlock(d);
}

struct mc_done *
mc_done_new(struct event_base *base)
{
    struct mc_done *d = util_xcalloc(1, sizeof(*d));

    pthread_mutex_init(&d->lock, NULL);
    TAILQ_INIT(&d->ready);
    d->refs = 1;
    d->ev = event_new(base, -1, 0, mc_done_on_ready, d);
    if (d->ev == NULL)
        fatal("mc: event_new failed");
    return d;
}

void
mc_done_free(struct mc_done **dp)
{
    struct mc_done *d = *dp;
    struct mc_req_list drop;

    if (d == NULL)
        return;
    *dp = NULL;

    pthread_mutex_lock(&d->lock);
    UTIL_ASSERT(!d->dead);
    d->dead = true;
    struct event *ev = d->ev;
    d->ev = NULL;
    TAILQ_INIT(&drop);
    TAILQ_CONCAT(&drop, &d->ready, link);
    mc_done_unref_unlock(d);

    /* Pool threads see d->dead under the lock and no longer touch ev. */
    event_free(ev);
    struct mc_req *r;
    while ((r = TAILQ_FIRST(&drop)) != NULL) {
        TAILQ_REMOVE(&drop, r, link);
        mc_req_free(r);
    }
}

/* Connection-level failures: the server, not this request, is at fault. */
static bool
mc_rc_is_server_failure(memcached_return_t rc)
{
    switch (rc) {
    case MEMCACHED_HOST_LOOKUP_FAILURE:
    case MEMCACHED_CONNECTION_FAILURE:
    case MEMCACHED_CONNECTION_BIND_FAILURE:
    case MEMCACHED_WRITE_FAILURE:
    case MEMCACHED_READ_FAILURE:
    case MEMCACHED_UNKNOWN_READ_FAILURE:
    case MEMCACHED_PROTOCOL_ERROR:
    case MEMCACHED_PARTIAL_READ:
    case MEMCACHED_ERRNO:
    case MEMCACHED_TIMEOUT:
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
    case MEMCACHED_ERROR: /* also CONNECTION_SOCKET_CREATE_FAILURE */
        return true;
    default:
        return false;
    }
}

static enum mc_result
mc_result_of(memcached_st *memc, memcached_return_t rc)
{
    if (memcached_success(rc))
        return MC_OK;
    switch (rc) {
    case MEMCACHED_NOTFOUND:
        return MC_NOTFOUND;
    case MEMCACHED_TIMEOUT:
        return MC_TIMEOUT;
    case MEMCACHED_ERRNO: {
        int e = memcached_last_error_errno(memc);
        return e == ETIMEDOUT || e == EAGAIN || e == EWOULDBLOCK ? MC_TIMEOUT : MC_ERROR;
    }
    default:
        return MC_ERROR;
    }
}

/*
 * May a request for server i go out now? False while the server is set
 * aside; once its retry time has come, true for one request at a time
 * (*probe set) until that one reports. *downs: how often it went down.
 */
static bool
mc_server_admit(struct mc_pool *p, uint32_t i, uint64_t now, bool *probe, uint64_t *downs)
{
    struct mc_server *s = &p->servers[i];
    bool ok = true;

    *probe = false;
    pthread_mutex_lock(&p->health_lock);
    if (s->down) {
        if (s->probing || now < s->retry_ms)
            ok = false;
        else
            s->probing = *probe = true;
    }
    *downs = s->downs;
    pthread_mutex_unlock(&p->health_lock);
    return ok;
}

static void
mc_server_report(struct mc_pool *p, uint32_t i, bool probe, memcached_st *memc,
                 memcached_return_t rc)
{
    struct mc_server *s = &p->servers[i];
    bool failed = mc_rc_is_server_failure(rc);
    bool went_down = false, came_back = false;

    pthread_mutex_lock(&p->health_lock);
    if (probe)
        s->probing = false;
    if (failed) {
        went_down = !s->down;
        s->downs += went_down;
        s->down = true;
        s->retry_ms = util_now_ms() + p->retry_ms;
    } else if (s->down) {
        came_back = true;
        s->down = false;
    }
    pthread_mutex_unlock(&p->health_lock);

    /* Outside the lock: logging may take its own. */
    if (went_down)
        log_warn("mc: server %s failed (%s); skipping it for %u ms between retries", s->name,
                 memcached_strerror(memc, rc), p->retry_ms);
    else if (came_back)
        log_warn("mc: server %s is back", s->name);
}

static void
mc_run(struct mc_thread *t, struct mc_req *r)
{
    struct mc_pool *p = t->pool;
    memcached_return_t rc = MEMCACHED_FAILURE;
    bool probe;

    uint64_t now = util_now_ms();
    if (now >= r->deadline_ms) {
        r->result = MC_TIMEOUT;
        return;
    }

    uint32_t i = memcached_generate_hash(t->memc, r->key, r->klen);
    UTIL_ASSERT(i < p->nservers);
    uint64_t downs;
    if (!mc_server_admit(p, i, now, &probe, &downs)) {
        r->result = MC_ERROR;
        return;
    }
    /*
     * The server went down since this thread's connection to it was made
     * (by another thread's failure): that connection is likely dead too
     * (a killed server's half-closed socket), and using it would fail the
     * probe and set the server aside again. libmemcached only closes all of
     * a memcached_st's connections at once; a rare cost.
     */
    if (t->downs_seen[i] != downs) {
        memcached_quit(t->memc);
        pthread_mutex_lock(&p->health_lock);
        for (size_t j = 0; j < p->nservers; j++)
            t->downs_seen[j] = p->servers[j].downs;
        pthread_mutex_unlock(&p->health_lock);
    }

    switch (r->op) {
    case MC_GET: {
        uint32_t flags;
        UTIL_ASSERT(r->value == NULL);
        r->value = memcached_get(t->memc, r->key, r->klen, &r->vlen, &flags, &rc);
        break;
    }
    case MC_SET:
        rc = memcached_set(t->memc, r->key, r->klen, r->value, r->vlen, r->exptime, 0);
        /* Nothing reads a SET's value after this: free it now, not on delivery. */
        free(r->value);
        r->value = NULL;
        r->vlen = 0;
        break;
    case MC_DELETE:
        rc = memcached_delete(t->memc, r->key, r->klen, 0);
        break;
    default:
        UTIL_ASSERT(!"unknown mc_op");
    }

    r->result = mc_result_of(t->memc, rc);
    if (r->result != MC_OK) {
        free(r->value);
        r->value = NULL;
        r->vlen = 0;
    }
    mc_server_report(p, i, probe, t->memc, rc);
}

static void *
mc_thread_main(void *arg)
{
    struct mc_thread *t = arg;
    struct mc_pool *p = t->pool;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stopping && TAILQ_EMPTY(&p->queue))
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->stopping)
            break;
        struct mc_req *r = TAILQ_FIRST(&p->queue);
        TAILQ_REMOVE(&p->queue, r, link);
        p->queued--;
        pthread_mutex_unlock(&p->lock);

        mc_run(t, r);
        mc_done_push(r);

        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static memcached_st *
mc_memc_new(const struct mc_pool_opts *o)
{
    memcached_st *memc = memcached_create(NULL);
    if (memc == NULL) {
        log_err("mc: memcached_create failed");
        return NULL;
    }
    for (size_t i = 0; i < o->nservers; i++) {
        memcached_return_t rc = memcached_server_add(memc, o->hosts[i], (in_port_t)o->ports[i]);
        if (memcached_failed(rc)) {
            log_err("mc: cannot add server %s:%d: %s", o->hosts[i], o->ports[i],
                    memcached_strerror(memc, rc));
            goto fail;
        }
    }

    /*
     * KETAMA_WEIGHTED is libketama's placement (MD5 of the key, MD5
     * continuum points), which other ketama clients share; all weights
     * are equal. The I/O timeouts are in ms for POLL/CONNECT and in us
     * for SND/RCV (libmemcached's sockets are non-blocking, so POLL is the
     * one that bounds a request). SERVER_TIMEOUT_LIMIT at its maximum
     * turns off libmemcached's own setting aside of servers (see the top
     * of this file); the pool's health records do that job.
     */
    uint64_t io_us = (uint64_t)o->timeout_ms * 1000;
    if (io_us > INT32_MAX)
        io_us = INT32_MAX;
    struct {
        memcached_behavior_t b;
        uint64_t v;
        const char *name;
    } const behaviors[] = {
        {MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1, "BINARY_PROTOCOL"},
        {MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1, "KETAMA_WEIGHTED"},
        {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "TCP_NODELAY"},
        {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, o->connect_timeout_ms, "CONNECT_TIMEOUT"},
        {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, o->timeout_ms, "POLL_TIMEOUT"},
        {MEMCACHED_BEHAVIOR_SND_TIMEOUT, io_us, "SND_TIMEOUT"},
        {MEMCACHED_BEHAVIOR_RCV_TIMEOUT, io_us, "RCV_TIMEOUT"},
        {MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT, UINT32_MAX, "SERVER_TIMEOUT_LIMIT"},
        {MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0, "REMOVE_FAILED_SERVERS"},
    };
    for (size_t i = 0; i < sizeof(behaviors) / sizeof(behaviors[0]); i++) {
        memcached_return_t rc = memcached_behavior_set(memc, behaviors[i].b, behaviors[i].v);
        if (memcached_failed(rc)) {
            log_err("mc: cannot set %s: %s", behaviors[i].name, memcached_strerror(memc, rc));
            goto fail;
        }
    }
    return memc;

fail:
    memcached_free(memc);
    return NULL;
}

static int
mc_opts_check(const struct mc_pool_opts *o)
{
    if (o->nservers == 0 || o->threads == 0 || o->queue == 0 || o->timeout_ms == 0 ||
        o->connect_timeout_ms == 0 || o->timeout_ms > INT32_MAX ||
        o->connect_timeout_ms > INT32_MAX) {
        log_err("mc: invalid options (need servers, threads, queue and timeouts > 0)");
        return -1;
    }
    for (size_t i = 0; i < o->nservers; i++) {
        unsigned char addr[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, o->hosts[i], addr) != 1 &&
            inet_pton(AF_INET6, o->hosts[i], addr) != 1) {
            log_err("mc: server %s: not a numeric IP address", o->hosts[i]);
            return -1;
        }
        if (o->ports[i] < 1 || o->ports[i] > 65535) {
            log_err("mc: server %s: invalid port %d", o->hosts[i], o->ports[i]);
            return -1;
        }
    }
    return 0;
}

/* Stops and joins the started threads, frees everything queued or owned. */
static void
mc_pool_stop(struct mc_pool *p)
{
    struct mc_req_list drop;

    TAILQ_INIT(&drop);
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    TAILQ_CONCAT(&drop, &p->queue, link);
    p->queued = 0;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);

    struct mc_req *r;
    while ((r = TAILQ_FIRST(&drop)) != NULL) {
        TAILQ_REMOVE(&drop, r, link);
        struct mc_done *d = r->done;
        mc_req_free(r);
        pthread_mutex_lock(&d->lock);
        mc_done_unref_unlock(d);
    }

    /* Running requests finish (bounded by the timeouts) and are delivered. */
    for (unsigned i = 0; i < p->nthreads; i++) {
        if (p->threads[i].started)
            pthread_join(p->threads[i].tid, NULL);
        if (p->threads[i].memc != NULL)
            memcached_free(p->threads[i].memc);
        free(p->threads[i].downs_seen);
    }
}

struct mc_pool *
mc_pool_new(const struct mc_pool_opts *o)
{
    if (mc_opts_check(o) < 0)
        return NULL;

    struct mc_pool *p = util_xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    pthread_mutex_init(&p->health_lock, NULL);
    TAILQ_INIT(&p->queue);
    p->queue_max = o->queue;
    p->timeout_ms = o->timeout_ms;
    p->retry_ms = o->retry_ms;
    p->nservers = o->nservers;
    p->servers = util_xcalloc(o->nservers, sizeof(*p->servers));
    p->nthreads = o->threads;
    p->threads = util_xcalloc(o->threads, sizeof(*p->threads));

    /* Every memcached_st before any thread, so a bad option fails here. */
    for (unsigned i = 0; i < p->nthreads; i++) {
        p->threads[i].pool = p;
        p->threads[i].downs_seen = util_xcalloc(o->nservers, sizeof(uint64_t));
        if ((p->threads[i].memc = mc_memc_new(o)) == NULL)
            goto fail;
    }
    /* Name servers by libmemcached's index, the one memcached_generate_hash() gives. */
    for (uint32_t i = 0; i < p->nservers; i++) {
        const memcached_instance_st *in =
            memcached_server_instance_by_position(p->threads[0].memc, i);
        const char *host = memcached_server_name(in);
        snprintf(p->servers[i].name, sizeof(p->servers[i].name),
                 strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host,
                 (unsigned)memcached_server_port(in));
    }

    /* Signals belong to the event loops; the pool threads block them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < p->nthreads; i++) {
        int e = pthread_create(&p->threads[i].tid, NULL, mc_thread_main, &p->threads[i]);
        if (e != 0) {
            log_err("mc: cannot start a thread: %s", strerror(e));
            break;
        }
        p->threads[i].started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!p->threads[p->nthreads - 1].started)
        goto fail;
    return p;

fail:
    mc_pool_free(&p);
    return NULL;
}

void
mc_pool_free(struct mc_pool **pp)
{
    struct mc_pool *p = *pp;

    if (p == NULL)
        return;
    *pp = NULL;
    mc_pool_stop(p);
    free(p->threads);
    free(p->servers);
    pthread_mutex_destroy(&p->health_lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int
mc_submit(struct mc_pool *p, struct mc_done *d, enum mc_op op, const char *key, size_t klen,
          void *value, size_t vlen, uint32_t exptime, mc_cb cb, void *arg)
{
    struct mc_req *r = NULL;

    UTIL_ASSERT(op == MC_GET || op == MC_SET || op == MC_DELETE);
    UTIL_ASSERT(op == MC_SET || value == NULL);
    if (klen == 0 || klen > MC_KEY_MAX)
        goto fail;
    if ((r = malloc(sizeof(*r))) == NULL)
        goto fail;
    r->done = d;
    r->cb = cb;
    r->arg = arg;
    r->op = op;
    r->result = MC_ERROR;
    r->value = value;
    r->vlen = value != NULL ? vlen : 0;
    r->exptime = exptime;
    if (exptime > MC_EXPTIME_RELATIVE_MAX)
        r->exptime = time(NULL) + (time_t)exptime;
    r->deadline_ms = util_now_ms() + p->timeout_ms;
    r->klen = klen;
    memcpy(r->key, key, klen);

    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->queued >= p->queue_max) {
        pthread_mutex_unlock(&p->lock);
        goto fail;
    }
    pthread_mutex_lock(&d->lock);
    UTIL_ASSERT(!d->dead);
    d->refs++;
    pthread_mutex_unlock(&d->lock);
    TAILQ_INSERT_TAIL(&p->queue, r, link);
    p->queued++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;

fail:
    free(r);
    free(value);
    return -1;
}
