#include "envelope.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pb.h"
#include "policy.h"
#include "signal_json.h"
#include "util.h"
#include "sha256.h"

#define LABEL_LEN(l) (sizeof(l) - 1)
#define DETAIL_COPY_MAX 400 /* room for a nested detail inside a new one */

/* Buckets below the first power-of-two step (docs/protocol.md section 6). */
static const size_t fixed_buckets[] = { 1024, 4096, 16384, 65536 };
#define FIRST_DOUBLING_BUCKET (2 * (size_t)65536)

size_t keten_envelope_pad_bucket(size_t len)
{
    if (len == SIZE_MAX) {
        return 0;
    }
    size_t need = len + 1;
    for (size_t i = 0; i < sizeof fixed_buckets / sizeof fixed_buckets[0]; i++) {
        if (need <= fixed_buckets[i]) {
            return fixed_buckets[i];
        }
    }
    size_t b = FIRST_DOUBLING_BUCKET;
    while (b < need) {
        if (b > SIZE_MAX / 2) {
            return 0;
        }
        b <<= 1;
    }
    return b;
}

static bool is_bucket(uint64_t n)
{
    return n >= 1 && n <= KETEN_ENVELOPE_MAX && keten_envelope_pad_bucket((size_t)n - 1) == (size_t)n;
}

/* Re-raise the current detail line under another code, prefixed by what. */
static keten_err rewrap(keten_err code, const char *what)
{
    char saved[DETAIL_COPY_MAX];
    snprintf(saved, sizeof saved, "%s", keten_err_detail());
    return keten_err_set(code, "%s: %s", what, saved);
}

/* A name fit to repeat in a detail line (attacker-chosen text is not). */
static const char *shown(const char *s)
{
    return (s != NULL && keten_name_valid(s)) ? s : "(not a valid name)";
}

static const char *shown_label(const char *s)
{
    return (s != NULL && keten_label_valid(s)) ? s : "(not a valid label)";
}

/* label || part || tail (tail may be NULL): the signed and AEAD strings. */
static keten_err concat3(const char *label, size_t label_len, const uint8_t *part, size_t part_len,
    const uint8_t *tail, size_t tail_len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    if (part_len > KETEN_ENVELOPE_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "signed part is %zu bytes", part_len);
    }
    size_t n = label_len + part_len + tail_len;
    uint8_t *buf = malloc(n);
    if (buf == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "building a signed string of %zu bytes", n);
    }
    memcpy(buf, label, label_len);
    if (part_len > 0) {
        memcpy(buf + label_len, part, part_len);
    }
    if (tail_len > 0) {
        memcpy(buf + label_len + part_len, tail, tail_len);
    }
    *out = buf;
    *out_len = n;
    return KETEN_OK;
}

/* "keten/envelope/v1" || header || SHA-256(ciphertext) */
static keten_err envelope_signed_string(const uint8_t *header, size_t header_len,
    const uint8_t ct_hash[static KETEN_HASH_BYTES], uint8_t **out, size_t *out_len)
{
    return concat3(KETEN_LABEL_ENVELOPE, LABEL_LEN(KETEN_LABEL_ENVELOPE), header, header_len,
        ct_hash, KETEN_HASH_BYTES, out, out_len);
}

/* BLAKE2b-256 keyed with K over "keten/commit/v1" || msg_id. */
/* ---- per-message secrets ---------------------------------------------- */

/* The content key K and the key derived from it, for one seal or open.
 * They live in sodium_malloc() memory (guard pages, locked, never swapped)
 * like every other secret, but one block per thread, allocated on first
 * use and reused: sodium_malloc() costs several system calls and a TLB
 * shootdown per call, which made it the largest cost of sealing when it
 * was called per message. The block is wiped after every use and freed
 * (sodium_free wipes too) when its thread ends. */
typedef struct msg_secrets {
    uint8_t k[KETEN_CONTENT_KEY_BYTES];
    uint8_t enc_key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
} msg_secrets;

static pthread_key_t secrets_key;
static pthread_once_t secrets_once = PTHREAD_ONCE_INIT;
static bool secrets_key_ok;

static void secrets_free(void *p)
{
    sodium_free(p);
}

static void secrets_key_init(void)
{
    secrets_key_ok = pthread_key_create(&secrets_key, secrets_free) == 0;
}

/* This thread's block, or NULL with an error set. */
static msg_secrets *secrets_get(void)
{
    if (pthread_once(&secrets_once, secrets_key_init) != 0 || !secrets_key_ok) {
        keten_err_set(KETEN_ERR_NOMEM, "no thread-local slot for message keys");
        return NULL;
    }
    msg_secrets *s = pthread_getspecific(secrets_key);
    if (s != NULL) {
        return s;
    }
    s = sodium_malloc(sizeof *s);
    if (s == NULL) {
        keten_err_set(KETEN_ERR_NOMEM, "no locked memory for message keys (sodium_malloc)");
        return NULL;
    }
    if (pthread_setspecific(secrets_key, s) != 0) {
        sodium_free(s);
        keten_err_set(KETEN_ERR_NOMEM, "no thread-local slot for message keys");
        return NULL;
    }
    return s;
}

static keten_err commitment(const uint8_t k[static KETEN_CONTENT_KEY_BYTES],
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint8_t out[static KETEN_HASH_BYTES])
{
    uint8_t in[LABEL_LEN(KETEN_LABEL_COMMIT) + KETEN_MSG_ID_BYTES];
    memcpy(in, KETEN_LABEL_COMMIT, LABEL_LEN(KETEN_LABEL_COMMIT));
    memcpy(in + LABEL_LEN(KETEN_LABEL_COMMIT), msg_id, KETEN_MSG_ID_BYTES);
    if (crypto_generichash(out, KETEN_HASH_BYTES, in, sizeof in, k, KETEN_CONTENT_KEY_BYTES) != 0) {
        return keten_err_set(KETEN_ERR_CRYPTO, "computing the content key commitment");
    }
    return KETEN_OK;
}

static keten_err derive_enc_key(const uint8_t k[static KETEN_CONTENT_KEY_BYTES], uint8_t *enc_key)
{
    if (crypto_kdf_derive_from_key(enc_key, crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
            KETEN_KDF_SUBKEY_ENC, KETEN_KDF_CONTEXT, k)
        != 0) {
        return keten_err_set(KETEN_ERR_CRYPTO, "deriving the encryption key");
    }
    return KETEN_OK;
}

/* The sender's certificate by id: current, else REVOKED / UNKNOWN_NODE. */
static keten_err find_sender(
    const keten_directory *dir, const char *id, const char *what, const Keten__NodeCert **out)
{
    *out = keten_directory_find_id(dir, id);
    if (*out != NULL) {
        return KETEN_OK;
    }
    if (keten_name_valid(id) && keten_directory_find_revoked(dir, id) != NULL) {
        return keten_err_set(KETEN_ERR_REVOKED,
            "%s '%s' has been revoked (directory version %llu); its messages are refused", what, id,
            (unsigned long long)keten_directory_version(dir));
    }
    return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
        "%s '%s' is not a current node of directory version %llu", what, shown(id),
        (unsigned long long)keten_directory_version(dir));
}

static keten_err cert_valid_at(const Keten__NodeCert *cert, uint64_t at, const char *when)
{
    if (keten_directory_cert_valid_at(cert, at)) {
        return KETEN_OK;
    }
    char at_iso[40], lim_iso[40];
    keten_time_iso(at, at_iso, sizeof at_iso);
    if (at < cert->not_before) {
        keten_time_iso(cert->not_before, lim_iso, sizeof lim_iso);
        return keten_err_set(KETEN_ERR_NOT_YET_VALID,
            "certificate of '%s' (serial %llu) is valid from %s, but the message was %s %s",
            shown(cert->id), (unsigned long long)cert->serial, lim_iso, when, at_iso);
    }
    keten_time_iso(cert->not_after, lim_iso, sizeof lim_iso);
    return keten_err_set(KETEN_ERR_EXPIRED,
        "certificate of '%s' (serial %llu) expired at %s, but the message was %s %s",
        shown(cert->id), (unsigned long long)cert->serial, lim_iso, when, at_iso);
}

/* ---- verify ------------------------------------------------------------ */

void keten_envelope_verified_destroy(keten_envelope_verified **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_envelope_verified *v = *self_p;
    keten_pb_free((ProtobufCMessage **)(void *)&v->header);
    keten_pb_free((ProtobufCMessage **)(void *)&v->envelope);
    free(v);
    *self_p = NULL;
}

static keten_err check_header_fields(const Keten__Header *h)
{
    if (h->msg_id.len != KETEN_MSG_ID_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED, "header msg_id is %zu bytes; must be %d",
            h->msg_id.len, KETEN_MSG_ID_BYTES);
    }
    if (h->nonce.len != KETEN_NONCE_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED, "header nonce is %zu bytes; must be %d",
            h->nonce.len, KETEN_NONCE_BYTES);
    }
    if (h->key_commitment.len != KETEN_HASH_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED, "header key_commitment is %zu bytes; must be %d",
            h->key_commitment.len, KETEN_HASH_BYTES);
    }
    if (h->keys_hash.len != KETEN_HASH_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED, "header keys_hash is %zu bytes; must be %d",
            h->keys_hash.len, KETEN_HASH_BYTES);
    }
    if (h->in_reply_to.len != 0 && h->in_reply_to.len != KETEN_MSG_ID_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "header in_reply_to is %zu bytes; must be empty or %d", h->in_reply_to.len,
            KETEN_MSG_ID_BYTES);
    }
    if (h->n_recipients < 1 || h->n_recipients > KETEN_MAX_RECIPIENTS) {
        return keten_err_set(KETEN_ERR_MALFORMED, "header has %zu recipients; must be 1..%d",
            h->n_recipients, KETEN_MAX_RECIPIENTS);
    }
    for (size_t i = 0; i < h->n_recipients; i++) {
        if (!keten_name_valid(h->recipients[i])) {
            return keten_err_set(
                KETEN_ERR_MALFORMED, "header recipient %zu is not a valid node id", i);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(h->recipients[i], h->recipients[j]) == 0) {
                return keten_err_set(
                    KETEN_ERR_MALFORMED, "header lists recipient '%s' twice", h->recipients[i]);
            }
        }
    }
    if (h->created_at >= h->expires_at) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "header expires_at (%llu) is not after created_at (%llu)",
            (unsigned long long)h->expires_at, (unsigned long long)h->created_at);
    }
    if (h->kind < KETEN__KIND__KIND_SIGNAL || h->kind > KETEN__KIND__KIND_FEEDBACK) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "header kind %d is not signal, query, reply or feedback", (int)h->kind);
    }
    if (!keten_label_valid(h->category) || !keten_label_valid(h->purpose)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "header category or purpose is not a valid label ([a-z0-9][a-z0-9./-]{0,63})");
    }
    return KETEN_OK;
}

static keten_err check_wrapped_keys(
    const Keten__Header *h, const ProtobufCBinaryData *keys, Keten__WrappedKeys **out)
{
    *out = NULL;
    Keten__WrappedKeys *wk = NULL;
    keten_err e = KETEN_PB_UNPACK_CANONICAL(
        keten__wrapped_keys, keys->data, keys->len, KETEN_ENVELOPE_MAX, "envelope keys", &wk);
    if (e != KETEN_OK) {
        return rewrap(KETEN_ERR_MALFORMED, "wrapped keys");
    }
    if (wk->n_keys != h->n_recipients) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "wrapped keys: %zu entries for %zu recipients",
            wk->n_keys, h->n_recipients);
        goto out;
    }
    for (size_t i = 0; i < wk->n_keys; i++) {
        const Keten__WrappedKey *k = wk->keys[i];
        if (k == NULL || strcmp(k->recipient, h->recipients[i]) != 0) {
            e = keten_err_set(KETEN_ERR_MALFORMED,
                "wrapped keys: entry %zu is not for recipient '%s' (header order)", i,
                h->recipients[i]);
            goto out;
        }
        if (k->sealed.len != KETEN_SEALED_KEY_BYTES) {
            e = keten_err_set(KETEN_ERR_MALFORMED,
                "wrapped keys: entry %zu is %zu bytes; must be %d", i, k->sealed.len,
                (int)KETEN_SEALED_KEY_BYTES);
            goto out;
        }
    }
    *out = wk;
    wk = NULL;
out:
    keten_pb_free((ProtobufCMessage **)(void *)&wk);
    return e;
}

/* The whole broker-side verification; *keys_out (may be NULL) receives the
 * parsed wrapped keys for open. */
static keten_err verify_envelope(const keten_directory *dir, const uint8_t *buf, size_t len,
    keten_envelope_verified **out, Keten__WrappedKeys **keys_out)
{
    *out = NULL;
    if (keys_out != NULL) {
        *keys_out = NULL;
    }
    keten_err e = KETEN_OK;
    keten_envelope_verified *v = NULL;
    Keten__WrappedKeys *wk = NULL;
    uint8_t *signed_buf = NULL;
    size_t signed_len = 0;

    if (len > KETEN_ENVELOPE_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "envelope is %zu bytes; at most %u allowed", len,
            KETEN_ENVELOPE_MAX);
    }
    if (dir == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "verifying an envelope needs a directory");
    }
    v = calloc(1, sizeof *v);
    if (v == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "verifying an envelope");
    }
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__envelope, buf, len, KETEN_ENVELOPE_MAX, "envelope", &v->envelope);
    if (e != KETEN_OK) {
        goto out;
    }
    const Keten__Envelope *env = v->envelope;

    /* The hint only picks the key; the signed header must agree with it. */
    e = find_sender(dir, env->sender, "envelope sender", &v->sender);
    if (e != KETEN_OK) {
        goto out;
    }
    if (v->sender->sign_pk.len != KETEN_SIGN_PK_BYTES) {
        e = keten_err_set(
            KETEN_ERR_MALFORMED, "certificate of '%s' has no signing key", shown(v->sender->id));
        goto out;
    }
    if (env->signature.len != KETEN_SIG_BYTES) {
        e = keten_err_set(KETEN_ERR_BAD_SIGNATURE, "envelope signature is %zu bytes; must be %d",
            env->signature.len, (int)KETEN_SIG_BYTES);
        goto out;
    }
    keten_sha256(v->ciphertext_hash, env->ciphertext.data, env->ciphertext.len);
    e = envelope_signed_string(
        env->header.data, env->header.len, v->ciphertext_hash, &signed_buf, &signed_len);
    if (e != KETEN_OK) {
        goto out;
    }
    /* A message signed just before its sender rotated keys is still in
     * flight: its key is the superseded certificate's, valid for messages
     * created before the rotation (checked once the header is read). */
    const Keten__Revocation *rotated = NULL;
    bool signed_ok = crypto_sign_verify_detached(
                         env->signature.data, signed_buf, signed_len, v->sender->sign_pk.data)
        == 0;
    if (!signed_ok) {
        rotated = keten_directory_find_revoked(dir, v->sender->id);
        if (rotated != NULL && rotated->superseded && rotated->cert != NULL
            && rotated->cert->sign_pk.len == KETEN_SIGN_PK_BYTES
            && crypto_sign_verify_detached(
                   env->signature.data, signed_buf, signed_len, rotated->cert->sign_pk.data)
                == 0) {
            v->sender = rotated->cert;
            signed_ok = true;
        } else {
            rotated = NULL;
        }
    }
    if (!signed_ok) {
        e = keten_err_set(KETEN_ERR_BAD_SIGNATURE,
            "envelope signature does not verify with the key of '%s' (serial %llu): "
            "tampered or forged",
            shown(v->sender->id), (unsigned long long)v->sender->serial);
        goto out;
    }

    /* Only now are the header bytes read. */
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__header, env->header.data, env->header.len, KETEN_ENVELOPE_MAX, "header", &v->header);
    if (e != KETEN_OK) {
        goto out;
    }
    const Keten__Header *h = v->header;
    if (strcmp(h->sender, env->sender) != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "envelope sender hint '%s' differs from the signed header sender '%s'",
            shown(env->sender), shown(h->sender));
        goto out;
    }
    if (strcmp(h->network, keten_directory_network(dir)) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "envelope is for network '%s', this directory is '%s'", shown_label(h->network),
            keten_directory_network(dir));
        goto out;
    }
    e = check_header_fields(h);
    if (e != KETEN_OK) {
        goto out;
    }
    uint8_t keys_hash[KETEN_HASH_BYTES];
    keten_sha256(keys_hash, env->keys.data, env->keys.len);
    if (sodium_memcmp(keys_hash, h->keys_hash.data, KETEN_HASH_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_KEYS_HASH,
            "envelope keys (%zu bytes) do not match the signed keys_hash", env->keys.len);
        goto out;
    }
    e = check_wrapped_keys(h, &env->keys, &wk);
    if (e != KETEN_OK) {
        goto out;
    }
    if (!is_bucket(h->padded_len)) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "header padded_len %llu is not a size bucket",
            (unsigned long long)h->padded_len);
        goto out;
    }
    if (env->ciphertext.len != h->padded_len + KETEN_AEAD_TAG_BYTES) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "ciphertext is %zu bytes; the header says %llu + %d",
            env->ciphertext.len, (unsigned long long)h->padded_len, (int)KETEN_AEAD_TAG_BYTES);
        goto out;
    }
    if (rotated != NULL && h->created_at >= rotated->at) {
        e = keten_err_set(KETEN_ERR_REVOKED,
            "envelope was signed with the superseded key of '%s' (serial %llu) after its rotation",
            shown(v->sender->id), (unsigned long long)v->sender->serial);
        goto out;
    }
    /* A superseded key signs only what was in flight at the rotation: a
     * message that outlives rotation time plus the longest lifetime was not,
     * and a key superseded for compromise signs nothing. */
    if (rotated != NULL && keten_directory_revocation_compromised(rotated)) {
        e = keten_err_set(KETEN_ERR_REVOKED,
            "envelope was signed with the key of '%s' (serial %llu), which was replaced because "
            "it was compromised",
            shown(v->sender->id), (unsigned long long)v->sender->serial);
        goto out;
    }
    if (rotated != NULL && h->expires_at > rotated->at
        && h->expires_at - rotated->at > keten_directory_max_lifetime(dir)) {
        e = keten_err_set(KETEN_ERR_REVOKED,
            "envelope signed with the superseded key of '%s' (serial %llu) expires %llu ms after "
            "its rotation; at most the longest message lifetime (%llu ms) is allowed",
            shown(v->sender->id), (unsigned long long)v->sender->serial,
            (unsigned long long)(h->expires_at - rotated->at),
            (unsigned long long)keten_directory_max_lifetime(dir));
        goto out;
    }
    e = cert_valid_at(v->sender, h->created_at, "created at");
    if (e != KETEN_OK) {
        goto out;
    }
    keten_sha256(v->envelope_hash, buf, len);
    *out = v;
    v = NULL;
    if (keys_out != NULL) {
        *keys_out = wk;
        wk = NULL;
    }
out:
    free(signed_buf);
    keten_pb_free((ProtobufCMessage **)(void *)&wk);
    keten_envelope_verified_destroy(&v);
    return e;
}

keten_err keten_envelope_verify(
    const keten_directory *dir, const uint8_t *buf, size_t len, keten_envelope_verified **out)
{
    return verify_envelope(dir, buf, len, out, NULL);
}

/* ---- seal -------------------------------------------------------------- */

static keten_err check_seal_input(const keten_identity *sender, const keten_directory *dir,
    const char *const *recipients, size_t n_recipients, const keten_envelope_seal_params *p,
    const Keten__NodeCert **sender_cert)
{
    if (sender == NULL || dir == NULL || p == NULL || (recipients == NULL && n_recipients > 0)) {
        return keten_err_set(KETEN_ERR_INVALID, "seal: sender, directory and parameters needed");
    }
    keten_err e = find_sender(dir, sender->id, "sender", sender_cert);
    if (e != KETEN_OK) {
        return e;
    }
    const Keten__NodeCert *cert = *sender_cert;
    if (cert->sign_pk.len != KETEN_SIGN_PK_BYTES
        || sodium_memcmp(cert->sign_pk.data, sender->sign_pk, KETEN_SIGN_PK_BYTES) != 0) {
        return keten_err_set(KETEN_ERR_MISMATCH,
            "the signing key of '%s' is not the one in its certificate (directory version %llu)",
            sender->id, (unsigned long long)keten_directory_version(dir));
    }
    if (n_recipients < 1 || n_recipients > KETEN_MAX_RECIPIENTS) {
        return keten_err_set(KETEN_ERR_INVALID, "%zu recipients; a message goes to 1..%d nodes",
            n_recipients, KETEN_MAX_RECIPIENTS);
    }
    for (size_t i = 0; i < n_recipients; i++) {
        const char *r = recipients[i];
        if (r == NULL || !keten_name_valid(r)) {
            return keten_err_set(
                KETEN_ERR_BAD_NAME, "recipient %zu is not a node id ([a-z0-9-]{1,32})", i);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(r, recipients[j]) == 0) {
                return keten_err_set(KETEN_ERR_DUPLICATE_ID, "recipient '%s' is listed twice", r);
            }
        }
        const Keten__NodeCert *rc = keten_directory_find_id(dir, r);
        if (rc == NULL) {
            return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
                "recipient '%s' is not a current node of directory version %llu", r,
                (unsigned long long)keten_directory_version(dir));
        }
        if (strcmp(rc->role, "broker") == 0) {
            return keten_err_set(KETEN_ERR_INVALID,
                "recipient '%s' is the broker; the broker never reads messages", r);
        }
        if (rc->enc_pk.len != KETEN_ENC_PK_BYTES) {
            return keten_err_set(
                KETEN_ERR_MALFORMED, "certificate of recipient '%s' has no encryption key", r);
        }
    }
    if (p->kind < KETEN__KIND__KIND_SIGNAL || p->kind > KETEN__KIND__KIND_FEEDBACK) {
        return keten_err_set(KETEN_ERR_INVALID, "kind must be signal, query, reply or feedback");
    }
    if (p->category == NULL || !keten_directory_category_registered(dir, p->category)) {
        return keten_err_set(KETEN_ERR_UNREGISTERED,
            "category '%s' is not registered in directory version %llu", shown_label(p->category),
            (unsigned long long)keten_directory_version(dir));
    }
    if (p->purpose == NULL || !keten_directory_purpose_registered(dir, p->purpose)) {
        return keten_err_set(KETEN_ERR_UNREGISTERED,
            "purpose '%s' is not registered in directory version %llu", shown_label(p->purpose),
            (unsigned long long)keten_directory_version(dir));
    }
    if (p->expires_at <= p->created_at) {
        return keten_err_set(KETEN_ERR_INVALID, "expires_at (%llu) must be after created_at (%llu)",
            (unsigned long long)p->expires_at, (unsigned long long)p->created_at);
    }
    return cert_valid_at(cert, p->created_at, "created at");
}

/* WrappedKeys for the recipients, in order. */
static keten_err wrap_keys(const keten_directory *dir, const char *const *recipients, size_t n,
    const uint8_t *k, uint8_t **out, size_t *out_len)
{
    keten_err e = KETEN_OK;
    Keten__WrappedKey *items = calloc(n, sizeof *items);
    Keten__WrappedKey **ptrs = calloc(n, sizeof *ptrs);
    uint8_t *sealed = calloc(n, KETEN_SEALED_KEY_BYTES);
    if (items == NULL || ptrs == NULL || sealed == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "wrapping keys for %zu recipients", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const Keten__NodeCert *rc = keten_directory_find_id(dir, recipients[i]);
        uint8_t *s = sealed + i * KETEN_SEALED_KEY_BYTES;
        if (rc == NULL || crypto_box_seal(s, k, KETEN_CONTENT_KEY_BYTES, rc->enc_pk.data) != 0) {
            e = keten_err_set(KETEN_ERR_CRYPTO, "sealing the content key to '%s'", recipients[i]);
            goto out;
        }
        keten__wrapped_key__init(&items[i]);
        items[i].recipient = (char *)recipients[i];
        items[i].sealed.data = s;
        items[i].sealed.len = KETEN_SEALED_KEY_BYTES;
        ptrs[i] = &items[i];
    }
    Keten__WrappedKeys wk = KETEN__WRAPPED_KEYS__INIT;
    wk.n_keys = n;
    wk.keys = ptrs;
    e = keten_pb_pack(&wk.base, out, out_len);
out:
    free(sealed);
    free(ptrs);
    free(items);
    return e;
}

keten_err keten_envelope_seal(const keten_identity *sender, const keten_directory *dir,
    const char *const *recipients, size_t n_recipients, const keten_envelope_seal_params *params,
    const uint8_t *payload, size_t payload_len, uint8_t msg_id_out[static KETEN_MSG_ID_BYTES],
    uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    keten_err e = KETEN_OK;
    const Keten__NodeCert *cert = NULL;
    msg_secrets *sec = NULL;
    uint8_t *padded = NULL;
    uint8_t *keys = NULL;
    size_t keys_len = 0;
    uint8_t *header = NULL;
    size_t header_len = 0;
    uint8_t *ad = NULL;
    size_t ad_len = 0;
    uint8_t *ct = NULL;
    uint8_t *signed_buf = NULL;
    size_t signed_len = 0;
    uint8_t *env_bytes = NULL;
    size_t env_len = 0;
    keten_envelope_verified *check = NULL;

    e = check_seal_input(sender, dir, recipients, n_recipients, params, &cert);
    if (e != KETEN_OK) {
        return e;
    }
    if (payload == NULL && payload_len > 0) {
        return keten_err_set(KETEN_ERR_INVALID, "seal: payload missing");
    }
    size_t padded_len = keten_envelope_pad_bucket(payload_len);
    if (padded_len == 0 || padded_len + KETEN_AEAD_TAG_BYTES > KETEN_ENVELOPE_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE,
            "payload of %zu bytes does not fit an envelope of at most %u bytes once padded; "
            "send smaller attachments",
            payload_len, KETEN_ENVELOPE_MAX);
    }

    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t nonce[KETEN_NONCE_BYTES];
    uint8_t commit[KETEN_HASH_BYTES];
    uint8_t keys_hash[KETEN_HASH_BYTES];
    uint8_t ct_hash[KETEN_HASH_BYTES];
    uint8_t sig[KETEN_SIG_BYTES];
    randombytes_buf(msg_id, sizeof msg_id);
    randombytes_buf(nonce, sizeof nonce);

    /* K and its derived key: this thread's sodium_malloc block (above).
     * The padded plaintext is content, not a key: ordinary memory, wiped. */
    if ((sec = secrets_get()) == NULL) {
        e = KETEN_ERR_NOMEM;
        goto out;
    }
    uint8_t *k = sec->k;
    uint8_t *enc_key = sec->enc_key;
    padded = malloc(padded_len);
    if (padded == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "%zu bytes for sealing", padded_len);
        goto out;
    }
    randombytes_buf(k, KETEN_CONTENT_KEY_BYTES);
    e = derive_enc_key(k, enc_key);
    if (e != KETEN_OK) {
        goto out;
    }
    e = commitment(k, msg_id, commit);
    if (e != KETEN_OK) {
        goto out;
    }
    e = wrap_keys(dir, recipients, n_recipients, k, &keys, &keys_len);
    if (e != KETEN_OK) {
        goto out;
    }
    keten_sha256(keys_hash, keys, keys_len);

    if (payload_len > 0) {
        memcpy(padded, payload, payload_len);
    }
    size_t got_len = 0;
    if (sodium_pad(&got_len, padded, payload_len, padded_len, padded_len) != 0
        || got_len != padded_len) {
        e = keten_err_set(KETEN_ERR_CRYPTO, "padding %zu bytes to %zu", payload_len, padded_len);
        goto out;
    }

    Keten__Header h = KETEN__HEADER__INIT;
    h.network = (char *)keten_directory_network(dir);
    h.msg_id.data = msg_id;
    h.msg_id.len = sizeof msg_id;
    h.sender = (char *)sender->id;
    h.recipients = (char **)recipients;
    h.n_recipients = n_recipients;
    h.created_at = params->created_at;
    h.expires_at = params->expires_at;
    h.kind = params->kind;
    h.category = (char *)params->category;
    h.purpose = (char *)params->purpose;
    if (params->in_reply_to != NULL) {
        h.in_reply_to.data = (uint8_t *)params->in_reply_to;
        h.in_reply_to.len = KETEN_MSG_ID_BYTES;
    }
    h.nonce.data = nonce;
    h.nonce.len = sizeof nonce;
    h.key_commitment.data = commit;
    h.key_commitment.len = sizeof commit;
    h.keys_hash.data = keys_hash;
    h.keys_hash.len = sizeof keys_hash;
    h.padded_len = padded_len;
    e = keten_pb_pack(&h.base, &header, &header_len);
    if (e != KETEN_OK) {
        goto out;
    }

    e = concat3(
        KETEN_LABEL_AEAD, LABEL_LEN(KETEN_LABEL_AEAD), header, header_len, NULL, 0, &ad, &ad_len);
    if (e != KETEN_OK) {
        goto out;
    }
    size_t ct_len = padded_len + KETEN_AEAD_TAG_BYTES;
    ct = malloc(ct_len);
    if (ct == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "ciphertext of %zu bytes", ct_len);
        goto out;
    }
    unsigned long long written = 0;
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(
            ct, &written, padded, padded_len, ad, ad_len, NULL, nonce, enc_key)
            != 0
        || written != ct_len) {
        e = keten_err_set(KETEN_ERR_CRYPTO, "encrypting the payload");
        goto out;
    }
    keten_sha256(ct_hash, ct, ct_len);
    e = envelope_signed_string(header, header_len, ct_hash, &signed_buf, &signed_len);
    if (e != KETEN_OK) {
        goto out;
    }
    if (crypto_sign_detached(sig, NULL, signed_buf, signed_len, sender->sign_sk) != 0
        || crypto_sign_verify_detached(sig, signed_buf, signed_len, cert->sign_pk.data) != 0) {
        e = keten_err_set(KETEN_ERR_CRYPTO,
            "the envelope signature of '%s' does not verify with its certificate; "
            "the key file may be damaged",
            sender->id);
        goto out;
    }

    Keten__Envelope env = KETEN__ENVELOPE__INIT;
    env.sender = (char *)sender->id;
    env.header.data = header;
    env.header.len = header_len;
    env.keys.data = keys;
    env.keys.len = keys_len;
    env.ciphertext.data = ct;
    env.ciphertext.len = ct_len;
    env.signature.data = sig;
    env.signature.len = sizeof sig;
    e = keten_pb_pack(&env.base, &env_bytes, &env_len);
    if (e != KETEN_OK) {
        goto out;
    }
    if (env_len > KETEN_ENVELOPE_MAX) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE,
            "sealed envelope is %zu bytes; at most %u allowed; send smaller attachments", env_len,
            KETEN_ENVELOPE_MAX);
        goto out;
    }
    /* What we hand out must pass the same checks as what we receive. */
    e = keten_envelope_verify(dir, env_bytes, env_len, &check);
    if (e != KETEN_OK) {
        e = rewrap(e, "the sealed envelope fails its own verification");
        goto out;
    }
    memcpy(msg_id_out, msg_id, KETEN_MSG_ID_BYTES);
    *out = env_bytes;
    *out_len = env_len;
    env_bytes = NULL;
out:
    keten_envelope_verified_destroy(&check);
    free(env_bytes);
    free(signed_buf);
    free(ct);
    free(ad);
    free(header);
    free(keys);
    if (padded != NULL) {
        sodium_memzero(padded, padded_len);
        free(padded);
    }
    if (sec != NULL) {
        sodium_memzero(sec, sizeof *sec);
    }
    return e;
}

/* ---- open -------------------------------------------------------------- */

static keten_err check_policy(
    const keten_identity *me, const keten_directory *dir, const keten_envelope_verified *v)
{
    const Keten__Header *h = v->header;
    const Keten__NodeCert *mine = keten_directory_find_id(dir, me->id);
    const char *my_role = mine != NULL ? mine->role : me->role;
    keten_policy_decision d = keten_policy_evaluate(keten_directory_doc(dir), v->sender->id,
        v->sender->role, me->id, my_role, h->kind, h->category, h->purpose);
    if (d.allowed) {
        return KETEN_OK;
    }
    if (d.rule == KETEN_POLICY_DEFAULT_RULE) {
        return keten_err_set(KETEN_ERR_POLICY,
            "no rule allows %s (%s) -> %s (%s), kind %s, category %s, purpose %s "
            "(default deny, rule 0)",
            v->sender->id, v->sender->role, me->id, my_role, keten_policy_kind_name(h->kind), h->category,
            h->purpose);
    }
    return keten_err_set(KETEN_ERR_POLICY,
        "rule %u refuses %s (%s) -> %s (%s), kind %s, category %s, purpose %s", d.rule,
        v->sender->id, v->sender->role, me->id, my_role, keten_policy_kind_name(h->kind), h->category,
        h->purpose);
}

/* Unwrap, check the commitment, decrypt, unpad, parse. */
static keten_err decrypt_payload(const keten_identity *me, const keten_envelope_verified *v,
    const Keten__WrappedKey *wrapped, Keten__Signal **signal_out)
{
    const Keten__Header *h = v->header;
    const Keten__Envelope *env = v->envelope;
    keten_err e = KETEN_OK;
    msg_secrets *sec = secrets_get();
    uint8_t *plain = malloc((size_t)h->padded_len);
    uint8_t *ad = NULL;
    size_t ad_len = 0;
    if (sec == NULL) {
        e = KETEN_ERR_NOMEM;
        goto out;
    }
    uint8_t *k = sec->k;
    uint8_t *enc_key = sec->enc_key;
    if (plain == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "%llu bytes for opening",
            (unsigned long long)h->padded_len);
        goto out;
    }
    if (crypto_box_seal_open(k, wrapped->sealed.data, wrapped->sealed.len, me->enc_pk, me->enc_sk)
        != 0) {
        e = keten_err_set(KETEN_ERR_DECRYPT,
            "the content key wrapped for '%s' does not open with this node's encryption key",
            me->id);
        goto out;
    }
    uint8_t commit[KETEN_HASH_BYTES];
    e = commitment(k, h->msg_id.data, commit);
    if (e != KETEN_OK) {
        goto out;
    }
    if (sodium_memcmp(commit, h->key_commitment.data, KETEN_HASH_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_COMMITMENT,
            "the content key for '%s' does not match the header's commitment: the sender gave "
            "recipients different keys",
            me->id);
        goto out;
    }
    e = derive_enc_key(k, enc_key);
    if (e != KETEN_OK) {
        goto out;
    }
    e = concat3(KETEN_LABEL_AEAD, LABEL_LEN(KETEN_LABEL_AEAD), env->header.data, env->header.len,
        NULL, 0, &ad, &ad_len);
    if (e != KETEN_OK) {
        goto out;
    }
    unsigned long long plain_len = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plain_len, NULL, env->ciphertext.data,
            env->ciphertext.len, ad, ad_len, h->nonce.data, enc_key)
            != 0
        || plain_len != h->padded_len) {
        e = keten_err_set(KETEN_ERR_DECRYPT, "the ciphertext does not decrypt (tampered)");
        goto out;
    }
    size_t unpadded = 0;
    if (sodium_unpad(&unpadded, plain, (size_t)plain_len, (size_t)h->padded_len) != 0) {
        e = keten_err_set(KETEN_ERR_DECRYPT, "the decrypted payload has no valid padding");
        goto out;
    }
    e = keten_signal_json_unpack(plain, unpadded, signal_out);
    if (e != KETEN_OK) {
        e = rewrap(KETEN_ERR_INVALID_SIGNAL, "the decrypted payload is not a valid signal");
        goto out;
    }
out:
    free(ad);
    if (plain != NULL) {
        sodium_memzero(plain, (size_t)h->padded_len);
        free(plain);
    }
    if (sec != NULL) {
        sodium_memzero(sec, sizeof *sec);
    }
    return e;
}

keten_err keten_envelope_open(const keten_identity *me, const keten_directory *dir,
    const uint8_t *buf, size_t len, uint64_t now_ms, keten_envelope_verified **verified_out,
    Keten__Signal **signal_out)
{
    if (verified_out != NULL) {
        *verified_out = NULL;
    }
    if (signal_out != NULL) {
        *signal_out = NULL;
    }
    if (me == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "opening an envelope needs this node's identity");
    }
    keten_envelope_verified *v = NULL;
    Keten__WrappedKeys *wk = NULL;
    Keten__Signal *sig = NULL;
    keten_err e = verify_envelope(dir, buf, len, &v, &wk);
    if (e != KETEN_OK) {
        return e;
    }
    const Keten__Header *h = v->header;
    size_t mine = h->n_recipients;
    for (size_t i = 0; i < h->n_recipients; i++) {
        if (strcmp(h->recipients[i], me->id) == 0) {
            mine = i;
            break;
        }
    }
    if (mine == h->n_recipients) {
        e = keten_err_set(KETEN_ERR_NOT_RECIPIENT, "'%s' is not among the %zu recipients", me->id,
            h->n_recipients);
        goto out;
    }
    if (now_ms >= h->expires_at) {
        char iso[40];
        keten_time_iso(h->expires_at, iso, sizeof iso);
        e = keten_err_set(KETEN_ERR_EXPIRED, "the message expired at %s", iso);
        goto out;
    }
    /* The broker's submit checks, made again: the recipient trusts no
     * broker to have made them (docs/protocol.md, "Times"). */
    uint64_t max_life = keten_directory_max_lifetime(dir);
    if (h->expires_at - h->created_at > max_life) { /* created_at < expires_at: verified */
        e = keten_err_set(KETEN_ERR_EXPIRED,
            "the message's lifetime of %llu ms is longer than the directory's maximum of %llu ms",
            (unsigned long long)(h->expires_at - h->created_at), (unsigned long long)max_life);
        goto out;
    }
    if (h->created_at > now_ms && h->created_at - now_ms > KETEN_CLOCK_SKEW_MS) {
        e = keten_err_set(KETEN_ERR_CLOCK_SKEW,
            "the message was created %llu ms ahead of this node's clock; at most %llu ms is "
            "allowed",
            (unsigned long long)(h->created_at - now_ms), (unsigned long long)KETEN_CLOCK_SKEW_MS);
        goto out;
    }
    if (!keten_directory_category_registered(dir, h->category)) {
        e = keten_err_set(KETEN_ERR_UNREGISTERED,
            "category '%s' is not registered in directory version %llu", h->category,
            (unsigned long long)keten_directory_version(dir));
        goto out;
    }
    if (!keten_directory_purpose_registered(dir, h->purpose)) {
        e = keten_err_set(KETEN_ERR_UNREGISTERED,
            "purpose '%s' is not registered in directory version %llu", h->purpose,
            (unsigned long long)keten_directory_version(dir));
        goto out;
    }
    e = check_policy(me, dir, v);
    if (e != KETEN_OK) {
        goto out;
    }
    e = decrypt_payload(me, v, wk->keys[mine], &sig);
    if (e != KETEN_OK) {
        goto out;
    }
    if (strcmp(sig->type, h->category) != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "the signal's type '%s' differs from the header's category '%s'", sig->type,
            h->category);
        goto out;
    }
    if (strcmp(sig->purpose, h->purpose) != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "the signal's purpose '%s' differs from the header's purpose '%s'", sig->purpose,
            h->purpose);
        goto out;
    }
    if (signal_out != NULL) {
        *signal_out = sig;
        sig = NULL;
    }
    if (verified_out != NULL) {
        *verified_out = v;
        v = NULL;
    }
out:
    keten_signal_json_free(&sig);
    keten_pb_free((ProtobufCMessage **)(void *)&wk);
    keten_envelope_verified_destroy(&v);
    return e;
}

