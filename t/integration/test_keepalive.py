"""Upstream keep-alive: connections are pooled and reused, and a pooled
connection the origin closed is retried once on a fresh one."""

from harness import Origin, RawClient, Tailcache, build_request, simple_config, wait_for

WORKERS = 2
MARGIN = 2


def test_upstream_reuse_one_client():
    o = Origin("o")
    tc = Tailcache(simple_config(o, workers=WORKERS)).start()
    before = tc.stats()
    c = RawClient(tc.port)
    for i in range(50):
        r = c.request("GET", "/ok?i=%d" % i)
        assert r.status == 200 and r.body == b"ok\n", (i, r)
    assert o.request_count == 50, o.snapshot()
    print("origin connections for 50 requests on one client connection: %d" % o.connections)
    assert o.connections <= WORKERS + MARGIN, \
        "origin saw %d connections for 50 keep-alive requests" % o.connections
    after = tc.stats()
    reuses = after["upstream_reuses"] - before["upstream_reuses"]
    connects = after["upstream_connects"] - before["upstream_connects"]
    print("stats: upstream_connects +%d, upstream_reuses +%d" % (connects, reuses))
    assert connects <= WORKERS + MARGIN and reuses >= 50 - (WORKERS + MARGIN), (connects, reuses)


def test_upstream_reuse_many_clients():
    o = Origin("o")
    tc = Tailcache(simple_config(o, workers=WORKERS)).start()
    n = 0
    for k in range(10):
        c = RawClient(tc.port)
        for i in range(3):
            r = c.request("GET", "/ok?c=%d&i=%d" % (k, i),
                          headers=[("Connection", "close")] if i == 2 else None)
            assert r.status == 200, (k, i, r)
            n += 1
        assert c.wait_closed(5), "Connection: close not honoured"
        c.close()
    assert o.request_count == n
    print("origin connections for %d requests on 10 client connections: %d" % (n, o.connections))
    assert o.connections <= WORKERS + MARGIN, \
        "origin saw %d connections for %d requests from 10 sequential clients" % (
            o.connections, n)


def test_retry_origin_closes_after_response():
    """The origin closes every connection right after answering, without
    saying Connection: close; every client request must still succeed."""
    o = Origin("o")
    tc = Tailcache(simple_config(o, workers=WORKERS)).start()
    c = RawClient(tc.port)
    for i in range(20):
        r = c.request("GET", "/close-after?i=%d" % i)
        assert r.status == 200 and r.body == b"closing\n", "request %d: %r %r" % (i, r, r.body)
    for i in range(10):
        c2 = RawClient(tc.port)
        r = c2.request("GET", "/close-after?fresh=%d" % i)
        assert r.status == 200, "fresh client %d: %r" % (i, r)
        r = c2.request("GET", "/ok")
        assert r.status == 200, "fresh client %d, second request: %r" % (i, r)
        c2.close()
    print("origin: %s" % o.snapshot())


def test_retry_reused_connection_dropped():
    """The origin drops a reused connection when the next request arrives,
    without answering (its keep-alive timeout raced the request): an
    idempotent request without a body is retried once on a new connection;
    a request with a body is not retried."""
    o = Origin("o", drop_reused=True)
    tc = Tailcache(simple_config(o, workers=WORKERS)).start()
    c = RawClient(tc.port)
    for i in range(20):
        r = c.request("GET", "/ok?i=%d" % i)
        assert r.status == 200, "request %d: %r" % (i, r)
        r = c.request("HEAD", "/ok?head=%d" % i)
        assert r.status == 200, "HEAD %d: %r" % (i, r)
    snap = o.snapshot()
    print("origin: %s" % snap)
    assert snap["dropped"] > 0, "the proxy never reused an upstream connection"

    # A POST with a body must not be sent twice.
    r = c.request("GET", "/ok?before-post")
    assert r.status == 200
    heads_before = o.snapshot()["heads"]
    dropped_before = o.snapshot()["dropped"]
    c.send(build_request("POST", "/echo", body=b"once"))
    r = c.read_response()
    snap = o.snapshot()
    if snap["dropped"] > dropped_before:
        assert snap["heads"] == heads_before + 1, \
            "POST with a body was retried after the origin dropped it (%d heads)" % (
                snap["heads"] - heads_before)
        assert r.status == 502, "dropped POST answered %r" % r
    else:
        assert r.status == 200 and r.body == b"once", r
    wait_for(lambda: tc.alive(), 1, msg="proxy alive")
