#!/usr/bin/env bash
# Notices for a sender (its recipients' receipts forwarded to it, expiry
# notices) stay at the real broker until the sender confirms them with a
# NoticeAck, and are sent again until it does:
#   A. with keten-testpeer (raw frames): a NoticeAck of another node, or of
#      a leaf that is no notice of the sender, deletes nothing and keeps the
#      connection serving; an unconfirmed notice comes again on every new
#      connection and, on the same connection, after 10 s; a confirmed one
#      never again; an expiry notice the same way;
#   B. with the real nodes: a receipt forwarded while the sender is offline,
#      one sent to the sender's old connection while it was frozen (then
#      killed), and one whose broker was killed after committing it, before
#      sending it (KETEN_BROKER_FAULT=kill-after-notice), all reach the
#      sender once it is back: `keten-node status MSG` says "receipted" for
#      the recipient, and the broker then holds no notice.
# Arguments: the node tests' programs, then keten-testpeer.
# shellcheck disable=SC2317 # the helpers run through wait_until and check
PEER=$(realpath "${7:?keten-testpeer path}")
. "$(dirname "$0")/node_lib.sh"
need_tool curl # the metrics endpoint

# start_broker (node_lib.sh) with a metrics endpoint on a free port.
start_broker() {
    "$BROKER" run --home broker --anchor admin/network.pub --directory directory.signed \
        --listen "$BROKER_EP" --checkpoint-ms 200 --metrics 127.0.0.1:0 >>"$T/broker.log" 2>&1 &
    PID[broker]=$!
}

# metric NAME: its value at the running broker (empty if it does not answer).
metric() {
    local port
    port=$(sed -n 's/.*msg="metrics served".* port=\([0-9]*\).*/\1/p' "$T/broker.log" | tail -n 1)
    [ -n "$port" ] || return 1
    curl -sf "http://127.0.0.1:$port/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

# metric_is NAME VALUE
metric_is() {
    [ "$(metric "$1")" = "$2" ]
}

# metric_above NAME N: its value is greater than N.
metric_above() {
    local v
    v=$(metric "$1")
    [ -n "$v" ] && [ "$v" -gt "$2" ]
}

# peer NODE [OPTIONS] ACTION ...: keten-testpeer as NODE; output as with run.
peer() {
    local node=$1
    shift
    run timeout 60 "$PEER" --home "n-$node" --anchor admin/network.pub \
        --directory directory.signed --broker "$BROKER_EP" "$@"
}

# leaf_of EVENT MSG: the leaf index of the broker's EVENT record of MSG
# (read-only, while it runs); empty if there is none.
leaf_of() {
    "$PEER" audit --db broker/store 2>/dev/null | "$PY" -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    if r.get("event") == sys.argv[1] and r.get("msg_id") == sys.argv[2]:
        print(r["seq"])
        break' "$1" "$2"
}

audited() {
    [ -n "$(leaf_of "$1" "$2")" ]
}

# receipted ID MSG: node ID's status of MSG says every recipient receipted it.
receipted() {
    msg_status_is "$1" "$2" \
        'd["recipients"] and all(r["state"] == "receipted" for r in d["recipients"])'
}

setup_network || done_testing
signal sig.json woonfraude "Melding voor de afzender"
start_broker
check "the broker serves metrics" wait_until 20 metric_is keten_notices_pending 0

# ---- A. raw frames ----------------------------------------------------------

peer gemeente-diemen submit --to politie-mn --json sig.json
jl 'len(E("ack")) == 1 and E("ack")[0]["valid"]' "A: gemeente-diemen submits a signal"
MA=$(jget 'E("sent")[0]["msg_id"]')
peer politie-mn recv --count 1
jl "len(E('deliver')) == 1 and E('deliver')[0]['receipted']" \
    "A: politie-mn receives and receipts it while gemeente-diemen is away"
check "A: the receipt is audited" wait_until 10 audited RECEIPTED "$MA"
LA=$(leaf_of RECEIPTED "$MA")
check "A: the forwarded receipt waits as a notice for gemeente-diemen" \
    wait_until 10 metric_is keten_notices_pending 1

peer belastingdienst notice-ack --leaf "$LA"
jl "E('notice_ack')[0]['sent'] and len(E('directory_push')) == 1 and not E('error')" \
    "A: a NoticeAck of another node (belastingdienst) is ignored: no error, the connection serves"
peer politie-mn notice-ack --leaf "$LA"
jl "len(E('directory_push')) == 1 and not E('error')" \
    "A: so is one of the recipient that signed the receipt"
peer gemeente-diemen --no-notice-ack notice-ack --leaf 999999
jl "len(E('directory_push')) == 1 and not E('error')" \
    "A: a NoticeAck of the sender naming a leaf that is no notice is ignored too"
check "A: they deleted nothing (keten_notices_pending 1)" \
    wait_until 10 metric_is keten_notices_pending 1
check "A: the broker counted the three as unknown" \
    wait_until 10 metric_is keten_notice_acks_unknown_total 3
check "A: and confirmed nothing" wait_until 10 metric_is keten_notices_confirmed_total 0

peer gemeente-diemen --no-notice-ack connect-only --listen-ms 2000
jl "[(r['msg_id'], r['leaf'], r['valid']) for r in E('receipt')] == [('$MA', $LA, True)]" \
    "A: gemeente-diemen connects and gets the receipt, with the leaf of its audit record"
peer gemeente-diemen --no-notice-ack connect-only --listen-ms 2000
jl "[r['leaf'] for r in E('receipt')] == [$LA]" \
    "A: unconfirmed, it comes again on the next connection"
peer gemeente-diemen --no-notice-ack connect-only --listen-ms 12500
jl "len(E('receipt')) >= 2 and all(r['leaf'] == $LA for r in E('receipt'))" \
    "A: and again on the same connection after 10 s without a confirmation"
check "A: the broker counts the resend" wait_until 10 metric_above keten_notices_resent_total 0
check "A: it still holds the notice" wait_until 10 metric_is keten_notices_pending 1

peer gemeente-diemen connect-only --listen-ms 2000
jl "[(r['leaf'], r['confirmed']) for r in E('receipt')] == [($LA, True)]" \
    "A: gemeente-diemen gets it once more and confirms it (NoticeAck)"
check "A: the confirmed notice is deleted" wait_until 10 metric_is keten_notices_pending 0
check "A: the broker counts one confirmation" \
    wait_until 10 metric_is keten_notices_confirmed_total 1
peer gemeente-diemen --no-notice-ack connect-only --listen-ms 2000
jl "len(E('receipt')) == 0" "A: a confirmed notice is not sent again"
peer gemeente-diemen notice-ack --leaf "$LA"
jl "len(E('directory_push')) == 1 and not E('error')" \
    "A: confirming it a second time is ignored, not an error"

sed 's/"woonfraude"/"adrescheck"/' sig.json >check.json
peer gemeente-diemen submit --to woonstad --kind query --json check.json --expires-in-ms 1000
jl 'len(E("ack")) == 1' "A: a short-lived query to an offline recipient is accepted"
MX=$(jget 'E("sent")[0]["msg_id"]')
check "A: it expires (audited)" wait_until 20 audited EXPIRED "$MX"
LX=$(leaf_of EXPIRED "$MX")
peer gemeente-diemen --no-notice-ack connect-only --listen-ms 2000
jl "[(x['msg_id'], x['leaf']) for x in E('expired')] == [('$MX', $LX)]" \
    "A: the sender gets the expiry notice, with the leaf of the expired record"
check "A: unconfirmed, the broker keeps it" wait_until 10 metric_is keten_notices_pending 1
peer gemeente-diemen connect-only --listen-ms 2000
jl "[(x['leaf'], x['confirmed']) for x in E('expired')] == [($LX, True)]" \
    "A: on the next connection it comes again and is confirmed"
check "A: then the broker deletes it" wait_until 10 metric_is keten_notices_pending 0

# ---- B. real nodes ----------------------------------------------------------

start_node gemeente-diemen
start_node politie-mn
check "B: gemeente-diemen connects" wait_until 20 connected gemeente-diemen
check "B: politie-mn connects" wait_until 20 connected politie-mn

# 1. The sender is offline when the receipt comes.
stop_one politie-mn
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "B1: gemeente-diemen sends a signal to politie-mn (offline)"
M1=$(cat "$T/.out")
check "B1: gemeente-diemen's status says accepted, not receipted" msg_status_is gemeente-diemen \
    "$M1" 'd["recipients"][0]["state"] == "accepted"'
stop_one gemeente-diemen
start_node politie-mn
check "B1: politie-mn gets it" wait_until 30 inbox_has politie-mn "$M1"
check "B1: its receipt is audited while gemeente-diemen is offline" \
    wait_until 20 audited RECEIPTED "$M1"
start_node gemeente-diemen
check "B1: after reconnecting, gemeente-diemen's status says receipted" \
    wait_until 30 receipted gemeente-diemen "$M1"
check "B1: the node confirmed it: the broker holds no notice" \
    wait_until 20 metric_is keten_notices_pending 0

# 2. The receipt is sent to the sender's old connection: the sender is
# frozen (its connection still open), then killed and restarted.
stop_one politie-mn
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "B2: gemeente-diemen sends another signal to politie-mn (offline)"
M2=$(cat "$T/.out")
SENT=$(metric keten_notices_sent_total)
kill -STOP "${PID[gemeente-diemen]}"
start_node politie-mn
check "B2: politie-mn gets it" wait_until 30 inbox_has politie-mn "$M2"
check "B2: its receipt is audited" wait_until 20 audited RECEIPTED "$M2"
check "B2: the broker sent the receipt to gemeente-diemen's frozen connection" \
    wait_until 20 metric_above keten_notices_sent_total "$SENT"
kill9 gemeente-diemen
check "B2: the frozen sender never recorded it" \
    lacks grep -q "msg=receipt msg_id=$M2" "$T/node-gemeente-diemen.log"
start_node gemeente-diemen
check "B2: restarted on a new connection, gemeente-diemen gets it: receipted" \
    wait_until 30 receipted gemeente-diemen "$M2"
check "B2: and logs that it recorded it" \
    grep -q "msg=receipt msg_id=$M2" "$T/node-gemeente-diemen.log"
check "B2: the broker holds no notice" wait_until 20 metric_is keten_notices_pending 0

# 3. The broker is killed after committing the receipt, before sending it.
stop_one politie-mn
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "B3: gemeente-diemen sends a third signal to politie-mn (offline)"
M3=$(cat "$T/.out")
stop_one broker
KETEN_BROKER_FAULT=kill-after-notice start_broker
check "B3: gemeente-diemen reconnects to the broker armed to die" \
    wait_until 30 connected gemeente-diemen
pid=${PID[broker]}
start_node politie-mn
check "B3: the broker killed itself after committing the receipt, before sending it" \
    wait_until 30 lacks kill -0 "$pid"
wait "$pid" 2>/dev/null
unset "PID[broker]"
check "B3: the receipt is audited (committed)" audited RECEIPTED "$M3"
check "B3: it did not reach gemeente-diemen" msg_status_is gemeente-diemen "$M3" \
    'd["recipients"][0]["state"] == "accepted"'
start_broker
check "B3: after the broker's restart gemeente-diemen's status says receipted" \
    wait_until 30 receipted gemeente-diemen "$M3"
check "B3: the broker holds no notice" wait_until 20 metric_is keten_notices_pending 0
check "B3: the earlier messages are still receipted" receipted gemeente-diemen "$M1"

finish
