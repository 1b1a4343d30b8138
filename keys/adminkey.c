#include "adminkey.h"

#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "passphrase.h"
#include "util.h"
#include "sha256.h"

/* Length of one valid UTF-8 character at s (at most left bytes), or 0. */
static size_t utf8_char(const unsigned char *s, size_t left)
{
    size_t n;
    uint32_t min;
    if (s[0] < 0x80) {
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n > left) {
        return 0;
    }
    uint32_t cp = s[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}

bool adminkey_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > ADMINKEY_NAME_MAX || name[0] == ' ' || name[len - 1] == ' ') {
        return false;
    }
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            return false;
        }
        size_t n = utf8_char(s + i, len - i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

void adminkey_fingerprint(
    const uint8_t pk[static KETEN_SIGN_PK_BYTES], char out[static ADMINKEY_FPR_BYTES])
{
    uint8_t h[KETEN_SHA256_BYTES];
    char hex[2 * ADMINKEY_FPR_RAW + 1];
    keten_sha256(h, pk, KETEN_SIGN_PK_BYTES);
    keten_hex(h, ADMINKEY_FPR_RAW, hex);
    size_t o = 0;
    for (size_t i = 0; i < 2 * ADMINKEY_FPR_RAW; i++) {
        if (i > 0 && i % 4 == 0) {
            out[o++] = ':';
        }
        out[o++] = hex[i];
    }
    out[o] = '\0';
}

keten_err adminkey_pub_read(
    const char *path, uint8_t pk[static KETEN_SIGN_PK_BYTES], char *name_out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_file_read(path, ADMINKEY_PUB_MAX, &buf, &len);
    if (e == KETEN_ERR_TOO_LARGE) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s is not an administrator's public key (too large for one; give the .pub file "
            "written by keten-keys admin-keygen)",
            path);
    }
    if (e != KETEN_OK) {
        return e;
    }
    /* One line: strip the trailing newline (and a carriage return). */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }
    buf[len] = '\0';
    /* The key, then optionally one space and the name. */
    size_t key_len = len;
    const char *name = "";
    const char *space = memchr(buf, ' ', len);
    if (space != NULL) {
        key_len = (size_t)(space - (const char *)buf);
        name = space + 1;
    }
    size_t bin_len = 0;
    const char *end = NULL;
    uint8_t tmp[KETEN_SIGN_PK_BYTES + 1];
    if (key_len == 0 || memchr(buf, '\0', len) != NULL
        || sodium_base642bin(tmp, sizeof tmp, (const char *)buf, key_len, NULL, &bin_len, &end,
               sodium_base64_VARIANT_ORIGINAL)
            != 0
        || end != (const char *)buf + key_len || bin_len != KETEN_SIGN_PK_BYTES) {
        free(buf);
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s is not an administrator's public key (one line of base64 of 32 bytes, "
            "optionally followed by a name, as written by keten-keys admin-keygen)",
            path);
    }
    if (space != NULL && !adminkey_name_valid(name)) {
        free(buf);
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s: the name after the key is not usable (1 to %d bytes of printable UTF-8, no "
            "control characters, no space at either end)",
            path, ADMINKEY_NAME_MAX);
    }
    if (name_out != NULL) {
        snprintf(name_out, ADMINKEY_NAME_MAX + 1, "%s", name);
    }
    free(buf);
    memcpy(pk, tmp, KETEN_SIGN_PK_BYTES);
    return KETEN_OK;
}

keten_err adminkey_pub_write(
    const char *path, const uint8_t pk[static KETEN_SIGN_PK_BYTES], const char *name)
{
    char line[KETEN_CLI_KEY_B64_BYTES + ADMINKEY_NAME_MAX + 2];
    char b64[KETEN_CLI_KEY_B64_BYTES];
    keten_cli_key_b64(pk, b64);
    bool named = name != NULL && name[0] != '\0';
    if (named && !adminkey_name_valid(name)) {
        return keten_err_set(KETEN_ERR_INVALID, "administrator name '%s' is not usable", name);
    }
    int n = snprintf(line, sizeof line, "%s%s%s\n", b64, named ? " " : "", named ? name : "");
    if (n < 0 || (size_t)n >= sizeof line) {
        return keten_err_set(KETEN_ERR_INVALID, "administrator name is too long");
    }
    return keten_file_write(path, line, (size_t)n, 0644, true);
}

keten_err adminkey_pub_read_list(
    char *const *args, size_t n, adminkey_set *set, adminkey_name *names_out)
{
    char *names[KETEN_MAX_ADMINS] = { NULL };
    keten_err e = KETEN_OK;
    memset(set, 0, sizeof *set);
    for (size_t a = 0; a < n && e == KETEN_OK; a++) {
        char **items = NULL;
        size_t n_items = 0;
        e = keten_cli_split(args[a], "--admin-pub", &items, &n_items);
        for (size_t i = 0; e == KETEN_OK && i < n_items; i++) {
            if (set->n == KETEN_MAX_ADMINS) {
                e = keten_err_set(KETEN_ERR_INVALID,
                    "more than %d administrator keys given; a network has at most %d",
                    KETEN_MAX_ADMINS, KETEN_MAX_ADMINS);
                break;
            }
            e = adminkey_pub_read(
                items[i], set->keys[set->n], names_out != NULL ? names_out[set->n] : NULL);
            if (e != KETEN_OK) {
                break;
            }
            int dup = -1;
            for (size_t j = 0; j < set->n; j++) {
                if (sodium_memcmp(set->keys[j], set->keys[set->n], KETEN_SIGN_PK_BYTES) == 0) {
                    dup = (int)j;
                }
            }
            if (dup >= 0) {
                e = keten_err_set(KETEN_ERR_DUPLICATE_KEY,
                    "%s holds the same administrator key as %s; every administrator needs their "
                    "own key (keten-keys admin-keygen), each given once",
                    items[i], names[dup]);
                break;
            }
            names[set->n] = items[i];
            items[i] = NULL;
            set->n++;
        }
        keten_cli_split_free(&items, n_items);
    }
    for (size_t i = 0; i < KETEN_MAX_ADMINS; i++) {
        free(names[i]);
    }
    return e;
}

typedef struct open_try {
    const char *path;
    keten_identity **out;
} open_try;

static keten_err try_open(const char *pass, size_t len, void *arg)
{
    open_try *t = arg;
    keten_err e = keten_identity_load(t->path, (const uint8_t *)pass, len, t->out);
    if (e == KETEN_ERR_PASSPHRASE) {
        return keten_err_set(e,
            "the passphrase does not open %s (or the file was altered); check the passphrase "
            "(--passphrase-file, KETEN_PASSPHRASE or the prompt) and try again",
            t->path);
    }
    return e;
}

keten_err adminkey_open(const char *path, const char *passfile, keten_identity **out)
{
    bool encrypted = false;
    *out = NULL;
    keten_err e = keten_identity_file_encrypted(path, &encrypted);
    if (e != KETEN_OK) {
        return e;
    }
    if (!encrypted) {
        return keten_identity_load(path, NULL, 0, out);
    }
    char prompt[PATH_MAX + 32];
    snprintf(prompt, sizeof prompt, "Passphrase for %s: ", path);
    open_try t = { path, out };
    return keten_passphrase_try(passfile, prompt, try_open, &t);
}

keten_err adminkey_generate(keten_identity **out)
{
    return keten_identity_generate(ADMINKEY_ID, ADMINKEY_ROLE, ADMINKEY_ORG, false, out);
}

keten_err adminkey_set_from_pb(
    const ProtobufCBinaryData *admins, size_t n, uint32_t threshold, adminkey_set *out)
{
    if (n > KETEN_MAX_ADMINS) {
        return keten_err_set(
            KETEN_ERR_INVALID, "%zu administrators; at most %d are allowed", n, KETEN_MAX_ADMINS);
    }
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        if (admins[i].len != KETEN_SIGN_PK_BYTES) {
            return keten_err_set(KETEN_ERR_MALFORMED,
                "administrator key %zu is %zu bytes; expected %d", i + 1, admins[i].len,
                KETEN_SIGN_PK_BYTES);
        }
        memcpy(out->keys[i], admins[i].data, KETEN_SIGN_PK_BYTES);
    }
    out->n = n;
    out->threshold = threshold;
    return KETEN_OK;
}

int adminkey_set_find(const adminkey_set *set, const uint8_t pk[static KETEN_SIGN_PK_BYTES])
{
    for (size_t i = 0; i < set->n; i++) {
        if (sodium_memcmp(set->keys[i], pk, KETEN_SIGN_PK_BYTES) == 0) {
            return (int)i;
        }
    }
    return -1;
}

bool adminkey_set_equal(const adminkey_set *a, const adminkey_set *b)
{
    if (a->n != b->n || a->threshold != b->threshold) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (adminkey_set_find(b, a->keys[i]) < 0) {
            return false;
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        if (adminkey_set_find(a, b->keys[i]) < 0) {
            return false;
        }
    }
    return true;
}

