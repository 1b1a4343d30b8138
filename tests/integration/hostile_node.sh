#!/usr/bin/env bash
# A real keten-node against a broker that delivers hostile envelopes
# (keten-hostile fake-broker, which holds the real broker's transport key so
# that the node connects, and checks nothing). The node is the last line of
# defence, so it re-checks everything itself:
#   - an envelope that expired before it was delivered (what a node whose
#     clock runs ahead, or a broker that holds a message back, produces) is
#     refused: no receipt, the credit is returned, nothing stored;
#   - so are an envelope the sharing policy forbids (the broker should have
#     refused it), one addressed to another node, and one with a flipped
#     ciphertext byte;
#   - a valid envelope is stored and receipted (the control), and delivered
#     again, also after a restart of the node, it is receipted again but
#     stored only once (replay).
#   - an envelope dated an hour ahead (a sender whose clock runs ahead, let
#     through by a broker that skips its clock window) is accepted: the protocol
#     section 4 has recipients check expiry, not the creation time.
# The library-level twins (open at expires_at - 1 ms and at expires_at) are in
# tests/unit/test_envelope.c (test_expired_envelope_at_open).
. "$(dirname "$0")/hostile_lib.sh"

setup_broker_network || done_testing
FAKE_EP="ipc://$T/fake.ipc"
NPID=""
FPID=""

stop_bg() {
    local p
    for p in $NPID $FPID; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null
            wait_for 5 bash -c "! kill -0 $p 2>/dev/null" || kill -KILL "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        fi
    done
    NPID=""
    FPID=""
}
trap 'stop_bg; cleanup_broker; rm -rf "$T"' EXIT

# start_fake NAME FILE...: the fake broker delivering FILEs in turn, its JSON
# lines in fake-NAME.out; waits until it listens.
start_fake() {
    local name=$1 f args=()
    shift
    for f in "$@"; do
        args+=(--deliver "$f")
    done
    : >"fake-$name.out"
    timeout 120 "$HOSTILE" fake-broker --home broker --anchor admin/network.pub \
        --directory dir.v1 --listen "$FAKE_EP" --timeout-ms 20000 "${args[@]}" \
        >"fake-$name.out" 2>>fake.err &
    FPID=$!
    wait_for 10 grep -q '"event":"ready"' "fake-$name.out"
}

start_node() {
    "$NODE" run --home n-politie-mn --anchor admin/network.pub --directory dir.v1 \
        --broker "$FAKE_EP" --inclusion-timeout-ms 600000 >>node.log 2>&1 &
    NPID=$!
}

# stop_node: SIGTERM; NRC is its exit code.
stop_node() {
    kill -TERM "$NPID" 2>/dev/null
    wait_for 10 bash -c "! kill -0 $NPID 2>/dev/null"
    wait "$NPID"
    NRC=$?
    NPID=""
}

# fake_done NAME: wait for the fake broker to finish its deliveries.
fake_done() {
    wait_for 60 bash -c "! kill -0 $FPID 2>/dev/null"
    wait "$FPID" 2>/dev/null
    FPID=""
    cp "fake-$1.out" "$T/.out"
}

inbox_count() {
    "$NODE" inbox --home n-politie-mn --json --all 2>/dev/null | grep -cF "\"msg_id\":\"$1\""
}

status_is() {
    "$NODE" status --home n-politie-mn --json >"$T/.st" 2>/dev/null
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$T/.st" "$1" 2>/dev/null
}

# ---- the envelopes (sealed by real senders' keys, never submitted) -------------

peer gemeente-diemen seal --to politie-mn --json signal.json --out fresh.env
FRESH=$(jget 'E("sealed")[0]["msg_id"]')
peer gemeente-diemen seal --to politie-mn --json signal.json --expires-in-ms 1000 --out expired.env
EXPIRED=$(jget 'E("sealed")[0]["msg_id"]')
peer woonstad seal --to politie-mn --json signal.json --out policy.env
peer gemeente-diemen seal --to belastingdienst --json signal.json --out other.env
peer gemeente-diemen seal --to politie-mn --json signal.json --created-at-offset-ms 3600000 \
    --out future.env
FUTURE=$(jget 'E("sealed")[0]["msg_id"]')
peer gemeente-diemen seal --to politie-mn --json signal.json --out tampered.env
"$PY" -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[-200]^=1; open(p,"wb").write(d)' \
    tampered.env
check "six envelopes sealed" test -s fresh.env -a -s expired.env -a -s policy.env -a -s other.env \
    -a -s tampered.env -a -s future.env
sleep 1.5 # expired.env expires

# ---- round 1 ----------------------------------------------------------------------

start_fake one fresh.env expired.env policy.env other.env tampered.env fresh.env
check "the fake broker listens" test -s fake-one.out
start_node
fake_done one
jl 'E("connected")' "the node connects to the fake broker (it holds the broker's transport key)"
answer() {
    jl "E('answer')[$1]['answer'] == '$2'" "$3"
}
answer 0 receipt "a valid envelope is receipted (the control)"
jl "E('answer')[0]['receipt_valid'] and E('answer')[0]['msg_id'] == '$FRESH'" \
    "the receipt verifies under politie-mn's certificate and names the message"
answer 1 credit "an envelope that expired before delivery is refused: no receipt, credit returned"
answer 2 credit "an envelope the policy forbids (housing -> police, default deny) is refused"
answer 3 credit "an envelope addressed to another node is refused"
answer 4 credit "an envelope with one flipped ciphertext byte is refused"
answer 5 receipt "the valid envelope delivered again is receipted again"
check "the expired one was refused for its expiry" \
    grep -q 'msg="delivery refused".*error="expired"' node.log
check "the forbidden one by the policy" \
    grep -q 'msg="delivery refused".*error="refused by the sharing policy"' node.log
check "the misaddressed one as not a recipient" \
    grep -q 'msg="delivery refused".*error="not a recipient"' node.log
check "the tampered one by its signature" \
    grep -q 'msg="delivery refused".*error="signature does not verify"' node.log
check "the repeated delivery is logged as a duplicate" \
    grep -q 'msg="duplicate delivery receipted again"' node.log
grep -E 'msg="(delivery refused|duplicate delivery)' node.log | sed 's/^/# /' 
check "the inbox holds the valid message once" test "$(inbox_count "$FRESH")" -eq 1
check "and not the expired one" test "$(inbox_count "$EXPIRED")" -eq 0
run "$NODE" inbox --home n-politie-mn --json --all
jl 'len(L) == 1' "the inbox holds nothing else"
check "status counts 1 received, 4 rejected, 1 duplicate" \
    status_is 'd["counters"]["received"] == 1 and d["counters"]["rejected"] == 4 and d["counters"]["duplicates"] == 1'
stop_node
check "the node stops cleanly (exit 0)" test "$NRC" -eq 0

# ---- round 2: after a restart -------------------------------------------------------

start_fake two fresh.env expired.env future.env
start_node
fake_done two
answer 0 receipt "after a restart, the old valid envelope delivered again is receipted again"
answer 1 credit "and the expired one is still refused"
check "the inbox still holds the valid message once (the replay is not stored)" \
    test "$(inbox_count "$FRESH")" -eq 1
answer 2 receipt \
    "an envelope dated 1 h ahead is accepted: recipients check expiry, not creation time (the broker's clock window does)"
check "it is in the inbox" test "$(inbox_count "$FUTURE")" -eq 1
check "status counts the replay as a duplicate, not as received" \
    status_is 'd["counters"]["received"] == 1 and d["counters"]["duplicates"] == 1 and d["counters"]["rejected"] == 1'
stop_node
check "the node stops cleanly (exit 0)" test "$NRC" -eq 0
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' node.log fake.err; then
    not_ok "no sanitizer report in the node's log"
else
    ok "no sanitizer report in the node's log"
fi
done_testing
