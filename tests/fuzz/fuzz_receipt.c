/*
 * fuzz_receipt.c - the proofs protocol v2 rests on, as the broker, nodes and
 * auditors check them: a recipient's receipt batch
 * (keten_receipt_batch_verify), one message's receipt proof
 * (keten_receipt_proof_verify) and the proof of one audit record
 * (keten_logproof_verify). The input is tried as each of ReceiptBatch,
 * ReceiptProof and LeafProof.
 *
 * Batches and receipt proofs are tried as they are and once more with their
 * head signed again by the test key of the recipient the head names, so that
 * mutated heads and leaves reach the checks behind the signature. A
 * LeafProof is checked against the root its own path leads to (RFC 9162).
 *
 * Invariants:
 *   1. a batch that verifies names the certificate's id and serial and the
 *      network, has count == number of leaves, a canonical head; it verifies
 *      again after a pack/parse round trip, with the same head bytes; each of
 *      its leaves gives a receipt proof that verifies, whose leaf is the
 *      batch's leaf packed, and which survives a pack/parse round trip; a
 *      batch verifies for no certificate of another node;
 *   2. a receipt proof that verifies has a canonical head and leaf, packs to
 *      bytes that parse and verify again, and is refused with one bit of
 *      its head or of its leaf flipped (the leaf also when re-signed);
 *   3. a LeafProof verifies exactly when its path fits the tree and its leaf
 *      is a canonical AuditRecord whose seq is the index; what verifies packs
 *      back to the leaf, and is refused against a root one bit off and with
 *      a leaf one bit off.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "logproof.h"
#include "pb.h"
#include "receipt.h"

#define LABEL_RECEIPTS_LEN (sizeof KETEN_LABEL_RECEIPTS - 1)
#define INPUT_MAX (KETEN_FRAME_MAX)

/* Every certificate of both directory versions. */
typedef void (*cert_fn)(const Keten__NodeCert *cert, void *arg);

static void each_cert(cert_fn fn, void *arg)
{
    const fuzz_network *net = fuzz_net();
    const keten_directory *dirs[2] = { net->d1, net->d2 };
    for (size_t d = 0; d < 2; d++) {
        const Keten__Directory *doc = keten_directory_doc(dirs[d]);
        for (size_t i = 0; i < doc->n_nodes; i++) {
            fn(doc->nodes[i], arg);
        }
    }
}

/* The signature over "keten/receipts/v2" || head by the node the head
 * names (version 1 keys; rotated: politie-mn's version 2 keys). false when
 * the head does not parse or names no node of the test network. */
static bool resign_head(const ProtobufCBinaryData *head, bool rotated, uint8_t sig[KETEN_SIG_BYTES])
{
    const fuzz_network *net = fuzz_net();
    Keten__ReceiptBatchHead *h = NULL;
    if (KETEN_PB_UNPACK(keten__receipt_batch_head, head->data, head->len, KETEN_RECEIPT_HEAD_MAX,
            "head", &h)
        != KETEN_OK) {
        keten_err_clear();
        return false;
    }
    const keten_identity *who = fuzz_node(h->recipient);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    if (who == NULL) {
        return false;
    }
    if (rotated && who == net->nodes[1]) {
        who = net->politie2;
    }
    size_t len = LABEL_RECEIPTS_LEN + head->len;
    uint8_t *m = malloc(len);
    FUZZ_CHECK(m != NULL);
    memcpy(m, KETEN_LABEL_RECEIPTS, LABEL_RECEIPTS_LEN);
    if (head->len > 0) {
        memcpy(m + LABEL_RECEIPTS_LEN, head->data, head->len);
    }
    FUZZ_CHECK(crypto_sign_detached(sig, NULL, m, len, who->sign_sk) == 0);
    free(m);
    return true;
}

/* ---- 2: receipt proofs ----------------------------------------------------- */

typedef struct proof_ctx {
    const Keten__ReceiptProof *p;
    const char *verified_id;
} proof_ctx;

static void proof_one(const Keten__NodeCert *cert, void *arg)
{
    proof_ctx *c = arg;
    const Keten__ReceiptProof *p = c->p;
    Keten__ReceiptBatchHead *head = NULL;
    Keten__ReceiptLeaf *leaf = NULL;
    if (keten_receipt_proof_verify(cert, FUZZ_NETWORK, p, &head, &leaf) != KETEN_OK) {
        FUZZ_CHECK(head == NULL && leaf == NULL);
        keten_err_clear();
        return;
    }
    FUZZ_CHECK(strcmp(head->recipient, cert->id) == 0 && head->cert_serial == cert->serial);
    FUZZ_CHECK(strcmp(head->network, FUZZ_NETWORK) == 0);
    FUZZ_CHECK(p->index < head->count);
    FUZZ_CHECK(fuzz_packs_to(&head->base, p->head.data, p->head.len));
    FUZZ_CHECK(fuzz_packs_to(&leaf->base, p->leaf.data, p->leaf.len));
    FUZZ_CHECK(leaf->msg_id.len == KETEN_MSG_ID_BYTES);
    FUZZ_CHECK(leaf->envelope_hash.len == KETEN_HASH_BYTES);
    FUZZ_CHECK((leaf->outcome == KETEN__OUTCOME__OUTCOME_STORED
                   && leaf->reason == KETEN__REASON__REASON_NONE)
        || (leaf->outcome == KETEN__OUTCOME__OUTCOME_REFUSED
            && keten_receipt_reason_valid(leaf->reason)));
    FUZZ_CHECK(keten_receipt_leaf_names(leaf, leaf->msg_id.data, leaf->envelope_hash.data));
    /* Only one node's certificates (one id, in one or both versions). */
    FUZZ_CHECK(c->verified_id == NULL || strcmp(c->verified_id, cert->id) == 0);
    c->verified_id = cert->id;

    /* Pack, parse, verify again. */
    uint8_t *b = NULL;
    size_t len = 0;
    FUZZ_MUST(keten_pb_pack(&p->base, &b, &len));
    Keten__ReceiptProof *again = NULL;
    FUZZ_MUST(KETEN_PB_UNPACK(keten__receipt_proof, b, len, KETEN_RECEIPT_PROOF_MAX, "p", &again));
    Keten__ReceiptBatchHead *h2 = NULL;
    Keten__ReceiptLeaf *l2 = NULL;
    FUZZ_MUST(keten_receipt_proof_verify(cert, FUZZ_NETWORK, again, &h2, &l2));
    FUZZ_CHECK(fuzz_packs_to(&h2->base, p->head.data, p->head.len));
    keten_pb_free((ProtobufCMessage **)(void *)&h2);
    keten_pb_free((ProtobufCMessage **)(void *)&l2);
    keten_pb_free((ProtobufCMessage **)(void *)&again);
    free(b);

    /* One bit of the head, or of the leaf, off: refused (the leaf also with
     * the head's signature intact: it is the path that fails). */
    Keten__ReceiptProof bad = *p;
    uint8_t *flipped = fuzz_flip(p->head.data, p->head.len, p->index * 7 + 3);
    bad.head.data = flipped;
    FUZZ_CHECK(keten_receipt_proof_verify(cert, FUZZ_NETWORK, &bad, &h2, &l2) != KETEN_OK);
    FUZZ_CHECK(h2 == NULL && l2 == NULL);
    free(flipped);
    bad = *p;
    flipped = fuzz_flip(p->leaf.data, p->leaf.len, p->index * 5 + 1);
    bad.leaf.data = flipped;
    FUZZ_CHECK(keten_receipt_proof_verify(cert, FUZZ_NETWORK, &bad, &h2, &l2) != KETEN_OK);
    FUZZ_CHECK(h2 == NULL && l2 == NULL);
    free(flipped);
    keten_err_clear();

    keten_pb_free((ProtobufCMessage **)(void *)&leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
}

static void receipt_proof(const Keten__ReceiptProof *p)
{
    proof_ctx c = { p, NULL };
    each_cert(proof_one, &c);
}

/* ---- 1: batches ------------------------------------------------------------- */

typedef struct batch_ctx {
    const Keten__ReceiptBatch *rb;
    const char *verified_id;
} batch_ctx;

static void batch_leaf(
    const Keten__NodeCert *cert, const Keten__ReceiptBatch *rb, const keten_hash *lh, size_t i)
{
    keten_receipt_proof_buf pb;
    memset(&pb, 0, sizeof pb);
    FUZZ_MUST(keten_receipt_proof_build(rb, lh, i, &pb));
    FUZZ_CHECK(fuzz_packs_to(&rb->leaves[i]->base, pb.msg.leaf.data, pb.msg.leaf.len));
    Keten__ReceiptBatchHead *ph = NULL;
    Keten__ReceiptLeaf *pl = NULL;
    FUZZ_MUST(keten_receipt_proof_verify(cert, FUZZ_NETWORK, &pb.msg, &ph, &pl));
    keten_pb_free((ProtobufCMessage **)(void *)&ph);
    keten_pb_free((ProtobufCMessage **)(void *)&pl);
    receipt_proof(&pb.msg);
    keten_receipt_proof_buf_clear(&pb);
}

static void batch_one(const Keten__NodeCert *cert, void *arg)
{
    batch_ctx *c = arg;
    const Keten__ReceiptBatch *rb = c->rb;
    Keten__ReceiptBatchHead *head = NULL;
    keten_hash *lh = NULL;
    if (keten_receipt_batch_verify(cert, FUZZ_NETWORK, rb, &head, &lh) != KETEN_OK) {
        FUZZ_CHECK(head == NULL && lh == NULL);
        keten_err_clear();
        return;
    }
    FUZZ_CHECK(strcmp(head->recipient, cert->id) == 0 && head->cert_serial == cert->serial);
    FUZZ_CHECK(strcmp(head->network, FUZZ_NETWORK) == 0);
    FUZZ_CHECK(head->count == rb->n_leaves && head->count >= 1
        && head->count <= KETEN_RECEIPT_BATCH_MAX);
    FUZZ_CHECK(head->root.len == KETEN_HASH_BYTES);
    FUZZ_CHECK(fuzz_packs_to(&head->base, rb->head.data, rb->head.len));
    FUZZ_CHECK(c->verified_id == NULL || strcmp(c->verified_id, cert->id) == 0);
    c->verified_id = cert->id;

    /* Pack, parse, verify again: the same head. */
    uint8_t *b = NULL;
    size_t len = 0;
    FUZZ_MUST(keten_pb_pack(&rb->base, &b, &len));
    Keten__ReceiptBatch *again = NULL;
    FUZZ_MUST(KETEN_PB_UNPACK(keten__receipt_batch, b, len, INPUT_MAX, "batch", &again));
    Keten__ReceiptBatchHead *h2 = NULL;
    keten_hash *lh2 = NULL;
    FUZZ_MUST(keten_receipt_batch_verify(cert, FUZZ_NETWORK, again, &h2, &lh2));
    FUZZ_CHECK(fuzz_packs_to(&h2->base, rb->head.data, rb->head.len));
    FUZZ_CHECK(memcmp(lh, lh2, head->count * sizeof *lh) == 0);
    free(lh2);
    keten_pb_free((ProtobufCMessage **)(void *)&h2);
    keten_pb_free((ProtobufCMessage **)(void *)&again);
    free(b);

    /* Every leaf's proof verifies alone and carries that leaf. A batch of
     * many leaves is sampled (every step-th and the last) to keep one input
     * fast. */
    size_t step = head->count > 16 ? head->count / 8 : 1;
    for (size_t i = 0; i < head->count; i += step) {
        batch_leaf(cert, rb, (const keten_hash *)lh, i);
    }
    if ((head->count - 1) % step != 0) {
        batch_leaf(cert, rb, (const keten_hash *)lh, head->count - 1);
    }
    /* One bit of the head off: the batch is refused. */
    Keten__ReceiptBatch bad = *rb;
    uint8_t *flipped = fuzz_flip(rb->head.data, rb->head.len, rb->n_leaves * 11 + 5);
    bad.head.data = flipped;
    FUZZ_CHECK(keten_receipt_batch_verify(cert, FUZZ_NETWORK, &bad, &h2, &lh2) != KETEN_OK);
    FUZZ_CHECK(h2 == NULL && lh2 == NULL);
    free(flipped);
    keten_err_clear();
    free(lh);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
}

static void batch(const Keten__ReceiptBatch *rb)
{
    batch_ctx c = { rb, NULL };
    each_cert(batch_one, &c);
}

/* ---- 3: proofs of audit records --------------------------------------------- */

static void leafproof(const Keten__LeafProof *p)
{
    keten_hash lh;
    keten_hash root;
    Keten__AuditRecord *rec = NULL;
    keten_merkle_leaf_hash(p->leaf.data, p->leaf.len, lh);
    if (!fuzz_root_from_path(lh, p->leaf_index, p->tree_size, p->path, p->n_path, root)) {
        memset(root, 0, sizeof root);
        FUZZ_CHECK(keten_logproof_verify(p, root, &rec) != KETEN_OK && rec == NULL);
        keten_err_clear();
        return;
    }
    Keten__AuditRecord *canon = NULL;
    bool canonical = p->leaf.len > 0 && p->leaf.len <= KETEN_AUDIT_RECORD_MAX
        && KETEN_PB_UNPACK_CANONICAL(keten__audit_record, p->leaf.data, p->leaf.len,
               KETEN_AUDIT_RECORD_MAX, "audit record", &canon)
            == KETEN_OK
        && canon->seq == p->leaf_index;
    keten_pb_free((ProtobufCMessage **)(void *)&canon);
    keten_err e = keten_logproof_verify(p, root, &rec);
    FUZZ_CHECK((e == KETEN_OK) == canonical);
    if (e != KETEN_OK) {
        FUZZ_CHECK(rec == NULL);
        keten_err_clear();
        return;
    }
    FUZZ_CHECK(rec->seq == p->leaf_index);
    FUZZ_CHECK(fuzz_packs_to(&rec->base, p->leaf.data, p->leaf.len));
    Keten__AuditRecord *again = NULL;
    uint8_t *bad_root = fuzz_flip(root, sizeof root, p->leaf_index);
    FUZZ_CHECK(keten_logproof_verify(p, bad_root, &again) != KETEN_OK && again == NULL);
    free(bad_root);
    Keten__LeafProof bad = *p;
    uint8_t *bad_leaf = fuzz_flip(p->leaf.data, p->leaf.len, p->tree_size * 3);
    bad.leaf.data = bad_leaf;
    FUZZ_CHECK(keten_logproof_verify(&bad, root, &again) != KETEN_OK && again == NULL);
    free(bad_leaf);
    /* The receipt a proven record holds obeys 2. */
    if (rec->receipt != NULL) {
        receipt_proof(rec->receipt);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    keten_err_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_net();
    uint8_t sig[KETEN_SIG_BYTES];

    Keten__ReceiptBatch *rb = NULL;
    if (KETEN_PB_UNPACK(keten__receipt_batch, data, size, INPUT_MAX, "batch", &rb) == KETEN_OK) {
        batch(rb);
        for (int rotated = 0; rotated < 2; rotated++) {
            if (resign_head(&rb->head, rotated == 1, sig)) {
                Keten__ReceiptBatch re = *rb;
                re.signature.data = sig;
                re.signature.len = sizeof sig;
                batch(&re);
            }
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rb);

    Keten__ReceiptProof *rp = NULL;
    if (KETEN_PB_UNPACK(keten__receipt_proof, data, size, KETEN_RECEIPT_PROOF_MAX, "proof", &rp)
        == KETEN_OK) {
        receipt_proof(rp);
        for (int rotated = 0; rotated < 2; rotated++) {
            if (resign_head(&rp->head, rotated == 1, sig)) {
                Keten__ReceiptProof re = *rp;
                re.signature.data = sig;
                re.signature.len = sizeof sig;
                receipt_proof(&re);
            }
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rp);

    Keten__LeafProof *lp = NULL;
    if (KETEN_PB_UNPACK(keten__leaf_proof, data, size, INPUT_MAX, "leaf proof", &lp) == KETEN_OK) {
        leafproof(lp);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&lp);
    keten_err_clear();
    return 0;
}
