#!/usr/bin/env bash
#
# passthrough.sh: what does tailcache cost on the request path when it only
# forwards? One run starts the demo origin and tailcache (one route with
# caching off, no access log) on free loopback ports, drives wrk against
# the origin directly and then through tailcache, and prints req/s, p50,
# p99, the CPU each server burned during its run and the throughput ratio.
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

# shellcheck source=contrib/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_traps

ORIGIN_PID=
PROXY_PID=

# ---- checks -------------------------------------------------------------

check_uints DURATION CONNS THREADS SIZE WARMUP ROUNDS
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
need_tools wrk curl awk pgrep
[[ -x $ORIGIN ]] ||
    die "no demo origin at $ORIGIN (build it: make contrib/demo-origin, or set BUILD/ORIGIN)"
if ((want_proxy)); then
    [[ -x $TAILCACHE ]] || die "no tailcache at $TAILCACHE (build it, or set BUILD/TAILCACHE)"
fi
bench_logdir

# ---- servers ------------------------------------------------------------

read -r OPORT PPORT APORT <<<"$(free_ports 3)"
DIRECT_URL="http://127.0.0.1:$OPORT/bench?size=$SIZE"
PROXY_URL="http://127.0.0.1:$PPORT/bench?size=$SIZE"

start_bg origin "$ORIGIN" -q -l "127.0.0.1:$OPORT"
ORIGIN_PID=$BG_PID
wait_ready origin "$ORIGIN_PID" "$DIRECT_URL"

if ((want_proxy)); then
    # Pass-through: a route that does not cache, and no access log (its
    # formatting and writes would be most of what we measure).
    WORKERS=${WORKERS:-2} TC_CACHE=false write_tc_config "$LOGDIR/tailcache.yaml"
    # shellcheck disable=SC2086
    start_bg tailcache "$TAILCACHE" -c "$LOGDIR/tailcache.yaml" $TAILCACHE_ARGS
    PROXY_PID=$BG_PID
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
        if num_gt "$R_RPS" "$D_RPS"; then
            D_RPS=$R_RPS D_P50=$R_P50 D_P99=$R_P99 D_REQS=$R_REQS D_CPU=$R_CPU
        fi
    fi
    if ((want_proxy)); then
        before=$(origin_count bench)
        measure "$PROXY_URL" "$PROXY_PID" "$ORIGIN_PID"
        after=$(origin_count bench)
        echo "round $round passthrough: $R_RPS req/s" \
            "(origin served $((${after:-0} - ${before:-0})) of $R_REQS)" >&2
        [[ -z $R_ERRS ]] || echo "  wrk reported: $R_ERRS" >&2
        if num_gt "$R_RPS" "$P_RPS"; then
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
