#!/bin/bash
# Builds tailcache with AddressSanitizer + UndefinedBehaviorSanitizer and
# runs the whole test suite: the Check unit tests, then the integration
# tests that start real processes on loopback ports. Installs missing
# Debian packages first. Ends with one line "N passed, N failed".
#
#   contrib/test.sh            everything
#   contrib/test.sh FILTER     only integration tests whose name has FILTER
# Environment: BUILD (build dir, default build-test), SANITIZE=0 for a
# plain build, JOBS (make -j, default 2).
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
build=${BUILD:-build-test}
jobs=${JOBS:-2}

contrib/deps.sh test || exit 1

conf_args=""
[ "${SANITIZE:-1}" = 1 ] && conf_args="--enable-sanitizers"

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    autoreconf -fi >/dev/null || { echo "autoreconf failed"; echo "0 passed, 1 failed"; exit 1; }
fi
mkdir -p "$build"
if [ ! -f "$build/Makefile" ] || [ configure -nt "$build/Makefile" ]; then
    (cd "$build" && ../configure $conf_args >/dev/null) ||
        { echo "configure failed"; echo "0 passed, 1 failed"; exit 1; }
fi
if ! make -C "$build" -j"$jobs" >"$build/make.out" 2>&1 ||
   ! make -C "$build" -j"$jobs" check TESTS= >>"$build/make.out" 2>&1; then
    tail -50 "$build/make.out"
    echo "build failed"
    echo "0 passed, 1 failed"
    exit 1
fi

export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:quarantine_size_mb=16:malloc_context_size=20"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

passed=0
failed=0

# Unit tests: each Check runner prints "NN%: Checks: N, Failures: F, Errors: E".
if [ $# -eq 0 ]; then
    for t in "$build"/t/unit/check_*; do
        [ -x "$t" ] || continue
        out=$("$t" 2>&1)
        rc=$?
        line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: [0-9]+' | tail -1)
        if [ -z "$line" ]; then
            printf '%s\n' "$out" | tail -30
            echo "not ok - $(basename "$t") (no result line, exit $rc)"
            failed=$((failed + 1))
            continue
        fi
        n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
        f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
        e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
        bad=$((f + e))
        if [ "$bad" -gt 0 ] || [ $rc -ne 0 ]; then
            printf '%s\n' "$out" | grep -v ':P:' | tail -30
            [ "$bad" -eq 0 ] && bad=1
        fi
        echo "unit $(basename "$t"): $((n - bad < 0 ? 0 : n - bad)) passed, $bad failed"
        passed=$((passed + n - bad))
        failed=$((failed + bad))
    done
fi

# Integration tests.
export TAILCACHE="$top/$build/src/tailcache"
export TC_BUILD="$top/$build"
out_file="$build/integration.out"
python3 t/run-integration.py "$@" 2>&1 | tee "$out_file"
line=$(grep -E '^integration: [0-9]+ passed, [0-9]+ failed' "$out_file" | tail -1)
if [ -z "$line" ]; then
    echo "integration runner did not finish"
    failed=$((failed + 1))
else
    p=$(echo "$line" | sed -E 's/^integration: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    passed=$((passed + p))
    failed=$((failed + f))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
