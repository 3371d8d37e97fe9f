#!/bin/sh
# Installs the Debian packages tailcache needs that are missing.
#   contrib/deps.sh build   what building needs
#   contrib/deps.sh test    building plus what the test suite starts
#   contrib/deps.sh bench   test plus the benchmark tools
# Runs apt-get as root (directly, or through sudo when not root).
set -eu

kind=${1:-build}
pkgs="gcc make autoconf automake pkg-config libevent-dev libssl-dev libhiredis-dev \
libmemcached-dev libyaml-dev libpcre2-dev libxxhash-dev check"
# The tests load the admin listener's /dashboard in headless chromium; a
# font, so that its screenshots have text.
case "$kind" in
build) ;;
test) pkgs="$pkgs python3 curl procps redis-server memcached chromium fonts-dejavu-core" ;;
bench) pkgs="$pkgs python3 curl procps redis-server memcached chromium fonts-dejavu-core \
wrk nginx-light" ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

# promtool (to check /metrics) comes out of Debian's prometheus package
# without installing it: installing would start a Prometheus server, on
# port 9090 at that, where tailcache's admin listener lives by default.
promtool_dir=${TC_TOOLS:-/var/cache/tailcache-tools}
fetch_promtool() {
    [ "$kind" = build ] && return 0
    command -v promtool >/dev/null 2>&1 && return 0
    [ -x "$promtool_dir/usr/bin/promtool" ] && return 0
    echo "tailcache: fetching promtool from Debian's prometheus package into $promtool_dir"
    tmp=$(mktemp -d) && chmod 0777 "$tmp" # apt downloads as the _apt user
    (cd "$tmp" && $SUDO apt-get download -qq prometheus >/dev/null) || { rm -rf "$tmp"; return 1; }
    $SUDO mkdir -p "$promtool_dir"
    $SUDO dpkg-deb -x "$tmp"/prometheus_*.deb "$promtool_dir"
    rm -rf "$tmp"
}

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
need_promtool=no
if [ "$kind" != build ] && ! command -v promtool >/dev/null 2>&1 &&
    [ ! -x "$promtool_dir/usr/bin/promtool" ]; then
    need_promtool=yes
fi
[ -z "$missing" ] && [ "$need_promtool" = no ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "tailcache: run as root (or install sudo) to install:$missing (promtool: $need_promtool)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
    echo "tailcache: installing missing Debian packages:$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
fetch_promtool || { $SUDO apt-get update -qq && fetch_promtool; }
