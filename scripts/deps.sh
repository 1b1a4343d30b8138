#!/usr/bin/env bash
# Install the Debian 12 packages keten needs to build and test (run as root).
set -euo pipefail
packages=(
  meson ninja-build pkg-config gcc
  libzmq3-dev libsodium-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev
  libjansson-dev libcmocka-dev libmicrohttpd-dev lmdb-utils python3
)
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
