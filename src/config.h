/*
 * config: the running configuration, loaded from YAML (libyaml) or built
 * from the command line in quick mode.
 *
 * Keys are described by tables (key, type, default, bounds, help); the file
 * is parsed, then validated in one pass, and every error is reported as
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
};

enum config_path_kind {
    CONFIG_PATH_PREFIX,
    CONFIG_PATH_EXACT,
    CONFIG_PATH_REGEX,
};

struct config_route {
    char *name;
    int line;
    char **hosts; /* "example.com", "*.example.com" or "*"; none = any host */
    size_t nhosts;
    enum config_path_kind path_kind;
    char *path;    /* the prefix, exact path or regex source */
    void *path_re; /* pcre2_code * (JIT-compiled) when path_kind is REGEX */
    uint32_t methods; /* bit (1u << enum http_method); 0 = any method */
    struct config_upstream *upstream;
    char *host_rewrite; /* Host sent upstream; NULL keeps the client's */
};

struct config {
    atomic_int refs;
    char *file; /* NULL in quick mode */

    unsigned workers; /* resolved: never 0 after loading */
    struct config_addr *listen;
    size_t nlisten;
    struct config_addr admin; /* admin.len == 0 when disabled */

    struct http_limits limits;
    size_t max_body_chunk_line; /* chunk-size line / trailer bytes limit */

    unsigned client_header_timeout_ms; /* to receive a whole request head */
    unsigned client_keepalive_timeout_ms;
    unsigned client_idle_timeout_ms; /* between reads of a body or writes */
    unsigned drain_timeout_ms;       /* SIGTERM: longest wait for in-flight requests */

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
 * URL's server (http://HOST[:PORT], port 80 by default) and one route
 * "default" for every host and path, listening on listen (NULL for
 * 127.0.0.1:8080), admin listener on admin (NULL or "off": disabled); every
 * other key at its default, except that the route's host_rewrite is the
 * URL's HOST[:PORT] as written, so a name-based origin sees its own name.
 * Returns a new config or NULL with *err set as for config_load(), its
 * lines without a file and line: "upstream: ...", "listen: ...", "admin: ...".
 */
struct config *config_quick(const char *upstream_url, const char *listen, const char *admin,
                            char **err);

/* Takes a reference; returns cfg. */
struct config *config_ref(struct config *cfg);

/* Drops a reference and clears *cfgp; the last one frees. Accepts NULL. */
void config_unref(struct config **cfgp);

/* "error", "warn", "info", "debug". */
const char *config_log_level_name(enum config_log_level lvl);

/* Writes every key with its type, default and help text (tailcache --help-config). */
void config_print_reference(FILE *out);

#endif
