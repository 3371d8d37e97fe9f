/*
 * rule: path patterns with named captures, and the templates filled from
 * them, for invalidation rules (routes[].cache.invalidate).
 *
 *   pattern  "/api/products/{id}"     literal bytes, and {name} captures
 *                                     matching one non-empty path segment
 *                                     (no '/'); a final "*" matches any
 *                                     rest (including nothing)
 *   template "/api/products/{id}"     literal bytes, {name} replaced by
 *                                     the capture's bytes (as received,
 *                                     never decoded)
 *
 * A pattern matches the whole path (no query). Names are
 * [A-Za-z_][A-Za-z0-9_]*, at most RULE_CAPTURES_MAX per pattern, each once.
 *
 * Thread safety: a compiled pattern is immutable; any thread.
 */
#ifndef TAILCACHE_RULE_H
#define TAILCACHE_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define RULE_CAPTURES_MAX 8

struct rule_pattern;

/* What a match captured: spans into the matched path. */
struct rule_vars {
    const char *p[RULE_CAPTURES_MAX];
    size_t n[RULE_CAPTURES_MAX];
};

/* A compiled pattern (owned by the caller: rule_free()), or NULL with a
 * message in err[0..errlen). A pattern starts with '/' and is visible
 * ASCII; a path segment holds at most one capture, and not one with the
 * final "*"; a capture followed by literal text in its segment ("{id}.json")
 * takes the segment less that suffix. */
struct rule_pattern *rule_compile(const char *pattern, char *err, size_t errlen);

void rule_free(struct rule_pattern **pp); /* clears *pp; accepts NULL */

/* True when the whole path matches; fills *vars (spans into path; the
 * contents are unspecified when it does not match; vars may be NULL). */
bool rule_match(const struct rule_pattern *p, const char *path, size_t len, struct rule_vars *vars);

/* 0 when every {name} in tmpl is a capture of p, else -1 with a message
 * (for the config loader). */
int rule_check_template(const struct rule_pattern *p, const char *tmpl, char *err, size_t errlen);

/* Writes tmpl with the captures filled in to buf[0..cap), NUL-terminated;
 * returns the length (without the NUL), or -1 when it does not fit (the
 * length must be below cap) or tmpl is malformed or names an unknown
 * capture. */
ssize_t rule_expand(const struct rule_pattern *p, const struct rule_vars *vars, const char *tmpl,
                    char *buf, size_t cap);

#endif
