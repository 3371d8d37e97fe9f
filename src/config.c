/*
 * config: loads the YAML configuration into an immutable, refcounted
 * struct config, or builds one for quick mode.
 *
 * What the keys are is in config_schema.c: one table row per key (name,
 * type, field, default, bounds, help). This file interprets the rows: the
 * setters turn a value of each type into its field, and the walker applies
 * a table to a YAML mapping, defaults included (defaults are YAML text and
 * go through the same setters). Particular keys appear here only where a
 * rule spans several of them (the checks after the walk), in quick mode
 * and in config_free().
 *
 * Loading is: libyaml builds the document tree (a syntax error stops here,
 * with libyaml's message and line); one pass walks the tree against the
 * tables, converting and checking every value and collecting errors
 * instead of stopping (an invalidation rule's templates are checked
 * against its match as soon as the rule is read); values that follow from
 * others are settled (a shared tier is on when it has servers; a route
 * without tiers gets memory and every shared tier that is on; a route has
 * a budget when it gives any budget key); a last pass checks what spans
 * the file (routes name upstreams defined anywhere, duplicate names,
 * address clashes, a header both in a cache key and stripped, a route's
 * tiers against the shared tiers configured, a route's latency budgets in
 * percentile order, Redis's backoff bounds). Errors are sorted by line
 * and returned together, each as "file:line: key.path: what is wrong",
 * with 1-based lines and 0-based list indexes (routes[0] is the first
 * route).
 *
 * Ownership: struct config owns every string, array, compiled regex and
 * compiled rule pattern in it; config_unref() of the last reference frees
 * them all. Loading runs on the main thread (it resolves names with
 * blocking getaddrinfo and aborts on out-of-memory, as start-up code may);
 * the loaded config is read-only and may be shared by every thread.
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
#include "config_int.h"
#include "config_schema.h"
#include "rule.h"
#include "tls.h"
#include "tls_client.h"
#include "util.h"

/* Longest route or upstream name: they become metric labels. */
#define CONFIG_NAME_MAX 64
/* Longest scalar quoted back in a message. */
#define CONFIG_QUOTE_MAX 80

/* ------------------------------------------------------------------------ */
/* Error collection                                                          */

struct config_error {
    int line;   /* 0: not tied to a line */
    size_t seq; /* keeps messages on one line in the order they were found */
    char *msg;
};

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

void
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

void
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

int
config_line(const yaml_node_t *node)
{
    return node != NULL ? (int)node->start_mark.line + 1 : 0;
}

bool
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
yaml_node_t *
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

/* The line of key in a mapping node, or 0. */
static int
config_map_key_line(struct config_loader *ld, const yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = config_node(ld, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return config_line(k);
    }
    return 0;
}

/* Item i of a list row given as node (a sequence, or one scalar as item
 * 0), and its key path in buf. */
yaml_node_t *
config_list_item(struct config_loader *ld, yaml_node_t *node, size_t i, const char *path, char *buf,
                 size_t len)
{
    if (node->type != YAML_SEQUENCE_NODE) {
        snprintf(buf, len, "%s", path);
        return node;
    }
    config_path_index(buf, len, path, i);
    return config_node(ld, node->data.sequence.items.start[i]);
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
static const char *const config_size_units[] = {"", "k", "K", "m", "M", "g", "G", "t", "T", NULL};
static const char *const config_duration_units[] = {"", "ms", "s", "m", "h", "d", "y", NULL};

/* "must be between 1ms and 24h, got 25h", in the row's unit. */
static void
config_bounds_error(struct config_loader *ld, const struct config_key *k, const char *text,
                    int line, const char *path)
{
    char lo[32], hi[32];

    config_error(ld, line, path, "must be %sbetween %s and %s, got %s",
                 (k->flags & CONFIG_F_POW2) ? "a power of two " : "",
                 config_schema_fmt(k, k->min, lo, sizeof(lo)),
                 config_schema_fmt(k, k->max, hi, sizeof(hi)), text);
}

/* A token (RFC 9110 5.6.2): the form of header field and cookie names. */
static bool
config_valid_token(const char *s)
{
    size_t len = strlen(s);

    return len > 0 && strspn(s, "!#$%&'*+-.^_`|~0123456789"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == len;
}

/* A query parameter name as it appears in a request target: visible
 * ASCII, none of the bytes that end a name ('=', '&', '#'). */
static bool
config_valid_query_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '=' || c == '&' || c == '#')
            return false;
    }
    return true;
}

static bool
config_valid_name(const char *s)
{
    size_t len = strlen(s);

    return len > 0 && len <= CONFIG_NAME_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == len;
}

/* Visible ASCII only: no space, no control byte, nothing past 0x7e. */
static bool
config_visible(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    }
    return true;
}

/* The port of a resolved address; 0 for a cleared one. */
static unsigned
config_addr_port(const struct config_addr *a)
{
    if (a->len != 0 && a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&a->ss)->sin_port);
    if (a->len != 0 && a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)&a->ss)->sin6_port);
    return 0;
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

static void
config_cidr_clear(struct config_cidr *c)
{
    free(c->text);
    memset(c, 0, sizeof(*c));
}

/*
 * Fills c (cleared first) from "ADDRESS/BITS" or a bare ADDRESS (all its
 * bits), IPv4 or IPv6. A block with bits set past its length is refused
 * rather than masked: "10.0.0.1/8" is more likely a typo than a wish.
 * Returns -1 after reporting.
 */
static int
config_cidr_parse(struct config_loader *ld, struct config_cidr *c, const char *text, int line,
                  const char *path)
{
    char host[INET6_ADDRSTRLEN + 1], net[INET6_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t hlen = slash != NULL ? (size_t)(slash - text) : strlen(text);
    unsigned max, bytes;
    uint64_t bits;
    bool extra = false;

    config_cidr_clear(c);
    if (hlen == 0 || hlen >= sizeof(host))
        goto bad;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, c->addr) == 1) {
        c->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, c->addr) == 1) {
        c->family = AF_INET6;
        max = 128;
    } else {
        goto bad;
    }
    bits = max;
    if (slash != NULL && (util_parse_uint(slash + 1, &bits) < 0 || bits > max)) {
        config_error(ld, line, path, "invalid prefix length in \"%s\" (0 to %u for %s)", text, max,
                     max == 32 ? "IPv4" : "IPv6");
        goto fail;
    }
    bytes = max / 8;
    for (unsigned i = 0; i < bytes; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? (unsigned)bits - 8 * i : 0;
        unsigned char mask = (unsigned char)(0xffu << (8 - keep));
        if ((c->addr[i] & (unsigned char)~mask) != 0)
            extra = true;
        c->addr[i] &= mask;
    }
    if (extra) {
        inet_ntop(c->family, c->addr, net, sizeof(net));
        config_error(ld, line, path,
                     "\"%s\" has bits set past its prefix length (the block is %s/%u)", text, net,
                     (unsigned)bits);
        goto fail;
    }
    c->prefix_len = (unsigned)bits;
    c->text = util_xstrdup(text);
    return 0;

bad:
    config_error(ld, line, path,
                 "invalid address block \"%s\" (expected ADDRESS or ADDRESS/BITS, like "
                 "10.0.0.0/8 or ::1)",
                 text);
fail:
    memset(c, 0, sizeof(*c));
    return -1;
}

/* "<hostname>:<pid>", a new string. */
static char *
config_node_id_auto(void)
{
    char host[256], id[300];

    if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
    return util_xstrdup(id);
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

/*
 * A ratio: a YAML decimal ([+-] digits with an optional fraction, or a
 * fraction alone, and an optional exponent: "0.01", "1e-3", ".5", "1").
 * Not strtod's other forms (hex, "nan", "inf", leading spaces), so that a
 * value reads the same in any YAML tool. Bounds are the caller's: a number
 * too large for a double comes back as HUGE_VAL. Returns -1 when s is not
 * a decimal. The C locale is assumed ('.' is the decimal point): tailcache
 * never calls setlocale().
 */
static int
config_parse_ratio(const char *s, double *out)
{
    const char *p = s;
    size_t whole, frac = 0;
    char *end;

    p += *p == '+' || *p == '-';
    whole = strspn(p, "0123456789");
    p += whole;
    if (*p == '.') {
        frac = strspn(p + 1, "0123456789");
        p += 1 + frac;
    }
    if (whole + frac == 0)
        return -1;
    if (*p == 'e' || *p == 'E') {
        const char *exp = p + 1 + (p[1] == '+' || p[1] == '-');
        size_t n = strspn(exp, "0123456789");
        if (n == 0)
            return -1;
        p = exp + n;
    }
    if (*p != '\0')
        return -1;
    *out = strtod(s, &end);
    UTIL_ASSERT(end == p);
    return 0;
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
    char what[128];
    uint64_t u;
    unsigned ms;
    int64_t sec;
    size_t sz;
    double ratio;

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
            if (!config_numeric_shape(text, config_no_unit))
                goto syntax;
            u = UINT64_MAX; /* too many digits: out of bounds below */
        }
        if (u < k->min || u > k->max || ((k->flags & CONFIG_F_POW2) && (u & (u - 1)) != 0))
            goto bounds;
        *CONFIG_AT(base, k->off, unsigned) = (unsigned)u;
        return;
    case CONFIG_T_SIZE:
        if (util_parse_size(text, &sz) < 0) {
            if (config_numeric_shape(text, config_size_units))
                goto bounds; /* too big for size_t */
            goto syntax;
        }
        if (sz < k->min || sz > k->max)
            goto bounds;
        *CONFIG_AT(base, k->off, size_t) = sz;
        return;
    case CONFIG_T_DURATION:
        if (util_parse_duration_ms(text, &ms) < 0) {
            if (config_numeric_shape(text, config_duration_units))
                goto bounds; /* too long for 32 bits of milliseconds */
            goto syntax;
        }
        if (ms < k->min || ms > k->max)
            goto bounds;
        *CONFIG_AT(base, k->off, unsigned) = ms;
        return;
    case CONFIG_T_DURATION_US:
        if (util_parse_duration_ms(text, &ms) < 0) {
            if (config_numeric_shape(text, config_duration_units))
                goto bounds;
            goto syntax;
        }
        u = (uint64_t)ms * 1000;
        if (u < k->min || u > k->max)
            goto bounds;
        *CONFIG_AT(base, k->off, int64_t) = (int64_t)u;
        return;
    case CONFIG_T_RATIO:
        if (config_parse_ratio(text, &ratio) < 0)
            goto syntax;
        /* Written out, not through config_bounds_error: the bounds are
         * not integers of the row. -0 is 0, not negative. */
        if (!(ratio >= 0.0 && ratio <= 1.0)) {
            config_error(ld, line, path, "must be between 0 and 1, got %s", text);
            return;
        }
        *CONFIG_AT(base, k->off, double) = ratio == 0.0 ? 0.0 : ratio;
        return;
    case CONFIG_T_SECONDS:
        if ((k->flags & CONFIG_F_OFF) && strcmp(text, "off") == 0) {
            *CONFIG_AT(base, k->off, int64_t) = -1;
            return;
        }
        if (util_parse_duration_s(text, &sec) < 0) {
            if (config_numeric_shape(text, config_duration_units))
                goto bounds;
            goto syntax;
        }
        if ((uint64_t)sec < k->min || (uint64_t)sec > k->max)
            goto bounds;
        *CONFIG_AT(base, k->off, int64_t) = sec;
        return;
    case CONFIG_T_BOOL:
        /* YAML 1.2's booleans; not 1.1's yes/no/on/off, which read as
         * strings elsewhere ("off" is a value of other keys). */
        if (strcmp(text, "true") == 0 || strcmp(text, "True") == 0 || strcmp(text, "TRUE") == 0)
            *CONFIG_AT(base, k->off, bool) = true;
        else if (strcmp(text, "false") == 0 || strcmp(text, "False") == 0 ||
                 strcmp(text, "FALSE") == 0)
            *CONFIG_AT(base, k->off, bool) = false;
        else
            goto syntax;
        return;
    case CONFIG_T_LOG_LEVEL:
    case CONFIG_T_EVICTION:
    case CONFIG_T_TLS_VERSION:
        for (unsigned i = 0; k->names[i] != NULL; i++) {
            if (strcmp(text, k->names[i]) != 0)
                continue;
            if (k->type == CONFIG_T_LOG_LEVEL)
                *CONFIG_AT(base, k->off, enum config_log_level) = (enum config_log_level)i;
            else if (k->type == CONFIG_T_TLS_VERSION)
                *CONFIG_AT(base, k->off, enum config_tls_version) = (enum config_tls_version)i;
            else
                *CONFIG_AT(base, k->off, enum config_eviction) = (enum config_eviction)i;
            return;
        }
        config_error(ld, line, path, "must be one of %s, got \"%s\"",
                     config_schema_join(k->names, ", ", ", ", what, sizeof(what)), text);
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
    case CONFIG_T_NODE_ID:
        if (strcmp(text, "auto") == 0) {
            free(*CONFIG_AT(base, k->off, char *));
            *CONFIG_AT(base, k->off, char *) = config_node_id_auto();
            return;
        }
        /* FALLTHROUGH */
    case CONFIG_T_WORD:
        if (strlen(text) < k->min || strlen(text) > k->max || !config_visible(text)) {
            if (k->flags & CONFIG_F_SECRET)
                config_error(ld, line, path,
                             "must be %llu to %llu visible ASCII characters (no spaces or "
                             "control characters)",
                             (unsigned long long)k->min, (unsigned long long)k->max);
            else
                config_error(ld, line, path,
                             "must be %llu to %llu visible ASCII characters (no spaces or "
                             "control characters), got \"%s\"",
                             (unsigned long long)k->min, (unsigned long long)k->max, text);
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
                PCRE2_UCHAR reason[256];
                pcre2_get_error_message(code, reason, sizeof(reason));
                config_error(ld, line, path, "regex does not compile at offset %zu: %s", (size_t)at,
                             (const char *)reason);
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
    case CONFIG_T_RULE_PATTERN: {
        char msg[256];
        struct rule_pattern **pp = CONFIG_AT(base, k->off, struct rule_pattern *);
        struct rule_pattern *rp = rule_compile(text, msg, sizeof(msg));
        if (rp == NULL) {
            config_error(ld, line, path, "invalid pattern \"%s\": %s", text, msg);
            return;
        }
        rule_free(pp);
        *pp = rp;
        return;
    }
    case CONFIG_T_UPSTREAM_REF:
        /* Resolved by config_check_refs() once every upstream is known. */
        return;
    default:
        UTIL_ASSERT(!"not a scalar type");
    }
    return;

syntax:
    config_error(ld, line, path, "expected %s, got \"%s\"",
                 config_schema_expected(k, what, sizeof(what)), text);
    return;
bounds:
    config_bounds_error(ld, k, text, line, path);
}

/* Parses one element of a list row into slot i of its array (or bit set). */
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
    case CONFIG_T_CIDR_LIST: {
        struct config_cidr *c = *CONFIG_AT(base, k->off, struct config_cidr *);
        if (config_cidr_parse(ld, &c[i], text, line, path) < 0)
            return;
        for (size_t j = 0; j < i; j++) {
            if (c[j].family == c[i].family && c[j].prefix_len == c[i].prefix_len &&
                memcmp(c[j].addr, c[i].addr, sizeof(c[i].addr)) == 0) {
                config_error(ld, line, path, "duplicate address block \"%s\"", text);
                return;
            }
        }
        return;
    }
    case CONFIG_T_TIERS: {
        /* Appended, not stored at i: the array holds CONFIG_TIERS_MAX, and
         * only distinct known names get in. */
        enum config_tier *t = CONFIG_AT(base, k->off, enum config_tier);
        size_t *nt = CONFIG_AT(base, k->off_n, size_t);
        char known[64];
        unsigned m;
        for (m = 0; k->names[m] != NULL && strcmp(k->names[m], text) != 0; m++)
            ;
        if (k->names[m] == NULL) {
            config_error(ld, line, path, "unknown tier \"%s\" (known: %s)", text,
                         config_schema_join(k->names, ", ", ", ", known, sizeof(known)));
            return;
        }
        for (size_t j = 0; j < *nt; j++) {
            if (t[j] == (enum config_tier)m) {
                config_error(ld, line, path, "duplicate tier \"%s\"", text);
                return;
            }
        }
        UTIL_ASSERT(*nt < CONFIG_TIERS_MAX);
        t[(*nt)++] = (enum config_tier)m;
        return;
    }
    case CONFIG_T_HOSTS:
        (*CONFIG_AT(base, k->off, char **))[i] = config_host_pattern(ld, text, line, path);
        return;
    case CONFIG_T_METHODS:
        for (size_t m = 0; config_schema_methods[m].name != NULL; m++) {
            enum http_method hm = config_schema_methods[m].method;
            if (strcmp(text, config_schema_methods[m].name) != 0)
                continue;
            if ((k->flags & CONFIG_F_WRITES) && (hm == HTTP_M_GET || hm == HTTP_M_HEAD ||
                                                 hm == HTTP_M_OPTIONS || hm == HTTP_M_TRACE)) {
                config_error(ld, line, path, "%s is a safe method: rules apply to writes", text);
                return;
            }
            *CONFIG_AT(base, k->off, uint32_t) |= 1u << hm;
            return;
        }
        config_error(ld, line, path,
                     "unknown method \"%s\" (known: GET HEAD POST PUT DELETE PATCH OPTIONS "
                     "TRACE PURGE)",
                     text);
        return;
    case CONFIG_T_STATUSES: {
        uint64_t *bits = CONFIG_AT(base, k->off, uint64_t);
        uint64_t u;
        if (util_parse_uint(text, &u) < 0) {
            if (!config_numeric_shape(text, config_no_unit)) {
                config_error(ld, line, path, "expected a status code, got \"%s\"", text);
                return;
            }
            u = UINT64_MAX;
        }
        if (u < k->min || u > k->max) {
            config_bounds_error(ld, k, text, line, path);
            return;
        }
        UTIL_ASSERT(u < 64 * CONFIG_STATUS_WORDS);
        bits[u / 64] |= UINT64_C(1) << (u % 64);
        return;
    }
    case CONFIG_T_HEADER_NAMES:
    case CONFIG_T_COOKIE_NAMES:
    case CONFIG_T_QUERY_NAMES: {
        char **v = *CONFIG_AT(base, k->off, char **);
        const char *what = k->type == CONFIG_T_HEADER_NAMES   ? "header"
                           : k->type == CONFIG_T_COOKIE_NAMES ? "cookie"
                                                              : "query parameter";
        if (k->type == CONFIG_T_QUERY_NAMES && !config_valid_query_name(text)) {
            config_error(ld, line, path,
                         "invalid query parameter name \"%s\" (expected visible characters "
                         "other than \"=\", \"&\" and \"#\")",
                         text);
            return;
        }
        if (k->type != CONFIG_T_QUERY_NAMES && !config_valid_token(text)) {
            config_error(ld, line, path,
                         "invalid %s name \"%s\" (expected a token: letters, digits and "
                         "!#$%%&'*+-.^_`|~)",
                         what, text);
            return;
        }
        for (size_t j = 0; j < i; j++) {
            /* Header names are case-insensitive, the others are not. */
            if (v[j] != NULL && (k->type == CONFIG_T_HEADER_NAMES ? strcasecmp(v[j], text)
                                                                  : strcmp(v[j], text)) == 0) {
                config_error(ld, line, path, "duplicate %s name \"%s\"", what, text);
                return;
            }
        }
        v[i] = util_xstrdup(text);
        return;
    }
    case CONFIG_T_PATH_TEMPLATES:
    case CONFIG_T_TAG_TEMPLATES: {
        /* Only the form here: the captures named are checked against the
         * rule's match once the whole rule is read (config_check_rule). */
        char **v = *CONFIG_AT(base, k->off, char **);
        if (k->type == CONFIG_T_PATH_TEMPLATES && text[0] != '/') {
            config_error(ld, line, path, "must start with \"/\", got \"%s\"", text);
            return;
        }
        if (k->type == CONFIG_T_PATH_TEMPLATES && (!config_visible(text) || strchr(text, '#'))) {
            config_error(ld, line, path,
                         "invalid path template \"%s\" (visible ASCII characters other than "
                         "\"#\")",
                         text);
            return;
        }
        if (k->type == CONFIG_T_TAG_TEMPLATES && (!config_visible(text) || strchr(text, ','))) {
            config_error(ld, line, path,
                         "invalid tag template \"%s\" (visible ASCII characters other than "
                         "\",\")",
                         text);
            return;
        }
        for (size_t j = 0; j < i; j++) {
            if (v[j] != NULL && strcmp(v[j], text) == 0) {
                config_error(ld, line, path, "duplicate template \"%s\"", text);
                return;
            }
        }
        v[i] = util_xstrdup(text);
        return;
    }
    default:
        UTIL_ASSERT(!"not a list type");
    }
}

/* Empties a list row, then makes room for n items. */
static void
config_list_reset(const struct config_key *k, void *base, size_t n)
{
    switch (k->type) {
    case CONFIG_T_ADDR_LIST: {
        struct config_addr **a = CONFIG_AT(base, k->off, struct config_addr *);
        size_t *na = CONFIG_AT(base, k->off_n, size_t);
        for (size_t i = 0; i < *na; i++)
            config_addr_clear(&(*a)[i]);
        free(*a);
        *a = n > 0 ? util_xcalloc(n, sizeof(**a)) : NULL;
        *na = n;
        return;
    }
    case CONFIG_T_CIDR_LIST: {
        struct config_cidr **c = CONFIG_AT(base, k->off, struct config_cidr *);
        size_t *nc = CONFIG_AT(base, k->off_n, size_t);
        for (size_t i = 0; i < *nc; i++)
            config_cidr_clear(&(*c)[i]);
        free(*c);
        *c = n > 0 ? util_xcalloc(n, sizeof(**c)) : NULL;
        *nc = n;
        return;
    }
    case CONFIG_T_TIERS:
        *CONFIG_AT(base, k->off_n, size_t) = 0; /* items are appended */
        return;
    case CONFIG_T_HOSTS:
    case CONFIG_T_HEADER_NAMES:
    case CONFIG_T_COOKIE_NAMES:
    case CONFIG_T_QUERY_NAMES:
    case CONFIG_T_PATH_TEMPLATES:
    case CONFIG_T_TAG_TEMPLATES: {
        char ***v = CONFIG_AT(base, k->off, char **);
        size_t *nv = CONFIG_AT(base, k->off_n, size_t);
        for (size_t i = 0; i < *nv; i++)
            free((*v)[i]);
        free(*v);
        *v = n > 0 ? util_xcalloc(n, sizeof(**v)) : NULL;
        *nv = n;
        return;
    }
    case CONFIG_T_METHODS:
        *CONFIG_AT(base, k->off, uint32_t) = 0;
        return;
    case CONFIG_T_STATUSES:
        memset(CONFIG_AT(base, k->off, uint64_t), 0, CONFIG_STATUS_WORDS * sizeof(uint64_t));
        return;
    default:
        UTIL_ASSERT(!"not a list type");
    }
}

/*
 * A list row's default: one plain item ("*"), or a flow list of plain
 * items split on commas ("[a, b]", "[]"), which is all the tables use.
 */
static void
config_set_default_list(struct config_loader *ld, const struct config_key *k, void *base,
                        const char *path)
{
    char ipath[CONFIG_PATH_MAX];
    size_t len = strlen(k->def), n = 0, i = 0;
    char *items, *p, *save = NULL;

    if (k->def[0] != '[') {
        config_list_reset(k, base, 1);
        config_set_item(ld, k, base, 0, k->def, 0, path);
        return;
    }
    UTIL_ASSERT(len >= 2 && k->def[len - 1] == ']');
    items = util_xstrndup(k->def + 1, len - 2);
    if (items[strspn(items, " ")] != '\0') {
        n = 1;
        for (p = items; (p = strchr(p, ',')) != NULL; p++)
            n++;
    }
    config_list_reset(k, base, n);
    for (p = strtok_r(items, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save), i++) {
        p += strspn(p, " ");
        p[strcspn(p, " ")] = '\0';
        config_path_index(ipath, sizeof(ipath), path, i);
        config_set_item(ld, k, base, i, p, 0, ipath);
    }
    UTIL_ASSERT(i == n);
    free(items);
}

/* A list row from a node: one scalar, or a sequence of scalars. */
static void
config_set_list(struct config_loader *ld, const struct config_key *k, void *base, yaml_node_t *node,
                const char *path)
{
    char ipath[CONFIG_PATH_MAX], what[128];
    const char *text;
    size_t n;

    if (node->type != YAML_SEQUENCE_NODE) {
        text = config_scalar(ld, node, path, config_schema_expected(k, what, sizeof(what)));
        config_list_reset(k, base, text != NULL ? 1 : 0);
        if (text != NULL)
            config_set_item(ld, k, base, 0, text, config_line(node), path);
        return;
    }
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    /* Too many items is reported, and the items are still read: what
     * depends on the list (a tier being configured) is not reported too. */
    if (k->max_items != 0 && n > k->max_items)
        config_error(ld, config_line(node), path, "must list at most %zu items, got %zu",
                     k->max_items, n);
    config_list_reset(k, base, n);
    if (n == 0 && !(k->flags & CONFIG_F_EMPTY))
        config_error(ld, config_line(node), path, "must not be an empty list");
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = config_node(ld, node->data.sequence.items.start[i]);
        config_path_index(ipath, sizeof(ipath), path, i);
        text = config_scalar(ld, item, ipath, "a string");
        if (text != NULL)
            config_set_item(ld, k, base, i, text, config_line(item), ipath);
    }
}

/* ------------------------------------------------------------------------ */
/* upstreams.NAME.tls                                                        */

/*
 * The host of a server address as written ("origin.example:443"), into
 * buf, when it is a name; false for an IP literal (no name to verify).
 */
static bool
config_addr_host_name(const char *text, char *buf, size_t len)
{
    const char *colon = strrchr(text, ':');
    size_t n = colon != NULL ? (size_t)(colon - text) : strlen(text);
    unsigned char tmp[sizeof(struct in6_addr)];

    if (text[0] == '[' || n == 0 || n >= len)
        return false;
    memcpy(buf, text, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, tmp) != 1;
}

/* A DNS name as SNI carries it: letters, digits, '-' and '.', not an IP. */
static bool
config_valid_server_name(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];

    if (s[0] == '.' || s[0] == '-' || inet_pton(AF_INET, s, tmp) == 1)
        return false;
    for (; *s != '\0'; s++) {
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
            return false;
    }
    return true;
}

/* The line of key in the tls mapping, else dflt (the line of "tls:"). */
static int
config_tls_line(struct config_loader *ld, const yaml_node_t *tls, const char *key, int dflt)
{
    const yaml_node_t *v = config_map_get(ld, tls, key);

    return v != NULL ? config_line(v) : dflt;
}

/*
 * Settles a pool's TLS once its keys are read: the tls mapping's presence
 * turns it on; server_name defaults to the first server's host when it is
 * a name, and must then exist to verify; cert and key go together; then
 * the client context is built, a file that does not load being an error
 * at its key. tls is the mapping (NULL in quick mode), line where to
 * report when there is none.
 */
static void
config_settle_tls(struct config_loader *ld, struct config_upstream *up, const yaml_node_t *tls,
                  int line, const char *upath)
{
    struct config_upstream_tls *t = &up->tls;
    char path[CONFIG_PATH_MAX], host[256], err[512];
    const char *bad_key = NULL;
    size_t nerrs = ld->nerrs;

    config_path_key(path, sizeof(path), upath, "tls");
    if (!t->enabled)
        return;
    if (t->server_name != NULL && !config_valid_server_name(t->server_name)) {
        char kpath[CONFIG_PATH_MAX + 16];
        config_path_key(kpath, sizeof(kpath), path, "server_name");
        config_error(ld, config_tls_line(ld, tls, "server_name", line), kpath,
                     "expected a DNS name (SNI carries no IP address), got \"%s\"", t->server_name);
    }
    if (t->server_name == NULL && up->nservers > 0 &&
        config_addr_host_name(up->servers[0].text, host, sizeof(host)))
        t->server_name = util_xstrdup(host);
    if (t->server_name == NULL && t->verify && up->nservers > 0) {
        char kpath[CONFIG_PATH_MAX + 16];
        config_path_key(kpath, sizeof(kpath), path, "server_name");
        config_error(ld, config_tls_line(ld, tls, "server_name", line), kpath,
                     "required to verify a server given by IP address");
    }
    if ((t->cert == NULL) != (t->key == NULL)) {
        char kpath[CONFIG_PATH_MAX + 16];
        const char *missing = t->cert == NULL ? "cert" : "key";
        config_path_key(kpath, sizeof(kpath), path, missing);
        config_error(ld, config_tls_line(ld, tls, t->cert == NULL ? "key" : "cert", line), kpath,
                     "required with %s (a client certificate needs both)",
                     t->cert == NULL ? "key" : "cert");
    }
    if (ld->nerrs != nerrs)
        return;
    t->client = tls_client_new(t, &bad_key, err, sizeof(err));
    if (t->client == NULL) {
        char kpath[CONFIG_PATH_MAX + 16];
        config_path_key(kpath, sizeof(kpath), path, bad_key != NULL ? bad_key : "");
        config_error(ld, config_tls_line(ld, tls, bad_key != NULL ? bad_key : "", line), kpath,
                     "%s", err);
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
        yaml_node_t *tls;
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
        tls = config_map_get(ld, config_node(ld, p->value), "tls");
        /* The mapping's presence turns TLS on; its defaults alone would. */
        up->tls.enabled = up->tls.enabled && tls != NULL;
        config_settle_tls(ld, up, tls, config_map_key_line(ld, config_node(ld, p->value), "tls"),
                          upath);
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

/*
 * What a rule's keys only say together: it purges something, and its
 * templates name captures of its match. Reported on the template items.
 */
static void
config_check_rule(struct config_loader *ld, const struct config_inval_rule *r, yaml_node_t *item,
                  const char *path)
{
    static const char *const lists[] = {"purge", "tags"};
    char lpath[CONFIG_PATH_MAX + 8], ipath[CONFIG_PATH_MAX + 32], msg[256];

    if (item == NULL || item->type != YAML_MAPPING_NODE)
        return; /* reported by the walk */
    if (r->npurge == 0 && r->ntags == 0)
        config_error(ld, config_line(item), path, "needs purge or tags (or both)");
    if (r->match == NULL)
        return;
    for (size_t l = 0; l < 2; l++) {
        char *const *v = l == 0 ? r->purge : r->tags;
        size_t n = l == 0 ? r->npurge : r->ntags;
        yaml_node_t *node = config_map_get(ld, item, lists[l]);
        config_path_key(lpath, sizeof(lpath), path, lists[l]);
        for (size_t i = 0; i < n && node != NULL; i++) {
            yaml_node_t *it = config_list_item(ld, node, i, lpath, ipath, sizeof(ipath));
            if (v[i] != NULL && rule_check_template(r->match, v[i], msg, sizeof(msg)) < 0)
                config_error(ld, config_line(it), ipath, "invalid template \"%s\": %s", v[i], msg);
        }
    }
}

/*
 * A list of mappings, each walked against row->sub into an array of
 * elem_size structs whose first member is `int line`: routes[].cache.
 * invalidate (rules, each checked by check) and tls.certificates.
 */
static void
config_walk_map_list(struct config_loader *ld, const struct config_key *k, void *base,
                     yaml_node_t *node, const char *path, size_t elem_size, const char *what,
                     void (*check)(struct config_loader *ld, void *elem, yaml_node_t *item,
                                   const char *path))
{
    char **items = CONFIG_AT(base, k->off, char *);
    size_t *nitems = CONFIG_AT(base, k->off_n, size_t);
    char buf[CONFIG_QUOTE_MAX + 8], ipath[CONFIG_PATH_MAX];
    size_t n;

    UTIL_ASSERT(*items == NULL && *nitems == 0); /* walked once, only from a file */
    if (node->type != YAML_SEQUENCE_NODE) {
        config_error(ld, config_line(node), path, "expected a list of %s, got %s", what,
                     config_describe(node, buf, sizeof(buf)));
        return;
    }
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n == 0)
        return;
    *items = util_xcalloc(n, elem_size);
    *nitems = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = config_node(ld, node->data.sequence.items.start[i]);
        void *elem = *items + i * elem_size;
        config_path_index(ipath, sizeof(ipath), path, i);
        *(int *)elem = config_line(item);
        config_walk_map(ld, k->sub, elem, item, config_line(item), ipath);
        if (check != NULL)
            check(ld, elem, item, ipath);
    }
}

_Static_assert(offsetof(struct config_inval_rule, line) == 0, "line first");
_Static_assert(offsetof(struct config_tls_cert, line) == 0, "line first");

static void
config_check_rule_elem(struct config_loader *ld, void *elem, yaml_node_t *item, const char *path)
{
    config_check_rule(ld, elem, item, path);
}

/*
 * A row's field before its table is walked: -1 for the types where 0 is a
 * value one may give, so that a key not given (or given wrong) stays apart
 * from it; a default, when the row has one, then replaces it. Other types
 * keep their zeroed field.
 */
static void
config_set_absent(const struct config_key *k, void *base)
{
    switch (k->type) {
    case CONFIG_T_DURATION_US:
        *CONFIG_AT(base, k->off, int64_t) = -1;
        return;
    case CONFIG_T_RATIO:
        *CONFIG_AT(base, k->off, double) = -1.0;
        return;
    default:
        return;
    }
}

/* "a, b, c": the names of a table's rows. */
static const char *
config_row_names(const struct config_key *keys, char *buf, size_t len)
{
    size_t off = 0;

    buf[0] = '\0';
    for (const struct config_key *k = keys; k->name != NULL; k++) {
        int n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", k->name);
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
    return buf;
}

/* Sets one row from its node, or from its default when node is NULL. */
static void
config_set(struct config_loader *ld, const struct config_key *k, void *base, yaml_node_t *node,
           int line, const char *path)
{
    const char *text;
    char what[128];

    switch (k->type) {
    case CONFIG_T_SECTION:
        /* A section that exists only to hold its keys ("budget:" with
         * none) is likelier a mistake than a wish for the defaults. */
        if ((k->flags & CONFIG_F_NONEMPTY) &&
            (config_is_null(node) ||
             (node->type == YAML_MAPPING_NODE &&
              node->data.mapping.pairs.top == node->data.mapping.pairs.start)))
            config_error(ld, line, path, "give at least one of %s",
                         config_row_names(k->sub, what, sizeof(what)));
        config_walk_map(ld, k->sub, base, node, line, path);
        return;
    case CONFIG_T_UPSTREAMS:
        config_walk_upstreams(ld, k, node, path);
        return;
    case CONFIG_T_ROUTES:
        config_walk_routes(ld, k, node, path);
        return;
    case CONFIG_T_RULES:
        config_walk_map_list(ld, k, base, node, path, sizeof(struct config_inval_rule), "rules",
                             config_check_rule_elem);
        return;
    case CONFIG_T_CERTS:
        config_walk_map_list(ld, k, base, node, path, sizeof(struct config_tls_cert), "{cert, key}",
                             NULL);
        return;
    case CONFIG_T_ADDR_LIST:
    case CONFIG_T_HOSTS:
    case CONFIG_T_METHODS:
    case CONFIG_T_STATUSES:
    case CONFIG_T_HEADER_NAMES:
    case CONFIG_T_COOKIE_NAMES:
    case CONFIG_T_QUERY_NAMES:
    case CONFIG_T_CIDR_LIST:
    case CONFIG_T_TIERS:
    case CONFIG_T_PATH_TEMPLATES:
    case CONFIG_T_TAG_TEMPLATES:
        if (node == NULL)
            config_set_default_list(ld, k, base, path);
        else
            config_set_list(ld, k, base, node, path);
        return;
    default:
        break;
    }
    if (node == NULL) {
        config_set_scalar(ld, k, base, k->def, 0, path);
        return;
    }
    text = config_scalar(ld, node, path, config_schema_expected(k, what, sizeof(what)));
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
        config_set_absent(&keys[nkeys++], base);
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

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */

/* Frees an array of n strings (some may be NULL after an error). */
static void
config_strings_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

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
    for (size_t i = 0; i < cfg->tls.nlisten; i++)
        config_addr_clear(&cfg->tls.listen[i]);
    free(cfg->tls.listen);
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        free(cfg->tls.certs[i].cert);
        free(cfg->tls.certs[i].key);
    }
    free(cfg->tls.certs);
    free(cfg->tls.ciphers);
    free(cfg->tls.ciphersuites);
    tls_ctx_free(&cfg->tls.ctx);
    free(cfg->error_log);
    free(cfg->access_log);
    config_addr_clear(&cfg->redis.addr);
    free(cfg->redis.password);
    free(cfg->redis.prefix);
    for (size_t i = 0; i < cfg->memcached.nservers; i++)
        config_addr_clear(&cfg->memcached.servers[i]);
    free(cfg->memcached.servers);
    free(cfg->memcached.prefix);
    free(cfg->invalidation.channel);
    free(cfg->invalidation.node_id);
    for (size_t i = 0; i < cfg->invalidation.npurge_allow; i++)
        config_cidr_clear(&cfg->invalidation.purge_allow[i]);
    free(cfg->invalidation.purge_allow);
    free(cfg->invalidation.purge_token);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        struct config_upstream *up = &cfg->upstreams[i];
        free(up->name);
        for (size_t j = 0; j < up->nservers; j++)
            config_addr_clear(&up->servers[j]);
        free(up->servers);
        free(up->tls.server_name);
        free(up->tls.ca_file);
        free(up->tls.cert);
        free(up->tls.key);
        free(up->tls.min_version);
        tls_client_free(&up->tls.client);
    }
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct config_route *r = &cfg->routes[i];
        free(r->name);
        config_strings_free(r->hosts, r->nhosts);
        free(r->path);
        pcre2_code_free(r->path_re);
        free(r->host_rewrite);
        config_strings_free(r->cache.key.drop_query, r->cache.key.ndrop_query);
        config_strings_free(r->cache.key.headers, r->cache.key.nheaders);
        config_strings_free(r->cache.key.cookies, r->cache.key.ncookies);
        config_strings_free(r->cache.strip_headers, r->cache.nstrip_headers);
        for (size_t j = 0; j < r->cache.nrules; j++) {
            struct config_inval_rule *rule = &r->cache.rules[j];
            rule_free(&rule->match);
            config_strings_free(rule->purge, rule->npurge);
            config_strings_free(rule->tags, rule->ntags);
        }
        free(r->cache.rules);
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
    config_walk_map(&ld, config_schema_top, ld.cfg, root, 1, "");
    config_settle(&ld);
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
 * Splits "http[s]://HOST[:PORT][/]" into the HOST:PORT to connect to (port
 * 80, or 443 for https, when not given), the authority as written (for
 * the Host header) and whether it is https. Returns -1 after reporting.
 */
static int
config_quick_url(struct config_loader *ld, const char *url, char *addr, size_t addrlen,
                 char *authority, size_t authlen, bool *tls)
{
    const char *a, *end;
    size_t len;
    bool has_port;

    if (url == NULL || url[0] == '\0') {
        config_error(ld, 0, "upstream", "expected a URL like http[s]://HOST[:PORT], got nothing");
        return -1;
    }
    *tls = strncasecmp(url, "https://", 8) == 0;
    if (!*tls && strncasecmp(url, "http://", 7) != 0)
        goto bad;
    a = url + (*tls ? 8 : 7);
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
    if (snprintf(addr, addrlen, "%s%s", authority,
                 has_port ? ""
                 : *tls   ? ":443"
                          : ":80") >= (int)addrlen)
        goto bad;
    return 0;

bad:
    config_error(ld, 0, "upstream", "expected a URL like http[s]://HOST[:PORT], got \"%s\"", url);
    return -1;
}

/*
 * Quick mode's memcached servers: "HOST:PORT[,HOST:PORT...]", spaces
 * around the commas allowed. Every bad item is reported.
 */
static void
config_quick_memcached(struct config_loader *ld, const char *list)
{
    struct config_memcached *mc = &ld->cfg->memcached;
    char *copy, *item, *next;
    size_t n = 1, max = CONFIG_MAX_MEMCACHED_SERVERS;

    for (const char *c = list; *c != '\0'; c++)
        n += *c == ',';
    if (n > max) {
        config_error(ld, 0, "memcached", "at most %zu servers, got %zu", max, n);
        return;
    }
    UTIL_ASSERT(mc->nservers == 0);
    mc->servers = util_xcalloc(n, sizeof(*mc->servers));
    copy = util_xstrdup(list);
    /* Not strtok_r: it would skip an empty item instead of refusing it. */
    for (item = copy; item != NULL; item = next) {
        struct config_addr *a = &mc->servers[mc->nservers];
        bool dup = false;
        char *end;

        next = strchr(item, ',');
        if (next != NULL)
            *next++ = '\0';
        item += strspn(item, " ");
        end = item + strlen(item);
        while (end > item && end[-1] == ' ')
            *--end = '\0';
        if (item[0] == '\0') {
            config_error(ld, 0, "memcached", "empty server in \"%s\" (expected HOST:PORT[,...])",
                         list);
            continue;
        }
        if (config_addr_parse(ld, a, item, 0, "memcached") < 0)
            continue;
        for (size_t j = 0; j < mc->nservers && !dup; j++)
            dup = mc->servers[j].len == a->len && memcmp(&mc->servers[j].ss, &a->ss, a->len) == 0;
        if (dup) {
            config_error(ld, 0, "memcached", "duplicate address \"%s\"", item);
            config_addr_clear(a);
            continue;
        }
        mc->nservers++;
    }
    free(copy);
}

struct config *
config_quick(const char *upstream_url, const char *listen, const char *admin, const char *redis,
             const char *memcached, char **err)
{
    struct config_loader ld = {.file = NULL};
    char addr[300], authority[280], host[256];
    struct config *cfg;
    bool tls = false;
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
    config_walk_map(&ld, config_schema_top, cfg, NULL, 0, "");
    config_walk_map(&ld, config_schema_upstream, up, NULL, 0, "upstream");
    config_walk_map(&ld, config_schema_route, r, NULL, 0, "route");
    config_errors_take(&ld, NULL);
    up->tls.enabled = false; /* https turns it on */

    up->name = util_xstrdup("upstream");
    r->upstream = up;
    /* Quick mode is for trying the cache: its one route caches. */
    r->cache.enabled = true;
    UTIL_ASSERT(cfg->nlisten == 1); /* the default listener, replaced if given */
    if (listen != NULL)
        config_addr_parse(&ld, &cfg->listen[0], listen, 0, "listen");
    if (admin == NULL) {
        /* admin.listen's default, as in a file, but one the user did not
         * ask for: it steps aside for a traffic listener on its port
         * rather than clash with it, and failing to bind it is not fatal. */
        UTIL_ASSERT(cfg->admin.len != 0);
        if (config_addr_port(&cfg->listen[0]) == config_addr_port(&cfg->admin))
            config_addr_clear(&cfg->admin);
        else
            cfg->admin_defaulted = true;
    } else if (strcmp(admin, "off") == 0) {
        config_addr_clear(&cfg->admin);
    } else {
        config_addr_parse(&ld, &cfg->admin, admin, 0, "admin");
    }
    if (config_quick_url(&ld, upstream_url, addr, sizeof(addr), authority, sizeof(authority),
                         &tls) == 0) {
        up->servers = util_xcalloc(1, sizeof(*up->servers));
        up->nservers = 1;
        config_addr_parse(&ld, &up->servers[0], addr, 0, "upstream");
        /* https: verified against the system's CAs, for the URL's host. */
        if (tls && !config_addr_host_name(addr, host, sizeof(host)))
            config_error(&ld, 0, "upstream",
                         "https needs a host name to verify the server, got \"%s\"", upstream_url);
        else if (tls && up->servers[0].len != 0)
            up->tls.enabled = true;
        config_settle_tls(&ld, up, NULL, 0, "upstream");
        /* Named after its origin, so that statistics and logs say which
         * one; not checked like a file's names: it holds ':' (and '[' ']'
         * for IPv6), which labels, JSON and the log take as they are. */
        r->name = util_xstrdup(addr);
        /* Like curl or nginx's proxy_pass: the origin sees its own name. */
        r->host_rewrite = util_xstrdup(authority);
    }

    if (redis != NULL)
        config_addr_parse(&ld, &cfg->redis.addr, redis, 0, "redis");
    if (memcached != NULL)
        config_quick_memcached(&ld, memcached);
    config_settle(&ld);

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
    if ((unsigned)lvl > CONFIG_LOG_DEBUG)
        return "?";
    return config_schema_log_levels[lvl];
}
