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
case "$kind" in
build) ;;
test) pkgs="$pkgs python3 curl procps redis-server memcached" ;;
bench) pkgs="$pkgs python3 curl procps redis-server memcached wrk nginx-light" ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "tailcache: installing missing Debian packages:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "tailcache: run as root (or install sudo) to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
