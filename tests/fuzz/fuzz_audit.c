/*
 * fuzz_audit.c - audit records (the Merkle log's leaves) as an auditor or a
 * node reads them (canonical AuditRecord parse), and the signed statement the
 * audit trail's receipts rest on: a recipient's receipt batch
 * (keten_receipt_batch_verify) and the one-message ReceiptProof cut from it
 * (keten_receipt_proof_verify), as a receipted or refused-by-recipient record
 * holds it.
 *
 * Batch heads are tried as they are and once more re-signed (the head bytes
 * signed again with the test key of the recipient they name), so that
 * mutated heads, leaves and paths reach the checks behind the signature.
 *
 * Invariants:
 *   1. a record parses canonically exactly when it parses and packs back to
 *      the input; what parses packs to bytes that parse canonically; its
 *      leaf hash is SHA-256(0x00 || record) and proves itself in a tree of
 *      one leaf;
 *   2. a ReceiptProof that verifies (alone, or inside a record) has a head
 *      naming the certificate's id and serial and the network, a leaf with a
 *      16-byte msg_id and a 32-byte envelope hash whose outcome is STORED
 *      with no reason or REFUSED with a recipient's reason, and verifies for
 *      no certificate of another node;
 *   3. a ReceiptBatch that verifies has as many leaves as its head counts,
 *      and the proof of each of its leaves verifies and names that leaf.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "merkle.h"
#include "pb.h"
#include "receipt.h"

#define LABEL_RECEIPTS_LEN (sizeof KETEN_LABEL_RECEIPTS - 1)

static void proofs(const Keten__ReceiptProof *p)
{
    const fuzz_network *net = fuzz_net();
    const char *verified_id = NULL;
    const keten_directory *dirs[2] = { net->d1, net->d2 };
    for (size_t d = 0; d < 2; d++) {
        const Keten__Directory *doc = keten_directory_doc(dirs[d]);
        for (size_t i = 0; i < doc->n_nodes; i++) {
            const Keten__NodeCert *c = doc->nodes[i];
            Keten__ReceiptBatchHead *head = NULL;
            Keten__ReceiptLeaf *leaf = NULL;
            if (keten_receipt_proof_verify(c, FUZZ_NETWORK, p, &head, &leaf) != KETEN_OK) {
                FUZZ_CHECK(head == NULL && leaf == NULL);
                continue;
            }
            FUZZ_CHECK(strcmp(head->recipient, c->id) == 0 && head->cert_serial == c->serial);
            FUZZ_CHECK(strcmp(head->network, FUZZ_NETWORK) == 0);
            FUZZ_CHECK(p->index < head->count && head->count <= KETEN_RECEIPT_BATCH_MAX);
            FUZZ_CHECK(leaf->msg_id.len == KETEN_MSG_ID_BYTES);
            FUZZ_CHECK(leaf->envelope_hash.len == KETEN_HASH_BYTES);
            FUZZ_CHECK(fuzz_packs_to(&leaf->base, p->leaf.data, p->leaf.len));
            if (leaf->outcome == KETEN__OUTCOME__OUTCOME_STORED) {
                FUZZ_CHECK(leaf->reason == KETEN__REASON__REASON_NONE);
            } else {
                FUZZ_CHECK(leaf->outcome == KETEN__OUTCOME__OUTCOME_REFUSED);
                FUZZ_CHECK(keten_receipt_reason_valid(leaf->reason));
            }
            FUZZ_CHECK(keten_receipt_leaf_names(leaf, leaf->msg_id.data, leaf->envelope_hash.data));
            FUZZ_CHECK(verified_id == NULL || strcmp(verified_id, c->id) == 0);
            verified_id = c->id;
            keten_pb_free((ProtobufCMessage **)(void *)&leaf);
            keten_pb_free((ProtobufCMessage **)(void *)&head);
        }
    }
}

static void batch(const Keten__ReceiptBatch *rb)
{
    const fuzz_network *net = fuzz_net();
    const keten_directory *dirs[2] = { net->d1, net->d2 };
    for (size_t d = 0; d < 2; d++) {
        const Keten__Directory *doc = keten_directory_doc(dirs[d]);
        for (size_t i = 0; i < doc->n_nodes; i++) {
            const Keten__NodeCert *c = doc->nodes[i];
            Keten__ReceiptBatchHead *head = NULL;
            keten_hash *hashes = NULL;
            if (keten_receipt_batch_verify(c, FUZZ_NETWORK, rb, &head, &hashes) != KETEN_OK) {
                FUZZ_CHECK(head == NULL && hashes == NULL);
                continue;
            }
            FUZZ_CHECK(head->count == rb->n_leaves && strcmp(head->recipient, c->id) == 0);
            for (size_t k = 0; k < rb->n_leaves; k++) {
                keten_receipt_proof_buf buf;
                FUZZ_MUST(keten_receipt_proof_build(rb, (const keten_hash *)hashes, k, &buf));
                Keten__ReceiptBatchHead *h2 = NULL;
                Keten__ReceiptLeaf *leaf = NULL;
                FUZZ_MUST(keten_receipt_proof_verify(c, FUZZ_NETWORK, &buf.msg, &h2, &leaf));
                FUZZ_CHECK(keten_receipt_leaf_names(
                    leaf, rb->leaves[k]->msg_id.data, rb->leaves[k]->envelope_hash.data));
                FUZZ_CHECK(leaf->outcome == rb->leaves[k]->outcome);
                proofs(&buf.msg);
                keten_pb_free((ProtobufCMessage **)(void *)&leaf);
                keten_pb_free((ProtobufCMessage **)(void *)&h2);
                keten_receipt_proof_buf_clear(&buf);
            }
            free(hashes);
            keten_pb_free((ProtobufCMessage **)(void *)&head);
        }
    }
}

/* The head bytes signed again by the recipient they name (if a test node):
 * *sig receives the signature; false when the head names no test node. */
static bool resign(const ProtobufCBinaryData *head, uint8_t sig[static KETEN_SIG_BYTES])
{
    Keten__ReceiptBatchHead *h = NULL;
    if (KETEN_PB_UNPACK(keten__receipt_batch_head, head->data, head->len, KETEN_RECEIPT_HEAD_MAX,
            "h", &h)
        != KETEN_OK) {
        return false;
    }
    const keten_identity *who = fuzz_node(h->recipient);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    if (who == NULL) {
        return false;
    }
    uint8_t *m = malloc(LABEL_RECEIPTS_LEN + head->len);
    FUZZ_CHECK(m != NULL);
    memcpy(m, KETEN_LABEL_RECEIPTS, LABEL_RECEIPTS_LEN);
    if (head->len > 0) {
        memcpy(m + LABEL_RECEIPTS_LEN, head->data, head->len);
    }
    FUZZ_CHECK(crypto_sign_detached(sig, NULL, m, LABEL_RECEIPTS_LEN + head->len, who->sign_sk)
        == 0);
    free(m);
    return true;
}

/* A ReceiptProof as it is and re-signed. */
static void proof_both(Keten__ReceiptProof *p)
{
    proofs(p);
    uint8_t sig[KETEN_SIG_BYTES];
    if (resign(&p->head, sig)) {
        ProtobufCBinaryData old = p->signature;
        p->signature = (ProtobufCBinaryData) { sizeof sig, sig };
        proofs(p);
        p->signature = old;
    }
}

static void batches(const uint8_t *data, size_t size)
{
    Keten__ReceiptBatch *rb = NULL;
    if (KETEN_PB_UNPACK(keten__receipt_batch, data, size, KETEN_FRAME_MAX, "rb", &rb) != KETEN_OK) {
        return;
    }
    batch(rb);
    uint8_t sig[KETEN_SIG_BYTES];
    if (resign(&rb->head, sig)) {
        ProtobufCBinaryData old = rb->signature;
        rb->signature = (ProtobufCBinaryData) { sizeof sig, sig };
        batch(rb);
        rb->signature = old;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rb);
}

static void record(const uint8_t *data, size_t size)
{
    Keten__AuditRecord *rc = NULL;
    Keten__AuditRecord *rn = NULL;
    keten_err ec = KETEN_PB_UNPACK_CANONICAL(
        keten__audit_record, data, size, KETEN_MERKLE_LEAF_MAX, "audit record", &rc);
    keten_err en = KETEN_PB_UNPACK(
        keten__audit_record, data, size, KETEN_MERKLE_LEAF_MAX, "audit record", &rn);
    if (ec == KETEN_OK) {
        FUZZ_CHECK(en == KETEN_OK && fuzz_packs_to(&rc->base, data, size));
    } else {
        FUZZ_CHECK(rc == NULL);
        FUZZ_CHECK(en != KETEN_OK || !fuzz_packs_to(&rn->base, data, size));
    }
    if (en == KETEN_OK) {
        uint8_t *again = NULL;
        size_t again_len = 0;
        FUZZ_MUST(keten_pb_pack(&rn->base, &again, &again_len));
        Keten__AuditRecord *r2 = NULL;
        FUZZ_MUST(KETEN_PB_UNPACK_CANONICAL(
            keten__audit_record, again, again_len, KETEN_MERKLE_LEAF_MAX, "audit record", &r2));
        keten_pb_free((ProtobufCMessage **)(void *)&r2);
        free(again);
    }
    if (ec == KETEN_OK) {
        keten_hash lh;
        keten_hash mine;
        keten_merkle_leaf_hash(data, size, lh);
        crypto_hash_sha256_state st;
        static const uint8_t zero = 0x00;
        crypto_hash_sha256_init(&st);
        crypto_hash_sha256_update(&st, &zero, 1);
        crypto_hash_sha256_update(&st, data, size);
        crypto_hash_sha256_final(&st, mine);
        FUZZ_CHECK(memcmp(lh, mine, sizeof lh) == 0);
        FUZZ_MUST(keten_merkle_verify_inclusion(lh, 0, 1, NULL, 0, lh));
        if (rc->receipt != NULL) {
            proof_both(rc->receipt);
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rc);
    keten_pb_free((ProtobufCMessage **)(void *)&rn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_net();
    record(data, size);
    Keten__ReceiptProof *p = NULL;
    if (KETEN_PB_UNPACK(keten__receipt_proof, data, size, KETEN_RECEIPT_PROOF_MAX, "p", &p)
        == KETEN_OK) {
        proof_both(p);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&p);
    batches(data, size);
    keten_err_clear();
    return 0;
}
