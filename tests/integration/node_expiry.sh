#!/usr/bin/env bash
# A node past its directory's expiry opens nothing and receipts nothing, and
# loses nothing. The directory is published for one day and politie-mn's
# node judges its freshness two days ahead (the test hook
# KETEN_NODE_TEST_DIRECTORY_AHEAD_MS), so that for politie-mn alone it has
# expired while the broker and the sender hold it fresh. A signal sent to
# politie-mn is accepted by the broker and delivered; politie-mn does not
# open it, stores nothing, signs no receipt (its receipt batch counter stays
# 0 in the step that holds the delivery), raises the alarm
# directory-expired (at once, idle, before anything arrives; status exits 3)
# and says in status why and what to do; the sender's
# recipient stays "accepted". Then the administrators publish a fresh
# version, the broker installs it on SIGHUP and pushes it, and politie-mn,
# once it holds it, asks again (Hello): the same message is delivered,
# stored once and receipted (the twin).
. "$(dirname "$0")/node_lib.sh"

make_network admin || done_testing
run "$KEYS" publish --dir admin --out directory.signed --admin 1 --valid-days 1
expect 0 "publish version 1, valid for one day"
run "$KEYS" sign --dir admin directory.signed --admin 2
expect 0 "sign version 1"
signal sig.json woonfraude "Adres staat op naam van 9 personen"

start_broker
start_node gemeente-diemen
KETEN_NODE_TEST_DIRECTORY_AHEAD_MS=$((2 * 86400000)) start_node politie-mn
for id in gemeente-diemen politie-mn; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done
check "the test hook is announced in politie-mn's log" \
    grep -q 'test hook armed: the directory.s freshness is judged later' "$T/node-politie-mn.log"
check "gemeente-diemen holds version 1 fresh" \
    node_status_is gemeente-diemen 'd["directory"]["fresh"] and "problem" not in d["directory"]'
check "politie-mn's status: version 1 has expired, says why and what to do" \
    node_status_is politie-mn 'd["directory"]["version"] == 1 and not d["directory"]["fresh"] and "opens no delivery" in d["directory"]["problem"] and "publish" in d["directory"]["problem"]'
run "$NODE" status --home n-politie-mn
stdout_says "EXPIRED" "status prints the directory as expired"
stdout_says "Ask the administrators to publish" "status prints what to do"
check "politie-mn raises directory-expired by itself, before anything arrives" wait_until 10 \
    node_status_is politie-mn '[a["kind"] for a in d["alarms"]] == ["directory-expired"] and d["counters"]["received"] == 0'
run "$NODE" status --home n-politie-mn
expect 3 "politie-mn's status exits 3 while idle (the alarm)"
run "$NODE" status --home n-gemeente-diemen
expect 0 "gemeente-diemen, whose directory is fresh, raises nothing (exit 0)"

run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "gemeente-diemen sends a signal to politie-mn; the broker accepts it"
MSG=$(cat "$T/.out")
printed_msg_id "send"
check "politie-mn holds the delivery: no receipt batch signed in that step" \
    wait_until 20 node_status_is politie-mn \
    'd["directory"]["held_deliveries"] >= 1 and d["counters"]["receipt_batches"] == 0 and d["counters"]["received"] == 0'
check "politie-mn logs why it did not open it" \
    grep -q 'msg="delivery not opened, not receipted: the directory has expired"' "$T/node-politie-mn.log"
check "the message is not in politie-mn's inbox" lacks inbox_has politie-mn "$MSG"
check "politie-mn raised the alarm directory-expired, once" \
    node_status_is politie-mn '[a["kind"] for a in d["alarms"]] == ["directory-expired"]'
run "$NODE" status --home n-politie-mn
expect 3 "politie-mn's status exits 3 (an alarm is held)"
check "the sender has no receipt: politie-mn is still accepted" \
    msg_status_is gemeente-diemen "$MSG" 'd["recipients"][0]["id"] == "politie-mn" and d["recipients"][0]["state"] == "accepted"'

# The twin: a fresh version arrives.
run "$KEYS" publish --dir admin --out directory.signed --admin 1 --refresh
expect 0 "publish version 2 (the same contents, a fresh expiry: 14 days)"
run "$KEYS" sign --dir admin directory.signed --admin 2
expect 0 "sign version 2"
kill -HUP "${PID[broker]}"
check "politie-mn installs version 2 and holds it fresh" wait_until 20 node_status_is politie-mn \
    'd["directory"]["version"] == 2 and d["directory"]["fresh"] and "problem" not in d["directory"]'
check "politie-mn asks for the held deliveries again" wait_until 10 grep -q \
    'msg="fresh directory installed; deliveries held while it had expired are asked for again"' \
    "$T/node-politie-mn.log"
check "the held message comes again and is stored" wait_until 20 inbox_has politie-mn "$MSG"
check "it is stored once" test "$(inbox_count politie-mn "$MSG")" -eq 1
check "the sender gets politie-mn's receipt" wait_until 20 msg_status_is gemeente-diemen "$MSG" \
    'd["recipients"][0]["state"] == "receipted"'
check "politie-mn counts it received once, nothing held" \
    node_status_is politie-mn 'd["counters"]["received"] == 1 and d["directory"]["held_deliveries"] == 0'
finish
