#!/usr/bin/env bash
# The whole administrators' flow with test keys: a 2-of-3 network, four
# partners and a broker enrolled, a policy, publish, a second signature, and
# `show --anchor` that says valid. Along the way status and partners say
# what the draft holds and changes, a mistyped value is unregistered, and a
# mistyped role is refused.
. "$(dirname "$0")/lib.sh"

# state_of ID: the state partners --json gives the current certificate of ID
# (the first row with that id).
state_of() {
    run "$KEYS" partners --dir admin --json
    "$PY" -c 'import json,sys; p=[r for r in json.load(open(sys.argv[1]))["partners"] if r["id"]==sys.argv[2]]; print(p[0]["state"] + ("" if p[0]["published"] else " unpublished"))' "$T/.out" "$1"
}

run "$KEYS" init --dir admin --network riec-test --threshold 2 --admins 3 --no-passphrase
expect 0 "init --admins 3 --threshold 2 --no-passphrase"
says "for tests and demos only" "init --no-passphrase warns"
for f in network.pub state admin-1.secret admin-2.secret admin-3.secret admin-1.pub; do
    check "init wrote ADMIN/$f" test -f "admin/$f"
done
check "ADMIN is mode 0700" test "$(stat -c %a admin)" = 700
check "ADMIN/state is mode 0600" test "$(stat -c %a admin/state)" = 600
check "admin-1.secret is mode 0600" test "$(stat -c %a admin/admin-1.secret)" = 600
check "network.pub is mode 0644" test "$(stat -c %a admin/network.pub)" = 644
anchor_sum=$(sha256sum admin/network.pub | cut -d' ' -f1)
says "$anchor_sum" "init prints the anchor's sha256 (as sha256sum computes it)"

run "$KEYS" show admin/network.pub
expect 0 "show reads an anchor"
says "anchor of network 'riec-test': 2 of 3" "show prints the anchor's network and threshold"
says "test administrator 2 (fingerprint " "show names administrator 2 of the anchor"
says "$(cut -d' ' -f1 admin/admin-2.pub)" "show lists administrator 2's key in the anchor"

run "$KEYS" register --dir admin --category woonfraude,drugs,adrescheck \
    --purpose riec-convenant-2024/art-5 --purpose handhaving
expect 0 "register categories and purposes"
says "categories: woonfraude drugs adrescheck" "register prints the categories"
says "purposes: riec-convenant-2024/art-5 handhaving" "register prints the purposes"

# A mistyped category, and removing it again.
run "$KEYS" register --dir admin --category woonfruade
expect 0 "register a mistyped category"
run "$KEYS" status --dir admin
expect 0 "status before anything was published"
says "nothing published yet" "status says nothing was published"
says "draft of version 1 (the first), it holds:" "status describes the first draft"
says "categories added: woonfraude drugs adrescheck woonfruade" "status shows the typo among the values"
says "test administrator 1 (fingerprint " "status names the administrators"
says "threshold: 2" "status gives the threshold"
says "next: publish version 1" "status says what comes next"
run "$KEYS" unregister --dir admin --category woonfruade
expect 0 "unregister the mistyped category"
says "categories: woonfraude drugs adrescheck" "unregister prints what is left"
says "unregistered; what stays registered in the next directory version" \
    "and says it is what stays, not what was registered"
run "$KEYS" status --dir admin --json
check "status --json: the typo is gone from the draft" \
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["changes"]["categories_added"]; assert c==["woonfraude","drugs","adrescheck"] and d["last_published"] is None and d["changed"]' "$T/.out"
before=$(fingerprint admin)
run "$KEYS" unregister --dir admin --category woonfruade
expect 1 "unregister a value that is not registered"
says "category 'woonfruade' is not registered in the draft" "it says the value is not registered"
unchanged admin "$before" "unregister of an unknown value"
run "$KEYS" unregister --dir admin --category drugs,woonfruade
expect 1 "unregister a list with one unknown value"
unchanged admin "$before" "a list is removed whole or not at all"

run "$NODE" keygen --home n-gemeente-diemen --id gemeente-diemen --role municipality \
    --org "Gemeente Diemen" --no-passphrase
expect 0 "keten-node keygen for gemeente-diemen"
says "for tests and demos only" "keygen --no-passphrase warns"
says "$(sha256sum n-gemeente-diemen/identity.request | cut -d' ' -f1)" \
    "keygen prints the request's sha256"
check "node home is mode 0700" test "$(stat -c %a n-gemeente-diemen)" = 700
check "identity.secret is mode 0600" test "$(stat -c %a n-gemeente-diemen/identity.secret)" = 600
check "identity.request is mode 0644" test "$(stat -c %a n-gemeente-diemen/identity.request)" = 644
for spec in politie-mn:police belastingdienst:tax woonstad:housing; do
    run "$NODE" keygen --home "n-${spec%%:*}" --id "${spec%%:*}" --role "${spec#*:}" \
        --org "Org ${spec%%:*}" --no-passphrase --json
    expect 0 "keten-node keygen for ${spec%%:*} (--json)"
    check "keygen --json is JSON with the id" \
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["id"]==sys.argv[2]' \
        "$T/.out" "${spec%%:*}"
done
run "$BROKER" keygen --home broker --no-passphrase
expect 0 "keten-broker keygen"
says "log key:" "the broker's keys include a log key"

for id in gemeente-diemen politie-mn belastingdienst woonstad; do
    run "$KEYS" approve --dir admin "n-$id/identity.request"
    expect 0 "approve $id"
    says "approved $id" "approve names $id"
done
run "$KEYS" approve --dir admin broker/identity.request --json
expect 0 "approve the broker"
check "approve --json prints role broker and serial 5" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["role"]=="broker" and d["serial"]==5' "$T/.out"

run "$KEYS" policy --dir admin allow --from role:municipality --to role:police,role:tax,role:housing \
    --category woonfraude,adrescheck
expect 0 "policy allow municipality -> police, tax, housing"
says "added rule 1" "the first rule is rule 1"
run "$KEYS" policy --dir admin allow --from role:police,role:tax,role:housing \
    --to role:municipality --category adrescheck --kind reply --purpose riec-convenant-2024/art-5
expect 0 "policy allow replies to the municipality"
run "$KEYS" policy --dir admin deny --from '*' --to role:housing --category woonfraude --kind query
expect 0 "policy deny woonfraude queries to housing"
run "$KEYS" policy --dir admin list --json
expect 0 "policy list --json"
check "policy list --json has three rules, the third a deny" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rules"]; assert len(r)==3 and r[2]["effect"]=="deny"' "$T/.out"

# A value a rule uses cannot be unregistered; the rule is named.
before=$(fingerprint admin)
run "$KEYS" unregister --dir admin --category adrescheck
expect 1 "unregister a category that rule 1 uses"
says "category 'adrescheck' is still used by rule 1: allow from role:municipality" \
    "it names the rule that uses it"
says "policy --dir admin remove 1" "it says how to remove the rule"
unchanged admin "$before" "unregister of a value in use"

# Mistyped roles are refused, with the role meant; a known role is not.
run "$KEYS" policy --dir admin deny --from '*' --to role:housingcorp --category drugs
expect 1 "a deny rule to role:housingcorp (a typo)"
says "no partner in the draft has role 'housingcorp'" "it says no partner has the role"
says "did you mean role:housing?" "it suggests role:housing"
says "known roles: municipality, police, tax, housing, riec, broker" "it lists the known roles"
unchanged admin "$before" "a rule with a mistyped role"
run "$KEYS" policy --dir admin allow --from role:municipality --to role:polise --category drugs
expect 1 "an allow rule to role:polise (a typo)"
says "did you mean role:police?" "it suggests role:police"
run "$KEYS" policy --dir admin allow --from role:muncipality --to role:police --category drugs
expect 1 "a mistyped role in --from"
says "--from role:muncipality" "it names the option"
says "did you mean role:municipality?" "it suggests role:municipality"
run "$KEYS" policy --dir admin explain --from role:polise --to woonstad --category drugs
expect 1 "explain refuses a mistyped role too"
says "did you mean role:police?" "explain suggests the role meant"
unchanged admin "$before" "refused rules"
run "$KEYS" policy --dir admin deny --from '*' --to role:zorg --category drugs --allow-unknown-role
expect 0 "--allow-unknown-role: a rule for a role no partner has yet"
says "--to role:zorg: no partner in the draft has this role" "it warns that no partner has the role"
says "added rule 4: deny from * to role:zorg" "the rule is added"
run "$KEYS" policy --dir admin remove 4
expect 0 "remove that rule again"

run "$KEYS" policy --dir admin explain --from gemeente-diemen --to politie-mn --category woonfraude
expect 0 "explain municipality -> police woonfraude is allowed"
says "allowed by rule 1" "explain names the allowing rule"
run "$KEYS" policy --dir admin explain --from politie-mn --to gemeente-diemen --category woonfraude
expect 1 "explain police -> municipality woonfraude is refused"
says "refused: no rule allows it (default deny)" "explain says default deny"
run "$KEYS" policy --dir admin explain --from gemeente-diemen --to woonstad --category woonfraude \
    --kind query
expect 1 "explain a woonfraude query to housing is refused"
says "refused by rule 3" "deny wins over the allow of rule 1"
run "$KEYS" policy --dir admin explain --from gemeente-diemen --to woonstad --category woonfraude
expect 0 "the same as a signal is allowed"
run "$KEYS" policy --dir admin explain --from belastingdienst --to gemeente-diemen \
    --category adrescheck --kind reply --purpose riec-convenant-2024/art-5 --json
expect 0 "explain a reply with its purpose is allowed"
check "explain --json says allowed by rule 2" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["allowed"] and d["rule"]==2' "$T/.out"
run "$KEYS" policy --dir admin explain --from belastingdienst --to gemeente-diemen \
    --category adrescheck --kind reply --purpose handhaving
expect 1 "a reply for another purpose is refused"

run "$KEYS" partners --dir admin
expect 0 "partners before anything was published"
says "ID               ROLE          ORGANISATION" "partners prints a table with a header"
says "gemeente-diemen  municipality  Gemeente Diemen" "partners lists id, role and organisation"
says "added (not yet published)" "partners says they are not yet published"
run "$KEYS" partners --dir admin --json
expect 0 "partners --json"
check "partners --json: five partners, all added, serials 1 to 5" \
    "$PY" -c 'import json,sys; p=json.load(open(sys.argv[1]))["partners"]; assert [r["serial"] for r in p]==[1,2,3,4,5] and all(r["state"]=="added" and not r["published"] and r["valid_until"] for r in p)' "$T/.out"

run "$KEYS" publish --dir admin --out directory.v1 --admin 1
expect 0 "publish version 1 signed by administrator 1"
says "published version 1" "publish names the version"
says "1 of 2 signatures; needs 1 more (keten-keys sign)" "publish says one more signature is needed"
check "publish kept a copy in ADMIN/published/v1.dir" cmp -s directory.v1 admin/published/v1.dir

run "$KEYS" show directory.v1 --anchor admin/network.pub
expect 3 "show --anchor of the half-signed version fails verification"
says "not enough administrator signatures" "show says signatures are missing"

run "$KEYS" status --dir admin
expect 0 "status after publishing version 1"
says "last published: version 1 (admin/published/v1.dir)" "status names the last published version"
says "1 of 2 signatures; needs 1 more" "status says a signature is missing"
says "signed by test administrator 1 (fingerprint " "status says who signed"
says "not yet valid: it needs more signatures" "status says it is not yet valid"
says "next: another administrator signs version 1: keten-keys sign --dir admin admin/published/v1.dir" \
    "status says what to do next"

run "$KEYS" sign --dir admin directory.v1 --admin 2
expect 0 "sign with administrator 2"
says "2 of 2 signatures: complete" "sign says the signatures are complete"
says "valid: nodes and the broker will accept it" "sign says the version is now valid"
check "sign updated the copy in ADMIN" cmp -s directory.v1 admin/published/v1.dir

run "$KEYS" show directory.v1 --anchor admin/network.pub
expect 0 "show --anchor of the signed directory"
says "verification against admin/network.pub (the anchor): valid" "show says valid"
says "gemeente-diemen: role municipality, org \"Gemeente Diemen\", serial 1" "show lists the nodes"
says "broker: role broker" "show lists the broker"
says "categories: woonfraude drugs adrescheck" "show lists the categories"
says "rule 3: deny from * to role:housing category woonfraude kind query" "show lists the rules"
says "signatures (2)" "show counts the signatures"

run "$KEYS" show directory.v1 --anchor admin/network.pub --json
expect 0 "show --json"
check "show --json: version 1, 5 nodes, 3 rules, valid" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d["verification"]; assert d["version"]==1 and len(d["nodes"])==5 and len(d["rules"])==3 and v["valid"] and d["signature_count"]["valid"]==2' "$T/.out"

run "$KEYS" status --dir admin
expect 0 "status after the second signature"
says "valid: nodes and the broker accept it" "status says version 1 is valid"
says "draft of version 2: no changes since version 1" "status says nothing changed"
says "next: nothing to publish" "status says there is nothing to publish"
check "every partner is active" test "$(state_of politie-mn)" = active

# The next version: one node revoked, one rotated, a rule removed.
run "$NODE" keygen --home n-woonstad-2 --id woonstad --role housing --org "Woonstad Rotterdam" \
    --no-passphrase
expect 0 "new keys for woonstad (rotation)"
run "$KEYS" approve --dir admin n-woonstad-2/identity.request --rotate
expect 0 "approve --rotate replaces woonstad's keys"
says "listed as superseded" "rotation lists the old certificate as superseded"
run "$KEYS" revoke --dir admin belastingdienst --reason "left the covenant"
expect 0 "revoke belastingdienst"
run "$KEYS" policy --dir admin remove 3
expect 0 "policy remove 3"
check "partners: woonstad rotated, not yet published" test "$(state_of woonstad)" = "rotated unpublished"
run "$KEYS" partners --dir admin
says "left the covenant" "partners gives the reason of a revocation"
run "$KEYS" partners --dir admin --json
check "partners: belastingdienst revoked, not yet published" \
    "$PY" -c 'import json,sys; p=[r for r in json.load(open(sys.argv[1]))["partners"] if r["id"]=="belastingdienst"]; assert len(p)==1 and p[0]["state"]=="revoked" and not p[0]["published"] and p[0]["reason"]=="left the covenant"' "$T/.out"
check "partners lists no superseded certificate without --all" \
    "$PY" -c 'import json,sys; assert not [r for r in json.load(open(sys.argv[1]))["partners"] if r["state"]=="superseded"]' "$T/.out"
run "$KEYS" partners --dir admin --all --json
check "partners --all lists woonstad's superseded serial 4" \
    "$PY" -c 'import json,sys; p=[r for r in json.load(open(sys.argv[1]))["partners"] if r["state"]=="superseded"]; assert len(p)==1 and p[0]["id"]=="woonstad" and p[0]["serial"]==4' "$T/.out"
run "$KEYS" register --dir admin --category mensenhandel --purpose toezicht
run "$KEYS" unregister --dir admin --purpose handhaving
expect 0 "unregister a purpose version 1 registered"
says "version 1, already published, keeps what it registered" "it says the published version keeps it"
run "$KEYS" status --dir admin
expect 0 "status with changes since version 1"
says "draft of version 2, changes since version 1:" "status compares with version 1"
says "woonstad: serial 6 replaces serial 4" "status shows the rotation"
says "belastingdienst: serial 3: left the covenant" "status shows the revocation and its reason"
says "rule 3: deny from * to role:housing category woonfraude kind query" "status shows the removed rule"
says "categories added: mensenhandel" "status shows the added category"
says "purposes added: toezicht" "status shows the added purpose"
says "purposes removed: handhaving" "status shows the removed purpose"
says_not "partners added" "no partner was added"
says_not "threshold:" "the threshold did not change"
run "$KEYS" status --dir admin --json
check "status --json lists each change" \
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["changes"]; assert d["changed"] and d["draft_version"]==2 and d["last_published"]["valid"] and [r["id"] for r in c["partners_rotated"]]==["woonstad"] and c["partners_rotated"][0]["old_serial"]==4 and [r["id"] for r in c["partners_revoked"]]==["belastingdienst"] and [r["id"] for r in c["rules_removed"]]==[3] and c["rules_added"]==[] and c["categories_added"]==["mensenhandel"] and c["purposes_removed"]==["handhaving"] and c["partners_added"]==[] and c["threshold"]=={"from":2,"to":2}' "$T/.out"

run "$KEYS" publish --dir admin --out directory.v2 --admin 3 --valid-days 7
expect 0 "publish version 2 with administrator 3"
run "$KEYS" sign --dir admin directory.v2 --admin 1
expect 0 "sign version 2 with administrator 1"
run "$KEYS" show directory.v2 --anchor admin/network.pub
expect 0 "version 2 verifies against the anchor (same administrators)"
says "belastingdienst: serial 3, revoked" "show lists the revocation"
says "woonstad: serial 4, superseded (key rotation)" "show lists the superseded certificate"
says "woonstad: role housing, org \"Woonstad Rotterdam\", serial 6" "the rotated certificate has a new serial"
run "$KEYS" show admin/published/v2.dir --anchor admin/network.pub
expect 0 "the copy in ADMIN/published verifies as well"
check "partners: belastingdienst's revocation is published" \
    test "$(state_of belastingdienst)" = revoked
check "partners: woonstad's new keys are published" test "$(state_of woonstad)" = active

# show ADMIN/state says what the file is and what shows it.
run "$KEYS" show admin/state
expect 1 "show of the draft itself"
says "admin/state is the draft of the next version (ADMIN/state), not a published directory" \
    "show says what the file is"
says "keten-keys status --dir ADMIN" "show points to status"

done_testing
