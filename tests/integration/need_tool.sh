# shellcheck shell=bash
#
# need_tool.sh - need_tool, for every test script: lib.sh sources it, and
# so do the scripts that do not take the programs lib.sh wants
# (systemd_units.sh, man_help.sh).

# need_tool COMMAND...: the test calls these programs (scripts/deps.sh --test
# installs every one). A missing one fails the whole test at once and says
# which: otherwise "command not found" goes to a helper's 2>/dev/null, reads
# as a wrong answer, turns a check off, or a wait_for loop runs into the
# test's timeout. A test never skips or passes for want of a tool.
need_tool() {
    local t missing=()
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "Bail out! not installed: ${missing[*]} (scripts/deps.sh --test installs what the tests call)"
    exit 1
}
