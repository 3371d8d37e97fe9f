# shellcheck shell=bash
#
# lib.sh: helpers shared by the benchmark scripts in contrib/bench/. Source
# it, do not run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# What a script provides before calling the helpers:
#   BENCH_NAME        prefix of error messages (default: the script's name)
#   LOGDIR            scratch directory for logs and wrk output (bench_logdir)
#   HZ                clock ticks per second (bench_logdir sets it)
#   THREADS, CONNS    wrk -t and -c (run_wrk)
#   DURATION          seconds per measured wrk run (measure)
#   WRK_SCRIPT        optional Lua script measure passes to wrk (-s), e.g.
#                     to spread requests over many keys
#   KEEP_LOGS         1 keeps LOGDIR on exit
#   WRK_PID           the load generator running now (run_wrk sets it; a
#                     script running another client in the background
#                     sets it too, so that cleanup stops it first)
#   READY_TIMEOUT     seconds wait_ready waits (default 10)
#
# Processes: start servers with start_bg, which records them in BENCH_PIDS;
# bench_traps makes every exit (normal, error, INT, TERM) stop wrk and then
# those servers, newest first, and remove LOGDIR.

BENCH_NAME=${BENCH_NAME:-${0##*/}}
READY_TIMEOUT=${READY_TIMEOUT:-10}
KEEP_LOGS=${KEEP_LOGS:-0}
BENCH_PIDS=()
WRK_PID=
LOGDIR=
BG_PID=

die() {
    echo "$BENCH_NAME: $*" >&2
    exit 1
}

is_uint() {
    [[ $1 =~ ^[0-9]+$ ]]
}

# Dies unless every named variable holds a non-negative integer.
check_uints() {
    local v
    for v in "$@"; do
        is_uint "${!v}" || die "$v must be a non-negative integer (got '${!v}')"
    done
}

# Dies naming the package to install when a tool is missing.
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "$tool not found (apt-get install wrk curl procps python3 nginx-light)"
    done
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

bench_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    stop_pid "$WRK_PID"
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${BENCH_PIDS[i]}"
    done
    if [[ -n $LOGDIR && -d $LOGDIR ]]; then
        if [[ $KEEP_LOGS == 1 ]]; then
            echo "logs kept in $LOGDIR" >&2
        else
            rm -rf "$LOGDIR"
        fi
    fi
    exit "$rc"
}

bench_traps() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Creates LOGDIR (named after the script) and sets HZ.
bench_logdir() {
    HZ=$(getconf CLK_TCK)
    LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/tc-${BENCH_NAME%.sh}.XXXXXX")
}

# start_bg NAME CMD [ARGS...]: runs CMD in the background with its output in
# $LOGDIR/NAME.log, records it for cleanup and sets BG_PID.
start_bg() {
    local name=$1
    shift
    "$@" >"$LOGDIR/$name.log" 2>&1 &
    BG_PID=$!
    BENCH_PIDS+=("$BG_PID")
}

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
# already summed into a process's own counters; forked workers (nginx's)
# are not.
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

# True when number a > number b.
num_gt() {
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'
}

# Runs wrk for $1 seconds with the remaining arguments, output in
# $LOGDIR/wrk.out. In the background plus wait, so that a TERM or INT sent
# to the script is handled at once rather than when wrk finishes.
run_wrk() {
    local secs=$1
    shift
    wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" "$@" >"$LOGDIR/wrk.out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { cat "$LOGDIR/wrk.out" >&2; die "wrk failed"; }
    WRK_PID=
}

# Runs one measured wrk against url while sampling the CPU of pids
# (first: the server under test; the optional second: reported alongside).
# Sets R_RPS, R_P50, R_P99 (ms), R_REQS, R_CPU (seconds, first pid),
# R_CPU_OTHER and R_ERRS.
# shellcheck disable=SC2034 # the R_ results are for the sourcing script
measure() {
    local url=$1 pid=$2 other=${3:-} b0 b1 o0=0 o1=0 out
    b0=$(cpu_ticks "$pid")
    [[ -z $other ]] || o0=$(cpu_ticks "$other")
    # shellcheck disable=SC2086 # two words, -s and the path, or none
    run_wrk "$DURATION" --latency ${WRK_SCRIPT:+-s "$WRK_SCRIPT"} "$url"
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

# Unmeasured load on url for WARMUP seconds (0: none).
warm() {
    ((WARMUP > 0)) || return 0
    run_wrk "$WARMUP" "$1"
}

# Prints the demo origin's request counter for one endpoint (its /stats key:
# bench, slow, ...); the origin listens on 127.0.0.1:$OPORT.
origin_count() {
    curl -s --max-time 2 "http://127.0.0.1:$OPORT/stats" |
        sed -n "s/.*\"$1\":\\([0-9]*\\).*/\\1/p"
}

# Prints one counter from tailcache's admin /stats JSON at 127.0.0.1:$APORT.
tc_stat() {
    curl -s --max-time 2 "http://127.0.0.1:$APORT/stats" |
        sed -n "s/.*\"$1\":\\([0-9]*\\).*/\\1/p"
}

# Writes a tailcache config to file: one cached route to the origin on
# 127.0.0.1:$OPORT, traffic on $PPORT, admin on $APORT, workers $WORKERS,
# no access log (it would dominate the CPU a hit costs).
write_tc_config() {
    cat >"$1" <<EOF
workers: $WORKERS
listen: "127.0.0.1:$PPORT"
admin:
  listen: "127.0.0.1:$APORT"
log:
  level: warn
  error: stderr
  access: "off"
upstreams:
  origin:
    servers: "127.0.0.1:$OPORT"
routes:
  - name: bench
    upstream: origin
    cache:
      enabled: ${TC_CACHE:-true}
EOF
}
