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
    if [ -f "$T/.out" ]; then
        sed 's/^/# /' "$T/.out" | head -n 40
    fi
}

if "$MESON" install -C "$BUILD" --destdir "$D" --no-rebuild >"$T/.out" 2>&1; then
    ok "meson install --destdir"
else
    not_ok "meson install --destdir failed"
    echo "1..$TESTS"
    exit 1
fi

# Every expected file (or folder), and nothing else.
: >"$T/expected"
for p in "$@"; do
    case "$p" in
    */)
        if [ -d "$D$p" ]; then
            ok "folder $p"
        else
            : >"$T/.out"
            not_ok "no folder $p"
        fi
        ;;
    *)
        echo "$p" >>"$T/expected"
        if [ -f "$D$p" ]; then
            ok "file $p"
        else
            : >"$T/.out"
            not_ok "no file $p"
        fi
        ;;
    esac
done
(cd "$D" && find . -type f | sed 's|^\.||' | sort) >"$T/installed"
sort -o "$T/expected" "$T/expected"
comm -13 "$T/expected" "$T/installed" >"$T/.out"
if [ -s "$T/.out" ]; then
    not_ok "files installed that nobody expected (add them to tests/integration/meson.build)"
else
    ok "nothing else is installed ($(wc -l <"$T/installed") files)"
fi

# Modes: programs executable, configuration readable, credentials root only.
for p in "$@"; do
    case "$p" in
    "$BINDIR"/*)
        if [ -x "$D$p" ]; then ok "$p is executable"; else : >"$T/.out"; not_ok "$p is not executable"; fi
        ;;
    */credentials/)
        mode=$(stat -c %a "$D$p")
        if [ "$mode" = 700 ]; then ok "$p has mode 700"; else : >"$T/.out"; not_ok "$p has mode $mode"; fi
        ;;
    *.conf)
        mode=$(stat -c %a "$D$p")
        if [ "$mode" = 644 ]; then ok "$p has mode 644"; else : >"$T/.out"; not_ok "$p has mode $mode"; fi
        ;;
    esac
done

# The installed units start the installed programs, not the built ones.
for p in "$@"; do
    case "$p" in
    *.service)
        exec_line=$(grep '^ExecStart=' "$D$p")
        prog=${exec_line#ExecStart=}
        prog=${prog%% *}
        if [ "$(dirname "$prog")" = "$BINDIR" ] && [ -f "$D$prog" ] && ! grep -q '@[A-Z_]*@' "$D$p"; then
            ok "$(basename "$p") runs $prog"
        else
            echo "$exec_line" >"$T/.out"
            not_ok "$(basename "$p") runs '$prog', not an installed program"
        fi
        ;;
    esac
done

echo "1..$TESTS"
[ "$FAILED" -eq 0 ]
