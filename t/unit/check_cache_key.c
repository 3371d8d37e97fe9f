/*
 * check_cache_key: unit tests of primary keys, Vary name lists and variant
 * keys. Requests and responses are literal message text run through the
 * real parser, from exact-size heap copies so AddressSanitizer catches a
 * read past what the parser saw. Keys are compared as whole strings, so a
 * failure shows both keys; "(-1)" stands for a -1 return.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_key.h"
#include "http_parser.h"

/* A request line plus fields: REQ("GET /a", "Host: h\r\n"). */
#define REQ(line, fields) line " HTTP/1.1\r\n" fields "\r\n"
/* A GET of target at example.com with extra fields. */
#define GET(target, fields) REQ("GET " target, "Host: example.com\r\n" fields)

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const struct http_limits test_lim = {8192, 65536, HTTP_HEADERS_CAP};

static struct http_request test_rq;
static struct http_response test_rs;

/* Rotating result strings, so one assertion may hold several keys. */
static char test_out[8][16384];
static unsigned test_next;

/* Heap copy of exactly strlen(s) bytes. */
static char *
test_copy(const char *s)
{
    size_t len = strlen(s);
    char *p = malloc(len ? len : 1);

    ck_assert_ptr_nonnull(p);
    memcpy(p, s, len);
    return p;
}

static const char *
test_result(const char *buf, ssize_t n)
{
    char *out = test_out[test_next++ % NELEMS(test_out)];

    if (n < 0)
        return "(-1)";
    ck_assert_int_lt(n, sizeof(test_out[0]));
    memcpy(out, buf, (size_t)n);
    out[n] = '\0';
    ck_assert_msg(strlen(out) == (size_t)n, "key holds a NUL");
    return out;
}

/* Parses raw with the real parser, failing the test when it is not a request. */
static char *
test_parse_req(const char *raw)
{
    char *copy = test_copy(raw);
    ssize_t rc = http_parse_request(copy, strlen(raw), &test_lim, &test_rq);

    ck_assert_msg(rc == (ssize_t)strlen(raw), "parse of \"%s\" gave %zd", raw, rc);
    return copy;
}

/* The primary key of raw under scheme and o, capacity cap. */
static const char *
test_key_cap(const char *raw, const char *scheme, const struct cache_key_opts *o, size_t cap)
{
    char buf[16384], *copy = test_parse_req(raw);
    ssize_t n;

    ck_assert_uint_le(cap, sizeof(buf));
    n = cache_key_primary(buf, cap, &test_rq, scheme, o);
    free(copy);
    return test_result(buf, n);
}

static const char *
test_key_o(const char *raw, const struct cache_key_opts *o)
{
    return test_key_cap(raw, "http", o, 16384);
}

static const char *
test_key(const char *raw)
{
    return test_key_o(raw, NULL);
}

/* The Vary name list of the response head raw, capacity cap. */
static const char *
test_vary_cap(const char *raw, size_t cap)
{
    char buf[16384], *copy = test_copy(raw);
    ssize_t n, rc = http_parse_response(copy, strlen(raw), &test_lim, false, &test_rs);

    ck_assert_msg(rc == (ssize_t)strlen(raw), "parse of \"%s\" gave %zd", raw, rc);
    ck_assert_uint_le(cap, sizeof(buf));
    n = cache_key_vary_names(buf, cap, &test_rs.head);
    free(copy);
    return test_result(buf, n);
}

static const char *
test_vary(const char *fields)
{
    char raw[16384];

    snprintf(raw, sizeof(raw), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n%s\r\n", fields);
    return test_vary_cap(raw, 16384);
}

/* The variant key of raw under the name list vary, capacity cap. */
static const char *
test_variant_cap(const char *vary, const char *raw, size_t cap)
{
    char buf[16384], *copy = test_parse_req(raw);
    ssize_t n;

    ck_assert_uint_le(cap, sizeof(buf));
    n = cache_key_variant(buf, cap, vary, strlen(vary), &test_rq);
    free(copy);
    return test_result(buf, n);
}

static const char *
test_variant(const char *vary, const char *raw)
{
    return test_variant_cap(vary, raw, 16384);
}

/* The accept-encoding variant of a request with the given fields. */
static const char *
test_ae(const char *fields)
{
    char raw[4096];

    snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n", fields);
    return test_variant("accept-encoding", raw);
}

/* --- primary key ------------------------------------------------------- */

START_TEST(test_method_class)
{
    const char *get = test_key(GET("/a", ""));

    ck_assert_str_eq(get, "G\nhttp\nexample.com\n/a");
    ck_assert_str_eq(test_key(REQ("HEAD /a", "Host: example.com\r\n")), get);
    ck_assert_str_eq(test_key(REQ("POST /a", "Host: example.com\r\nContent-Length: 0\r\n")),
                     "MPOST\nhttp\nexample.com\n/a");
    ck_assert_str_eq(test_key(REQ("PUT /a", "Host: example.com\r\n")),
                     "MPUT\nhttp\nexample.com\n/a");
    ck_assert_str_eq(test_key(REQ("DELETE /a", "Host: example.com\r\n")),
                     "MDELETE\nhttp\nexample.com\n/a");
    ck_assert_str_eq(test_key(REQ("OPTIONS /a", "Host: example.com\r\n")),
                     "MOPTIONS\nhttp\nexample.com\n/a");
    /* Extension methods: case-sensitive tokens, and "G" is not GET's class. */
    ck_assert_str_eq(test_key(REQ("get /a", "Host: example.com\r\n")),
                     "Mget\nhttp\nexample.com\n/a");
    ck_assert_str_eq(test_key(REQ("G /a", "Host: example.com\r\n")), "MG\nhttp\nexample.com\n/a");
    ck_assert_str_ne(test_key(REQ("MPOST /a", "Host: example.com\r\n")),
                     test_key(REQ("POST /a", "Host: example.com\r\n")));
}
END_TEST

START_TEST(test_scheme)
{
    const char *raw = GET("/a", "");

    ck_assert_str_eq(test_key_cap(raw, "https", NULL, 16384), "G\nhttps\nexample.com\n/a");
    ck_assert_str_eq(test_key_cap(raw, "HTTPS", NULL, 16384), "G\nhttps\nexample.com\n/a");
    ck_assert_str_ne(test_key_cap(raw, "http", NULL, 16384),
                     test_key_cap(raw, "https", NULL, 16384));
    ck_assert_str_eq(test_key_cap(raw, "", NULL, 16384), "(-1)");
    ck_assert_str_eq(test_key_cap(raw, "ht\ntp", NULL, 16384), "(-1)");
    ck_assert_str_eq(test_key_cap(raw, "1http", NULL, 16384), "(-1)");
    ck_assert_str_eq(test_key_cap(raw, NULL, NULL, 16384), "(-1)");
}
END_TEST

START_TEST(test_host_normalise)
{
    static const struct {
        const char *scheme, *host, *expect;
    } cases[] = {
        {"http", "example.com", "example.com"},
        {"http", "EXAMPLE.Com", "example.com"},
        {"http", "example.com:80", "example.com"},
        {"http", "example.com:080", "example.com"},
        {"http", "example.com:", "example.com"},
        {"http", "example.com.", "example.com"},
        {"http", "Example.COM.:80", "example.com"},
        {"http", "example.com:443", "example.com:443"},
        {"http", "example.com:8080", "example.com:8080"},
        {"http", "example.com.:08080", "example.com:8080"},
        {"http", "example.com:0", "example.com:0"},
        {"https", "example.com:443", "example.com"},
        {"https", "example.com:80", "example.com:80"},
        {"https", "example.com:8443", "example.com:8443"},
        {"http", "10.0.0.1:80", "10.0.0.1"},
        {"http", "[::1]:80", "[::1]"},
        {"http", "[2001:DB8::1]:8080", "[2001:db8::1]:8080"},
        {"http", ".", "."},
        {"ws", "example.com:80", "example.com:80"},
    };
    char raw[512], expect[512];

    for (size_t i = 0; i < NELEMS(cases); i++) {
        snprintf(raw, sizeof(raw), "GET /a HTTP/1.1\r\nHost: %s\r\n\r\n", cases[i].host);
        snprintf(expect, sizeof(expect), "G\n%s\n%s\n/a", cases[i].scheme, cases[i].expect);
        ck_assert_str_eq(test_key_cap(raw, cases[i].scheme, NULL, 16384), expect);
    }
}
END_TEST

START_TEST(test_host_forms)
{
    /* Absolute-form names the host; the Host field is then ignored. */
    ck_assert_str_eq(test_key(REQ("GET http://Example.com:80/a?x", "Host: other\r\n")),
                     test_key(GET("/a?x", "")));
    ck_assert_str_eq(test_key(REQ("GET http://example.com", "Host: other\r\n")),
                     test_key(GET("/", "")));
    ck_assert_str_eq(test_key(REQ("GET http://example.com?q", "Host: other\r\n")),
                     test_key(GET("/?q", "")));
    /* HTTP/1.0 without Host: an empty host part, which no Host gives. */
    ck_assert_str_eq(test_key("GET /a HTTP/1.0\r\n\r\n"), "G\nhttp\n\n/a");
    ck_assert_str_eq(test_key("GET /a HTTP/1.0\r\nHost: example.com\r\n\r\n"),
                     test_key(GET("/a", "")));
}
END_TEST

START_TEST(test_path_as_received)
{
    ck_assert_str_eq(test_key(GET("/A/%7e/./b//", "")), "G\nhttp\nexample.com\n/A/%7e/./b//");
    ck_assert_str_ne(test_key(GET("/a", "")), test_key(GET("/A", "")));
    ck_assert_str_ne(test_key(GET("/%7e", "")), test_key(GET("/~", "")));
    ck_assert_str_ne(test_key(GET("/a", "")), test_key(GET("/a/", "")));
}
END_TEST

START_TEST(test_query_as_is)
{
    ck_assert_str_eq(test_key(GET("/a?b=2&a=1", "")), "G\nhttp\nexample.com\n/a?b=2&a=1");
    ck_assert_str_ne(test_key(GET("/a?b=2&a=1", "")), test_key(GET("/a?a=1&b=2", "")));
    ck_assert_str_eq(test_key(GET("/a?&&x", "")), "G\nhttp\nexample.com\n/a?&&x");
    /* Decision: as received, an empty query is not no query (RFC 3986 6.2.3). */
    ck_assert_str_eq(test_key(GET("/a?", "")), "G\nhttp\nexample.com\n/a?");
    ck_assert_str_eq(test_key(GET("/a", "")), "G\nhttp\nexample.com\n/a");
}
END_TEST

START_TEST(test_query_sorted)
{
    struct cache_key_opts o = {.sort_query = true};

    ck_assert_str_eq(test_key_o(GET("/a?b=2&a=1&c", ""), &o), "G\nhttp\nexample.com\n/a?a=1&b=2&c");
    ck_assert_str_eq(test_key_o(GET("/a?c&a=1&b=2", ""), &o),
                     test_key_o(GET("/a?b=2&c&a=1", ""), &o));
    /* By the whole "name=value" bytes, a prefix first. */
    ck_assert_str_eq(test_key_o(GET("/a?a=2&a=1&a&a=", ""), &o),
                     "G\nhttp\nexample.com\n/a?a&a=&a=1&a=2");
    ck_assert_str_eq(test_key_o(GET("/a?b=1&a=1&B=1", ""), &o),
                     "G\nhttp\nexample.com\n/a?B=1&a=1&b=1");
    /* Repeated parameters keep their multiplicity. */
    ck_assert_str_ne(test_key_o(GET("/a?x=1&x=1", ""), &o), test_key_o(GET("/a?x=1", ""), &o));
    /* Normalised: empty parameters go, and an empty query is none. */
    ck_assert_str_eq(test_key_o(GET("/a?&b&&a&", ""), &o), "G\nhttp\nexample.com\n/a?a&b");
    ck_assert_str_eq(test_key_o(GET("/a?", ""), &o), "G\nhttp\nexample.com\n/a");
    ck_assert_str_eq(test_key_o(GET("/a?&&", ""), &o), "G\nhttp\nexample.com\n/a");
    ck_assert_str_eq(test_key_o(GET("/a", ""), &o), "G\nhttp\nexample.com\n/a");
    /* Not percent-decoded. */
    ck_assert_str_ne(test_key_o(GET("/a?%61=1", ""), &o), test_key_o(GET("/a?a=1", ""), &o));
}
END_TEST

/* A query of n parameters "pNNN=v" in descending order, after prefix. */
static void
test_many_params(char *raw, size_t cap, unsigned n, const char *prefix)
{
    size_t len = (size_t)snprintf(raw, cap, "GET /a?%s", prefix);

    for (unsigned i = n; i > 0; i--)
        len +=
            (size_t)snprintf(raw + len, cap - len, "%sp%03u=v", i == n && !*prefix ? "" : "&", i);
    snprintf(raw + len, cap - len, " HTTP/1.1\r\nHost: h\r\n\r\n");
}

START_TEST(test_query_sort_limit)
{
    char *drop[] = {"drop"};
    struct cache_key_opts o = {.sort_query = true};
    char raw[8192];
    const char *k, *q;

    /* At the limit: sorted. */
    test_many_params(raw, sizeof(raw), CACHE_KEY_SORT_MAX, "");
    k = test_key_o(raw, &o);
    q = strchr(k, '?');
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(strncmp(q, "?p001=v&p002=v&", 15), 0);

    /* One more: the order as received, documented fallback. */
    test_many_params(raw, sizeof(raw), CACHE_KEY_SORT_MAX + 1, "");
    k = test_key_o(raw, &o);
    q = strchr(k, '?');
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(strncmp(q, "?p129=v&p128=v&", 15), 0);

    /* Counted after dropping and without empty ones: sorted again. */
    o.drop_params = drop;
    o.ndrop_params = 1;
    test_many_params(raw, sizeof(raw), CACHE_KEY_SORT_MAX, "drop=1&&");
    k = test_key_o(raw, &o);
    q = strchr(k, '?');
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(strncmp(q, "?p001=v&p002=v&", 15), 0);
    ck_assert_ptr_null(strstr(k, "drop"));
}
END_TEST

START_TEST(test_query_drop)
{
    char *drop[] = {"utm_source", "fbclid", "x"};
    struct cache_key_opts o = {.drop_params = drop, .ndrop_params = NELEMS(drop)};
    const char *plain = "G\nhttp\nexample.com\n/a?a=1&b=2";

    ck_assert_str_eq(test_key_o(GET("/a?utm_source=z&a=1&b=2", ""), &o), plain);
    ck_assert_str_eq(test_key_o(GET("/a?a=1&fbclid=q&b=2", ""), &o), plain);
    ck_assert_str_eq(test_key_o(GET("/a?a=1&b=2&x", ""), &o), plain);
    ck_assert_str_eq(test_key_o(GET("/a?x=1&a=1&x=2&b=2&x=", ""), &o), plain);
    ck_assert_str_eq(test_key_o(GET("/a?a=1&&b=2&", ""), &o), plain);
    /* Order of the rest is kept without sort_query. */
    ck_assert_str_eq(test_key_o(GET("/a?b=2&x=0&a=1", ""), &o), "G\nhttp\nexample.com\n/a?b=2&a=1");
    /* All dropped: the same as no query. */
    ck_assert_str_eq(test_key_o(GET("/a?utm_source=1&fbclid=2", ""), &o),
                     "G\nhttp\nexample.com\n/a");
    ck_assert_str_eq(test_key_o(GET("/a?", ""), &o), test_key_o(GET("/a", ""), &o));
    /* Names match exactly and case-sensitively, values are not names. */
    ck_assert_str_eq(test_key_o(GET("/a?X=1&xx=2&utm_source_x=3&a=x", ""), &o),
                     "G\nhttp\nexample.com\n/a?X=1&xx=2&utm_source_x=3&a=x");
    ck_assert_str_eq(test_key_o(GET("/a?=x&utm=1", ""), &o), "G\nhttp\nexample.com\n/a?=x&utm=1");
    /* With sorting too. */
    o.sort_query = true;
    ck_assert_str_eq(test_key_o(GET("/a?b=2&x=0&a=1&fbclid=1", ""), &o), plain);
}
END_TEST

START_TEST(test_ignore_query)
{
    char *drop[] = {"a"};
    struct cache_key_opts o = {.ignore_query = true};
    const char *bare = "G\nhttp\nexample.com\n/a";

    ck_assert_str_eq(test_key_o(GET("/a?x=1&y=2", ""), &o), bare);
    ck_assert_str_eq(test_key_o(GET("/a?", ""), &o), bare);
    ck_assert_str_eq(test_key_o(GET("/a", ""), &o), bare);
    o.sort_query = true;
    o.drop_params = drop;
    o.ndrop_params = 1;
    ck_assert_str_eq(test_key_o(GET("/a?y=1&x=2", ""), &o), bare);
}
END_TEST

START_TEST(test_headers_in_key)
{
    char *hdr[] = {"Accept-Language", "x-tenant"};
    struct cache_key_opts o = {.headers = hdr, .nheaders = NELEMS(hdr)};

    ck_assert_str_eq(test_key_o(GET("/a", "accept-language: en\r\nX-Tenant: t1\r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nhaccept-language=en\nhx-tenant=t1");
    /* Absent, empty and present all differ. */
    ck_assert_str_eq(test_key_o(GET("/a", ""), &o),
                     "G\nhttp\nexample.com\n/a\nhaccept-language\nhx-tenant");
    ck_assert_str_eq(test_key_o(GET("/a", "Accept-Language:\r\nX-Tenant:   \r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nhaccept-language=\nhx-tenant=");
    /* Several instances joined with ", ", OWS already trimmed by the parser. */
    ck_assert_str_eq(test_key_o(GET("/a", "X-Tenant: a \r\nAccept-Language: en\r\n"
                                          "x-tenant:\tb\r\n"),
                                &o),
                     "G\nhttp\nexample.com\n/a\nhaccept-language=en\nhx-tenant=a, b");
    ck_assert_str_eq(test_key_o(GET("/a", "X-Tenant: a\r\nX-Tenant: b\r\n"), &o),
                     test_key_o(GET("/a", "X-Tenant: a, b\r\n"), &o));
    /* Values keep their case. */
    ck_assert_str_ne(test_key_o(GET("/a", "X-Tenant: A\r\n"), &o),
                     test_key_o(GET("/a", "X-Tenant: a\r\n"), &o));
    /* Fields not configured do not count. */
    ck_assert_str_eq(test_key_o(GET("/a", "X-Other: 1\r\n"), &o), test_key_o(GET("/a", ""), &o));
}
END_TEST

START_TEST(test_cookies_in_key)
{
    char *ck[] = {"lang", "sid"};
    struct cache_key_opts o = {.cookies = ck, .ncookies = NELEMS(ck)};
    const char *fr_none = "G\nhttp\nexample.com\n/a\nclang=fr\ncsid";

    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: lang=fr\r\n"), &o), fr_none);
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: a=b; lang=fr; c=d\r\n"), &o), fr_none);
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: a=b;lang = fr ;c=d\r\n"), &o), fr_none);
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: a=b;\tlang=fr\r\n"), &o), fr_none);
    /* Similar names are other cookies. */
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: language=de; lang=fr; xlang=it\r\n"), &o),
                     fr_none);
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: language=de\r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nclang\ncsid");
    /* Names are case-sensitive. */
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: Lang=fr; LANG=de\r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nclang\ncsid");
    /* Absent, empty and present differ; a pair without '=' names no cookie. */
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: lang=; sid=1\r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nclang=\ncsid=1");
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: lang; sid\r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nclang\ncsid");
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: x=lang=fr\r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nclang\ncsid");
    /* Values may hold '='; the first pair with the name wins. */
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: sid=a=b; sid=c; lang=fr\r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nclang=fr\ncsid=a=b");
    /* Several Cookie fields are all searched, in order. */
    ck_assert_str_eq(test_key_o(GET("/a", "Cookie: sid=1\r\ncookie: lang=fr; sid=2\r\n"), &o),
                     "G\nhttp\nexample.com\n/a\nclang=fr\ncsid=1");
    /* Header and cookie parts together: headers first. */
    {
        char *hdr[] = {"X-A"};

        o.headers = hdr;
        o.nheaders = 1;
        ck_assert_str_eq(test_key_o(GET("/a", "Cookie: sid=1\r\nX-A: v\r\n"), &o),
                         "G\nhttp\nexample.com\n/a\nhx-a=v\nclang\ncsid=1");
    }
}
END_TEST

START_TEST(test_no_ambiguity_pairs)
{
    char *hdr[] = {"X", "Y"};
    char *ck[] = {"c", "d"};
    struct cache_key_opts o = {
        .headers = hdr, .nheaders = NELEMS(hdr), .cookies = ck, .ncookies = NELEMS(ck)};
    static const struct {
        const char *a, *b;
    } pairs[] = {
        /* Bytes moved from one header to the next. */
        {GET("/a", "X: a|b\r\n"), GET("/a", "X: a\r\nY: b\r\n")},
        {GET("/a", "X: a,b\r\n"), GET("/a", "X: a\r\nY: b\r\n")},
        {GET("/a", "X: a=\r\n"), GET("/a", "X: a\r\nY:\r\n")},
        {GET("/a", "X: a hy=b\r\n"), GET("/a", "X: a\r\nY: b\r\n")},
        /* Absent and empty. */
        {GET("/a", ""), GET("/a", "X:\r\n")},
        {GET("/a", "X:\r\n"), GET("/a", "Y:\r\n")},
        /* From a header to a cookie, and between cookies. */
        {GET("/a", "X: 1\r\n"), GET("/a", "Cookie: c=1\r\n")},
        {GET("/a", "Y: c=1\r\n"), GET("/a", "Cookie: c=1\r\n")},
        {GET("/a", "Cookie: c=1 d=2\r\n"), GET("/a", "Cookie: c=1; d=2\r\n")},
        {GET("/a", "Cookie: c=\r\n"), GET("/a", "Cookie: d=\r\n")},
        {GET("/a", "Cookie: c=\r\n"), GET("/a", "")},
        /* Path into query, query into header. */
        {GET("/a?", ""), GET("/a", "")},
        {GET("/a?b", ""), GET("/a", "X: ?b\r\n")},
        {GET("/ab", ""), GET("/a?b", "")},
        /* Port into host, host into nothing. */
        {REQ("GET /a", "Host: example.com:8080\r\n"), REQ("GET /a", "Host: example.com8080\r\n")},
        {REQ("GET /a", "Host: .\r\n"), "GET /a HTTP/1.0\r\n\r\n"},
        /* Method into scheme. */
        {REQ("POST /a", "Host: example.com\r\n"), REQ("MPOST /a", "Host: example.com\r\n")},
        {REQ("G /a", "Host: example.com\r\n"), GET("/a", "")},
    };

    for (size_t i = 0; i < NELEMS(pairs); i++)
        ck_assert_msg(strcmp(test_key_o(pairs[i].a, &o), test_key_o(pairs[i].b, &o)) != 0,
                      "pair %zu collides: %s", i, test_key_o(pairs[i].a, &o));
}
END_TEST

/*
 * Exhaustive: two headers and two cookies, each absent or one of a few
 * values full of would-be separators. Distinct combinations must give
 * distinct keys.
 */
START_TEST(test_no_ambiguity_exhaustive)
{
    static const char *vals[] = {NULL, "", "a", "a=", "=a", "hy", "cd=a", "a,b", "a b"};
    enum { NV = NELEMS(vals), NCOMB = NV * NV * NV * NV };
    char *hdr[] = {"X", "Y"};
    char *ck[] = {"c", "d"};
    struct cache_key_opts o = {
        .headers = hdr, .nheaders = NELEMS(hdr), .cookies = ck, .ncookies = NELEMS(ck)};
    static char keys[NCOMB][128];
    static size_t lens[NCOMB];
    char raw[512];
    size_t len, sep;

    for (unsigned c = 0; c < NCOMB; c++) {
        const char *x = vals[c % NV], *y = vals[c / NV % NV];
        const char *cc = vals[c / NV / NV % NV], *cd = vals[c / NV / NV / NV];

        len = (size_t)snprintf(raw, sizeof(raw), "GET /a HTTP/1.1\r\nHost: h\r\n");
        if (x != NULL)
            len += (size_t)snprintf(raw + len, sizeof(raw) - len, "X: %s\r\n", x);
        if (y != NULL)
            len += (size_t)snprintf(raw + len, sizeof(raw) - len, "Y: %s\r\n", y);
        if (cc != NULL || cd != NULL) {
            sep = 0;
            len += (size_t)snprintf(raw + len, sizeof(raw) - len, "Cookie: ");
            if (cc != NULL) {
                len += (size_t)snprintf(raw + len, sizeof(raw) - len, "c=%s", cc);
                sep = 1;
            }
            if (cd != NULL)
                len +=
                    (size_t)snprintf(raw + len, sizeof(raw) - len, "%sd=%s", sep ? "; " : "", cd);
            len += (size_t)snprintf(raw + len, sizeof(raw) - len, "\r\n");
        }
        snprintf(raw + len, sizeof(raw) - len, "\r\n");
        {
            char *copy = test_parse_req(raw);
            ssize_t n = cache_key_primary(keys[c], sizeof(keys[c]), &test_rq, "http", &o);

            ck_assert_int_gt(n, 0);
            lens[c] = (size_t)n;
            free(copy);
        }
    }
    /* A plain if: ck_assert per pair would cost a mark point each. */
    for (unsigned a = 0; a < NCOMB; a++)
        for (unsigned b = a + 1; b < NCOMB; b++)
            if (lens[a] == lens[b] && memcmp(keys[a], keys[b], lens[a]) == 0)
                ck_abort_msg("combinations %u and %u collide: %.*s", a, b, (int)lens[a], keys[a]);
}
END_TEST

START_TEST(test_primary_overflow)
{
    char *hdr[] = {"X"};
    struct cache_key_opts o = {.sort_query = true, .headers = hdr, .nheaders = 1};
    const char *raw = GET("/a?b=1&a=2", "X: v\r\n");
    const char *full = test_key_o(raw, &o);
    size_t len = strlen(full);
    char buf[256];
    struct http_request *r = &test_rq;
    char *copy;

    ck_assert_str_eq(full, "G\nhttp\nexample.com\n/a?a=2&b=1\nhx=v");
    ck_assert_str_eq(test_key_cap(raw, "http", &o, len), full);
    for (size_t cap = 0; cap < len; cap++)
        ck_assert_str_eq(test_key_cap(raw, "http", &o, cap), "(-1)");

    /* Nothing is written past cap. */
    copy = test_parse_req(raw);
    memset(buf, '#', sizeof(buf));
    ck_assert_int_eq(cache_key_primary(buf, 10, r, "http", &o), -1);
    for (size_t i = 10; i < sizeof(buf); i++)
        ck_assert_int_eq(buf[i], '#');
    ck_assert_int_eq(cache_key_primary(NULL, 0, r, "http", &o), -1);
    free(copy);
}
END_TEST

START_TEST(test_name_valid)
{
    ck_assert(cache_key_name_valid("Accept-Language"));
    ck_assert(cache_key_name_valid("x_tenant.id"));
    ck_assert(!cache_key_name_valid(""));
    ck_assert(!cache_key_name_valid(NULL));
    ck_assert(!cache_key_name_valid("a=b"));
    ck_assert(!cache_key_name_valid("a b"));
    ck_assert(!cache_key_name_valid("a\n"));
    ck_assert(!cache_key_name_valid("a;b"));
}
END_TEST

/* --- Vary ---------------------------------------------------------------- */

START_TEST(test_vary_names)
{
    ck_assert_str_eq(test_vary(""), "");
    ck_assert_str_eq(test_vary("Vary:\r\n"), "");
    ck_assert_str_eq(test_vary("Vary: , ,\r\n"), "");
    ck_assert_str_eq(test_vary("Vary: Accept-Encoding\r\n"), "accept-encoding");
    ck_assert_str_eq(test_vary("Vary: Accept-Language, accept-encoding\r\n"),
                     "accept-encoding,accept-language");
    ck_assert_str_eq(test_vary("vary: User-Agent ,Accept-Encoding\r\nX-Other: 1\r\n"
                               "VARY: accept-encoding,\tORIGIN, ,user-agent\r\n"),
                     "accept-encoding,origin,user-agent");
    ck_assert_str_eq(test_vary("Vary: b\r\nVary: a\r\nVary: B\r\nVary: A-\r\n"), "a,a-,b");
    /* Bytewise after lower-casing: '-' (0x2d) sorts before letters. */
    ck_assert_str_eq(test_vary("Vary: ab, a-b, a\r\n"), "a,a-b,ab");
}
END_TEST

START_TEST(test_vary_not_storable)
{
    char fields[4096];
    size_t len = 0;

    ck_assert_str_eq(test_vary("Vary: *\r\n"), "(-1)");
    ck_assert_str_eq(test_vary("Vary: accept-encoding, *\r\n"), "(-1)");
    ck_assert_str_eq(test_vary("Vary: accept-encoding\r\nVary: *\r\n"), "(-1)");
    ck_assert_str_eq(test_vary("Vary: a b\r\n"), "(-1)");
    ck_assert_str_eq(test_vary("Vary: a;q=1\r\n"), "(-1)");
    ck_assert_str_eq(test_vary("Vary: \"a\"\r\n"), "(-1)");

    /* CACHE_KEY_VARY_MAX distinct names fit, duplicates do not count. */
    len += (size_t)snprintf(fields + len, sizeof(fields) - len, "Vary: n0");
    for (unsigned i = 1; i < CACHE_KEY_VARY_MAX; i++)
        len += (size_t)snprintf(fields + len, sizeof(fields) - len, ",n%u,N%u", i, i);
    snprintf(fields + len, sizeof(fields) - len, "\r\n");
    ck_assert_str_ne(test_vary(fields), "(-1)");
    snprintf(fields + len, sizeof(fields) - len, ",n%u\r\n", CACHE_KEY_VARY_MAX);
    ck_assert_str_eq(test_vary(fields), "(-1)");
}
END_TEST

START_TEST(test_vary_overflow)
{
    const char *raw = "HTTP/1.1 200 OK\r\nVary: Origin, Accept-Encoding\r\n\r\n";

    ck_assert_str_eq(test_vary_cap(raw, 22), "accept-encoding,origin");
    ck_assert_str_eq(test_vary_cap(raw, 21), "(-1)");
    ck_assert_str_eq(test_vary_cap(raw, 0), "(-1)");
    ck_assert_str_eq(test_vary_cap("HTTP/1.1 200 OK\r\n\r\n", 0), "");
}
END_TEST

START_TEST(test_variant_accept_encoding)
{
    const char *all3 = "accept-encoding=br,deflate,gzip";
    static const char *same[] = {
        "Accept-Encoding: gzip, deflate, br\r\n",
        "Accept-Encoding: br,gzip;q=0.8,deflate\r\n",
        "accept-encoding:deflate;q=0.5 , BR ,GZip;q=1.000\r\n",
        "Accept-Encoding: gzip\r\nAccept-Encoding: br, deflate\r\n",
        "Accept-Encoding: x-gzip, deflate;q=0.001, br, compress, identity\r\n",
        "Accept-Encoding: gzip, deflate, br, zstd;q=0\r\n",
        "Accept-Encoding: gzip, deflate, br, zstd;q=0.0, *;q=0\r\n",
        "Accept-Encoding: *, zstd;Q=0\r\n",
        "Accept-Encoding: gzip ; q=0.5 ; x=y, ,deflate,br\r\n",
    };

    for (size_t i = 0; i < NELEMS(same); i++)
        ck_assert_msg(strcmp(test_ae(same[i]), all3) == 0, "%s gives %s", same[i],
                      test_ae(same[i]));

    /* Different acceptable sets differ. */
    ck_assert_str_eq(test_ae("Accept-Encoding: gzip\r\n"), "accept-encoding=gzip");
    ck_assert_str_eq(test_ae("Accept-Encoding: gzip, zstd\r\n"), "accept-encoding=gzip,zstd");
    ck_assert_str_eq(test_ae("Accept-Encoding: *\r\n"), "accept-encoding=br,deflate,gzip,zstd");
    ck_assert_str_eq(test_ae("Accept-Encoding: *;q=0, gzip\r\n"), "accept-encoding=gzip");
    ck_assert_str_eq(test_ae("Accept-Encoding: gzip;q=0, *\r\n"),
                     "accept-encoding=br,deflate,zstd");
    ck_assert_str_ne(test_ae("Accept-Encoding: gzip\r\n"), test_ae("Accept-Encoding: br\r\n"));

    /* Identity, empty, absent and nothing acceptable are alike. */
    ck_assert_str_eq(test_ae(""), "accept-encoding=");
    ck_assert_str_eq(test_ae("Accept-Encoding:\r\n"), "accept-encoding=");
    ck_assert_str_eq(test_ae("Accept-Encoding: identity\r\n"), "accept-encoding=");
    ck_assert_str_eq(test_ae("Accept-Encoding: gzip;q=0, br;q=0.00\r\n"), "accept-encoding=");
    ck_assert_str_eq(test_ae("Accept-Encoding: compress\r\n"), "accept-encoding=");

    /* The first listing wins; an invalid qvalue counts as 0. */
    ck_assert_str_eq(test_ae("Accept-Encoding: gzip;q=0, gzip\r\n"), "accept-encoding=");
    ck_assert_str_eq(test_ae("Accept-Encoding: gzip, gzip;q=0\r\n"), "accept-encoding=gzip");
    ck_assert_str_eq(test_ae("Accept-Encoding: gzip;q=2, br;q=1.5, deflate;q=0.1234\r\n"),
                     "accept-encoding=");
    ck_assert_str_eq(test_ae("Accept-Encoding: gzip;q=, br;q=x, deflate;q=1.\r\n"),
                     "accept-encoding=deflate");
}
END_TEST

START_TEST(test_variant_other_fields)
{
    const char *raw;

    /* OWS around elements goes, case stays, instances are joined with ','. */
    ck_assert_str_eq(
        test_variant("accept-language", GET("/", "Accept-Language: en-US, fr;q=0.8\r\n")),
        "accept-language=en-US,fr;q=0.8");
    ck_assert_str_eq(
        test_variant("accept-language", GET("/", "Accept-Language: en-US ,\tfr;q=0.8\r\n")),
        test_variant("accept-language",
                     GET("/", "Accept-Language: en-US\r\naccept-language: fr;q=0.8\r\n")));
    ck_assert_str_ne(test_variant("accept-language", GET("/", "Accept-Language: EN\r\n")),
                     test_variant("accept-language", GET("/", "Accept-Language: en\r\n")));
    /* Runs of whitespace inside an element become one SP; empty elements go. */
    ck_assert_str_eq(test_variant("x-a", GET("/", "X-A: a  \t b, , c\r\nX-A: ,d\r\n")),
                     "x-a=a b,c,d");
    ck_assert_str_eq(test_variant("x-a", GET("/", "X-A: a\tb\r\n")),
                     test_variant("x-a", GET("/", "X-A: a b\r\n")));
    /* Quoted strings are kept whole, commas in them included. */
    ck_assert_str_eq(test_variant("x-a", GET("/", "X-A: \"a ,  b\", c\r\n")), "x-a=\"a ,  b\",c");
    ck_assert_str_ne(test_variant("x-a", GET("/", "X-A: \"a , b\"\r\n")),
                     test_variant("x-a", GET("/", "X-A: \"a,b\"\r\n")));
    ck_assert_str_eq(test_variant("x-a", GET("/", "X-A: \"a\\\" ,b\"\r\n")), "x-a=\"a\\\" ,b\"");

    /* Several names, in list order, with the field names matched case-insensitively. */
    raw = GET("/", "Origin: https://a.example\r\nAccept-Encoding: gzip\r\n");
    ck_assert_str_eq(test_variant("accept-encoding,origin,user-agent", raw),
                     "accept-encoding=gzip\norigin=https://a.example\nuser-agent");
    ck_assert_str_eq(test_variant("Accept-Encoding , Origin,, User-Agent", raw),
                     "accept-encoding=gzip\norigin=https://a.example\nuser-agent");
}
END_TEST

START_TEST(test_variant_absent)
{
    ck_assert_str_eq(test_variant("x-a", GET("/", "")), "x-a");
    ck_assert_str_eq(test_variant("x-a", GET("/", "X-A:\r\n")), "x-a=");
    ck_assert_str_eq(test_variant("x-a", GET("/", "X-A: ,\r\n")), "x-a=");
    ck_assert_str_eq(test_variant("x-a", GET("/", "X-A: x\r\n")), "x-a=x");
    ck_assert_str_eq(test_variant("x-a,x-b", GET("/", "X-B: 1\r\n")), "x-a\nx-b=1");
    ck_assert_str_ne(test_variant("x-a,x-b", GET("/", "X-A: 1\r\n")),
                     test_variant("x-a,x-b", GET("/", "X-B: 1\r\n")));
    /* No names: an empty variant. */
    ck_assert_str_eq(test_variant("", GET("/", "X-A: 1\r\n")), "");
}
END_TEST

START_TEST(test_variant_not_storable)
{
    ck_assert_str_eq(test_variant("*", GET("/", "")), "(-1)");
    ck_assert_str_eq(test_variant("accept-encoding,*", GET("/", "")), "(-1)");
    ck_assert_str_eq(test_variant("a b", GET("/", "")), "(-1)");
    ck_assert_str_eq(test_variant("a\nb", GET("/", "")), "(-1)");
    ck_assert_str_eq(test_variant("a=b", GET("/", "")), "(-1)");
}
END_TEST

START_TEST(test_variant_overflow)
{
    const char *raw = GET("/", "Accept-Encoding: br, gzip\r\nX-A: v\r\n");

    ck_assert_str_eq(test_variant_cap("accept-encoding,x-a", raw, 29),
                     "accept-encoding=br,gzip\nx-a=v");
    ck_assert_str_eq(test_variant_cap("accept-encoding,x-a", raw, 28), "(-1)");
    ck_assert_str_eq(test_variant_cap("accept-encoding,x-a", raw, 20), "(-1)");
    ck_assert_str_eq(test_variant_cap("accept-encoding,x-a", raw, 0), "(-1)");
    ck_assert_str_eq(test_variant_cap("", raw, 0), "");
}
END_TEST

/* The list a response stores is the one its variants are built from. */
START_TEST(test_vary_round_trip)
{
    static const char raw[] =
        "HTTP/1.1 200 OK\r\nVary: Accept-Encoding\r\nVary: Accept-Language\r\n\r\n";
    char names[256], *copy;
    ssize_t n;
    const char *a, *b;

    copy = test_copy(raw);
    ck_assert_int_gt(http_parse_response(copy, strlen(raw), &test_lim, false, &test_rs), 0);
    n = cache_key_vary_names(names, sizeof(names) - 1, &test_rs.head);
    free(copy);
    ck_assert_int_gt(n, 0);
    names[n] = '\0';
    a = test_variant(names, GET("/", "Accept-Encoding: gzip, br\r\nAccept-Language: de\r\n"));
    b = test_variant(names, GET("/", "Accept-Language: de\r\nAccept-Encoding: br;q=1, gzip\r\n"));
    ck_assert_str_eq(a, b);
    ck_assert_str_eq(a, "accept-encoding=br,gzip\naccept-language=de");
}
END_TEST

static Suite *
cache_key_suite(void)
{
    Suite *s = suite_create("cache_key");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"method_class", test_method_class},
        {"scheme", test_scheme},
        {"host_normalise", test_host_normalise},
        {"host_forms", test_host_forms},
        {"path_as_received", test_path_as_received},
        {"query_as_is", test_query_as_is},
        {"query_sorted", test_query_sorted},
        {"query_sort_limit", test_query_sort_limit},
        {"query_drop", test_query_drop},
        {"ignore_query", test_ignore_query},
        {"headers_in_key", test_headers_in_key},
        {"cookies_in_key", test_cookies_in_key},
        {"no_ambiguity_pairs", test_no_ambiguity_pairs},
        {"no_ambiguity_exhaustive", test_no_ambiguity_exhaustive},
        {"primary_overflow", test_primary_overflow},
        {"name_valid", test_name_valid},
        {"vary_names", test_vary_names},
        {"vary_not_storable", test_vary_not_storable},
        {"vary_overflow", test_vary_overflow},
        {"variant_accept_encoding", test_variant_accept_encoding},
        {"variant_other_fields", test_variant_other_fields},
        {"variant_absent", test_variant_absent},
        {"variant_not_storable", test_variant_not_storable},
        {"variant_overflow", test_variant_overflow},
        {"vary_round_trip", test_vary_round_trip},
    };
    TCase *tc;

    for (size_t i = 0; i < NELEMS(cases); i++) {
        tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(cache_key_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
