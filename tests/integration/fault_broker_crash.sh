#!/usr/bin/env bash
# Crash faults of the broker under load: three municipalities send signals to
# police and tax in background loops while the broker is killed with SIGKILL
# at random moments, 50 times in a row, and restarted each time. After every
# restart keten-audit verify passes on the broker's home (read-only, while it
# runs). Then the load stops, everything drains, and every msg_id that send
# printed (durable in the sender's outbox, resent until acknowledged) is in
# each recipient's inbox exactly once, and receipted by both recipients at its
# sender; no send failed; no node raised an alarm.
#
# The moments are random: KETEN_FAULT_SEED=N repeats a run's choices (the
# seed is printed); KETEN_FAULT_KILLS=N changes the number of kills.
. "$(dirname "$0")/fault_lib.sh"

KILLS=${KETEN_FAULT_KILLS:-50}
PERIOD=0.25 # each sender's pause between two sends (s)

seed_random
setup_fault_network || done_testing
start_all || done_testing
audit_verify
expect 0 "keten-audit verify passes on the new broker's log"

start_load "$PERIOD"
check "the load flows: the first messages arrive" wait_until 30 inboxes_hold 6

t0=$SECONDS
for k in $(seq 1 "$KILLS"); do
    rand_delay 50 1000
    pause=$DELAY
    sleep "$pause"
    pid=${PID[broker]}
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        rc=$?
        unset "PID[broker]"
        not_ok "kill $k/$KILLS: the broker was running (it exited by itself with $rc;" \
            "see broker.log)"
        tail -n 20 "$T/broker.log" | sed 's/^/# /'
    else
        kill9 broker
    fi
    runs=$(broker_runs)
    t1=$(now_ms)
    start_broker
    if ! wait_broker_up "$runs" 30; then
        not_ok "kill $k/$KILLS: the broker restarts after SIGKILL"
        tail -n 20 "$T/broker.log" | sed 's/^/# /'
        break
    fi
    up=$(ms_since "$t1")
    t1=$(now_ms)
    audit_verify
    echo "# kill $k: the broker was up again after $up s; keten-audit verify took $(ms_since "$t1") s (exit $RC)"
    if ! check "kill $k/$KILLS after $pause s: the broker restarted and keten-audit verify passes; $(sent_count) sent so far" \
        test "$RC" -eq 0; then
        keep=$(mktemp -d "${TMPDIR:-/tmp}/keten-fault-store-seed$SEED.XXXXXX") \
            && cp -a broker/store "$keep"/ && echo "# the broker's store is kept in $keep"
    fi
done
echo "# $KILLS kills of the broker in $((SECONDS - t0)) s; $(sent_count) messages sent"

stop_load
check "the load sent messages" test "$(sent_count)" -gt 0
check "no send failed: each was stored in the outbox even while the broker was down" \
    test "$(fail_count)" -eq 0
if [ "$(fail_count)" -ne 0 ]; then
    cat "$T"/send-*.err | sort | uniq -c | head -n 5 | sed 's/^/# /'
fi
for id in $NODES; do
    check "$id reconnects to the last broker" wait_until 30 connected "$id"
done
drain 90
check_exactly_once
audit_verify
expect 0 "keten-audit verify passes on the drained log"
no_alarms
fault_finish fault_broker_crash
