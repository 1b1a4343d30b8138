#include "sigcache.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

/* Separates this hash from every other SHA-256 keten computes. */
#define DOMAIN "keten/sigcache/v1"

typedef struct entry {
    uint8_t digest[KETEN_SHA256_BYTES];
    bool used;
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry *table;
static size_t n_slots;
static uint64_t n_hits, n_misses;

keten_err keten_sigcache_enable(size_t slots)
{
    if (slots == 0 || slots > KETEN_SIGCACHE_SLOTS_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "signature memory of %zu entries; 1 to %d", slots,
            KETEN_SIGCACHE_SLOTS_MAX);
    }
    entry *t = calloc(slots, sizeof *t);
    if (t == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "signature memory of %zu entries", slots);
    }
    keten_err e = KETEN_OK;
    pthread_mutex_lock(&lock);
    if (table != NULL) {
        e = keten_err_set(KETEN_ERR_EXISTS, "the signature memory is on already");
    } else {
        table = t;
        t = NULL;
        n_slots = slots;
        n_hits = n_misses = 0;
    }
    pthread_mutex_unlock(&lock);
    free(t);
    return e;
}

void keten_sigcache_disable(void)
{
    pthread_mutex_lock(&lock);
    free(table);
    table = NULL;
    n_slots = 0;
    n_hits = n_misses = 0;
    pthread_mutex_unlock(&lock);
}

void keten_sigcache_counts(uint64_t *hits, uint64_t *misses)
{
    pthread_mutex_lock(&lock);
    *hits = n_hits;
    *misses = n_misses;
    pthread_mutex_unlock(&lock);
}

/* SHA-256(DOMAIN || pk || sig || len(m) as 8 bytes big-endian || m). */
static void digest_of(const uint8_t sig[static 64], const uint8_t *m, size_t mlen,
    const uint8_t pk[static 32], uint8_t out[static KETEN_SHA256_BYTES])
{
    uint8_t len_be[8];
    for (int i = 0; i < 8; i++) {
        len_be[i] = (uint8_t)((uint64_t)mlen >> (56 - 8 * i));
    }
    keten_sha256_state st;
    keten_sha256_init(&st);
    keten_sha256_update(&st, DOMAIN, sizeof DOMAIN - 1);
    keten_sha256_update(&st, pk, 32);
    keten_sha256_update(&st, sig, 64);
    keten_sha256_update(&st, len_be, sizeof len_be);
    keten_sha256_update(&st, m, mlen);
    keten_sha256_final(&st, out);
}

static size_t slot_of(const uint8_t digest[static KETEN_SHA256_BYTES])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | digest[i];
    }
    return (size_t)(v % n_slots);
}

bool keten_sigcache_verify(
    const uint8_t sig[static 64], const uint8_t *m, size_t mlen, const uint8_t pk[static 32])
{
    pthread_mutex_lock(&lock);
    bool on = table != NULL;
    pthread_mutex_unlock(&lock);
    if (!on) {
        return crypto_sign_verify_detached(sig, m, mlen, pk) == 0;
    }
    uint8_t d[KETEN_SHA256_BYTES];
    digest_of(sig, m, mlen, pk, d);
    pthread_mutex_lock(&lock);
    bool hit = false;
    if (table != NULL) {
        const entry *en = &table[slot_of(d)];
        hit = en->used && sodium_memcmp(en->digest, d, sizeof d) == 0;
        if (hit) {
            n_hits++;
        } else {
            n_misses++;
        }
    }
    pthread_mutex_unlock(&lock);
    if (hit) {
        return true;
    }
    if (crypto_sign_verify_detached(sig, m, mlen, pk) != 0) {
        return false; /* never remembered: checked in full every time */
    }
    pthread_mutex_lock(&lock);
    if (table != NULL) {
        entry *en = &table[slot_of(d)];
        memcpy(en->digest, d, sizeof d);
        en->used = true;
    }
    pthread_mutex_unlock(&lock);
    return true;
}
