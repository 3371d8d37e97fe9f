#!/usr/bin/env bash
#
# analytics.sh: what do the per-route analytics cost on the hit path? One
# run drives wrk at memory hits through two tailcache processes that differ
# only in analytics.enabled (true / false), alternating which goes first
# each round, and prints req/s, p50, p99 and the proxy CPU per request of
# each, best of ROUNDS, with the on/off ratios. The CPU per request is the
# number to read: it does not depend on how the CPUs are shared.
#
# Setup, all on free 127.0.0.1 ports: the demo origin serves
# /bench?size=N&cache=1 (N bytes, public, max-age=3600); each tailcache has
# one cached route and no access log; the object is fetched twice through
# each before measuring and the second fetch must be a memory hit.
#
# Usage: contrib/bench/analytics.sh   (BUILD: the release build directory)
#
# Environment:
#   DURATION=10   seconds per measured wrk run
#   CONNS=32      wrk connections
#   THREADS=1     wrk threads
#   WORKERS=1     tailcache workers
#   SIZE=1024     object size in bytes
#   ROUNDS=3      measured runs per setting, best kept
#   WARMUP=1      seconds of unmeasured load before each run (0: none)
#   BUILD=.       build tree holding src/tailcache and contrib/demo-origin
#   KEEP_LOGS=0   1 keeps the temp directory
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-1}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
BUILD=${BUILD:-.}
TAILCACHE=${TAILCACHE:-$BUILD/src/tailcache}
ORIGIN=${ORIGIN:-$BUILD/contrib/demo-origin}
KEEP_LOGS=${KEEP_LOGS:-0}

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_traps

check_uints DURATION CONNS THREADS WORKERS SIZE ROUNDS WARMUP
((DURATION > 0 && CONNS > 0 && THREADS > 0 && WORKERS > 0 && ROUNDS > 0 && SIZE > 0)) ||
    die "DURATION, CONNS, THREADS, WORKERS, ROUNDS and SIZE must be positive"
((THREADS <= CONNS)) || die "THREADS ($THREADS) cannot exceed CONNS ($CONNS)"
need_tools wrk curl awk
[[ -x $ORIGIN ]] || die "no demo origin at $ORIGIN (set BUILD or ORIGIN)"
[[ -x $TAILCACHE ]] || die "no tailcache at $TAILCACHE (set BUILD or TAILCACHE)"
bench_logdir

read -r OPORT P_ON A_ON P_OFF A_OFF <<<"$(free_ports 5)"
start_bg origin "$ORIGIN" -q -l "127.0.0.1:$OPORT"
wait_ready origin "$BG_PID" "http://127.0.0.1:$OPORT/stats"

declare -A PID PPORT_OF
for mode in on off; do
    if [[ $mode == on ]]; then PPORT=$P_ON APORT=$A_ON; else PPORT=$P_OFF APORT=$A_OFF; fi
    write_tc_config "$LOGDIR/tc-$mode.yaml"
    printf 'analytics:\n  enabled: %s\n' "$([[ $mode == on ]] && echo true || echo false)" \
        >>"$LOGDIR/tc-$mode.yaml"
    start_bg "tailcache-$mode" "$TAILCACHE" -c "$LOGDIR/tc-$mode.yaml"
    PID[$mode]=$BG_PID
    PPORT_OF[$mode]=$PPORT
    wait_ready "tailcache-$mode" "$BG_PID" "http://127.0.0.1:$APORT/healthz"
    url="http://127.0.0.1:$PPORT/bench?size=$SIZE&cache=1"
    curl -sf --max-time 5 -o /dev/null "$url" || die "tailcache ($mode) did not serve the object"
    cs=$(curl -sf --max-time 5 -D - -o /dev/null "$url" | tr -d '\r' |
        sed -n 's/^[Cc]ache-[Ss]tatus: //p')
    [[ $cs == *"hit"*"memory"* ]] || die "analytics $mode: second fetch is not a memory hit ($cs)"
done

echo "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, $SIZE-byte memory hits, $WORKERS worker(s)," \
    "best of $ROUNDS, $(nproc) CPUs shared by wrk, the origin and both proxies"
declare -A BEST_RPS BEST_P50 BEST_P99 BEST_CPU
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="on off"; else order="off on"; fi
    for mode in $order; do
        url="http://127.0.0.1:${PPORT_OF[$mode]}/bench?size=$SIZE&cache=1"
        warm "$url"
        measure "$url" "${PID[$mode]}"
        [[ -z $R_ERRS ]] || die "analytics $mode: wrk reported errors: $R_ERRS"
        cpu_us=$(awk -v c="$R_CPU" -v n="$R_REQS" 'BEGIN { printf "%.2f", c * 1e6 / n }')
        echo "round $r analytics $mode: $R_RPS req/s, p50 $R_P50 ms, p99 $R_P99 ms," \
            "$cpu_us us CPU per request"
        if [[ -z ${BEST_RPS[$mode]:-} ]] || num_gt "$R_RPS" "${BEST_RPS[$mode]}"; then
            BEST_RPS[$mode]=$R_RPS BEST_P50[$mode]=$R_P50 BEST_P99[$mode]=$R_P99
            BEST_CPU[$mode]=$cpu_us
        fi
    done
done

printf '\n%-14s %10s %8s %8s %12s\n' analytics req/s p50_ms p99_ms cpu_us/req
for mode in on off; do
    printf '%-14s %10s %8s %8s %12s\n' "$mode" "${BEST_RPS[$mode]}" "${BEST_P50[$mode]}" \
        "${BEST_P99[$mode]}" "${BEST_CPU[$mode]}"
done
awk -v a="${BEST_RPS[on]}" -v b="${BEST_RPS[off]}" -v c="${BEST_CPU[on]}" -v d="${BEST_CPU[off]}" \
    'BEGIN { printf "on/off: req/s %.3f, CPU per request %.3f (cost %+.1f%%)\n", a / b, c / d, (c / d - 1) * 100 }'
