"""The shared cache tiers behind the memory cache: Redis and memcached.

A response stored in memory is also written, after the response and
asynchronously, to every tier of the route (routes[].cache.tiers; by
default memory plus every configured tier). A memory miss looks the tiers
up in order; a hit there ("tailcache; hit; ttl=N; detail=redis" or
"detail=memcached") is promoted into memory with its remaining lifetime,
and its Age still counts from the origin's response. Memory is emptied
here either by pushing objects out of a 1 MiB cache (tierlib.evict_memory)
or by restarting tailcache, which leaves the tiers warm. Also: expired
objects in a tier are never served as fresh, Vary variants survive the
trip, objects over a tier's max_object_size and responses that are not
storable never reach it, quick mode (--redis, --memcached) and the spread
of objects over two memcached servers (ketama).

Every wait is bounded; tests poll a tier (wait_in_redis, wait_in_memcached)
before depending on an object being there."""

import time

from harness import (KiB, Memcached, Origin, RedisServer, Reply, Tailcache, addr, free_port, get,
                     wait_for)
from tierlib import (CS_L2_HIT, REDIS_PREFIX, SMALL_MEMORY, assert_l2_hit, assert_mem_hit, assert_miss,
                     body_n, check_body, cs, evict_memory, fetches, numbered, tier_stats, tier_tc,
                     wait_in_memcached, wait_in_redis, wait_in_tiers, wait_stat)


def servers(tier, n_mc=2):
    """(redis, memcached list) for a test of tier ("redis" or "memcached"),
    started."""
    if tier == "redis":
        return RedisServer().start(), None
    return None, [Memcached(name="memcached-%d" % i).start() for i in range(n_mc)]


def wait_stored(tier, redis, mcs, needle):
    if tier == "redis":
        wait_in_redis(redis, needle)
    else:
        wait_in_memcached(mcs, needle)


def wait_stale(t_after, ttl):
    """Waits until a response stored before wall time t_after with ttl
    seconds of freshness left is certainly stale (whole seconds; at most
    ttl + 1 s): a wait on the clock, not a guess."""
    until = int(t_after) + ttl + 1.05
    while True:
        left = until - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


# --------------------------------------------------------------------------
# L2 hits after the memory cache lost the object

def l2_hit_after_eviction(tier):
    redis, mcs = servers(tier)
    o = Origin("o")
    tc = tier_tc(o, tiers=["memory", tier], redis=redis, memcached=mcs, memory=SMALL_MEMORY)
    numbered(o, "/t/victim", cc="max-age=60")
    r = get(tc.port, "/t/victim")
    check_body(r, "/t/victim", 1)
    assert_miss(r)
    # Not asked for again before the fillers: S3-FIFO would keep it then.
    wait_stored(tier, redis, mcs, body_n("/t/victim", 1))
    evict_memory(tc, o)
    r = get(tc.port, "/t/victim")
    check_body(r, "/t/victim", 1)
    ttl2, age2 = assert_l2_hit(r, tier, ttl=60)
    assert age2 <= 3, "Age %d on a %s hit for an object stored just now" % (age2, tier)
    # Promoted: the next request is a memory hit with the same remaining ttl.
    r = get(tc.port, "/t/victim")
    check_body(r, "/t/victim", 1)
    ttl3, _ = assert_mem_hit(r)
    assert ttl2 - 2 <= ttl3 <= ttl2, "promoted with ttl=%d after a %s hit with ttl=%d" % (
        ttl3, tier, ttl2)
    assert fetches(o, "/t/victim") == 1, "the origin was asked %d times" % fetches(o, "/t/victim")
    st = tier_stats(tc, tier)
    print("%s counters: %r" % (tier, st))
    assert st["hits"] >= 1 and st["stores"] >= 1, st
    assert st["errors"] == 0 and st["timeouts"] == 0, st


def test_redis_hit_after_memory_eviction():
    l2_hit_after_eviction("redis")


def test_memcached_hit_after_memory_eviction():
    l2_hit_after_eviction("memcached")


def promotion_keeps_age(tier):
    """An L2 hit's Age counts from the origin's response (its own Age plus
    the time since), and promotion into memory neither resets Age nor
    extends the lifetime."""
    redis, mcs = servers(tier)
    o = Origin("o")
    tc = tier_tc(o, tiers=["memory", tier], redis=redis, memcached=mcs)
    numbered(o, "/t/aged", cc="max-age=60", headers=[("Age", "10")])
    r = get(tc.port, "/t/aged")
    t_stored = time.time()
    check_body(r, "/t/aged", 1)
    wait_stored(tier, redis, mcs, body_n("/t/aged", 1))
    # Let two whole seconds pass since the origin's response.
    while time.time() < t_stored + 2.1:
        time.sleep(0.1)
    tc.restart()
    r = get(tc.port, "/t/aged")
    check_body(r, "/t/aged", 1)
    ttl, age = assert_l2_hit(r, tier)
    print("%s hit %.1fs after the origin's Age: 10 response: Age %d, ttl %d" % (
        tier, time.time() - t_stored, age, ttl))
    assert age >= 11, "%s hit Age %d: the origin sent Age: 10 more than 2 s ago" % (tier, age)
    assert ttl <= 49, "%s hit ttl=%d: max-age=60 with Age >= 11" % (tier, ttl)
    assert 58 <= ttl + age <= 61, "ttl %d + Age %d should be the lifetime, 60" % (ttl, age)
    r = get(tc.port, "/t/aged")
    check_body(r, "/t/aged", 1)
    ttl2, age2 = assert_mem_hit(r)
    assert age2 >= age, "promotion reset Age: %d on the %s hit, %d on the memory hit" % (
        age, tier, age2)
    assert ttl - 2 <= ttl2 <= ttl, "promotion changed the remaining ttl: %d on the %s hit, " \
        "%d on the memory hit" % (ttl, tier, ttl2)
    assert fetches(o, "/t/aged") == 1


def test_promotion_keeps_age_and_ttl_redis():
    promotion_keeps_age("redis")


def test_promotion_keeps_age_and_ttl_memcached():
    promotion_keeps_age("memcached")


def expired_never_fresh(tier):
    """Expired objects in a tier are refetched, not served. /x/b has
    max-age=3 with Age: 2 from the origin: one second of freshness, which
    a tier TTL taken from max-age alone would stretch to three."""
    redis, mcs = servers(tier)
    o = Origin("o")
    tc = tier_tc(o, tiers=["memory", tier], redis=redis, memcached=mcs)
    numbered(o, "/x/a", cc="max-age=1")
    numbered(o, "/x/b", cc="max-age=3", headers=[("Age", "2")])
    numbered(o, "/x/c", cc="max-age=1", headers=[("ETag", '"c1"')])
    for p in ("/x/a", "/x/b", "/x/c"):
        check_body(get(tc.port, p), p, 1)
    t_after = time.time()
    # The writes are counted rather than looked for: a tier may drop an
    # object as it expires, which is fine, before the test sees it there.
    wait_stat(tc, "tier_%s_stores" % tier, 3, msg="the three writes to %s" % tier)
    wait_stale(t_after, 1)
    tc.restart()
    for p in ("/x/a", "/x/b", "/x/c"):
        r = get(tc.port, p)
        assert "; hit" not in cs(r), "%s: an expired object was served from %s: %r" % (
            p, tier, cs(r))
        check_body(r, p, 2)
        assert fetches(o, p) == 2, p
    print("%s counters after the restart: %r" % (tier, tier_stats(tc, tier)))


def test_expired_redis_object_never_fresh():
    expired_never_fresh("redis")


def test_expired_memcached_object_never_fresh():
    expired_never_fresh("memcached")


# --------------------------------------------------------------------------
# restarts and default tiers

def restart_serves_l2(tier):
    """Without routes[].cache.tiers the route uses memory plus every
    configured tier; a restarted tailcache in front of a warm tier serves
    hits from it at once: the first request after start-up is one."""
    redis, mcs = servers(tier)
    o = Origin("o")
    tc = tier_tc(o, tiers=None, redis=redis, memcached=mcs)
    paths = ["/r/%d" % i for i in range(5)]
    for p in paths:
        numbered(o, p)
        check_body(get(tc.port, p), p, 1)
    for p in paths:
        wait_stored(tier, redis, mcs, body_n(p, 1))
    tc.restart()
    for p in paths:
        r = get(tc.port, p)
        check_body(r, p, 1)
        assert_l2_hit(r, tier, ttl=60, slack=5)
    for p in paths:
        r = get(tc.port, p)
        check_body(r, p, 1)
        assert_mem_hit(r)
    assert all(fetches(o, p) == 1 for p in paths), {p: fetches(o, p) for p in paths}
    st = tier_stats(tc, tier)
    print("%s counters after the restart: %r" % (tier, st))
    assert st["hits"] >= 5 and st["errors"] == 0 and st["timeouts"] == 0, st


def test_restart_serves_redis_hits():
    restart_serves_l2("redis")


def test_restart_serves_memcached_hits():
    restart_serves_l2("memcached")


def test_default_tiers_both():
    """With Redis and memcached configured and no tiers on the route, an
    object goes to both; with Redis emptied, memcached still answers."""
    redis = RedisServer().start()
    mcs = [Memcached(name="memcached-%d" % i).start() for i in range(2)]
    o = Origin("o")
    tc = tier_tc(o, tiers=None, redis=redis, memcached=mcs)
    numbered(o, "/both")
    check_body(get(tc.port, "/both"), "/both", 1)
    wait_in_tiers(body_n("/both", 1), redis=redis, memcached=mcs)
    tc.restart()
    r = get(tc.port, "/both")
    check_body(r, "/both", 1)
    assert CS_L2_HIT.match(cs(r)), "after a restart: %r" % cs(r)
    # Redis emptied: the lookup goes on to memcached.
    redis.flushall()
    tc.restart()
    r = get(tc.port, "/both")
    check_body(r, "/both", 1)
    assert_l2_hit(r, "memcached")
    assert fetches(o, "/both") == 1


# --------------------------------------------------------------------------
# what goes through a tier

def vary_through_tier(tier):
    redis, mcs = servers(tier)
    o = Origin("o")
    tc = tier_tc(o, tiers=["memory", tier], redis=redis, memcached=mcs)
    seen = {}

    def h(req):
        ae = req.header("Accept-Encoding")
        with o.lock:
            seen[ae] = seen.get(ae, 0) + 1
            n = seen[ae]
        return Reply(200, [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")],
                     body=("vary ae=%s n=%d\n" % (ae, n)).encode())
    o.handle("/vary", h)

    def ae(value):
        return get(tc.port, "/vary", headers=[("Accept-Encoding", value)] if value else None)
    for v in ("gzip", "br"):
        r = ae(v)
        assert r.body == ("vary ae=%s n=1\n" % v).encode(), r.body
    for v in ("gzip", "br"):
        wait_stored(tier, redis, mcs, "vary ae=%s n=1" % v)
    tc.restart()
    for v in ("br", "gzip"):
        r = ae(v)
        assert r.body == ("vary ae=%s n=1\n" % v).encode(), \
            "Accept-Encoding %s after the restart got %r (%s)" % (v, r.body, cs(r))
        assert_l2_hit(r, tier)
        assert r.header("Vary") == "Accept-Encoding", r.headers
    # A variant nobody stored is a miss, not another variant's body.
    r = ae(None)
    assert r.body == b"vary ae=None n=1\n", "no Accept-Encoding got %r (%s)" % (r.body, cs(r))
    assert_miss(r)
    for v in ("gzip", "br"):
        r = ae(v)
        assert r.body == ("vary ae=%s n=1\n" % v).encode(), r.body
        assert_mem_hit(r)
    assert seen == {"gzip": 1, "br": 1, None: 1}, seen


def test_vary_through_redis():
    vary_through_tier("redis")


def test_vary_through_memcached():
    vary_through_tier("memcached")


def test_redis_max_object_size():
    """An object larger than cache.redis.max_object_size skips the tier
    (memory still keeps it); smaller ones go in."""
    redis = RedisServer().start()
    o = Origin("o")
    tc = tier_tc(o, tiers=["memory", "redis"], redis=redis,
                 redis_opts={"max_object_size": "64k"})
    numbered(o, "/big", size=100 * KiB)
    numbered(o, "/edge", size=60 * KiB)
    numbered(o, "/small", size=1 * KiB)
    for p, n in (("/big", 100 * KiB), ("/edge", 60 * KiB), ("/small", KiB)):
        r = get(tc.port, p)
        check_body(r, p, 1)
        assert len(r.body) == n, (p, len(r.body))
    assert_mem_hit(get(tc.port, "/big"))
    # Writes are asynchronous and in order of completion: once the later
    # ones are in, the big one would be too.
    wait_in_redis(redis, body_n("/small", 1))
    wait_in_redis(redis, body_n("/edge", 1))
    assert redis.find(body_n("/big", 1), REDIS_PREFIX + "*") == [], \
        "a 100 KiB object went to redis (max_object_size 64k)"
    tc.restart()
    r = get(tc.port, "/big")
    check_body(r, "/big", 2)
    assert_miss(r)
    for p in ("/small", "/edge"):
        r = get(tc.port, p)
        check_body(r, p, 1)
        assert_l2_hit(r, "redis")


def test_not_storable_never_reaches_tiers():
    redis = RedisServer().start()
    mcs = [Memcached(name="memcached-%d" % i).start() for i in range(2)]
    o = Origin("o")
    tc = tier_tc(o, tiers=["memory", "redis", "memcached"], redis=redis, memcached=mcs)
    cases = {
        "/ns/private": dict(cc="private, max-age=60"),
        "/ns/no-store": dict(cc="no-store, max-age=60"),
        "/ns/error": dict(cc="max-age=60", status=500),
        "/ns/no-freshness": dict(cc=None),
        "/ns/cookie": dict(cc="max-age=60", headers=[("Set-Cookie", "id=1; Path=/")]),
        "/ns/vary-star": dict(cc="max-age=60", headers=[("Vary", "*")]),
    }
    for p, kw in cases.items():
        numbered(o, p, **kw)
    # Storable responses whose request forbids storing them.
    numbered(o, "/ns/auth", cc="max-age=60")
    numbered(o, "/ns/req-no-store", cc="max-age=60")
    numbered(o, "/ns/marker", cc="max-age=60")
    for p in cases:
        r = get(tc.port, p)
        assert r.body.startswith(body_n(p, 1)), (p, r)
        assert "stored" not in cs(r), "%s: %r" % (p, cs(r))
    r = get(tc.port, "/ns/auth", headers=[("Authorization", "Basic dXNlcjpwYXNz")])
    check_body(r, "/ns/auth", 1)
    r = get(tc.port, "/ns/req-no-store", headers=[("Cache-Control", "no-store")])
    check_body(r, "/ns/req-no-store", 1)
    # Written after everything above: once it is in both tiers, anything
    # above that was going to be written would be there too.
    check_body(get(tc.port, "/ns/marker"), "/ns/marker", 1)
    wait_in_tiers(body_n("/ns/marker", 1), redis=redis, memcached=mcs)
    # Not needed for a pass: a little more time for a wrong write to show.
    time.sleep(0.2)
    for p in list(cases) + ["/ns/auth", "/ns/req-no-store"]:
        needle = body_n(p, 1)
        assert redis.find(needle, "*") == [], "%s reached redis" % p
        for m in mcs:
            assert m.find(needle) == [], "%s reached memcached %s" % (p, m.addr)
    tc.restart()
    for p in list(cases) + ["/ns/auth", "/ns/req-no-store"]:
        r = get(tc.port, p)
        assert r.body.startswith(body_n(p, 2)), "%s after the restart: %r %r (%s)" % (
            p, r, r.body[:60], cs(r))
    r = get(tc.port, "/ns/marker")
    check_body(r, "/ns/marker", 1)
    assert_l2_hit(r, "redis")


# --------------------------------------------------------------------------
# quick mode

def quick_mode(tier):
    redis, mcs = servers(tier)
    o = Origin("o")
    numbered(o, "/quick")
    port, admin = free_port(), free_port()
    args = ["--upstream", "http://%s" % o.addr, "--listen", addr(port), "--admin", addr(admin),
            "--workers", "2"]
    if tier == "redis":
        args += ["--redis", redis.addr]
    else:
        args += ["--memcached", ",".join(m.addr for m in mcs)]
    tc = Tailcache(args=args, port=port, admin_port=admin).start()
    r = get(tc.port, "/quick")
    check_body(r, "/quick", 1)
    assert_miss(r)
    assert_mem_hit(get(tc.port, "/quick"))
    if tier == "redis":
        # quick mode keeps the default key prefix, "tc:"
        wait_in_redis(redis, body_n("/quick", 1), prefix="tc:")
    else:
        wait_in_memcached(mcs, body_n("/quick", 1))
    tc.restart()
    r = get(tc.port, "/quick")
    check_body(r, "/quick", 1)
    assert_l2_hit(r, tier)
    assert fetches(o, "/quick") == 1


def test_quick_mode_redis():
    quick_mode("redis")


def test_quick_mode_memcached():
    quick_mode("memcached")


# --------------------------------------------------------------------------
# memcached: objects spread over the servers

def test_memcached_ketama_spread():
    mcs = [Memcached(name="memcached-%d" % i).start() for i in range(2)]
    o = Origin("o")
    tc = tier_tc(o, tiers=["memory", "memcached"], memcached=mcs)
    n = 64
    for i in range(n):
        p = "/spread/%d" % i
        numbered(o, p)
        check_body(get(tc.port, p), p, 1)
    wait_stat(tc, "tier_memcached_stores", n, msg="the %d objects to be written" % n)
    wait_for(lambda: sum(m.curr_items() for m in mcs) >= n, 10,
             msg="%d items over the two servers (have %r)" % (n, [m.curr_items() for m in mcs]))
    items = [m.curr_items() for m in mcs]
    print("%d objects over two memcached servers: %r items" % (n, items))
    assert all(x > 0 for x in items), "every object went to one server: %r" % items
    assert min(items) >= n // 10, "ketama spread %r is too uneven for %d keys" % (items, n)
    # Each object is on one server, not copied to both.
    for i in (0, 17, 42):
        needle = body_n("/spread/%d" % i, 1)
        on = [m.addr for m in mcs if m.find(needle)]
        assert len(on) == 1, "/spread/%d is on %r" % (i, on)
