/*
 * test_sha256.c - keten_sha256 (OpenSSL's libcrypto) gives the FIPS 180-4
 * answers and exactly libsodium's bytes, in one call and in pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "sha256.h"
#include "util.h"

static void hex_is(const uint8_t h[KETEN_SHA256_BYTES], const char *want)
{
    char got[2 * KETEN_SHA256_BYTES + 1];
    keten_hex(h, KETEN_SHA256_BYTES, got);
    assert_string_equal(got, want);
}

/* FIPS 180-4 / NIST example vectors. */
static void test_known_answers(void **state)
{
    (void)state;
    uint8_t h[KETEN_SHA256_BYTES];
    keten_sha256(h, "", 0);
    hex_is(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    keten_sha256(h, "abc", 3);
    hex_is(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    static const char m448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    keten_sha256(h, m448, sizeof m448 - 1);
    hex_is(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* One million 'a', fed in pieces of 1000. */
    keten_sha256_state st;
    uint8_t a[1000];
    memset(a, 'a', sizeof a);
    keten_sha256_init(&st);
    for (int i = 0; i < 1000; i++) {
        keten_sha256_update(&st, a, sizeof a);
    }
    keten_sha256_final(&st, h);
    hex_is(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* Reject twin: one byte more is another hash. */
    keten_sha256(h, "abcd", 4);
    uint8_t abc[KETEN_SHA256_BYTES];
    keten_sha256(abc, "abc", 3);
    assert_memory_not_equal(h, abc, KETEN_SHA256_BYTES);
}

/* Every length from 0 to 2100 bytes (every block boundary), random
 * contents, in one call and split in two at a random point: libsodium's
 * bytes each time. */
static void test_matches_libsodium(void **state)
{
    (void)state;
    static uint8_t buf[2100];
    randombytes_buf(buf, sizeof buf);
    for (size_t len = 0; len <= sizeof buf; len++) {
        uint8_t want[crypto_hash_sha256_BYTES], got[KETEN_SHA256_BYTES];
        crypto_hash_sha256(want, buf, len);
        keten_sha256(got, buf, len);
        assert_memory_equal(got, want, sizeof want);
        size_t cut = len == 0 ? 0 : randombytes_uniform((uint32_t)len + 1);
        keten_sha256_state st;
        keten_sha256_init(&st);
        keten_sha256_update(&st, buf, cut);
        keten_sha256_update(&st, buf + cut, len - cut);
        keten_sha256_final(&st, got);
        assert_memory_equal(got, want, sizeof want);
    }
}

int main(void)
{
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_matches_libsodium),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
