#!/usr/bin/env bash
# keten-node token: create prints a token once (standard output) and says so
# (standard error); the token opens the API on the loopback listener with
# its scopes (read: the inbox 200, a send 403); list shows it without the
# token itself (table and --json); revoke refuses it from then on (401) and
# a second revoke is refused (exit 1, saying so); usage errors (no scope, an
# unknown scope, a bad ID, a mistyped subcommand) exit 2 and create nothing;
# without a daemon the commands say how to start it (exit 1).
. "$(dirname "$0")/node_lib.sh"

need_tool curl
setup_network || done_testing
PORT=$(free_port)

run "$NODE" token list --home n-politie-mn
expect 1 "without a daemon, token list fails"
says "keten-node run" "and says how to start the daemon"

start_broker
start_node politie-mn --api-listen "127.0.0.1:$PORT"
require "politie-mn's daemon answers" wait_until 20 node_running politie-mn

run "$NODE" token create --home n-politie-mn --name analist --scope read
expect 0 "token create --scope read"
TOKEN=$(cat "$T/.out")
check "it prints one token (ktn_ and 43 base64url characters)" \
    grep -qxE 'ktn_[A-Za-z0-9_-]{43}' "$T/.out"
check "standard error says it is shown only now" grep -qF "shown only now" "$T/.err"

api() { # api METHOD PATH [TOKEN]: the HTTP status of the loopback listener's answer
    local auth=()
    [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
    curl -s -o "$T/api.out" -w '%{http_code}' -X "$1" "${auth[@]}" \
        -H 'Content-Type: application/json' --data-binary "${4:-}" \
        "http://127.0.0.1:$PORT$2"
}
check "the token reads the inbox: 200" test "$(api GET /v1/inbox "$TOKEN")" = 200
check "without it: 401" test "$(api GET /v1/inbox)" = 401
check "its scope does not send: 403" \
    test "$(api POST /v1/messages/validate "$TOKEN" '{"for":"send","kind":"signal","to":["gemeente-diemen"],"signal":{}}')" = 403
check "the 403 names the missing scope" grep -qF "send" "$T/api.out"

run "$NODE" token list --home n-politie-mn
expect 0 "token list"
stdout_says "analist" "lists the token by name"
stdout_says "active" "as active"
says_not "$TOKEN" "without the token itself"
run "$NODE" token list --home n-politie-mn --json
expect 0 "token list --json"
ID=$("$PY" -c 'import json, sys; t = json.load(open(sys.argv[1]))["tokens"]; print(t[0]["id"] if len(t) == 1 else "")' "$T/.out")
check "the JSON lists the one token with its id" test -n "$ID"
says_not "$TOKEN" "and not the token itself"

run "$NODE" token create --home n-politie-mn --name analist --scope read,send
expect 1 "a second active token of the same name is refused"
run "$NODE" token create --home n-politie-mn --name x --scope read,write
expect 2 "an unknown scope is a usage error"
says "write" "naming it"
run "$NODE" token create --home n-politie-mn --name x
expect 2 "create without --scope is a usage error"
run "$NODE" token revoke --home n-politie-mn NOT-AN-ID
expect 2 "revoke of an ID that is not 16 hex characters is a usage error"
run "$NODE" token creat --home n-politie-mn
expect 2 "a mistyped subcommand is a usage error"
run "$NODE" token list --home n-politie-mn --json
check "none of those made a token" test "$("$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["tokens"]))' "$T/.out")" = 1

run "$NODE" token revoke --home n-politie-mn "$ID"
expect 0 "token revoke"
stdout_says "revoked $ID" "says what it revoked"
check "the revoked token is refused: 401" test "$(api GET /v1/inbox "$TOKEN")" = 401
run "$NODE" token revoke --home n-politie-mn "$ID"
expect 1 "revoking it again fails"
says "revoked" "saying it was revoked before"
run "$NODE" token list --home n-politie-mn
stdout_says "revoked" "list shows it as revoked"

finish
