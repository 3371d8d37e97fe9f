/*
 * obj: see obj.h.
 *
 * Segments grow geometrically (4 KiB up to 256 KiB) so a small object is
 * one small allocation and a large one is a few hundred; when the body
 * length is known up front the first segment is sized to fit it, so most
 * objects keep their body in one piece.
 */
#include "obj.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define OBJ_SEG_MIN (4 * 1024)
#define OBJ_SEG_MAX (256 * 1024)

static const char *const obj_state_names[] = {
#define OBJ_STATE_NAME(name) #name,
    OBJ_STATES(OBJ_STATE_NAME)
#undef OBJ_STATE_NAME
};

const char *
obj_state_name(enum obj_state s)
{
    return obj_state_names[s];
}

#define OBJ_STRIPES 256

static pthread_mutex_t obj_stripes[OBJ_STRIPES];
static pthread_once_t obj_stripes_once = PTHREAD_ONCE_INIT;

static void
obj_stripes_init(void)
{
    for (int i = 0; i < OBJ_STRIPES; i++)
        pthread_mutex_init(&obj_stripes[i], NULL);
}

/* Bits of the hash that neither the shard (top) nor the bucket (bottom) uses. */
static pthread_mutex_t *
obj_stripe(const struct obj *o)
{
    return &obj_stripes[(o->hash >> 24) % OBJ_STRIPES];
}

void
obj_lock(struct obj *o)
{
    pthread_mutex_lock(obj_stripe(o));
}

void
obj_unlock(struct obj *o)
{
    pthread_mutex_unlock(obj_stripe(o));
}

struct obj *
obj_new(enum obj_kind kind, const char *key, size_t key_len, uint64_t hash)
{
    pthread_once(&obj_stripes_once, obj_stripes_init);
    UTIL_ASSERT(key_len <= UINT32_MAX);
    struct obj *o = calloc(1, sizeof(*o) + key_len + 1);
    if (o == NULL)
        abort();
    atomic_init(&o->refs, 1);
    o->state = OBJ_BUSY;
    o->kind = kind;
    o->hash = hash;
    memcpy(o->key, key, key_len);
    o->key[key_len] = '\0';
    o->key_len = (uint32_t)key_len;
    o->body_max = UINT64_MAX;
    if (kind == OBJ_KIND_RESPONSE)
        TAILQ_INIT(&o->waiters);
    return o;
}

struct obj *
obj_ref(struct obj *o)
{
    unsigned prev = atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
    UTIL_ASSERT(prev > 0);
    (void)prev;
    return o;
}

static void
obj_free(struct obj *o)
{
    struct obj_segment *s = o->first;
    UTIL_ASSERT(!o->linked);
    if (o->kind == OBJ_KIND_RESPONSE) {
        UTIL_ASSERT(TAILQ_EMPTY(&o->waiters));
        obj_unref(&o->pending);
    }
    while (s != NULL) {
        struct obj_segment *next = s->next;
        free(s);
        s = next;
    }
    free(o->head);
    if (o->kind == OBJ_KIND_VARY)
        free(o->vary);
    free(o);
}

void
obj_unref(struct obj **op)
{
    struct obj *o = *op;
    if (o == NULL)
        return;
    *op = NULL;
    unsigned prev = atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel);
    UTIL_ASSERT(prev > 0);
    if (prev == 1)
        obj_free(o);
}

static void
obj_wake_locked(struct obj *o)
{
    struct obj_waiter *w;
    if (o->kind != OBJ_KIND_RESPONSE)
        return; /* markers have no waiters */
    TAILQ_FOREACH(w, &o->waiters, link)
    w->wake(w->arg);
}

/* A NUL-terminated copy of a header block; NULL when out of memory
 * (the request path fails soft, never aborts). */
static char *
obj_head_copy(const char *head, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy != NULL) {
        memcpy(copy, head, len);
        copy[len] = '\0';
    }
    return copy;
}

static uint32_t
obj_pack_time(int64_t t)
{
    return t < 0 ? 0 : t > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}

static int32_t
obj_pack_delta(int64_t d)
{
    return d > INT32_MAX ? INT32_MAX : d < INT32_MIN ? INT32_MIN : (int32_t)d;
}

static void
obj_pack_meta(struct obj_meta_packed *p, const struct obj_meta *m)
{
    p->request_time = obj_pack_time(m->request_time);
    p->response_time = obj_pack_time(m->response_time);
    p->date_value = obj_pack_time(m->date_value);
    p->age_value = obj_pack_delta(m->age_value);
    p->lifetime = obj_pack_delta(m->lifetime);
    p->swr = obj_pack_delta(m->swr);
    p->sie = obj_pack_delta(m->sie);
    p->flags = m->flags;
}

int
obj_set_head(struct obj *o, int status, const char *head, size_t head_len, uint64_t body_max,
             const struct obj_meta *meta)
{
    char *copy = obj_head_copy(head, head_len);
    if (copy == NULL)
        return -1;
    obj_lock(o);
    UTIL_ASSERT(o->state == OBJ_BUSY && o->head == NULL && o->body_len == 0);
    o->status = (uint16_t)status;
    o->head = copy;
    o->head_len = head_len;
    o->body_max = body_max;
    obj_pack_meta(&o->meta, meta);
    obj_wake_locked(o);
    obj_unlock(o);
    return 0;
}

static struct obj_segment *
obj_segment_new(const struct obj *o, size_t want)
{
    size_t cap = OBJ_SEG_MIN;
    if (o->body_max != UINT64_MAX && o->body_max - o->body_len <= OBJ_SEG_MAX * 4)
        cap = (size_t)(o->body_max - o->body_len); /* the rest fits in one segment */
    else if (o->last != NULL)
        cap = o->last->cap * 2 > OBJ_SEG_MAX ? OBJ_SEG_MAX : o->last->cap * 2;
    if (cap < want && want <= OBJ_SEG_MAX)
        cap = want;
    if (cap < OBJ_SEG_MIN / 4)
        cap = OBJ_SEG_MIN / 4;
    struct obj_segment *s = malloc(sizeof(*s) + cap);
    if (s != NULL) {
        s->next = NULL;
        s->len = 0;
        s->cap = cap;
    }
    return s;
}

int
obj_append(struct obj *o, const void *data, size_t len)
{
    const char *p = data;
    /* Only the filling thread appends, so the tail segment's free space is
     * ours to write without the lock; publishing the new length (and any
     * new segment) happens under it. */
    UTIL_ASSERT(o->state == OBJ_BUSY);
    while (len > 0) {
        struct obj_segment *s = o->last;
        if (s == NULL || s->len == s->cap) {
            s = obj_segment_new(o, len);
            if (s == NULL)
                return -1;
            obj_lock(o);
            if (o->last != NULL)
                o->last->next = s;
            else
                o->first = s;
            o->last = s;
            obj_unlock(o);
        }
        size_t n = s->cap - s->len < len ? s->cap - s->len : len;
        memcpy(s->data + s->len, p, n);
        obj_lock(o);
        s->len += n;
        o->body_len += n;
        obj_unlock(o);
        p += n;
        len -= n;
    }
    obj_lock(o);
    obj_wake_locked(o);
    obj_unlock(o);
    return 0;
}

void
obj_finish(struct obj *o, enum obj_state to)
{
    obj_lock(o);
    if (o->state != OBJ_BUSY || to == OBJ_BUSY) {
        fprintf(stderr, "tailcache: obj: illegal state change %s -> %s\n", obj_state_name(o->state),
                obj_state_name(to));
        abort();
    }
    o->state = to;
    obj_wake_locked(o);
    obj_unlock(o);
}

enum obj_state
obj_get_state(struct obj *o)
{
    obj_lock(o);
    enum obj_state s = o->state;
    obj_unlock(o);
    return s;
}

void
obj_set_meta(struct obj *o, const struct obj_meta *meta)
{
    obj_lock(o);
    obj_pack_meta(&o->meta, meta);
    obj_unlock(o);
}

int
obj_revalidate(struct obj *o, const char *head, size_t head_len, const struct obj_meta *meta)
{
    char *copy = obj_head_copy(head, head_len);
    if (copy == NULL)
        return -1;
    obj_lock(o);
    UTIL_ASSERT(o->state == OBJ_COMPLETE);
    char *old = o->head;
    o->head = copy; /* readers copy the head under the lock, so the old one is free to go */
    o->head_len = head_len;
    obj_pack_meta(&o->meta, meta);
    obj_unlock(o);
    free(old);
    return 0;
}

void
obj_get_meta(struct obj *o, struct obj_meta *out)
{
    obj_lock(o);
    out->request_time = o->meta.request_time;
    out->response_time = o->meta.response_time;
    out->date_value = o->meta.date_value;
    out->age_value = o->meta.age_value;
    out->lifetime = o->meta.lifetime;
    out->swr = o->meta.swr;
    out->sie = o->meta.sie;
    out->flags = o->meta.flags;
    obj_unlock(o);
}

void
obj_wait(struct obj *o, struct obj_waiter *w)
{
    obj_lock(o);
    TAILQ_INSERT_TAIL(&o->waiters, w, link);
    obj_unlock(o);
}

void
obj_unwait(struct obj *o, struct obj_waiter *w)
{
    obj_lock(o);
    TAILQ_REMOVE(&o->waiters, w, link);
    obj_unlock(o);
}

size_t
obj_size(const struct obj *o)
{
    /* Read without the lock: the filling thread calls it (cache_recharge
     * after completion) and the fields it reads are then final. */
    size_t n = sizeof(*o) + o->key_len + 1 + o->head_len;
    for (const struct obj_segment *s = o->first; s != NULL; s = s->next)
        n += sizeof(*s) + s->cap;
    if (o->kind == OBJ_KIND_VARY && o->vary != NULL)
        n += strlen(o->vary) + 1;
    return n;
}
