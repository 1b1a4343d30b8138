#!/usr/bin/env bash
# The whole administrators' flow with test keys: a 2-of-3 network, four
# partners and a broker enrolled, a policy, publish, a second signature, and
# `show --anchor` that says valid.
. "$(dirname "$0")/lib.sh"

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

run "$KEYS" publish --dir admin --out directory.v1 --admin 1
expect 0 "publish version 1 signed by administrator 1"
says "published version 1" "publish names the version"
says "1 of 2 signatures; needs 1 more (keten-keys sign)" "publish says one more signature is needed"
check "publish kept a copy in ADMIN/published/v1.dir" cmp -s directory.v1 admin/published/v1.dir

run "$KEYS" show directory.v1 --anchor admin/network.pub
expect 3 "show --anchor of the half-signed version fails verification"
says "not enough administrator signatures" "show says signatures are missing"

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

done_testing
