"""Regression tests for bugs found in review, one group per bug:

  - an access log line for a very long (extension) method overflowed the
    line buffer (a crash under ASan);
  - an upstream that closed right after a complete Content-Length or
    chunked body truncated the response of a slow client;
  - a chunked response over cache.memory.max_object_size left no
    hit-for-miss marker: every later burst coalesced behind one fetch
    that could not be shared, and the waiters were cut;
  - a client half-close (shutdown(SHUT_WR)) cut the response it was
    waiting for, dropped pipelined requests, and aborted a request body
    still in flight to the origin;
  - one only-if-cached request inside stale-while-revalidate disabled the
    background refresh of that entry for good."""

import re
import socket
import time

from harness import (KiB, MiB, Origin, RawClient, Reply, Tailcache, build_request,
                     concurrent_requests, get, pattern, read_text, simple_config, slow_factor,
                     wait_for)

CS_HFM = "tailcache; fwd=uri-miss; detail=hit-for-miss"
CS_HIT = re.compile(r"^tailcache; hit; ttl=(-?\d+); detail=memory$")


def cs(r):
    return r.header("Cache-Status") or ""


def check_pattern_body(r, n, what):
    assert r.status == 200, "%s: %r" % (what, r)
    assert r.body_len == n, "%s: got %d of %d body bytes (%r)" % (what, r.body_len, n, r)
    assert r.body == pattern(0, n), "%s: the body is not the origin's pattern" % what


class ClosingOrigin(Origin):
    """An Origin that closes the connection right after answering the
    paths in plain_close, without announcing it (no Connection: close)."""

    def __init__(self, *a, plain_close=(), **kw):
        super().__init__(*a, **kw)
        self.plain_close = set(plain_close)

    def _respond(self, s, rd, req, path, q, cid):
        keep = super()._respond(s, rd, req, path, q, cid)
        return keep and path not in self.plain_close


class SlowReadOrigin(Origin):
    """An Origin that, for the paths in slow, waits delay seconds after a
    request head before reading its body, then reads it in pieces of at
    most piece bytes with a pause between reads."""

    def __init__(self, *a, slow=(), delay=1.5, pause=0.01, piece=64 * KiB, **kw):
        super().__init__(*a, **kw)
        self.slow = set(slow)
        self.delay = delay
        self.pause = pause
        self.piece = piece

    def _read_body(self, rd, req, path):
        if path in self.slow:
            if self._stop.wait(self.delay):
                return False
            rd._rbuf = bytearray(self.piece)  # each recv then takes at most piece bytes
            rd._rmv = memoryview(rd._rbuf)
            fast = rd.recv

            def slow_recv():
                if self._stop.wait(self.pause):
                    return 0
                return fast()
            rd.recv = slow_recv
        return super()._read_body(rd, req, path)


def slow_reader_get(port, target, wait=1.5, timeout=10.0):
    """GET target (keep-alive), wait seconds before reading anything, then
    read the response; the body must be complete (framing errors raise)."""
    c = RawClient(port, timeout=timeout)
    try:
        c.send(build_request("GET", target))
        time.sleep(wait)  # deliberately not reading: the client is slow
        return c.read_response()
    finally:
        c.close()


# --------------------------------------------------------------------------
# 1. access log line for a very long method

def test_access_log_long_method():
    """Extension methods of about the access log buffer's size (2 KiB) and
    beyond: the request is answered, the proxy stays up (ASan aborted on
    the old overflow), and each log line is bounded, the method cut to 64
    bytes."""
    o = Origin("o")
    tc = Tailcache(simple_config(o, workers=1)).start()
    lengths = (2006, 2030, 2100, 3000)
    for n in lengths:
        c = RawClient(tc.port, timeout=5)
        try:
            c.send(b"X" * n + b" /ok?len=%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % n)
            r = c.read_response()
        except Exception as e:
            raise AssertionError("method of %d bytes: no complete answer (%r); tailcache "
                                 "alive: %s" % (n, e, tc.alive()))
        finally:
            c.close()
        assert 100 <= r.status <= 599, (n, r)
        assert tc.alive(), "tailcache died after a method of %d bytes" % n

    def lines():
        got = [l for l in read_text(tc.access_log).splitlines() if " /ok?len=" in l]
        return got if len(got) >= len(lengths) else None
    got = wait_for(lines, 5, msg="%d access log lines for the long methods:\n%s" % (
        len(lengths), read_text(tc.access_log)[-3000:]))
    for n in lengths:
        mine = [l for l in got if " /ok?len=%d HTTP/1.1\"" % n in l]
        assert len(mine) == 1, "method of %d bytes: access log lines %r" % (n, got)
        line = mine[0]
        assert len(line) <= 2048, "method of %d bytes: access log line of %d bytes" % (
            n, len(line))
        assert ('"' + "X" * 64 + " /ok?len=%d HTTP/1.1\"" % n) in line, \
            "method of %d bytes not cut to 64 in the log: %r" % (n, line[:300])
        assert re.search(r'" \d{3} \d+ route=default ', line), line[-200:]
    assert tc.alive()


# --------------------------------------------------------------------------
# 2. upstream closes right after a complete body, client reads slowly

BIG = 3 * MiB


def test_upstream_close_after_length_body_slow_client():
    """Content-Length body of 3 MiB, then the origin closes (announced with
    Connection: close, and plain): a client that starts reading 1.5 s late
    still gets every byte (the old proxy cut it at about 2.7 MB)."""
    o = ClosingOrigin("o", plain_close=["/plain"])
    o.handle("/announced", Reply(size=BIG, close=True))
    o.handle("/plain", Reply(size=BIG))
    tc = Tailcache(simple_config(o)).start()
    for path in ("/announced", "/plain"):
        r = slow_reader_get(tc.port, path)
        check_pattern_body(r, BIG, "Content-Length, close (%s)" % path)
        assert r.framing == "length", (path, r.framing)
    assert o.count("/announced") == 1 and o.count("/plain") == 1


def test_upstream_close_after_chunked_body_slow_client():
    """The same with a chunked body of 3 MiB ending in its last chunk."""
    o = ClosingOrigin("o", plain_close=["/plain"])
    o.handle("/announced", Reply(size=BIG, chunked=True, close=True))
    o.handle("/plain", Reply(size=BIG, chunked=True))
    tc = Tailcache(simple_config(o)).start()
    for path in ("/announced", "/plain"):
        r = slow_reader_get(tc.port, path)
        check_pattern_body(r, BIG, "chunked, close (%s)" % path)


def test_upstream_close_after_body_slow_client_cached():
    """On a caching route: the slow client gets the whole body, and the
    object stored is complete (the next request is a full hit)."""
    o = ClosingOrigin("o", plain_close=["/c"])
    o.handle("/c", Reply(200, [("Cache-Control", "max-age=60")], size=BIG))
    tc = Tailcache(simple_config(o, route={"cache": {"enabled": True}})).start()
    r = slow_reader_get(tc.port, "/c")
    check_pattern_body(r, BIG, "caching route, first (slow) client")
    r2 = get(tc.port, "/c")
    check_pattern_body(r2, BIG, "caching route, then")
    assert CS_HIT.match(cs(r2)), "want a hit after the complete fetch, got %r" % cs(r2)
    assert o.count("/c") == 1, o.count("/c")


# --------------------------------------------------------------------------
# 3. a chunked response over max_object_size leaves a hit-for-miss marker

def test_chunked_over_max_object_size_hit_for_miss():
    """A chunked cacheable response of 3 MiB with max_object_size 1m is
    passed whole to its client and leaves a hit-for-miss marker, so a
    later burst does not coalesce behind a fetch that cannot be stored
    (the old proxy queued every burst behind one fetch and cut the
    waiters at the limit)."""
    o = Origin("o")
    o.handle("/big", Reply(200, [("Cache-Control", "max-age=60")], size=BIG, chunked=True,
                           rate=4 * MiB, piece=64 * KiB))
    tc = Tailcache(simple_config(o, route={"cache": {"enabled": True}},
                                 cache={"memory": {"size": "64m", "shards": 1,
                                                   "max_object_size": "1m"}})).start()
    r = get(tc.port, "/big", timeout=10)
    check_pattern_body(r, BIG, "first client")
    for burst in range(2):
        before = o.count("/big")
        rs = concurrent_requests(tc.port, 4, "/big", timeout=15)
        for i, x in enumerate(rs):
            assert not isinstance(x, Exception), "burst %d, client %d: %r (after %d body " \
                "bytes)" % (burst, i, x, getattr(x, "body_len", -1))
            check_pattern_body(x, BIG, "burst %d, client %d" % (burst, i))
            assert cs(x) == CS_HFM, "burst %d, client %d: Cache-Status %r, want %r" % (
                burst, i, cs(x), CS_HFM)
        assert o.count("/big") == before + 4, "burst %d: origin saw %d requests for 4 " \
            "clients" % (burst, o.count("/big") - before)


# --------------------------------------------------------------------------
# 4. client half-close

def half_close_start():
    o = SlowReadOrigin("o", slow=["/sink"])
    o.handle("/mid", Reply(200, [("Cache-Control", "max-age=60")], size=200 * KiB))
    o.handle("/p2", Reply(200, [("Cache-Control", "no-store")], body=b"second\n", delay=0.2))
    tc = Tailcache(simple_config(o, route={"cache": {"enabled": True}})).start()
    return o, tc


def test_half_close_after_get_cached():
    """GET for a cached 200 KB object, then shutdown(SHUT_WR) at once: the
    whole response arrives every time, then the proxy closes (the old one
    cut it at about 128 KB)."""
    o, tc = half_close_start()
    check_pattern_body(get(tc.port, "/mid"), 200 * KiB, "warming GET")
    for i in range(10):
        c = RawClient(tc.port, timeout=5)
        try:
            c.send(build_request("GET", "/mid"))
            c.sock.shutdown(socket.SHUT_WR)
            try:
                r = c.read_response()
            except Exception as e:
                raise AssertionError("round %d: %r" % (i, e))
            check_pattern_body(r, 200 * KiB, "round %d" % i)
            assert CS_HIT.match(cs(r)), "round %d: %r" % (i, cs(r))
            assert c.wait_closed(5), "round %d: the proxy kept a half-closed connection " \
                "open after answering" % i
            assert not c.buf, "round %d: bytes after the response: %r" % (i, bytes(c.buf[:100]))
        finally:
            c.close()
    assert o.count("/mid") == 1


def test_half_close_after_pipelined_gets():
    """Two pipelined GETs (a miss to a slowish origin and a cache hit, in
    both orders), then shutdown(SHUT_WR): both are answered, in order, then
    the proxy closes (the old one closed after the first answer when the
    half-close came while it was proxying)."""
    o, tc = half_close_start()
    check_pattern_body(get(tc.port, "/mid"), 200 * KiB, "warming GET")
    for i in range(4):
        miss = "/p2?i=%d" % i
        order = ["/mid", miss] if i % 2 else [miss, "/mid"]
        c = RawClient(tc.port, timeout=5)
        try:
            c.send(b"".join(build_request("GET", t) for t in order))
            c.sock.shutdown(socket.SHUT_WR)
            for k, target in enumerate(order):
                try:
                    r = c.read_response()
                except Exception as e:
                    raise AssertionError("round %d (%s): response %d (%s): %r"
                                         % (i, " then ".join(order), k + 1, target, e))
                what = "round %d, response %d (%s)" % (i, k + 1, target)
                if target == "/mid":
                    check_pattern_body(r, 200 * KiB, what)
                    assert CS_HIT.match(cs(r)), (what, cs(r))
                else:
                    assert r.status == 200 and r.body == b"second\n", (what, r, r.body)
                    assert r.header("X-Origin-Target") == target, (what, r.headers)
            assert c.wait_closed(5), "round %d: not closed after both answers" % i
            assert not c.buf, (i, bytes(c.buf[:100]))
        finally:
            c.close()
    assert o.count("/p2") == 4 and o.count("/mid") == 1, (o.count("/p2"), o.count("/mid"))


def test_half_close_post_body():
    """(1) A POST whose 8 MiB body is sent completely, then shutdown(SHUT_WR),
    while the origin reads slowly: the origin gets the whole body and the
    client the response (the old proxy aborted the request at the EOF).
    (2) A POST that declares 1 MiB, sends 100 KB, then shutdown(SHUT_WR):
    the body can never complete, so the origin must never see a complete
    request and the proxy must not wait for the rest: the connection
    closes within a few seconds (the fix must not take the EOF for the end
    of the body)."""
    o, tc = half_close_start()
    n = 8 * MiB
    c = RawClient(tc.port, timeout=20)
    try:
        c.send(build_request("POST", "/sink", body=pattern(0, n)))
        c.sock.shutdown(socket.SHUT_WR)
        try:
            r = c.read_response(timeout=15)
        except Exception as e:
            raise AssertionError("no response after a complete body and a half-close: %r; "
                                 "origin saw %d body bytes, %d complete requests"
                                 % (e, o.bytes_received, o.count("/sink")))
        assert r.status == 200, r
        assert r.body == b"bytes=%d pattern=ok" % n, r.body
        assert c.wait_closed(5), "not closed after the answer to a half-closed client"
    finally:
        c.close()
    assert o.count("/sink") == 1, o.count("/sink")

    # (2) the origin reads at once now: only the proxy could wait.
    o.slow.clear()
    open_before = o.open_connections  # the pooled upstream connection of (1), if any
    c = RawClient(tc.port, timeout=5)
    try:
        c.send(build_request("POST", "/sink", headers=[("Content-Length", str(MiB))]) +
               pattern(0, 100 * KiB))
        c.sock.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        assert c.wait_closed(3 * slow_factor()), "the proxy kept a connection open whose " \
            "request body can never complete (%.1fs)" % (time.monotonic() - t0)
        print("body cut short: closed %.2fs after the half-close; client got %r" % (
            time.monotonic() - t0, bytes(c.buf[:60])))
    finally:
        c.close()
    # The upstream connection that carried the partial body (new or
    # reused) is closed too, without a complete request.
    wait_for(lambda: o.open_connections <= open_before, 5,
             msg="the upstream connection of the cut request to close")
    assert o.count("/sink") == 1, "the origin received a complete request from a body cut " \
        "short: %r" % o.requests_for("/sink")
    assert tc.alive()
    r = get(tc.port, "/p2")
    assert r.status == 200 and r.body == b"second\n", r


# --------------------------------------------------------------------------
# 5. stale-while-revalidate and only-if-cached

def test_swr_refresh_after_only_if_cached():
    """Within stale_while_revalidate, an only-if-cached request is served
    stale; later normal requests still refresh the entry in the background
    until a fresh copy is served (the old proxy never refreshed that entry
    again after one only-if-cached request)."""
    o = Origin("o")

    def h(req):
        # The first two fetches are short-lived; from the third on the
        # entry lives long, so a refreshed copy shows as a hit with ttl > 1.
        return Reply(200, [("Cache-Control", "max-age=1" if o.count("/s") <= 2
                            else "max-age=60")],
                     body=("n=%d\n" % o.count("/s")).encode())
    o.handle("/s", h)
    tc = Tailcache(simple_config(o, route={"cache": {"enabled": True,
                                                      "stale_while_revalidate": "60s"}})).start()
    r = get(tc.port, "/s")
    assert r.status == 200 and r.body == b"n=1\n", (r, r.body)
    assert cs(r).startswith("tailcache; fwd=miss; stored; ttl="), cs(r)
    time.sleep(2.2)  # Age counts whole seconds: max-age=1 is surely expired
    r = get(tc.port, "/s", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 200 and r.body == b"n=1\n", (r, r.body)
    assert "detail=stale-while-revalidate" in cs(r), cs(r)
    after_oic = o.count("/s")
    # Normal requests from now on: each one finding the entry stale may
    # start a refresh; within a few seconds a fresh long-lived copy must be
    # served.
    deadline = time.monotonic() + 8
    seen = []
    while True:
        r = get(tc.port, "/s")
        assert r.status == 200, r
        seen.append(cs(r))
        m = CS_HIT.match(cs(r))
        if m and int(m.group(1)) > 1:
            break
        assert time.monotonic() < deadline, "no refreshed entry within 8 s after an " \
            "only-if-cached request: origin saw %d requests (%d after the only-if-cached " \
            "one); Cache-Status seen: %r" % (o.count("/s"), o.count("/s") - after_oic,
                                             seen[-5:])
        time.sleep(0.1)
    print("origin requests: %d (%d at the only-if-cached request); final %r" % (
        o.count("/s"), after_oic, cs(r)))
    assert o.count("/s") >= 3 and r.body == b"n=%d\n" % o.count("/s"), (o.count("/s"), r.body)
