#!/usr/bin/env bash
# A broker operator who rewrites a past audit record and recomputes the
# stored Merkle nodes (keten-tamper) is caught by the nodes' consistency
# check: after the broker restarts, its new checkpoints do not extend the
# checkpoint the nodes accepted; they raise the alarm, do not cosign, and
# `status` exits with 3.
. "$(dirname "$0")/node_lib.sh"

setup_network || done_testing
signal sig.json woonfraude "Melding voor de auditlog"
start_broker
start_node gemeente-diemen
start_node politie-mn
check "gemeente-diemen connects" wait_until 20 connected gemeente-diemen
check "politie-mn connects" wait_until 20 connected politie-mn
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "send a signal"
M=$(cat "$T/.out")
check "delivered" wait_until 20 inbox_has politie-mn "$M"
check "the sender proved its message in an accepted checkpoint" wait_until 30 node_status_is \
    gemeente-diemen 'd["outbox"] == 0 and d["counters"]["proofs_passed"] >= 1 and d["counters"]["proofs_failed"] == 0'
check "the recipient too" wait_until 30 node_status_is politie-mn \
    'd["counters"]["proofs_passed"] >= 1 and d["counters"]["proofs_failed"] == 0'
run "$NODE" status --home n-gemeente-diemen
expect 0 "no alarm before the tampering"
node_status_is gemeente-diemen 'True'
BEFORE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["checkpoint"]["tree_size"])' \
    "$T/.st-gemeente-diemen")
# Each node's own reference before the tampering (a recipient's can be older
# than the sender's: a node is sent checkpoints with the frames it gets).
declare -A REF_BEFORE=()
for id in gemeente-diemen politie-mn; do
    node_status_is "$id" 'True'
    REF_BEFORE[$id]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["checkpoint"]["tree_size"])' \
        "$T/.st-$id")
done
LEAF=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["leaf_index"])' \
    <(cd "$T" && "$NODE" status --home n-gemeente-diemen "$M" --json))
check "the message's leaf ($LEAF) is inside the accepted checkpoint ($BEFORE)" test "$LEAF" -lt "$BEFORE"

stop_one broker
run "$TAMPER" --store broker/store --leaf "$LEAF"
expect 0 "keten-tamper rewrites the leaf and recomputes the stored nodes"
says "rewrote leaf $LEAF" "keten-tamper says what it rewrote"
start_broker
for id in gemeente-diemen politie-mn; do
    check "$id raises the alarm (status exits 3)" wait_until 30 bash -c \
        "\"$NODE\" status --home n-$id >/dev/null 2>&1; test \$? -eq 3"
    run "$NODE" status --home "n-$id"
    expect 3 "$id status exits 3"
    says "inconsistent-checkpoint" "$id status names the alarm"
    check "$id kept its reference checkpoint" node_status_is "$id" \
        "d['checkpoint']['tree_size'] >= ${REF_BEFORE[$id]} and d['counters']['checkpoints_refused'] >= 1"
    check "$id logged the alarm" grep -q 'msg=ALARM alarm=inconsistent-checkpoint' "$T/node-$id.log"
done
run "$NODE" status --home n-gemeente-diemen "$M"
expect 3 "status MSG_ID also exits 3 while an alarm stands"
stop_one gemeente-diemen
start_node gemeente-diemen
check "the alarm survives a restart" wait_until 20 bash -c \
    "\"$NODE\" status --home n-gemeente-diemen >/dev/null 2>&1; test \$? -eq 3"
finish
