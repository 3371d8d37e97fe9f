/*
 * mc: memcached through libmemcached, off the event loops.
 *
 * libmemcached blocks, so operations run on a small pool of threads, each
 * with its own memcached_st (binary protocol, ketama consistent hashing
 * over the servers, connect/poll timeouts, failed servers set aside for a
 * while and retried). Workers queue operations into one bounded queue and
 * get each result back on their own event_base through a struct mc_done
 * (a locked list and an event made active by the pool thread).
 *
 * An operation that waited in the queue past its deadline (timeout_ms
 * after it was queued) completes with MC_TIMEOUT without being run, so a
 * stalled server cannot build an unbounded backlog; a full queue refuses
 * new operations at once.
 *
 * Thread safety: mc_submit() from any thread; a mc_done belongs to its
 * base's thread, and callbacks run there, never inside mc_submit().
 */
#ifndef TAILCACHE_MC_H
#define TAILCACHE_MC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mc_pool;
struct mc_done;

/*
 * A key always maps to the same server (libketama placement: MD5, equal
 * weights), whether or not that server is up: keys never move, so a server
 * coming back cannot serve values that were overwritten or deleted
 * elsewhere meanwhile.
 *
 * timeout_ms bounds the wait in the queue, and separately each wait for
 * the server once running (a new connection adds up to connect_timeout_ms),
 * so an operation completes within about 2 * timeout_ms (+ connect).
 *
 * After a connection-level failure (timeout, refused, reset) a server is
 * set aside for retry_ms, for all threads: its operations complete at once
 * with MC_ERROR. Then one operation at a time probes it; the first success
 * brings it back.
 */
struct mc_pool_opts {
    const char *const *hosts; /* numeric IPs (checked) */
    const int *ports;
    size_t nservers;             /* >= 1 */
    unsigned threads;            /* >= 1 */
    unsigned queue;              /* operations waiting at most, >= 1 */
    unsigned connect_timeout_ms; /* >= 1 */
    unsigned timeout_ms;         /* >= 1; see above */
    unsigned retry_ms;           /* a failed server is skipped this long */
};

enum mc_op {
    MC_GET,
    MC_SET,
    MC_DELETE,
};

enum mc_result {
    MC_OK,       /* GET found, SET stored, DELETE deleted */
    MC_NOTFOUND, /* GET/DELETE: no such key */
    MC_ERROR,    /* server or connection error */
    MC_TIMEOUT,  /* no answer in time, or waited too long in the queue */
};

/* value: for a GET that gives MC_OK its value (borrowed: valid during the
 * call; never NULL then, "" with len 0 for an empty one), else NULL. */
typedef void (*mc_cb)(void *arg, enum mc_result r, const char *value, size_t len);

/* Starts the threads. Returns a new pool, or NULL with the reason logged. */
struct mc_pool *mc_pool_new(const struct mc_pool_opts *o);

/* Drops queued operations (their callbacks never run; SET values are
 * freed), waits for running ones (at most about timeout_ms +
 * connect_timeout_ms; their results still go to their mc_done), joins the
 * threads and frees. Call once no thread submits any more. Clears *pp;
 * accepts NULL. */
void mc_pool_free(struct mc_pool **pp);

/* A completion queue on base. Never NULL (aborts on allocation failure). */
struct mc_done *mc_done_new(struct event_base *base);

/* Frees d; results still arriving for it are dropped (their callbacks are
 * not called). Call on d's base's thread. Clears *dp; accepts NULL. */
void mc_done_free(struct mc_done **dp);

/*
 * Queues op on key (1 <= klen <= 250, copied). SET: value is handed over
 * (malloc'd, or NULL when vlen is 0; the pool frees it whatever happens),
 * exptime in seconds from now (0: none; over 30 days works too, converted
 * to the Unix time memcached expects); GET and DELETE: value is NULL.
 * cb may be NULL. Returns 0 and cb will be called once on d's base
 * (unless d or the pool is freed first); or -1 (queue full, pool
 * stopping, bad key length, no memory) and cb is never called (a SET's
 * value is freed all the same). Never blocks beyond a mutex held briefly.
 */
int mc_submit(struct mc_pool *p, struct mc_done *d, enum mc_op op, const char *key, size_t klen,
              void *value, size_t vlen, uint32_t exptime, mc_cb cb, void *arg);

#endif
