/*
 * identity.h - a node's (or the broker's) own keys, the secret key file, and
 * the enrollment request with proof of possession (docs/protocol.md section 10).
 *
 * A keten_identity lives in sodium_malloc() memory (guarded, locked) and is
 * wiped by keten_identity_destroy(). It holds:
 *   - Ed25519 signing key pair (envelopes, receipts, requests),
 *   - X25519 encryption key pair (crypto_box_seal of content keys),
 *   - CurveZMQ transport key pair (raw 32-byte Curve25519 keys),
 *   - for the broker only, a separate Ed25519 log key pair (checkpoints, acks).
 *
 * Secret key file ("identity.secret"), all integers big-endian:
 *   magic "KETENSK1" (8) | format (1): 0 plain, 1 encrypted
 *   encrypted: salt (16) | opslimit (8) | memlimit (8) | nonce (24) |
 *              XChaCha20-Poly1305-IETF(key = Argon2id(passphrase, salt), nonce,
 *              body, AD = the 65 header bytes before it)
 *   plain:     body
 *   body: version (1) = 1 | flags (1): bit 0 has log key | id_len (1) | id |
 *         role_len (1) | role | org_len (1) | org | sign_sk (64) | enc_sk (32) |
 *         transport_sk (32) | [log_sk (64)]
 * Public keys are derived from the secret ones on load and checked.
 * The file is created with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600. On load only
 * its first bytes are read to tell what kind of file it is (a file that is
 * not a keten secret key file, a public key among them, is KETEN_ERR_WRONG_TYPE
 * whatever its mode); a key file readable or writable by group or others is
 * then refused with KETEN_ERR_PERMISSIONS before the rest is read.
 *
 * Errors of keten_identity_load(): KETEN_ERR_NOT_FOUND, KETEN_ERR_PERMISSIONS,
 * KETEN_ERR_WRONG_TYPE (not a key file), KETEN_ERR_TRUNCATED,
 * KETEN_ERR_MALFORMED, KETEN_ERR_NEED_PASSPHRASE (encrypted, no passphrase
 * given), KETEN_ERR_PASSPHRASE (wrong passphrase: decryption failed).
 *
 * Thread safety: an identity may be read from several threads; none of these
 * functions keeps global state.
 */
#ifndef KETEN_IDENTITY_H
#define KETEN_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"

typedef struct keten_identity {
    char id[KETEN_NAME_MAX + 1];
    char role[KETEN_NAME_MAX + 1];
    char org[KETEN_ORG_MAX + 1];
    uint8_t sign_pk[KETEN_SIGN_PK_BYTES];
    uint8_t sign_sk[KETEN_SIGN_SK_BYTES];
    uint8_t enc_pk[KETEN_ENC_PK_BYTES];
    uint8_t enc_sk[KETEN_ENC_SK_BYTES];
    uint8_t transport_pk[KETEN_CURVE_KEY_BYTES];
    uint8_t transport_sk[KETEN_CURVE_KEY_BYTES];
    bool has_log_key;
    uint8_t log_pk[KETEN_SIGN_PK_BYTES];
    uint8_t log_sk[KETEN_SIGN_SK_BYTES];
} keten_identity;

/* Argon2id limits for key files: crypto_pwhash_OPSLIMIT_MODERATE and
 * MEMLIMIT_MODERATE in production. Tests may lower them through the
 * environment variable KETEN_TEST_FAST_KDF=1 (interactive limits), a test
 * hook that only a build with -Dtest_hooks=true has; the limits used are
 * stored in the file, so either opens anywhere. */

/* New keys for id/role/org (checked: keten_name_valid, org printable, at most
 * KETEN_ORG_MAX bytes). with_log_key for the broker: role "broker" without
 * it, or another role with it, is KETEN_ERR_INVALID. Errors: KETEN_ERR_BAD_NAME
 * (id, role), KETEN_ERR_INVALID (org). *out is owned by the caller:
 * keten_identity_destroy(). */
keten_err keten_identity_generate(const char *id, const char *role, const char *org,
    bool with_log_key, keten_identity **out) KETEN_MUST_CHECK;

/* Wipe and free; accepts NULL; sets *self_p = NULL. */
void keten_identity_destroy(keten_identity **self_p);

/* Write the secret key file at path (must not exist). pass == NULL writes it
 * unencrypted (tests, demo); otherwise passlen >= 1. */
keten_err keten_identity_save(const keten_identity *self, const char *path, const uint8_t *pass,
    size_t passlen) KETEN_MUST_CHECK;

/* Read a secret key file. pass may be NULL for an unencrypted file. */
keten_err keten_identity_load(const char *path, const uint8_t *pass, size_t passlen,
    keten_identity **out) KETEN_MUST_CHECK;

/* Whether the key file at path is passphrase-protected (checks permissions
 * first, like load). */
keten_err keten_identity_file_encrypted(const char *path, bool *encrypted) KETEN_MUST_CHECK;

/* A serialized SignedRequest for joining network (may be "" when unknown):
 * NodeRequest signed over "keten/request/v1" || request by sign_sk (and, for
 * the broker, also by log_sk). *out is malloc()ed. The signature is verified
 * after signing. */
keten_err keten_identity_request(const keten_identity *self, const char *network,
    uint64_t now_ms, uint8_t **out, size_t *out_len) KETEN_MUST_CHECK;

/* Verify a serialized SignedRequest: size cap KETEN_REQUEST_MAX, canonical
 * bytes, id and role syntax, key lengths (log_pk present iff role is
 * "broker"), org syntax, and the proof(s) of possession.
 * *out (free with keten_pb_free) is the parsed NodeRequest.
 * KETEN_ERR_BAD_SIGNATURE when a proof of possession fails or is missing;
 * KETEN_ERR_TOO_LARGE, KETEN_ERR_MALFORMED (does not parse, key lengths, a
 * log key or log signature on a non-broker request), KETEN_ERR_NOT_CANONICAL,
 * KETEN_ERR_BAD_NAME (id, role), KETEN_ERR_INVALID (org or network name,
 * small-order X25519 key), KETEN_ERR_DUPLICATE_KEY (one key used twice). */
keten_err keten_identity_request_verify(
    const uint8_t *buf, size_t len, Keten__NodeRequest **out) KETEN_MUST_CHECK;

/* The administrator's key: one Ed25519 key pair in the same file format
 * (id "admin", role "admin", no other keys are used). */

/* Whether the first n bytes of a file look like a public key file: 44
 * characters of base64 (32 bytes, padded), then a space, a newline or the
 * end (an administrator's .pub, written by keten-keys admin-keygen). */
bool keten_identity_looks_like_public_key(const uint8_t *b, size_t n);

#endif
