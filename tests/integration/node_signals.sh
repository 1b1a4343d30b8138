#!/usr/bin/env bash
# The signal format at the command line: send --dry-run lists every problem
# of a signal at once, each with its field path and allowed values (alone,
# and against a running node's directory, recipients and policy), and sends
# nothing; --json prints the result of send and of a dry run; and the
# protocol's rule for answers, enforced by the answering node: a reply only
# to a received query, once per query (also after a restart), feedback only
# to a received signal, each refusal with its accepted twin.
. "$(dirname "$0")/node_lib.sh"

setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen; ramen afgeplakt"
signal check.json adrescheck "Adrescontrole Hoofdstraat 1"
# The first signal of a new user: five problems, which took four attempts
# when each error named one.
cat >bad.json <<'JSON'
{"type": "woonfraude", "purpose": "riec-convenant-2024/art-5", "nature": "soft",
 "grading": "B2", "observed_at": "19-11-2026 10:30",
 "subjects": [{"kind": "address", "address": "Hoofdstraat 1"}], "handling": "AMBER"}
JSON

# Without a running node: the signal's own fields.
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal bad.json --dry-run
expect 1 "dry run of a signal with five problems, no node running"
stdout_says "grading: must be an object (allowed: an object {\"source\": A-F" \
    "it names grading and its allowed form"
stdout_says "observed_at: '19-11-2026 10:30' is not an ISO 8601 UTC time (allowed: an ISO 8601" \
    "it names observed_at and its allowed form"
stdout_says "subjects[0].address: unknown field; remove it (allowed: kind, value)" \
    "it names the unknown field and the allowed fields"
stdout_says "subjects[0].value: is required" "it names the missing subject value"
stdout_says "handling: must be a Traffic Light Protocol marking, got 'AMBER' (allowed: TLP:CLEAR" \
    "it names handling and its allowed values"
check "one line per problem, five lines" test "$(wc -l <"$T/.out")" -eq 5
says "no node runs for n-gemeente-diemen: checked the signal's fields only" \
    "it says what it could not check without the node"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal bad.json --dry-run --json
expect 1 "the same dry run with --json"
check "--json: valid false, checked signal only, five problems with path, problem, allowed" \
    json_is "$T/.out" 'd["valid"] is False and d["checked"] == "signal only" and d["more"] == 0 and [p["path"] for p in d["problems"]] == ["grading", "observed_at", "subjects[0].address", "subjects[0].value", "handling"] and all(p["problem"] and p["allowed"] and p["error"] for p in d["problems"])'
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --dry-run
expect 0 "dry run of a valid signal, no node running"
check "it prints valid" grep -qx valid "$T/.out"
run bash -c "\"$NODE\" send --home n-gemeente-diemen --to politie-mn --signal - --dry-run <bad.json"
expect 1 "dry run reads the signal from standard input"
printf '{"type":"drugs","purpose":"handhaving","summary":"\xc3\x28"}' >latin.json
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal latin.json --dry-run
expect 1 "dry run of a text that is not UTF-8: a problem, not a usage error"
stdout_says "signal JSON: unable to decode byte 0xc3" "it says which byte"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --dry-run --wait
expect 2 "--dry-run with --wait is a usage error"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --kind feedback --signal sig.json
expect 2 "send --kind feedback is a usage error"
says "reply --kind feedback MSG_ID" "it says how feedback is sent"

start_broker
for id in gemeente-diemen politie-mn woonstad; do
    start_node "$id"
done
for id in gemeente-diemen politie-mn woonstad; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done

# With the node: the directory, the recipients and the policy too.
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --dry-run --json
expect 0 "dry run of a valid signal against the running node"
check "--json: valid, checked by the node, no problem" \
    json_is "$T/.out" 'd["valid"] is True and d["checked"] == "node" and d["problems"] == []'
says_not "no node runs" "it does not fall back to the signal alone"
sed 's/"woonfraude"/"wapenhandel"/; s/"riec-convenant-2024\/art-5"/"onbekend-doel"/' sig.json >unreg.json
run "$NODE" send --home n-gemeente-diemen --to politie-mn,nobody --signal unreg.json --dry-run
expect 1 "dry run: an unregistered type and purpose, an unknown recipient"
stdout_says "type: 'wapenhandel' is not registered in directory version" "it names the type"
stdout_says "(allowed: the categories registered in directory version" \
    "the allowed line lists the registered categories"
stdout_says "woonfraude" "the registered category is among them"
stdout_says "purpose: 'onbekend-doel' is not registered" "it names the purpose"
stdout_says "to: " "it names the recipients"
stdout_says "nobody" "it names the unknown recipient"
run "$NODE" send --home n-gemeente-diemen --to woonstad,politie-mn --signal check.json --dry-run
expect 1 "dry run: a recipient the policy refuses"
stdout_says "to: the sharing policy refuses gemeente-diemen -> woonstad" "it names the refused pair"
stdout_says "deny rule 3" "and the rule"
says_not "-> politie-mn" "the allowed recipient is no problem"
check "one problem, one line" test "$(wc -l <"$T/.out")" -eq 1
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal bad.json --dry-run
expect 1 "dry run of the five problems against the node"
check "the node lists the same five" test "$(wc -l <"$T/.out")" -eq 5

# A dry run sends nothing: the next real send is the first message politie
# gets (the broker delivers to a recipient in order).
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json --wait --json
expect 0 "send --wait --json"
check "--json: msg_id, state accepted, leaf_index" json_is "$T/.out" \
    'len(d["msg_id"]) == 32 and d["state"] == "accepted" and d["leaf_index"] >= 0'
M=$(jget 'L[0]["msg_id"]')
check "politie receives the signal" wait_until 20 inbox_has politie-mn "$M"
check "it is the only message politie got: the dry runs sent nothing" \
    test "$(inbox_count politie-mn "$M")" -eq 1 -a \
    "$("$NODE" inbox --home n-politie-mn --json --all | wc -l)" -eq 1

# A reply answers a query only.
signal answer.json adrescheck "Geen registratie"
run "$NODE" reply --home n-politie-mn "$M" --signal answer.json
expect 1 "a reply to a signal (not a query) is refused"
says "is a signal, not a query: a reply answers a received query only" "it says why"
says "reply --kind feedback" "it says how to answer a signal"
run "$NODE" reply --home n-politie-mn "$M" --signal answer.json --dry-run
expect 1 "the dry run of that reply lists the problem"
stdout_says "MSG_ID: message $M is a signal, not a query" "the dry run names the message"
# Its twin: feedback on the signal.
signal feedback.json adrescheck "Opgepakt in het RIEC-overleg"
run "$NODE" reply --home n-politie-mn "$M" --kind feedback --signal feedback.json --dry-run
expect 0 "the dry run of feedback on the signal is valid"
run "$NODE" reply --home n-politie-mn "$M" --kind feedback --signal feedback.json --wait
expect 0 "feedback on a received signal is sent"
printed_msg_id "feedback"
F=$(cat "$T/.out")
check "the municipality receives the feedback, kind feedback, in_reply_to the signal" \
    wait_until 20 inbox_has gemeente-diemen "$F"
"$NODE" inbox --home n-gemeente-diemen --json --all | grep -F "\"msg_id\":\"$F\"" >fb.line
check "the feedback's kind is feedback and in_reply_to the signal" json_is fb.line \
    "d['kind'] == 'feedback' and d['in_reply_to'] == '$M' and d['from'] == 'politie-mn'"

# A query: one reply, a second refused; feedback on a query refused.
run "$NODE" send --home n-gemeente-diemen --kind query --to politie-mn --signal check.json --wait
expect 0 "the municipality sends a query"
Q=$(cat "$T/.out")
check "politie receives the query" wait_until 20 inbox_has politie-mn "$Q"
run "$NODE" reply --home n-politie-mn "$Q" --kind feedback --signal feedback.json
expect 1 "feedback on a query is refused"
says "is a query, not a signal: feedback answers a received signal only" "it says why"
run "$NODE" reply --home n-politie-mn "$Q" --signal answer.json --wait
expect 0 "the first reply to the query is sent"
R=$(cat "$T/.out")
run "$NODE" reply --home n-politie-mn "$Q" --signal answer.json --wait
expect 1 "a second reply to the same query is refused"
says "already replied to query $Q (reply $R)" "it names the query and the first reply"
run "$NODE" reply --home n-politie-mn "$Q" --signal answer.json --dry-run
expect 1 "the dry run of a second reply lists it"
stdout_says "MSG_ID: this node already replied to query $Q" "the dry run says so"
# The rule survives a restart: the reply is noted with it in the store.
stop_one politie-mn
start_node politie-mn
check "politie reconnects" wait_until 20 connected politie-mn
run "$NODE" reply --home n-politie-mn "$Q" --signal answer.json
expect 1 "after a restart, a second reply is still refused"
says "already replied to query $Q" "it still names the query"
# The answerer of a reply: a reply to a reply is refused too.
check "the municipality receives the reply" wait_until 20 inbox_has gemeente-diemen "$R"
run "$NODE" reply --home n-gemeente-diemen "$R" --signal answer.json
expect 1 "a reply to a reply is refused"
says "is a reply, not a query" "it says why"
# Marker: feedback sent after the refusals arrives; a second reply sent
# before it would have arrived first.
run "$NODE" reply --home n-politie-mn "$M" --kind feedback --signal feedback.json --wait
expect 0 "politie sends feedback again (the marker)"
F2=$(cat "$T/.out")
check "the marker arrives" wait_until 20 inbox_has gemeente-diemen "$F2"
check "the query has exactly one reply, politie's first" msg_status_is gemeente-diemen "$Q" \
    "len(d['replies']) == 1 and d['replies'][0]['msg_id'] == '$R'"

done_testing
