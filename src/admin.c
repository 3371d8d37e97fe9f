/*
 * admin: see admin.h.
 */
#include "admin.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "config.h"
#include "log.h"
#include "stats.h"

struct admin {
    struct evhttp *http;
};

static void
admin_reply(struct evhttp_request *req, int code, const char *type, struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Not Found", body);
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
    if (plen == 8 && strncmp(uri, "/healthz", 8) == 0) {
        evbuffer_add(body, "ok\n", 3);
        admin_reply(req, 200, "text/plain", body);
    } else if (plen == 6 && strncmp(uri, "/stats", 6) == 0) {
        stats_sum(&st);
        stats_format_json(body, &st);
        admin_reply(req, 200, "application/json", body);
    } else if (plen == 8 && strncmp(uri, "/metrics", 8) == 0) {
        stats_sum(&st);
        stats_format_prometheus(body, &st);
        admin_reply(req, 200, "text/plain; version=0.0.4", body);
    } else {
        evbuffer_add_printf(body, "not found; try /healthz, /stats, /metrics\n");
        admin_reply(req, 404, "text/plain", body);
    }
    evbuffer_free(body);
}

struct admin *
admin_start(struct event_base *base, const struct config_addr *addr)
{
    struct admin *a = calloc(1, sizeof(*a));
    int fd = -1, one = 1;
    if (a == NULL)
        abort();
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
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(a->http, 10);
    return a;
fail:
    log_errno("admin: cannot listen on %s", addr->text);
    if (fd >= 0)
        close(fd);
    if (a->http != NULL)
        evhttp_free(a->http);
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
    free(a);
    *ap = NULL;
}
