/*
 * check_route: unit tests of route matching: host patterns (exact,
 * wildcard, any, ports, IPv6, case), path kinds (prefix, exact, regex),
 * method sets, first-match order, and no match. The routes come from
 * t/data/routes.yaml through the real loader, so patterns are normalised
 * exactly as in production.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "config.h"
#include "route.h"

#ifndef TC_TEST_DATA
#define TC_TEST_DATA "t/data"
#endif

static struct config *cfg;

static void
setup(void)
{
    char *err = NULL;

    cfg = config_load(TC_TEST_DATA "/routes.yaml", &err);
    ck_assert_msg(cfg != NULL, "%s", err != NULL ? err : "");
}

static void
teardown(void)
{
    route_thread_cleanup();
    config_unref(&cfg);
}

/* The name of the route chosen, or "(none)". */
static const char *
pick(const char *host, const char *path, enum http_method m)
{
    const struct config_route *r = route_match(cfg, host, host != NULL ? strlen(host) : 0, path,
                                               path != NULL ? strlen(path) : 0, m);

    return r != NULL ? r->name : "(none)";
}

static bool
hm(const char *pattern, const char *host)
{
    return route_host_matches(pattern, host, host != NULL ? strlen(host) : 0);
}

START_TEST(test_host_exact)
{
    ck_assert(hm("api.example.com", "api.example.com"));
    ck_assert(!hm("api.example.com", "api.example.org"));
    ck_assert(!hm("api.example.com", "xapi.example.com"));
    ck_assert(!hm("api.example.com", "api.example.co"));
    ck_assert(!hm("api.example.com", "api.example.comm"));
    ck_assert(!hm("api.example.com", "example.com"));
    ck_assert(!hm("api.example.com", ""));
    ck_assert(!hm("api.example.com", NULL));
    /* The length is what counts, not a NUL. */
    ck_assert(route_host_matches("api.example.com", "api.example.com.evil", 15));
    ck_assert(!route_host_matches("api.example.com", "api.example.com", 14));
}
END_TEST

START_TEST(test_host_wildcard)
{
    ck_assert(hm("*.example.com", "a.example.com"));
    ck_assert(hm("*.example.com", "a.b.example.com"));
    ck_assert(hm("*.example.com", "A.EXAMPLE.com:8080"));
    ck_assert(!hm("*.example.com", "example.com"));
    ck_assert(!hm("*.example.com", ".example.com"));
    ck_assert(!hm("*.example.com", "badexample.com"));
    ck_assert(!hm("*.example.com", "a.example.com.evil"));
    ck_assert(!hm("*.example.com", ""));
    ck_assert(!hm("*.example.com", NULL));
}
END_TEST

START_TEST(test_host_any)
{
    ck_assert(hm("*", "anything.example"));
    ck_assert(hm("*", "127.0.0.1:8080"));
    ck_assert(hm("*", ""));
    ck_assert(hm("*", NULL));
    /* A request without Host reaches only "*" routes. */
    ck_assert_str_eq(pick(NULL, "/static/a.css", HTTP_M_GET), "any-host-static");
    ck_assert_str_eq(pick("", "/static/a.css", HTTP_M_GET), "any-host-static");
    ck_assert_str_eq(pick(NULL, "/api/x", HTTP_M_GET), "(none)");
}
END_TEST

START_TEST(test_host_port_stripped)
{
    ck_assert(hm("api.example.com", "api.example.com:8080"));
    ck_assert(hm("api.example.com", "api.example.com:"));
    ck_assert(!hm("api.example.com", "api.example.com8080"));
    ck_assert(hm("127.0.0.1", "127.0.0.1:80"));
    ck_assert_str_eq(pick("api.example.com:443", "/api/items", HTTP_M_GET), "api-read");
}
END_TEST

START_TEST(test_host_ipv6)
{
    /* Patterns are stored without brackets; requests carry them. */
    ck_assert(hm("::1", "[::1]"));
    ck_assert(hm("::1", "[::1]:8080"));
    ck_assert(!hm("::1", "[::2]:8080"));
    ck_assert(hm("2001:db8::1", "[2001:DB8::1]:443"));
    ck_assert(!hm("::1", "[::1"));
    ck_assert_str_eq(pick("[::1]:8080", "/anything", HTTP_M_GET), "v6");
    ck_assert_str_eq(pick("[::2]:8080", "/anything", HTTP_M_GET), "(none)");
}
END_TEST

START_TEST(test_host_case_and_dot)
{
    ck_assert(hm("api.example.com", "API.Example.COM"));
    ck_assert(hm("api.example.com", "api.example.com."));
    ck_assert(hm("api.example.com", "api.example.com.:80"));
    ck_assert(!hm("api.example.com", "api.example.com.."));
    /* The loader lower-cases "API.Example.COM" of api-write. */
    ck_assert_str_eq(pick("Api.Example.Com", "/api/items", HTTP_M_POST), "api-write");
    ck_assert_str_eq(pick("SHOP.EXAMPLE", "/products/7", HTTP_M_GET), "products");
}
END_TEST

START_TEST(test_path_prefix)
{
    ck_assert_str_eq(pick("api.example.com", "/api/", HTTP_M_GET), "api-read");
    ck_assert_str_eq(pick("api.example.com", "/api/a/b/c", HTTP_M_GET), "api-read");
    ck_assert_str_eq(pick("api.example.com", "/api", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("api.example.com", "/API/x", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("x.test", "/static/", HTTP_M_GET), "any-host-static");
    ck_assert_str_eq(pick("x.test", "/static", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("example.org", "/", HTTP_M_GET), "example-org");
    ck_assert_str_eq(pick("example.org", "/deep/path", HTTP_M_GET), "example-org");
    /* The length is what counts: the path is not NUL-terminated. */
    ck_assert_ptr_null(route_match(cfg, "x.test", 6, "/static/x", 7, HTTP_M_GET));
    ck_assert_ptr_null(route_match(cfg, "example.org", 11, NULL, 0, HTTP_M_GET));
}
END_TEST

START_TEST(test_path_exact)
{
    ck_assert_str_eq(pick("any.host", "/health", HTTP_M_GET), "health");
    ck_assert_str_eq(pick(NULL, "/health", HTTP_M_HEAD), "health");
    ck_assert_str_eq(pick("any.host", "/health/", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("any.host", "/healt", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("any.host", "/healthz", HTTP_M_GET), "(none)");
}
END_TEST

START_TEST(test_path_regex)
{
    ck_assert_str_eq(pick("a.shop.example", "/products/12", HTTP_M_GET), "products");
    ck_assert_str_eq(pick("a.b.shop.example", "/products/12/", HTTP_M_GET), "products");
    /* Three groups: more than the match data holds, still a match. */
    ck_assert_str_eq(pick("shop.example", "/products/12/reviews", HTTP_M_GET), "products");
    ck_assert_str_eq(pick("shop.example", "/products/", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("shop.example", "/products/12x", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("shop.example", "/x/products/12", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("other.example", "/products/12", HTTP_M_GET), "(none)");
    /* The match data is per thread and made again after a cleanup. */
    route_thread_cleanup();
    route_thread_cleanup();
    ck_assert_str_eq(pick("shop.example", "/products/3", HTTP_M_GET), "products");
    /* Only path_len bytes are the subject. */
    ck_assert_ptr_nonnull(route_match(cfg, "shop.example", 12, "/products/3abc", 11, HTTP_M_GET));
}
END_TEST

START_TEST(test_path_regex_backtracking_capped)
{
    char path[4096];
    uint64_t t0;

    ck_assert_str_eq(pick("evil.test", "/aaaa", HTTP_M_GET), "backtrack");
    /* Catastrophic backtracking on a crafted path hits the match limit and
     * counts as no match, well before Check's timeout. */
    path[0] = '/';
    memset(path + 1, 'a', sizeof(path) - 3);
    path[sizeof(path) - 2] = 'b';
    path[sizeof(path) - 1] = '\0';
    t0 = (uint64_t)time(NULL);
    ck_assert_str_eq(pick("evil.test", path, HTTP_M_GET), "(none)");
    ck_assert((uint64_t)time(NULL) - t0 <= 2);
}
END_TEST

static void *
regex_thread(void *arg)
{
    const char *want = arg;
    bool ok = true;

    for (int i = 0; i < 1000 && ok; i++)
        ok = strcmp(pick("shop.example", "/products/42", HTTP_M_GET), want) == 0;
    route_thread_cleanup();
    return ok ? arg : NULL;
}

START_TEST(test_path_regex_threads)
{
    pthread_t t[4];
    void *ret;

    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, regex_thread, (void *)"products"), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(t[i], &ret), 0);
        ck_assert_ptr_nonnull(ret);
    }
}
END_TEST

START_TEST(test_methods)
{
    ck_assert_str_eq(pick("api.example.com", "/api/x", HTTP_M_GET), "api-read");
    ck_assert_str_eq(pick("api.example.com", "/api/x", HTTP_M_HEAD), "api-read");
    ck_assert_str_eq(pick("api.example.com", "/api/x", HTTP_M_POST), "api-write");
    ck_assert_str_eq(pick("api.example.com", "/api/x", HTTP_M_PUT), "api-write");
    ck_assert_str_eq(pick("api.example.com", "/api/x", HTTP_M_DELETE), "api-write");
    ck_assert_str_eq(pick("api.example.com", "/api/x", HTTP_M_PATCH), "(none)");
    ck_assert_str_eq(pick("api.example.com", "/api/x", HTTP_M_OTHER), "(none)");
    /* No method set: any method, extension methods included. */
    ck_assert_str_eq(pick("x.test", "/static/x", HTTP_M_OTHER), "any-host-static");
    ck_assert_str_eq(pick("x.test", "/static/x", HTTP_M_PURGE), "any-host-static");
}
END_TEST

START_TEST(test_first_match)
{
    /* order-first (prefix /order/) comes before order-second (exact /order/x). */
    ck_assert_str_eq(pick("any", "/order/x", HTTP_M_GET), "order-first");
    /* health (any host) comes before v6 and example-org. */
    ck_assert_str_eq(pick("[::1]", "/health", HTTP_M_GET), "health");
    ck_assert_str_eq(pick("example.org", "/health", HTTP_M_GET), "health");
    ck_assert_str_eq(pick("[::1]", "/static/x", HTTP_M_GET), "v6");
}
END_TEST

START_TEST(test_no_match)
{
    ck_assert_str_eq(pick("unknown.test", "/", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("example.com", "/api/x", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick(NULL, "/", HTTP_M_GET), "(none)");
    ck_assert_str_eq(pick("unknown.test", "*", HTTP_M_OPTIONS), "(none)");
}
END_TEST

START_TEST(test_quick_config_matches_all)
{
    struct config *q = config_quick("http://127.0.0.1:8081", NULL, NULL, NULL, NULL, NULL);
    const struct config_route *r;

    ck_assert_ptr_nonnull(q);
    r = route_match(q, NULL, 0, "/", 1, HTTP_M_GET);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->name, "127.0.0.1:8081"); /* named after its origin */
    ck_assert_ptr_eq(route_match(q, "a.b:1", 5, "/x?y", 4, HTTP_M_OTHER), r);
    config_unref(&q);
}
END_TEST

static Suite *
route_suite(void)
{
    Suite *s = suite_create("route");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"host_exact", test_host_exact},
        {"host_wildcard", test_host_wildcard},
        {"host_any", test_host_any},
        {"host_port_stripped", test_host_port_stripped},
        {"host_ipv6", test_host_ipv6},
        {"host_case_and_dot", test_host_case_and_dot},
        {"path_prefix", test_path_prefix},
        {"path_exact", test_path_exact},
        {"path_regex", test_path_regex},
        {"path_regex_backtracking_capped", test_path_regex_backtracking_capped},
        {"path_regex_threads", test_path_regex_threads},
        {"methods", test_methods},
        {"first_match", test_first_match},
        {"no_match", test_no_match},
        {"quick_config_matches_all", test_quick_config_matches_all},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(route_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
