/*
 * cache_key: primary keys, Vary name lists and variant keys (cache_key.h).
 *
 * Everything is written through struct ck_out, which appends to the
 * caller's buffer and turns the first write that does not fit into a
 * sticky overflow, so the builders read as straight-line code and check
 * once at the end. Sorting (query parameters, Vary names) works on small
 * fixed arrays of spans on the stack: nothing here allocates, and the
 * work per call is bounded by the size of the request head.
 *
 * Why the parts can be joined with '\n': the parser rejects CTLs in the
 * target, the Host and every field value, and the names written here are
 * tokens, so '\n' can only come from this file. See cache_key.h for the
 * argument that keys are unambiguous.
 */
#include "cache_key.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define CK_SEP '\n'

struct ck_out {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
};

struct ck_span {
    const char *p;
    size_t n;
};

/* --- output ------------------------------------------------------------ */

static void
ck_out_init(struct ck_out *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap > (size_t)SSIZE_MAX ? (size_t)SSIZE_MAX : cap;
    w->len = 0;
    w->overflow = false;
}

static void
ck_out_mem(struct ck_out *w, const char *s, size_t n)
{
    if (w->overflow || n == 0)
        return;
    if (n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void
ck_out_byte(struct ck_out *w, char c)
{
    ck_out_mem(w, &c, 1);
}

static unsigned char
ck_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static void
ck_out_lower(struct ck_out *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n && !w->overflow; i++)
        ck_out_byte(w, (char)ck_lower((unsigned char)s[i]));
}

static ssize_t
ck_out_end(const struct ck_out *w)
{
    return w->overflow ? -1 : (ssize_t)w->len;
}

/* --- characters and lists ---------------------------------------------- */

static bool
ck_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static bool
ck_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
ck_is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ck_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static void
ck_trim(const char **s, size_t *n)
{
    while (*n > 0 && ck_is_ows((unsigned char)(*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ck_is_ows((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

static bool
ck_mem_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* Bytewise order, a proper prefix first; ci compares ASCII letters lower-cased. */
static int
ck_span_cmp(const struct ck_span *a, const struct ck_span *b, bool ci)
{
    size_t n = a->n < b->n ? a->n : b->n;
    unsigned char x, y;

    for (size_t i = 0; i < n; i++) {
        x = (unsigned char)a->p[i];
        y = (unsigned char)b->p[i];
        if (ci) {
            x = ck_lower(x);
            y = ck_lower(y);
        }
        if (x != y)
            return x < y ? -1 : 1;
    }
    return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
}

bool
cache_key_name_valid(const char *name)
{
    return name != NULL && ck_is_token(name, strlen(name));
}

/* --- primary key ---------------------------------------------------------- */

/* RFC 3986 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). */
static bool
ck_scheme_valid(const char *s)
{
    unsigned char c;

    if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    for (size_t i = 1; (c = (unsigned char)s[i]) != '\0'; i++)
        if (!((c >= '0' && c <= '9') || (ck_lower(c) >= 'a' && ck_lower(c) <= 'z') || c == '+' ||
              c == '-' || c == '.'))
            return false;
    return true;
}

/*
 * host [":" port] as the parser admitted it (uri-host and at most five
 * digits). A name loses one trailing dot ("example.com." is the same
 * host); an IP literal has none to lose, and a lone "." is kept so that it
 * never looks like a missing Host.
 */
static void
ck_put_host(struct ck_out *w, const char *h, size_t n, unsigned default_port)
{
    size_t name_len, name_out, i;
    unsigned long port = 0;
    const char *end;
    char num[8];
    int len;

    if (h == NULL)
        return;
    if (n > 0 && h[0] == '[') {
        end = memchr(h, ']', n);
        name_len = end != NULL ? (size_t)(end - h) + 1 : n;
        name_out = name_len;
    } else {
        end = memchr(h, ':', n);
        name_len = end != NULL ? (size_t)(end - h) : n;
        name_out = name_len > 1 && h[name_len - 1] == '.' ? name_len - 1 : name_len;
    }
    ck_out_lower(w, h, name_out);
    if (name_len >= n || h[name_len] != ':' || name_len + 1 == n)
        return; /* no port, or an empty one: the default */
    for (i = name_len + 1; i < n; i++) {
        if (h[i] < '0' || h[i] > '9' || i - name_len > 5) {
            /* Not what the parser admits; keep it verbatim rather than guess. */
            ck_out_mem(w, h + name_len, n - name_len);
            return;
        }
        port = port * 10 + (unsigned long)(h[i] - '0');
    }
    if (default_port != 0 && port == default_port)
        return;
    len = snprintf(num, sizeof(num), ":%lu", port);
    ck_out_mem(w, num, (size_t)len);
}

static bool
ck_param_dropped(const char *p, size_t n, const struct cache_key_opts *o)
{
    const char *eq = memchr(p, '=', n);
    size_t name_len = eq != NULL ? (size_t)(eq - p) : n;

    for (size_t i = 0; i < o->ndrop_params; i++)
        if (ck_mem_eq(p, name_len, o->drop_params[i], strlen(o->drop_params[i])))
            return true;
    return false;
}

/* The next '&'-separated parameter of q[0..n) from *pos; false after the last. */
static bool
ck_param_next(const char *q, size_t n, size_t *pos, struct ck_span *out)
{
    const char *amp;

    if (*pos > n)
        return false;
    out->p = q + *pos;
    amp = memchr(out->p, '&', n - *pos);
    out->n = amp != NULL ? (size_t)(amp - out->p) : n - *pos;
    *pos += out->n + 1;
    return true;
}

/*
 * The normalised query (see struct cache_key_opts). Parameters are sorted
 * by a stable insertion sort over at most CACHE_KEY_SORT_MAX spans; with
 * more, they keep their order. That only costs hits, never a false one: a
 * sorted query has at most CACHE_KEY_SORT_MAX parameters and an unsorted
 * one more, so the two forms never meet.
 */
static void
ck_put_query_normalised(struct ck_out *w, const char *q, size_t n, const struct cache_key_opts *o)
{
    struct ck_span spans[CACHE_KEY_SORT_MAX], p, tmp;
    size_t pos = 0, nkept = 0, i, j;
    bool first = true;

    if (o->sort_query) {
        while (ck_param_next(q, n, &pos, &p)) {
            if (p.n == 0 || ck_param_dropped(p.p, p.n, o))
                continue;
            if (nkept < CACHE_KEY_SORT_MAX)
                spans[nkept] = p;
            nkept++;
        }
        if (nkept <= CACHE_KEY_SORT_MAX) {
            for (i = 1; i < nkept; i++) {
                tmp = spans[i];
                for (j = i; j > 0 && ck_span_cmp(&spans[j - 1], &tmp, false) > 0; j--)
                    spans[j] = spans[j - 1];
                spans[j] = tmp;
            }
            for (i = 0; i < nkept; i++) {
                ck_out_byte(w, i == 0 ? '?' : '&');
                ck_out_mem(w, spans[i].p, spans[i].n);
            }
            return;
        }
        pos = 0;
    }
    while (ck_param_next(q, n, &pos, &p)) {
        if (p.n == 0 || ck_param_dropped(p.p, p.n, o))
            continue;
        ck_out_byte(w, first ? '?' : '&');
        ck_out_mem(w, p.p, p.n);
        first = false;
    }
}

static void
ck_put_header(struct ck_out *w, const struct http_head *h, const char *name)
{
    size_t name_len = strlen(name);
    bool found = false;

    ck_out_byte(w, CK_SEP);
    ck_out_byte(w, 'h');
    ck_out_lower(w, name, name_len);
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *f = &h->headers[i];

        if (!http_mem_ieq(f->name, f->name_len, name, name_len))
            continue;
        if (found)
            ck_out_mem(w, ", ", 2);
        else
            ck_out_byte(w, '=');
        ck_out_mem(w, f->value, f->value_len);
        found = true;
    }
}

/* Finds cookie name in one Cookie field value ("a=b; c=d"). */
static bool
ck_cookie_find(const char *v, size_t n, const char *name, size_t name_len, struct ck_span *val)
{
    const char *pair, *semi, *eq, *key;
    size_t pos = 0, pair_len, key_len;

    while (pos <= n) {
        pair = v + pos;
        semi = memchr(pair, ';', n - pos);
        pair_len = semi != NULL ? (size_t)(semi - pair) : n - pos;
        pos += pair_len + 1;
        eq = memchr(pair, '=', pair_len);
        if (eq == NULL)
            continue;
        key = pair;
        key_len = (size_t)(eq - pair);
        ck_trim(&key, &key_len);
        if (!ck_mem_eq(key, key_len, name, name_len))
            continue;
        val->p = eq + 1;
        val->n = (size_t)(pair + pair_len - val->p);
        ck_trim(&val->p, &val->n);
        return true;
    }
    return false;
}

static void
ck_put_cookie(struct ck_out *w, const struct http_head *h, const char *name)
{
    size_t name_len = strlen(name);
    struct ck_span val;

    ck_out_byte(w, CK_SEP);
    ck_out_byte(w, 'c');
    ck_out_mem(w, name, name_len);
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *f = &h->headers[i];

        if (!http_mem_ieq(f->name, f->name_len, "cookie", 6))
            continue;
        if (ck_cookie_find(f->value, f->value_len, name, name_len, &val)) {
            ck_out_byte(w, '=');
            ck_out_mem(w, val.p, val.n);
            return;
        }
    }
}

ssize_t
cache_key_primary(char *buf, size_t cap, const struct http_request *req, const char *scheme,
                  const struct cache_key_opts *o)
{
    static const struct cache_key_opts none;
    struct ck_out w;
    unsigned default_port = 0;
    size_t i;

    if (!ck_scheme_valid(scheme))
        return -1;
    if (o == NULL)
        o = &none;
    ck_out_init(&w, buf, cap);

    if (req->method_id == HTTP_M_GET || req->method_id == HTTP_M_HEAD) {
        ck_out_byte(&w, 'G');
    } else {
        ck_out_byte(&w, 'M');
        ck_out_mem(&w, req->method, req->method_len);
    }

    ck_out_byte(&w, CK_SEP);
    ck_out_lower(&w, scheme, strlen(scheme));
    if (http_str_ieq(scheme, strlen(scheme), "http"))
        default_port = 80;
    else if (http_str_ieq(scheme, strlen(scheme), "https"))
        default_port = 443;

    ck_out_byte(&w, CK_SEP);
    ck_put_host(&w, req->host, req->host_len, default_port);

    ck_out_byte(&w, CK_SEP);
    ck_out_mem(&w, req->path, req->path_len);
    if (req->query != NULL && !o->ignore_query) {
        if (o->sort_query || o->ndrop_params > 0) {
            ck_put_query_normalised(&w, req->query, req->query_len, o);
        } else {
            ck_out_byte(&w, '?');
            ck_out_mem(&w, req->query, req->query_len);
        }
    }

    for (i = 0; i < o->nheaders; i++)
        ck_put_header(&w, &req->head, o->headers[i]);
    for (i = 0; i < o->ncookies; i++)
        ck_put_cookie(&w, &req->head, o->cookies[i]);
    return ck_out_end(&w);
}

/* --- Vary ------------------------------------------------------------------- */

ssize_t
cache_key_vary_names(char *buf, size_t cap, const struct http_head *resp_head)
{
    struct ck_span names[CACHE_KEY_VARY_MAX], el;
    size_t n = 0, pos, i, j;
    struct ck_out w;
    int c;

    for (unsigned k = 0; k < resp_head->nheaders; k++) {
        const struct http_header *f = &resp_head->headers[k];

        if (!http_mem_ieq(f->name, f->name_len, "vary", 4))
            continue;
        pos = 0;
        while (http_list_next(f->value, f->value_len, &pos, &el.p, &el.n)) {
            if (el.n == 0)
                continue;
            if (!ck_is_token(el.p, el.n) || (el.n == 1 && el.p[0] == '*'))
                return -1;
            /* Sorted insert, case-insensitive, dropping duplicates. */
            for (i = 0; i < n && (c = ck_span_cmp(&names[i], &el, true)) < 0; i++)
                ;
            if (i < n && c == 0)
                continue;
            if (n == CACHE_KEY_VARY_MAX)
                return -1;
            for (j = n; j > i; j--)
                names[j] = names[j - 1];
            names[i] = el;
            n++;
        }
    }

    ck_out_init(&w, buf, cap);
    for (i = 0; i < n; i++) {
        if (i > 0)
            ck_out_byte(&w, ',');
        ck_out_lower(&w, names[i].p, names[i].n);
    }
    return ck_out_end(&w);
}

/*
 * A qvalue (RFC 9110 12.4.2): 1 when above 0, 0 when 0, -1 when invalid.
 * "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]
 */
static int
ck_qvalue(const char *s, size_t n)
{
    bool nonzero = false;
    size_t i;

    if (n == 0 || (s[0] != '0' && s[0] != '1'))
        return -1;
    if (n > 1 && (s[1] != '.' || n > 5))
        return -1;
    for (i = 2; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || (s[0] == '1' && s[i] != '0'))
            return -1;
        nonzero |= s[i] != '0';
    }
    return s[0] == '1' || nonzero ? 1 : 0;
}

/* Whether an Accept-Encoding element "coding *(OWS ; OWS param)" has q > 0. */
static bool
ck_weight_positive(const char *params, size_t n)
{
    const char *p, *semi;
    size_t pos = 0, len;

    while (pos < n) {
        p = params + pos;
        semi = memchr(p, ';', n - pos);
        len = semi != NULL ? (size_t)(semi - p) : n - pos;
        pos += len + 1;
        ck_trim(&p, &len);
        if (len >= 2 && ck_lower((unsigned char)p[0]) == 'q' && p[1] == '=')
            return ck_qvalue(p + 2, len - 2) > 0;
    }
    return true;
}

/* The codings a variant tells apart, in the order written. */
static const char *const ck_codings[] = {"br", "deflate", "gzip", "zstd"};
#define CK_NCODINGS (sizeof(ck_codings) / sizeof(ck_codings[0]))

static void
ck_put_accept_encoding(struct ck_out *w, const struct http_head *h)
{
    bool listed[CK_NCODINGS] = {false}, ok[CK_NCODINGS] = {false};
    bool star_listed = false, star_ok = false, first = true, positive;
    const char *el, *coding;
    size_t el_len, coding_len, pos, i;

    for (unsigned k = 0; k < h->nheaders; k++) {
        const struct http_header *f = &h->headers[k];

        if (!http_mem_ieq(f->name, f->name_len, "accept-encoding", 15))
            continue;
        pos = 0;
        while (http_list_next(f->value, f->value_len, &pos, &el, &el_len)) {
            coding = el;
            for (coding_len = 0; coding_len < el_len && el[coding_len] != ';'; coding_len++)
                ;
            positive = ck_weight_positive(el + coding_len, el_len - coding_len);
            ck_trim(&coding, &coding_len);
            if (http_mem_ieq(coding, coding_len, "*", 1)) {
                if (!star_listed)
                    star_ok = positive;
                star_listed = true;
                continue;
            }
            if (http_mem_ieq(coding, coding_len, "x-gzip", 6)) {
                coding = "gzip";
                coding_len = 4;
            }
            for (i = 0; i < CK_NCODINGS; i++) {
                if (listed[i] ||
                    !http_mem_ieq(coding, coding_len, ck_codings[i], strlen(ck_codings[i])))
                    continue;
                listed[i] = true;
                ok[i] = positive;
            }
        }
    }
    ck_out_byte(w, '=');
    for (i = 0; i < CK_NCODINGS; i++) {
        if (!(listed[i] ? ok[i] : star_listed && star_ok))
            continue;
        if (!first)
            ck_out_byte(w, ',');
        ck_out_mem(w, ck_codings[i], strlen(ck_codings[i]));
        first = false;
    }
}

/* One list element with runs of OWS outside quoted strings made one SP. */
static void
ck_put_element(struct ck_out *w, const char *s, size_t n)
{
    bool quoted = false, space = false;
    unsigned char c;

    for (size_t i = 0; i < n && !w->overflow; i++) {
        c = (unsigned char)s[i];
        if (!quoted && ck_is_ows(c)) {
            space = true;
            continue;
        }
        if (space)
            ck_out_byte(w, ' ');
        space = false;
        ck_out_byte(w, (char)c);
        if (quoted && c == '\\' && i + 1 < n)
            ck_out_byte(w, s[++i]);
        else if (c == '"')
            quoted = !quoted;
    }
}

static void
ck_put_field_list(struct ck_out *w, const struct http_head *h, const char *name, size_t name_len)
{
    const char *el;
    size_t el_len, pos;
    bool found = false, first = true;

    for (unsigned k = 0; k < h->nheaders; k++) {
        const struct http_header *f = &h->headers[k];

        if (!http_mem_ieq(f->name, f->name_len, name, name_len))
            continue;
        if (!found)
            ck_out_byte(w, '=');
        found = true;
        pos = 0;
        while (http_list_next(f->value, f->value_len, &pos, &el, &el_len)) {
            if (el_len == 0)
                continue;
            if (!first)
                ck_out_byte(w, ',');
            ck_put_element(w, el, el_len);
            first = false;
        }
    }
}

ssize_t
cache_key_variant(char *buf, size_t cap, const char *vary, size_t vary_len,
                  const struct http_request *req)
{
    struct ck_out w;
    const char *name;
    size_t name_len, pos = 0;
    bool first = true;

    if (vary_len == 0)
        return 0; /* vary may then be NULL */
    ck_out_init(&w, buf, cap);
    while (http_list_next(vary, vary_len, &pos, &name, &name_len)) {
        if (name_len == 0)
            continue;
        if (!ck_is_token(name, name_len) || (name_len == 1 && name[0] == '*'))
            return -1;
        if (!first)
            ck_out_byte(&w, CK_SEP);
        first = false;
        ck_out_lower(&w, name, name_len);
        if (http_mem_ieq(name, name_len, "accept-encoding", 15))
            ck_put_accept_encoding(&w, &req->head);
        else
            ck_put_field_list(&w, &req->head, name, name_len);
    }
    return ck_out_end(&w);
}
