#!/usr/bin/env bash
# A send repeated after a lost answer goes out once (the header
# Idempotency-Key of POST /v1/messages, docs/integration.md "Errors and
# retrying"), through the real broker and two real nodes: a send with a key
# answers 202 and a msg_id; the same request again answers that msg_id with
# "repeated": true (with and without wait), the node's sent list does not
# grow and the recipient holds the message once; a node killed with
# SIGKILL right after its first answer and started again still knows the
# key (the key and the message are one store transaction); the same key with
# another body is 409 naming the first message; another token, or the Unix
# socket, with the same key sends a message of its own; a send refused
# before anything was stored keeps no key (the same key then sends); without
# the header two sends are two messages. Keys of 65 characters, with a
# character outside [A-Za-z0-9._:-], empty or given twice are 400 naming the
# header (twin: a key of 64 characters of every allowed kind sends), also
# on the reply route. Every answer is traced and checked against
# docs/api/openapi.yaml at the end.
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/node_lib.sh"

need_tool curl
setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen"
signal sig2.json woonfraude "Ramen afgeplakt, stroomkabel naar buiten"
body() { printf '%s' "$2" >"$1"; }
body send.json "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat sig.json)}"
body send2.json "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat sig2.json)}"
# The same request with other white space: another body, byte for byte.
body send-spaced.json "{\"kind\": \"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat sig.json)}"
# Refused by the sharing policy (no rule allows drugs): nothing is stored.
signal drugs.json drugs "Hennepkwekerij vermoed"
body send-drugs.json "{\"kind\":\"signal\",\"to\":[\"politie-mn\"],\"signal\":$(cat drugs.json)}"

PG=$(free_port)
start_broker
KETEN_NODE_TEST_API_TRACE="$T/trace-g.jsonl" start_node gemeente-diemen --api-listen "127.0.0.1:$PG"
start_node politie-mn
for id in gemeente-diemen politie-mn; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done
check "gemeente-diemen serves HTTP on 127.0.0.1:$PG" wait_until 10 port_open "$PG"

API_NODE=gemeente-diemen API_PORT=$PG
. "$(dirname "$0")/idem_lib.sh"
make_tokens app-one app-two

# --- the first send and its repeats ----------------------------------------------
KEY1="order-2026-12-07:0001"
tcp app-one POST /v1/messages send.json -H "Idempotency-Key: $KEY1"
is 202 "a send with an Idempotency-Key is stored and queued" \
    "d['state'] == 'pending' and 'repeated' not in d"
A=$(jv msg_id)
check "it names its msg_id" grep -qxE '[0-9a-f]{32}' <<<"$A"
check "the sent list holds 1 message" sent_is 1
tcp app-one POST /v1/messages send.json -H "Idempotency-Key: $KEY1"
check "the same request again answers the first msg_id, repeated" json_is "$T/.out" \
    "d['msg_id'] == '$A' and d['repeated'] is True and d['state'] in ('pending', 'accepted')"
check "and answers it as a send would (HTTP 201 or 202)" test "$CODE" = 201 -o "$CODE" = 202
check "the sent list still holds 1 message (nothing new was sent)" sent_is 1
check "message $A is accepted by the broker" \
    wait_until 20 msg_status_is gemeente-diemen "$A" 'd["state"] == "accepted"'
tcp app-one POST /v1/messages send.json -H "Idempotency-Key: $KEY1"
is 201 "repeated once accepted, the answer is the accepted message" \
    "d['msg_id'] == '$A' and d['state'] == 'accepted' and d['leaf_index'] >= 0 and d['repeated'] is True"
tcp app-one POST "/v1/messages?wait=5000" send.json -H "Idempotency-Key: $KEY1"
is 201 "repeated with wait, the same" \
    "d['msg_id'] == '$A' and d['state'] == 'accepted' and d['repeated'] is True"
check "the sent list still holds 1 message" sent_is 1

# --- the same key with another body ----------------------------------------------
tcp app-one POST /v1/messages send2.json -H "Idempotency-Key: $KEY1"
is 409 "the same key with another signal is refused" \
    "$(problem idempotency-key-reused) and d['msg_id'] == '$A' and '$KEY1' in d['detail'] and d['exit'] == 2"
tcp app-one POST /v1/messages send-spaced.json -H "Idempotency-Key: $KEY1"
is 409 "the same key with the same request spaced otherwise (another body) is refused" \
    "$(problem idempotency-key-reused) and d['msg_id'] == '$A'"
check "neither sent anything (the sent list holds 1 message)" sent_is 1

# --- another caller, the same key ------------------------------------------------
tcp app-two POST /v1/messages send.json -H "Idempotency-Key: $KEY1"
is 202 "another token with the same key and body sends a message of its own" \
    "d['state'] == 'pending' and d['msg_id'] != '$A' and 'repeated' not in d"
C=$(jv msg_id)
tcp app-two POST /v1/messages send.json -H "Idempotency-Key: $KEY1"
check "which that token's repeat answers" json_is "$T/.out" \
    "d['msg_id'] == '$C' and d['repeated'] is True"
unix POST /v1/messages send.json -H "Idempotency-Key: $KEY1"
is 202 "the Unix socket's caller with the same key sends its own too" \
    "d['msg_id'] not in ('$A', '$C') and 'repeated' not in d"
D=$(jv msg_id)
unix POST /v1/messages send.json -H "Idempotency-Key: $KEY1"
check "which its repeat on the socket answers" json_is "$T/.out" \
    "d['msg_id'] == '$D' and d['repeated'] is True"
check "the sent list holds 3 messages" sent_is 3

# --- refused before anything was stored: no key kept -----------------------------
tcp app-one POST /v1/messages send-drugs.json -H "Idempotency-Key: order-0002"
is 422 "a send the sharing policy refuses (nothing stored)" "$(problem policy) and 'msg_id' not in d"
tcp app-one POST /v1/messages send2.json -H "Idempotency-Key: order-0002"
is 202 "the same key then sends the corrected request (no key was kept)" \
    "d['state'] == 'pending' and 'repeated' not in d"
E=$(jv msg_id)
check "the sent list holds 4 messages" sent_is 4

# --- durable: kill -9 right after the first answer -------------------------------
tcp app-one POST /v1/messages send.json -H "Idempotency-Key: order-0003"
is 202 "a send with a new key" "d['state'] == 'pending' and 'repeated' not in d"
B=$(jv msg_id)
kill9 gemeente-diemen
check "gemeente-diemen is gone (SIGKILL right after its answer)" lacks node_running gemeente-diemen
KETEN_NODE_TEST_API_TRACE="$T/trace-g.jsonl" start_node gemeente-diemen --api-listen "127.0.0.1:$PG"
check "gemeente-diemen runs again and connects" wait_until 20 connected gemeente-diemen
check "and serves HTTP again" wait_until 10 port_open "$PG"
tcp app-one POST /v1/messages send.json -H "Idempotency-Key: order-0003"
check "the repeat after the restart answers the message stored before the kill" json_is \
    "$T/.out" "d['msg_id'] == '$B' and d['repeated'] is True"
check "the sent list holds 5 messages" sent_is 5

# --- without the header: as before ------------------------------------------------
tcp app-one POST /v1/messages send.json
is 202 "a send without the header" "'repeated' not in d"
F1=$(jv msg_id)
tcp app-one POST /v1/messages send.json
is 202 "the same send again without the header is a new message" \
    "d['msg_id'] != '$F1' and 'repeated' not in d"
F2=$(jv msg_id)
check "the sent list holds 7 messages" sent_is 7

# --- keys that are not keys --------------------------------------------------------
K64="aZ09._:-$(printf 'x%.0s' $(seq 1 56))"
K65="${K64}y"
bad_key() { # bad_key WHAT CURL-ARGS...: 400 naming the header, nothing sent
    local what=$1
    shift
    tcp app-one POST /v1/messages send2.json "$@"
    is 400 "$what is refused" \
        "$(problem invalid-request) and d['errors'][0]['field'] == 'Idempotency-Key' and 'Idempotency-Key' in d['detail']"
}
bad_key "a key of 65 characters" -H "Idempotency-Key: $K65"
check "its detail says how long it is" json_is "$T/.out" "'1 to 64' in d['detail'] and '65' in d['detail']"
bad_key "a key with a space" -H "Idempotency-Key: order 4"
bad_key "a key with a slash" -H "Idempotency-Key: order/4"
check "its detail names the character" json_is "$T/.out" "\"'/'\" in d['detail']"
bad_key "a key with a non-ASCII character" -H "Idempotency-Key: ordér-4"
bad_key "an empty key" -H "Idempotency-Key;"
bad_key "the header twice" -H "Idempotency-Key: order-5" -H "Idempotency-Key: order-6"
check "none of them sent anything (the sent list holds 7 messages)" sent_is 7
tcp app-one POST /v1/messages send2.json -H "Idempotency-Key: $K64"
is 202 "a key of 64 characters of every allowed kind sends" "'repeated' not in d"
G=$(jv msg_id)
tcp app-one POST /v1/messages send2.json -H "Idempotency-Key: $K64"
check "and its repeat answers it" json_is "$T/.out" "d['msg_id'] == '$G' and d['repeated'] is True"
check "the sent list holds 8 messages" sent_is 8
# The reply route checks the key as the send route does (its keys:
# node_idem_answer.sh).
body feedback.json "{\"kind\":\"feedback\",\"signal\":$(cat sig.json)}"
tcp app-one POST "/v1/inbox/$A/reply" feedback.json -H "Idempotency-Key: order 7"
is 400 "a reply with a key that is not one is refused, naming the header" \
    "$(problem invalid-request) and d['errors'][0]['field'] == 'Idempotency-Key'"

# --- what the recipient got -------------------------------------------------------
# A last message without a key, after all the others: the broker delivers to
# politie-mn in order, so a second copy of any earlier one would be in its
# inbox before this one is.
tcp app-one POST /v1/messages send.json
is 202 "a last send (the marker)" "'repeated' not in d"
M=$(jv msg_id)
check "politie-mn received the marker" wait_until 30 inbox_has politie-mn "$M"
for m in "$A" "$B" "$C" "$D" "$E" "$F1" "$F2" "$G"; do
    check "politie-mn holds $m exactly once" test "$(inbox_count politie-mn "$m")" = 1
done
all_inbox() {
    "$NODE" inbox --home n-politie-mn --json --all >"$T/.inbox" 2>/dev/null || return 2
    grep -c '"msg_id"' "$T/.inbox"
}
check "politie-mn holds 9 messages in all: one per message sent (8 and the marker)" \
    test "$(all_inbox)" = 9
check "and gemeente-diemen's sent list holds those 9" sent_is 9
check "gemeente-diemen logged the repeats it answered" \
    grep -q 'msg="a repeated send is answered with the message it stored"' "$T/node-gemeente-diemen.log"

stop_one gemeente-diemen
openapi_agrees() {
    "$PY" "$SRC/tests/tools/openapi_check.py" "$SRC/docs/api/openapi.yaml" \
        "$T/trace-g.jsonl" >"$T/oa.out" 2>&1
}
check "every traced answer agrees with docs/api/openapi.yaml" openapi_agrees ||
    sed 's/^/# /' "$T/oa.out"
check "the check read every answer" grep -qE "^[0-9]+ answers checked, 0 violations" "$T/oa.out"
finish
