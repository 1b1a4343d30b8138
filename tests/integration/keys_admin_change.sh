#!/usr/bin/env bash
# Changing the administrators (docs/protocol.md section 9.3): the version that carries
# the change needs k signatures of the old set AND k' of the new one; later
# versions are signed by the new set only and verify along the chain.
. "$(dirname "$0")/lib.sh"

make_network admin || done_testing
run "$KEYS" publish --dir admin --out v1.dir --admin 1
expect 0 "publish version 1"
run "$KEYS" sign --dir admin v1.dir --admin 2
expect 0 "sign version 1"

for who in x y z; do
    secret "pass-$who" "passphrase of $who"
    run "$KEYS" admin-keygen --out "$who.secret" --passphrase-file "pass-$who"
    expect 0 "admin-keygen for new administrator $who"
done

before=$(fingerprint admin)
run "$KEYS" set-admins --dir admin --threshold 2 --admin-pub x.secret.pub,y.secret.pub,x.secret.pub
expect 1 "set-admins with the same key twice"
says "holds the same administrator key" "it names the duplicate"
unchanged admin "$before" "set-admins with a duplicate"
run "$KEYS" set-admins --dir admin --threshold 0 --admin-pub x.secret.pub,y.secret.pub
expect 2 "set-admins with threshold 0"
unchanged admin "$before" "set-admins threshold 0"
run "$KEYS" set-admins --dir admin --threshold 3 --admin-pub x.secret.pub,y.secret.pub
expect 2 "set-admins with threshold 3 of 2"
unchanged admin "$before" "set-admins threshold 3 of 2"

run "$KEYS" set-admins --dir admin --threshold 2 --admin-pub x.secret.pub --admin-pub y.secret.pub,z.secret.pub
expect 0 "set-admins to three new administrators, threshold 2"
says "it needs 2 signatures of the current administrators and 2 of the new ones" \
    "set-admins says what the change needs"

run "$KEYS" publish --dir admin --out v2.dir --admin 1
expect 0 "publish version 2 (the change) with an old administrator"
says "administrator change: 1 of 2 signatures of the current administrators, 0 of 2 of the new" \
    "publish counts old and new signatures separately"
run "$KEYS" sign --dir admin v2.dir --admin 2
expect 0 "a second old administrator signs"
says "needs 0 more of the current and 2 more of the new administrators" \
    "sign says the new administrators are still missing"
says "not yet valid" "an administrator change signed only by the old set is not valid"

run "$KEYS" show admin/published/v2.dir --anchor admin/network.pub
expect 3 "show: an administrator change signed only by the old set"
says "changes the administrators or threshold and carries signatures of 0 of its new administrators" \
    "show says the new administrators' signatures are missing"

mkdir lonely && cp admin/published/v2.dir lonely/
run "$KEYS" show lonely/v2.dir --anchor admin/network.pub
expect 1 "show cannot verify an administrator change without the chain"
says "cannot verify version 2 without the chain" "it says the chain is missing and where to find it"

run "$KEYS" sign --dir admin v2.dir --key x.secret --passphrase-file pass-x
expect 0 "new administrator x signs"
run "$KEYS" sign --dir admin v2.dir --key y.secret --passphrase-file pass-y
expect 0 "new administrator y signs"
says "administrator change: 2 of 2 signatures of the current administrators, 2 of 2 of the new administrators: complete" \
    "sign says both sets are complete"
says "valid: nodes and the broker will accept it" "the change is now valid"
run "$KEYS" show admin/published/v2.dir --anchor admin/network.pub
expect 0 "show verifies version 2 along the chain"
says "along the chain of earlier versions): valid" "show says it used the chain"

# Version 3 belongs to the new administrators.
run "$KEYS" register --dir admin --category mensenhandel
before=$(fingerprint admin)
run "$KEYS" publish --dir admin --out v3.dir --admin 1
expect 1 "a former administrator cannot publish version 3"
says "is not an administrator of version 2" "it says the key is no longer an administrator"
unchanged admin "$before" "publish by a former administrator"
run "$KEYS" publish --dir admin --out v3.dir --key z.secret --passphrase-file pass-z
expect 0 "new administrator z publishes version 3"
says "1 of 2 signatures; needs 1 more" "version 3 needs the new threshold only"
before=$(fingerprint admin)
run "$KEYS" sign --dir admin v3.dir --admin 2
expect 1 "a former administrator cannot sign version 3"
unchanged admin "$before" "sign by a former administrator"
run "$KEYS" sign --dir admin v3.dir --key x.secret --passphrase-file pass-x
expect 0 "new administrator x signs version 3"
says "valid: nodes and the broker will accept it" "version 3 is valid"
run "$KEYS" show admin/published/v3.dir --anchor admin/network.pub --json
expect 0 "show verifies version 3 along the chain v1, v2"
check "show --json says chain, valid" \
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["verification"]; assert v["valid"] and v["method"]=="chain"' "$T/.out"

# A broken link: version 2 in the chain replaced by its half-signed state.
mkdir broken && cp admin/published/v1.dir broken/ && cp lonely/v2.dir broken/ \
    && cp admin/published/v3.dir broken/
run "$KEYS" show broken/v3.dir --anchor admin/network.pub
expect 3 "a chain whose version 2 lacks the new administrators' signatures"
says "the chain breaks at broken/v2.dir" "show names the broken link"

before=$(fingerprint admin)
run "$KEYS" sign --dir admin v2.dir --key z.secret --passphrase-file pass-z
expect 3 "signing version 2 after version 3 was published (rollback)"
unchanged admin "$before" "rollback after an administrator change"

done_testing
