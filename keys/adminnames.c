#include "adminnames.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cli.h"
#include "util.h"

#define HEADER                                                                                     \
    "# The administrators' names in this ADMIN folder: a public key, one space, a name.\n"         \
    "# Labels for people only; written by keten-keys init and set-admins.\n"

struct adminnames {
    size_t n;
    uint8_t keys[ADMINNAMES_MAX][KETEN_SIGN_PK_BYTES];
    adminkey_name names[ADMINNAMES_MAX];
};

keten_err adminnames_new(adminnames **out)
{
    *out = calloc(1, sizeof **out);
    return *out == NULL ? keten_err_set(KETEN_ERR_NOMEM, "administrator names") : KETEN_OK;
}

void adminnames_destroy(adminnames **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    free(*self_p);
    *self_p = NULL;
}

static ssize_t find(const adminnames *self, const uint8_t *pk)
{
    for (size_t i = 0; self != NULL && i < self->n; i++) {
        if (sodium_memcmp(self->keys[i], pk, KETEN_SIGN_PK_BYTES) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

keten_err adminnames_set(
    adminnames *self, const uint8_t pk[static KETEN_SIGN_PK_BYTES], const char *name)
{
    if (!adminkey_name_valid(name)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "administrator name '%.64s' is not usable: 1 to %d bytes of printable UTF-8, no "
            "space at either end",
            name, ADMINKEY_NAME_MAX);
    }
    ssize_t i = find(self, pk);
    if (i < 0) {
        if (self->n == ADMINNAMES_MAX) {
            return keten_err_set(
                KETEN_ERR_TOO_LARGE, "more than %d administrator names", ADMINNAMES_MAX);
        }
        i = (ssize_t)self->n++;
        memcpy(self->keys[i], pk, KETEN_SIGN_PK_BYTES);
    }
    snprintf(self->names[i], sizeof self->names[i], "%s", name);
    return KETEN_OK;
}

const char *adminnames_find(const adminnames *self, const uint8_t pk[static KETEN_SIGN_PK_BYTES])
{
    ssize_t i = find(self, pk);
    return i < 0 ? NULL : self->names[i];
}

void adminnames_label(const adminnames *self, const uint8_t pk[static KETEN_SIGN_PK_BYTES],
    char out[static ADMINNAMES_LABEL_BYTES])
{
    char fpr[ADMINKEY_FPR_BYTES];
    adminkey_fingerprint(pk, fpr);
    const char *name = adminnames_find(self, pk);
    if (name != NULL) {
        snprintf(out, ADMINNAMES_LABEL_BYTES, "%s (fingerprint %s)", name, fpr);
    } else {
        char b64[KETEN_CLI_KEY_B64_BYTES];
        keten_cli_key_b64(pk, b64);
        snprintf(out, ADMINNAMES_LABEL_BYTES, "key %s (fingerprint %s)", b64, fpr);
    }
}

/* One line "KEY NAME" (without its newline) into self. */
static keten_err parse_line(adminnames *self, const char *path, size_t lineno, char *line)
{
    char *space = strchr(line, ' ');
    uint8_t pk[KETEN_SIGN_PK_BYTES + 1];
    size_t bin_len = 0;
    const char *end = NULL;
    if (space == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s line %zu is not a public key followed by a name", path, lineno);
    }
    *space = '\0';
    if (sodium_base642bin(
            pk, sizeof pk, line, strlen(line), NULL, &bin_len, &end, sodium_base64_VARIANT_ORIGINAL)
            != 0
        || *end != '\0' || bin_len != KETEN_SIGN_PK_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s line %zu does not start with an administrator's public key", path, lineno);
    }
    if (!adminkey_name_valid(space + 1)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s line %zu: the name is not usable (1 to %d bytes of printable UTF-8)", path, lineno,
            ADMINKEY_NAME_MAX);
    }
    return adminnames_set(self, pk, space + 1);
}

keten_err adminnames_load(const char *path, adminnames **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    adminnames *self = NULL;
    *out = NULL;
    keten_err e = adminnames_new(&self);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_file_read(path, ADMINNAMES_FILE_MAX, &buf, &len);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        *out = self;
        return KETEN_OK;
    }
    if (e != KETEN_OK) {
        goto out;
    }
    if (memchr(buf, '\0', len) != NULL) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "%s is not a text file of names", path);
        goto out;
    }
    char *line = (char *)buf;
    for (size_t lineno = 1; *line != '\0' && e == KETEN_OK; lineno++) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        size_t l = strlen(line);
        if (l > 0 && line[l - 1] == '\r') {
            line[l - 1] = '\0';
        }
        if (line[0] != '\0' && line[0] != '#') {
            e = parse_line(self, path, lineno, line);
        }
        if (nl == NULL) {
            break;
        }
        line = nl + 1;
    }
    if (e == KETEN_OK) {
        *out = self;
        self = NULL;
    }
out:
    free(buf);
    adminnames_destroy(&self);
    return e;
}

keten_err adminnames_save(const adminnames *self, const char *path)
{
    size_t cap = sizeof HEADER + self->n * (KETEN_CLI_KEY_B64_BYTES + ADMINKEY_NAME_MAX + 2);
    char *text = malloc(cap);
    if (text == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "writing %s", path);
    }
    size_t used = (size_t)snprintf(text, cap, "%s", HEADER);
    for (size_t i = 0; i < self->n; i++) {
        char b64[KETEN_CLI_KEY_B64_BYTES];
        keten_cli_key_b64(self->keys[i], b64);
        used += (size_t)snprintf(text + used, cap - used, "%s %s\n", b64, self->names[i]);
    }
    keten_err e = keten_file_write(path, text, used, 0644, false);
    free(text);
    return e;
}
