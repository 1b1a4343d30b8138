#!/usr/bin/env bash
# An administrator's everyday work, as administration.md describes it, and
# the mistakes one naturally makes: a rule number stays the rule it was
# published as, an ADMIN/state restored from an old backup is refused by
# every command (not only by publish), a version that would leave the
# network without a broker is not published, and the hints the commands give
# can be copied as they are.
. "$(dirname "$0")/lib.sh"

make_network admin || { done_testing; }
publish_signed admin v1.dir || { done_testing; }

# ---- a node id with a typo in a rule ----------------------------------------------

run "$KEYS" policy --dir admin explain --from gemeente-diemen --to politie-mn --category drugs
expect 1 "drugs from the municipality to the police is refused before the rule"
run "$KEYS" policy --dir admin allow --from gemeente-diemen --to politie-nm --category drugs
expect 0 "a rule naming a node id no partner has is added (for a partner yet to enrol)"
says "--to politie-nm: no node with that id is enrolled yet (did you mean politie-mn?)" \
    "the warning names the enrolled id it most likely meant"
run "$KEYS" policy --dir admin explain --from gemeente-diemen --to politie-mn --category drugs
expect 1 "the mistyped rule does not allow politie-mn"
run "$KEYS" policy --dir admin remove 3
expect 0 "the mistyped rule is removed before it was ever published"
run "$KEYS" policy --dir admin allow --from gemeente-diemen --to ggd-amsterdam --category drugs
expect 0 "a rule for a partner of a new id"
says "--to ggd-amsterdam: no node with that id is enrolled yet" "it warns"
says_not "did you mean" "without a guess when no enrolled id is close"
run "$KEYS" policy --dir admin remove 3
expect 0 "and that rule is removed too (never published: its number may come back)"

# ---- rule numbers are never reused -------------------------------------------

run "$KEYS" policy --dir admin deny --from '*' --to role:housing --category drugs
expect 0 "a deny rule is added to the draft of version 2"
says "added rule 3: deny" "it is rule 3, the next number after version 1's rules 1 and 2"
publish_signed admin v2.dir || { done_testing; }

run "$KEYS" policy --dir admin remove 3
expect 0 "rule 3 is removed from the draft of version 3"
run "$KEYS" policy --dir admin allow --from role:housing --to role:municipality \
    --category woonfraude --kind signal
expect 0 "an allow rule is added to the draft of version 3"
says "added rule 4: allow" "it is rule 4: number 3 was published as another rule (the deny)"
says_not "rule 3" "the published number 3 is not given to the new rule"
run "$KEYS" status --dir admin
expect 0 "status of the draft of version 3"
says "rule 3: deny from * to role:housing category drugs" "status lists rule 3 as removed"
says "rule 4: allow from role:housing to role:municipality" "and rule 4 as added"
publish_signed admin v3.dir || { done_testing; }
run "$KEYS" show v3.dir
says "rule 4: allow from role:housing" "version 3 carries the new rule as rule 4"
says_not "rule 3:" "and has no rule 3"

# ---- a state restored from a backup older than the last publish ----------------

cp -p admin/state state-before-v4
run "$KEYS" register --dir admin --category ondermijning
expect 0 "register a category for version 4"
publish_signed admin v4.dir || { done_testing; }
cp -p admin/state state-after-v4
cp -p state-before-v4 admin/state
before=$(fingerprint admin)
for cmd in "register --dir admin --purpose controle" \
    "policy --dir admin allow --from role:tax --to role:police --category drugs" \
    "approve --dir admin n-politie-mn/identity.request --rotate" \
    "revoke --dir admin woonstad --reason left" "status --dir admin" \
    "partners --dir admin" "policy --dir admin list"; do
    # shellcheck disable=SC2086
    run "$KEYS" $cmd
    expect 1 "keten-keys ${cmd%% *} on a state older than published/v4.dir"
    says "version 4 was already published (admin/published/v4.dir exists), but admin/state is the draft of that version" \
        "keten-keys ${cmd%% *} says the state is older than what was published"
done
unchanged admin "$before" "commands on an old state"
run "$KEYS" publish --dir admin --out other-v4.dir --admin 1
expect 1 "publish from the old state"
says "version 4 was already published" "publish says so too"
check "no second version 4 was written" test ! -e other-v4.dir
unchanged admin "$before" "publish from an old state"
# The twin: with the newest state back, the same commands work.
cp -p state-after-v4 admin/state
run "$KEYS" register --dir admin --purpose controle
expect 0 "register works on the newest state"
says "next directory version 5" "it edits the draft of version 5"
run "$KEYS" status --dir admin
expect 0 "status works on the newest state"

# ---- the broker: revoked only with a new broker approved ------------------------

run "$KEYS" revoke --dir admin broker --reason "moves to another machine"
expect 0 "the broker's certificate can be revoked in the draft"
says "broker is the network's broker: version 5 cannot be published without a broker" \
    "revoke warns that version 5 then needs a new broker"
before=$(fingerprint admin)
run "$KEYS" publish --dir admin --out no-broker.dir --admin 1
expect 1 "publish of a version without a broker"
says "version 5 would have no broker: the draft revokes broker (serial 5) and approves no other broker" \
    "it says the version would have no broker"
says "keten-keys approve --dir admin REQUEST" "and what to do"
check "no file was written" test ! -e no-broker.dir
unchanged admin "$before" "publish without a broker"
run "$KEYS" publish --dir admin --out no-broker.dir --admin 1 --force
expect 1 "--force does not publish a version without a broker"
check "no file was written with --force" test ! -e no-broker.dir
unchanged admin "$before" "publish --force without a broker"
# The twin: the new broker's request approved in the same draft.
run "$BROKER" keygen --home broker-new --no-passphrase
expect 0 "the broker's operator makes new keys in a new home"
run "$KEYS" approve --dir admin broker-new/identity.request
expect 0 "the new broker is approved in the draft of version 5"
check "version 5, with the new broker, is published and signed" publish_signed admin v5.dir
run "$KEYS" show v5.dir --anchor admin/network.pub
expect 0 "version 5 verifies"
says "broker: role broker" "and lists a broker"

# ---- hints that can be copied --------------------------------------------------

run "$KEYS" status --dir admin
expect 0 "status of an unchanged draft"
says "renew it with keten-keys publish --dir admin --out FILE --key KEY --refresh" \
    "the renewal it proposes names --out and --key, which publish needs"
run "$KEYS" publish --dir admin --refresh
expect 2 "publish --refresh without --out and --key is a usage error"

before=$(fingerprint admin)
run "$KEYS" approve --dir admin admin/admin-1.pub
expect 1 "approve of an administrator's .pub file"
says "admin/admin-1.pub is not an enrollment request" "it names the file that is no request"
says "identity.request" "and which file to give"
unchanged admin "$before" "approve of a file that is no request"

done_testing
