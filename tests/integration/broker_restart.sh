#!/usr/bin/env bash
# The broker's store survives restarts: queued messages are delivered after
# a plain restart and after kill -9; a broker killed after committing a
# submit but before sending the ack (KETEN_BROKER_FAULT=kill-after-commit)
# has the message: the sender's retry of the same envelope gets the original
# ack (DUPLICATE with ack) and the recipient gets the message exactly once,
# also when the retry comes after the clock window (the broker down for
# longer than 5 minutes) instead of a CLOCK_SKEW refusal.
. "$(dirname "$0")/broker_lib.sh"

setup_broker_network || done_testing
start_broker || done_testing

run timeout 10 "$BROKER" run --home broker --anchor admin/network.pub --directory dir.v1 \
    --listen "ipc://$T/second.ipc"
expect 1 "a second broker on the same store refuses to start"
says "another keten-broker is running" "it says why"

# ---- plain restart ------------------------------------------------------------------

peer gemeente-diemen submit --to politie-mn --json signal.json
jl 'len(E("ack")) == 1' "a message is queued for an offline recipient"
m1=$(jget 'E("ack")[0]["msg_id"]')
stop_broker
check "SIGTERM stops the broker (exit 0)" test "$BRC" -eq 0
start_broker || done_testing
peer politie-mn recv --count 1
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$m1' and E('deliver')[0]['opened']" \
    "after a restart the queued message is delivered"

# ---- kill -9 with messages queued ---------------------------------------------------

peer gemeente-diemen submit --to politie-mn --json signal.json --count 2
m2=$(jget '",".join(a["msg_id"] for a in E("ack"))')
jl 'len(E("ack")) == 2' "two more messages are queued"
stop_broker KILL
check "kill -9 stops the broker" test "$BRC" -eq 137
require "the store opens after kill -9" start_broker
peer politie-mn recv --count 2
jl "','.join(d['msg_id'] for d in E('deliver')) == '$m2'" \
    "after kill -9 both queued messages are delivered, in order"

# ---- killed between the commit and the ack --------------------------------------------

stop_broker
KETEN_BROKER_FAULT=kill-after-commit start_broker || done_testing
peer gemeente-diemen --timeout-ms 3000 submit --to politie-mn --json signal.json \
    --save-envelope lost-ack.env
jl 'not E("ack") and E("timeout")' "the broker dies after the commit: the sender gets no ack"
mk=$(jget 'E("sent")[0]["msg_id"]')
wait_for 5 broker_gone
check "the broker is gone" test $? -eq 0
wait "$BPID"
check "it was killed (SIGKILL)" test $? -eq 137
BPID=""
grep -q 'test hook: killed after the commit' "$BLOG"
check "it was the test hook" test $? -eq 0

start_broker || done_testing
peer gemeente-diemen replay lost-ack.env
jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'DUPLICATE' and E('error')[0]['ack']['valid'] and E('error')[0]['ack']['msg_id'] == '$mk'" \
    "the sender's retry of the same envelope gets the original ack"
ackleaf=$(jget 'E("error")[0]["ack"]["leaf"]')
peer politie-mn recv --count 2 --timeout-ms 2000
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$mk'" \
    "the recipient gets the message exactly once"
jl "E('deliver')[0]['leaf'] == $ackleaf" "at the leaf the ack names"
audit
jl "len([r for r in L if r['event'] == 'SUBMITTED' and r['msg_id'] == '$mk']) == 1" \
    "the log holds one submitted record for it"
jl 'all(r["seq"] == i for i, r in enumerate(L))' "the log is intact (seq = leaf index)"
stop_broker
check "the broker stops" test "$BRC" -eq 0

# ---- killed between the commit and the ack, down longer than the clock window ------
# The retry comes 6 minutes after the envelope was made (the broker's clock
# is set 6 minutes ahead: a broker down that long), past the clock window of
# 5 minutes. The envelope is in the log: the retry still gets the proof of
# its record, not a refusal for its clock.

KETEN_BROKER_FAULT=kill-after-commit start_broker || done_testing
peer gemeente-diemen --timeout-ms 3000 submit --to politie-mn --json signal.json \
    --save-envelope lost-ack2.env
jl 'not E("ack") and E("timeout")' "killed after the commit again: the sender gets no ack"
mk2=$(jget 'E("sent")[0]["msg_id"]')
wait_for 5 broker_gone
check "the broker is gone again" test $? -eq 0
wait "$BPID"
BPID=""
KETEN_BROKER_TEST_CLOCK_OFFSET_MS=360000 start_broker || done_testing
peer gemeente-diemen replay lost-ack2.env
jl "len(E('error')) == 1 and E('error')[0]['reason'] == 'DUPLICATE' and E('error')[0]['ack']['valid'] and E('error')[0]['ack']['msg_id'] == '$mk2'" \
    "6 minutes later (past the clock window) the retry still gets the original ack, not CLOCK_SKEW"
peer politie-mn recv --count 2 --timeout-ms 2000
jl "len(E('deliver')) == 1 and E('deliver')[0]['msg_id'] == '$mk2'" \
    "and the recipient gets that message once"
stop_broker
check "the broker stops" test "$BRC" -eq 0

# ---- the wall clock steps back ------------------------------------------------------
# Auditors check that record times never go back; a broker whose clock was
# stepped back (NTP, a restored VM) must not write records dated earlier.
audit
last=$(jget 'L[-1]["time"]')
KETEN_BROKER_TEST_CLOCK_OFFSET_MS=-600000 start_broker || done_testing
check "the clock hook announces itself" grep -q "the broker's clock is shifted" "$BLOG"
peer gemeente-diemen submit --to politie-mn --json signal.json
jl "len(E('ack')) == 0" \
    "with its clock 10 minutes back, the broker takes nothing from a partner whose certificate is younger"
audit
jl "L[-1]['event'] == 'AUTH_FAILED' and L[-1]['node'] == 'gemeente-diemen'" \
    "the refused connection is audited"
jl "L[-1]['time'] >= $last" "its record is not dated before the previous record ($last)"
jl 'all(L[i]["time"] <= L[i + 1]["time"] for i in range(len(L) - 1))' \
    "no record in the log is dated before the one it follows"
stop_broker
check "the broker stops" test "$BRC" -eq 0
run env KETEN_BROKER_TEST_CLOCK_OFFSET_MS=yesterday timeout 10 "$BROKER" run --home broker \
    --anchor admin/network.pub --directory dir.v1 --listen "ipc://$T/third.ipc"
expect 4 "a malformed clock offset is refused (exit 4: a restart cannot mend it)"
says "KETEN_BROKER_TEST_CLOCK_OFFSET_MS must be a number" "it says why"
done_testing
