"""Routes (host, path, method; first match wins; none -> 404), host_rewrite,
and header rewriting in both directions."""

import json

from harness import Origin, RawClient, Tailcache, get, request


def test_routes_host_path_method():
    a = Origin("A")
    b = Origin("B")
    cfg = {
        "upstreams": {"a": {"servers": [a.addr]}, "b": {"servers": [b.addr]}},
        "routes": [
            {"name": "exact", "exact": "/exact", "upstream": "b"},
            {"name": "api", "host": "api.example.com", "upstream": "b"},
            {"name": "wild", "host": "*.wild.test", "upstream": "b"},
            {"name": "multi", "host": ["one.test", "two.test"], "prefix": "/m/", "upstream": "b"},
            {"name": "regex", "regex": "^/items/[0-9]+$", "upstream": "b"},
            {"name": "form", "prefix": "/form", "methods": ["POST", "PUT"], "upstream": "b"},
            {"name": "first", "prefix": "/a/shadow", "upstream": "b"},
            {"name": "default", "prefix": "/a/", "upstream": "a"},
            {"name": "never", "prefix": "/a/shadow/x", "upstream": "a"},
        ],
    }
    tc = Tailcache(cfg).start()
    # (method, host, target, expected origin name or 404)
    cases = [
        ("GET", "x.test", "/exact", "B"),
        ("GET", "x.test", "/exact?q=1", "B"),
        ("GET", "x.test", "/exact/more", 404),
        ("GET", "x.test", "/exactly", 404),
        ("GET", "api.example.com", "/anything", "B"),
        ("GET", "api.example.com", "/a/thing", "B"),
        ("GET", "API.Example.COM:8080", "/anything", "B"),
        ("GET", "other.example.com", "/anything", 404),
        ("GET", "foo.wild.test", "/anything", "B"),
        ("GET", "wild.test.evil", "/anything", 404),
        ("GET", "two.test", "/m/x", "B"),
        ("GET", "one.test", "/m/", "B"),
        ("GET", "two.test", "/mx", 404),
        ("GET", "three.test", "/m/x", 404),
        ("GET", "x.test", "/items/42", "B"),
        ("GET", "x.test", "/items/42x", 404),
        ("GET", "x.test", "/items/", 404),
        ("POST", "x.test", "/form", "B"),
        ("PUT", "x.test", "/form/x", "B"),
        ("GET", "x.test", "/form", 404),
        ("GET", "x.test", "/a/thing", "A"),
        ("DELETE", "x.test", "/a/thing", "A"),
        ("GET", "x.test", "/a/shadow/x", "B"),
        ("GET", "x.test", "/zzz", 404),
        ("GET", "x.test", "/", 404),
    ]
    problems = []
    for method, host, target, want in cases:
        na, nb = a.request_count, b.request_count
        body = b"" if method in ("POST", "PUT") else None
        r = request(tc.port, method, target, host=host, body=body)
        got = r.header("X-Origin") if r.status != 404 or r.has("X-Origin") else 404
        if got != want:
            problems.append("%s %s Host: %s -> %r (status %d), want %r" % (
                method, target, host, got, r.status, want))
        if want == 404:
            if (a.request_count, b.request_count) != (na, nb):
                problems.append("%s %s Host: %s: no route, yet forwarded" % (method, target, host))
        elif r.status != 200:
            problems.append("%s %s Host: %s: status %d" % (method, target, host, r.status))
    assert not problems, "\n  ".join(["%d of %d routing cases wrong:" % (len(problems), len(cases))]
                                    + problems)


def test_host_rewrite():
    o = Origin("o")
    cfg = {
        "upstreams": {"o": {"servers": [o.addr]}},
        "routes": [
            {"name": "rw", "prefix": "/rw/", "upstream": "o", "host_rewrite": "backend.internal"},
            {"name": "keep", "prefix": "/", "upstream": "o"},
        ],
    }
    tc = Tailcache(cfg).start()
    r = get(tc.port, "/rw/x", host="front.test")
    assert r.status == 200, r
    assert o.last().get_all("Host") == ["backend.internal"], o.last().headers
    r = get(tc.port, "/other", host="front.test:8080")
    assert r.status == 200, r
    assert o.last().get_all("Host") == ["front.test:8080"], o.last().headers


def tokens(value):
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def test_request_header_rewriting():
    o = Origin("o")
    tc = Tailcache({"upstreams": {"o": {"servers": [o.addr]}},
                    "routes": [{"name": "r", "upstream": "o"}]}).start()
    c = RawClient(tc.port)
    r = c.request("GET", "/echo", host="front.test", headers=[
        ("X-Forwarded-For", "10.1.1.1"),
        ("X-Forwarded-Proto", "https"),
        ("Via", "1.0 fred"),
        ("Connection", "keep-alive, X-Drop-Me"),
        ("X-Drop-Me", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-T"),
        ("Upgrade", "websocket"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("Proxy-Connection", "keep-alive"),
        ("X-Keep", "yes"),
    ])
    assert r.status == 200, r
    q = o.last()
    problems = []
    xff = q.header("X-Forwarded-For")
    if xff is None or [x.strip() for x in xff.split(",")] != ["10.1.1.1", "127.0.0.1"]:
        problems.append("X-Forwarded-For %r, want '10.1.1.1, 127.0.0.1'" % xff)
    if q.get_all("X-Forwarded-Proto") != ["http"]:
        problems.append("X-Forwarded-Proto %r, want exactly ['http']" % q.get_all("X-Forwarded-Proto"))
    via = [v.strip() for v in (q.header("Via") or "").split(",")]
    if via != ["1.0 fred", "1.1 tailcache"]:
        problems.append("Via %r, want '1.0 fred, 1.1 tailcache'" % q.header("Via"))
    for h in ("X-Drop-Me", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization",
              "Proxy-Connection"):
        if q.has(h):
            problems.append("hop-by-hop %s forwarded: %r" % (h, q.get_all(h)))
    if set(tokens(q.header("Connection"))) - {"keep-alive", "close"}:
        problems.append("Connection forwarded as %r" % q.header("Connection"))
    if q.get_all("X-Keep") != ["yes"]:
        problems.append("end-to-end X-Keep lost: %r" % q.get_all("X-Keep"))
    if q.get_all("Host") != ["front.test"]:
        problems.append("Host %r, want front.test" % q.get_all("Host"))
    # Without an incoming X-Forwarded-For / Via.
    r = c.request("GET", "/echo")
    q = o.last()
    if q.get_all("X-Forwarded-For") != ["127.0.0.1"]:
        problems.append("fresh X-Forwarded-For %r" % q.get_all("X-Forwarded-For"))
    if q.get_all("Via") != ["1.1 tailcache"]:
        problems.append("fresh Via %r" % q.get_all("Via"))
    if q.get_all("X-Forwarded-Proto") != ["http"]:
        problems.append("fresh X-Forwarded-Proto %r" % q.get_all("X-Forwarded-Proto"))
    assert not problems, "\n  ".join(["request headers:"] + problems + [
        "origin saw: %s" % json.dumps(q.headers)])


def test_response_header_rewriting():
    o = Origin("o")
    tc = Tailcache({"upstreams": {"o": {"servers": [o.addr]}},
                    "routes": [{"name": "r", "upstream": "o"}]}).start()
    c = RawClient(tc.port)
    r = c.request("GET", "/hop")
    assert r.status == 200 and r.body == b"hop\n", r
    problems = []
    for h in ("X-Resp-Drop", "Keep-Alive", "Trailer", "Upgrade", "Proxy-Authenticate", "Proxy-Foo"):
        if r.has(h):
            problems.append("hop-by-hop %s reached the client: %r" % (h, r.get_all(h)))
    if set(tokens(r.header("Connection"))) - {"keep-alive", "close"}:
        problems.append("Connection passed through as %r" % r.header("Connection"))
    if r.get_all("X-Resp-Keep") != ["yes"]:
        problems.append("end-to-end X-Resp-Keep lost")
    via = [v.strip() for v in (r.header("Via") or "").split(",")]
    if via != ["1.1 origin", "1.1 tailcache"]:
        problems.append("response Via %r, want '1.1 origin, 1.1 tailcache'" % r.header("Via"))
    # Via is added to every proxied response.
    r2 = c.request("GET", "/ok")
    if r2.get_all("Via") != ["1.1 tailcache"]:
        problems.append("Via on /ok: %r" % r2.get_all("Via"))
    # Re-framed chunked response: no Transfer-Encoding from upstream leaks in twice.
    r3 = c.request("GET", "/chunked?bytes=100")
    if len(r3.get_all("Transfer-Encoding")) > 1:
        problems.append("Transfer-Encoding %r" % r3.get_all("Transfer-Encoding"))
    assert not problems, "\n  ".join(["response headers:"] + problems + [
        "client saw: %s" % json.dumps(r.headers)])
