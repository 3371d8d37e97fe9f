#!/usr/bin/env python3
"""Runs tailcache's integration tests (t/integration/test_*.py).

    t/run-integration.py [FILTER]

Every top-level function test_*() of every t/integration/test_*.py whose
"file::name" contains FILTER runs in its own child process (its own process
group, its own temp dir) with a timeout; whatever it started is torn down
after it, and the whole group is killed if it overruns. Output:

    ok - test_basic.py::test_get (0.4s)
    not ok - test_basic.py::test_post (1.2s)
    #   ...the assertion, the test's output, the tail of tailcache's stderr
    integration: N passed, N failed

Environment: TAILCACHE (the binary), else TC_BUILD/src/tailcache (TC_BUILD
defaults to /work/main/build); TC_TEST_TIMEOUT (seconds per test, 120);
TC_KEEP_TMP=1 keeps every test's temp dir (failed tests' dirs are always kept).
Exit status 1 if anything failed.
"""

import ast
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_DIR = os.path.join(HERE, "integration")
DEFAULT_TIMEOUT = 120.0


def discover(filt):
    tests = []
    for fn in sorted(os.listdir(TEST_DIR)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        with open(os.path.join(TEST_DIR, fn)) as f:
            tree = ast.parse(f.read(), fn)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                tid = "%s::%s" % (fn, node.name)
                if not filt or filt in tid:
                    tests.append((fn, node.name))
    return tests


# --------------------------------------------------------------------------
# child: runs one test in this process

class TestTimeout(Exception):
    pass


def describe(e):
    """The exception, then the traceback of the test's own frames."""
    me = os.path.abspath(__file__)
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if os.path.abspath(f.filename) != me]
    where = ""
    for f in reversed(frames):
        if os.path.basename(f.filename).startswith("test_"):
            where = "%s:%d: " % (os.path.basename(f.filename), f.lineno)
            break
    head = "%s%s: %s" % (where, type(e).__name__, e)
    return head + "\nTraceback (test frames):\n" + "".join(traceback.format_list(frames)).rstrip()


def child(fn, name, result_path, timeout):
    sys.path.insert(0, TEST_DIR)
    import harness

    def on_alarm(signum, frame):
        raise TestTimeout("test timed out after %.0fs" % timeout)

    signal.signal(signal.SIGALRM, on_alarm)
    def on_term(signum, frame):
        raise TestTimeout("test process got SIGTERM")

    signal.signal(signal.SIGTERM, on_term)
    res = {"ok": False, "message": "", "diagnostics": ""}
    tcs = []
    try:
        spec = importlib.util.spec_from_file_location(fn[:-3], os.path.join(TEST_DIR, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        func = getattr(mod, name)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            func()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            tcs = harness.live_tailcaches()
        res["ok"] = True
    except BaseException as e:
        tcs = tcs or harness.live_tailcaches()
        res["message"] = describe(e)
    try:
        signal.setitimer(signal.ITIMER_REAL, 45)  # bound the cleanup too
        problems = harness.cleanup_all()
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as e:
        problems = ["cleanup failed: %r" % e]
    if problems:
        if res["ok"]:
            res["ok"] = False
            res["message"] = "\n".join(problems)
        else:
            res["message"] += "\n" + "\n".join(problems)
    if not res["ok"]:
        res["diagnostics"] = "\n".join(t.diagnostics() for t in tcs)
    with open(result_path, "w") as f:
        json.dump(res, f)
    sys.stdout.flush()
    os._exit(0 if res["ok"] else 1)


# --------------------------------------------------------------------------
# parent

_current = None


def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _on_signal(signum, frame):
    if _current is not None:
        _kill_group(_current)
    print("integration: interrupted by signal %d" % signum, flush=True)
    os._exit(130)


def comment(text):
    return "\n".join("#   " + line for line in text.rstrip("\n").splitlines())


def scan_stderr_tails(d):
    """For a test killed from outside: tails of every tailcache's logs."""
    sys.path.insert(0, TEST_DIR)
    import harness
    out = []
    for root, _, files in os.walk(d):
        for f in sorted(files):
            if f in ("stderr", "error.log"):
                p = os.path.join(root, f)
                out.append("--- %s\n%s" % (p, harness.tail(p, 40) or "(empty)"))
    return "\n".join(out)


def run_one(base, fn, name, timeout):
    global _current
    tid = "%s::%s" % (fn, name)
    tdir = os.path.join(base, "%s-%s" % (fn[:-3], name))
    os.makedirs(tdir)
    result_path = os.path.join(tdir, "result.json")
    env = dict(os.environ)
    env["TC_TEST_TMPDIR"] = tdir
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", fn, name,
                          result_path, str(timeout)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _current = p
    killed = False
    try:
        out, _ = p.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        killed = True
        _kill_group(p)
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out = b""
    _kill_group(p)  # leftovers of a clean run too
    _current = None
    dt = time.monotonic() - t0
    out = out.decode("utf-8", "replace") if out else ""
    res = None
    try:
        with open(result_path) as f:
            res = json.load(f)
    except (OSError, ValueError):
        pass
    ok = bool(res and res.get("ok")) and p.returncode == 0 and not killed
    if ok:
        print("ok - %s (%.1fs)" % (tid, dt))
        if out.strip():
            print(comment(out))
    else:
        print("not ok - %s (%.1fs)" % (tid, dt))
        if killed:
            print(comment("killed: no result after %.0fs" % (timeout + 60)))
        elif res is None:
            print(comment("test process exited with status %s and no result" % p.returncode))
        if out.strip():
            print(comment("output:\n" + out))
        if res and res.get("message"):
            print(comment(res["message"]))
        diag = res.get("diagnostics") if res else scan_stderr_tails(tdir)
        if diag:
            print(comment(diag))
        print(comment("temp dir kept: %s" % tdir))
    sys.stdout.flush()
    if ok and not os.environ.get("TC_KEEP_TMP"):
        shutil.rmtree(tdir, ignore_errors=True)
    return ok


def main(argv):
    if len(argv) >= 2 and argv[1] == "--child":
        child(argv[2], argv[3], argv[4], float(argv[5]))
        return 2  # not reached
    filt = argv[1] if len(argv) > 1 else ""
    try:
        timeout = float(os.environ.get("TC_TEST_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    sys.path.insert(0, TEST_DIR)
    import harness
    print("# tailcache: %s%s" % (harness.binary(),
                                 " (AddressSanitizer build)" if harness.binary_has_asan() else ""))
    tests = discover(filt)
    base = tempfile.mkdtemp(prefix="tc-integration-")
    if not tests:
        print("# no test matches %r" % filt)
    passed = 0
    failed = []
    t0 = time.monotonic()
    for fn, name in tests:
        if run_one(base, fn, name, timeout):
            passed += 1
        else:
            failed.append("%s::%s" % (fn, name))
    try:
        os.rmdir(base)
    except OSError:
        pass
    print("# %.1fs" % (time.monotonic() - t0))
    for tid in failed:
        print("# failed: %s" % tid)
    failed = len(failed)
    print("integration: %d passed, %d failed" % (passed, failed))
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
