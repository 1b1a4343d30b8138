#!/usr/bin/env bash
# Install the Debian 12 packages keten needs to build and test (run as root).
set -euo pipefail
# With --packaging, also what `dpkg-buildpackage -us -uc -b` needs and what
# the packaging test (tests/packaging/deb_build.sh) calls.
# With --test, also what only the tests call (curl, Chromium).
# Every tool that a test or script calls is named here, even one that a
# minimal Debian 12 already has: CI runs scripts/test.sh in a root that holds
# only git and ca-certificates (.ci/run), so a tool missing here fails CI.
# Benchmarks install their own (tests/bench/compare_jetstream.sh).
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
  libzmq3-dev libsodium-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev
  libjansson-dev libcmocka-dev libmicrohttpd-dev libcurl4-openssl-dev lmdb-utils python3
  libinih-dev libsystemd-dev scdoc systemd man-db
  # what the integration tests and scripts call besides: these are in every
  # Debian, but named so that nothing is taken for granted; util-linux has
  # setsid, through which every test runs its commands
  coreutils findutils grep sed tar mawk util-linux
  # curl: the demonstration checks the nodes' web pages (scripts/demo-network.sh)
  curl
)
if [ "$testing" -eq 1 ]; then
  # curl (installed above for the demonstration) also reads the broker's
  # metrics endpoint in the tests (broker_exchange, broker_store_full,
  # broker_notices, systemd_notify); Chromium renders the auditors' HTML
  # report (audit_replay); python3-cryptography: Ed25519 for the independent
  # check of an audit export's checkpoint (audit_tiles, tests/tools/tiles_check.py);
  # python3-jsonschema checks docs/signal.schema.json against the node (signal_schema);
  # with python3-yaml it checks the HTTP API's answers against docs/api/openapi.yaml
  # (node_http, tests/tools/openapi_check.py); curl also drives that API.
  # chromium-driver, python3-selenium and npm: the web page's browser test
  # (web_flow, tests/web/web_flow.py), with axe-core from npm (below).
  packages+=(chromium python3-cryptography python3-jsonschema python3-yaml
    chromium-driver python3-selenium npm)
fi
if [ "$packaging" -eq 1 ]; then
  # git: the copy of the tracked sources; util-linux: setpriv and runuser
  # (the services as the user keten); passwd: userdel and groupdel (the
  # test leaves no user keten behind).
  packages+=(debhelper dpkg-dev build-essential fakeroot git passwd)
fi
missing=()
for p in "${packages[@]}"; do
  # npm also comes with Node.js packages from outside Debian (which conflict
  # with Debian's npm): an npm already on the PATH is used as it is.
  if [ "$p" = npm ] && command -v npm >/dev/null; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "keten: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "$testing" -eq 1 ]; then
  # axe-core, the accessibility checker web_flow runs in the page, and the
  # OpenAPI Initiative's JSON Schema of OpenAPI 3.1 (openapi_check checks
  # docs/api/openapi.yaml against it): the versions tests/web/package-lock.json
  # pins, into tests/web/node_modules (git-ignored); no install scripts run.
  web_tests="$(cd "$(dirname "$0")/.." && pwd)/tests/web"
  # npm trusts the system's certificate authorities (Debian's, and an
  # organisation's own added with update-ca-certificates), not only its own.
  cafile=()
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cafile=(--cafile /etc/ssl/certs/ca-certificates.crt)
  npm ci --prefix "$web_tests" --ignore-scripts --no-audit --no-fund "${cafile[@]}"
fi
