/*
 * test_sigcache.c - keten_sigcache_verify answers as crypto_sign_verify_detached
 * does, with the memory of verified signatures off and on: a signature that
 * verified is answered from memory the second time; anything that differs
 * in one byte (message, signature, key) or that failed is checked in full
 * and refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "sigcache.h"

typedef struct keys {
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    uint8_t pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
} keys;

static int setup(void **state)
{
    keys *k = calloc(1, sizeof *k);
    if (k == NULL || sodium_init() < 0) {
        free(k);
        return -1;
    }
    crypto_sign_keypair(k->pk, k->sk);
    crypto_sign_keypair(k->pk2, k->sk2);
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    keten_sigcache_disable();
    free(*state);
    return 0;
}

static void counts_are(uint64_t hits, uint64_t misses)
{
    uint64_t h = 99, m = 99;
    keten_sigcache_counts(&h, &m);
    assert_int_equal(h, hits);
    assert_int_equal(m, misses);
}

/* The same answers as crypto_sign_verify_detached, whether the memory is
 * off or on, for a good signature and for each one-byte change. */
static void check_answers(const keys *k)
{
    uint8_t msg[200];
    randombytes_buf(msg, sizeof msg);
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, msg, sizeof msg, k->sk);
    for (int round = 0; round < 3; round++) { /* the second and third from memory */
        assert_true(keten_sigcache_verify(sig, msg, sizeof msg, k->pk));
    }
    uint8_t bad[sizeof msg];
    memcpy(bad, msg, sizeof msg);
    bad[17] ^= 1;
    assert_false(keten_sigcache_verify(sig, bad, sizeof bad, k->pk));
    assert_false(keten_sigcache_verify(sig, msg, sizeof msg - 1, k->pk)); /* a prefix */
    assert_false(keten_sigcache_verify(sig, msg, sizeof msg, k->pk2)); /* another key */
    uint8_t sig2[crypto_sign_BYTES];
    memcpy(sig2, sig, sizeof sig);
    sig2[40] ^= 0x80;
    assert_false(keten_sigcache_verify(sig2, msg, sizeof msg, k->pk));
    /* A failure is not remembered: the same bad three fail again. */
    assert_false(keten_sigcache_verify(sig2, msg, sizeof msg, k->pk));
    /* The good one still verifies after all that. */
    assert_true(keten_sigcache_verify(sig, msg, sizeof msg, k->pk));
}

static void test_off(void **state)
{
    keys *k = *state;
    check_answers(k);
    counts_are(0, 0); /* nothing counted while off */
}

static void test_on(void **state)
{
    keys *k = *state;
    assert_int_equal(keten_sigcache_enable(64), KETEN_OK);
    check_answers(k);
    /* 3 + 1 good verifications: the first did the arithmetic, 3 from memory;
     * the 5 refused ones each did it in full. */
    counts_are(3, 1 + 5);
}

/* An empty message, and a message of 64 KiB. */
static void test_lengths(void **state)
{
    keys *k = *state;
    assert_int_equal(keten_sigcache_enable(64), KETEN_OK);
    static uint8_t big[65536];
    randombytes_buf(big, sizeof big);
    uint8_t s0[crypto_sign_BYTES], s1[crypto_sign_BYTES];
    crypto_sign_detached(s0, NULL, big, 0, k->sk);
    crypto_sign_detached(s1, NULL, big, sizeof big, k->sk);
    for (int i = 0; i < 2; i++) {
        assert_true(keten_sigcache_verify(s0, big, 0, k->pk));
        assert_true(keten_sigcache_verify(s1, big, sizeof big, k->pk));
        assert_false(keten_sigcache_verify(s0, big, sizeof big, k->pk));
        assert_false(keten_sigcache_verify(s1, big, 0, k->pk));
    }
    counts_are(2, 2 + 4);
}

/* More signatures than slots: each still verifies (the replaced ones in
 * full again), every forged one is refused, and at most `slots` are
 * answered from memory. */
static void test_full_table(void **state)
{
    keys *k = *state;
    enum { SLOTS = 8, N = 100 };
    assert_int_equal(keten_sigcache_enable(SLOTS), KETEN_OK);
    static uint8_t msg[N][32], sig[N][crypto_sign_BYTES];
    for (int i = 0; i < N; i++) {
        randombytes_buf(msg[i], sizeof msg[i]);
        crypto_sign_detached(sig[i], NULL, msg[i], sizeof msg[i], k->sk);
        assert_true(keten_sigcache_verify(sig[i], msg[i], sizeof msg[i], k->pk));
    }
    counts_are(0, N);
    for (int i = 0; i < N; i++) {
        assert_true(keten_sigcache_verify(sig[i], msg[i], sizeof msg[i], k->pk));
        assert_false(keten_sigcache_verify(sig[i], msg[(i + 1) % N], sizeof msg[i], k->pk));
    }
    uint64_t hits = 0, misses = 0;
    keten_sigcache_counts(&hits, &misses);
    assert_true(hits <= SLOTS);
    assert_int_equal(hits + misses, 3 * N);
}

static void test_enable_rules(void **state)
{
    (void)state;
    assert_int_equal(keten_sigcache_enable(0), KETEN_ERR_INVALID);
    assert_int_equal(keten_sigcache_enable(KETEN_SIGCACHE_SLOTS_MAX + 1), KETEN_ERR_INVALID);
    assert_int_equal(keten_sigcache_enable(KETEN_SIGCACHE_SLOTS_MAX), KETEN_OK);
    assert_int_equal(keten_sigcache_enable(16), KETEN_ERR_EXISTS);
    keten_sigcache_disable();
    assert_int_equal(keten_sigcache_enable(16), KETEN_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lengths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
