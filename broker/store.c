#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sodium.h>

#include "envelope.h"
#include "log.h"
#include "util.h"

#define STORE_MAX_DBS 16
#define MSG_RECORD_VERSION 2
/* version, msg_id, leaf, created, expires, hash, sender, n, recipients */
#define MSG_RECORD_MIN (1 + KETEN_MSG_ID_BYTES + 24 + KETEN_HASH_BYTES)
#define MSG_RECORD_MAX                                                                             \
    (MSG_RECORD_MIN + 1 + KETEN_NAME_MAX + 1 + KETEN_MAX_RECIPIENTS * (2 + KETEN_NAME_MAX))
#define SEEN_VALUE_BYTES (KETEN_HASH_BYTES + 8 + 8)
#define TIME_KEY_BYTES (8 + KETEN_MSG_ID_BYTES)
#define EXPIRY_KEY_BYTES 16
#define FREE_SCAN_INTERVAL_MS 1000
#define DISK_FULL_RETRY_MS 10000

keten_err store_lmdb_err(int rc, const char *what)
{
    if (rc == MDB_MAP_FULL) {
        return keten_err_set(KETEN_ERR_STORE_FULL,
            "the LMDB map is full while %s; restart the broker with a larger --map-size", what);
    }
    if (rc == ENOSPC) {
        return keten_err_set(
            KETEN_ERR_STORE_FULL, "the disk is full while %s; free disk space", what);
    }
    return keten_err_set(KETEN_ERR_STORE, "LMDB failed while %s: %s", what, mdb_strerror(rc));
}

/* ---- full filesystem (store.h) ------------------------------------------ */

/* Bytes free on the store's filesystem for the broker's user; false when
 * statvfs fails. */
static bool disk_free_bytes(const store *self, uint64_t *out)
{
    struct statvfs sv;
    if (statvfs(self->dir, &sv) != 0) {
        return false;
    }
    *out = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return true;
}

/* Give the reserve file's space back to the filesystem. */
static void reserve_release(store *self)
{
    if (self->reserve_fd < 0 || atomic_load(&self->reserve_held) == 0) {
        return;
    }
    if (ftruncate(self->reserve_fd, 0) != 0) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot empty the disk reserve", "dir=%s error=\"%s\"", self->dir,
            strerror(errno));
        return;
    }
    atomic_store(&self->reserve_held, 0);
    KETEN_LOG(KETEN_LOG_WARNING, "disk reserve given back for receipts and audit records",
        "dir=%s bytes=%llu", self->dir, (unsigned long long)STORE_DISK_RESERVE);
}

/* Allocate the reserve file; false when the filesystem has no room for it
 * (nothing of it is kept then). Without a reserve file (it could not be
 * opened) there is nothing to allocate: true. */
static bool reserve_take(store *self)
{
    if (self->reserve_fd < 0) {
        return true;
    }
    if (atomic_load(&self->reserve_held) == STORE_DISK_RESERVE) {
        return true;
    }
    int rc = posix_fallocate(self->reserve_fd, 0, (off_t)STORE_DISK_RESERVE);
    if (rc != 0) {
        if (ftruncate(self->reserve_fd, 0) != 0) {
            KETEN_LOG(KETEN_LOG_ERR, "cannot empty the disk reserve", "dir=%s error=\"%s\"",
                self->dir, strerror(errno));
        }
        return false;
    }
    atomic_store(&self->reserve_held, STORE_DISK_RESERVE);
    return true;
}

/* The filesystem is full: refuse submits, give the reserve back. */
static void disk_full_enter(store *self, uint64_t free_bytes, const char *why)
{
    if (!atomic_load(&self->disk_full)) {
        KETEN_LOG(KETEN_LOG_ERR,
            "the broker's filesystem is full: new submits are refused (STORE_FULL) until disk "
            "space is freed; deliveries and receipts go on",
            "dir=%s free_bytes=%llu why=\"%s\"", self->dir, (unsigned long long)free_bytes, why);
    }
    atomic_store(&self->disk_full, true);
    atomic_store(&self->full, true);
    reserve_release(self);
}

/* Look at the filesystem (store_room()): in_file is what the data file
 * holds that new pages can reuse without growing it (free pages, and what
 * a failed commit wrote past the last page). */
static void disk_check(store *self, uint64_t in_file)
{
    uint64_t fs_free = 0;
    if (!disk_free_bytes(self, &fs_free)) {
        atomic_store(&self->disk_free, UINT64_MAX);
        atomic_store(&self->disk_room, UINT64_MAX);
        return;
    }
    if (atomic_load(&self->reserve_held) == 0
        && fs_free >= STORE_DISK_RESERVE + 2 * STORE_DISK_MARGIN && reserve_take(self)) {
        KETEN_LOG(KETEN_LOG_INFO, "disk reserve allocated", "dir=%s bytes=%llu", self->dir,
            (unsigned long long)STORE_DISK_RESERVE);
        (void)disk_free_bytes(self, &fs_free);
    }
    uint64_t room = fs_free + in_file;
    atomic_store(&self->disk_free, fs_free);
    atomic_store(&self->disk_room, room);
    if (atomic_load(&self->disk_full)) {
        /* Leave the state only with a margin over what the reserve gave
         * back, so that it does not flap at the edge. */
        if (room >= STORE_DISK_RESERVE + 2 * STORE_DISK_MARGIN) {
            atomic_store(&self->disk_full, false);
            KETEN_LOG(KETEN_LOG_NOTICE,
                "disk space freed for the broker's store: new submits are taken again",
                "dir=%s free_bytes=%llu room_bytes=%llu", self->dir, (unsigned long long)fs_free,
                (unsigned long long)room);
        }
        return;
    }
    if (room < STORE_DISK_MARGIN && !self->disk_check_off) {
        disk_full_enter(self, fs_free, "free space below the margin");
    }
}

keten_err store_env_err(store *self, int rc, const char *what)
{
    if (rc == ENOSPC || rc == EDQUOT || rc == EIO) {
        uint64_t free_bytes = 0;
        bool known = disk_free_bytes(self, &free_bytes);
        if (rc != EIO || (known && free_bytes < STORE_DISK_IO_FREE)) {
            atomic_store(&self->disk_free, known ? free_bytes : 0);
            disk_full_enter(self, free_bytes, mdb_strerror(rc));
            return keten_err_set(KETEN_ERR_STORE_FULL,
                "the broker's filesystem is full while %s (%s; %llu bytes free in %s); free disk "
                "space there",
                what, mdb_strerror(rc), (unsigned long long)free_bytes, self->dir);
        }
    }
    return store_lmdb_err(rc, what);
}

const char *store_full_detail(const store *self)
{
    if (atomic_load(&((store *)self)->disk_full) || self->refused_for_disk) {
        return "store full: the broker's filesystem is full; free disk space";
    }
    return "store full: enlarge --map-size";
}

void store_be64(uint64_t v, uint8_t out[static 8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

uint64_t store_get_be64(const uint8_t in[static 8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | in[i];
    }
    return v;
}

size_t store_node_key(const char *id, uint64_t seq, uint8_t out[static STORE_NODE_KEY_MAX])
{
    if (!keten_name_valid(id)) {
        return 0;
    }
    size_t n = strlen(id);
    memcpy(out, id, n);
    out[n] = 0;
    store_be64(seq, out + n + 1);
    return n + 1 + 8;
}

/* ---- environment ------------------------------------------------------- */

static keten_err open_dbi(MDB_txn *txn, const char *name, MDB_dbi *dbi)
{
    int rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi);
    if (rc != 0) {
        char what[64];
        snprintf(what, sizeof what, "opening database %s", name);
        return store_lmdb_err(rc, what);
    }
    return KETEN_OK;
}

static uint64_t reserve_for(uint64_t map_size)
{
    uint64_t r = map_size / 10;
    if (r < STORE_RESERVE_MIN) {
        r = STORE_RESERVE_MIN;
    }
    if (r > map_size / 2) {
        r = map_size / 2;
    }
    return r;
}

/* Resident file-backed (and shared) pages of this process, or 0. */
static uint64_t file_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0, shared = 0;
    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%llu %llu %llu", &size, &resident, &shared) != 3) {
        shared = 0;
    }
    fclose(f);
    return shared;
}

/* Where LMDB mapped data_path (it does not say: mdb_env_info() gives the
 * address only for MDB_FIXEDMAP): the mapping of that file in
 * /proc/self/maps. Not found: no trimming, nothing else changes. */
static void find_map(store *s, const char *data_path)
{
    char real[PATH_MAX];
    if (realpath(data_path, real) == NULL) {
        return;
    }
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL) {
        return;
    }
    char line[PATH_MAX + 128];
    size_t rlen = strlen(real);
    while (fgets(line, sizeof line, f) != NULL) {
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n') {
            line[--n] = '\0';
        }
        unsigned long lo = 0, hi = 0;
        if (n < rlen || strcmp(line + n - rlen, real) != 0 || sscanf(line, "%lx-%lx", &lo, &hi) != 2
            || hi <= lo) {
            continue;
        }
        if (s->map_addr == NULL || (uintptr_t)lo < (uintptr_t)s->map_addr) {
            s->map_addr = (void *)(uintptr_t)lo;
        }
        s->map_len = (size_t)(hi - (uintptr_t)s->map_addr);
    }
    fclose(f);
}

/* A store written by an older broker keyed messages by msg_id (16 bytes). */
static keten_err check_layout(store *s, MDB_txn *txn, const char *path)
{
    MDB_dbi dbis[3] = { s->msgs, s->envelopes, s->expiry };
    size_t want[3] = { 8, 8, EXPIRY_KEY_BYTES };
    for (size_t i = 0; i < 3; i++) {
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        int rc = mdb_cursor_open(txn, dbis[i], &cur);
        if (rc == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
            mdb_cursor_close(cur);
        }
        if (rc == MDB_NOTFOUND) {
            continue;
        }
        if (rc != 0) {
            return store_lmdb_err(rc, "checking the store's layout");
        }
        if (k.mv_size != want[i]) {
            return keten_err_set(KETEN_ERR_WRONG_TYPE,
                "the store in %s was written by an older keten-broker (messages keyed by msg_id); "
                "deliver or expire its messages with that version first",
                path);
        }
    }
    return KETEN_OK;
}

keten_err store_open(const char *home, uint64_t map_size, store **out)
{
    *out = NULL;
    char path[PATH_MAX];
    keten_err e;
    MDB_txn *txn = NULL;
    if (map_size < STORE_MAP_SIZE_MIN || map_size > SIZE_MAX / 2) {
        return keten_err_set(KETEN_ERR_INVALID,
            "map size %llu bytes is out of range (at least %llu)", (unsigned long long)map_size,
            (unsigned long long)STORE_MAP_SIZE_MIN);
    }
    if (snprintf(path, sizeof path, "%s/store", home) >= (int)sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "home path %s is too long", home);
    }
    if ((e = keten_mkdir(path, 0700)) != KETEN_OK) {
        return e;
    }
    store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "store handle");
    }
    s->lock_fd = -1;
    s->reserve_fd = -1;
    _Static_assert(sizeof s->recent_key == crypto_shorthash_KEYBYTES, "recent_key size");
    s->recent = calloc(STORE_RECENT_SLOTS, sizeof *s->recent);
    if (s->recent == NULL) {
        free(s);
        return keten_err_set(KETEN_ERR_NOMEM, "store handle");
    }
    crypto_shorthash_keygen(s->recent_key);
    atomic_init(&s->full, false);
    atomic_init(&s->no_room, false);
    atomic_init(&s->disk_full, false);
    atomic_init(&s->disk_free, UINT64_MAX);
    atomic_init(&s->disk_room, UINT64_MAX);
    atomic_init(&s->reserve_held, 0);
    snprintf(s->dir, sizeof s->dir, "%s", path);
    char lock_path[PATH_MAX + 16];
    snprintf(lock_path, sizeof lock_path, "%s/broker.lock", path);
    s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lock_fd < 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot open %s: %s", lock_path, strerror(errno));
        goto fail;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        e = keten_err_set(KETEN_ERR_EXISTS,
            "another keten-broker is running on %s; stop it first (one broker per store)", path);
        goto fail;
    }
    atomic_init(&s->used, 0);
#ifdef KETEN_TEST_HOOKS
    const char *hook = getenv(STORE_NO_DISK_CHECK_ENV);
    if (hook != NULL && strcmp(hook, "1") == 0) {
        s->disk_check_off = true;
        KETEN_LOG(KETEN_LOG_WARNING,
            "test hook armed: no free-space check before commits (a full filesystem shows as a "
            "failed commit)",
            "env=%s", STORE_NO_DISK_CHECK_ENV);
    }
#endif
    char reserve_path[PATH_MAX + 32];
    snprintf(reserve_path, sizeof reserve_path, "%s/%s", path, STORE_DISK_RESERVE_FILE);
    s->reserve_fd = open(reserve_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->reserve_fd < 0) {
        KETEN_LOG(KETEN_LOG_WARNING, "no disk reserve: a full filesystem may lose audit records",
            "file=%s error=\"%s\"", reserve_path, strerror(errno));
    } else {
        struct stat rst;
        if (fstat(s->reserve_fd, &rst) == 0 && (uint64_t)rst.st_size == STORE_DISK_RESERVE
            && (uint64_t)rst.st_blocks * 512u >= STORE_DISK_RESERVE) {
            atomic_store(&s->reserve_held, STORE_DISK_RESERVE);
        }
    }
    int rc = mdb_env_create(&s->env);
    if (rc != 0) {
        e = store_lmdb_err(rc, "creating the environment");
        goto fail;
    }
    if ((rc = mdb_env_set_maxdbs(s->env, STORE_MAX_DBS)) != 0
        || (rc = mdb_env_set_mapsize(s->env, (size_t)map_size)) != 0) {
        e = store_lmdb_err(rc, "setting up the environment");
        goto fail;
    }
    rc = mdb_env_open(s->env, path, MDB_NOTLS | MDB_NORDAHEAD, 0600);
    if (rc != 0) {
        char what[PATH_MAX + 32];
        snprintf(what, sizeof what, "opening %s", path);
        e = store_lmdb_err(rc, what);
        goto fail;
    }
    MDB_envinfo info;
    MDB_stat st;
    if ((rc = mdb_env_info(s->env, &info)) != 0 || (rc = mdb_env_stat(s->env, &st)) != 0) {
        e = store_lmdb_err(rc, "reading the environment's size");
        goto fail;
    }
    s->map_size = info.me_mapsize;
    s->page_size = st.ms_psize;
    char data_path[PATH_MAX + 16];
    snprintf(data_path, sizeof data_path, "%s/data.mdb", path);
    find_map(s, data_path);
    s->file_pages_base = file_pages();
    s->reserve = reserve_for(s->map_size);
    if (!reserve_take(s)) {
        uint64_t free_bytes = 0;
        (void)disk_free_bytes(s, &free_bytes);
        disk_full_enter(s, free_bytes, "no room for the disk reserve");
    }
    if ((e = store_begin(s, true, &txn)) != KETEN_OK) {
        goto fail;
    }
    if ((e = open_dbi(txn, "msgs", &s->msgs)) != KETEN_OK
        || (e = open_dbi(txn, "envelopes", &s->envelopes)) != KETEN_OK
        || (e = open_dbi(txn, "queue", &s->queue)) != KETEN_OK
        || (e = open_dbi(txn, "seen", &s->seen)) != KETEN_OK
        || (e = open_dbi(txn, "seen-time", &s->seen_time)) != KETEN_OK
        || (e = open_dbi(txn, "expiry", &s->expiry)) != KETEN_OK
        || (e = open_dbi(txn, "notices", &s->notices)) != KETEN_OK
        || (e = open_dbi(txn, "directories", &s->directories)) != KETEN_OK
        || (e = open_dbi(txn, "checkpoints", &s->checkpoints)) != KETEN_OK
        || (e = keten_merkle_log_open(txn, STORE_LOG_PREFIX, &s->log)) != KETEN_OK) {
        goto fail;
    }
    if ((e = check_layout(s, txn, path)) != KETEN_OK) {
        goto fail;
    }
    if ((e = store_commit(s, &txn)) != KETEN_OK) {
        goto fail;
    }
    *out = s;
    return KETEN_OK;
fail:
    store_abort(&txn);
    store_close(&s);
    return e;
}

void store_close(store **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    store *s = *self_p;
    keten_merkle_log_destroy(&s->log);
    if (s->env != NULL) {
        mdb_env_close(s->env);
    }
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
    }
    if (s->reserve_fd >= 0) {
        close(s->reserve_fd);
    }
    free(s->recent);
    free(s);
    *self_p = NULL;
}

keten_err store_begin(store *self, bool write, MDB_txn **txn)
{
    *txn = NULL;
    int rc = mdb_txn_begin(self->env, NULL, write ? 0 : MDB_RDONLY, txn);
    if (rc != 0) {
        *txn = NULL;
        return store_lmdb_err(rc, write ? "starting a write transaction" : "starting a read");
    }
    return KETEN_OK;
}

keten_err store_commit(store *self, MDB_txn **txn)
{
    if (*txn == NULL) {
        return keten_err_set(KETEN_ERR_STORE, "commit without a transaction");
    }
    int rc = mdb_txn_commit(*txn);
    *txn = NULL;
    if (rc != 0) {
        return store_env_err(self, rc, "committing");
    }
    return KETEN_OK;
}

void store_abort(MDB_txn **txn)
{
    if (txn != NULL && *txn != NULL) {
        mdb_txn_abort(*txn);
        *txn = NULL;
    }
}

/* Pages on LMDB's free list (as mdb_stat -f counts them). */
static keten_err count_free_pages(store *self, uint64_t *out)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    keten_err e = store_begin(self, false, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    uint64_t n = 0;
    int rc = mdb_cursor_open(txn, 0, &cur);
    if (rc == 0) {
        MDB_val k, v;
        while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
            if (v.mv_size >= sizeof(size_t)) {
                size_t count;
                memcpy(&count, v.mv_data, sizeof count);
                n += count;
            }
        }
        if (rc == MDB_NOTFOUND) {
            rc = 0;
        }
        mdb_cursor_close(cur);
    }
    store_abort(&txn);
    if (rc != 0) {
        return store_lmdb_err(rc, "counting free pages");
    }
    *out = n;
    return KETEN_OK;
}

/* Bytes of the data file past its last page in use (a failed commit's
 * pages), which new pages overwrite without growing the file. */
static uint64_t data_file_tail(const store *self, uint64_t pages)
{
    int fd = -1;
    struct stat st;
    if (mdb_env_get_fd(self->env, &fd) != 0 || fstat(fd, &st) != 0) {
        return 0;
    }
    uint64_t used = pages * self->page_size;
    return (uint64_t)st.st_size > used ? (uint64_t)st.st_size - used : 0;
}

keten_err store_room(store *self, uint64_t now_ms, bool *full_out)
{
    MDB_envinfo info;
    int rc = mdb_env_info(self->env, &info);
    if (rc != 0) {
        return store_lmdb_err(rc, "reading the map use");
    }
    uint64_t limit = self->map_size - self->reserve;
    uint64_t pages = (uint64_t)info.me_last_pgno + 1;
    uint64_t used = pages * self->page_size;
    uint64_t disk_free = atomic_load(&self->disk_free);
    bool disk_tight = atomic_load(&self->disk_full)
        || (disk_free != UINT64_MAX && disk_free < STORE_DISK_RESERVE + 2 * STORE_DISK_MARGIN);
    if (used > limit || disk_tight) {
        /* The high-water mark says full (or the filesystem is nearly so);
         * pages freed since may be reused. */
        if (now_ms - self->last_free_scan_ms >= FREE_SCAN_INTERVAL_MS
            || self->last_free_scan_ms == 0) {
            keten_err e = count_free_pages(self, &self->free_pages);
            if (e != KETEN_OK) {
                return e;
            }
            self->last_free_scan_ms = now_ms;
        }
    }
    uint64_t free_pages = 0;
    if (used > limit || disk_tight) {
        free_pages = self->free_pages < pages ? self->free_pages : pages;
    }
    if (used > limit) {
        used = (pages - free_pages) * self->page_size;
    }
    disk_check(self, free_pages * self->page_size + data_file_tail(self, pages));
    bool full = used > limit || now_ms < self->disk_full_until_ms || atomic_load(&self->disk_full);
    /* Every envelope is longer than its padded payload, at least the
     * smallest bucket: with less room than that and the overhead, no
     * submit fits. */
    uint64_t smallest = STORE_SUBMIT_OVERHEAD_BYTES + keten_envelope_pad_bucket(0);
    atomic_store(&self->used, used);
    atomic_store(&self->no_room, used <= limit && limit - used < smallest);
    atomic_store(&self->full, full);
    if (full_out != NULL) {
        *full_out = full;
    }
    return KETEN_OK;
}

bool store_fits(store *self, uint64_t extra)
{
    uint64_t limit = self->map_size - self->reserve;
    uint64_t used = atomic_load(&self->used);
    uint64_t room = atomic_load(&self->disk_room);
    self->refused_for_disk = atomic_load(&self->disk_full)
        || (!self->disk_check_off
            && (room < STORE_DISK_MARGIN || extra > room - STORE_DISK_MARGIN));
    if (self->refused_for_disk && !atomic_load(&self->disk_full)) {
        disk_full_enter(self, atomic_load(&self->disk_free), "a submit would not leave the margin");
    }
    return !self->refused_for_disk && used <= limit && extra <= limit - used;
}

void store_mark_full(store *self, uint64_t now_ms)
{
    self->disk_full_until_ms = now_ms + DISK_FULL_RETRY_MS;
    self->last_free_scan_ms = 0;
    atomic_store(&self->full, true);
}

/* Drop the map's pages if more than the slack of them are mapped. */
static void trim_if_needed(store *self)
{
    self->random_reads = 0;
    if (self->map_addr == NULL) {
        return;
    }
    uint64_t pages = file_pages();
    if (pages <= self->file_pages_base + STORE_TRIM_SLACK / self->page_size) {
        return;
    }
    /* The map is read-only and shared (no MDB_WRITEMAP): dropping its page
     * table entries loses nothing. A failure only means no trim. */
    (void)madvise(self->map_addr, self->map_len, MADV_DONTNEED);
}

void store_trim(store *self, uint64_t mono_ms)
{
    if (mono_ms - self->last_trim_ms < STORE_TRIM_MS) {
        return;
    }
    self->last_trim_ms = mono_ms;
    trim_if_needed(self);
}

/* A read of `seen` (random msg_id keys) maps a page somewhere in it. */
static void random_read(store *self)
{
    if (++self->random_reads >= STORE_TRIM_RANDOM) {
        trim_if_needed(self);
    }
}

/* ---- messages ---------------------------------------------------------- */

static size_t put_name(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (uint8_t)n;
    memcpy(p + 1, s, n);
    return n + 1;
}

static size_t encode_msg(const store_msg *m, uint8_t *buf)
{
    size_t o = 0;
    buf[o++] = MSG_RECORD_VERSION;
    memcpy(buf + o, m->msg_id, KETEN_MSG_ID_BYTES);
    o += KETEN_MSG_ID_BYTES;
    store_be64(m->leaf, buf + o);
    o += 8;
    store_be64(m->created_at, buf + o);
    o += 8;
    store_be64(m->expires_at, buf + o);
    o += 8;
    memcpy(buf + o, m->envelope_hash, KETEN_HASH_BYTES);
    o += KETEN_HASH_BYTES;
    o += put_name(buf + o, m->sender);
    buf[o++] = (uint8_t)m->n_rcpt;
    for (size_t i = 0; i < m->n_rcpt; i++) {
        buf[o++] = m->rcpt[i].state;
        o += put_name(buf + o, m->rcpt[i].id);
    }
    return o;
}

static bool get_name(const uint8_t *buf, size_t len, size_t *o, char out[static KETEN_NAME_MAX + 1])
{
    if (*o >= len) {
        return false;
    }
    size_t n = buf[*o];
    if (n < 1 || n > KETEN_NAME_MAX || len - *o - 1 < n) {
        return false;
    }
    memcpy(out, buf + *o + 1, n);
    out[n] = '\0';
    *o += 1 + n;
    return keten_name_valid(out);
}

static keten_err decode_msg(const uint8_t *buf, size_t len, store_msg *m)
{
    size_t o = 0;
    memset(m, 0, sizeof *m);
    if (len < MSG_RECORD_MIN || buf[0] != MSG_RECORD_VERSION) {
        goto bad;
    }
    o = 1;
    memcpy(m->msg_id, buf + o, KETEN_MSG_ID_BYTES);
    o += KETEN_MSG_ID_BYTES;
    m->leaf = store_get_be64(buf + o);
    m->created_at = store_get_be64(buf + o + 8);
    m->expires_at = store_get_be64(buf + o + 16);
    o += 24;
    memcpy(m->envelope_hash, buf + o, KETEN_HASH_BYTES);
    o += KETEN_HASH_BYTES;
    if (!get_name(buf, len, &o, m->sender) || o >= len) {
        goto bad;
    }
    m->n_rcpt = buf[o++];
    if (m->n_rcpt < 1 || m->n_rcpt > KETEN_MAX_RECIPIENTS) {
        goto bad;
    }
    for (size_t i = 0; i < m->n_rcpt; i++) {
        if (o >= len || buf[o] > STORE_REFUSED) {
            goto bad;
        }
        m->rcpt[i].state = buf[o++];
        if (!get_name(buf, len, &o, m->rcpt[i].id)) {
            goto bad;
        }
    }
    if (o != len) {
        goto bad;
    }
    return KETEN_OK;
bad:
    return keten_err_set(KETEN_ERR_MALFORMED,
        "a message record in the broker store does not decode (at byte %zu of %zu); the store "
        "was altered or damaged",
        o, len);
}

keten_err store_msg_get(store *self, MDB_txn *txn, uint64_t leaf, store_msg *out, bool *found)
{
    *found = false;
    uint8_t kb[8];
    store_be64(leaf, kb);
    MDB_val k = { sizeof kb, kb }, v;
    int rc = mdb_get(txn, self->msgs, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "reading a message record");
    }
    keten_err e = decode_msg(v.mv_data, v.mv_size, out);
    if (e != KETEN_OK) {
        return e;
    }
    if (out->leaf != leaf) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "the message record at leaf %llu names leaf %llu; the store was altered",
            (unsigned long long)leaf, (unsigned long long)out->leaf);
    }
    *found = true;
    return KETEN_OK;
}

keten_err store_msg_find(store *self, MDB_txn *txn, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    store_msg *out, bool *found)
{
    store_seen seen;
    bool known = false;
    *found = false;
    keten_err e = store_seen_get(self, txn, msg_id, &seen, &known);
    if (e != KETEN_OK || !known) {
        return e;
    }
    if ((e = store_msg_get(self, txn, seen.leaf, out, found)) != KETEN_OK) {
        return e;
    }
    if (*found && memcmp(out->msg_id, msg_id, KETEN_MSG_ID_BYTES) != 0) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "the message record at leaf %llu is another msg_id's; the store was altered",
            (unsigned long long)seen.leaf);
    }
    return KETEN_OK;
}

/* The slot of msg_id in the table of recent leaves. */
static store_recent *recent_slot(store *self, const uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    uint8_t h[crypto_shorthash_BYTES];
    (void)crypto_shorthash(h, msg_id, KETEN_MSG_ID_BYTES, self->recent_key);
    uint64_t i = 0;
    for (size_t j = 0; j < sizeof h; j++) {
        i = i << 8 | h[j];
    }
    return &self->recent[i & (STORE_RECENT_SLOTS - 1)];
}

keten_err store_msg_find_recent(store *self, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], store_msg *out, bool *found)
{
    const store_recent *r = recent_slot(self, msg_id);
    if (r->used && memcmp(r->msg_id, msg_id, KETEN_MSG_ID_BYTES) == 0) {
        /* A hint: a transaction that was not committed may have left it. */
        keten_err e = store_msg_get(self, txn, r->leaf, out, found);
        if (e != KETEN_OK) {
            return e;
        }
        if (*found && memcmp(out->msg_id, msg_id, KETEN_MSG_ID_BYTES) == 0) {
            return KETEN_OK;
        }
    }
    return store_msg_find(self, txn, msg_id, out, found);
}

keten_err store_msg_put(store *self, MDB_txn *txn, const store_msg *m)
{
    uint8_t buf[MSG_RECORD_MAX];
    if (m->n_rcpt < 1 || m->n_rcpt > KETEN_MAX_RECIPIENTS) {
        return keten_err_set(KETEN_ERR_INVALID, "message record with %zu recipients", m->n_rcpt);
    }
    size_t len = encode_msg(m, buf);
    uint8_t kb[8];
    store_be64(m->leaf, kb);
    MDB_val k = { sizeof kb, kb }, v = { len, buf };
    int rc = mdb_put(txn, self->msgs, &k, &v, 0);
    if (rc != 0) {
        return store_lmdb_err(rc, "writing a message record");
    }
    return KETEN_OK;
}

static void expiry_key(uint64_t expires_at, uint64_t leaf, uint8_t out[static EXPIRY_KEY_BYTES])
{
    store_be64(expires_at, out);
    store_be64(leaf, out + 8);
}

static void time_key(
    uint64_t t, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint8_t out[static TIME_KEY_BYTES])
{
    store_be64(t, out);
    memcpy(out + 8, msg_id, KETEN_MSG_ID_BYTES);
}

static keten_err del_key(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t len, const char *what)
{
    MDB_val k = { len, (void *)key };
    int rc = mdb_del(txn, dbi, &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return store_lmdb_err(rc, what);
    }
    return KETEN_OK;
}

keten_err store_msg_delete(store *self, MDB_txn *txn, const store_msg *m)
{
    uint8_t lk[8], ek[EXPIRY_KEY_BYTES];
    store_be64(m->leaf, lk);
    expiry_key(m->expires_at, m->leaf, ek);
    keten_err e;
    if ((e = del_key(txn, self->msgs, lk, sizeof lk, "deleting a message record")) != KETEN_OK
        || (e = del_key(txn, self->envelopes, lk, sizeof lk, "deleting an envelope")) != KETEN_OK
        || (e = del_key(txn, self->expiry, ek, sizeof ek, "deleting an expiry entry"))
            != KETEN_OK) {
        return e;
    }
    store_recent *r = recent_slot(self, m->msg_id);
    if (r->used && r->leaf == m->leaf) {
        r->used = false;
    }
    return KETEN_OK;
}

keten_err store_envelope_get(
    store *self, MDB_txn *txn, uint64_t leaf, const uint8_t **env, size_t *len)
{
    uint8_t kb[8];
    store_be64(leaf, kb);
    MDB_val k = { sizeof kb, kb }, v;
    int rc = mdb_get(txn, self->envelopes, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "envelope not in the store");
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "reading an envelope");
    }
    *env = v.mv_data;
    *len = v.mv_size;
    return KETEN_OK;
}

keten_err store_msg_accept(store *self, MDB_txn *txn, const store_msg *m, const uint8_t *env,
    size_t env_len, uint64_t now_ms)
{
    keten_err e = store_msg_put(self, txn, m);
    if (e != KETEN_OK) {
        return e;
    }
    /* Leaves only grow: the envelope goes at the end of its B-tree. */
    uint8_t lk[8];
    store_be64(m->leaf, lk);
    MDB_val k = { sizeof lk, lk }, v = { env_len, (void *)env };
    int rc = mdb_put(txn, self->envelopes, &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) {
        return keten_err_set(KETEN_ERR_STORE,
            "an envelope at or after leaf %llu is already stored; the store was altered",
            (unsigned long long)m->leaf);
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "storing an envelope");
    }
    for (size_t i = 0; i < m->n_rcpt; i++) {
        uint8_t qk[STORE_NODE_KEY_MAX];
        size_t qlen = store_node_key(m->rcpt[i].id, m->leaf, qk);
        if (qlen == 0) {
            return keten_err_set(KETEN_ERR_INVALID, "queue for an invalid node id");
        }
        MDB_val kk = { qlen, qk }, vv = { KETEN_MSG_ID_BYTES, (void *)m->msg_id };
        rc = mdb_put(txn, self->queue, &kk, &vv, MDB_NOOVERWRITE);
        if (rc != 0) {
            return store_lmdb_err(rc, "enqueueing a message");
        }
    }
    uint8_t ek[EXPIRY_KEY_BYTES];
    expiry_key(m->expires_at, m->leaf, ek);
    MDB_val ekv = { sizeof ek, ek }, empty = { 0, NULL };
    if ((rc = mdb_put(txn, self->expiry, &ekv, &empty, 0)) != 0) {
        return store_lmdb_err(rc, "writing an expiry entry");
    }
    uint8_t sv[SEEN_VALUE_BYTES];
    memcpy(sv, m->envelope_hash, KETEN_HASH_BYTES);
    store_be64(m->leaf, sv + KETEN_HASH_BYTES);
    store_be64(now_ms, sv + KETEN_HASH_BYTES + 8);
    MDB_val id_k = { KETEN_MSG_ID_BYTES, (void *)m->msg_id }, seen_v = { sizeof sv, sv };
    if ((rc = mdb_put(txn, self->seen, &id_k, &seen_v, MDB_NOOVERWRITE)) != 0) {
        return store_lmdb_err(rc, "remembering a msg_id");
    }
    uint8_t sk[TIME_KEY_BYTES];
    time_key(now_ms, m->msg_id, sk);
    MDB_val seen_k = { sizeof sk, sk };
    if ((rc = mdb_put(txn, self->seen_time, &seen_k, &empty, 0)) != 0) {
        return store_lmdb_err(rc, "remembering when a msg_id was seen");
    }
    store_recent *r = recent_slot(self, m->msg_id);
    memcpy(r->msg_id, m->msg_id, KETEN_MSG_ID_BYTES);
    r->leaf = m->leaf;
    r->used = true;
    return KETEN_OK;
}

/* ---- seen -------------------------------------------------------------- */

keten_err store_seen_get(store *self, MDB_txn *txn, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    store_seen *out, bool *found)
{
    *found = false;
    random_read(self);
    MDB_val k = { KETEN_MSG_ID_BYTES, (void *)msg_id }, v;
    int rc = mdb_get(txn, self->seen, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "looking up a msg_id");
    }
    if (v.mv_size != SEEN_VALUE_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "a msg_id entry in the broker store is %zu bytes, not %d; the store was altered",
            v.mv_size, SEEN_VALUE_BYTES);
    }
    const uint8_t *p = v.mv_data;
    memcpy(out->envelope_hash, p, KETEN_HASH_BYTES);
    out->leaf = store_get_be64(p + KETEN_HASH_BYTES);
    out->first_seen = store_get_be64(p + KETEN_HASH_BYTES + 8);
    *found = true;
    return KETEN_OK;
}

keten_err store_seen_prune(store *self, MDB_txn *txn, uint64_t before, size_t max, size_t *n_out)
{
    *n_out = 0;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, self->seen_time, &cur);
    if (rc != 0) {
        return store_lmdb_err(rc, "opening the seen-time index");
    }
    keten_err e = KETEN_OK;
    MDB_val k, v;
    while (*n_out < max && (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size != TIME_KEY_BYTES) {
            e = keten_err_set(KETEN_ERR_MALFORMED, "a seen-time key of %zu bytes", k.mv_size);
            goto out;
        }
        const uint8_t *kp = k.mv_data;
        if (store_get_be64(kp) >= before) {
            break;
        }
        uint8_t id[KETEN_MSG_ID_BYTES];
        memcpy(id, kp + 8, sizeof id);
        if ((rc = mdb_cursor_del(cur, 0)) != 0) {
            e = store_lmdb_err(rc, "forgetting an old msg_id");
            goto out;
        }
        if ((e = del_key(txn, self->seen, id, sizeof id, "forgetting an old msg_id")) != KETEN_OK) {
            goto out;
        }
        (*n_out)++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        e = store_lmdb_err(rc, "walking the seen-time index");
    }
out:
    mdb_cursor_close(cur);
    return e;
}

/* ---- queue and notices -------------------------------------------------- */

keten_err store_queue_delete(store *self, MDB_txn *txn, const char *node, uint64_t leaf)
{
    uint8_t k[STORE_NODE_KEY_MAX];
    size_t n = store_node_key(node, leaf, k);
    if (n == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "queue of an invalid node id");
    }
    return del_key(txn, self->queue, k, n, "removing a queue entry");
}

keten_err store_notice_put(
    store *self, MDB_txn *txn, const char *node, uint64_t seq, const uint8_t *frame, size_t len)
{
    uint8_t k[STORE_NODE_KEY_MAX];
    size_t n = store_node_key(node, seq, k);
    if (n == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "notice for an invalid node id");
    }
    MDB_val kk = { n, k }, vv = { len, (void *)frame };
    int rc = mdb_put(txn, self->notices, &kk, &vv, 0);
    if (rc != 0) {
        return store_lmdb_err(rc, "storing a notice");
    }
    return KETEN_OK;
}

keten_err store_notice_delete(
    store *self, MDB_txn *txn, const char *node, uint64_t seq, bool *found)
{
    *found = false;
    uint8_t k[STORE_NODE_KEY_MAX];
    size_t n = store_node_key(node, seq, k);
    if (n == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "notice of an invalid node id");
    }
    MDB_val kk = { n, k };
    int rc = mdb_del(txn, self->notices, &kk, NULL);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "deleting a confirmed notice");
    }
    *found = true;
    return KETEN_OK;
}

keten_err store_notice_get(
    store *self, MDB_txn *txn, const char *node, uint64_t seq, const uint8_t **frame, size_t *len)
{
    *frame = NULL;
    *len = 0;
    uint8_t k[STORE_NODE_KEY_MAX];
    size_t n = store_node_key(node, seq, k);
    if (n == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "notice of an invalid node id");
    }
    MDB_val kk = { n, k }, vv;
    int rc = mdb_get(txn, self->notices, &kk, &vv);
    if (rc == MDB_NOTFOUND) {
        return keten_err_set(
            KETEN_ERR_NOT_FOUND, "no notice %llu for %s", (unsigned long long)seq, node);
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "reading a notice");
    }
    *frame = vv.mv_data;
    *len = vv.mv_size;
    return KETEN_OK;
}

/* ---- directories and checkpoints ---------------------------------------- */

keten_err store_directory_put(
    store *self, MDB_txn *txn, uint64_t version, const uint8_t *buf, size_t len)
{
    uint8_t k[8];
    store_be64(version, k);
    MDB_val kk = { 8, k }, vv = { len, (void *)buf };
    int rc = mdb_put(txn, self->directories, &kk, &vv, MDB_NOOVERWRITE);
    if (rc != 0) {
        return store_lmdb_err(rc, "storing a directory version");
    }
    return KETEN_OK;
}

keten_err store_checkpoint_put(
    store *self, MDB_txn *txn, uint64_t size, const char *note, size_t len)
{
    uint8_t k[8];
    store_be64(size, k);
    MDB_val kk = { 8, k }, vv = { len, (void *)note };
    int rc = mdb_put(txn, self->checkpoints, &kk, &vv, 0);
    if (rc != 0) {
        return store_lmdb_err(rc, "storing a checkpoint");
    }
    return KETEN_OK;
}

keten_err store_checkpoint_get(
    store *self, MDB_txn *txn, uint64_t size, const char **note, size_t *len)
{
    uint8_t k[8];
    store_be64(size, k);
    MDB_val kk = { 8, k }, vv;
    int rc = mdb_get(txn, self->checkpoints, &kk, &vv);
    if (rc == MDB_NOTFOUND) {
        return keten_err_set(
            KETEN_ERR_NOT_FOUND, "no checkpoint of tree size %llu", (unsigned long long)size);
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "reading a checkpoint");
    }
    *note = vv.mv_data;
    *len = vv.mv_size;
    return KETEN_OK;
}

keten_err store_checkpoint_last(
    store *self, MDB_txn *txn, uint64_t *size, const char **note, size_t *len, bool *found)
{
    *found = false;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, self->checkpoints, &cur);
    if (rc != 0) {
        return store_lmdb_err(rc, "opening the checkpoints");
    }
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "reading the last checkpoint");
    }
    if (k.mv_size != 8) {
        return keten_err_set(KETEN_ERR_MALFORMED, "a checkpoint key of %zu bytes", k.mv_size);
    }
    *size = store_get_be64(k.mv_data);
    *note = v.mv_data;
    *len = v.mv_size;
    *found = true;
    return KETEN_OK;
}

/* ---- backup ------------------------------------------------------------ */

/* out_dir exists and is empty, or is created (0700). */
static keten_err backup_target(const char *out_dir)
{
    struct stat st;
    if (stat(out_dir, &st) != 0) {
        if (errno != ENOENT) {
            return keten_err_set(KETEN_ERR_IO, "%s: %s", out_dir, strerror(errno));
        }
        if (mkdir(out_dir, 0700) != 0) {
            return keten_err_set(KETEN_ERR_IO, "cannot make %s: %s; does its parent exist?",
                out_dir, strerror(errno));
        }
        return KETEN_OK;
    }
    if (!S_ISDIR(st.st_mode)) {
        return keten_err_set(KETEN_ERR_EXISTS,
            "%s exists and is not a directory; give a new or empty directory", out_dir);
    }
    DIR *d = opendir(out_dir);
    if (d == NULL) {
        return keten_err_set(KETEN_ERR_IO, "cannot read %s: %s", out_dir, strerror(errno));
    }
    bool empty = true;
    const struct dirent *de;
    while (empty && (de = readdir(d)) != NULL) {
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    }
    closedir(d);
    if (!empty) {
        return keten_err_set(KETEN_ERR_EXISTS,
            "%s is not empty; a backup is never written over anything: give a new or empty "
            "directory",
            out_dir);
    }
    return KETEN_OK;
}

static keten_err fsync_path(const char *path, bool dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0) {
        return keten_err_set(err == ENOSPC ? KETEN_ERR_STORE_FULL : KETEN_ERR_IO,
            "cannot sync %s: %s", path, strerror(err));
    }
    return KETEN_OK;
}

static keten_err count_db(MDB_txn *txn, const char *name, uint64_t *out)
{
    MDB_dbi dbi;
    MDB_stat st;
    *out = 0;
    int rc = mdb_dbi_open(txn, name, 0, &dbi);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    if (rc == 0) {
        rc = mdb_stat(txn, dbi, &st);
    }
    if (rc != 0) {
        char what[96];
        snprintf(what, sizeof what, "counting %s in the copy", name);
        return store_lmdb_err(rc, what);
    }
    *out = (uint64_t)st.ms_entries;
    return KETEN_OK;
}

/* Open the copy read-only (no lock file: nobody else uses it) and count. */
static keten_err backup_inspect(const char *out_dir, store_backup_info *info)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    keten_merkle_log *log = NULL;
    keten_err e = KETEN_OK;
    int rc = mdb_env_create(&env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(env, STORE_MAX_DBS);
    }
    if (rc == 0) {
        rc = mdb_env_open(env, out_dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
    }
    if (rc == 0) {
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    }
    if (rc != 0) {
        e = store_lmdb_err(rc, "opening the copy");
        goto out;
    }
    MDB_dbi leaf;
    if (mdb_dbi_open(txn, STORE_LOG_PREFIX "leaf", 0, &leaf) != 0) {
        e = keten_err_set(KETEN_ERR_STORE, "the copy in %s has no audit log", out_dir);
        goto out;
    }
    if ((e = keten_merkle_log_open(txn, STORE_LOG_PREFIX, &log)) != KETEN_OK
        || (e = keten_merkle_log_size(log, txn, &info->records)) != KETEN_OK
        || (e = keten_merkle_log_root(log, txn, info->records, info->root)) != KETEN_OK
        || (e = count_db(txn, "msgs", &info->messages)) != KETEN_OK
        || (e = count_db(txn, "envelopes", &info->envelopes)) != KETEN_OK
        || (e = count_db(txn, "directories", &info->directories)) != KETEN_OK
        || (e = count_db(txn, "checkpoints", &info->checkpoints)) != KETEN_OK) {
        goto out;
    }
out:
    keten_merkle_log_destroy(&log);
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (env != NULL) {
        mdb_env_close(env);
    }
    return e;
}

keten_err store_backup(const char *home, const char *out_dir, store_backup_info *info)
{
    memset(info, 0, sizeof *info);
    char src[PATH_MAX], data[PATH_MAX], copy[PATH_MAX];
    if (snprintf(src, sizeof src, "%s/store", home) >= (int)sizeof src
        || snprintf(data, sizeof data, "%s/data.mdb", src) >= (int)sizeof data
        || snprintf(copy, sizeof copy, "%s/data.mdb", out_dir) >= (int)sizeof copy) {
        return keten_err_set(KETEN_ERR_INVALID, "path %s or %s is too long", home, out_dir);
    }
    if (access(data, R_OK) != 0) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "%s: %s; is %s the broker's home (the one given to 'keten-broker run --home')?", data,
            strerror(errno), home);
    }
    keten_err e = backup_target(out_dir);
    if (e != KETEN_OK) {
        return e;
    }
    MDB_env *env = NULL;
    int rc = mdb_env_create(&env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(env, STORE_MAX_DBS);
    }
    /* Read-only: a reader slot in the lock file, like any reader while the
     * broker runs; the copy is one read transaction, so it is consistent. */
    if (rc == 0) {
        rc = mdb_env_open(env, src, MDB_RDONLY | MDB_NOTLS, 0600);
    }
    if (rc != 0) {
        char what[PATH_MAX + 32];
        snprintf(what, sizeof what, "opening %s", src);
        e = store_lmdb_err(rc, what);
        mdb_env_close(env);
        return e;
    }
    rc = mdb_env_copy2(env, out_dir, MDB_CP_COMPACT);
    mdb_env_close(env);
    if (rc != 0) {
        char what[PATH_MAX + 32];
        snprintf(what, sizeof what, "copying into %s", out_dir);
        return store_lmdb_err(rc, what);
    }
    if ((e = fsync_path(copy, false)) != KETEN_OK || (e = fsync_path(out_dir, true)) != KETEN_OK) {
        return e;
    }
    struct stat st;
    if (stat(copy, &st) == 0) {
        info->bytes = (uint64_t)st.st_size;
    }
    return backup_inspect(out_dir, info);
}
