#!/usr/bin/env bash
# systemd_units.sh - the systemd units of etc/systemd (made by meson with the
# built programs in ExecStart) pass `systemd-analyze verify` with no
# complaint at all, keep the hardening docs/operations.md promises, and have
# a low exposure score in `systemd-analyze security`. TAP.
#
#   systemd_units.sh UNIT_FILE... [-- MAN_PAGE...]
#
# The built manual pages come after --: their Documentation= references are
# checked too (man must find keten-broker(8) ...). Without systemd-analyze or
# man, or without the pages (scdoc was missing when meson configured), the
# test fails: it never skips a check (tests/README.md).
set -u
. "$(dirname "$0")/need_tool.sh"

units=()
mans=()
seen_dash=0
for a in "$@"; do
    if [ "$a" = "--" ]; then
        seen_dash=1
    elif [ "$seen_dash" -eq 0 ]; then
        units+=("$(realpath "$a")")
    else
        mans+=("$(realpath "$a")")
    fi
done

need_tool systemd-analyze man awk
if [ ${#units[@]} -eq 0 ]; then
    echo "Bail out! no unit files given"
    exit 1
fi
if [ ${#mans[@]} -eq 0 ]; then
    echo "Bail out! no manual pages given after --: Documentation= cannot be checked (scdoc was not found when meson configured; scripts/deps.sh installs it)"
    exit 1
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/keten-units.XXXXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

# ok, not_ok, check, done_testing.
. "$(dirname "$0")/tap.sh"

# verify_quietly UNIT: systemd-analyze verify exits 0 and says nothing.
verify_quietly() {
    systemd-analyze verify "$man_opt" "./$1" >"$T/.out" 2>&1 && [ ! -s "$T/.out" ]
}

# score_at_most_2 SCORE: a number no greater than 2.0.
score_at_most_2() {
    [ -n "$1" ] && awk -v s="$1" 'BEGIN { exit !(s <= 2.0) }'
}

# The units in a folder of their own; a template is checked as an instance.
mkdir -p "$T/units" "$T/man"
for u in "${units[@]}"; do
    name=$(basename "$u")
    cp "$u" "$T/units/$name"
    case "$name" in
    *@.service) cp "$u" "$T/units/${name%@.service}@test-instance.service" ;;
    esac
done
for m in "${mans[@]}"; do
    section=${m##*.}
    mkdir -p "$T/man/man$section"
    cp "$m" "$T/man/man$section/"
done
export MANPATH="$T/man"
man_opt=--man=yes

cd "$T/units" || exit 1
for f in *.service; do
    case "$f" in
    *@.service) continue ;; # checked through its instance
    esac
    check "systemd-analyze verify $man_opt $f: no complaint" verify_quietly "$f" ||
        sed 's/^/# /' "$T/.out"
done

# The directives the operations guide relies on, in every unit.
required=(
    "User=keten" "Group=keten" "Type=notify" "WatchdogSec=" "UMask=0077"
    "NoNewPrivileges=yes" "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes"
    "PrivateDevices=yes" "ProtectKernelTunables=yes" "ProtectKernelModules=yes"
    "ProtectKernelLogs=yes" "ProtectControlGroups=yes"
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" "RestrictNamespaces=yes"
    "LockPersonality=yes" "MemoryDenyWriteExecute=yes" "SystemCallArchitectures=native"
    "SystemCallFilter=@system-service" "CapabilityBoundingSet=" "StateDirectory=keten/"
    "ConfigurationDirectory=keten" "ReadWritePaths=/var/lib/keten/"
    "LoadCredential=passphrase:" "--passphrase-file %d/passphrase" "--config "
    "RestartPreventExitStatus=2 3"
)
for f in *.service; do
    missing=()
    for d in "${required[@]}"; do
        grep -qF -- "$d" "$f" || missing+=("$d")
    done
    check "$f has every hardening and service directive" test ${#missing[@]} -eq 0 ||
        echo "# $f lacks: ${missing[*]}"
    # The state directory and ReadWritePaths name the same folder.
    state=$(sed -n 's/^StateDirectory=//p' "$f")
    check "$f: ReadWritePaths is its StateDirectory /var/lib/$state" \
        grep -qx "ReadWritePaths=/var/lib/$state" "$f"
done
check "keten-broker.service reloads with SIGHUP" \
    grep -qF "ExecReload=/bin/kill -HUP \$MAINPID" keten-broker.service

# A unit with a mistake must be caught: the check above can fail.
sed 's/^Type=notify$/Type=notifi/' keten-broker.service >"$T/broken.service"
mkdir -p "$T/broken" && mv "$T/broken.service" "$T/broken/keten-broker.service"
systemd-analyze verify --man=no "$T/broken/keten-broker.service" >"$T/.out" 2>&1
check "a misspelt directive (Type=notifi) is reported by systemd-analyze verify" \
    test -s "$T/.out"

# Exposure score (systemd-analyze security, offline): at most 2.0 ("OK").
# systemd 250 and later have --offline (Debian 12 has 252); an older one
# fails here rather than leave the score unchecked.
if systemd-analyze security --help 2>/dev/null | grep -q -- "--offline"; then
    for f in *.service; do
        case "$f" in
        *@.service) continue ;;
        esac
        systemd-analyze security --offline=yes --no-pager "./$f" >"$T/.out" 2>&1
        score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$T/.out")
        check "$f: exposure level '${score:-none}' (at most 2.0)" score_at_most_2 "$score"
    done
else
    systemd-analyze --version | head -n 1 >"$T/.out"
    not_ok "systemd-analyze security has no --offline: the exposure score is not checked"
fi

done_testing
