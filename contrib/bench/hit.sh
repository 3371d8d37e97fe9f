#!/usr/bin/env bash
#
# hit.sh: what does a cache hit cost in tailcache, next to nginx serving the
# same bytes as a static file? One run, for each object size (1 KiB, 16 KiB
# and 256 KiB by default), drives wrk against nginx and against tailcache
# answering from its memory cache, and prints req/s, p50, p99 and the server
# CPU per request (the number to watch: it does not depend on how the CPUs are shared),
# with the tailcache/nginx ratios.
#
# Setup, all on free 127.0.0.1 ports: the demo origin serves
# /bench?size=N&cache=1 (N bytes, Cache-Control: public, max-age=3600).
# nginx serves files holding exactly those bytes, fetched from the origin,
# from a minimal config (sendfile, tcp_nopush, no access log). tailcache
# runs from a config with one cached route and no access log; each object
# is fetched twice through it before measuring, and the second fetch must
# say "Cache-Status: ...; hit" and carry the same bytes. During a measured
# run the origin must see no request (checked and reported).
#
# Both servers get the same number of workers (nginx worker processes,
# tailcache worker threads). Server CPU is utime + stime from /proc, nginx's
# master and worker processes together. Rounds alternate the two servers
# (which goes first swaps every round) and each keeps its best run by req/s.
#
# Usage: contrib/bench/hit.sh        (from the source or build tree; root
#                                    or not: nginx runs from a temp prefix)
#
# Environment:
#   DURATION=10     seconds per measured wrk run
#   CONNS=32        wrk connections (wrk -c)
#   THREADS=1       wrk threads (wrk -t)
#   WORKERS=1       nginx worker_processes and tailcache workers
#   SIZES="1024 16384 262144"   object sizes in bytes
#   ROUNDS=2        measured runs per server and size, best kept
#   WARMUP=1        seconds of unmeasured load per server and size (0: none)
#   BUILD=.         build tree holding src/tailcache and contrib/demo-origin
#   TAILCACHE=$BUILD/src/tailcache          proxy binary
#   ORIGIN=$BUILD/contrib/demo-origin       origin binary
#   NGINX=nginx     nginx binary (apt-get install nginx-light)
#   KEEP_LOGS=0     1 keeps the temp directory (configs, files, logs)
#
# Everything listens on 127.0.0.1 only. Every process started here is
# stopped on exit, however the script ends. wrk and the servers share this
# machine's CPUs: compare ratios and CPU per request, not absolutes.

set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-1}
SIZES=${SIZES:-1024 16384 262144}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-1}
BUILD=${BUILD:-.}
TAILCACHE=${TAILCACHE:-$BUILD/src/tailcache}
ORIGIN=${ORIGIN:-$BUILD/contrib/demo-origin}
NGINX=${NGINX:-nginx}
KEEP_LOGS=${KEEP_LOGS:-0}

# shellcheck source=contrib/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_traps

# 1024 -> 1k, 262144 -> 256k, 1000 -> 1000.
size_label() {
    local n=$1
    if ((n >= 1048576 && n % 1048576 == 0)); then
        echo "$((n / 1048576))m"
    elif ((n >= 1024 && n % 1024 == 0)); then
        echo "$((n / 1024))k"
    else
        echo "$n"
    fi
}

# ---- checks -------------------------------------------------------------

check_uints DURATION CONNS THREADS WORKERS ROUNDS WARMUP
((DURATION > 0 && CONNS > 0 && THREADS > 0 && WORKERS > 0 && ROUNDS > 0)) ||
    die "DURATION, CONNS, THREADS, WORKERS and ROUNDS must be positive"
((THREADS <= CONNS)) || die "THREADS ($THREADS) cannot exceed CONNS ($CONNS)"
((WORKERS <= 256)) || die "WORKERS must be at most 256"
[[ -n ${SIZES// /} ]] || die "SIZES is empty"
for s in $SIZES; do
    if ! is_uint "$s" || ((s == 0 || s > 16777216)); then
        die "each of SIZES must be an integer in 1..16777216 (got '$s')"
    fi
done
need_tools wrk curl awk pgrep cmp "$NGINX"
[[ -x $ORIGIN ]] ||
    die "no demo origin at $ORIGIN (build it: make contrib/demo-origin, or set BUILD/ORIGIN)"
[[ -x $TAILCACHE ]] || die "no tailcache at $TAILCACHE (build it, or set BUILD/TAILCACHE)"
bench_logdir
# nginx's workers drop to "nobody" when started as root: let them read.
chmod 755 "$LOGDIR"
mkdir -m 755 "$LOGDIR/www" "$LOGDIR/nginx"

# ---- servers ------------------------------------------------------------

read -r OPORT PPORT APORT NPORT <<<"$(free_ports 4)"

start_bg origin "$ORIGIN" -q -l "127.0.0.1:$OPORT"
ORIGIN_PID=$BG_PID
wait_ready origin "$ORIGIN_PID" "http://127.0.0.1:$OPORT/stats"

# The static files: the origin's own bytes.
for s in $SIZES; do
    curl -sf --max-time 10 -o "$LOGDIR/www/obj-$s" "http://127.0.0.1:$OPORT/bench?size=$s&cache=1" ||
        die "could not fetch /bench?size=$s&cache=1 from the origin"
    chmod 644 "$LOGDIR/www/obj-$s"
done

cat >"$LOGDIR/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $WORKERS;
pid $LOGDIR/nginx/nginx.pid;
error_log $LOGDIR/nginx/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $LOGDIR/nginx/client_body;
    proxy_temp_path $LOGDIR/nginx/proxy;
    fastcgi_temp_path $LOGDIR/nginx/fastcgi;
    server {
        listen 127.0.0.1:$NPORT;
        root $LOGDIR/www;
    }
}
EOF
start_bg nginx "$NGINX" -p "$LOGDIR/nginx" -e "$LOGDIR/nginx/error.log" \
    -c "$LOGDIR/nginx/nginx.conf"
NGINX_PID=$BG_PID
first=${SIZES%% *}
wait_ready nginx "$NGINX_PID" "http://127.0.0.1:$NPORT/obj-$first"

write_tc_config "$LOGDIR/tailcache.yaml"
start_bg tailcache "$TAILCACHE" -c "$LOGDIR/tailcache.yaml"
PROXY_PID=$BG_PID
wait_ready tailcache "$PROXY_PID" "http://127.0.0.1:$APORT/healthz"

nginx_url() { echo "http://127.0.0.1:$NPORT/obj-$1"; }
tc_url() { echo "http://127.0.0.1:$PPORT/bench?size=$1&cache=1"; }

# Both servers must answer each size with the origin's bytes, tailcache
# from its cache.
for s in $SIZES; do
    curl -sf --max-time 5 -o "$LOGDIR/check.body" "$(nginx_url "$s")" ||
        die "nginx did not serve obj-$s"
    cmp -s "$LOGDIR/check.body" "$LOGDIR/www/obj-$s" || die "nginx's obj-$s differs from the file"
    curl -sf --max-time 5 -o /dev/null "$(tc_url "$s")" || die "tailcache did not serve size $s"
    curl -sf --max-time 5 -D "$LOGDIR/check.head" -o "$LOGDIR/check.body" "$(tc_url "$s")" ||
        die "tailcache did not serve size $s a second time"
    cs=$(tr -d '\r' <"$LOGDIR/check.head" | sed -n 's/^[Cc]ache-[Ss]tatus: //p')
    [[ $cs == *"; hit"* ]] || die "size $s: second fetch through tailcache is not a hit (Cache-Status: $cs)"
    got=$(wc -c <"$LOGDIR/check.body")
    ((got == s)) || die "size $s: tailcache's hit has $got bytes"
    cmp -s "$LOGDIR/check.body" "$LOGDIR/www/obj-$s" || die "size $s: tailcache's hit differs from the origin's bytes"
    echo "size $s: nginx ok; tailcache Cache-Status: $cs, $got bytes" >&2
done

echo "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, $WORKERS worker(s) per server," \
    "rounds $ROUNDS, $(nproc) CPUs shared by wrk and the servers"
echo "nginx       $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') (pid $NGINX_PID) on 127.0.0.1:$NPORT"
echo "tailcache   $TAILCACHE (pid $PROXY_PID) on 127.0.0.1:$PPORT, origin on 127.0.0.1:$OPORT"

for s in $SIZES; do
    warm "$(nginx_url "$s")"
    warm "$(tc_url "$s")"
done

# ---- runs ---------------------------------------------------------------

declare -A BEST_RPS BEST_P50 BEST_P99 BEST_CPU BEST_REQS

run_one() { # server size round
    local server=$1 s=$2 round=$3 url pid key=$1/$2 h0 h1 o0 o1 note=
    if [[ $server == nginx ]]; then
        url=$(nginx_url "$s") pid=$NGINX_PID
    else
        url=$(tc_url "$s") pid=$PROXY_PID
        h0=$(tc_stat cache_hits) o0=$(origin_count bench)
    fi
    measure "$url" "$pid"
    if [[ $server == tailcache ]]; then
        h1=$(tc_stat cache_hits) o1=$(origin_count bench)
        note=" (cache hits $((h1 - h0)) for $R_REQS requests, origin requests $((o1 - o0)))"
        ((o1 == o0)) || echo "  warning: the origin was asked during a hit run" >&2
    fi
    printf 'round %d %-5s %-9s %10s req/s%s\n' "$round" "$(size_label "$s")" "$server" \
        "$R_RPS" "$note" >&2
    [[ -z $R_ERRS ]] || echo "  wrk reported: $R_ERRS" >&2
    if num_gt "$R_RPS" "${BEST_RPS[$key]:-0}"; then
        BEST_RPS[$key]=$R_RPS BEST_P50[$key]=$R_P50 BEST_P99[$key]=$R_P99
        BEST_CPU[$key]=$R_CPU BEST_REQS[$key]=$R_REQS
    fi
}

for ((round = 1; round <= ROUNDS; round++)); do
    for s in $SIZES; do
        if ((round % 2)); then
            run_one nginx "$s" "$round"
            run_one tailcache "$s" "$round"
        else
            run_one tailcache "$s" "$round"
            run_one nginx "$s" "$round"
        fi
    done
done

# ---- report -------------------------------------------------------------

cpu_per_req() { # key
    awk -v c="${BEST_CPU[$1]}" -v n="${BEST_REQS[$1]}" 'BEGIN {
        printf "%.2f", (n > 0 ? c * 1e6 / n : 0) }'
}

echo
printf "%-6s %-10s %12s %10s %10s %8s %12s\n" size server req/s p50_ms p99_ms cpu_s cpu_us/req
for s in $SIZES; do
    for server in nginx tailcache; do
        k=$server/$s
        printf "%-6s %-10s %12.2f %10.3f %10.3f %8.2f %12s\n" "$(size_label "$s")" "$server" \
            "${BEST_RPS[$k]}" "${BEST_P50[$k]}" "${BEST_P99[$k]}" "${BEST_CPU[$k]}" \
            "$(cpu_per_req "$k")"
    done
done
echo
printf "%-6s %14s %14s %18s\n" size "req/s ratio" "p99 ratio" "cpu/req ratio"
for s in $SIZES; do
    awk -v l="$(size_label "$s")" \
        -v tr="${BEST_RPS[tailcache/$s]}" -v nr="${BEST_RPS[nginx/$s]}" \
        -v tp="${BEST_P99[tailcache/$s]}" -v np="${BEST_P99[nginx/$s]}" \
        -v tc="$(cpu_per_req "tailcache/$s")" -v nc="$(cpu_per_req "nginx/$s")" 'BEGIN {
        printf "%-6s %14.2f %14.2f %18.2f\n", l, (nr > 0 ? tr / nr : 0),
            (np > 0 ? tp / np : 0), (nc > 0 ? tc / nc : 0) }'
done
echo "(ratios are tailcache/nginx: req/s above 1, p99 and cpu/req below 1 favour tailcache)"
