#!/usr/bin/env bash
#
# tiers.sh: what does a hit in a shared tier (Redis, memcached) cost, and
# what does a dead tier cost? One run measures, with wrk, six loads on one
# tailcache and prints req/s, p50 and p99 for each:
#
#   memory-hot      one key, always a memory hit (the floor)
#   memory-only     KEYS keys on a route with tiers [memory]: the 1 MiB
#                   memory cache holds few of them, so most requests go to
#                   the origin (the baseline for a dead tier)
#   redis           KEYS keys on a route with tiers [memory, redis], warmed:
#                   most requests are Redis hits
#   memcached       the same with tiers [memory, memcached] (two servers)
#   redis-down      the redis route after redis-server was SIGKILLed
#   memcached-down  the memcached route after both memcached were SIGKILLed
#
# and, for the two "down" loads, the latency added over memory-only (the
# same requests, with a dead tier in the way). Memory is kept out of the
# measured L2 path by size, not by a switch: cache.memory is 1m in one
# shard and the keys are KEYS objects of SIZE bytes (16 MiB by default),
# spread uniformly by a wrk Lua script, so a request finds its object in
# memory with probability about 1m / (KEYS * SIZE). Each row reports what
# actually answered during it, from tailcache's counters (memory hits,
# tier hits) and the origin's (requests that reached it): read the rows
# with those numbers, not the row names, in mind.
#
# Setup, all on free 127.0.0.1 ports: redis-server (no persistence), two
# memcached (64 MiB each), the demo origin (/bench?size=N&cache=1&k=K:
# N bytes, public, max-age=3600; k only makes keys distinct) and tailcache
# from the release build with three routes told apart by Host
# (mem.bench, redis.bench, mc.bench). Redis and memcached have the
# timeouts and breaker a production config would: timeout 50ms,
# breaker_failures 3, breaker_cooldown 1s. The warm-up asks for every key
# of the redis and memcached routes once (python3, keep-alive) and waits
# until tailcache counted that many writes to each tier.
#
# Usage: contrib/bench/tiers.sh          (from the source tree; BUILD names
#                                        the release build directory)
#
# Environment:
#   DURATION=10     seconds per measured wrk run (six runs)
#   CONNS=32        wrk connections (wrk -c)
#   THREADS=2       wrk threads (wrk -t)
#   WORKERS=2       tailcache workers
#   KEYS=1000       distinct keys per L2 route
#   SIZE=16384      object size in bytes
#   BUILD=build-rel build tree holding src/tailcache and contrib/demo-origin
#   TAILCACHE=$BUILD/src/tailcache          proxy binary
#   ORIGIN=$BUILD/contrib/demo-origin       origin binary
#   REDIS_SERVER=redis-server  MEMCACHED=memcached
#   KEEP_LOGS=0     1 keeps the temp directory (config, logs, wrk output)
#
# Everything listens on 127.0.0.1 only. Every process started here is
# stopped on exit, however the script ends. wrk, the servers and the tiers
# share this machine's CPUs: compare rows with each other, not with other
# machines.

set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
KEYS=${KEYS:-1000}
SIZE=${SIZE:-16384}
BUILD=${BUILD:-build-rel}
TAILCACHE=${TAILCACHE:-$BUILD/src/tailcache}
ORIGIN=${ORIGIN:-$BUILD/contrib/demo-origin}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
MEMCACHED=${MEMCACHED:-memcached}
KEEP_LOGS=${KEEP_LOGS:-0}

# shellcheck source=contrib/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_traps

# ---- checks -------------------------------------------------------------

check_uints DURATION CONNS THREADS WORKERS KEYS SIZE
((DURATION > 0 && DURATION <= 600)) || die "DURATION must be in 1..600"
((CONNS > 0 && THREADS > 0 && WORKERS > 0)) || die "CONNS, THREADS and WORKERS must be positive"
((THREADS <= CONNS)) || die "THREADS ($THREADS) cannot exceed CONNS ($CONNS)"
((WORKERS <= 256)) || die "WORKERS must be at most 256"
((KEYS >= 100 && KEYS <= 100000)) || die "KEYS must be in 100..100000"
((SIZE >= 1024 && SIZE <= 1048576)) || die "SIZE must be in 1024..1048576"
((KEYS * SIZE >= 8 * 1048576)) ||
    die "KEYS * SIZE must be at least 8 MiB, or the 1 MiB memory cache answers too much"
need_tools wrk curl awk python3 "$REDIS_SERVER" "$MEMCACHED"
[[ -x $ORIGIN ]] ||
    die "no demo origin at $ORIGIN (build it: make contrib/demo-origin, or set BUILD/ORIGIN)"
[[ -x $TAILCACHE ]] || die "no tailcache at $TAILCACHE (build it, or set BUILD/TAILCACHE)"
bench_logdir

# ---- helpers ------------------------------------------------------------

# Polls until something accepts on 127.0.0.1:port, or the process dies, or
# READY_TIMEOUT passes.
wait_tcp() {
    local name=$1 pid=$2 port=$3 deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || { show_log "$name"; die "$name exited during start-up"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    show_log "$name"
    die "$name did not accept on 127.0.0.1:$port within ${READY_TIMEOUT}s"
}

# Kills one of our servers at once (the tier "dies"): SIGKILL and reap.
kill_now() {
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# The wrk script: GET /bench?size=$SIZE&cache=1&k=K with K uniform in
# 1..BENCH_KEYS, Host BENCH_HOST. Each wrk thread seeds its own generator.
cat >"$LOGDIR/keys.lua" <<'EOF'
local keys = tonumber(os.getenv("BENCH_KEYS")) or 1
local host = os.getenv("BENCH_HOST") or "localhost"
local size = os.getenv("BENCH_SIZE") or "16384"
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("seed", counter)
end

function init(args)
    math.randomseed(os.time() * 1000 + (seed or 0))
end

function request()
    local k = keys > 1 and math.random(keys) or 1
    return wrk.format("GET", "/bench?size=" .. size .. "&cache=1&k=" .. k, {["Host"] = host})
end
EOF

# The warm-up client: asks for keys 1..N of one host once each over a
# keep-alive connection; prints the Cache-Status values seen, counted.
cat >"$LOGDIR/warm.py" <<'EOF'
import collections, http.client, sys
port, host, n, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
seen = collections.Counter()
for k in range(1, n + 1):
    c.request("GET", "/bench?size=%s&cache=1&k=%d" % (size, k), headers={"Host": host})
    r = c.getresponse()
    body = r.read()
    if r.status != 200 or len(body) != int(size):
        sys.exit("key %d on %s: status %d, %d bytes" % (k, host, r.status, len(body)))
    cs = r.getheader("Cache-Status") or "-"
    seen[cs.split(";")[1].strip() + (";" + cs.split(";")[-1] if "detail=" in cs else "")] += 1
print(" ".join("%s=%d" % kv for kv in sorted(seen.items())))
EOF

# ---- servers ------------------------------------------------------------

read -r OPORT PPORT APORT RPORT M1PORT M2PORT <<<"$(free_ports 6)"

start_bg origin "$ORIGIN" -q -l "127.0.0.1:$OPORT"
ORIGIN_PID=$BG_PID
wait_ready origin "$ORIGIN_PID" "http://127.0.0.1:$OPORT/stats"

start_bg redis "$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$LOGDIR" --logfile ''
REDIS_PID=$BG_PID
wait_tcp redis "$REDIS_PID" "$RPORT"

MC_USER=()
(($(id -u) == 0)) && MC_USER=(-u root)
start_bg memcached1 "$MEMCACHED" -l 127.0.0.1 -p "$M1PORT" -U 0 "${MC_USER[@]}" -m 64
MC1_PID=$BG_PID
start_bg memcached2 "$MEMCACHED" -l 127.0.0.1 -p "$M2PORT" -U 0 "${MC_USER[@]}" -m 64
MC2_PID=$BG_PID
wait_tcp memcached1 "$MC1_PID" "$M1PORT"
wait_tcp memcached2 "$MC2_PID" "$M2PORT"

route() { # name host tiers
    cat <<EOF
  - name: $1
    host: $2
    upstream: origin
    cache:
      enabled: true
      tiers: [$3]
EOF
}

cat >"$LOGDIR/tailcache.yaml" <<EOF
workers: $WORKERS
listen: "127.0.0.1:$PPORT"
admin:
  listen: "127.0.0.1:$APORT"
log:
  level: warn
  error: stderr
  access: "off"
cache:
  memory:
    size: 1m
    shards: 1
  redis:
    address: "127.0.0.1:$RPORT"
    prefix: "bench:"
    timeout: 50ms
    connect_timeout: 100ms
    backoff_min: 100ms
    backoff_max: 1s
    breaker_failures: 3
    breaker_cooldown: 1s
  memcached:
    servers: ["127.0.0.1:$M1PORT", "127.0.0.1:$M2PORT"]
    timeout: 50ms
    threads: 4
    retry: 1s
upstreams:
  origin:
    servers: "127.0.0.1:$OPORT"
routes:
$(route memory mem.bench memory)
$(route redis redis.bench "memory, redis")
$(route memcached mc.bench "memory, memcached")
EOF
start_bg tailcache "$TAILCACHE" -c "$LOGDIR/tailcache.yaml"
PROXY_PID=$BG_PID
wait_ready tailcache "$PROXY_PID" "http://127.0.0.1:$APORT/healthz"

curl -sf --max-time 5 -o /dev/null -H "Host: mem.bench" \
    "http://127.0.0.1:$PPORT/bench?size=$SIZE&cache=1&k=1" || die "tailcache did not serve /bench"

# ---- warm-up ------------------------------------------------------------

# wait_stat NAME VALUE: until tailcache's counter NAME reaches VALUE (bounded).
wait_stat() {
    local name=$1 want=$2 deadline=$((SECONDS + 30)) v
    while ((SECONDS < deadline)); do
        v=$(tc_stat "$name")
        [[ -n $v ]] || die "tailcache's /stats has no $name"
        ((v >= want)) && return 0
        sleep 0.2
    done
    die "$name is $(tc_stat "$name") after 30s, want $want"
}

for host in redis.bench mc.bench; do
    seen=$(python3 "$LOGDIR/warm.py" "$PPORT" "$host" "$KEYS" "$SIZE") || die "warming $host failed"
    echo "warmed $KEYS keys on $host: $seen" >&2
done
wait_stat tier_redis_stores "$KEYS"
wait_stat tier_memcached_stores "$KEYS"

echo "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, $KEYS keys of $SIZE bytes per L2 route," \
    "memory cache 1m, $WORKERS worker(s), $(nproc) CPUs shared by wrk, tailcache, the origin," \
    "redis and memcached"
echo "tailcache   $TAILCACHE (pid $PROXY_PID) on 127.0.0.1:$PPORT; origin :$OPORT, redis :$RPORT," \
    "memcached :$M1PORT :$M2PORT"

# ---- runs ---------------------------------------------------------------

WRK_SCRIPT=$LOGDIR/keys.lua
export BENCH_SIZE=$SIZE
ROWS=()
declare -A P50 P99

run() { # label host keys
    local label=$1 mh0 rh0 ch0 o0 mh1 rh1 ch1 o1 l2 mem
    export BENCH_HOST=$2 BENCH_KEYS=$3
    mh0=$(tc_stat cache_hits) rh0=$(tc_stat tier_redis_hits) ch0=$(tc_stat tier_memcached_hits)
    o0=$(origin_count bench)
    measure "http://127.0.0.1:$PPORT/" "$PROXY_PID"
    mh1=$(tc_stat cache_hits) rh1=$(tc_stat tier_redis_hits) ch1=$(tc_stat tier_memcached_hits)
    o1=$(origin_count bench)
    P50[$label]=$R_P50 P99[$label]=$R_P99
    # cache_hits counts every hit, a tier's included.
    l2=$((rh1 - rh0 + ch1 - ch0))
    mem=$((mh1 - mh0 - l2))
    ROWS+=("$(printf '%-15s %11s %9.3f %9.3f %9s %9s %9s %9s %7s' "$label" "$R_RPS" "$R_P50" \
        "$R_P99" "$R_REQS" "$mem" "$l2" "$((o1 - o0))" \
        "$([[ -z $R_ERRS ]] && echo 0 || echo yes)")")
    echo "$label: $R_RPS req/s, p50 $R_P50 ms, p99 $R_P99 ms; memory hits $mem," \
        "redis hits $((rh1 - rh0)), memcached hits $((ch1 - ch0)), origin $((o1 - o0))" \
        "of $R_REQS requests" >&2
    [[ -z $R_ERRS ]] || echo "  wrk reported: $R_ERRS" >&2
}

run memory-hot mem.bench 1
run memory-only mem.bench "$KEYS"
run redis redis.bench "$KEYS"
run memcached mc.bench "$KEYS"

kill_now "$REDIS_PID"
echo "redis-server (pid $REDIS_PID) killed" >&2
run redis-down redis.bench "$KEYS"

kill_now "$MC1_PID"
kill_now "$MC2_PID"
echo "both memcached (pids $MC1_PID $MC2_PID) killed" >&2
run memcached-down mc.bench "$KEYS"

kill -0 "$PROXY_PID" 2>/dev/null || { show_log tailcache; die "tailcache died"; }

# ---- report -------------------------------------------------------------

echo
printf '%-15s %11s %9s %9s %9s %9s %9s %9s %7s\n' load req/s p50_ms p99_ms requests \
    mem_hits l2_hits origin errors
printf '%s\n' "${ROWS[@]}"
echo
for d in redis-down memcached-down; do
    awk -v l="$d" -v a50="${P50[$d]}" -v a99="${P99[$d]}" -v b50="${P50[memory-only]}" \
        -v b99="${P99[memory-only]}" 'BEGIN {
        printf "%-15s adds %+.3f ms at p50, %+.3f ms at p99 over memory-only\n", l,
            a50 - b50, a99 - b99 }'
done
echo "(l2_hits: tier_redis_hits + tier_memcached_hits; mem_hits: cache_hits minus l2_hits;"
echo " origin: requests the demo origin saw; errors: wrk's non-2xx or socket errors)"
