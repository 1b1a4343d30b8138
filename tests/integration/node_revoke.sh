#!/usr/bin/env bash
# Revocation and key rotation seen end to end, with the real broker and
# nodes: a directory version that revokes a connected node makes the broker
# end that connection with an Error naming the reason and the version,
# count it and audit it (auth-failed); the node raises the alarm, stops
# reconnecting, `status` exits non-zero saying what to do and `send` fails at
# once. A version that does not touch a node (another node added) keeps it
# connected. A rotation in the same home (keygen --rotate) keeps the node's
# store; messages in flight during the switch are neither lost nor doubled.
# A node running since before keygen --rotate opens its new keys when it
# needs them: at the broker's refusal (with the passphrase it was started
# with), or, if it could not then, at a SIGHUP even when the directory file
# is the version it has. A node started with a directory that already lists
# its new keys switches without saying that they wait for a certificate.
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
for id in gemeente-diemen politie-mn belastingdienst woonstad; do
    start_node "$id"
done
for id in gemeente-diemen politie-mn belastingdienst woonstad; do
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

ZPASS="zorg diemen passphrase 2026"
run env KETEN_PASSPHRASE="$ZPASS" "$NODE" keygen --home n-zorg-diemen --id zorg-diemen \
    --role housing --org "Zorg Diemen"
expect 0 "a new partner makes its keys (passphrase-protected)"
run "$KEYS" approve --dir admin n-zorg-diemen/identity.request
expect 0 "the administrators approve it"
publish_dir admin dir.v2 || done_testing
check "the broker installs version 2 (another node added)" install dir.v2 2
check "politie-mn gets version 2 pushed" wait_until 10 node_status_is politie-mn \
    'd["directory"]["version"] == 2'
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
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
run timeout 5 "$NODE" send --home n-politie-mn --to gemeente-diemen --signal check.json --wait
expect 3 "send from the revoked node fails at once (not a timeout)"
says "revoked in version 3: ask your administrator" "send says why"
check "nothing was queued" node_status_is politie-mn 'd["outbox"] == 0'
check "the broker counts one authentication failure" \
    test "$(metric keten_auth_failed_total)" = 1
run "$NODE" status --home n-gemeente-diemen
expect 0 "gemeente-diemen, not revoked, is unaffected (status exit 0)"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 1 "a signal to the revoked node is refused by its sender"
says "politie-mn" "it names the recipient that is no longer current"

# Restarted with the revoked keys: the refusal still holds (the broker's ZAP
# handler refuses the key at the handshake).
stop_one politie-mn
# (KETEN_NODE_TEST_GIVEN_UP_MS: libzmq's given-up link is made again after
# 1.5 s instead of 40 s, so that a retry would show within the wait below.)
KETEN_NODE_TEST_GIVEN_UP_MS=1500 start_node politie-mn
check "the revoked node, restarted, says so again" wait_until 10 grep -q \
    'msg="the broker cut this node off before its restart" alarm=revoked version=3' \
    "$T/node-politie-mn.log"
run "$NODE" status --home n-politie-mn
expect 3 "after the restart its status still exits 3"
says "revoked in version 3: ask your administrator" "and still says why"
# auth_failed_at_least N: the broker counted N handshake refusals or more
# (read again at each try of wait_until).
auth_failed_at_least() {
    test "$(metric keten_auth_failed_total)" -ge "$1"
}
check "its connection attempts are refused at the handshake (counted)" wait_until 15 \
    auth_failed_at_least 2
# Its own directory says the keys are revoked: after that refusal it stops
# (it used to try again for as long as it ran, each attempt an auth-failed
# record in the broker's log).
check "refused again, its directory confirming the revocation, it stops trying" wait_until 15 \
    grep -q 'msg="the broker refused this node.s keys again and its directory says they are revoked: not reconnecting" .*version=3' \
    "$T/node-politie-mn.log"
tries=$(metric keten_auth_failed_total)
sleep 5
check "no attempt in the 5 s after (the broker counted $tries refusals)" \
    test "$(metric keten_auth_failed_total)" = "$tries"
run "$NODE" status --home n-politie-mn
expect 3 "its status still exits 3"
says "revoked in version 3: ask your administrator" "and says why"
stop_one politie-mn

# ---- rotation, told by the broker: keygen --rotate, approve, publish, SIGHUP -----

run "$NODE" send --home n-gemeente-diemen --to belastingdienst --kind query --signal check.json --wait
expect 0 "gemeente-diemen asks belastingdienst (a query)"
Q1=$(cat "$T/.out")
check "belastingdienst gets the query" wait_until 20 inbox_has belastingdienst "$Q1"
run "$NODE" reply --home n-belastingdienst "$Q1" --signal check.json --wait
expect 0 "belastingdienst replies"
R1=$(cat "$T/.out")
check "gemeente-diemen gets the reply (sealed to its first keys)" wait_until 20 \
    inbox_has gemeente-diemen "$R1"

run "$NODE" keygen --rotate --home n-gemeente-diemen
expect 0 "keygen --rotate makes new keys in the same home"
says "identity.next.request" "it names the request to hand to the administrators"
check "the new secret keys are mode 0600" test "$(stat -c %a n-gemeente-diemen/identity.next.secret)" = 600
check "the current keys stay in place" test -f n-gemeente-diemen/identity.secret
run "$NODE" keygen --rotate --home n-gemeente-diemen
expect 1 "a second keygen --rotate is refused (a rotation is under way)"
says "already exists: a rotation is under way" "it says why"
run "$NODE" keygen --rotate --home n-gemeente-diemen --id other
expect 2 "keygen --rotate with --id is a usage error (the id stays)"
run "$NODE" keygen --rotate --home n-nowhere
expect 1 "keygen --rotate in a home without keys is refused"
says "make the first ones with keten-node keygen" "it says what to do"

# The daemon, started before keygen --rotate, opens the new keys when it
# needs them. Here it cannot: the file is readable by others (as a copy made
# by mistake would be; a keygen run as root instead of the user keten leaves
# one the daemon cannot read at all), so it stays on its old keys, refused.
chmod 644 n-gemeente-diemen/identity.next.secret

run "$KEYS" approve --dir admin n-gemeente-diemen/identity.next.request --rotate
expect 0 "the administrators approve the rotation"
publish_dir admin dir.v4 || done_testing
check "the broker installs version 4 (gemeente-diemen's keys replaced)" install dir.v4 4
check "gemeente-diemen, still on its old keys, raises the alarm (keys-replaced, version 4)" \
    wait_until 10 grep -q 'msg=ALARM alarm=keys-replaced version=4' "$T/node-gemeente-diemen.log"
check "it says why it cannot switch: its new keys are readable by others" grep -qE \
    'msg="the new keys cannot be opened; not switching" .*identity.next.secret is readable by others' \
    "$T/node-gemeente-diemen.log"
check "the broker logs the cut-off as a rotation" grep -q \
    'msg="node no longer current: connection cut off" node=gemeente-diemen version=4 reason=keys-replaced' \
    "$T/broker.log"
run "$NODE" status --home n-gemeente-diemen
expect 1 "its status exits 1"
says "keys replaced in version 4: start with the new keys" "status says what to do"
run timeout 5 "$NODE" send --home n-gemeente-diemen --to belastingdienst --signal sig.json --wait
expect 1 "send fails at once (not a timeout)"
says "keys replaced in version 4: start with the new keys" "send says why"

# The file mended, a directory reload switches: the directory file is the
# version the node already has (the broker pushed it), and the node still
# switches to the keys that version lists and reconnects with them.
chmod 600 n-gemeente-diemen/identity.next.secret
kill -HUP "${PID[gemeente-diemen]}"
check "on SIGHUP it switches to the new keys" wait_until 15 grep -q \
    'msg="switched to the rotated keys" node=gemeente-diemen' "$T/node-gemeente-diemen.log"
check "though the directory file is the version it already has" grep -q \
    'msg="directory file is the installed version; nothing changed" file=directory.signed installed=4' \
    "$T/node-gemeente-diemen.log"
check "and connects with them" wait_until 20 connected gemeente-diemen
run "$NODE" status --home n-gemeente-diemen
expect 0 "its status is clean again (exit 0)"
says_not "REFUSED" "no refusal is shown"
check "status --json: a current node, no refusal" node_status_is gemeente-diemen \
    '"refused" not in d and d["member"] and d["directory"]["version"] == 4'
check "the old keys are kept as superseded, the next ones became current" \
    test -f n-gemeente-diemen/identity.superseded.secret -a ! -e n-gemeente-diemen/identity.next.secret
run "$NODE" show --home n-gemeente-diemen "$R1"
expect 0 "the reply received before the rotation is still readable"
says "Adrescheck" "with its content"
run "$NODE" send --home n-gemeente-diemen --to belastingdienst --signal sig.json --wait
expect 0 "a signal signed with the new keys is accepted"
S3=$(cat "$T/.out")
check "and delivered" wait_until 20 inbox_has belastingdienst "$S3"

# ---- rotation with messages in flight across the switch -------------------------
# woonstad holds its next keys when the switch comes (restarted after keygen
# --rotate); while the broker is down, woonstad answers a query (signed with
# its old key) and gemeente-diemen sends it a signal (sealed to its old
# encryption key); the rotation is approved after both were made. Then the
# broker comes back with the new version and woonstad switches on a
# directory reload.

run "$NODE" send --home n-gemeente-diemen --to woonstad --kind query --signal check.json --wait
expect 0 "gemeente-diemen asks woonstad (a query)"
Q2=$(cat "$T/.out")
check "woonstad gets it" wait_until 20 inbox_has woonstad "$Q2"
run "$NODE" keygen --rotate --home n-woonstad --json
expect 0 "woonstad makes its next keys (--json)"
check "keygen --rotate --json names the files and the request hash" json_is "$T/.out" \
    'd["rotate"] and d["id"] == "woonstad" and d["secret"].endswith("identity.next.secret") and d["request"].endswith("identity.next.request") and len(d["request_sha256"]) == 64'
stop_one woonstad
start_node woonstad
check "woonstad, restarted, says its new keys wait for their certificate" wait_until 10 grep -q \
    'msg="new keys wait for their certificate"' "$T/node-woonstad.log"
check "woonstad reconnects (still with its current keys)" wait_until 20 connected woonstad

stop_one broker
check "woonstad sees the broker go" wait_until 20 lacks connected woonstad
run "$NODE" reply --home n-woonstad "$Q2" --signal check.json
expect 0 "woonstad answers while the broker is down (queued, signed with its old key)"
R4=$(cat "$T/.out")
run "$NODE" send --home n-gemeente-diemen --to woonstad --signal sig.json
expect 0 "gemeente-diemen signals woonstad while the broker is down (sealed to its old key)"
S4=$(cat "$T/.out")
check "the reply waits in woonstad's outbox" node_status_is woonstad 'd["outbox"] == 1'
check "the signal waits in gemeente-diemen's outbox" node_status_is gemeente-diemen 'd["outbox"] == 1'
run "$KEYS" approve --dir admin n-woonstad/identity.next.request --rotate
expect 0 "then the administrators approve woonstad's rotation"
publish_dir admin dir.v5 || done_testing
cp dir.v5 directory.signed
"$BROKER" run --home broker --anchor admin/network.pub --directory directory.signed \
    --listen "$BROKER_EP" --checkpoint-ms 200 >>"$T/broker.log" 2>&1 &
PID[broker]=$!
check "the broker starts with version 5" wait_until 15 grep -q \
    'msg="directory installed" version=5' "$T/broker.log"
kill -HUP "${PID[woonstad]}"
check "woonstad switches on the directory reload" wait_until 15 grep -q \
    'msg="switched to the rotated keys" node=woonstad' "$T/node-woonstad.log"
check "the reply signed before the rotation arrives after it" wait_until 30 \
    inbox_has gemeente-diemen "$R4"
check "the signal sealed to woonstad's old key is delivered and opened" wait_until 30 \
    inbox_has woonstad "$S4"
run "$NODE" show --home n-woonstad "$S4"
expect 0 "woonstad reads it (with its superseded keys)"
says "ramen afgeplakt" "its content"
check "gemeente-diemen gets woonstad's receipt (signed with the new keys)" wait_until 20 \
    msg_status_is gemeente-diemen "$S4" 'd["recipients"][0]["state"] == "receipted"'
# Markers: one more message each way after them; the broker delivers in order.
run "$NODE" send --home n-gemeente-diemen --to woonstad --kind query --signal check.json --wait
expect 0 "a later query to woonstad"
Q3=$(cat "$T/.out")
check "woonstad gets the later query" wait_until 20 inbox_has woonstad "$Q3"
run "$NODE" reply --home n-woonstad "$Q3" --signal check.json --wait
expect 0 "woonstad answers it with its new keys"
R5=$(cat "$T/.out")
check "gemeente-diemen gets the later reply" wait_until 20 inbox_has gemeente-diemen "$R5"
check "the reply in flight was received once, not twice" test "$(inbox_count gemeente-diemen "$R4")" = 1
check "the signal in flight was received once, not twice" test "$(inbox_count woonstad "$S4")" = 1
check "woonstad's outbox is empty and its status clean" node_status_is woonstad \
    'd["outbox"] == 0 and "refused" not in d and d["member"] and not d["alarms"]'

# ---- rotation switched by the broker's KEYS_REPLACED ----------------------------
# belastingdienst holds its next keys (restarted after keygen --rotate) when
# the broker installs the version that lists them: it switches at the
# broker's error and reconnects at once, with no alarm.

run "$NODE" keygen --rotate --home n-belastingdienst
expect 0 "belastingdienst makes its next keys"
stop_one belastingdienst
start_node belastingdienst
check "belastingdienst, restarted, holds them" wait_until 10 grep -q \
    'msg="new keys wait for their certificate"' "$T/node-belastingdienst.log"
check "belastingdienst reconnects" wait_until 20 connected belastingdienst
run "$KEYS" approve --dir admin n-belastingdienst/identity.next.request --rotate
expect 0 "the administrators approve belastingdienst's rotation"
publish_dir admin dir.v6 || done_testing
check "the broker installs version 6" install dir.v6 6
check "belastingdienst switches when the broker says its keys were replaced" wait_until 15 \
    grep -q 'msg="switched to the rotated keys" node=belastingdienst' "$T/node-belastingdienst.log"
check "and reconnects with the new keys" wait_until 20 node_status_is belastingdienst \
    'd["connected"] and d["member"] and "refused" not in d and d["directory"]["version"] == 6'
check "the broker cut off the old connection as a rotation" grep -q \
    'msg="node no longer current: connection cut off" node=belastingdienst version=6 reason=keys-replaced' \
    "$T/broker.log"
check "no refusal alarm was raised (it had the new keys)" lacks grep -q \
    'msg=ALARM alarm=keys-replaced' "$T/node-belastingdienst.log"
run "$NODE" send --home n-gemeente-diemen --to belastingdienst --signal sig.json --wait
expect 0 "a signal to belastingdienst after its switch"
S6=$(cat "$T/.out")
check "is delivered and opened with its new keys" wait_until 20 inbox_has belastingdienst "$S6"

# ---- passphrase-protected keys made while the node runs ---------------------------
# zorg-diemen runs (its passphrase given once, in KETEN_PASSPHRASE) when its
# next keys are made: at the broker's refusal it opens them with the
# passphrase it was started with and switches at once, with no alarm.
# Stopped during a second rotation and started with a directory that already
# lists the new keys, it switches at start without saying that they wait for
# their certificate; one KETEN_PASSPHRASE opens all three key sets.

KETEN_PASSPHRASE="$ZPASS" start_node zorg-diemen
check "zorg-diemen connects (its keys opened with KETEN_PASSPHRASE)" wait_until 20 \
    connected zorg-diemen
run env KETEN_PASSPHRASE="not the passphrase" "$NODE" keygen --rotate --home n-zorg-diemen
expect 1 "keygen --rotate with a wrong passphrase is refused"
says "the passphrase does not open" "it says so"
check "and leaves no next keys" test ! -e n-zorg-diemen/identity.next.secret
run env KETEN_PASSPHRASE="$ZPASS" "$NODE" keygen --rotate --home n-zorg-diemen
expect 0 "with the right one, zorg-diemen makes its next keys (same passphrase)"
run "$KEYS" approve --dir admin n-zorg-diemen/identity.next.request --rotate
expect 0 "the administrators approve zorg-diemen's rotation"
publish_dir admin dir.v7 || done_testing
check "the broker installs version 7" install dir.v7 7
check "zorg-diemen, running since before keygen --rotate, switches at the broker's refusal" \
    wait_until 15 grep -q 'msg="switched to the rotated keys" node=zorg-diemen' \
    "$T/node-zorg-diemen.log"
check "and reconnects with the new keys" wait_until 20 node_status_is zorg-diemen \
    'd["connected"] and d["member"] and "refused" not in d and d["directory"]["version"] == 7'
check "no refusal alarm was raised (it opened its new keys)" lacks grep -q \
    'msg=ALARM alarm=keys-replaced' "$T/node-zorg-diemen.log"

stop_one zorg-diemen
run env KETEN_PASSPHRASE="$ZPASS" "$NODE" keygen --rotate --home n-zorg-diemen
expect 0 "zorg-diemen, stopped, makes its next keys again"
run "$KEYS" approve --dir admin n-zorg-diemen/identity.next.request --rotate
expect 0 "the administrators approve the second rotation"
publish_dir admin dir.v8 || done_testing
check "the broker installs version 8" install dir.v8 8
KETEN_PASSPHRASE="$ZPASS" start_node zorg-diemen
switched_twice() {
    test "$(grep -c 'msg="switched to the rotated keys" node=zorg-diemen' \
        "$T/node-zorg-diemen.log")" -eq 2
}
check "started with version 8, which lists its new keys, it switches at start" \
    wait_until 15 switched_twice
check "without saying first that they wait for their certificate" lacks grep -q \
    'msg="new keys wait for their certificate"' "$T/node-zorg-diemen.log"
check "one KETEN_PASSPHRASE opened its keys, the superseded and the new ones: connected" \
    wait_until 20 node_status_is zorg-diemen \
    'd["connected"] and d["member"] and "refused" not in d and d["directory"]["version"] == 8'

# ---- twin of the revoked node's stop: refused keys that no directory revokes ------
# A new partner started before the broker has the version that lists it:
# the broker refuses its key at the handshake, but no directory says it is
# revoked, so it keeps trying, and connects once the broker installs it.

run "$NODE" keygen --home n-nieuw-west --id nieuw-west --role municipality \
    --org "Nieuw-West" --no-passphrase
expect 0 "a new partner, nieuw-west, makes its keys"
run "$KEYS" approve --dir admin n-nieuw-west/identity.request
expect 0 "the administrators approve it"
publish_dir admin dir.v9 || done_testing
# (The broker runs without metrics since its restart: the node's log counts.)
# refused_times N: nieuw-west logged more than N refusals of its key.
refused_times() {
    test "$(grep -c "refused this node's key" "$T/node-nieuw-west.log")" -gt "$1"
}
KETEN_NODE_TEST_GIVEN_UP_MS=1500 start_node nieuw-west
check "nieuw-west, unknown to the broker's version 8, is refused at the handshake" \
    wait_until 15 refused_times 0
check "and tries again, and again (no directory says its keys are revoked)" \
    wait_until 15 refused_times 2
check "the broker installs version 9 (nieuw-west added)" install dir.v9 9
check "nieuw-west then connects" wait_until 20 connected nieuw-west
check "it never said it stops trying" lacks grep -q 'not reconnecting' "$T/node-nieuw-west.log"

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
check "the rotation's cut-off is audited: auth-failed, gemeente-diemen, keys-replaced, version 4" "$PY" -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
hits = [r for r in recs if r.get("event") == "auth-failed" and r.get("node") == "gemeente-diemen"
        and r.get("reason") == "keys-replaced" and r.get("directory_version") == 4]
sys.exit(0 if len(hits) == 1 else 1)' "$T/.out"
run "$AUDIT" replay --db broker --node politie-mn
expect 0 "keten-audit replay --node politie-mn (text)"
stdout_says "auth-failed          politie-mn  reason revoked (directory version 3)  [broker's claim]" \
    "the text gives the cut-off's reason and version, as the JSON does"
run "$AUDIT" replay --db broker --node gemeente-diemen
stdout_says "auth-failed          gemeente-diemen  reason keys-replaced (directory version 4)" \
    "and the rotation's"
run "$AUDIT" verify --db broker --anchor admin/network.pub
expect 0 "keten-audit verify finds the log clean"
finish
