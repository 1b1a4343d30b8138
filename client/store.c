#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "log.h"
#include "util.h"

/* Transactions open at once inside a batch (a read inside a write inside a
 * read...); the node's code nests at most two or three. */
#define NEST_MAX 8

struct keten_store {
    MDB_env *env;
    MDB_dbi dbi[KETEN_DB__COUNT];
    MDB_txn *batch; /* the batch's parent transaction, NULL without a batch */
    bool batch_dirty; /* a write child was committed into the batch */
    MDB_txn *nest[NEST_MAX]; /* children open in the batch, innermost last */
    bool nest_read[NEST_MAX]; /* that child was begun for reading */
    size_t n_nest;
    size_t n_plain; /* transactions open outside a batch */
    uint64_t commits; /* durable commits */
    char dir[PATH_MAX]; /* HOME/store */
    bool disk_full; /* a durable commit failed for want of disk space */
    uint64_t disk_full_since; /* wall ms */
    uint64_t disk_free; /* bytes free on the filesystem at the last look */
    uint64_t disk_checked; /* mono ms of the last look (keten_store_disk_tick) */
    keten_store_commit_hook on_commit; /* after each durable commit, or NULL */
    keten_promhttp_hist *commit_hist; /* batch commits' durations (us), or NULL */
    void *on_commit_ctx;
};

static const char *const db_names[KETEN_DB__COUNT] = {
    [KETEN_DB_OUTBOX] = "outbox",
    [KETEN_DB_SENT] = "sent",
    [KETEN_DB_INBOX] = "inbox",
    [KETEN_DB_MESSAGES] = "messages",
    [KETEN_DB_SEEN] = "seen",
    [KETEN_DB_DIRECTORIES] = "directories",
    [KETEN_DB_CHECKPOINTS] = "checkpoints",
    [KETEN_DB_EVIDENCE] = "evidence",
    [KETEN_DB_STATE] = "state",
    [KETEN_DB_EVENTS] = "events",
    [KETEN_DB_TOKENS] = "tokens",
    [KETEN_DB_IDEMPOTENCY] = "idempotency",
};

static keten_err lmdb_err(int rc, const char *what)
{
    if (rc == MDB_MAP_FULL) {
        return keten_err_set(KETEN_ERR_STORE_FULL,
            "the node store is full (%s); free disk space or move HOME/store", what);
    }
    return keten_err_set(KETEN_ERR_STORE, "%s: %s", what, mdb_strerror(rc));
}

/* ---- full filesystem (store.h) ------------------------------------------ */

static bool disk_free_bytes(const keten_store *self, uint64_t *out)
{
    struct statvfs sv;
    if (statvfs(self->dir, &sv) != 0) {
        return false;
    }
    *out = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return true;
}

static void disk_full_leave(keten_store *self)
{
    if (!self->disk_full) {
        return;
    }
    self->disk_full = false;
    KETEN_LOG(KETEN_LOG_NOTICE, "the node's store has disk space again", "dir=%s free_bytes=%llu",
        self->dir, (unsigned long long)self->disk_free);
}

/* A durable commit failed with rc: a full filesystem (ENOSPC, EDQUOT, or
 * EIO, which LMDB reports for a short write, with little space left) is
 * KETEN_ERR_STORE_FULL naming the store's directory. */
static keten_err commit_err(keten_store *self, int rc, const char *what)
{
    uint64_t free_bytes = 0;
    bool known = disk_free_bytes(self, &free_bytes);
    if ((rc == ENOSPC || rc == EDQUOT || rc == EIO)
        && (rc != EIO || (known && free_bytes < KETEN_STORE_DISK_IO_FREE))) {
        self->disk_free = known ? free_bytes : 0;
        if (!self->disk_full) {
            self->disk_full = true;
            self->disk_full_since = keten_now_ms();
            KETEN_LOG(KETEN_LOG_ERR,
                "the node's store is full: free space on its filesystem; deliveries are not "
                "stored (the broker sends them again) and sends fail until then",
                "dir=%s free_bytes=%llu error=\"%s\"", self->dir, (unsigned long long)free_bytes,
                mdb_strerror(rc));
        }
        return keten_err_set(KETEN_ERR_STORE_FULL,
            "the node's store at %s is full: free space on its filesystem (%llu bytes free; %s: "
            "%s)",
            self->dir, (unsigned long long)free_bytes, what, mdb_strerror(rc));
    }
    return lmdb_err(rc, what);
}

/* A durable commit went through. It does not end the full state: a small
 * commit fits in the pages the file can reuse while a delivery still does
 * not; only free space on the filesystem does (keten_store_disk_tick()). */
static void committed(keten_store *self)
{
    self->commits++;
    if (self->on_commit != NULL) {
        self->on_commit(self, self->on_commit_ctx);
    }
}

void keten_store_set_commit_hook(keten_store *self, keten_store_commit_hook fn, void *ctx)
{
    self->on_commit = fn;
    self->on_commit_ctx = ctx;
}

bool keten_store_disk_full(const keten_store *self)
{
    return self->disk_full;
}

void keten_store_disk_tick(keten_store *self, uint64_t mono_ms)
{
    if (!self->disk_full || mono_ms - self->disk_checked < KETEN_STORE_DISK_CHECK_MS) {
        return;
    }
    self->disk_checked = mono_ms;
    uint64_t free_bytes = 0;
    if (disk_free_bytes(self, &free_bytes)) {
        self->disk_free = free_bytes;
        if (free_bytes >= KETEN_STORE_DISK_FREE_OK) {
            disk_full_leave(self);
        }
    }
}

json_t *keten_store_disk_json(const keten_store *self)
{
    uint64_t free_bytes = 0;
    bool known = disk_free_bytes(self, &free_bytes);
    json_t *o = json_pack("{s:s, s:b}", "dir", self->dir, "full", self->disk_full);
    if (o == NULL) {
        return NULL;
    }
    if (known && json_object_set_new(o, "free_bytes", json_integer((json_int_t)free_bytes)) != 0) {
        json_decref(o);
        return NULL;
    }
    if (self->disk_full) {
        char since[40], detail[PATH_MAX + 64];
        keten_time_iso(self->disk_full_since, since, sizeof since);
        snprintf(detail, sizeof detail,
            "the node's store at %s is full: free space on its filesystem", self->dir);
        if (json_object_set_new(o, "full_since", json_string(since)) != 0
            || json_object_set_new(o, "detail", json_string(detail)) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

keten_err keten_store_open(const char *home, keten_store **out)
{
    *out = NULL;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/store", home) >= (int)sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "home path too long: %s", home);
    }
    keten_err e = keten_mkdir(path, 0700);
    if (e != KETEN_OK) {
        return e;
    }
    keten_store *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return KETEN_ERR_NOMEM;
    }
    snprintf(self->dir, sizeof self->dir, "%s", path);
    MDB_txn *txn = NULL;
    int rc = mdb_env_create(&self->env);
    if (rc != 0) {
        self->env = NULL;
        e = lmdb_err(rc, "mdb_env_create");
        goto out;
    }
    if ((rc = mdb_env_set_maxdbs(self->env, KETEN_DB__COUNT + 2)) != 0
        || (rc = mdb_env_set_mapsize(self->env, KETEN_STORE_MAP_SIZE)) != 0) {
        e = lmdb_err(rc, "mdb_env_set");
        goto out;
    }
    /* MDB_NOTLS: a read transaction is not tied to the thread, so one may be
     * open while a write transaction is (outside a batch). */
    rc = mdb_env_open(self->env, path, MDB_NOTLS, 0600);
    if (rc != 0) {
        e = keten_err_set(
            KETEN_ERR_STORE, "cannot open the node store %s: %s", path, mdb_strerror(rc));
        goto out;
    }
    if ((rc = mdb_env_set_userctx(self->env, self)) != 0) {
        e = lmdb_err(rc, "mdb_env_set_userctx");
        goto out;
    }
    rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (rc != 0) {
        e = lmdb_err(rc, "mdb_txn_begin");
        goto out;
    }
    for (int i = 0; i < KETEN_DB__COUNT; i++) {
        rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &self->dbi[i]);
        if (rc != 0) {
            e = lmdb_err(rc, "mdb_dbi_open");
            goto out;
        }
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        e = commit_err(self, rc, "mdb_txn_commit");
        goto out;
    }
    *out = self;
    self = NULL;
    e = KETEN_OK;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    keten_store_destroy(&self);
    return e;
}

void keten_store_destroy(keten_store **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_store *self = *self_p;
    if (self->batch != NULL) {
        mdb_txn_abort(self->batch); /* and its children */
        self->batch = NULL;
    }
    if (self->env != NULL) {
        mdb_env_close(self->env);
    }
    free(self);
    *self_p = NULL;
}

MDB_dbi keten_store_dbi(const keten_store *self, keten_store_db db)
{
    return self->dbi[db];
}

keten_err keten_store_begin(keten_store *self, bool write, MDB_txn **txn)
{
    *txn = NULL;
    if (self->batch != NULL) {
        if (self->n_nest == NEST_MAX) {
            return keten_err_set(
                KETEN_ERR_STORE, "more than %d store transactions nested in a batch", NEST_MAX);
        }
        /* LMDB: a child is a write transaction; a parent has one child. */
        MDB_txn *parent = self->n_nest > 0 ? self->nest[self->n_nest - 1] : self->batch;
        int rc = mdb_txn_begin(self->env, parent, 0, txn);
        if (rc != 0) {
            *txn = NULL;
            return lmdb_err(rc, "mdb_txn_begin (in a batch)");
        }
        self->nest[self->n_nest] = *txn;
        self->nest_read[self->n_nest] = !write;
        self->n_nest++;
        return KETEN_OK;
    }
    int rc = mdb_txn_begin(self->env, NULL, write ? 0 : MDB_RDONLY, txn);
    if (rc != 0) {
        *txn = NULL;
        return lmdb_err(rc, "mdb_txn_begin");
    }
    self->n_plain++;
    return KETEN_OK;
}

keten_err keten_store_begin_durable(keten_store *self, MDB_txn **txn)
{
    /* MDB_NOTLS: a read transaction may be open beside the batch's write
     * transaction in this thread; it sees the last durable commit. */
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        *txn = NULL;
        return lmdb_err(rc, "mdb_txn_begin (durable read)");
    }
    self->n_plain++;
    return KETEN_OK;
}

static keten_store *store_of(MDB_txn *txn)
{
    return mdb_env_get_userctx(mdb_txn_env(txn));
}

/* Where txn is in the batch's stack of children; NEST_MAX if not there. */
static size_t nest_index(const keten_store *self, const MDB_txn *txn)
{
    for (size_t i = self->n_nest; i > 0; i--) {
        if (self->nest[i - 1] == txn) {
            return i - 1;
        }
    }
    return NEST_MAX;
}

/* Children begun after the one at i are still open: a programming error.
 * LMDB ends them with their parent; forget their handles. */
static void pop_to(keten_store *self, size_t i)
{
    if (i + 1 < self->n_nest) {
        KETEN_LOG(KETEN_LOG_ERR, "store transactions ended out of order in a batch",
            "open=%zu ended=%zu", self->n_nest, i);
    }
    self->n_nest = i;
}

keten_err keten_store_commit(MDB_txn **txn)
{
    keten_store *self = store_of(*txn);
    size_t i = self != NULL && self->batch != NULL ? nest_index(self, *txn) : NEST_MAX;
    int rc = mdb_txn_commit(*txn);
    *txn = NULL;
    if (i != NEST_MAX) {
        bool read = self->nest_read[i];
        pop_to(self, i);
        if (rc == 0 && !read) {
            self->batch_dirty = true;
        }
        return rc == 0 ? KETEN_OK : lmdb_err(rc, "mdb_txn_commit (in a batch)");
    }
    if (self == NULL) {
        return rc == 0 ? KETEN_OK : lmdb_err(rc, "mdb_txn_commit");
    }
    self->n_plain--;
    if (rc != 0) {
        return commit_err(self, rc, "mdb_txn_commit");
    }
    committed(self);
    return KETEN_OK;
}

void keten_store_abort(MDB_txn **txn)
{
    if (txn == NULL || *txn == NULL) {
        return;
    }
    keten_store *self = store_of(*txn);
    size_t i = self != NULL && self->batch != NULL ? nest_index(self, *txn) : NEST_MAX;
    if (i == NEST_MAX) {
        mdb_txn_abort(*txn);
        *txn = NULL;
        if (self != NULL) {
            self->n_plain--;
        }
        return;
    }
    if (self->nest_read[i] && i + 1 == self->n_nest) {
        /* A read child wrote nothing itself; a write child committed into
         * it must reach the batch, as it would have been durable alone. */
        int rc = mdb_txn_commit(*txn);
        if (rc != 0) {
            KETEN_LOG(KETEN_LOG_ERR, "cannot end a read transaction in a batch", "error=\"%s\"",
                mdb_strerror(rc));
        }
    } else {
        mdb_txn_abort(*txn);
    }
    *txn = NULL;
    pop_to(self, i);
}

keten_err keten_store_batch_begin(keten_store *self)
{
    if (self->batch != NULL || self->n_plain > 0) {
        return keten_err_set(KETEN_ERR_INVALID,
            "a store batch cannot begin while another batch or transaction is open");
    }
    int rc = mdb_txn_begin(self->env, NULL, 0, &self->batch);
    if (rc != 0) {
        self->batch = NULL;
        return lmdb_err(rc, "mdb_txn_begin (batch)");
    }
    self->batch_dirty = false;
    self->n_nest = 0;
    return KETEN_OK;
}

keten_err keten_store_batch_end(keten_store *self)
{
    if (self->batch == NULL) {
        return KETEN_OK;
    }
    if (self->n_nest > 0) {
        KETEN_LOG(KETEN_LOG_ERR, "store transactions still open at the end of a batch; aborted",
            "open=%zu", self->n_nest);
        mdb_txn_abort(self->nest[0]); /* and the ones nested in it */
        self->n_nest = 0;
    }
    /* timed only when the commit writes and someone reads the time */
    bool timed = self->batch_dirty && self->commit_hist != NULL;
    uint64_t start = timed ? keten_mono_us() : 0;
    int rc = mdb_txn_commit(self->batch);
    self->batch = NULL;
    if (rc != 0) {
        return commit_err(self, rc, "mdb_txn_commit (batch)");
    }
    if (self->batch_dirty) {
        if (timed) {
            keten_promhttp_observe(self->commit_hist, keten_mono_us() - start);
        }
        committed(self);
    }
    return KETEN_OK;
}

void keten_store_set_commit_histogram(keten_store *self, keten_promhttp_hist *h)
{
    self->commit_hist = h;
}

uint64_t keten_store_commits(const keten_store *self)
{
    return self->commits;
}

keten_err keten_store_get(const keten_store *self, MDB_txn *txn, keten_store_db db, const void *key,
    size_t key_len, MDB_val *val)
{
    MDB_val k = { key_len, (void *)(uintptr_t)key };
    int rc = mdb_get(txn, self->dbi[db], &k, val);
    if (rc == MDB_NOTFOUND) {
        return KETEN_ERR_NOT_FOUND;
    }
    return rc == 0 ? KETEN_OK : lmdb_err(rc, "mdb_get");
}

keten_err keten_store_put(keten_store *self, MDB_txn *txn, keten_store_db db, const void *key,
    size_t key_len, const void *val, size_t val_len)
{
    MDB_val k = { key_len, (void *)(uintptr_t)key };
    MDB_val v = { val_len, (void *)(uintptr_t)val };
    int rc = mdb_put(txn, self->dbi[db], &k, &v, 0);
    return rc == 0 ? KETEN_OK : lmdb_err(rc, "mdb_put");
}

keten_err keten_store_del(
    keten_store *self, MDB_txn *txn, keten_store_db db, const void *key, size_t key_len)
{
    MDB_val k = { key_len, (void *)(uintptr_t)key };
    int rc = mdb_del(txn, self->dbi[db], &k, NULL);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    return rc == 0 ? KETEN_OK : lmdb_err(rc, "mdb_del");
}

const char *keten_store_db_name(keten_store_db db)
{
    return db >= 0 && db < KETEN_DB__COUNT ? db_names[db] : "?";
}

keten_err keten_store_count(const keten_store *self, MDB_txn *txn, keten_store_db db, size_t *out)
{
    MDB_stat st;
    int rc = mdb_stat(txn, self->dbi[db], &st);
    if (rc != 0) {
        return lmdb_err(rc, "mdb_stat");
    }
    *out = st.ms_entries;
    return KETEN_OK;
}

keten_err keten_store_last_u64(
    const keten_store *self, MDB_txn *txn, keten_store_db db, uint64_t *key_out, MDB_val *val)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, self->dbi[db], &cur);
    if (rc != 0) {
        return lmdb_err(rc, "mdb_cursor_open");
    }
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        return KETEN_ERR_NOT_FOUND;
    }
    if (rc != 0) {
        return lmdb_err(rc, "mdb_cursor_get");
    }
    if (k.mv_size != KETEN_STORE_U64_KEY) {
        return keten_err_set(KETEN_ERR_MALFORMED, "a %s key is not 8 bytes", db_names[db]);
    }
    *key_out = keten_store_u64_get(k.mv_data);
    if (val != NULL) {
        *val = v;
    }
    return KETEN_OK;
}

void keten_store_u64_put(uint64_t v, uint8_t out[static KETEN_STORE_U64_KEY])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

uint64_t keten_store_u64_get(const uint8_t in[static KETEN_STORE_U64_KEY])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | in[i];
    }
    return v;
}
