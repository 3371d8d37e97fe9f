#!/usr/bin/env bash
#
# tls.sh: tailcache against nginx over TLS, with the same certificate, on
# this machine. One run measures, for each server:
#
#   keep-alive  memory hits over long-lived TLS connections (wrk -c CONNS):
#               what TLS adds to the hit path once connections are up
#   handshake   a new TLS connection per request (Connection: close): full
#               handshakes per second (wrk does not resume sessions)
#
# and prints req/s, p50, p99 and the server CPU per request, best of
# ROUNDS, with the tailcache/nginx ratios. The certificate is a fresh
# ECDSA P-256 one (openssl req), TLS 1.3 on both (OpenSSL defaults).
# nginx serves the object as a static file (sendfile off under TLS);
# tailcache answers it from its memory cache, fetched from the demo origin
# before measuring (the second fetch must be a hit).
#
# Usage: contrib/bench/tls.sh   (BUILD: the release build directory)
#
# Environment: DURATION=10, CONNS=32, THREADS=1, WORKERS=1, SIZE=1024,
# ROUNDS=2, WARMUP=1, BUILD=., NGINX=nginx, KEEP_LOGS=0.
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-1}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-1}
BUILD=${BUILD:-.}
TAILCACHE=${TAILCACHE:-$BUILD/src/tailcache}
ORIGIN=${ORIGIN:-$BUILD/contrib/demo-origin}
NGINX=${NGINX:-nginx}
KEEP_LOGS=${KEEP_LOGS:-0}

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_traps

check_uints DURATION CONNS THREADS WORKERS SIZE ROUNDS WARMUP
((DURATION > 0 && CONNS > 0 && THREADS > 0 && WORKERS > 0 && ROUNDS > 0 && SIZE > 0)) ||
    die "DURATION, CONNS, THREADS, WORKERS, ROUNDS and SIZE must be positive"
need_tools wrk curl awk openssl "$NGINX"
[[ -x $ORIGIN ]] || die "no demo origin at $ORIGIN (set BUILD or ORIGIN)"
[[ -x $TAILCACHE ]] || die "no tailcache at $TAILCACHE (set BUILD or TAILCACHE)"
bench_logdir
chmod 755 "$LOGDIR"
mkdir -m 755 "$LOGDIR/www" "$LOGDIR/nginx"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" \
    -keyout "$LOGDIR/key.pem" -out "$LOGDIR/cert.pem" 2>/dev/null || die "openssl req failed"
chmod 644 "$LOGDIR/key.pem" "$LOGDIR/cert.pem"

read -r OPORT PPORT APORT TPORT NPORT <<<"$(free_ports 5)"
start_bg origin "$ORIGIN" -q -l "127.0.0.1:$OPORT"
wait_ready origin "$BG_PID" "http://127.0.0.1:$OPORT/stats"
curl -sf --max-time 10 -o "$LOGDIR/www/obj" "http://127.0.0.1:$OPORT/bench?size=$SIZE&cache=1" ||
    die "could not fetch the object from the origin"
chmod 644 "$LOGDIR/www/obj"

cat >"$LOGDIR/nginx/nginx.conf" <<NGX
daemon off;
worker_processes $WORKERS;
pid $LOGDIR/nginx/nginx.pid;
error_log $LOGDIR/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $LOGDIR/nginx/client_body;
    proxy_temp_path $LOGDIR/nginx/proxy;
    fastcgi_temp_path $LOGDIR/nginx/fastcgi;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:$NPORT ssl;
        ssl_certificate $LOGDIR/cert.pem;
        ssl_certificate_key $LOGDIR/key.pem;
        root $LOGDIR/www;
    }
}
NGX
start_bg nginx "$NGINX" -p "$LOGDIR/nginx" -e "$LOGDIR/nginx/error.log" -c "$LOGDIR/nginx/nginx.conf"
NGINX_PID=$BG_PID

write_tc_config "$LOGDIR/tailcache.yaml"
cat >>"$LOGDIR/tailcache.yaml" <<TLS
tls:
  listen: "127.0.0.1:$TPORT"
  certificates:
    - {cert: "$LOGDIR/cert.pem", key: "$LOGDIR/key.pem"}
  session_tickets: false
TLS
start_bg tailcache "$TAILCACHE" -c "$LOGDIR/tailcache.yaml"
PROXY_PID=$BG_PID
wait_ready tailcache "$PROXY_PID" "http://127.0.0.1:$APORT/healthz"

nginx_url="https://127.0.0.1:$NPORT/obj"
tc_url="https://127.0.0.1:$TPORT/bench?size=$SIZE&cache=1"
for _ in $(seq 1 50); do curl -skf --max-time 1 -o /dev/null "$nginx_url" && break; sleep 0.1; done
curl -skf --max-time 5 -o /dev/null "$nginx_url" || die "nginx does not answer over TLS"
curl -skf --max-time 5 -o /dev/null "$tc_url" || die "tailcache does not answer over TLS"
cs=$(curl -skf --max-time 5 -D - -o /dev/null "$tc_url" | tr -d '\r' | sed -n 's/^[Cc]ache-[Ss]tatus: //p')
[[ $cs == *"hit"* ]] || die "the second fetch through tailcache over TLS is not a hit ($cs)"

echo "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, $SIZE-byte object, $WORKERS worker(s) each," \
    "best of $ROUNDS, $(nproc) CPUs shared by wrk, the origin and the servers"
echo "nginx $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(openssl version)"

declare -A BR BP50 BP99 BCPU
for mode in keepalive handshake; do
    hdr=()
    [[ $mode == handshake ]] && hdr=(-H "Connection: close")
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order="tailcache nginx"; else order="nginx tailcache"; fi
        for srv in $order; do
            if [[ $srv == nginx ]]; then url=$nginx_url pid=$NGINX_PID; else url=$tc_url pid=$PROXY_PID; fi
            ((WARMUP > 0)) && run_wrk "$WARMUP" "${hdr[@]}" "$url"
            b0=$(cpu_ticks "$pid")
            run_wrk "$DURATION" --latency "${hdr[@]}" "$url"
            b1=$(cpu_ticks "$pid")
            out=$(cat "$LOGDIR/wrk.out")
            rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
            p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
            p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
            reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
            errs=$(awk '/^  Non-2xx|^  Socket errors/' <<<"$out")
            cpu=$(awk -v t=$((b1 - b0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
            echo "round $r $mode $srv: $rps req/s, p50 $p50 ms, p99 $p99 ms, $cpu us CPU/request${errs:+, $errs}"
            k="$mode $srv"
            if [[ -z ${BR[$k]:-} ]] || num_gt "$rps" "${BR[$k]}"; then
                BR[$k]=$rps BP50[$k]=$p50 BP99[$k]=$p99 BCPU[$k]=$cpu
            fi
        done
    done
done

printf '\n%-10s %-10s %10s %8s %8s %12s\n' load server req/s p50_ms p99_ms cpu_us/req
for mode in keepalive handshake; do
    for srv in tailcache nginx; do
        k="$mode $srv"
        printf '%-10s %-10s %10s %8s %8s %12s\n' "$mode" "$srv" "${BR[$k]}" "${BP50[$k]}" "${BP99[$k]}" "${BCPU[$k]}"
    done
    awk -v a="${BR[$mode tailcache]}" -v b="${BR[$mode nginx]}" -v c="${BCPU[$mode tailcache]}" \
        -v d="${BCPU[$mode nginx]}" -v m="$mode" \
        'BEGIN { printf "%-10s tailcache/nginx: req/s %.2f, CPU per request %.2f\n", m, a / b, c / d }'
done
