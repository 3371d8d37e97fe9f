"""The cache's coalescing under load: hundreds of concurrent requests for
one cold key, for an uncacheable URL, and a 100 MiB object delivered to 50
clients while it is still downloading (read-while-writing)."""

import re
import threading
import time
import zlib

from harness import (MiB, Origin, RawClient, Reply, RssSampler, Tailcache, build_request,
                     concurrent_requests, pattern, pattern_pieces, read_text, run_parallel,
                     simple_config, wait_for)


def start(top_cache=None, **top):
    o = Origin("o")
    cfg = simple_config(o, route={"cache": {"enabled": True}}, **top)
    if top_cache:
        cfg["cache"] = top_cache
    return o, Tailcache(cfg).start()


def cs(r):
    return r.header("Cache-Status") or ""


def cache_stats(tc):
    return {k[len("cache_"):]: v for k, v in tc.stats().items() if k.startswith("cache_")}


def access_outcomes(tc, target, n, timeout=10):
    pat = re.compile(r'"GET (\S+) HTTP/1\.\d" \d+ \d+ .*cache=(\S+)$')

    def look():
        got = [m.group(2) for m in map(pat.search, read_text(tc.access_log).splitlines())
               if m and m.group(1) == target]
        return got if len(got) >= n else None
    return wait_for(look, timeout, interval=0.05, msg="%d access log lines for %s" % (n, target))


def test_coalesce_200_cold():
    """200 concurrent requests for a cold key behind a 200 ms origin: one
    origin request, 200 complete identical bodies, 199 collapsed."""
    o, tc = start()
    n = 200
    body = pattern(0, 100000)
    first = threading.Event()

    def h(req):
        if not first.is_set():
            first.set()
            time.sleep(0.2)
            # Hold the response until every other request has joined (bounded),
            # so that each of them is a waiter, not a later hit.
            try:
                wait_for(lambda: cache_stats(tc)["coalesced"] >= n - 1, 10, interval=0.02)
            except AssertionError:
                pass
        return Reply(200, [("Cache-Control", "max-age=60")], body=body)
    o.handle("/cold", h)
    t0 = time.monotonic()
    rs = concurrent_requests(tc.port, n, "/cold", timeout=30)
    wall = max(getattr(x, "t_done", t0) for x in rs) - min(getattr(x, "t_sent", t0) for x in rs)
    errs = [x for x in rs if isinstance(x, Exception)]
    assert not errs, "%d clients failed: %r" % (len(errs), errs[:3])
    bad = [x for x in rs if x.status != 200 or x.body != body]
    assert not bad, "%d incomplete or different responses: %r" % (len(bad), bad[:3])
    kinds = {}
    for x in rs:
        kinds[cs(x)] = kinds.get(cs(x), 0) + 1
    st = cache_stats(tc)
    print("%d concurrent cold requests: origin saw %d, wall %.3fs; Cache-Status %r; "
          "misses %d coalesced %d" % (n, o.count("/cold"), wall, kinds, st["misses"],
                                     st["coalesced"]))
    assert o.count("/cold") == 1, "origin saw %d requests for one cold key" % o.count("/cold")
    assert kinds.get("tailcache; fwd=miss; collapsed") == n - 1, kinds
    assert kinds.get("tailcache; fwd=miss; stored; ttl=60") == 1, kinds
    assert st["misses"] == 1 and st["coalesced"] == n - 1 and st["stored"] == 1, st
    outs = access_outcomes(tc, "/cold", n)
    assert outs.count("coalesced") == n - 1 and outs.count("miss") == 1, \
        {k: outs.count(k) for k in set(outs)}


def test_uncacheable_200_concurrent():
    """200 concurrent requests for a no-store URL (200 ms origin) all reach
    the origin, in about one origin latency more than the same burst takes
    on a route without a cache, not one after another: the first response
    leaves a hit-for-miss marker that releases the rest at once."""
    o = Origin("o")
    n = 200
    latency = 0.2
    cfg = simple_config(o, route={"cache": {"enabled": True}})
    # The baseline route has its own upstream: both bursts start without
    # pooled connections.
    cfg["upstreams"]["b"] = {"servers": [o.addr]}
    cfg["routes"].insert(0, {"name": "base", "prefix": "/base/", "upstream": "b"})
    tc = Tailcache(cfg).start()
    reply = Reply(200, [("Cache-Control", "no-store")], body=b"n" * 1000, delay=latency)
    o.handle("/nostore", reply)
    o.handle("/base/nostore", reply)

    def burst(target):
        rs = concurrent_requests(tc.port, n, target, timeout=60)
        errs = [x for x in rs if isinstance(x, Exception)]
        assert not errs, "%s: %d clients failed: %r" % (target, len(errs), errs[:3])
        bad = [x for x in rs if x.status != 200 or x.body != b"n" * 1000]
        assert not bad, bad[:3]
        t0 = min(x.t_sent for x in rs)
        arr = sorted(r.t_head - t0 for r in o.requests_for(target))
        done = sorted(x.t_done - t0 for x in rs)
        print("%s: origin arrivals first %.3fs, 2nd %.3fs, median %.3fs, last %.3fs; responses "
              "first %.3fs, median %.3fs, last %.3fs" % (
                  target, arr[0], arr[1], arr[n // 2], arr[-1], done[0], done[n // 2], done[-1]))
        assert o.count(target) == n, "origin saw %d of %d requests" % (o.count(target), n)
        return rs, done[-1]

    _, base = burst("/base/nostore")
    rs, wall = burst("/nostore")
    kinds = {}
    for x in rs:
        kinds[cs(x)] = kinds.get(cs(x), 0) + 1
    st = cache_stats(tc)
    print("%d concurrent uncacheable requests: wall %.3fs (%.1fx the %.0f ms origin latency); "
          "the same burst without a cache %.3fs; Cache-Status %r; hit_for_miss %d" % (
              n, wall, wall / latency, latency * 1000, base, kinds, st["hit_for_miss"]))
    allowed = {"tailcache; fwd=miss; detail=no_store",
               "tailcache; fwd=uri-miss; detail=hit-for-miss"}
    assert set(kinds) <= allowed, kinds
    assert wall < base + 2 * latency, "uncacheable requests took %.2fs (%.2fs without a cache): " \
        "serialised behind each other?" % (wall, base)


def test_read_while_writing_100mib():
    """A 100 MiB cacheable object downloading at 10 MiB/s goes to 50
    concurrent clients (40 at once, 10 more when 40% is in) while it
    downloads: one origin request, 50 complete identical bodies, the
    waiters' first bytes soon after the leader's, RSS near one copy."""
    size = 100 * MiB
    rate = 10 * MiB
    n1, n2 = 40, 10
    o, tc = start(top_cache={"memory": {"size": "256m", "shards": 1,
                                        "max_object_size": "128m"}})
    reply = Reply(200, [("Cache-Control", "max-age=300")], size=size, rate=rate,
                  piece=256 * 1024)
    o.handle("/big", reply)
    want_crc = 0
    for piece in pattern_pieces(size):
        want_crc = zlib.crc32(piece, want_crc)
    # Warm up the allocator and the connection paths, then read the idle RSS.
    r = RawClient(tc.port).request("GET", "/ok")
    assert r.status == 200
    idle = tc.rss()

    # The late wave connects when it starts: a connection left silent for
    # timeouts.client_header is (rightly) closed by the proxy.
    clients = [RawClient(tc.port, timeout=30) for _ in range(n1)] + [None] * n2
    out = [None] * (n1 + n2)
    crcs = [0] * (n1 + n2)

    def one(i):
        st = {"first": None, "bytes": 0}

        def sink(mv):
            if st["first"] is None:
                st["first"] = time.monotonic()
            st["bytes"] += len(mv)
            crcs[i] = zlib.crc32(mv, crcs[i])
        t_sent = time.monotonic()
        try:
            clients[i].send(build_request("GET", "/big"))
            r = clients[i].read_response(sink=sink)
        except Exception as e:
            out[i] = {"error": repr(e), "bytes": st["bytes"],
                      "after_s": round(time.monotonic() - t_sent, 2)}
            return out[i]
        finally:
            clients[i].close()
        out[i] = {"status": r.status, "cs": cs(r), "len": r.body_len, "crc": crcs[i],
                  "t_sent": t_sent, "t_first": st["first"], "t_done": time.monotonic()}
        return out[i]

    with RssSampler(tc, interval=0.05) as rss:
        t0 = time.monotonic()
        wave1 = threading.Thread(target=lambda: run_parallel(n1, one, timeout=90), daemon=True)
        wave1.start()
        wait_for(lambda: reply.sent >= 40 * MiB, 30, interval=0.05,
                 msg="40%% of the download (%d MiB sent)" % (reply.sent // MiB))
        for j in range(n2):
            clients[n1 + j] = RawClient(tc.port, timeout=30)
        late = run_parallel(n2, lambda j: one(n1 + j), timeout=90)
        wave1.join(90)
        assert not wave1.is_alive(), "first wave still running"
    assert all(isinstance(x, dict) for x in late), late
    errs = [(i, x) for i, x in enumerate(out) if x is None or "error" in x]
    assert not errs, "%d clients failed: %r" % (len(errs), errs[:3])
    bad = [(i, x) for i, x in enumerate(out)
           if x["status"] != 200 or x["len"] != size or x["crc"] != want_crc]
    assert not bad, "%d clients got a wrong body: %r" % (len(bad), bad[:3])
    leaders = [x for x in out if "stored" in x["cs"]]
    assert len(leaders) == 1, "leaders: %r" % sorted(set(x["cs"] for x in out))
    lead = leaders[0]
    dl_end = reply.finished_at
    w1_first = max(x["t_first"] - lead["t_first"] for x in out[:n1])
    w2_first = max(x["t_first"] - x["t_sent"] for x in out[n1:])
    last_first = max(x["t_first"] for x in out)
    done = max(x["t_done"] for x in out) - t0
    grew = rss.peak - idle
    print("100 MiB at %d MiB/s to %d+%d clients: origin saw %d requests, download %.1fs, all "
          "done %.1fs; first byte: wave 1 <= %.3fs after the leader's, late wave <= %.3fs "
          "after sending, last first byte %.1fs before the download ended" % (
              rate // MiB, n1, n2, o.count("/big"), dl_end - reply.started_at, done, w1_first,
              w2_first, dl_end - last_first))
    print("RSS: idle %.1f MiB, peak %.1f MiB (+%.1f MiB = %.2fx the object; %d samples)" % (
        idle / MiB, rss.peak / MiB, grew / MiB, grew / float(size), rss.samples))
    print("Cache-Status: %r" % {k: sum(1 for x in out if x["cs"] == k)
                                for k in set(x["cs"] for x in out)})
    assert o.count("/big") == 1, "origin saw %d requests" % o.count("/big")
    assert w1_first < 2.0, "a waiter's first byte came %.2fs after the leader's" % w1_first
    assert w2_first < 2.0, "a late waiter's first byte came %.2fs after its request" % w2_first
    assert last_first < dl_end - 2.0, "waiters' first bytes did not come before the end of " \
        "the download"
    assert grew < 2.5 * size, "RSS grew by %.1f MiB for one 100 MiB object" % (grew / MiB)
