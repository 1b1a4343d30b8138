#include "dirs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alarm.h"
#include "link.h"
#include "log.h"
#include "pb.h"
#include "store.h"
#include "util.h"
#include "witness.h"

#define DIR_NEEDED_KEY "dir-needed"
#define DIR_REQUEST_EVERY_MS 5000ull
#define STORED_MAX 4096 /* most stored versions read at start */

/* The version of SignedDirectory bytes that were verified already. */
static keten_err peek_version(const uint8_t *buf, size_t len, uint64_t *version)
{
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *d = NULL;
    keten_err e
        = KETEN_PB_UNPACK(keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, "directory", &sd);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__directory, sd->directory.data, sd->directory.len,
            KETEN_DIRECTORY_MAX, "directory", &d);
    }
    if (e == KETEN_OK) {
        *version = d->version;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&d);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return e;
}

/* Store the versions of a verified chain that are newer than above. */
static keten_err store_versions(
    keten_node *node, const uint8_t *const *bufs, const size_t *lens, size_t n, uint64_t above)
{
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    for (size_t i = 0; e == KETEN_OK && i < n; i++) {
        uint64_t version = 0;
        e = peek_version(bufs[i], lens[i], &version);
        if (e == KETEN_OK && version > above) {
            uint8_t key[KETEN_STORE_U64_KEY];
            keten_store_u64_put(version, key);
            e = keten_store_put(
                node->store, txn, KETEN_DB_DIRECTORIES, key, sizeof key, bufs[i], lens[i]);
        }
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    return e;
}

static void load_needed(keten_node *node, MDB_txn *txn)
{
    MDB_val v;
    if (keten_store_get(
            node->store, txn, KETEN_DB_STATE, DIR_NEEDED_KEY, strlen(DIR_NEEDED_KEY), &v)
            == KETEN_OK
        && v.mv_size == 16) {
        node->dir_needed = keten_store_u64_get(v.mv_data);
        node->dir_needed_since = keten_store_u64_get((const uint8_t *)v.mv_data + 8);
    }
}

static void save_needed(keten_node *node)
{
    MDB_txn *txn = NULL;
    uint8_t v[16];
    keten_store_u64_put(node->dir_needed, v);
    keten_store_u64_put(node->dir_needed_since, v + 8);
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = node->dir_needed == 0 ? keten_store_del(
                node->store, txn, KETEN_DB_STATE, DIR_NEEDED_KEY, strlen(DIR_NEEDED_KEY))
                                  : keten_store_put(node->store, txn, KETEN_DB_STATE,
                                      DIR_NEEDED_KEY, strlen(DIR_NEEDED_KEY), v, sizeof v);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store directory state", "error=\"%s\"", keten_err_str(e));
    }
}

/* The installed version reached what a checkpoint named. */
static void check_needed(keten_node *node)
{
    if (node->dir_needed != 0 && keten_directory_version(node->dir) >= node->dir_needed) {
        KETEN_LOG(KETEN_LOG_NOTICE, "directory named in checkpoint now installed", "version=%llu",
            (unsigned long long)node->dir_needed);
        node->dir_needed = 0;
        node->dir_needed_since = 0;
        node->dir_alarmed = false;
        keten_dirs_forget_needed(node);
        save_needed(node);
    }
}

void keten_dirs_forget_needed(keten_node *node)
{
    free(node->dir_needed_frame);
    node->dir_needed_frame = NULL;
    node->dir_needed_frame_len = 0;
}

/* Keep the frame being handled (the signed checkpoint naming the needed
 * version) for the alarm, if none is kept: packed, so that it outlives
 * the frame. */
static void keep_needed_frame(keten_node *node)
{
    if (node->dir_needed_frame != NULL || node->frame == NULL) {
        return;
    }
    if (keten_pb_pack((const ProtobufCMessage *)node->frame, &node->dir_needed_frame,
            &node->dir_needed_frame_len)
        != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot keep the checkpoint that named a directory",
            "error=\"%s\"", keten_err_detail());
        keten_err_clear();
        keten_dirs_forget_needed(node);
    }
}

#define DIR_AHEAD_ENV "KETEN_NODE_TEST_DIRECTORY_AHEAD_MS"

static keten_err read_clock_hook(keten_node *node)
{
    node->dir_clock_ahead_ms = 0;
#ifndef KETEN_TEST_HOOKS
    return KETEN_OK; /* a build without test hooks refuses the variable at start */
#else
    const char *v = getenv(DIR_AHEAD_ENV);
    if (v == NULL) {
        return KETEN_OK;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long ahead = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-'
        || ahead > 3650ull * KETEN_MS_PER_DAY) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s must be a number of ms from 0 to 3650 days (a test hook)", DIR_AHEAD_ENV);
    }
    node->dir_clock_ahead_ms = ahead;
    KETEN_LOG(KETEN_LOG_WARNING,
        "test hook armed: the directory's freshness is judged later than now",
        "env=%s ahead_ms=%llu", DIR_AHEAD_ENV, ahead);
    return KETEN_OK;
#endif
}

uint64_t keten_dirs_now_ms(const keten_node *node)
{
    return keten_now_ms() + node->dir_clock_ahead_ms;
}

keten_err keten_dirs_load(keten_node *node)
{
    if (read_clock_hook(node) != KETEN_OK) {
        return KETEN_ERR_INVALID;
    }
    keten_err e = KETEN_OK;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint8_t **bufs = NULL;
    size_t *lens = NULL;
    size_t n = 0;
    uint8_t *file = NULL;
    size_t file_len = 0;
    keten_directory *stored = NULL, *next = NULL;

    bufs = calloc(STORED_MAX, sizeof *bufs);
    lens = calloc(STORED_MAX, sizeof *lens);
    if (bufs == NULL || lens == NULL) {
        e = KETEN_ERR_NOMEM;
        goto out;
    }
    if ((e = keten_store_begin(node->store, false, &txn)) != KETEN_OK) {
        goto out;
    }
    load_needed(node, txn);
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_DIRECTORIES), &cur) != 0) {
        e = keten_err_set(KETEN_ERR_STORE, "cannot read the stored directories");
        goto out;
    }
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && n < STORED_MAX) {
        bufs[n] = malloc(v.mv_size ? v.mv_size : 1);
        if (bufs[n] == NULL) {
            e = KETEN_ERR_NOMEM;
            goto out;
        }
        memcpy(bufs[n], v.mv_data, v.mv_size);
        lens[n] = v.mv_size;
        n++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    cur = NULL;
    keten_store_abort(&txn);
    if (n > 0) {
        e = keten_directory_verify_chain(
            node->anchor, NULL, (const uint8_t *const *)bufs, lens, n, 0, &stored);
        if (e != KETEN_OK) {
            keten_err_set(e,
                "the directories stored in %s/store do not verify from the anchor "
                "(%s); the store was altered or belongs to another network",
                node->opts.home, keten_err_detail());
            goto out;
        }
    }
    e = keten_file_read(node->opts.directory, KETEN_DIRECTORY_MAX, &file, &file_len);
    if (e != KETEN_OK) {
        goto out;
    }
    const uint8_t *fb = file;
    e = keten_directory_verify_chain(node->anchor, stored, &fb, &file_len, 1, 0, &next);
    if (e == KETEN_ERR_ROLLBACK && stored != NULL) {
        KETEN_LOG(KETEN_LOG_NOTICE, "directory file is older than the installed version; kept",
            "installed=%llu", (unsigned long long)keten_directory_version(stored));
        keten_err_clear();
        node->dir = stored;
        stored = NULL;
        e = KETEN_OK;
        goto out;
    }
    if (e == KETEN_ERR_THRESHOLD && stored == NULL) {
        /* A new node checks the file against the anchor alone: a version
         * after an administrator change may not carry enough signatures of
         * the administrators network.pub names. */
        keten_err_set(e,
            "%s: %s; a new node starts from a version the administrators named in the "
            "trust anchor signed: give it the first version, or the one that changed the "
            "administrators, and it fetches the later ones from the broker",
            node->opts.directory, keten_err_detail());
        goto out;
    }
    if (e != KETEN_OK) {
        goto out;
    }
    if (stored != NULL && keten_directory_version(next) > keten_directory_version(stored)
        && !keten_directory_fresh(next, keten_dirs_now_ms(node))) {
        /* Newer but expired: it would only stop this node sending and
         * opening, while the version it holds may be fresh (the broker
         * refuses such a file too). A new node, with nothing stored, does
         * start from it: the broker then pushes the version in force. */
        char when[40];
        keten_time_iso(keten_directory_doc(next)->expires_at, when, sizeof when);
        KETEN_LOG(KETEN_LOG_ERR, "directory file has expired; not installed",
            "file=%s version=%llu expired_at=%s installed=%llu "
            "action=\"publish a fresh directory\"",
            node->opts.directory, (unsigned long long)keten_directory_version(next), when,
            (unsigned long long)keten_directory_version(stored));
        node->dir = stored;
        stored = NULL;
        goto out;
    }
    if (stored == NULL || keten_directory_version(next) > keten_directory_version(stored)) {
        e = store_versions(
            node, &fb, &file_len, 1, stored != NULL ? keten_directory_version(stored) : 0);
        if (e != KETEN_OK) {
            goto out;
        }
        KETEN_LOG(KETEN_LOG_NOTICE, "directory installed", "version=%llu source=file",
            (unsigned long long)keten_directory_version(next));
    }
    node->dir = next;
    next = NULL;
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    keten_store_abort(&txn);
    for (size_t i = 0; bufs != NULL && i < n; i++) {
        free(bufs[i]);
    }
    free(bufs);
    free(lens);
    free(file);
    keten_directory_destroy(&stored);
    keten_directory_destroy(&next);
    if (e == KETEN_OK) {
        check_needed(node);
    }
    return e;
}

/* A fresh version is in force: the deliveries held while the directory had
 * expired are asked for again (a Hello makes the broker send again every
 * delivery not receipted). */
static void resume_held(keten_node *node)
{
    if (node->held_deliveries == 0 || !keten_directory_fresh(node->dir, keten_dirs_now_ms(node))) {
        return;
    }
    KETEN_LOG(KETEN_LOG_NOTICE,
        "fresh directory installed; deliveries held while it had expired "
        "are asked for again",
        "version=%llu held=%llu", (unsigned long long)keten_directory_version(node->dir),
        (unsigned long long)node->held_deliveries);
    node->held_deliveries = 0;
    if (node->link != NULL && keten_link_connected(node->link)) {
        keten_witness_send_hello(node);
    } /* else the next connection's Hello does it */
}

/* Install a chain (oldest first) if it verifies from the version in force
 * and ends newer than it (*installed); source names where it came from in
 * the log line. */
static keten_err install_chain(keten_node *node, const uint8_t *const *bufs, const size_t *lens,
    size_t n, const char *source, bool *installed)
{
    keten_directory *next = NULL;
    *installed = false;
    uint64_t before = keten_directory_version(node->dir);
    keten_err e = keten_directory_verify_chain(
        node->anchor, node->dir, bufs, lens, n, keten_now_ms(), &next);
    if (e != KETEN_OK) {
        goto out;
    }
    if (keten_directory_version(next) <= before) {
        goto out; /* nothing newer */
    }
    e = store_versions(node, bufs, lens, n, before);
    if (e != KETEN_OK) {
        goto out;
    }
    const Keten__NodeCert *old_broker = keten_directory_broker(node->dir);
    const Keten__NodeCert *new_broker = keten_directory_broker(next);
    if (old_broker == NULL || new_broker == NULL
        || old_broker->transport_pk.len != new_broker->transport_pk.len
        || memcmp(old_broker->transport_pk.data, new_broker->transport_pk.data,
               new_broker->transport_pk.len)
            != 0) {
        node->relink = true;
    }
    keten_directory_destroy(&node->dir);
    node->dir = next;
    next = NULL;
    *installed = true;
    KETEN_LOG(KETEN_LOG_NOTICE, "directory installed", "version=%llu previous=%llu source=%s",
        (unsigned long long)keten_directory_version(node->dir), (unsigned long long)before, source);
    if (keten_dirs_my_cert(node) == NULL) {
        KETEN_LOG(KETEN_LOG_WARNING, "this node is not a current node of the directory",
            "node=%s version=%llu", node->me->id,
            (unsigned long long)keten_directory_version(node->dir));
    }
    check_needed(node);
    resume_held(node);
out:
    keten_directory_destroy(&next);
    return e;
}

keten_err keten_dirs_on_push(keten_node *node, const Keten__DirectoryPush *push)
{
    if (push->n_chain == 0) {
        return KETEN_OK;
    }
    if (push->n_chain > STORED_MAX) {
        return keten_err_set(
            KETEN_ERR_TOO_LARGE, "a directory chain of %zu versions", push->n_chain);
    }
    const uint8_t **bufs = calloc(push->n_chain, sizeof *bufs);
    size_t *lens = calloc(push->n_chain, sizeof *lens);
    keten_err e = KETEN_OK;
    if (bufs == NULL || lens == NULL) {
        e = KETEN_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < push->n_chain; i++) {
        bufs[i] = push->chain[i].data;
        lens[i] = push->chain[i].len;
    }
    bool installed = false;
    e = install_chain(node, bufs, lens, push->n_chain, "broker", &installed);
out:
    free(bufs);
    free(lens);
    return e;
}

keten_err keten_dirs_reload(keten_node *node, bool *installed)
{
    *installed = false;
    uint8_t *file = NULL;
    size_t len = 0;
    keten_err e = keten_file_read(node->opts.directory, KETEN_DIRECTORY_MAX, &file, &len);
    if (e == KETEN_OK) {
        const uint8_t *fb = file;
        e = install_chain(node, &fb, &len, 1, "file", installed);
    }
    free(file);
    return e;
}

void keten_dirs_request(keten_node *node)
{
    if (node->link == NULL || !keten_link_connected(node->link)) {
        return;
    }
    Keten__DirectoryRequest req = KETEN__DIRECTORY_REQUEST__INIT;
    req.after_version = keten_directory_version(node->dir);
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = keten_node_request_id(node);
    f.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
    f.directory_request = &req;
    if (keten_link_send(node->link, &f) != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_WARNING, "cannot ask for directories", "error=\"%s\"", keten_err_detail());
    }
    node->dir_requested_at = keten_mono_ms();
}

void keten_dirs_need(keten_node *node, uint64_t version)
{
    if (version <= keten_directory_version(node->dir)) {
        return;
    }
    if (version > node->dir_needed) {
        keten_dirs_forget_needed(node); /* the frame naming the newest version */
    }
    if (version >= node->dir_needed) {
        keep_needed_frame(node);
    }
    if (version > node->dir_needed) {
        KETEN_LOG(KETEN_LOG_WARNING,
            "checkpoint names a newer directory; sending stops until "
            "it is installed",
            "named=%llu installed=%llu", (unsigned long long)version,
            (unsigned long long)keten_directory_version(node->dir));
        if (node->dir_needed == 0) {
            node->dir_needed_since = keten_now_ms();
        }
        node->dir_needed = version;
        save_needed(node);
    }
    if (keten_mono_ms() - node->dir_requested_at >= DIR_REQUEST_EVERY_MS
        || node->dir_requested_at == 0) {
        keten_dirs_request(node);
    }
}

/* The directory in force has expired: the alarm, once per version (at the
 * first delivery or notice, or at the loop's tick when nothing comes). */
static void expired_alarm(keten_node *node)
{
    uint64_t version = keten_directory_version(node->dir);
    if (node->dir_expired_alarmed != version) {
        node->dir_expired_alarmed = version;
        char exp[40];
        keten_time_iso(keten_directory_doc(node->dir)->expires_at, exp, sizeof exp);
        keten_alarm_raise(node, "directory-expired",
            "directory version %llu expired at %s and no fresh version has come: nothing is "
            "sent, and deliveries are not opened nor receipted (they wait at the broker), until "
            "one is installed; ask the administrators to publish one",
            (unsigned long long)version, exp);
    }
}

void keten_dirs_tick(keten_node *node)
{
    if (!keten_directory_fresh(node->dir, keten_dirs_now_ms(node))) {
        expired_alarm(node); /* an idle node too */
    }
    if (node->dir_needed == 0) {
        return;
    }
    if (keten_mono_ms() - node->dir_requested_at >= DIR_REQUEST_EVERY_MS) {
        keten_dirs_request(node);
    }
    uint64_t now = keten_now_ms();
    if (!node->dir_alarmed && now > node->dir_needed_since
        && now - node->dir_needed_since > KETEN_NODE_DIR_WITHHELD_MS) {
        node->dir_alarmed = true;
        /* The signed checkpoint that named the version is the evidence. */
        Keten__Frame *named = NULL;
        if (node->dir_needed_frame != NULL
            && KETEN_PB_UNPACK(keten__frame, node->dir_needed_frame, node->dir_needed_frame_len,
                   KETEN_NODE_FRAME_MAX, "kept frame", &named)
                != KETEN_OK) {
            keten_err_clear();
        }
        char detail[300];
        snprintf(detail, sizeof detail,
            "the broker's checkpoints name directory version %llu but it has not served it "
            "within %llu ms (installed: %llu); sending stays stopped",
            (unsigned long long)node->dir_needed, (unsigned long long)KETEN_NODE_DIR_WITHHELD_MS,
            (unsigned long long)keten_directory_version(node->dir));
        if (named != NULL) {
            const Keten__Frame *handling = node->frame;
            node->frame = named;
            keten_alarm_evidence(node, "directory-withheld", "%s", detail);
            node->frame = handling;
        } else {
            keten_alarm_raise(node, "directory-withheld", "%s", detail);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&named);
    }
}

const Keten__NodeCert *keten_dirs_my_cert(const keten_node *node)
{
    const Keten__NodeCert *c = keten_directory_find_id(node->dir, node->me->id);
    if (c == NULL || c->sign_pk.len != KETEN_SIGN_PK_BYTES || c->enc_pk.len != KETEN_ENC_PK_BYTES
        || c->transport_pk.len != KETEN_CURVE_KEY_BYTES
        || sodium_memcmp(c->sign_pk.data, node->me->sign_pk, KETEN_SIGN_PK_BYTES) != 0
        || sodium_memcmp(c->enc_pk.data, node->me->enc_pk, KETEN_ENC_PK_BYTES) != 0
        || sodium_memcmp(c->transport_pk.data, node->me->transport_pk, KETEN_CURVE_KEY_BYTES)
            != 0) {
        return NULL;
    }
    return c;
}

keten_err keten_dirs_send_ok(const keten_node *node)
{
    uint64_t now = keten_dirs_now_ms(node);
    uint64_t version = keten_directory_version(node->dir);
    if (node->refused != KETEN__REASON__REASON_NONE) {
        char text[160];
        keten_alarm_refusal_text(node->refused, node->refused_version, text, sizeof text);
        return keten_err_set(
            keten_alarm_refusal_err(node->refused), "the broker refuses this node: %s", text);
    }
    if (!keten_directory_fresh(node->dir, now)) {
        char exp[40];
        keten_time_iso(keten_directory_doc(node->dir)->expires_at, exp, sizeof exp);
        return keten_err_set(KETEN_ERR_EXPIRED,
            "directory version %llu expired at %s; this node sends nothing until the broker "
            "pushes a fresh version (ask the administrators to publish one)",
            (unsigned long long)version, exp);
    }
    if (node->dir_needed > version) {
        return keten_err_set(KETEN_ERR_ROLLBACK,
            "the broker's checkpoints name directory version %llu but this node holds version "
            "%llu and has not been given the newer one; refusing to send until it is installed "
            "(the broker may be withholding it; see keten-node status)",
            (unsigned long long)node->dir_needed, (unsigned long long)version);
    }
    if (keten_dirs_my_cert(node) == NULL) {
        if (keten_directory_find_id(node->dir, node->me->id) != NULL) {
            /* The id is current with other keys: a rotation. */
            char text[160];
            keten_alarm_refusal_text(
                KETEN__REASON__REASON_KEYS_REPLACED, version, text, sizeof text);
            return keten_err_set(KETEN_ERR_UNKNOWN_NODE, "%s", text);
        }
        const Keten__Revocation *r = keten_directory_find_revoked(node->dir, node->me->id);
        if (r != NULL && !r->superseded) {
            char text[160];
            keten_alarm_refusal_text(KETEN__REASON__REASON_REVOKED, version, text, sizeof text);
            return keten_err_set(KETEN_ERR_REVOKED, "%s", text);
        }
        if (r != NULL) {
            return keten_err_set(KETEN_ERR_REVOKED,
                "this node's certificate (%s) is revoked in directory version %llu; it can no "
                "longer send",
                node->me->id, (unsigned long long)version);
        }
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "this node (%s) is not a current node of directory version %llu with these keys; "
            "has its request been approved and published?",
            node->me->id, (unsigned long long)version);
    }
    return KETEN_OK;
}

const char *keten_dirs_expired_advice(const keten_node *node)
{
    if (keten_directory_fresh(node->dir, keten_dirs_now_ms(node))) {
        return NULL;
    }
    return "the directory has expired: this node opens no delivery, signs no receipt and sends "
           "nothing until a fresh version is installed (deliveries wait at the broker). Ask the "
           "administrators to publish and sign a new version; the broker pushes it, or install "
           "it with --directory and SIGHUP";
}

keten_err keten_dirs_receive_ok(keten_node *node)
{
    uint64_t now = keten_dirs_now_ms(node);
    if (keten_directory_fresh(node->dir, now)) {
        return KETEN_OK;
    }
    uint64_t version = keten_directory_version(node->dir);
    char exp[40];
    keten_time_iso(keten_directory_doc(node->dir)->expires_at, exp, sizeof exp);
    expired_alarm(node);
    return keten_err_set(KETEN_ERR_EXPIRED,
        "directory version %llu expired at %s; this node opens and receipts nothing until a "
        "fresh version is installed",
        (unsigned long long)version, exp);
}

void keten_dirs_held(keten_node *node, uint64_t n)
{
    node->held_deliveries += n;
}
