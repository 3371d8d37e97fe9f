#!/usr/bin/env bash
#
# evict-sim.sh: run the eviction simulator (contrib/bench/evict_sim.c),
# which prints LRU against S3-FIFO hit ratios on Zipf traces with and
# without one-off scans, and the cache's memory per object.
#
# Uses the binary the build made ($BUILD/contrib/bench/evict-sim); without
# one, compiles it from the source tree into a temporary directory (needs
# cc, pkg-config and libxxhash-dev). Arguments go to evict-sim (-s nshards).
#
# Usage: contrib/bench/evict-sim.sh [-s nshards]
#
# Environment:
#   BUILD=.   build tree holding contrib/bench/evict-sim
#   CC=cc     compiler for the fallback build
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BUILD:-.}/contrib/bench/evict-sim
if [ ! -x "$bin" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    bin=$tmp/evict-sim
    # shellcheck disable=SC2046
    "${CC:-cc}" -std=gnu11 -D_GNU_SOURCE -O2 -pthread -I"$src/src" \
        "$src/contrib/bench/evict_sim.c" "$src/src/cache.c" "$src/src/obj.c" "$src/src/util.c" \
        $(pkg-config --cflags --libs libxxhash) -lm -o "$bin"
fi
"$bin" "$@"
