#!/usr/bin/env bash
# The daemons under systemd's notify protocol (sd_notify(3)), without
# systemd: a small listener on a Unix datagram socket stands in for the
# service manager (NOTIFY_SOCKET), and each daemon is started the way systemd
# starts a Type=notify unit with WatchdogSec=2s (WATCHDOG_USEC, WATCHDOG_PID
# = the daemon's own pid).
#
# keten-broker: READY=1 only once it serves (its metrics answer), not when it
# cannot listen; WATCHDOG=1 again and again, none when WATCHDOG_PID names
# another process; SIGHUP with a newer directory file: RELOADING=1, READY=1,
# the new version installed; with a file that does not verify: the old
# version stays and the broker goes on; SIGTERM: STOPPING=1 and exit 0.
# keten-node: the same, READY=1 while the broker is down, and an older file
# on SIGHUP changes nothing either.
#
# Arguments: keten-keys keten-node keten-broker keten-test-tool
. "$(dirname "$0")/lib.sh"
need_tool curl # the metrics endpoint

BROKER_EP="ipc://$T/broker.sock"
declare -A PID=() # name -> pid of a listener or daemon started here

stop_pid() {
    local pid=${PID[$1]:-} i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "PID[$1]"
}

cleanup() {
    local name
    for name in "${!PID[@]}"; do
        stop_pid "$name"
    done
    rm -rf "$T"
}
trap cleanup EXIT


# listen NAME: a stand-in for the service manager on $T/NAME.notify; every
# datagram becomes one line of $T/NAME.msgs, its fields separated by " | ".
listen() {
    "$PY" -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as out:
    while True:
        data = s.recv(4096)
        out.write(data.decode("utf-8", "replace").replace("\n", " | ") + "\n")
        out.flush()
' "$T/$1.notify" "$T/$1.msgs" &
    PID[listen-$1]=$!
    : >>"$T/$1.msgs"
    wait_for 10 test -S "$T/$1.notify" || { not_ok "the $1 listener starts"; return 1; }
}

# under_systemd NAME WATCHDOG_PID PROGRAM ARGS...: start PROGRAM in the
# background with NOTIFY_SOCKET=$T/NAME.notify and a 2 s watchdog for the
# process WATCHDOG_PID ("self": the daemon itself, as systemd does); its
# standard error goes to $T/NAME.log.
under_systemd() {
    local name=$1 wpid=$2
    shift 2
    NOTIFY_SOCKET="$T/$name.notify" WATCHDOG_USEC=2000000 WPID="$wpid" \
        sh -c 'if [ "$WPID" = self ]; then WATCHDOG_PID=$$; else WATCHDOG_PID=$WPID; fi
export WATCHDOG_PID; unset WPID; exec "$@"' sh "$@" 2>>"$T/$name.log" &
    PID[$name]=$!
}

# count NAME REGEX: the number of lines of $T/NAME.msgs that match the regex $2.
count() {
    grep -cE -- "$2" "$T/$1.msgs"
}

# has NAME REGEX: a message of NAME matches REGEX.
has() {
    grep -qE -- "$2" "$T/$1.msgs"
}

# at_least NAME REGEX N: at least N messages of NAME match REGEX.
at_least() {
    [ "$(count "$1" "$2")" -ge "$3" ]
}

# after NAME FIRST THEN: a message matching THEN comes after the last one
# matching FIRST.
after() {
    local a b
    a=$(grep -nE -- "$2" "$T/$1.msgs" | tail -n 1 | cut -d: -f1)
    b=$(grep -nE -- "$3" "$T/$1.msgs" | tail -n 1 | cut -d: -f1)
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ]
}

# gone NAME: the daemon NAME has exited (a zombie counts as gone); then
# STOP_RC is its exit code.
gone() {
    local pid=${PID[$1]}
    [ ! -e "/proc/$pid" ] || grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

# stop NAME [SIGNAL]: send SIGTERM (or SIGNAL) and wait 30 s at most; STOP_RC
# is its exit code (-1: did not stop, killed).
stop() {
    STOP_RC=-1
    kill "-${2:-TERM}" "${PID[$1]}" 2>/dev/null
    if wait_for 30 gone "$1"; then
        wait "${PID[$1]}"
        STOP_RC=$?
        unset "PID[$1]"
    else
        stop_pid "$1"
    fi
}

alive() {
    kill -0 "${PID[$1]}" 2>/dev/null && ! gone "$1"
}

metrics() {
    curl -sf --max-time 5 "http://127.0.0.1:$PORT/metrics"
}

version_metric() {
    metrics | grep -qx "keten_directory_version $1"
}

# node_version_is N: the node answers status (JSON; its exit code says
# whether it is connected, which does not matter here) with version N.
node_version_is() {
    "$NODE" status --home n-gemeente-diemen --json >"$T/.st" 2>/dev/null
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]));
sys.exit(0 if d["directory"]["version"] == int(sys.argv[2]) else 1)' "$T/.st" "$1" 2>/dev/null
}

# publish FILE [ADMINS]: the next directory version, signed by admins 1 and 2
# (by admin 1 only with ADMINS=1: below the threshold of 2, it does not verify).
# The contents do not change: each later version is a renewal (--refresh).
publish() {
    local refresh=()
    [ -d admin/published ] && ls admin/published/*.dir >/dev/null 2>&1 && refresh=(--refresh)
    run "$KEYS" publish --dir admin --out "$1" --admin 1 "${refresh[@]}"
    [ "$RC" -eq 0 ] || { not_ok "publish $1"; return 1; }
    [ "${2:-2}" = 1 ] && return 0
    run "$KEYS" sign --dir admin "$1" --admin 2
    [ "$RC" -eq 0 ] || { not_ok "sign $1"; return 1; }
}

make_network admin || done_testing
publish dir.v1 || done_testing
publish dir.v2 || done_testing
publish dir.v3-one-signature 1 || done_testing
cp dir.v1 broker.dir
cp dir.v1 node.dir

# ---- keten-broker -------------------------------------------------------------

broker_args=(run --home broker --anchor admin/network.pub --directory broker.dir)

# A broker that cannot listen never says it is ready.
listen bad-broker || done_testing
under_systemd bad-broker self "$BROKER" "${broker_args[@]}" --listen "ipc://$T/no/such/dir/b.sock"
stop_rc=-1
if wait_for 60 gone bad-broker; then
    wait "${PID[bad-broker]}"
    stop_rc=$?
    unset "PID[bad-broker]"
fi
check "a broker that cannot listen fails (exit $stop_rc)" test "$stop_rc" -eq 1
wait_for 10 has bad-broker '^STATUS=not running'
check "... its status says it is not running" test $? -eq 0
check "... and it never sent READY=1" test "$(count bad-broker 'READY=1')" -eq 0
stop_pid listen-bad-broker

listen broker || done_testing
under_systemd broker self "$BROKER" "${broker_args[@]}" --listen "$BROKER_EP" \
    --metrics 127.0.0.1:0
wait_for 60 has broker '^READY=1'
check "keten-broker sends READY=1" test $? -eq 0
PORT=$(sed -n 's/.*msg="metrics served".* port=\([0-9]*\).*/\1/p' "$T/broker.log" | tail -n 1)
check "when READY=1 has come, the broker answers (metrics, directory version 1)" version_metric 1
check "READY=1 comes with a status naming directory version 1" \
    has broker '^READY=1 \| STATUS=directory version 1; listening on ipc://'
wait_for 30 at_least broker '^WATCHDOG=1$' 3
check "the broker sends WATCHDOG=1 again and again (3 within 30 s, WatchdogSec=2s)" test $? -eq 0
check "no STOPPING=1 or RELOADING=1 while it just runs" \
    test "$(count broker 'STOPPING=1|RELOADING=1')" -eq 0

# SIGHUP with a newer directory file.
cp dir.v2 broker.dir
kill -HUP "${PID[broker]}"
wait_for 30 after broker '^RELOADING=1 \| MONOTONIC_USEC=[0-9]+$' '^READY=1'
check "SIGHUP: RELOADING=1, then READY=1" test $? -eq 0
check "... READY=1 names the installed version 2" \
    has broker '^READY=1 \| STATUS=directory version 2 \(installed from the file\)'
check "... the broker's log says version 2 is installed" \
    grep -q 'msg="directory installed" version=2' "$T/broker.log"
check "... and it serves version 2 (metrics)" version_metric 2

# SIGHUP with a newer file that does not verify (one signature of the 2).
cp dir.v3-one-signature broker.dir
kill -HUP "${PID[broker]}"
wait_for 30 at_least broker '^RELOADING=1' 2
wait_for 30 after broker '^RELOADING=1' '^READY=1'
check "SIGHUP with a file that does not verify: RELOADING=1, then READY=1" test $? -eq 0
check "... READY=1 still names version 2" \
    test "$(grep -E '^READY=1' "$T/broker.msgs" | tail -n 1 | grep -c 'directory version 2;')" -eq 1
check "... the broker's log says the file was not installed" \
    grep -q 'msg="directory file not installed"' "$T/broker.log"
check "... version 3 was not installed" lacks grep -q 'msg="directory installed" version=3' \
    "$T/broker.log"
check "... the broker is still running" alive broker
check "... and still serves version 2 (metrics)" version_metric 2
n_dog=$(count broker '^WATCHDOG=1$')
wait_for 30 at_least broker '^WATCHDOG=1$' $((n_dog + 2))
check "... and still feeds the watchdog" test $? -eq 0

# SIGTERM.
stop broker
check "SIGTERM: the broker exits 0 (exit $STOP_RC)" test "$STOP_RC" -eq 0
check "... after STOPPING=1" has broker '^STOPPING=1$'

# WATCHDOG_PID naming another process: the watchdog is not for this one.
listen other-pid || done_testing
under_systemd other-pid 1 "$BROKER" "${broker_args[@]}" --listen "$BROKER_EP"
wait_for 60 has other-pid '^READY=1'
check "a broker whose WATCHDOG_PID is another process sends READY=1" test $? -eq 0
wait_for 4 has other-pid '^WATCHDOG=1'
check "... but no WATCHDOG=1 (the first would come at once)" test $? -ne 0
stop other-pid
check "... and stops with exit 0 (exit $STOP_RC)" test "$STOP_RC" -eq 0
stop_pid listen-broker
stop_pid listen-other-pid

# ---- keten-node ---------------------------------------------------------------

node_args=(run --anchor admin/network.pub --directory node.dir --broker "$BROKER_EP")

# A node whose directory file does not verify never says it is ready.
cp dir.v3-one-signature bad-node.dir
listen bad-node || done_testing
under_systemd bad-node self "$NODE" run --home n-politie-mn --anchor admin/network.pub \
    --directory bad-node.dir --broker "$BROKER_EP"
stop_rc=-1
if wait_for 60 gone bad-node; then
    wait "${PID[bad-node]}"
    stop_rc=$?
    unset "PID[bad-node]"
fi
check "a node whose directory file does not verify fails (exit $stop_rc)" test "$stop_rc" -eq 3
wait_for 10 has bad-node '^STATUS=not running'
check "... its status says it is not running" test $? -eq 0
check "... and it never sent READY=1" test "$(count bad-node 'READY=1')" -eq 0
stop_pid listen-bad-node

# The broker is down: the node starts anyway.
listen node || done_testing
under_systemd node self "$NODE" "${node_args[@]}" --home n-gemeente-diemen
wait_for 60 has node '^READY=1'
check "keten-node sends READY=1 while the broker is down" test $? -eq 0
check "... with a status naming its directory version and the broker" \
    has node "^READY=1 \| STATUS=node gemeente-diemen, directory version 1; broker $BROKER_EP"
check "... and then answers its local commands (status: version 1)" node_version_is 1
wait_for 30 at_least node '^WATCHDOG=1$' 3
check "the node sends WATCHDOG=1 again and again (3 within 30 s)" test $? -eq 0

# SIGHUP with a newer directory file.
cp dir.v2 node.dir
kill -HUP "${PID[node]}"
wait_for 30 after node '^RELOADING=1 \| MONOTONIC_USEC=[0-9]+$' '^READY=1'
check "SIGHUP: RELOADING=1, then READY=1" test $? -eq 0
check "... READY=1 names the installed version 2" \
    has node '^READY=1 \| STATUS=node gemeente-diemen, directory version 2 \(installed from the file\)'
check "... keten-node status shows version 2" node_version_is 2
check "... the node's log says where it came from" \
    grep -q 'msg="directory installed" version=2 previous=1 source=file' "$T/node.log"

# SIGHUP with a newer file that does not verify, then with the older file.
for bad in dir.v3-one-signature dir.v1; do
    cp "$bad" node.dir
    n=$(count node '^RELOADING=1')
    kill -HUP "${PID[node]}"
    wait_for 30 at_least node '^RELOADING=1' $((n + 1))
    wait_for 30 after node '^RELOADING=1' '^READY=1'
    check "SIGHUP with $bad: RELOADING=1, then READY=1" test $? -eq 0
    check "... READY=1 says the file was refused, version 2 stays" \
        test "$(grep -E '^READY=1' "$T/node.msgs" | tail -n 1 \
            | grep -c 'directory version 2 (the reloaded file was refused)')" -eq 1
    check "... keten-node status still shows version 2" node_version_is 2
    check "... the node is still running" alive node
done
check "the node's log says why: too few signatures" \
    grep -q 'msg="directory file not installed; the installed version stays".*error="not enough administrator' \
    "$T/node.log"
check "... and an older version" \
    grep -q 'msg="directory file not installed; the installed version stays".*error="older or conflicting' \
    "$T/node.log"
check "version 3 was never installed by the node" \
    lacks grep -q 'msg="directory installed" version=3' "$T/node.log"

# Once the broker is up, the node that became ready without it connects.
"$BROKER" "${broker_args[@]}" --listen "$BROKER_EP" 2>>"$T/broker2.log" &
PID[broker2]=$!
connected() {
    "$NODE" status --home n-gemeente-diemen --json 2>/dev/null | grep -q '"connected": *true'
}
wait_for 60 connected
check "when the broker comes up, the node connects" test $? -eq 0

stop node
check "SIGTERM: the node exits 0 (exit $STOP_RC)" test "$STOP_RC" -eq 0
check "... after STOPPING=1" has node '^STOPPING=1$'
stop broker2
check "the second broker stops with exit 0 (exit $STOP_RC)" test "$STOP_RC" -eq 0
stop_pid listen-node

check "no sanitizer report in the daemons' logs" lacks grep -lE \
    'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$T"/*.log
done_testing
