/*
 * http_parser: the project's strict HTTP/1.1 message parser (RFC 9112).
 *
 * A proxy's parser is its security boundary against request smuggling, so
 * this one accepts exactly the grammar of RFC 9112 and rejects everything
 * ambiguous. It is zero-copy: every string in a parsed message points into
 * the caller's buffer, which must stay alive and unmoved while the message
 * is used. It never allocates.
 *
 * Heads (request line or status line plus header section) are parsed from
 * one contiguous buffer holding the bytes received so far; the call is
 * repeated with more bytes until it succeeds, so any split of the input
 * gives the same result. Bodies in chunked coding are decoded by a
 * byte-incremental state machine that needs no contiguous buffer.
 *
 * Return convention for the parse functions:
 *   > 0  bytes consumed (the whole head, up to and including the empty line)
 *   = 0  HTTP_PARSE_AGAIN: the head is incomplete, call again with more
 *   < 0  one of the HTTP_PARSE_E* codes; http_parse_status() maps it to the
 *        HTTP status a server answers with.
 *
 * Thread safety: pure functions over caller-owned state.
 */
#ifndef TAILCACHE_HTTP_PARSER_H
#define TAILCACHE_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Capacity of the fixed header array; the configured limit must not exceed it. */
#define HTTP_HEADERS_CAP 256

/* Empty lines (CRLF) skipped before a request line; one more is EBAD. */
#define HTTP_EMPTY_LINES_MAX 4

/* Largest Content-Length accepted (2^62): a larger one is EBAD. */
#define HTTP_LENGTH_MAX (UINT64_C(1) << 62)

enum http_parse_error {
    HTTP_PARSE_AGAIN = 0,
    HTTP_PARSE_EBAD = -1,             /* malformed: 400 */
    HTTP_PARSE_EURI_TOO_LONG = -2,    /* request line over the limit: 414 */
    HTTP_PARSE_EHEADERS_TOO_BIG = -3, /* header bytes or count over the limit: 431 */
    HTTP_PARSE_ENOT_IMPL = -4,        /* transfer coding other than chunked: 501 */
    HTTP_PARSE_EVERSION = -5,         /* HTTP/x.y other than 1.0 and 1.1: 505 */
    HTTP_PARSE_EMETHOD = -6,          /* CONNECT, not served by a reverse proxy: 405 */
    HTTP_PARSE_EEXPECT = -7,          /* an Expect other than 100-continue: 417 */
};

enum http_framing {
    HTTP_FRAMING_NONE,        /* no body */
    HTTP_FRAMING_LENGTH,      /* Content-Length bytes */
    HTTP_FRAMING_CHUNKED,     /* Transfer-Encoding: chunked */
    HTTP_FRAMING_UNTIL_CLOSE, /* responses only: body ends when the connection closes */
};

enum http_method {
    HTTP_M_OTHER, /* an extension method: a valid token, forwarded as is */
    HTTP_M_GET,
    HTTP_M_HEAD,
    HTTP_M_POST,
    HTTP_M_PUT,
    HTTP_M_DELETE,
    HTTP_M_PATCH,
    HTTP_M_OPTIONS,
    HTTP_M_TRACE,
    HTTP_M_PURGE,
};

struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* optional whitespace around the value removed */
    size_t value_len;
};

struct http_limits {
    size_t max_request_line; /* bytes, without CRLF */
    size_t max_header_bytes; /* whole head, request line included */
    unsigned max_headers;    /* at most HTTP_HEADERS_CAP */
};

/* Fields shared by requests and responses. */
struct http_head {
    int version_minor; /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    struct http_header headers[HTTP_HEADERS_CAP];
    unsigned nheaders;

    /* Derived from the header section. */
    enum http_framing framing;
    uint64_t content_length; /* valid when framing == HTTP_FRAMING_LENGTH */
    bool conn_close;         /* Connection: close, or HTTP/1.0 without keep-alive */
    bool conn_keep_alive;    /* Connection: keep-alive was present */
};

struct http_request {
    struct http_head head;
    const char *method;
    size_t method_len;
    enum http_method method_id;

    const char *target; /* the request-target exactly as received */
    size_t target_len;
    /* origin-form or absolute-form split: path starts with '/', or is "*" for
     * asterisk-form OPTIONS. query excludes the '?', NULL when absent. */
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
    bool absolute_form;

    /* Host: from the absolute-form target when present (RFC 9112 3.2.2),
     * else the Host header. Required and unique in HTTP/1.1. NULL when an
     * HTTP/1.0 request has none. */
    const char *host;
    size_t host_len;

    bool expect_continue; /* Expect: 100-continue */
};

struct http_response {
    struct http_head head;
    int status; /* 100..999 */
    const char *reason;
    size_t reason_len;
};

/*
 * Parses a request head from buf[0..len). Empty lines before the request
 * line are skipped (RFC 9112 2.2) and counted in the return value.
 * Rejects: CL with TE, duplicate or invalid Content-Length, a
 * Transfer-Encoding whose last coding is not chunked (or TE in HTTP/1.0),
 * obs-fold, whitespace before the colon, invalid bytes in names, values or
 * the target, bare CR or bare LF, missing or repeated Host in HTTP/1.1,
 * fragments in the target.
 * Errors are decided in input order (limits byte by byte, the request line
 * when complete, then the fields once the whole head is in), so a prefix
 * of the input gives either HTTP_PARSE_AGAIN or the final answer.
 * Content-Length: 0 gives HTTP_FRAMING_LENGTH with content_length 0.
 * Expect: 100-continue is ignored in HTTP/1.0 requests (RFC 9110 10.1.1).
 */
ssize_t http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
                           struct http_request *req);

/*
 * Parses a response head. head_request tells that the request was HEAD, so
 * the response has no body whatever its headers say; 1xx, 204 and 304 never
 * have one either. Interim (1xx) responses are returned like any other; the
 * caller skips them. A response with both CL and TE is rejected. When the
 * response has no body, CL and TE are not interpreted at all. A status line
 * longer than lim->max_request_line gives HTTP_PARSE_EHEADERS_TOO_BIG; empty
 * lines before it are EBAD.
 */
ssize_t http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
                            bool head_request, struct http_response *resp);

/* The HTTP status a server answers with for a parse error code (400 for unknown). */
int http_parse_status(ssize_t err);

/* Returns the first header named name (case-insensitive), or NULL. */
const struct http_header *http_head_find(const struct http_head *h, const char *name);

/* True when the comma-separated list value contains token (case-insensitive,
 * OWS around elements ignored, parameters after ';' ignored). */
bool http_list_has_token(const char *value, size_t value_len, const char *token, size_t token_len);

/* True when the header name appears (case-insensitive) as a token in any
 * Connection header of h, i.e. the sender declared it hop-by-hop. */
bool http_head_connection_names(const struct http_head *h, const char *name, size_t name_len);

/*
 * Steps through a comma-separated list: sets *el to the next element with
 * OWS trimmed (possibly empty) and returns true, or returns false after the
 * last one. An empty value is one empty element; commas inside a
 * quoted-string do not split. *pos starts at 0.
 */
bool http_list_next(const char *v, size_t n, size_t *pos, const char **el, size_t *el_len);

/* Case-insensitive compare of two (ptr, len) strings. */
bool http_mem_ieq(const char *a, size_t alen, const char *b, size_t blen);

/* Case-insensitive compare of a (ptr, len) string with a NUL-terminated literal. */
bool http_str_ieq(const char *s, size_t len, const char *lit);

/* --- chunked transfer coding ------------------------------------------ */

struct http_chunked {
    int state;
    uint64_t remaining;   /* data bytes left in the current chunk */
    size_t line_bytes;    /* bytes of the current size or trailer line */
    size_t trailer_bytes; /* bytes of the trailer section so far */
    unsigned trailer_count;
    size_t max_trailer_bytes; /* set by http_chunked_init */
};

/* Starts decoding a chunked body; trailers beyond max_trailer_bytes are an
 * error, and so is a chunk-size line (size and extensions, CRLF excluded)
 * longer than max_trailer_bytes: pass a few hundred bytes at least. */
void http_chunked_init(struct http_chunked *c, size_t max_trailer_bytes);

/*
 * Decodes from buf[0..len). Returns bytes consumed (>= 0) or HTTP_PARSE_EBAD.
 * On return [*data_off, *data_off + *data_len) is body data inside the
 * consumed bytes (possibly empty); a call stops right after at most one data
 * span, so the caller forwards it and calls again with the rest. Chunk
 * extensions are validated and ignored; trailer fields are validated like
 * header fields and discarded. After the last chunk and the trailer section
 * http_chunked_done() is true and nothing past the message is consumed.
 * Returns 0 only when len == 0 or the body is done.
 * A chunk size beyond 15 significant hex digits is EBAD; once an error has
 * been returned every later call returns it again.
 */
ssize_t http_chunked_decode(struct http_chunked *c, const char *buf, size_t len, size_t *data_off,
                            size_t *data_len);

bool http_chunked_done(const struct http_chunked *c);

#endif
