/*
 * util: unit parsers, the monotonic clock, address helpers and aborting
 * allocators. See util.h for the conventions; everything here is stateless
 * and thread-safe. Only util_parse_addr() may block (getaddrinfo), which is
 * why it belongs to start-up and reload code.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* A DNS name is at most 253 bytes; the rest is slack for a literal. */
#define UTIL_HOST_MAX 256

void
util_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", file, line, func, expr);
    abort();
}

/*
 * Reads the leading decimal digits of s into *out and points *end past
 * them. Fails when there are none or the value overflows.
 */
static int
util_parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return 0;
}

int
util_parse_uint(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *end;

    if (s == NULL || util_parse_digits(s, &v, &end) < 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/*
 * The one duration grammar, in milliseconds as a uint64_t: 1y (365 days) is
 * 3.2e10 ms, past 32 bits, and far from 64. Fails on overflow.
 */
static int
util_parse_duration(const char *s, uint64_t *out_ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {
        {"", 1000}, /* a bare number is seconds */
        {"ms", 1},
        {"s", 1000},
        {"m", 60 * 1000},
        {"h", 60 * 60 * 1000},
        {"d", 24 * 60 * 60 * 1000},
        {"y", UINT64_C(365) * 24 * 60 * 60 * 1000},
    };
    uint64_t v;
    const char *end;

    if (s == NULL || util_parse_digits(s, &v, &end) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (v > UINT64_MAX / units[i].ms)
            return -1;
        *out_ms = v * units[i].ms;
        return 0;
    }
    return -1;
}

int
util_parse_duration_ms(const char *s, unsigned *out_ms)
{
    uint64_t ms;

    if (util_parse_duration(s, &ms) < 0 || ms > UINT_MAX)
        return -1;
    *out_ms = (unsigned)ms;
    return 0;
}

int
util_parse_duration_s(const char *s, int64_t *out_s)
{
    uint64_t ms;

    if (util_parse_duration(s, &ms) < 0)
        return -1;
    /* UINT64_MAX / 1000 is below INT64_MAX: no second check needed. */
    *out_s = (int64_t)(ms / 1000);
    return 0;
}

int
util_parse_size(const char *s, size_t *out)
{
    uint64_t v, mult;
    const char *end;

    if (s == NULL || util_parse_digits(s, &v, &end) < 0)
        return -1;
    switch (end[0]) {
    case '\0':
        mult = 1;
        break;
    case 'k':
    case 'K':
        mult = UINT64_C(1) << 10;
        break;
    case 'm':
    case 'M':
        mult = UINT64_C(1) << 20;
        break;
    case 'g':
    case 'G':
        mult = UINT64_C(1) << 30;
        break;
    case 't':
    case 'T':
        mult = UINT64_C(1) << 40;
        break;
    default:
        return -1;
    }
    if (end[0] != '\0' && end[1] != '\0')
        return -1;
    if (v > SIZE_MAX / mult)
        return -1;
    *out = (size_t)(v * mult);
    return 0;
}

int
util_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len, char *errbuf,
                size_t errlen)
{
    char host[UTIL_HOST_MAX];
    const char *h, *port;
    size_t hlen;
    uint64_t portnum;
    struct addrinfo hints, *res = NULL;
    int rc;

    if (text == NULL)
        text = "";
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            goto syntax;
        h = text + 1;
        hlen = (size_t)(close - h);
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL)
            goto syntax;
        h = text;
        hlen = (size_t)(colon - text);
        port = colon + 1;
        if (memchr(h, ':', hlen) != NULL) {
            snprintf(errbuf, errlen,
                     "invalid address \"%s\" (write an IPv6 address as [ADDR]:PORT)", text);
            return -1;
        }
    }
    if (hlen == 0)
        goto syntax;
    if (hlen >= sizeof(host)) {
        snprintf(errbuf, errlen, "invalid address \"%s\" (host name too long)", text);
        return -1;
    }
    if (util_parse_uint(port, &portnum) < 0 || portnum < 1 || portnum > 65535) {
        snprintf(errbuf, errlen, "invalid address \"%s\" (port must be a number from 1 to 65535)",
                 text);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* No AI_ADDRCONFIG: it rejects "::1" on hosts with only loopback IPv6. */
    hints.ai_flags = AI_NUMERICSERV;
    if (text[0] == '[')
        hints.ai_flags |= AI_NUMERICHOST;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        if (text[0] == '[' && rc == EAI_NONAME)
            snprintf(errbuf, errlen, "invalid address \"%s\" (not an IPv6 address in brackets)",
                     text);
        else
            snprintf(errbuf, errlen, "cannot resolve \"%s\": %s", text,
                     rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    if (text[0] == '[' && res->ai_family != AF_INET6) {
        freeaddrinfo(res);
        snprintf(errbuf, errlen, "invalid address \"%s\" (not an IPv6 address in brackets)", text);
        return -1;
    }
    if (res->ai_addrlen > sizeof(*ss)) {
        freeaddrinfo(res);
        snprintf(errbuf, errlen, "cannot resolve \"%s\": address too long", text);
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;

syntax:
    snprintf(errbuf, errlen, "invalid address \"%s\" (expected HOST:PORT)", text);
    return -1;
}

const char *
util_addr_to_string(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
    char ip[INET6_ADDRSTRLEN];
    int n = -1;

    if (buflen == 0)
        return buf;
    if (sa != NULL && sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)) != NULL)
            n = snprintf(buf, buflen, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
    } else if (sa != NULL && sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip)) != NULL)
            n = snprintf(buf, buflen, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
    }
    if (n < 0 || (size_t)n >= buflen)
        snprintf(buf, buflen, "?");
    return buf;
}

int64_t
util_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t
util_now_us(void)
{
    struct timespec ts;

    /* Cannot fail for CLOCK_MONOTONIC with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
util_now_ms(void)
{
    return util_now_us() / 1000;
}

static _Noreturn void
util_oom(size_t n)
{
    fprintf(stderr, "tailcache: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
util_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        util_oom(n);
    return p;
}

void *
util_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

    if (p == NULL)
        util_oom(nmemb * size);
    return p;
}

void *
util_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL)
        util_oom(n);
    return q;
}

void *
util_xreallocarray(void *p, size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > SIZE_MAX / size)
        util_oom(SIZE_MAX);
    return util_xrealloc(p, nmemb * size);
}

char *
util_xstrdup(const char *s)
{
    return util_xstrndup(s, strlen(s));
}

char *
util_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = util_xmalloc(len + 1);

    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}
