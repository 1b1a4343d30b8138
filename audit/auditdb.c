#include "auditdb.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nodestore.h"

#define MAX_DBS 32
#define EXPORT_MAX_DBS 8
#define EXPORT_BATCH 20000 /* puts per write transaction */
#define EXPORT_SLACK (64ull << 20) /* map room on top of twice the data */
#define EXPORT_ROUND (1ull << 20)
#define EXPORT_MODE 0644
#define EXPORT_DIR_MODE 0755
#define DATA_FILE "data.mdb"
#define LOCK_FILE "lock.mdb"

static keten_err lmdb_err(int rc, const char *what, const char *where)
{
    return keten_err_set(
        KETEN_ERR_STORE, "LMDB failed while %s (%s): %s", what, where, mdb_strerror(rc));
}

static bool regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void be64(uint64_t v, uint8_t out[static AUDITDB_KEY_BYTES])
{
    for (int i = AUDITDB_KEY_BYTES - 1; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t in[static AUDITDB_KEY_BYTES])
{
    uint64_t v = 0;
    for (int i = 0; i < AUDITDB_KEY_BYTES; i++) {
        v = (v << 8) | in[i];
    }
    return v;
}

/* db is a broker home (db/store/data.mdb) or an environment (db/data.mdb). */
static keten_err resolve(const char *db, char out[static PATH_MAX])
{
    char probe[PATH_MAX];
    if (snprintf(probe, sizeof probe, "%s/store/" DATA_FILE, db) < (int)sizeof probe
        && regular_file(probe)) {
        snprintf(out, PATH_MAX, "%s/store", db);
        return KETEN_OK;
    }
    if (snprintf(probe, sizeof probe, "%s/" DATA_FILE, db) < (int)sizeof probe
        && regular_file(probe)) {
        snprintf(out, PATH_MAX, "%s", db);
        return KETEN_OK;
    }
    return keten_err_set(KETEN_ERR_NOT_FOUND,
        "no LMDB store at %s/store/" DATA_FILE " or %s/" DATA_FILE
        "; give a broker home or an audit export made with 'keten-audit export'",
        db, db);
}

static keten_err open_optional(
    MDB_txn *txn, const char *name, MDB_dbi *dbi, bool *present, const char *where)
{
    int rc = mdb_dbi_open(txn, name, 0, dbi);
    if (rc == MDB_NOTFOUND) {
        *present = false;
        return KETEN_OK;
    }
    if (rc != 0) {
        char what[64];
        snprintf(what, sizeof what, "opening table %s", name);
        return lmdb_err(rc, what, where);
    }
    *present = true;
    return KETEN_OK;
}

/* Open the environment at db (resolved into path) read-only, with the lock
 * when it is writable, and begin the snapshot's read transaction. */
static keten_err open_env(
    const char *db, char path[static PATH_MAX], MDB_env **env, MDB_txn **txn, bool *nolock)
{
    *env = NULL;
    *txn = NULL;
    keten_err e = resolve(db, path);
    if (e != KETEN_OK) {
        return e;
    }
    char lock[PATH_MAX + 16];
    snprintf(lock, sizeof lock, "%s/" LOCK_FILE, path);
    unsigned flags = MDB_RDONLY | MDB_NOTLS;
    *nolock = false;
    if (access(lock, R_OK | W_OK) != 0) {
        /* An export (no lock file) or a read-only copy: nobody may be writing. */
        flags |= MDB_NOLOCK;
        *nolock = true;
    }
    int rc = mdb_env_create(env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(*env, MAX_DBS);
    }
    if (rc == 0) {
        rc = mdb_env_open(*env, path, flags, EXPORT_MODE);
    }
    if (rc != 0) {
        e = rc == EACCES ? keten_err_set(KETEN_ERR_IO,
                "cannot read the store %s: %s; run as the broker's user or give "
                "an export",
                path, mdb_strerror(rc))
                         : lmdb_err(rc, "opening the store read-only", path);
        goto fail;
    }
    rc = mdb_txn_begin(*env, NULL, MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED) {
        /* The writer grew its map since: adopt the new size. */
        rc = mdb_env_set_mapsize(*env, 0);
        if (rc == 0) {
            rc = mdb_txn_begin(*env, NULL, MDB_RDONLY, txn);
        }
    }
    if (rc != 0) {
        *txn = NULL;
        e = lmdb_err(rc, "beginning a read transaction", path);
        goto fail;
    }
    return KETEN_OK;
fail:
    if (*env != NULL) {
        mdb_env_close(*env);
        *env = NULL;
    }
    return e;
}

keten_err auditdb_open(const char *db, auditdb **out)
{
    *out = NULL;
    if (db == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "no database given (--db)");
    }
    auditdb *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "opening %s", db);
    }
    keten_err e = open_env(db, a->path, &a->env, &a->txn, &a->nolock);
    if (e != KETEN_OK) {
        free(a);
        return e;
    }
    bool have_leaf = false, have_node = false, have_msgs = false;
    MDB_dbi msgs;
    if ((e = open_optional(a->txn, AUDITDB_LOG_PREFIX "leaf", &a->leaf_dbi, &have_leaf, a->path))
            != KETEN_OK
        || (e = open_optional(a->txn, AUDITDB_LOG_PREFIX "node", &a->node_dbi, &have_node, a->path))
            != KETEN_OK
        || (e = open_optional(
                a->txn, AUDITDB_DIRECTORIES, &a->directories, &a->has_directories, a->path))
            != KETEN_OK
        || (e = open_optional(
                a->txn, AUDITDB_CHECKPOINTS, &a->checkpoints, &a->has_checkpoints, a->path))
            != KETEN_OK
        || (e = open_optional(a->txn, "msgs", &msgs, &have_msgs, a->path)) != KETEN_OK) {
        goto fail;
    }
    if (!have_leaf || !have_node) {
        e = keten_err_set(KETEN_ERR_WRONG_TYPE,
            "the store %s has no audit log (tables " AUDITDB_LOG_PREFIX
            "leaf and " AUDITDB_LOG_PREFIX "node); it is not a broker store or an audit export",
            a->path);
        goto fail;
    }
    a->is_export = !have_msgs;
    if ((e = keten_mlog_open(a->txn, AUDITDB_LOG_PREFIX, &a->log)) != KETEN_OK
        || (e = keten_mlog_size(a->log, a->txn, &a->size)) != KETEN_OK) {
        goto fail;
    }
    *out = a;
    return KETEN_OK;
fail:
    auditdb_close(&a);
    return e;
}

void auditdb_close(auditdb **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    auditdb *a = *self_p;
    keten_mlog_destroy(&a->log);
    if (a->txn != NULL) {
        mdb_txn_abort(a->txn);
    }
    if (a->env != NULL) {
        mdb_env_close(a->env);
    }
    free(a);
    *self_p = NULL;
}

void auditdb_describe(const auditdb *self, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s %s%s", self->is_export ? "audit export" : "broker store",
        self->path, self->nolock ? " (read without LMDB's lock)" : " (read-only snapshot)");
}

keten_err auditdb_checkpoint_last(const auditdb *self, uint64_t max_size, uint64_t *size,
    const char **note, size_t *len, bool *found)
{
    *found = false;
    if (!self->has_checkpoints) {
        return KETEN_OK;
    }
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(self->txn, self->checkpoints, &cur);
    if (rc != 0) {
        return lmdb_err(rc, "reading the checkpoints", self->path);
    }
    uint8_t kb[AUDITDB_KEY_BYTES];
    be64(max_size, kb);
    MDB_val k = { sizeof kb, kb }, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && (k.mv_size != AUDITDB_KEY_BYTES || get_be64(k.mv_data) != max_size)) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    } else if (rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    if (rc != 0) {
        return lmdb_err(rc, "reading the checkpoints", self->path);
    }
    if (k.mv_size != AUDITDB_KEY_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "a stored checkpoint has a key of %zu bytes; the store was altered", k.mv_size);
    }
    *size = get_be64(k.mv_data);
    *note = v.mv_data;
    *len = v.mv_size;
    *found = *size <= max_size;
    return KETEN_OK;
}

/* ---- export ----------------------------------------------------------- */

typedef struct table {
    const char *name;
    MDB_dbi src;
    bool present;
} table;

/* An existing folder must be empty; a missing one is made (*created). */
static keten_err prepare_dir(const char *dir, bool *created)
{
    *created = false;
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno != ENOENT) {
            return keten_err_set(KETEN_ERR_IO, "cannot look at %s: %s", dir, strerror(errno));
        }
        if (mkdir(dir, EXPORT_DIR_MODE) != 0) {
            return keten_err_set(KETEN_ERR_IO, "cannot make %s: %s", dir, strerror(errno));
        }
        *created = true;
        return KETEN_OK;
    }
    if (!S_ISDIR(st.st_mode)) {
        return keten_err_set(
            KETEN_ERR_EXISTS, "%s exists and is not a folder; give a new folder", dir);
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        return keten_err_set(KETEN_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    }
    struct dirent *ent;
    bool empty = true;
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    closedir(d);
    if (!empty) {
        return keten_err_set(KETEN_ERR_EXISTS,
            "%s exists and is not empty; give a new or empty folder (an export is never written "
            "over anything)",
            dir);
    }
    return KETEN_OK;
}

static keten_err map_size_for(const auditdb *self, const table *t, size_t n, size_t *out)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (!t[i].present) {
            continue;
        }
        MDB_stat st;
        int rc = mdb_stat(self->txn, t[i].src, &st);
        if (rc != 0) {
            return lmdb_err(rc, "measuring a table", self->path);
        }
        bytes += ((uint64_t)st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages)
            * st.ms_psize;
    }
    uint64_t want = 2 * bytes + EXPORT_SLACK;
    want = (want + EXPORT_ROUND - 1) / EXPORT_ROUND * EXPORT_ROUND;
    if (want > SIZE_MAX / 2) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the audit tables are too large to export");
    }
    *out = (size_t)want;
    return KETEN_OK;
}

static keten_err copy_tables(
    const auditdb *self, MDB_env *dst, const table *t, size_t n, const char *out_dir)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    keten_err e = KETEN_OK;
    int rc = mdb_txn_begin(dst, NULL, 0, &txn);
    if (rc != 0) {
        return lmdb_err(rc, "beginning the export", out_dir);
    }
    size_t in_txn = 0;
    for (size_t i = 0; i < n; i++) {
        if (!t[i].present) {
            continue;
        }
        MDB_dbi to;
        if ((rc = mdb_dbi_open(txn, t[i].name, MDB_CREATE, &to)) != 0) {
            e = lmdb_err(rc, "making a table of the export", out_dir);
            goto out;
        }
        if ((rc = mdb_cursor_open(self->txn, t[i].src, &cur)) != 0) {
            e = lmdb_err(rc, "reading a table", self->path);
            goto out;
        }
        MDB_val k, v;
        while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
            if ((rc = mdb_put(txn, to, &k, &v, MDB_APPEND)) != 0) {
                e = lmdb_err(rc, "writing the export", out_dir);
                goto out;
            }
            if (++in_txn == EXPORT_BATCH) {
                if ((rc = mdb_txn_commit(txn)) != 0) {
                    txn = NULL;
                    e = lmdb_err(rc, "committing the export", out_dir);
                    goto out;
                }
                txn = NULL;
                if ((rc = mdb_txn_begin(dst, NULL, 0, &txn)) != 0) {
                    e = lmdb_err(rc, "continuing the export", out_dir);
                    goto out;
                }
                in_txn = 0;
            }
        }
        if (rc != MDB_NOTFOUND) {
            e = lmdb_err(rc, "reading a table", self->path);
            goto out;
        }
        mdb_cursor_close(cur);
        cur = NULL;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        e = lmdb_err(rc, "committing the export", out_dir);
    }
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return e;
}

keten_err auditdb_export(
    const auditdb *self, const char *out_dir, uint64_t *records, keten_hash root)
{
    bool created = false;
    char data[PATH_MAX + 16], lockp[PATH_MAX + 16];
    MDB_env *dst = NULL;
    auditdb *back = NULL;
    keten_err e = KETEN_OK;
    if (snprintf(data, sizeof data, "%s/" DATA_FILE, out_dir) >= (int)sizeof data
        || snprintf(lockp, sizeof lockp, "%s/" LOCK_FILE, out_dir) >= (int)sizeof lockp) {
        return keten_err_set(KETEN_ERR_INVALID, "export folder name %s is too long", out_dir);
    }
    table t[] = {
        { AUDITDB_LOG_PREFIX "leaf", self->leaf_dbi, true },
        { AUDITDB_LOG_PREFIX "node", self->node_dbi, true },
        { AUDITDB_DIRECTORIES, self->directories, self->has_directories },
        { AUDITDB_CHECKPOINTS, self->checkpoints, self->has_checkpoints },
    };
    size_t n = sizeof t / sizeof t[0];
    size_t map = 0;
    if ((e = map_size_for(self, t, n, &map)) != KETEN_OK
        || (e = prepare_dir(out_dir, &created)) != KETEN_OK) {
        return e;
    }
    int rc = mdb_env_create(&dst);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(dst, EXPORT_MAX_DBS);
    }
    if (rc == 0) {
        rc = mdb_env_set_mapsize(dst, map);
    }
    if (rc == 0) {
        /* Our own new folder: no other process; no lock file is left behind. */
        rc = mdb_env_open(dst, out_dir, MDB_NOLOCK, EXPORT_MODE);
    }
    if (rc != 0) {
        e = lmdb_err(rc, "creating the export", out_dir);
        goto fail;
    }
    if ((e = copy_tables(self, dst, t, n, out_dir)) != KETEN_OK) {
        goto fail;
    }
    if ((rc = mdb_env_sync(dst, 1)) != 0) {
        e = lmdb_err(rc, "syncing the export", out_dir);
        goto fail;
    }
    mdb_env_close(dst);
    dst = NULL;
    if (chmod(data, EXPORT_MODE) != 0) {
        e = keten_err_set(
            KETEN_ERR_IO, "cannot make %s readable (0644): %s", data, strerror(errno));
        goto fail;
    }
    /* Read it back: same size and root as the snapshot. */
    keten_hash src_root;
    if ((e = keten_mlog_root(self->log, self->txn, self->size, src_root)) != KETEN_OK
        || (e = auditdb_open(out_dir, &back)) != KETEN_OK
        || (e = keten_mlog_root(back->log, back->txn, back->size, root)) != KETEN_OK) {
        goto fail;
    }
    if (back->size != self->size || memcmp(src_root, root, KETEN_HASH_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the export in %s does not read back as the snapshot it copied (%llu records, "
            "expected %llu)",
            out_dir, (unsigned long long)back->size, (unsigned long long)self->size);
        goto fail;
    }
    *records = back->size;
    auditdb_close(&back);
    return KETEN_OK;
fail:
    auditdb_close(&back);
    if (dst != NULL) {
        mdb_env_close(dst);
    }
    (void)unlink(data);
    (void)unlink(lockp);
    if (created) {
        (void)rmdir(out_dir);
    }
    return e;
}

/* ---- a partner node's checkpoints ---------------------------------------- */

keten_err auditdb_node_notes(const char *home, auditdb_note_fn fn, void *ctx)
{
    char path[PATH_MAX];
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    bool nolock = false;
    keten_err e = open_env(home, path, &env, &txn, &nolock);
    if (e != KETEN_OK) {
        return e;
    }
    MDB_dbi dbi;
    bool present = false;
    if ((e = open_optional(txn, AUDITDB_CHECKPOINTS, &dbi, &present, path)) != KETEN_OK) {
        goto out;
    }
    if (!present) {
        e = keten_err_set(
            KETEN_ERR_WRONG_TYPE, "%s holds no checkpoints table: not a node's store", path);
        goto out;
    }
    int rc = mdb_cursor_open(txn, dbi, &cur);
    MDB_val k, v;
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        uint64_t size = k.mv_size == AUDITDB_KEY_BYTES ? get_be64(k.mv_data) : 0;
        Keten__CheckpointRecord *rec = NULL;
        keten_err de = keten_nodestore_decode(KETEN_DB_CHECKPOINTS, k.mv_data, k.mv_size, &v,
            &keten__checkpoint_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
            (ProtobufCMessage **)(void *)&rec);
        if (de != KETEN_OK || rec->size != size || rec->note == NULL || rec->note[0] == '\0') {
            keten_nodestore_free((ProtobufCMessage **)(void *)&rec);
            e = keten_err_set(KETEN_ERR_WRONG_TYPE,
                "%s: the checkpoint record of size %llu is not a node's record with a note; give "
                "a partner node's home or a checkpoint note file",
                path, (unsigned long long)size);
            goto out;
        }
        e = fn(ctx, size, rec->note, strlen(rec->note));
        keten_nodestore_free((ProtobufCMessage **)(void *)&rec);
        if (e != KETEN_OK) {
            goto out;
        }
    }
    if (rc != MDB_NOTFOUND) {
        e = lmdb_err(rc, "reading the checkpoints", path);
    }
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return e;
}
