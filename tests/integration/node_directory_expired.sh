#!/usr/bin/env bash
# keten-node started with a directory file newer than the version it has
# stored, but already expired: the node keeps the stored version (fresh, so
# it goes on sending and opening) and logs the refusal with the file's
# version, its expiry and the version kept; it raises no directory-expired
# alarm. The broker refuses such a file the same way. Twins: a fresh newer
# file is installed; a new node, with nothing stored, still starts from an
# expired file (its starting point: the broker then pushes the version in
# force). The node judges freshness two days ahead (the test hook
# KETEN_NODE_TEST_DIRECTORY_AHEAD_MS), so that a version published for one
# day has expired for it. No broker runs: the directory is decided at start.
. "$(dirname "$0")/node_lib.sh"

AHEAD=$((2 * 86400000))

# start_with ID FILE: the node's daemon, started on directory FILE with the
# clock hook; waits until it answers.
start_with() {
    cp "$2" directory.signed
    KETEN_NODE_TEST_DIRECTORY_AHEAD_MS=$AHEAD start_node "$1"
    wait_until 20 node_running "$1"
}

make_network admin || done_testing
publish_signed admin dir.v1 --valid-days 14 || done_testing           # version 1, 14 days
publish_signed admin dir.v2 --valid-days 1 --refresh || done_testing  # version 2, one day: expired for the node
publish_signed admin dir.v3 --valid-days 14 --refresh || done_testing # version 3, 14 days

check "politie-mn starts on version 1 (fresh)" start_with politie-mn dir.v1
check "it holds version 1, fresh" node_status_is politie-mn \
    'd["directory"]["version"] == 1 and d["directory"]["fresh"]'
stop_one politie-mn

check "politie-mn starts again, on version 2, which has expired" start_with politie-mn dir.v2
check "it keeps version 1, fresh" node_status_is politie-mn \
    'd["directory"]["version"] == 1 and d["directory"]["fresh"]'
check "it logs the refusal: the file, version 2, its expiry, the version kept" grep -qE \
    'msg="directory file has expired; not installed" file=directory.signed version=2 expired_at=[0-9T:.-]+Z installed=1 ' \
    "$T/node-politie-mn.log"
check "it raises no directory-expired alarm" node_status_is politie-mn \
    '"directory-expired" not in [a["kind"] for a in d["alarms"]]'
stop_one politie-mn

check "twin: politie-mn starts on version 3, fresh and newer" start_with politie-mn dir.v3
check "twin: version 3 is installed, fresh" node_status_is politie-mn \
    'd["directory"]["version"] == 3 and d["directory"]["fresh"]'
check "twin: it logs the install from the file" \
    grep -q 'msg="directory installed" version=3 source=file' "$T/node-politie-mn.log"

check "twin: a new node (nothing stored) starts from the expired version 2" \
    start_with gemeente-diemen dir.v2
check "twin: it holds version 2, expired, as its starting point" \
    node_status_is gemeente-diemen 'd["directory"]["version"] == 2 and not d["directory"]["fresh"]'
finish
