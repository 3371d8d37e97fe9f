/*
 * check_envelope: unit tests of the shared-tier envelope: round trips of
 * each kind, the exact byte layout of the header and fixed part, and
 * strict decoding: every truncation, every flipped byte, extra bytes,
 * another major, a newer minor's longer fixed part, a shorter fixed part,
 * declared lengths that overflow or do not add up, unknown kinds, and
 * encoding into a buffer that is too small.
 *
 * Tampered envelopes that must get past the checksum have it recomputed
 * (test_reseal), so the check under test is the one that rejects them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <xxhash.h>

#include "envelope.h"

/* Offsets of this version's layout (see envelope.h). */
#define OFF_MAJOR 3
#define OFF_MINOR 4
#define OFF_KIND 5
#define OFF_FIXED_LEN 6
#define OFF_STATUS 8
#define OFF_FLAGS 10
#define OFF_REQUEST_TIME 14
#define OFF_STORED_AT 70
#define OFF_VARY_ID 78
#define OFF_KEY_LEN 86
#define OFF_HEAD_LEN 90
#define OFF_BODY_LEN 94
#define FIXED_LEN 94
#define OFF_KEY (8 + FIXED_LEN)

static const char test_key[] = "G\nhttps\nexample.com\n/a?x=1";
static const char test_head[] = "Content-Type: text/plain\r\nSurrogate-Key: a b\r\n";

static void
put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;

    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Recomputes the trailing checksum of buf[0..len). */
static void
test_reseal(unsigned char *buf, size_t len)
{
    put_le(buf + len - 8, XXH3_64bits(buf, len - 8), 8);
}

static struct envelope
test_response(const struct iovec *iov, int iovcnt)
{
    struct envelope e = {
        .kind = ENVELOPE_RESPONSE,
        .status = 203,
        .meta =
            {
                .request_time = 1700000000,
                .response_time = 1700000001,
                .date_value = -5,
                .age_value = INT64_MAX,
                .lifetime = INT64_MIN,
                .swr = 30,
                .sie = -1,
                .flags = 0xdeadbeefu,
            },
        .stored_at_us = 1700000000123456,
        .vary_id = 0,
        .key = test_key,
        .key_len = sizeof(test_key) - 1,
        .head = test_head,
        .head_len = sizeof(test_head) - 1,
        .body_iov = iov,
        .body_iovcnt = iovcnt,
    };
    return e;
}

/* Encodes e into a new buffer of exactly envelope_size(e) bytes. */
static unsigned char *
test_encode(const struct envelope *e, size_t *len)
{
    size_t n = envelope_size(e);
    unsigned char *buf;

    ck_assert_uint_gt(n, 0);
    buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(envelope_encode(e, buf, n), n);
    *len = n;
    return buf;
}

static void
check_same(const struct envelope *in, const struct envelope *out, const char *body, size_t body_len)
{
    ck_assert_int_eq(out->kind, in->kind);
    ck_assert_int_eq(out->status, in->status);
    ck_assert_int_eq(out->meta.request_time, in->meta.request_time);
    ck_assert_int_eq(out->meta.response_time, in->meta.response_time);
    ck_assert_int_eq(out->meta.date_value, in->meta.date_value);
    ck_assert_int_eq(out->meta.age_value, in->meta.age_value);
    ck_assert_int_eq(out->meta.lifetime, in->meta.lifetime);
    ck_assert_int_eq(out->meta.swr, in->meta.swr);
    ck_assert_int_eq(out->meta.sie, in->meta.sie);
    ck_assert_uint_eq(out->meta.flags, in->meta.flags);
    ck_assert_int_eq(out->stored_at_us, in->stored_at_us);
    ck_assert_uint_eq(out->vary_id, in->vary_id);
    ck_assert_uint_eq(out->key_len, in->key_len);
    ck_assert(memcmp(out->key, in->key, in->key_len) == 0);
    ck_assert_uint_eq(out->head_len, in->head_len);
    ck_assert(in->head_len == 0 || memcmp(out->head, in->head, in->head_len) == 0);
    ck_assert_ptr_null(out->body_iov);
    ck_assert_int_eq(out->body_iovcnt, 0);
    ck_assert_uint_eq(out->body_len, body_len);
    ck_assert(body_len == 0 || memcmp(out->body, body, body_len) == 0);
}

START_TEST(test_roundtrip_response)
{
    struct iovec iov[4] = {
        {.iov_base = (void *)"hello, ", .iov_len = 7},
        {.iov_base = NULL, .iov_len = 0}, /* an empty piece is fine */
        {.iov_base = (void *)"wide ", .iov_len = 5},
        {.iov_base = (void *)"world", .iov_len = 5},
    };
    struct envelope in = test_response(iov, 4);
    struct envelope out;
    size_t len;
    unsigned char *buf = test_encode(&in, &len);

    ck_assert_uint_eq(len, 8 + FIXED_LEN + in.key_len + in.head_len + 17 + 8);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_OK);
    check_same(&in, &out, "hello, wide world", 17);
    /* Pointers go into the buffer, in layout order. */
    ck_assert_ptr_eq(out.key, (const char *)buf + OFF_KEY);
    ck_assert_ptr_eq(out.head, out.key + out.key_len);
    ck_assert_ptr_eq(out.body, out.head + out.head_len);
    free(buf);
}
END_TEST

START_TEST(test_roundtrip_empty_body)
{
    struct envelope in = test_response(NULL, 0);
    struct envelope out;
    size_t len;
    unsigned char *buf;

    in.status = 204;
    in.head = NULL;
    in.head_len = 0;
    buf = test_encode(&in, &len);
    ck_assert_uint_eq(len, 8 + FIXED_LEN + in.key_len + 8);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_OK);
    check_same(&in, &out, NULL, 0);
    ck_assert_ptr_nonnull(out.body);
    free(buf);
}
END_TEST

START_TEST(test_roundtrip_vary)
{
    static const char names[] = "accept-encoding,accept-language";
    struct envelope in = {
        .kind = ENVELOPE_VARY,
        .stored_at_us = 42,
        .vary_id = 0x0123456789abcdefull,
        .key = test_key,
        .key_len = sizeof(test_key) - 1,
        .head = names,
        .head_len = sizeof(names) - 1,
    };
    struct envelope out;
    size_t len;
    unsigned char *buf = test_encode(&in, &len);

    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_OK);
    check_same(&in, &out, NULL, 0);
    free(buf);

    /* A VARY has no body: not encodable, and not accepted when decoding. */
    struct iovec iov = {.iov_base = (void *)"x", .iov_len = 1};
    in.body_iov = &iov;
    in.body_iovcnt = 1;
    ck_assert_uint_eq(envelope_size(&in), 0);
    in.kind = ENVELOPE_RESPONSE;
    buf = test_encode(&in, &len);
    buf[OFF_KIND] = ENVELOPE_VARY;
    test_reseal(buf, len);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_EMALFORMED);
    free(buf);
}
END_TEST

/* The bytes are little-endian, field by field, whatever the host. */
START_TEST(test_layout)
{
    struct iovec iov = {.iov_base = (void *)"b", .iov_len = 1};
    struct envelope in = test_response(&iov, 1);
    size_t len;
    unsigned char *buf;

    in.status = 0x1234;
    in.vary_id = 0x0102030405060708ull;
    in.meta.request_time = -2;
    buf = test_encode(&in, &len);
    ck_assert(memcmp(buf, "TCE", 3) == 0);
    ck_assert_uint_eq(buf[OFF_MAJOR], ENVELOPE_MAJOR);
    ck_assert_uint_eq(buf[OFF_MINOR], ENVELOPE_MINOR);
    ck_assert_uint_eq(buf[OFF_KIND], ENVELOPE_RESPONSE);
    ck_assert_uint_eq(get_le(buf + OFF_FIXED_LEN, 2), FIXED_LEN);
    ck_assert_uint_eq(buf[OFF_STATUS], 0x34);
    ck_assert_uint_eq(buf[OFF_STATUS + 1], 0x12);
    ck_assert_uint_eq(get_le(buf + OFF_FLAGS, 4), 0xdeadbeefu);
    ck_assert_uint_eq(get_le(buf + OFF_REQUEST_TIME, 8), UINT64_MAX - 1);
    ck_assert_uint_eq(get_le(buf + OFF_STORED_AT, 8), 1700000000123456ull);
    ck_assert_uint_eq(buf[OFF_VARY_ID], 0x08);
    ck_assert_uint_eq(buf[OFF_VARY_ID + 7], 0x01);
    ck_assert_uint_eq(get_le(buf + OFF_KEY_LEN, 4), in.key_len);
    ck_assert_uint_eq(get_le(buf + OFF_HEAD_LEN, 4), in.head_len);
    ck_assert_uint_eq(get_le(buf + OFF_BODY_LEN, 8), 1);
    ck_assert(memcmp(buf + OFF_KEY, test_key, in.key_len) == 0);
    ck_assert_uint_eq(buf[len - 9], 'b');
    ck_assert_uint_eq(get_le(buf + len - 8, 8), XXH3_64bits(buf, len - 8));
    free(buf);
}
END_TEST

/* Every proper prefix, and every buffer with bytes after the checksum. */
START_TEST(test_truncated_and_overlong)
{
    struct iovec iov[2] = {{.iov_base = (void *)"abc", .iov_len = 3},
                           {.iov_base = (void *)"def", .iov_len = 3}};
    struct envelope in = test_response(iov, 2);
    struct envelope out;
    size_t len;
    unsigned char *buf = test_encode(&in, &len);
    unsigned char *longer = malloc(len + 8);

    memset(&out, 0x5a, sizeof(out));
    for (size_t n = 0; n < len; n++)
        ck_assert_msg(envelope_decode(buf, n, &out) == ENVELOPE_EMALFORMED, "prefix %zu", n);
    ck_assert_ptr_nonnull(longer);
    memcpy(longer, buf, len);
    memset(longer + len, 0, 8);
    for (size_t n = len + 1; n <= len + 8; n++)
        ck_assert_int_eq(envelope_decode(longer, n, &out), ENVELOPE_EMALFORMED);
    /* Bytes appended and the checksum recomputed over them: the lengths no
     * longer add up. */
    test_reseal(longer, len + 8);
    ck_assert_int_eq(envelope_decode(longer, len + 8, &out), ENVELOPE_EMALFORMED);
    /* *out untouched by every failure. */
    for (size_t i = 0; i < sizeof(out); i++)
        ck_assert_uint_eq(((unsigned char *)&out)[i], 0x5a);
    free(longer);
    free(buf);
}
END_TEST

/* Any changed byte is caught: the major as another version, the rest as
 * malformed (the checksum covers everything before it). */
START_TEST(test_flipped_byte)
{
    struct iovec iov = {.iov_base = (void *)"body bytes", .iov_len = 10};
    struct envelope in = test_response(&iov, 1);
    struct envelope out;
    size_t len;
    unsigned char *buf = test_encode(&in, &len);
    static const unsigned char masks[] = {0x01, 0x80, 0xff};

    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            buf[i] ^= masks[m];
            int rc = envelope_decode(buf, len, &out);
            buf[i] ^= masks[m];
            if (i == OFF_MAJOR)
                ck_assert_msg(rc == ENVELOPE_EVERSION, "byte %zu mask %x: %d", i, masks[m], rc);
            else
                ck_assert_msg(rc == ENVELOPE_EMALFORMED, "byte %zu mask %x: %d", i, masks[m], rc);
        }
    }
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_OK);
    free(buf);
}
END_TEST

START_TEST(test_other_major)
{
    struct envelope in = test_response(NULL, 0);
    struct envelope out;
    size_t len;
    unsigned char *buf = test_encode(&in, &len);

    buf[OFF_MAJOR] = ENVELOPE_MAJOR + 1;
    test_reseal(buf, len);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_EVERSION);
    buf[OFF_MAJOR] = 0;
    test_reseal(buf, len);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_EVERSION);
    /* Another major whatever follows: its layout is not ours to judge. */
    ck_assert_int_eq(envelope_decode(buf, 8, &out), ENVELOPE_EVERSION);
    /* But the magic comes first. */
    buf[0] = 'X';
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_EMALFORMED);
    free(buf);
}
END_TEST

/*
 * Rewrites buf as a newer minor would: extra bytes appended to the fixed
 * part, fixed_len and the minor raised, the checksum recomputed.
 */
static unsigned char *
test_make_newer(const unsigned char *buf, size_t len, size_t extra, size_t *newlen)
{
    unsigned char *nb = malloc(len + extra);

    ck_assert_ptr_nonnull(nb);
    memcpy(nb, buf, OFF_KEY);
    memset(nb + OFF_KEY, 0xee, extra);
    memcpy(nb + OFF_KEY + extra, buf + OFF_KEY, len - OFF_KEY);
    nb[OFF_MINOR] = ENVELOPE_MINOR + 3;
    put_le(nb + OFF_FIXED_LEN, FIXED_LEN + extra, 2);
    test_reseal(nb, len + extra);
    *newlen = len + extra;
    return nb;
}

START_TEST(test_newer_minor)
{
    struct iovec iov[2] = {{.iov_base = (void *)"new", .iov_len = 3},
                           {.iov_base = (void *)"er", .iov_len = 2}};
    struct envelope in = test_response(iov, 2);
    struct envelope out;
    size_t len, nlen;
    unsigned char *buf = test_encode(&in, &len);
    size_t extras[] = {1, 13, 65535 - FIXED_LEN};

    for (size_t i = 0; i < sizeof(extras) / sizeof(extras[0]); i++) {
        unsigned char *nb = test_make_newer(buf, len, extras[i], &nlen);
        ck_assert_int_eq(envelope_decode(nb, nlen, &out), ENVELOPE_OK);
        check_same(&in, &out, "newer", 5);
        ck_assert_ptr_eq(out.key, (const char *)nb + OFF_KEY + extras[i]);
        /* Its truncations are still rejected. */
        ck_assert_int_eq(envelope_decode(nb, nlen - 1, &out), ENVELOPE_EMALFORMED);
        ck_assert_int_eq(envelope_decode(nb, OFF_KEY + extras[i] - 1, &out), ENVELOPE_EMALFORMED);
        free(nb);
    }
    free(buf);
}
END_TEST

START_TEST(test_short_fixed_part)
{
    struct envelope in = test_response(NULL, 0);
    struct envelope out;
    size_t len;
    unsigned char *buf = test_encode(&in, &len);

    /* An older writer's shorter fixed part: fields we need are missing. */
    for (unsigned fl = 0; fl < FIXED_LEN; fl += 7) {
        put_le(buf + OFF_FIXED_LEN, fl, 2);
        test_reseal(buf, len);
        ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_EMALFORMED);
    }
    /* A fixed_len longer than the buffer. */
    put_le(buf + OFF_FIXED_LEN, 0xffff, 2);
    test_reseal(buf, len);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_EMALFORMED);
    free(buf);
}
END_TEST

/* Declared lengths near the type limits, including ones whose sum wraps
 * around to exactly the buffer's length. */
START_TEST(test_huge_lengths)
{
    struct iovec iov = {.iov_base = (void *)"0123456789abcdefghij", .iov_len = 20};
    struct envelope in = test_response(&iov, 1);
    struct envelope out;
    size_t len;
    unsigned char *buf = test_encode(&in, &len);
    uint64_t key_len = in.key_len, head_len = in.head_len, body_len = 20;
    struct {
        uint64_t k, h, b;
    } cases[] = {
        {UINT32_MAX, head_len, body_len},
        {key_len, UINT32_MAX, body_len},
        {key_len, head_len, UINT64_MAX},
        {UINT32_MAX, UINT32_MAX, UINT64_MAX},
        /* Sums that wrap modulo 2^64 onto exactly the right total. */
        {key_len + 24, head_len, body_len - 24},
        {key_len, head_len + 21, body_len - 21},
        {UINT32_MAX, UINT32_MAX, key_len + head_len + body_len - 2 * (uint64_t)UINT32_MAX},
        /* One byte more or less than the buffer holds. */
        {0, 0, key_len + head_len + body_len + 1},
        {0, 0, key_len + head_len + body_len - 1},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        put_le(buf + OFF_KEY_LEN, cases[i].k, 4);
        put_le(buf + OFF_HEAD_LEN, cases[i].h, 4);
        put_le(buf + OFF_BODY_LEN, cases[i].b, 8);
        test_reseal(buf, len);
        ck_assert_msg(envelope_decode(buf, len, &out) == ENVELOPE_EMALFORMED, "case %zu", i);
    }
    /* Moving bytes between parts keeps the total: accepted, as it must be
     * (the checksum is all that guards against that, and it was resealed). */
    put_le(buf + OFF_KEY_LEN, key_len + 3, 4);
    put_le(buf + OFF_HEAD_LEN, head_len, 4);
    put_le(buf + OFF_BODY_LEN, body_len - 3, 8);
    test_reseal(buf, len);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_OK);
    ck_assert_uint_eq(out.key_len, key_len + 3);
    ck_assert_uint_eq(out.body_len, body_len - 3);
    free(buf);
}
END_TEST

START_TEST(test_unknown_kind)
{
    struct envelope in = test_response(NULL, 0);
    struct envelope out;
    size_t len;
    unsigned char *buf = test_encode(&in, &len);

    buf[OFF_KIND] = 0;
    test_reseal(buf, len);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_EMALFORMED);
    buf[OFF_KIND] = 3;
    test_reseal(buf, len);
    ck_assert_int_eq(envelope_decode(buf, len, &out), ENVELOPE_EMALFORMED);
    free(buf);

    in.kind = (enum envelope_kind)3;
    ck_assert_uint_eq(envelope_size(&in), 0);
}
END_TEST

START_TEST(test_encode_small_cap)
{
    struct iovec iov = {.iov_base = (void *)"xyz", .iov_len = 3};
    struct envelope in = test_response(&iov, 1);
    size_t n = envelope_size(&in);
    unsigned char *buf = malloc(n);

    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(envelope_encode(&in, buf, 0), 0);
    ck_assert_uint_eq(envelope_encode(&in, buf, 1), 0);
    ck_assert_uint_eq(envelope_encode(&in, buf, n - 1), 0);
    ck_assert_uint_eq(envelope_encode(&in, buf, n), n);
    free(buf);

    /* Not encodable at all. */
    in.status = 70000;
    ck_assert_uint_eq(envelope_size(&in), 0);
    in.status = -1;
    ck_assert_uint_eq(envelope_size(&in), 0);
}
END_TEST

static Suite *
envelope_suite(void)
{
    Suite *s = suite_create("envelope");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"roundtrip_response", test_roundtrip_response},
        {"roundtrip_empty_body", test_roundtrip_empty_body},
        {"roundtrip_vary", test_roundtrip_vary},
        {"layout", test_layout},
        {"truncated_and_overlong", test_truncated_and_overlong},
        {"flipped_byte", test_flipped_byte},
        {"other_major", test_other_major},
        {"newer_minor", test_newer_minor},
        {"short_fixed_part", test_short_fixed_part},
        {"huge_lengths", test_huge_lengths},
        {"unknown_kind", test_unknown_kind},
        {"encode_small_cap", test_encode_small_cap},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(envelope_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
