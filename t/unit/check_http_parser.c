/*
 * check_http_parser: unit tests for the strict HTTP/1.1 parser.
 *
 * Each TCase covers one behaviour. Malformed inputs live in tables run as
 * loop tests, so a failure names the table row (and the input) that broke.
 * Messages are parsed from exact-size heap copies, so AddressSanitizer
 * catches a read one byte past the end of what has arrived.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

/* A string literal with its length, so inputs may hold NUL bytes. */
#define LIT(s) s, sizeof(s) - 1

struct msg {
    const char *s;
    size_t len;
};

struct err_case {
    const char *s;
    size_t len;
    ssize_t expect;
};

static const struct http_limits test_lim = {8192, 65536, 100};

/* Heap copy of exactly len bytes, so reading past the end is an ASan error. */
static char *
test_copy(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);

    ck_assert_ptr_nonnull(p);
    memcpy(p, s, len);
    return p;
}

static bool
test_str_is(const char *p, size_t len, const char *expect)
{
    return p != NULL && len == strlen(expect) && memcmp(p, expect, len) == 0;
}

#define ck_assert_str_span(p, len, expect)                                                         \
    ck_assert_msg(test_str_is((p), (len), (expect)), "%s is \"%.*s\", expected \"%s\"", #p,        \
                  (p) ? (int)(len) : 4, (p) ? (p) : "NULL", (expect))

/* Parses s (NUL-terminated, default limits) in place. */
static ssize_t
test_req(const char *s, struct http_request *r)
{
    return http_parse_request(s, strlen(s), &test_lim, r);
}

static ssize_t
test_resp(const char *s, bool head, struct http_response *r)
{
    return http_parse_response(s, strlen(s), &test_lim, head, r);
}

static struct http_request test_r;
static struct http_response test_rs;

/* --- valid requests ------------------------------------------------------ */

START_TEST(test_get_with_headers)
{
    const char *s = "GET /a/b?x=1&y=%20 HTTP/1.1\r\n"
                    "Host: example.com:8080\r\n"
                    "User-Agent:   curl/8 \t \r\n"
                    "Accept:*/*\r\n"
                    "X-Empty:\r\n"
                    "X-Blank:  \t \r\n"
                    "X-Obs: caf\xc3\xa9 \"q\"\r\n"
                    "\r\n";
    struct http_request *r = &test_r;

    ck_assert_int_eq(test_req(s, r), (ssize_t)strlen(s));
    ck_assert_str_span(r->method, r->method_len, "GET");
    ck_assert_int_eq(r->method_id, HTTP_M_GET);
    ck_assert_str_span(r->target, r->target_len, "/a/b?x=1&y=%20");
    ck_assert_str_span(r->path, r->path_len, "/a/b");
    ck_assert_str_span(r->query, r->query_len, "x=1&y=%20");
    ck_assert_str_span(r->host, r->host_len, "example.com:8080");
    ck_assert(!r->absolute_form);
    ck_assert(!r->expect_continue);
    ck_assert_int_eq(r->head.version_minor, 1);
    ck_assert_uint_eq(r->head.nheaders, 6);
    ck_assert_str_span(r->head.headers[0].name, r->head.headers[0].name_len, "Host");
    ck_assert_str_span(r->head.headers[1].name, r->head.headers[1].name_len, "User-Agent");
    ck_assert_str_span(r->head.headers[1].value, r->head.headers[1].value_len, "curl/8");
    ck_assert_str_span(r->head.headers[2].value, r->head.headers[2].value_len, "*/*");
    ck_assert_uint_eq(r->head.headers[3].value_len, 0);
    ck_assert_uint_eq(r->head.headers[4].value_len, 0);
    ck_assert_str_span(r->head.headers[5].value, r->head.headers[5].value_len, "caf\xc3\xa9 \"q\"");
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_NONE);
    ck_assert(!r->head.conn_close);
    ck_assert(!r->head.conn_keep_alive);
}
END_TEST

START_TEST(test_no_query_and_empty_query)
{
    struct http_request *r = &test_r;

    ck_assert_int_gt(test_req("GET /p HTTP/1.1\r\nHost: h\r\n\r\n", r), 0);
    ck_assert_str_span(r->path, r->path_len, "/p");
    ck_assert_ptr_null(r->query);
    ck_assert_uint_eq(r->query_len, 0);
    ck_assert_int_gt(test_req("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", r), 0);
    ck_assert_str_span(r->path, r->path_len, "/p");
    ck_assert_ptr_nonnull(r->query);
    ck_assert_uint_eq(r->query_len, 0);
}
END_TEST

START_TEST(test_absolute_form)
{
    const char *s = "GET hTtP://Example.COM:8080/p/a?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    struct http_request *r = &test_r;

    ck_assert_int_eq(test_req(s, r), (ssize_t)strlen(s));
    ck_assert(r->absolute_form);
    ck_assert_str_span(r->host, r->host_len, "Example.COM:8080");
    ck_assert_str_span(r->path, r->path_len, "/p/a");
    ck_assert_str_span(r->query, r->query_len, "x=1");
    ck_assert_str_span(r->target, r->target_len, "hTtP://Example.COM:8080/p/a?x=1");

    /* No path: "/" taken from the "://" so it points into the buffer. */
    s = "GET HTTPS://h?q=2 HTTP/1.1\r\nHost: h\r\n\r\n";
    ck_assert_int_gt(test_req(s, r), 0);
    ck_assert_str_span(r->path, r->path_len, "/");
    ck_assert(r->path >= s && r->path < s + strlen(s));
    ck_assert_str_span(r->query, r->query_len, "q=2");
    ck_assert_str_span(r->host, r->host_len, "h");

    ck_assert_int_gt(test_req("GET http://[::1]:80 HTTP/1.1\r\nHost: x\r\n\r\n", r), 0);
    ck_assert_str_span(r->path, r->path_len, "/");
    ck_assert_ptr_null(r->query);
    ck_assert_str_span(r->host, r->host_len, "[::1]:80");

    /* The Host field is ignored, even empty, but still required in 1.1. */
    ck_assert_int_gt(test_req("GET http://h/ HTTP/1.1\r\nHost:\r\n\r\n", r), 0);
    ck_assert_str_span(r->host, r->host_len, "h");
    ck_assert_int_gt(test_req("GET http://h/ HTTP/1.0\r\n\r\n", r), 0);
    ck_assert_str_span(r->host, r->host_len, "h");
}
END_TEST

START_TEST(test_asterisk_options)
{
    struct http_request *r = &test_r;

    ck_assert_int_gt(test_req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", r), 0);
    ck_assert_int_eq(r->method_id, HTTP_M_OPTIONS);
    ck_assert_str_span(r->path, r->path_len, "*");
    ck_assert_ptr_null(r->query);
}
END_TEST

START_TEST(test_post_length)
{
    struct http_request *r = &test_r;

    ck_assert_int_gt(test_req("POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", r),
                     0);
    ck_assert_int_eq(r->method_id, HTTP_M_POST);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_LENGTH);
    ck_assert_uint_eq(r->head.content_length, 5);

    ck_assert_int_gt(test_req("POST /f HTTP/1.1\r\nHost: h\r\ncontent-length: 0\r\n\r\n", r), 0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_LENGTH);
    ck_assert_uint_eq(r->head.content_length, 0);

    ck_assert_int_gt(test_req("PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", r), 0);
    ck_assert_uint_eq(r->head.content_length, 7);

    ck_assert_int_gt(
        test_req("PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n", r),
        0);
    ck_assert_uint_eq(r->head.content_length, HTTP_LENGTH_MAX);
}
END_TEST

START_TEST(test_post_chunked)
{
    struct http_request *r = &test_r;

    ck_assert_int_gt(
        test_req("POST /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", r), 0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_CHUNKED);
    ck_assert_int_gt(
        test_req("POST /f HTTP/1.1\r\nHost: h\r\ntransfer-encoding:  CHUNKED \r\n\r\n", r), 0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_CHUNKED);
}
END_TEST

START_TEST(test_http10)
{
    struct http_request *r = &test_r;

    ck_assert_int_gt(test_req("GET / HTTP/1.0\r\n\r\n", r), 0);
    ck_assert_int_eq(r->head.version_minor, 0);
    ck_assert(r->head.conn_close);
    ck_assert(!r->head.conn_keep_alive);
    ck_assert_ptr_null(r->host);

    ck_assert_int_gt(test_req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n", r), 0);
    ck_assert(!r->head.conn_close);
    ck_assert(r->head.conn_keep_alive);
    ck_assert_str_span(r->host, r->host_len, "h");

    /* 100-continue is ignored for a 1.0 client, which may not get a 1xx. */
    ck_assert_int_gt(test_req("POST / HTTP/1.0\r\nExpect: 100-continue\r\n"
                              "Content-Length: 1\r\n\r\n",
                              r),
                     0);
    ck_assert(!r->expect_continue);
}
END_TEST

START_TEST(test_connection_flags)
{
    struct http_request *r = &test_r;

    ck_assert_int_gt(test_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: x, CLOSE\r\n\r\n", r), 0);
    ck_assert(r->head.conn_close);
    ck_assert(!r->head.conn_keep_alive);
    ck_assert_int_gt(test_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", r), 0);
    ck_assert(!r->head.conn_close);
    ck_assert(r->head.conn_keep_alive);
    ck_assert_int_gt(test_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", r), 0);
    ck_assert(!r->head.conn_close);
    ck_assert_int_gt(test_req("GET / HTTP/1.1\r\nConnection: a\r\nHost: h\r\n"
                              "Connection: close\r\n\r\n",
                              r),
                     0);
    ck_assert(r->head.conn_close);
}
END_TEST

START_TEST(test_leading_crlf)
{
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    struct http_request *r = &test_r;

    ck_assert_int_eq(test_req(s, r), (ssize_t)strlen(s));
    ck_assert_str_span(r->method, r->method_len, "GET");
    s = "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    ck_assert_int_eq(test_req(s, r), (ssize_t)strlen(s));
    ck_assert_int_eq(test_req("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", r),
                     HTTP_PARSE_EBAD);
}
END_TEST

START_TEST(test_methods)
{
    static const struct {
        const char *m;
        enum http_method id;
    } t[] = {
        {"GET", HTTP_M_GET},         {"HEAD", HTTP_M_HEAD},      {"POST", HTTP_M_POST},
        {"PUT", HTTP_M_PUT},         {"DELETE", HTTP_M_DELETE},  {"PATCH", HTTP_M_PATCH},
        {"OPTIONS", HTTP_M_OPTIONS}, {"TRACE", HTTP_M_TRACE},    {"PURGE", HTTP_M_PURGE},
        {"get", HTTP_M_OTHER},       {"M-SEARCH", HTTP_M_OTHER}, {"GETS", HTTP_M_OTHER},
        {"connect", HTTP_M_OTHER},
    };
    struct http_request *r = &test_r;
    char line[128];
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(line, sizeof(line), "%s / HTTP/1.1\r\nHost: h\r\n\r\n", t[i].m);
        ck_assert_int_gt(test_req(line, r), 0);
        ck_assert_int_eq(r->method_id, t[i].id);
        ck_assert_str_span(r->method, r->method_len, t[i].m);
    }
}
END_TEST

START_TEST(test_pipelined_heads)
{
    const char *s = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    struct http_request *r = &test_r;
    ssize_t n = test_req(s, r);

    ck_assert_int_eq(n, (ssize_t)strlen(s) / 2);
    ck_assert_str_span(r->path, r->path_len, "/1");
    ck_assert_int_eq(test_req(s + n, r), n);
    ck_assert_str_span(r->path, r->path_len, "/2");
}
END_TEST

START_TEST(test_valid_hosts)
{
    static const char *hosts[] = {
        "h",       "127.0.0.1",          "a.example:80",
        "[::1]",   "[2001:db8::1]:8443", "[::ffff:1.2.3.4]",
        "a:",      "x_y-z~!$&'()*+;=",   "%41b:65535",
        "a:00080",
    };
    struct http_request *r = &test_r;
    char line[256];
    size_t i;

    for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        snprintf(line, sizeof(line), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", hosts[i]);
        ck_assert_msg(test_req(line, r) > 0, "host %s", hosts[i]);
        ck_assert_str_span(r->host, r->host_len, hosts[i]);
    }
}
END_TEST

START_TEST(test_expect)
{
    struct http_request *r = &test_r;

    ck_assert_int_gt(test_req("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
                              "Content-Length: 3\r\n\r\n",
                              r),
                     0);
    ck_assert(r->expect_continue);
}
END_TEST

/* --- malformed requests ---------------------------------------------------- */

#define H "Host: h\r\n"

static const struct err_case request_errors[] = {
    /* request line */
    {LIT("GET  / HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET /  HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1 \r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT(" GET / HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET\t/ HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET /\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / extra HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("G(T / HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / http/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.10\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/11\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.x\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/2.0\r\n" H "\r\n"), HTTP_PARSE_EVERSION},
    {LIT("GET / HTTP/1.2\r\n" H "\r\n"), HTTP_PARSE_EVERSION},
    {LIT("GET / HTTP/0.9\r\n" H "\r\n"), HTTP_PARSE_EVERSION},
    {LIT("CONNECT example.com:443 HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EMETHOD},
    {LIT("CONNECT example.com:443 HTTP/3.0\r\n" H "\r\n"), HTTP_PARSE_EVERSION},
    {LIT("GET / HTTP/1.1\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\rX" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET /\r HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("\nGET / HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("\r\n\nGET / HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("\rGET / HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("\x16\x03\x01\x02\x00"), HTTP_PARSE_EBAD},
    /* request target */
    {LIT("GET /a\0b HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET /a\x7f HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET /caf\xc3\xa9 HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET /a#frag HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET http://h/#f HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET example.com:80 HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET * HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("OPTIONS *x HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET ftp://h/ HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET httpx://h/ HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET http:/h/ HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET http://user@h/ HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET http:///p HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET http://h:99999/ HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET a/b HTTP/1.1\r\n" H "\r\n"), HTTP_PARSE_EBAD},
    /* field syntax */
    {LIT("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\r\n folded\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\r\n\tfolded\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n " H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H ": v\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X-A\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X(A: b\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X\xc3\xa9: b\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\0b\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\x7f\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\x01\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\x1b[0m\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\rb\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\nY: b\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\r\n\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "\r\r"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H "X: a\r\r\n\r\n"), HTTP_PARSE_EBAD},
    /* Content-Length */
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\ncontent-length: 6\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: -5\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 5 5\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 5.0\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length:  \r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 4611686018427387905\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551616\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n"),
     HTTP_PARSE_EBAD},
    /* Transfer-Encoding */
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n"
         "Transfer-Encoding: gzip\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n"), HTTP_PARSE_ENOT_IMPL},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n"
         "Transfer-Encoding: chunked\r\n\r\n"),
     HTTP_PARSE_ENOT_IMPL},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip;level=1, chunked\r\n\r\n"),
     HTTP_PARSE_ENOT_IMPL},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: x ; p = \"a,b\" , chunked\r\n\r\n"),
     HTTP_PARSE_ENOT_IMPL},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip;level, chunked\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gz ip, chunked\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked,\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: , chunked\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: \"chunked\"\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\n"
         "Transfer-Encoding: gzip, chunked\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.0\r\n" H "Transfer-Encoding: chunked\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), HTTP_PARSE_EBAD},
    /* Host */
    {LIT("GET / HTTP/1.1\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\n" H H "\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost:\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.0\r\nHost:\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: u@h\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: h/p\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: h:99999\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: h:123456\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: h:8a\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: h:1:2\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: [1.2.3.4]\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: %zz\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: a%4\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET / HTTP/1.1\r\nHost: h\xc3\xa9\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET http://h/ HTTP/1.1\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n"), HTTP_PARSE_EBAD},
    /* Expect */
    {LIT("POST / HTTP/1.1\r\n" H "Expect: foo\r\n\r\n"), HTTP_PARSE_EEXPECT},
    {LIT("POST / HTTP/1.1\r\n" H "Expect: 100-continue, foo\r\n\r\n"), HTTP_PARSE_EEXPECT},
    {LIT("POST / HTTP/1.1\r\n" H "Expect:\r\n\r\n"), HTTP_PARSE_EEXPECT},
    {LIT("POST / HTTP/1.0\r\nExpect: 200-ok\r\n\r\n"), HTTP_PARSE_EEXPECT},
    /* ranking: 400 before 501 before 417 */
    {LIT("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("POST / HTTP/1.1\r\n" H "Expect: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
     HTTP_PARSE_ENOT_IMPL},
    {LIT("POST / HTTP/1.1\r\nExpect: x\r\n\r\n"), HTTP_PARSE_EBAD},
};

START_TEST(test_request_errors)
{
    const struct err_case *e = &request_errors[_i];
    char *buf = test_copy(e->s, e->len);
    ssize_t got = http_parse_request(buf, e->len, &test_lim, &test_r);

    ck_assert_msg(got == e->expect, "case %d \"%.*s\": got %zd, expected %zd", _i, (int)e->len,
                  e->s, got, e->expect);
    free(buf);
}
END_TEST

/* --- limits --------------------------------------------------------------- */

/* A request with a request line of line_len bytes and a head of head_len. */
static char *
test_sized_request(size_t line_len, size_t head_len, size_t *len)
{
    /* "GET /aaa HTTP/1.1" + CRLF + "Host: h" CRLF + "X: vvv" CRLF + CRLF */
    size_t fixed = 4 + 9 + 2 + 9 + 3 + 2 + 2, path = line_len - 13, value;
    char *s;

    ck_assert_uint_ge(line_len, 14);
    ck_assert_uint_ge(head_len, line_len + fixed - 13);
    value = head_len - line_len - (fixed - 13);
    s = malloc(head_len + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, "GET /", 5);
    memset(s + 5, 'a', path - 1);
    memcpy(s + 4 + path, " HTTP/1.1\r\nHost: h\r\nX: ", 23);
    memset(s + 4 + path + 23, 'v', value);
    memcpy(s + 4 + path + 23 + value, "\r\n\r\n", 5);
    *len = strlen(s);
    ck_assert_uint_eq(*len, head_len);
    return s;
}

START_TEST(test_limit_request_line)
{
    struct http_limits lim = {64, 1024, 10};
    size_t len;
    char *s;

    s = test_sized_request(64, 200, &len);
    ck_assert_int_eq(http_parse_request(s, len, &lim, &test_r), (ssize_t)len);
    ck_assert_uint_eq(test_r.path_len + test_r.method_len + 10, 64);
    /* Incomplete but exactly at the limit: could still end, so wait. */
    ck_assert_int_eq(http_parse_request(s, 64, &lim, &test_r), HTTP_PARSE_AGAIN);
    ck_assert_int_eq(http_parse_request(s, 65, &lim, &test_r), HTTP_PARSE_AGAIN);
    free(s);

    s = test_sized_request(65, 200, &len);
    ck_assert_int_eq(http_parse_request(s, len, &lim, &test_r), HTTP_PARSE_EURI_TOO_LONG);
    ck_assert_int_eq(http_parse_request(s, 64, &lim, &test_r), HTTP_PARSE_AGAIN);
    /* Still incomplete, already too long. */
    ck_assert_int_eq(http_parse_request(s, 65, &lim, &test_r), HTTP_PARSE_EURI_TOO_LONG);
    ck_assert_int_eq(http_parse_status(HTTP_PARSE_EURI_TOO_LONG), 414);
    free(s);
}
END_TEST

START_TEST(test_limit_header_bytes)
{
    struct http_limits lim = {64, 200, 10};
    size_t len;
    char *s;

    s = test_sized_request(40, 200, &len);
    ck_assert_int_eq(http_parse_request(s, len, &lim, &test_r), 200);
    ck_assert_int_eq(http_parse_request(s, 199, &lim, &test_r), HTTP_PARSE_AGAIN);
    free(s);

    s = test_sized_request(40, 201, &len);
    ck_assert_int_eq(http_parse_request(s, len, &lim, &test_r), HTTP_PARSE_EHEADERS_TOO_BIG);
    ck_assert_int_eq(http_parse_request(s, 199, &lim, &test_r), HTTP_PARSE_AGAIN);
    /* Incomplete and already at the limit with the head not ended. */
    ck_assert_int_eq(http_parse_request(s, 200, &lim, &test_r), HTTP_PARSE_EHEADERS_TOO_BIG);
    free(s);

    /* Leading empty lines count. */
    lim.max_header_bytes = 27;
    ck_assert_int_eq(http_parse_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27, &lim, &test_r),
                     27);
    ck_assert_int_eq(http_parse_request("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 29, &lim, &test_r),
                     HTTP_PARSE_EHEADERS_TOO_BIG);
    lim.max_header_bytes = 0;
    ck_assert_int_eq(http_parse_request("", 0, &lim, &test_r), HTTP_PARSE_EHEADERS_TOO_BIG);
}
END_TEST

START_TEST(test_limit_header_count)
{
    struct http_limits lim = {64, 4096, 3};
    const char *three = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    const char *four = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    char buf[12000];
    size_t len, i;

    ck_assert_int_eq(http_parse_request(three, strlen(three), &lim, &test_r),
                     (ssize_t)strlen(three));
    ck_assert_uint_eq(test_r.head.nheaders, 3);
    ck_assert_int_eq(http_parse_request(four, strlen(four), &lim, &test_r),
                     HTTP_PARSE_EHEADERS_TOO_BIG);
    /* Known as soon as the 4th field starts. */
    ck_assert_int_eq(http_parse_request(four, strlen(three) - 1, &lim, &test_r),
                     HTTP_PARSE_EHEADERS_TOO_BIG);
    ck_assert_int_eq(http_parse_request(four, strlen(three) - 2, &lim, &test_r), HTTP_PARSE_AGAIN);

    /* The configured count is capped by the array. */
    lim.max_headers = 1000;
    lim.max_header_bytes = sizeof(buf);
    len = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (i = 0; i < HTTP_HEADERS_CAP; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s\r\n", i ? "A: b" : "Host: h");
    ck_assert_int_eq(
        http_parse_request(buf, len + (size_t)snprintf(buf + len, 3, "\r\n"), &lim, &test_r),
        (ssize_t)len + 2);
    ck_assert_uint_eq(test_r.head.nheaders, HTTP_HEADERS_CAP);
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "A: b\r\n\r\n");
    ck_assert_int_eq(http_parse_request(buf, len, &lim, &test_r), HTTP_PARSE_EHEADERS_TOO_BIG);
}
END_TEST

START_TEST(test_limit_status_line)
{
    struct http_limits lim = {16, 4096, 10};

    ck_assert_int_eq(http_parse_response("HTTP/1.1 200 OKA\r\n\r\n", 20, &lim, false, &test_rs),
                     20);
    ck_assert_int_eq(http_parse_response("HTTP/1.1 200 OKAY\r\n\r\n", 21, &lim, false, &test_rs),
                     HTTP_PARSE_EHEADERS_TOO_BIG);
    ck_assert_int_eq(http_parse_response("HTTP/1.1 200 OKAY", 17, &lim, false, &test_rs),
                     HTTP_PARSE_EHEADERS_TOO_BIG);
    ck_assert_int_eq(http_parse_response("HTTP/1.1 200 OKA", 16, &lim, false, &test_rs),
                     HTTP_PARSE_AGAIN);
}
END_TEST

/* --- every split point ----------------------------------------------------- */

static ptrdiff_t
test_off(const char *p, const char *base)
{
    return p ? p - base : -1;
}

static void
test_same_head(const struct http_head *a, const char *abuf, const struct http_head *b,
               const char *bbuf)
{
    unsigned i;

    ck_assert_int_eq(a->version_minor, b->version_minor);
    ck_assert_uint_eq(a->nheaders, b->nheaders);
    for (i = 0; i < a->nheaders; i++) {
        ck_assert_int_eq(test_off(a->headers[i].name, abuf), test_off(b->headers[i].name, bbuf));
        ck_assert_uint_eq(a->headers[i].name_len, b->headers[i].name_len);
        ck_assert_int_eq(test_off(a->headers[i].value, abuf), test_off(b->headers[i].value, bbuf));
        ck_assert_uint_eq(a->headers[i].value_len, b->headers[i].value_len);
    }
    ck_assert_int_eq(a->framing, b->framing);
    ck_assert_uint_eq(a->content_length, b->content_length);
    ck_assert_int_eq(a->conn_close, b->conn_close);
    ck_assert_int_eq(a->conn_keep_alive, b->conn_keep_alive);
}

static void
test_same_request(const struct http_request *a, const char *abuf, const struct http_request *b,
                  const char *bbuf)
{
    test_same_head(&a->head, abuf, &b->head, bbuf);
    ck_assert_int_eq(test_off(a->method, abuf), test_off(b->method, bbuf));
    ck_assert_uint_eq(a->method_len, b->method_len);
    ck_assert_int_eq(a->method_id, b->method_id);
    ck_assert_int_eq(test_off(a->target, abuf), test_off(b->target, bbuf));
    ck_assert_uint_eq(a->target_len, b->target_len);
    ck_assert_int_eq(test_off(a->path, abuf), test_off(b->path, bbuf));
    ck_assert_uint_eq(a->path_len, b->path_len);
    ck_assert_int_eq(test_off(a->query, abuf), test_off(b->query, bbuf));
    ck_assert_uint_eq(a->query_len, b->query_len);
    ck_assert_int_eq(test_off(a->host, abuf), test_off(b->host, bbuf));
    ck_assert_uint_eq(a->host_len, b->host_len);
    ck_assert_int_eq(a->absolute_form, b->absolute_form);
    ck_assert_int_eq(a->expect_continue, b->expect_continue);
}

static void
test_same_response(const struct http_response *a, const char *abuf, const struct http_response *b,
                   const char *bbuf)
{
    test_same_head(&a->head, abuf, &b->head, bbuf);
    ck_assert_int_eq(a->status, b->status);
    ck_assert_int_eq(test_off(a->reason, abuf), test_off(b->reason, bbuf));
    ck_assert_uint_eq(a->reason_len, b->reason_len);
}

static const struct {
    const char *s;
    size_t len;
    ssize_t expect; /* > 0: the head's length */
    bool response;
} split_msgs[] = {
    {LIT("GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  t \r\n"
         "Connection: keep-alive\r\nAccept: */*\r\n\r\n"),
     98, false},
    {LIT("\r\n\r\nPOST http://h:81/up?q HTTP/1.1\r\nHost: other\r\n"
         "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
     101, false},
    {LIT("OPTIONS * HTTP/1.0\r\nContent-Length: 12\r\nX-Obs: \xff\xfe\r\n\r\nGET / HTTP/1.1\r\n"),
     53, false},
    {LIT("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
         "Cache-Control: max-age=60\r\n\r\n"),
     100, true},
    {LIT("HTTP/1.0 204\r\nConnection: keep-alive\r\n\r\nHTTP/1.0 200 OK\r\n"), 40, true},
    {LIT("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n"), HTTP_PARSE_EBAD, false},
    {LIT("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
     HTTP_PARSE_ENOT_IMPL, false},
    {LIT("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
     HTTP_PARSE_EBAD, false},
    {LIT("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), HTTP_PARSE_EVERSION, false},
    {LIT("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"), HTTP_PARSE_EBAD,
     true},
};

static ssize_t
test_parse_any(const char *buf, size_t len, bool response, struct http_request *rq,
               struct http_response *rs)
{
    if (response)
        return http_parse_response(buf, len, &test_lim, false, rs);
    return http_parse_request(buf, len, &test_lim, rq);
}

START_TEST(test_every_split_head)
{
    static struct http_request rq_full, rq_part;
    static struct http_response rs_full, rs_part;
    const char *s = split_msgs[_i].s;
    size_t len = split_msgs[_i].len, k;
    bool response = split_msgs[_i].response;
    char *full = test_copy(s, len), *part;
    ssize_t want = split_msgs[_i].expect, r;

    ck_assert_int_eq(test_parse_any(full, len, response, &rq_full, &rs_full), want);
    for (k = 0; k <= len; k++) {
        part = test_copy(s, k);
        r = test_parse_any(part, k, response, &rq_part, &rs_part);
        if (want > 0) {
            /* A valid head: nothing but AGAIN until it is all in. */
            ck_assert_msg(r == ((size_t)want <= k ? want : HTTP_PARSE_AGAIN),
                          "split %zu: got %zd, want %zd", k, r, want);
            if (r > 0 && response)
                test_same_response(&rs_part, part, &rs_full, full);
            else if (r > 0)
                test_same_request(&rq_part, part, &rq_full, full);
        } else {
            ck_assert_msg(r == HTTP_PARSE_AGAIN || r == want, "split %zu: got %zd, want %zd", k, r,
                          want);
        }
        free(part);
    }
    free(full);
}
END_TEST

/* --- responses ------------------------------------------------------------ */

START_TEST(test_response_framing)
{
    struct http_response *r = &test_rs;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    ck_assert_int_eq(test_resp(s, false, r), (ssize_t)strlen(s) - 5);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_span(r->reason, r->reason_len, "OK");
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_LENGTH);
    ck_assert_uint_eq(r->head.content_length, 5);
    ck_assert(!r->head.conn_close);

    /* HEAD: no body whatever the headers say. */
    ck_assert_int_gt(test_resp(s, true, r), 0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_NONE);
    ck_assert_uint_eq(r->head.content_length, 0);
    ck_assert_int_gt(test_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, r),
                     0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_NONE);

    ck_assert_int_gt(test_resp("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, r),
                     0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_NONE);
    ck_assert_int_gt(test_resp("HTTP/1.1 204 No Content\r\nContent-Length: x\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n",
                               false, r),
                     0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_NONE);
    ck_assert_int_gt(test_resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", false, r),
                     0);
    ck_assert_int_eq(r->status, 304);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_NONE);
    ck_assert_int_gt(test_resp("HTTP/1.1 100 Continue\r\n\r\n", false, r), 0);
    ck_assert_int_eq(r->status, 100);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_NONE);
    ck_assert_int_gt(test_resp("HTTP/1.1 101 Switching Protocols\r\nTransfer-Encoding: chunked\r\n"
                               "Content-Length: 3\r\n\r\n",
                               false, r),
                     0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_NONE);

    ck_assert_int_gt(test_resp("HTTP/1.1 200 OK\r\n\r\n", false, r), 0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_UNTIL_CLOSE);
    ck_assert_int_gt(test_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", false, r),
                     0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_CHUNKED);
    ck_assert_int_gt(test_resp("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false, r), 0);
    ck_assert_int_eq(r->head.framing, HTTP_FRAMING_LENGTH);
    ck_assert_uint_eq(r->head.content_length, 0);
}
END_TEST

START_TEST(test_response_status_line)
{
    struct http_response *r = &test_rs;

    ck_assert_int_gt(test_resp("HTTP/1.1 200\r\n\r\n", false, r), 0);
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(r->reason_len, 0);
    ck_assert_ptr_nonnull(r->reason);
    ck_assert_int_gt(test_resp("HTTP/1.1 200 \r\n\r\n", false, r), 0);
    ck_assert_uint_eq(r->reason_len, 0);
    ck_assert_int_gt(test_resp("HTTP/1.1 999 Odd \t\xe9t\xe9\r\n\r\n", false, r), 0);
    ck_assert_int_eq(r->status, 999);
    ck_assert_str_span(r->reason, r->reason_len, "Odd \t\xe9t\xe9");
    ck_assert_int_gt(test_resp("HTTP/1.0 200 OK\r\n\r\n", false, r), 0);
    ck_assert_int_eq(r->head.version_minor, 0);
    ck_assert(r->head.conn_close);
    ck_assert_int_gt(test_resp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false, r), 0);
    ck_assert(!r->head.conn_close);
    ck_assert(r->head.conn_keep_alive);
    ck_assert_int_gt(test_resp("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false, r), 0);
    ck_assert(r->head.conn_close);
}
END_TEST

static const struct err_case response_errors[] = {
    {LIT("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
     HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), HTTP_PARSE_ENOT_IMPL},
    {LIT("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 99 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 099 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 2000 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1  200 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 2x0 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1\t200 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/2.0 200 OK\r\n\r\n"), HTTP_PARSE_EVERSION},
    {LIT("HTTP/2 200 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("http/1.1 200 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 O\rK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 O\x01K\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 O\x7fK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("\r\nHTTP/1.1 200 OK\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nX : y\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n"), HTTP_PARSE_EBAD},
};

START_TEST(test_response_errors)
{
    const struct err_case *e = &response_errors[_i];
    char *buf = test_copy(e->s, e->len);
    ssize_t got = http_parse_response(buf, e->len, &test_lim, false, &test_rs);

    ck_assert_msg(got == e->expect, "case %d \"%.*s\": got %zd, expected %zd", _i, (int)e->len,
                  e->s, got, e->expect);
    free(buf);
}
END_TEST

/* --- chunked ---------------------------------------------------------------- */

struct test_chunked_out {
    ssize_t err;     /* 0, or the error a call returned */
    bool done;       /* http_chunked_done() at the end */
    size_t consumed; /* bytes consumed by successful calls */
    char data[512];
    size_t data_len;
};

/* Feeds one piece until it is used up, the body is done, or an error. */
static void
test_chunked_feed(struct http_chunked *c, const char *s, size_t len, struct test_chunked_out *o)
{
    char *piece = test_copy(s, len);
    size_t pos = 0, off, dlen;
    ssize_t r;

    while (o->err == 0 && !http_chunked_done(c) && pos < len) {
        r = http_chunked_decode(c, piece + pos, len - pos, &off, &dlen);
        if (r < 0) {
            o->err = r;
            break;
        }
        ck_assert_int_gt(r, 0);
        ck_assert_uint_le(off + dlen, (size_t)r);
        ck_assert_uint_le(o->data_len + dlen, sizeof(o->data));
        memcpy(o->data + o->data_len, piece + pos + off, dlen);
        o->data_len += dlen;
        o->consumed += (size_t)r;
        pos += (size_t)r;
    }
    free(piece);
}

/* Decodes s whole; returns consumed and fills o. */
static size_t
test_chunked_all(const char *s, size_t len, size_t max_trailer, struct test_chunked_out *o)
{
    struct http_chunked c;

    memset(o, 0, sizeof(*o));
    http_chunked_init(&c, max_trailer);
    test_chunked_feed(&c, s, len, o);
    o->done = http_chunked_done(&c);
    return o->consumed;
}

static const char test_chunked_body[] = "4\r\nWiki\r\n"
                                        "5;name=val;q=\"a\\\"b\" ;x\r\npedia\r\n"
                                        "000E \t; y = \"z\"\r\n in\r\n\r\nchunks.\r\n"
                                        "0;last\r\nExpires: never\r\nX-T:\tv \r\n\r\n"
                                        "GET / HTTP/1.1\r\n";

START_TEST(test_chunked_basic)
{
    struct test_chunked_out o;
    const char *end = strstr(test_chunked_body, "GET");
    struct http_chunked c;
    size_t off, dlen;

    ck_assert_uint_eq(test_chunked_all(test_chunked_body, sizeof(test_chunked_body) - 1, 64, &o),
                      (size_t)(end - test_chunked_body));
    ck_assert_int_eq(o.err, 0);
    ck_assert(o.done);
    ck_assert_uint_eq(o.data_len, 23);
    ck_assert_mem_eq(o.data, "Wikipedia in\r\n\r\nchunks.", 23);

    /* One data span per call; 0 only once done. */
    http_chunked_init(&c, 64);
    ck_assert_int_eq(http_chunked_decode(&c, "4\r\nWiki\r\n0\r\n\r\nX", 15, &off, &dlen), 7);
    ck_assert_uint_eq(off, 3);
    ck_assert_uint_eq(dlen, 4);
    ck_assert(!http_chunked_done(&c));
    ck_assert_int_eq(http_chunked_decode(&c, "\r\n0\r\n\r\nX", 8, &off, &dlen), 7);
    ck_assert_uint_eq(dlen, 0);
    ck_assert(http_chunked_done(&c));
    ck_assert_int_eq(http_chunked_decode(&c, "X", 1, &off, &dlen), 0);
    ck_assert_int_eq(http_chunked_decode(&c, "", 0, &off, &dlen), 0);

    /* Leading zeros and the largest size allowed. */
    http_chunked_init(&c, 64);
    ck_assert_int_eq(http_chunked_decode(&c, "0000000000000000000001\r\nZ", 25, &off, &dlen), 25);
    ck_assert_uint_eq(dlen, 1);
    http_chunked_init(&c, 64);
    ck_assert_int_eq(http_chunked_decode(&c, "fffffffffffffff\r\n", 17, &off, &dlen), 17);
    ck_assert_uint_eq(c.remaining, (UINT64_C(1) << 60) - 1);
}
END_TEST

START_TEST(test_chunked_pipelined)
{
    static const char s[] = "3\r\nabc\r\n0\r\n\r\nPOST /n HTTP/1.1\r\nHost: h\r\n"
                            "Content-Length: 2\r\n\r\nhi";
    struct test_chunked_out o;
    size_t n = test_chunked_all(s, sizeof(s) - 1, 64, &o);

    ck_assert_int_eq(o.err, 0);
    ck_assert(o.done);
    ck_assert_uint_eq(n, 13);
    ck_assert_int_eq(http_parse_request(s + n, sizeof(s) - 1 - n, &test_lim, &test_r),
                     (ssize_t)(sizeof(s) - 1 - n - 2));
    ck_assert_str_span(test_r.path, test_r.path_len, "/n");
}
END_TEST

START_TEST(test_chunked_every_split)
{
    static const struct msg bodies[] = {
        {LIT("4\r\nWiki\r\n"
             "5;name=val;q=\"a\\\"b\" ;x\r\npedia\r\n"
             "000E \t; y = \"z\"\r\n in\r\n\r\nchunks.\r\n"
             "0;last\r\nExpires: never\r\nX-T:\tv \r\n\r\n"
             "GET / HTTP/1.1\r\n")},
        {LIT("1;a=b\r\nx\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n0\r\n\r\n")},
        {LIT("3\r\nabc\r\n0\r\nTrailer-A: 1\r\n\r\n")},
        {LIT("3\r\nabc\r\n2\r\nxy\n\r\n0\r\n\r\n")},
        {LIT("2\r\nab\r\n0\r\nBad Name: 1\r\n\r\n")},
    };
    struct test_chunked_out whole, split;
    struct http_chunked c;
    const char *s = bodies[_i].s;
    size_t len = bodies[_i].len, k, j;

    test_chunked_all(s, len, 64, &whole);
    ck_assert_int_eq(whole.err, _i < 3 ? 0 : HTTP_PARSE_EBAD);
    ck_assert_int_eq(whole.done, _i < 3);
    for (k = 0; k <= len; k++) {
        memset(&split, 0, sizeof(split));
        http_chunked_init(&c, 64);
        test_chunked_feed(&c, s, k, &split);
        test_chunked_feed(&c, s + split.consumed, len - split.consumed, &split);
        ck_assert_msg(split.err == whole.err, "split %zu: err %zd vs %zd", k, split.err, whole.err);
        ck_assert_int_eq(http_chunked_done(&c), whole.done);
        ck_assert_uint_eq(split.data_len, whole.data_len);
        ck_assert_mem_eq(split.data, whole.data, whole.data_len);
        if (whole.err == 0)
            ck_assert_uint_eq(split.consumed, whole.consumed);
    }
    /* One byte at a time. */
    memset(&split, 0, sizeof(split));
    http_chunked_init(&c, 64);
    for (j = 0; j < len && split.err == 0 && !http_chunked_done(&c); j++)
        test_chunked_feed(&c, s + j, 1, &split);
    ck_assert_int_eq(split.err, whole.err);
    ck_assert_int_eq(http_chunked_done(&c), whole.done);
    ck_assert_uint_eq(split.data_len, whole.data_len);
    ck_assert_mem_eq(split.data, whole.data, whole.data_len);
    if (whole.err == 0)
        ck_assert_uint_eq(split.consumed, whole.consumed);
}
END_TEST

static const struct err_case chunked_errors[] = {
    {LIT("4\r\nWikiX\r\n0\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("4\r\nWiki\n0\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("4\r\nWikiX\n0\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("4\r\nWiki\rX0\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("4\r\nWiki\r0\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("4\r\nWiki0\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("x\r\n"), HTTP_PARSE_EBAD},
    {LIT("\r\n"), HTTP_PARSE_EBAD},
    {LIT(" 4\r\n"), HTTP_PARSE_EBAD},
    {LIT("4 \r\n"), HTTP_PARSE_EBAD},
    {LIT("-4\r\n"), HTTP_PARSE_EBAD},
    {LIT("+4\r\n"), HTTP_PARSE_EBAD},
    {LIT("0x4\r\n"), HTTP_PARSE_EBAD},
    {LIT("4\n"), HTTP_PARSE_EBAD},
    {LIT("4\rx"), HTTP_PARSE_EBAD},
    {LIT("4\r\r\n"), HTTP_PARSE_EBAD},
    {LIT("1000000000000000\r\n"), HTTP_PARSE_EBAD},
    {LIT("00ffffffffffffffff\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;=v\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a=\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a \r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a=b \r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a=\"b\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a=\"b\"c\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a=b c\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a=\"\x01\"\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a=\"\\\x7f\"\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a(b\r\n"), HTTP_PARSE_EBAD},
    {LIT("4;a\nWiki\r\n"), HTTP_PARSE_EBAD},
    {LIT("4,5\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\n X: y\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\nX : y\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\n: y\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\nX\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\nX: \x01\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\nX: \0\r\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\nX: y\n\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\nX: y\r\r\n"), HTTP_PARSE_EBAD},
    {LIT("0\r\n\r\r"), HTTP_PARSE_EBAD},
    {LIT("0\r\n\n"), HTTP_PARSE_EBAD},
};

START_TEST(test_chunked_errors)
{
    const struct err_case *e = &chunked_errors[_i];
    struct test_chunked_out o;

    test_chunked_all(e->s, e->len, 64, &o);
    ck_assert(!o.done);
    ck_assert_msg(o.err == e->expect, "case %d: got %zd, expected %zd", _i, o.err, e->expect);
}
END_TEST

START_TEST(test_chunked_limits)
{
    struct test_chunked_out o;
    struct http_chunked c;
    size_t off, dlen;

    /* Size line: 10 bytes allowed, CRLF not counted. */
    test_chunked_all(LIT("1;abcdefgh\r\nx\r\n0\r\n\r\n"), 10, &o);
    ck_assert(o.done);
    test_chunked_all(LIT("1;abcdefghi\r\nx\r\n0\r\n\r\n"), 10, &o);
    ck_assert_int_eq(o.err, HTTP_PARSE_EBAD);
    test_chunked_all(LIT("000000000001\r\nx\r\n0\r\n\r\n"), 10, &o);
    ck_assert_int_eq(o.err, HTTP_PARSE_EBAD);

    /* Trailer section: field lines with their CRLF, not the final CRLF. */
    test_chunked_all(LIT("0\r\nA: 12345\r\n\r\n"), 10, &o);
    ck_assert(o.done);
    test_chunked_all(LIT("0\r\nA: 12345\r\n\r\n"), 9, &o);
    ck_assert_int_eq(o.err, HTTP_PARSE_EBAD);
    test_chunked_all(LIT("0\r\nA: 1\r\nB: 2\r\n\r\n"), 12, &o);
    ck_assert(o.done);
    test_chunked_all(LIT("0\r\nA: 1\r\nB: 2\r\n\r\n"), 11, &o);
    ck_assert_int_eq(o.err, HTTP_PARSE_EBAD);

    /* An error is sticky. */
    http_chunked_init(&c, 64);
    ck_assert_int_eq(http_chunked_decode(&c, "z", 1, &off, &dlen), HTTP_PARSE_EBAD);
    ck_assert_int_eq(http_chunked_decode(&c, "0\r\n\r\n", 5, &off, &dlen), HTTP_PARSE_EBAD);
    ck_assert(!http_chunked_done(&c));
}
END_TEST

/* --- helpers ---------------------------------------------------------------- */

START_TEST(test_parse_status_codes)
{
    ck_assert_int_eq(http_parse_status(HTTP_PARSE_EBAD), 400);
    ck_assert_int_eq(http_parse_status(HTTP_PARSE_EURI_TOO_LONG), 414);
    ck_assert_int_eq(http_parse_status(HTTP_PARSE_EHEADERS_TOO_BIG), 431);
    ck_assert_int_eq(http_parse_status(HTTP_PARSE_ENOT_IMPL), 501);
    ck_assert_int_eq(http_parse_status(HTTP_PARSE_EVERSION), 505);
    ck_assert_int_eq(http_parse_status(HTTP_PARSE_EMETHOD), 405);
    ck_assert_int_eq(http_parse_status(HTTP_PARSE_EEXPECT), 417);
    ck_assert_int_eq(http_parse_status(-99), 400);
}
END_TEST

START_TEST(test_lists_and_lookup)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Foo , close;p=1\r\n"
                    "x-bar: 1\r\nConnection: Upgrade\r\n\r\n";
    struct http_request *r = &test_r;
    const struct http_header *f;

    ck_assert(http_list_has_token("a, Close ;x=1, b", 16, "close", 5));
    ck_assert(http_list_has_token("close", 5, "close", 5));
    ck_assert(!http_list_has_token("closed", 6, "close", 5));
    ck_assert(!http_list_has_token("\"close\"", 7, "close", 5));
    ck_assert(!http_list_has_token("a;p=\",close\"", 12, "close", 5));
    ck_assert(http_list_has_token("a;p=\",x\", close", 15, "close", 5));
    ck_assert(!http_list_has_token("", 0, "close", 5));
    ck_assert(!http_list_has_token("clo", 3, "close", 5));
    ck_assert(http_list_has_token(" ,\t, close,", 11, "close", 5));

    ck_assert(http_str_ieq("Content-LENGTH", 14, "content-length"));
    ck_assert(!http_str_ieq("Content-Length", 13, "content-length"));
    ck_assert(!http_str_ieq("content-lengtx", 14, "content-length"));
    ck_assert(http_str_ieq("", 0, ""));

    ck_assert_int_gt(test_req(s, r), 0);
    f = http_head_find(&r->head, "X-BAR");
    ck_assert_ptr_nonnull(f);
    ck_assert_str_span(f->value, f->value_len, "1");
    f = http_head_find(&r->head, "connection");
    ck_assert_ptr_eq(f, &r->head.headers[1]);
    ck_assert_ptr_null(http_head_find(&r->head, "x-ba"));
    ck_assert(http_head_connection_names(&r->head, "x-foo", 5));
    ck_assert(http_head_connection_names(&r->head, "upgrade", 7));
    ck_assert(!http_head_connection_names(&r->head, "x-bar", 5));
    ck_assert(r->head.conn_close);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
http_parser_suite(void)
{
    Suite *s = suite_create("http_parser");
    TCase *tc;

    tc = tcase_create("valid_requests");
    tcase_add_test(tc, test_get_with_headers);
    tcase_add_test(tc, test_no_query_and_empty_query);
    tcase_add_test(tc, test_absolute_form);
    tcase_add_test(tc, test_asterisk_options);
    tcase_add_test(tc, test_post_length);
    tcase_add_test(tc, test_post_chunked);
    tcase_add_test(tc, test_methods);
    tcase_add_test(tc, test_pipelined_heads);
    tcase_add_test(tc, test_valid_hosts);
    tcase_add_test(tc, test_expect);
    suite_add_tcase(s, tc);

    tc = tcase_create("http10_and_connection");
    tcase_add_test(tc, test_http10);
    tcase_add_test(tc, test_connection_flags);
    tcase_add_test(tc, test_leading_crlf);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed_requests");
    tcase_add_loop_test(tc, test_request_errors, 0, N(request_errors));
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_test(tc, test_limit_request_line);
    tcase_add_test(tc, test_limit_header_bytes);
    tcase_add_test(tc, test_limit_header_count);
    tcase_add_test(tc, test_limit_status_line);
    suite_add_tcase(s, tc);

    tc = tcase_create("every_split_head");
    tcase_add_loop_test(tc, test_every_split_head, 0, N(split_msgs));
    suite_add_tcase(s, tc);

    tc = tcase_create("responses");
    tcase_add_test(tc, test_response_framing);
    tcase_add_test(tc, test_response_status_line);
    tcase_add_loop_test(tc, test_response_errors, 0, N(response_errors));
    suite_add_tcase(s, tc);

    tc = tcase_create("chunked");
    tcase_add_test(tc, test_chunked_basic);
    tcase_add_test(tc, test_chunked_pipelined);
    tcase_add_loop_test(tc, test_chunked_errors, 0, N(chunked_errors));
    tcase_add_test(tc, test_chunked_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("chunked_every_split");
    tcase_add_loop_test(tc, test_chunked_every_split, 0, 5);
    suite_add_tcase(s, tc);

    tc = tcase_create("helpers");
    tcase_add_test(tc, test_parse_status_codes);
    tcase_add_test(tc, test_lists_and_lookup);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(http_parser_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
