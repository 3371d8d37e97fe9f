/*
 * obj: a cached HTTP response, refcounted and shared by every worker.
 *
 * An object is created BUSY by the request that fetches it (the leader),
 * filled as the response streams in (read-while-writing: readers may send
 * what is there while more arrives), then leaves BUSY exactly once, to
 * COMPLETE or FAILED. A COMPLETE object is immutable, but for its
 * freshness metadata, which a revalidation replaces under the lock.
 *
 * Reference rule (the only one): the cache index holds one reference while
 * an object is linked; a lookup returns a new reference; every delivery in
 * flight holds one (evbuffer_add_reference cleanups drop theirs);
 * obj_unref(&o) clears the caller's pointer and the last one frees.
 * Nothing else frees an object.
 *
 * Body storage: an append-only list of segments. A segment's bytes up to
 * the body length read under the lock never change and its memory never
 * moves while the object lives, so readers copy pointers under the lock
 * and use the bytes without it.
 *
 * Thread safety: refs are atomic; state, body_len, the segment list tail,
 * head, meta and the waiter list are guarded by the object's lock
 * (obj_lock()). Locks are striped: objects share a fixed set of mutexes
 * chosen by key hash, which keeps struct obj small; nothing ever holds two
 * object locks at once, so sharing cannot deadlock. The fields under
 * "index" belong to cache.c and are guarded by the owning shard's lock.
 */
#ifndef TAILCACHE_OBJ_H
#define TAILCACHE_OBJ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#define OBJ_STATES(X)                                                                              \
    X(BUSY)     /* being fetched; readers may stream what has arrived */                           \
    X(COMPLETE) /* whole body stored; immutable */                                                 \
    X(FAILED)   /* the fetch failed or the response was not storable */

enum obj_state {
#define OBJ_STATE_ENUM(name) OBJ_##name,
    OBJ_STATES(OBJ_STATE_ENUM)
#undef OBJ_STATE_ENUM
};

/* What an index entry is. */
enum obj_kind {
    OBJ_KIND_RESPONSE,     /* a stored response (or one being fetched) */
    OBJ_KIND_VARY,         /* names the Vary fields of the primary key's variants */
    OBJ_KIND_HIT_FOR_MISS, /* "not storable": later requests go straight to the origin */
};

struct obj_segment {
    struct obj_segment *next; /* set under the object's lock */
    size_t len;               /* bytes filled */
    size_t cap;
    char data[];
};

/* Freshness facts of a stored response (RFC 9111 4.2), wall-clock seconds. */
struct obj_meta {
    int64_t request_time;  /* when the request that fetched it was sent */
    int64_t response_time; /* when the response head arrived */
    int64_t date_value;    /* Date header, or response_time */
    int64_t age_value;     /* Age header received, 0 if none */
    int64_t lifetime;      /* freshness lifetime; may be 0 */
    int64_t swr;           /* stale-while-revalidate allowance */
    int64_t sie;           /* stale-if-error allowance */
    uint32_t flags;        /* CACHE_POLICY_F_* of cache_policy.h */
};

/* obj_meta as an object keeps it: times fit 32 bits until 2106, and the
 * deltas are capped at 2^31 - 1 (RFC 9111 1.2.2 caps them at 2^31). */
struct obj_meta_packed {
    uint32_t request_time, response_time, date_value;
    int32_t age_value, lifetime, swr, sie;
    uint32_t flags;
};

struct obj;

/* A reader waiting on a BUSY object; woken with wake(arg) on every append
 * and on the final state change, from the filling thread. wake must only
 * schedule work on the reader's own thread (event_active). */
struct obj_waiter {
    void (*wake)(void *arg);
    void *arg;
    TAILQ_ENTRY(obj_waiter) link;
};

TAILQ_HEAD(obj_waiter_list, obj_waiter);

struct obj {
    atomic_uint refs;
    uint32_t key_len;
    uint16_t status;        /* kind RESPONSE */
    uint8_t state;          /* enum obj_state */
    uint8_t kind;           /* enum obj_kind */
    atomic_bool refreshing; /* a background refresh of this object is under way */
    /* index: owned by cache.c under the shard lock */
    uint8_t freq;  /* S3-FIFO access counter, 0..3 */
    uint8_t queue; /* which queue it is on (cache.c) */
    bool linked;   /* in the index */

    uint64_t hash; /* XXH3-64 of key */

    /* Response (kind RESPONSE). */
    char *head; /* stored header lines "Name: value\r\n"..., no status line, no framing */
    size_t head_len;
    struct obj_segment *first, *last;
    uint64_t body_len;           /* bytes appended so far */
    uint64_t body_max;           /* Content-Length when known, else UINT64_MAX */
    struct obj_meta_packed meta; /* through obj_get_meta() / obj_set_meta() */
    union {
        struct { /* kind RESPONSE */
            struct obj_waiter_list waiters;
            struct obj *pending; /* the refetch of this expired entry under way (a
                                  * reference), which other requests join */
        };
        struct {              /* kind VARY */
            char *vary;       /* the Vary field names, lower case, comma separated */
            uint64_t vary_id; /* part of every variant key, so replacing the marker
                               * orphans the old variants for good */
        };
        int64_t expires_at; /* kind HIT_FOR_MISS: wall-clock seconds */
    };

    /* index: owned by cache.c under the shard lock */
    size_t charge;      /* bytes this entry counts against the cache size */
    struct obj *h_next; /* hash chain */
    struct obj *q_prev, *q_next;

    char key[]; /* the full key (primary, or primary + variant), NUL-terminated */
};

/* The object's lock (striped, see above). */
void obj_lock(struct obj *o);
void obj_unlock(struct obj *o);

/* A new BUSY object of the given kind for key (one reference). Never NULL:
 * aborts on allocation failure (callers on the request path check sizes
 * before creating). */
struct obj *obj_new(enum obj_kind kind, const char *key, size_t key_len, uint64_t hash);

/* Takes a reference; returns o. */
struct obj *obj_ref(struct obj *o);

/* Drops a reference and clears *op; the last one frees. Accepts NULL. */
void obj_unref(struct obj **op);

/* Sets the response head (status and stored header lines, copied).
 * Only while BUSY, before any body byte. Returns 0, or -1 on allocation failure. */
int obj_set_head(struct obj *o, int status, const char *head, size_t head_len, uint64_t body_max,
                 const struct obj_meta *meta);

/* Appends body bytes (copied) and wakes waiters. Only while BUSY.
 * Returns 0, or -1 on allocation failure (the caller fails the object). */
int obj_append(struct obj *o, const void *data, size_t len);

/* Leaves BUSY for COMPLETE or FAILED (asserted legal) and wakes waiters. */
void obj_finish(struct obj *o, enum obj_state to);

/* The current state, read under the lock. */
enum obj_state obj_get_state(struct obj *o);

/* Replaces the freshness metadata. */
void obj_set_meta(struct obj *o, const struct obj_meta *meta);

/* A 304 revalidated a COMPLETE object: replaces its stored header lines
 * (copied) and metadata together. Returns 0, or -1 on allocation failure
 * (the object is unchanged). */
int obj_revalidate(struct obj *o, const char *head, size_t head_len, const struct obj_meta *meta);

/* Copies the freshness metadata out under the lock. */
void obj_get_meta(struct obj *o, struct obj_meta *out);

/* Adds / removes a waiter (the caller owns the struct and holds a reference). */
void obj_wait(struct obj *o, struct obj_waiter *w);
void obj_unwait(struct obj *o, struct obj_waiter *w);

/* Bytes of memory the object uses (key, head, segments), for cache charging. */
size_t obj_size(const struct obj *o);

/* The state's name, for logs. */
const char *obj_state_name(enum obj_state s);

#endif
