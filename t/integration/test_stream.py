"""1 GiB bodies stream through the proxy both ways without it buffering them:
its peak RSS stays under 64 MiB above its idle RSS."""

import os
import time

from harness import (GiB, MiB, Origin, PatternChecker, RawClient, RssSampler, Tailcache,
                     binary_has_asan, build_request, pattern_pieces, simple_config)

BUDGET = 64 * MiB


def start_measured():
    env = {}
    if binary_has_asan():
        # ASan's quarantine keeps freed memory (256 MB by default) and would
        # be measured as growth; shrink it so RSS shows the proxy's buffering.
        opts = os.environ.get("ASAN_OPTIONS", "")
        if "quarantine_size_mb" not in opts:
            opts = (opts + ":" if opts else "") + "quarantine_size_mb=4"
        env["ASAN_OPTIONS"] = opts
    o = Origin("o")
    tc = Tailcache(simple_config(o), env=env).start()
    # Warm up: one-time allocations (pools, buffers) are not growth.
    c = RawClient(tc.port, timeout=30)
    for _ in range(3):
        c.send(build_request("GET", "/size?bytes=%d" % (4 * MiB)))
        r = c.read_response(sink=lambda mv: None)
        assert r.status == 200 and r.body_len == 4 * MiB, r
        c.send(build_request("POST", "/sink", headers=[("Content-Length", str(4 * MiB))]))
        for piece in pattern_pieces(4 * MiB):
            c.send(piece)
        r = c.read_response()
        assert r.status == 200, r
    c.close()
    idle = tc.rss()
    return o, tc, idle


def report(what, idle, sampler, n, dt):
    print("%s: idle RSS %.1f MiB, peak RSS %.1f MiB (+%.1f MiB, %d samples), %.1f s, %.0f MiB/s"
          % (what, idle / MiB, sampler.peak / MiB, (sampler.peak - idle) / MiB, sampler.samples,
             dt, n / MiB / dt))


def test_stream_1gib_response():
    o, tc, idle = start_measured()
    n = GiB
    c = RawClient(tc.port, timeout=30)
    chk = PatternChecker()
    t0 = time.monotonic()
    with RssSampler(tc) as s:
        c.send(build_request("GET", "/size?bytes=%d" % n))
        r = c.read_response(sink=chk.feed)
    dt = time.monotonic() - t0
    report("1 GiB response", idle, s, n, dt)
    assert r.status == 200, r
    assert r.body_len == n, "got %d of %d bytes" % (r.body_len, n)
    assert chk.finish(), "body differs from what the origin sent at offset %d" % chk.bad_at
    assert s.peak - idle < BUDGET, "peak RSS %.1f MiB above idle (budget %d MiB)" % (
        (s.peak - idle) / MiB, BUDGET // MiB)


def test_stream_1gib_request():
    o, tc, idle = start_measured()
    n = GiB
    c = RawClient(tc.port, timeout=30)
    t0 = time.monotonic()
    with RssSampler(tc) as s:
        c.send(build_request("POST", "/sink", headers=[("Content-Length", str(n))]))
        for piece in pattern_pieces(n):
            c.send(piece)
        r = c.read_response()
    dt = time.monotonic() - t0
    report("1 GiB request", idle, s, n, dt)
    assert r.status == 200, r
    assert r.body == b"bytes=%d pattern=ok" % n, "origin says %r" % r.body
    assert s.peak - idle < BUDGET, "peak RSS %.1f MiB above idle (budget %d MiB)" % (
        (s.peak - idle) / MiB, BUDGET // MiB)
