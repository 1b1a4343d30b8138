#!/usr/bin/env bash
# The reject twins of keten-audit verify: each edit of a real broker's log
# (keten-auditedit, on copies of the stopped broker's home) is found at the
# right sequence number and verify exits 3: one byte of one record changed; a
# record deleted from the middle; the last records truncated; two records
# swapped; a checkpoint from a forked log; a sender signature that does not
# match; a record signed by a key revoked before its time. And the controls:
# the untouched copy, and a record appended the same way but signed by a
# current partner, verify. Receipts: a receipted record whose leaf path was
# changed, one whose batch head signature was changed, a refused-by-recipient
# record turned into a receipted one, and a receipt re-signed by the very
# recipient but naming another envelope: each is found at its record.
. "$(dirname "$0")/audit_lib.sh"

make_log || done_testing
# One signal politie-mn refuses (its recipient checks fail: invalid signal),
# so that the log holds a refused-by-recipient record.
peer gemeente-diemen submit --to politie-mn --json signal.json
[ "$(jget 'len(E("ack"))')" = 1 ] || not_ok "a signal politie-mn will refuse"
MSG_REF=$(jget 'E("sent")[0]["msg_id"]')
peer politie-mn recv --count 1 --refuse invalid-signal
wait_for 10 logged REFUSED_BY_RECIPIENT || not_ok "the refusal is logged"
sleep 1 # a checkpoint covers it
stop_broker
check "a real broker run wrote a log and stopped" test "$BRC" -eq 0
cp -a broker pristine
run "$AUDIT" verify --db pristine --anchor admin/network.pub --json
expect 0 "the untouched log verifies"
N=$(jv 'D["records"]')
jo 'D["signed_by_partners"]["refused-by-recipient"] == 1' "the refusal is a recipient-signed fact"
run "$AUDIT" replay --db pristine --msg "$MSG_REF"
stdout_says "reason invalid-signal" "replay shows the refusal with the recipient's reason"
check "the refusal is marked as signed by the recipient" \
    grep -q '^    refused    .*signed by the recipient.*reason invalid-signal' "$T/.out"
run "$AUDIT" stats --db pristine --json
jo 'D["totals"]["refused"] == 1 and D["totals"]["refused_by_reason"] == {"invalid-signal": 1}' \
    "stats count the refusal per reason"
"$EDIT" checkpoint --store pristine/store >latest.note
LATEST=$(sed -n 2p latest.note)
check "the latest stored checkpoint covers the whole log" test "$LATEST" = "$N"

# copy NAME: a fresh copy of the pristine broker home.
copy() {
    rm -rf "$1"
    cp -a pristine "$1"
}

# edit ARGS...: keten-auditedit, which must succeed.
edit() {
    run "$EDIT" "$@"
    [ "$RC" -eq 0 ] || not_ok "keten-auditedit $1"
}

S1=$(seq_of 'r["event"] == "SUBMITTED"' pristine)
S2=$(seq_of "r['event'] == 'SUBMITTED' and r['seq'] > $S1" pristine)
RC_SEQ=$(seq_of 'r["event"] == "RECEIPTED"' pristine)
REF_SEQ=$(seq_of 'r["event"] == "REFUSED_BY_RECIPIENT"' pristine)
# node_of SEQ: the node of record SEQ of the pristine log.
node_of() {
    "$PEER" audit --db pristine/store >"$T/.node.json" 2>/dev/null
    "$PY" - "$T/.node.json" "$1" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
print(next(r["node"] for r in L if r["seq"] == int(sys.argv[2])))
PY
}
RC_NODE=$(node_of "$RC_SEQ")

# ---- one byte of one record ---------------------------------------------------------

copy t-flip
edit flip --store t-flip/store --leaf "$S1"
verify_fails_at "one byte of submitted record $S1 changed" "$S1" t-flip
says "does not match its hash in the stored tree" "it says the record changed after it was logged"

copy t-flip2
edit flip --store t-flip2/store --leaf "$RC_SEQ" --byte 3
verify_fails_at "one byte of receipted record $RC_SEQ changed" "$RC_SEQ" t-flip2

# ---- receipts: the recipient's signed batch, its leaf and path -----------------------

copy t-rpath
edit receipt-path --store t-rpath/store --leaf "$RC_SEQ"
verify_fails_at "the receipt's leaf path in record $RC_SEQ changed (tree rebuilt)" "$RC_SEQ" t-rpath
says "do not lead to the root of the signed batch head" "it says the leaf is not in the signed batch"

copy t-rsig
edit receipt-signature --store t-rsig/store --leaf "$RC_SEQ"
verify_fails_at "the receipt head's signature in record $RC_SEQ changed (tree rebuilt)" "$RC_SEQ" \
    t-rsig
says "does not verify with its certificate" "it says the recipient's signature does not verify"

copy t-rout
edit refused-as-receipted --store t-rout/store --leaf "$REF_SEQ"
verify_fails_at "refused-by-recipient record $REF_SEQ turned into receipted (tree rebuilt)" \
    "$REF_SEQ" t-rout
says "the recipient's signed outcome is 'refused'" "it says the recipient signed a refusal"

copy t-renv
edit receipt-envelope --store t-renv/store --leaf "$RC_SEQ" --key "n-$RC_NODE/identity.secret"
verify_fails_at "a receipt by $RC_NODE naming another envelope in record $RC_SEQ" "$RC_SEQ" t-renv
says "names another envelope hash than the message's submitted record" \
    "it says the recipient answered for another envelope"

# ---- a record deleted from the middle (tree rebuilt to match) -------------------------

MID=$((N / 2))
copy t-delete
edit delete --store t-delete/store --leaf "$MID"
verify_fails_at "record $MID deleted, the tree rebuilt" "$MID" t-delete
says "says it is record $((MID + 1))" "it says the records after it moved up"

# ---- the last records truncated --------------------------------------------------------

KEEP=$((N - 3))
copy t-trunc
edit truncate --store t-trunc/store --keep "$KEEP"
verify_fails_at "the last 3 records removed (tree rebuilt)" "$KEEP" t-trunc
says "signed by the broker's log key, but the log holds only $KEEP records" \
    "the broker's own later checkpoint gives it away"

copy t-trunc2
edit truncate --store t-trunc2/store --keep "$KEEP" --drop-checkpoints
run "$AUDIT" verify --db t-trunc2 --anchor admin/network.pub
expect 0 "truncated together with the checkpoints, the log is self-consistent"
stdout_says "the log is only self-consistent" \
    "and verify says that is all it can show without outside checkpoints"
verify_fails_at "the same truncation, with the checkpoint a partner kept" "$KEEP" t-trunc2 \
    --checkpoint latest.note
says "checkpoint file latest.note" "it names the partner's checkpoint file"

# ---- two records swapped ----------------------------------------------------------------

copy t-swap
edit swap --store t-swap/store --leaf "$S1" --with "$S2"
verify_fails_at "submitted records $S1 and $S2 swapped (tree rebuilt)" "$S1" t-swap

# ---- a sender signature that does not match -----------------------------------------------

copy t-sig
edit corrupt-signature --store t-sig/store --leaf "$S2"
verify_fails_at "the sender signature of record $S2 altered (tree rebuilt)" "$S2" t-sig
says "the sender's signature does not verify" "it says the signature does not verify"

# ---- a record signed by a key revoked before its time ---------------------------------------

copy t-revoked
edit append-submitted --store t-revoked/store --key n-woonstad/identity.secret \
    --to belastingdienst --network riec-test --directory-version 2
verify_fails_at "a record signed by woonstad's key after its revocation" "$N" t-revoked
says "revoked at" "it says the key was revoked before the record's time"

copy t-current
edit append-submitted --store t-current/store --key n-gemeente-diemen/identity.secret \
    --to belastingdienst --network riec-test --directory-version 2
run "$AUDIT" verify --db t-current --anchor admin/network.pub
expect 0 "control: the same forged append signed by a current partner's key verifies"

# ---- a checkpoint from a forked log ----------------------------------------------------------

# The operator copies the stopped broker's home and runs a second broker on
# the copy: both histories share the first N records, then differ. The fork's
# checkpoints are validly signed by the same log key.
copy broker-fork
FORK_EP="ipc://$T/fork.ipc"
: >fork.log
"$BROKER" run --home broker-fork --anchor admin/network.pub --directory dir.v2 \
    --listen "$FORK_EP" --checkpoint-ms 200 2>>fork.log &
FPID=$!
fork_ready() { grep -q 'msg="broker running"' fork.log; }
wait_for 10 fork_ready || not_ok "the forked broker starts"
run timeout 60 "$PEER" --home n-gemeente-diemen --anchor admin/network.pub --directory dir.v2 \
    --broker "$FORK_EP" submit --to politie-mn --json signal.json
sleep 1
kill "$FPID"
wait "$FPID"
"$EDIT" checkpoint --store broker-fork/store >fork.note
F=$(sed -n 2p fork.note)
check "the forked log has a signed checkpoint beyond the common history ($F > $N)" \
    test "$F" -gt "$N"

# The real broker goes on with other records, so that its log is longer.
start_broker --checkpoint-ms 200 || done_testing
PEER_DIR=dir.v2 peer gemeente-diemen submit --to belastingdienst --json signal.json --count 4
PEER_DIR=dir.v2 peer belastingdienst recv --count 5
sleep 1
stop_broker
run "$AUDIT" verify --db broker --anchor admin/network.pub --json
expect 0 "the real log, continued, verifies"
check "and is longer than the fork's checkpoint" test "$(jv 'D["records"]')" -gt "$F"
verify_fails_at "a checkpoint from a forked log" "$((F - 1))" broker --checkpoint fork.note
says "or the checkpoint comes from a forked log" "it says the checkpoint does not match this log"
verify_fails_at "the fork's checkpoint given beside a good one" "$((F - 1))" broker \
    --checkpoint latest.note --checkpoint fork.note
done_testing
