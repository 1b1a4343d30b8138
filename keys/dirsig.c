#include "dirsig.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"

keten_err dirsig_message(const ProtobufCBinaryData *dir, uint8_t **msg, size_t *len)
{
    size_t label_len = strlen(KETEN_LABEL_DIRECTORY);
    if (dir->len > KETEN_DIRECTORY_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "directory of %zu bytes", dir->len);
    }
    uint8_t *m = malloc(label_len + dir->len + 1);
    if (m == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "directory signature message");
    }
    memcpy(m, KETEN_LABEL_DIRECTORY, label_len);
    if (dir->len > 0) {
        memcpy(m + label_len, dir->data, dir->len);
    }
    *msg = m;
    *len = label_len + dir->len;
    return KETEN_OK;
}

bool dirsig_verifies(const uint8_t *msg, size_t len, const Keten__DirectorySignature *sig)
{
    if (sig->admin_pk.len != KETEN_SIGN_PK_BYTES || sig->signature.len != KETEN_SIG_BYTES) {
        return false;
    }
    return crypto_sign_verify_detached(sig->signature.data, msg, len, sig->admin_pk.data) == 0;
}

/* Distinct keys of set with a valid signature in sd. */
static size_t count_valid(
    const Keten__SignedDirectory *sd, const uint8_t *msg, size_t len, const adminkey_set *set)
{
    bool seen[KETEN_MAX_ADMINS] = { false };
    size_t count = 0;
    for (size_t i = 0; i < sd->n_signatures; i++) {
        const Keten__DirectorySignature *sig = sd->signatures[i];
        if (sig->admin_pk.len != KETEN_SIGN_PK_BYTES) {
            continue;
        }
        int idx = adminkey_set_find(set, sig->admin_pk.data);
        if (idx < 0 || seen[idx] || !dirsig_verifies(msg, len, sig)) {
            continue;
        }
        seen[idx] = true;
        count++;
    }
    return count;
}

keten_err dirsig_count(const Keten__SignedDirectory *sd, const adminkey_set *signing,
    const adminkey_set *next, dirsig_tally *out)
{
    uint8_t *msg = NULL;
    size_t len = 0;
    keten_err e = dirsig_message(&sd->directory, &msg, &len);
    if (e != KETEN_OK) {
        return e;
    }
    memset(out, 0, sizeof *out);
    out->signatures = sd->n_signatures;
    out->old_valid = count_valid(sd, msg, len, signing);
    out->old_threshold = signing->threshold;
    out->admin_change = next != NULL && !adminkey_set_equal(signing, next);
    out->enough = out->old_valid >= out->old_threshold;
    if (out->admin_change) {
        out->new_valid = count_valid(sd, msg, len, next);
        out->new_threshold = next->threshold;
        out->enough = out->enough && out->new_valid >= out->new_threshold;
    }
    free(msg);
    return KETEN_OK;
}

static size_t missing(size_t have, uint32_t need)
{
    return have >= need ? 0 : need - have;
}

void dirsig_tally_text(const dirsig_tally *t, char *out, size_t size)
{
    if (!t->admin_change) {
        if (t->enough) {
            snprintf(out, size, "%zu of %u signatures: complete", t->old_valid,
                (unsigned)t->old_threshold);
        } else {
            snprintf(out, size, "%zu of %u signatures; needs %zu more (keten-keys sign)",
                t->old_valid, (unsigned)t->old_threshold, missing(t->old_valid, t->old_threshold));
        }
        return;
    }
    size_t need_old = missing(t->old_valid, t->old_threshold);
    size_t need_new = missing(t->new_valid, t->new_threshold);
    int n = snprintf(out, size,
        "administrator change: %zu of %u signatures of the current administrators, %zu of %u "
        "of the new administrators",
        t->old_valid, (unsigned)t->old_threshold, t->new_valid, (unsigned)t->new_threshold);
    if (n < 0 || (size_t)n >= size) {
        return;
    }
    if (t->enough) {
        snprintf(out + n, size - (size_t)n, ": complete");
    } else {
        snprintf(out + n, size - (size_t)n,
            "; needs %zu more of the current and %zu more of the new administrators "
            "(keten-keys sign)",
            need_old, need_new);
    }
}

json_t *dirsig_tally_json(const dirsig_tally *t)
{
    json_t *obj = json_pack("{s:I, s:I, s:I, s:b, s:b}", "signatures", (json_int_t)t->signatures,
        "valid", (json_int_t)t->old_valid, "threshold", (json_int_t)t->old_threshold,
        "admin_change", t->admin_change, "complete", t->enough);
    if (obj != NULL && t->admin_change) {
        if (json_object_set_new(obj, "new_valid", json_integer((json_int_t)t->new_valid)) != 0
            || json_object_set_new(obj, "new_threshold", json_integer((json_int_t)t->new_threshold))
                != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

keten_err dirsig_verify_with_set(
    const char *network, const adminkey_set *signing, const uint8_t *buf, size_t len, uint64_t now_ms)
{
    ProtobufCBinaryData keys[KETEN_MAX_ADMINS];
    for (size_t i = 0; i < signing->n; i++) {
        keys[i].len = KETEN_SIGN_PK_BYTES;
        keys[i].data = (uint8_t *)signing->keys[i];
    }
    Keten__Anchor anchor = KETEN__ANCHOR__INIT;
    anchor.network = (char *)network;
    anchor.n_admins = signing->n;
    anchor.admins = keys;
    anchor.threshold = signing->threshold;
    keten_directory *dir = NULL;
    keten_err e = keten_directory_verify(&anchor, NULL, buf, len, now_ms, &dir);
    keten_directory_destroy(&dir);
    return e;
}
