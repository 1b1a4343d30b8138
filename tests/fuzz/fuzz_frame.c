/*
 * fuzz_frame.c - one broker <-> node Frame, parsed as keten-broker and
 * keten-node parse every ZeroMQ message (KETEN_PB_UNPACK, KETEN_FRAME_MAX,
 * unknown fields refused), then handed to the library check each side runs
 * on that body.
 *
 * Invariants:
 *   1. a frame that parses packs to bytes that parse again and pack to the
 *      same bytes (no reading depends on how the sender encoded it);
 *   2. the oneof is consistent: the member named by body_case is set;
 *   3. submit: a verified envelope hashes to v->envelope_hash, re-serializes
 *      to the same bytes, and names a current sender; deliver: an envelope
 *      that a recipient opens is one the broker's verify accepts;
 *   4. proofs (submit_ack, error, deliver, receipt_notice, expired): a
 *      LeafProof verifies against the root its path leads to exactly when
 *      its leaf is a canonical record of that index, and never against a
 *      root or with a leaf one bit off; a proven record that
 *      keten_logproof_record_is_envelope matches to the delivered envelope names its
 *      msg_id, sender and hash, and no longer matches the envelope with a
 *      bit flipped; receipt batches (receipts) and the receipt in a proven
 *      record verify for at most the one certificate they name, and what
 *      verifies is canonical;
 *   5. directory_push: a chain that verifies ends in one of its own versions
 *      (or the version held), never older than the version held;
 *   6. checkpoint: a note the broker's key opens parses to a body that
 *      re-serializes to the note's text; its consistency proof is never
 *      accepted from a larger tree, and from its own size only when empty;
 *      witnesses never exceed partners;
 *   7. cosignature: a line that can be added to a note and verifies makes
 *      its node count as a witness.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "envelope.h"
#include "fuzz_common.h"
#include "logproof.h"
#include "pb.h"
#include "receipt.h"
#include "signal_json.h"
#include "util.h"

static char *base_note; /* a checkpoint note signed by the test broker */

static void make_base_note(void)
{
    const fuzz_network *net = fuzz_net();
    keten_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "keten/%s", FUZZ_NETWORK);
    cp.size = 0;
    keten_merkle_root(NULL, 0, cp.root);
    cp.dir_version = keten_directory_version(net->d2);
    memcpy(cp.dir_hash, keten_directory_hash(net->d2), KETEN_HASH_BYTES);
    FUZZ_MUST(keten_checkpoint_sign(&cp, FUZZ_BROKER, fuzz_node(FUZZ_BROKER)->log_sk, &base_note));
}

static void check_submit(const ProtobufCBinaryData *env)
{
    const fuzz_network *net = fuzz_net();
    keten_envelope_verified *v = NULL;
    if (keten_envelope_verify(net->d2, env->data, env->len, &v) != KETEN_OK) {
        FUZZ_CHECK(v == NULL);
        return;
    }
    uint8_t hash[KETEN_HASH_BYTES];
    crypto_hash_sha256(hash, env->data, env->len);
    FUZZ_CHECK(memcmp(hash, v->envelope_hash, sizeof hash) == 0);
    FUZZ_CHECK(fuzz_packs_to(&v->envelope->base, env->data, env->len));
    FUZZ_CHECK(strcmp(v->sender->id, v->header->sender) == 0);
    FUZZ_CHECK(keten_directory_find_id(net->d2, v->header->sender) != NULL);
    keten_envelope_verified_destroy(&v);
}

static void check_deliver(const ProtobufCBinaryData *env)
{
    const fuzz_network *net = fuzz_net();
    keten_envelope_verified *v = NULL;
    keten_err ev = keten_envelope_verify(net->d1, env->data, env->len, &v);
    keten_envelope_verified_destroy(&v);
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        keten_envelope_verified *ov = NULL;
        Keten__Signal *sig = NULL;
        keten_err eo = keten_envelope_open(
            net->nodes[i], net->d1, env->data, env->len, FUZZ_T_OPEN, &ov, &sig);
        if (eo == KETEN_OK) {
            FUZZ_CHECK(ev == KETEN_OK);
            FUZZ_CHECK(sig != NULL && ov != NULL);
            FUZZ_CHECK(strcmp(sig->type, ov->header->category) == 0);
        } else {
            FUZZ_CHECK(sig == NULL && ov == NULL);
        }
        keten_signal_json_free(&sig);
        keten_envelope_verified_destroy(&ov);
    }
}

/* A LeafProof, checked against the root its own path leads to (the harness
 * holds no log): verify accepts it exactly when the path fits the tree and
 * the leaf is a canonical AuditRecord whose seq is the leaf index; what it
 * accepts is refused against a root with one bit flipped and with one bit of
 * the leaf flipped. *rec_out (may be NULL) receives the record. */
static void check_leafproof(const Keten__LeafProof *p, Keten__AuditRecord **rec_out)
{
    Keten__AuditRecord *rec = NULL;
    if (rec_out != NULL) {
        *rec_out = NULL;
    }
    if (p == NULL) {
        return;
    }
    keten_hash lh;
    keten_hash root;
    keten_merkle_leaf_hash(p->leaf.data, p->leaf.len, lh);
    if (!fuzz_root_from_path(lh, p->leaf_index, p->tree_size, p->path, p->n_path, root)) {
        /* No root at all: nothing can verify it; try one anyway. */
        memset(root, 0, sizeof root);
        FUZZ_CHECK(keten_logproof_verify(p, root, &rec) != KETEN_OK);
        FUZZ_CHECK(rec == NULL);
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
    uint8_t *bad_root = fuzz_flip(root, sizeof root, p->leaf.len);
    FUZZ_CHECK(keten_logproof_verify(p, bad_root, &again) != KETEN_OK && again == NULL);
    free(bad_root);
    Keten__LeafProof flipped = *p;
    uint8_t *bad_leaf = fuzz_flip(p->leaf.data, p->leaf.len, p->tree_size);
    flipped.leaf.data = bad_leaf;
    FUZZ_CHECK(keten_logproof_verify(&flipped, root, &again) != KETEN_OK && again == NULL);
    free(bad_leaf);
    keten_err_clear();
    if (rec_out != NULL) {
        *rec_out = rec;
    } else {
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
    }
}

/* A proven record against an envelope (acks and deliveries): when
 * keten_logproof_record_is_envelope accepts, the record names the envelope's msg_id,
 * sender and hash; the same record never matches the envelope with one bit
 * of it flipped. */
static void check_record_envelope(const Keten__AuditRecord *rec, const ProtobufCBinaryData *env)
{
    Keten__Envelope *e = NULL;
    Keten__Header *h = NULL;
    if (rec == NULL || env->len == 0
        || KETEN_PB_UNPACK(keten__envelope, env->data, env->len, KETEN_ENVELOPE_MAX, "e", &e)
            != KETEN_OK) {
        keten_err_clear();
        return;
    }
    if (keten_logproof_record_is_envelope(rec, env->data, env->len, e) == KETEN_OK) {
        FUZZ_CHECK(rec->event == KETEN__EVENT__EVENT_SUBMITTED);
        FUZZ_MUST(KETEN_PB_UNPACK(
            keten__header, e->header.data, e->header.len, KETEN_ENVELOPE_MAX, "h", &h));
        FUZZ_CHECK(rec->msg_id.len == KETEN_MSG_ID_BYTES
            && memcmp(rec->msg_id.data, h->msg_id.data, KETEN_MSG_ID_BYTES) == 0);
        FUZZ_CHECK(strcmp(rec->sender, h->sender) == 0);
        uint8_t hash[KETEN_HASH_BYTES];
        crypto_hash_sha256(hash, env->data, env->len);
        FUZZ_CHECK(rec->envelope_hash.len == KETEN_HASH_BYTES
            && memcmp(rec->envelope_hash.data, hash, KETEN_HASH_BYTES) == 0);
        uint8_t *bad = fuzz_flip(env->data, env->len, env->len / 2 * 8);
        Keten__Envelope *be = NULL;
        if (KETEN_PB_UNPACK(keten__envelope, bad, env->len, KETEN_ENVELOPE_MAX, "e", &be)
            == KETEN_OK) {
            FUZZ_CHECK(keten_logproof_record_is_envelope(rec, bad, env->len, be) != KETEN_OK);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&be);
        free(bad);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    keten_err_clear();
}

/* A receipt (a batch, or the proof inside a proven record) verifies for at
 * most the one certificate it names (twice: an unchanged certificate is in
 * both directory versions). */
static void check_receipt_batch(const Keten__ReceiptBatch *rb)
{
    const fuzz_network *net = fuzz_net();
    size_t ok = 0;
    const keten_directory *dirs[2] = { net->d1, net->d2 };
    for (size_t d = 0; d < 2; d++) {
        const Keten__Directory *doc = keten_directory_doc(dirs[d]);
        for (size_t i = 0; i < doc->n_nodes; i++) {
            Keten__ReceiptBatchHead *head = NULL;
            keten_hash *lh = NULL;
            if (keten_receipt_batch_verify(doc->nodes[i], FUZZ_NETWORK, rb, &head, &lh)
                == KETEN_OK) {
                FUZZ_CHECK(strcmp(head->recipient, doc->nodes[i]->id) == 0);
                FUZZ_CHECK(head->cert_serial == doc->nodes[i]->serial);
                FUZZ_CHECK(head->count == rb->n_leaves && head->count >= 1
                    && head->count <= KETEN_RECEIPT_BATCH_MAX);
                FUZZ_CHECK(fuzz_packs_to(&head->base, rb->head.data, rb->head.len));
                ok++;
            } else {
                FUZZ_CHECK(head == NULL && lh == NULL);
            }
            free(lh);
            keten_pb_free((ProtobufCMessage **)(void *)&head);
        }
    }
    FUZZ_CHECK(ok <= 2);
    keten_err_clear();
}

static void check_record_receipt(const Keten__AuditRecord *rec)
{
    if (rec == NULL || rec->receipt == NULL) {
        return;
    }
    const fuzz_network *net = fuzz_net();
    size_t ok = 0;
    const keten_directory *dirs[2] = { net->d1, net->d2 };
    for (size_t d = 0; d < 2; d++) {
        const Keten__Directory *doc = keten_directory_doc(dirs[d]);
        for (size_t i = 0; i < doc->n_nodes; i++) {
            Keten__ReceiptBatchHead *head = NULL;
            Keten__ReceiptLeaf *leaf = NULL;
            if (keten_receipt_proof_verify(doc->nodes[i], FUZZ_NETWORK, rec->receipt, &head, &leaf)
                == KETEN_OK) {
                FUZZ_CHECK(strcmp(head->recipient, doc->nodes[i]->id) == 0);
                FUZZ_CHECK(leaf->msg_id.len == KETEN_MSG_ID_BYTES);
                FUZZ_CHECK(fuzz_packs_to(&leaf->base, rec->receipt->leaf.data,
                    rec->receipt->leaf.len));
                ok++;
            } else {
                FUZZ_CHECK(head == NULL && leaf == NULL);
            }
            keten_pb_free((ProtobufCMessage **)(void *)&leaf);
            keten_pb_free((ProtobufCMessage **)(void *)&head);
        }
    }
    FUZZ_CHECK(ok <= 2);
    keten_err_clear();
}

static void check_push(const Keten__DirectoryPush *p)
{
    const fuzz_network *net = fuzz_net();
    const uint8_t **bufs = calloc(p->n_chain + 1, sizeof *bufs);
    size_t *lens = calloc(p->n_chain + 1, sizeof *lens);
    FUZZ_CHECK(bufs != NULL && lens != NULL);
    for (size_t i = 0; i < p->n_chain; i++) {
        bufs[i] = p->chain[i].data;
        lens[i] = p->chain[i].len;
    }
    const keten_directory *prevs[2] = { NULL, net->d1 };
    for (size_t k = 0; k < 2; k++) {
        keten_directory *out = NULL;
        keten_err e = keten_directory_verify_chain(
            net->anchor, prevs[k], bufs, lens, p->n_chain, FUZZ_T_DIR, &out);
        if (e != KETEN_OK) {
            FUZZ_CHECK(out == NULL);
            continue;
        }
        size_t out_len = 0;
        const uint8_t *out_bytes = keten_directory_bytes(out, &out_len);
        bool found = false;
        for (size_t i = 0; i < p->n_chain && !found; i++) {
            found = lens[i] == out_len && memcmp(bufs[i], out_bytes, out_len) == 0;
        }
        if (prevs[k] != NULL) {
            size_t pl = 0;
            const uint8_t *pb = keten_directory_bytes(prevs[k], &pl);
            found = found || (pl == out_len && memcmp(pb, out_bytes, pl) == 0);
            FUZZ_CHECK(keten_directory_version(out) >= keten_directory_version(prevs[k]));
        }
        FUZZ_CHECK(found);
        FUZZ_CHECK(strcmp(keten_directory_network(out), FUZZ_NETWORK) == 0);
        keten_directory_destroy(&out);
    }
    free(bufs);
    free(lens);
}

static void check_note(const Keten__CheckpointFrame *cf)
{
    const fuzz_network *net = fuzz_net();
    const char *note = cf->note;
    size_t len = strlen(note);
    keten_checkpoint cp;
    if (keten_checkpoint_open(note, len, FUZZ_BROKER, fuzz_node(FUZZ_BROKER)->log_pk, &cp)
        == KETEN_OK) {
        char *body = NULL;
        FUZZ_MUST(keten_checkpoint_body(&cp, &body));
        size_t bl = strlen(body);
        /* The body is the note's text before the empty line. */
        FUZZ_CHECK(bl < len && memcmp(note, body, bl) == 0 && note[bl] == '\n');
        free(body);
        /* Consistency: never from a larger tree; from the same size only
         * with an empty proof. */
        keten_hash proof[KETEN_MERKLE_MAX_PROOF];
        size_t n = 0;
        bool lengths = cf->n_consistency <= KETEN_MERKLE_MAX_PROOF;
        for (size_t i = 0; lengths && i < cf->n_consistency; i++) {
            lengths = cf->consistency[i].len == KETEN_HASH_BYTES;
            if (lengths) {
                memcpy(proof[n++], cf->consistency[i].data, KETEN_HASH_BYTES);
            }
        }
        if (lengths && cf->old_size > cp.size) {
            FUZZ_CHECK(keten_merkle_verify_consistency(
                           cf->old_size, cp.size, cp.root, cp.root, (const keten_hash *)proof, n)
                != KETEN_OK);
        }
        if (lengths && cf->old_size == cp.size && cp.size > 0) {
            keten_err e = keten_merkle_verify_consistency(
                cf->old_size, cp.size, cp.root, cp.root, (const keten_hash *)proof, n);
            FUZZ_CHECK((e == KETEN_OK) == (n == 0));
        }
        keten_err_clear();
    }
    size_t count = 0;
    bool witnessed = false;
    if (keten_checkpoint_witnesses(note, len, net->d2, &count, &witnessed) == KETEN_OK) {
        FUZZ_CHECK(count <= keten_directory_partner_count(net->d2));
        FUZZ_CHECK(witnessed == (count >= keten_directory_quorum(net->d2)));
    }
}

static void check_cosignature(const Keten__Cosignature *cs)
{
    const fuzz_network *net = fuzz_net();
    char *with = NULL;
    if (keten_checkpoint_add_line(base_note, strlen(base_note), cs->line, &with) != KETEN_OK) {
        FUZZ_CHECK(with == NULL);
        return;
    }
    const Keten__NodeCert *c = keten_directory_find_id(net->d2, cs->node);
    uint64_t t = 0;
    if (c != NULL && strcmp(c->role, "broker") != 0
        && keten_checkpoint_cosignature_verify(with, strlen(with), cs->node, c->sign_pk.data, &t)
            == KETEN_OK) {
        size_t count = 0;
        bool witnessed = false;
        FUZZ_MUST(keten_checkpoint_witnesses(with, strlen(with), net->d2, &count, &witnessed));
        FUZZ_CHECK(count == 1);
    }
    free(with);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_net();
    if (base_note == NULL) {
        make_base_note();
    }
    Keten__Frame *f = NULL;
    keten_err e = KETEN_PB_UNPACK(keten__frame, data, size, KETEN_FRAME_MAX, "frame", &f);
    if (e != KETEN_OK) {
        FUZZ_CHECK(f == NULL);
        keten_err_clear();
        return 0;
    }

    /* 1 */
    uint8_t *again = NULL;
    size_t again_len = 0;
    FUZZ_MUST(keten_pb_pack(&f->base, &again, &again_len));
    Keten__Frame *f2 = NULL;
    FUZZ_MUST(KETEN_PB_UNPACK(keten__frame, again, again_len, KETEN_FRAME_MAX, "frame", &f2));
    FUZZ_CHECK(f2->body_case == f->body_case && f2->request_id == f->request_id);
    FUZZ_CHECK(fuzz_packs_to(&f2->base, again, again_len));
    keten_pb_free((ProtobufCMessage **)(void *)&f2);
    free(again);

    /* 2..7 */
    switch (f->body_case) {
    case KETEN__FRAME__BODY__NOT_SET:
        break;
    case KETEN__FRAME__BODY_SUBMIT:
        FUZZ_CHECK(f->submit != NULL);
        check_submit(&f->submit->envelope);
        break;
    case KETEN__FRAME__BODY_SUBMIT_ACK:
        FUZZ_CHECK(f->submit_ack != NULL);
        check_leafproof(f->submit_ack->proof, NULL);
        break;
    case KETEN__FRAME__BODY_ERROR:
        FUZZ_CHECK(f->error != NULL);
        check_leafproof(f->error->proof, NULL);
        break;
    case KETEN__FRAME__BODY_DELIVER: {
        FUZZ_CHECK(f->deliver != NULL);
        check_deliver(&f->deliver->envelope);
        Keten__AuditRecord *rec = NULL;
        check_leafproof(f->deliver->proof, &rec);
        check_record_envelope(rec, &f->deliver->envelope);
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
        break;
    }
    case KETEN__FRAME__BODY_RECEIPTS:
        FUZZ_CHECK(f->receipts != NULL);
        check_receipt_batch(f->receipts);
        break;
    case KETEN__FRAME__BODY_RECEIPT_NOTICE: {
        FUZZ_CHECK(f->receipt_notice != NULL);
        Keten__AuditRecord *rec = NULL;
        check_leafproof(f->receipt_notice->proof, &rec);
        check_record_receipt(rec);
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
        break;
    }
    case KETEN__FRAME__BODY_EXPIRED:
        FUZZ_CHECK(f->expired != NULL);
        check_leafproof(f->expired->proof, NULL);
        break;
    case KETEN__FRAME__BODY_HELLO:
        FUZZ_CHECK(f->hello != NULL);
        break;
    case KETEN__FRAME__BODY_DIRECTORY_PUSH:
        FUZZ_CHECK(f->directory_push != NULL);
        check_push(f->directory_push);
        break;
    case KETEN__FRAME__BODY_DIRECTORY_REQUEST:
        FUZZ_CHECK(f->directory_request != NULL);
        break;
    case KETEN__FRAME__BODY_CHECKPOINT:
        FUZZ_CHECK(f->checkpoint != NULL && f->checkpoint->note != NULL);
        check_note(f->checkpoint);
        break;
    case KETEN__FRAME__BODY_COSIGNATURE:
        FUZZ_CHECK(f->cosignature != NULL);
        check_cosignature(f->cosignature);
        break;
    case KETEN__FRAME__BODY_PROOF_REQUEST:
        FUZZ_CHECK(f->proof_request != NULL);
        break;
    case KETEN__FRAME__BODY_PROOF_RESPONSE:
        FUZZ_CHECK(f->proof_response != NULL);
        for (size_t i = 0; i < f->proof_response->n_inclusions; i++) {
            const Keten__InclusionProof *p = f->proof_response->inclusions[i];
            Keten__AuditRecord *ar = NULL;
            /* The node reads the leaf bytes as an audit record (witness.c). */
            if (KETEN_PB_UNPACK(keten__audit_record, p->leaf.data, p->leaf.len,
                    KETEN_AUDIT_RECORD_MAX, "audit record", &ar)
                == KETEN_OK) {
                FUZZ_CHECK(ar != NULL);
            }
            keten_pb_free((ProtobufCMessage **)(void *)&ar);
        }
        break;
    case KETEN__FRAME__BODY_CREDIT:
        FUZZ_CHECK(f->credit != NULL);
        break;
    case KETEN__FRAME__BODY_NOTICE_ACK:
        FUZZ_CHECK(f->notice_ack != NULL);
        break;
    default:
        fuzz_fail(__FILE__, __LINE__, "a frame parsed with an unknown body case");
    }
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    keten_err_clear();
    return 0;
}
