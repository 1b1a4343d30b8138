#!/usr/bin/env bash
# The twins of keten-audit verify's rule "one delivered record and one
# receipted, refused-by-recipient or expired record per recipient": the logs
# an honest broker writes on the paths where a message is handed out more
# than once or ends in more than one way must verify, and prove/check-proof
# must hold for them. A real keten-broker on ipc:// with keten-testpeer
# nodes: a message to two recipients, refused by one, delivered to the
# other and never answered (delivered again after a broker crash, then
# expired for it alone); a message delivered, not receipted, the broker
# killed (SIGKILL) and restarted, delivered again and receipted.
. "$(dirname "$0")/audit_lib.sh"

setup_broker_network || done_testing
start_broker --checkpoint-ms 200 || done_testing

peer gemeente-diemen submit --to politie-mn,belastingdienst --json signal.json \
    --expires-in-ms 20000
E1=$(jget 'E("sent")[0]["msg_id"]')
peer politie-mn recv --count 1 --refuse invalid-signal
check "politie-mn refuses the message" test "$(jget 'len(E("deliver"))')" = 1
peer belastingdienst recv --count 1 --no-receipt
check "belastingdienst receives it and does not answer" test "$(jget 'len(E("deliver"))')" = 1

peer gemeente-diemen submit --to politie-mn --json signal.json
E2=$(jget 'E("sent")[0]["msg_id"]')
peer politie-mn recv --count 1 --no-receipt
check "politie-mn receives a second message and does not answer" \
    test "$(jget 'len(E("deliver"))')" = 1
sleep 0.5 # its delivered record committed
stop_broker KILL
start_broker --checkpoint-ms 200 || done_testing
peer belastingdienst recv --count 1 --no-receipt --timeout-ms 3000
check "after the crash, belastingdienst gets the first message again" \
    test "$(jget 'len(E("deliver"))')" = 1
peer politie-mn recv --count 1
check "and politie-mn the second, which it now receipts" test "$(jget 'len(E("deliver"))')" = 1
wait_for 40 logged EXPIRED || not_ok "the first message expires"
sleep 1 # a checkpoint covers the expiry
audit
cp "$T/.out" records.json
jl "[(r['event'], r['node'], r['recipients']) for r in L if r.get('msg_id') == '$E1' and r['event'] != 'SUBMITTED'] == [('DELIVERED', 'politie-mn', []), ('REFUSED_BY_RECIPIENT', 'politie-mn', ['politie-mn']), ('DELIVERED', 'belastingdienst', []), ('EXPIRED', '', ['belastingdienst'])]" \
    "the first message: one delivery each, the refusal, an expiry for belastingdienst alone"
cp records.json "$T/.out"
jl "[(r['event'], r['node']) for r in L if r.get('msg_id') == '$E2' and r['event'] != 'SUBMITTED'] == [('DELIVERED', 'politie-mn'), ('RECEIPTED', 'politie-mn')]" \
    "the second message: delivered once (the redelivery is not logged), receipted once"
stop_broker
check "the broker stops" test "$BRC" -eq 0

run "$AUDIT" verify --db broker --anchor admin/network.pub
expect 0 "the honest log verifies (refusal, expiry after a delivery, crash, redelivery)"
for M in "$E1" "$E2"; do
    run "$AUDIT" prove --db broker "$M" --out "p-$M.json"
    expect 0 "prove $M"
    run "$AUDIT" check-proof "p-$M.json" --anchor admin/network.pub
    expect 0 "its bundle holds"
done
done_testing
