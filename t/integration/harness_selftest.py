#!/usr/bin/env python3
"""Checks the harness itself, without tailcache: the raw client against the
test origin directly, the load generator against the origin, and the
redis-server / memcached helpers against real servers. Run:
python3 t/integration/harness_selftest.py [big] [notiers]
("big" adds the 1 GiB streams, to measure what the harness costs alone;
"notiers" skips redis-server and memcached)."""

import json
import os
import socket
import sys
import time

import harness as h


def check_basic():
    o = h.Origin("self")
    r = h.get(o.port, "/ok")
    assert r.status == 200 and r.body == b"ok\n" and r.framing == "length", r
    assert r.header("X-Origin") == "self"

    c = h.RawClient(o.port)
    # pipelined, with HEAD in the middle and every framing
    c.send(h.build_request("GET", "/delay?ms=100")
           + h.build_request("HEAD", "/size?bytes=100")
           + h.build_request("HEAD", "/chunked?bytes=100")
           + h.build_request("POST", "/echo", body=b"hello")
           + h.build_request("GET", "/chunked?bytes=70000")
           + h.build_request("GET", "/size?bytes=300000"))
    rs = c.read_responses(6, heads=[False, True, True, False, False, False])
    assert [r.header("X-Origin-Target") for r in rs] == [
        "/delay?ms=100", "/size?bytes=100", "/chunked?bytes=100", "/echo",
        "/chunked?bytes=70000", "/size?bytes=300000"], rs
    assert rs[1].body == b"" and rs[1].header("Content-Length") == "100"
    assert rs[3].body == b"hello"
    assert rs[4].framing == "chunked" and rs[4].body == h.pattern(0, 70000)
    assert rs[4].trailers == [("X-Trailer", "yes")], rs[4].trailers
    assert rs[5].body == h.pattern(0, 300000)
    assert o.connections == 2, o.connections

    # chunked request body with a trailer
    c.send(h.build_request("PUT", "/echo", chunks=[b"abc", b"", b"defgh"],
                           trailers=[("X-T", "1")]))
    r = c.read_response()
    assert r.body == b"abcdefgh", r.body
    assert o.last().trailers == [("X-T", "1")]
    hdrs = json.loads(r.header("X-Echo-Headers"))
    assert ["Transfer-Encoding", "chunked"] in hdrs, hdrs

    # close-delimited
    c.send(h.build_request("GET", "/close-delimited?bytes=5000"))
    r = c.read_response()
    assert r.framing == "close" and r.body == h.pattern(0, 5000)
    assert c.eof

    # close-after
    c = h.RawClient(o.port)
    c.send(h.build_request("GET", "/close-after"))
    r = c.read_response()
    assert r.status == 200 and r.header("Connection") is None
    assert c.wait_closed(2)

    # hang: no answer
    c = h.RawClient(o.port, timeout=0.3)
    c.send(h.build_request("GET", "/hang"))
    try:
        c.read_response()
        raise AssertionError("hang answered")
    except TimeoutError:
        pass
    c.close()

    # drop_reused
    d = h.Origin("drop", drop_reused=True)
    c = h.RawClient(d.port)
    assert c.request("GET", "/ok").status == 200
    c.send(h.build_request("GET", "/ok"))
    assert c.wait_closed(2) and not c.buf
    assert d.dropped == 1

    # HTTP/1.0
    r = h.get(o.port, "/ok", version="HTTP/1.0", host=None)
    assert r.status == 200 and r.header("Connection") == "close"

    # wait_for bound
    t0 = time.monotonic()
    try:
        h.wait_for(lambda: False, 0.2, msg="never")
        raise RuntimeError("wait_for did not time out")
    except AssertionError:
        pass
    assert time.monotonic() - t0 < 1
    print("basic ok; origin errors: %s" % o.errors)
    assert not o.errors and not d.errors


def check_big(n=h.GiB):
    o = h.Origin("big")
    c = h.RawClient(o.port, timeout=30)
    chk = h.PatternChecker()
    t0 = time.monotonic()
    c.send(h.build_request("GET", "/size?bytes=%d" % n))
    r = c.read_response(sink=chk.feed)
    assert r.body_len == n and chk.finish(), (r.body_len, chk.bad_at)
    t1 = time.monotonic()
    c.send(h.build_request("POST", "/sink", headers=[("Content-Length", str(n))]))
    for piece in h.pattern_pieces(n):
        c.send(piece)
    r = c.read_response()
    assert r.body == b"bytes=%d pattern=ok" % n, r.body
    t2 = time.monotonic()
    print("1 GiB down %.1fs, up %.1fs (harness alone)" % (t1 - t0, t2 - t1))


def check_loadgen():
    o = h.Origin("load")
    o.handle("/bad", h.Reply(500, body=b"no\n"))
    lg = h.LoadGenerator(o.port, ["/ok", "/delay?ms=5"], threads=4, max_seconds=1.0).start()
    lg.join()
    print("loadgen ok paths: %s" % lg.summary())
    assert lg.failed == 0 and lg.done == len(lg.records) > 50, lg.summary()
    assert 0.005 <= lg.max_latency() < 1.0 and lg.p99() <= lg.max_latency(), lg.summary()
    assert lg.count_status("x") == 0 and lg.count() == len(lg.records)
    # The server closing a keep-alive connection after a response: retried
    # once on a new connection, not a failure.
    lg = h.LoadGenerator(o.port, ["/close-after"], threads=2, max_requests=40).start()
    lg.join()
    print("loadgen close-after: %s" % lg.summary())
    assert lg.failed == 0 and lg.done == 40 and lg.reconnects >= 1, lg.summary()
    # Non-2xx and a failing check are failures.
    lg = h.LoadGenerator(o.port, ["/bad", "/ok"], threads=2, max_requests=60,
                         check=lambda t, r: "wrong body" if r.body != b"no\n" else None).start()
    lg.join()
    assert lg.failed == 60 and lg.done == 0 and len(lg.failures) == 20, lg.summary()
    assert any("status 500" in f for f in lg.failures), lg.failures
    assert any("wrong body" in f for f in lg.failures), lg.failures
    # A dead server: every request fails, bounded, nothing hangs.
    dead = h.free_port()
    lg = h.LoadGenerator(dead, ["/ok"], threads=2, max_seconds=0.5, timeout=1).start()
    lg.join()
    assert lg.failed == len(lg.records) > 0 and lg.done == 0, lg.summary()
    # stop() mid-run is bounded.
    lg = h.LoadGenerator(o.port, ["/delay?ms=50"], threads=3, max_seconds=30).start()
    h.wait_for(lambda: len(lg.records) >= 3, 5)
    t0 = time.monotonic()
    lg.stop()
    assert time.monotonic() - t0 < 2 and not lg.running()
    assert not o.errors, o.errors


def check_redis():
    r = h.RedisServer(name="self-redis")
    assert h.connect_refused(r.port), "nothing should listen before start()"
    r.start()
    assert r.ping() and r.cmd("FLUSHALL") == "OK"
    assert r.cmd("SET", "tc:a", b"hello\x00world") == "OK"
    assert r.cmd("GET", "tc:a") == b"hello\x00world"
    assert r.cmd("GET", "nope") is None
    assert r.cmd("SADD", "tc:set", "x", "y") == 2
    assert sorted(r.cmd("SMEMBERS", "tc:set")) == [b"x", b"y"]
    assert r.cmd("SET", "other", "zzz") == "OK"
    assert r.keys("tc:*") == [b"tc:a", b"tc:set"], r.keys("tc:*")
    assert r.dbsize() == 3
    assert r.find("world", "tc:*") == [b"tc:a"]
    assert r.find("set") == [b"tc:set"]
    try:
        r.cmd("GET", "tc:set")
        raise RuntimeError("WRONGTYPE not raised")
    except h.RedisError as e:
        assert "WRONGTYPE" in str(e), e
    sub = r.subscribe("chan")
    assert r.cmd("PUBLISH", "chan", "m1") == 1
    assert r.cmd("PUBLISH", "chan", b"node-a\x01x") == 1
    assert sub.wait_messages(2, 3) == [b"m1", b"node-a\x01x"], sub.messages
    # pause: connections are accepted, nothing is answered, bounded
    r.pause()
    t0 = time.monotonic()
    try:
        r.cmd("PING", timeout=0.3)
        raise RuntimeError("a paused redis answered")
    except TimeoutError:
        pass
    assert time.monotonic() - t0 < 1.0
    assert h.port_accepts(r.port)
    assert not r.ping(timeout=0.2)
    r.resume()
    h.wait_for(r.ping, 3, msg="redis to answer after SIGCONT")
    # kill: refused; restart on the same port comes back empty
    port = r.port
    r.kill()
    assert not r.alive() and h.connect_refused(port)
    assert not r.ping(timeout=0.2)
    r.restart()
    assert r.port == port and r.ping() and r.dbsize() == 0 and r.starts == 2
    sub.stop()
    # stop
    rc = r.stop()
    assert rc == 0, "redis exited with %s:\n%s" % (rc, h.tail(r.log_path))
    assert h.connect_refused(port)
    r.restart()
    assert r.ping()
    # requirepass
    p = h.RedisServer(password="s3cret", name="self-redis-auth").start()
    assert p.cmd("SET", "k", "v") == "OK" and p.cmd("GET", "k") == b"v"
    s = socket.create_connection(("127.0.0.1", p.port), timeout=2)
    s.sendall(h._resp_command(["GET", "k"]))
    rep = h._RespReader(s).reply()
    s.close()
    assert isinstance(rep, h.RedisError) and "NOAUTH" in str(rep), rep
    # cleanup_all must cope with a paused server (it resumes, then stops it)
    p.pause()
    print("redis ok (%s)" % r.cmd("INFO", "server").split(b"\r\n")[1].decode())


def mc_set(m, key, value, exptime=0):
    assert m._text(b"set %s 0 %d %d\r\n%s" % (key, exptime, len(value), value),
                   end=b"STORED\r\n") == b""


def check_memcached():
    a = h.Memcached(name="self-mc-a")
    b = h.Memcached(name="self-mc-b", memory_mb=16)
    assert h.connect_refused(a.port)
    a.start()
    b.start()
    st = a.stats()
    assert st["curr_items"] == 0 and a.curr_items() == 0 and isinstance(st["version"], str), st
    assert st["limit_maxbytes"] == 64 * h.MiB and b.stats()["limit_maxbytes"] == 16 * h.MiB
    value = b"x\r\nEND\r\n\x00" + os.urandom(3000) + b"needle-1"
    mc_set(a, b"tc:one", value)
    mc_set(a, b"tc:two", b"plain")
    mc_set(b, b"tc:three", b"3")
    assert a.curr_items() == 2 and b.curr_items() == 1
    assert a.get("tc:one") == value and a.get("tc:none") is None
    h.wait_for(lambda: a.keys() == [b"tc:one", b"tc:two"], 3, msg="metadump keys")
    # A get moves an item between the LRU's queues, where one crawl can
    # miss it: keys() still lists everything.
    for _ in range(20):
        a.get("tc:one")
        a.get("tc:two")
        assert a.keys() == [b"tc:one", b"tc:two"], a.keys()
    assert a.find("needle-1") == [b"tc:one"] and a.find("two") == [b"tc:two"]
    assert b.find("needle-1") == []
    a.pause()
    try:
        a.stats(timeout=0.3)
        raise RuntimeError("a paused memcached answered")
    except TimeoutError:
        pass
    assert not a.ready()
    a.resume()
    h.wait_for(a.ready, 3)
    assert a.curr_items() == 2
    port = a.port
    a.kill()
    assert h.connect_refused(port) and not a.ready()
    a.restart()
    assert a.port == port and a.curr_items() == 0 and a.get("tc:one") is None
    assert a.stop() is not None and h.connect_refused(port)
    a.start()
    mc_set(a, b"k", b"v")
    a.flush_all()
    assert a.get("k") is None
    b.pause()  # left paused for cleanup_all
    print("memcached ok (%s)" % st["version"])


def check_cleanup_bounded():
    t0 = time.monotonic()
    problems = h.cleanup_all()
    took = time.monotonic() - t0
    assert not problems, problems
    assert took < 15, "cleanup_all took %.1fs" % took
    print("cleanup_all (with paused servers) took %.2fs" % took)


if __name__ == "__main__":
    try:
        check_basic()
        check_loadgen()
        if "notiers" not in sys.argv[1:]:
            check_redis()
            check_memcached()
            check_cleanup_bounded()
        if "big" in sys.argv[1:]:
            check_big()
    finally:
        print("cleanup problems:", h.cleanup_all())
