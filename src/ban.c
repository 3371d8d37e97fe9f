/*
 * ban: see ban.h for what each kind matches and the list's floor rule.
 *
 * A ban is built once by ban_new() and never changes, so any number of
 * threads may match it at once; only its reference count moves. The
 * compiled regex (REGEX) and the config reference (ROUTE) are owned by the
 * ban and freed with its last reference.
 *
 * Keys are split once per check (ban_key_split) into class, host and
 * target (path['?'query]); a key that does not follow cache_key.h's layout
 * matches no key-based ban. Nothing here allocates on the check path: a
 * regex match uses match data kept per thread (a pthread key, so it is
 * freed when the thread exits without any cleanup call) and one shared,
 * read-only match context that caps backtracking.
 *
 * Failing safe: when a regex match cannot be decided (no match data, the
 * backtracking cap hit, any PCRE2 error) the ban counts as matching. A
 * wrong "banned" is a miss; a wrong "not banned" serves invalidated
 * content.
 *
 * The list keeps its bans sorted by time, oldest first, in a fixed array
 * allocated with the list, so adding never allocates and a check visits
 * only the bans made at or after the object was stored, newest first,
 * stopping at the first older one. Checks and adds hold the list's mutex;
 * references a call drops are dropped after it is released, since the
 * last one may free a config.
 */
#include "ban.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "config.h"
#include "route.h"
#include "util.h"

/* Backtracking budget of one regex match; see route.c's ROUTE_MATCH_LIMIT. */
#define BAN_MATCH_LIMIT 100000

/* The variant key's separator (cache_key.h). */
#define BAN_VARIANT_SEP '\x1e'

struct ban {
    atomic_uint refs;
    enum ban_kind kind;
    int64_t time_us;
    char *arg; /* NUL-terminated copy of arg_len bytes */
    size_t arg_len;
    char *host; /* PREFIX, REGEX: lower-cased; NULL: any host */
    size_t host_len;
    pcre2_code *re;                   /* REGEX */
    struct config *cfg;               /* ROUTE: a reference */
    const struct config_route *route; /* ROUTE: borrowed from cfg */
};

struct ban_list {
    pthread_mutex_t mu;
    struct ban **bans; /* max slots; n used, sorted by time, ties in order of adding */
    unsigned n;
    unsigned max;
    bool has_floor;
    int64_t floor_us; /* objects stored at or before it are banned */
};

/* The parts of a cache key a ban looks at. */
struct ban_key {
    const char *cls;
    size_t cls_len;
    const char *host;
    size_t host_len;
    const char *target; /* path['?'query] */
    size_t target_len;
};

static const char *const ban_kind_names[] = {
#define BAN_KIND_NAME(name, text) text,
    BAN_KINDS(BAN_KIND_NAME)
#undef BAN_KIND_NAME
};

#define BAN_NKINDS (sizeof(ban_kind_names) / sizeof(ban_kind_names[0]))

const char *
ban_kind_name(enum ban_kind k)
{
    return (unsigned)k < BAN_NKINDS ? ban_kind_names[k] : "unknown";
}

/* ---- per-thread regex state ---------------------------------------- */

static pthread_once_t ban_re_once = PTHREAD_ONCE_INIT;
static pthread_key_t ban_md_key;
static bool ban_md_key_ok;
static pcre2_match_context *ban_mctx; /* read-only once made; NULL: PCRE2's default cap */

static void
ban_md_free(void *md)
{
    pcre2_match_data_free(md);
}

static void
ban_re_init(void)
{
    ban_md_key_ok = pthread_key_create(&ban_md_key, ban_md_free) == 0;
    ban_mctx = pcre2_match_context_create(NULL);
    if (ban_mctx != NULL)
        pcre2_set_match_limit(ban_mctx, BAN_MATCH_LIMIT);
}

/* The calling thread's match data, or NULL when it cannot be made. */
static pcre2_match_data *
ban_match_data(void)
{
    pcre2_match_data *md;

    pthread_once(&ban_re_once, ban_re_init);
    if (!ban_md_key_ok)
        return NULL;
    md = pthread_getspecific(ban_md_key);
    if (md == NULL) {
        md = pcre2_match_data_create(1, NULL);
        if (md != NULL && pthread_setspecific(ban_md_key, md) != 0) {
            pcre2_match_data_free(md);
            md = NULL;
        }
    }
    return md;
}

static bool
ban_regex_matches(const struct ban *b, const char *s, size_t len)
{
    pcre2_match_data *md = ban_match_data();
    int rc;

    if (md == NULL)
        return true; /* undecided: fail safe */
    rc = pcre2_match(b->re, (PCRE2_SPTR)(len > 0 ? s : ""), len, 0, 0, md, ban_mctx);
    /* rc == 0 means "matched, ovector too small for the groups": a match. */
    return rc != PCRE2_ERROR_NOMATCH;
}

/* ---- keys and heads ------------------------------------------------ */

/*
 * Splits key into its first four parts. The target ends at the first
 * '\n' (extra parts) or variant separator after the host. False when the
 * key has fewer than four parts, or a separator inside them.
 */
static bool
ban_key_split(const char *key, size_t len, struct ban_key *k)
{
    size_t starts[4] = {0};
    size_t part = 0;
    size_t i;

    if (key == NULL)
        return false;
    for (i = 0; i < len && part < 3; i++) {
        if (key[i] == BAN_VARIANT_SEP)
            return false;
        if (key[i] == '\n')
            starts[++part] = i + 1;
    }
    if (part < 3)
        return false;
    for (; i < len && key[i] != '\n' && key[i] != BAN_VARIANT_SEP; i++)
        ;
    k->cls = key;
    k->cls_len = starts[1] - 1;
    k->host = key + starts[2];
    k->host_len = starts[3] - 1 - starts[2];
    k->target = key + starts[3];
    k->target_len = i - starts[3];
    return true;
}

static bool
ban_ieq(const char *a, size_t alen, const char *lower)
{
    size_t n = strlen(lower);

    if (alen != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)lower[i])
            return false;
    }
    return true;
}

static bool
ban_tag_sep(char c)
{
    return c == ' ' || c == '\t' || c == ',';
}

/* True when tag is one of the tags in value[0..len). */
static bool
ban_tag_in_value(const char *value, size_t len, const char *tag, size_t tag_len)
{
    size_t i = 0;

    while (i < len) {
        size_t start;
        while (i < len && ban_tag_sep(value[i]))
            i++;
        start = i;
        while (i < len && !ban_tag_sep(value[i]))
            i++;
        if (i - start == tag_len && memcmp(value + start, tag, tag_len) == 0)
            return true;
    }
    return false;
}

/* True when a Surrogate-Key or Cache-Tag line of head lists tag. */
static bool
ban_tag_in_head(const char *head, size_t head_len, const char *tag, size_t tag_len)
{
    const char *p = head;
    const char *end = head + head_len;

    if (head == NULL)
        return false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        const char *colon;

        if (le > p && le[-1] == '\r')
            le--;
        colon = memchr(p, ':', (size_t)(le - p));
        if (colon != NULL && (ban_ieq(p, (size_t)(colon - p), "surrogate-key") ||
                              ban_ieq(p, (size_t)(colon - p), "cache-tag"))) {
            if (ban_tag_in_value(colon + 1, (size_t)(le - colon - 1), tag, tag_len))
                return true;
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return false;
}

static bool
ban_host_ok(const struct ban *b, const struct ban_key *k)
{
    return b->host == NULL ||
           (k->host_len == b->host_len && memcmp(k->host, b->host, b->host_len) == 0);
}

/* ban_matches() with the key already split (k NULL: key not in the layout). */
static bool
ban_matches_split(const struct ban *b, const char *key, size_t key_len, const struct ban_key *k,
                  const char *head, size_t head_len)
{
    size_t path_len;

    if (b->kind == BAN_TAG)
        return ban_tag_in_head(head, head_len, b->arg, b->arg_len);
    if (k == NULL)
        return false;
    switch (b->kind) {
    case BAN_URL:
        /* arg is exactly four parts, so the byte after it must end the target. */
        return key_len >= b->arg_len && memcmp(key, b->arg, b->arg_len) == 0 &&
               (key_len == b->arg_len || key[b->arg_len] == '\n' ||
                key[b->arg_len] == BAN_VARIANT_SEP);
    case BAN_PREFIX:
        return ban_host_ok(b, k) && k->target_len >= b->arg_len &&
               memcmp(k->target, b->arg, b->arg_len) == 0;
    case BAN_REGEX:
        return ban_host_ok(b, k) && ban_regex_matches(b, k->target, k->target_len);
    case BAN_ROUTE: {
        /* Requests are routed on the path alone. */
        const char *q = memchr(k->target, '?', k->target_len);
        path_len = q != NULL ? (size_t)(q - k->target) : k->target_len;
        return route_match(b->cfg, k->host, k->host_len, k->target, path_len, HTTP_M_GET) ==
               b->route;
    }
    case BAN_TAG:
        break;
    }
    return false;
}

/* ---- bans ---------------------------------------------------------- */

static void
ban_free(struct ban *b)
{
    pcre2_code_free(b->re);
    config_unref(&b->cfg);
    free(b->arg);
    free(b->host);
    free(b);
}

/* Checks arg for kind; on error writes a message and returns -1. */
static int
ban_check_arg(enum ban_kind kind, const char *arg, size_t arg_len, char *err, size_t errlen)
{
    size_t nl = 0;

    switch (kind) {
    case BAN_URL:
        for (size_t i = 0; i < arg_len; i++) {
            nl += arg[i] == '\n';
            if (arg[i] == BAN_VARIANT_SEP)
                nl = 99;
        }
        if (arg_len < 2 || memcmp(arg, "G\n", 2) != 0 || nl != 3) {
            snprintf(err, errlen, "url: not a GET key prefix \"G\\nscheme\\nhost\\npath\"");
            return -1;
        }
        return 0;
    case BAN_TAG:
        for (size_t i = 0; i < arg_len; i++) {
            if (ban_tag_sep(arg[i]) || arg[i] == '\r' || arg[i] == '\n') {
                snprintf(err, errlen, "tag: a tag holds no space, tab, comma or line break");
                return -1;
            }
        }
        return 0;
    case BAN_PREFIX:
    case BAN_REGEX:
    case BAN_ROUTE:
        return 0;
    }
    snprintf(err, errlen, "unknown ban kind %d", (int)kind);
    return -1;
}

struct ban *
ban_new(enum ban_kind kind, const char *arg, size_t arg_len, const char *host, struct config *cfg,
        int64_t time_us, char *err, size_t errlen)
{
    char dummy[1];
    struct ban *b = NULL;

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (arg == NULL || arg_len == 0) {
        snprintf(err, errlen, "%s: empty argument", ban_kind_name(kind));
        goto fail;
    }
    if (ban_check_arg(kind, arg, arg_len, err, errlen) != 0)
        goto fail;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        goto nomem;
    atomic_init(&b->refs, 1);
    b->kind = kind;
    b->time_us = time_us;
    b->arg = malloc(arg_len + 1);
    if (b->arg == NULL)
        goto nomem;
    memcpy(b->arg, arg, arg_len);
    b->arg[arg_len] = '\0';
    b->arg_len = arg_len;

    if ((kind == BAN_PREFIX || kind == BAN_REGEX) && host != NULL && host[0] != '\0') {
        b->host_len = strlen(host);
        b->host = malloc(b->host_len + 1);
        if (b->host == NULL)
            goto nomem;
        for (size_t i = 0; i <= b->host_len; i++) {
            char c = host[i];
            b->host[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
    }

    if (kind == BAN_REGEX) {
        int code;
        PCRE2_SIZE at;
        b->re = pcre2_compile((PCRE2_SPTR)arg, arg_len, 0, &code, &at, NULL);
        if (b->re == NULL) {
            PCRE2_UCHAR reason[128];
            pcre2_get_error_message(code, reason, sizeof(reason));
            snprintf(err, errlen, "regex: %s at offset %zu", (const char *)reason, (size_t)at);
            goto fail;
        }
        /* Without JIT (unsupported platform, no executable memory) the
         * regex still works, interpreted. */
        (void)pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE);
    }

    if (kind == BAN_ROUTE) {
        for (size_t i = 0; cfg != NULL && i < cfg->nroutes && b->route == NULL; i++) {
            const struct config_route *r = &cfg->routes[i];
            if (strlen(r->name) == arg_len && memcmp(r->name, arg, arg_len) == 0)
                b->route = r;
        }
        if (b->route == NULL) {
            snprintf(err, errlen, "route: no route named \"%.*s\"",
                     arg_len > 200 ? 200 : (int)arg_len, arg);
            goto fail;
        }
        b->cfg = config_ref(cfg);
    }
    return b;

nomem:
    snprintf(err, errlen, "%s: out of memory", ban_kind_name(kind));
fail:
    if (b != NULL)
        ban_free(b);
    return NULL;
}

struct ban *
ban_ref(struct ban *b)
{
    unsigned old = atomic_fetch_add(&b->refs, 1);

    UTIL_ASSERT(old > 0);
    return b;
}

void
ban_unref(struct ban **bp)
{
    struct ban *b = *bp;
    unsigned old;

    if (b == NULL)
        return;
    *bp = NULL;
    old = atomic_fetch_sub(&b->refs, 1);
    UTIL_ASSERT(old > 0);
    if (old == 1)
        ban_free(b);
}

enum ban_kind
ban_kind_of(const struct ban *b)
{
    return b->kind;
}

int64_t
ban_time(const struct ban *b)
{
    return b->time_us;
}

const char *
ban_arg(const struct ban *b, size_t *len)
{
    *len = b->arg_len;
    return b->arg;
}

const char *
ban_host(const struct ban *b, size_t *len)
{
    *len = b->host != NULL ? b->host_len : 0;
    return b->host != NULL ? b->host : "";
}

bool
ban_key_only(const struct ban *b)
{
    return b->kind != BAN_TAG;
}

bool
ban_matches(const struct ban *b, const char *key, size_t key_len, const char *head, size_t head_len)
{
    struct ban_key k;
    bool split = b->kind != BAN_TAG && ban_key_split(key, key_len, &k);

    return ban_matches_split(b, key, key_len, split ? &k : NULL, head, head_len);
}

/* ---- the list ------------------------------------------------------ */

struct ban_list *
ban_list_new(unsigned max_bans)
{
    struct ban_list *bl = util_xcalloc(1, sizeof(*bl));

    UTIL_ASSERT(max_bans >= 1);
    pthread_mutex_init(&bl->mu, NULL);
    bl->bans = util_xcalloc(max_bans, sizeof(*bl->bans));
    bl->max = max_bans;
    return bl;
}

void
ban_list_free(struct ban_list **blp)
{
    struct ban_list *bl = *blp;

    if (bl == NULL)
        return;
    *blp = NULL;
    for (unsigned i = 0; i < bl->n; i++)
        ban_unref(&bl->bans[i]);
    free(bl->bans);
    pthread_mutex_destroy(&bl->mu);
    free(bl);
}

/* Raises the floor to t (it never goes down). Under the lock. */
static void
ban_list_raise_floor(struct ban_list *bl, int64_t t)
{
    if (!bl->has_floor || t > bl->floor_us)
        bl->floor_us = t;
    bl->has_floor = true;
}

void
ban_list_add(struct ban_list *bl, struct ban *b)
{
    struct ban *dropped = NULL;
    unsigned i;

    pthread_mutex_lock(&bl->mu);
    if (bl->has_floor && b->time_us <= bl->floor_us)
        goto out; /* the floor already covers everything it would */
    if (bl->n == bl->max) {
        if (b->time_us < bl->bans[0]->time_us) {
            /* b is the oldest: it is the one dropped. */
            ban_list_raise_floor(bl, b->time_us);
            goto out;
        }
        dropped = bl->bans[0];
        ban_list_raise_floor(bl, dropped->time_us);
        memmove(&bl->bans[0], &bl->bans[1], (bl->n - 1) * sizeof(*bl->bans));
        bl->n--;
    }
    /* Usually the newest: found at once from the end. */
    for (i = bl->n; i > 0 && bl->bans[i - 1]->time_us > b->time_us; i--)
        ;
    memmove(&bl->bans[i + 1], &bl->bans[i], (bl->n - i) * sizeof(*bl->bans));
    bl->bans[i] = ban_ref(b);
    bl->n++;
out:
    pthread_mutex_unlock(&bl->mu);
    ban_unref(&dropped);
}

bool
ban_list_check(struct ban_list *bl, const char *key, size_t key_len, const char *head,
               size_t head_len, int64_t stored_at_us)
{
    struct ban_key k;
    const struct ban_key *kp = ban_key_split(key, key_len, &k) ? &k : NULL;
    bool banned = false;

    pthread_mutex_lock(&bl->mu);
    if (bl->has_floor && stored_at_us <= bl->floor_us) {
        banned = true;
    } else {
        for (unsigned i = bl->n; i > 0 && !banned; i--) {
            const struct ban *b = bl->bans[i - 1];
            if (b->time_us < stored_at_us)
                break; /* this one and all before it are older than the object */
            banned = ban_matches_split(b, key, key_len, kp, head, head_len);
        }
    }
    pthread_mutex_unlock(&bl->mu);
    return banned;
}

void
ban_list_set_floor(struct ban_list *bl, int64_t floor_us)
{
    pthread_mutex_lock(&bl->mu);
    ban_list_raise_floor(bl, floor_us);
    pthread_mutex_unlock(&bl->mu);
}

size_t
ban_list_snapshot(struct ban_list *bl, struct ban **out, size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&bl->mu);
    for (unsigned i = 0; i < bl->n && n < cap; i++)
        out[n++] = ban_ref(bl->bans[i]);
    pthread_mutex_unlock(&bl->mu);
    return n;
}

size_t
ban_list_count(struct ban_list *bl)
{
    size_t n;

    pthread_mutex_lock(&bl->mu);
    n = bl->n;
    pthread_mutex_unlock(&bl->mu);
    return n;
}
