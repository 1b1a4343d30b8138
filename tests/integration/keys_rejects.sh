#!/usr/bin/env bash
# Reject twins of keten-keys: every forged, tampered, replayed or mistaken
# input is refused with its own message and exit code, and a refused command
# leaves ADMIN exactly as it was.
. "$(dirname "$0")/lib.sh"

# replace FILE OLD NEW: replace the bytes OLD by NEW (same length) in FILE.
replace() {
    python3 - "$@" <<'PY'
import sys
path, old, new = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
assert len(old) == len(new)
data = open(path, "rb").read()
assert data.count(old) >= 1, "pattern not found"
open(path, "wb").write(data.replace(old, new, 1))
PY
}

make_network admin || { done_testing; }

# ---- requests ---------------------------------------------------------------

cp n-politie-mn/identity.request tampered.request
python3 -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[-1]^=1; open(p,"wb").write(d)' \
    tampered.request
before=$(fingerprint admin)
run "$KEYS" approve --dir admin tampered.request
expect 3 "a request whose proof of possession was tampered"
says "proof of possession in tampered.request does not verify" "it names the failed proof of possession"
unchanged admin "$before" "tampered proof"

cp n-politie-mn/identity.request renamed.request
replace renamed.request politie-mn politie-xx
run "$KEYS" approve --dir admin renamed.request
expect 3 "a request whose id was edited after signing"
says "does not verify" "the edited id breaks the proof of possession"
unchanged admin "$before" "edited request id"

head -c 40 n-politie-mn/identity.request >truncated.request
run "$KEYS" approve --dir admin truncated.request
expect 1 "a truncated request"
unchanged admin "$before" "truncated request"

run "$KEYS" approve --dir admin n-politie-mn/identity.request
expect 1 "a second request for an enrolled id (the same request again)"
says "already has a certificate" "it says the id is enrolled"
says "use --rotate" "it points to --rotate"
unchanged admin "$before" "duplicate id"

run "$NODE" keygen --home n-politie-2 --id politie-mn --role police --org "Politie" --no-passphrase
run "$KEYS" approve --dir admin n-politie-2/identity.request
expect 1 "a new request with new keys for an enrolled id"
says "use --rotate" "it says to use --rotate to replace the keys"
unchanged admin "$before" "duplicate id, new keys"

run "$TOOL" request n-gemeente-diemen/identity.secret gemeente-twee reused.request
check "the test tool made a valid request that reuses gemeente-diemen's keys" test "$RC" -eq 0
run "$KEYS" approve --dir admin reused.request
expect 1 "a request reusing another certificate's keys under a new id"
says "signing key is already used by the certificate of gemeente-diemen" "it names the key and its owner"
unchanged admin "$before" "reused key"

run "$KEYS" approve --dir admin n-gemeente-diemen/identity.request --rotate
expect 1 "a rotation to the very same keys"
says "already used by the certificate of gemeente-diemen" "rotation to the same keys is key reuse"
unchanged admin "$before" "rotation to the same keys"

run "$KEYS" approve --dir admin n-politie-2/identity.request --rotate --valid-days 0
expect 2 "--valid-days 0 is a usage error"
unchanged admin "$before" "valid-days 0"

run "$BROKER" keygen --home broker-2 --id broker-2 --no-passphrase
run "$KEYS" approve --dir admin broker-2/identity.request
expect 1 "a second broker"
says "already has a broker" "it says the network has a broker"
unchanged admin "$before" "second broker"

run "$KEYS" revoke --dir admin nobody --reason "test"
expect 1 "revoking an id that is not enrolled"
says "nobody has no current certificate" "it says the id has no certificate"
unchanged admin "$before" "revoke unknown"

run "$KEYS" policy --dir admin allow --from '*' --to '*' --category mensenhandel
expect 1 "a rule with an unregistered category"
says "category 'mensenhandel' is not registered" "it says the category is not registered"
unchanged admin "$before" "unregistered category"

run "$KEYS" policy --dir admin allow --from 'role:Police' --to '*' --category drugs
expect 1 "a rule with a bad party"
unchanged admin "$before" "bad party"

run "$KEYS" policy --dir admin remove 99
expect 1 "removing a rule that does not exist"
unchanged admin "$before" "remove unknown rule"

# ---- publishing and signing -------------------------------------------------

run "$KEYS" publish --dir admin --out v1.dir --admin 9
expect 1 "publish with --admin 9 of 3"
says "admin-9.secret does not exist" "it names the missing key file"
unchanged admin "$before" "missing admin key"
check "no directory file was written" test ! -e v1.dir

run "$KEYS" publish --dir admin --out v1.dir --key n-woonstad/identity.secret
expect 1 "publish signed with a node's key"
says "not an administrator's key" "it says the key is not an administrator's"
unchanged admin "$before" "publish with a non-administrator key"

run "$KEYS" admin-keygen --out outsider.secret --passphrase-file /dev/null
secret pass-out "the outsider keeps this one"
run "$KEYS" admin-keygen --out outsider.secret --passphrase-file pass-out
run "$KEYS" publish --dir admin --out v1.dir --key outsider.secret --passphrase-file pass-out
expect 1 "publish signed with an administrator key of no administrator of this network"
says "is not an administrator of this network" "it says the key is not in network.pub"
unchanged admin "$before" "publish with an outsider's key"

run "$KEYS" publish --dir admin --out admin/published/v0.dir --admin 1
expect 1 "publish refuses --out inside ADMIN"
says "lies inside admin" "it says to write the file elsewhere"
unchanged admin "$before" "publish into ADMIN"

touch not-a-directory.txt
run "$KEYS" publish --dir admin --out not-a-directory.txt --admin 1
expect 1 "publish does not overwrite a file that is not a directory"
says "is not a directory file" "it says why"
unchanged admin "$before" "publish over another file"

cp -p admin/state state-before-v1
run "$KEYS" publish --dir admin --out v1.dir --admin 1
expect 0 "publish version 1 with administrator 1"
says "published version 1 of network 'riec-test' to v1.dir" "it says what it published, and where"
cp v1.dir half.dir

# An ADMIN whose state was restored from a backup older than its last publish
# must not publish a second, different version 1. This backup holds exactly
# the draft that was published as version 1 (what a publish stopped before
# it saved the state leaves, keys_crash.sh): the version is taken into the
# state, which becomes the very state that publish saved; a backup with
# other contents is refused (keys_adminwalk.sh).
cp -p admin/state state-after-v1 && cp -p state-before-v1 admin/state
run "$KEYS" publish --dir admin --out other-v1.dir --admin 2
expect 1 "publishing from the state before version 1 was published"
says "note: version 1 (admin/published/v1.dir) was published, but the command was stopped before it saved admin/state; it is now taken into the state, and the next version is 2" \
    "it takes the published version 1 into the state and says so"
says "version 1 has 1 of 2 signatures" "then refuses to publish over version 1, which lacks a signature"
check "the state is the one publish saved, byte for byte" cmp -s state-after-v1 admin/state
check "no second version 1 was written" test ! -e other-v1.dir
check "version 1 in ADMIN is the one published" cmp -s v1.dir admin/published/v1.dir

run "$KEYS" show half.dir --anchor admin/network.pub
expect 3 "a directory with 1 of 2 signatures does not verify"
says "1 distinct administrators; 2 of the previous administrators are needed" \
    "it says how many signatures it has and needs"

before=$(fingerprint admin)
file_before=$(sha256sum v1.dir)
run "$KEYS" sign --dir admin v1.dir --admin 1
expect 1 "the same administrator signing twice"
says "has already signed version 1" "it says that administrator already signed"
unchanged admin "$before" "second signature by the same key"
check "the directory file is unchanged" test "$(sha256sum v1.dir)" = "$file_before"

run "$KEYS" sign --dir admin v1.dir --key n-politie-mn/identity.secret
expect 1 "a signature from a node's key"
says "is the key of node politie-mn (role police), not an administrator's key" \
    "it says the key is a node's"
unchanged admin "$before" "non-administrator signature"

run "$KEYS" sign --dir admin v1.dir --key outsider.secret --passphrase-file pass-out
expect 1 "a signature from an administrator key of another network"
unchanged admin "$before" "outsider signature"

cp admin/admin-3.secret open.secret && chmod 644 open.secret
run "$KEYS" sign --dir admin v1.dir --key open.secret
expect 1 "a key file readable by others"
says "chmod 600" "it says how to fix the key file's mode"
unchanged admin "$before" "readable key file"

# A public key given as --key: what the file is comes before its mode.
check "admin-3.pub is readable by others, as a public key is" \
    test "$(stat -c %a admin/admin-3.pub)" = 644
run "$KEYS" sign --dir admin v1.dir --key admin/admin-3.pub
expect 1 "sign with a public key file instead of the secret key"
says "admin/admin-3.pub is not a keten secret key file: it holds a public key (a .pub file)" \
    "it says the file is a public key"
says_not "chmod" "it says nothing about the file's mode"
unchanged admin "$before" "sign with a public key"
cp admin/admin-3.pub pub-copy && chmod 600 pub-copy
run "$KEYS" sign --dir admin v1.dir --key pub-copy
expect 1 "a public key file with mode 0600 is still no secret key"
says "it holds a public key" "the same message whatever the mode"
echo "not a key at all" >other.txt
run "$KEYS" sign --dir admin v1.dir --key other.txt
expect 1 "sign with a text file that is no key"
says "other.txt is not a keten secret key file (no KETENSK1 magic)" "it says the file is no key file"
says_not "chmod" "it says nothing about the file's mode either"

cp half.dir forged.dir
run "$TOOL" sign-directory forged.dir n-politie-mn/identity.secret
check "the test tool added a node's signature to a copy" test "$RC" -eq 0
run "$KEYS" show forged.dir --anchor admin/network.pub
expect 3 "a node's signature does not count towards the threshold"
says "not by an administrator: counts nothing" "show marks the node's signature as not counting"

run "$KEYS" sign --dir admin forged.dir --admin 2
expect 0 "sign drops the node's signature and adds administrator 2's"
says "dropped 1 signature(s)" "sign says it dropped the foreign signature"
says "2 of 2 signatures: complete" "the version is complete with two administrators"
cp forged.dir v1.dir
run "$KEYS" show v1.dir --anchor admin/network.pub
expect 0 "version 1 now verifies"
says "(the anchor): valid" "show says it is valid against the anchor"

cp v1.dir edited.dir
replace edited.dir "Politie Midden-Nederland" "Politie Midden-Nederlant"
run "$KEYS" show edited.dir --anchor admin/network.pub
expect 3 "a hand-edited byte in a signed directory"
says "does not verify: the document was changed after it was signed" "show says the document was changed"
before=$(fingerprint admin)
run "$KEYS" sign --dir admin edited.dir --admin 3
expect 1 "sign refuses an edited copy of the published version"
says "is not the document published from admin" "it says the document is not the published one"
unchanged admin "$before" "sign an edited copy"

python3 -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[1]^=0x40; open(p,"wb").write(d)' edited.dir
run "$KEYS" show edited.dir --anchor admin/network.pub
expect 3 "a directory whose framing was damaged does not verify"

# Another network's anchor; an impostor anchor with this network's name.
run "$KEYS" init --dir other --network other-net --threshold 1 --admins 1 --no-passphrase
run "$KEYS" show v1.dir --anchor other/network.pub
expect 3 "an anchor of another network"
says "the anchor is for network 'other-net'" "it names both networks"
run "$KEYS" init --dir impostor --network riec-test --threshold 1 --admins 1 --no-passphrase
run "$KEYS" show v1.dir --anchor impostor/network.pub
expect 3 "an anchor with the same network name but other administrators"
says "not enough administrator signatures" "it says no administrator of that anchor signed"
run "$KEYS" publish --dir other --out other.dir --admin 1
before=$(fingerprint admin)
run "$KEYS" sign --dir admin other.dir --admin 1
expect 3 "sign refuses a directory of another network"
says "is a directory of network 'other-net'" "it names the other network"
unchanged admin "$before" "another network's directory"

# Expiry (KETEN_TEST_NOW_MS is honoured by show only, for tests).
now_ms=$(($(date +%s) * 1000))
KETEN_TEST_NOW_MS=$((now_ms + 15 * 86400 * 1000)) run "$KEYS" show v1.dir --anchor admin/network.pub
expect 3 "an expired directory (15 days later)"
says "expired" "it says the directory expired"
says "KETEN_TEST_NOW_MS is set" "the test clock is announced"
KETEN_TEST_NOW_MS=$((now_ms + 13 * 86400 * 1000)) run "$KEYS" show v1.dir --anchor admin/network.pub
expect 0 "the same directory 13 days later is still valid"
says "(the anchor): valid" "show says valid"
KETEN_TEST_NOW_MS=$((now_ms - 86400 * 1000)) run "$KEYS" show v1.dir --anchor admin/network.pub
expect 3 "a directory issued in the future (one day early)"
says "not yet valid" "it says not yet valid"

# Rollback: once version 2 exists, version 1 may not be signed again, and
# show says a newer version lies beside it.
run "$KEYS" revoke --dir admin woonstad --reason "contract ended"
expect 0 "revoke woonstad (a change for version 2)"
run "$KEYS" publish --dir admin --out v2.dir --admin 2
expect 0 "publish version 2"
says "published version 2 of network 'riec-test' to v2.dir" "it says it published version 2"
run "$KEYS" sign --dir admin v2.dir --admin 3
expect 0 "sign version 2"
says "2 of 2 signatures: complete" "version 2 is complete"
cp half.dir old-half.dir
before=$(fingerprint admin)
run "$KEYS" sign --dir admin old-half.dir --admin 2
expect 3 "signing version 1 after version 2 was published (rollback)"
says "signing an old version could help roll the network back" "it says why an old version is refused"
unchanged admin "$before" "rollback"
run "$KEYS" show admin/published/v1.dir --anchor admin/network.pub
expect 0 "version 1 on its own still verifies (show checks one file)"
says "version 2 lies beside it" "show points out the newer version"
says "refuses this one as a rollback" "show says nodes refuse it as a rollback"

# ---- publishing over an unsigned version; publishing nothing new --------------

run "$KEYS" init --dir pub --network riec-pub --threshold 2 --admins 2 --no-passphrase
expect 0 "a second network, pub"
run "$KEYS" register --dir pub --category woonfraude
expect 0 "register woonfraude in pub"
run "$KEYS" publish --dir pub --out directory-v1 --admin 1
expect 0 "publish version 1 (1 of 2 signatures)"
says "1 of 2 signatures; needs 1 more" "it says version 1 needs one more signature"
before=$(fingerprint pub)
file_before=$(sha256sum directory-v1)
run "$KEYS" publish --dir pub --out directory-v1 --admin 1
expect 1 "publish again while version 1 has 1 of 2 signatures"
says "version 1 has 1 of 2 signatures; needs 1 more: run keten-keys sign --dir pub pub/published/v1.dir with another administrator's key first" \
    "it says what version 1 lacks and what to do"
says "add --force" "it names the way to publish all the same"
unchanged pub "$before" "a second publish over an unsigned version"
check "the directory file is unchanged" test "$(sha256sum directory-v1)" = "$file_before"
check "no version 2 was made" test ! -e pub/published/v2.dir
run "$KEYS" register --dir pub --category drugs
before=$(fingerprint pub)
run "$KEYS" publish --dir pub --out directory-v2 --admin 1
expect 1 "a draft with changes does not publish over an unsigned version either"
unchanged pub "$before" "publish with changes over an unsigned version"
check "no directory-v2 was written" test ! -e directory-v2
run "$KEYS" publish --dir pub --out directory-v2 --admin 1 --force
expect 0 "publish --force over an unsigned version"
says "the previous version 1 is incomplete" "it warns that version 1 stays incomplete"
says "published version 2" "version 2 was published"
run "$KEYS" sign --dir pub directory-v2 --admin 2
expect 0 "sign version 2"
says "2 of 2 signatures: complete" "version 2 of pub is complete"

before=$(fingerprint pub)
run "$KEYS" publish --dir pub --out directory-v3 --admin 1
expect 1 "publish with nothing changed since version 2"
says "nothing changed since version 2" "it says nothing changed"
says "run publish again with --refresh" "it says how to renew the expiry"
unchanged pub "$before" "publish of an unchanged draft"
check "no directory-v3 was written" test ! -e directory-v3
run "$KEYS" publish --dir pub --out directory-v3 --admin 1 --refresh --json
expect 0 "publish --refresh of an unchanged draft"
check "the refresh is version 3, signed by test administrator 1" \
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["version"]==3 and d["signed_by"]["name"]=="test administrator 1" and d["signed_by"]["fingerprint"]' "$T/.out"
run "$KEYS" sign --dir pub directory-v3 --admin 2 --json
expect 0 "sign the refreshed version 3"
check "sign --json names the signer" \
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["valid"] and d["signed_by"]["name"]=="test administrator 2"' "$T/.out"
run "$KEYS" show directory-v3 --anchor pub/network.pub --json
check "version 3 holds the same values as version 2" \
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["version"]==3 and d["categories"]==["woonfraude","drugs"] and d["verification"]["valid"]' "$T/.out"
run "$KEYS" register --dir pub --category mensenhandel
before=$(fingerprint pub)
run "$KEYS" publish --dir pub --out directory-v4 --admin 1 --refresh
expect 1 "--refresh with changes in the draft"
says "this draft changes things since version 3" "it says the draft has changes"
unchanged pub "$before" "a refresh that would publish changes"
run "$KEYS" publish --dir pub --out directory-v4 --admin 1
expect 0 "the changes publish without --refresh"
says "published version 4 of network 'riec-pub' to directory-v4" "as version 4"

# ---- init -------------------------------------------------------------------

before=$(fingerprint admin)
run "$KEYS" init --dir admin --network riec-test --threshold 2 --admins 3 --no-passphrase
expect 1 "init over an existing ADMIN"
says "ADMIN directory admin already exists; choose another --dir" "it says ADMIN exists"
unchanged admin "$before" "init over ADMIN"

run "$KEYS" init --dir dup --network riec-test --threshold 2 \
    --admin-pub admin/admin-1.pub,admin/admin-2.pub --admin-pub admin/admin-1.pub
expect 1 "init with the same administrator key twice"
says "holds the same administrator key as admin/admin-1.pub" "it names the duplicate key file"
check "nothing was created" test ! -e dup

run "$KEYS" init --dir t0 --network riec-test --threshold 0 --admin-pub admin/admin-1.pub,admin/admin-2.pub
expect 2 "init with threshold 0"
says "--threshold 0 is outside 1..2" "it gives the allowed range"
check "nothing was created" test ! -e t0

run "$KEYS" init --dir t3 --network riec-test --threshold 3 --admin-pub admin/admin-1.pub,admin/admin-2.pub
expect 2 "init with threshold 3 of 2"
says "--threshold 3 is outside 1..2" "it gives the allowed range"
check "nothing was created" test ! -e t3

run "$KEYS" init --dir t4 --network riec-test --threshold 4 --admins 3 --no-passphrase
expect 2 "init --admins 3 with threshold 4"
check "nothing was created" test ! -e t4

run "$KEYS" init --dir bad --network riec-test --threshold 1 --admin-pub admin/state
expect 1 "init with a file that is not a public key"
says "is not an administrator's public key" "it says the file is not a public key"
check "nothing was created" test ! -e bad

# The control: a command that succeeds does change the fingerprint.
before=$(fingerprint admin)
run "$KEYS" register --dir admin --purpose controle
expect 0 "register one more purpose"
says "handhaving controle" "register lists the purpose it registered"
check "a successful command changes ADMIN's fingerprint" test "$(fingerprint admin)" != "$before"

done_testing
