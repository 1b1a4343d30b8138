#!/usr/bin/env bash
# The node against a malicious broker (keten-fakebroker, which signs with the
# real broker's key file, so its acks and checkpoints verify):
#   (a) an ack for a message that never reaches the log -> inclusion alarm;
#   (b) a checkpoint forked from the one it served before -> refused, not
#       cosigned, alarm;
#   (c) a directory version named in its checkpoints but withheld -> the
#       node fails closed (refuses to send) and raises the alarm;
#   (d) a refusal: send --wait and status MSG_ID report it with its reason
#       and rule;
#   (e) an honest fake broker, as a control: its proofs pass, no alarm; only
#       the one node cosigns, so the checkpoint is never witnessed by a
#       quorum and the node warns (without an alarm).
. "$(dirname "$0")/node_lib.sh"

setup_network || done_testing
signal sig.json woonfraude "Melding aan een kwaadwillende broker"
FAKE_EP="ipc://$T/fake.sock"

# start_fake MODE [ARGS...]: the fake broker, its events in fake-MODE.out.
start_fake() {
    local mode=$1
    shift
    "$FAKEBROKER" --home broker --anchor admin/network.pub --directory directory.signed \
        --listen "$FAKE_EP" --mode "$mode" "$@" >"$T/fake-$mode.out" 2>>"$T/fake.err" &
    PID[fake]=$!
    wait_until 10 grep -qx ready "$T/fake-$mode.out"
}

# A fresh store for gemeente-diemen against the fake broker.
start_victim() {
    rm -rf n-gemeente-diemen/store
    "$NODE" run --home n-gemeente-diemen --anchor admin/network.pub \
        --directory directory.signed --broker "$FAKE_EP" --inclusion-timeout-ms 2000 "$@" \
        >>"$T/node-victim.log" 2>&1 &
    PID[gemeente-diemen]=$!
}

# shellcheck disable=SC2317 # called through wait_until
alarmed() {
    "$NODE" status --home n-gemeente-diemen >/dev/null 2>&1
    [ $? -eq 3 ]
}

# (a) acknowledged, never logged.
start_fake ack-unlogged
start_victim
check "(a) the node connects to the fake broker" wait_until 20 connected gemeente-diemen
check "(a) the node accepts its honest first checkpoint" wait_until 20 node_status_is \
    gemeente-diemen '"tree_size" in d["checkpoint"]'
run "$NODE" send --home n-gemeente-diemen --to politie-mn --json sig.json --wait
expect 0 "(a) the fake broker's signed ack is valid: send --wait succeeds"
M=$(cat "$T/.out")
check "(a) the ack names a leaf" grep -q "^ack $M leaf" "$T/fake-ack-unlogged.out"
check "(a) the node raises the alarm when no inclusion proof comes in time" wait_until 20 alarmed
run "$NODE" status --home n-gemeente-diemen
expect 3 "(a) status exits 3"
says "inclusion-missing" "(a) the alarm is inclusion-missing"
says "$M" "(a) the alarm names the message"
check "(a) counted as a failed inclusion check" node_status_is gemeente-diemen \
    'd["counters"]["inclusion_failed"] >= 1'
stop_one gemeente-diemen
stop_one fake

# (b) a forked checkpoint.
start_fake fork
start_victim
check "(b) the node cosigns the fake broker's first (honest) checkpoint" wait_until 20 \
    grep -q "^cosignature gemeente-diemen 1$" "$T/fake-fork.out"
check "(b) then the fake broker forks its history" wait_until 20 grep -q "^fork " "$T/fake-fork.out"
check "(b) the node raises the alarm" wait_until 20 alarmed
run "$NODE" status --home n-gemeente-diemen
expect 3 "(b) status exits 3"
says "inconsistent-checkpoint" "(b) the alarm is inconsistent-checkpoint"
check "(b) the node asked for a consistency proof" grep -q "^proof-request 1 " "$T/fake-fork.out"
sleep 1
check "(b) the forked checkpoint was not cosigned" lacks grep -q "forked$" <(grep '^cosignature' "$T/fake-fork.out")
check "(b) no cosignature after the fork at all" test \
    "$(sed -n '/^fork /,$p' "$T/fake-fork.out" | grep -c '^cosignature')" -eq 0
check "(b) the node keeps its reference (size 1)" node_status_is gemeente-diemen \
    'd["checkpoint"]["tree_size"] == 1 and d["counters"]["checkpoints_refused"] >= 1'
check "(b) one alarm for the one forked checkpoint, not one per copy" node_status_is \
    gemeente-diemen 'len([a for a in d["alarms"] if a["kind"] == "inconsistent-checkpoint"]) <= 2'
stop_one gemeente-diemen
stop_one fake

# (c) a directory version named in checkpoints but withheld.
run "$KEYS" register --dir admin --category extra
expect 0 "(c) a change for directory version 2"
publish_dir admin directory-2.signed
start_fake withhold-directory --named-directory directory-2.signed
check "(c) the fake broker's checkpoints name version 2" wait_until 10 \
    grep -q "directory 2$" "$T/fake-withhold-directory.out"
start_victim
check "(c) the node sees version 2 named and stops sending" wait_until 20 node_status_is \
    gemeente-diemen 'd["directory"]["needed_version"] == 2 and d["directory"]["version"] == 1'
check "(c) the node asked for the directory chain" \
    grep -q "^directory-request after 1" "$T/fake-withhold-directory.out"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --json sig.json
check "(c) send fails closed" test "$RC" -ne 0
says "refusing to send" "(c) send says it refuses to send"
says "version 2" "(c) and names the withheld version"
check "(c) nothing was submitted" lacks grep -q '^ack ' "$T/fake-withhold-directory.out"
check "(c) the node raises the alarm when the directory does not come" wait_until 20 alarmed
run "$NODE" status --home n-gemeente-diemen
expect 3 "(c) status exits 3"
says "directory-withheld" "(c) the alarm is directory-withheld"
check "(c) no checkpoint naming the withheld version was taken or cosigned" lacks \
    grep -q '^cosignature' "$T/fake-withhold-directory.out"
stop_one gemeente-diemen
stop_one fake

# (d) the broker refuses.
start_fake refuse
start_victim
check "(d) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --json sig.json --wait
expect 1 "(d) send --wait reports the broker's refusal"
says "POLICY (rule 7)" "(d) with the reason and the rule"
M=$(python3 -c 'import re,sys; print(re.search(r"[0-9a-f]{32}", open(sys.argv[1]).read()).group(0))' \
    "$T/.all")
run "$NODE" status --home n-gemeente-diemen "$M" --json
expect 0 "(d) status MSG_ID of the refused message"
check "(d) status shows state rejected, reason POLICY, rule 7, per recipient" json_is "$T/.out" \
    'd["state"] == "rejected" and d["reason"] == "POLICY" and d["rule"] == 7 and d["recipients"][0]["state"] == "rejected"'
check "(d) a refused message is not resent (outbox empty)" node_status_is gemeente-diemen \
    'd["outbox"] == 0 and d["counters"]["refused"] == 1'
stop_one gemeente-diemen
stop_one fake

# (e) honest: the control.
start_fake honest
start_victim --witness-timeout-ms 500
check "(e) the node connects" wait_until 20 connected gemeente-diemen
run "$NODE" send --home n-gemeente-diemen --to politie-mn --json sig.json --wait
expect 0 "(e) send to the honest fake broker"
check "(e) its inclusion proof passes" wait_until 20 node_status_is gemeente-diemen \
    'd["pending_inclusion"] == 0 and d["counters"]["inclusion_passed"] == 1'
check "(e) the node warns that its checkpoint is not witnessed by a quorum" wait_until 20 \
    node_status_is gemeente-diemen 'len(d["warnings"]) == 1 and not d["checkpoint"]["witnessed"]'
run "$NODE" status --home n-gemeente-diemen
expect 0 "(e) a warning is not an alarm: status exits 0"
says "not witnessed by a quorum" "(e) status shows the warning"
# status computes the warning when asked; the log line comes with the
# witness's next tick (at most a second later).
check "(e) the warning is logged" wait_until 10 grep -q 'warning=checkpoint-not-witnessed' \
    "$T/node-victim.log"
stop_one gemeente-diemen
stop_one fake
finish
