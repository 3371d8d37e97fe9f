/*
 * check_util: unit tests of util: duration (ms and s), size and integer parsing,
 * address parsing and formatting, the monotonic clock, string copies.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "util.h"

static int
check_duration(const char *s, unsigned *out)
{
    *out = 12345; /* must be left alone on error */
    return util_parse_duration_ms(s, out);
}

START_TEST(test_duration_good)
{
    static const struct {
        const char *s;
        unsigned ms;
    } good[] = {
        {"150ms", 150},
        {"2s", 2000},
        {"1m", 60000},
        {"1h", 3600000},
        {"30", 30000},
        {"0", 0},
        {"0ms", 0},
        {"007s", 7000},
        {"24h", 86400000u},
        {"1d", 86400000u},
        {"49d", 4233600000u},
        {"1193h", 4294800000u},
        {"4294967295ms", 4294967295u},
    };
    unsigned ms;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_msg(check_duration(good[i].s, &ms) == 0, "%s rejected", good[i].s);
        ck_assert_uint_eq(ms, good[i].ms);
    }
}
END_TEST

START_TEST(test_duration_bad)
{
    static const char *const bad[] = {
        "",   "abc", "1.5s", "2 s", " 2s", "2s ", "-1",  "+1s", "1w",
        "1S", "1MS", "1D",   "s",   "ms",  "1sm", "1hh", "1dd",
    };
    /* Over UINT_MAX ms (a year of ms needs 35 bits: util_parse_duration_s). */
    static const char *const too_long[] = {
        "1194h", "4294967296ms", "50d", "1y", "99999999999999999999999",
    };
    unsigned ms;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(check_duration(bad[i], &ms) == -1, "\"%s\" accepted", bad[i]);
        ck_assert_uint_eq(ms, 12345);
    }
    for (size_t i = 0; i < sizeof(too_long) / sizeof(too_long[0]); i++) {
        ck_assert_msg(check_duration(too_long[i], &ms) == -1, "\"%s\" accepted", too_long[i]);
        ck_assert_uint_eq(ms, 12345);
    }
    ck_assert_int_eq(util_parse_duration_ms(NULL, &ms), -1);
}
END_TEST

START_TEST(test_duration_s_good)
{
    static const struct {
        const char *s;
        int64_t sec;
    } good[] = {
        {"0", 0},
        {"0s", 0},
        {"60", 60},
        {"60s", 60},
        {"999ms", 0}, /* rounded down */
        {"1500ms", 1},
        {"2m", 120},
        {"1h", 3600},
        {"1d", 86400},
        {"1y", 31536000},
        {"10y", 315360000},
        /* The largest: UINT64_MAX ms. */
        {"18446744073709551615ms", INT64_C(18446744073709551)},
    };
    int64_t sec;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_msg(util_parse_duration_s(good[i].s, &sec) == 0, "%s rejected", good[i].s);
        ck_assert_int_eq(sec, good[i].sec);
    }
}
END_TEST

START_TEST(test_duration_s_bad)
{
    static const char *const bad[] = {
        "", "off", "1.5s", "2 s", "-1", "1w", "1Y", "1yy", "d", "y",
    };
    /* Over UINT64_MAX ms. */
    static const char *const too_long[] = {
        "18446744073709551616ms",
        "584942418y",
        "99999999999999999999999y",
    };
    int64_t sec = 7;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(util_parse_duration_s(bad[i], &sec) == -1, "\"%s\" accepted", bad[i]);
    for (size_t i = 0; i < sizeof(too_long) / sizeof(too_long[0]); i++)
        ck_assert_msg(util_parse_duration_s(too_long[i], &sec) == -1, "\"%s\" accepted",
                      too_long[i]);
    ck_assert_int_eq(sec, 7);
    ck_assert_int_eq(util_parse_duration_s(NULL, &sec), -1);
}
END_TEST

START_TEST(test_size_good)
{
    static const struct {
        const char *s;
        size_t v;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"8k", 8192},
        {"8K", 8192},
        {"1m", 1048576},
        {"1M", 1048576},
        {"1g", 1073741824},
        {"2G", 2147483648u},
        {"64k", 65536},
        {"4g", (size_t)4 << 30},
        {"1t", (size_t)1 << 40},
        {"1T", (size_t)1 << 40},
    };
    size_t v;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_msg(util_parse_size(good[i].s, &v) == 0, "%s rejected", good[i].s);
        ck_assert_uint_eq(v, good[i].v);
    }
}
END_TEST

START_TEST(test_size_bad)
{
    static const char *const bad[] = {
        "",
        "k",
        "8kb",
        "8KiB",
        "1.5k",
        "-1",
        " 8k",
        "8k ",
        "8 k",
        "1tb",
        "1p",
        "0x10",
        "18446744073709551616",
        "17179869184g",
        "16777216t",
    };
    size_t v = 7;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(util_parse_size(bad[i], &v) == -1, "\"%s\" accepted", bad[i]);
    ck_assert_uint_eq(v, 7);
    ck_assert_int_eq(util_parse_size(NULL, &v), -1);
}
END_TEST

START_TEST(test_uint)
{
    uint64_t v = 0;

    ck_assert_int_eq(util_parse_uint("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(util_parse_uint("18446744073709551615", &v), 0);
    ck_assert(v == UINT64_MAX);
    ck_assert_int_eq(util_parse_uint("18446744073709551616", &v), -1);
    ck_assert_int_eq(util_parse_uint("", &v), -1);
    ck_assert_int_eq(util_parse_uint("12a", &v), -1);
    ck_assert_int_eq(util_parse_uint("-1", &v), -1);
    ck_assert_int_eq(util_parse_uint(" 1", &v), -1);
}
END_TEST

static int
check_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen)
{
    err[0] = '\0';
    return util_parse_addr(text, ss, len, err, errlen);
}

START_TEST(test_addr_good)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char err[256], buf[UTIL_ADDRSTRLEN];
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;

    ck_assert_int_eq(check_addr("127.0.0.1:8080", &ss, &len, err, sizeof(err)), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET);
    ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(ntohs(sin->sin_port), 8080);
    ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);

    ck_assert_int_eq(check_addr("0.0.0.0:1", &ss, &len, err, sizeof(err)), 0);
    ck_assert_uint_eq(ntohs(sin->sin_port), 1);
    ck_assert_int_eq(check_addr("10.1.2.3:65535", &ss, &len, err, sizeof(err)), 0);
    ck_assert_uint_eq(ntohs(sin->sin_port), 65535);

    ck_assert_int_eq(check_addr("[::1]:443", &ss, &len, err, sizeof(err)), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET6);
    ck_assert_uint_eq(len, sizeof(struct sockaddr_in6));
    ck_assert_uint_eq(ntohs(sin6->sin6_port), 443);
    ck_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    ck_assert_str_eq(util_addr_to_string((struct sockaddr *)&ss, len, buf, sizeof(buf)),
                     "[::1]:443");

    ck_assert_int_eq(check_addr("[::]:8080", &ss, &len, err, sizeof(err)), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET6);

    /* A name, resolved through getaddrinfo (from /etc/hosts). */
    ck_assert_int_eq(check_addr("localhost:80", &ss, &len, err, sizeof(err)), 0);
    ck_assert(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(test_addr_bad)
{
    static const struct {
        const char *text;
        const char *msg;
    } bad[] = {
        {"1.2.3.4", "invalid address \"1.2.3.4\" (expected HOST:PORT)"},
        {"", "invalid address \"\" (expected HOST:PORT)"},
        {":80", "invalid address \":80\" (expected HOST:PORT)"},
        {"[::1]", "invalid address \"[::1]\" (expected HOST:PORT)"},
        {"[::1]80", "invalid address \"[::1]80\" (expected HOST:PORT)"},
        {"[]:80", "invalid address \"[]:80\" (expected HOST:PORT)"},
        {"127.0.0.1:0", "invalid address \"127.0.0.1:0\" (port must be a number from 1 to 65535)"},
        {"127.0.0.1:65536",
         "invalid address \"127.0.0.1:65536\" (port must be a number from 1 to 65535)"},
        {"127.0.0.1:", "invalid address \"127.0.0.1:\" (port must be a number from 1 to 65535)"},
        {"127.0.0.1:http",
         "invalid address \"127.0.0.1:http\" (port must be a number from 1 to 65535)"},
        {"127.0.0.1:-1",
         "invalid address \"127.0.0.1:-1\" (port must be a number from 1 to 65535)"},
        {"::1:80", "invalid address \"::1:80\" (write an IPv6 address as [ADDR]:PORT)"},
        {"[example.com]:80",
         "invalid address \"[example.com]:80\" (not an IPv6 address in brackets)"},
        {"[127.0.0.1]:80", "invalid address \"[127.0.0.1]:80\" (not an IPv6 address in brackets)"},
    };
    struct sockaddr_storage ss;
    socklen_t len = 99;
    char err[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(check_addr(bad[i].text, &ss, &len, err, sizeof(err)) == -1, "%s accepted",
                      bad[i].text);
        ck_assert_str_eq(err, bad[i].msg);
    }
    ck_assert_uint_eq(len, 99);
    ck_assert_int_eq(check_addr(NULL, &ss, &len, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "invalid address \"\" (expected HOST:PORT)");

    /* The message is truncated to the buffer, and still terminated. */
    ck_assert_int_eq(check_addr("1.2.3.4", &ss, &len, err, 10), -1);
    ck_assert_str_eq(err, "invalid a");
}
END_TEST

START_TEST(test_addr_unresolvable)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char err[256], want[256];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int rc;

    /* .invalid never resolves (RFC 6761); the reason depends on the
     * resolver here (no name, or no DNS at all), so ask it for the text. */
    rc = getaddrinfo("nohost.invalid", "80", &hints, &res);
    ck_assert_int_ne(rc, 0);
    snprintf(want, sizeof(want), "cannot resolve \"nohost.invalid:80\": %s", gai_strerror(rc));
    ck_assert_int_eq(check_addr("nohost.invalid:80", &ss, &len, err, sizeof(err)), -1);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_addr_to_string)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(8080)};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(9)};
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[UTIL_ADDRSTRLEN], small[8], err[128];

    sin.sin_addr.s_addr = htonl(0xc0a80001);
    ck_assert_str_eq(util_addr_to_string((struct sockaddr *)&sin, sizeof(sin), buf, sizeof(buf)),
                     "192.168.0.1:8080");
    inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
    ck_assert_str_eq(util_addr_to_string((struct sockaddr *)&sin6, sizeof(sin6), buf, sizeof(buf)),
                     "[2001:db8::1]:9");

    /* Round trip through the parser. */
    ck_assert_int_eq(util_parse_addr("[2001:db8::1]:9", &ss, &len, err, sizeof(err)), 0);
    ck_assert_str_eq(util_addr_to_string((struct sockaddr *)&ss, len, buf, sizeof(buf)),
                     "[2001:db8::1]:9");

    /* Too short a buffer, a short length or an unknown family: "?". */
    ck_assert_str_eq(
        util_addr_to_string((struct sockaddr *)&sin, sizeof(sin), small, sizeof(small)), "?");
    ck_assert_str_eq(util_addr_to_string((struct sockaddr *)&sin, 4, buf, sizeof(buf)), "?");
    sin.sin_family = AF_UNIX;
    ck_assert_str_eq(util_addr_to_string((struct sockaddr *)&sin, sizeof(sin), buf, sizeof(buf)),
                     "?");
    ck_assert_str_eq(util_addr_to_string(NULL, 0, buf, sizeof(buf)), "?");
}
END_TEST

START_TEST(test_now_monotonic)
{
    uint64_t prev = util_now_ms(), start = prev, now;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};

    for (int i = 0; i < 100000; i++) {
        now = util_now_ms();
        ck_assert(now >= prev);
        prev = now;
    }
    nanosleep(&ts, NULL);
    now = util_now_ms();
    /* Both readings are truncated to the millisecond: 20 ms of sleep is at least 19. */
    ck_assert(now - start >= 19);
    ck_assert(now - start < 60 * 1000);
}
END_TEST

START_TEST(test_strings)
{
    char *s = util_xstrdup("hello");

    ck_assert_str_eq(s, "hello");
    free(s);
    s = util_xstrndup("hello", 3);
    ck_assert_str_eq(s, "hel");
    free(s);
    s = util_xstrndup("hi", 10); /* stops at the NUL */
    ck_assert_str_eq(s, "hi");
    free(s);
    s = util_xstrndup("", 0);
    ck_assert_str_eq(s, "");
    free(s);
    s = util_xreallocarray(NULL, 4, 8);
    memset(s, 0, 32);
    free(s);
}
END_TEST

START_TEST(test_assert_aborts)
{
    /* Forked test process: keep the expected message out of the test log. */
    ck_assert_ptr_nonnull(freopen("/dev/null", "w", stderr));
    UTIL_ASSERT(1 + 1 == 3);
}
END_TEST

static Suite *
util_suite(void)
{
    Suite *s = suite_create("util");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"duration_good", test_duration_good},
        {"duration_bad", test_duration_bad},
        {"duration_s_good", test_duration_s_good},
        {"duration_s_bad", test_duration_s_bad},
        {"size_good", test_size_good},
        {"size_bad", test_size_bad},
        {"uint", test_uint},
        {"addr_good", test_addr_good},
        {"addr_bad", test_addr_bad},
        {"addr_unresolvable", test_addr_unresolvable},
        {"addr_to_string", test_addr_to_string},
        {"now_monotonic", test_now_monotonic},
        {"strings", test_strings},
    };
    TCase *tc;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    /* Only when Check forks (the default): the abort ends the test process. */
    if (getenv("CK_FORK") == NULL || strcmp(getenv("CK_FORK"), "no") != 0) {
        tc = tcase_create("assert_aborts");
        tcase_add_test_raise_signal(tc, test_assert_aborts, SIGABRT);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(util_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
