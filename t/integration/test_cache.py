"""The HTTP cache: what is stored and for how long (RFC 9111), what
Cache-Status / Age / access log / counters say about it, cache keys,
invalidation, conditional requests, revalidation, stale serving, and the
coalescing of concurrent misses when a fetch is slow, fails or times out.

The heavy coalescing tests (hundreds of clients, 100 MiB read-while-
writing) are in test_cache_load.py."""

import email.utils
import socket
import math
import re
import threading
import time
import urllib.parse

from harness import (MiB, Origin, PatternChecker, RawClient, Reply, Tailcache, build_request,
                     concurrent_requests, free_port, get, pattern, read_text, request, run_parallel,
                     simple_config, slow_factor, wait_for)

CS_STORED = re.compile(r"^tailcache; fwd=(miss|stale); stored; ttl=(-?\d+)$")
CS_HIT = re.compile(r"^tailcache; hit; ttl=(-?\d+); detail=memory$")
CS_COLLAPSED = "tailcache; fwd=miss; collapsed"
CS_HFM = "tailcache; fwd=uri-miss; detail=hit-for-miss"
CS_METHOD = "tailcache; fwd=method"


# --------------------------------------------------------------------------
# helpers

def start(cache=None, routes=None, top_cache=None, upstream=None, origin=None, **top):
    """An origin and a tailcache whose catch-all route caches (with the
    given route cache keys); routes: extra routes tried first."""
    o = origin or Origin("o")
    c = {"enabled": True}
    c.update(cache or {})
    cfg = simple_config(o, route={"cache": c}, upstream=upstream, **top)
    if routes:
        cfg["routes"] = [dict({"upstream": "o"}, **r) for r in routes] + cfg["routes"]
    if top_cache:
        cfg["cache"] = top_cache
    tc = Tailcache(cfg).start()
    return o, tc


def cs(r):
    return r.header("Cache-Status") or ""


def assert_stored(r, ttl=None, fwd="miss", slack=1):
    """r is the response of a leader that stored it; returns the ttl."""
    m = CS_STORED.match(cs(r))
    assert m, "want 'tailcache; fwd=%s; stored; ttl=N', got Cache-Status %r (%r)" % (fwd, cs(r), r)
    assert m.group(1) == fwd, "want fwd=%s, got %r" % (fwd, cs(r))
    got = int(m.group(2))
    if ttl is not None:
        assert ttl - slack <= got <= ttl, "stored ttl=%d, want %d: %r" % (got, ttl, cs(r))
    return got


def assert_hit(r, ttl=None, slack=2):
    """r came from the cache; returns (ttl, age)."""
    m = CS_HIT.match(cs(r))
    assert m, "want a hit, got Cache-Status %r (%r)" % (cs(r), r)
    age = r.header("Age")
    assert age is not None and re.match(r"^\d+$", age), "hit without a valid Age: %r" % r.headers
    got = int(m.group(1))
    if ttl is not None:
        assert ttl - slack <= got <= ttl, "hit ttl=%d, want about %d: %r" % (got, ttl, cs(r))
    return got, int(age)


def assert_not_stored(r, reason):
    want = "tailcache; fwd=miss; detail=%s" % reason
    assert cs(r) == want, "want Cache-Status %r, got %r (%r)" % (want, cs(r), r)


def assert_hfm(r):
    assert cs(r) == CS_HFM, "want %r, got %r (%r)" % (CS_HFM, cs(r), r)


def cstats(tc):
    return {k[len("cache_"):]: v for k, v in tc.stats().items() if k.startswith("cache_")}


def wait_stats(tc, timeout=5, **want):
    """Waits (bounded) until the cache_* counters named have these values."""
    last = {}

    def ok():
        last.update(cstats(tc))
        return all(last.get(k) == v for k, v in want.items())
    try:
        wait_for(ok, timeout, interval=0.05, msg="counters %r" % want)
    except AssertionError:
        raise AssertionError("cache counters: want %r, have %r" % (
            want, {k: last.get(k) for k in want}))
    return last


ACCESS = re.compile(r'"(\S+) (\S+) HTTP/1\.\d" (\d+) \d+ route=\S+ .*cache=(\S+)$')


def outcomes(tc, target, n, method="GET", timeout=5):
    """The cache= fields of the first n access log lines for method target
    (exact), waiting (bounded) for n of them."""
    def look():
        got = []
        for line in read_text(tc.access_log).splitlines():
            m = ACCESS.search(line)
            if m and m.group(1) == method and m.group(2) == target:
                got.append(m.group(4))
        return got if len(got) >= n else None
    try:
        return wait_for(look, timeout, interval=0.05, msg="access log lines")[:n]
    except AssertionError:
        raise AssertionError("want %d access log lines for %s %s, log:\n%s" % (
            n, method, target, read_text(tc.access_log)[-3000:]))


def httpdate(t):
    return email.utils.formatdate(t, usegmt=True)


def wait_stale(t_after, ttl):
    """Waits until a response stored before wall time t_after with lifetime
    ttl is certainly stale: the proxy counts whole seconds, and its
    response time is no later than floor(t_after). A deterministic wait on
    the clock (at most ttl + 1 s), not a guess."""
    until = math.floor(t_after) + ttl + 0.05
    while True:
        left = until - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


def fixed(o, path, cc="max-age=60", body=None, headers=(), status=200):
    """A fixed response for path: Cache-Control cc (None: none), headers, body."""
    hs = ([("Cache-Control", cc)] if cc else []) + list(headers)
    o.handle(path, Reply(status, hs, body=body if body is not None else
                         ("body of %s\n" % path).encode()))


def numbered(o, path, cc="max-age=60", headers=()):
    """Handler whose body says how many requests for path the origin saw."""
    def h(req):
        return Reply(200, ([("Cache-Control", cc)] if cc else []) + list(headers),
                     body=("%s n=%d\n" % (path, o.count(path))).encode())
    o.handle(path, h)


def query(req):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req.target).query))


# --------------------------------------------------------------------------
# hits, misses, freshness

def test_miss_then_hit():
    o, tc = start()
    fixed(o, "/c", body=b"cached body\n", headers=[("Content-Type", "text/plain")])
    c = RawClient(tc.port)
    r1 = c.request("GET", "/c")
    assert r1.status == 200 and r1.body == b"cached body\n", r1
    assert_stored(r1, ttl=60)
    r2 = c.request("GET", "/c")
    assert r2.status == 200 and r2.body == b"cached body\n", r2
    _, age = assert_hit(r2, ttl=60)
    assert age <= 2, "Age %d for a response stored just now" % age
    assert r2.header("Content-Type") == "text/plain" and r2.header("X-Origin") == "o", r2.headers
    # HEAD after GET: a hit with the GET's headers and no body; the
    # connection stays in sync.
    r3 = c.request("HEAD", "/c")
    assert r3.status == 200 and r3.body == b"", r3
    assert_hit(r3, ttl=60)
    if r3.has("Content-Length"):
        assert r3.header("Content-Length") == "12", r3.headers
    r4 = c.request("GET", "/c")
    assert r4.status == 200 and r4.body == b"cached body\n", "after HEAD: %r %r" % (r4, r4.body)
    assert_hit(r4)
    assert o.count("/c") == 1, "origin saw %d requests" % o.count("/c")
    wait_stats(tc, misses=1, hits=3, stored=1, not_stored=0, coalesced=0)
    assert outcomes(tc, "/c", 3) == ["miss", "hit", "hit"], outcomes(tc, "/c", 3)
    assert outcomes(tc, "/c", 1, method="HEAD") == ["hit"]


def test_age_from_origin():
    o, tc = start()
    fixed(o, "/aged", headers=[("Age", "10")])
    r1 = get(tc.port, "/aged")
    assert r1.status == 200, r1
    assert_stored(r1, ttl=60)
    r2 = get(tc.port, "/aged")
    ttl, age = assert_hit(r2)
    print("origin Age 10 -> hit Age %d, ttl %d" % (age, ttl))
    assert age >= 10, "hit Age %d, the origin sent Age: 10" % age
    assert 47 <= ttl <= 50, "hit ttl=%d for max-age=60 and Age 10" % ttl
    assert o.count("/aged") == 1


def test_expiry():
    o, tc = start()
    numbered(o, "/exp", cc="max-age=1")
    r1 = get(tc.port, "/exp")
    t_after = time.time()
    assert r1.body == b"/exp n=1\n", r1.body
    assert_stored(r1, ttl=1)
    # Poll: hits until the entry expires, then one refetch that replaces it.
    deadline = time.monotonic() + 3.0 * max(1.0, slow_factor() / 2)
    hits = 0
    while o.count("/exp") < 2:
        assert time.monotonic() < deadline, "max-age=1 entry still served after %.1fs" % (
            time.time() - t_after)
        r = get(tc.port, "/exp")
        if r.body == b"/exp n=1\n":
            assert_hit(r)
            hits += 1
        else:
            assert r.body == b"/exp n=2\n", r.body
            assert_stored(r, ttl=1, fwd="stale")
        time.sleep(0.05)
    print("expired %.2fs after the store (%d hits meanwhile)" % (time.time() - t_after, hits))
    r = get(tc.port, "/exp")
    assert r.body == b"/exp n=2\n", "the refreshed entry is not served: %r" % r.body
    assert_hit(r)
    st = cstats(tc)
    assert st["expired"] >= 1 and st["stored"] == 2, st


def test_s_maxage_over_max_age():
    o, tc = start()
    fixed(o, "/sm1", cc="max-age=1, s-maxage=60")
    fixed(o, "/sm2", cc="max-age=60, s-maxage=0")
    r = get(tc.port, "/sm1")
    assert_stored(r, ttl=60)
    assert_hit(get(tc.port, "/sm1"), ttl=60)
    r = get(tc.port, "/sm2")
    assert_not_stored(r, "no_freshness")
    assert_hfm(get(tc.port, "/sm2"))
    assert o.count("/sm1") == 1 and o.count("/sm2") == 2, o.snapshot()


def test_expires_against_date():
    """Expires counts from the origin's Date, not from the proxy's clock."""
    o, tc = start()
    now = time.time()
    # The origin's clock is 1000 s ahead: Expires - Date is still 60 s.
    fixed(o, "/e1", cc=None, headers=[("Date", httpdate(now + 1000)),
                                      ("Expires", httpdate(now + 1060))])
    # Expires before Date: stale at once, nothing to reuse.
    fixed(o, "/e2", cc=None, headers=[("Date", httpdate(now)), ("Expires", httpdate(now - 10))])
    # Date 30 s ago, Expires in 30 s: lifetime 60, age 30.
    fixed(o, "/e3", cc=None, headers=[("Date", httpdate(now - 30)),
                                      ("Expires", httpdate(now + 30))])
    # max-age wins over Expires.
    fixed(o, "/e4", cc="max-age=120", headers=[("Date", httpdate(now)),
                                               ("Expires", httpdate(now - 3600))])
    r = get(tc.port, "/e1")
    assert_stored(r, ttl=60)
    assert_hit(get(tc.port, "/e1"), ttl=60)
    assert_not_stored(get(tc.port, "/e2"), "no_freshness")
    r = get(tc.port, "/e3")
    assert_stored(r, ttl=60)
    ttl, age = assert_hit(get(tc.port, "/e3"))
    assert 27 <= ttl <= 31 and age >= 29, "Date-30s/Expires+30s: hit ttl=%d age=%d" % (ttl, age)
    assert_stored(get(tc.port, "/e4"), ttl=120)
    assert_hit(get(tc.port, "/e4"), ttl=120)
    assert o.count("/e1") == 1 and o.count("/e3") == 1 and o.count("/e4") == 1


def test_default_ttl():
    o, tc = start(routes=[{"name": "ttl", "prefix": "/ttl/",
                           "cache": {"enabled": True, "ttl": "120s"}}])
    fixed(o, "/ttl/a", cc=None)
    fixed(o, "/ttl/b", cc="max-age=5")
    fixed(o, "/ttl/c", cc="no-store")
    fixed(o, "/plain", cc=None)
    assert_stored(get(tc.port, "/ttl/a"), ttl=120)
    assert_hit(get(tc.port, "/ttl/a"), ttl=120)
    assert_stored(get(tc.port, "/ttl/b"), ttl=5)  # the origin's lifetime wins
    assert_not_stored(get(tc.port, "/ttl/c"), "no_store")
    # Without ttl (and without Last-Modified) nothing makes it reusable.
    assert_not_stored(get(tc.port, "/plain"), "no_freshness")
    assert_hfm(get(tc.port, "/plain"))
    assert o.count("/ttl/a") == 1 and o.count("/plain") == 2


def test_force_ttl():
    o, tc = start(cache={"force_ttl": "60s"})
    fixed(o, "/f/a", cc="max-age=0")
    fixed(o, "/f/b", cc="no-store")
    fixed(o, "/f/c", cc="private, max-age=600")
    fixed(o, "/f/d", cc="no-cache")
    assert_stored(get(tc.port, "/f/a"), ttl=60)
    assert_hit(get(tc.port, "/f/a"), ttl=60)
    assert_not_stored(get(tc.port, "/f/b"), "no_store")
    assert_not_stored(get(tc.port, "/f/c"), "private")
    assert_stored(get(tc.port, "/f/d"), ttl=60)
    assert_hit(get(tc.port, "/f/d"), ttl=60)  # no-cache made fresh by force_ttl
    assert o.count("/f/a") == 1 and o.count("/f/d") == 1, o.snapshot()


# --------------------------------------------------------------------------
# what is not stored

def test_vary_accept_encoding():
    o, tc = start()

    def h(req):
        return Reply(200, [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")],
                     body=("ae=%s n=%d\n" % (req.header("Accept-Encoding"),
                                             o.count("/v"))).encode())
    o.handle("/v", h)

    def ae(value):
        return get(tc.port, "/v", headers=[("Accept-Encoding", value)] if value is not None
                   else None)
    r = ae("gzip")
    assert r.body == b"ae=gzip n=1\n", r.body
    assert_stored(r)
    r = ae("gzip")
    assert r.body == b"ae=gzip n=1\n", r.body
    assert_hit(r)
    r = ae("br")
    assert r.body == b"ae=br n=2\n", "br got %r" % r.body
    assert_stored(r)
    r = ae(None)
    assert r.body == b"ae=None n=3\n", "no Accept-Encoding got %r" % r.body
    assert_stored(r)
    # Equivalent spellings share an entry.
    for value, want in (("identity", b"ae=None n=3\n"), ("br;q=0", b"ae=None n=3\n"),
                        ("br", b"ae=br n=2\n"), ("gzip;q=1.0", b"ae=gzip n=1\n"),
                        ("x-gzip", b"ae=gzip n=1\n")):
        r = ae(value)
        assert r.body == want, "Accept-Encoding %r got %r, want %r" % (value, r.body, want)
        assert_hit(r)
    r = ae("gzip, br")
    assert r.body == b"ae=gzip, br n=4\n", r.body
    assert_stored(r)
    for value in ("br, gzip", "br;q=0.5, x-gzip", "gzip,br"):
        r = ae(value)
        assert r.body == b"ae=gzip, br n=4\n", "Accept-Encoding %r got %r" % (value, r.body)
        assert_hit(r)
    assert o.count("/v") == 4, "origin saw %d requests for 4 variants" % o.count("/v")


def test_vary_star_not_stored():
    o, tc = start()
    fixed(o, "/vs", headers=[("Vary", "*")])
    assert_not_stored(get(tc.port, "/vs"), "vary_star")
    assert_hfm(get(tc.port, "/vs"))
    assert o.count("/vs") == 2


def test_set_cookie():
    o, tc = start(routes=[{"name": "cookies", "prefix": "/sc-ok/",
                           "cache": {"enabled": True, "set_cookie": True}}])
    fixed(o, "/sc", headers=[("Set-Cookie", "id=1; Path=/")])
    fixed(o, "/sc-ok/x", headers=[("Set-Cookie", "id=1; Path=/")])
    r = get(tc.port, "/sc")
    assert r.header("Set-Cookie") == "id=1; Path=/", r.headers
    assert_not_stored(r, "set_cookie")
    assert_hfm(get(tc.port, "/sc"))
    assert o.count("/sc") == 2
    assert_stored(get(tc.port, "/sc-ok/x"), ttl=60)
    r = get(tc.port, "/sc-ok/x")
    assert_hit(r)
    assert r.header("Set-Cookie") == "id=1; Path=/", "set_cookie: true dropped it: %r" % r.headers
    assert o.count("/sc-ok/x") == 1


def test_not_storable_reasons():
    o, tc = start()
    fixed(o, "/private", cc="private, max-age=60")
    fixed(o, "/nostore", cc="no-store, max-age=60")
    fixed(o, "/err", cc="max-age=60", status=500)
    fixed(o, "/partial", cc="max-age=60", status=206,
          headers=[("Content-Range", "bytes 0-9/100")], body=b"0123456789")
    fixed(o, "/nofresh", cc=None)
    cases = [("/private", "private"), ("/nostore", "no_store"), ("/err", "status"),
             ("/partial", "partial"), ("/nofresh", "no_freshness")]
    for path, reason in cases:
        assert_not_stored(get(tc.port, path), reason)
    for path, reason in cases:
        r = get(tc.port, path)
        assert_hfm(r)
        assert o.count(path) == 2, "%s: origin saw %d requests" % (path, o.count(path))
    wait_stats(tc, not_stored=5, hit_for_miss=5, stored=0, hits=0)
    assert outcomes(tc, "/nostore", 2) == ["pass", "pass"], outcomes(tc, "/nostore", 2)


def test_authorization():
    o, tc = start()
    fixed(o, "/auth/plain", cc="max-age=60")
    fixed(o, "/auth/public", cc="public, max-age=60")
    fixed(o, "/auth/smax", cc="s-maxage=60")
    fixed(o, "/auth/mr", cc="must-revalidate, max-age=60")
    auth = [("Authorization", "Basic dXNlcjpwYXNz")]
    assert_not_stored(get(tc.port, "/auth/plain", headers=auth), "authorization")
    # The request's own Authorization leaves no hit-for-miss marker behind,
    # or one client could switch caching off for everyone.
    assert_not_stored(get(tc.port, "/auth/plain", headers=auth), "authorization")
    assert o.count("/auth/plain") == 2
    assert_stored(get(tc.port, "/auth/plain"), ttl=60)
    assert_hit(get(tc.port, "/auth/plain"))
    assert o.count("/auth/plain") == 3
    for path in ("/auth/public", "/auth/smax", "/auth/mr"):
        assert_stored(get(tc.port, path, headers=auth), ttl=60)
        assert_hit(get(tc.port, path, headers=auth))
        assert o.count(path) == 1, path


def test_request_no_store_leaves_no_marker():
    """A client's Cache-Control: no-store keeps its own response out of the
    cache, but must not stop others from caching the URL."""
    o, tc = start()
    fixed(o, "/ns", cc="max-age=60")
    r = get(tc.port, "/ns", headers=[("Cache-Control", "no-store")])
    assert_not_stored(r, "no_store")
    assert_stored(get(tc.port, "/ns"), ttl=60)
    assert_hit(get(tc.port, "/ns"))
    assert o.count("/ns") == 2


def test_no_cache_revalidated_every_time():
    """PENDING (revalidation): a no-cache response is stored, and every use
    is validated with the origin: If-None-Match, a 304, the full 200 body
    to the client."""
    o, tc = start()

    def h(req):
        if req.header("If-None-Match") == '"nc1"':
            return Reply(304, [("Cache-Control", "no-cache"), ("ETag", '"nc1"')])
        return Reply(200, [("Cache-Control", "no-cache"), ("ETag", '"nc1"')],
                     body=b"no-cache body\n")
    o.handle("/nc", h)
    r = get(tc.port, "/nc")
    assert r.status == 200 and r.body == b"no-cache body\n", r
    assert_stored(r)
    for i in (2, 3):
        r = get(tc.port, "/nc")
        print("use %d: Cache-Status %r" % (i, cs(r)))
        assert r.status == 200 and r.body == b"no-cache body\n", (r, r.body)
        assert o.count("/nc") == i, "origin saw %d requests, want %d" % (o.count("/nc"), i)
        inm = o.requests_for("/nc")[-1].header("If-None-Match")
        assert inm == '"nc1"', "use %d of a no-cache entry was not conditional " \
            "(If-None-Match %r)" % (i, inm)


# --------------------------------------------------------------------------
# conditional requests, revalidation, stale serving

def test_client_conditional_from_cache():
    o, tc = start()
    lm = httpdate(time.time() - 3600)
    fixed(o, "/cond", headers=[("ETag", '"abc"'), ("Last-Modified", lm)], body=b"conditional\n")
    c = RawClient(tc.port)
    assert_stored(c.request("GET", "/cond"))
    for inm, status in (('"abc"', 304), ('W/"abc"', 304), ('"zzz"', 200), ('"zzz", "abc"', 304),
                        ("*", 304)):
        r = c.request("GET", "/cond", headers=[("If-None-Match", inm)])
        assert r.status == status, "If-None-Match %s: %r" % (inm, r)
        assert_hit(r)
        if status == 304:
            assert r.body == b"" and r.header("ETag") == '"abc"', (inm, r.headers)
        else:
            assert r.body == b"conditional\n", r.body
    r = c.request("GET", "/cond", headers=[("If-Modified-Since", lm)])
    assert r.status == 304, "If-Modified-Since = Last-Modified: %r" % r
    r = c.request("GET", "/cond", headers=[("If-Modified-Since",
                                            httpdate(time.time() - 7200))])
    assert r.status == 200 and r.body == b"conditional\n", r
    r = c.request("GET", "/cond")
    assert r.status == 200 and r.body == b"conditional\n", "after 304s: %r" % r
    assert o.count("/cond") == 1, "conditional requests reached the origin: %d" % o.count("/cond")


def test_expired_entry_revalidated():
    """PENDING (revalidation): an expired entry with an ETag is revalidated
    with If-None-Match; the origin's 304 refreshes it (and its headers),
    the client gets the full body, and the next request is a fresh hit."""
    o, tc = start()

    def h(req):
        if req.header("If-None-Match") == '"e1"':
            return Reply(304, [("Cache-Control", "max-age=60"), ("ETag", '"e1"'),
                               ("X-Rev", "2")])
        return Reply(200, [("Cache-Control", "max-age=1"), ("ETag", '"e1"'), ("X-Rev", "1")],
                     body=b"revalidated body\n")
    o.handle("/rv", h)
    r = get(tc.port, "/rv")
    t_after = time.time()
    assert_stored(r, ttl=1)
    wait_stale(t_after, 1)
    r = get(tc.port, "/rv")
    print("revalidating response: Cache-Status %r" % cs(r))
    assert r.status == 200 and r.body == b"revalidated body\n", (r, r.body)
    assert o.count("/rv") == 2, o.count("/rv")
    inm = o.requests_for("/rv")[1].header("If-None-Match")
    assert inm == '"e1"', "the expired entry was refetched, not revalidated (If-None-Match %r)" \
        % inm
    assert "detail=revalidated" in cs(r), "Cache-Status %r" % cs(r)
    assert r.header("X-Rev") == "2", "headers of the 304 not merged: %r" % r.headers
    r = get(tc.port, "/rv")
    assert r.body == b"revalidated body\n" and r.header("X-Rev") == "2", (r.body, r.headers)
    assert_hit(r, ttl=60)
    assert o.count("/rv") == 2
    assert outcomes(tc, "/rv", 3) == ["miss", "revalidated", "hit"], outcomes(tc, "/rv", 3)
    wait_stats(tc, revalidated=1)


def test_stale_while_revalidate():
    """PENDING: within stale_while_revalidate the stale entry is served at
    once (the origin is slow) and exactly one background refresh reaches
    the origin, even under 20 concurrent requests."""
    o, tc = start(cache={"stale_while_revalidate": "30s"})
    slow = 2.0

    def h(req):
        if o.count("/swr") == 1:
            return Reply(200, [("Cache-Control", "max-age=1")], body=b"swr v1\n")
        return Reply(200, [("Cache-Control", "max-age=60")], body=b"swr v2\n", delay=slow)
    o.handle("/swr", h)
    r = get(tc.port, "/swr")
    t_after = time.time()
    assert_stored(r, ttl=1)
    wait_stale(t_after, 1)
    rs = concurrent_requests(tc.port, 20, "/swr", timeout=15)
    bad = [x for x in rs if not (getattr(x, "status", None) == 200 and x.body == b"swr v1\n")]
    assert not bad, "stale-while-revalidate: %d of 20 not served stale: %r" % (len(bad), bad[:3])
    lat = sorted(x.t_done - x.t_sent for x in rs)
    print("20 stale responses: latency max %.3fs median %.3fs (origin refresh takes %.1fs); "
          "Cache-Status %r" % (lat[-1], lat[10], slow, cs(rs[0])))
    assert lat[-1] < slow / 2, "a stale-while-revalidate response waited %.2fs for the " \
        "origin" % lat[-1]
    wait_for(lambda: o.count("/swr") >= 2, 5, msg="the background refresh to reach the origin")
    # Wait (bounded) until the refreshed entry is served.
    deadline = time.monotonic() + slow + 5
    while True:
        r = get(tc.port, "/swr")
        if r.body == b"swr v2\n":
            break
        assert r.body == b"swr v1\n", r.body
        assert time.monotonic() < deadline, "the background refresh never replaced the entry"
        time.sleep(0.1)
    assert_hit(r)
    assert o.count("/swr") == 2, "%d background refreshes reached the origin, want 1" % (
        o.count("/swr") - 1)
    st = cstats(tc)
    print("counters: %r" % {k: st.get(k) for k in ("bg_refreshes", "stale_served", "hits")})
    assert st.get("bg_refreshes") == 1 and st.get("stale_served", 0) >= 20, st
    outs = outcomes(tc, "/swr", 21)
    assert outs[0] == "miss" and outs[1:] == ["stale"] * 20, "access log cache=: %r" % outs


def test_stale_if_error():
    """PENDING: within stale_if_error a stale entry is served when the
    origin is down (refused) or answers 500; after the window the error
    goes to the client."""
    down = Origin("down")
    o = Origin("o")
    sie = 3
    cfg = simple_config(o, route={"cache": {"enabled": True, "stale_if_error": "%ds" % sie}},
                        upstream={"max_fails": 1000})
    cfg["upstreams"]["d"] = {"servers": [down.addr], "max_fails": 1000}
    cfg["routes"].insert(0, {"name": "down", "prefix": "/down", "upstream": "d",
                             "cache": {"enabled": True, "stale_if_error": "%ds" % sie}})
    tc = Tailcache(cfg).start()
    fixed(down, "/down", cc="max-age=1", body=b"stale but good\n")

    def h500(req):
        if o.count("/e500") == 1:
            return Reply(200, [("Cache-Control", "max-age=1")], body=b"stale but good\n")
        return Reply(500, [], body=b"origin error\n")
    o.handle("/e500", h500)
    t_before = time.time()
    assert_stored(get(tc.port, "/down"), ttl=1)
    assert_stored(get(tc.port, "/e500"), ttl=1)
    t_after = time.time()
    wait_stale(t_after, 1)
    down.stop()
    for path in ("/down", "/e500"):
        r = get(tc.port, path)
        print("%s within stale-if-error: %d, Cache-Status %r" % (path, r.status, cs(r)))
        assert r.status == 200 and r.body == b"stale but good\n", \
            "%s: origin failing within stale_if_error, got %r %r" % (path, r, r.body)
    assert o.count("/e500") == 2, "the 500 was not asked for"
    # Past the window the error goes through.
    ends = {}
    deadline = math.floor(t_after) + 1 + sie + 2.0
    while len(ends) < 2:
        assert time.time() < deadline, "stale served past the stale_if_error window: %r" % ends
        for path, want in (("/down", 502), ("/e500", 500)):
            if path in ends:
                continue
            r = get(tc.port, path)
            if r.status == 200:
                assert r.body == b"stale but good\n", r.body
            else:
                assert r.status == want, "%s after the window: %r" % (path, r)
                ends[path] = time.time()
        time.sleep(0.1)
    print("errors passed on %.1fs / %.1fs after the store (window %ds past max-age=1)" % (
        ends["/down"] - t_after, ends["/e500"] - t_after, sie))
    earliest = math.floor(t_before) + 1 + sie - 1
    for path, t in ends.items():
        assert t >= earliest - 0.05, "%s: stale_if_error window closed early (%.2fs)" % (
            path, t - t_before)
    st = cstats(tc)
    assert st.get("stale_served", 0) >= 2, st


# --------------------------------------------------------------------------
# keys, stripped headers, invalidation

def test_cache_key_options():
    o, tc = start(routes=[
        {"name": "k", "prefix": "/k/",
         "cache": {"enabled": True, "key": {"sort_query": True,
                                            "drop_query": ["utm_source", "fbclid"],
                                            "headers": ["X-Tenant"], "cookies": ["sess"]}}},
        {"name": "iq", "prefix": "/iq/",
         "cache": {"enabled": True, "key": {"ignore_query": True}}}])
    for p in ("/k/a", "/iq/a", "/d/a"):
        numbered(o, p)

    def check(target, n, headers=None, path=None):
        path = path or urllib.parse.urlsplit(target).path
        r = get(tc.port, target, headers=headers)
        want = ("%s n=%d\n" % (path, n)).encode()
        assert r.body == want, "%s %r: got %r, want %r (Cache-Status %r)" % (
            target, headers, r.body, want, cs(r))
        return r

    check("/k/a?a=1&b=2", 1)
    check("/k/a?b=2&a=1", 1)                        # sort_query
    check("/k/a?utm_source=x&a=1&b=2", 1)           # drop_query
    check("/k/a?a=1&fbclid=zz&b=2&utm_source=y", 1)
    check("/k/a?a=1&b=3", 2)
    check("/k/a?a=1&b=2", 3, headers=[("X-Tenant", "t1")])  # key.headers
    check("/k/a?a=1&b=2", 3, headers=[("X-Tenant", "t1")])
    check("/k/a?a=1&b=2", 4, headers=[("X-Tenant", "t2")])
    check("/k/a?a=1&b=2", 5, headers=[("X-Tenant", "")])    # empty is not missing
    check("/k/a?a=1&b=2", 6, headers=[("Cookie", "sess=1; theme=dark")])  # key.cookies
    check("/k/a?a=1&b=2", 6, headers=[("Cookie", "theme=light; sess=1")])
    check("/k/a?a=1&b=2", 7, headers=[("Cookie", "sess=2")])
    check("/k/a?a=1&b=2", 1, headers=[("Cookie", "theme=x")])  # no sess: the cookie-less entry
    check("/iq/a?x=1", 1)                            # ignore_query
    check("/iq/a?y=2", 1)
    check("/iq/a", 1)
    check("/d/a?a=1&b=2", 1)                         # default: query as received
    check("/d/a?b=2&a=1", 2)
    check("/d/a?a=1&b=2", 1)
    assert o.count("/k/a") == 7 and o.count("/iq/a") == 1 and o.count("/d/a") == 2


def test_strip_headers():
    o, tc = start(routes=[{"name": "nostrip", "prefix": "/nostrip/",
                           "cache": {"enabled": True, "strip_headers": []}},
                          {"name": "custom", "prefix": "/custom/",
                           "cache": {"enabled": True, "strip_headers": ["X-Secret"]}}])
    poison = [("X-Forwarded-Host", "evil.example"), ("X-Original-URL", "/admin"),
              ("X-HTTP-Method-Override", "DELETE"), ("X-Secret", "s"), ("X-Keep", "yes")]
    get(tc.port, "/s1", headers=poison)
    got = o.last()
    assert got.path == "/s1", got
    for name in ("X-Forwarded-Host", "X-Original-URL", "X-HTTP-Method-Override"):
        assert not got.has(name), "%s reached the origin on a caching route: %r" % (
            name, got.headers)
    assert got.header("X-Keep") == "yes" and got.header("X-Secret") == "s", got.headers
    get(tc.port, "/nostrip/s1", headers=poison)
    got = o.last()
    assert got.header("X-Forwarded-Host") == "evil.example", "strip_headers: [] removed it: %r" \
        % got.headers
    get(tc.port, "/custom/s1", headers=poison)
    got = o.last()
    assert not got.has("X-Secret") and got.header("X-Forwarded-Host") == "evil.example", \
        got.headers


def test_invalidation():
    o, tc = start()

    def h(req):
        if req.method in ("GET", "HEAD"):
            return Reply(200, [("Cache-Control", "max-age=60")],
                         body=("%s n=%d\n" % (req.path, o.count(req.path, "GET"))).encode())
        q = query(req)
        hs = []
        if "loc" in q:
            hs.append(("Location", q["loc"]))
        if "cloc" in q:
            hs.append(("Content-Location", q["cloc"]))
        return Reply(int(q.get("code", 200)), hs, body=b"done\n")
    paths = ["/inv/%s" % x for x in "abcdefg"]
    for p in paths:
        o.handle(p, h)

    def gets(path):
        return o.count(path, "GET")

    def check_get(path, n, hit):
        r = get(tc.port, path)
        assert r.body == ("%s n=%d\n" % (path, n)).encode(), "%s: got %r, want n=%d (%s)" % (
            path, r.body, n, cs(r))
        if hit:
            assert_hit(r)
        else:
            assert_stored(r)

    def unsafe(method, target, status=200):
        r = request(tc.port, method, target, body=b"x")
        assert r.status == status, (method, target, r)
        assert cs(r) == CS_METHOD, "%s: Cache-Status %r" % (method, cs(r))

    for p in ("/inv/a", "/inv/c", "/inv/d", "/inv/e", "/inv/f"):
        check_get(p, 1, hit=False)
    check_get("/inv/a", 1, hit=True)
    n = 1
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        unsafe(method, "/inv/a")
        n += 1
        check_get("/inv/a", n, hit=False)
        check_get("/inv/a", n, hit=True)
    # Location and Content-Location on the same host are invalidated too.
    unsafe("POST", "/inv/b?loc=/inv/c&cloc=http://test/inv/d")
    check_get("/inv/c", 2, hit=False)
    check_get("/inv/d", 2, hit=False)
    # Not another host's.
    unsafe("POST", "/inv/b?loc=http://other.example/inv/e&cloc=http://other.example/inv/e")
    check_get("/inv/e", 1, hit=True)
    # Unsuccessful unsafe requests invalidate nothing.
    unsafe("POST", "/inv/f?code=404", status=404)
    unsafe("DELETE", "/inv/f?code=500", status=500)
    unsafe("PUT", "/inv/f?code=403&loc=/inv/e", status=403)
    check_get("/inv/f", 1, hit=True)
    check_get("/inv/e", 1, hit=True)
    assert outcomes(tc, "/inv/a", 1, method="POST") == ["pass"]
    wait_stats(tc, invalidations=6)


# --------------------------------------------------------------------------
# coalescing when the fetch is slow or fails

def test_coalesce_timeout():
    """A waiter behind a fetch slower than coalesce_timeout gives up and
    fetches alone."""
    o, tc = start(top_cache={"coalesce_timeout": "300ms"})
    o.handle("/slow", Reply(200, [("Cache-Control", "max-age=60")], body=b"slow body\n",
                            delay=1.5))
    res = {}

    def fetch(name):
        res[name] = get(tc.port, "/slow", timeout=10)
    a = threading.Thread(target=fetch, args=("a",), daemon=True)
    a.start()
    o.wait_requests(1, timeout=5)
    wait_for(lambda: cstats(tc)["misses"] == 1, 5, msg="the leader's miss")
    t_b = time.monotonic()
    b = threading.Thread(target=fetch, args=("b",), daemon=True)
    b.start()
    wait_for(lambda: o.count("/slow") >= 2, 1.2 * max(1.0, slow_factor() / 2),
             msg="the waiter to give up and fetch alone (origin saw %d)" % o.count("/slow"))
    waited = time.monotonic() - t_b
    print("waiter went to the origin %.3fs after its request (coalesce_timeout 300ms)" % waited)
    assert waited >= 0.25, "the waiter went to the origin after %.3fs, before " \
        "coalesce_timeout" % waited
    a.join(10)
    b.join(10)
    assert not a.is_alive() and not b.is_alive(), "requests did not finish"
    for k in ("a", "b"):
        assert res[k].status == 200 and res[k].body == b"slow body\n", (k, res[k])
    print("Cache-Status: leader %r, waiter %r" % (cs(res["a"]), cs(res["b"])))
    assert_stored(res["a"])
    st = wait_stats(tc, coalesce_timeouts=1, coalesced=1)
    assert o.count("/slow") == 2, o.count("/slow")
    assert_hit(get(tc.port, "/slow"))
    print("counters: %r" % st)


def test_leader_fails_mid_body():
    """The leader's upstream closes after half the Content-Length: no
    waiter is handed a short body as if complete, and nothing truncated is
    stored."""
    o, tc = start()
    size = 2 * MiB
    n_wait = 20
    got_bytes = set()
    lock = threading.Lock()

    def waiters_streaming():
        wait_for(lambda: len(got_bytes) >= n_wait + 1, 10, interval=0.01,
                 msg="every waiter to receive part of the body")

    def h(req):
        if o.count("/mid") == 1:
            return Reply(200, [("Cache-Control", "max-age=60")], size=size, cut_at=size // 2,
                         before_cut=waiters_streaming)
        return Reply(200, [("Cache-Control", "max-age=60")], size=size)
    o.handle("/mid", h)

    def client(i):
        c = RawClient(tc.port, timeout=15)
        chk = PatternChecker()
        out = {"head": None, "bytes": 0, "complete": False, "error": None}

        def sink(mv):
            with lock:
                got_bytes.add(i)
            out["bytes"] += len(mv)
            chk.feed(mv)
        try:
            c.send(build_request("GET", "/mid"))
            r = c.read_response(sink=sink)
            out["head"] = r
            out["complete"] = True
        except Exception as e:
            out["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            c.close()
        out["pattern_ok"] = chk.finish()
        return out

    leader = {}
    lt = threading.Thread(target=lambda: leader.update(res=client(-1)), daemon=True)
    lt.start()
    wait_for(lambda: -1 in got_bytes, 10, msg="the leader's first body bytes")
    res = run_parallel(n_wait, client, timeout=30)
    lt.join(15)
    assert not lt.is_alive(), "the leader hangs"
    allres = [leader["res"]] + res
    summary = {}
    for i, x in enumerate(allres):
        assert isinstance(x, dict), "client %d: %r" % (i, x)
        assert x["pattern_ok"], "client %d got wrong bytes" % i
        if x["complete"]:
            r = x["head"]
            assert r.body_len == size, "client %d: a %d-byte body looked complete (%s framing, " \
                "want %d bytes)" % (i, r.body_len, r.framing, size)
            kind = "complete"
        else:
            assert "missing" in x["error"] or "inside a chunked body" in x["error"], \
                "client %d: %s" % (i, x["error"])
            assert x["bytes"] < size, x
            kind = "cut"
        summary[kind] = summary.get(kind, 0) + 1
    print("leader + %d waiters: %r; origin saw %d requests" % (n_wait, summary, o.count("/mid")))
    assert not leader["res"]["complete"], "the leader's truncated response looked complete"
    # Nothing truncated was stored: the next request gets the whole body.
    r = get(tc.port, "/mid", timeout=15)
    assert r.status == 200 and r.body == pattern(0, size), "after the failure: %r (%d bytes)" % (
        r, len(r.body))


def test_leader_fails_before_head():
    """The leader's upstream closes before any response: the leader gets
    502, its waiters fetch on their own at once (no hang, no waiting out
    coalesce_timeout)."""
    o, tc = start(top_cache={"coalesce_timeout": "10s"})
    n = 20
    t_drop = []

    def h(req):
        if o.count("/fail") == 1:
            wait_for(lambda: cstats(tc)["coalesced"] >= n - 1, 10, interval=0.02,
                     msg="waiters to join")
            t_drop.append(time.monotonic())
            return Reply(drop=True)
        return Reply(200, [("Cache-Control", "max-age=60")], body=b"second try\n", delay=0.1)
    o.handle("/fail", h)
    rs = concurrent_requests(tc.port, n, "/fail", timeout=20)
    errs = [x for x in rs if isinstance(x, Exception)]
    assert not errs, "clients failed: %r" % errs[:3]
    statuses = sorted(x.status for x in rs)
    last = max(x.t_done for x in rs) - t_drop[0]
    print("statuses %r; all done %.3fs after the drop; origin saw %d requests; "
          "Cache-Status %r" % ({s: statuses.count(s) for s in set(statuses)}, last,
                               o.count("/fail"), sorted(set(cs(x) for x in rs))))
    assert statuses.count(502) == 1 and statuses.count(200) == n - 1, statuses
    assert all(x.body == b"second try\n" for x in rs if x.status == 200)
    assert last < 3.0, "waiters took %.2fs after the leader failed" % last
    assert o.count("/fail") >= 2


def test_long_delivery_not_cut_by_header_timeout():
    """A response delivered from the cache for longer than
    timeouts.client_header (a waiter streaming a slow fill, a slow reader
    of a hit) is not cut: the client sent its whole request long ago."""
    size = 16 * MiB
    o, tc = start(top_cache={"memory": {"size": "64m", "shards": 1, "max_object_size": "32m"}},
                  timeouts={"client_header": "1s"})
    o.handle("/long", Reply(200, [("Cache-Control", "max-age=60")], size=size, rate=8 * MiB,
                            piece=256 * 1024))

    def fetch(slow=False):
        c = RawClient(tc.port, timeout=15)
        chk = PatternChecker()

        def sink(mv):
            chk.feed(mv)
            if slow:
                time.sleep(len(mv) / float(6 * MiB))
        t = time.monotonic()
        try:
            if slow:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            c.send(build_request("GET", "/long"))
            r = c.read_response(sink=sink)
        except Exception as e:
            return "%s after %.2fs" % (e, time.monotonic() - t)
        finally:
            c.close()
        assert chk.finish(), "wrong bytes"
        return r, time.monotonic() - t

    res = {}
    lt = threading.Thread(target=lambda: res.update(leader=fetch()), daemon=True)
    lt.start()
    o.wait_requests(1, timeout=5)
    wait_for(lambda: cstats(tc)["misses"] == 1, 5, msg="the leader's miss")
    res["waiter"] = fetch()
    lt.join(15)
    res["slow hit"] = fetch(slow=True)
    print({k: (v if isinstance(v, str) else "%s %.2fs" % (cs(v[0]), v[1]))
           for k, v in res.items()})
    for k in ("leader", "waiter", "slow hit"):
        assert not isinstance(res[k], str), "%s: %s (client_header is 1s)" % (k, res[k])
        assert res[k][0].status == 200 and res[k][0].body_len == size, (k, res[k])
    assert res["waiter"][1] > 1.0 and res["slow hit"][1] > 1.0, res
    assert o.count("/long") == 1


def test_cache_status_on_proxy_errors():
    """Cache-Status is on every response of a caching route, the proxy's
    own 502 included."""
    cfg = simple_config("127.0.0.1:%d" % free_port(), route={"cache": {"enabled": True}})
    tc = Tailcache(cfg).start()
    r = get(tc.port, "/refused")
    assert r.status == 502, r
    assert cs(r).startswith("tailcache; fwd="), "the 502 of a caching route has Cache-Status " \
        "%r: %r" % (cs(r), r.headers)


def test_expired_entry_refetched_once():
    """A hot key that expires must not stampede the origin: the first
    request to find it expired refetches, the others join that fetch."""
    o, tc = start()

    def h(req):
        # Slow enough that all the concurrent requests arrive during it.
        return Reply(200, [("Cache-Control", "max-age=1")],
                     body=("n=%d\n" % o.count("/hot")).encode(), delay=0.4)
    o.handle("/hot", h)
    assert_stored(get(tc.port, "/hot"), ttl=1)
    # The entry's lifetime is the thing to wait out; Age is whole seconds,
    # so past 2 s it is surely expired.
    time.sleep(2.1)
    rs = concurrent_requests(tc.port, 30, "/hot", timeout=20)
    bad = [r for r in rs if isinstance(r, Exception) or r.status != 200]
    assert not bad, bad[:3]
    bodies = set(r.body for r in rs)
    print("origin saw %d requests for /hot; bodies %r" % (o.count("/hot"), bodies))
    assert o.count("/hot") == 2, "an expired key was refetched %d times by 30 concurrent " \
        "requests (want once)" % (o.count("/hot") - 1)
    assert bodies == {b"n=2\n"}, bodies
    statuses = sorted(set(cs(r) for r in rs))
    assert any(s.startswith("tailcache; fwd=stale; stored") for s in statuses), statuses
    assert CS_COLLAPSED in statuses, statuses


def test_only_if_cached():
    """Cache-Control: only-if-cached never goes to the origin: 504 when the
    cache cannot answer (RFC 9111 5.2.1.7), the entry when it can."""
    o, tc = start()
    fixed(o, "/oic", cc="max-age=60")
    r = get(tc.port, "/oic", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 504, r
    assert o.count("/oic") == 0
    assert "only-if-cached" in cs(r), cs(r)
    assert_stored(get(tc.port, "/oic"), ttl=60)
    r = get(tc.port, "/oic", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 200, r
    assert_hit(r)
    assert o.count("/oic") == 1


def test_object_over_shard_budget_not_stored():
    """An object larger than one shard's share of cache.memory.size is not
    stored (it would be evicted on arrival) and says so."""
    o, tc = start(top_cache={"memory": {"size": "1m", "shards": 4}})
    fixed(o, "/big", cc="max-age=60", body=b"x" * (400 * 1024))
    r = get(tc.port, "/big")
    assert r.status == 200 and len(r.body) == 400 * 1024
    assert_not_stored(r, "too_big")
    fixed(o, "/small", cc="max-age=60", body=b"y" * (100 * 1024))
    assert_stored(get(tc.port, "/small"), ttl=60)
    assert_hit(get(tc.port, "/small"))


def test_get_with_body_not_cached():
    """A GET with a body is forwarded but never stored: the origin may
    answer from the body, which is not part of the key (cache poisoning)."""
    o, tc = start()
    numbered(o, "/fat", cc="max-age=60")
    r = request(tc.port, "GET", "/fat", body=b"evil=1")
    assert r.status == 200, r
    assert cs(r) == "tailcache; fwd=bypass; detail=request-body", cs(r)
    assert o.requests_for("/fat")[-1].body == b"evil=1"
    r = get(tc.port, "/fat")
    assert_stored(r, ttl=60)
    assert r.body == b"/fat n=2\n", r.body


def test_slow_leader_does_not_slow_waiters():
    """The fill reads the origin at the origin's pace: a first client that
    reads slowly does not hold back the others streaming the same object."""
    o, tc = start(top_cache={"memory": {"size": "256m", "shards": 1, "max_object_size": "64m"}})
    size = 8 * MiB
    o.handle("/big8", Reply(200, [("Cache-Control", "max-age=60")], size=size))
    slow = socket.create_connection(("127.0.0.1", tc.port), timeout=10)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"GET /big8 HTTP/1.1\r\nHost: test\r\n\r\n")
    stop = threading.Event()

    def trickle():
        # About 80 KB/s: 8 MiB would take 100 s.
        while not stop.is_set():
            try:
                if not slow.recv(4096):
                    return
            except OSError:
                return
            time.sleep(0.05)
    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    try:
        wait_for(lambda: o.count("/big8") == 1, timeout=5)
        t0 = time.monotonic()
        r = get(tc.port, "/big8", timeout=20)
        took = time.monotonic() - t0
        print("second client: %d bytes in %.2fs while the first reads at ~80 KB/s" %
              (len(r.body), took))
        assert r.status == 200 and len(r.body) == size, (r, len(r.body))
        assert took < 10, "the second client waited %.1fs behind a slow first client" % took
        assert o.count("/big8") == 1
    finally:
        stop.set()
        slow.close()
        th.join(timeout=5)
