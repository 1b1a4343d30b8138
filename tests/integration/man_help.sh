#!/usr/bin/env bash
# man_help.sh - the manual pages agree with --help: every command a
# program's --help lists has a synopsis line "*PROGRAM COMMAND*" in its page,
# and every long option that `PROGRAM --help` and `PROGRAM COMMAND --help`
# print appears in the page's source. TAP.
#
#   man_help.sh PROGRAM PAGE.scd [PROGRAM PAGE.scd]...
set -u
. "$(dirname "$0")/need_tool.sh"
need_tool awk grep sort

if [ $# -lt 2 ] || [ $(($# % 2)) -ne 0 ]; then
    echo "Bail out! usage: man_help.sh PROGRAM PAGE.scd [PROGRAM PAGE.scd]..."
    exit 1
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/keten-manhelp.XXXXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

TESTS=0
FAILED=0
ok() {
    TESTS=$((TESTS + 1))
    echo "ok $TESTS - $*"
}
not_ok() {
    TESTS=$((TESTS + 1))
    FAILED=$((FAILED + 1))
    echo "not ok $TESTS - $*"
}

# The long options in a help text: --name, lowercase, digits and dashes.
long_options() {
    grep -oE -- '--[a-z][a-z0-9-]*' "$1" | sort -u
}

# check_options HELP_FILE PAGE WHAT: every long option of HELP_FILE is in PAGE.
check_options() {
    local help=$1 page=$2 what=$3 missing=() opt
    while read -r opt; do
        [ -n "$opt" ] || continue
        grep -qF -- "$opt" "$page" || missing+=("$opt")
    done < <(long_options "$help")
    local n
    n=$(long_options "$help" | grep -c .)
    if [ "$n" -eq 0 ]; then
        not_ok "$what --help prints no long option at all"
    elif [ ${#missing[@]} -eq 0 ]; then
        ok "$what: all $n options of --help are in $(basename "$page")"
    else
        not_ok "$what: $(basename "$page") lacks ${missing[*]}"
    fi
}

while [ $# -ge 2 ]; do
    prog=$1
    page=$2
    shift 2
    name=$(basename "$prog")
    if [ ! -x "$prog" ] || [ ! -f "$page" ]; then
        not_ok "$name: program or page $page missing"
        continue
    fi
    if ! "$prog" --help >"$T/help" 2>&1; then
        not_ok "$name --help exits non-zero"
        continue
    elif head -n 1 "$T/help" | grep -qF "Usage: $name COMMAND"; then
        ok "$name --help prints its usage line"
    else
        not_ok "$name --help does not start with \"Usage: $name COMMAND\""
    fi
    # The page names the program in its title.
    if head -n 1 "$page" | grep -qE "^$name\([178]\)$"; then
        ok "$(basename "$page") is the page of $name"
    else
        not_ok "$(basename "$page") does not start with $name(N)"
    fi
    # Commands: the indented first words after "Commands:".
    commands=$(awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1; next } on && !/^  / { on = 0 }' "$T/help")
    if [ -z "$commands" ]; then
        not_ok "$name --help lists no commands"
        continue
    fi
    check_options "$T/help" "$page" "$name"
    for cmd in $commands; do
        if grep -qF "*$name $cmd*" "$page"; then
            ok "$name $cmd has a synopsis line in $(basename "$page")"
        else
            not_ok "$name $cmd: no \"*$name $cmd*\" synopsis in $(basename "$page")"
        fi
        if ! "$prog" "$cmd" --help >"$T/help.$cmd" 2>&1; then
            not_ok "$name $cmd --help exits non-zero"
        elif ! grep -qF "Usage: $name $cmd" "$T/help.$cmd"; then
            not_ok "$name $cmd --help prints no \"Usage: $name $cmd\" line"
        else
            check_options "$T/help.$cmd" "$page" "$name $cmd"
        fi
    done
done

# The check can fail: an option the page does not have is reported.
printf 'Options:\n  --no-such-option-anywhere  x\n' >"$T/fake"
grep -qF -- "--no-such-option-anywhere" "$page"
if [ $? -eq 1 ] && [ "$(long_options "$T/fake")" = "--no-such-option-anywhere" ]; then
    ok "an option missing from a page would be found"
else
    not_ok "the option scan does not work"
fi

echo "1..$TESTS"
[ "$FAILED" -eq 0 ]
