# shellcheck shell=bash
#
# node_lib.sh - helpers for the node's integration tests, on top of lib.sh:
# a real network (keten-keys), the real keten-broker and keten-node daemons
# on ipc:// sockets in the test's temporary directory, and waiting with
# timeouts. Every daemon started here is stopped when the script exits (also
# on failure): first SIGTERM, then SIGKILL after 5 s; no process is left.
#
# Arguments (after lib.sh's four): keten-fakebroker keten-tamper.

# shellcheck disable=SC2034 # used by the scripts that source this file
FAKEBROKER=$(realpath "${5:?keten-fakebroker path}")
# shellcheck disable=SC2034
TAMPER=$(realpath "${6:?keten-tamper path}")

. "$(dirname "$0")/lib.sh"

declare -A PID=()   # name -> pid of a daemon started by start_*
BAD_STOPS=""        # daemons that did not exit 0 on SIGTERM
BROKER_EP="ipc://$T/broker.sock"

stop_one() {
    local name=$1 pid=${PID[$1]:-} i
    [ -n "$pid" ] || return 0
    # A stopped daemon (the fault tests stop some) is resumed first, then
    # asked to stop. Never SIGCONT after SIGTERM: a SIGCONT discards a pending
    # SIGSTOP, such as the one LeakSanitizer's exit check sends to suspend the
    # process, which then waits for ever.
    kill -CONT "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    STOP_RC=$?
    if [ "$STOP_RC" -ne 0 ]; then
        BAD_STOPS="$BAD_STOPS $name:$STOP_RC"
    fi
    unset "PID[$name]"
}

stop_all() {
    local name
    for name in "${!PID[@]}"; do
        stop_one "$name"
    done
}

# kill -9 NAME: no clean shutdown.
kill9() {
    local pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "PID[$1]"
}

trap 'stop_all; rm -rf "$T"' EXIT

# finish: stop every daemon, check that each stopped cleanly (exit 0 on
# SIGTERM) and that no sanitizer reported anything in their logs, and end
# the TAP output.
finish() {
    stop_all
    check "every daemon stopped cleanly on SIGTERM (exit 0)${BAD_STOPS:+:$BAD_STOPS}" \
        test -z "$BAD_STOPS"
    check "no sanitizer report in the daemons' logs" lacks grep -lE \
        'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$T"/*.log
    done_testing
}

# wait_until SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_until() {
    local limit=$1
    shift
    for _ in $(seq 1 $((limit * 5))); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# publish_dir ADMIN OUT: publish the next version, signed by admins 1 and 2.
publish_dir() {
    publish_signed "$1" "$2"
}

# setup_network: make_network (lib.sh) plus a deny rule, published as
# directory.signed.
setup_network() {
    make_network admin || return 1
    run "$KEYS" policy --dir admin deny --from role:municipality --to role:housing \
        --category adrescheck --kind signal
    [ "$RC" -eq 0 ] || { not_ok "policy deny"; return 1; }
    publish_dir admin directory.signed
}

# start_broker [ARGS...]: the real broker (ARGS added to its command line).
start_broker() {
    "$BROKER" run --home broker --anchor admin/network.pub --directory directory.signed \
        --listen "$BROKER_EP" --checkpoint-ms 200 "$@" >>"$T/broker.log" 2>&1 &
    PID[broker]=$!
}

# start_node ID [ARGS...]: the node daemon of n-ID against the broker.
start_node() {
    local id=$1
    shift
    "$NODE" run --home "n-$id" --anchor admin/network.pub --directory directory.signed \
        --broker "$BROKER_EP" "$@" >>"$T/node-$id.log" 2>&1 &
    PID[$id]=$!
}

# node_running ID: the node's daemon answers (status prints its JSON; the
# exit code also says whether it is connected).
node_running() {
    "$NODE" status --home "n-$1" --json 2>/dev/null | grep -q '"node"'
}

# json_is FILE EXPR: the Python expression EXPR holds for the JSON in FILE
# (d): exit 0 when it holds, 1 when it does not, 2 when FILE holds no JSON or
# EXPR cannot be evaluated on it (no answer: lacks fails on it).
json_is() {
    "$PY" -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    holds = eval(sys.argv[2])
except Exception:
    sys.exit(2)
sys.exit(0 if holds else 1)' "$1" "$2" 2>/dev/null
}

# node_status_is ID EXPR: the node's status --json satisfies EXPR (d =
# status); exit 2 when the status could not be read (as json_is).
node_status_is() {
    "$NODE" status --home "n-$1" --json >"$T/.st-$1" 2>/dev/null
    json_is "$T/.st-$1" "$2"
}

# msg_status_is ID MSG EXPR: status MSG --json of node ID satisfies EXPR.
msg_status_is() {
    "$NODE" status --home "n-$1" "$2" --json >"$T/.ms-$1" 2>/dev/null
    json_is "$T/.ms-$1" "$3"
}

connected() {
    node_status_is "$1" 'd["connected"]'
}

# inbox_has ID MSG: MSG is in the node's inbox (handled or not); exit 2 when
# the inbox could not be listed.
inbox_has() {
    local list
    list=$("$NODE" inbox --home "n-$1" --json --all 2>/dev/null) || return 2
    grep -qF "\"msg_id\":\"$2\"" <<<"$list"
}

# printed_msg_id WHAT: the last command (a send or reply) printed one
# msg_id and nothing else on standard output.
printed_msg_id() {
    check "$1: it prints the msg_id" grep -qxE '[0-9a-f]{32}' "$T/.out"
}

# inbox_count ID MSG: how many times MSG is listed in the node's inbox
# (nothing printed when the inbox could not be listed).
inbox_count() {
    local list
    list=$("$NODE" inbox --home "n-$1" --json --all 2>/dev/null) || return 2
    grep -cF "\"msg_id\":\"$2\"" <<<"$list"
}

# signal FILE TYPE SUMMARY: write a signal JSON in the form keten prints it.
signal() {
    cat >"$1" <<JSON
{"type":"$2","purpose":"riec-convenant-2024/art-5","summary":"$3","nature":"soft","grading":{"source":"B","information":"2"},"handling":"TLP:AMBER","observed_at":"2026-11-19T10:30:00.000Z","observed_by":"handhaver","subjects":[{"kind":"address","value":"Hoofdstraat 1, 1111 AA Diemen"},{"kind":"company","value":"KvK 12345678"}]}
JSON
}

# metrics_port ID: the port node ID serves its metrics on (from its log; a
# node started with --metrics 127.0.0.1:0). metric_is needs curl.
metrics_port() {
    sed -n 's/.*msg="metrics served".* port=\([0-9]*\).*/\1/p' "$T/node-$1.log" | tail -n 1
}

has_metrics_port() {
    [ -n "$(metrics_port "$1")" ]
}

# metric_is ID NAME PYTHON_EXPR: the expression holds for v, the metric's
# value; exit 2 when the page could not be read or lacks the metric.
metric_is() {
    local page v
    page=$(curl -sf "http://127.0.0.1:$(metrics_port "$1")/metrics") || return 2
    v=$(awk -v n="$2" '$1 == n { print $2 }' <<<"$page")
    [ -n "$v" ] || return 2
    "$PY" -c 'import sys; v = int(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' "$v" "$3"
}

# ---- a fake broker (keten-fakebroker) ------------------------------------------------

FAKE_EP="ipc://$T/fake.sock"

# start_fake MODE [ARGS...]: the fake broker, its events in fake-MODE.out.
# shellcheck disable=SC2317 # called through require
start_fake() {
    local mode=$1
    shift
    "$FAKEBROKER" --home broker --anchor admin/network.pub --directory directory.signed \
        --listen "$FAKE_EP" --mode "$mode" "$@" >"$T/fake-$mode.out" 2>>"$T/fake.err" &
    PID[fake]=$!
    FAKE_OUT="$T/fake-$mode.out"
    wait_until 10 grep -qx ready "$FAKE_OUT"
}

# start_on_fake ID [ARGS...]: node ID with a fresh store against the fake broker.
start_on_fake() {
    local id=$1
    shift
    rm -rf "n-$id/store"
    "$NODE" run --home "n-$id" --anchor admin/network.pub \
        --directory directory.signed --broker "$FAKE_EP" "$@" >>"$T/node-$id.log" 2>&1 &
    PID[$id]=$!
}

# alarmed [ID]: the node's status exits 3 (an alarm; gemeente-diemen by default).
# shellcheck disable=SC2317 # called through wait_until
alarmed() {
    "$NODE" status --home "n-${1:-gemeente-diemen}" >/dev/null 2>&1
    [ $? -eq 3 ]
}

# alarm_is ID KIND [TEXT]: the node holds an alarm of KIND (whose detail has TEXT).
# shellcheck disable=SC2317 # called through check
alarm_is() {
    node_status_is "$1" "any(a['kind'] == '$2' and '${3:-}' in a['detail'] for a in d['alarms'])"
}
