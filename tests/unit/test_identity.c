/*
 * test_identity.c - node keys, the secret key file and the enrollment
 * request: real keys, real files in a fresh temporary directory, and for
 * every accepted input its tampered, truncated, forged and oversize twins.
 */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "identity.h"
#include "pb.h"
#include "util.h"

#define PASS "correct horse battery staple"
#define PASS_LEN (sizeof PASS - 1)
#define HEADER_BYTES 65 /* magic, format, salt, opslimit, memlimit, nonce */
#define OPSLIMIT_OFFSET 25
#define MEMLIMIT_OFFSET 33
#define LABEL_LEN (sizeof KETEN_LABEL_REQUEST - 1)

typedef struct ctx {
    char dir[PATH_MAX];
} ctx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -1;
    }
    snprintf(c->dir, sizeof c->dir, "%s/keten-identity-XXXXXX",
        getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(c->dir) == NULL) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    int rc = nftw(c->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
    return rc;
}

static void path_in(const ctx *c, const char *name, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", c->dir, name);
    assert_true(n > 0 && n < PATH_MAX);
}

static keten_identity *gen(const char *id, const char *role, bool log_key)
{
    keten_identity *k = NULL;
    assert_int_equal(keten_identity_generate(id, role, "Gemeente Diemen", log_key, &k), KETEN_OK);
    assert_non_null(k);
    return k;
}

static void read_all(const char *path, uint8_t **out, size_t *len)
{
    assert_int_equal(keten_file_read(path, KETEN_KEYFILE_MAX, out, len), KETEN_OK);
}

/* Write raw bytes as a 0600 file (replacing any). */
static void write_raw(const char *path, const uint8_t *data, size_t len)
{
    (void)unlink(path);
    assert_int_equal(keten_file_write(path, data, len, 0600, true), KETEN_OK);
}

static void assert_same_identity(const keten_identity *a, const keten_identity *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->role, b->role);
    assert_string_equal(a->org, b->org);
    assert_memory_equal(a->sign_pk, b->sign_pk, KETEN_SIGN_PK_BYTES);
    assert_memory_equal(a->sign_sk, b->sign_sk, KETEN_SIGN_SK_BYTES);
    assert_memory_equal(a->enc_pk, b->enc_pk, KETEN_ENC_PK_BYTES);
    assert_memory_equal(a->enc_sk, b->enc_sk, KETEN_ENC_SK_BYTES);
    assert_memory_equal(a->transport_pk, b->transport_pk, KETEN_CURVE_KEY_BYTES);
    assert_memory_equal(a->transport_sk, b->transport_sk, KETEN_CURVE_KEY_BYTES);
    assert_int_equal(a->has_log_key, b->has_log_key);
    if (a->has_log_key) {
        assert_memory_equal(a->log_pk, b->log_pk, KETEN_SIGN_PK_BYTES);
        assert_memory_equal(a->log_sk, b->log_sk, KETEN_SIGN_SK_BYTES);
    }
}

static keten_err load(const char *path, const char *pass, keten_identity **out)
{
    return keten_identity_load(path, (const uint8_t *)pass, pass ? strlen(pass) : 0, out);
}

/* Load that must fail with want, leaving *out NULL. */
static void expect_load(const char *path, const char *pass, keten_err want)
{
    keten_identity *k = (keten_identity *)(uintptr_t)1;
    keten_err e = load(path, pass, &k);
    if (e != want) {
        print_error("%s: got %s (%s), want %s\n", path, keten_err_str(e), keten_err_detail(),
            keten_err_str(want));
    }
    assert_int_equal(e, want);
    assert_null(k);
}

/* ---- generate ---------------------------------------------------------- */

static void test_generate_keys_are_real(void **state)
{
    (void)state;
    keten_identity *k = gen("gemeente-diemen", "municipality", false);
    assert_false(k->has_log_key);
    /* The public keys belong to the secret ones. */
    uint8_t pk[32];
    assert_int_equal(crypto_scalarmult_base(pk, k->enc_sk), 0);
    assert_memory_equal(pk, k->enc_pk, 32);
    assert_int_equal(crypto_scalarmult_base(pk, k->transport_sk), 0);
    assert_memory_equal(pk, k->transport_pk, 32);
    uint8_t sig[KETEN_SIG_BYTES];
    const uint8_t msg[] = "probe";
    assert_int_equal(crypto_sign_detached(sig, NULL, msg, sizeof msg, k->sign_sk), 0);
    assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof msg, k->sign_pk), 0);
    /* Three distinct keys. */
    assert_memory_not_equal(k->enc_pk, k->transport_pk, 32);
    assert_memory_not_equal(k->sign_pk, k->enc_pk, 32);

    keten_identity *b = gen("broker", "broker", true);
    assert_true(b->has_log_key);
    assert_int_equal(crypto_sign_detached(sig, NULL, msg, sizeof msg, b->log_sk), 0);
    assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof msg, b->log_pk), 0);
    assert_memory_not_equal(b->log_pk, b->sign_pk, 32);

    keten_identity_destroy(&k);
    assert_null(k);
    keten_identity_destroy(&b);
    keten_identity_destroy(&b); /* NULL is fine */
    keten_identity_destroy(NULL);
}

static void test_generate_rejects_bad_names(void **state)
{
    (void)state;
    keten_identity *k = NULL;
    char org_max[KETEN_ORG_MAX + 2];
    memset(org_max, 'o', KETEN_ORG_MAX);
    org_max[KETEN_ORG_MAX] = '\0';
    char id_max[KETEN_NAME_MAX + 2];
    memset(id_max, 'a', KETEN_NAME_MAX);
    id_max[KETEN_NAME_MAX] = '\0';

    /* Accepted at the limits. */
    assert_int_equal(keten_identity_generate(id_max, "police", org_max, false, &k), KETEN_OK);
    keten_identity_destroy(&k);
    assert_int_equal(
        keten_identity_generate("a", "tax", "Belastingdienst \xc3\xa9", false, &k), KETEN_OK);
    keten_identity_destroy(&k);

    const char *bad_ids[] = { "", "Gemeente", "a b", "a_b", "a/b", "a\n", "gemeente.diemen" };
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        k = (keten_identity *)(uintptr_t)1;
        assert_int_equal(
            keten_identity_generate(bad_ids[i], "police", "Org", false, &k), KETEN_ERR_BAD_NAME);
        assert_null(k);
        assert_int_equal(
            keten_identity_generate("police-mn", bad_ids[i], "Org", false, &k), KETEN_ERR_BAD_NAME);
        assert_null(k);
    }
    id_max[KETEN_NAME_MAX] = 'a';
    id_max[KETEN_NAME_MAX + 1] = '\0';
    assert_int_equal(
        keten_identity_generate(id_max, "police", "Org", false, &k), KETEN_ERR_BAD_NAME);
    assert_int_equal(
        keten_identity_generate("police-mn", id_max, "Org", false, &k), KETEN_ERR_BAD_NAME);

    org_max[KETEN_ORG_MAX] = 'o';
    org_max[KETEN_ORG_MAX + 1] = '\0';
    const char *bad_orgs[]
        = { "", "Politie\nMidden", "tab\there", "del\x7f", "esc\x1b[31m", org_max };
    for (size_t i = 0; i < sizeof bad_orgs / sizeof bad_orgs[0]; i++) {
        assert_int_equal(keten_identity_generate("police-mn", "police", bad_orgs[i], false, &k),
            KETEN_ERR_INVALID);
        assert_null(k);
    }
    /* The broker and only the broker has a log key. */
    assert_int_equal(
        keten_identity_generate("broker", "broker", "Org", false, &k), KETEN_ERR_INVALID);
    assert_int_equal(
        keten_identity_generate("police-mn", "police", "Org", true, &k), KETEN_ERR_INVALID);
    assert_null(k);
}

/* ---- key file ---------------------------------------------------------- */

static void roundtrip(ctx *c, const char *id, const char *role, bool log_key)
{
    char path[PATH_MAX];
    path_in(c, log_key ? "broker.secret" : "node.secret", path);
    keten_identity *k = gen(id, role, log_key);
    assert_int_equal(keten_identity_save(k, path, (const uint8_t *)PASS, PASS_LEN), KETEN_OK);

    bool enc = false;
    assert_int_equal(keten_identity_file_encrypted(path, &enc), KETEN_OK);
    assert_true(enc);

    keten_identity *back = NULL;
    assert_int_equal(load(path, PASS, &back), KETEN_OK);
    assert_non_null(back);
    assert_same_identity(k, back);
    assert_int_equal(back->has_log_key, log_key);

    /* The secret keys are not in the file in the clear. */
    uint8_t *raw;
    size_t raw_len;
    read_all(path, &raw, &raw_len);
    assert_memory_equal(raw, "KETENSK1\x01", 9);
    for (size_t i = 0; i + 32 <= raw_len; i++) {
        assert_memory_not_equal(raw + i, k->sign_sk, 32);
        assert_memory_not_equal(raw + i, k->enc_sk, 32);
    }
    free(raw);
    keten_identity_destroy(&k);
    keten_identity_destroy(&back);
}

static void test_roundtrip_encrypted_node(void **state)
{
    roundtrip(*state, "gemeente-diemen", "municipality", false);
}

static void test_roundtrip_encrypted_broker(void **state)
{
    roundtrip(*state, "broker", "broker", true);
}

static void test_roundtrip_plain(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX];
    path_in(c, "plain.secret", path);
    keten_identity *k = gen("broker", "broker", true);
    assert_int_equal(keten_identity_save(k, path, NULL, 0), KETEN_OK);
    bool enc = true;
    assert_int_equal(keten_identity_file_encrypted(path, &enc), KETEN_OK);
    assert_false(enc);
    keten_identity *back = NULL;
    assert_int_equal(load(path, NULL, &back), KETEN_OK);
    assert_same_identity(k, back);
    keten_identity_destroy(&back);
    /* A passphrase given for a plain file does no harm. */
    assert_int_equal(load(path, PASS, &back), KETEN_OK);
    assert_same_identity(k, back);
    keten_identity_destroy(&back);
    /* Empty passphrase is refused at save. */
    char path2[PATH_MAX];
    path_in(c, "empty.secret", path2);
    assert_int_equal(keten_identity_save(k, path2, (const uint8_t *)"", 0), KETEN_ERR_INVALID);
    assert_int_equal(access(path2, F_OK), -1);
    keten_identity_destroy(&k);
}

static void test_wrong_and_missing_passphrase(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX];
    path_in(c, "node.secret", path);
    keten_identity *k = gen("politie-mn", "police", false);
    assert_int_equal(keten_identity_save(k, path, (const uint8_t *)PASS, PASS_LEN), KETEN_OK);
    expect_load(path, "correct horse battery stapLe", KETEN_ERR_PASSPHRASE);
    assert_non_null(strstr(keten_err_detail(), path));
    assert_non_null(strstr(keten_err_detail(), "wrong passphrase"));
    expect_load(path, "correct horse battery staple ", KETEN_ERR_PASSPHRASE);
    expect_load(path, NULL, KETEN_ERR_NEED_PASSPHRASE);
    assert_non_null(strstr(keten_err_detail(), path));
    keten_identity *back = (keten_identity *)(uintptr_t)1;
    assert_int_equal(
        keten_identity_load(path, (const uint8_t *)PASS, 0, &back), KETEN_ERR_NEED_PASSPHRASE);
    assert_null(back);
    /* And the right one still opens it. */
    assert_int_equal(load(path, PASS, &back), KETEN_OK);
    assert_same_identity(k, back);
    keten_identity_destroy(&back);
    keten_identity_destroy(&k);
}

static void test_permissions_refused_before_passphrase(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX];
    path_in(c, "node.secret", path);
    keten_identity *k = gen("politie-mn", "police", false);
    assert_int_equal(keten_identity_save(k, path, (const uint8_t *)PASS, PASS_LEN), KETEN_OK);
    bool enc;
    const mode_t bad_modes[] = { 0640, 0604, 0620, 0602, 0660, 0644 };
    /* The detail says who may do what: readable wins over writable. */
    const char *const says[]
        = { "is readable by its group (mode 640)", "is readable by others (mode 604)",
              "is writable by its group (mode 620)", "is writable by others (mode 602)",
              "is readable by its group (mode 660)", "is readable by others (mode 644)" };
    for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        assert_int_equal(chmod(path, bad_modes[i]), 0);
        /* Even with the right passphrase, and before the passphrase is tried. */
        expect_load(path, PASS, KETEN_ERR_PERMISSIONS);
        assert_non_null(strstr(keten_err_detail(), "chmod 600"));
        if (strstr(keten_err_detail(), says[i]) == NULL) {
            fail_msg("detail \"%s\" lacks \"%s\"", keten_err_detail(), says[i]);
        }
        expect_load(path, "wrong", KETEN_ERR_PERMISSIONS);
        assert_int_equal(keten_identity_file_encrypted(path, &enc), KETEN_ERR_PERMISSIONS);
    }
    assert_int_equal(chmod(path, 0600), 0);
    expect_load(path, "wrong", KETEN_ERR_PASSPHRASE);
    assert_int_not_equal(KETEN_ERR_PERMISSIONS, KETEN_ERR_PASSPHRASE);
    keten_identity *back = NULL;
    assert_int_equal(load(path, PASS, &back), KETEN_OK);
    keten_identity_destroy(&back);
    keten_identity_destroy(&k);
}

static void test_symlink_refused(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX], link_path[PATH_MAX];
    path_in(c, "real.secret", path);
    path_in(c, "link.secret", link_path);
    keten_identity *k = gen("politie-mn", "police", false);
    assert_int_equal(keten_identity_save(k, path, NULL, 0), KETEN_OK);
    assert_int_equal(symlink(path, link_path), 0);
    expect_load(link_path, NULL, KETEN_ERR_PERMISSIONS);
    bool enc;
    assert_int_equal(keten_identity_file_encrypted(link_path, &enc), KETEN_ERR_PERMISSIONS);
    /* The real file opens. */
    keten_identity *back = NULL;
    assert_int_equal(load(path, NULL, &back), KETEN_OK);
    keten_identity_destroy(&back);
    /* Saving through a symlink is refused too, and the target is untouched. */
    char dangling[PATH_MAX], target[PATH_MAX];
    path_in(c, "dangling.secret", dangling);
    path_in(c, "target.secret", target);
    assert_int_equal(symlink(target, dangling), 0);
    assert_int_not_equal(keten_identity_save(k, dangling, NULL, 0), KETEN_OK);
    assert_int_equal(access(target, F_OK), -1);
    path_in(c, "nonexistent", dangling);
    expect_load(dangling, NULL, KETEN_ERR_NOT_FOUND);
    keten_identity_destroy(&k);
}

static void test_save_refuses_existing(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX];
    path_in(c, "node.secret", path);
    keten_identity *k = gen("politie-mn", "police", false);
    keten_identity *other = gen("politie-mn", "police", false);
    assert_int_equal(keten_identity_save(k, path, (const uint8_t *)PASS, PASS_LEN), KETEN_OK);
    uint8_t *before, *after;
    size_t before_len, after_len;
    read_all(path, &before, &before_len);
    assert_int_equal(
        keten_identity_save(other, path, (const uint8_t *)PASS, PASS_LEN), KETEN_ERR_EXISTS);
    assert_int_equal(keten_identity_save(other, path, NULL, 0), KETEN_ERR_EXISTS);
    read_all(path, &after, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    keten_identity *back = NULL;
    assert_int_equal(load(path, PASS, &back), KETEN_OK);
    assert_same_identity(k, back);
    free(before);
    free(after);
    keten_identity_destroy(&back);
    keten_identity_destroy(&k);
    keten_identity_destroy(&other);
}

static void test_file_mode_is_0600(void **state)
{
    ctx *c = *state;
    char enc_path[PATH_MAX], plain_path[PATH_MAX];
    path_in(c, "enc.secret", enc_path);
    path_in(c, "plain.secret", plain_path);
    keten_identity *k = gen("politie-mn", "police", false);
    mode_t old = umask(0);
    keten_err e1 = keten_identity_save(k, enc_path, (const uint8_t *)PASS, PASS_LEN);
    keten_err e2 = keten_identity_save(k, plain_path, NULL, 0);
    umask(old);
    assert_int_equal(e1, KETEN_OK);
    assert_int_equal(e2, KETEN_OK);
    struct stat st;
    assert_int_equal(lstat(enc_path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(lstat(plain_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    keten_identity_destroy(&k);
}

static void test_truncated_files(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX], cut[PATH_MAX];
    path_in(c, "node.secret", path);
    path_in(c, "cut.secret", cut);
    keten_identity *k = gen("politie-mn", "police", false);
    assert_int_equal(keten_identity_save(k, path, (const uint8_t *)PASS, PASS_LEN), KETEN_OK);
    uint8_t *raw;
    size_t len;
    read_all(path, &raw, &len);
    assert_true(len > HEADER_BYTES + 16 + 100);

    /* Within the header: the format says more bytes must follow. */
    const size_t short_lens[] = { 0, 1, 7, 8, 9, 10, 30, 64, 65, 70, HEADER_BYTES + 15 };
    for (size_t i = 0; i < sizeof short_lens / sizeof short_lens[0]; i++) {
        write_raw(cut, raw, short_lens[i]);
        expect_load(cut, PASS, KETEN_ERR_TRUNCATED);
    }
    /* Within the ciphertext: authentication fails. */
    const size_t long_lens[]
        = { HEADER_BYTES + 16, HEADER_BYTES + 40, len / 2 + 20, len - 16, len - 1 };
    for (size_t i = 0; i < sizeof long_lens / sizeof long_lens[0]; i++) {
        write_raw(cut, raw, long_lens[i]);
        expect_load(cut, PASS, KETEN_ERR_PASSPHRASE);
    }
    /* A plain file cut anywhere in its body is truncated. */
    char plain[PATH_MAX];
    path_in(c, "plain.secret", plain);
    assert_int_equal(keten_identity_save(k, plain, NULL, 0), KETEN_OK);
    uint8_t *p;
    size_t plen;
    read_all(plain, &p, &plen);
    for (size_t n = 0; n < plen; n++) {
        write_raw(cut, p, n);
        expect_load(cut, NULL, KETEN_ERR_TRUNCATED);
    }
    free(p);
    free(raw);
    keten_identity_destroy(&k);
}

static void test_flipped_byte_in_encrypted_file(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX], bad[PATH_MAX];
    path_in(c, "node.secret", path);
    path_in(c, "bad.secret", bad);
    keten_identity *k = gen("broker", "broker", true);
    assert_int_equal(keten_identity_save(k, path, (const uint8_t *)PASS, PASS_LEN), KETEN_OK);
    uint8_t *raw;
    size_t len;
    read_all(path, &raw, &len);
    /* Every byte of the ciphertext and tag, one bit each time (each load is a
     * full Argon2id run, so a stride keeps the test short while touching every
     * field: names, each key, the tag). */
    size_t tried = 0;
    for (size_t i = HEADER_BYTES; i < len; i += (i + 16 >= len ? 1 : 7)) {
        raw[i] ^= (uint8_t)(1u << (i % 8));
        write_raw(bad, raw, len);
        raw[i] ^= (uint8_t)(1u << (i % 8));
        expect_load(bad, PASS, KETEN_ERR_PASSPHRASE);
        tried++;
    }
    assert_true(tried > 40);
    /* The salt and the nonce are bound too. */
    const size_t header_positions[] = { 9, 24, 41, 64 };
    for (size_t i = 0; i < sizeof header_positions / sizeof header_positions[0]; i++) {
        raw[header_positions[i]] ^= 0x01;
        write_raw(bad, raw, len);
        raw[header_positions[i]] ^= 0x01;
        expect_load(bad, PASS, KETEN_ERR_PASSPHRASE);
    }
    /* A byte appended after the tag also breaks authentication. */
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, raw, len);
    longer[len] = 0;
    write_raw(bad, longer, len + 1);
    expect_load(bad, PASS, KETEN_ERR_PASSPHRASE);
    /* Untouched, it still opens. */
    write_raw(bad, raw, len);
    keten_identity *back = NULL;
    assert_int_equal(load(bad, PASS, &back), KETEN_OK);
    assert_same_identity(k, back);
    keten_identity_destroy(&back);
    free(longer);
    free(raw);
    keten_identity_destroy(&k);
}

static void test_wrong_magic(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX], bad[PATH_MAX];
    path_in(c, "node.secret", path);
    path_in(c, "bad.secret", bad);
    keten_identity *k = gen("politie-mn", "police", false);
    assert_int_equal(keten_identity_save(k, path, (const uint8_t *)PASS, PASS_LEN), KETEN_OK);
    uint8_t *raw;
    size_t len;
    read_all(path, &raw, &len);
    for (size_t i = 0; i < 8; i++) {
        raw[i] ^= 0x20;
        write_raw(bad, raw, len);
        raw[i] ^= 0x20;
        expect_load(bad, PASS, KETEN_ERR_WRONG_TYPE);
        bool enc;
        assert_int_equal(keten_identity_file_encrypted(bad, &enc), KETEN_ERR_WRONG_TYPE);
    }
    const char *others[] = { "hello, world\n", "-----BEGIN PRIVATE KEY-----\n", "KX", "x" };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        write_raw(bad, (const uint8_t *)others[i], strlen(others[i]));
        expect_load(bad, PASS, KETEN_ERR_WRONG_TYPE);
    }
    /* A prefix of the magic is a cut-off key file, not another kind. */
    write_raw(bad, (const uint8_t *)"KETEN", 5);
    expect_load(bad, PASS, KETEN_ERR_TRUNCATED);
    /* An unknown format byte. */
    raw[8] = 2;
    write_raw(bad, raw, len);
    expect_load(bad, PASS, KETEN_ERR_MALFORMED);
    free(raw);
    keten_identity_destroy(&k);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void test_hostile_kdf_limits(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX], bad[PATH_MAX];
    path_in(c, "node.secret", path);
    path_in(c, "bad.secret", bad);
    keten_identity *k = gen("politie-mn", "police", false);
    assert_int_equal(keten_identity_save(k, path, (const uint8_t *)PASS, PASS_LEN), KETEN_OK);
    uint8_t *raw;
    size_t len;
    read_all(path, &raw, &len);
    uint8_t orig[16];
    memcpy(orig, raw + OPSLIMIT_OFFSET, 16);

    const uint64_t bad_ops[]
        = { 0, (uint64_t)crypto_pwhash_OPSLIMIT_SENSITIVE + 1, 1u << 31, UINT64_MAX };
    for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
        put_be64(raw + OPSLIMIT_OFFSET, bad_ops[i]);
        write_raw(bad, raw, len);
        expect_load(bad, PASS, KETEN_ERR_MALFORMED);
        expect_load(bad, NULL, KETEN_ERR_MALFORMED);
    }
    memcpy(raw + OPSLIMIT_OFFSET, orig, 16);
    const uint64_t bad_mem[] = { 0, crypto_pwhash_MEMLIMIT_MIN - 1,
        (uint64_t)crypto_pwhash_MEMLIMIT_SENSITIVE + 1, 4ull << 40, UINT64_MAX };
    for (size_t i = 0; i < sizeof bad_mem / sizeof bad_mem[0]; i++) {
        put_be64(raw + MEMLIMIT_OFFSET, bad_mem[i]);
        write_raw(bad, raw, len);
        expect_load(bad, PASS, KETEN_ERR_MALFORMED);
    }
    /* In-range limits other than the ones used: the key differs, so
     * authentication fails (the limits cannot be lowered unseen). */
    memcpy(raw + OPSLIMIT_OFFSET, orig, 16);
    put_be64(raw + OPSLIMIT_OFFSET, crypto_pwhash_OPSLIMIT_MIN);
    write_raw(bad, raw, len);
    expect_load(bad, PASS, KETEN_ERR_PASSPHRASE);
    /* The limits stored are the interactive ones under KETEN_TEST_FAST_KDF=1. */
    memcpy(raw + OPSLIMIT_OFFSET, orig, 16);
    const char *fast = getenv("KETEN_TEST_FAST_KDF");
    if (fast != NULL && strcmp(fast, "1") == 0) {
        uint8_t want[16];
        put_be64(want, crypto_pwhash_OPSLIMIT_INTERACTIVE);
        put_be64(want + 8, crypto_pwhash_MEMLIMIT_INTERACTIVE);
        assert_memory_equal(orig, want, 16);
    }
    free(raw);
    keten_identity_destroy(&k);
}

/* Plain files let us reach the body parser directly. */
static void test_plain_body_tampered(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX], bad[PATH_MAX];
    path_in(c, "node.secret", path);
    path_in(c, "bad.secret", bad);
    keten_identity *k = gen("politie-mn", "police", false);
    assert_int_equal(keten_identity_save(k, path, NULL, 0), KETEN_OK);
    uint8_t *raw;
    size_t len;
    read_all(path, &raw, &len);
    const size_t body = 9;
    const size_t id_len_at = body + 2;
    assert_int_equal(raw[body], 1);
    assert_int_equal(raw[id_len_at], strlen("politie-mn"));
    size_t role_len_at = id_len_at + 1 + strlen("politie-mn");
    size_t org_len_at = role_len_at + 1 + strlen("police");
    size_t sign_at = org_len_at + 1 + strlen("Gemeente Diemen");
    assert_int_equal(len, sign_at + 64 + 32 + 32);

    uint8_t *m = malloc(len + 1);
    assert_non_null(m);
    struct {
        size_t at;
        uint8_t value;
    } cases[] = {
        { body, 2 }, /* body version */
        { body + 1, 0x02 }, /* unknown flag */
        { body + 1, 0x01 }, /* claims a log key that is not there */
        { id_len_at, 0 }, /* empty id */
        { id_len_at, 33 }, /* id too long */
        { id_len_at + 1, 'P' }, /* id not a name */
        { id_len_at + 1, 0 }, /* NUL in the id */
        { role_len_at + 1, ' ' }, /* role not a name */
        { org_len_at + 1, '\n' }, /* control character in org */
        { org_len_at, 0 }, /* empty org */
        { sign_at + 40, 0 }, /* public half of the signing key altered */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(m, raw, len);
        if (m[cases[i].at] == cases[i].value) {
            m[cases[i].at] ^= 0xff;
        } else {
            m[cases[i].at] = cases[i].value;
        }
        write_raw(bad, m, len);
        keten_identity *x = NULL;
        keten_err e = load(bad, NULL, &x);
        /* Flags 0x01 makes the parser look for 64 more bytes. */
        keten_err want = i == 2 ? KETEN_ERR_TRUNCATED : KETEN_ERR_MALFORMED;
        if (e != want) {
            print_error("case %zu: %s (%s)\n", i, keten_err_str(e), keten_err_detail());
        }
        assert_int_equal(e, want);
        assert_null(x);
    }
    /* A trailing byte. */
    memcpy(m, raw, len);
    m[len] = 0;
    write_raw(bad, m, len + 1);
    expect_load(bad, NULL, KETEN_ERR_MALFORMED);
    /* An oversized file is refused before it is read. */
    uint8_t *big = calloc(1, KETEN_KEYFILE_MAX + 1);
    assert_non_null(big);
    memcpy(big, raw, len);
    write_raw(bad, big, KETEN_KEYFILE_MAX + 1);
    expect_load(bad, NULL, KETEN_ERR_TOO_LARGE);
    free(big);
    free(m);
    free(raw);
    keten_identity_destroy(&k);
}

/* ---- enrollment request ------------------------------------------------ */

static void fill_request(Keten__NodeRequest *r, keten_identity *k, const char *network)
{
    r->network = (char *)network;
    r->id = k->id;
    r->role = k->role;
    r->org = k->org;
    r->sign_pk.data = k->sign_pk;
    r->sign_pk.len = 32;
    r->enc_pk.data = k->enc_pk;
    r->enc_pk.len = 32;
    r->transport_pk.data = k->transport_pk;
    r->transport_pk.len = 32;
    if (k->has_log_key) {
        r->log_pk.data = k->log_pk;
        r->log_pk.len = 32;
    }
    r->created_at = 1767225600000ull;
}

/* A SignedRequest over raw request bytes, signed by sk (and log_sk when not
 * NULL), packed into a malloc()ed buffer. */
static uint8_t *sign_raw(
    const uint8_t *req, size_t req_len, const uint8_t *sk, const uint8_t *log_sk, size_t *out_len)
{
    uint8_t *msg = malloc(LABEL_LEN + req_len);
    assert_non_null(msg);
    memcpy(msg, KETEN_LABEL_REQUEST, LABEL_LEN);
    memcpy(msg + LABEL_LEN, req, req_len);
    uint8_t sig[64], log_sig[64];
    assert_int_equal(crypto_sign_detached(sig, NULL, msg, LABEL_LEN + req_len, sk), 0);
    Keten__SignedRequest s = KETEN__SIGNED_REQUEST__INIT;
    s.request.data = (uint8_t *)req;
    s.request.len = req_len;
    s.signature.data = sig;
    s.signature.len = 64;
    if (log_sk != NULL) {
        assert_int_equal(crypto_sign_detached(log_sig, NULL, msg, LABEL_LEN + req_len, log_sk), 0);
        s.log_signature.data = log_sig;
        s.log_signature.len = 64;
    }
    uint8_t *out;
    assert_int_equal(keten_pb_pack(&s.base, &out, out_len), KETEN_OK);
    free(msg);
    return out;
}

static uint8_t *sign_request(
    const Keten__NodeRequest *r, const uint8_t *sk, const uint8_t *log_sk, size_t *out_len)
{
    uint8_t *req;
    size_t req_len;
    assert_int_equal(keten_pb_pack(&r->base, &req, &req_len), KETEN_OK);
    uint8_t *out = sign_raw(req, req_len, sk, log_sk, out_len);
    free(req);
    return out;
}

static keten_err verify(const uint8_t *buf, size_t len)
{
    Keten__NodeRequest *r = (Keten__NodeRequest *)(uintptr_t)1;
    keten_err e = keten_identity_request_verify(buf, len, &r);
    if (e == KETEN_OK) {
        assert_non_null(r);
        keten_pb_free((ProtobufCMessage **)(void *)&r);
    } else {
        assert_null(r);
    }
    return e;
}

static void expect_verify(const uint8_t *buf, size_t len, keten_err want)
{
    keten_err e = verify(buf, len);
    if (e != want) {
        print_error(
            "got %s (%s), want %s\n", keten_err_str(e), keten_err_detail(), keten_err_str(want));
    }
    assert_int_equal(e, want);
}

static void request_roundtrip(const char *id, const char *role, bool log_key)
{
    keten_identity *k = gen(id, role, log_key);
    uint8_t *buf;
    size_t len;
    assert_int_equal(keten_identity_request(k, "testnet", 1767225600123ull, &buf, &len), KETEN_OK);
    Keten__NodeRequest *r = NULL;
    assert_int_equal(keten_identity_request_verify(buf, len, &r), KETEN_OK);
    assert_non_null(r);
    assert_string_equal(r->network, "testnet");
    assert_string_equal(r->id, id);
    assert_string_equal(r->role, role);
    assert_string_equal(r->org, "Gemeente Diemen");
    assert_int_equal(r->sign_pk.len, 32);
    assert_memory_equal(r->sign_pk.data, k->sign_pk, 32);
    assert_memory_equal(r->enc_pk.data, k->enc_pk, 32);
    assert_memory_equal(r->transport_pk.data, k->transport_pk, 32);
    assert_int_equal(r->created_at, 1767225600123ull);
    if (log_key) {
        assert_int_equal(r->log_pk.len, 32);
        assert_memory_equal(r->log_pk.data, k->log_pk, 32);
    } else {
        assert_int_equal(r->log_pk.len, 0);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&r);

    /* The signature really is Ed25519 by sign_pk over label || request. */
    Keten__SignedRequest *s = keten__signed_request__unpack(NULL, len, buf);
    assert_non_null(s);
    uint8_t *msg = malloc(LABEL_LEN + s->request.len);
    assert_non_null(msg);
    memcpy(msg, KETEN_LABEL_REQUEST, LABEL_LEN);
    memcpy(msg + LABEL_LEN, s->request.data, s->request.len);
    assert_int_equal(s->signature.len, 64);
    assert_int_equal(
        crypto_sign_verify_detached(s->signature.data, msg, LABEL_LEN + s->request.len, k->sign_pk),
        0);
    if (log_key) {
        assert_int_equal(s->log_signature.len, 64);
        assert_int_equal(crypto_sign_verify_detached(
                             s->log_signature.data, msg, LABEL_LEN + s->request.len, k->log_pk),
            0);
    } else {
        assert_int_equal(s->log_signature.len, 0);
    }
    free(msg);
    keten__signed_request__free_unpacked(s, NULL);

    /* network may be empty (NULL means unknown). */
    free(buf);
    assert_int_equal(keten_identity_request(k, NULL, 1, &buf, &len), KETEN_OK);
    expect_verify(buf, len, KETEN_OK);
    free(buf);
    keten_identity_destroy(&k);
}

static void test_request_roundtrip_node(void **state)
{
    (void)state;
    request_roundtrip("gemeente-diemen", "municipality", false);
}

static void test_request_roundtrip_broker(void **state)
{
    (void)state;
    request_roundtrip("broker", "broker", true);
}

/* Unpack a SignedRequest for editing; the caller repacks and frees. */
static Keten__SignedRequest *unpack_signed(const uint8_t *buf, size_t len)
{
    Keten__SignedRequest *s = keten__signed_request__unpack(NULL, len, buf);
    assert_non_null(s);
    return s;
}

static uint8_t *repack(const Keten__SignedRequest *s, size_t *len)
{
    uint8_t *out;
    assert_int_equal(keten_pb_pack(&s->base, &out, len), KETEN_OK);
    return out;
}

static void test_request_tampered(void **state)
{
    (void)state;
    keten_identity *k = gen("broker", "broker", true);
    uint8_t *buf;
    size_t len;
    assert_int_equal(keten_identity_request(k, "testnet", 1767225600000ull, &buf, &len), KETEN_OK);
    expect_verify(buf, len, KETEN_OK);

    /* A flipped byte in the request bytes (the org, and the network: still
     * well-formed, so only the signature can catch it). */
    Keten__SignedRequest *s = unpack_signed(buf, len);
    const char *targets[] = { "Gemeente Diemen", "testnet" };
    for (size_t t = 0; t < 2; t++) {
        uint8_t *at = memmem(s->request.data, s->request.len, targets[t], strlen(targets[t]));
        assert_non_null(at);
        at[1] ^= 0x01;
        size_t l2;
        uint8_t *b2 = repack(s, &l2);
        expect_verify(b2, l2, KETEN_ERR_BAD_SIGNATURE);
        free(b2);
        at[1] ^= 0x01;
    }
    /* A flipped bit inside a key (still 32 bytes, still well-formed). */
    uint8_t *at = memmem(s->request.data, s->request.len, k->transport_pk, 32);
    assert_non_null(at);
    at[5] ^= 0x80;
    size_t l2;
    uint8_t *b2 = repack(s, &l2);
    expect_verify(b2, l2, KETEN_ERR_BAD_SIGNATURE);
    free(b2);
    at[5] ^= 0x80;

    /* A flipped byte in the signature and in the log signature. */
    for (size_t i = 0; i < 64; i += 9) {
        s->signature.data[i] ^= 0x04;
        b2 = repack(s, &l2);
        expect_verify(b2, l2, KETEN_ERR_BAD_SIGNATURE);
        free(b2);
        s->signature.data[i] ^= 0x04;
        s->log_signature.data[i] ^= 0x04;
        b2 = repack(s, &l2);
        expect_verify(b2, l2, KETEN_ERR_BAD_SIGNATURE);
        free(b2);
        s->log_signature.data[i] ^= 0x04;
    }
    /* Signatures cut short or missing. */
    s->signature.len = 63;
    b2 = repack(s, &l2);
    expect_verify(b2, l2, KETEN_ERR_BAD_SIGNATURE);
    free(b2);
    s->signature.len = 0;
    b2 = repack(s, &l2);
    expect_verify(b2, l2, KETEN_ERR_BAD_SIGNATURE);
    free(b2);
    s->signature.len = 64;
    /* The broker's request without its log signature. */
    size_t saved = s->log_signature.len;
    s->log_signature.len = 0;
    b2 = repack(s, &l2);
    expect_verify(b2, l2, KETEN_ERR_BAD_SIGNATURE);
    free(b2);
    s->log_signature.len = saved;
    /* The two signatures swapped. */
    uint8_t tmp[64];
    memcpy(tmp, s->signature.data, 64);
    memcpy(s->signature.data, s->log_signature.data, 64);
    memcpy(s->log_signature.data, tmp, 64);
    b2 = repack(s, &l2);
    expect_verify(b2, l2, KETEN_ERR_BAD_SIGNATURE);
    free(b2);
    keten__signed_request__free_unpacked(s, NULL);

    /* Garbage and truncations of the whole thing. */
    expect_verify((const uint8_t *)"\xff\xff\xff", 3, KETEN_ERR_MALFORMED);
    for (size_t n = 1; n < len; n += 13) {
        keten_err e = verify(buf, n);
        assert_int_not_equal(e, KETEN_OK);
    }
    expect_verify(buf, 0, KETEN_ERR_BAD_NAME); /* an empty SignedRequest names no one */
    free(buf);
    keten_identity_destroy(&k);
}

static void test_request_signed_by_other_key(void **state)
{
    (void)state;
    keten_identity *k = gen("politie-mn", "police", false);
    keten_identity *mallory = gen("mallory", "police", false);
    Keten__NodeRequest r = KETEN__NODE_REQUEST__INIT;
    fill_request(&r, k, "testnet");
    size_t len;
    /* Signed properly, it verifies: the twin below differs only in the key. */
    uint8_t *good = sign_request(&r, k->sign_sk, NULL, &len);
    expect_verify(good, len, KETEN_OK);
    free(good);
    uint8_t *forged = sign_request(&r, mallory->sign_sk, NULL, &len);
    expect_verify(forged, len, KETEN_ERR_BAD_SIGNATURE);
    free(forged);

    /* A broker request whose log signature is by another key. */
    keten_identity *b = gen("broker", "broker", true);
    Keten__NodeRequest rb = KETEN__NODE_REQUEST__INIT;
    fill_request(&rb, b, "testnet");
    good = sign_request(&rb, b->sign_sk, b->log_sk, &len);
    expect_verify(good, len, KETEN_OK);
    free(good);
    forged = sign_request(&rb, b->sign_sk, mallory->sign_sk, &len);
    expect_verify(forged, len, KETEN_ERR_BAD_SIGNATURE);
    free(forged);
    forged = sign_request(&rb, b->log_sk, b->log_sk, &len);
    expect_verify(forged, len, KETEN_ERR_BAD_SIGNATURE);
    free(forged);
    keten_identity_destroy(&k);
    keten_identity_destroy(&b);
    keten_identity_destroy(&mallory);
}

static void test_request_log_key_rules(void **state)
{
    (void)state;
    keten_identity *k = gen("politie-mn", "police", false);
    keten_identity *b = gen("broker", "broker", true);
    size_t len;
    uint8_t *buf;

    /* A node request carrying a log key, properly signed by both keys. */
    Keten__NodeRequest r = KETEN__NODE_REQUEST__INIT;
    fill_request(&r, k, "testnet");
    r.log_pk.data = b->log_pk;
    r.log_pk.len = 32;
    buf = sign_request(&r, k->sign_sk, b->log_sk, &len);
    expect_verify(buf, len, KETEN_ERR_MALFORMED);
    free(buf);
    buf = sign_request(&r, k->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_MALFORMED);
    free(buf);
    /* A node request with a log signature but no log key. */
    r.log_pk.len = 0;
    r.log_pk.data = NULL;
    buf = sign_request(&r, k->sign_sk, k->sign_sk, &len);
    expect_verify(buf, len, KETEN_ERR_MALFORMED);
    free(buf);

    /* A broker request without a log key, or with a short one. */
    Keten__NodeRequest rb = KETEN__NODE_REQUEST__INIT;
    fill_request(&rb, b, "testnet");
    rb.log_pk.len = 0;
    rb.log_pk.data = NULL;
    buf = sign_request(&rb, b->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_MALFORMED);
    free(buf);
    rb.log_pk.data = b->log_pk;
    rb.log_pk.len = 31;
    buf = sign_request(&rb, b->sign_sk, b->log_sk, &len);
    expect_verify(buf, len, KETEN_ERR_MALFORMED);
    free(buf);
    /* A broker request signed only with its signing key. */
    rb.log_pk.len = 32;
    buf = sign_request(&rb, b->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_BAD_SIGNATURE);
    free(buf);

    /* keten_identity_request refuses an identity whose role and log key
     * disagree (such a file can only be made by hand). */
    uint8_t *out = NULL;
    size_t out_len = 0;
    b->has_log_key = false;
    assert_int_equal(keten_identity_request(b, "testnet", 1, &out, &out_len), KETEN_ERR_INVALID);
    assert_null(out);
    b->has_log_key = true;
    keten_identity_destroy(&k);
    keten_identity_destroy(&b);
}

static void test_request_key_checks(void **state)
{
    (void)state;
    keten_identity *k = gen("politie-mn", "police", false);
    keten_identity *b = gen("broker", "broker", true);
    size_t len;
    uint8_t *buf;
    Keten__NodeRequest r = KETEN__NODE_REQUEST__INIT;

    /* Key lengths. */
    const size_t bad_lens[] = { 0, 31, 33 };
    for (size_t i = 0; i < 3; i++) {
        uint8_t long_key[33] = { 0 };
        for (int f = 0; f < 3; f++) {
            fill_request(&r, k, "testnet");
            ProtobufCBinaryData *field = f == 0 ? &r.sign_pk : f == 1 ? &r.enc_pk : &r.transport_pk;
            memcpy(long_key, field->data, 32);
            long_key[32] = 0x55;
            field->data = long_key;
            field->len = bad_lens[i];
            buf = sign_request(&r, k->sign_sk, NULL, &len);
            expect_verify(buf, len, KETEN_ERR_MALFORMED);
            free(buf);
        }
    }
    /* One key used twice: encryption = transport, signing = log. */
    fill_request(&r, k, "testnet");
    r.transport_pk.data = k->enc_pk;
    buf = sign_request(&r, k->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_DUPLICATE_KEY);
    free(buf);
    Keten__NodeRequest rb = KETEN__NODE_REQUEST__INIT;
    fill_request(&rb, b, "testnet");
    rb.log_pk.data = b->sign_pk;
    buf = sign_request(&rb, b->sign_sk, b->sign_sk, &len);
    expect_verify(buf, len, KETEN_ERR_DUPLICATE_KEY);
    free(buf);
    /* A small-order encryption key (all zeros) would make every sealed key
     * readable by anyone. */
    uint8_t zero[32] = { 0 };
    fill_request(&r, k, "testnet");
    r.enc_pk.data = zero;
    buf = sign_request(&r, k->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_INVALID);
    free(buf);
    keten_identity_destroy(&k);
    keten_identity_destroy(&b);
}

static void test_request_name_checks(void **state)
{
    (void)state;
    keten_identity *k = gen("politie-mn", "police", false);
    size_t len;
    uint8_t *buf;
    Keten__NodeRequest r = KETEN__NODE_REQUEST__INIT;
    const char *bad_names[]
        = { "", "Politie", "politie mn", "politie_mn", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        fill_request(&r, k, "testnet");
        r.id = (char *)bad_names[i];
        buf = sign_request(&r, k->sign_sk, NULL, &len);
        expect_verify(buf, len, KETEN_ERR_BAD_NAME);
        free(buf);
        fill_request(&r, k, "testnet");
        r.role = (char *)bad_names[i];
        buf = sign_request(&r, k->sign_sk, NULL, &len);
        expect_verify(buf, len, KETEN_ERR_BAD_NAME);
        free(buf);
    }
    char long_org[KETEN_ORG_MAX + 2];
    memset(long_org, 'o', sizeof long_org - 1);
    long_org[sizeof long_org - 1] = '\0';
    const char *bad_orgs[] = { "", "Politie\r\nMidden", "\x1b]0;pwned\x07", long_org };
    for (size_t i = 0; i < sizeof bad_orgs / sizeof bad_orgs[0]; i++) {
        fill_request(&r, k, "testnet");
        r.org = (char *)bad_orgs[i];
        buf = sign_request(&r, k->sign_sk, NULL, &len);
        expect_verify(buf, len, KETEN_ERR_INVALID);
        free(buf);
    }
    fill_request(&r, k, "test\nnet");
    buf = sign_request(&r, k->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_INVALID);
    free(buf);
    keten_identity_destroy(&k);
}

static void test_request_not_canonical(void **state)
{
    (void)state;
    keten_identity *k = gen("politie-mn", "police", false);
    Keten__NodeRequest r = KETEN__NODE_REQUEST__INIT;
    fill_request(&r, k, "testnet");
    uint8_t *req;
    size_t req_len;
    assert_int_equal(keten_pb_pack(&r.base, &req, &req_len), KETEN_OK);
    uint8_t *ext = malloc(req_len + 16);
    assert_non_null(ext);
    size_t len;
    uint8_t *buf;

    /* The canonical bytes, signed by hand, verify. */
    buf = sign_raw(req, req_len, k->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_OK);
    free(buf);

    /* An unknown field (number 15, varint 1) appended, properly re-signed. */
    memcpy(ext, req, req_len);
    ext[req_len] = 0x78;
    ext[req_len + 1] = 0x01;
    buf = sign_raw(ext, req_len + 2, k->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_NOT_CANONICAL);
    free(buf);

    /* A second id field (field 2) appended: protobuf would take the last. */
    memcpy(ext, req, req_len);
    memcpy(ext + req_len, "\x12\x05zzzzz", 7);
    buf = sign_raw(ext, req_len + 7, k->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_NOT_CANONICAL);
    free(buf);

    /* created_at (field 9) written a second time, as 0: a default value
     * written out, and a duplicate that a parser resolves by taking the last. */
    memcpy(ext, req, req_len);
    memcpy(ext + req_len, "\x48\x00", 2);
    buf = sign_raw(ext, req_len + 2, k->sign_sk, NULL, &len);
    expect_verify(buf, len, KETEN_ERR_NOT_CANONICAL);
    free(buf);

    /* An unknown field in the outer SignedRequest. */
    buf = sign_raw(req, req_len, k->sign_sk, NULL, &len);
    uint8_t *outer = malloc(len + 2);
    assert_non_null(outer);
    memcpy(outer, buf, len);
    outer[len] = 0x78;
    outer[len + 1] = 0x01;
    expect_verify(outer, len + 2, KETEN_ERR_NOT_CANONICAL);
    free(outer);
    free(buf);
    free(ext);
    free(req);
    keten_identity_destroy(&k);
}

static void test_request_oversize(void **state)
{
    (void)state;
    keten_identity *k = gen("politie-mn", "police", false);
    uint8_t *good;
    size_t good_len;
    assert_int_equal(keten_identity_request(k, "testnet", 1, &good, &good_len), KETEN_OK);
    /* The valid request followed by padding past the cap. */
    size_t n = KETEN_REQUEST_MAX + 1;
    uint8_t *big = calloc(1, n);
    assert_non_null(big);
    memcpy(big, good, good_len);
    expect_verify(big, n, KETEN_ERR_TOO_LARGE);
    /* A properly signed request whose network name makes it too large. */
    char *net = malloc(KETEN_REQUEST_MAX + 1);
    assert_non_null(net);
    memset(net, 'n', KETEN_REQUEST_MAX);
    net[KETEN_REQUEST_MAX] = '\0';
    Keten__NodeRequest r = KETEN__NODE_REQUEST__INIT;
    fill_request(&r, k, net);
    size_t len;
    uint8_t *buf = sign_request(&r, k->sign_sk, NULL, &len);
    assert_true(len > KETEN_REQUEST_MAX);
    expect_verify(buf, len, KETEN_ERR_TOO_LARGE);
    free(buf);
    free(net);
    free(big);
    free(good);
    keten_identity_destroy(&k);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_keys_are_real),
        cmocka_unit_test(test_generate_rejects_bad_names),
        cmocka_unit_test_setup_teardown(test_roundtrip_encrypted_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_encrypted_broker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_and_missing_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_permissions_refused_before_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_refuses_existing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_mode_is_0600, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_in_encrypted_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_kdf_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_body_tampered, setup, teardown),
        cmocka_unit_test(test_request_roundtrip_node),
        cmocka_unit_test(test_request_roundtrip_broker),
        cmocka_unit_test(test_request_tampered),
        cmocka_unit_test(test_request_signed_by_other_key),
        cmocka_unit_test(test_request_log_key_rules),
        cmocka_unit_test(test_request_key_checks),
        cmocka_unit_test(test_request_name_checks),
        cmocka_unit_test(test_request_not_canonical),
        cmocka_unit_test(test_request_oversize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
