#!/usr/bin/env bash
# The node against a broker that holds its keys and sends what it likes
# (keten-fakebroker, which signs with the real broker's key file), beyond
# the lies of node_fakebroker.sh:
#   (a) expire-early: an expiry notice whose proven `expired` record is dated
#       before the message's expires_at -> alarm bad-proof, status exits 3,
#       the frame kept as evidence, the recipient stays accepted, the notice
#       is not confirmed;
#   (b) flood-bad-delivery: the same false delivery (its path broken) 50
#       times, then the true one -> one alarm per copy, the frame kept once
#       as evidence, the other 49 counted (status and metrics:
#       evidence_not_kept), the true delivery stored once and receipted,
#       and its receipt reaches the sender (the twin);
#   (c) oversize: a frame of exactly the frame limit (a delivery without a
#       proof) is read and checked (alarm bad-proof), one a byte longer makes
#       libzmq end the connection for good; the node sees that no attempt
#       follows, makes the link again, says Hello, and sends as before.
. "$(dirname "$0")/node_lib.sh"

setup_network || done_testing
signal sig.json woonfraude "Melding aan een broker die zijn sleutels heeft"
signal sig2.json woonfraude "Tweede melding aan die broker"
# (a) an expiry notice dated before the message expires.
require "(a) the fake broker starts (expire-early)" start_fake expire-early
start_on_fake gemeente-diemen
check "(a) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "(a) the message is accepted (an honest ack)"
M=$(cat "$T/.out")
check "(a) the fake broker sends the expiry notice of it at once" wait_until 10 \
    grep -q "^expired-notice $M to gemeente-diemen leaf" "$FAKE_OUT"
check "(a) the node raises the alarm" wait_until 20 alarmed gemeente-diemen
run "$NODE" status --home n-gemeente-diemen
expect 3 "(a) status exits 3"
says "bad-proof" "(a) the alarm is bad-proof"
check "(a) the alarm says the record is dated before the message expires" \
    alarm_is gemeente-diemen bad-proof "before the message expires at"
check "(a) the alarm is logged" grep -q 'msg=ALARM alarm=bad-proof .*before the message expires at' \
    "$T/node-gemeente-diemen.log"
check "(a) the notice is kept as evidence" node_status_is gemeente-diemen 'd["evidence"] == 1'
check "(a) the recipient stays accepted, not expired" msg_status_is gemeente-diemen "$M" \
    'd["state"] == "accepted" and d["recipients"][0]["state"] == "accepted"'
# A confirmation leaves with the node's next round; the marker is a later
# frame on the same connection: a second message, submitted after it.
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig2.json --wait
expect 0 "(a) a second message after the alarm (the marker)"
M2=$(cat "$T/.out")
check "(a) the fake broker acks it" grep -q "^ack $M2 leaf" "$FAKE_OUT"
sed "/^ack $M2 leaf/q" "$FAKE_OUT" >"$T/expire-upto-marker"
check "(a) the false notice was not confirmed" lacks grep -q '^notice-ack' "$T/expire-upto-marker"
check "(a) the first message's recipient is still accepted" msg_status_is gemeente-diemen "$M" \
    'd["recipients"][0]["state"] == "accepted"'
stop_one gemeente-diemen
stop_one fake

# (b) the same false delivery 50 times, then the true one.
require "(b) the fake broker starts (flood-bad-delivery)" start_fake flood-bad-delivery --repeat 50
start_on_fake politie-mn --metrics 127.0.0.1:0
start_on_fake gemeente-diemen
check "(b) the recipient connects" wait_until 20 connected politie-mn
check "(b) the sender connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "(b) the message is accepted"
M=$(cat "$T/.out")
check "(b) the fake broker sends the false delivery 50 times, then the true one" wait_until 10 \
    grep -q "^deliver-bad $M to politie-mn times 50$" "$FAKE_OUT"
# The true delivery comes after the 50 false ones on the same connection:
# once it is stored, every false one has been handled.
check "(b) the true delivery is stored" wait_until 20 inbox_has politie-mn "$M"
check "(b) one alarm for each false copy" node_status_is politie-mn \
    'len(d["alarms"]) == 50 and all(a["kind"] == "bad-proof" for a in d["alarms"])'
check "(b) the false frame is kept once as evidence" node_status_is politie-mn 'd["evidence"] == 1'
check "(b) the 49 copies not kept are counted" node_status_is politie-mn \
    'd["counters"]["evidence_not_kept"] == 49 and d["counters"]["rejected"] == 50'
check "(b) and logged" test "$(grep -c 'msg="evidence kept before: the same frame again"' \
    "$T/node-politie-mn.log")" -eq 49
check "(b) the metrics serve the count" wait_until 10 has_metrics_port politie-mn
check "(b) keten_node_evidence_not_kept_total is 49" \
    metric_is politie-mn keten_node_evidence_not_kept_total 'v == 49'
check "(b) the true delivery is stored once (no duplicate)" node_status_is politie-mn \
    'd["counters"]["received"] == 1 and d["counters"]["duplicates"] == 0'
run "$NODE" status --home n-politie-mn
expect 3 "(b) status exits 3"
check "(b) the true delivery is receipted" wait_until 10 \
    grep -q "^receipted $M by politie-mn" "$FAKE_OUT"
check "(b) the receipt reaches the sender (the twin: no alarm there)" wait_until 20 msg_status_is \
    gemeente-diemen "$M" 'd["recipients"][0]["state"] == "receipted"'
check "(b) the sender raised no alarm" node_status_is gemeente-diemen 'd["alarms"] == []'
stop_one gemeente-diemen
stop_one politie-mn
stop_one fake

# (c) a frame at the limit, then one a byte over it.
require "(c) the fake broker starts (oversize)" start_fake oversize
start_on_fake gemeente-diemen
check "(c) the fake broker sends both frames after the first Hello" wait_until 20 \
    grep -qx "oversize-sent gemeente-diemen" "$FAKE_OUT"
check "(c) the frame at the limit is read and checked: alarm bad-proof (no proof)" wait_until 20 \
    alarm_is gemeente-diemen bad-proof "no proof in the frame"
check "(c) it is kept as evidence" node_status_is gemeente-diemen 'd["evidence"] == 1'
check "(c) the node makes the link again after libzmq gave it up (40 s)" wait_until 90 grep -q \
    'msg="the connection to the broker was given up' "$T/node-gemeente-diemen.log"
# hellos_at_least NODE N: the fake broker has logged N Hellos of NODE
# (counted again at each try of wait_until).
hellos_at_least() { test "$(grep -c "^hello $1 " "$FAKE_OUT")" -ge "$2"; }
check "(c) and says Hello on the new connection" wait_until 20 hellos_at_least gemeente-diemen 2
check "(c) it is connected again" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait --timeout 20
expect 0 "(c) a message is accepted on the new connection"
M=$(cat "$T/.out")
check "(c) its ack was proven" msg_status_is gemeente-diemen "$M" 'd["state"] == "accepted"'
check "(c) one alarm only (the frame at the limit)" node_status_is gemeente-diemen \
    'len(d["alarms"]) == 1'
stop_one gemeente-diemen
stop_one fake
finish
