#!/usr/bin/env bash
# A directory file whose version has already expired is not installed by
# the broker: at start with nothing stored it refuses to run (exit 3, the
# version and its expiry named); at a start or a SIGHUP with a version in
# force it logs the refusal and keeps that version (fresh, so submits go
# on). Twins: the same file while it is fresh is installed, a fresh newer
# file on SIGHUP is installed, and a restart with an expired *stored*
# version still runs and refuses submits (directory_stale) as before.
# The broker's clock is moved a day ahead with the test hook
# KETEN_BROKER_TEST_CLOCK_OFFSET_MS, so a version published for one day
# (--valid-days 1) has expired for it.
. "$(dirname "$0")/broker_lib.sh"
need_tool curl

DAY_MS=86400000

# metric NAME: the running broker's metric value (nothing if unreadable).
# shellcheck disable=SC2317 # called through check and wait_for
metric() {
    curl -sf "http://127.0.0.1:$(metrics_port)/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

# metrics_are VERSION STALE: keten_directory_version and keten_directory_stale.
# shellcheck disable=SC2317 # called through check and wait_for
metrics_are() {
    [ "$(metric keten_directory_version)" = "$1" ] && [ "$(metric keten_directory_stale)" = "$2" ]
}

# shellcheck disable=SC2317 # called through check and wait_for
has_metrics() {
    [ -n "$(metrics_port)" ]
}

make_network admin || done_testing
publish_signed admin dir.v1 --valid-days 1 || done_testing   # version 1, one day
publish_signed admin dir.v2 --valid-days 1 --refresh || done_testing   # version 2, one day
publish_signed admin dir.v3 --valid-days 14 --refresh || done_testing  # version 3, 14 days
publish_signed admin dir.v4 --valid-days 1 --refresh || done_testing   # version 4, one day
publish_signed admin dir.v5 --valid-days 14 --refresh || done_testing  # version 5, 14 days

# 1. Nothing stored, and the file has expired: the broker does not run.
run env KETEN_BROKER_TEST_CLOCK_OFFSET_MS=$DAY_MS timeout 20 "$BROKER" run --home broker \
    --anchor admin/network.pub --directory dir.v1 --listen "$ENDPOINT"
expect 3 "a first start with an expired directory file fails (nothing installed)"
says "directory version 1 in dir.v1 expired at " "it names the version and its expiry"
says 'msg="directory file has expired; not installed"' "it logs the refusal"
says_not 'msg="broker running"' "it never says it is running"
audit
expect 0 "the broker's store can be read"
jl 'len(E("DIRECTORY_INSTALLED")) == 0' "nothing was installed in the store"

# Twin: the same file while it is fresh is installed.
BROKER_DIR=dir.v1 start_broker --metrics 127.0.0.1:0 || done_testing
check "twin: the same file, fresh, is installed (version 1)" wait_for 10 has_metrics
check "twin: version 1 in force, fresh" metrics_are 1 0
stop_broker
check "the broker stops (exit 0)" test "$BRC" -eq 0

# 2. A restart a day later: the stored version 1 has expired. It still runs,
# and refuses submits as before; a newer file that has expired too (version
# 2) is not installed over it.
KETEN_BROKER_TEST_CLOCK_OFFSET_MS=$DAY_MS BROKER_DIR=dir.v2 start_broker --metrics 127.0.0.1:0 ||
    done_testing
check "with an expired stored version the broker runs" broker_ready
check "the newer expired file is refused at start: version 2, its expiry, the version kept" \
    grep -qE 'msg="directory file has expired; not installed" file=dir.v2 version=2 expired_at=[0-9T:.-]+Z installed=1 ' "$BLOG"
check "the stored version 1 stays in force, expired (keten_directory_stale 1)" \
    wait_for 10 metrics_are 1 1
check "the broker says it refuses all submits" \
    grep -qF 'msg="directory expired: refusing all submits until a fresh one is installed" version=1' "$BLOG"
stop_broker
check "the broker stops (exit 0)" test "$BRC" -eq 0

# 3. A day later with a fresh file: installed; then a SIGHUP with a newer
# version that has expired keeps the fresh one.
KETEN_BROKER_TEST_CLOCK_OFFSET_MS=$DAY_MS BROKER_DIR=dir.v3 start_broker --metrics 127.0.0.1:0 ||
    done_testing
check "a fresh version 3 is installed at start" wait_for 10 metrics_are 3 0
cp dir.v4 dir.v3
kill -HUP "$BPID"
check "SIGHUP with an expired version 4: refused, naming it, its expiry and the version kept" \
    wait_for 10 grep -qE 'msg="directory file has expired; not installed" file=dir.v3 version=4 expired_at=[0-9T:.-]+Z installed=3 ' "$BLOG"
check "version 3 stays in force and fresh (not directory_stale)" metrics_are 3 0
check "no directory_stale refusal is logged" lacks grep -qF 'msg="directory expired: refusing all submits' "$BLOG"

# Twin: a SIGHUP with a fresh newer version installs it.
cp dir.v5 dir.v3
kill -HUP "$BPID"
check "twin: SIGHUP with a fresh version 5 installs it" wait_for 10 metrics_are 5 0
check "twin: the broker logs it installed" grep -qE 'msg="directory installed" version=5 ' "$BLOG"
stop_broker
check "the broker stops (exit 0)" test "$BRC" -eq 0
audit
expect 0 "the broker's store can be read"
jl '[r["directory_version"] for r in E("DIRECTORY_INSTALLED")] == [1, 3, 5]' \
    "the store holds versions 1, 3 and 5 only (directory-installed records)"

check "no sanitizer report in the broker's log" lacks grep -qE \
    'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$BLOG"
done_testing
