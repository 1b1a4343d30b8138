#!/usr/bin/env bash
# A broker's final refusal of a submit is a proof too: the node records a
# message as refused only when the refusal carries the proof of the
# message's `rejected` record, against a checkpoint it checked, and that
# record names the message, this node, the refusal's reason and rule.
# Against keten-fakebroker (which signs with the real broker's key file):
#   (a) the honest refusal (POLICY, rule 7, proven): recorded with its rule
#       and leaf, not resent, no alarm;
#   (b) the same refusal without a proof (an older broker, or one that
#       logged nothing): not recorded, the message stays queued with the
#       broker's reason and words, said and counted once, no alarm;
#   (c) a refusal proving another message's rejected record, a record of
#       another reason, of another rule, or the message's submitted record:
#       the alarm bad-proof, the frame kept, the message stays queued;
#   (d) a proven refusal, then a proven ack of the same message (the log
#       holds both): the alarm bad-proof, the message stays refused;
#   (e) the real broker (a 1-second clock window) and a real node: a message
#       that waited in the outbox while the broker was down is refused
#       CLOCK_SKEW with the proof of its rejected record, and recorded so;
#       twin: a message sent now is accepted.
. "$(dirname "$0")/node_lib.sh"

setup_network || done_testing
signal sig.json woonfraude "Melding aan een weigerende broker"
start_victim() {
    start_on_fake gemeente-diemen "$@"
}

# msg_id_of: the msg_id printed by the last send.
msg_id_of() {
    "$PY" -c 'import re,sys; print(re.search(r"[0-9a-f]{32}", open(sys.argv[1]).read()).group(0))' \
        "$T/.all"
}

# caught KIND WHAT: the checks every lie must meet.
caught() {
    local kind=$1 what=$2
    check "$what: the node raises the alarm at once" wait_until 20 alarmed gemeente-diemen
    run "$NODE" status --home n-gemeente-diemen
    expect 3 "$what: status exits 3"
    says "$kind" "$what: the alarm is $kind"
    check "$what: the broker's frame is kept as evidence" node_status_is gemeente-diemen \
        'd["evidence"] >= 1'
}

# (a) the honest refusal, with the proof of its rejected record.
start_fake refuse
start_victim
check "(a) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait --timeout 20
expect 1 "(a) send --wait reports the broker's refusal"
says "POLICY (rule 7)" "(a) with the reason and the rule"
M=$(msg_id_of)
L=$(sed -n 's/^refused leaf //p' "$FAKE_OUT" | head -n 1)
check "(a) the fake broker proved the refusal's record" test -n "$L"
check "(a) status: rejected, POLICY, rule 7, at the rejected record's leaf" \
    msg_status_is gemeente-diemen "$M" \
    "d['state'] == 'rejected' and d['reason'] == 'POLICY' and d['rule'] == 7 and d['leaf_index'] == $L and d['tree_size'] > $L"
check "(a) not resent, counted as refused, no alarm" node_status_is gemeente-diemen \
    'd["outbox"] == 0 and d["counters"]["refused"] == 1 and d["counters"]["refusals_unproven"] == 0 and d["alarms"] == []'
stop_one gemeente-diemen
stop_one fake

# (b) the refusal without a proof.
start_fake refuse-noproof
start_victim
check "(b) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 0 "(b) the message is stored in the outbox"
M=$(msg_id_of)
check "(b) the fake broker refused it without a proof" wait_until 10 grep -qx refused "$FAKE_OUT"
check "(b) the node counts the refusal without proof" wait_until 10 node_status_is \
    gemeente-diemen 'd["counters"]["refusals_unproven"] == 1'
check "(b) status: still pending, the broker's unproven reason and words as detail" \
    msg_status_is gemeente-diemen "$M" \
    "d['state'] == 'pending' and d['reason'] == 'POLICY' and d['rule'] == 7 and d['detail'] == 'the sharing policy refuses it' and 'leaf_index' not in d"
check "(b) it stays in the outbox (resent), not refused, no alarm" node_status_is \
    gemeente-diemen 'd["outbox"] == 1 and d["counters"]["refused"] == 0 and d["alarms"] == []'
check "(b) the node logs it once as a refusal without proof" test \
    "$(grep -c 'msg="refusal without proof: not recorded' "$T/node-gemeente-diemen.log")" -eq 1
stop_one gemeente-diemen
stop_one fake

# (c) refusals proving a record that says something else.
for lie in refuse-other-msg refuse-other-reason refuse-other-rule refuse-submitted; do
    start_fake "$lie"
    start_victim
    check "(c $lie) the node connects" wait_until 20 connected gemeente-diemen
    run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
    expect 0 "(c $lie) the message is stored in the outbox"
    M=$(msg_id_of)
    check "(c $lie) the fake broker refused it with a proof" wait_until 10 \
        grep -q '^refused leaf ' "$FAKE_OUT"
    caught bad-proof "(c $lie)"
    says "not its rejected record" "(c $lie) the alarm says the record is not the refusal's"
    check "(c $lie) the message is not refused: pending, in the outbox" \
        msg_status_is gemeente-diemen "$M" 'd["state"] == "pending"'
    check "(c $lie) counted as a failed proof, not as a refusal" node_status_is gemeente-diemen \
        'd["outbox"] == 1 and d["counters"]["refused"] == 0 and d["counters"]["proofs_failed"] >= 1'
    stop_one gemeente-diemen
    stop_one fake
done

# (d) refused with a proof, then acked with a proof.
start_fake refuse-then-ack
start_victim
check "(d) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 0 "(d) the message is stored in the outbox"
M=$(msg_id_of)
check "(d) the fake broker refused it, then acked it" wait_until 10 grep -q "^ack $M leaf " \
    "$FAKE_OUT"
check "(d) the refusal came first, with its proof" test \
    "$(grep -m1 -n '^refused leaf ' "$FAKE_OUT" | cut -d: -f1)" -lt \
    "$(grep -m1 -n "^ack $M " "$FAKE_OUT" | cut -d: -f1)"
caught bad-proof "(d)"
says "its log holds both" "(d) the alarm says the log holds both"
check "(d) the message stays refused, not accepted" msg_status_is gemeente-diemen "$M" \
    'd["state"] == "rejected" and d["reason"] == "POLICY" and d["rule"] == 7'
check "(d) counted as refused, not as sent" node_status_is gemeente-diemen \
    'd["counters"]["refused"] == 1 and d["counters"]["sent"] == 0 and d["outbox"] == 0'
stop_one gemeente-diemen
stop_one fake

# (e) the real broker's refusal, proven, to a real node.
rm -rf n-gemeente-diemen/store
start_node gemeente-diemen
check "(e) the node runs (no broker yet)" wait_until 20 node_running gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 0 "(e) a message is stored in the outbox while the broker is down"
M=$(msg_id_of)
sleep 2 # past the broker's clock window of 1 s
start_broker --clock-window-ms 1000
check "(e) the node connects to the broker" wait_until 20 connected gemeente-diemen
check "(e) the broker's refusal is recorded: CLOCK_SKEW, at its rejected record's leaf" \
    wait_until 20 msg_status_is gemeente-diemen "$M" \
    "d['state'] == 'rejected' and d['reason'] == 'CLOCK_SKEW' and d['leaf_index'] >= 0 and d['tree_size'] > d['leaf_index']"
L=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["leaf_index"])' \
    "$T/.ms-gemeente-diemen" 2>/dev/null)
check "(e) the broker logged the refusal at that leaf" grep -q \
    "msg=\"submit refused\" .*msg_id=$M reason=REASON_CLOCK_SKEW rule=0 leaf=$L\$" "$T/broker.log"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait --timeout 20
expect 0 "(e) twin: a message sent now is accepted"
check "(e) no alarm, one refusal, no refusal without proof" node_status_is gemeente-diemen \
    'd["alarms"] == [] and d["counters"]["refused"] == 1 and d["counters"]["refusals_unproven"] == 0 and d["outbox"] == 0'
stop_one gemeente-diemen
stop_one broker
finish
