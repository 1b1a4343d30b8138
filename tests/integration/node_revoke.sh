#!/usr/bin/env bash
# Revocation and key rotation seen end to end, with the real broker and
# nodes: a directory version that revokes a connected node makes the broker
# end that connection with an Error naming the reason and the version,
# count it and audit it (auth-failed); the node raises the alarm, stops
# reconnecting, `status` exits non-zero saying what to do and `send` fails at
# once. A version that does not touch a node (another node added) keeps it
# connected. A rotation in the same home (keygen --rotate) keeps the node's
# store; messages in flight during the switch are neither lost nor doubled.
#
# Arguments: node_lib.sh's six, then keten-audit.
if [ -z "${7:-}" ] || [ ! -x "$7" ]; then
    echo "Bail out! keten-audit must be the seventh argument (got '${7:-}')"
    exit 1
fi
AUDIT=$(realpath "$7")
. "$(dirname "$0")/node_lib.sh"
need_tool curl # the broker's metrics

setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen; ramen afgeplakt"
signal check.json adrescheck "Adrescheck"

"$BROKER" run --home broker --anchor admin/network.pub --directory directory.signed \
    --listen "$BROKER_EP" --checkpoint-ms 200 --metrics 127.0.0.1:0 >>"$T/broker.log" 2>&1 &
PID[broker]=$!
for id in gemeente-diemen politie-mn belastingdienst; do
    start_node "$id"
done
for id in gemeente-diemen politie-mn belastingdienst; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done
wait_until 10 grep -q 'msg="metrics served"' "$T/broker.log"
METRICS_PORT=$(sed -n 's/.*msg="metrics served".* port=\([0-9]*\).*/\1/p' "$T/broker.log" | tail -n 1)

# metric NAME: the value of an unlabelled metric (nothing when unreadable).
metric() {
    curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | sed -n "s/^$1 \([0-9]*\)$/\1/p"
}

# install FILE VERSION: give the broker a new directory file and wait for it.
install() {
    cp "$1" directory.signed
    kill -HUP "${PID[broker]}"
    wait_until 10 grep -q "msg=\"directory installed\" version=$2" "$T/broker.log"
}

# ---- a change that does not touch the node: it stays connected ----------------

run "$NODE" keygen --home n-zorg --id zorg-diemen --role housing --org "Zorg Diemen" \
    --no-passphrase
expect 0 "a new partner makes its keys"
run "$KEYS" approve --dir admin n-zorg/identity.request
expect 0 "the administrators approve it"
publish_dir admin dir.v2 || done_testing
check "the broker installs version 2 (another node added)" install dir.v2 2
check "politie-mn gets version 2 pushed" wait_until 10 node_status_is politie-mn \
    'd["directory"]["version"] == 2'
run "$NODE" send --home n-gemeente-diemen --to politie-mn --json sig.json --wait
expect 0 "a signal to politie-mn after version 2"
S1=$(cat "$T/.out")
check "politie-mn, untouched by version 2, still receives it" wait_until 20 inbox_has politie-mn "$S1"
run "$NODE" status --home n-politie-mn
expect 0 "politie-mn's status is clean (exit 0)"
says_not "REFUSED" "its status names no refusal"
check "the metrics count no authentication failure yet" test "$(metric keten_auth_failed_total)" = 0

# ---- revocation ------------------------------------------------------------------

run "$KEYS" revoke --dir admin politie-mn --reason "key lost"
expect 0 "the administrators revoke politie-mn"
publish_dir admin dir.v3 || done_testing
check "the broker installs version 3 (politie-mn revoked)" install dir.v3 3
check "politie-mn raises the alarm at once (revoked, version 3)" wait_until 10 \
    grep -q 'msg=ALARM alarm=revoked version=3' "$T/node-politie-mn.log"
check "the broker logs the cut-off with its reason" grep -q \
    'msg="node no longer current: connection cut off" node=politie-mn version=3 reason=revoked' \
    "$T/broker.log"
check "politie-mn stops reconnecting" grep -q \
    'msg="the broker refuses this node: not reconnecting"' "$T/node-politie-mn.log"
run "$NODE" status --home n-politie-mn
expect 3 "politie-mn's status exits 3 (revoked)"
says "revoked in version 3: ask your administrator" "status says what happened and what to do"
says "NOT connected" "status says it is not connected"
check "status --json names the refusal (kind, version, confirmed by its directory)" \
    node_status_is politie-mn 'd["refused"]["kind"] == "revoked" and d["refused"]["directory_version"] == 3 and d["refused"]["confirmed"] and not d["connected"] and d["directory"]["version"] == 3'
run timeout 5 "$NODE" send --home n-politie-mn --to gemeente-diemen --json check.json --wait
expect 3 "send from the revoked node fails at once (not a timeout)"
says "revoked in version 3: ask your administrator" "send says why"
check "nothing was queued" node_status_is politie-mn 'd["outbox"] == 0'
check "the broker counts one authentication failure" \
    test "$(metric keten_auth_failed_total)" = 1
run "$NODE" status --home n-gemeente-diemen
expect 0 "gemeente-diemen, not revoked, is unaffected (status exit 0)"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --json sig.json
expect 1 "a signal to the revoked node is refused by its sender"
says "politie-mn" "it names the recipient that is no longer current"

# Restarted with the revoked keys: the refusal still holds (the broker's ZAP
# handler refuses the key at the handshake).
stop_one politie-mn
start_node politie-mn
check "the revoked node, restarted, says so again" wait_until 10 grep -q \
    'msg="the broker cut this node off before its restart" alarm=revoked version=3' \
    "$T/node-politie-mn.log"
run "$NODE" status --home n-politie-mn
expect 3 "after the restart its status still exits 3"
says "revoked in version 3: ask your administrator" "and still says why"
check "its connection attempts are refused at the handshake (counted)" wait_until 15 \
    test "$(metric keten_auth_failed_total)" -ge 2
stop_one politie-mn

# ---- the audit log ------------------------------------------------------------------

stop_all
run "$AUDIT" replay --db broker --format jsonl
expect 0 "keten-audit replay reads the log"
check "the cut-off is audited: auth-failed, politie-mn, reason revoked, version 3" "$PY" -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
hits = [r for r in recs if r.get("event") == "auth-failed" and r.get("node") == "politie-mn"
        and r.get("reason") == "revoked" and r.get("directory_version") == 3]
sys.exit(0 if len(hits) == 1 else 1)' "$T/.out"
run "$AUDIT" verify --db broker --anchor admin/network.pub
expect 0 "keten-audit verify finds the log clean"
finish
