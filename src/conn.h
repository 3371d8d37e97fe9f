/*
 * conn: one client connection and the requests it carries, proxied to an
 * upstream with streaming and backpressure in both directions.
 *
 * A connection lives on one worker's thread. Its state moves through the
 * CONN_STATES table with conn_set_state(), which asserts every transition.
 * Requests on a connection are handled one at a time, so pipelined
 * requests are answered in order. A connection is never freed inside its
 * own callbacks: conn_close() queues it on the worker's reap list and the
 * worker frees it at a safe point.
 */
#ifndef TAILCACHE_CONN_H
#define TAILCACHE_CONN_H

#include <event2/util.h>
#include <stdbool.h>
#include <sys/socket.h>

struct conn;
struct worker;

/*
 * Takes over an accepted socket; closes it on failure (counted, logged).
 * tls: the socket came from a tls.listen listener: the connection first
 * completes a TLS handshake with the current config's certificates within
 * tls.handshake_timeout; a failed one closes it quietly (counted).
 */
void conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                 bool tls);

/* Worker draining: close idle connections now, the others after their
 * current response. */
void conn_drain_all(struct worker *w);

/* Frees the connections conn_close() queued; the worker's safe point. */
void conn_reap_all(struct worker *w);

/* Closes every connection at once (shutdown after the drain timeout). */
void conn_close_all(struct worker *w);

#endif
