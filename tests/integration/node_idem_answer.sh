#!/usr/bin/env bash
# A reply or a feedback repeated after a lost answer goes out once (the
# header Idempotency-Key of POST /v1/inbox/{msg_id}/reply, docs/integration.md
# "Sending once: Idempotency-Key"), and the command line's
# --idempotency-key of keten-node send and reply, through the real broker and
# two real nodes. gemeente-diemen sends signals and queries to politie-mn,
# which answers them over its HTTP API: a feedback with a key answers 202;
# the same request again answers that msg_id with "repeated": true (with and
# without wait) and sends nothing (politie-mn's sent list does not grow,
# gemeente-diemen holds the feedback once); the same key with another body,
# or with the same body answering another message, or for a send, is 409
# naming the first feedback; another token, or the Unix socket, with the
# same key sends a feedback of its own; a request refused before anything
# was stored keeps no key; the node killed with SIGKILL right after its
# answer and started again still knows the key. The repeat of a reply to a
# query with its key is answered as a repeat, not refused as a second reply
# (which another key, or none, still is). Twins: without a key two
# identical feedbacks are two, and two keys two feedbacks. The command
# line: send and reply (reply and feedback) with --idempotency-key print the
# first msg_id again and send nothing; another signal with the key exits 2;
# a key that is not one, or with --dry-run, is a usage error. Every answer
# is traced and checked against docs/api/openapi.yaml at the end.
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/node_lib.sh"

need_tool curl
setup_network || done_testing
signal sig.json adrescheck "Adres staat op naam van 9 personen"
signal sig2.json adrescheck "Ramen afgeplakt, stroomkabel naar buiten"
signal q.json adrescheck "Wie staat ingeschreven op Hoofdstraat 1?"
signal fb.json adrescheck "Controle gepland voor week 50"
signal fb2.json adrescheck "Controle uitgevoerd, niets gevonden"
signal rp.json adrescheck "Twee personen bekend op dit adres"
# No rule lets politie-mn answer with woonfraude: the policy refuses it
# before anything is stored.
signal fb-refused.json woonfraude "Controle gepland voor week 50"
body() { printf '%s' "$2" >"$1"; }
body feedback.json "{\"kind\":\"feedback\",\"signal\":$(cat fb.json)}"
body feedback2.json "{\"kind\":\"feedback\",\"signal\":$(cat fb2.json)}"
body feedback-refused.json "{\"kind\":\"feedback\",\"signal\":$(cat fb-refused.json)}"
body reply.json "{\"kind\":\"reply\",\"signal\":$(cat rp.json)}"
body reply-as-feedback.json "{\"kind\":\"feedback\",\"signal\":$(cat rp.json)}"
body send.json "{\"kind\":\"signal\",\"to\":[\"gemeente-diemen\"],\"signal\":$(cat fb.json)}"

PP=$(free_port)
start_broker
start_node gemeente-diemen
KETEN_NODE_TEST_API_TRACE="$T/trace-p.jsonl" start_node politie-mn --api-listen "127.0.0.1:$PP"
for id in gemeente-diemen politie-mn; do
    check "$id connects to the broker" wait_until 20 connected "$id"
done
check "politie-mn serves HTTP on 127.0.0.1:$PP" wait_until 10 port_open "$PP"

# g_send NAME KIND FILE: gemeente-diemen sends FILE to politie-mn; its msg_id
# in the variable NAME.
g_send() {
    run "$NODE" send --home n-gemeente-diemen --to politie-mn --kind "$2" --signal "$3"
    expect 0 "gemeente-diemen sends a $2 ($1)"
    printf -v "$1" '%s' "$(head -n 1 "$T/.out")"
}
g_send S signal sig.json
g_send S2 signal sig2.json
g_send Q1 query q.json
g_send Q2 query q.json
g_send Q3 query q.json
for m in "$S" "$S2" "$Q1" "$Q2" "$Q3"; do
    check "politie-mn received $m" wait_until 30 inbox_has politie-mn "$m"
done

API_NODE=politie-mn API_PORT=$PP
. "$(dirname "$0")/idem_lib.sh"
make_tokens app-one app-two
check "politie-mn has sent nothing yet" sent_is 0

# --- a feedback and its repeats ----------------------------------------------------
tcp app-one POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-1"
is 202 "a feedback with an Idempotency-Key is stored and queued" \
    "d['state'] == 'pending' and 'repeated' not in d"
F=$(jv msg_id)
check "it names its msg_id" grep -qxE '[0-9a-f]{32}' <<<"$F"
check "the sent list holds 1 message" sent_is 1
tcp app-one POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-1"
check "the same feedback again answers the first msg_id, repeated" json_is "$T/.out" \
    "d['msg_id'] == '$F' and d['repeated'] is True and d['state'] in ('pending', 'accepted')"
check "and answers it as a feedback would (HTTP 201 or 202)" test "$CODE" = 201 -o "$CODE" = 202
check "the sent list still holds 1 message (nothing new was sent)" sent_is 1
check "feedback $F is accepted by the broker" \
    wait_until 20 msg_status_is politie-mn "$F" 'd["state"] == "accepted"'
tcp app-one POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-1"
is 201 "repeated once accepted, the answer is the accepted feedback" \
    "d['msg_id'] == '$F' and d['state'] == 'accepted' and d['leaf_index'] >= 0 and d['repeated'] is True"
tcp app-one POST "/v1/inbox/$S/reply?wait=5000" feedback.json -H "Idempotency-Key: fb-1"
is 201 "repeated with wait, the same" \
    "d['msg_id'] == '$F' and d['state'] == 'accepted' and d['repeated'] is True"
check "the sent list still holds 1 message" sent_is 1

# --- the same key for another request ----------------------------------------------
tcp app-one POST "/v1/inbox/$S/reply" feedback2.json -H "Idempotency-Key: fb-1"
is 409 "the same key with another feedback is refused" \
    "$(problem idempotency-key-reused) and d['msg_id'] == '$F' and 'fb-1' in d['detail'] and d['exit'] == 2"
tcp app-one POST "/v1/inbox/$S2/reply" feedback.json -H "Idempotency-Key: fb-1"
is 409 "the same key and body answering another signal is refused (the answered message is part of the request)" \
    "$(problem idempotency-key-reused) and d['msg_id'] == '$F'"
tcp app-one POST /v1/messages send.json -H "Idempotency-Key: fb-1"
is 409 "the feedback's key on a send is refused" \
    "$(problem idempotency-key-reused) and d['msg_id'] == '$F'"
check "none of them sent anything (the sent list holds 1 message)" sent_is 1

# --- another caller, the same key --------------------------------------------------
tcp app-two POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-1"
is 202 "another token with the same key and body sends a feedback of its own" \
    "d['msg_id'] != '$F' and 'repeated' not in d"
G=$(jv msg_id)
tcp app-two POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-1"
check "which that token's repeat answers" json_is "$T/.out" \
    "d['msg_id'] == '$G' and d['repeated'] is True"
unix POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-1"
is 202 "the Unix socket's caller with the same key sends its own too" \
    "d['msg_id'] not in ('$F', '$G') and 'repeated' not in d"
H=$(jv msg_id)
unix POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-1"
check "which its repeat on the socket answers" json_is "$T/.out" \
    "d['msg_id'] == '$H' and d['repeated'] is True"
check "the sent list holds 3 messages" sent_is 3

# --- twins: no key, two keys -------------------------------------------------------
tcp app-one POST "/v1/inbox/$S/reply" feedback.json
is 202 "a feedback without the header" "'repeated' not in d"
N1=$(jv msg_id)
tcp app-one POST "/v1/inbox/$S/reply" feedback.json
is 202 "the same feedback again without the header is a new feedback" \
    "d['msg_id'] != '$N1' and 'repeated' not in d"
N2=$(jv msg_id)
tcp app-one POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-a"
is 202 "a feedback with a new key" "'repeated' not in d and d['msg_id'] not in ('$F', '$N1', '$N2')"
KA=$(jv msg_id)
tcp app-one POST "/v1/inbox/$S/reply" feedback.json -H "Idempotency-Key: fb-b"
is 202 "the same feedback with another new key is a feedback of its own" \
    "'repeated' not in d and d['msg_id'] != '$KA'"
KB=$(jv msg_id)
check "the sent list holds 7 messages" sent_is 7

# --- a reply to a query: the repeat is a repeat, not a second reply ----------------
tcp app-one POST "/v1/inbox/$Q1/reply" reply.json -H "Idempotency-Key: rp-1"
is 202 "a reply with an Idempotency-Key" "'repeated' not in d"
R=$(jv msg_id)
tcp app-one POST "/v1/inbox/$Q1/reply" reply.json -H "Idempotency-Key: rp-1"
check "its repeat answers the reply, repeated (not 409)" json_is "$T/.out" \
    "d['msg_id'] == '$R' and d['repeated'] is True"
check "answered as a reply would be (HTTP 201 or 202)" test "$CODE" = 201 -o "$CODE" = 202
tcp app-one POST "/v1/inbox/$Q1/reply" reply.json -H "Idempotency-Key: rp-2"
is 409 "a second reply with another key is still refused" \
    "$(problem conflict) and '$R' in d['detail']"
tcp app-one POST "/v1/inbox/$Q1/reply" reply.json
is 409 "and without a key" "$(problem conflict) and '$R' in d['detail']"
check "the sent list holds 8 messages" sent_is 8

# --- refused before anything was stored: no key kept -------------------------------
tcp app-one POST "/v1/inbox/$Q2/reply" reply-as-feedback.json -H "Idempotency-Key: rp-3"
is 400 "feedback to a query is refused (nothing stored)" "'msg_id' not in d"
tcp app-one POST "/v1/inbox/$Q2/reply" reply.json -H "Idempotency-Key: rp-3"
is 202 "the same key then sends the corrected reply (no key was kept)" "'repeated' not in d"
R2=$(jv msg_id)
tcp app-one POST "/v1/inbox/$S2/reply" feedback-refused.json -H "Idempotency-Key: fb-2"
is 422 "a feedback the sharing policy refuses (nothing stored)" "$(problem policy) and 'msg_id' not in d"
tcp app-one POST "/v1/inbox/$S2/reply" feedback.json -H "Idempotency-Key: fb-2"
is 202 "the same key then sends the corrected feedback" "'repeated' not in d"
E=$(jv msg_id)
check "the sent list holds 10 messages" sent_is 10

# --- durable: kill -9 right after the first answer ---------------------------------
tcp app-one POST "/v1/inbox/$S2/reply" feedback2.json -H "Idempotency-Key: fb-k9"
is 202 "a feedback with a new key" "d['state'] == 'pending' and 'repeated' not in d"
B=$(jv msg_id)
kill9 politie-mn
check "politie-mn is gone (SIGKILL right after its answer)" lacks node_running politie-mn
KETEN_NODE_TEST_API_TRACE="$T/trace-p.jsonl" start_node politie-mn --api-listen "127.0.0.1:$PP"
check "politie-mn runs again and connects" wait_until 20 connected politie-mn
check "and serves HTTP again" wait_until 10 port_open "$PP"
tcp app-one POST "/v1/inbox/$S2/reply" feedback2.json -H "Idempotency-Key: fb-k9"
check "the repeat after the restart answers the feedback stored before the kill" json_is \
    "$T/.out" "d['msg_id'] == '$B' and d['repeated'] is True"
check "the sent list holds 11 messages" sent_is 11

# --- the command line: keten-node reply and send --idempotency-key -----------------
run "$NODE" reply --home n-politie-mn "$S" --kind feedback --signal fb2.json --idempotency-key cli-1
expect 0 "reply --kind feedback --idempotency-key sends"
printed_msg_id "reply --idempotency-key"
C1=$(head -n 1 "$T/.out")
run "$NODE" reply --home n-politie-mn "$S" --kind feedback --signal fb2.json --idempotency-key cli-1
expect 0 "the same command again succeeds"
check "it prints the first feedback's msg_id" test "$(cat "$T/.out")" = "$C1"
says "nothing new was sent" "and says on standard error that nothing new was sent"
run "$NODE" reply --home n-politie-mn "$S" --kind feedback --signal fb2.json --idempotency-key cli-1 --json
expect 0 "again with --json"
jl "L[0]['msg_id'] == '$C1' and L[0]['repeated'] is True" "its JSON says repeated"
run "$NODE" reply --home n-politie-mn "$S" --kind feedback --signal fb.json --idempotency-key cli-1
expect 2 "the same key with another signal is refused"
says "the --idempotency-key cli-1 was used" "naming the option and the key"
says "$C1" "and the feedback it belongs to"
run "$NODE" reply --home n-politie-mn "$Q3" --signal rp.json --idempotency-key cli-2
expect 0 "reply --idempotency-key answers a query"
C2=$(head -n 1 "$T/.out")
run "$NODE" reply --home n-politie-mn "$Q3" --signal rp.json --idempotency-key cli-2
expect 0 "the same reply again is answered as a repeat, not refused as a second reply"
check "it prints the first reply's msg_id" test "$(cat "$T/.out")" = "$C2"
run "$NODE" reply --home n-politie-mn "$Q3" --signal rp.json
expect 1 "a second reply without the key is refused as before"
says "already replied" "saying it was answered"
check "the sent list holds 13 messages" sent_is 13
run "$NODE" reply --home n-politie-mn "$S" --kind feedback --signal fb2.json --idempotency-key "cli 3"
expect 2 "a key with a space is a usage error"
says "--idempotency-key has the byte 0x20 at position 4" "naming the option and where"
run "$NODE" reply --home n-politie-mn "$S" --kind feedback --signal fb2.json --idempotency-key cli-3 --dry-run
expect 2 "--idempotency-key with --dry-run is a usage error"
check "neither sent anything (the sent list holds 13 messages)" sent_is 13
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig2.json --idempotency-key cli-s1
expect 0 "send --idempotency-key sends"
printed_msg_id "send --idempotency-key"
C3=$(head -n 1 "$T/.out")
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig2.json --idempotency-key cli-s1 --wait
expect 0 "the same send again (with --wait) succeeds"
check "it prints the first message's msg_id" test "$(cat "$T/.out")" = "$C3"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig2.json --idempotency-key "$(printf 'k%.0s' $(seq 1 65))"
expect 2 "send with a key of 65 characters is a usage error"
says "--idempotency-key must be 1 to 64 characters" "saying how long a key may be"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig2.json
expect 0 "send without the key sends as before"
C4=$(head -n 1 "$T/.out")
check "a message of its own" test "$C4" != "$C3"

# --- what the recipients got -------------------------------------------------------
# A last feedback without a key, after all the others: the broker delivers
# to gemeente-diemen in order, so a second copy of any earlier answer would
# be in its inbox before this one is.
tcp app-one POST "/v1/inbox/$S/reply" feedback.json
is 202 "a last feedback (the marker)" "'repeated' not in d"
M=$(jv msg_id)
check "gemeente-diemen received the marker" wait_until 30 inbox_has gemeente-diemen "$M"
for m in "$F" "$G" "$H" "$N1" "$N2" "$KA" "$KB" "$R" "$R2" "$E" "$B" "$C1" "$C2"; do
    check "gemeente-diemen holds $m exactly once" test "$(inbox_count gemeente-diemen "$m")" = 1
done
g_answers() {
    "$NODE" inbox --home n-gemeente-diemen --json --all >"$T/.inbox" 2>/dev/null || return 2
    grep -cE '"kind":"(feedback|reply)"' "$T/.inbox"
}
check "gemeente-diemen holds 14 answers in all: one per answer sent (13 and the marker)" \
    test "$(g_answers)" = 14
check "and politie-mn's sent list holds those 14" sent_is 14
check "politie-mn received $C4, the send after it" wait_until 30 inbox_has politie-mn "$C4"
check "politie-mn holds $C3 exactly once" test "$(inbox_count politie-mn "$C3")" = 1
check "politie-mn logged the repeats it answered" \
    grep -q 'msg="a repeated send is answered with the message it stored"' "$T/node-politie-mn.log"

stop_one politie-mn
openapi_agrees() {
    "$PY" "$SRC/tests/tools/openapi_check.py" "$SRC/docs/api/openapi.yaml" \
        "$T/trace-p.jsonl" >"$T/oa.out" 2>&1
}
check "every traced answer agrees with docs/api/openapi.yaml" openapi_agrees ||
    sed 's/^/# /' "$T/oa.out"
check "the check read every answer" grep -qE "^[0-9]+ answers checked, 0 violations" "$T/oa.out"
finish
