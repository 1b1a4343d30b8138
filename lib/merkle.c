#include "merkle.h"
#include "sha256.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Every range of leaves [a, b) that the RFC's recursions (MTH, PATH,
 * SUBPROOF) visit starting from [0, n) has the property that its left part
 * [a, a + k) (k the largest power of two below b - a) is a complete,
 * aligned subtree. range_hash() reads such subtrees whole from a "source"
 * (the array of leaf hashes, or the LMDB node table) and only recurses
 * down the right edge. It stays correct for any range: an unaligned left
 * part is simply recursed into as well.
 */

#define LEAF_PREFIX 0x00
#define NODE_PREFIX 0x01
#define LEAF_KEY_BYTES 8
#define NODE_KEY_BYTES KETEN_MERKLE_NODE_KEY_BYTES
#define PREFIX_MAX 64 /* bytes of a log's name prefix */
#define DBI_NAME_MAX (PREFIX_MAX + 5) /* prefix + "leaf"/"node" + NUL */

struct keten_merkle_log {
    MDB_dbi leaf_dbi;
    MDB_dbi node_dbi;
};

/* Remembered subtree hashes (see keten_merkle_log_memo in merkle.h). */
typedef struct memo_slot {
    uint64_t a, b; /* MTH(D[a:b]); b == 0: empty slot */
    keten_hash h;
} memo_slot;

struct keten_merkle_log_memo {
    size_t mask;
    memo_slot *slots;
};

/* Where complete subtree hashes come from. */
typedef struct source {
    const keten_hash *leaves; /* in-memory leaf hashes, or NULL */
    const keten_merkle_log *log; /* else this log ... */
    MDB_txn *txn; /* ... read in this transaction */
    keten_merkle_log_memo *memo; /* NULL, or hashes remembered from earlier proofs */
} source;

/* ---- hashing ------------------------------------------------------------- */

void keten_merkle_leaf_hash(const uint8_t *leaf, size_t len, keten_hash out)
{
    static const uint8_t prefix = LEAF_PREFIX;
    keten_sha256_state st;
    keten_sha256_init(&st);
    keten_sha256_update(&st, &prefix, 1);
    if (len > 0) {
        keten_sha256_update(&st, leaf, len);
    }
    keten_sha256_final(&st, out);
}

void keten_merkle_node_hash(const keten_hash left, const keten_hash right, keten_hash out)
{
    uint8_t buf[1 + 2 * KETEN_HASH_BYTES];
    buf[0] = NODE_PREFIX;
    memcpy(buf + 1, left, KETEN_HASH_BYTES);
    memcpy(buf + 1 + KETEN_HASH_BYTES, right, KETEN_HASH_BYTES);
    keten_sha256(out, buf, sizeof buf);
}

/* Largest power of two strictly smaller than n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
    uint64_t k = 1;
    while (k < n - k) {
        k <<= 1;
    }
    return k;
}

static bool is_pow2(uint64_t n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

static unsigned log2_u64(uint64_t n)
{
    unsigned l = 0;
    while (n > 1) {
        n >>= 1;
        l++;
    }
    return l;
}

/* ---- LMDB helpers -------------------------------------------------------- */

static keten_err store_err(int rc, const char *what)
{
    if (rc == MDB_MAP_FULL) {
        return keten_err_set(KETEN_ERR_STORE_FULL,
            "the LMDB map is full while %s; enlarge the map or free disk space", what);
    }
    return keten_err_set(KETEN_ERR_STORE, "LMDB failed while %s: %s", what, mdb_strerror(rc));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

bool keten_merkle_node_key(uint8_t out[static NODE_KEY_BYTES], unsigned level, uint64_t index)
{
    /* The last leaf, (index + 1) * 2^level - 1, is at most 2^64 - 2 (a tree
     * has at most 2^64 - 1 leaves). */
    if (level >= 64 || index >= (UINT64_MAX >> level)) {
        return false;
    }
    put_be64(out, ((index + 1) << level) - 1);
    out[8] = (uint8_t)level;
    return true;
}

static keten_err node_key(uint8_t key[NODE_KEY_BYTES], unsigned level, uint64_t index)
{
    if (!keten_merkle_node_key(key, level, index)) {
        return keten_err_set(KETEN_ERR_INVALID, "no tree has a subtree at level %u, index %llu",
            level, (unsigned long long)index);
    }
    return KETEN_OK;
}

static keten_err log_get_node(
    const keten_merkle_log *log, MDB_txn *txn, unsigned level, uint64_t index, keten_hash out)
{
    uint8_t kb[NODE_KEY_BYTES];
    keten_err err = node_key(kb, level, index);
    if (err != KETEN_OK) {
        return err;
    }
    MDB_val key = { .mv_size = sizeof kb, .mv_data = kb };
    MDB_val val;
    int rc = mdb_get(txn, log->node_dbi, &key, &val);
    if (rc == MDB_NOTFOUND) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "Merkle node (level %u, index %llu) is missing from the log; the store is damaged",
            level, (unsigned long long)index);
    }
    if (rc != 0) {
        return store_err(rc, "reading a Merkle node");
    }
    if (val.mv_size != KETEN_HASH_BYTES) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "Merkle node (level %u, index %llu) has %zu bytes instead of %d; the store is damaged",
            level, (unsigned long long)index, val.mv_size, KETEN_HASH_BYTES);
    }
    memcpy(out, val.mv_data, KETEN_HASH_BYTES);
    return KETEN_OK;
}

static keten_err log_put_node(
    const keten_merkle_log *log, MDB_txn *txn, unsigned level, uint64_t index, const keten_hash h)
{
    uint8_t kb[NODE_KEY_BYTES];
    keten_err err = node_key(kb, level, index);
    if (err != KETEN_OK) {
        return err;
    }
    MDB_val key = { .mv_size = sizeof kb, .mv_data = kb };
    MDB_val val = { .mv_size = KETEN_HASH_BYTES, .mv_data = (void *)h };
    int rc = mdb_put(txn, log->node_dbi, &key, &val, MDB_APPEND);
    if (rc == MDB_KEYEXIST) {
        /* The key is not past the table's last one: it is there already,
         * or the table holds hashes past the log's end. */
        rc = mdb_get(txn, log->node_dbi, &key, &val);
        if (rc == MDB_NOTFOUND) {
            return keten_err_set(KETEN_ERR_INCONSISTENT,
                "the log's node table holds hashes past its last leaf (writing level %u, index "
                "%llu); the log was tampered with or damaged",
                level, (unsigned long long)index);
        }
        if (rc != 0) {
            return store_err(rc, "reading a Merkle node");
        }
        if (val.mv_size == KETEN_HASH_BYTES
            && sodium_memcmp(val.mv_data, h, KETEN_HASH_BYTES) == 0) {
            return KETEN_OK;
        }
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "Merkle node (level %u, index %llu) already holds a different hash; the log was "
            "tampered with or damaged",
            level, (unsigned long long)index);
    }
    if (rc != 0) {
        return store_err(rc, "writing a Merkle node");
    }
    return KETEN_OK;
}

/* ---- sources of complete subtrees ---------------------------------------- */

/* Hash of the complete subtree of 2^level leaf hashes starting at leaves. */
static void mem_subtree(const keten_hash *leaves, unsigned level, keten_hash out)
{
    if (level == 0) {
        memcpy(out, leaves[0], KETEN_HASH_BYTES);
        return;
    }
    keten_hash l, r;
    uint64_t half = (uint64_t)1 << (level - 1);
    mem_subtree(leaves, level - 1, l);
    mem_subtree(leaves + half, level - 1, r);
    keten_merkle_node_hash(l, r, out);
}

/* Complete aligned subtree (level, index): leaves [index << level, (index+1) << level). */
static keten_err src_node(const source *s, unsigned level, uint64_t index, keten_hash out)
{
    if (s->leaves != NULL) {
        mem_subtree(s->leaves + (index << level), level, out);
        return KETEN_OK;
    }
    return log_get_node(s->log, s->txn, level, index, out);
}

static memo_slot *memo_slot_of(const keten_merkle_log_memo *m, uint64_t a, uint64_t b)
{
    uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    return &m->slots[x & m->mask];
}

static keten_err range_hash_uncached(const source *s, uint64_t a, uint64_t b, keten_hash out);

/* MTH(D[a:b]) for 0 <= a < b. */
static keten_err range_hash(const source *s, uint64_t a, uint64_t b, keten_hash out)
{
    if (s->memo == NULL) {
        return range_hash_uncached(s, a, b, out);
    }
    memo_slot *slot = memo_slot_of(s->memo, a, b);
    if (slot->b == b && slot->a == a) {
        memcpy(out, slot->h, KETEN_HASH_BYTES);
        return KETEN_OK;
    }
    keten_err err = range_hash_uncached(s, a, b, out);
    if (err == KETEN_OK) {
        slot->a = a;
        slot->b = b;
        memcpy(slot->h, out, KETEN_HASH_BYTES);
    }
    return err;
}

static keten_err range_hash_uncached(const source *s, uint64_t a, uint64_t b, keten_hash out)
{
    uint64_t n = b - a;
    if (is_pow2(n) && a % n == 0) {
        return src_node(s, log2_u64(n), a / n, out);
    }
    uint64_t k = split_point(n);
    keten_hash l, r;
    keten_err err = range_hash(s, a, a + k, l);
    if (err != KETEN_OK) {
        return err;
    }
    err = range_hash(s, a + k, b, r);
    if (err != KETEN_OK) {
        return err;
    }
    keten_merkle_node_hash(l, r, out);
    return KETEN_OK;
}

static keten_err append_hash(keten_hash *out, size_t *len, const keten_hash h)
{
    if (*len >= KETEN_MERKLE_MAX_PROOF) {
        return keten_err_set(
            KETEN_ERR_INVALID, "Merkle proof longer than %d hashes", KETEN_MERKLE_MAX_PROOF);
    }
    memcpy(out[*len], h, KETEN_HASH_BYTES);
    (*len)++;
    return KETEN_OK;
}

/* RFC 9162 2.1.3.1, PATH(m, D[a:b]) with absolute index m, a <= m < b. */
static keten_err path_rec(
    const source *s, uint64_t m, uint64_t a, uint64_t b, keten_hash *path, size_t *len)
{
    if (b - a == 1) {
        return KETEN_OK;
    }
    uint64_t k = split_point(b - a);
    keten_hash sib;
    keten_err err;
    if (m < a + k) {
        err = path_rec(s, m, a, a + k, path, len);
        if (err == KETEN_OK) {
            err = range_hash(s, a + k, b, sib);
        }
    } else {
        err = path_rec(s, m, a + k, b, path, len);
        if (err == KETEN_OK) {
            err = range_hash(s, a, a + k, sib);
        }
    }
    if (err != KETEN_OK) {
        return err;
    }
    return append_hash(path, len, sib);
}

/* RFC 9162 2.1.4.1, SUBPROOF(m, D[a:b], flag) with absolute old size m,
 * a < m <= b. */
static keten_err subproof_rec(
    const source *s, uint64_t m, uint64_t a, uint64_t b, bool flag, keten_hash *proof, size_t *len)
{
    keten_hash h;
    keten_err err;
    if (m == b) {
        if (flag) {
            return KETEN_OK;
        }
        err = range_hash(s, a, b, h);
        if (err != KETEN_OK) {
            return err;
        }
        return append_hash(proof, len, h);
    }
    uint64_t k = split_point(b - a);
    if (m <= a + k) {
        err = subproof_rec(s, m, a, a + k, flag, proof, len);
        if (err == KETEN_OK) {
            err = range_hash(s, a + k, b, h);
        }
    } else {
        err = subproof_rec(s, m, a + k, b, false, proof, len);
        if (err == KETEN_OK) {
            err = range_hash(s, a, a + k, h);
        }
    }
    if (err != KETEN_OK) {
        return err;
    }
    return append_hash(proof, len, h);
}

static keten_err src_root(const source *s, uint64_t size, keten_hash out)
{
    if (size == 0) {
        keten_sha256(out, NULL, 0);
        return KETEN_OK;
    }
    return range_hash(s, 0, size, out);
}

static keten_err src_inclusion(
    const source *s, uint64_t index, uint64_t size, keten_hash *path, size_t *path_len)
{
    if (path == NULL || path_len == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "inclusion proof: no output buffer");
    }
    *path_len = 0;
    if (index >= size) {
        return keten_err_set(KETEN_ERR_INVALID,
            "inclusion proof: index %llu is not in a tree of %llu leaves",
            (unsigned long long)index, (unsigned long long)size);
    }
    keten_err err = path_rec(s, index, 0, size, path, path_len);
    if (err != KETEN_OK) {
        *path_len = 0;
    }
    return err;
}

static keten_err src_consistency(
    const source *s, uint64_t old_size, uint64_t new_size, keten_hash *proof, size_t *proof_len)
{
    if (proof == NULL || proof_len == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "consistency proof: no output buffer");
    }
    *proof_len = 0;
    if (old_size > new_size) {
        return keten_err_set(KETEN_ERR_INVALID,
            "consistency proof: old size %llu is larger than new size %llu",
            (unsigned long long)old_size, (unsigned long long)new_size);
    }
    if (old_size == 0 || old_size == new_size) {
        return KETEN_OK;
    }
    keten_err err = subproof_rec(s, old_size, 0, new_size, true, proof, proof_len);
    if (err != KETEN_OK) {
        *proof_len = 0;
    }
    return err;
}

/* ---- pure functions ------------------------------------------------------ */

void keten_merkle_root(const keten_hash *leaf_hashes, uint64_t n, keten_hash out)
{
    source s = { .leaves = leaf_hashes };
    if (n > 0 && leaf_hashes == NULL) {
        /* Programming error; give a hash no tree has rather than crash. */
        memset(out, 0, KETEN_HASH_BYTES);
        return;
    }
    /* In-memory sources cannot fail. */
    if (src_root(&s, n, out) != KETEN_OK) {
        memset(out, 0, KETEN_HASH_BYTES);
    }
}

keten_err keten_merkle_inclusion_proof(
    const keten_hash *leaf_hashes, uint64_t n, uint64_t index, keten_hash *path, size_t *path_len)
{
    if (leaf_hashes == NULL && n > 0) {
        return keten_err_set(KETEN_ERR_INVALID, "inclusion proof: no leaf hashes");
    }
    source s = { .leaves = leaf_hashes };
    return src_inclusion(&s, index, n, path, path_len);
}

keten_err keten_merkle_consistency_proof(const keten_hash *leaf_hashes, uint64_t old_size,
    uint64_t new_size, keten_hash *proof, size_t *proof_len)
{
    if (leaf_hashes == NULL && new_size > 0) {
        return keten_err_set(KETEN_ERR_INVALID, "consistency proof: no leaf hashes");
    }
    source s = { .leaves = leaf_hashes };
    return src_consistency(&s, old_size, new_size, proof, proof_len);
}

keten_err keten_merkle_verify_inclusion(const keten_hash leaf_hash, uint64_t index, uint64_t size,
    const keten_hash *path, size_t path_len, const keten_hash root)
{
    if (path_len > KETEN_MERKLE_MAX_PROOF || (path_len > 0 && path == NULL)) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "inclusion proof of %zu hashes is longer than any valid proof", path_len);
    }
    /* RFC 9162 2.1.3.2, step by step. */
    if (index >= size) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "inclusion proof: leaf index %llu is not below tree size %llu",
            (unsigned long long)index, (unsigned long long)size);
    }
    uint64_t fn = index;
    uint64_t sn = size - 1;
    keten_hash r;
    memcpy(r, leaf_hash, KETEN_HASH_BYTES);
    for (size_t i = 0; i < path_len; i++) {
        if (sn == 0) {
            return keten_err_set(KETEN_ERR_INCONSISTENT,
                "inclusion proof for leaf %llu of %llu has too many hashes (%zu)",
                (unsigned long long)index, (unsigned long long)size, path_len);
        }
        if ((fn & 1) != 0 || fn == sn) {
            keten_merkle_node_hash(path[i], r, r);
            if ((fn & 1) == 0) {
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            keten_merkle_node_hash(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "inclusion proof for leaf %llu of %llu has too few hashes (%zu)",
            (unsigned long long)index, (unsigned long long)size, path_len);
    }
    if (sodium_memcmp(r, root, KETEN_HASH_BYTES) != 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "inclusion proof for leaf %llu does not lead to the root of the %llu-leaf tree",
            (unsigned long long)index, (unsigned long long)size);
    }
    return KETEN_OK;
}

keten_err keten_merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
    const keten_hash old_root, const keten_hash new_root, const keten_hash *proof, size_t proof_len)
{
    if (old_size > new_size) {
        return keten_err_set(KETEN_ERR_INVALID,
            "consistency: old tree size %llu is larger than new tree size %llu",
            (unsigned long long)old_size, (unsigned long long)new_size);
    }
    if (proof_len > KETEN_MERKLE_MAX_PROOF || (proof_len > 0 && proof == NULL)) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "consistency proof of %zu hashes is longer than any valid proof", proof_len);
    }
    if (old_size == 0) {
        if (proof_len != 0) {
            return keten_err_set(KETEN_ERR_INCONSISTENT,
                "consistency from the empty tree needs an empty proof, got %zu hashes", proof_len);
        }
        return KETEN_OK;
    }
    if (old_size == new_size) {
        if (proof_len != 0) {
            return keten_err_set(KETEN_ERR_INCONSISTENT,
                "consistency between equal sizes needs an empty proof, got %zu hashes", proof_len);
        }
        if (sodium_memcmp(old_root, new_root, KETEN_HASH_BYTES) != 0) {
            return keten_err_set(KETEN_ERR_INCONSISTENT,
                "two different roots for the same tree size %llu", (unsigned long long)old_size);
        }
        return KETEN_OK;
    }
    /* RFC 9162 2.1.4.2 for 0 < first < second. */
    if (proof_len == 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT, "consistency proof from %llu to %llu is empty",
            (unsigned long long)old_size, (unsigned long long)new_size);
    }
    /* Step 2: when first is a power of two, first_hash is prepended. */
    bool prepend = is_pow2(old_size);
    size_t total = proof_len + (prepend ? 1 : 0);
#define PROOF_AT(i) (prepend ? ((i) == 0 ? old_root : proof[(i)-1]) : proof[(i)])
    uint64_t fn = old_size - 1;
    uint64_t sn = new_size - 1;
    while ((fn & 1) != 0) {
        fn >>= 1;
        sn >>= 1;
    }
    keten_hash fr, sr;
    memcpy(fr, PROOF_AT(0), KETEN_HASH_BYTES);
    memcpy(sr, PROOF_AT(0), KETEN_HASH_BYTES);
    for (size_t i = 1; i < total; i++) {
        const uint8_t *c = PROOF_AT(i);
        if (sn == 0) {
            return keten_err_set(KETEN_ERR_INCONSISTENT,
                "consistency proof from %llu to %llu has too many hashes (%zu)",
                (unsigned long long)old_size, (unsigned long long)new_size, proof_len);
        }
        if ((fn & 1) != 0 || fn == sn) {
            keten_merkle_node_hash(c, fr, fr);
            keten_merkle_node_hash(c, sr, sr);
            if ((fn & 1) == 0) {
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            keten_merkle_node_hash(sr, c, sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
#undef PROOF_AT
    if (sn != 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "consistency proof from %llu to %llu has too few hashes (%zu)",
            (unsigned long long)old_size, (unsigned long long)new_size, proof_len);
    }
    if (sodium_memcmp(fr, old_root, KETEN_HASH_BYTES) != 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "consistency proof does not lead to the old root (size %llu)",
            (unsigned long long)old_size);
    }
    if (sodium_memcmp(sr, new_root, KETEN_HASH_BYTES) != 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "consistency proof does not lead to the new root (size %llu)",
            (unsigned long long)new_size);
    }
    return KETEN_OK;
}

/* ---- persistent log ------------------------------------------------------ */

keten_err keten_merkle_log_open(MDB_txn *txn, const char *prefix, keten_merkle_log **out)
{
    if (out == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_merkle_log_open: no output pointer");
    }
    *out = NULL;
    if (txn == NULL || prefix == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_merkle_log_open: no transaction or prefix");
    }
    size_t plen = strlen(prefix);
    if (plen > PREFIX_MAX) {
        return keten_err_set(KETEN_ERR_INVALID,
            "Merkle log prefix is %zu bytes long, at most %d are allowed", plen, PREFIX_MAX);
    }
    char name[DBI_NAME_MAX];
    keten_merkle_log *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "out of memory opening the Merkle log");
    }
    snprintf(name, sizeof name, "%sleaf", prefix);
    int rc = mdb_dbi_open(txn, name, MDB_CREATE, &self->leaf_dbi);
    if (rc == 0) {
        snprintf(name, sizeof name, "%snode", prefix);
        rc = mdb_dbi_open(txn, name, MDB_CREATE, &self->node_dbi);
    }
    if (rc != 0) {
        free(self);
        char what[DBI_NAME_MAX + 32];
        snprintf(what, sizeof what, "opening database %s", name);
        return store_err(rc, what);
    }
    /* An earlier version keyed the node table by level first: with two
     * leaves or more it holds the hash of leaf 1 under 0x00 x 8 || 0x01, a
     * key no subtree has now (a level-1 subtree never ends at leaf 0). */
    uint8_t old_key[NODE_KEY_BYTES] = { 0, 0, 0, 0, 0, 0, 0, 0, 1 };
    MDB_val ok = { .mv_size = sizeof old_key, .mv_data = old_key }, ov;
    rc = mdb_get(txn, self->node_dbi, &ok, &ov);
    if (rc == 0) {
        free(self);
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "the Merkle log %snode holds a hash under a key no subtree has in this version: it "
            "was written by an earlier version of keten (hashes keyed by level first), or "
            "altered; this version cannot read it: audit it with the keten-audit of the version "
            "that wrote it, and give this broker a new store",
            prefix);
    }
    if (rc != MDB_NOTFOUND) {
        free(self);
        return store_err(rc, "checking the layout of the log's node table");
    }
    *out = self;
    return KETEN_OK;
}

void keten_merkle_log_destroy(keten_merkle_log **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    free(*self_p);
    *self_p = NULL;
}

keten_err keten_merkle_log_size(const keten_merkle_log *self, MDB_txn *txn, uint64_t *size_out)
{
    if (self == NULL || txn == NULL || size_out == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_merkle_log_size: missing argument");
    }
    MDB_stat st;
    int rc = mdb_stat(txn, self->leaf_dbi, &st);
    if (rc != 0) {
        return store_err(rc, "counting the log's leaves");
    }
    *size_out = (uint64_t)st.ms_entries;
    return KETEN_OK;
}

keten_err keten_merkle_log_append(
    keten_merkle_log *self, MDB_txn *txn, const uint8_t *leaf, size_t len, uint64_t *index_out)
{
    if (self == NULL || txn == NULL || (leaf == NULL && len > 0)) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_merkle_log_append: missing argument");
    }
    if (len > KETEN_MERKLE_LEAF_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE,
            "log leaf of %zu bytes is over the limit of %u bytes", len, KETEN_MERKLE_LEAF_MAX);
    }
    uint64_t n;
    keten_err err = keten_merkle_log_size(self, txn, &n);
    if (err != KETEN_OK) {
        return err;
    }
    if (n == UINT64_MAX) {
        return keten_err_set(KETEN_ERR_STORE_FULL, "the Merkle log has reached 2^64 - 1 leaves");
    }

    uint8_t kb[LEAF_KEY_BYTES];
    put_be64(kb, n);
    MDB_val key = { .mv_size = sizeof kb, .mv_data = kb };
    MDB_val val = { .mv_size = len, .mv_data = (void *)(len > 0 ? leaf : kb) };
    int rc = mdb_put(txn, self->leaf_dbi, &key, &val, MDB_APPEND);
    if (rc == MDB_KEYEXIST) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the log's leaf table has keys at or past its size %llu; the store is damaged",
            (unsigned long long)n);
    }
    if (rc != 0) {
        return store_err(rc, "appending a log leaf");
    }

    keten_hash h;
    keten_merkle_leaf_hash(leaf, len, h);
    err = log_put_node(self, txn, 0, n, h);
    if (err != KETEN_OK) {
        return err;
    }
    /* Each subtree this leaf completes: its left sibling is complete too. */
    unsigned level = 0;
    uint64_t index = n;
    while ((index & 1) != 0) {
        keten_hash left;
        err = log_get_node(self, txn, level, index - 1, left);
        if (err != KETEN_OK) {
            return err;
        }
        keten_merkle_node_hash(left, h, h);
        level++;
        index >>= 1;
        err = log_put_node(self, txn, level, index, h);
        if (err != KETEN_OK) {
            return err;
        }
    }
    if (index_out != NULL) {
        *index_out = n;
    }
    return KETEN_OK;
}

static keten_err check_size(
    const keten_merkle_log *self, MDB_txn *txn, uint64_t size, const char *what)
{
    uint64_t n;
    keten_err err = keten_merkle_log_size(self, txn, &n);
    if (err != KETEN_OK) {
        return err;
    }
    if (size > n) {
        return keten_err_set(KETEN_ERR_INVALID, "%s: tree size %llu is larger than the log (%llu)",
            what, (unsigned long long)size, (unsigned long long)n);
    }
    return KETEN_OK;
}

keten_err keten_merkle_log_leaf(
    const keten_merkle_log *self, MDB_txn *txn, uint64_t index, const uint8_t **leaf, size_t *len)
{
    if (self == NULL || txn == NULL || leaf == NULL || len == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_merkle_log_leaf: missing argument");
    }
    if (index == UINT64_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "log leaf index out of range");
    }
    keten_err err = check_size(self, txn, index + 1, "reading a leaf");
    if (err != KETEN_OK) {
        return err;
    }
    uint8_t kb[LEAF_KEY_BYTES];
    put_be64(kb, index);
    MDB_val key = { .mv_size = sizeof kb, .mv_data = kb };
    MDB_val val;
    int rc = mdb_get(txn, self->leaf_dbi, &key, &val);
    if (rc == MDB_NOTFOUND) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "log leaf %llu is missing below the log's size; the store is damaged",
            (unsigned long long)index);
    }
    if (rc != 0) {
        return store_err(rc, "reading a log leaf");
    }
    *leaf = val.mv_data;
    *len = val.mv_size;
    return KETEN_OK;
}

keten_err keten_merkle_log_leaf_hash(
    const keten_merkle_log *self, MDB_txn *txn, uint64_t index, keten_hash out)
{
    if (self == NULL || txn == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_merkle_log_leaf_hash: missing argument");
    }
    if (index == UINT64_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "log leaf index out of range");
    }
    keten_err err = check_size(self, txn, index + 1, "reading a leaf hash");
    if (err != KETEN_OK) {
        return err;
    }
    return log_get_node(self, txn, 0, index, out);
}

keten_err keten_merkle_log_root(
    const keten_merkle_log *self, MDB_txn *txn, uint64_t size, keten_hash out)
{
    if (self == NULL || txn == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_merkle_log_root: missing argument");
    }
    keten_err err = check_size(self, txn, size, "root");
    if (err != KETEN_OK) {
        return err;
    }
    source s = { .log = self, .txn = txn };
    return src_root(&s, size, out);
}

keten_err keten_merkle_log_inclusion_proof(const keten_merkle_log *self, MDB_txn *txn,
    uint64_t index, uint64_t size, keten_hash *path, size_t *path_len)
{
    if (self == NULL || txn == NULL) {
        return keten_err_set(
            KETEN_ERR_INVALID, "keten_merkle_log_inclusion_proof: missing argument");
    }
    if (path_len != NULL) {
        *path_len = 0;
    }
    keten_err err = check_size(self, txn, size, "inclusion proof");
    if (err != KETEN_OK) {
        return err;
    }
    source s = { .log = self, .txn = txn };
    return src_inclusion(&s, index, size, path, path_len);
}

keten_err keten_merkle_log_consistency_proof(const keten_merkle_log *self, MDB_txn *txn,
    uint64_t old_size, uint64_t new_size, keten_hash *proof, size_t *proof_len)
{
    if (self == NULL || txn == NULL) {
        return keten_err_set(
            KETEN_ERR_INVALID, "keten_merkle_log_consistency_proof: missing argument");
    }
    if (proof_len != NULL) {
        *proof_len = 0;
    }
    keten_err err = check_size(self, txn, new_size, "consistency proof");
    if (err != KETEN_OK) {
        return err;
    }
    source s = { .log = self, .txn = txn };
    return src_consistency(&s, old_size, new_size, proof, proof_len);
}

/* ---- remembered subtree hashes ------------------------------------------ */

keten_err keten_merkle_log_memo_new(unsigned slots_log2, keten_merkle_log_memo **out)
{
    *out = NULL;
    if (slots_log2 < 4 || slots_log2 > 24) {
        return keten_err_set(KETEN_ERR_INVALID, "Merkle memo of 2^%u slots", slots_log2);
    }
    keten_merkle_log_memo *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "Merkle memo");
    }
    m->mask = ((size_t)1 << slots_log2) - 1;
    m->slots = calloc(m->mask + 1, sizeof *m->slots);
    if (m->slots == NULL) {
        free(m);
        return keten_err_set(KETEN_ERR_NOMEM, "Merkle memo of 2^%u slots", slots_log2);
    }
    *out = m;
    return KETEN_OK;
}

void keten_merkle_log_memo_clear(keten_merkle_log_memo *m)
{
    if (m != NULL) {
        memset(m->slots, 0, (m->mask + 1) * sizeof *m->slots);
    }
}

void keten_merkle_log_memo_destroy(keten_merkle_log_memo **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    free((*self_p)->slots);
    free(*self_p);
    *self_p = NULL;
}

keten_err keten_merkle_log_root_memo(const keten_merkle_log *self, MDB_txn *txn,
    keten_merkle_log_memo *memo, uint64_t size, keten_hash out)
{
    if (self == NULL || txn == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_merkle_log_root_memo: missing argument");
    }
    keten_err err = check_size(self, txn, size, "root");
    if (err != KETEN_OK) {
        return err;
    }
    source s = { .log = self, .txn = txn, .memo = memo };
    return src_root(&s, size, out);
}

keten_err keten_merkle_log_inclusion_proof_memo(const keten_merkle_log *self, MDB_txn *txn,
    keten_merkle_log_memo *memo, uint64_t index, uint64_t size, keten_hash *path, size_t *path_len)
{
    if (self == NULL || txn == NULL) {
        return keten_err_set(
            KETEN_ERR_INVALID, "keten_merkle_log_inclusion_proof_memo: missing argument");
    }
    if (path_len != NULL) {
        *path_len = 0;
    }
    keten_err err = check_size(self, txn, size, "inclusion proof");
    if (err != KETEN_OK) {
        return err;
    }
    source s = { .log = self, .txn = txn, .memo = memo };
    return src_inclusion(&s, index, size, path, path_len);
}

keten_err keten_merkle_log_consistency_proof_memo(const keten_merkle_log *self, MDB_txn *txn,
    keten_merkle_log_memo *memo, uint64_t old_size, uint64_t new_size, keten_hash *proof,
    size_t *proof_len)
{
    if (self == NULL || txn == NULL) {
        return keten_err_set(
            KETEN_ERR_INVALID, "keten_merkle_log_consistency_proof_memo: missing argument");
    }
    if (proof_len != NULL) {
        *proof_len = 0;
    }
    keten_err err = check_size(self, txn, new_size, "consistency proof");
    if (err != KETEN_OK) {
        return err;
    }
    source s = { .log = self, .txn = txn, .memo = memo };
    return src_consistency(&s, old_size, new_size, proof, proof_len);
}
