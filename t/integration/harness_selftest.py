#!/usr/bin/env python3
"""Checks the harness itself, without tailcache: the raw client against the
test origin directly. Run: python3 t/integration/harness_selftest.py [big]
("big" adds the 1 GiB streams, to measure what the harness costs alone)."""

import json
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


if __name__ == "__main__":
    try:
        check_basic()
        if "big" in sys.argv[1:]:
            check_big()
    finally:
        print("cleanup problems:", h.cleanup_all())
