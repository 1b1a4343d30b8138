#!/usr/bin/env bash
# deb_build.sh - the Debian package: `dpkg-buildpackage -us -uc -b` in a copy
# of the source tree builds keten_*.deb; `apt-get install ./keten_*.deb`
# installs it (as root) with the programs, the configuration, the systemd
# units, the sysusers/tmpfiles entries and the manual pages; the user keten
# exists and owns the state directories; the services are neither enabled nor
# started; the installed units pass `systemd-analyze verify` (their
# Documentation= pages included); then the package is purged. TAP.
#
#   deb_build.sh SOURCE_DIR
#
# Slow (a full build) and needs root: it is in the meson suite 'packaging',
# run once by CI (meson test --suite packaging). It skips, saying why, when
# not root, when the packaging tools are missing (scripts/deps.sh
# --packaging installs them), or when a keten package is already installed
# (it never touches an existing installation).
set -u

SRC=$(realpath "${1:?source dir}")

skip() {
    echo "1..0 # SKIP $*"
    exit 0
}
[ "$(id -u)" -eq 0 ] || skip "needs root (apt-get install of the package)"
for tool in dpkg-buildpackage dh apt-get dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is missing: run scripts/deps.sh --packaging"
done
if dpkg-query -W -f='${Status}' keten 2>/dev/null | grep -q "installed"; then
    skip "a keten package is already installed on this machine; not touching it"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/keten-deb.XXXXXXXX") || exit 1
had_user=0
getent passwd keten >/dev/null && had_user=1
had_state=0
[ -e /var/lib/keten ] && had_state=1
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if dpkg-query -W -f='${Status}' keten 2>/dev/null | grep -q "installed"; then
        apt-get purge -y -qq keten >/dev/null 2>&1 || true
    fi
    # Leave the machine as it was: the user and folders this test made go.
    if [ "$had_state" -eq 0 ]; then
        rm -rf /var/lib/keten
    fi
    if [ "$had_user" -eq 0 ] && getent passwd keten >/dev/null; then
        userdel keten >/dev/null 2>&1 || true
        getent group keten >/dev/null && groupdel keten >/dev/null 2>&1
    fi
    rm -rf "$T"
}
trap cleanup EXIT

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
        tail -n 40 "$T/.out" | sed 's/^/# /'
    fi
}
finish() {
    echo "1..$TESTS"
    [ "$FAILED" -eq 0 ]
    exit $?
}
# check DESCRIPTION CMD...: ok when CMD succeeds (its output to $T/.out).
check() {
    local what=$1
    shift
    if "$@" >"$T/.out" 2>&1; then
        ok "$what"
    else
        not_ok "$what"
    fi
}

# 1. A clean copy of the sources: the files git knows (tracked or new, not
# ignored), else everything but build folders.
mkdir -p "$T/src/keten"
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$SRC" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$T/src/keten"
else
    (cd "$SRC" && tar --exclude='./build*' --exclude='./obj-*' --exclude=./.git -cf - .) \
        | tar -xf - -C "$T/src/keten"
fi
if [ -f "$T/src/keten/debian/control" ] && [ -f "$T/src/keten/meson.build" ]; then
    ok "a copy of the source tree"
else
    : >"$T/.out"
    not_ok "copying the source tree"
    finish
fi

# 2. Build the binary package (the unit tests ran in the normal builds).
(cd "$T/src/keten" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
    dpkg-buildpackage -us -uc -b) >"$T/.out" 2>&1
rc=$?
debs=("$T"/src/keten_*.deb)
if [ "$rc" -eq 0 ] && [ -f "${debs[0]}" ]; then
    ok "dpkg-buildpackage -us -uc -b built $(basename "${debs[0]}")"
else
    not_ok "dpkg-buildpackage -us -uc -b (exit $rc)"
    finish
fi
DEB=${debs[0]}

# 3. What the package holds.
dpkg-deb -c "$DEB" | awk '{ print $NF }' | sed 's|^\./|/|' >"$T/contents"
expected=(
    /usr/bin/keten-broker /usr/bin/keten-node /usr/bin/keten-keys /usr/bin/keten-audit
    /etc/keten/broker.conf /etc/keten/node.conf /etc/keten/credentials/
    /lib/systemd/system/keten-broker.service /lib/systemd/system/keten-node.service
    /lib/systemd/system/keten-node@.service
    /usr/lib/sysusers.d/keten.conf /usr/lib/tmpfiles.d/keten.conf
    /usr/share/man/man8/keten-broker.8.gz /usr/share/man/man8/keten-node.8.gz
    /usr/share/man/man1/keten-keys.1.gz /usr/share/man/man1/keten-audit.1.gz
    /usr/share/man/man7/keten.7.gz
    /usr/share/doc/keten/copyright /usr/share/doc/keten/operations.md.gz
)
missing=()
for f in "${expected[@]}"; do
    grep -qxF -- "$f" "$T/contents" || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then
    ok "the package holds the programs, configuration, units, sysusers/tmpfiles and man pages"
else
    cp "$T/contents" "$T/.out"
    not_ok "the package lacks ${missing[*]}"
fi
dpkg-deb -I "$DEB" conffiles >"$T/.out" 2>&1
if grep -qx /etc/keten/broker.conf "$T/.out" && grep -qx /etc/keten/node.conf "$T/.out"; then
    ok "the configuration files are conffiles (kept on upgrade and removal)"
else
    not_ok "broker.conf and node.conf are not conffiles"
fi

# 4. Install it, as an administrator would.
(cd "$(dirname "$DEB")" && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq "./$(basename "$DEB")") >"$T/.out" 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then
    ok "apt-get install ./$(basename "$DEB")"
else
    not_ok "apt-get install ./$(basename "$DEB") (exit $rc)"
    finish
fi
for p in keten-broker keten-node keten-keys keten-audit; do
    check "/usr/bin/$p --help runs" "/usr/bin/$p" --help
done
check "the user keten exists" getent passwd keten
shell=$(getent passwd keten | cut -d: -f7)
case "$shell" in
*/nologin | */false) ok "the user keten cannot log in ($shell)" ;;
*)
    : >"$T/.out"
    not_ok "the user keten has the shell '$shell'"
    ;;
esac
for d in /var/lib/keten/broker /var/lib/keten/node; do
    owner=$(stat -c '%U %a' "$d" 2>/dev/null)
    if [ "$owner" = "keten 700" ]; then
        ok "$d exists, owned by keten, mode 700"
    else
        : >"$T/.out"
        not_ok "$d: '$owner', expected 'keten 700'"
    fi
done
mode=$(stat -c '%U %a' /etc/keten/credentials 2>/dev/null)
if [ "$mode" = "root 700" ]; then
    ok "/etc/keten/credentials is root's, mode 700"
else
    : >"$T/.out"
    not_ok "/etc/keten/credentials: '$mode'"
fi
for p in keten-broker keten-node keten-keys keten-audit keten; do
    check "man finds $p" man -w "$p"
done

# 5. Not enabled, not started: they need keys and a directory first.
for u in keten-broker.service keten-node.service; do
    state=$(systemctl is-enabled "$u" 2>/dev/null)
    if [ "$state" = disabled ]; then
        ok "$u is installed but not enabled"
    else
        : >"$T/.out"
        not_ok "$u is '$state' after installation"
    fi
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        if systemctl is-active --quiet "$u"; then
            : >"$T/.out"
            not_ok "$u was started by the installation"
        else
            ok "$u was not started"
        fi
    fi
done

# 6. The installed units verify, their man pages included.
if command -v systemd-analyze >/dev/null; then
    for u in keten-broker.service keten-node.service keten-node@check.service; do
        systemd-analyze verify "$u" >"$T/.out" 2>&1
        rc=$?
        if [ "$rc" -eq 0 ] && [ ! -s "$T/.out" ]; then
            ok "systemd-analyze verify $u (installed): no complaint"
        else
            not_ok "systemd-analyze verify $u (installed), exit $rc"
        fi
    done
else
    echo "# systemd-analyze is not installed: the units were not verified"
fi

# 7. Purge: the programs go; the configuration is removed with the package.
check "apt-get purge keten" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq keten
if [ ! -e /usr/bin/keten-broker ] && [ ! -e /lib/systemd/system/keten-broker.service ] \
    && [ ! -e /etc/keten/broker.conf ]; then
    ok "after purge the programs, units and configuration are gone"
else
    : >"$T/.out"
    not_ok "files left after purge"
fi

finish
