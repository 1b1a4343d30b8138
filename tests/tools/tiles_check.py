#!/usr/bin/env python3
"""tiles_check.py - an independent check of a keten-audit export, written
from the C2SP specifications (tlog-tiles, tlog-checkpoint, signed-note) and
RFC 9162 alone, sharing no code with keten.

    tiles_check.py AUDIT_DIR [--log-key NAME=BASE64_PUBLIC_KEY]

It reads keten/manifest (the number of records N) and `checkpoint` (size S,
root), then:
  1. parses every entry bundle of the tree of N records (uint16 big-endian
     lengths; keten's extension 0xffff + uint32 for records of 65535 bytes
     or more), each bundle exactly its width, nothing after it;
  2. recomputes every leaf hash and every level-8k subtree hash from the
     entries and compares each with the hash tiles of the tree of N
     records (each tile exactly its width times 32 bytes);
  3. computes the root of S records as a tlog-tiles client does, from the
     tiles of the tree of size S only (the checkpoint's partial tiles), and
     from the entry bundles of that tree, and requires both to equal the
     checkpoint's root;
  4. with --log-key, verifies the checkpoint's Ed25519 signature line by
     that key (signed-note: key hash = SHA-256(name || 0x0a || 0x01 || key)
     [:4], signature over the note's text), with python3-cryptography.

Prints one JSON object and exits 0 when everything holds; prints the first
problem on stderr and exits 1 otherwise.
"""
import base64
import hashlib
import json
import os
import sys

WIDTH = 256
HEIGHT = 8
FORMAT_LINE = "keten-audit-export 1"
DASH = "\u2014 "


class Bad(Exception):
    pass


def sha(b):
    return hashlib.sha256(b).digest()


def leaf_hash(b):
    return sha(b"\x00" + b)


def node_hash(left, right):
    return sha(b"\x01" + left + right)


def mth(hashes):
    """RFC 9162 MTH over a list of leaf hashes."""
    n = len(hashes)
    if n == 0:
        return sha(b"")
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def tile_path(level, n, width):
    groups = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    parts = ["x%03d" % g for g in groups[:-1]] + ["%03d" % groups[-1]]
    base = "tile/" + ("entries" if level < 0 else str(level)) + "/" + "/".join(parts)
    return base + ("" if width == WIDTH else ".p/%d" % width)


def read(root, rel):
    path = os.path.join(root, rel)
    if os.path.islink(path) or not os.path.isfile(path):
        raise Bad("%s is missing or not a plain file" % rel)
    with open(path, "rb") as f:
        return f.read()


def width_of(count, n):
    return WIDTH if (n + 1) * WIDTH <= count else count % WIDTH


def read_entries(root, size):
    leaves = []
    for n in range((size + WIDTH - 1) // WIDTH):
        w = width_of(size, n)
        rel = tile_path(-1, n, w)
        data = read(root, rel)
        off = 0
        for j in range(w):
            i = n * WIDTH + j
            if off + 2 > len(data):
                raise Bad("%s: record %d: no room for its length" % (rel, i))
            ln = int.from_bytes(data[off:off + 2], "big")
            off += 2
            if ln == 0xFFFF:
                if off + 4 > len(data):
                    raise Bad("%s: record %d: no room for its long length" % (rel, i))
                ln = int.from_bytes(data[off:off + 4], "big")
                off += 4
                if ln < 0xFFFF:
                    raise Bad("%s: record %d: a long length below 65535" % (rel, i))
            if off + ln > len(data):
                raise Bad("%s: record %d: length %d past the end of the bundle" % (rel, i, ln))
            leaves.append(leaf_hash(data[off:off + ln]))
            off += ln
        if off != len(data):
            raise Bad("%s: %d bytes after its last record" % (rel, len(data) - off))
    return leaves


class Tiles:
    """The hash tiles of the tree of `size` records, as a client reads them."""

    def __init__(self, root, size):
        self.root, self.size, self.cache = root, size, {}

    def node(self, level, index):
        tl = level // HEIGHT
        count = self.size >> level
        if index >= count:
            raise Bad("no tile hash %d of level %d in a tree of %d" % (index, level, self.size))
        n = index // WIDTH
        w = width_of(count, n)
        key = (tl, n, w)
        if key not in self.cache:
            rel = tile_path(tl, n, w)
            data = read(self.root, rel)
            if len(data) != 32 * w:
                raise Bad("%s is %d bytes, a tile of %d hashes is %d" % (rel, len(data), w, 32 * w))
            self.cache[key] = data
        j = index % WIDTH
        return self.cache[key][32 * j:32 * j + 32]

    def range_hash(self, a, b):
        n = b - a
        if n == 0:
            return sha(b"")
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            if level % HEIGHT == 0 and a % n == 0:
                return self.node(level, a >> level)
        k = 1
        while k * 2 < n:
            k *= 2
        return node_hash(self.range_hash(a, a + k), self.range_hash(a + k, b))


def parse_note(text):
    if "\n\n" not in text:
        raise Bad("checkpoint: no empty line between the text and the signatures")
    body, sigs = text.split("\n\n", 1)
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise Bad("checkpoint: fewer than three lines (origin, size, root)")
    origin, size_s, root_b64 = lines[0], lines[1], lines[2]
    if not size_s.isdigit() or (len(size_s) > 1 and size_s[0] == "0"):
        raise Bad("checkpoint: the size line is not a decimal number")
    root = base64.b64decode(root_b64, validate=True)
    if len(root) != 32:
        raise Bad("checkpoint: the root hash is not 32 bytes")
    signatures = []
    for line in sigs.split("\n"):
        if line == "":
            continue
        if not line.startswith(DASH):
            raise Bad("checkpoint: a line after the text that is not a signature")
        name, _, sig = line[len(DASH):].rpartition(" ")
        signatures.append((name, base64.b64decode(sig, validate=True)))
    return body, origin, int(size_s), root, signatures


def check_signature(body, signatures, spec):
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise Bad("--log-key needs python3-cryptography (scripts/deps.sh --test installs it)")
    name, _, key_b64 = spec.partition("=")
    pk = base64.b64decode(key_b64, validate=True)
    if len(pk) != 32:
        raise Bad("--log-key: the key is not 32 bytes")
    key_hash = sha(name.encode() + b"\n\x01" + pk)[:4]
    for sname, sig in signatures:
        if sname == name and len(sig) == 68 and sig[:4] == key_hash:
            try:
                Ed25519PublicKey.from_public_bytes(pk).verify(sig[4:], body.encode())
                return True
            except InvalidSignature:
                raise Bad("checkpoint: the signature of %s does not verify" % name)
    raise Bad("checkpoint: no signature line of %s with that key" % name)


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--log-key"):
        print(__doc__, file=sys.stderr)
        return 2
    root = argv[1]
    manifest = read(root, "keten/manifest").decode()
    mlines = manifest.split("\n")
    if len(mlines) != 3 or mlines[0] != FORMAT_LINE or mlines[2] != "" \
            or not mlines[1].startswith("size ") or not mlines[1][5:].isdigit():
        raise Bad("keten/manifest is not '%s' and 'size N'" % FORMAT_LINE)
    n = int(mlines[1][5:])
    body, origin, s, cp_root, signatures = parse_note(read(root, "checkpoint").decode())
    if s > n:
        raise Bad("the checkpoint's size %d is beyond the %d records exported" % (s, n))
    leaves = read_entries(root, n)
    # Every stored hash against the entries: level 0, 8, 16, ...
    tiles_n = Tiles(root, n)
    level, hashes = 0, leaves
    while len(hashes) > 0:
        for i, h in enumerate(hashes):
            if tiles_n.node(level, i) != h:
                raise Bad("the tile hash %d of level %d differs from the entries" % (i, level))
        hashes = [mth(hashes[i:i + WIDTH]) for i in range(0, len(hashes) - WIDTH + 1, WIDTH)]
        level += HEIGHT
    # The bundles of the tree of S records (its partial bundle) hold the same.
    if read_entries(root, s) != leaves[:s]:
        raise Bad("the entry bundles of the tree of %d records differ from the longer tree's" % s)
    root_entries = mth(leaves[:s])
    root_tiles = Tiles(root, s).range_hash(0, s)
    if root_tiles != cp_root:
        raise Bad("the root of %d records from the tiles differs from the checkpoint's" % s)
    if root_entries != cp_root:
        raise Bad("the root of %d records from the entries differs from the checkpoint's" % s)
    signed = check_signature(body, signatures, argv[3]) if len(argv) == 4 else False
    print(json.dumps({"origin": origin, "checkpoint_size": s, "records": n,
                      "root": cp_root.hex(), "full_root": mth(leaves).hex(),
                      "signature_verified": signed}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (Bad, ValueError, UnicodeDecodeError) as e:
        print("tiles_check: %s" % e, file=sys.stderr)
        sys.exit(1)
