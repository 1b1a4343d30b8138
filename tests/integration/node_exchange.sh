#!/usr/bin/env bash
# Four partners exchange a signal and a query with three replies through the
# real broker, on ipc:// sockets: content identical after decryption, inbox
# --json as the man page says, status MSG_ID of a query shows who answered,
# a policy-denied send refused with the rule named, ack/show, the
# --on-message hook with a clean environment, and a command whose daemon is
# not running saying how to start it.
. "$(dirname "$0")/node_lib.sh"

setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen; ramen afgeplakt"

# No daemon yet.
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 1 "send without a running daemon fails"
says "not running" "send says the daemon is not running"
says "keten-node run --home n-gemeente-diemen" "send says how to start it"
run "$NODE" status --home n-gemeente-diemen
expect 1 "status without a running daemon fails"

start_broker
for id in gemeente-diemen belastingdienst woonstad; do
    start_node "$id"
done
# shellcheck disable=SC2016 # expanded by the hook's shell
KETEN_PASSPHRASE=not-needed start_node politie-mn \
    --on-message 'cat >>"$KETEN_HOME/../hook.out"; env >"$KETEN_HOME/../hook.env"'
for id in gemeente-diemen politie-mn belastingdienst woonstad; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done
check "the API socket is mode 0600" test "$(stat -c %a n-gemeente-diemen/api.sock)" = 600

# A signal to three partners, by role.
run "$NODE" send --home n-gemeente-diemen --to role:police,role:tax,role:housing \
    --signal sig.json --wait
expect 0 "send a signal to police, tax and housing (--wait)"
SIG=$(cat "$T/.out")
check "send prints a 32-hex msg_id" grep -qxE '[0-9a-f]{32}' "$T/.out"
for id in politie-mn belastingdienst woonstad; do
    check "$id received the signal" wait_until 20 inbox_has "$id" "$SIG"
    run "$NODE" inbox --home "n-$id" --json
    expect 0 "$id inbox --json"
    grep -F "\"msg_id\":\"$SIG\"" "$T/.out" >"$T/line-$id"
    check "$id: the decrypted signal equals the JSON sent" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).read())
sent = json.load(open(sys.argv[2]))
assert m["signal"] == sent, (m["signal"], sent)' "$T/line-$id" sig.json
    check "$id: inbox --json has msg_id, from, kind, received_at, signal (no in_reply_to)" \
        python3 -c '
import json, re, sys
m = json.loads(open(sys.argv[1]).read())
assert set(m) == {"msg_id", "from", "kind", "received_at", "signal"}, sorted(m)
assert m["from"] == "gemeente-diemen" and m["kind"] == "signal"
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", m["received_at"])
assert re.fullmatch(r"[0-9a-f]{32}", m["msg_id"])' "$T/line-$id"
done
check "the sender sees all three receipts" wait_until 20 msg_status_is gemeente-diemen "$SIG" \
    'all(r["state"] == "receipted" for r in d["recipients"]) and len(d["recipients"]) == 3'

# The hook ran with the message on stdin and a clean environment.
check "the --on-message hook got the message JSON" wait_until 10 grep -qF "\"msg_id\":\"$SIG\"" hook.out
check "the hook's environment has KETEN_MSG_ID" grep -qx "KETEN_MSG_ID=$SIG" hook.env
check "the hook's environment has no KETEN_PASSPHRASE" lacks grep -q KETEN_PASSPHRASE hook.env
check "the hook's environment is clean (only PATH, KETEN_HOME, KETEN_MSG_ID and the shell's own)" \
    lacks grep -qE "^(HOME|USER|KETEN_TEST_FAST_KDF|MESON_)" hook.env

# show and ack.
run "$NODE" show --home n-politie-mn "$SIG"
expect 0 "show the received signal"
says "ramen afgeplakt" "show prints the signal's summary"
says "gemeente-diemen" "show prints the sender"
run "$NODE" ack --home n-politie-mn "$SIG"
expect 0 "ack the signal (handled)"
run "$NODE" inbox --home n-politie-mn --json
expect 0 "inbox after the ack"
check "inbox no longer lists a handled message" lacks grep -qF "$SIG" "$T/.out"
run "$NODE" inbox --home n-politie-mn --json --all
stdout_says "$SIG" "inbox --all still lists it"
run "$NODE" show --home n-politie-mn 00000000000000000000000000000000
expect 1 "show of an unknown msg_id fails"

# A query to three partners and three replies.
signal query.json adrescheck "Adrescontrole Hoofdstraat 1"
run "$NODE" send --home n-gemeente-diemen --kind query --to role:police,role:tax,role:housing \
    --signal query.json --wait
expect 0 "send a query to police, tax and housing"
Q=$(cat "$T/.out")
run "$NODE" status --home n-gemeente-diemen "$Q" --json
check "before any reply, status QUERY shows no recipient replied" \
    json_is "$T/.out" 'all(not r["replied"] for r in d["recipients"]) and d["replies"] == []'
n=0
for id in politie-mn belastingdienst woonstad; do
    n=$((n + 1))
    check "$id received the query" wait_until 20 inbox_has "$id" "$Q"
    signal "reply-$id.json" adrescheck "Antwoord $n van $id: geen registratie"
    run "$NODE" reply --home "n-$id" "$Q" --signal "reply-$id.json" --wait
    expect 0 "$id replies to the query"
    echo "$id $(cat "$T/.out")" >>replies.txt
    run "$NODE" status --home n-gemeente-diemen "$Q" --json
done
check "status QUERY shows all three recipients replied" wait_until 20 msg_status_is \
    gemeente-diemen "$Q" 'all(r["replied"] for r in d["recipients"]) and len(d["replies"]) == 3'
run "$NODE" status --home n-gemeente-diemen "$Q"
expect 0 "status QUERY (text)"
says "replied" "status QUERY says which recipients replied"
while read -r id rid; do
    check "the reply of $id arrived" wait_until 20 inbox_has gemeente-diemen "$rid"
    "$NODE" inbox --home n-gemeente-diemen --json | grep -F "\"msg_id\":\"$rid\"" >"$T/r-$id"
    check "reply of $id: in_reply_to is the query, kind reply, content identical" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).read())
assert m["in_reply_to"] == sys.argv[2] and m["kind"] == "reply" and m["from"] == sys.argv[3]
assert m["signal"] == json.load(open(sys.argv[4]))' "$T/r-$id" "$Q" "$id" "reply-$id.json"
done <replies.txt

# Policy: refused early by the node, with the rule named.
run "$NODE" send --home n-politie-mn --to woonstad --signal sig.json
expect 1 "police -> housing woonfraude is refused (no rule allows it)"
says "default deny, rule 0" "the refusal names the default rule 0"
run "$NODE" send --home n-gemeente-diemen --to woonstad --signal query.json
expect 1 "municipality -> housing adrescheck signal is refused by the deny rule"
says "deny rule 3" "the refusal names deny rule 3"
run "$NODE" reply --home n-gemeente-diemen "$SIG" --signal sig.json
expect 1 "reply to a message this node did not receive fails"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal missing.json
expect 1 "send with a missing --signal file fails"
echo '{"type":"woonfraude"' >bad.json
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal bad.json
expect 1 "send with broken JSON fails"
run "$NODE" send --home n-gemeente-diemen --to politie-mn
expect 2 "send without --signal is a usage error"

# inbox --wait: answers as soon as a message comes.
for m in $("$NODE" inbox --home n-belastingdienst --json | python3 -c '
import json, sys
for l in sys.stdin:
    print(json.loads(l)["msg_id"])'); do
    "$NODE" ack --home n-belastingdienst "$m"
done
run "$NODE" inbox --home n-belastingdienst --json
check "belastingdienst has handled everything (inbox exits 0 and lists nothing)" \
    test "$RC" -eq 0 -a -f "$T/.out" -a ! -s "$T/.out"
"$NODE" inbox --home n-belastingdienst --json --wait 30 >waited.out 2>&1 &
waiter=$!
sleep 1
check "inbox --wait is still waiting" kill -0 "$waiter"

# Stdin.
run bash -c "\"$NODE\" send --home n-gemeente-diemen --to belastingdienst --signal - <sig.json"
expect 0 "send reads the signal from standard input with --signal -"
STDIN_MSG=$(cat "$T/.out")
wait "$waiter"
check "inbox --wait returns with the new message" grep -qF "\"msg_id\":\"$STDIN_MSG\"" waited.out

# Every message checked in the log; no alarm anywhere.
for id in gemeente-diemen politie-mn belastingdienst woonstad; do
    check "$id: every ack, delivery and notice proven in the audit log (no proof failed)" \
        wait_until 30 node_status_is "$id" \
        'd["outbox"] == 0 and d["counters"]["proofs_passed"] > 0 and d["counters"]["proofs_failed"] == 0 and d["evidence"] == 0'
    run "$NODE" status --home "n-$id"
    expect 0 "$id status: no alarm"
    says "connected" "$id status says connected"
done
check "gemeente-diemen accepted and cosigned checkpoints" node_status_is gemeente-diemen \
    'd["checkpoint"]["tree_size"] > 0 and d["counters"]["checkpoints_accepted"] > 0'
check "with all four partners online a checkpoint becomes witnessed" wait_until 30 \
    node_status_is gemeente-diemen 'd["checkpoint"]["witnessed_size"] > 0'

stop_one politie-mn
check "SIGTERM stops the node with exit 0" test "$STOP_RC" -eq 0
check "the API socket is removed on exit" test ! -e n-politie-mn/api.sock
check "no content in the node logs" lacks grep -q 'Hoofdstraat\|ramen afgeplakt' "$T"/node-*.log
finish
