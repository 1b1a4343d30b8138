#!/usr/bin/env bash
# Who may call the node's HTTP API, and what it then serves on api-listen
# (docs/integration.md): tokens made on HOME/api.sock (shown once, listed
# without their secret, refused over TCP), Bearer tokens with each scope
# (403 naming the one missing), a wrong, revoked or expired token 401, the
# proxy's header believed from proxy-address only, web sessions (cookie
# flags, CSRF and Origin refusals, logout), the event stream (a real
# exchange in order with ids, resumed with Last-Event-ID, a reset, live
# delivery, a revoked token's stream ended), the access log (its fields,
# actors and refusals, never content) and the web page's files (types,
# CSP, no way out of the web root; a web root without static/ warned of at
# start, twin: a whole one is not). Every answer is traced and checked
# against docs/api/openapi.yaml at the end.
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/node_lib.sh"

need_tool curl
setup_network || done_testing
SUMMARY="Adres staat op naam van 9 personen"
signal sig.json woonfraude "$SUMMARY"

PP=$(free_port) # politie-mn: the node under test; its proxy is 127.0.0.1
PG=$(free_port) # gemeente-diemen: the sender; its proxy is 127.0.0.2

# gemeente-diemen's web root holds index.html but not static/.
mkdir web-half && cp "$SRC/web/index.html" web-half/

start_broker
KETEN_NODE_TEST_API_TRACE="$T/trace-p.jsonl" start_node politie-mn --api-listen "127.0.0.1:$PP" \
    --web-root "$SRC/web" --proxy-address 127.0.0.1 --proxy-user-header X-Remote-User \
    --proxy-scopes read,send
KETEN_NODE_TEST_API_TRACE="$T/trace-g.jsonl" start_node gemeente-diemen \
    --api-listen "127.0.0.1:$PG" --proxy-address 127.0.0.2 --proxy-user-header X-Remote-User \
    --web-root "$T/web-half"
for id in gemeente-diemen politie-mn; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done
# At start (before "keten-node running"), the web root was looked at.
check "gemeente-diemen warns that static/ is missing from its web root" grep -qF \
    "msg=\"the web page's files are missing: GET / answers 404; the API is served\" web_root=$T/web-half missing=\"static/\" folder=exists" \
    "$T/node-gemeente-diemen.log"
check "politie-mn, whose web root holds the page, started (the marker)" grep -q \
    'msg="keten-node running"' "$T/node-politie-mn.log"
check "and gave no such warning" lacks grep -q "the web page's files are missing" \
    "$T/node-politie-mn.log"
check "politie-mn serves HTTP on 127.0.0.1:$PP" wait_until 10 port_open "$PP"
check "gemeente-diemen serves HTTP on 127.0.0.1:$PG" wait_until 10 port_open "$PG"

declare -A REQS=()
count() { REQS[$1]=$((${REQS[$1]:-0} + 1)); }

# unix ID METHOD PATH [BODY]: on n-ID/api.sock. CODE, $T/.out, $T/.hdr.
unix() {
    local id=$1 method=$2 path=$3 body=${4:-}
    local args=(-sS --max-time 30 --unix-socket "n-$id/api.sock" -X "$method" -D "$T/.hdr"
        -o "$T/.out" -w '%{http_code}')
    [ -n "$body" ] && args+=(-H "Content-Type: application/json" --data-binary "$body")
    count "$id"
    CODE=$(curl "${args[@]}" "http://node$path" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}

# tcp PORT METHOD PATH [BODY] [CURL ARGS...]: on 127.0.0.1:PORT.
tcp() {
    local port=$1 method=$2 path=$3 body=${4:-}
    shift 4 2>/dev/null || shift $#
    local args=(-sS --path-as-is --max-time 30 -X "$method" -D "$T/.hdr" -o "$T/.out"
        -w '%{http_code}' "$@")
    [ -n "$body" ] && args+=(-H "Content-Type: application/json; charset=utf-8" --data-binary "$body")
    if [ "$port" = "$PP" ]; then count politie-mn; else count gemeente-diemen; fi
    CODE=$(curl "${args[@]}" "http://127.0.0.1:$port$path" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}

is() {
    local code=$1 what=$2 expr=${3:-True}
    check "$what (HTTP $code)" test "$CODE" = "$code" || sed 's/^/# /' "$T/.all"
    check "$what: the answer holds" json_is "$T/.out" "$expr" || sed 's/^/# /' "$T/.out"
}
header() { grep -qiE "^$1: $2" "$T/.hdr"; }
problem() {
    echo "d['type'] == 'urn:keten:problem:$1' and d['status'] == $CODE and d['detail'] and d['exit'] in (1, 2, 3)"
}
jv() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/.out" "$1"; }

# --- tokens on the Unix socket ----------------------------------------------------
declare -A TOK=() ID=()
for spec in reader:read sender:send acker:ack all:read,send,ack streamer:read gone:read; do
    name=${spec%%:*}
    scopes=$("$PY" -c 'import json, sys; print(json.dumps(sys.argv[1].split(",")))' "${spec#*:}")
    unix politie-mn POST /v1/tokens "{\"name\":\"$name\",\"scopes\":$scopes}"
    is 201 "token $name is made on the Unix socket" \
        "d['name'] == '$name' and len(d['id']) == 16 and d['expires_at'] is None"
    TOK[$name]=$(jv token)
    check "token $name has the token's shape" grep -qxE 'ktn_[A-Za-z0-9_-]{43}' <<<"${TOK[$name]}"
    ID[$name]=$(jv id)
done
unix politie-mn GET /v1/tokens
is 200 "the tokens are listed" "len(d['tokens']) == 6 and all('token' not in t for t in d['tokens'])"
check "the list holds no token's secret" lacks grep -qF -- "${TOK[reader]:4}" "$T/.out"
unix politie-mn POST /v1/tokens '{"name":"reader","scopes":["read"]}'
is 409 "a second live token named reader" "$(problem conflict)"
unix politie-mn POST /v1/tokens '{"name":"x","scopes":["read"],"colour":"red"}'
is 400 "an unknown field in a token request" "d['errors'][0]['field'] == '/colour'"
unix politie-mn POST /v1/tokens '{"name":"x","scopes":["write"]}'
is 400 "a scope that does not exist" "d['errors'][0]['field'].startswith('/scopes')"
tcp "$PP" POST /v1/tokens '{"name":"tcp","scopes":["read"]}' -H "Authorization: Bearer ${TOK[all]}"
is 403 "POST /v1/tokens over TCP, even with every scope" "$(problem forbidden) and 'Unix socket' in d['detail']"
tcp "$PP" GET /v1/tokens '' -H "Authorization: Bearer ${TOK[all]}"
is 403 "GET /v1/tokens over TCP" "$(problem forbidden)"

# --- an exchange: three signals from gemeente-diemen to politie-mn --------------------
# A live event stream of politie-mn, open before anything is sent.
count politie-mn
curl -sS -N --max-time 60 -H "Authorization: Bearer ${TOK[reader]}" \
    "http://127.0.0.1:$PP/v1/events" >"$T/live.out" 2>"$T/live.err" &
LIVE=$!
live_logged() { grep -q '"actor":"token:reader".*"action":"events"' n-politie-mn/access.log; }
check "the live stream is open (its access log line)" wait_until 10 live_logged
MSGS=()
for i in 1 2 3; do
    unix gemeente-diemen POST "/v1/messages?wait=20000" "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat sig.json)}"
    is 201 "signal $i is accepted" "d['state'] == 'accepted'"
    MSGS+=("$(jv msg_id)")
    check "signal $i reaches politie-mn" wait_until 20 inbox_has politie-mn "${MSGS[$((i - 1))]}"
done
check "the live stream got the first new message" \
    wait_until 10 grep -qF "\"msg_id\":\"${MSGS[0]}\"" "$T/live.out"
check "and the third, while it stayed connected" \
    wait_until 10 grep -qF "\"msg_id\":\"${MSGS[2]}\"" "$T/live.out"
check "the live stream's events carry ids" grep -qE '^id: [0-9]+$' "$T/live.out"
check "the live stream has no content (no summary)" lacks grep -qF "$SUMMARY" "$T/live.out"

# --- Bearer tokens and scopes ------------------------------------------------------------
B() { echo "Authorization: Bearer ${TOK[$1]}"; }
tcp "$PP" GET /v1/inbox '' -H "$(B reader)"
is 200 "the read token lists the inbox over TCP" "len(d['messages']) == 3"
check "and the answer says Cache-Control: no-store" header Cache-Control no-store
tcp "$PP" GET /v1/inbox '' -H "$(B sender)"
is 403 "the send token may not list the inbox" "$(problem forbidden) and 'scope read' in d['detail']"
tcp "$PP" POST "/v1/inbox/${MSGS[0]}/ack" '' -H "$(B reader)"
is 403 "the read token may not acknowledge" "$(problem forbidden) and 'scope ack' in d['detail']"
tcp "$PP" POST /v1/messages/validate "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"gemeente-diemen\"],\"signal\":$(cat sig.json)}" -H "$(B acker)"
is 403 "the ack token may not validate a send" "$(problem forbidden) and 'scope send' in d['detail']"
tcp "$PP" POST "/v1/inbox/${MSGS[0]}/ack" '' -H "$(B acker)"
is 200 "the ack token acknowledges message 1" "d['msg_id'] == '${MSGS[0]}' and d['handled_at']"
tcp "$PP" GET /v1/inbox '' -H "Authorization: Bearer ktn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
is 401 "a token the node never made" "$(problem unauthorized)"
check "401 carries WWW-Authenticate: Bearer" header WWW-Authenticate Bearer
tcp "$PP" GET /v1/inbox '' -H "Authorization: Basic dXNlcjpwdw=="
is 401 "an Authorization that is not Bearer" "$(problem unauthorized)"
tcp "$PP" GET /v1/inbox '' -H "$(B gone)"
is 200 "the token gone works before it is revoked" "len(d['messages']) == 3"
unix politie-mn DELETE "/v1/tokens/${ID[gone]}"
check "DELETE /v1/tokens/ID revokes it (HTTP 204)" test "$CODE" = 204
unix politie-mn DELETE "/v1/tokens/${ID[gone]}"
is 409 "revoking it again" "$(problem conflict)"
unix politie-mn DELETE /v1/tokens/0123456789abcdef
is 404 "revoking a token that does not exist" "$(problem not-found)"
unix politie-mn DELETE /v1/tokens/XYZ
is 400 "a token id of the wrong shape" "d['errors'][0]['field'] == 'id'"
tcp "$PP" GET /v1/inbox '' -H "$(B gone)"
is 401 "the revoked token" "$(problem unauthorized) and 'revoked' in d['detail']"
EXP=$(($(date +%s%3N) + 3000))
unix politie-mn POST /v1/tokens "{\"name\":\"brief\",\"scopes\":[\"read\"],\"expires_at\":$EXP}"
is 201 "a token that expires in 3 s" "d['expires_at'] is not None"
TOK[brief]=$(jv token)
tcp "$PP" GET /v1/inbox '' -H "$(B brief)"
is 200 "it works before it expires" "len(d['messages']) == 3"
expired() {
    tcp "$PP" GET /v1/inbox '' -H "$(B brief)"
    test "$CODE" = 401
}
check "after its expiry it is refused" wait_until 10 expired
is 401 "the expired token" "$(problem unauthorized) and 'expired' in d['detail']"

# --- the proxy's header ----------------------------------------------------------------
P="X-Remote-User: alice"
tcp "$PP" GET /v1/inbox '' -H "$P"
is 200 "the header from proxy-address (127.0.0.1) names the person" "len(d['messages']) == 3"
tcp "$PG" GET /v1/inbox '' -H "$P"
is 403 "the same header to a node whose proxy is 127.0.0.2" "$(problem forbidden)"
tcp "$PG" GET /v1/inbox ''
is 401 "that node without the header: no credentials" "$(problem unauthorized)"
tcp "$PP" GET /v1/inbox '' -H "X-Remote-User: al ice"
is 403 "a person's name with a space" "$(problem forbidden)"
tcp "$PP" POST "/v1/inbox/${MSGS[1]}/ack" '' -H "$P"
is 403 "a person changes nothing without a session (no CSRF token)" "$(problem forbidden) and 'session' in d['detail']"
tcp "$PP" POST /v1/session '{}' -H "$P"
is 201 "POST /v1/session {} behind the proxy opens alice's session" "d['actor'] == 'person:alice' and sorted(d['scopes']) == ['read', 'send']"
check "the cookie is Secure behind a proxy" header Set-Cookie 'keten_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/;.*Secure'
tcp "$PP" POST /v1/session '{}'
is 401 "POST /v1/session {} without the proxy or a token" "$(problem unauthorized)"

# --- web sessions ---------------------------------------------------------------------
tcp "$PP" POST /v1/session "{\"token\":\"${TOK[all]}\"}"
is 201 "a session opened with the token all" "d['actor'] == 'token:all' and len(d['csrf_token']) == 43"
CSRF=$(jv csrf_token)
check "the cookie is HttpOnly, SameSite=Strict, Path=/" \
    header Set-Cookie 'keten_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/'
COOKIE=$(grep -i '^Set-Cookie:' "$T/.hdr" | sed -E 's/^[^:]*: *(keten_session=[^;]*).*/\1/')
C="Cookie: $COOKIE"
tcp "$PP" GET /v1/session '' -H "$C"
is 200 "GET /v1/session with the cookie" "d['actor'] == 'token:all' and d['csrf_token'] == '$CSRF'"
tcp "$PP" POST "/v1/inbox/${MSGS[1]}/ack" '' -H "$C"
is 403 "a POST with the cookie and no X-CSRF-Token" "$(problem forbidden)"
tcp "$PP" POST "/v1/inbox/${MSGS[1]}/ack" '' -H "$C" -H "X-CSRF-Token: $(tr 'A-Za-z' 'B-ZAb-za' <<<"$CSRF")"
is 403 "a POST with a wrong X-CSRF-Token" "$(problem forbidden)"
tcp "$PP" POST "/v1/inbox/${MSGS[1]}/ack" '' -H "$C" -H "X-CSRF-Token: $CSRF" -H "Origin: http://evil.example"
is 403 "the right X-CSRF-Token from another Origin" "$(problem forbidden)"
tcp "$PP" GET "/v1/inbox/${MSGS[1]}" '' -H "$C"
is 200 "message 2 is still not acknowledged" "d['message']['handled'] in (None, False)"
tcp "$PP" POST "/v1/inbox/${MSGS[1]}/ack" '' -H "$C" -H "X-CSRF-Token: $CSRF" -H "Origin: http://127.0.0.1:$PP"
is 200 "the right X-CSRF-Token from the page's own Origin acknowledges" "d['msg_id'] == '${MSGS[1]}'"
tcp "$PP" DELETE /v1/session '' -H "$C"
is 403 "DELETE /v1/session without X-CSRF-Token" "$(problem forbidden)"
tcp "$PP" DELETE /v1/session '' -H "$C" -H "X-CSRF-Token: $CSRF"
check "DELETE /v1/session with it ends the session (HTTP 204)" test "$CODE" = 204
check "and clears the cookie" header Set-Cookie 'keten_session=; .*Max-Age=0'
tcp "$PP" GET /v1/session '' -H "$C"
is 401 "the ended session's cookie" "$(problem unauthorized)"
tcp "$PP" GET /v1/inbox '' -H "$C"
is 401 "the ended session's cookie on the inbox" "$(problem unauthorized)"
tcp "$PP" POST /v1/session "{\"token\":\"${TOK[reader]}\"}" -H "$C"
is 201 "signing in again with the stale cookie needs no X-CSRF-Token" "d['actor'] == 'token:reader'"
tcp "$PP" POST /v1/session '{"token":"ktn_nope"}'
is 401 "a session with a token of the wrong shape" "$(problem unauthorized)"
tcp "$PP" POST /v1/session '{"token":1}'
is 400 "a session request whose token is not a string" "d['errors'][0]['field'] == '/token'"

# --- the event stream ----------------------------------------------------------------
# events PORT TOKEN [CURL ARGS...]: what the stream gives in 3 s (curl ends
# it: exit 28), parsed: $T/.ev is [[id, type, data]...].
events() {
    local port=$1 tok=$2
    shift 2
    count politie-mn
    curl -sS -N --max-time 3 -H "Authorization: Bearer $tok" "$@" \
        "http://127.0.0.1:$port/v1/events${QS:-}" >"$T/.sse" 2>/dev/null
    "$PY" - "$T/.sse" >"$T/.ev" <<'PY'
import json, sys
out, ev = [], {}
for line in open(sys.argv[1]).read().split("\n"):
    if line == "":
        if ev:
            out.append([int(ev["id"]), ev["event"], json.loads(ev["data"])])
        ev = {}
    elif not line.startswith(":"):
        k, _, v = line.partition(": ")
        ev[k] = v
print(json.dumps(out))
PY
}
QS="?after=0" events "$PP" "${TOK[reader]}"
check "the replay from 0 has the 3 messages and 2 acknowledgements, ids rising" json_is "$T/.ev" \
    "[e[1] for e in d] == ['message'] * 3 + ['handled'] * 2 and [e[0] for e in d] == sorted(set(e[0] for e in d))"
check "the messages in the order they came" json_is "$T/.ev" \
    "[e[2]['msg_id'] for e in d if e[1] == 'message'] == ['${MSGS[0]}', '${MSGS[1]}', '${MSGS[2]}']"
check "an event's data is its header, no content" json_is "$T/.ev" \
    "d[0][2] == {'msg_id': '${MSGS[0]}', 'kind': 'signal', 'from': 'gemeente-diemen', 'category': 'woonfraude'}"
cp "$T/.ev" "$T/all.ev"
SECOND=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[1][0])' "$T/all.ev")
events "$PP" "${TOK[reader]}" -H "Last-Event-ID: $SECOND"
check "resumed with Last-Event-ID $SECOND: exactly the later events" "$PY" -c '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
sys.exit(0 if b == a[2:] and len(b) == 3 else 1)' "$T/all.ev" "$T/.ev"
QS="?after=99999999" events "$PP" "${TOK[reader]}"
check "an id this node never gave: a reset naming the oldest kept" json_is "$T/.ev" \
    "d[0][1] == 'reset' and d[0][2] == {'oldest': 1} and len(d) == 1"
tcp "$PP" GET "/v1/events?after=abc" '' -H "$(B reader)"
is 400 "after that is not a number" "d['errors'][0]['field'] == '?after'"
tcp "$PP" GET "/v1/events?after=99999999999999999999" '' -H "$(B reader)"
is 400 "after beyond 64 bits" "d['errors'][0]['field'] == '?after'"
tcp "$PP" GET /v1/events '' -H "$(B reader)" -H "Last-Event-ID: -1"
is 400 "a Last-Event-ID that is not a number" "d['errors'][0]['field'] == 'Last-Event-ID'"
tcp "$PP" GET /v1/events '' -H "$(B sender)"
is 403 "the send token may not follow the events" "$(problem forbidden) and 'scope read' in d['detail']"
# A stream whose token is revoked ends at its next event.
count politie-mn
curl -sS -N --max-time 60 -H "Authorization: Bearer ${TOK[streamer]}" \
    "http://127.0.0.1:$PP/v1/events" >"$T/rev.out" 2>&1 &
REV=$!
streamer_logged() { grep -q '"actor":"token:streamer".*"action":"events"' n-politie-mn/access.log; }
check "the streamer's stream is open" wait_until 10 streamer_logged
unix politie-mn DELETE "/v1/tokens/${ID[streamer]}"
check "the streamer token is revoked (HTTP 204)" test "$CODE" = 204
tcp "$PP" POST "/v1/inbox/${MSGS[2]}/ack" '' -H "$(B acker)"
is 200 "an acknowledgement makes an event" "d['msg_id'] == '${MSGS[2]}'"
gone() { ! kill -0 "$1" 2>/dev/null; }
check "the revoked token's stream ends at that event" wait_until 10 gone "$REV"
wait "$REV"
check "it ended cleanly, not by curl's time limit" test $? -eq 0
check "and nothing of the event was sent to it" lacks grep -qF "${MSGS[2]}" "$T/rev.out"
check "the live stream got the acknowledgement" \
    wait_until 10 grep -qF "\"handled_at\"" "$T/live.out"
kill "$LIVE" 2>/dev/null
wait "$LIVE"

# A stream opened with a web session ends when the session is ended.
tcp "$PP" POST /v1/session "{\"token\":\"${TOK[reader]}\"}"
is 201 "a session for a stream" "d['actor'] == 'token:reader'"
SCSRF=$(jv csrf_token)
SC="Cookie: $(grep -i '^Set-Cookie:' "$T/.hdr" | sed -E 's/^[^:]*: *(keten_session=[^;]*).*/\1/')"
reader_streams() { grep -c '"actor":"token:reader".*"action":"events".*"status":200' n-politie-mn/access.log; }
N0=$(reader_streams)
count politie-mn
curl -sS -N --max-time 60 -H "$SC" "http://127.0.0.1:$PP/v1/events" >"$T/sess.out" 2>&1 &
SESS=$!
sess_logged() { test "$(reader_streams)" -gt "$N0"; }
check "the session's stream is open" wait_until 10 sess_logged
tcp "$PP" DELETE /v1/session '' -H "$SC" -H "X-CSRF-Token: $SCSRF"
check "the session is ended (HTTP 204)" test "$CODE" = 204
unix gemeente-diemen POST "/v1/messages?wait=20000" "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat sig.json)}"
is 201 "a fourth signal makes an event" "d['state'] == 'accepted'"
M4=$(jv msg_id)
check "the ended session's stream ends at that event" wait_until 20 gone "$SESS"
wait "$SESS"
check "it ended cleanly, not by curl's time limit" test $? -eq 0
check "and the event was not sent to it" lacks grep -qF "$M4" "$T/sess.out"

# At most 64 streams at once: the 65th is refused, not queued.
unix politie-mn POST /v1/tokens '{"name":"bulk","scopes":["read"]}'
is 201 "a token for many streams" "d['name'] == 'bulk'"
TOK[bulk]=$(jv token)
BULK=()
for _ in $(seq 1 64); do
    count politie-mn
    curl -sS -N --max-time 60 -H "$(B bulk)" "http://127.0.0.1:$PP/v1/events" >/dev/null 2>&1 &
    BULK+=($!)
done
bulk_open() { test "$(grep -c '"actor":"token:bulk".*"action":"events".*"status":200' n-politie-mn/access.log)" -eq 64; }
check "64 streams are open" wait_until 20 bulk_open
tcp "$PP" GET /v1/events '' -H "$(B bulk)"
is 503 "a 65th stream" "$(problem busy) and '64' in d['detail']"
kill "${BULK[@]}" 2>/dev/null
wait "${BULK[@]}" 2>/dev/null
bulk_closed() {
    tcp "$PP" GET /v1/events '' -H "$(B bulk)" --max-time 1
    test "$CODE" = 200
}
check "once their clients are gone a stream opens again (at once: no keep-alive waited for)" \
    wait_until 5 bulk_closed

# An idle stream hears a keep-alive comment every 15 s (and stays open).
count politie-mn
curl -sS -N --max-time 40 -H "$(B reader)" "http://127.0.0.1:$PP/v1/events" >"$T/ka.out" 2>&1 &
KA=$!
check "an idle stream gets ': keep-alive' within 15 s" wait_until 25 grep -qx ': keep-alive' "$T/ka.out"
check "and is still open after it" kill -0 "$KA"
kill "$KA" 2>/dev/null
wait "$KA"

# --- the web page's files ----------------------------------------------------------------
tcp "$PP" GET / ''
check "GET / is the page (HTTP 200)" test "$CODE" = 200
check "as text/html" header Content-Type 'text/html; charset=utf-8'
check "with the Content-Security-Policy" header Content-Security-Policy "default-src 'self'; script-src 'self'"
check "and nosniff" header X-Content-Type-Options nosniff
check "it is index.html" cmp -s "$T/.out" "$SRC/web/index.html"
for f in app.js:text/javascript i18n.js:text/javascript style.css:text/css favicon.svg:image/svg\\+xml; do
    tcp "$PP" GET "/static/${f%%:*}" ''
    check "/static/${f%%:*} is served (HTTP 200)" test "$CODE" = 200
    check "/static/${f%%:*} as ${f#*:}" header Content-Type "${f#*:}"
done
tcp "$PP" GET /static/../../node.conf ''
is 404 "/static/../ leads nowhere" "$(problem not-found)"
tcp "$PP" GET /static/..%2fidentity.secret ''
is 404 "an encoded ../ neither" "$(problem not-found)"
tcp "$PP" GET /static/nope.js ''
is 404 "a file that is not there" "$(problem not-found)"
tcp "$PP" GET /static/index.exe ''
is 404 "a name of a type the page has not" "$(problem not-found)"
unix politie-mn GET /
is 404 "the page is not served on the Unix socket" "$(problem not-found)"

# --- the access log ------------------------------------------------------------------------
LOG=n-politie-mn/access.log
check "the access log is mode 0600" test "$(stat -c %a "$LOG")" = 600
check "every line has the 8 fields in order" "$PY" -c '
import json, sys
keys = ["time", "actor", "via", "peer", "action", "object", "result", "status"]
lines = open(sys.argv[1]).read().splitlines()
sys.exit(0 if lines and all(list(json.loads(l).keys()) == keys for l in lines) else 1)' "$LOG"
has() { # has EXPR: a line of the access log satisfies EXPR (d)
    "$PY" -c '
import json, sys
sys.exit(0 if any(eval(sys.argv[2], {"d": json.loads(l)}) for l in open(sys.argv[1])) else 1)' "$LOG" "$1"
}
check "token:reader's inbox list over TCP" has \
    "d['actor'] == 'token:reader' and d['via'] == 'tcp' and d['peer'] == '127.0.0.1' and d['action'] == 'list-inbox' and d['object'] == 'inbox' and d['result'] == 'ok' and d['status'] == 200"
check "token:acker's acknowledgement names the message" has \
    "d['actor'] == 'token:acker' and d['action'] == 'ack' and d['object'] == 'message:${MSGS[0]}'"
check "a missing scope is logged denied 403" has \
    "d['actor'] == 'token:sender' and d['result'] == 'denied' and d['status'] == 403"
check "a bad token is logged denied 401 (anonymous)" has \
    "d['actor'] == 'anonymous' and d['result'] == 'denied' and d['status'] == 401 and d['action'] == 'list-inbox'"
check "the CSRF refusals are logged denied 403 for token:all" has \
    "d['actor'] == 'token:all' and d['action'] == 'ack' and d['result'] == 'denied'"
check "the cross-site attempt names whose session it used: 3 refused acks of token:all (no, a wrong X-CSRF-Token, another Origin)" "$PY" -c '
import json, sys
n = sum(1 for l in open(sys.argv[1]) for d in [json.loads(l)]
        if d["actor"] == "token:all" and d["action"] == "ack" and d["result"] == "denied" and d["status"] == 403)
sys.exit(0 if n == 3 else 1)' "$LOG"
check "the person the proxy named" has "d['actor'] == 'person:alice' and d['action'] == 'list-inbox'"
check "the operator on the socket: local, with its uid" has \
    "d['actor'] == 'local' and d['via'] == 'unix' and d['peer'] == 'uid=$(id -u)' and d['action'] == 'token-create'"
check "a revocation names the token" has "d['action'] == 'token-revoke' and d['object'] == 'token:${ID[gone]}'"
check "sessions opened and ended" has "d['action'] == 'session-end' and d['status'] == 204"
check "the event streams" has "d['action'] == 'events' and d['actor'] == 'token:reader'"
check "no summary in the access log" lacks grep -qF "$SUMMARY" "$LOG"
check "no subject in the access log" lacks grep -qF "Hoofdstraat" "$LOG"
check "no query value in the access log" lacks grep -qF "99999999" "$LOG"
check "no token in the access log" lacks grep -qF -- "${TOK[all]:4}" "$LOG"

# --- an access log that cannot be opened safely ------------------------------------------
stop_one gemeente-diemen
touch "$T/open.log"
chmod 644 "$T/open.log"
KETEN_NODE_TEST_API_TRACE= run "$NODE" run --home n-gemeente-diemen --anchor admin/network.pub \
    --directory directory.signed --broker "$BROKER_EP" --access-log "$T/open.log"
expect 4 "an access log others may read: the node does not start"
says "chmod 600" "it says what to do"
chmod 600 "$T/open.log"
start_node gemeente-diemen --access-log "$T/open.log"
check "with mode 0600 it starts" wait_until 20 connected gemeente-diemen
stop_one politie-mn
stop_one gemeente-diemen

# The test's own requests are curl's; the keten-node commands it runs are
# traced (and checked below) too.
check "politie-mn's trace has its ${REQS[politie-mn]} curl requests" \
    test "$(grep -c '"user_agent":"curl/' "$T/trace-p.jsonl")" -eq "${REQS[politie-mn]}"
openapi_agrees() {
    "$PY" "$SRC/tests/tools/openapi_check.py" "$SRC/docs/api/openapi.yaml" \
        "$T/trace-p.jsonl" "$T/trace-g.jsonl" >"$T/oa.out" 2>&1
}
check "every traced answer agrees with docs/api/openapi.yaml" openapi_agrees ||
    sed 's/^/# /' "$T/oa.out"
finish
