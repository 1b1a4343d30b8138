#!/usr/bin/env bash
# What an operator watches on a node, and how a daemon that cannot start
# says so.
#
# Start-up failures: a node or a broker whose key file the passphrase does
# not open, or a node without a key file, exits 4 (a restart cannot mend it:
# the systemd units have RestartPreventExitStatus=2 3 4); the twins: the
# right passphrase starts it, and a failure that may pass by itself
# (another daemon holds the home) exits 1, which the units do restart.
#
# Metrics (keten-node run --metrics 127.0.0.1:0, the port from the log):
# connected 1, the directory version and its time to expiry; the broker
# stops: connected 0 and `status` exits 1 (it said "NOT connected" and
# exited 0 before); a signal sent meanwhile waits: outbox depth 1; the
# broker is back: connected 1, outbox 0, status exits 0, the recipient's
# unhandled inbox 1 and its received counter 1, then 0 after `ack`; a
# checkpoint age appears. A non-loopback --metrics address is refused at
# start (exit 4, before any passphrase is asked); the twin: with
# --metrics-remote the same address is served.
. "$(dirname "$0")/node_lib.sh"

need_tool curl

setup_network || done_testing
signal sig.json woonfraude "Adres staat op naam van 9 personen"
NODE_ARGS=(--anchor admin/network.pub --directory directory.signed --broker "$BROKER_EP")

# ---- start-up failures: exit 4, out of the restart loop --------------------

run env KETEN_PASSPHRASE=right-passphrase "$NODE" keygen --home n-extra --id extra \
    --role police --org "Extra"
expect 0 "a passphrase-protected node key"
run env KETEN_PASSPHRASE=wrong-passphrase timeout 30 "$NODE" run --home n-extra "${NODE_ARGS[@]}"
expect 4 "a node started with a wrong passphrase exits 4 (a restart cannot mend it)"
says "the passphrase does not open" "it says the passphrase does not open the key file"

mkdir -m 0700 n-nokey
run timeout 30 "$NODE" run --home n-nokey "${NODE_ARGS[@]}"
expect 4 "a node without a key file exits 4"
says "keten-node keygen" "it says how to make one"

run env KETEN_PASSPHRASE=right-passphrase "$BROKER" keygen --home broker-extra
expect 0 "a passphrase-protected broker key"
run env KETEN_PASSPHRASE=wrong-passphrase timeout 30 "$BROKER" run --home broker-extra \
    --anchor admin/network.pub --directory directory.signed --listen "ipc://$T/extra.sock"
expect 4 "a broker started with a wrong passphrase exits 4"

# The twins: the right passphrase starts the node; a second daemon on the
# same home (a failure that passes once the first stops) exits 1.
KETEN_PASSPHRASE=right-passphrase start_node extra
check "with the right passphrase the node starts" wait_until 20 node_running extra
run env KETEN_PASSPHRASE=right-passphrase timeout 30 "$NODE" run --home n-extra "${NODE_ARGS[@]}"
expect 1 "a second daemon on the same home exits 1 (restartable), not 4"
says "another keten-node daemon is running" "it says another daemon holds the home"
stop_one extra
# keten-node status, inbox and send look whether a daemon runs by taking
# node.lock shared for a moment; a daemon that starts in that moment waits
# for it instead of exiting as if another daemon held the home. Here the
# look lasts 0.6 s.
"$PY" -c '
import fcntl, sys, time
f = open(sys.argv[1])
fcntl.flock(f, fcntl.LOCK_SH)
open(sys.argv[2], "w").close()
time.sleep(0.6)' n-extra/node.lock "$T/shared-lock" &
holder=$!
check "a command holds node.lock shared" wait_until 10 test -e "$T/shared-lock"
KETEN_PASSPHRASE=right-passphrase start_node extra
check "a daemon started while a command holds node.lock shared waits for it and runs" \
    wait_until 20 node_running extra
wait "$holder"
stop_one extra

# ---- metrics ----------------------------------------------------------------

# commit_count ID: keten_node_commit_seconds_count of node ID, once the
# histogram's shape is checked: its TYPE line, cumulative buckets at the
# documented bounds ending in +Inf equal to the count, a sum above 0 once
# something was committed. Prints nothing if any of it is wrong.
commit_count() {
    curl -sf "http://127.0.0.1:$(metrics_port "$1")/metrics" | "$PY" -c '
import re, sys
page = sys.stdin.read()
assert "# TYPE keten_node_commit_seconds histogram" in page
b = re.findall(r"^keten_node_commit_seconds_bucket\{le=\"([^\"]+)\"\} (\d+)$", page, re.M)
les = [x for x, _ in b]
assert les == ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
               "0.25", "0.5", "1", "+Inf"], les
counts = [int(c) for _, c in b]
assert counts == sorted(counts), counts
count = int(re.search(r"^keten_node_commit_seconds_count (\d+)$", page, re.M).group(1))
total = float(re.search(r"^keten_node_commit_seconds_sum (\S+)$", page, re.M).group(1))
assert counts[-1] == count and (count == 0 or total > 0), (counts, count, total)
print(count)' 2>/dev/null
}
commit_grew() { # commit_grew ID N: more than N commits counted
    local c
    c=$(commit_count "$1")
    [ -n "$c" ] && [ "$c" -gt "$2" ]
}

start_broker
start_node gemeente-diemen --metrics 127.0.0.1:0
start_node politie-mn --metrics 127.0.0.1:0
for id in gemeente-diemen politie-mn; do
    check "$id logs the port of its metrics" wait_until 20 has_metrics_port "$id"
    check "$id: keten_node_connected 1" wait_until 20 metric_is "$id" keten_node_connected 'v == 1'
done
run curl -s -D "$T/headers" "http://127.0.0.1:$(metrics_port gemeente-diemen)/metrics"
expect 0 "GET /metrics"
check "... as Prometheus text" grep -qi '^Content-Type: text/plain; version=0.0.4' "$T/headers"
stdout_says "# TYPE keten_node_outbox_depth gauge" "... with HELP and TYPE lines"
stdout_says "keten_node_sent_total 0" "... and the node's counters"
run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(metrics_port gemeente-diemen)/other"
stdout_says "404" "another path is not found"
check "keten_node_directory_version 1" metric_is gemeente-diemen keten_node_directory_version 'v == 1'
check "keten_node_directory_expires_seconds: days ahead" \
    metric_is gemeente-diemen keten_node_directory_expires_seconds 'v > 86400'
check "keten_node_alarms 0" metric_is gemeente-diemen keten_node_alarms 'v == 0'
check "keten_node_outbox_depth 0" metric_is gemeente-diemen keten_node_outbox_depth 'v == 0'
run "$NODE" status --home n-gemeente-diemen
expect 0 "status while connected"

# The broker stops.
stop_one broker
check "gemeente-diemen: keten_node_connected 0 once the broker is gone" \
    wait_until 20 metric_is gemeente-diemen keten_node_connected 'v == 0'
run "$NODE" status --home n-gemeente-diemen
expect 1 "status exits 1 while the node is not connected"
stdout_says "NOT connected" "... and prints NOT connected"
says "keten-node: the node is not connected to the broker" "... and says so on stderr"
run "$NODE" status --home n-gemeente-diemen --json
expect 1 "status --json exits 1 too"
C0=$(commit_count gemeente-diemen)
check "keten_node_commit_seconds: a histogram of the node's durable commits ($C0 so far)" \
    test -n "$C0"
run "$NODE" send --home n-gemeente-diemen --to politie-mn --signal sig.json
expect 0 "a signal is handed to the node while the broker is down"
MSG=$(cat "$T/.out")
check "... the commit that stored it is counted" wait_until 10 commit_grew gemeente-diemen "${C0:-0}"
check "keten_node_outbox_depth 1: it waits" \
    wait_until 20 metric_is gemeente-diemen keten_node_outbox_depth 'v == 1'

# The broker is back.
start_broker
check "gemeente-diemen: keten_node_connected 1 again" \
    wait_until 30 metric_is gemeente-diemen keten_node_connected 'v == 1'
check "keten_node_outbox_depth 0: the message went out" \
    wait_until 30 metric_is gemeente-diemen keten_node_outbox_depth 'v == 0'
check "keten_node_sent_total 1" metric_is gemeente-diemen keten_node_sent_total 'v == 1'
check "status exits 0 again" wait_until 20 "$NODE" status --home n-gemeente-diemen
check "politie-mn: keten_node_inbox_unhandled 1" \
    wait_until 30 metric_is politie-mn keten_node_inbox_unhandled 'v == 1'
check "politie-mn: keten_node_received_total 1" \
    metric_is politie-mn keten_node_received_total 'v == 1'
check "politie-mn: the commit that stored the delivery is in its histogram" \
    commit_grew politie-mn 0
check "gemeente-diemen: a checkpoint age, under a minute" \
    wait_until 20 metric_is gemeente-diemen keten_node_checkpoint_age_seconds '0 <= v < 60'
run "$NODE" ack --home n-politie-mn "$MSG"
expect 0 "politie-mn acknowledges the message"
check "politie-mn: keten_node_inbox_unhandled 0" \
    wait_until 20 metric_is politie-mn keten_node_inbox_unhandled 'v == 0'

# ---- only loopback, unless said otherwise ----------------------------------

run timeout 30 "$NODE" run --home n-belastingdienst "${NODE_ARGS[@]}" --metrics 0.0.0.0:0
expect 4 "a non-loopback --metrics address stops the node at start (exit 4)"
says "is not a loopback address" "it says the address is not loopback"
says "metrics-remote" "... and how to allow it"
check "no metrics were served" lacks grep -q 'msg="metrics served"' "$T/.all"
start_node belastingdienst --metrics 0.0.0.0:0 --metrics-remote
check "the twin: with --metrics-remote the same address is served" \
    wait_until 20 metric_is belastingdienst keten_node_connected 'v == 1'

finish
