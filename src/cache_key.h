/*
 * cache_key: the bytes that name a cached response.
 *
 * A response is found in two steps. The primary key names the resource:
 * method class, scheme, normalised host, path and (possibly normalised)
 * query, plus the request headers and cookies a route adds. Under it, a
 * stored response with Vary is told apart by its variant key: the
 * request's normalised values of the fields the response varies on.
 *
 * Keys are built in caller buffers and never allocated: the functions run
 * on every request. Nothing is hashed here; the cache hashes the bytes.
 * Keys are not NUL-terminated.
 *
 * Primary key layout, parts joined by '\n' (never found in any part: the
 * parser admits no CTL in a target, host or field value):
 *
 *   class '\n' scheme '\n' host '\n' path ['?' query]
 *     { '\n' 'h' header-name ['=' value] }   one per configured header
 *     { '\n' 'c' cookie-name ['=' value] }   one per configured cookie
 *
 *   e.g. "G\nhttps\nexample.com\n/a?x=1\nhaccept-language=en\nclang"
 *   (GET https://Example.COM:443/a?x=1, Accept-Language: en, no "lang" cookie)
 *
 *   class   "G" for GET and HEAD, else 'M' and the method token ("MPOST"),
 *           so an extension method named "G" is not GET;
 *   host    lower-cased, one trailing dot of a name removed, the port
 *           written in decimal without leading zeros and left out when it
 *           is empty or the scheme's default (80 http, 443 https); empty
 *           when an HTTP/1.0 request has no Host (the parser never gives
 *           an empty one);
 *   path    as received, never decoded; '?' follows only when a query is
 *           kept (see struct cache_key_opts);
 *   value   present fields and cookies have '=' even when empty, absent
 *           ones none; names cannot hold '=' (tokens).
 *
 * Every part is free of '\n', the first four parts always exist and each
 * later part carries its kind and name, so two requests give equal keys
 * only when they agree on every part: no bytes can shift between parts.
 *
 * Thread safety: pure functions over caller memory; any thread.
 */
#ifndef TAILCACHE_CACHE_KEY_H
#define TAILCACHE_CACHE_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "http_parser.h"

/* Query parameters sorted at most; a query with more (after dropping) keeps its order. */
#define CACHE_KEY_SORT_MAX 128

/* Distinct names in a response's Vary fields at most; more is "not storable". */
#define CACHE_KEY_VARY_MAX 64

/*
 * How a route builds primary keys. The arrays are borrowed (the config's)
 * and hold NUL-terminated names; NULL with a count of 0 is fine, and so is
 * a NULL opts (every option off).
 *
 * The query is kept as received, and "/a?" differs from "/a" (RFC 3986
 * 6.2.3: an empty component is not dropped unless the scheme says so),
 * unless it is normalised: with sort_query or any drop_params it is split
 * on '&', empty parameters and dropped ones are removed, the rest are
 * sorted when sort_query is set (stable, by the bytes of "name=value") or
 * else kept in order, and they are joined again with '&'. An empty result
 * is no query at all, so "/a", "/a?", "/a?&" and "/a?utm=1" (utm dropped)
 * share a key. Parameters are compared as received, never percent-decoded.
 * ignore_query leaves the query out of the key whatever it is.
 */
struct cache_key_opts {
    bool sort_query;
    bool ignore_query;
    char *const *drop_params; /* parameter names: the bytes before the first '=', exact */
    size_t ndrop_params;
    char *const *headers; /* request field names, case-insensitive; tokens */
    size_t nheaders;
    char *const *cookies; /* cookie names, case-sensitive; tokens */
    size_t ncookies;
};

/*
 * True when name can be a header or cookie name in opts: a non-empty
 * token (RFC 9110 5.6.2). Config validation calls it; with other names the
 * keys of different configurations could collide.
 */
bool cache_key_name_valid(const char *name);

/*
 * Writes the primary key of req (layout above) to buf[0..cap) and returns
 * its length, or -1 when it does not fit in cap bytes or scheme is not a
 * URI scheme (RFC 3986 3.1). scheme is the one the client used ("http",
 * "https"; case-insensitive). Header values are all instances of the field
 * joined with ", " (each already OWS-trimmed by the parser). A cookie is
 * looked for in every Cookie field, pairs split on ';' with OWS around
 * names and values ignored; the first pair with that name wins, and a pair
 * without '=' names no cookie. buf is garbage after -1.
 */
ssize_t cache_key_primary(char *buf, size_t cap, const struct http_request *req, const char *scheme,
                          const struct cache_key_opts *o);

/*
 * Writes the normalised list of field names a response varies on to
 * buf[0..cap): every element of every Vary field, lower-cased, without
 * duplicates, sorted (bytewise), joined with ','. Returns its length, 0
 * when the response has no Vary or only empty ones, or -1 when the
 * response cannot be stored: Vary holds "*" or an element that is not a
 * field name, more than CACHE_KEY_VARY_MAX distinct names, or the list
 * does not fit in cap bytes. The result is what cache_key_variant() takes;
 * store it with the response.
 */
ssize_t cache_key_vary_names(char *buf, size_t cap, const struct http_head *resp_head);

/*
 * Writes the variant key of req under the normalised list vary[0..vary_len)
 * (from cache_key_vary_names()) to buf[0..cap) and returns its length; an
 * empty list gives 0. Returns -1 when the list holds "*" or an element that
 * is not a field name, or the key does not fit in cap bytes (buf is garbage
 * then).
 *
 * Per name, in list order and joined by '\n': the name, then '=' and the
 * value when the request has the field (nothing when absent):
 *   - accept-encoding: the acceptable codings among br, deflate, gzip
 *     ("x-gzip" counts as gzip) and zstd, in that order, joined with ','.
 *     A coding is acceptable when listed with a q above 0, or when not
 *     listed and "*" is, with a q above 0; the first listing wins; an
 *     invalid qvalue counts as 0. Absent, empty and "identity" alike give
 *     "accept-encoding=", since none of those lets the origin compress;
 *   - any other field: every instance's list elements, OWS around them and
 *     empty ones removed, runs of SP/HTAB inside them made one SP (quoted
 *     strings are kept whole), joined with ','. Case is kept.
 */
ssize_t cache_key_variant(char *buf, size_t cap, const char *vary, size_t vary_len,
                          const struct http_request *req);

#endif
