#!/usr/bin/env bash
# The node's event log (client/events.h, what GET /v1/events serves), written
# by the real daemons in a real exchange and read from their stores with the
# node's own reader (keten-test-tool events): the sender's log says
# "accepted", then the recipient's "receipted"; the recipient's says
# "message" (kind, from, category), then "handled" after ack. No event
# holds content. A send the node refuses itself (its policy check) adds no
# event. After a restart the numbers go on (none is used twice), a position
# older than what is kept or newer than the newest asks for a reset.
. "$(dirname "$0")/node_lib.sh"

SUMMARY="Adres staat op naam van 9 personen"
setup_network || done_testing
signal sig.json woonfraude "$SUMMARY"
signal check.json adrescheck "Adrescheck voor woonfraude"
start_broker
start_node gemeente-diemen
start_node politie-mn
for id in gemeente-diemen politie-mn; do
    require "$id connects" wait_until 20 connected "$id"
done

# events ID AFTER: the node's events after AFTER, into $T/ev-ID.
events() {
    "$TOOL" events "n-$1" "$2" >"$T/ev-$1" 2>"$T/ev-$1.err"
}

# the_events ID AFTER PYTHON: the events after AFTER satisfy PYTHON, with ev
# the list of (id, type, data) and head the first line's fields.
the_events() {
    events "$1" "$2" || return 2
    "$PY" -c '
import json, sys
lines = open(sys.argv[1]).read().split("\n")
head = dict(f.split("=") for f in lines[0].split())
ev, i = [], 1
while i + 2 < len(lines) and lines[i]:
    assert lines[i].startswith("id: ") and lines[i + 1].startswith("event: ")
    assert lines[i + 2].startswith("data: ") and lines[i + 3] == ""
    ev.append((int(lines[i][4:]), lines[i + 1][7:], json.loads(lines[i + 2][6:])))
    i += 4
assert lines[i:] == [""], lines[i:]
sys.exit(0 if eval(sys.argv[2]) else 1)' "$T/ev-$1" "$3"
}

check "before any exchange the sender's log is empty" \
    the_events gemeente-diemen 0 'ev == [] and head["last"] == "0" and head["reset"] == "no"'

run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "a signal to politie-mn, acknowledged by the broker"
printed_msg_id "the signal"
M1=$(cat "$T/.out")
check "politie-mn stores it" wait_until 30 inbox_has politie-mn "$M1"
run "$NODE" ack --home n-politie-mn "$M1"
expect 0 "politie-mn acknowledges it"
check "gemeente-diemen gets politie-mn's receipt" wait_until 30 msg_status_is gemeente-diemen \
    "$M1" 'd["recipients"][0]["state"] == "receipted"'

check "the sender's log: 1 sent accepted, 2 receipt by politie-mn receipted" \
    the_events gemeente-diemen 0 "ev == [
  (1, 'sent', {'msg_id': '$M1', 'state': 'accepted'}),
  (2, 'receipt', {'msg_id': '$M1', 'recipient': 'politie-mn', 'state': 'receipted'})]"
check "the recipient's log: 1 message (kind, from, category), 2 handled" \
    the_events politie-mn 0 "(len(ev) == 2 and ev[0] == (1, 'message', {'msg_id': '$M1',
  'kind': 'signal', 'from': 'gemeente-diemen', 'category': 'woonfraude'})
  and ev[1][:2] == (2, 'handled') and ev[1][2]['msg_id'] == '$M1'
  and ev[1][2]['handled_at'].endswith('Z'))"
check "no event holds content (summary, subjects, purpose)" lacks grep -qE \
    "Adres staat|Hoofdstraat|KvK|riec-convenant|summary" "$T/ev-politie-mn" "$T/ev-gemeente-diemen"
check "after a position: only the newer events" \
    the_events politie-mn 1 "[e[0] for e in ev] == [2] and head['reset'] == 'no'"

# Twin: a send the node refuses itself (the policy denies municipality ->
# housing for adrescheck signals) is never stored, so it tells nothing.
run "$NODE" send --home n-gemeente-diemen --to woonstad --signal check.json
expect 1 "a send the policy denies is refused by the node"
says "policy" "it says the policy refuses it"
check "the refused send added no event" the_events gemeente-diemen 0 'head["last"] == "2"'

# A restart: the numbers go on.
stop_one politie-mn
start_node politie-mn
require "politie-mn connects again" wait_until 20 connected politie-mn
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "a second signal to politie-mn"
M2=$(cat "$T/.out")
check "politie-mn stores the second" wait_until 30 inbox_has politie-mn "$M2"
check "after the restart its event is number 3 (none used twice)" \
    the_events politie-mn 2 "ev == [(3, 'message', {'msg_id': '$M2', 'kind': 'signal',
  'from': 'gemeente-diemen', 'category': 'woonfraude'})]"
check "a position newer than the newest asks for a reset" \
    the_events politie-mn 99 'ev == [] and head["reset"] == "yes"'
check "the newest position asks for none" the_events politie-mn 3 'ev == [] and head["reset"] == "no"'

finish
