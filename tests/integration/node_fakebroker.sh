#!/usr/bin/env bash
# The node against a malicious broker (keten-fakebroker, which signs with the
# real broker's key file, so its checkpoints verify). Protocol v2: every ack,
# delivery and notice carries a proof against a checkpoint the node checked,
# so each lie is caught at once - the message is not recorded as accepted
# (or stored, or receipted), `keten-node status` exits 3 with the alarm, and
# the broker's frame is kept as evidence:
#   (a) an ack whose leaf is another message's record (the old hole: a broker
#       that acks M1 with leaf L and M2 with leaf L);
#   (f) two acks putting different leaves at the same index;
#   (g) an ack whose checkpoint is not consistent with the node's reference;
#   (h) an ack, and a delivery, whose path does not lead to the signed root;
#   (i) a delivery whose leaf does not match the envelope;
#   (j) a forwarded receipt whose leaf names another sender's message (and,
#       as its honest twin, the true receipt reaching the sender);
# and, as before:
#   (b) a checkpoint forked from the one it served before -> refused, not
#       cosigned, alarm;
#   (c) a directory version named in its checkpoints but withheld -> the
#       node fails closed (refuses to send) and raises the alarm;
#   (d) a refusal: send --wait and status MSG_ID report it with its reason
#       and rule;
#   (e) an honest fake broker, as a control: its proofs pass, the message is
#       accepted and receipted, no alarm; only one node cosigns, so the
#       checkpoint is never witnessed by a quorum and the node warns (without
#       an alarm);
#   (k) a broker that forgets the connection's Hello after the first ack:
#       the next submit is refused "send Hello first"; the node says Hello
#       again and the message is accepted.
. "$(dirname "$0")/node_lib.sh"

need_tool curl

setup_network || done_testing
signal sig.json woonfraude "Melding aan een kwaadwillende broker"
signal sig2.json woonfraude "Tweede melding aan een kwaadwillende broker"
start_victim() {
    start_on_fake gemeente-diemen "$@"
}

# msg_id_of: the msg_id printed by the last send.
msg_id_of() {
    "$PY" -c 'import re,sys; print(re.search(r"[0-9a-f]{32}", open(sys.argv[1]).read()).group(0))' \
        "$T/.all"
}

# not_receipted WHAT: politie-mn refused the one delivery it got and sent no
# receipt for it. The marker is its status: the refusal is counted in the
# round that handled the delivery, and a round's receipt batch leaves before
# status is answered, so a receipt for it would be counted by now.
not_receipted() {
    check "$1 the refusal is counted, and no receipt batch was sent" node_status_is politie-mn \
        'd["counters"]["rejected"] == 1 and d["counters"]["receipt_batches"] == 0'
    check "$1 and the fake broker got no receipt" lacks grep -q "^receipts politie-mn" "$FAKE_OUT"
}

# caught ID KIND WHAT: the checks every lie must meet on node ID.
caught() {
    local id=$1 kind=$2 what=$3
    check "$what: the node raises the alarm at once" wait_until 20 alarmed "$id"
    run "$NODE" status --home "n-$id"
    expect 3 "$what: status exits 3"
    says "$kind" "$what: the alarm is $kind"
    check "$what: the broker's frame is kept as evidence" node_status_is "$id" 'd["evidence"] >= 1'
}

# (a) an ack proving another message's record (the same leaf twice).
start_fake ack-other-leaf
start_victim
check "(a) the node connects to the fake broker" wait_until 20 connected gemeente-diemen
check "(a) the node said Hello" wait_until 10 grep -q "^hello gemeente-diemen 0$" "$FAKE_OUT"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "(a) the first message's ack proves its record: send --wait succeeds"
M1=$(cat "$T/.out")
check "(a) its state is accepted (proven)" msg_status_is gemeente-diemen "$M1" \
    'd["state"] == "accepted" and d["tree_size"] >= 2'
L1=$(sed -n "s/^ack $M1 leaf //p" "$FAKE_OUT")
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig2.json
expect 0 "(a) a second message is stored in the outbox"
M2=$(msg_id_of)
check "(a) the fake broker acks it with the first message's leaf" wait_until 10 \
    grep -q "^ack $M2 leaf $L1$" "$FAKE_OUT"
caught gemeente-diemen bad-proof "(a)"
says "$M1" "(a) the alarm names the record's message"
check "(a) the second message is not recorded as accepted" msg_status_is gemeente-diemen "$M2" \
    'd["state"] == "pending"'
check "(a) it stays in the outbox (resent)" node_status_is gemeente-diemen 'd["outbox"] == 1'
check "(a) the first message stays accepted" msg_status_is gemeente-diemen "$M1" \
    'd["state"] == "accepted"'
stop_one gemeente-diemen
stop_one fake

# (f) two acks putting different leaves at the same index.
start_fake same-index
start_victim
check "(f) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "(f) the first message is accepted"
M1=$(cat "$T/.out")
L1=$(sed -n "s/^ack $M1 leaf //p" "$FAKE_OUT")
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig2.json
M2=$(msg_id_of)
check "(f) the fake broker acks the second message at the first one's index" wait_until 10 \
    grep -q "^ack $M2 leaf $L1$" "$FAKE_OUT"
caught gemeente-diemen bad-proof "(f)"
check "(f) the checkpoint of the same size with another root is an alarm too" \
    alarm_is gemeente-diemen inconsistent-checkpoint "different roots"
check "(f) the second message is not recorded as accepted" msg_status_is gemeente-diemen "$M2" \
    'd["state"] == "pending"'
check "(f) the node keeps its reference" msg_status_is gemeente-diemen "$M1" \
    'd["state"] == "accepted" and d["leaf_index"] == '"$L1"
stop_one gemeente-diemen
stop_one fake

# (g) an ack against a checkpoint not consistent with the node's reference.
start_fake inconsistent
start_victim
check "(g) the node connects and accepts the first checkpoint" wait_until 20 node_status_is \
    gemeente-diemen 'd["connected"] and d["checkpoint"].get("tree_size") == 1'
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
M=$(msg_id_of)
check "(g) the fake broker acks it" wait_until 10 grep -q "^ack $M leaf" "$FAKE_OUT"
caught gemeente-diemen inconsistent-checkpoint "(g)"
check "(g) the ack's proof is against a checkpoint the node refused: ignored, counted" \
    wait_until 10 node_status_is gemeente-diemen 'd["counters"]["proofs_unknown"] >= 1'
check "(g) the message is not recorded as accepted" msg_status_is gemeente-diemen "$M" \
    'd["state"] == "pending"'
check "(g) the node keeps its reference (size 1)" node_status_is gemeente-diemen \
    'd["checkpoint"]["tree_size"] == 1'
stop_one gemeente-diemen
stop_one fake

# (h) an ack and a delivery whose path does not lead to the signed root.
start_fake bad-path
start_victim
start_on_fake politie-mn
check "(h) both nodes connect" wait_until 20 connected gemeente-diemen
check "(h) both nodes connect (recipient)" wait_until 20 connected politie-mn
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
M=$(msg_id_of)
check "(h) the fake broker acks it and delivers it" wait_until 10 \
    grep -q "^deliver $M to politie-mn" "$FAKE_OUT"
caught gemeente-diemen bad-proof "(h) the ack"
says "does not lead to the signed root" "(h) the ack: the alarm says why"
check "(h) the message is not recorded as accepted" msg_status_is gemeente-diemen "$M" \
    'd["state"] == "pending"'
caught politie-mn bad-proof "(h) the delivery"
check "(h) the delivery's alarm says it is a delivery" alarm_is politie-mn bad-proof delivery
check "(h) the delivery is not stored" lacks inbox_has politie-mn "$M"
not_receipted "(h)"
stop_one politie-mn
stop_one gemeente-diemen
stop_one fake

# (i) a delivery whose leaf is not the envelope's record.
start_fake deliver-bad-leaf
start_victim
start_on_fake politie-mn
check "(i) both nodes connect" wait_until 20 connected politie-mn
check "(i) both nodes connect (sender)" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "(i) the sender's message is accepted (an honest ack)"
M=$(cat "$T/.out")
check "(i) the fake broker delivers it with leaf 0" wait_until 10 \
    grep -q "^deliver $M to politie-mn leaf 0$" "$FAKE_OUT"
caught politie-mn bad-proof "(i)"
says "not the delivered envelope's" "(i) the alarm says why"
check "(i) the delivery is not stored" lacks inbox_has politie-mn "$M"
not_receipted "(i)"
check "(i) the sender raised no alarm" node_status_is gemeente-diemen 'len(d["alarms"]) == 0'
stop_one politie-mn
stop_one gemeente-diemen
stop_one fake

# (j) a forwarded receipt naming another sender's message; its honest twin
# (the true receipt to the sender) recorded.
start_fake receipt-other-sender
start_victim
start_on_fake politie-mn
check "(j) both nodes connect" wait_until 20 connected politie-mn
check "(j) both nodes connect (sender)" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "(j) the message is accepted"
M=$(cat "$T/.out")
check "(j) the recipient stores it" wait_until 20 inbox_has politie-mn "$M"
check "(j) the recipient's receipt batch verifies at the broker" wait_until 10 \
    grep -q "^receipted $M by politie-mn" "$FAKE_OUT"
check "(j) the sender records the receipt (honest notice)" wait_until 20 msg_status_is \
    gemeente-diemen "$M" 'd["recipients"][0]["state"] == "receipted" and "receipted_at" in d["recipients"][0]'
check "(j) the sender confirms the notice" wait_until 10 \
    grep -q "^notice-ack gemeente-diemen" "$FAKE_OUT"
check "(j) the sender raised no alarm" node_status_is gemeente-diemen 'len(d["alarms"]) == 0'
caught politie-mn bad-proof "(j) the recipient, sent the notice of a message it did not send"
says "gemeente-diemen" "(j) the alarm names the record's sender"
# A confirmation leaves with the node's next tick; the marker is a later
# frame on the same connection: feedback of the recipient on the signal,
# submitted after the alarm. The sender is stopped first, so that nothing
# else can come back.
stop_one gemeente-diemen
signal reply.json adrescheck "Terugkoppeling aan een kwaadwillende broker"
run "$NODE" reply --home n-politie-mn "$M" --kind feedback --signal reply.json
expect 0 "(j) the recipient sends feedback on the signal (the marker)"
R=$(msg_id_of)
check "(j) the fake broker got the feedback" wait_until 10 grep -q "^ack $R leaf" "$FAKE_OUT"
check "(j) nothing recorded at the recipient: the notice was not confirmed before the feedback" \
    lacks grep -q "^notice-ack politie-mn" "$FAKE_OUT"
stop_one politie-mn
stop_one fake

# (b) a forked checkpoint.
start_fake fork
start_victim
check "(b) the node cosigns the fake broker's first (honest) checkpoint" wait_until 20 \
    grep -q "^cosignature gemeente-diemen 1$" "$FAKE_OUT"
check "(b) then the fake broker forks its history" wait_until 20 grep -q "^fork " "$FAKE_OUT"
check "(b) the node raises the alarm" wait_until 20 alarmed
run "$NODE" status --home n-gemeente-diemen
expect 3 "(b) status exits 3"
says "inconsistent-checkpoint" "(b) the alarm is inconsistent-checkpoint"
check "(b) the forked checkpoint came with a consistency proof from size 1" \
    grep -q "^checkpoint-sent gemeente-diemen 2 from 1$" "$FAKE_OUT"
check "(b) the node keeps its reference (size 1)" node_status_is gemeente-diemen \
    'd["checkpoint"]["tree_size"] == 1 and d["counters"]["checkpoints_refused"] >= 1'
check "(b) one alarm for the one forked checkpoint, not one per copy" node_status_is \
    gemeente-diemen 'len([a for a in d["alarms"] if a["kind"] == "inconsistent-checkpoint"]) <= 2'
check "(b) the forked checkpoint is kept as evidence" node_status_is gemeente-diemen \
    'd["evidence"] >= 1'
# A cosignature leaves with the round that handled the checkpoint; the
# marker is a later frame on the same connection: a message sent after the
# alarm, which the fake broker answers.
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 0 "(b) a message sent after the alarm (the marker)"
M=$(msg_id_of)
check "(b) the fake broker got it" wait_until 10 grep -q "^ack $M leaf" "$FAKE_OUT"
sed "/^ack $M leaf/q" "$FAKE_OUT" >"$T/fork-upto-marker"
check "(b) the forked checkpoint was not cosigned" \
    lacks grep -qE '^cosignature .*forked$' "$T/fork-upto-marker"
check "(b) no cosignature after the fork at all" test \
    "$(sed -n '/^fork /,$p' "$T/fork-upto-marker" | grep -c '^cosignature')" -eq 0
stop_one gemeente-diemen
stop_one fake

# (c) a directory version named in checkpoints but withheld.
run "$KEYS" register --dir admin --category extra
expect 0 "(c) a change for directory version 2"
publish_dir admin directory-2.signed
start_fake withhold-directory --named-directory directory-2.signed
check "(c) the fake broker's checkpoints name version 2" wait_until 10 \
    grep -q "directory 2$" "$FAKE_OUT"
start_victim
check "(c) the node sees version 2 named and stops sending" wait_until 20 node_status_is \
    gemeente-diemen 'd["directory"]["needed_version"] == 2 and d["directory"]["version"] == 1'
check "(c) the node asked for the directory chain" \
    grep -q "^directory-request after 1" "$FAKE_OUT"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
check "(c) send fails closed" test "$RC" -ne 0
says "refusing to send" "(c) send says it refuses to send"
says "version 2" "(c) and names the withheld version"
check "(c) nothing was submitted" lacks grep -q '^ack ' "$FAKE_OUT"
check "(c) the node raises the alarm when the directory does not come" wait_until 20 alarmed
run "$NODE" status --home n-gemeente-diemen
expect 3 "(c) status exits 3"
says "directory-withheld" "(c) the alarm is directory-withheld"
check "(c) the checkpoint that named version 2 is kept as evidence" node_status_is \
    gemeente-diemen 'd["evidence"] >= 1'
check "(c) no checkpoint naming the withheld version was taken or cosigned" lacks \
    grep -q '^cosignature' "$FAKE_OUT"
stop_one gemeente-diemen
stop_one fake

# (d) the broker refuses, with a detail made to look like a second log line
# of the node's (the text is the broker's: the node must log it as a value).
FORGED='level=error prog=keten-node msg=ALARM alarm=forged'
start_fake refuse --refuse-detail $'the sharing policy refuses it\n'"$FORGED"$'\r\x01 "q"'
start_victim
check "(d) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 1 "(d) send --wait reports the broker's refusal"
says "POLICY (rule 7)" "(d) with the reason and the rule"
check "(d) the broker's detail is logged escaped, as one value of the refusal's line" \
    grep -qF "reason=POLICY rule=7 detail=\"the sharing policy refuses it\\n$FORGED\\r\\x01 \\\"q\\\"\"" \
    "$T/node-gemeente-diemen.log"
check "(d) no line of the node's log starts with the forged text" lacks \
    grep -q "^$FORGED" "$T/node-gemeente-diemen.log"
M=$(msg_id_of)
run "$NODE" status --home n-gemeente-diemen "$M" --json
expect 0 "(d) status MSG_ID of the refused message"
check "(d) status shows state rejected, reason POLICY, rule 7, per recipient" json_is "$T/.out" \
    'd["state"] == "rejected" and d["reason"] == "POLICY" and d["rule"] == 7 and d["recipients"][0]["state"] == "rejected"'
check "(d) status keeps the broker's detail without its control characters (each one ?)" \
    json_is "$T/.out" "d['detail'] == 'the sharing policy refuses it?$FORGED?? \"q\"'"
check "(d) a refused message is not resent (outbox empty)" node_status_is gemeente-diemen \
    'd["outbox"] == 0 and d["counters"]["refused"] == 1'
# The same refusal answered to POST /v1/messages?wait=: its 422 names the
# message's state with the word status, GET /v1/sent and the sent event use
# (rejected; refused is a recipient's refusal).
"$PY" -c 'import json, sys; print(json.dumps({"kind": "signal", "to": ["politie-mn"], "signal": json.load(open("sig.json"))}))' >send-d.json
CODE=$(curl -sS --max-time 30 --unix-socket n-gemeente-diemen/api.sock -X POST \
    -H "Content-Type: application/json" --data-binary @send-d.json -o "$T/.out" -w '%{http_code}' \
    "http://node/v1/messages?wait=20000" 2>"$T/.err")
check "(d) POST /v1/messages?wait= answers the broker's refusal (HTTP 422)" test "$CODE" = 422 ||
    sed 's/^/# /' "$T/.out" "$T/.err"
check "(d) the 422 says state rejected, reason POLICY, rule 7" json_is "$T/.out" \
    'd["type"] == "urn:keten:problem:refused" and d["state"] == "rejected" and d["reason"] == "POLICY" and d["rule"] == 7'
M2=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["msg_id"])' "$T/.out")
run "$NODE" status --home n-gemeente-diemen "$M2" --json
expect 0 "(d) status MSG_ID of the message the 422 named"
check "(d) status names its state with the same word (rejected)" json_is "$T/.out" \
    'd["state"] == "rejected" and d["reason"] == "POLICY" and d["rule"] == 7'
stop_one gemeente-diemen
stop_one fake

# (e) honest: the control.
start_fake honest
start_victim --witness-timeout-ms 500
check "(e) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "(e) send to the honest fake broker"
M=$(cat "$T/.out")
check "(e) its proof passes: accepted at once, nothing left in the outbox" node_status_is \
    gemeente-diemen 'd["outbox"] == 0 and d["counters"]["proofs_passed"] >= 1 and d["counters"]["proofs_failed"] == 0'
check "(e) the message is accepted at its leaf" msg_status_is gemeente-diemen "$M" \
    'd["state"] == "accepted" and d["leaf_index"] == 1'
check "(e) the node's reference is the checkpoint of the ack" node_status_is gemeente-diemen \
    'd["checkpoint"]["tree_size"] == 2'
check "(e) the node warns that its checkpoint is not witnessed by a quorum" wait_until 20 \
    node_status_is gemeente-diemen 'len(d["warnings"]) == 1 and not d["checkpoint"]["witnessed"]'
run "$NODE" status --home n-gemeente-diemen
expect 0 "(e) a warning is not an alarm: status exits 0"
says "not witnessed by a quorum" "(e) status shows the warning"
# status computes the warning when asked; the log line comes with the
# witness's next tick (at most a second later).
check "(e) the warning is logged" wait_until 10 grep -q 'warning=checkpoint-not-witnessed' \
    "$T/node-gemeente-diemen.log"
check "(e) no evidence kept" node_status_is gemeente-diemen 'd["evidence"] == 0'
stop_one gemeente-diemen
stop_one fake
# (k) a broker that forgets that the connection said Hello (as the broker
# did after a pause past the heartbeat time-out: its two connections of one
# node replaced each other): the node's next submit is refused MALFORMED
# "send Hello first" without a msg_id. The node says Hello again and sends
# its outbox after it: the message is accepted, nothing is lost.
start_fake forget-hello
start_victim
check "(k) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "(k) the first message is accepted"
check "(k) then the fake broker forgets the node's Hello" wait_until 10 \
    grep -qx "forgot-hello gemeente-diemen" "$FAKE_OUT"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig2.json --wait --timeout 20
expect 0 "(k) the second message is accepted all the same (send --wait)"
M2=$(cat "$T/.out")
check "(k) the node was refused \"send Hello first\" and said Hello again" grep -q \
    'msg="a request refused as malformed: Hello sent again"' "$T/node-gemeente-diemen.log"
check "(k) the fake broker saw the second Hello" test "$(grep -c '^hello gemeente-diemen ' "$FAKE_OUT")" -eq 2
check "(k) the second message is accepted (its ack proven)" msg_status_is gemeente-diemen "$M2" \
    'd["state"] == "accepted"'
check "(k) no alarm: a refusal is not a lie" node_status_is gemeente-diemen \
    'd["alarms"] == [] and d["outbox"] == 0'
stop_one gemeente-diemen
stop_one fake
finish
