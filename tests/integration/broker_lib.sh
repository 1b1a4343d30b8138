# shellcheck shell=bash
#
# broker_lib.sh - helpers for the broker's integration tests, on top of
# lib.sh. Source it with the programs as arguments:
#   keten-keys keten-node keten-broker keten-test-tool keten-testpeer
#
# It sets up a real 2-of-3 test network (lib.sh's make_network plus a deny
# rule), starts the real keten-broker on ipc:// inside the test's temporary
# directory, and drives it with keten-testpeer, whose JSON lines are checked
# with python3. Every wait has a timeout; on exit every broker this script
# started is killed (by its pid) before the directory is removed.

PEER=$(realpath "${5:?keten-testpeer path}")
. "$(dirname "$0")/lib.sh"
ENDPOINT="ipc://$T/broker.ipc"
BPID=""
BLOG="$T/broker.log"
METRICS_PORT=""

cleanup_broker() {
    if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
        kill -9 "$BPID" 2>/dev/null
        wait "$BPID" 2>/dev/null
    fi
    BPID=""
}
trap 'cleanup_broker; [ -n "${KEEP_T:-}" ] && echo "# kept $T" || rm -rf "$T"' EXIT


# setup_broker_network: network, v1 published and signed by 2 admins
# (dir.v1), and rule 3: deny municipality -> housing for woonfraude.
setup_broker_network() {
    make_network admin || return 1
    run "$KEYS" policy --dir admin deny --from role:municipality --to role:housing \
        --category woonfraude
    [ "$RC" -eq 0 ] || { not_ok "policy deny"; return 1; }
    publish dir.v1 || return 1
    cat >signal.json <<'EOF'
{"type":"woonfraude","purpose":"handhaving","summary":"Adres staat op naam van 9 personen",
 "nature":"soft","grading":{"source":"B","information":"2"},"handling":"TLP:AMBER",
 "subjects":[{"kind":"address","value":"Hoofdstraat 1, 1111 AA Diemen"}]}
EOF
}

# publish FILE: publish the next version from admin, signed by admins 1, 2.
publish() {
    publish_signed admin "$1"
}

broker_ready() {
    grep -q 'msg="broker running"' "$BLOG" 2>/dev/null
}

# start_broker [OPTIONS...]: run the broker on dir.v1 (or BROKER_DIR) in the
# background; waits (10 s at most) until it says it is running.
start_broker() {
    : >"$BLOG"
    "$BROKER" run --home broker --anchor admin/network.pub \
        --directory "${BROKER_DIR:-dir.v1}" --listen "$ENDPOINT" "$@" 2>>"$BLOG" &
    BPID=$!
    if ! wait_for 10 broker_ready; then
        not_ok "the broker starts"
        sed 's/^/# /' "$BLOG" | head -n 20
        cleanup_broker
        return 1
    fi
}

# broker_gone: the broker process has exited (a zombie counts as gone).
broker_gone() {
    [ ! -e "/proc/$BPID" ] || grep -q '^State:[[:space:]]*Z' "/proc/$BPID/status" 2>/dev/null
}

# metrics_port: the port the running broker serves metrics on (started with
# --metrics 127.0.0.1:0, it picks a free one and logs it).
metrics_port() {
    sed -n 's/.*msg="metrics served".* port=\([0-9]*\).*/\1/p' "$BLOG" | tail -n 1
}

# stop_broker [SIGNAL]: SIGTERM (or SIGNAL), wait (5 s at most); BRC is its
# exit code, or -1 if it did not stop in time (it is then killed).
stop_broker() {
    BRC=-1
    [ -n "$BPID" ] || return 1
    kill "-${1:-TERM}" "$BPID" 2>/dev/null
    if wait_for 5 broker_gone; then
        wait "$BPID"
        BRC=$?
        BPID=""
    fi
    cleanup_broker
}

# peer NODE [COMMON OPTIONS] ACTION ...: keten-testpeer as node NODE with the
# broker's directory (or PEER_DIR). Output in $T/.out as with `run`.
peer() {
    local node=$1
    shift
    run timeout 60 "$PEER" --home "n-$node" --anchor admin/network.pub \
        --directory "${PEER_DIR:-dir.v1}" --broker "$ENDPOINT" "$@"
}


# audit: the broker store's audit records as JSON lines in $T/.out.
audit() {
    run "$PEER" audit --db broker/store
}
