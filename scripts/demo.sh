#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the
# four-partner demonstration (scripts/demo-network.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
# A build without the tests has no test hooks: the demonstration runs the
# programs as they are installed (it sets no test hook).
[ -d build ] || meson setup build -Dtests=false >/dev/null
ninja -C build >/dev/null
exec ./scripts/demo-network.sh build/keys/keten-keys build/client/keten-node \
    build/broker/keten-broker build/audit/keten-audit
