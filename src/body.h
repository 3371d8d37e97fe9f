/*
 * body: relays one message body from an input evbuffer to an output
 * evbuffer, decoding the sender's framing and writing the receiver's.
 *
 * Content-Length bodies move as evbuffer chains (no copy). Chunked bodies
 * go through the strict chunked decoder and are re-encoded chunk by chunk,
 * so the receiver sees framing we wrote, never the sender's bytes; the
 * decoder never consumes past the end of the body, so pipelined bytes
 * stay in the input. Close-delimited bodies move as they come and end
 * when the caller sees EOF (body_relay_finish()).
 *
 * Single-threaded: a relay belongs to the connection that owns both buffers.
 */
#ifndef TAILCACHE_BODY_H
#define TAILCACHE_BODY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "http_parser.h"

struct evbuffer;

/* Sees each run of body data (n bytes at the front of src) before it moves. */
typedef void (*body_tee_fn)(void *arg, struct evbuffer *src, size_t n);

struct body_relay {
    enum http_framing in; /* how the sender frames the body */
    body_tee_fn tee;      /* optional: a copy of the body goes here too */
    void *tee_arg;
    bool chunked_out; /* re-encode as chunked for the receiver */
    bool done;        /* the whole body has been moved */
    uint64_t left;    /* HTTP_FRAMING_LENGTH: bytes still to come */
    struct http_chunked chunked;
};

/*
 * Starts a relay. in is the sender's framing (content_length for LENGTH);
 * chunked_out whether the receiver gets chunked coding; max_line bounds a
 * chunk-size line and the trailer section. A NONE or zero-length body is
 * done at once.
 */
void body_relay_init(struct body_relay *b, enum http_framing in, uint64_t content_length,
                     bool chunked_out, size_t max_line);

/*
 * Moves body bytes from in to out until the body ends, in runs dry or out
 * holds at least out_high bytes. Returns the body data bytes moved (>= 0),
 * or -1 when a chunked body is malformed (the relay is then unusable).
 */
ssize_t body_relay_move(struct body_relay *b, struct evbuffer *in, struct evbuffer *out,
                        size_t out_high);

/* A close-delimited body ended (EOF): writes the last chunk if re-encoding. */
void body_relay_finish(struct body_relay *b, struct evbuffer *out);

#endif
