#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define STORE_MAX_DBS 16
#define MSG_RECORD_VERSION 1
/* version, leaf, created, expires, hash, sender, n, recipients */
#define MSG_RECORD_MAX                                                                             \
    (1 + 8 + 8 + 8 + KETEN_HASH_BYTES + 1 + KETEN_NAME_MAX + 1                                     \
        + KETEN_MAX_RECIPIENTS * (2 + KETEN_NAME_MAX))
#define SEEN_VALUE_BYTES (KETEN_HASH_BYTES + 8 + 8)
#define TIME_KEY_BYTES (8 + KETEN_MSG_ID_BYTES)
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
    atomic_init(&s->full, false);
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
    rc = mdb_env_open(s->env, path, MDB_NOTLS, 0600);
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
    s->reserve = reserve_for(s->map_size);
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
        || (e = keten_mlog_open(txn, STORE_LOG_PREFIX, &s->log)) != KETEN_OK) {
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
    keten_mlog_destroy(&s->log);
    if (s->env != NULL) {
        mdb_env_close(s->env);
    }
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
    }
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
    (void)self;
    if (*txn == NULL) {
        return keten_err_set(KETEN_ERR_STORE, "commit without a transaction");
    }
    int rc = mdb_txn_commit(*txn);
    *txn = NULL;
    if (rc != 0) {
        return store_lmdb_err(rc, "committing");
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
    if (used > limit) {
        /* The high-water mark says full; pages freed since may be reused. */
        if (now_ms - self->last_free_scan_ms >= FREE_SCAN_INTERVAL_MS
            || self->last_free_scan_ms == 0) {
            keten_err e = count_free_pages(self, &self->free_pages);
            if (e != KETEN_OK) {
                return e;
            }
            self->last_free_scan_ms = now_ms;
        }
        uint64_t free_pages = self->free_pages < pages ? self->free_pages : pages;
        used = (pages - free_pages) * self->page_size;
    }
    bool full = used > limit || now_ms < self->disk_full_until_ms;
    atomic_store(&self->used, used);
    atomic_store(&self->full, full);
    if (full_out != NULL) {
        *full_out = full;
    }
    return KETEN_OK;
}

bool store_fits(const store *self, uint64_t extra)
{
    uint64_t limit = self->map_size - self->reserve;
    uint64_t used = atomic_load(&((store *)self)->used);
    return used <= limit && extra <= limit - used;
}

void store_mark_full(store *self, uint64_t now_ms)
{
    self->disk_full_until_ms = now_ms + DISK_FULL_RETRY_MS;
    self->last_free_scan_ms = 0;
    atomic_store(&self->full, true);
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
    if (len < 1 + 24 + KETEN_HASH_BYTES || buf[0] != MSG_RECORD_VERSION) {
        goto bad;
    }
    o = 1;
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
        if (o >= len || buf[o] > STORE_RECEIPTED) {
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

keten_err store_msg_get(store *self, MDB_txn *txn, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    store_msg *out, bool *found)
{
    *found = false;
    MDB_val k = { KETEN_MSG_ID_BYTES, (void *)msg_id }, v;
    int rc = mdb_get(txn, self->msgs, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "reading a message record");
    }
    keten_err e = decode_msg(v.mv_data, v.mv_size, out);
    if (e == KETEN_OK) {
        *found = true;
    }
    return e;
}

keten_err store_msg_put(
    store *self, MDB_txn *txn, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const store_msg *m)
{
    uint8_t buf[MSG_RECORD_MAX];
    if (m->n_rcpt < 1 || m->n_rcpt > KETEN_MAX_RECIPIENTS) {
        return keten_err_set(KETEN_ERR_INVALID, "message record with %zu recipients", m->n_rcpt);
    }
    size_t len = encode_msg(m, buf);
    MDB_val k = { KETEN_MSG_ID_BYTES, (void *)msg_id }, v = { len, buf };
    int rc = mdb_put(txn, self->msgs, &k, &v, 0);
    if (rc != 0) {
        return store_lmdb_err(rc, "writing a message record");
    }
    return KETEN_OK;
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

keten_err store_msg_delete(
    store *self, MDB_txn *txn, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const store_msg *m)
{
    uint8_t tk[TIME_KEY_BYTES];
    time_key(m->expires_at, msg_id, tk);
    keten_err e;
    if ((e = del_key(txn, self->msgs, msg_id, KETEN_MSG_ID_BYTES, "deleting a message record"))
            != KETEN_OK
        || (e = del_key(txn, self->envelopes, msg_id, KETEN_MSG_ID_BYTES, "deleting an envelope"))
            != KETEN_OK
        || (e = del_key(txn, self->expiry, tk, sizeof tk, "deleting an expiry entry"))
            != KETEN_OK) {
        return e;
    }
    return KETEN_OK;
}

keten_err store_envelope_get(store *self, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const uint8_t **env, size_t *len)
{
    MDB_val k = { KETEN_MSG_ID_BYTES, (void *)msg_id }, v;
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

keten_err store_msg_accept(store *self, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const store_msg *m, const uint8_t *env,
    size_t env_len, uint64_t now_ms)
{
    keten_err e = store_msg_put(self, txn, msg_id, m);
    if (e != KETEN_OK) {
        return e;
    }
    MDB_val k = { KETEN_MSG_ID_BYTES, (void *)msg_id }, v = { env_len, (void *)env };
    int rc = mdb_put(txn, self->envelopes, &k, &v, MDB_NOOVERWRITE);
    if (rc != 0) {
        return store_lmdb_err(rc, "storing an envelope");
    }
    for (size_t i = 0; i < m->n_rcpt; i++) {
        uint8_t qk[STORE_NODE_KEY_MAX];
        size_t qlen = store_node_key(m->rcpt[i].id, m->leaf, qk);
        if (qlen == 0) {
            return keten_err_set(KETEN_ERR_INVALID, "queue for an invalid node id");
        }
        MDB_val kk = { qlen, qk }, vv = { KETEN_MSG_ID_BYTES, (void *)msg_id };
        rc = mdb_put(txn, self->queue, &kk, &vv, MDB_NOOVERWRITE);
        if (rc != 0) {
            return store_lmdb_err(rc, "enqueueing a message");
        }
    }
    uint8_t tk[TIME_KEY_BYTES];
    time_key(m->expires_at, msg_id, tk);
    MDB_val ek = { sizeof tk, tk }, empty = { 0, NULL };
    if ((rc = mdb_put(txn, self->expiry, &ek, &empty, 0)) != 0) {
        return store_lmdb_err(rc, "writing an expiry entry");
    }
    uint8_t sv[SEEN_VALUE_BYTES];
    memcpy(sv, m->envelope_hash, KETEN_HASH_BYTES);
    store_be64(m->leaf, sv + KETEN_HASH_BYTES);
    store_be64(now_ms, sv + KETEN_HASH_BYTES + 8);
    MDB_val seen_v = { sizeof sv, sv };
    if ((rc = mdb_put(txn, self->seen, &k, &seen_v, MDB_NOOVERWRITE)) != 0) {
        return store_lmdb_err(rc, "remembering a msg_id");
    }
    uint8_t sk[TIME_KEY_BYTES];
    time_key(now_ms, msg_id, sk);
    MDB_val seen_k = { sizeof sk, sk };
    if ((rc = mdb_put(txn, self->seen_time, &seen_k, &empty, 0)) != 0) {
        return store_lmdb_err(rc, "remembering when a msg_id was seen");
    }
    return KETEN_OK;
}

/* ---- seen -------------------------------------------------------------- */

keten_err store_seen_get(store *self, MDB_txn *txn, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    store_seen *out, bool *found)
{
    *found = false;
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
