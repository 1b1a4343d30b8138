#!/usr/bin/env bash
# Hostile ZeroMQ messages from an authenticated node (keten-hostile frame):
# a message over KETEN_FRAME_MAX makes libzmq drop the peer (ZMQ_MAXMSGSIZE)
# before the broker sees it; a multi-part message, an empty message, a Frame
# without a body, Frames with unknown fields (top level and nested), a
# truncated Frame, a length field that claims 2 GiB, bytes that are no
# protobuf, a frame only the broker sends, and a submit with an empty
# envelope are each refused with an error frame (MALFORMED, or for the empty
# envelope UNKNOWN_SENDER), audited, and the connection goes on; bytes that
# are not even ZMTP make the broker close the stream. After every one of
# them another node's submit is still acknowledged, and the broker stops
# cleanly at the end.
. "$(dirname "$0")/hostile_lib.sh"

setup_broker_network || done_testing
make_probe_signal
start_broker || done_testing
FRAME_MAX=$((16 * 1024 * 1024 + 64 * 1024)) # KETEN_FRAME_MAX (lib/keten.h)

# frame KIND [OPTIONS]: one hostile message from gemeente-diemen.
frame() {
    local kind=$1
    shift
    hostile frame --kind "$kind" --home n-gemeente-diemen --listen-ms 30000 "$@"
}

# ---- size -----------------------------------------------------------------

frame oversize
expect 0 "keten-hostile sends a message of KETEN_FRAME_MAX + 1 bytes"
jl 'E("summary")[0]["disconnected"] >= 1' \
    "a message over KETEN_FRAME_MAX: libzmq drops the peer (ZMQ_MAXMSGSIZE)"
jl 'E("summary")[0]["errors"] == 0 and not [f for f in E("frame") if f["request_id"] == 1]' \
    "the oversize message is never answered: the broker never saw it"
jl 'E("summary")[0]["control_answered"]' \
    "the peer may reconnect and is served again (a later request is answered)"
still_serving "an oversize message"

frame sized --bytes $FRAME_MAX
jl 'E("summary")[0]["disconnected"] == 0' \
    "a Frame of exactly KETEN_FRAME_MAX bytes is received (CurveZMQ's 33 bytes on the wire do not count against it)"
jl 'any(f["request_id"] == 1 and f.get("reason") == "TOO_LARGE" for f in E("frame"))' \
    "and its 16 MiB envelope is refused (TOO_LARGE)"
frame sized --bytes $((FRAME_MAX + 1))
jl 'E("summary")[0]["disconnected"] >= 1 and not [f for f in E("frame") if f["request_id"] == 1]' \
    "one byte more and libzmq drops the peer before anything is allocated"
still_serving "two 16 MiB messages"

# ---- malformed messages -----------------------------------------------------

# malformed KIND RID DETAIL DESCRIPTION: KIND is answered MALFORMED with
# request_id RID and DETAIL, on a connection that goes on.
malformed() {
    frame "$1"
    jl "[f for f in E('frame') if f.get('reason') == 'MALFORMED' and f['request_id'] == $2 and f['detail'] == '$3']" \
        "$4: refused (MALFORMED, \"$3\")"
    jl 'E("summary")[0]["disconnected"] == 0 and E("summary")[0]["control_answered"]' \
        "$4: the connection goes on (a later request on it is answered)"
}

malformed multipart 0 "frame does not parse (one Frame per message)" "a two-part message"
malformed empty 0 "not a frame a node sends" "an empty message"
malformed no-body 7 "not a frame a node sends" "a Frame with a request_id and no body"
malformed unknown-field 0 "frame does not parse (one Frame per message)" \
    "a Frame with an unknown field (1000)"
malformed nested-unknown 0 "frame does not parse (one Frame per message)" \
    "a Frame whose Credit carries an unknown field"
malformed truncated 0 "frame does not parse (one Frame per message)" \
    "the first half of a submit Frame"
malformed huge-length 0 "frame does not parse (one Frame per message)" \
    "a submit whose length field claims 2 GiB"
malformed not-protobuf 0 "frame does not parse (one Frame per message)" "64 bytes of 0xff"
malformed broker-frame 5 "not a frame a node sends" "a Deliver frame sent by a node"
still_serving "nine malformed messages"

frame empty-submit
jl 'len([f for f in E("frame") if f.get("body") == "error" and f["request_id"] == 3]) == 1 and not [f for f in E("frame") if f.get("body") == "submit_ack"]' \
    "a submit with an empty envelope is refused, not acknowledged"
jl '[f for f in E("frame") if f["request_id"] == 3][0]["reason"] == "UNKNOWN_SENDER"' \
    "the empty envelope names no sender (UNKNOWN_SENDER)"

# ---- bytes that are not ZMTP -------------------------------------------------

hostile raw-socket --bytes 4096 --listen-ms 3000
expect 0 "4 KiB of random bytes on the broker's socket, without a ZMTP greeting"
jl 'E("raw")[0]["closed_by_peer"]' "the broker closes the stream"
jl 'E("raw")[0]["read"] < 64' "it sent back nothing but (part of) its ZMTP greeting"
hostile raw-socket --bytes $((8 * 1024 * 1024)) --listen-ms 3000
jl 'E("raw")[0]["closed_by_peer"] and E("raw")[0]["written"] < 8 * 1024 * 1024' \
    "8 MiB of random bytes: the broker closes the stream before taking them all"
still_serving "garbage on the socket"

# ---- the record ------------------------------------------------------------------

audit
jl "len([r for r in L if r['event'] == 'REJECTED' and r['reason'] == 'MALFORMED' and r['sender'] == 'gemeente-diemen']) >= 9" \
    "each malformed message is audited as a refusal (MALFORMED) of the authenticated node"
jl 'any(r["event"] == "REJECTED" and r["reason"] == "TOO_LARGE" for r in L)' \
    "the 16 MiB envelope is audited (TOO_LARGE)"
jl 'all(r["header_bytes"] == 0 for r in L if r["event"] == "REJECTED")' \
    "refusal records hold nothing the peer sent"
jl "len([r for r in L if r['event'] == 'NODE_DISCONNECTED' and r['node'] == 'gemeente-diemen']) >= 3" \
    "the dropped connections are audited (node-disconnected)"

check "the broker is still running" broker_alive
no_sanitizer_report
stop_broker
check "the broker stops with exit 0" test "$BRC" -eq 0
done_testing
