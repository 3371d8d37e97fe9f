/*
 * config_schema: the rows describing every key of tailcache.yaml, and the
 * reference printed from them (tailcache --help-config). See
 * config_schema.h for what a row holds and how config.c uses the tables.
 *
 * A row's help text is the one-line documentation of its key: the
 * reference prints it, and man/tailcache.yaml.5 and conf/tailcache.yaml
 * say the same at more length. Keep the three in step.
 */
#include <stdio.h>
#include <string.h>

#include "config_schema.h"

/*
 * offsetof() that fails to compile unless the field has the type the row's
 * setter writes: a table row cannot point a size setter at an unsigned.
 */
#define CONFIG_FIELD(st, field, type) _Generic(((st *)0)->field, type : offsetof(st, field))
#define CONFIG_C(field, type) CONFIG_FIELD(struct config, field, type)
#define CONFIG_U(field, type) CONFIG_FIELD(struct config_upstream, field, type)
#define CONFIG_R(field, type) CONFIG_FIELD(struct config_route, field, type)
#define CONFIG_I(field, type) CONFIG_FIELD(struct config_inval_rule, field, type)

#define CONFIG_SECOND_MS UINT64_C(1000)
#define CONFIG_HOUR_MS (3600 * CONFIG_SECOND_MS)
#define CONFIG_MS_US UINT64_C(1000)
#define CONFIG_DAY_S UINT64_C(86400)
#define CONFIG_YEAR_S (365 * CONFIG_DAY_S)

/* A timeout: 1ms..24h. */
#define CONFIG_DURATION_ROW(key, st, field, dflt, text)                                            \
    {                                                                                              \
        .name = key, .type = CONFIG_T_DURATION, .off = CONFIG_FIELD(st, field, unsigned),          \
        .def = dflt, .min = 1, .max = 24 * CONFIG_HOUR_MS, .help = text                            \
    }

/* A route's cache duration, in seconds: 0..1y, "off" with CONFIG_F_OFF. */
#define CONFIG_SECONDS_ROW(key, field, dflt, fl, text)                                             \
    {                                                                                              \
        .name = key, .type = CONFIG_T_SECONDS, .off = CONFIG_R(field, int64_t), .def = dflt,       \
        .min = 0, .max = CONFIG_YEAR_S, .flags = fl, .help = text                                  \
    }

/* A latency budget of routes[].analytics.budget, in microseconds: 1ms..1h,
 * -1 when not given. */
#define CONFIG_BUDGET_ROW(key, field, text)                                                        \
    {                                                                                              \
        .name = key, .type = CONFIG_T_DURATION_US, .off = CONFIG_R(budget.field, int64_t),         \
        .min = CONFIG_MS_US, .max = CONFIG_HOUR_MS * CONFIG_MS_US, .def_doc = "none", .help = text \
    }

_Static_assert(sizeof(((struct config_route *)0)->cache.statuses) ==
                   CONFIG_STATUS_WORDS * sizeof(uint64_t),
               "CONFIG_T_STATUSES writes CONFIG_STATUS_WORDS words");

const char *const config_schema_log_levels[] = {
    [CONFIG_LOG_ERROR] = "error",
    [CONFIG_LOG_WARN] = "warn",
    [CONFIG_LOG_INFO] = "info",
    [CONFIG_LOG_DEBUG] = "debug",
    NULL,
};

const char *const config_schema_tiers[] = {
    [CONFIG_TIER_MEMORY] = "memory",
    [CONFIG_TIER_REDIS] = "redis",
    [CONFIG_TIER_MEMCACHED] = "memcached",
    NULL,
};

static const char *const config_schema_evictions[] = {
    [CONFIG_EVICT_S3FIFO] = "s3fifo",
    [CONFIG_EVICT_LRU] = "lru",
    NULL,
};

static const char *const config_schema_tls_versions[] = {
    [CONFIG_TLS_1_2] = "1.2",
    [CONFIG_TLS_1_3] = "1.3",
    NULL,
};

const struct config_schema_method config_schema_methods[] = {
    {"GET", HTTP_M_GET},         {"HEAD", HTTP_M_HEAD},     {"POST", HTTP_M_POST},
    {"PUT", HTTP_M_PUT},         {"DELETE", HTTP_M_DELETE}, {"PATCH", HTTP_M_PATCH},
    {"OPTIONS", HTTP_M_OPTIONS}, {"TRACE", HTTP_M_TRACE},   {"PURGE", HTTP_M_PURGE},
    {NULL, HTTP_M_OTHER},
};

static const struct config_key config_admin_keys[] = {
    {.name = "listen",
     .type = CONFIG_T_ADDR,
     .off = CONFIG_C(admin, struct config_addr),
     .def = "127.0.0.1:9090",
     .flags = CONFIG_F_OFF,
     .help = "Admin listener (/healthz, /stats, /metrics, /dashboard), apart "
             "from traffic: HOST:PORT, or \"off\" to disable it."},
    {.name = "tls",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_C(admin_tls, bool),
     .def = "false",
     .help = "Serve the admin listener over TLS, with tls.certificates (required then) and "
             "tls's versions and ciphers; a reload serves renewed certificates."},
    {0},
};

static const struct config_key config_tls_cert_keys[] = {
    {.name = "cert",
     .type = CONFIG_T_STRING,
     .off = CONFIG_FIELD(struct config_tls_cert, cert, char *),
     .flags = CONFIG_F_REQUIRED,
     .help = "PEM file: the certificate, then its intermediates."},
    {.name = "key",
     .type = CONFIG_T_STRING,
     .off = CONFIG_FIELD(struct config_tls_cert, key, char *),
     .flags = CONFIG_F_REQUIRED,
     .help = "PEM file: the certificate's private key."},
    {0},
};

static const struct config_key config_tls_keys[] = {
    {.name = "listen",
     .type = CONFIG_T_ADDR_LIST,
     .off = CONFIG_C(tls.listen, struct config_addr *),
     .off_n = CONFIG_C(tls.nlisten, size_t),
     .flags = CONFIG_F_EMPTY,
     .def_doc = "none",
     .help = "TLS listeners, served by the same workers and routes as listen: one HOST:PORT "
             "or a list of them."},
    {.name = "certificates",
     .type = CONFIG_T_CERTS,
     .off = CONFIG_C(tls.certs, struct config_tls_cert *),
     .off_n = CONFIG_C(tls.ncerts, size_t),
     .sub = config_tls_cert_keys,
     .def_doc = "none",
     .help = "Certificates, each {cert: FILE, key: FILE}, chosen by the client's SNI name "
             "against their subjectAltName DNS names (or CN), exact before \"*.\" wildcards; "
             "the first serves clients without SNI or with an unknown name."},
    {.name = "min_version",
     .type = CONFIG_T_TLS_VERSION,
     .off = CONFIG_C(tls.min_version, enum config_tls_version),
     .def = "1.2",
     .names = config_schema_tls_versions,
     .help = "Oldest TLS version accepted: 1.2 or 1.3."},
    {.name = "ciphers",
     .type = CONFIG_T_STRING,
     .off = CONFIG_C(tls.ciphers, char *),
     .def = "ECDHE+AESGCM:ECDHE+CHACHA20",
     .help = "TLS 1.2 cipher list (OpenSSL syntax); the default is forward-secret AEAD only."},
    {.name = "ciphersuites",
     .type = CONFIG_T_STRING,
     .off = CONFIG_C(tls.ciphersuites, char *),
     .def_doc = "OpenSSL's default",
     .help = "TLS 1.3 cipher suites (OpenSSL syntax, \"TLS_AES_128_GCM_SHA256:...\")."},
    {.name = "session_tickets",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_C(tls.session_tickets, bool),
     .def = "true",
     .help = "Resume sessions with tickets; false turns resumption off."},
    {.name = "ticket_rotation",
     .type = CONFIG_T_DURATION,
     .off = CONFIG_C(tls.ticket_rotation_ms, unsigned),
     .def = "1h",
     .min = CONFIG_SECOND_MS,
     .max = 24 * CONFIG_HOUR_MS,
     .help = "A new session ticket key every period; tickets under the previous key are "
             "accepted (and renewed) one more period."},
    CONFIG_DURATION_ROW("handshake_timeout", struct config, tls.handshake_timeout_ms, "10s",
                        "A TLS client has this long to complete its handshake."),
    {0},
};

static const struct config_key config_limits_keys[] = {
    {.name = "request_line",
     .type = CONFIG_T_SIZE,
     .off = CONFIG_C(limits.max_request_line, size_t),
     .def = "8k",
     .min = 256,
     .max = 1u << 20,
     .help = "Longest request line accepted; a longer one is answered 414."},
    {.name = "header_bytes",
     .type = CONFIG_T_SIZE,
     .off = CONFIG_C(limits.max_header_bytes, size_t),
     .def = "32k",
     .min = 1u << 10,
     .max = 1u << 20,
     .help = "Largest request head, request line included; a larger one is answered 431."},
    {.name = "header_count",
     .type = CONFIG_T_UINT,
     .off = CONFIG_C(limits.max_headers, unsigned),
     .def = "100",
     .min = 1,
     .max = HTTP_HEADERS_CAP,
     .help = "Most header fields in a request; more are answered 431."},
    {.name = "chunk_line",
     .type = CONFIG_T_SIZE,
     .off = CONFIG_C(max_body_chunk_line, size_t),
     .def = "4k",
     .min = 64,
     .max = 64u << 10,
     .help = "Longest chunk-size line, and largest trailer section, of a chunked body."},
    {0},
};

static const struct config_key config_timeouts_keys[] = {
    CONFIG_DURATION_ROW("client_header", struct config, client_header_timeout_ms, "10s",
                        "Time a client has to send a complete request head."),
    CONFIG_DURATION_ROW("client_keepalive", struct config, client_keepalive_timeout_ms, "60s",
                        "An idle keep-alive client connection is closed after this."),
    CONFIG_DURATION_ROW("client_idle", struct config, client_idle_timeout_ms, "60s",
                        "Longest wait between reads of a request body or writes to a slow "
                        "client."),
    CONFIG_DURATION_ROW("drain", struct config, drain_timeout_ms, "30s",
                        "On SIGTERM or SIGINT, longest wait for in-flight requests to finish."),
    {0},
};

static const struct config_key config_log_keys[] = {
    {.name = "level",
     .type = CONFIG_T_LOG_LEVEL,
     .off = CONFIG_C(log_level, enum config_log_level),
     .def = "info",
     .names = config_schema_log_levels,
     .help = "Least severe message written to the error log: error, warn, info or debug."},
    {.name = "error",
     .type = CONFIG_T_STRING,
     .off = CONFIG_C(error_log, char *),
     .def = "stderr",
     .help = "Error log: a file path, or \"stderr\"."},
    {.name = "access",
     .type = CONFIG_T_STRING,
     .off = CONFIG_C(access_log, char *),
     .def = "stderr",
     .help = "Access log: a file path, \"stderr\", or \"off\"."},
    {0},
};

static const struct config_key config_cache_memory_keys[] = {
    {.name = "size",
     .type = CONFIG_T_SIZE,
     .off = CONFIG_C(cache_memory_size, size_t),
     .def = "256m",
     .min = UINT64_C(1) << 20,
     .max = UINT64_C(1) << 40,
     .help = "Bytes of responses the memory cache holds, all workers together; beyond it, "
             "entries are evicted."},
    {.name = "shards",
     .type = CONFIG_T_UINT,
     .off = CONFIG_C(cache_shards, unsigned),
     .def = "16",
     .min = 1,
     .max = 1024,
     .flags = CONFIG_F_POW2,
     .help = "The memory cache is split by key hash into this many shards, each with its own "
             "lock and an equal share of size; a response larger than one share is not "
             "stored."},
    {.name = "eviction",
     .type = CONFIG_T_EVICTION,
     .off = CONFIG_C(cache_eviction, enum config_eviction),
     .def = "s3fifo",
     .names = config_schema_evictions,
     .help = "What a full shard evicts: s3fifo (S3-FIFO: entries not asked for again soon "
             "after they are stored go first, so one-off requests and scans do not flush the "
             "working set) or lru (the least recently used)."},
    {.name = "max_object_size",
     .type = CONFIG_T_SIZE,
     .off = CONFIG_C(cache_max_object, size_t),
     .def = "16m",
     .min = UINT64_C(1) << 10,
     .max = UINT64_C(4) << 30,
     .help = "Largest response stored (never more than size / shards); a larger one is "
             "passed to the client, not stored."},
    {0},
};

static const struct config_key config_cache_redis_keys[] = {
    {.name = "address",
     .type = CONFIG_T_ADDR,
     .off = CONFIG_C(redis.addr, struct config_addr),
     .help = "The Redis server: HOST:PORT or [V6]:PORT, a name resolved when the "
             "configuration is loaded. Setting it turns the Redis tier on (and the "
             "invalidation broadcast, which uses it)."},
    {.name = "password",
     .type = CONFIG_T_STRING,
     .off = CONFIG_C(redis.password, char *),
     .flags = CONFIG_F_SECRET,
     .help = "Sent with AUTH on every connection; absent: no AUTH."},
    {.name = "db",
     .type = CONFIG_T_UINT,
     .off = CONFIG_C(redis.db, unsigned),
     .def = "0",
     .min = 0,
     .max = 15,
     .help = "Database chosen with SELECT on every connection; 0 sends no SELECT."},
    {.name = "prefix",
     .type = CONFIG_T_WORD,
     .off = CONFIG_C(redis.prefix, char *),
     .def = "tc:",
     .min = 1,
     .max = 64,
     .help = "Put before every key tailcache reads or writes, so that several caches can "
             "share one Redis: 1 to 64 visible ASCII characters."},
    CONFIG_DURATION_ROW("connect_timeout", struct config, redis.connect_timeout_ms, "200ms",
                        "Longest wait for a connection to Redis, AUTH and SELECT included."),
    CONFIG_DURATION_ROW("timeout", struct config, redis.timeout_ms, "50ms",
                        "Longest wait for the answer to a lookup or a write; past it the "
                        "request goes on without the tier and the connection is made again."),
    CONFIG_DURATION_ROW("backoff_min", struct config, redis.backoff_min_ms, "100ms",
                        "First wait before connecting again after a failure; it doubles on "
                        "each failure up to backoff_max."),
    CONFIG_DURATION_ROW("backoff_max", struct config, redis.backoff_max_ms, "5s",
                        "Longest wait between two connection attempts; at least backoff_min."),
    {.name = "max_object_size",
     .type = CONFIG_T_SIZE,
     .off = CONFIG_C(redis.max_object_size, size_t),
     .def = "8m",
     .min = UINT64_C(1) << 10,
     .max = UINT64_C(512) << 20,
     .help = "Largest stored response (head and body) written to Redis; a larger one stays "
             "in memory only."},
    {.name = "breaker_failures",
     .type = CONFIG_T_UINT,
     .off = CONFIG_C(redis.breaker_failures, unsigned),
     .def = "3",
     .min = 1,
     .max = 1000,
     .help = "Consecutive failures (errors, timeouts) after which the tier is skipped for "
             "breaker_cooldown."},
    CONFIG_DURATION_ROW("breaker_cooldown", struct config, redis.breaker_cooldown_ms, "1s",
                        "How long the tier is skipped once the breaker opens; then one "
                        "request tries it again."),
    {0},
};

static const struct config_key config_cache_memcached_keys[] = {
    {.name = "servers",
     .type = CONFIG_T_ADDR_LIST,
     .off = CONFIG_C(memcached.servers, struct config_addr *),
     .off_n = CONFIG_C(memcached.nservers, size_t),
     .def = "[]",
     .max_items = CONFIG_MAX_MEMCACHED_SERVERS,
     .help = "The memcached servers, keys spread over them by consistent hashing: one "
             "HOST:PORT or [V6]:PORT, or a list of up to 64. Listing any turns the memcached "
             "tier on."},
    {.name = "prefix",
     .type = CONFIG_T_WORD,
     .off = CONFIG_C(memcached.prefix, char *),
     .def = "tc:",
     .min = 1,
     .max = 64,
     .help = "Put before every key tailcache reads or writes: 1 to 64 visible ASCII "
             "characters (memcached keys have no spaces or control characters)."},
    CONFIG_DURATION_ROW("connect_timeout", struct config, memcached.connect_timeout_ms, "200ms",
                        "Longest wait for a connection to a server."),
    CONFIG_DURATION_ROW("timeout", struct config, memcached.timeout_ms, "50ms",
                        "Longest an operation takes, its wait in the queue included; past it "
                        "the request goes on without the tier."),
    {.name = "threads",
     .type = CONFIG_T_UINT,
     .off = CONFIG_C(memcached.threads, unsigned),
     .def = "4",
     .min = 1,
     .max = 64,
     .help = "Threads that talk to memcached (libmemcached blocks, so it never runs on a "
             "worker's loop)."},
    {.name = "queue",
     .type = CONFIG_T_UINT,
     .off = CONFIG_C(memcached.queue, unsigned),
     .def = "1024",
     .min = 1,
     .max = 1000000,
     .help = "Operations waiting for a thread at most; when the queue is full, lookups miss "
             "and writes are skipped at once."},
    CONFIG_DURATION_ROW("retry", struct config, memcached.retry_ms, "1s",
                        "A server that failed is left out of the hashing this long."),
    {.name = "max_object_size",
     .type = CONFIG_T_SIZE,
     .off = CONFIG_C(memcached.max_object_size, size_t),
     .def = "1000k",
     .min = UINT64_C(1) << 10,
     .max = UINT64_C(128) << 20,
     .help = "Largest stored response (head and body) written to memcached; a larger one "
             "stays in memory only. memcached refuses items over its -I limit (1m by "
             "default, overhead included): raise both together."},
    {.name = "breaker_failures",
     .type = CONFIG_T_UINT,
     .off = CONFIG_C(memcached.breaker_failures, unsigned),
     .def = "3",
     .min = 1,
     .max = 1000,
     .help = "Consecutive failures (errors, timeouts, a full queue) after which the tier is "
             "skipped for breaker_cooldown."},
    CONFIG_DURATION_ROW("breaker_cooldown", struct config, memcached.breaker_cooldown_ms, "1s",
                        "How long the tier is skipped once the breaker opens; then one "
                        "request tries it again."),
    {0},
};

static const struct config_key config_cache_keys[] = {
    {.name = "memory",
     .type = CONFIG_T_SECTION,
     .sub = config_cache_memory_keys,
     .help = "The memory cache, shared by all workers."},
    {.name = "redis",
     .type = CONFIG_T_SECTION,
     .sub = config_cache_redis_keys,
     .help = "The Redis tier, shared by every tailcache using the same Redis; off unless "
             "address is set."},
    {.name = "memcached",
     .type = CONFIG_T_SECTION,
     .sub = config_cache_memcached_keys,
     .help = "The memcached tier; off unless servers are listed."},
    {.name = "coalesce_timeout",
     .type = CONFIG_T_DURATION,
     .off = CONFIG_C(coalesce_timeout_ms, unsigned),
     .def = "5s",
     .min = 1,
     .max = CONFIG_HOUR_MS,
     .help = "Longest a request waits on another request's fetch of the same response "
             "(concurrent misses share one origin request)."},
    {.name = "hit_for_miss",
     .type = CONFIG_T_DURATION,
     .off = CONFIG_C(hit_for_miss_ms, unsigned),
     .def = "10s",
     .min = 1,
     .max = CONFIG_HOUR_MS,
     .help = "Once a response turns out not storable, requests for it go to the origin "
             "without waiting on each other for this long."},
    {0},
};

static const struct config_key config_invalidation_keys[] = {
    {.name = "channel",
     .type = CONFIG_T_WORD,
     .off = CONFIG_C(invalidation.channel, char *),
     .def = "tailcache:invalidate",
     .min = 1,
     .max = 256,
     .help = "Redis pub/sub channel the nodes sharing a cache exchange invalidations on."},
    {.name = "broadcast",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_C(invalidation.broadcast, bool),
     .def = "true",
     .help = "Publish every invalidation on channel and apply the other nodes' ones; needs "
             "cache.redis (without it, invalidations stay local)."},
    {.name = "node_id",
     .type = CONFIG_T_NODE_ID,
     .off = CONFIG_C(invalidation.node_id, char *),
     .def = "auto",
     .min = 1,
     .max = 255,
     .help = "This node's name on the channel, so it skips its own messages: \"auto\" is "
             "\"<hostname>:<pid>\", or 1 to 255 visible ASCII characters."},
    {.name = "purge_allow",
     .type = CONFIG_T_CIDR_LIST,
     .off = CONFIG_C(invalidation.purge_allow, struct config_cidr *),
     .off_n = CONFIG_C(invalidation.npurge_allow, size_t),
     .def = "[127.0.0.1/32, ::1/128]",
     .flags = CONFIG_F_EMPTY,
     .help = "Clients whose PURGE requests are accepted: address blocks like 10.0.0.0/8 or "
             "fd00::/8, or single addresses; [] accepts none (see purge_token)."},
    {.name = "purge_token",
     .type = CONFIG_T_WORD,
     .off = CONFIG_C(invalidation.purge_token, char *),
     .min = 8,
     .max = 256,
     .flags = CONFIG_F_SECRET,
     .help = "A PURGE carrying \"X-Purge-Token: <token>\" is accepted from any address: 8 to "
             "256 visible ASCII characters. Absent: none."},
    {.name = "max_bans",
     .type = CONFIG_T_UINT,
     .off = CONFIG_C(invalidation.max_bans, unsigned),
     .def = "1000",
     .min = 1,
     .max = 100000,
     .help = "Bans remembered to filter objects read from the shared tiers; past it the "
             "oldest goes, and shared objects older than it count as banned."},
    {0},
};

static const struct config_key config_analytics_keys[] = {
    {.name = "enabled",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_C(analytics_enabled, bool),
     .def = "true",
     .help = "Record per-route latency and cache statistics (in /stats and /metrics) and judge "
             "the routes' budgets; false records none, to measure what recording costs."},
    {.name = "window",
     .type = CONFIG_T_DURATION,
     .off = CONFIG_C(analytics_window_ms, unsigned),
     .def = "60s",
     .min = 1000,
     .max = CONFIG_HOUR_MS,
     .help = "The recent window: quantiles and hit ratios \"recent\", and budgets, cover the "
             "last this long (at most 60 slots). Read at start-up."},
    {.name = "slot",
     .type = CONFIG_T_DURATION,
     .off = CONFIG_C(analytics_slot_ms, unsigned),
     .def = "5s",
     .min = 1000,
     .max = 60000,
     .help = "The step the recent window slides by (and how often budgets are judged); "
             "window / slot must be a whole number of at most 60. Read at start-up."},
    {0},
};

#define CONFIG_TLS(field, type) CONFIG_FIELD(struct config_upstream, tls.field, type)

/* upstreams.NAME.tls: the mapping's presence turns TLS on; the rules that
 * span keys (cert with key, server_name for IP servers) are in config.c. */
static const struct config_key config_upstream_tls_keys[] = {
    {.name = "enabled",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_TLS(enabled, bool),
     .def = "true",
     .help = "TLS to this pool's servers; giving the tls mapping turns it on, false turns it "
             "off and keeps the other keys."},
    {.name = "server_name",
     .type = CONFIG_T_WORD,
     .off = CONFIG_TLS(server_name, char *),
     .min = 1,
     .max = 253,
     .def_doc = "the host of the first server, when it is a name",
     .help = "Sent as SNI and checked against the server's certificate. Required to verify "
             "servers given by IP address."},
    {.name = "verify",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_TLS(verify, bool),
     .def = "true",
     .help = "Check the server's certificate chain and name; false accepts any certificate."},
    {.name = "ca_file",
     .type = CONFIG_T_STRING,
     .off = CONFIG_TLS(ca_file, char *),
     .def_doc = "the system's trusted certificates",
     .help = "PEM file of the certificate authorities trusted for this pool, read at load."},
    {.name = "cert",
     .type = CONFIG_T_STRING,
     .off = CONFIG_TLS(cert, char *),
     .help = "PEM client certificate (chain) presented to servers that ask for one (mTLS); "
             "needs key."},
    {.name = "key",
     .type = CONFIG_T_STRING,
     .off = CONFIG_TLS(key, char *),
     .help = "PEM private key of cert, unencrypted."},
    {.name = "min_version",
     .type = CONFIG_T_WORD,
     .off = CONFIG_TLS(min_version, char *),
     .def = "1.2",
     .min = 1,
     .max = 8,
     .help = "Oldest TLS version accepted: \"1.2\" or \"1.3\"."},
    {0},
};

const struct config_key config_schema_upstream[] = {
    {.name = "servers",
     .type = CONFIG_T_ADDR_LIST,
     .off = CONFIG_U(servers, struct config_addr *),
     .off_n = CONFIG_U(nservers, size_t),
     .flags = CONFIG_F_REQUIRED,
     .help = "Origin servers: one HOST:PORT or [V6]:PORT, or a list of them; names are "
             "resolved when the configuration is loaded."},
    {.name = "keepalive",
     .type = CONFIG_T_UINT,
     .off = CONFIG_U(keepalive, unsigned),
     .def = "32",
     .min = 0,
     .max = 10000,
     .help = "Idle connections kept per worker and server for reuse; 0 disables pooling."},
    CONFIG_DURATION_ROW("keepalive_timeout", struct config_upstream, keepalive_timeout_ms, "60s",
                        "An idle pooled connection is closed after this."),
    CONFIG_DURATION_ROW("connect_timeout", struct config_upstream, connect_timeout_ms, "2s",
                        "Longest wait for a TCP connection to a server."),
    CONFIG_DURATION_ROW("first_byte_timeout", struct config_upstream, first_byte_timeout_ms, "30s",
                        "Longest wait from sending a request to the first response byte."),
    CONFIG_DURATION_ROW("idle_timeout", struct config_upstream, idle_timeout_ms, "60s",
                        "Longest wait between two reads or writes once the response started."),
    {.name = "max_fails",
     .type = CONFIG_T_UINT,
     .off = CONFIG_U(max_fails, unsigned),
     .def = "3",
     .min = 1,
     .max = 1000,
     .help = "Consecutive failures after which a server sits out fail_timeout."},
    CONFIG_DURATION_ROW("fail_timeout", struct config_upstream, fail_timeout_ms, "10s",
                        "How long a failing server is skipped before it is tried again."),
    {.name = "tls",
     .type = CONFIG_T_SECTION,
     .sub = config_upstream_tls_keys,
     .help = "TLS to the servers (HTTPS upstreams); absent: plain HTTP."},
    {0},
};

static const struct config_key config_route_cache_key_keys[] = {
    {.name = "sort_query",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_R(cache.key.sort_query, bool),
     .def = "false",
     .help = "Sort the query parameters in the key, so \"?a=1&b=2\" and \"?b=2&a=1\" share "
             "an entry."},
    {.name = "ignore_query",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_R(cache.key.ignore_query, bool),
     .def = "false",
     .help = "Leave the query out of the key: every query of a path shares one entry."},
    {.name = "drop_query",
     .type = CONFIG_T_QUERY_NAMES,
     .off = CONFIG_R(cache.key.drop_query, char **),
     .off_n = CONFIG_R(cache.key.ndrop_query, size_t),
     .def = "[]",
     .flags = CONFIG_F_EMPTY,
     .help = "Query parameters left out of the key, by name as received (not percent-decoded), "
             "such as utm_source."},
    {.name = "headers",
     .type = CONFIG_T_HEADER_NAMES,
     .off = CONFIG_R(cache.key.headers, char **),
     .off_n = CONFIG_R(cache.key.nheaders, size_t),
     .def = "[]",
     .flags = CONFIG_F_EMPTY,
     .help = "Request header fields whose values are part of the key (names are "
             "case-insensitive)."},
    {.name = "cookies",
     .type = CONFIG_T_COOKIE_NAMES,
     .off = CONFIG_R(cache.key.cookies, char **),
     .off_n = CONFIG_R(cache.key.ncookies, size_t),
     .def = "[]",
     .flags = CONFIG_F_EMPTY,
     .help = "Cookies whose values are part of the key (names are case-sensitive)."},
    {0},
};

static const struct config_key config_route_inval_keys[] = {
    {.name = "methods",
     .type = CONFIG_T_METHODS,
     .off = CONFIG_I(methods, uint32_t),
     .def = "[POST, PUT, PATCH, DELETE]",
     .flags = CONFIG_F_WRITES,
     .help = "Request methods the rule applies to, one or a list; not GET, HEAD, OPTIONS or "
             "TRACE: rules apply to writes."},
    {.name = "match",
     .type = CONFIG_T_RULE_PATTERN,
     .off = CONFIG_I(match, struct rule_pattern *),
     .flags = CONFIG_F_REQUIRED,
     .help = "The request path the rule applies to, whole: literal text, {name} for one "
             "non-empty path segment (at most 8), and an optional final \"*\" for any rest, "
             "as in \"/api/products/{id}\" or \"/api/carts/{id}/*\"."},
    {.name = "purge",
     .type = CONFIG_T_PATH_TEMPLATES,
     .off = CONFIG_I(purge, char **),
     .off_n = CONFIG_I(npurge, size_t),
     .def = "[]",
     .flags = CONFIG_F_EMPTY,
     .help = "Paths purged (same host and scheme, every tier) when a matching request "
             "succeeds: templates starting with \"/\", where {name} is what the match "
             "captured. At least one of purge and tags."},
    {.name = "tags",
     .type = CONFIG_T_TAG_TEMPLATES,
     .off = CONFIG_I(tags, char **),
     .off_n = CONFIG_I(ntags, size_t),
     .def = "[]",
     .flags = CONFIG_F_EMPTY,
     .help = "Tags purged (responses whose Surrogate-Key or Cache-Tag names them) when a "
             "matching request succeeds: templates like \"product-{id}\"."},
    {0},
};

static const struct config_key config_route_cache_keys[] = {
    {.name = "enabled",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_R(cache.enabled, bool),
     .def = "false",
     .help = "Cache responses on this route (quick mode turns it on for its route)."},
    CONFIG_SECONDS_ROW("ttl", cache.ttl, "off", CONFIG_F_OFF,
                       "Freshness lifetime of a response whose origin says nothing about it (no "
                       "max-age, s-maxage or Expires), in place of a heuristic one; \"off\": "
                       "none."),
    CONFIG_SECONDS_ROW("force_ttl", cache.force_ttl, "off", CONFIG_F_OFF,
                       "Freshness lifetime of every stored response, replacing the origin's; it "
                       "never makes storable what is not (no-store, private, Set-Cookie, "
                       "Authorization). \"off\": the origin's."),
    CONFIG_SECONDS_ROW("stale_while_revalidate", cache.stale_while_revalidate, "0s", 0,
                       "How long past its freshness a response may still be served, while one "
                       "background request refreshes it; the origin's stale-while-revalidate "
                       "applies if longer."),
    CONFIG_SECONDS_ROW("stale_if_error", cache.stale_if_error, "0s", 0,
                       "How long past its freshness a response may still be served when the "
                       "origin fails (down, unreachable, timed out, or any 5xx status); the "
                       "origin's stale-if-error applies if longer."),
    CONFIG_SECONDS_ROW("heuristic_max", cache.heuristic_max, "1d", 0,
                       "Cap on the heuristic freshness (10% of the time since Last-Modified) of "
                       "a response without explicit freshness, when ttl is off; 0: no heuristic "
                       "freshness."),
    {.name = "statuses",
     .type = CONFIG_T_STATUSES,
     .off = CONFIG_R(cache.statuses, uint64_t *),
     .def = "[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]",
     .min = 100,
     .max = 999,
     .help = "Response statuses that may be stored; a response with another is not."},
    {.name = "set_cookie",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_R(cache.set_cookie, bool),
     .def = "false",
     .help = "Store responses carrying Set-Cookie; by default they are never stored."},
    {.name = "honour_client_no_cache",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_R(cache.honour_client_no_cache, bool),
     .def = "true",
     .help = "A request's Cache-Control: no-cache makes the cache validate with the origin "
             "before answering; false answers from the cache anyway."},
    {.name = "server_timing",
     .type = CONFIG_T_BOOL,
     .off = CONFIG_R(cache.server_timing, bool),
     .def = "false",
     .help = "Add a Server-Timing field to responses: time spent in the cache and waiting for "
             "the origin."},
    {.name = "key",
     .type = CONFIG_T_SECTION,
     .sub = config_route_cache_key_keys,
     .help = "The cache key: method, scheme, host, path and query, changed by these options."},
    {.name = "strip_headers",
     .type = CONFIG_T_HEADER_NAMES,
     .off = CONFIG_R(cache.strip_headers, char **),
     .off_n = CONFIG_R(cache.nstrip_headers, size_t),
     .def = "[X-Forwarded-Host, X-Forwarded-Server, X-Forwarded-Port, X-Forwarded-Scheme, "
            "X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override, X-HTTP-Method, "
            "X-Method-Override]",
     .flags = CONFIG_F_EMPTY,
     .help = "Request header fields never passed upstream on this route, so that a field "
             "outside the key cannot change what is stored for everyone (cache poisoning). A "
             "name may not also be in key.headers."},
    {.name = "tiers",
     .type = CONFIG_T_TIERS,
     .off = CONFIG_R(cache.tiers, enum config_tier *),
     .off_n = CONFIG_R(cache.ntiers, size_t),
     .names = config_schema_tiers,
     .def_doc = "memory, then redis and memcached when configured",
     .help = "The cache tiers this route looks up, in order: memory first (required), then "
             "redis and/or memcached, each configured under cache."},
    {.name = "invalidate",
     .type = CONFIG_T_RULES,
     .off = CONFIG_R(cache.rules, struct config_inval_rule *),
     .off_n = CONFIG_R(cache.nrules, size_t),
     .sub = config_route_inval_keys,
     .flags = CONFIG_F_EMPTY,
     .help = "Invalidation rules: when a request on this route with one of a rule's methods "
             "and a path its match accepts gets a 2xx or 3xx answer, the rule's paths and "
             "tags are purged."},
    {0},
};

static const struct config_key config_route_budget_keys[] = {
    CONFIG_BUDGET_ROW("p50", p50_us,
                      "Median latency budget: over the last minute, half the route's "
                      "requests take at most this long."),
    CONFIG_BUDGET_ROW("p90", p90_us, "90th percentile latency budget; see p50."),
    CONFIG_BUDGET_ROW("p95", p95_us, "95th percentile latency budget; see p50."),
    CONFIG_BUDGET_ROW("p99", p99_us, "99th percentile latency budget; see p50."),
    CONFIG_BUDGET_ROW("p999", p999_us, "99.9th percentile latency budget; see p50."),
    {.name = "hit_ratio",
     .type = CONFIG_T_RATIO,
     .off = CONFIG_R(budget.hit_ratio, double),
     .def_doc = "none",
     .help = "Least share of the route's requests answered from the cache over the last "
             "minute, 0 to 1."},
    {0},
};

static const struct config_key config_route_analytics_keys[] = {
    {.name = "warmup",
     .type = CONFIG_T_DURATION,
     .off = CONFIG_R(analytics_warmup_ms, unsigned),
     .def = "60s",
     .min = 0,
     .max = 24 * CONFIG_HOUR_MS,
     .help = "The cold window after start and after each flush of the route: its requests are "
             "counted apart from the warm ones that follow."},
    {.name = "sample_bypass",
     .type = CONFIG_T_RATIO,
     .off = CONFIG_R(sample_bypass, double),
     .def = "0",
     .help = "Share of the cacheable requests, 0 to 1, sent straight to the origin without "
             "touching the cache, to measure what the cache saves (Cache-Status \"fwd=bypass; "
             "detail=sample\", access log cache=bypass)."},
    {.name = "budget",
     .type = CONFIG_T_SECTION,
     .sub = config_route_budget_keys,
     .flags = CONFIG_F_NONEMPTY,
     .help = "Latency and hit-ratio targets, judged every 5 seconds over the last minute; a "
             "change of status (met, missed) is logged as a warning and shown in /stats and "
             "/metrics. Absent: none; given: at least one key."},
    {0},
};

const struct config_key config_schema_route[] = {
    {.name = "name",
     .type = CONFIG_T_NAME,
     .off = CONFIG_R(name, char *),
     .flags = CONFIG_F_REQUIRED,
     .help = "Unique route name (letters, digits, \"_\", \".\", \"-\"), used in statistics "
             "and logs."},
    {.name = "host",
     .type = CONFIG_T_HOSTS,
     .off = CONFIG_R(hosts, char **),
     .off_n = CONFIG_R(nhosts, size_t),
     .def = "*",
     .help = "Host patterns, one or a list: exact (\"api.example.com\"), wildcard "
             "(\"*.example.com\": one or more labels before the suffix) or \"*\" (any host, "
             "also none). Case-insensitive; the request's :port is ignored."},
    {.name = "prefix",
     .type = CONFIG_T_PATH,
     .off = CONFIG_R(path, char *),
     .def = "/",
     .flags = CONFIG_F_ONE_OF,
     .path_kind = CONFIG_PATH_PREFIX,
     .help = "Path prefix, compared byte for byte (\"/api\" also matches \"/apix\"; write "
             "\"/api/\" for a directory). Only one of prefix, exact, regex."},
    {.name = "exact",
     .type = CONFIG_T_PATH,
     .off = CONFIG_R(path, char *),
     .flags = CONFIG_F_ONE_OF,
     .path_kind = CONFIG_PATH_EXACT,
     .help = "Exact path (the query string is never part of the path)."},
    {.name = "regex",
     .type = CONFIG_T_PATH,
     .off = CONFIG_R(path, char *),
     .flags = CONFIG_F_ONE_OF,
     .path_kind = CONFIG_PATH_REGEX,
     .help = "PCRE2 regular expression searched in the path, JIT-compiled at load; anchor it "
             "with ^ and $ to match the whole path."},
    {.name = "methods",
     .type = CONFIG_T_METHODS,
     .off = CONFIG_R(methods, uint32_t),
     .help = "Methods served, one or a list of GET HEAD POST PUT DELETE PATCH OPTIONS TRACE "
             "PURGE; absent means any method."},
    {.name = "upstream",
     .type = CONFIG_T_UPSTREAM_REF,
     .flags = CONFIG_F_REQUIRED,
     .help = "Name of the upstream pool serving this route."},
    {.name = "host_rewrite",
     .type = CONFIG_T_HOST,
     .off = CONFIG_R(host_rewrite, char *),
     .help = "Host header sent upstream; absent keeps the client's."},
    {.name = "cache",
     .type = CONFIG_T_SECTION,
     .sub = config_route_cache_keys,
     .help = "Caching on this route; off when absent."},
    {.name = "analytics",
     .type = CONFIG_T_SECTION,
     .sub = config_route_analytics_keys,
     .help = "Latency analytics of this route: warm-up window, bypass sampling, budgets."},
    {0},
};

const struct config_key config_schema_top[] = {
    {.name = "workers",
     .type = CONFIG_T_WORKERS,
     .off = CONFIG_C(workers, unsigned),
     .def = "auto",
     .min = 1,
     .max = CONFIG_MAX_WORKERS,
     .help = "Worker threads, each with its own event loop, listening socket and upstream "
             "connections; \"auto\" is one per online CPU."},
    {.name = "listen",
     .type = CONFIG_T_ADDR_LIST,
     .off = CONFIG_C(listen, struct config_addr *),
     .off_n = CONFIG_C(nlisten, size_t),
     .def = "127.0.0.1:8080",
     .help = "Traffic listeners: one HOST:PORT or [V6]:PORT, or a list of them."},
    {.name = "tls",
     .type = CONFIG_T_SECTION,
     .sub = config_tls_keys,
     .help = "TLS termination: listeners, certificates, versions and session resumption."},
    {.name = "admin",
     .type = CONFIG_T_SECTION,
     .sub = config_admin_keys,
     .help = "The admin listener."},
    {.name = "limits",
     .type = CONFIG_T_SECTION,
     .sub = config_limits_keys,
     .help = "Limits on what a client may send."},
    {.name = "timeouts",
     .type = CONFIG_T_SECTION,
     .sub = config_timeouts_keys,
     .help = "Client-side timeouts."},
    {.name = "log", .type = CONFIG_T_SECTION, .sub = config_log_keys, .help = "Logging."},
    {.name = "cache",
     .type = CONFIG_T_SECTION,
     .sub = config_cache_keys,
     .help = "The HTTP cache, used by the routes that enable caching."},
    {.name = "invalidation",
     .type = CONFIG_T_SECTION,
     .sub = config_invalidation_keys,
     .help = "Purging: the PURGE method, bans and their broadcast to other nodes."},
    {.name = "analytics",
     .type = CONFIG_T_SECTION,
     .sub = config_analytics_keys,
     .help = "Per-route latency analytics (see routes[].analytics)."},
    {.name = "upstreams",
     .type = CONFIG_T_UPSTREAMS,
     .sub = config_schema_upstream,
     .flags = CONFIG_F_REQUIRED,
     .help = "Origin server pools, by name; routes refer to them."},
    {.name = "routes",
     .type = CONFIG_T_ROUTES,
     .sub = config_schema_route,
     .flags = CONFIG_F_REQUIRED,
     .help = "Routes, tried in order: the first whose host, path and methods match wins."},
    {0},
};

/* ------------------------------------------------------------------------ */
/* Words for messages and the reference                                      */

const char *
config_schema_join(const char *const *names, const char *sep, const char *last, char *buf,
                   size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; names[i] != NULL; i++) {
        const char *glue = i == 0 ? "" : names[i + 1] == NULL ? last : sep;
        int n = snprintf(buf + off, len - off, "%s%s", glue, names[i]);
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
    return buf;
}

const char *
config_schema_expected(const struct config_key *k, char *buf, size_t len)
{
    switch (k->type) {
    case CONFIG_T_SECTION:
        return "a mapping";
    case CONFIG_T_WORKERS:
        return "an integer or \"auto\"";
    case CONFIG_T_UINT:
        return "an integer";
    case CONFIG_T_SIZE:
        return "a size like \"8k\" or \"1m\"";
    case CONFIG_T_DURATION:
    case CONFIG_T_DURATION_US:
        return "a duration like \"2s\" or \"150ms\"";
    case CONFIG_T_RATIO:
        return "a ratio like \"0.01\" or \"1e-3\"";
    case CONFIG_T_SECONDS:
        return (k->flags & CONFIG_F_OFF) ? "a duration like \"60s\" or \"1d\", or \"off\""
                                         : "a duration like \"60s\" or \"1d\"";
    case CONFIG_T_BOOL:
        return "true or false";
    case CONFIG_T_LOG_LEVEL:
    case CONFIG_T_EVICTION:
    case CONFIG_T_TLS_VERSION:
        return config_schema_join(k->names, ", ", " or ", buf, len);
    case CONFIG_T_STRING:
        return "a string";
    case CONFIG_T_NAME:
        return "a name";
    case CONFIG_T_HOST:
        return "a host name";
    case CONFIG_T_ADDR:
        return "HOST:PORT";
    case CONFIG_T_ADDR_LIST:
        return "HOST:PORT or a list of them";
    case CONFIG_T_HOSTS:
        return "a host pattern or a list of them";
    case CONFIG_T_METHODS:
        return "a method or a list of them";
    case CONFIG_T_STATUSES:
        return "a status code or a list of them";
    case CONFIG_T_HEADER_NAMES:
        return "a header name or a list of them";
    case CONFIG_T_COOKIE_NAMES:
        return "a cookie name or a list of them";
    case CONFIG_T_QUERY_NAMES:
        return "a query parameter name or a list of them";
    case CONFIG_T_PATH:
        return k->path_kind == CONFIG_PATH_REGEX ? "a regex" : "a path";
    case CONFIG_T_UPSTREAM_REF:
        return "an upstream name";
    case CONFIG_T_UPSTREAMS:
        return "a mapping of upstream names";
    case CONFIG_T_ROUTES:
        return "a list of routes";
    case CONFIG_T_WORD:
        return "a string without spaces";
    case CONFIG_T_NODE_ID:
        return "\"auto\" or a string without spaces";
    case CONFIG_T_CIDR_LIST:
        return "an address block or a list of them";
    case CONFIG_T_TIERS:
        return "a tier name or a list of them";
    case CONFIG_T_RULES:
        return "a list of rules";
    case CONFIG_T_CERTS:
        return "a list of {cert, key}";
    case CONFIG_T_RULE_PATTERN:
        return "a path pattern";
    case CONFIG_T_PATH_TEMPLATES:
        return "a path template or a list of them";
    case CONFIG_T_TAG_TEMPLATES:
        return "a tag template or a list of them";
    }
    return "a value";
}

struct config_schema_unit {
    const char *name;
    uint64_t size;
};

/* Largest first; the last unit is 1, and 0 is written in it. */
static const struct config_schema_unit config_schema_size_units[] = {
    {"t", UINT64_C(1) << 40},
    {"g", UINT64_C(1) << 30},
    {"m", UINT64_C(1) << 20},
    {"k", UINT64_C(1) << 10},
    {"", 1},
};
static const struct config_schema_unit config_schema_ms_units[] = {
    {"h", CONFIG_HOUR_MS},
    {"m", 60 * CONFIG_SECOND_MS},
    {"s", CONFIG_SECOND_MS},
    {"ms", 1},
};
static const struct config_schema_unit config_schema_us_units[] = {
    {"h", CONFIG_HOUR_MS *CONFIG_MS_US},
    {"m", 60 * CONFIG_SECOND_MS *CONFIG_MS_US},
    {"s", CONFIG_SECOND_MS *CONFIG_MS_US},
    {"ms", CONFIG_MS_US},
    {"us", 1},
};
static const struct config_schema_unit config_schema_s_units[] = {
    {"y", CONFIG_YEAR_S}, {"d", CONFIG_DAY_S}, {"h", 3600}, {"m", 60}, {"s", 1},
};

/* v in the largest unit that divides it. */
static const char *
config_schema_fmt_units(uint64_t v, const struct config_schema_unit *units, size_t nunits,
                        char *buf, size_t len)
{
    size_t i = 0;

    while (i + 1 < nunits && (v == 0 || v % units[i].size != 0))
        i++;
    snprintf(buf, len, "%llu%s", (unsigned long long)(v / units[i].size), units[i].name);
    return buf;
}

#define CONFIG_SCHEMA_FMT(v, units, buf, len)                                                      \
    config_schema_fmt_units(v, units, sizeof(units) / sizeof(units[0]), buf, len)

const char *
config_schema_fmt(const struct config_key *k, uint64_t v, char *buf, size_t len)
{
    switch (k->type) {
    case CONFIG_T_SIZE:
        return CONFIG_SCHEMA_FMT(v, config_schema_size_units, buf, len);
    case CONFIG_T_DURATION:
        /* Timeouts stop at hours: "24h" reads better than "1d" for them. */
        return CONFIG_SCHEMA_FMT(v, config_schema_ms_units, buf, len);
    case CONFIG_T_DURATION_US:
        return CONFIG_SCHEMA_FMT(v, config_schema_us_units, buf, len);
    case CONFIG_T_SECONDS:
        return CONFIG_SCHEMA_FMT(v, config_schema_s_units, buf, len);
    default:
        snprintf(buf, len, "%llu", (unsigned long long)v);
        return buf;
    }
}

/* ------------------------------------------------------------------------ */
/* Reference                                                                 */

static const char *
config_schema_type_desc(const struct config_key *k, char *buf, size_t len)
{
    char lo[32], hi[32];

    config_schema_fmt(k, k->min, lo, sizeof(lo));
    config_schema_fmt(k, k->max, hi, sizeof(hi));
    switch (k->type) {
    case CONFIG_T_SECTION:
        return "mapping";
    case CONFIG_T_WORKERS:
        snprintf(buf, len, "\"auto\" or integer %s..%s", lo, hi);
        return buf;
    case CONFIG_T_UINT:
        snprintf(buf, len, "%s %s..%s", (k->flags & CONFIG_F_POW2) ? "power of two" : "integer", lo,
                 hi);
        return buf;
    case CONFIG_T_SIZE:
        snprintf(buf, len, "size %s..%s", lo, hi);
        return buf;
    case CONFIG_T_DURATION:
    case CONFIG_T_DURATION_US:
    case CONFIG_T_SECONDS:
        snprintf(buf, len, "duration %s..%s%s", lo, hi,
                 (k->flags & CONFIG_F_OFF) ? " or \"off\"" : "");
        return buf;
    case CONFIG_T_RATIO:
        return "ratio 0..1";
    case CONFIG_T_BOOL:
        return "true | false";
    case CONFIG_T_LOG_LEVEL:
    case CONFIG_T_EVICTION:
    case CONFIG_T_TLS_VERSION:
        return config_schema_join(k->names, " | ", " | ", buf, len);
    case CONFIG_T_STRING:
        return "string";
    case CONFIG_T_NAME:
        return "name";
    case CONFIG_T_HOST:
        return "host[:port]";
    case CONFIG_T_ADDR:
        return (k->flags & CONFIG_F_OFF) ? "HOST:PORT or \"off\"" : "HOST:PORT";
    case CONFIG_T_ADDR_LIST:
        if (k->max_items == 0)
            return "HOST:PORT, or a list";
        snprintf(buf, len, "HOST:PORT, or a list of at most %zu", k->max_items);
        return buf;
    case CONFIG_T_HOSTS:
        return "host pattern, or a list";
    case CONFIG_T_METHODS:
        return "method, or a list";
    case CONFIG_T_STATUSES:
        snprintf(buf, len, "status %s..%s, or a list", lo, hi);
        return buf;
    case CONFIG_T_HEADER_NAMES:
        return "header name, or a list";
    case CONFIG_T_COOKIE_NAMES:
        return "cookie name, or a list";
    case CONFIG_T_QUERY_NAMES:
        return "query parameter name, or a list";
    case CONFIG_T_PATH:
        return k->path_kind == CONFIG_PATH_REGEX ? "PCRE2 regex" : "path";
    case CONFIG_T_UPSTREAM_REF:
        return "upstream name";
    case CONFIG_T_UPSTREAMS:
        return "mapping: name -> upstream";
    case CONFIG_T_ROUTES:
        return "list of routes";
    case CONFIG_T_WORD:
        snprintf(buf, len, "string of %s..%s visible ASCII characters", lo, hi);
        return buf;
    case CONFIG_T_NODE_ID:
        snprintf(buf, len, "\"auto\" or string of %s..%s visible ASCII characters", lo, hi);
        return buf;
    case CONFIG_T_CIDR_LIST:
        return "address block, or a list";
    case CONFIG_T_TIERS: {
        char names[64];
        snprintf(buf, len, "list of %s",
                 config_schema_join(k->names, ", ", ", ", names, sizeof(names)));
        return buf;
    }
    case CONFIG_T_RULES:
        return "list of rules";
    case CONFIG_T_CERTS:
        return "list of {cert, key}";
    case CONFIG_T_RULE_PATTERN:
        return "path pattern";
    case CONFIG_T_PATH_TEMPLATES:
        return "path template, or a list";
    case CONFIG_T_TAG_TEMPLATES:
        return "tag template, or a list";
    }
    return "?";
}

/* Writes text indented by four spaces, wrapped at 78 columns. */
static void
config_schema_print_help(FILE *out, const char *text)
{
    size_t col = 0;

    while (*text != '\0') {
        size_t word = strcspn(text, " ");
        if (col > 0 && col + 1 + word > 74) {
            fputc('\n', out);
            col = 0;
        }
        fprintf(out, "%s%.*s", col == 0 ? "    " : " ", (int)word, text);
        col += (col == 0 ? 0 : 1) + word;
        text += word;
        text += strspn(text, " ");
    }
    fputs("\n\n", out);
}

static void
config_schema_print_keys(FILE *out, const struct config_key *keys, const char *path)
{
    char kpath[128], sub[136], type[128];

    for (const struct config_key *k = keys; k->name != NULL; k++) {
        snprintf(kpath, sizeof(kpath), "%s%s%s", path, path[0] != '\0' ? "." : "", k->name);
        fprintf(out, "%s: %s", kpath, config_schema_type_desc(k, type, sizeof(type)));
        if (k->type == CONFIG_T_SECTION)
            fputc('\n', out);
        else if (k->def != NULL)
            fprintf(out, "; default %s\n", k->def);
        else if (k->def_doc != NULL)
            fprintf(out, "; default: %s\n", k->def_doc);
        else
            fprintf(out, "; %s\n", (k->flags & CONFIG_F_REQUIRED) ? "required" : "optional");
        config_schema_print_help(out, k->help);
        if (k->type == CONFIG_T_SECTION) {
            config_schema_print_keys(out, k->sub, kpath);
        } else if (k->type == CONFIG_T_UPSTREAMS) {
            snprintf(sub, sizeof(sub), "%s.NAME", kpath);
            config_schema_print_keys(out, k->sub, sub);
        } else if (k->type == CONFIG_T_ROUTES || k->type == CONFIG_T_RULES ||
                   k->type == CONFIG_T_CERTS) {
            snprintf(sub, sizeof(sub), "%s[]", kpath);
            config_schema_print_keys(out, k->sub, sub);
        }
    }
}

void
config_print_reference(FILE *out)
{
    fprintf(out, "tailcache.yaml keys (durations: 150ms, 2s, 1m, 1h, 1d, 1y, a bare number is "
                 "seconds;\nsizes: 512, 8k, 1m, 1g, 1t, binary multiples)\n\n");
    config_schema_print_keys(out, config_schema_top, "");
}
