/*
 * upstream: see upstream.h.
 *
 * Passive health is per worker: each worker learns on its own that a
 * server fails, which costs at most max_fails failed requests per worker
 * and needs no cross-thread state on the request path.
 */
#include "upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "log.h"
#include "stats.h"
#include "util.h"

TAILQ_HEAD(upstream_conn_list, upstream_conn);

struct upstream_server {
    unsigned fails;      /* consecutive failures */
    uint64_t down_until; /* ms; cooling down while now < down_until */
    unsigned nidle;
    struct upstream_conn_list idle;
    SSL_SESSION *session; /* TLS: the latest session offered, to resume */
};

struct upstream_pool {
    struct event_base *base;
    const struct config_upstream *cfg;
    struct stats *st;
    unsigned rr;
    unsigned busy; /* connections handed out */
    bool retired;
    struct upstream_server *servers;
};

struct upstream_pool *
upstream_pool_new(struct event_base *base, const struct config_upstream *cfg, struct stats *st)
{
    struct upstream_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    p->base = base;
    p->cfg = cfg;
    p->st = st;
    p->servers = calloc(cfg->nservers, sizeof(*p->servers));
    if (p->servers == NULL)
        abort();
    for (size_t i = 0; i < cfg->nservers; i++)
        TAILQ_INIT(&p->servers[i].idle);
    return p;
}

static void
upstream_conn_free(struct upstream_conn *uc)
{
    /* The SSL may outlive uc inside libevent's deferred free. */
    if (uc->tls)
        tls_client_ssl_detach(bufferevent_openssl_get_ssl(uc->bev));
    bufferevent_free(uc->bev);
    free(uc);
}

static void
upstream_close_idle(struct upstream_pool *p)
{
    for (size_t i = 0; i < p->cfg->nservers; i++) {
        struct upstream_server *s = &p->servers[i];
        struct upstream_conn *uc;
        while ((uc = TAILQ_FIRST(&s->idle)) != NULL) {
            TAILQ_REMOVE(&s->idle, uc, link);
            upstream_conn_free(uc);
        }
        s->nidle = 0;
    }
}

void
upstream_pool_retire(struct upstream_pool *p)
{
    p->retired = true;
    upstream_close_idle(p);
}

void
upstream_pool_free(struct upstream_pool **pp)
{
    struct upstream_pool *p = *pp;
    if (p == NULL)
        return;
    UTIL_ASSERT(p->busy == 0);
    upstream_close_idle(p);
    for (size_t i = 0; i < p->cfg->nservers; i++)
        tls_client_session_free(&p->servers[i].session);
    free(p->servers);
    free(p);
    *pp = NULL;
}

int
upstream_pick(struct upstream_pool *p, uint64_t now_ms)
{
    size_t n = p->cfg->nservers;
    for (size_t i = 0; i < n; i++) {
        unsigned s = (p->rr + i) % n;
        if (p->servers[s].down_until <= now_ms) {
            p->rr = (s + 1) % n;
            return (int)s;
        }
    }
    return -1;
}

struct upstream_conn *
upstream_take_idle(struct upstream_pool *p, unsigned server)
{
    struct upstream_server *s = &p->servers[server];
    /* Most recently used first: it is the least likely to have been
     * closed by the server's own idle timeout. */
    struct upstream_conn *uc = TAILQ_LAST(&s->idle, upstream_conn_list);
    if (uc == NULL)
        return NULL;
    TAILQ_REMOVE(&s->idle, uc, link);
    s->nidle--;
    p->busy++;
    uc->reused = true;
    bufferevent_setcb(uc->bev, NULL, NULL, NULL, NULL);
    bufferevent_set_timeouts(uc->bev, NULL, NULL);
    return uc;
}

static void
upstream_on_tls_session(void *arg, SSL_SESSION *sess)
{
    struct upstream_conn *uc = arg;
    struct upstream_server *s = &uc->pool->servers[uc->server];

    tls_client_session_free(&s->session);
    s->session = sess;
}

static void
upstream_on_tls_handshake(void *arg, bool resumed)
{
    struct upstream_conn *uc = arg;

    if (uc->tls_done)
        return;
    uc->tls_done = true;
    if (resumed)
        uc->pool->st->upstream_tls_resumed++;
}

/* The bufferevent for a new socket: plain, or TLS in the connecting state. */
static struct bufferevent *
upstream_bev_new(struct upstream_pool *p, struct upstream_conn *uc, int fd)
{
    const struct tls_client *tc = p->cfg->tls.client;
    struct bufferevent *bev;
    SSL *ssl;

    if (!p->cfg->tls.enabled)
        return bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    uc->tls = true;
    uc->tls_hooks = (struct tls_client_hooks){
        .on_session = upstream_on_tls_session,
        .on_handshake = upstream_on_tls_handshake,
        .arg = uc,
    };
    ssl = tls_client_ssl_new(tc, p->servers[uc->server].session, &uc->tls_hooks);
    if (ssl == NULL)
        return NULL;
    bev = bufferevent_openssl_socket_new(p->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl); /* still ours when libevent fails */
        return NULL;
    }
    /* Servers often close without close_notify; the HTTP framing tells
     * a complete response from a cut one. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct upstream_conn *
upstream_connect(struct upstream_pool *p, unsigned server)
{
    const struct config_addr *a = &p->cfg->servers[server];
    int one = 1;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_errno("upstream %s: socket", a->text);
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct upstream_conn *uc = calloc(1, sizeof(*uc));
    if (uc == NULL)
        goto fail;
    uc->pool = p;
    uc->server = server;
    uc->bev = upstream_bev_new(p, uc, fd);
    if (uc->bev == NULL)
        goto fail;
    fd = -1; /* owned by the bufferevent now */
    if (bufferevent_socket_connect(uc->bev, (const struct sockaddr *)&a->ss, (int)a->len) < 0) {
        /* An immediate failure (e.g. no route) is reported like a refused connect. */
        log_debug("upstream %s: connect failed at once", a->text);
        goto fail;
    }
    p->busy++;
    p->st->upstream_connects++;
    return uc;
fail:
    if (uc != NULL && uc->bev != NULL)
        upstream_conn_free(uc);
    else
        free(uc);
    if (fd >= 0)
        close(fd);
    return NULL;
}

/*
 * A TLS connection given up on: says why when TLS is the reason (the
 * handshake failed, or the server sent an alert later, as TLS 1.3 servers
 * do when they refuse a client certificate). Plain TCP failures are
 * conn.c's to report.
 */
static void
upstream_tls_check_failure(struct upstream_conn *uc)
{
    struct upstream_pool *p = uc->pool;
    SSL *ssl = bufferevent_openssl_get_ssl(uc->bev);
    unsigned long e = bufferevent_get_openssl_error(uc->bev);
    bool verify_failed = false;
    char why[256];

    tls_client_error(ssl, e, &verify_failed, why, sizeof(why));
    if (!verify_failed && e == 0)
        return;
    while (bufferevent_get_openssl_error(uc->bev) != 0)
        ;
    p->st->upstream_tls_errors++;
    log_warn("upstream %s: TLS with %s failed%s: %s", p->cfg->name,
             p->cfg->servers[uc->server].text, uc->tls_done ? "" : " in the handshake", why);
}

static void
upstream_idle_on_read(struct bufferevent *bev, void *arg)
{
    /* An idle connection must stay silent; anything else breaks it. */
    struct upstream_conn *uc = arg;
    struct upstream_server *s = &uc->pool->servers[uc->server];
    TAILQ_REMOVE(&s->idle, uc, link);
    s->nidle--;
    upstream_conn_free(uc);
}

static void
upstream_idle_on_event(struct bufferevent *bev, short what, void *arg)
{
    upstream_idle_on_read(bev, arg);
}

void
upstream_release(struct upstream_conn **ucp, bool reusable)
{
    struct upstream_conn *uc = *ucp;
    if (uc == NULL)
        return;
    *ucp = NULL;
    struct upstream_pool *p = uc->pool;
    UTIL_ASSERT(p->busy > 0);
    p->busy--;
    struct upstream_server *s = &p->servers[uc->server];
    if (uc->tls && !reusable)
        upstream_tls_check_failure(uc);
    if (!reusable || p->retired || s->nidle >= p->cfg->keepalive ||
        evbuffer_get_length(bufferevent_get_input(uc->bev)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(uc->bev)) > 0) {
        upstream_conn_free(uc);
        return;
    }
    struct timeval tv = {p->cfg->keepalive_timeout_ms / 1000,
                         (p->cfg->keepalive_timeout_ms % 1000) * 1000};
    bufferevent_setcb(uc->bev, upstream_idle_on_read, NULL, upstream_idle_on_event, uc);
    bufferevent_setwatermark(uc->bev, EV_READ, 0, 0);
    bufferevent_setwatermark(uc->bev, EV_WRITE, 0, 0);
    bufferevent_set_timeouts(uc->bev, &tv, NULL);
    bufferevent_enable(uc->bev, EV_READ);
    bufferevent_disable(uc->bev, EV_WRITE);
    TAILQ_INSERT_TAIL(&s->idle, uc, link);
    s->nidle++;
}

void
upstream_report(struct upstream_pool *p, unsigned server, bool ok, uint64_t now_ms)
{
    struct upstream_server *s = &p->servers[server];
    if (ok) {
        s->fails = 0;
        return;
    }
    if (++s->fails >= p->cfg->max_fails) {
        s->down_until = now_ms + p->cfg->fail_timeout_ms;
        s->fails = 0;
        log_warn("upstream %s: server %s failed %u times in a row, cooling down for %u ms",
                 p->cfg->name, p->cfg->servers[server].text, p->cfg->max_fails,
                 p->cfg->fail_timeout_ms);
    }
}

const struct config_upstream *
upstream_pool_config(const struct upstream_pool *p)
{
    return p->cfg;
}

const char *
upstream_server_name(const struct upstream_pool *p, unsigned server)
{
    return p->cfg->servers[server].text;
}
