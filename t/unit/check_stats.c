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
    /* Every counter and histogram has HELP and TYPE lines. */
    size_t helps = 0, hists = 0;
    for (const char *p = t; (p = strstr(p, "# HELP ")) != NULL; p++)
        helps++;
    for (const char *p = t; (p = strstr(p, " histogram\n")) != NULL; p++)
        hists++;
    ck_assert_uint_eq(hists, 2);
    ck_assert_uint_eq(helps, stats_count() + hists);
    free(t);
    evbuffer_free(b);
}
END_TEST

START_TEST(test_histogram_buckets_sum_and_export)
{
    static struct stats a, b;
    struct stats sum;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    stats_unregister_all();
    stats_register(&a);
    stats_register(&b);
    stats_hist_record(&a.tier_redis_lookup, 100);     /* on the first bound: le=0.0001 */
    stats_hist_record(&a.tier_redis_lookup, 101);     /* just over it: le=0.00025 */
    stats_hist_record(&b.tier_redis_lookup, 2000000); /* over every bound: +Inf only */
    stats_sum(&sum);
    ck_assert_uint_eq(sum.tier_redis_lookup.count, 3);
    ck_assert_uint_eq(sum.tier_redis_lookup.sum_us, 2000201);
    ck_assert_uint_eq(sum.tier_redis_lookup.buckets[0], 1);
    ck_assert_uint_eq(sum.tier_redis_lookup.buckets[1], 1);
    ck_assert_uint_eq(sum.tier_redis_lookup.buckets[STATS_HIST_NBOUNDS], 1);
    ck_assert_uint_eq(sum.tier_memcached_lookup.count, 0);

    struct evbuffer *out = evbuffer_new();
    stats_format_prometheus(out, &sum);
    char *t = stats_test_text(out);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE tailcache_tier_redis_lookup_seconds histogram\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "tailcache_tier_redis_lookup_seconds_bucket{le=\"0.0001\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "tailcache_tier_redis_lookup_seconds_bucket{le=\"0.00025\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "tailcache_tier_redis_lookup_seconds_bucket{le=\"1\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "tailcache_tier_redis_lookup_seconds_bucket{le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "tailcache_tier_redis_lookup_seconds_count 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "tailcache_tier_redis_lookup_seconds_sum 2.000201\n"));
    free(t);
    stats_format_json(out, &sum);
    t = stats_test_text(out);
    ck_assert_ptr_nonnull(strstr(t, "\"tier_redis_lookup_seconds\":{\"count\":3,"));
    ck_assert_ptr_nonnull(strstr(t, "\"+Inf\":3}}"));
    free(t);
    evbuffer_free(out);
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
    tcase_add_test(tc, test_histogram_buckets_sum_and_export);
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
