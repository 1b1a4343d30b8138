#include "sha256.h"

#include <sodium.h>

/* SHA256_Init/Update/Final return 1; they cannot fail for in-memory input
 * of any length. */

void keten_sha256_init(keten_sha256_state *st)
{
    (void)SHA256_Init(&st->ctx);
}

void keten_sha256_update(keten_sha256_state *st, const void *in, size_t len)
{
    if (len > 0) {
        (void)SHA256_Update(&st->ctx, in, len);
    }
}

void keten_sha256_final(keten_sha256_state *st, uint8_t out[static KETEN_SHA256_BYTES])
{
    (void)SHA256_Final(out, &st->ctx);
    sodium_memzero(&st->ctx, sizeof st->ctx);
}

void keten_sha256(uint8_t out[static KETEN_SHA256_BYTES], const void *in, size_t len)
{
    keten_sha256_state st;
    keten_sha256_init(&st);
    keten_sha256_update(&st, in, len);
    keten_sha256_final(&st, out);
}
