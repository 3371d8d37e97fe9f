"""TLS termination on tls.listen: versions, SNI, ALPN, X-Forwarded-Proto,
the https cache key, session resumption, bad clients, and certificate
reloads on SIGHUP. Certificates are made per test with the openssl command."""

import os
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (LOOPBACK, Origin, RawClient, Tailcache, addr, free_port, new_dir,
                     read_text, simple_config, wait_for)


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Certs:
    """A CA and leaves signed by it, in a temp dir."""

    def __init__(self):
        self.dir = new_dir("certs")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=tailcache test CA", cwd=self.dir)
        self.ca = os.path.join(self.dir, "ca.pem")

    def leaf(self, name, cn, sans):
        """Makes name.pem / name.key for cn with DNS sans; returns {cert, key}."""
        key, csr, pem = name + ".key", name + ".csr", name + ".pem"
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            if sans:
                f.write("subjectAltName=" + ",".join("DNS:" + s for s in sans) + "\n")
            else:
                f.write("basicConstraints=CA:FALSE\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + cn, cwd=self.dir)
        openssl("x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", pem, "-days", "2", "-extfile", ext, cwd=self.dir)
        return {"cert": os.path.join(self.dir, pem), "key": os.path.join(self.dir, key)}


def client_ctx(certs, version=None, alpn=None):
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.check_hostname = False
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, ctx, sni=None, session=None, timeout=5.0):
    raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, session=session)
    except Exception:
        raw.close()
        raise


def peer_cn(s):
    subject = dict(x[0] for x in s.getpeercert()["subject"])
    return subject["commonName"]


def https_get(s, path, host="test", extra=b""):
    """One keep-alive GET on an open TLS socket; returns (status, headers dict, body)."""
    s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra))
    buf = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in buf:
        assert time.monotonic() < deadline, "no response head"
        d = s.recv(65536)
        assert d, "connection closed before a response: %r" % buf
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        assert time.monotonic() < deadline, "short body"
        d = s.recv(65536)
        assert d, "connection closed mid-body"
        body += d
    return status, headers, body


def start(certs, origin=None, tls=None, route=None, **top):
    o = origin or Origin("o")
    tport = free_port()
    t = {"listen": addr(tport)}
    t.update(tls or {})
    tc = Tailcache(simple_config(o, route=route, tls=t, **top))
    tc.start()
    wait_for(lambda: socket.create_connection((LOOPBACK, tport), timeout=1).close() or True, 5,
             msg="the TLS port to accept")
    tc.tls_port = tport
    return tc, o


def standard_certs():
    c = Certs()
    a = c.leaf("a", "a.test", ["a.test", "*.wild.test"])
    b = c.leaf("b", "b.test", ["b.test"])
    return c, a, b


def test_versions_sni_alpn():
    c, a, b = standard_certs()
    tc, o = start(c, tls={"certificates": [a, b]})
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        s = tls_connect(tc.tls_port, client_ctx(c, v), sni="a.test")
        assert s.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                               ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[v], s.version()
        s.close()
    cases = [("a.test", "a.test"), ("b.test", "b.test"), ("x.wild.test", "a.test"),
             ("B.TEST", "b.test"), ("unknown.test", "a.test"), (None, "a.test"),
             ("a.b.wild.test", "a.test")]
    for sni, want in cases:
        s = tls_connect(tc.tls_port, client_ctx(c), sni=sni)
        assert peer_cn(s) == want, (sni, peer_cn(s), want)
        s.close()
    s = tls_connect(tc.tls_port, client_ctx(c, alpn=["h2", "http/1.1"]), sni="b.test")
    assert s.selected_alpn_protocol() == "http/1.1", s.selected_alpn_protocol()
    s.close()
    # No protocol in common: the handshake completes without ALPN (as nginx).
    s = tls_connect(tc.tls_port, client_ctx(c, alpn=["h2"]), sni="b.test")
    assert s.selected_alpn_protocol() is None
    st, _, _ = https_get(s, "/ok")
    assert st == 200
    s.close()
    assert tc.stats()["tls_handshakes"] >= 10


def test_min_version_13():
    c, a, b = standard_certs()
    tc, o = start(c, tls={"certificates": [a], "min_version": "1.3"})
    try:
        tls_connect(tc.tls_port, client_ctx(c, ssl.TLSVersion.TLSv1_2), sni="a.test")
        raise AssertionError("a TLS 1.2 handshake succeeded with min_version 1.3")
    except ssl.SSLError:
        pass
    s = tls_connect(tc.tls_port, client_ctx(c, ssl.TLSVersion.TLSv1_3), sni="a.test")
    assert s.version() == "TLSv1.3"
    s.close()
    wait_for(lambda: tc.stats()["tls_handshake_errors"] >= 1, 5, msg="the refused 1.2 counted")


def test_forwarded_proto_and_cache_scheme():
    c, a, b = standard_certs()
    tc, o = start(c, tls={"certificates": [a]},
                  route={"cache": {"enabled": True, "ttl": "60s"}})
    s = tls_connect(tc.tls_port, client_ctx(c), sni="a.test")
    st, h, body = https_get(s, "/page")
    assert st == 200 and o.request_count == 1
    assert o.last().header("X-Forwarded-Proto") == "https", o.last()
    assert "fwd=" in h.get("cache-status", ""), h
    st, h, _ = https_get(s, "/page")
    assert st == 200 and "hit" in h.get("cache-status", ""), h
    assert o.request_count == 1
    # The same URL over plain http is a separate entry.
    r = RawClient(tc.port).request("GET", "/page")
    assert r.status == 200 and "fwd=" in (r.header("Cache-Status") or ""), r
    assert o.request_count == 2 and o.last().header("X-Forwarded-Proto") == "http"
    r = RawClient(tc.port).request("GET", "/page")
    assert "hit" in (r.header("Cache-Status") or ""), r
    assert o.request_count == 2
    # PURGE over TLS purges the https entry only.
    s.sendall(b"PURGE /page HTTP/1.1\r\nHost: test\r\n\r\n")
    st, _, _ = https_get_reply(s)
    assert st == 200, st
    st, h, _ = https_get(s, "/page")
    assert "fwd=" in h.get("cache-status", ""), h
    assert o.request_count == 3
    r = RawClient(tc.port).request("GET", "/page")
    assert "hit" in (r.header("Cache-Status") or ""), r
    s.close()


def https_get_reply(s):
    """Reads one response after a request sent by hand."""
    buf = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in buf:
        assert time.monotonic() < deadline
        d = s.recv(65536)
        assert d
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (ln.partition(":") for ln in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_session_resumption():
    c, a, b = standard_certs()
    tc, o = start(c, tls={"certificates": [a, b]})
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(c, v)
        s = tls_connect(tc.tls_port, ctx, sni="a.test")
        st, _, _ = https_get(s, "/ok")  # TLS 1.3 tickets arrive after the handshake
        assert st == 200
        sess = s.session
        assert not s.session_reused
        s.close()
        assert sess is not None and sess.has_ticket, (v, sess)
        s = tls_connect(tc.tls_port, ctx, sni="a.test", session=sess)
        assert s.session_reused, "%s: the session was not resumed" % v
        st, _, _ = https_get(s, "/ok")
        assert st == 200
        s.close()
    wait_for(lambda: tc.stats()["tls_resumed"] >= 2, 5, msg="tls_resumed to count 2")


def test_no_tickets_when_off():
    """session_tickets: false sends no TLS 1.3 ticket (none could resume:
    there is no session cache either), and nothing resumes."""
    c, a, b = standard_certs()
    tc, o = start(c, tls={"certificates": [a], "session_tickets": False})
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(c, v)
        s = tls_connect(tc.tls_port, ctx, sni="a.test")
        st, _, _ = https_get(s, "/ok")
        assert st == 200
        sess = s.session
        s.close()
        assert sess is None or not sess.has_ticket, (v, sess)
        s = tls_connect(tc.tls_port, ctx, sni="a.test", session=sess)
        assert not s.session_reused, v
        s.close()


def test_plain_http_and_stalled_handshake():
    c, a, b = standard_certs()
    tc, o = start(c, tls={"certificates": [a], "handshake_timeout": "1s"})
    before = tc.stats()["tls_handshake_errors"]
    # Plain HTTP on the TLS port: that connection closes, nothing else.
    raw = RawClient(tc.tls_port)
    raw.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    raw.wait_closed(5)
    raw.close()
    wait_for(lambda: tc.stats()["tls_handshake_errors"] >= before + 1, 5,
             msg="the plain HTTP attempt counted")
    s = tls_connect(tc.tls_port, client_ctx(c), sni="a.test")
    assert https_get(s, "/ok")[0] == 200
    assert RawClient(tc.port).request("GET", "/ok").status == 200
    # A client that sends half a ClientHello and stalls is closed after 1s.
    stall = socket.create_connection((LOOPBACK, tc.tls_port), timeout=5)
    stall.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    t0 = time.monotonic()
    stall.settimeout(5)
    try:
        data = stall.recv(100)
    except (ConnectionResetError, socket.timeout):
        data = None
    took = time.monotonic() - t0
    stall.close()
    assert data is not None and took < 4, "not closed within the handshake timeout (%.1fs)" % took
    assert took >= 0.5, "closed too early (%.2fs)" % took
    wait_for(lambda: tc.stats()["tls_handshake_errors"] >= before + 2, 5,
             msg="the stalled handshake counted")
    # The keep-alive TLS connection opened before is still fine.
    assert https_get(s, "/ok")[0] == 200
    s.close()
    assert tc.alive()


def test_sighup_new_certificate_and_broken_one():
    c, a, b = standard_certs()
    tc, o = start(c, tls={"certificates": [a]})
    s_old = tls_connect(tc.tls_port, client_ctx(c), sni="a.test")
    assert peer_cn(s_old) == "a.test"
    assert https_get(s_old, "/ok")[0] == 200

    # A small load loop on new TLS connections through the reload.
    failures, done = [], [0]
    stop = threading.Event()

    def load():
        ctx = client_ctx(c)
        while not stop.is_set():
            try:
                s = tls_connect(tc.tls_port, ctx, sni="a.test")
                if https_get(s, "/ok")[0] != 200:
                    failures.append("status")
                s.close()
                done[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(repr(e))
            stop.wait(0.005)
    th = threading.Thread(target=load, daemon=True)
    th.start()
    try:
        a2 = c.leaf("a2", "a2.test", ["a.test"])
        cfg = dict(tc.config)
        cfg["tls"] = dict(cfg["tls"], certificates=[a2])
        tc.write_config(cfg)
        tc.signal(signal.SIGHUP)

        def new_cert():
            s = tls_connect(tc.tls_port, client_ctx(c), sni="a.test")
            cn = peer_cn(s)
            s.close()
            return cn == "a2.test"
        wait_for(new_cert, 10, interval=0.05, msg="new connections to see the new certificate")
        mark = done[0]
        wait_for(lambda: done[0] >= mark + 20 or not th.is_alive(), 10, msg="load to go on")
    finally:
        stop.set()
        th.join(10)
    assert not failures, "failed requests during the reload: %s" % failures[:5]
    # The connection opened before the reload keeps working.
    for _ in range(3):
        assert https_get(s_old, "/ok")[0] == 200
    assert peer_cn(s_old) == "a.test"

    # A broken certificate (key of another certificate): refused, old one kept.
    cfg = dict(tc.config)
    cfg["tls"] = dict(cfg["tls"], certificates=[{"cert": a2["cert"], "key": b["key"]}])
    tc.write_config(cfg)
    tc.signal(signal.SIGHUP)

    def logged():
        return b["key"] in tc.stderr_text() and "reload rejected" in tc.stderr_text()
    wait_for(logged, 10, msg="the rejected reload naming %s" % b["key"])
    s = tls_connect(tc.tls_port, client_ctx(c), sni="a.test")
    assert peer_cn(s) == "a2.test"
    assert https_get(s, "/ok")[0] == 200
    s.close()
    # A missing file, likewise.
    cfg["tls"] = dict(cfg["tls"], certificates=[{"cert": "/nonexistent/x.pem",
                                                  "key": a["key"]}])
    tc.write_config(cfg)
    tc.signal(signal.SIGHUP)
    wait_for(lambda: "/nonexistent/x.pem" in tc.stderr_text(), 10, msg="the missing file named")
    assert https_get(s_old, "/ok")[0] == 200
    s_old.close()
    assert tc.alive()


def test_admin_over_tls():
    """admin.tls: the admin listener speaks TLS with tls.certificates (plain
    HTTP to it gets nothing), and a reload serves a renewed certificate."""
    c, a, b = standard_certs()
    tc, o = start(c, tls={"certificates": [a]}, admin={"tls": True})

    def admin_get(path, sni="a.test"):
        s = tls_connect(tc.admin_port, client_ctx(c), sni=sni)
        try:
            cn = peer_cn(s)
            status, headers, body = https_get(s, path)
            return cn, status, body
        finally:
            s.close()

    cn, status, body = admin_get("/healthz")
    assert (cn, status, body) == ("a.test", 200, b"ok\n"), (cn, status, body)
    cn, status, body = admin_get("/stats")
    assert status == 200 and b'"requests"' in body, (status, body[:200])
    # Plain HTTP to the TLS admin port: no HTTP answer.
    r = RawClient(tc.admin_port, timeout=3)
    try:
        r.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        try:
            got = r.sock.recv(4096)
        except OSError:
            pass
        assert not got.startswith(b"HTTP/1.1 200"), got
    finally:
        r.close()
    # A reload with another certificate: new admin connections get it.
    cfg = simple_config(o, tls={"listen": addr(tc.tls_port), "certificates": [b]},
                        admin={"tls": True})
    tc.write_config(tc.defaults(cfg))
    tc.signal(signal.SIGHUP)
    wait_for(lambda: admin_get("/healthz", sni="b.test")[0] == "b.test", timeout=5,
             msg="the renewed admin certificate")
