/*
 * sigcache.h - Ed25519 verification that remembers what it verified.
 *
 * A node is sent the same signed bytes more than once: a recipient's receipt
 * batch head comes once for every message of that sender in the batch, a
 * checkpoint comes again with the cosignatures it gained since, and its
 * cosignature lines come again with every later copy of it. keten_sigcache_verify
 * checks a signature as crypto_sign_verify_detached does; once a process has
 * called keten_sigcache_enable, it also remembers every (public key,
 * signature, message) that verified, as one SHA-256 of the three, and answers
 * "verifies" for the same three again without the Ed25519 arithmetic.
 *
 * Only signatures that verified are remembered: a signature that fails is
 * checked again, in full, every time it comes. A hit needs the same key, the
 * same 64 signature bytes and the same message bytes (a SHA-256 collision
 * otherwise). The table is direct-mapped: a new entry replaces the one in its
 * slot, so at most `slots` entries are remembered.
 *
 * Nothing in it is secret (public keys, signatures, hashes of signed
 * messages). Enabled once at start (keten-node does; the broker and the
 * command-line programs do not), before other threads run; verification is
 * then safe from any thread (a mutex guards the table).
 */
#ifndef KETEN_SIGCACHE_H
#define KETEN_SIGCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define KETEN_SIGCACHE_SLOTS_MAX 65536

/* Turn on the memory of verified signatures, with `slots` entries (1 to
 * KETEN_SIGCACHE_SLOTS_MAX; 33 bytes each). KETEN_ERR_INVALID for another
 * count, KETEN_ERR_EXISTS when already on. */
keten_err keten_sigcache_enable(size_t slots) KETEN_MUST_CHECK;

/* Turn it off and forget everything (tests). */
void keten_sigcache_disable(void);

/* crypto_sign_verify_detached(sig, m, mlen, pk) == 0, through the memory
 * when it is on. */
bool keten_sigcache_verify(const uint8_t sig[static 64], const uint8_t *m, size_t mlen,
    const uint8_t pk[static 32]) KETEN_MUST_CHECK;

/* Verifications answered from memory, and ones that did the arithmetic,
 * since the memory was turned on (0 and 0 while it is off). */
void keten_sigcache_counts(uint64_t *hits, uint64_t *misses);

#endif
