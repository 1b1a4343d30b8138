#include "admindir.h"

#include <dirent.h>
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

/* The highest N of the files ADMIN/published/vN.dir (0 when none). Other
 * names (a temporary file left by an interrupted write) are skipped. */
static keten_err highest_published(const admindir *self, uint64_t *out)
{
    char path[PATH_MAX];
    keten_err e = admindir_file(self, ADMINDIR_PUBLISHED, path);
    if (e != KETEN_OK) {
        return e;
    }
    *out = 0;
    DIR *d = opendir(path);
    if (d == NULL) {
        return keten_err_set(errno == ENOENT ? KETEN_ERR_NOT_FOUND : KETEN_ERR_IO,
            "cannot read %s: %s; restore it from your backup of %s", path, strerror(errno),
            self->path);
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t n = strlen(name);
        if (n < 6 || name[0] != 'v' || name[1] == '0' || strcmp(name + n - 4, ".dir") != 0) {
            continue;
        }
        uint64_t v = 0;
        bool digits = true;
        for (size_t i = 1; i < n - 4 && digits; i++) {
            if (name[i] < '0' || name[i] > '9' || v > (UINT64_MAX - 9) / 10) {
                digits = false;
            } else {
                v = v * 10 + (uint64_t)(name[i] - '0');
            }
        }
        if (digits && v > *out) {
            *out = v;
        }
    }
    closedir(d);
    return KETEN_OK;
}

/* Is every signature of sd a valid one by an administrator who may sign
 * its version (of `signing`, the previous version's, or of `own`, the set
 * the draft gives the version), and is there at least one? *count receives
 * how many. */
static keten_err signatures_all_valid(const Keten__SignedDirectory *sd, const adminkey_set *signing,
    const adminkey_set *own, size_t *count, bool *all_valid)
{
    uint8_t *msg = NULL;
    size_t len = 0;
    keten_err e = dirsig_message(&sd->directory, &msg, &len);
    if (e != KETEN_OK) {
        return e;
    }
    *count = sd->n_signatures;
    *all_valid = sd->n_signatures > 0;
    for (size_t i = 0; *all_valid && i < sd->n_signatures; i++) {
        const Keten__DirectorySignature *sig = sd->signatures[i];
        *all_valid = sig->admin_pk.len == KETEN_SIGN_PK_BYTES
            && (adminkey_set_find(signing, sig->admin_pk.data) >= 0
                || adminkey_set_find(own, sig->admin_pk.data) >= 0)
            && dirsig_verifies(msg, len, sig);
    }
    free(msg);
    return KETEN_OK;
}

/* ADMIN/published/v<next>.dir exists, next being the draft's version: a
 * publish that wrote its copy and was stopped (power loss, kill, full disk)
 * before it saved ADMIN/state, or a state restored from a backup older than
 * that publish. The file is taken into the state, as the publish would have
 * done, only when it is whole, of this network and version, carries only
 * valid signatures of administrators who count for it (at least one), and
 * holds exactly the draft (the draft published at the file's issue time,
 * byte for byte): then the result is the same state that publish would have
 * saved. Anything else is refused, and nothing is written. */
static keten_err adopt_interrupted_publish(admindir *self, uint64_t next, const char *file)
{
    uint8_t *buf = NULL, *mine = NULL;
    size_t len = 0, mine_len = 0;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    adminkey_set signing, own;
    size_t n_sigs = 0;
    bool sigs_ok = false;
    keten_err e = admindir_read_published(self, next, &buf, &len, &sd, &doc);
    if (e != KETEN_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", keten_err_detail());
        e = keten_err_set(KETEN_ERR_MALFORMED,
            "%s is damaged or is not version %llu of this network (%s), and %s/%s is the draft "
            "of that version: it was not taken into the state. It was not published from here "
            "whole: move it out of %s/%s (mv %s %s.damaged) and publish again",
            file, (unsigned long long)next, why, self->path, ADMINDIR_STATE, self->path,
            ADMINDIR_PUBLISHED, file, file);
        goto out;
    }
    const Keten__Directory *draft = keten_dirbuild_doc(self->draft);
    if ((e = admindir_signing_set(self, next, &signing)) != KETEN_OK
        || (e = adminkey_set_from_pb(draft->admins, draft->n_admins, draft->threshold, &own))
            != KETEN_OK
        || (e = signatures_all_valid(sd, &signing, &own, &n_sigs, &sigs_ok)) != KETEN_OK) {
        goto out;
    }
    if (!sigs_ok) {
        e = keten_err_set(KETEN_ERR_BAD_SIGNATURE,
            "%s carries %s, and %s/%s is the draft of version %llu: it was not taken into the "
            "state. It was not published from here: move it out of %s/%s (mv %s %s.unsigned) "
            "and publish again",
            file,
            n_sigs == 0 ? "no signature"
                        : "a signature that does not verify or is not an administrator's",
            self->path, ADMINDIR_STATE, (unsigned long long)next, self->path, ADMINDIR_PUBLISHED,
            file, file);
        goto out;
    }
    bool same = doc->expires_at > doc->issued_at && doc->issued_at > 0
        && keten_dirbuild_finish(
               self->draft, doc->issued_at, doc->expires_at - doc->issued_at, &mine, &mine_len)
            == KETEN_OK
        && mine_len == sd->directory.len && memcmp(mine, sd->directory.data, mine_len) == 0;
    keten_err_clear();
    if (!same) {
        e = keten_err_set(KETEN_ERR_EXISTS,
            "version %llu was already published (%s exists), but %s/%s is the draft of that "
            "version with other contents: the state is older than what was published; restore "
            "the backup of %s made after version %llu was published",
            (unsigned long long)next, file, self->path, ADMINDIR_STATE, self->path,
            (unsigned long long)next);
        goto out;
    }
    if ((e = keten_dirbuild_advance(self->draft, sd->directory.data, sd->directory.len)) != KETEN_OK
        || (e = admindir_save(self)) != KETEN_OK) {
        goto out;
    }
    fprintf(stderr,
        "%s: note: version %llu (%s) was published, but the command was stopped before it "
        "saved %s/%s; it is now taken into the state, and the next version is %llu\n",
        keten_cli_prog(), (unsigned long long)next, file, self->path, ADMINDIR_STATE,
        (unsigned long long)(next + 1));
out:
    free(buf);
    free(mine);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    return e;
}

/* The draft against ADMIN/published (see admindir_open()). */
static keten_err check_published(admindir *self)
{
    char file[PATH_MAX];
    uint64_t next = keten_dirbuild_doc(self->draft)->version, highest = 0;
    keten_err e = highest_published(self, &highest);
    if (e != KETEN_OK) {
        return e;
    }
    if (highest > next) {
        if ((e = admindir_published_file(self, highest, file)) != KETEN_OK) {
            return e;
        }
        return keten_err_set(KETEN_ERR_EXISTS,
            "%s holds version %llu, but %s/%s is the draft of version %llu: the state is older "
            "than what was published, or that file was put there by hand; restore the backup "
            "of %s made after version %llu was published, or move out of %s/%s the files that "
            "were not published from here",
            file, (unsigned long long)highest, self->path, ADMINDIR_STATE, (unsigned long long)next,
            self->path, (unsigned long long)highest, self->path, ADMINDIR_PUBLISHED);
    }
    if (highest < next) {
        return KETEN_OK;
    }
    if ((e = admindir_published_file(self, next, file)) != KETEN_OK) {
        return e;
    }
    return adopt_interrupted_publish(self, next, file);
}

/* Does name end with suffix? */
static bool ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), m = strlen(suffix);
    return n >= m && strcmp(name + n - m, suffix) == 0;
}

/* Is folder dir (PATH_MAX) empty apart from what init writes before the
 * anchor: the files it makes (strict, files only) and temporary files? */
static bool only_init_files(const char *dir, bool top)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return false;
    }
    bool only = true;
    struct dirent *de;
    while (only && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strstr(name, ".tmp") != NULL) {
            continue;
        }
        if (!top) {
            only = false;
        } else if (strcmp(name, ADMINDIR_PUBLISHED) == 0) {
            char sub[PATH_MAX];
            int n = snprintf(sub, sizeof sub, "%s/%s", dir, name);
            only = n > 0 && (size_t)n < sizeof sub && only_init_files(sub, false);
        } else {
            only = strcmp(name, ADMINDIR_STATE) == 0 || strcmp(name, ADMINNAMES_FILE) == 0
                || (strncmp(name, "admin-", 6) == 0
                    && (ends_with(name, ".secret") || ends_with(name, ".pub")));
        }
    }
    closedir(d);
    return only;
}

bool admindir_unfinished_init(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/%s", dir, ADMINDIR_ANCHOR);
    if (n < 0 || (size_t)n >= sizeof path || lstat(path, &st) == 0 || errno != ENOENT) {
        return false;
    }
    n = snprintf(path, sizeof path, "%s/%s", dir, ADMINDIR_PUBLISHED);
    return n > 0 && (size_t)n < sizeof path && lstat(path, &st) == 0 && S_ISDIR(st.st_mode)
        && only_init_files(dir, true);
}

/* ADMIN has no network.pub (see admindir_unfinished_init()). */
static keten_err missing_anchor(const admindir *self)
{
    if (admindir_unfinished_init(self->path)) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "%s has no %s and nothing was published from it: keten-keys init was stopped before "
            "it finished there. Remove the unfinished folder (rm -r %s) and run keten-keys init "
            "again",
            self->path, ADMINDIR_ANCHOR, self->path);
    }
    return keten_err_set(KETEN_ERR_NOT_FOUND,
        "%s has no %s; is it an ADMIN directory made by keten-keys init? If so, restore %s/%s "
        "from your backup",
        self->path, ADMINDIR_ANCHOR, self->path, ADMINDIR_ANCHOR);
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
            e = missing_anchor(self);
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
    if ((e = check_published(self)) != KETEN_OK) {
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
