/*
 * http_write: serialises the heads tailcache sends: requests forwarded
 * upstream, responses relayed to clients, and the proxy's own error
 * responses.
 *
 * Forwarded heads are rebuilt from the parsed message, never copied as
 * raw bytes: hop-by-hop fields are dropped (Connection and every field it
 * names, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*),
 * framing is written by us (Content-Length or chunked), and the forwarding
 * fields (X-Forwarded-For, X-Forwarded-Proto, Via) are added. What reaches
 * the other side is therefore unambiguous whatever the client sent.
 *
 * Thread safety: the Date cache is per thread; everything else is pure.
 */
#ifndef TAILCACHE_HTTP_WRITE_H
#define TAILCACHE_HTTP_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_parser.h"

struct evbuffer;

/* How a forwarded request is sent upstream. */
struct http_write_fwd {
    const char *client_ip; /* appended to X-Forwarded-For */
    const char *scheme;    /* X-Forwarded-Proto: "http" or "https"; NULL is "http" */
    const char *host;      /* the Host to send; NULL sends none (HTTP/1.0 client without one) */
    size_t host_len;
    enum http_framing framing; /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;
    char *const *strip; /* request fields never forwarded (cache poisoning) */
    size_t nstrip;
    bool drop_conditionals; /* a cache fill: no If-*, no Range from the client */
    const char *extra;      /* header lines to add ("Name: value\r\n"...), or NULL */
};

/* Appends the upstream request head for req. */
void http_write_request(struct evbuffer *out, const struct http_request *req,
                        const struct http_write_fwd *fwd);

/*
 * Appends the client response head for resp. framing is how the body goes
 * to the client (LENGTH with content_length, CHUNKED, UNTIL_CLOSE or NONE;
 * with NONE the upstream's Content-Length is relayed as is, as for HEAD
 * and 304). close adds Connection: close; keep_alive_10 adds
 * Connection: keep-alive for an HTTP/1.0 client that asked for it.
 * extra, when not NULL, is appended as header lines (each ending CRLF).
 */
void http_write_response(struct evbuffer *out, const struct http_response *resp,
                         enum http_framing framing, uint64_t content_length, bool close,
                         bool keep_alive_10, const char *extra);

/* Appends a complete response with the given Content-Type and body (HEAD
 * gets the head only); extra as for http_write_error(). */
void http_write_simple(struct evbuffer *out, int status, bool close, bool head_request,
                       const char *type, const char *body, size_t body_len, const char *extra);

/* Appends a complete short text/plain error response; HEAD gets no body.
 * extra, when not NULL, is appended as header lines (each ending CRLF). */
void http_write_error(struct evbuffer *out, int status, bool close, bool head_request,
                      const char *extra);

/* Appends "HTTP/1.1 100 Continue" interim response. */
void http_write_continue(struct evbuffer *out);

/* True when hd is hop-by-hop in h (fixed list, or named by Connection). */
bool http_write_is_hop_by_hop(const struct http_head *h, const struct http_header *hd);

/* The standard reason phrase for status, or "Unknown". */
const char *http_write_reason(int status);

/* The current IMF-fixdate, cached per thread and refreshed once a second. */
const char *http_write_date(void);

/* Appends a chunk-size line for a chunk of len bytes (len > 0). */
void http_write_chunk_header(struct evbuffer *out, size_t len);

/* Appends the last chunk and an empty trailer section. */
void http_write_last_chunk(struct evbuffer *out);

#endif
