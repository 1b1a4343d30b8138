#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the
# four-partner demonstration (scripts/demo-network.sh).
#
#   scripts/demo.sh [--keep]
#
# --keep leaves the network running at the end, with the web pages of the
# municipality and the police open (their addresses and tokens printed),
# until Ctrl-C; then it stops everything, keeps the network's folder and
# prints its path and what to look at.
set -euo pipefail
case ${1:-} in
'' | --keep) ;;
*) echo "usage: scripts/demo.sh [--keep]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
./scripts/deps.sh
# A build without the tests has no test hooks: the demonstration runs the
# programs as they are installed (it sets no test hook).
[ -d build ] || meson setup build -Dtests=false >/dev/null
ninja -C build >/dev/null
exec ./scripts/demo-network.sh "$@" build/keys/keten-keys build/client/keten-node \
    build/broker/keten-broker build/audit/keten-audit
