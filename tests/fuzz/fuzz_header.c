/*
 * fuzz_header.c - the envelope Header: canonical parsing and the header
 * checks of keten_envelope_verify.
 *
 * Invariants:
 *   1. canonical parse OK  <=>  plain parse OK and the parsed header packs
 *      back to exactly the input (the definition of canonical, pb.h);
 *   2. whatever parses, packed again, parses canonically (protobuf-c's
 *      writer only writes canonical bytes);
 *   3. the parsed header, put into an envelope with matching wrapped keys,
 *      keys hash and ciphertext length and signed by the node it names
 *      (the test network's keys), verifies exactly when the header meets
 *      the contract of envelope.h (network, field lengths, 1..64 distinct
 *      valid recipients, created_at < expires_at, kind, labels, bucket,
 *      certificate valid at created_at); and a verified header is the one
 *      that went in.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "fuzz_common.h"
#include "pb.h"
#include "util.h"

static bool is_bucket(uint64_t n)
{
    return n >= 1 && n <= KETEN_ENVELOPE_MAX && keten_envelope_pad_bucket((size_t)n - 1) == (size_t)n;
}

/* The contract of keten_envelope_verify for a header in an envelope that is
 * otherwise right (signed by the node the header names, keys and ciphertext
 * as the header says). */
static bool header_ok(const Keten__Header *h, const Keten__NodeCert *cert, size_t env_len)
{
    if (env_len > KETEN_ENVELOPE_MAX) {
        return false;
    }
    if (cert == NULL || strcmp(h->network, FUZZ_NETWORK) != 0) {
        return false;
    }
    /* keys_hash: wrap() always puts the right 32 bytes in. */
    if (h->msg_id.len != KETEN_MSG_ID_BYTES || h->nonce.len != KETEN_NONCE_BYTES
        || h->key_commitment.len != KETEN_HASH_BYTES
        || (h->in_reply_to.len != 0 && h->in_reply_to.len != KETEN_MSG_ID_BYTES)) {
        return false;
    }
    if (h->n_recipients < 1 || h->n_recipients > KETEN_MAX_RECIPIENTS) {
        return false;
    }
    for (size_t i = 0; i < h->n_recipients; i++) {
        if (!keten_name_valid(h->recipients[i])) {
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(h->recipients[i], h->recipients[j]) == 0) {
                return false;
            }
        }
    }
    if (h->created_at >= h->expires_at) {
        return false;
    }
    if (h->kind < KETEN__KIND__KIND_SIGNAL || h->kind > KETEN__KIND__KIND_FEEDBACK) {
        return false;
    }
    if (!keten_label_valid(h->category) || !keten_label_valid(h->purpose)) {
        return false;
    }
    if (!is_bucket(h->padded_len)) {
        return false;
    }
    return keten_directory_cert_valid_at(cert, h->created_at);
}

/* Wrap h (modified: keys_hash) into a signed envelope; returns it malloc()ed. */
static uint8_t *wrap(Keten__Header *h, size_t *env_len)
{
    size_t n = h->n_recipients <= KETEN_MAX_RECIPIENTS ? h->n_recipients : 0;
    Keten__WrappedKey *items = calloc(n + 1, sizeof *items);
    Keten__WrappedKey **ptrs = calloc(n + 1, sizeof *ptrs);
    static uint8_t sealed[KETEN_SEALED_KEY_BYTES];
    FUZZ_CHECK(items != NULL && ptrs != NULL);
    for (size_t i = 0; i < n; i++) {
        keten__wrapped_key__init(&items[i]);
        items[i].recipient = h->recipients[i];
        items[i].sealed.data = sealed;
        items[i].sealed.len = sizeof sealed;
        ptrs[i] = &items[i];
    }
    Keten__WrappedKeys wk = KETEN__WRAPPED_KEYS__INIT;
    wk.keys = ptrs;
    wk.n_keys = n;
    uint8_t *keys = NULL;
    size_t keys_len = 0;
    FUZZ_MUST(keten_pb_pack(&wk.base, &keys, &keys_len));
    free(ptrs);
    free(items);

    uint8_t keys_hash[KETEN_HASH_BYTES];
    crypto_hash_sha256(keys_hash, keys, keys_len);
    ProtobufCBinaryData old_hash = h->keys_hash;
    h->keys_hash.data = keys_hash;
    h->keys_hash.len = sizeof keys_hash;
    uint8_t *hdr = NULL;
    size_t hdr_len = 0;
    FUZZ_MUST(keten_pb_pack(&h->base, &hdr, &hdr_len));
    h->keys_hash = old_hash;

    size_t ct_len = KETEN_AEAD_TAG_BYTES;
    if (h->padded_len <= KETEN_ENVELOPE_MAX) {
        ct_len += (size_t)h->padded_len;
    }
    uint8_t *ct = calloc(1, ct_len);
    FUZZ_CHECK(ct != NULL);
    Keten__Envelope env = KETEN__ENVELOPE__INIT;
    env.sender = h->sender;
    env.header.data = hdr;
    env.header.len = hdr_len;
    env.keys.data = keys;
    env.keys.len = keys_len;
    env.ciphertext.data = ct;
    env.ciphertext.len = ct_len;
    uint8_t sig[KETEN_SIG_BYTES] = { 0 };
    env.signature.data = sig;
    env.signature.len = sizeof sig;
    uint8_t *unsigned_env = NULL;
    size_t unsigned_len = 0;
    FUZZ_MUST(keten_pb_pack(&env.base, &unsigned_env, &unsigned_len));
    uint8_t *out = fuzz_resign_envelope(unsigned_env, unsigned_len, false, env_len);
    if (out == NULL) {
        out = unsigned_env; /* no such node: the unsigned envelope must be refused */
        *env_len = unsigned_len;
    } else {
        free(unsigned_env);
    }
    free(ct);
    free(hdr);
    free(keys);
    return out;
}

static void check_verified(
    const keten_envelope_verified *v, const Keten__Header *h, const uint8_t *env, size_t env_len)
{
    uint8_t hash[KETEN_HASH_BYTES];
    crypto_hash_sha256(hash, env, env_len);
    FUZZ_CHECK(memcmp(hash, v->envelope_hash, sizeof hash) == 0);
    FUZZ_CHECK(strcmp(v->header->sender, h->sender) == 0);
    FUZZ_CHECK(strcmp(v->sender->id, h->sender) == 0);
    FUZZ_CHECK(v->header->n_recipients == h->n_recipients);
    for (size_t i = 0; i < h->n_recipients; i++) {
        FUZZ_CHECK(strcmp(v->header->recipients[i], h->recipients[i]) == 0);
    }
    FUZZ_CHECK(v->header->created_at == h->created_at && v->header->expires_at == h->expires_at);
    FUZZ_CHECK(v->header->kind == h->kind && v->header->padded_len == h->padded_len);
    FUZZ_CHECK(strcmp(v->header->category, h->category) == 0);
    FUZZ_CHECK(strcmp(v->header->purpose, h->purpose) == 0);
    FUZZ_CHECK(v->header->msg_id.len == h->msg_id.len
        && memcmp(v->header->msg_id.data, h->msg_id.data, h->msg_id.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    Keten__Header *hc = NULL;
    Keten__Header *hn = NULL;
    keten_err ec
        = KETEN_PB_UNPACK_CANONICAL(keten__header, data, size, KETEN_ENVELOPE_MAX, "header", &hc);
    keten_err en = KETEN_PB_UNPACK(keten__header, data, size, KETEN_ENVELOPE_MAX, "header", &hn);

    /* 1 */
    if (ec == KETEN_OK) {
        FUZZ_CHECK(en == KETEN_OK);
        FUZZ_CHECK(fuzz_packs_to(&hc->base, data, size));
    } else {
        FUZZ_CHECK(hc == NULL);
        FUZZ_CHECK(en != KETEN_OK || !fuzz_packs_to(&hn->base, data, size));
    }
    if (en != KETEN_OK) {
        FUZZ_CHECK(hn == NULL);
        goto out;
    }

    /* 2 */
    uint8_t *again = NULL;
    size_t again_len = 0;
    FUZZ_MUST(keten_pb_pack(&hn->base, &again, &again_len));
    Keten__Header *h2 = NULL;
    FUZZ_MUST(KETEN_PB_UNPACK_CANONICAL(
        keten__header, again, again_len, KETEN_ENVELOPE_MAX, "header", &h2));
    FUZZ_CHECK(fuzz_packs_to(&h2->base, again, again_len));
    keten_pb_free((ProtobufCMessage **)(void *)&h2);
    free(again);

    /* 3 */
    size_t env_len = 0;
    uint8_t *env = wrap(hn, &env_len);
    const keten_directory *dirs[2] = { net->d1, net->d2 };
    for (size_t d = 0; d < 2; d++) {
        keten_envelope_verified *v = NULL;
        keten_err ev = keten_envelope_verify(dirs[d], env, env_len, &v);
        /* The envelope carries politie-mn's version 1 signature. Version 2
         * superseded that key: it still counts for messages created before
         * the rotation, judged by the old certificate (envelope.h). */
        const Keten__NodeCert *cert = keten_directory_find_id(dirs[d], hn->sender);
        bool expected;
        if (d == 1 && strcmp(hn->sender, "politie-mn") == 0) {
            const Keten__Revocation *r = keten_directory_find_revoked(dirs[d], "politie-mn");
            FUZZ_CHECK(r != NULL && r->superseded && r->cert != NULL);
            expected = header_ok(hn, r->cert, env_len) && hn->created_at < r->at;
            if (ev == KETEN_OK) {
                FUZZ_CHECK(v->sender == r->cert);
            }
        } else {
            expected = header_ok(hn, cert, env_len);
        }
        if ((ev == KETEN_OK) != expected) {
            fuzz_fail(__FILE__, __LINE__,
                ev == KETEN_OK ? "verify accepted a header the contract refuses"
                               : "verify refused a header the contract accepts");
        }
        if (ev == KETEN_OK) {
            check_verified(v, hn, env, env_len);
        } else {
            FUZZ_CHECK(v == NULL);
        }
        keten_envelope_verified_destroy(&v);
    }
    free(env);
out:
    keten_pb_free((ProtobufCMessage **)(void *)&hc);
    keten_pb_free((ProtobufCMessage **)(void *)&hn);
    keten_err_clear();
    return 0;
}
