/*
 * envelope: see envelope.h for the layout and the contract.
 *
 * Every integer is written and read one byte at a time through the
 * envelope_put_* / envelope_get_* helpers, so the bytes do not depend on
 * the host's byte order, alignment or struct padding.
 *
 * Decoding trusts nothing in the buffer. The order of checks is fixed:
 * the header (length, magic, major), then the declared lengths, which are
 * subtracted from what the buffer has left rather than added together (a
 * u64 body length near 2^64 cannot wrap anything), then the checksum, then
 * the meaning of the fields (kind). A buffer is accepted only when its
 * parts add up to exactly its length. Nothing in *out is written unless the
 * whole envelope is good.
 */
#include "envelope.h"

#include <string.h>

#include <xxhash.h>

#define ENVELOPE_MAGIC "TCE"
#define ENVELOPE_MAGIC_LEN 3

/* magic | major | minor | kind | fixed_len u16 */
#define ENVELOPE_HEADER_LEN (ENVELOPE_MAGIC_LEN + 3 + 2)

/*
 * This minor's fixed part: status u16, flags u32, eight i64 (request_time
 * .. sie, stored_at_us), vary_id u64, key_len u32, head_len u32, body_len u64.
 */
#define ENVELOPE_FIXED_LEN (2 + 4 + 8 * 8 + 8 + 4 + 4 + 8)

#define ENVELOPE_CHECKSUM_LEN 8

/* What the envelope costs beyond key, head and body. */
#define ENVELOPE_OVERHEAD (ENVELOPE_HEADER_LEN + ENVELOPE_FIXED_LEN + ENVELOPE_CHECKSUM_LEN)

/* ---- little-endian helpers ----------------------------------------- */

static unsigned char *
envelope_put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static unsigned char *
envelope_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static unsigned char *
envelope_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

/* Two's complement, spelled out so no conversion is implementation-defined. */
static unsigned char *
envelope_put_i64(unsigned char *p, int64_t v)
{
    uint64_t u = v >= 0 ? (uint64_t)v : ~(uint64_t)(-(v + 1));

    return envelope_put_u64(p, u);
}

static uint16_t
envelope_get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t
envelope_get_u32(const unsigned char *p)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t
envelope_get_u64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int64_t
envelope_get_i64(const unsigned char *p)
{
    uint64_t u = envelope_get_u64(p);

    return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* ---- encoding ------------------------------------------------------ */

/* The body's length: the sum of the pieces, or UINT64_MAX when it overflows. */
static uint64_t
envelope_body_len(const struct envelope *e)
{
    uint64_t n = 0;

    for (int i = 0; i < e->body_iovcnt; i++) {
        if (e->body_iov[i].iov_len > UINT64_MAX - n)
            return UINT64_MAX;
        n += e->body_iov[i].iov_len;
    }
    return n;
}

size_t
envelope_size(const struct envelope *e)
{
    uint64_t body_len = envelope_body_len(e);
    size_t n = ENVELOPE_OVERHEAD;

    if (e->kind != ENVELOPE_RESPONSE && e->kind != ENVELOPE_VARY)
        return 0;
    if (e->status < 0 || e->status > UINT16_MAX)
        return 0;
    if (e->key_len > UINT32_MAX || e->head_len > UINT32_MAX)
        return 0;
    if (e->kind == ENVELOPE_VARY && body_len != 0)
        return 0;
    if (e->key_len > SIZE_MAX - n)
        return 0;
    n += e->key_len;
    if (e->head_len > SIZE_MAX - n)
        return 0;
    n += e->head_len;
    if (body_len > SIZE_MAX - n)
        return 0;
    return n + (size_t)body_len;
}

size_t
envelope_encode(const struct envelope *e, void *buf, size_t cap)
{
    size_t size = envelope_size(e);
    unsigned char *start = buf;
    unsigned char *p = start;

    if (size == 0 || cap < size)
        return 0;
    memcpy(p, ENVELOPE_MAGIC, ENVELOPE_MAGIC_LEN);
    p += ENVELOPE_MAGIC_LEN;
    *p++ = ENVELOPE_MAJOR;
    *p++ = ENVELOPE_MINOR;
    *p++ = (unsigned char)e->kind;
    p = envelope_put_u16(p, ENVELOPE_FIXED_LEN);

    p = envelope_put_u16(p, (uint16_t)e->status);
    p = envelope_put_u32(p, e->meta.flags);
    p = envelope_put_i64(p, e->meta.request_time);
    p = envelope_put_i64(p, e->meta.response_time);
    p = envelope_put_i64(p, e->meta.date_value);
    p = envelope_put_i64(p, e->meta.age_value);
    p = envelope_put_i64(p, e->meta.lifetime);
    p = envelope_put_i64(p, e->meta.swr);
    p = envelope_put_i64(p, e->meta.sie);
    p = envelope_put_i64(p, e->stored_at_us);
    p = envelope_put_u64(p, e->vary_id);
    p = envelope_put_u32(p, (uint32_t)e->key_len);
    p = envelope_put_u32(p, (uint32_t)e->head_len);
    p = envelope_put_u64(p, envelope_body_len(e));

    /* memcpy with length 0 still wants valid pointers; skip empty parts. */
    if (e->key_len > 0) {
        memcpy(p, e->key, e->key_len);
        p += e->key_len;
    }
    if (e->head_len > 0) {
        memcpy(p, e->head, e->head_len);
        p += e->head_len;
    }
    for (int i = 0; i < e->body_iovcnt; i++) {
        if (e->body_iov[i].iov_len > 0) {
            memcpy(p, e->body_iov[i].iov_base, e->body_iov[i].iov_len);
            p += e->body_iov[i].iov_len;
        }
    }
    p = envelope_put_u64(p, XXH3_64bits(start, (size_t)(p - start)));
    return (size_t)(p - start);
}

/* ---- decoding ------------------------------------------------------ */

int
envelope_decode(const void *buf, size_t len, struct envelope *out)
{
    const unsigned char *start = buf;
    const unsigned char *p = start;
    struct envelope e;
    size_t fixed_len;
    size_t rest;
    uint64_t body_len;

    if (len < ENVELOPE_HEADER_LEN || memcmp(p, ENVELOPE_MAGIC, ENVELOPE_MAGIC_LEN) != 0)
        return ENVELOPE_EMALFORMED;
    if (p[ENVELOPE_MAGIC_LEN] != ENVELOPE_MAJOR)
        return ENVELOPE_EVERSION;
    /* The minor (p[4]) only tells how much fixed part there is, which
     * fixed_len says too: nothing to check. */
    fixed_len = envelope_get_u16(p + 6);
    if (fixed_len < ENVELOPE_FIXED_LEN)
        return ENVELOPE_EMALFORMED;
    if (len - ENVELOPE_HEADER_LEN < fixed_len + ENVELOPE_CHECKSUM_LEN)
        return ENVELOPE_EMALFORMED;

    memset(&e, 0, sizeof(e));
    e.kind = (enum envelope_kind)p[5];
    p += ENVELOPE_HEADER_LEN;
    e.status = envelope_get_u16(p);
    e.meta.flags = envelope_get_u32(p + 2);
    e.meta.request_time = envelope_get_i64(p + 6);
    e.meta.response_time = envelope_get_i64(p + 14);
    e.meta.date_value = envelope_get_i64(p + 22);
    e.meta.age_value = envelope_get_i64(p + 30);
    e.meta.lifetime = envelope_get_i64(p + 38);
    e.meta.swr = envelope_get_i64(p + 46);
    e.meta.sie = envelope_get_i64(p + 54);
    e.stored_at_us = envelope_get_i64(p + 62);
    e.vary_id = envelope_get_u64(p + 70);
    e.key_len = envelope_get_u32(p + 78);
    e.head_len = envelope_get_u32(p + 82);
    body_len = envelope_get_u64(p + 86);
    p += fixed_len; /* a newer minor's extra fields are skipped */

    /* Take each part out of what is left, so no sum can overflow. */
    rest = len - ENVELOPE_HEADER_LEN - fixed_len - ENVELOPE_CHECKSUM_LEN;
    if (e.key_len > rest)
        return ENVELOPE_EMALFORMED;
    rest -= e.key_len;
    if (e.head_len > rest)
        return ENVELOPE_EMALFORMED;
    rest -= e.head_len;
    if (body_len != rest)
        return ENVELOPE_EMALFORMED;

    if (XXH3_64bits(start, len - ENVELOPE_CHECKSUM_LEN) !=
        envelope_get_u64(start + len - ENVELOPE_CHECKSUM_LEN))
        return ENVELOPE_EMALFORMED;

    /* Checked after the checksum: a kind this release does not know was
     * written on purpose by a newer one, not damaged in transit. */
    if (e.kind != ENVELOPE_RESPONSE && e.kind != ENVELOPE_VARY)
        return ENVELOPE_EMALFORMED;
    if (e.kind == ENVELOPE_VARY && body_len != 0)
        return ENVELOPE_EMALFORMED;

    e.key = (const char *)p;
    p += e.key_len;
    e.head = (const char *)p;
    p += e.head_len;
    e.body = (const char *)p;
    e.body_len = body_len;
    e.body_iov = NULL;
    e.body_iovcnt = 0;
    *out = e;
    return ENVELOPE_OK;
}
