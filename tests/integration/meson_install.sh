#!/usr/bin/env bash
# meson_install.sh - `meson install --destdir` puts exactly the expected
# files in place: the programs, the configuration (with its private
# credentials folder), the systemd units naming the installed programs, the
# sysusers.d and tmpfiles.d entries and the manual pages. A second install
# into the same destdir (an upgrade from source) keeps an edited
# broker.conf, makes a missing node.conf again, and always puts the shipped
# examples in broker.conf.example and node.conf.example. TAP.
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
    *.conf | *.conf.example)
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

# An upgrade from source: install again over an edited configuration.
CONF=""
for p in "$@"; do
    case "$p" in
    */credentials/) CONF=${p%credentials/} ;;
    esac
done
require "the configuration folder is among the expected paths" test -n "$CONF"
B=$D${CONF}broker.conf
N=$D${CONF}node.conf
check "a fresh install makes broker.conf from the shipped example" cmp "$B" "$B.example"
check "a fresh install makes node.conf from the shipped example" cmp "$N" "$N.example"
cp "$B.example" "$T/broker.conf.shipped"
echo "# edited by the operator" >>"$B"
cp "$B" "$T/broker.conf.edited"
echo "# an edit the next install replaces" >>"$B.example"
rm "$N"
require "meson install --destdir again (an upgrade)" \
    quietly "$MESON" install -C "$BUILD" --destdir "$D" --no-rebuild
check "the edited broker.conf is kept" cmp "$B" "$T/broker.conf.edited"
check "broker.conf.example is the shipped example again" cmp "$B.example" "$T/broker.conf.shipped"
check "the missing node.conf is made again from the example" cmp "$N" "$N.example"
mode=$(stat -c %a "$N")
check "the new node.conf has mode 644 ($mode)" test "$mode" = 644
(cd "$D" && find . -type f | sed 's|^\.||' | sort) >"$T/installed"
comm -3 "$T/expected" "$T/installed" >"$T/.out"
check "the second install leaves exactly the expected files" test ! -s "$T/.out" ||
    sed 's/^/# /' "$T/.out"

done_testing
