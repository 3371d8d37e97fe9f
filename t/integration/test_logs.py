"""Access log format, error log format, SIGUSR1 reopening both."""

import os
import re
import signal

from harness import (Origin, RawClient, Tailcache, addr, free_port, get, read_text, request,
                     wait_for)

TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
NUM = r"\d+(?:\.\d+)?"
ACCESS = re.compile(r'^(?P<time>%s) (?P<ip>127\.0\.0\.1):(?P<port>\d+) "(?P<req>[^"]*)" '
                    r'(?P<status>\d{3}) (?P<bytes>\d+) route=(?P<route>\S+) '
                    r'total_ms=(?P<total>%s) upstream_ms=(?P<up>%s|-) cache=-$' % (TIME, NUM, NUM))
ERROR = re.compile(r"^%s \[(error|warn|info|debug)\] \S.*$" % TIME)


def start(tmp_logs=False):
    o = Origin("o")
    dead = free_port()
    tc = Tailcache({"upstreams": {"o": {"servers": [o.addr]},
                                  "dead": {"servers": [addr(dead)], "max_fails": 1000}},
                    "routes": [{"name": "main", "prefix": "/ok", "upstream": "o"},
                               {"name": "slow", "prefix": "/delay", "upstream": "o"},
                               {"name": "dead", "prefix": "/dead", "upstream": "dead"}]})
    if tmp_logs:
        cfg = dict(tc.config)
        cfg["log"] = dict(cfg["log"], error=os.path.join(tc.dir, "error.log"))
        tc.write_config(cfg)
    return o, tc.start()


def find_line(tc, needle, path=None, timeout=5):
    path = path or tc.access_log

    def look():
        for line in read_text(path).splitlines():
            if needle in line:
                return line
        return None
    return wait_for(look, timeout, msg="access log line with %r in %s:\n%s" % (
        needle, path, read_text(path)[-2000:]))


def parse(line):
    m = ACCESS.match(line)
    assert m, "access log line does not match the format:\n  %r" % line
    return m


def test_access_log_format():
    o, tc = start()
    c = RawClient(tc.port)
    r = c.request("GET", "/ok?x=1")
    assert r.status == 200
    m = parse(find_line(tc, '"GET /ok?x=1 HTTP/1.1"'))
    assert int(m["port"]) == c.local_port, "client port %s, want %d" % (m["port"], c.local_port)
    assert m["status"] == "200" and m["route"] == "main", m.groupdict()
    assert int(m["bytes"]) >= 3, m.groupdict()
    assert m["up"] != "-", "upstream_ms missing for a proxied request"
    assert float(m["up"]) <= float(m["total"]) + 1, m.groupdict()

    r = get(tc.port, "/nope")
    assert r.status == 404
    m = parse(find_line(tc, '"GET /nope HTTP/1.1"'))
    assert (m["status"], m["route"], m["up"]) == ("404", "-", "-"), m.groupdict()

    r = get(tc.port, "/delay?ms=200")
    assert r.status == 200
    m = parse(find_line(tc, '"GET /delay?ms=200 HTTP/1.1"'))
    assert m["route"] == "slow"
    assert float(m["total"]) >= 190 and float(m["up"]) >= 190, m.groupdict()

    r = request(tc.port, "POST", "/ok", body=b"abc", version="HTTP/1.0")
    assert r.status == 200
    parse(find_line(tc, '"POST /ok HTTP/1.0" 200'))

    r = get(tc.port, "/dead")
    assert r.status == 502
    m = parse(find_line(tc, '"GET /dead HTTP/1.1"'))
    assert m["status"] == "502" and m["route"] == "dead", m.groupdict()

    # Every line of the file has the format; one line per request.
    lines = read_text(tc.access_log).splitlines()
    for line in lines:
        parse(line)
    assert len(lines) == 5, "want 5 lines, got:\n%s" % "\n".join(lines)


def test_sigusr1_reopens_logs():
    o, tc = start(tmp_logs=True)
    assert get(tc.port, "/ok?before").status == 200
    find_line(tc, "/ok?before")
    assert get(tc.port, "/dead").status == 502  # something for the error log
    wait_for(lambda: os.path.exists(tc.error_log), 5, msg="error log to be created")
    for line in read_text(tc.error_log).splitlines():
        assert ERROR.match(line), "error log line does not match 'TIME [level] message': %r" % line

    os.rename(tc.access_log, tc.access_log + ".1")
    os.rename(tc.error_log, tc.error_log + ".1")
    tc.signal(signal.SIGUSR1)

    # The reopen is asynchronous: keep making requests (bounded) until one
    # lands in a new access log.
    n = [0]

    def new_file_has_line():
        n[0] += 1
        assert get(tc.port, "/ok?after=%d" % n[0]).status == 200
        return "/ok?after=" in read_text(tc.access_log) and n[0]
    wait_for(new_file_has_line, 10, interval=0.05, msg="a new access log after SIGUSR1")
    for line in read_text(tc.access_log).splitlines():
        parse(line)
    old = read_text(tc.access_log + ".1")
    assert "/ok?before" in old, old
    assert "/ok?before" not in read_text(tc.access_log)

    def error_log_back():
        get(tc.port, "/dead")
        return os.path.exists(tc.error_log)
    wait_for(error_log_back, 10, interval=0.1, msg="a new error log after SIGUSR1")
    assert tc.alive()
