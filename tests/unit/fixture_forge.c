/*
 * fixture_forge.c - envelopes changed and signed again (see fixture_forge.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_forge.h"
#include "pb.h"
#include "sha256.h"

#define LABEL_ENVELOPE_LEN (sizeof KETEN_LABEL_ENVELOPE - 1)

static Keten__Envelope *parse_envelope(const uint8_t *env, size_t len)
{
    Keten__Envelope *e = NULL;
    if (KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "envelope", &e)
        != KETEN_OK) {
        fail_msg("fixture_forge: the envelope does not parse: %s", keten_err_detail());
    }
    return e;
}

static Keten__Header *parse_header(const Keten__Envelope *e)
{
    Keten__Header *h = NULL;
    if (KETEN_PB_UNPACK(
            keten__header, e->header.data, e->header.len, KETEN_ENVELOPE_MAX, "header", &h)
        != KETEN_OK) {
        fail_msg("fixture_forge: the header does not parse: %s", keten_err_detail());
    }
    return h;
}

/* WrappedKeys for h's recipients, reusing old's sealed keys by name. */
static void rewrap(const Keten__Envelope *e, const Keten__Header *h, uint8_t **out, size_t *len)
{
    Keten__WrappedKeys *old = NULL;
    if (KETEN_PB_UNPACK(keten__wrapped_keys, e->keys.data, e->keys.len, KETEN_ENVELOPE_MAX,
            "wrapped keys", &old)
        != KETEN_OK) {
        fail_msg("fixture_forge: the wrapped keys do not parse");
    }
    size_t n = h->n_recipients;
    Keten__WrappedKey *items = calloc(n + 1, sizeof *items);
    Keten__WrappedKey **ptrs = calloc(n + 1, sizeof *ptrs);
    uint8_t *fresh = calloc(n + 1, KETEN_SEALED_KEY_BYTES);
    assert_non_null(items);
    assert_non_null(ptrs);
    assert_non_null(fresh);
    for (size_t i = 0; i < n; i++) {
        keten__wrapped_key__init(&items[i]);
        items[i].recipient = h->recipients[i];
        items[i].sealed.data = fresh + i * KETEN_SEALED_KEY_BYTES;
        items[i].sealed.len = KETEN_SEALED_KEY_BYTES;
        randombytes_buf(items[i].sealed.data, KETEN_SEALED_KEY_BYTES);
        for (size_t j = 0; j < old->n_keys; j++) {
            if (strcmp(old->keys[j]->recipient, h->recipients[i]) == 0
                && old->keys[j]->sealed.len == KETEN_SEALED_KEY_BYTES) {
                memcpy(items[i].sealed.data, old->keys[j]->sealed.data, KETEN_SEALED_KEY_BYTES);
            }
        }
        ptrs[i] = &items[i];
    }
    Keten__WrappedKeys wk = KETEN__WRAPPED_KEYS__INIT;
    wk.n_keys = n;
    wk.keys = ptrs;
    assert_int_equal(keten_pb_pack(&wk.base, out, len), KETEN_OK);
    free(fresh);
    free(ptrs);
    free(items);
    keten_pb_free((ProtobufCMessage **)(void *)&old);
}

uint8_t *forge_envelope(const uint8_t *env, size_t len, const keten_identity *signer,
    forge_edit_fn edit, void *arg, size_t *len_out)
{
    Keten__Envelope *e = parse_envelope(env, len);
    Keten__Header *h = parse_header(e);
    Keten__Header copy = *h; /* edited; its pointers stay h's or the caller's */
    if (edit != NULL) {
        edit(&copy, arg);
    }
    uint8_t *keys = NULL;
    size_t keys_len = 0;
    rewrap(e, &copy, &keys, &keys_len);
    uint8_t keys_hash[KETEN_HASH_BYTES];
    keten_sha256(keys_hash, keys, keys_len);
    copy.keys_hash.data = keys_hash;
    copy.keys_hash.len = sizeof keys_hash;
    uint8_t *hdr = NULL;
    size_t hdr_len = 0;
    assert_int_equal(keten_pb_pack(&copy.base, &hdr, &hdr_len), KETEN_OK);

    uint8_t ct_hash[KETEN_HASH_BYTES];
    keten_sha256(ct_hash, e->ciphertext.data, e->ciphertext.len);
    size_t msg_len = LABEL_ENVELOPE_LEN + hdr_len + sizeof ct_hash;
    uint8_t *msg = malloc(msg_len);
    assert_non_null(msg);
    memcpy(msg, KETEN_LABEL_ENVELOPE, LABEL_ENVELOPE_LEN);
    memcpy(msg + LABEL_ENVELOPE_LEN, hdr, hdr_len);
    memcpy(msg + LABEL_ENVELOPE_LEN + hdr_len, ct_hash, sizeof ct_hash);
    uint8_t sig[KETEN_SIG_BYTES];
    assert_int_equal(crypto_sign_detached(sig, NULL, msg, msg_len, signer->sign_sk), 0);
    free(msg);

    Keten__Envelope out = *e;
    out.sender = copy.sender;
    out.header.data = hdr;
    out.header.len = hdr_len;
    out.keys.data = keys;
    out.keys.len = keys_len;
    out.signature.data = sig;
    out.signature.len = sizeof sig;
    uint8_t *buf = NULL;
    assert_int_equal(keten_pb_pack(&out.base, &buf, len_out), KETEN_OK);
    free(hdr);
    free(keys);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    return buf;
}

uint8_t *forge_flip_ciphertext(const uint8_t *env, size_t len, size_t *len_out)
{
    Keten__Envelope *e = parse_envelope(env, len);
    assert_true(e->ciphertext.len > 0);
    e->ciphertext.data[e->ciphertext.len / 2] ^= 0x01;
    uint8_t *buf = NULL;
    assert_int_equal(keten_pb_pack(&e->base, &buf, len_out), KETEN_OK);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    return buf;
}

void forge_msg_id(const uint8_t *env, size_t len, uint8_t out[static KETEN_MSG_ID_BYTES])
{
    Keten__Envelope *e = parse_envelope(env, len);
    Keten__Header *h = parse_header(e);
    assert_int_equal(h->msg_id.len, KETEN_MSG_ID_BYTES);
    memcpy(out, h->msg_id.data, KETEN_MSG_ID_BYTES);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
}
