#!/usr/bin/env bash
# bench_json.sh - docs/benchmarks.md documents every key of the load
# generators' --json files, and only keys they write.
#
# Runs keten-bench and keten-bench-exchange each in their shortest real
# configuration that writes every key (one run of 1 s at --rate half; the
# --backlog mode with a few messages), and checks each file against the
# page's tables with tests/tools/bench_json_check.py; then that checker's
# self-test on the same files (a row removed from the page, a key added to a
# file and a documented key removed from it are each reported). Nothing here
# is timed: the figures themselves are not checked.
#
# Usage: bench_json.sh KETEN-BENCH KETEN-BENCH-EXCHANGE KETEN-BROKER KETEN-NODE
#        DOC CHECKER
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/tap.sh
. "$HERE/../integration/tap.sh"

if [ $# -ne 6 ]; then
    echo "usage: $0 KETEN-BENCH KETEN-BENCH-EXCHANGE KETEN-BROKER KETEN-NODE DOC CHECKER" >&2
    exit 2
fi
BENCH=$1 EXCHANGE=$2 BROKER=$3 NODE=$4 DOC=$5 CHECKER=$6
# Debian's python3 when there is one (as lib.sh).
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

T=$(mktemp -d "${TMPDIR:-/tmp}/keten-benchjson.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

# produced NAME CMD...: CMD exits 0 and writes $T/NAME.json (it is given
# --json itself); its output in $T/NAME.out, shown when it fails.
produced() {
    local name=$1
    shift
    if "$@" --json "$T/$name.json" >"$T/$name.out" 2>&1 && [ -s "$T/$name.json" ]; then
        return 0
    fi
    tail -n 30 "$T/$name.out" | sed 's/^/# /'
    return 1
}

# agrees SHAPE NAME: the checker finds the file and the page's rows for
# SHAPE in agreement; its findings shown when not.
agrees() {
    if "$PY" "$CHECKER" "$DOC" "$1" "$T/$2.json" >"$T/$2.check" 2>&1; then
        return 0
    fi
    sed 's/^/# /' "$T/$2.check"
    return 1
}

# self_test SHAPE NAME: the checker's self-test passes on that file.
self_test() {
    if "$PY" "$CHECKER" --self-test "$DOC" "$1" "$T/$2.json" >"$T/$2.self" 2>&1; then
        return 0
    fi
    sed 's/^/# /' "$T/$2.self"
    return 1
}

# One run of 1 s as fast as possible and one at half its rate; one sender,
# one receiver; few prebuilt envelopes.
if check "keten-bench --rate half wrote its JSON" produced bench \
    "$BENCH" --broker "$BROKER" --store-dir "$T" --runs 1 --duration 1 --rate half \
    --senders 1 --receivers 1 --prebuild-rate 2000; then
    check "keten-bench: every key documented, every documented key there" \
        agrees keten-bench bench
    check "keten-bench: the checker reports a missing row, a new key, a lost key" \
        self_test keten-bench bench
fi

# 200 messages for one node that never connects, one idle node connected.
if check "keten-bench --backlog wrote its JSON" produced bench_backlog \
    "$BENCH" --broker "$BROKER" --store-dir "$T" --backlog 200 --senders 1 \
    --offline-nodes 1 --idle-nodes 1 --map-size 64M; then
    check "keten-bench --backlog: every key documented, every documented key there" \
        agrees "keten-bench --backlog" bench_backlog
    check "keten-bench --backlog: the checker reports a missing row, a new key, a lost key" \
        self_test "keten-bench --backlog" bench_backlog
fi

# One repetition: the floor, a max phase and a half-rate phase of 1 s each,
# no warm-up, 20 status lookups (the only source of the node_* keys).
if check "keten-bench-exchange wrote its JSON" produced exchange \
    "$EXCHANGE" --broker "$BROKER" --node "$NODE" --store-dir "$T" --runs 1 \
    --duration 1 --warmup 0 --senders 1 --receivers 1 --recipients 1 --status-sample 20; then
    check "keten-bench-exchange: every key documented, every documented key there" \
        agrees keten-bench-exchange exchange
    check "keten-bench-exchange: the checker reports a missing row, a new key, a lost key" \
        self_test keten-bench-exchange exchange
fi

# 40 signals to a node that never starts.
if check "keten-bench-exchange --backlog wrote its JSON" produced exchange_backlog \
    "$EXCHANGE" --broker "$BROKER" --node "$NODE" --store-dir "$T" --backlog 40 \
    --senders 1 --receivers 1 --recipients 1; then
    check "keten-bench-exchange --backlog: every key documented, every documented key there" \
        agrees "keten-bench-exchange --backlog" exchange_backlog
    check "keten-bench-exchange --backlog: the checker reports a missing row, a new key, a lost key" \
        self_test "keten-bench-exchange --backlog" exchange_backlog
fi

done_testing
