"""A shared tier that dies, stalls or is not there yet must cost clients
nothing but a bounded delay: no failed request, latency within the tier's
timeout plus a margin, and the tier rejoins by itself once it is back.

Setup: a small memory cache (1 MiB) in front of 60 objects of 48 KiB, so
that about two requests in three miss memory and look the tier up; Redis
with timeout 50ms, breaker_failures 3, breaker_cooldown 1s, backoff 100ms
to 1s; memcached (two servers) with timeout 50ms and retry 1s. A
LoadGenerator (8 keep-alive clients) runs throughout; the fault is
injected after a warm phase and repaired after about 2.5 s.

The latency bound, MAX_LATENCY, is generous on purpose (sanitizer builds on
a busy 2-core box, Python clients); every run prints the measured p99 and
maximum per phase."""

import re
import time

from harness import KiB, LoadGenerator, Memcached, Origin, RedisServer, get, wait_for
from tierlib import (SMALL_MEMORY, assert_l2_hit, body_n, check_body, numbered, since,
                     tier_stats, tier_tc, wait_stat)

MAX_LATENCY = 1.5
NKEYS = 60
SIZE = 48 * KiB
WARM_S = 1.5
OUTAGE_S = 2.5

REDIS_OPTS = {"timeout": "50ms", "connect_timeout": "100ms", "backoff_min": "100ms",
              "backoff_max": "1s", "breaker_failures": 3, "breaker_cooldown": "1s"}
MC_OPTS = {"timeout": "50ms", "threads": 4, "retry": "1s"}


def keys():
    return ["/k/%d" % i for i in range(NKEYS)]


def check(target, r):
    want = body_n(target, 1)[:-2]  # "/k/N n=" whatever the fetch number
    if not r.body.startswith(want) or len(r.body) != SIZE:
        return "body %r... (%d bytes) for %s" % (r.body[:40], len(r.body), target)
    return None


def fault_setup(tier):
    o = Origin("o")
    for p in keys():
        numbered(o, p, cc="max-age=60", size=SIZE)
    if tier == "redis":
        redis = RedisServer().start()
        mcs = None
        tc = tier_tc(o, tiers=["memory", "redis"], redis=redis, memory=SMALL_MEMORY,
                     redis_opts=REDIS_OPTS)
    else:
        redis = None
        mcs = [Memcached(name="memcached-%d" % i).start() for i in range(2)]
        tc = tier_tc(o, tiers=["memory", "memcached"], memcached=mcs, memory=SMALL_MEMORY,
                     mc_opts=MC_OPTS)
    for p in keys():
        r = get(tc.port, p)
        assert r.status == 200 and len(r.body) == SIZE, (p, r)
    wait_stat(tc, "tier_%s_stores" % tier, NKEYS, msg="the warm-up writes")
    return o, tc, redis, mcs


def phase_report(load, marks):
    """Per phase: requests, p99 and max latency (ms)."""
    names = sorted(marks.items(), key=lambda kv: kv[1])
    out = []
    for i, (name, t0) in enumerate(names):
        t1 = names[i + 1][1] if i + 1 < len(names) else None
        n = load.count(t0=t0, t1=t1)
        p99 = load.p99(t0, t1)
        mx = load.max_latency(t0, t1)
        out.append("%s: %d requests, p99 %s, max %s" % (
            name, n, "-" if p99 is None else "%.1fms" % (p99 * 1000),
            "-" if mx is None else "%.1fms" % (mx * 1000)))
    return "; ".join(out)


def under_load(tier, fault, repair, rejoined, outage_counters):
    """Runs the load, injects fault() after WARM_S, calls repair() OUTAGE_S
    later, waits (bounded) until rejoined(stats_at_repair) is true, runs a
    little more, and checks: no failure, latency bound, the outage was
    seen by the tier's counters, requests were served meanwhile."""
    o, tc, redis, mcs = fault_setup(tier)
    load = start_load(tc)
    marks = {}
    try:
        marks["1 before"] = load.t_start
        wait_for(lambda: since(load.t_start) >= WARM_S and load.done >= 50, 10,
                 msg="the load to get going (%s)" % load.summary())
        s_before = tier_stats(tc, tier)
        marks["2 fault"] = time.monotonic()
        fault(redis, mcs)
        # The outage lasts OUTAGE_S (a wait on the clock: its length is the
        # point), and the tier must have noticed it by then.
        wait_for(lambda: since(marks["2 fault"]) >= OUTAGE_S, OUTAGE_S + 1)
        s_fault = tier_stats(tc, tier)
        marks["3 repaired"] = time.monotonic()
        repair(redis, mcs)
        t_repaired = time.monotonic()
        s_repair = tier_stats(tc, tier)
        try:
            wait_for(lambda: rejoined(tc, redis, mcs, s_repair), 15, interval=0.1,
                     msg="the %s tier to rejoin" % tier)
        except AssertionError:
            raise AssertionError("the %s tier did not rejoin within 15 s: counters at the "
                                 "repair %r, now %r; load %s" % (tier, s_repair,
                                                                 tier_stats(tc, tier),
                                                                 load.summary()))
        rejoin_s = since(t_repaired)
        marks["4 rejoined"] = time.monotonic()
        wait_for(lambda: since(marks["4 rejoined"]) >= 1.0, 2)
    finally:
        load.stop()
    s_end = tier_stats(tc, tier)
    print("%s: rejoined %.2fs after the repair; load %s" % (tier, rejoin_s, load.summary()))
    print("phases: %s" % phase_report(load, marks))
    print("counters: before %r, end of fault %r, end %r" % (s_before, s_fault, s_end))
    assert load.failed == 0, "%d failed requests: %s" % (load.failed, load.failures)
    mx = load.max_latency()
    assert mx < MAX_LATENCY, "max latency %.3fs (bound %.1fs): %s" % (mx, MAX_LATENCY,
                                                                      phase_report(load, marks))
    during = load.count(lambda rec: rec[2] == 200, marks["2 fault"], marks["3 repaired"])
    assert during >= 20, "only %d requests served during the outage: %s" % (
        during, phase_report(load, marks))
    grew = {k: s_fault[k] - s_before[k] for k in outage_counters}
    assert sum(grew.values()) > 0, "the outage left no trace in %s: %r" % (outage_counters, grew)
    assert tc.alive()


def start_load(tc):
    """The fault tests' load: 8 keep-alive clients over the 60 keys,
    bounded at 40 s whatever happens."""
    return LoadGenerator(tc.port, keys(), threads=8, max_seconds=40.0, timeout=5.0,
                         check=check).start()


def grew(s_now, s_then, *names):
    return all(s_now[n] > s_then[n] for n in names)


# --------------------------------------------------------------------------
# Redis

def test_redis_killed_and_restarted_under_load():
    def rejoined(tc, redis, mcs, at_repair):
        # Redis came back empty: stores must resume, then hits.
        return grew(tier_stats(tc, "redis"), at_repair, "stores", "hits") and redis.dbsize() > 0
    under_load("redis", fault=lambda r, m: r.kill(), repair=lambda r, m: r.restart(),
               rejoined=rejoined, outage_counters=("errors", "skipped", "timeouts"))


def test_redis_stalled_under_load():
    """SIGSTOP: connections hang rather than fail; lookups time out."""
    def rejoined(tc, redis, mcs, at_repair):
        # Redis kept its data: hits resume.
        return grew(tier_stats(tc, "redis"), at_repair, "hits")
    under_load("redis", fault=lambda r, m: r.pause(), repair=lambda r, m: r.resume(),
               rejoined=rejoined, outage_counters=("timeouts",))


def started_while_down(tier):
    """tailcache starts while its tier is not running: it serves from the
    origin, and the tier joins when it starts, with no restart."""
    o = Origin("o")
    if tier == "redis":
        server = RedisServer()
        kw = dict(redis=server, redis_opts=dict(REDIS_OPTS, backoff_max="500ms"))
    else:
        server = Memcached()
        kw = dict(memcached=[server], mc_opts=MC_OPTS)
    tc = tier_tc(o, tiers=["memory", tier], **kw)
    for i in range(10):
        p = "/d/%d" % i
        numbered(o, p)
        t0 = time.monotonic()
        r = get(tc.port, p)
        took = since(t0)
        check_body(r, p, 1)
        assert took < MAX_LATENCY, "%s took %.3fs with %s down" % (p, took, tier)
    server.start()
    t_up = time.monotonic()
    seq = [0]

    def stored_late_object():
        """A /late/K object found in the tier, or None."""
        if tier == "redis":
            values = [server.cmd("GET", k) for k in server.find(b"/late/", "*")]
        else:
            values = [server.get(k) for k in server.find(b"/late/")]
        for v in values:
            m = re.search(rb"(/late/\d+) n=1\n", v or b"")
            if m:
                return m.group(1).decode()
        return None

    def joined():
        # Only misses write to the tier: keep making some.
        seq[0] += 1
        p = "/late/%d" % seq[0]
        numbered(o, p)
        check_body(get(tc.port, p), p, 1)
        return stored_late_object()
    p = wait_for(joined, 15, interval=0.1, msg="%s to be used once it started" % tier)
    print("%s joined %.2fs after it started (%d new objects asked for, %s found there)" % (
        tier, since(t_up), seq[0], p))
    assert tier_stats(tc, tier)["stores"] > 0
    # A second node in front of the same tier finds it there.
    tc2 = tier_tc(o, tiers=["memory", tier], name="tailcache-2", **kw)
    r = get(tc2.port, p)
    check_body(r, p, 1)
    assert_l2_hit(r, tier)


def test_started_while_redis_down():
    started_while_down("redis")


def test_started_while_memcached_down():
    started_while_down("memcached")


# --------------------------------------------------------------------------
# memcached: one of two servers

def test_memcached_server_killed_and_restarted_under_load():
    def rejoined(tc, redis, mcs, at_repair):
        # The restarted server came back empty: it must get objects again,
        # and answer lookups.
        st = mcs[0].stats()
        return grew(tier_stats(tc, "memcached"), at_repair, "stores", "hits") and \
            st["curr_items"] > 0 and st["get_hits"] > 0
    under_load("memcached", fault=lambda r, m: m[0].kill(), repair=lambda r, m: m[0].restart(),
               rejoined=rejoined, outage_counters=("errors", "skipped", "timeouts"))


def test_memcached_server_stalled_under_load():
    hits = {}

    def repair(r, m):
        m[0].resume()
        # Gets that were waiting in its sockets are answered (to nobody)
        # first: count from after them.
        time.sleep(0.3)
        hits["resumed"] = m[0].stats()["get_hits"]

    def rejoined(tc, redis, mcs, at_repair):
        return grew(tier_stats(tc, "memcached"), at_repair, "hits") and \
            mcs[0].stats()["get_hits"] > hits["resumed"]
    under_load("memcached", fault=lambda r, m: m[0].pause(), repair=repair,
               rejoined=rejoined, outage_counters=("timeouts", "errors", "skipped"))
