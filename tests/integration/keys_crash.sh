#!/usr/bin/env bash
# keten-keys stopped (power loss, kill -9) between any two of its file
# writes, or in the middle of one: the test hook KETEN_TEST_CRASH_WRITE=N
# kills the command with SIGKILL right after its N-th file write, N-partial
# half-way through it. After each stop the next command must either finish
# the interrupted step itself and say so, or refuse with a message naming
# the command that repairs it; never lock the ADMIN folder.
#   - publish stopped after writing ADMIN/published/vN.dir, before the
#     state: the next command takes that version into the state (one line),
#     the version numbers go on from it, and no --out file was written;
#   - publish stopped after the state: --out is missing, the copy is there;
#   - a write stopped half-way leaves the old file whole;
#   - sign stopped between FILE and the copy: signing again completes both;
#   - init stopped anywhere: the unfinished folder is named, with rm -r;
#   - admin-keygen stopped: never a part of a key; a key without its .pub
#     is never overwritten (choose another --out);
#   - every writing command (register, approve, revoke, policy, set-admins,
#     publish, sign) stopped at each write: status works afterwards;
#   - refused, with ADMIN unchanged: a planted vN.dir that is damaged,
#     unsigned, signed by a key that is no administrator's, validly signed
#     with other contents than the draft, or two versions ahead.
. "$(dirname "$0")/lib.sh"

KILLED=137
# finished: the last command ran to the end (exit 0), or refused because its
# work was done already: a publish taken into the state asks for the second
# signature first, a completed sign has the signature, a revocation is in.
finished() {
    [ "$RC" -eq 0 ] \
        || grep -qE "has already signed|already has a certificate|not enough administrator signatures|no current certificate" \
            "$T/.all"
}
crash() { # crash N CMD...: run CMD with the hook armed at write N
    local n=$1
    shift
    KETEN_TEST_CRASH_WRITE=$n run "$@"
}

run "$NODE" keygen --home n-a --id gemeente-a --role municipality --org "Gemeente A" --no-passphrase
expect 0 "keygen a partner"
run "$NODE" keygen --home n-b --id politie-b --role police --org "Politie B" --no-passphrase
expect 0 "keygen a second partner"
run "$KEYS" init --dir admin --network riec-test --threshold 2 --admins 3 --no-passphrase
expect 0 "init a 2-of-3 network"
run "$KEYS" register --dir admin --category woonfraude
expect 0 "register a category"
run "$KEYS" approve --dir admin n-a/identity.request
expect 0 "approve a partner"

# ---- publish stopped after its copy in ADMIN, before the state ---------------------------

cp -p admin/state state-before
crash 1 "$KEYS" publish --dir admin --out v1.dir --admin 1
expect "$KILLED" "publish killed after its first write"
check "the copy admin/published/v1.dir was written" test -s admin/published/v1.dir
check "the state was not saved" cmp -s state-before admin/state
check "no --out file: nothing outside ADMIN holds a version ADMIN does not know" test ! -e v1.dir
run "$KEYS" status --dir admin
expect 0 "the next command works"
says "note: version 1 (admin/published/v1.dir) was published, but the command was stopped before it saved admin/state; it is now taken into the state, and the next version is 2" \
    "it says in one line that it took the interrupted publish into the state"
check "the state was saved" lacks cmp -s state-before admin/state
run "$KEYS" status --dir admin
expect 0 "status again"
says_not "note: version 1" "the note comes once"
cp admin/published/v1.dir v1.dir
run "$KEYS" sign --dir admin v1.dir --admin 2
expect 0 "a second administrator signs the adopted version 1"
says "valid: nodes and the broker will accept it" "version 1 is valid"
run "$KEYS" show v1.dir --anchor admin/network.pub
expect 0 "version 1 verifies against the anchor"
run "$KEYS" register --dir admin --purpose handhaving
expect 0 "the draft is edited"
says "next directory version 2" "it is the draft of version 2: no version number is used twice"

# ---- publish stopped after the state, before --out -----------------------------------------

crash 2 "$KEYS" publish --dir admin --out v2.dir --admin 1
expect "$KILLED" "publish killed after its second write (the state)"
check "no --out file" test ! -e v2.dir
check "the copy is there" test -s admin/published/v2.dir
run "$KEYS" status --dir admin
expect 0 "the next command works"
says_not "note:" "nothing needed completing"
run "$KEYS" register --dir admin --category drugs
says "next directory version 3" "the state has taken version 2"
cp admin/published/v2.dir v2.dir
run "$KEYS" sign --dir admin v2.dir --admin 2
expect 0 "the copy from ADMIN is signed and given out"

# ---- a write stopped half-way ------------------------------------------------------------

before=$(fingerprint admin)
crash 1-partial "$KEYS" publish --dir admin --out v3.dir --admin 1
expect "$KILLED" "publish killed half-way through writing its copy"
check "no admin/published/v3.dir" test ! -e admin/published/v3.dir
check "only a temporary file was left beside it" test -n "$(ls admin/published/ | grep '^v3\.dir\.tmp')"
rm -f admin/published/v3.dir.tmp*
unchanged admin "$before" "a copy written half-way"
before=$(fingerprint admin)
crash 2-partial "$KEYS" publish --dir admin --out v3.dir --admin 1
expect "$KILLED" "publish killed half-way through writing the state"
run "$KEYS" status --dir admin
expect 0 "the next command works"
says "note: version 3" "it takes version 3 into the state"
says "the next version is 4" "and goes on from it"

# The twin: an uninterrupted publish says no such thing.
cp admin/published/v3.dir v3.dir
run "$KEYS" sign --dir admin v3.dir --admin 2
expect 0 "version 3 signed"
run "$KEYS" approve --dir admin n-b/identity.request
run "$KEYS" publish --dir admin --out v4.dir --admin 1
expect 0 "twin: publish runs to the end"
says_not "note:" "and finds nothing to complete"
check "it wrote --out" test -s v4.dir
run "$KEYS" status --dir admin
says_not "note:" "neither does the next command"

# ---- sign stopped between FILE and the copy -----------------------------------------------

crash 1 "$KEYS" sign --dir admin v4.dir --admin 2
expect "$KILLED" "sign killed after writing FILE"
check "FILE and the copy differ" lacks cmp -s v4.dir admin/published/v4.dir
run "$KEYS" sign --dir admin v4.dir --admin 2
expect 0 "the same administrator signs again"
says "note: administrator 2" "it says the earlier sign was stopped"
says "the signatures are now written into both" "and that it completed it"
says "valid: nodes and the broker will accept it" "version 4 is valid"
check "FILE and the copy are the same" cmp -s v4.dir admin/published/v4.dir
run "$KEYS" sign --dir admin v4.dir --admin 2
expect 1 "twin: a third time is a second signature by the same key"
says "has already signed version 4" "it says so"

# ---- planted versions: refused, ADMIN unchanged -------------------------------------------

# A copy of ADMIN publishes versions 5 and 6 of other contents, validly
# signed by administrator 1 of this network.
cp -a admin other
run "$KEYS" register --dir other --category ondermijning
run "$KEYS" publish --dir other --out o5.dir --admin 1
expect 0 "another draft published as version 5 (signed by administrator 1)"
run "$KEYS" sign --dir other o5.dir --admin 2
run "$KEYS" publish --dir other --out o6.dir --admin 1 --refresh
expect 0 "and version 6"
run "$KEYS" init --dir stranger --network riec-test --threshold 1 --admins 1 --no-passphrase
expect 0 "a network of the same name with another administrator"
for cmd in "register --dir stranger --category woonfraude" "publish --dir stranger --out s1.dir --admin 1" \
    "register --dir stranger --category drugs" "publish --dir stranger --out s2.dir --admin 1" \
    "register --dir stranger --category x1" "publish --dir stranger --out s3.dir --admin 1" \
    "register --dir stranger --category x2" "publish --dir stranger --out s4.dir --admin 1" \
    "register --dir stranger --category x3" "publish --dir stranger --out s5.dir --admin 1"; do
    # shellcheck disable=SC2086
    run "$KEYS" $cmd
    expect 0 "the other network: $cmd"
done

# plant FILE WHY: FILE as admin/published/v5.dir; every command refuses.
plant() {
    local file=$1 what=$2 rc=$3 text=$4
    rm -f admin/published/v5.dir admin/published/v6.dir
    cp "$file" "admin/published/${5:-v5.dir}"
    local fp
    fp=$(fingerprint admin)
    for cmd in "status --dir admin" "revoke --dir admin gemeente-a --reason left" \
        "publish --dir admin --out p.dir --admin 1"; do
        # shellcheck disable=SC2086
        run "$KEYS" $cmd
        expect "$rc" "${cmd%% *} refuses $what"
        says "$text" "${cmd%% *}: it says why ($what)"
        says_not "note:" "${cmd%% *}: it is not taken into the state ($what)"
    done
    check "no directory was written ($what)" test ! -e p.dir
    unchanged admin "$fp" "$what"
}
head -c 100 o5.dir >cut.dir
plant cut.dir "a version 5 cut short" 1 "admin/published/v5.dir is damaged or is not version 5 of this network"
says "mv admin/published/v5.dir admin/published/v5.dir.damaged" "and names the command that moves it aside"
"$PY" - o5.dir nosig.dir <<'PY'
import sys
b = open(sys.argv[1], 'rb').read()
# SignedDirectory: field 1 (directory bytes), then the signatures (field 2).
def varint(b, o):
    x = s = 0
    while True:
        c = b[o]; o += 1; x |= (c & 0x7f) << s; s += 7
        if c < 0x80:
            return x, o
k, o = varint(b, 0)
assert k == (1 << 3 | 2)
n, o = varint(b, o)
open(sys.argv[2], 'wb').write(b[:o + n])
PY
plant nosig.dir "a version 5 without signatures" 3 "admin/published/v5.dir carries no signature"
says "mv admin/published/v5.dir admin/published/v5.dir.unsigned" "and names the command"
plant stranger/published/v5.dir "a version 5 signed by another network's administrator" 3 \
    "carries a signature that does not verify or is not an administrator's"
plant o5.dir "a valid version 5 with other contents than the draft" 1 \
    "version 5 was already published (admin/published/v5.dir exists), but admin/state is the draft of that version with other contents"
plant o6.dir "a version 6 (two ahead of the draft of version 5)" 1 \
    "admin/published/v6.dir holds version 6, but admin/state is the draft of version 5" v6.dir
says "restore the backup of admin made after version 6 was published" "it names the repair"
rm -f admin/published/v5.dir admin/published/v6.dir

# The twin: the same draft published by an interrupted command is taken.
crash 1 "$KEYS" revoke --dir admin gemeente-a --reason "left the covenant"
expect "$KILLED" "revoke killed after its one write (the state: whole)"
run "$KEYS" status --dir admin
says "gemeente-a" "the revocation is in the draft"
crash 1 "$KEYS" publish --dir admin --out v5.dir --admin 1
expect "$KILLED" "publish of the revocation killed after its copy"
run "$KEYS" publish --dir admin --out v5b.dir --admin 1
expect 1 "the publish run again"
says "note: version 5 (admin/published/v5.dir) was published" "takes the interrupted version 5 into the state"
says "version 5 has 1 of 2 signatures" "and then asks for the second signature instead of publishing over it"
run "$KEYS" show admin/published/v5.dir
says "gemeente-a" "the revocation is in version 5"

# ---- init stopped at each write -----------------------------------------------------------

n=1
while [ "$n" -le 20 ]; do
    for how in "$n-partial" "$n"; do
        crash "$how" "$KEYS" init --dir "i$how" --network riec-test --threshold 1 --admins 2 --no-passphrase
        [ "$RC" -eq "$KILLED" ] || break 2
        if [ -e "i$how/network.pub" ]; then
            # stopped after its last write: the folder is whole
            run "$KEYS" status --dir "i$how"
            expect 0 "status after init killed after writing network.pub (write $how)"
            continue
        fi
        run "$KEYS" status --dir "i$how"
        expect 1 "status after init killed at write $how"
        says "keten-keys init was stopped before it finished there. Remove the unfinished folder (rm -r i$how) and run keten-keys init again" \
            "it names the unfinished init and the repair (write $how)"
        run "$KEYS" init --dir "i$how" --network riec-test --threshold 1 --admins 2 --no-passphrase
        expect 1 "init again on the unfinished folder (write $how)"
        says "remove the unfinished folder (rm -r i$how) and run init again" "init names the repair"
        rm -r "i$how"
        run "$KEYS" init --dir "i$how" --network riec-test --threshold 1 --admins 2 --no-passphrase
        expect 0 "init after the repair (write $how)"
    done
    n=$((n + 1))
done
check "init was stopped at each of its writes, then ran to the end" test "$n" -ge 5 -a "$RC" -eq 0
check "the finished init's folder works" "$KEYS" status --dir "i$n-partial"
# The twin: a folder that is not an unfinished init is never offered to rm.
mkdir mine && : >mine/notes.txt && mkdir mine/published
run "$KEYS" init --dir mine --network riec-test --threshold 1 --admins 1 --no-passphrase
expect 1 "init on an existing folder of other files"
says "already exists; choose another --dir" "it says choose another"
says_not "rm -r" "and never offers to remove it"
run "$KEYS" status --dir mine
says "mine has no network.pub; is it an ADMIN directory made by keten-keys init?" "status says what it lacks"
says_not "rm -r" "status does not offer to remove it either"

# ---- admin-keygen stopped between the secret key and its .pub file -------------------------

secret pass-k "one two three four five six seven"
crash 1-partial "$KEYS" admin-keygen --out k1.secret --name "Kees" --passphrase-file pass-k
expect "$KILLED" "admin-keygen killed half-way through writing the secret key"
check "no key file under its name (never a part of a key)" test ! -e k1.secret
run "$KEYS" admin-keygen --out k1.secret --name "Kees" --passphrase-file pass-k
expect 0 "admin-keygen again with the same --out"
crash 1 "$KEYS" admin-keygen --out k2.secret --name "Kees" --passphrase-file pass-k
expect "$KILLED" "admin-keygen killed after writing the secret key"
check "the secret key is there, its .pub file not" test -s k2.secret -a ! -e k2.secret.pub
run "$KEYS" admin-keygen --out k2.secret --name "Kees" --passphrase-file pass-k
expect 1 "admin-keygen again with the same --out"
says "an administrator key is never overwritten: choose another --out" "it names the way out"

# ---- every writing command, stopped at each of its writes ---------------------------------

run "$KEYS" init --dir w --network riec-test --threshold 2 --admins 3 --no-passphrase
secret pass-new "one two three four five six seven"
run "$KEYS" admin-keygen --out new.secret --name "Nieuw" --passphrase-file pass-new
expect 0 "a new administrator key"
steps=("register --dir w --category woonfraude,drugs --purpose handhaving"
    "approve --dir w n-a/identity.request"
    "policy --dir w allow --from role:municipality --to role:police --category woonfraude"
    "publish --dir w --out w.dir --admin 1"
    "sign --dir w w/published/v1.dir --admin 2"
    "approve --dir w n-b/identity.request"
    "revoke --dir w gemeente-a --reason gone"
    "set-admins --dir w --threshold 2 --admin-pub w/admin-1.pub,w/admin-2.pub,new.secret.pub"
    "publish --dir w --out w.dir --admin 1"
    "sign --dir w w/published/v2.dir --admin 2")
for step in "${steps[@]}"; do
    n=1
    while [ "$n" -le 6 ]; do
        # shellcheck disable=SC2086
        crash "$n" "$KEYS" $step
        [ "$RC" -eq "$KILLED" ] || break
        run "$KEYS" status --dir w
        expect 0 "${step%% --*} killed after write $n: status works"
        # the step again: it finishes, or says it was done already
        # shellcheck disable=SC2086
        run "$KEYS" $step
        check "${step%% --*} again after write $n: it runs or says it was done" finished
        n=$((n + 1))
    done
    check "${step%% --*} was stopped at each of its writes (at least one)" test "$n" -gt 1
    # shellcheck disable=SC2086
    run "$KEYS" $step
    check "${step%% --*}: after being stopped at each write, it runs or says it was done" finished
    run "$KEYS" status --dir w
    expect 0 "status after ${step%% --*} was stopped at each write"
done
run "$KEYS" status --dir w
expect 0 "status at the end"
says "version 2" "version 2 was published"
says_not "note:" "with nothing left to complete"

done_testing
