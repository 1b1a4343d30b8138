# shellcheck shell=bash
#
# lib.sh - helpers for keten's integration tests, which drive the real
# programs in a temporary directory and report TAP ("ok N - what").
#
# Source it with the built programs as the script's arguments:
#   keten-keys keten-node keten-broker keten-test-tool
# It makes a fresh temporary directory, cds into it and removes it on exit.
# Every command runs through `run`, without a controlling terminal, so a
# passphrase can only come from --passphrase-file or KETEN_PASSPHRASE.

set -u

# need_tool COMMAND...: fail the whole test at once when a program it calls
# is not installed (need_tool.sh; sourced before the cd below).
. "$(dirname "${BASH_SOURCE[0]}")/need_tool.sh"
# ok, not_ok, check, require, done_testing (tap.sh).
. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"

KEYS=$(realpath "${1:?keten-keys path}")
NODE=$(realpath "${2:?keten-node path}")
BROKER=$(realpath "${3:?keten-broker path}")
TOOL=$(realpath "${4:?keten-test-tool path}")

unset KETEN_PASSPHRASE KETEN_TEST_NOW_MS
export KETEN_TEST_FAST_KDF=${KETEN_TEST_FAST_KDF:-1}

T=$(mktemp -d "${TMPDIR:-/tmp}/keten-it.XXXXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
umask 022


# run CMD [ARGS...]: run it without a terminal; RC is its exit code, the
# files $T/.out (stdout), $T/.err (stderr) and $T/.all (both) what it said.
run() {
    setsid -w "$@" </dev/null >"$T/.out" 2>"$T/.err"
    RC=$?
    cat "$T/.out" "$T/.err" >"$T/.all"
}

# expect RC DESCRIPTION: the last command exited with RC.
expect() {
    if [ "$RC" -eq "$1" ]; then
        ok "$2 (exit $1)"
    else
        not_ok "$2 (exit $RC, expected $1)"
    fi
}

# says TEXT DESCRIPTION: the last command's output contains TEXT (fixed string).
says() {
    if grep -qF -- "$1" "$T/.all"; then
        ok "$2"
    else
        not_ok "$2: no \"$1\" in the output"
    fi
}

# stdout_says TEXT DESCRIPTION: the same, for standard output only.
stdout_says() {
    if grep -qF -- "$1" "$T/.out"; then
        ok "$2"
    else
        not_ok "$2: no \"$1\" on standard output"
    fi
}

# says_not TEXT DESCRIPTION: the last command's output does not contain TEXT
# (the reject twin of says). grep's exit 2 (no output file, unreadable) is
# not "not there": it fails.
says_not() {
    grep -qF -- "$1" "$T/.all"
    case $? in
    1) ok "$2" ;;
    0) not_ok "$2: \"$1\" in the output" ;;
    *) not_ok "$2: the output could not be read" ;;
    esac
}

# lacks CMD...: CMD answers "no" - it exits 1 - for check and wait_until.
# Only 1 is "no": grep exits 2 for a file that is missing or unreadable, a
# command that is not found exits 127, and the helpers here exit 2 when they
# could not ask (a node's status that could not be read), so "no sanitizer
# report" cannot pass because there are no logs, nor "not delivered" because
# the inbox could not be listed.
lacks() {
    "$@"
    local rc=$?
    [ "$rc" -eq 1 ] && return 0
    [ "$rc" -eq 0 ] || echo "# lacks: no answer from $1 (exit $rc)" >&2
    return 1
}

# fingerprint DIR: one hash over the names, modes and contents of every file
# and folder under DIR, to prove that a refused command changed nothing.
fingerprint() {
    (
        cd "$1" || exit 1
        find . -printf '%p %m %s\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    ) | sha256sum | cut -d' ' -f1
}

# unchanged DIR BEFORE DESCRIPTION: DIR still has fingerprint BEFORE.
unchanged() {
    local now
    now=$(fingerprint "$1")
    if [ "$now" = "$2" ]; then
        ok "$3: $1 unchanged"
    else
        not_ok "$3: $1 was changed"
    fi
}

# secret FILE TEXT: write a passphrase file (mode 0600).
secret() {
    (umask 077 && printf '%s\n' "$2" >"$1")
}

# The four partners of the demo network and the broker.
PARTNERS="gemeente-diemen:municipality:Gemeente Diemen
politie-mn:police:Politie Midden-Nederland
belastingdienst:tax:Belastingdienst
woonstad:housing:Woonstad Rotterdam"

# make_nodes: keygen (no passphrase) for the four partners (homes n-ID) and
# the broker (home broker); fails the test run if one does not work.
make_nodes() {
    local id role org
    while IFS=: read -r id role org; do
        run "$NODE" keygen --home "n-$id" --id "$id" --role "$role" --org "$org" --no-passphrase
        [ "$RC" -eq 0 ] || { not_ok "keygen $id"; return 1; }
    done <<<"$PARTNERS"
    run "$BROKER" keygen --home broker --no-passphrase
    [ "$RC" -eq 0 ] || { not_ok "broker keygen"; return 1; }
}

# make_network ADMIN: a 2-of-3 test network with registered values, the four
# partners and the broker approved, and a small policy; nothing published.
make_network() {
    local admin=$1 id role org
    run "$KEYS" init --dir "$admin" --network riec-test --threshold 2 --admins 3 --no-passphrase
    [ "$RC" -eq 0 ] || { not_ok "init $admin"; return 1; }
    run "$KEYS" register --dir "$admin" --category woonfraude,drugs,adrescheck \
        --purpose riec-convenant-2024/art-5,handhaving
    [ "$RC" -eq 0 ] || { not_ok "register"; return 1; }
    [ -f broker/identity.request ] || make_nodes || return 1
    while IFS=: read -r id role org; do
        run "$KEYS" approve --dir "$admin" "n-$id/identity.request"
        [ "$RC" -eq 0 ] || { not_ok "approve $id"; return 1; }
    done <<<"$PARTNERS"
    run "$KEYS" approve --dir "$admin" broker/identity.request
    [ "$RC" -eq 0 ] || { not_ok "approve broker"; return 1; }
    run "$KEYS" policy --dir "$admin" allow --from role:municipality \
        --to role:police,role:tax,role:housing --category woonfraude,adrescheck
    [ "$RC" -eq 0 ] || { not_ok "policy allow"; return 1; }
    run "$KEYS" policy --dir "$admin" allow --from role:police,role:tax,role:housing \
        --to role:municipality --category adrescheck --kind reply,feedback
    [ "$RC" -eq 0 ] || { not_ok "policy allow replies and feedback"; return 1; }
}

# publish_signed ADMIN OUT [PUBLISH OPTIONS...]: publish the next directory
# version from ADMIN to OUT (with the options, e.g. --valid-days 1
# --refresh), signed by admins 1 and 2; fails the step if either does not work.
publish_signed() {
    local admin=$1 out=$2
    shift 2
    run "$KEYS" publish --dir "$admin" --out "$out" --admin 1 "$@"
    [ "$RC" -eq 0 ] || { not_ok "publish $out"; return 1; }
    run "$KEYS" sign --dir "$admin" "$out" --admin 2
    [ "$RC" -eq 0 ] || { not_ok "sign $out"; return 1; }
}

# Debian's python3 when there is one (a version manager's shim in PATH costs
# tens of milliseconds per call, and the tests call it often).
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_open PORT: something accepts connections on 127.0.0.1:PORT.
port_open() {
    "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1"
}

# Every test: run (setsid), jl and jget (python3).
need_tool "$PY" setsid

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
    local limit=$(($1 * 10)) i=0
    shift
    while [ "$i" -lt "$limit" ]; do
        "$@" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# jl PYTHON_EXPR DESCRIPTION: ok when the expression is true; L is the list
# of JSON objects the last command printed, E(name) those with that event.
jl() {
    if "$PY" - "$T/.out" "$1" 2>/dev/null <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
def E(name):
    return [e for e in L if e.get("event") == name]
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
    then
        ok "$2"
    else
        not_ok "$2"
    fi
}

# jget PYTHON_EXPR: print the value of the expression over the last output.
jget() {
    "$PY" - "$T/.out" "$1" 2>/dev/null <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
def E(name):
    return [e for e in L if e.get("event") == name]
print(eval(sys.argv[2]))
PY
}

