"""Integration-test harness for tailcache (Python 3 standard library only).

What is here:
  - free loopback ports, a temp dir per test, bounded polling (wait_for);
  - Tailcache: writes a YAML config (from a dict or text), runs the binary
    with stdout/stderr captured to files, waits for its ports, signals it,
    stops it, reads its RSS, fetches admin /stats;
  - Origin: an in-process threaded HTTP/1.1 origin on raw sockets that
    counts connections and requests, records every request, and can
    misbehave on purpose (hang, close after responding, drop a reused
    connection, stream 1 GiB either way without holding it); TlsOrigin,
    the same behind TLS (Python's ssl), recording SNI, resumed sessions
    and client certificates;
  - RawClient: sends arbitrary bytes and reads back HTTP responses with
    correct framing (Content-Length, chunked with trailers, until close,
    no body for HEAD/1xx/204/304), with timeouts;
  - Origin.handle(path, fn) with Reply: per-test responses (any status and
    headers, delays, paced or cut bodies, dropped connections), e.g. for
    the cache tests; run_parallel / concurrent_requests: bounded bursts of
    simultaneous requests;
  - RedisServer and Memcached: real redis-server / memcached processes on
    free loopback ports for the shared cache tiers, with start/stop/kill
    (SIGKILL)/pause (SIGSTOP)/resume/restart on the same port, and small
    clients to look inside them (RESP cmd(), KEYS, SUBSCRIBE; memcached
    stats, metadump keys, get); Tailcache.restart() empties the memory
    cache while the tiers keep their contents;
  - LoadGen (http.client, for reloads) and LoadGenerator (RawClient, per
    request status, Cache-Status and latency: failures, p99, max), for
    faults injected under load;
  - Chromium: headless runs of Debian's chromium against the admin
    listener's pages (the DOM after the page ran a while, screenshots).

Rules every helper keeps: loopback only; every wait is bounded in time;
every loop is bounded in count or time.  Everything a test starts is
registered here and torn down by cleanup_all(), which the runner calls
after each test whatever happened (a sanitizer report in a tailcache's
stderr then fails the test).

Writing a test: a plain function test_*() in t/integration/test_*.py that
raises AssertionError on failure; each runs in its own process and temp
dir (t/run-integration.py). Typically:

    o = Origin("o")
    tc = Tailcache(simple_config(o, upstream={"max_fails": 2})).start()
    r = RawClient(tc.port).request("GET", "/ok")
    assert r.status == 200 and o.request_count == 1, r

Poll with wait_for(); never sleep and hope. harness_selftest.py checks the
origin and raw client against each other without tailcache.
"""

import ctypes
import json
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import weakref

KiB = 1024
MiB = 1024 * 1024
GiB = 1024 * MiB

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------
# environment

def build_dir():
    return os.environ.get("TC_BUILD") or "/work/main/build"


def binary():
    """Path of the tailcache binary: $TAILCACHE, else $TC_BUILD/src/tailcache."""
    return os.path.abspath(os.environ.get("TAILCACHE")
                           or os.path.join(build_dir(), "src", "tailcache"))


_asan_cache = {}


def binary_has_asan(path=None):
    """True when the binary was built with AddressSanitizer (looks for its runtime symbols)."""
    path = path or binary()
    if path in _asan_cache:
        return _asan_cache[path]
    found = False
    try:
        with open(path, "rb") as f:
            prev = b""
            while True:
                block = f.read(4 * MiB)
                if not block:
                    break
                if b"__asan_init" in prev[-64:] + block:
                    found = True
                    break
                prev = block
    except OSError:
        pass
    _asan_cache[path] = found
    return found


def slow_factor():
    """Timing margins are multiplied by this (sanitizer builds are 2-3x slower)."""
    try:
        return float(os.environ["TC_SLOW"])
    except (KeyError, ValueError):
        return 3.0 if binary_has_asan() else 1.0


# --------------------------------------------------------------------------
# temp dirs, ports, polling

_test_dir = None
_dir_seq = 0
_dir_lock = threading.Lock()


def test_dir():
    """The current test's private directory (created on first use)."""
    global _test_dir
    if _test_dir is None:
        base = os.environ.get("TC_TEST_TMPDIR")
        if base:
            os.makedirs(base, exist_ok=True)
            _test_dir = base
        else:
            import tempfile
            _test_dir = tempfile.mkdtemp(prefix="tc-it-")
    return _test_dir


def new_dir(name):
    """A fresh subdirectory of the test directory."""
    global _dir_seq
    with _dir_lock:
        _dir_seq += 1
        path = os.path.join(test_dir(), "%s-%d" % (name, _dir_seq))
    os.makedirs(path)
    return path


_ports_given = set()


def free_port():
    """A loopback TCP port that was free a moment ago (bind 127.0.0.1:0).

    Never hands out the same port twice in one process. Nothing listens on
    it afterwards, so it also serves as a "connection refused" address."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no free port found")


def wait_for(cond, timeout=10.0, interval=0.02, msg="condition"):
    """Polls cond() until it returns a truthy value, which is returned.

    Raises AssertionError naming msg when timeout seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, msg))
        time.sleep(interval)


def port_accepts(port, host=LOOPBACK, timeout=0.5):
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return False
    s.close()
    return True


def connect_refused(port, host=LOOPBACK, timeout=0.5):
    """True when a connect to port is actively refused right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()
    return False


def tail(path, lines=40, max_bytes=64 * KiB):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


# --------------------------------------------------------------------------
# cleanup registry

_live = []          # objects with a _cleanup() method, in creation order
_live_lock = threading.Lock()
_clients = weakref.WeakSet()


def _register(obj):
    with _live_lock:
        _live.append(obj)


def cleanup_all():
    """Stops everything tests started: clients, origins, tailcache processes.

    Returns a list of problems found while stopping (sanitizer reports in a
    tailcache's stderr); an empty list means all was clean."""
    problems = []
    for c in list(_clients):
        try:
            c.close()
        except Exception:
            pass
    with _live_lock:
        objs = list(_live)
        _live.clear()
    # Load generators stop first (their failures no longer matter), and a
    # helper server a test left SIGSTOPped is woken, so that no tailcache
    # waits on a stalled Redis or memcached while it shuts down.
    for o in objs:
        if isinstance(o, LoadGenerator):
            try:
                o.stop(timeout=5)
            except Exception:
                pass
        elif isinstance(o, Chromium):
            try:
                o._cleanup()
            except Exception:
                pass
        elif isinstance(o, _ServerProcess):
            try:
                o.resume()
            except Exception:
                pass
    # Origins next: in-flight upstream connections then fail fast, so a
    # tailcache stopped next has nothing left to drain.
    for o in objs:
        if isinstance(o, Origin):
            try:
                o.stop()
            except Exception:
                pass
    for o in objs:
        if isinstance(o, Tailcache):
            try:
                o.stop(timeout=10, check=False)
            except Exception:
                pass
            problems.extend(o.sanitizer_problems())
    # Redis, memcached and subscribers last: tailcache may use them until it exits.
    for o in reversed(objs):
        if isinstance(o, (_ServerProcess, RedisSubscriber)):
            try:
                o._cleanup()
            except Exception:
                pass
    return problems


def live_tailcaches():
    with _live_lock:
        return [o for o in _live if isinstance(o, Tailcache)]


# --------------------------------------------------------------------------
# YAML writer (block style, so line numbers in errors mean something)

_plain_ok = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./-]*$")


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Serialises dicts, lists and scalars as block-style YAML text."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = str(k) if _plain_ok.match(str(k)) else json.dumps(str(k))
            if isinstance(v, dict):
                if v:
                    out.append("%s%s:" % (pad, key))
                    out.append(to_yaml(v, indent + 2))
                else:
                    out.append("%s%s: {}" % (pad, key))
            elif isinstance(v, list):
                if v and any(isinstance(e, (dict, list)) for e in v):
                    out.append("%s%s:" % (pad, key))
                    out.append(to_yaml(v, indent + 2))
                else:
                    out.append("%s%s: [%s]" % (pad, key, ", ".join(_yaml_scalar(e) for e in v)))
            else:
                out.append("%s%s: %s" % (pad, key, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for e in obj:
            if isinstance(e, dict):
                body = to_yaml(e, indent + 2).split("\n")
                body[0] = pad + "- " + body[0][indent + 2:]
                out.append("\n".join(body))
            elif isinstance(e, list):
                out.append("%s- [%s]" % (pad, ", ".join(_yaml_scalar(x) for x in e)))
            else:
                out.append("%s- %s" % (pad, _yaml_scalar(e)))
    else:
        out.append(pad + _yaml_scalar(obj))
    return "\n".join(out)


# --------------------------------------------------------------------------
# tailcache process

def _child_setup():
    # Die with the test process whatever happens to it (PR_SET_PDEATHSIG).
    # The signal fires when the forking *thread* exits: start tailcache from
    # the test's main thread, not from a short-lived helper thread.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _hostport(text):
    host, _, port = str(text).rpartition(":")
    return host.strip("[]"), int(port)


def addr(port):
    return "%s:%d" % (LOOPBACK, port)


class Tailcache:
    """One tailcache process.

    config: a dict (missing workers/listen/admin/log/timeouts.drain are
    filled with test defaults: 2 workers, free loopback ports, error log to
    stderr, access log to a file, drain 5s) or YAML text (then pass port and
    admin_port yourself). args: a full argument list instead of -c (quick
    mode). env: extra environment variables."""

    _seq = 0

    def __init__(self, config=None, args=None, port=None, admin_port=None, env=None,
                 name="tailcache"):
        self.dir = new_dir(name)
        self.config_path = os.path.join(self.dir, "tailcache.yaml")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.stdout_path = os.path.join(self.dir, "stdout")
        self.access_log = None
        self.error_log = None
        self.args = args
        self.env = dict(env or {})
        self.proc = None
        self.port = port
        self.admin_port = admin_port
        self.drain_s = 30.0
        self.config = None
        if config is not None:
            self.write_config(config)
        _register(self)

    # ---- config

    def defaults(self, cfg):
        """Fills test defaults into a config dict (a copy is returned)."""
        cfg = json.loads(json.dumps(cfg))
        cfg.setdefault("workers", 2)
        if "listen" not in cfg:
            cfg["listen"] = addr(self.port or free_port())
        admin = cfg.setdefault("admin", {})
        if "listen" not in admin:
            admin["listen"] = addr(self.admin_port or free_port())
        log = cfg.setdefault("log", {})
        log.setdefault("level", "info")
        log.setdefault("error", "stderr")
        log.setdefault("access", os.path.join(self.dir, "access.log"))
        cfg.setdefault("timeouts", {}).setdefault("drain", "5s")
        # Keep key order readable: scalars first, upstreams and routes last.
        order = ["workers", "listen", "admin", "limits", "timeouts", "log", "upstreams", "routes"]
        return {k: cfg[k] for k in sorted(cfg, key=lambda k: order.index(k) if k in order else -1)}

    def write_config(self, config, path=None):
        """Writes the config (dict or YAML text) atomically; returns the text."""
        if isinstance(config, dict):
            config = self.defaults(config)
            self.config = config
            listen = config["listen"]
            if isinstance(listen, list):
                listen = listen[0]
            self.port = _hostport(listen)[1]
            a = config.get("admin", {}).get("listen", "off")
            self.admin_port = None if a == "off" else _hostport(a)[1]
            log = config.get("log", {})
            if log.get("access") not in (None, "stderr", "off"):
                self.access_log = log["access"]
            if log.get("error") not in (None, "stderr"):
                self.error_log = log["error"]
            if "drain" in config.get("timeouts", {}):
                self.drain_s = parse_duration(config["timeouts"]["drain"])
            text = to_yaml(config) + "\n"
        else:
            text = config
        path = path or self.config_path
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)
        return text

    # ---- process

    def command(self):
        if self.args is not None:
            return [binary()] + list(self.args)
        return [binary(), "-c", self.config_path]

    def _environ(self):
        env = dict(os.environ)
        env.update(self.env)
        return env

    def start(self, timeout=None):
        """Starts the process and waits (bounded) until its listen and admin
        ports accept connections. Raises AssertionError if it exits first."""
        exe = binary()
        if not os.access(exe, os.X_OK):
            raise AssertionError("tailcache binary not found or not executable: %s "
                                 "(set TAILCACHE or TC_BUILD)" % exe)
        timeout = timeout or 10.0 * max(1.0, slow_factor() / 2)
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, cwd=self.dir, env=self._environ(),
                                         preexec_fn=_child_setup)
        finally:
            out.close()
            err.close()
        ports = [p for p in (self.port, self.admin_port) if p]
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("tailcache exited with status %s during start-up:\n%s"
                                     % (rc, tail(self.stderr_path)))
            if all(port_accepts(p) for p in ports):
                return self
            if time.monotonic() >= deadline:
                raise AssertionError("tailcache did not accept on %s within %.0fs:\n%s"
                                     % (ports, timeout, tail(self.stderr_path)))
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        assert self.alive(), "tailcache is not running (status %s)" % (
            self.proc and self.proc.returncode)
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """Waits up to timeout seconds; returns the exit status or None."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=None, check=True):
        """SIGTERM, wait up to the drain time (+ margin), then SIGKILL.

        Returns the exit status. With check, asserts a clean exit 0."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            bound = timeout if timeout is not None else self.drain_s + 5.0 * slow_factor()
            rc = self.wait_exit(bound)
            if rc is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
                if check:
                    raise AssertionError("tailcache ignored SIGTERM for %.1fs; killed" % bound)
        rc = self.proc.returncode
        if check:
            assert rc == 0, "tailcache exited with status %s:\n%s" % (rc, tail(self.stderr_path))
        return rc

    def restart(self, timeout=None):
        """Stops the process (asserting a clean exit) and starts it again
        with the same command line and config, on the same ports: its memory
        cache is empty afterwards, the shared tiers are not."""
        self.stop()
        return self.start(timeout=timeout)

    def sanitizer_problems(self):
        text = read_text(self.stderr_path)
        marks = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                 "WARNING: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")
        found = [m for m in marks if m in text]
        if found:
            return ["sanitizer report (%s) in %s:\n%s" % (", ".join(found), self.stderr_path,
                                                         tail(self.stderr_path, 60))]
        return []

    # ---- observation

    def rss(self):
        """Resident set size in bytes (VmRSS), or None once it has exited."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def admin_get(self, path, timeout=5.0):
        assert self.admin_port, "admin listener is off"
        return request(self.admin_port, "GET", path, timeout=timeout)

    def admin_request(self, method, path, body=None, headers=None, timeout=5.0):
        """One request to the admin listener (a POST gets Content-Length: 0
        when body is None)."""
        assert self.admin_port, "admin listener is off"
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        return request(self.admin_port, method, path, body=body, headers=headers,
                       timeout=timeout)

    def admin_post(self, path, timeout=5.0):
        return self.admin_request("POST", path, timeout=timeout)

    def stats(self):
        r = self.admin_get("/stats")
        assert r.status == 200, "GET /stats -> %d %r" % (r.status, r.body[:200])
        try:
            return json.loads(r.body.decode())
        except ValueError as e:
            raise AssertionError("/stats is not JSON (%s): %r" % (e, r.body[:300]))

    def stderr_text(self):
        return read_text(self.stderr_path)

    def error_log_text(self):
        return read_text(self.error_log) if self.error_log else self.stderr_text()

    def diagnostics(self, lines=40):
        parts = ["--- %s (pid %s): %s" % (self.stderr_path, self.proc and self.proc.pid,
                                          " ".join(self.command()))]
        parts.append(tail(self.stderr_path, lines) or "(empty)")
        if self.error_log and os.path.exists(self.error_log):
            parts.append("--- %s" % self.error_log)
            parts.append(tail(self.error_log, lines) or "(empty)")
        return "\n".join(parts)

    def _cleanup(self):
        self.stop(check=False)


def parse_duration(text):
    m = re.match(r"^(\d+)(ms|s|m|h)?$", str(text).strip())
    if not m:
        return 30.0
    n = int(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def simple_config(origins, route=None, upstream=None, **top):
    """A config with one upstream "o" over the given Origin(s) and one
    catch-all route "default". route/upstream: extra keys for them."""
    if not isinstance(origins, (list, tuple)):
        origins = [origins]
    up = {"servers": [o.addr if isinstance(o, Origin) else o for o in origins]}
    up.update(upstream or {})
    r = {"name": "default", "prefix": "/", "upstream": "o"}
    r.update(route or {})
    cfg = {"upstreams": {"o": up}, "routes": [r]}
    cfg.update(top)
    return cfg


class RssSampler:
    """Samples a process's VmRSS every interval seconds in a thread."""

    def __init__(self, tc, interval=0.1):
        self.tc = tc
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            r = self.tc.rss()
            if r is not None:
                self.peak = max(self.peak, r)
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=5)


# --------------------------------------------------------------------------
# deterministic body pattern

PATTERN_BLOCK = bytes(range(256)) * 4096  # 1 MiB, period 256
_PATTERN_EXT = PATTERN_BLOCK + PATTERN_BLOCK[:256]


def pattern(offset, n):
    """n bytes of the body pattern starting at stream offset."""
    out = bytearray()
    while n > 0:
        s = offset % 256
        take = min(n, MiB)
        out += _PATTERN_EXT[s:s + take]
        offset += take
        n -= take
    return bytes(out)


def pattern_pieces(total, piece=MiB):
    """Yields the pattern of length total as memoryviews (no big allocation)."""
    mv = memoryview(PATTERN_BLOCK)
    left = total
    while left > 0:
        n = min(piece, left, MiB)
        yield mv[:n]
        left -= n


class PatternChecker:
    """Checks a stream against the pattern at memcmp speed, in pieces."""

    def __init__(self):
        self.buf = bytearray(MiB)
        self.fill = 0
        self.total = 0
        self.bad_at = None

    def feed(self, data):
        mv = memoryview(data)
        while len(mv):
            n = min(len(mv), MiB - self.fill)
            self.buf[self.fill:self.fill + n] = mv[:n]
            self.fill += n
            mv = mv[n:]
            if self.fill == MiB:
                self._check()

    def _check(self):
        if self.bad_at is None and self.fill:
            ok = (self.buf == PATTERN_BLOCK) if self.fill == MiB else \
                (self.buf[:self.fill] == PATTERN_BLOCK[:self.fill])
            if not ok:
                for i in range(self.fill):
                    if self.buf[i] != PATTERN_BLOCK[i]:
                        self.bad_at = self.total + i
                        break
        self.total += self.fill
        self.fill = 0

    def finish(self):
        self._check()
        return self.bad_at is None


# --------------------------------------------------------------------------
# HTTP messages

class ProtocolError(Exception):
    pass


class Message:
    """A parsed request or response (headers as a list of (name, value))."""

    def __init__(self):
        self.headers = []
        self.trailers = []
        self.body = b""
        self.body_len = 0
        self.framing = None
        self.raw_head = b""

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def header(self, name):
        """All values of the field joined by ", ", or None when absent."""
        vals = self.get_all(name)
        return ", ".join(vals) if vals else None

    def has(self, name):
        return bool(self.get_all(name))

    def header_names(self):
        return [k.lower() for k, _ in self.headers]


class Response(Message):
    def __init__(self):
        super().__init__()
        self.version = None
        self.status = None
        self.reason = None

    def __repr__(self):
        return "<Response %s %s %s, %d body bytes>" % (self.version, self.status, self.reason,
                                                       self.body_len)


def _parse_fields(lines, where):
    out = []
    for line in lines:
        if b":" not in line:
            raise ProtocolError("%s: field line without colon: %r" % (where, line[:100]))
        name, _, value = line.partition(b":")
        if not name or name != name.strip() or re.search(rb"[\x00-\x20()<>@,;:\\\"/\[\]?={}\x7f]", name):
            raise ProtocolError("%s: invalid field name %r" % (where, name[:100]))
        out.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return out


def build_request(method, target, headers=None, body=None, version="HTTP/1.1", host="test",
                  chunks=None, trailers=None):
    """Bytes of a request. headers: list of (name, value) or dict. host=None
    omits Host. A bytes body gets Content-Length unless headers already frame
    it; chunks (list of bytes) sends a chunked body with optional trailers."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    payload = b""
    if chunks is not None:
        if "transfer-encoding" not in names:
            lines.append("Transfer-Encoding: chunked")
        parts = []
        for c in chunks:
            if c:
                parts.append(b"%x\r\n" % len(c) + c + b"\r\n")
        parts.append(b"0\r\n")
        for k, v in (trailers or []):
            parts.append(("%s: %s\r\n" % (k, v)).encode("latin-1"))
        parts.append(b"\r\n")
        payload = b"".join(parts)
    elif body is not None:
        if "content-length" not in names and "transfer-encoding" not in names:
            lines.append("Content-Length: %d" % len(body))
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class RawClient:
    """A client connection that sends raw bytes and reads framed responses.

    timeout bounds every single wait for data (an inactivity timeout)."""

    def __init__(self, port, host=LOOPBACK, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self._rbuf = bytearray(MiB)
        self._rmv = memoryview(self._rbuf)
        _clients.add(self)

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, target, **kw):
        """Sends build_request(...) and reads the response."""
        self.send(build_request(method, target, **kw))
        return self.read_response(head=(method == "HEAD"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self, timeout=None):
        """One recv into the internal buffer; returns bytes read (0 at EOF)."""
        if self.eof:
            return 0
        self.sock.settimeout(timeout or self.timeout)
        try:
            n = self.sock.recv_into(self._rbuf)
        except socket.timeout:
            raise TimeoutError("no data from server for %.1fs (have %d bytes buffered: %r)"
                               % (timeout or self.timeout, len(self.buf), bytes(self.buf[:200])))
        except ConnectionResetError:
            self.reset = True
            n = 0
        if n == 0:
            self.eof = True
        return n

    def _fill(self, timeout=None):
        n = self._recv(timeout)
        if n:
            self.buf += self._rmv[:n]
        return n

    def read_head(self, max_bytes=1 * MiB, timeout=None):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > max_bytes:
                raise ProtocolError("response head larger than %d bytes" % max_bytes)
            if not self._fill(timeout):
                if self.buf:
                    raise ProtocolError("connection closed inside a response head: %r"
                                        % bytes(self.buf[:300]))
                raise ConnectionError("connection closed before a response%s"
                                      % (" (reset)" if self.reset else ""))

    def read_response(self, head=False, interim=False, sink=None, timeout=None):
        """Reads one response. head: it answers a HEAD (no body). interim:
        return a 1xx instead of skipping it. sink(memoryview): receive the
        body in pieces instead of keeping it in .body."""
        while True:
            raw = self.read_head(timeout=timeout)
            lines = raw[:-4].split(b"\r\n")
            m = re.match(rb"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
            if not m:
                raise ProtocolError("bad status line %r" % lines[0][:200])
            r = Response()
            r.raw_head = raw
            r.version = m.group(1).decode()
            r.status = int(m.group(2))
            r.reason = m.group(3).decode("latin-1")
            r.headers = _parse_fields(lines[1:], "response")
            if 100 <= r.status < 200:
                if interim or r.status == 101:
                    r.framing = "none"
                    return r
                continue
            break
        parts = [] if sink is None else None

        def deliver(mv):
            r.body_len += len(mv)
            if sink is None:
                parts.append(bytes(mv))
            else:
                sink(mv)

        te = r.header("Transfer-Encoding")
        cl = r.get_all("Content-Length")
        if head or r.status in (204, 304):
            r.framing = "none"
        elif te is not None:
            if te.split(",")[-1].strip().lower() != "chunked":
                raise ProtocolError("response Transfer-Encoding %r does not end in chunked" % te)
            if cl:
                raise ProtocolError("response has both Content-Length and Transfer-Encoding")
            r.framing = "chunked"
            self._read_chunked(r, deliver, timeout)
        elif cl:
            if len(set(cl)) != 1 or not re.match(r"^\d+$", cl[0]):
                raise ProtocolError("bad response Content-Length %r" % cl)
            r.framing = "length"
            self._read_exact(int(cl[0]), deliver, timeout)
        else:
            r.framing = "close"
            self._read_to_eof(deliver, timeout)
        if sink is None:
            r.body = b"".join(parts)
        return r

    def read_responses(self, n, heads=None, timeout=None):
        heads = heads or [False] * n
        return [self.read_response(head=heads[i], timeout=timeout) for i in range(n)]

    def _read_exact(self, n, deliver, timeout):
        left = n
        if self.buf:
            take = min(left, len(self.buf))
            deliver(memoryview(self.buf)[:take])
            del self.buf[:take]
            left -= take
        while left > 0:
            got = self._recv(timeout)
            if got == 0:
                raise ProtocolError("connection closed with %d of %d body bytes missing"
                                    % (left, n))
            take = min(got, left)
            deliver(self._rmv[:take])
            if got > take:
                self.buf += self._rmv[take:got]
            left -= take

    def _read_line(self, timeout, limit=64 * KiB):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise ProtocolError("chunk line too long")
            if not self._fill(timeout):
                raise ProtocolError("connection closed inside a chunked body")

    def _read_chunked(self, r, deliver, timeout):
        while True:
            line = self._read_line(timeout)
            m = re.match(rb"^([0-9A-Fa-f]{1,16})[ \t]*(;.*)?$", line)
            if not m:
                raise ProtocolError("bad chunk-size line %r" % line[:100])
            size = int(m.group(1), 16)
            if size == 0:
                break
            self._read_exact(size, deliver, timeout)
            if self._read_line(timeout) != b"":
                raise ProtocolError("chunk data not followed by CRLF")
        trailer_lines = []
        while True:
            line = self._read_line(timeout)
            if line == b"":
                break
            trailer_lines.append(line)
        r.trailers = _parse_fields(trailer_lines, "trailer")

    def _read_to_eof(self, deliver, timeout):
        if self.buf:
            deliver(memoryview(bytes(self.buf)))
            self.buf.clear()
        while True:
            got = self._recv(timeout)
            if got == 0:
                return
            deliver(self._rmv[:got])

    def wait_closed(self, timeout=5.0):
        """Waits (bounded) for the server to close. Returns True on EOF or
        reset; any bytes that arrive meanwhile are kept in .buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(left)
            except TimeoutError:
                return False
        return True


def request(port, method, target, headers=None, body=None, host="test", timeout=10.0,
            close=True, version="HTTP/1.1", chunks=None, trailers=None):
    """One request on a new connection (Connection: close unless close=False)."""
    headers = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if close and version == "HTTP/1.1" and not any(k.lower() == "connection" for k, _ in headers):
        headers.append(("Connection", "close"))
    c = RawClient(port, timeout=timeout)
    try:
        c.send(build_request(method, target, headers=headers, body=body, host=host,
                             version=version, chunks=chunks, trailers=trailers))
        return c.read_response(head=(method == "HEAD"))
    finally:
        c.close()


def get(port, target, **kw):
    return request(port, "GET", target, **kw)


# --------------------------------------------------------------------------
# test origin

class OriginRequest(Message):
    def __init__(self):
        super().__init__()
        self.method = None
        self.target = None
        self.version = None
        self.conn_id = None
        self.index_on_conn = None
        self.complete = False
        self.sink_result = None
        self.t_head = None  # monotonic time its head was parsed

    @property
    def path(self):
        return urllib.parse.urlsplit(self.target).path

    def __repr__(self):
        return "<OriginRequest %s %s %s conn=%s>" % (self.method, self.target, self.version,
                                                     self.conn_id)


class _ConnReader:
    def __init__(self, origin, sock):
        self.origin = origin
        self.sock = sock
        self.buf = bytearray()
        self._rbuf = bytearray(MiB)
        self._rmv = memoryview(self._rbuf)
        self.eof = False

    def recv(self):
        if self.eof:
            return 0
        try:
            n = self.sock.recv_into(self._rbuf)
        except (ConnectionResetError, OSError):
            n = 0
        if n == 0:
            self.eof = True
        else:
            with self.origin.lock:
                self.origin.bytes_received += n
        return n

    def fill(self):
        n = self.recv()
        if n:
            self.buf += self._rmv[:n]
        return n

    def read_until(self, sep, limit):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise ProtocolError("line or head over %d bytes" % limit)
            start = max(0, len(self.buf) - len(sep) + 1)
            if not self.fill():
                return None

    def read_exact(self, n, deliver):
        left = n
        if self.buf:
            take = min(left, len(self.buf))
            deliver(memoryview(self.buf)[:take])
            del self.buf[:take]
            left -= take
        while left > 0:
            got = self.recv()
            if got == 0:
                return False
            take = min(got, left)
            deliver(self._rmv[:take])
            if got > take:
                self.buf += self._rmv[take:got]
            left -= take
        return True


class Origin:
    """A threaded HTTP/1.1 origin on 127.0.0.1 (raw sockets).

    Counters: connections (accepted), heads (request heads parsed),
    requests (complete requests, a list of OriginRequest), bytes_received,
    bad (unparseable input), dropped (requests dropped on purpose).

    Handlers (by path; the query gives parameters):
      /ok                     200 "ok\\n"
      /delay?ms=N             200 after N ms
      /size?bytes=N           Content-Length body of N pattern bytes, streamed
      /chunked?bytes=N        chunked pattern body with extensions and a trailer
      /close-delimited?bytes=N  no Content-Length, no chunking, body ends at close
      /echo                   200 echoing the request body; X-Echo-Headers is a
                              JSON list of the request's [name, value] pairs
      /sink                   reads and counts the body (pattern-checked, not kept);
                              200 "bytes=N pattern=ok|mismatch@OFF"
      /hang                   reads the request, never answers
      /close-after            200 that looks keep-alive, then closes at once
      /status?code=N          that status
      /hop                    a 200 full of hop-by-hop response headers
      anything else           200 "hello from NAME\n"
    Every response carries X-Origin (the origin's name), X-Origin-Target and
    X-Origin-Conn (connection sequence number).

    drop_reused: close a connection, without answering, when a second
    request arrives on it (a keep-alive connection the origin timed out).

    Custom handlers: o.handle(path, fn) serves that exact path (query
    ignored) with fn(req) -> Reply, called on the connection's thread (it
    may block, bounded, e.g. to wait for the proxy's counters), or with a
    fixed Reply. They take precedence over the built-in paths. Use
    o.count(path, method) for per-path request counts."""

    def __init__(self, name="origin", port=None, drop_reused=False, max_body=64 * MiB):
        self.name = name
        self.drop_reused = drop_reused
        self.max_body = max_body
        self.lock = threading.Lock()
        self.connections = 0
        self.open_connections = 0
        self.heads = 0
        self.requests = []
        self.bytes_received = 0
        self.bad = 0
        self.dropped = 0
        self.errors = []
        self.handlers = {}
        self.reply_body_bytes = 0  # body bytes sent by custom handlers
        self._stop = threading.Event()
        self._conns = set()
        self._threads = []
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((LOOPBACK, port or 0))
        ls.listen(256)
        ls.settimeout(0.1)
        self.listener = ls
        self.port = ls.getsockname()[1]
        self.addr = addr(self.port)
        t = threading.Thread(target=self._accept_loop, name="origin-accept-%s" % name, daemon=True)
        t.start()
        self._threads.append(t)
        _register(self)

    # ---- observation

    @property
    def request_count(self):
        with self.lock:
            return len(self.requests)

    def snapshot(self):
        with self.lock:
            return {"connections": self.connections, "heads": self.heads,
                    "requests": len(self.requests), "bytes": self.bytes_received,
                    "bad": self.bad, "dropped": self.dropped}

    def wait_requests(self, n, timeout=10.0):
        wait_for(lambda: self.request_count >= n, timeout,
                 msg="origin %s to see %d requests (saw %d)" % (self.name, n, self.request_count))

    def last(self):
        with self.lock:
            assert self.requests, "origin %s saw no request" % self.name
            return self.requests[-1]

    def count(self, path=None, method=None):
        """Complete requests seen, only those for path (exact, no query)
        and/or method when given."""
        with self.lock:
            return sum(1 for r in self.requests
                       if (path is None or r.path == path)
                       and (method is None or r.method == method))

    def requests_for(self, path):
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def handle(self, path, fn):
        """Serves path with fn(req) -> Reply, or with a fixed Reply."""
        with self.lock:
            self.handlers[path] = fn
        return self

    def reset_counters(self):
        with self.lock:
            self.connections = 0
            self.heads = 0
            self.requests = []
            self.bytes_received = 0
            self.bad = 0
            self.dropped = 0

    # ---- lifecycle

    def stop(self):
        self._stop.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        for t in list(self._threads):
            t.join(timeout=2)

    def _cleanup(self):
        self.stop()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
                self.open_connections += 1
                cid = self.connections
                self._conns.add(s)
            t = threading.Thread(target=self._serve, args=(s, cid), daemon=True,
                                 name="origin-%s-%d" % (self.name, cid))
            t.start()
            with self.lock:
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)

    def _serve(self, s, cid):
        try:
            self._serve_conn(s, cid)
        except (ProtocolError, ValueError) as e:
            with self.lock:
                self.bad += 1
                self.errors.append("conn %d: %s" % (cid, e))
        except OSError:
            pass
        except Exception as e:  # a harness bug: keep it visible
            with self.lock:
                self.errors.append("conn %d: %r" % (cid, e))
        finally:
            with self.lock:
                self._conns.discard(s)
                self.open_connections -= 1
            try:
                s.close()
            except OSError:
                pass

    def _serve_conn(self, s, cid):
        rd = _ConnReader(self, s)
        index = 0
        while not self._stop.is_set():
            head = rd.read_until(b"\r\n\r\n", 1 * MiB)
            if head is None:
                if rd.buf.strip():
                    raise ProtocolError("connection closed inside a request head")
                return
            req = self._parse_head(head)
            req.t_head = time.monotonic()
            req.conn_id = cid
            req.index_on_conn = index
            with self.lock:
                self.heads += 1
            if self.drop_reused and index >= 1:
                with self.lock:
                    self.dropped += 1
                return
            path = req.path
            q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req.target).query))
            if req.header("Expect") and req.header("Expect").lower() == "100-continue":
                s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            # body
            if not self._read_body(rd, req, path):
                return  # closed mid-body: not a complete request
            req.complete = True
            with self.lock:
                self.requests.append(req)
            keep = self._respond(s, rd, req, path, q, cid)
            index += 1
            if not keep:
                return

    def _parse_head(self, head):
        lines = head.split(b"\r\n")
        while lines and lines[0] == b"":
            lines.pop(0)
        m = re.match(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/1\.[01])$", lines[0])
        if not m:
            raise ProtocolError("bad request line %r" % lines[0][:200])
        req = OriginRequest()
        req.raw_head = head + b"\r\n\r\n"
        req.method = m.group(1).decode()
        req.target = m.group(2).decode("latin-1")
        req.version = m.group(3).decode()
        req.headers = _parse_fields(lines[1:], "request")
        return req

    def _read_body(self, rd, req, path):
        sink = path == "/sink"
        parts = []
        checker = PatternChecker() if sink else None

        def deliver(mv):
            req.body_len += len(mv)
            if sink:
                checker.feed(mv)
            else:
                if req.body_len > self.max_body:
                    raise ProtocolError("request body over %d bytes on a storing handler"
                                        % self.max_body)
                parts.append(bytes(mv))

        te = req.header("Transfer-Encoding")
        cl = req.get_all("Content-Length")
        if te is not None:
            if te.split(",")[-1].strip().lower() != "chunked" or cl:
                raise ProtocolError("bad request framing TE=%r CL=%r" % (te, cl))
            req.framing = "chunked"
            while True:
                line = rd.read_until(b"\r\n", 64 * KiB)
                if line is None:
                    return False
                m = re.match(rb"^([0-9A-Fa-f]{1,16})[ \t]*(;.*)?$", line)
                if not m:
                    raise ProtocolError("bad chunk-size line %r" % line[:100])
                size = int(m.group(1), 16)
                if size == 0:
                    break
                if not rd.read_exact(size, deliver):
                    return False
                crlf = rd.read_until(b"\r\n", 2)
                if crlf is None:
                    return False
                if crlf != b"":
                    raise ProtocolError("chunk data not followed by CRLF")
            tl = []
            while True:
                line = rd.read_until(b"\r\n", 64 * KiB)
                if line is None:
                    return False
                if line == b"":
                    break
                tl.append(line)
            req.trailers = _parse_fields(tl, "request trailer")
        elif cl:
            if len(set(cl)) != 1 or not re.match(r"^\d+$", cl[0]):
                raise ProtocolError("bad request Content-Length %r" % cl)
            req.framing = "length"
            if not rd.read_exact(int(cl[0]), deliver):
                return False
        else:
            req.framing = "none"
        if sink:
            ok = checker.finish()
            req.sink_result = "bytes=%d pattern=%s" % (
                req.body_len, "ok" if ok else "mismatch@%d" % checker.bad_at)
        else:
            req.body = b"".join(parts)
        return True

    # ---- responses

    def _head_bytes(self, status, reason, headers, req, cid):
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
        lines.append("X-Origin: %s" % self.name)
        lines.append("X-Origin-Target: %s" % req.target)
        lines.append("X-Origin-Conn: %d" % cid)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _respond(self, s, rd, req, path, q, cid):
        """Writes the response; returns True to keep the connection."""
        conn_tokens = [t.strip().lower() for t in (req.header("Connection") or "").split(",")]
        if req.version == "HTTP/1.0":
            keep = "keep-alive" in conn_tokens
        else:
            keep = "close" not in conn_tokens
        is_head = req.method == "HEAD"
        extra = [] if keep else [("Connection", "close")]

        def num(key, default):
            try:
                return int(q.get(key, default))
            except ValueError:
                return default

        def simple(status, reason, body, headers=()):
            h = list(headers) + [("Content-Length", str(len(body)))] + extra
            s.sendall(self._head_bytes(status, reason, h, req, cid) + (b"" if is_head else body))

        with self.lock:
            custom = self.handlers.get(path)
        if custom is not None:
            reply = custom(req) if callable(custom) else custom
            return self._send_reply(s, req, reply, keep, cid)

        if path == "/ok":
            simple(200, "OK", b"ok\n", [("Content-Type", "text/plain")])
        elif path == "/delay":
            self._stop.wait(num("ms", 100) / 1000.0)
            simple(200, "OK", b"delayed\n")
        elif path == "/size":
            n = num("bytes", 0)
            s.sendall(self._head_bytes(200, "OK", [("Content-Length", str(n))] + extra, req, cid))
            if not is_head:
                for piece in pattern_pieces(n):
                    s.sendall(piece)
        elif path == "/chunked":
            n = num("bytes", 0)
            trailer = q.get("trailer", "1") != "0"
            h = [("Transfer-Encoding", "chunked")] + extra
            if trailer:
                h.append(("Trailer", "X-Trailer"))
            s.sendall(self._head_bytes(200, "OK", h, req, cid))
            if not is_head:
                sizes = [1, 7, 100, 1000, 4096, 65536, 3]
                off = 0
                i = 0
                while off < n:
                    k = min(sizes[i % len(sizes)], n - off)
                    ext = b";ext=%d" % i if i % 3 == 1 else b""
                    s.sendall(b"%x%s\r\n" % (k, ext) + pattern(off, k) + b"\r\n")
                    off += k
                    i += 1
                s.sendall(b"0\r\n" + (b"X-Trailer: yes\r\n" if trailer else b"") + b"\r\n")
        elif path == "/close-delimited":
            n = num("bytes", 0)
            s.sendall(self._head_bytes(200, "OK", [("Content-Type", "application/octet-stream")],
                                       req, cid))
            if not is_head:
                for piece in pattern_pieces(n):
                    s.sendall(piece)
            s.shutdown(socket.SHUT_WR)
            return False
        elif path == "/echo":
            hj = json.dumps([[k, v] for k, v in req.headers])
            simple(200, "OK", req.body, [("X-Echo-Headers", hj),
                                         ("X-Echo-Method", req.method),
                                         ("X-Echo-Framing", req.framing)])
        elif path == "/sink":
            simple(200, "OK", req.sink_result.encode())
        elif path == "/hang":
            # Never answer; return when the peer closes or the origin stops.
            while not self._stop.wait(0.05):
                try:
                    d = s.recv(65536, socket.MSG_DONTWAIT | socket.MSG_PEEK)
                    if d == b"":
                        return False
                    s.recv(len(d))
                except BlockingIOError:
                    pass
                except OSError:
                    return False
            return False
        elif path == "/close-after":
            simple(200, "OK", b"closing\n")
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        elif path == "/status":
            code = num("code", 200)
            if code in (204, 304) or 100 <= code < 200:
                s.sendall(self._head_bytes(code, "Status", extra, req, cid))
            else:
                simple(code, "Status", b"status %d\n" % code)
        elif path == "/hop":
            body = b"hop\n"
            h = [("Connection", "X-Resp-Drop, keep-alive" if keep else "X-Resp-Drop, close"),
                 ("X-Resp-Drop", "1"),
                 ("Keep-Alive", "timeout=5, max=100"),
                 ("Trailer", "X-Never"),
                 ("Upgrade", "h2c"),
                 ("Proxy-Authenticate", "Basic realm=\"x\""),
                 ("Proxy-Foo", "bar"),
                 ("Via", "1.1 origin"),
                 ("X-Resp-Keep", "yes"),
                 ("Content-Length", str(len(body)))]
            s.sendall(self._head_bytes(200, "OK", h, req, cid) + (b"" if is_head else body))
        else:
            simple(200, "OK", ("hello from %s\n" % self.name).encode())
        return keep


    def _send_reply(self, s, req, rp, keep, cid):
        """Writes a custom handler's Reply; returns True to keep the connection."""
        if isinstance(rp, tuple):
            rp = Reply(*rp)
        if rp.delay and self._stop.wait(rp.delay):
            return False
        if rp.drop:
            with self.lock:
                self.dropped += 1
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        keep = keep and not rp.close
        status = rp.status
        bodiless = (req.method == "HEAD" or status in (204, 304) or 100 <= status < 200)
        n = len(rp.body) if rp.size is None else rp.size
        headers = list(rp.headers)
        names = {k.lower() for k, _ in headers}
        if rp.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        elif status not in (204, 304) and not 100 <= status < 200 and "content-length" not in names:
            headers.append(("Content-Length", str(n)))
        if not keep:
            headers.append(("Connection", "close"))
        reason = rp.reason or _REASONS.get(status, "Status")
        s.sendall(self._head_bytes(status, reason, headers, req, cid))
        rp.started_at = time.monotonic()
        if bodiless:
            rp.finished_at = rp.started_at
            return keep
        limit = n if rp.cut_at is None else min(n, rp.cut_at)
        body = memoryview(rp.body) if rp.size is None else None
        ext = memoryview(_PATTERN_EXT)
        sent = 0
        t0 = time.monotonic()
        while sent < limit:
            k = min(rp.piece, limit - sent, MiB)
            if body is not None:
                data = body[sent:sent + k]
            else:
                data = ext[sent % 256:sent % 256 + k]
            if rp.chunked:
                s.sendall(b"%x\r\n" % k)
                s.sendall(data)
                s.sendall(b"\r\n")
            else:
                s.sendall(data)
            sent += k
            rp.sent = sent
            with self.lock:
                self.reply_body_bytes += k
            if rp.rate:
                wait = t0 + sent / float(rp.rate) - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return False
        if rp.cut_at is not None and rp.cut_at < n:
            if rp.before_cut is not None:
                rp.before_cut()
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        if rp.chunked:
            s.sendall(b"0\r\n\r\n")
        rp.finished_at = time.monotonic()
        return keep


_REASONS = {200: "OK", 203: "Non-Authoritative Information", 204: "No Content",
            206: "Partial Content", 301: "Moved Permanently", 304: "Not Modified",
            404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


class TlsOrigin(Origin):
    """An Origin behind TLS: each accepted socket is wrapped (handshake
    bounded by handshake_timeout) before the usual HTTP serving.

    certfile/keyfile: the server's certificate (chain) and key;
    client_ca: when given, a client certificate signed by it is required.
    Records, under the lock: server_names (SNI per handshake, None when
    none was sent), resumed (per handshake: session reused), peer_subjects
    (client certificate subject dicts, or None), handshake_errors (text of
    failed handshakes; their connections are still counted)."""

    def __init__(self, name="tls-origin", certfile=None, keyfile=None, client_ca=None,
                 handshake_timeout=5.0, **kw):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        if client_ca is not None:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.sni_callback = self._on_sni
        self.ctx = ctx
        self.handshake_timeout = handshake_timeout
        self.server_names = []
        self.resumed = []
        self.peer_subjects = []
        self.handshake_errors = []
        self._sni = threading.local()
        super().__init__(name, **kw)

    def _on_sni(self, sslobj, server_name, ctx):
        self._sni.name = server_name

    def handshakes(self):
        with self.lock:
            return len(self.resumed)

    def _serve(self, s, cid):
        self._sni.name = None
        s.settimeout(self.handshake_timeout)
        try:
            ss = self.ctx.wrap_socket(s, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.handshake_errors.append(str(e))
                self._conns.discard(s)
                self.open_connections -= 1
            try:
                s.close()
            except OSError:
                pass
            return
        ss.settimeout(None)
        cert = ss.getpeercert()
        subject = None
        if cert:
            subject = {k: v for rdn in cert.get("subject", ()) for (k, v) in rdn}
        with self.lock:
            self.server_names.append(self._sni.name)
            self.resumed.append(ss.session_reused)
            self.peer_subjects.append(subject)
            self._conns.discard(s)
            self._conns.add(ss)
        super()._serve(ss, cid)


class Reply:
    """What a custom origin handler (Origin.handle) answers.

    status, headers (list of (name, value); Content-Length is added unless
    given, chunked, or the status has no body), reason; body (bytes) or
    size (that many pattern bytes, streamed without a big allocation);
    delay: seconds before the head; rate: body bytes per second (paced,
    in pieces of piece bytes); chunked: chunked framing; cut_at: close the
    connection after that many body bytes (the advertised length stays),
    calling before_cut() first; drop: close without answering; close:
    Connection: close. After sending, started_at / finished_at (monotonic)
    and sent (body bytes) are set on the Reply."""

    def __init__(self, status=200, headers=(), body=b"", size=None, delay=0.0, rate=None,
                 piece=64 * KiB, chunked=False, cut_at=None, before_cut=None, drop=False,
                 close=False, reason=None):
        self.status = status
        self.headers = list(headers)
        self.body = body
        self.size = size
        self.delay = delay
        self.rate = rate
        self.piece = piece
        self.chunked = chunked
        self.cut_at = cut_at
        self.before_cut = before_cut
        self.drop = drop
        self.close = close
        self.reason = reason
        self.started_at = None
        self.finished_at = None
        self.sent = 0


def run_parallel(n, fn, timeout):
    """Runs fn(i) for i in range(n) in n threads released together by a
    barrier; returns the list of results, an exception standing for a call
    that raised. AssertionError when some are still running after timeout
    seconds (the threads are daemons: they die with the test process)."""
    results = [None] * n
    barrier = threading.Barrier(n + 1)

    def run(i):
        try:
            barrier.wait(timeout)
        except threading.BrokenBarrierError as e:
            results[i] = e
            return
        try:
            results[i] = fn(i)
        except BaseException as e:  # noqa: B902 - reported to the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,), daemon=True, name="par-%d" % i)
               for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait(timeout)
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = sum(1 for t in threads if t.is_alive())
    if alive:
        raise AssertionError("%d of %d parallel calls still running after %.1fs"
                             % (alive, n, timeout))
    return results


def concurrent_requests(port, n, target, method="GET", headers=None, timeout=30.0,
                        host="test", keep_body=True, on_body=None):
    """n clients connect first, then each sends one request at the same
    moment (a barrier) and reads the response, on its own thread.

    Returns a list with, per client, a Response or the exception it got.
    Each Response (and each exception) carries t_sent, t_first (first body
    byte, None without one) and t_done, monotonic times. keep_body=False
    keeps no body (on_body(i, memoryview) still sees it, e.g. to checksum
    it). timeout bounds every wait and the whole run."""
    clients = [RawClient(port, timeout=timeout) for _ in range(n)]
    raw = build_request(method, target, headers=headers, host=host)

    def one(i):
        c = clients[i]
        st = {"first": None}
        parts = []

        def sink(mv):
            if st["first"] is None:
                st["first"] = time.monotonic()
            if on_body is not None:
                on_body(i, mv)
            if keep_body:
                parts.append(bytes(mv))

        t_sent = time.monotonic()
        try:
            c.send(raw)
            r = c.read_response(head=(method == "HEAD"), sink=sink)
            r.body = b"".join(parts)
        except Exception as e:
            e.t_sent, e.t_first, e.t_done = t_sent, st["first"], time.monotonic()
            e.body_len = sum(len(x) for x in parts)
            return e
        finally:
            c.close()
        r.t_sent, r.t_first, r.t_done = t_sent, st["first"], time.monotonic()
        return r

    return run_parallel(n, one, timeout)


# --------------------------------------------------------------------------
# load generator

class LoadGen:
    """Threads doing keep-alive GETs with http.client until stopped.

    Bounded: each thread stops after max_requests or max_seconds. A request
    that fails on a reused connection before any response byte (the server
    closed an idle keep-alive connection: RemoteDisconnected, reset, broken
    pipe) is retried once on a new connection, as HTTP clients do for
    idempotent requests; that counts as a reconnect, not a failure. Anything
    else (an error on a fresh connection, a retry failing, a status other
    than 200, a wrong body) is a failure."""

    def __init__(self, port, path="/ok", threads=8, max_requests=5000, max_seconds=15.0,
                 expect_body=None, host="test"):
        self.port = port
        self.path = path
        self.nthreads = threads
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.expect_body = expect_body
        self.host = host
        self.lock = threading.Lock()
        self.done = 0
        self.failures = []
        self.failed = 0
        self.reconnects = 0
        self.by_origin = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True, name="load-%d" % i)
                         for i in range(threads)]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.max_seconds + 10)

    def _fail(self, msg):
        with self.lock:
            self.failed += 1
            if len(self.failures) < 10:
                self.failures.append(msg)

    def _one(self, conn):
        conn.request("GET", self.path, headers={"Host": self.host})
        r = conn.getresponse()
        body = r.read()
        return r.status, body, r.getheader("X-Origin")

    def _run(self):
        import http.client
        deadline = time.monotonic() + self.max_seconds
        conn = None
        fresh = True
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() >= deadline:
                break
            if conn is None:
                conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
                fresh = True
            try:
                res = self._one(conn)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                conn = None
                if fresh:
                    self._fail("fresh connection: %r" % e)
                    continue
                with self.lock:
                    self.reconnects += 1
                conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
                fresh = True
                try:
                    res = self._one(conn)
                except Exception as e2:
                    self._fail("retry on a new connection: %r" % e2)
                    conn.close()
                    conn = None
                    continue
            except Exception as e:
                self._fail("%r" % e)
                conn.close()
                conn = None
                continue
            fresh = False
            status, body, origin = res
            if status != 200 or (self.expect_body is not None and body != self.expect_body):
                self._fail("status %d body %r" % (status, body[:100]))
            else:
                with self.lock:
                    self.done += 1
                    self.by_origin[origin] = self.by_origin.get(origin, 0) + 1
            if conn is not None and conn.sock is None:
                conn = None  # the server said Connection: close
        if conn is not None:
            conn.close()

    def summary(self):
        return "%d ok, %d failed, %d reconnects, by origin %s" % (
            self.done, self.failed, self.reconnects, self.by_origin)


# --------------------------------------------------------------------------
# shared cache tiers: redis-server and memcached processes

REDIS_SERVER = os.environ.get("TC_REDIS_SERVER") or "/usr/bin/redis-server"
MEMCACHED = os.environ.get("TC_MEMCACHED") or "/usr/bin/memcached"


class _ServerProcess:
    """A helper server process on a fixed loopback port (the base of
    RedisServer and Memcached).

    start() waits (bounded) until ready() says the server answers; stop()
    is SIGTERM then, after a bounded wait, SIGKILL; kill() is SIGKILL;
    pause()/resume() are SIGSTOP/SIGCONT (a stalled server: connections are
    accepted by the kernel, nothing is answered); restart() starts it again
    on the same port. The port is chosen at construction, so a test can
    point tailcache at a server that is not started yet. Output goes to
    self.log_path. Registered for cleanup_all()."""

    exe = None
    kind = "server"
    package = None

    def __init__(self, port=None, name=None):
        self.port = port or free_port()
        self.name = name or self.kind
        self.dir = new_dir(self.name)
        self.log_path = os.path.join(self.dir, "log")
        self.proc = None
        self.paused = False
        self.starts = 0
        _register(self)

    @property
    def addr(self):
        return addr(self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def command(self):
        raise NotImplementedError

    def ready(self):
        """True when the server answers a trivial command right now."""
        raise NotImplementedError

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        assert not self.alive(), "%s is already running (pid %d)" % (self.name, self.proc.pid)
        if not os.access(self.exe, os.X_OK):
            raise AssertionError("%s not found at %s (apt-get install %s)"
                                 % (self.kind, self.exe, self.package))
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         preexec_fn=_child_setup)
        finally:
            log.close()
        self.paused = False
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("%s exited with status %s during start-up:\n%s"
                                     % (self.name, rc, tail(self.log_path)))
            if self.ready():
                return self
            if time.monotonic() >= deadline:
                raise AssertionError("%s did not answer on port %d within %.0fs:\n%s"
                                     % (self.name, self.port, timeout, tail(self.log_path)))
            time.sleep(0.02)

    def stop(self, timeout=5.0):
        """SIGTERM (after SIGCONT if paused), a bounded wait, then SIGKILL.
        Returns the exit status (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.resume()
            try:
                self.proc.terminate()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill(self):
        """SIGKILL, and reaps it: the port refuses connections afterwards."""
        assert self.alive(), "%s is not running" % self.name
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.paused = False

    def pause(self):
        """SIGSTOP: the server stalls (the kernel still completes handshakes)."""
        assert self.alive(), "%s is not running" % self.name
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        """SIGCONT (a no-op unless paused)."""
        if self.paused and self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def restart(self, timeout=10.0):
        """Stops it if running, then starts it again on the same port."""
        if self.alive():
            self.stop()
        return self.start(timeout=timeout)

    def _cleanup(self):
        self.stop()

    def _connect(self, timeout):
        s = socket.create_connection((LOOPBACK, self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


class RedisError(Exception):
    """An error reply from Redis (-ERR ...)."""


def _resp_command(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, (int, float)):
            b = str(a).encode()
        else:
            b = str(a).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _RespReader:
    """Reads RESP2 replies from a socket (bounded by its timeout)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        try:
            d = self.sock.recv(256 * KiB)
        except socket.timeout:
            raise TimeoutError("no answer from redis")
        if not d:
            raise ConnectionError("redis closed the connection")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n + 2]
        return data

    def reply(self):
        """One reply: str (+simple), int (:), bytes or None ($), list or
        None (*); an error reply (-) is returned as a RedisError instance."""
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode("utf-8", "replace")
        if t == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ProtocolError("bad RESP reply line %r" % line[:100])


class RedisServer(_ServerProcess):
    """Debian's redis-server on a free loopback port, without persistence
    (--save '' --appendonly no: a restart comes back empty), optionally with
    requirepass.

    cmd("KEYS", "tc:*") speaks RESP on a new connection (AUTH first when a
    password is set) and returns the reply: str for a status, int, bytes
    for a bulk string, None for nil, a list for an array; an error reply
    raises RedisError. cmds([...]) runs several commands on one connection
    and returns their replies, errors as RedisError values. Every call is
    bounded by timeout (seconds): a paused server raises TimeoutError."""

    exe = REDIS_SERVER
    kind = "redis"
    package = "redis-server"

    def __init__(self, port=None, password=None, name=None, extra_args=()):
        super().__init__(port=port, name=name)
        self.password = password
        self.extra_args = list(extra_args)

    def command(self):
        cmd = [self.exe, "--port", str(self.port), "--bind", LOOPBACK, "--save", "",
               "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
               "--logfile", "", "--loglevel", "notice"]
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        return cmd + self.extra_args

    def ready(self):
        return self.ping(timeout=0.5)

    def ping(self, timeout=1.0):
        try:
            return self.cmd("PING", timeout=timeout) == "PONG"
        except (OSError, RedisError, ProtocolError, ValueError):
            return False

    def cmds(self, commands, timeout=2.0):
        """Runs each command (a list of arguments) on one connection;
        returns the replies in order, error replies as RedisError values."""
        s = self._connect(timeout)
        try:
            rd = _RespReader(s)
            if self.password is not None:
                s.sendall(_resp_command(["AUTH", self.password]))
                r = rd.reply()
                if isinstance(r, RedisError):
                    raise r
            s.sendall(b"".join(_resp_command(c) for c in commands))
            return [rd.reply() for _ in commands]
        finally:
            s.close()

    def cmd(self, *args, timeout=2.0):
        r = self.cmds([args], timeout=timeout)[0]
        if isinstance(r, RedisError):
            raise r
        return r

    def keys(self, pattern="*", timeout=2.0):
        """Sorted key names (bytes) matching pattern (KEYS: test use only)."""
        return sorted(self.cmd("KEYS", pattern, timeout=timeout))

    def dbsize(self):
        return self.cmd("DBSIZE")

    def flushall(self):
        return self.cmd("FLUSHALL")

    def find(self, needle, pattern="*", timeout=5.0):
        """Keys matching pattern whose name or string value contains needle
        (bytes or str); keys of other types are looked at by name only."""
        if isinstance(needle, str):
            needle = needle.encode("utf-8")
        names = self.keys(pattern, timeout=timeout)
        if not names:
            return []
        vals = self.cmds([["GET", k] for k in names], timeout=timeout)
        return [k for k, v in zip(names, vals)
                if needle in k or (isinstance(v, bytes) and needle in v)]

    def subscribe(self, channel, timeout=5.0):
        """A RedisSubscriber collecting the messages published on channel."""
        return RedisSubscriber(self, channel, timeout=timeout)


class RedisSubscriber:
    """SUBSCRIBEs to one channel on its own connection and thread; every
    message's payload (bytes) is appended to .messages with its monotonic
    arrival time in .times (at most max_messages kept). stop() closes it.
    Registered for cleanup_all()."""

    def __init__(self, redis, channel, timeout=5.0, max_messages=10000):
        self.channel = channel
        self.messages = []
        self.times = []
        self.max_messages = max_messages
        self.error = None
        self._stop = threading.Event()
        self.sock = redis._connect(timeout)
        rd = _RespReader(self.sock)
        if redis.password is not None:
            self.sock.sendall(_resp_command(["AUTH", redis.password]))
            r = rd.reply()
            if isinstance(r, RedisError):
                raise r
        self.sock.sendall(_resp_command(["SUBSCRIBE", channel]))
        r = rd.reply()
        if not (isinstance(r, list) and r and r[0] == b"subscribe"):
            raise ProtocolError("SUBSCRIBE answered %r" % (r,))
        self._rd = rd
        self.sock.settimeout(0.2)
        self._t = threading.Thread(target=self._run, daemon=True, name="redis-sub")
        self._t.start()
        _register(self)

    def _run(self):
        while not self._stop.is_set():
            try:
                r = self._rd.reply()
            except TimeoutError:
                continue
            except Exception as e:  # the server went away: keep what we have
                self.error = e
                return
            if isinstance(r, list) and len(r) == 3 and r[0] == b"message":
                if len(self.messages) < self.max_messages:
                    self.messages.append(r[2])
                    self.times.append(time.monotonic())

    def wait_messages(self, n, timeout=5.0):
        wait_for(lambda: len(self.messages) >= n, timeout,
                 msg="%d messages on redis channel %s (have %d)"
                 % (n, self.channel, len(self.messages)))
        return self.messages

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._t.join(timeout=2)

    def _cleanup(self):
        self.stop()


class Memcached(_ServerProcess):
    """Debian's memcached on a free loopback port (-l 127.0.0.1 -U 0 -u root
    -m MB). stats() returns the text protocol's "stats" as a dict (numbers
    as int); keys() lists the live keys (lru_crawler metadump), get(key)
    reads one value, find(needle) the keys whose name or value contains
    needle. Every call opens its own connection, bounded by timeout."""

    exe = MEMCACHED
    kind = "memcached"
    package = "memcached"

    def __init__(self, port=None, memory_mb=64, name=None, extra_args=()):
        super().__init__(port=port, name=name)
        self.memory_mb = memory_mb
        self.extra_args = list(extra_args)

    def command(self):
        return [self.exe, "-l", LOOPBACK, "-p", str(self.port), "-U", "0", "-u", "root",
                "-m", str(self.memory_mb)] + self.extra_args

    def ready(self):
        try:
            return "pid" in self.stats(timeout=0.5)
        except (OSError, ProtocolError, ValueError):
            return False

    def _text(self, line, end=b"END\r\n", timeout=2.0):
        """Sends one text-protocol command line and reads until a line
        equal to end; returns the bytes before it. An error line (ERROR,
        CLIENT_ERROR, SERVER_ERROR, BUSY) as the first line raises
        ProtocolError."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        s = self._connect(timeout)
        try:
            s.sendall(line + b"\r\n")
            buf = bytearray()
            while True:
                nl = buf.find(b"\r\n")
                if nl >= 0:
                    first = bytes(buf[:nl])
                    if first.split(b" ")[0] in (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR",
                                                  b"BUSY"):
                        raise ProtocolError("memcached answered %r to %r" % (first[:200],
                                                                             line[:100]))
                    # metadump ends its lines with a bare LF
                    if buf == end or buf.endswith(b"\n" + end):
                        return bytes(buf[:-len(end)])
                try:
                    d = s.recv(256 * KiB)
                except socket.timeout:
                    raise TimeoutError("no answer from memcached to %r" % line[:100])
                if not d:
                    raise ConnectionError("memcached closed the connection")
                buf += d
        finally:
            s.close()

    def stats(self, timeout=2.0):
        out = {}
        for line in self._text("stats", timeout=timeout).decode("latin-1").splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                v = parts[2]
                try:
                    out[parts[1]] = int(v)
                except ValueError:
                    out[parts[1]] = v
        return out

    def curr_items(self):
        return self.stats()["curr_items"]

    def _metadump(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self._text("lru_crawler metadump all", timeout=timeout)
                break
            except ProtocolError as e:
                # BUSY: a crawl is running; try again, bounded.
                if "BUSY" not in str(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)
        out = set()
        for line in text.split(b"\n"):
            line = line.rstrip(b"\r")
            if line.startswith(b"key="):
                k = line.split(b" ", 1)[0][4:]
                out.add(urllib.parse.unquote_to_bytes(k))
        return out

    def keys(self, timeout=5.0, settle=2.0):
        """Names (bytes) of the live items, from lru_crawler metadump.

        One crawl can miss items that a get just moved between the
        segmented LRU's queues, so crawls are repeated (20 ms apart, for
        at most settle seconds) until they have seen curr_items keys."""
        want = self.curr_items()
        seen = self._metadump(timeout)
        deadline = time.monotonic() + settle
        while len(seen) < want and time.monotonic() < deadline:
            time.sleep(0.02)
            seen |= self._metadump(timeout)
        return sorted(seen)

    def get(self, key, timeout=2.0):
        """The value of key (bytes), or None."""
        if isinstance(key, str):
            key = key.encode("utf-8")
        s = self._connect(timeout)
        try:
            s.sendall(b"get " + key + b"\r\n")
            buf = bytearray()

            def need(n):
                while len(buf) < n:
                    try:
                        d = s.recv(256 * KiB)
                    except socket.timeout:
                        raise TimeoutError("no answer from memcached to get")
                    if not d:
                        raise ConnectionError("memcached closed the connection")
                    buf.extend(d)
            while b"\r\n" not in buf:
                need(len(buf) + 1)
            head = bytes(buf[:buf.index(b"\r\n")])
            if head == b"END":
                return None
            parts = head.split()
            if len(parts) < 4 or parts[0] != b"VALUE":
                raise ProtocolError("memcached answered %r to get" % head[:200])
            n = int(parts[3])
            off = len(head) + 2
            need(off + n + 2 + 5)
            return bytes(buf[off:off + n])
        finally:
            s.close()

    def find(self, needle, timeout=5.0):
        """Keys whose name or value contains needle (bytes or str)."""
        if isinstance(needle, str):
            needle = needle.encode("utf-8")
        found = []
        for k in self.keys(timeout=timeout):
            if needle in k:
                found.append(k)
                continue
            v = self.get(k, timeout=timeout)
            if v is not None and needle in v:
                found.append(k)
        return found

    def flush_all(self):
        return self._text("flush_all", end=b"OK\r\n")


# --------------------------------------------------------------------------
# load generator with per-request latency (RawClient, keep-alive)

class LoadGenerator:
    """threads threads issue GETs over keep-alive RawClient connections
    until stop(), max_seconds or max_requests (in total), whichever comes
    first; every request is recorded.

    targets: a list of request targets, each thread picking from it at
    random (random.Random(seed + thread)), or a callable(rng) -> target.
    check(target, response) may return an error message for a response
    that is wrong in a way the status does not show (a body for another
    target, a short body).

    Recorded per request (self.records, in completion order): (t_start,
    latency, status or None, Cache-Status or the error text). A failure is
    an exception (after the retry below), a status outside 2xx, or a check
    message; failed counts them and failures keeps the first 20 messages.
    Like any HTTP client, a request that finds its reused connection closed
    before any response byte is retried once on a new connection (counted
    in reconnects, latency from the first send); anything else fails.
    timeout bounds every wait for the server."""

    def __init__(self, port, targets, threads=8, max_seconds=8.0, max_requests=200000,
                 host="test", headers=None, timeout=5.0, check=None, seed=1):
        self.port = port
        self.targets = targets
        self.nthreads = threads
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.host = host
        self.headers = list(headers or [])
        self.timeout = timeout
        self.check = check
        self.seed = seed
        self.lock = threading.Lock()
        self.records = []
        self.failures = []
        self.failed = 0
        self.done = 0
        self.reconnects = 0
        self.issued = 0
        self.t_start = None
        self.t_end = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True,
                                          name="loadgen-%d" % i) for i in range(threads)]
        _register(self)

    def start(self):
        self.t_start = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def running(self):
        return any(t.is_alive() for t in self._threads)

    def stop(self, timeout=None):
        """Stops issuing requests and waits (bounded) for the ones in flight."""
        self._stop.set()
        self.join(timeout)

    def join(self, timeout=None):
        """Waits for the threads to end (bounded: max_seconds + request timeout + margin)."""
        bound = timeout if timeout is not None else self.max_seconds + self.timeout + 10
        deadline = time.monotonic() + bound
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.running():
            raise AssertionError("load generator threads still running after %.1fs" % bound)
        if self.t_end is None:
            self.t_end = time.monotonic()

    def _fail(self, msg):
        with self.lock:
            self.failed += 1
            if len(self.failures) < 20:
                self.failures.append("%.3fs: %s" % (time.monotonic() - self.t_start, msg))

    def _pick(self, rng):
        if callable(self.targets):
            return self.targets(rng)
        return self.targets[rng.randrange(len(self.targets))]

    def _take(self):
        with self.lock:
            if self.issued >= self.max_requests:
                return False
            self.issued += 1
            return True

    def _run(self, i):
        import random
        rng = random.Random(self.seed * 1000 + i)
        deadline = self.t_start + self.max_seconds
        c = None
        while not self._stop.is_set() and time.monotonic() < deadline and self._take():
            target = self._pick(rng)
            raw = build_request("GET", target, headers=self.headers, host=self.host)
            t0 = time.monotonic()
            r = None
            err = None
            for attempt in (0, 1):
                fresh = c is None
                try:
                    if c is None:
                        c = RawClient(self.port, timeout=self.timeout)
                    c.send(raw)
                    r = c.read_response()
                    break
                except (ConnectionError, BrokenPipeError) as e:
                    got_nothing = not getattr(c, "buf", None)
                    if c is not None:
                        c.close()
                    c = None
                    if fresh or attempt == 1 or not got_nothing:
                        err = "%s%r" % ("" if fresh else "retry: " if attempt else "", e)
                        break
                    with self.lock:
                        self.reconnects += 1
                except Exception as e:
                    if c is not None:
                        c.close()
                    c = None
                    err = "%r" % e
                    break
            lat = time.monotonic() - t0
            if r is None:
                self._fail("GET %s: %s after %.3fs" % (target, err, lat))
                with self.lock:
                    self.records.append((t0, lat, None, err))
                continue
            msg = None
            if not 200 <= r.status < 300:
                msg = "GET %s: status %d %r" % (target, r.status, r.body[:100])
            elif self.check is not None:
                m = self.check(target, r)
                if m:
                    msg = "GET %s: %s" % (target, m)
            cs = r.header("Cache-Status") or ""
            with self.lock:
                self.records.append((t0, lat, r.status, cs))
                if msg is None:
                    self.done += 1
            if msg is not None:
                self._fail(msg)
            if c is not None and (c.eof or (r.header("Connection") or "").lower() == "close"):
                c.close()
                c = None
        if c is not None:
            c.close()

    # ---- results

    def latencies(self, t0=None, t1=None):
        """Sorted latencies of the requests started in [t0, t1) (all by default)."""
        with self.lock:
            recs = list(self.records)
        return sorted(lat for ts, lat, _, _ in recs
                      if (t0 is None or ts >= t0) and (t1 is None or ts < t1))

    def percentile(self, p, t0=None, t1=None):
        v = self.latencies(t0, t1)
        if not v:
            return None
        k = max(0, min(len(v) - 1, int(math.ceil(p / 100.0 * len(v))) - 1))
        return v[k]

    def p99(self, t0=None, t1=None):
        return self.percentile(99, t0, t1)

    def max_latency(self, t0=None, t1=None):
        v = self.latencies(t0, t1)
        return v[-1] if v else None

    def count(self, pred=None, t0=None, t1=None):
        """Requests started in [t0, t1) whose record satisfies pred(record)."""
        with self.lock:
            recs = list(self.records)
        return sum(1 for rec in recs if (t0 is None or rec[0] >= t0)
                   and (t1 is None or rec[0] < t1) and (pred is None or pred(rec)))

    def count_status(self, fragment, t0=None, t1=None):
        """Successful requests in [t0, t1) whose Cache-Status contains fragment."""
        return self.count(lambda rec: rec[2] is not None and fragment in rec[3], t0, t1)

    def summary(self):
        n = len(self.records)
        mx = self.max_latency()
        p99 = self.p99()
        p50 = self.percentile(50)
        span = (self.t_end or time.monotonic()) - (self.t_start or time.monotonic())
        return ("%d requests in %.1fs (%d ok, %d failed, %d reconnects), latency p50 %s "
                "p99 %s max %s" % (n, span, self.done, self.failed, self.reconnects,
                                   _ms(p50), _ms(p99), _ms(mx)))


def _ms(x):
    return "-" if x is None else "%.1fms" % (x * 1000)


# --------------------------------------------------------------------------
# headless browser

def _browser_setup():
    # Its own process group, so that cleanup kills the browser's renderers
    # and zygotes with it; and it dies with the test like the others.
    os.setsid()
    _child_setup()


class Chromium:
    """Headless Chromium (Debian's chromium package) to load pages the admin
    listener serves, as a person's browser would.

    dump_dom(url) returns the DOM after the page ran for budget_ms of
    virtual time (timers, such as a page's polling, fire as fast as the
    page's fetches complete); screenshot(url, path) saves a PNG. Each call
    runs one browser with a fresh profile under the test dir, bounded by
    timeout, in its own process group that is killed whole afterwards.
    The crash handlers it starts leave that group, so they are found by
    their command line, which names this object's private directory.
    Nothing reaches past loopback: no sync, updates or background traffic.
    Registered for cleanup_all()."""

    FLAGS = ["--headless=new", "--disable-gpu", "--no-sandbox",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-default-apps",
             "--disable-extensions", "--hide-scrollbars", "--mute-audio"]

    def __init__(self, name="chromium"):
        self.dir = new_dir(name)
        self.exe = os.environ.get("CHROMIUM") or next(
            (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser")
             if os.access(p, os.X_OK)), None)
        self.procs = []
        self.runs = 0
        _register(self)

    def available(self):
        return self.exe is not None

    def run(self, url, extra=(), budget_ms=6000, timeout=60.0):
        """One browser run; returns (exit status, stdout text). Raises
        AssertionError if it does not finish within timeout seconds."""
        if self.exe is None:
            raise AssertionError("chromium not found (apt-get install chromium, or "
                                 "contrib/deps.sh test)")
        self.runs += 1
        profile = os.path.join(self.dir, "profile-%d" % self.runs)
        out_path = os.path.join(self.dir, "stdout-%d" % self.runs)
        err_path = os.path.join(self.dir, "stderr-%d" % self.runs)
        env = dict(os.environ)
        env.update(HOME=self.dir, XDG_CONFIG_HOME=os.path.join(self.dir, "config"),
                   XDG_CACHE_HOME=os.path.join(self.dir, "cache"))
        cmd = ([self.exe] + self.FLAGS + ["--user-data-dir=" + profile,
                                          "--virtual-time-budget=%d" % budget_ms]
               + list(extra) + [url])
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 cwd=self.dir, env=env, preexec_fn=_browser_setup)
        self.procs.append(p)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("chromium did not finish within %.0fs: %s\n%s"
                                 % (timeout, " ".join(cmd), tail(err_path)))
        finally:
            self._kill(p)
        return rc, read_text(out_path)

    def dump_dom(self, url, budget_ms=6000, timeout=60.0):
        rc, out = self.run(url, ["--dump-dom"], budget_ms, timeout)
        assert rc == 0 and out, "chromium --dump-dom %s: exit %s, %d bytes\n%s" % (
            url, rc, len(out), tail(os.path.join(self.dir, "stderr-%d" % self.runs)))
        return out

    def screenshot(self, url, path, size=(1280, 1600), budget_ms=6000, timeout=60.0):
        rc, _ = self.run(url, ["--screenshot=" + os.path.abspath(path),
                               "--window-size=%d,%d" % size], budget_ms, timeout)
        assert rc == 0 and os.path.getsize(path) > 0, "chromium --screenshot: exit %s\n%s" % (
            rc, tail(os.path.join(self.dir, "stderr-%d" % self.runs)))
        return path

    def _strays(self):
        """Pids of processes whose command line names this object's dir."""
        me = self.dir.encode()
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if me in f.read():
                        pids.append(int(d))
            except OSError:
                pass
        return pids

    def _kill(self, p):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # The crash handlers exit once the browser is gone; a bounded wait,
        # then SIGKILL for any that did not.
        deadline = time.monotonic() + 5
        while self._strays() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self._strays():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _cleanup(self):
        for p in self.procs:
            self._kill(p)
