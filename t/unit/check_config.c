/*
 * check_config: unit tests of the configuration loader. Good files in
 * t/data are loaded and every value (defaults included) is checked; each
 * class of error has a bad file whose complete error text is compared line
 * by line, file name, line number and key path included. Also: the shipped
 * conf/tailcache.yaml, quick mode, refcounting and the key reference.
 * The cache keys (issue 3) have their own good and bad files:
 * good-cache.yaml, bad-cache.yaml, bad-cache-names.yaml. So do the shared
 * tiers and invalidation: good-tiers.yaml, bad-redis.yaml, bad-backoff.yaml,
 * bad-memcached.yaml, bad-memcached-servers.yaml, bad-invalidation.yaml,
 * bad-tiers.yaml, bad-rules.yaml. So do the analytics keys:
 * good-analytics.yaml, bad-analytics.yaml, bad-budget.yaml.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "config.h"
#include "rule.h"

#ifndef TC_TEST_DATA
#define TC_TEST_DATA "t/data"
#endif
#define DATA(name) TC_TEST_DATA "/" name

#define M(m) (1u << (m))

static unsigned
addr_port(const struct config_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

static void
check_addr(const struct config_addr *a, const char *text, int family, unsigned port)
{
    ck_assert_str_eq(a->text, text);
    ck_assert_int_eq(a->ss.ss_family, family);
    ck_assert_uint_eq(a->len,
                      family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    ck_assert_uint_eq(addr_port(a), port);
}

static unsigned
auto_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

static struct config *
load_good(const char *path)
{
    char *err = (char *)"unset";
    struct config *cfg = config_load(path, &err);

    ck_assert_msg(cfg != NULL, "%s: %s", path, err != NULL ? err : "(no message)");
    ck_assert_ptr_null(err);
    return cfg;
}

/*
 * Loads a bad file and compares the error text with want: each entry is
 * what follows the file name on one line (":LINE: key: what is wrong"),
 * all of them, in order, and nothing else.
 */
static void
expect_errors_text(const char *path, const char *err, const char *const *want)
{
    const char *p = err;
    size_t i, plen = strlen(path);

    ck_assert_ptr_nonnull(err);
    for (i = 0; want[i] != NULL; i++) {
        const char *nl = strchr(p, '\n');
        char line[1024];
        ck_assert_msg(nl != NULL, "missing error %zu: %s%s\nall errors:\n%s", i, path, want[i],
                      err);
        snprintf(line, sizeof(line), "%.*s", (int)(nl - p), p);
        ck_assert_msg(strncmp(line, path, plen) == 0, "error %zu names no file: %s", i, line);
        ck_assert_str_eq(line + plen, want[i]);
        p = nl + 1;
    }
    ck_assert_msg(*p == '\0', "unexpected errors after the %zu expected:\n%s", i, p);
}

static void
expect_errors(const char *path, const char *const *want)
{
    char *err = NULL;
    struct config *cfg = config_load(path, &err);

    ck_assert_ptr_null(cfg);
    expect_errors_text(path, err, want);
    free(err);
}

/* The message getaddrinfo gives here for a name under .invalid (no such
 * name, or no DNS at all: it depends on the machine). */
static const char *
invalid_name_reason(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int rc = getaddrinfo("nohost.invalid", "80", &hints, &res);

    ck_assert_int_ne(rc, 0);
    return gai_strerror(rc);
}

static bool
has_status(const struct config_route_cache *c, unsigned s)
{
    return s < 1024 && (c->statuses[s / 64] >> (s % 64) & 1) != 0;
}

/* The statuses set in c, in order, as "200 203 ...". */
static const char *
statuses_text(const struct config_route_cache *c, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (unsigned s = 0; s < 1024; s++) {
        if (has_status(c, s))
            off += (size_t)snprintf(buf + off, len - off, "%s%u", off ? " " : "", s);
    }
    return buf;
}

static void
check_strings(char *const *v, size_t n, const char *const *want)
{
    size_t i;

    for (i = 0; want[i] != NULL; i++) {
        ck_assert_uint_lt(i, n);
        ck_assert_str_eq(v[i], want[i]);
    }
    ck_assert_uint_eq(n, i);
}

/* A CIDR block: family, prefix length, and the address as text. */
static void
check_cidr(const struct config_cidr *c, const char *text, int family, const char *addr,
           unsigned prefix_len)
{
    char buf[INET6_ADDRSTRLEN];

    ck_assert_str_eq(c->text, text);
    ck_assert_int_eq(c->family, family);
    ck_assert_ptr_nonnull(inet_ntop(family, c->addr, buf, sizeof(buf)));
    ck_assert_str_eq(buf, addr);
    ck_assert_uint_eq(c->prefix_len, prefix_len);
}

/* "<hostname>:<pid>", what node_id "auto" gives. */
static const char *
auto_node_id(char *buf, size_t len)
{
    char host[256];

    ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    snprintf(buf, len, "%s:%ld", host, (long)getpid());
    return buf;
}

/* The shared tiers' keys at their defaults, whether the tier is on or not. */
static void
check_redis_default_keys(const struct config_redis *r)
{
    ck_assert_ptr_null(r->password);
    ck_assert_uint_eq(r->db, 0);
    ck_assert_str_eq(r->prefix, "tc:");
    ck_assert_uint_eq(r->connect_timeout_ms, 200);
    ck_assert_uint_eq(r->timeout_ms, 50);
    ck_assert_uint_eq(r->backoff_min_ms, 100);
    ck_assert_uint_eq(r->backoff_max_ms, 5000);
    ck_assert_uint_eq(r->max_object_size, 8u << 20);
    ck_assert_uint_eq(r->breaker_failures, 3);
    ck_assert_uint_eq(r->breaker_cooldown_ms, 1000);
}

static void
check_memcached_default_keys(const struct config_memcached *m)
{
    ck_assert_str_eq(m->prefix, "tc:");
    ck_assert_uint_eq(m->connect_timeout_ms, 200);
    ck_assert_uint_eq(m->timeout_ms, 50);
    ck_assert_uint_eq(m->threads, 4);
    ck_assert_uint_eq(m->queue, 1024);
    ck_assert_uint_eq(m->retry_ms, 1000);
    ck_assert_uint_eq(m->max_object_size, 1000u << 10);
    ck_assert_uint_eq(m->breaker_failures, 3);
    ck_assert_uint_eq(m->breaker_cooldown_ms, 1000);
}

static void
check_invalidation_default(const struct config_invalidation *inv)
{
    char id[300];

    ck_assert_str_eq(inv->channel, "tailcache:invalidate");
    ck_assert(inv->broadcast);
    ck_assert_str_eq(inv->node_id, auto_node_id(id, sizeof(id)));
    ck_assert_uint_eq(inv->npurge_allow, 2);
    check_cidr(&inv->purge_allow[0], "127.0.0.1/32", AF_INET, "127.0.0.1", 32);
    check_cidr(&inv->purge_allow[1], "::1/128", AF_INET6, "::1", 128);
    ck_assert_ptr_null(inv->purge_token);
    ck_assert_uint_eq(inv->max_bans, 1000);
}

/* The cache defaults of the schema, global and per route: memory only. */
static void
check_cache_globals_default(const struct config *cfg)
{
    ck_assert_uint_eq(cfg->cache_memory_size, 256u << 20);
    ck_assert_uint_eq(cfg->cache_shards, 16);
    ck_assert_int_eq(cfg->cache_eviction, CONFIG_EVICT_S3FIFO);
    ck_assert_uint_eq(cfg->cache_max_object, 16u << 20);
    ck_assert_uint_eq(cfg->coalesce_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->hit_for_miss_ms, 10000);
    ck_assert(!cfg->redis.enabled);
    ck_assert_uint_eq(cfg->redis.addr.len, 0);
    ck_assert_ptr_null(cfg->redis.addr.text);
    check_redis_default_keys(&cfg->redis);
    ck_assert(!cfg->memcached.enabled);
    ck_assert_uint_eq(cfg->memcached.nservers, 0);
    ck_assert_ptr_null(cfg->memcached.servers);
    check_memcached_default_keys(&cfg->memcached);
    check_invalidation_default(&cfg->invalidation);
}

static void
check_route_cache_default(const struct config_route_cache *c, bool enabled)
{
    static const char *const none[] = {NULL};
    static const char *const strip[] = {
        "X-Forwarded-Host",       "X-Forwarded-Server",
        "X-Forwarded-Port",       "X-Forwarded-Scheme",
        "X-Original-URL",         "X-Rewrite-URL",
        "X-HTTP-Method-Override", "X-HTTP-Method",
        "X-Method-Override",      NULL,
    };
    char buf[256];

    ck_assert(c->enabled == enabled);
    ck_assert_int_eq(c->ttl, -1);
    ck_assert_int_eq(c->force_ttl, -1);
    ck_assert_int_eq(c->stale_while_revalidate, 0);
    ck_assert_int_eq(c->stale_if_error, 0);
    ck_assert_int_eq(c->heuristic_max, 86400);
    ck_assert_str_eq(statuses_text(c, buf, sizeof(buf)),
                     "200 203 204 300 301 308 404 405 410 414 501");
    ck_assert(!c->set_cookie);
    ck_assert(c->honour_client_no_cache);
    ck_assert(!c->server_timing);
    ck_assert(!c->key.sort_query);
    ck_assert(!c->key.ignore_query);
    check_strings(c->key.drop_query, c->key.ndrop_query, none);
    check_strings(c->key.headers, c->key.nheaders, none);
    check_strings(c->key.cookies, c->key.ncookies, none);
    check_strings(c->strip_headers, c->nstrip_headers, strip);
    /* No shared tier configured: memory only. */
    ck_assert_uint_eq(c->ntiers, 1);
    ck_assert_int_eq(c->tiers[0], CONFIG_TIER_MEMORY);
    ck_assert_uint_eq(c->nrules, 0);
    ck_assert_ptr_null(c->rules);
}

/* A budget: the five latencies in microseconds (-1: not given), the
 * hit ratio (-1: not given) and whether any is given. */
static void
check_budget(const struct config_budget *b, int64_t p50, int64_t p90, int64_t p95, int64_t p99,
             int64_t p999, double hit_ratio, bool set)
{
    ck_assert_int_eq(b->p50_us, p50);
    ck_assert_int_eq(b->p90_us, p90);
    ck_assert_int_eq(b->p95_us, p95);
    ck_assert_int_eq(b->p99_us, p99);
    ck_assert_int_eq(b->p999_us, p999);
    ck_assert_double_eq(b->hit_ratio, hit_ratio);
    ck_assert(b->set == set);
}

/* A route's analytics keys at their defaults: 60s warm-up, no bypass
 * sampling, no budget. */
static void
check_route_analytics_default(const struct config_route *r)
{
    ck_assert_uint_eq(r->analytics_warmup_ms, 60000);
    ck_assert_double_eq(r->sample_bypass, 0.0);
    check_budget(&r->budget, -1, -1, -1, -1, -1, -1.0, false);
}

/* ------------------------------------------------------------------------ */

START_TEST(test_defaults)
{
    struct config *cfg = load_good(DATA("good-minimal.yaml"));
    const struct config_upstream *up;
    const struct config_route *r;

    ck_assert_int_eq(atomic_load(&cfg->refs), 1);
    ck_assert_str_eq(cfg->file, DATA("good-minimal.yaml"));
    ck_assert_uint_eq(cfg->workers, auto_workers());
    ck_assert_uint_eq(cfg->nlisten, 1);
    check_addr(&cfg->listen[0], "127.0.0.1:8080", AF_INET, 8080);
    check_addr(&cfg->admin, "127.0.0.1:9090", AF_INET, 9090);
    ck_assert(!cfg->admin_defaulted); /* quick mode's only */
    ck_assert(cfg->analytics_enabled);
    ck_assert_uint_eq(cfg->limits.max_request_line, 8192);
    ck_assert_uint_eq(cfg->limits.max_header_bytes, 32768);
    ck_assert_uint_eq(cfg->limits.max_headers, 100);
    ck_assert_uint_eq(cfg->max_body_chunk_line, 4096);
    ck_assert_uint_eq(cfg->client_header_timeout_ms, 10000);
    ck_assert_uint_eq(cfg->client_keepalive_timeout_ms, 60000);
    ck_assert_uint_eq(cfg->client_idle_timeout_ms, 60000);
    ck_assert_uint_eq(cfg->drain_timeout_ms, 30000);
    ck_assert_int_eq(cfg->log_level, CONFIG_LOG_INFO);
    ck_assert_str_eq(cfg->error_log, "stderr");
    ck_assert_str_eq(cfg->access_log, "stderr");

    ck_assert_uint_eq(cfg->nupstreams, 1);
    up = &cfg->upstreams[0];
    ck_assert_str_eq(up->name, "app");
    ck_assert_int_eq(up->line, 3);
    ck_assert_uint_eq(up->nservers, 1);
    check_addr(&up->servers[0], "127.0.0.1:8081", AF_INET, 8081);
    ck_assert_uint_eq(up->keepalive, 32);
    ck_assert_uint_eq(up->keepalive_timeout_ms, 60000);
    ck_assert_uint_eq(up->connect_timeout_ms, 2000);
    ck_assert_uint_eq(up->first_byte_timeout_ms, 30000);
    ck_assert_uint_eq(up->idle_timeout_ms, 60000);
    ck_assert_uint_eq(up->max_fails, 3);
    ck_assert_uint_eq(up->fail_timeout_ms, 10000);

    ck_assert_uint_eq(cfg->nroutes, 1);
    r = &cfg->routes[0];
    ck_assert_str_eq(r->name, "all");
    ck_assert_int_eq(r->line, 6);
    ck_assert_uint_eq(r->nhosts, 1);
    ck_assert_str_eq(r->hosts[0], "*");
    ck_assert_int_eq(r->path_kind, CONFIG_PATH_PREFIX);
    ck_assert_str_eq(r->path, "/");
    ck_assert_ptr_null(r->path_re);
    ck_assert_uint_eq(r->methods, 0);
    ck_assert_ptr_eq(r->upstream, up);
    ck_assert_ptr_null(r->host_rewrite);
    /* No cache sections: caching is off, every other cache key at its default. */
    check_cache_globals_default(cfg);
    check_route_cache_default(&r->cache, false);
    check_route_analytics_default(r);
    config_unref(&cfg);
    ck_assert_ptr_null(cfg);
}
END_TEST

START_TEST(test_full)
{
    struct config *cfg = load_good(DATA("good-full.yaml"));
    const struct config_upstream *api, *st;
    const struct config_route *r;

    ck_assert_uint_eq(cfg->workers, 3);
    ck_assert_uint_eq(cfg->nlisten, 2);
    check_addr(&cfg->listen[0], "127.0.0.1:18080", AF_INET, 18080);
    check_addr(&cfg->listen[1], "[::1]:18080", AF_INET6, 18080);
    check_addr(&cfg->admin, "127.0.0.1:19090", AF_INET, 19090);
    ck_assert_uint_eq(cfg->limits.max_request_line, 4096);
    ck_assert_uint_eq(cfg->limits.max_header_bytes, 65536);
    ck_assert_uint_eq(cfg->limits.max_headers, 50);
    ck_assert_uint_eq(cfg->max_body_chunk_line, 512);
    ck_assert_uint_eq(cfg->client_header_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->client_keepalive_timeout_ms, 120000);
    ck_assert_uint_eq(cfg->client_idle_timeout_ms, 1500);
    ck_assert_uint_eq(cfg->drain_timeout_ms, 3600000);
    ck_assert_int_eq(cfg->log_level, CONFIG_LOG_DEBUG);
    ck_assert_str_eq(cfg->error_log, "/var/log/tailcache/error.log");
    ck_assert_str_eq(cfg->access_log, "off");

    ck_assert_uint_eq(cfg->nupstreams, 2);
    api = &cfg->upstreams[0];
    st = &cfg->upstreams[1];
    ck_assert_str_eq(api->name, "api");
    ck_assert_int_eq(api->line, 23);
    ck_assert_uint_eq(api->nservers, 3);
    check_addr(&api->servers[0], "127.0.0.1:9001", AF_INET, 9001);
    check_addr(&api->servers[1], "[::1]:9002", AF_INET6, 9002);
    ck_assert_str_eq(api->servers[2].text, "localhost:9003");
    ck_assert_uint_eq(addr_port(&api->servers[2]), 9003);
    ck_assert_uint_eq(api->keepalive, 0);
    ck_assert_uint_eq(api->keepalive_timeout_ms, 90000);
    ck_assert_uint_eq(api->connect_timeout_ms, 250);
    ck_assert_uint_eq(api->first_byte_timeout_ms, 45000);
    ck_assert_uint_eq(api->idle_timeout_ms, 120000);
    ck_assert_uint_eq(api->max_fails, 1000);
    ck_assert_uint_eq(api->fail_timeout_ms, 60000);
    ck_assert_str_eq(st->name, "static");
    ck_assert_uint_eq(st->nservers, 1);
    check_addr(&st->servers[0], "127.0.0.1:9100", AF_INET, 9100);
    ck_assert_uint_eq(st->keepalive, 32);
    ck_assert_uint_eq(st->connect_timeout_ms, 2000);

    ck_assert_uint_eq(cfg->nroutes, 3);
    r = &cfg->routes[0];
    ck_assert_str_eq(r->name, "products");
    ck_assert_int_eq(r->line, 35);
    ck_assert_uint_eq(r->nhosts, 2);
    ck_assert_str_eq(r->hosts[0], "shop.example.com"); /* stored lower case */
    ck_assert_str_eq(r->hosts[1], "*.shop.example.com");
    ck_assert_int_eq(r->path_kind, CONFIG_PATH_REGEX);
    ck_assert_str_eq(r->path, "^/products/[0-9]+$");
    ck_assert_ptr_nonnull(r->path_re);
    ck_assert_uint_eq(r->methods, M(HTTP_M_GET) | M(HTTP_M_HEAD) | M(HTTP_M_PURGE));
    ck_assert_ptr_eq(r->upstream, api);
    ck_assert_str_eq(r->host_rewrite, "backend.internal:8080");

    r = &cfg->routes[1];
    ck_assert_str_eq(r->name, "health");
    ck_assert_uint_eq(r->nhosts, 1);
    ck_assert_str_eq(r->hosts[0], "::1"); /* brackets dropped */
    ck_assert_int_eq(r->path_kind, CONFIG_PATH_EXACT);
    ck_assert_str_eq(r->path, "/health");
    ck_assert_ptr_null(r->path_re);
    ck_assert_uint_eq(r->methods, M(HTTP_M_GET));
    ck_assert_ptr_eq(r->upstream, st);
    ck_assert_ptr_null(r->host_rewrite);

    r = &cfg->routes[2];
    ck_assert_str_eq(r->name, "assets");
    ck_assert_str_eq(r->hosts[0], "*");
    ck_assert_int_eq(r->path_kind, CONFIG_PATH_PREFIX);
    ck_assert_str_eq(r->path, "/static/");
    ck_assert_uint_eq(r->methods, 0);
    ck_assert_ptr_eq(r->upstream, st);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_cache_full)
{
    static const char *const drop[] = {"utm_source", "utm_medium", "a.b[]", NULL};
    static const char *const headers[] = {"X-Tenant", "Accept-Language", NULL};
    static const char *const cookies[] = {"lang", "__Host-id", NULL};
    static const char *const strip[] = {"X-Forwarded-Host", "X-Original-URL", NULL};
    static const char *const one[] = {"x-one", NULL};
    static const char *const none[] = {NULL};
    struct config *cfg = load_good(DATA("good-cache.yaml"));
    const struct config_route_cache *c;
    char buf[256];

    ck_assert_uint_eq(cfg->cache_memory_size, (size_t)1 << 40);
    ck_assert_uint_eq(cfg->cache_shards, 1024);
    ck_assert_int_eq(cfg->cache_eviction, CONFIG_EVICT_LRU);
    ck_assert_uint_eq(cfg->cache_max_object, (size_t)4 << 30);
    ck_assert_uint_eq(cfg->coalesce_timeout_ms, 1500);
    ck_assert_uint_eq(cfg->hit_for_miss_ms, 3600000);
    ck_assert_uint_eq(cfg->nroutes, 3);

    c = &cfg->routes[0].cache;
    ck_assert(c->enabled);
    ck_assert_int_eq(c->ttl, 60);
    ck_assert_int_eq(c->force_ttl, 3600);
    ck_assert_int_eq(c->stale_while_revalidate, 30);
    ck_assert_int_eq(c->stale_if_error, 86400);
    ck_assert_int_eq(c->heuristic_max, 31536000); /* 1y: past 32 bits of ms */
    /* Listed in any order, twice is harmless: a bit set. */
    ck_assert_str_eq(statuses_text(c, buf, sizeof(buf)), "100 200 404 999");
    /* The layout cache code relies on: bit s % 64 of word s / 64. */
    ck_assert(c->statuses[1] == UINT64_C(1) << (100 - 64));
    ck_assert(c->statuses[3] == UINT64_C(1) << (200 - 192));
    ck_assert(c->statuses[15] == UINT64_C(1) << (999 - 960));
    ck_assert(c->set_cookie);
    ck_assert(!c->honour_client_no_cache);
    ck_assert(c->server_timing);
    ck_assert(c->key.sort_query);
    ck_assert(c->key.ignore_query);
    check_strings(c->key.drop_query, c->key.ndrop_query, drop);
    check_strings(c->key.headers, c->key.nheaders, headers);
    check_strings(c->key.cookies, c->key.ncookies, cookies);
    check_strings(c->strip_headers, c->nstrip_headers, strip);

    /* Flow style; milliseconds rounded down to seconds; empty lists. */
    c = &cfg->routes[1].cache;
    ck_assert(!c->enabled);
    ck_assert_int_eq(c->ttl, 1);
    ck_assert_int_eq(c->force_ttl, 0);
    ck_assert_int_eq(c->heuristic_max, 86400);
    ck_assert_str_eq(statuses_text(c, buf, sizeof(buf)), "301");
    check_strings(c->strip_headers, c->nstrip_headers, none);
    ck_assert_ptr_null(c->strip_headers);
    check_strings(c->key.headers, c->key.nheaders, one);
    check_strings(c->key.cookies, c->key.ncookies, none);

    /* "cache:" with nothing under it: the defaults, caching off. */
    check_route_cache_default(&cfg->routes[2].cache, false);
    config_unref(&cfg);
}
END_TEST

static void
check_tiers(const struct config_route_cache *c, const enum config_tier *want, size_t n)
{
    ck_assert_uint_eq(c->ntiers, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(c->tiers[i], want[i]);
}

/* What a rule's match accepts, and one template expanded from that match. */
static void
check_rule_expands(const struct config_inval_rule *r, const char *path, const char *tmpl,
                   const char *want)
{
    struct rule_vars v;
    char buf[256];

    ck_assert_msg(rule_match(r->match, path, strlen(path), &v), "%s does not match", path);
    ck_assert_int_eq(rule_expand(r->match, &v, tmpl, buf, sizeof(buf)), (ssize_t)strlen(want));
    ck_assert_str_eq(buf, want);
}

START_TEST(test_tiers_full)
{
    static const enum config_tier all[] = {CONFIG_TIER_MEMORY, CONFIG_TIER_REDIS,
                                           CONFIG_TIER_MEMCACHED};
    static const enum config_tier mc[] = {CONFIG_TIER_MEMORY, CONFIG_TIER_MEMCACHED};
    static const enum config_tier mem[] = {CONFIG_TIER_MEMORY};
    static const char *const purge0[] = {"/api/products/{id}", "/api/products", NULL};
    static const char *const tags0[] = {"product-{id}", NULL};
    static const char *const tags1[] = {"shop-{shop}", "item-{shop}-{item}", NULL};
    static const char *const purge2[] = {"/search", NULL};
    static const char *const none[] = {NULL};
    struct config *cfg = load_good(DATA("good-tiers.yaml"));
    const struct config_redis *r = &cfg->redis;
    const struct config_memcached *m = &cfg->memcached;
    const struct config_invalidation *inv = &cfg->invalidation;
    const struct config_route_cache *c;

    ck_assert(r->enabled);
    check_addr(&r->addr, "127.0.0.1:6380", AF_INET, 6380);
    ck_assert_str_eq(r->password, "s3cret pass");
    ck_assert_uint_eq(r->db, 15);
    ck_assert_str_eq(r->prefix, "shop:");
    ck_assert_uint_eq(r->connect_timeout_ms, 1000);
    ck_assert_uint_eq(r->timeout_ms, 150);
    ck_assert_uint_eq(r->backoff_min_ms, 2000);
    ck_assert_uint_eq(r->backoff_max_ms, 2000); /* equal is allowed */
    ck_assert_uint_eq(r->max_object_size, 512u << 20);
    ck_assert_uint_eq(r->breaker_failures, 1000);
    ck_assert_uint_eq(r->breaker_cooldown_ms, 10000);

    ck_assert(m->enabled);
    ck_assert_uint_eq(m->nservers, 3);
    check_addr(&m->servers[0], "127.0.0.1:11211", AF_INET, 11211);
    check_addr(&m->servers[1], "[::1]:11212", AF_INET6, 11212);
    ck_assert_str_eq(m->servers[2].text, "localhost:11213");
    ck_assert_uint_eq(addr_port(&m->servers[2]), 11213);
    ck_assert_str_eq(m->prefix, "mc/");
    ck_assert_uint_eq(m->connect_timeout_ms, 1);
    ck_assert_uint_eq(m->timeout_ms, 86400000u);
    ck_assert_uint_eq(m->threads, 64);
    ck_assert_uint_eq(m->queue, 1000000);
    ck_assert_uint_eq(m->retry_ms, 30000);
    ck_assert_uint_eq(m->max_object_size, 128u << 20);
    ck_assert_uint_eq(m->breaker_failures, 1);
    ck_assert_uint_eq(m->breaker_cooldown_ms, 250);

    ck_assert_str_eq(inv->channel, "shop:bus");
    ck_assert(!inv->broadcast);
    ck_assert_str_eq(inv->node_id, "node-a");
    ck_assert_uint_eq(inv->npurge_allow, 5);
    check_cidr(&inv->purge_allow[0], "10.0.0.0/8", AF_INET, "10.0.0.0", 8);
    check_cidr(&inv->purge_allow[1], "fd00::/8", AF_INET6, "fd00::", 8);
    check_cidr(&inv->purge_allow[2], "192.0.2.7", AF_INET, "192.0.2.7", 32);       /* bare v4 */
    check_cidr(&inv->purge_allow[3], "2001:db8::1", AF_INET6, "2001:db8::1", 128); /* bare v6 */
    check_cidr(&inv->purge_allow[4], "0.0.0.0/0", AF_INET, "0.0.0.0", 0);
    ck_assert_str_eq(inv->purge_token, "0123456789abcdef");
    ck_assert_uint_eq(inv->max_bans, 100000);

    ck_assert_uint_eq(cfg->nroutes, 3);
    /* No tiers given: memory, then every configured shared tier in order. */
    c = &cfg->routes[0].cache;
    check_tiers(c, all, 3);
    ck_assert_uint_eq(c->nrules, 3);
    ck_assert_int_eq(c->rules[0].line, 44);
    ck_assert_uint_eq(c->rules[0].methods,
                      M(HTTP_M_POST) | M(HTTP_M_PUT) | M(HTTP_M_PATCH) | M(HTTP_M_DELETE));
    check_strings(c->rules[0].purge, c->rules[0].npurge, purge0);
    check_strings(c->rules[0].tags, c->rules[0].ntags, tags0);
    check_rule_expands(&c->rules[0], "/api/products/42", "product-{id}", "product-42");
    ck_assert(!rule_match(c->rules[0].match, "/api/products/42/x", 18, NULL));
    ck_assert_int_eq(c->rules[1].line, 47);
    ck_assert_uint_eq(c->rules[1].methods, M(HTTP_M_DELETE));
    check_strings(c->rules[1].purge, c->rules[1].npurge, none);
    check_strings(c->rules[1].tags, c->rules[1].ntags, tags1);
    check_rule_expands(&c->rules[1], "/api/shops/eu/items/7.json", "item-{shop}-{item}",
                       "item-eu-7");
    ck_assert_int_eq(c->rules[2].line, 50);
    ck_assert_uint_eq(c->rules[2].methods, M(HTTP_M_PURGE) | M(HTTP_M_POST));
    check_strings(c->rules[2].purge, c->rules[2].npurge, purge2);
    check_strings(c->rules[2].tags, c->rules[2].ntags, none);
    check_rule_expands(&c->rules[2], "/search/a/b", "/search", "/search");

    /* Given explicitly, and "[]" for no rules. */
    c = &cfg->routes[1].cache;
    check_tiers(c, mc, 2);
    ck_assert_uint_eq(c->nrules, 0);
    ck_assert_ptr_null(c->rules);
    c = &cfg->routes[2].cache;
    check_tiers(c, mem, 1);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_analytics_full)
{
    /* Every form a ratio may take, by route f0..f8 in the file. */
    static const double forms[] = {0.0, 0.5, 0.5, 0.25, 0.0, 1.0, 0.125, 0.25, 1.0};
    struct config *cfg = load_good(DATA("good-analytics.yaml"));
    const struct config_route *r;

    ck_assert(!cfg->analytics_enabled);
    ck_assert_uint_eq(cfg->nroutes, 4 + sizeof(forms) / sizeof(forms[0]));

    /* Every key, at the bounds. */
    r = &cfg->routes[0];
    ck_assert_uint_eq(r->analytics_warmup_ms, 0);
    ck_assert_double_eq(r->sample_bypass, 1.0);
    check_budget(&r->budget, 1000, 250000, 250000, 1000000, INT64_C(3600000000), 0.95, true);

    /* One key: the others stay unset. */
    r = &cfg->routes[1];
    ck_assert_uint_eq(r->analytics_warmup_ms, 86400000u);
    ck_assert_double_eq(r->sample_bypass, 0.01);
    check_budget(&r->budget, -1, -1, -1, 150000, -1, -1.0, true);

    /* hit_ratio 0 is a budget (set), not the absence of one. */
    r = &cfg->routes[2];
    ck_assert_uint_eq(r->analytics_warmup_ms, 86400000u);
    ck_assert_double_eq(r->sample_bypass, 0.001);
    check_budget(&r->budget, -1, -1, -1, -1, -1, 0.0, true);

    /* "analytics:" with nothing under it. */
    check_route_analytics_default(&cfg->routes[3]);

    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        r = &cfg->routes[4 + i];
        ck_assert_msg(r->sample_bypass == forms[i], "%s: sample_bypass %g, want %g", r->name,
                      r->sample_bypass, forms[i]);
        ck_assert(!signbit(r->sample_bypass)); /* "-0" is 0 */
        ck_assert_uint_eq(r->analytics_warmup_ms, 60000);
        ck_assert(!r->budget.set);
    }
    config_unref(&cfg);
}
END_TEST

START_TEST(test_regex_jit)
{
    struct config *cfg = load_good(DATA("good-full.yaml"));
    uint32_t jit = 0;
    size_t jitsize = 0;

    pcre2_config(PCRE2_CONFIG_JIT, &jit);
    ck_assert_int_eq(pcre2_pattern_info(cfg->routes[0].path_re, PCRE2_INFO_JITSIZE, &jitsize), 0);
    if (jit)
        ck_assert_uint_gt(jitsize, 0);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_flow_style_and_off)
{
    struct config *cfg = load_good(DATA("good-admin-off.yaml"));

    check_addr(&cfg->listen[0], "0.0.0.0:8080", AF_INET, 8080);
    ck_assert_uint_eq(cfg->admin.len, 0);
    ck_assert_ptr_null(cfg->admin.text);
    /* "log:" with nothing under it: every log key at its default. */
    ck_assert_int_eq(cfg->log_level, CONFIG_LOG_INFO);
    ck_assert_str_eq(cfg->error_log, "stderr");
    ck_assert_str_eq(cfg->routes[0].name, "all");
    ck_assert_ptr_eq(cfg->routes[0].upstream, &cfg->upstreams[0]);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_shipped_conf)
{
    struct config *cfg = load_good(TC_TEST_DATA "/../../conf/tailcache.yaml");

    ck_assert_uint_eq(cfg->workers, auto_workers());
    ck_assert_uint_eq(cfg->nlisten, 1);
    check_addr(&cfg->listen[0], "127.0.0.1:8080", AF_INET, 8080);
    check_addr(&cfg->admin, "127.0.0.1:9090", AF_INET, 9090);
    ck_assert_str_eq(cfg->error_log, "stderr");
    ck_assert_str_eq(cfg->access_log, "stderr");
    ck_assert_uint_eq(cfg->nupstreams, 1);
    ck_assert_str_eq(cfg->upstreams[0].name, "demo");
    check_addr(&cfg->upstreams[0].servers[0], "127.0.0.1:8081", AF_INET, 8081);
    ck_assert_uint_eq(cfg->nroutes, 1);
    ck_assert_str_eq(cfg->routes[0].name, "demo");
    ck_assert_str_eq(cfg->routes[0].hosts[0], "*");
    ck_assert_str_eq(cfg->routes[0].path, "/");
    ck_assert_uint_eq(cfg->routes[0].methods, 0);
    ck_assert_ptr_eq(cfg->routes[0].upstream, &cfg->upstreams[0]);
    /* The quick start shows hits: the demo route caches, all else default. */
    check_cache_globals_default(cfg);
    check_route_cache_default(&cfg->routes[0].cache, true);
    ck_assert(cfg->analytics_enabled);
    check_route_analytics_default(&cfg->routes[0]);
    config_unref(&cfg);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* One bad file per class of error                                          */

START_TEST(test_err_unknown_key)
{
    static const char *const want[] = {
        ":2: listn: unknown key",
        ":6: upstreams.demo.conect_timeout: unknown key",
        ":11: routes[0].colour: unknown key",
        NULL,
    };
    expect_errors(DATA("bad-unknown-key.yaml"), want);
}
END_TEST

START_TEST(test_err_type)
{
    static const char *const want[] = {
        ":1: workers: expected an integer or \"auto\", got a list",
        ":2: listen: expected HOST:PORT or a list of them, got a mapping",
        ":3: limits: expected a mapping, got \"big\"",
        ":5: log.level: expected error, warn, info or debug, got a list",
        ":9: upstreams.demo.keepalive: expected an integer, got a mapping",
        NULL,
    };
    expect_errors(DATA("bad-type.yaml"), want);
}
END_TEST

START_TEST(test_err_bounds)
{
    static const char *const want[] = {
        ":1: workers: must be between 1 and 256, got 500",
        ":3: limits.request_line: must be between 256 and 1m, got 2m",
        ":4: limits.header_bytes: must be between 1k and 1m, got 512",
        ":5: limits.header_count: must be between 1 and 256, got 1000",
        ":6: limits.chunk_line: must be between 64 and 64k, got 99999999999999999999999",
        ":8: timeouts.client_header: must be between 1ms and 24h, got 0",
        ":9: timeouts.drain: must be between 1ms and 24h, got 25h",
        ":13: upstreams.demo.keepalive: must be between 0 and 10000, got 10001",
        ":14: upstreams.demo.max_fails: must be between 1 and 1000, got 0",
        /* Days and years are durations, but too long for a timeout. */
        ":15: upstreams.demo.fail_timeout: must be between 1ms and 24h, got 2d",
        ":16: upstreams.demo.keepalive_timeout: must be between 1ms and 24h, got 1y",
        NULL,
    };
    expect_errors(DATA("bad-bounds.yaml"), want);
}
END_TEST

START_TEST(test_err_duration)
{
    static const char *const want[] = {
        ":2: timeouts.client_header: expected a duration like \"2s\" or \"150ms\", got \"abc\"",
        ":3: timeouts.client_idle: expected a duration like \"2s\" or \"150ms\", got \"1.5s\"",
        ":4: timeouts.drain: expected a duration like \"2s\" or \"150ms\", got \"2 s\"",
        ":8: upstreams.demo.connect_timeout: expected a duration like \"2s\" or \"150ms\", got "
        "\"3w\"",
        ":9: upstreams.demo.idle_timeout: expected a duration like \"2s\" or \"150ms\", got "
        "\"-1\"",
        NULL,
    };
    expect_errors(DATA("bad-duration.yaml"), want);
}
END_TEST

START_TEST(test_err_size)
{
    static const char *const want[] = {
        ":2: limits.request_line: expected a size like \"8k\" or \"1m\", got \"big\"",
        ":3: limits.header_bytes: expected a size like \"8k\" or \"1m\", got \"32kb\"",
        ":4: limits.chunk_line: expected a size like \"8k\" or \"1m\", got \"1.5k\"",
        NULL,
    };
    expect_errors(DATA("bad-size.yaml"), want);
}
END_TEST

START_TEST(test_err_cache)
{
    static const char *const want[] = {
        ":3: cache.memory.size: must be between 1m and 1t, got 512k",
        ":4: cache.memory.shards: must be a power of two between 1 and 1024, got 48",
        ":5: cache.memory.eviction: must be one of s3fifo, lru, got \"fifo\"",
        ":6: cache.memory.max_object_size: must be between 1k and 4g, got 5g",
        ":7: cache.coalesce_timeout: must be between 1ms and 1h, got 2h",
        ":8: cache.hit_for_miss: must be between 1ms and 1h, got 0",
        ":16: routes[0].cache.enabled: expected true or false, got \"yes\"",
        ":17: routes[0].cache.ttl: expected a duration like \"60s\" or \"1d\", or \"off\", got "
        "\"soon\"",
        ":18: routes[0].cache.force_ttl: must be between 0s and 1y, got 2y",
        /* "off" only where the schema allows it. */
        ":19: routes[0].cache.stale_while_revalidate: expected a duration like \"60s\" or "
        "\"1d\", got \"off\"",
        ":20: routes[0].cache.stale_if_error: expected a duration like \"60s\" or \"1d\", got "
        "\"-1s\"",
        ":21: routes[0].cache.heuristic_max: must be between 0s and 1y, got "
        "99999999999999999999999y",
        ":22: routes[0].cache.statuses[1]: must be between 100 and 999, got 99",
        ":22: routes[0].cache.statuses[2]: must be between 100 and 999, got 1000",
        ":22: routes[0].cache.statuses[3]: expected a status code, got \"2xx\"",
        ":23: routes[0].cache.server_timing: expected true or false, got a list",
        ":24: routes[0].cache.colour: unknown key",
        /* The memory section is global, not per route. */
        ":28: routes[1].cache.memory: unknown key",
        ":29: routes[1].cache.statuses: must not be an empty list",
        ":30: routes[1].cache.ttl: expected a duration like \"60s\" or \"1d\", or \"off\", got "
        "\"1.5s\"",
        NULL,
    };
    expect_errors(DATA("bad-cache.yaml"), want);
}
END_TEST

START_TEST(test_err_cache_names)
{
    static const char *const want[] = {
        ":9: routes[0].cache.key.drop_query[0]: invalid query parameter name \"a=b\" (expected "
        "visible characters other than \"=\", \"&\" and \"#\")",
        ":9: routes[0].cache.key.drop_query[1]: invalid query parameter name \"\" (expected "
        "visible characters other than \"=\", \"&\" and \"#\")",
        ":9: routes[0].cache.key.drop_query[3]: duplicate query parameter name \"utm_source\"",
        ":10: routes[0].cache.key.headers[0]: invalid header name \"X Tenant\" (expected a "
        "token: letters, digits and !#$%&'*+-.^_`|~)",
        /* Header names are case-insensitive. */
        ":10: routes[0].cache.key.headers[2]: duplicate header name \"x-tenant\"",
        ":10: routes[0].cache.key.headers[3]: invalid header name \"Accept:\" (expected a "
        "token: letters, digits and !#$%&'*+-.^_`|~)",
        ":11: routes[0].cache.key.cookies[0]: invalid cookie name \"a;b\" (expected a token: "
        "letters, digits and !#$%&'*+-.^_`|~)",
        ":11: routes[0].cache.key.cookies[2]: duplicate cookie name \"lang\"",
        /* Same line: the walk's error first, then the check after the walk. */
        ":12: routes[0].cache.strip_headers[2]: invalid header name \"bad header\" (expected a "
        "token: letters, digits and !#$%&'*+-.^_`|~)",
        ":12: routes[0].cache.strip_headers[1]: \"X-TENANT\" is also in key.headers (a header "
        "in the cache key is passed upstream)",
        /* strip_headers left at its default: reported on key.headers. */
        ":18: routes[1].cache.key.headers[1]: \"x-forwarded-host\" is in the default "
        "strip_headers; list strip_headers without it",
        ":18: routes[1].cache.key.headers[2]: \"X-Original-URL\" is in the default "
        "strip_headers; list strip_headers without it",
        ":23: routes[2].cache.strip_headers: \"X-One\" is also in key.headers (a header in the "
        "cache key is passed upstream)",
        NULL,
    };
    expect_errors(DATA("bad-cache-names.yaml"), want);
}
END_TEST

START_TEST(test_err_missing)
{
    static const char *const want[] = {
        ":3: upstreams.demo.servers: required key missing",
        ":4: upstreams.other.servers: required key missing",
        ":6: routes[0].name: required key missing",
        ":6: routes[0].upstream: required key missing",
        NULL,
    };
    static const char *const want_empty[] = {
        ":1: upstreams: required key missing",
        ":1: routes: required key missing",
        NULL,
    };
    expect_errors(DATA("bad-missing.yaml"), want);
    expect_errors(DATA("bad-empty.yaml"), want_empty);
}
END_TEST

START_TEST(test_err_unknown_upstream)
{
    static const char *const want[] = {
        ":8: routes[1].upstream: names an unknown upstream \"nope\"",
        NULL,
    };
    expect_errors(DATA("bad-unknown-upstream.yaml"), want);
}
END_TEST

START_TEST(test_err_duplicate)
{
    static const char *const want[] = {
        ":4: upstreams.demo: duplicate upstream name \"demo\"",
        ":9: routes[1].name: duplicate route name \"demo\"",
        ":11: routes[1].prefix: duplicate key",
        NULL,
    };
    expect_errors(DATA("bad-duplicate.yaml"), want);
}
END_TEST

START_TEST(test_err_regex)
{
    static const char *const want[] = {
        ":6: routes[0].regex: regex does not compile at offset 4: missing closing parenthesis",
        NULL,
    };
    expect_errors(DATA("bad-regex.yaml"), want);
}
END_TEST

/* tls: the certificate paths are relative, so these run in t/data (each
 * test runs in its own forked process). */
START_TEST(test_tls_good)
{
    struct config *cfg;

    ck_assert_int_eq(chdir(TC_TEST_DATA), 0);
    cfg = load_good("good-tls.yaml");
    ck_assert_uint_eq(cfg->tls.nlisten, 2);
    check_addr(&cfg->tls.listen[0], "127.0.0.1:8443", AF_INET, 8443);
    check_addr(&cfg->tls.listen[1], "[::1]:8443", AF_INET6, 8443);
    ck_assert_uint_eq(cfg->tls.ncerts, 1);
    ck_assert_str_eq(cfg->tls.certs[0].cert, "tls/a.pem");
    ck_assert_str_eq(cfg->tls.certs[0].key, "tls/a.key");
    ck_assert_int_eq(cfg->tls.min_version, CONFIG_TLS_1_3);
    ck_assert_str_eq(cfg->tls.ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20");
    ck_assert_ptr_null(cfg->tls.ciphersuites);
    ck_assert(!cfg->tls.session_tickets);
    ck_assert_uint_eq(cfg->tls.ticket_rotation_ms, 30 * 60 * 1000);
    ck_assert_uint_eq(cfg->tls.handshake_timeout_ms, 2000);
    ck_assert_ptr_nonnull(cfg->tls.ctx);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_tls_defaults)
{
    struct config *cfg = load_good(DATA("good-minimal.yaml"));

    ck_assert_uint_eq(cfg->tls.nlisten, 0);
    ck_assert_uint_eq(cfg->tls.ncerts, 0);
    ck_assert_ptr_null(cfg->tls.ctx);
    ck_assert_int_eq(cfg->tls.min_version, CONFIG_TLS_1_2);
    ck_assert(cfg->tls.session_tickets);
    ck_assert_uint_eq(cfg->tls.ticket_rotation_ms, 3600 * 1000);
    ck_assert_uint_eq(cfg->tls.handshake_timeout_ms, 10000);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_err_tls)
{
    static const char *const want[] = {
        ":2: tls.listen: \"127.0.0.1:8080\" is also a plain listener (\"127.0.0.1:8080\")",
        ":10: tls.certificates[3].key: required key missing",
        ":11: tls.min_version: must be one of 1.2, 1.3, got \"1.1\"",
        ":13: tls.ticket_rotation: must be between 1s and 24h, got 10ms",
        NULL,
    };
    ck_assert_int_eq(chdir(TC_TEST_DATA), 0);
    expect_errors("bad-tls.yaml", want);
}
END_TEST

START_TEST(test_err_tls_files)
{
    static const char *const want[] = {
        ":4: tls.certificates[0].cert: cannot open tls/missing.pem: No such file or directory",
        ":7: tls.certificates[1].key: tls/other.key does not match the certificate in tls/a.pem",
        ":8: tls.certificates[2].cert: tls/garbage.pem: no PEM certificate (no start line)",
        ":10: tls.ciphers: \"NOSUCHCIPHER\" selects no cipher (no cipher match)",
        NULL,
    };
    static const char *const nocert[] = {
        ":2: tls.certificates: required when tls.listen is given",
        NULL,
    };
    static const char *const admin[] = {
        ":3: admin.tls: needs tls.certificates",
        NULL,
    };
    ck_assert_int_eq(chdir(TC_TEST_DATA), 0);
    expect_errors("bad-tls-files.yaml", want);
    expect_errors("bad-tls-nocert.yaml", nocert);
    expect_errors("bad-admin-tls.yaml", admin);
}
END_TEST

START_TEST(test_err_two_paths)
{
    static const char *const want[] = {
        ":7: routes[0].exact: only one of prefix, exact, regex",
        ":8: routes[0].regex: only one of prefix, exact, regex",
        ":11: routes[1].prefix: must start with \"/\", got \"api/\"",
        NULL,
    };
    expect_errors(DATA("bad-two-paths.yaml"), want);
}
END_TEST

START_TEST(test_err_address)
{
    static const char *const want[] = {
        ":1: listen: invalid address \"1.2.3.4\" (expected HOST:PORT)",
        ":3: admin.listen: invalid address \"127.0.0.1:0\" (port must be a number from 1 to "
        "65535)",
        ":7: upstreams.demo.servers[0]: invalid address \"::1:80\" (write an IPv6 address as "
        "[ADDR]:PORT)",
        ":8: upstreams.demo.servers[1]: invalid address \"[::1]\" (expected HOST:PORT)",
        ":9: upstreams.demo.servers[2]: invalid address \"127.0.0.1:http\" (port must be a "
        "number from 1 to 65535)",
        ":10: upstreams.demo.servers[3]: invalid address \"[example.com]:80\" (not an IPv6 "
        "address in brackets)",
        ":11: upstreams.demo.servers[4]: invalid address \":80\" (expected HOST:PORT)",
        NULL,
    };
    expect_errors(DATA("bad-address.yaml"), want);
}
END_TEST

START_TEST(test_err_unresolvable)
{
    char line[256];
    const char *want[] = {line, NULL};

    snprintf(line, sizeof(line),
             ":3: upstreams.demo.servers: cannot resolve \"nohost.invalid:80\": %s",
             invalid_name_reason());
    expect_errors(DATA("bad-resolve.yaml"), want);
}
END_TEST

START_TEST(test_err_syntax)
{
    static const char *const want[] = {
        ":4: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence "
        "that started at line 3)",
        NULL,
    };
    static const char *const want_root[] = {
        ":1: expected a mapping of keys, got a list",
        NULL,
    };
    static const char *const want_docs[] = {
        ":6: only one YAML document is allowed",
        NULL,
    };
    static const char *const want_open[] = {
        ": cannot open: No such file or directory",
        NULL,
    };
    expect_errors(DATA("bad-syntax.yaml"), want);
    expect_errors(DATA("bad-root.yaml"), want_root);
    expect_errors(DATA("bad-two-docs.yaml"), want_docs);
    expect_errors(DATA("no-such-file.yaml"), want_open);
}
END_TEST

START_TEST(test_err_misc)
{
    static const char *const want[] = {
        ":1: listen[1]: duplicate address \"127.0.0.1:8080\"",
        ":3: admin.listen: same address as the traffic listener \"127.0.0.1:8080\"",
        ":5: log.level: must be one of error, warn, info, debug, got \"verbose\"",
        ":6: log.error: must not be empty",
        ":7: log.access: must not contain a NUL byte",
        ":9: upstreams.bad name: invalid name \"bad name\" (1 to 64 letters, digits, \"_\", "
        "\".\" or \"-\")",
        ":12: upstreams.demo.servers: must not be an empty list",
        ":15: routes[0].host[0]: invalid host pattern \"api.example.com:8080\" (a port is never "
        "matched; remove it)",
        ":15: routes[0].host[2]: invalid host pattern \"a*b.example.com\" (expected a name, "
        "\"*.suffix\" or \"*\")",
        ":15: routes[0].host[3]: invalid host pattern \"\" (expected a name, \"*.suffix\" or "
        "\"*\")",
        ":16: routes[0].methods[1]: unknown method \"get\" (known: GET HEAD POST PUT DELETE "
        "PATCH OPTIONS TRACE PURGE)",
        ":16: routes[0].methods[2]: unknown method \"CONNECT\" (known: GET HEAD POST PUT DELETE "
        "PATCH OPTIONS TRACE PURGE)",
        /* Control characters are escaped: one error stays one line. */
        ":18: routes[0].host_rewrite: expected a host name with an optional :port, got "
        "\"evil\\r\\nX-Injected: 1\"",
        ":19: routes[1].name: invalid name \"with space\" (1 to 64 letters, digits, \"_\", \".\" "
        "or \"-\")",
        ":21: routes[2]: expected a mapping, got \"not a mapping\"",
        NULL,
    };
    expect_errors(DATA("bad-misc.yaml"), want);
}
END_TEST

START_TEST(test_err_many)
{
    char resolve[256];
    const char *want[] = {
        ":1: workers: expected an integer or \"auto\", got \"zero\"",
        ":2: listen: invalid address \"127.0.0.1\" (expected HOST:PORT)",
        ":4: limits.header_count: must be between 1 and 256, got 1000",
        ":6: timeouts.drain: expected a duration like \"2s\" or \"150ms\", got \"soon\"",
        resolve,
        ":10: upstreams.demo.max_fails: expected an integer, got \"many\"",
        ":13: routes[0].upstream: names an unknown upstream \"missing\"",
        ":15: routes[0].regex: only one of prefix, exact, regex",
        ":16: routes[1].name: duplicate route name \"demo\"",
        ":18: routes[1].bogus: unknown key",
        NULL,
    };

    snprintf(resolve, sizeof(resolve),
             ":9: upstreams.demo.servers: cannot resolve \"nohost.invalid:80\": %s",
             invalid_name_reason());
    expect_errors(DATA("bad-many.yaml"), want);
}
END_TEST

START_TEST(test_err_redis)
{
    static const char *const want[] = {
        ":3: cache.redis.address: invalid address \"127.0.0.1\" (expected HOST:PORT)",
        ":4: cache.redis.db: must be between 0 and 15, got 16",
        ":5: cache.redis.prefix: must be 1 to 64 visible ASCII characters (no spaces or control "
        "characters), got \"tc :\"",
        ":6: cache.redis.connect_timeout: must be between 1ms and 24h, got 0",
        ":7: cache.redis.timeout: must be between 1ms and 24h, got 2d",
        /* Checked across keys, after the walk, on the key that is given. */
        ":9: cache.redis.backoff_max: must not be less than backoff_min (10s), got 1s",
        ":10: cache.redis.max_object_size: must be between 1k and 512m, got 1g",
        ":11: cache.redis.breaker_failures: must be between 1 and 1000, got 0",
        ":12: cache.redis.breaker_cooldown: expected a duration like \"2s\" or \"150ms\", got "
        "\"soon\"",
        ":13: cache.redis.password: must not be empty",
        ":14: cache.redis.colour: unknown key",
        NULL,
    };
    expect_errors(DATA("bad-redis.yaml"), want);
}
END_TEST

START_TEST(test_err_backoff)
{
    static const char *const want[] = {
        ":5: cache.redis.backoff_min: must not be more than backoff_max (5s), got 10s",
        ":6: cache.redis.prefix: must be 1 to 64 visible ASCII characters (no spaces or control "
        "characters), got \"0123456789012345678901234567890123456789012345678901234567890123456"
        "789\"",
        NULL,
    };
    expect_errors(DATA("bad-backoff.yaml"), want);
}
END_TEST

START_TEST(test_err_memcached)
{
    static const char *const want[] = {
        ":3: cache.memcached.servers[1]: duplicate address \"127.0.0.1:11211\"",
        ":3: cache.memcached.servers[2]: invalid address \"nohost\" (expected HOST:PORT)",
        ":3: cache.memcached.servers[3]: invalid address \"[::1]:0\" (port must be a number "
        "from 1 to 65535)",
        ":4: cache.memcached.prefix: must be 1 to 64 visible ASCII characters (no spaces or "
        "control characters), got \"\"",
        ":5: cache.memcached.threads: must be between 1 and 64, got 65",
        ":6: cache.memcached.queue: must be between 1 and 1000000, got 0",
        ":7: cache.memcached.retry: must be between 1ms and 24h, got 1y",
        ":8: cache.memcached.max_object_size: must be between 1k and 128m, got 129m",
        ":9: cache.memcached.breaker_failures: must be between 1 and 1000, got 1001",
        ":10: cache.memcached.timeout: expected a duration like \"2s\" or \"150ms\", got "
        "\"1.5s\"",
        NULL,
    };
    static const char *const want_many[] = {
        /* Only the count: the servers are still read, so the route's
         * memcached tier is not reported as unconfigured too. */
        ":4: cache.memcached.servers: must list at most 64 items, got 65",
        NULL,
    };
    expect_errors(DATA("bad-memcached.yaml"), want);
    expect_errors(DATA("bad-memcached-servers.yaml"), want_many);
}
END_TEST

START_TEST(test_err_invalidation)
{
    static const char *const want[] = {
        ":2: invalidation.channel: must be 1 to 256 visible ASCII characters (no spaces or "
        "control characters), got \"with space\"",
        ":3: invalidation.broadcast: expected true or false, got \"maybe\"",
        ":4: invalidation.node_id: must be 1 to 255 visible ASCII characters (no spaces or "
        "control characters), got \"a\\tb\"",
        ":7: invalidation.purge_allow[1]: \"10.0.0.1/8\" has bits set past its prefix length "
        "(the block is 10.0.0.0/8)",
        ":8: invalidation.purge_allow[2]: invalid prefix length in \"10.0.0.0/33\" (0 to 32 for "
        "IPv4)",
        ":9: invalidation.purge_allow[3]: invalid prefix length in \"::1/129\" (0 to 128 for "
        "IPv6)",
        ":10: invalidation.purge_allow[4]: invalid address block \"fe80::1%eth0\" (expected "
        "ADDRESS or ADDRESS/BITS, like 10.0.0.0/8 or ::1)",
        ":11: invalidation.purge_allow[5]: invalid address block \"10.1\" (expected ADDRESS or "
        "ADDRESS/BITS, like 10.0.0.0/8 or ::1)",
        ":12: invalidation.purge_allow[6]: invalid prefix length in \"192.168.1.1/\" (0 to 32 "
        "for IPv4)",
        ":13: invalidation.purge_allow[7]: duplicate address block \"10.0.0.0/8\"",
        /* "::1" (line 14) is fine; the same block written out is not. */
        ":15: invalidation.purge_allow[9]: duplicate address block \"0:0:0:0:0:0:0:1/128\"",
        ":16: invalidation.purge_allow[10]: invalid address block \"/24\" (expected ADDRESS or "
        "ADDRESS/BITS, like 10.0.0.0/8 or ::1)",
        ":17: invalidation.purge_allow[11]: invalid prefix length in \"192.168.1.0/+24\" (0 to "
        "32 for IPv4)",
        /* A secret is never quoted back. */
        ":18: invalidation.purge_token: must be 8 to 256 visible ASCII characters (no spaces or "
        "control characters)",
        ":19: invalidation.max_bans: must be between 1 and 100000, got 0",
        NULL,
    };
    expect_errors(DATA("bad-invalidation.yaml"), want);
}
END_TEST

START_TEST(test_err_tiers)
{
    static const char *const want[] = {
        ":9: routes[0].cache.tiers: redis is not configured (cache.redis.address)",
        ":13: routes[1].cache.tiers: memory must come first",
        ":17: routes[2].cache.tiers: memory is required, and comes first",
        ":21: routes[3].cache.tiers[1]: duplicate tier \"memory\"",
        ":21: routes[3].cache.tiers[2]: unknown tier \"disk\" (known: memory, redis, memcached)",
        ":21: routes[3].cache.tiers: redis is not configured (cache.redis.address)",
        ":25: routes[4].cache.tiers: must not be an empty list",
        ":29: routes[5].cache.tiers: expected a tier name or a list of them, got a mapping",
        NULL,
    };
    expect_errors(DATA("bad-tiers.yaml"), want);
}
END_TEST

START_TEST(test_err_rules)
{
    static const char *const want[] = {
        ":8: routes[0].cache.invalidate[0].match: invalid pattern \"/api/products/{id\": "
        "unclosed \"{\" at offset 14",
        ":11: routes[0].cache.invalidate[1].methods[0]: GET is a safe method: rules apply to "
        "writes",
        ":11: routes[0].cache.invalidate[1].methods[1]: unknown method \"put\" (known: GET HEAD "
        "POST PUT DELETE PATCH OPTIONS TRACE PURGE)",
        ":11: routes[0].cache.invalidate[1].methods[3]: HEAD is a safe method: rules apply to "
        "writes",
        ":14: routes[0].cache.invalidate[1].purge[1]: invalid template \"/api/{kind}/{id}\": "
        "unknown capture \"kind\" (the pattern has id)",
        ":15: routes[0].cache.invalidate[1].purge[2]: must start with \"/\", got "
        "\"api/products\"",
        ":16: routes[0].cache.invalidate[1].purge[3]: duplicate template \"/api/products/{id}\"",
        ":17: routes[0].cache.invalidate[1].tags[1]: invalid tag template \"a,b\" (visible "
        "ASCII characters other than \",\")",
        ":17: routes[0].cache.invalidate[1].tags[2]: invalid template \"p-{id\": unclosed "
        "\"{\" at offset 2",
        ":18: routes[0].cache.invalidate[2]: needs purge or tags (or both)",
        ":19: routes[0].cache.invalidate[3].match: required key missing",
        ":21: routes[0].cache.invalidate[4]: expected a mapping, got \"not a mapping\"",
        ":22: routes[0].cache.invalidate[5].match: invalid pattern \"/{a}{b}\": two captures "
        "in one path segment at offset 4",
        ":24: routes[0].cache.invalidate[6]: needs purge or tags (or both)",
        ":27: routes[0].cache.invalidate[6].methods: must not be an empty list",
        ":31: routes[1].cache.invalidate: expected a list of rules, got a mapping",
        NULL,
    };
    expect_errors(DATA("bad-rules.yaml"), want);
}
END_TEST

START_TEST(test_err_analytics)
{
    static const char *const want[] = {
        ":2: analytics.enabled: expected true or false, got \"yes\"",
        ":3: analytics.colour: unknown key",
        ":11: routes[0].analytics.warmup: must be between 0ms and 24h, got 2d",
        ":12: routes[0].analytics.sample_bypass: must be between 0 and 1, got -0.1",
        ":16: routes[1].analytics.warmup: expected a duration like \"2s\" or \"150ms\", got "
        "\"-1\"",
        ":17: routes[1].analytics.sample_bypass: must be between 0 and 1, got 1.0001",
        ":20: routes[2].analytics.warmup: expected a duration like \"2s\" or \"150ms\", got "
        "\"1.5s\"",
        /* YAML's and strtod's words for NaN and infinity are not ratios. */
        ":20: routes[2].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", got "
        "\".nan\"",
        ":21: routes[3].analytics.warmup: must be between 0ms and 24h, got "
        "99999999999999999999999ms",
        ":21: routes[3].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", got "
        "\"nan\"",
        /* Too large for a double: still a number, out of bounds. */
        ":22: routes[4].analytics.sample_bypass: must be between 0 and 1, got 1e999",
        ":23: routes[5].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", got "
        "\".inf\"",
        ":24: routes[6].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", got "
        "\"0x1p-3\"",
        ":25: routes[7].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", got "
        "\"5%\"",
        ":26: routes[8].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", got "
        "\"1e\"",
        ":27: routes[9].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", got "
        "\" 0.5\"",
        ":28: routes[10].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", "
        "got a list",
        ":29: routes[11].analytics.sample_bypass: expected a ratio like \"0.01\" or \"1e-3\", "
        "got \"\"",
        ":30: routes[12].analytics: expected a mapping, got \"on\"",
        ":31: routes[13].analytics.sample: unknown key",
        NULL,
    };
    expect_errors(DATA("bad-analytics.yaml"), want);
}
END_TEST

START_TEST(test_err_budget)
{
    static const char *const want[] = {
        ":9: routes[0].analytics.budget.p50: must be between 1ms and 1h, got 0",
        ":10: routes[0].analytics.budget.p90: must be between 1ms and 1h, got 2h",
        ":11: routes[0].analytics.budget.p95: expected a duration like \"2s\" or \"150ms\", got "
        "\"500us\"",
        ":12: routes[0].analytics.budget.p99: expected a duration like \"2s\" or \"150ms\", got "
        "\"1.5s\"",
        ":13: routes[0].analytics.budget.p999: must be between 1ms and 1h, got "
        "99999999999999999999999ms",
        ":14: routes[0].analytics.budget.hit_ratio: must be between 0 and 1, got 1.5",
        ":18: routes[1].analytics.budget: give at least one of p50, p90, p95, p99, p999, "
        "hit_ratio",
        /* "budget:" with nothing under it is empty too. */
        ":22: routes[2].analytics.budget: give at least one of p50, p90, p95, p99, p999, "
        "hit_ratio",
        ":30: routes[3].analytics.budget.p90: must not be less than p50 (500ms), got 100ms",
        ":32: routes[3].analytics.budget.p99: must not be less than p95 (500ms), got 200ms",
        /* Not empty: the unknown key is the error. */
        ":37: routes[4].analytics.budget.p98: unknown key",
        ":40: routes[5].analytics.budget: expected a mapping, got \"5\"",
        ":44: routes[6].analytics.budget.hit_ratio: must be between 0 and 1, got -0.5",
        ":44: routes[6].analytics.budget.p99: expected a duration like \"2s\" or \"150ms\", got "
        "\"1h1s\"",
        NULL,
    };
    expect_errors(DATA("bad-budget.yaml"), want);
}
END_TEST

START_TEST(test_err_null_errp)
{
    /* err may be NULL when the caller only wants success or failure. */
    ck_assert_ptr_null(config_load(DATA("bad-many.yaml"), NULL));
}
END_TEST

/* ------------------------------------------------------------------------ */

START_TEST(test_quick_good)
{
    char *err = (char *)"unset";
    struct config *cfg = config_quick("http://127.0.0.1:8081", NULL, NULL, NULL, NULL, &err);
    const struct config_upstream *up;
    const struct config_route *r;

    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_null(err);
    ck_assert_ptr_null(cfg->file);
    ck_assert_int_eq(atomic_load(&cfg->refs), 1);
    ck_assert_uint_eq(cfg->workers, auto_workers());
    ck_assert_uint_eq(cfg->nlisten, 1);
    check_addr(&cfg->listen[0], "127.0.0.1:8080", AF_INET, 8080);
    /* No admin argument: admin.listen's default, chosen by quick mode. */
    check_addr(&cfg->admin, "127.0.0.1:9090", AF_INET, 9090);
    ck_assert(cfg->admin_defaulted);
    ck_assert_uint_eq(cfg->limits.max_request_line, 8192);
    ck_assert_uint_eq(cfg->limits.max_headers, 100);
    ck_assert_uint_eq(cfg->client_header_timeout_ms, 10000);
    ck_assert_int_eq(cfg->log_level, CONFIG_LOG_INFO);
    ck_assert_str_eq(cfg->access_log, "stderr");
    ck_assert_uint_eq(cfg->nupstreams, 1);
    up = &cfg->upstreams[0];
    ck_assert_str_eq(up->name, "upstream");
    ck_assert_uint_eq(up->nservers, 1);
    check_addr(&up->servers[0], "127.0.0.1:8081", AF_INET, 8081);
    ck_assert_uint_eq(up->keepalive, 32);
    ck_assert_uint_eq(up->connect_timeout_ms, 2000);
    ck_assert_uint_eq(cfg->nroutes, 1);
    r = &cfg->routes[0];
    ck_assert_str_eq(r->name, "127.0.0.1:8081"); /* named after the origin */
    ck_assert_uint_eq(r->nhosts, 1);
    ck_assert_str_eq(r->hosts[0], "*");
    ck_assert_int_eq(r->path_kind, CONFIG_PATH_PREFIX);
    ck_assert_str_eq(r->path, "/");
    ck_assert_uint_eq(r->methods, 0);
    ck_assert_ptr_eq(r->upstream, up);
    ck_assert_str_eq(r->host_rewrite, "127.0.0.1:8081");
    /* Quick mode caches, with every other cache key at its default. */
    check_cache_globals_default(cfg);
    check_route_cache_default(&r->cache, true);
    ck_assert(cfg->analytics_enabled);
    check_route_analytics_default(r);
    config_unref(&cfg);

    /* No port in the URL: the name has the one connected to. */
    cfg = config_quick("http://localhost/", "127.0.0.1:18080", "127.0.0.1:19090", NULL, NULL, &err);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_str_eq(cfg->upstreams[0].servers[0].text, "localhost:80");
    ck_assert_uint_eq(addr_port(&cfg->upstreams[0].servers[0]), 80);
    ck_assert_str_eq(cfg->routes[0].name, "localhost:80");
    ck_assert_str_eq(cfg->routes[0].host_rewrite, "localhost");
    check_addr(&cfg->listen[0], "127.0.0.1:18080", AF_INET, 18080);
    check_addr(&cfg->admin, "127.0.0.1:19090", AF_INET, 19090);
    ck_assert(!cfg->admin_defaulted); /* given */
    config_unref(&cfg);

    /* The name as written: scheme case aside, nothing is normalised. */
    cfg = config_quick("HTTP://[::1]:9000", "[::1]:18080", "off", NULL, NULL, &err);
    ck_assert_msg(cfg != NULL, "%s", err);
    check_addr(&cfg->upstreams[0].servers[0], "[::1]:9000", AF_INET6, 9000);
    ck_assert_str_eq(cfg->routes[0].name, "[::1]:9000");
    ck_assert_str_eq(cfg->routes[0].host_rewrite, "[::1]:9000");
    check_addr(&cfg->listen[0], "[::1]:18080", AF_INET6, 18080);
    ck_assert_uint_eq(cfg->admin.len, 0);
    ck_assert_ptr_null(cfg->admin.text);
    ck_assert(!cfg->admin_defaulted);
    config_unref(&cfg);

    cfg = config_quick("http://LocalHost:8081", NULL, NULL, NULL, NULL, &err);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_str_eq(cfg->routes[0].name, "LocalHost:8081");
    config_unref(&cfg);
}
END_TEST

/* Quick mode's admin listener when the command line names none. */
START_TEST(test_quick_admin)
{
    static const char *const on_9090[] = {"127.0.0.1:9090", "0.0.0.0:9090", "[::1]:9090"};
    char *err = (char *)"unset";
    struct config *cfg;

    /* The default steps aside for a traffic listener on its port, on any
     * address, rather than clash with it: no error, no admin listener. */
    for (size_t i = 0; i < sizeof(on_9090) / sizeof(on_9090[0]); i++) {
        cfg = config_quick("http://127.0.0.1:8081", on_9090[i], NULL, NULL, NULL, &err);
        ck_assert_msg(cfg != NULL, "%s: %s", on_9090[i], err);
        ck_assert_ptr_null(err);
        ck_assert_uint_eq(cfg->admin.len, 0);
        ck_assert_ptr_null(cfg->admin.text);
        ck_assert(!cfg->admin_defaulted);
        config_unref(&cfg);
    }

    /* Another port: the default stands. */
    cfg = config_quick("http://127.0.0.1:8081", "[::]:8080", NULL, NULL, NULL, &err);
    ck_assert_msg(cfg != NULL, "%s", err);
    check_addr(&cfg->admin, "127.0.0.1:9090", AF_INET, 9090);
    ck_assert(cfg->admin_defaulted);
    config_unref(&cfg);

    /* Given, the same address is still an error, and "off" still off. */
    cfg =
        config_quick("http://127.0.0.1:8081", "127.0.0.1:9090", "127.0.0.1:9090", NULL, NULL, &err);
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, "admin: same address as the traffic listener \"127.0.0.1:9090\"\n");
    free(err);
    cfg = config_quick("http://127.0.0.1:8081", "127.0.0.1:9090", "off", NULL, NULL, &err);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_uint_eq(cfg->admin.len, 0);
    ck_assert(!cfg->admin_defaulted);
    config_unref(&cfg);
}
END_TEST

static void
expect_quick_error(const char *url, const char *listen, const char *admin, const char *want)
{
    char *err = NULL;
    struct config *cfg = config_quick(url, listen, admin, NULL, NULL, &err);

    ck_assert_msg(cfg == NULL, "%s accepted", url);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err, want);
    free(err);
}

START_TEST(test_quick_bad)
{
    static const char *const bad_urls[] = {
        "ftp://example.com", "example.com:80", "http://",      "http:///",   "http://x/path",
        "http://x//",        "http://user@x",  "http://x?q=1", "http://x#f", "http://[::1",
    };
    char want[512];

    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        snprintf(want, sizeof(want),
                 "upstream: expected a URL like http[s]://HOST[:PORT], got \"%s\"\n", bad_urls[i]);
        expect_quick_error(bad_urls[i], NULL, NULL, want);
    }
    expect_quick_error(NULL, NULL, NULL,
                       "upstream: expected a URL like http[s]://HOST[:PORT], got nothing\n");
    expect_quick_error("http://x:0", NULL, NULL,
                       "upstream: invalid address \"x:0\" (port must be a number from 1 to "
                       "65535)\n");
    snprintf(want, sizeof(want), "upstream: cannot resolve \"nohost.invalid:80\": %s\n",
             invalid_name_reason());
    expect_quick_error("http://nohost.invalid", NULL, NULL, want);
    /* Every error at once. */
    expect_quick_error("gopher://x", "nowhere", "127.0.0.1:0",
                       "listen: invalid address \"nowhere\" (expected HOST:PORT)\n"
                       "admin: invalid address \"127.0.0.1:0\" (port must be a number from 1 "
                       "to 65535)\n"
                       "upstream: expected a URL like http[s]://HOST[:PORT], got \"gopher://x\"\n");
    expect_quick_error("http://127.0.0.1:8081", NULL, "127.0.0.1:8080",
                       "admin: same address as the traffic listener \"127.0.0.1:8080\"\n");
}
END_TEST

START_TEST(test_quick_tiers)
{
    static const enum config_tier all[] = {CONFIG_TIER_MEMORY, CONFIG_TIER_REDIS,
                                           CONFIG_TIER_MEMCACHED};
    static const enum config_tier mc[] = {CONFIG_TIER_MEMORY, CONFIG_TIER_MEMCACHED};
    static const enum config_tier rd[] = {CONFIG_TIER_MEMORY, CONFIG_TIER_REDIS};
    char *err = (char *)"unset";
    struct config *cfg = config_quick("http://127.0.0.1:8081", NULL, NULL, "127.0.0.1:6379",
                                      "127.0.0.1:11211, [::1]:11212", &err);

    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_ptr_null(err);
    ck_assert(cfg->redis.enabled);
    check_addr(&cfg->redis.addr, "127.0.0.1:6379", AF_INET, 6379);
    check_redis_default_keys(&cfg->redis);
    ck_assert(cfg->memcached.enabled);
    ck_assert_uint_eq(cfg->memcached.nservers, 2);
    check_addr(&cfg->memcached.servers[0], "127.0.0.1:11211", AF_INET, 11211);
    check_addr(&cfg->memcached.servers[1], "[::1]:11212", AF_INET6, 11212);
    check_memcached_default_keys(&cfg->memcached);
    check_invalidation_default(&cfg->invalidation);
    check_tiers(&cfg->routes[0].cache, all, 3);
    ck_assert(cfg->routes[0].cache.enabled);
    ck_assert_uint_eq(cfg->routes[0].cache.nrules, 0);
    config_unref(&cfg);

    cfg = config_quick("http://127.0.0.1:8081", NULL, NULL, NULL, "localhost:11211", &err);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert(!cfg->redis.enabled);
    ck_assert_uint_eq(cfg->memcached.nservers, 1);
    check_tiers(&cfg->routes[0].cache, mc, 2);
    config_unref(&cfg);

    cfg = config_quick("http://127.0.0.1:8081", NULL, NULL, "[::1]:6379", NULL, &err);
    ck_assert_msg(cfg != NULL, "%s", err);
    check_addr(&cfg->redis.addr, "[::1]:6379", AF_INET6, 6379);
    ck_assert(!cfg->memcached.enabled);
    check_tiers(&cfg->routes[0].cache, rd, 2);
    config_unref(&cfg);
}
END_TEST

static void
expect_quick_tier_error(const char *redis, const char *memcached, const char *want)
{
    char *err = NULL;
    struct config *cfg = config_quick("http://127.0.0.1:8081", NULL, NULL, redis, memcached, &err);

    ck_assert_msg(cfg == NULL, "%s / %s accepted", redis, memcached);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err, want);
    free(err);
}

START_TEST(test_quick_tiers_bad)
{
    char many[65 * 24], want[256];
    size_t off = 0;

    expect_quick_tier_error("localhost", NULL,
                            "redis: invalid address \"localhost\" (expected HOST:PORT)\n");
    expect_quick_tier_error("127.0.0.1:0", NULL,
                            "redis: invalid address \"127.0.0.1:0\" (port must be a number from "
                            "1 to 65535)\n");
    expect_quick_tier_error(NULL, "127.0.0.1:11211,,127.0.0.1:11212",
                            "memcached: empty server in \"127.0.0.1:11211,,127.0.0.1:11212\" "
                            "(expected HOST:PORT[,...])\n");
    expect_quick_tier_error(NULL, "127.0.0.1:11211,",
                            "memcached: empty server in \"127.0.0.1:11211,\" (expected "
                            "HOST:PORT[,...])\n");
    expect_quick_tier_error(NULL, "",
                            "memcached: empty server in \"\" (expected HOST:PORT[,...])\n");
    expect_quick_tier_error(NULL, "127.0.0.1:11211,127.0.0.1:11211",
                            "memcached: duplicate address \"127.0.0.1:11211\"\n");
    expect_quick_tier_error(NULL, "127.0.0.1:11211,[::1]",
                            "memcached: invalid address \"[::1]\" (expected HOST:PORT)\n");
    snprintf(want, sizeof(want), "memcached: cannot resolve \"nohost.invalid:11211\": %s\n",
             invalid_name_reason());
    expect_quick_tier_error(NULL, "nohost.invalid:11211", want);
    for (int i = 0; i < 65; i++)
        off += (size_t)snprintf(many + off, sizeof(many) - off, "%s127.0.0.1:%d", i ? "," : "",
                                20000 + i);
    expect_quick_tier_error(NULL, many, "memcached: at most 64 servers, got 65\n");
    /* Every bad item of the list. */
    expect_quick_tier_error(NULL, "x, 127.0.0.1:11211,,127.0.0.1:11211 ,y",
                            "memcached: invalid address \"x\" (expected HOST:PORT)\n"
                            "memcached: empty server in \"x, 127.0.0.1:11211,,127.0.0.1:11211 "
                            ",y\" (expected HOST:PORT[,...])\n"
                            "memcached: duplicate address \"127.0.0.1:11211\"\n"
                            "memcached: invalid address \"y\" (expected HOST:PORT)\n");
    /* Both at once: redis, then memcached. */
    expect_quick_tier_error("x", "y",
                            "redis: invalid address \"x\" (expected HOST:PORT)\n"
                            "memcached: invalid address \"y\" (expected HOST:PORT)\n");
}
END_TEST

START_TEST(test_refcount)
{
    struct config *cfg = load_good(DATA("good-minimal.yaml"));
    struct config *other = config_ref(cfg), *none = NULL;

    ck_assert_ptr_eq(other, cfg);
    ck_assert_int_eq(atomic_load(&cfg->refs), 2);
    config_unref(&other);
    ck_assert_ptr_null(other);
    ck_assert_int_eq(atomic_load(&cfg->refs), 1);
    ck_assert_str_eq(cfg->routes[0].name, "all"); /* still alive */
    config_unref(&cfg);
    ck_assert_ptr_null(cfg);
    config_unref(&none);
    config_unref(NULL);
}
END_TEST

START_TEST(test_log_level_name)
{
    ck_assert_str_eq(config_log_level_name(CONFIG_LOG_ERROR), "error");
    ck_assert_str_eq(config_log_level_name(CONFIG_LOG_WARN), "warn");
    ck_assert_str_eq(config_log_level_name(CONFIG_LOG_INFO), "info");
    ck_assert_str_eq(config_log_level_name(CONFIG_LOG_DEBUG), "debug");
    ck_assert_str_eq(config_log_level_name((enum config_log_level)42), "?");
}
END_TEST

START_TEST(test_reference)
{
    static const char *const keys[] = {
        "\nworkers: \"auto\" or integer 1..256; default auto\n    ",
        "\nlisten: HOST:PORT, or a list; default 127.0.0.1:8080\n    ",
        "\nadmin.listen: HOST:PORT or \"off\"; default 127.0.0.1:9090\n    ",
        "\nlimits.request_line: size 256..1m; default 8k\n    ",
        "\nlimits.header_bytes: size 1k..1m; default 32k\n    ",
        "\nlimits.header_count: integer 1..256; default 100\n    ",
        "\nlimits.chunk_line: size 64..64k; default 4k\n    ",
        "\ntimeouts.client_header: duration 1ms..24h; default 10s\n    ",
        "\ntimeouts.client_keepalive: duration 1ms..24h; default 60s\n    ",
        "\ntimeouts.client_idle: duration 1ms..24h; default 60s\n    ",
        "\ntimeouts.drain: duration 1ms..24h; default 30s\n    ",
        "\nlog.level: error | warn | info | debug; default info\n    ",
        "\nlog.error: string; default stderr\n    ",
        "\nlog.access: string; default stderr\n    ",
        "\nupstreams: mapping: name -> upstream; required\n    ",
        "\nupstreams.NAME.servers: HOST:PORT, or a list; required\n    ",
        "\nupstreams.NAME.keepalive: integer 0..10000; default 32\n    ",
        "\nupstreams.NAME.keepalive_timeout: duration 1ms..24h; default 60s\n    ",
        "\nupstreams.NAME.connect_timeout: duration 1ms..24h; default 2s\n    ",
        "\nupstreams.NAME.first_byte_timeout: duration 1ms..24h; default 30s\n    ",
        "\nupstreams.NAME.idle_timeout: duration 1ms..24h; default 60s\n    ",
        "\nupstreams.NAME.max_fails: integer 1..1000; default 3\n    ",
        "\nupstreams.NAME.fail_timeout: duration 1ms..24h; default 10s\n    ",
        "\nroutes: list of routes; required\n    ",
        "\nroutes[].name: name; required\n    ",
        "\nroutes[].host: host pattern, or a list; default *\n    ",
        "\nroutes[].prefix: path; default /\n    ",
        "\nroutes[].exact: path; optional\n    ",
        "\nroutes[].regex: PCRE2 regex; optional\n    ",
        "\nroutes[].methods: method, or a list; optional\n    ",
        "\nroutes[].upstream: upstream name; required\n    ",
        "\nroutes[].host_rewrite: host[:port]; optional\n    ",
        "\ncache: mapping\n    ",
        "\ncache.memory: mapping\n    ",
        "\ncache.memory.size: size 1m..1t; default 256m\n    ",
        "\ncache.memory.shards: power of two 1..1024; default 16\n    ",
        "\ncache.memory.eviction: s3fifo | lru; default s3fifo\n    ",
        "\ncache.memory.max_object_size: size 1k..4g; default 16m\n    ",
        "\ncache.coalesce_timeout: duration 1ms..1h; default 5s\n    ",
        "\ncache.hit_for_miss: duration 1ms..1h; default 10s\n    ",
        "\nroutes[].cache: mapping\n    ",
        "\nroutes[].cache.enabled: true | false; default false\n    ",
        "\nroutes[].cache.ttl: duration 0s..1y or \"off\"; default off\n    ",
        "\nroutes[].cache.force_ttl: duration 0s..1y or \"off\"; default off\n    ",
        "\nroutes[].cache.stale_while_revalidate: duration 0s..1y; default 0s\n    ",
        "\nroutes[].cache.stale_if_error: duration 0s..1y; default 0s\n    ",
        "\nroutes[].cache.heuristic_max: duration 0s..1y; default 1d\n    ",
        "\nroutes[].cache.statuses: status 100..999, or a list; default [200, 203, 204, 300, 301, "
        "308, 404, 405, 410, 414, 501]\n    ",
        "\nroutes[].cache.set_cookie: true | false; default false\n    ",
        "\nroutes[].cache.honour_client_no_cache: true | false; default true\n    ",
        "\nroutes[].cache.server_timing: true | false; default false\n    ",
        "\nroutes[].cache.key: mapping\n    ",
        "\nroutes[].cache.key.sort_query: true | false; default false\n    ",
        "\nroutes[].cache.key.ignore_query: true | false; default false\n    ",
        "\nroutes[].cache.key.drop_query: query parameter name, or a list; default []\n    ",
        "\nroutes[].cache.key.headers: header name, or a list; default []\n    ",
        "\nroutes[].cache.key.cookies: cookie name, or a list; default []\n    ",
        "\nroutes[].cache.strip_headers: header name, or a list; default [X-Forwarded-Host, "
        "X-Forwarded-Server, X-Forwarded-Port, X-Forwarded-Scheme, X-Original-URL, "
        "X-Rewrite-URL, X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override]\n    ",
        "\ncache.redis: mapping\n    ",
        "\ncache.redis.address: HOST:PORT; optional\n    ",
        "\ncache.redis.password: string; optional\n    ",
        "\ncache.redis.db: integer 0..15; default 0\n    ",
        "\ncache.redis.prefix: string of 1..64 visible ASCII characters; default tc:\n    ",
        "\ncache.redis.connect_timeout: duration 1ms..24h; default 200ms\n    ",
        "\ncache.redis.timeout: duration 1ms..24h; default 50ms\n    ",
        "\ncache.redis.backoff_min: duration 1ms..24h; default 100ms\n    ",
        "\ncache.redis.backoff_max: duration 1ms..24h; default 5s\n    ",
        "\ncache.redis.max_object_size: size 1k..512m; default 8m\n    ",
        "\ncache.redis.breaker_failures: integer 1..1000; default 3\n    ",
        "\ncache.redis.breaker_cooldown: duration 1ms..24h; default 1s\n    ",
        "\ncache.memcached: mapping\n    ",
        "\ncache.memcached.servers: HOST:PORT, or a list of at most 64; default []\n    ",
        "\ncache.memcached.prefix: string of 1..64 visible ASCII characters; default tc:\n    ",
        "\ncache.memcached.connect_timeout: duration 1ms..24h; default 200ms\n    ",
        "\ncache.memcached.timeout: duration 1ms..24h; default 50ms\n    ",
        "\ncache.memcached.threads: integer 1..64; default 4\n    ",
        "\ncache.memcached.queue: integer 1..1000000; default 1024\n    ",
        "\ncache.memcached.retry: duration 1ms..24h; default 1s\n    ",
        "\ncache.memcached.max_object_size: size 1k..128m; default 1000k\n    ",
        "\ncache.memcached.breaker_failures: integer 1..1000; default 3\n    ",
        "\ncache.memcached.breaker_cooldown: duration 1ms..24h; default 1s\n    ",
        "\ninvalidation: mapping\n    ",
        "\ninvalidation.channel: string of 1..256 visible ASCII characters; default "
        "tailcache:invalidate\n    ",
        "\ninvalidation.broadcast: true | false; default true\n    ",
        "\ninvalidation.node_id: \"auto\" or string of 1..255 visible ASCII characters; default "
        "auto\n    ",
        "\ninvalidation.purge_allow: address block, or a list; default [127.0.0.1/32, "
        "::1/128]\n    ",
        "\ninvalidation.purge_token: string of 8..256 visible ASCII characters; optional\n    ",
        "\ninvalidation.max_bans: integer 1..100000; default 1000\n    ",
        "\nroutes[].cache.tiers: list of memory, redis, memcached; default: memory, then redis "
        "and memcached when configured\n    ",
        "\nroutes[].cache.invalidate: list of rules; optional\n    ",
        "\nroutes[].cache.invalidate[].methods: method, or a list; default [POST, PUT, PATCH, "
        "DELETE]\n    ",
        "\nroutes[].cache.invalidate[].match: path pattern; required\n    ",
        "\nroutes[].cache.invalidate[].purge: path template, or a list; default []\n    ",
        "\nroutes[].cache.invalidate[].tags: tag template, or a list; default []\n    ",
        "\nanalytics: mapping\n    ",
        "\nanalytics.enabled: true | false; default true\n    ",
        "\nroutes[].analytics: mapping\n    ",
        "\nroutes[].analytics.warmup: duration 0ms..24h; default 60s\n    ",
        "\nroutes[].analytics.sample_bypass: ratio 0..1; default 0\n    ",
        "\nroutes[].analytics.budget: mapping\n    ",
        "\nroutes[].analytics.budget.p50: duration 1ms..1h; default: none\n    ",
        "\nroutes[].analytics.budget.p90: duration 1ms..1h; default: none\n    ",
        "\nroutes[].analytics.budget.p95: duration 1ms..1h; default: none\n    ",
        "\nroutes[].analytics.budget.p99: duration 1ms..1h; default: none\n    ",
        "\nroutes[].analytics.budget.p999: duration 1ms..1h; default: none\n    ",
        "\nroutes[].analytics.budget.hit_ratio: ratio 0..1; default: none\n    ",
    };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    ck_assert_ptr_nonnull(f);
    config_print_reference(f);
    fclose(f);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        ck_assert_msg(strstr(text, keys[i]) != NULL, "reference lacks %s", keys[i]);
    free(text);
}
END_TEST

/* TLS files are named relative to the source tree in these files. */
static void
chdir_srcdir(void)
{
    ck_assert_int_eq(chdir(TC_TEST_DATA "/../.."), 0);
}

START_TEST(test_upstream_tls_good)
{
    struct config *cfg;

    chdir_srcdir();
    cfg = load_good(DATA("good-tls-upstream.yaml"));
    ck_assert_uint_eq(cfg->nupstreams, 5);
    /* named: the mapping alone turns TLS on, the name from the server. */
    ck_assert(cfg->upstreams[0].tls.enabled);
    ck_assert(cfg->upstreams[0].tls.verify);
    ck_assert_str_eq(cfg->upstreams[0].tls.server_name, "localhost");
    ck_assert_str_eq(cfg->upstreams[0].tls.min_version, "1.2");
    ck_assert_ptr_null(cfg->upstreams[0].tls.ca_file);
    ck_assert_ptr_nonnull(cfg->upstreams[0].tls.client);
    ck_assert(cfg->upstreams[1].tls.enabled);
    ck_assert_str_eq(cfg->upstreams[1].tls.server_name, "origin.example");
    ck_assert_str_eq(cfg->upstreams[1].tls.min_version, "1.3");
    ck_assert_ptr_nonnull(cfg->upstreams[1].tls.client);
    /* verify: false needs no name for an IP server: no SNI then. */
    ck_assert(cfg->upstreams[2].tls.enabled);
    ck_assert(!cfg->upstreams[2].tls.verify);
    ck_assert_ptr_null(cfg->upstreams[2].tls.server_name);
    ck_assert_ptr_nonnull(cfg->upstreams[2].tls.client);
    ck_assert(!cfg->upstreams[3].tls.enabled);
    ck_assert_ptr_null(cfg->upstreams[3].tls.client);
    ck_assert(!cfg->upstreams[4].tls.enabled);
    ck_assert_ptr_null(cfg->upstreams[4].tls.client);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_upstream_err_tls)
{
    static const char *const want[] = {
        ":4: upstreams.byip.tls.server_name: required to verify a server given by IP address",
        ":9: upstreams.nofile.tls.ca_file: cannot read \"/nonexistent/ca.pem\": No such file "
        "or directory",
        ":13: upstreams.notpem.tls.ca_file: cannot load \"t/data/bad-tls-upstream.yaml\": no "
        "certificate or crl found",
        ":18: upstreams.mismatch.tls.key: \"t/data/tls/other.key\" does not match the "
        "certificate in \"t/data/tls/client.pem\"",
        ":22: upstreams.halfpair.tls.key: required with cert (a client certificate needs both)",
        ":26: upstreams.badversion.tls.min_version: must be \"1.2\" or \"1.3\", got \"1.1\"",
        ":30: upstreams.ipname.tls.server_name: expected a DNS name (SNI carries no IP "
        "address), got \"10.0.0.1\"",
        NULL,
    };
    chdir_srcdir();
    expect_errors(DATA("bad-tls-upstream.yaml"), want);
}
END_TEST

START_TEST(test_quick_https)
{
    char *err = (char *)"unset";
    struct config *cfg = config_quick("https://localhost", NULL, NULL, NULL, NULL, &err);

    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert(cfg->upstreams[0].tls.enabled);
    ck_assert(cfg->upstreams[0].tls.verify);
    ck_assert_str_eq(cfg->upstreams[0].tls.server_name, "localhost");
    ck_assert_ptr_null(cfg->upstreams[0].tls.ca_file);
    ck_assert_ptr_nonnull(cfg->upstreams[0].tls.client);
    ck_assert_str_eq(cfg->upstreams[0].servers[0].text, "localhost:443");
    ck_assert_str_eq(cfg->routes[0].host_rewrite, "localhost");
    config_unref(&cfg);
    cfg = config_quick("http://localhost", NULL, NULL, NULL, NULL, &err);
    ck_assert_ptr_nonnull(cfg);
    ck_assert(!cfg->upstreams[0].tls.enabled);
    ck_assert_ptr_null(cfg->upstreams[0].tls.client);
    config_unref(&cfg);
    expect_quick_error("https://127.0.0.1:8443", NULL, NULL,
                       "upstream: https needs a host name to verify the server, got "
                       "\"https://127.0.0.1:8443\"\n");
}
END_TEST

static Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"defaults", test_defaults},
        {"full", test_full},
        {"cache_full", test_cache_full},
        {"tiers_full", test_tiers_full},
        {"analytics_full", test_analytics_full},
        {"regex_jit", test_regex_jit},
        {"flow_style_and_off", test_flow_style_and_off},
        {"shipped_conf", test_shipped_conf},
        {"err_unknown_key", test_err_unknown_key},
        {"err_type", test_err_type},
        {"err_bounds", test_err_bounds},
        {"err_duration", test_err_duration},
        {"err_size", test_err_size},
        {"err_cache", test_err_cache},
        {"err_cache_names", test_err_cache_names},
        {"err_missing", test_err_missing},
        {"err_unknown_upstream", test_err_unknown_upstream},
        {"err_duplicate", test_err_duplicate},
        {"err_regex", test_err_regex},
        {"err_two_paths", test_err_two_paths},
        {"tls_good", test_tls_good},
        {"tls_defaults", test_tls_defaults},
        {"err_tls", test_err_tls},
        {"err_tls_files", test_err_tls_files},
        {"err_address", test_err_address},
        {"err_unresolvable", test_err_unresolvable},
        {"err_syntax", test_err_syntax},
        {"err_misc", test_err_misc},
        {"err_many", test_err_many},
        {"err_redis", test_err_redis},
        {"err_backoff", test_err_backoff},
        {"err_memcached", test_err_memcached},
        {"err_invalidation", test_err_invalidation},
        {"err_tiers", test_err_tiers},
        {"err_rules", test_err_rules},
        {"err_analytics", test_err_analytics},
        {"err_budget", test_err_budget},
        {"err_null_errp", test_err_null_errp},
        {"quick_good", test_quick_good},
        {"quick_admin", test_quick_admin},
        {"quick_bad", test_quick_bad},
        {"quick_https", test_quick_https},
        {"upstream_tls_good", test_upstream_tls_good},
        {"upstream_err_tls", test_upstream_err_tls},
        {"quick_tiers", test_quick_tiers},
        {"quick_tiers_bad", test_quick_tiers_bad},
        {"refcount", test_refcount},
        {"log_level_name", test_log_level_name},
        {"reference", test_reference},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
