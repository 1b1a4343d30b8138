#!/usr/bin/env bash
# A full filesystem under the broker's home (HOME/store on a 48 MiB tmpfs,
# the LMDB map 1 GiB: the filesystem is the limit that is reached) is a full
# store, as a full map is: new submits are refused with STORE_FULL and a
# detail that names the filesystem, every refusal is audited, the metrics
# say so (keten_store_full, keten_store_disk_full, the free bytes, the disk
# reserve), deliveries and receipts go on, and once space is freed submits
# are taken again without a restart. Three ways to fill it: another program
# takes all the space (dd), the broker's own store grows into it, and (with
# a test hook that turns off the free-space check) a commit runs into it and
# fails as seen in the field (LMDB's EIO for a short write).
# Reject twin: with space, the same submits are accepted.
# Mounting needs root (CI runs as root); where mount is not permitted the
# full-filesystem cases print a TAP "# SKIP" line with the reason, and the
# twin still runs on the ordinary filesystem.
. "$(dirname "$0")/broker_lib.sh"
need_tool curl dd mount umount

MOUNTED=""
trap 'cleanup_broker; [ -n "$MOUNTED" ] && umount "$T/broker"; rm -rf "$T"' EXIT

# skip_case REASON: the full-filesystem cases cannot run here.
skip_case() {
    TESTS=$((TESTS + 1))
    echo "ok $TESTS # SKIP full filesystem cases: $1"
}

metric() {
    curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | sed -n "s/^$1 \([0-9]*\)\$/\1/p"
}
metric_is() {
    [ "$(metric "$1")" = "$2" ]
}

setup_broker_network || done_testing
# A signal with a 300 KB attachment: its envelope takes the 512 KiB bucket.
"$PY" - <<'PY'
import base64, json, os
sig = {"type": "woonfraude", "purpose": "handhaving", "summary": "foto's van de gevel",
       "nature": "hard",
       "attachments": [{"name": "gevel.jpg", "media_type": "image/jpeg",
                        "data_base64": base64.b64encode(os.urandom(300000)).decode()}]}
open("big.json", "w").write(json.dumps(sig))
PY

# The broker's keys stay; its home becomes a 48 MiB tmpfs.
cp -a broker broker.keys
if mount_err=$(mount -t tmpfs -o size=48m,mode=0700 tmpfs broker 2>&1); then
    MOUNTED=yes
    cp -a broker.keys/. broker/
else
    skip_case "cannot mount a tmpfs here ($(id -un)): ${mount_err:-mount failed}"
fi

start_broker --map-size $((1024 * 1024 * 1024)) --metrics 127.0.0.1:0 || done_testing
METRICS_PORT=$(metrics_port)

# Twin: with space, submits are accepted and nothing says full.
peer gemeente-diemen submit --to politie-mn --json signal.json --count 2
jl 'len(E("ack")) == 2 and all(a["valid"] for a in E("ack")) and not E("error")' \
    "with space, submits are accepted"
check "with space, keten_store_full is 0" metric_is keten_store_full 0
check "with space, keten_store_disk_full is 0" metric_is keten_store_disk_full 0
check "the disk reserve (8 MiB) is allocated" metric_is keten_store_disk_reserve_bytes 8388608
check "the free bytes of the filesystem are shown" test -n "$(metric keten_store_disk_free_bytes)"

if [ -z "$MOUNTED" ]; then
    peer gemeente-diemen submit --to politie-mn --json big.json --count 4
    jl 'len(E("ack")) == 4 and not E("error")' "with space, large submits are accepted"
    stop_broker
    check "the broker stops (exit 0)" test "$BRC" -eq 0
    done_testing
fi

# 1. Another program fills the filesystem.
# dd stops on ENOSPC. (Not df afterwards: the broker gives its 8 MiB
# reserve back as soon as it sees the full filesystem, which can happen
# before df looks.)
dd_err=$(dd if=/dev/zero of=broker/filler bs=1M 2>&1 >/dev/null)
dd_rc=$?
check "the filesystem is full (dd stopped on ENOSPC)" \
    test "$dd_rc" -ne 0 -a -n "$(printf '%s' "$dd_err" | grep -F 'No space left on device')"
wait_for 10 metric_is keten_store_disk_full 1
check "the broker sees the full filesystem: keten_store_disk_full 1" test $? -eq 0
check "keten_store_full is 1" metric_is keten_store_full 1
check "the disk reserve was given back" metric_is keten_store_disk_reserve_bytes 0
run grep -F "the broker's filesystem is full" "$BLOG"
says "dir=broker/store free_bytes=" "the broker's log says the filesystem is full and names the store"

peer gemeente-diemen submit --to politie-mn --json signal.json --count 6
jl 'len(E("error")) == 6 and not E("ack")' "the 6 submits are refused"
jl 'all(e["reason"] == "STORE_FULL" for e in E("error"))' "with STORE_FULL"
jl 'all(e["detail"] == "store full: the broker'"'"'s filesystem is full; free disk space" for e in E("error"))' \
    "the refusal names the filesystem, not the map"

peer politie-mn recv --count 2
jl 'len(E("deliver")) == 2 and all(d["opened"] and d["receipted"] for d in E("deliver"))' \
    "the full broker still delivers what it holds, and takes the receipts"
audit
jl "len([r for r in L if r['event'] == 'REJECTED' and r['reason'] == 'STORE_FULL']) == 6" \
    "every STORE_FULL refusal is in the audit log (written into the reserve)"
jl "len([r for r in L if r['event'] == 'RECEIPTED']) == 2" "the receipts are audited"

rm -f broker/filler
wait_for 10 metric_is keten_store_disk_full 0
check "space freed: keten_store_disk_full goes back to 0" test $? -eq 0
check "keten_store_full is 0" metric_is keten_store_full 0
check "the disk reserve is allocated again" metric_is keten_store_disk_reserve_bytes 8388608
peer gemeente-diemen submit --to politie-mn --json signal.json
jl 'len(E("ack")) == 1 and not E("error")' "without a restart, a new submit is accepted"

# 2. The broker's own store grows into the filesystem: about 70 envelopes
# of 512 KiB fit; the rest is refused before any commit fails.
peer gemeente-diemen --timeout-ms 60000 submit --to politie-mn --json big.json --count 100
accepted=$(jget 'len(E("ack"))')
refused=$(jget 'len(E("error"))')
echo "# $accepted accepted, $refused refused"
jl 'len(E("ack")) >= 20 and all(a["valid"] for a in E("ack"))' "the first large submits are accepted"
jl 'len(E("error")) >= 1 and all(e["reason"] == "STORE_FULL" for e in E("error"))' \
    "the rest are refused with STORE_FULL"
jl 'len(E("ack")) + len(E("error")) == 100' "every submit is answered"
jl 'max(a["request_id"] for a in E("ack")) < min(e["request_id"] for e in E("error"))' \
    "it refuses only once the filesystem is full"
jl 'E("error")[0]["detail"] == "store full: the broker'"'"'s filesystem is full; free disk space"' \
    "the refusal names the filesystem"
check "keten_store_disk_full is 1" metric_is keten_store_disk_full 1
run grep -F 'msg="batch failed' "$BLOG"
check "no commit failed: the margin kept the store from running into the full disk" test "$RC" -eq 1

peer politie-mn --timeout-ms 60000 recv --count "$((accepted + 1))"
jl "len(E('deliver')) == $accepted + 1 and all(d['opened'] and d['receipted'] for d in E('deliver'))" \
    "every message it accepted is delivered and receipted"
audit
jl "len([r for r in L if r['event'] == 'REJECTED' and r['reason'] == 'STORE_FULL']) == 6 + $refused" \
    "every STORE_FULL refusal is audited"
jl "len([r for r in L if r['event'] == 'RECEIPTED']) == 3 + $accepted" "every receipt is audited"

# The receipts freed pages in the data file (it does not shrink): the store
# reuses them, so it has room again although the filesystem is still full.
wait_for 10 metric_is keten_store_disk_full 0
check "the freed pages count: keten_store_disk_full goes back to 0" test $? -eq 0
peer gemeente-diemen --timeout-ms 60000 submit --to politie-mn --json big.json --count 10
jl 'len(E("ack")) == 10 and not E("error")' "large submits are accepted again, without a restart"
stop_broker
check "the broker stops (exit 0)" test "$BRC" -eq 0

# 3. What was seen in the field: a commit that runs into the full filesystem
# (LMDB: EIO for a short write, or ENOSPC). A test hook turns off the
# free-space check that prevents it, on a fresh store. The failed batch is
# not stored; it is applied again with its submits refused, and those
# refusals are audited in the space the reserve gives back.
umount broker && MOUNTED=""
if mount -t tmpfs -o size=48m,mode=0700 tmpfs broker; then
    MOUNTED=yes
    cp -a broker.keys/. broker/
fi
check "a fresh 48 MiB tmpfs for the broker's home" test -n "$MOUNTED"
KETEN_BROKER_TEST_NO_DISK_CHECK=1 start_broker --map-size $((1024 * 1024 * 1024)) \
    --metrics 127.0.0.1:0 || done_testing
METRICS_PORT=$(metrics_port)
run grep -F "test hook armed: no free-space check before commits" "$BLOG"
expect 0 "the broker runs without its free-space check (test hook)"
peer gemeente-diemen --timeout-ms 60000 submit --to politie-mn --json big.json --count 100
accepted=$(jget 'len(E("ack"))')
refused=$(jget 'len(E("error"))')
echo "# $accepted accepted, $refused refused"
jl 'len(E("ack")) + len(E("error")) == 100' "every submit is answered"
jl 'len(E("ack")) >= 20 and all(a["valid"] for a in E("ack"))' "the first large submits are accepted"
jl 'len(E("error")) >= 1 and all(e["reason"] == "STORE_FULL" for e in E("error"))' \
    "the rest are refused with STORE_FULL"
run grep -F 'msg="batch failed; nothing of it was stored" error="store full"' "$BLOG"
says "the broker's filesystem is full while committing" \
    "a commit failed on the full filesystem, and the log says so, not an I/O error"
check "keten_store_disk_full is 1" metric_is keten_store_disk_full 1
check "the disk reserve was given back" metric_is keten_store_disk_reserve_bytes 0
peer politie-mn --timeout-ms 60000 recv --count "$accepted"
jl "len(E('deliver')) == $accepted and all(d['opened'] and d['receipted'] for d in E('deliver'))" \
    "every message it accepted is delivered and receipted: nothing of the failed batch was half stored"
audit
jl "len([r for r in L if r['event'] == 'REJECTED' and r['reason'] == 'STORE_FULL']) == $refused" \
    "every STORE_FULL refusal is audited, those of the failed batch too"
jl "len([r for r in L if r['event'] == 'SUBMITTED']) == $accepted" \
    "only the accepted submits have a submitted record"
stop_broker
check "the broker stops (exit 0)" test "$BRC" -eq 0
done_testing
