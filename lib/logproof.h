/*
 * logproof.h - proofs of single audit records, as the broker sends them and
 * nodes (and auditors) check them (docs/protocol.md, "Acknowledgement: a
 * proof, not a promise").
 *
 * A LeafProof {tree_size, leaf_index, leaf, path} proves that the serialized
 * AuditRecord `leaf` is leaf `leaf_index` of the log's tree of `tree_size`
 * leaves: the RFC 9162 audit path from H(0x00 || leaf) leads to that tree's
 * root. The root comes from a checkpoint the checker has verified (signature
 * and consistency with its previous reference) - never from the proof.
 *
 * keten_logproof_verify() checks the path and parses the leaf canonically
 * (KETEN_AUDIT_RECORD_MAX), and refuses a record whose seq is not the leaf
 * index. keten_logproof_record_is_envelope() then says whether a `submitted` record
 * is the record of exactly one envelope: event SUBMITTED, msg_id, sender,
 * recipients, kind, category, purpose and header bytes equal the envelope's
 * header; ciphertext hash, signature and envelope hash equal the envelope's
 * (compared with sodium_memcmp).
 *
 * The broker side: keten_logproof_build() fills a LeafProof from the
 * persistent log; the leaf bytes point into the LMDB map (valid until the
 * transaction ends or writes again): serialize the frame before that.
 *
 * Ownership: *rec_out with keten_pb_free(). Thread safety: reentrant.
 * Errors: KETEN_ERR_MALFORMED (lengths, sizes, fields), KETEN_ERR_NOT_CANONICAL,
 * KETEN_ERR_INCONSISTENT (the path does not lead to the root; the record is
 * not the one expected), KETEN_ERR_STORE (building: LMDB).
 */
#ifndef KETEN_LOGPROOF_H
#define KETEN_LOGPROOF_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "merkle.h"

/* One serialized AuditRecord, at most (a submitted record holds a header of
 * at most 64 recipients; a receipted one a ReceiptProof; a
 * directory-installed one a whole signed directory). */
#define KETEN_AUDIT_RECORD_MAX (KETEN_DIRECTORY_MAX + (64u << 10))

/* Check p's path against root (a tree of p->tree_size leaves) and parse its
 * leaf. */
keten_err keten_logproof_verify(const Keten__LeafProof *p, const keten_hash root,
    Keten__AuditRecord **rec_out) KETEN_MUST_CHECK;

/* KETEN_OK when r is the `submitted` record of the serialized envelope env
 * (parsed as e); KETEN_ERR_INCONSISTENT naming the first field that
 * differs otherwise. */
keten_err keten_logproof_record_is_envelope(const Keten__AuditRecord *r, const uint8_t *env, size_t env_len,
    const Keten__Envelope *e) KETEN_MUST_CHECK;

/* A LeafProof of leaf index in the tree of size leaves, from the log. */
typedef struct keten_logproof_buf {
    Keten__LeafProof msg;
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    ProtobufCBinaryData path_v[KETEN_MERKLE_MAX_PROOF];
} keten_logproof_buf;

keten_err keten_logproof_build(const keten_merkle_log *log, MDB_txn *txn, uint64_t index, uint64_t size,
    keten_logproof_buf *out) KETEN_MUST_CHECK;

/* The same through a memo of subtree hashes (merkle.h; NULL: none). */
keten_err keten_logproof_build_memo(const keten_merkle_log *log, MDB_txn *txn, keten_merkle_log_memo *memo,
    uint64_t index, uint64_t size, keten_logproof_buf *out) KETEN_MUST_CHECK;

/* The same from a path the caller computed (e.g. a batch's compact range):
 * msg points into leaf and into out. */
void keten_logproof_set(keten_logproof_buf *out, uint64_t tree_size, uint64_t index,
    const uint8_t *leaf, size_t leaf_len, const keten_hash *path, size_t path_len);

#endif
