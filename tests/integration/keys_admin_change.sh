#!/usr/bin/env bash
# Changing the administrators (docs/protocol.md section 9.3): the version that carries
# the change needs k signatures of the old set AND k' of the new one; later
# versions are signed by the new set only and verify along the chain. sign
# and show agree on who counts, and show names every signer. A new node
# starts from a version the anchor's administrators signed (the change
# version); one signed by the new set only is refused, saying so.
. "$(dirname "$0")/lib.sh"

make_network admin || done_testing
run "$KEYS" publish --dir admin --out v1.dir --admin 1
expect 0 "publish version 1"
run "$KEYS" sign --dir admin v1.dir --admin 2
expect 0 "sign version 1"

declare -A NAME=([x]="Xander Bos" [y]="Yara el Idrissi" [z]="Zoë de Graaf" [w]="Wim Kok")
for who in x y z w; do
    secret "pass-$who" "the passphrase of administrator $who"
    run "$KEYS" admin-keygen --out "$who.secret" --name "${NAME[$who]}" --passphrase-file "pass-$who"
    expect 0 "admin-keygen for new administrator $who (${NAME[$who]})"
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
says "Xander Bos (fingerprint " "set-admins names the new administrators"
check "set-admins kept the new names in ADMIN/names" grep -qF "Yara el Idrissi" admin/names
check "... and the names of the administrators who leave" grep -qF "test administrator 2" admin/names

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

# A copy with a copy of the anchor, far from ADMIN: no chain to be found.
mkdir lonely && cp admin/published/v2.dir lonely/ && cp admin/network.pub lonely/anchor.pub
# Without the chain, what the file and the anchor show: a change that lacks
# its new administrators' signatures is invalid whatever version 1 is.
run "$KEYS" show lonely/v2.dir --anchor lonely/anchor.pub
expect 3 "show without the chain: a change without its new administrators' signatures is invalid"
says "invalid whatever the earlier versions are" "it says no chain could make it valid"
says "it carries valid signatures of 0 of its own 3 administrators, and every valid version carries 2" "and what it lacks"
says_not "NOT VERIFIED" "it does not say it could not check"

run "$KEYS" sign --dir admin v2.dir --key x.secret --passphrase-file pass-x
expect 0 "new administrator x signs"
run "$KEYS" sign --dir admin v2.dir --key y.secret --passphrase-file pass-y
expect 0 "new administrator y signs"
says "administrator change: 2 of 2 signatures of the current administrators, 2 of 2 of the new administrators: complete" \
    "sign says both sets are complete"
says "valid: nodes and the broker will accept it" "the change is now valid"
says_not "a new node cannot start from this version" \
    "a new node can start from the change version (the old administrators signed it)"
run "$KEYS" show admin/published/v2.dir --anchor admin/network.pub
expect 0 "show verifies version 2 along the chain"
says "along the chain of earlier versions in admin/published): valid" "show says it used the chain"
says "signed by Xander Bos (fingerprint " "show names a new administrator who signed"
says "signed by test administrator 2 (fingerprint " "show names an old administrator who signed"

# The file as distributed (outside ADMIN, nothing beside it) with the anchor
# of ADMIN: the chain comes from ADMIN/published beside the anchor.
mkdir dist && cp v2.dir dist/directory-v2
run "$KEYS" show dist/directory-v2 --anchor admin/network.pub
expect 0 "show of the distributed copy finds the chain beside the anchor"
says "along the chain of earlier versions in admin/published): valid" \
    "it says where the chain came from"

# The same file alone with a copy of the anchor (a new partner's set-up):
# the anchor's administrators signed the change, as did the new ones, so a
# node starts from it; show says valid, and what it could not check.
mkdir alone && cp v2.dir alone/directory-v2 && cp admin/network.pub alone/network.pub
run "$KEYS" show alone/directory-v2 --anchor alone/network.pub
expect 0 "show without the chain: the complete change version verifies against the anchor alone"
says "(the anchor alone, as a new node checks its first version): valid" \
    "it says valid, and against what"
says "not checked without v1.dir .. v1.dir: that version 2 follows them" \
    "it says what only the chain could show"
says_not "NOT VERIFIED" "it no longer says it could not verify"
says "valid, by an administrator of the anchor" "the anchor's administrators' signatures count"
run "$KEYS" show alone/directory-v2 --anchor alone/network.pub --json
check "show --json: valid, method anchor, the chain not checked" \
    "$PY" -c 'import json,sys; v=json.load(open(sys.argv[1]))["verification"]; assert v["valid"] and v["method"]=="anchor" and v["chain_checked"] is False and "v1.dir" in v["not_checked"]' "$T/.out"

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
says "a new node cannot start from this version" \
    "sign says a new node cannot start from version 3 (signed by the new administrators only)"
says "give new partners the first version, or the one that changed the administrators" \
    "and which file to give new partners"
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

# ---- a change in which some administrators stay (the issue's flow) -------------
#
# Version 4 changes x, y, z into x, z, w: y leaves, w joins. y still signs
# version 4 (y is an administrator of version 3), as do x and w.
run "$KEYS" set-admins --dir admin --threshold 2 --admin-pub x.secret.pub,z.secret.pub,w.secret.pub
expect 0 "set-admins: y leaves, w joins, x and z stay"
says "Wim Kok (fingerprint " "the joining administrator is named"
run "$KEYS" publish --dir admin --out directory-v4 --key x.secret --passphrase-file pass-x
expect 0 "x publishes version 4"
says "administrator change: 1 of 2 signatures of the current administrators, 1 of 2 of the new" \
    "x counts for both sets"
run "$KEYS" sign --dir admin directory-v4 --key y.secret --passphrase-file pass-y
expect 0 "y, who leaves, signs version 4"
says "signed by Yara el Idrissi (fingerprint " "sign names the signer"
run "$KEYS" sign --dir admin directory-v4 --key w.secret --passphrase-file pass-w
expect 0 "w, who joins, signs version 4"
says "2 of 2 signatures of the current administrators, 2 of 2 of the new administrators: complete" \
    "sign: complete"
says "valid: nodes and the broker will accept it" "sign: valid"

run "$KEYS" show directory-v4 --anchor admin/network.pub
expect 0 "show agrees with sign: version 4 is valid"
says "along the chain of earlier versions in " "verified along the chain"
says "signed by Yara el Idrissi (fingerprint " "show names y"
says "valid, by an administrator of version 3" "y's signature counts: y is an administrator of version 3"
says "signed by Wim Kok (fingerprint " "show names w"
says "valid, by a new administrator" "w's signature counts as the new set's"
says "2 of 2 signatures of the current administrators, 2 of 2 of the new administrators: complete" \
    "show counts as sign does"
says_not "counts nothing" "no signature is said to count nothing"
says_not "not by an administrator listed here" "no signature is called foreign"
says_not "NOT VALID" "show does not call it invalid"
run "$KEYS" show directory-v4 --anchor admin/network.pub --json
check "show --json: valid along the chain, each signature with its name" \
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d["verification"]; s=[x["name"] for x in d["signatures"]]; assert v["valid"] and v["method"]=="chain" and s==["Xander Bos","Yara el Idrissi","Wim Kok"] and d["signature_count"]["counted"] and d["signature_count"]["complete"]' "$T/.out"

# Its twin: the same file and a copy of the anchor, with no chain anywhere.
# show cannot know whether y counts: it says so, and does not call the file
# invalid nor y's signature worthless.
mkdir far && cp directory-v4 far/ && cp admin/network.pub far/network.pub
run "$KEYS" show far/directory-v4 --anchor far/network.pub
expect 1 "without the chain show cannot check version 4 (exit 1, not 3)"
says "NOT VERIFIED, the chain of earlier versions is missing" "it says it could not verify"
says "copy v1.dir .. v3.dir (ADMIN/published/ has them) beside the file" "it says what to copy"
says "signed by key $(cut -d' ' -f1 y.secret.pub) (fingerprint " \
    "far from ADMIN there are no names, only keys and fingerprints"
says "it counts only if it is one of the administrators of version 3, not known without the chain" \
    "y's signature is unknown, not worthless"
says_not "counts nothing" "no signature is said to count nothing"
says_not "NOT VALID" "the file is not called invalid"
says_not ": complete" "no count is claimed complete"
run "$KEYS" show far/directory-v4 --anchor far/network.pub --json
check "show --json: not counted, the chain missing" \
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d["verification"]; c=d["signature_count"]; assert not v["valid"] and v["chain_missing"] and not c["counted"] and c["listed_valid"]==2 and c["other_valid"]==1' "$T/.out"
cp admin/published/v[123].dir far/
run "$KEYS" show far/directory-v4 --anchor far/network.pub
expect 0 "with the chain copied beside it, the same file verifies"

# A new node checks the directory file of its first start against the anchor
# alone: version 4, signed by new administrators only, is refused, saying
# which file to give it; twin: the version that carried the change starts.
run timeout 20 "$NODE" run --home n-gemeente-diemen --anchor admin/network.pub \
    --directory directory-v4 --broker "ipc://$T/no-broker.sock"
expect 3 "a new node given version 4 (signed by the new administrators only) is refused"
says "give it the first version, or the one that changed the administrators" \
    "it says which file a new node is given"
"$NODE" run --home n-gemeente-diemen --anchor admin/network.pub --directory admin/published/v2.dir \
    --broker "ipc://$T/no-broker.sock" >"$T/node.log" 2>&1 &
npid=$!
check "given the version that changed the administrators, the new node starts" wait_for 20 \
    grep -q 'msg="keten-node running"' "$T/node.log"
kill -TERM "$npid"
wait "$npid"
check "and stops cleanly on SIGTERM" test $? -eq 0

done_testing
