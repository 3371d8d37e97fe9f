/*
 * route: picks the route for a request. Routes are tried in config order
 * and the first match wins. A route matches when the host matches one of
 * its host patterns (exact, "*.suffix" wildcard, or "*"; case-insensitive,
 * any ":port" on the request host ignored), the path matches its prefix,
 * exact path or PCRE2 regex, and the method is in its method set.
 *
 * Callable from any worker thread: regex matching uses per-thread match
 * data, allocated once per thread on first use.
 */
#ifndef TAILCACHE_ROUTE_H
#define TAILCACHE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http_parser.h"

/* Returns the matching route (borrowed from cfg) or NULL when none matches. */
const struct config_route *route_match(const struct config *cfg, const char *host, size_t host_len,
                                       const char *path, size_t path_len, enum http_method method);

/* True when host (":port" ignored) matches the pattern ("*", "*.x.y" or exact). */
bool route_host_matches(const char *pattern, const char *host, size_t host_len);

/* Frees the calling thread's regex match data; call before a worker thread exits. */
void route_thread_cleanup(void);

#endif
