/*
 * cache_policy: the rules of a shared HTTP cache (RFC 9111, with RFC 5861
 * stale-while-revalidate / stale-if-error, RFC 8246 immutable and the
 * conditional requests of RFC 9110 13), as pure functions.
 *
 * Nothing here does I/O, reads the clock or allocates: every time is an
 * argument (int64_t seconds since the epoch, "now" being whatever the
 * caller says), every string points into the caller's message or buffer.
 * Every function may therefore be called from any thread.
 *
 * The life of a response, in calls:
 *   miss:  cache_policy_storable() says whether it may be stored (and why
 *          not); cache_policy_meta() computes the freshness facts kept in
 *          the object; cache_policy_stored_head() gives the header lines.
 *   hit:   cache_policy_cc_request() parses the request's directives;
 *          cache_policy_decide() says FRESH, STALE_REVALIDATE_BG or STALE;
 *          cache_policy_not_modified() says whether a client's conditional
 *          request is answered 304 from the stored validators.
 *   stale: cache_policy_revalidation() gives If-None-Match and
 *          If-Modified-Since for the upstream request; on a 304,
 *          cache_policy_304_updates() checks it is for the stored response,
 *          cache_policy_merge_304() builds the new header lines and
 *          cache_policy_refresh() the new freshness facts.
 *
 * Stored header block: the header lines of a stored response, exactly
 * "Name: value\r\n" repeated, no status line, no empty line, no framing
 * (Content-Length, Transfer-Encoding), no hop-by-hop field, no Age. It is
 * what struct obj keeps in head/head_len.
 *
 * Output buffers follow snprintf: a function writing a block returns the
 * length of the whole result, writes at most cap bytes and NUL-terminates
 * when cap > 0; a return >= cap means truncated, and the caller retries
 * with return + 1 bytes (cap 0 with buf NULL just measures).
 */
#ifndef TAILCACHE_CACHE_POLICY_H
#define TAILCACHE_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_parser.h"
#include "obj.h"

/* Delta-seconds larger than this are taken as this (RFC 9111 1.2.2). */
#define CACHE_POLICY_DELTA_MAX INT64_C(2147483648)

/* Buffer size for an IMF-fixdate and its NUL ("Sun, 06 Nov 1994 08:49:37 GMT"). */
#define CACHE_POLICY_DATE_LEN 30

/* --- struct obj_meta flags ------------------------------------------------ */

/* Every use must be revalidated first (response no-cache, qualified or not). */
#define CACHE_POLICY_F_NO_CACHE (1u << 0)
/* Never served stale: must-revalidate, proxy-revalidate, or s-maxage (which
 * implies proxy-revalidate, RFC 9111 5.2.2.10). */
#define CACHE_POLICY_F_MUST_REVALIDATE (1u << 1)
/* MUST_REVALIDATE came only from s-maxage and the origin itself sent
 * stale-while-revalidate or stale-if-error: those explicit windows (swr,
 * sie, without the route's additions) still apply. */
#define CACHE_POLICY_F_ORIGIN_STALE (1u << 2)
#define CACHE_POLICY_F_HAS_ETAG (1u << 3)
#define CACHE_POLICY_F_HAS_LAST_MODIFIED (1u << 4) /* a valid Last-Modified date */
/* immutable (RFC 8246): while fresh, a request max-age (a reload) does not
 * force revalidation; request no-cache (a forced reload) still does. */
#define CACHE_POLICY_F_IMMUTABLE (1u << 5)
#define CACHE_POLICY_F_HEURISTIC (1u << 6) /* lifetime: 10% of Date - Last-Modified */
#define CACHE_POLICY_F_FORCED (1u << 7)    /* lifetime is the route's force_ttl */

/* --- Cache-Control -------------------------------------------------------- */

/*
 * The directives of every Cache-Control field of a message, request and
 * response directives alike (each side reads its own). Names are matched
 * case-insensitively, arguments may be tokens or quoted-strings, unknown
 * directives are ignored, and a directive given twice keeps its first
 * value (RFC 9111 4.2.1). no-cache and private with field names count as
 * the plain directives: a stricter reading than the RFC's, never a looser.
 *
 * Delta-seconds fields are -1 when absent. Larger values than
 * CACHE_POLICY_DELTA_MAX are capped. An invalid argument (missing, not
 * digits, or a malformed element) takes the most restrictive meaning:
 * max-age, s-maxage, stale-while-revalidate, stale-if-error become 0
 * (stale, no window), min-fresh becomes CACHE_POLICY_DELTA_MAX, and
 * max-stale is ignored.
 */
struct cache_policy_cc {
    bool no_store;
    bool no_cache;
    bool private_;
    bool public_;
    bool must_revalidate;
    bool proxy_revalidate;
    bool must_understand;
    bool immutable;
    bool only_if_cached; /* request: the caller answers 504 rather than fetch */
    int64_t max_age;
    int64_t s_maxage;
    int64_t max_stale; /* request; CACHE_POLICY_DELTA_MAX when given without a value */
    int64_t min_fresh; /* request */
    int64_t stale_while_revalidate;
    int64_t stale_if_error;
};

/* Parses every Cache-Control field of h into *out (always filled). */
void cache_policy_cc_parse(const struct http_head *h, struct cache_policy_cc *out);

/* The request's directives: cache_policy_cc_parse(), and Pragma: no-cache
 * counts as no-cache when the request has no Cache-Control field (RFC 9111
 * 5.4). */
void cache_policy_cc_request(const struct http_request *req, struct cache_policy_cc *out);

/* --- HTTP-date ------------------------------------------------------------ */

/*
 * Parses an HTTP-date (RFC 9110 5.6.7): IMF-fixdate, or the obsolete
 * RFC 850 and asctime formats; names and "GMT" match case-insensitively
 * (RFC 9111 4.2). now resolves an RFC 850 two-digit year: the year with
 * those digits not more than 50 years after now. Returns seconds since the
 * epoch (dates before 1970 give 0), or -1 when s is not a valid HTTP-date
 * (wrong format, other zone, day not in the month, trailing bytes).
 */
int64_t cache_policy_date_parse(const char *s, size_t len, int64_t now);

/* Writes t as an IMF-fixdate into buf (CACHE_POLICY_DATE_LEN bytes make
 * room); t is clamped to years 1970..9999. Returns the length (29), as
 * snprintf does. */
size_t cache_policy_date_format(int64_t t, char *buf, size_t cap);

/* --- per-route policy ----------------------------------------------------- */

struct cache_policy_route {
    /* Lifetime when the origin gives no explicit freshness (no s-maxage,
     * max-age or Expires); -1: none, use the heuristic. It also makes any
     * status of the set below storable without explicit freshness. */
    int64_t default_ttl;
    /* -1: off. Else the lifetime of every storable response, whatever the
     * origin says, and a response with no-cache is then no longer
     * revalidated on each use. It never makes storable what the rules
     * refuse (no-store, private, Set-Cookie, Authorization, Vary: *...). */
    int64_t force_ttl;
    /* Stale windows (seconds) granted by the route; the larger of these and
     * the origin's applies. Never used when the response forbids serving
     * stale (no-cache, must-revalidate, proxy-revalidate, s-maxage). */
    int64_t stale_while_revalidate;
    int64_t stale_if_error;
    /* Cap of the heuristic lifetime; 0 disables heuristic freshness. */
    int64_t heuristic_max;
    /* Store responses carrying Set-Cookie (and keep the field). */
    bool allow_set_cookie;
    /* For the caller to pass to cache_policy_decide(). */
    bool honour_client_no_cache;
    /* Statuses that may be stored: bit (status - 100), 100..599. */
    uint64_t statuses[8];
};

/* Defaults: no default or forced TTL, no stale windows, heuristic capped at
 * one day, Set-Cookie refused, client no-cache honoured, statuses the RFC
 * 9110 15.1 heuristically cacheable set (200 203 204 206 300 301 308 404
 * 405 410 414 501; 206 is refused anyway, see PARTIAL). */
void cache_policy_route_init(struct cache_policy_route *r);

/* Adds (on) or removes a status; a status outside 100..599 is ignored. */
void cache_policy_route_set_status(struct cache_policy_route *r, int status, bool on);

bool cache_policy_route_has_status(const struct cache_policy_route *r, int status);

/* --- storability and freshness -------------------------------------------- */

#define CACHE_POLICY_REASONS(X)                                                                    \
    X(STORED, "stored")                   /* storable */                                           \
    X(METHOD, "method")                   /* only GET and HEAD responses are stored */             \
    X(NO_STORE, "no_store")               /* request or response no-store */                       \
    X(STATUS, "status")                   /* not final, 304, or not in the route's set */          \
    X(MUST_UNDERSTAND, "must_understand") /* must-understand with a status we do not know */       \
    X(PARTIAL, "partial")                 /* 206: ranges are not combined, so never stored */      \
    X(PRIVATE, "private")                 /* private: not for a shared cache */                    \
    X(AUTHORIZATION, "authorization")     /* request Authorization, no public/s-maxage/m-r */      \
    X(SET_COOKIE, "set_cookie")           /* Set-Cookie and the route does not allow it */         \
    X(VARY_STAR, "vary_star")             /* Vary: * never matches a later request */              \
    X(NO_FRESHNESS, "no_freshness")       /* nothing makes it reusable */                          \
    X(TOO_MANY_FIELDS, "too_many_fields") /* a merged head over HTTP_HEADERS_CAP lines */

enum cache_policy_reason {
#define CACHE_POLICY_REASON_ENUM(name, str) CACHE_POLICY_R_##name,
    CACHE_POLICY_REASONS(CACHE_POLICY_REASON_ENUM)
#undef CACHE_POLICY_REASON_ENUM
};

/* The reason's name for logs and statistics ("no_store"), "?" if unknown. */
const char *cache_policy_reason_name(enum cache_policy_reason r);

/*
 * True when resp, the answer to req, may be stored by a shared cache
 * (RFC 9111 3, 3.5), with the route's policy. *reason (may be NULL) is
 * CACHE_POLICY_R_STORED, or the first rule that refused, checked in this
 * order: method; request no-store; status final and not 304; must-
 * understand; 206; the route's status set; response no-store; private;
 * Authorization; Set-Cookie; Vary: *; freshness.
 *
 * Refinements of the RFC: must-understand with a status whose caching we
 * implement makes a response no-store storable (RFC 9111 5.2.2.3 SHOULD);
 * NO_FRESHNESS also covers a response that could never be reused: lifetime
 * 0 (or no-cache), no validator to revalidate it with, and no stale window.
 * A stored response with no-cache is revalidated on every use
 * (CACHE_POLICY_F_NO_CACHE). A HEAD response is storable: the caller keys
 * it apart from GET. now is the response time (for Expires without Date).
 */
bool cache_policy_storable(const struct http_request *req, const struct http_response *resp,
                           const struct cache_policy_route *route, int64_t now,
                           enum cache_policy_reason *reason);

/*
 * Fills *out with the freshness facts of resp (whether storable or not):
 * date_value is Date, or response_time when it is missing or invalid;
 * age_value the Age field (0 when missing or invalid); lifetime per RFC
 * 9111 4.2.1: force_ttl, else s-maxage, else max-age, else Expires - Date
 * (0 when Expires is invalid or past), else default_ttl, else 10% of
 * Date - Last-Modified capped at heuristic_max for a heuristically
 * cacheable status or a public response, else 0; swr and sie the larger of
 * the origin's and the route's windows (0 when stale serving is forbidden,
 * see CACHE_POLICY_F_ORIGIN_STALE); flags the CACHE_POLICY_F_* bits.
 */
void cache_policy_meta(const struct http_response *resp, const struct cache_policy_route *route,
                       int64_t request_time, int64_t response_time, struct obj_meta *out);

/*
 * current_age of RFC 9111 4.2.3:
 *   apparent_age = max(0, response_time - date_value)
 *   corrected_age_value = age_value + (response_time - request_time)
 *   corrected_initial_age = max(apparent_age, corrected_age_value)
 *   current_age = corrected_initial_age + (now - response_time)
 * A negative response delay or resident time (a clock stepping back)
 * counts as 0, so the age never goes below the received Age.
 */
int64_t cache_policy_current_age(const struct obj_meta *m, int64_t now);

/* --- serving decision ----------------------------------------------------- */

#define CACHE_POLICY_DECISIONS(X)                                                                  \
    X(FRESH, "fresh")                          /* serve */                                         \
    X(STALE_REVALIDATE_BG, "stale_revalidate") /* serve now, revalidate in the background */       \
    X(STALE, "stale")                          /* revalidate or fetch before serving */

enum cache_policy_decision {
#define CACHE_POLICY_DECISION_ENUM(name, str) CACHE_POLICY_##name,
    CACHE_POLICY_DECISIONS(CACHE_POLICY_DECISION_ENUM)
#undef CACHE_POLICY_DECISION_ENUM
};

/* The decision's name, "?" if unknown. */
const char *cache_policy_decision_name(enum cache_policy_decision d);

struct cache_policy_info {
    int64_t age;         /* current_age */
    int64_t ttl_left;    /* lifetime - age: negative once stale */
    bool stale;          /* age >= lifetime: what would be served is stale */
    bool stale_if_error; /* should the origin fail now, this may be served stale */
};

/*
 * Decides how a stored response with meta m answers a request with
 * directives req_cc (NULL: none) at now. The first rule that applies:
 *   - NO_CACHE flag, or request no-cache (and Pragma): STALE;
 *   - age > request max-age (not while fresh and immutable), or
 *     ttl_left < request min-fresh: STALE;
 *   - age < lifetime: FRESH;
 *   - age < lifetime + swr, stale serving allowed: STALE_REVALIDATE_BG;
 *   - age - lifetime <= request max-stale, no MUST_REVALIDATE: FRESH
 *     (served stale: info->stale);
 *   - else STALE.
 * Stale serving (swr, sie) is allowed unless NO_CACHE, or MUST_REVALIDATE
 * without ORIGIN_STALE. honour_client_no_cache false ignores every request
 * directive that forces revalidation (no-cache, Pragma, max-age,
 * min-fresh), so clients cannot push load onto the origin; max-stale still
 * applies. Windows are half open: fresh is age < lifetime, the swr and sie
 * windows end before lifetime + N. info (may be NULL) is always filled;
 * info->stale_if_error is age < lifetime + sie with stale serving allowed.
 */
enum cache_policy_decision cache_policy_decide(const struct obj_meta *m,
                                               const struct cache_policy_cc *req_cc,
                                               bool honour_client_no_cache, int64_t now,
                                               struct cache_policy_info *info);

/* --- stored header blocks ------------------------------------------------- */

/*
 * Steps through a stored header block: sets *out to the next line's name
 * and value (OWS trimmed, pointing into block) and returns true, or returns
 * false after the last line. Lines without a colon are skipped; an empty
 * line ends the block. *pos starts at 0.
 */
bool cache_policy_block_next(const char *block, size_t len, size_t *pos, struct http_header *out);

/* Finds the first line named name (case-insensitive): true and its value
 * (pointing into block), or false. */
bool cache_policy_block_find(const char *block, size_t len, const char *name, const char **value,
                             size_t *value_len);

/*
 * Fills h with the block's lines (pointing into block) as if parsed, for
 * http_write_response() and for the rules above; no framing, HTTP/1.1.
 * Returns 0, or -1 when the block has more than HTTP_HEADERS_CAP lines.
 */
int cache_policy_block_to_head(const char *block, size_t len, struct http_head *h);

/*
 * Writes resp's stored header block into buf (snprintf convention, see
 * the top): every field but the hop-by-hop ones (http_write_is_hop_by_hop),
 * Content-Length, Age, and Set-Cookie unless the route allows it; a Date
 * of response_time is added when resp has none (RFC 9110 6.6.1).
 */
size_t cache_policy_stored_head(const struct http_response *resp,
                                const struct cache_policy_route *route, int64_t response_time,
                                char *buf, size_t cap);

/* --- validators and conditional requests ---------------------------------- */

/* Validators of a stored response, pointing into its block; NULL when absent. */
struct cache_policy_validators {
    const char *etag;
    size_t etag_len;
    const char *last_modified;
    size_t last_modified_len;
};

/* Finds ETag and Last-Modified in a stored header block. */
void cache_policy_validators(const char *block, size_t len, struct cache_policy_validators *out);

/*
 * True when the client's conditional request req is answered 304 from a
 * stored response with status and validators v (RFC 9110 13.1.1, 13.1.3,
 * 13.2.2; RFC 9111 4.3.2). Only for GET and HEAD and a 2xx stored
 * response; else false and the caller serves normally. If-None-Match
 * (every field, a list, or "*") takes precedence and uses the weak
 * comparison; without it, If-Modified-Since (a single valid date) is met
 * when Last-Modified <= that date; with no valid Last-Modified the stored
 * response's date_fallback is used instead (pass meta.date_value, or -1
 * to disable the fallback).
 */
bool cache_policy_not_modified(const struct http_request *req, int status,
                               const struct cache_policy_validators *v, int64_t date_fallback,
                               int64_t now);

/* What to send upstream to revalidate; NULL when not to send it. */
struct cache_policy_conditional {
    const char *if_none_match; /* the stored ETag, when it is a valid entity-tag */
    size_t if_none_match_len;
    const char *if_modified_since; /* the stored Last-Modified, when a valid date */
    size_t if_modified_since_len;
};

/* Fills *out from the stored validators (RFC 9111 4.3.1; both are sent
 * when both exist). Returns false when there is nothing to validate with:
 * the request upstream is then unconditional. The caller removes the
 * client's own conditional fields from that request. */
bool cache_policy_revalidation(const struct cache_policy_validators *v, int64_t now,
                               struct cache_policy_conditional *out);

/*
 * True when a 304 answers for the stored response with validators v
 * (RFC 9111 4.3.4): its ETag, if any, matches (strong comparison when the
 * 304's is strong, weak when weak); else its Last-Modified, if any, is the
 * same date; a 304 with neither updates. False: do not use the 304 to
 * update; fetch unconditionally.
 */
bool cache_policy_304_updates(const struct cache_policy_validators *v,
                              const struct http_response *resp304, int64_t now);

/*
 * Writes the stored header block updated by a 304 (RFC 9111 3.2): every
 * field of resp304 replaces all the stored lines of the same name (in the
 * place of the first one), fields new to the block are appended; the 304's
 * hop-by-hop fields, Content-Length, Age, and Set-Cookie unless allowed
 * are not used. A 304 without Date counts as "Date: response_time", so
 * the stored Date never predates the revalidation. snprintf convention.
 */
size_t cache_policy_merge_304(const char *stored, size_t stored_len,
                              const struct http_response *resp304,
                              const struct cache_policy_route *route, int64_t response_time,
                              char *buf, size_t cap);

/*
 * The freshness facts after a 304: cache_policy_meta() and
 * cache_policy_storable() run over the merged block (status is the stored
 * response's), with the Age of resp304 and the revalidation's times.
 * Returns the storability; when false the caller drops the stored object
 * (the 304 made it, say, private) and *reason says why. *out is always
 * filled; reason may be NULL.
 */
bool cache_policy_refresh(const struct http_request *req, int status, const char *merged,
                          size_t merged_len, const struct http_response *resp304,
                          const struct cache_policy_route *route, int64_t request_time,
                          int64_t response_time, struct obj_meta *out,
                          enum cache_policy_reason *reason);

#endif
