/*
 * check_cache_policy: unit tests of the shared-cache rules (RFC 9111,
 * RFC 5861, RFC 9110 conditionals and HTTP-dates). Mostly tables, one row
 * per rule, each row run as its own loop test so a failure names it.
 *
 * Messages are built by running the real parser (http_parser.c) on
 * literal text; header lines in the tables are written with "\n" and
 * sent with CRLF. Time is injected: T0 is the RFC's example date,
 * Sun, 06 Nov 1994 08:49:37 GMT, and responses arrive at T0 unless a row
 * says otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "cache_policy.h"
#include "http_parser.h"

#define T0 INT64_C(784111777)
#define D0 "Sun, 06 Nov 1994 08:49:37 GMT"       /* T0 */
#define D0_M30 "Sun, 06 Nov 1994 08:49:07 GMT"   /* T0 - 30 */
#define D0_P100 "Sun, 06 Nov 1994 08:51:17 GMT"  /* T0 + 100 */
#define D0_P3600 "Sun, 06 Nov 1994 09:49:37 GMT" /* T0 + 3600 */
#define D0_M3600 "Sun, 06 Nov 1994 07:49:37 GMT" /* T0 - 3600 */
#define D0_M10D "Thu, 27 Oct 1994 08:49:37 GMT"  /* T0 - 10 days */
#define NOW_2025 INT64_C(1750000000)             /* Sun, 15 Jun 2025 15:06:40 GMT */
#define DMAX CACHE_POLICY_DELTA_MAX

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const struct http_limits lim = {8192, 65536, HTTP_HEADERS_CAP};

struct treq {
    char buf[4096];
    struct http_request r;
};

struct tresp {
    char buf[4096];
    struct http_response r;
};

/* Appends lines ("A: 1\nB: 2", last newline optional) with CRLF endings. */
static size_t
put_lines(char *out, size_t cap, size_t len, const char *lines)
{
    const char *p = lines != NULL ? lines : "";

    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        if (n > 0) {
            ck_assert_uint_lt(len + n + 2, cap);
            memcpy(out + len, p, n);
            memcpy(out + len + n, "\r\n", 2);
            len += n + 2;
        }
        p += n + (nl != NULL);
    }
    return len;
}

static void
mk_req(struct treq *t, const char *method, const char *lines)
{
    int n = snprintf(t->buf, sizeof(t->buf), "%s /x HTTP/1.1\r\nHost: h\r\n",
                     method != NULL ? method : "GET");
    size_t len = put_lines(t->buf, sizeof(t->buf), (size_t)n, lines);
    ssize_t got;

    memcpy(t->buf + len, "\r\n", 2);
    len += 2;
    got = http_parse_request(t->buf, len, &lim, &t->r);
    ck_assert_msg(got == (ssize_t)len, "request did not parse (%zd): %s", got, t->buf);
}

static void
mk_resp(struct tresp *t, int status, const char *lines)
{
    int n = snprintf(t->buf, sizeof(t->buf), "HTTP/1.1 %d X\r\n", status);
    size_t len = put_lines(t->buf, sizeof(t->buf), (size_t)n, lines);
    ssize_t got;

    memcpy(t->buf + len, "\r\n", 2);
    len += 2;
    got = http_parse_response(t->buf, len, &lim, false, &t->r);
    ck_assert_msg(got == (ssize_t)len, "response did not parse (%zd): %s", got, t->buf);
}

/*
 * A route from a spec: space-separated default_ttl=N force_ttl=N swr=N
 * sie=N heuristic_max=N allow_set_cookie no_honour status+=N status-=N;
 * everything else at the defaults. NULL or "" is the default route.
 */
static void
mk_route(struct cache_policy_route *r, const char *spec)
{
    char copy[256], *save = NULL, *tok;
    long long v;

    cache_policy_route_init(r);
    if (spec == NULL)
        return;
    snprintf(copy, sizeof(copy), "%s", spec);
    for (tok = strtok_r(copy, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
        if (sscanf(tok, "default_ttl=%lld", &v) == 1)
            r->default_ttl = v;
        else if (sscanf(tok, "force_ttl=%lld", &v) == 1)
            r->force_ttl = v;
        else if (sscanf(tok, "swr=%lld", &v) == 1)
            r->stale_while_revalidate = v;
        else if (sscanf(tok, "sie=%lld", &v) == 1)
            r->stale_if_error = v;
        else if (sscanf(tok, "heuristic_max=%lld", &v) == 1)
            r->heuristic_max = v;
        else if (sscanf(tok, "status+=%lld", &v) == 1)
            cache_policy_route_set_status(r, (int)v, true);
        else if (sscanf(tok, "status-=%lld", &v) == 1)
            cache_policy_route_set_status(r, (int)v, false);
        else if (strcmp(tok, "allow_set_cookie") == 0)
            r->allow_set_cookie = true;
        else if (strcmp(tok, "no_honour") == 0)
            r->honour_client_no_cache = false;
        else
            ck_abort_msg("bad route spec token %s", tok);
    }
}

/* The directives as a canonical string, for table comparisons. */
static const char *
cc_describe(const struct cache_policy_cc *cc, char *buf, size_t cap)
{
    size_t n = 0;

#define CC_FLAG(f, s)                                                                              \
    if (cc->f)                                                                                     \
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? " " : "", s);
#define CC_DELTA(f, s)                                                                             \
    if (cc->f >= 0)                                                                                \
        n += (size_t)snprintf(buf + n, cap - n, "%s%s=%lld", n ? " " : "", s, (long long)cc->f);
    buf[0] = '\0';
    CC_FLAG(no_store, "no-store")
    CC_FLAG(no_cache, "no-cache")
    CC_FLAG(private_, "private")
    CC_FLAG(public_, "public")
    CC_FLAG(must_revalidate, "must-revalidate")
    CC_FLAG(proxy_revalidate, "proxy-revalidate")
    CC_FLAG(must_understand, "must-understand")
    CC_FLAG(immutable, "immutable")
    CC_FLAG(only_if_cached, "only-if-cached")
    CC_DELTA(max_age, "max-age")
    CC_DELTA(s_maxage, "s-maxage")
    CC_DELTA(max_stale, "max-stale")
    CC_DELTA(min_fresh, "min-fresh")
    CC_DELTA(stale_while_revalidate, "swr")
    CC_DELTA(stale_if_error, "sie")
#undef CC_FLAG
#undef CC_DELTA
    return buf;
}

/* --- Cache-Control parsing ------------------------------------------- */

static const struct {
    const char *lines; /* request header lines */
    bool request;      /* cache_policy_cc_request (Pragma) rather than cc_parse */
    const char *want;
} cc_cases[] = {
    {"Cache-Control: max-age=60", false, "max-age=60"},
    {"Cache-Control: MAX-AGE=60, Public", false, "public max-age=60"},
    {"Cache-Control: max-age=\"60\"", false, "max-age=60"},
    {"Cache-Control: max-age = 60", false, "max-age=60"},
    {"Cache-Control: max-age=abc", false, "max-age=0"},
    {"Cache-Control: max-age", false, "max-age=0"},
    {"Cache-Control: max-age=", false, "max-age=0"},
    {"Cache-Control: max-age=-1", false, "max-age=0"},
    {"Cache-Control: max-age=1.5", false, "max-age=0"},
    {"Cache-Control: max-age=\"60", false, "max-age=0"},
    {"Cache-Control: max-age=60 junk", false, "max-age=0"},
    {"Cache-Control: max-age=60, max-age=10", false, "max-age=60"},
    {"Cache-Control: max-age=30\nCache-Control: max-age=10", false, "max-age=30"},
    {"Cache-Control: max-age=2147483647", false, "max-age=2147483647"},
    {"Cache-Control: max-age=2147483649", false, "max-age=2147483648"},
    {"Cache-Control: max-age=99999999999999999999999999", false, "max-age=2147483648"},
    {"Cache-Control: max-age=5\nCache-Control: no-store", false, "no-store max-age=5"},
    {"Cache-Control: no-cache=\"Set-Cookie, X-Foo\", max-age=5", false, "no-cache max-age=5"},
    {"Cache-Control: private=\"X\"", false, "private"},
    {"Cache-Control: foo=bar, ext=\"a,b\\\"c\", no-store", false, "no-store"},
    {"Cache-Control: s-maxage=30, stale-while-revalidate=10, stale-if-error=20", false,
     "s-maxage=30 swr=10 sie=20"},
    {"Cache-Control: stale-while-revalidate=x", false, "swr=0"},
    {"Cache-Control: must-revalidate,proxy-revalidate,must-understand,immutable,only-if-cached",
     false, "must-revalidate proxy-revalidate must-understand immutable only-if-cached"},
    {"Cache-Control: ,,, ,max-age=5,,", false, "max-age=5"},
    {"Cache-Control: public junk, no-store junk", false, "no-store"},
    {"Cache-Control:", false, ""},
    {"Cache-Control: =5, \"x\"", false, ""},
    {"Cache-Control: max-stale", true, "max-stale=2147483648"},
    {"Cache-Control: max-stale=5", true, "max-stale=5"},
    {"Cache-Control: max-stale=x", true, ""},
    {"Cache-Control: min-fresh=10", true, "min-fresh=10"},
    {"Cache-Control: min-fresh=x", true, "min-fresh=2147483648"},
    {"Cache-Control: no-cache, only-if-cached", true, "no-cache only-if-cached"},
    {"Pragma: no-cache", true, "no-cache"},
    {"Pragma: foo, No-Cache", true, "no-cache"},
    {"Pragma: no-cache", false, ""},
    {"Pragma: no-cache\nCache-Control: max-age=5", true, "max-age=5"},
    {"Pragma: nocache", true, ""},
};

START_TEST(test_cc_parse)
{
    struct treq q;
    struct cache_policy_cc cc;
    char got[256];

    mk_req(&q, "GET", cc_cases[_i].lines);
    if (cc_cases[_i].request)
        cache_policy_cc_request(&q.r, &cc);
    else
        cache_policy_cc_parse(&q.r.head, &cc);
    ck_assert_msg(strcmp(cc_describe(&cc, got, sizeof(got)), cc_cases[_i].want) == 0,
                  "%s: got \"%s\", want \"%s\"", cc_cases[_i].lines, got, cc_cases[_i].want);
}
END_TEST

/* --- HTTP-date -------------------------------------------------------- */

static const struct {
    const char *s;
    int64_t now;
    int64_t want;
} date_cases[] = {
    {D0, T0, T0},
    {"Sunday, 06-Nov-94 08:49:37 GMT", T0, T0},
    {"Sun Nov  6 08:49:37 1994", T0, T0},
    {"Sun Nov 06 08:49:37 1994", T0, T0},
    {"Wed Nov 16 08:49:37 1994", T0, T0 + 10 * 86400},
    {"sun, 06 nov 1994 08:49:37 gmt", T0, T0}, /* RFC 9111 4.2: case-insensitive */
    {"SUNDAY, 06-NOV-94 08:49:37 GMT", T0, T0},
    {"Thu, 01 Jan 1970 00:00:00 GMT", T0, 0},
    {"Wed, 31 Dec 1969 23:59:59 GMT", T0, 0}, /* before the epoch: clamped */
    {"Thu, 29 Feb 1996 00:00:00 GMT", T0, 825552000},
    {"Sat, 31 Dec 2016 23:59:60 GMT", T0, 1483228800}, /* leap second */
    {"Fri, 31 Dec 9999 23:59:59 GMT", T0, INT64_C(253402300799)},
    /* RFC 850 two-digit years: within 50 years of now (RFC 9110 5.6.7). */
    {"Thursday, 01-Jan-70 00:00:00 GMT", T0, 0},
    {"Thursday, 01-Jan-70 00:00:00 GMT", NOW_2025, INT64_C(3155760000)},
    {"Wednesday, 01-Jan-75 00:00:00 GMT", NOW_2025, INT64_C(3313526400)},
    {"Thursday, 01-Jan-76 00:00:00 GMT", NOW_2025, 189302400},
    {"Friday, 31-Dec-99 23:59:59 GMT", NOW_2025, 946684799},
    {"Saturday, 01-Jan-00 00:00:00 GMT", NOW_2025, 946684800},
    /* In mid-2099, "00" is half a year ahead, not 99 years back. */
    {"Friday, 01-Jan-00 00:00:00 GMT", INT64_C(4085337600), INT64_C(4102444800)},
    /* invalid */
    {"", T0, -1},
    {"0", T0, -1},
    {"-1", T0, -1},
    {"Sun, 06 Nov 1994 08:49:37 UTC", T0, -1},
    {"Sun, 06 Nov 1994 08:49:37 +0000", T0, -1},
    {"Sun, 06 Nov 1994 08:49:37", T0, -1},
    {"Sun, 06 Nov 1994 08:49:37 GMT ", T0, -1},
    {" Sun, 06 Nov 1994 08:49:37 GMT", T0, -1},
    {"Sun, 6 Nov 1994 08:49:37 GMT", T0, -1},
    {"Sun, 06 Nov 94 08:49:37 GMT", T0, -1},
    {"Sun 06 Nov 1994 08:49:37 GMT", T0, -1},
    {"Xyz, 06 Nov 1994 08:49:37 GMT", T0, -1},
    {"Sun, 06 Foo 1994 08:49:37 GMT", T0, -1},
    {"Sunday, 06 Nov 1994 08:49:37 GMT", T0, -1},
    {"Sun, 06-Nov-94 08:49:37 GMT", T0, -1},
    {"Sun, 31 Nov 1994 08:49:37 GMT", T0, -1},
    {"Wed, 29 Feb 1995 08:49:37 GMT", T0, -1},
    {"Sun, 00 Nov 1994 08:49:37 GMT", T0, -1},
    {"Sun, 06 Nov 1994 24:00:00 GMT", T0, -1},
    {"Sun, 06 Nov 1994 08:60:00 GMT", T0, -1},
    {"Sun, 06 Nov 1994 08:49:61 GMT", T0, -1},
    {"Sun, 06 Nov 1994 8:49:37 GMT", T0, -1},
    {"Sun Nov  6 08:49:37 94", T0, -1},
    {"Sun Nov 6 08:49:37 1994", T0, -1},
    {"Sun Nov  6 08:49:37 1994 GMT", T0, -1},
};

START_TEST(test_date_parse)
{
    const char *s = date_cases[_i].s;
    int64_t got = cache_policy_date_parse(s, strlen(s), date_cases[_i].now);

    ck_assert_msg(got == date_cases[_i].want, "\"%s\": got %lld, want %lld", s, (long long)got,
                  (long long)date_cases[_i].want);
}
END_TEST

START_TEST(test_date_format)
{
    char buf[CACHE_POLICY_DATE_LEN], small[10];

    ck_assert_uint_eq(cache_policy_date_format(T0, buf, sizeof(buf)), 29);
    ck_assert_str_eq(buf, D0);
    cache_policy_date_format(0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    cache_policy_date_format(-5, buf, sizeof(buf));
    ck_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    cache_policy_date_format(951782400, buf, sizeof(buf));
    ck_assert_str_eq(buf, "Tue, 29 Feb 2000 00:00:00 GMT");
    cache_policy_date_format(INT64_C(1) << 50, buf, sizeof(buf));
    ck_assert_str_eq(buf, "Fri, 31 Dec 9999 23:59:59 GMT");
    /* snprintf convention: measure, truncate. */
    ck_assert_uint_eq(cache_policy_date_format(T0, NULL, 0), 29);
    ck_assert_uint_eq(cache_policy_date_format(T0, small, sizeof(small)), 29);
    ck_assert_str_eq(small, "Sun, 06 N");
    /* Every format parses back, across leap years and month ends. */
    for (int64_t t = 0; t < INT64_C(4102444800); t += 86400 * 7 + 3607) {
        cache_policy_date_format(t, buf, sizeof(buf));
        ck_assert_msg(cache_policy_date_parse(buf, strlen(buf), T0) == t, "%lld %s", (long long)t,
                      buf);
    }
}
END_TEST

/* --- storability ------------------------------------------------------ */

static const struct {
    const char *name;
    const char *method; /* NULL: GET */
    const char *req;
    int status;
    const char *resp;
    const char *route;
    enum cache_policy_reason want;
} store_cases[] = {
    {"max-age", NULL, "", 200, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"HEAD", "HEAD", "", 200, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"POST", "POST", "", 200, "Cache-Control: max-age=60", "", CACHE_POLICY_R_METHOD},
    {"PUT", "PUT", "", 200, "Cache-Control: max-age=60", "", CACHE_POLICY_R_METHOD},
    {"OPTIONS", "OPTIONS", "", 200, "Cache-Control: max-age=60", "", CACHE_POLICY_R_METHOD},
    {"extension method", "FOO", "", 200, "Cache-Control: max-age=60", "", CACHE_POLICY_R_METHOD},
    /* no-store */
    {"request no-store", NULL, "Cache-Control: no-store", 200, "Cache-Control: max-age=60", "",
     CACHE_POLICY_R_NO_STORE},
    {"response no-store", NULL, "", 200, "Cache-Control: no-store, max-age=60", "",
     CACHE_POLICY_R_NO_STORE},
    {"NO-STORE upper case", NULL, "", 200, "Cache-Control: max-age=60, NO-STORE", "",
     CACHE_POLICY_R_NO_STORE},
    {"no-store in a second field", NULL, "", 200,
     "Cache-Control: max-age=60\nCache-Control: no-store", "", CACHE_POLICY_R_NO_STORE},
    {"force_ttl does not override no-store", NULL, "", 200, "Cache-Control: no-store",
     "force_ttl=60", CACHE_POLICY_R_NO_STORE},
    {"Pragma is not no-store", NULL, "Pragma: no-cache", 200, "Cache-Control: max-age=60", "",
     CACHE_POLICY_R_STORED},
    {"request no-cache still stores", NULL, "Cache-Control: no-cache", 200,
     "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    /* statuses */
    {"200 without anything", NULL, "", 200, "Content-Type: text/plain", "",
     CACHE_POLICY_R_NO_FRESHNESS},
    {"200 heuristic (Last-Modified)", NULL, "", 200, "Date: " D0 "\nLast-Modified: " D0_M10D, "",
     CACHE_POLICY_R_STORED},
    {"200 with only an ETag (revalidated)", NULL, "", 200, "ETag: \"a\"", "",
     CACHE_POLICY_R_STORED},
    {"200 with an invalid ETag", NULL, "", 200, "ETag: a", "", CACHE_POLICY_R_NO_FRESHNESS},
    {"203", NULL, "", 203, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"204", NULL, "", 204, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"300", NULL, "", 300, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"301", NULL, "", 301, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"308", NULL, "", 308, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"404 heuristic", NULL, "", 404, "Last-Modified: " D0_M10D, "", CACHE_POLICY_R_STORED},
    {"405", NULL, "", 405, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"410", NULL, "", 410, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"414", NULL, "", 414, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"501", NULL, "", 501, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STORED},
    {"302 not in the default set", NULL, "", 302, "Cache-Control: max-age=60", "",
     CACHE_POLICY_R_STATUS},
    {"302 added to the set", NULL, "", 302, "Cache-Control: max-age=60", "status+=302",
     CACHE_POLICY_R_STORED},
    {"302 in the set without freshness", NULL, "", 302, "Last-Modified: " D0_M10D, "status+=302",
     CACHE_POLICY_R_NO_FRESHNESS},
    {"302 in the set with default_ttl", NULL, "", 302, "", "status+=302 default_ttl=30",
     CACHE_POLICY_R_STORED},
    {"302 public with Last-Modified", NULL, "", 302,
     "Cache-Control: public\nLast-Modified: " D0_M10D, "status+=302", CACHE_POLICY_R_STORED},
    {"404 removed from the set", NULL, "", 404, "Cache-Control: max-age=60", "status-=404",
     CACHE_POLICY_R_STATUS},
    {"500", NULL, "", 500, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STATUS},
    {"503", NULL, "", 503, "Cache-Control: max-age=60", "", CACHE_POLICY_R_STATUS},
    {"206 partial", NULL, "Range: bytes=0-1", 206,
     "Cache-Control: max-age=60\nContent-Range: bytes 0-1/10", "", CACHE_POLICY_R_PARTIAL},
    {"304", NULL, "", 304, "Cache-Control: max-age=60", "status+=304", CACHE_POLICY_R_STATUS},
    {"1xx", NULL, "", 103, "Link: </a>", "status+=103", CACHE_POLICY_R_STATUS},
    /* must-understand */
    {"must-understand lifts no-store", NULL, "", 200,
     "Cache-Control: must-understand, no-store, max-age=60", "", CACHE_POLICY_R_STORED},
    {"must-understand, unknown status", NULL, "", 299,
     "Cache-Control: must-understand, no-store, max-age=60", "status+=299",
     CACHE_POLICY_R_MUST_UNDERSTAND},
    {"must-understand, 206", NULL, "", 206, "Cache-Control: must-understand, max-age=60", "",
     CACHE_POLICY_R_MUST_UNDERSTAND},
    {"unknown status without must-understand", NULL, "", 299, "Cache-Control: max-age=60",
     "status+=299", CACHE_POLICY_R_STORED},
    /* private */
    {"private", NULL, "", 200, "Cache-Control: private, max-age=60", "", CACHE_POLICY_R_PRIVATE},
    {"private with field names", NULL, "", 200, "Cache-Control: private=\"Set-Cookie\"", "",
     CACHE_POLICY_R_PRIVATE},
    {"private and public", NULL, "", 200, "Cache-Control: public, private", "",
     CACHE_POLICY_R_PRIVATE},
    {"force_ttl does not override private", NULL, "", 200, "Cache-Control: private", "force_ttl=60",
     CACHE_POLICY_R_PRIVATE},
    /* Authorization (RFC 9111 3.5) */
    {"Authorization", NULL, "Authorization: Basic x", 200, "Cache-Control: max-age=60", "",
     CACHE_POLICY_R_AUTHORIZATION},
    {"Authorization and public", NULL, "Authorization: Basic x", 200,
     "Cache-Control: public, max-age=60", "", CACHE_POLICY_R_STORED},
    {"Authorization and s-maxage", NULL, "Authorization: Basic x", 200,
     "Cache-Control: s-maxage=60", "", CACHE_POLICY_R_STORED},
    {"Authorization and must-revalidate", NULL, "Authorization: Basic x", 200,
     "Cache-Control: must-revalidate, max-age=60", "", CACHE_POLICY_R_STORED},
    {"Authorization and proxy-revalidate", NULL, "Authorization: Basic x", 200,
     "Cache-Control: proxy-revalidate, max-age=60", "", CACHE_POLICY_R_AUTHORIZATION},
    {"force_ttl does not override Authorization", NULL, "Authorization: Basic x", 200, "",
     "force_ttl=60", CACHE_POLICY_R_AUTHORIZATION},
    /* Set-Cookie */
    {"Set-Cookie", NULL, "", 200, "Cache-Control: max-age=60\nSet-Cookie: a=b", "",
     CACHE_POLICY_R_SET_COOKIE},
    {"force_ttl does not override Set-Cookie", NULL, "", 200, "Set-Cookie: a=b", "force_ttl=60",
     CACHE_POLICY_R_SET_COOKIE},
    {"Set-Cookie allowed by the route", NULL, "", 200, "Cache-Control: max-age=60\nSet-Cookie: a=b",
     "allow_set_cookie", CACHE_POLICY_R_STORED},
    /* Vary */
    {"Vary: *", NULL, "", 200, "Cache-Control: max-age=60\nVary: *", "", CACHE_POLICY_R_VARY_STAR},
    {"Vary list with *", NULL, "", 200, "Cache-Control: max-age=60\nVary: Accept-Encoding, *", "",
     CACHE_POLICY_R_VARY_STAR},
    {"Vary: * in a second field", NULL, "", 200, "Cache-Control: max-age=60\nVary: Accept\nVary: *",
     "", CACHE_POLICY_R_VARY_STAR},
    {"force_ttl does not override Vary: *", NULL, "", 200, "Vary: *", "force_ttl=60",
     CACHE_POLICY_R_VARY_STAR},
    {"Vary: Accept-Encoding", NULL, "", 200, "Cache-Control: max-age=60\nVary: Accept-Encoding", "",
     CACHE_POLICY_R_STORED},
    /* freshness and reuse */
    {"no-cache with a validator", NULL, "", 200, "Cache-Control: no-cache\nETag: \"a\"", "",
     CACHE_POLICY_R_STORED},
    {"no-cache without a validator", NULL, "", 200, "Cache-Control: no-cache, max-age=60", "",
     CACHE_POLICY_R_NO_FRESHNESS},
    {"no-cache, force_ttl", NULL, "", 200, "Cache-Control: no-cache", "force_ttl=60",
     CACHE_POLICY_R_STORED},
    {"max-age=0 without a validator", NULL, "", 200, "Cache-Control: max-age=0", "",
     CACHE_POLICY_R_NO_FRESHNESS},
    {"max-age=0 with Last-Modified", NULL, "", 200,
     "Cache-Control: max-age=0\nLast-Modified: " D0_M10D, "", CACHE_POLICY_R_STORED},
    {"max-age=0 and a route swr window", NULL, "", 200, "Cache-Control: max-age=0", "swr=30",
     CACHE_POLICY_R_STORED},
    {"max-age=0, route swr, must-revalidate", NULL, "", 200,
     "Cache-Control: max-age=0, must-revalidate", "swr=30", CACHE_POLICY_R_NO_FRESHNESS},
    {"Expires", NULL, "", 200, "Date: " D0 "\nExpires: " D0_P3600, "", CACHE_POLICY_R_STORED},
    {"invalid Expires, ETag", NULL, "", 200, "Expires: 0\nETag: \"a\"", "", CACHE_POLICY_R_STORED},
    {"invalid Expires alone", NULL, "", 200, "Expires: 0", "", CACHE_POLICY_R_NO_FRESHNESS},
    {"default_ttl", NULL, "", 200, "", "default_ttl=30", CACHE_POLICY_R_STORED},
    {"force_ttl", NULL, "", 200, "", "force_ttl=30", CACHE_POLICY_R_STORED},
    {"force_ttl=0 without validator", NULL, "", 200, "Cache-Control: max-age=60", "force_ttl=0",
     CACHE_POLICY_R_NO_FRESHNESS},
};

START_TEST(test_storable)
{
    struct treq q;
    struct tresp p;
    struct cache_policy_route route;
    enum cache_policy_reason why = CACHE_POLICY_R_STORED;
    bool ok;

    mk_req(&q, store_cases[_i].method, store_cases[_i].req);
    mk_resp(&p, store_cases[_i].status, store_cases[_i].resp);
    mk_route(&route, store_cases[_i].route);
    ok = cache_policy_storable(&q.r, &p.r, &route, T0, &why);
    ck_assert_msg(why == store_cases[_i].want, "%s: got %s, want %s", store_cases[_i].name,
                  cache_policy_reason_name(why), cache_policy_reason_name(store_cases[_i].want));
    ck_assert(ok == (why == CACHE_POLICY_R_STORED));
    ck_assert(cache_policy_storable(&q.r, &p.r, &route, T0, NULL) == ok);
}
END_TEST

/* --- lifetime, windows and flags --------------------------------------- */

#define F_NC CACHE_POLICY_F_NO_CACHE
#define F_MR CACHE_POLICY_F_MUST_REVALIDATE
#define F_OS CACHE_POLICY_F_ORIGIN_STALE
#define F_ET CACHE_POLICY_F_HAS_ETAG
#define F_LM CACHE_POLICY_F_HAS_LAST_MODIFIED
#define F_IM CACHE_POLICY_F_IMMUTABLE
#define F_HE CACHE_POLICY_F_HEURISTIC
#define F_FO CACHE_POLICY_F_FORCED

static const struct {
    const char *name;
    int status;
    const char *resp;
    const char *route;
    int64_t lifetime;
    uint32_t flags;
    int64_t swr, sie;
} life_cases[] = {
    {"nothing", 200, "", "", 0, 0, 0, 0},
    {"max-age", 200, "Cache-Control: max-age=60", "", 60, 0, 0, 0},
    {"s-maxage beats max-age", 200, "Cache-Control: max-age=60, s-maxage=120", "", 120, F_MR, 0, 0},
    {"max-age beats Expires", 200, "Cache-Control: max-age=60\nDate: " D0 "\nExpires: " D0_P3600,
     "", 60, 0, 0, 0},
    {"s-maxage beats Expires", 200, "Cache-Control: s-maxage=10\nDate: " D0 "\nExpires: " D0_P3600,
     "", 10, F_MR, 0, 0},
    {"Expires - Date", 200, "Date: " D0 "\nExpires: " D0_P3600, "", 3600, 0, 0, 0},
    {"Expires - Date, Date later than receipt", 200, "Date: " D0_P100 "\nExpires: " D0_P3600, "",
     3500, 0, 0, 0},
    {"Expires without Date: response time", 200, "Expires: " D0_P3600, "", 3600, 0, 0, 0},
    {"Expires in the past", 200, "Date: " D0 "\nExpires: " D0_M3600, "", 0, 0, 0, 0},
    {"Expires equal to Date", 200, "Date: " D0 "\nExpires: " D0, "", 0, 0, 0, 0},
    {"Expires: 0", 200, "Date: " D0 "\nExpires: 0", "", 0, 0, 0, 0},
    {"Expires invalid beats default_ttl", 200, "Expires: soon", "default_ttl=30", 0, 0, 0, 0},
    {"Expires in RFC 850 form", 200, "Date: " D0 "\nExpires: Sunday, 06-Nov-94 09:49:37 GMT", "",
     3600, 0, 0, 0},
    {"Expires in asctime form", 200, "Date: " D0 "\nExpires: Sun Nov  6 09:49:37 1994", "", 3600, 0,
     0, 0},
    {"invalid max-age is stale", 200, "Cache-Control: max-age=abc\nExpires: " D0_P3600, "", 0, 0, 0,
     0},
    {"quoted max-age", 200, "Cache-Control: max-age=\"90\"", "", 90, 0, 0, 0},
    {"first max-age wins", 200, "Cache-Control: max-age=60, max-age=10", "", 60, 0, 0, 0},
    {"huge max-age capped", 200, "Cache-Control: max-age=99999999999", "", DMAX, 0, 0, 0},
    {"heuristic 10%", 200, "Date: " D0 "\nLast-Modified: " D0_M10D, "heuristic_max=1000000", 86400,
     F_LM | F_HE, 0, 0},
    {"heuristic 10% rounds down", 200, "Date: " D0 "\nLast-Modified: Sun, 06 Nov 1994 08:49:12 GMT",
     "", 2, F_LM | F_HE, 0, 0},
    {"heuristic default cap is a day", 200,
     "Date: " D0 "\nLast-Modified: Fri, 29 Jul 1994 08:49:37 GMT", "", 86400, F_LM | F_HE, 0, 0},
    {"heuristic capped", 200, "Date: " D0 "\nLast-Modified: " D0_M10D, "heuristic_max=3600", 3600,
     F_LM | F_HE, 0, 0},
    {"heuristic disabled", 200, "Date: " D0 "\nLast-Modified: " D0_M10D, "heuristic_max=0", 0, F_LM,
     0, 0},
    {"heuristic 404", 404, "Date: " D0 "\nLast-Modified: " D0_M10D, "", 86400, F_LM | F_HE, 0, 0},
    {"no heuristic for 302", 302, "Date: " D0 "\nLast-Modified: " D0_M10D, "status+=302", 0, F_LM,
     0, 0},
    {"heuristic for a public 302", 302,
     "Cache-Control: public\nDate: " D0 "\nLast-Modified: " D0_M10D, "status+=302", 86400,
     F_LM | F_HE, 0, 0},
    {"Last-Modified after Date", 200, "Date: " D0 "\nLast-Modified: " D0_P3600, "", 0, F_LM | F_HE,
     0, 0},
    {"invalid Last-Modified", 200, "Date: " D0 "\nLast-Modified: yesterday", "", 0, 0, 0, 0},
    {"default_ttl", 200, "", "default_ttl=30", 30, 0, 0, 0},
    {"max-age beats default_ttl", 200, "Cache-Control: max-age=60", "default_ttl=30", 60, 0, 0, 0},
    {"default_ttl beats the heuristic", 200, "Date: " D0 "\nLast-Modified: " D0_M10D,
     "default_ttl=30", 30, F_LM, 0, 0},
    {"force_ttl beats max-age", 200, "Cache-Control: max-age=60", "force_ttl=600", 600, F_FO, 0, 0},
    {"force_ttl beats s-maxage", 200, "Cache-Control: s-maxage=60", "force_ttl=600", 600,
     F_FO | F_MR, 0, 0},
    {"force_ttl=0", 200, "Cache-Control: max-age=60", "force_ttl=0", 0, F_FO, 0, 0},
    {"force_ttl clears no-cache", 200, "Cache-Control: no-cache", "force_ttl=600", 600, F_FO, 0, 0},
    {"no-cache", 200, "Cache-Control: no-cache, max-age=60", "swr=30 sie=30", 60, F_NC, 0, 0},
    {"qualified no-cache", 200, "Cache-Control: no-cache=\"Set-Cookie\"", "", 0, F_NC, 0, 0},
    {"must-revalidate: no windows", 200,
     "Cache-Control: must-revalidate, max-age=60, stale-while-revalidate=30", "swr=30 sie=30", 60,
     F_MR, 0, 0},
    {"proxy-revalidate", 200, "Cache-Control: proxy-revalidate, max-age=60", "swr=30", 60, F_MR, 0,
     0},
    {"s-maxage: no route windows", 200, "Cache-Control: s-maxage=60", "swr=30 sie=30", 60, F_MR, 0,
     0},
    {"s-maxage with origin swr", 200, "Cache-Control: s-maxage=60, stale-while-revalidate=30",
     "swr=100 sie=100", 60, F_MR | F_OS, 30, 0},
    {"s-maxage with origin sie", 200, "Cache-Control: s-maxage=60, stale-if-error=300", "", 60,
     F_MR | F_OS, 0, 300},
    {"s-maxage, must-revalidate, swr", 200,
     "Cache-Control: s-maxage=60, must-revalidate, stale-while-revalidate=30", "", 60, F_MR, 0, 0},
    {"origin swr larger", 200, "Cache-Control: max-age=60, stale-while-revalidate=30", "swr=10", 60,
     0, 30, 0},
    {"route swr larger", 200, "Cache-Control: max-age=60, stale-while-revalidate=30", "swr=100", 60,
     0, 100, 0},
    {"origin sie larger", 200, "Cache-Control: max-age=60, stale-if-error=300", "sie=60", 60, 0, 0,
     300},
    {"route sie larger", 200, "Cache-Control: max-age=60, stale-if-error=300", "sie=600", 60, 0, 0,
     600},
    {"invalid swr: route", 200, "Cache-Control: max-age=60, stale-while-revalidate=x", "swr=10", 60,
     0, 10, 0},
    {"immutable", 200, "Cache-Control: max-age=60, immutable", "", 60, F_IM, 0, 0},
    {"ETag", 200, "ETag: \"x\"", "", 0, F_ET, 0, 0},
    {"weak ETag", 200, "ETag: W/\"x\"", "", 0, F_ET, 0, 0},
    {"unquoted ETag is no validator", 200, "ETag: x", "", 0, 0, 0, 0},
};

START_TEST(test_lifetime)
{
    struct tresp p;
    struct cache_policy_route route;
    struct obj_meta m;

    mk_resp(&p, life_cases[_i].status, life_cases[_i].resp);
    mk_route(&route, life_cases[_i].route);
    cache_policy_meta(&p.r, &route, T0, T0, &m);
    ck_assert_msg(m.lifetime == life_cases[_i].lifetime, "%s: lifetime %lld, want %lld",
                  life_cases[_i].name, (long long)m.lifetime, (long long)life_cases[_i].lifetime);
    ck_assert_msg(m.flags == life_cases[_i].flags, "%s: flags %#x, want %#x", life_cases[_i].name,
                  m.flags, life_cases[_i].flags);
    ck_assert_msg(m.swr == life_cases[_i].swr && m.sie == life_cases[_i].sie,
                  "%s: swr %lld sie %lld, want %lld %lld", life_cases[_i].name, (long long)m.swr,
                  (long long)m.sie, (long long)life_cases[_i].swr, (long long)life_cases[_i].sie);
}
END_TEST

START_TEST(test_meta_times)
{
    struct tresp p;
    struct cache_policy_route route;
    struct obj_meta m;

    cache_policy_route_init(&route);
    mk_resp(&p, 200, "Date: " D0_M30 "\nAge: 12\nCache-Control: max-age=60");
    cache_policy_meta(&p.r, &route, T0 - 2, T0, &m);
    ck_assert_int_eq(m.request_time, T0 - 2);
    ck_assert_int_eq(m.response_time, T0);
    ck_assert_int_eq(m.date_value, T0 - 30);
    ck_assert_int_eq(m.age_value, 12);

    mk_resp(&p, 200, "Date: yesterday\nAge: ten");
    cache_policy_meta(&p.r, &route, T0, T0 + 1, &m);
    ck_assert_int_eq(m.date_value, T0 + 1);
    ck_assert_int_eq(m.age_value, 0);

    mk_resp(&p, 200, "Age: 99999999999");
    cache_policy_meta(&p.r, &route, T0, T0, &m);
    ck_assert_int_eq(m.date_value, T0);
    ck_assert_int_eq(m.age_value, DMAX);
}
END_TEST

/* --- age (RFC 9111 4.2.3) --------------------------------------------- */

static const struct {
    const char *name;
    int64_t request_time, response_time, date_value, age_value, now;
    int64_t want;
} age_cases[] = {
    {"new", 100, 100, 100, 0, 100, 0},
    {"resident time", 100, 100, 100, 0, 150, 50},
    {"apparent age", 100, 100, 90, 0, 100, 10},
    {"apparent age and resident time", 100, 100, 90, 0, 120, 30},
    {"Age header", 100, 100, 100, 30, 100, 30},
    {"Age plus response delay", 95, 100, 100, 30, 100, 35},
    {"apparent age beats corrected Age", 95, 100, 60, 30, 100, 40},
    {"corrected Age beats apparent age", 90, 100, 95, 30, 110, 50},
    {"Date in the future", 100, 100, 110, 0, 100, 0},
    {"now before the response (clock stepped back)", 100, 100, 100, 5, 90, 5},
    {"request after response (clock stepped back)", 105, 100, 100, 5, 100, 5},
};

START_TEST(test_age)
{
    struct obj_meta m = {
        .request_time = age_cases[_i].request_time,
        .response_time = age_cases[_i].response_time,
        .date_value = age_cases[_i].date_value,
        .age_value = age_cases[_i].age_value,
    };
    int64_t got = cache_policy_current_age(&m, age_cases[_i].now);

    ck_assert_msg(got == age_cases[_i].want, "%s: got %lld, want %lld", age_cases[_i].name,
                  (long long)got, (long long)age_cases[_i].want);
}
END_TEST

/* --- the serving decision --------------------------------------------- */

#define FRESH CACHE_POLICY_FRESH
#define BG CACHE_POLICY_STALE_REVALIDATE_BG
#define STALE CACHE_POLICY_STALE

static const struct {
    const char *name;
    const char *resp;  /* a 200 received at T0 for a request sent at T0 */
    const char *route; /* also decides honour_client_no_cache (no_honour) */
    const char *req;   /* the later request's header lines */
    int64_t at;        /* now - T0 */
    enum cache_policy_decision want;
    bool stale; /* info.stale */
    bool sie;   /* info.stale_if_error */
} decide_cases[] = {
    {"fresh", "Cache-Control: max-age=60", "", "", 0, FRESH, false, true},
    {"fresh at 59", "Cache-Control: max-age=60", "", "", 59, FRESH, false, true},
    {"stale at 60", "Cache-Control: max-age=60", "", "", 60, STALE, true, false},
    {"stale at 61", "Cache-Control: max-age=60", "", "", 61, STALE, true, false},
    {"max-age=0", "Cache-Control: max-age=0\nETag: \"a\"", "", "", 0, STALE, true, false},
    {"Age counts", "Cache-Control: max-age=60\nAge: 50", "", "", 9, FRESH, false, true},
    {"Age counts, stale", "Cache-Control: max-age=60\nAge: 50", "", "", 10, STALE, true, false},
    {"apparent age counts", "Cache-Control: max-age=60\nDate: " D0_M30, "", "", 29, FRESH, false,
     true},
    {"apparent age counts, stale", "Cache-Control: max-age=60\nDate: " D0_M30, "", "", 30, STALE,
     true, false},
    {"Expires", "Date: " D0 "\nExpires: " D0_P100, "", "", 99, FRESH, false, true},
    {"Expires, stale", "Date: " D0 "\nExpires: " D0_P100, "", "", 100, STALE, true, false},
    {"heuristic", "Date: " D0 "\nLast-Modified: " D0_M10D, "", "", 86399, FRESH, false, true},
    {"heuristic, stale", "Date: " D0 "\nLast-Modified: " D0_M10D, "", "", 86400, STALE, true,
     false},
    {"default_ttl", "", "default_ttl=30", "", 29, FRESH, false, true},
    {"default_ttl, stale", "", "default_ttl=30", "", 30, STALE, true, false},
    /* stale-while-revalidate */
    {"swr at expiry", "Cache-Control: max-age=60, stale-while-revalidate=30", "", "", 60, BG, true,
     false},
    {"swr window", "Cache-Control: max-age=60, stale-while-revalidate=30", "", "", 89, BG, true,
     false},
    {"swr window over", "Cache-Control: max-age=60, stale-while-revalidate=30", "", "", 90, STALE,
     true, false},
    {"route swr", "Cache-Control: max-age=60", "swr=30", "", 70, BG, true, false},
    {"swr, must-revalidate",
     "Cache-Control: max-age=60, must-revalidate, stale-while-revalidate=30", "swr=30", "", 70,
     STALE, true, false},
    {"route swr, s-maxage", "Cache-Control: s-maxage=60", "swr=30", "", 70, STALE, true, false},
    {"origin swr with s-maxage", "Cache-Control: s-maxage=60, stale-while-revalidate=30", "", "",
     70, BG, true, false},
    {"swr, no-cache", "Cache-Control: no-cache, max-age=60, stale-while-revalidate=30\nETag: \"a\"",
     "", "", 70, STALE, true, false},
    {"swr, request max-age", "Cache-Control: max-age=60, stale-while-revalidate=30", "",
     "Cache-Control: max-age=50", 65, STALE, true, false},
    /* stale-if-error */
    {"sie, fresh", "Cache-Control: max-age=60, stale-if-error=100", "", "", 10, FRESH, false, true},
    {"sie window", "Cache-Control: max-age=60, stale-if-error=100", "", "", 100, STALE, true, true},
    {"sie window end", "Cache-Control: max-age=60, stale-if-error=100", "", "", 159, STALE, true,
     true},
    {"sie window over", "Cache-Control: max-age=60, stale-if-error=100", "", "", 160, STALE, true,
     false},
    {"route sie", "Cache-Control: max-age=60", "sie=100", "", 100, STALE, true, true},
    {"sie, must-revalidate", "Cache-Control: max-age=60, must-revalidate, stale-if-error=100", "",
     "", 100, STALE, true, false},
    {"sie, proxy-revalidate", "Cache-Control: max-age=60, proxy-revalidate", "sie=100", "", 100,
     STALE, true, false},
    {"origin sie with s-maxage", "Cache-Control: s-maxage=60, stale-if-error=100", "", "", 100,
     STALE, true, true},
    {"sie, no-cache", "Cache-Control: no-cache, max-age=60\nETag: \"a\"", "sie=100", "", 10, STALE,
     false, false},
    /* no-cache in the response */
    {"no-cache, fresh", "Cache-Control: no-cache, max-age=60\nETag: \"a\"", "", "", 0, STALE, false,
     false},
    {"no-cache ignores max-stale", "Cache-Control: no-cache\nETag: \"a\"", "",
     "Cache-Control: max-stale", 10, STALE, true, false},
    {"no-cache ignores the route's honour flag", "Cache-Control: no-cache\nETag: \"a\"",
     "no_honour", "", 0, STALE, true, false},
    /* request directives */
    {"request max-age ok", "Cache-Control: max-age=60", "", "Cache-Control: max-age=10", 10, FRESH,
     false, true},
    {"request max-age exceeded", "Cache-Control: max-age=60", "", "Cache-Control: max-age=10", 11,
     STALE, false, true},
    {"request max-age=0, age 0", "Cache-Control: max-age=60", "", "Cache-Control: max-age=0", 0,
     FRESH, false, true},
    {"request max-age=0 (reload)", "Cache-Control: max-age=60", "", "Cache-Control: max-age=0", 1,
     STALE, false, true},
    {"immutable ignores a reload", "Cache-Control: max-age=60, immutable", "",
     "Cache-Control: max-age=0", 10, FRESH, false, true},
    {"immutable, stale", "Cache-Control: max-age=60, immutable", "", "Cache-Control: max-age=0", 70,
     STALE, true, false},
    {"immutable, forced reload", "Cache-Control: max-age=60, immutable", "",
     "Cache-Control: no-cache", 10, STALE, false, true},
    {"min-fresh ok", "Cache-Control: max-age=60", "", "Cache-Control: min-fresh=30", 30, FRESH,
     false, true},
    {"min-fresh not met", "Cache-Control: max-age=60", "", "Cache-Control: min-fresh=30", 31, STALE,
     false, true},
    {"invalid min-fresh", "Cache-Control: max-age=60", "", "Cache-Control: min-fresh=x", 0, STALE,
     false, true},
    {"max-stale", "Cache-Control: max-age=60", "", "Cache-Control: max-stale=30", 80, FRESH, true,
     false},
    {"max-stale limit", "Cache-Control: max-age=60", "", "Cache-Control: max-stale=30", 90, FRESH,
     true, false},
    {"max-stale exceeded", "Cache-Control: max-age=60", "", "Cache-Control: max-stale=30", 91,
     STALE, true, false},
    {"max-stale without value", "Cache-Control: max-age=60", "", "Cache-Control: max-stale", 100000,
     FRESH, true, false},
    {"max-stale, must-revalidate", "Cache-Control: max-age=60, must-revalidate", "",
     "Cache-Control: max-stale", 61, STALE, true, false},
    {"max-stale, s-maxage", "Cache-Control: s-maxage=60", "", "Cache-Control: max-stale", 61, STALE,
     true, false},
    {"max-stale, s-maxage and origin swr past its window",
     "Cache-Control: s-maxage=60, stale-while-revalidate=10", "", "Cache-Control: max-stale", 75,
     STALE, true, false},
    {"max-stale after the swr window", "Cache-Control: max-age=60, stale-while-revalidate=10", "",
     "Cache-Control: max-stale=100", 75, FRESH, true, false},
    {"request no-cache", "Cache-Control: max-age=60", "", "Cache-Control: no-cache", 0, STALE,
     false, true},
    {"request Pragma: no-cache", "Cache-Control: max-age=60", "", "Pragma: no-cache", 0, STALE,
     false, true},
    {"Pragma with Cache-Control is ignored", "Cache-Control: max-age=60", "",
     "Pragma: no-cache\nCache-Control: max-stale=5", 0, FRESH, false, true},
    {"request no-cache not honoured", "Cache-Control: max-age=60", "no_honour",
     "Cache-Control: no-cache", 0, FRESH, false, true},
    {"Pragma not honoured", "Cache-Control: max-age=60", "no_honour", "Pragma: no-cache", 0, FRESH,
     false, true},
    {"request max-age=0 not honoured", "Cache-Control: max-age=60", "no_honour",
     "Cache-Control: max-age=0", 10, FRESH, false, true},
    {"min-fresh not honoured", "Cache-Control: max-age=60", "no_honour",
     "Cache-Control: min-fresh=100", 10, FRESH, false, true},
    {"max-stale still applies unhonoured", "Cache-Control: max-age=60", "no_honour",
     "Cache-Control: max-stale=30, no-cache", 80, FRESH, true, false},
};

START_TEST(test_decide)
{
    struct tresp p;
    struct treq q;
    struct cache_policy_route route;
    struct cache_policy_cc cc;
    struct cache_policy_info info;
    struct obj_meta m;
    enum cache_policy_decision d;

    mk_resp(&p, 200, decide_cases[_i].resp);
    mk_req(&q, "GET", decide_cases[_i].req);
    mk_route(&route, decide_cases[_i].route);
    cache_policy_meta(&p.r, &route, T0, T0, &m);
    cache_policy_cc_request(&q.r, &cc);
    d = cache_policy_decide(&m, &cc, route.honour_client_no_cache, T0 + decide_cases[_i].at, &info);
    ck_assert_msg(d == decide_cases[_i].want, "%s: got %s, want %s", decide_cases[_i].name,
                  cache_policy_decision_name(d), cache_policy_decision_name(decide_cases[_i].want));
    ck_assert_msg(info.stale == decide_cases[_i].stale, "%s: stale %d", decide_cases[_i].name,
                  info.stale);
    ck_assert_msg(info.stale_if_error == decide_cases[_i].sie, "%s: stale_if_error %d",
                  decide_cases[_i].name, info.stale_if_error);
    ck_assert_int_eq(info.age, cache_policy_current_age(&m, T0 + decide_cases[_i].at));
    ck_assert_int_eq(info.ttl_left, m.lifetime - info.age);
    ck_assert(cache_policy_decide(&m, &cc, route.honour_client_no_cache, T0 + decide_cases[_i].at,
                                  NULL) == d);
}
END_TEST

START_TEST(test_decide_no_request_cc)
{
    struct obj_meta m = {
        .request_time = T0, .response_time = T0, .date_value = T0, .lifetime = 60, .swr = 10};
    struct cache_policy_info info;

    ck_assert_int_eq(cache_policy_decide(&m, NULL, true, T0 + 59, &info), FRESH);
    ck_assert_int_eq(info.ttl_left, 1);
    ck_assert_int_eq(cache_policy_decide(&m, NULL, true, T0 + 65, &info), BG);
    ck_assert_int_eq(info.ttl_left, -5);
    ck_assert_int_eq(cache_policy_decide(&m, NULL, true, T0 + 70, &info), STALE);
}
END_TEST

/* --- conditional requests from clients -------------------------------- */

#define STORED_BLOCK "ETag: \"abc\"\r\nLast-Modified: " D0_M3600 "\r\nDate: " D0 "\r\n"

static const struct {
    const char *name;
    const char *method;
    const char *req;
    int status;
    const char *block;
    int64_t date_fallback;
    bool want;
} cond_cases[] = {
    {"INM match", "GET", "If-None-Match: \"abc\"", 200, STORED_BLOCK, T0, true},
    {"INM weak matches strong", "GET", "If-None-Match: W/\"abc\"", 200, STORED_BLOCK, T0, true},
    {"INM strong matches weak", "GET", "If-None-Match: \"abc\"", 200, "ETag: W/\"abc\"\r\n", T0,
     true},
    {"INM no match", "GET", "If-None-Match: \"xyz\"", 200, STORED_BLOCK, T0, false},
    {"INM case matters", "GET", "If-None-Match: \"ABC\"", 200, STORED_BLOCK, T0, false},
    {"INM list", "GET", "If-None-Match: \"x\", W/\"y\" , \"abc\"", 200, STORED_BLOCK, T0, true},
    {"INM in two fields", "GET", "If-None-Match: \"x\"\nIf-None-Match: \"abc\"", 200, STORED_BLOCK,
     T0, true},
    {"INM *", "GET", "If-None-Match: *", 200, STORED_BLOCK, T0, true},
    {"INM * without a stored ETag", "GET", "If-None-Match: *", 200, "Date: " D0 "\r\n", T0, true},
    {"INM without a stored ETag", "GET", "If-None-Match: \"abc\"", 200, "Date: " D0 "\r\n", T0,
     false},
    {"INM unquoted", "GET", "If-None-Match: abc", 200, STORED_BLOCK, T0, false},
    {"INM tag with a comma", "GET", "If-None-Match: \"a,b\"", 200, "ETag: \"a,b\"\r\n", T0, true},
    {"INM tags around a comma", "GET", "If-None-Match: \"a\", \"b\"", 200, "ETag: \"a,b\"\r\n", T0,
     false},
    {"INM takes precedence over IMS", "GET", "If-None-Match: \"xyz\"\nIf-Modified-Since: " D0_P3600,
     200, STORED_BLOCK, T0, false},
    {"INM match with an old IMS", "GET", "If-None-Match: \"abc\"\nIf-Modified-Since: " D0_M10D, 200,
     STORED_BLOCK, T0, true},
    {"INM on HEAD", "HEAD", "If-None-Match: \"abc\"", 200, STORED_BLOCK, T0, true},
    {"INM on POST", "POST", "If-None-Match: \"abc\"", 200, STORED_BLOCK, T0, false},
    {"INM, stored 404", "GET", "If-None-Match: \"abc\"", 404, STORED_BLOCK, T0, false},
    {"INM, stored 204", "GET", "If-None-Match: \"abc\"", 204, STORED_BLOCK, T0, true},
    {"IMS equal to Last-Modified", "GET", "If-Modified-Since: " D0_M3600, 200, STORED_BLOCK, T0,
     true},
    {"IMS after Last-Modified", "GET", "If-Modified-Since: " D0, 200, STORED_BLOCK, T0, true},
    {"IMS before Last-Modified", "GET", "If-Modified-Since: " D0_M10D, 200, STORED_BLOCK, T0,
     false},
    {"IMS in RFC 850 form", "GET", "If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT", 200,
     STORED_BLOCK, T0, true},
    {"IMS in asctime form", "GET", "If-Modified-Since: Sun Nov  6 08:49:37 1994", 200, STORED_BLOCK,
     T0, true},
    {"IMS invalid", "GET", "If-Modified-Since: today", 200, STORED_BLOCK, T0, false},
    {"IMS twice", "GET", "If-Modified-Since: " D0 "\nIf-Modified-Since: " D0, 200, STORED_BLOCK, T0,
     false},
    {"IMS on HEAD", "HEAD", "If-Modified-Since: " D0, 200, STORED_BLOCK, T0, true},
    {"IMS on POST", "POST", "If-Modified-Since: " D0, 200, STORED_BLOCK, T0, false},
    {"IMS, no Last-Modified: Date fallback", "GET", "If-Modified-Since: " D0, 200,
     "ETag: \"abc\"\r\nDate: " D0 "\r\n", T0, true},
    {"IMS, no Last-Modified: Date fallback later", "GET", "If-Modified-Since: " D0_M30, 200,
     "ETag: \"abc\"\r\nDate: " D0 "\r\n", T0, false},
    {"IMS, no Last-Modified, no fallback", "GET", "If-Modified-Since: " D0, 200,
     "ETag: \"abc\"\r\n", -1, false},
    {"IMS, invalid Last-Modified: fallback", "GET", "If-Modified-Since: " D0, 200,
     "Last-Modified: never\r\n", T0, true},
    {"no conditional", "GET", "", 200, STORED_BLOCK, T0, false},
};

START_TEST(test_not_modified)
{
    struct treq q;
    struct cache_policy_validators v;
    const char *block = cond_cases[_i].block;
    bool got;

    mk_req(&q, cond_cases[_i].method, cond_cases[_i].req);
    cache_policy_validators(block, strlen(block), &v);
    got = cache_policy_not_modified(&q.r, cond_cases[_i].status, &v, cond_cases[_i].date_fallback,
                                    T0);
    ck_assert_msg(got == cond_cases[_i].want, "%s: got %d", cond_cases[_i].name, got);
}
END_TEST

/* --- revalidation ------------------------------------------------------ */

START_TEST(test_revalidation)
{
    static const char both[] = STORED_BLOCK;
    static const char etag_only[] = "ETag: W/\"w\"\r\n";
    static const char lm_bad[] = "Last-Modified: never\r\nETag: bad\r\n";
    static const char none[] = "Date: " D0 "\r\n";
    struct cache_policy_validators v;
    struct cache_policy_conditional c;

    cache_policy_validators(both, sizeof(both) - 1, &v);
    ck_assert(cache_policy_revalidation(&v, T0, &c));
    ck_assert_uint_eq(c.if_none_match_len, 5);
    ck_assert(memcmp(c.if_none_match, "\"abc\"", 5) == 0);
    ck_assert_uint_eq(c.if_modified_since_len, 29);
    ck_assert(memcmp(c.if_modified_since, D0_M3600, 29) == 0);

    cache_policy_validators(etag_only, sizeof(etag_only) - 1, &v);
    ck_assert(cache_policy_revalidation(&v, T0, &c));
    ck_assert(memcmp(c.if_none_match, "W/\"w\"", 5) == 0);
    ck_assert_ptr_null(c.if_modified_since);

    cache_policy_validators(lm_bad, sizeof(lm_bad) - 1, &v);
    ck_assert_ptr_nonnull(v.etag);
    ck_assert_ptr_nonnull(v.last_modified);
    ck_assert(!cache_policy_revalidation(&v, T0, &c));
    ck_assert_ptr_null(c.if_none_match);
    ck_assert_ptr_null(c.if_modified_since);

    cache_policy_validators(none, sizeof(none) - 1, &v);
    ck_assert_ptr_null(v.etag);
    ck_assert_ptr_null(v.last_modified);
    ck_assert(!cache_policy_revalidation(&v, T0, &c));
}
END_TEST

static const struct {
    const char *name;
    const char *block;
    const char *resp304;
    bool want;
} upd_cases[] = {
    {"same strong ETag", "ETag: \"a\"\r\n", "ETag: \"a\"", true},
    {"weak 304 ETag, strong stored", "ETag: \"a\"\r\n", "ETag: W/\"a\"", true},
    {"strong 304 ETag, weak stored", "ETag: W/\"a\"\r\n", "ETag: \"a\"", false},
    {"weak both", "ETag: W/\"a\"\r\n", "ETag: W/\"a\"", true},
    {"other ETag", "ETag: \"a\"\r\n", "ETag: \"b\"", false},
    {"304 ETag, none stored", "Date: " D0 "\r\n", "ETag: \"a\"", false},
    {"same Last-Modified", "Last-Modified: " D0_M3600 "\r\n", "Last-Modified: " D0_M3600, true},
    {"other Last-Modified", "Last-Modified: " D0_M3600 "\r\n", "Last-Modified: " D0, false},
    {"no validators in the 304", "ETag: \"a\"\r\n", "Date: " D0, true},
};

START_TEST(test_304_updates)
{
    struct tresp p;
    struct cache_policy_validators v;

    mk_resp(&p, 304, upd_cases[_i].resp304);
    cache_policy_validators(upd_cases[_i].block, strlen(upd_cases[_i].block), &v);
    ck_assert_msg(cache_policy_304_updates(&v, &p.r, T0) == upd_cases[_i].want, "%s",
                  upd_cases[_i].name);
}
END_TEST

/* --- merging a 304 ----------------------------------------------------- */

static const char merge_stored[] = "Content-Type: text/plain\r\n"
                                   "Cache-Control: max-age=60\r\n"
                                   "X-A: 1\r\n"
                                   "X-A: 2\r\n"
                                   "ETag: \"v1\"\r\n"
                                   "Date: " D0 "\r\n"
                                   "x-a: 3\r\n"
                                   "X-Keep: k\r\n";

START_TEST(test_merge_304)
{
    struct tresp p;
    struct treq q;
    struct cache_policy_route route;
    struct obj_meta m;
    enum cache_policy_reason why;
    char buf[1024];
    size_t n;

    cache_policy_route_init(&route);
    mk_req(&q, "GET", "");
    mk_resp(&p, 304,
            "Cache-Control: max-age=120\n"
            "X-A: new1\n"
            "Date: " D0_P3600 "\n"
            "ETag: \"v1\"\n"
            "Content-Length: 99\n"
            "Connection: close, X-Hop\n"
            "X-Hop: h\n"
            "Keep-Alive: timeout=5\n"
            "X-New: n\n"
            "Age: 5\n"
            "Set-Cookie: a=b\n"
            "X-A: new2\n");
    n = cache_policy_merge_304(merge_stored, sizeof(merge_stored) - 1, &p.r, &route, T0 + 3600, buf,
                               sizeof(buf));
    ck_assert_str_eq(buf, "Content-Type: text/plain\r\n"
                          "Cache-Control: max-age=120\r\n"
                          "X-A: new1\r\n"
                          "X-A: new2\r\n"
                          "ETag: \"v1\"\r\n"
                          "Date: " D0_P3600 "\r\n"
                          "X-Keep: k\r\n"
                          "X-New: n\r\n");
    ck_assert_uint_eq(n, strlen(buf));

    /* The merged head is what the object now holds: fresh for 120 s from the
     * 304's Date, with the 304's Age. */
    ck_assert(
        cache_policy_refresh(&q.r, 200, buf, n, &p.r, &route, T0 + 3599, T0 + 3600, &m, &why));
    ck_assert_int_eq(why, CACHE_POLICY_R_STORED);
    ck_assert_int_eq(m.lifetime, 120);
    ck_assert_int_eq(m.date_value, T0 + 3600);
    ck_assert_int_eq(m.age_value, 5);
    ck_assert_int_eq(m.request_time, T0 + 3599);
    ck_assert_int_eq(m.response_time, T0 + 3600);
    ck_assert_uint_eq(m.flags, CACHE_POLICY_F_HAS_ETAG);
    ck_assert_int_eq(cache_policy_current_age(&m, T0 + 3600), 6);

    /* Set-Cookie from the 304 only when the route stores it. */
    route.allow_set_cookie = true;
    cache_policy_merge_304(merge_stored, sizeof(merge_stored) - 1, &p.r, &route, T0, buf,
                           sizeof(buf));
    ck_assert_ptr_nonnull(strstr(buf, "\r\nSet-Cookie: a=b\r\n"));
}
END_TEST

START_TEST(test_merge_304_keeps_and_dates)
{
    static const char expires_stored[] = "Expires: " D0_P100 "\r\nDate: " D0 "\r\nETag: \"e\"\r\n";
    struct tresp p;
    struct treq q;
    struct cache_policy_route route;
    struct obj_meta m;
    enum cache_policy_reason why;
    char buf[1024], small[16];
    size_t n, full;

    cache_policy_route_init(&route);
    mk_req(&q, "GET", "");

    /* A 304 without Date refreshes the stored Date to the response time. */
    mk_resp(&p, 304, "ETag: \"v1\"");
    n = cache_policy_merge_304(merge_stored, sizeof(merge_stored) - 1, &p.r, &route, T0 + 100, buf,
                               sizeof(buf));
    ck_assert_str_eq(buf, "Content-Type: text/plain\r\n"
                          "Cache-Control: max-age=60\r\n"
                          "X-A: 1\r\n"
                          "X-A: 2\r\n"
                          "ETag: \"v1\"\r\n"
                          "Date: " D0_P100 "\r\n"
                          "x-a: 3\r\n"
                          "X-Keep: k\r\n");
    ck_assert(cache_policy_refresh(&q.r, 200, buf, n, &p.r, &route, T0 + 100, T0 + 100, &m, &why));
    ck_assert_int_eq(m.lifetime, 60);
    ck_assert_int_eq(m.date_value, T0 + 100);
    ck_assert_int_eq(m.age_value, 0);

    /* snprintf convention. */
    full = n;
    ck_assert_uint_eq(cache_policy_merge_304(merge_stored, sizeof(merge_stored) - 1, &p.r, &route,
                                             T0 + 100, NULL, 0),
                      full);
    ck_assert_uint_eq(cache_policy_merge_304(merge_stored, sizeof(merge_stored) - 1, &p.r, &route,
                                             T0 + 100, small, sizeof(small)),
                      full);
    ck_assert_str_eq(small, "Content-Type: t");

    /* A 304 that makes the response private: the object must go. */
    mk_resp(&p, 304, "Cache-Control: private\nDate: " D0);
    n = cache_policy_merge_304(merge_stored, sizeof(merge_stored) - 1, &p.r, &route, T0, buf,
                               sizeof(buf));
    ck_assert(!cache_policy_refresh(&q.r, 200, buf, n, &p.r, &route, T0, T0, &m, &why));
    ck_assert_int_eq(why, CACHE_POLICY_R_PRIVATE);

    /* Expires updated by the 304, against its Date. */
    mk_resp(&p, 304, "Expires: " D0_P3600 "\nDate: " D0_P100);
    n = cache_policy_merge_304(expires_stored, sizeof(expires_stored) - 1, &p.r, &route, T0 + 100,
                               buf, sizeof(buf));
    ck_assert(cache_policy_refresh(&q.r, 200, buf, n, &p.r, &route, T0 + 100, T0 + 100, &m, &why));
    ck_assert_int_eq(m.lifetime, 3500);
}
END_TEST

START_TEST(test_refresh_too_many_fields)
{
    static char block[HTTP_HEADERS_CAP * 16 + 64];
    struct tresp p;
    struct treq q;
    struct cache_policy_route route;
    struct obj_meta m;
    enum cache_policy_reason why;
    size_t n = 0;

    cache_policy_route_init(&route);
    mk_req(&q, "GET", "");
    mk_resp(&p, 304, "Date: " D0);
    for (int i = 0; i <= HTTP_HEADERS_CAP; i++)
        n += (size_t)snprintf(block + n, sizeof(block) - n, "X-%d: v\r\n", i);
    ck_assert(!cache_policy_refresh(&q.r, 200, block, n, &p.r, &route, T0, T0, &m, &why));
    ck_assert_int_eq(why, CACHE_POLICY_R_TOO_MANY_FIELDS);
}
END_TEST

/* --- stored header blocks --------------------------------------------- */

START_TEST(test_stored_head)
{
    struct tresp p;
    struct cache_policy_route route;
    char buf[1024];
    size_t n;

    cache_policy_route_init(&route);
    mk_resp(&p, 200,
            "Date: " D0 "\n"
            "Content-Length: 5\n"
            "Connection: keep-alive, X-Hop\n"
            "X-Hop: 1\n"
            "Keep-Alive: timeout=5\n"
            "Age: 10\n"
            "Set-Cookie: a=b\n"
            "Proxy-Authenticate: Basic\n"
            "Content-Type: text/plain\n"
            "ETag: \"e\"\n"
            "Vary: Accept-Encoding\n"
            "Cache-Control: max-age=60\n");
    n = cache_policy_stored_head(&p.r, &route, T0 + 5, buf, sizeof(buf));
    ck_assert_str_eq(buf, "Date: " D0 "\r\n"
                          "Content-Type: text/plain\r\n"
                          "ETag: \"e\"\r\n"
                          "Vary: Accept-Encoding\r\n"
                          "Cache-Control: max-age=60\r\n");
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_uint_eq(cache_policy_stored_head(&p.r, &route, T0 + 5, NULL, 0), n);

    route.allow_set_cookie = true;
    cache_policy_stored_head(&p.r, &route, T0 + 5, buf, sizeof(buf));
    ck_assert_ptr_nonnull(strstr(buf, "\r\nSet-Cookie: a=b\r\n"));

    /* Chunked, no Date: framing dropped, Date added (RFC 9110 6.6.1). */
    mk_resp(&p, 200, "Transfer-Encoding: chunked\nTE: trailers\nTrailer: X-T\nX-B: b");
    cache_policy_stored_head(&p.r, &route, T0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "X-B: b\r\nDate: " D0 "\r\n");
}
END_TEST

START_TEST(test_block)
{
    static const char block[] = "A: 1\r\n"
                                "bad line\r\n"
                                ": no name\r\n"
                                "B:\t two  words \t\r\n"
                                "c:3\r\n"
                                "Empty:\r\n"
                                "D: 4"; /* no final CRLF */
    static const char ended[] = "A: 1\r\n\r\nB: 2\r\n";
    struct http_header hd;
    struct http_head h;
    const char *v;
    size_t vlen, pos = 0;

    ck_assert(cache_policy_block_next(block, sizeof(block) - 1, &pos, &hd));
    ck_assert(hd.name_len == 1 && hd.name[0] == 'A' && hd.value_len == 1 && hd.value[0] == '1');
    ck_assert(cache_policy_block_next(block, sizeof(block) - 1, &pos, &hd));
    ck_assert(hd.name_len == 1 && hd.name[0] == 'B');
    ck_assert_uint_eq(hd.value_len, 10);
    ck_assert(memcmp(hd.value, "two  words", 10) == 0);

    ck_assert(cache_policy_block_find(block, sizeof(block) - 1, "C", &v, &vlen));
    ck_assert(vlen == 1 && v[0] == '3');
    ck_assert(cache_policy_block_find(block, sizeof(block) - 1, "empty", &v, &vlen));
    ck_assert_uint_eq(vlen, 0);
    ck_assert(cache_policy_block_find(block, sizeof(block) - 1, "d", &v, &vlen));
    ck_assert(vlen == 1 && v[0] == '4');
    ck_assert(!cache_policy_block_find(block, sizeof(block) - 1, "bad line", &v, &vlen));
    ck_assert(!cache_policy_block_find(block, sizeof(block) - 1, "X", &v, &vlen));

    ck_assert_int_eq(cache_policy_block_to_head(block, sizeof(block) - 1, &h), 0);
    ck_assert_uint_eq(h.nheaders, 5);
    ck_assert_ptr_nonnull(http_head_find(&h, "c"));
    ck_assert_int_eq(h.framing, HTTP_FRAMING_NONE);

    /* An empty line ends the block. */
    ck_assert_int_eq(cache_policy_block_to_head(ended, sizeof(ended) - 1, &h), 0);
    ck_assert_uint_eq(h.nheaders, 1);
    ck_assert(!cache_policy_block_find(ended, sizeof(ended) - 1, "B", &v, &vlen));
    ck_assert_int_eq(cache_policy_block_to_head("", 0, &h), 0);
    ck_assert_uint_eq(h.nheaders, 0);
}
END_TEST

/* --- routes and names --------------------------------------------------- */

START_TEST(test_route)
{
    static const int heuristic[] = {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501};
    struct cache_policy_route r;
    int count = 0;

    cache_policy_route_init(&r);
    ck_assert_int_eq(r.default_ttl, -1);
    ck_assert_int_eq(r.force_ttl, -1);
    ck_assert_int_eq(r.stale_while_revalidate, 0);
    ck_assert_int_eq(r.stale_if_error, 0);
    ck_assert(r.heuristic_max > 0);
    ck_assert(!r.allow_set_cookie);
    ck_assert(r.honour_client_no_cache);
    for (int s = 0; s < 1000; s++)
        count += cache_policy_route_has_status(&r, s);
    ck_assert_int_eq(count, (int)NELEMS(heuristic));
    for (size_t k = 0; k < NELEMS(heuristic); k++)
        ck_assert(cache_policy_route_has_status(&r, heuristic[k]));
    cache_policy_route_set_status(&r, 599, true);
    cache_policy_route_set_status(&r, 100, true);
    cache_policy_route_set_status(&r, 200, false);
    cache_policy_route_set_status(&r, 600, true);
    cache_policy_route_set_status(&r, 99, true);
    ck_assert(cache_policy_route_has_status(&r, 599));
    ck_assert(cache_policy_route_has_status(&r, 100));
    ck_assert(!cache_policy_route_has_status(&r, 200));
    ck_assert(!cache_policy_route_has_status(&r, 600));
    ck_assert(!cache_policy_route_has_status(&r, 99));
    ck_assert(!cache_policy_route_has_status(&r, -1));
}
END_TEST

START_TEST(test_names)
{
    static const enum cache_policy_reason reasons[] = {
#define R(name, str) CACHE_POLICY_R_##name,
        CACHE_POLICY_REASONS(R)
#undef R
    };
    static const enum cache_policy_decision decisions[] = {
#define D(name, str) CACHE_POLICY_##name,
        CACHE_POLICY_DECISIONS(D)
#undef D
    };

    for (size_t i = 0; i < NELEMS(reasons); i++) {
        const char *a = cache_policy_reason_name(reasons[i]);
        ck_assert(a[0] != '\0' && strcmp(a, "?") != 0);
        ck_assert_uint_eq(strspn(a, "abcdefghijklmnopqrstuvwxyz_"), strlen(a));
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(a, cache_policy_reason_name(reasons[j]));
    }
    for (size_t i = 0; i < NELEMS(decisions); i++) {
        const char *a = cache_policy_decision_name(decisions[i]);
        ck_assert(a[0] != '\0' && strcmp(a, "?") != 0);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(a, cache_policy_decision_name(decisions[j]));
    }
    ck_assert_str_eq(cache_policy_reason_name((enum cache_policy_reason)999), "?");
    ck_assert_str_eq(cache_policy_decision_name((enum cache_policy_decision)999), "?");
}
END_TEST

static Suite *
cache_policy_suite(void)
{
    Suite *s = suite_create("cache_policy");
    struct {
        const char *name;
        const TTest *test;
        int n; /* loop over a table of n rows; 0: a plain test */
    } cases[] = {
        {"cc_parse", test_cc_parse, (int)NELEMS(cc_cases)},
        {"date_parse", test_date_parse, (int)NELEMS(date_cases)},
        {"date_format", test_date_format, 0},
        {"storable", test_storable, (int)NELEMS(store_cases)},
        {"lifetime", test_lifetime, (int)NELEMS(life_cases)},
        {"meta_times", test_meta_times, 0},
        {"age", test_age, (int)NELEMS(age_cases)},
        {"decide", test_decide, (int)NELEMS(decide_cases)},
        {"decide_no_request_cc", test_decide_no_request_cc, 0},
        {"not_modified", test_not_modified, (int)NELEMS(cond_cases)},
        {"revalidation", test_revalidation, 0},
        {"304_updates", test_304_updates, (int)NELEMS(upd_cases)},
        {"merge_304", test_merge_304, 0},
        {"merge_304_keeps_and_dates", test_merge_304_keeps_and_dates, 0},
        {"refresh_too_many_fields", test_refresh_too_many_fields, 0},
        {"stored_head", test_stored_head, 0},
        {"block", test_block, 0},
        {"route", test_route, 0},
        {"names", test_names, 0},
    };

    for (size_t i = 0; i < NELEMS(cases); i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (cases[i].n > 0)
            tcase_add_loop_test(tc, cases[i].test, 0, cases[i].n);
        else
            tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(cache_policy_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
