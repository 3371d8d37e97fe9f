"""tailcache -t (config check) and quick mode (--upstream)."""

import os
import re
import subprocess

from harness import Origin, Tailcache, addr, binary, free_port, get, new_dir, simple_config


def check(path, timeout=20):
    assert os.access(binary(), os.X_OK), "tailcache binary not found: %s" % binary()
    p = subprocess.run([binary(), "-t", "-c", path], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def write(text):
    path = os.path.join(new_dir("cfg"), "tailcache.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_check_good_config():
    o = Origin("o")
    tc = Tailcache(simple_config(o, limits={"header_count": 50}, timeouts={"drain": "150ms"}))
    rc, out, err = check(tc.config_path)
    assert rc == 0, "exit %d\nstdout: %s\nstderr: %s" % (rc, out, err)
    lines = (out + err).splitlines()
    assert "%s: ok" % tc.config_path in lines, "want '%s: ok', got stdout %r stderr %r" % (
        tc.config_path, out, err)
    assert not port_taken(tc.port), "-t must not start listening"


def port_taken(port):
    from harness import port_accepts
    return port_accepts(port)


BAD = """\
workers: 500
listen: "127.0.0.1:{p1}"
admin:
  listen: "127.0.0.1:{p2}"
limits:
  header_count: 500
timeouts:
  drain: abc
upstreams:
  a:
    servers: ["127.0.0.1:{p3}"]
    connect_timeout: 2x
    bogus_key: 1
  b:
    servers: ["1.2.3.4"]
routes:
  - name: r1
    upstream: nope
  - name: r1
    upstream: a
  - name: r3
    regex: '(ab'
    upstream: a
"""

# (line, key path regex, message) -- message must appear exactly.
BAD_WANT = [
    (1, r"workers", 'must be between 1 and 256, got 500'),
    (6, r"limits\.header_count", 'must be between 1 and 256, got 500'),
    (8, r"timeouts\.drain", 'expected a duration like "2s" or "150ms", got "abc"'),
    (12, r"upstreams\.a\.connect_timeout", 'expected a duration like "2s" or "150ms", got "2x"'),
    (13, r"upstreams\.a\.bogus_key", 'unknown key'),
    (15, r"upstreams\.b\.servers(\[0\])?", 'invalid address "1.2.3.4" (expected HOST:PORT)'),
    (18, r"routes\[0\]\.upstream", 'names an unknown upstream "nope"'),
    (19, r"routes\[1\](\.name)?", 'duplicate route name "r1"'),
    (22, r"routes\[2\]\.regex", 'regex does not compile at offset 3: missing closing parenthesis'),
]


def test_check_bad_config():
    path = write(BAD.format(p1=free_port(), p2=free_port(), p3=free_port()))
    rc, out, err = check(path)
    assert rc == 1, "exit %d, want 1\nstderr: %s" % (rc, err)
    lines = err.splitlines()
    missing = []
    for line, key, msg in BAD_WANT:
        pat = re.compile(r"^%s:%d: %s: %s$" % (re.escape(path), line, key, re.escape(msg)))
        if not any(pat.match(l) for l in lines):
            missing.append("%s:%d: %s: %s" % (path, line, key.replace("\\", ""), msg))
    assert not missing, "missing error lines:\n  %s\nstderr was:\n%s" % ("\n  ".join(missing), err)
    assert "ok" not in out.split(), out


def test_check_missing_required_and_yaml_syntax():
    path = write("workers: 2\n")
    rc, out, err = check(path)
    assert rc == 1, (rc, err)
    for key in ("upstreams", "routes"):
        pat = re.compile(r"^%s:\d+: %s: required key missing$" % (re.escape(path), key))
        assert any(pat.match(l) for l in err.splitlines()), "no '%s: required key missing' in:\n%s" % (
            key, err)

    path = write('workers: 2\nupstreams:\n  a:\n    servers: ["127.0.0.1:1"\nroutes: []\n')
    rc, out, err = check(path)
    assert rc == 1, (rc, err)
    assert re.search(r"^%s:\d+: " % re.escape(path), err, re.M), \
        "YAML syntax error without file:line:\n%s" % err


def test_quick_mode():
    o = Origin("o")
    port, admin = free_port(), free_port()
    tc = Tailcache(args=["--upstream", "http://%s" % o.addr, "--listen", addr(port),
                         "--admin", addr(admin), "--workers", "2"], port=port,
                   admin_port=admin).start()
    r = get(tc.port, "/ok", host="anything.test")
    assert r.status == 200 and r.body == b"ok\n", r
    assert r.header("X-Origin") == "o"
    r = get(tc.port, "/some/deep/path?x=1")
    assert r.status == 200 and o.last().target == "/some/deep/path?x=1", r
    r = tc.admin_get("/healthz")
    assert r.status == 200 and r.body == b"ok\n", r
    tc.stop()
