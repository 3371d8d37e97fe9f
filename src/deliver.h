/*
 * deliver: sends a cached object to one client: the stored head with the
 * per-response fields (Age, Cache-Status, framing), then the body as
 * references to the object's segments (evbuffer_add_reference; each
 * reference holds an object reference that its cleanup drops), so a hit
 * copies no body bytes and an object is never freed under a send.
 *
 * A delivery may start while the object is still BUSY (read-while-
 * writing): it sends what has arrived, registers as a waiter, and is woken
 * on its own thread (event_active on the worker's base) when more arrives
 * or the object leaves BUSY.
 *
 * A delivery belongs to one connection on one worker thread.
 */
#ifndef TAILCACHE_DELIVER_H
#define TAILCACHE_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "obj.h"

struct event;
struct event_base;
struct evbuffer;

enum deliver_result {
    DELIVER_MORE, /* the client output is full: call deliver_pump() when it drains */
    DELIVER_WAIT, /* waiting for the object to grow: on_wake will be called */
    DELIVER_DONE, /* the whole body is out */
    DELIVER_FAIL, /* the object failed mid-body: the client must be cut off */
};

struct deliver_head {
    int64_t age;               /* Age value to send */
    const char *cache_status;  /* Cache-Status value, or NULL */
    const char *server_timing; /* Server-Timing value, or NULL */
    bool client_10;            /* HTTP/1.0 client: no chunked coding */
    bool head_request;         /* HEAD: no body */
    bool not_modified;         /* answer 304 from the stored head */
    bool close;                /* add Connection: close */
    bool keep_alive_10;        /* add Connection: keep-alive (1.0 client) */
};

struct deliver {
    struct obj *o; /* reference held while delivering */
    struct obj_waiter waiter;
    bool waiting;
    struct event *ev_wake; /* the caller's, on its worker's base; made active to wake it */
    struct obj_segment *seg;
    size_t seg_off;
    uint64_t sent; /* body bytes queued to the client */
    bool chunked;  /* framing the body as chunked (length unknown) */
    bool no_body;
    bool until_close; /* HTTP/1.0 client, unknown length: the close ends it */
};

/*
 * Starts delivering o (takes a new reference unless deliver_wait_head()
 * already did) into out: writes the head. ev is the caller's event, made
 * active (from the filling thread) when a waiting delivery can go on.
 * Returns 0, or -1 when the object has no head yet (BUSY before its
 * response head arrived, or FAILED). *close_needed is set when the
 * framing forces the connection to close.
 */
int deliver_start(struct deliver *d, struct event *ev, struct evbuffer *out, struct obj *o,
                  const struct deliver_head *h, bool *close_needed);

/*
 * Before any delivery: registers to have ev made active when o gets its
 * head or leaves BUSY (at once if it already has). Takes a reference.
 */
void deliver_wait_head(struct deliver *d, struct event *ev, struct obj *o);

/* Queues more body into out, up to out_high bytes buffered. */
enum deliver_result deliver_pump(struct deliver *d, struct evbuffer *out, size_t out_high);

/* Stops: unregisters, frees the wake event, drops the reference. Idempotent. */
void deliver_stop(struct deliver *d);

#endif
