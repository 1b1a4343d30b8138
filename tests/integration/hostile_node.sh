#!/usr/bin/env bash
# A real keten-node against a broker that delivers hostile envelopes
# (keten-hostile fake-broker, which holds the real broker's transport and log
# keys so that the node connects and accepts its checkpoints, keeps a real
# Merkle log in fakelog/ across its runs, and checks nothing else). Every
# delivery carries the proof of the envelope's `submitted` record against a
# checkpoint the node verified first. The node is the last line of defence,
# so it re-checks everything itself, and answers each commit with one
# receipt batch: a leaf per delivery, stored or refused with a reason:
#   - an envelope that expired before it was delivered (what a node whose
#     clock runs ahead, or a broker that holds a message back, produces) is
#     refused (leaf REFUSED, reason EXPIRED), nothing stored;
#   - so is an envelope the sharing policy forbids (the broker should have
#     refused it: REFUSED, POLICY) and one with a flipped ciphertext byte
#     (REFUSED, BAD_SIGNATURE: the sender's signature covers the ciphertext's
#     hash and is checked before anything is decrypted);
#   - one addressed to another node comes with a record that does not list
#     this node: the broker proves it misdelivered, which is an alarm
#     (bad-proof), no leaf, the credit returned, nothing stored;
#   - a valid envelope is stored and receipted (the control), and delivered
#     again, also after a restart of the node (which says Hello with the size
#     of the checkpoint it holds and is proven consistent from it), it is
#     receipted again (leaf STORED) but stored only once (replay);
#   - an envelope dated an hour ahead (a sender whose clock runs ahead, let
#     through by a broker that skips its clock window) is refused (REFUSED,
#     CLOCK_SKEW): recipients allow 5 minutes, as the broker's default
#     window (docs/protocol.md, "Times"); one dated 4 minutes ahead is
#     stored (the twin);
#   - a delivery whose proof does not lead to the signed root (one path hash
#     changed) is not stored and gets no leaf, the node raises a bad-proof
#     alarm (keten-node status exits 3) and keeps the frame as evidence; the
#     same envelope with its true proof is then stored (the twin).
# The library-level twins (open at expires_at - 1 ms and at expires_at) are in
# tests/unit/test_envelope.c (test_expired_envelope_at_open).
. "$(dirname "$0")/hostile_lib.sh"

setup_broker_network || done_testing
FAKE_EP="ipc://$T/fake.ipc"
NPID=""
FPID=""
HOME_N=n-politie-mn

stop_bg() {
    local p
    for p in $NPID $FPID; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null
            wait_for 5 lacks kill -0 "$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        fi
    done
    NPID=""
    FPID=""
}
trap 'stop_bg; cleanup_broker; rm -rf "$T"' EXIT

# start_fake NAME [--deliver FILE | --deliver-bad-proof FILE]...: the fake
# broker delivering the FILEs in turn (its log in fakelog/, kept between its
# runs), its JSON lines in fake-NAME.out; waits until it listens.
start_fake() {
    local name=$1
    shift
    : >"fake-$name.out"
    timeout 120 "$HOSTILE" fake-broker --home broker --anchor admin/network.pub \
        --directory dir.v1 --listen "$FAKE_EP" --log fakelog --timeout-ms 20000 "$@" \
        >"fake-$name.out" 2>>fake.err &
    FPID=$!
    wait_for 10 grep -q '"event":"ready"' "fake-$name.out"
}

# start_node: keten-node run as $HOME_N against the fake broker.
start_node() {
    "$NODE" run --home "$HOME_N" --anchor admin/network.pub --directory dir.v1 \
        --broker "$FAKE_EP" >>node.log 2>&1 &
    NPID=$!
}

# stop_node: SIGTERM; NRC is its exit code.
stop_node() {
    kill -TERM "$NPID" 2>/dev/null
    wait_for 10 lacks kill -0 "$NPID" 2>/dev/null
    wait "$NPID"
    NRC=$?
    NPID=""
}

# fake_done NAME: wait for the fake broker to finish its deliveries.
fake_done() {
    wait_for 60 lacks kill -0 "$FPID" 2>/dev/null
    wait "$FPID" 2>/dev/null
    FPID=""
    cp "fake-$1.out" "$T/.out"
}

# inbox_count MSG: how many times the node's inbox lists MSG (nothing when
# the inbox could not be listed, so that a test of 0 fails).
inbox_count() {
    local list
    list=$("$NODE" inbox --home "$HOME_N" --json --all 2>/dev/null) || return 2
    grep -cF "\"msg_id\":\"$1\"" <<<"$list"
}

# status_is PYTHON_EXPR: over `keten-node status --json` (d); SRC is its exit
# code (3 while the node holds an alarm).
status_is() {
    "$NODE" status --home "$HOME_N" --json >"$T/.st" 2>/dev/null
    SRC=$?
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$T/.st" "$1" 2>/dev/null
}

# answer N WHAT [REASON] DESCRIPTION: the fake broker's answer N (stored,
# refused with REASON, credit: no leaf, the credit returned).
answer() {
    if [ "$#" -eq 4 ]; then
        jl "E('answer')[$1]['answer'] == '$2' and E('answer')[$1]['reason'] == '$3'" "$4"
    else
        jl "E('answer')[$1]['answer'] == '$2'" "$3"
    fi
}

# leaves ID: how many receipt batch leaves named message ID in this run.
leaves() {
    jget "len([e for e in E('leaf') if e['msg_id'] == '$1'])"
}

# ---- the envelopes (sealed by real senders' keys, never submitted) -------------

peer gemeente-diemen seal --to politie-mn --json signal.json --out fresh.env
FRESH=$(jget 'E("sealed")[0]["msg_id"]')
peer gemeente-diemen seal --to politie-mn --json signal.json --expires-in-ms 1000 --out expired.env
EXPIRED=$(jget 'E("sealed")[0]["msg_id"]')
peer woonstad seal --to politie-mn --json signal.json --out policy.env
POLICY=$(jget 'E("sealed")[0]["msg_id"]')
peer gemeente-diemen seal --to belastingdienst --json signal.json --out other.env
OTHER=$(jget 'E("sealed")[0]["msg_id"]')
peer gemeente-diemen seal --to politie-mn --json signal.json --created-at-offset-ms 3600000 \
    --out future.env
FUTURE=$(jget 'E("sealed")[0]["msg_id"]')
peer gemeente-diemen seal --to politie-mn --json signal.json --created-at-offset-ms 240000 \
    --out near.env
NEAR=$(jget 'E("sealed")[0]["msg_id"]')
peer gemeente-diemen seal --to politie-mn --json signal.json --out tampered.env
TAMPERED=$(jget 'E("sealed")[0]["msg_id"]')
"$PY" -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[-200]^=1; open(p,"wb").write(d)' \
    tampered.env
peer gemeente-diemen seal --to belastingdienst --json signal.json --out tax.env
TAX=$(jget 'E("sealed")[0]["msg_id"]')
check "eight envelopes sealed" test -s fresh.env -a -s expired.env -a -s policy.env -a -s other.env \
    -a -s tampered.env -a -s future.env -a -s near.env -a -s tax.env
sleep 1.5 # expired.env expires

# ---- round 1 ----------------------------------------------------------------------

start_fake one --deliver fresh.env --deliver expired.env --deliver policy.env \
    --deliver other.env --deliver tampered.env --deliver fresh.env
check "the fake broker listens" test -s fake-one.out
start_node
fake_done one
jl 'E("connected")' "the node connects to the fake broker (it holds the broker's transport key)"
jl 'E("hello") and E("hello")[0]["tree_size"] == 0' "a node without a checkpoint says Hello with size 0"
jl 'E("log")[0]["old_size"] == 0 and E("log")[0]["size"] == 5 and not E("record")[5]["new"]' \
    "the fake broker's log: one submitted record per message (the repeated one proven by its first)"
jl 'E("checkpoint")[0]["old_size"] == 0 and E("checkpoint")[0]["size"] == 5' \
    "the checkpoint of size 5 goes to the node before any delivery"
answer 0 stored "a valid envelope is receipted, outcome stored (the control)"
jl "E('answer')[0]['receipt_valid'] and E('answer')[0]['msg_id'] == '$FRESH'" \
    "the receipt batch verifies under politie-mn's certificate and its leaf names the message"
answer 1 refused EXPIRED "an envelope that expired before delivery is refused: leaf REFUSED, EXPIRED"
answer 2 refused POLICY "an envelope the policy forbids (housing -> police, default deny) is refused: POLICY"
# v1 refused the misaddressed envelope as "not a recipient"; in v2 the broker's
# own record (listing belastingdienst only) proves the misdelivery before the
# envelope is opened: an alarm, no leaf, the credit returned.
answer 3 credit "an envelope addressed to another node gets no leaf: the credit is returned"
# Flipping a ciphertext byte breaks the sender's signature (it covers the
# ciphertext's hash), checked before anything is decrypted.
answer 4 refused BAD_SIGNATURE "an envelope with one flipped ciphertext byte is refused: BAD_SIGNATURE"
answer 5 stored "the valid envelope delivered again is receipted again (outcome stored)"
jl "all(e['receipt_valid'] for e in E('answer') if e['answer'] in ('stored', 'refused'))" \
    "every receipt batch verifies under the recipient's certificate"
check "no leaf names the misaddressed envelope" test "$(leaves "$OTHER")" -eq 0
check "one leaf each for the expired, forbidden and tampered ones" \
    test "$(leaves "$EXPIRED")" -eq 1 -a "$(leaves "$POLICY")" -eq 1 -a "$(leaves "$TAMPERED")" -eq 1
check "two leaves for the valid one (delivered twice)" test "$(leaves "$FRESH")" -eq 2
check "the expired one was refused for its expiry" \
    grep -q 'msg="delivery refused".*error="expired" reason=EXPIRED' node.log
check "the forbidden one by the policy" \
    grep -q 'msg="delivery refused".*error="refused by the sharing policy" reason=POLICY' node.log
check "the misaddressed one as not listing this node (bad-proof alarm)" \
    grep -q 'alarm.*bad-proof.*the record does not list this node' node.log
check "the tampered one by its signature" \
    grep -q 'msg="delivery refused".*error="signature does not verify" reason=BAD_SIGNATURE' node.log
check "the repeated delivery is logged as a duplicate" \
    grep -q 'msg="duplicate delivery receipted again"' node.log
grep -E 'msg="(delivery refused|duplicate delivery)|bad-proof' node.log | sed 's/^/# /'
check "the inbox holds the valid message once" test "$(inbox_count "$FRESH")" -eq 1
check "and not the expired one" test "$(inbox_count "$EXPIRED")" -eq 0
run "$NODE" inbox --home "$HOME_N" --json --all
jl 'len(L) == 1' "the inbox holds nothing else"
check "status counts 1 received, 4 rejected, 1 duplicate" \
    status_is 'd["counters"]["received"] == 1 and d["counters"]["rejected"] == 4 and d["counters"]["duplicates"] == 1'
check "status shows one alarm, bad-proof, for the misaddressed delivery, with its frame as evidence" \
    status_is 'len(d["alarms"]) == 1 and d["alarms"][0]["kind"] == "bad-proof" and "does not list this node" in d["alarms"][0]["detail"] and d["evidence"] == 1'
check "and exits 3 (an alarm is held)" test "$SRC" -eq 3
stop_node
check "the node stops cleanly (exit 0)" test "$NRC" -eq 0

# ---- round 2: after a restart -------------------------------------------------------

start_fake two --deliver fresh.env --deliver expired.env --deliver future.env --deliver near.env
start_node
fake_done two
jl 'E("hello")[0]["tree_size"] == 5' "the restarted node says Hello with the size of the checkpoint it holds"
jl 'E("log")[0]["old_size"] == 5 and E("log")[0]["size"] == 7 and [e["new"] for e in E("record")] == [False, False, True, True]' \
    "the fake broker's log grows by the two new messages"
jl 'E("checkpoint")[0]["old_size"] == 5 and E("checkpoint")[0]["size"] == 7 and E("checkpoint")[0]["consistency"] > 0' \
    "its checkpoint of size 7 comes with a consistency proof from 5"
answer 0 stored "after a restart, the old valid envelope delivered again is receipted again"
answer 1 refused EXPIRED "and the expired one is still refused for its expiry"
check "the inbox still holds the valid message once (the replay is not stored)" \
    test "$(inbox_count "$FRESH")" -eq 1
answer 2 refused CLOCK_SKEW \
    "an envelope dated 1 h ahead is refused: CLOCK_SKEW (recipients allow 5 minutes, as the broker's window)"
check "the one dated 1 h ahead was refused for its creation time" \
    grep -q 'msg="delivery refused".*reason=CLOCK_SKEW.*ahead of this node.s clock' node.log
check "it is not in the inbox" test "$(inbox_count "$FUTURE")" -eq 0
answer 3 stored "an envelope dated 4 minutes ahead, within the 5 minutes, is stored (the twin)"
check "it is in the inbox" test "$(inbox_count "$NEAR")" -eq 1
check "status counts the replay as a duplicate, not as received" \
    status_is 'd["counters"]["received"] == 1 and d["counters"]["duplicates"] == 1 and d["counters"]["rejected"] == 2'
check "the checkpoint proven from the node's own is accepted: no new alarm" \
    status_is 'd["counters"]["checkpoints_accepted"] == 1 and d["counters"]["checkpoints_refused"] == 0 and len(d["alarms"]) == 1'
stop_node
check "the node stops cleanly (exit 0)" test "$NRC" -eq 0

# ---- round 3: a proof that does not lead to the signed root (another node) ----------

HOME_N=n-belastingdienst
start_fake three --deliver other.env
start_node
fake_done three
answer 0 stored "the envelope for belastingdienst, delivered to it with its proof, is stored"
check "status of belastingdienst: no alarm, exit 0" status_is 'len(d["alarms"]) == 0'
check "and exits 0" test "$SRC" -eq 0
stop_node
start_fake four --deliver-bad-proof tax.env --deliver tax.env
start_node
fake_done four
jl 'E("answer")[0]["bad_proof"] and not E("answer")[1]["bad_proof"]' \
    "the first delivery of tax.env has one path hash changed, the second its true proof"
answer 0 credit "a delivery whose proof does not lead to the signed root: no leaf, the credit returned"
answer 1 stored "the same envelope with its true proof is stored (the twin)"
check "exactly one leaf names it, the stored one" test "$(leaves "$TAX")" -eq 1
check "the bad proof raised a bad-proof alarm" \
    grep -q 'alarm.*bad-proof.*a proof that does not hold' node.log
check "status: one alarm, bad-proof, and the frame kept as evidence" \
    status_is 'len(d["alarms"]) == 1 and d["alarms"][0]["kind"] == "bad-proof" and "does not hold" in d["alarms"][0]["detail"] and d["evidence"] == 1'
check "keten-node status exits 3" test "$SRC" -eq 3
check "the bad-proof delivery was not stored: the true one counts as received, not as a duplicate" \
    status_is 'd["counters"]["received"] == 1 and d["counters"]["duplicates"] == 0 and d["counters"]["rejected"] == 1 and d["counters"]["proofs_failed"] >= 1'
check "the inbox holds it once" test "$(inbox_count "$TAX")" -eq 1
stop_node
check "the node stops cleanly (exit 0)" test "$NRC" -eq 0
check "the fake broker ran every round without a failure" \
    lacks grep -q '"event":"failure"' fake-*.out
check "no sanitizer report in the node's log" \
    lacks grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' node.log fake.err
done_testing
