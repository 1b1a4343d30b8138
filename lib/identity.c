#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pb.h"
#include "util.h"

/* Key file layout (identity.h). */
#define KEYFILE_MAGIC "KETENSK1"
#define KEYFILE_MAGIC_BYTES 8
#define KEYFILE_FORMAT_PLAIN 0
#define KEYFILE_FORMAT_ENCRYPTED 1
#define KEYFILE_PREFIX_BYTES (KEYFILE_MAGIC_BYTES + 1)
#define KEYFILE_SALT_BYTES crypto_pwhash_SALTBYTES /* 16 */
#define KEYFILE_LIMIT_BYTES 8
#define KEYFILE_HEADER_BYTES                                                                       \
    (KEYFILE_PREFIX_BYTES + KEYFILE_SALT_BYTES + 2 * KEYFILE_LIMIT_BYTES + KETEN_NONCE_BYTES)
#define KEYFILE_KEY_BYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define KEYFILE_BODY_VERSION 1
#define KEYFILE_FLAG_LOG_KEY 0x01u
/* version, flags, three length bytes, the three keys every identity has. */
#define KEYFILE_BODY_FIXED_BYTES                                                                   \
    (5 + KETEN_SIGN_SK_BYTES + KETEN_ENC_SK_BYTES + KETEN_CURVE_KEY_BYTES)
#define KEYFILE_BODY_MAX                                                                           \
    (KEYFILE_BODY_FIXED_BYTES + 2 * KETEN_NAME_MAX + KETEN_ORG_MAX + KETEN_SIGN_SK_BYTES)

/* How much of a file check_kind() reads to tell what it is. */
#define KIND_PEEK_BYTES 64

#define ROLE_BROKER "broker"
#define SHOWN_NAME_MAX 48 /* how much of a refused name an error line repeats */

_Static_assert(KEYFILE_HEADER_BYTES == 65, "key file header layout");
_Static_assert(KETEN_ORG_MAX <= 255 && KETEN_NAME_MAX <= 255, "lengths are one byte");
_Static_assert(KEYFILE_KEY_BYTES == 32, "XChaCha20-Poly1305 key size");

static keten_err ensure_sodium(void)
{
    if (sodium_init() < 0) {
        return keten_err_set(KETEN_ERR_CRYPTO, "libsodium could not be initialised");
    }
    return KETEN_OK;
}

/* A printable copy of an untrusted name for an error line. */
static void shown_name(const char *s, char out[static SHOWN_NAME_MAX + 4])
{
    size_t i = 0;
    for (; s[i] != '\0' && i < SHOWN_NAME_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

/* Organisation names: 1..KETEN_ORG_MAX bytes, no control characters. */
static bool org_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > KETEN_ORG_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool has_control_chars(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

static keten_err check_names(const char *id, const char *role, const char *org)
{
    char shown[SHOWN_NAME_MAX + 4];
    if (!keten_name_valid(id)) {
        shown_name(id, shown);
        return keten_err_set(KETEN_ERR_BAD_NAME,
            "node id '%s' is not valid: use 1 to %d characters of a-z, 0-9 and -", shown,
            KETEN_NAME_MAX);
    }
    if (!keten_name_valid(role)) {
        shown_name(role, shown);
        return keten_err_set(KETEN_ERR_BAD_NAME,
            "role '%s' is not valid: use 1 to %d characters of a-z, 0-9 and -", shown,
            KETEN_NAME_MAX);
    }
    if (!org_valid(org)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "organisation name of %zu bytes is not valid: use 1 to %d bytes without control "
            "characters",
            strlen(org), KETEN_ORG_MAX);
    }
    return KETEN_OK;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static keten_identity *identity_alloc(void)
{
    keten_identity *self = sodium_malloc(sizeof *self);
    if (self != NULL) {
        memset(self, 0, sizeof *self);
    }
    return self;
}

void keten_identity_destroy(keten_identity **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    sodium_memzero(*self_p, sizeof **self_p);
    sodium_free(*self_p);
    *self_p = NULL;
}

keten_err keten_identity_generate(
    const char *id, const char *role, const char *org, bool with_log_key, keten_identity **out)
{
    *out = NULL;
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    if (id == NULL || role == NULL || org == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "an identity needs an id, a role and an org");
    }
    e = check_names(id, role, org);
    if (e != KETEN_OK) {
        return e;
    }
    bool broker = strcmp(role, ROLE_BROKER) == 0;
    if (broker != with_log_key) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s: the broker, and only the broker, has a log key (role '%s', log key %s)", id, role,
            with_log_key ? "requested" : "not requested");
    }
    keten_identity *self = identity_alloc();
    if (self == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "no secure memory for the keys of %s", id);
    }
    memcpy(self->id, id, strlen(id) + 1);
    memcpy(self->role, role, strlen(role) + 1);
    memcpy(self->org, org, strlen(org) + 1);
    if (crypto_sign_keypair(self->sign_pk, self->sign_sk) != 0
        || crypto_box_keypair(self->enc_pk, self->enc_sk) != 0
        || crypto_box_keypair(self->transport_pk, self->transport_sk) != 0) {
        keten_identity_destroy(&self);
        return keten_err_set(KETEN_ERR_CRYPTO, "key generation failed for %s", id);
    }
    if (with_log_key) {
        if (crypto_sign_keypair(self->log_pk, self->log_sk) != 0) {
            keten_identity_destroy(&self);
            return keten_err_set(KETEN_ERR_CRYPTO, "log key generation failed for %s", id);
        }
        self->has_log_key = true;
    }
    *out = self;
    return KETEN_OK;
}

/* ---- key file ---------------------------------------------------------- */

static size_t body_len(const keten_identity *self)
{
    return KEYFILE_BODY_FIXED_BYTES + strlen(self->id) + strlen(self->role) + strlen(self->org)
        + (self->has_log_key ? KETEN_SIGN_SK_BYTES : 0);
}

/* Write the body into b, which has body_len(self) bytes. */
static void body_encode(const keten_identity *self, uint8_t *b)
{
    size_t idl = strlen(self->id);
    size_t rl = strlen(self->role);
    size_t ol = strlen(self->org);
    *b++ = KEYFILE_BODY_VERSION;
    *b++ = self->has_log_key ? KEYFILE_FLAG_LOG_KEY : 0;
    *b++ = (uint8_t)idl;
    memcpy(b, self->id, idl);
    b += idl;
    *b++ = (uint8_t)rl;
    memcpy(b, self->role, rl);
    b += rl;
    *b++ = (uint8_t)ol;
    memcpy(b, self->org, ol);
    b += ol;
    memcpy(b, self->sign_sk, KETEN_SIGN_SK_BYTES);
    b += KETEN_SIGN_SK_BYTES;
    memcpy(b, self->enc_sk, KETEN_ENC_SK_BYTES);
    b += KETEN_ENC_SK_BYTES;
    memcpy(b, self->transport_sk, KETEN_CURVE_KEY_BYTES);
    b += KETEN_CURVE_KEY_BYTES;
    if (self->has_log_key) {
        memcpy(b, self->log_sk, KETEN_SIGN_SK_BYTES);
    }
}

/* Argon2id limits for a new key file: moderate; with the test hook
 * KETEN_TEST_FAST_KDF=1 (only in a build with -Dtest_hooks=true)
 * interactive. */
static void kdf_limits(uint64_t *ops, uint64_t *mem)
{
#ifdef KETEN_TEST_HOOKS
    const char *fast = getenv("KETEN_TEST_FAST_KDF");
    if (fast != NULL && strcmp(fast, "1") == 0) {
        *ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
        *mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
        return;
    }
#endif
    *ops = crypto_pwhash_OPSLIMIT_MODERATE;
    *mem = crypto_pwhash_MEMLIMIT_MODERATE;
}

/* Argon2id(pass, salt) into key (KEYFILE_KEY_BYTES of sodium_malloc memory). */
static keten_err derive_key(const char *path, const uint8_t *pass, size_t passlen,
    const uint8_t *salt, uint64_t ops, uint64_t mem, uint8_t *key)
{
    if (crypto_pwhash(key, KEYFILE_KEY_BYTES, (const char *)pass, passlen, salt,
            (unsigned long long)ops, (size_t)mem, crypto_pwhash_ALG_ARGON2ID13)
        != 0) {
        return keten_err_set(KETEN_ERR_NOMEM,
            "Argon2id for %s failed: not enough memory for %llu KiB", path,
            (unsigned long long)(mem / 1024u));
    }
    return KETEN_OK;
}

keten_err keten_identity_save(
    const keten_identity *self, const char *path, const uint8_t *pass, size_t passlen)
{
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    if (self == NULL || path == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "saving an identity needs the keys and a path");
    }
    if (pass != NULL && passlen == 0) {
        return keten_err_set(KETEN_ERR_INVALID,
            "an empty passphrase for %s is refused; give one, or write the file unencrypted", path);
    }
    e = check_names(self->id, self->role, self->org);
    if (e != KETEN_OK) {
        return e;
    }
    size_t blen = body_len(self);
    size_t flen = pass != NULL ? KEYFILE_HEADER_BYTES + blen + KETEN_AEAD_TAG_BYTES
                               : KEYFILE_PREFIX_BYTES + blen;
    uint8_t *file = sodium_malloc(flen);
    uint8_t *body = sodium_malloc(blen);
    uint8_t *key = sodium_malloc(KEYFILE_KEY_BYTES);
    if (file == NULL || body == NULL || key == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "no secure memory to write %s", path);
        goto out;
    }
    memcpy(file, KEYFILE_MAGIC, KEYFILE_MAGIC_BYTES);
    body_encode(self, body);
    if (pass == NULL) {
        file[KEYFILE_MAGIC_BYTES] = KEYFILE_FORMAT_PLAIN;
        memcpy(file + KEYFILE_PREFIX_BYTES, body, blen);
    } else {
        uint64_t ops, mem;
        kdf_limits(&ops, &mem);
        uint8_t *p = file + KEYFILE_MAGIC_BYTES;
        *p++ = KEYFILE_FORMAT_ENCRYPTED;
        const uint8_t *salt = p;
        randombytes_buf(p, KEYFILE_SALT_BYTES);
        p += KEYFILE_SALT_BYTES;
        put_be64(p, ops);
        p += KEYFILE_LIMIT_BYTES;
        put_be64(p, mem);
        p += KEYFILE_LIMIT_BYTES;
        const uint8_t *nonce = p;
        randombytes_buf(p, KETEN_NONCE_BYTES);
        p += KETEN_NONCE_BYTES;
        e = derive_key(path, pass, passlen, salt, ops, mem, key);
        if (e != KETEN_OK) {
            goto out;
        }
        unsigned long long clen = 0;
        if (crypto_aead_xchacha20poly1305_ietf_encrypt(
                p, &clen, body, blen, file, KEYFILE_HEADER_BYTES, NULL, nonce, key)
                != 0
            || clen != blen + KETEN_AEAD_TAG_BYTES) {
            e = keten_err_set(KETEN_ERR_CRYPTO, "encrypting %s failed", path);
            goto out;
        }
    }
    e = keten_file_write(path, file, flen, 0600, true);
out:
    if (file != NULL) {
        sodium_memzero(file, flen);
        sodium_free(file);
    }
    if (body != NULL) {
        sodium_memzero(body, blen);
        sodium_free(body);
    }
    if (key != NULL) {
        sodium_memzero(key, KEYFILE_KEY_BYTES);
        sodium_free(key);
    }
    return e;
}

/* Magic and format byte. A prefix of the magic that ends early is a
 * truncated key file; anything else is another kind of file. */
static keten_err check_prefix(const char *path, const uint8_t *buf, size_t len, uint8_t *format)
{
    size_t n = len < KEYFILE_MAGIC_BYTES ? len : KEYFILE_MAGIC_BYTES;
    if (memcmp(buf, KEYFILE_MAGIC, n) != 0) {
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is not a keten secret key file (no %s magic); check the path", path, KEYFILE_MAGIC);
    }
    if (len < KEYFILE_PREFIX_BYTES) {
        return keten_err_set(KETEN_ERR_TRUNCATED,
            "%s is truncated (%zu bytes); restore the key file from a backup", path, len);
    }
    *format = buf[KEYFILE_MAGIC_BYTES];
    if (*format != KEYFILE_FORMAT_PLAIN && *format != KEYFILE_FORMAT_ENCRYPTED) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s has unknown key file format %u; it was written by another version or altered", path,
            (unsigned)*format);
    }
    return KETEN_OK;
}

bool keten_identity_looks_like_public_key(const uint8_t *b, size_t n)
{
    const size_t b64_len = 4 * ((KETEN_SIGN_PK_BYTES + 2) / 3);
    if (n < b64_len || b[b64_len - 1] != '=') {
        return false;
    }
    for (size_t i = 0; i < b64_len - 1; i++) {
        unsigned char c = b[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+'
                || c == '/')) {
            return false;
        }
    }
    return n == b64_len || b[b64_len] == ' ' || b[b64_len] == '\n' || b[b64_len] == '\r';
}

/* What the file is comes first: one that is not a key file at all is
 * KETEN_ERR_WRONG_TYPE before its permissions are looked at, so that a
 * public key given by mistake is not met with advice to chmod it. Only the
 * first bytes of a regular file are read; a file that cannot be opened or is
 * not a regular file is left to keten_file_read_secret(), which says why. */
static keten_err check_kind(const char *path)
{
    uint8_t head[KIND_PEEK_BYTES];
    size_t got = 0;
    if (!keten_file_peek(path, head, sizeof head, &got)) {
        return KETEN_OK;
    }
    size_t n = got < KEYFILE_MAGIC_BYTES ? got : KEYFILE_MAGIC_BYTES;
    if (got == 0 || memcmp(head, KEYFILE_MAGIC, n) == 0) {
        return KETEN_OK;
    }
    if (keten_identity_looks_like_public_key(head, got)) {
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is not a keten secret key file: it holds a public key (a .pub file); give "
            "the secret key file, the one without .pub",
            path);
    }
    return keten_err_set(KETEN_ERR_WRONG_TYPE,
        "%s is not a keten secret key file (no %s magic); check the path", path, KEYFILE_MAGIC);
}

/* One length-prefixed name of the body into dst (cap + 1 bytes). */
static keten_err body_name(
    const char *path, const char *what, const uint8_t **pp, size_t *left, size_t cap, char *dst)
{
    if (*left < 1) {
        return keten_err_set(KETEN_ERR_TRUNCATED,
            "%s is truncated before its %s; restore it from a backup", path, what);
    }
    size_t n = **pp;
    *pp += 1;
    *left -= 1;
    if (n < 1 || n > cap) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s has a %s of %zu bytes (1 to %zu allowed); the file was altered", path, what, n,
            cap);
    }
    if (*left < n) {
        return keten_err_set(KETEN_ERR_TRUNCATED,
            "%s is truncated inside its %s; restore it from a backup", path, what);
    }
    if (memchr(*pp, '\0', n) != NULL) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "%s has a NUL byte in its %s; the file was altered", path, what);
    }
    memcpy(dst, *pp, n);
    dst[n] = '\0';
    *pp += n;
    *left -= n;
    return KETEN_OK;
}

static keten_err body_key(
    const char *path, const char *what, const uint8_t **pp, size_t *left, uint8_t *dst, size_t n)
{
    if (*left < n) {
        return keten_err_set(KETEN_ERR_TRUNCATED,
            "%s is truncated inside its %s; restore it from a backup", path, what);
    }
    memcpy(dst, *pp, n);
    *pp += n;
    *left -= n;
    return KETEN_OK;
}

/* Check that an Ed25519 secret key (seed || pk) carries the public key of
 * its own seed, and copy that public key to pk. */
static keten_err ed25519_pk_of(const char *path, const char *what, const uint8_t *sk, uint8_t *pk)
{
    uint8_t *scratch = sodium_malloc(crypto_sign_SEEDBYTES + KETEN_SIGN_SK_BYTES);
    if (scratch == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "no secure memory to check %s", path);
    }
    uint8_t *seed = scratch;
    uint8_t *sk2 = scratch + crypto_sign_SEEDBYTES;
    uint8_t derived[KETEN_SIGN_PK_BYTES];
    uint8_t embedded[KETEN_SIGN_PK_BYTES];
    keten_err e = KETEN_OK;
    crypto_sign_ed25519_sk_to_seed(seed, sk);
    if (crypto_sign_seed_keypair(derived, sk2, seed) != 0
        || crypto_sign_ed25519_sk_to_pk(embedded, sk) != 0) {
        e = keten_err_set(KETEN_ERR_CRYPTO, "deriving the %s of %s failed", what, path);
    } else if (sodium_memcmp(derived, embedded, KETEN_SIGN_PK_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_MALFORMED,
            "the %s in %s does not match its own public part; the file was altered", what, path);
    } else {
        memcpy(pk, derived, KETEN_SIGN_PK_BYTES);
    }
    sodium_memzero(scratch, crypto_sign_SEEDBYTES + KETEN_SIGN_SK_BYTES);
    sodium_free(scratch);
    return e;
}

static keten_err body_decode(const char *path, const uint8_t *b, size_t left, keten_identity *self)
{
    if (left < 2) {
        return keten_err_set(
            KETEN_ERR_TRUNCATED, "%s is truncated (no key body); restore it from a backup", path);
    }
    if (b[0] != KEYFILE_BODY_VERSION) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s has key body version %u (this program reads %u)", path, (unsigned)b[0],
            (unsigned)KEYFILE_BODY_VERSION);
    }
    if ((b[1] & ~KEYFILE_FLAG_LOG_KEY) != 0) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "%s has unknown key flags 0x%02x", path, (unsigned)b[1]);
    }
    self->has_log_key = (b[1] & KEYFILE_FLAG_LOG_KEY) != 0;
    b += 2;
    left -= 2;
    keten_err e = body_name(path, "id", &b, &left, KETEN_NAME_MAX, self->id);
    if (e == KETEN_OK) {
        e = body_name(path, "role", &b, &left, KETEN_NAME_MAX, self->role);
    }
    if (e == KETEN_OK) {
        e = body_name(path, "organisation name", &b, &left, KETEN_ORG_MAX, self->org);
    }
    if (e == KETEN_OK) {
        e = body_key(path, "signing key", &b, &left, self->sign_sk, KETEN_SIGN_SK_BYTES);
    }
    if (e == KETEN_OK) {
        e = body_key(path, "encryption key", &b, &left, self->enc_sk, KETEN_ENC_SK_BYTES);
    }
    if (e == KETEN_OK) {
        e = body_key(path, "transport key", &b, &left, self->transport_sk, KETEN_CURVE_KEY_BYTES);
    }
    if (e == KETEN_OK && self->has_log_key) {
        e = body_key(path, "log key", &b, &left, self->log_sk, KETEN_SIGN_SK_BYTES);
    }
    if (e != KETEN_OK) {
        return e;
    }
    if (left != 0) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s has %zu bytes after its keys; the file was altered", path, left);
    }
    if (check_names(self->id, self->role, self->org) != KETEN_OK) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s holds an invalid id, role or organisation name; the file was altered", path);
    }
    e = ed25519_pk_of(path, "signing key", self->sign_sk, self->sign_pk);
    if (e == KETEN_OK && self->has_log_key) {
        e = ed25519_pk_of(path, "log key", self->log_sk, self->log_pk);
    }
    if (e != KETEN_OK) {
        return e;
    }
    if (crypto_scalarmult_base(self->enc_pk, self->enc_sk) != 0
        || crypto_scalarmult_base(self->transport_pk, self->transport_sk) != 0) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s holds an unusable encryption or transport key; the file was altered", path);
    }
    return KETEN_OK;
}

/* Decrypt the body of an encrypted key file into *body_out (sodium_malloc). */
static keten_err open_encrypted(const char *path, const uint8_t *file, size_t flen,
    const uint8_t *pass, size_t passlen, uint8_t **body_out, size_t *body_len_out)
{
    *body_out = NULL;
    if (flen < KEYFILE_HEADER_BYTES + KETEN_AEAD_TAG_BYTES) {
        return keten_err_set(KETEN_ERR_TRUNCATED,
            "%s is truncated (%zu bytes, an encrypted key file has at least %d); restore it from "
            "a backup",
            path, flen, (int)(KEYFILE_HEADER_BYTES + KETEN_AEAD_TAG_BYTES));
    }
    const uint8_t *salt = file + KEYFILE_PREFIX_BYTES;
    uint64_t ops = get_be64(salt + KEYFILE_SALT_BYTES);
    uint64_t mem = get_be64(salt + KEYFILE_SALT_BYTES + KEYFILE_LIMIT_BYTES);
    const uint8_t *nonce = salt + KEYFILE_SALT_BYTES + 2 * KEYFILE_LIMIT_BYTES;
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_SENSITIVE
        || mem < crypto_pwhash_MEMLIMIT_MIN || mem > crypto_pwhash_MEMLIMIT_SENSITIVE) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s asks for Argon2id limits outside the sane range (opslimit %llu, memlimit %llu); "
            "the file was altered",
            path, (unsigned long long)ops, (unsigned long long)mem);
    }
    size_t clen = flen - KEYFILE_HEADER_BYTES;
    size_t blen = clen - KETEN_AEAD_TAG_BYTES;
    if (blen > KEYFILE_BODY_MAX) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s is %zu bytes, longer than any key file; the file was altered", path, flen);
    }
    if (pass == NULL || passlen == 0) {
        return keten_err_set(KETEN_ERR_NEED_PASSPHRASE,
            "%s is encrypted: give --passphrase-file FILE or set KETEN_PASSPHRASE, or run it on "
            "a terminal",
            path);
    }
    uint8_t *key = sodium_malloc(KEYFILE_KEY_BYTES);
    uint8_t *body = sodium_malloc(blen ? blen : 1);
    keten_err e = KETEN_OK;
    if (key == NULL || body == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "no secure memory to read %s", path);
        goto out;
    }
    e = derive_key(path, pass, passlen, salt, ops, mem, key);
    if (e != KETEN_OK) {
        goto out;
    }
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(body, &mlen, NULL, file + KEYFILE_HEADER_BYTES,
            clen, file, KEYFILE_HEADER_BYTES, nonce, key)
            != 0
        || mlen != blen) {
        e = keten_err_set(
            KETEN_ERR_PASSPHRASE, "wrong passphrase for %s, or the file was altered", path);
        goto out;
    }
    *body_out = body;
    *body_len_out = blen;
    body = NULL;
out:
    if (key != NULL) {
        sodium_memzero(key, KEYFILE_KEY_BYTES);
        sodium_free(key);
    }
    if (body != NULL) {
        sodium_memzero(body, blen ? blen : 1);
        sodium_free(body);
    }
    return e;
}

keten_err keten_identity_load(
    const char *path, const uint8_t *pass, size_t passlen, keten_identity **out)
{
    *out = NULL;
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t *file = NULL;
    size_t flen = 0;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    keten_identity *self = NULL;
    if ((e = check_kind(path)) != KETEN_OK) {
        return e;
    }
    e = keten_file_read_secret(path, KETEN_KEYFILE_MAX, &file, &flen);
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t format = 0;
    e = check_prefix(path, file, flen, &format);
    if (e != KETEN_OK) {
        goto out;
    }
    const uint8_t *body;
    size_t blen;
    if (format == KEYFILE_FORMAT_ENCRYPTED) {
        e = open_encrypted(path, file, flen, pass, passlen, &plain, &plain_len);
        if (e != KETEN_OK) {
            goto out;
        }
        body = plain;
        blen = plain_len;
    } else {
        body = file + KEYFILE_PREFIX_BYTES;
        blen = flen - KEYFILE_PREFIX_BYTES;
    }
    self = identity_alloc();
    if (self == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "no secure memory for the keys in %s", path);
        goto out;
    }
    e = body_decode(path, body, blen, self);
    if (e != KETEN_OK) {
        keten_identity_destroy(&self);
        goto out;
    }
    *out = self;
out:
    if (plain != NULL) {
        sodium_memzero(plain, plain_len);
        sodium_free(plain);
    }
    sodium_memzero(file, flen);
    sodium_free(file);
    return e;
}

keten_err keten_identity_file_encrypted(const char *path, bool *encrypted)
{
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t *file = NULL;
    size_t flen = 0;
    if ((e = check_kind(path)) != KETEN_OK) {
        return e;
    }
    e = keten_file_read_secret(path, KETEN_KEYFILE_MAX, &file, &flen);
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t format = 0;
    e = check_prefix(path, file, flen, &format);
    if (e == KETEN_OK) {
        *encrypted = format == KEYFILE_FORMAT_ENCRYPTED;
    }
    sodium_memzero(file, flen);
    sodium_free(file);
    return e;
}

/* ---- enrollment request ------------------------------------------------ */

/* "keten/request/v1" || request, malloc()ed. */
static keten_err request_message(const uint8_t *req, size_t len, uint8_t **out, size_t *out_len)
{
    size_t ll = sizeof KETEN_LABEL_REQUEST - 1;
    if (len > KETEN_REQUEST_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "request of %zu bytes; at most %u allowed", len,
            KETEN_REQUEST_MAX);
    }
    uint8_t *m = malloc(ll + len);
    if (m == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "signing a request");
    }
    memcpy(m, KETEN_LABEL_REQUEST, ll);
    if (len > 0) {
        memcpy(m + ll, req, len);
    }
    *out = m;
    *out_len = ll + len;
    return KETEN_OK;
}

keten_err keten_identity_request(const keten_identity *self, const char *network, uint64_t now_ms,
    uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    if (network == NULL) {
        network = "";
    }
    if (has_control_chars(network)) {
        return keten_err_set(KETEN_ERR_INVALID, "the network name contains control characters");
    }
    e = check_names(self->id, self->role, self->org);
    if (e != KETEN_OK) {
        return e;
    }
    bool broker = strcmp(self->role, ROLE_BROKER) == 0;
    if (broker != self->has_log_key) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s: a request with role '%s' %s a log key; make new keys with the right role",
            self->id, self->role, broker ? "needs" : "must not carry");
    }
    Keten__NodeRequest req = KETEN__NODE_REQUEST__INIT;
    req.network = (char *)network;
    req.id = (char *)self->id;
    req.role = (char *)self->role;
    req.org = (char *)self->org;
    req.sign_pk.data = (uint8_t *)self->sign_pk;
    req.sign_pk.len = KETEN_SIGN_PK_BYTES;
    req.enc_pk.data = (uint8_t *)self->enc_pk;
    req.enc_pk.len = KETEN_ENC_PK_BYTES;
    req.transport_pk.data = (uint8_t *)self->transport_pk;
    req.transport_pk.len = KETEN_CURVE_KEY_BYTES;
    if (self->has_log_key) {
        req.log_pk.data = (uint8_t *)self->log_pk;
        req.log_pk.len = KETEN_SIGN_PK_BYTES;
    }
    req.created_at = now_ms;

    uint8_t *req_bytes = NULL;
    size_t req_len = 0;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    uint8_t sig[KETEN_SIG_BYTES];
    uint8_t log_sig[KETEN_SIG_BYTES];
    uint8_t *signed_bytes = NULL;
    size_t signed_len = 0;
    Keten__NodeRequest *check = NULL;
    Keten__SignedRequest sreq = KETEN__SIGNED_REQUEST__INIT;

    e = keten_pb_pack(&req.base, &req_bytes, &req_len);
    if (e != KETEN_OK) {
        goto out;
    }
    e = request_message(req_bytes, req_len, &msg, &msg_len);
    if (e != KETEN_OK) {
        goto out;
    }
    if (crypto_sign_detached(sig, NULL, msg, msg_len, self->sign_sk) != 0
        || crypto_sign_verify_detached(sig, msg, msg_len, self->sign_pk) != 0) {
        e = keten_err_set(KETEN_ERR_CRYPTO,
            "signing the request of %s failed, or the signing key does not match its public key",
            self->id);
        goto out;
    }
    sreq.request.data = req_bytes;
    sreq.request.len = req_len;
    sreq.signature.data = sig;
    sreq.signature.len = sizeof sig;
    if (self->has_log_key) {
        if (crypto_sign_detached(log_sig, NULL, msg, msg_len, self->log_sk) != 0
            || crypto_sign_verify_detached(log_sig, msg, msg_len, self->log_pk) != 0) {
            e = keten_err_set(KETEN_ERR_CRYPTO,
                "signing the request of %s with the log key failed, or the log key does not "
                "match its public key",
                self->id);
            goto out;
        }
        sreq.log_signature.data = log_sig;
        sreq.log_signature.len = sizeof log_sig;
    }
    e = keten_pb_pack(&sreq.base, &signed_bytes, &signed_len);
    if (e != KETEN_OK) {
        goto out;
    }
    /* What we hand out must pass the administrator's check. */
    e = keten_identity_request_verify(signed_bytes, signed_len, &check);
    if (e != KETEN_OK) {
        goto out;
    }
    *out = signed_bytes;
    *out_len = signed_len;
    signed_bytes = NULL;
out:
    keten_pb_free((ProtobufCMessage **)(void *)&check);
    free(signed_bytes);
    free(msg);
    free(req_bytes);
    return e;
}

/* X25519 public keys of small order make every shared secret zero. */
static bool x25519_pk_usable(const uint8_t pk[static 32])
{
    static const uint8_t probe[crypto_scalarmult_SCALARBYTES] = { 0x42, 0x42, 0x42, 0x42 };
    uint8_t shared[crypto_scalarmult_BYTES];
    bool ok = crypto_scalarmult(shared, probe, pk) == 0;
    sodium_memzero(shared, sizeof shared);
    return ok;
}

static keten_err check_request_keys(const Keten__NodeRequest *req, bool broker)
{
    const char *id = req->id;
    if (req->sign_pk.len != KETEN_SIGN_PK_BYTES || req->enc_pk.len != KETEN_ENC_PK_BYTES
        || req->transport_pk.len != KETEN_CURVE_KEY_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "request: key lengths %zu/%zu/%zu (signing/encryption/transport), each must be 32",
            req->sign_pk.len, req->enc_pk.len, req->transport_pk.len);
    }
    if (broker && req->log_pk.len != KETEN_SIGN_PK_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "request of broker '%s' has a log key of %zu bytes; a broker needs a 32-byte log key",
            id, req->log_pk.len);
    }
    if (!broker && req->log_pk.len != 0) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "request of '%s' carries a log key; only the broker has one", id);
    }
    if (!x25519_pk_usable(req->enc_pk.data) || !x25519_pk_usable(req->transport_pk.data)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "request of '%s' has a weak (small-order) encryption or transport key", id);
    }
    const ProtobufCBinaryData *keys[4]
        = { &req->sign_pk, &req->enc_pk, &req->transport_pk, &req->log_pk };
    size_t n = broker ? 4 : 3;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (sodium_memcmp(keys[i]->data, keys[j]->data, 32) == 0) {
                return keten_err_set(KETEN_ERR_DUPLICATE_KEY,
                    "request of '%s' uses one key for two purposes; make new keys", id);
            }
        }
    }
    return KETEN_OK;
}

keten_err keten_identity_request_verify(const uint8_t *buf, size_t len, Keten__NodeRequest **out)
{
    *out = NULL;
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    Keten__SignedRequest *sreq = NULL;
    Keten__NodeRequest *req = NULL;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    char shown[SHOWN_NAME_MAX + 4];

    e = KETEN_PB_UNPACK_CANONICAL(
        keten__signed_request, buf, len, KETEN_REQUEST_MAX, "signed request", &sreq);
    if (e != KETEN_OK) {
        goto out;
    }
    e = KETEN_PB_UNPACK_CANONICAL(keten__node_request, sreq->request.data, sreq->request.len,
        KETEN_REQUEST_MAX, "request", &req);
    if (e != KETEN_OK) {
        goto out;
    }
    bool broker = strcmp(req->role, ROLE_BROKER) == 0;
    if (!keten_name_valid(req->id) || !keten_name_valid(req->role)) {
        shown_name(keten_name_valid(req->id) ? req->role : req->id, shown);
        e = keten_err_set(KETEN_ERR_BAD_NAME,
            "request: %s '%s' is not valid (1 to %d characters of a-z, 0-9 and -)",
            keten_name_valid(req->id) ? "role" : "node id", shown, KETEN_NAME_MAX);
        goto out;
    }
    if (!org_valid(req->org)) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "request of '%s': organisation name must be 1 to %d bytes without control "
            "characters",
            req->id, KETEN_ORG_MAX);
        goto out;
    }
    if (has_control_chars(req->network)) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "request of '%s': the network name contains control characters", req->id);
        goto out;
    }
    e = check_request_keys(req, broker);
    if (e != KETEN_OK) {
        goto out;
    }
    if (!broker && sreq->log_signature.len != 0) {
        e = keten_err_set(KETEN_ERR_MALFORMED,
            "request of '%s' carries a log signature; only the broker's may", req->id);
        goto out;
    }
    e = request_message(sreq->request.data, sreq->request.len, &msg, &msg_len);
    if (e != KETEN_OK) {
        goto out;
    }
    if (sreq->signature.len != KETEN_SIG_BYTES
        || crypto_sign_verify_detached(sreq->signature.data, msg, msg_len, req->sign_pk.data)
            != 0) {
        e = keten_err_set(KETEN_ERR_BAD_SIGNATURE,
            "request of '%s': the proof of possession of its signing key does not verify; "
            "ask for a new request",
            req->id);
        goto out;
    }
    if (broker
        && (sreq->log_signature.len != KETEN_SIG_BYTES
            || crypto_sign_verify_detached(sreq->log_signature.data, msg, msg_len, req->log_pk.data)
                != 0)) {
        e = keten_err_set(KETEN_ERR_BAD_SIGNATURE,
            "request of broker '%s': the proof of possession of its log key %s; ask for a new "
            "request",
            req->id, sreq->log_signature.len == 0 ? "is missing" : "does not verify");
        goto out;
    }
    *out = req;
    req = NULL;
out:
    free(msg);
    keten_pb_free((ProtobufCMessage **)(void *)&req);
    keten_pb_free((ProtobufCMessage **)(void *)&sreq);
    return e;
}
