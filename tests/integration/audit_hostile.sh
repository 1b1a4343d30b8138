#!/usr/bin/env bash
# keten-audit on files a hostile broker operator (or anyone) prepared, each
# next to its control:
# - proof bundles (check-proof): an audit path one hash short, one hash too
#   long, over any valid length; a wrong leaf index, one past the tree, a
#   negative one; another format version; a field the format does not have
#   (in the bundle, in log_key, in a record); a key given twice; numbers
#   too big for any integer, a real where an integer belongs; a record
#   given twice, two records swapped; NUL in a
#   string, a raw NUL byte; a checkpoint signed by another key under the
#   broker's name, with or without that key as log_key; the directory chain
#   reordered or with a version repeated. Each is exit 3 with the field or
#   the check named, never a signal.
# - exports (verify, prove): a record rewritten as another valid record
#   (one category changed), also with its leaf hash in the tile recomputed;
#   keten/directories with its two versions swapped or the second left out;
#   files beside the tree that verify does not read; a checkpoint signed by
#   another key under the broker's name, given with --checkpoint or put in
#   the export in place of the broker's.
# - named pipes (FIFOs) in place of a file of the export, the anchor, a
#   checkpoint file or a proof bundle: refused at once, never a hang.
# - the wrong file (another keten file, an empty one, a folder) as --anchor,
#   --checkpoint, the proof bundle, --db and --out of every command: exit 1
#   with the file named, what it is and what to give; never a record named.
. "$(dirname "$0")/audit_lib.sh"

make_log || done_testing
stop_broker
check "a real broker run wrote a log and stopped" test "$BRC" -eq 0

# no_signal WHAT: the last command ended by itself (exit < 128).
no_signal() {
    check "$1: no signal (exit $RC)" test "$RC" -lt 128
}

# ---- proof bundles ------------------------------------------------------------------------

run "$AUDIT" prove --db broker "$MSG_Q" --out proof.json
expect 0 "prove the query (control)"
run "$AUDIT" check-proof proof.json --anchor admin/network.pub
expect 0 "control: the untouched bundle holds"
run "$AUDIT" prove --db broker "$MSG_V2" --out proof2.json
expect 0 "prove the message sent under directory version 2 (control)"
run "$AUDIT" check-proof proof2.json --anchor admin/network.pub
expect 0 "control: its bundle, with the chain of two versions, holds"

# edit IN OUT PYTHON: OUT is IN (JSON, as D) after the statements.
edit() {
    "$PY" - "$1" "$2" "$3" <<'PY'
import base64, json, sys
D = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(D, open(sys.argv[2], "w"), indent=2)
PY
}
# refused WHAT FILE TEXT: check-proof exits 3 on FILE and says TEXT.
refused() {
    run "$AUDIT" check-proof "$2" --anchor admin/network.pub
    expect 3 "$1: check-proof refuses it"
    says "$3" "$1: it says so"
    no_signal "$1"
}

edit proof.json p-short.json 'D["records"][0]["audit_path"].pop()'
refused "an audit path one hash short" p-short.json "has too few hashes"
edit proof.json p-long.json 'p = D["records"][0]["audit_path"]; p.append(p[0])'
refused "an audit path one hash too long" p-long.json "has too many hashes"
edit proof.json p-huge.json 'p = D["records"][0]["audit_path"]; D["records"][0]["audit_path"] = (p * 65)[:65]'
refused "an audit path of 65 hashes" p-huge.json "has too many hashes (65)"
edit proof.json p-hashlen.json 'D["records"][0]["audit_path"][0] = base64.b64encode(b"x" * 31).decode()'
refused "an audit path hash of 31 bytes" p-hashlen.json "audit_path entry is not standard base64 of the right length"

edit proof.json p-index.json 'D["records"][1]["leaf_index"] += 1'
refused "a wrong leaf index (one more)" p-index.json "records[1] (leaf "
says "does not lead to the checkpoint's root" "a wrong leaf index: the path no longer leads to the root"
edit proof.json p-past.json 'D["records"][0]["leaf_index"] = D["records"][0]["tree_size"]'
refused "a leaf index equal to the tree size" p-past.json "does not fit the checkpoint's"
edit proof.json p-neg.json 'D["records"][0]["leaf_index"] = -1'
refused "a negative leaf index" p-neg.json "leaf -1 in a tree of"
edit proof.json p-size.json 'D["records"][0]["tree_size"] = 2**63 - 1'
refused "a tree size of 2^63 - 1" p-size.json "does not fit the checkpoint's"

# The records are in log order, each once: a record given twice (a receipt
# shown twice), two records swapped.
edit proof.json p-twice.json 'D["records"].append(D["records"][-1])'
refused "the last record given twice" p-twice.json "comes after leaf"
says "in log order, each once" "a record given twice: it says the rule"
edit proof.json p-order.json 'R = D["records"]; R[1], R[2] = R[2], R[1]'
refused "two records swapped" p-order.json "in log order, each once"

edit proof.json p-v3.json 'D["format"] = "keten-proof/v3"'
refused "format version 3" p-v3.json "format 'keten-proof/v3' is not keten-proof/v2"
edit proof.json p-field.json 'D["version"] = 3'
refused "a field the format does not have" p-field.json \
    "the bundle has a field 'version' that a keten-proof/v2 bundle does not have"
edit proof.json p-rfield.json 'D["records"][1]["witnessed"] = True'
refused "a field the format does not have, in a record" p-rfield.json \
    "records[1] has a field 'witnessed' that a keten-proof/v2 bundle does not have"
edit proof.json p-kfield.json 'D["log_key"]["verified"] = "yes"'
refused "a field the format does not have, in log_key" p-kfield.json \
    "log_key has a field 'verified'"
edit proof.json p-ctl.json 'D["x\u001b[2J"] = 1'
refused "a field whose name holds a terminal escape" p-ctl.json \
    "a field (a name over 64 bytes or with control characters)"
edit proof.json p-upper.json 'D["msg_id"] = D["msg_id"].upper()'
refused "the msg_id in upper case (prove writes lower case)" p-upper.json \
    "msg_id is not 32 lowercase hex characters"
"$PY" -c 'import json, sys; json.dump([json.load(open("proof.json"))], open("p-array.json", "w"))'
refused "the bundle inside a JSON array" p-array.json \
    "not a JSON proof bundle: the document is a JSON array, not the object that 'keten-audit prove' writes"
edit proof.json p-keyid.json 'D["log_key"]["key_id"] = "00000000"'
run "$AUDIT" check-proof p-keyid.json --anchor admin/network.pub
expect 0 "twin: a changed key_id (documented as informative, not read) still holds"

# Text edits: a key given twice, numbers, NUL.
"$PY" - proof.json <<'PY'
import re, sys
t = open(sys.argv[1]).read()
open("p-dup.json", "w").write(t.replace('"network":', '"network": "riec-test",\n  "network":', 1))
open("p-big.json", "w").write(re.sub(r'"leaf_index": \d+', '"leaf_index": 18446744073709551616', t, 1))
open("p-exp.json", "w").write(re.sub(r'"leaf_index": \d+', '"leaf_index": 1e999', t, 1))
open("p-real.json", "w").write(re.sub(r'"leaf_index": (\d+)', r'"leaf_index": \1.0', t, 1))
open("p-nul.json", "w").write(t.replace('"riec-test"', '"riec-test\\u0000x"', 1))
open("p-rawnul.json", "wb").write(t.replace('"riec-test"', '"riec-test\0"', 1).encode())
PY
refused "the key network given twice" p-dup.json "duplicate object key"
refused "a leaf index of 2^64" p-big.json "not a JSON proof bundle"
refused "a leaf index of 1e999" p-exp.json "not a JSON proof bundle"
refused "a leaf index written as a real" p-real.json "records[0] has no leaf_index field of the right type"
refused "NUL escaped in a string" p-nul.json "not a JSON proof bundle"
refused "a raw NUL byte in a string" p-rawnul.json "not a JSON proof bundle"

# A checkpoint signed by another key under the broker's name.
"$PY" - proof.json <<'PY'
import base64, hashlib, json
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
D = json.load(open("proof.json"))
note = D["checkpoint"]
body, sigs = note.split("\n\n", 1)
body += "\n"
name = D["log_key"]["name"]
k = Ed25519PrivateKey.generate()
pk = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
kid = hashlib.sha256(name.encode() + b"\n\x01" + pk).digest()[:4]
line = "\u2014 %s %s\n" % (name, base64.b64encode(kid + k.sign(body.encode())).decode())
D["checkpoint"] = body + "\n" + line
json.dump(D, open("p-otherkey.json", "w"), indent=2)
D["log_key"]["public_key"] = base64.b64encode(pk).decode()
D["log_key"]["key_id"] = kid.hex()
json.dump(D, open("p-otherkey2.json", "w"), indent=2)
PY
refused "a checkpoint signed by another key under the broker's name" p-otherkey.json \
    "the checkpoint's signature does not verify with the broker's log key"
refused "the same, with that key given as log_key" p-otherkey2.json \
    "log_key is not the log key of broker 'broker' in directory version"

edit proof2.json p-reorder.json 'D["directories"].reverse()'
refused "the directory chain reordered (v2, v1)" p-reorder.json \
    "directories[1] does not verify as the next version of the chain"
edit proof2.json p-repeat.json 'D["directories"].insert(1, D["directories"][0])'
refused "a version repeated in the chain (v1, v1, v2)" p-repeat.json "is not newer than"

# ---- exports ------------------------------------------------------------------------------

run "$AUDIT" export --db broker --out ex
expect 0 "export the log"
run "$AUDIT" verify --db ex --anchor admin/network.pub --json
expect 0 "control: the export verifies"
ROOT=$(jv 'D["root"]')
N=$(jv 'D["records"]')
BUNDLE=$(cd ex && find tile/entries -type f | sort | head -1)
TILE0=$(cd ex && find tile/0 -type f | sort | head -1)
check "the log fits one partial bundle and one partial tile ($BUNDLE, $TILE0)" \
    test "$BUNDLE" = "tile/entries/000.p/$N" -a "$TILE0" = "tile/0/000.p/$N"
SEQ_SUB=$(seq_of 'r["event"] == "SUBMITTED"')

# rewrite DIR TILE_TOO: record SEQ_SUB's category woonfraude becomes
# woonfraudf (the same length: a valid record of the same shape); with
# TILE_TOO=1 its leaf hash in the level-0 tile is recomputed as well.
rewrite() {
    rm -rf "$1"
    cp -a ex "$1"
    "$PY" - "$1/$BUNDLE" "$1/$TILE0" "$SEQ_SUB" "$2" <<'PY'
import hashlib, sys
bpath, tpath, seq, tile_too = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
b = bytearray(open(bpath, "rb").read())
off = 0
for i in range(seq + 1):
    n = b[off] << 8 | b[off + 1]
    start, off = off + 2, off + 2 + n
rec = bytes(b[start:off])
assert rec.count(b"woonfraude") >= 1
new = rec.replace(b"woonfraude", b"woonfraudf", 1)
b[start:off] = new
open(bpath, "wb").write(bytes(b))
if tile_too:
    t = bytearray(open(tpath, "rb").read())
    t[32 * seq:32 * seq + 32] = hashlib.sha256(b"\x00" + new).digest()
    open(tpath, "wb").write(bytes(t))
PY
}
rewrite x-rec 0
verify_fails_at "record $SEQ_SUB rewritten as another valid record" "$SEQ_SUB" x-rec
says "does not match its hash in the stored tree" "it says the record changed after it was logged"
no_signal "verify"
rewrite x-rec-tile 1
run "$AUDIT" verify --db x-rec-tile --anchor admin/network.pub
expect 3 "the same with its leaf hash in the tile recomputed: verify fails"
says "verification failed at record" "it names a record"
no_signal "verify"
run "$AUDIT" prove --db x-rec-tile "$MSG_P1" --out x.json
check "prove on it does not succeed (exit $RC)" test "$RC" -ne 0 -a "$RC" -lt 128

# keten/directories: versions swapped, the second left out.
"$PY" - ex/keten/directories <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
items, off = [], 0
while off < len(b):
    v, n = struct.unpack(">QI", b[off:off + 12])
    items.append(b[off:off + 12 + n])
    off += 12 + n
assert len(items) == 2, len(items)
open("dirs-swapped", "wb").write(items[1] + items[0])
open("dirs-first", "wb").write(items[0])
PY
rm -rf x-swap && cp -a ex x-swap && cp dirs-swapped x-swap/keten/directories
run "$AUDIT" verify --db x-swap --anchor admin/network.pub
expect 3 "keten/directories with its two versions swapped: verify fails"
says "keten/directories" "it names the file"
no_signal "verify"
rm -rf x-gap && cp -a ex x-gap && cp dirs-first x-gap/keten/directories
run "$AUDIT" verify --db x-gap --anchor admin/network.pub
expect 3 "keten/directories without version 2 (which the log installed): verify fails"
says "keten/directories" "it names the file"
no_signal "verify"
# A file beside the records that does not parse is no failure of a record:
# verify names the file and no record (with --json: about_record false).
rm -rf x-dirjunk && cp -a ex x-dirjunk && head -c 300 /dev/urandom >x-dirjunk/keten/directories
run "$AUDIT" verify --db x-dirjunk --anchor admin/network.pub --json
expect 3 "keten/directories of random bytes: verify fails"
says "verification failed: " "it says so"
says_not "verification failed at record" "and names no record (every record passed)"
check "--json: the failure is about no record" test "$(jv 'D["ok"] or D["failure"]["about_record"]')" = False
head -n 2 ex/checkpoint >nobody.note
run "$AUDIT" verify --db ex --anchor admin/network.pub --checkpoint nobody.note
expect 3 "a --checkpoint note cut after its tree size: verify fails"
says "nobody.note is not a keten checkpoint" "it names the file"
says_not "verification failed at record" "and no record"
# Twin: a record that fails is named, about_record true.
run "$AUDIT" verify --db x-rec --anchor admin/network.pub --json
expect 3 "twin: the rewritten record fails"
check "--json: about record $SEQ_SUB" test "$(jv 'D["failure"]["about_record"] and D["failure"]["seq"]')" = "$SEQ_SUB"

# A checkpoint signed by another key under the broker's name: given by a
# "partner" with --checkpoint, and put in the export in place of the
# broker's.
"$PY" - ex/checkpoint other.note <<'PY'
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
note = open(sys.argv[1]).read()
body = note.split("\n\n", 1)[0] + "\n"
name = note.split("\n\n", 1)[1].split(" ")[1]
k = Ed25519PrivateKey.generate()
pk = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
kid = hashlib.sha256(name.encode() + b"\n\x01" + pk).digest()[:4]
sig = base64.b64encode(kid + k.sign(body.encode())).decode()
open(sys.argv[2], "w").write(body + "\n\u2014 %s %s\n" % (name, sig))
PY
run "$AUDIT" verify --db ex --anchor admin/network.pub --checkpoint ex/checkpoint
expect 0 "control: the broker's own latest checkpoint given with --checkpoint verifies"
run "$AUDIT" verify --db ex --anchor admin/network.pub --checkpoint other.note
expect 3 "a --checkpoint signed by another key under the broker's name: verify fails"
says "other.note of size" "it names the file"
says "the broker's signature (key 'broker' of directory version" "it says the broker's signature does not verify"
no_signal "verify"
rm -rf x-cp && cp -a ex x-cp && cp other.note x-cp/checkpoint
run "$AUDIT" verify --db x-cp --anchor admin/network.pub
expect 3 "the export's checkpoint replaced by one signed by another key: verify fails"
says "checkpoint" "it names the checkpoint"
no_signal "verify"

# A partner's checkpoint of another network (another region's keten, its
# own broker and key), given with --checkpoint: named as another network's,
# not as a bad signature or an unknown directory version of this log.
"$PY" - ex/checkpoint noord.note <<'PY'
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
body = open(sys.argv[1]).read().split("\n\n", 1)[0] + "\n"
lines = body.split("\n")
lines[0] = "keten/riec-noord"
lines[3] = "directory 9 " + lines[3].split(" ")[2]
body = "\n".join(lines)
k = Ed25519PrivateKey.generate()
pk = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
kid = hashlib.sha256(b"broker-noord\n\x01" + pk).digest()[:4]
sig = base64.b64encode(kid + k.sign(body.encode())).decode()
open(sys.argv[2], "w").write(body + "\n\u2014 broker-noord %s\n" % sig)
PY
run "$AUDIT" verify --db ex --anchor admin/network.pub --checkpoint noord.note
expect 3 "a --checkpoint of another network: verify fails"
says "noord.note of size" "it names the file"
says "has origin 'keten/riec-noord', expected 'keten/riec-test': it is a checkpoint of another network" \
    "it says the checkpoint is another network's"
no_signal "verify"

# The file of checkpoints a partner node kept (keten-node checkpoint --all)
# holds up to 21,000 notes, each with a cosignature line per partner: more
# than 64 MiB in a network of some 30 partners. verify reads such a file
# (here 70 MiB of the broker's checkpoint, each note carrying 470 signature
# lines of keys that are no partner's, which a reader ignores); a file over
# 1 GiB, the most a node can write, is refused by name.
"$PY" - ex/checkpoint big.notes <<'PY'
import base64, sys
note = open(sys.argv[1]).read()
pad = "".join("\u2014 stranger-%d %s\n" % (i, base64.b64encode(bytes(76)).decode()) for i in range(470))
one = note + pad
with open(sys.argv[2], "w") as f:
    f.write(one * ((70 << 20) // len(one.encode()) + 1))
PY
check "the partner's file is over 64 MiB ($(stat -c %s big.notes) bytes)" test "$(stat -c %s big.notes)" -gt $((64 << 20))
run "$AUDIT" verify --db ex --anchor admin/network.pub --checkpoint big.notes
expect 0 "a --checkpoint file of 70 MiB of checkpoint notes verifies"
stdout_says "external evidence" "its notes count as evidence from outside the broker"
rm -f big.notes
truncate -s $(((1 << 30) + 1)) huge.notes
printf 'keten/riec-test\n1\n' | dd of=huge.notes conv=notrunc status=none
run "$AUDIT" verify --db ex --anchor admin/network.pub --checkpoint huge.notes
expect 1 "a --checkpoint file over 1 GiB is refused"
says "huge.notes is 1073741825 bytes; at most 1073741824 allowed" "it names the file and the limit"
no_signal "verify"
rm -f huge.notes

# Files beside the tree of N records: verify reads the tree of N records
# only (the manifest's size), so junk beyond it changes nothing.
rm -rf x-extra && cp -a ex x-extra
mkdir -p x-extra/tile/0 x-extra/tile/entries
head -c 8192 /dev/urandom >x-extra/tile/0/001
printf '\000\003abc' >x-extra/tile/entries/001
run "$AUDIT" verify --db x-extra --anchor admin/network.pub --json
expect 0 "tiles beyond the log's size are not read: the export verifies"
check "with the same records and root" test "$(jv 'D["records"]')" = "$N" -a "$(jv 'D["root"]')" = "$ROOT"

# ---- named pipes ---------------------------------------------------------------------------

# A FIFO where a file belongs (a file of the export, --anchor, --checkpoint,
# the proof bundle) is refused at once as not a regular file: opening it
# must not wait for a writer that never comes. timeout 20 turns a hang
# into exit 124.
rm -rf x-fifo && cp -a ex x-fifo
rm x-fifo/keten/manifest && mkfifo x-fifo/keten/manifest
run timeout 20 "$AUDIT" verify --db x-fifo --anchor admin/network.pub
expect 3 "a FIFO in place of the export's keten/manifest: verify fails at once"
says "keten/manifest is not a regular file" "it names the file"
rm -rf x-fifo2 && cp -a ex x-fifo2
rm x-fifo2/checkpoint && mkfifo x-fifo2/checkpoint
run timeout 20 "$AUDIT" replay --db x-fifo2
expect 3 "a FIFO in place of the export's checkpoint: replay fails at once"
says "checkpoint is not a regular file" "it names the file"
mkfifo pipe
run timeout 20 "$AUDIT" verify --db ex --anchor pipe
expect 1 "a FIFO as --anchor: refused at once"
says "pipe is not a regular file" "it says so"
run timeout 20 "$AUDIT" verify --db ex --anchor admin/network.pub --checkpoint pipe
expect 1 "a FIFO as --checkpoint: refused at once"
says "pipe is not a regular file" "it says so"
run timeout 20 "$AUDIT" check-proof pipe --anchor admin/network.pub
expect 1 "a FIFO as the proof bundle: refused at once"
says "pipe is not a regular file" "it says so"
run timeout 20 "$AUDIT" check-proof proof.json --anchor admin/network.pub
expect 0 "control: the same commands on the regular files hold"

# ---- the wrong file -------------------------------------------------------------------------

# Another keten file (or an empty one, or a folder) where a file belongs:
# the message names the file, says what it is and what to give, and the
# exit code is 1 (the wrong input, not a verdict on the log or a proof).
# wrong WHAT EXIT TEXT... -- COMMAND...: the command exits EXIT and says
# every TEXT, and names no record.
wrong() {
    local what=$1 want=$2 texts=()
    shift 2
    while [ "$1" != -- ]; do
        texts+=("$1")
        shift
    done
    shift
    run "$AUDIT" "$@"
    expect "$want" "$what"
    local t
    for t in "${texts[@]}"; do
        says "$t" "$what: it says \"$t\""
    done
    says_not "verification failed at record" "$what: no record is named"
    no_signal "$what"
}
: >empty.note
printf 'not an anchor\n' >garbage.pub
A=(--anchor admin/network.pub)

wrong "an empty --checkpoint file" 1 "--checkpoint empty.note is empty (0 bytes)" \
    "keten-node checkpoint --home DIR --all --out FILE" -- verify --db ex "${A[@]}" --checkpoint empty.note
wrong "a proof bundle as --checkpoint" 1 \
    "--checkpoint proof.json is a proof bundle (keten-proof/v2, written by keten-audit prove), not a file of checkpoint notes" \
    -- verify --db ex "${A[@]}" --checkpoint proof.json
wrong "a node's enrollment request as --checkpoint" 1 \
    "--checkpoint n-politie-mn/identity.request is the enrollment request of node 'politie-mn'" \
    -- verify --db ex "${A[@]}" --checkpoint n-politie-mn/identity.request
wrong "an export folder as --checkpoint" 1 \
    "--checkpoint ex is an audit export (a folder made by keten-audit export), not a file" \
    -- verify --db ex "${A[@]}" --checkpoint ex
wrong "a node's key file as --checkpoint of report" 1 \
    "--checkpoint n-politie-mn/identity.secret is the secret key file of node 'politie-mn'" \
    -- report --db ex "${A[@]}" --checkpoint n-politie-mn/identity.secret --out r.html
check "no report was written" test ! -e r.html

wrong "a garbage --anchor" 1 "--anchor garbage.pub is not a network anchor" \
    "give the network's network.pub, written by keten-keys init" -- verify --db ex --anchor garbage.pub
wrong "an empty --anchor" 1 "--anchor empty.note is an empty file, not a network anchor" \
    -- verify --db ex --anchor empty.note
wrong "a directory file as --anchor (it was exit 3)" 1 \
    "--anchor dir.v1 is a signed directory (network riec-test, version 1), not a network anchor" \
    "give the network's network.pub, written by keten-keys init" -- verify --db ex --anchor dir.v1
wrong "a node's enrollment request as --anchor (it was exit 3)" 1 \
    "--anchor n-politie-mn/identity.request is the enrollment request of node 'politie-mn'" \
    -- check-proof proof.json --anchor n-politie-mn/identity.request
wrong "a node's key file as --anchor" 1 \
    "--anchor n-politie-mn/identity.secret is the secret key file of node 'politie-mn' (role police" \
    -- verify --db ex --anchor n-politie-mn/identity.secret
wrong "an administrator's public key as --anchor" 1 \
    "--anchor admin/admin-1.pub is an administrator's public key file" \
    -- report --db ex --anchor admin/admin-1.pub --out r.html
wrong "a folder as --anchor" 1 "--anchor admin is an administrators' folder" \
    -- verify --db ex --anchor admin

wrong "a checkpoint note as the proof bundle" 1 \
    "ex/checkpoint is a checkpoint note (origin keten/riec-test, tree size" "not a proof bundle" \
    "give the JSON file written by 'keten-audit prove" -- check-proof ex/checkpoint "${A[@]}"
wrong "a directory file as the proof bundle" 1 "dir.v1 is a signed directory" "not a proof bundle" \
    -- check-proof dir.v1 "${A[@]}"
wrong "an empty proof bundle" 1 "empty.note is an empty file, not a proof bundle" \
    -- check-proof empty.note "${A[@]}"
wrong "an export folder as the proof bundle" 1 "ex is an audit export" "not a proof bundle" \
    -- check-proof ex "${A[@]}"

wrong "a directory file as --db" 1 "dir.v1 is a signed directory (network riec-test, version 1), not a folder" \
    "give a broker home" -- replay --db dir.v1
wrong "a checkpoint note as --db" 1 "ex/checkpoint is a checkpoint note" "not a folder" \
    -- stats --db ex/checkpoint
wrong "a node's home as --db" 1 "n-politie-mn is the home of partner node 'politie-mn' (role police), not a broker home or an audit export" \
    -- prove --db n-politie-mn "$MSG_Q"
wrong "a folder inside the export as --db" 1 "ex/keten is a folder inside an audit export" \
    -- verify --db ex/keten "${A[@]}"
wrong "a directory file as export's --db" 1 "dir.v1 is a signed directory" "not a folder" \
    -- export --db dir.v1 --out x-new

wrong "an export folder as prove's --out" 1 \
    "--out ex is an audit export (a folder made by keten-audit export), not a file" \
    "give the name of the file to write (such as proof.json)" -- prove --db ex "$MSG_Q" --out ex
wrong "a node's home as report's --out" 1 "--out n-politie-mn is the home of partner node 'politie-mn'" \
    "give the name of the file to write (such as report.html)" -- report --db ex --out n-politie-mn
check "nothing was left beside them" test -z "$(find . -maxdepth 1 -name '*.tmp*')"

# The twins: the right files are accepted.
run "$AUDIT" report --db ex "${A[@]}" --checkpoint ex/checkpoint --out r.html
expect 0 "control: report with the anchor and a checkpoint note"
run "$AUDIT" prove --db ex "$MSG_Q" --out p-again.json
expect 0 "control: prove to a file"
run "$AUDIT" check-proof p-again.json "${A[@]}"
expect 0 "control: that bundle holds"
run "$AUDIT" stats --db ex
expect 0 "control: stats on the export"
done_testing
