#!/usr/bin/env bash
# The retention of a node's witness checkpoints, with the real broker and
# nodes: the broker stores a witness checkpoint at every commit
# (--checkpoint-records 1) while gemeente-diemen sends 30 signals to
# politie-mn, and both nodes store each one. politie-mn is stopped and its
# stored checkpoints are dated as if it had run for months (keten-test-tool
# age-checkpoints): ten of one day 100 days ago, ten of one hour 30 days
# ago, the rest recent. Started again, it thins them out at once: of the
# old day and of the old hour the first stays (no quorum of the four
# partners is online, so none is witnessed), every recent one stays; status,
# the metrics and checkpoint --all say so, and keten-audit verify accepts
# the thinned file against the broker's log. Killed with kill -9 right after
# it starts on a store dated older still, it ends with the same set at its
# next start. Twin: gemeente-diemen, whose checkpoints are all recent, keeps
# every one.
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
signal sig.json woonfraude "Adres staat op naam van 9 personen; ramen afgeplakt"

start_broker --checkpoint-records 1
start_node gemeente-diemen
start_node politie-mn --metrics 127.0.0.1:0
for id in gemeente-diemen politie-mn; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done

sent=0
for _ in $(seq 1 30); do
    "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait \
        >/dev/null 2>>"$T/send.err" && sent=$((sent + 1))
done
check "gemeente-diemen sends 30 signals to politie-mn, each acknowledged" test "$sent" -eq 30
check "politie-mn receives them" wait_until 30 node_status_is politie-mn \
    'd["counters"]["received"] == 30'
check "politie-mn keeps more than 25 witness checkpoints" wait_until 20 node_status_is politie-mn \
    'd["checkpoint"]["kept"] > 25'

stop_one politie-mn
check "politie-mn stops cleanly" test "$STOP_RC" -eq 0
run "$TOOL" checkpoints n-politie-mn
expect 0 "list politie-mn's stored checkpoints"
cp "$T/.out" before.txt
N=$(wc -l <before.txt)
check "it stored $N witness checkpoints, none witnessed (two of four partners online)" \
    test "$N" -gt 25 -a "$(awk '$3 != 0' before.txt | wc -l)" -eq 0

# Ten of one day 100 days ago (1 s apart), ten of one hour 30 days ago (1 min
# apart, from 1 min past the hour), the rest as they were (recent).
read -r DAY_AT HOUR_AT < <("$PY" -c '
import time
now = int(time.time() * 1000)
day, hour = 86400000, 3600000
print((now - 100 * day) // day * day + hour, (now - 30 * day) // hour * hour + 60000)')
run "$TOOL" age-checkpoints n-politie-mn 0 10 "$DAY_AT" 1000
expect 0 "date politie-mn's ten oldest checkpoints in one day, 100 days ago"
run "$TOOL" age-checkpoints n-politie-mn 10 10 "$HOUR_AT" 60000
expect 0 "date the next ten in one hour, 30 days ago"
# The sizes the rule keeps: the first of the day, the first of the hour, and
# every recent one. (Each start of politie-mn adds records to the broker's
# log, and so new witness checkpoints, all recent: kept too.)
awk 'NR == 1 || NR == 11 || NR > 20 { print $1 }' before.txt >want.txt
WANT=$(wc -l <want.txt)
REMOVED=$((N - WANT))
MAX=$(tail -n 1 before.txt | awk '{ print $1 }')

# kept_as_rule ID: of the sizes up to MAX, the node's store holds exactly
# those of want.txt, and every larger one it accepted since; its status
# counts them all (kept), and KEPT is their number.
kept_as_rule() {
    "$TOOL" checkpoints "n-$1" >"$T/kept-$1.txt" 2>/dev/null || return 1
    awk -v max="$MAX" '$1 <= max { print $1 }' "$T/kept-$1.txt" | cmp -s want.txt - || return 1
    KEPT=$(wc -l <"$T/kept-$1.txt")
    node_status_is "$1" "d['checkpoint']['kept'] == $KEPT"
}

start_node politie-mn --metrics 127.0.0.1:0
check "politie-mn connects again" wait_until 20 connected politie-mn
check "politie-mn thins out its old checkpoints: the first of the old day, the first of the old hour and the recent ones stay" \
    wait_until 20 kept_as_rule politie-mn
kept_as_rule politie-mn
check "it logged what it removed" grep -q \
    "msg=\"old witness checkpoints thinned out\" removed=$REMOVED" "$T/node-politie-mn.log"
check "status --json counts them" node_status_is politie-mn \
    "d['counters']['checkpoints_removed'] == $REMOVED and d['checkpoint']['kept_as_evidence'] == 0"
run "$NODE" status --home n-politie-mn
expect 0 "politie-mn's status exits 0"
stdout_says "kept          $KEPT witness checkpoint(s), 0 of them as evidence of an alarm" \
    "status says how many checkpoints the node keeps"
check "its metrics say how many it keeps" wait_until 10 has_metrics_port politie-mn
check "keten_node_checkpoints_kept is $KEPT" wait_until 10 \
    metric_is politie-mn keten_node_checkpoints_kept "v == $KEPT"
check "keten_node_checkpoints_removed_total is $REMOVED" \
    metric_is politie-mn keten_node_checkpoints_removed_total "v == $REMOVED"

run "$NODE" checkpoint --home n-politie-mn --all --out kept.notes
expect 0 "politie-mn writes the checkpoints it kept to a file"
says "wrote $KEPT checkpoints" "the file holds each one it keeps"
check "one signed note each, the broker's signature on every one" \
    test "$(grep -c '^— broker ' kept.notes)" -eq "$KEPT"
run "$AUDIT" verify --db broker --anchor admin/network.pub --checkpoint kept.notes --json
expect 0 "the checkpoints politie-mn kept verify against the broker's log (keten-audit verify --checkpoint)"
check "each counts as evidence from outside the broker" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["external"]["given"] == int(sys.argv[2]) and not d["external"]["self_consistent_only"] else 1)' \
    "$T/.out" "$KEPT"

# kill -9 right after it starts on a store dated older still: every
# checkpoint but the newest three in one day 200 days ago.
stop_one politie-mn
check "politie-mn stops cleanly again" test "$STOP_RC" -eq 0
AT200=$("$PY" -c '
import time
day = 86400000
print((int(time.time() * 1000) - 200 * day) // day * day + 3600000)')
run "$TOOL" checkpoints n-politie-mn
expect 0 "list politie-mn's stored checkpoints again"
cp "$T/.out" before.txt
M=$(wc -l <before.txt)
run "$TOOL" age-checkpoints n-politie-mn 0 $((M - 3)) "$AT200" 1000
expect 0 "date all but politie-mn's newest three checkpoints in one day, 200 days ago"
awk -v m="$M" 'NR == 1 || NR > m - 3 { print $1 }' before.txt >want.txt
MAX=$(tail -n 1 before.txt | awk '{ print $1 }')
start_node politie-mn
sleep 0.3
kill9 politie-mn
start_node politie-mn --metrics 127.0.0.1:0
check "killed (kill -9) right after it starts, it ends with the same set at its next start" \
    wait_until 20 kept_as_rule politie-mn
check "politie-mn connects after the kill" wait_until 20 connected politie-mn
run "$NODE" status --home n-politie-mn
expect 0 "its status exits 0: no alarm"

check "gemeente-diemen, whose checkpoints are all recent, keeps every one" node_status_is \
    gemeente-diemen "d['checkpoint']['kept'] > 25 and d['counters']['checkpoints_removed'] == 0"

finish
