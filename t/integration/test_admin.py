"""Admin listener: /healthz and /stats counters."""

from harness import Origin, RawClient, Tailcache, addr, free_port, get, wait_for

KEYS = ("requests", "responses_2xx", "responses_4xx", "responses_5xx", "upstream_connects",
        "upstream_reuses", "bad_requests")


def start():
    o = Origin("o")
    dead = free_port()
    cfg = {"upstreams": {"o": {"servers": [o.addr]},
                         "dead": {"servers": [addr(dead)], "max_fails": 1000}},
           "routes": [{"name": "dead", "prefix": "/dead", "upstream": "dead"},
                      {"name": "o", "prefix": "/o/", "upstream": "o"}]}
    return o, Tailcache(cfg).start()


def test_healthz():
    o, tc = start()
    r = tc.admin_get("/healthz")
    assert r.status == 200, r
    assert r.body == b"ok\n", r.body


def delta(tc, before, want, what):
    """Polls /stats until every counter in want reached before+want, then
    checks no counter went past it."""
    def reached():
        s = tc.stats()
        return s if all(s[k] - before[k] >= v for k, v in want.items()) else None
    try:
        after = wait_for(reached, 5, msg="stats after %s" % what)
    except AssertionError:
        after = tc.stats()
    got = {k: after[k] - before[k] for k in KEYS}
    exp = {k: want.get(k, 0) for k in KEYS if k not in ("upstream_connects", "upstream_reuses")}
    bad = {k: (got[k], exp[k]) for k in exp if got[k] != exp[k]}
    assert not bad, "%s: counters (got, want): %r; all deltas %r" % (what, bad, got)
    return after


def test_stats_counters():
    o, tc = start()
    s = tc.stats()
    for k in KEYS:
        assert k in s, "/stats lacks %r: %r" % (k, sorted(s))
        assert isinstance(s[k], int) and not isinstance(s[k], bool), (k, s[k])

    r = get(tc.port, "/o/ok")
    assert r.status == 200
    s = delta(tc, s, {"requests": 1, "responses_2xx": 1}, "one 200")

    r = get(tc.port, "/no-route")
    assert r.status == 404
    s = delta(tc, s, {"requests": 1, "responses_4xx": 1}, "one 404")

    r = get(tc.port, "/dead")
    assert r.status == 502
    s = delta(tc, s, {"requests": 1, "responses_5xx": 1}, "one 502")

    c = RawClient(tc.port)
    c.send(b"GET /o/ok HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    r = c.read_response()
    assert r.status == 400
    after = tc.stats()
    wait_for(lambda: tc.stats()["bad_requests"] - s["bad_requests"] >= 1, 5,
             msg="bad_requests to count a malformed request")
    after = tc.stats()
    assert after["bad_requests"] - s["bad_requests"] == 1, (s, after)
    assert after["responses_2xx"] == s["responses_2xx"], (s, after)
    assert after["responses_4xx"] - s["responses_4xx"] <= 1, (s, after)

    # Five requests on one keep-alive connection: at most a connect or two.
    s = tc.stats()
    c = RawClient(tc.port)
    for i in range(5):
        assert c.request("GET", "/o/ok").status == 200
    s2 = delta(tc, s, {"requests": 5, "responses_2xx": 5}, "five 200s")
    connects = s2["upstream_connects"] - s["upstream_connects"]
    reuses = s2["upstream_reuses"] - s["upstream_reuses"]
    assert connects + reuses == 5 and reuses >= 3, \
        "upstream_connects +%d, upstream_reuses +%d for 5 keep-alive requests" % (connects, reuses)
