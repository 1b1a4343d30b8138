#!/usr/bin/env bash
# keten-broker backup: a consistent, compacted copy of the store while the
# broker runs under load. The copy opens, holds the audit record of every
# message acknowledged before the backup began, is one consistent log (seq =
# leaf index; keten-audit verify passes on it and finds the record count and
# root the backup printed), its records are the first records of the
# original log, and a broker restored from it carries on where the copy ends.
# Reject twins: an existing non-empty or non-directory PATH (left untouched),
# a home without a store, missing options.
#
# Arguments: those of broker_lib.sh, then keten-audit.
if [ -z "${6:-}" ] || [ ! -x "$6" ]; then
    echo "Bail out! keten-audit must be the sixth argument (got '${6:-}')"
    exit 1
fi
AUDIT=$(realpath "$6")
. "$(dirname "$0")/broker_lib.sh"
LOADPID=""
stop_load() {
    if [ -n "$LOADPID" ] && kill -0 "$LOADPID" 2>/dev/null; then
        kill "$LOADPID" 2>/dev/null
        wait "$LOADPID" 2>/dev/null
    fi
    LOADPID=""
}
trap 'stop_load; cleanup_broker; [ -n "${KEEP_T:-}" ] && echo "# kept $T" || rm -rf "$T"' EXIT

# records DB: the audit records of an LMDB store directory, as JSON lines in
# $T/.out (keten-testpeer audit).
records() {
    run "$PEER" audit --db "$1"
}

setup_broker_network || done_testing

# ---- usage ------------------------------------------------------------------------------

run "$BROKER" backup --help
expect 0 "backup --help"
stdout_says "Usage: keten-broker backup" "the help prints the usage line"
stdout_says "--out PATH" "the help names --out"
run "$BROKER" backup --home broker
expect 2 "backup without --out is a usage error"
says "--out" "it names the missing --out"
run "$BROKER" backup --out x
expect 2 "backup without --home is a usage error"
says "--home" "it names the missing --home"

start_broker || done_testing

# ---- messages acknowledged before the backup ---------------------------------------------

peer gemeente-diemen submit --to politie-mn --json signal.json --count 40
jl 'len(E("ack")) == 40 and all(a["valid"] for a in E("ack"))' \
    "40 messages are acknowledged (queued for an offline recipient)"
jget '"\n".join(a["msg_id"] for a in E("ack"))' >acked-before.txt

# ---- backup under load ---------------------------------------------------------------------

# The sender keeps submitting while the copies are made (5,000 messages: a
# smaller load was over before the first copy on a fast broker, and the
# check below that the original grew after the copy then failed).
timeout 120 "$PEER" --home n-gemeente-diemen --anchor admin/network.pub --directory dir.v1 \
    --broker "$ENDPOINT" --timeout-ms 30000 submit --to politie-mn --json signal.json \
    --count 5000 >load.out 2>load.err &
LOADPID=$!
wait_for 10 grep -q '"event":"ack"' load.out
check "the load is running (acks arrive)" test $? -eq 0

run "$BROKER" backup --home broker --out copy1 --json
expect 0 "a backup while the broker runs under load"
b1_records=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["records"])' "$T/.out")
b1_root=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["root"])' "$T/.out")
check "it prints the record count of the copy (more than the 40 acknowledged before)" \
    test "${b1_records:-0}" -gt 40
check "and its root (64 hex digits)" grep -qxE '[0-9a-f]{64}' <<<"$b1_root"
run "$BROKER" backup --home broker --out copy2
expect 0 "a second backup (text output), still under load"
stdout_says "audit records:" "the text output names the audit records"
check "the copy is one file, data.mdb" test -f copy1/data.mdb

wait "$LOADPID"
load_rc=$?
LOADPID=""
check "the load finished (exit 0)" test "$load_rc" -eq 0
loaded=$(grep -c '"event":"ack"' load.out)
check "the load was acknowledged in full (5000 acks)" test "$loaded" -eq 5000

# ---- what the copy holds ----------------------------------------------------------------

records copy1
expect 0 "the copy opens (read with LMDB)"
cp "$T/.out" copy1.records
check "the record count printed is the count in the copy" \
    test "$(grep -c '"seq"' copy1.records)" -eq "$b1_records"
jl 'all(r["seq"] == i for i, r in enumerate(L))' "the copy's log is whole: seq = leaf index"
"$PY" - copy1.records acked-before.txt <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
sub = {r["msg_id"] for r in recs if r["event"] == "SUBMITTED"}
want = [l.strip() for l in open(sys.argv[2]) if l.strip()]
sys.exit(0 if len(want) == 40 and all(m in sub for m in want) else 1)
PY
check "every message acknowledged before the backup has its submitted record in the copy" \
    test $? -eq 0
"$PY" - copy1.records <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
sub = [r for r in recs if r["event"] == "SUBMITTED"]
sys.exit(0 if len(sub) > 40 and all(r["header_bytes"] > 0 for r in sub) else 1)
PY
check "the copy also holds records written under load, each with its signed header" \
    test $? -eq 0

run "$AUDIT" verify --db copy1 --anchor admin/network.pub
expect 1 "keten-audit verify does not open the bare LMDB copy itself"
says "keten-audit export --db copy1 --out AUDIT_DIR" "it says the operator exports it first"
run "$AUDIT" export --db copy1 --out copy1-audit
expect 0 "the operator exports the copy (keten-audit export)"
says_not "lock.mdb" "no warning about a lock file the copy does not have"
run "$AUDIT" verify --db copy1-audit --anchor admin/network.pub --json
expect 0 "keten-audit verify passes on the copy's export"
jo() {
    "$PY" -c 'import json,sys; D=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$T/.out" "$1" 2>/dev/null
}
check "keten-audit finds the record count the backup printed ($b1_records)" \
    jo "D['ok'] and D['records'] == $b1_records and D['tree_size'] == $b1_records"
check "and the root the backup printed" jo "D['root'] == '$b1_root'"

# The copy is the original log as it was: its records are the original's
# first ones, record by record (the original has grown since).
records broker/store
expect 0 "the original store opens (read while the broker runs)"
cp "$T/.out" original.records
check "the copy's records are the first $b1_records records of the original log" "$PY" -c '
import json, sys
copy = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
orig = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
assert len(copy) == int(sys.argv[3]) and len(orig) > len(copy), (len(copy), len(orig))
assert copy == orig[:len(copy)], "the copy differs from the original"' \
    copy1.records original.records "$b1_records"

# ---- reject twins ---------------------------------------------------------------------------

mkdir busy && echo keep >busy/note
run "$BROKER" backup --home broker --out busy
expect 1 "a non-empty PATH is refused"
says "not empty" "it says why"
check "and left untouched" test "$(ls busy)" = note -a "$(cat busy/note)" = keep
echo x >afile
run "$BROKER" backup --home broker --out afile
expect 1 "a PATH that is a file is refused"
check "the file is untouched" test "$(cat afile)" = x
run "$BROKER" backup --home broker --out copy1
expect 1 "an earlier backup is never overwritten"
mkdir nohome
run "$BROKER" backup --home nohome --out copy3
expect 1 "a home without a store is refused"
says "data.mdb" "it names the missing store"
check "and makes no copy" test ! -e copy3/data.mdb

# ---- restore --------------------------------------------------------------------------------

stop_broker
check "the broker stops" test "$BRC" -eq 0
mv broker/store broker/store.old
mkdir -m 0700 broker/store
cp copy1/data.mdb broker/store/data.mdb
require "a broker starts on the restored copy" start_broker
peer gemeente-diemen submit --to politie-mn --json signal.json
jl "len(E('ack')) == 1 and E('ack')[0]['valid'] and E('ack')[0]['leaf'] >= $b1_records" \
    "a new message is logged after the restored records"
first=$(head -n 1 acked-before.txt)
peer politie-mn recv --count 1
jl "len(E('deliver')) >= 1 and E('deliver')[0]['msg_id'] == '$first' and E('deliver')[0]['opened']" \
    "the restored queue delivers the oldest message first"
stop_broker
check "the broker stops" test "$BRC" -eq 0
records broker/store
jl 'all(r["seq"] == i for i, r in enumerate(L))' "the restored log is whole"
run "$AUDIT" verify --db broker --anchor admin/network.pub --json
expect 0 "keten-audit verify passes on the restored broker's log"
check "it holds the restored records and the new message" jo "D['records'] > $b1_records"
done_testing
