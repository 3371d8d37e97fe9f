/*
 * check_ban: unit tests of bans and the ban list: what each kind matches
 * and does not (URL with extra parts and variants, paths that only share a
 * prefix, PREFIX and REGEX with and without a host, TAG in either header
 * whatever the case of its name, ROUTE through a config loaded from a
 * temporary YAML file), argument errors, the list's time rules (a ban
 * older than the object does not apply), the floor after overflow,
 * out-of-order adds, and adds and checks from several threads at once.
 *
 * Times are made up: the list only compares them.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "ban.h"
#include "config.h"
#include "route.h"

#define K(host, target) "G\nhttps\n" host "\n" target

static bool
key_matches(const struct ban *b, const char *key)
{
    return ban_matches(b, key, strlen(key), NULL, 0);
}

static bool
head_matches(const struct ban *b, const char *head)
{
    return ban_matches(b, K("example.com", "/"), strlen(K("example.com", "/")), head,
                       head != NULL ? strlen(head) : 0);
}

/* A ban that must be made; host may be NULL. */
static struct ban *
make(enum ban_kind kind, const char *arg, const char *host, struct config *cfg, int64_t t)
{
    char err[256];
    struct ban *b = ban_new(kind, arg, strlen(arg), host, cfg, t, err, sizeof(err));

    ck_assert_msg(b != NULL, "%s \"%s\": %s", ban_kind_name(kind), arg, err);
    ck_assert_int_eq(ban_kind_of(b), kind);
    ck_assert_int_eq(ban_time(b), t);
    return b;
}

/* A ban that must be refused with a message containing want. */
static void
refuse(enum ban_kind kind, const char *arg, size_t arg_len, struct config *cfg, const char *want)
{
    char err[256] = "unset";
    struct ban *b = ban_new(kind, arg, arg_len, NULL, cfg, 1, err, sizeof(err));

    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(err, want) != NULL, "\"%s\" lacks \"%s\"", err, want);
    /* No buffer for the message is fine too. */
    ck_assert_ptr_null(ban_new(kind, arg, arg_len, NULL, cfg, 1, NULL, 0));
}

START_TEST(test_kind_names)
{
    ck_assert_str_eq(ban_kind_name(BAN_URL), "url");
    ck_assert_str_eq(ban_kind_name(BAN_PREFIX), "prefix");
    ck_assert_str_eq(ban_kind_name(BAN_REGEX), "regex");
    ck_assert_str_eq(ban_kind_name(BAN_TAG), "tag");
    ck_assert_str_eq(ban_kind_name(BAN_ROUTE), "route");
    ck_assert_str_eq(ban_kind_name((enum ban_kind)99), "unknown");
}
END_TEST

START_TEST(test_url)
{
    struct ban *b = make(BAN_URL, K("example.com", "/a"), NULL, NULL, 1);
    struct ban *q = make(BAN_URL, K("example.com", "/a?x=1"), NULL, NULL, 1);
    struct ban *r;

    ck_assert(ban_key_only(b));
    ck_assert(key_matches(b, K("example.com", "/a")));
    /* Every header/cookie part and every variant of the URL. */
    ck_assert(key_matches(b, K("example.com", "/a") "\nhaccept-language=en\nclang"));
    ck_assert(key_matches(b, K("example.com", "/a") "\x1e"
                                                    "accept-encoding=gzip"));
    ck_assert(key_matches(b, K("example.com", "/a") "\nhx=1\x1e"
                                                    "accept-encoding=br"));
    /* Not another path, query, scheme, host or class. */
    ck_assert(!key_matches(b, K("example.com", "/ab")));
    ck_assert(!key_matches(b, K("example.com", "/a/")));
    ck_assert(!key_matches(b, K("example.com", "/a?x=1")));
    ck_assert(!key_matches(b, K("example.com", "/")));
    ck_assert(!key_matches(b, K("example.com:8443", "/a")));
    ck_assert(!key_matches(b, K("example.org", "/a")));
    ck_assert(!key_matches(b, "G\nhttp\nexample.com\n/a"));
    ck_assert(!key_matches(b, "MPOST\nhttps\nexample.com\n/a"));
    ck_assert(!key_matches(b, "G\nhttps\nexample.com"));
    ck_assert(!ban_matches(b, NULL, 0, NULL, 0));

    ck_assert(key_matches(q, K("example.com", "/a?x=1")));
    ck_assert(key_matches(q, K("example.com", "/a?x=1") "\x1e"
                                                        "v"));
    ck_assert(!key_matches(q, K("example.com", "/a?x=12")));
    ck_assert(!key_matches(q, K("example.com", "/a")));

    /* The reference count. */
    r = ban_ref(b);
    ck_assert_ptr_eq(r, b);
    ban_unref(&r);
    ck_assert_ptr_null(r);
    ck_assert(key_matches(b, K("example.com", "/a")));
    ban_unref(&b);
    ban_unref(&b); /* NULL is fine */
    ban_unref(&q);
}
END_TEST

START_TEST(test_url_bad_args)
{
    refuse(BAN_URL, "", 0, NULL, "empty");
    refuse(BAN_URL, NULL, 0, NULL, "empty");
    refuse(BAN_URL, "/a", 2, NULL, "url");
    refuse(BAN_URL, "G\nhttps\nexample.com", 19, NULL, "url");
    refuse(BAN_URL, K("example.com", "/a") "\nhx=1", strlen(K("example.com", "/a") "\nhx=1"), NULL,
           "url");
    refuse(BAN_URL, "MPOST\nhttps\nexample.com\n/a", 26, NULL, "url");
    refuse(BAN_URL, K("h", "/a\x1e"), strlen(K("h", "/a\x1e")), NULL, "url");
}
END_TEST

START_TEST(test_prefix)
{
    struct ban *any = make(BAN_PREFIX, "/a", NULL, NULL, 1);
    struct ban *empty_host = make(BAN_PREFIX, "/a", "", NULL, 1);
    struct ban *host = make(BAN_PREFIX, "/a", "Example.COM", NULL, 1);
    struct ban *query = make(BAN_PREFIX, "/s?q=", NULL, NULL, 1);

    ck_assert(ban_key_only(any));
    ck_assert(key_matches(any, K("example.com", "/a")));
    ck_assert(key_matches(any, K("example.com", "/ab")));
    ck_assert(key_matches(any, K("other.org", "/a/b?x=1\nhx=1\x1e"
                                              "v")));
    ck_assert(key_matches(any, "MPOST\nhttps\nexample.com\n/a/form"));
    ck_assert(!key_matches(any, K("example.com", "/b/a")));
    ck_assert(!key_matches(any, K("example.com", "/")));
    /* Only the target counts, not the parts after it. */
    ck_assert(!key_matches(any, K("example.com", "/b") "\nh/a=/a"));
    ck_assert(!key_matches(any, "G\nhttps\n/a"));
    ck_assert(key_matches(empty_host, K("other.org", "/a")));

    ck_assert(key_matches(host, K("example.com", "/a/b")));
    ck_assert(!key_matches(host, K("example.org", "/a/b")));
    ck_assert(!key_matches(host, K("example.com:8080", "/a/b")));
    ck_assert(!key_matches(host, K("www.example.com", "/a/b")));
    ck_assert(!key_matches(host, K("example.com", "/b")));

    ck_assert(key_matches(query, K("example.com", "/s?q=cats")));
    ck_assert(!key_matches(query, K("example.com", "/s")));
    ban_unref(&any);
    ban_unref(&empty_host);
    ban_unref(&host);
    ban_unref(&query);
    refuse(BAN_PREFIX, "", 0, NULL, "empty");
}
END_TEST

START_TEST(test_regex)
{
    struct ban *any = make(BAN_REGEX, "^/img/[0-9]+\\.png$", NULL, NULL, 1);
    struct ban *host = make(BAN_REGEX, "\\.css", "static.example.com", NULL, 1);
    struct ban *query = make(BAN_REGEX, "[?&]v=2(&|$)", NULL, NULL, 1);
    struct ban *slow = make(BAN_REGEX, "^(a+)+$", NULL, NULL, 1);

    ck_assert(ban_key_only(any));
    ck_assert(key_matches(any, K("example.com", "/img/12.png")));
    ck_assert(key_matches(any, K("example.com", "/img/12.png") "\nhaccept=x\x1e"
                                                               "v"));
    ck_assert(!key_matches(any, K("example.com", "/img/x.png")));
    ck_assert(!key_matches(any, K("example.com", "/img/12.png?v=1")));
    ck_assert(!key_matches(any, K("example.com", "/a") "\nh/img/1.png"));

    ck_assert(key_matches(host, K("static.example.com", "/site.css?v=3")));
    ck_assert(!key_matches(host, K("example.com", "/site.css")));

    ck_assert(key_matches(query, K("example.com", "/a?x=1&v=2")));
    ck_assert(!key_matches(query, K("example.com", "/a?v=22")));

    /* A match PCRE2 gives up on counts as banned. */
    ck_assert(key_matches(slow, K("example.com", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!")));
    ck_assert(!key_matches(slow, K("example.com", "/")));

    ban_unref(&any);
    ban_unref(&host);
    ban_unref(&query);
    ban_unref(&slow);
    refuse(BAN_REGEX, "(", 1, NULL, "regex: ");
    refuse(BAN_REGEX, "a[", 2, NULL, "at offset");
    refuse(BAN_REGEX, "", 0, NULL, "empty");
}
END_TEST

START_TEST(test_tag)
{
    struct ban *a = make(BAN_TAG, "a", NULL, NULL, 1);
    struct ban *p1 = make(BAN_TAG, "product-1", NULL, NULL, 1);
    static const char head[] = "Content-Type: text/html\r\n"
                               "Surrogate-Key: ab  b,c\tproduct-1\r\n"
                               "X-Tags: a\r\n";

    ck_assert(!ban_key_only(a));
    ck_assert(head_matches(p1, head));
    /* Whole tags only: "a" is not "ab", and other fields do not count. */
    ck_assert(!head_matches(a, head));
    ck_assert(!head_matches(p1, "Surrogate-Key: product-10 xproduct-1\r\n"));
    ck_assert(!head_matches(p1, "Surrogate-Key: Product-1\r\n"));
    ck_assert(head_matches(a, "Surrogate-Key: a\r\n"));
    ck_assert(head_matches(a, "Surrogate-Key:a\r\n"));
    ck_assert(head_matches(a, "Surrogate-Key: b,,a,\r\n"));
    ck_assert(head_matches(a, "Cache-Tag: x,a\r\n"));
    ck_assert(head_matches(a, "cache-tag: a\r\n"));
    ck_assert(head_matches(a, "SURROGATE-KEY: a\r\n"));
    ck_assert(head_matches(a, "Vary: accept\r\nSurrogate-Key: x\r\nCache-Tag: y\r\n"
                              "Surrogate-Key: z a\r\n"));
    ck_assert(head_matches(a, "Cache-Tag: a")); /* no final CRLF */
    ck_assert(!head_matches(a, "X-Surrogate-Key: a\r\n"));
    ck_assert(!head_matches(a, "Surrogate-Keys: a\r\n"));
    ck_assert(!head_matches(a, "Cache-Tag: x\r\nX: a\r\n"));
    ck_assert(!head_matches(a, "Cache-Tag: abc, ba\r\n"));
    ck_assert(!head_matches(a, ""));
    ck_assert(!head_matches(a, NULL));
    /* The key does not matter, not even a malformed one. */
    ck_assert(ban_matches(a, "x", 1, "Cache-Tag: a\r\n", 14));
    ban_unref(&a);
    ban_unref(&p1);
    refuse(BAN_TAG, "a b", 3, NULL, "tag");
    refuse(BAN_TAG, "a,b", 3, NULL, "tag");
    refuse(BAN_TAG, "", 0, NULL, "empty");
}
END_TEST

/* ---- ROUTE, with a config from a temporary file -------------------- */

static const char route_yaml[] = "upstreams:\n"
                                 "  o: {servers: \"127.0.0.1:8081\"}\n"
                                 "routes:\n"
                                 "  - name: writes\n"
                                 "    prefix: /w/\n"
                                 "    methods: [POST]\n"
                                 "    upstream: o\n"
                                 "  - name: api\n"
                                 "    host: api.example.com\n"
                                 "    prefix: /api/\n"
                                 "    upstream: o\n"
                                 "  - name: img\n"
                                 "    regex: '^/img/[0-9]+$'\n"
                                 "    upstream: o\n"
                                 "  - name: rest\n"
                                 "    upstream: o\n";

static struct config *
load_yaml(const char *text)
{
    const char *dir = getenv("TMPDIR");
    char path[512];
    char *err = NULL;
    struct config *cfg;
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "%s/check_ban_XXXXXX.yaml", dir != NULL ? dir : "/tmp");
    fd = mkstemps(path, 5);
    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    ck_assert_int_eq(fclose(f), 0);
    cfg = config_load(path, &err);
    unlink(path);
    ck_assert_msg(cfg != NULL, "%s", err != NULL ? err : "");
    return cfg;
}

START_TEST(test_route)
{
    struct config *cfg = load_yaml(route_yaml);
    struct ban *api = make(BAN_ROUTE, "api", NULL, cfg, 1);
    struct ban *img = make(BAN_ROUTE, "img", NULL, cfg, 1);
    struct ban *rest = make(BAN_ROUTE, "rest", NULL, cfg, 1);
    struct ban *writes = make(BAN_ROUTE, "writes", NULL, cfg, 1);

    refuse(BAN_ROUTE, "nope", 4, cfg, "no route named \"nope\"");
    refuse(BAN_ROUTE, "api", 3, NULL, "no route");
    refuse(BAN_ROUTE, "ap", 2, cfg, "no route");
    /* The bans keep the config alive. */
    config_unref(&cfg);

    ck_assert(ban_key_only(api));
    ck_assert(key_matches(api, K("api.example.com", "/api/users?page=2")));
    ck_assert(key_matches(api, K("api.example.com:8443", "/api/x") "\nhx=1\x1e"
                                                                   "v"));
    ck_assert(!key_matches(api, K("www.example.com", "/api/users")));
    ck_assert(!key_matches(api, K("api.example.com", "/apix")));
    ck_assert(key_matches(rest, K("www.example.com", "/api/users")));
    ck_assert(!key_matches(rest, K("api.example.com", "/api/users")));

    /* Routed on the path alone: the query does not defeat "$". */
    ck_assert(key_matches(img, K("example.com", "/img/12?size=large")));
    ck_assert(!key_matches(img, K("example.com", "/img/x")));

    /* As a GET: the POST-only route never owns a cached key. */
    ck_assert(!key_matches(writes, K("example.com", "/w/1")));
    ck_assert(key_matches(rest, K("example.com", "/w/1")));
    ck_assert(!key_matches(rest, "G\nhttps"));

    ban_unref(&api);
    ban_unref(&img);
    ban_unref(&rest);
    ban_unref(&writes);
    route_thread_cleanup();
}
END_TEST

/* ---- the list ------------------------------------------------------ */

static void
add(struct ban_list *bl, enum ban_kind kind, const char *arg, int64_t t)
{
    struct ban *b = make(kind, arg, NULL, NULL, t);

    ban_list_add(bl, b);
    ban_unref(&b); /* the list has its own */
}

/* Checks the key of target on example.com, stored with head (may be NULL). */
static bool
check_head(struct ban_list *bl, const char *target, const char *head, int64_t stored_at)
{
    char key[256];
    int n = snprintf(key, sizeof(key), K("example.com", "%s"), target);

    return ban_list_check(bl, key, (size_t)n, head, head != NULL ? strlen(head) : 0, stored_at);
}

static bool
check(struct ban_list *bl, const char *target, int64_t stored_at)
{
    return check_head(bl, target, NULL, stored_at);
}

START_TEST(test_list_times)
{
    struct ban_list *bl = ban_list_new(10);

    ck_assert_uint_eq(ban_list_count(bl), 0);
    ck_assert(!check(bl, "/a", 0));
    add(bl, BAN_PREFIX, "/a", 100);
    add(bl, BAN_TAG, "t1", 200);
    ck_assert_uint_eq(ban_list_count(bl), 2);
    /* A ban made at or after the object was stored applies... */
    ck_assert(check(bl, "/a/x", 50));
    ck_assert(check(bl, "/a/x", 100));
    /* ...an older one does not. */
    ck_assert(!check(bl, "/a/x", 101));
    ck_assert(!check(bl, "/b", 50));
    /* The tag ban, made at 200, covers tagged objects of any path. */
    ck_assert(check_head(bl, "/b", "Surrogate-Key: t1\r\n", 50));
    ck_assert(check_head(bl, "/a/x", "Surrogate-Key: t1\r\n", 101));
    ck_assert(check_head(bl, "/b", "Cache-Tag: t0 t1\r\n", 200));
    ck_assert(!check_head(bl, "/b", "Surrogate-Key: t1\r\n", 201));
    ck_assert(!check_head(bl, "/b", "Surrogate-Key: t2\r\n", 50));
    ban_list_free(&bl);
    ck_assert_ptr_null(bl);
    ban_list_free(&bl);
}
END_TEST

START_TEST(test_list_floor)
{
    struct ban_list *bl = ban_list_new(3);

    add(bl, BAN_PREFIX, "/p1", 10);
    add(bl, BAN_PREFIX, "/p2", 20);
    add(bl, BAN_PREFIX, "/p3", 30);
    ck_assert(!check(bl, "/zzz", 0)); /* no floor yet */
    add(bl, BAN_PREFIX, "/p4", 40);   /* drops /p1: floor 10 */
    ck_assert_uint_eq(ban_list_count(bl), 3);
    ck_assert(check(bl, "/zzz", 9));
    ck_assert(check(bl, "/zzz", 10)); /* /p1 covered objects stored at 10 */
    ck_assert(!check(bl, "/zzz", 11));
    ck_assert(check(bl, "/p2", 15));
    ck_assert(check(bl, "/p4", 40));

    add(bl, BAN_PREFIX, "/p5", 50); /* drops /p2: floor 20 */
    ck_assert(check(bl, "/zzz", 20));
    ck_assert(!check(bl, "/zzz", 21));
    ck_assert(!check(bl, "/p2", 21));

    /* At or before the floor: already covered, not kept. */
    add(bl, BAN_PREFIX, "/p0", 15);
    add(bl, BAN_PREFIX, "/p0", 20);
    ck_assert_uint_eq(ban_list_count(bl), 3);
    ck_assert(check(bl, "/p3", 30));

    /* Older than all three kept (30, 40, 50): it is the one dropped. */
    add(bl, BAN_PREFIX, "/p6", 25);
    ck_assert_uint_eq(ban_list_count(bl), 3);
    ck_assert(check(bl, "/zzz", 25));
    ck_assert(!check(bl, "/zzz", 26));
    ck_assert(check(bl, "/p3", 26));
    ck_assert(check(bl, "/p5", 50));
    ban_list_free(&bl);
}
END_TEST

START_TEST(test_list_out_of_order)
{
    struct ban_list *bl = ban_list_new(10);
    struct ban_list *small = ban_list_new(2);

    add(bl, BAN_PREFIX, "/c", 300);
    add(bl, BAN_PREFIX, "/a", 100);
    add(bl, BAN_PREFIX, "/b", 200);
    add(bl, BAN_PREFIX, "/b2", 200);
    ck_assert(check(bl, "/a", 100));
    ck_assert(!check(bl, "/a", 150));
    ck_assert(check(bl, "/b", 150));
    ck_assert(check(bl, "/b2", 200));
    ck_assert(!check(bl, "/b2", 201));
    ck_assert(check(bl, "/c", 250));
    ck_assert(!check(bl, "/c", 301));

    /* Full: the oldest by time goes, not the first added, so the floor
     * rises as little as it can. */
    add(small, BAN_PREFIX, "/c", 300);
    add(small, BAN_PREFIX, "/a", 100);
    add(small, BAN_PREFIX, "/b", 200);
    ck_assert(check(small, "/zzz", 100));
    ck_assert(!check(small, "/zzz", 101));
    ck_assert(check(small, "/b", 150));
    ck_assert(check(small, "/c", 250));
    ban_list_free(&bl);
    ban_list_free(&small);
}
END_TEST

/*
 * Two threads add bans (prefix and regex, rising times) to a small list
 * while two check keys against it; then the list must hold exactly its
 * maximum, the newest bans, and the floor must cover the dropped ones.
 * The sanitizer build catches use-after-free of dropped bans.
 */
#define TEST_ADDS 300
#define TEST_CHECKS 2000
#define TEST_MAX 32

struct test_thread {
    struct ban_list *bl;
    unsigned id;
    unsigned hits;
};

static void *
test_adder(void *arg)
{
    struct test_thread *t = arg;
    char text[64];

    for (unsigned i = 0; i < TEST_ADDS; i++) {
        int64_t when = (int64_t)i * 2 + t->id;
        if (i % 3 == 0)
            snprintf(text, sizeof(text), "^/t%u/%u(/|$)", t->id, i);
        else
            snprintf(text, sizeof(text), "/t%u/%u/", t->id, i);
        struct ban *b = ban_new(i % 3 == 0 ? BAN_REGEX : BAN_PREFIX, text, strlen(text), NULL, NULL,
                                when, NULL, 0);
        ck_assert_ptr_nonnull(b);
        ban_list_add(t->bl, b);
        ban_unref(&b);
    }
    return NULL;
}

static void *
test_checker(void *arg)
{
    struct test_thread *t = arg;
    char key[128];

    for (unsigned i = 0; i < TEST_CHECKS; i++) {
        unsigned n = i % TEST_ADDS;
        int len = snprintf(key, sizeof(key), K("example.com", "/t%u/%u/x"), i % 2, n);
        t->hits += ban_list_check(t->bl, key, (size_t)len, NULL, 0, (int64_t)n * 2);
        ck_assert_uint_le(ban_list_count(t->bl), TEST_MAX);
    }
    return NULL;
}

START_TEST(test_list_threads)
{
    struct ban_list *bl = ban_list_new(TEST_MAX);
    struct test_thread ts[4];
    pthread_t tid[4];
    char key[128];

    for (unsigned i = 0; i < 4; i++) {
        ts[i] = (struct test_thread){.bl = bl, .id = i % 2};
        ck_assert_int_eq(pthread_create(&tid[i], NULL, i < 2 ? test_adder : test_checker, &ts[i]),
                         0);
    }
    for (unsigned i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
    ck_assert_uint_eq(ban_list_count(bl), TEST_MAX);
    /* Every key was banned at the time it was stored, floor or not. */
    for (unsigned id = 0; id < 2; id++) {
        for (unsigned i = 0; i < TEST_ADDS; i++) {
            int len = snprintf(key, sizeof(key), K("example.com", "/t%u/%u/x"), id, i);
            ck_assert(ban_list_check(bl, key, (size_t)len, NULL, 0, (int64_t)i * 2 + id));
        }
    }
    /* The newest are kept: a key stored just before the last ban of thread 1. */
    ck_assert(check(bl, "/t1/299/x", 598));
    ck_assert(!check(bl, "/t0/298/x", 598));
    ck_assert(!check(bl, "/t0/1/x", 599));
    ban_list_free(&bl);
}
END_TEST

static Suite *
ban_suite(void)
{
    Suite *s = suite_create("ban");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"kind_names", test_kind_names},
        {"url", test_url},
        {"url_bad_args", test_url_bad_args},
        {"prefix", test_prefix},
        {"regex", test_regex},
        {"tag", test_tag},
        {"route", test_route},
        {"list_times", test_list_times},
        {"list_floor", test_list_floor},
        {"list_out_of_order", test_list_out_of_order},
        {"list_threads", test_list_threads},
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
    SRunner *sr = srunner_create(ban_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
