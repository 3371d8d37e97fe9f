/*
 * config: the running configuration, loaded from YAML (libyaml) or built
 * from the command line in quick mode.
 *
 * Keys are described by tables (key, type, default, bounds, help), kept in
 * config_schema.c and interpreted by config.c; the file is parsed, then
 * validated in one pass, and every error is reported as
 * "file:line: key: what is wrong", all of them, before giving up.
 *
 * A struct config is immutable once loaded and refcounted: the main thread
 * holds one reference to the current config, every worker generation holds
 * one, and a reload builds a new config and swaps it in. config_ref() and
 * config_unref() may be called from any thread.
 */
#ifndef TAILCACHE_CONFIG_H
#define TAILCACHE_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "http_parser.h"

struct rule_pattern;
struct tls_ctx;

enum config_log_level {
    CONFIG_LOG_ERROR,
    CONFIG_LOG_WARN,
    CONFIG_LOG_INFO,
    CONFIG_LOG_DEBUG,
};

/* A socket address given as "HOST:PORT" or "[V6]:PORT", resolved at load. */
struct config_addr {
    char *text; /* as written, e.g. "127.0.0.1:8080" */
    struct sockaddr_storage ss;
    socklen_t len;
};

struct tls_client;

/*
 * upstreams.NAME.tls: TLS to the pool's servers. enabled is true when the
 * tls mapping is given and does not say "enabled: false". server_name is
 * NULL only when verify is off and no name could be defaulted (an IP
 * server): then no SNI is sent and no name checked. client is built at
 * load (tls_client.h) when enabled, and freed with the config.
 */
struct config_upstream_tls {
    bool enabled;
    char *server_name; /* SNI and the name the certificate must match */
    bool verify;       /* check the chain (and server_name) */
    char *ca_file;     /* PEM bundle; NULL: the system store */
    char *cert;        /* client certificate (mTLS); with key, or neither */
    char *key;
    char *min_version; /* "1.2" or "1.3" */
    struct tls_client *client;
};

struct config_upstream {
    char *name;
    int line; /* where it is defined, for messages */
    struct config_addr *servers;
    size_t nservers;
    unsigned keepalive;            /* idle connections kept per worker and server */
    unsigned keepalive_timeout_ms; /* an idle pooled connection is closed after this */
    unsigned connect_timeout_ms;
    unsigned first_byte_timeout_ms; /* request sent -> first response byte */
    unsigned idle_timeout_ms;       /* between two reads or writes once started */
    unsigned max_fails;             /* consecutive failures before the cooldown */
    unsigned fail_timeout_ms;       /* cooldown a failing server sits out */
    struct config_upstream_tls tls;
};

enum config_path_kind {
    CONFIG_PATH_PREFIX,
    CONFIG_PATH_EXACT,
    CONFIG_PATH_REGEX,
};

/* How a caching route builds its cache keys (cache_key.h). */
struct config_cache_key {
    bool sort_query;
    bool ignore_query;
    char **drop_query; /* query parameter names removed from the key, exact */
    size_t ndrop_query;
    char **headers; /* request header names added to the key: tokens, as written */
    size_t nheaders;
    char **cookies; /* cookie names added to the key: tokens, case-sensitive */
    size_t ncookies;
};

/* The cache layers a route looks up, in order. */
enum config_tier {
    CONFIG_TIER_MEMORY,
    CONFIG_TIER_REDIS,
    CONFIG_TIER_MEMCACHED,
};
#define CONFIG_TIERS_MAX 3

/* A rule applied when a matching write succeeds (routes[].cache.invalidate). */
struct config_inval_rule {
    int line;
    uint32_t methods;           /* bit (1u << enum http_method); default POST, PUT, PATCH, DELETE */
    struct rule_pattern *match; /* the request path pattern (rule.h) */
    char **purge;               /* path templates purged (same host and scheme) */
    size_t npurge;
    char **tags; /* tag templates purged */
    size_t ntags;
};

/*
 * A route's cache settings (routes[].cache). Durations in whole seconds
 * (milliseconds in the file are rounded down), 0..1 year. Header names are
 * kept as written: compare them case-insensitively. No name is both in
 * key.headers and strip_headers (the loader rejects it).
 */
struct config_route_cache {
    bool enabled;
    int64_t ttl;       /* used when the origin gives no freshness; -1: none */
    int64_t force_ttl; /* overrides the origin's freshness; -1: off */
    int64_t stale_while_revalidate;
    int64_t stale_if_error;
    int64_t heuristic_max; /* cap on heuristic freshness (10% of Last-Modified age) */
    uint64_t statuses[16]; /* bitmap of cacheable statuses, bit s for status s < 1024 */
    bool set_cookie;       /* store responses carrying Set-Cookie (default: never) */
    bool honour_client_no_cache;
    bool server_timing; /* add Server-Timing to responses */
    struct config_cache_key key;
    char **strip_headers; /* request headers never passed upstream (poisoning); tokens */
    size_t nstrip_headers;
    enum config_tier tiers[CONFIG_TIERS_MAX]; /* memory first; default: every configured tier */
    size_t ntiers;
    struct config_inval_rule *rules;
    size_t nrules;
};

/*
 * A route's latency and hit-ratio budget (routes[].analytics.budget),
 * judged by analytics.c over the recent window. A key not given is -1
 * (latencies, microseconds) or -1.0 (hit_ratio, 0..1): no budget on it.
 * set: at least one key is given (the loader refuses an empty budget).
 * The latencies given never decrease from p50 to p999.
 */
struct config_budget {
    int64_t p50_us, p90_us, p95_us, p99_us, p999_us;
    double hit_ratio; /* a floor: the route's hits / requests */
    bool set;
};

enum config_eviction {
    CONFIG_EVICT_S3FIFO,
    CONFIG_EVICT_LRU,
};

struct config_route {
    char *name;
    int line;
    char **hosts; /* "example.com", "*.example.com" or "*"; none = any host */
    size_t nhosts;
    enum config_path_kind path_kind;
    char *path;       /* the prefix, exact path or regex source */
    void *path_re;    /* pcre2_code * (JIT-compiled) when path_kind is REGEX */
    uint32_t methods; /* bit (1u << enum http_method); 0 = any method */
    struct config_upstream *upstream;
    char *host_rewrite; /* Host sent upstream; NULL keeps the client's */
    struct config_route_cache cache;
    /* routes[].analytics: */
    unsigned analytics_warmup_ms; /* cold window after start or a flush; 0..1d */
    double sample_bypass;         /* 0..1: share of cacheable requests sent past the cache */
    struct config_budget budget;
};

/* cache.redis: the Redis tier and the invalidation bus. */
struct config_redis {
    bool enabled; /* cache.redis.address is set */
    struct config_addr addr;
    char *password; /* NULL: no AUTH */
    unsigned db;    /* 0: no SELECT */
    char *prefix;   /* prepended to every key; default "tc:" */
    unsigned connect_timeout_ms;
    unsigned timeout_ms;                     /* a lookup or write waits at most this */
    unsigned backoff_min_ms, backoff_max_ms; /* reconnect delays */
    size_t max_object_size;                  /* larger objects skip the tier */
    unsigned breaker_failures;               /* consecutive failures that open the breaker */
    unsigned breaker_cooldown_ms;            /* open this long, then one probe */
};

/* cache.memcached: the memcached tier. */
struct config_memcached {
    bool enabled; /* cache.memcached.servers is not empty */
    struct config_addr *servers;
    size_t nservers;
    char *prefix; /* default "tc:" */
    unsigned connect_timeout_ms;
    unsigned timeout_ms;
    unsigned threads;  /* blocking client threads */
    unsigned queue;    /* operations waiting at most */
    unsigned retry_ms; /* a failed server is skipped this long */
    size_t max_object_size;
    unsigned breaker_failures;
    unsigned breaker_cooldown_ms;
};

/* An address block, for invalidation.purge_allow. */
struct config_cidr {
    char *text;
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix_len;
};

/* invalidation: the PURGE method, bans and the broadcast channel. */
struct config_invalidation {
    char *channel;                   /* Redis pub/sub channel; default "tailcache:invalidate" */
    bool broadcast;                  /* publish and subscribe (needs cache.redis); default true */
    char *node_id;                   /* default "<hostname>:<pid>" */
    struct config_cidr *purge_allow; /* PURGE accepted from these; default loopback */
    size_t npurge_allow;
    char *purge_token; /* or with "X-Purge-Token: <token>"; NULL: none */
    unsigned max_bans; /* bans remembered (ban.h); default 1000 */
};

enum config_tls_version {
    CONFIG_TLS_1_2,
    CONFIG_TLS_1_3,
};

/* tls.certificates[]: a certificate chain and its key, PEM files. */
struct config_tls_cert {
    int line;
    char *cert;
    char *key;
};

/*
 * tls: TLS termination on the tls.listen listeners. The certificates are
 * loaded into ctx (tls.h) when the config is loaded: a file that does not
 * load is a config error, so a running config always has working ones.
 */
struct config_tls {
    struct config_addr *listen;
    size_t nlisten;
    struct config_tls_cert *certs; /* the first is the default */
    size_t ncerts;
    enum config_tls_version min_version;
    char *ciphers;      /* TLS 1.2 cipher list */
    char *ciphersuites; /* TLS 1.3; NULL: OpenSSL's default */
    bool session_tickets;
    unsigned ticket_rotation_ms;
    unsigned handshake_timeout_ms;
    struct tls_ctx *ctx; /* NULL when no certificates are given; owned (tls_ctx_free) */
};

struct config {
    atomic_int refs;
    char *file; /* NULL in quick mode */

    unsigned workers; /* resolved: never 0 after loading */
    struct config_addr *listen;
    size_t nlisten;
    struct config_tls tls;
    struct config_addr admin; /* admin.len == 0 when disabled */
    bool admin_tls;           /* admin.tls: over TLS, with tls.ctx */
    /* Quick mode chose admin itself (no admin argument): failing to bind it
     * is not fatal. Never true when admin.len == 0, never in a file. */
    bool admin_defaulted;

    struct http_limits limits;
    size_t max_body_chunk_line; /* chunk-size line / trailer bytes limit */

    unsigned client_header_timeout_ms; /* to receive a whole request head */
    unsigned client_keepalive_timeout_ms;
    unsigned client_idle_timeout_ms; /* between reads of a body or writes */
    unsigned drain_timeout_ms;       /* SIGTERM: longest wait for in-flight requests */

    /* cache: */
    size_t cache_memory_size; /* L1 byte budget */
    unsigned cache_shards;    /* power of two */
    enum config_eviction cache_eviction;
    size_t cache_max_object;      /* larger responses are not stored */
    unsigned coalesce_timeout_ms; /* longest a request waits on another's fetch */
    unsigned hit_for_miss_ms;     /* how long "not storable" sends requests straight on */

    struct config_redis redis;
    struct config_memcached memcached;
    struct config_invalidation invalidation;

    bool analytics_enabled;       /* false: no per-route analytics recorded */
    unsigned analytics_window_ms; /* analytics.window: the recent window */
    unsigned analytics_slot_ms;   /* analytics.slot: its step (window / slot <= 60) */

    enum config_log_level log_level;
    char *error_log;  /* path, or "stderr" */
    char *access_log; /* path, "stderr", or "off" */

    struct config_upstream *upstreams;
    size_t nupstreams;
    struct config_route *routes;
    size_t nroutes;
};

/*
 * Loads and validates a YAML file. Returns a new config (one reference) or
 * NULL; on NULL *err is a malloc'd text of every error, one per line as
 * "file:line: key: what is wrong", that the caller frees (err may be NULL).
 * On success *err is NULL. Blocks (file I/O, getaddrinfo): main thread only.
 */
struct config *config_load(const char *path, char **err);

/*
 * Builds a config for quick mode: one upstream named "upstream" with the
 * URL's server (http://HOST[:PORT], port 80 by default) and one route for
 * every host and path, named after that server: HOST:PORT as the URL
 * writes it, ":80" added when it gives no port ("127.0.0.1:8081",
 * "localhost:80", "[::1]:9000"). It listens on listen (NULL for
 * 127.0.0.1:8080); the admin listener is on admin, "off" disables it, and
 * NULL is admin.listen's default, 127.0.0.1:9090, with admin_defaulted
 * set, unless the traffic listener is on that port (then no admin
 * listener). Every other key is at its default, except that the route's
 * host_rewrite is the URL's HOST[:PORT] as written, so a name-based origin
 * sees its own name, and the route caches (cache.enabled).
 * redis (HOST:PORT) and memcached ("HOST:PORT[,HOST:PORT...]", at most 64)
 * configure those tiers, their other keys at their defaults, when not NULL;
 * the route's tiers are memory and those.
 * Returns a new config or NULL with *err set as for config_load(), its
 * lines without a file and line: "upstream: ...", "listen: ...", "admin: ...",
 * "redis: ...", "memcached: ...".
 */
struct config *config_quick(const char *upstream_url, const char *listen, const char *admin,
                            const char *redis, const char *memcached, char **err);

/* Takes a reference; returns cfg. */
struct config *config_ref(struct config *cfg);

/* Drops a reference and clears *cfgp; the last one frees. Accepts NULL. */
void config_unref(struct config **cfgp);

/* "error", "warn", "info", "debug". */
const char *config_log_level_name(enum config_log_level lvl);

/* Writes every key with its type, default and help text (tailcache --help-config).
 * Defined in config_schema.c, with the tables it prints. */
void config_print_reference(FILE *out);

#endif
