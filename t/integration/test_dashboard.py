"""The admin listener's /dashboard: the page as served (headers, a strict
CSP, byte for byte src/dashboard.html, nothing external), and the page as a
browser runs it: headless Chromium loads it against a tailcache that served
hits and misses on two routes, lets it poll /stats a few times, and the
dumped DOM must show every chart of every route drawn from real data (each
canvas reports the points or bars it drew in data-points), the routes'
names and request counts, and no JavaScript error. Also with analytics off
and with no traffic at all: a notice, no error."""

import html.parser
import os
import struct

from harness import (Chromium, Origin, RawClient, Reply, Tailcache, build_request, get, test_dir,
                     wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_SRC = os.path.join(HERE, "..", "..", "src", "dashboard.html")

CSP = ("default-src 'self'", "script-src 'unsafe-inline'", "style-src 'unsafe-inline'",
       "connect-src 'self'", "img-src data:")


class DashboardDom(html.parser.HTMLParser):
    """What the test reads from the dumped DOM: per route section
    (data-route; "" for the all-routes card), its canvases' data-chart ->
    data-points and its text; the poll and error markers."""

    def __init__(self, text):
        super().__init__()
        self.sections = {}
        self.current = None
        self.depth = 0
        self.polls = None
        self.errors = None
        self.error_hidden = None
        self.error_text = ""
        self.notice = ""
        self._in = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "data-route" in a:
            self.current = self.sections.setdefault(a["data-route"], {"charts": {}, "text": ""})
            self.depth = 0
        elif tag == "section" and self.current is not None:
            self.depth += 1
        if tag == "canvas" and self.current is not None:
            self.current["charts"][a.get("data-chart")] = int(a.get("data-points", "-1"))
        if a.get("id") == "status":
            self.polls = int(a.get("data-polls", "0"))
        if a.get("id") == "js-error":
            self.errors = int(a.get("data-errors", "-1"))
            self.error_hidden = "hidden" in a
            self._in = "error"
        if a.get("id") == "notice":
            self._in = "notice"

    def handle_endtag(self, tag):
        if tag == "section" and self.current is not None:
            if self.depth == 0:
                self.current = None
            else:
                self.depth -= 1
        if tag == "div":
            self._in = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data + " "
        if self._in == "error":
            self.error_text += data
        elif self._in == "notice":
            self.notice += data


def dashboard_url(tc):
    return "http://127.0.0.1:%d/dashboard" % tc.admin_port


def load(tc, budget_ms=7000):
    """The dashboard's DOM after budget_ms of (virtual) time: at 2 s a poll,
    three or four polls."""
    dom = Chromium().dump_dom(dashboard_url(tc), budget_ms=budget_ms)
    with open(os.path.join(test_dir(), "dashboard.html"), "w") as f:
        f.write(dom)
    d = DashboardDom(dom)
    assert d.errors == 0 and d.error_hidden, "JS error on the page: %r" % d.error_text
    assert d.polls is not None and d.polls >= 2, "the page polled /stats %r times" % d.polls
    return d


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG: %r" % head[:8]
    return struct.unpack(">II", head[16:24])


def two_routes():
    o = Origin("o")

    def slow(req):  # misses take a while, so hits and misses part in the histogram
        return Reply(200, [("Cache-Control", "max-age=300")], body=b"x" * 2000, delay=0.02)
    for path in ("/api/a", "/api/b"):
        o.handle(path, slow)
    for i in range(6):
        o.handle("/static/%d" % i, Reply(200, [("Cache-Control", "max-age=300")], body=b"s" * 500))
    cache = {"enabled": True}
    # A slot of 1 s: the recent window catches up with the traffic sooner.
    cfg = {"upstreams": {"o": {"servers": [o.addr]}},
           "routes": [{"name": "api", "prefix": "/api/", "upstream": "o", "cache": cache},
                      {"name": "static", "prefix": "/static/", "upstream": "o", "cache": cache}],
           "analytics": {"slot": "1s"}}
    return o, Tailcache(cfg).start()


def route_stats(tc):
    return {r["name"]: r for r in tc.stats()["analytics"]["routes"]}


def test_dashboard_served():
    o, tc = two_routes()
    r = tc.admin_get("/dashboard")
    assert r.status == 200, r
    assert r.header("Content-Type") == "text/html; charset=utf-8", r.header("Content-Type")
    assert r.header("Cache-Control") == "no-store", r.header("Cache-Control")
    csp = r.header("Content-Security-Policy") or ""
    for d in CSP:
        assert d in csp, "CSP lacks %r: %r" % (d, csp)
    with open(PAGE_SRC, "rb") as f:
        src = f.read()
    assert r.body == src, "served %d bytes, src/dashboard.html has %d" % (len(r.body), len(src))
    text = src.decode("ascii")  # the page is kept ASCII
    low = text.lower()
    for bad in ("<script src", "<link", "@import", "url(", "http://", "https://", "//cdn"):
        assert bad not in low, "the page loads something from outside: %r" % bad
    assert "<canvas" not in low, "canvases are made by the script, per route"

    # HEAD: the length a GET gets, and no body, so that on a kept-alive
    # connection the next answer is read from its start.
    c = RawClient(tc.admin_port)
    c.send(build_request("HEAD", "/dashboard") + build_request("GET", "/healthz"))
    h = c.read_response(head=True)
    assert h.status == 200 and h.body == b"", h
    assert h.header("Content-Length") == str(len(src)), h.header("Content-Length")
    k = c.read_response()
    assert k.status == 200 and k.body == b"ok\n", k
    p = tc.admin_request("POST", "/dashboard")
    assert p.status == 405 and "GET" in (p.header("Allow") or ""), p
    q = tc.admin_get("/dashboard?refresh=1")
    assert q.status == 200 and q.body == src, q


def test_dashboard_draws_every_route():
    o, tc = two_routes()
    # api: /api/a a miss then 4 hits, /api/b a miss then 2 hits: 8 requests
    for path, n in (("/api/a", 5), ("/api/b", 3)):
        for _ in range(n):
            assert get(tc.port, path).status == 200
    # static: 6 misses, then 4 hits: 10 requests
    for i in range(6):
        assert get(tc.port, "/static/%d" % i).status == 200
    for i in range(4):
        assert get(tc.port, "/static/%d" % i).status == 200
    want = {"api": 8, "static": 10}

    def recent_ready():
        rs = route_stats(tc)
        ok = all(n in rs and rs[n]["requests"] == want[n]
                 and rs[n]["latency"]["recent"].get("total", {}).get("count") == want[n]
                 for n in want)
        return rs if ok else None
    # The recent window moves at each analytics slot.
    rs = wait_for(recent_ready, timeout=10, interval=0.1, msg="the recent window")
    assert rs["api"]["miss_causes"]["cold"] == 2, rs["api"]["miss_causes"]

    d = load(tc)
    assert set(d.sections) >= {"api", "static", ""}, sorted(d.sections)
    for name, n in want.items():
        s = d.sections[name]
        assert name in s["text"], (name, s["text"][:200])
        assert "requests %d " % n in " ".join(s["text"].split()) + " ", (n, s["text"][:300])
        charts = s["charts"]
        assert set(charts) == {"latency", "phases", "causes", "histogram"}, charts
        for kind, points in charts.items():
            assert points > 0, "%s: the %s chart drew nothing: %r" % (name, kind, charts)
        assert charts["latency"] >= 2, "%s: %d polls plotted" % (name, charts["latency"])
        assert charts["histogram"] >= 2, "%s: hits and misses in one bar?" % name
        assert charts["phases"] == 1, "%s: within the warm-up window, only cold" % name
    total = d.sections[""]
    assert all(v > 0 for v in total["charts"].values()), total["charts"]
    assert "requests 18 " in " ".join(total["text"].split()) + " ", total["text"][:300]

    shot = Chromium().screenshot(dashboard_url(tc), os.path.join(test_dir(), "dashboard.png"))
    w, h = png_size(shot)
    assert (w, h) == (1280, 1600), (w, h)
    assert os.path.getsize(shot) > 20000, "a blank screenshot? %d bytes" % os.path.getsize(shot)


def test_dashboard_without_traffic():
    o, tc = two_routes()
    d = load(tc, budget_ms=5000)
    # Routes may be listed before their first request: nothing to draw yet.
    for name, s in d.sections.items():
        assert all(v == 0 for v in s["charts"].values()), (name, s["charts"])
    if not d.sections:
        assert "waiting for traffic" in d.notice, d.notice


def test_dashboard_analytics_off():
    o = Origin("o")
    cfg = {"upstreams": {"o": {"servers": [o.addr]}},
           "routes": [{"name": "default", "prefix": "/", "upstream": "o",
                       "cache": {"enabled": True}}],
           "analytics": {"enabled": False}}
    tc = Tailcache(cfg).start()
    assert get(tc.port, "/x").status == 200
    wait_for(lambda: tc.stats()["requests"] >= 1, timeout=5, msg="the request counted")
    d = load(tc, budget_ms=5000)
    assert "analytics are off" in d.notice, d.notice
    assert "1 requests" in d.notice, d.notice
    assert not d.sections, sorted(d.sections)
