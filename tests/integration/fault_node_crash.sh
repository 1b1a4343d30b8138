#!/usr/bin/env bash
# Crash faults of the nodes under load: three municipalities send signals to
# police and tax in background loops while, 20 times, a random sending node
# (10 times, during its sends: a send is durable in its outbox before send
# prints the msg_id) or a random receiving node (10 times, during
# deliveries: it stores a message before it receipts it) is killed with
# SIGKILL and restarted after a random pause. Then the load stops,
# everything drains, and every msg_id that send printed is in each
# recipient's inbox exactly once (nothing printed as sent is lost, nothing is
# stored twice), receipted by both recipients at its sender; a message that
# arrived although its send did not print (the sender died before it
# answered) is one the sender stored; keten-audit verify passes on the
# broker's log; no node raised an alarm.
#
# The choices are random: KETEN_FAULT_SEED=N repeats a run's choices (the
# seed is printed); KETEN_FAULT_KILLS=N kills N senders and N recipients.
. "$(dirname "$0")/fault_lib.sh"

KILLS=${KETEN_FAULT_KILLS:-10}
PERIOD=0.2 # each sender's pause between two sends (s)

seed_random
setup_fault_network || done_testing
start_all || done_testing
start_load "$PERIOD"
check "the load flows: the first messages arrive" wait_until 30 inboxes_hold 6

# The order of the kills: KILLS of each kind, shuffled.
read -ra senders <<<"$SENDERS"
read -ra recipients <<<"$RECIPIENTS"
kinds=()
for _ in $(seq 1 "$KILLS"); do
    kinds+=(sender recipient)
done
for ((i = ${#kinds[@]} - 1; i > 0; i--)); do
    j=$((RANDOM % (i + 1)))
    tmp=${kinds[i]}
    kinds[i]=${kinds[j]}
    kinds[j]=$tmp
done

t0=$SECONDS
k=0
for kind in "${kinds[@]}"; do
    k=$((k + 1))
    if [ "$kind" = sender ]; then
        id=${senders[RANDOM % ${#senders[@]}]}
    else
        id=${recipients[RANDOM % ${#recipients[@]}]}
    fi
    rand_delay 200 1500
    pause=$DELAY
    rand_delay 50 1000
    down=$DELAY
    sleep "$pause"
    pid=${PID[$id]}
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        not_ok "kill $k: $id was running (it exited by itself with $?; see node-$id.log)"
        tail -n 20 "$T/node-$id.log" | sed 's/^/# /'
        unset "PID[$id]"
    else
        kill9 "$id"
    fi
    sleep "$down"
    start_node "$id"
    if ! check "kill $k/${#kinds[@]}: $kind $id killed after $pause s, restarted after $down s, connected again; $(sent_count) sent so far" \
        wait_until 30 connected "$id"; then
        tail -n 20 "$T/node-$id.log" | sed 's/^/# /'
    fi
done
echo "# ${#kinds[@]} kills of nodes in $((SECONDS - t0)) s; $(sent_count) messages sent," \
    "$(fail_count) sends failed (their node was down)"

stop_load
check "the load sent messages" test "$(sent_count)" -gt 0
for id in $NODES; do
    check "$id is connected" wait_until 30 connected "$id"
done
drain 90
check_exactly_once
for id in $RECIPIENTS; do
    node_status_is "$id" 'True'
    echo "# $id: $(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["counters"]
print("received %d, duplicates receipted again %d since its last start" % (c["received"], c["duplicates"]))' \
        "$T/.st-$id" 2>/dev/null)"
done
audit_verify
expect 0 "keten-audit verify passes on the broker's log"
stdout_says "The audit log verifies." "keten-audit says the log verifies"
no_alarms
fault_finish fault_node_crash
