/*
 * sha256.h - SHA-256, the hash of the audit log's Merkle tree, of envelopes,
 * ciphertexts, directories and checkpoints.
 *
 * The same bytes as libsodium's crypto_hash_sha256 (FIPS 180-4), computed
 * with OpenSSL's libcrypto, which uses the processor's SHA extensions where
 * it has them (several times faster than libsodium's portable code on the
 * broker's hot path: every envelope, ciphertext and log record is hashed).
 * A test checks both against each other and against the FIPS vectors.
 *
 * The state lives on the caller's stack; no allocation, no global state.
 * Thread safety: reentrant.
 */
#ifndef KETEN_SHA256_H
#define KETEN_SHA256_H

/* The plain SHA256_* functions (no allocation, unlike EVP's context), which
 * OpenSSL 3 keeps behind its 1.1.1 compatibility level. */
#ifndef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 10101
#endif
#include <openssl/sha.h>
#include <stddef.h>
#include <stdint.h>

#define KETEN_SHA256_BYTES 32

typedef struct keten_sha256_state {
    SHA256_CTX ctx;
} keten_sha256_state;

void keten_sha256(uint8_t out[static KETEN_SHA256_BYTES], const void *in, size_t len);
void keten_sha256_init(keten_sha256_state *st);
void keten_sha256_update(keten_sha256_state *st, const void *in, size_t len);
void keten_sha256_final(keten_sha256_state *st, uint8_t out[static KETEN_SHA256_BYTES]);

#endif
