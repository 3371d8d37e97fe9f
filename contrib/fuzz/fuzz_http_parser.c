/*
 * fuzz_http_parser: libFuzzer target for src/http_parser.c.
 *
 * Every input goes to http_parse_request, http_parse_response (with and
 * without head_request) and the chunked decoder, each under a tight and a
 * loose set of limits. Besides the sanitizers' checks it aborts when:
 *   - a returned pointer or span lies outside the input (or, for a head,
 *     outside the bytes it consumed);
 *   - the incremental property breaks: parsing a prefix of the input must
 *     give HTTP_PARSE_AGAIN or exactly the one-shot answer (same fields at
 *     the same offsets), and a completed head must be found in any prefix
 *     that holds it; the chunked decoder fed in two pieces, or a byte at a
 *     time, must give the same data, the same end and the same error;
 *   - a result breaks the documented contract (limits, counts, ranges).
 * Prefixes are parsed from exact-size heap copies so that reading past
 * the bytes that have arrived is an ASan error.
 *
 * Build and run with contrib/fuzz/build.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct http_limits fuzz_limits[] = {
    {48, 200, 6},
    {8192, 65536, HTTP_HEADERS_CAP},
};

static const size_t fuzz_trailer_limits[] = {24, 4096};

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* True when [p, p + n) lies in [base, base + len); a NULL p must have n == 0. */
static int
fuzz_inside(const char *p, size_t n, const char *base, size_t len)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;

    if (!p)
        return n == 0;
    return a >= b && n <= len && a - b <= len - n;
}

static ptrdiff_t
fuzz_off(const char *p, const char *base)
{
    return p ? p - base : -1;
}

static char *
fuzz_copy(const uint8_t *data, size_t len)
{
    char *p = malloc(len ? len : 1);

    if (!p)
        abort();
    if (len)
        memcpy(p, data, len);
    return p;
}

/* --- heads -------------------------------------------------------------- */

static void
fuzz_check_head(const struct http_head *h, const char *buf, size_t n, const struct http_limits *lim)
{
    unsigned i;

    FUZZ_CHECK(n <= lim->max_header_bytes);
    FUZZ_CHECK(h->nheaders <= lim->max_headers && h->nheaders <= HTTP_HEADERS_CAP);
    FUZZ_CHECK(h->version_minor == 0 || h->version_minor == 1);
    FUZZ_CHECK(h->framing != HTTP_FRAMING_LENGTH ? h->content_length == 0
                                                 : h->content_length <= HTTP_LENGTH_MAX);
    if (h->version_minor == 0 && !h->conn_keep_alive)
        FUZZ_CHECK(h->conn_close);
    for (i = 0; i < h->nheaders; i++) {
        FUZZ_CHECK(h->headers[i].name_len > 0);
        FUZZ_CHECK(fuzz_inside(h->headers[i].name, h->headers[i].name_len, buf, n));
        FUZZ_CHECK(fuzz_inside(h->headers[i].value, h->headers[i].value_len, buf, n));
    }
    /* Exercise the lookups on what was parsed. */
    (void)http_head_find(h, "content-length");
    (void)http_head_connection_names(h, "keep-alive", 10);
}

static int
fuzz_same_head(const struct http_head *a, const char *abuf, const struct http_head *b,
               const char *bbuf)
{
    unsigned i;

    if (a->version_minor != b->version_minor || a->nheaders != b->nheaders ||
        a->framing != b->framing || a->content_length != b->content_length ||
        a->conn_close != b->conn_close || a->conn_keep_alive != b->conn_keep_alive)
        return 0;
    for (i = 0; i < a->nheaders; i++)
        if (fuzz_off(a->headers[i].name, abuf) != fuzz_off(b->headers[i].name, bbuf) ||
            a->headers[i].name_len != b->headers[i].name_len ||
            fuzz_off(a->headers[i].value, abuf) != fuzz_off(b->headers[i].value, bbuf) ||
            a->headers[i].value_len != b->headers[i].value_len)
            return 0;
    return 1;
}

static void
fuzz_check_request(const struct http_request *r, const char *buf, size_t n,
                   const struct http_limits *lim)
{
    fuzz_check_head(&r->head, buf, n, lim);
    FUZZ_CHECK(r->method_len > 0 && fuzz_inside(r->method, r->method_len, buf, n));
    FUZZ_CHECK(r->target_len > 0 && fuzz_inside(r->target, r->target_len, buf, n));
    FUZZ_CHECK(r->target_len <= lim->max_request_line);
    FUZZ_CHECK(r->path_len > 0 && fuzz_inside(r->path, r->path_len, buf, n));
    FUZZ_CHECK(r->path[0] == '/' || (r->path_len == 1 && r->path[0] == '*'));
    FUZZ_CHECK(fuzz_inside(r->query, r->query_len, buf, n));
    FUZZ_CHECK(fuzz_inside(r->host, r->host_len, buf, n));
    FUZZ_CHECK(r->host ? r->host_len > 0 : r->head.version_minor == 0);
    FUZZ_CHECK(!r->expect_continue || r->head.version_minor == 1);
    FUZZ_CHECK(r->head.framing != HTTP_FRAMING_UNTIL_CLOSE);
}

static int
fuzz_same_request(const struct http_request *a, const char *abuf, const struct http_request *b,
                  const char *bbuf)
{
    return fuzz_same_head(&a->head, abuf, &b->head, bbuf) &&
           fuzz_off(a->method, abuf) == fuzz_off(b->method, bbuf) &&
           a->method_len == b->method_len && a->method_id == b->method_id &&
           fuzz_off(a->target, abuf) == fuzz_off(b->target, bbuf) &&
           a->target_len == b->target_len && fuzz_off(a->path, abuf) == fuzz_off(b->path, bbuf) &&
           a->path_len == b->path_len && fuzz_off(a->query, abuf) == fuzz_off(b->query, bbuf) &&
           a->query_len == b->query_len && fuzz_off(a->host, abuf) == fuzz_off(b->host, bbuf) &&
           a->host_len == b->host_len && a->absolute_form == b->absolute_form &&
           a->expect_continue == b->expect_continue;
}

static void
fuzz_check_response(const struct http_response *r, const char *buf, size_t n,
                    const struct http_limits *lim, int head_request)
{
    fuzz_check_head(&r->head, buf, n, lim);
    FUZZ_CHECK(r->status >= 100 && r->status <= 999);
    FUZZ_CHECK(r->reason && fuzz_inside(r->reason, r->reason_len, buf, n));
    if (head_request || r->status < 200 || r->status == 204 || r->status == 304)
        FUZZ_CHECK(r->head.framing == HTTP_FRAMING_NONE);
    else
        FUZZ_CHECK(r->head.framing != HTTP_FRAMING_NONE);
}

static int
fuzz_same_response(const struct http_response *a, const char *abuf, const struct http_response *b,
                   const char *bbuf)
{
    return fuzz_same_head(&a->head, abuf, &b->head, bbuf) && a->status == b->status &&
           fuzz_off(a->reason, abuf) == fuzz_off(b->reason, bbuf) && a->reason_len == b->reason_len;
}

/* Big structs live here, not on the stack. */
static struct http_request fuzz_req_full, fuzz_req_part;
static struct http_response fuzz_resp_full, fuzz_resp_part;

/* The result for a prefix of k bytes must be AGAIN or the full result. */
static void
fuzz_prefix_result(ssize_t full, ssize_t part, size_t k)
{
    if (full > 0 && (size_t)full <= k)
        FUZZ_CHECK(part == full);
    else
        FUZZ_CHECK(part == HTTP_PARSE_AGAIN || part == full);
}

static void
fuzz_request(const uint8_t *data, size_t size, const struct http_limits *lim, const size_t *splits,
             int nsplits)
{
    const char *buf = (const char *)data;
    ssize_t full, part;
    char *copy;
    int i;

    full = http_parse_request(buf, size, lim, &fuzz_req_full);
    FUZZ_CHECK(full >= HTTP_PARSE_EEXPECT && (full <= 0 || (size_t)full <= size));
    if (full > 0)
        fuzz_check_request(&fuzz_req_full, buf, (size_t)full, lim);
    if (full < 0)
        FUZZ_CHECK(http_parse_status(full) >= 400 && http_parse_status(full) <= 505);
    for (i = 0; i < nsplits; i++) {
        copy = fuzz_copy(data, splits[i]);
        part = http_parse_request(copy, splits[i], lim, &fuzz_req_part);
        fuzz_prefix_result(full, part, splits[i]);
        if (part > 0) {
            fuzz_check_request(&fuzz_req_part, copy, (size_t)part, lim);
            FUZZ_CHECK(fuzz_same_request(&fuzz_req_part, copy, &fuzz_req_full, buf));
        }
        free(copy);
    }
}

static void
fuzz_response(const uint8_t *data, size_t size, const struct http_limits *lim, int head_request,
              const size_t *splits, int nsplits)
{
    const char *buf = (const char *)data;
    ssize_t full, part;
    char *copy;
    int i;

    full = http_parse_response(buf, size, lim, head_request, &fuzz_resp_full);
    FUZZ_CHECK(full >= HTTP_PARSE_EEXPECT && (full <= 0 || (size_t)full <= size));
    FUZZ_CHECK(full != HTTP_PARSE_EURI_TOO_LONG && full != HTTP_PARSE_EMETHOD &&
               full != HTTP_PARSE_EEXPECT);
    if (full > 0)
        fuzz_check_response(&fuzz_resp_full, buf, (size_t)full, lim, head_request);
    for (i = 0; i < nsplits; i++) {
        copy = fuzz_copy(data, splits[i]);
        part = http_parse_response(copy, splits[i], lim, head_request, &fuzz_resp_part);
        fuzz_prefix_result(full, part, splits[i]);
        if (part > 0) {
            fuzz_check_response(&fuzz_resp_part, copy, (size_t)part, lim, head_request);
            FUZZ_CHECK(fuzz_same_response(&fuzz_resp_part, copy, &fuzz_resp_full, buf));
        }
        free(copy);
    }
}

/* --- chunked ------------------------------------------------------------ */

struct fuzz_chunked_out {
    ssize_t err;
    int done;
    size_t consumed; /* by successful calls */
    char *data;      /* decoded bytes, at most the input size */
    size_t data_len;
};

/* Feeds data[from, to) through c: a piece arrives, calls go on until it is
 * used up, the body ends or an error comes; step > 0 splits it further into
 * pieces of that many bytes. */
static void
fuzz_chunked_feed(struct http_chunked *c, const uint8_t *data, size_t from, size_t to, size_t step,
                  struct fuzz_chunked_out *o)
{
    size_t end, pos, off, dlen;
    char *piece;
    ssize_t r;

    while (from < to && o->err == 0 && !http_chunked_done(c)) {
        end = step && to - from > step ? from + step : to;
        piece = fuzz_copy(data + from, end - from);
        pos = 0;
        while (pos < end - from && o->err == 0 && !http_chunked_done(c)) {
            r = http_chunked_decode(c, piece + pos, end - from - pos, &off, &dlen);
            if (r < 0) {
                FUZZ_CHECK(r == HTTP_PARSE_EBAD);
                FUZZ_CHECK(!http_chunked_done(c));
                o->err = r;
                break;
            }
            /* 0 only when done, and the span within what was consumed. */
            FUZZ_CHECK(r > 0 || http_chunked_done(c));
            FUZZ_CHECK((size_t)r <= end - from - pos);
            FUZZ_CHECK(off <= (size_t)r && dlen <= (size_t)r - off);
            FUZZ_CHECK(o->data_len + dlen <= o->consumed + (size_t)r);
            memcpy(o->data + o->data_len, piece + pos + off, dlen);
            o->data_len += dlen;
            o->consumed += (size_t)r;
            pos += (size_t)r;
        }
        free(piece);
        from = end;
    }
}

static void
fuzz_chunked_run(const uint8_t *data, size_t size, size_t max_trailer, size_t split, size_t step,
                 struct fuzz_chunked_out *o)
{
    struct http_chunked c;
    size_t off, dlen;

    o->err = 0;
    o->consumed = 0;
    o->data_len = 0;
    http_chunked_init(&c, max_trailer);
    fuzz_chunked_feed(&c, data, 0, split, step, o);
    fuzz_chunked_feed(&c, data, o->consumed, size, step, o);
    o->done = http_chunked_done(&c);
    FUZZ_CHECK(o->err != 0 || c.trailer_bytes <= max_trailer);
    if (o->err < 0) /* errors stick */
        FUZZ_CHECK(http_chunked_decode(&c, "0\r\n\r\n", 5, &off, &dlen) == HTTP_PARSE_EBAD);
}

static int
fuzz_same_chunked(const struct fuzz_chunked_out *a, const struct fuzz_chunked_out *b)
{
    if (a->err != b->err || a->done != b->done || a->data_len != b->data_len ||
        memcmp(a->data, b->data, a->data_len) != 0)
        return 0;
    /* Bytes consumed before an error depend on where the calls began. */
    return a->err != 0 || a->consumed == b->consumed;
}

static void
fuzz_chunked(const uint8_t *data, size_t size, size_t max_trailer, const size_t *splits,
             int nsplits)
{
    struct fuzz_chunked_out whole, part;
    int i;

    whole.data = fuzz_copy(data, size);
    part.data = fuzz_copy(data, size);
    fuzz_chunked_run(data, size, max_trailer, size, 0, &whole);
    FUZZ_CHECK(whole.data_len <= whole.consumed);
    if (whole.err == 0 && !whole.done)
        FUZZ_CHECK(whole.consumed == size);
    for (i = 0; i < nsplits; i++) {
        fuzz_chunked_run(data, size, max_trailer, splits[i], 0, &part);
        FUZZ_CHECK(fuzz_same_chunked(&whole, &part));
    }
    if (size <= 512) {
        fuzz_chunked_run(data, size, max_trailer, size, 1, &part);
        FUZZ_CHECK(fuzz_same_chunked(&whole, &part));
    }
    free(whole.data);
    free(part.data);
}

/* --- entry --------------------------------------------------------------- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t splits[2], i;
    int nsplits = 0, h;
    uint32_t hash = 2166136261u;

    /* One split chosen by the data (FNV-1a), one in the middle. */
    for (i = 0; i < size; i++)
        hash = (hash ^ data[i]) * 16777619u;
    if (size > 0) {
        splits[nsplits++] = hash % (size + 1);
        splits[nsplits++] = size / 2;
    }

    for (i = 0; i < sizeof(fuzz_limits) / sizeof(fuzz_limits[0]); i++) {
        fuzz_request(data, size, &fuzz_limits[i], splits, nsplits);
        for (h = 0; h <= 1; h++)
            fuzz_response(data, size, &fuzz_limits[i], h, splits, nsplits);
    }
    for (i = 0; i < sizeof(fuzz_trailer_limits) / sizeof(fuzz_trailer_limits[0]); i++)
        fuzz_chunked(data, size, fuzz_trailer_limits[i], splits, nsplits);

    (void)http_list_has_token((const char *)data, size, "chunked", 7);
    (void)http_str_ieq((const char *)data, size, "close");
    return 0;
}
