#!/usr/bin/env bash
# A broker restored from an older backup, with the real broker and nodes:
# its log is shorter than the checkpoint a node accepted after the backup
# (politie-mn, whose reply was acknowledged after it), so the broker refuses
# that node's Hello (UNKNOWN_CHECKPOINT). The node raises the alarm
# log-shorter at once and keeps the broker's answer as evidence; it stops
# reconnecting; `status` exits 3 naming the refusal, `send` fails at once,
# the metrics say refused; a restart does not make it go away. The auditor
# finds the same with the node's checkpoint (keten-audit verify
# --checkpoint). Reject twin: gemeente-diemen stopped before the backup, so
# it holds a checkpoint the restored log has: it connects and sends as
# before, with no alarm.
#
# Arguments: node_lib.sh's six, then keten-audit.
if [ -z "${7:-}" ] || [ ! -x "$7" ]; then
    echo "Bail out! keten-audit must be the seventh argument (got '${7:-}')"
    exit 1
fi
AUDIT=$(realpath "$7")
. "$(dirname "$0")/node_lib.sh"
need_tool curl # the nodes' metrics

setup_network || done_testing
signal query.json adrescheck "Wie staat er ingeschreven op Hoofdstraat 1?"
signal answer.json adrescheck "Bekend adres: twee personen ingeschreven"
signal sig.json woonfraude "Adres staat op naam van 9 personen; ramen afgeplakt"

# receipted ID MSG: every recipient of MSG sent by node ID receipted it.
receipted() {
    msg_status_is "$1" "$2" 'd["recipients"] and all(r["state"] == "receipted" for r in d["recipients"])'
}

start_broker
start_node gemeente-diemen
start_node politie-mn --metrics 127.0.0.1:0
for id in gemeente-diemen politie-mn; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done

# 20 queries before the backup, answered after it: the records the restore
# loses are more than the few the restored broker writes before politie-mn
# says Hello again (else its Hello would be taken, and the log it is then
# shown would not extend its checkpoint: the alarm inconsistent-checkpoint).
QS=()
for i in $(seq 1 20); do
    "$NODE" send --home n-gemeente-diemen --to politie-mn --kind query --signal query.json \
        --wait >"$T/q.out" 2>>"$T/q.err" && QS+=("$(cat "$T/q.out")")
done
check "20 queries from gemeente-diemen to politie-mn, before the backup" test "${#QS[@]}" -eq 20
all_receipted() {
    local q
    for q in "${QS[@]}"; do
        receipted gemeente-diemen "$q" || return 1
    done
}
check "they are receipted" wait_until 30 all_receipted

# The twin stops before the backup: the checkpoint it holds is in the copy.
stop_one gemeente-diemen
check "gemeente-diemen stops cleanly" test "$STOP_RC" -eq 0

run "$BROKER" backup --home broker --out backup --json
expect 0 "the broker's store is backed up while it runs"
B_RECORDS=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["records"])' "$T/.out")
check "the backup holds $B_RECORDS records" test "${B_RECORDS:-0}" -gt 0

answered=0
for q in "${QS[@]}"; do
    "$NODE" reply --home n-politie-mn "$q" --signal answer.json --wait >/dev/null 2>>"$T/q.err" \
        && answered=$((answered + 1))
done
check "politie-mn answers the 20 queries after the backup (each acknowledged)" \
    test "$answered" -eq 20
check "politie-mn now holds a checkpoint larger than the backup's log" wait_until 10 \
    node_status_is politie-mn "d['checkpoint']['tree_size'] > $B_RECORDS"
run "$NODE" checkpoint --home n-politie-mn --all --out politie.checkpoints
expect 0 "politie-mn's checkpoints are kept for the auditor"

# ---- the broker is restored from the older backup --------------------------------

stop_one broker
check "the broker stops" test "$STOP_RC" -eq 0
mv broker/store broker/store.lost
mkdir -m 0700 broker/store
cp backup/data.mdb broker/store/data.mdb
start_broker
check "the broker refuses politie-mn's Hello (a checkpoint its log does not have)" \
    wait_until 30 grep -q 'msg="hello refused: a checkpoint this log does not have" node=politie-mn' \
    "$T/broker.log"
check "politie-mn raises the alarm log-shorter" wait_until 20 \
    grep -q 'msg=ALARM alarm=log-shorter' "$T/node-politie-mn.log"
check "it keeps the broker's answer as evidence" grep -q \
    'msg="evidence kept" alarm=log-shorter' "$T/node-politie-mn.log"
check "it stops reconnecting" grep -q \
    'msg="the broker refuses this node: not reconnecting"' "$T/node-politie-mn.log"
check "its status names the alarm and the refusal" wait_until 10 node_status_is politie-mn '(
[a["kind"] for a in d["alarms"]] == ["log-shorter"]
and "shorter than the checkpoint" in d["alarms"][0]["detail"]
and d["evidence"] == 1
and d["refused"]["kind"] == "log-shorter" and d["refused"]["exit"] == 3
and d["refused"]["confirmed"] and not d["connected"])' ||
    sed 's/^/# /' "$T/.st-politie-mn"

run "$NODE" status --home n-politie-mn
expect 3 "politie-mn's status exits 3 (an alarm)"
stdout_says "REFUSED       its log is shorter than the checkpoint this node accepted" \
    "status says what happened"
stdout_says "keep this node's store and tell your administrators" "and what to do"
check "its metrics say refused by the broker" wait_until 10 \
    metric_is politie-mn keten_node_refused_by_broker 'v == 1'
check "and hold the alarm" wait_until 10 metric_is politie-mn keten_node_alarms 'v == 1'

run "$NODE" send --home n-politie-mn --to gemeente-diemen --kind query --signal query.json --wait
expect 3 "send fails at once (exit 3), not after a time-out"
says "the broker refuses this node: its log is shorter" "it says why"

# Acknowledging the alarm (keten-node alarm ack) does not hide the refusal,
# a state that still holds: status goes on saying it and exiting 3. (The
# node does not reconnect until restarted: no new alarm comes meanwhile.)
run "$NODE" alarm --home n-politie-mn ack 1 --note "broker restored from an older backup; reported"
expect 0 "politie-mn's operator acknowledges the log-shorter alarm"
check "the alarm is acknowledged" node_status_is politie-mn \
    '[(a["kind"], a["acknowledged"]) for a in d["alarms"]] == [("log-shorter", True)]' ||
    sed "s/^/# /" "$T/.st-politie-mn"
run "$NODE" status --home n-politie-mn
expect 3 "status still exits 3: the broker still refuses it"
stdout_says "REFUSED       its log is shorter than the checkpoint this node accepted" \
    "status still says what happened"
check "keten_node_alarms counts it no more" wait_until 10 \
    metric_is politie-mn keten_node_alarms 'v == 0'
check "keten_node_refused_by_broker is still 1" metric_is politie-mn keten_node_refused_by_broker 'v == 1'
run "$NODE" send --home n-politie-mn --to gemeente-diemen --kind query --signal query.json --wait
expect 3 "send still fails at once (exit 3)"

# A restart does not make the alarm go away; the broker refuses it again.
stop_one politie-mn
check "politie-mn stops cleanly" test "$STOP_RC" -eq 0
start_node politie-mn
hellos_refused() {
    test "$(grep -c 'msg="hello refused: a checkpoint this log does not have" node=politie-mn' \
        "$T/broker.log")" -ge 2
}
check "restarted, politie-mn is refused again" wait_until 30 hellos_refused
check "and still holds its alarm and the refusal" wait_until 20 node_status_is politie-mn \
    '"log-shorter" in [a["kind"] for a in d["alarms"]] and d["refused"]["kind"] == "log-shorter"'

# ---- the twin: a node whose checkpoint the restored log has -------------------------

start_node gemeente-diemen
check "gemeente-diemen, stopped before the backup, connects to the restored broker" \
    wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to belastingdienst --signal sig.json --wait
expect 0 "it sends as before (acknowledged with a proof from the restored log)"
run "$NODE" status --home n-gemeente-diemen --json
expect 0 "its status is clean (exit 0)"
check "no alarm, no refusal, no evidence" json_is "$T/.out" \
    'd["alarms"] == [] and "refused" not in d and d["evidence"] == 0 and d["connected"]'
check "the broker refused no Hello of gemeente-diemen" lacks grep -q \
    'msg="hello refused: a checkpoint this log does not have" node=gemeente-diemen' \
    "$T/broker.log"

# ---- the auditor sees it too -------------------------------------------------------

run "$AUDIT" verify --db broker --anchor admin/network.pub --checkpoint politie.checkpoints
expect 3 "keten-audit verify with politie-mn's checkpoints fails (exit 3)"

finish
