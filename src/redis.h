/*
 * redis: an asynchronous Redis client on one event_base (hiredis's async
 * API and its libevent adapter), with what hiredis 0.14 lacks: connect
 * and command timeouts, reconnection with exponential backoff, and a
 * subscriber mode that re-subscribes after every reconnect.
 *
 * A client belongs to the thread running its base: every function but
 * redis_client_new() must be called there, and callbacks run there, never
 * inside the call that queued them.
 *
 * Timeouts: each command has a deadline (timeout_ms after it was queued).
 * When the oldest pending command passes it, every pending command
 * completes with REDIS_CLIENT_ETIMEOUT at once and the connection is
 * dropped and re-made (Redis answers in order: if the oldest is late, all
 * are). A connection that is not up within connect_timeout_ms is dropped.
 * While disconnected, commands are refused at once (redis_client_command
 * returns -1) so a dead Redis costs callers nothing after the first
 * timeout; reconnects are tried after backoff_min_ms, doubling up to
 * backoff_max_ms, and reset once connected. AUTH and SELECT are sent
 * first on every connection when configured, then PING (or SUBSCRIBE):
 * "up" means the server answered it, not merely that TCP connected (a
 * stopped Redis still accepts connections). A failed AUTH or SELECT is
 * logged as an error and counts as a failed connection.
 *
 * Connection loss and recovery are logged once per transition (warn,
 * info), never per command.
 */
#ifndef TAILCACHE_REDIS_H
#define TAILCACHE_REDIS_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct redisReply;
struct redis_client;

struct redis_client_opts {
    const char *ip; /* numeric IPv4 or IPv6; anything else never connects (logged) */
    int port;
    const char *password; /* NULL: no AUTH */
    unsigned db;          /* 0: no SELECT */
    /* 0 is taken as 1; a backoff_max_ms below backoff_min_ms as backoff_min_ms. */
    unsigned connect_timeout_ms;
    unsigned timeout_ms;
    unsigned backoff_min_ms;
    unsigned backoff_max_ms;
    const char *name; /* for log lines, e.g. "redis 127.0.0.1:6379"; NULL: that */
};

enum redis_client_err {
    REDIS_CLIENT_OK = 0,
    REDIS_CLIENT_ETIMEOUT, /* no answer within timeout_ms */
    REDIS_CLIENT_EIO,      /* the connection failed or closed before the answer */
    REDIS_CLIENT_EREPLY,   /* Redis answered with an error reply (reply is set) */
    REDIS_CLIENT_ECLOSED,  /* the client was freed with the command pending */
};

/* reply: hiredis's reply (borrowed, valid during the call), NULL unless
 * err is OK or EREPLY. */
typedef void (*redis_client_cb)(void *arg, struct redisReply *reply, enum redis_client_err err);

/* A pub/sub message on the subscribed channel; data borrowed. */
typedef void (*redis_client_msg_cb)(void *arg, const char *data, size_t len);

/* Called on connect (up = true) and on disconnect (up = false), alternating,
 * starting with up; never by redis_client_free(). */
typedef void (*redis_client_state_cb)(void *arg, bool up);

/* A new client that starts connecting at once (the options are copied).
 * Never NULL: aborts on allocation failure (start-up). */
struct redis_client *redis_client_new(struct event_base *base, const struct redis_client_opts *o);

/* Fails pending commands with ECLOSED (their callbacks run before this
 * returns, including commands whose failure was not reported yet),
 * disconnects and frees; clears *rcp; accepts NULL. Works in any state and
 * from inside any of this client's callbacks (the memory is released when
 * the callback returns); no callback runs after it returns. */
void redis_client_free(struct redis_client **rcp);

/* Optional: state changes, for logs and breakers. */
void redis_client_on_state(struct redis_client *rc, redis_client_state_cb cb, void *arg);

/* True when connected (AUTH/SELECT done) and commands are accepted. */
bool redis_client_up(const struct redis_client *rc);

/*
 * Queues a command (argv[i] of argvlen[i] bytes, binary safe; copied).
 * Returns 0, and cb (may be NULL) will be called exactly once later; or
 * -1 when the client is not up, is a subscriber, argc < 1 or memory ran
 * out, and cb is never called.
 */
int redis_client_command(struct redis_client *rc, redis_client_cb cb, void *arg, int argc,
                         const char **argv, const size_t *argvlen);

/*
 * Turns the client into a subscriber of channel (copied): from then on it
 * only receives messages, re-subscribing after each reconnect. Commands
 * are refused; those already pending still get their answers. May be
 * called in any state; a subscriber comes up once SUBSCRIBE is confirmed
 * (one that was up already stays up meanwhile).
 * Returns 0, or -1 when already a subscriber (or being freed).
 *
 * A subscriber sends nothing once subscribed, so it has no command
 * deadline: a stopped server goes unnoticed (nobody can publish through
 * it either), a dead peer is found by TCP keepalive.
 */
int redis_client_subscribe(struct redis_client *rc, const char *channel, redis_client_msg_cb cb,
                           void *arg);

/* Commands queued whose callback has not run yet (tests, stats). */
size_t redis_client_pending(const struct redis_client *rc);

#endif
