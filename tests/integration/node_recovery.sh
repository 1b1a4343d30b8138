#!/usr/bin/env bash
# Failures and recovery with the real broker and nodes: an offline recipient
# gets its backlog after restart; kill -9 of the broker between submit and
# acknowledgement (frozen before it read the submit, and killed by its own
# test hook after the commit, before the ack), then restart: delivered
# exactly once; kill -9 of a node
# after it stored a delivery but before its receipt: no duplicate in its
# inbox; a node whose key was revoked cannot connect (nothing delivered to
# it, its sends fail); and a node restarted with an older directory file
# keeps the newer version it installed.
. "$(dirname "$0")/node_lib.sh"

# duplicates ID: node ID's count of deliveries it had already stored (and
# receipted again), since its start.
duplicates() {
    node_status_is "$1" 'True' || return 2
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["counters"]["duplicates"])' \
        "$T/.st-$1"
}

# delivered_once MSG DUPS WHAT: politie-mn holds MSG exactly once and got no
# second delivery (its duplicates counter is still DUPS). Checked after a
# marker, not after a pause: the sender holds politie-mn's receipt for MSG
# (the broker has no reason left to deliver it again), and a later message
# to politie-mn, sent now, has arrived (a second delivery queued before it
# has had its turn).
delivered_once() {
    local marker
    check "$3: the sender holds the receipt" wait_until 30 msg_status_is gemeente-diemen "$1" \
        'd["recipients"][0]["state"] == "receipted"'
    run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
    expect 0 "$3: a later message to politie-mn (the marker)"
    printed_msg_id "$3: the marker"
    marker=$(cat "$T/.out")
    check "$3: the marker is delivered" wait_until 30 inbox_has politie-mn "$marker"
    check "$3: delivered exactly once" test "$(inbox_count politie-mn "$1")" -eq 1
    check "$3: and not delivered again (no duplicate delivery counted)" \
        test "$(duplicates politie-mn)" -eq "$2"
}

setup_network || done_testing
signal sig.json woonfraude "Melding voor de achterstand"
start_broker
for id in gemeente-diemen politie-mn belastingdienst woonstad; do
    start_node "$id"
done
for id in gemeente-diemen politie-mn belastingdienst woonstad; do
    check "$id connects" wait_until 20 connected "$id"
done

# 1. Offline recipient: the backlog arrives after its restart.
stop_one woonstad
run "$NODE" send --home n-gemeente-diemen --to woonstad --signal sig.json --wait
expect 0 "a signal to an offline recipient is accepted by the broker"
printed_msg_id "the first signal to the offline recipient"
M1=$(cat "$T/.out")
run "$NODE" send --home n-gemeente-diemen --to woonstad --signal sig.json --wait
expect 0 "a second signal to the offline recipient"
printed_msg_id "the second signal"
M2=$(cat "$T/.out")
check "the sender sees the offline recipient as accepted, not receipted" msg_status_is \
    gemeente-diemen "$M1" 'd["state"] == "accepted" and d["recipients"][0]["state"] == "accepted"'
start_node woonstad
check "after restart the offline recipient gets its backlog (first)" wait_until 20 inbox_has woonstad "$M1"
check "after restart the offline recipient gets its backlog (second)" wait_until 20 inbox_has woonstad "$M2"
run "$NODE" inbox --home n-woonstad --json
check "the backlog arrives oldest first" python3 -c '
import json, sys
ids = [json.loads(l)["msg_id"] for l in open(sys.argv[1]) if l.strip()]
assert ids.index(sys.argv[2]) < ids.index(sys.argv[3]), ids' "$T/.out" "$M1" "$M2"
check "the sender then sees the receipts" wait_until 20 msg_status_is gemeente-diemen "$M2" \
    'd["recipients"][0]["state"] == "receipted"'

# 2. kill -9 of the broker between submit and acknowledgement.
dups=$(duplicates politie-mn)
kill -STOP "${PID[broker]}"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 0 "send while the broker is frozen: stored in the outbox"
printed_msg_id "send while the broker is frozen"
M3=$(cat "$T/.out")
check "the message waits in the sender's outbox, not acknowledged" msg_status_is \
    gemeente-diemen "$M3" 'd["state"] == "pending"'
sleep 0.5
kill9 broker
start_broker
check "after the broker's restart the message is acknowledged" wait_until 30 msg_status_is \
    gemeente-diemen "$M3" 'd["state"] == "accepted"'
check "and delivered" wait_until 30 inbox_has politie-mn "$M3"
delivered_once "$M3" "$dups" "the message resent after the broker's kill -9"
check "the outbox is empty again" node_status_is gemeente-diemen 'd["outbox"] == 0'

# 2b. The broker dies after its commit, before the ack (its test hook): the
# node resends the same envelope and takes the original ack (DUPLICATE).
dups=$(duplicates politie-mn)
stop_one broker
KETEN_BROKER_FAULT=kill-after-commit start_broker
check "gemeente-diemen reconnects to the broker armed to die" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 0 "send to the broker that dies after committing"
printed_msg_id "send to the broker that dies"
M3B=$(cat "$T/.out")
pid=${PID[broker]}
check "the broker killed itself after the commit, before the ack" wait_until 20 \
    lacks kill -0 "$pid"
wait "$pid" 2>/dev/null
unset "PID[broker]"
check "no ack reached the sender" msg_status_is gemeente-diemen "$M3B" 'd["state"] == "pending"'
start_broker
check "after the restart the resent envelope gets its original ack" wait_until 30 msg_status_is \
    gemeente-diemen "$M3B" 'd["state"] == "accepted"'
check "the message is delivered" wait_until 30 inbox_has politie-mn "$M3B"
delivered_once "$M3B" "$dups" "the envelope resent to the broker that died after its commit"
check "the resent envelope's proof is of its one log entry (no proof failed)" wait_until 30 \
    node_status_is gemeente-diemen 'd["counters"]["proofs_failed"] == 0 and len(d["alarms"]) == 0'

# 3. kill -9 of a node after it stored a delivery, before its receipt.
stop_one politie-mn
KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT=1 start_node politie-mn
check "politie-mn reconnects (crash-test mode)" wait_until 20 connected politie-mn
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "send to the node that will crash"
printed_msg_id "send to the node that will crash"
M4=$(cat "$T/.out")
pid=${PID[politie-mn]}
check "the node killed itself (SIGKILL) after storing, before its receipt" wait_until 20 \
    lacks kill -0 "$pid"
wait "$pid" 2>/dev/null
check "it died of SIGKILL" test $? -eq 137
unset "PID[politie-mn]"
check "no receipt reached the sender" msg_status_is gemeente-diemen "$M4" \
    'd["recipients"][0]["state"] == "accepted"'
start_node politie-mn
check "politie-mn restarted" wait_until 20 connected politie-mn
check "the broker delivers again and the sender gets the receipt" wait_until 30 msg_status_is \
    gemeente-diemen "$M4" 'd["recipients"][0]["state"] == "receipted"'
check "no duplicate in its inbox" test "$(inbox_count politie-mn "$M4")" -eq 1
check "the second delivery was receipted again, not stored twice" node_status_is politie-mn \
    'd["counters"]["duplicates"] >= 1'

# 4. Revocation: belastingdienst is revoked while offline. Before that, a
# query it can answer later: the only kind of message the policy lets it
# send, so that its send below can fail for no other reason than its key.
signal query.json adrescheck "Vraag aan de belastingdienst"
run "$NODE" send --home n-gemeente-diemen --kind query --to belastingdienst --signal query.json --wait
expect 0 "a query to belastingdienst before its revocation"
printed_msg_id "the query to belastingdienst"
Q=$(cat "$T/.out")
check "belastingdienst receives the query" wait_until 20 inbox_has belastingdienst "$Q"
stop_one belastingdienst
run "$NODE" send --home n-gemeente-diemen --to belastingdienst --signal sig.json --wait
expect 0 "a message for belastingdienst is queued while it is offline"
printed_msg_id "the message for the offline belastingdienst"
M5=$(cat "$T/.out")
run "$KEYS" revoke --dir admin belastingdienst --reason "key lost"
expect 0 "revoke belastingdienst"
stdout_says "revoked belastingdienst" "revoke says whom it revoked"
cp directory.signed directory-1.signed
publish_dir admin directory-2.signed
cp directory-2.signed directory.signed
kill -HUP "${PID[broker]}"
check "the broker pushes version 2 to the nodes" wait_until 20 node_status_is gemeente-diemen \
    'd["directory"]["version"] == 2'
# It still holds version 1, which lists it: only the broker stops it.
"$NODE" run --home n-belastingdienst --anchor admin/network.pub --directory directory-1.signed \
    --broker "$BROKER_EP" >>"$T/node-belastingdienst-revoked.log" 2>&1 &
PID[belastingdienst]=$!
check "the revoked node cannot connect: the broker refuses its key" wait_until 20 \
    node_status_is belastingdienst 'not d["connected"] and "refused" in d["last_connect_error"]'
signal answer.json adrescheck "Antwoord van een ingetrokken node"
run "$NODE" reply --home n-belastingdienst "$Q" --signal answer.json --wait --timeout 3
expect 1 "a reply by the revoked node (one its policy allows) fails"
says "no acknowledgement from the broker" "it fails because the broker never acknowledged it"
# A delivery needs a connection. The marker is the node's own log of this
# run: it tried to connect all the while its send waited, and was refused.
check "the revoked node tried to connect" grep -q 'msg="connecting to broker"' \
    "$T/node-belastingdienst-revoked.log"
check "and never connected (no \"connected to broker\" in its log)" \
    lacks grep -q 'msg="connected to broker"' "$T/node-belastingdienst-revoked.log"
check "nothing is delivered to the revoked node" lacks inbox_has belastingdienst "$M5"
run "$NODE" send --home n-gemeente-diemen --to belastingdienst --signal sig.json
expect 1 "nobody sends to the revoked node any more"
says "not a current node" "the sender says why"
run "$NODE" send --home n-gemeente-diemen --to role:tax --signal sig.json
expect 1 "role:tax names no current node any more"
says "party 'role:tax' names no current node of directory version 2" "the sender says so"

# 5. Rollback: restarting with the older directory file changes nothing.
stop_one gemeente-diemen
"$NODE" run --home n-gemeente-diemen --anchor admin/network.pub \
    --directory directory-1.signed --broker "$BROKER_EP" >>"$T/node-g2.log" 2>&1 &
PID[gemeente-diemen]=$!
check "restarted with an older file, the node keeps version 2" wait_until 20 node_status_is \
    gemeente-diemen 'd["directory"]["version"] == 2'

for id in gemeente-diemen politie-mn woonstad; do
    run "$NODE" status --home "n-$id"
    expect 0 "$id has raised no alarm"
done
finish
