# shellcheck shell=bash
#
# hostile_lib.sh - helpers for the hostile-input tests (hostile_*.sh), on
# top of broker_lib.sh. Source it with the programs as arguments:
#   keten-keys keten-node keten-broker keten-test-tool keten-testpeer keten-hostile
#
# keten-hostile (tests/tools/keten-hostile.c) does what no well-behaved
# program does: floods without reading, sends oversize, multi-part, empty
# and malformed ZeroMQ messages, connects without CurveZMQ or with the wrong
# keys, and plays a fake broker that delivers hostile envelopes to a real
# node. Its JSON lines are checked with jl (broker_lib.sh).

HOSTILE=$(realpath "${6:?keten-hostile path}")
. "$(dirname "$0")/broker_lib.sh"

# Whether the programs were built with AddressSanitizer: memory bounds are
# then not measured (the sanitizer's shadow memory and quarantine dominate).
SANITIZED=""
if ldd "$BROKER" 2>/dev/null | grep -q 'libasan'; then
    SANITIZED=1
fi

# hostile ACTION [OPTIONS...]: keten-hostile against the running broker, with
# the broker's directory; output in $T/.out as with `run`.
hostile() {
    local action=$1
    shift
    run timeout 120 "$HOSTILE" "$action" --anchor admin/network.pub \
        --directory "${PEER_DIR:-dir.v1}" --broker "$ENDPOINT" "$@"
}

# todo DESCRIPTION REASON CMD...: a test of a known, reported defect. TAP
# "# TODO": a failure does not fail the suite; a pass is reported as an
# unexpected pass, so that the marker is removed once the defect is fixed.
todo() {
    local what=$1 why=$2
    shift 2
    TESTS=$((TESTS + 1))
    if "$@"; then
        echo "ok $TESTS - $what # TODO $why"
    else
        echo "not ok $TESTS - $what # TODO $why"
    fi
}

# skip DESCRIPTION REASON: a test that cannot run in this build.
skip() {
    TESTS=$((TESTS + 1))
    echo "ok $TESTS - $1 # SKIP $2"
}

# mem FIELD: the broker's FIELD (VmRSS, VmHWM, RssAnon, RssFile) in KiB.
mem() {
    sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$BPID/status" 2>/dev/null
}

# A reply that the policy allows (police -> municipality, adrescheck, reply),
# sent by a well-behaved node to see whether the broker still serves.
make_probe_signal() {
    sed 's/"woonfraude"/"adrescheck"/' signal.json >probe.json
}

# probe_ack: politie-mn submits one message and waits (60 s at most) for its
# ack; true when the ack came and verifies.
probe_ack() {
    peer politie-mn --timeout-ms 60000 submit --to gemeente-diemen --kind reply \
        --json probe.json
    "$PY" - "$T/.out" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
sys.exit(0 if [e for e in L if e.get("event") == "ack" and e.get("valid")] else 1)
PY
}

# still_serving WHAT: ok when a well-behaved node's submit is acknowledged.
still_serving() {
    check "after $1, another node's submit is still acknowledged" probe_ack
}

broker_alive() {
    ! broker_gone
}

# no_sanitizer_report: the broker's log holds no sanitizer report.
no_sanitizer_report() {
    if ! check "no sanitizer report in the broker's log (a log at $BLOG)" \
        lacks grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' \
        "$BLOG"; then
        grep -E -A5 'Sanitizer|runtime error:' "$BLOG" | sed 's/^/# /' | head -n 30
    fi
}
