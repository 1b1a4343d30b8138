#!/usr/bin/env bash
# keten-audit verify and export on a log a real broker wrote with every kind
# of record: verify passes on the broker home while the broker runs, on a
# stopped one and on an export, with the summary an auditor needs (records,
# root, time span, checkpoints and witnesses, signed facts apart from the
# broker's claims, "only self-consistent" without outside checkpoints); a
# partner's checkpoint counts as outside evidence, and so do all the
# checkpoints a real node kept (keten-node checkpoint --all; a node's home is
# refused); export writes the tlog-tiles layout, readable by others, with no
# ciphertext, refuses a non-empty folder and an export; a bare LMDB folder
# is refused by verify and exported by the operator; usage errors.
. "$(dirname "$0")/audit_lib.sh"

require "a real broker run writes an audit log" make_log
check "the log holds records ($N_RECORDS)" test "${N_RECORDS:-0}" -gt 0

# ---- verify while the broker runs -------------------------------------------------

run "$AUDIT" verify --db broker --anchor admin/network.pub
expect 0 "verify passes on the broker home while the broker runs"
stdout_says "The audit log verifies." "it says so"
stdout_says "records            $N_RECORDS (seq 0 to $((N_RECORDS - 1)))" \
    "it names the number of records and their sequence numbers"
stdout_says "tree size          $N_RECORDS" "and the tree size"
stdout_says "the log is only self-consistent" \
    "without checkpoints from partners it says the log is only self-consistent"
stdout_says "(the broker's clock)" "the time span is the broker's claim"
stdout_says "submitted        9 (each sender's signature" "9 sender signatures verified"
stdout_says "receipted        8 (each recipient's signed receipt: stored)" "8 receipts verified"
stdout_says "refused          0 (each recipient's signed receipt: refused" "no refusals"
stdout_says "receipt batches  " "the receipt batch heads checked are counted"
stdout_says "the broker's claims (no partner signed these)" \
    "deliveries, expiries and times are presented as the broker's claims"
stdout_says "2 version(s) installed in the log, verified from the anchor; latest version 2" \
    "both directory versions verify as a chain from the anchor"

run "$AUDIT" verify --db broker --anchor admin/network.pub --json
expect 0 "verify --json"
jo "D['ok'] and D['records'] >= $N_RECORDS and D['tree_size'] == D['records']" \
    "JSON: ok, records and tree size"
jo 'len(D["root"]) == 64 and D["first_time"] <= D["last_time"]' \
    "JSON: the root in hex and an ordered time span"
jo 'D["signed_by_partners"]["submitted"] == 9 and D["signed_by_partners"]["receipted"] == 8 and D["signed_by_partners"]["refused-by-recipient"] == 0 and 1 <= D["signed_by_partners"]["receipt_batches"] <= 8' \
    "JSON: what partners signed (9 submitted, 8 receipted in at most 8 receipt batches, none refused)"
jo 'D["broker_claims"]["delivered"] == 8 and D["broker_claims"]["expired"] == 1 and D["broker_claims"]["rejected"] == 2 and D["broker_claims"]["auth-failed"] >= 1' \
    "JSON: deliveries, expiry, rejections, auth failures are the broker's claims"
jo 'D["checkpoints"]["stored"] > 0 and D["checkpoints"]["witnessed"] >= 1 and D["checkpoints"]["quorum"] == 2 and D["checkpoints"]["partners"] == 3' \
    "JSON: stored checkpoints checked, at least one witnessed (quorum 2 of the 3 partners left in v2)"
jo 'D["signed_by_administrators"] == {"directory-installed": 2}' \
    "JSON: the two directory versions are the administrators' signed facts"
jo 'D["external"]["given"] == 0 and D["external"]["self_consistent_only"]' \
    "JSON: no external evidence"


# ---- a partner's checkpoint as external evidence ----------------------------------

run "$EDIT" checkpoint --store broker/store --most-cosigned
expect 0 "take the most cosigned checkpoint from the store"
cp "$T/.out" partner.note
check "a witnessed checkpoint note with cosignatures is kept (as a partner would)" \
    grep -q '^— politie-mn ' partner.note
run "$AUDIT" verify --db broker --anchor admin/network.pub --checkpoint partner.note
expect 0 "a checkpoint kept by a partner verifies against the log"
stdout_says "1 checkpoint(s) given, each signed by the broker" \
    "it counts as external evidence"
check "with a partner's checkpoint the log is no longer called only self-consistent" \
    lacks grep -qF "only self-consistent." "$T/.out"

# ---- a real partner node's kept checkpoints ----------------------------------------

"$NODE" run --home n-politie-mn --anchor admin/network.pub --directory dir.v2 \
    --broker "$ENDPOINT" >node-p.log 2>&1 &
NPID=$!
node_has_checkpoint() {
    "$NODE" status --home n-politie-mn --json >node-status.json 2>/dev/null
    "$PY" -c 'import json,sys; d=json.load(open("node-status.json")); sys.exit(0 if d["checkpoint"].get("tree_size", 0) > 0 else 1)' 2>/dev/null
}
check "the politie-mn node daemon accepts a checkpoint" wait_for 20 node_has_checkpoint
# The size it holds now: the one it got when it connected, which may already
# cover N_RECORDS (its own connection is a record).
FIRST_CP=$("$PY" -c 'import json; print(json.load(open("node-status.json"))["checkpoint"].get("tree_size", 0))')
PEER_DIR=dir.v2 peer gemeente-diemen --timeout-ms 15000 submit --to politie-mn \
    --json signal.json --wait-receipts 1
jl 'len(E("receipt")) == 1 and E("receipt")[0]["valid"]' \
    "the node daemon receives a message and receipts it"
node_covers() {
    "$NODE" status --home n-politie-mn --json >node-status.json 2>/dev/null
    "$PY" -c 'import json,sys; d=json.load(open("node-status.json")); sys.exit(0 if d["checkpoint"].get("tree_size", 0) > int(sys.argv[1]) else 1)' \
        "$(( N_RECORDS > FIRST_CP ? N_RECORDS : FIRST_CP ))" 2>/dev/null
}
check "the node accepts a checkpoint covering its message (beyond the one it connected with)" \
    wait_for 20 node_covers
# The node keeps the checkpoints the broker stores for witnessing (one every
# checkpoint-ms while records are appended): wait, bounded, until it kept
# several, the newest covering its message.
kept_several() {
    "$NODE" checkpoint --home n-politie-mn --all --out politie.notes >kept.out 2>&1 || return 1
    [ "$(grep -c '^— broker ' politie.notes)" -gt 1 ] || return 1
    local upto
    upto=$(sed -n 's/.*up to tree size \([0-9]*\).*/\1/p' kept.out)
    [ -n "$upto" ] && [ "$upto" -gt "$N_RECORDS" ]
}
wait_for 20 kept_several
run "$NODE" checkpoint --home n-politie-mn --all --out politie.notes
expect 0 "the node writes every checkpoint it kept to a file (keten-node checkpoint --all)"
says "checkpoints, up to tree size" "it says how many and up to which size"
check "the file holds several signed notes, each with the broker's signature" \
    test "$(grep -c '^— broker ' politie.notes)" -gt 1
kill -TERM "$NPID"
wait "$NPID"
check "the node daemon stops" test $? -eq 0
run "$AUDIT" verify --db broker --anchor admin/network.pub --checkpoint politie.notes --json
expect 0 "the checkpoints a real partner node kept (its file) verify against the log"
jo 'D["external"]["given"] > 1 and not D["external"]["self_consistent_only"] and D["external"]["max_size"] > '"$N_RECORDS" \
    "each counts as external evidence, up to the checkpoint covering the node's message"
run "$AUDIT" verify --db broker --anchor admin/network.pub --checkpoint n-politie-mn
expect 1 "a node's home given as --checkpoint is refused: keten-audit reads no node's store"
says "keten-node checkpoint --home DIR --all --out FILE" "it says how to get the node's file"
stop_broker
check "the broker stops for a copy" test "$BRC" -eq 0
cp -a broker cut-home
start_broker --checkpoint-ms 200 || done_testing
run "$EDIT" truncate --store cut-home/store --keep 5 --drop-checkpoints
expect 0 "cut a copy of the broker's home back to 5 records, without its checkpoints"
run "$AUDIT" export --db cut-home --out cut
expect 0 "export the cut copy"
verify_fails_at "a log cut back below what the partner node saw" 5 cut --checkpoint politie.notes
says "checkpoint file politie.notes (note " "it names the partner node's file and the note"

# ---- export ------------------------------------------------------------------------

run "$AUDIT" export --db broker --out export --json
expect 0 "export while the broker runs"
jo "D['out'] == 'export' and D['records'] >= $N_RECORDS and len(D['root']) == 64" \
    "it prints the number of records and the root"
ROOT=$(jv 'D["root"]')
EXPORTED=$(jv 'D["records"]')
check "the export has the tlog-tiles layout: checkpoint, level-0 tiles, entry bundles" \
    test -f export/checkpoint -a -d export/tile/0 -a -d export/tile/entries
check "and keten's files: manifest, directories, checkpoints" \
    test -f export/keten/manifest -a -f export/keten/directories -a -f export/keten/checkpoints
check "the manifest names the format and the size" \
    test "$(cat export/keten/manifest)" = "$(printf 'keten-audit-export 1\nsize %s' "$EXPORTED")"
check "no LMDB file in the export" test -z "$(find export -name '*.mdb')"
check "every file of the export is readable by auditors (0644)" \
    test "$(find export -type f ! -perm 0644 | wc -l)" = 0
check "the checkpoint file is the broker's signed note" grep -q '^— broker ' export/checkpoint
# A piece of the pending message's ciphertext: in the broker's store (its
# envelopes table), never in the export.
# Exit 2 when a file cannot be read (no answer, for lacks).
has_piece() {
    "$PY" -c '
import sys, os
e = open(sys.argv[1], "rb").read()
try:
    if os.path.isdir(sys.argv[2]):
        d = b"".join(open(os.path.join(r, f), "rb").read()
                     for r, _, fs in os.walk(sys.argv[2]) for f in fs)
    else:
        d = open(sys.argv[2], "rb").read()
except OSError:
    sys.exit(2)
sys.exit(0 if len(e) > 300 and e[-300:-236] in d else 1)' v2.env "$1"
}
check "the broker's store holds the pending message's ciphertext" has_piece broker/store/data.mdb
check "the export holds no ciphertext" lacks has_piece export

run "$AUDIT" verify --db export --anchor admin/network.pub --json
expect 0 "verify passes on the export"
jo "D['root'] == '$ROOT' and D['records'] == $EXPORTED" \
    "with the root and size export printed"
chmod 0555 export
run "$AUDIT" verify --db export --anchor admin/network.pub
expect 0 "an export in a read-only folder verifies (read without a lock file)"
check "reading it created nothing" test "$(find export -newer export/keten/manifest | wc -l)" = 0
chmod 0755 export

mkdir full && echo x >full/keep
before=$(fingerprint full)
run "$AUDIT" export --db broker --out full
expect 1 "export refuses a non-empty folder"
says "full exists and is not empty" "it says why"
unchanged full "$before" "the refused export"
run "$AUDIT" export --db export --out export2
expect 1 "an export is not exported again"
says "export is already an export; to copy it, copy the folder" "it says to copy the folder"

# ---- a stopped broker, and a copy ---------------------------------------------------

stop_broker
check "the broker stops" test "$BRC" -eq 0
cp -a broker broker-copy
run "$AUDIT" verify --db broker-copy --anchor admin/network.pub
expect 0 "verify passes on a copy of the broker home"
run "$AUDIT" verify --db broker-copy/store --anchor admin/network.pub
expect 1 "a bare LMDB folder (a store folder, a backup, an old export) is not opened"
says "an export in the old format" "it names the old format"
says "ask for a new export with keten-audit export" "and says what to do"
run "$AUDIT" export --db broker-copy/store --out from-store
expect 0 "the operator exports their own store folder"
run "$AUDIT" verify --db from-store --anchor admin/network.pub
expect 0 "and that export verifies"

# ---- usage and input errors --------------------------------------------------------

run "$AUDIT" verify --db broker
expect 2 "verify without --anchor is a usage error"
says "--anchor network.pub is required" "it says what is missing"
run "$AUDIT" verify --db nowhere --anchor admin/network.pub
expect 1 "verify of a folder without a store fails"
says "no broker store at nowhere/store/data.mdb and no export (nowhere/keten/manifest)" \
    "it names where it looked"
run "$AUDIT" verify --db broker --anchor admin/network.pub --checkpoint missing.note
expect 1 "an unreadable --checkpoint file is a failure, not a verdict"
says "missing.note" "it names the file"
run "$AUDIT" verify --db broker --anchor admin/network.pub --bogus
expect 2 "an unknown option is a usage error"
says "unknown option --bogus" "it names the option"
run "$AUDIT" frobnicate
expect 2 "an unknown command is a usage error"
says "unknown command 'frobnicate'" "it names the command"
for c in export verify replay stats report prove check-proof; do
    run "$AUDIT" "$c" --help
    expect 0 "$c --help"
    stdout_says "Usage: keten-audit $c " "$c --help prints its usage line"
done
run "$AUDIT" --help
expect 0 "keten-audit --help"
stdout_says "Usage: keten-audit COMMAND" "--help prints the usage line"
stdout_says "Exit codes: 0 success, 1 failure, 2 usage error, 3 verification failure." \
    "--help lists the exit codes"
done_testing
