/*
 * admin: the admin listener, separate from traffic, on the main thread's
 * event_base. It serves /healthz, /stats (JSON counters), /metrics
 * (Prometheus text) and /dashboard (a live page over /stats, dashboard.h),
 * and the invalidation API (POST /invalidate/url, /invalidate/prefix,
 * /invalidate/regex, /invalidate/tag, /invalidate/route; see inval.h and
 * tailcache(8)). It uses libevent's evhttp: admin requests are small and
 * rare, and the proxy's data path never goes through here.
 */
#ifndef TAILCACHE_ADMIN_H
#define TAILCACHE_ADMIN_H

struct admin;
struct config_addr;
struct analytics;
struct config;
struct event_base;
struct inval;

/* Listens on cfg's admin address (over TLS with cfg's tls.ctx when
 * admin.tls; a reference to cfg is kept for it); returns a new admin or
 * NULL with the reason logged. iv (borrowed) applies invalidations; an
 * (borrowed) has the per-route analytics added to /stats and /metrics. */
struct admin *admin_start(struct event_base *base, struct config *cfg, struct inval *iv,
                          struct analytics *an);

/* A reload: new TLS connections use cfg's certificates (takes a reference). */
void admin_set_config(struct admin *a, struct config *cfg);

/* Stops listening and frees; clears *ap; accepts NULL. */
void admin_free(struct admin **ap);

#endif
