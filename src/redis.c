/*
 * redis: see redis.h.
 *
 * One redisAsyncContext at a time (rc->ac), NULL in backoff. While a
 * context is the client's current one its data field points back at the
 * client; the client clears it the moment it lets go of the context
 * ("detaches" it). Every hiredis callback therefore starts by reading
 * ac->data: NULL means hiredis is tearing down a context the client no
 * longer owns, and the callback must not act. hiredis keeps the context
 * alive while it runs our callbacks, so that read is always safe, even
 * after the client itself was freed.
 *
 * A command record (struct redis_cmd) has two owners, one flag each:
 * "queued" while the client owes the user callback (the record is on
 * rc->pending or rc->failed), "registered" while hiredis holds it as
 * privdata (hiredis calls redis_on_reply() exactly once, with the reply or
 * with NULL when the context goes away). Whoever clears the last flag
 * frees the record.
 *
 * hiredis 0.14 defers redisAsyncFree() while one of its reply callbacks
 * runs (REDIS_IN_CALLBACK), but not in its connect and disconnect
 * callbacks, after which it frees the context itself. So: the client may
 * free its context from a reply callback (hiredis finishes the job when
 * the callback returns), from a timer, or from a user call; a context that
 * dies on hiredis's side (I/O error, EOF, refused connect) is only
 * detached, never freed by us.
 *
 * User code never runs inside hiredis's teardown of a context: when a
 * connection dies on hiredis's side the pending commands move to
 * rc->failed and the failures and the "down" state change are reported
 * from ev_defer, an event made active. This is also why no callback can
 * run inside redis_client_command(), even if hiredis failed a context
 * synchronously there.
 *
 * A user callback may free the client. rc->busy counts the user calls in
 * progress (and redis_client_free() itself); redis_client_free() tears
 * down everything but the struct, and the outermost frame releases it on
 * its way out (redis_leave() returns false: touch nothing more).
 */
#include "redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "util.h"

#define REDIS_STATE_TABLE(X)                                                                       \
    X(INIT, "init")             /* inside redis_client_new() */                                    \
    X(CONNECTING, "connecting") /* connect, AUTH, SELECT, PING or SUBSCRIBE in flight */           \
    X(UP, "up")                 /* the server answered the handshake */                            \
    X(BACKOFF, "backoff")       /* no connection; ev_conn reconnects */                            \
    X(CLOSED, "closed")         /* redis_client_free() was called */

enum redis_state {
#define X(name, text) REDIS_STATE_##name,
    REDIS_STATE_TABLE(X)
#undef X
};

static const char *const redis_state_names[] = {
#define X(name, text) text,
    REDIS_STATE_TABLE(X)
#undef X
};

/* Why a connection failed, so each kind is logged once until the next up. */
enum redis_fail {
    REDIS_FAIL_NONE,
    REDIS_FAIL_ADDR,    /* not a numeric IP: never connects */
    REDIS_FAIL_CONNECT, /* refused, reset, closed */
    REDIS_FAIL_TIMEOUT, /* no answer in time */
    REDIS_FAIL_AUTH,
    REDIS_FAIL_SELECT,
    REDIS_FAIL_PING, /* an error answer to PING or SUBSCRIBE (LOADING, NOAUTH...) */
};

/* The handshake steps, passed to hiredis as privdata (never dereferenced). */
enum redis_step {
    REDIS_STEP_AUTH = 1,
    REDIS_STEP_SELECT,
    REDIS_STEP_PING,
};

TAILQ_HEAD(redis_cmd_list, redis_cmd);

struct redis_cmd {
    TAILQ_ENTRY(redis_cmd) link;
    redis_client_cb cb;
    void *arg;
    uint64_t deadline_ms;
    enum redis_client_err err; /* OK on rc->pending; the failure to report on rc->failed */
    bool queued;
    bool registered;
};

struct redis_client {
    struct event_base *base;
    char *ip;
    int port;
    char *password;
    unsigned db;
    unsigned connect_timeout_ms;
    unsigned timeout_ms;
    unsigned backoff_min_ms;
    unsigned backoff_max_ms;
    char *name;
    bool addr_ok;

    enum redis_state state;
    redisAsyncContext *ac;
    unsigned backoff_ms; /* the next reconnect delay */
    enum redis_fail last_fail;

    struct event *ev_conn;     /* CONNECTING: connect timeout; BACKOFF: reconnect */
    struct event *ev_deadline; /* at or before the oldest pending command's deadline */
    struct event *ev_defer;    /* reports what redis_went_down() left owed */

    struct redis_cmd_list pending; /* sent on rc->ac, oldest first: Redis answers in order */
    struct redis_cmd_list failed;  /* failed with cmd->err, callback not run yet */
    size_t npending;               /* callbacks owed: pending + failed */
    bool down_owed;                /* the state callback owes a "down" */
    bool submitting;               /* inside redisAsyncCommandArgv() for a user command */

    char *channel; /* subscriber mode when set */
    redis_client_msg_cb msg_cb;
    void *msg_arg;
    redis_client_state_cb state_cb;
    void *state_arg;

    unsigned busy; /* user calls in progress, and redis_client_free() */
    bool closing;
};

static void redis_connect(struct redis_client *rc);

static bool
redis_state_legal(enum redis_state from, enum redis_state to)
{
    switch (to) {
    case REDIS_STATE_INIT:
        return false;
    case REDIS_STATE_CONNECTING:
        return from == REDIS_STATE_INIT || from == REDIS_STATE_BACKOFF;
    case REDIS_STATE_UP:
        return from == REDIS_STATE_CONNECTING;
    case REDIS_STATE_BACKOFF:
        return from == REDIS_STATE_INIT || from == REDIS_STATE_CONNECTING || from == REDIS_STATE_UP;
    case REDIS_STATE_CLOSED:
        return from != REDIS_STATE_CLOSED;
    }
    return false;
}

static void
redis_set_state(struct redis_client *rc, enum redis_state to)
{
    if (!redis_state_legal(rc->state, to)) {
        log_err("%s: illegal state change %s -> %s", rc->name, redis_state_names[rc->state],
                redis_state_names[to]);
        UTIL_ASSERT(!"illegal redis client state change");
    }
    rc->state = to;
}

static void
redis_timer_add(struct event *ev, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    /* Fails only when libevent cannot grow its timer heap. */
    if (event_add(ev, &tv) != 0)
        fatal("redis: cannot arm a timer");
}

static void
redis_release(struct redis_client *rc)
{
    UTIL_ASSERT(rc->ac == NULL && rc->npending == 0);
    UTIL_ASSERT(TAILQ_EMPTY(&rc->pending) && TAILQ_EMPTY(&rc->failed));
    event_free(rc->ev_conn);
    event_free(rc->ev_deadline);
    event_free(rc->ev_defer);
    free(rc->ip);
    free(rc->password);
    free(rc->name);
    free(rc->channel);
    free(rc);
}

static void
redis_enter(struct redis_client *rc)
{
    rc->busy++;
}

/* Returns false when the client was freed meanwhile: the caller must not
 * touch rc any more (the last one out released it). */
static bool
redis_leave(struct redis_client *rc)
{
    UTIL_ASSERT(rc->busy > 0);
    rc->busy--;
    if (!rc->closing)
        return true;
    if (rc->busy == 0)
        redis_release(rc);
    return false;
}

/* Logs a connection failure, each kind once until the client is up. */
static void
redis_log_fail(struct redis_client *rc, enum redis_fail kind, const char *what, const char *why)
{
    bool again = rc->last_fail == kind;

    rc->last_fail = kind;
    if (again)
        log_debug("%s: %s (%s)", rc->name, what, why);
    else if (kind == REDIS_FAIL_AUTH || kind == REDIS_FAIL_SELECT || kind == REDIS_FAIL_ADDR)
        log_err("%s: %s (%s)", rc->name, what, why);
    else
        log_warn("%s: %s (%s); retrying", rc->name, what, why);
}

/*
 * Lets go of the current connection. hiredis_frees: the callback comes
 * from hiredis tearing the context down, which must not be freed twice.
 * Otherwise the context is freed at once, or by hiredis when its reply
 * callback in progress returns; either way our callbacks it still holds
 * see a detached context and only drop their records.
 */
static void
redis_detach(struct redis_client *rc, bool hiredis_frees)
{
    redisAsyncContext *ac = rc->ac;

    if (ac == NULL)
        return;
    rc->ac = NULL;
    ac->data = NULL;
    if (!hiredis_frees)
        redisAsyncFree(ac);
}

/* Runs cmd's callback, the client's last duty to it; cmd is already off
 * its list. Returns false when the callback freed the client. */
static bool
redis_cmd_complete(struct redis_client *rc, struct redis_cmd *cmd, redisReply *reply,
                   enum redis_client_err err)
{
    redis_client_cb cb = cmd->cb;
    void *arg = cmd->arg;

    cmd->queued = false;
    rc->npending--;
    if (!cmd->registered)
        free(cmd);
    if (cb == NULL)
        return !rc->closing;
    redis_enter(rc);
    cb(arg, reply, err);
    return redis_leave(rc);
}

static void
redis_fail_pending(struct redis_client *rc, enum redis_client_err err)
{
    struct redis_cmd *cmd;

    while ((cmd = TAILQ_FIRST(&rc->pending)) != NULL) {
        TAILQ_REMOVE(&rc->pending, cmd, link);
        cmd->err = err;
        TAILQ_INSERT_TAIL(&rc->failed, cmd, link);
    }
    event_del(rc->ev_deadline);
}

/* Reports what redis_went_down() left owed: failed commands, then the
 * "down" state change. Returns false when a callback freed the client. */
static bool
redis_report(struct redis_client *rc)
{
    struct redis_cmd *cmd;

    while ((cmd = TAILQ_FIRST(&rc->failed)) != NULL) {
        TAILQ_REMOVE(&rc->failed, cmd, link);
        if (!redis_cmd_complete(rc, cmd, NULL, cmd->err))
            return false;
    }
    if (rc->down_owed) {
        rc->down_owed = false;
        if (rc->state_cb != NULL) {
            redis_enter(rc);
            rc->state_cb(rc->state_arg, false);
            return redis_leave(rc);
        }
    }
    return true;
}

static void
redis_retry_later(struct redis_client *rc)
{
    unsigned delay = rc->backoff_ms;

    redis_timer_add(rc->ev_conn, delay);
    rc->backoff_ms = delay > rc->backoff_max_ms / 2 ? rc->backoff_max_ms : delay * 2;
}

/*
 * The current connection is gone (already detached): schedule a reconnect.
 * From UP, the pending commands fail with err and the state callback owes
 * a "down"; both are reported from ev_defer, or by the caller at once when
 * it runs outside hiredis (redis_report()).
 */
static void
redis_went_down(struct redis_client *rc, enum redis_client_err err)
{
    UTIL_ASSERT(rc->ac == NULL);
    if (rc->state == REDIS_STATE_UP) {
        redis_fail_pending(rc, err);
        rc->down_owed = true;
        event_active(rc->ev_defer, 0, 0);
    }
    redis_set_state(rc, REDIS_STATE_BACKOFF);
    redis_retry_later(rc);
}

/* hiredis is tearing the current connection down (error, EOF): detach. */
static void
redis_lost(struct redis_client *rc, const char *why)
{
    if (why == NULL || why[0] == '\0')
        why = "closed";
    if (rc->state == REDIS_STATE_UP) {
        log_warn("%s: connection lost (%s); reconnecting", rc->name, why);
        rc->last_fail = REDIS_FAIL_CONNECT;
    } else {
        redis_log_fail(rc, REDIS_FAIL_CONNECT, "cannot connect", why);
    }
    redis_detach(rc, true);
    redis_went_down(rc, REDIS_CLIENT_EIO);
}

/* The handshake failed on a connection hiredis still holds: drop it. */
static void
redis_refused(struct redis_client *rc, enum redis_fail kind, const char *what, const char *why)
{
    redis_log_fail(rc, kind, what, why);
    redis_detach(rc, false);
    redis_went_down(rc, REDIS_CLIENT_EIO);
}

static void
redis_now_up(struct redis_client *rc)
{
    event_del(rc->ev_conn);
    redis_set_state(rc, REDIS_STATE_UP);
    rc->backoff_ms = rc->backoff_min_ms;
    rc->last_fail = REDIS_FAIL_NONE;
    log_info("%s: connected", rc->name);
    if (rc->down_owed) {
        /* Down and up again before ev_defer ran: the user never saw it go. */
        rc->down_owed = false;
        return;
    }
    if (rc->state_cb != NULL) {
        redis_enter(rc);
        rc->state_cb(rc->state_arg, true);
        (void)redis_leave(rc);
    }
}

static void
redis_on_connect(const redisAsyncContext *cac, int status)
{
    struct redis_client *rc = cac->data;

    if (rc == NULL || status == REDIS_OK)
        return;
    /* hiredis frees the context when this returns. */
    UTIL_ASSERT(rc->state == REDIS_STATE_CONNECTING);
    redis_lost(rc, cac->errstr);
}

static void
redis_on_disconnect(const redisAsyncContext *cac, int status)
{
    struct redis_client *rc = cac->data;

    /* Only reached when no callback of ours was pending to notice first. */
    if (rc != NULL)
        redis_lost(rc, status == REDIS_OK ? NULL : cac->errstr);
}

static void
redis_on_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_client *rc = ac->data;
    redisReply *reply = r;
    enum redis_step step = (enum redis_step)(uintptr_t)privdata;
    char why[160];

    if (rc == NULL)
        return;
    UTIL_ASSERT(rc->state == REDIS_STATE_CONNECTING);
    if (reply == NULL) {
        redis_lost(rc, ac->errstr);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%.*s", (int)reply->len, reply->str);
        switch (step) {
        case REDIS_STEP_AUTH:
            redis_refused(rc, REDIS_FAIL_AUTH, "AUTH failed", why);
            break;
        case REDIS_STEP_SELECT:
            redis_refused(rc, REDIS_FAIL_SELECT, "SELECT failed", why);
            break;
        case REDIS_STEP_PING:
            redis_refused(rc, REDIS_FAIL_PING, "PING failed", why);
            break;
        }
        return;
    }
    /* A subscriber made while this handshake was in flight queued SUBSCRIBE
     * behind the PING: it is up when that is confirmed. */
    if (step == REDIS_STEP_PING && rc->channel == NULL)
        redis_now_up(rc);
}

/* The SUBSCRIBE callback: its confirmation, then every message. */
static void
redis_on_message(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_client *rc = ac->data;
    redisReply *reply = r;
    const char *kind;

    if (rc == NULL)
        return;
    if (reply == NULL) {
        redis_lost(rc, ac->errstr);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    kind = reply->element[0]->str;
    if (strcasecmp(kind, "subscribe") == 0) {
        if (rc->state == REDIS_STATE_CONNECTING)
            redis_now_up(rc);
    } else if (strcasecmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING &&
               rc->msg_cb != NULL) {
        redis_enter(rc);
        rc->msg_cb(rc->msg_arg, reply->element[2]->str, reply->element[2]->len);
        (void)redis_leave(rc);
    }
}

static void
redis_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_cmd *cmd = privdata;
    struct redis_client *rc = ac->data;
    redisReply *reply = r;

    cmd->registered = false;
    if (rc == NULL) {
        /* Detached: the client fails or failed the command itself. */
        if (!cmd->queued)
            free(cmd);
        return;
    }
    UTIL_ASSERT(cmd->queued && cmd == TAILQ_FIRST(&rc->pending));
    if (reply == NULL) {
        redis_lost(rc, ac->errstr);
        return;
    }
    UTIL_ASSERT(!rc->submitting);
    TAILQ_REMOVE(&rc->pending, cmd, link);
    (void)redis_cmd_complete(
        rc, cmd, reply, reply->type == REDIS_REPLY_ERROR ? REDIS_CLIENT_EREPLY : REDIS_CLIENT_OK);
}

static int
redis_send_subscribe(struct redis_client *rc)
{
    const char *argv[] = {"SUBSCRIBE", rc->channel};
    size_t argvlen[] = {9, strlen(rc->channel)};

    return redisAsyncCommandArgv(rc->ac, redis_on_message, NULL, 2, argv, argvlen) == REDIS_OK ? 0
                                                                                               : -1;
}

/* Queues AUTH, SELECT and PING (or SUBSCRIBE) on a new connection: hiredis
 * sends them once connected. The client is up when the last one answers. */
static int
redis_send_handshake(struct redis_client *rc)
{
    if (rc->password != NULL) {
        const char *argv[] = {"AUTH", rc->password};
        size_t argvlen[] = {4, strlen(rc->password)};
        if (redisAsyncCommandArgv(rc->ac, redis_on_handshake, (void *)(uintptr_t)REDIS_STEP_AUTH, 2,
                                  argv, argvlen) != REDIS_OK)
            return -1;
    }
    if (rc->db != 0) {
        char db[16];
        const char *argv[] = {"SELECT", db};
        size_t argvlen[] = {6, 0};
        argvlen[1] = (size_t)snprintf(db, sizeof(db), "%u", rc->db);
        if (redisAsyncCommandArgv(rc->ac, redis_on_handshake, (void *)(uintptr_t)REDIS_STEP_SELECT,
                                  2, argv, argvlen) != REDIS_OK)
            return -1;
    }
    if (rc->channel != NULL)
        return redis_send_subscribe(rc);
    const char *argv[] = {"PING"};
    size_t argvlen[] = {4};
    if (redisAsyncCommandArgv(rc->ac, redis_on_handshake, (void *)(uintptr_t)REDIS_STEP_PING, 1,
                              argv, argvlen) != REDIS_OK)
        return -1;
    return 0;
}

/* Starts a connection: CONNECTING on success, else BACKOFF with a retry
 * armed. Never blocks: the address is numeric, the connect non-blocking. */
static void
redis_connect(struct redis_client *rc)
{
    redisAsyncContext *ac = NULL;
    enum redis_fail kind = REDIS_FAIL_CONNECT;
    char why[160];

    UTIL_ASSERT(rc->ac == NULL);
    if (!rc->addr_ok) {
        kind = REDIS_FAIL_ADDR;
        snprintf(why, sizeof(why), "\"%s\" is not a numeric IP address", rc->ip);
        goto fail;
    }
    ac = redisAsyncConnect(rc->ip, rc->port);
    if (ac == NULL) {
        snprintf(why, sizeof(why), "out of memory");
        goto fail;
    }
    if (ac->err != 0) {
        snprintf(why, sizeof(why), "%s", ac->errstr);
        goto fail;
    }
    if (redisLibeventAttach(ac, rc->base) != REDIS_OK) {
        snprintf(why, sizeof(why), "cannot attach to the event loop");
        goto fail;
    }
    ac->data = rc;
    rc->ac = ac;
    ac = NULL;
    redisAsyncSetConnectCallback(rc->ac, redis_on_connect);
    redisAsyncSetDisconnectCallback(rc->ac, redis_on_disconnect);
    /* Finds a dead peer under a subscriber, which sends nothing. */
    (void)redisEnableKeepAlive(&rc->ac->c);
    if (redis_send_handshake(rc) != 0) {
        snprintf(why, sizeof(why), "cannot queue the handshake");
        goto fail;
    }
    redis_set_state(rc, REDIS_STATE_CONNECTING);
    redis_timer_add(rc->ev_conn, rc->connect_timeout_ms);
    return;

fail:
    redis_log_fail(rc, kind, "cannot connect", why);
    redis_detach(rc, false);
    if (ac != NULL)
        redisAsyncFree(ac);
    if (rc->state == REDIS_STATE_INIT)
        redis_set_state(rc, REDIS_STATE_BACKOFF);
    redis_retry_later(rc);
}

static void
redis_on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *rc = arg;
    char why[64];

    switch (rc->state) {
    case REDIS_STATE_CONNECTING:
        snprintf(why, sizeof(why), "not up within %u ms", rc->connect_timeout_ms);
        redis_refused(rc, REDIS_FAIL_TIMEOUT, "cannot connect", why);
        break;
    case REDIS_STATE_BACKOFF:
        redis_connect(rc);
        break;
    default:
        UTIL_ASSERT(!"connection timer outside CONNECTING and BACKOFF");
    }
}

static void
redis_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *rc = arg;
    struct redis_cmd *cmd = TAILQ_FIRST(&rc->pending);
    uint64_t now = util_now_ms();

    if (cmd == NULL)
        return;
    if (cmd->deadline_ms > now) {
        /* Armed for an older command that has been answered since. */
        redis_timer_add(rc->ev_deadline, (unsigned)(cmd->deadline_ms - now));
        return;
    }
    UTIL_ASSERT(rc->state == REDIS_STATE_UP);
    log_warn("%s: no answer within %u ms; reconnecting", rc->name, rc->timeout_ms);
    rc->last_fail = REDIS_FAIL_TIMEOUT;
    redis_detach(rc, false);
    redis_went_down(rc, REDIS_CLIENT_ETIMEOUT);
    (void)redis_report(rc);
}

static void
redis_on_defer(evutil_socket_t fd, short what, void *arg)
{
    (void)redis_report(arg);
}

static bool
redis_numeric_ip(const char *ip)
{
    struct in6_addr a6;
    struct in_addr a4;

    return inet_pton(AF_INET, ip, &a4) == 1 || inet_pton(AF_INET6, ip, &a6) == 1;
}

struct redis_client *
redis_client_new(struct event_base *base, const struct redis_client_opts *o)
{
    struct redis_client *rc = util_xcalloc(1, sizeof(*rc));
    char name[UTIL_ADDRSTRLEN + 16];

    rc->base = base;
    rc->ip = util_xstrdup(o->ip != NULL ? o->ip : "");
    rc->port = o->port;
    rc->password = o->password != NULL ? util_xstrdup(o->password) : NULL;
    rc->db = o->db;
    rc->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 1;
    rc->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 1;
    rc->backoff_min_ms = o->backoff_min_ms > 0 ? o->backoff_min_ms : 1;
    rc->backoff_max_ms =
        o->backoff_max_ms > rc->backoff_min_ms ? o->backoff_max_ms : rc->backoff_min_ms;
    if (o->name != NULL) {
        rc->name = util_xstrdup(o->name);
    } else {
        snprintf(name, sizeof(name), strchr(rc->ip, ':') != NULL ? "redis [%s]:%d" : "redis %s:%d",
                 rc->ip, rc->port);
        rc->name = util_xstrdup(name);
    }
    rc->addr_ok = redis_numeric_ip(rc->ip);
    rc->state = REDIS_STATE_INIT;
    rc->backoff_ms = rc->backoff_min_ms;
    TAILQ_INIT(&rc->pending);
    TAILQ_INIT(&rc->failed);
    rc->ev_conn = evtimer_new(base, redis_on_conn_timer, rc);
    rc->ev_deadline = evtimer_new(base, redis_on_deadline, rc);
    rc->ev_defer = event_new(base, -1, 0, redis_on_defer, rc);
    if (rc->ev_conn == NULL || rc->ev_deadline == NULL || rc->ev_defer == NULL)
        abort();
    redis_connect(rc);
    return rc;
}

void
redis_client_free(struct redis_client **rcp)
{
    struct redis_client *rc = *rcp;
    struct redis_cmd *cmd;

    if (rc == NULL)
        return;
    *rcp = NULL;
    if (rc->closing)
        return; /* again, from a callback the first call runs */
    redis_enter(rc);
    redis_set_state(rc, REDIS_STATE_CLOSED);
    rc->closing = true;
    redis_detach(rc, false);
    event_del(rc->ev_conn);
    event_del(rc->ev_deadline);
    event_del(rc->ev_defer);
    rc->down_owed = false;
    redis_fail_pending(rc, REDIS_CLIENT_ECLOSED);
    while ((cmd = TAILQ_FIRST(&rc->failed)) != NULL) {
        TAILQ_REMOVE(&rc->failed, cmd, link);
        (void)redis_cmd_complete(rc, cmd, NULL, REDIS_CLIENT_ECLOSED);
    }
    (void)redis_leave(rc);
}

void
redis_client_on_state(struct redis_client *rc, redis_client_state_cb cb, void *arg)
{
    rc->state_cb = cb;
    rc->state_arg = arg;
}

bool
redis_client_up(const struct redis_client *rc)
{
    return rc->state == REDIS_STATE_UP;
}

int
redis_client_command(struct redis_client *rc, redis_client_cb cb, void *arg, int argc,
                     const char **argv, const size_t *argvlen)
{
    struct redis_cmd *cmd;
    int r;

    if (rc->state != REDIS_STATE_UP || rc->channel != NULL || argc <= 0)
        return -1;
    cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        return -1;
    cmd->cb = cb;
    cmd->arg = arg;
    cmd->deadline_ms = util_now_ms() + rc->timeout_ms;
    cmd->queued = true;
    cmd->registered = true;
    TAILQ_INSERT_TAIL(&rc->pending, cmd, link);
    rc->npending++;

    rc->submitting = true;
    r = redisAsyncCommandArgv(rc->ac, redis_on_reply, cmd, argc, argv, argvlen);
    rc->submitting = false;

    if (r != REDIS_OK) {
        /* Not registered. Still on pending unless hiredis tore the
         * context down meanwhile: then its failure is reported later. */
        cmd->registered = false;
        if (cmd->err != REDIS_CLIENT_OK)
            return 0;
        TAILQ_REMOVE(&rc->pending, cmd, link);
        rc->npending--;
        free(cmd);
        return -1;
    }
    if (rc->state == REDIS_STATE_UP && !evtimer_pending(rc->ev_deadline, NULL))
        redis_timer_add(rc->ev_deadline, rc->timeout_ms);
    return 0;
}

int
redis_client_subscribe(struct redis_client *rc, const char *channel, redis_client_msg_cb cb,
                       void *arg)
{
    if (rc->closing || rc->channel != NULL || channel == NULL)
        return -1;
    rc->channel = strdup(channel);
    if (rc->channel == NULL)
        return -1;
    rc->msg_cb = cb;
    rc->msg_arg = arg;
    /* Otherwise the next connection subscribes in its handshake. If hiredis
     * refuses, the context is going away and the next one subscribes. */
    if (rc->ac != NULL)
        (void)redis_send_subscribe(rc);
    return 0;
}

size_t
redis_client_pending(const struct redis_client *rc)
{
    return rc->npending;
}
