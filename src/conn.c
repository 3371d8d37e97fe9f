/*
 * conn: client connections and the proxying of their requests.
 *
 * Data path: the client's bufferevent feeds the parser; a parsed head is
 * copied into the connection's own head buffer (so the parsed fields stay
 * valid while the input buffer moves on), a route and an upstream
 * connection are chosen, and the request head is rebuilt into the upstream
 * output. Bodies move between the two bufferevents with
 * evbuffer_remove_buffer (chain moves, no copies) or, for chunked bodies,
 * through the chunked decoder and re-encoded, so what the upstream sees is
 * framed by us and never ambiguous.
 *
 * Backpressure: every input has a high read watermark, so libevent stops
 * reading a socket whose data we have not moved on yet; we stop moving
 * data into an output above CONN_OUT_HIGH and resume from that output's
 * write callback, which fires when it drains below CONN_OUT_LOW. A slow
 * client therefore slows its upstream read, and nothing holds a body
 * whole.
 *
 * Ownership: the connection owns its bufferevent, its head buffer, the
 * upstream connection while a request uses it, and one reference to the
 * worker generation the request started with.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "analytics.h"
#include "body.h"
#include "config.h"
#include "conn_int.h"
#include "http_parser.h"
#include "http_write.h"
#include "log.h"
#include "route.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"
#include "worker.h"

static const char *const conn_state_names[] = {
#define CONN_STATE_NAME(name) #name,
    CONN_STATES(CONN_STATE_NAME)
#undef CONN_STATE_NAME
};

static void conn_on_read(struct bufferevent *bev, void *arg);
static void conn_on_write(struct bufferevent *bev, void *arg);
static void conn_on_event(struct bufferevent *bev, short what, void *arg);
static void conn_up_on_read(struct bufferevent *bev, void *arg);
static void conn_up_on_write(struct bufferevent *bev, void *arg);
static void conn_up_on_event(struct bufferevent *bev, short what, void *arg);
static void conn_process(struct conn *c);
static void conn_upstream_begin(struct conn *c);

static struct timeval
conn_tv(unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

const struct config *
conn_cfg(const struct conn *c)
{
    return c->x.gen != NULL ? c->x.gen->cfg : c->w->gen->cfg;
}

/* Asserts the legal transitions: a wrong one is a bug to catch in tests. */
static void
conn_set_state(struct conn *c, enum conn_state to)
{
    enum conn_state from = c->state;
    bool ok;
    switch (to) {
    case CONN_S_IDLE:
        ok = from == CONN_S_PROXY || from == CONN_S_HEAD;
        break;
    case CONN_S_HEAD:
        ok = from == CONN_S_IDLE;
        break;
    case CONN_S_PROXY:
        ok = from == CONN_S_IDLE || from == CONN_S_HEAD;
        break;
    case CONN_S_CLOSING:
        ok = from != CONN_S_DEAD && from != CONN_S_CLOSING;
        break;
    case CONN_S_DEAD:
        ok = from != CONN_S_DEAD;
        break;
    default:
        ok = false;
    }
    if (!ok) {
        log_err("conn=%" PRIu64 ": illegal state change %s -> %s", c->id, conn_state_names[from],
                conn_state_names[to]);
        abort();
    }
    c->state = to;
}

static void
conn_set_client_timeouts(struct conn *c, unsigned read_ms)
{
    const struct config *cfg = conn_cfg(c);
    struct timeval rtv = conn_tv(read_ms);
    struct timeval wtv = conn_tv(cfg->client_idle_timeout_ms);
    bufferevent_set_timeouts(c->bev, read_ms ? &rtv : NULL, &wtv);
}

/* Ends the exchange's hold on its upstream connection and generation. */
static void
conn_exchange_reset(struct conn *c)
{
    conn_cache_end(c);
    upstream_release(&c->x.up, false);
    worker_gen_unref(&c->x.gen);
    memset(&c->x, 0, sizeof(c->x));
}

/* Queues the connection for freeing; safe inside any callback. */
static void
conn_close(struct conn *c)
{
    if (c->state == CONN_S_DEAD)
        return;
    conn_exchange_reset(c);
    conn_set_state(c, CONN_S_DEAD);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    TAILQ_REMOVE(&c->w->conns, c, link);
    TAILQ_INSERT_TAIL(&c->w->reap, c, link);
    c->w->stats.connections_active--;
    worker_conn_reaped(c->w);
}

static void
conn_free(struct conn *c)
{
    conn_cache_free(c);
    if (c->sink != NULL)
        evbuffer_free(c->sink);
    bufferevent_free(c->bev);
    free(c->head);
    free(c);
}

void
conn_reap_all(struct worker *w)
{
    struct conn *c;
    while ((c = TAILQ_FIRST(&w->reap)) != NULL) {
        TAILQ_REMOVE(&w->reap, c, link);
        conn_free(c);
    }
}

/* Flushes what is queued for the client, then closes. */
static void
conn_close_after_flush(struct conn *c)
{
    if (c->state == CONN_S_DEAD)
        return;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_close(c);
        return;
    }
    if (c->state != CONN_S_CLOSING)
        conn_set_state(c, CONN_S_CLOSING);
    /* Fire the write callback only once everything is out. */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_enable(c->bev, EV_WRITE);
}

const char *
conn_scheme(const struct conn *c)
{
    return c->https ? "https" : "http";
}

/*
 * A server-side TLS bufferevent on fd with the current certificates, or
 * NULL (fd closed). The SSL object belongs to the bufferevent and holds a
 * reference to its SSL_CTX, so a reload never pulls it away.
 */
static struct bufferevent *
conn_tls_bev(struct worker *w, evutil_socket_t fd)
{
    struct tls_ctx *tc = w->gen->cfg->tls.ctx;
    struct bufferevent *bev;
    SSL *ssl;

    if (tc == NULL) {
        /* A reload dropped tls.certificates; the listener stays until restart. */
        w->stats.tls_handshake_errors++;
        evutil_closesocket(fd);
        return NULL;
    }
    ssl = tls_ctx_ssl_new(tc);
    if (ssl == NULL) {
        ERR_clear_error();
        evutil_closesocket(fd);
        return NULL;
    }
    /* On failure libevent has freed ssl and closed fd (CLOSE_ON_FREE),
     * unless it could not allocate at all: an out-of-memory leak at worst. */
    bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev != NULL)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* Wraps a connected socket in a connection; NULL (socket closed) on failure. */
static struct conn *
conn_new(struct worker *w, evutil_socket_t fd, bool tls)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        evutil_closesocket(fd);
        return NULL;
    }
    if (tls) {
        c->bev = conn_tls_bev(w, fd);
        if (c->bev == NULL) {
            free(c);
            return NULL;
        }
        c->https = true;
        c->handshaking = true;
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        return NULL;
    }
    c->w = w;
    c->id = ++w->next_conn_id * 256 + w->idx;
    c->state = CONN_S_IDLE;
    TAILQ_INSERT_TAIL(&w->conns, c, link);
    w->nconns++;
    w->stats.connections_active++;
    bufferevent_setcb(c->bev, conn_on_read, conn_on_write, conn_on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_IN_HIGH);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_OUT_LOW, 0);
    bufferevent_set_max_single_read(c->bev, CONN_IO_MAX);
    bufferevent_set_max_single_write(c->bev, CONN_IO_MAX);
    if (c->handshaking) {
        struct timeval tv = conn_tv(conn_cfg(c)->tls.handshake_timeout_ms);
        bufferevent_set_timeouts(c->bev, &tv, &tv);
    } else {
        conn_set_client_timeouts(c, conn_cfg(c)->client_header_timeout_ms);
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return c;
}

void
conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen, bool tls)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn *c = conn_new(w, fd, tls);
    if (c == NULL)
        return;
    w->stats.connections_accepted++;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, c->peer_ip, sizeof(c->peer_ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", c->peer_ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", c->peer_ip, ntohs(in6->sin6_port));
    } else {
        snprintf(c->peer_ip, sizeof(c->peer_ip), "unknown");
        snprintf(c->peer, sizeof(c->peer), "unknown");
    }
}

/*
 * The client end of an internal request: reads and discards the answer,
 * frees itself at EOF. Kept on a per-thread list so a worker that exits
 * with refreshes in flight frees them too.
 */
struct conn_sink {
    struct bufferevent *bev;
    TAILQ_ENTRY(conn_sink) link;
};

static __thread TAILQ_HEAD(, conn_sink) conn_sinks = {NULL, NULL};

static void
conn_sink_free(struct conn_sink *s)
{
    TAILQ_REMOVE(&conn_sinks, s, link);
    bufferevent_free(s->bev);
    free(s);
}

static void
conn_sink_on_read(struct bufferevent *bev, void *arg)
{
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static void
conn_sink_on_event(struct bufferevent *bev, short what, void *arg)
{
    conn_sink_free(arg);
}

int
conn_start_internal(struct worker *w, const char *head, size_t len, bool https)
{
    int sv[2];
    struct conn_sink *s = NULL;
    if (conn_sinks.tqh_last == NULL)
        TAILQ_INIT(&conn_sinks);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    s = calloc(1, sizeof(*s));
    if (s == NULL ||
        (s->bev = bufferevent_socket_new(w->base, sv[1], BEV_OPT_CLOSE_ON_FREE)) == NULL) {
        free(s);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    struct conn *c = conn_new(w, sv[0], false);
    if (c == NULL) {
        bufferevent_free(s->bev);
        free(s);
        return -1;
    }
    c->https = https;
    c->internal = true;
    c->close_after = true;
    snprintf(c->peer_ip, sizeof(c->peer_ip), "127.0.0.1");
    snprintf(c->peer, sizeof(c->peer), "internal");
    TAILQ_INSERT_TAIL(&conn_sinks, s, link);
    bufferevent_setcb(s->bev, conn_sink_on_read, NULL, conn_sink_on_event, s);
    bufferevent_write(s->bev, head, len);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    return 0;
}

void
conn_drain_all(struct worker *w)
{
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->state == CONN_S_IDLE && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            conn_close_after_flush(c);
        else
            c->close_after = true;
    }
}

void
conn_close_all(struct worker *w)
{
    struct conn *c;
    while ((c = TAILQ_FIRST(&w->conns)) != NULL)
        conn_close(c);
    if (conn_sinks.tqh_last != NULL)
        while (!TAILQ_EMPTY(&conn_sinks))
            conn_sink_free(TAILQ_FIRST(&conn_sinks));
}

/* --- access log and accounting ---------------------------------------- */

/* The analytics outcome of the exchange that ends. */
static enum analytics_outcome
conn_outcome(const struct conn_exchange *x)
{
    const char *o = x->outcome;
    if (x->proxy_error)
        return ANALYTICS_error;
    if (o == NULL)
        return ANALYTICS_pass;
    switch (o[0]) {
    case 'h': /* "hit", "hit-redis", "hit-memcached" */
        return o[3] == '\0'  ? ANALYTICS_hit_memory
               : o[4] == 'r' ? ANALYTICS_hit_redis
                             : ANALYTICS_hit_memcached;
    case 's':
        return ANALYTICS_stale;
    case 'r':
        return ANALYTICS_revalidated;
    case 'c':
        return ANALYTICS_coalesced;
    case 'm':
        return ANALYTICS_miss;
    case 'b':
        return ANALYTICS_bypass;
    default:
        return ANALYTICS_pass;
    }
}

/* Records the exchange in its route's analytics. */
static void
conn_record(struct conn *c, uint64_t now)
{
    const struct conn_exchange *x = &c->x;
    if (x->route == NULL || x->gen == NULL || x->gen->analytics == NULL)
        return;
    struct analytics_sample s = {
        .outcome = conn_outcome(x),
        .cause = (enum analytics_cause)((int)x->miss_cause - 1),
        .refresh = c->internal,
        .failed = c->internal && (x->proxy_error || x->status >= 500 || x->status == 0),
        .coalesce_timeout = x->coalesce_timeout,
        .now_us = now,
        .total_us = now - x->t_start,
        .origin_us = x->t_up_start ? (x->t_up_end ? x->t_up_end : now) - x->t_up_start : 0,
        .tier_us = x->tier_us,
        .body_bytes = x->body_bytes,
        .stale_age_us = x->stale_age > 0 ? (uint64_t)x->stale_age * 1000000 : 0,
        .host = c->req.host,
        .host_len = c->req.host != NULL ? c->req.host_len : 0,
        .target = c->req.path,
        .target_len = c->req.path_len + (c->req.query != NULL ? 1 + c->req.query_len : 0),
    };
    s.coalesce_uncacheable = x->waited_failed && s.outcome == ANALYTICS_pass;
    analytics_record(x->gen->analytics[x->route - x->gen->cfg->routes], &s);
}

static void
conn_log_access(struct conn *c, uint64_t now)
{
    char line[2048];
    char ts[40];
    char up_ms[32];
    size_t n;
    const struct http_request *r = &c->req;

    conn_record(c, now);
    if (!log_access_enabled())
        return;
    log_timestamp(ts, sizeof(ts));
    /* Method and target are client-chosen and may be long: both are cut
     * so the fixed fields after them always fit. */
    n = (size_t)snprintf(line, sizeof(line), "%s %s \"%.*s ", ts, c->peer,
                         (int)(r->method_len < 64 ? r->method_len : 64), r->method);
    if (n >= sizeof(line) - 256)
        n = sizeof(line) - 256;
    /* The target is printable ASCII (the parser guarantees it); escape
     * the two bytes that would break the quoted field. */
    for (size_t i = 0; i < r->target_len && n < sizeof(line) - 256; i++) {
        char ch = r->target[i];
        if (ch == '"' || ch == '\\')
            line[n++] = '\\';
        line[n++] = ch;
    }
    if (c->x.t_up_start != 0) {
        uint64_t end = c->x.t_up_end ? c->x.t_up_end : now;
        snprintf(up_ms, sizeof(up_ms), "%.3f", (double)(end - c->x.t_up_start) / 1000.0);
    } else {
        snprintf(up_ms, sizeof(up_ms), "-");
    }
    n += (size_t)snprintf(
        line + n, sizeof(line) - n,
        " HTTP/1.%d\" %d %" PRIu64 " route=%s total_ms=%.3f upstream_ms=%s cache=%s",
        r->head.version_minor, c->x.status, c->x.body_bytes,
        c->x.route != NULL ? c->x.route->name : "-", (double)(now - c->x.t_start) / 1000.0, up_ms,
        c->x.outcome != NULL ? c->x.outcome : "-");
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    log_access(line, n);
}

static void
conn_count_status(struct conn *c, int status)
{
    struct stats *st = &c->w->stats;
    if (status < 200)
        st->responses_1xx++;
    else if (status < 300)
        st->responses_2xx++;
    else if (status < 400)
        st->responses_3xx++;
    else if (status < 500)
        st->responses_4xx++;
    else
        st->responses_5xx++;
}

/* --- finishing a request ------------------------------------------------ */

/*
 * The response is complete on the client's side: release the upstream
 * connection, account, log, and go on with the next request (or close).
 */
void
conn_finish(struct conn *c)
{
    uint64_t now = util_now_us();
    struct conn_exchange *x = &c->x;
    if (x->up != NULL) {
        bool reusable = x->up_keep_alive && x->req_done && x->resp_done;
        upstream_release(&x->up, reusable);
    }
    if (x->t_up_start != 0 && x->t_up_end == 0)
        x->t_up_end = now;
    conn_count_status(c, x->status);
    conn_log_access(c, now);
    if (!x->req_done)
        c->close_after = true; /* the rest of the request body is unread */
    conn_exchange_reset(c);
    if (c->close_after || c->w->draining) {
        conn_close_after_flush(c);
        return;
    }
    conn_set_state(c, CONN_S_IDLE);
    conn_set_client_timeouts(c, conn_cfg(c)->client_keepalive_timeout_ms);
    if (!c->read_eof)
        bufferevent_enable(c->bev, EV_READ);
    if (!c->in_process) {
        conn_process(c);
        if (c->read_eof && (c->state == CONN_S_IDLE || c->state == CONN_S_HEAD))
            conn_close_after_flush(c); /* nothing more will come */
    }
}

/* Cuts the connection mid-response: the client sees an incomplete body,
 * the only honest signal left once a head is out. Logged and counted. */
void
conn_abort(struct conn *c)
{
    c->w->stats.upstream_aborted++;
    conn_count_status(c, c->x.status);
    conn_log_access(c, util_now_us());
    conn_close(c);
}

/* Answers the current request with an error of our own. */
void
conn_respond_error(struct conn *c, int status)
{
    struct conn_exchange *x = &c->x;
    if (x->caching && !x->resp_started && status >= 500 && conn_cache_stale_on_error(c))
        return;
    if (x->resp_started) {
        conn_abort(c);
        return;
    }
    upstream_release(&x->up, false);
    if (!x->req_done)
        c->close_after = true;
    x->status = status;
    x->resp_started = true;
    x->resp_done = true;
    x->proxy_error = status >= 500;
    http_write_error(bufferevent_get_output(c->bev), status, c->close_after,
                     c->req.method_id == HTTP_M_HEAD, conn_cache_error_lines(c));
    conn_finish(c);
}

void
conn_respond(struct conn *c, int status, const char *type, const char *body, size_t len)
{
    struct conn_exchange *x = &c->x;
    if (!x->req_done)
        c->close_after = true; /* its body is not read: the next request cannot be found */
    x->status = status;
    x->resp_started = true;
    x->resp_done = true;
    x->body_bytes = c->req.method_id == HTTP_M_HEAD ? 0 : len;
    http_write_simple(bufferevent_get_output(c->bev), status, c->close_after,
                      c->req.method_id == HTTP_M_HEAD, type, body, len,
                      "Cache-Control: no-store\r\n");
    conn_finish(c);
}

/* A request we refuse before routing (parse errors, limits): always close,
 * since we cannot trust where the next request would start. */
static void
conn_reject(struct conn *c, int status)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char line[256];
    char ts[40];
    c->w->stats.bad_requests++;
    conn_count_status(c, status);
    log_info("conn=%" PRIu64 ": %s: rejected request with %d", c->id, c->peer, status);
    if (log_access_enabled()) {
        log_timestamp(ts, sizeof(ts));
        int n = snprintf(line, sizeof(line),
                         "%s %s \"-\" %d 0 route=- total_ms=%.3f upstream_ms=- cache=-", ts,
                         c->peer, status, (double)(util_now_us() - c->head_start) / 1000.0);
        log_access(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    http_write_error(out, status, true, false, NULL);
    conn_close_after_flush(c);
}

/* --- request head --------------------------------------------------------- */

/* Parses as many request heads as are buffered and starts each in turn. */
static void
conn_process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    c->in_process = true;
    while (c->state == CONN_S_IDLE || c->state == CONN_S_HEAD) {
        const struct config *cfg = c->w->gen->cfg;
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= CONN_OUT_HIGH)
            break; /* the client is not reading its answers: wait (write cb) */
        if (c->state == CONN_S_IDLE) {
            conn_set_state(c, CONN_S_HEAD);
            conn_set_client_timeouts(c, cfg->client_header_timeout_ms);
            c->head_start = util_now_us();
        }
        size_t n = len < cfg->limits.max_header_bytes + 1 ? len : cfg->limits.max_header_bytes + 1;
        const char *buf = (const char *)evbuffer_pullup(in, (ssize_t)n);
        ssize_t r = http_parse_request(buf, n, &cfg->limits, &c->req);
        if (r == HTTP_PARSE_AGAIN) {
            /* The read timeout restarts with every read; this bounds the
             * whole head, so a client dripping bytes cannot hold on. */
            if (util_now_us() - c->head_start > (uint64_t)cfg->client_header_timeout_ms * 1000)
                conn_reject(c, 408);
            break;
        }
        if (r < 0) {
            conn_reject(c, http_parse_status(r));
            break;
        }
        if ((size_t)r > c->head_cap) {
            char *h = realloc(c->head, (size_t)r);
            if (h == NULL) {
                conn_reject(c, 503);
                break;
            }
            c->head = h;
            c->head_cap = (size_t)r;
        }
        evbuffer_remove(in, c->head, (size_t)r);
        c->head_len = (size_t)r;
        /* Parse the private copy so every field points into c->head. */
        ssize_t r2 = http_parse_request(c->head, (size_t)r, &cfg->limits, &c->req);
        UTIL_ASSERT(r2 == r);
        (void)r2;
        conn_set_state(c, CONN_S_PROXY);
        conn_upstream_begin(c);
    }
    c->in_process = false;
}

/* --- request body ------------------------------------------------------ */

/*
 * Upstream timeouts by phase: connecting (connect_timeout on write),
 * sending the request (idle_timeout on write; a slow client upload is not
 * the server's fault, so no read timeout), waiting for the first byte
 * (first_byte_timeout), receiving the body (idle_timeout).
 */
static void
conn_upstream_timeouts(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    const struct config_upstream *ucfg = upstream_pool_config(x->pool);
    struct timeval wtv =
        conn_tv(x->up->connected ? ucfg->idle_timeout_ms : ucfg->connect_timeout_ms);
    struct timeval rtv;
    const struct timeval *r = NULL;
    if (x->resp_started) {
        rtv = conn_tv(ucfg->idle_timeout_ms);
        r = &rtv;
    } else if (x->req_done) {
        rtv = conn_tv(ucfg->first_byte_timeout_ms);
        r = &rtv;
    }
    bufferevent_set_timeouts(x->up->bev, r, &wtv);
}

/*
 * Moves request body bytes from the client to the upstream until the body
 * ends, the client input is empty, or the upstream output is full.
 * Returns -1 when the body is malformed (the exchange was ended).
 */
static int
conn_pump_request(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    ssize_t n = body_relay_move(&x->req_body, bufferevent_get_input(c->bev),
                                bufferevent_get_output(x->up->bev), CONN_OUT_HIGH);
    if (n < 0) {
        log_info("conn=%" PRIu64 ": %s: malformed chunked request body", c->id, c->peer);
        c->w->stats.bad_requests++;
        conn_respond_error(c, 400);
        return -1;
    }
    c->w->stats.bytes_from_clients += (uint64_t)n;
    x->req_done = x->req_body.done;
    if (!x->req_done && c->read_eof && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) {
        /* Half-closed before the end of its body: it can never complete. */
        c->w->stats.client_aborted++;
        log_info("conn=%" PRIu64 ": %s: client closed before the end of its request body", c->id,
                 c->peer);
        x->status = x->resp_started ? x->status : 499;
        conn_log_access(c, util_now_us());
        conn_close(c);
        return -1;
    }
    if (x->req_done) {
        /* Pipelined requests wait in the input; a slow upstream must not
         * trip the client's read timeout meanwhile. */
        struct timeval wtv = conn_tv(conn_cfg(c)->client_idle_timeout_ms);
        bufferevent_set_timeouts(c->bev, NULL, &wtv);
        conn_upstream_timeouts(c);
    }
    return 0;
}

/* --- upstream ---------------------------------------------------------- */

/* A body already moved upstream cannot be replayed, so only requests
 * without one are ever sent twice. */
static bool
conn_body_empty(const struct conn *c)
{
    return c->req.head.framing == HTTP_FRAMING_NONE ||
           (c->req.head.framing == HTTP_FRAMING_LENGTH && c->req.head.content_length == 0);
}

/* A reused connection found closed: resend once if idempotent. */
static bool
conn_retryable(const struct conn *c)
{
    enum http_method m = c->req.method_id;
    bool idempotent = m == HTTP_M_GET || m == HTTP_M_HEAD || m == HTTP_M_PUT ||
                      m == HTTP_M_DELETE || m == HTTP_M_OPTIONS || m == HTTP_M_TRACE;
    return idempotent && conn_body_empty(c) && c->x.attempts < 2;
}

static void
conn_upstream_attach(struct conn *c, struct upstream_conn *up)
{
    c->x.up = up;
    bufferevent_setcb(up->bev, conn_up_on_read, conn_up_on_write, conn_up_on_event, c);
    bufferevent_setwatermark(up->bev, EV_READ, 0, CONN_IN_HIGH);
    bufferevent_setwatermark(up->bev, EV_WRITE, CONN_OUT_LOW, 0);
    bufferevent_set_max_single_read(up->bev, CONN_IO_MAX);
    bufferevent_set_max_single_write(up->bev, CONN_IO_MAX);
    conn_upstream_timeouts(c);
    bufferevent_enable(up->bev, EV_READ | EV_WRITE);
}

/* Sends the request to a server of the route's pool (again, on a retry). */
void
conn_upstream_send(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    uint64_t now = util_now_us();
    struct upstream_conn *up;

    x->server = upstream_pick(x->pool, now / 1000);
    if (x->server < 0) {
        c->w->stats.upstream_unavailable++;
        log_warn("conn=%" PRIu64 ": route %s: every server of upstream %s is cooling down", c->id,
                 x->route->name, upstream_pool_config(x->pool)->name);
        conn_respond_error(c, 503);
        return;
    }
    x->attempts++;
    /* A retry always uses a fresh connection: another idle one may be
     * just as stale as the one that failed. */
    up = x->attempts == 1 ? upstream_take_idle(x->pool, (unsigned)x->server) : NULL;
    if (up != NULL) {
        up->connected = true;
        c->w->stats.upstream_reuses++;
    } else {
        up = upstream_connect(x->pool, (unsigned)x->server);
        if (up == NULL) {
            c->w->stats.upstream_connect_errors++;
            upstream_report(x->pool, (unsigned)x->server, false, now / 1000);
            conn_respond_error(c, 502);
            return;
        }
    }
    conn_upstream_attach(c, up);
    if (x->t_up_start == 0)
        x->t_up_start = now;
    x->got_byte = false;

    const char *host = c->req.host;
    size_t host_len = c->req.host_len;
    if (x->route->host_rewrite != NULL) {
        host = x->route->host_rewrite;
        host_len = strlen(host);
    } else if (host == NULL) {
        /* HTTP/1.0 without Host: HTTP/1.1 upstream requests need one. */
        host = upstream_server_name(x->pool, (unsigned)x->server);
        host_len = strlen(host);
    }
    struct http_write_fwd fwd = {
        .client_ip = c->peer_ip,
        .scheme = conn_scheme(c),
        .host = host,
        .host_len = host_len,
        .framing = c->req.head.framing,
        .content_length = c->req.head.content_length,
        .drop_conditionals = x->fill != NULL,
        .extra = x->caching ? conn_cache_request_lines(c) : NULL,
    };
    if (x->route->cache.enabled) {
        fwd.strip = x->route->cache.strip_headers;
        fwd.nstrip = x->route->cache.nstrip_headers;
    }
    http_write_request(bufferevent_get_output(up->bev), &c->req, &fwd);
    c->w->stats.upstream_requests++;
    conn_pump_request(c);
}

static void
conn_upstream_begin(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    struct worker *w = c->w;

    memset(x, 0, sizeof(*x));
    x->t_start = util_now_us();
    x->gen = worker_gen_ref(w);
    x->resp = &c->resp;
    w->stats.requests++;
    if (c->req.head.conn_close || w->draining)
        c->close_after = true;

    body_relay_init(&x->req_body, c->req.head.framing, c->req.head.content_length,
                    c->req.head.framing == HTTP_FRAMING_CHUNKED, x->gen->cfg->max_body_chunk_line);
    x->req_done = x->req_body.done;
    if (x->req_done) {
        /* Nothing more to read for this request: the head timeout must
         * not cut a long response (a slow hit, a long wait on a fill). */
        struct timeval wtv = conn_tv(x->gen->cfg->client_idle_timeout_ms);
        bufferevent_set_timeouts(c->bev, NULL, &wtv);
    }

    if (c->req.method_id == HTTP_M_PURGE) {
        conn_cache_purge(c); /* the proxy's own method: never forwarded */
        return;
    }
    x->route = route_match(x->gen->cfg, c->req.host, c->req.host_len, c->req.path, c->req.path_len,
                           c->req.method_id);
    if (x->route == NULL) {
        w->stats.no_route++;
        conn_respond_error(c, 404);
        return;
    }
    /* Answer Expect: 100-continue ourselves; the upstream never sees it. */
    if (c->req.expect_continue && !x->req_done && c->req.head.version_minor == 1) {
        http_write_continue(bufferevent_get_output(c->bev));
        w->stats.responses_1xx++;
    }
    x->pool = x->gen->pools[x->route->upstream - x->gen->cfg->upstreams];
    if (!x->req_done)
        conn_set_client_timeouts(c, x->gen->cfg->client_idle_timeout_ms);
    if (conn_cache_begin(c))
        return;
    conn_upstream_send(c);
}

/* Decides how the body goes to the client and writes the response head. */
static void
conn_start_response(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    const struct http_response *resp = x->resp;
    bool client_10 = c->req.head.version_minor == 0;
    bool keep_alive_10 = false;

    enum http_framing in = resp->head.framing;
    enum http_framing out = in;
    if (in == HTTP_FRAMING_CHUNKED || in == HTTP_FRAMING_UNTIL_CLOSE)
        /* HTTP/1.0 has no chunked coding: the end is the close. */
        out = client_10 ? HTTP_FRAMING_UNTIL_CLOSE : HTTP_FRAMING_CHUNKED;
    body_relay_init(&x->resp_body, in, resp->head.content_length, out == HTTP_FRAMING_CHUNKED,
                    conn_cfg(c)->max_body_chunk_line);
    x->up_keep_alive = !resp->head.conn_close && in != HTTP_FRAMING_UNTIL_CLOSE;
    if (x->caching) {
        conn_cache_on_response_head(c);
        if (conn_cache_detach(c))
            return;
    }
    if (out == HTTP_FRAMING_UNTIL_CLOSE)
        c->close_after = true;
    if (client_10) {
        if (c->req.head.conn_keep_alive && !c->close_after)
            keep_alive_10 = true;
        else
            c->close_after = true;
    }
    x->status = resp->status;
    http_write_response(bufferevent_get_output(c->bev), resp, out, resp->head.content_length,
                        c->close_after, keep_alive_10, conn_cache_response_lines(c));
    x->resp_started = true;
    x->resp_done = x->resp_body.done;
}

/*
 * Moves response body bytes to the client until the body ends, the
 * upstream input is empty or the client output is full.
 * Returns -1 when the upstream body is malformed (the connection is cut).
 */
static int
conn_pump_response(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    struct evbuffer *in = bufferevent_get_input(x->up->bev);
    ssize_t n;
    if (x->detached) {
        /* Only filling the object: the tee copies every byte, the relay's
         * own output is dropped, and nothing waits for the client. */
        do {
            n = body_relay_move(&x->resp_body, in, c->sink, CONN_OUT_HIGH);
            evbuffer_drain(c->sink, evbuffer_get_length(c->sink));
        } while (n > 0 && !x->resp_body.done);
        if (n >= 0) {
            x->up_done = x->resp_body.done;
            return 0;
        }
    } else {
        n = body_relay_move(&x->resp_body, in, bufferevent_get_output(c->bev), CONN_OUT_HIGH);
    }
    if (n < 0) {
        log_warn("conn=%" PRIu64 ": upstream %s sent a malformed chunked body", c->id,
                 upstream_server_name(x->pool, (unsigned)x->server));
        c->w->stats.upstream_bad_responses++;
        conn_respond_error(c, 502);
        return -1;
    }
    x->body_bytes += (uint64_t)n;
    c->w->stats.bytes_to_clients += (uint64_t)n;
    x->resp_done = x->resp_body.done;
    return 0;
}

/* True when the upstream response has been read whole. */
static bool
conn_upstream_complete(const struct conn *c)
{
    return c->x.detached ? c->x.up_done : c->x.resp_done;
}

/* The response is complete from the upstream's side. */
static void
conn_response_done(struct conn *c)
{
    struct conn_exchange *x = &c->x;
    x->t_up_end = util_now_us();
    if (x->caching)
        conn_cache_on_response_done(c);
    if (!x->req_done) {
        /* The upstream answered before taking the whole body: neither
         * connection can be reused safely. */
        x->up_keep_alive = false;
        c->close_after = true;
    }
    if (x->detached) {
        /* Only the upstream side ends here; the delivery from the object
         * finishes the exchange when the client has it all. */
        struct evbuffer *in = bufferevent_get_input(x->up->bev);
        upstream_release(&x->up, x->up_keep_alive && x->req_done && evbuffer_get_length(in) == 0);
        return;
    }
    conn_finish(c);
}

static void
conn_up_on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct conn_exchange *x = &c->x;
    struct evbuffer *in = bufferevent_get_input(bev);
    const struct config *cfg = conn_cfg(c);

    x->got_byte = true;
    while (!x->resp_started) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        /* Client limits protect us from clients; an upstream we chose
         * may send more fields (many Set-Cookie lines), up to the cap. */
        struct http_limits lim = {
            .max_request_line = cfg->limits.max_request_line,
            .max_header_bytes = cfg->limits.max_header_bytes > CONN_RESP_HEAD_MAX
                                    ? cfg->limits.max_header_bytes
                                    : CONN_RESP_HEAD_MAX,
            .max_headers = HTTP_HEADERS_CAP,
        };
        size_t n = len < lim.max_header_bytes + 1 ? len : lim.max_header_bytes + 1;
        const char *buf = (const char *)evbuffer_pullup(in, (ssize_t)n);
        ssize_t r = http_parse_response(buf, n, &lim, c->req.method_id == HTTP_M_HEAD, &c->resp);
        if (r == HTTP_PARSE_AGAIN)
            return;
        if (r < 0 || c->resp.status == 101) {
            log_warn("conn=%" PRIu64 ": upstream %s sent an invalid response (%s)", c->id,
                     upstream_server_name(x->pool, (unsigned)x->server),
                     r < 0 ? "malformed head" : "unexpected 101");
            c->w->stats.upstream_bad_responses++;
            upstream_report(x->pool, (unsigned)x->server, false, util_now_us() / 1000);
            conn_respond_error(c, 502);
            return;
        }
        if (c->resp.status < 200) {
            evbuffer_drain(in, (size_t)r); /* interim responses are not relayed */
            continue;
        }
        upstream_report(x->pool, (unsigned)x->server, true, util_now_us() / 1000);
        if (x->caching && conn_cache_intercept(c, (size_t)r))
            return; /* the cache answered (a 304 revalidation, stale-if-error) */
        conn_start_response(c);
        conn_upstream_timeouts(c);
        evbuffer_drain(in, (size_t)r);
    }
    if (conn_pump_response(c) < 0)
        return;
    if (conn_upstream_complete(c))
        conn_response_done(c);
}

static void
conn_up_on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (!c->x.req_done)
        conn_pump_request(c);
}

static void
conn_up_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct conn_exchange *x = &c->x;
    const struct config_upstream *ucfg = upstream_pool_config(x->pool);
    uint64_t now_ms = util_now_us() / 1000;
    const char *server = upstream_server_name(x->pool, (unsigned)x->server);

    if (what & BEV_EVENT_CONNECTED) {
        x->up->connected = true;
        conn_upstream_timeouts(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && x->resp_started) {
        /* The server closed; what it sent before may still be buffered
         * behind a slow client. */
        x->up_keep_alive = false;
        if (conn_pump_response(c) < 0)
            return;
        if (!conn_upstream_complete(c) && evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
            bufferevent_disable(bev, EV_READ); /* conn_on_write sends the rest */
            x->up_eof = true;
            return;
        }
        if (!conn_upstream_complete(c) && x->resp_body.in == HTTP_FRAMING_UNTIL_CLOSE) {
            body_relay_finish(&x->resp_body, bufferevent_get_output(c->bev));
            x->resp_done = true;
        }
        if (conn_upstream_complete(c)) {
            conn_response_done(c);
            return;
        }
        /* Content-Length or chunked body cut short: fall through. */
    }
    if (!x->got_byte && x->up->reused && conn_retryable(c) &&
        (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) {
        /* The server closed a kept-alive connection before it saw our
         * request: not the server's fault, try a fresh connection. */
        log_debug("conn=%" PRIu64 ": reused connection to %s was closed, retrying", c->id, server);
        c->w->stats.upstream_retries++;
        upstream_release(&x->up, false);
        conn_upstream_send(c);
        return;
    }
    if (x->resp_started) {
        log_warn("conn=%" PRIu64 ": upstream %s failed mid-response (%s)", c->id, server,
                 (what & BEV_EVENT_TIMEOUT) ? "timeout" : "connection lost");
        upstream_report(x->pool, (unsigned)x->server, false, now_ms);
        conn_abort(c);
        return;
    }
    upstream_report(x->pool, (unsigned)x->server, false, now_ms);
    if (!x->up->connected) {
        c->w->stats.upstream_connect_errors++;
        log_warn("conn=%" PRIu64 ": connect to %s failed (%s)", c->id, server,
                 (what & BEV_EVENT_TIMEOUT) ? "timeout"
                                            : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        /* The server saw nothing: another server may take the request,
         * unless body bytes already left the client's buffer. */
        if (conn_body_empty(c) && x->attempts < ucfg->nservers) {
            c->w->stats.upstream_retries++;
            upstream_release(&x->up, false);
            conn_upstream_send(c);
            return;
        }
        conn_respond_error(c, (what & BEV_EVENT_TIMEOUT) ? 504 : 502);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        c->w->stats.upstream_timeouts++;
        log_warn("conn=%" PRIu64 ": upstream %s timed out", c->id, server);
        conn_respond_error(c, 504);
        return;
    }
    log_warn("conn=%" PRIu64 ": upstream %s closed the connection before responding", c->id,
             server);
    conn_respond_error(c, 502);
}

/* --- client callbacks ------------------------------------------------- */

static void
conn_on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    switch (c->state) {
    case CONN_S_IDLE:
    case CONN_S_HEAD:
        conn_process(c);
        break;
    case CONN_S_PROXY:
        if (!c->x.req_done && c->x.up != NULL)
            conn_pump_request(c);
        break; /* else: a pipelined request waits its turn */
    case CONN_S_CLOSING:
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        break;
    case CONN_S_DEAD:
        break;
    }
}

static void
conn_on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct conn_exchange *x = &c->x;
    switch (c->state) {
    case CONN_S_CLOSING:
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_close(c);
        break;
    case CONN_S_PROXY:
        if (x->delivering) {
            conn_cache_on_write(c);
            break;
        }
        if (x->up == NULL || !x->resp_started || x->resp_done)
            break;
        if (conn_pump_response(c) < 0)
            return;
        if (x->resp_done) {
            conn_response_done(c);
        } else if (x->up_eof && evbuffer_get_length(bufferevent_get_input(x->up->bev)) == 0) {
            /* EOF was seen earlier and everything buffered is out now. */
            if (x->resp_body.in != HTTP_FRAMING_UNTIL_CLOSE) {
                log_warn("conn=%" PRIu64 ": upstream %s closed before the end of the body", c->id,
                         upstream_server_name(x->pool, (unsigned)x->server));
                conn_abort(c);
                return;
            }
            body_relay_finish(&x->resp_body, bufferevent_get_output(bev));
            x->resp_done = true;
            conn_response_done(c);
        }
        break;
    case CONN_S_IDLE:
    case CONN_S_HEAD:
        conn_process(c);
        break;
    case CONN_S_DEAD:
        break;
    }
}

/*
 * The end of a TLS handshake: done, the connection serves requests under
 * the usual client timeouts; failed (an error, plain HTTP on the TLS
 * port, EOF, handshake_timeout), only this connection is closed.
 */
static void
conn_on_handshake(struct conn *c, short what)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

    if (what & BEV_EVENT_CONNECTED) {
        c->handshaking = false;
        c->w->stats.tls_handshakes++;
        if (ssl != NULL && SSL_session_reused(ssl))
            c->w->stats.tls_resumed++;
        conn_set_client_timeouts(c, conn_cfg(c)->client_header_timeout_ms);
        return;
    }
    c->w->stats.tls_handshake_errors++;
    if (what & BEV_EVENT_TIMEOUT) {
        log_debug("conn=%" PRIu64 ": %s: TLS handshake timed out", c->id, c->peer);
    } else {
        unsigned long e = bufferevent_get_openssl_error(c->bev);
        char reason[256] = "connection closed";
        if (e != 0)
            ERR_error_string_n(e, reason, sizeof(reason));
        log_debug("conn=%" PRIu64 ": %s: TLS handshake failed: %s", c->id, c->peer, reason);
    }
    while (bufferevent_get_openssl_error(c->bev) != 0)
        ;
    ERR_clear_error();
    conn_close(c);
}

static void
conn_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct conn_exchange *x = &c->x;

    if (c->handshaking) {
        conn_on_handshake(c, what);
        return;
    }
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) && !(what & BEV_EVENT_ERROR)) {
        /* The client half-closed (it sends no more): what it sent is still
         * answered, in order, then the connection closes. */
        c->read_eof = true;
        bufferevent_disable(bev, EV_READ);
        if (c->state == CONN_S_PROXY && !x->req_done && x->up != NULL) {
            conn_pump_request(c); /* closes the connection if the body cannot complete */
            return;
        } else if (c->state == CONN_S_PROXY) {
            return; /* conn_finish answers what is buffered, then closes */
        } else if (c->state == CONN_S_IDLE || c->state == CONN_S_HEAD) {
            conn_process(c);
            if (c->state == CONN_S_IDLE || c->state == CONN_S_HEAD)
                conn_close_after_flush(c); /* a partial head can never complete */
            return;
        } else {
            return; /* CLOSING: the flush goes on */
        }
    }
    if (c->state == CONN_S_PROXY) {
        c->w->stats.client_aborted++;
        log_info("conn=%" PRIu64 ": %s: client went away during a request (%s)", c->id, c->peer,
                 (what & BEV_EVENT_TIMEOUT) ? "timeout" : "closed");
        /* 499 (nginx's convention) marks the log line only: no response
         * was sent, so no responses_* counter moves. */
        if (!x->resp_started)
            x->status = 499;
        else
            conn_count_status(c, x->status);
        conn_log_access(c, util_now_us());
    } else if (c->state == CONN_S_HEAD && (what & BEV_EVENT_TIMEOUT)) {
        log_info("conn=%" PRIu64 ": %s: timed out reading a request head", c->id, c->peer);
    }
    conn_close(c);
}
