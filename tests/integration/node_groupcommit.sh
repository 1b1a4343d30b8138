#!/usr/bin/env bash
# Group commit in the node: a node that gets a burst of N deliveries (its
# backlog, queued at the broker while it was down) stores and receipts every
# one, exactly once, with fewer than N durable commits of its store
# ("store_commits" in status --json; a group commit counts once). Every
# receipted message survives a kill -9 of the node right after the burst (a
# receipt goes out only once its entry is committed), and the node that
# starts again stores none of them twice.
. "$(dirname "$0")/node_lib.sh"

N=40
setup_network || done_testing
signal sig.json woonfraude "Melding in een reeks"
start_broker
start_node gemeente-diemen
start_node politie-mn
for id in gemeente-diemen politie-mn; do
    check "$id connects" wait_until 20 connected "$id"
done
stop_one politie-mn

: >"$T/ids"
sent=0
for i in $(seq 1 "$N"); do
    run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
    [ "$RC" -eq 0 ] && sent=$((sent + 1)) && echo "$(cat "$T/.out")" >>"$T/ids"
done
check "$N sends to the offline node are stored" test "$sent" -eq "$N"
check "the broker acknowledged all of them" wait_until 30 node_status_is gemeente-diemen \
    'd["outbox"] == 0'

start_node politie-mn
check "the node gets its backlog: $N messages" wait_until 60 node_status_is politie-mn \
    "d['counters']['received'] == $N"
check "the sender gets a receipt for every one" wait_until 60 node_status_is gemeente-diemen \
    "d['counters']['receipts'] == $N"
node_status_is politie-mn 'True'
commits=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["store_commits"])' \
    "$T/.st-politie-mn")
echo "# politie-mn: $N deliveries stored with $commits durable commits"
check "fewer durable commits than deliveries (group commit)" test "$commits" -lt "$N"
# One receipt batch head covers the messages of one commit: the sender
# verifies each head's signature once in full and answers the head's other
# receipts from its memory of verified signatures.
batches=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counters"]["receipt_batches"])' \
    "$T/.st-politie-mn")
echo "# politie-mn: $N receipts in $batches receipt batches"
check "fewer receipt batches than receipts" test "$batches" -lt "$N"
check "the sender answered at least $N - $batches head signatures from memory" \
    node_status_is gemeente-diemen "d['counters']['signatures_remembered'] >= $N - $batches"

kill9 politie-mn
start_node politie-mn
check "politie-mn restarted after kill -9" wait_until 20 connected politie-mn
"$NODE" inbox --home n-politie-mn --json --all >"$T/inbox.json" 2>/dev/null
check "every receipted message is still in its inbox, each once" python3 -c '
import json, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
got = [json.loads(l)["msg_id"] for l in open(sys.argv[2]) if l.strip()]
assert sorted(got) == sorted(ids), (len(got), len(ids))' "$T/ids" "$T/inbox.json"
# The marker: a later message, sent now and received; a second delivery of
# the burst, queued at the broker before it, has had its turn.
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "a later message to politie-mn (the marker)"
MARK=$(cat "$T/.out")
check "the marker is stored" wait_until 30 inbox_has politie-mn "$MARK"
check "nothing of the burst was stored again: the marker is the only message received" \
    node_status_is politie-mn 'd["counters"]["received"] == 1'
run "$NODE" inbox --home n-politie-mn --json --all
check "and the inbox holds the burst and the marker, each once" "$PY" -c '
import json, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()] + [sys.argv[3]]
got = [json.loads(l)["msg_id"] for l in open(sys.argv[2]) if l.strip()]
assert sorted(got) == sorted(ids), (len(got), len(ids))' "$T/ids" "$T/.out" "$MARK"

finish
