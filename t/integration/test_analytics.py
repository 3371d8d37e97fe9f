"""Per-route latency analytics: outcomes and miss causes counted exactly for
scripted traffic, latency quantiles, cold and warm windows, bypass
sampling, budgets, /metrics valid for promtool, and analytics switched off.

Each cause is provoked on purpose against a real origin and the route's
counters in /stats ("analytics" -> "routes") must match exactly."""

import math
import os
import shutil
import subprocess
import time

from harness import (KiB, Origin, RedisServer, Reply, Tailcache, free_port, get, request,
                     simple_config, wait_for)
from tierlib import SMALL_MEMORY, evict_memory


def route(tc, name="default"):
    a = tc.stats()["analytics"]
    for r in a["routes"]:
        if r["name"] == name:
            return r
    raise AssertionError("no route %r in %r" % (name, [r["name"] for r in a["routes"]]))


def cc_handler(o, path, cc, headers=(), delay=0.0, body=None):
    o.handle(path, Reply(200, [("Cache-Control", cc)] + list(headers),
                         body=body or ("%s\n" % path).encode(), delay=delay))


def tc_with(o, route_extra=None, **top):
    r = {"cache": {"enabled": True}}
    r.update(route_extra or {})
    return Tailcache(simple_config(o, route=r, **top)).start()


# Fillers that push /ev out of the 1 MiB memory cache while its hash is
# still in the ghost (S3-FIFO): 4 of 300 KiB.
FILLERS = 4


def test_outcomes_and_causes_counted_exactly():
    o = Origin("o")
    tc = tc_with(o, cache={"memory": SMALL_MEMORY})
    cc_handler(o, "/cold", "max-age=60")
    cc_handler(o, "/exp", "max-age=1")
    cc_handler(o, "/priv", "private, max-age=60")
    cc_handler(o, "/inv", "max-age=60")
    cc_handler(o, "/ev", "max-age=60")

    def vary(req):
        return Reply(200, [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")],
                     body=("ae=%s\n" % req.header("Accept-Encoding")).encode())
    o.handle("/vary", vary)

    assert get(tc.port, "/cold").status == 200             # miss, cold
    assert get(tc.port, "/cold").status == 200             # hit_memory
    assert get(tc.port, "/exp").status == 200              # miss, cold
    time.sleep(2.2)
    assert get(tc.port, "/exp").status == 200              # miss, expired
    assert get(tc.port, "/priv").status == 200             # pass, not_storable
    assert get(tc.port, "/priv").status == 200             # pass (hit-for-miss), not_storable
    get(tc.port, "/vary", headers=[("Accept-Encoding", "gzip")])   # miss, cold
    get(tc.port, "/vary", headers=[("Accept-Encoding", "br")])     # miss, vary
    assert get(tc.port, "/inv").status == 200              # miss, cold
    assert request(tc.port, "PURGE", "/inv").status == 200
    wait_for(lambda: route(tc)["miss_causes"] is not None, timeout=2)
    time.sleep(0.1)  # the sweep on the main thread (the URL itself left at once)
    assert get(tc.port, "/inv").status == 200              # miss, invalidated
    assert get(tc.port, "/ev").status == 200               # miss, cold
    evict_memory(tc, o, n=FILLERS)                         # misses, cold
    r = get(tc.port, "/ev")                                # miss, evicted
    assert "fwd=" in r.header("Cache-Status"), r.header("Cache-Status")

    rt = route(tc)
    out, causes = rt["outcomes"], rt["miss_causes"]
    assert out["hit_memory"] == 1, out
    assert out["pass"] == 2, out
    # misses: cold (/cold, /exp, /vary gzip, /inv, /ev, the fillers), expired,
    # vary, invalidated, evicted
    assert out["miss"] == 5 + FILLERS + 4, out
    assert causes["cold"] == 5 + FILLERS, causes
    assert causes["expired"] == 1, causes
    assert causes["vary"] == 1, causes
    assert causes["invalidated"] == 1, causes
    assert causes["evicted"] == 1, causes
    assert causes["not_storable"] == 2, causes
    assert causes["tier_error"] == 0, causes
    assert rt["requests"] == sum(out.values()) == 12 + FILLERS, rt
    assert abs(rt["hit_ratio"] - 1 / (12 + FILLERS)) < 1e-3, rt["hit_ratio"]
    # The total is the sum of the routes (one route here).
    total = tc.stats()["analytics"]["total"]
    assert total["requests"] == rt["requests"], total


def test_tier_error_cause():
    """A Redis tier that is down makes the misses on its way "tier_error"."""
    o = Origin("o")
    dead = free_port()
    cfg = simple_config(o, route={"cache": {"enabled": True, "tiers": ["memory", "redis"]}})
    cfg["cache"] = {"redis": {"address": "127.0.0.1:%d" % dead, "timeout": "50ms",
                              "connect_timeout": "50ms"}}
    tc = Tailcache(cfg).start()
    cc_handler(o, "/t", "max-age=60")
    cc_handler(o, "/u", "max-age=60")
    assert get(tc.port, "/t").status == 200
    assert get(tc.port, "/u").status == 200
    causes = route(tc)["miss_causes"]
    assert causes["tier_error"] == 2 and causes["cold"] == 0, causes


def test_latency_quantiles_by_outcome():
    """Misses wait for an origin that takes 80 ms; hits do not. The miss
    quantiles sit at 80 ms and above, the hit quantiles far below, and the
    origin series records the origin's part."""
    o = Origin("o")
    tc = tc_with(o)
    for i in range(20):
        cc_handler(o, "/q/%d" % i, "max-age=60", delay=0.08)
    for i in range(20):
        get(tc.port, "/q/%d" % i)
    for _ in range(5):
        for i in range(20):
            get(tc.port, "/q/%d" % i)
    lat = route(tc)["latency"]["since_start"]
    miss, hit, origin = lat["miss"], lat["hit_memory"], lat["origin"]
    assert miss["count"] == 20 and hit["count"] == 100 and origin["count"] == 20, lat
    assert 80 <= miss["p50"] < 400, miss
    assert 80 <= origin["p50"] <= miss["p50"] + 1, (origin, miss)
    assert hit["p99"] < 80, hit
    assert miss["max"] >= miss["p99"] >= miss["p95"] >= miss["p50"], miss
    # Time saved: 100 hits x (miss median - hit median), in seconds.
    saved = route(tc)["time_saved_s"]
    want = 100 * (miss["p50"] - hit["p50"]) / 1000
    assert abs(saved - want) <= 0.02 * want + 0.01, (saved, want)


def test_cold_then_warm_and_cold_again_after_a_route_purge():
    o = Origin("o")
    tc = tc_with(o, route_extra={"analytics": {"warmup": "2s"}})
    cc_handler(o, "/w", "max-age=60")
    get(tc.port, "/w")
    get(tc.port, "/w")
    rt = route(tc)
    assert rt["cold"]["active"] is True and rt["cold"]["requests"] == 2, rt["cold"]
    assert rt["cold"]["hits"] == 1, rt["cold"]
    wait_for(lambda: route(tc)["cold"]["active"] is False, timeout=5, msg="warm-up over")
    get(tc.port, "/w")
    rt = route(tc)
    assert rt["warm"]["requests"] == 1 and rt["warm"]["hits"] == 1, rt["warm"]
    # A purge of the whole route starts the cold window again.
    r = tc.admin_post("/invalidate/route?route=default")
    assert r.status == 200, r
    wait_for(lambda: route(tc)["cold"]["active"] is True, timeout=3, msg="cold again")
    get(tc.port, "/w")  # a miss in the new cold window
    rt = route(tc)
    assert rt["cold"]["requests"] == 3 and rt["cold"]["hits"] == 1, rt["cold"]


def test_bypass_sampling_fraction():
    """sample_bypass: 0.2 sends about a fifth of cacheable requests to the
    origin untouched (Cache-Status fwd=bypass; detail=sample); the count is
    within 5 standard deviations of the binomial mean."""
    o = Origin("o")
    tc = tc_with(o, route_extra={"analytics": {"sample_bypass": 0.2}})
    cc_handler(o, "/b", "max-age=60")
    n = 1000
    seen = 0
    for _ in range(n):
        r = get(tc.port, "/b")
        assert r.status == 200
        if r.header("Cache-Status") == "tailcache; fwd=bypass; detail=sample":
            seen += 1
    mean, sd = n * 0.2, math.sqrt(n * 0.2 * 0.8)
    assert abs(seen - mean) <= 5 * sd, (seen, mean, sd)
    rt = route(tc)
    assert rt["outcomes"]["bypass"] == seen, (rt["outcomes"], seen)
    assert o.request_count == seen + 1, (o.request_count, seen)  # + the one miss
    lat = rt["latency"]["since_start"]
    assert lat["bypass"]["count"] == seen, lat


def test_budget_breach_and_recovery():
    """A p95 budget of 30 ms against an origin taking 100 ms: breached at the
    next tick (status in /stats and /metrics, a warning in the error log);
    with the window (1 s here) filled by fast hits only, met again."""
    o = Origin("o")
    cfg = simple_config(o, route={"cache": {"enabled": True},
                                  "analytics": {"budget": {"p95": "30ms"}}},
                        analytics={"window": "2s", "slot": "1s"})
    tc = Tailcache(cfg).start()
    for i in range(10):
        cc_handler(o, "/slow/%d" % i, "max-age=60", delay=0.1)
        get(tc.port, "/slow/%d" % i)
    wait_for(lambda: route(tc)["budget"]["status"] == "breach", timeout=5, msg="breach")
    assert "p95" in route(tc)["budget"]["detail"], route(tc)["budget"]
    metrics = tc.admin_get("/metrics").body.decode()
    assert 'tailcache_route_budget_ok{route="default"} 0' in metrics, metrics[-2000:]
    wait_for(lambda: "budget breached" in tc.error_log_text() + tc.stderr_text(), timeout=3,
             msg="warning logged")
    # Fast hits only: once the slow samples leave the window, met again.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and route(tc)["budget"]["status"] != "ok":
        for i in range(10):
            get(tc.port, "/slow/%d" % i)
        time.sleep(0.2)
    assert route(tc)["budget"]["status"] == "ok", route(tc)["budget"]
    wait_for(lambda: "budget met again" in tc.error_log_text() + tc.stderr_text(), timeout=3,
             msg="recovery logged")


def test_metrics_pass_promtool():
    tools = os.environ.get("TC_TOOLS", "/var/cache/tailcache-tools")
    promtool = shutil.which("promtool") or os.path.join(tools, "usr/bin/promtool")
    assert os.access(promtool, os.X_OK), \
        "no promtool: contrib/deps.sh test extracts it from Debian's prometheus package"

    o = Origin("o")
    tc = tc_with(o, route_extra={"analytics": {"budget": {"p99": "1s"}}})
    cc_handler(o, "/m", "max-age=60")
    for _ in range(5):
        get(tc.port, "/m")
    time.sleep(0.1)
    text = tc.admin_get("/metrics").body
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       timeout=30)
    assert p.returncode == 0, (p.stdout.decode() + p.stderr.decode())[-3000:]
    t = text.decode()
    assert 'tailcache_route_requests_total{route="default"} 5' in t
    assert 'tailcache_route_outcomes_total{route="default",outcome="hit_memory"} 4' in t
    assert 'tailcache_route_latency_seconds_count{route="default",series="total"} 5' in t
    assert 'tailcache_route_latency_seconds_bucket{route="default",series="total",le="+Inf"} 5' \
        in t


def test_analytics_off():
    o = Origin("o")
    tc = tc_with(o, analytics={"enabled": False})
    cc_handler(o, "/x", "max-age=60")
    get(tc.port, "/x")
    get(tc.port, "/x")
    a = tc.stats()["analytics"]
    assert a["enabled"] is False, a
    assert all(r["requests"] == 0 for r in a["routes"]), a


def test_grafana_dashboard_uses_exported_metrics():
    """contrib/grafana/tailcache.json: every metric its queries name is one
    tailcache exports (a route with traffic, and both shared-tier metrics,
    which are exported even when the tiers are not configured)."""
    import json
    import re
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "contrib", "grafana", "tailcache.json")
    with open(path) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10, exprs
    o = Origin("o")
    tc = tc_with(o, route_extra={"analytics": {"budget": {"p99": "1s"}}},
                 analytics={"window": "2s", "slot": "1s"})
    cc_handler(o, "/g", "max-age=60")
    for _ in range(3):
        get(tc.port, "/g")
    wait_for(lambda: "tailcache_route_budget_ok{" in tc.admin_get("/metrics").body.decode(),
             timeout=8, msg="a budget judged")
    exported = set()
    for line in tc.admin_get("/metrics").body.decode().splitlines():
        if line and not line.startswith("#"):
            exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    names = set()
    for e in exprs:
        names.update(n for n in re.findall(r"\b(tailcache_[a-z0-9_]+)", e))
    missing = sorted(n for n in names if n not in exported)
    assert not missing, "queried but not exported: %s" % missing
