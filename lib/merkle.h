/*
 * merkle.h - the audit log's Merkle tree, RFC 9162 section 2.1 exactly.
 *
 * Hashes: SHA-256. Leaf hash = H(0x00 || leaf bytes). Interior node =
 * H(0x01 || left || right). MTH of n > 1 leaves splits at k, the largest
 * power of two smaller than n. Inclusion proofs (2.1.3) and consistency
 * proofs (2.1.4) are lists of 32-byte hashes in the RFC's order; their
 * verification follows the RFC's algorithms (2.1.3.2 and 2.1.4.2).
 *
 * The persistent log (keten_merkle_log) lives in an LMDB environment the caller
 * owns, in two named databases "<prefix>leaf" and "<prefix>node":
 *   leaf: key = index (8 bytes big-endian), value = leaf bytes; written
 *         with MDB_APPEND only, so it can only grow;
 *   node: key = last leaf (8 bytes big-endian) || level (1 byte), value =
 *         the 32-byte hash of the complete subtree covering leaves
 *         [index * 2^level, (index + 1) * 2^level), whose last leaf is
 *         (index + 1) * 2^level - 1; level 0 is the leaf hash.
 * Appending stores the leaf and the hashes of the subtrees it completes:
 * amortised O(1), at most O(log n) puts. Every subtree leaf n completes
 * ends at leaf n, so its hashes sort after every stored key, next to each
 * other: both tables are written with MDB_APPEND only, and an append
 * touches the right edge of each B-tree and nothing else. (Keyed by level
 * first, as an earlier version was, every level had its own right edge:
 * some ten pages of the table written by every commit instead of one or
 * two. A table in that layout is refused by keten_merkle_log_open().) Roots and proofs for any size
 * up to the current one use the stored complete subtrees: O(log n) reads for roots and inclusion
 * proofs, O(log^2 n) at most for consistency proofs; nothing is rebuilt. There is no function that
 * deletes or rewrites.
 *
 * Transactions are the caller's: append in a write transaction, read in any.
 * A keten_merkle_log handle holds only DBI numbers: it may be used by several
 * threads with their own transactions. The caller must open the environment
 * with enough max_dbs (2 per log).
 *
 * Errors: KETEN_ERR_INVALID (index or size out of range, or old_size >
 * new_size), KETEN_ERR_TOO_LARGE (a leaf over KETEN_MERKLE_LEAF_MAX), KETEN_ERR_STORE
 * (LMDB error, detail names it), KETEN_ERR_STORE_FULL (MDB_MAP_FULL),
 * KETEN_ERR_INCONSISTENT (a stored node is missing or a proof fails).
 */
#ifndef KETEN_MERKLE_H
#define KETEN_MERKLE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"

#define KETEN_MERKLE_MAX_PROOF 128 /* hashes in any proof for sizes < 2^64 */
#define KETEN_MERKLE_LEAF_MAX (16u << 20) /* bytes of one log leaf (KETEN_ERR_TOO_LARGE) */

typedef uint8_t keten_hash[KETEN_HASH_BYTES];

/* ---- pure functions --------------------------------------------------- */

void keten_merkle_leaf_hash(const uint8_t *leaf, size_t len, keten_hash out);
void keten_merkle_node_hash(const keten_hash left, const keten_hash right, keten_hash out);

/* Root of n leaf hashes (n == 0: SHA-256 of the empty string). */
void keten_merkle_root(const keten_hash *leaf_hashes, uint64_t n, keten_hash out);

/* In-memory proofs over an array of leaf hashes (used by tests, tools and
 * small trees). *path_len receives the number of hashes written. */
keten_err keten_merkle_inclusion_proof(const keten_hash *leaf_hashes, uint64_t n,
    uint64_t index, keten_hash *path, size_t *path_len) KETEN_MUST_CHECK;
keten_err keten_merkle_consistency_proof(const keten_hash *leaf_hashes, uint64_t old_size,
    uint64_t new_size, keten_hash *proof, size_t *proof_len) KETEN_MUST_CHECK;

/* RFC 9162 2.1.3.2: does leaf_hash at index lead to root of a size-sized
 * tree? KETEN_OK or KETEN_ERR_INCONSISTENT. */
keten_err keten_merkle_verify_inclusion(const keten_hash leaf_hash, uint64_t index,
    uint64_t size, const keten_hash *path, size_t path_len, const keten_hash root)
    KETEN_MUST_CHECK;

/* RFC 9162 2.1.4.2. old_size == new_size needs an empty proof and equal
 * roots; old_size == 0 is always consistent (empty proof). */
keten_err keten_merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
    const keten_hash old_root, const keten_hash new_root, const keten_hash *proof,
    size_t proof_len) KETEN_MUST_CHECK;

/* ---- persistent log in LMDB ------------------------------------------- */

typedef struct keten_merkle_log keten_merkle_log;

/* The node table's key of the subtree (level, index), as above. false (out
 * untouched) when no tree of fewer than 2^64 leaves has that subtree:
 * level >= 64, or its last leaf past 2^64 - 2. */
#define KETEN_MERKLE_NODE_KEY_BYTES 9
bool keten_merkle_node_key(uint8_t out[static KETEN_MERKLE_NODE_KEY_BYTES], unsigned level,
    uint64_t index) KETEN_MUST_CHECK;

/* Open (creating in a write txn) the log's databases. prefix is a short name
 * such as "audit-". *out: keten_merkle_log_destroy(). The txn must be committed
 * before the handle is used in other transactions (LMDB DBI rule).
 * KETEN_ERR_WRONG_TYPE: the node table is in the layout of an earlier
 * version (keyed by level first). */
keten_err keten_merkle_log_open(
    MDB_txn *txn, const char *prefix, keten_merkle_log **out) KETEN_MUST_CHECK;
void keten_merkle_log_destroy(keten_merkle_log **self_p);

/* Append leaf bytes; *index_out receives its index (may be NULL). */
keten_err keten_merkle_log_append(keten_merkle_log *self, MDB_txn *txn, const uint8_t *leaf,
    size_t len, uint64_t *index_out) KETEN_MUST_CHECK;

/* Number of leaves. */
keten_err keten_merkle_log_size(
    const keten_merkle_log *self, MDB_txn *txn, uint64_t *size_out) KETEN_MUST_CHECK;

/* Leaf bytes of index; *leaf points into the LMDB map, valid until the
 * transaction ends or the next write in it. */
keten_err keten_merkle_log_leaf(const keten_merkle_log *self, MDB_txn *txn, uint64_t index,
    const uint8_t **leaf, size_t *len) KETEN_MUST_CHECK;

/* Stored leaf hash of index. */
keten_err keten_merkle_log_leaf_hash(
    const keten_merkle_log *self, MDB_txn *txn, uint64_t index, keten_hash out) KETEN_MUST_CHECK;

/* Root of the first size leaves (size <= current size). */
keten_err keten_merkle_log_root(
    const keten_merkle_log *self, MDB_txn *txn, uint64_t size, keten_hash out) KETEN_MUST_CHECK;

/* Proofs against the tree of the first size leaves. path needs room for
 * KETEN_MERKLE_MAX_PROOF hashes. */
keten_err keten_merkle_log_inclusion_proof(const keten_merkle_log *self, MDB_txn *txn,
    uint64_t index, uint64_t size, keten_hash *path, size_t *path_len) KETEN_MUST_CHECK;
keten_err keten_merkle_log_consistency_proof(const keten_merkle_log *self, MDB_txn *txn,
    uint64_t old_size, uint64_t new_size, keten_hash *proof, size_t *proof_len) KETEN_MUST_CHECK;

/* ---- remembered subtree hashes ----------------------------------------- */

/* A fixed-size cache of subtree hashes MTH(D[a:b]) for proofs and roots made
 * one after another (a broker proving every ack, delivery and notice of a
 * batch against the same tree). Because the log only grows, the hash of
 * [a, b) never changes once leaf b-1 is committed: entries stay valid across
 * transactions. A transaction that appended leaves and was then aborted can
 * leave entries for leaves that were never committed: call
 * keten_merkle_log_memo_clear() after such an abort. One memo belongs to one
 * thread (no locking) and to one log. 2^slots_log2 slots of 56 bytes,
 * direct-mapped; a collision only costs a recomputation. */
typedef struct keten_merkle_log_memo keten_merkle_log_memo;

keten_err keten_merkle_log_memo_new(
    unsigned slots_log2, keten_merkle_log_memo **out) KETEN_MUST_CHECK;
void keten_merkle_log_memo_clear(keten_merkle_log_memo *memo);
void keten_merkle_log_memo_destroy(keten_merkle_log_memo **self_p);

/* keten_merkle_log_root, _inclusion_proof and _consistency_proof through a memo
 * (NULL: none); the same results. */
keten_err keten_merkle_log_root_memo(const keten_merkle_log *self, MDB_txn *txn,
    keten_merkle_log_memo *memo, uint64_t size, keten_hash out) KETEN_MUST_CHECK;
keten_err keten_merkle_log_inclusion_proof_memo(const keten_merkle_log *self, MDB_txn *txn,
    keten_merkle_log_memo *memo, uint64_t index, uint64_t size, keten_hash *path,
    size_t *path_len) KETEN_MUST_CHECK;
keten_err keten_merkle_log_consistency_proof_memo(const keten_merkle_log *self, MDB_txn *txn,
    keten_merkle_log_memo *memo, uint64_t old_size, uint64_t new_size, keten_hash *proof,
    size_t *proof_len) KETEN_MUST_CHECK;

#endif
