#!/usr/bin/env bash
# The node's HTTP API (docs/api/openapi.yaml) through the real broker and two
# real nodes, with curl on HOME/api.sock: every route (send, validate, the
# inbox with each filter and a wait, show, ack twice, reply and feedback and
# their refusals, a query's reply_msg_id before and after its reply, sent, a
# message's status, capabilities, checkpoints); each error class (400 bad
# msg_id, unknown field, malformed JSON, duplicate key; 404, 405 with
# Allow, 413, 415); the TCP listener (401 without credentials,
# the security headers; a web root without the page's files: a warning at
# start, GET / 404, the API served) and a non-loopback api-listen refused
# at start. Every answer is traced (KETEN_NODE_TEST_API_TRACE) and checked
# against the OpenAPI document at the end (tests/tools/openapi_check.py).
SRC=$(cd "$(dirname "$0")/../.." && pwd) # the source tree: docs/api, tests/tools
. "$(dirname "$0")/node_lib.sh"

need_tool curl
setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen"
signal adres.json adrescheck "Klopt de inschrijving op dit adres?"

# A free loopback port for the TCP listener.
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

start_broker
KETEN_NODE_TEST_API_TRACE="$T/trace-g.jsonl" start_node gemeente-diemen \
    --api-listen "127.0.0.1:$PORT" --log-level debug --web-root "$T/web-missing"
KETEN_NODE_TEST_API_TRACE="$T/trace-p.jsonl" start_node politie-mn
for id in gemeente-diemen politie-mn; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done
# Its web root is a folder that does not exist: the node said so at start
# (before it connected), naming the folder and what is missing, and serves
# the API all the same (the TCP listener below).
check "gemeente-diemen warns that the web page's files are missing, naming the folder" \
    grep -qF "level=warn prog=keten-node msg=\"the web page's files are missing: GET / answers 404; the API is served\" web_root=$T/web-missing missing=\"index.html static/\" folder=missing" \
    "$T/node-gemeente-diemen.log"

declare -A REQS=() # ID -> requests made to its node (each is one trace line)

# api ID METHOD PATH [BODY_FILE [CONTENT_TYPE]]: one request on n-ID/api.sock;
# CODE is the HTTP status, $T/.out the body, $T/.hdr the response headers.
api() {
    local id=$1 method=$2 path=$3 body=${4:-} ctype=${5:-application/json}
    local args=(-sS --max-time 40 --unix-socket "n-$id/api.sock" -X "$method" -D "$T/.hdr"
        -o "$T/.out" -w '%{http_code}')
    if [ -n "$body" ]; then
        args+=(-H "Content-Type: $ctype" --data-binary "@$body")
    fi
    REQS[$id]=$((${REQS[$id]:-0} + 1))
    CODE=$(curl "${args[@]}" "http://node$path" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}

# tcp METHOD PATH: the same on the TCP listener of gemeente-diemen.
tcp() {
    REQS[gemeente-diemen]=$((${REQS[gemeente-diemen]:-0} + 1))
    CODE=$(curl -sS --max-time 20 -X "$1" -D "$T/.hdr" -o "$T/.out" -w '%{http_code}' \
        "http://127.0.0.1:$PORT$2" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}

# body FILE JSON: write a request body.
body() {
    printf '%s' "$2" >"$1"
}

# is CODE WHAT [EXPR]: the last answer had status CODE (and its JSON body d
# satisfies EXPR).
is() {
    local code=$1 what=$2 expr=${3:-True}
    # (the answer as a TAP comment, ending in a newline even when the
    # answer does not, so that the next test line stays a line of its own)
    check "$what (HTTP $code)" test "$CODE" = "$code" || { sed 's/^/# /' "$T/.all"; echo; }
    check "$what: the answer holds" json_is "$T/.out" "$expr" || { sed 's/^/# /' "$T/.out"; echo; }
}

# header NAME VALUE: the last answer carried that header (value as a prefix).
header() {
    grep -qiE "^$1: $2" "$T/.hdr"
}

problem() { # problem SLUG: the answer is a problem+json of that type
    echo "d['type'] == 'urn:keten:problem:$1' and d['status'] == $CODE and d['detail'] and d['exit'] in (1, 2, 3)"
}

check "the API socket is mode 0600" test "$(stat -c %a n-gemeente-diemen/api.sock)" = 600
check "the API socket is a socket" test -S n-gemeente-diemen/api.sock

# --- reading the node ---------------------------------------------------------
api gemeente-diemen GET /v1/ping
is 200 "ping names the node" "d == {'node': 'gemeente-diemen'}"
check "JSON answers say application/json" header Content-Type 'application/json; charset=utf-8'
check "every answer carries the Content-Security-Policy" \
    header Content-Security-Policy "default-src 'self'; script-src 'self'"
check "and X-Content-Type-Options: nosniff" header X-Content-Type-Options nosniff
check "and Referrer-Policy: no-referrer" header Referrer-Policy no-referrer
check "and Cache-Control: no-store under /v1/" header Cache-Control no-store
api gemeente-diemen GET /v1/node
is 200 "GET /v1/node is the node's status" "d['status']['node'] == 'gemeente-diemen' and d['status']['connected']"

api gemeente-diemen GET /v1/capabilities
is 200 "capabilities" "d['node'] == 'gemeente-diemen' and set(d['categories']) == {'woonfraude', 'drugs', 'adrescheck'}"
check "capabilities list the partners with org and role" json_is "$T/.out" \
    "{'id': 'politie-mn', 'org': 'Politie Midden-Nederland', 'role': 'police'} in d['partners'] and all(p['id'] != 'gemeente-diemen' for p in d['partners'])"
check "capabilities: adrescheck signals may go to police and tax" json_is "$T/.out" \
    "sorted(d['allowed']['signal']['adrescheck']) == ['belastingdienst', 'politie-mn']"
check "capabilities: the partner the policy denies adrescheck signals (woonstad) is absent" \
    json_is "$T/.out" "'woonstad' not in d['allowed']['signal']['adrescheck']"
check "capabilities: woonstad may get adrescheck queries (the deny is for signals)" \
    json_is "$T/.out" "'woonstad' in d['allowed']['query']['adrescheck']"
check "capabilities: no rule allows drugs" json_is "$T/.out" \
    "d['allowed']['signal']['drugs'] == [] and d['allowed']['query']['drugs'] == []"
api politie-mn GET /v1/capabilities
is 200 "the police node may send no signal at all (only replies and feedback)" \
    "all(v == [] for v in d['allowed']['signal'].values())"

# --- validate -------------------------------------------------------------------
body v-ok.json "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat sig.json)}"
api gemeente-diemen POST /v1/messages/validate v-ok.json
is 200 "validate a good send" "d == {'valid': True, 'problems': [], 'more': 0}"
sed 's/"source":"B"/"source":"G"/' sig.json >bad-sig.json
body v-bad.json "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"woonstad\"],\"signal\":$(cat bad-sig.json)}"
api gemeente-diemen POST /v1/messages/validate v-bad.json
is 200 "validate names every problem" \
    "not d['valid'] and any(p['path'] == 'grading.source' for p in d['problems'])"
body v-reply.json "{\"for\":\"reply\",\"msg_id\":\"00000000000000000000000000000000\",\"signal\":$(cat adres.json)}"
api politie-mn POST /v1/messages/validate v-reply.json
is 200 "validate a reply to no message: invalid, the msg_id named" \
    "not d['valid'] and d['problems'][0]['path'] == 'msg_id' and d['problems'][0]['code'] == 'unknown-message'"
# An empty recipient list is one problem among the others, not a 400: soft
# information without its grading, sent to no one, names both (each with
# its code); with a recipient and the grading (v-ok.json above) it is valid.
"$PY" -c 'import json, sys; s = json.load(open(sys.argv[1])); del s["grading"]; print(json.dumps(s))' \
    sig.json >nograde.json
body v-none.json "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[],\"signal\":$(cat nograde.json)}"
api gemeente-diemen POST /v1/messages/validate v-none.json
is 200 "validate: no recipient and no grading are both named, each a missing field" \
    "not d['valid'] and sorted((p['path'], p['code']) for p in d['problems']) == [('grading', 'missing'), ('to', 'missing')]"
body v-nothing.json "{\"for\":\"send\",\"signal\":[]}"
api gemeente-diemen POST /v1/messages/validate v-nothing.json
is 200 "validate: no kind, no to and a signal that is no object are three problems" \
    "not d['valid'] and sorted((p['path'], p['code']) for p in d['problems']) == [('kind', 'missing'), ('signal', 'malformed'), ('to', 'missing')]"
body v-badto.json "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"politie-mn\",\"\",7],\"signal\":$(cat nograde.json)}"
api gemeente-diemen POST /v1/messages/validate v-badto.json
is 200 "validate: each recipient that is no party is named by its index, with the signal's problem" \
    "sorted((p['path'], p['code']) for p in d['problems']) == [('grading', 'missing'), ('to[1]', 'invalid'), ('to[2]', 'invalid')]"
# What stays a 400: a body that is no request to check.
body v-array.json '[]'
api gemeente-diemen POST /v1/messages/validate v-array.json
is 400 "validate: a body that is not a JSON object is refused" "$(problem malformed-json)"
body v-unknown.json "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[],\"colour\":1,\"signal\":{}}"
api gemeente-diemen POST /v1/messages/validate v-unknown.json
is 400 "validate: a field it does not take is refused" \
    "$(problem invalid-request) and d['errors'][0]['field'] == '/colour'"

# --- send -----------------------------------------------------------------------
SINCE=$(date +%s%3N)
# A deferred request: an inbox wait on the police node, answered when the
# signal sent next arrives.
curl -sS --max-time 40 --unix-socket n-politie-mn/api.sock -o "$T/wait.out" -w '%{http_code}' \
    "http://node/v1/inbox?wait=30000&since=$SINCE&category=woonfraude" >"$T/wait.code" 2>&1 &
WAITER=$!
REQS[politie-mn]=$((${REQS[politie-mn]:-0} + 1))
body send.json "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat sig.json)}"
held() { grep -c 'msg="API answers held for a group commit sent" replies=' "$T/node-gemeente-diemen.log"; }
HELD=$(held)
api gemeente-diemen POST /v1/messages send.json
is 202 "a send answers pending (held until its batch committed)" \
    "d['state'] == 'pending' and len(d['msg_id']) == 32"
SIG=$(jget 'L[0]["msg_id"]')
check "the send's answer was held until its group commit, then sent" test "$(held)" -gt "$HELD"
wait "$WAITER"
check "the deferred inbox wait was answered 200" test "$(cat "$T/wait.code")" = 200
check "with the signal that arrived" json_is "$T/wait.out" \
    "[m['msg_id'] for m in d['messages']] == ['$SIG']"

api gemeente-diemen POST "/v1/messages?wait=20000" send.json
is 201 "a send with wait answers once the broker accepted it" \
    "d['state'] == 'accepted' and isinstance(d['leaf_index'], int)"
SIG2=$(jget 'L[0]["msg_id"]')

body denied.json "{\"kind\":\"signal\",\"to\":[\"woonstad\"],\"signal\":$(cat adres.json)}"
api gemeente-diemen POST /v1/messages denied.json
is 422 "a send the policy refuses" "$(problem policy) and 'rule' in d['detail']"
body allowed.json "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat adres.json)}"
api gemeente-diemen POST "/v1/messages?wait=20000" allowed.json
is 201 "the same signal to a partner the policy allows is accepted" "d['state'] == 'accepted'"
ADRES=$(jget 'L[0]["msg_id"]')
body fb-send.json "{\"kind\":\"feedback\",\"to\":[\"politie-mn\"],\"signal\":$(cat adres.json)}"
api gemeente-diemen POST /v1/messages fb-send.json
is 400 "feedback is refused on POST /v1/messages (it answers: use reply)" \
    "$(problem invalid-request) and d['errors'][0]['field'] == '/kind' and 'reply' in d['detail']"
body q.json "{\"kind\":\"query\",\"to\":[\"role:police\"],\"signal\":$(cat adres.json)}"
api gemeente-diemen POST "/v1/messages?wait=20000" q.json
is 201 "a query by role is accepted" "d['state'] == 'accepted'"
QUERY=$(jget 'L[0]["msg_id"]')

# --- inbox ----------------------------------------------------------------------
check "the police node has the query" wait_until 20 inbox_has politie-mn "$QUERY"
check "and the adrescheck signal" wait_until 20 inbox_has politie-mn "$ADRES"
check "and the second signal" wait_until 20 inbox_has politie-mn "$SIG2"
api politie-mn GET /v1/inbox
is 200 "the inbox lists every message, oldest first" \
    "[m['msg_id'] for m in d['messages']] == ['$SIG', '$SIG2', '$ADRES', '$QUERY']"
api politie-mn GET "/v1/inbox?kind=query"
is 200 "kind=query lists the query only" "[m['msg_id'] for m in d['messages']] == ['$QUERY']"
api politie-mn GET "/v1/inbox?category=adrescheck"
is 200 "category=adrescheck lists the adrescheck messages" \
    "[m['msg_id'] for m in d['messages']] == ['$ADRES', '$QUERY']"
api politie-mn GET "/v1/inbox?category=drugs"
is 200 "category=drugs lists nothing" "d == {'messages': []}"
api politie-mn GET "/v1/inbox?since=2999-01-01T00:00:00Z"
is 200 "since a future time lists nothing" "d == {'messages': []}"
api politie-mn GET "/v1/inbox?since=2026-01-01T00:00:00Z&kind=signal"
is 200 "since a past ISO time (with kind) lists the signals" "len(d['messages']) == 3"
api politie-mn GET "/v1/inbox?since=yesterday"
is 400 "since that is no time" "$(problem invalid-request) and d['errors'][0]['field'] == '?since'"
api politie-mn GET "/v1/inbox?kind=memo"
is 400 "kind that is no kind" "d['errors'][0]['field'] == '?kind' and 'query' in d['errors'][0]['allowed']"
api politie-mn GET "/v1/inbox?colour=red"
is 400 "an unknown query parameter is named" "d['errors'][0]['field'] == '?colour'"
api politie-mn GET "/v1/inbox?wait=500&category=drugs"
is 200 "a wait with nothing matching answers an empty list when the time is up" "d == {'messages': []}"

# --- show, ack --------------------------------------------------------------------
api politie-mn GET "/v1/inbox/$SIG"
is 200 "show one message" "d['message']['msg_id'] == '$SIG' and d['message']['signal']['type'] == 'woonfraude'"
api politie-mn POST "/v1/inbox/$SIG/ack"
is 200 "ack" "d['msg_id'] == '$SIG' and d['handled_at'].endswith('Z')"
FIRST=$(jget 'L[0]["handled_at"]')
api politie-mn POST "/v1/inbox/$SIG/ack"
is 409 "a second ack is refused, naming the first" \
    "$(problem conflict) and d['handled_at'] == '$FIRST' and '$FIRST' in d['detail']"
api politie-mn GET "/v1/inbox?unhandled=true"
is 200 "unhandled=true leaves the acknowledged message out" \
    "[m['msg_id'] for m in d['messages']] == ['$SIG2', '$ADRES', '$QUERY']"
api politie-mn GET "/v1/inbox?unhandled=false"
is 200 "unhandled=false lists it" "len(d['messages']) == 4"

# --- reply and feedback ---------------------------------------------------------
# A received query's JSON names this node's reply (reply_msg_id) once there
# is one: not before, in show, the inbox list and the message's status;
# keten-node show and inbox print it as the API gives it.
api politie-mn GET "/v1/inbox/$QUERY"
is 200 "show: a query not replied to has no reply_msg_id" \
    "d['message']['msg_id'] == '$QUERY' and 'reply_msg_id' not in d['message']"
api politie-mn GET "/v1/inbox?kind=query"
is 200 "the inbox list: the query not replied to has no reply_msg_id" \
    "[m['msg_id'] for m in d['messages']] == ['$QUERY'] and 'reply_msg_id' not in d['messages'][0]"
api politie-mn GET "/v1/messages/$QUERY"
is 200 "the received query's status: no reply_msg_id" \
    "d['status']['direction'] == 'received' and 'reply_msg_id' not in d['status']"
run "$NODE" show --home n-politie-mn "$QUERY"
expect 0 "keten-node show of the query not replied to"
says_not "reply_msg_id" "keten-node show: no reply_msg_id line before the reply"
body reply.json "{\"signal\":$(cat adres.json)}"
api politie-mn POST "/v1/inbox/$QUERY/reply?wait=20000" reply.json
is 201 "a reply to the query" "d['state'] == 'accepted'"
REPLY=$(jget 'L[0]["msg_id"]')
api politie-mn GET "/v1/inbox/$QUERY"
is 200 "show: the query replied to names the reply (reply_msg_id)" \
    "d['message']['reply_msg_id'] == '$REPLY' and '$REPLY' != '$QUERY'"
api politie-mn GET "/v1/inbox?kind=query"
is 200 "the inbox list names the reply on the query" \
    "[m.get('reply_msg_id') for m in d['messages']] == ['$REPLY']"
api politie-mn GET "/v1/messages/$QUERY"
is 200 "the received query's status names the reply" "d['status']['reply_msg_id'] == '$REPLY'"
run "$NODE" show --home n-politie-mn "$QUERY"
expect 0 "keten-node show of the query replied to"
says "reply_msg_id $REPLY" "keten-node show: a reply_msg_id line with the reply's msg_id"
run "$NODE" show --home n-politie-mn --json "$QUERY"
check "keten-node show --json: reply_msg_id is the reply's msg_id" \
    json_is "$T/.out" "d['msg_id'] == '$QUERY' and d['reply_msg_id'] == '$REPLY'"
run "$NODE" inbox --home n-politie-mn --json --all --kind query
jl "[m.get('reply_msg_id') for m in L] == ['$REPLY']" \
    "keten-node inbox --json: reply_msg_id on the query's line"
api politie-mn POST "/v1/inbox/$QUERY/reply" reply.json
is 409 "a second reply to the query is refused" "$(problem conflict) and '$REPLY' in d['detail']"
api politie-mn POST "/v1/inbox/$ADRES/reply" reply.json
is 400 "a reply to a signal is refused" "$(problem invalid-request) and 'not a query' in d['detail']"
body fb.json "{\"kind\":\"feedback\",\"signal\":$(cat adres.json)}"
api politie-mn POST "/v1/inbox/$QUERY/reply" fb.json
is 400 "feedback to a query is refused" "'not a signal' in d['detail']"
# Feedback the policy refuses (woonfraude: only adrescheck may be answered)
# is a problem of the recipient, with its code; the same on adrescheck is
# valid.
body v-fbpol.json "{\"for\":\"reply\",\"msg_id\":\"$SIG2\",\"kind\":\"feedback\",\"signal\":$(cat sig.json)}"
api politie-mn POST /v1/messages/validate v-fbpol.json
is 200 "validate: feedback the sharing policy refuses is a policy problem of its recipient" \
    "not d['valid'] and [(p['path'], p['code']) for p in d['problems']] == [('to', 'policy')] and 'sharing policy' in d['problems'][0]['problem']"
body v-fbok.json "{\"for\":\"reply\",\"msg_id\":\"$ADRES\",\"kind\":\"feedback\",\"signal\":$(cat adres.json)}"
api politie-mn POST /v1/messages/validate v-fbok.json
is 200 "validate: feedback on adrescheck (the policy allows it) is valid" "d == {'valid': True, 'problems': [], 'more': 0}"
api politie-mn POST "/v1/inbox/$ADRES/reply" fb.json
is 202 "feedback to the signal" "d['state'] == 'pending'"
api politie-mn GET "/v1/inbox/$ADRES"
is 200 "feedback is not a reply: the signal has no reply_msg_id (more feedback may follow)" \
    "d['message']['msg_id'] == '$ADRES' and 'reply_msg_id' not in d['message']"
check "the reply reaches the municipality" wait_until 20 inbox_has gemeente-diemen "$REPLY"
api gemeente-diemen GET "/v1/inbox?kind=reply"
is 200 "the reply is listed with in_reply_to" \
    "d['messages'][0]['msg_id'] == '$REPLY' and d['messages'][0]['in_reply_to'] == '$QUERY'"

# --- sent, status, checkpoints -----------------------------------------------------
api gemeente-diemen GET /v1/sent
is 200 "sent lists every message sent, oldest first" \
    "[m['msg_id'] for m in d['messages']] == ['$SIG', '$SIG2', '$ADRES', '$QUERY'] and d['more'] == 0"
api gemeente-diemen GET "/v1/sent?since=2999-01-01T00:00:00Z"
is 200 "sent since a future time lists nothing" "d == {'messages': [], 'more': 0}"
check "the query is receipted" wait_until 20 msg_status_is gemeente-diemen "$QUERY" \
    'd["recipients"][0]["state"] == "receipted"'
api gemeente-diemen GET "/v1/messages/$QUERY"
is 200 "a sent message's status names the recipient and the reply" \
    "d['status']['msg_id'] == '$QUERY' and d['status']['recipients'][0]['id'] == 'politie-mn' and '$REPLY' in json.dumps(d)"
api gemeente-diemen GET /v1/checkpoint
is 200 "the checkpoint" "'tree_size' in d['checkpoint']"
api gemeente-diemen GET /v1/checkpoints
is 200 "the checkpoints" "isinstance(d['checkpoints'], list)"

# --- error classes ----------------------------------------------------------------
api politie-mn GET /v1/inbox/xyz
is 400 "a msg_id that is not 32 hex characters" "$(problem invalid-request) and d['errors'][0]['field'] == 'msg_id'"
api politie-mn GET "/v1/inbox/${SIG^^}"
is 400 "a msg_id in upper case" "$(problem invalid-request)"
api politie-mn GET /v1/inbox/00000000000000000000000000000000
is 404 "a msg_id of no message" "$(problem not-found)"
api politie-mn GET /v1/nothing
is 404 "an unknown route" "$(problem not-found)"
check "a problem says application/problem+json" header Content-Type 'application/problem\+json'
api politie-mn DELETE /v1/inbox
is 405 "a wrong method" "$(problem method-not-allowed)"
check "405 names the allowed methods" header Allow GET
api politie-mn GET /v1/messages/validate
is 405 "GET on a POST-only path is 405 (not a msg_id)" "$(problem method-not-allowed)"
check "its Allow is POST" header Allow POST
body unknown.json "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"colour\":\"red\",\"signal\":$(cat sig.json)}"
api gemeente-diemen POST /v1/messages unknown.json
is 400 "an unknown field is named in errors[]" \
    "$(problem invalid-request) and d['errors'] == [{'field': '/colour', 'problem': 'unknown field', 'allowed': 'kind, to, signal'}]"
body str.json "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":\"$(sed 's/"/\\"/g' sig.json)\"}"
api gemeente-diemen POST /v1/messages str.json
is 400 "a signal given as a string (not an object)" "d['errors'][0]['field'] == '/signal'"
body malformed.json '{"kind":"signal",'
api gemeente-diemen POST /v1/messages malformed.json
is 400 "malformed JSON" "$(problem malformed-json)"
body dup.json "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":{\"type\":\"woonfraude\",\"type\":\"drugs\",\"purpose\":\"handhaving\"}}"
api gemeente-diemen POST /v1/messages dup.json
is 400 "a duplicate key inside the signal" "$(problem malformed-json) and 'duplicate' in d['detail']"
api gemeente-diemen POST /v1/messages send.json text/plain
is 415 "a body that is not JSON" "$(problem unsupported-media-type)"
"$PY" -c 'import sys; sys.stdout.write("{\"kind\":\"signal\",\"pad\":\"" + "x" * (3 << 20) + "\"}")' >big.json
api gemeente-diemen POST /v1/messages big.json
is 413 "a body over 2 MiB" "$(problem too-large)"
api gemeente-diemen GET /v1/sent
is 200 "sent still lists the same four messages" "len(d['messages']) == 4"

# --- the TCP listener ---------------------------------------------------------------
tcp GET /v1/node
is 401 "TCP without credentials is 401" "$(problem unauthorized)"
check "401 carries WWW-Authenticate: Bearer" header WWW-Authenticate Bearer
check "and the security headers" header Content-Security-Policy "default-src 'self'"
check "and X-Content-Type-Options" header X-Content-Type-Options nosniff
tcp GET /v1/inbox
is 401 "the inbox over TCP without credentials is 401" "$(problem unauthorized)"
tcp GET /v1/ping
is 200 "/v1/ping over TCP needs no credentials" "d == {'node': 'gemeente-diemen'}"
check "with the security headers" header Referrer-Policy no-referrer
tcp GET /
is 404 "GET / without the web page's files" \
    "$(problem not-found) and 'not installed on this node' in d['detail'] and '$T' not in d['detail']"
# A named pipe where a web file belongs (nobody writes to it): opening it for
# reading used to wait for a writer, and the node's one thread with it.
mkdir -p "$T/web-missing/static" && mkfifo "$T/web-missing/index.html" "$T/web-missing/static/app.js"
tcp GET /
is 404 "GET / when index.html is a named pipe: not served, answered at once" "$(problem not-found)"
tcp GET /static/app.js
is 404 "a named pipe under static/: not served either" "$(problem not-found)"
tcp GET /v1/ping
is 200 "the node still answers after both" "d == {'node': 'gemeente-diemen'}"
rm -rf "$T/web-missing"

for addr in 0.0.0.0:7299 192.0.2.1:7299 "[::]:7299"; do
    run "$NODE" run --home n-politie-mn --anchor admin/network.pub --directory directory.signed \
        --broker "$BROKER_EP" --api-listen "$addr"
    expect 4 "api-listen $addr is refused at start"
    says "is not a loopback address" "api-listen $addr: it says why"
    says "TLS reverse proxy" "api-listen $addr: it says what to do"
done

# A request still waiting when its node stops: the node stops cleanly all
# the same (checked by finish), and the client's connection is closed.
curl -sS --max-time 60 --trace-ascii "$T/late.trace" --unix-socket n-politie-mn/api.sock \
    -o "$T/late.out" "http://node/v1/inbox?wait=60000&category=drugs" >/dev/null 2>&1 &
LATE=$! # never answered, so not traced
check "a last inbox wait is sent to politie-mn" wait_until 10 grep -q "^=> Send header" "$T/late.trace"
stop_one gemeente-diemen
stop_one politie-mn
wait "$LATE"
LATE_RC=$?
check "the waiting client's connection ended with the node (curl exit $LATE_RC)" \
    test "$LATE_RC" -ne 0 -a "$LATE_RC" -ne 28
check "the API socket is removed on exit" test ! -e n-gemeente-diemen/api.sock
# The test's own requests are curl's; the keten-node commands it runs
# (status, inbox: keten-node/VERSION) are traced and checked too.
check "gemeente-diemen's trace has its ${REQS[gemeente-diemen]} curl requests" \
    test "$(grep -c '"user_agent":"curl/' "$T/trace-g.jsonl")" -eq "${REQS[gemeente-diemen]}"
check "politie-mn's trace has its ${REQS[politie-mn]} curl requests" \
    test "$(grep -c '"user_agent":"curl/' "$T/trace-p.jsonl")" -eq "${REQS[politie-mn]}"
check "the keten-node commands' requests are traced too" \
    grep -q '"user_agent":"keten-node/' "$T/trace-g.jsonl"
openapi_agrees() {
    "$PY" "$SRC/tests/tools/openapi_check.py" "$SRC/docs/api/openapi.yaml" \
        "$T/trace-g.jsonl" "$T/trace-p.jsonl" >"$T/oa.out" 2>&1
}
check "every traced answer agrees with docs/api/openapi.yaml" openapi_agrees ||
    sed 's/^/# /' "$T/oa.out"
ALL=$(($(wc -l <"$T/trace-g.jsonl") + $(wc -l <"$T/trace-p.jsonl")))
check "the check read all $ALL answers" grep -qx "$ALL answers checked, 0 violations" "$T/oa.out"
finish
