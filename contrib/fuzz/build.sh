#!/bin/sh
# Builds the libFuzzer target for src/http_parser.c:
#
#   contrib/fuzz/build.sh          build contrib/fuzz/fuzz_http_parser
#   contrib/fuzz/build.sh SECONDS  build, then fuzz for SECONDS
#
# A run works on contrib/fuzz/corpus-work (seeded from contrib/fuzz/corpus,
# kept between runs, ignored by git) so the checked-in seeds stay small.
# Crashes are written to contrib/fuzz/crash-*; libFuzzer's log goes to
# contrib/fuzz/fuzz-0.log. Needs clang with compiler-rt (Debian:
# clang-14 and libclang-rt-14-dev). CC and FUZZ_FLAGS override the
# compiler and add libFuzzer flags.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
fuzz=$top/contrib/fuzz
cc=${CC:-clang}

cd "$top"
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Isrc src/http_parser.c contrib/fuzz/fuzz_http_parser.c -o contrib/fuzz/fuzz_http_parser
echo "built contrib/fuzz/fuzz_http_parser"

[ $# -ge 1 ] || exit 0
seconds=$1

work=$fuzz/corpus-work
mkdir -p "$work"
cp "$fuzz"/corpus/* "$work"/

# Tokens that take the fuzzer past the grammar's gates quickly.
dict=$(mktemp)
trap 'rm -f "$dict"' EXIT
cat >"$dict" <<'DICT'
"GET "
"HEAD "
"POST "
"OPTIONS "
"CONNECT "
" HTTP/1.1\x0d\x0a"
" HTTP/1.0\x0d\x0a"
"HTTP/1.1 "
"HTTP/1.0 "
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"Host: "
"Content-Length: "
"Transfer-Encoding: "
"chunked"
"gzip"
"Connection: "
"close"
"keep-alive"
"Expect: "
"100-continue"
"http://"
"https://"
"[::1]"
";a=\"b\""
"0\x0d\x0a\x0d\x0a"
DICT

cd "$fuzz"
status=0
./fuzz_http_parser -max_total_time="$seconds" -jobs=1 -workers=1 -dict="$dict" \
    -max_len=4096 -print_final_stats=1 -artifact_prefix="$fuzz/" ${FUZZ_FLAGS:-} \
    "$work" >/dev/null 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    tail -n 60 fuzz-0.log
else
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' \
        fuzz-0.log | sort -u
fi
ls crash-* leak-* timeout-* oom-* 2>/dev/null && status=1
exit $status
