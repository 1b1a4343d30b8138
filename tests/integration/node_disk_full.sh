#!/usr/bin/env bash
# A recipient node whose store fills its filesystem (HOME/store on a 48 MiB
# tmpfs, filled by another program): it cannot store the deliveries, names
# its store's directory in its log and its status (status exits 1 while it
# is full, --json says store.full), and nothing is lost: once space is
# freed, the broker sends the deliveries again on the same connection (its
# resend timer: no receipt for 15 s), without a restart or a reconnect, and
# each arrives exactly once; the sender gets the receipts.
# Reject twin: with space, a delivery is stored at once and status says
# nothing is full (exit 0).
# Mounting needs root (CI runs as root); where mount is not permitted the
# full-filesystem case prints a TAP "# SKIP" line with the reason, and the
# twin still runs.
. "$(dirname "$0")/node_lib.sh"
need_tool dd mount umount

MOUNTED=""
trap 'stop_all; [ -n "$MOUNTED" ] && umount "$T/n-politie-mn/store"; rm -rf "$T"' EXIT

skip_case() {
    TESTS=$((TESTS + 1))
    echo "ok $TESTS # SKIP full filesystem case: $1"
}

setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen; ramen afgeplakt"
"$PY" - <<'PY'
import base64, json, os
sig = json.load(open("sig.json"))
sig["attachments"] = [{"name": "gevel.jpg", "media_type": "image/jpeg",
                       "data_base64": base64.b64encode(os.urandom(300000)).decode()}]
open("big.json", "w").write(json.dumps(sig))
PY

mkdir -p n-politie-mn/store
if mount_err=$(mount -t tmpfs -o size=48m,mode=0700 tmpfs n-politie-mn/store 2>&1); then
    MOUNTED=yes
else
    skip_case "cannot mount a tmpfs here ($(id -un)): ${mount_err:-mount failed}"
fi

start_broker
start_node gemeente-diemen
start_node politie-mn
for id in gemeente-diemen politie-mn; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done

# Twin: with space.
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal big.json
expect 0 "with space: send a signal with a 300 KB attachment"
FIRST=$(cat "$T/.out")
check "with space, politie-mn stores it" wait_until 20 inbox_has politie-mn "$FIRST"
run "$NODE" status --home n-politie-mn
expect 0 "with space, status exits 0"
says "store         n-politie-mn/store, " "status shows the store and its free space"
node_status_is politie-mn 'd["store"]["full"] is False and d["store"]["free_bytes"] > 0'
check "status --json: store.full is false, free_bytes shown" test $? -eq 0

if [ -z "$MOUNTED" ]; then
    finish
fi

# Another program fills politie-mn's filesystem but for 150 KiB: the next
# delivery's commit is a short write, which LMDB reports as EIO (what was
# seen on a real full filesystem), the ones after it get ENOSPC.
avail=$(df --output=avail n-politie-mn/store | tail -n 1 | tr -d ' ')
dd if=/dev/zero of=n-politie-mn/store/filler bs=1K count=$((avail - 150)) >/dev/null 2>&1
check "the filesystem is full but for 150 KiB (dd filled it)" \
    test "$(df --output=avail n-politie-mn/store | tail -n 1 | tr -d ' ')" -le 150
MSGS=""
for i in 1 2 3; do
    run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal big.json
    expect 0 "send large signal $i to the node whose disk is full"
    MSGS="$MSGS $(cat "$T/.out")"
done
check "politie-mn finds its store full" wait_until 30 node_status_is politie-mn 'd["store"]["full"]'
run "$NODE" status --home n-politie-mn
expect 1 "while its store is full, status exits 1"
says "the node's store at n-politie-mn/store is full: free space on its filesystem" \
    "status names the store's directory and what to do"
says "FULL since" "status says since when"
node_status_is politie-mn 'd["store"]["full"] and "full_since" in d["store"] and d["connected"]'
check "status --json: store.full, full_since; still connected" test $? -eq 0
run grep -F "the node's store is full: free space on its filesystem" "$T/node-politie-mn.log"
says "dir=n-politie-mn/store" "the node's log names the store's directory"
says 'error="Input/output error"' "the first failure was LMDB's EIO for the short write"
run grep -F "store commit failed; frames for the broker dropped" "$T/node-politie-mn.log"
expect 0 "the deliveries it could not store were not receipted"
for m in $MSGS; do
    msg_status_is gemeente-diemen "$m" 'd["state"] == "accepted" and d["recipients"][0]["state"] != "receipted"'
    check "the sender's $m is accepted, not receipted" test $? -eq 0
done

rm -f n-politie-mn/store/filler
for m in $MSGS; do
    check "after space is freed, $m arrives without a restart" wait_until 90 inbox_has politie-mn "$m"
    check "and exactly once" test "$(inbox_count politie-mn "$m")" = 1
    check "the sender gets its receipt" \
        wait_until 30 msg_status_is gemeente-diemen "$m" 'd["recipients"][0]["state"] == "receipted"'
done
check "status says the store is no longer full" \
    wait_until 10 node_status_is politie-mn 'd["store"]["full"] is False'
run "$NODE" status --home n-politie-mn
expect 0 "status exits 0 again"
run grep -c 'msg="connected to broker"' "$T/node-politie-mn.log"
check "no reconnect: politie-mn connected once" test "$(cat "$T/.out")" = 1
run grep -F "unreceipted messages are sent again on the same connection" "$T/broker.log"
says "node=politie-mn" "the broker resent them on the same connection"
check "the node daemon is the one started at first (no restart)" kill -0 "${PID[politie-mn]}"
finish
