#!/usr/bin/env bash
#
# coalesce.sh: how well does tailcache collapse a stampede? Each round, N
# clients ask for the same cold, cacheable, slow URL at once; one request
# (the leader) should go to the origin and the others wait for its response
# (Cache-Status: fwd=miss; collapsed). Per round it prints how many requests
# reached the origin, tailcache's own miss and coalesced counters, the
# leader's latency, the waiters' latency (p50, p99, max) and what waiting
# added over the leader (waiter p50 - leader, waiter max - leader).
#
# The URL is the demo origin's /slow (120-180 ms, public, max-age=30) with a
# query that differs every round (?run=ID&round=K), so every round starts on
# a key nobody asked for before. The client is a small python3 (stdlib)
# program: it opens all N connections first, then sends the N requests
# back to back from one epoll loop and times each request from its own send
# to the last byte of its response. It also checks that every client got
# the same body (/slow's carries a random nonce: identical bodies mean one
# origin response served everyone).
#
# Usage: contrib/bench/coalesce.sh        (from the source or build tree)
#
# Environment:
#   CLIENTS=200     concurrent clients (connections) per round
#   ROUNDS=10       rounds, each on a fresh key
#   WORKERS=2       tailcache worker threads (more than one: waiters on
#                   other threads than the leader's are woken across threads)
#   TIMEOUT=30      seconds a round may take before its stragglers count as
#                   errors
#   URL_PATH=/slow  origin path asked for (must be cacheable and slow)
#   BUILD=.         build tree holding src/tailcache and contrib/demo-origin
#   TAILCACHE=$BUILD/src/tailcache          proxy binary
#   ORIGIN=$BUILD/contrib/demo-origin       origin binary
#   KEEP_LOGS=0     1 keeps the logs directory
#
# Everything listens on 127.0.0.1 only. Every process started here is
# stopped on exit, however the script ends. The client is one Python thread:
# sending N requests takes it a few ms ("spread" below), and reading N
# responses that arrive together adds up to a few ms to the last ones, so
# small differences at the tail are partly the client's.

set -euo pipefail

CLIENTS=${CLIENTS:-200}
ROUNDS=${ROUNDS:-10}
WORKERS=${WORKERS:-2}
TIMEOUT=${TIMEOUT:-30}
URL_PATH=${URL_PATH:-/slow}
BUILD=${BUILD:-.}
TAILCACHE=${TAILCACHE:-$BUILD/src/tailcache}
ORIGIN=${ORIGIN:-$BUILD/contrib/demo-origin}
KEEP_LOGS=${KEEP_LOGS:-0}

# shellcheck source=contrib/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_traps

# ---- checks -------------------------------------------------------------

check_uints CLIENTS ROUNDS WORKERS TIMEOUT
((CLIENTS > 1 && ROUNDS > 0 && WORKERS > 0 && TIMEOUT > 0)) ||
    die "CLIENTS must be at least 2; ROUNDS, WORKERS and TIMEOUT positive"
((WORKERS <= 256)) || die "WORKERS must be at most 256"
[[ $URL_PATH == /* && $URL_PATH != *'?'* ]] || die "URL_PATH must be a path without a query"
need_tools curl awk python3 sort
[[ -x $ORIGIN ]] ||
    die "no demo origin at $ORIGIN (build it: make contrib/demo-origin, or set BUILD/ORIGIN)"
[[ -x $TAILCACHE ]] || die "no tailcache at $TAILCACHE (build it, or set BUILD/TAILCACHE)"
(($(ulimit -n) >= CLIENTS + 64)) ||
    die "open file limit $(ulimit -n) is too low for $CLIENTS clients (ulimit -n)"
bench_logdir
# Origin endpoint key in its /stats: the path's first segment.
OKEY=${URL_PATH#/}
OKEY=${OKEY%%/*}

# ---- the client -----------------------------------------------------------

# Args: port path clients timeout_s added_file after_file. Prints one line:
#   leaders collapsed hits errors leader_ms origin_ms waiters w_p50 w_p99
#   w_max spread_ms bodies
# appends each waiter's latency minus the leader's to added_file, and how
# long after the leader's response each waiter's completed to after_file.
cat >"$LOGDIR/client.py" <<'EOF'
import math, select, socket, sys, time

port, path, n, timeout, added_file, after_file = (int(sys.argv[1]), sys.argv[2],
                                                  int(sys.argv[3]), float(sys.argv[4]),
                                                  sys.argv[5], sys.argv[6])
host = "127.0.0.1"

def dechunk(b):
    out, i = bytearray(), 0
    while True:
        j = b.index(b"\r\n", i)
        size = int(b[i:j].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += b[j + 2:j + 2 + size]
        i = j + 2 + size + 2

socks = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    socks.append(s)
time.sleep(0.1)  # let the proxy accept them all: time requests, not handshakes

req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: coalesce.sh\r\n\r\n"
       % (path, host, port)).encode()
ep = select.epoll(n)
idx = {}
for i, s in enumerate(socks):
    ep.register(s.fileno(), select.EPOLLIN)
    idx[s.fileno()] = i
sent = [0.0] * n
done = [None] * n
buf = [bytearray() for _ in range(n)]
head = [None] * n  # (status, headers, body offset, body end or None, chunked)
for i, s in enumerate(socks):
    sent[i] = time.perf_counter()
    s.send(req)  # a few dozen bytes: always fits the socket buffer

left, deadline = n, time.perf_counter() + timeout
while left and time.perf_counter() < deadline:
    events = ep.poll(0.2)
    # The time the responses were there, not when this loop got to each.
    now = time.perf_counter()
    for fd, _ in events:
        i = idx[fd]
        try:
            data = socks[i].recv(1 << 16)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        b = buf[i]
        b += data
        if head[i] is None:
            k = b.find(b"\r\n\r\n")
            if k >= 0:
                lines = b[:k].decode("latin-1").split("\r\n")
                hdrs = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    hdrs[name.strip().lower()] = value.strip()
                chunked = "chunked" in hdrs.get("transfer-encoding", "").lower()
                end = None
                if "content-length" in hdrs and not chunked:
                    end = k + 4 + int(hdrs["content-length"])
                head[i] = (int(lines[0].split()[1]), hdrs, k + 4, end, chunked)
        h = head[i]
        complete = False
        if h is not None:
            if h[3] is not None:
                complete = len(b) >= h[3]
            elif h[4]:
                complete = b.endswith(b"0\r\n\r\n")
            else:
                complete = not data
        if complete or not data:
            if complete:
                done[i] = now
            ep.unregister(fd)
            left -= 1

leaders, waiters, hits, errors, bodies = [], [], 0, 0, set()
finished = []  # waiters' completion times, for after_file
origin_ms = "-"
for i in range(n):
    h = head[i]
    if done[i] is None or h is None or h[0] != 200:
        errors += 1
        continue
    body = bytes(buf[i][h[2]:h[3]]) if h[3] is not None else bytes(buf[i][h[2]:])
    if h[4]:
        body = dechunk(body)
    bodies.add(body)
    ms = (done[i] - sent[i]) * 1000
    cs = h[1].get("cache-status", "")
    if "collapsed" in cs or "; hit" in cs:
        hits += "; hit" in cs
        waiters.append(ms)
        finished.append(done[i])
    else:
        leaders.append((ms, done[i]))
        origin_ms = h[1].get("x-origin-time-ms", "-")

def pct(v, p):
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]

fmt = lambda x: "%.2f" % x
# Should there be several leaders (no coalescing), the fastest stands for all.
leader, leader_done = min(leaders) if leaders else (None, None)
waiters.sort()
w = [fmt(pct(waiters, 50)), fmt(pct(waiters, 99)), fmt(waiters[-1])] if waiters else ["-"] * 3
if leader is not None:
    with open(added_file, "a") as f:
        f.write("".join("%.3f\n" % (x - leader) for x in waiters))
    # How much later than the leader's response each waiter's completed
    # (unaffected by when each request was sent).
    with open(after_file, "a") as f:
        f.write("".join("%.3f\n" % ((t - leader_done) * 1000) for t in finished))
print(len(leaders), len(waiters) - hits, hits, errors,
      fmt(leader) if leader is not None else "-", origin_ms, len(waiters), *w,
      fmt((sent[-1] - sent[0]) * 1000), len(bodies))
EOF

# ---- servers ------------------------------------------------------------

read -r OPORT PPORT APORT <<<"$(free_ports 3)"

start_bg origin "$ORIGIN" -q -l "127.0.0.1:$OPORT"
ORIGIN_PID=$BG_PID
wait_ready origin "$ORIGIN_PID" "http://127.0.0.1:$OPORT/stats"

write_tc_config "$LOGDIR/tailcache.yaml"
start_bg tailcache "$TAILCACHE" -c "$LOGDIR/tailcache.yaml"
PROXY_PID=$BG_PID
wait_ready tailcache "$PROXY_PID" "http://127.0.0.1:$APORT/healthz"

# The path must be cacheable: a second request on a fresh key is a hit.
probe="$URL_PATH?run=probe-$$"
curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$PPORT$probe" ||
    die "tailcache did not serve $probe"
cs=$(curl -sf --max-time 5 -D - -o /dev/null "http://127.0.0.1:$PPORT$probe" |
    tr -d '\r' | sed -n 's/^[Cc]ache-[Ss]tatus: //p')
[[ $cs == *"; hit"* ]] || die "$URL_PATH is not cached by tailcache (Cache-Status: $cs)"

RUN_ID=$$-$RANDOM
echo "$CLIENTS clients at once per round on a fresh key ($URL_PATH?run=$RUN_ID&round=K)," \
    "$ROUNDS rounds, tailcache $WORKERS worker(s), $(nproc) CPUs"
echo "tailcache   $TAILCACHE (pid $PROXY_PID) on 127.0.0.1:$PPORT, origin on 127.0.0.1:$OPORT"

# ---- rounds -------------------------------------------------------------

: >"$LOGDIR/added.txt"
: >"$LOGDIR/after.txt"
ROWS=()
bad=0
for ((round = 1; round <= ROUNDS; round++)); do
    o0=$(origin_count "$OKEY") m0=$(tc_stat cache_misses) c0=$(tc_stat cache_coalesced)
    python3 "$LOGDIR/client.py" "$PPORT" "$URL_PATH?run=$RUN_ID&round=$round" "$CLIENTS" \
        "$TIMEOUT" "$LOGDIR/added.txt" "$LOGDIR/after.txt" >"$LOGDIR/client.out" 2>"$LOGDIR/client.log" &
    WRK_PID=$!
    wait "$WRK_PID" || { show_log client; die "round $round: the client failed"; }
    WRK_PID=
    o1=$(origin_count "$OKEY") m1=$(tc_stat cache_misses) c1=$(tc_stat cache_coalesced)
    read -r leaders collapsed hits errors leader origin_ms waiters w50 w99 wmax spread bodies \
        <"$LOGDIR/client.out"
    origin=$((o1 - o0))
    ((origin == 1 && errors == 0 && bodies == 1)) || bad=$((bad + 1))
    ROWS+=("$(awk -v r="$round" -v o="$origin" -v m=$((m1 - m0)) -v c=$((c1 - c0)) \
        -v h="$hits" -v e="$errors" -v b="$bodies" -v l="$leader" -v om="$origin_ms" \
        -v w50="$w50" -v w99="$w99" -v wm="$wmax" -v s="$spread" 'BEGIN {
        d50 = (l == "-" || w50 == "-") ? "-" : sprintf("%.2f", w50 - l)
        dmx = (l == "-" || wm == "-") ? "-" : sprintf("%.2f", wm - l)
        printf "%-5s %6s %6s %9s %5s %4s %6s %9s %6s %8s %8s %8s %9s %9s %7s\n",
            r, o, m, c, h, e, b, l, om, w50, w99, wm, d50, dmx, s }')")
    echo "round $round: origin requests $origin, leaders $leaders, collapsed $collapsed," \
        "hits $hits, errors $errors, waiters $waiters, leader ${leader} ms" >&2
done

# ---- report -------------------------------------------------------------

echo
printf "%-5s %6s %6s %9s %5s %4s %6s %9s %6s %8s %8s %8s %9s %9s %7s\n" \
    round origin misses coalesced hits errs bodies leader_ms org_ms \
    w_p50 w_p99 w_max p50-ldr max-ldr spread
printf '%s\n' "${ROWS[@]}"
# summary FILE TEXT: p50, p99 and max of the numbers in FILE.
summary() {
    [[ -s $1 ]] || return 0
    sort -n "$1" | awk -v t="$2" '{ v[NR] = $1 } END {
        printf "all rounds, %d waiters: %s p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", NR, t,
            v[int((NR * 50 + 99) / 100)], v[int((NR * 99 + 99) / 100)], v[NR] }'
}
summary "$LOGDIR/added.txt" "latency minus their leader's:"
summary "$LOGDIR/after.txt" "response complete after the leader's:"
echo "(origin: requests the origin saw; misses/coalesced/hits: tailcache's counters and"
echo " Cache-Status; bodies: distinct bodies received, 1 = everyone got the leader's response;"
echo " w_*: waiters' latency, ms; spread: ms between the first and the last request sent)"
((bad == 0)) || echo "$bad round(s) did not collapse to exactly one origin request" >&2
