/*
 * config: loads the YAML configuration into an immutable, refcounted
 * struct config.
 *
 * Every key is a row in a table below (name, type, field, default, bounds,
 * flags, help), one table per mapping: the top level, its sections, an
 * upstream pool and a route. Adding a key is adding a row (and the field in
 * config.h); the loader, the defaults, quick mode and --help-config all
 * work from the rows. Defaults are written as YAML text and go through the
 * same parser as the file, so a default can never disagree with the rules.
 *
 * Loading is: libyaml builds the document tree (a syntax error stops here,
 * with libyaml's message and line); one pass walks the tree against the
 * tables, converting and checking every value and collecting errors
 * instead of stopping; a last pass checks what spans the file (routes name
 * upstreams defined anywhere, duplicate names, address clashes). Errors are
 * sorted by line and returned together, each as
 * "file:line: key.path: what is wrong", with 1-based lines and 0-based
 * list indexes (routes[0] is the first route).
 *
 * Ownership: struct config owns every string, array and compiled regex in
 * it; config_unref() of the last reference frees them all. Loading runs on
 * the main thread (it resolves names with blocking getaddrinfo and aborts
 * on out-of-memory, as start-up code may); the loaded config is read-only
 * and may be shared by every thread.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <yaml.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "config.h"
#include "util.h"

/* Longest key path in a message, e.g. "upstreams.NAME.servers[3]". */
#define CONFIG_PATH_MAX 256
/* Longest route or upstream name: they become metric labels. */
#define CONFIG_NAME_MAX 64
/* Longest scalar quoted back in a message. */
#define CONFIG_QUOTE_MAX 80
#define CONFIG_MAX_WORKERS 256

enum config_type {
    CONFIG_T_SECTION,      /* a mapping described by row->sub, same struct */
    CONFIG_T_WORKERS,      /* unsigned: "auto" or an integer */
    CONFIG_T_UINT,         /* unsigned */
    CONFIG_T_SIZE,         /* size_t, bytes */
    CONFIG_T_DURATION,     /* unsigned, milliseconds */
    CONFIG_T_LOG_LEVEL,    /* enum config_log_level */
    CONFIG_T_STRING,       /* char *, not empty */
    CONFIG_T_NAME,         /* char *, [A-Za-z0-9_.-]{1,64} */
    CONFIG_T_HOST,         /* char *, a Host header value */
    CONFIG_T_ADDR,         /* struct config_addr; "off" with CONFIG_F_OFF */
    CONFIG_T_ADDR_LIST,    /* struct config_addr * and a size_t count */
    CONFIG_T_HOSTS,        /* char ** and a size_t count: host patterns */
    CONFIG_T_METHODS,      /* uint32_t bit set */
    CONFIG_T_PATH,         /* struct config_route path, kind row->path_kind */
    CONFIG_T_UPSTREAM_REF, /* a name checked against upstreams after the walk */
    CONFIG_T_UPSTREAMS,    /* mapping: name -> pool described by row->sub */
    CONFIG_T_ROUTES,       /* sequence of routes described by row->sub */
};

#define CONFIG_F_REQUIRED 0x1u /* no default: the key must be given */
#define CONFIG_F_OFF 0x2u      /* CONFIG_T_ADDR: "off" disables (len 0) */
#define CONFIG_F_ONE_OF 0x4u   /* at most one row of the table with this flag */

struct config_key {
    const char *name;
    enum config_type type;
    size_t off;        /* the field, in the struct the table describes */
    size_t off_n;      /* the count field of a list */
    const char *def;   /* default, as YAML text; NULL: none */
    uint64_t min, max; /* bounds, in the stored unit (count, bytes, ms) */
    unsigned flags;
    const struct config_key *sub;
    enum config_path_kind path_kind;
    const char *help;
};

/*
 * offsetof() that fails to compile unless the field has the type the row's
 * setter writes: a table row cannot point a size setter at an unsigned.
 */
#define CONFIG_FIELD(st, field, type) _Generic(((st *)0)->field, type : offsetof(st, field))
#define CONFIG_C(field, type) CONFIG_FIELD(struct config, field, type)
#define CONFIG_U(field, type) CONFIG_FIELD(struct config_upstream, field, type)
#define CONFIG_R(field, type) CONFIG_FIELD(struct config_route, field, type)

#define CONFIG_DURATION_ROW(key, st, field, dflt, text)                                            \
    {                                                                                              \
        .name = key, .type = CONFIG_T_DURATION, .off = CONFIG_FIELD(st, field, unsigned),          \
        .def = dflt, .min = 1, .max = 24u * 3600 * 1000, .help = text                              \
    }

static const struct config_key config_admin_keys[] = {
    {.name = "listen",
     .type = CONFIG_T_ADDR,
     .off = CONFIG_C(admin, struct config_addr),
     .def = "127.0.0.1:9090",
     .flags = CONFIG_F_OFF,
     .help = "Admin listener (/healthz, /stats, /metrics), apart "
             "from traffic: HOST:PORT, or \"off\" to disable it."},
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

static const struct config_key config_upstream_keys[] = {
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
    {0},
};

static const struct config_key config_route_keys[] = {
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
    {0},
};

static const struct config_key config_top_keys[] = {
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
     .help = "Client-side timeouts (durations: 150ms, 2s, 1m, 1h; a bare number is seconds)."},
    {.name = "log", .type = CONFIG_T_SECTION, .sub = config_log_keys, .help = "Logging."},
    {.name = "upstreams",
     .type = CONFIG_T_UPSTREAMS,
     .sub = config_upstream_keys,
     .flags = CONFIG_F_REQUIRED,
     .help = "Origin server pools, by name; routes refer to them."},
    {.name = "routes",
     .type = CONFIG_T_ROUTES,
     .sub = config_route_keys,
     .flags = CONFIG_F_REQUIRED,
     .help = "Routes, tried in order: the first whose host, path and methods match wins."},
    {0},
};

static const struct {
    const char *name;
    enum http_method method;
} config_methods[] = {
    {"GET", HTTP_M_GET},         {"HEAD", HTTP_M_HEAD},     {"POST", HTTP_M_POST},
    {"PUT", HTTP_M_PUT},         {"DELETE", HTTP_M_DELETE}, {"PATCH", HTTP_M_PATCH},
    {"OPTIONS", HTTP_M_OPTIONS}, {"TRACE", HTTP_M_TRACE},   {"PURGE", HTTP_M_PURGE},
};

static const char *const config_level_names[] = {
    [CONFIG_LOG_ERROR] = "error",
    [CONFIG_LOG_WARN] = "warn",
    [CONFIG_LOG_INFO] = "info",
    [CONFIG_LOG_DEBUG] = "debug",
};

/* ------------------------------------------------------------------------ */
/* Error collection                                                          */

struct config_error {
    int line;   /* 0: not tied to a line */
    size_t seq; /* keeps messages on one line in the order they were found */
    char *msg;
};

struct config_loader {
    const char *file; /* NULL in quick mode */
    struct config *cfg;
    yaml_document_t *doc;
    struct config_error *errs;
    size_t nerrs;
    yaml_node_t **route_nodes; /* the mapping of each route, for the last pass */
};

static void config_error(struct config_loader *ld, int line, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Copies src to dst[0..cap) with control bytes written as \n, \r, \t or
 * \xNN, so that a message quoting the file stays on one line.
 */
static void
config_escape(char *dst, size_t cap, const char *src)
{
    size_t o = 0;

    for (; *src != '\0'; src++) {
        unsigned char c = (unsigned char)*src;
        char esc[5];
        size_t n;

        if (c >= 0x20 && c != 0x7f) {
            esc[0] = (char)c;
            n = 1;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            n = 2;
        } else {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            n = 4;
        }
        if (o + n >= cap)
            break;
        memcpy(dst + o, esc, n);
        o += n;
    }
    dst[o] = '\0';
}

static void
config_error(struct config_loader *ld, int line, const char *path, const char *fmt, ...)
{
    char what[512], raw[1024], msg[2048];
    va_list ap;
    int n = 0;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(raw, sizeof(raw), "%s%s%s", path != NULL ? path : "",
             path != NULL && path[0] != '\0' ? ": " : "", what);

    if (ld->file != NULL && line > 0)
        n = snprintf(msg, sizeof(msg), "%s:%d: ", ld->file, line);
    else if (ld->file != NULL)
        n = snprintf(msg, sizeof(msg), "%s: ", ld->file);
    if (n < 0 || (size_t)n >= sizeof(msg) / 2)
        n = 0;
    config_escape(msg + n, sizeof(msg) - (size_t)n, raw);

    ld->errs = util_xreallocarray(ld->errs, ld->nerrs + 1, sizeof(*ld->errs));
    ld->errs[ld->nerrs].line = line;
    ld->errs[ld->nerrs].seq = ld->nerrs;
    ld->errs[ld->nerrs].msg = util_xstrdup(msg);
    ld->nerrs++;
}

static int
config_error_cmp(const void *a, const void *b)
{
    const struct config_error *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hands the sorted errors to the caller as one string, and frees them. */
static void
config_errors_take(struct config_loader *ld, char **err)
{
    size_t total = 1, off = 0;
    char *s;

    if (ld->nerrs > 1)
        qsort(ld->errs, ld->nerrs, sizeof(*ld->errs), config_error_cmp);
    for (size_t i = 0; i < ld->nerrs; i++)
        total += strlen(ld->errs[i].msg) + 1;
    s = util_xmalloc(total);
    for (size_t i = 0; i < ld->nerrs; i++) {
        size_t len = strlen(ld->errs[i].msg);
        memcpy(s + off, ld->errs[i].msg, len);
        s[off + len] = '\n';
        off += len + 1;
        free(ld->errs[i].msg);
    }
    s[off] = '\0';
    free(ld->errs);
    ld->errs = NULL;
    ld->nerrs = 0;
    if (err != NULL)
        *err = s;
    else
        free(s);
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

static void
config_path_key(char *buf, size_t len, const char *path, const char *key)
{
    if (path[0] == '\0')
        snprintf(buf, len, "%s", key);
    else
        snprintf(buf, len, "%s.%s", path, key);
}

static void
config_path_index(char *buf, size_t len, const char *path, size_t i)
{
    snprintf(buf, len, "%s[%zu]", path, i);
}

static int
config_line(const yaml_node_t *node)
{
    return node != NULL ? (int)node->start_mark.line + 1 : 0;
}

static bool
config_is_null(const yaml_node_t *node)
{
    const char *v;

    if (node == NULL)
        return true;
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)node->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Describes a node for "expected X, got Y". */
static const char *
config_describe(const yaml_node_t *node, char *buf, size_t len)
{
    if (config_is_null(node))
        return "nothing";
    if (node->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (node->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node->data.scalar.length > CONFIG_QUOTE_MAX)
        snprintf(buf, len, "\"%.*s...\"", CONFIG_QUOTE_MAX, (const char *)node->data.scalar.value);
    else
        snprintf(buf, len, "\"%s\"", (const char *)node->data.scalar.value);
    return buf;
}

/*
 * Returns the text of a scalar node, or NULL after reporting that it is
 * not a string (a list, a mapping, nothing, or text with a NUL byte).
 */
static const char *
config_scalar(struct config_loader *ld, const yaml_node_t *node, const char *path,
              const char *expected)
{
    char buf[CONFIG_QUOTE_MAX + 8];

    if (node == NULL || node->type != YAML_SCALAR_NODE || config_is_null(node)) {
        config_error(ld, config_line(node), path, "expected %s, got %s", expected,
                     config_describe(node, buf, sizeof(buf)));
        return NULL;
    }
    if (strlen((const char *)node->data.scalar.value) != node->data.scalar.length) {
        config_error(ld, config_line(node), path, "must not contain a NUL byte");
        return NULL;
    }
    return (const char *)node->data.scalar.value;
}

static yaml_node_t *
config_node(struct config_loader *ld, int index)
{
    return yaml_document_get_node(ld->doc, index);
}

/* The value of key in a mapping node, or NULL. */
static yaml_node_t *
config_map_get(struct config_loader *ld, const yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = config_node(ld, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return config_node(ld, p->value);
    }
    return NULL;
}

/* Writes a byte count the way a user would: "64k", "1m", "300". */
static const char *
config_fmt_size(uint64_t v, char *buf, size_t len)
{
    if (v != 0 && v % (UINT64_C(1) << 30) == 0)
        snprintf(buf, len, "%llug", (unsigned long long)(v >> 30));
    else if (v != 0 && v % (UINT64_C(1) << 20) == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(v >> 20));
    else if (v != 0 && v % (UINT64_C(1) << 10) == 0)
        snprintf(buf, len, "%lluk", (unsigned long long)(v >> 10));
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
    return buf;
}

static const char *
config_fmt_duration(uint64_t ms, char *buf, size_t len)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, len, "%llums", (unsigned long long)ms);
    return buf;
}

/*
 * True when s is digits and one of the units (a NULL-terminated list that
 * may include ""): when such a value fails to parse, it is a number too big
 * to hold, and the message should give the bounds, not the syntax.
 */
static bool
config_numeric_shape(const char *s, const char *const *units)
{
    size_t nd = strspn(s, "0123456789");

    for (size_t i = 0; nd > 0 && units[i] != NULL; i++) {
        if (strcmp(s + nd, units[i]) == 0)
            return true;
    }
    return false;
}

static const char *const config_no_unit[] = {"", NULL};
static const char *const config_size_units[] = {"", "k", "K", "m", "M", "g", "G", NULL};
static const char *const config_duration_units[] = {"", "ms", "s", "m", "h", NULL};

static bool
config_valid_name(const char *s)
{
    size_t len = strlen(s);

    return len > 0 && len <= CONFIG_NAME_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == len;
}

static void
config_addr_clear(struct config_addr *a)
{
    free(a->text);
    memset(a, 0, sizeof(*a));
}

/* Fills a (cleared first) from text; returns -1 after reporting. */
static int
config_addr_parse(struct config_loader *ld, struct config_addr *a, const char *text, int line,
                  const char *path)
{
    char msg[512];

    config_addr_clear(a);
    if (util_parse_addr(text, &a->ss, &a->len, msg, sizeof(msg)) < 0) {
        config_error(ld, line, path, "%s", msg);
        memset(a, 0, sizeof(*a));
        return -1;
    }
    a->text = util_xstrdup(text);
    return 0;
}

/*
 * Normalises a host pattern into a new string: lower case, one trailing dot
 * and IPv6 brackets removed. Returns NULL after reporting an invalid one.
 */
static char *
config_host_pattern(struct config_loader *ld, const char *text, int line, const char *path)
{
    const char *body;
    size_t len = strlen(text);
    char *p = NULL;

    if (len >= 2 && text[0] == '[' && text[len - 1] == ']')
        p = util_xstrndup(text + 1, len - 2);
    else if (len >= 2 && text[len - 1] == '.' && text[len - 2] != '*')
        p = util_xstrndup(text, len - 1);
    else
        p = util_xstrndup(text, len);
    for (char *c = p; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);

    if (strcmp(p, "*") == 0)
        return p;
    body = strncmp(p, "*.", 2) == 0 ? p + 2 : p;
    if (strchr(body, ':') != NULL) {
        struct in6_addr a6;
        if (body == p && inet_pton(AF_INET6, p, &a6) == 1)
            return p;
        config_error(ld, line, path,
                     "invalid host pattern \"%s\" (a port is never matched; remove it)", text);
        goto fail;
    }
    if (body[0] == '\0' || body[0] == '.' ||
        strspn(body, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != strlen(body)) {
        config_error(ld, line, path,
                     "invalid host pattern \"%s\" (expected a name, \"*.suffix\" or \"*\")", text);
        goto fail;
    }
    return p;

fail:
    free(p);
    return NULL;
}

/* A Host header value: reg-name or IP literal characters, optional :port. */
static bool
config_valid_host_header(const char *s)
{
    size_t len = strlen(s);

    return len > 0 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_~:[]") ==
               len;
}

/* ------------------------------------------------------------------------ */
/* Setters: one value of a row from text (a scalar of the file or a default) */

static void config_walk_map(struct config_loader *ld, const struct config_key *keys, void *base,
                            yaml_node_t *map, int line, const char *path);

#define CONFIG_AT(base, off, type) ((type *)(void *)((char *)(base) + (off)))

static void
config_set_scalar(struct config_loader *ld, const struct config_key *k, void *base,
                  const char *text, int line, const char *path)
{
    char lo[32], hi[32];
    uint64_t u;
    unsigned ms;
    size_t sz;

    switch (k->type) {
    case CONFIG_T_WORKERS:
        if (strcmp(text, "auto") == 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            if (n < 1)
                n = 1;
            if (n > CONFIG_MAX_WORKERS)
                n = CONFIG_MAX_WORKERS;
            *CONFIG_AT(base, k->off, unsigned) = (unsigned)n;
            return;
        }
        /* FALLTHROUGH */
    case CONFIG_T_UINT:
        if (util_parse_uint(text, &u) < 0) {
            if (!config_numeric_shape(text, config_no_unit)) {
                config_error(ld, line, path, "expected an integer%s, got \"%s\"",
                             k->type == CONFIG_T_WORKERS ? " or \"auto\"" : "", text);
                return;
            }
            u = UINT64_MAX; /* too many digits: out of bounds below */
        }
        if (u < k->min || u > k->max) {
            config_error(ld, line, path, "must be between %llu and %llu, got %s",
                         (unsigned long long)k->min, (unsigned long long)k->max, text);
            return;
        }
        *CONFIG_AT(base, k->off, unsigned) = (unsigned)u;
        return;
    case CONFIG_T_SIZE:
        if (util_parse_size(text, &sz) < 0) {
            if (config_numeric_shape(text, config_size_units))
                goto size_bounds;
            config_error(ld, line, path, "expected a size like \"8k\" or \"1m\", got \"%s\"", text);
            return;
        }
        if (sz < k->min || sz > k->max) {
        size_bounds:
            config_error(ld, line, path, "must be between %s and %s, got %s",
                         config_fmt_size(k->min, lo, sizeof(lo)),
                         config_fmt_size(k->max, hi, sizeof(hi)), text);
            return;
        }
        *CONFIG_AT(base, k->off, size_t) = sz;
        return;
    case CONFIG_T_DURATION:
        if (util_parse_duration_ms(text, &ms) < 0) {
            if (config_numeric_shape(text, config_duration_units))
                goto duration_bounds;
            config_error(ld, line, path, "expected a duration like \"2s\" or \"150ms\", got \"%s\"",
                         text);
            return;
        }
        if (ms < k->min || ms > k->max) {
        duration_bounds:
            config_error(ld, line, path, "must be between %s and %s, got %s",
                         config_fmt_duration(k->min, lo, sizeof(lo)),
                         config_fmt_duration(k->max, hi, sizeof(hi)), text);
            return;
        }
        *CONFIG_AT(base, k->off, unsigned) = ms;
        return;
    case CONFIG_T_LOG_LEVEL:
        for (size_t i = 0; i < sizeof(config_level_names) / sizeof(config_level_names[0]); i++) {
            if (strcmp(text, config_level_names[i]) == 0) {
                *CONFIG_AT(base, k->off, enum config_log_level) = (enum config_log_level)i;
                return;
            }
        }
        config_error(ld, line, path, "must be one of error, warn, info, debug, got \"%s\"", text);
        return;
    case CONFIG_T_NAME:
        if (!config_valid_name(text)) {
            config_error(ld, line, path,
                         "invalid name \"%s\" (1 to %d letters, digits, \"_\", \".\" or \"-\")",
                         text, CONFIG_NAME_MAX);
            return;
        }
        goto string;
    case CONFIG_T_HOST:
        if (!config_valid_host_header(text)) {
            config_error(ld, line, path, "expected a host name with an optional :port, got \"%s\"",
                         text);
            return;
        }
        goto string;
    case CONFIG_T_STRING:
        if (text[0] == '\0') {
            config_error(ld, line, path, "must not be empty");
            return;
        }
    string:
        free(*CONFIG_AT(base, k->off, char *));
        *CONFIG_AT(base, k->off, char *) = util_xstrdup(text);
        return;
    case CONFIG_T_ADDR: {
        struct config_addr *a = CONFIG_AT(base, k->off, struct config_addr);
        if ((k->flags & CONFIG_F_OFF) && strcmp(text, "off") == 0) {
            config_addr_clear(a);
            return;
        }
        config_addr_parse(ld, a, text, line, path);
        return;
    }
    case CONFIG_T_PATH: {
        /* Only in the route table: the three path keys share these fields. */
        struct config_route *r = base;
        if (k->path_kind != CONFIG_PATH_REGEX && text[0] != '/') {
            config_error(ld, line, path, "must start with \"/\", got \"%s\"", text);
            return;
        }
        if (k->path_kind == CONFIG_PATH_REGEX) {
            int code;
            PCRE2_SIZE at;
            pcre2_code *re =
                pcre2_compile((PCRE2_SPTR)text, PCRE2_ZERO_TERMINATED, 0, &code, &at, NULL);
            if (re == NULL) {
                PCRE2_UCHAR what[256];
                pcre2_get_error_message(code, what, sizeof(what));
                config_error(ld, line, path, "regex does not compile at offset %zu: %s", (size_t)at,
                             (const char *)what);
                return;
            }
            /* A JIT failure (no JIT on this CPU, out of executable memory)
             * only makes matching slower: pcre2_match() interprets. */
            (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
            pcre2_code_free(r->path_re);
            r->path_re = re;
        }
        free(r->path);
        r->path = util_xstrdup(text);
        r->path_kind = k->path_kind;
        return;
    }
    case CONFIG_T_UPSTREAM_REF:
        /* Resolved by config_check_refs() once every upstream is known. */
        return;
    default:
        UTIL_ASSERT(!"not a scalar type");
    }
}

/* Parses one element of a list row into slot i of its array. */
static void
config_set_item(struct config_loader *ld, const struct config_key *k, void *base, size_t i,
                const char *text, int line, const char *path)
{
    switch (k->type) {
    case CONFIG_T_ADDR_LIST: {
        struct config_addr *a = *CONFIG_AT(base, k->off, struct config_addr *);
        size_t n = *CONFIG_AT(base, k->off_n, size_t);
        if (config_addr_parse(ld, &a[i], text, line, path) < 0)
            return;
        for (size_t j = 0; j < i && j < n; j++) {
            if (a[j].len == a[i].len && memcmp(&a[j].ss, &a[i].ss, a[i].len) == 0) {
                config_error(ld, line, path, "duplicate address \"%s\"", text);
                return;
            }
        }
        return;
    }
    case CONFIG_T_HOSTS:
        (*CONFIG_AT(base, k->off, char **))[i] = config_host_pattern(ld, text, line, path);
        return;
    case CONFIG_T_METHODS:
        for (size_t m = 0; m < sizeof(config_methods) / sizeof(config_methods[0]); m++) {
            if (strcmp(text, config_methods[m].name) == 0) {
                *CONFIG_AT(base, k->off, uint32_t) |= 1u << config_methods[m].method;
                return;
            }
        }
        config_error(ld, line, path,
                     "unknown method \"%s\" (known: GET HEAD POST PUT DELETE PATCH OPTIONS "
                     "TRACE PURGE)",
                     text);
        return;
    default:
        UTIL_ASSERT(!"not a list type");
    }
}

static void
config_list_free(const struct config_key *k, void *base)
{
    switch (k->type) {
    case CONFIG_T_ADDR_LIST: {
        struct config_addr **a = CONFIG_AT(base, k->off, struct config_addr *);
        size_t *n = CONFIG_AT(base, k->off_n, size_t);
        for (size_t i = 0; i < *n; i++)
            config_addr_clear(&(*a)[i]);
        free(*a);
        *a = NULL;
        *n = 0;
        return;
    }
    case CONFIG_T_HOSTS: {
        char ***h = CONFIG_AT(base, k->off, char **);
        size_t *n = CONFIG_AT(base, k->off_n, size_t);
        for (size_t i = 0; i < *n; i++)
            free((*h)[i]);
        free(*h);
        *h = NULL;
        *n = 0;
        return;
    }
    case CONFIG_T_METHODS:
        *CONFIG_AT(base, k->off, uint32_t) = 0;
        return;
    default:
        UTIL_ASSERT(!"not a list type");
    }
}

/* A list row from a node (one scalar, or a sequence of scalars) or, when
 * node is NULL, from the default text. */
static void
config_set_list(struct config_loader *ld, const struct config_key *k, void *base, yaml_node_t *node,
                const char *def, const char *path)
{
    char ipath[CONFIG_PATH_MAX];
    const char *what = k->type == CONFIG_T_ADDR_LIST ? "HOST:PORT or a list of them"
                       : k->type == CONFIG_T_HOSTS   ? "a host pattern or a list of them"
                                                     : "a method or a list of them";
    size_t n;

    config_list_free(k, base);
    if (node != NULL && node->type == YAML_SEQUENCE_NODE) {
        n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
        if (n == 0) {
            config_error(ld, config_line(node), path, "must not be an empty list");
            return;
        }
    } else {
        n = 1;
    }
    if (k->type == CONFIG_T_ADDR_LIST) {
        *CONFIG_AT(base, k->off, struct config_addr *) =
            util_xcalloc(n, sizeof(struct config_addr));
        *CONFIG_AT(base, k->off_n, size_t) = n;
    } else if (k->type == CONFIG_T_HOSTS) {
        *CONFIG_AT(base, k->off, char **) = util_xcalloc(n, sizeof(char *));
        *CONFIG_AT(base, k->off_n, size_t) = n;
    }

    if (node == NULL) {
        config_set_item(ld, k, base, 0, def, 0, path);
        return;
    }
    if (node->type != YAML_SEQUENCE_NODE) {
        const char *text = config_scalar(ld, node, path, what);
        if (text != NULL)
            config_set_item(ld, k, base, 0, text, config_line(node), path);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = config_node(ld, node->data.sequence.items.start[i]);
        const char *text;
        config_path_index(ipath, sizeof(ipath), path, i);
        text = config_scalar(ld, item, ipath, "a string");
        if (text != NULL)
            config_set_item(ld, k, base, i, text, config_line(item), ipath);
    }
}

static void
config_walk_upstreams(struct config_loader *ld, const struct config_key *k, yaml_node_t *node,
                      const char *path)
{
    struct config *cfg = ld->cfg;
    char buf[CONFIG_QUOTE_MAX + 8], upath[CONFIG_PATH_MAX];
    size_t n;

    if (node->type != YAML_MAPPING_NODE) {
        config_error(ld, config_line(node), path, "expected a mapping of upstream names, got %s",
                     config_describe(node, buf, sizeof(buf)));
        return;
    }
    n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (n == 0) {
        config_error(ld, config_line(node), path, "must define at least one upstream");
        return;
    }
    cfg->upstreams = util_xcalloc(n, sizeof(*cfg->upstreams));
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];
        yaml_node_t *key = config_node(ld, p->key);
        const char *name = config_scalar(ld, key, path, "an upstream name");
        struct config_upstream *up;
        bool dup = false;

        if (name == NULL)
            continue;
        config_path_key(upath, sizeof(upath), path, name);
        if (!config_valid_name(name)) {
            config_error(ld, config_line(key), upath,
                         "invalid name \"%s\" (1 to %d letters, digits, \"_\", \".\" or \"-\")",
                         name, CONFIG_NAME_MAX);
            continue;
        }
        for (size_t j = 0; j < cfg->nupstreams && !dup; j++)
            dup = strcmp(cfg->upstreams[j].name, name) == 0;
        if (dup) {
            config_error(ld, config_line(key), upath, "duplicate upstream name \"%s\"", name);
            continue;
        }
        up = &cfg->upstreams[cfg->nupstreams++];
        up->name = util_xstrdup(name);
        up->line = config_line(key);
        config_walk_map(ld, k->sub, up, config_node(ld, p->value), config_line(key), upath);
    }
}

static void
config_walk_routes(struct config_loader *ld, const struct config_key *k, yaml_node_t *node,
                   const char *path)
{
    struct config *cfg = ld->cfg;
    char buf[CONFIG_QUOTE_MAX + 8], rpath[CONFIG_PATH_MAX];
    size_t n;

    if (node->type != YAML_SEQUENCE_NODE) {
        config_error(ld, config_line(node), path, "expected a list of routes, got %s",
                     config_describe(node, buf, sizeof(buf)));
        return;
    }
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n == 0) {
        config_error(ld, config_line(node), path, "must list at least one route");
        return;
    }
    cfg->routes = util_xcalloc(n, sizeof(*cfg->routes));
    ld->route_nodes = util_xcalloc(n, sizeof(*ld->route_nodes));
    cfg->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = config_node(ld, node->data.sequence.items.start[i]);
        config_path_index(rpath, sizeof(rpath), path, i);
        ld->route_nodes[i] = item;
        cfg->routes[i].line = config_line(item);
        config_walk_map(ld, k->sub, &cfg->routes[i], item, config_line(item), rpath);
    }
}

/* Sets one row from its node, or from its default when node is NULL. */
static void
config_set(struct config_loader *ld, const struct config_key *k, void *base, yaml_node_t *node,
           int line, const char *path)
{
    const char *text;
    char what[64];

    switch (k->type) {
    case CONFIG_T_SECTION:
        config_walk_map(ld, k->sub, base, node, line, path);
        return;
    case CONFIG_T_UPSTREAMS:
        config_walk_upstreams(ld, k, node, path);
        return;
    case CONFIG_T_ROUTES:
        config_walk_routes(ld, k, node, path);
        return;
    case CONFIG_T_ADDR_LIST:
    case CONFIG_T_HOSTS:
    case CONFIG_T_METHODS:
        config_set_list(ld, k, base, node, k->def, path);
        return;
    default:
        break;
    }
    if (node == NULL) {
        config_set_scalar(ld, k, base, k->def, 0, path);
        return;
    }
    switch (k->type) {
    case CONFIG_T_WORKERS:
        snprintf(what, sizeof(what), "an integer or \"auto\"");
        break;
    case CONFIG_T_UINT:
        snprintf(what, sizeof(what), "an integer");
        break;
    case CONFIG_T_SIZE:
        snprintf(what, sizeof(what), "a size like \"8k\" or \"1m\"");
        break;
    case CONFIG_T_DURATION:
        snprintf(what, sizeof(what), "a duration like \"2s\" or \"150ms\"");
        break;
    case CONFIG_T_ADDR:
        snprintf(what, sizeof(what), "HOST:PORT");
        break;
    case CONFIG_T_LOG_LEVEL:
        snprintf(what, sizeof(what), "error, warn, info or debug");
        break;
    case CONFIG_T_NAME:
        snprintf(what, sizeof(what), "a name");
        break;
    case CONFIG_T_HOST:
        snprintf(what, sizeof(what), "a host name");
        break;
    case CONFIG_T_PATH:
        snprintf(what, sizeof(what), k->path_kind == CONFIG_PATH_REGEX ? "a regex" : "a path");
        break;
    case CONFIG_T_UPSTREAM_REF:
        snprintf(what, sizeof(what), "an upstream name");
        break;
    default:
        snprintf(what, sizeof(what), "a string");
        break;
    }
    text = config_scalar(ld, node, path, what);
    if (text != NULL)
        config_set_scalar(ld, k, base, text, config_line(node), path);
}

/* "prefix, exact, regex": the rows of a one-of group. */
static void
config_one_of_names(const struct config_key *keys, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (const struct config_key *k = keys; k->name != NULL; k++) {
        int n;
        if (!(k->flags & CONFIG_F_ONE_OF))
            continue;
        n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", k->name);
        if (n < 0 || (size_t)n >= len - off)
            return;
        off += (size_t)n;
    }
}

/*
 * Walks a mapping against a table: every key is set through its row,
 * unknown and repeated keys are reported, then rows not given take their
 * default (or are reported missing). map may be NULL or null for an absent
 * section: then every row takes its default. line is where to report
 * missing keys when map has no position of its own.
 */
static void
config_walk_map(struct config_loader *ld, const struct config_key *keys, void *base,
                yaml_node_t *map, int line, const char *path)
{
    char kpath[CONFIG_PATH_MAX], buf[CONFIG_QUOTE_MAX + 8];
    uint64_t seen = 0;
    bool one_of_seen = false;
    size_t nkeys = 0;

    while (keys[nkeys].name != NULL)
        nkeys++;
    UTIL_ASSERT(nkeys <= 64);

    if (map != NULL && config_is_null(map)) {
        map = NULL;
    } else if (map != NULL && map->type != YAML_MAPPING_NODE) {
        config_error(ld, config_line(map), path, "expected a mapping, got %s",
                     config_describe(map, buf, sizeof(buf)));
        return;
    }
    if (map != NULL)
        line = config_line(map);

    for (yaml_node_pair_t *p = map ? map->data.mapping.pairs.start : NULL;
         map != NULL && p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key = config_node(ld, p->key);
        const char *name = config_scalar(ld, key, path, "a key");
        size_t i;

        if (name == NULL)
            continue;
        config_path_key(kpath, sizeof(kpath), path, name);
        for (i = 0; i < nkeys && strcmp(keys[i].name, name) != 0; i++)
            ;
        if (i == nkeys) {
            config_error(ld, config_line(key), kpath, "unknown key");
            continue;
        }
        if (seen & (UINT64_C(1) << i)) {
            config_error(ld, config_line(key), kpath, "duplicate key");
            continue;
        }
        seen |= UINT64_C(1) << i;
        if (keys[i].flags & CONFIG_F_ONE_OF) {
            if (one_of_seen) {
                config_one_of_names(keys, buf, sizeof(buf));
                config_error(ld, config_line(key), kpath, "only one of %s", buf);
                continue;
            }
            one_of_seen = true;
        }
        config_set(ld, &keys[i], base, config_node(ld, p->value), config_line(key), kpath);
    }

    for (size_t i = 0; i < nkeys; i++) {
        const struct config_key *k = &keys[i];
        if (seen & (UINT64_C(1) << i))
            continue;
        config_path_key(kpath, sizeof(kpath), path, k->name);
        if (k->flags & CONFIG_F_REQUIRED)
            config_error(ld, line, kpath, "required key missing");
        else if (k->type == CONFIG_T_SECTION)
            config_walk_map(ld, k->sub, base, NULL, line, kpath);
        else if (k->def != NULL && !((k->flags & CONFIG_F_ONE_OF) && one_of_seen))
            config_set(ld, k, base, NULL, line, kpath);
    }
}

/* ------------------------------------------------------------------------ */
/* Checks spanning the file, after the walk                                  */

static void
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
    }

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

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */

static void
config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->file);
    for (size_t i = 0; i < cfg->nlisten; i++)
        config_addr_clear(&cfg->listen[i]);
    free(cfg->listen);
    config_addr_clear(&cfg->admin);
    free(cfg->error_log);
    free(cfg->access_log);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        struct config_upstream *up = &cfg->upstreams[i];
        free(up->name);
        for (size_t j = 0; j < up->nservers; j++)
            config_addr_clear(&up->servers[j]);
        free(up->servers);
    }
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct config_route *r = &cfg->routes[i];
        free(r->name);
        for (size_t j = 0; j < r->nhosts; j++)
            free(r->hosts[j]);
        free(r->hosts);
        free(r->path);
        pcre2_code_free(r->path_re);
        free(r->host_rewrite);
    }
    free(cfg->routes);
    free(cfg);
}

static struct config *
config_new(void)
{
    struct config *cfg = util_xcalloc(1, sizeof(*cfg));

    atomic_init(&cfg->refs, 1);
    return cfg;
}

/* Reports a libyaml error; returns -1 so callers can return it. */
static int
config_yaml_error(struct config_loader *ld, const yaml_parser_t *parser)
{
    const char *problem = parser->problem != NULL ? parser->problem : "cannot parse";

    if (parser->error == YAML_READER_ERROR)
        config_error(ld, 0, "", "YAML syntax error: %s at byte %zu", problem,
                     parser->problem_offset);
    else if (parser->context != NULL)
        config_error(ld, (int)parser->problem_mark.line + 1, "",
                     "YAML syntax error: %s (%s that started at line %d)", problem, parser->context,
                     (int)parser->context_mark.line + 1);
    else
        config_error(ld, (int)parser->problem_mark.line + 1, "", "YAML syntax error: %s", problem);
    return -1;
}

struct config *
config_load(const char *path, char **err)
{
    struct config_loader ld = {.file = path};
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool parser_ok = false, doc_ok = false;
    yaml_node_t *root;
    FILE *f = NULL;

    if (err != NULL)
        *err = NULL;
    f = fopen(path, "rb");
    if (f == NULL) {
        config_error(&ld, 0, "", "cannot open: %s", strerror(errno));
        goto fail;
    }
    if (!yaml_parser_initialize(&parser)) {
        config_error(&ld, 0, "", "cannot start the YAML parser: out of memory");
        goto fail;
    }
    parser_ok = true;
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        config_yaml_error(&ld, &parser);
        goto fail;
    }
    doc_ok = true;
    ld.doc = &doc;

    /* A second document would be silently ignored: say so instead. */
    if (!yaml_parser_load(&parser, &extra)) {
        config_yaml_error(&ld, &parser);
        goto fail;
    }
    root = yaml_document_get_root_node(&extra);
    if (root != NULL)
        config_error(&ld, config_line(root), "", "only one YAML document is allowed");
    yaml_document_delete(&extra);
    if (ld.nerrs != 0)
        goto fail;

    ld.cfg = config_new();
    ld.cfg->file = util_xstrdup(path);
    root = yaml_document_get_root_node(&doc);
    if (root != NULL && !config_is_null(root) && root->type != YAML_MAPPING_NODE) {
        char buf[CONFIG_QUOTE_MAX + 8];
        config_error(&ld, config_line(root), "", "expected a mapping of keys, got %s",
                     config_describe(root, buf, sizeof(buf)));
        goto fail;
    }
    config_walk_map(&ld, config_top_keys, ld.cfg, root, 1, "");
    config_check_refs(&ld, root);
    if (ld.nerrs != 0)
        goto fail;

    free(ld.route_nodes);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return ld.cfg;

fail:
    free(ld.route_nodes);
    config_free(ld.cfg);
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    if (f != NULL)
        fclose(f);
    config_errors_take(&ld, err);
    return NULL;
}

/*
 * Splits "http://HOST[:PORT][/]" into the HOST:PORT to connect to and the
 * authority as written (for the Host header). Returns -1 after reporting.
 */
static int
config_quick_url(struct config_loader *ld, const char *url, char *addr, size_t addrlen,
                 char *authority, size_t authlen)
{
    const char *a, *end;
    size_t len;
    bool has_port;

    if (url == NULL || url[0] == '\0') {
        config_error(ld, 0, "upstream", "expected a URL like http://HOST[:PORT], got nothing");
        return -1;
    }
    if (strncasecmp(url, "https://", 8) == 0) {
        config_error(ld, 0, "upstream",
                     "https is not supported for the upstream, use http://HOST[:PORT], got "
                     "\"%s\"",
                     url);
        return -1;
    }
    if (strncasecmp(url, "http://", 7) != 0)
        goto bad;
    a = url + 7;
    end = a + strcspn(a, "/");
    if (end[0] == '/' && end[1] != '\0')
        goto bad;
    len = (size_t)(end - a);
    if (len == 0 || len >= authlen || memchr(a, '@', len) != NULL || memchr(a, '?', len) != NULL ||
        memchr(a, '#', len) != NULL)
        goto bad;
    memcpy(authority, a, len);
    authority[len] = '\0';
    if (authority[0] == '[') {
        const char *close = strchr(authority, ']');
        if (close == NULL)
            goto bad;
        has_port = close[1] == ':';
    } else {
        has_port = strchr(authority, ':') != NULL;
    }
    if (snprintf(addr, addrlen, "%s%s", authority, has_port ? "" : ":80") >= (int)addrlen)
        goto bad;
    return 0;

bad:
    config_error(ld, 0, "upstream", "expected a URL like http://HOST[:PORT], got \"%s\"", url);
    return -1;
}

struct config *
config_quick(const char *upstream_url, const char *listen, const char *admin, char **err)
{
    struct config_loader ld = {.file = NULL};
    char addr[300], authority[280];
    struct config *cfg;
    struct config_upstream *up;
    struct config_route *r;

    if (err != NULL)
        *err = NULL;
    cfg = ld.cfg = config_new();
    cfg->upstreams = util_xcalloc(1, sizeof(*cfg->upstreams));
    cfg->nupstreams = 1;
    up = &cfg->upstreams[0];
    cfg->routes = util_xcalloc(1, sizeof(*cfg->routes));
    cfg->nroutes = 1;
    r = &cfg->routes[0];

    /* Every default, from the same tables as a file. The walks also report
     * the required keys (upstreams, routes, servers, name, upstream) as
     * missing: those are set below, so the reports are dropped. */
    config_walk_map(&ld, config_top_keys, cfg, NULL, 0, "");
    config_walk_map(&ld, config_upstream_keys, up, NULL, 0, "upstream");
    config_walk_map(&ld, config_route_keys, r, NULL, 0, "route");
    config_errors_take(&ld, NULL);

    up->name = util_xstrdup("upstream");
    r->name = util_xstrdup("default");
    r->upstream = up;
    UTIL_ASSERT(cfg->nlisten == 1); /* the default listener, replaced if given */
    if (listen != NULL)
        config_addr_parse(&ld, &cfg->listen[0], listen, 0, "listen");
    if (admin == NULL || strcmp(admin, "off") == 0)
        config_addr_clear(&cfg->admin);
    else
        config_addr_parse(&ld, &cfg->admin, admin, 0, "admin");
    if (config_quick_url(&ld, upstream_url, addr, sizeof(addr), authority, sizeof(authority)) ==
        0) {
        up->servers = util_xcalloc(1, sizeof(*up->servers));
        up->nservers = 1;
        config_addr_parse(&ld, &up->servers[0], addr, 0, "upstream");
        /* Like curl or nginx's proxy_pass: the origin sees its own name. */
        r->host_rewrite = util_xstrdup(authority);
    }

    if (cfg->admin.len != 0 && cfg->listen[0].len == cfg->admin.len &&
        memcmp(&cfg->listen[0].ss, &cfg->admin.ss, cfg->admin.len) == 0)
        config_error(&ld, 0, "admin", "same address as the traffic listener \"%s\"",
                     cfg->listen[0].text);
    if (ld.nerrs != 0)
        goto fail;
    return cfg;

fail:
    config_free(cfg);
    config_errors_take(&ld, err);
    return NULL;
}

struct config *
config_ref(struct config *cfg)
{
    int old = atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);

    UTIL_ASSERT(old > 0);
    return cfg;
}

void
config_unref(struct config **cfgp)
{
    struct config *cfg;
    int old;

    if (cfgp == NULL || *cfgp == NULL)
        return;
    cfg = *cfgp;
    *cfgp = NULL;
    old = atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel);
    UTIL_ASSERT(old > 0);
    if (old == 1)
        config_free(cfg);
}

const char *
config_log_level_name(enum config_log_level lvl)
{
    if ((unsigned)lvl >= sizeof(config_level_names) / sizeof(config_level_names[0]))
        return "?";
    return config_level_names[lvl];
}

/* ------------------------------------------------------------------------ */
/* Reference                                                                 */

static const char *
config_type_desc(const struct config_key *k, char *buf, size_t len)
{
    char lo[32], hi[32];

    switch (k->type) {
    case CONFIG_T_SECTION:
        return "mapping";
    case CONFIG_T_WORKERS:
        snprintf(buf, len, "\"auto\" or integer %llu..%llu", (unsigned long long)k->min,
                 (unsigned long long)k->max);
        return buf;
    case CONFIG_T_UINT:
        snprintf(buf, len, "integer %llu..%llu", (unsigned long long)k->min,
                 (unsigned long long)k->max);
        return buf;
    case CONFIG_T_SIZE:
        snprintf(buf, len, "size %s..%s", config_fmt_size(k->min, lo, sizeof(lo)),
                 config_fmt_size(k->max, hi, sizeof(hi)));
        return buf;
    case CONFIG_T_DURATION:
        snprintf(buf, len, "duration %s..%s", config_fmt_duration(k->min, lo, sizeof(lo)),
                 config_fmt_duration(k->max, hi, sizeof(hi)));
        return buf;
    case CONFIG_T_LOG_LEVEL:
        return "error | warn | info | debug";
    case CONFIG_T_STRING:
        return "string";
    case CONFIG_T_NAME:
        return "name";
    case CONFIG_T_HOST:
        return "host[:port]";
    case CONFIG_T_ADDR:
        return (k->flags & CONFIG_F_OFF) ? "HOST:PORT or \"off\"" : "HOST:PORT";
    case CONFIG_T_ADDR_LIST:
        return "HOST:PORT, or a list";
    case CONFIG_T_HOSTS:
        return "host pattern, or a list";
    case CONFIG_T_METHODS:
        return "method, or a list";
    case CONFIG_T_PATH:
        return k->path_kind == CONFIG_PATH_REGEX ? "PCRE2 regex" : "path";
    case CONFIG_T_UPSTREAM_REF:
        return "upstream name";
    case CONFIG_T_UPSTREAMS:
        return "mapping: name -> upstream";
    case CONFIG_T_ROUTES:
        return "list of routes";
    }
    return "?";
}

/* Writes text indented by four spaces, wrapped at 78 columns. */
static void
config_print_help(FILE *out, const char *text)
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
config_print_keys(FILE *out, const struct config_key *keys, const char *path)
{
    char kpath[CONFIG_PATH_MAX], sub[CONFIG_PATH_MAX + 8], type[128];

    for (const struct config_key *k = keys; k->name != NULL; k++) {
        config_path_key(kpath, sizeof(kpath), path, k->name);
        fprintf(out, "%s: %s", kpath, config_type_desc(k, type, sizeof(type)));
        if (k->type == CONFIG_T_SECTION)
            fputc('\n', out);
        else if (k->def != NULL)
            fprintf(out, "; default %s\n", k->def);
        else
            fprintf(out, "; %s\n", (k->flags & CONFIG_F_REQUIRED) ? "required" : "optional");
        config_print_help(out, k->help);
        if (k->type == CONFIG_T_SECTION) {
            config_print_keys(out, k->sub, kpath);
        } else if (k->type == CONFIG_T_UPSTREAMS) {
            config_path_key(sub, sizeof(sub), kpath, "NAME");
            config_print_keys(out, k->sub, sub);
        } else if (k->type == CONFIG_T_ROUTES) {
            snprintf(sub, sizeof(sub), "%s[]", kpath);
            config_print_keys(out, k->sub, sub);
        }
    }
}

void
config_print_reference(FILE *out)
{
    fprintf(out, "tailcache.yaml keys (durations: 150ms, 2s, 1m, 1h, a bare number is "
                 "seconds;\nsizes: 512, 8k, 1m, 1g, binary multiples)\n\n");
    config_print_keys(out, config_top_keys, "");
}
