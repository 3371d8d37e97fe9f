/*
 * http_write: see http_write.h. Every function appends to an evbuffer and
 * cannot fail short of an allocation failure inside libevent, which the
 * caller notices as a dead connection.
 */
#include "http_write.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#define VIA_VALUE "1.1 tailcache"

static __thread char http_write_date_buf[40];
static __thread time_t http_write_date_sec = -1;

const char *
http_write_date(void)
{
    time_t now = time(NULL);
    if (now != http_write_date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(http_write_date_buf, sizeof(http_write_date_buf), "%a, %d %b %Y %H:%M:%S GMT",
                 &tm);
        http_write_date_sec = now;
    }
    return http_write_date_buf;
}

const char *
http_write_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static bool
http_write_name_is(const struct http_header *hd, const char *lit)
{
    return http_str_ieq(hd->name, hd->name_len, lit);
}

bool
http_write_is_hop_by_hop(const struct http_head *h, const struct http_header *hd)
{
    static const char *const fixed[] = {"connection", "keep-alive",        "te",
                                        "trailer",    "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (http_write_name_is(hd, fixed[i]))
            return true;
    if (hd->name_len > 6 && strncasecmp(hd->name, "proxy-", 6) == 0)
        return true;
    return http_head_connection_names(h, hd->name, hd->name_len);
}

static bool
http_write_stripped(const struct http_write_fwd *fwd, const struct http_header *hd)
{
    for (size_t i = 0; i < fwd->nstrip; i++)
        if (http_str_ieq(hd->name, hd->name_len, fwd->strip[i]))
            return true;
    if (!fwd->drop_conditionals)
        return false;
    return http_write_name_is(hd, "if-none-match") || http_write_name_is(hd, "if-modified-since") ||
           http_write_name_is(hd, "if-match") || http_write_name_is(hd, "if-unmodified-since") ||
           http_write_name_is(hd, "if-range") || http_write_name_is(hd, "range");
}

static void
http_write_header(struct evbuffer *out, const struct http_header *hd)
{
    evbuffer_add(out, hd->name, hd->name_len);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, hd->value, hd->value_len);
    evbuffer_add(out, "\r\n", 2);
}

static void
http_write_framing(struct evbuffer *out, enum http_framing framing, uint64_t content_length)
{
    if (framing == HTTP_FRAMING_LENGTH)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", (unsigned long long)content_length);
    else if (framing == HTTP_FRAMING_CHUNKED)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
}

void
http_write_request(struct evbuffer *out, const struct http_request *req,
                   const struct http_write_fwd *fwd)
{
    const struct http_head *h = &req->head;
    const struct http_header *xff = NULL;

    evbuffer_add(out, req->method, req->method_len);
    evbuffer_add(out, " ", 1);
    if (req->absolute_form) {
        evbuffer_add(out, req->path, req->path_len);
        if (req->query != NULL) {
            evbuffer_add(out, "?", 1);
            evbuffer_add(out, req->query, req->query_len);
        }
    } else {
        evbuffer_add(out, req->target, req->target_len);
    }
    evbuffer_add(out, " HTTP/1.1\r\n", 11);
    if (fwd->host != NULL) {
        evbuffer_add(out, "Host: ", 6);
        evbuffer_add(out, fwd->host, fwd->host_len);
        evbuffer_add(out, "\r\n", 2);
    }
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (http_write_is_hop_by_hop(h, hd) || http_write_name_is(hd, "host") ||
            http_write_name_is(hd, "content-length") || http_write_name_is(hd, "expect") ||
            http_write_name_is(hd, "x-forwarded-proto") || http_write_stripped(fwd, hd))
            continue;
        if (http_write_name_is(hd, "x-forwarded-for")) {
            /* Several X-Forwarded-For fields form one list; keep them in
             * order and append the client to the last one. */
            if (xff != NULL)
                http_write_header(out, xff);
            xff = hd;
            continue;
        }
        http_write_header(out, hd);
    }
    evbuffer_add(out, "X-Forwarded-For: ", 17);
    if (xff != NULL && xff->value_len > 0) {
        evbuffer_add(out, xff->value, xff->value_len);
        evbuffer_add(out, ", ", 2);
    }
    evbuffer_add_printf(out, "%s\r\nX-Forwarded-Proto: %s\r\nVia: " VIA_VALUE "\r\n",
                        fwd->client_ip, fwd->scheme != NULL ? fwd->scheme : "http");
    if (fwd->extra != NULL)
        evbuffer_add(out, fwd->extra, strlen(fwd->extra));
    http_write_framing(out, fwd->framing, fwd->content_length);
    evbuffer_add(out, "\r\n", 2);
}

void
http_write_response(struct evbuffer *out, const struct http_response *resp,
                    enum http_framing framing, uint64_t content_length, bool close,
                    bool keep_alive_10, const char *extra)
{
    const struct http_head *h = &resp->head;
    bool has_date = false;
    bool relay_length = framing == HTTP_FRAMING_NONE && resp->status != 204 &&
                        (resp->status < 100 || resp->status > 199);

    evbuffer_add_printf(out, "HTTP/1.1 %d ", resp->status);
    if (resp->reason_len > 0)
        evbuffer_add(out, resp->reason, resp->reason_len);
    else
        evbuffer_add_printf(out, "%s", http_write_reason(resp->status));
    evbuffer_add(out, "\r\n", 2);
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (http_write_is_hop_by_hop(h, hd))
            continue;
        if (http_write_name_is(hd, "content-length") && !relay_length)
            continue;
        if (http_write_name_is(hd, "date"))
            has_date = true;
        http_write_header(out, hd);
    }
    /* RFC 9110 6.6.1: a recipient with a clock adds a missing Date. */
    if (!has_date)
        evbuffer_add_printf(out, "Date: %s\r\n", http_write_date());
    evbuffer_add(out, "Via: " VIA_VALUE "\r\n", 5 + sizeof(VIA_VALUE) - 1 + 2);
    if (extra != NULL)
        evbuffer_add(out, extra, strlen(extra));
    http_write_framing(out, framing, content_length);
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (keep_alive_10)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    evbuffer_add(out, "\r\n", 2);
}

void
http_write_simple(struct evbuffer *out, int status, bool close, bool head_request, const char *type,
                  const char *body, size_t body_len, const char *extra)
{
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: tailcache\r\n"
                        "Content-Type: %s\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                        status, http_write_reason(status), http_write_date(), type, body_len,
                        status == 405 ? "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n"
                                      : "",
                        extra != NULL ? extra : "", close ? "Connection: close\r\n" : "");
    if (!head_request)
        evbuffer_add(out, body, body_len);
}

void
http_write_error(struct evbuffer *out, int status, bool close, bool head_request, const char *extra)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, http_write_reason(status));
    http_write_simple(out, status, close, head_request, "text/plain", body,
                      n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0, extra);
}

void
http_write_continue(struct evbuffer *out)
{
    evbuffer_add(out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

void
http_write_chunk_header(struct evbuffer *out, size_t len)
{
    evbuffer_add_printf(out, "%zx\r\n", len);
}

void
http_write_last_chunk(struct evbuffer *out)
{
    evbuffer_add(out, "0\r\n\r\n", 5);
}
