/*
 * check_obj: cached objects: references, body segments, states, waiters.
 */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "obj.h"

static struct obj *
obj_test_new(void)
{
    return obj_new(OBJ_KIND_RESPONSE, "key", 3, 42);
}

static size_t
obj_test_body(struct obj *o, char *out, size_t cap)
{
    size_t n = 0;
    for (struct obj_segment *s = o->first; s != NULL; s = s->next) {
        ck_assert_uint_le(n + s->len, cap);
        memcpy(out + n, s->data, s->len);
        n += s->len;
    }
    return n;
}

START_TEST(test_new_is_busy_with_key)
{
    struct obj *o = obj_test_new();
    ck_assert_int_eq(obj_get_state(o), OBJ_BUSY);
    ck_assert_str_eq(o->key, "key");
    ck_assert_uint_eq(o->key_len, 3);
    ck_assert_uint_eq(o->hash, 42);
    ck_assert_uint_eq(o->body_max, UINT64_MAX);
    ck_assert_uint_eq(atomic_load(&o->refs), 1);
    obj_unref(&o);
    ck_assert_ptr_null(o);
}
END_TEST

START_TEST(test_refs)
{
    struct obj *o = obj_test_new();
    struct obj *r = obj_ref(o);
    ck_assert_ptr_eq(r, o);
    ck_assert_uint_eq(atomic_load(&o->refs), 2);
    obj_unref(&r);
    ck_assert_ptr_null(r);
    ck_assert_uint_eq(atomic_load(&o->refs), 1);
    obj_unref(&o);
    obj_unref(&o); /* NULL is accepted */
}
END_TEST

START_TEST(test_append_across_segments)
{
    struct obj *o = obj_test_new();
    struct obj_meta meta = {.lifetime = 60};
    ck_assert_int_eq(obj_set_head(o, 200, "A: b\r\n", 6, UINT64_MAX, &meta), 0);
    ck_assert_int_eq(o->status, 200);
    ck_assert_str_eq(o->head, "A: b\r\n");
    size_t total = 1000 * 1000 + 7;
    char *src = malloc(total);
    char *dst = malloc(total);
    for (size_t i = 0; i < total; i++)
        src[i] = (char)(i * 31 + i / 7);
    /* Odd-sized appends cross every segment boundary. */
    for (size_t off = 0; off < total;) {
        size_t n = total - off < 3001 ? total - off : 3001;
        ck_assert_int_eq(obj_append(o, src + off, n), 0);
        off += n;
    }
    ck_assert_uint_eq(o->body_len, total);
    ck_assert_ptr_ne(o->first, o->last); /* several segments */
    ck_assert_uint_eq(obj_test_body(o, dst, total), total);
    ck_assert(memcmp(src, dst, total) == 0);
    ck_assert_uint_ge(obj_size(o), total);
    obj_finish(o, OBJ_COMPLETE);
    ck_assert_int_eq(obj_get_state(o), OBJ_COMPLETE);
    free(src);
    free(dst);
    obj_unref(&o);
}
END_TEST

START_TEST(test_known_length_one_segment)
{
    struct obj *o = obj_test_new();
    struct obj_meta meta = {0};
    char body[10000];
    memset(body, 'x', sizeof(body));
    ck_assert_int_eq(obj_set_head(o, 200, "", 0, sizeof(body), &meta), 0);
    ck_assert_int_eq(obj_append(o, body, 100), 0);
    ck_assert_int_eq(obj_append(o, body, sizeof(body) - 100), 0);
    ck_assert_ptr_eq(o->first, o->last);
    ck_assert_uint_eq(o->first->len, sizeof(body));
    obj_unref(&o);
}
END_TEST

static int obj_test_wakes;

static void
obj_test_wake(void *arg)
{
    (void)arg;
    obj_test_wakes++;
}

START_TEST(test_waiters_woken)
{
    struct obj *o = obj_test_new();
    struct obj_waiter w = {.wake = obj_test_wake};
    struct obj_meta meta = {0};
    obj_test_wakes = 0;
    obj_wait(o, &w);
    obj_set_head(o, 200, "", 0, UINT64_MAX, &meta);
    ck_assert_int_eq(obj_test_wakes, 1);
    obj_append(o, "abc", 3);
    ck_assert_int_eq(obj_test_wakes, 2);
    obj_finish(o, OBJ_FAILED);
    ck_assert_int_eq(obj_test_wakes, 3);
    obj_unwait(o, &w);
    ck_assert_int_eq(obj_get_state(o), OBJ_FAILED);
    obj_unref(&o);
}
END_TEST

START_TEST(test_meta_roundtrip)
{
    struct obj *o = obj_test_new();
    struct obj_meta in = {.request_time = 1, .response_time = 2, .date_value = 3, .age_value = 4,
                          .lifetime = 5, .swr = 6, .sie = 7, .flags = 8};
    struct obj_meta out;
    obj_set_meta(o, &in);
    obj_get_meta(o, &out);
    ck_assert_int_eq(out.request_time, 1);
    ck_assert_int_eq(out.response_time, 2);
    ck_assert_int_eq(out.date_value, 3);
    ck_assert_int_eq(out.age_value, 4);
    ck_assert_int_eq(out.lifetime, 5);
    ck_assert_int_eq(out.swr, 6);
    ck_assert_int_eq(out.sie, 7);
    ck_assert_uint_eq(out.flags, 8);
    /* Kept in 32 bits: real times until 2106, deltas capped at 2^31 - 1. */
    struct obj_meta big = {.request_time = 1795000000, .response_time = 1795000001,
                           .date_value = 1795000000, .age_value = INT64_C(1) << 40,
                           .lifetime = INT64_C(2147483648), .swr = -5, .sie = 0};
    obj_set_meta(o, &big);
    obj_get_meta(o, &out);
    ck_assert_int_eq(out.request_time, 1795000000);
    ck_assert_int_eq(out.response_time, 1795000001);
    ck_assert_int_eq(out.age_value, INT32_MAX);
    ck_assert_int_eq(out.lifetime, INT32_MAX);
    ck_assert_int_eq(out.swr, -5);
    obj_unref(&o);
}
END_TEST

START_TEST(test_double_finish_aborts)
{
    struct obj *o = obj_test_new();
    obj_finish(o, OBJ_COMPLETE);
    obj_finish(o, OBJ_FAILED); /* leaves BUSY only once: aborts */
}
END_TEST

START_TEST(test_state_names)
{
    ck_assert_str_eq(obj_state_name(OBJ_BUSY), "BUSY");
    ck_assert_str_eq(obj_state_name(OBJ_COMPLETE), "COMPLETE");
    ck_assert_str_eq(obj_state_name(OBJ_FAILED), "FAILED");
}
END_TEST

static Suite *
obj_suite(void)
{
    Suite *s = suite_create("obj");
    TCase *tc = tcase_create("lifecycle");
    tcase_add_test(tc, test_new_is_busy_with_key);
    tcase_add_test(tc, test_refs);
    tcase_add_test(tc, test_state_names);
    tcase_add_test_raise_signal(tc, test_double_finish_aborts, SIGABRT);
    suite_add_tcase(s, tc);
    tc = tcase_create("body");
    tcase_add_test(tc, test_append_across_segments);
    tcase_add_test(tc, test_known_length_one_segment);
    suite_add_tcase(s, tc);
    tc = tcase_create("waiters");
    tcase_add_test(tc, test_waiters_woken);
    tcase_add_test(tc, test_meta_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(obj_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
