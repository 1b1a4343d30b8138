#!/usr/bin/env bash
# The real key ceremony: three administrators each make a passphrase-protected
# key, init takes their public keys, one publishes and another signs with
# their own key file; passphrases come from files and KETEN_PASSPHRASE.
. "$(dirname "$0")/lib.sh"

secret pass-a "correct horse alpha"
secret pass-b "correct horse bravo"
secret pass-c "correct horse charlie"
secret pass-wrong "not the passphrase"
secret pass-node "node passphrase"

# 1. Each administrator on their own machine.
for who in a b c; do
    run "$KEYS" admin-keygen --out "admin-$who.secret" --passphrase-file "pass-$who"
    expect 0 "admin-keygen for administrator $who"
    check "admin-$who.secret is mode 0600" test "$(stat -c %a "admin-$who.secret")" = 600
    check "admin-$who.secret.pub is mode 0644" test "$(stat -c %a "admin-$who.secret.pub")" = 644
    check "admin-$who.secret.pub is one line of base64 of 32 bytes" \
        python3 -c 'import base64,sys; t=open(sys.argv[1]).read(); assert t.endswith("\n") and t.count("\n")==1 and len(base64.b64decode(t.strip(), validate=True))==32' "admin-$who.secret.pub"
    stdout_says "public key: $(cat "admin-$who.secret.pub")" "admin-keygen prints the public key of $who"
done
check "the three administrator keys differ" \
    test "$(sort -u admin-a.secret.pub admin-b.secret.pub admin-c.secret.pub | wc -l)" = 3

run "$KEYS" admin-keygen --out admin-a.secret --passphrase-file pass-a
expect 1 "admin-keygen refuses to overwrite a key"
says "already exists" "it says the key file already exists"

run "$KEYS" admin-keygen --out admin-x.secret
expect 1 "admin-keygen without a passphrase and without a terminal fails"
says "passphrase needed" "it says a passphrase is needed"
check "no key file is left behind" test ! -e admin-x.secret -a ! -e admin-x.secret.pub

cp pass-a pass-open && chmod 644 pass-open
run "$KEYS" admin-keygen --out admin-x.secret --passphrase-file pass-open
expect 1 "a passphrase file readable by others is refused"
says "chmod 600" "it says how to fix the passphrase file's mode"
check "no key file is left behind" test ! -e admin-x.secret

KETEN_PASSPHRASE="outsider passphrase" run "$KEYS" admin-keygen --out outsider.secret
expect 0 "admin-keygen with KETEN_PASSPHRASE"

# 2. The administrators exchange public keys; one of them runs init.
run "$KEYS" init --dir admin --network riec-ceremony --threshold 2 \
    --admin-pub admin-a.secret.pub --admin-pub admin-b.secret.pub,admin-c.secret.pub
expect 0 "init with three --admin-pub keys (one option repeated, one comma list)"
check "init --admin-pub writes no secret keys into ADMIN" test -z "$(ls admin | grep secret)"
anchor_sum=$(sha256sum admin/network.pub | cut -d' ' -f1)
says "$anchor_sum" "init prints the sha256 to compare out of band"
run "$KEYS" show admin/network.pub --json
check "network.pub lists the three public keys in order, threshold 2" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); k=[open(f).read().strip() for f in sys.argv[2:]]; assert d["admins"]==k and d["threshold"]==2' \
    "$T/.out" admin-a.secret.pub admin-b.secret.pub admin-c.secret.pub

run "$KEYS" register --dir admin --category woonfraude --purpose riec-convenant-2024/art-5
expect 0 "register"

# 3. A partner and the broker enrol, their keys protected by passphrases.
run "$NODE" keygen --home n-diemen --id gemeente-diemen --role municipality \
    --org "Gemeente Diemen" --passphrase-file pass-node
expect 0 "keten-node keygen with --passphrase-file"
check "keygen with a passphrase does not warn" test ! -s "$T/.err"
run "$NODE" keygen --home n-diemen --id gemeente-diemen --role municipality \
    --org "Gemeente Diemen" --passphrase-file pass-node
expect 1 "keygen refuses to overwrite identity.secret"
says "never overwritten" "it says keys are never overwritten"
KETEN_PASSPHRASE="broker passphrase" run "$BROKER" keygen --home broker
expect 0 "keten-broker keygen with KETEN_PASSPHRASE"
run "$KEYS" approve --dir admin n-diemen/identity.request
expect 0 "approve the partner"
run "$KEYS" approve --dir admin broker/identity.request
expect 0 "approve the broker"
run "$KEYS" policy --dir admin allow --from role:municipality --to '*' --category woonfraude
expect 0 "a policy rule"

# 4. Administrator a publishes with their key file.
run "$KEYS" publish --dir admin --out directory --key admin-a.secret
expect 1 "publish with a protected key and no passphrase fails"
says "passphrase needed" "it says a passphrase is needed"
run "$KEYS" publish --dir admin --out directory --key admin-a.secret --passphrase-file pass-a
expect 0 "publish --key with --passphrase-file"
says "1 of 2 signatures; needs 1 more (keten-keys sign)" "publish asks for one more signature"

# 5. Administrator b signs; first with a wrong passphrase.
before=$(fingerprint admin)
dir_before=$(sha256sum directory)
run "$KEYS" sign --dir admin directory --key admin-b.secret --passphrase-file pass-wrong
expect 1 "sign with a wrong passphrase"
says "wrong passphrase: the passphrase does not open admin-b.secret" "it says the passphrase is wrong"
unchanged admin "$before" "wrong passphrase"
check "the directory file is unchanged after a wrong passphrase" test "$(sha256sum directory)" = "$dir_before"
run "$KEYS" sign --dir admin directory --key admin-b.secret --passphrase-file pass-b
expect 0 "sign --key with the right passphrase"
says "valid: nodes and the broker will accept it" "the version is now valid"
KETEN_PASSPHRASE="correct horse charlie" run "$KEYS" sign --dir admin directory --key admin-c.secret
expect 0 "a third administrator signs with KETEN_PASSPHRASE"
says "3 of 2 signatures: complete" "three valid signatures are counted"

run "$KEYS" show directory --anchor admin/network.pub
expect 0 "show --anchor says the ceremony's directory is valid"
says "valid" "show says valid"
cp admin/network.pub elsewhere.pub
run "$KEYS" show directory --anchor elsewhere.pub
expect 0 "a copy of network.pub handed to a partner verifies it too"

# 6. A demo network whose generated administrator keys share one passphrase.
run "$KEYS" init --dir demo --network demo --threshold 2 --admins 2 --passphrase-file pass-a
expect 0 "init --admins 2 with a passphrase file"
check "init --admins with a passphrase does not warn" test ! -s "$T/.err"
run "$KEYS" publish --dir demo --out demo.dir --admin 1
expect 1 "a generated key with a passphrase does not open without one"
says "passphrase needed" "it says a passphrase is needed"
run "$KEYS" publish --dir demo --out demo.dir --admin 1 --passphrase-file pass-a
expect 0 "publish --admin 1 with the passphrase"
KETEN_PASSPHRASE="correct horse alpha" run "$KEYS" sign --dir demo demo.dir --admin 2
expect 0 "sign --admin 2 with KETEN_PASSPHRASE"
run "$KEYS" show demo.dir --anchor demo/network.pub
expect 0 "the demo directory is valid"

done_testing
