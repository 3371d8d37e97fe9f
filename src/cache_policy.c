/*
 * cache_policy: see cache_policy.h. Everything works on (pointer, length)
 * strings of parsed messages or stored blocks and on caller buffers; the
 * only state is constant tables.
 *
 * One internal pass (cache_policy_eval_meta) reads a response head and
 * computes all its freshness facts; storability, meta and the refresh
 * after a 304 are all built on it, so the three can never disagree.
 */
#include "cache_policy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_write.h"

/* Fifty years in seconds (365.2425-day years), for RFC 850 two-digit years. */
#define CACHE_POLICY_FIFTY_YEARS INT64_C(1577847600)

/* 9999-12-31 23:59:59, the last date an IMF-fixdate can write. */
#define CACHE_POLICY_DATE_MAX INT64_C(253402300799)

/* --- small string helpers --------------------------------------------- */

static bool
cache_policy_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

static bool
cache_policy_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool
cache_policy_is_tchar(char c)
{
    unsigned char u = (unsigned char)c;

    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z'))
        return true;
    return u != 0 && strchr("!#$%&'*+-.^_`|~", u) != NULL;
}

/* Delta-seconds (1*DIGIT), capped at CACHE_POLICY_DELTA_MAX; -1 when invalid. */
static int64_t
cache_policy_delta(const char *s, size_t n)
{
    int64_t v = 0;

    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v < CACHE_POLICY_DELTA_MAX)
            v = v * 10 + (s[i] - '0');
    }
    return v < CACHE_POLICY_DELTA_MAX ? v : CACHE_POLICY_DELTA_MAX;
}

static int64_t
cache_policy_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t
cache_policy_max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* --- Cache-Control ------------------------------------------------------ */

/* Sets a delta-seconds directive unless an earlier occurrence did. */
static void
cache_policy_cc_delta(int64_t *field, bool ok, const char *arg, size_t arg_len, int64_t invalid)
{
    int64_t d;

    if (*field >= 0)
        return;
    d = ok ? cache_policy_delta(arg, arg_len) : -1;
    *field = d >= 0 ? d : invalid;
}

/*
 * Applies one directive. ok is false for a malformed element or a missing
 * argument: restrictive directives still apply then, permissive ones
 * (public, immutable, must-understand, max-stale) do not.
 */
static void
cache_policy_cc_apply(struct cache_policy_cc *cc, const char *name, size_t name_len, bool ok,
                      bool has_arg, const char *arg, size_t arg_len)
{
#define CACHE_POLICY_IS(lit) cache_policy_ieq(name, name_len, lit, sizeof(lit) - 1)
    bool delta_ok = ok && has_arg;

    if (CACHE_POLICY_IS("no-store"))
        cc->no_store = true;
    else if (CACHE_POLICY_IS("no-cache"))
        cc->no_cache = true;
    else if (CACHE_POLICY_IS("private"))
        cc->private_ = true;
    else if (CACHE_POLICY_IS("must-revalidate"))
        cc->must_revalidate = true;
    else if (CACHE_POLICY_IS("proxy-revalidate"))
        cc->proxy_revalidate = true;
    else if (CACHE_POLICY_IS("only-if-cached"))
        cc->only_if_cached = true;
    else if (CACHE_POLICY_IS("public"))
        cc->public_ = cc->public_ || ok;
    else if (CACHE_POLICY_IS("immutable"))
        cc->immutable = cc->immutable || ok;
    else if (CACHE_POLICY_IS("must-understand"))
        cc->must_understand = cc->must_understand || ok;
    else if (CACHE_POLICY_IS("max-age"))
        cache_policy_cc_delta(&cc->max_age, delta_ok, arg, arg_len, 0);
    else if (CACHE_POLICY_IS("s-maxage"))
        cache_policy_cc_delta(&cc->s_maxage, delta_ok, arg, arg_len, 0);
    else if (CACHE_POLICY_IS("stale-while-revalidate"))
        cache_policy_cc_delta(&cc->stale_while_revalidate, delta_ok, arg, arg_len, 0);
    else if (CACHE_POLICY_IS("stale-if-error"))
        cache_policy_cc_delta(&cc->stale_if_error, delta_ok, arg, arg_len, 0);
    else if (CACHE_POLICY_IS("min-fresh"))
        cache_policy_cc_delta(&cc->min_fresh, delta_ok, arg, arg_len, CACHE_POLICY_DELTA_MAX);
    else if (CACHE_POLICY_IS("max-stale") && ok && cc->max_stale < 0) {
        if (!has_arg)
            cc->max_stale = CACHE_POLICY_DELTA_MAX;
        else
            cc->max_stale = cache_policy_delta(arg, arg_len); /* invalid stays -1 */
    }
#undef CACHE_POLICY_IS
}

/*
 * Parses one field value: #( token [ "=" ( token / quoted-string ) ] ).
 * Commas inside a quoted-string do not split. A malformed element is
 * skipped up to the next comma, its directive applied as "not ok".
 */
static void
cache_policy_cc_value(struct cache_policy_cc *cc, const char *v, size_t n)
{
    size_t i = 0;

    while (i < n) {
        const char *name, *arg = NULL;
        size_t name_len, arg_len = 0;
        bool ok = true, has_arg = false, quoted = false;

        while (i < n && (v[i] == ',' || cache_policy_is_ows(v[i])))
            i++;
        if (i >= n)
            break;
        name = v + i;
        while (i < n && cache_policy_is_tchar(v[i]))
            i++;
        name_len = (size_t)(v + i - name);
        while (i < n && cache_policy_is_ows(v[i]))
            i++;
        if (i < n && v[i] == '=') {
            has_arg = true;
            i++;
            while (i < n && cache_policy_is_ows(v[i]))
                i++;
            if (i < n && v[i] == '"') {
                arg = v + ++i;
                while (i < n && v[i] != '"')
                    i += (v[i] == '\\' && i + 1 < n) ? 2 : 1;
                if (i >= n) {
                    ok = false;
                    i = n;
                } else {
                    arg_len = (size_t)(v + i - arg);
                    i++;
                }
            } else {
                arg = v + i;
                while (i < n && cache_policy_is_tchar(v[i]))
                    i++;
                arg_len = (size_t)(v + i - arg);
            }
            while (i < n && cache_policy_is_ows(v[i]))
                i++;
        }
        if (i < n && v[i] != ',') {
            ok = false;
            for (; i < n && (quoted || v[i] != ','); i++) {
                if (quoted && v[i] == '\\')
                    i++;
                else if (v[i] == '"')
                    quoted = !quoted;
            }
        }
        if (name_len > 0)
            cache_policy_cc_apply(cc, name, name_len, ok, has_arg, arg, arg_len);
    }
}

static void
cache_policy_cc_clear(struct cache_policy_cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = -1;
    cc->s_maxage = -1;
    cc->max_stale = -1;
    cc->min_fresh = -1;
    cc->stale_while_revalidate = -1;
    cc->stale_if_error = -1;
}

void
cache_policy_cc_parse(const struct http_head *h, struct cache_policy_cc *out)
{
    cache_policy_cc_clear(out);
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *f = &h->headers[i];
        if (http_str_ieq(f->name, f->name_len, "cache-control"))
            cache_policy_cc_value(out, f->value, f->value_len);
    }
}

void
cache_policy_cc_request(const struct http_request *req, struct cache_policy_cc *out)
{
    const struct http_head *h = &req->head;

    cache_policy_cc_parse(h, out);
    if (http_head_find(h, "cache-control") != NULL)
        return;
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *f = &h->headers[i];
        if (http_str_ieq(f->name, f->name_len, "pragma") &&
            http_list_has_token(f->value, f->value_len, "no-cache", 8))
            out->no_cache = true;
    }
}

/* --- HTTP-date ---------------------------------------------------------- */

static const char cache_policy_months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
/* Index 0 is Sunday, as (days since 1970-01-01 + 4) % 7 gives. */
static const char cache_policy_wkdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const cache_policy_wkdays_long[7] = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t
cache_policy_days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
cache_policy_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t
cache_policy_floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static bool
cache_policy_date_valid(int64_t y, int mon, int day, int hh, int mm, int ss)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1])
        return false;
    if (mon == 2 && day == 29 && !leap)
        return false;
    /* 60 is a leap second: it counts as the next minute's first. */
    return hh <= 23 && mm <= 59 && ss <= 60;
}

static int64_t
cache_policy_date_make(int64_t y, int mon, int day, int hh, int mm, int ss)
{
    int64_t t = cache_policy_days_from_civil(y, mon, day) * 86400 + hh * 3600 + mm * 60 + ss;
    return t < 0 ? 0 : t;
}

struct cache_policy_scan {
    const char *s;
    size_t n;
    size_t i;
};

/* Matches lit case-insensitively at the cursor and steps over it. */
static bool
cache_policy_scan_lit(struct cache_policy_scan *sc, const char *lit)
{
    size_t len = strlen(lit);

    if (sc->n - sc->i < len || strncasecmp(sc->s + sc->i, lit, len) != 0)
        return false;
    sc->i += len;
    return true;
}

/* Exactly count digits. */
static bool
cache_policy_scan_digits(struct cache_policy_scan *sc, unsigned count, int *out)
{
    int v = 0;

    if (sc->n - sc->i < count)
        return false;
    for (unsigned k = 0; k < count; k++) {
        char c = sc->s[sc->i + k];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    sc->i += count;
    *out = v;
    return true;
}

/* A month name: 1..12, or 0. */
static int
cache_policy_scan_month(struct cache_policy_scan *sc)
{
    for (int k = 0; k < 12; k++)
        if (cache_policy_scan_lit(sc, cache_policy_months[k]))
            return k + 1;
    return 0;
}

/* "HH:MM:SS" */
static bool
cache_policy_scan_time(struct cache_policy_scan *sc, int *hh, int *mm, int *ss)
{
    return cache_policy_scan_digits(sc, 2, hh) && cache_policy_scan_lit(sc, ":") &&
           cache_policy_scan_digits(sc, 2, mm) && cache_policy_scan_lit(sc, ":") &&
           cache_policy_scan_digits(sc, 2, ss);
}

/* The year with last two digits yy within 50 years of now (RFC 9110 5.6.7). */
static int64_t
cache_policy_year2(int yy, int mon, int day, int hh, int mm, int ss, int64_t now)
{
    int64_t ny, y, t;
    int nm, nd;

    cache_policy_civil_from_days(cache_policy_floor_div(now, 86400), &ny, &nm, &nd);
    y = ny - (ny % 100 + 100) % 100 + yy;
    t = cache_policy_days_from_civil(y, mon, day) * 86400 + hh * 3600 + mm * 60 + ss;
    if (t > now + CACHE_POLICY_FIFTY_YEARS)
        y -= 100;
    else if (t <= now - CACHE_POLICY_FIFTY_YEARS)
        y += 100;
    return y;
}

int64_t
cache_policy_date_parse(const char *s, size_t len, int64_t now)
{
    struct cache_policy_scan sc = {s, len, 0};
    int mon, day = 0, year = 0, hh, mm, ss, kind = -1;
    size_t name_len;
    int64_t y;

    /* The day name tells the format: "Sun," IMF, "Sunday," RFC 850, "Sun " asctime. */
    while (sc.i < len && ((s[sc.i] | 0x20) >= 'a' && (s[sc.i] | 0x20) <= 'z'))
        sc.i++;
    name_len = sc.i;
    for (int k = 0; k < 7 && kind < 0; k++) {
        if (cache_policy_ieq(s, name_len, cache_policy_wkdays[k], 3))
            kind = sc.i < len && s[sc.i] == ',' ? 0 : 2;
        else if (cache_policy_ieq(s, name_len, cache_policy_wkdays_long[k],
                                  strlen(cache_policy_wkdays_long[k])))
            kind = 1;
    }
    if (kind == 0) {
        if (!cache_policy_scan_lit(&sc, ", ") || !cache_policy_scan_digits(&sc, 2, &day) ||
            !cache_policy_scan_lit(&sc, " ") || (mon = cache_policy_scan_month(&sc)) == 0 ||
            !cache_policy_scan_lit(&sc, " ") || !cache_policy_scan_digits(&sc, 4, &year) ||
            !cache_policy_scan_lit(&sc, " ") || !cache_policy_scan_time(&sc, &hh, &mm, &ss) ||
            !cache_policy_scan_lit(&sc, " GMT"))
            return -1;
        y = year;
    } else if (kind == 1) {
        if (!cache_policy_scan_lit(&sc, ", ") || !cache_policy_scan_digits(&sc, 2, &day) ||
            !cache_policy_scan_lit(&sc, "-") || (mon = cache_policy_scan_month(&sc)) == 0 ||
            !cache_policy_scan_lit(&sc, "-") || !cache_policy_scan_digits(&sc, 2, &year) ||
            !cache_policy_scan_lit(&sc, " ") || !cache_policy_scan_time(&sc, &hh, &mm, &ss) ||
            !cache_policy_scan_lit(&sc, " GMT"))
            return -1;
        y = cache_policy_year2(year, mon, day, hh, mm, ss, now);
    } else if (kind == 2) {
        if (!cache_policy_scan_lit(&sc, " ") || (mon = cache_policy_scan_month(&sc)) == 0 ||
            !cache_policy_scan_lit(&sc, " "))
            return -1;
        if (!cache_policy_scan_lit(&sc, " ") || !cache_policy_scan_digits(&sc, 1, &day)) {
            if (!cache_policy_scan_digits(&sc, 2, &day))
                return -1;
        }
        if (!cache_policy_scan_lit(&sc, " ") || !cache_policy_scan_time(&sc, &hh, &mm, &ss) ||
            !cache_policy_scan_lit(&sc, " ") || !cache_policy_scan_digits(&sc, 4, &year))
            return -1;
        y = year;
    } else {
        return -1;
    }
    if (sc.i != len || !cache_policy_date_valid(y, mon, day, hh, mm, ss))
        return -1;
    return cache_policy_date_make(y, mon, day, hh, mm, ss);
}

size_t
cache_policy_date_format(int64_t t, char *buf, size_t cap)
{
    int64_t days, secs, y;
    int m, d, n;

    t = cache_policy_max(0, cache_policy_min(t, CACHE_POLICY_DATE_MAX));
    days = t / 86400;
    secs = t % 86400;
    cache_policy_civil_from_days(days, &y, &m, &d);
    n = snprintf(buf, cap, "%s, %02d %s %04lld %02d:%02d:%02d GMT",
                 cache_policy_wkdays[(days + 4) % 7], d, cache_policy_months[m - 1], (long long)y,
                 (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    return n < 0 ? 0 : (size_t)n;
}

/* --- routes and statuses ------------------------------------------------ */

/* RFC 9110 15.1: statuses "heuristically cacheable" by default. */
static bool
cache_policy_status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return true;
    default:
        return false;
    }
}

/*
 * Statuses whose caching requirements we implement, for must-understand:
 * the final statuses RFC 9110 defines, but 206 (ranges are not combined)
 * and 304 (never stored).
 */
static bool
cache_policy_status_understood(int status)
{
    if ((status >= 200 && status <= 205) || (status >= 400 && status <= 417) ||
        (status >= 500 && status <= 505))
        return true;
    switch (status) {
    case 300:
    case 301:
    case 302:
    case 303:
    case 305:
    case 307:
    case 308:
    case 421:
    case 422:
    case 426:
        return true;
    default:
        return false;
    }
}

void
cache_policy_route_set_status(struct cache_policy_route *r, int status, bool on)
{
    unsigned bit;

    if (status < 100 || status > 599)
        return;
    bit = (unsigned)(status - 100);
    if (on)
        r->statuses[bit / 64] |= UINT64_C(1) << (bit % 64);
    else
        r->statuses[bit / 64] &= ~(UINT64_C(1) << (bit % 64));
}

bool
cache_policy_route_has_status(const struct cache_policy_route *r, int status)
{
    unsigned bit;

    if (status < 100 || status > 599)
        return false;
    bit = (unsigned)(status - 100);
    return (r->statuses[bit / 64] >> (bit % 64)) & 1;
}

void
cache_policy_route_init(struct cache_policy_route *r)
{
    memset(r, 0, sizeof(*r));
    r->default_ttl = -1;
    r->force_ttl = -1;
    r->heuristic_max = 86400;
    r->honour_client_no_cache = true;
    for (int s = 200; s <= 599; s++)
        if (cache_policy_status_heuristic(s))
            cache_policy_route_set_status(r, s, true);
}

/* --- entity-tags -------------------------------------------------------- */

/*
 * Parses an entity-tag at the start of s: [ "W/" ] DQUOTE *etagc DQUOTE.
 * On success returns the bytes it spans and sets the opaque-tag (quotes
 * included) and weakness; returns 0 when s does not start with one.
 */
static size_t
cache_policy_etag(const char *s, size_t n, const char **opaque, size_t *opaque_len, bool *weak)
{
    size_t i = 0, start;

    *weak = false;
    if (n >= 2 && s[0] == 'W' && s[1] == '/') {
        *weak = true;
        i = 2;
    }
    if (i >= n || s[i] != '"')
        return 0;
    start = i++;
    for (; i < n && s[i] != '"'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == 0x7f)
            return 0;
    }
    if (i >= n)
        return 0;
    i++;
    *opaque = s + start;
    *opaque_len = i - start;
    return i;
}

/* A whole value that is exactly one entity-tag. */
static bool
cache_policy_etag_whole(const char *s, size_t n, const char **opaque, size_t *opaque_len,
                        bool *weak)
{
    return s != NULL && n > 0 && cache_policy_etag(s, n, opaque, opaque_len, weak) == n;
}

/* True when the If-None-Match value is "*" or lists a tag weakly equal to
 * the stored one (stored_len 0: no stored ETag). */
static bool
cache_policy_inm_match(const char *v, size_t n, const char *stored, size_t stored_len)
{
    size_t i = 0, used, ol;
    const char *op;
    bool weak;

    while (i < n) {
        while (i < n && (v[i] == ',' || cache_policy_is_ows(v[i])))
            i++;
        if (i >= n)
            break;
        if (v[i] == '*') {
            size_t j = i + 1;
            while (j < n && cache_policy_is_ows(v[j]))
                j++;
            if (j >= n || v[j] == ',')
                return true;
        } else if ((used = cache_policy_etag(v + i, n - i, &op, &ol, &weak)) > 0) {
            i += used;
            if (stored_len > 0 && ol == stored_len && memcmp(op, stored, ol) == 0)
                return true;
        }
        while (i < n && v[i] != ',')
            i++;
    }
    return false;
}

/* --- freshness ---------------------------------------------------------- */

/*
 * Computes the freshness facts of a response head h with status (Age read
 * from age_head) into *m and its directives into *cc.
 */
static void
cache_policy_eval_meta(int status, const struct http_head *h, const struct http_head *age_head,
                       const struct cache_policy_route *route, int64_t request_time,
                       int64_t response_time, struct obj_meta *m, struct cache_policy_cc *cc)
{
    const struct http_header *f;
    int64_t date = -1, expires = -1, lm = -1, age = -1, lifetime = 0;
    bool has_expires = false, hard, origin_stale;
    const char *op;
    size_t ol;
    bool weak;
    uint32_t flags = 0;

    cache_policy_cc_parse(h, cc);
    if ((f = http_head_find(h, "date")) != NULL)
        date = cache_policy_date_parse(f->value, f->value_len, response_time);
    if ((f = http_head_find(age_head, "age")) != NULL)
        age = cache_policy_delta(f->value, f->value_len);
    if ((f = http_head_find(h, "expires")) != NULL) {
        has_expires = true;
        expires = cache_policy_date_parse(f->value, f->value_len, response_time);
    }
    if ((f = http_head_find(h, "last-modified")) != NULL)
        lm = cache_policy_date_parse(f->value, f->value_len, response_time);
    if ((f = http_head_find(h, "etag")) != NULL &&
        cache_policy_etag_whole(f->value, f->value_len, &op, &ol, &weak))
        flags |= CACHE_POLICY_F_HAS_ETAG;
    if (lm >= 0)
        flags |= CACHE_POLICY_F_HAS_LAST_MODIFIED;

    m->request_time = request_time;
    m->response_time = response_time;
    m->date_value = date >= 0 ? date : response_time;
    m->age_value = age >= 0 ? age : 0;

    if (route->force_ttl >= 0) {
        lifetime = route->force_ttl;
        flags |= CACHE_POLICY_F_FORCED;
    } else if (cc->s_maxage >= 0) {
        lifetime = cc->s_maxage;
    } else if (cc->max_age >= 0) {
        lifetime = cc->max_age;
    } else if (has_expires) {
        lifetime = expires >= 0 ? cache_policy_max(0, expires - m->date_value) : 0;
    } else if (route->default_ttl >= 0) {
        lifetime = route->default_ttl;
    } else if ((cache_policy_status_heuristic(status) || cc->public_) && lm >= 0 &&
               route->heuristic_max > 0) {
        lifetime =
            cache_policy_min(cache_policy_max(0, m->date_value - lm) / 10, route->heuristic_max);
        flags |= CACHE_POLICY_F_HEURISTIC;
    }
    m->lifetime = cache_policy_min(lifetime, CACHE_POLICY_DELTA_MAX);

    /* force_ttl means "fresh for that long": no per-use revalidation. */
    if (cc->no_cache && route->force_ttl < 0)
        flags |= CACHE_POLICY_F_NO_CACHE;
    hard = cc->must_revalidate || cc->proxy_revalidate;
    if (hard || cc->s_maxage >= 0)
        flags |= CACHE_POLICY_F_MUST_REVALIDATE;
    if (cc->immutable)
        flags |= CACHE_POLICY_F_IMMUTABLE;

    /*
     * s-maxage implies proxy-revalidate, but an origin that sends
     * stale-while-revalidate / stale-if-error with it grants those windows
     * explicitly (RFC 5861; the common "s-maxage=60,
     * stale-while-revalidate=600" CDN header). The route adds nothing then.
     */
    origin_stale =
        !hard && cc->s_maxage >= 0 && (cc->stale_while_revalidate >= 0 || cc->stale_if_error >= 0);
    if (flags & CACHE_POLICY_F_NO_CACHE) {
        m->swr = 0;
        m->sie = 0;
    } else if (origin_stale) {
        flags |= CACHE_POLICY_F_ORIGIN_STALE;
        m->swr = cache_policy_max(0, cc->stale_while_revalidate);
        m->sie = cache_policy_max(0, cc->stale_if_error);
    } else if (flags & CACHE_POLICY_F_MUST_REVALIDATE) {
        m->swr = 0;
        m->sie = 0;
    } else {
        m->swr = cache_policy_max(cc->stale_while_revalidate, route->stale_while_revalidate);
        m->sie = cache_policy_max(cc->stale_if_error, route->stale_if_error);
        m->swr = cache_policy_max(0, m->swr);
        m->sie = cache_policy_max(0, m->sie);
    }
    m->flags = flags;
}

static bool
cache_policy_vary_star(const struct http_head *h)
{
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *f = &h->headers[i];
        if (http_str_ieq(f->name, f->name_len, "vary") &&
            http_list_has_token(f->value, f->value_len, "*", 1))
            return true;
    }
    return false;
}

/* The storage rules of RFC 9111 3 and 3.5 and the route's, in the order documented. */
static enum cache_policy_reason
cache_policy_check(const struct http_request *req, int status, const struct http_head *h,
                   const struct cache_policy_cc *cc, const struct obj_meta *m,
                   const struct cache_policy_route *route)
{
    struct cache_policy_cc rcc;
    bool allowed, reusable;

    if (req->method_id != HTTP_M_GET && req->method_id != HTTP_M_HEAD)
        return CACHE_POLICY_R_METHOD;
    cache_policy_cc_parse(&req->head, &rcc);
    if (rcc.no_store)
        return CACHE_POLICY_R_NO_STORE;
    if (status < 200 || status == 304)
        return CACHE_POLICY_R_STATUS;
    if (cc->must_understand && !cache_policy_status_understood(status))
        return CACHE_POLICY_R_MUST_UNDERSTAND;
    if (status == 206)
        return CACHE_POLICY_R_PARTIAL;
    if (!cache_policy_route_has_status(route, status))
        return CACHE_POLICY_R_STATUS;
    /* must-understand with a status we implement overrides no-store (RFC 9111 5.2.2.3). */
    if (cc->no_store && !cc->must_understand)
        return CACHE_POLICY_R_NO_STORE;
    if (cc->private_)
        return CACHE_POLICY_R_PRIVATE;
    if (http_head_find(&req->head, "authorization") != NULL &&
        !(cc->public_ || cc->s_maxage >= 0 || cc->must_revalidate))
        return CACHE_POLICY_R_AUTHORIZATION;
    if (!route->allow_set_cookie && http_head_find(h, "set-cookie") != NULL)
        return CACHE_POLICY_R_SET_COOKIE;
    if (cache_policy_vary_star(h))
        return CACHE_POLICY_R_VARY_STAR;

    /* RFC 9111 3: something must allow reuse; the route's TTLs are our extension. */
    allowed = cc->public_ || cc->max_age >= 0 || cc->s_maxage >= 0 ||
              http_head_find(h, "expires") != NULL || cache_policy_status_heuristic(status) ||
              route->default_ttl >= 0 || route->force_ttl >= 0;
    reusable = (m->lifetime > 0 && !(m->flags & CACHE_POLICY_F_NO_CACHE)) ||
               (m->flags & (CACHE_POLICY_F_HAS_ETAG | CACHE_POLICY_F_HAS_LAST_MODIFIED)) ||
               m->swr > 0 || m->sie > 0;
    if (!allowed || !reusable)
        return CACHE_POLICY_R_NO_FRESHNESS;
    return CACHE_POLICY_R_STORED;
}

const char *
cache_policy_reason_name(enum cache_policy_reason r)
{
    switch (r) {
#define CACHE_POLICY_REASON_CASE(name, str)                                                        \
    case CACHE_POLICY_R_##name:                                                                    \
        return str;
        CACHE_POLICY_REASONS(CACHE_POLICY_REASON_CASE)
#undef CACHE_POLICY_REASON_CASE
    }
    return "?";
}

bool
cache_policy_storable(const struct http_request *req, const struct http_response *resp,
                      const struct cache_policy_route *route, int64_t now,
                      enum cache_policy_reason *reason)
{
    struct cache_policy_cc cc;
    struct obj_meta m;
    enum cache_policy_reason r;

    cache_policy_eval_meta(resp->status, &resp->head, &resp->head, route, now, now, &m, &cc);
    r = cache_policy_check(req, resp->status, &resp->head, &cc, &m, route);
    if (reason != NULL)
        *reason = r;
    return r == CACHE_POLICY_R_STORED;
}

void
cache_policy_meta(const struct http_response *resp, const struct cache_policy_route *route,
                  int64_t request_time, int64_t response_time, struct obj_meta *out)
{
    struct cache_policy_cc cc;

    cache_policy_eval_meta(resp->status, &resp->head, &resp->head, route, request_time,
                           response_time, out, &cc);
}

int64_t
cache_policy_current_age(const struct obj_meta *m, int64_t now)
{
    int64_t apparent_age = cache_policy_max(0, m->response_time - m->date_value);
    int64_t response_delay = cache_policy_max(0, m->response_time - m->request_time);
    int64_t corrected_age_value = m->age_value + response_delay;
    int64_t corrected_initial_age = cache_policy_max(apparent_age, corrected_age_value);
    int64_t resident_time = cache_policy_max(0, now - m->response_time);

    return corrected_initial_age + resident_time;
}

/* --- serving decision --------------------------------------------------- */

const char *
cache_policy_decision_name(enum cache_policy_decision d)
{
    switch (d) {
#define CACHE_POLICY_DECISION_CASE(name, str)                                                      \
    case CACHE_POLICY_##name:                                                                      \
        return str;
        CACHE_POLICY_DECISIONS(CACHE_POLICY_DECISION_CASE)
#undef CACHE_POLICY_DECISION_CASE
    }
    return "?";
}

enum cache_policy_decision
cache_policy_decide(const struct obj_meta *m, const struct cache_policy_cc *req_cc,
                    bool honour_client_no_cache, int64_t now, struct cache_policy_info *info)
{
    int64_t age = cache_policy_current_age(m, now);
    int64_t left = m->lifetime - age;
    int64_t staleness = age - m->lifetime;
    bool fresh = left > 0;
    bool may_stale =
        !(m->flags & CACHE_POLICY_F_NO_CACHE) &&
        (!(m->flags & CACHE_POLICY_F_MUST_REVALIDATE) || (m->flags & CACHE_POLICY_F_ORIGIN_STALE));
    const struct cache_policy_cc *force = honour_client_no_cache ? req_cc : NULL;

    if (info != NULL) {
        info->age = age;
        info->ttl_left = left;
        info->stale = !fresh;
        info->stale_if_error = may_stale && staleness < m->sie;
    }
    if (m->flags & CACHE_POLICY_F_NO_CACHE)
        return CACHE_POLICY_STALE;
    if (force != NULL) {
        if (force->no_cache)
            return CACHE_POLICY_STALE;
        if (force->max_age >= 0 && age > force->max_age &&
            !(fresh && (m->flags & CACHE_POLICY_F_IMMUTABLE)))
            return CACHE_POLICY_STALE;
        if (force->min_fresh >= 0 && left < force->min_fresh)
            return CACHE_POLICY_STALE;
    }
    if (fresh)
        return CACHE_POLICY_FRESH;
    if (may_stale && staleness < m->swr)
        return CACHE_POLICY_STALE_REVALIDATE_BG;
    if (!(m->flags & CACHE_POLICY_F_MUST_REVALIDATE) && req_cc != NULL && req_cc->max_stale >= 0 &&
        staleness <= req_cc->max_stale) {
        if (info != NULL)
            info->stale = true;
        return CACHE_POLICY_FRESH;
    }
    return CACHE_POLICY_STALE;
}

/* --- stored header blocks ----------------------------------------------- */

bool
cache_policy_block_next(const char *block, size_t len, size_t *pos, struct http_header *out)
{
    size_t i = *pos;

    while (i < len) {
        const char *line = block + i, *nl, *colon, *end, *name_end, *v;

        nl = memchr(line, '\n', len - i);
        end = nl != NULL ? nl : block + len;
        i = nl != NULL ? (size_t)(nl - block) + 1 : len;
        if (end > line && end[-1] == '\r')
            end--;
        if (end == line) {
            i = len;
            break;
        }
        colon = memchr(line, ':', (size_t)(end - line));
        if (colon == NULL || colon == line)
            continue;
        for (name_end = colon; name_end > line && cache_policy_is_ows(name_end[-1]); name_end--)
            ;
        for (v = colon + 1; v < end && cache_policy_is_ows(*v); v++)
            ;
        while (end > v && cache_policy_is_ows(end[-1]))
            end--;
        out->name = line;
        out->name_len = (size_t)(name_end - line);
        out->value = v;
        out->value_len = (size_t)(end - v);
        *pos = i;
        return true;
    }
    *pos = i;
    return false;
}

static bool
cache_policy_block_find_n(const char *block, size_t len, const char *name, size_t name_len,
                          struct http_header *out)
{
    size_t pos = 0;

    while (cache_policy_block_next(block, len, &pos, out))
        if (cache_policy_ieq(out->name, out->name_len, name, name_len))
            return true;
    return false;
}

bool
cache_policy_block_find(const char *block, size_t len, const char *name, const char **value,
                        size_t *value_len)
{
    struct http_header hd;

    if (!cache_policy_block_find_n(block, len, name, strlen(name), &hd))
        return false;
    *value = hd.value;
    *value_len = hd.value_len;
    return true;
}

int
cache_policy_block_to_head(const char *block, size_t len, struct http_head *h)
{
    struct http_header hd;
    size_t pos = 0;

    h->version_minor = 1;
    h->nheaders = 0;
    h->framing = HTTP_FRAMING_NONE;
    h->content_length = 0;
    h->conn_close = false;
    h->conn_keep_alive = false;
    while (cache_policy_block_next(block, len, &pos, &hd)) {
        if (h->nheaders == HTTP_HEADERS_CAP)
            return -1;
        h->headers[h->nheaders++] = hd;
    }
    return 0;
}

/* A bounded writer with snprintf's contract. */
struct cache_policy_out {
    char *buf;
    size_t cap;
    size_t len;
};

static void
cache_policy_put(struct cache_policy_out *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void
cache_policy_put_field(struct cache_policy_out *o, const struct http_header *hd)
{
    cache_policy_put(o, hd->name, hd->name_len);
    cache_policy_put(o, ": ", 2);
    cache_policy_put(o, hd->value, hd->value_len);
    cache_policy_put(o, "\r\n", 2);
}

static size_t
cache_policy_finish(struct cache_policy_out *o)
{
    if (o->cap > 0)
        o->buf[o->len < o->cap ? o->len : o->cap - 1] = '\0';
    return o->len;
}

/* Fields of a received response that never go into a stored block. */
static bool
cache_policy_unstored(const struct http_head *h, const struct http_header *hd,
                      const struct cache_policy_route *route)
{
    return http_write_is_hop_by_hop(h, hd) ||
           http_str_ieq(hd->name, hd->name_len, "content-length") ||
           http_str_ieq(hd->name, hd->name_len, "age") ||
           (!route->allow_set_cookie && http_str_ieq(hd->name, hd->name_len, "set-cookie"));
}

size_t
cache_policy_stored_head(const struct http_response *resp, const struct cache_policy_route *route,
                         int64_t response_time, char *buf, size_t cap)
{
    struct cache_policy_out o = {buf, cap, 0};
    const struct http_head *h = &resp->head;
    bool has_date = false;

    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (cache_policy_unstored(h, hd, route))
            continue;
        has_date = has_date || http_str_ieq(hd->name, hd->name_len, "date");
        cache_policy_put_field(&o, hd);
    }
    if (!has_date) {
        char date[CACHE_POLICY_DATE_LEN];
        struct http_header hd = {"Date", 4, date, 0};
        hd.value_len = cache_policy_date_format(response_time, date, sizeof(date));
        cache_policy_put_field(&o, &hd);
    }
    return cache_policy_finish(&o);
}

/* --- validators and conditional requests -------------------------------- */

void
cache_policy_validators(const char *block, size_t len, struct cache_policy_validators *out)
{
    memset(out, 0, sizeof(*out));
    if (!cache_policy_block_find(block, len, "etag", &out->etag, &out->etag_len))
        out->etag = NULL;
    if (!cache_policy_block_find(block, len, "last-modified", &out->last_modified,
                                 &out->last_modified_len))
        out->last_modified = NULL;
}

bool
cache_policy_not_modified(const struct http_request *req, int status,
                          const struct cache_policy_validators *v, int64_t date_fallback,
                          int64_t now)
{
    const struct http_head *h = &req->head;
    const struct http_header *ims = NULL;
    const char *stored = NULL;
    size_t stored_len = 0;
    bool inm = false, weak;
    unsigned nims = 0;
    int64_t since, lm = -1;

    if (req->method_id != HTTP_M_GET && req->method_id != HTTP_M_HEAD)
        return false;
    if (status < 200 || status > 299)
        return false;
    if (!cache_policy_etag_whole(v->etag, v->etag_len, &stored, &stored_len, &weak))
        stored_len = 0;
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *f = &h->headers[i];
        if (http_str_ieq(f->name, f->name_len, "if-none-match")) {
            inm = true;
            if (cache_policy_inm_match(f->value, f->value_len, stored, stored_len))
                return true;
        } else if (http_str_ieq(f->name, f->name_len, "if-modified-since")) {
            ims = f;
            nims++;
        }
    }
    if (inm || nims != 1)
        return false;
    since = cache_policy_date_parse(ims->value, ims->value_len, now);
    if (since < 0)
        return false;
    if (v->last_modified != NULL)
        lm = cache_policy_date_parse(v->last_modified, v->last_modified_len, now);
    if (lm < 0)
        lm = date_fallback;
    return lm >= 0 && lm <= since;
}

bool
cache_policy_revalidation(const struct cache_policy_validators *v, int64_t now,
                          struct cache_policy_conditional *out)
{
    const char *op;
    size_t ol;
    bool weak;

    memset(out, 0, sizeof(*out));
    if (cache_policy_etag_whole(v->etag, v->etag_len, &op, &ol, &weak)) {
        out->if_none_match = v->etag;
        out->if_none_match_len = v->etag_len;
    }
    if (v->last_modified != NULL &&
        cache_policy_date_parse(v->last_modified, v->last_modified_len, now) >= 0) {
        out->if_modified_since = v->last_modified;
        out->if_modified_since_len = v->last_modified_len;
    }
    return out->if_none_match != NULL || out->if_modified_since != NULL;
}

bool
cache_policy_304_updates(const struct cache_policy_validators *v,
                         const struct http_response *resp304, int64_t now)
{
    const struct http_header *f;
    const char *new_op, *old_op;
    size_t new_len, old_len;
    bool new_weak, old_weak;
    int64_t a, b;

    if ((f = http_head_find(&resp304->head, "etag")) != NULL) {
        if (!cache_policy_etag_whole(f->value, f->value_len, &new_op, &new_len, &new_weak) ||
            !cache_policy_etag_whole(v->etag, v->etag_len, &old_op, &old_len, &old_weak))
            return false;
        if (new_len != old_len || memcmp(new_op, old_op, new_len) != 0)
            return false;
        return new_weak || !old_weak;
    }
    if ((f = http_head_find(&resp304->head, "last-modified")) != NULL) {
        a = cache_policy_date_parse(f->value, f->value_len, now);
        b = v->last_modified != NULL
                ? cache_policy_date_parse(v->last_modified, v->last_modified_len, now)
                : -1;
        return a >= 0 && a == b;
    }
    return true;
}

/* True when one of upd[0..n) is named name. */
static bool
cache_policy_upd_has(const struct http_header *const *upd, size_t n, const char *name,
                     size_t name_len)
{
    for (size_t k = 0; k < n; k++)
        if (cache_policy_ieq(upd[k]->name, upd[k]->name_len, name, name_len))
            return true;
    return false;
}

size_t
cache_policy_merge_304(const char *stored, size_t stored_len, const struct http_response *resp304,
                       const struct cache_policy_route *route, int64_t response_time, char *buf,
                       size_t cap)
{
    struct cache_policy_out o = {buf, cap, 0};
    const struct http_head *h = &resp304->head;
    const struct http_header *upd[HTTP_HEADERS_CAP + 1];
    char date[CACHE_POLICY_DATE_LEN];
    struct http_header date_hd = {"Date", 4, date, 0}, line, seen;
    size_t n = 0, pos = 0, start;
    bool has_date = false;

    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct http_header *hd = &h->headers[i];
        if (cache_policy_unstored(h, hd, route))
            continue;
        has_date = has_date || http_str_ieq(hd->name, hd->name_len, "date");
        upd[n++] = hd;
    }
    if (!has_date) {
        date_hd.value_len = cache_policy_date_format(response_time, date, sizeof(date));
        upd[n++] = &date_hd;
    }

    /* Replaced names: the 304's lines go where the first stored one was. */
    for (start = pos; cache_policy_block_next(stored, stored_len, &pos, &line); start = pos) {
        if (!cache_policy_upd_has(upd, n, line.name, line.name_len)) {
            cache_policy_put_field(&o, &line);
            continue;
        }
        if (cache_policy_block_find_n(stored, start, line.name, line.name_len, &seen))
            continue;
        for (size_t k = 0; k < n; k++)
            if (cache_policy_ieq(upd[k]->name, upd[k]->name_len, line.name, line.name_len))
                cache_policy_put_field(&o, upd[k]);
    }
    for (size_t k = 0; k < n; k++)
        if (!cache_policy_block_find_n(stored, stored_len, upd[k]->name, upd[k]->name_len, &seen))
            cache_policy_put_field(&o, upd[k]);
    return cache_policy_finish(&o);
}

bool
cache_policy_refresh(const struct http_request *req, int status, const char *merged,
                     size_t merged_len, const struct http_response *resp304,
                     const struct cache_policy_route *route, int64_t request_time,
                     int64_t response_time, struct obj_meta *out, enum cache_policy_reason *reason)
{
    struct http_response r;
    struct cache_policy_cc cc;
    enum cache_policy_reason why;

    r.status = status;
    r.reason = NULL;
    r.reason_len = 0;
    if (cache_policy_block_to_head(merged, merged_len, &r.head) < 0) {
        /* Still fill *out: the caller may log it before dropping the object. */
        r.head.nheaders = HTTP_HEADERS_CAP;
        cache_policy_eval_meta(status, &r.head, &resp304->head, route, request_time, response_time,
                               out, &cc);
        why = CACHE_POLICY_R_TOO_MANY_FIELDS;
    } else {
        cache_policy_eval_meta(status, &r.head, &resp304->head, route, request_time, response_time,
                               out, &cc);
        why = cache_policy_check(req, status, &r.head, &cc, out, route);
    }
    if (reason != NULL)
        *reason = why;
    return why == CACHE_POLICY_R_STORED;
}
