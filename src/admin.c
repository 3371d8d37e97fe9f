/*
 * admin: see admin.h.
 */
#include "admin.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "analytics.h"
#include "ban.h"
#include "config.h"
#include "dashboard.h"
#include "http_parser.h"
#include "http_write.h"
#include "inval.h"
#include "log.h"
#include "stats.h"
#include "tls.h"
#include "util.h"

struct admin {
    struct evhttp *http;
    struct config *cfg; /* one reference: its tls.ctx serves admin.tls */
    struct inval *inval;
    struct analytics *analytics;
};

static void
admin_reply(struct evhttp_request *req, int code, const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* evhttp would send the body after a HEAD's head: the length a
         * GET would get, and no body. */
        char len[24];
        snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
        evhttp_add_header(h, "Content-Length", len);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(req, code, http_write_reason(code), body);
}

/* The page's script and style are inline and it fetches only /stats from
 * here: the policy allows that and nothing else (no other origin to load
 * from or send to, no framing, no forms). The page writes data with
 * textContent only, never as markup. */
#define ADMIN_DASHBOARD_CSP                                                                        \
    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "                  \
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "                     \
    "frame-ancestors 'none'"

/* GET/HEAD /dashboard: the page, by reference (static storage, no copy). */
static void
admin_dashboard(struct evhttp_request *req, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Security-Policy", ADMIN_DASHBOARD_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evbuffer_add_reference(body, dashboard_html, dashboard_html_len, NULL, NULL);
    admin_reply(req, 200, "text/html; charset=utf-8", body);
}

/* True when s[0..n) has no byte a request target or Host may not hold. */
static bool
admin_clean(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* url=http://host[:port]/path[?query]: the URL ban for it. */
static struct ban *
admin_url_ban(struct admin *a, const char *url, char *err, size_t errlen)
{
    struct http_request r;
    size_t len = strlen(url);
    const char *scheme = "http";
    memset(&r, 0, sizeof(r));
    if (len > 7 && strncasecmp(url, "http://", 7) == 0) {
        url += 7;
    } else if (len > 8 && strncasecmp(url, "https://", 8) == 0) {
        url += 8;
        scheme = "https";
    } else {
        snprintf(err, errlen, "url must be http[s]://HOST[:PORT]/PATH[?QUERY]");
        return NULL;
    }
    const char *slash = strchr(url, '/');
    if (slash == NULL || slash == url || !admin_clean(url, strlen(url))) {
        snprintf(err, errlen, "url must be http[s]://HOST[:PORT]/PATH[?QUERY]");
        return NULL;
    }
    const char *q = strchr(slash, '?');
    const char *frag = strchr(slash, '#');
    size_t end = frag != NULL ? (size_t)(frag - slash) : strlen(slash);
    r.host = url;
    r.host_len = (size_t)(slash - url);
    r.path = slash;
    r.path_len = q != NULL && (size_t)(q - slash) < end ? (size_t)(q - slash) : end;
    if (q != NULL && (size_t)(q - slash) < end) {
        r.query = q + 1;
        r.query_len = end - r.path_len - 1;
    }
    r.method_id = HTTP_M_GET;
    return inval_url_ban(inval_config(a->inval), &r, scheme, util_wall_us(), err, errlen);
}

/* POST /invalidate/KIND?...: applies one invalidation; replies with JSON. */
static void
admin_invalidate(struct admin *a, struct evhttp_request *req, const char *kind, size_t kind_len,
                 struct evbuffer *body)
{
    struct evkeyvalq args;
    char err[256] = "";
    const char *uri = evhttp_request_get_uri(req);
    const char *qs = strchr(uri, '?');
    struct ban *b = NULL;
    int64_t now = util_wall_us();

    TAILQ_INIT(&args);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        evbuffer_add_printf(body, "{\"error\":\"use POST\"}\n");
        admin_reply(req, 405, "application/json", body);
        return;
    }
    if (qs != NULL && evhttp_parse_query_str(qs + 1, &args) < 0) {
        evbuffer_add_printf(body, "{\"error\":\"malformed query string\"}\n");
        admin_reply(req, 400, "application/json", body);
        return;
    }
    const char *host = evhttp_find_header(&args, "host");
    struct config *cfg = inval_config(a->inval);
#define ADMIN_KIND(s) (kind_len == strlen(s) && strncmp(kind, s, kind_len) == 0)
    const char *arg = ADMIN_KIND("url")      ? evhttp_find_header(&args, "url")
                      : ADMIN_KIND("prefix") ? evhttp_find_header(&args, "prefix")
                      : ADMIN_KIND("regex")  ? evhttp_find_header(&args, "regex")
                      : ADMIN_KIND("tag")    ? evhttp_find_header(&args, "tag")
                      : ADMIN_KIND("route")  ? evhttp_find_header(&args, "route")
                                             : NULL;
    if (!ADMIN_KIND("url") && !ADMIN_KIND("prefix") && !ADMIN_KIND("regex") && !ADMIN_KIND("tag") &&
        !ADMIN_KIND("route")) {
        evbuffer_add_printf(body, "{\"error\":\"unknown invalidation; use url, prefix, regex, "
                                  "tag or route\"}\n");
        admin_reply(req, 404, "application/json", body);
        evhttp_clear_headers(&args);
        return;
    }
    if (arg == NULL || arg[0] == '\0')
        snprintf(err, sizeof(err), "missing argument %.*s=", (int)kind_len, kind);
    else if (ADMIN_KIND("url"))
        b = admin_url_ban(a, arg, err, sizeof(err));
    else if (ADMIN_KIND("prefix") && arg[0] != '/')
        snprintf(err, sizeof(err), "prefix must start with /");
    else if (host != NULL && !admin_clean(host, strlen(host)))
        snprintf(err, sizeof(err), "bad host");
    else if (ADMIN_KIND("prefix"))
        b = ban_new(BAN_PREFIX, arg, strlen(arg), host, NULL, now, err, sizeof(err));
    else if (ADMIN_KIND("regex"))
        b = ban_new(BAN_REGEX, arg, strlen(arg), host, NULL, now, err, sizeof(err));
    else if (ADMIN_KIND("tag"))
        b = ban_new(BAN_TAG, arg, strlen(arg), NULL, NULL, now, err, sizeof(err));
    else
        b = ban_new(BAN_ROUTE, arg, strlen(arg), NULL, cfg, now, err, sizeof(err));
#undef ADMIN_KIND
    evhttp_clear_headers(&args);
    if (b == NULL) {
        evbuffer_add_printf(body, "{\"error\":\"");
        for (const char *p = err; *p != '\0'; p++) /* JSON-escape the message */
            if (*p == '"' || *p == '\\')
                evbuffer_add_printf(body, "\\%c", *p);
            else if ((unsigned char)*p < 0x20)
                evbuffer_add_printf(body, "\\u%04x", (unsigned)*p);
            else
                evbuffer_add(body, p, 1);
        evbuffer_add_printf(body, "\"}\n");
        admin_reply(req, 400, "application/json", body);
        return;
    }
    size_t removed = inval_apply(a->inval, b);
    log_info("admin: invalidation %s: %zu memory entries removed", ban_kind_name(ban_kind_of(b)),
             removed);
    evbuffer_add_printf(body, "{\"kind\":\"%s\",\"removed\":%zu}\n", ban_kind_name(ban_kind_of(b)),
                        removed);
    ban_unref(&b);
    admin_reply(req, 200, "application/json", body);
}

static void
admin_on_request(struct evhttp_request *req, void *arg)
{
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *body = evbuffer_new();
    struct stats st;
    size_t plen = strcspn(uri, "?");

    if (body == NULL) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    bool invalidate = plen > 12 && strncmp(uri, "/invalidate/", 12) == 0;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!invalidate && cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        evbuffer_add_printf(body, "405 Method Not Allowed\n");
        admin_reply(req, 405, "text/plain", body);
    } else if (plen == 8 && strncmp(uri, "/healthz", 8) == 0) {
        evbuffer_add(body, "ok\n", 3);
        admin_reply(req, 200, "text/plain", body);
    } else if (plen == 6 && strncmp(uri, "/stats", 6) == 0) {
        struct admin *a = arg;
        stats_sum(&st);
        stats_format_json(body, &st);
        if (a->analytics != NULL) {
            /* The counters' object, then "analytics" inside it. */
            size_t n = evbuffer_get_length(body);
            evbuffer_drain(body, 0);
            struct evbuffer *tmp = evbuffer_new();
            if (tmp != NULL && n >= 2) {
                evbuffer_remove_buffer(body, tmp, n - 2); /* all but "}\n" */
                evbuffer_drain(body, evbuffer_get_length(body));
                evbuffer_add_buffer(body, tmp);
                evbuffer_add(body, ",\"analytics\":", 13);
                analytics_format_json(a->analytics, body);
                evbuffer_add(body, "}\n", 2);
            }
            if (tmp != NULL)
                evbuffer_free(tmp);
        }
        admin_reply(req, 200, "application/json", body);
    } else if (plen == 8 && strncmp(uri, "/metrics", 8) == 0) {
        struct admin *a = arg;
        stats_sum(&st);
        stats_format_prometheus(body, &st);
        if (a->analytics != NULL)
            analytics_format_prometheus(a->analytics, body);
        admin_reply(req, 200, "text/plain; version=0.0.4", body);
    } else if (plen == 10 && strncmp(uri, "/dashboard", 10) == 0) {
        admin_dashboard(req, body);
    } else if (invalidate) {
        admin_invalidate(arg, req, uri + 12, plen - 12, body);
    } else {
        evbuffer_add_printf(
            body, "not found; try /healthz, /stats, /metrics, /dashboard, /invalidate/\n");
        admin_reply(req, 404, "text/plain", body);
    }
    evbuffer_free(body);
}

/* admin.tls: each accepted connection is a TLS bufferevent, handshaking
 * with the current config's certificates. */
static struct bufferevent *
admin_on_new_bev(struct event_base *base, void *arg)
{
    struct admin *a = arg;
    SSL *ssl = a->cfg->tls.ctx != NULL ? tls_ctx_ssl_new(a->cfg->tls.ctx) : NULL;
    if (ssl == NULL)
        return NULL; /* evhttp drops the connection */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void
admin_set_config(struct admin *a, struct config *cfg)
{
    config_unref(&a->cfg);
    a->cfg = config_ref(cfg);
}

struct admin *
admin_start(struct event_base *base, struct config *cfg, struct inval *iv, struct analytics *an)
{
    struct admin *a = calloc(1, sizeof(*a));
    const struct config_addr *addr = &cfg->admin;
    int fd = -1, one = 1;
    if (a == NULL)
        abort();
    a->inval = iv;
    a->analytics = an;
    a->cfg = config_ref(cfg);
    a->http = evhttp_new(base);
    if (a->http == NULL)
        goto fail;
    fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, 128) < 0)
        goto fail;
    if (evhttp_accept_socket(a->http, fd) < 0)
        goto fail;
    evhttp_set_gencb(a->http, admin_on_request, a);
    /* Every method reaches the handler, which answers 405 itself (evhttp
     * would say 501 to a method it was told to refuse). */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_timeout(a->http, 10);
    if (cfg->admin_tls)
        evhttp_set_bevcb(a->http, admin_on_new_bev, a);
    return a;
fail:
    log_errno("admin: cannot listen on %s", addr->text);
    if (fd >= 0)
        close(fd);
    if (a->http != NULL)
        evhttp_free(a->http);
    config_unref(&a->cfg);
    free(a);
    return NULL;
}

void
admin_free(struct admin **ap)
{
    struct admin *a = *ap;
    if (a == NULL)
        return;
    evhttp_free(a->http);
    config_unref(&a->cfg);
    free(a);
    *ap = NULL;
}
