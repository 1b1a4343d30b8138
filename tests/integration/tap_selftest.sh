#!/usr/bin/env bash
# tap_selftest.sh - every helper that reports "ok" can also report a failure.
# Each helper is called once with a condition that holds and once with one
# that does not (in a subshell, its TAP line captured): the first must print
# "ok", the second "not ok". A helper made unconditional turns this red.
# The last part runs the lint that keeps scripts from calling `ok` themselves
# (tests/tools/lint_tests.py), its self-test first.
#
#   tap_selftest.sh keten-keys keten-node keten-broker keten-test-tool
HERE=$(realpath "$(dirname "$0")")
. "$HERE/lib.sh"

# verdict CMD...: the first word of the TAP line CMD printed: ok or not.
verdict() {
    local line
    line=$(TESTS=0 FAILED=0; "$@" | grep -E '^(not )?ok ' | head -n 1)
    case "$line" in
    "ok "*) echo ok ;;
    "not ok "*) echo not ;;
    *) echo none ;;
    esac
}

# both WHAT PASSING-CMD -- FAILING-CMD: the helper says ok for the first and
# not ok for the second.
both() {
    local what=$1 pass=() fail=()
    shift
    while [ "$1" != "--" ]; do pass+=("$1"); shift; done
    shift
    fail=("$@")
    check "$what: a condition that holds is ok" test "$(verdict "${pass[@]}")" = ok
    check "$what: a condition that fails is not ok" test "$(verdict "${fail[@]}")" = not
}

both "check" check "x" true -- check "x" false
both "require" require "x" true -- eval 'require "x" false; :'
RC=0
both "expect" expect 0 "x" -- expect 1 "x"
echo "the answer is 42" >"$T/.all"
echo "the answer is 42" >"$T/.out"
both "says" says "answer is 42" "x" -- says "answer is 41" "x"
both "stdout_says" stdout_says "answer is 42" "x" -- stdout_says "answer is 41" "x"
both "says_not" says_not "answer is 41" "x" -- says_not "answer is 42" "x"
rm -f "$T/.all"
check "says_not: an unreadable output is not ok" test "$(verdict says_not "anything" "x")" = not
echo "the answer is 42" >"$T/.all"
both "lacks" check "x" lacks grep -q 41 "$T/.out" -- check "x" lacks grep -q 42 "$T/.out"
check "lacks: a missing file is not \"lacks\"" test "$(verdict check "x" lacks grep -q 41 "$T/no-such-file")" = not
mkdir -p "$T/fp" && echo a >"$T/fp/a"
fp=$(fingerprint "$T/fp")
both "unchanged" unchanged "$T/fp" "$fp" "x" -- unchanged "$T/fp" "0000" "x"
echo '{"event": "ack", "n": 2}' >"$T/.out"
both "jl" jl 'E("ack")[0]["n"] == 2' "x" -- jl 'E("ack")[0]["n"] == 3' "x"
both "done_testing" eval 'ok x; done_testing' -- eval 'not_ok x; done_testing'
check "done_testing: exit 0 after only ok lines" eval '(ok x; done_testing) >/dev/null'
check "done_testing: exit 1 after a failure" eval '! (not_ok x; done_testing) >/dev/null'

# The lint: its self-test (it finds bare ok lines planted in a sample), then
# the test scripts themselves.
check "lint_tests.py finds every planted bare ok" "$PY" "$HERE/../tools/lint_tests.py" --self-test
run "$PY" "$HERE/../tools/lint_tests.py" "$HERE" "$HERE/../packaging" "$HERE/../bench"
expect 0 "no test script calls ok itself or checks a constant"

done_testing
