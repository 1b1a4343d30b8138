#!/usr/bin/env bash
# The reject twins of keten-audit verify: each edit of a real broker's log
# (keten-auditedit, on copies of the stopped broker's home) is found at the
# right sequence number and verify exits 3: one byte of one record changed; a
# record deleted from the middle; the last records truncated (the largest
# checkpoint beyond the log saying how many at least); two records
# swapped; a checkpoint from a forked log; a sender signature that does not
# match; a record signed by a key revoked before its time; a submitted record
# naming another policy rule than the policy gives, and one the policy
# refuses (verify, and check-proof on its bundle). And the controls:
# the untouched copy, and a record appended the same way but signed by a
# current partner, verify. A receipt, a refusal by a recipient, an expiry or
# a delivery repeated at the end of the log is found (a rejected attempt
# repeated is the control: a node may try again). Receipts: a receipted
# record whose leaf path was changed, one whose batch head signature was
# changed, a refused-by-recipient
# record turned into a receipted one, and a receipt re-signed by the very
# recipient but naming another envelope: each is found at its record. An
# export whose files were edited (a record's length, a tile's size, a
# stored checkpoint's or directory's length, the manifest's size): the file
# and record are named, exit 3, never a signal; an old LMDB export is refused.
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
says "the log holds only $KEEP records (0 to $((KEEP - 1))), but a checkpoint the broker stored with the log, signed by the broker's log key, covers $N records: at least records $KEEP..$((N - 1)) are missing from the end of the log" \
    "the broker's own later checkpoint gives it away, the largest one deciding how many"

copy t-trunc2
edit truncate --store t-trunc2/store --keep "$KEEP" --drop-checkpoints
run "$AUDIT" verify --db t-trunc2 --anchor admin/network.pub
expect 0 "truncated together with the checkpoints, the log is self-consistent"
stdout_says "the log is only self-consistent" \
    "and verify says that is all it can show without outside checkpoints"
verify_fails_at "the same truncation, with the checkpoint a partner kept" "$KEEP" t-trunc2 \
    --checkpoint latest.note
says "checkpoint file latest.note" "it names the partner's checkpoint file"

# Many records cut, the broker's smaller checkpoints left in place, and a
# partner's checkpoint of the whole log: the largest checkpoint decides how
# many records are missing at least, whichever is read first (it used to
# name the smallest one too large and understate the loss).
HALF=$((N / 2))
copy t-trunc3
edit truncate --store t-trunc3/store --keep "$HALF"
verify_fails_at "the log cut to $HALF of $N records, a partner's checkpoint of $N given" "$HALF" \
    t-trunc3 --checkpoint latest.note
says "the log holds only $HALF records (0 to $((HALF - 1))), but checkpoint file latest.note, given with --checkpoint and signed by the broker's log key, covers $N records: at least records $HALF..$((N - 1)) are missing from the end of the log" \
    "it says what is known: the log's size, whose checkpoint covers how many, the records missing at least"
says "checkpoints are larger than the log, this is the largest" \
    "it says the broker's smaller checkpoints beyond the log were outweighed"
says_not "were removed" "it claims no exact range it cannot know"

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

# ---- a record naming what the broker never writes -----------------------------------------
# A node-connected record whose node is a terminal's escape sequences (ESC
# and the C1 CSI U+009B): verify names the record and shows the text cleaned;
# replay, which reads the log as it is, writes none of those bytes either.
# Twin: the same record naming another real node fails only at the checkpoint.
NC_SEQ=$(seq_of 'r["event"] == "NODE_CONNECTED"' pristine)
copy t-name
edit set-node --store t-name/store --leaf "$NC_SEQ" --node $'politie\e[2J\e]0;x\a\xc2\x9b31m\xe2\x80\xaemn'
verify_fails_at "a node-connected record naming escape sequences" "$NC_SEQ" t-name
says "its node 'politie?[2J?]0;x???31m???mn' is not a node id" \
    "it says the record's node is not a node id, each control byte shown as ?"
check "verify writes no escape byte" lacks env LC_ALL=C grep -qP '\x1b|\x07|\xc2[\x80-\x9f]|\xe2\x80\xae' "$T/.all"
run "$AUDIT" replay --db t-name
expect 0 "replay reads the log as it is"
check "replay writes no escape byte" lacks env LC_ALL=C grep -qP '\x1b|\x07|\xc2[\x80-\x9f]|\xe2\x80\xae' "$T/.all"
stdout_says "politie?[2J?]0;x???31m???mn" "replay shows the node with each control byte as ?"
copy t-name2
edit set-node --store t-name2/store --leaf "$NC_SEQ" --node ander-knooppunt
run "$AUDIT" verify --db t-name2 --anchor admin/network.pub
expect 3 "twin: the record naming another real node: verify fails (the tree changed)"
says_not "is not a node id" "twin: not for the node's name"

# ---- the policy rule of an accepted message --------------------------------------------

# The sharing policy of the directory in force decides every accepted
# message, and the rule its submitted record names (the lowest rule that
# allowed one of its recipients) follows from the signed header and the
# signed directory: verify and check-proof compute it again. A record whose
# rule was changed, and a message the policy refuses recorded as accepted,
# are found. Controls: the pristine log (rules 1 and 2, messages to one and
# to two recipients) and t-current above (an append the policy allows).
copy t-rule
edit set-rule --store t-rule/store --leaf "$S1" --rule 2
verify_fails_at "submitted record $S1 naming rule 2, not rule 1" "$S1" t-rule
says "names policy rule 2 as allowing the message, but the sharing policy of directory version" \
    "it says the record names another rule than the policy's"
says "allows it by rule 1" "it names the policy's rule"

copy t-refused
edit append-submitted --store t-refused/store --key n-politie-mn/identity.secret \
    --to belastingdienst --network riec-test --directory-version 2
REFUSED_MSG=$(sed -n 's/^appended leaf [0-9]*: submitted \([0-9a-f]*\) by .*/\1/p' "$T/.out")
verify_fails_at "an accepted message politie-mn -> belastingdienst the policy refuses" "$N" t-refused
says "refuses politie-mn -> belastingdienst (signal, woonfraude, handhaving) by rule 0 (the default deny), yet the broker accepted the message" \
    "it says the policy refuses the message the record says was accepted"

# resign HOME: run the broker on a copy's store until it signs a checkpoint
# of the edited log (a node connects: one record more), as the operator who
# edited it and holds the log key would.
resign() {
    local ep="ipc://$T/resign.ipc" pid
    : >resign.log
    "$BROKER" run --home "$1" --anchor admin/network.pub --directory dir.v2 \
        --listen "$ep" --checkpoint-ms 200 2>>resign.log &
    pid=$!
    resign_ready() { grep -q 'msg="broker running"' resign.log; }
    wait_for 10 resign_ready || not_ok "the broker starts on $1"
    run timeout 60 "$PEER" --home n-gemeente-diemen --anchor admin/network.pub \
        --directory dir.v2 --broker "$ep" connect-only --listen-ms 500
    sleep 1
    kill "$pid"
    wait "$pid"
}
resign t-refused
run "$AUDIT" prove --db t-refused "$REFUSED_MSG" --out refused-proof.json
expect 0 "prove the message the policy refuses, under a checkpoint the broker signed"
run "$AUDIT" check-proof refused-proof.json --anchor admin/network.pub
expect 3 "check-proof refuses the bundle of a message the policy refuses"
says "by rule 0 (the default deny), yet the broker accepted the message" \
    "it says the policy refuses the message"
copy t-allowed
edit append-submitted --store t-allowed/store --key n-gemeente-diemen/identity.secret \
    --to belastingdienst --network riec-test --directory-version 2
ALLOWED_MSG=$(sed -n 's/^appended leaf [0-9]*: submitted \([0-9a-f]*\) by .*/\1/p' "$T/.out")
resign t-allowed
run "$AUDIT" prove --db t-allowed "$ALLOWED_MSG" --out allowed-proof.json
expect 0 "control: prove an appended message the policy allows by rule 1, the rule recorded"
run "$AUDIT" check-proof allowed-proof.json --anchor admin/network.pub
expect 0 "control: its bundle holds"

# ---- a delivery, receipt or expiry relabelled ---------------------------------------------

# The broker writes no kind, category or purpose in a delivered, receipted,
# refused-by-recipient or expired record: they are the message's, from its
# submitted record. replay shows a record's own when it holds one, so a
# delivery given another category would be listed, and found by replay
# --category, under a category the sender never signed. Twin: the same
# record given its message's own category passes that check (only the
# broker's checkpoints, signed over the record as it was, find the edit).
D_SEQ=$(seq_of 'r["event"] == "DELIVERED"' pristine)
DEL_CAT=$("$AUDIT" replay --db pristine --format jsonl 2>/dev/null | "$PY" -c '
import json, sys
print(next(r["category"] for r in map(json.loads, sys.stdin) if r["seq"] == int(sys.argv[1])))' \
    "$D_SEQ")
[ -n "$DEL_CAT" ] || not_ok "the category of delivered record $D_SEQ's message"
OTHER_CAT=woonfraude
[ "$DEL_CAT" = woonfraude ] && OTHER_CAT=adrescheck
copy t-cat
edit set-category --store t-cat/store --leaf "$D_SEQ" --category "$OTHER_CAT"
verify_fails_at "delivered record $D_SEQ given category $OTHER_CAT (its message: $DEL_CAT)" \
    "$D_SEQ" t-cat
says "another category than its submitted record" "it says the record relabels the message"
copy t-cat-same
edit set-category --store t-cat-same/store --leaf "$D_SEQ" --category "$DEL_CAT"
run "$AUDIT" verify --db t-cat-same --anchor admin/network.pub
expect 3 "twin: the delivered record given its own category: the broker's checkpoints find the edit"
says "root differs" "twin: found by a checkpoint's root, signed over the record as the broker wrote it"
says_not "another category" "twin: the record's own category is not a relabelling"

# ---- an expiry dated before the message expires ------------------------------------------

# The broker expires a message once its clock has passed the signed
# expires_at, and dates the record at that clock or later. The expiry of
# MSG_X (1 s of life, never delivered) dated at its submitted record's time:
# verify and check-proof (the stored checkpoints deleted, and one the
# broker signed over the edited log) both refuse it. Twin: the record untouched, its bundle holds.
X_SEQ=$(seq_of 'r["event"] == "EXPIRED"' pristine)
X_MSG=$("$AUDIT" replay --db pristine --format jsonl 2>/dev/null | "$PY" -c '
import json, sys
print(next(r["msg_id"] for r in map(json.loads, sys.stdin) if r["seq"] == int(sys.argv[1])))' \
    "$X_SEQ")
X_SUB_MS=$("$AUDIT" replay --db pristine --format jsonl 2>/dev/null | "$PY" -c '
import json, sys
print(next(r["time_ms"] for r in map(json.loads, sys.stdin)
           if r["msg_id"] == sys.argv[1] and r["event"] == "submitted"))' "$X_MSG")
[ -n "$X_SUB_MS" ] || not_ok "the submitted time of the expired message"
copy t-exptime
edit set-time --store t-exptime/store --leaf "$X_SEQ" --time "$X_SUB_MS" --drop-checkpoints
run "$AUDIT" verify --db t-exptime --anchor admin/network.pub
expect 3 "an expiry dated at its message's submission: verify fails"
says "verification failed at record $X_SEQ:" "found at the expiry's record"
resign t-exptime
run "$AUDIT" prove --db t-exptime "$X_MSG" --out exptime-proof.json
expect 0 "prove the message under a checkpoint the broker signed over the edited log"
run "$AUDIT" check-proof exptime-proof.json --anchor admin/network.pub
expect 3 "check-proof refuses the bundle whose expiry is dated before the message expires"
says "(expired) is dated" "it says when the expiry is dated"
says "before the message expires at" "it says that is before the message expires"
copy t-exptime-twin
resign t-exptime-twin
run "$AUDIT" prove --db t-exptime-twin "$X_MSG" --out exptime-twin.json
expect 0 "twin: prove the same message, untouched, under a new checkpoint"
run "$AUDIT" check-proof exptime-twin.json --anchor admin/network.pub
expect 0 "twin: its bundle holds"

# ---- a record repeated at the end of the log ------------------------------------------------

# The operator appends a copy of an earlier record (keten-auditedit repeat:
# the next seq, the last record's time and directory version, the tree
# updated), every signature in it still genuine, after the last checkpoint.
# The broker writes one delivery and one receipt, refusal or expiry per
# recipient of a message: a second one would be counted twice by stats and
# the report. A rejected attempt may come again (a node resubmits): that
# copy verifies.
EXP_SEQ=$(seq_of 'r["event"] == "EXPIRED"' pristine)
DEL_SEQ=$(seq_of 'r["event"] == "DELIVERED"' pristine)
REJ_SEQ=$(seq_of 'r["event"] == "REJECTED"' pristine)
repeated() { # WHAT SEQ TEXT
    copy t-rep
    edit repeat --store t-rep/store --leaf "$2"
    verify_fails_at "$1 (record $2) repeated at the end" "$N" t-rep
    says "$3" "$1 repeated: it says what came before"
    says "this record was added or repeated" "$1 repeated: it says the record was added"
}
repeated "a receipt by $RC_NODE" "$RC_SEQ" "was already answered by '$RC_NODE'"
repeated "a refusal by a recipient" "$REF_SEQ" "was already answered by"
repeated "an expiry" "$EXP_SEQ" "was already expired for 'woonstad'"
repeated "a delivery of an answered message" "$DEL_SEQ" "was already answered by"

# The operator who repeated a receipt restarts the broker on that store: its
# next checkpoint, signed with the log key, covers the repeated record, and
# prove puts both receipts in the message's bundle. check-proof refuses it.
RC_MSG=$("$PEER" audit --db pristine/store 2>/dev/null | "$PY" -c '
import json, sys
print(next(r["msg_id"] for r in map(json.loads, sys.stdin) if r["seq"] == int(sys.argv[1])))' \
    "$RC_SEQ")
copy t-rep-cp
edit repeat --store t-rep-cp/store --leaf "$RC_SEQ"
REP_EP="ipc://$T/rep.ipc"
: >rep.log
"$BROKER" run --home t-rep-cp --anchor admin/network.pub --directory dir.v2 \
    --listen "$REP_EP" --checkpoint-ms 200 2>>rep.log &
RPID=$!
rep_ready() { grep -q 'msg="broker running"' rep.log; }
wait_for 10 rep_ready || not_ok "the broker starts on the store with a repeated receipt"
run timeout 60 "$PEER" --home n-gemeente-diemen --anchor admin/network.pub --directory dir.v2 \
    --broker "$REP_EP" connect-only --listen-ms 500
sleep 1
kill "$RPID"
wait "$RPID"
run "$AUDIT" prove --db t-rep-cp "$RC_MSG" --out rep-proof.json
expect 0 "prove on that store: a bundle with the receipt twice, under a signed checkpoint"
run "$AUDIT" check-proof rep-proof.json --anchor admin/network.pub
expect 3 "check-proof refuses the bundle with the receipt twice"
says "was already answered by '$RC_NODE'" "it says the recipient had already answered"
run "$AUDIT" prove --db pristine "$RC_MSG" --out rc-proof.json
expect 0 "control: prove the same message on the untouched log"
run "$AUDIT" check-proof rc-proof.json --anchor admin/network.pub
expect 0 "control: its bundle, with the receipt once, holds"
# Only the bundle's name of a record edited (its leaf untouched): refused,
# and the message says which name is wrong, not that the leaf is another
# record.
python3 -c '
import json, sys
b = json.load(open(sys.argv[1]))
r = next(r for r in b["records"] if r["event"] == "receipted")
r["event"] = "refused-by-recipient"
json.dump(b, open(sys.argv[2], "w"))' rc-proof.json rc-event.json
run "$AUDIT" check-proof rc-event.json --anchor admin/network.pub
expect 3 "check-proof refuses a bundle whose record is named with another event"
says "the bundle calls it a 'refused-by-recipient' record, the signed leaf is a 'receipted' record" \
    "it says the name is wrong and what the signed leaf is"

copy t-rep-rej
edit repeat --store t-rep-rej/store --leaf "$REJ_SEQ"
run "$AUDIT" verify --db t-rep-rej --anchor admin/network.pub --json
expect 0 "control: a rejected attempt repeated at the end (a node may try again) verifies"
jo "D['records'] == $N + 1" "with the one record more"

# ---- a tampered export: lengths and sizes, never a signal --------------------------------

# An auditor is handed files by the party they audit. Each edit below is of
# the export's files; keten-audit names the file and the record, exits 3, and
# is never killed by a signal (an LMDB export with one record's size set to
# 0xF0000 used to end verify with SIGBUS).
run "$AUDIT" export --db pristine --out ex
expect 0 "export the pristine log"
run "$AUDIT" verify --db ex --anchor admin/network.pub
expect 0 "control: the untouched export verifies"
BUNDLE=$(cd ex && find tile/entries -type f | sort | head -1)
TILE0=$(cd ex && find tile/0 -type f | sort | head -1)

# patch FILE OFFSET HEX: write bytes at an offset of a file.
patch() {
    "$PY" - "$@" <<'PY'
import sys
p, off, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
b = bytearray(open(p, "rb").read())
b[off:off + len(data)] = data
open(p, "wb").write(bytes(b))
PY
}
# no_signal WHAT: the last command ended by itself (exit < 128).
no_signal() {
    check "$1: no signal (exit $RC)" test "$RC" -lt 128
}

copy_ex() {
    rm -rf "$1"
    cp -a ex "$1"
}

copy_ex x-len
patch "x-len/$BUNDLE" 0 f000
verify_fails_at "record 0's length set to 0xF000 in its entry bundle" 0 x-len
says "$BUNDLE: record 0 has a length of 61440 bytes, but only" \
    "it names the bundle, the record and the length"
no_signal "verify"
for c in replay stats; do
    run "$AUDIT" "$c" --db x-len
    expect 3 "$c on the export with a tampered length fails as a verification failure"
    says "$BUNDLE: record 0 has a length of 61440 bytes" "$c names the bundle and the record"
    no_signal "$c"
done
run "$AUDIT" report --db x-len --anchor admin/network.pub --out x-len.html
no_signal "report"
check "report on it fails" test "$RC" -ne 0

copy_ex x-short
LEN0=$("$PY" -c 'import sys; b=open(sys.argv[1],"rb").read(); print(b[0]*256+b[1])' "ex/$BUNDLE")
patch "x-short/$BUNDLE" 0 "$(printf '%04x' $((LEN0 - 1)))"
verify_fails_at "record 0's length one byte shorter" 0 x-short
no_signal "verify"

copy_ex x-tile
truncate -s -1 "x-tile/$TILE0"
verify_fails_at "a hash tile one byte short" 0 x-tile
says "$TILE0 is " "it names the tile"
no_signal "verify"

copy_ex x-cps
patch x-cps/keten/checkpoints 8 000f0000
run "$AUDIT" verify --db x-cps --anchor admin/network.pub
expect 3 "a stored checkpoint's length set to 0xF0000 is a verification failure"
says "keten/checkpoints: checkpoint 0 (key " "it names the file and the item"
no_signal "verify"

copy_ex x-dirs
patch x-dirs/keten/directories 8 7fffffff
# A file beside the records that does not parse: found after every record
# passed, and named without a record (the log has records 0 to N-1).
run "$AUDIT" verify --db x-dirs --anchor admin/network.pub
expect 3 "a directory's length set past the end of keten/directories: verify fails"
says "keten-audit: verification failed: " "it says so"
says_not "verification failed at record" "naming no record (record $N does not exist)"
says "keten/directories: directory 0 (key 1) has a length of" "it names the file and the item"
no_signal "verify"

copy_ex x-size
printf 'keten-audit-export 1\nsize %s\n' $((N + 300)) >x-size/keten/manifest
run "$AUDIT" verify --db x-size --anchor admin/network.pub
expect 3 "the manifest's size raised beyond the records is a verification failure"
says "tile/entries/" "it names the entry bundle that is not there"
no_signal "verify"

copy_ex x-old
rm -rf x-old/*
cp pristine/store/data.mdb x-old/
run "$AUDIT" verify --db x-old --anchor admin/network.pub
expect 1 "an export in the old LMDB format is refused, not opened"
says "an export in the old format" "it says so"
says "ask for a new export with keten-audit export" "and what to do"

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
