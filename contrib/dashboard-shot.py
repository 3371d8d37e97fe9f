#!/usr/bin/env python3
"""Takes docs/dashboard.png: real traffic on four routes through a real
tailcache (the integration harness's Origin and Tailcache), and headless
Chromium's screenshot of its /dashboard.

    contrib/dashboard-shot.py [SECONDS [OUT.png]]      (150, docs/dashboard.png)

TC_BUILD (default build/) names the build. /stats is fetched through a
small loopback proxy that holds each answer 0.9 s: Chromium's virtual time
waits for fetches, so the page's 2 s polls spread over the real run and
its latency charts get a real history. Loopback only; the traffic stops
by itself."""
import http.server
import math
import os
import random
import sys
import threading
import time
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "t", "integration"))
os.environ.setdefault("TC_BUILD", os.path.join(TOP, "build"))
from harness import (Chromium, Origin, RawClient, Reply, Tailcache, build_request,  # noqa: E402
                     cleanup_all, free_port)


def wave(t0, period, depth=0.6):
    """Origin latency swings slowly, so the latency charts have a shape."""
    return 1 + depth * math.sin((time.monotonic() - t0) / period)


def handler(t0, cc, base_ms, jitter_ms, period, vary=False):
    def fn(req):
        h = [("Cache-Control", cc)] + ([("Vary", "Accept-Encoding")] if vary else [])
        d = (base_ms + random.random() * jitter_ms) * wave(t0, period) / 1000
        return Reply(200, h, body=b"x" * random.randint(500, 20000), delay=d)
    return fn


def route(name, budget=None):
    a = {"warmup": "25s"}
    if budget:
        a["budget"] = budget
    return {"name": name, "prefix": "/%s/" % name, "upstream": "o",
            "cache": {"enabled": True}, "analytics": a}


def zipf(n, s=1.1):
    w = [1 / (k + 1) ** s for k in range(n)]
    return lambda: random.choices(range(n), weights=w)[0]


def client(port, seed, until, stop):
    """A keep-alive client over the four routes: catalog (Zipf keys, 20 s
    freshness), api (2 s freshness, a few PURGEs), search (a third private,
    Vary), static (30 keys, long-lived)."""
    rnd = random.Random(seed)
    pick = {"catalog": zipf(300), "api": zipf(300, 0.8), "search": zipf(300), "static": zipf(30)}
    c = None
    while not stop.is_set() and time.monotonic() < until:
        r = rnd.random()
        name = "catalog" if r < 0.35 else "api" if r < 0.6 else "search" if r < 0.8 else "static"
        path = "/%s/%d" % (name, pick[name]())
        try:
            c = c or RawClient(port, timeout=5)
            c.send(build_request("GET", path,
                                 headers=[("Accept-Encoding", rnd.choice(["gzip", "br"]))]))
            c.read_response()
            if name == "api" and rnd.random() < 0.02:
                c.send(build_request("PURGE", path))
                c.read_response()
        except Exception:
            c = None
        time.sleep(0.01 * rnd.random())


def slow_stats_proxy(admin_port):
    """A loopback proxy to the admin listener that holds /stats 0.9 s."""
    class Slow(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.startswith("/stats"):
                time.sleep(0.9)
            url = "http://127.0.0.1:%d%s" % (admin_port, self.path)
            with urllib.request.urlopen(url, timeout=10) as r:
                body, hdrs = r.read(), r.getheaders()
            self.send_response(200)
            for k, v in hdrs:
                if k.lower() not in ("date", "connection", "transfer-encoding", "server"):
                    self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 150.0
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(TOP, "docs", "dashboard.png")
    t0 = time.monotonic()
    stop = threading.Event()
    srv = None
    try:
        o = Origin("o")
        for i in range(300):
            o.handle("/catalog/%d" % i, handler(t0, "max-age=20", 25, 30, 12))
            o.handle("/api/%d" % i, handler(t0, "max-age=2", 50, 90, 9))
            o.handle("/search/%d" % i, handler(t0, "private" if i % 3 == 0 else "max-age=60",
                                               15, 50, 15, vary=True))
        for i in range(30):
            o.handle("/static/%d" % i, handler(t0, "max-age=600", 4, 6, 20))
        tc = Tailcache({"upstreams": {"o": {"servers": [o.addr]}},
                        "cache": {"memory": {"size": "2m", "shards": 1}},
                        "routes": [route("catalog", {"p95": "60ms"}),
                                   route("api", {"p95": "50ms"}),
                                   route("search", {"p99": "250ms"}), route("static")],
                        "analytics": {"slot": "1s", "window": "20s"}}).start()
        for i in range(6):
            threading.Thread(target=client, args=(tc.port, i, t0 + seconds + 30, stop),
                             daemon=True).start()
        srv = slow_stats_proxy(tc.admin_port)
        time.sleep(3)
        polls = int(seconds / 0.9)
        start = time.monotonic()
        Chromium().screenshot("http://127.0.0.1:%d/dashboard" % srv.server_address[1], out,
                              size=(1280, 1700), budget_ms=polls * 2000,
                              timeout=seconds * 3 + 60)
        print("%s: %d polls in %.0f s" % (out, polls, time.monotonic() - start))
    finally:
        stop.set()
        if srv is not None:
            srv.shutdown()
        problems = cleanup_all()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
