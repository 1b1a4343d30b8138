/*
 * test_receipt.c - receipt batches (lib/receipt.h) and proofs of single
 * audit records (lib/logproof.h): every accept has a reject twin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "fixture.h"
#include "logproof.h"
#include "merkle.h"
#include "pb.h"
#include "receipt.h"
#include "util.h"

static const char *const specs[] = { "gemeente-diemen:municipality", "politie-mn:police",
    "belastingdienst:tax", "broker:broker", NULL };

static const char signal_json[] = "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}";

static int setup(void **state)
{
    *state = fixture_new(3, 2, specs);
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    fixture_destroy(&fx);
    return 0;
}

static const char *network(const fixture *fx)
{
    return keten_directory_network(fx->directory);
}

static const Keten__NodeCert *cert(const fixture *fx, const char *id)
{
    const Keten__NodeCert *c = keten_directory_find_id(fx->directory, id);
    assert_non_null(c);
    return c;
}

static void make_items(keten_receipt_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        randombytes_buf(items[i].msg_id, sizeof items[i].msg_id);
        randombytes_buf(items[i].envelope_hash, sizeof items[i].envelope_hash);
        items[i].outcome = i % 5 == 3 ? KETEN__OUTCOME__OUTCOME_REFUSED : KETEN__OUTCOME__OUTCOME_STORED;
        items[i].reason
            = i % 5 == 3 ? KETEN__REASON__REASON_INVALID_SIGNAL : KETEN__REASON__REASON_NONE;
    }
}

static keten_receipt_batch *sign_batch(fixture *fx, const char *who, keten_receipt_item *items, size_t n)
{
    keten_receipt_batch *b = NULL;
    const Keten__NodeCert *c = cert(fx, who);
    assert_int_equal(keten_receipt_batch_new(fixture_node(fx, who), network(fx), c->serial,
                         keten_now_ms(), items, n, &b),
        KETEN_OK);
    return b;
}

/* Every batch size from 1 to 40 (and the maximum): the batch verifies, its
 * root is RFC 9162's, and every leaf's proof verifies alone and equals the
 * RFC's audit path. */
static void test_batch_roundtrip(void **state)
{
    fixture *fx = *state;
    static keten_receipt_item items[KETEN_RECEIPT_BATCH_MAX];
    size_t sizes[41];
    for (size_t i = 0; i < 40; i++) {
        sizes[i] = i + 1;
    }
    sizes[40] = KETEN_RECEIPT_BATCH_MAX;
    for (size_t s = 0; s < 41; s++) {
        size_t n = sizes[s];
        make_items(items, n);
        keten_receipt_batch *b = sign_batch(fx, "politie-mn", items, n);
        Keten__ReceiptBatchHead *h = NULL;
        keten_hash *hashes = NULL;
        assert_int_equal(
            keten_receipt_batch_verify(cert(fx, "politie-mn"), network(fx), &b->msg, &h, &hashes),
            KETEN_OK);
        assert_int_equal(h->count, n);
        keten_hash root;
        keten_merkle_root((const keten_hash *)hashes, n, root);
        assert_memory_equal(root, h->root.data, KETEN_HASH_BYTES);
        for (size_t i = 0; i < n; i += (n > 64 ? 97 : 1)) {
            keten_receipt_proof_buf pb;
            assert_int_equal(keten_receipt_proof_build(&b->msg, (const keten_hash *)hashes, i, &pb), KETEN_OK);
            keten_hash rfc[KETEN_MERKLE_MAX_PROOF];
            size_t rfc_len = 0;
            assert_int_equal(
                keten_merkle_inclusion_proof((const keten_hash *)hashes, n, i, rfc, &rfc_len), KETEN_OK);
            assert_int_equal(pb.msg.n_path, rfc_len);
            for (size_t k = 0; k < rfc_len; k++) {
                assert_memory_equal(pb.msg.path[k].data, rfc[k], KETEN_HASH_BYTES);
            }
            /* Through its bytes, as an auditor gets it. */
            uint8_t *bytes = NULL;
            size_t len = 0;
            assert_int_equal(keten_pb_pack(&pb.msg.base, &bytes, &len), KETEN_OK);
            Keten__ReceiptProof *p = NULL;
            assert_int_equal(KETEN_PB_UNPACK_CANONICAL(keten__receipt_proof, bytes, len,
                                 KETEN_RECEIPT_PROOF_MAX, "proof", &p),
                KETEN_OK);
            Keten__ReceiptBatchHead *h2 = NULL;
            Keten__ReceiptLeaf *l = NULL;
            assert_int_equal(
                keten_receipt_proof_verify(cert(fx, "politie-mn"), network(fx), p, &h2, &l), KETEN_OK);
            assert_true(keten_receipt_leaf_names(l, items[i].msg_id, items[i].envelope_hash));
            assert_int_equal(l->outcome, items[i].outcome);
            assert_int_equal(l->reason, items[i].reason);
            /* Reject twin: another leaf's msg_id is not named. */
            if (n > 1) {
                size_t j = (i + 1) % n;
                assert_false(keten_receipt_leaf_names(l, items[j].msg_id, items[i].envelope_hash));
                assert_false(keten_receipt_leaf_names(l, items[i].msg_id, items[j].envelope_hash));
            }
            keten_pb_free((ProtobufCMessage **)(void *)&l);
            keten_pb_free((ProtobufCMessage **)(void *)&h2);
            keten_pb_free((ProtobufCMessage **)(void *)&p);
            free(bytes);
            keten_receipt_proof_buf_clear(&pb);
        }
        free(hashes);
        keten_pb_free((ProtobufCMessage **)(void *)&h);
        keten_receipt_batch_destroy(&b);
    }
}

static keten_err verify_batch(fixture *fx, const char *as, const Keten__ReceiptBatch *rb)
{
    Keten__ReceiptBatchHead *h = NULL;
    keten_hash *hashes = NULL;
    keten_err e = keten_receipt_batch_verify(cert(fx, as), network(fx), rb, &h, &hashes);
    if (e == KETEN_OK) {
        assert_non_null(h);
        assert_non_null(hashes);
    } else {
        assert_null(h);
        assert_null(hashes);
    }
    free(hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    return e;
}

/* A batch that was changed anywhere is refused. */
static void test_batch_rejects(void **state)
{
    fixture *fx = *state;
    keten_receipt_item items[7];
    make_items(items, 7);
    keten_receipt_batch *b = sign_batch(fx, "politie-mn", items, 7);
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_OK);

    /* Checked against another node's certificate. */
    assert_int_equal(verify_batch(fx, "belastingdienst", &b->msg), KETEN_ERR_MISMATCH);
    /* Another network. */
    {
        Keten__ReceiptBatchHead *h = NULL;
        keten_hash *hs = NULL;
        assert_int_equal(keten_receipt_batch_verify(cert(fx, "politie-mn"), "othernet", &b->msg, &h, &hs),
            KETEN_ERR_WRONG_NETWORK);
    }
    /* Every bit of the head flipped in turn. */
    for (size_t i = 0; i < b->head_len * 8; i++) {
        b->head[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_not_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_OK);
        b->head[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    /* Every bit of the signature. */
    for (size_t i = 0; i < KETEN_SIG_BYTES * 8; i++) {
        b->signature[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_BAD_SIGNATURE);
        b->signature[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    /* A leaf changed: the root no longer matches. */
    b->items[2].msg_id[0] ^= 1;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_INCONSISTENT);
    b->items[2].msg_id[0] ^= 1;
    b->leaves[3].outcome = KETEN__OUTCOME__OUTCOME_STORED;
    b->leaves[3].reason = KETEN__REASON__REASON_NONE;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_INCONSISTENT);
    b->leaves[3].outcome = KETEN__OUTCOME__OUTCOME_REFUSED;
    b->leaves[3].reason = KETEN__REASON__REASON_INVALID_SIGNAL;
    /* Leaves missing, or reordered. */
    b->msg.n_leaves = 6;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_MALFORMED);
    b->msg.n_leaves = 7;
    Keten__ReceiptLeaf *t = b->leaf_ptrs[0];
    b->leaf_ptrs[0] = b->leaf_ptrs[1];
    b->leaf_ptrs[1] = t;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_INCONSISTENT);
    b->leaf_ptrs[1] = b->leaf_ptrs[0];
    b->leaf_ptrs[0] = t;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_OK);
    /* Invalid leaves: stored with a reason, refused without one, no outcome,
     * a short msg_id. */
    b->leaves[0].reason = KETEN__REASON__REASON_POLICY;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_MALFORMED);
    b->leaves[0].reason = KETEN__REASON__REASON_NONE;
    b->leaves[3].reason = KETEN__REASON__REASON_NONE;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_MALFORMED);
    b->leaves[3].reason = KETEN__REASON__REASON_STORE_FULL; /* a broker's reason */
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_MALFORMED);
    b->leaves[3].reason = KETEN__REASON__REASON_INVALID_SIGNAL;
    b->leaves[4].outcome = KETEN__OUTCOME__OUTCOME_UNSPECIFIED;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_MALFORMED);
    b->leaves[4].outcome = KETEN__OUTCOME__OUTCOME_STORED;
    b->leaves[5].msg_id.len = 15;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_MALFORMED);
    b->leaves[5].msg_id.len = 16;
    assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_OK);
    /* A head over KETEN_RECEIPT_HEAD_MAX is refused before it is parsed;
     * one of exactly that size is parsed (zeros: it does not parse). */
    {
        static uint8_t big[KETEN_RECEIPT_HEAD_MAX + 1];
        ProtobufCBinaryData head = b->msg.head;
        b->msg.head.data = big;
        b->msg.head.len = sizeof big;
        assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_TOO_LARGE);
        b->msg.head.len = KETEN_RECEIPT_HEAD_MAX;
        assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_ERR_MALFORMED);
        b->msg.head = head;
        assert_int_equal(verify_batch(fx, "politie-mn", &b->msg), KETEN_OK);
    }
    keten_receipt_batch_destroy(&b);

    /* A batch signed by one node claiming to be another's. */
    keten_identity *pol = fixture_node(fx, "politie-mn");
    keten_identity forged = *fixture_node(fx, "belastingdienst");
    memcpy(forged.id, pol->id, sizeof forged.id);
    keten_receipt_batch *f = NULL;
    assert_int_equal(keten_receipt_batch_new(&forged, network(fx), cert(fx, "politie-mn")->serial,
                         keten_now_ms(), items, 7, &f),
        KETEN_OK);
    assert_int_equal(verify_batch(fx, "politie-mn", &f->msg), KETEN_ERR_BAD_SIGNATURE);
    sodium_memzero(&forged, sizeof forged);
    keten_receipt_batch_destroy(&f);

    /* Arguments a signer must not accept. */
    assert_int_equal(keten_receipt_batch_new(pol, network(fx), 1, 1, items, 0, &f), KETEN_ERR_INVALID);
    items[1].reason = KETEN__REASON__REASON_POLICY; /* stored with a reason */
    assert_int_equal(keten_receipt_batch_new(pol, network(fx), 1, 1, items, 7, &f), KETEN_ERR_MALFORMED);
    assert_null(f);
}

/* A single receipt proof changed anywhere is refused. */
static void test_proof_rejects(void **state)
{
    fixture *fx = *state;
    keten_receipt_item items[5];
    make_items(items, 5);
    keten_receipt_batch *b = sign_batch(fx, "politie-mn", items, 5);
    Keten__ReceiptBatchHead *h = NULL;
    keten_hash *hashes = NULL;
    assert_int_equal(
        keten_receipt_batch_verify(cert(fx, "politie-mn"), network(fx), &b->msg, &h, &hashes), KETEN_OK);
    keten_receipt_proof_buf pb;
    assert_int_equal(keten_receipt_proof_build(&b->msg, (const keten_hash *)hashes, 2, &pb), KETEN_OK);
    Keten__ReceiptBatchHead *h2 = NULL;
    Keten__ReceiptLeaf *l = NULL;
    assert_int_equal(keten_receipt_proof_verify(cert(fx, "politie-mn"), network(fx), &pb.msg, &h2, &l),
        KETEN_OK);
    keten_pb_free((ProtobufCMessage **)(void *)&l);
    keten_pb_free((ProtobufCMessage **)(void *)&h2);
    /* Another leaf's index. */
    pb.msg.index = 1;
    assert_int_equal(keten_receipt_proof_verify(cert(fx, "politie-mn"), network(fx), &pb.msg, &h2, &l),
        KETEN_ERR_INCONSISTENT);
    pb.msg.index = 5;
    assert_int_equal(keten_receipt_proof_verify(cert(fx, "politie-mn"), network(fx), &pb.msg, &h2, &l),
        KETEN_ERR_MALFORMED);
    pb.msg.index = 2;
    /* Every bit of the path and of the leaf. */
    for (size_t k = 0; k < pb.msg.n_path; k++) {
        for (size_t i = 0; i < KETEN_HASH_BYTES * 8; i += 7) {
            pb.path[k][i / 8] ^= (uint8_t)(1u << (i % 8));
            assert_int_equal(
                keten_receipt_proof_verify(cert(fx, "politie-mn"), network(fx), &pb.msg, &h2, &l),
                KETEN_ERR_INCONSISTENT);
            pb.path[k][i / 8] ^= (uint8_t)(1u << (i % 8));
        }
    }
    for (size_t i = 0; i < pb.msg.leaf.len * 8; i++) {
        pb.leaf[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_not_equal(
            keten_receipt_proof_verify(cert(fx, "politie-mn"), network(fx), &pb.msg, &h2, &l), KETEN_OK);
        assert_null(l);
        pb.leaf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    /* A path hash dropped. */
    pb.msg.n_path--;
    assert_int_equal(keten_receipt_proof_verify(cert(fx, "politie-mn"), network(fx), &pb.msg, &h2, &l),
        KETEN_ERR_INCONSISTENT);
    pb.msg.n_path++;
    /* Someone else's certificate. */
    assert_int_equal(
        keten_receipt_proof_verify(cert(fx, "belastingdienst"), network(fx), &pb.msg, &h2, &l),
        KETEN_ERR_MISMATCH);
    assert_int_equal(keten_receipt_proof_verify(cert(fx, "politie-mn"), network(fx), &pb.msg, &h2, &l),
        KETEN_OK);
    keten_pb_free((ProtobufCMessage **)(void *)&l);
    keten_pb_free((ProtobufCMessage **)(void *)&h2);
    keten_receipt_proof_buf_clear(&pb);
    free(hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_receipt_batch_destroy(&b);
}

/* A submitted record for env, as the broker writes it. */
static uint8_t *submitted_record(const uint8_t *env, size_t len, uint64_t seq, size_t *out_len)
{
    Keten__Envelope *e = NULL;
    assert_int_equal(KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "e", &e), KETEN_OK);
    Keten__Header *h = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK(keten__header, e->header.data, e->header.len, KETEN_ENVELOPE_MAX, "h", &h),
        KETEN_OK);
    uint8_t ct_hash[KETEN_HASH_BYTES], env_hash[KETEN_HASH_BYTES];
    crypto_hash_sha256(ct_hash, e->ciphertext.data, e->ciphertext.len);
    crypto_hash_sha256(env_hash, env, len);
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.seq = seq;
    r.time = keten_now_ms();
    r.event = KETEN__EVENT__EVENT_SUBMITTED;
    r.msg_id = h->msg_id;
    r.sender = h->sender;
    r.n_recipients = h->n_recipients;
    r.recipients = h->recipients;
    r.kind = h->kind;
    r.category = h->category;
    r.purpose = h->purpose;
    r.rule = 1;
    r.header = e->header;
    r.ciphertext_hash.data = ct_hash;
    r.ciphertext_hash.len = sizeof ct_hash;
    r.signature = e->signature;
    r.size_bucket = h->padded_len;
    r.envelope_hash.data = env_hash;
    r.envelope_hash.len = sizeof env_hash;
    uint8_t *out = NULL;
    assert_int_equal(keten_pb_pack(&r.base, &out, out_len), KETEN_OK);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    return out;
}

/* A leaf proof verifies against the root of its tree and names its
 * envelope; changed anywhere, or checked against another envelope or root,
 * it is refused. */
static void test_leafproof(void **state)
{
    fixture *fx = *state;
    enum { N = 11 };
    uint8_t *envs[N];
    size_t env_lens[N];
    uint8_t *leaves[N];
    size_t leaf_lens[N];
    keten_hash hashes[N];
    for (size_t i = 0; i < N; i++) {
        envs[i] = fixture_seal(fx, "gemeente-diemen", "politie-mn", signal_json, NULL, &env_lens[i]);
        leaves[i] = submitted_record(envs[i], env_lens[i], i, &leaf_lens[i]);
        keten_merkle_leaf_hash(leaves[i], leaf_lens[i], hashes[i]);
    }
    for (uint64_t size = 1; size <= N; size++) {
        keten_hash root;
        keten_merkle_root((const keten_hash *)hashes, size, root);
        for (uint64_t i = 0; i < size; i++) {
            keten_logproof_buf pb;
            keten_hash path[KETEN_MERKLE_MAX_PROOF];
            size_t path_len = 0;
            assert_int_equal(keten_merkle_inclusion_proof((const keten_hash *)hashes, size, i, path, &path_len),
                KETEN_OK);
            keten_logproof_set(
                &pb, size, i, leaves[i], leaf_lens[i], (const keten_hash *)path, path_len);
            Keten__AuditRecord *r = NULL;
            assert_int_equal(keten_logproof_verify(&pb.msg, root, &r), KETEN_OK);
            Keten__Envelope *e = NULL;
            assert_int_equal(KETEN_PB_UNPACK(keten__envelope, envs[i], env_lens[i], KETEN_ENVELOPE_MAX, "e", &e),
                KETEN_OK);
            assert_int_equal(
                keten_logproof_record_is_envelope(r, envs[i], env_lens[i], e), KETEN_OK);
            keten_pb_free((ProtobufCMessage **)(void *)&e);
            /* Reject twin: the record of another envelope. */
            size_t j = (i + 1) % N;
            assert_int_equal(KETEN_PB_UNPACK(keten__envelope, envs[j], env_lens[j], KETEN_ENVELOPE_MAX, "e", &e),
                KETEN_OK);
            assert_int_equal(keten_logproof_record_is_envelope(r, envs[j], env_lens[j], e),
                KETEN_ERR_INCONSISTENT);
            keten_pb_free((ProtobufCMessage **)(void *)&e);
            keten_pb_free((ProtobufCMessage **)(void *)&r);
            /* Against another size's root, another index, another leaf. */
            if (size > 1) {
                keten_hash other;
                keten_merkle_root((const keten_hash *)hashes, size - 1, other);
                assert_int_equal(keten_logproof_verify(&pb.msg, other, &r), KETEN_ERR_INCONSISTENT);
                pb.msg.leaf_index = (i + 1) % size;
                assert_int_not_equal(keten_logproof_verify(&pb.msg, root, &r), KETEN_OK);
                pb.msg.leaf_index = i;
                pb.msg.leaf.data = leaves[(i + 1) % size];
                pb.msg.leaf.len = leaf_lens[(i + 1) % size];
                assert_int_equal(keten_logproof_verify(&pb.msg, root, &r), KETEN_ERR_INCONSISTENT);
                pb.msg.leaf.data = leaves[i];
                pb.msg.leaf.len = leaf_lens[i];
            }
            assert_null(r);
            pb.msg.tree_size = i; /* the leaf is not in it */
            assert_int_equal(keten_logproof_verify(&pb.msg, root, &r), KETEN_ERR_MALFORMED);
        }
    }
    /* A valid path for a record whose seq is not its index. */
    {
        Keten__AuditRecord *r = NULL;
        uint8_t *wrong = submitted_record(envs[0], env_lens[0], 5, &(size_t) { 0 });
        size_t wrong_len = 0;
        free(wrong);
        wrong = submitted_record(envs[0], env_lens[0], 5, &wrong_len);
        keten_hash h1[2];
        keten_merkle_leaf_hash(wrong, wrong_len, h1[0]);
        memcpy(h1[1], hashes[1], KETEN_HASH_BYTES);
        keten_hash root, path[KETEN_MERKLE_MAX_PROOF];
        size_t path_len = 0;
        keten_merkle_root((const keten_hash *)h1, 2, root);
        assert_int_equal(keten_merkle_inclusion_proof((const keten_hash *)h1, 2, 0, path, &path_len), KETEN_OK);
        keten_logproof_buf pb;
        keten_logproof_set(&pb, 2, 0, wrong, wrong_len, (const keten_hash *)path, path_len);
        assert_int_equal(keten_logproof_verify(&pb.msg, root, &r), KETEN_ERR_INCONSISTENT);
        assert_null(r);
        free(wrong);
    }
    for (size_t i = 0; i < N; i++) {
        free(envs[i]);
        free(leaves[i]);
    }
}

int main(void)
{
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_roundtrip),
        cmocka_unit_test(test_batch_rejects),
        cmocka_unit_test(test_proof_rejects),
        cmocka_unit_test(test_leafproof),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
