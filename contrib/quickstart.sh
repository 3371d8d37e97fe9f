#!/bin/bash
# Installs what is missing, builds tailcache, and runs it with
# conf/tailcache.yaml in front of the demo origin. Ctrl-C stops both.
#
#   contrib/quickstart.sh
# Environment: BUILD (build dir, default build), JOBS (make -j, default 2).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${BUILD:-build}

contrib/deps.sh build
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    autoreconf -fi
fi
mkdir -p "$build"
if [ ! -f "$build/Makefile" ] || [ configure -nt "$build/Makefile" ]; then
    (cd "$build" && ../configure)
fi
make -C "$build" -j"${JOBS:-2}"

for port in 8080 8081 9090; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port 127.0.0.1:$port is already in use; stop what runs there first" >&2
        exit 1
    fi
done

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$build/contrib/demo-origin" -l 127.0.0.1:8081 -q &
pids+=($!)
"$build/src/tailcache" -c conf/tailcache.yaml &
pids+=($!)

for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
    sleep 0.1
done

cat <<'MSG'

tailcache is running in front of the demo origin.

  proxy:        http://127.0.0.1:8080/             (the demo origin's index)
                curl -i http://127.0.0.1:8080/products/42   (twice: a miss, then
                                                             a hit; see Cache-Status)
                curl -i http://127.0.0.1:8080/slow          (~150 ms, then ~0)
                curl -i http://127.0.0.1:8080/me            (personal: never stored)
  demo origin:  http://127.0.0.1:8081/             (direct, to compare)
  dashboard:    http://127.0.0.1:9090/dashboard    (live per-route latency, hit ratio,
                                                    miss causes; open it in a browser)
  admin:        http://127.0.0.1:9090/stats        (counters and analytics as JSON)
                http://127.0.0.1:9090/metrics      (Prometheus)
                http://127.0.0.1:9090/healthz

The access log is printed below. Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
