/*
 * fuzz_envelope.c - a serialized Envelope, as the broker verifies it
 * (keten_envelope_verify) and as every recipient opens it
 * (keten_envelope_open), against both directory versions of the test
 * network.
 *
 * Each input is tried as it is and once more re-signed with the key of the
 * node its sender hint names (fuzz_resign_envelope), so that mutated
 * headers, keys and ciphertexts reach the checks behind the signature; for
 * politie-mn also with its rotated version 2 key.
 *
 * Invariants:
 *   1. verify accepts only canonical bytes (the parsed envelope and header
 *      pack back to them), reports the SHA-256 of the input and of the
 *      ciphertext, and names a sender whose id is the header's; the header
 *      meets the documented shape (field lengths, 1..64 distinct valid
 *      recipients, created_at < expires_at, kind, ciphertext length =
 *      padded_len + 16, keys hash);
 *   2. open never returns OK for bytes that verify refuses, and what it
 *      returns is what verify returns;
 *   3. an opened envelope was addressed to the opener, had not expired,
 *      has registered category and purpose, is allowed by the policy, and
 *      holds a valid signal whose type and purpose are the header's.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "fuzz_common.h"
#include "pb.h"
#include "policy.h"
#include "signal_json.h"
#include "util.h"

static void check_verified(const keten_envelope_verified *v, const uint8_t *data, size_t size)
{
    const Keten__Envelope *env = v->envelope;
    const Keten__Header *h = v->header;
    uint8_t hash[KETEN_HASH_BYTES];
    FUZZ_CHECK(fuzz_packs_to(&env->base, data, size));
    FUZZ_CHECK(fuzz_packs_to(&h->base, env->header.data, env->header.len));
    crypto_hash_sha256(hash, data, size);
    FUZZ_CHECK(memcmp(hash, v->envelope_hash, sizeof hash) == 0);
    crypto_hash_sha256(hash, env->ciphertext.data, env->ciphertext.len);
    FUZZ_CHECK(memcmp(hash, v->ciphertext_hash, sizeof hash) == 0);
    crypto_hash_sha256(hash, env->keys.data, env->keys.len);
    FUZZ_CHECK(
        h->keys_hash.len == KETEN_HASH_BYTES && memcmp(hash, h->keys_hash.data, sizeof hash) == 0);
    FUZZ_CHECK(strcmp(env->sender, h->sender) == 0 && strcmp(v->sender->id, h->sender) == 0);
    FUZZ_CHECK(strcmp(h->network, FUZZ_NETWORK) == 0);
    FUZZ_CHECK(h->msg_id.len == KETEN_MSG_ID_BYTES && h->nonce.len == KETEN_NONCE_BYTES
        && h->key_commitment.len == KETEN_HASH_BYTES);
    FUZZ_CHECK(h->in_reply_to.len == 0 || h->in_reply_to.len == KETEN_MSG_ID_BYTES);
    FUZZ_CHECK(h->n_recipients >= 1 && h->n_recipients <= KETEN_MAX_RECIPIENTS);
    for (size_t i = 0; i < h->n_recipients; i++) {
        FUZZ_CHECK(keten_name_valid(h->recipients[i]));
        for (size_t j = 0; j < i; j++) {
            FUZZ_CHECK(strcmp(h->recipients[i], h->recipients[j]) != 0);
        }
    }
    FUZZ_CHECK(h->created_at < h->expires_at);
    FUZZ_CHECK(h->kind >= KETEN__KIND__KIND_SIGNAL && h->kind <= KETEN__KIND__KIND_FEEDBACK);
    FUZZ_CHECK(env->ciphertext.len == h->padded_len + KETEN_AEAD_TAG_BYTES);
    FUZZ_CHECK(keten_envelope_pad_bucket((size_t)h->padded_len - 1) == h->padded_len);
    FUZZ_CHECK(keten_directory_cert_valid_at(v->sender, h->created_at));
}

static void check_opened(const keten_identity *me, const keten_directory *dir,
    const keten_envelope_verified *v, const Keten__Signal *sig)
{
    const Keten__Header *h = v->header;
    bool mine = false;
    for (size_t i = 0; i < h->n_recipients; i++) {
        mine = mine || strcmp(h->recipients[i], me->id) == 0;
    }
    FUZZ_CHECK(mine);
    FUZZ_CHECK(FUZZ_T_OPEN < h->expires_at);
    FUZZ_CHECK(keten_directory_category_registered(dir, h->category));
    FUZZ_CHECK(keten_directory_purpose_registered(dir, h->purpose));
    const Keten__NodeCert *mc = keten_directory_find_id(dir, me->id);
    keten_policy_decision d
        = keten_policy_evaluate(keten_directory_doc(dir), v->sender->id, v->sender->role, me->id,
            mc != NULL ? mc->role : me->role, h->kind, h->category, h->purpose);
    FUZZ_CHECK(d.allowed);
    FUZZ_CHECK(strcmp(sig->type, h->category) == 0 && strcmp(sig->purpose, h->purpose) == 0);
    FUZZ_MUST(keten_signal_json_check(sig, dir));
}

static void run(const keten_directory *dir, const keten_identity *const *me, size_t n_me,
    const uint8_t *data, size_t size)
{
    keten_envelope_verified *v = NULL;
    keten_err ev = keten_envelope_verify(dir, data, size, &v);
    if (ev == KETEN_OK) {
        check_verified(v, data, size);
    } else {
        FUZZ_CHECK(v == NULL);
        n_me = 1; /* open verifies first: one opener shows it refuses too */
    }
    for (size_t i = 0; i < n_me; i++) {
        keten_envelope_verified *ov = NULL;
        Keten__Signal *sig = NULL;
        keten_err eo = keten_envelope_open(me[i], dir, data, size, FUZZ_T_OPEN, &ov, &sig);
        if (eo == KETEN_OK) {
            FUZZ_CHECK(ev == KETEN_OK);
            FUZZ_CHECK(ov != NULL && sig != NULL);
            FUZZ_CHECK(memcmp(ov->envelope_hash, v->envelope_hash, KETEN_HASH_BYTES) == 0);
            FUZZ_CHECK(ov->sender == v->sender);
            check_opened(me[i], dir, ov, sig);
        } else {
            FUZZ_CHECK(ov == NULL && sig == NULL);
            /* The verify errors come first, unchanged. */
            FUZZ_CHECK(ev == KETEN_OK || eo == ev);
        }
        keten_signal_json_free(&sig);
        keten_envelope_verified_destroy(&ov);
    }
    keten_envelope_verified_destroy(&v);
}

static void run_both(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    const keten_identity *v1[FUZZ_N_NODES];
    const keten_identity *v2[FUZZ_N_NODES];
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        v1[i] = net->nodes[i];
        v2[i] = i == 1 ? net->politie2 : net->nodes[i];
    }
    run(net->d1, v1, FUZZ_N_NODES, data, size);
    run(net->d2, v2, FUZZ_N_NODES, data, size);
    /* The old politie-mn keys under version 2: a node that rotated keeps
     * its old encryption key for messages in flight. */
    const keten_identity *old[1] = { net->nodes[1] };
    run(net->d2, old, 1, data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_net();
    run_both(data, size);
    size_t len = 0;
    uint8_t *re = fuzz_resign_envelope(data, size, false, &len);
    if (re != NULL) {
        run_both(re, len);
        /* politie-mn's messages once more, signed with its version 2 key. */
        size_t len2 = 0;
        uint8_t *re2 = fuzz_resign_envelope(data, size, true, &len2);
        FUZZ_CHECK(re2 != NULL);
        if (len2 != len || memcmp(re, re2, len) != 0) {
            run_both(re2, len2);
        }
        free(re2);
        free(re);
    }
    keten_err_clear();
    return 0;
}
