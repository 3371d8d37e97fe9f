/*
 * config_schema: the keys of tailcache.yaml, described as tables. Private
 * to the config module: only config.c and config_schema.c include it.
 *
 * Every key is a row (name, type, field, default, bounds, flags, help),
 * one table per mapping: the top level and its sections, an upstream pool,
 * a route and its cache and analytics sections, an invalidation rule. This
 * file owns the rows and what can be said about them without a file in
 * hand: the words a message uses for a type, bounds written the way a user
 * writes them, and the reference that config_print_reference() prints.
 * config.c walks a YAML tree against the rows and fills the struct each
 * table describes.
 *
 * Adding a key is adding a row (and its field in config.h); a new type is
 * also an enum config_type value here, a case in config.c's setters and
 * one in config_schema_expected() and the reference's type description.
 *
 * Defaults are YAML text and go through the same setters as the file, so a
 * default can never disagree with the rules. A list default is one plain
 * item ("*") or a flow list of plain items ("[a, b]", "[]"). A row with
 * no default that is left out keeps its zeroed field, except for the types
 * with an "absent" value (-1: DURATION_US, RATIO), so that 0 can be given.
 *
 * Everything here is constant data and pure functions: any thread.
 */
#ifndef TAILCACHE_CONFIG_SCHEMA_H
#define TAILCACHE_CONFIG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http_parser.h"

#define CONFIG_MAX_WORKERS 256
/* Most cache.memcached.servers, in a file or on the command line. */
#define CONFIG_MAX_MEMCACHED_SERVERS 64
/* uint64_t words of a CONFIG_T_STATUSES bit set: statuses 0..1023. */
#define CONFIG_STATUS_WORDS 16

enum config_type {
    CONFIG_T_SECTION,        /* a mapping described by row->sub, same struct */
    CONFIG_T_WORKERS,        /* unsigned: "auto" or an integer */
    CONFIG_T_UINT,           /* unsigned; a power of two with CONFIG_F_POW2 */
    CONFIG_T_SIZE,           /* size_t, bytes */
    CONFIG_T_DURATION,       /* unsigned, milliseconds */
    CONFIG_T_DURATION_US,    /* int64_t, microseconds, written in ms or coarser;
                                -1 when absent (a row without a default) */
    CONFIG_T_RATIO,          /* double in 0..1, a decimal like 0.01 or 1e-3 (bounds
                                fixed, min and max unused); -1.0 when absent */
    CONFIG_T_SECONDS,        /* int64_t, whole seconds; "off" is -1 with CONFIG_F_OFF */
    CONFIG_T_BOOL,           /* bool: true or false */
    CONFIG_T_LOG_LEVEL,      /* enum config_log_level, value i named row->names[i] */
    CONFIG_T_EVICTION,       /* enum config_eviction, likewise */
    CONFIG_T_TLS_VERSION,    /* enum config_tls_version, likewise */
    CONFIG_T_STRING,         /* char *, not empty */
    CONFIG_T_NAME,           /* char *, [A-Za-z0-9_.-]{1,64} */
    CONFIG_T_HOST,           /* char *, a Host header value */
    CONFIG_T_ADDR,           /* struct config_addr; "off" with CONFIG_F_OFF */
    CONFIG_T_ADDR_LIST,      /* struct config_addr * and a size_t count */
    CONFIG_T_HOSTS,          /* char ** and a size_t count: host patterns */
    CONFIG_T_METHODS,        /* uint32_t bit set */
    CONFIG_T_STATUSES,       /* uint64_t[16] bit set, bit s in [s / 64]; items min..max */
    CONFIG_T_HEADER_NAMES,   /* char ** and a size_t count: tokens, case-insensitive */
    CONFIG_T_COOKIE_NAMES,   /* char ** and a size_t count: tokens, case-sensitive */
    CONFIG_T_QUERY_NAMES,    /* char ** and a size_t count: query parameter names */
    CONFIG_T_PATH,           /* struct config_route path, kind row->path_kind */
    CONFIG_T_UPSTREAM_REF,   /* a name checked against upstreams after the walk */
    CONFIG_T_UPSTREAMS,      /* mapping: name -> pool described by row->sub */
    CONFIG_T_ROUTES,         /* sequence of routes described by row->sub */
    CONFIG_T_WORD,           /* char *, visible ASCII (no space, no control), min..max bytes */
    CONFIG_T_NODE_ID,        /* char *: "auto" is "<hostname>:<pid>", else as CONFIG_T_WORD */
    CONFIG_T_CIDR_LIST,      /* struct config_cidr * and a size_t count */
    CONFIG_T_TIERS,          /* enum config_tier[CONFIG_TIERS_MAX] and a size_t count;
                                value i named row->names[i]; no default: filled after the walk */
    CONFIG_T_RULES,          /* struct config_inval_rule * and a size_t count, each
                                described by row->sub */
    CONFIG_T_RULE_PATTERN,   /* struct rule_pattern * (rule.h), compiled */
    CONFIG_T_PATH_TEMPLATES, /* char ** and a size_t count: rule templates starting with '/' */
    CONFIG_T_TAG_TEMPLATES,  /* char ** and a size_t count: rule templates of tags */
    CONFIG_T_CERTS,          /* struct config_tls_cert * and a size_t count, each
                                described by row->sub */
};

#define CONFIG_F_REQUIRED 0x1u  /* no default: the key must be given */
#define CONFIG_F_OFF 0x2u       /* ADDR: "off" disables (len 0); SECONDS: "off" is -1 */
#define CONFIG_F_ONE_OF 0x4u    /* at most one row of the table with this flag */
#define CONFIG_F_POW2 0x8u      /* UINT: a power of two */
#define CONFIG_F_EMPTY 0x10u    /* list: an empty list is allowed */
#define CONFIG_F_SECRET 0x20u   /* the value is never quoted back in a message */
#define CONFIG_F_WRITES 0x40u   /* METHODS: safe methods (GET HEAD OPTIONS TRACE) refused */
#define CONFIG_F_NONEMPTY 0x80u /* SECTION: given, it must hold at least one key */

struct config_key {
    const char *name;
    enum config_type type;
    size_t off;        /* the field, in the struct the table describes */
    size_t off_n;      /* the count field of a list */
    const char *def;   /* default, as YAML text; NULL: none */
    uint64_t min, max; /* bounds, in the stored unit (count, bytes, ms, us, s) */
    unsigned flags;
    const struct config_key *sub;
    const char *const *names; /* LOG_LEVEL, EVICTION, TIERS: the values, NULL-terminated */
    enum config_path_kind path_kind;
    size_t max_items;    /* a list given in the file: most items; 0: no limit */
    const char *def_doc; /* the default in words, when def cannot hold it (reference only) */
    const char *help;
};

/* The tables walked from the top, and the two walked per item. */
extern const struct config_key config_schema_top[];
extern const struct config_key config_schema_upstream[];
extern const struct config_key config_schema_route[];

/* Names of enum config_log_level values, NULL-terminated. */
extern const char *const config_schema_log_levels[];

/* Names of enum config_tier values, NULL-terminated. */
extern const char *const config_schema_tiers[];

/* The known methods of routes[].methods; the last has a NULL name. */
struct config_schema_method {
    const char *name;
    enum http_method method;
};
extern const struct config_schema_method config_schema_methods[];

/*
 * Writes what a value of row k looks like, for "expected X, got Y":
 * "a size like \"8k\" or \"1m\"", "true or false", "a header name or a
 * list of them". Returns buf, or a constant string.
 */
const char *config_schema_expected(const struct config_key *k, char *buf, size_t len);

/*
 * Writes v, a bound of row k in its stored unit, the way a user would
 * write it: "64k", "24h", "1y", "256". Returns buf.
 */
const char *config_schema_fmt(const struct config_key *k, uint64_t v, char *buf, size_t len);

/*
 * Writes names joined by sep, the last two by last ("a, b or c" with ", "
 * and " or "). Truncates to len. Returns buf.
 */
const char *config_schema_join(const char *const *names, const char *sep, const char *last,
                               char *buf, size_t len);

#endif
