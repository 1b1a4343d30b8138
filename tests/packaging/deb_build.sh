#!/usr/bin/env bash
# deb_build.sh - the Debian package: `dpkg-buildpackage -us -uc -b` in a copy
# of the source tree builds keten_*.deb; `apt-get install ./keten_*.deb`
# installs it (as root) with the programs, the configuration, the systemd
# units, the sysusers/tmpfiles entries and the manual pages; the user keten
# exists and owns the state directories; the services are neither enabled nor
# started; the installed units pass `systemd-analyze verify` (their
# Documentation= pages included); the services start as their units start
# them and report readiness; its programs, built without test hooks, refuse
# to start while one is set; then the package is purged, and the purge
# removes the passphrases, the configuration and the user keten and moves
# the state folders (keys, audit log) aside. TAP.
#
#   deb_build.sh SOURCE_DIR
#
# Slow (a full build) and needs root: it is in the meson suite 'packaging',
# run once by CI (meson test --suite packaging). It skips, saying why, when
# not root or when a keten package is already installed (it never touches an
# existing installation); it fails at once when a tool it calls is missing
# (scripts/deps.sh --packaging installs them) or when this machine holds
# /etc/keten, /var/lib/keten or a user keten without the package. It leaves
# the machine as it found it, however it ends, so it can run again.
set -u

SRC=$(realpath "${1:?source dir}")
# The package is built without test hooks, and its programs refuse to start
# while one is set (checked below); the environment of a test run may carry
# some (KETEN_TEST_FAST_KDF): none reaches the programs of the package.
for v in $(compgen -e); do
    case "$v" in
    KETEN_TEST_* | KETEN_*_TEST_* | KETEN_*_FAULT | KETEN_*_FAULT_*) unset "$v" ;;
    esac
done

skip() {
    echo "1..0 # SKIP $*"
    exit 0
}
bail_out() {
    echo "Bail out! $*"
    exit 1
}
[ "$(id -u)" -eq 0 ] || skip "needs root (apt-get install of the package)"
# dpkg's state of the package keten: installed, config-files, ... or
# not-installed (also when dpkg has never heard of it).
pkg_state() {
    local s
    s=$(dpkg-query -W -f='${db:Status-Status}' keten 2>/dev/null) || s=not-installed
    echo "${s:-not-installed}"
}
if [ "$(pkg_state)" != not-installed ]; then
    skip "a keten package is on this machine ($(pkg_state)); not touching it"
fi
missing=()
for tool in dpkg-buildpackage dh apt-get dpkg-deb dpkg-query systemd-analyze systemctl man \
    runuser setpriv userdel groupdel getent /usr/bin/python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || bail_out "not installed: ${missing[*]} (scripts/deps.sh --packaging)"
# What the package makes and its purge removes must not be here before it:
# it could be an installation made by hand, or an earlier run's leftovers.
for p in /etc/keten /var/lib/keten; do
    [ ! -e "$p" ] || bail_out "$p exists but no keten package is installed; not touching it"
done
if getent passwd keten >/dev/null || getent group keten >/dev/null; then
    bail_out "a user or group keten exists but no keten package is installed; not touching it"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/keten-deb.XXXXXXXX") || exit 1
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ "$(pkg_state)" != not-installed ]; then
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq keten >/dev/null 2>&1 || true
    fi
    # Leave the machine as it was (none of these were there, see above):
    # what the purge kept aside and anything a failed step left go too.
    rm -rf /etc/keten /var/lib/keten
    getent passwd keten >/dev/null && userdel keten >/dev/null 2>&1
    getent group keten >/dev/null && groupdel keten >/dev/null 2>&1
    rm -rf "$T"
}
trap cleanup EXIT
# A signal (meson's timeout sends SIGTERM) ends the test through the EXIT
# trap too.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# ok, not_ok, check, require, done_testing (a failure shows $T/.out).
. "$SRC/tests/integration/tap.sh"
finish() {
    done_testing
}
# quietly CMD...: CMD with its output in $T/.out.
quietly() {
    "$@" >"$T/.out" 2>&1
}
# step WHAT CMD...: check CMD, its output in $T/.out and shown when it fails.
step() {
    local what=$1
    shift
    check "$what" quietly "$@" || tail -n 40 "$T/.out" | sed 's/^/# /'
}
# user_gone: no user and no group keten.
user_gone() {
    ! getent passwd keten >/dev/null && ! getent group keten >/dev/null
}
# not_active UNIT: systemd does not run UNIT.
not_active() {
    ! systemctl is-active --quiet "$1"
}
# verify_quietly UNIT: systemd-analyze verify exits 0 and says nothing.
verify_quietly() {
    systemd-analyze verify "$1" >"$T/.out" 2>&1 && [ ! -s "$T/.out" ]
}
# node_connects: within 30 s the node's status says it is connected.
node_connects() {
    local _
    for _ in $(seq 1 300); do
        runuser -u keten -- keten-node status --home /var/lib/keten/node --json 2>/dev/null \
            | /usr/bin/python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["connected"] else 1)' \
                2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# moved_aside NAME: purge moved /var/lib/keten/NAME to one NAME.purged-*
# folder holding its keys, root's, mode 700.
moved_aside() {
    local kept=(/var/lib/keten/"$1".purged-*)
    ls -la /var/lib/keten >"$T/.out" 2>&1
    [ ! -e "/var/lib/keten/$1" ] && [ ${#kept[@]} -eq 1 ] && [ -d "${kept[0]}" ] \
        && [ -f "${kept[0]}/identity.secret" ] && [ "$(stat -c '%U %a' "${kept[0]}")" = "root 700" ]
}
# has_all FILE LINE...: FILE has each LINE (whole lines); those missing go
# to $T/.out.
has_all() {
    local f=$1 l
    shift
    : >"$T/.out"
    for l in "$@"; do
        grep -qxF -- "$l" "$f" || echo "missing: $l" >>"$T/.out"
    done
    [ ! -s "$T/.out" ]
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
: >"$T/.out"
require "a copy of the source tree" \
    test -f "$T/src/keten/debian/control" -a -f "$T/src/keten/meson.build"

# 2. Build the binary package (the unit tests ran in the normal builds).
# build_deb: dpkg-buildpackage in the copy; one package file comes out.
build_deb() {
    (cd "$T/src/keten" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
        dpkg-buildpackage -us -uc -b) >"$T/.out" 2>&1 || return 1
    debs=("$T"/src/keten_*.deb)
    [ -f "${debs[0]}" ]
}
require "dpkg-buildpackage -us -uc -b built a package" build_deb
DEB=${debs[0]}
echo "# $(basename "$DEB")"

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
check "the package holds the programs, configuration, units, sysusers/tmpfiles and man pages" \
    has_all "$T/contents" "${expected[@]}" || sed 's/^/# /' "$T/.out"
dpkg-deb -I "$DEB" conffiles >"$T/conffiles" 2>&1
check "the configuration files are conffiles (kept on upgrade and removal)" \
    has_all "$T/conffiles" /etc/keten/broker.conf /etc/keten/node.conf || sed 's/^/# /' "$T/.out"

# 4. Install it, as an administrator would.
# install_deb: apt-get install ./PACKAGE, as an administrator would.
install_deb() {
    (cd "$(dirname "$DEB")" && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "./$(basename "$DEB")") >"$T/.out" 2>&1
}
require "apt-get install ./$(basename "$DEB")" install_deb
for p in keten-broker keten-node keten-keys keten-audit; do
    step "/usr/bin/$p --help runs" "/usr/bin/$p" --help
done
# refuses VAR=VALUE PROGRAM: the package's PROGRAM, which has no test hooks,
# refuses to start under VAR (exit 2, naming it); its twin is --help above.
refuses() {
    local var=${1%%=*} rc
    env "$1" "/usr/bin/$2" --help >"$T/.out" 2>&1
    rc=$?
    echo "# $2 under $1: exit $rc"
    [ "$rc" -eq 2 ] && grep -qF "$2: $var is set, but this build has no test hooks" "$T/.out"
}
for p in keten-broker keten-node keten-keys keten-audit; do
    check "/usr/bin/$p refuses to start with KETEN_TEST_FAST_KDF=1 (exit 2): the package has no test hooks" \
        refuses KETEN_TEST_FAST_KDF=1 "$p"
done
check "/usr/bin/keten-broker refuses KETEN_BROKER_FAULT (exit 2)" \
    refuses KETEN_BROKER_FAULT=kill-after-commit keten-broker
check "/usr/bin/keten-node refuses KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT (exit 2)" \
    refuses KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT=1 keten-node
step "the user keten exists" getent passwd keten
shell=$(getent passwd keten | cut -d: -f7)
check "the user keten cannot log in (shell '$shell')" \
    grep -qxE '.*/(nologin|false)' <<<"$shell"
for d in /var/lib/keten/broker /var/lib/keten/node; do
    owner=$(stat -c '%U %a' "$d" 2>/dev/null)
    check "$d exists, owned by keten, mode 700 ('$owner')" test "$owner" = "keten 700"
done
mode=$(stat -c '%U %a' /etc/keten/credentials 2>/dev/null)
check "/etc/keten/credentials is root's, mode 700 ('$mode')" test "$mode" = "root 700"
for p in keten-broker keten-node keten-keys keten-audit keten; do
    step "man finds $p" man -w "$p"
done

# 5. Not enabled, not started: they need keys and a directory first.
for u in keten-broker.service keten-node.service; do
    state=$(systemctl is-enabled "$u" 2>/dev/null)
    check "$u is installed but not enabled ('$state')" test "$state" = disabled
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        check "$u was not started" not_active "$u"
    fi
done

# 6. The installed units verify, their man pages included.
if command -v systemd-analyze >/dev/null; then
    for u in keten-broker.service keten-node.service keten-node@check.service; do
        check "systemd-analyze verify $u (installed): no complaint" verify_quietly "$u" ||
            sed 's/^/# /' "$T/.out"
    done
else
    : >"$T/.out"
    not_ok "systemd-analyze is not installed: the units were not verified"
fi

# 7. The services start. CI machines run no systemd as PID 1, so each
# unit's ExecStart= is run the way systemd runs it: as its User= (keten),
# with its LoadCredential= passphrase in a private credentials folder (%d)
# that only that user can read, and with NOTIFY_SOCKET set: the daemon must
# report READY=1, reload on SIGHUP (RELOADING=1, READY=1) and stop on
# SIGTERM (STOPPING=1, exit 0). Keys, anchor and directory are set up as
# docs/operations.md tells an administrator to.
declare -A SVC=()
notify_listen() {
    /usr/bin/python3 - "$T/notify/$1.sock" "$T/notify/$1.log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        for line in s.recv(4096).decode(errors="replace").splitlines():
            out.write(line + "\n")
PY
    SVC[$1-listener]=$!
    for _ in $(seq 1 50); do
        [ -S "$T/notify/$1.sock" ] && return 0
        sleep 0.1
    done
}
# wait_notify NAME LINE SECONDS: LINE (e.g. READY=1) was sent, in time.
wait_notify() {
    local i
    for i in $(seq 1 $((10 * $3))); do
        grep -qx "$2" "$T/notify/$1.log" 2>/dev/null && return 0
        kill -0 "${SVC[$1]}" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
start_service() {
    local name=$1 unit=/lib/systemd/system/$1.service cmd cred creds="$T/creds-$1"
    cmd=$(sed -n 's/^ExecStart=//p' "$unit")
    cred=$(sed -n 's/^LoadCredential=passphrase://p' "$unit")
    install -d -o keten -g keten -m 0700 "$creds"
    install -o keten -g keten -m 0400 "$cred" "$creds/passphrase"
    chmod 0500 "$creds"
    cmd=${cmd//%d/$creds}
    : >"$T/notify/$name.log"
    notify_listen "$name"
    # shellcheck disable=SC2086 # ExecStart= is a command line
    # setpriv execs the daemon itself (runuser would stay as its parent), so
    # that signals reach it as systemd's would. WatchdogSec=30s.
    (cd / && exec env NOTIFY_SOCKET="$T/notify/$name.sock" WATCHDOG_USEC=30000000 \
        setpriv --reuid keten --regid keten --init-groups --inh-caps=-all $cmd) \
        >"$T/$name.log" 2>&1 &
    SVC[$name]=$!
}
stop_service() {
    local name=$1 i
    kill -TERM "${SVC[$name]}" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "${SVC[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "${SVC[$name]}" 2>/dev/null
    wait "${SVC[$name]}" 2>/dev/null
    SVC_RC=$?
    kill "${SVC[$name-listener]}" 2>/dev/null
    wait "${SVC[$name-listener]}" 2>/dev/null
    unset "SVC[$name]" "SVC[$name-listener]"
}
# shellcheck disable=SC2317 # called by the EXIT trap
stop_services() {
    local k
    for k in "${!SVC[@]}"; do
        kill -KILL "${SVC[$k]}" 2>/dev/null
    done
    # Gone before the purge removes their user.
    for k in "${!SVC[@]}"; do
        wait "${SVC[$k]}" 2>/dev/null
    done
}
trap 'stop_services; cleanup' EXIT
chmod 0711 "$T"
install -d -m 0755 "$T/notify"
A="$T/admin"
PW=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
umask 077
printf '%s\n' "$PW" >/etc/keten/credentials/broker.passphrase
printf '%s\n' "$PW" >/etc/keten/credentials/node.passphrase
install -o keten -g keten -m 0600 /etc/keten/credentials/broker.passphrase "$T/keygen.passphrase"
umask 022
step "the broker's keys, made as the user keten (operations.md)" runuser -u keten -- \
    keten-broker keygen --home /var/lib/keten/broker --passphrase-file "$T/keygen.passphrase"
step "a node's keys, made as the user keten" runuser -u keten -- keten-node keygen \
    --home /var/lib/keten/node --id gemeente-pakket --role municipality \
    --org "Gemeente Pakket" --passphrase-file "$T/keygen.passphrase"
step "an administrator makes a network (1 of 1)" keten-keys init --dir "$A" \
    --network pakket-test --threshold 1 --admins 1 --no-passphrase
step "... approves the broker" keten-keys approve --dir "$A" /var/lib/keten/broker/identity.request
step "... and the node" keten-keys approve --dir "$A" /var/lib/keten/node/identity.request
step "... and publishes directory version 1" keten-keys publish --dir "$A" \
    --out "$T/directory-v1" --admin 1
install -m 0644 "$A/network.pub" /etc/keten/network.pub
install -m 0644 "$T/directory-v1" /etc/keten/directory
sed -i 's|^broker = .*|broker = tcp://127.0.0.1:7250|' /etc/keten/node.conf
start_service keten-broker
check "keten-broker.service started: READY=1" wait_notify keten-broker READY=1 120 ||
    sed 's/^/# /' "$T/keten-broker.log" | tail -n 20
start_service keten-node
check "keten-node.service started: READY=1" wait_notify keten-node READY=1 120 ||
    sed 's/^/# /' "$T/keten-node.log" | tail -n 20
check "the node service is connected to the broker service" node_connects
wait_notify keten-broker "WATCHDOG=1" 30
step "keten-broker.service pets the watchdog (WATCHDOG=1)" test $? -eq 0
kill -HUP "${SVC[keten-broker]}"
wait_notify keten-broker "RELOADING=1" 30
step "systemctl reload keten-broker (SIGHUP): RELOADING=1" test $? -eq 0
ready_again=0
for _ in $(seq 1 300); do
    if [ "$(grep -cx READY=1 "$T/notify/keten-broker.log")" -ge 2 ]; then
        ready_again=1
        break
    fi
    sleep 0.1
done
step "... then READY=1 again" test "$ready_again" -eq 1
for u in keten-node keten-broker; do
    stop_service "$u"
    step "systemctl stop $u (SIGTERM): exit 0" test "$SVC_RC" -eq 0
    step "... STOPPING=1 was sent" grep -qx STOPPING=1 "$T/notify/$u.log"
done

# 8. Purge: the programs go; the passphrases, the configuration, the anchor,
# the directory and the user keten are removed; the state folders with the
# keys and the broker's audit log are moved aside, never deleted.
step "apt-get purge keten" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq keten
cp "$T/.out" "$T/purge.out"
check "after purge the programs, units and configuration are gone" \
    test ! -e /usr/bin/keten-broker -a ! -e /lib/systemd/system/keten-broker.service \
    -a ! -e /etc/keten/broker.conf
check "after purge /etc/keten is gone: passphrases, anchor and directory" test ! -e /etc/keten ||
    find /etc/keten | sed 's/^/# /'
check "after purge the user and group keten are gone" user_gone
for d in broker node; do
    check "purge moved /var/lib/keten/$d aside to a $d.purged-* folder, root's, mode 700" \
        moved_aside "$d" || sed 's/^/# /' "$T/.out"
done
kept=(/var/lib/keten/broker.purged-*)
echo "# kept: ${kept[*]}"
check "the broker's audit log is kept (broker.purged-*/store)" test -e "${kept[0]}/store/data.mdb"
check "purge says where it kept the broker's folder" \
    grep -qF "kept /var/lib/keten/broker as /var/lib/keten/broker.purged-" "$T/purge.out"

finish
