/*
 * fuzz_keyfile.c - the secret key file (keten_identity_load), written from
 * the input bytes to a file of mode 0600 in a temporary directory made once
 * per process, loaded without and with a passphrase.
 *
 * The passphrase load runs Argon2id with the limits the file states; inputs
 * asking for more than FUZZ_KDF_OPS_MAX passes or FUZZ_KDF_MEM_MAX bytes are
 * loaded without a passphrase only (the file's limits are the file's claim,
 * capped by identity.c at the "sensitive" level; seconds per input would
 * stall the fuzzer, not find bugs).
 *
 * Invariants:
 *   1. the same bytes readable by others are refused with
 *      KETEN_ERR_PERMISSIONS, whatever they hold (over the size cap:
 *      KETEN_ERR_TOO_LARGE, also before anything is read);
 *   2. an encrypted file never loads without a passphrase; a plain file loads
 *      the same with or without one;
 *   3. a loaded identity is consistent: valid id and role, organisation
 *      without control characters, every public key derived from its secret
 *      key, a log key exactly when the file's flag says so;
 *   4. saved again without a passphrase it gives back a plain input byte for
 *      byte, and loads to the same keys.
 */
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "identity.h"
#include "util.h"

#define FUZZ_KDF_OPS_MAX 3u
#define FUZZ_KDF_MEM_MAX (1u << 20)
#define MAGIC "KETENSK1"
#define MAGIC_LEN 8

static char dir[PATH_MAX];
static char key_path[PATH_MAX];
static char again_path[PATH_MAX];

static void remove_dir(void)
{
    unlink(key_path);
    unlink(again_path);
    rmdir(dir);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(dir, sizeof dir, "%s/keten-fuzz-keyfile-XXXXXX",
        tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof dir && mkdtemp(dir) != NULL);
    n = snprintf(key_path, sizeof key_path, "%s/identity.secret", dir);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof key_path);
    n = snprintf(again_path, sizeof again_path, "%s/again.secret", dir);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof again_path);
    atexit(remove_dir);
}

static void write_key(const uint8_t *data, size_t size, mode_t mode)
{
    unlink(key_path);
    int fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        FUZZ_CHECK(w > 0);
        done += (size_t)w;
    }
    FUZZ_CHECK(fchmod(fd, mode) == 0);
    FUZZ_CHECK(close(fd) == 0);
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static bool org_ok(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return false;
        }
    }
    return n >= 1 && n <= KETEN_ORG_MAX;
}

static void check_ed25519(
    const uint8_t sk[KETEN_SIGN_SK_BYTES], const uint8_t pk[KETEN_SIGN_PK_BYTES])
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    uint8_t pk2[KETEN_SIGN_PK_BYTES];
    uint8_t sk2[KETEN_SIGN_SK_BYTES];
    crypto_sign_ed25519_sk_to_seed(seed, sk);
    FUZZ_CHECK(crypto_sign_seed_keypair(pk2, sk2, seed) == 0);
    FUZZ_CHECK(memcmp(pk, pk2, sizeof pk2) == 0 && memcmp(sk, sk2, sizeof sk2) == 0);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk2, sizeof sk2);
}

static void check_identity(const keten_identity *id, const uint8_t *data, size_t size)
{
    FUZZ_CHECK(keten_name_valid(id->id) && keten_name_valid(id->role) && org_ok(id->org));
    check_ed25519(id->sign_sk, id->sign_pk);
    uint8_t pk[32];
    FUZZ_CHECK(crypto_scalarmult_base(pk, id->enc_sk) == 0 && memcmp(pk, id->enc_pk, 32) == 0);
    FUZZ_CHECK(
        crypto_scalarmult_base(pk, id->transport_sk) == 0 && memcmp(pk, id->transport_pk, 32) == 0);
    if (id->has_log_key) {
        check_ed25519(id->log_sk, id->log_pk);
    }
    bool encrypted = data[MAGIC_LEN] == 1;
    if (!encrypted) {
        /* flags byte: version (1) then flags, after the 9-byte prefix */
        FUZZ_CHECK(id->has_log_key == ((data[MAGIC_LEN + 2] & 1) != 0));
    }

    /* 4 */
    unlink(again_path);
    FUZZ_MUST(keten_identity_save(id, again_path, NULL, 0));
    uint8_t *back = NULL;
    size_t back_len = 0;
    FUZZ_MUST(keten_file_read_secret(again_path, KETEN_KEYFILE_MAX, &back, &back_len));
    if (!encrypted) {
        FUZZ_CHECK(back_len == size && memcmp(back, data, size) == 0);
    }
    sodium_free(back);
    keten_identity *id2 = NULL;
    FUZZ_MUST(keten_identity_load(again_path, NULL, 0, &id2));
    FUZZ_CHECK(strcmp(id2->id, id->id) == 0 && strcmp(id2->role, id->role) == 0
        && strcmp(id2->org, id->org) == 0 && id2->has_log_key == id->has_log_key);
    FUZZ_CHECK(sodium_memcmp(id2->sign_sk, id->sign_sk, KETEN_SIGN_SK_BYTES) == 0
        && sodium_memcmp(id2->enc_sk, id->enc_sk, KETEN_ENC_SK_BYTES) == 0
        && sodium_memcmp(id2->transport_sk, id->transport_sk, KETEN_CURVE_KEY_BYTES) == 0
        && (!id->has_log_key || sodium_memcmp(id2->log_sk, id->log_sk, KETEN_SIGN_SK_BYTES) == 0));
    keten_identity_destroy(&id2);
    unlink(again_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        setup();
    }
    keten_identity *id = NULL;

    /* 1 */
    write_key(data, size, 0644);
    keten_err ep = keten_identity_load(key_path, NULL, 0, &id);
    /* What the file is comes first (its first bytes against the magic): a
     * file that is not a key file is the wrong kind of file whatever its
     * mode. Then the size cap, checked on open, and the mode: nothing more
     * is read. */
    size_t peek = size < MAGIC_LEN ? size : MAGIC_LEN;
    if (size > 0 && memcmp(data, MAGIC, peek) != 0) {
        FUZZ_CHECK(ep == KETEN_ERR_WRONG_TYPE);
    } else {
        FUZZ_CHECK(ep == KETEN_ERR_PERMISSIONS
            || (size > KETEN_KEYFILE_MAX && ep == KETEN_ERR_TOO_LARGE));
    }
    FUZZ_CHECK(id == NULL);

    write_key(data, size, 0600);
    bool is_keyfile = size > MAGIC_LEN && memcmp(data, MAGIC, MAGIC_LEN) == 0;
    bool encrypted = is_keyfile && data[MAGIC_LEN] == 1;

    /* 2 */
    keten_err e1 = keten_identity_load(key_path, NULL, 0, &id);
    if (encrypted) {
        FUZZ_CHECK(e1 != KETEN_OK);
    }
    if (e1 == KETEN_OK) {
        FUZZ_CHECK(is_keyfile && size <= KETEN_KEYFILE_MAX);
        check_identity(id, data, size);
    } else {
        FUZZ_CHECK(id == NULL);
    }
    keten_identity_destroy(&id);

    bool cheap = !encrypted
        || (size >= 41 && be64(data + 25) <= FUZZ_KDF_OPS_MAX
            && be64(data + 33) <= FUZZ_KDF_MEM_MAX);
    if (cheap) {
        keten_err e2 = keten_identity_load(
            key_path, (const uint8_t *)FUZZ_PASSPHRASE, sizeof FUZZ_PASSPHRASE - 1, &id);
        if (!encrypted) {
            FUZZ_CHECK(e2 == e1);
        }
        if (e2 == KETEN_OK) {
            check_identity(id, data, size);
        } else {
            FUZZ_CHECK(id == NULL);
        }
        keten_identity_destroy(&id);
    }
    keten_err_clear();
    return 0;
}
