"""Proxying basics: methods, request and response body framings, HTTP/1.0
clients, pipelining, Expect: 100-continue."""

import json

from harness import (Origin, RawClient, Tailcache, build_request, get, pattern, request,
                     simple_config)


def start(**kw):
    o = Origin("o")
    tc = Tailcache(simple_config(o, **kw)).start()
    return o, tc


def test_get_head_post_put():
    o, tc = start()
    c = RawClient(tc.port)

    r = c.request("GET", "/ok")
    assert r.status == 200 and r.body == b"ok\n", r
    assert r.header("X-Origin") == "o"

    r = c.request("GET", "/size?bytes=100000")
    assert r.status == 200 and r.body == pattern(0, 100000), r

    # HEAD: the headers of the GET, no body; the connection stays in sync.
    r = c.request("HEAD", "/size?bytes=5000")
    assert r.status == 200 and r.body == b"", r
    assert r.header("Content-Length") == "5000", r.headers
    r = c.request("HEAD", "/chunked?bytes=5000")
    assert r.status == 200 and r.body == b"", r
    r = c.request("GET", "/ok")
    assert r.status == 200 and r.body == b"ok\n", "after HEADs: %r %r" % (r, r.body)

    r = c.request("POST", "/echo", body=b"post body")
    assert r.status == 200 and r.body == b"post body", r
    assert r.header("X-Echo-Method") == "POST"

    r = c.request("PUT", "/echo", body=b"put body", headers=[("Content-Type", "text/plain")])
    assert r.status == 200 and r.body == b"put body", r
    assert r.header("X-Echo-Method") == "PUT"

    r = c.request("DELETE", "/echo")
    assert r.status == 200 and r.header("X-Echo-Method") == "DELETE", r

    methods = [q.method for q in o.requests]
    assert methods == ["GET", "GET", "HEAD", "HEAD", "GET", "POST", "PUT", "DELETE"], methods
    assert o.requests[1].target == "/size?bytes=100000"


def test_request_body_content_length():
    o, tc = start()
    c = RawClient(tc.port)
    for n in (0, 1, 1000, 70000, 3 * 1024 * 1024 + 17):
        body = pattern(n, n)
        r = c.request("POST", "/echo", body=body)
        assert r.status == 200, r
        assert r.body == body, "echo of %d bytes came back as %d bytes" % (n, len(r.body))
        got = o.last()
        assert got.body == body, "origin got %d of %d bytes" % (len(got.body), n)
        assert got.framing in ("length", "chunked"), got.framing
        if got.framing == "length":
            assert got.header("Content-Length") == str(n), got.headers
    r = c.request("PUT", "/echo", body=b"x" * 12345)
    assert r.status == 200 and r.body == b"x" * 12345


def test_request_body_chunked():
    o, tc = start()
    c = RawClient(tc.port)
    chunks = [b"a", b"bcdefg", pattern(0, 70000), b"\r\n0\r\n\r\n", b"z" * 4096]
    want = b"".join(chunks)
    raw = build_request("POST", "/echo", chunks=chunks, trailers=[("X-Req-Trailer", "t")])
    # Add chunk extensions by hand to one chunk size line.
    raw = raw.replace(b"\r\n6\r\nbcdefg", b"\r\n6;name=value;x=\"q\"\r\nbcdefg", 1)
    assert b"6;name" in raw
    c.send(raw)
    r = c.read_response()
    assert r.status == 200, r
    assert r.body == want, "echoed %d bytes, want %d" % (len(r.body), len(want))
    got = o.last()
    assert got.body == want, "origin got %d bytes, want %d" % (len(got.body), len(want))
    assert not got.has("Content-Length") or got.framing == "length"
    # Re-framed by the proxy: trailers are dropped.
    assert got.trailers == [], "trailers reached the origin: %r" % got.trailers
    assert not got.has("X-Req-Trailer"), got.headers
    # The connection is still in sync after a chunked body.
    r = c.request("GET", "/ok")
    assert r.status == 200 and r.body == b"ok\n"

    # A chunked body of one empty last-chunk only.
    r = c.request("PUT", "/echo", chunks=[])
    assert r.status == 200 and r.body == b"", r


def test_response_chunked():
    o, tc = start()
    c = RawClient(tc.port)
    for n in (0, 1, 5000, 300000):
        r = c.request("GET", "/chunked?bytes=%d" % n)
        assert r.status == 200, r
        assert r.body == pattern(0, n), "chunked %d: got %d bytes" % (n, len(r.body))
        assert r.trailers == [], "trailer forwarded: %r" % r.trailers
        assert not r.has("X-Trailer"), r.headers
        assert not r.has("Trailer"), "Trailer header forwarded: %r" % r.headers
    r = c.request("GET", "/ok")
    assert r.status == 200 and r.body == b"ok\n"
    assert o.connections <= 2, "origin connections %d for one client" % o.connections


def test_response_close_delimited():
    """An until-close upstream response goes to an HTTP/1.1 client chunked,
    and the client connection stays open."""
    o, tc = start()
    c = RawClient(tc.port)
    for n in (0, 10, 200000):
        r = c.request("GET", "/close-delimited?bytes=%d" % n)
        assert r.status == 200, r
        assert r.framing == "chunked", "framing %s, headers %r" % (r.framing, r.headers)
        assert r.body == pattern(0, n), "close-delimited %d: got %d bytes" % (n, len(r.body))
    r = c.request("GET", "/ok")
    assert r.status == 200 and r.body == b"ok\n", "client connection unusable after re-framing"


def test_http10_client():
    o, tc = start()
    for target, n in (("/ok", None), ("/size?bytes=30000", 30000), ("/chunked?bytes=30000", 30000),
                      ("/close-delimited?bytes=30000", 30000)):
        c = RawClient(tc.port)
        c.send(build_request("GET", target, version="HTTP/1.0"))
        r = c.read_response()
        assert r.status == 200, (target, r)
        assert r.framing in ("length", "close"), \
            "%s: HTTP/1.0 client got framing %s: %r" % (target, r.framing, r.headers)
        assert not r.has("Transfer-Encoding"), (target, r.headers)
        want = b"ok\n" if n is None else pattern(0, n)
        assert r.body == want, "%s: %d bytes" % (target, len(r.body))
        assert c.wait_closed(5), "%s: connection not closed after an HTTP/1.0 response" % target
        c.close()
    # HTTP/1.0 request with a body.
    r = request(tc.port, "POST", "/echo", body=b"ten bytes!", version="HTTP/1.0")
    assert r.status == 200 and r.body == b"ten bytes!", r


def test_pipelining():
    o, tc = start()
    c = RawClient(tc.port)
    reqs = [("GET", "/delay?ms=300"), ("HEAD", "/size?bytes=100"), ("POST", "/echo"),
            ("GET", "/chunked?bytes=3000"), ("GET", "/size?bytes=10")]
    raw = b"".join(build_request(m, t, body=(b"piped" if m == "POST" else None))
                   for m, t in reqs)
    c.send(raw)  # one send
    rs = c.read_responses(len(reqs), heads=[m == "HEAD" for m, _ in reqs])
    got = [r.header("X-Origin-Target") for r in rs]
    assert got == [t for _, t in reqs], "responses out of order: %r" % got
    assert all(r.status == 200 for r in rs), rs
    assert rs[1].body == b""
    assert rs[2].body == b"piped"
    assert rs[3].body == pattern(0, 3000)
    assert rs[4].body == pattern(0, 10)


def test_expect_100_continue():
    o, tc = start()
    c = RawClient(tc.port, timeout=5)
    body = b"expected body"
    c.send(build_request("POST", "/echo", headers=[("Expect", "100-continue"),
                                                  ("Content-Length", str(len(body)))]))
    r = c.read_response(interim=True)
    assert r.status == 100, "want an interim 100 before sending the body, got %r" % r
    c.send(body)
    r = c.read_response()
    assert r.status == 200 and r.body == body, r
    got = o.last()
    assert not got.has("Expect"), "Expect forwarded: %r" % got.headers
    assert got.body == body
    # The connection is still usable.
    r = c.request("GET", "/ok")
    assert r.status == 200


def test_origin_status_passthrough():
    o, tc = start()
    for code in (201, 204, 301, 404, 500, 503):
        r = get(tc.port, "/status?code=%d" % code)
        assert r.status == code, (code, r)
        assert r.header("X-Origin") == "o", r.headers
    r = get(tc.port, "/echo", headers=[("X-Custom", "v1"), ("X-Custom", "v2")])
    hdrs = json.loads(r.header("X-Echo-Headers"))
    vals = [v for k, v in hdrs if k.lower() == "x-custom"]
    assert ", ".join(vals) == "v1, v2", "repeated header mangled: %r" % vals
