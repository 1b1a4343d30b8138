#include "admindir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "directory.h"
#include "pb.h"
#include "util.h"

keten_err admindir_file(const admindir *self, const char *name, char out[static PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/%s", self->path, name);
    if (n < 0 || n >= PATH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "path %s/%s is too long", self->path, name);
    }
    return KETEN_OK;
}

keten_err admindir_published_file(const admindir *self, uint64_t version, char out[static PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/%s/v%llu.dir", self->path, ADMINDIR_PUBLISHED,
        (unsigned long long)version);
    if (n < 0 || n >= PATH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "path under %s is too long", self->path);
    }
    return KETEN_OK;
}

void admindir_close(admindir **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    admindir *self = *self_p;
    if (self->lock_fd >= 0) {
        close(self->lock_fd); /* releases the flock */
    }
    keten_pb_free((ProtobufCMessage **)(void *)&self->anchor);
    keten_dirbuild_destroy(&self->draft);
    free(self);
    *self_p = NULL;
}

static keten_err lock_folder(admindir *self)
{
    self->lock_fd = open(self->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->lock_fd < 0) {
        if (errno == ENOENT) {
            return keten_err_set(KETEN_ERR_NOT_FOUND,
                "ADMIN directory %s does not exist; give the --dir made by keten-keys init",
                self->path);
        }
        return keten_err_set(
            KETEN_ERR_IO, "cannot open ADMIN directory %s: %s", self->path, strerror(errno));
    }
    if (flock(self->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            return keten_err_set(KETEN_ERR_EXISTS,
                "another keten-keys command is working in %s; wait for it to finish and try "
                "again",
                self->path);
        }
        return keten_err_set(KETEN_ERR_IO, "cannot lock %s: %s", self->path, strerror(errno));
    }
    return KETEN_OK;
}

keten_err admindir_open(const char *path, admindir **out)
{
    keten_err e;
    char file[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    admindir *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "opening %s", path);
    }
    self->lock_fd = -1;
    int n = snprintf(self->path, sizeof self->path, "%s", path);
    if (n < 0 || (size_t)n >= sizeof self->path) {
        e = keten_err_set(KETEN_ERR_INVALID, "--dir %s is too long", path);
        goto out;
    }
    /* A trailing slash would make "ADMIN//state" in messages. */
    while (n > 1 && self->path[n - 1] == '/') {
        self->path[--n] = '\0';
    }
    if ((e = lock_folder(self)) != KETEN_OK) {
        goto out;
    }
    if ((e = admindir_file(self, ADMINDIR_ANCHOR, file)) != KETEN_OK) {
        goto out;
    }
    if ((e = keten_directory_anchor_load(file, &self->anchor)) != KETEN_OK) {
        if (e == KETEN_ERR_NOT_FOUND) {
            e = keten_err_set(e, "%s has no %s; is it an ADMIN directory made by keten-keys init?",
                self->path, ADMINDIR_ANCHOR);
        }
        goto out;
    }
    if ((e = admindir_file(self, ADMINDIR_STATE, file)) != KETEN_OK) {
        goto out;
    }
    e = keten_file_read_secret(file, ADMINDIR_STATE_MAX, &buf, &len);
    if (e != KETEN_OK) {
        if (e == KETEN_ERR_NOT_FOUND) {
            e = keten_err_set(e, "%s is missing; restore ADMIN from your backup", file);
        }
        goto out;
    }
    e = keten_dirbuild_load(buf, len, &self->draft);
    if (e != KETEN_OK) {
        goto out;
    }
    if (strcmp(keten_dirbuild_doc(self->draft)->network, self->anchor->network) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "%s is for network '%s' but %s/%s for '%s'; the ADMIN directory was mixed up, "
            "restore it from your backup",
            file, keten_dirbuild_doc(self->draft)->network, self->path, ADMINDIR_ANCHOR,
            self->anchor->network);
        goto out;
    }
    /* A draft whose version was published already means ADMIN/state was
     * restored from a backup older than published/: every edit of it would
     * be lost or, published, give a second document under one version. */
    uint64_t next = keten_dirbuild_doc(self->draft)->version;
    struct stat st;
    if ((e = admindir_published_file(self, next, file)) != KETEN_OK) {
        goto out;
    }
    if (lstat(file, &st) == 0) {
        e = keten_err_set(KETEN_ERR_EXISTS,
            "version %llu was already published (%s exists), but %s/%s is the draft of that "
            "version: the state is older than what was published; restore the backup of %s "
            "made after version %llu was published",
            (unsigned long long)next, file, self->path, ADMINDIR_STATE, self->path,
            (unsigned long long)next);
        goto out;
    }
    *out = self;
    self = NULL;
out:
    if (buf != NULL) {
        sodium_free(buf);
    }
    admindir_close(&self);
    return e;
}

keten_err admindir_save(admindir *self)
{
    char file[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = admindir_file(self, ADMINDIR_STATE, file);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_dirbuild_save(self->draft, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_file_write(file, buf, len, 0600, false);
    free(buf);
    return e;
}

uint64_t admindir_next_version(const admindir *self)
{
    return keten_dirbuild_doc(self->draft)->version;
}

uint64_t admindir_latest_version(const admindir *self)
{
    uint64_t v = admindir_next_version(self);
    return v > 0 ? v - 1 : 0;
}

keten_err admindir_reserve_rule_ids(admindir *self)
{
    uint64_t latest = admindir_latest_version(self);
    for (uint64_t v = 1; v <= latest; v++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        Keten__SignedDirectory *sd = NULL;
        Keten__Directory *doc = NULL;
        keten_err e = admindir_read_published(self, v, &buf, &len, &sd, &doc);
        if (e != KETEN_OK) {
            return e;
        }
        for (size_t i = 0; i < doc->n_rules; i++) {
            keten_dirbuild_rule_ids_used(self->draft, doc->rules[i]->id);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&doc);
        keten_pb_free((ProtobufCMessage **)(void *)&sd);
        free(buf);
    }
    return KETEN_OK;
}

keten_err admindir_read_published(const admindir *self, uint64_t version, uint8_t **buf_out,
    size_t *len_out, Keten__SignedDirectory **sd_out, Keten__Directory **doc_out)
{
    char file[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    keten_err e = admindir_published_file(self, version, file);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_file_read(file, KETEN_DIRECTORY_MAX, &buf, &len);
    if (e != KETEN_OK) {
        if (e == KETEN_ERR_NOT_FOUND) {
            e = keten_err_set(e,
                "%s, the copy of published version %llu, is missing; restore it from your "
                "backup of ADMIN",
                file, (unsigned long long)version);
        }
        goto out;
    }
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, file, &sd);
    if (e != KETEN_OK) {
        goto out;
    }
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__directory, sd->directory.data, sd->directory.len, KETEN_DIRECTORY_MAX, file, &doc);
    if (e != KETEN_OK) {
        goto out;
    }
    if (doc->version != version || strcmp(doc->network, self->anchor->network) != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "%s holds version %llu of network '%s', not version %llu of '%s'; restore it from "
            "your backup of ADMIN",
            file, (unsigned long long)doc->version, doc->network, (unsigned long long)version,
            self->anchor->network);
        goto out;
    }
    if (buf_out != NULL) {
        *buf_out = buf;
        *len_out = len;
        buf = NULL;
    }
    if (sd_out != NULL) {
        *sd_out = sd;
        sd = NULL;
    }
    if (doc_out != NULL) {
        *doc_out = doc;
        doc = NULL;
    }
out:
    free(buf);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    return e;
}

keten_err admindir_signing_set(const admindir *self, uint64_t version, adminkey_set *out)
{
    if (version <= 1) {
        return adminkey_set_from_pb(
            self->anchor->admins, self->anchor->n_admins, self->anchor->threshold, out);
    }
    Keten__Directory *doc = NULL;
    keten_err e = admindir_read_published(self, version - 1, NULL, NULL, NULL, &doc);
    if (e != KETEN_OK) {
        return e;
    }
    e = adminkey_set_from_pb(doc->admins, doc->n_admins, doc->threshold, out);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    return e;
}

keten_err admindir_open_signer(const admindir *self, const char *key_file, uint64_t admin_index,
    const char *passfile, keten_identity **out)
{
    char file[PATH_MAX];
    if (key_file == NULL) {
        char name[64];
        snprintf(name, sizeof name, "admin-%llu.secret", (unsigned long long)admin_index);
        keten_err e = admindir_file(self, name, file);
        if (e != KETEN_OK) {
            return e;
        }
        struct stat st;
        if (lstat(file, &st) != 0 && errno == ENOENT) {
            return keten_err_set(KETEN_ERR_NOT_FOUND,
                "%s does not exist: --admin I picks one of the keys made by init --admins N; "
                "an administrator with their own key signs with --key FILE",
                file);
        }
        key_file = file;
    }
    return adminkey_open(key_file, passfile, out);
}

keten_err admindir_load_names(const admindir *self, adminnames **out)
{
    char file[PATH_MAX];
    keten_err e = admindir_file(self, ADMINNAMES_FILE, file);
    if (e != KETEN_OK) {
        return e;
    }
    return adminnames_load(file, out);
}

keten_err admindir_save_names(const admindir *self, const adminnames *names)
{
    char file[PATH_MAX];
    keten_err e = admindir_file(self, ADMINNAMES_FILE, file);
    if (e != KETEN_OK) {
        return e;
    }
    return adminnames_save(names, file);
}

void admindir_published_free(admindir_published *p)
{
    if (p == NULL) {
        return;
    }
    free(p->buf);
    keten_pb_free((ProtobufCMessage **)(void *)&p->sd);
    keten_pb_free((ProtobufCMessage **)(void *)&p->doc);
    memset(p, 0, sizeof *p);
}

keten_err admindir_last_published(const admindir *self, uint64_t now_ms, admindir_published *out)
{
    memset(out, 0, sizeof *out);
    uint64_t version = admindir_latest_version(self);
    if (version == 0) {
        return KETEN_OK;
    }
    adminkey_set signing, own;
    keten_err e = admindir_published_file(self, version, out->file);
    if (e == KETEN_OK) {
        e = admindir_read_published(self, version, &out->buf, &out->len, &out->sd, &out->doc);
    }
    if (e == KETEN_OK) {
        e = admindir_signing_set(self, version, &signing);
    }
    if (e == KETEN_OK) {
        e = adminkey_set_from_pb(out->doc->admins, out->doc->n_admins, out->doc->threshold, &own);
    }
    if (e == KETEN_OK) {
        e = dirsig_count(out->sd, &signing, &own, &out->tally);
    }
    if (e != KETEN_OK) {
        admindir_published_free(out);
        return e;
    }
    out->version = version;
    out->expired = now_ms >= out->doc->expires_at;
    out->valid = out->tally.enough && !out->expired
        && dirsig_verify_with_set(self->anchor->network, &signing, out->buf, out->len, now_ms)
            == KETEN_OK;
    keten_err_clear();
    return KETEN_OK;
}
