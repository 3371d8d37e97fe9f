/*
 * check_rule: unit tests of rule: pattern matching and captures, the final
 * "*", template checks and expansion, and the patterns compilation refuses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "rule.h"

static struct rule_pattern *
compile_good(const char *pattern)
{
    char err[256] = "";
    struct rule_pattern *p = rule_compile(pattern, err, sizeof(err));

    ck_assert_msg(p != NULL, "%s rejected: %s", pattern, err);
    return p;
}

static bool
match(const struct rule_pattern *p, const char *path, struct rule_vars *vars)
{
    return rule_match(p, path, strlen(path), vars);
}

/* Capture i of vars as a string, for comparisons. */
static const char *
var(const struct rule_vars *vars, unsigned i, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s", (int)vars->n[i], vars->p[i]);
    return buf;
}

START_TEST(test_match_literal)
{
    struct rule_pattern *p = compile_good("/api/health");

    ck_assert(match(p, "/api/health", NULL));
    ck_assert(!match(p, "/api/health/", NULL));
    ck_assert(!match(p, "/api/healt", NULL));
    ck_assert(!match(p, "/api/Health", NULL)); /* byte for byte */
    ck_assert(!match(p, "", NULL));
    /* The length given counts, not a NUL. */
    ck_assert(rule_match(p, "/api/health?x=1", 11, NULL));
    rule_free(&p);
    ck_assert_ptr_null(p);
    rule_free(&p);
    rule_free(NULL);
}
END_TEST

START_TEST(test_match_captures)
{
    struct rule_pattern *p = compile_good("/api/products/{id}");
    struct rule_vars v;
    char buf[64];

    ck_assert(match(p, "/api/products/42", &v));
    ck_assert_str_eq(var(&v, 0, buf, sizeof(buf)), "42");
    /* Bytes as received: never decoded. */
    ck_assert(match(p, "/api/products/a%2Fb", &v));
    ck_assert_str_eq(var(&v, 0, buf, sizeof(buf)), "a%2Fb");
    rule_free(&p);

    p = compile_good("/shops/{shop}/items/{item_id}/reviews");
    ck_assert(match(p, "/shops/eu-1/items/x_9/reviews", &v));
    ck_assert_str_eq(var(&v, 0, buf, sizeof(buf)), "eu-1");
    ck_assert_str_eq(var(&v, 1, buf, sizeof(buf)), "x_9");
    rule_free(&p);

    /* Literal text around a capture within its segment. */
    p = compile_good("/v{ver}/files/{name}.json");
    ck_assert(match(p, "/v2/files/report.json", &v));
    ck_assert_str_eq(var(&v, 0, buf, sizeof(buf)), "2");
    ck_assert_str_eq(var(&v, 1, buf, sizeof(buf)), "report");
    ck_assert(match(p, "/v2/files/a.json.json", &v));
    ck_assert_str_eq(var(&v, 1, buf, sizeof(buf)), "a.json");
    ck_assert(!match(p, "/v2/files/.json", &v)); /* the capture would be empty */
    ck_assert(!match(p, "/v/files/a.json", &v));
    ck_assert(!match(p, "/v2/files/a.xml", &v));
    ck_assert(!match(p, "/v2/files/a/b.json", &v));
    rule_free(&p);
}
END_TEST

START_TEST(test_no_match)
{
    struct rule_pattern *p = compile_good("/api/products/{id}");

    ck_assert(!match(p, "/api/products/42/reviews", NULL)); /* extra segment */
    ck_assert(!match(p, "/api/products/42/", NULL));        /* extra empty segment */
    ck_assert(!match(p, "/api/products/", NULL));           /* empty segment */
    ck_assert(!match(p, "/api/products", NULL));            /* prefix only */
    ck_assert(!match(p, "/api/product/42", NULL));
    ck_assert(!match(p, "/api", NULL));
    ck_assert(!match(p, "", NULL));
    rule_free(&p);

    p = compile_good("/u/{a}/{b}");
    ck_assert(!match(p, "/u//x", NULL));
    ck_assert(!match(p, "/u/x/", NULL));
    ck_assert(match(p, "/u/x/y", NULL));
    rule_free(&p);
}
END_TEST

START_TEST(test_star)
{
    struct rule_pattern *p = compile_good("/static/*");
    struct rule_vars v;
    char buf[64];

    ck_assert(match(p, "/static/", NULL)); /* "*" may match nothing */
    ck_assert(match(p, "/static/a", NULL));
    ck_assert(match(p, "/static/a/b/c.css", NULL));
    ck_assert(!match(p, "/static", NULL));
    ck_assert(!match(p, "/statics/a", NULL));
    rule_free(&p);

    p = compile_good("/users/{uid}/*");
    ck_assert(match(p, "/users/7/avatar/large", &v));
    ck_assert_str_eq(var(&v, 0, buf, sizeof(buf)), "7");
    ck_assert(match(p, "/users/7/", &v));
    ck_assert(!match(p, "/users/7", &v));
    ck_assert(!match(p, "/users//x", &v));
    rule_free(&p);

    /* A "*" after literal text is a prefix match. */
    p = compile_good("/api*");
    ck_assert(match(p, "/api", NULL));
    ck_assert(match(p, "/apix/y", NULL));
    ck_assert(!match(p, "/ap", NULL));
    rule_free(&p);

    p = compile_good("/*");
    ck_assert(match(p, "/", NULL));
    ck_assert(match(p, "/anything/at/all", NULL));
    rule_free(&p);
}
END_TEST

START_TEST(test_max_captures)
{
    struct rule_pattern *p = compile_good("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}");
    struct rule_vars v;
    char buf[512];

    ck_assert(match(p, "/1/2/3/4/5/6/7/8", &v));
    ck_assert_str_eq(var(&v, 7, buf, sizeof(buf)), "8");
    ck_assert_int_eq(rule_expand(p, &v, "/{h}{g}{f}{e}{d}{c}{b}{a}", buf, sizeof(buf)), 9);
    ck_assert_str_eq(buf, "/87654321");
    rule_free(&p);
}
END_TEST

START_TEST(test_expand)
{
    struct rule_pattern *p = compile_good("/api/products/{id}/variants/{vid}");
    struct rule_vars v;
    char buf[64];

    ck_assert(match(p, "/api/products/42/variants/red", &v));
    ck_assert_int_eq(rule_expand(p, &v, "/api/products/{id}", buf, sizeof(buf)), 16);
    ck_assert_str_eq(buf, "/api/products/42");
    ck_assert_int_eq(rule_expand(p, &v, "product-{id}-{vid}", buf, sizeof(buf)), 14);
    ck_assert_str_eq(buf, "product-42-red");
    /* A capture used twice, or not at all. */
    ck_assert_int_eq(rule_expand(p, &v, "{id}{id}", buf, sizeof(buf)), 4);
    ck_assert_str_eq(buf, "4242");
    ck_assert_int_eq(rule_expand(p, &v, "/api/products", buf, sizeof(buf)), 13);
    ck_assert_str_eq(buf, "/api/products");
    ck_assert_int_eq(rule_expand(p, &v, "", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "");
    rule_free(&p);
}
END_TEST

START_TEST(test_expand_too_small)
{
    struct rule_pattern *p = compile_good("/a/{id}");
    struct rule_vars v;
    char buf[16];

    ck_assert(match(p, "/a/12345", &v));
    /* "/x/12345" is 8 bytes: it needs 9 with the NUL. */
    ck_assert_int_eq(rule_expand(p, &v, "/x/{id}", buf, 9), 8);
    ck_assert_str_eq(buf, "/x/12345");
    ck_assert_int_eq(rule_expand(p, &v, "/x/{id}", buf, 8), -1);
    ck_assert_int_eq(rule_expand(p, &v, "/x/{id}", buf, 4), -1); /* in the capture */
    ck_assert_int_eq(rule_expand(p, &v, "/x/{id}", buf, 2), -1); /* in the literal */
    ck_assert_int_eq(rule_expand(p, &v, "", buf, 1), 0);
    ck_assert_int_eq(rule_expand(p, &v, "", buf, 0), -1);
    /* Unknown or malformed: -1 too. */
    ck_assert_int_eq(rule_expand(p, &v, "/x/{nope}", buf, sizeof(buf)), -1);
    ck_assert_int_eq(rule_expand(p, &v, "/x/{id", buf, sizeof(buf)), -1);
    rule_free(&p);
}
END_TEST

static void
expect_template_error(const char *pattern, const char *tmpl, const char *want)
{
    struct rule_pattern *p = compile_good(pattern);
    char err[256] = "";

    ck_assert_msg(rule_check_template(p, tmpl, err, sizeof(err)) == -1, "%s accepted", tmpl);
    ck_assert_str_eq(err, want);
    rule_free(&p);
}

START_TEST(test_check_template)
{
    struct rule_pattern *p = compile_good("/api/{kind}/{id}");
    char err[256];

    ck_assert_int_eq(rule_check_template(p, "/api/{kind}", err, sizeof(err)), 0);
    ck_assert_int_eq(rule_check_template(p, "{kind}:{id}", err, sizeof(err)), 0);
    ck_assert_int_eq(rule_check_template(p, "/fixed", err, sizeof(err)), 0);
    rule_free(&p);

    expect_template_error("/api/{kind}/{id}", "/api/{name}",
                          "unknown capture \"name\" (the pattern has kind, id)");
    expect_template_error("/api/all", "/api/{id}", "unknown capture \"id\" (the pattern has none)");
    expect_template_error("/api/{id}", "/api/{id", "unclosed \"{\" at offset 5");
    expect_template_error("/api/{id}", "/api/id}", "\"}\" without \"{\" at offset 7");
    expect_template_error("/api/{id}", "/{}",
                          "invalid capture name \"\" (1 to 32 letters, digits and \"_\", not "
                          "starting with a digit)");
}
END_TEST

static void
expect_compile_error(const char *pattern, const char *want)
{
    char err[256] = "";
    struct rule_pattern *p = rule_compile(pattern, err, sizeof(err));

    ck_assert_msg(p == NULL, "%s accepted", pattern);
    ck_assert_str_eq(err, want);
}

START_TEST(test_bad_patterns)
{
    expect_compile_error("/api/{id", "unclosed \"{\" at offset 5");
    expect_compile_error("/api/{id/{x}", "unclosed \"{\" at offset 5");
    expect_compile_error("/api/{id}/{id}", "duplicate capture name \"id\"");
    expect_compile_error("/api/{1id}", "invalid capture name \"1id\" (1 to 32 letters, digits "
                                       "and \"_\", not starting with a digit)");
    expect_compile_error("/api/{i-d}", "invalid capture name \"i-d\" (1 to 32 letters, digits "
                                       "and \"_\", not starting with a digit)");
    expect_compile_error("/api/{}", "invalid capture name \"\" (1 to 32 letters, digits and "
                                    "\"_\", not starting with a digit)");
    expect_compile_error("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", "too many captures (at most 8)");
    expect_compile_error("/api/id}", "\"}\" without \"{\" at offset 7");
    expect_compile_error("api/{id}", "must start with \"/\"");
    expect_compile_error("", "must start with \"/\"");
    expect_compile_error("/{a}{b}", "two captures in one path segment at offset 4");
    expect_compile_error("/{a}-{b}/x", "two captures in one path segment at offset 5");
    expect_compile_error("/a/*/b", "\"*\" is only allowed at the end, found at offset 3");
    expect_compile_error("/a/{id}*", "a capture and \"*\" in one path segment");
    expect_compile_error("/a?b=1", "\"?\" at offset 2: a pattern matches the path only");
    expect_compile_error("/a b", "invalid byte 0x20 at offset 2 (visible ASCII only)");
    expect_compile_error("/caf\xc3\xa9", "invalid byte 0xc3 at offset 4 (visible ASCII only)");
    ck_assert_ptr_null(rule_compile(NULL, (char[64]){0}, 64));
}
END_TEST

static Suite *
rule_suite(void)
{
    Suite *s = suite_create("rule");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"match_literal", test_match_literal},
        {"match_captures", test_match_captures},
        {"no_match", test_no_match},
        {"star", test_star},
        {"max_captures", test_max_captures},
        {"expand", test_expand},
        {"expand_too_small", test_expand_too_small},
        {"check_template", test_check_template},
        {"bad_patterns", test_bad_patterns},
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
    SRunner *sr = srunner_create(rule_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
