"""SIGHUP reload (under load; an invalid config keeps the old one), SIGTERM
drain, SIGINT."""

import os
import re
import signal
import threading
import time

from harness import (LoadGen, Origin, RawClient, Tailcache, build_request, connect_refused, get,
                     read_text, slow_factor, wait_for)

TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"


def two_origin_config(route_to):
    return {"upstreams": {"a": {"servers": [A.addr]}, "b": {"servers": [B.addr]}},
            "routes": [{"name": "r", "prefix": "/", "upstream": route_to}]}


A = B = None


def setup_ab():
    global A, B
    A, B = Origin("A"), Origin("B")


def served_by(tc, name):
    r = get(tc.port, "/ok")
    return r.status == 200 and r.header("X-Origin") == name


def test_sighup_reload_under_load():
    setup_ab()
    tc = Tailcache(two_origin_config("a")).start()
    assert served_by(tc, "A")
    load = LoadGen(tc.port, "/ok", threads=8, max_requests=3000, max_seconds=15,
                   expect_body=b"ok\n").start()
    try:
        wait_for(lambda: load.done >= 200 or load.failed, 10, msg="load to get going")
        cfg = dict(tc.config)
        cfg["routes"] = [{"name": "r", "prefix": "/", "upstream": "b"}]
        tc.write_config(cfg)
        t0 = time.monotonic()
        tc.signal(signal.SIGHUP)
        wait_for(lambda: served_by(tc, "B"), 10, interval=0.05,
                 msg="the reloaded config (route to B) to take effect")
        took = time.monotonic() - t0
        mark = load.done
        wait_for(lambda: load.done >= mark + 500 or load.failed or
                 not any(t.is_alive() for t in load._threads), 10,
                 msg="load to go on after the reload")
    finally:
        load.stop()
    print("reload took effect after %.2fs; load: %s" % (took, load.summary()))
    assert load.failed == 0, "%d failed requests during the reload: %s" % (
        load.failed, load.failures)
    assert tc.alive()
    for _ in range(5):
        assert served_by(tc, "B")


def test_sighup_invalid_config_keeps_running():
    setup_ab()
    tc = Tailcache(two_origin_config("a"))
    cfg = dict(tc.config)
    cfg["log"] = dict(cfg["log"], error=os.path.join(tc.dir, "error.log"))
    tc.write_config(cfg)
    tc.start()
    assert served_by(tc, "A")
    good_text = read_text(tc.config_path)
    # Break it: the route names an upstream that does not exist.
    bad_text = good_text.replace('upstream: "a"', 'upstream: "nope"')
    assert bad_text != good_text, good_text
    bad_line = 1 + bad_text[:bad_text.index('upstream: "nope"')].count("\n")
    tc.write_config(bad_text)
    tc.signal(signal.SIGHUP)
    want = "%s:%d:" % (tc.config_path, bad_line)

    def logged():
        for line in read_text(tc.error_log).splitlines():
            if want in line:
                return line
        return None
    line = wait_for(logged, 10, msg="an error naming %s in the error log" % want)
    assert re.match(r"^%s \[(error|warn)\] " % TIME, line), "error log line: %r" % line
    assert "routes[0].upstream" in line, line
    assert tc.alive(), "tailcache exited on an invalid reload"
    for _ in range(10):
        assert served_by(tc, "A"), "the old config stopped serving after a failed reload"
    r = tc.admin_get("/healthz")
    assert r.status == 200
    # A valid config afterwards is picked up.
    tc.write_config(good_text.replace('upstream: "a"', 'upstream: "b"'))
    tc.signal(signal.SIGHUP)
    wait_for(lambda: served_by(tc, "B"), 10, interval=0.05, msg="reload after a failed one")


def test_sigterm_drains_inflight():
    o = Origin("o")
    tc = Tailcache({"upstreams": {"o": {"servers": [o.addr]}},
                    "routes": [{"name": "r", "upstream": "o"}],
                    "timeouts": {"drain": "5s"}}).start()
    idle = RawClient(tc.port)
    assert idle.request("GET", "/ok").status == 200  # an idle keep-alive client
    slow = RawClient(tc.port, timeout=15)
    slow.send(build_request("GET", "/delay?ms=1000"))
    wait_for(lambda: o.snapshot()["heads"] >= 2, 5, msg="the slow request to reach the origin")
    result = {}

    def read_slow():
        try:
            result["r"] = slow.read_response()
        except Exception as e:  # reported below
            result["e"] = e
        result["t"] = time.monotonic()
    reader = threading.Thread(target=read_slow, daemon=True)
    reader.start()
    t0 = time.monotonic()
    tc.signal(signal.SIGTERM)
    # Stops accepting: new connections are refused while the slow one finishes.
    state = wait_for(lambda: ("refused" if connect_refused(tc.port) else None)
                     or ("answered" if not reader.is_alive() else None), 5,
                     msg="listener to close after SIGTERM")
    refused_at = time.monotonic()
    reader.join(timeout=15)
    assert "e" not in result, "in-flight request failed during drain: %r" % result.get("e")
    assert "r" in result, "in-flight request got no answer"
    r = result["r"]
    assert r.status == 200 and r.body == b"delayed\n", r
    assert state == "refused" and refused_at < result["t"], \
        "new connections still accepted while draining"
    rc = tc.wait_exit(5 + 3 * slow_factor())
    exited = time.monotonic() - t0
    assert rc is not None, "still running %.1fs after SIGTERM (drain 5s)" % exited
    assert rc == 0, "exit status %d after SIGTERM" % rc
    print("in-flight request answered, exit 0 %.2fs after SIGTERM" % exited)
    assert idle.wait_closed(1), "idle keep-alive client not closed"


def test_sighup_changed_upstream_servers():
    """Reload with the same route and a changed upstream server list."""
    setup_ab()
    tc = Tailcache(two_origin_config("a")).start()
    assert served_by(tc, "A")
    cfg = dict(tc.config)
    cfg["upstreams"] = {"a": {"servers": [B.addr]}, "b": {"servers": [B.addr]}}
    tc.write_config(cfg)
    tc.signal(signal.SIGHUP)
    wait_for(lambda: served_by(tc, "B"), 10, interval=0.05,
             msg="upstream a's new server list to take effect")
    for _ in range(10):
        assert served_by(tc, "B")
    # A keep-alive client connection also moves on eventually (bounded).
    c = RawClient(tc.port)
    assert c.request("GET", "/ok").header("X-Origin") == "B"


def test_sigterm_drain_timeout_bounds_exit():
    """A request that outlives timeouts.drain does not keep the process."""
    o = Origin("o")
    tc = Tailcache({"upstreams": {"o": {"servers": [o.addr], "first_byte_timeout": "60s"}},
                    "routes": [{"name": "r", "upstream": "o"}],
                    "timeouts": {"drain": "1s"}}).start()
    c = RawClient(tc.port, timeout=30)
    c.send(build_request("GET", "/hang"))
    wait_for(lambda: o.snapshot()["heads"] >= 1, 5, msg="the request to reach the origin")
    t0 = time.monotonic()
    tc.signal(signal.SIGTERM)
    rc = tc.wait_exit(1 + 3 * slow_factor())
    dt = time.monotonic() - t0
    assert rc is not None, "still running %.1fs after SIGTERM with drain 1s" % dt
    print("exit status %d %.2fs after SIGTERM (drain 1s, one request hanging)" % (rc, dt))
    assert dt >= 0.9, "exited after %.2fs without waiting for the in-flight request" % dt
    assert c.wait_closed(5), "client connection not closed at exit"


def test_sigint_exits():
    o = Origin("o")
    tc = Tailcache({"upstreams": {"o": {"servers": [o.addr]}},
                    "routes": [{"name": "r", "upstream": "o"}]}).start()
    assert get(tc.port, "/ok").status == 200
    tc.signal(signal.SIGINT)
    rc = tc.wait_exit(5 + 3 * slow_factor())
    assert rc == 0, "exit status %r after SIGINT on an idle proxy" % rc
