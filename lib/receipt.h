/*
 * receipt.h - receipt batches: one signature per durable commit of a
 * recipient, one self-contained proof per message (docs/protocol.md,
 * "Receipts").
 *
 * A recipient that has durably committed (or refused) the deliveries of one
 * commit signs one ReceiptBatchHead over
 *   "keten/receipts/v2" || head bytes,
 * head = {network, recipient, cert_serial, stored_at, count, root}, root =
 * the RFC 9162 root over the serialized ReceiptLeaf{msg_id, envelope_hash,
 * outcome, reason} of the batch, in order. The broker checks one signature
 * per batch and keeps, per message, a ReceiptProof: the head, its signature,
 * the message's leaf and the audit path from that leaf to head.root. Anyone
 * holding the recipient's certificate can check a ReceiptProof alone.
 *
 * Rules every function here enforces (a leaf or head that breaks one is
 * refused, KETEN_ERR_MALFORMED or KETEN_ERR_NOT_CANONICAL):
 *   - head and leaves are canonical protobuf (pb.h);
 *   - msg_id is 16 bytes, envelope_hash 32, root 32;
 *   - outcome STORED has reason REASON_NONE; outcome REFUSED has a reason
 *     that is not REASON_NONE; OUTCOME_UNSPECIFIED is never valid;
 *   - 1 <= count <= KETEN_RECEIPT_BATCH_MAX, count == number of leaves;
 *   - head.recipient == the certificate's id, head.cert_serial == its serial,
 *     head.network == the network given.
 *
 * Ownership: *_new / *_build results are freed with their destroy/clear
 * function; parsed messages returned through *_out are freed with
 * keten_pb_free(). Thread safety: reentrant.
 * Errors: KETEN_ERR_INVALID (caller's arguments), KETEN_ERR_MALFORMED,
 * KETEN_ERR_NOT_CANONICAL, KETEN_ERR_BAD_SIGNATURE (signature does not
 * verify), KETEN_ERR_INCONSISTENT (root or path does not match the leaves),
 * KETEN_ERR_CRYPTO (signing failed its own check), KETEN_ERR_NOMEM.
 */
#ifndef KETEN_RECEIPT_H
#define KETEN_RECEIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "keten.h"
#include "merkle.h"

#define KETEN_LABEL_RECEIPTS "keten/receipts/v2"
#define KETEN_RECEIPT_BATCH_MAX 1024 /* leaves in one batch */
#define KETEN_RECEIPT_LEAF_MAX 128 /* bytes of one serialized ReceiptLeaf */
#define KETEN_RECEIPT_HEAD_MAX 512 /* bytes of one serialized ReceiptBatchHead */
/* Audit path of one leaf in a batch of at most KETEN_RECEIPT_BATCH_MAX. */
#define KETEN_RECEIPT_PATH_MAX 16
/* A serialized ReceiptProof, at most. */
#define KETEN_RECEIPT_PROOF_MAX (KETEN_RECEIPT_HEAD_MAX + KETEN_RECEIPT_LEAF_MAX + 1024)

/* What the recipient says of one delivery. */
typedef struct keten_receipt_item {
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t envelope_hash[KETEN_HASH_BYTES];
    Keten__Outcome outcome; /* STORED or REFUSED */
    Keten__Reason reason; /* REASON_NONE for STORED */
} keten_receipt_item;

/* A signed batch, ready to be put into a Frame (msg). */
typedef struct keten_receipt_batch {
    Keten__ReceiptBatch msg; /* points into the fields below */
    Keten__ReceiptLeaf *leaves;
    Keten__ReceiptLeaf **leaf_ptrs;
    keten_receipt_item *items;
    size_t n;
    uint8_t *head;
    size_t head_len;
    uint8_t signature[KETEN_SIG_BYTES];
} keten_receipt_batch;

/* Sign a batch of n items (1..KETEN_RECEIPT_BATCH_MAX) with me->sign_sk,
 * checking the signature with me->sign_pk before returning it. */
keten_err keten_receipt_batch_new(const keten_identity *me, const char *network,
    uint64_t cert_serial, uint64_t stored_at, const keten_receipt_item *items, size_t n,
    keten_receipt_batch **out) KETEN_MUST_CHECK;
void keten_receipt_batch_destroy(keten_receipt_batch **self_p);

/* Check a received ReceiptBatch against the recipient's certificate and the
 * network (every rule above, then the root over the leaves, then the
 * signature). On success *head_out is the parsed head and *leaf_hashes_out a
 * malloc()ed array of the head->count leaf hashes followed by the hashes of
 * every level of the tree above them (fewer than 2 x count in all), which
 * keten_receipt_proof_build reads: the batch's tree is hashed once, however
 * many proofs are cut from it. */
keten_err keten_receipt_batch_verify(const Keten__NodeCert *cert, const char *network,
    const Keten__ReceiptBatch *rb, Keten__ReceiptBatchHead **head_out,
    keten_hash **leaf_hashes_out) KETEN_MUST_CHECK;

/* The ReceiptProof of leaf i of a verified batch; leaf_hashes is what
 * keten_receipt_batch_verify returned (the leaves and the levels above
 * them). msg points into rb and into the buffer's own fields: valid while
 * rb and the buffer live. */
typedef struct keten_receipt_proof_buf {
    Keten__ReceiptProof msg;
    uint8_t *leaf; /* serialized leaf (malloc) */
    keten_hash path[KETEN_RECEIPT_PATH_MAX];
    ProtobufCBinaryData path_v[KETEN_RECEIPT_PATH_MAX];
} keten_receipt_proof_buf;

keten_err keten_receipt_proof_build(const Keten__ReceiptBatch *rb, const keten_hash *leaf_hashes,
    size_t i, keten_receipt_proof_buf *out) KETEN_MUST_CHECK;
void keten_receipt_proof_buf_clear(keten_receipt_proof_buf *buf);

/* Check the head and its signature only (an auditor checks each head once):
 * *head_out is the parsed head. */
keten_err keten_receipt_head_verify(const Keten__NodeCert *cert, const char *network,
    const ProtobufCBinaryData *head, const ProtobufCBinaryData *signature,
    Keten__ReceiptBatchHead **head_out) KETEN_MUST_CHECK;

/* Check that p's leaf is leaf p->index of head (whose signature the caller
 * has checked): leaf canonical and valid, index < count, path leads to
 * head->root. *leaf_out is the parsed leaf. */
keten_err keten_receipt_proof_check_leaf(const Keten__ReceiptBatchHead *head,
    const Keten__ReceiptProof *p, Keten__ReceiptLeaf **leaf_out) KETEN_MUST_CHECK;

/* Both of the above: a ReceiptProof is a valid receipt by cert. */
keten_err keten_receipt_proof_verify(const Keten__NodeCert *cert, const char *network,
    const Keten__ReceiptProof *p, Keten__ReceiptBatchHead **head_out,
    Keten__ReceiptLeaf **leaf_out) KETEN_MUST_CHECK;

/* Does the leaf name this message? (msg_id and envelope hash, compared in
 * constant time.) */
bool keten_receipt_leaf_names(const Keten__ReceiptLeaf *leaf,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const uint8_t envelope_hash[static KETEN_HASH_BYTES]);

/* Is r a reason a recipient may give (REFUSED)? */
bool keten_receipt_reason_valid(Keten__Reason r);

#endif
