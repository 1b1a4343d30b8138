/*
 * fixture_forge.h - envelopes a sender could make with its own key but
 * keten_envelope_seal() never would (tests of what a broker or a recipient
 * refuses): a sealed envelope's header is parsed, changed by a callback,
 * packed again and signed again with the given identity's signing key, so
 * the signature holds and only what was changed is wrong.
 *
 * The wrapped keys follow the header's recipients: a recipient that was
 * there keeps its sealed key, a new one gets 80 random bytes; keys_hash is
 * computed again. The ciphertext is kept (its AEAD binds the old header:
 * only a broker's checks can pass on a forged envelope, a recipient cannot
 * open it). Failures abort the test (cmocka).
 */
#ifndef KETEN_TEST_FIXTURE_FORGE_H
#define KETEN_TEST_FIXTURE_FORGE_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "keten.h"

/* Changes the parsed header in place; strings and arrays it sets must stay
 * valid until forge_envelope() returns (they are not freed by it). */
typedef void (*forge_edit_fn)(Keten__Header *h, void *arg);

/* The changed envelope (malloc), signed by signer. */
uint8_t *forge_envelope(const uint8_t *env, size_t len, const keten_identity *signer,
    forge_edit_fn edit, void *arg, size_t *len_out);

/* The same envelope with one ciphertext byte flipped: the signature no
 * longer holds (malloc). */
uint8_t *forge_flip_ciphertext(const uint8_t *env, size_t len, size_t *len_out);

/* The msg_id of an envelope (not verified). */
void forge_msg_id(const uint8_t *env, size_t len, uint8_t out[static KETEN_MSG_ID_BYTES]);

#endif
