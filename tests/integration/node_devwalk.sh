#!/usr/bin/env bash
# What an application developer's walk through the node's documents found,
# on a real broker and node (HOME/api.sock and a loopback TCP listener):
# validate and send --dry-run list an unknown recipient and a policy
# refusal together; an absent msg_id in a reply's check is "missing"; the
# node's own policy refusal carries its rule as a field; send --dry-run of a
# signal with a key given twice names the key; a revoked token, and a web
# session its revocation ended, say the token was revoked; a time with a
# sign inside a field is refused; a 413 names the caller whose token was
# checked; HEAD answers where GET serves the web page; token revoke of a
# revoked token points to token list. Each with its honest twin; every
# traced answer is checked against docs/api/openapi.yaml at the end.
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/node_lib.sh"

need_tool curl
setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen"
signal adres.json adrescheck "Klopt de inschrijving op dit adres?"
signal drugs.json drugs "Hennepgeur bij de achterdeur"

PG=$(free_port)
start_broker
KETEN_NODE_TEST_API_TRACE="$T/trace-g.jsonl" start_node gemeente-diemen \
    --api-listen "127.0.0.1:$PG" --web-root "$SRC/web"
check "gemeente-diemen connects to the broker" wait_until 20 connected gemeente-diemen
check "gemeente-diemen serves HTTP on 127.0.0.1:$PG" wait_until 10 port_open "$PG"

REQS=0
# unix METHOD PATH [BODY]: on n-gemeente-diemen/api.sock. CODE, $T/.out, $T/.hdr.
unix() {
    local args=(-sS --max-time 30 --unix-socket n-gemeente-diemen/api.sock -X "$1" -D "$T/.hdr"
        -o "$T/.out" -w '%{http_code}')
    [ -n "${3:-}" ] && args+=(-H "Content-Type: application/json" --data-binary "$3")
    REQS=$((REQS + 1))
    CODE=$(curl "${args[@]}" "http://node$2" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}
# tcp METHOD PATH [BODY] [CURL ARGS...]: on 127.0.0.1:$PG.
tcp() {
    local method=$1 path=$2 body=${3:-}
    shift 3 2>/dev/null || shift $#
    local args=(-sS --max-time 30 -X "$method" -D "$T/.hdr" -o "$T/.out" -w '%{http_code}' "$@")
    [ -n "$body" ] && args+=(-H "Content-Type: application/json" --data-binary "$body")
    REQS=$((REQS + 1))
    CODE=$(curl "${args[@]}" "http://127.0.0.1:$PG$path" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}
is() {
    local code=$1 what=$2 expr=${3:-True}
    check "$what (HTTP $code)" test "$CODE" = "$code" || { sed 's/^/# /' "$T/.all"; echo; }
    check "$what: the answer holds" json_is "$T/.out" "$expr" || { sed 's/^/# /' "$T/.out"; echo; }
}
header() { grep -qiE "^$1: $2" "$T/.hdr"; }
problem() {
    echo "d['type'] == 'urn:keten:problem:$1' and d['status'] == $CODE and d['detail'] and d['exit'] in (1, 2, 3)"
}
jv() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/.out" "$1"; }
# codes: the (path, code) pairs of the last validate answer, sorted
codes() { echo "sorted((p['path'], p['code']) for p in d['problems'])"; }

# --- 1. every problem of the recipients at once ----------------------------------
# adrescheck signals from a municipality to housing (woonstad) are denied.
ADRES=$(cat adres.json)
unix POST /v1/messages/validate "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"nobody\",\"woonstad\"],\"signal\":$ADRES}"
is 200 "validate: an unknown recipient and one the policy refuses are both named, each with its code" \
    "not d['valid'] and $(codes) == [('to', 'policy'), ('to', 'unknown-recipient')]"
check "the unknown one is named" json_is "$T/.out" \
    "any(p['code'] == 'unknown-recipient' and 'nobody' in p['problem'] for p in d['problems'])"
check "the refused one is named with the policy's rule" json_is "$T/.out" \
    "any(p['code'] == 'policy' and 'woonstad' in p['problem'] and 'rule' in p['problem'] for p in d['problems'])"
unix POST /v1/messages/validate "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"woonstad\",\"nobody\",\"role:nothing\"],\"signal\":$ADRES}"
is 200 "validate: in any order, with a role nobody has, each party's problem" \
    "$(codes) == [('to', 'policy'), ('to', 'unknown-recipient'), ('to', 'unknown-recipient')]"
# twins: an unknown recipient beside an allowed one is the one problem; the
# allowed one alone is valid
unix POST /v1/messages/validate "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"nobody\",\"politie-mn\"],\"signal\":$ADRES}"
is 200 "validate: an unknown recipient beside one the policy allows is the only problem" \
    "$(codes) == [('to', 'unknown-recipient')]"
unix POST /v1/messages/validate "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$ADRES}"
is 200 "validate: the allowed recipient alone is valid" "d == {'valid': True, 'problems': [], 'more': 0}"
unix POST /v1/messages/validate "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"gemeente-diemen\"],\"signal\":$ADRES}"
is 200 "validate: only this node itself is still one problem of the list" \
    "$(codes) == [('to', 'unknown-recipient')] and 'other than this one' in d['problems'][0]['problem']"
run "$NODE" send --home n-gemeente-diemen --to nobody,woonstad --signal adres.json --dry-run --json
expect 1 "send --dry-run --to nobody,woonstad fails"
check "send --dry-run names both recipients' problems" json_is "$T/.out" \
    "d['checked'] == 'node' and $(codes) == [('to', 'policy'), ('to', 'unknown-recipient')]"
run "$NODE" send --home n-gemeente-diemen --to nobody,politie-mn --signal adres.json --dry-run
expect 1 "send --dry-run --to nobody,politie-mn fails"
says "nobody" "it names nobody"
says_not "refuses" "and no policy refusal"

# --- 2. an absent field is "missing" ---------------------------------------------
unix POST /v1/messages/validate "{\"for\":\"reply\",\"signal\":$ADRES}"
is 200 "validate of a reply without msg_id: msg_id is missing" "$(codes) == [('msg_id', 'missing')]"
unix POST /v1/messages/validate "{\"for\":\"reply\",\"msg_id\":\"xyz\",\"signal\":$ADRES}"
is 200 "twin: a msg_id that is no msg_id is invalid" "$(codes) == [('msg_id', 'invalid')]"
unix POST /v1/messages/validate "{\"for\":\"reply\",\"msg_id\":7,\"signal\":$ADRES}"
is 200 "twin: a msg_id that is no string is malformed" "$(codes) == [('msg_id', 'malformed')]"
unix POST /v1/messages/validate "{\"for\":\"send\",\"to\":[\"politie-mn\"],\"signal\":$ADRES}"
is 200 "validate of a send without kind: kind is missing" "$(codes) == [('kind', 'missing')]"

# --- 4. the node's own policy refusal names its rule as a field ----------------------
# The deny rule's number, as keten-keys policy list shows it.
run "$KEYS" policy --dir admin list
RULE=$(sed -nE 's/^rule ([0-9]+): deny .*category adrescheck.*/\1/p' "$T/.out")
check "keten-keys policy list shows the deny rule's number" test -n "$RULE" ||
    sed 's/^/# /' "$T/.out"
unix POST /v1/messages "{\"kind\":\"signal\",\"to\":[\"woonstad\"],\"signal\":$ADRES}"
is 422 "a send the node's policy check refuses" \
    "$(problem policy) and d['rule'] == $RULE and 'deny rule $RULE' in d['detail']"
DRUGS=$(cat drugs.json)
unix POST /v1/messages "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$DRUGS}"
is 422 "a send no rule allows: rule 0 (the default deny)" \
    "$(problem policy) and d['rule'] == 0 and 'rule 0' in d['detail']"
unix POST /v1/messages "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$ADRES}"
is 202 "twin: the same signal to a recipient the policy allows is taken" \
    "d['state'] == 'pending' and 'rule' not in d"

# --- 5. send --dry-run of a signal with a key given twice --------------------------
"$PY" -c 'import sys; t = open("adres.json").read(); print(t.replace("{", "{\"type\": \"drugs\", ", 1))' >twice.json
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal twice.json --dry-run
expect 1 "send --dry-run of a signal with \"type\" twice fails"
says 'gives the key "type" twice' "it says the key type is given twice"
says_not "not a JSON object" "and not that the signal is no JSON object"
echo '[1]' >array.json
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal array.json --dry-run
expect 1 "twin: send --dry-run of a JSON array fails"
says "the signal is not a JSON object" "it says the signal is not a JSON object"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal adres.json --dry-run
expect 0 "twin: the signal with each key once is valid"
stdout_says "valid" "it prints valid"

# --- 6. a revoked token, and the web session its revocation ended ---------------------
unix POST /v1/tokens '{"name":"dash","scopes":["read","send"]}'
is 201 "token dash is made" "d['name'] == 'dash'"
TOK=$(jv token)
TID=$(jv id)
unix POST /v1/tokens '{"name":"other","scopes":["read"]}'
is 201 "token other is made" "d['name'] == 'other'"
TOK2=$(jv token)
tcp POST /v1/session "{\"token\":\"$TOK\"}"
is 201 "a web session is opened with dash" "d['actor'] == 'token:dash'"
COOKIE=$(grep -i '^Set-Cookie: keten_session=' "$T/.hdr" | sed -E 's/^[^=]*=([^;]*);.*/\1/' | tr -d '\r')
tcp POST /v1/session "{\"token\":\"$TOK2\"}"
is 201 "and one with other" "d['actor'] == 'token:other'"
COOKIE2=$(grep -i '^Set-Cookie: keten_session=' "$T/.hdr" | sed -E 's/^[^=]*=([^;]*);.*/\1/' | tr -d '\r')
tcp GET /v1/inbox '' -H "Authorization: Bearer $TOK"
is 200 "the token works before it is revoked" "d['messages'] == []"
tcp GET /v1/inbox '' -H "Cookie: keten_session=$COOKIE"
is 200 "its session works before it is revoked" "d['messages'] == []"
unix DELETE "/v1/tokens/$TID"
check "token dash is revoked (HTTP 204)" test "$CODE" = 204
tcp GET /v1/inbox '' -H "Authorization: Bearer $TOK"
is 401 "the revoked token" "$(problem unauthorized) and d['detail'].startswith('token revoked: ')"
check "its 401 does not call the token a certificate" lacks grep -q certificate "$T/.out"
tcp GET /v1/inbox '' -H "Cookie: keten_session=$COOKIE"
is 401 "the session the revocation ended says the token was revoked" \
    "$(problem unauthorized) and 'token (token:dash) was revoked' in d['detail']"
check "and not that it was signed out or unused" lacks grep -q "signed out" "$T/.out"
tcp GET /v1/session '' -H "Cookie: keten_session=$COOKIE"
is 401 "GET /v1/session says the same" "'was revoked' in d['detail']"
# twins: a session signed out still says so; the other token still works
tcp GET /v1/session '' -H "Cookie: keten_session=$COOKIE2"
is 200 "the other session is open" "d['actor'] == 'token:other'"
CSRF=$(jv csrf_token)
tcp DELETE /v1/session '' -H "Cookie: keten_session=$COOKIE2" -H "X-CSRF-Token: $CSRF"
check "the other session signs out (HTTP 204)" test "$CODE" = 204
tcp GET /v1/inbox '' -H "Cookie: keten_session=$COOKIE2"
is 401 "twin: the session signed out says it ended (signed out, or unused too long)" \
    "'signed out, or unused too long' in d['detail'] and 'revoked' not in d['detail']"
tcp GET /v1/inbox '' -H "Authorization: Bearer $TOK2"
is 200 "twin: the token not revoked still works" "d['messages'] == []"

# --- 10. token revoke of a revoked token, on the command line ------------------------
run "$NODE" token revoke --home n-gemeente-diemen "$TID"
expect 1 "token revoke of the revoked token fails"
says "was revoked before" "it says the token was revoked before"
says "keten-node token list" "it points to keten-node token list"
says_not "GET /v1/tokens" "and not to the HTTP route"
unix DELETE "/v1/tokens/$TID"
is 409 "on the API the same refusal points to GET /v1/tokens" \
    "$(problem conflict) and 'GET /v1/tokens' in d['detail'] and 'revoked before' in d['detail']"

# --- 7. times: exactly RFC 3339's digits ---------------------------------------------
tcp GET '/v1/inbox?since=2026-%2B1-19T10:30:00Z' '' -H "Authorization: Bearer $TOK2"
is 400 "since with a sign inside the month" "$(problem invalid-request) and d['errors'][0]['field'] == '?since'"
tcp GET '/v1/inbox?since=2026-01-19T10:30:00Z' '' -H "Authorization: Bearer $TOK2"
is 200 "twin: since with the month's digits" "d['messages'] == []"
run "$NODE" inbox --home n-gemeente-diemen --since '2026-+1-19T10:30:00Z'
expect 2 "inbox --since with a sign inside the month is a usage error"
says "2026-+1-19T10:30:00Z" "it names the time"
run "$NODE" inbox --home n-gemeente-diemen --since '2026-01-19T10:30:00Z'
expect 0 "twin: inbox --since with the month's digits"
"$PY" -c 'import json; s = json.load(open("adres.json")); s["observed_at"] = "2026-11-+9T10:30:00Z"; print(json.dumps(s))' >signed-day.json
unix POST /v1/messages/validate "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat signed-day.json)}"
is 200 "validate: observed_at with a sign inside the day is invalid" "$(codes) == [('observed_at', 'invalid')]"

# --- 8. a 413 names the caller whose token was checked ------------------------------
head -c $((3 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >big.json
big() {
    REQS=$((REQS + 1))
    CODE=$(curl -sS --max-time 30 -X POST -o "$T/.out" -w '%{http_code}' "$@" \
        -H "Content-Type: application/json" --data-binary @big.json \
        "http://127.0.0.1:$PG/v1/messages/validate" 2>"$T/.err")
}
big -H "Authorization: Bearer $TOK2"
is 413 "a body over 2 MiB with a valid token" "$(problem too-large)"
last413() { grep '"status":413' n-gemeente-diemen/access.log | tail -n 1 >"$T/.line"; json_is "$T/.line" "$1"; }
check "its access log line names the token's actor" last413 \
    "d['actor'] == 'token:other' and d['result'] == 'error' and d['action'] == 'validate'" ||
    sed 's/^/# /' "$T/.line"
big -H "Authorization: Bearer $TOK"
is 413 "a body over 2 MiB with the revoked token" "$(problem too-large)"
check "twin: a refused token leaves it anonymous" last413 "d['actor'] == 'anonymous'"
big
is 413 "a body over 2 MiB without credentials" "$(problem too-large)"
check "twin: no credentials, anonymous" last413 "d['actor'] == 'anonymous'"
check "three 413 lines in the access log" test "$(grep -c '"status":413' n-gemeente-diemen/access.log)" -eq 3

# --- 9. HEAD where GET serves the web page ----------------------------------------
head_of() {
    REQS=$((REQS + 1))
    CODE=$(curl -sS --max-time 30 -I -D "$T/.hdr" -o "$T/.out" -w '%{http_code}' \
        "http://127.0.0.1:$PG$1" 2>"$T/.err")
}
head_of /
check "HEAD / (HTTP 200)" test "$CODE" = 200
check "HEAD / has the page's type" header Content-Type 'text/html'
check "and its length, the page's" header Content-Length "$(stat -c %s "$SRC/web/index.html")"
check "and the Content-Security-Policy" header Content-Security-Policy "default-src 'self'"
# no body: what the node sends on the socket ends with the headers
raw_head() {
    "$PY" - "$PG" >"$T/.raw" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
head, sep, rest = data.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode(), len(rest) if sep else -1)
EOF
    grep -qx 'HTTP/1.1 200 OK 0' "$T/.raw"
}
check "and no body: HTTP/1.1 200 OK, and 0 bytes after the headers" raw_head ||
    sed 's/^/# /' "$T/.raw"
head_of /static/app.js
check "HEAD /static/app.js (HTTP 200)" test "$CODE" = 200
check "HEAD /static/app.js is text/javascript" header Content-Type 'text/javascript'
tcp GET / ''
check "twin: GET / is the page (HTTP 200)" test "$CODE" = 200
check "twin: with its body" cmp -s "$T/.out" "$SRC/web/index.html"
tcp POST / '{}'
check "POST / is still refused (HTTP 405)" test "$CODE" = 405
check "405 names GET and HEAD" header Allow 'GET, HEAD'

stop_one gemeente-diemen
check "the trace has the $REQS curl requests" \
    test "$(grep -c '"user_agent":"curl/' "$T/trace-g.jsonl")" -eq "$REQS"
openapi_agrees() {
    "$PY" "$SRC/tests/tools/openapi_check.py" "$SRC/docs/api/openapi.yaml" \
        "$T/trace-g.jsonl" >"$T/oa.out" 2>&1
}
check "every traced answer agrees with docs/api/openapi.yaml" openapi_agrees ||
    sed 's/^/# /' "$T/oa.out"
finish
