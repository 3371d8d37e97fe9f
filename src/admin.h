/*
 * admin: the admin listener, separate from traffic, on the main thread's
 * event_base. It serves /healthz, /stats (JSON counters) and /metrics
 * (Prometheus text). It uses libevent's evhttp: admin requests are small
 * and rare, and the proxy's data path never goes through here.
 */
#ifndef TAILCACHE_ADMIN_H
#define TAILCACHE_ADMIN_H

struct admin;
struct config_addr;
struct event_base;

/* Listens on addr; returns a new admin or NULL with the reason logged. */
struct admin *admin_start(struct event_base *base, const struct config_addr *addr);

/* Stops listening and frees; clears *ap; accepts NULL. */
void admin_free(struct admin **ap);

#endif
