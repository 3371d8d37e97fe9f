"""tools/tailcachectl against a real tailcache: stats, top, hist, check
(budgets met, breached, admin unreachable), snapshot then diff with its
--fail-if-slower gate, and each invalidation command (200 and 400).

The tool runs as a subprocess with --admin 127.0.0.1:PORT, exactly as an
operator or a CI job would run it; every run is bounded by a timeout.
Budgets are judged at each analytics tick, so the configs here use
analytics: {window: 2s, slot: 1s} (a tick a second) and wait for /stats to
show the judgement before running check."""

import json
import os
import subprocess
import sys

from harness import Origin, Reply, Tailcache, free_port, get, simple_config, slow_factor, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.environ.get("TAILCACHECTL") or os.path.join(HERE, "..", "..", "tools", "tailcachectl")
COMMANDS = ["stats", "top", "hist", "check", "snapshot", "diff", "purge", "ban-prefix",
            "ban-regex", "purge-tag", "purge-route"]
FAST_TICKS = {"window": "2s", "slot": "1s"}


class Run:
    def __init__(self, argv, p):
        self.argv, self.rc, self.out, self.err = argv, p.returncode, p.stdout, p.stderr

    def __repr__(self):
        return "tailcachectl %s -> exit %s\n--- stdout\n%s--- stderr\n%s" % (
            " ".join(self.argv), self.rc, self.out, self.err)


def ctl(tc_or_port, *argv, timeout=20.0):
    """Runs the tool (its own #! line) against the admin listener."""
    port = tc_or_port if isinstance(tc_or_port, int) else tc_or_port.admin_port
    full = ["--admin", "127.0.0.1:%d" % port] + list(argv)
    env = dict(os.environ)
    env.pop("TAILCACHE_ADMIN", None)
    p = subprocess.run([TOOL] + full, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout * slow_factor(), env=env)
    return Run(full, p)


def route(tc, name):
    for r in tc.stats()["analytics"]["routes"]:
        if r["name"] == name:
            return r
    raise AssertionError("no route %r in /stats" % name)


def cacheable(o, path, delay=0.0, headers=()):
    o.handle(path, Reply(200, [("Cache-Control", "max-age=60")] + list(headers),
                         body=("%s\n" % path).encode(), delay=delay))


def two_routes(o, api_extra=None, default_extra=None, **top):
    """Routes "api" (/api/) and "default", both caching."""
    api = {"name": "api", "prefix": "/api/", "upstream": "o", "cache": {"enabled": True}}
    api.update(api_extra or {})
    dflt = {"cache": {"enabled": True}}
    dflt.update(default_extra or {})
    cfg = simple_config(o, route=dflt, **top)
    cfg["routes"].insert(0, api)
    return Tailcache(cfg).start()


def row(out, name):
    """The table row of route name: its cells (split on whitespace)."""
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] == name:
            return cells
    raise AssertionError("no row for %r in:\n%s" % (name, out))


# --------------------------------------------------------------------------

def test_help_lists_every_command():
    p = subprocess.run([TOOL, "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p
    for c in COMMANDS:
        assert "\n    %s " % c in p.stdout, "--help does not list %s:\n%s" % (c, p.stdout)
    for opt in ("--admin", "--timeout", "--json"):
        assert opt in p.stdout, (opt, p.stdout)
    # A command's own --help, and no command at all (usage, exit 2).
    p = subprocess.run([TOOL, "diff", "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "--fail-if-slower" in p.stdout, p
    p = subprocess.run([TOOL], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "usage" in p.stderr, p


def test_stats_hist_and_top():
    o = Origin("o")
    tc = two_routes(o, analytics=FAST_TICKS)
    # api: 5 misses (20 ms at the origin), then 15 hits; default: 3 misses.
    for i in range(5):
        cacheable(o, "/api/%d" % i, delay=0.02)
    for i in range(20):
        assert get(tc.port, "/api/%d" % (i % 5)).status == 200
    for i in range(3):
        cacheable(o, "/d/%d" % i)
        assert get(tc.port, "/d/%d" % i).status == 200

    r = ctl(tc, "stats")
    assert r.rc == 0, r
    api, dflt, total = row(r.out, "api"), row(r.out, "default"), row(r.out, "total")
    assert api[1] == "20" and dflt[1] == "3" and total[1] == "23", r
    assert api[2] == "75.0", ("api hit%", r)       # 15 of 20
    assert api[6] == "5" and api[7:9] == ["cold", "5"], ("misses, top cause", r)
    assert api[-1] == "none" and dflt[-1] == "none", ("no budget", r)
    j = ctl(tc, "stats", "--json")
    assert j.rc == 0, j
    doc = json.loads(j.out)
    byname = {x["name"]: x for x in doc["routes"]}
    assert byname["api"]["requests"] == 20 and byname["api"]["misses"] == 5, doc
    assert byname["api"]["since_start"]["p99"] >= 20, doc

    # Hits and misses in the histogram: both marks, and the misses at 20 ms+.
    h = ctl(tc, "hist", "api")
    assert h.rc == 0, h
    bars = [line.split(" ms  ", 1)[1] for line in h.out.splitlines() if " ms  " in line]
    assert any(b.startswith("|") for b in bars), ("hit marks", h)
    assert any(b.lstrip("|").startswith("#") for b in bars), ("miss marks", h)
    assert "15 hits" in h.out and "5 misses" in h.out, h
    assert ctl(tc, "hist", "nosuch").rc == 2

    t = ctl(tc, "top", "--iterations", "2", "-n", "0.2")
    assert t.rc == 0, t
    assert t.out.count("ROUTE") == 2, t              # two frames
    assert "api" in t.out and "default" in t.out, t


def test_check_budgets():
    """check: 0 while every budget is met, 1 once the "slow" route (p95
    budget 10 ms, origin 100 ms) breaches, 2 when nothing listens."""
    o = Origin("o")
    tc = two_routes(o, api_extra={"analytics": {"budget": {"p95": "10ms"}}},
                    default_extra={"analytics": {"budget": {"p95": "10s"}}},
                    analytics=FAST_TICKS)
    for i in range(5):
        cacheable(o, "/slow/%d" % i, delay=0.1)
        get(tc.port, "/slow/%d" % i)
    wait_for(lambda: route(tc, "default")["budget"]["status"] == "ok", timeout=5,
             msg="generous budget judged ok")
    wait_for(lambda: route(tc, "api")["budget"]["status"] == "ok", timeout=5,
             msg="strict budget judged ok with no traffic")
    r = ctl(tc, "check")
    assert r.rc == 0, r
    assert "every budget met" in r.out, r

    for i in range(5):
        cacheable(o, "/api/slow/%d" % i, delay=0.1)
        get(tc.port, "/api/slow/%d" % i)
    wait_for(lambda: route(tc, "api")["budget"]["status"] == "breach", timeout=5,
             msg="breach in /stats")
    r = ctl(tc, "check")
    assert r.rc == 1, r
    assert "BREACH api" in r.out and "p95" in r.out and "10.0 ms" in r.out, r
    assert "BREACH default" not in r.out, r
    j = ctl(tc, "check", "--json", "-q")
    assert j.rc == 1, j
    doc = json.loads(j.out)
    assert doc["ok"] is False, doc
    assert {x["route"]: x["status"] for x in doc["routes"]} == \
        {"api": "breach", "default": "ok"}, doc

    closed = free_port()
    r = ctl(closed, "check")
    assert r.rc == 2, r
    want = "tailcachectl: cannot reach the admin listener at 127.0.0.1:%d: connection refused" \
        % closed
    assert r.err.strip() == want, r
    for argv in (["stats"], ["top", "--iterations", "1", "-n", "0.1"], ["snapshot"]):
        r = ctl(closed, *argv)
        assert r.rc == 2 and r.err.strip() == want and r.out == "", r


def test_check_with_analytics_off():
    """Nothing is judged when analytics are off: check says so (exit 2)
    rather than pass a gate it cannot judge."""
    o = Origin("o")
    tc = Tailcache(simple_config(o, route={"analytics": {"budget": {"p95": "10ms"}}},
                                 analytics={"enabled": False})).start()
    r = ctl(tc, "check")
    assert r.rc == 2 and "analytics are off" in r.err, r
    r = ctl(tc, "stats")
    assert r.rc == 0 and "analytics are off" in r.out, r


def test_snapshot_then_diff_and_the_slower_gate():
    """A snapshot with an origin answering in 10 ms; the origin then takes
    100 ms: diff shows the deltas, and --fail-if-slower 50 trips on p95/p99."""
    o = Origin("o")
    tc = Tailcache(simple_config(o, analytics=FAST_TICKS)).start()   # not caching
    delay = {"s": 0.01}
    o.handle("/x", lambda req: Reply(200, body=b"x\n", delay=delay["s"]))

    def recent_p95():
        get(tc.port, "/x")
        s = route(tc, "default")["latency"]["recent"].get("total")
        return s["p95"] if s else None

    wait_for(lambda: (recent_p95() or 0) >= 10, timeout=10, msg="a fast recent window")
    snap = ctl(tc, "snapshot")
    assert snap.rc == 0, snap
    base = json.loads(snap.out)
    fast = base["routes"]["default"]["recent"]["p95"]
    assert 10 <= fast < 60, base
    path = os.path.join(tc.dir, "base.json")
    with open(path, "w") as f:
        f.write(snap.out)

    r = ctl(tc, "diff", path, "--fail-if-slower", "50")
    assert r.rc == 0, ("no change yet", r)

    delay["s"] = 0.1

    def recent_p50():
        get(tc.port, "/x")
        s = route(tc, "default")["latency"]["recent"].get("total")
        return s["p50"] if s else None

    # Most of the 2 s window slow (each poll sends one request).
    wait_for(lambda: (recent_p50() or 0) >= 100, timeout=15, msg="a slow recent window")
    r = ctl(tc, "diff", path)
    assert r.rc == 0, r
    cells = row_metric(r.out, "default", "recent", "p95(ms)")
    assert float(cells[-3]) >= 100 and cells[-2].startswith("+") and \
        cells[-1].endswith("%") and float(cells[-1].strip("+%")) > 50, r
    assert row_metric(r.out, "default", "since_start", "p99(ms)"), r
    g = ctl(tc, "diff", path, "--fail-if-slower", "50")
    assert g.rc == 1, g
    assert "SLOWER default recent p95" in g.out, g
    g = ctl(tc, "diff", path, "--fail-if-slower", "100000", "--json")
    assert g.rc == 0, g
    assert json.loads(g.out)["slower"] == [], g
    bad = os.path.join(tc.dir, "bad.json")
    with open(bad, "w") as f:
        f.write("{not json")
    assert ctl(tc, "diff", bad).rc == 2


def row_metric(out, name, scope, metric):
    """The cells of diff's row ROUTE SCOPE METRIC BASE NOW DELTA DELTA%."""
    for line in out.splitlines():
        c = line.split()
        if c[:3] == [name, scope, metric]:
            return c
    raise AssertionError("no %s %s %s row in:\n%s" % (name, scope, metric, out))


def test_invalidation_commands():
    o = Origin("o")
    tc = two_routes(o)
    paths = ["/p/a", "/p/b", "/q/c.json", "/t/1", "/api/x"]
    for p in paths:
        cacheable(o, p, headers=[("Surrogate-Key", "grp-%s" % p[1])])
        assert get(tc.port, p).status == 200
    assert all(get(tc.port, p).status == 200 for p in paths) and o.request_count == 5

    def ok(*argv, removed):
        r = ctl(tc, *argv)
        assert r.rc == 0 and "%d memory entries removed" % removed in r.out, r
        return r

    ok("purge", "http://test/p/a", removed=1)
    get(tc.port, "/p/a")
    assert o.count("/p/a") == 2, "the purged URL is fetched again"
    ok("ban-prefix", "/p/", "--host", "test", removed=2)
    ok("ban-regex", r"\.json$", removed=1)
    j = ctl(tc, "purge-tag", "grp-t", "--json")
    assert j.rc == 0 and json.loads(j.out) == {"kind": "tag", "removed": 1}, j
    ok("purge-route", "api", removed=1)
    get(tc.port, "/api/x")
    assert o.count("/api/x") == 2

    bad = [(("purge", "/no-scheme"), "url must be"),
           (("ban-prefix", "no-slash"), "prefix must start with /"),
           (("ban-regex", "("), "regex"),
           (("purge-tag", ""), "missing argument"),
           (("purge-route", "no-such-route"), "no-such-route")]
    for argv, text in bad:
        r = ctl(tc, *argv)
        assert r.rc == 1, r
        assert r.err.startswith("tailcachectl: %s" % argv[0]) and "(400)" in r.err, r
        assert text in r.err, (text, r)
    assert ctl(free_port(), "purge-tag", "x").rc == 2
