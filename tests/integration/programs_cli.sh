#!/usr/bin/env bash
# programs_cli.sh - what the four programs share (lib/cmdtable.h): --version
# and version print the project's version; a mistyped command or long option
# is a usage error (exit 2) naming the closest one, and the right one is
# accepted; a configuration file its group or others can write is refused
# saying so (twin: mode 644 is read); the installed bash completion scripts
# parse and complete the commands and a command's options.
#
#   programs_cli.sh KEYS NODE BROKER TOOL AUDIT VERSION COMPLETION...
# The paths, before lib.sh moves into its temporary directory.
AUDIT=$(realpath "${5:?keten-audit path}")
VERSION=${6:?project version}
COMPLETIONS=()
for c in "${@:7}"; do
    COMPLETIONS+=("$(realpath "$c")")
done
. "$(dirname "$0")/lib.sh"
need_tool bash grep realpath

for p in "$KEYS" "$NODE" "$BROKER" "$AUDIT"; do
    name=$(basename "$p")
    for word in --version version; do
        run "$p" "$word"
        expect 0 "$name $word"
        check "$name $word prints \"$name $VERSION\"" grep -qxF "$name $VERSION" "$T/.out"
    done
    run "$p" --help
    check "$name --help names --version" grep -qF -- "--version" "$T/.out"
done

# A mistyped command: exit 2, the closest command named, nothing done.
run "$KEYS" publsh
expect 2 "keten-keys publsh"
says "unknown command 'publsh' (did you mean 'publish'?)" "keten-keys publsh: did you mean publish"
run "$NODE" inbx --home x
expect 2 "keten-node inbx"
says "did you mean 'inbox'?" "keten-node inbx: did you mean inbox"
run "$AUDIT" verfy
expect 2 "keten-audit verfy"
says "did you mean 'verify'?" "keten-audit verfy: did you mean verify"
run "$BROKER" frobnicate
expect 2 "keten-broker frobnicate"
says_not "did you mean" "nothing close to frobnicate: no suggestion"
# Twin: the right command runs (its --help).
run "$KEYS" publish --help
expect 0 "keten-keys publish --help"

# A mistyped long option: exit 2, the closest option named, nothing made.
run "$KEYS" init --dir admin --netwrok riec-test --threshold 1 --admins 1 --no-passphrase
expect 2 "keten-keys init --netwrok"
says "unknown option --netwrok (did you mean --network?)" "--netwrok: did you mean --network"
check "keten-keys init --netwrok made nothing" test ! -e admin
run "$NODE" keygen --hme n1 --id n1 --role police --org X --no-passphrase
expect 2 "keten-node keygen --hme"
says "(did you mean --home?)" "--hme: did you mean --home"
run "$BROKER" run --listn tcp://127.0.0.1:1
expect 2 "keten-broker run --listn"
says "(did you mean --listen?)" "--listn: did you mean --listen"
run "$KEYS" init --dir admin --frobnicate x
expect 2 "keten-keys init --frobnicate"
says_not "did you mean" "nothing close to --frobnicate: no suggestion"
# Twin: the same command with --network is accepted.
run "$KEYS" init --dir admin --network riec-test --threshold 1 --admins 1 --no-passphrase
expect 0 "keten-keys init --network"
check "it made the network" test -s admin/network.pub

# The daemons' run options come from their configuration tables: both show
# --config and --log-level; a bad value or an unknown option is exit 2.
for p in "$NODE" "$BROKER"; do
    name=$(basename "$p")
    run "$p" run --help
    expect 0 "$name run --help"
    stdout_says "--config FILE" "$name run --help shows --config"
    stdout_says "--log-level LEVEL" "$name run --help shows --log-level"
    says_not "7750" "$name run --help has no port 7750"
    run "$p" run --log-level loud
    expect 2 "$name run --log-level loud"
    says "--log-level" "$name run --log-level loud names the option"
    run "$p" run --log-level debug
    expect 2 "$name run --log-level debug without the required settings"
    says "home is not set" "$name run without --home says so"
    run "$p" run --config "$T/missing.conf"
    expect 2 "$name run --config with a missing file"
    says "missing.conf" "$name run --config names the missing file"
    # A configuration file its group or others can change is refused, and
    # the message says that (it is no secret file); twin: made go-w, the
    # same file is read, and the run stops at what it lacks (a home).
    section=${name#keten-}
    printf '[%s]\nlog-level = info\n' "$section" >"$T/$section.conf"
    chmod 664 "$T/$section.conf"
    run "$p" run --config "$T/$section.conf"
    expect 2 "$name run --config with a group-writable file"
    says "$section.conf: the configuration file is writable by its group (mode 664)" \
        "$name says the configuration file is writable by its group"
    says "chmod go-w" "$name says what to do"
    says_not "secret" "$name does not call a configuration file secret"
    says_not "readable" "$name does not say the problem is reading it"
    chmod 646 "$T/$section.conf"
    run "$p" run --config "$T/$section.conf"
    expect 2 "$name run --config with a file others can write"
    says "writable by others (mode 646)" "$name says others can write it"
    chmod 644 "$T/$section.conf"
    run "$p" run --config "$T/$section.conf"
    expect 2 "$name run --config with the same file mode 644: read"
    says "home is not set" "$name read it and stops at the missing home"
    says_not "writable" "$name no longer complains about the mode"
done
run "$NODE" run --help
stdout_says "tcp://broker.example:7250" "keten-node run --help's example uses port 7250"
run "$NODE" run --verbose
expect 2 "keten-node run --verbose (one name for the log level: --log-level)"
says "unknown option --verbose" "--verbose is not an option"

# keygen --home with a missing parent folder: exit 1 naming the folder that
# is missing (not an input/output error), nothing made; twin: once the parent
# exists the same command makes the home (mode 0700) and the keys.
for p in "$NODE" "$BROKER"; do
    name=$(basename "$p")
    args=(--home "nodes-$name/gemeente" --no-passphrase)
    [ "$name" = keten-node ] && args+=(--id gemeente --role municipality --org Gemeente)
    run "$p" keygen "${args[@]}"
    expect 1 "$name keygen with a missing parent folder"
    says "the folder nodes-$name does not exist" "$name keygen names the missing folder"
    says_not "input/output error" "$name keygen does not call it an input/output error"
    check "$name keygen made nothing" test ! -e "nodes-$name"
    mkdir "nodes-$name"
    run "$p" keygen "${args[@]}"
    expect 0 "$name keygen once the parent exists"
    check "$name keygen made the home's keys" test -s "nodes-$name/gemeente/identity.secret"
    check "$name keygen made the home mode 0700" \
        test "$(stat -c %a "nodes-$name/gemeente")" = 700
done
run "$NODE" keygen --home n2 --id n2 --role broker --org X --no-passphrase
expect 2 "keten-node keygen --role broker"
says "role broker is reserved" "the broker's role is refused to a node"
run "$BROKER" keygen --home b2 --role police --no-passphrase
expect 2 "keten-broker keygen --role (the broker's role is fixed)"
says "unknown option --role" "keten-broker keygen has no --role"
run "$BROKER" keygen --home b2 --rotate
expect 2 "keten-broker keygen --rotate (a broker rotates with a new home)"

# complete SCRIPT WORDS...: what the script offers for the last word.
complete_words() {
    local script=$1
    shift
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
        f=$(complete -p "$(basename "$0")" | sed -E "s/.*-F ([^ ]+) .*/\1/"); "$f";
        printf "%s\n" "${COMPREPLY[@]}"' "${COMP_WORDS0:?}" "$script" "$@"
}

for c in "${COMPLETIONS[@]}"; do
    name=$(basename "$c")
    check "$name completion script parses (bash -n)" bash -n "$c"
    check "$name completion script registers $name" grep -qE "^complete -F _[a-z_]+ $name\$" "$c"
done
for c in "${COMPLETIONS[@]}"; do
    case $(basename "$c") in
    keten-keys) keys_c=$c ;;
    keten-node) node_c=$c ;;
    esac
done
PATH="$(dirname "$KEYS"):$(dirname "$NODE"):$PATH"
export PATH
COMP_WORDS0=keten-keys
check "keten-keys completion lists its commands" grep -qF \
    '"admin-keygen init register unregister approve revoke policy set-admins publish sign status partners show ' \
    "${keys_c:?}"
check "keten-keys pu<TAB> completes to publish" grep -qx publish \
    <(complete_words "$keys_c" "$KEYS" pu)
check "keten-keys init --net<TAB> completes to --network" grep -qx -- --network \
    <(complete_words "$keys_c" "$KEYS" init --net)
COMP_WORDS0=keten-node
check "keten-node run --con<TAB> completes to --config" grep -qx -- --config \
    <(complete_words "${node_c:?}" "$NODE" run --con)
check "keten-node ch<TAB> completes to checkpoint" grep -qx checkpoint \
    <(complete_words "$node_c" "$NODE" ch)
check "keten-node zz<TAB> completes to nothing" lacks grep -q . <(complete_words "$node_c" "$NODE" zz)

done_testing
