#!/usr/bin/env bash
# The export checked by an implementation that is not keten's:
# tests/tools/tiles_check.py (Python standard library, and
# python3-cryptography for Ed25519) reads the tlog-tiles layout that
# keten-audit export wrote from a real broker's log of more than 256 records
# (so a full level-0 tile, a level-1 tile and partial tiles), recomputes
# every tile hash and the root from the entry bundles, checks them against
# the checkpoint's root, and the checkpoint's signature with the broker's
# log key from the directory. Also with a record the checkpoint does not
# cover (its own partial tiles for the checkpoint's size). The reject twins:
# one byte of an entry, one tile hash, the checkpoint's root or another key
# make the independent check fail.
. "$(dirname "$0")/audit_lib.sh"

CHECK=$(realpath "$(dirname "$0")/../tools/tiles_check.py")
make_log || done_testing
peer gemeente-diemen submit --to politie-mn --json signal.json --count 250
check "250 more signals are accepted" test "$(jget 'len(E("ack"))')" = 250
sleep 1 # a checkpoint covers them
stop_broker
check "the broker stops" test "$BRC" -eq 0
run "$AUDIT" verify --db broker --anchor admin/network.pub --json
expect 0 "the log verifies"
N=$(jv 'D["records"]')
check "the log holds more than 256 records ($N)" test "$N" -gt 256
ROOT=$(jv 'D["root"]')

run "$KEYS" show dir.v2 --anchor admin/network.pub --json
expect 0 "the directory names the broker's log key"
LOGKEY=$(jv '[n["log_pk"] for n in D["nodes"] if n.get("role") == "broker"][0]')
check "the broker's log key is a 32-byte key in base64" \
    test "$(printf '%s' "$LOGKEY" | base64 -d | wc -c)" = 32

run "$AUDIT" export --db broker --out ex
expect 0 "export the log"
check "the export holds a full level-0 tile and a level-1 tile" \
    test -f ex/tile/0/000 -a -f ex/tile/1/000.p/$((N / 256))
run "$PY" "$CHECK" ex --log-key "broker=$LOGKEY"
expect 0 "the independent checker accepts the export: entries, tiles, root, signature"
jo "D['records'] == $N and D['checkpoint_size'] == $N and D['full_root'] == '$ROOT'" \
    "it finds the records and the root keten-audit verify found"
jo 'D["signature_verified"] and D["origin"] == "keten/riec-test"' \
    "and the checkpoint's Ed25519 signature by the broker's log key"

# A record the latest checkpoint does not cover: the export then holds the
# partial tiles of both sizes.
cp -a broker more
run "$EDIT" append-submitted --store more/store --key n-gemeente-diemen/identity.secret \
    --to belastingdienst --network riec-test --directory-version 2
expect 0 "append one record no checkpoint covers (a copy)"
run "$AUDIT" export --db more --out ex-more
expect 0 "export it"
run "$PY" "$CHECK" ex-more --log-key "broker=$LOGKEY"
expect 0 "the checker reads the checkpoint's own partial tiles and the longer tree's"
jo "D['records'] == $((N + 1)) and D['checkpoint_size'] == $N and D['root'] == '$ROOT'" \
    "the checkpoint covers $N of the $((N + 1)) records, with the same root"

# ---- reject twins -----------------------------------------------------------------

# flip FILE OFFSET: one bit of one byte.
flip() {
    "$PY" - "$1" "$2" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[off] ^= 1
open(p, "wb").write(bytes(b))
PY
}
cp -a ex x-entry
flip x-entry/tile/entries/000 40
run "$PY" "$CHECK" x-entry --log-key "broker=$LOGKEY"
expect 1 "one byte of a record changed: the checker refuses"
says "differs from the entries" "it says the tiles no longer match the entries"

cp -a ex x-tile
flip x-tile/tile/0/000 100
run "$PY" "$CHECK" x-tile --log-key "broker=$LOGKEY"
expect 1 "one byte of a leaf hash in a tile changed: the checker refuses"
says "the tile hash 3 of level 0 differs from the entries" "it names the hash"

cp -a ex x-root
"$PY" - x-root/checkpoint <<'PY'
import sys, base64
p = sys.argv[1]
lines = open(p).read().split("\n")
root = bytearray(base64.b64decode(lines[2]))
root[0] ^= 1
lines[2] = base64.b64encode(bytes(root)).decode()
open(p, "w").write("\n".join(lines))
PY
run "$PY" "$CHECK" x-root --log-key "broker=$LOGKEY"
expect 1 "the checkpoint's root changed: the checker refuses"
says "differs from the checkpoint's" "it says the root differs"

OTHER=$(printf '%s' "$LOGKEY" | base64 -d | "$PY" -c 'import sys,base64; b=bytearray(sys.stdin.buffer.read()); b[0]^=1; print(base64.b64encode(bytes(b)).decode())')
run "$PY" "$CHECK" ex --log-key "broker=$OTHER"
expect 1 "another key than the broker's: the checker refuses"
says "no signature line of broker with that key" "it says no signature of that key"
done_testing
