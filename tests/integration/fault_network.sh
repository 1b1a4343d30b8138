#!/usr/bin/env bash
# Network faults: nodes that lose the broker for a while catch up without
# loss or duplicates. Three municipalities send signals to police and tax in
# background loops while
#  (a) the broker is stopped (SIGTERM, a clean exit) for a few seconds: the
#      sends are stored in the senders' outboxes, which grow, and are
#      resent when the broker is back;
#  (b) the broker is frozen (SIGSTOP) for a few seconds, below the nodes'
#      heartbeat timeout: nothing is read or answered, then SIGCONT;
#  (c) the broker is frozen for longer than the nodes' heartbeat timeout
#      (3 x 5 s): the nodes see the broker as gone and reconnect after
#      SIGCONT.
# After each fault the traffic flows again; then the load stops, everything
# drains, and every msg_id that send printed is in each recipient's inbox
# exactly once and receipted by both recipients at its sender; no send
# failed; keten-audit verify passes; no node raised an alarm.
#
# The pauses are random: KETEN_FAULT_SEED=N repeats a run's choices.
. "$(dirname "$0")/fault_lib.sh"

PERIOD=0.2 # each sender's pause between two sends (s)

seed_random
setup_fault_network || done_testing
start_all || done_testing
start_load "$PERIOD"
check "the load flows: the first messages arrive" wait_until 30 inboxes_hold 6

# (a) The broker stopped cleanly, then started again.
rand_delay 200 1500
sleep "$DELAY"
rand_delay 3000 6000
down=$DELAY
stop_one broker
check "(a) the broker stops on SIGTERM with exit 0" test "$STOP_RC" -eq 0
check "(a) the nodes see the broker gone" wait_until 20 lacks connected gemeente-diemen
sleep "$down"
check "(a) the sends made while the broker is down wait in the outbox" \
    outbox_waits gemeente-almere
runs=$(broker_runs)
start_broker
check "(a) the broker runs again after $down s down" wait_broker_up "$runs" 30
for id in $NODES; do
    check "(a) $id reconnects" wait_until 30 connected "$id"
done
check "(a) the outboxes empty again" wait_until 60 outboxes_empty
check "(a) the traffic flows again" flows_again

# (b) The broker frozen for a few seconds: its peers' traffic is not read.
rand_delay 200 1500
sleep "$DELAY"
rand_delay 2000 5000
frozen=$DELAY
kill -STOP "${PID[broker]}"
sleep "$frozen"
check "(b) the sends made while the broker is frozen wait in the outbox" \
    outbox_waits gemeente-zaanstad
kill -CONT "${PID[broker]}"
check "(b) after $frozen s frozen the broker runs on" kill -0 "${PID[broker]}"
check "(b) the outboxes empty again" wait_until 60 outboxes_empty
check "(b) the traffic flows again" flows_again

# (c) Frozen beyond the nodes' heartbeat timeout: they drop the connection.
rand_delay 200 1500
sleep "$DELAY"
kill -STOP "${PID[broker]}"
t1=$(now_ms)
check "(c) the nodes' heartbeats time out and they see the broker gone" \
    wait_until 40 lacks connected gemeente-diemen
echo "# (c) gemeente-diemen saw the broker gone after $(ms_since "$t1") s"
rand_delay 1000 3000
sleep "$DELAY"
check "(c) the sends made meanwhile wait in the outbox" outbox_waits gemeente-diemen
kill -CONT "${PID[broker]}"
echo "# (c) the broker was frozen for $(ms_since "$t1") s"
for id in $NODES; do
    check "(c) $id reconnects" wait_until 60 connected "$id"
done
check "(c) the outboxes empty again" wait_until 60 outboxes_empty
check "(c) the traffic flows again" flows_again

stop_load
check "the load sent messages" test "$(sent_count)" -gt 0
check "no send failed: each was stored in the outbox while the broker was away" \
    test "$(fail_count)" -eq 0
if [ "$(fail_count)" -ne 0 ]; then
    cat "$T"/send-*.err | sort | uniq -c | head -n 5 | sed 's/^/# /'
fi
drain 90
check_exactly_once
audit_verify
expect 0 "keten-audit verify passes on the broker's log"
stdout_says "The audit log verifies." "keten-audit says the log verifies"
no_alarms
fault_finish fault_network
