#include "dirstate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "store.h"
#include "util.h"

#define DIRSTATE_STALE_LOG_MS 60000

/* ---- helpers ----------------------------------------------------------- */

static bool key_eq(const ProtobufCBinaryData *a, const uint8_t *b, size_t len)
{
    return a->len == len && sodium_memcmp(a->data, b, len) == 0;
}

/* The directory names this broker with its keys. */
static keten_err check_self(const keten_directory *dir, const keten_identity *me, const char *home)
{
    const Keten__NodeCert *c = keten_directory_broker(dir);
    if (c == NULL || strcmp(c->id, me->id) != 0 || !key_eq(&c->sign_pk, me->sign_pk, 32)
        || !key_eq(&c->enc_pk, me->enc_pk, 32) || !key_eq(&c->transport_pk, me->transport_pk, 32)
        || !me->has_log_key || !key_eq(&c->log_pk, me->log_pk, 32)) {
        return keten_err_set(KETEN_ERR_MISMATCH,
            "this broker's keys are not in directory version %llu: approve "
            "%s/identity.request and publish",
            (unsigned long long)keten_directory_version(dir), home);
    }
    return KETEN_OK;
}

const Keten__NodeCert *dirstate_node_cert(
    const keten_directory *dir, const char *node, const uint8_t *key, uint64_t now)
{
    if (dir == NULL || node == NULL || !keten_name_valid(node)) {
        return NULL;
    }
    const Keten__NodeCert *c = keten_directory_find_id(dir, node);
    if (c == NULL || strcmp(c->role, "broker") == 0 || !keten_directory_cert_valid_at(c, now)) {
        return NULL;
    }
    if (key != NULL && !key_eq(&c->transport_pk, key, KETEN_CURVE_KEY_BYTES)) {
        return NULL;
    }
    return c;
}

Keten__Reason dirstate_refusal(
    const keten_directory *dir, const char *node, const uint8_t *key, uint64_t now)
{
    if (dirstate_node_cert(dir, node, key, now) != NULL) {
        return KETEN__REASON__REASON_NONE;
    }
    if (dir == NULL || node == NULL || !keten_name_valid(node)) {
        return KETEN__REASON__REASON_UNKNOWN_SENDER;
    }
    const Keten__NodeCert *c = keten_directory_find_id(dir, node);
    if (c != NULL && strcmp(c->role, "broker") != 0 && key != NULL
        && !key_eq(&c->transport_pk, key, KETEN_CURVE_KEY_BYTES)) {
        return KETEN__REASON__REASON_KEYS_REPLACED;
    }
    const Keten__Revocation *r = c == NULL ? keten_directory_find_revoked(dir, node) : NULL;
    if (r != NULL && !r->superseded) {
        return KETEN__REASON__REASON_REVOKED;
    }
    return KETEN__REASON__REASON_UNKNOWN_SENDER;
}

/* The detail of a refusal Error: what happened and what to do. */
static void refusal_detail(Keten__Reason reason, uint64_t version, char *out, size_t size)
{
    unsigned long long v = (unsigned long long)version;
    switch (reason) {
    case KETEN__REASON__REASON_KEYS_REPLACED:
        snprintf(out, size, "keys replaced in version %llu: start with the new keys", v);
        break;
    case KETEN__REASON__REASON_REVOKED:
        snprintf(out, size, "revoked in version %llu: ask your administrator", v);
        break;
    default:
        snprintf(out, size,
            "no current certificate in version %llu (unknown, or out of its validity period): "
            "ask your administrator",
            v);
        break;
    }
}

keten_err dirstate_cut_off(broker *b, conn *c, Keten__Reason reason)
{
    uint64_t version = keten_directory_version(b->dirs->cur);
    c->revoked = true;
    c->refused = reason;
    c->refused_version = version;
    /* Nothing more goes to it: what was in flight stays queued in the store
     * (for a rotated node, delivered again on its next connection). */
    c->credit = 0;
    c->more = false;
    c->notices = false;
    memset(&c->flight, 0, sizeof c->flight);
    metrics_auth_failed(b->m);
    broker_event_refused(b, c->node, reason);
    char detail[160];
    refusal_detail(reason, version, detail, sizeof detail);
    KETEN_LOG(KETEN_LOG_NOTICE, "node no longer current: connection cut off",
        "node=%s version=%llu reason=%s", c->node, (unsigned long long)version,
        reason == KETEN__REASON__REASON_KEYS_REPLACED ? "keys-replaced"
            : reason == KETEN__REASON__REASON_REVOKED ? "revoked"
                                                      : "unknown-sender");
    return outq_refusal(b->out, c, reason, version, detail);
}

keten_err dirstate_refuse_again(broker *b, const conn *c)
{
    char detail[160];
    refusal_detail(c->refused, c->refused_version, detail, sizeof detail);
    return outq_refusal(b->out, c, c->refused, c->refused_version, detail);
}

bool dirstate_fresh(broker *b)
{
    dirstate *d = b->dirs;
    bool fresh = keten_directory_fresh(d->cur, b->now);
    if (!fresh && (!d->stale || b->now - d->stale_logged_ms >= DIRSTATE_STALE_LOG_MS)) {
        d->stale_logged_ms = b->now;
        char when[40];
        keten_time_iso(keten_directory_doc(d->cur)->expires_at, when, sizeof when);
        KETEN_LOG(KETEN_LOG_ERR,
            "directory expired: refusing all submits until a fresh one is installed",
            "version=%llu expired_at=%s action=\"publish a new directory and send SIGHUP\"",
            (unsigned long long)keten_directory_version(d->cur), when);
    } else if (fresh && d->stale) {
        KETEN_LOG(KETEN_LOG_NOTICE, "directory fresh again", "version=%llu",
            (unsigned long long)keten_directory_version(d->cur));
    }
    d->stale = !fresh;
    metrics_directory(b->m, keten_directory_version(d->cur), !fresh);
    return fresh;
}

/* ---- loading ----------------------------------------------------------- */

/* Verify the stored versions as a chain; *out is the newest (NULL if none). */
static keten_err load_stored(broker *b, keten_directory **out)
{
    *out = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    keten_directory *prev = NULL;
    keten_err e = store_begin(b->st, false, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    int rc = mdb_cursor_open(txn, b->st->directories, &cur);
    if (rc != 0) {
        e = store_lmdb_err(rc, "opening the stored directories");
        goto out;
    }
    MDB_val k, v;
    while ((rc = mdb_cursor_get(cur, &k, &v, prev == NULL ? MDB_FIRST : MDB_NEXT)) == 0) {
        keten_directory *next = NULL;
        e = keten_directory_verify(
            prev == NULL ? b->dirs->anchor : NULL, prev, v.mv_data, v.mv_size, 0, &next);
        if (e != KETEN_OK) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s", keten_err_detail());
            e = keten_err_set(e,
                "the stored directory chain does not verify (the store was altered or belongs to "
                "another network): %s",
                detail);
            goto out;
        }
        if (k.mv_size != 8 || store_get_be64(k.mv_data) != keten_directory_version(next)) {
            keten_directory_destroy(&next);
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "a stored directory is filed under the wrong version; the store was altered");
            goto out;
        }
        keten_directory_destroy(&prev);
        prev = next;
    }
    if (rc != MDB_NOTFOUND) {
        e = store_lmdb_err(rc, "reading the stored directories");
        goto out;
    }
    *out = prev;
    prev = NULL;
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    store_abort(&txn);
    keten_directory_destroy(&prev);
    return e;
}

/* Store and audit dir in its own transaction, then make it current. */
static keten_err install(broker *b, keten_directory **dir_p)
{
    keten_directory *dir = *dir_p;
    size_t len = 0;
    const uint8_t *bytes = keten_directory_bytes(dir, &len);
    uint64_t version = keten_directory_version(dir);
    keten_err e = store_begin(b->st, true, &b->txn);
    if (e != KETEN_OK) {
        return e;
    }
    uint64_t leaf = 0;
    if ((e = store_directory_put(b->st, b->txn, version, bytes, len)) != KETEN_OK
        || (e = audit_directory(b, bytes, len, version, &leaf)) != KETEN_OK) {
        store_abort(&b->txn);
        return e;
    }
    if ((e = store_commit(b->st, &b->txn)) != KETEN_OK) {
        return e;
    }
    keten_directory_destroy(&b->dirs->cur);
    b->dirs->cur = dir;
    *dir_p = NULL;
    char hash[2 * KETEN_HASH_BYTES + 1];
    keten_hex(keten_directory_hash(dir), KETEN_HASH_BYTES, hash);
    KETEN_LOG(KETEN_LOG_NOTICE, "directory installed", "version=%llu hash=%s leaf=%llu",
        (unsigned long long)version, hash, (unsigned long long)leaf);
    (void)dirstate_fresh(b);
    return KETEN_OK;
}

/* Push the current version to every connection, then cut off connections
 * of nodes that are no longer current: they get the version too, so that
 * the node can see in a signed directory why the Error that follows it says
 * what it says. */
static keten_err after_install(broker *b)
{
    const keten_directory *dir = b->dirs->cur;
    size_t len = 0;
    const uint8_t *bytes = keten_directory_bytes(dir, &len);
    ProtobufCBinaryData chain[1] = { { len, (uint8_t *)bytes } };
    Keten__DirectoryPush push = KETEN__DIRECTORY_PUSH__INIT;
    push.n_chain = 1;
    push.chain = chain;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_DIRECTORY_PUSH;
    f.directory_push = &push;
    for (size_t i = 0; i < b->conns->n; i++) {
        conn *c = b->conns->v[i];
        if (c->revoked) {
            continue;
        }
        keten_err e = outq_frame(b->out, c, 0, &f);
        Keten__Reason why = dirstate_refusal(dir, c->node, c->key, b->now);
        if (e == KETEN_OK && why != KETEN__REASON__REASON_NONE) {
            e = dirstate_cut_off(b, c, why);
        }
        if (e != KETEN_OK) {
            return e;
        }
    }
    return KETEN_OK;
}

/* Verify the file and install it if newer. at_start: errors are fatal when
 * nothing is installed yet. */
static keten_err from_file(broker *b, bool at_start, bool *installed)
{
    *installed = false;
    dirstate *d = b->dirs;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_directory *dir = NULL;
    bool logged = false; /* the error is logged already */
    keten_err e = keten_file_read(d->path, KETEN_DIRECTORY_MAX, &buf, &len);
    if (e != KETEN_OK) {
        goto out;
    }
    const keten_directory *prev = d->cur;
    if (prev != NULL) {
        size_t cur_len = 0;
        const uint8_t *cur_bytes = keten_directory_bytes(prev, &cur_len);
        if (cur_len == len && memcmp(cur_bytes, buf, len) == 0) {
            KETEN_LOG(KETEN_LOG_INFO, "directory file is the installed version", "version=%llu",
                (unsigned long long)keten_directory_version(prev));
            goto out;
        }
    }
    e = keten_directory_verify(prev == NULL ? d->anchor : NULL, prev, buf, len, b->now, &dir);
    if (e == KETEN_ERR_EXPIRED) {
        /* Signed, but out of date: is it also newer (else the rollback
         * below says so)? A newer expired version is not installed: it would
         * only make every submit refused, while the version held may still
         * be fresh (a node refuses it too). */
        e = keten_directory_verify(prev == NULL ? d->anchor : NULL, prev, buf, len, 0, &dir);
        if (e == KETEN_OK) {
            char when[40];
            keten_time_iso(keten_directory_doc(dir)->expires_at, when, sizeof when);
            e = keten_err_set(KETEN_ERR_EXPIRED,
                "directory version %llu in %s expired at %s; publish a fresh version and "
                "send SIGHUP (or restart)",
                (unsigned long long)keten_directory_version(dir), d->path, when);
            KETEN_LOG(KETEN_LOG_ERR, "directory file has expired; not installed",
                "file=%s version=%llu expired_at=%s installed=%llu "
                "action=\"publish a fresh directory and send SIGHUP\"",
                d->path, (unsigned long long)keten_directory_version(dir), when,
                (unsigned long long)(prev != NULL ? keten_directory_version(prev) : 0));
            logged = true;
            goto out;
        }
    }
    if (e == KETEN_ERR_ROLLBACK && prev != NULL) {
        KETEN_LOG(KETEN_LOG_WARNING,
            "directory file is not newer than the installed version; the installed one stays",
            "file=%s installed=%llu", d->path, (unsigned long long)keten_directory_version(prev));
        e = KETEN_OK;
        goto out;
    }
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = check_self(dir, b->me, b->cfg->home)) != KETEN_OK) {
        goto out;
    }
    if ((e = install(b, &dir)) != KETEN_OK) {
        goto out;
    }
    *installed = true;
    if (!at_start) {
        e = after_install(b);
    }
out:
    if (logged && !(at_start && d->cur == NULL)) {
        e = KETEN_OK; /* logged above; the installed version stays */
    } else if (e != KETEN_OK && !(at_start && d->cur == NULL)) {
        /* Keep running on what is installed, but say so loudly. */
        char detail[512];
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        KETEN_LOG(KETEN_LOG_ERR, "directory file not installed",
            "file=%s error=\"%s\" detail=\"%s\"", d->path, keten_err_str(e), detail);
        e = KETEN_OK;
    }
    keten_directory_destroy(&dir);
    free(buf);
    return e;
}

keten_err dirstate_open(broker *b, const char *anchor_path, const char *dir_path)
{
    dirstate *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "directory state");
    }
    b->dirs = d;
    if (snprintf(d->path, sizeof d->path, "%s", dir_path) >= (int)sizeof d->path) {
        return keten_err_set(KETEN_ERR_INVALID, "directory path %s is too long", dir_path);
    }
    keten_err e = keten_directory_anchor_load(anchor_path, &d->anchor);
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = load_stored(b, &d->cur)) != KETEN_OK) {
        return e;
    }
    if (d->cur != NULL) {
        KETEN_LOG(KETEN_LOG_INFO, "stored directory chain verified", "version=%llu",
            (unsigned long long)keten_directory_version(d->cur));
    }
    bool installed = false;
    if ((e = from_file(b, true, &installed)) != KETEN_OK) {
        return e;
    }
    if (d->cur == NULL) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "no directory installed");
    }
    if ((e = check_self(d->cur, b->me, b->cfg->home)) != KETEN_OK) {
        return e;
    }
    (void)dirstate_fresh(b);
    return KETEN_OK;
}

void dirstate_destroy(dirstate **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    dirstate *d = *self_p;
    keten_directory_destroy(&d->cur);
    keten_pb_free((ProtobufCMessage **)(void *)&d->anchor);
    free(d);
    *self_p = NULL;
}

keten_err dirstate_reload(broker *b, bool *installed)
{
    KETEN_LOG(KETEN_LOG_NOTICE, "reloading the directory file", "file=%s", b->dirs->path);
    return from_file(b, false, installed);
}

keten_err dirstate_serve(broker *b, const conn *c, uint64_t request_id, uint64_t after_version)
{
    MDB_cursor *cur = NULL;
    ProtobufCBinaryData *chain = NULL;
    size_t n = 0, cap = 0, total = 0;
    keten_err e = KETEN_OK;
    int rc = mdb_cursor_open(b->txn, b->st->directories, &cur);
    if (rc != 0) {
        return store_lmdb_err(rc, "opening the stored directories");
    }
    uint8_t start[8];
    store_be64(after_version == UINT64_MAX ? after_version : after_version + 1, start);
    MDB_val k = { 8, start }, v;
    MDB_cursor_op op = MDB_SET_RANGE;
    while (after_version != UINT64_MAX && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        /* One version always fits (KETEN_FRAME_MAX); stop before overflowing. */
        if (n > 0 && total + v.mv_size + 64 > KETEN_FRAME_MAX - 1024) {
            break;
        }
        if (n == cap) {
            cap = cap == 0 ? 8 : cap * 2;
            ProtobufCBinaryData *nc = realloc(chain, cap * sizeof *nc);
            if (nc == NULL) {
                e = keten_err_set(KETEN_ERR_NOMEM, "directory chain of %zu versions", cap);
                goto out;
            }
            chain = nc;
        }
        chain[n].data = v.mv_data; /* valid until the transaction writes again */
        chain[n].len = v.mv_size;
        total += v.mv_size + 8;
        n++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        e = store_lmdb_err(rc, "reading the stored directories");
        goto out;
    }
    Keten__DirectoryPush push = KETEN__DIRECTORY_PUSH__INIT;
    push.n_chain = n;
    push.chain = chain;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_DIRECTORY_PUSH;
    f.directory_push = &push;
    bool sent = false;
    e = outq_answer(b->out, b->conns, c, request_id, &f, keten_mono_ms(), &sent);
    if (e == KETEN_OK && !sent) {
        metrics_answer_refused(b->m);
    }
out:
    free(chain);
    mdb_cursor_close(cur);
    return e;
}
