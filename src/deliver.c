/*
 * deliver: see deliver.h.
 *
 * The object's lock is held only to copy the head and to read how far the
 * body has grown; the body bytes themselves are handed to libevent as
 * references, so the lock is never held across I/O.
 */
#include "deliver.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "http_write.h"
#include "util.h"

/* Fields a 304 carries from the stored response (RFC 9110 15.4.5). */
static const char *const deliver_304_fields[] = {
    "cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified",
};

/* Called on the filling thread with the object locked: schedule only. */
static void
deliver_wake(void *arg)
{
    struct deliver *d = arg;
    event_active(d->ev_wake, EV_TIMEOUT, 0);
}

/* Takes the object reference and prepares waking; idempotent. */
static void
deliver_attach(struct deliver *d, struct event *ev, struct obj *o)
{
    d->ev_wake = ev;
    d->waiter.wake = deliver_wake;
    d->waiter.arg = d;
    if (d->o == NULL)
        d->o = obj_ref(o);
    UTIL_ASSERT(d->o == o);
}

static void
deliver_ref_cleanup(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    struct obj *o = arg;
    obj_unref(&o);
}

/* True when the stored header line at p (length n) names one of the 304 fields. */
static bool
deliver_line_in_304(const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (colon == NULL)
        return false;
    for (size_t i = 0; i < sizeof(deliver_304_fields) / sizeof(deliver_304_fields[0]); i++)
        if (http_str_ieq(p, (size_t)(colon - p), deliver_304_fields[i]))
            return true;
    return false;
}

static void
deliver_add_head_lines(struct evbuffer *out, const char *head, size_t len, bool only_304)
{
    if (!only_304) {
        evbuffer_add(out, head, len);
        return;
    }
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol != NULL ? (size_t)(eol - p) + 1 : (size_t)(end - p);
        if (deliver_line_in_304(p, n))
            evbuffer_add(out, p, n);
        p += n;
    }
}

void
deliver_wait_head(struct deliver *d, struct event *ev, struct obj *o)
{
    deliver_attach(d, ev, o);
    obj_lock(o);
    bool ready = o->state != OBJ_BUSY || o->head != NULL;
    if (!ready && !d->waiting) {
        TAILQ_INSERT_TAIL(&o->waiters, &d->waiter, link);
        d->waiting = true;
    }
    obj_unlock(o);
    if (ready)
        event_active(ev, EV_TIMEOUT, 0);
}

int
deliver_start(struct deliver *d, struct event *ev, struct evbuffer *out, struct obj *o,
              const struct deliver_head *h, bool *close_needed)
{
    *close_needed = false;
    deliver_attach(d, ev, o);
    obj_lock(o);
    if (o->head == NULL || o->state == OBJ_FAILED) {
        obj_unlock(o);
        return -1;
    }
    int status = h->not_modified ? 304 : o->status;
    bool complete = o->state == OBJ_COMPLETE;
    uint64_t length = complete ? o->body_len : o->body_max;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, http_write_reason(status));
    deliver_add_head_lines(out, o->head, o->head_len, h->not_modified);
    obj_unlock(o);

    evbuffer_add_printf(out, "Age: %" PRId64 "\r\n", h->age < 0 ? 0 : h->age);
    if (h->cache_status != NULL)
        evbuffer_add_printf(out, "Cache-Status: %s\r\n", h->cache_status);
    if (h->server_timing != NULL)
        evbuffer_add_printf(out, "Server-Timing: %s\r\n", h->server_timing);
    evbuffer_add(out, "Via: 1.1 tailcache\r\n", 20);

    bool bodyless = h->not_modified || status == 204 || status == 304 || status < 200;
    d->no_body = bodyless || h->head_request;
    bool close = h->close;
    if (!bodyless) {
        if (length != UINT64_MAX) {
            evbuffer_add_printf(out, "Content-Length: %" PRIu64 "\r\n", length);
        } else if (!h->client_10) {
            evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
            d->chunked = !h->head_request;
        } else if (!h->head_request) {
            d->until_close = true;
            close = true;
        }
    }
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (h->keep_alive_10)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    evbuffer_add(out, "\r\n", 2);
    *close_needed = close;

    d->seg = NULL;
    d->seg_off = 0;
    d->sent = 0;
    return 0;
}

enum deliver_result
deliver_pump(struct deliver *d, struct evbuffer *out, size_t out_high)
{
    struct obj *o = d->o;
    if (d->no_body)
        return DELIVER_DONE;
    for (;;) {
        obj_lock(o);
        enum obj_state state = o->state;
        uint64_t avail = o->body_len;
        struct obj_segment *seg = d->seg != NULL ? d->seg : o->first;
        size_t seg_len = seg != NULL ? seg->len : 0;
        struct obj_segment *seg_next = seg != NULL ? seg->next : NULL;
        bool more = d->sent < avail;
        if (!more && state == OBJ_BUSY && !d->waiting) {
            TAILQ_INSERT_TAIL(&o->waiters, &d->waiter, link);
            d->waiting = true;
        }
        obj_unlock(o);

        if (!more) {
            if (state == OBJ_BUSY)
                return DELIVER_WAIT;
            if (state == OBJ_FAILED)
                return DELIVER_FAIL;
            if (d->chunked)
                http_write_last_chunk(out);
            return DELIVER_DONE;
        }
        if (evbuffer_get_length(out) >= out_high)
            return DELIVER_MORE;
        if (d->seg == NULL)
            d->seg = seg;
        if (d->seg_off == seg_len) {
            /* This segment is used up; the next one exists since more
             * bytes are available. */
            UTIL_ASSERT(seg_next != NULL);
            d->seg = seg_next;
            d->seg_off = 0;
            continue;
        }
        size_t n = seg_len - d->seg_off;
        if (d->chunked)
            http_write_chunk_header(out, n);
        obj_ref(o);
        if (evbuffer_add_reference(out, d->seg->data + d->seg_off, n, deliver_ref_cleanup, o) < 0) {
            struct obj *tmp = o;
            obj_unref(&tmp);
            return DELIVER_FAIL;
        }
        if (d->chunked)
            evbuffer_add(out, "\r\n", 2);
        d->seg_off += n;
        d->sent += n;
    }
}

void
deliver_stop(struct deliver *d)
{
    if (d->o == NULL)
        return;
    if (d->waiting) {
        obj_unwait(d->o, &d->waiter);
        d->waiting = false;
    }
    d->ev_wake = NULL; /* the caller's */
    obj_unref(&d->o);
    d->seg = NULL;
}
