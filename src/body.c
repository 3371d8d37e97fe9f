/*
 * body: see body.h.
 */
#include "body.h"

#include <event2/buffer.h>

#include "http_write.h"

void
body_relay_init(struct body_relay *b, enum http_framing in, uint64_t content_length,
                bool chunked_out, size_t max_line)
{
    b->tee = NULL;
    b->tee_arg = NULL;
    b->in = in;
    b->chunked_out = chunked_out;
    b->left = in == HTTP_FRAMING_LENGTH ? content_length : 0;
    b->done = in == HTTP_FRAMING_NONE || (in == HTTP_FRAMING_LENGTH && content_length == 0);
    if (in == HTTP_FRAMING_CHUNKED)
        http_chunked_init(&b->chunked, max_line);
}

/* Appends n bytes of body data from in to out, framed for the receiver. */
static void
body_relay_data(struct body_relay *b, struct evbuffer *in, struct evbuffer *out, size_t n)
{
    if (b->tee != NULL)
        b->tee(b->tee_arg, in, n);
    if (b->chunked_out)
        http_write_chunk_header(out, n);
    evbuffer_remove_buffer(in, out, n);
    if (b->chunked_out)
        evbuffer_add(out, "\r\n", 2);
}

ssize_t
body_relay_move(struct body_relay *b, struct evbuffer *in, struct evbuffer *out, size_t out_high)
{
    size_t moved = 0;

    while (!b->done && evbuffer_get_length(out) < out_high) {
        size_t avail = evbuffer_get_length(in);
        if (b->in == HTTP_FRAMING_CHUNKED && http_chunked_done(&b->chunked)) {
            if (b->chunked_out)
                http_write_last_chunk(out);
            b->done = true;
            break;
        }
        if (avail == 0)
            break;
        if (b->in == HTTP_FRAMING_LENGTH) {
            size_t n = avail < b->left ? avail : (size_t)b->left;
            body_relay_data(b, in, out, n);
            b->left -= n;
            moved += n;
            b->done = b->left == 0;
            continue;
        }
        if (b->in == HTTP_FRAMING_UNTIL_CLOSE) {
            body_relay_data(b, in, out, avail);
            moved += avail;
            continue;
        }
        /* Chunked: decode the first contiguous segment; the decoder stops
         * right after one data span, so framing and data alternate. */
        struct evbuffer_iovec v;
        size_t off, dlen;
        evbuffer_peek(in, -1, NULL, &v, 1);
        ssize_t r = http_chunked_decode(&b->chunked, v.iov_base, v.iov_len, &off, &dlen);
        if (r < 0)
            return -1;
        evbuffer_drain(in, off);
        if (dlen > 0) {
            body_relay_data(b, in, out, dlen);
            moved += dlen;
        }
        evbuffer_drain(in, (size_t)r - off - dlen);
    }
    return (ssize_t)moved;
}

void
body_relay_finish(struct body_relay *b, struct evbuffer *out)
{
    if (b->done)
        return;
    if (b->chunked_out)
        http_write_last_chunk(out);
    b->done = true;
}
