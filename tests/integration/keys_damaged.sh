#!/usr/bin/env bash
# keten-keys on damaged or forged files, each next to its twin that is
# accepted: an administrator key file cut short or empty; a key file
# readable by group or others (refused) and one for its owner only, also
# read-only (accepted); a passphrase file that is empty, only a newline, or
# only CR LF, and an empty KETEN_PASSPHRASE (refused, also at admin-keygen,
# which then writes nothing); a directory signed by enough administrators
# that lists one node twice (not valid); a rule naming a node or role this
# version does not have (valid, and show says whom it will apply to).
. "$(dirname "$0")/lib.sh"

secret pass-a "one two three four five six seven"
run "$KEYS" admin-keygen --out a.secret --name "Anna" --passphrase-file pass-a
expect 0 "admin-keygen with a passphrase file (control)"
run "$KEYS" init --dir admin --network riec-test --threshold 1 --admin-pub a.secret.pub
expect 0 "init with that administrator"
run "$KEYS" register --dir admin --category woonfraude
expect 0 "register a category"

# ---- key files --------------------------------------------------------------------------

head -c 20 a.secret >cut.secret && chmod 600 cut.secret
before=$(fingerprint admin)
run "$KEYS" publish --dir admin --out v1.dir --key cut.secret --passphrase-file pass-a
expect 1 "an administrator key file cut to 20 bytes"
says "cut.secret is truncated" "it says the key file is truncated"
says "restore it from a backup" "and what to do"
unchanged admin "$before" "a truncated key file"
check "no directory was written" test ! -e v1.dir

: >empty.secret && chmod 600 empty.secret
run "$KEYS" publish --dir admin --out v1.dir --key empty.secret --passphrase-file pass-a
expect 1 "an empty key file"
says "empty.secret is truncated (0 bytes)" "it says the key file is empty"

for mode in 644 640 604; do
    cp a.secret "m$mode.secret" && chmod "$mode" "m$mode.secret"
    run "$KEYS" publish --dir admin --out v1.dir --key "m$mode.secret" --passphrase-file pass-a
    expect 1 "a key file of mode $mode"
    says "run chmod 600 m$mode.secret" "mode $mode: it says how to fix it"
    says_not "wrong passphrase" "mode $mode: refused before any passphrase is tried"
done
unchanged admin "$before" "key files refused for their mode"

# ---- passphrase files -------------------------------------------------------------------

(umask 077 && : >p-empty && printf '\n' >p-nl && printf '\r\n' >p-crlf)
for p in p-empty p-nl p-crlf; do
    run "$KEYS" publish --dir admin --out v1.dir --key a.secret --passphrase-file "$p"
    expect 1 "a passphrase file $p"
    says "the passphrase from $p is empty; set one" "$p: it says the passphrase is empty"
    says_not "wrong passphrase" "$p: not taken for a wrong passphrase"
done
KETEN_PASSPHRASE= run "$KEYS" publish --dir admin --out v1.dir --key a.secret </dev/null
expect 1 "an empty KETEN_PASSPHRASE"
says "the passphrase from KETEN_PASSPHRASE is empty" "it says so"
unchanged admin "$before" "empty passphrases"
run "$KEYS" admin-keygen --out b.secret --passphrase-file p-nl
expect 1 "admin-keygen with a passphrase file holding only a newline"
says "the passphrase from p-nl is empty; set one" "it says the passphrase is empty"
check "and writes no key file" test ! -e b.secret -a ! -e b.secret.pub

# The twins: the key for its owner only (0600, and read-only 0400) with its
# passphrase.
cp a.secret ro.secret && chmod 400 ro.secret
run "$KEYS" publish --dir admin --out v1.dir --key ro.secret --passphrase-file pass-a
expect 0 "twin: the key file read-only for its owner (0400) with its passphrase publishes"
says "valid: nodes and the broker will accept it" "version 1 is valid"
run "$KEYS" show v1.dir --anchor admin/network.pub
expect 0 "version 1 verifies"

# ---- directories: a node listed twice, a rule naming no node ------------------------------

run "$NODE" keygen --home n-a --id gemeente-a --role municipality --org "Gemeente A" --no-passphrase
expect 0 "keygen a partner"
run "$KEYS" approve --dir admin n-a/identity.request
expect 0 "approve it"
run "$KEYS" policy --dir admin allow --from gemeente-a --to politie-x,role:tax --category woonfraude
expect 0 "a rule to a node and a role not enrolled yet"
says "no node with that id is enrolled yet" "policy warns"
run "$KEYS" publish --dir admin --out v2.dir --key a.secret --passphrase-file pass-a
expect 0 "publish version 2"
run "$KEYS" show v2.dir --anchor admin/network.pub
expect 0 "a rule naming nodes not enrolled is valid"
says "note: rule 1 names 'politie-x' (to), which is no node of this version: the rule applies to a partner enrolled later under that id" \
    "show says the rule names no node, and whom it will apply to"
says "note: rule 1 names 'role:tax' (to), which is no node of this version: the rule applies to a partner enrolled later under that role" \
    "and the same for a role no node has"
says_not "names 'gemeente-a'" "an enrolled node is not noted"

# Version 2 with its one partner's certificate listed twice, signed by the
# administrator (keten-test-tool signs with any key file; a passphrase-less
# copy of the administrator's key is made for it).
run "$KEYS" init --dir plain --network riec-test --threshold 1 --admins 1 --no-passphrase
expect 0 "a network whose administrator key has no passphrase (the test tool's signer)"
run "$KEYS" register --dir plain --category woonfraude
run "$KEYS" approve --dir plain n-a/identity.request
expect 0 "approve the partner there"
run "$KEYS" publish --dir plain --out p1.dir --admin 1
expect 0 "publish its version 1"
run "$KEYS" show p1.dir --anchor plain/network.pub
expect 0 "control: its version 1 verifies"
"$PY" - p1.dir dup.dir <<'PY'
import sys
def varint(b, o):
    x = s = 0
    while True:
        c = b[o]; o += 1; x |= (c & 0x7f) << s; s += 7
        if c < 0x80:
            return x, o
def fields(b):
    o, out = 0, []
    while o < len(b):
        st = o
        k, o = varint(b, o)
        if k & 7 == 0:
            _, o = varint(b, o)
        elif k & 7 == 2:
            n, o = varint(b, o); o += n
        elif k & 7 == 1:
            o += 8
        else:
            o += 4
        out.append((k >> 3, b[st:o]))
    return out
def enc(x):
    r = b""
    while True:
        c, x = x & 0x7f, x >> 7
        if not x:
            return r + bytes([c])
        r += bytes([c | 0x80])
sd = open(sys.argv[1], "rb").read()
d = [x for n, x in fields(sd) if n == 1][0]
_, o = varint(d, 0)
n, o = varint(d, o)
out, done = b"", False
for num, x in fields(d[o:o + n]):
    out += x
    if num == 7 and not done:  # Directory.nodes: the first certificate again
        out += x
        done = True
assert done
open(sys.argv[2], "wb").write(b"\x0a" + enc(len(out)) + out)
PY
run "$TOOL" sign-directory dup.dir plain/admin-1.secret
expect 0 "the administrator signs the directory that lists a node twice"
run "$KEYS" show dup.dir --anchor plain/network.pub
expect 3 "a directory listing one partner twice is not valid, though signed"
says "node id 'gemeente-a' has two current certificates" "it names the node listed twice"
says "valid, by an administrator of the anchor" "the signature itself is valid: the contents are refused"
done_testing
