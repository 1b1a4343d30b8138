#!/usr/bin/env bash
# Every command has --help (exit 0) that prints its usage line; a wrong
# command line is a usage error (exit 2) with a message saying what is wrong,
# and touches nothing.
. "$(dirname "$0")/lib.sh"

for cmd in admin-keygen init register unregister approve revoke policy set-admins publish sign \
    status partners show; do
    run "$KEYS" "$cmd" --help
    expect 0 "keten-keys $cmd --help"
    stdout_says "Usage: keten-keys $cmd" "keten-keys $cmd --help prints its usage"
done
run "$KEYS" --help
expect 0 "keten-keys --help"
stdout_says "Usage: keten-keys COMMAND" "keten-keys --help prints its usage"
stdout_says "set-admins" "keten-keys --help lists the commands"
run "$NODE" keygen --help
expect 0 "keten-node keygen --help"
stdout_says "Usage: keten-node keygen" "keten-node keygen --help prints its usage"
run "$NODE" --help
expect 0 "keten-node --help"
stdout_says "Usage: keten-node COMMAND" "keten-node --help prints its usage"
for cmd in keygen run send inbox status; do
    check "keten-node --help lists $cmd" grep -qE "^  $cmd " "$T/.out"
done
run "$BROKER" keygen --help
expect 0 "keten-broker keygen --help"
stdout_says "Usage: keten-broker keygen" "keten-broker keygen --help prints its usage"
run "$BROKER" --help
expect 0 "keten-broker --help"
stdout_says "Usage: keten-broker COMMAND" "keten-broker --help prints its usage"
for cmd in keygen run backup; do
    check "keten-broker --help lists $cmd" grep -qE "^  $cmd " "$T/.out"
done

run "$KEYS" init --dir admin --network riec-test --threshold 2 --admins 3 --no-passphrase
expect 0 "a network to run the usage errors against"
check "it wrote the network's anchor and the three administrator keys" \
    test -s admin/network.pub -a -s admin/admin-1.secret -a -s admin/admin-3.secret
before=$(fingerprint admin)

# usage CODE TEXT DESCRIPTION ARGS...: keten-keys ARGS exits 2 saying TEXT.
usage() {
    local text=$1 what=$2
    shift 2
    run "$@"
    expect 2 "$what"
    says "$text" "$what: says \"$text\""
}

usage "unknown command 'frobnicate'" "an unknown command" "$KEYS" frobnicate
run "$KEYS"
expect 2 "keten-keys without a command"
says "Usage: keten-keys COMMAND" "without a command it prints the usage"
usage "unknown option --bogus" "an unknown option" "$KEYS" show --bogus x
usage "option --dir needs a value" "an option without its value" "$KEYS" register --dir
usage "option --json=yes takes no value" "a value for a flag" "$KEYS" show x --json=yes
usage "--out FILE is required" "admin-keygen without --out" "$KEYS" admin-keygen
usage "--dir ADMIN is required" "init without --dir" "$KEYS" init --network n --threshold 1 --admins 1
usage "--network NAME is required" "init without --network" "$KEYS" init --dir x --threshold 1 --admins 1
usage "is not a valid name" "init with a bad network name" "$KEYS" init --dir x --network "Bad Name" --threshold 1 --admins 1
usage "--threshold K is required" "init without --threshold" "$KEYS" init --dir x --network n --admins 1
usage "give either --admin-pub" "init with neither --admin-pub nor --admins" "$KEYS" init --dir x --network n --threshold 1
usage "give either --admin-pub" "init with both --admin-pub and --admins" "$KEYS" init --dir x --network n --threshold 1 --admins 1 --admin-pub admin/admin-1.pub
usage "only apply to keys made with --admins" "--no-passphrase with --admin-pub" "$KEYS" init --dir x --network n --threshold 1 --admin-pub admin/admin-1.pub --no-passphrase
usage "--threshold 'two' is not a number" "a threshold that is not a number" "$KEYS" init --dir x --network n --threshold two --admins 2
usage "--admins '0' must be a number from 1 to 32" "--admins 0" "$KEYS" init --dir x --network n --threshold 1 --admins 0
check "no usage error created an ADMIN" test ! -e x
usage "give --category and/or --purpose" "register with nothing to register" "$KEYS" register --dir admin
usage "give --category and/or --purpose" "unregister with nothing to remove" "$KEYS" unregister --dir admin
usage "--dir ADMIN is required" "unregister without --dir" "$KEYS" unregister --category x
usage "unexpected argument 'x'" "unregister with an argument" "$KEYS" unregister --dir admin --category c x
usage "--dir ADMIN is required" "status without --dir" "$KEYS" status
usage "unexpected argument 'x'" "status with an argument" "$KEYS" status --dir admin x
usage "--dir ADMIN is required" "partners without --dir" "$KEYS" partners --json
usage "unknown option --rotated" "partners with an unknown option" "$KEYS" partners --dir admin --rotated
usage "--name ' x' is not usable" "admin-keygen with a name starting with a space" "$KEYS" admin-keygen --out k --name " x"
usage "give the REQUEST file to approve" "approve without a request" "$KEYS" approve --dir admin
usage "approve one REQUEST at a time" "approve with two requests" "$KEYS" approve --dir admin a b
usage "--valid-days 'x' must be a number from 1 to 3650" "approve with a bad --valid-days" "$KEYS" approve --dir admin a --valid-days x
usage "--dir ADMIN is required" "approve without --dir" "$KEYS" approve a
usage "--reason TEXT is required" "revoke without --reason" "$KEYS" revoke --dir admin politie-mn
usage "give the NODE_ID to revoke" "revoke without a node" "$KEYS" revoke --dir admin --reason r
usage "is not a node id" "revoke with a bad node id" "$KEYS" revoke --dir admin "Politie MN" --reason r
usage "say what to do: allow, deny, list, explain or remove" "policy without an action" "$KEYS" policy --dir admin
usage "unknown policy action 'permit'" "policy with an unknown action" "$KEYS" policy --dir admin permit
usage "allow needs --from, --to and --category" "policy allow without --to" "$KEYS" policy --dir admin allow --from '*' --category x
usage "explain takes one --category" "policy explain with two categories" "$KEYS" policy --dir admin explain --from a --to b --category x,y
usage "is not signal, query, reply or feedback" "policy explain with a bad kind" "$KEYS" policy --dir admin explain --from a --to b --category x --kind letter
usage "remove takes exactly one RULE_ID" "policy remove without an id" "$KEYS" policy --dir admin remove
usage "RULE_ID 'one' is not a rule number" "policy remove with a bad id" "$KEYS" policy --dir admin remove one
usage "list takes no --from" "policy list with --from" "$KEYS" policy --dir admin list --from x
usage "give the new administrators with --admin-pub" "set-admins without keys" "$KEYS" set-admins --dir admin --threshold 1
usage "give either --key FILE" "publish without --key or --admin" "$KEYS" publish --dir admin --out d
usage "give either --key FILE" "publish with both --key and --admin" "$KEYS" publish --dir admin --out d --admin 1 --key k
usage "--out FILE is required" "publish without --out" "$KEYS" publish --dir admin --admin 1
usage "--valid-days '0' must be a number from 1 to 365" "publish --valid-days 0" "$KEYS" publish --dir admin --out d --admin 1 --valid-days 0
usage "--valid-days '999' must be a number from 1 to 365" "publish --valid-days 999" "$KEYS" publish --dir admin --out d --admin 1 --valid-days 999
usage "--admin '0' must be a number" "publish --admin 0" "$KEYS" publish --dir admin --out d --admin 0
usage "give the directory FILE to sign" "sign without a file" "$KEYS" sign --dir admin --admin 1
usage "--out is for publish" "sign with --out" "$KEYS" sign --dir admin d --admin 1 --out e
usage "--force is for publish" "sign with --force" "$KEYS" sign --dir admin d --admin 1 --force
usage "--refresh is for publish" "sign with --refresh" "$KEYS" sign --dir admin d --admin 1 --refresh
usage "give the directory FILE to show" "show without a file" "$KEYS" show
usage "unexpected argument 'b'" "show with two files" "$KEYS" show a b
unchanged admin "$before" "usage errors"
check "no usage error wrote a directory file" test ! -e d

usage "--id, --role and --org are required" "keten-node keygen without --id" "$NODE" keygen --home h --role police --org P
usage "--home DIR is required" "keten-node keygen without --home" "$NODE" keygen --id a --role police --org P
usage "is not a node id" "keten-node keygen with a bad id" "$NODE" keygen --home h --id "Politie MN" --role police --org P
usage "is not a role" "keten-node keygen with a bad role" "$NODE" keygen --home h --id p --role "Police!" --org P
usage "role broker is reserved" "keten-node keygen with role broker" "$NODE" keygen --home h --id b --role broker --org B
usage "exclude each other" "keten-node keygen with both passphrase options" "$NODE" keygen --home h --id p --role police --org P --no-passphrase --passphrase-file f
usage "unknown command 'frobnicate'" "keten-node with an unknown command" "$NODE" frobnicate
usage "--home DIR is required" "keten-broker keygen without --home" "$BROKER" keygen
usage "is not a node id" "keten-broker keygen with a bad id" "$BROKER" keygen --home h --id "Broker!"
check "no usage error created a home" test ! -e h

done_testing
