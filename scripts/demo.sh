#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the
# four-partner demonstration (scripts/demo-network.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec ./scripts/demo-network.sh build/keys/keten-keys build/client/keten-node \
    build/broker/keten-broker build/audit/keten-audit
