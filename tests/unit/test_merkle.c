/* merkle: RFC 9162 section 2.1 trees, proofs and their verification, in
 * memory and in an LMDB-backed log. Every result is checked against a naive
 * implementation written here straight from the RFC's definitions (MTH, PATH,
 * PROOF/SUBPROOF), and against the Certificate Transparency test vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <lmdb.h>
#include <sodium.h>

#include "err.h"
#include "merkle.h"
#include "util.h"

#define MAX_N 64 /* every tree size 1..MAX_N is checked exhaustively */
#define N_LEAVES 130 /* leaves available to the tests */
#define LEAF_DATA_MAX 64
#define NAIVE_MAX 80 /* hashes in a naive proof */

/* The API takes arrays of hashes as `const keten_hash *`; C17 does not convert
 * `keten_hash *` to that silently (-Wpedantic), so callers cast. */
#define CH(p) ((const keten_hash *)(p))
#define VINC(leaf, i, n, path, len, root)                                                          \
    keten_merkle_verify_inclusion(leaf, i, n, CH(path), len, root)
#define VCONS(m, n, r1, r2, proof, len)                                                            \
    keten_merkle_verify_consistency(m, n, r1, r2, CH(proof), len)
#define MROOT(lh, n, out) keten_merkle_root(CH(lh), n, out)
#define MINCL(lh, n, i, p, len) keten_merkle_inclusion_proof(CH(lh), n, i, p, len)
#define MCONS(lh, m, n, p, len) keten_merkle_consistency_proof(CH(lh), m, n, p, len)

/* ---- test data ----------------------------------------------------------- */

typedef struct leaf {
    uint8_t data[LEAF_DATA_MAX];
    size_t len;
} leaf;

static leaf leaves[N_LEAVES];
static keten_hash leaf_hashes[N_LEAVES];

static void make_leaves(void)
{
    for (size_t i = 0; i < N_LEAVES; i++) {
        leaves[i].len = (i * 7) % LEAF_DATA_MAX; /* leaf 0 is empty */
        for (size_t j = 0; j < leaves[i].len; j++) {
            leaves[i].data[j] = (uint8_t)(i * 31 + j * 7 + 1);
        }
        keten_merkle_leaf_hash(leaves[i].data, leaves[i].len, leaf_hashes[i]);
    }
}

/* ---- the naive reference, straight from RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1 ---- */

static void sha256_prefixed(
    uint8_t prefix, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, keten_hash out)
{
    uint8_t buf[1 + LEAF_DATA_MAX + 2 * KETEN_HASH_BYTES];
    assert_true(1 + alen + blen <= sizeof buf);
    buf[0] = prefix;
    if (alen > 0) {
        memcpy(buf + 1, a, alen);
    }
    if (blen > 0) {
        memcpy(buf + 1 + alen, b, blen);
    }
    crypto_hash_sha256(out, buf, 1 + alen + blen);
}

/* k: the largest power of two smaller than n (n > 1), by the definition. */
static size_t naive_k(size_t n)
{
    size_t k = 1;
    while (k * 2 < n) {
        k *= 2;
    }
    return k;
}

/* MTH(D[n]) where D = d[0..n). */
static void naive_mth(const leaf *d, size_t n, keten_hash out)
{
    if (n == 0) {
        crypto_hash_sha256(out, (const uint8_t *)"", 0);
        return;
    }
    if (n == 1) {
        sha256_prefixed(0x00, d[0].data, d[0].len, NULL, 0, out);
        return;
    }
    size_t k = naive_k(n);
    keten_hash l, r;
    naive_mth(d, k, l);
    naive_mth(d + k, n - k, r);
    sha256_prefixed(0x01, l, KETEN_HASH_BYTES, r, KETEN_HASH_BYTES, out);
}

typedef struct hlist {
    keten_hash h[NAIVE_MAX];
    size_t n;
} hlist;

static void hlist_push(hlist *l, const keten_hash h)
{
    assert_true(l->n < NAIVE_MAX);
    memcpy(l->h[l->n++], h, KETEN_HASH_BYTES);
}

/* PATH(m, D[n]), appended to out. */
static void naive_path(size_t m, const leaf *d, size_t n, hlist *out)
{
    if (n == 1) {
        return; /* PATH(0, {d(0)}) = {} */
    }
    size_t k = naive_k(n);
    keten_hash h;
    if (m < k) {
        naive_path(m, d, k, out);
        naive_mth(d + k, n - k, h);
    } else {
        naive_path(m - k, d + k, n - k, out);
        naive_mth(d, k, h);
    }
    hlist_push(out, h);
}

/* SUBPROOF(m, D[n], b), appended to out. */
static void naive_subproof(size_t m, const leaf *d, size_t n, bool b, hlist *out)
{
    keten_hash h;
    if (m == n) {
        if (!b) {
            naive_mth(d, n, h);
            hlist_push(out, h);
        }
        return;
    }
    size_t k = naive_k(n);
    if (m <= k) {
        naive_subproof(m, d, k, b, out);
        naive_mth(d + k, n - k, h);
    } else {
        naive_subproof(m - k, d + k, n - k, false, out);
        naive_mth(d, k, h);
    }
    hlist_push(out, h);
}

/* PROOF(m, D[n]) for 0 < m < n; empty for m == n. */
static void naive_proof(size_t m, const leaf *d, size_t n, hlist *out)
{
    out->n = 0;
    if (m == n) {
        return;
    }
    naive_subproof(m, d, n, true, out);
}

static keten_hash naive_roots[N_LEAVES + 1];

static void compute_naive_roots(void)
{
    for (size_t n = 0; n <= N_LEAVES; n++) {
        naive_mth(leaves, n, naive_roots[n]);
    }
}

static int setup_data(void **state)
{
    (void)state;
    if (sodium_init() < 0) {
        return -1;
    }
    make_leaves();
    compute_naive_roots();
    return 0;
}

/* ---- known answers ---------------------------------------------------------- */

static void unhex32(const char *hex, keten_hash out)
{
    assert_int_equal(keten_unhex(hex, out, KETEN_HASH_BYTES), KETEN_OK);
}

/* The 8 leaves of the Certificate Transparency reference tests (RFC 6962). */
static const struct {
    const char *data;
    size_t len;
} ct_leaves[8] = {
    { "", 0 },
    { "\x00", 1 },
    { "\x10", 1 },
    { "\x20\x21", 2 },
    { "\x30\x31", 2 },
    { "\x40\x41\x42\x43", 4 },
    { "\x50\x51\x52\x53\x54\x55\x56\x57", 8 },
    { "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f", 16 },
};

/* Roots of the first 1..8 of them, as published with those tests. */
static const char *const ct_roots[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static void ct_leaf_hashes(keten_hash out[8], leaf naive[8])
{
    for (size_t i = 0; i < 8; i++) {
        keten_merkle_leaf_hash((const uint8_t *)ct_leaves[i].data, ct_leaves[i].len, out[i]);
        memcpy(naive[i].data, ct_leaves[i].data, ct_leaves[i].len);
        naive[i].len = ct_leaves[i].len;
    }
}

static void test_known_answer_roots(void **state)
{
    (void)state;
    keten_hash lh[8], root, want, naive;
    leaf nl[8];
    ct_leaf_hashes(lh, nl);
    for (size_t n = 0; n <= 8; n++) {
        unhex32(ct_roots[n], want);
        MROOT(lh, n, root);
        assert_memory_equal(root, want, KETEN_HASH_BYTES);
        naive_mth(nl, n, naive);
        assert_memory_equal(naive, want, KETEN_HASH_BYTES);
    }
    /* Leaf and node hash prefixes: H(0x00) is the root of the 1-leaf tree of "". */
    keten_hash l0, n01;
    keten_merkle_leaf_hash(NULL, 0, l0);
    unhex32(ct_roots[1], want);
    assert_memory_equal(l0, want, KETEN_HASH_BYTES);
    keten_merkle_node_hash(lh[0], lh[1], n01);
    unhex32(ct_roots[2], want);
    assert_memory_equal(n01, want, KETEN_HASH_BYTES);
}

static void expect_hashes(const keten_hash *got, size_t got_len, const char *const *hex, size_t n)
{
    assert_int_equal(got_len, n);
    for (size_t i = 0; i < n; i++) {
        keten_hash want;
        unhex32(hex[i], want);
        assert_memory_equal(got[i], want, KETEN_HASH_BYTES);
    }
}

static void test_known_answer_proofs(void **state)
{
    (void)state;
    keten_hash lh[8], root8;
    leaf nl[8];
    ct_leaf_hashes(lh, nl);
    unhex32(ct_roots[8], root8);
    keten_hash p[KETEN_MERKLE_MAX_PROOF];
    size_t len;

    /* Inclusion of leaf 0 in the 8-leaf tree. */
    static const char *const incl_0_8[] = {
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    };
    assert_int_equal(MINCL(lh, 8, 0, p, &len), KETEN_OK);
    expect_hashes(CH(p), len, incl_0_8, 3);
    assert_int_equal(VINC(lh[0], 0, 8, p, len, root8), KETEN_OK);

    /* Consistency 1 -> 8, 6 -> 8 and 2 -> 5. */
    static const char *const cons_1_8[] = {
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    };
    static const char *const cons_6_8[] = {
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    };
    static const char *const cons_2_5[] = {
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    };
    keten_hash r_old, r_new;
    assert_int_equal(MCONS(lh, 1, 8, p, &len), KETEN_OK);
    expect_hashes(CH(p), len, cons_1_8, 3);
    unhex32(ct_roots[1], r_old);
    assert_int_equal(VCONS(1, 8, r_old, root8, p, len), KETEN_OK);

    assert_int_equal(MCONS(lh, 6, 8, p, &len), KETEN_OK);
    expect_hashes(CH(p), len, cons_6_8, 3);
    unhex32(ct_roots[6], r_old);
    assert_int_equal(VCONS(6, 8, r_old, root8, p, len), KETEN_OK);

    assert_int_equal(MCONS(lh, 2, 5, p, &len), KETEN_OK);
    expect_hashes(CH(p), len, cons_2_5, 2);
    unhex32(ct_roots[2], r_old);
    unhex32(ct_roots[5], r_new);
    assert_int_equal(VCONS(2, 5, r_old, r_new, p, len), KETEN_OK);
}

static void test_empty_tree(void **state)
{
    (void)state;
    keten_hash root, want;
    unhex32(ct_roots[0], want);
    MROOT(NULL, 0, root);
    assert_memory_equal(root, want, KETEN_HASH_BYTES);
    keten_hash p[KETEN_MERKLE_MAX_PROOF];
    size_t len = 99;
    /* No leaf is in the empty tree. */
    assert_int_equal(MINCL(leaf_hashes, 0, 0, p, &len), KETEN_ERR_INVALID);
    assert_int_equal(len, 0);
    /* Everything is consistent with the empty tree, with an empty proof only. */
    assert_int_equal(MCONS(leaf_hashes, 0, 5, p, &len), KETEN_OK);
    assert_int_equal(len, 0);
    assert_int_equal(VCONS(0, 5, root, naive_roots[5], p, 0), KETEN_OK);
    assert_int_equal(VCONS(0, 5, root, naive_roots[5], leaf_hashes, 1), KETEN_ERR_INCONSISTENT);
}

/* ---- proofs: accept and reject twins ------------------------------------- */

/* Check an inclusion proof for (i, n) and all its reject twins. */
static void check_inclusion_twins(size_t i, size_t n, const keten_hash *path, size_t len)
{
    const uint8_t *root = naive_roots[n];
    assert_int_equal(VINC(leaf_hashes[i], i, n, path, len, root), KETEN_OK);

    keten_hash tmp[KETEN_MERKLE_MAX_PROOF + 1];
    memcpy(tmp, path, len * KETEN_HASH_BYTES);
    /* A flipped bit in any proof hash. */
    for (size_t j = 0; j < len; j++) {
        size_t byte = (i + j * 5) % KETEN_HASH_BYTES;
        uint8_t bit = (uint8_t)(1u << ((i + j) % 8));
        tmp[j][byte] ^= bit;
        assert_int_equal(VINC(leaf_hashes[i], i, n, tmp, len, root), KETEN_ERR_INCONSISTENT);
        tmp[j][byte] ^= bit;
    }
    /* Another leaf, a flipped leaf hash, a flipped root. */
    size_t other = (i + 1) % N_LEAVES;
    assert_int_equal(VINC(leaf_hashes[other], i, n, path, len, root), KETEN_ERR_INCONSISTENT);
    keten_hash bad;
    memcpy(bad, leaf_hashes[i], KETEN_HASH_BYTES);
    bad[31] ^= 0x80;
    assert_int_equal(VINC(bad, i, n, path, len, root), KETEN_ERR_INCONSISTENT);
    memcpy(bad, root, KETEN_HASH_BYTES);
    bad[0] ^= 0x01;
    assert_int_equal(VINC(leaf_hashes[i], i, n, path, len, bad), KETEN_ERR_INCONSISTENT);
    /* Every wrong index. */
    for (size_t w = 0; w < n + 2; w++) {
        if (w != i) {
            assert_int_equal(VINC(leaf_hashes[i], w, n, path, len, root), KETEN_ERR_INCONSISTENT);
        }
    }
    /* The trees of size n + 1 and n - 1 (their roots, their sizes). */
    assert_int_equal(
        VINC(leaf_hashes[i], i, n + 1, path, len, naive_roots[n + 1]), KETEN_ERR_INCONSISTENT);
    if (i < n - 1) {
        assert_int_equal(
            VINC(leaf_hashes[i], i, n - 1, path, len, naive_roots[n - 1]), KETEN_ERR_INCONSISTENT);
    }
    /* Truncated and over-long. */
    if (len > 0) {
        assert_int_equal(VINC(leaf_hashes[i], i, n, path, len - 1, root), KETEN_ERR_INCONSISTENT);
        assert_int_equal(
            VINC(leaf_hashes[i], i, n, path + 1, len - 1, root), KETEN_ERR_INCONSISTENT);
    }
    memcpy(tmp[len], len > 0 ? path[0] : leaf_hashes[other], KETEN_HASH_BYTES);
    assert_int_equal(VINC(leaf_hashes[i], i, n, tmp, len + 1, root), KETEN_ERR_INCONSISTENT);
    assert_int_equal(
        VINC(leaf_hashes[i], i, n, tmp, KETEN_MERKLE_MAX_PROOF + 1, root), KETEN_ERR_INCONSISTENT);
}

static void check_consistency_twins(size_t m, size_t n, const keten_hash *proof, size_t len)
{
    const uint8_t *r_old = naive_roots[m];
    const uint8_t *r_new = naive_roots[n];
    assert_int_equal(VCONS(m, n, r_old, r_new, proof, len), KETEN_OK);
    if (m == n) {
        assert_int_equal(len, 0);
        /* Equal sizes: the roots must be equal, and the proof empty. */
        assert_int_equal(VCONS(m, n, r_old, naive_roots[n + 1], proof, 0), KETEN_ERR_INCONSISTENT);
        assert_int_equal(VCONS(m, n, r_old, r_new, leaf_hashes, 1), KETEN_ERR_INCONSISTENT);
        return;
    }
    keten_hash tmp[KETEN_MERKLE_MAX_PROOF + 1];
    memcpy(tmp, proof, len * KETEN_HASH_BYTES);
    for (size_t j = 0; j < len; j++) {
        size_t byte = (m * 3 + j) % KETEN_HASH_BYTES;
        uint8_t bit = (uint8_t)(1u << ((m + n + j) % 8));
        tmp[j][byte] ^= bit;
        assert_int_equal(VCONS(m, n, r_old, r_new, tmp, len), KETEN_ERR_INCONSISTENT);
        tmp[j][byte] ^= bit;
    }
    /* Wrong roots. */
    assert_int_equal(VCONS(m, n, naive_roots[m - 1], r_new, proof, len), KETEN_ERR_INCONSISTENT);
    assert_int_equal(VCONS(m, n, r_old, naive_roots[n + 1], proof, len), KETEN_ERR_INCONSISTENT);
    assert_int_equal(VCONS(m, n, r_new, r_old, proof, len), KETEN_ERR_INCONSISTENT);
    /* Neighbouring sizes with their own roots. */
    assert_int_equal(
        VCONS(m, n + 1, r_old, naive_roots[n + 1], proof, len), KETEN_ERR_INCONSISTENT);
    if (m + 1 < n) {
        assert_int_equal(
            VCONS(m + 1, n, naive_roots[m + 1], r_new, proof, len), KETEN_ERR_INCONSISTENT);
    }
    if (m > 1) {
        assert_int_equal(
            VCONS(m - 1, n, naive_roots[m - 1], r_new, proof, len), KETEN_ERR_INCONSISTENT);
    }
    if (m < n - 1) {
        assert_int_equal(
            VCONS(m, n - 1, r_old, naive_roots[n - 1], proof, len), KETEN_ERR_INCONSISTENT);
    }
    /* Truncated (either end), empty and over-long. */
    assert_int_equal(VCONS(m, n, r_old, r_new, proof, len - 1), KETEN_ERR_INCONSISTENT);
    assert_int_equal(VCONS(m, n, r_old, r_new, proof + 1, len - 1), KETEN_ERR_INCONSISTENT);
    assert_int_equal(VCONS(m, n, r_old, r_new, proof, 0), KETEN_ERR_INCONSISTENT);
    memcpy(tmp[len], proof[0], KETEN_HASH_BYTES);
    assert_int_equal(VCONS(m, n, r_old, r_new, tmp, len + 1), KETEN_ERR_INCONSISTENT);
    /* Reversed sizes. */
    assert_int_equal(VCONS(n, m, r_new, r_old, proof, len), KETEN_ERR_INVALID);
}

static void test_memory_matches_naive(void **state)
{
    (void)state;
    keten_hash root;
    keten_hash p[KETEN_MERKLE_MAX_PROOF];
    size_t len;
    hlist want;
    for (size_t n = 1; n <= MAX_N; n++) {
        MROOT(leaf_hashes, n, root);
        assert_memory_equal(root, naive_roots[n], KETEN_HASH_BYTES);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(MINCL(leaf_hashes, n, i, p, &len), KETEN_OK);
            want.n = 0;
            naive_path(i, leaves, n, &want);
            assert_int_equal(len, want.n);
            assert_memory_equal(p, want.h, len * KETEN_HASH_BYTES);
            check_inclusion_twins(i, n, CH(p), len);
        }
        len = 99;
        assert_int_equal(MINCL(leaf_hashes, n, n, p, &len), KETEN_ERR_INVALID);
        assert_int_equal(len, 0);
        for (size_t m = 1; m <= n; m++) {
            assert_int_equal(MCONS(leaf_hashes, m, n, p, &len), KETEN_OK);
            naive_proof(m, leaves, n, &want);
            assert_int_equal(len, want.n);
            assert_memory_equal(p, want.h, len * KETEN_HASH_BYTES);
            check_consistency_twins(m, n, CH(p), len);
        }
        assert_int_equal(MCONS(leaf_hashes, n + 1, n, p, &len), KETEN_ERR_INVALID);
    }
}

static void test_proof_lengths_large(void **state)
{
    (void)state;
    /* Inclusion proofs in a huge tree stay within KETEN_MERKLE_MAX_PROOF: the
     * verifier refuses anything longer without looking at it. */
    keten_hash p[KETEN_MERKLE_MAX_PROOF + 1];
    memset(p, 0x5a, sizeof p);
    assert_int_equal(
        VINC(leaf_hashes[0], 0, UINT64_MAX, p, KETEN_MERKLE_MAX_PROOF + 1, naive_roots[1]),
        KETEN_ERR_INCONSISTENT);
    assert_int_equal(
        VCONS(1, UINT64_MAX, naive_roots[1], naive_roots[2], p, KETEN_MERKLE_MAX_PROOF + 1),
        KETEN_ERR_INCONSISTENT);
    /* A 64-hash proof of index 0 in a 2^64-1 tree is the right length but wrong. */
    assert_int_equal(
        VINC(leaf_hashes[0], 0, UINT64_MAX, p, 64, naive_roots[1]), KETEN_ERR_INCONSISTENT);
}

/* ---- the LMDB log --------------------------------------------------------- */

typedef struct lenv {
    char dir[256];
    MDB_env *env;
} lenv;

static void lenv_open(lenv *e, size_t mapsize)
{
    assert_int_equal(mdb_env_create(&e->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(e->env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(e->env, mapsize), 0);
    assert_int_equal(mdb_env_open(e->env, e->dir, MDB_NOSYNC, 0600), 0);
}

static void lenv_new(lenv *e, size_t mapsize)
{
    const char *t = getenv("TMPDIR");
    snprintf(
        e->dir, sizeof e->dir, "%s/keten-merkle-XXXXXX", t != NULL && t[0] != '\0' ? t : "/tmp");
    assert_non_null(mkdtemp(e->dir));
    lenv_open(e, mapsize);
}

static void lenv_close(lenv *e)
{
    mdb_env_close(e->env);
    e->env = NULL;
}

static void lenv_destroy(lenv *e)
{
    if (e->env != NULL) {
        lenv_close(e);
    }
    char p[300];
    snprintf(p, sizeof p, "%s/data.mdb", e->dir);
    assert_int_equal(unlink(p), 0);
    snprintf(p, sizeof p, "%s/lock.mdb", e->dir);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(rmdir(e->dir), 0);
}

static MDB_txn *txn_begin(lenv *e, bool write)
{
    MDB_txn *txn = NULL;
    assert_int_equal(mdb_txn_begin(e->env, NULL, write ? 0 : MDB_RDONLY, &txn), 0);
    return txn;
}

static keten_merkle_log *mlog_open(lenv *e, const char *prefix)
{
    MDB_txn *txn = txn_begin(e, true);
    keten_merkle_log *log = NULL;
    assert_int_equal(keten_merkle_log_open(txn, prefix, &log), KETEN_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);
    return log;
}

/* Everything a reader can ask of the first n leaves of a log, against the
 * naive reference: every root, leaf, inclusion and consistency proof. */
static void check_log_full(const keten_merkle_log *log, MDB_txn *txn, size_t n)
{
    keten_hash h;
    keten_hash p[KETEN_MERKLE_MAX_PROOF];
    size_t len;
    hlist want;
    for (size_t m = 0; m <= n; m++) {
        assert_int_equal(keten_merkle_log_root(log, txn, m, h), KETEN_OK);
        assert_memory_equal(h, naive_roots[m], KETEN_HASH_BYTES);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *data;
        size_t dlen;
        assert_int_equal(keten_merkle_log_leaf(log, txn, i, &data, &dlen), KETEN_OK);
        assert_int_equal(dlen, leaves[i].len);
        if (dlen > 0) {
            assert_memory_equal(data, leaves[i].data, dlen);
        }
        assert_int_equal(keten_merkle_log_leaf_hash(log, txn, i, h), KETEN_OK);
        assert_memory_equal(h, leaf_hashes[i], KETEN_HASH_BYTES);
    }
    for (size_t s = 1; s <= n; s++) {
        for (size_t i = 0; i < s; i++) {
            assert_int_equal(keten_merkle_log_inclusion_proof(log, txn, i, s, p, &len), KETEN_OK);
            want.n = 0;
            naive_path(i, leaves, s, &want);
            assert_int_equal(len, want.n);
            assert_memory_equal(p, want.h, len * KETEN_HASH_BYTES);
            assert_int_equal(VINC(leaf_hashes[i], i, s, p, len, naive_roots[s]), KETEN_OK);
        }
        for (size_t m = 0; m <= s; m++) {
            assert_int_equal(keten_merkle_log_consistency_proof(log, txn, m, s, p, &len), KETEN_OK);
            if (m == 0) {
                assert_int_equal(len, 0);
            } else {
                naive_proof(m, leaves, s, &want);
                assert_int_equal(len, want.n);
                assert_memory_equal(p, want.h, len * KETEN_HASH_BYTES);
            }
            assert_int_equal(VCONS(m, s, naive_roots[m], naive_roots[s], p, len), KETEN_OK);
        }
    }
}

/* Out-of-range requests on a log of size n. */
static void check_log_ranges(const keten_merkle_log *log, MDB_txn *txn, size_t n)
{
    keten_hash h;
    keten_hash p[KETEN_MERKLE_MAX_PROOF];
    size_t len = 99;
    const uint8_t *data;
    size_t dlen;
    assert_int_equal(keten_merkle_log_root(log, txn, n + 1, h), KETEN_ERR_INVALID);
    assert_int_equal(keten_merkle_log_leaf(log, txn, n, &data, &dlen), KETEN_ERR_INVALID);
    assert_int_equal(keten_merkle_log_leaf(log, txn, UINT64_MAX, &data, &dlen), KETEN_ERR_INVALID);
    assert_int_equal(keten_merkle_log_leaf_hash(log, txn, n, h), KETEN_ERR_INVALID);
    assert_int_equal(keten_merkle_log_inclusion_proof(log, txn, n, n, p, &len), KETEN_ERR_INVALID);
    assert_int_equal(len, 0);
    assert_int_equal(
        keten_merkle_log_inclusion_proof(log, txn, 0, n + 1, p, &len), KETEN_ERR_INVALID);
    assert_int_equal(
        keten_merkle_log_consistency_proof(log, txn, 1, n + 1, p, &len), KETEN_ERR_INVALID);
    if (n >= 2) {
        assert_int_equal(
            keten_merkle_log_consistency_proof(log, txn, n, n - 1, p, &len), KETEN_ERR_INVALID);
    }
}

static void test_log_grows_leaf_by_leaf(void **state)
{
    (void)state;
    lenv e;
    lenv_new(&e, 64u << 20);
    keten_merkle_log *log = mlog_open(&e, "audit-");
    keten_merkle_log *other = mlog_open(&e, "other-");

    MDB_txn *txn = txn_begin(&e, false);
    uint64_t size = 9;
    assert_int_equal(keten_merkle_log_size(log, txn, &size), KETEN_OK);
    assert_int_equal(size, 0);
    check_log_full(log, txn, 0);
    check_log_ranges(log, txn, 0);
    mdb_txn_abort(txn);

    for (size_t n = 0; n < N_LEAVES; n++) {
        txn = txn_begin(&e, true);
        uint64_t idx = 999;
        assert_int_equal(
            keten_merkle_log_append(log, txn, leaves[n].data, leaves[n].len, &idx), KETEN_OK);
        assert_int_equal(idx, n);
        /* The root inside the writing transaction sees the new leaf. */
        keten_hash h;
        assert_int_equal(keten_merkle_log_root(log, txn, n + 1, h), KETEN_OK);
        assert_memory_equal(h, naive_roots[n + 1], KETEN_HASH_BYTES);
        assert_int_equal(mdb_txn_commit(txn), 0);

        txn = txn_begin(&e, false);
        assert_int_equal(keten_merkle_log_size(log, txn, &size), KETEN_OK);
        assert_int_equal(size, n + 1);
        if (n + 1 <= 20 || n + 1 == MAX_N) {
            check_log_full(log, txn, n + 1);
        } else {
            /* Larger sizes: every root, and proofs for the newest size. */
            for (size_t m = 0; m <= n + 1; m++) {
                assert_int_equal(keten_merkle_log_root(log, txn, m, h), KETEN_OK);
                assert_memory_equal(h, naive_roots[m], KETEN_HASH_BYTES);
            }
            keten_hash p[KETEN_MERKLE_MAX_PROOF];
            size_t len;
            for (size_t i = 0; i <= n; i++) {
                assert_int_equal(
                    keten_merkle_log_inclusion_proof(log, txn, i, n + 1, p, &len), KETEN_OK);
                assert_int_equal(
                    VINC(leaf_hashes[i], i, n + 1, p, len, naive_roots[n + 1]), KETEN_OK);
                assert_int_equal(
                    keten_merkle_log_consistency_proof(log, txn, i + 1, n + 1, p, &len), KETEN_OK);
                assert_int_equal(
                    VCONS(i + 1, n + 1, naive_roots[i + 1], naive_roots[n + 1], p, len), KETEN_OK);
            }
        }
        check_log_ranges(log, txn, n + 1);
        /* The other log in the same environment is untouched. */
        uint64_t osize = 1;
        assert_int_equal(keten_merkle_log_size(other, txn, &osize), KETEN_OK);
        assert_int_equal(osize, 0);
        mdb_txn_abort(txn);
    }

    /* Everything persists across closing and reopening the environment. */
    keten_merkle_log_destroy(&log);
    keten_merkle_log_destroy(&other);
    assert_null(log);
    keten_merkle_log_destroy(&log); /* NULL is fine */
    lenv_close(&e);
    lenv_open(&e, 64u << 20);
    log = mlog_open(&e, "audit-");
    txn = txn_begin(&e, false);
    assert_int_equal(keten_merkle_log_size(log, txn, &size), KETEN_OK);
    assert_int_equal(size, N_LEAVES);
    check_log_full(log, txn, 40);
    mdb_txn_abort(txn);
    keten_merkle_log_destroy(&log);
    lenv_destroy(&e);
}

/* Proofs and roots through a memo of subtree hashes equal the naive ones,
 * batch after batch (the memo outlives transactions) and with a memo so
 * small that slots collide; after an aborted append the memo must be
 * cleared, and a memo that is not cleared then gives a root that does not
 * match (the reason the broker clears it). */
static void test_log_memo(void **state)
{
    (void)state;
    lenv e;
    lenv_new(&e, 64u << 20);
    keten_merkle_log *log = mlog_open(&e, "audit-");
    keten_merkle_log_memo *memo = NULL, *tiny = NULL;
    assert_int_equal(keten_merkle_log_memo_new(12, &memo), KETEN_OK);
    assert_int_equal(keten_merkle_log_memo_new(4, &tiny), KETEN_OK);
    assert_int_equal(
        keten_merkle_log_memo_new(3, &(keten_merkle_log_memo *) { NULL }), KETEN_ERR_INVALID);
    keten_hash h;
    keten_hash p[KETEN_MERKLE_MAX_PROOF];
    size_t len;
    size_t n = 0;
    static const size_t batches[] = { 1, 2, 5, 7, 16, 1, 30, 3, 60 }; /* 125 of N_LEAVES */
    for (size_t b = 0; b < sizeof batches / sizeof batches[0] && n < N_LEAVES; b++) {
        MDB_txn *txn = txn_begin(&e, true);
        for (size_t k = 0; k < batches[b] && n < N_LEAVES; k++, n++) {
            assert_int_equal(
                keten_merkle_log_append(log, txn, leaves[n].data, leaves[n].len, NULL), KETEN_OK);
        }
        keten_merkle_log_memo *ms[2] = { memo, tiny };
        for (size_t w = 0; w < 2; w++) {
            assert_int_equal(keten_merkle_log_root_memo(log, txn, ms[w], n, h), KETEN_OK);
            assert_memory_equal(h, naive_roots[n], KETEN_HASH_BYTES);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(
                    keten_merkle_log_inclusion_proof_memo(log, txn, ms[w], i, n, p, &len),
                    KETEN_OK);
                hlist want = { .n = 0 };
                naive_path(i, leaves, n, &want);
                assert_int_equal(len, want.n);
                assert_memory_equal(p, want.h, len * KETEN_HASH_BYTES);
            }
            for (size_t m = 1; m <= n; m++) {
                assert_int_equal(
                    keten_merkle_log_consistency_proof_memo(log, txn, ms[w], m, n, p, &len),
                    KETEN_OK);
                assert_int_equal(VCONS(m, n, naive_roots[m], naive_roots[n], p, len), KETEN_OK);
            }
        }
        assert_int_equal(mdb_txn_commit(txn), 0);
    }
    /* An append that is aborted after proofs were made through the memo. */
    MDB_txn *txn = txn_begin(&e, true);
    static const uint8_t wrong[] = "a leaf that is never committed";
    assert_int_equal(keten_merkle_log_append(log, txn, wrong, sizeof wrong, NULL), KETEN_OK);
    assert_int_equal(keten_merkle_log_root_memo(log, txn, memo, n + 1, h), KETEN_OK);
    mdb_txn_abort(txn);
    assert_true(n < N_LEAVES);
    {
        txn = txn_begin(&e, true);
        assert_int_equal(
            keten_merkle_log_append(log, txn, leaves[n].data, leaves[n].len, NULL), KETEN_OK);
        /* Not cleared: the remembered hash of the aborted leaf gives a root
         * that is not the log's. */
        assert_int_equal(keten_merkle_log_root_memo(log, txn, memo, n + 1, h), KETEN_OK);
        assert_memory_not_equal(h, naive_roots[n + 1], KETEN_HASH_BYTES);
        keten_merkle_log_memo_clear(memo);
        assert_int_equal(keten_merkle_log_root_memo(log, txn, memo, n + 1, h), KETEN_OK);
        assert_memory_equal(h, naive_roots[n + 1], KETEN_HASH_BYTES);
        assert_int_equal(
            keten_merkle_log_inclusion_proof_memo(log, txn, memo, n, n + 1, p, &len), KETEN_OK);
        assert_int_equal(VINC(leaf_hashes[n], n, n + 1, p, len, naive_roots[n + 1]), KETEN_OK);
        mdb_txn_abort(txn);
    }
    keten_merkle_log_memo_destroy(&memo);
    keten_merkle_log_memo_destroy(&tiny);
    assert_null(memo);
    keten_merkle_log_memo_destroy(&memo);
    keten_merkle_log_destroy(&log);
    lenv_destroy(&e);
}

static void test_log_known_answer(void **state)
{
    (void)state;
    lenv e;
    lenv_new(&e, 1u << 20);
    keten_merkle_log *log = mlog_open(&e, "ct-");
    MDB_txn *txn = txn_begin(&e, true);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(keten_merkle_log_append(
                             log, txn, (const uint8_t *)ct_leaves[i].data, ct_leaves[i].len, NULL),
            KETEN_OK);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    txn = txn_begin(&e, false);
    for (size_t n = 0; n <= 8; n++) {
        keten_hash h, want;
        assert_int_equal(keten_merkle_log_root(log, txn, n, h), KETEN_OK);
        unhex32(ct_roots[n], want);
        assert_memory_equal(h, want, KETEN_HASH_BYTES);
    }
    mdb_txn_abort(txn);
    keten_merkle_log_destroy(&log);
    lenv_destroy(&e);
}

static void test_log_refuses_bad_input(void **state)
{
    (void)state;
    lenv e;
    lenv_new(&e, 64u << 20);
    keten_merkle_log *log = NULL;
    MDB_txn *txn = txn_begin(&e, true);
    char long_prefix[100];
    memset(long_prefix, 'a', sizeof long_prefix - 1);
    long_prefix[sizeof long_prefix - 1] = '\0';
    assert_int_equal(keten_merkle_log_open(txn, long_prefix, &log), KETEN_ERR_INVALID);
    assert_null(log);
    assert_int_equal(keten_merkle_log_open(txn, "x-", &log), KETEN_OK);
    /* A leaf over the cap. */
    size_t big = (size_t)KETEN_MERKLE_LEAF_MAX + 1;
    uint8_t *buf = calloc(1, big);
    assert_non_null(buf);
    assert_int_equal(keten_merkle_log_append(log, txn, buf, big, NULL), KETEN_ERR_TOO_LARGE);
    free(buf);
    uint64_t size = 9;
    assert_int_equal(keten_merkle_log_size(log, txn, &size), KETEN_OK);
    assert_int_equal(size, 0);
    mdb_txn_abort(txn);
    keten_merkle_log_destroy(&log);

    /* Read-only transactions: a missing log cannot be created, an existing
     * one opens (an auditor's export), and appending is refused. */
    txn = txn_begin(&e, false);
    assert_int_equal(keten_merkle_log_open(txn, "missing-", &log), KETEN_ERR_STORE);
    assert_null(log);
    mdb_txn_abort(txn);
    log = mlog_open(&e, "ro-");
    keten_merkle_log_destroy(&log);
    txn = txn_begin(&e, false);
    assert_int_equal(keten_merkle_log_open(txn, "ro-", &log), KETEN_OK);
    uint8_t one = 1;
    assert_int_equal(keten_merkle_log_append(log, txn, &one, 1, NULL), KETEN_ERR_STORE);
    assert_non_null(strstr(keten_err_detail(), "LMDB"));
    assert_int_equal(keten_merkle_log_size(log, txn, &size), KETEN_OK);
    assert_int_equal(size, 0);
    mdb_txn_abort(txn);
    keten_merkle_log_destroy(&log);
    lenv_destroy(&e);
}

/* Write a raw node entry behind the log's back (simulated tampering). */
static void raw_node(
    lenv *e, const char *prefix, uint8_t level, uint64_t index, const uint8_t *val, bool del)
{
    MDB_txn *txn = txn_begin(e, true);
    char name[64];
    snprintf(name, sizeof name, "%snode", prefix);
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(txn, name, 0, &dbi), 0);
    uint8_t kb[9];
    assert_true(keten_merkle_node_key(kb, level, index));
    MDB_val k = { .mv_size = sizeof kb, .mv_data = kb };
    if (del) {
        assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    } else {
        MDB_val v = { .mv_size = KETEN_HASH_BYTES, .mv_data = (void *)val };
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static void test_log_detects_tampering(void **state)
{
    (void)state;
    lenv e;
    lenv_new(&e, 64u << 20);
    keten_merkle_log *log = mlog_open(&e, "t-");
    MDB_txn *txn = txn_begin(&e, true);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(
            keten_merkle_log_append(log, txn, leaves[i].data, leaves[i].len, NULL), KETEN_OK);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);

    /* A planted node where the next append must write: refused, not overwritten. */
    keten_hash junk;
    memset(junk, 0xab, sizeof junk);
    raw_node(&e, "t-", 0, 5, junk, false);
    txn = txn_begin(&e, true);
    assert_int_equal(keten_merkle_log_append(log, txn, leaves[5].data, leaves[5].len, NULL),
        KETEN_ERR_INCONSISTENT);
    mdb_txn_abort(txn);
    /* A planted node that equals what the append computes is accepted. */
    raw_node(&e, "t-", 0, 5, leaf_hashes[5], false);
    txn = txn_begin(&e, true);
    assert_int_equal(
        keten_merkle_log_append(log, txn, leaves[5].data, leaves[5].len, NULL), KETEN_OK);
    assert_int_equal(mdb_txn_commit(txn), 0);

    /* A node planted past the log's end (leaf 9's hash in a log of 6): the
     * next append cannot write in order behind it and says so, whatever it
     * would write. */
    raw_node(&e, "t-", 0, 9, leaf_hashes[9], false);
    txn = txn_begin(&e, true);
    assert_int_equal(keten_merkle_log_append(log, txn, leaves[6].data, leaves[6].len, NULL),
        KETEN_ERR_INCONSISTENT);
    assert_non_null(strstr(keten_err_detail(), "past its last leaf"));
    mdb_txn_abort(txn);
    raw_node(&e, "t-", 0, 9, NULL, true);

    /* A missing stored subtree is reported, not silently recomputed. */
    raw_node(&e, "t-", 2, 0, NULL, true);
    txn = txn_begin(&e, false);
    keten_hash h;
    keten_hash p[KETEN_MERKLE_MAX_PROOF];
    size_t len;
    assert_int_equal(keten_merkle_log_root(log, txn, 6, h), KETEN_ERR_INCONSISTENT);
    assert_int_equal(
        keten_merkle_log_inclusion_proof(log, txn, 5, 6, p, &len), KETEN_ERR_INCONSISTENT);
    assert_int_equal(len, 0);
    /* Sizes that do not need that subtree still work. */
    assert_int_equal(keten_merkle_log_root(log, txn, 3, h), KETEN_OK);
    assert_memory_equal(h, naive_roots[3], KETEN_HASH_BYTES);
    mdb_txn_abort(txn);

    /* A node of the wrong length. */
    MDB_txn *w = txn_begin(&e, true);
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(w, "t-node", 0, &dbi), 0);
    uint8_t kb[9] = { 0, 0, 0, 0, 0, 0, 0, 1, 1 }; /* level 1, index 0: leaves 0-1 */
    MDB_val k = { .mv_size = sizeof kb, .mv_data = kb };
    MDB_val v = { .mv_size = 5, .mv_data = junk };
    assert_int_equal(mdb_put(w, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(w), 0);
    txn = txn_begin(&e, false);
    assert_int_equal(keten_merkle_log_root(log, txn, 2, h), KETEN_ERR_INCONSISTENT);
    mdb_txn_abort(txn);

    keten_merkle_log_destroy(&log);
    lenv_destroy(&e);
}

/* The node table is written in append order: the hashes leaf i completes
 * are keyed (i, level) and follow each other, after every earlier key. A
 * cursor walk from the start returns exactly the puts in the order the
 * appends made them, each with the subtree's hash. (The earlier layout,
 * level first, sorted every level apart: leaf 1's hash before level 1's.) */
static void test_log_node_layout(void **state)
{
    (void)state;
    lenv e;
    lenv_new(&e, 64u << 20);
    keten_merkle_log *log = mlog_open(&e, "t-");
    const size_t n = 37;
    MDB_txn *txn = txn_begin(&e, true);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(
            keten_merkle_log_append(log, txn, leaves[i].data, leaves[i].len, NULL), KETEN_OK);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);

    txn = txn_begin(&e, false);
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(txn, "t-node", 0, &dbi), 0);
    MDB_cursor *cur = NULL;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    size_t seen = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t index = i;
        for (unsigned level = 0;; level++) {
            uint8_t want[9];
            assert_true(keten_merkle_node_key(want, level, index));
            assert_int_equal(want[8], level);
            assert_int_equal(want[7], (uint8_t)i); /* its last leaf is i */
            assert_int_equal(rc, 0);
            assert_int_equal(k.mv_size, sizeof want);
            assert_memory_equal(k.mv_data, want, sizeof want);
            keten_hash h;
            MROOT(leaf_hashes + (index << level), (uint64_t)1 << level, h);
            assert_int_equal(v.mv_size, KETEN_HASH_BYTES);
            assert_memory_equal(v.mv_data, h, KETEN_HASH_BYTES);
            seen++;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            if ((index & 1) == 0) {
                break;
            }
            index >>= 1;
        }
    }
    assert_int_equal(rc, MDB_NOTFOUND);
    assert_int_equal(seen, 2 * n - 3); /* 37 leaves: 2n - popcount(n) hashes */
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    keten_merkle_log_destroy(&log);
    lenv_destroy(&e);
}

/* The key of a subtree: its last leaf, then its level; none for a subtree no
 * tree of fewer than 2^64 leaves has. */
static void test_node_key_bounds(void **state)
{
    (void)state;
    uint8_t k[9];
    memset(k, 0xee, sizeof k);
    assert_true(keten_merkle_node_key(k, 0, 0));
    static const uint8_t zero[9] = { 0 };
    assert_memory_equal(k, zero, sizeof k);
    assert_true(keten_merkle_node_key(k, 3, 2)); /* leaves 16-23 */
    static const uint8_t k32[9] = { 0, 0, 0, 0, 0, 0, 0, 23, 3 };
    assert_memory_equal(k, k32, sizeof k);
    assert_true(keten_merkle_node_key(k, 63, 0)); /* leaves 0 .. 2^63 - 1 */
    static const uint8_t k63[9] = { 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 63 };
    assert_memory_equal(k, k63, sizeof k);
    assert_true(keten_merkle_node_key(k, 0, UINT64_MAX - 1)); /* the last leaf there can be */
    memset(k, 0xee, sizeof k);
    assert_false(keten_merkle_node_key(k, 0, UINT64_MAX));
    assert_false(keten_merkle_node_key(k, 63, 1));
    assert_false(keten_merkle_node_key(k, 1, UINT64_MAX >> 1));
    assert_false(keten_merkle_node_key(k, 64, 0));
    assert_false(keten_merkle_node_key(k, 255, 0));
    static const uint8_t untouched[9] = { 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee };
    assert_memory_equal(k, untouched, sizeof k);
}

/* A node table in the earlier layout (level first) is refused by name, not
 * read as a damaged log; one of a single leaf has the same key either way. */
static void test_log_old_layout_refused(void **state)
{
    (void)state;
    for (int leaves_n = 1; leaves_n <= 3; leaves_n++) {
        lenv e;
        lenv_new(&e, 16u << 20);
        MDB_txn *w = txn_begin(&e, true);
        MDB_dbi ldbi, ndbi;
        assert_int_equal(mdb_dbi_open(w, "o-leaf", MDB_CREATE, &ldbi), 0);
        assert_int_equal(mdb_dbi_open(w, "o-node", MDB_CREATE, &ndbi), 0);
        for (int i = 0; i < leaves_n; i++) {
            uint8_t lk[8] = { 0, 0, 0, 0, 0, 0, 0, (uint8_t)i };
            MDB_val k = { sizeof lk, lk }, v = { leaves[i].len, leaves[i].data };
            assert_int_equal(mdb_put(w, ldbi, &k, &v, 0), 0);
            uint8_t nk[9] = { 0, 0, 0, 0, 0, 0, 0, 0, (uint8_t)i }; /* level 0, index i */
            MDB_val kn = { sizeof nk, nk }, vn = { KETEN_HASH_BYTES, leaf_hashes[i] };
            assert_int_equal(mdb_put(w, ndbi, &kn, &vn, 0), 0);
        }
        if (leaves_n >= 2) {
            uint8_t nk[9] = { 1, 0, 0, 0, 0, 0, 0, 0, 0 }; /* level 1, index 0 */
            keten_hash h;
            MROOT(leaf_hashes, 2, h);
            MDB_val kn = { sizeof nk, nk }, vn = { KETEN_HASH_BYTES, h };
            assert_int_equal(mdb_put(w, ndbi, &kn, &vn, 0), 0);
        }
        assert_int_equal(mdb_txn_commit(w), 0);
        MDB_txn *txn = txn_begin(&e, true);
        keten_merkle_log *log = NULL;
        keten_err err = keten_merkle_log_open(txn, "o-", &log);
        if (leaves_n == 1) {
            assert_int_equal(err, KETEN_OK);
            keten_hash r;
            assert_int_equal(keten_merkle_log_root(log, txn, 1, r), KETEN_OK);
            assert_memory_equal(r, naive_roots[1], KETEN_HASH_BYTES);
            assert_int_equal(
                keten_merkle_log_append(log, txn, leaves[1].data, leaves[1].len, NULL), KETEN_OK);
            assert_int_equal(keten_merkle_log_root(log, txn, 2, r), KETEN_OK);
            assert_memory_equal(r, naive_roots[2], KETEN_HASH_BYTES);
            keten_merkle_log_destroy(&log);
        } else {
            assert_int_equal(err, KETEN_ERR_WRONG_TYPE);
            assert_null(log);
            assert_non_null(strstr(keten_err_detail(), "earlier version"));
        }
        mdb_txn_abort(txn);
        lenv_destroy(&e);
    }
}

static void test_log_map_full(void **state)
{
    (void)state;
    lenv e;
    lenv_new(&e, 128u << 10); /* 128 KiB: full after a few dozen large leaves */
    keten_merkle_log *log = mlog_open(&e, "f-");
    uint8_t big[1500];

    /* Leaf i is 1500 bytes of the value i mod 256. */
    size_t committed = 0;
    bool full = false;
    keten_hash *lh = calloc(1000, sizeof *lh);
    assert_non_null(lh);
    while (!full && committed < 1000) {
        MDB_txn *txn = txn_begin(&e, true);
        size_t in_txn = 0;
        keten_err err = KETEN_OK;
        for (size_t j = 0; j < 3; j++) {
            memset(big, (int)(committed + j), sizeof big);
            err = keten_merkle_log_append(log, txn, big, sizeof big, NULL);
            if (err != KETEN_OK) {
                break;
            }
            in_txn++;
        }
        if (err != KETEN_OK) {
            assert_int_equal(err, KETEN_ERR_STORE_FULL);
            assert_non_null(strstr(keten_err_detail(), "full"));
            mdb_txn_abort(txn);
            full = true;
            break;
        }
        int rc = mdb_txn_commit(txn);
        if (rc == MDB_MAP_FULL) {
            full = true;
            break;
        }
        assert_int_equal(rc, 0);
        for (size_t j = 0; j < in_txn; j++) {
            memset(big, (int)(committed + j), sizeof big);
            keten_merkle_leaf_hash(big, sizeof big, lh[committed + j]);
        }
        committed += in_txn;
    }
    assert_true(full);
    assert_true(committed > 3);

    /* The log is exactly what was committed, and every proof still holds. */
    MDB_txn *txn = txn_begin(&e, false);
    uint64_t size;
    assert_int_equal(keten_merkle_log_size(log, txn, &size), KETEN_OK);
    assert_int_equal(size, committed);
    keten_hash h, want;
    keten_hash p[KETEN_MERKLE_MAX_PROOF];
    size_t len;
    for (size_t m = 1; m <= committed; m++) {
        assert_int_equal(keten_merkle_log_root(log, txn, m, h), KETEN_OK);
        MROOT(lh, m, want);
        assert_memory_equal(h, want, KETEN_HASH_BYTES);
    }
    MROOT(lh, committed, want);
    for (size_t i = 0; i < committed; i++) {
        assert_int_equal(
            keten_merkle_log_inclusion_proof(log, txn, i, committed, p, &len), KETEN_OK);
        assert_int_equal(VINC(lh[i], i, committed, p, len, want), KETEN_OK);
    }
    mdb_txn_abort(txn);

    /* A small leaf may still fit; if it does, the log goes on consistently. */
    txn = txn_begin(&e, true);
    uint8_t small = 7;
    keten_err err = keten_merkle_log_append(log, txn, &small, 1, NULL);
    if (err == KETEN_OK && mdb_txn_commit(txn) == 0) {
        keten_merkle_leaf_hash(&small, 1, lh[committed]);
        committed++;
    } else {
        if (err != KETEN_OK) {
            assert_int_equal(err, KETEN_ERR_STORE_FULL);
            mdb_txn_abort(txn);
        }
    }
    txn = txn_begin(&e, false);
    assert_int_equal(keten_merkle_log_size(log, txn, &size), KETEN_OK);
    assert_int_equal(size, committed);
    assert_int_equal(keten_merkle_log_root(log, txn, committed, h), KETEN_OK);
    MROOT(lh, committed, want);
    assert_memory_equal(h, want, KETEN_HASH_BYTES);
    mdb_txn_abort(txn);

    free(lh);
    keten_merkle_log_destroy(&log);
    lenv_destroy(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer_roots),
        cmocka_unit_test(test_known_answer_proofs),
        cmocka_unit_test(test_empty_tree),
        cmocka_unit_test(test_memory_matches_naive),
        cmocka_unit_test(test_proof_lengths_large),
        cmocka_unit_test(test_log_grows_leaf_by_leaf),
        cmocka_unit_test(test_log_memo),
        cmocka_unit_test(test_log_known_answer),
        cmocka_unit_test(test_log_refuses_bad_input),
        cmocka_unit_test(test_log_detects_tampering),
        cmocka_unit_test(test_log_map_full),
        cmocka_unit_test(test_log_node_layout),
        cmocka_unit_test(test_node_key_bounds),
        cmocka_unit_test(test_log_old_layout_refused),
    };
    return cmocka_run_group_tests(tests, setup_data, NULL);
}
