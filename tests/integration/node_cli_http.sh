#!/usr/bin/env bash
# The command line as a client of the node's HTTP API (HOME/api.sock):
# inbox --kind, --category and --since list what they name and nothing
# else (twin: no filter lists both messages), and are refused when they
# name nothing valid; --wait with --kind waits for a message of that kind; a signal file that is not a JSON object (cut short, a
# field given twice) is refused before anything leaves, saying why, and
# nothing is sent (twin: the valid file is sent); send --wait whose wait runs
# out (the broker is down) exits 1 saying that the message stays in the
# outbox, and it is delivered once the broker is back; an empty party in
# --to is refused as before; a MSG_ID in capitals
# is taken, one that is not hex is refused (exit 2) and acknowledges
# nothing; proxy variables in the environment change nothing.
. "$(dirname "$0")/node_lib.sh"

setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen; ramen afgeplakt"
signal check.json adrescheck "Adrescontrole Hoofdstraat 1"

start_broker
for id in gemeente-diemen politie-mn; do
    start_node "$id"
done
for id in gemeente-diemen politie-mn; do
    require "$id connects to the broker" wait_until 20 connected "$id"
done

# Two messages to politie: a signal (woonfraude), then a query (adrescheck).
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait
expect 0 "the municipality sends a signal"
S=$(cat "$T/.out")
require "politie receives the signal" wait_until 20 inbox_has politie-mn "$S"
# --since is under test: T1 lies strictly between the two receptions.
sleep 0.05
T1=$(date +%s%3N)
T1_ISO=$("$PY" -c 'import datetime, sys
t = int(sys.argv[1])
print(datetime.datetime.fromtimestamp(t // 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (t % 1000))' "$T1")
sleep 0.05
run "$NODE" send --home n-gemeente-diemen --kind query --to politie-mn --signal check.json --wait
expect 0 "the municipality sends a query"
Q=$(cat "$T/.out")
require "politie receives the query" wait_until 20 inbox_has politie-mn "$Q"

run "$NODE" inbox --home n-politie-mn --json
expect 0 "inbox without a filter"
jl "[m['msg_id'] for m in L] == ['$S', '$Q']" "without a filter: both messages, oldest first"
run "$NODE" inbox --home n-politie-mn --json --kind query
expect 0 "inbox --kind query"
jl "[m['msg_id'] for m in L] == ['$Q']" "--kind query lists the query alone"
run "$NODE" inbox --home n-politie-mn --json --kind signal
jl "[m['msg_id'] for m in L] == ['$S']" "--kind signal lists the signal alone"
run "$NODE" inbox --home n-politie-mn --json --category adrescheck
expect 0 "inbox --category adrescheck"
jl "[m['msg_id'] for m in L] == ['$Q']" "--category adrescheck lists the query alone"
run "$NODE" inbox --home n-politie-mn --json --category woonfraude --kind signal
jl "[m['msg_id'] for m in L] == ['$S']" "--category woonfraude --kind signal: the signal"
run "$NODE" inbox --home n-politie-mn --json --category woonfraude --kind query
expect 0 "filters that match nothing"
check "--category woonfraude --kind query lists nothing" test ! -s "$T/.out"
run "$NODE" inbox --home n-politie-mn --json --since "$T1"
expect 0 "inbox --since MS"
jl "[m['msg_id'] for m in L] == ['$Q']" "--since (ms) lists the later message alone"
run "$NODE" inbox --home n-politie-mn --json --since "$T1_ISO"
jl "[m['msg_id'] for m in L] == ['$Q']" "--since (ISO 8601 UTC) lists it alone too"
run "$NODE" inbox --home n-politie-mn --kind query
expect 0 "inbox --kind query as text"
says "1 message, 1 unhandled" "the summary counts what the filter lists"
says_not "$S" "the text lists no signal"

# A MSG_ID in capitals is the same message; the filters with --all.
run "$NODE" ack --home n-politie-mn "$(tr a-f A-F <<<"$S")"
expect 0 "ack with the MSG_ID in capitals"
says "acknowledged" "it says so"
run "$NODE" inbox --home n-politie-mn --json --kind signal
check "the acknowledged signal is no longer listed as unhandled" test ! -s "$T/.out"
run "$NODE" inbox --home n-politie-mn --kind signal --all
expect 0 "inbox --kind signal --all"
says "$S" "--all lists the handled signal"
says "(handled)" "marked handled"
says_not "$Q" "and not the query"

# Filters that name nothing valid: usage errors, nothing asked.
run "$NODE" inbox --home n-politie-mn --kind bogus
expect 2 "inbox --kind bogus"
says "--kind must be signal, query, reply or feedback" "it names the kinds"
run "$NODE" inbox --home n-politie-mn --since yesterday
expect 2 "inbox --since yesterday"
says "is not ISO 8601 UTC" "it says what --since takes"
run "$NODE" inbox --home n-politie-mn --category "Woon Fraude"
expect 2 "inbox --category with a space and capitals"
says "is not a category" "it says so"

# --wait with a filter waits for a message that matches it: a reply that
# arrives first does not end the wait for feedback.
"$NODE" inbox --home n-gemeente-diemen --json --wait 30 --kind feedback >wait.out 2>wait.err &
WAITER=$!
sleep 1 # (lets the wait begin before the reply arrives; without it the check is weaker, not wrong)
signal answer.json adrescheck "Geen registratie"
run "$NODE" reply --home n-politie-mn "$Q" --signal answer.json --wait
expect 0 "politie replies to the query"
R=$(cat "$T/.out")
run "$NODE" reply --home n-politie-mn "$S" --kind feedback --signal answer.json --wait
expect 0 "politie sends feedback on the signal"
F=$(cat "$T/.out")
wait "$WAITER"
check "the waiting inbox --kind feedback exits 0" test "$?" -eq 0
check "it lists the feedback alone, not the reply that came first" \
    "$PY" -c 'import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if [m["msg_id"] for m in L] == [sys.argv[2]] else 1)' wait.out "$F"
check "the reply had arrived before it" inbox_has gemeente-diemen "$R"

# A MSG_ID that is not 32 hex characters never reaches a path.
run "$NODE" ack --home n-politie-mn "../../v1/tokens/0123456789abcdef"
expect 2 "ack of a MSG_ID that is a path"
says "MSG_ID must be 32 hex characters" "it says what a MSG_ID is"
run "$NODE" show --home n-politie-mn "${Q:0:31}"
expect 2 "show of 31 hex characters"
run "$NODE" inbox --home n-politie-mn --json
jl "[m['msg_id'] for m in L] == ['$Q']" "the query is still unhandled: nothing was acknowledged"

# A signal file that is not a JSON object never leaves the command line.
# (msg_ids only: a recipient's state may change meanwhile)
sent_ids() {
    "$PY" -c 'import json, sys
for line in sys.stdin:
    print(json.loads(line)["msg_id"])'
}
"$NODE" sent --home n-gemeente-diemen --json | sent_ids >sent.before
printf '{"type": "woonfraude", "purpose": ' >cut.json
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal cut.json
expect 1 "a signal cut short is refused"
says "bad JSON" "it says the JSON is bad"
says "line 1" "and where"
sed 's/"summary"/"type":"drugs","summary"/' sig.json >twice.json
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal twice.json
expect 1 "a signal with a field given twice is refused"
says "type: duplicate field" "it names the field"
printf '["woonfraude"]\n' >array.json
run "$NODE" reply --home n-politie-mn "$Q" --signal array.json
expect 1 "a reply that is a JSON array is refused"
says "must be an object" "it says what a signal is"
# An empty party is no item of the request: refused as the node's directory
# refuses it.
run "$NODE" send --home n-gemeente-diemen --to politie-mn, --signal sig.json
expect 1 "--to with an empty party is refused"
says "party '' is not a node id, role:NAME or '*'" "it says which party"
run "$NODE" send --home n-gemeente-diemen --to "" --signal sig.json
expect 1 "--to with no party is refused"
says "no parties given" "it says so"
"$NODE" sent --home n-gemeente-diemen --json | sent_ids >sent.after
check "nothing was sent: the sent list is the same" cmp -s sent.before sent.after
check "and it lists the two messages sent before" test "$(wc -l <sent.after)" -eq 2

# send --wait whose wait runs out while the broker is down.
stop_one broker
check "the municipality sees the broker gone" wait_until 30 lacks connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait --timeout 1
expect 1 "send --wait --timeout 1 with the broker down"
says "no acknowledgement from the broker for message" "it says there was no acknowledgement"
says "stays in the outbox and is resent until acknowledged" "and that the message is kept"
M=$(grep -oE '[0-9a-f]{32}' "$T/.err" | head -n 1)
check "it names the message's msg_id" test -n "$M"
check "the message is pending in the outbox" msg_status_is gemeente-diemen "$M" \
    "d['state'] == 'pending'"
start_broker
check "the municipality reconnects" wait_until 30 connected gemeente-diemen
check "the message is delivered once the broker is back" wait_until 30 inbox_has politie-mn "$M"
check "and accepted at its sender" wait_until 30 msg_status_is gemeente-diemen "$M" \
    "d['state'] == 'accepted'"

# Proxy settings are for the network: the socket is reached without them.
run env http_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9 \
    "$NODE" status --home n-politie-mn --json
expect 0 "status with a proxy that does not exist in the environment"
check "it is politie's status" json_is "$T/.out" "d['node'] == 'politie-mn'"

finish
