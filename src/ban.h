/*
 * ban: the invalidations tailcache has applied, kept so objects stored
 * before them are never served again from any layer.
 *
 * Every invalidation (purge of a URL, ban by path prefix or regex, purge
 * by tag, purge of a route) is recorded as a ban with the wall-clock time
 * it was made. Memory entries are removed at once (cache_sweep()); objects
 * in the shared tiers may outlive that on other nodes or in tiers that
 * cannot be enumerated (memcached), so an object read from a shared tier
 * is checked against the bans made after it was stored (envelope
 * stored_at_us) and dropped when one matches.
 *
 * Bounded cost: the list keeps at most max_bans bans. Adding one to a full
 * list drops the oldest (by time) and raises the floor to that ban's
 * time: an L2 object stored at or before the floor is treated as banned
 * (a miss, never a wrong hit). A check therefore costs at most max_bans
 * matches (a regex ban is a PCRE2 JIT match over the path), done only for
 * L2 hits, and in practice only the bans made since the object was stored.
 *
 * What a ban matches, against a cache key (cache_key.h layout: class,
 * scheme, host, path['?'query], extra parts; a variant key adds '\x1e'
 * and the variant) and, for tags, the stored header lines:
 *   URL     class "G", the scheme, host and path['?'query] equal to the
 *           ban's key prefix (all header/cookie parts and variants; "/a"
 *           does not cover "/ab" nor "/a?x=1");
 *   PREFIX  path['?'query] starts with arg; host equal when the ban has
 *           one; any class;
 *   REGEX   arg (PCRE2, unanchored) matches path['?'query]; host as for
 *           PREFIX; any class. A match PCRE2 cannot decide (its
 *           backtracking cap, no memory) counts as a match: fail safe;
 *   TAG     arg is one of the tags in a Surrogate-Key or Cache-Tag field
 *           (field names case-insensitive; tags separated by spaces, tabs
 *           or commas; the whole tag, case-sensitive);
 *   ROUTE   route_match() of the config the ban was made with picks the
 *           route named arg for (host, path without the query, GET).
 * A key that does not follow the layout matches no ban but TAG.
 *
 * Thread safety: a ban_list may be used from any thread (one mutex);
 * struct ban values are immutable once made and refcounted.
 */
#ifndef TAILCACHE_BAN_H
#define TAILCACHE_BAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

#define BAN_KINDS(X)                                                                               \
    X(URL, "url")                                                                                  \
    X(PREFIX, "prefix")                                                                            \
    X(REGEX, "regex")                                                                              \
    X(TAG, "tag")                                                                                  \
    X(ROUTE, "route")

enum ban_kind {
#define BAN_KIND_ENUM(name, text) BAN_##name,
    BAN_KINDS(BAN_KIND_ENUM)
#undef BAN_KIND_ENUM
};

struct ban;
struct ban_list;

/*
 * A new ban (one reference), or NULL with a message in err[0..errlen)
 * (a regex that does not compile, an empty argument, a URL argument that
 * is not four parts starting with "G\n", a tag holding a separator, a
 * route name that cfg does not have or a NULL cfg; err may be NULL).
 * arg: URL: the primary key prefix "G\nscheme\nhost\npath[?query]" (as
 * cache_key_primary() writes its first four parts); PREFIX/REGEX: the
 * path prefix / pattern; TAG: the tag; ROUTE: the route name. arg is
 * copied. host: PREFIX and REGEX only, NULL or "" for any host; lower-cased
 * here and then compared exactly with the key's host (which is lower case
 * without a default port, so give the port when it is not the default).
 * cfg: ROUTE only (a reference is taken). time_us: when it was made.
 */
struct ban *ban_new(enum ban_kind kind, const char *arg, size_t arg_len, const char *host,
                    struct config *cfg, int64_t time_us, char *err, size_t errlen);

struct ban *ban_ref(struct ban *b);
void ban_unref(struct ban **bp); /* clears *bp; accepts NULL */

enum ban_kind ban_kind_of(const struct ban *b);

/* The ban's argument and host as given to ban_new() (host: "" when none);
 * borrowed, valid while the ban lives. */
const char *ban_arg(const struct ban *b, size_t *len);
const char *ban_host(const struct ban *b, size_t *len);
const char *ban_kind_name(enum ban_kind k);
int64_t ban_time(const struct ban *b);

/* True when key (and for TAG bans the stored header lines head, which may
 * be NULL for non-response entries) is covered by b. Key-only bans (all
 * but TAG) ignore head. */
bool ban_matches(const struct ban *b, const char *key, size_t key_len, const char *head,
                 size_t head_len);

/* True when b's match does not depend on the stored head (all but TAG). */
bool ban_key_only(const struct ban *b);

/* A new list keeping at most max_bans (>= 1). Never NULL. */
struct ban_list *ban_list_new(unsigned max_bans);
void ban_list_free(struct ban_list **blp);

/* Appends b (takes its own reference), dropping the oldest ban when the
 * list is full (see above; b itself when it is the oldest). Bans may be
 * added out of time order (from other nodes); checks compare times, not
 * positions. A ban at or before the floor is already covered and is not
 * kept. */
void ban_list_add(struct ban_list *bl, struct ban *b);

/* True when an object with this key and head, stored at stored_at_us, is
 * covered by a ban made at or after stored_at_us, or stored_at_us is at
 * or before the floor. */
bool ban_list_check(struct ban_list *bl, const char *key, size_t key_len, const char *head,
                    size_t head_len, int64_t stored_at_us);

/* Raises the floor to floor_us (it never goes down): objects stored at or
 * before it count as banned. For a ban log that could not be read whole. */
void ban_list_set_floor(struct ban_list *bl, int64_t floor_us);

/* New references to the bans held (oldest first), at most cap; returns
 * how many. */
size_t ban_list_snapshot(struct ban_list *bl, struct ban **out, size_t cap);

/* Bans held now (tests, stats). */
size_t ban_list_count(struct ban_list *bl);

#endif
