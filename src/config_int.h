/*
 * config_int: the loader's state and helpers, shared by the two files that
 * load a config: config.c (parsing, the table walk, quick mode, freeing)
 * and config_check.c (the checks across keys, run once the file is read).
 * Nothing else includes this header.
 */
#ifndef TAILCACHE_CONFIG_INT_H
#define TAILCACHE_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

#include "config.h"

#define CONFIG_PATH_MAX 256 /* a key's path, "routes[3].cache.key.headers[2]" */

struct config_error;

struct config_loader {
    const char *file; /* NULL in quick mode */
    struct config *cfg;
    yaml_document_t *doc;
    struct config_error *errs;
    size_t nerrs;
    yaml_node_t **route_nodes; /* the mapping of each route, for the last pass */
};

/* Records "file:line: path: message" (all errors are kept, sorted by line). */
void config_error(struct config_loader *ld, int line, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A node's line (1-based), 0 for NULL. */
int config_line(const yaml_node_t *node);

/* True when node is an explicit null (~, null, empty). */
bool config_is_null(const yaml_node_t *node);

/* The value of key in a mapping node, or NULL (map may be NULL). */
yaml_node_t *config_map_get(struct config_loader *ld, const yaml_node_t *map, const char *key);

/* Item i of a list node (or the node itself when it is a scalar standing
 * for a one-item list), its path written to buf. */
yaml_node_t *config_list_item(struct config_loader *ld, yaml_node_t *node, size_t i,
                              const char *path, char *buf, size_t len);

/* buf = path + "." + key. */
void config_path_key(char *buf, size_t len, const char *path, const char *key);

/* config_check.c: the checks across keys, and the values settled from
 * them (defaults that depend on other keys, TLS contexts). */
void config_check_refs(struct config_loader *ld, yaml_node_t *root);
void config_settle(struct config_loader *ld);

#endif
