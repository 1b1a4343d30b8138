/* keten-audit export: a broker's audit tables as a tlog-tiles export
 * (brokerstore.h). */
#define _XOPEN_SOURCE 700
#include "brokerstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filekind.h"
#include "logproof.h"
#include "tiles.h"

#define RM_DEPTH_MAX 16 /* an export: checkpoint, keten/, tile/L/x.../N */

#define MAX_DBS 32
#define EXPORT_DIR_MODE 0755
#define STORE_MODE 0644
#define DATA_FILE "data.mdb"
#define LOCK_FILE "lock.mdb"
#define KEY_BYTES 8
#define NODE_KEY_BYTES KETEN_MERKLE_NODE_KEY_BYTES
#define LOG_PREFIX "audit-"

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

static uint64_t get_be64(const uint8_t in[static KEY_BYTES])
{
    uint64_t v = 0;
    for (int i = 0; i < KEY_BYTES; i++) {
        v = (v << 8) | in[i];
    }
    return v;
}

/* A broker home (home/store/data.mdb) and/or a bare store folder
 * (home/data.mdb), as accept allows. */
static keten_err resolve(const char *home, unsigned accept, char out[static PATH_MAX])
{
    char probe[PATH_MAX];
    if ((accept & BROKERSTORE_HOME) != 0
        && snprintf(probe, sizeof probe, "%s/store/" DATA_FILE, home) < (int)sizeof probe
        && regular_file(probe)) {
        snprintf(out, PATH_MAX, "%s/store", home);
        return KETEN_OK;
    }
    if (snprintf(probe, sizeof probe, "%s/" DATA_FILE, home) < (int)sizeof probe
        && regular_file(probe)) {
        if ((accept & BROKERSTORE_BARE) != 0) {
            snprintf(out, PATH_MAX, "%s", home);
            return KETEN_OK;
        }
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s holds a bare LMDB store (" DATA_FILE "): an export in the old format, a backup or "
            "a broker's store folder, which keten-audit does not open (LMDB is not made for "
            "files from others). An auditor: ask for a new export with keten-audit export. The "
            "operator, for your own store or backup: keten-audit export --db %s --out AUDIT_DIR, "
            "then give AUDIT_DIR",
            home, home);
    }
    if (tiles_is_export(home)) {
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is already an export; to copy it, copy the folder (cp -a)", home);
    }
    /* Say what home is instead, when it is something else keten writes. */
    struct stat st;
    char what[256];
    filekind_kind k = filekind_of_path(home, what, sizeof what);
    if (stat(home, &st) != 0 && errno == ENOENT) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "%s does not exist: there is no broker store at %s/store/" DATA_FILE
            " and no export (%s/" TILES_MANIFEST "); give a broker home or an audit export made "
            "with 'keten-audit export'",
            home, home, home);
    }
    if (stat(home, &st) == 0 && !S_ISDIR(st.st_mode)) {
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is %s, not a folder; give a broker home (the folder holding store/" DATA_FILE
            ") or an audit export (the folder made by 'keten-audit export')",
            home, k != FILEKIND_UNKNOWN ? what : "a file");
    }
    if (k == FILEKIND_FOLDER && strcmp(what, "a folder") != 0) {
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is %s, not a broker home or an audit export: it has no broker store "
            "(store/" DATA_FILE ") and no keten/manifest; give a broker home or an audit "
            "export made with 'keten-audit export'",
            home, what);
    }
    return keten_err_set(KETEN_ERR_NOT_FOUND,
        "no broker store at %s/store/" DATA_FILE " and no export (%s/" TILES_MANIFEST
        "); give a broker home or an audit export made with 'keten-audit export'",
        home, home);
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
static keten_err open_env(const char *db, unsigned accept, char path[static PATH_MAX],
    MDB_env **env, MDB_txn **txn, bool *nolock)
{
    *env = NULL;
    *txn = NULL;
    keten_err e = resolve(db, accept, path);
    if (e != KETEN_OK) {
        return e;
    }
    char lock[PATH_MAX + 16];
    snprintf(lock, sizeof lock, "%s/" LOCK_FILE, path);
    unsigned flags = MDB_RDONLY | MDB_NOTLS;
    *nolock = false;
    if (access(lock, R_OK | W_OK) != 0) {
        /* No lock file: a copy or a backup, which no broker has open (a
         * broker's store always has one): nothing to warn about. A lock file
         * we cannot write: a broker may be writing, and we cannot tell. */
        *nolock = errno != ENOENT;
        flags |= MDB_NOLOCK;
    }
    int rc = mdb_env_create(env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(*env, MAX_DBS);
    }
    if (rc == 0) {
        rc = mdb_env_open(*env, path, flags, STORE_MODE);
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

/* ---- writing the export ------------------------------------------------------ */

typedef struct exporter {
    MDB_txn *txn;
    const char *store; /* its folder, for messages */
    const char *out;
    bool sync;
    uint64_t n; /* records */
    uint64_t cp_size; /* the latest checkpoint's size; 0: none within the log */
    uint8_t *buf;
    size_t len, cap;
} exporter;

static keten_err grow(exporter *x, size_t more)
{
    if (x->len > SIZE_MAX - more) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "an entry bundle too large");
    }
    size_t need = x->len + more;
    if (need <= x->cap) {
        return KETEN_OK;
    }
    size_t nc = x->cap == 0 ? 65536 : x->cap;
    while (nc < need) {
        nc *= 2;
    }
    uint8_t *nb = realloc(x->buf, nc);
    if (nb == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "writing the export");
    }
    x->buf = nb;
    x->cap = nc;
    return KETEN_OK;
}

static keten_err write_tile(exporter *x, int level, uint64_t n, unsigned width)
{
    char rel[TILES_PATH_MAX];
    tiles_path(rel, level, n, width);
    return tiles_write_file(x->out, rel, x->buf, x->len, x->sync);
}

/* After item i (0-based, count so far i + 1) of a level with count items
 * (cp_count for the checkpoint's size): write the full tile, the partial
 * tile of the export's size and the one of the checkpoint's size. */
static keten_err tile_done(
    exporter *x, int level, uint64_t i, uint64_t count, uint64_t cp_count, bool *reset)
{
    uint64_t done = i + 1;
    uint64_t n = i / TILES_WIDTH;
    unsigned w = (unsigned)(done - n * TILES_WIDTH);
    keten_err e = KETEN_OK;
    *reset = false;
    if (w == TILES_WIDTH || done == count) {
        e = write_tile(x, level, n, w);
        *reset = true;
    } else if (done == cp_count) {
        e = write_tile(x, level, n, w); /* the checkpoint's partial tile */
    }
    return e;
}

static keten_err write_entries(exporter *x, MDB_dbi leaf_dbi)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(x->txn, leaf_dbi, &cur);
    if (rc != 0) {
        return lmdb_err(rc, "reading the log", x->store);
    }
    keten_err e = KETEN_OK;
    MDB_val k, v;
    uint64_t i = 0;
    x->len = 0;
    while (i < x->n && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (k.mv_size != KEY_BYTES || get_be64(k.mv_data) != i) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "the broker's log has no record %" PRIu64 " (the next one is filed as %s%" PRIu64
                "): a record was removed",
                i, k.mv_size != KEY_BYTES ? "(malformed key) " : "",
                k.mv_size == KEY_BYTES ? get_be64(k.mv_data) : 0);
            break;
        }
        if (v.mv_size > KETEN_AUDIT_RECORD_MAX) {
            e = keten_err_set(KETEN_ERR_TOO_LARGE,
                "record %" PRIu64 " is %zu bytes, over the cap of %u for an audit record", i,
                v.mv_size, (unsigned)KETEN_AUDIT_RECORD_MAX);
            break;
        }
        bool lng = v.mv_size > TILES_SHORT_MAX;
        if ((e = grow(x, (lng ? 6 : 2) + v.mv_size)) != KETEN_OK) {
            break;
        }
        uint8_t *p = x->buf + x->len;
        if (lng) {
            p[0] = p[1] = 0xff;
            for (int b = 0; b < 4; b++) {
                p[2 + b] = (uint8_t)(v.mv_size >> (8 * (3 - b)));
            }
            p += 6;
        } else {
            p[0] = (uint8_t)(v.mv_size >> 8);
            p[1] = (uint8_t)v.mv_size;
            p += 2;
        }
        memcpy(p, v.mv_data, v.mv_size);
        x->len = (size_t)(p - x->buf) + v.mv_size;
        bool reset = false;
        if ((e = tile_done(x, -1, i, x->n, x->cp_size, &reset)) != KETEN_OK) {
            break;
        }
        if (reset) {
            x->len = 0;
        }
        i++;
    }
    if (e == KETEN_OK && rc != 0 && rc != MDB_NOTFOUND) {
        e = lmdb_err(rc, "reading the log", x->store);
    }
    if (e == KETEN_OK && i != x->n) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the broker's log ends after %" PRIu64 " records, its size says %" PRIu64, i, x->n);
    }
    mdb_cursor_close(cur);
    return e;
}

static keten_err write_hash_tiles(exporter *x, MDB_dbi node_dbi)
{
    /* The stored tree holds exactly n + n/2 + n/4 + ... hashes. */
    MDB_stat st;
    int rc = mdb_stat(x->txn, node_dbi, &st);
    if (rc != 0) {
        return lmdb_err(rc, "reading the stored tree", x->store);
    }
    uint64_t expect = 0;
    for (uint64_t s = x->n; s > 0; s >>= 1) {
        expect += s;
    }
    if (st.ms_entries != expect) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the broker's stored tree holds %zu hashes, a log of %" PRIu64 " records has %" PRIu64
            ": records after %" PRIu64 " were removed (or hashes added)",
            (size_t)st.ms_entries, x->n, expect, x->n);
    }
    for (unsigned level = 0; level < 64 && (x->n >> level) > 0; level += TILES_HEIGHT) {
        uint64_t count = x->n >> level;
        uint64_t cp_count = x->cp_size >> level;
        x->len = 0;
        for (uint64_t i = 0; i < count; i++) {
            uint8_t kb[NODE_KEY_BYTES];
            if (!keten_merkle_node_key(kb, level, i)) {
                return keten_err_set(KETEN_ERR_INCONSISTENT,
                    "the broker's stored tree is too large to read (level %u, index %" PRIu64 ")",
                    level, i);
            }
            MDB_val k = { sizeof kb, kb }, v;
            rc = mdb_get(x->txn, node_dbi, &k, &v);
            if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size != KETEN_HASH_BYTES)) {
                return keten_err_set(KETEN_ERR_INCONSISTENT,
                    "the broker's stored tree has no valid hash of records %" PRIu64 "..%" PRIu64
                    ": the tree was altered",
                    i << level, ((i + 1) << level) - 1);
            }
            if (rc != 0) {
                return lmdb_err(rc, "reading the stored tree", x->store);
            }
            keten_err e = grow(x, KETEN_HASH_BYTES);
            if (e != KETEN_OK) {
                return e;
            }
            memcpy(x->buf + x->len, v.mv_data, KETEN_HASH_BYTES);
            x->len += KETEN_HASH_BYTES;
            bool reset = false;
            if ((e = tile_done(x, (int)(level / TILES_HEIGHT), i, count, cp_count, &reset))
                != KETEN_OK) {
                return e;
            }
            if (reset) {
                x->len = 0;
            }
        }
    }
    return KETEN_OK;
}

/* A table of 8-byte keys into a framed file; *last_* the last item. */
static keten_err write_framed(exporter *x, MDB_dbi dbi, bool present, const char *rel,
    size_t item_max, const char *item, uint64_t *last_key, uint8_t **last, size_t *last_len)
{
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    keten_err e = KETEN_OK;
    MDB_cursor *cur = NULL;
    if (last != NULL) {
        *last = NULL;
        *last_len = 0;
    }
    if (present) {
        int rc = mdb_cursor_open(x->txn, dbi, &cur);
        if (rc != 0) {
            return lmdb_err(rc, "reading a table", x->store);
        }
        MDB_val k, v;
        while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
            if (k.mv_size != KEY_BYTES || v.mv_size == 0 || v.mv_size > item_max) {
                e = keten_err_set(KETEN_ERR_INCONSISTENT,
                    "the broker's %s table holds an item with a key of %zu bytes and %zu bytes "
                    "(at most %zu): the store was altered",
                    item, k.mv_size, v.mv_size, item_max);
                break;
            }
            if ((e = tiles_frame_append(
                     &buf, &len, &cap, get_be64(k.mv_data), v.mv_data, v.mv_size))
                != KETEN_OK) {
                break;
            }
            if (last != NULL) {
                *last_key = get_be64(k.mv_data);
                *last = v.mv_data;
                *last_len = v.mv_size;
            }
        }
        if (e == KETEN_OK && rc != MDB_NOTFOUND) {
            e = lmdb_err(rc, "reading a table", x->store);
        }
        mdb_cursor_close(cur);
    }
    if (e == KETEN_OK) {
        e = tiles_write_file(x->out, rel, buf != NULL ? buf : (const uint8_t *)"", len, x->sync);
    }
    free(buf);
    return e;
}

/* Remove name (in the folder open as parent) and, if a folder, what it
 * holds; true if it is gone. Async-signal-safe; passes again over a folder
 * while a pass removed something (an entry that cannot be removed ends it). */
static bool rm_at(int parent, const char *name, int depth)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return unlinkat(parent, name, 0) == 0;
    }
    bool removed = depth < RM_DEPTH_MAX;
    while (removed) {
        removed = false;
        if (lseek(fd, 0, SEEK_SET) != 0) {
            break;
        }
        char buf[4096];
        ssize_t n;
        while ((n = getdents64(fd, buf, sizeof buf)) > 0) {
            for (size_t off = 0; off + offsetof(struct dirent64, d_name) < (size_t)n;) {
                unsigned short reclen;
                memcpy(&reclen, buf + off + offsetof(struct dirent64, d_reclen), sizeof reclen);
                if (reclen == 0 || off + reclen > (size_t)n) {
                    break;
                }
                const char *nm = buf + off + offsetof(struct dirent64, d_name);
                off += reclen;
                if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0) {
                    continue;
                }
                removed = rm_at(fd, nm, depth + 1) || removed;
            }
        }
    }
    close(fd);
    return unlinkat(parent, name, AT_REMOVEDIR) == 0;
}

void brokerstore_remove_tree(const char *dir)
{
    (void)rm_at(AT_FDCWD, dir, 0);
}

/* Empty a folder we filled (it existed, empty, before). */
static void empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) {
            continue;
        }
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, ent->d_name) < (int)sizeof p) {
            brokerstore_remove_tree(p);
        }
    }
    closedir(d);
}

static keten_err open_table(
    MDB_txn *txn, const char *name, MDB_dbi *dbi, bool *present, const char *where)
{
    return open_optional(txn, name, dbi, present, where);
}

keten_err brokerstore_export(
    const char *home, unsigned accept, const char *out_dir, bool sync, brokerstore_result *res)
{
    memset(res, 0, sizeof *res);
    char path[PATH_MAX];
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    keten_merkle_log *log = NULL;
    tiles *back = NULL;
    bool created = false, touched = false;
    exporter x = { .out = out_dir, .sync = sync };
    keten_err e = open_env(home, accept, path, &env, &txn, &res->nolock);
    if (e != KETEN_OK) {
        return e;
    }
    x.txn = txn;
    x.store = path;
    MDB_dbi leaf, node, dirs, cps;
    bool have_leaf = false, have_node = false, have_dirs = false, have_cps = false;
    if ((e = open_table(txn, LOG_PREFIX "leaf", &leaf, &have_leaf, path)) != KETEN_OK
        || (e = open_table(txn, LOG_PREFIX "node", &node, &have_node, path)) != KETEN_OK
        || (e = open_table(txn, "directories", &dirs, &have_dirs, path)) != KETEN_OK
        || (e = open_table(txn, "checkpoints", &cps, &have_cps, path)) != KETEN_OK) {
        goto out;
    }
    if (!have_leaf || !have_node) {
        char what[256], is[300] = "";
        if (filekind_of_path(home, what, sizeof what) == FILEKIND_FOLDER
            && strcmp(what, "a folder") != 0) {
            snprintf(is, sizeof is, " (%s is %s)", home, what);
        }
        e = keten_err_set(KETEN_ERR_WRONG_TYPE,
            "the store %s has no audit log (tables " LOG_PREFIX "leaf and " LOG_PREFIX
            "node); it is not a broker's store%s",
            path, is);
        goto out;
    }
    keten_hash snap_root;
    if ((e = keten_merkle_log_open(txn, LOG_PREFIX, &log)) != KETEN_OK
        || (e = keten_merkle_log_size(log, txn, &x.n)) != KETEN_OK) {
        goto out;
    }
    if (x.n > TILES_MAX_SIZE) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE, "a log of %" PRIu64 " records", x.n);
        goto out;
    }
    if ((e = keten_merkle_log_root(log, txn, x.n, snap_root)) != KETEN_OK) {
        goto out;
    }
    /* The latest checkpoint's size, for its partial tiles. */
    if (have_cps) {
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        int rc = mdb_cursor_open(txn, cps, &cur);
        if (rc == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
            mdb_cursor_close(cur);
        }
        if (rc == 0 && k.mv_size == KEY_BYTES && get_be64(k.mv_data) <= x.n) {
            x.cp_size = get_be64(k.mv_data);
        } else if (rc != 0 && rc != MDB_NOTFOUND) {
            e = lmdb_err(rc, "reading the checkpoints", path);
            goto out;
        }
    }
    if ((e = prepare_dir(out_dir, &created)) != KETEN_OK) {
        goto out;
    }
    touched = true;
    uint8_t *last = NULL;
    size_t last_len = 0;
    uint64_t last_key = 0;
    if ((e = write_entries(&x, leaf)) != KETEN_OK || (e = write_hash_tiles(&x, node)) != KETEN_OK
        || (e = write_framed(&x, dirs, have_dirs, TILES_DIRECTORIES, KETEN_DIRECTORY_MAX,
                "directories", &last_key, NULL, NULL))
            != KETEN_OK
        || (e = write_framed(&x, cps, have_cps, TILES_CHECKPOINTS, KETEN_CHECKPOINT_MAX,
                "checkpoints", &last_key, &last, &last_len))
            != KETEN_OK) {
        goto out;
    }
    if (last != NULL
        && (e = tiles_write_file(out_dir, TILES_CHECKPOINT, last, last_len, sync)) != KETEN_OK) {
        goto out;
    }
    char manifest[128];
    int ml = snprintf(manifest, sizeof manifest, TILES_FORMAT_LINE "\nsize %" PRIu64 "\n", x.n);
    if ((e = tiles_write_file(out_dir, TILES_MANIFEST, manifest, (size_t)ml, sync)) != KETEN_OK) {
        goto out;
    }
    /* Read it back: the same size and root as the snapshot. */
    if ((e = tiles_open(out_dir, &back)) != KETEN_OK
        || (e = tiles_root(back, x.n, res->root)) != KETEN_OK) {
        char d[512];
        snprintf(d, sizeof d, "%s", keten_err_detail());
        e = keten_err_set(
            KETEN_ERR_INCONSISTENT, "the export in %s does not read back: %s", out_dir, d);
        goto out;
    }
    if (tiles_size(back) != x.n || memcmp(snap_root, res->root, KETEN_HASH_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the broker's stored tree disagrees with itself: the root of its %" PRIu64
            " records from the stored subtree hashes differs from the root of the hash tiles "
            "made of them: the stored tree was altered",
            x.n);
        goto out;
    }
    res->records = x.n;
out:
    tiles_close(&back);
    free(x.buf);
    keten_merkle_log_destroy(&log);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    if (e != KETEN_OK && touched) {
        if (created) {
            brokerstore_remove_tree(out_dir);
        } else {
            empty_dir(out_dir);
        }
    }
    return e;
}
