#!/usr/bin/env bash
# Install the Debian 12 packages keten needs to build and test (run as root).
set -euo pipefail
# With --packaging, also what `dpkg-buildpackage -us -uc -b` needs (the
# packaging test, tests/packaging/deb_build.sh).
# With --test, also what only the tests use (Chromium renders the auditors'
# HTML report).
packaging=0
testing=0
for arg in "$@"; do
  case "$arg" in
    --packaging) packaging=1 ;;
    --test) testing=1 ;;
    *) echo "usage: scripts/deps.sh [--test] [--packaging]" >&2; exit 2 ;;
  esac
done
packages=(
  meson ninja-build pkg-config gcc
  libzmq3-dev libsodium-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev
  libjansson-dev libcmocka-dev libmicrohttpd-dev lmdb-utils python3
  libinih-dev libsystemd-dev scdoc systemd man-db
)
if [ "$testing" -eq 1 ]; then
  packages+=(chromium)
fi
if [ "$packaging" -eq 1 ]; then
  packages+=(debhelper dpkg-dev build-essential fakeroot)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "keten: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
