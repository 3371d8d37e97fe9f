/*
 * check_stats: the counter table is well-formed and summing and export
 * work across several workers' structs.
 */
#include <check.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "stats.h"

static char *
stats_test_text(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

START_TEST(test_names_unique_and_well_formed)
{
    size_t n = stats_count();
    ck_assert_uint_gt(n, 10);
    for (size_t i = 0; i < n; i++) {
        const char *name = stats_name(i);
        ck_assert_ptr_nonnull(name);
        ck_assert(islower((unsigned char)name[0]));
        for (const char *p = name; *p; p++)
            ck_assert_msg(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_',
                          "bad character in %s", name);
        ck_assert_msg(strstr(name, "_total") == NULL, "%s: _total is added on export", name);
        ck_assert(strcmp(stats_kind(i), "COUNTER") == 0 || strcmp(stats_kind(i), "GAUGE") == 0);
        ck_assert_msg(strlen(stats_help(i)) > 10, "%s: help text missing", name);
        for (size_t j = i + 1; j < n; j++)
            ck_assert_msg(strcmp(name, stats_name(j)) != 0, "duplicate counter %s", name);
    }
    ck_assert_ptr_null(stats_name(n));
}
END_TEST

START_TEST(test_sum_across_workers)
{
    static struct stats a, b;
    struct stats sum;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    stats_unregister_all();
    stats_register(&a);
    stats_register(&b);
    a.requests = 3;
    b.requests = 4;
    a.connections_active = 2;
    b.bytes_to_clients = 1000;
    stats_sum(&sum);
    ck_assert_uint_eq(sum.requests, 7);
    ck_assert_uint_eq(sum.connections_active, 2);
    ck_assert_uint_eq(sum.bytes_to_clients, 1000);
    ck_assert_uint_eq(sum.responses_2xx, 0);
    stats_unregister_all();
    stats_sum(&sum);
    ck_assert_uint_eq(sum.requests, 0);
}
END_TEST

START_TEST(test_json_export)
{
    struct stats s;
    memset(&s, 0, sizeof(s));
    s.requests = 42;
    s.responses_5xx = 1;
    struct evbuffer *b = evbuffer_new();
    stats_format_json(b, &s);
    char *t = stats_test_text(b);
    ck_assert(t[0] == '{');
    ck_assert_ptr_nonnull(strstr(t, "\"requests\":42,"));
    ck_assert_ptr_nonnull(strstr(t, "\"responses_5xx\":1"));
    ck_assert_ptr_nonnull(strstr(t, "}\n"));
    free(t);
    evbuffer_free(b);
}
END_TEST

START_TEST(test_prometheus_export)
{
    struct stats s;
    memset(&s, 0, sizeof(s));
    s.requests = 9;
    s.connections_active = 5;
    struct evbuffer *b = evbuffer_new();
    stats_format_prometheus(b, &s);
    char *t = stats_test_text(b);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE tailcache_requests_total counter\n"));
    ck_assert_ptr_nonnull(strstr(t, "\ntailcache_requests_total 9\n"));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE tailcache_connections_active gauge\n"));
    ck_assert_ptr_nonnull(strstr(t, "\ntailcache_connections_active 5\n"));
    /* Every counter has HELP and TYPE lines. */
    size_t helps = 0;
    for (const char *p = t; (p = strstr(p, "# HELP ")) != NULL; p++)
        helps++;
    ck_assert_uint_eq(helps, stats_count());
    free(t);
    evbuffer_free(b);
}
END_TEST

static Suite *
stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_names_unique_and_well_formed);
    suite_add_tcase(s, tc);
    tc = tcase_create("sum");
    tcase_add_test(tc, test_sum_across_workers);
    suite_add_tcase(s, tc);
    tc = tcase_create("export");
    tcase_add_test(tc, test_json_export);
    tcase_add_test(tc, test_prometheus_export);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(stats_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
