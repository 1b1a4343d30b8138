#!/usr/bin/env bash
# A node connects again while frames it sent on its old connection are
# still to be read (a broker paused past the nodes' heartbeat time-out reads
# both, interleaved). Only the newer connection counts: a frame that comes
# on the older one after the newer one said Hello is dropped and does not
# replace it, so the newer connection keeps its Hello and its submits are
# acknowledged. (Replacing on every frame made the two connections replace
# each other, and the node's submits were refused "send Hello first"
# without end.) Twin: the newer connection replaces the older one.
#
# Arguments: those of broker_lib.sh.
. "$(dirname "$0")/broker_lib.sh"

setup_broker_network || done_testing
start_broker || done_testing

# peer_bg NAME ARGS...: keten-testpeer as gemeente-diemen in the background,
# its JSON lines in NAME.out.
declare -A BG=()
peer_bg() {
    local name=$1
    shift
    timeout 60 "$PEER" --home n-gemeente-diemen --anchor admin/network.pub --directory dir.v1 \
        --broker "$ENDPOINT" "$@" >"$T/$name.out" 2>"$T/$name.err" &
    BG[$name]=$!
}
trap 'for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done; cleanup_broker; rm -rf "$T"' EXIT

replaced_count() {
    grep -c 'msg="node disconnected" node=gemeente-diemen why=replaced' "$BLOG"
}
replaced_once() {
    test "$(replaced_count)" -eq 1
}

# The older connection: Hello, then it waits for go-a before its next frame.
peer_bg older --timeout-ms 3000 --hold-until go-a dir-request --after 0
check "gemeente-diemen's first connection says Hello" wait_for 20 grep -q \
    'msg="node connected" node=gemeente-diemen' "$BLOG"

# The newer connection: Hello (it replaces the older), then it waits for go-b.
peer_bg newer --hold-until go-b submit --to politie-mn --json signal.json
check "a newer connection of the same node replaces the older one" wait_for 20 replaced_once

# A frame on the older connection, now that the newer one has said Hello.
touch go-a
check "a frame sent on the replaced connection is dropped" wait_for 20 grep -q \
    'msg="frames of a replaced connection dropped" node=gemeente-diemen' "$BLOG"
check "it did not replace the newer connection" replaced_once

touch go-b
wait "${BG[newer]}"
check "the newer connection's submit is acknowledged, with a valid proof" "$PY" -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
acks = [e for e in ev if e["event"] == "ack"]
errs = [e for e in ev if e["event"] == "error"]
assert len(acks) == 1 and acks[0]["valid"] and not errs, ev' "$T/newer.out"
check "no submit was refused \"send Hello first\"" lacks grep -q 'send Hello first' "$T/newer.out"
wait "${BG[older]}"
unset "BG[older]" "BG[newer]"

audit
jl "len([r for r in L if r['event'] == 'SUBMITTED' and r['sender'] == 'gemeente-diemen']) == 1" \
    "the log holds the one submitted record"
jl "not [r for r in L if r['event'] == 'REJECTED' and r['reason'] == 'MALFORMED']" \
    "and no MALFORMED rejection (no 'send Hello first')"
stop_broker
check "the broker stops" test "$BRC" -eq 0
done_testing
