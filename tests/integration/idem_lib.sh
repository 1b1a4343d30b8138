# The HTTP helpers of the idempotency tests (node_idempotency.sh,
# node_idem_answer.sh), for one node's API. Source after node_lib.sh, with
# API_NODE (the node id) and API_PORT (its --api-listen port) set.

# unix METHOD PATH [BODY_FILE] [CURL ARGS...]: on API_NODE's api.sock.
# CODE, $T/.out.
unix() {
    local method=$1 path=$2 file=${3:-}
    shift 3 2>/dev/null || shift $#
    local args=(-sS --max-time 40 --unix-socket "n-$API_NODE/api.sock" -X "$method"
        -o "$T/.out" -w '%{http_code}' "$@")
    [ -n "$file" ] && args+=(-H "Content-Type: application/json" --data-binary "@$file")
    CODE=$(curl "${args[@]}" "http://node$path" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}

# tcp TOKEN METHOD PATH BODY_FILE [CURL ARGS...]: on API_NODE's api-listen
# with the token of that name (TOK, made by make_tokens).
tcp() {
    local tok=$1 method=$2 path=$3 file=$4
    shift 4
    CODE=$(curl -sS --max-time 40 -X "$method" -o "$T/.out" -w '%{http_code}' \
        -H "Authorization: Bearer ${TOK[$tok]}" -H "Content-Type: application/json" \
        --data-binary "@$file" "$@" "http://127.0.0.1:$API_PORT$path" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}

is() {
    local code=$1 what=$2 expr=${3:-True}
    check "$what (HTTP $code)" test "$CODE" = "$code" || { sed 's/^/# /' "$T/.all"; echo; }
    check "$what: the answer holds" json_is "$T/.out" "$expr" || { sed 's/^/# /' "$T/.out"; echo; }
}
jv() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/.out" "$1"; }
problem() { echo "d['type'] == 'urn:keten:problem:$1' and d['status'] == $CODE and d['detail'] and d['exit'] in (1, 2, 3)"; }

# sent_count: how many messages API_NODE's sent list (GET /v1/sent) holds
# (empty when it could not be read).
sent_count() {
    curl -sS --max-time 20 --unix-socket "n-$API_NODE/api.sock" -o "$T/.sent" \
        "http://node/v1/sent" 2>/dev/null || return 2
    "$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["messages"]))' "$T/.sent"
}
sent_is() { test "$(sent_count)" = "$1"; }

# make_tokens NAME...: a read+send token of each name on API_NODE, in TOK.
declare -A TOK=()
make_tokens() {
    local name
    for name in "$@"; do
        unix POST /v1/tokens "" -H "Content-Type: application/json" \
            --data-binary "{\"name\":\"$name\",\"scopes\":[\"read\",\"send\"]}"
        check "token $name is made (HTTP 201)" test "$CODE" = 201 || sed 's/^/# /' "$T/.all"
        TOK[$name]=$(jv token)
    done
}
