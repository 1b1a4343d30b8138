# shellcheck shell=bash
#
# tap.sh - how every test script here reports: TAP lines "ok N - WHAT" and
# "not ok N - WHAT", then the plan "1..N" at the end (done_testing).
#
# A script never calls `ok` itself: it states a condition with `check` or
# `require` (or a helper of lib.sh built on them), so that no line can pass
# without checking something. tests/tools/lint_tests.py enforces that, and
# tap_selftest.sh shows that each helper reports a failure.
#
# Sourced by lib.sh and by the scripts that do not use lib.sh.

TESTS=0
FAILED=0

ok() {
    TESTS=$((TESTS + 1))
    echo "ok $TESTS - $*"
}

# not_ok WHAT: a failure; what the last command said ($T/.all, else $T/.out)
# follows as a TAP diagnostic.
not_ok() {
    TESTS=$((TESTS + 1))
    FAILED=$((FAILED + 1))
    echo "not ok $TESTS - $*"
    if [ -n "${T:-}" ] && [ -f "$T/.all" ]; then
        sed 's/^/# /' "$T/.all" | head -n 40
    elif [ -n "${T:-}" ] && [ -f "$T/.out" ]; then
        tail -n 40 "$T/.out" | sed 's/^/# /'
    fi
}

# check WHAT CMD...: ok when CMD succeeds (a plain shell command or
# condition); returns 1 when it failed, so that a script can add a diagnostic.
check() {
    local what=$1
    shift
    if "$@"; then
        ok "$what"
    else
        TESTS=$((TESTS + 1))
        FAILED=$((FAILED + 1))
        echo "not ok $TESTS - $what"
        return 1
    fi
}

# require WHAT CMD...: check, and when CMD fails the test ends here: what
# follows depends on it (the broker runs, the store opens).
require() {
    local what=$1
    shift
    if "$@"; then
        ok "$what"
    else
        not_ok "$what"
        done_testing
    fi
}

# done_testing: the plan, and the exit code (0 only when nothing failed).
done_testing() {
    echo "1..$TESTS"
    [ "$FAILED" -eq 0 ]
    exit $?
}
