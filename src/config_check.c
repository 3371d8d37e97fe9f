/*
 * config_check: the checks that look at several keys at once, run after
 * the table walk has read the whole file (config_int.h): routes against
 * upstreams and tiers, cache key headers against strip_headers, budgets,
 * backoff and window bounds, TLS listeners and certificates; and the
 * values settled from them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_int.h"
#include "config_schema.h"
#include "http_parser.h"
#include "rule.h"
#include "tls.h"
#include "tls_client.h"
#include "util.h"

/*
 * A header in a route's cache key is passed upstream: stripping it would
 * key responses on a value the origin never saw. Listing it in both is
 * reported on the strip_headers item, or, when strip_headers is left at
 * its default (which then holds the header), on the key.headers item.
 */
static void
config_check_cache_headers(struct config_loader *ld, size_t ri)
{
    const struct config_route_cache *c = &ld->cfg->routes[ri].cache;
    yaml_node_t *cache = config_map_get(ld, ld->route_nodes[ri], "cache");
    yaml_node_t *strip = config_map_get(ld, cache, "strip_headers");
    yaml_node_t *headers = config_map_get(ld, config_map_get(ld, cache, "key"), "headers");
    char path[CONFIG_PATH_MAX], ipath[CONFIG_PATH_MAX + 24];

    for (size_t i = 0; i < c->key.nheaders && headers != NULL; i++) {
        for (size_t j = 0; j < c->nstrip_headers; j++) {
            const char *h = c->key.headers[i];
            if (h == NULL || c->strip_headers[j] == NULL || strcasecmp(h, c->strip_headers[j]) != 0)
                continue;
            if (strip != NULL) {
                snprintf(path, sizeof(path), "routes[%zu].cache.strip_headers", ri);
                config_error(
                    ld, config_line(config_list_item(ld, strip, j, path, ipath, sizeof(ipath))),
                    ipath,
                    "\"%s\" is also in key.headers (a header in the cache key is "
                    "passed upstream)",
                    c->strip_headers[j]);
            } else {
                snprintf(path, sizeof(path), "routes[%zu].cache.key.headers", ri);
                config_error(
                    ld, config_line(config_list_item(ld, headers, i, path, ipath, sizeof(ipath))),
                    ipath,
                    "\"%s\" is in the default strip_headers; list strip_headers "
                    "without it",
                    h);
            }
        }
    }
}

static bool
config_tier_enabled(const struct config *cfg, enum config_tier t)
{
    return t == CONFIG_TIER_MEMORY || (t == CONFIG_TIER_REDIS && cfg->redis.enabled) ||
           (t == CONFIG_TIER_MEMCACHED && cfg->memcached.enabled);
}

/*
 * A route's tiers as listed: memory first, and only shared tiers that are
 * configured. The list was walked already (unknown names and duplicates
 * reported there); this looks at its items again for their lines.
 */
static void
config_check_tiers(struct config_loader *ld, size_t ri)
{
    static const char *const needs[] = {
        [CONFIG_TIER_MEMORY] = "",
        [CONFIG_TIER_REDIS] = "cache.redis.address",
        [CONFIG_TIER_MEMCACHED] = "cache.memcached.servers",
    };
    yaml_node_t *cache = config_map_get(ld, ld->route_nodes[ri], "cache");
    yaml_node_t *node = config_map_get(ld, cache, "tiers");
    char path[CONFIG_PATH_MAX], ipath[CONFIG_PATH_MAX + 24];
    unsigned seen = 0, pos = 0;
    size_t n;

    if (node == NULL || config_is_null(node) || node->type == YAML_MAPPING_NODE)
        return;
    snprintf(path, sizeof(path), "routes[%zu].cache.tiers", ri);
    n = node->type == YAML_SEQUENCE_NODE
            ? (size_t)(node->data.sequence.items.top - node->data.sequence.items.start)
            : 1;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = config_list_item(ld, node, i, path, ipath, sizeof(ipath));
        unsigned t;

        if (it == NULL || it->type != YAML_SCALAR_NODE)
            continue;
        for (t = 0; config_schema_tiers[t] != NULL; t++) {
            if (strcmp(config_schema_tiers[t], (const char *)it->data.scalar.value) == 0)
                break;
        }
        if (config_schema_tiers[t] == NULL || (seen & (1u << t)))
            continue; /* unknown or repeated: reported by the walk */
        seen |= 1u << t;
        if (t == CONFIG_TIER_MEMORY && pos != 0)
            config_error(ld, config_line(it), path, "memory must come first");
        else if (!config_tier_enabled(ld->cfg, (enum config_tier)t))
            config_error(ld, config_line(it), path, "%s is not configured (%s)",
                         config_schema_tiers[t], needs[t]);
        pos++;
    }
    if (pos > 0 && !(seen & (1u << CONFIG_TIER_MEMORY)))
        config_error(ld, config_line(node), path, "memory is required, and comes first");
}

/* cache.redis.backoff_max >= backoff_min, reported where the file sets one. */
static void
config_check_backoff(struct config_loader *ld, yaml_node_t *root)
{
    const struct config_redis *r = &ld->cfg->redis;
    const struct config_key dur = {.type = CONFIG_T_DURATION};
    yaml_node_t *redis = config_map_get(ld, config_map_get(ld, root, "cache"), "redis");
    yaml_node_t *max = config_map_get(ld, redis, "backoff_max");
    yaml_node_t *min = config_map_get(ld, redis, "backoff_min");
    char other[32], got[32];

    if (r->backoff_max_ms >= r->backoff_min_ms)
        return;
    if (max != NULL)
        config_error(ld, config_line(max), "cache.redis.backoff_max",
                     "must not be less than backoff_min (%s), got %s",
                     config_schema_fmt(&dur, r->backoff_min_ms, other, sizeof(other)),
                     config_schema_fmt(&dur, r->backoff_max_ms, got, sizeof(got)));
    else
        config_error(ld, config_line(min), "cache.redis.backoff_min",
                     "must not be more than backoff_max (%s), got %s",
                     config_schema_fmt(&dur, r->backoff_max_ms, other, sizeof(other)),
                     config_schema_fmt(&dur, r->backoff_min_ms, got, sizeof(got)));
}

/* analytics.window is a whole number of analytics.slot, 60 at most. */
static void
config_check_window(struct config_loader *ld, yaml_node_t *root)
{
    const struct config *cfg = ld->cfg;
    yaml_node_t *an = config_map_get(ld, root, "analytics");
    yaml_node_t *node = config_map_get(ld, an, "window");
    if (cfg->analytics_slot_ms == 0 || cfg->analytics_window_ms == 0)
        return; /* wrong and reported */
    if (cfg->analytics_window_ms % cfg->analytics_slot_ms != 0 ||
        cfg->analytics_window_ms / cfg->analytics_slot_ms > 60)
        config_error(ld, config_line(node != NULL ? node : config_map_get(ld, an, "slot")),
                     node != NULL ? "analytics.window" : "analytics.slot",
                     "must be a whole number of slots (analytics.slot, %u ms), at most 60 of "
                     "them; got %u ms",
                     cfg->analytics_slot_ms, cfg->analytics_window_ms);
}

/*
 * A route's latency budgets never decrease from p50 to p999: a p99 below
 * the p50 makes the p50 budget meaningless, and is most likely two values
 * swapped. Reported on the later key, against the largest earlier one.
 */
static void
config_check_budget(struct config_loader *ld, size_t ri)
{
    static const char *const names[] = {"p50", "p90", "p95", "p99", "p999"};
    const struct config_budget *b = &ld->cfg->routes[ri].budget;
    const int64_t v[] = {b->p50_us, b->p90_us, b->p95_us, b->p99_us, b->p999_us};
    const struct config_key us = {.type = CONFIG_T_DURATION_US};
    yaml_node_t *budget =
        config_map_get(ld, config_map_get(ld, ld->route_nodes[ri], "analytics"), "budget");
    char path[CONFIG_PATH_MAX], other[32], got[32];
    size_t top = SIZE_MAX; /* the largest budget before i */

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (v[i] < 0) /* not given, or wrong and reported */
            continue;
        if (top == SIZE_MAX || v[i] >= v[top]) {
            top = i;
            continue;
        }
        snprintf(path, sizeof(path), "routes[%zu].analytics.budget.%s", ri, names[i]);
        config_error(ld, config_line(config_map_get(ld, budget, names[i])), path,
                     "must not be less than %s (%s), got %s", names[top],
                     config_schema_fmt(&us, (uint64_t)v[top], other, sizeof(other)),
                     config_schema_fmt(&us, (uint64_t)v[i], got, sizeof(got)));
    }
}

struct config_tls_report {
    struct config_loader *ld;
    yaml_node_t *tls; /* the tls mapping */
};

/* tls_ctx_new()'s errors, placed on the certificate's cert or key line. */
static void
config_on_tls_error(void *arg, size_t cert, const char *key, const char *msg)
{
    struct config_tls_report *rep = arg;
    struct config_loader *ld = rep->ld;
    yaml_node_t *certs = config_map_get(ld, rep->tls, "certificates");
    char path[CONFIG_PATH_MAX + 16], ipath[CONFIG_PATH_MAX];
    yaml_node_t *node;

    if (cert == SIZE_MAX) {
        node = config_map_get(ld, rep->tls, key);
        snprintf(path, sizeof(path), "tls.%s", key);
        config_error(ld, node != NULL ? config_line(node) : config_line(rep->tls), path, "%s", msg);
        return;
    }
    node = config_list_item(ld, certs, cert, "tls.certificates", ipath, sizeof(ipath));
    config_path_key(path, sizeof(path), ipath, key);
    node = node != NULL && node->type == YAML_MAPPING_NODE ? config_map_get(ld, node, key) : node;
    config_error(ld, node != NULL ? config_line(node) : ld->cfg->tls.certs[cert].line, path, "%s",
                 msg);
}

/*
 * tls: listeners need certificates, do not clash with the other listeners,
 * and the certificates load (the context is built here, so a config that
 * loads always has working certificates).
 */
static void
config_check_tls(struct config_loader *ld, yaml_node_t *root)
{
    struct config *cfg = ld->cfg;
    struct config_tls *t = &cfg->tls;
    yaml_node_t *tls = config_map_get(ld, root, "tls");
    yaml_node_t *listen = config_map_get(ld, tls, "listen");
    struct config_tls_report rep = {.ld = ld, .tls = tls};

    if (t->nlisten > 0 && t->ncerts == 0)
        config_error(ld, config_line(listen), "tls.certificates",
                     "required when tls.listen is given");
    if (cfg->admin_tls && cfg->admin.len != 0 && t->ncerts == 0)
        config_error(ld, config_line(config_map_get(ld, config_map_get(ld, root, "admin"), "tls")),
                     "admin.tls", "needs tls.certificates");
    for (size_t i = 0; i < t->nlisten; i++) {
        const struct config_addr *a = &t->listen[i];
        const struct config_addr *clash = NULL;
        for (size_t j = 0; j < cfg->nlisten && clash == NULL; j++)
            if (cfg->listen[j].len == a->len && memcmp(&cfg->listen[j].ss, &a->ss, a->len) == 0)
                clash = &cfg->listen[j];
        if (clash == NULL && cfg->admin.len == a->len &&
            memcmp(&cfg->admin.ss, &a->ss, a->len) == 0)
            clash = &cfg->admin;
        if (a->len != 0 && clash != NULL)
            config_error(ld, config_line(listen), "tls.listen",
                         "\"%s\" is also a plain listener (\"%s\")", a->text, clash->text);
    }
    for (size_t i = 0; i < t->ncerts; i++)
        if (t->certs[i].cert == NULL || t->certs[i].key == NULL)
            return; /* reported by the walk */
    if (t->ncerts > 0 && t->ciphers != NULL)
        t->ctx = tls_ctx_new(t, config_on_tls_error, &rep);
}

void
config_check_refs(struct config_loader *ld, yaml_node_t *root)
{
    struct config *cfg = ld->cfg;
    char path[CONFIG_PATH_MAX];
    yaml_node_t *admin;

    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct config_route *r = &cfg->routes[i];
        yaml_node_t *up = config_map_get(ld, ld->route_nodes[i], "upstream");
        yaml_node_t *name = config_map_get(ld, ld->route_nodes[i], "name");

        if (r->name != NULL) {
            for (size_t j = 0; j < i; j++) {
                if (cfg->routes[j].name != NULL && strcmp(cfg->routes[j].name, r->name) == 0) {
                    snprintf(path, sizeof(path), "routes[%zu].name", i);
                    config_error(ld, config_line(name), path, "duplicate route name \"%s\"",
                                 r->name);
                    break;
                }
            }
        }
        if (up != NULL && up->type == YAML_SCALAR_NODE && !config_is_null(up)) {
            const char *want = (const char *)up->data.scalar.value;
            for (size_t j = 0; j < cfg->nupstreams && r->upstream == NULL; j++) {
                if (strcmp(cfg->upstreams[j].name, want) == 0)
                    r->upstream = &cfg->upstreams[j];
            }
            if (r->upstream == NULL) {
                snprintf(path, sizeof(path), "routes[%zu].upstream", i);
                config_error(ld, config_line(up), path, "names an unknown upstream \"%s\"", want);
            }
        }
        config_check_cache_headers(ld, i);
        config_check_tiers(ld, i);
        config_check_budget(ld, i);
    }
    config_check_backoff(ld, root);
    config_check_window(ld, root);
    config_check_tls(ld, root);

    admin = config_map_get(ld, config_map_get(ld, root, "admin"), "listen");
    for (size_t i = 0; cfg->admin.len != 0 && i < cfg->nlisten; i++) {
        const struct config_addr *l = &cfg->listen[i];
        if (l->len == cfg->admin.len && memcmp(&l->ss, &cfg->admin.ss, l->len) == 0) {
            config_error(ld, config_line(admin), "admin.listen",
                         "same address as the traffic listener \"%s\"", l->text);
            break;
        }
    }
}

/*
 * Values that follow from others once every key is read, in a file or in
 * quick mode: the shared tiers are on when they have servers, a route
 * without tiers gets memory and every configured shared tier, and a
 * route's budget is set when any of its keys is given.
 */
void
config_settle(struct config_loader *ld)
{
    struct config *cfg = ld->cfg;

    cfg->redis.enabled = cfg->redis.addr.len != 0;
    cfg->memcached.enabled = cfg->memcached.nservers != 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct config_route_cache *c = &cfg->routes[i].cache;
        struct config_budget *b = &cfg->routes[i].budget;

        b->set = b->p50_us >= 0 || b->p90_us >= 0 || b->p95_us >= 0 || b->p99_us >= 0 ||
                 b->p999_us >= 0 || b->hit_ratio >= 0.0;
        if (c->ntiers != 0)
            continue;
        c->tiers[c->ntiers++] = CONFIG_TIER_MEMORY;
        if (cfg->redis.enabled)
            c->tiers[c->ntiers++] = CONFIG_TIER_REDIS;
        if (cfg->memcached.enabled)
            c->tiers[c->ntiers++] = CONFIG_TIER_MEMCACHED;
    }
}
