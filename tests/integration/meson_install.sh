#!/usr/bin/env bash
# meson_install.sh - `meson install --destdir` puts exactly the expected
# files in place: the programs, the configuration (with its private
# credentials folder), the systemd units naming the installed programs, the
# sysusers.d and tmpfiles.d entries and the manual pages. TAP.
#
#   meson_install.sh MESON BUILD_DIR BINDIR EXPECTED_PATH...
# EXPECTED_PATH are absolute paths as installed (without the destdir); a
# trailing / marks a folder.
set -u

MESON=${1:?meson}
BUILD=$(realpath "${2:?build dir}")
BINDIR=${3:?bindir}
shift 3

T=$(mktemp -d "${TMPDIR:-/tmp}/keten-install.XXXXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
D=$T/dest

# ok, not_ok, check, require, done_testing.
. "$(dirname "$0")/tap.sh"

# quietly CMD...: CMD with its output in $T/.out (shown when a check fails).
quietly() {
    "$@" >"$T/.out" 2>&1
}

# runs_installed UNIT: the unit's ExecStart is a program installed in BINDIR,
# and no @PLACEHOLDER@ is left in it.
runs_installed() {
    local exec_line prog
    exec_line=$(grep '^ExecStart=' "$D$1")
    prog=${exec_line#ExecStart=}
    prog=${prog%% *}
    echo "$exec_line" >"$T/.out"
    [ "$(dirname "$prog")" = "$BINDIR" ] && [ -f "$D$prog" ] && ! grep -q '@[A-Z_]*@' "$D$1"
}

require "meson install --destdir" quietly "$MESON" install -C "$BUILD" --destdir "$D" --no-rebuild

# Every expected file (or folder), and nothing else.
: >"$T/expected"
for p in "$@"; do
    case "$p" in
    */)
        : >"$T/.out"
        check "folder $p" test -d "$D$p"
        ;;
    *)
        echo "$p" >>"$T/expected"
        : >"$T/.out"
        check "file $p" test -f "$D$p"
        ;;
    esac
done
(cd "$D" && find . -type f | sed 's|^\.||' | sort) >"$T/installed"
sort -o "$T/expected" "$T/expected"
comm -13 "$T/expected" "$T/installed" >"$T/.out"
# Others are listed below a failure: add them to tests/integration/meson.build.
check "nothing else is installed ($(wc -l <"$T/installed") files)" test ! -s "$T/.out" ||
    sed 's/^/# /' "$T/.out"

# Modes: programs executable, configuration readable, credentials root only.
for p in "$@"; do
    case "$p" in
    "$BINDIR"/*)
        check "$p is executable" test -x "$D$p"
        ;;
    */credentials/)
        mode=$(stat -c %a "$D$p")
        check "$p has mode 700 ($mode)" test "$mode" = 700
        ;;
    *.conf)
        mode=$(stat -c %a "$D$p")
        check "$p has mode 644 ($mode)" test "$mode" = 644
        ;;
    esac
done

# The installed units start the installed programs, not the built ones.
for p in "$@"; do
    case "$p" in
    *.service)
        check "$(basename "$p") runs an installed program" runs_installed "$p" ||
            sed 's/^/# /' "$T/.out"
        ;;
    esac
done

done_testing
