/*
 * main: command line, start-up, signals and reload.
 *
 * The main thread owns the current config, the listening sockets' setup,
 * the admin listener and the signal handling; it runs its own event_base
 * and never touches the data path. Workers get their sockets at start and
 * their configs through worker_reload().
 *
 * Signals: SIGHUP reloads (an invalid config keeps the old one and logs
 * why), SIGUSR1 reopens the logs, SIGTERM and SIGINT drain: stop
 * accepting, let in-flight requests finish, exit within timeouts.drain.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "admin.h"
#include "analytics.h"
#include "ban.h"
#include "inval.h"
#include "tier.h"
#include "tls.h"
#include "cache.h"
#include "log.h"
#include "stats.h"
#include "worker.h"

#ifndef TC_SYSCONFDIR
#define TC_SYSCONFDIR "/etc"
#endif

struct main_state {
    struct event_base *base;
    struct config *cfg; /* current; one reference */
    const char *cfg_file;
    struct worker *workers;
    unsigned nworkers;
    struct admin *admin;
    struct cache *cache;
    struct ban_list *bans;
    struct tier_shared *tiers;
    struct inval *inval;
    struct analytics *analytics;
    struct event *ev_tick;          /* analytics: one window slot every analytics.slot */
    struct event *ev_tickets;       /* tls.ticket_rotation */
    unsigned cfg_workers_from_file; /* what the file said last, to warn once per change */
    bool stopping;
};

static void
main_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct main_state *m = arg;
    (void)fd;
    (void)what;
    analytics_tick(m->analytics);
}

static void
main_usage(FILE *out)
{
    fprintf(
        out,
        "usage: tailcache [-t] [-c FILE]\n"
        "       tailcache --upstream http[s]://HOST[:PORT] [--listen ADDR:PORT] [--admin "
        "ADDR:PORT]\n"
        "                 [--redis HOST:PORT] [--memcached HOST:PORT[,...]] [--workers N]\n"
        "\n"
        "  -c, --config FILE     run from a YAML config (default %s/tailcache.yaml)\n"
        "  -t, --test            check the config and exit (0: valid, 1: errors printed)\n"
        "  -u, --upstream URL    quick mode: proxy everything to URL, no config file\n"
        "  -l, --listen ADDR     quick mode: traffic listener (default 127.0.0.1:8080)\n"
        "  -a, --admin ADDR      quick mode: admin listener, or off (default: 127.0.0.1:9090)\n"
        "  -r, --redis ADDR      quick mode: Redis tier at ADDR (HOST:PORT)\n"
        "  -m, --memcached LIST  quick mode: memcached tier on LIST (HOST:PORT[,HOST:PORT...])\n"
        "  -w, --workers N       worker threads (default: number of cores)\n"
        "      --help-config     list every config key with its default\n"
        "  -V, --version         print the version\n"
        "  -h, --help            this text\n",
        TC_SYSCONFDIR);
}

/* Binds one SO_REUSEPORT socket on addr; returns the fd or -1 (logged). */
static int
main_bind(const struct config_addr *addr)
{
    int one = 1;
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_errno("listen %s: socket", addr->text);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, 4096) < 0) {
        log_errno("listen %s", addr->text);
        close(fd);
        return -1;
    }
    return fd;
}

static int
main_start_workers(struct main_state *m)
{
    struct config *cfg = m->cfg;
    size_t nfds = cfg->nlisten + cfg->tls.nlisten;
    m->nworkers = cfg->workers;
    m->workers = calloc(m->nworkers, sizeof(*m->workers));
    int *fds = calloc(nfds ? nfds : 1, sizeof(*fds));
    if (m->workers == NULL || fds == NULL)
        abort();
    for (unsigned i = 0; i < m->nworkers; i++) {
        for (size_t j = 0; j < nfds; j++) {
            fds[j] =
                main_bind(j < cfg->nlisten ? &cfg->listen[j] : &cfg->tls.listen[j - cfg->nlisten]);
            if (fds[j] < 0) {
                while (j-- > 0)
                    close(fds[j]);
                free(fds);
                return -1;
            }
        }
        struct worker_shared sh = {
            .cache = m->cache, .tiers = m->tiers, .inval = m->inval, .analytics = m->analytics};
        if (worker_init(&m->workers[i], i, cfg, &sh, fds, nfds, cfg->tls.nlisten) < 0) {
            free(fds);
            return -1;
        }
    }
    free(fds);
    for (unsigned i = 0; i < m->nworkers; i++)
        if (worker_start(&m->workers[i]) < 0)
            return -1;
    return 0;
}

/* True when a and b give the shared tiers the same servers and prefixes
 * (they are set up once, at start-up). */
static bool
main_same_tiers(const struct config *a, const struct config *b)
{
    if (a->redis.enabled != b->redis.enabled ||
        (a->redis.enabled && (strcmp(a->redis.addr.text, b->redis.addr.text) != 0 ||
                              strcmp(a->redis.prefix, b->redis.prefix) != 0)) ||
        a->memcached.nservers != b->memcached.nservers)
        return false;
    for (size_t i = 0; i < a->memcached.nservers; i++)
        if (strcmp(a->memcached.servers[i].text, b->memcached.servers[i].text) != 0)
            return false;
    return true;
}

static bool
main_same_addrs(const struct config_addr *a, size_t na, const struct config_addr *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].text, b[i].text) != 0)
            return false;
    return true;
}

static bool
main_same_listen(const struct config *a, const struct config *b)
{
    return main_same_addrs(a->listen, a->nlisten, b->listen, b->nlisten) &&
           main_same_addrs(a->tls.listen, a->tls.nlisten, b->tls.listen, b->tls.nlisten);
}

/* A new session ticket key every tls.ticket_rotation (process-wide keys). */
static void
main_on_ticket_rotation(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    tls_tickets_rotate();
}

/* (Re)arms the ticket rotation timer for cfg's period. */
static void
main_arm_ticket_rotation(struct main_state *m, const struct config *cfg)
{
    struct timeval tv = {cfg->tls.ticket_rotation_ms / 1000,
                         (cfg->tls.ticket_rotation_ms % 1000) * 1000};
    if (m->ev_tickets == NULL)
        m->ev_tickets = event_new(m->base, -1, EV_PERSIST, main_on_ticket_rotation, m);
    if (m->ev_tickets == NULL || event_add(m->ev_tickets, &tv) < 0)
        fatal("cannot start the TLS ticket key timer");
}

static const char *
main_admin_text(const struct config *cfg)
{
    return cfg->admin.len ? cfg->admin.text : "off";
}

static void
main_reload(struct main_state *m)
{
    char *err = NULL;
    if (m->cfg_file == NULL) {
        log_warn("SIGHUP: quick mode has no config file to reload");
        return;
    }
    log_info("SIGHUP: reloading %s", m->cfg_file);
    struct config *cfg = config_load(m->cfg_file, &err);
    if (cfg == NULL) {
        /* One log line per error, each naming file:line and the key. */
        char *save = NULL;
        for (char *line = strtok_r(err, "\n", &save); line != NULL;
             line = strtok_r(NULL, "\n", &save))
            log_err("reload rejected, keeping the running configuration: %s", line);
        free(err);
        return;
    }
    if (!main_same_listen(cfg, m->cfg))
        log_warn("reload: listen or tls.listen addresses changed; they take effect at the next "
                 "restart");
    if (cfg->tls.ticket_rotation_ms != m->cfg->tls.ticket_rotation_ms)
        main_arm_ticket_rotation(m, cfg);
    if (m->cfg->tls.nlisten > 0 && cfg->tls.ctx == NULL)
        log_warn("reload: no tls.certificates; the TLS listeners refuse every handshake until "
                 "the next restart");
    if (cfg->cache_memory_size != m->cfg->cache_memory_size ||
        cfg->cache_shards != m->cfg->cache_shards || cfg->cache_eviction != m->cfg->cache_eviction)
        log_warn("reload: cache.memory size, shards or eviction changed; they take effect at the "
                 "next restart");
    if (cfg->workers != m->cfg->workers && m->cfg_workers_from_file != cfg->workers)
        log_warn("reload: workers changed; it takes effect at the next restart");
    m->cfg_workers_from_file = cfg->workers;
    cfg->workers = m->nworkers; /* still private to us: the running count stays true */
    if (log_set_targets(cfg->error_log, cfg->access_log, (enum log_level)cfg->log_level) < 0)
        log_err("reload: cannot open the new logs; keeping the old ones");
    if (strcmp(main_admin_text(cfg), main_admin_text(m->cfg)) != 0 ||
        cfg->admin_tls != m->cfg->admin_tls || m->admin == NULL) {
        admin_free(&m->admin);
        if (cfg->admin.len)
            m->admin = admin_start(m->base, cfg, m->inval, m->analytics);
    } else {
        admin_set_config(m->admin, cfg); /* renewed certificates for admin.tls */
    }
    if (!main_same_tiers(cfg, m->cfg))
        log_warn("reload: cache.redis or cache.memcached changed; the shared tiers keep their "
                 "settings until the next restart");
    inval_set_config(m->inval, cfg);
    analytics_set_config(m->analytics, cfg);
    for (unsigned i = 0; i < m->nworkers; i++)
        worker_reload(&m->workers[i], cfg);
    config_unref(&m->cfg);
    m->cfg = cfg;
    log_info("configuration reloaded: %zu routes, %zu upstreams", cfg->nroutes, cfg->nupstreams);
}

static void
main_on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct main_state *m = arg;
    switch (sig) {
    case SIGHUP:
        main_reload(m);
        break;
    case SIGUSR1:
        if (log_reopen() < 0)
            log_err("SIGUSR1: cannot reopen a log file; still writing to the old one");
        else
            log_info("SIGUSR1: logs reopened");
        break;
    case SIGTERM:
    case SIGINT:
        if (m->stopping)
            break;
        m->stopping = true;
        log_info("%s: draining (at most %u ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 m->cfg->drain_timeout_ms);
        admin_free(&m->admin);
        for (unsigned i = 0; i < m->nworkers; i++)
            worker_stop(&m->workers[i]);
        event_base_loopexit(m->base, NULL);
        break;
    }
}

/* Waits for the workers until the drain deadline; returns how many exited. */
static unsigned
main_join_workers(struct main_state *m)
{
    struct timespec deadline;
    unsigned joined = 0;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += m->cfg->drain_timeout_ms / 1000;
    deadline.tv_nsec += (long)(m->cfg->drain_timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    for (unsigned i = 0; i < m->nworkers; i++)
        if (pthread_timedjoin_np(m->workers[i].thread, NULL, &deadline) == 0)
            joined++;
    return joined;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"test", no_argument, NULL, 't'},
        {"upstream", required_argument, NULL, 'u'}, {"listen", required_argument, NULL, 'l'},
        {"admin", required_argument, NULL, 'a'},    {"workers", required_argument, NULL, 'w'},
        {"redis", required_argument, NULL, 'r'},    {"memcached", required_argument, NULL, 'm'},
        {"help-config", no_argument, NULL, 'H'},    {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    struct main_state m = {0};
    const char *cfg_file = NULL, *upstream = NULL, *listen_addr = NULL, *admin_addr = NULL;
    const char *redis_addr = NULL, *memcached_list = NULL;
    bool test_only = false;
    long workers = 0;
    char *err = NULL;
    int ch;

    while ((ch = getopt_long(argc, argv, "c:tu:l:a:w:r:m:Vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfg_file = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'u':
            upstream = optarg;
            break;
        case 'l':
            listen_addr = optarg;
            break;
        case 'a':
            admin_addr = optarg;
            break;
        case 'r':
            redis_addr = optarg;
            break;
        case 'm':
            memcached_list = optarg;
            break;
        case 'w': {
            char *end;
            workers = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || workers < 1 || workers > 256) {
                fprintf(stderr, "tailcache: --workers must be between 1 and 256\n");
                return 2;
            }
            break;
        }
        case 'H':
            config_print_reference(stdout);
            return 0;
        case 'V':
            printf("tailcache %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            main_usage(stdout);
            return 0;
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (optind < argc || (upstream != NULL && cfg_file != NULL) ||
        (upstream == NULL && (listen_addr != NULL || admin_addr != NULL || redis_addr != NULL ||
                              memcached_list != NULL))) {
        main_usage(stderr);
        return 2;
    }
    if (upstream != NULL) {
        m.cfg = config_quick(upstream, listen_addr, admin_addr, redis_addr, memcached_list, &err);
    } else {
        m.cfg_file = cfg_file != NULL ? cfg_file : TC_SYSCONFDIR "/tailcache.yaml";
        m.cfg = config_load(m.cfg_file, &err);
    }
    if (m.cfg == NULL) {
        fputs(err != NULL ? err : "tailcache: cannot load the configuration\n", stderr);
        free(err);
        return 1;
    }
    if (test_only) {
        printf("%s: ok\n", m.cfg_file != NULL ? m.cfg_file : "quick mode");
        config_unref(&m.cfg);
        return 0;
    }
    m.cfg_workers_from_file = m.cfg->workers;
    if (workers > 0)
        m.cfg->workers = (unsigned)workers;

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() < 0) {
        fprintf(stderr, "tailcache: libevent lacks pthreads support\n");
        return 1;
    }
    if (log_open(m.cfg->error_log, m.cfg->access_log, (enum log_level)m.cfg->log_level) < 0)
        return 1;
    m.base = event_base_new();
    if (m.base == NULL)
        fatal("cannot create the main event base");
    /* The memory cache lives for the process; a reload keeps its contents
     * (size, shards and eviction take effect at the next restart). */
    m.cache =
        cache_new(m.cfg->cache_memory_size, m.cfg->cache_shards,
                  m.cfg->cache_eviction == CONFIG_EVICT_LRU ? CACHE_EVICT_LRU : CACHE_EVICT_S3FIFO);
    /* The shared tiers' settings, like the memory cache's, are read once. */
    m.bans = ban_list_new(m.cfg->invalidation.max_bans);
    if ((m.tiers = tier_shared_new(m.cfg, m.bans)) == NULL)
        fatal("start-up failed");
    m.inval = inval_new(m.base, m.cache, m.bans, m.tiers, m.cfg);
    inval_load(m.inval); /* before any worker reads a shared tier */
    m.analytics = analytics_new(m.cfg);
    inval_set_analytics(m.inval, m.analytics);
    if (main_start_workers(&m) < 0)
        fatal("start-up failed");
    if (m.cfg->admin.len && (m.admin = admin_start(m.base, m.cfg, m.inval, m.analytics)) == NULL) {
        if (!m.cfg->admin_defaulted)
            fatal("start-up failed");
        log_warn("quick mode: no admin listener (%s is taken); pass --admin ADDR:PORT",
                 m.cfg->admin.text);
    }
    unsigned slot_ms = analytics_slot_ms(m.analytics);
    struct timeval slot = {slot_ms / 1000, (slot_ms % 1000) * 1000};
    m.ev_tick = event_new(m.base, -1, EV_PERSIST, main_on_tick, &m);
    if (m.ev_tick == NULL || event_add(m.ev_tick, &slot) < 0)
        fatal("cannot start the analytics timer");

    int sigs[] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT};
    struct event *sev[4];
    for (int i = 0; i < 4; i++) {
        sev[i] = evsignal_new(m.base, sigs[i], main_on_signal, &m);
        if (sev[i] == NULL || event_add(sev[i], NULL) < 0)
            fatal("cannot install signal handlers");
    }
    main_arm_ticket_rotation(&m, m.cfg);
    for (size_t i = 0; i < m.cfg->nlisten; i++)
        log_info("listening on http://%s/ with %u workers", m.cfg->listen[i].text, m.nworkers);
    for (size_t i = 0; i < m.cfg->tls.nlisten; i++)
        log_info("listening on https://%s/ with %u workers", m.cfg->tls.listen[i].text, m.nworkers);
    if (m.cfg->admin.len)
        log_info("admin on %s://%s/ (/healthz, /stats, /metrics, /dashboard)",
                 m.cfg->admin_tls ? "https" : "http", m.cfg->admin.text);

    event_base_dispatch(m.base);

    unsigned joined = main_join_workers(&m);
    if (joined < m.nworkers) {
        log_warn("drain timeout: %u of %u workers still had requests in flight; exiting anyway",
                 m.nworkers - joined, m.nworkers);
        log_flush(500); /* not log_close(): the workers still running may log */
        _exit(0);
    }
    log_info("drained; exiting");
    for (int i = 0; i < 4; i++)
        event_free(sev[i]);
    for (unsigned i = 0; i < m.nworkers; i++)
        worker_destroy(&m.workers[i]);
    stats_unregister_all();
    event_free(m.ev_tick);
    event_free(m.ev_tickets);
    analytics_free(&m.analytics); /* frees the workers' route lists too */
    free(m.workers);
    admin_free(&m.admin);
    inval_free(&m.inval);
    tier_shared_free(&m.tiers);
    ban_list_free(&m.bans);
    event_base_free(m.base);
    cache_free(&m.cache);
    config_unref(&m.cfg);
    log_close();
    libevent_global_shutdown();
    return 0;
}
