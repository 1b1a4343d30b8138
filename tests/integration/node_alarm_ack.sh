#!/usr/bin/env bash
# An operator acknowledges a node's alarm once it is dealt with (keten-node
# alarm, POST /v1/alarms/ID/ack on HOME/api.sock): a real node against
# keten-fakebroker (mode ack-other-leaf: every message after the first is
# acknowledged with the first one's leaf, a bad-proof alarm) raises an
# alarm; status exits 3; alarm list shows it; an acknowledgement without a
# note, with an empty one, of an unknown number, or over the TCP listener
# (even with every scope) is refused and changes nothing; with a note it is
# recorded (who: the Unix user of the socket, when, the note): status exits
# 0 and lists it apart, the metrics count 0 unacknowledged and 1
# acknowledged, the event stream tells alarm-acknowledged, the log says so;
# acknowledging it again is refused. A second alarm afterwards makes status
# exit 3 again; after a restart of the daemon the acknowledgement is still
# there. Every answer of the API is checked against docs/api/openapi.yaml.
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/node_lib.sh"

need_tool curl
setup_network || done_testing
signal sig.json woonfraude "Eerste melding"
signal sig2.json woonfraude "Tweede melding"
signal sig3.json woonfraude "Derde melding"
ID=gemeente-diemen
HOME_DIR=n-$ID
PORT=$(free_port)

# Who the node records: this user's name, or uid=N when it is not a plain one.
WHO=$(id -un)
[[ "$WHO" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || WHO="uid=$(id -u)"

start_fake ack-other-leaf
start_here() {
    KETEN_NODE_TEST_API_TRACE="$T/trace.jsonl" "$NODE" run --home "$HOME_DIR" \
        --anchor admin/network.pub --directory directory.signed --broker "$FAKE_EP" \
        --metrics 127.0.0.1:0 --api-listen "127.0.0.1:$PORT" >>"$T/node-$ID.log" 2>&1 &
    PID[$ID]=$!
}
rm -rf "$HOME_DIR/store"
start_here
require "the node connects to the fake broker" wait_until 20 connected "$ID"
check "it serves its metrics" wait_until 10 has_metrics_port "$ID"
check "it serves HTTP on 127.0.0.1:$PORT" wait_until 10 port_open "$PORT"

# alarms_are EXPR: alarm list --json satisfies EXPR (a = the list).
alarms_are() {
    "$NODE" alarm --home "$HOME_DIR" list --json >"$T/.al" 2>/dev/null || return 2
    json_is "$T/.al" "(lambda a: $1)(d['alarms'])"
}

run "$NODE" send --home "$HOME_DIR" --to politie-mn --signal sig.json --wait
expect 0 "the first message is accepted (an honest ack)"
run "$NODE" status --home "$HOME_DIR"
expect 0 "no alarm yet: status exits 0"
run "$NODE" alarm --home "$HOME_DIR" list
expect 0 "alarm list with no alarm"
stdout_says "no alarms" "it says there are none"

run "$NODE" send --home "$HOME_DIR" --to politie-mn --signal sig2.json
expect 0 "a second message is stored in the outbox"
check "the fake broker acknowledges it with the first one's leaf: an alarm" \
    wait_until 20 alarmed "$ID"
run "$NODE" status --home "$HOME_DIR"
expect 3 "status exits 3 (the alarm)"
stdout_says "ALARM 1 bad-proof" "status names the alarm with its number"
check "alarm list --json: one alarm, number 1, bad-proof, not acknowledged" alarms_are \
    "len(a) == 1 and a[0]['id'] == 1 and a[0]['kind'] == 'bad-proof' and a[0]['acknowledged'] is False and 'note' not in a[0]"
run "$NODE" alarm --home "$HOME_DIR" list
expect 0 "alarm list"
stdout_says "NOT ACKNOWLEDGED" "it says the alarm is not acknowledged"

# --- refusals: nothing changes ---------------------------------------------------
run "$NODE" alarm --home "$HOME_DIR" ack 1
expect 2 "ack without --note is a usage error"
says "needs --note" "it says a note is needed"
run "$NODE" alarm --home "$HOME_DIR" ack 1 --note ""
expect 2 "ack with an empty note"
says "1 to 200 characters" "it says what a note is"
run "$NODE" alarm --home "$HOME_DIR" ack 1 --note "$(printf 'x%.0s' $(seq 1 201))"
expect 2 "ack with a note of 201 characters (the node refuses it)"
says "longer than 200 characters" "the node says the note is too long"
run "$NODE" alarm --home "$HOME_DIR" ack 7 --note "no such alarm"
expect 1 "ack of a number the node does not hold"
says "no alarm 7" "it says there is no such alarm"
run "$NODE" alarm --home "$HOME_DIR" ack 01 --note "leading zero"
expect 2 "an ID that is not a number from 1"
# On the socket, with curl: who acknowledges is not the caller's to say.
unix_post() {
    CODE=$(curl -sS --max-time 20 --unix-socket "$HOME_DIR/api.sock" -X POST \
        -H "Content-Type: application/json" --data-binary "$2" -o "$T/.unix" -w '%{http_code}' \
        "http://node$1" 2>"$T/.unixerr")
}
unix_post /v1/alarms/1/ack '{"note":"fixed","by":"mallory"}'
check "a request naming who acknowledges (\"by\") is refused: 400" test "$CODE" = 400
check "it names the field" json_is "$T/.unix" "d['errors'][0]['field'] == '/by'"
unix_post /v1/alarms/one/ack '{"note":"fixed"}'
check "an alarm number that is not a number: 400" test "$CODE" = 400
unix_post /v1/alarms/1/ack '{}'
check "no note: 400 naming /note" json_is "$T/.unix" "d['status'] == 400 and d['errors'][0]['field'] == '/note'"
run "$NODE" token create --home "$HOME_DIR" --name ops --scope read,send,ack
expect 0 "a token with every scope, for the TCP listener"
TOKEN=$(cat "$T/.out")
tcp() {
    CODE=$(curl -sS --max-time 20 -o "$T/.tcp" -w '%{http_code}' "$@" 2>"$T/.tcperr")
}
tcp -X POST -H "Content-Type: application/json" --data-binary '{"note":"over TCP"}' \
    "http://127.0.0.1:$PORT/v1/alarms/1/ack"
check "POST /v1/alarms/1/ack over TCP without credentials: 401" test "$CODE" = 401
tcp -X POST -H "Content-Type: application/json" -H "Authorization: Bearer $TOKEN" \
    --data-binary '{"note":"over TCP"}' "http://127.0.0.1:$PORT/v1/alarms/1/ack"
check "POST /v1/alarms/1/ack over TCP with every scope: 403" test "$CODE" = 403 ||
    sed 's/^/# /' "$T/.tcp"
check "the refusal says the Unix socket only" json_is "$T/.tcp" \
    "d['status'] == 403 and 'Unix socket only' in d['detail'] and d['exit'] == 1"
check "the access log records the refused acknowledgement" grep -qF \
    '"via":"tcp","peer":"127.0.0.1","action":"alarm-ack","object":"alarm:1","result":"denied","status":403' \
    "$HOME_DIR/access.log"
tcp -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/alarms"
check "twin: GET /v1/alarms over TCP with the read scope lists the alarm" test "$CODE" = 200
check "its answer is the list" json_is "$T/.tcp" "len(d['alarms']) == 1 and d['alarms'][0]['id'] == 1"
check "after the refusals the alarm is still not acknowledged" alarms_are \
    "len(a) == 1 and a[0]['acknowledged'] is False"
run "$NODE" status --home "$HOME_DIR"
expect 3 "and status still exits 3"
check "keten_node_alarms is 1" wait_until 10 metric_is "$ID" keten_node_alarms 'v == 1'
check "keten_node_alarms_acknowledged is 0" metric_is "$ID" keten_node_alarms_acknowledged 'v == 0'

# --- the acknowledgement ---------------------------------------------------------
# A live event stream on the Unix socket, open before the acknowledgement.
curl -sS -N --max-time 120 --unix-socket "$HOME_DIR/api.sock" "http://node/v1/events" \
    >"$T/live.out" 2>"$T/live.err" &
LIVE=$!
live_open() { grep -q '"action":"events".*"status":200' "$HOME_DIR/access.log"; }
check "the event stream is open (its access log line)" wait_until 10 live_open
NOTE="broker restored from the backup of 2026-12-01, log verified; INC-4711"
run "$NODE" alarm --home "$HOME_DIR" ack 1 --note "$NOTE"
expect 0 "ack 1 with a note"
stdout_says "alarm 1 (bad-proof) acknowledged by $WHO at" "it says who acknowledged it"
check "alarm list: acknowledged by $WHO, with the time and the note; the alarm itself unchanged" \
    alarms_are "len(a) == 1 and a[0]['acknowledged'] is True and a[0]['acknowledged_by'] == '$WHO' and a[0]['acknowledged_at'].endswith('Z') and a[0]['note'] == '$NOTE' and a[0]['kind'] == 'bad-proof' and 'leaf' in a[0]['detail']"
run "$NODE" status --home "$HOME_DIR"
expect 0 "status exits 0 (the only alarm is acknowledged, the node is connected)"
stdout_says "alarms        0 not acknowledged" "status says no alarm is left unacknowledged"
stdout_says "acknowledged by $WHO at" "status lists the acknowledged alarm apart"
stdout_says "$NOTE" "with the note"
check "the evidence is kept" node_status_is "$ID" 'd["evidence"] >= 1'
check "keten_node_alarms is 0" wait_until 10 metric_is "$ID" keten_node_alarms 'v == 0'
check "keten_node_alarms_acknowledged is 1" wait_until 10 \
    metric_is "$ID" keten_node_alarms_acknowledged 'v == 1'
check "keten_node_alarms_total (raised since the start) is still 1" \
    metric_is "$ID" keten_node_alarms_total 'v == 1'
check "the event stream tells alarm-acknowledged" \
    wait_until 10 grep -q '^event: alarm-acknowledged$' "$T/live.out"
check "with the alarm's number, kind, who and the note" "$PY" -c '
import json, sys
lines = open(sys.argv[1]).read().split("\n")
data = [json.loads(lines[i + 1][6:]) for i, l in enumerate(lines) if l == "event: alarm-acknowledged"]
sys.exit(0 if data and data[0]["alarm_id"] == 1 and data[0]["kind"] == "bad-proof"
         and data[0]["by"] == sys.argv[2] and data[0]["note"] == sys.argv[3] else 1)' \
    "$T/live.out" "$WHO" "$NOTE"
kill "$LIVE" 2>/dev/null
wait "$LIVE" 2>/dev/null
check "the log says it" grep -qF \
    "msg=\"alarm acknowledged\" id=1 kind=bad-proof by=$WHO note=\"$NOTE\"" "$T/node-$ID.log"
run "$NODE" alarm --home "$HOME_DIR" ack 1 --note "again"
expect 1 "acknowledging it again is refused"
says "already acknowledged by $WHO" "it says by whom and when"
check "the first acknowledgement stays" alarms_are "a[0]['note'] == '$NOTE'"

# --- a new alarm counts again ----------------------------------------------------
run "$NODE" send --home "$HOME_DIR" --to politie-mn --signal sig3.json
expect 0 "a third message"
check "it is acknowledged with the first one's leaf too: a second alarm" \
    wait_until 20 alarmed "$ID"
run "$NODE" status --home "$HOME_DIR"
expect 3 "status exits 3 again (alarm 2 is not acknowledged)"
stdout_says "ALARM 2 bad-proof" "status names the new alarm"
check "alarm list: 1 acknowledged, 2 not" alarms_are \
    "[(x['id'], x['acknowledged']) for x in a] == [(1, True), (2, False)]"
check "keten_node_alarms is 1 again" wait_until 10 metric_is "$ID" keten_node_alarms 'v == 1'

# --- a restart ----------------------------------------------------------------------
stop_one "$ID"
start_here
require "the node runs again" wait_until 20 connected "$ID"
check "after the restart alarm 1 is still acknowledged (who, note), alarm 2 is not" alarms_are \
    "[(x['id'], x['acknowledged']) for x in a] == [(1, True), (2, False)] and a[0]['acknowledged_by'] == '$WHO' and a[0]['note'] == '$NOTE'"
run "$NODE" status --home "$HOME_DIR"
expect 3 "status exits 3 (alarm 2)"
run "$NODE" alarm --home "$HOME_DIR" ack 2 --note "the same broker incident"
expect 0 "ack 2"
run "$NODE" status --home "$HOME_DIR"
expect 0 "status exits 0"
check "the metrics after the restart: 0 unacknowledged, 2 acknowledged" wait_until 10 \
    metric_is "$ID" keten_node_alarms_acknowledged 'v == 2'
check "keten_node_alarms is 0" metric_is "$ID" keten_node_alarms 'v == 0'

stop_one "$ID"
openapi_holds() {
    "$PY" "$SRC/tests/tools/openapi_check.py" "$SRC/docs/api/openapi.yaml" "$T/trace.jsonl" \
        >"$T/oa.out" 2>&1
}
check "the trace holds the acknowledgements" grep -q '"path":"/v1/alarms/1/ack"' "$T/trace.jsonl"
check "every answer of the API is one openapi.yaml describes" openapi_holds ||
    sed 's/^/# /' "$T/oa.out"
finish
