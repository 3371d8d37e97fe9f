"""Upstream failures: refused -> 502, no answer -> 504, all in cooldown ->
503, passive health checks skip a dead server."""

import time

from harness import Origin, RawClient, Tailcache, free_port, get, simple_config, slow_factor, addr


def test_upstream_refused_502():
    dead = free_port()
    tc = Tailcache(simple_config([addr(dead)], upstream={"max_fails": 1000})).start()
    t0 = time.monotonic()
    r = get(tc.port, "/ok")
    dt = time.monotonic() - t0
    assert r.status == 502, r
    assert dt < 2 * slow_factor(), "502 took %.1fs" % dt
    # Keep-alive client: the connection survives a 502.
    c = RawClient(tc.port)
    assert c.request("GET", "/a").status == 502
    assert c.request("GET", "/b").status == 502


def test_upstream_first_byte_timeout_504():
    o = Origin("o")
    tc = Tailcache(simple_config(o, upstream={"first_byte_timeout": "1s"})).start()
    t0 = time.monotonic()
    r = get(tc.port, "/hang", timeout=30)
    dt = time.monotonic() - t0
    print("504 after %.2fs (first_byte_timeout 1s)" % dt)
    assert r.status == 504, r
    assert 0.9 <= dt <= 1.0 + 2.0 * slow_factor(), "504 after %.2fs, want about 1s" % dt
    # A slow answer inside the timeout is fine, and the pool is not poisoned.
    r = get(tc.port, "/delay?ms=300")
    assert r.status == 200, r
    r = get(tc.port, "/ok")
    assert r.status == 200, r


def test_all_servers_in_cooldown_503():
    port = free_port()  # nothing listens yet
    max_fails = 2
    # One worker: whether health state is per worker or shared is not specified.
    tc = Tailcache(simple_config([addr(port)], workers=1,
                                 upstream={"max_fails": max_fails, "fail_timeout": "2s"})).start()
    statuses = [get(tc.port, "/ok?n=%d" % i).status for i in range(max_fails)]
    assert statuses[0] == 502, statuses
    assert all(s in (502, 503) for s in statuses), statuses
    for i in range(3):
        t0 = time.monotonic()
        r = get(tc.port, "/ok?cool=%d" % i)
        assert r.status == 503, "after %d failures: %r (earlier: %r)" % (max_fails, r, statuses)
        assert time.monotonic() - t0 < 1.0 * slow_factor()
    # The server comes up; after the cooldown it is tried again.
    o = Origin("late", port=port)
    deadline = time.monotonic() + 2 + 8 * slow_factor()
    seen = []
    for _ in range(1000):
        r = get(tc.port, "/ok")
        seen.append(r.status)
        if r.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # pacing of a bounded retry loop, not a wait for a condition
    assert seen[-1] == 200, "server never tried again after fail_timeout: %r" % seen[-5:]
    assert o.request_count >= 1


def test_passive_health_two_servers():
    live = Origin("live")
    dead = free_port()
    tc = Tailcache(simple_config([addr(dead), live], workers=2,
                                 upstream={"max_fails": 2, "fail_timeout": "60s"})).start()
    # Phase 1 (bounded): until 20 requests in a row succeed.
    history = []
    streak = 0
    for _ in range(80):
        s = get(tc.port, "/ok").status
        history.append(s)
        assert s in (200, 502), "unexpected status %d: %r" % (s, history)
        streak = streak + 1 if s == 200 else 0
        if streak >= 20:
            break
    assert streak >= 20, "never 20 successes in a row: %r" % history
    print("failures before the dead server was skipped: %d" % history.count(502))
    # Phase 2: the dead server stays skipped.
    before = live.request_count
    for i in range(20):
        r = get(tc.port, "/ok?p2=%d" % i)
        assert r.status == 200, "request %d after the failures: %r" % (i, r)
    assert live.request_count - before == 20
