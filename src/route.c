/*
 * route: maps a request (host, path, method) to the first matching route of
 * a config, in config order.
 *
 * The config is immutable and owns the routes and their compiled regexes;
 * this module only reads it, so any number of workers may match against
 * the same config at once. The one piece of state is per thread: PCRE2
 * match data and a match context that caps backtracking, created on a
 * thread's first regex match and freed by route_thread_cleanup(). If they
 * cannot be allocated, regex routes do not match (the request fails soft,
 * typically with a 404) rather than aborting a worker.
 *
 * Host patterns are stored normalised by the loader (lower case, no
 * brackets, no trailing dot); the request host is normalised here the same
 * way, without copying: ":port" and IPv6 brackets are stripped, one trailing
 * dot is ignored, and letters compare case-insensitively (ASCII only, so the
 * result never depends on the locale).
 */
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "route.h"

/*
 * Backtracking budget of one regex match. A route regex applied to a path
 * of a few KiB needs far less; a pathological one hits the cap and simply
 * does not match, instead of burning a worker's CPU on a crafted path.
 */
#define ROUTE_MATCH_LIMIT 100000

static __thread pcre2_match_data *route_md;
static __thread pcre2_match_context *route_mctx;

static bool
route_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

/* Points *out at the bare host name of a Host value (no port, no brackets,
 * no trailing dot). */
static void
route_host_norm(const char *host, size_t len, const char **out, size_t *outlen)
{
    if (host == NULL)
        len = 0;
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close != NULL) {
            *out = host + 1;
            *outlen = (size_t)(close - host) - 1;
            return;
        }
    } else if (len > 0) {
        const char *colon = memchr(host, ':', len);
        /* A second colon means a bare IPv6 address, not a port. */
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - host)) == NULL)
            len = (size_t)(colon - host);
    }
    if (len > 1 && host[len - 1] == '.')
        len--;
    *out = host;
    *outlen = len;
}

/* pattern is normalised; host is already through route_host_norm(). */
static bool
route_pattern_matches(const char *pattern, const char *host, size_t host_len)
{
    size_t plen;

    if (pattern[0] == '*' && pattern[1] == '\0')
        return true;
    if (host_len == 0)
        return false;
    if (pattern[0] == '*' && pattern[1] == '.') {
        /* ".example.com": at least one byte of label must precede it. */
        const char *suffix = pattern + 1;
        plen = strlen(suffix);
        return host_len > plen && route_ieq(host + host_len - plen, suffix, plen);
    }
    plen = strlen(pattern);
    return plen == host_len && route_ieq(pattern, host, plen);
}

bool
route_host_matches(const char *pattern, const char *host, size_t host_len)
{
    const char *h;
    size_t hl;

    route_host_norm(host, host_len, &h, &hl);
    return route_pattern_matches(pattern, h, hl);
}

static bool
route_regex_matches(const struct config_route *r, const char *path, size_t path_len)
{
    int rc;

    if (route_md == NULL) {
        route_md = pcre2_match_data_create(1, NULL);
        if (route_md == NULL)
            return false;
    }
    if (route_mctx == NULL) {
        route_mctx = pcre2_match_context_create(NULL);
        if (route_mctx == NULL)
            return false;
        pcre2_set_match_limit(route_mctx, ROUTE_MATCH_LIMIT);
    }
    /* rc == 0 means "matched, ovector too small for the groups": a match. */
    rc = pcre2_match(r->path_re, (PCRE2_SPTR)(path != NULL ? path : ""), path_len, 0, 0, route_md,
                     route_mctx);
    return rc >= 0;
}

static bool
route_path_matches(const struct config_route *r, const char *path, size_t path_len)
{
    size_t plen;

    if (path == NULL)
        path_len = 0;
    switch (r->path_kind) {
    case CONFIG_PATH_PREFIX:
        plen = strlen(r->path);
        return path_len >= plen && memcmp(path, r->path, plen) == 0;
    case CONFIG_PATH_EXACT:
        plen = strlen(r->path);
        return path_len == plen && memcmp(path, r->path, plen) == 0;
    case CONFIG_PATH_REGEX:
        return r->path_re != NULL && route_regex_matches(r, path, path_len);
    }
    return false;
}

const struct config_route *
route_match(const struct config *cfg, const char *host, size_t host_len, const char *path,
            size_t path_len, enum http_method method)
{
    const char *h;
    size_t hl;

    route_host_norm(host, host_len, &h, &hl);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        bool host_ok = r->nhosts == 0;

        if (r->methods != 0 && ((unsigned)method >= 32 || !(r->methods & (1u << method))))
            continue;
        for (size_t j = 0; j < r->nhosts && !host_ok; j++)
            host_ok = route_pattern_matches(r->hosts[j], h, hl);
        if (host_ok && route_path_matches(r, path, path_len))
            return r;
    }
    return NULL;
}

void
route_thread_cleanup(void)
{
    pcre2_match_data_free(route_md);
    route_md = NULL;
    pcre2_match_context_free(route_mctx);
    route_mctx = NULL;
}
