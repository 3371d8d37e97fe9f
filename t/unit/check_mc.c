/*
 * check_mc: the memcached pool against real memcached servers.
 *
 * Each test starts two memcached processes (/usr/bin/memcached) on free
 * loopback ports and drives a pool from a private event_base; every wait
 * is a loop of event_base_loop(EVLOOP_ONCE) under a wall-clock deadline
 * (a 5 ms tick keeps the loop from blocking past it). Servers are
 * SIGKILLed in the teardown, and by the kernel (PR_SET_PDEATHSIG) when
 * the test process dies first, e.g. on a failed assertion.
 *
 * Which server owns a key is computed here with libmemcached configured
 * like mc.c (libketama placement); test_spread checks that prediction
 * against the servers' contents, so the other tests can rely on it.
 *
 * A "black hole" is a listening socket whose accept queue is full: the
 * kernel drops new SYNs, so connect() hangs like towards a dead host.
 *
 * Measured durations are printed as "# ..." lines on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <libmemcached/memcached.h>

#include "mc.h"
#include "test_net.h"
#include "util.h"

#define TEST_HOST "127.0.0.1"
#define TEST_TIMEOUT_MS 300
#define TEST_CONNECT_MS 300
#define TEST_RETRY_MS 500
/* Slack for scheduling on a loaded machine under the sanitizers. */
#define TEST_MARGIN_MS 1000
/* A request that must not wait at all. */
#define TEST_FAST_MS 100

struct test_server {
    pid_t pid; /* -1: not running */
    int port;
};

static struct test_server test_srv[2];
static int test_ports[2];
static struct event_base *test_base;
static struct event *test_tick;

/* One result, filled by test_on_result. */
struct test_res {
    int calls;
    enum mc_result r;
    bool has_value;
    char *value;
    size_t len;
    uint64_t at_ms;
};

/* Callbacks that must never run. */
static int test_forbidden_calls;

static void
test_on_result(void *arg, enum mc_result r, const char *value, size_t len)
{
    struct test_res *x = arg;

    x->calls++;
    x->r = r;
    x->at_ms = util_now_ms();
    free(x->value);
    x->value = NULL;
    x->has_value = value != NULL;
    x->len = len;
    if (value != NULL) {
        x->value = malloc(len + 1);
        ck_assert_ptr_nonnull(x->value);
        memcpy(x->value, value, len);
        x->value[len] = '\0';
    }
}

static void
test_on_forbidden(void *arg, enum mc_result r, const char *value, size_t len)
{
    test_forbidden_calls++;
}

static void
test_res_clear(struct test_res *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(x[i].value);
        memset(&x[i], 0, sizeof(x[i]));
    }
}

static void
test_on_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until *calls reaches want or max_ms pass; true if reached. */
static bool
test_wait_calls(const int *calls, int want, unsigned max_ms)
{
    uint64_t end = util_now_ms() + max_ms;

    while (*calls < want && util_now_ms() < end)
        event_base_loop(test_base, EVLOOP_ONCE);
    return *calls >= want;
}

/* Runs the loop for ms milliseconds (to let results that must not come show up). */
static void
test_run_for(unsigned ms)
{
    uint64_t end = util_now_ms() + ms;

    while (util_now_ms() < end)
        event_base_loop(test_base, EVLOOP_ONCE);
}

static bool
test_all_called(const struct test_res *x, size_t n, unsigned max_ms)
{
    uint64_t end = util_now_ms() + max_ms;

    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += x[i].calls > 0;
        if (done == n)
            return true;
        if (util_now_ms() >= end)
            return false;
        event_base_loop(test_base, EVLOOP_ONCE);
    }
}

/* ---- memcached processes and raw sockets ---- */

static void
test_server_start(int i)
{
    char port[16];
    pid_t parent = getpid();

    snprintf(port, sizeof(port), "%d", test_srv[i].port);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Dies with the test process, whatever kills it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (getuid() == 0)
            execl("/usr/bin/memcached", "memcached", "-l", TEST_HOST, "-p", port, "-U", "0", "-m",
                  "64", "-t", "2", "-u", "root", (char *)NULL);
        else
            execl("/usr/bin/memcached", "memcached", "-l", TEST_HOST, "-p", port, "-U", "0", "-m",
                  "64", "-t", "2", (char *)NULL);
        _exit(127);
    }
    test_srv[i].pid = pid;

    /* Ready when it accepts a connection; polled, bounded. */
    uint64_t end = util_now_ms() + 5000;
    for (;;) {
        int fd = test_net_connect(test_srv[i].port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        ck_assert_msg(waitpid(pid, NULL, WNOHANG) == 0, "memcached on port %d exited",
                      test_srv[i].port);
        ck_assert_msg(util_now_ms() < end, "memcached on port %d not ready", test_srv[i].port);
        usleep(10 * 1000);
    }
}

static void
test_server_kill(int i)
{
    if (test_srv[i].pid <= 0)
        return;
    kill(test_srv[i].pid, SIGKILL);
    waitpid(test_srv[i].pid, NULL, 0);
    test_srv[i].pid = -1;
}

/* The state letter in /proc/PID/stat ('T' when stopped), or '?'. */
static char
test_proc_state(pid_t pid)
{
    char path[64], buf[512];

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return '?';
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/* SIGSTOP is asynchronous: wait until the process is really stopped. */
static void
test_server_stop(int i)
{
    uint64_t end = util_now_ms() + 2000;

    ck_assert_int_eq(kill(test_srv[i].pid, SIGSTOP), 0);
    while (test_proc_state(test_srv[i].pid) != 'T') {
        ck_assert_msg(util_now_ms() < end, "memcached did not stop");
        usleep(1000);
    }
}

static void
test_server_cont(int i)
{
    ck_assert_int_eq(kill(test_srv[i].pid, SIGCONT), 0);
}

/*
 * Sends a text-protocol command to the server on port and reads the reply
 * up to "END\r\n" into buf (NUL-terminated), within 2 s. Returns its length.
 */
static size_t
test_raw(int port, const char *cmd, char *buf, size_t cap)
{
    int fd = test_net_connect(port);
    size_t n = 0;
    uint64_t end = util_now_ms() + 2000;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(send(fd, cmd, strlen(cmd), MSG_NOSIGNAL), (ssize_t)strlen(cmd));
    for (;;) {
        buf[n] = '\0';
        if (n >= 5 && strcmp(buf + n - 5, "END\r\n") == 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = (int)(end - util_now_ms());
        ck_assert_msg(left > 0 && poll(&pfd, 1, left) == 1, "no reply to %s", cmd);
        ssize_t got = recv(fd, buf + n, cap - 1 - n, 0);
        ck_assert_int_gt(got, 0);
        n += (size_t)got;
        ck_assert_uint_lt(n, cap - 1);
    }
    close(fd);
    return n;
}

/* Whether the server on port holds key, asked directly. */
static bool
test_raw_has(int port, const char *key)
{
    char cmd[300], buf[4096];

    snprintf(cmd, sizeof(cmd), "get %s\r\n", key);
    test_raw(port, cmd, buf, sizeof(buf));
    return strncmp(buf, "VALUE ", 6) == 0;
}

static unsigned long
test_raw_curr_items(int port)
{
    char buf[8192];

    test_raw(port, "stats\r\n", buf, sizeof(buf));
    const char *p = strstr(buf, "STAT curr_items ");
    ck_assert_ptr_nonnull(p);
    return strtoul(p + strlen("STAT curr_items "), NULL, 10);
}

/*
 * Waits (at most max_ms) until a connection to the server on port holds
 * bytes it has not read: a request sent to a stopped server.
 */
static void
test_wait_unread(int port, unsigned max_ms)
{
    uint64_t end = util_now_ms() + max_ms;
    char want[16], line[512];

    snprintf(want, sizeof(want), ":%04X", (unsigned)port);
    for (;;) {
        FILE *f = fopen("/proc/net/tcp", "r");
        ck_assert_ptr_nonnull(f);
        bool found = false;
        while (!found && fgets(line, sizeof(line), f) != NULL) {
            /* "sl local rem st tx_queue:rx_queue ..."; local is ADDR:PORT in hex. */
            char local[64], rem[64], st[8], queues[32];
            if (sscanf(line, "%*s %63s %63s %7s %31s", local, rem, st, queues) != 4)
                continue;
            const char *colon = strchr(queues, ':');
            size_t n = strlen(local);
            if (n > 5 && strcmp(local + n - 5, want) == 0 && strcmp(st, "01") == 0 &&
                colon != NULL && strtoul(colon + 1, NULL, 16) > 0)
                found = true;
        }
        fclose(f);
        if (found)
            return;
        ck_assert_msg(util_now_ms() < end, "no request reached port %d", port);
        usleep(1000);
    }
}

/*
 * A black hole on a free port: listening, backlog 0, its one accept slot
 * taken by a connection never accepted. *filler keeps that connection.
 */
static int
test_blackhole(int *port, int *filler)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(fd, 0), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    *filler = test_net_connect(*port);
    ck_assert_int_ge(*filler, 0);

    /* Proof that it swallows: a further connect() stays pending. */
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(probe, 0);
    int rc = connect(probe, (struct sockaddr *)&sin, sizeof(sin));
    ck_assert(rc < 0 && errno == EINPROGRESS);
    struct pollfd pfd = {.fd = probe, .events = POLLOUT};
    ck_assert_int_eq(poll(&pfd, 1, 100), 0);
    close(probe);
    return fd;
}

/* ---- key placement ---- */

/* The index of the server (in ports[] order) that owns key. */
static uint32_t
test_owner(const int *ports, size_t n, const char *key)
{
    memcached_st *m = memcached_create(NULL);

    ck_assert_ptr_nonnull(m);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(memcached_server_add(m, TEST_HOST, (in_port_t)ports[i]),
                         MEMCACHED_SUCCESS);
    ck_assert_int_eq(memcached_behavior_set(m, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1),
                     MEMCACHED_SUCCESS);
    uint32_t owner = memcached_generate_hash(m, key, strlen(key));
    memcached_free(m);
    return owner;
}

/* Writes into buf the first key "prefix-N" owned by server idx. */
static void
test_key_on(const int *ports, size_t n, uint32_t idx, const char *prefix, char *buf, size_t cap)
{
    for (int i = 0; i < 10000; i++) {
        snprintf(buf, cap, "%s-%d", prefix, i);
        if (test_owner(ports, n, buf) == idx)
            return;
    }
    ck_abort_msg("no key on server %u", idx);
}

/* ---- pool helpers ---- */

static struct mc_pool *
test_pool(const int *ports, size_t n, unsigned threads, unsigned queue, unsigned connect_ms)
{
    static const char *const hosts[] = {TEST_HOST, TEST_HOST, TEST_HOST};
    struct mc_pool_opts o = {
        .hosts = hosts,
        .ports = ports,
        .nservers = n,
        .threads = threads,
        .queue = queue,
        .connect_timeout_ms = connect_ms,
        .timeout_ms = TEST_TIMEOUT_MS,
        .retry_ms = TEST_RETRY_MS,
    };
    ck_assert_uint_le(n, 3);
    struct mc_pool *p = mc_pool_new(&o);
    ck_assert_ptr_nonnull(p);
    return p;
}

static char *
test_dup(const void *v, size_t len)
{
    char *c = malloc(len ? len : 1);

    ck_assert_ptr_nonnull(c);
    memcpy(c, v, len);
    return c;
}

/* Submits one operation and waits for it; returns its result in *x. */
static enum mc_result
test_op(struct mc_pool *p, struct mc_done *d, enum mc_op op, const char *key, const void *v,
        size_t vlen, struct test_res *x)
{
    test_res_clear(x, 1);
    ck_assert_int_eq(mc_submit(p, d, op, key, strlen(key), op == MC_SET ? test_dup(v, vlen) : NULL,
                               vlen, 0, test_on_result, x),
                     0);
    ck_assert_msg(test_wait_calls(&x->calls, 1, 2 * TEST_TIMEOUT_MS + 2000), "no result");
    ck_assert_int_eq(x->calls, 1);
    return x->r;
}

/* Like test_op, and returns the time it took in ms. */
static uint64_t
test_timed(struct mc_pool *p, struct mc_done *d, enum mc_op op, const char *key, struct test_res *x)
{
    uint64_t t0 = util_now_ms();

    test_op(p, d, op, key, "v", 1, x);
    return x->at_ms - t0;
}

/* ---- fixture ---- */

static void
test_setup(void)
{
    for (int i = 0; i < 2; i++) {
        test_srv[i].pid = -1;
        test_srv[i].port = test_ports[i] = test_net_free_port();
    }
    ck_assert_int_ne(test_ports[0], test_ports[1]);
    for (int i = 0; i < 2; i++)
        test_server_start(i);
    test_base = event_base_new();
    ck_assert_ptr_nonnull(test_base);
    test_tick = event_new(test_base, -1, EV_PERSIST, test_on_tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(test_tick, &tv);
    test_forbidden_calls = 0;
}

static void
test_teardown(void)
{
    for (int i = 0; i < 2; i++)
        test_server_kill(i);
    event_free(test_tick);
    test_tick = NULL;
    event_base_free(test_base);
    test_base = NULL;
}

/* ---- tests ---- */

START_TEST(test_roundtrip)
{
    struct mc_pool *p = test_pool(test_ports, 2, 2, 64, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x = {0};

    /* Every byte value, NULs included. */
    char bin[512];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (char)(i % 256);
    ck_assert_int_eq(test_op(p, d, MC_SET, "bin", bin, sizeof(bin), &x), MC_OK);
    ck_assert(!x.has_value);
    ck_assert_int_eq(test_op(p, d, MC_GET, "bin", NULL, 0, &x), MC_OK);
    ck_assert(x.has_value);
    ck_assert_uint_eq(x.len, sizeof(bin));
    ck_assert(memcmp(x.value, bin, sizeof(bin)) == 0);

    /* About 500 KiB, under memcached's 1 MiB item limit. */
    size_t big_len = 500 * 1024;
    char *big = malloc(big_len);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)((i * 7 + i / 251) & 0xff);
    ck_assert_int_eq(test_op(p, d, MC_SET, "big", big, big_len, &x), MC_OK);
    ck_assert_int_eq(test_op(p, d, MC_GET, "big", NULL, 0, &x), MC_OK);
    ck_assert_uint_eq(x.len, big_len);
    ck_assert(memcmp(x.value, big, big_len) == 0);
    free(big);

    /* An empty value is found, not missing. */
    ck_assert_int_eq(test_op(p, d, MC_SET, "empty", "", 0, &x), MC_OK);
    ck_assert_int_eq(test_op(p, d, MC_GET, "empty", NULL, 0, &x), MC_OK);
    ck_assert(x.has_value);
    ck_assert_uint_eq(x.len, 0);

    /* Overwrite, then delete. */
    ck_assert_int_eq(test_op(p, d, MC_SET, "bin", "new", 3, &x), MC_OK);
    ck_assert_int_eq(test_op(p, d, MC_GET, "bin", NULL, 0, &x), MC_OK);
    ck_assert_str_eq(x.value, "new");
    ck_assert_int_eq(test_op(p, d, MC_DELETE, "bin", NULL, 0, &x), MC_OK);
    ck_assert_int_eq(test_op(p, d, MC_GET, "bin", NULL, 0, &x), MC_NOTFOUND);
    ck_assert(!x.has_value);

    /* A NULL callback is fine. */
    ck_assert_int_eq(mc_submit(p, d, MC_DELETE, "big", 3, NULL, 0, 0, NULL, NULL), 0);

    test_res_clear(&x, 1);
    mc_done_free(&d);
    ck_assert_ptr_null(d);
    mc_pool_free(&p);
    ck_assert_ptr_null(p);
    mc_done_free(&d); /* NULL is accepted */
    mc_pool_free(&p);
}
END_TEST

START_TEST(test_notfound)
{
    struct mc_pool *p = test_pool(test_ports, 2, 1, 8, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x = {0};

    ck_assert_int_eq(test_op(p, d, MC_GET, "never-set", NULL, 0, &x), MC_NOTFOUND);
    ck_assert(!x.has_value);
    ck_assert_int_eq(test_op(p, d, MC_DELETE, "never-set", NULL, 0, &x), MC_NOTFOUND);

    test_res_clear(&x, 1);
    mc_done_free(&d);
    mc_pool_free(&p);
}
END_TEST

/* memcached reads an exptime over 30 days as a Unix time: the pool converts it. */
START_TEST(test_long_exptime)
{
    struct mc_pool *p = test_pool(test_ports, 2, 1, 8, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x = {0};
    uint32_t days40 = 40 * 24 * 3600;

    ck_assert_int_eq(
        mc_submit(p, d, MC_SET, "long", 4, test_dup("kept", 4), 4, days40, test_on_result, &x), 0);
    ck_assert(test_wait_calls(&x.calls, 1, 2000));
    ck_assert_int_eq(x.r, MC_OK);
    ck_assert_int_eq(test_op(p, d, MC_GET, "long", NULL, 0, &x), MC_OK);
    ck_assert_str_eq(x.value, "kept");

    test_res_clear(&x, 1);
    mc_done_free(&d);
    mc_pool_free(&p);
}
END_TEST

/* Refused at once: no callback, and the SET value is freed (leak check). */
START_TEST(test_bad_key)
{
    struct mc_pool *p = test_pool(test_ports, 2, 1, 8, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    char key[260];

    memset(key, 'k', sizeof(key));
    ck_assert_int_eq(
        mc_submit(p, d, MC_SET, key, 251, test_dup("v", 1), 1, 0, test_on_forbidden, NULL), -1);
    ck_assert_int_eq(
        mc_submit(p, d, MC_SET, key, 0, test_dup("v", 1), 1, 0, test_on_forbidden, NULL), -1);
    ck_assert_int_eq(mc_submit(p, d, MC_GET, key, 251, NULL, 0, 0, test_on_forbidden, NULL), -1);

    /* 250 bytes is the limit, and works. */
    struct test_res x = {0};
    ck_assert_int_eq(mc_submit(p, d, MC_SET, key, 250, test_dup("v", 1), 1, 0, test_on_result, &x),
                     0);
    ck_assert(test_wait_calls(&x.calls, 1, 2000));
    ck_assert_int_eq(x.r, MC_OK);

    test_run_for(50);
    ck_assert_int_eq(test_forbidden_calls, 0);
    test_res_clear(&x, 1);
    mc_done_free(&d);
    mc_pool_free(&p);
}
END_TEST

/* Options the pool cannot work with are refused. */
START_TEST(test_bad_options)
{
    static const char *const hosts[] = {"localhost"};
    static const char *const ip[] = {TEST_HOST};
    int ports[] = {test_ports[0]};
    struct mc_pool_opts o = {
        .hosts = hosts,
        .ports = ports,
        .nservers = 1,
        .threads = 1,
        .queue = 1,
        .connect_timeout_ms = 100,
        .timeout_ms = 100,
    };

    ck_assert_ptr_null(mc_pool_new(&o)); /* not numeric */
    o.hosts = ip;
    o.threads = 0;
    ck_assert_ptr_null(mc_pool_new(&o));
    o.threads = 1;
    o.timeout_ms = 0;
    ck_assert_ptr_null(mc_pool_new(&o));
    o.timeout_ms = 100;
    o.nservers = 0;
    ck_assert_ptr_null(mc_pool_new(&o));
    o.nservers = 1;
    struct mc_pool *p = mc_pool_new(&o);
    ck_assert_ptr_nonnull(p);
    mc_pool_free(&p);
}
END_TEST

/* Keys land on both servers, each where ketama says. */
START_TEST(test_spread)
{
    struct mc_pool *p = test_pool(test_ports, 2, 2, 256, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    enum { N = 200 };
    static struct test_res x[N];
    char key[32];

    memset(x, 0, sizeof(x));
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "spread-%d", i);
        ck_assert_int_eq(mc_submit(p, d, MC_SET, key, strlen(key), test_dup(key, strlen(key)),
                                   strlen(key), 0, test_on_result, &x[i]),
                         0);
    }
    ck_assert(test_all_called(x, N, 5000));
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(x[i].calls, 1);
        ck_assert_int_eq(x[i].r, MC_OK);
    }

    unsigned long items[2];
    for (int s = 0; s < 2; s++) {
        items[s] = test_raw_curr_items(test_ports[s]);
        ck_assert_uint_gt(items[s], 0);
    }
    ck_assert_uint_eq(items[0] + items[1], N);

    unsigned predicted[2] = {0, 0};
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "spread-%d", i);
        uint32_t owner = test_owner(test_ports, 2, key);
        ck_assert_uint_lt(owner, 2);
        predicted[owner]++;
        ck_assert_msg(test_raw_has(test_ports[owner], key), "%s not on server %u", key, owner);
        ck_assert_msg(!test_raw_has(test_ports[1 - owner], key), "%s also on server %u", key,
                      1 - owner);
    }
    fprintf(stderr, "# spread: %lu and %lu of %d keys\n", items[0], items[1], N);
    ck_assert_uint_eq(predicted[0], items[0]);

    test_res_clear(x, N);
    mc_done_free(&d);
    mc_pool_free(&p);
}
END_TEST

/* Over memcached's item size limit: an error, quickly, and the server stays in use. */
START_TEST(test_too_big)
{
    struct mc_pool *p = test_pool(test_ports, 2, 1, 8, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x = {0};
    size_t len = 2 * 1024 * 1024;
    char *v = calloc(1, len);

    ck_assert_ptr_nonnull(v);
    uint64_t t0 = util_now_ms();
    ck_assert_int_eq(mc_submit(p, d, MC_SET, "huge", 4, v, len, 0, test_on_result, &x), 0);
    ck_assert(test_wait_calls(&x.calls, 1, TEST_TIMEOUT_MS + TEST_MARGIN_MS));
    ck_assert_int_eq(x.r, MC_ERROR);
    fprintf(stderr, "# 2 MiB SET: %" PRIu64 " ms\n", x.at_ms - t0);

    /* Not a server failure: the same server answers at once. */
    ck_assert_int_eq(test_op(p, d, MC_SET, "huge", "small", 5, &x), MC_OK);
    ck_assert_int_eq(test_op(p, d, MC_GET, "huge", NULL, 0, &x), MC_OK);
    ck_assert_str_eq(x.value, "small");

    test_res_clear(&x, 1);
    mc_done_free(&d);
    mc_pool_free(&p);
}
END_TEST

/* A stopped server: one timeout, then fast errors; the other server unaffected. */
START_TEST(test_stopped)
{
    struct mc_pool *p = test_pool(test_ports, 2, 2, 64, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x = {0};
    char k0[32], k1[32];

    test_key_on(test_ports, 2, 0, "stop", k0, sizeof(k0));
    test_key_on(test_ports, 2, 1, "stop", k1, sizeof(k1));
    ck_assert_int_eq(test_op(p, d, MC_SET, k0, "zero", 4, &x), MC_OK);
    ck_assert_int_eq(test_op(p, d, MC_SET, k1, "one", 3, &x), MC_OK);

    test_server_stop(0);
    uint64_t first = test_timed(p, d, MC_GET, k0, &x);
    ck_assert_msg(x.r == MC_TIMEOUT || x.r == MC_ERROR, "result %d", x.r);
    ck_assert_uint_le(first, TEST_TIMEOUT_MS + TEST_MARGIN_MS);

    /* Interleaved: the stopped server's keys fail at once, the other's work. */
    enum { N = 20 };
    struct test_res xs[N];
    memset(xs, 0, sizeof(xs));
    uint64_t t0 = util_now_ms();
    for (int i = 0; i < N; i++) {
        const char *k = i % 2 ? k1 : k0;
        ck_assert_int_eq(mc_submit(p, d, MC_GET, k, strlen(k), NULL, 0, 0, test_on_result, &xs[i]),
                         0);
    }
    ck_assert(test_all_called(xs, N, TEST_TIMEOUT_MS + TEST_MARGIN_MS));
    uint64_t worst = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(xs[i].r, i % 2 ? MC_OK : MC_ERROR);
        if (i % 2)
            ck_assert_str_eq(xs[i].value, "one");
        worst = xs[i].at_ms - t0 > worst ? xs[i].at_ms - t0 : worst;
    }
    ck_assert_uint_le(worst, TEST_FAST_MS);
    fprintf(stderr,
            "# stopped server: first op %" PRIu64 " ms, %d more ops done in %" PRIu64 " ms\n",
            first, N, worst);

    /* Resumed: back within retry_ms (plus one probe). */
    test_server_cont(0);
    uint64_t t1 = util_now_ms(), back = 0;
    while (util_now_ms() < t1 + TEST_RETRY_MS + TEST_TIMEOUT_MS + TEST_MARGIN_MS) {
        if (test_op(p, d, MC_GET, k0, NULL, 0, &x) == MC_OK) {
            back = x.at_ms - t1;
            break;
        }
        test_run_for(20);
    }
    ck_assert_int_eq(x.r, MC_OK);
    ck_assert_str_eq(x.value, "zero");
    fprintf(stderr, "# stopped server: in use again %" PRIu64 " ms after SIGCONT\n", back);

    test_res_clear(&x, 1);
    test_res_clear(xs, N);
    mc_done_free(&d);
    mc_pool_free(&p);
}
END_TEST

/* A killed server fails fast; restarted on its port, it is used again. */
START_TEST(test_killed)
{
    struct mc_pool *p = test_pool(test_ports, 2, 2, 64, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x = {0};
    char k0[32], k1[32];

    test_key_on(test_ports, 2, 0, "kill", k0, sizeof(k0));
    test_key_on(test_ports, 2, 1, "kill", k1, sizeof(k1));
    /* Both threads hold a connection to server 0. */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(test_op(p, d, MC_SET, k0, "zero", 4, &x), MC_OK);
    ck_assert_int_eq(test_op(p, d, MC_SET, k1, "one", 3, &x), MC_OK);

    test_server_kill(0);
    uint64_t first = test_timed(p, d, MC_GET, k0, &x);
    ck_assert_int_eq(x.r, MC_ERROR);
    ck_assert_uint_le(first, TEST_TIMEOUT_MS + TEST_MARGIN_MS);
    uint64_t worst = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t t = test_timed(p, d, MC_GET, k0, &x);
        ck_assert_int_eq(x.r, MC_ERROR);
        worst = t > worst ? t : worst;
        ck_assert_int_eq(test_op(p, d, MC_GET, k1, NULL, 0, &x), MC_OK);
        ck_assert_str_eq(x.value, "one");
    }
    ck_assert_uint_le(worst, TEST_FAST_MS);

    test_server_start(0);
    uint64_t t1 = util_now_ms(), back = 0;
    while (util_now_ms() < t1 + TEST_RETRY_MS + TEST_MARGIN_MS) {
        if (test_op(p, d, MC_SET, k0, "again", 5, &x) == MC_OK) {
            back = x.at_ms - t1;
            break;
        }
        test_run_for(20);
    }
    ck_assert_int_eq(x.r, MC_OK);
    /*
     * Within one retry period (plus slack): a thread still holding a
     * connection from before the kill must not spoil the first probe.
     */
    ck_assert_uint_le(back, TEST_RETRY_MS + 400);
    ck_assert(test_raw_has(test_ports[0], k0));
    /* And no thread fails on such a stale connection afterwards. */
    enum { N = 10 };
    struct test_res xs[N];
    memset(xs, 0, sizeof(xs));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(
            mc_submit(p, d, MC_GET, k0, strlen(k0), NULL, 0, 0, test_on_result, &xs[i]), 0);
    ck_assert(test_all_called(xs, N, TEST_TIMEOUT_MS + TEST_MARGIN_MS));
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(xs[i].r, MC_OK);
        ck_assert_str_eq(xs[i].value, "again");
    }
    test_res_clear(xs, N);
    fprintf(stderr,
            "# killed server: first op %" PRIu64 " ms, next ones <= %" PRIu64
            " ms; in use again %" PRIu64 " ms after restart\n",
            first, worst, back);

    test_res_clear(&x, 1);
    mc_done_free(&d);
    mc_pool_free(&p);
}
END_TEST

/* A host that drops SYNs costs connect_timeout once, then fails fast. */
START_TEST(test_blackhole_host)
{
    int bh_port, filler;
    int bh = test_blackhole(&bh_port, &filler);
    int ports[2] = {test_ports[0], bh_port};
    struct mc_pool *p = test_pool(ports, 2, 2, 64, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x = {0};
    char k0[32], kb[32];

    test_key_on(ports, 2, 0, "bh", k0, sizeof(k0));
    test_key_on(ports, 2, 1, "bh", kb, sizeof(kb));

    uint64_t first = test_timed(p, d, MC_GET, kb, &x);
    ck_assert_msg(x.r == MC_TIMEOUT || x.r == MC_ERROR, "result %d", x.r);
    ck_assert_uint_ge(first + 20, TEST_CONNECT_MS);
    ck_assert_uint_le(first, TEST_CONNECT_MS + TEST_MARGIN_MS);
    uint64_t worst = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t t = test_timed(p, d, MC_SET, kb, &x);
        ck_assert_int_eq(x.r, MC_ERROR);
        worst = t > worst ? t : worst;
        ck_assert_int_eq(test_op(p, d, MC_SET, k0, "v", 1, &x), MC_OK);
    }
    ck_assert_uint_le(worst, TEST_FAST_MS);
    fprintf(stderr, "# black-hole host: first op %" PRIu64 " ms, next ones <= %" PRIu64 " ms\n",
            first, worst);

    test_res_clear(&x, 1);
    mc_done_free(&d);
    mc_pool_free(&p);
    close(filler);
    close(bh);
}
END_TEST

/*
 * An operation that waited past its deadline completes MC_TIMEOUT without
 * running: with one thread stuck connecting to a black hole for longer
 * than timeout_ms, a SET queued behind it to a live server is not stored.
 */
START_TEST(test_queue_deadline)
{
    int bh_port, filler;
    int bh = test_blackhole(&bh_port, &filler);
    int ports[2] = {test_ports[0], bh_port};
    unsigned connect_ms = 3 * TEST_TIMEOUT_MS;
    struct mc_pool *p = test_pool(ports, 2, 1, 8, connect_ms);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x[2];
    char k0[32], kb[32];

    memset(x, 0, sizeof(x));
    test_key_on(ports, 2, 0, "dl", k0, sizeof(k0));
    test_key_on(ports, 2, 1, "dl", kb, sizeof(kb));

    uint64_t t0 = util_now_ms();
    ck_assert_int_eq(mc_submit(p, d, MC_GET, kb, strlen(kb), NULL, 0, 0, test_on_result, &x[0]), 0);
    ck_assert_int_eq(
        mc_submit(p, d, MC_SET, k0, strlen(k0), test_dup("late", 4), 4, 0, test_on_result, &x[1]),
        0);
    ck_assert(test_all_called(x, 2, connect_ms + TEST_MARGIN_MS));
    ck_assert_msg(x[0].r == MC_TIMEOUT || x[0].r == MC_ERROR, "result %d", x[0].r);
    ck_assert_int_eq(x[1].r, MC_TIMEOUT);
    /* It came out when the thread got free, not when its deadline passed. */
    ck_assert_uint_ge(x[1].at_ms - t0 + 20, connect_ms);
    ck_assert(!test_raw_has(test_ports[0], k0));
    fprintf(stderr, "# queued past deadline: completed after %" PRIu64 " ms\n", x[1].at_ms - t0);

    test_res_clear(x, 2);
    mc_done_free(&d);
    mc_pool_free(&p);
    close(filler);
    close(bh);
}
END_TEST

/* A full queue refuses at once: -1, no callback, SET value freed. */
START_TEST(test_queue_full)
{
    int bh_port, filler;
    int bh = test_blackhole(&bh_port, &filler);
    int ports[2] = {test_ports[0], bh_port};
    unsigned queue = 2;
    struct mc_pool *p = test_pool(ports, 2, 1, queue, 3 * TEST_TIMEOUT_MS);
    struct mc_done *d = mc_done_new(test_base);
    enum { N = 8 };
    struct test_res x[N];
    char k0[32], kb[32];

    memset(x, 0, sizeof(x));
    test_key_on(ports, 2, 0, "full", k0, sizeof(k0));
    test_key_on(ports, 2, 1, "full", kb, sizeof(kb));

    /* The thread is stuck on the first; the queue holds `queue` more. */
    ck_assert_int_eq(mc_submit(p, d, MC_GET, kb, strlen(kb), NULL, 0, 0, test_on_result, &x[0]), 0);
    bool ok[N] = {true};
    int accepted = 1;
    for (int i = 1; i < N; i++) {
        ok[i] = mc_submit(p, d, MC_SET, k0, strlen(k0), test_dup("v", 1), 1, 0, test_on_result,
                          &x[i]) == 0;
        accepted += ok[i];
    }
    /* `queue` waiting, plus the one the thread took if it took it in time. */
    ck_assert_int_ge(accepted, (int)queue);
    ck_assert_int_le(accepted, (int)queue + 1);
    uint64_t end = util_now_ms() + 3 * TEST_TIMEOUT_MS + TEST_MARGIN_MS;
    for (int i = 0; i < N; i++)
        if (ok[i])
            ck_assert(test_wait_calls(&x[i].calls, 1, (unsigned)(end - util_now_ms())));
    test_run_for(50);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(x[i].calls, ok[i] ? 1 : 0);

    test_res_clear(x, N);
    mc_done_free(&d);
    mc_pool_free(&p);
    close(filler);
    close(bh);
}
END_TEST

/*
 * mc_done_free with operations running and queued: no callback ever, and
 * (under the sanitizers) no leak and no use after free when they finish.
 */
START_TEST(test_done_free_in_flight)
{
    struct mc_pool *p = test_pool(test_ports, 2, 2, 64, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct mc_done *d2 = mc_done_new(test_base);
    struct test_res x = {0};
    char k0[32], k1[32];

    test_key_on(test_ports, 2, 0, "dfree", k0, sizeof(k0));
    test_key_on(test_ports, 2, 1, "dfree", k1, sizeof(k1));
    ck_assert_int_eq(test_op(p, d2, MC_SET, k0, "zero", 4, &x), MC_OK);
    ck_assert_int_eq(test_op(p, d2, MC_SET, k1, "one", 3, &x), MC_OK);

    /*
     * Results of the first ten (server 1) wait in d's list, as the loop
     * does not run; both threads are then stuck on server 0; the last ten
     * wait in the queue.
     */
    test_server_stop(0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(mc_submit(p, d, i % 2 ? MC_GET : MC_SET, k1, strlen(k1),
                                   i % 2 ? NULL : test_dup("v1", 2), 2, 0, test_on_forbidden, NULL),
                         0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(
            mc_submit(p, d, MC_GET, k0, strlen(k0), NULL, 0, 0, test_on_forbidden, NULL), 0);
    test_wait_unread(test_ports[0], 1000);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(mc_submit(p, d, MC_SET, k1, strlen(k1), test_dup("v2", 2), 2, 0,
                                   test_on_forbidden, NULL),
                         0);
    mc_done_free(&d);

    /* Everything of d's finishes in a pool thread, after d is gone. */
    test_res_clear(&x, 1);
    ck_assert_int_eq(mc_submit(p, d2, MC_GET, k1, strlen(k1), NULL, 0, 0, test_on_result, &x), 0);
    ck_assert(test_wait_calls(&x.calls, 1, TEST_TIMEOUT_MS + TEST_MARGIN_MS));
    mc_pool_free(&p); /* joins: no thread holds anything of d's any more */
    test_run_for(20);
    ck_assert_int_eq(test_forbidden_calls, 0);

    test_server_cont(0);
    test_res_clear(&x, 1);
    mc_done_free(&d2);
}
END_TEST

/* A callback that frees its own mc_done: later results are dropped. */
static struct mc_done *test_self_free_done;
static int test_self_free_calls;

static void
test_on_self_free(void *arg, enum mc_result r, const char *value, size_t len)
{
    test_self_free_calls++;
    mc_done_free(&test_self_free_done);
}

START_TEST(test_done_free_in_callback)
{
    struct mc_pool *p = test_pool(test_ports, 2, 1, 64, TEST_CONNECT_MS);
    struct mc_done *d2 = mc_done_new(test_base);
    struct test_res x = {0};

    test_self_free_calls = 0;
    test_self_free_done = mc_done_new(test_base);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "self-%d", i);
        ck_assert_int_eq(mc_submit(p, test_self_free_done, i % 2 ? MC_GET : MC_SET, key,
                                   strlen(key), i % 2 ? NULL : test_dup("v", 1), 1, 0,
                                   test_on_self_free, NULL),
                         0);
    }
    /* One thread, FIFO: when this one is back, all twenty are finished. */
    ck_assert_int_eq(test_op(p, d2, MC_GET, "self-0", NULL, 0, &x), MC_OK);
    test_run_for(20);
    ck_assert_int_eq(test_self_free_calls, 1);
    ck_assert_ptr_null(test_self_free_done);

    test_res_clear(&x, 1);
    mc_done_free(&d2);
    mc_pool_free(&p);
}
END_TEST

/*
 * mc_pool_free drops what is queued (no callback, values freed) and waits
 * for the running operation, whose result still reaches its mc_done.
 */
START_TEST(test_pool_free_drops_queued)
{
    struct mc_pool *p = test_pool(test_ports, 2, 1, 64, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    struct test_res x = {0};
    char k0[32], k1[32];

    test_key_on(test_ports, 2, 0, "pfree", k0, sizeof(k0));
    test_key_on(test_ports, 2, 1, "pfree", k1, sizeof(k1));
    ck_assert_int_eq(test_op(p, d, MC_GET, k0, NULL, 0, &x), MC_NOTFOUND);
    test_res_clear(&x, 1);

    test_server_stop(0);
    ck_assert_int_eq(mc_submit(p, d, MC_GET, k0, strlen(k0), NULL, 0, 0, test_on_result, &x), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(mc_submit(p, d, MC_SET, k1, strlen(k1), test_dup("queued", 6), 6, 0,
                                   test_on_forbidden, NULL),
                         0);
    /* The thread has taken the first one once the server holds its request. */
    test_wait_unread(test_ports[0], 1000);
    uint64_t t0 = util_now_ms();
    mc_pool_free(&p);
    uint64_t took = util_now_ms() - t0;
    ck_assert_uint_le(took, TEST_TIMEOUT_MS + TEST_MARGIN_MS);

    ck_assert(test_wait_calls(&x.calls, 1, 1000));
    ck_assert_msg(x.r == MC_TIMEOUT || x.r == MC_ERROR, "result %d", x.r);
    test_run_for(20);
    ck_assert_int_eq(test_forbidden_calls, 0);
    fprintf(stderr, "# mc_pool_free with one op stuck: %" PRIu64 " ms\n", took);

    test_server_cont(0);
    ck_assert(!test_raw_has(test_ports[1], k1));
    test_res_clear(&x, 1);
    mc_done_free(&d);
}
END_TEST

/* Submitting from another thread while the base delivers. */
struct test_submitter {
    struct mc_pool *p;
    struct mc_done *d;
    struct test_res *x;
    int n;
};

static void *
test_submitter_main(void *arg)
{
    struct test_submitter *s = arg;

    for (int i = 0; i < s->n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "conc-%d", i);
        while (mc_submit(s->p, s->d, MC_SET, key, strlen(key), test_dup(key, strlen(key)),
                         strlen(key), 0, test_on_result, &s->x[i]) != 0)
            usleep(1000); /* queue full: back off */
    }
    return NULL;
}

START_TEST(test_concurrent)
{
    struct mc_pool *p = test_pool(test_ports, 2, 4, 128, TEST_CONNECT_MS);
    struct mc_done *d = mc_done_new(test_base);
    enum { N = 300 };
    static struct test_res sets[N], gets[N];
    struct test_submitter s = {.p = p, .d = d, .x = sets, .n = N};
    pthread_t tid;

    memset(sets, 0, sizeof(sets));
    memset(gets, 0, sizeof(gets));
    ck_assert_int_eq(pthread_create(&tid, NULL, test_submitter_main, &s), 0);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "conc-%d", i);
        while (mc_submit(p, d, MC_GET, key, strlen(key), NULL, 0, 0, test_on_result, &gets[i]) != 0)
            event_base_loop(test_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    ck_assert_int_eq(pthread_join(tid, NULL), 0);
    ck_assert(test_all_called(sets, N, 10000));
    ck_assert(test_all_called(gets, N, 10000));
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(sets[i].calls, 1);
        ck_assert_int_eq(sets[i].r, MC_OK);
        ck_assert_int_eq(gets[i].calls, 1);
        ck_assert(gets[i].r == MC_OK || gets[i].r == MC_NOTFOUND);
        if (gets[i].r == MC_OK) {
            char key[32];
            snprintf(key, sizeof(key), "conc-%d", i);
            ck_assert_str_eq(gets[i].value, key);
        }
    }

    test_res_clear(sets, N);
    test_res_clear(gets, N);
    mc_done_free(&d);
    mc_pool_free(&p);
}
END_TEST

static Suite *
mc_suite(void)
{
    Suite *s = suite_create("mc");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"roundtrip", test_roundtrip},
        {"notfound", test_notfound},
        {"long_exptime", test_long_exptime},
        {"bad_key", test_bad_key},
        {"bad_options", test_bad_options},
        {"spread", test_spread},
        {"too_big", test_too_big},
        {"stopped", test_stopped},
        {"killed", test_killed},
        {"blackhole_host", test_blackhole_host},
        {"queue_deadline", test_queue_deadline},
        {"queue_full", test_queue_full},
        {"done_free_in_flight", test_done_free_in_flight},
        {"done_free_in_callback", test_done_free_in_callback},
        {"pool_free_drops_queued", test_pool_free_drops_queued},
        {"concurrent", test_concurrent},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, test_setup, test_teardown);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    /* As main.c does: mc_done's event is made active from pool threads. */
    if (evthread_use_pthreads() < 0) {
        fprintf(stderr, "evthread_use_pthreads failed\n");
        return EXIT_FAILURE;
    }
    /* A server killed mid-write must not kill the test. */
    signal(SIGPIPE, SIG_IGN);

    SRunner *sr = srunner_create(mc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
