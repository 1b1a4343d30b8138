#include "adminkey.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

keten_err adminkey_pub_read(const char *path, uint8_t pk[static KETEN_SIGN_PK_BYTES])
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
    size_t bin_len = 0;
    const char *end = NULL;
    uint8_t tmp[KETEN_SIGN_PK_BYTES + 1];
    if (len == 0 || memchr(buf, '\0', len) != NULL
        || sodium_base642bin(tmp, sizeof tmp, (const char *)buf, len, NULL, &bin_len, &end,
               sodium_base64_VARIANT_ORIGINAL)
            != 0
        || end != (const char *)buf + len || bin_len != KETEN_SIGN_PK_BYTES) {
        free(buf);
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s is not an administrator's public key (one line of base64 of 32 bytes, as "
            "written by keten-keys admin-keygen)",
            path);
    }
    free(buf);
    memcpy(pk, tmp, KETEN_SIGN_PK_BYTES);
    return KETEN_OK;
}

keten_err adminkey_pub_write(const char *path, const uint8_t pk[static KETEN_SIGN_PK_BYTES])
{
    char line[KETEN_CLI_KEY_B64_BYTES + 1];
    keten_cli_key_b64(pk, line);
    size_t n = strlen(line);
    line[n] = '\n';
    return keten_file_write(path, line, n + 1, 0644, true);
}

keten_err adminkey_pub_read_list(char *const *args, size_t n, adminset *set)
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
            e = adminkey_pub_read(items[i], set->keys[set->n]);
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

keten_err adminkey_generate(keten_identity **out)
{
    return keten_identity_generate(ADMINKEY_ID, ADMINKEY_ROLE, ADMINKEY_ORG, false, out);
}

keten_err adminset_from_pb(
    const ProtobufCBinaryData *admins, size_t n, uint32_t threshold, adminset *out)
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

int adminset_find(const adminset *set, const uint8_t pk[static KETEN_SIGN_PK_BYTES])
{
    for (size_t i = 0; i < set->n; i++) {
        if (sodium_memcmp(set->keys[i], pk, KETEN_SIGN_PK_BYTES) == 0) {
            return (int)i;
        }
    }
    return -1;
}

bool adminset_equal(const adminset *a, const adminset *b)
{
    if (a->n != b->n || a->threshold != b->threshold) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (adminset_find(b, a->keys[i]) < 0) {
            return false;
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        if (adminset_find(a, b->keys[i]) < 0) {
            return false;
        }
    }
    return true;
}

size_t adminset_first_duplicate(const adminset *set)
{
    for (size_t i = 1; i < set->n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (sodium_memcmp(set->keys[i], set->keys[j], KETEN_SIGN_PK_BYTES) == 0) {
                return i;
            }
        }
    }
    return 0;
}
