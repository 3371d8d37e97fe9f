/*
 * http_parser: strict HTTP/1.1 heads (RFC 9112) and the chunked coding.
 *
 * A head is parsed by one forward pass over all the bytes received so far,
 * repeated from the start on every call; heads are bounded by
 * max_header_bytes, so the rescan is bounded too and nothing has to be
 * remembered between calls. The pass stops at the first error, and what it
 * decides at byte i depends only on bytes [0, i] (plus the byte after a
 * CR). So a prefix of a message can only give HTTP_PARSE_AGAIN or the same
 * answer as the whole message: the result never depends on how the input
 * was split. Errors are ranked by position accordingly:
 *   1. byte by byte: the head limit (431), the request line limit (414),
 *      a byte that cannot appear where it is (start line, field name,
 *      field value, the first byte of a line), bare CR and bare LF, one
 *      field too many (431);
 *   2. at the end of the start line: its grammar (400), then the version
 *      (505), then CONNECT (405), then the form of the target (400);
 *   3. when the empty line ending the head has arrived: the meaning of the
 *      fields, all 400s first (Content-Length, Transfer-Encoding, Host),
 *      then a transfer coding we do not implement (501), then Expect (417).
 *
 * Choices where the RFC leaves room, all in the strict direction:
 *   - at most HTTP_EMPTY_LINES_MAX empty lines before a request line, none
 *     before a status line; they count against max_header_bytes;
 *   - a status line longer than max_request_line gives
 *     HTTP_PARSE_EHEADERS_TOO_BIG (414 means nothing for a response);
 *   - Content-Length above HTTP_LENGTH_MAX (2^62) is malformed, so lengths
 *     fit an off_t with room to add; Content-Length: 0 gives
 *     HTTP_FRAMING_LENGTH with 0, not HTTP_FRAMING_NONE;
 *   - empty elements in a Transfer-Encoding list ("chunked, ,") and
 *     parameters on chunked are malformed;
 *   - Host: no ',' in a reg-name (a comma there smells of two joined Host
 *     lines); a port is at most 5 digits and <= 65535, and may be empty as
 *     RFC 3986 allows; an IP literal holds hex digits, ':' and '.' only;
 *   - with an absolute-form target the Host field is ignored except that it
 *     may not be repeated, and HTTP/1.1 still requires it;
 *   - the target may hold any byte 0x21..0x7E except '#'; percent escapes
 *     in the path are not checked (the router sees the bytes as received);
 *   - an absolute-form target without a path gets path "/", which points at
 *     the last '/' of its "://" so it stays inside the caller's buffer;
 *   - Expect: 100-continue in an HTTP/1.0 request is ignored (RFC 9110
 *     10.1.1: no 1xx to a 1.0 client); any other expectation is 417;
 *   - in a response that has no body (HEAD, 1xx, 204, 304) Content-Length
 *     and Transfer-Encoding are not interpreted at all;
 *   - Transfer-Encoding in any HTTP/1.0 message is malformed (RFC 9112 6.1).
 *
 * The chunked decoder is a byte-at-a-time state machine in struct
 * http_chunked; only data is handed out in spans. The limit given to
 * http_chunked_init() bounds both each chunk-size line (size and
 * extensions, without CRLF) and the trailer section (its field lines with
 * their CRLFs, not the final empty line). A chunk size has at most 15
 * significant hex digits, so it stays below 2^60.
 *
 * Nothing here allocates or keeps global state; every function may be
 * called from any thread on caller-owned memory.
 */
#include "http_parser.h"

#include <assert.h>
#include <string.h>

/* --- character classes ------------------------------------------------ */

static bool
http_is_tchar(unsigned char c)
{
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    }
}

/* field-vchar, SP or HTAB: what a field value or a reason phrase may hold. */
static bool
http_is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool
http_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int
http_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool
http_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char
http_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

bool
http_mem_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i;

    if (alen != blen)
        return false;
    for (i = 0; i < alen; i++)
        if (http_lower((unsigned char)a[i]) != http_lower((unsigned char)b[i]))
            return false;
    return true;
}

bool
http_str_ieq(const char *s, size_t len, const char *lit)
{
    return http_mem_ieq(s, len, lit, strlen(lit));
}

/* --- lists --------------------------------------------------------------- */

bool
http_list_next(const char *v, size_t n, size_t *pos, const char **el, size_t *el_len)
{
    size_t i = *pos, start, end;
    bool quoted = false;

    if (i > n)
        return false;
    start = i;
    for (; i < n; i++) {
        if (quoted) {
            if (v[i] == '\\' && i + 1 < n)
                i++;
            else if (v[i] == '"')
                quoted = false;
        } else if (v[i] == '"') {
            quoted = true;
        } else if (v[i] == ',') {
            break;
        }
    }
    end = i;
    *pos = i + 1;
    while (start < end && http_is_ows((unsigned char)v[start]))
        start++;
    while (end > start && http_is_ows((unsigned char)v[end - 1]))
        end--;
    *el = v + start;
    *el_len = end - start;
    return true;
}

bool
http_list_has_token(const char *value, size_t value_len, const char *token, size_t token_len)
{
    const char *el;
    size_t el_len, pos = 0, n;

    while (http_list_next(value, value_len, &pos, &el, &el_len)) {
        for (n = 0; n < el_len && el[n] != ';'; n++)
            ;
        while (n > 0 && http_is_ows((unsigned char)el[n - 1]))
            n--;
        if (http_mem_ieq(el, n, token, token_len))
            return true;
    }
    return false;
}

const struct http_header *
http_head_find(const struct http_head *h, const char *name)
{
    size_t name_len = strlen(name);
    unsigned i;

    for (i = 0; i < h->nheaders; i++)
        if (http_mem_ieq(h->headers[i].name, h->headers[i].name_len, name, name_len))
            return &h->headers[i];
    return NULL;
}

bool
http_head_connection_names(const struct http_head *h, const char *name, size_t name_len)
{
    const struct http_header *f;
    unsigned i;

    for (i = 0; i < h->nheaders; i++) {
        f = &h->headers[i];
        if (http_str_ieq(f->name, f->name_len, "connection") &&
            http_list_has_token(f->value, f->value_len, name, name_len))
            return true;
    }
    return false;
}

int
http_parse_status(ssize_t err)
{
    switch (err) {
    case HTTP_PARSE_EURI_TOO_LONG:
        return 414;
    case HTTP_PARSE_EHEADERS_TOO_BIG:
        return 431;
    case HTTP_PARSE_ENOT_IMPL:
        return 501;
    case HTTP_PARSE_EVERSION:
        return 505;
    case HTTP_PARSE_EMETHOD:
        return 405;
    case HTTP_PARSE_EEXPECT:
        return 417;
    default:
        return 400;
    }
}

/* --- the head: lines -------------------------------------------------- */

/* Checks a byte index before it is read: past the head limit, or not here yet. */
#define HTTP_NEED(i)                                                                               \
    do {                                                                                           \
        if ((i) >= lim->max_header_bytes)                                                          \
            return HTTP_PARSE_EHEADERS_TOO_BIG;                                                    \
        if ((i) >= len)                                                                            \
            return HTTP_PARSE_AGAIN;                                                               \
    } while (0)

/*
 * Finds the CRLF that ends the start line beginning at off. Returns the
 * offset just past it and sets *line_len (CRLF excluded), or AGAIN, or an
 * error: the head past its limit, a byte the line may not hold (request
 * lines: SP and VCHAR; status lines: also HTAB and obs-text), a bare CR or
 * LF, or the line longer than max_line (too_long).
 */
static ssize_t
http_scan_start_line(const char *buf, size_t len, size_t off, const struct http_limits *lim,
                     bool status_line, ssize_t too_long, size_t *line_len)
{
    size_t i;
    unsigned char c;

    for (i = off;; i++) {
        HTTP_NEED(i);
        c = (unsigned char)buf[i];
        if (c == '\r')
            break;
        if (status_line ? !http_is_field_char(c) : (c < 0x20 || c > 0x7e))
            return HTTP_PARSE_EBAD;
        if (i - off >= lim->max_request_line)
            return too_long;
    }
    HTTP_NEED(i + 1);
    if (buf[i + 1] != '\n')
        return HTTP_PARSE_EBAD;
    *line_len = i - off;
    return (ssize_t)(i + 2);
}

/*
 * Parses field lines from off up to and including the empty line. Returns
 * the offset past the empty line, AGAIN, or an error.
 */
static ssize_t
http_parse_fields(const char *buf, size_t len, size_t off, const struct http_limits *lim,
                  struct http_head *h)
{
    unsigned max_fields = lim->max_headers < HTTP_HEADERS_CAP ? lim->max_headers : HTTP_HEADERS_CAP;
    size_t i = off, name, vstart, vend;
    struct http_header *f;
    unsigned char c;

    for (;;) {
        HTTP_NEED(i);
        c = (unsigned char)buf[i];
        if (c == '\r') {
            HTTP_NEED(i + 1);
            if (buf[i + 1] != '\n')
                return HTTP_PARSE_EBAD;
            return (ssize_t)(i + 2);
        }
        /* A line starting with whitespace is obs-fold, or whitespace between
         * the start line and the first field (RFC 9112 2.2): both rejected. */
        if (!http_is_tchar(c))
            return HTTP_PARSE_EBAD;
        if (h->nheaders >= max_fields)
            return HTTP_PARSE_EHEADERS_TOO_BIG;

        name = i;
        for (;;) {
            i++;
            HTTP_NEED(i);
            c = (unsigned char)buf[i];
            if (c == ':')
                break;
            if (!http_is_tchar(c))
                return HTTP_PARSE_EBAD;
        }
        f = &h->headers[h->nheaders];
        f->name = buf + name;
        f->name_len = i - name;

        vstart = vend = i + 1;
        for (;;) {
            i++;
            HTTP_NEED(i);
            c = (unsigned char)buf[i];
            if (c == '\r')
                break;
            if (!http_is_field_char(c))
                return HTTP_PARSE_EBAD;
            if (http_is_ows(c)) {
                if (vstart == i)
                    vstart = i + 1;
            } else {
                vend = i + 1;
            }
        }
        HTTP_NEED(i + 1);
        if (buf[i + 1] != '\n')
            return HTTP_PARSE_EBAD;
        if (vend < vstart)
            vend = vstart; /* the value was all whitespace */
        f->value = buf + vstart;
        f->value_len = vend - vstart;
        h->nheaders++;
        i += 2;
    }
}

/* Parses "HTTP/d.d" (exactly 8 bytes): 0 and *minor, EVERSION, or EBAD. */
static int
http_parse_version(const char *s, size_t n, int *minor)
{
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || !http_is_digit((unsigned char)s[5]) ||
        s[6] != '.' || !http_is_digit((unsigned char)s[7]))
        return HTTP_PARSE_EBAD;
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
        return HTTP_PARSE_EVERSION;
    *minor = s[7] - '0';
    return 0;
}

/* --- the head: meaning of the fields ---------------------------------- */

/*
 * uri-host [ ":" port ] (RFC 3986 3.2.2), strictly: see the design comment
 * for what is refused beyond the grammar. An empty host is invalid.
 */
static bool
http_host_valid(const char *s, size_t n)
{
    size_t i = 0, colons = 0, digits;
    unsigned long port = 0;
    unsigned char c;

    if (n == 0)
        return false;
    if (s[0] == '[') {
        for (i = 1; i < n && s[i] != ']'; i++) {
            c = (unsigned char)s[i];
            if (c == ':')
                colons++;
            else if (http_hex_value(c) < 0 && c != '.')
                return false;
        }
        if (i == n || colons < 2)
            return false;
        i++;
    } else {
        for (; i < n && s[i] != ':'; i++) {
            c = (unsigned char)s[i];
            if (c == '%') {
                if (i + 2 >= n || http_hex_value((unsigned char)s[i + 1]) < 0 ||
                    http_hex_value((unsigned char)s[i + 2]) < 0)
                    return false;
                i += 2;
                continue;
            }
            if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
                continue;
            if (!strchr("-._~!$&'()*+;=", c) || c == '\0')
                return false;
        }
        if (i == 0)
            return false;
    }
    if (i == n)
        return true;
    if (s[i] != ':')
        return false;
    digits = n - i - 1;
    if (digits > 5)
        return false;
    for (i++; i < n; i++) {
        if (!http_is_digit((unsigned char)s[i]))
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return port <= 65535;
}

/* 1*DIGIT, at most HTTP_LENGTH_MAX. */
static int
http_parse_length(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    unsigned d;
    size_t i;

    if (n == 0)
        return HTTP_PARSE_EBAD;
    for (i = 0; i < n; i++) {
        if (!http_is_digit((unsigned char)s[i]))
            return HTTP_PARSE_EBAD;
        d = (unsigned)(s[i] - '0');
        if (v > (HTTP_LENGTH_MAX - d) / 10)
            return HTTP_PARSE_EBAD;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Returns the index after the quoted-string that starts at s[i] == '"', or 0. */
static size_t
http_quoted_end(const char *s, size_t n, size_t i)
{
    unsigned char c;

    for (i++; i < n; i++) {
        c = (unsigned char)s[i];
        if (c == '"')
            return i + 1;
        if (c == '\\') {
            if (++i == n || !http_is_field_char((unsigned char)s[i]))
                return 0;
        } else if (!http_is_field_char(c)) {
            return 0;
        }
    }
    return 0;
}

/*
 * One transfer-coding: token *( OWS ";" OWS token BWS "=" BWS ( token /
 * quoted-string ) ), the element already trimmed. Returns 0 and sets
 * *chunked, or -1 when malformed or chunked carries parameters.
 */
static int
http_parse_coding(const char *s, size_t n, bool *chunked)
{
    size_t i = 0, start;

    while (i < n && http_is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0)
        return -1;
    *chunked = http_mem_ieq(s, i, "chunked", 7);
    if (i < n && *chunked)
        return -1;
    while (i < n) {
        while (i < n && http_is_ows((unsigned char)s[i]))
            i++;
        if (i == n || s[i] != ';')
            return -1;
        for (i++; i < n && http_is_ows((unsigned char)s[i]); i++)
            ;
        for (start = i; i < n && http_is_tchar((unsigned char)s[i]); i++)
            ;
        if (i == start)
            return -1;
        while (i < n && http_is_ows((unsigned char)s[i]))
            i++;
        if (i == n || s[i] != '=')
            return -1;
        for (i++; i < n && http_is_ows((unsigned char)s[i]); i++)
            ;
        if (i < n && s[i] == '"') {
            i = http_quoted_end(s, n, i);
            if (i == 0)
                return -1;
        } else {
            for (start = i; i < n && http_is_tchar((unsigned char)s[i]); i++)
                ;
            if (i == start)
                return -1;
        }
    }
    return 0;
}

/* What Content-Length and Transfer-Encoding fields say, before judging. */
struct http_body_fields {
    bool has_cl;
    uint64_t cl;
    unsigned te_fields;
    unsigned chunked; /* how many times chunked appears */
    bool last_chunked;
    bool other_coding;
};

/*
 * Reads Content-Length and Transfer-Encoding, and judges everything that
 * is malformed (EBAD) about them; a coding we lack is left in other_coding.
 */
static int
http_body_fields_read(const struct http_head *h, struct http_body_fields *b)
{
    const struct http_header *f;
    const char *el;
    size_t el_len, pos;
    bool chunked;
    unsigned i;

    memset(b, 0, sizeof(*b));
    for (i = 0; i < h->nheaders; i++) {
        f = &h->headers[i];
        if (http_str_ieq(f->name, f->name_len, "content-length")) {
            if (b->has_cl || http_parse_length(f->value, f->value_len, &b->cl) < 0)
                return HTTP_PARSE_EBAD;
            b->has_cl = true;
        } else if (http_str_ieq(f->name, f->name_len, "transfer-encoding")) {
            b->te_fields++;
            pos = 0;
            while (http_list_next(f->value, f->value_len, &pos, &el, &el_len)) {
                if (http_parse_coding(el, el_len, &chunked) < 0)
                    return HTTP_PARSE_EBAD;
                b->last_chunked = chunked;
                if (chunked)
                    b->chunked++;
                else
                    b->other_coding = true;
            }
        }
    }
    if (b->te_fields == 0)
        return 0;
    if (h->version_minor == 0 || b->has_cl || !b->last_chunked || b->chunked > 1)
        return HTTP_PARSE_EBAD;
    return 0;
}

static void
http_connection_flags(struct http_head *h)
{
    const struct http_header *f;
    unsigned i;

    for (i = 0; i < h->nheaders; i++) {
        f = &h->headers[i];
        if (!http_str_ieq(f->name, f->name_len, "connection"))
            continue;
        if (http_list_has_token(f->value, f->value_len, "close", 5))
            h->conn_close = true;
        if (http_list_has_token(f->value, f->value_len, "keep-alive", 10))
            h->conn_keep_alive = true;
    }
    if (h->version_minor == 0 && !h->conn_keep_alive)
        h->conn_close = true;
}

static void
http_head_reset(struct http_head *h)
{
    h->version_minor = 0;
    h->nheaders = 0;
    h->framing = HTTP_FRAMING_NONE;
    h->content_length = 0;
    h->conn_close = false;
    h->conn_keep_alive = false;
}

/* --- requests --------------------------------------------------------- */

static const struct {
    const char *name;
    size_t len;
    enum http_method id;
} http_methods[] = {
    {"GET", 3, HTTP_M_GET},         {"HEAD", 4, HTTP_M_HEAD},     {"POST", 4, HTTP_M_POST},
    {"PUT", 3, HTTP_M_PUT},         {"DELETE", 6, HTTP_M_DELETE}, {"PATCH", 5, HTTP_M_PATCH},
    {"OPTIONS", 7, HTTP_M_OPTIONS}, {"TRACE", 5, HTTP_M_TRACE},   {"PURGE", 5, HTTP_M_PURGE},
};

static enum http_method
http_method_id(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof(http_methods) / sizeof(http_methods[0]); i++)
        if (http_methods[i].len == n && memcmp(http_methods[i].name, s, n) == 0)
            return http_methods[i].id;
    return HTTP_M_OTHER;
}

/* Splits origin-form bytes [s, s + n) into path and query. */
static void
http_split_path(struct http_request *req, const char *s, size_t n)
{
    const char *q = memchr(s, '?', n);

    req->path = s;
    req->path_len = q ? (size_t)(q - s) : n;
    if (q) {
        req->query = q + 1;
        req->query_len = n - req->path_len - 1;
    }
}

/* Classifies and splits the target; returns 0 or EBAD. */
static int
http_parse_target(struct http_request *req)
{
    const char *t = req->target, *auth, *rest;
    size_t n = req->target_len, skip, i;

    if (memchr(t, '#', n))
        return HTTP_PARSE_EBAD;
    if (t[0] == '/') {
        http_split_path(req, t, n);
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (req->method_id != HTTP_M_OPTIONS)
            return HTTP_PARSE_EBAD;
        req->path = t;
        req->path_len = 1;
        return 0;
    }
    if (n >= 7 && http_mem_ieq(t, 4, "http", 4) && memcmp(t + 4, "://", 3) == 0)
        skip = 7;
    else if (n >= 8 && http_mem_ieq(t, 5, "https", 5) && memcmp(t + 5, "://", 3) == 0)
        skip = 8;
    else
        return HTTP_PARSE_EBAD; /* authority-form, another scheme, or junk */

    auth = t + skip;
    for (i = skip; i < n && t[i] != '/' && t[i] != '?'; i++)
        ;
    if (!http_host_valid(auth, (size_t)(t + i - auth)))
        return HTTP_PARSE_EBAD;
    req->absolute_form = true;
    req->host = auth;
    req->host_len = (size_t)(t + i - auth);
    rest = t + i;
    if (i < n && *rest == '/') {
        http_split_path(req, rest, n - i);
    } else {
        req->path = auth - 1;
        req->path_len = 1;
        if (i < n) {
            req->query = rest + 1;
            req->query_len = n - i - 1;
        }
    }
    return 0;
}

/* Parses the request line [s, s + n): returns 0 or an error code. */
static int
http_parse_request_line(const char *s, size_t n, struct http_request *req)
{
    const char *sp1, *sp2, *end = s + n;
    size_t i;
    int rc;

    sp1 = memchr(s, ' ', n);
    if (!sp1 || sp1 == s)
        return HTTP_PARSE_EBAD;
    for (i = 0; s + i < sp1; i++)
        if (!http_is_tchar((unsigned char)s[i]))
            return HTTP_PARSE_EBAD;
    sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1)
        return HTTP_PARSE_EBAD;
    rc = http_parse_version(sp2 + 1, (size_t)(end - sp2 - 1), &req->head.version_minor);
    if (rc < 0)
        return rc;

    req->method = s;
    req->method_len = (size_t)(sp1 - s);
    req->method_id = http_method_id(s, req->method_len);
    if (req->method_len == 7 && memcmp(s, "CONNECT", 7) == 0)
        return HTTP_PARSE_EMETHOD;
    req->target = sp1 + 1;
    req->target_len = (size_t)(sp2 - sp1 - 1);
    return http_parse_target(req);
}

static int
http_request_fields(struct http_request *req)
{
    struct http_head *h = &req->head;
    const struct http_header *f, *host = NULL;
    struct http_body_fields b;
    bool expect_100 = false, expect_other = false;
    unsigned i, nhost = 0;
    int rc;

    rc = http_body_fields_read(h, &b);
    if (rc < 0)
        return rc;
    for (i = 0; i < h->nheaders; i++) {
        f = &h->headers[i];
        if (http_str_ieq(f->name, f->name_len, "host")) {
            nhost++;
            host = f;
        } else if (http_str_ieq(f->name, f->name_len, "expect")) {
            if (http_str_ieq(f->value, f->value_len, "100-continue"))
                expect_100 = true;
            else
                expect_other = true;
        }
    }
    if (nhost > 1 || (nhost == 0 && h->version_minor == 1))
        return HTTP_PARSE_EBAD;
    if (host && !req->absolute_form) {
        if (!http_host_valid(host->value, host->value_len))
            return HTTP_PARSE_EBAD;
        req->host = host->value;
        req->host_len = host->value_len;
    }
    if (b.other_coding)
        return HTTP_PARSE_ENOT_IMPL;
    if (expect_other)
        return HTTP_PARSE_EEXPECT;
    req->expect_continue = expect_100 && h->version_minor == 1;

    if (b.te_fields > 0) {
        h->framing = HTTP_FRAMING_CHUNKED;
    } else if (b.has_cl) {
        h->framing = HTTP_FRAMING_LENGTH;
        h->content_length = b.cl;
    }
    http_connection_flags(h);
    return 0;
}

ssize_t
http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
                   struct http_request *req)
{
    size_t off = 0, line_len = 0, empty = 0;
    ssize_t r;
    int rc;

    assert(lim && req && (buf || len == 0));
    http_head_reset(&req->head);
    req->method = req->target = req->path = req->query = req->host = NULL;
    req->method_len = req->target_len = req->path_len = req->query_len = req->host_len = 0;
    req->method_id = HTTP_M_OTHER;
    req->absolute_form = false;
    req->expect_continue = false;

    for (;;) {
        HTTP_NEED(off);
        if (buf[off] != '\r')
            break;
        if (++empty > HTTP_EMPTY_LINES_MAX)
            return HTTP_PARSE_EBAD;
        HTTP_NEED(off + 1);
        if (buf[off + 1] != '\n')
            return HTTP_PARSE_EBAD;
        off += 2;
    }

    r = http_scan_start_line(buf, len, off, lim, false, HTTP_PARSE_EURI_TOO_LONG, &line_len);
    if (r <= 0)
        return r;
    rc = http_parse_request_line(buf + off, line_len, req);
    if (rc < 0)
        return rc;
    r = http_parse_fields(buf, len, (size_t)r, lim, &req->head);
    if (r <= 0)
        return r;
    rc = http_request_fields(req);
    if (rc < 0)
        return rc;
    return r;
}

/* --- responses -------------------------------------------------------- */

/* "HTTP/d.d SP 3DIGIT [ SP reason ]": returns 0 or an error code. */
static int
http_parse_status_line(const char *s, size_t n, struct http_response *resp)
{
    int rc;

    if (n < 12 || s[8] != ' ' || !http_is_digit((unsigned char)s[9]) || s[9] == '0' ||
        !http_is_digit((unsigned char)s[10]) || !http_is_digit((unsigned char)s[11]) ||
        (n > 12 && s[12] != ' '))
        return HTTP_PARSE_EBAD;
    rc = http_parse_version(s, 8, &resp->head.version_minor);
    if (rc < 0)
        return rc;
    resp->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    resp->reason = n > 12 ? s + 13 : s + 12;
    resp->reason_len = n > 12 ? n - 13 : 0;
    return 0;
}

static int
http_response_fields(struct http_response *resp, bool head_request)
{
    struct http_head *h = &resp->head;
    struct http_body_fields b;
    int rc;

    http_connection_flags(h);
    if (head_request || resp->status < 200 || resp->status == 204 || resp->status == 304)
        return 0;
    rc = http_body_fields_read(h, &b);
    if (rc < 0)
        return rc;
    if (b.other_coding)
        return HTTP_PARSE_ENOT_IMPL;
    if (b.te_fields > 0) {
        h->framing = HTTP_FRAMING_CHUNKED;
    } else if (b.has_cl) {
        h->framing = HTTP_FRAMING_LENGTH;
        h->content_length = b.cl;
    } else {
        h->framing = HTTP_FRAMING_UNTIL_CLOSE;
    }
    return 0;
}

ssize_t
http_parse_response(const char *buf, size_t len, const struct http_limits *lim, bool head_request,
                    struct http_response *resp)
{
    size_t line_len = 0;
    ssize_t r;
    int rc;

    assert(lim && resp && (buf || len == 0));
    http_head_reset(&resp->head);
    resp->status = 0;
    resp->reason = NULL;
    resp->reason_len = 0;

    r = http_scan_start_line(buf, len, 0, lim, true, HTTP_PARSE_EHEADERS_TOO_BIG, &line_len);
    if (r <= 0)
        return r;
    rc = http_parse_status_line(buf, line_len, resp);
    if (rc < 0)
        return rc;
    r = http_parse_fields(buf, len, (size_t)r, lim, &resp->head);
    if (r <= 0)
        return r;
    rc = http_response_fields(resp, head_request);
    if (rc < 0)
        return rc;
    return r;
}

/* --- chunked ---------------------------------------------------------- */

enum http_chunked_state {
    HTTP_CH_SIZE_START,  /* before the first hex digit of a chunk size */
    HTTP_CH_SIZE,        /* in the hex digits */
    HTTP_CH_SIZE_WS,     /* BWS after the size: only ';' may follow */
    HTTP_CH_EXT_NAME0,   /* after ';', BWS then a name */
    HTTP_CH_EXT_NAME,    /* in an extension name */
    HTTP_CH_EXT_NAME_WS, /* BWS after a name: '=' or ';' may follow */
    HTTP_CH_EXT_VAL0,    /* after '=', BWS then a token or quoted-string */
    HTTP_CH_EXT_TOKEN,   /* in a token value */
    HTTP_CH_EXT_QUOTED,  /* in a quoted-string value */
    HTTP_CH_EXT_QPAIR,   /* after a backslash in a quoted-string */
    HTTP_CH_EXT_VAL_END, /* just after a value */
    HTTP_CH_EXT_VAL_WS,  /* BWS after a value: only ';' may follow */
    HTTP_CH_SIZE_LF,     /* CR ending the size line seen */
    HTTP_CH_DATA,
    HTTP_CH_DATA_CR, /* the CRLF after the data */
    HTTP_CH_DATA_LF,
    HTTP_CH_TRAILER,      /* at the start of a trailer line */
    HTTP_CH_TRAILER_NAME, /* in a trailer field name */
    HTTP_CH_TRAILER_VAL,  /* in a trailer field value */
    HTTP_CH_TRAILER_LF,   /* CR ending a trailer field seen */
    HTTP_CH_END_LF,       /* CR of the final empty line seen */
    HTTP_CH_DONE,
    HTTP_CH_ERROR,
};

void
http_chunked_init(struct http_chunked *c, size_t max_trailer_bytes)
{
    memset(c, 0, sizeof(*c));
    c->state = HTTP_CH_SIZE_START;
    c->max_trailer_bytes = max_trailer_bytes;
}

bool
http_chunked_done(const struct http_chunked *c)
{
    return c->state == HTTP_CH_DONE;
}

/* The next state of the size line for byte ch, or HTTP_CH_ERROR. */
static int
http_chunked_size_line(struct http_chunked *c, unsigned char ch)
{
    bool ws = http_is_ows(ch), tchar = http_is_tchar(ch);
    int hex;

    switch (c->state) {
    case HTTP_CH_SIZE_START:
    case HTTP_CH_SIZE:
        hex = http_hex_value(ch);
        if (hex >= 0) {
            /* A 16th significant digit would take the size to 2^60 or more. */
            if (c->remaining >= (UINT64_C(1) << 56))
                return HTTP_CH_ERROR;
            c->remaining = (c->remaining << 4) | (uint64_t)hex;
            return HTTP_CH_SIZE;
        }
        if (c->state == HTTP_CH_SIZE_START)
            return HTTP_CH_ERROR;
        return ws ? HTTP_CH_SIZE_WS : ch == ';' ? HTTP_CH_EXT_NAME0 : HTTP_CH_ERROR;
    case HTTP_CH_SIZE_WS:
    case HTTP_CH_EXT_VAL_WS:
        return ws ? c->state : ch == ';' ? HTTP_CH_EXT_NAME0 : HTTP_CH_ERROR;
    case HTTP_CH_EXT_NAME0:
        return ws ? c->state : tchar ? HTTP_CH_EXT_NAME : HTTP_CH_ERROR;
    case HTTP_CH_EXT_NAME:
        if (tchar)
            return c->state;
        /* fall through */
    case HTTP_CH_EXT_NAME_WS:
        return ws          ? HTTP_CH_EXT_NAME_WS
               : ch == '=' ? HTTP_CH_EXT_VAL0
               : ch == ';' ? HTTP_CH_EXT_NAME0
                           : HTTP_CH_ERROR;
    case HTTP_CH_EXT_VAL0:
        return ws          ? c->state
               : tchar     ? HTTP_CH_EXT_TOKEN
               : ch == '"' ? HTTP_CH_EXT_QUOTED
                           : HTTP_CH_ERROR;
    case HTTP_CH_EXT_TOKEN:
        if (tchar)
            return c->state;
        /* fall through */
    case HTTP_CH_EXT_VAL_END:
        return ws ? HTTP_CH_EXT_VAL_WS : ch == ';' ? HTTP_CH_EXT_NAME0 : HTTP_CH_ERROR;
    case HTTP_CH_EXT_QUOTED:
        if (ch == '"')
            return HTTP_CH_EXT_VAL_END;
        if (ch == '\\')
            return HTTP_CH_EXT_QPAIR;
        return http_is_field_char(ch) ? c->state : HTTP_CH_ERROR;
    case HTTP_CH_EXT_QPAIR:
        return http_is_field_char(ch) ? HTTP_CH_EXT_QUOTED : HTTP_CH_ERROR;
    default:
        return HTTP_CH_ERROR;
    }
}

ssize_t
http_chunked_decode(struct http_chunked *c, const char *buf, size_t len, size_t *data_off,
                    size_t *data_len)
{
    size_t i = 0, n;
    unsigned char ch;

    *data_off = 0;
    *data_len = 0;
    if (c->state == HTTP_CH_ERROR)
        return HTTP_PARSE_EBAD;
    while (i < len) {
        ch = (unsigned char)buf[i];
        switch (c->state) {
        case HTTP_CH_DATA:
            n = len - i;
            if ((uint64_t)n > c->remaining)
                n = (size_t)c->remaining;
            *data_off = i;
            *data_len = n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = HTTP_CH_DATA_CR;
            return (ssize_t)(i + n);
        case HTTP_CH_DATA_CR:
            if (ch != '\r')
                goto fail;
            c->state = HTTP_CH_DATA_LF;
            break;
        case HTTP_CH_DATA_LF:
            if (ch != '\n')
                goto fail;
            c->state = HTTP_CH_SIZE_START;
            c->line_bytes = 0;
            break;
        case HTTP_CH_SIZE_LF:
            if (ch != '\n')
                goto fail;
            c->state = c->remaining > 0 ? HTTP_CH_DATA : HTTP_CH_TRAILER;
            break;
        case HTTP_CH_TRAILER:
            if (ch == '\r') {
                c->state = HTTP_CH_END_LF;
                break;
            }
            if (!http_is_tchar(ch)) /* obs-fold or junk */
                goto fail;
            c->state = HTTP_CH_TRAILER_NAME;
            goto trailer_byte;
        case HTTP_CH_TRAILER_NAME:
            if (ch == ':')
                c->state = HTTP_CH_TRAILER_VAL;
            else if (!http_is_tchar(ch))
                goto fail;
            goto trailer_byte;
        case HTTP_CH_TRAILER_VAL:
            if (ch == '\r')
                c->state = HTTP_CH_TRAILER_LF;
            else if (!http_is_field_char(ch))
                goto fail;
            goto trailer_byte;
        case HTTP_CH_TRAILER_LF:
            if (ch != '\n')
                goto fail;
            c->state = HTTP_CH_TRAILER;
            c->trailer_count++;
            goto trailer_byte;
        case HTTP_CH_END_LF:
            if (ch != '\n')
                goto fail;
            c->state = HTTP_CH_DONE;
            return (ssize_t)(i + 1);
        case HTTP_CH_DONE:
            return (ssize_t)i;
        case HTTP_CH_ERROR:
            return HTTP_PARSE_EBAD;
        default: /* the size line */
            if (ch == '\r') {
                if (c->state != HTTP_CH_SIZE && c->state != HTTP_CH_EXT_NAME &&
                    c->state != HTTP_CH_EXT_TOKEN && c->state != HTTP_CH_EXT_VAL_END)
                    goto fail;
                c->state = HTTP_CH_SIZE_LF;
                break;
            }
            if (++c->line_bytes > c->max_trailer_bytes)
                goto fail;
            c->state = http_chunked_size_line(c, ch);
            if (c->state == HTTP_CH_ERROR)
                goto fail;
            break;
        }
        i++;
        continue;
    trailer_byte:
        if (++c->trailer_bytes > c->max_trailer_bytes)
            goto fail;
        i++;
    }
    return (ssize_t)i;

fail:
    c->state = HTTP_CH_ERROR;
    return HTTP_PARSE_EBAD;
}
