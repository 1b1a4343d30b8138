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

# ok, not_ok, check, done_testing.
. "$(dirname "$0")/tap.sh"

# The long options in a help text: --name, lowercase, digits and dashes.
long_options() {
    grep -oE -- '--[a-z][a-z0-9-]*' "$1" | sort -u
}

# to_file FILE CMD...: run CMD with its output (both streams) into FILE.
to_file() {
    local f=$1
    shift
    "$@" >"$f" 2>&1
}

# first_line_has FILE TEXT: the first line of FILE contains TEXT.
first_line_has() {
    head -n 1 "$1" | grep -qF -- "$2"
}

# option_scan_finds_missing PAGE: the scan reports an option PAGE lacks.
option_scan_finds_missing() {
    printf 'Options:\n  --no-such-option-anywhere  x\n' >"$T/fake"
    grep -qF -- "--no-such-option-anywhere" "$1"
    [ $? -eq 1 ] && [ "$(long_options "$T/fake")" = "--no-such-option-anywhere" ]
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
    [ ${#missing[@]} -eq 0 ] || echo "# $(basename "$page") lacks ${missing[*]}"
    check "$what --help prints long options" test "$n" -gt 0
    check "$what: all $n options of --help are in $(basename "$page")" test ${#missing[@]} -eq 0
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
    if ! check "$name --help exits 0" to_file "$T/help" "$prog" --help; then
        continue
    fi
    check "$name --help prints its usage line" first_line_has "$T/help" "Usage: $name COMMAND"
    # The page names the program in its title.
    check "$(basename "$page") is the page of $name" \
        grep -qE "^$name\([178]\)$" <(head -n 1 "$page")
    # Commands: the indented first words after "Commands:".
    commands=$(awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1; next } on && !/^  / { on = 0 }' "$T/help")
    if [ -z "$commands" ]; then
        not_ok "$name --help lists no commands"
        continue
    fi
    check_options "$T/help" "$page" "$name"
    for cmd in $commands; do
        check "$name $cmd has a synopsis line in $(basename "$page")" grep -qF "*$name $cmd*" "$page"
        check "$name $cmd --help exits 0" to_file "$T/help.$cmd" "$prog" "$cmd" --help &&
            check "$name $cmd --help prints its \"Usage: $name $cmd\" line" \
                grep -qF "Usage: $name $cmd" "$T/help.$cmd" &&
            check_options "$T/help.$cmd" "$page" "$name $cmd"
    done
done

# The check can fail: an option the page does not have is reported.
check "an option missing from a page would be found" option_scan_finds_missing "$page"
done_testing
