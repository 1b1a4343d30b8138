/*
 * fuzz_audit.c - audit records (the Merkle log's leaves) as an auditor or a
 * node reads them (canonical AuditRecord parse), and the two signed
 * statements the audit trail rests on: the recipient's receipt
 * (keten_receipt_verify) and the broker's ack (keten_ack_verify).
 *
 * Receipts and acks are tried as they are and once more re-signed (the body
 * bytes signed again with the test key of the recipient it names, or the
 * broker's log key), so that mutated bodies reach the checks behind the
 * signature.
 *
 * Invariants:
 *   1. a record parses canonically exactly when it parses and packs back to
 *      the input; what parses packs to bytes that parse canonically; its
 *      leaf hash is SHA-256(0x00 || record) and proves itself in a tree of
 *      one leaf;
 *   2. a receipt that verifies is canonical, has a canonical body naming the
 *      certificate's id and serial, a 16-byte msg_id and a 32-byte envelope
 *      hash, and verifies for no certificate of another node; a receipt
 *      inside a record obeys the same;
 *   3. an ack that verifies with the broker's log key is canonical, has the
 *      documented body, and does not verify with any other key.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "fuzz_common.h"
#include "merkle.h"
#include "pb.h"

#define LABEL_RECEIPT_LEN (sizeof KETEN_LABEL_RECEIPT - 1)
#define LABEL_ACK_LEN (sizeof KETEN_LABEL_ACK - 1)

static void receipts(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    const char *verified_id = NULL;
    const keten_directory *dirs[2] = { net->d1, net->d2 };
    for (size_t d = 0; d < 2; d++) {
        const Keten__Directory *doc = keten_directory_doc(dirs[d]);
        for (size_t i = 0; i < doc->n_nodes; i++) {
            const Keten__NodeCert *c = doc->nodes[i];
            Keten__ReceiptBody *body = NULL;
            if (keten_receipt_verify(c, data, size, &body) != KETEN_OK) {
                FUZZ_CHECK(body == NULL);
                continue;
            }
            Keten__Receipt *r = NULL;
            FUZZ_MUST(KETEN_PB_UNPACK(keten__receipt, data, size, KETEN_RECEIPT_MAX, "r", &r));
            FUZZ_CHECK(fuzz_packs_to(&r->base, data, size));
            FUZZ_CHECK(fuzz_packs_to(&body->base, r->body.data, r->body.len));
            keten_pb_free((ProtobufCMessage **)(void *)&r);
            FUZZ_CHECK(strcmp(body->recipient, c->id) == 0 && body->cert_serial == c->serial);
            FUZZ_CHECK(body->msg_id.len == KETEN_MSG_ID_BYTES);
            FUZZ_CHECK(body->envelope_hash.len == KETEN_HASH_BYTES);
            FUZZ_CHECK(body->network[0] != '\0');
            FUZZ_CHECK(verified_id == NULL || strcmp(verified_id, c->id) == 0);
            verified_id = c->id;
            keten_pb_free((ProtobufCMessage **)(void *)&body);
        }
    }
}

static void acks(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    Keten__AckBody *body = NULL;
    if (keten_ack_verify(fuzz_node(FUZZ_BROKER)->log_pk, data, size, &body) != KETEN_OK) {
        FUZZ_CHECK(body == NULL);
        return;
    }
    Keten__Ack *a = NULL;
    FUZZ_MUST(KETEN_PB_UNPACK(keten__ack, data, size, KETEN_RECEIPT_MAX, "a", &a));
    FUZZ_CHECK(fuzz_packs_to(&a->base, data, size));
    FUZZ_CHECK(fuzz_packs_to(&body->base, a->body.data, a->body.len));
    keten_pb_free((ProtobufCMessage **)(void *)&a);
    FUZZ_CHECK(body->msg_id.len == KETEN_MSG_ID_BYTES);
    FUZZ_CHECK(body->envelope_hash.len == KETEN_HASH_BYTES && body->network[0] != '\0');
    keten_pb_free((ProtobufCMessage **)(void *)&body);
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        Keten__AckBody *other = NULL;
        FUZZ_CHECK(keten_ack_verify(net->nodes[i]->sign_pk, data, size, &other) != KETEN_OK);
        FUZZ_CHECK(other == NULL);
    }
}

/* body || signature container (Ack and Receipt share fields 1 and 2):
 * sign label || body with sk and return the packed container. */
static uint8_t *resign(const ProtobufCMessage *container, ProtobufCBinaryData *body,
    ProtobufCBinaryData *sig_field, const char *label, size_t label_len, const uint8_t *sk,
    size_t *out_len)
{
    uint8_t *m = malloc(label_len + body->len);
    FUZZ_CHECK(m != NULL);
    memcpy(m, label, label_len);
    if (body->len > 0) {
        memcpy(m + label_len, body->data, body->len);
    }
    uint8_t sig[KETEN_SIG_BYTES];
    FUZZ_CHECK(crypto_sign_detached(sig, NULL, m, label_len + body->len, sk) == 0);
    free(m);
    ProtobufCBinaryData old = *sig_field;
    sig_field->data = sig;
    sig_field->len = sizeof sig;
    uint8_t *out = NULL;
    FUZZ_MUST(keten_pb_pack(container, &out, out_len));
    *sig_field = old;
    return out;
}

static void resigned(const uint8_t *data, size_t size)
{
    size_t len = 0;
    uint8_t *b;
    Keten__Receipt *r = NULL;
    if (KETEN_PB_UNPACK(keten__receipt, data, size, KETEN_RECEIPT_MAX, "r", &r) == KETEN_OK) {
        Keten__ReceiptBody *body = NULL;
        const keten_identity *who = NULL;
        if (KETEN_PB_UNPACK(
                keten__receipt_body, r->body.data, r->body.len, KETEN_RECEIPT_MAX, "r", &body)
            == KETEN_OK) {
            who = fuzz_node(body->recipient);
        }
        if (who != NULL) {
            b = resign(&r->base, &r->body, &r->signature, KETEN_LABEL_RECEIPT, LABEL_RECEIPT_LEN,
                who->sign_sk, &len);
            receipts(b, len);
            free(b);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&body);
        keten_pb_free((ProtobufCMessage **)(void *)&r);
    }
    Keten__Ack *a = NULL;
    if (KETEN_PB_UNPACK(keten__ack, data, size, KETEN_RECEIPT_MAX, "a", &a) == KETEN_OK) {
        b = resign(&a->base, &a->body, &a->signature, KETEN_LABEL_ACK, LABEL_ACK_LEN,
            fuzz_node(FUZZ_BROKER)->log_sk, &len);
        acks(b, len);
        free(b);
        keten_pb_free((ProtobufCMessage **)(void *)&a);
    }
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
        if (rc->receipt.len > 0) {
            receipts(rc->receipt.data, rc->receipt.len);
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rc);
    keten_pb_free((ProtobufCMessage **)(void *)&rn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_net();
    record(data, size);
    receipts(data, size);
    acks(data, size);
    resigned(data, size);
    keten_err_clear();
    return 0;
}
