/*
 * envelope: the binary form of a cached object in the shared tiers
 * (Redis, memcached), versioned so a later tailcache can still read what
 * this one wrote, or reject it safely.
 *
 * Layout (all integers little-endian):
 *
 *   magic "TCE" | major u8 | minor u8 | kind u8 | fixed_len u16
 *   fixed part (fixed_len bytes; a newer minor may append fields, which an
 *   older reader skips):
 *     status u16 | flags u32 | request_time i64 | response_time i64 |
 *     date_value i64 | age_value i64 | lifetime i64 | swr i64 | sie i64 |
 *     stored_at_us i64 | vary_id u64 | key_len u32 | head_len u32 |
 *     body_len u64
 *   key (key_len bytes) | head (head_len bytes) | body (body_len bytes)
 *   checksum u64: XXH3-64 of every byte before it
 *
 * A reader accepts its own major with any minor (fixed_len at least its
 * own fixed part), and rejects another major, a short or long buffer, a
 * bad checksum or lengths that do not add up.
 *
 * Kinds: RESPONSE (head = stored header lines, body = the body) and VARY
 * (head = the Vary names, lower case, comma separated; vary_id; no body).
 *
 * Thread safety: pure functions over caller memory; any thread.
 */
#ifndef TAILCACHE_ENVELOPE_H
#define TAILCACHE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "obj.h"

#define ENVELOPE_MAJOR 1
#define ENVELOPE_MINOR 0

enum envelope_kind {
    ENVELOPE_RESPONSE = 1,
    ENVELOPE_VARY = 2,
};

/* Returned by envelope_decode(). */
enum envelope_error {
    ENVELOPE_OK = 0,
    ENVELOPE_EMALFORMED = -1, /* truncated, bad magic, bad checksum, lengths wrong */
    ENVELOPE_EVERSION = -2,   /* another major version: written by another release */
};

struct envelope {
    enum envelope_kind kind;
    int status;           /* RESPONSE */
    struct obj_meta meta; /* freshness facts as stored (never rebased) */
    int64_t stored_at_us; /* wall-clock µs when the fetch that made it started */
    uint64_t vary_id;     /* VARY */
    const char *key;      /* the full cache key */
    size_t key_len;
    const char *head; /* RESPONSE: header lines; VARY: the names */
    size_t head_len;
    /* Encoding: the body as pieces (NULL/0 for none). Decoding: body and
     * body_len point into the decoded buffer, body_iov is NULL. */
    const struct iovec *body_iov;
    int body_iovcnt;
    const char *body;
    uint64_t body_len;
};

/*
 * Bytes envelope_encode() writes for e (body_len is the sum of body_iov;
 * e->body and e->body_len are ignored when encoding). Returns 0 when e
 * cannot be encoded: an unknown kind, a status outside 0..65535, a key or
 * head longer than UINT32_MAX, a VARY with a body, or a total that does
 * not fit in size_t.
 */
size_t envelope_size(const struct envelope *e);

/* Writes e to buf[0..cap); returns the bytes written, or 0 when e cannot
 * be encoded or cap is smaller than envelope_size(e). */
size_t envelope_encode(const struct envelope *e, void *buf, size_t cap);

/*
 * Decodes buf[0..len) into *out, whose pointers point into buf (key, head
 * and body are not NUL-terminated; empty ones point into buf too).
 * Returns ENVELOPE_OK, or a negative enum envelope_error and *out is left
 * untouched. A kind this release does not know, or a VARY with a body, is
 * ENVELOPE_EMALFORMED.
 */
int envelope_decode(const void *buf, size_t len, struct envelope *out);

#endif
