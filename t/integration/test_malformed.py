"""Malformed and oversized requests: the right status with Connection: close,
the connection closed, and nothing forwarded to the origin."""

from harness import (Origin, ProtocolError, RawClient, Tailcache, build_request, simple_config,
                     wait_for)


def hdr(*lines, method="GET", target="/ok", version="HTTP/1.1", body=b""):
    return ("%s %s %s\r\n" % (method, target, version)).encode("latin-1") + \
        b"".join(l.encode("latin-1") + b"\r\n" for l in lines) + b"\r\n" + body


H = "Host: test"

# (name, bytes, expected status)
CASES = [
    ("CL and TE", hdr(H, "Content-Length: 5", "Transfer-Encoding: chunked", method="POST",
                      target="/echo", body=b"0\r\n\r\n"), 400),
    ("TE and CL", hdr(H, "Transfer-Encoding: chunked", "Content-Length: 5", method="POST",
                      target="/echo", body=b"0\r\n\r\n"), 400),
    ("duplicate CL", hdr(H, "Content-Length: 5", "Content-Length: 5", method="POST",
                         target="/echo", body=b"hello"), 400),
    ("CL list 5, 5", hdr(H, "Content-Length: 5, 5", method="POST", target="/echo",
                         body=b"hello"), 400),
    ("CL letters", hdr(H, "Content-Length: abc", method="POST", target="/echo"), 400),
    ("CL negative", hdr(H, "Content-Length: -5", method="POST", target="/echo"), 400),
    ("CL plus sign", hdr(H, "Content-Length: +5", method="POST", target="/echo", body=b"hello"),
     400),
    ("CL hex", hdr(H, "Content-Length: 0x5", method="POST", target="/echo", body=b"hello"), 400),
    ("CL empty", hdr(H, "Content-Length: ", method="POST", target="/echo"), 400),
    ("CL overflow", hdr(H, "Content-Length: 99999999999999999999999", method="POST",
                        target="/echo"), 400),
    ("TE chunked, gzip", hdr(H, "Transfer-Encoding: chunked, gzip", method="POST",
                             target="/echo", body=b"0\r\n\r\n"), 400),
    ("TE gzip", hdr(H, "Transfer-Encoding: gzip", method="POST", target="/echo",
                    body=b"0\r\n\r\n"), 400),
    ("TE gzip, chunked", hdr(H, "Transfer-Encoding: gzip, chunked", method="POST",
                             target="/echo", body=b"0\r\n\r\n"), 501),
    ("obs-fold", hdr(H, "X-A: a", " b"), 400),
    ("obs-fold tab", hdr(H, "X-A: a", "\tb"), 400),
    ("space before colon", hdr(H, "X-A : b"), 400),
    ("space before colon in Host", hdr("Host : test"), 400),
    ("tab before colon", hdr(H, "X-A\t: b"), 400),
    ("NUL in value", hdr(H, "X-A: a\x00b"), 400),
    ("CTL 0x01 in value", hdr(H, "X-A: a\x01b"), 400),
    ("DEL in value", hdr(H, "X-A: a\x7fb"), 400),
    ("bare CR in value", hdr(H, "X-A: a\rb"), 400),
    ("bare CR line end", b"GET /ok HTTP/1.1\r\nHost: test\rX-A: b\r\n\r\n", 400),
    ("bare LF line endings", b"GET /ok HTTP/1.1\nHost: test\n\n", 400),
    ("bare LF in one header line", b"GET /ok HTTP/1.1\r\nHost: test\nX-A: b\r\n\r\n", 400),
    ("missing Host in HTTP/1.1", hdr(), 400),
    ("two Host headers", hdr("Host: a.test", "Host: b.test"), 400),
    ("two identical Host headers", hdr(H, H), 400),
    ("header name with (", hdr(H, "X(A): b"), 400),
    ("header name with [", hdr(H, "X[A]: b"), 400),
    ("header name with CTL", hdr(H, "X\x01A: b"), 400),
    ("empty header name", hdr(H, ": b"), 400),
    ("request line extra field", b"GET /ok HTTP/1.1 x\r\nHost: test\r\n\r\n", 400),
    ("request line double space", b"GET  /ok HTTP/1.1\r\nHost: test\r\n\r\n", 400),
    ("CTL in target", b"GET /o\x01k HTTP/1.1\r\nHost: test\r\n\r\n", 400),
    ("HTTP/2.0", hdr(H, version="HTTP/2.0"), 505),
    ("HTTP/1.2", hdr(H, version="HTTP/1.2"), 505),
    ("CONNECT", hdr("Host: test:443", method="CONNECT", target="test:443"), 405),
]


def check_rejected(tc, o, raw, want, name):
    """Sends raw; returns a list of problems (empty when all is right)."""
    problems = []
    before = o.snapshot()
    c = RawClient(tc.port, timeout=5)
    try:
        c.send(raw)
        r = c.read_response()
    except (ProtocolError, ConnectionError, TimeoutError, OSError) as e:
        c.close()
        return ["%s: no valid response (%s)" % (name, e)]
    if r.status != want:
        problems.append("%s: status %d, want %d" % (name, r.status, want))
    conn = [t.strip().lower() for t in (r.header("Connection") or "").split(",")]
    if "close" not in conn:
        problems.append("%s: no Connection: close (Connection: %r)" % (name, r.header("Connection")))
    if not c.wait_closed(5):
        problems.append("%s: connection left open after %d" % (name, r.status))
    c.close()
    after = o.snapshot()
    if after["bytes"] != before["bytes"] or after["connections"] != before["connections"]:
        problems.append("%s: forwarded to the origin (%d bytes, %d connections)" % (
            name, after["bytes"] - before["bytes"], after["connections"] - before["connections"]))
    return problems


def test_malformed_requests():
    o = Origin("o")
    tc = Tailcache(simple_config(o)).start()
    problems = []
    for name, raw, want in CASES:
        problems += check_rejected(tc, o, raw, want, name)
    # Sanity: a good request is forwarded by the same proxy.
    c = RawClient(tc.port)
    r = c.request("GET", "/ok")
    assert r.status == 200, r
    wrong = sorted({p.split(":")[0] for p in problems})
    assert not problems, "%d of %d cases wrong (%s):\n  %s" % (
        len(wrong), len(CASES), ", ".join(wrong), "\n  ".join(problems))


CHUNK_CASES = [
    ("non-hex size", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("negative size", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("overflowing size", b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"),
    ("overflowing size ffff", b"f" * 18 + b"\r\nhello\r\n0\r\n\r\n"),
    ("empty size", b"\r\nhello\r\n0\r\n\r\n"),
    ("data not followed by CRLF", b"5\r\nhelloXX\r\n0\r\n\r\n"),
    ("bare LF after size", b"5\nhello\r\n0\r\n\r\n"),
    ("size line over chunk_line", b"5;" + b"a" * 70000 + b"\r\nhello\r\n0\r\n\r\n"),
]


def test_invalid_chunked_bodies():
    """The head may already be forwarded; the client gets 400 or a closed
    connection, and the origin never receives a complete request."""
    o = Origin("o")
    tc = Tailcache(simple_config(o)).start()
    problems = []
    for name, body in CHUNK_CASES:
        before = o.request_count
        c = RawClient(tc.port, timeout=5)
        c.send(hdr(H, "Transfer-Encoding: chunked", method="POST", target="/echo") + body)
        try:
            r = c.read_response()
            if r.status != 400:
                problems.append("%s: status %d, want 400 or a closed connection" % (name, r.status))
        except ConnectionError:
            pass  # closed without a response: allowed
        except (ProtocolError, TimeoutError, OSError) as e:
            problems.append("%s: %s" % (name, e))
        if not c.wait_closed(5):
            problems.append("%s: connection left open" % name)
        c.close()
        # Whatever reached the origin must end without completing a request.
        try:
            wait_for(lambda: o.open_connections == 0 or o.request_count > before, 3,
                     msg="origin connections to close")
        except AssertionError:
            pass  # an idle upstream connection may stay pooled; the count decides
        if o.request_count != before:
            problems.append("%s: origin received a complete request: %r body %r" % (
                name, o.last(), o.last().body[:50]))
    r = RawClient(tc.port).request("GET", "/ok")
    assert r.status == 200, r
    assert not problems, "\n  ".join(["%d problems:" % len(problems)] + problems)


# ---- limits: at the boundary accepted, one byte/field over rejected

LIMITS = {"request_line": "1k", "header_bytes": "4k", "header_count": 20}


def start_limited():
    o = Origin("o")
    tc = Tailcache(simple_config(o, limits=LIMITS)).start()
    return o, tc


def line_of(n):
    """A request line of exactly n bytes (without CRLF)."""
    fixed = len("GET /ok?p= HTTP/1.1")
    return "GET /ok?p=%s HTTP/1.1" % ("a" * (n - fixed))


def test_limit_request_line():
    o, tc = start_limited()
    at = (line_of(1024) + "\r\nHost: test\r\n\r\n").encode()
    c = RawClient(tc.port)
    c.send(at)
    r = c.read_response()
    assert r.status == 200, "request line of exactly 1024 bytes (limit 1k): %r" % r
    assert len(o.last().target) == 1024 - len("GET  HTTP/1.1")
    over = (line_of(1025) + "\r\nHost: test\r\n\r\n").encode()
    problems = check_rejected(tc, o, over, 414, "request line 1025 bytes")
    problems += check_rejected(tc, o, (line_of(3000) + "\r\nHost: test\r\n\r\n").encode(), 414,
                               "request line 3000 bytes")
    assert not problems, problems


def head_of(total):
    """A request head of exactly total bytes, final CRLF CRLF included."""
    start = "GET /ok HTTP/1.1\r\nHost: test\r\nX-Pad: "
    end = "\r\n\r\n"
    pad = total - len(start) - len(end)
    assert pad > 0
    return (start + "p" * pad + end).encode()


def test_limit_header_bytes():
    o, tc = start_limited()
    c = RawClient(tc.port)
    c.send(head_of(4096))
    r = c.read_response()
    assert r.status == 200, "head of exactly 4096 bytes (limit 4k): %r" % r
    problems = check_rejected(tc, o, head_of(4097), 431, "head of 4097 bytes")
    problems += check_rejected(tc, o, head_of(20000), 431, "head of 20000 bytes")
    assert not problems, problems


def fields(n):
    lines = ["GET /ok HTTP/1.1", "Host: test"] + ["X-F%d: %d" % (i, i) for i in range(n - 1)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_limit_header_count():
    o, tc = start_limited()
    c = RawClient(tc.port)
    c.send(fields(20))
    r = c.read_response()
    assert r.status == 200, "20 header fields (limit 20): %r" % r
    assert o.last().header("X-F18") == "18"
    problems = check_rejected(tc, o, fields(21), 431, "21 header fields")
    problems += check_rejected(tc, o, fields(200), 431, "200 header fields")
    assert not problems, problems


def test_pipelined_request_after_malformed_is_not_forwarded():
    """A valid request, a malformed one, then a smuggled one, in one send:
    the first is answered, the second gets 400 and the connection closes;
    the third never reaches the origin."""
    o = Origin("o")
    tc = Tailcache(simple_config(o)).start()
    c = RawClient(tc.port, timeout=5)
    c.send(build_request("GET", "/ok?first")
           + hdr(H, "Content-Length: 5", "Transfer-Encoding: chunked", method="POST",
                 target="/echo", body=b"0\r\n\r\n")
           + build_request("GET", "/ok?smuggled"))
    r1 = c.read_response()
    assert r1.status == 200 and r1.header("X-Origin-Target") == "/ok?first", r1
    r2 = c.read_response()
    assert r2.status == 400, r2
    assert c.wait_closed(5), "connection left open after 400"
    assert not c.buf, "more bytes after the 400: %r" % bytes(c.buf[:200])
    assert [q.target for q in o.requests] == ["/ok?first"], o.requests
    assert o.snapshot()["heads"] == 1, o.snapshot()
