#!/usr/bin/env bash
# The real key ceremony: three administrators each make a passphrase-protected,
# named key, init takes their public keys, one publishes and another signs
# with their own key file; passphrases come from files, KETEN_PASSPHRASE and
# a terminal (a pseudo-terminal, driven by python3's pty module).
. "$(dirname "$0")/lib.sh"

secret pass-a "correct horse battery staple alpha"
secret pass-b "correct horse battery staple bravo"
secret pass-c "correct horse battery staple charlie"
secret pass-wrong "not the passphrase of anyone here"
secret pass-node "node passphrase"
NAME_a="Anna de Wit"
NAME_b="Bram Jansen"
NAME_c="Cem Yıldız"

# key_of FILE.pub: the key, the first word of the line.
key_of() {
    cut -d' ' -f1 "$1"
}

# 1. Each administrator on their own machine.
for who in a b c; do
    name_var="NAME_$who"
    run "$KEYS" admin-keygen --out "admin-$who.secret" --name "${!name_var}" \
        --passphrase-file "pass-$who"
    expect 0 "admin-keygen for administrator $who"
    check "admin-$who.secret is mode 0600" test "$(stat -c %a "admin-$who.secret")" = 600
    check "admin-$who.secret.pub is mode 0644" test "$(stat -c %a "admin-$who.secret.pub")" = 644
    check "admin-$who.secret.pub is one line: base64 of 32 bytes, a space, the name" \
        python3 -c 'import base64,sys; t=open(sys.argv[1], encoding="utf-8").read(); k,_,n=t.rstrip("\n").partition(" "); assert t.endswith("\n") and t.count("\n")==1 and len(base64.b64decode(k, validate=True))==32 and n==sys.argv[2]' \
        "admin-$who.secret.pub" "${!name_var}"
    stdout_says "public key:  $(key_of "admin-$who.secret.pub")" "admin-keygen prints the public key of $who"
    stdout_says "name:        ${!name_var}" "admin-keygen prints the name of $who"
    stdout_says "fingerprint: " "admin-keygen prints the key's fingerprint"
done
check "the three administrator keys differ" \
    test "$(cat admin-a.secret.pub admin-b.secret.pub admin-c.secret.pub | cut -d' ' -f1 | sort -u | wc -l)" = 3

# The strength rule for an administrator's passphrase, with its twins.
secret pass-weak "abc"
run "$KEYS" admin-keygen --out weak.secret --passphrase-file pass-weak
expect 1 "admin-keygen refuses the passphrase \"abc\""
says "at least 5 words or at least 20 characters; this one has 1 word and 3 characters" \
    "it explains the rule and what the passphrase has"
check "no key file is left behind" test ! -e weak.secret -a ! -e weak.secret.pub
secret pass-19 "nineteen characters"
run "$KEYS" admin-keygen --out weak.secret --passphrase-file pass-19
expect 1 "two words of 19 characters are refused"
secret pass-20 "twenty characters ok"
run "$KEYS" admin-keygen --out long.secret --passphrase-file pass-20
expect 0 "20 characters are accepted"
secret pass-words "we met at the dam"
run "$KEYS" admin-keygen --out words.secret --passphrase-file pass-words
expect 0 "five short words are accepted"
KETEN_PASSPHRASE="outsider passphrase" run "$KEYS" admin-keygen --out weak.secret
expect 1 "a weak KETEN_PASSPHRASE is refused"
says "the passphrase from KETEN_PASSPHRASE is too weak" "it names where the passphrase came from"
check "no key file is left behind" test ! -e weak.secret

# Names: what may be one, and what may not.
run "$KEYS" admin-keygen --out bad.secret --name " Anna" --passphrase-file pass-a
expect 2 "a name starting with a space is a usage error"
says "--name ' Anna' is not usable" "it names the option"
run "$KEYS" admin-keygen --out bad.secret --name "$(printf 'Anna\tde Wit')" --passphrase-file pass-a
expect 2 "a name with a control character is a usage error"
run "$KEYS" admin-keygen --out bad.secret --name "$(printf '%065d' 0)" --passphrase-file pass-a
expect 2 "a name of 65 bytes is a usage error"
check "no key file is left behind" test ! -e bad.secret -a ! -e bad.secret.pub
run "$KEYS" admin-keygen --out unnamed.secret --passphrase-file pass-a
expect 0 "admin-keygen without --name"
check "its .pub holds the key alone" \
    python3 -c 'import base64,sys; t=open(sys.argv[1]).read().strip(); assert " " not in t and len(base64.b64decode(t, validate=True))==32' unnamed.secret.pub

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

KETEN_PASSPHRASE="the outsider has a passphrase too" run "$KEYS" admin-keygen --out outsider.secret
expect 0 "admin-keygen with KETEN_PASSPHRASE"

# 2. The administrators exchange public keys; one of them runs init.
run "$KEYS" init --dir admin --network riec-ceremony --threshold 2 \
    --admin-pub admin-a.secret.pub --admin-pub admin-b.secret.pub,admin-c.secret.pub
expect 0 "init with three --admin-pub keys (one option repeated, one comma list)"
check "init --admin-pub writes no secret keys into ADMIN" test -z "$(ls admin | grep secret)"
anchor_sum=$(sha256sum admin/network.pub | cut -d' ' -f1)
says "$anchor_sum" "init prints the sha256 to compare out of band"
says "administrator 1: Anna de Wit (fingerprint " "init names administrator 1"
says "administrator 3: Cem Yıldız (fingerprint " "init names administrator 3 (UTF-8)"
check "init does not warn when every key has a name" test ! -s "$T/.err"
check "ADMIN/names holds the three names with their keys" \
    python3 -c 'import sys; t=open(sys.argv[1], encoding="utf-8").read(); assert all(open(f, encoding="utf-8").read() in t for f in sys.argv[2:])' \
    admin/names admin-a.secret.pub admin-b.secret.pub admin-c.secret.pub
run "$KEYS" show admin/network.pub --json
check "network.pub lists the three public keys in order, threshold 2" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); k=[open(f).read().split()[0] for f in sys.argv[2:]]; assert d["admins"]==k and d["threshold"]==2' \
    "$T/.out" admin-a.secret.pub admin-b.secret.pub admin-c.secret.pub
check "show names the anchor's administrators from ADMIN/names" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [a["name"] for a in d["administrators"]]==["Anna de Wit","Bram Jansen","Cem Yıldız"]' "$T/.out"
cp admin/network.pub partner-network.pub
run "$KEYS" show partner-network.pub
expect 0 "show a copy of network.pub outside ADMIN"
says_not "Anna" "outside ADMIN there are no names, only keys and fingerprints"
says "(fingerprint " "the fingerprints are printed"

run "$KEYS" init --dir unnamed-net --network unnamed --threshold 1 --admin-pub unnamed.secret.pub
expect 0 "init with a key that has no name"
says "carries no name" "init warns that the key has no name"

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
says "signed by Anna de Wit (fingerprint " "publish names the signer"

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
KETEN_PASSPHRASE="correct horse battery staple charlie" run "$KEYS" sign --dir admin directory --key admin-c.secret
expect 0 "a third administrator signs with KETEN_PASSPHRASE"
says "3 of 2 signatures: complete" "three valid signatures are counted"

run "$KEYS" show directory --anchor admin/network.pub
expect 0 "show --anchor says the ceremony's directory is valid"
says "valid" "show says valid"
says "signed by Anna de Wit (fingerprint $(python3 -c 'import base64,hashlib,sys; h=hashlib.sha256(base64.b64decode(open(sys.argv[1]).read().split()[0])).hexdigest()[:16]; print(":".join(h[i:i+4] for i in range(0,16,4)))' admin-a.secret.pub)): valid, by an administrator of the anchor" \
    "show names who signed, with the fingerprint of the key"
says "signed by Bram Jansen (fingerprint " "show names the second signer"
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
KETEN_PASSPHRASE="correct horse battery staple alpha" run "$KEYS" sign --dir demo demo.dir --admin 2
expect 0 "sign --admin 2 with KETEN_PASSPHRASE"
run "$KEYS" show demo.dir --anchor demo/network.pub
expect 0 "the demo directory is valid"
says "signed by test administrator 1 (fingerprint " "init --admins names its keys"
run "$KEYS" init --dir demo-weak --network demo --threshold 1 --admins 1 --passphrase-file pass-weak
expect 1 "init --admins with a weak passphrase"
says "at least 5 words or at least 20 characters" "it explains the rule"
check "nothing was created" test ! -e demo-weak

# 7. On a terminal (a pseudo-terminal): asked again after a mismatch, a weak
# passphrase or a wrong one; three rounds, then refused.
need_tool "$PY"

# on_tty STEPS CMD...: run CMD with a new pseudo-terminal as its controlling
# terminal; STEPS is JSON [[TEXT, TYPED], ...]: wait until TEXT appears, then
# type TYPED. RC is CMD's exit code; $T/.all what the terminal showed.
on_tty() {
    "$PY" - "$@" >"$T/.all" 2>&1 <<'PY'
import json, os, pty, select, sys, time
steps, cmd = json.loads(sys.argv[1]), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(cmd[0], cmd)
seen, pos = b"", 0
def more(deadline):
    global seen
    r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
    if not r:
        return False
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        return False
    seen += chunk
    return bool(chunk)
for text, typed in steps:
    deadline = time.time() + 60
    while seen.find(text.encode(), pos) < 0:
        if not more(deadline):
            sys.stdout.write(seen.decode(errors="replace"))
            print("\n[on_tty] never saw %r" % text)
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            sys.exit(99)
    pos = seen.find(text.encode(), pos) + len(text)
    if typed:
        os.write(fd, typed.encode())
while more(time.time() + 60):
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
PY
    RC=$?
    cp "$T/.all" "$T/.out"
}

on_tty '[["New passphrase", "abc\n"], ["Try again", ""],
         ["New passphrase", "a long walk by the river\n"], ["Repeat", "a long walk by the rivet\n"],
         ["Try again", ""],
         ["New passphrase", "a long walk by the river\n"], ["Repeat", "a long walk by the river\n"]]' \
    "$KEYS" admin-keygen --out tty.secret --name "Dewi Sari"
expect 0 "admin-keygen on a terminal: a weak passphrase and a mismatch are asked again"
says "at least 5 words or at least 20 characters" "the terminal explains the strength rule"
says "do not match" "the terminal says the two entries differ"
says_not "walk by the" "the passphrase was never echoed"
check "the key was written" test -f tty.secret -a -f tty.secret.pub

on_tty '[["New passphrase", "one two three four five\n"], ["Repeat", "one\n"],
         ["New passphrase", "one two three four five\n"], ["Repeat", "two\n"],
         ["New passphrase", "one two three four five\n"], ["Repeat", "three\n"]]' \
    "$KEYS" admin-keygen --out tty2.secret
expect 1 "three mismatches on a terminal: refused"
says "did not match, 3 times" "it says how often they differed"
check "no key file is left behind" test ! -e tty2.secret -a ! -e tty2.secret.pub

run "$KEYS" register --dir admin --category tty-test
on_tty '[["Passphrase for admin-b.secret", "wrong one\n"], ["2 tries left", ""],
         ["Passphrase for admin-b.secret", "wrong two\n"], ["1 try left", ""],
         ["Passphrase for admin-b.secret", "correct horse battery staple bravo\n"]]' \
    "$KEYS" publish --dir admin --out directory-2 --key admin-b.secret
expect 0 "publish on a terminal: the third try of the passphrase opens the key"
says "signed by Bram Jansen" "the key was opened and used"
says_not "wrong one" "the wrong passphrase was not echoed"
says_not "staple" "the right passphrase was not echoed"

before=$(fingerprint admin)
on_tty '[["Passphrase for admin-a.secret", "wrong one\n"], ["Passphrase for admin-a.secret", "wrong two\n"],
         ["Passphrase for admin-a.secret", "wrong three\n"]]' \
    "$KEYS" sign --dir admin directory-2 --key admin-a.secret
expect 1 "sign on a terminal: three wrong passphrases"
says "wrong passphrase: the passphrase does not open admin-a.secret" "it says the passphrase is wrong"
says "(3 tries on the terminal)" "after three tries"
unchanged admin "$before" "three wrong passphrases"

run "$KEYS" sign --dir admin directory-2 --key admin-a.secret --passphrase-file pass-wrong
expect 1 "from a file a wrong passphrase gets one try"
says_not "tries" "a file is not asked again"

done_testing
