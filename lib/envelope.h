/*
 * envelope.h - sign-and-encrypt of one message, exactly as docs/protocol.md
 * section 5 describes it.
 *
 * Seal (sender):
 *   K = 32 random bytes; enc key = crypto_kdf_derive_from_key(subkey 1,
 *   context "ketenenc", K); commitment = BLAKE2b-256 keyed with K over
 *   "keten/commit/v1" || msg_id; keys = WrappedKeys{ per recipient, header
 *   order: crypto_box_seal(K, recipient enc_pk) }; payload padded with
 *   sodium_pad to keten_envelope_pad_bucket(len); header built; ciphertext =
 *   XChaCha20-Poly1305-IETF(enc key, nonce, padded, AD = "keten/aead/v1" ||
 *   header); signature = Ed25519(sender, "keten/envelope/v1" || header ||
 *   SHA-256(ciphertext)). K and the enc key are wiped.
 *
 * Verify (broker; no secret): size cap, Envelope canonical, sender hint is a
 * known certificate (current, or KETEN_ERR_REVOKED / KETEN_ERR_UNKNOWN_NODE),
 * signature over the header bytes, Header canonical, hint == header.sender,
 * network, field lengths (msg_id 16, nonce 24, commitment 32, keys_hash 32,
 * in_reply_to empty or 16), 1..64 distinct valid recipient ids,
 * created_at < expires_at, kind set, keys hash, WrappedKeys canonical with
 * one 80-byte entry per recipient in header order, ciphertext length ==
 * padded_len + 16, padded_len a bucket size. Signature before parse: nothing
 * unverified is acted on. A message signed with the key of a certificate
 * that a rotation superseded verifies with that key if it was created before
 * the rotation (it was in flight) and expires at most the directory's
 * longest message lifetime after it; created after it, expiring later, or
 * signed with a key superseded for compromise (keten_directory_revocation_compromised),
 * it is KETEN_ERR_REVOKED.
 *
 * Open (recipient): verify, then: this identity is a recipient, the sender's
 * certificate is valid at created_at, not expired at now, a lifetime
 * (expires_at - created_at) no longer than the directory's maximum
 * (KETEN_ERR_EXPIRED), created_at at most KETEN_CLOCK_SKEW_MS ahead of now
 * (KETEN_ERR_CLOCK_SKEW), registered
 * category and purpose, the policy allows sender -> this node, unwrap K,
 * commitment, decrypt, unpad, Signal parses, signal type/purpose equal header
 * category/purpose. Replay detection (msg_ids remembered until expiry) needs
 * state and is the node store's job.
 *
 * Ownership: *out buffers are malloc()ed; keten_envelope_verified is freed with
 * keten_envelope_verified_destroy(); Keten__Signal with keten_pb_free(). Pointers in a
 * keten_envelope_verified point into the directory and stay valid while it lives.
 * Thread-safe.
 */
#ifndef KETEN_ENVELOPE_H
#define KETEN_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directory.h"
#include "err.h"
#include "identity.h"
#include "keten.h"

typedef struct keten_envelope_seal_params {
    Keten__Kind kind;
    const char *category;
    const char *purpose;
    const uint8_t *in_reply_to; /* NULL or KETEN_MSG_ID_BYTES */
    uint64_t created_at;        /* ms */
    uint64_t expires_at;        /* ms, > created_at */
} keten_envelope_seal_params;

typedef struct keten_envelope_verified {
    Keten__Envelope *envelope;        /* parsed envelope */
    Keten__Header *header;            /* parsed, verified header */
    const Keten__NodeCert *sender;    /* sender's certificate, in the directory */
    uint8_t envelope_hash[KETEN_HASH_BYTES];   /* SHA-256 of the serialized envelope */
    uint8_t ciphertext_hash[KETEN_HASH_BYTES]; /* SHA-256 of the ciphertext */
} keten_envelope_verified;

/* Padded size for a payload of len bytes: the smallest of 1, 4, 16, 64 KiB,
 * then powers of two, that holds len + 1 bytes (sodium_pad adds >= 1). */
size_t keten_envelope_pad_bucket(size_t len);

/* Seal payload (a serialized Signal) from sender to recipients (current node
 * ids in dir, 1..KETEN_MAX_RECIPIENTS, distinct). msg_id_out receives the new
 * msg_id. Checks the categories/purposes are registered. */
keten_err keten_envelope_seal(const keten_identity *sender, const keten_directory *dir,
    const char *const *recipients, size_t n_recipients, const keten_envelope_seal_params *params,
    const uint8_t *payload, size_t payload_len, uint8_t msg_id_out[static KETEN_MSG_ID_BYTES],
    uint8_t **out, size_t *out_len) KETEN_MUST_CHECK;

/* Broker-side verification (see above). */
keten_err keten_envelope_verify(const keten_directory *dir, const uint8_t *buf, size_t len,
    keten_envelope_verified **out) KETEN_MUST_CHECK;

/* Recipient-side open (see above). *signal_out may be NULL if not wanted. */
keten_err keten_envelope_open(const keten_identity *me, const keten_directory *dir,
    const uint8_t *buf, size_t len, uint64_t now_ms, keten_envelope_verified **verified_out,
    Keten__Signal **signal_out) KETEN_MUST_CHECK;

void keten_envelope_verified_destroy(keten_envelope_verified **self_p);

#endif
