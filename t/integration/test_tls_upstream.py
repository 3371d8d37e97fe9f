"""TLS to upstreams (upstreams.NAME.tls): verification against a CA file,
SNI and name check, keep-alive and session reuse, verify: false, client
certificates (mTLS), and quick mode's https:// URLs. Certificates are made
at test time with the openssl command, in the test's directory."""

import os
import subprocess

from harness import (RawClient, Tailcache, TlsOrigin, free_port, get, new_dir, simple_config,
                     wait_for, addr)


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key_req(d, name, cn):
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn,
             cwd=d)


def _ca(d, name, cn):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
             "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d, name, cn, ca, ext):
    _key_req(d, name, cn)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n%s\n" % ext)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
             cwd=d)


class Certs:
    """A test CA with leaves for origin.test, wrong.test and localhost, a
    self-signed origin.test leaf nobody trusts, and a client CA with one
    client certificate."""

    def __init__(self):
        d = self.dir = new_dir("certs")
        _ca(d, "ca", "tailcache test CA")
        _leaf(d, "origin", "origin.test", "ca", "subjectAltName=DNS:origin.test")
        _leaf(d, "wrong", "wrong.test", "ca", "subjectAltName=DNS:wrong.test")
        _leaf(d, "localhost", "localhost", "ca", "subjectAltName=DNS:localhost")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", "selfsigned.key", "-out", "selfsigned.pem", "-days", "2",
                 "-subj", "/CN=origin.test", "-addext", "subjectAltName=DNS:origin.test", cwd=d)
        _ca(d, "clientca", "tailcache test client CA")
        _leaf(d, "client", "tailcache-client", "clientca", "extendedKeyUsage=clientAuth")

    def path(self, name):
        return os.path.join(self.dir, name)

    def origin(self, leaf, **kw):
        return TlsOrigin(leaf, certfile=self.path(leaf + ".pem"),
                         keyfile=self.path(leaf + ".key"), **kw)


def _tls_config(certs, o, **tls):
    t = {"ca_file": certs.path("ca.pem"), "server_name": "origin.test"}
    t.update(tls)
    return simple_config(o, upstream={"tls": t, "max_fails": 1000})


def test_tls_get_sni_keepalive():
    certs = Certs()
    o = certs.origin("origin")
    tc = Tailcache(_tls_config(certs, o)).start()
    c = RawClient(tc.port)
    r1 = c.request("GET", "/ok")
    r2 = c.request("GET", "/ok?again")
    assert r1.status == 200 and r1.body == b"ok\n", r1
    assert r2.status == 200, r2
    assert o.request_count == 2, o.snapshot()
    # Keep-alive: one TLS connection carried both requests.
    assert o.snapshot()["connections"] == 1, o.snapshot()
    assert o.server_names == ["origin.test"], o.server_names
    st = _counters(tc)
    assert st["upstream_reuses"] >= 1 and st["upstream_tls_errors"] == 0, st


def _counters(tc):
    st = tc.stats()
    return st.get("counters", st)


def test_tls_session_resumed_on_new_connection():
    certs = Certs()
    o = certs.origin("origin")
    # keepalive 0: every request opens a new connection, which should
    # resume the session saved from the one before (same worker).
    cfg = _tls_config(certs, o)
    cfg["upstreams"]["o"]["keepalive"] = 0
    cfg["workers"] = 1
    tc = Tailcache(cfg).start()
    for i in range(3):
        r = get(tc.port, "/ok?%d" % i)
        assert r.status == 200, r
    wait_for(lambda: o.handshakes() == 3, 5, msg="3 handshakes")
    assert o.resumed[0] is False and o.resumed[1:] == [True, True], o.resumed
    assert _counters(tc)["upstream_tls_resumed"] == 2, _counters(tc)


def _expect_502(tc, o, needle):
    r = get(tc.port, "/ok")
    assert r.status == 502, r
    assert o.request_count == 0, o.snapshot()
    wait_for(lambda: needle in tc.error_log_text(), 5,
             msg="log line with %r:\n%s" % (needle, tc.error_log_text()))
    assert _counters(tc)["upstream_tls_errors"] >= 1, _counters(tc)


def test_tls_untrusted_certificate_502():
    certs = Certs()
    o = certs.origin("selfsigned")
    tc = Tailcache(_tls_config(certs, o)).start()
    _expect_502(tc, o, "certificate verify failed: self-signed certificate")


def test_tls_wrong_name_502():
    certs = Certs()
    o = certs.origin("wrong")
    tc = Tailcache(_tls_config(certs, o)).start()
    _expect_502(tc, o, "certificate verify failed: hostname mismatch")


def test_tls_verify_off_accepts_untrusted():
    certs = Certs()
    o = certs.origin("selfsigned")
    tc = Tailcache(_tls_config(certs, o, verify=False)).start()
    r = get(tc.port, "/ok")
    assert r.status == 200, r
    assert o.server_names == ["origin.test"], o.server_names


def test_tls_client_certificate():
    certs = Certs()
    o = certs.origin("origin", client_ca=certs.path("clientca.pem"))
    tc = Tailcache(_tls_config(certs, o)).start()
    r = get(tc.port, "/ok")
    assert r.status == 502, r
    assert o.request_count == 0, o.snapshot()
    wait_for(lambda: "TLS with %s failed" % o.addr in tc.error_log_text(), 5,
             msg="TLS failure logged:\n" + tc.error_log_text())
    tc.stop()

    tc = Tailcache(_tls_config(certs, o, cert=certs.path("client.pem"),
                               key=certs.path("client.key"))).start()
    r = get(tc.port, "/ok")
    assert r.status == 200, r
    with o.lock:
        subjects = [s for s in o.peer_subjects if s]
    assert subjects and subjects[-1]["commonName"] == "tailcache-client", o.peer_subjects


def test_quick_mode_https():
    certs = Certs()
    o = certs.origin("localhost")
    url = "https://localhost:%d" % o.port
    port, admin = free_port(), free_port()
    args = ["--upstream", url, "--listen", addr(port), "--admin", addr(admin)]
    # The system store does not trust the test CA: verification fails.
    tc = Tailcache(args=args, port=port, admin_port=admin).start()
    assert get(tc.port, "/ok").status == 502
    wait_for(lambda: "certificate verify failed" in tc.stderr_text(), 5,
             msg="verification failure logged:\n" + tc.stderr_text())
    tc.stop()
    # OpenSSL's SSL_CERT_FILE points the system store at the test CA.
    tc = Tailcache(args=args, port=port, admin_port=admin,
                   env={"SSL_CERT_FILE": certs.path("ca.pem")}).start()
    r = get(tc.port, "/ok")
    assert r.status == 200, r
    assert o.server_names[-1] == "localhost", o.server_names
    assert o.last().header("Host") == "localhost:%d" % o.port, o.last()
