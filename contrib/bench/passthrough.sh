#!/usr/bin/env bash
#
# passthrough.sh: what does tailcache cost on the request path when it only
# forwards? One run starts the demo origin and tailcache in quick (pass-
# through) mode on free loopback ports, drives wrk against the origin
# directly and then through tailcache, and prints req/s, p50, p99, the CPU
# each server burned during its run and the throughput ratio.
#
# The endpoint is the origin's /bench?size=N: no artificial delay and
# Cache-Control: no-store, so every proxied request reaches the origin and
# the numbers measure forwarding, not the demo's timers or caching.
#
# Usage: contrib/bench/passthrough.sh        (from the source or build tree)
#
# Environment:
#   DURATION=10     seconds per measured wrk run
#   CONNS=32        wrk connections (wrk -c)
#   THREADS=1       wrk threads (wrk -t)
#   SIZE=1024       response body bytes (/bench?size=SIZE)
#   BUILD=.         build tree holding src/tailcache and contrib/demo-origin
#   TAILCACHE=$BUILD/src/tailcache          proxy binary
#   TAILCACHE_ARGS=                         extra proxy arguments
#   ORIGIN=$BUILD/contrib/demo-origin       origin binary
#   WARMUP=1        seconds of unmeasured load per target first (0: none)
#   ROUNDS=1        alternate direct/proxy this many times, keep each best
#   TARGETS="direct passthrough"            run only some, e.g. TARGETS=direct
#   KEEP_LOGS=0     1 keeps the server logs directory
#
# Everything listens on 127.0.0.1 only. Every process started here is
# stopped on exit, however the script ends. Note that wrk, the origin and
# tailcache share this machine's CPUs: compare ratios, not absolutes.

set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
SIZE=${SIZE:-1024}
BUILD=${BUILD:-.}
TAILCACHE=${TAILCACHE:-$BUILD/src/tailcache}
TAILCACHE_ARGS=${TAILCACHE_ARGS:-}
ORIGIN=${ORIGIN:-$BUILD/contrib/demo-origin}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-1}
TARGETS=${TARGETS:-direct passthrough}
KEEP_LOGS=${KEEP_LOGS:-0}
READY_TIMEOUT=10

ORIGIN_PID=
PROXY_PID=
WRK_PID=
LOGDIR=

die() {
    echo "passthrough.sh: $*" >&2
    exit 1
}

is_uint() {
    [[ $1 =~ ^[0-9]+$ ]]
}

# Stops one of our own processes: TERM, a bounded wait, then KILL.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$WRK_PID"
    stop_pid "$PROXY_PID"
    stop_pid "$ORIGIN_PID"
    if [[ -n $LOGDIR && -d $LOGDIR ]]; then
        if [[ $KEEP_LOGS == 1 ]]; then
            echo "logs kept in $LOGDIR" >&2
        else
            rm -rf "$LOGDIR"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() {
    local name=$1
    if [[ -s $LOGDIR/$name.log ]]; then
        echo "--- last lines of $name's log:" >&2
        tail -n 20 "$LOGDIR/$name.log" >&2
    fi
}

# Prints N distinct free TCP ports on 127.0.0.1. Holding every socket until
# all are bound keeps them distinct; a port can still be taken between here
# and the server's bind, which readiness polling then reports.
free_ports() {
    local n=$1
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$n" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
        return
    fi
    local port found=() used
    used=$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }')
    for ((port = 20000 + RANDOM % 20000; ${#found[@]} < n && port < 60000; port++)); do
        grep -qx "$port" <<<"$used" || found+=("$port")
    done
    ((${#found[@]} == n)) || die "no free loopback ports found"
    echo "${found[*]}"
}

# Polls url until it answers 200, the process dies, or READY_TIMEOUT passes.
wait_ready() {
    local name=$1 pid=$2 url=$3 deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$name"
            die "$name exited before answering on $url"
        fi
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true) == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    show_log "$name"
    die "$name did not answer 200 on $url within ${READY_TIMEOUT}s"
}

# CPU ticks (utime + stime) of pid and its direct children: threads are
# already summed into a process's own counters; forked workers are not.
cpu_ticks() {
    local pid=$1 total=0 p s
    for p in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) } # comm may hold spaces or parens
        # shellcheck disable=SC2086
        set -- $s
        # After comm: $1 is field 3 (state), so utime (14) is $12, stime (15) $13.
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# wrk latency like 566.00us, 1.29ms, 2.00s, 1.00m -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000;
        else if (u == "m") n *= 60000; else if (u == "h") n *= 3600000;
        printf "%.3f", n }'
}

# Runs wrk for $1 seconds with the remaining arguments, output in
# $LOGDIR/wrk.out. In the background plus wait, so that a TERM or INT sent
# to this script is handled at once rather than when wrk finishes.
run_wrk() {
    local secs=$1
    shift
    wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" "$@" >"$LOGDIR/wrk.out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { cat "$LOGDIR/wrk.out" >&2; die "wrk failed"; }
    WRK_PID=
}

# Runs one measured wrk against url while sampling the CPU of pids
# (first: the server under test; the rest: reported alongside). Sets
# R_RPS, R_P50, R_P99, R_REQS, R_CPU (seconds, first pid), R_CPU_OTHER,
# and R_ERRS.
measure() {
    local url=$1 pid=$2 other=${3:-} b0 b1 o0=0 o1=0 out
    b0=$(cpu_ticks "$pid")
    [[ -z $other ]] || o0=$(cpu_ticks "$other")
    run_wrk "$DURATION" --latency "$url"
    out=$(cat "$LOGDIR/wrk.out")
    b1=$(cpu_ticks "$pid")
    [[ -z $other ]] || o1=$(cpu_ticks "$other")
    R_RPS=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    R_P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    R_P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    R_REQS=$(awk '/ requests in / { print $1 }' <<<"$out")
    R_ERRS=$(awk '/^  Non-2xx|^  Socket errors/' <<<"$out")
    [[ -n $R_RPS && -n $R_REQS ]] || { echo "$out" >&2; die "could not parse wrk output"; }
    R_CPU=$(awk -v t=$((b1 - b0)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
    R_CPU_OTHER=$(awk -v t=$((o1 - o0)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
}

warm() {
    ((WARMUP > 0)) || return 0
    run_wrk "$WARMUP" "$1"
}

# Reads the origin's /bench counter from its /stats.
origin_bench_count() {
    curl -s --max-time 2 "http://127.0.0.1:$OPORT/stats" |
        sed -n 's/.*"bench":\([0-9]*\).*/\1/p'
}

# ---- checks -------------------------------------------------------------

for v in DURATION CONNS THREADS SIZE WARMUP ROUNDS; do
    is_uint "${!v}" || die "$v must be a non-negative integer (got '${!v}')"
done
((DURATION > 0 && CONNS > 0 && THREADS > 0 && ROUNDS > 0)) ||
    die "DURATION, CONNS, THREADS and ROUNDS must be positive"
((THREADS <= CONNS)) || die "THREADS ($THREADS) cannot exceed CONNS ($CONNS)"
want_direct=0
want_proxy=0
for t in $TARGETS; do
    case $t in
    direct) want_direct=1 ;;
    passthrough | proxy) want_proxy=1 ;;
    *) die "unknown target '$t' in TARGETS (direct, passthrough)" ;;
    esac
done
((want_direct + want_proxy > 0)) || die "TARGETS is empty"
for tool in wrk curl awk pgrep; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install wrk curl procps)"
done
[[ -x $ORIGIN ]] ||
    die "no demo origin at $ORIGIN (build it: make contrib/demo-origin, or set BUILD/ORIGIN)"
if ((want_proxy)); then
    [[ -x $TAILCACHE ]] || die "no tailcache at $TAILCACHE (build it, or set BUILD/TAILCACHE)"
fi
HZ=$(getconf CLK_TCK)
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/tc-passthrough.XXXXXX")

# ---- servers ------------------------------------------------------------

read -r OPORT PPORT <<<"$(free_ports 2)"
DIRECT_URL="http://127.0.0.1:$OPORT/bench?size=$SIZE"
PROXY_URL="http://127.0.0.1:$PPORT/bench?size=$SIZE"

"$ORIGIN" -q -l "127.0.0.1:$OPORT" >"$LOGDIR/origin.log" 2>&1 &
ORIGIN_PID=$!
wait_ready origin "$ORIGIN_PID" "$DIRECT_URL"

if ((want_proxy)); then
    # shellcheck disable=SC2086
    "$TAILCACHE" --upstream "http://127.0.0.1:$OPORT" --listen "127.0.0.1:$PPORT" \
        $TAILCACHE_ARGS >"$LOGDIR/tailcache.log" 2>&1 &
    PROXY_PID=$!
    wait_ready tailcache "$PROXY_PID" "$PROXY_URL"
    got=$(curl -s --max-time 2 "$PROXY_URL" | wc -c)
    ((got == SIZE)) || die "through tailcache /bench?size=$SIZE returned $got bytes"
fi

echo "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, body $SIZE B, rounds $ROUNDS," \
    "$(nproc) CPUs shared by wrk and the servers"
echo "origin      $ORIGIN (pid $ORIGIN_PID) on 127.0.0.1:$OPORT"
((want_proxy)) && echo "tailcache   $TAILCACHE (pid $PROXY_PID) on 127.0.0.1:$PPORT"

((want_direct)) && warm "$DIRECT_URL"
((want_proxy)) && warm "$PROXY_URL"

# ---- runs: direct first, then through the proxy; keep each best ---------

D_RPS=0 P_RPS=0
for ((round = 1; round <= ROUNDS; round++)); do
    if ((want_direct)); then
        measure "$DIRECT_URL" "$ORIGIN_PID"
        echo "round $round direct:      $R_RPS req/s" >&2
        [[ -z $R_ERRS ]] || echo "  wrk reported: $R_ERRS" >&2
        if awk -v a="$R_RPS" -v b="$D_RPS" 'BEGIN { exit !(a > b) }'; then
            D_RPS=$R_RPS D_P50=$R_P50 D_P99=$R_P99 D_REQS=$R_REQS D_CPU=$R_CPU
        fi
    fi
    if ((want_proxy)); then
        before=$(origin_bench_count)
        measure "$PROXY_URL" "$PROXY_PID" "$ORIGIN_PID"
        after=$(origin_bench_count)
        echo "round $round passthrough: $R_RPS req/s" \
            "(origin served $((${after:-0} - ${before:-0})) of $R_REQS)" >&2
        [[ -z $R_ERRS ]] || echo "  wrk reported: $R_ERRS" >&2
        if awk -v a="$R_RPS" -v b="$P_RPS" 'BEGIN { exit !(a > b) }'; then
            P_RPS=$R_RPS P_P50=$R_P50 P_P99=$R_P99 P_REQS=$R_REQS P_CPU=$R_CPU
            P_OCPU=$R_CPU_OTHER
        fi
    fi
done

# ---- report -------------------------------------------------------------

row() { # target rps p50 p99 cpu requests
    awk -v t="$1" -v r="$2" -v p50="$3" -v p99="$4" -v c="$5" -v n="$6" 'BEGIN {
        printf "%-12s %12.2f %10.3f %10.3f %8.2f %12.1f\n",
            t, r, p50, p99, c, (n > 0 ? c * 1e6 / n : 0) }'
}

echo
printf "%-12s %12s %10s %10s %8s %12s\n" target req/s p50_ms p99_ms cpu_s cpu_us/req
((want_direct)) && row direct "$D_RPS" "$D_P50" "$D_P99" "$D_CPU" "$D_REQS"
((want_proxy)) && row passthrough "$P_RPS" "$P_P50" "$P_P99" "$P_CPU" "$P_REQS"
if ((want_proxy)); then
    awk -v c="$P_OCPU" -v n="$P_REQS" 'BEGIN {
        printf "(origin behind tailcache: %.2f cpu_s, %.1f cpu_us/req)\n",
            c, (n > 0 ? c * 1e6 / n : 0) }'
fi
if ((want_direct && want_proxy)); then
    awk -v p="$P_RPS" -v d="$D_RPS" 'BEGIN {
        printf "passthrough/direct throughput ratio: %.2f\n", (d > 0 ? p / d : 0) }'
fi
