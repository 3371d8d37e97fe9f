/*
 * check_analytics: per-route analytics summed over workers, the recent
 * window sliding tick by tick, budgets judged on it, cold and warm, and
 * the JSON and Prometheus exports.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "analytics.h"
#include "config.h"
#include "util.h"

static struct config *
analytics_test_config(void)
{
    char *err = NULL;
    struct config *cfg = config_quick("http://127.0.0.1:1", NULL, "off", NULL, NULL, &err);
    ck_assert_msg(cfg != NULL, "%s", err ? err : "");
    cfg->analytics_enabled = true;
    cfg->analytics_window_ms = 3000;
    cfg->analytics_slot_ms = 1000;
    cfg->routes[0].analytics_warmup_ms = 0;
    return cfg;
}

/* What format(a, buffer) writes, as a NUL-terminated string (caller frees). */
static char *
analytics_test_text(struct analytics *a, void (*format)(struct analytics *, struct evbuffer *))
{
    struct evbuffer *b = evbuffer_new();
    format(a, b);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

static char *
analytics_test_json(struct analytics *a)
{
    return analytics_test_text(a, analytics_format_json);
}

static char *
analytics_test_metrics(struct analytics *a)
{
    return analytics_test_text(a, analytics_format_prometheus);
}

/* Asserts that text has needle, showing text when it does not. */
#define HAS(text, needle)                                                                          \
    do {                                                                                           \
        if (strstr((text), (needle)) == NULL)                                                      \
            fprintf(stderr, "no %s in %s\n", (needle), (text));                                    \
        ck_assert_msg(strstr((text), (needle)) != NULL, "no %s (the text is on stderr)",           \
                      (needle));                                                                   \
    } while (0)

static void
analytics_test_record(struct analytics_route *r, enum analytics_outcome o, enum analytics_cause c,
                      uint64_t us, int times)
{
    struct analytics_sample s = {
        .outcome = o, .cause = c, .total_us = us, .body_bytes = 100, .now_us = util_now_us()};
    if (o == ANALYTICS_miss)
        s.origin_us = us / 2;
    for (int i = 0; i < times; i++)
        analytics_record(r, &s);
}

START_TEST(test_summed_over_workers)
{
    struct config *cfg = analytics_test_config();
    struct analytics *a = analytics_new(cfg);
    struct analytics_route *w1 = NULL, *w2 = NULL;
    analytics_register_worker(a, &w1);
    analytics_register_worker(a, &w2);
    const char *name = cfg->routes[0].name;
    struct analytics_route *r1 = analytics_worker_route(a, &w1, name);
    struct analytics_route *r2 = analytics_worker_route(a, &w2, name);
    ck_assert_ptr_eq(analytics_worker_route(a, &w1, name), r1); /* the same one again */
    analytics_test_record(r1, ANALYTICS_hit_memory, ANALYTICS_CAUSE_NONE, 200, 30);
    analytics_test_record(r2, ANALYTICS_hit_memory, ANALYTICS_CAUSE_NONE, 200, 50);
    analytics_test_record(r1, ANALYTICS_miss, ANALYTICS_CAUSE_cold, 50000, 15);
    analytics_test_record(r2, ANALYTICS_miss, ANALYTICS_CAUSE_expired, 50000, 5);
    /* A cause on a hit (the key was cold in memory, then found in a tier)
     * is not a miss cause. */
    analytics_test_record(r2, ANALYTICS_hit_redis, ANALYTICS_CAUSE_cold, 1000, 4);

    char *j = analytics_test_json(a);
    HAS(j, "\"requests\":104");
    HAS(j, "\"hit_memory\":80");
    HAS(j, "\"hit_redis\":4");
    HAS(j, "\"miss\":20");
    HAS(j, "\"cold\":15,\"expired\":5");
    HAS(j, "\"hit_ratio\":0.8077"); /* 84 / 104 */
    /* The hit p50 is 200 µs (exact below 128 µs? no: 200 is within 1%). */
    HAS(j, "\"hit_memory\":{\"count\":80,\"mean\":0.200,\"p50\":0.20");
    HAS(j, "\"origin\":{\"count\":20,");
    /* time saved: 84 hits x (50 ms - p50 of the hits) */
    HAS(j, "\"time_saved_s\":4.1");
    free(j);
    analytics_free(&a);
    ck_assert_ptr_null(w1); /* the workers' lists go with it */
    config_unref(&cfg);
}
END_TEST

START_TEST(test_window_slides)
{
    struct config *cfg = analytics_test_config();
    struct analytics *a = analytics_new(cfg);
    struct analytics_route *w = NULL;
    analytics_register_worker(a, &w);
    struct analytics_route *r = analytics_worker_route(a, &w, cfg->routes[0].name);
    analytics_test_record(r, ANALYTICS_miss, ANALYTICS_CAUSE_cold, 9000, 7);
    analytics_tick(a);
    analytics_test_record(r, ANALYTICS_hit_memory, ANALYTICS_CAUSE_NONE, 100, 3);
    analytics_tick(a);
    char *j = analytics_test_json(a);
    /* recent: both slots (7 misses + 3 hits) */
    HAS(j, "\"recent\":{\"requests\":10,");
    free(j);
    analytics_tick(a);
    analytics_tick(a); /* 3 slots in the window: the misses' slot has left */
    j = analytics_test_json(a);
    HAS(j, "\"recent\":{\"requests\":3,");
    HAS(j, "\"requests\":10,"); /* since start */
    free(j);
    analytics_tick(a);
    j = analytics_test_json(a);
    HAS(j, "\"recent\":{\"requests\":0,");
    free(j);
    analytics_free(&a);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_budget_breach_and_recovery)
{
    struct config *cfg = analytics_test_config();
    cfg->routes[0].budget = (struct config_budget){.p50_us = -1,
                                                   .p90_us = -1,
                                                   .p95_us = 20000,
                                                   .p99_us = -1,
                                                   .p999_us = -1,
                                                   .hit_ratio = -1,
                                                   .set = true};
    struct analytics *a = analytics_new(cfg);
    struct analytics_route *w = NULL;
    analytics_register_worker(a, &w);
    struct analytics_route *r = analytics_worker_route(a, &w, cfg->routes[0].name);
    analytics_test_record(r, ANALYTICS_miss, ANALYTICS_CAUSE_cold, 100000, 10);
    analytics_tick(a);
    char *j = analytics_test_json(a);
    HAS(j, "\"budget\":{\"status\":\"breach\",\"detail\":\"p95 100.");
    free(j);
    char *m = analytics_test_metrics(a);
    HAS(m, "tailcache_route_budget_ok{route=\"");
    HAS(m, "\"} 0\n");
    free(m);
    for (int i = 0; i < 3; i++) { /* the slow slot leaves the 3-slot window */
        analytics_test_record(r, ANALYTICS_hit_memory, ANALYTICS_CAUSE_NONE, 300, 10);
        analytics_tick(a);
    }
    j = analytics_test_json(a);
    HAS(j, "\"budget\":{\"status\":\"ok\"");
    free(j);
    analytics_free(&a);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_cold_then_warm)
{
    struct config *cfg = analytics_test_config();
    cfg->routes[0].analytics_warmup_ms = 60000;
    struct analytics *a = analytics_new(cfg);
    struct analytics_route *w = NULL;
    analytics_register_worker(a, &w);
    const char *name = cfg->routes[0].name;
    struct analytics_route *r = analytics_worker_route(a, &w, name);
    analytics_test_record(r, ANALYTICS_miss, ANALYTICS_CAUSE_cold, 5000, 2);
    analytics_test_record(r, ANALYTICS_hit_memory, ANALYTICS_CAUSE_NONE, 100, 1);
    char *j = analytics_test_json(a);
    HAS(j, "\"cold\":{\"active\":true,");
    HAS(j, "\"requests\":3,\"hits\":1,\"hit_ratio\":0.3333");
    HAS(j, "\"warm\":{\"requests\":0,");
    free(j);
    analytics_free(&a);

    /* Warm-up 0: warm at once; a flush starts a cold window again. */
    cfg->routes[0].analytics_warmup_ms = 0;
    a = analytics_new(cfg);
    w = NULL;
    analytics_register_worker(a, &w);
    r = analytics_worker_route(a, &w, name);
    analytics_test_record(r, ANALYTICS_hit_memory, ANALYTICS_CAUSE_NONE, 100, 4);
    cfg->routes[0].analytics_warmup_ms = 60000;
    analytics_set_config(a, cfg);
    analytics_route_flushed(a, name);
    analytics_test_record(r, ANALYTICS_miss, ANALYTICS_CAUSE_invalidated, 5000, 1);
    j = analytics_test_json(a);
    HAS(j, "\"warm\":{\"requests\":4,\"hits\":4,");
    HAS(j, "\"cold\":{\"active\":true,");
    HAS(j, "\"invalidated\":1");
    free(j);
    analytics_free(&a);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_prometheus_families)
{
    struct config *cfg = analytics_test_config();
    struct analytics *a = analytics_new(cfg);
    struct analytics_route *w = NULL;
    analytics_register_worker(a, &w);
    struct analytics_route *r = analytics_worker_route(a, &w, cfg->routes[0].name);
    analytics_test_record(r, ANALYTICS_hit_memory, ANALYTICS_CAUSE_NONE, 400, 3);
    analytics_test_record(r, ANALYTICS_miss, ANALYTICS_CAUSE_cold, 3000000, 1);
    analytics_tick(a);
    char *m = analytics_test_metrics(a);
    char want[256];
    snprintf(want, sizeof(want),
             "tailcache_route_latency_seconds_bucket{route=\"%s\",series=\"total\",le=\"0.001\"} "
             "3\n",
             cfg->routes[0].name);
    ck_assert_msg(strstr(m, want) != NULL, "missing %s", want);
    snprintf(want, sizeof(want),
             "tailcache_route_latency_seconds_bucket{route=\"%s\",series=\"total\",le=\"+Inf\"} "
             "4\n",
             cfg->routes[0].name);
    ck_assert_msg(strstr(m, want) != NULL, "missing %s", want);
    snprintf(want, sizeof(want), "tailcache_route_misses_total{route=\"%s\",cause=\"cold\"} 1\n",
             cfg->routes[0].name);
    ck_assert_msg(strstr(m, want) != NULL, "missing %s", want);
    /* Each family's HELP and TYPE appear once. */
    const char *fam = "# TYPE tailcache_route_latency_seconds histogram\n";
    const char *p = strstr(m, fam);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_null(strstr(p + 1, fam));
    free(m);
    analytics_free(&a);
    config_unref(&cfg);
}
END_TEST

START_TEST(test_top_missed)
{
    struct config *cfg = analytics_test_config();
    struct analytics *a = analytics_new(cfg);
    struct analytics_route *w1 = NULL, *w2 = NULL;
    analytics_register_worker(a, &w1);
    analytics_register_worker(a, &w2);
    struct analytics_route *r1 = analytics_worker_route(a, &w1, cfg->routes[0].name);
    struct analytics_route *r2 = analytics_worker_route(a, &w2, cfg->routes[0].name);
    struct analytics_sample s = {
        .outcome = ANALYTICS_miss, .total_us = 1000, .host = "shop", .host_len = 4};
    s.target = "/a";
    s.target_len = 2;
    s.cause = ANALYTICS_CAUSE_expired;
    for (int i = 0; i < 50; i++)
        analytics_record(i % 2 ? r1 : r2, &s); /* both workers: summed when read */
    s.target = "/b?q=\"x\"";
    s.target_len = strlen(s.target);
    s.cause = ANALYTICS_CAUSE_cold;
    for (int i = 0; i < 30; i++)
        analytics_record(r1, &s);
    char t[32];
    for (int i = 0; i < 100; i++) { /* one-offs cycle through the other slots */
        snprintf(t, sizeof(t), "/once/%d", i);
        s.target = t;
        s.target_len = strlen(t);
        analytics_record(r1, &s);
    }
    /* A hit is not a miss: not counted. */
    s.outcome = ANALYTICS_hit_memory;
    s.target = "/a";
    s.target_len = 2;
    analytics_record(r1, &s);
    char *j = analytics_test_json(a);
    HAS(j, "\"top_missed\":[{\"url\":\"shop/a\",\"misses\":50,\"overcount\":0,"
           "\"cause\":\"expired\"},{\"url\":\"shop/b?q=\\\"x\\\"\",\"misses\":30,"
           "\"overcount\":0,\"cause\":\"cold\"}");
    free(j);
    analytics_free(&a);
    config_unref(&cfg);
}
END_TEST

static Suite *
analytics_suite(void)
{
    Suite *s = suite_create("analytics");
    TCase *tc = tcase_create("analytics");
    tcase_add_test(tc, test_summed_over_workers);
    tcase_add_test(tc, test_window_slides);
    tcase_add_test(tc, test_budget_breach_and_recovery);
    tcase_add_test(tc, test_cold_then_warm);
    tcase_add_test(tc, test_prometheus_families);
    tcase_add_test(tc, test_top_missed);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(analytics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
