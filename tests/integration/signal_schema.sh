#!/usr/bin/env bash
# The JSON Schema of a signal (docs/signal.schema.json) is a valid draft
# 2020-12 schema, and its verdict equals the node's (keten-node send
# --dry-run, no node running) for every signal of the fuzz corpus
# (tests/fuzz/corpus/signal) and every example of docs/signals.md; both
# verdicts occur. The checks are tests/tools/signal_schema.py (TAP).
# Usage: signal_schema.sh KETEN_NODE
. "$(dirname "$0")/need_tool.sh"
need_tool python3
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
src=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
exec "$PY" "$src/tests/tools/signal_schema.py" "$src/docs/signal.schema.json" "$1" \
    "$src/tests/fuzz/corpus/signal" "$src/docs/signals.md"
