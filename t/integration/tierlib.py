"""Helpers shared by the tests of the shared cache tiers (Redis,
memcached) and of invalidation: test_tiers.py, test_invalidation.py,
test_tier_faults.py. Not a test file itself.

What tailcache promises here (the specification the tests follow):
  - Cache-Status on a memory hit: "tailcache; hit; ttl=N; detail=memory";
    on a hit in a shared tier: "tailcache; hit; ttl=N; detail=redis" or
    "detail=memcached"; on a miss "tailcache; fwd=miss; ...";
  - writes to the shared tiers happen after the response, asynchronously:
    tests poll the tier (wait_in_redis / wait_in_memcached) before
    depending on an object being there;
  - /stats has tier_redis_* and tier_memcached_* counters (hits, misses,
    errors, timeouts, skipped, stores) and inval_requests,
    inval_broadcast_sent, inval_broadcast_received.
"""

import re
import threading
import time
import urllib.parse

from harness import KiB, Reply, Tailcache, addr, get, request, simple_config, wait_for

CS_MEM_HIT = re.compile(r"^tailcache; hit; ttl=(-?\d+); detail=memory$")
CS_L2_HIT = re.compile(r"^tailcache; hit; ttl=(-?\d+); detail=(redis|memcached)$")

TIER_COUNTERS = ("hits", "misses", "errors", "timeouts", "skipped", "stores")
INVAL_COUNTERS = ("inval_requests", "inval_broadcast_sent", "inval_broadcast_received")

REDIS_PREFIX = "tct:"


def cs(r):
    return r.header("Cache-Status") or ""


def assert_mem_hit(r, ttl=None, slack=2):
    """r is a memory hit; returns (ttl, age)."""
    m = CS_MEM_HIT.match(cs(r))
    assert m, "want a memory hit, got Cache-Status %r (%r)" % (cs(r), r)
    age = r.header("Age")
    assert age is not None and re.match(r"^\d+$", age), "hit without a valid Age: %r" % r.headers
    got = int(m.group(1))
    if ttl is not None:
        assert ttl - slack <= got <= ttl, "memory hit ttl=%d, want about %d: %r" % (got, ttl, cs(r))
    return got, int(age)


def assert_l2_hit(r, tier, ttl=None, slack=2):
    """r is a hit from the shared tier named tier ("redis" or "memcached");
    returns (ttl, age)."""
    m = CS_L2_HIT.match(cs(r))
    assert m and m.group(2) == tier, "want a %s hit ('tailcache; hit; ttl=N; detail=%s'), got " \
        "Cache-Status %r (%r)" % (tier, tier, cs(r), r)
    age = r.header("Age")
    assert age is not None and re.match(r"^\d+$", age), "%s hit without a valid Age: %r" % (
        tier, r.headers)
    got = int(m.group(1))
    if ttl is not None:
        assert ttl - slack <= got <= ttl, "%s hit ttl=%d, want about %d: %r" % (tier, got, ttl,
                                                                                 cs(r))
    return got, int(age)


def assert_miss(r):
    """r was fetched from the origin: Cache-Status says fwd=..., not hit."""
    s = cs(r)
    assert s.startswith("tailcache; fwd=") and "; hit" not in s, \
        "want a miss (Cache-Status 'tailcache; fwd=...'), got %r (%r)" % (s, r)


# --------------------------------------------------------------------------
# configs

def cache_config(redis=None, memcached=None, memory=None, redis_opts=None, mc_opts=None):
    """The top-level cache: section. redis: a RedisServer (or a port);
    memcached: a list of Memcached (or ports). Test defaults: prefix
    REDIS_PREFIX, timeouts generous enough for a sanitizer build on a busy
    box (the fault tests pass their own)."""
    c = {}
    if memory:
        c["memory"] = dict(memory)
    if redis is not None:
        port = redis if isinstance(redis, int) else redis.port
        rc = {"address": addr(port), "prefix": REDIS_PREFIX, "timeout": "1s",
              "connect_timeout": "1s"}
        rc.update(redis_opts or {})
        c["redis"] = rc
    if memcached:
        mc = {"servers": [addr(m if isinstance(m, int) else m.port) for m in memcached],
              "timeout": "1s"}
        mc.update(mc_opts or {})
        c["memcached"] = mc
    return c


def tier_tc(o, tiers=None, redis=None, memcached=None, memory=None, redis_opts=None,
            mc_opts=None, route=None, routes=None, invalidation=None, start=True, name=None,
            **top):
    """A tailcache in front of Origin o whose catch-all route "default"
    caches through tiers (None: the key is left out, so the default
    applies); routes: extra routes tried first (each {"name", "prefix",
    "cache": ...}, upstream "o" added)."""
    rc = {"enabled": True}
    if tiers is not None:
        rc["tiers"] = list(tiers)
    rt = {"cache": rc}
    if route:
        extra = dict(route)
        rc.update(extra.pop("cache", {}))
        rt.update(extra)
    cfg = simple_config(o, route=rt, **top)
    if routes:
        cfg["routes"] = [dict({"upstream": "o"}, **r) for r in routes] + cfg["routes"]
    cfg["cache"] = cache_config(redis, memcached, memory, redis_opts, mc_opts)
    if invalidation is not None:
        cfg["invalidation"] = invalidation
    tc = Tailcache(cfg, name=name or "tailcache")
    return tc.start() if start else tc


# --------------------------------------------------------------------------
# counters

def tier_stats(tc, tier):
    """The tier_<tier>_* counters, without the prefix (asserts they exist)."""
    s = tc.stats()
    out = {}
    for k in TIER_COUNTERS:
        key = "tier_%s_%s" % (tier, k)
        assert key in s, "/stats lacks %r (has %r)" % (key, sorted(x for x in s if "tier" in x))
        out[k] = s[key]
    return out


def inval_stats(tc):
    s = tc.stats()
    for k in INVAL_COUNTERS:
        assert k in s, "/stats lacks %r" % k
    return {k: s[k] for k in INVAL_COUNTERS}


def wait_stat(tc, key, at_least, timeout=10, msg=None):
    """Waits (bounded) until /stats key >= at_least; returns its value."""
    last = {}

    def ok():
        last["v"] = tc.stats().get(key)
        return last["v"] is not None and last["v"] >= at_least
    try:
        wait_for(ok, timeout, interval=0.05, msg=msg or "%s >= %d" % (key, at_least))
    except AssertionError:
        raise AssertionError("waited %.0fs for %s >= %d; it is %r%s" % (
            timeout, key, at_least, last.get("v"), " (%s)" % msg if msg else ""))
    return last["v"]


# --------------------------------------------------------------------------
# looking inside the tiers

def wait_in_redis(r, needle, timeout=10, prefix=REDIS_PREFIX):
    """Waits (bounded) until a key under prefix holds needle (in its name or
    its value: the envelope carries the cache key, the headers and the
    body); returns the keys found."""
    return wait_for(lambda: r.find(needle, prefix + "*"), timeout, interval=0.05,
                    msg="%r to be stored in redis (keys now: %r)" % (
                        needle, r.keys(prefix + "*")[:20]))


def in_memcached(mcs, needle):
    """(server, keys) of the first of the Memcached servers holding needle, or None."""
    for m in mcs:
        ks = m.find(needle)
        if ks:
            return m, ks
    return None


def wait_in_memcached(mcs, needle, timeout=10):
    if not isinstance(mcs, (list, tuple)):
        mcs = [mcs]
    return wait_for(lambda: in_memcached(mcs, needle), timeout, interval=0.05,
                    msg="%r to be stored in memcached (items: %r)" % (
                        needle, [m.curr_items() for m in mcs]))


def wait_in_tiers(needle, redis=None, memcached=None, timeout=10):
    if redis is not None:
        wait_in_redis(redis, needle, timeout)
    if memcached:
        wait_in_memcached(memcached, needle, timeout)


# --------------------------------------------------------------------------
# origin handlers

def fetches(o, target, host=None):
    """GETs for target (path?query, exactly as the origin received it)
    that reached the origin through a numbered() handler, for one Host or
    all."""
    counts = getattr(o, "_fetch_counts", {})
    with o.lock:
        return sum(n for (h, t), n in counts.items() if t == target and host in (None, h))


def numbered(o, path, cc="max-age=60", headers=(), size=0, with_host=False, status=200):
    """Serves GETs of path (any query) with a body naming the target and how
    many GETs of it (per Host) the origin answered: "TARGET n=K\n" (with
    with_host: "HOST TARGET n=K\n"), padded to size bytes with '.' when
    size is given. Every origin fetch is told apart, and the text is a
    needle to look for inside a tier. headers: a list, or a callable(req)
    returning one. Other methods get 405 (tests handle writes themselves)."""
    if not hasattr(o, "_fetch_counts"):
        o._fetch_counts = {}

    def h(req):
        if req.method not in ("GET", "HEAD"):
            return Reply(405, [("Allow", "GET, HEAD")], body=b"numbered: GET only\n")
        host = req.header("Host") or ""
        key = (host, req.target)
        with o.lock:
            n = o._fetch_counts.get(key, 0) + (req.method == "GET")
            o._fetch_counts[key] = n
        text = ("%s %s n=%d\n" % (host, req.target, n)) if with_host else \
            ("%s n=%d\n" % (req.target, n))
        body = text.encode()
        if size > len(body):
            body += b"." * (size - len(body))
        hs = headers(req) if callable(headers) else list(headers)
        return Reply(status, ([("Cache-Control", cc)] if cc else []) + hs, body=body)
    o.handle(path, h)


def body_n(target, n, host=None):
    """The start of numbered()'s body for fetch n of target."""
    if host is not None:
        return ("%s %s n=%d\n" % (host, target, n)).encode()
    return ("%s n=%d\n" % (target, n)).encode()


def check_body(r, target, n, host=None):
    want = body_n(target, n, host)
    assert r.status == 200 and r.body[:len(want)] == want, \
        "%s%s: want body %r (origin fetch #%d), got %d %r (Cache-Status %r)" % (
            host + " " if host else "", target, want, n, r.status, r.body[:60], cs(r))


_fill_seq = [0]
_fill_lock = threading.Lock()


def evict_memory(tc, o, n=8, size=300 * KiB):
    """Pushes earlier entries out of a small memory cache (SMALL_MEMORY:
    size 1m, shards 1) by fetching n new cacheable objects of size bytes
    each (fresh paths every call, /fill/K). With S3-FIFO an entry asked for
    only once (its miss) is evicted by the third 300 KiB object after it;
    one that was hit in memory meanwhile moves to the main queue, which a
    stream of one-off fillers never reaches: do not hit the victim first."""
    for _ in range(n):
        with _fill_lock:
            _fill_seq[0] += 1
            k = _fill_seq[0]
        path = "/fill/%d" % k
        o.handle(path, Reply(200, [("Cache-Control", "max-age=60")], size=size))
        r = get(tc.port, path, timeout=15)
        assert r.status == 200 and len(r.body) == size, "filler %s: %r" % (path, r)


SMALL_MEMORY = {"size": "1m", "shards": 1}


# --------------------------------------------------------------------------
# invalidation API

def invalidate(tc, kind, **params):
    """POST /invalidate/KIND?params on the admin listener; returns the
    Response with .json set (the decoded object, or None)."""
    import json
    q = urllib.parse.urlencode(params)
    r = tc.admin_post("/invalidate/%s%s" % (kind, "?" + q if q else ""))
    r.json = None
    if r.status == 200:
        try:
            r.json = json.loads(r.body.decode())
        except ValueError:
            raise AssertionError("POST /invalidate/%s: 200 without a JSON body: %r" % (
                kind, r.body[:300]))
    return r


def invalidate_ok(tc, kind, removed=None, min_removed=None, **params):
    """invalidate() that must succeed: 200, a JSON object with "kind" equal
    to kind and "removed" (memory entries removed on this node) equal to
    removed / at least min_removed when given. Returns the object."""
    r = invalidate(tc, kind, **params)
    assert r.status == 200, "POST /invalidate/%s %r: %d %r" % (kind, params, r.status,
                                                              r.body[:300])
    j = r.json
    assert isinstance(j, dict), "POST /invalidate/%s: not a JSON object: %r" % (kind, j)
    assert j.get("kind") == kind, "POST /invalidate/%s answered kind %r: %r" % (
        kind, j.get("kind"), j)
    assert isinstance(j.get("removed"), int), "no integer \"removed\" in %r" % j
    if removed is not None:
        assert j["removed"] == removed, "POST /invalidate/%s %r removed %d memory entries, " \
            "want %d: %r" % (kind, params, j["removed"], removed, j)
    if min_removed is not None:
        assert j["removed"] >= min_removed, "POST /invalidate/%s %r removed %d memory " \
            "entries, want at least %d: %r" % (kind, params, j["removed"], min_removed, j)
    return j


def purge(port, path, host="test", headers=None):
    """The PURGE method on the traffic listener."""
    return request(port, "PURGE", path, host=host, headers=headers)


def since(t0):
    return time.monotonic() - t0
