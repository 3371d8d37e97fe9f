/*
 * check_redis: the redis client against a real redis-server (Debian's
 * /usr/bin/redis-server) on free loopback ports: commands and replies
 * (binary, 1 MiB, nil, error), refusal while not up, timeouts with a
 * stopped server, reconnection after a killed one, subscribe and
 * re-subscribe, AUTH and SELECT, and freeing in every state, including
 * from inside the client's own callbacks.
 *
 * Each test drives its clients on a private event_base with a 10 ms tick,
 * so every wait is a bounded loop on a condition. Every redis-server a
 * test starts is killed in teardown, by an atexit handler when an
 * assertion ends the test early, and by PR_SET_PDEATHSIG if the test
 * process dies.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis.h"
#include "test_net.h"
#include "util.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define MAX_SERVERS 4
#define BIG (1024 * 1024)

/* Client settings for the tests: short, so failures show up fast. */
#define CONNECT_TIMEOUT_MS 300
#define TIMEOUT_MS 300
#define BACKOFF_MIN_MS 20
#define BACKOFF_MAX_MS 200
/* Allowed lateness of a timer on a loaded 2-core machine under ASan. */
#define SLACK_MS 250

struct server {
    pid_t pid;
    int port;
    const char *password;
};

/* Every server started and not yet reaped, for the atexit handler. */
static pid_t server_pids[MAX_SERVERS];

static struct event_base *base;
static struct event *tick;

/* Set around redis_client_command(): a callback seeing it ran synchronously. */
static bool in_submit;
static int sync_calls;

struct result {
    int calls;
    enum redis_client_err err;
    int type; /* reply type, -1 without a reply */
    char *str;
    size_t len;
    long long integer;
    uint64_t at_ms;
};

struct state_log {
    bool up;
    int ups;
    int downs;
    int bad; /* not alternating, or not starting with up */
};

struct msg_log {
    int n;
    char last[64];
    size_t len;
};

/* --- redis-server processes --- */

static void
server_forget(pid_t pid)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (server_pids[i] == pid)
            server_pids[i] = 0;
}

static void
server_kill_all(void)
{
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (server_pids[i] > 0) {
            kill(server_pids[i], SIGKILL);
            waitpid(server_pids[i], NULL, 0);
            server_pids[i] = 0;
        }
    }
}

static bool
port_accepts(int port)
{
    int fd = test_net_connect(port);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Starts redis-server on srv->port and waits (5 s at most) until it listens. */
static void
server_start(struct server *srv)
{
    char port[16];
    pid_t parent = getpid();
    uint64_t end;
    int slot = -1;

    for (int i = 0; i < MAX_SERVERS && slot < 0; i++)
        if (server_pids[i] == 0)
            slot = i;
    ck_assert_int_ge(slot, 0);
    snprintf(port, sizeof(port), "%d", srv->port);
    srv->pid = fork();
    ck_assert_int_ge(srv->pid, 0);
    if (srv->pid == 0) {
        char *argv[] = {"redis-server",
                        "--port",
                        port,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--requirepass",
                        (char *)srv->password,
                        NULL};
        int fd;

        if (srv->password == NULL)
            argv[9] = NULL;
        /* Die with the test, even when it dies without cleaning up. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(REDIS_SERVER, argv);
        _exit(127);
    }
    server_pids[slot] = srv->pid;
    end = util_now_ms() + 5000;
    while (!port_accepts(srv->port)) {
        ck_assert_msg(waitpid(srv->pid, NULL, WNOHANG) == 0, "redis-server exited at start");
        ck_assert_msg(util_now_ms() < end, "redis-server not listening after 5 s");
        sleep_ms(5);
    }
}

static void
server_signal(struct server *srv, int sig)
{
    ck_assert_int_gt(srv->pid, 0);
    ck_assert_int_eq(kill(srv->pid, sig), 0);
    if (sig == SIGKILL) {
        waitpid(srv->pid, NULL, 0);
        server_forget(srv->pid);
        srv->pid = 0;
    }
}

/* --- the event loop --- */

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until cond holds or ms pass; gives cond. */
#define RUN_UNTIL(cond, ms)                                                                        \
    ({                                                                                             \
        uint64_t end_ = util_now_ms() + (ms);                                                      \
        while (!(cond) && util_now_ms() < end_)                                                    \
            event_base_loop(base, EVLOOP_ONCE);                                                    \
        (bool)(cond);                                                                              \
    })

static void
run_for(unsigned ms)
{
    (void)RUN_UNTIL(false, ms);
}

static void
setup(void)
{
    struct timeval tv = {0, 10000};

    sync_calls = 0;
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    ck_assert_ptr_nonnull(tick);
    event_add(tick, &tv);
}

static void
teardown(void)
{
    server_kill_all();
    event_free(tick);
    event_base_free(base);
}

/* --- clients and callbacks --- */

static struct redis_client_opts
client_opts(int port)
{
    struct redis_client_opts o = {
        .ip = "127.0.0.1",
        .port = port,
        .connect_timeout_ms = CONNECT_TIMEOUT_MS,
        .timeout_ms = TIMEOUT_MS,
        .backoff_min_ms = BACKOFF_MIN_MS,
        .backoff_max_ms = BACKOFF_MAX_MS,
    };
    return o;
}

static void
on_state(void *arg, bool up)
{
    struct state_log *s = arg;

    if (up == s->up)
        s->bad++;
    s->up = up;
    if (up)
        s->ups++;
    else
        s->downs++;
}

static struct redis_client *
client_new(const struct redis_client_opts *o, struct state_log *s)
{
    struct redis_client *rc = redis_client_new(base, o);

    if (s != NULL)
        redis_client_on_state(rc, on_state, s);
    return rc;
}

static void
on_result(void *arg, struct redisReply *reply, enum redis_client_err err)
{
    struct result *r = arg;

    if (in_submit)
        sync_calls++;
    r->calls++;
    r->err = err;
    r->at_ms = util_now_ms();
    r->type = reply != NULL ? reply->type : -1;
    free(r->str);
    r->str = NULL;
    r->len = 0;
    if (reply != NULL && reply->str != NULL) {
        r->str = malloc(reply->len + 1);
        ck_assert_ptr_nonnull(r->str);
        memcpy(r->str, reply->str, reply->len);
        r->str[reply->len] = '\0';
        r->len = reply->len;
    }
    r->integer = reply != NULL ? reply->integer : 0;
}

static void
result_clear(struct result *r)
{
    free(r->str);
    memset(r, 0, sizeof(*r));
}

static int
submit(struct redis_client *rc, struct result *r, int argc, const char **argv,
       const size_t *argvlen)
{
    int ret;

    in_submit = true;
    ret = redis_client_command(rc, on_result, r, argc, argv, argvlen);
    in_submit = false;
    return ret;
}

/* A command of C strings, e.g. submitv(rc, &r, "GET", "k", NULL). */
static int
submitv(struct redis_client *rc, struct result *r, ...)
{
    const char *argv[8];
    size_t argvlen[8];
    int argc = 0;
    va_list ap;

    va_start(ap, r);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL; argc++) {
        ck_assert_int_lt(argc, 8);
        argv[argc] = s;
        argvlen[argc] = strlen(s);
    }
    va_end(ap);
    return submit(rc, r, argc, argv, argvlen);
}

/* Runs one command to completion (3 s at most); checks its callback ran once. */
static void
roundtrip(struct redis_client *rc, struct result *r, int argc, const char **argv,
          const size_t *argvlen)
{
    result_clear(r);
    ck_assert_int_eq(submit(rc, r, argc, argv, argvlen), 0);
    ck_assert_int_eq(r->calls, 0);
    ck_assert(RUN_UNTIL(r->calls > 0, 3000));
    ck_assert_int_eq(r->calls, 1);
}

#define ROUNDTRIPV(rc, r, ...)                                                                     \
    do {                                                                                           \
        result_clear(r);                                                                           \
        ck_assert_int_eq(submitv((rc), (r), __VA_ARGS__, NULL), 0);                                \
        ck_assert_int_eq((r)->calls, 0);                                                           \
        ck_assert(RUN_UNTIL((r)->calls > 0, 3000));                                                \
        ck_assert_int_eq((r)->calls, 1);                                                           \
    } while (0)

static void
on_msg(void *arg, const char *data, size_t len)
{
    struct msg_log *m = arg;

    m->n++;
    m->len = len < sizeof(m->last) ? len : sizeof(m->last);
    memcpy(m->last, data, m->len);
}

/* --- tests --- */

START_TEST(test_set_get)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o;
    struct redis_client *rc;
    struct state_log st = {0};
    struct result r = {0};
    static const char bin[] = "a\0b\r\n\0c";
    char *big = malloc(BIG);
    const char *argv[3];
    size_t argvlen[3];

    ck_assert_ptr_nonnull(big);
    server_start(&srv);
    o = client_opts(srv.port);
    rc = client_new(&o, &st);
    ck_assert(RUN_UNTIL(redis_client_up(rc), 3000));
    ck_assert_int_eq(st.ups, 1);

    /* A binary key and value, NULs and CRLF included. */
    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = bin;
    argvlen[1] = sizeof(bin) - 1;
    argv[2] = bin;
    argvlen[2] = sizeof(bin) - 1;
    roundtrip(rc, &r, 3, argv, argvlen);
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ck_assert_int_eq(r.type, REDIS_REPLY_STATUS);
    ck_assert_str_eq(r.str, "OK");
    argv[0] = "GET";
    roundtrip(rc, &r, 2, argv, argvlen);
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ck_assert_int_eq(r.type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(r.len, sizeof(bin) - 1);
    ck_assert(memcmp(r.str, bin, r.len) == 0);

    /* 1 MiB, every byte value. */
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)(i * 7 + i / 251);
    argv[0] = "SET";
    argv[1] = "big";
    argvlen[1] = 3;
    argv[2] = big;
    argvlen[2] = BIG;
    roundtrip(rc, &r, 3, argv, argvlen);
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    argv[0] = "GET";
    roundtrip(rc, &r, 2, argv, argvlen);
    ck_assert_int_eq(r.type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(r.len, BIG);
    ck_assert(memcmp(r.str, big, BIG) == 0);

    /* A missing key is a nil reply, not an error. */
    ROUNDTRIPV(rc, &r, "GET", "no-such-key");
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ck_assert_int_eq(r.type, REDIS_REPLY_NIL);

    /* Pipelined: answers in order, each callback once. */
    struct result many[20] = {{0}};
    char val[20][8];
    for (int i = 0; i < 20; i++) {
        snprintf(val[i], sizeof(val[i]), "v%d", i);
        ck_assert_int_eq(submitv(rc, &many[i], "ECHO", val[i], NULL), 0);
    }
    ck_assert_uint_eq(redis_client_pending(rc), 20);
    ck_assert(RUN_UNTIL(many[19].calls > 0, 3000));
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(many[i].calls, 1);
        ck_assert_str_eq(many[i].str, val[i]);
        ck_assert(i == 0 || many[i].at_ms >= many[i - 1].at_ms);
        result_clear(&many[i]);
    }
    ck_assert_uint_eq(redis_client_pending(rc), 0);

    redis_client_free(&rc);
    ck_assert_ptr_null(rc);
    redis_client_free(&rc); /* accepts NULL */
    ck_assert_int_eq(st.downs, 0);
    ck_assert_int_eq(st.bad, 0);
    ck_assert_int_eq(sync_calls, 0);
    result_clear(&r);
    free(big);
}
END_TEST

START_TEST(test_error_reply)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o;
    struct redis_client *rc;
    struct result r = {0};

    server_start(&srv);
    o = client_opts(srv.port);
    rc = client_new(&o, NULL);
    ck_assert(RUN_UNTIL(redis_client_up(rc), 3000));

    ROUNDTRIPV(rc, &r, "SET", "s", "not a number");
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ROUNDTRIPV(rc, &r, "INCR", "s");
    ck_assert_int_eq(r.err, REDIS_CLIENT_EREPLY);
    ck_assert_int_eq(r.type, REDIS_REPLY_ERROR);
    ck_assert_ptr_nonnull(strstr(r.str, "not an integer"));
    ROUNDTRIPV(rc, &r, "NOSUCHCOMMAND", "x");
    ck_assert_int_eq(r.err, REDIS_CLIENT_EREPLY);
    ck_assert_int_eq(r.type, REDIS_REPLY_ERROR);

    /* An error answer leaves the connection usable. */
    ck_assert(redis_client_up(rc));
    ROUNDTRIPV(rc, &r, "INCR", "n");
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ck_assert_int_eq(r.type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r.integer, 1);

    /* Refused without a callback: argc < 1, and a NULL cb is fine. */
    ck_assert_int_eq(redis_client_command(rc, on_result, &r, 0, NULL, NULL), -1);
    ck_assert_int_eq(
        redis_client_command(rc, NULL, NULL, 1, (const char *[]){"PING"}, (const size_t[]){4}), 0);
    ck_assert(RUN_UNTIL(redis_client_pending(rc) == 0, 3000));

    redis_client_free(&rc);
    ck_assert_int_eq(sync_calls, 0);
    result_clear(&r);
}
END_TEST

START_TEST(test_refused_until_up)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o = client_opts(srv.port);
    struct redis_client *rc;
    struct state_log st = {0};
    struct result r = {0};
    uint64_t t0;

    /* Nothing listens: the client retries in the background. */
    rc = client_new(&o, &st);
    ck_assert(!redis_client_up(rc));
    ck_assert_int_eq(submitv(rc, &r, "PING", NULL), -1);
    run_for(300);
    ck_assert(!redis_client_up(rc));
    ck_assert_int_eq(submitv(rc, &r, "PING", NULL), -1);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_int_eq(st.ups + st.downs, 0);

    /* The backoff has reached its maximum by now: up within that. */
    server_start(&srv);
    t0 = util_now_ms();
    ck_assert(RUN_UNTIL(redis_client_up(rc), BACKOFF_MAX_MS + CONNECT_TIMEOUT_MS + SLACK_MS));
    ck_assert_uint_le(util_now_ms() - t0, BACKOFF_MAX_MS + CONNECT_TIMEOUT_MS + SLACK_MS);
    ck_assert_int_eq(st.ups, 1);
    ROUNDTRIPV(rc, &r, "PING");
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ck_assert_str_eq(r.str, "PONG");
    ck_assert_int_eq(r.calls, 1);

    redis_client_free(&rc);
    ck_assert_int_eq(sync_calls, 0);
    result_clear(&r);
}
END_TEST

START_TEST(test_timeout_stopped_server)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o;
    struct redis_client *rc;
    struct state_log st = {0};
    struct result r[3] = {{0}}, late = {0};
    uint64_t t[3];

    server_start(&srv);
    o = client_opts(srv.port);
    rc = client_new(&o, &st);
    ck_assert(RUN_UNTIL(redis_client_up(rc), 3000));

    server_signal(&srv, SIGSTOP);
    for (int i = 0; i < 3; i++) {
        t[i] = util_now_ms();
        ck_assert_int_eq(submitv(rc, &r[i], "GET", "k", NULL), 0);
        run_for(20);
    }
    ck_assert_uint_eq(redis_client_pending(rc), 3);
    ck_assert(RUN_UNTIL(r[0].calls > 0, TIMEOUT_MS + SLACK_MS + 1000));
    /* The oldest deadline fails them all at once. */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].err, REDIS_CLIENT_ETIMEOUT);
        ck_assert_int_eq(r[i].type, -1);
    }
    ck_assert_uint_ge(r[0].at_ms - t[0], TIMEOUT_MS);
    ck_assert_uint_le(r[0].at_ms - t[0], TIMEOUT_MS + SLACK_MS);
    ck_assert_uint_eq(redis_client_pending(rc), 0);
    ck_assert(!redis_client_up(rc));
    ck_assert_int_eq(st.downs, 1);

    /* Down: refused at once. TCP still connects to the stopped server, but
     * it never answers PING, so the client must not come up. */
    ck_assert_int_eq(submitv(rc, &late, "GET", "k", NULL), -1);
    run_for(CONNECT_TIMEOUT_MS * 2 + BACKOFF_MAX_MS);
    ck_assert(!redis_client_up(rc));
    ck_assert_int_eq(submitv(rc, &late, "GET", "k", NULL), -1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(r[i].calls, 1);
    ck_assert_int_eq(late.calls, 0);

    /* Resumed: back up by itself within a connect timeout and a backoff. */
    server_signal(&srv, SIGCONT);
    ck_assert(RUN_UNTIL(redis_client_up(rc), CONNECT_TIMEOUT_MS + BACKOFF_MAX_MS + SLACK_MS));
    ck_assert_int_eq(st.ups, 2);
    ROUNDTRIPV(rc, &late, "PING");
    ck_assert_int_eq(late.err, REDIS_CLIENT_OK);

    redis_client_free(&rc);
    ck_assert_int_eq(st.bad, 0);
    ck_assert_int_eq(sync_calls, 0);
    for (int i = 0; i < 3; i++)
        result_clear(&r[i]);
    result_clear(&late);
}
END_TEST

START_TEST(test_killed_server)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o;
    struct redis_client *rc;
    struct state_log st = {0};
    struct result blocked = {0}, r = {0};
    uint64_t t0;

    server_start(&srv);
    o = client_opts(srv.port);
    o.timeout_ms = 5000; /* the failure must come from the connection */
    rc = client_new(&o, &st);
    ck_assert(RUN_UNTIL(redis_client_up(rc), 3000));

    /* A command the server holds until it dies. */
    ck_assert_int_eq(submitv(rc, &blocked, "BLPOP", "list", "0", NULL), 0);
    run_for(100);
    ck_assert_int_eq(blocked.calls, 0);
    server_signal(&srv, SIGKILL);
    ck_assert(RUN_UNTIL(blocked.calls > 0, 2000));
    ck_assert_int_eq(blocked.calls, 1);
    ck_assert_int_eq(blocked.err, REDIS_CLIENT_EIO);
    ck_assert(RUN_UNTIL(st.downs == 1, 1000));
    ck_assert(!redis_client_up(rc));
    ck_assert_int_eq(submitv(rc, &r, "PING", NULL), -1);

    /* Let the backoff grow to its maximum, then restart on the same port. */
    run_for(BACKOFF_MAX_MS * 3);
    ck_assert(!redis_client_up(rc));
    server_start(&srv);
    t0 = util_now_ms();
    ck_assert(RUN_UNTIL(redis_client_up(rc), BACKOFF_MAX_MS + SLACK_MS));
    ck_assert_uint_le(util_now_ms() - t0, BACKOFF_MAX_MS + SLACK_MS);
    ck_assert_int_eq(st.ups, 2);
    ROUNDTRIPV(rc, &r, "PING");
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ck_assert_int_eq(blocked.calls, 1);

    redis_client_free(&rc);
    ck_assert_int_eq(st.bad, 0);
    ck_assert_int_eq(sync_calls, 0);
    result_clear(&blocked);
    result_clear(&r);
}
END_TEST

static void
publish(struct redis_client *pub, const char *channel, const char *data, size_t len,
        long long receivers)
{
    const char *argv[] = {"PUBLISH", channel, data};
    size_t argvlen[] = {7, strlen(channel), len};
    struct result r = {0};

    roundtrip(pub, &r, 3, argv, argvlen);
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ck_assert_int_eq(r.type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r.integer, receivers);
    result_clear(&r);
}

static void
on_numsub(void *arg, struct redisReply *reply, enum redis_client_err err)
{
    long long *n = arg;

    /* ["channel", count] */
    if (err == REDIS_CLIENT_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_INTEGER)
        *n = reply->element[1]->integer;
    else
        *n = -2;
}

/* PUBSUB NUMSUB: how many clients the server has subscribed to channel. */
static long long
subscribers(struct redis_client *pub, const char *channel)
{
    const char *argv[] = {"PUBSUB", "NUMSUB", channel};
    size_t argvlen[] = {6, 6, strlen(channel)};
    long long n = -1;

    ck_assert_int_eq(redis_client_command(pub, on_numsub, &n, 3, argv, argvlen), 0);
    ck_assert(RUN_UNTIL(n != -1, 3000));
    ck_assert_int_ge(n, 0);
    return n;
}

START_TEST(test_subscribe)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o;
    struct redis_client *pub, *sub, *late;
    struct state_log pub_st = {0}, sub_st = {0};
    struct msg_log m = {0}, late_m = {0};
    struct result r = {0};
    static const char data[] = "inval\0/a/b";

    server_start(&srv);
    o = client_opts(srv.port);
    pub = client_new(&o, &pub_st);
    sub = client_new(&o, &sub_st);
    ck_assert_int_eq(redis_client_subscribe(sub, "tc-inval", on_msg, &m), 0);
    ck_assert_int_eq(redis_client_subscribe(sub, "other", on_msg, &m), -1);
    ck_assert(RUN_UNTIL(redis_client_up(pub) && redis_client_up(sub), 3000));
    ck_assert_int_eq(submitv(sub, &r, "PING", NULL), -1);

    publish(pub, "tc-inval", data, sizeof(data) - 1, 1);
    ck_assert(RUN_UNTIL(m.n == 1, 2000));
    ck_assert_uint_eq(m.len, sizeof(data) - 1);
    ck_assert(memcmp(m.last, data, m.len) == 0);

    /* A client already up in command mode turns into a subscriber. */
    late = client_new(&o, NULL);
    ck_assert(RUN_UNTIL(redis_client_up(late), 3000));
    ck_assert_int_eq(redis_client_subscribe(late, "tc-inval", on_msg, &late_m), 0);
    ck_assert_int_eq(submitv(late, &r, "PING", NULL), -1);
    ck_assert(RUN_UNTIL(subscribers(pub, "tc-inval") == 2, 2000));
    publish(pub, "tc-inval", "two", 3, 2);
    ck_assert(RUN_UNTIL(m.n == 2 && late_m.n == 1, 2000));

    /* Killed and restarted: both subscribers subscribe again by themselves. */
    server_signal(&srv, SIGKILL);
    ck_assert(RUN_UNTIL(sub_st.downs == 1 && pub_st.downs == 1 && !redis_client_up(late), 2000));
    server_start(&srv);
    ck_assert(RUN_UNTIL(redis_client_up(pub) && redis_client_up(sub) && redis_client_up(late),
                        BACKOFF_MAX_MS + CONNECT_TIMEOUT_MS + SLACK_MS));
    publish(pub, "tc-inval", "three", 5, 2);
    ck_assert(RUN_UNTIL(m.n == 3 && late_m.n == 2, 2000));
    ck_assert_uint_eq(m.len, 5);
    ck_assert(memcmp(m.last, "three", 5) == 0);

    redis_client_free(&late);
    redis_client_free(&sub);
    redis_client_free(&pub);
    ck_assert_int_eq(sub_st.ups, 2);
    ck_assert_int_eq(sub_st.bad + pub_st.bad, 0);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_int_eq(sync_calls, 0);
}
END_TEST

START_TEST(test_auth_select)
{
    struct server srv = {.port = test_net_free_port(), .password = "s3cret pass"};
    struct redis_client_opts o;
    struct redis_client *good, *db3, *wrong, *none, *bad_db;
    struct state_log good_st = {0}, wrong_st = {0}, none_st = {0}, bad_db_st = {0};
    struct result r = {0};

    server_start(&srv);
    o = client_opts(srv.port);
    o.password = "s3cret pass";
    good = client_new(&o, &good_st);
    o.db = 3;
    db3 = client_new(&o, NULL);
    o.db = 99; /* SELECT fails: 16 databases */
    bad_db = client_new(&o, &bad_db_st);
    o.db = 0;
    o.password = "wrong";
    wrong = client_new(&o, &wrong_st);
    o.password = NULL;
    none = client_new(&o, &none_st);

    ck_assert(RUN_UNTIL(redis_client_up(good) && redis_client_up(db3), 3000));
    ROUNDTRIPV(db3, &r, "SET", "where", "db3");
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ROUNDTRIPV(db3, &r, "GET", "where");
    ck_assert_str_eq(r.str, "db3");
    ROUNDTRIPV(good, &r, "GET", "where");
    ck_assert_int_eq(r.err, REDIS_CLIENT_OK);
    ck_assert_int_eq(r.type, REDIS_REPLY_NIL);

    /* A wrong password, no password and a bad db never come up: retried. */
    run_for(BACKOFF_MAX_MS * 3);
    ck_assert(!redis_client_up(wrong));
    ck_assert(!redis_client_up(none));
    ck_assert(!redis_client_up(bad_db));
    ck_assert_int_eq(wrong_st.ups + wrong_st.downs + none_st.ups + none_st.downs, 0);
    ck_assert_int_eq(bad_db_st.ups + bad_db_st.downs, 0);
    ck_assert_int_eq(submitv(wrong, &r, "PING", NULL), -1);

    redis_client_free(&bad_db);
    redis_client_free(&none);
    redis_client_free(&wrong);
    redis_client_free(&db3);
    redis_client_free(&good);
    ck_assert_int_eq(sync_calls, 0);
    result_clear(&r);
}
END_TEST

START_TEST(test_free_pending)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o;
    struct redis_client *rc;
    struct state_log st = {0};
    struct result r[5] = {{0}};

    server_start(&srv);
    o = client_opts(srv.port);
    o.timeout_ms = 5000;
    rc = client_new(&o, &st);
    ck_assert(RUN_UNTIL(redis_client_up(rc), 3000));

    server_signal(&srv, SIGSTOP);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(submitv(rc, &r[i], "SET", "k", "v", NULL), 0);
    run_for(50);
    ck_assert_uint_eq(redis_client_pending(rc), 5);
    redis_client_free(&rc);
    ck_assert_ptr_null(rc);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].err, REDIS_CLIENT_ECLOSED);
        ck_assert_int_eq(r[i].type, -1);
    }
    /* Nothing may call back after free, even once the server answers. */
    server_signal(&srv, SIGCONT);
    run_for(200);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(r[i].calls, 1);
    ck_assert_int_eq(st.downs, 0);
    ck_assert_int_eq(sync_calls, 0);
}
END_TEST

/* A callback that frees the client it belongs to, then records its call. */
struct freeing {
    struct redis_client *rc;
    struct result r;
};

static void
on_result_free(void *arg, struct redisReply *reply, enum redis_client_err err)
{
    struct freeing *f = arg;

    on_result(&f->r, reply, err);
    redis_client_free(&f->rc);
}

static void
on_state_free(void *arg, bool up)
{
    struct freeing *f = arg;

    f->r.calls++;
    redis_client_free(&f->rc);
}

START_TEST(test_free_in_callbacks)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o;
    struct freeing f = {0}, g = {0}, h = {0}, k = {0};
    struct result r[4] = {{0}};

    server_start(&srv);
    o = client_opts(srv.port);
    o.timeout_ms = 5000;

    /* From a reply callback, inside hiredis: the commands behind it (held
     * up by BLPOP) fail with ECLOSED inside the free. */
    f.rc = client_new(&o, NULL);
    ck_assert(RUN_UNTIL(redis_client_up(f.rc), 3000));
    ck_assert_int_eq(redis_client_command(f.rc, on_result_free, &f, 1, (const char *[]){"PING"},
                                          (const size_t[]){4}),
                     0);
    ck_assert_int_eq(submitv(f.rc, &r[0], "BLPOP", "list", "0", NULL), 0);
    ck_assert_int_eq(submitv(f.rc, &r[1], "GET", "k", NULL), 0);
    ck_assert(RUN_UNTIL(f.r.calls > 0, 3000));
    ck_assert_ptr_null(f.rc);
    ck_assert_int_eq(f.r.err, REDIS_CLIENT_OK);
    ck_assert_int_eq(r[0].calls, 1);
    ck_assert_int_eq(r[0].err, REDIS_CLIENT_ECLOSED);
    ck_assert_int_eq(r[1].calls, 1);
    ck_assert_int_eq(r[1].err, REDIS_CLIENT_ECLOSED);

    /* From the state callback, when the client comes up. */
    g.rc = client_new(&o, NULL);
    redis_client_on_state(g.rc, on_state_free, &g);
    ck_assert(RUN_UNTIL(g.rc == NULL, 3000));
    ck_assert_int_eq(g.r.calls, 1);

    /* From a timeout callback, outside hiredis: the other pending command
     * completes once, with ECLOSED. */
    o.timeout_ms = TIMEOUT_MS;
    h.rc = client_new(&o, NULL);
    ck_assert(RUN_UNTIL(redis_client_up(h.rc), 3000));
    server_signal(&srv, SIGSTOP);
    ck_assert_int_eq(redis_client_command(h.rc, on_result_free, &h, 1, (const char *[]){"PING"},
                                          (const size_t[]){4}),
                     0);
    ck_assert_int_eq(submitv(h.rc, &r[2], "PING", NULL), 0);
    ck_assert(RUN_UNTIL(h.r.calls > 0, TIMEOUT_MS + SLACK_MS + 1000));
    ck_assert_ptr_null(h.rc);
    ck_assert_int_eq(h.r.err, REDIS_CLIENT_ETIMEOUT);
    ck_assert_int_eq(r[2].calls, 1);
    ck_assert_int_eq(r[2].err, REDIS_CLIENT_ECLOSED);
    server_signal(&srv, SIGCONT);
    run_for(100);
    ck_assert_int_eq(h.r.calls, 1);
    ck_assert_int_eq(r[2].calls, 1);

    /* From an EIO callback, reported from the deferred event after hiredis
     * tore the connection down: the command behind it gets ECLOSED. */
    k.rc = client_new(&o, NULL);
    ck_assert(RUN_UNTIL(redis_client_up(k.rc), 3000));
    ck_assert_int_eq(redis_client_command(k.rc, on_result_free, &k, 3,
                                          (const char *[]){"BLPOP", "list", "0"},
                                          (const size_t[]){5, 4, 1}),
                     0);
    ck_assert_int_eq(submitv(k.rc, &r[3], "PING", NULL), 0);
    run_for(50);
    server_signal(&srv, SIGKILL);
    ck_assert(RUN_UNTIL(k.r.calls > 0, 2000));
    ck_assert_ptr_null(k.rc);
    ck_assert_int_eq(k.r.err, REDIS_CLIENT_EIO);
    ck_assert_int_eq(r[3].calls, 1);
    ck_assert_int_eq(r[3].err, REDIS_CLIENT_ECLOSED);

    ck_assert_int_eq(sync_calls, 0);
    result_clear(&f.r);
    result_clear(&h.r);
    result_clear(&k.r);
    for (int i = 0; i < 4; i++)
        result_clear(&r[i]);
}
END_TEST

START_TEST(test_free_any_state)
{
    struct server srv = {.port = test_net_free_port()};
    struct redis_client_opts o = client_opts(srv.port);
    struct redis_client *rc;

    /* In backoff: nothing listens yet. */
    rc = client_new(&o, NULL);
    run_for(50);
    ck_assert(!redis_client_up(rc));
    redis_client_free(&rc);

    /* Connecting: freed before the loop ever ran. */
    server_start(&srv);
    rc = client_new(&o, NULL);
    redis_client_free(&rc);

    /* Connected, handshake in flight (the server stopped). */
    server_signal(&srv, SIGSTOP);
    rc = client_new(&o, NULL);
    run_for(50);
    ck_assert(!redis_client_up(rc));
    redis_client_free(&rc);
    server_signal(&srv, SIGCONT);

    /* Down with failures still to report: freed right after the loss. */
    rc = client_new(&o, NULL);
    ck_assert(RUN_UNTIL(redis_client_up(rc), 3000));
    struct result r = {0};
    ck_assert_int_eq(submitv(rc, &r, "BLPOP", "list", "0", NULL), 0);
    run_for(50);
    server_signal(&srv, SIGKILL);
    ck_assert(RUN_UNTIL(!redis_client_up(rc) || r.calls > 0, 2000));
    redis_client_free(&rc);
    ck_assert_int_eq(r.calls, 1);

    /* An address that is not numeric never connects (and never resolves). */
    o.ip = "localhost";
    rc = client_new(&o, NULL);
    run_for(100);
    ck_assert(!redis_client_up(rc));
    redis_client_free(&rc);
    ck_assert_int_eq(sync_calls, 0);
    result_clear(&r);
}
END_TEST

static Suite *
redis_suite(void)
{
    Suite *s = suite_create("redis");
    const struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"set_get", test_set_get},
        {"error_reply", test_error_reply},
        {"refused_until_up", test_refused_until_up},
        {"timeout_stopped_server", test_timeout_stopped_server},
        {"killed_server", test_killed_server},
        {"subscribe", test_subscribe},
        {"auth_select", test_auth_select},
        {"free_pending", test_free_pending},
        {"free_in_callbacks", test_free_in_callbacks},
        {"free_any_state", test_free_any_state},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int
main(void)
{
    SRunner *sr;
    int failed;

    if (access(REDIS_SERVER, X_OK) != 0) {
        fprintf(stderr, "check_redis: %s is missing (apt-get install redis-server)\n",
                REDIS_SERVER);
        return EXIT_FAILURE;
    }
    /* A failed assertion ends a forked test with exit(): kill its servers. */
    atexit(server_kill_all);
    signal(SIGPIPE, SIG_IGN);
    sr = srunner_create(redis_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
