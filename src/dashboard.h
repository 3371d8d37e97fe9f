/*
 * dashboard: the admin listener's /dashboard page, one self-contained
 * HTML document (src/dashboard.html) compiled in as a C string at build
 * time by src/dashboard_html.awk. Read-only, static storage: serve it by
 * reference, never free it.
 */
#ifndef TAILCACHE_DASHBOARD_H
#define TAILCACHE_DASHBOARD_H

#include <stddef.h>

/* The page's bytes (NUL-terminated, but serve dashboard_html_len bytes). */
extern const char dashboard_html[];
extern const size_t dashboard_html_len;

#endif
