#!/usr/bin/env bash
# What an operator reads about a node (operations.md): status's
# last_connect_error names an unreachable broker (and is empty once the node
# is connected); a failed --on-message hook is logged with the msg_id it ran
# for, and its kind (twin: a hook that succeeds logs no failure); a busy
# metrics or API port is reported once, by keten, with the system's reason
# and no libmicrohttpd line on stderr (broker and node); the node's
# `msg="checkpoint witnessed"` line has the broker's field names.
. "$(dirname "$0")/node_lib.sh"
need_tool curl

setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen"

# 1. The broker is not running yet: unreachable.
start_node politie-mn --on-message 'exit 3'
check "politie-mn runs" wait_until 20 node_running politie-mn
check "status --json: last_connect_error says the broker is unreachable, at its endpoint" \
    wait_until 10 node_status_is politie-mn \
    "not d['connected'] and d['last_connect_error'].startswith('broker unreachable at $BROKER_EP: ') and d['last_connect_error'].endswith('retrying')"
run "$NODE" status --home n-politie-mn
expect 1 "status exits 1 while the broker is unreachable"
says "broker unreachable at $BROKER_EP" "status says the broker is unreachable"
check "the node logs it once it is so" \
    grep -qF "msg=\"cannot connect to broker\" endpoint=$BROKER_EP why=\"broker unreachable at $BROKER_EP" \
    "$T/node-politie-mn.log"

# 2. A busy port, for the broker's metrics and the node's metrics and API.
start_node gemeente-diemen --metrics 127.0.0.1:0
check "gemeente-diemen serves its metrics" wait_until 20 has_metrics_port gemeente-diemen
P=$(metrics_port gemeente-diemen)
run timeout 20 "$BROKER" run --home broker --anchor admin/network.pub --directory directory.signed \
    --listen "$BROKER_EP" --metrics "127.0.0.1:$P"
expect 1 "the broker does not start on a busy metrics port"
says "cannot serve metrics on 127.0.0.1:$P: Address already in use" "the broker says why, once"
says_not "Failed to bind" "no libmicrohttpd line on the broker's stderr"
run timeout 20 "$NODE" run --home n-woonstad --anchor admin/network.pub --directory directory.signed \
    --broker "$BROKER_EP" --metrics "127.0.0.1:$P"
expect 1 "a node does not start on a busy metrics port"
says "cannot serve metrics on 127.0.0.1:$P: Address already in use" "the node says why, once"
says_not "Failed to bind" "no libmicrohttpd line on the node's stderr (metrics)"
run timeout 20 "$NODE" run --home n-woonstad --anchor admin/network.pub --directory directory.signed \
    --broker "$BROKER_EP" --api-listen "127.0.0.1:$P"
expect 1 "a node does not start on a busy API port"
says "cannot serve the API on 127.0.0.1:$P: Address already in use" "the node says why"
says_not "Failed to bind" "no libmicrohttpd line on the node's stderr (API)"

# 3. The broker comes: connected, and the error is gone.
start_broker
# shellcheck disable=SC2016 # expanded by the hook's shell
start_node belastingdienst --log-level debug --on-message 'cat >/dev/null'
# shellcheck disable=SC2016
start_node woonstad --on-message 'kill -9 $$'
for id in gemeente-diemen politie-mn belastingdienst woonstad; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done
check "twin: connected, politie-mn's last_connect_error is empty" \
    node_status_is politie-mn 'd["connected"] and d["last_connect_error"] == ""'

# 4. A signal to the three: each node's hook runs for it.
run "$NODE" send --home n-gemeente-diemen --to politie-mn,belastingdienst,woonstad \
    --signal sig.json --wait
expect 0 "send a signal to three partners"
SIG=$(cat "$T/.out")
printed_msg_id "send"
check "politie-mn logs its failed hook with the msg_id and the hook's kind (exit 3)" \
    wait_until 20 grep -qE "msg=\"hook failed\" hook=on-message msg_id=$SIG pid=[0-9]+ status=3\$" \
    "$T/node-politie-mn.log"
check "woonstad logs its hook killed by a signal with the msg_id" \
    wait_until 20 grep -qE "msg=\"hook failed\" hook=on-message msg_id=$SIG pid=[0-9]+ status=-1 signal=9\$" \
    "$T/node-woonstad.log"
check "twin: belastingdienst's hook ends well (hook done, with the msg_id)" \
    wait_until 20 grep -qE "msg=\"hook done\" hook=on-message msg_id=$SIG pid=[0-9]+\$" \
    "$T/node-belastingdienst.log"
check "twin: and no failure is logged for it" lacks grep -qF 'msg="hook failed"' \
    "$T/node-belastingdienst.log"
check "twin: belastingdienst counts no failed hook" \
    node_status_is belastingdienst 'd["counters"]["hooks_run"] == 1 and d["counters"]["hooks_failed"] == 0'

# 5. "checkpoint witnessed": the same fields in the broker's and the nodes' logs.
# fields FILE: the keys of the first "checkpoint witnessed" line of FILE.
fields() {
    grep -m1 'msg="checkpoint witnessed"' "$1" | "$PY" -c '
import re, sys
line = sys.stdin.read()
print(" ".join(k for k in re.findall(r"(?:^| )([A-Za-z0-9_.-]+)=", line)))'
}
check "the broker logs a witnessed checkpoint" wait_until 20 grep -q 'msg="checkpoint witnessed"' \
    "$T/broker.log"
check "gemeente-diemen logs a witnessed checkpoint" wait_until 20 grep -q \
    'msg="checkpoint witnessed"' "$T/node-gemeente-diemen.log"
check "the broker's line: size and witnesses" \
    test "$(fields "$T/broker.log")" = "level prog msg size witnesses"
check "the node's line: the same fields" \
    test "$(fields "$T/node-gemeente-diemen.log")" = "level prog msg size witnesses" ||
    grep -m1 'msg="checkpoint witnessed"' "$T/node-gemeente-diemen.log" | sed 's/^/# /'
check "libmicrohttpd takes keten's logger before any other option (no warning about it)" \
    lacks grep -qF 'is not the first option' "$T"/node-*.log "$T/broker.log"

finish
