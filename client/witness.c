#include "witness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "alarm.h"
#include "checkpoint.h"
#include "dirs.h"
#include "link.h"
#include "log.h"
#include "merkle.h"
#include "pb.h"
#include "rec.h"
#include "store.h"
#include "util.h"

#define WITNESSED_KEY "witnessed-size"
#define INCLUSION_BATCH 64 /* leaves per ProofRequest (the broker's cap) */
#define INCLUSION_IN_FLIGHT 16 /* inclusion requests outstanding at once */
#define MISSING_BATCH 256 /* inclusion-missing alarms raised per tick */
#define REQUEST_RETRY_MS 10000ull
#define TICK_MS 1000ull
#define BAD_KEEP 16 /* refused checkpoints remembered (no second alarm) */

/* A checkpoint waiting for its consistency proof. */
typedef struct candidate {
    bool active;
    keten_checkpoint cp;
    char *note;
    size_t len;
    uint64_t request_id;
    uint64_t sent_at; /* mono */
    /* The reference when the proof was asked for: the answer proves
     * consistency with that one, even if the reference moved on since. */
    uint64_t ref_size;
    uint8_t ref_root[KETEN_HASH_BYTES];
} candidate;

struct keten_witness {
    bool have_ref;
    keten_checkpoint ref;
    uint64_t witnessed_size;
    uint64_t unwitnessed_since; /* wall ms of the first accepted, unwitnessed reference */
    bool warned;
    candidate newer; /* larger than the reference */
    candidate older; /* smaller than the reference, not stored */
    uint64_t incl_id[INCLUSION_IN_FLIGHT]; /* inclusion requests in flight */
    uint64_t incl_at[INCLUSION_IN_FLIGHT]; /* mono ms each was sent */
    size_t n_incl;
    uint64_t incl_next; /* the next pending leaf to ask for */
    uint64_t incl_wrapped; /* mono ms the scan last started again from leaf 0 */
    uint64_t last_tick; /* mono */
    keten_hash bad[BAD_KEEP]; /* roots of checkpoints already refused */
    uint64_t bad_size[BAD_KEEP];
    size_t n_bad;
};

static void cand_clear(candidate *c)
{
    free(c->note);
    memset(c, 0, sizeof *c);
}

void keten_witness_destroy(keten_witness **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    cand_clear(&(*self_p)->newer);
    cand_clear(&(*self_p)->older);
    free(*self_p);
    *self_p = NULL;
}

static keten_err record_to_cp(const json_t *rec, keten_checkpoint *cp)
{
    memset(cp, 0, sizeof *cp);
    const char *origin = keten_rec_str(rec, "origin");
    if (strlen(origin) > KETEN_ORIGIN_MAX
        || !keten_rec_get_hex(rec, "root", cp->root, KETEN_HASH_BYTES)
        || !keten_rec_get_hex(rec, "dir_hash", cp->dir_hash, KETEN_HASH_BYTES)) {
        return keten_err_set(KETEN_ERR_MALFORMED, "a stored checkpoint record is damaged");
    }
    strcpy(cp->origin, origin);
    cp->size = keten_rec_u64(rec, "size");
    cp->dir_version = keten_rec_u64(rec, "dir_version");
    return KETEN_OK;
}

/* The accepted checkpoint of that size (root etc.), if stored. */
static keten_err stored_cp(
    keten_node *node, MDB_txn *txn, uint64_t size, keten_checkpoint *cp, json_t **rec_out)
{
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(size, key);
    json_t *rec = NULL;
    keten_err e
        = keten_store_get_json(node->store, txn, KETEN_DB_CHECKPOINTS, key, sizeof key, &rec);
    if (e == KETEN_OK) {
        e = record_to_cp(rec, cp);
    }
    if (e == KETEN_OK && rec_out != NULL) {
        *rec_out = rec;
        rec = NULL;
    }
    json_decref(rec);
    return e;
}

keten_err keten_witness_new(keten_node *node, keten_witness **out)
{
    *out = NULL;
    keten_witness *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return KETEN_ERR_NOMEM;
    }
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e != KETEN_OK) {
        goto out;
    }
    uint64_t size = 0;
    MDB_val v;
    e = keten_store_last_u64(node->store, txn, KETEN_DB_CHECKPOINTS, &size, &v);
    if (e == KETEN_OK) {
        json_t *rec = NULL;
        e = stored_cp(node, txn, size, &self->ref, &rec);
        if (e == KETEN_OK) {
            self->have_ref = true;
            if (!json_is_true(json_object_get(rec, "witnessed"))) {
                self->unwitnessed_since = keten_rec_u64(rec, "accepted_at");
            }
        }
        json_decref(rec);
    } else if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        e = KETEN_OK;
    }
    if (e == KETEN_OK
        && keten_store_get(
               node->store, txn, KETEN_DB_STATE, WITNESSED_KEY, strlen(WITNESSED_KEY), &v)
            == KETEN_OK
        && v.mv_size == KETEN_STORE_U64_KEY) {
        self->witnessed_size = keten_store_u64_get(v.mv_data);
    }
    if (self->have_ref && self->witnessed_size >= self->ref.size) {
        self->unwitnessed_since = 0;
    }
out:
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        keten_witness_destroy(&self);
        return e;
    }
    *out = self;
    return KETEN_OK;
}

static keten_err proof_hashes(ProtobufCBinaryData *in, size_t n, keten_hash *out)
{
    if (n > KETEN_MERKLE_MAX_PROOF) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "proof of %zu hashes", n);
    }
    for (size_t i = 0; i < n; i++) {
        if (in[i].len != KETEN_HASH_BYTES) {
            return keten_err_set(KETEN_ERR_MALFORMED, "proof hash %zu is %zu bytes", i, in[i].len);
        }
        memcpy(out[i], in[i].data, KETEN_HASH_BYTES);
    }
    return KETEN_OK;
}

static void send_proof_request(keten_node *node, uint64_t request_id, uint64_t old_size,
    uint64_t tree_size, uint64_t *leaves, size_t n_leaves)
{
    Keten__ProofRequest pr = KETEN__PROOF_REQUEST__INIT;
    pr.old_size = old_size;
    pr.tree_size = tree_size;
    pr.leaf_indexes = leaves;
    pr.n_leaf_indexes = n_leaves;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = request_id;
    f.body_case = KETEN__FRAME__BODY_PROOF_REQUEST;
    f.proof_request = &pr;
    if (keten_link_send(node->link, &f) != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot ask for proofs", "error=\"%s\"", keten_err_detail());
    }
}

static void save_witnessed(
    keten_node *node, uint64_t size, uint64_t cp_size, const char *note, size_t len)
{
    MDB_txn *txn = NULL;
    uint8_t v[KETEN_STORE_U64_KEY];
    keten_store_u64_put(size, v);
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_store_put(
            node->store, txn, KETEN_DB_STATE, WITNESSED_KEY, strlen(WITNESSED_KEY), v, sizeof v);
    }
    /* Keep the note with its cosignatures as evidence, if it is ours. */
    json_t *rec = NULL;
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(cp_size, key);
    if (e == KETEN_OK
        && keten_store_get_json(node->store, txn, KETEN_DB_CHECKPOINTS, key, sizeof key, &rec)
            == KETEN_OK) {
        e = keten_rec_set(rec, "witnessed", json_true());
        if (e == KETEN_OK) {
            e = keten_rec_set(rec, "note", json_stringn(note, len));
        }
        if (e == KETEN_OK) {
            e = keten_store_put_json(node->store, txn, KETEN_DB_CHECKPOINTS, key, sizeof key, rec);
        }
    }
    keten_err_clear();
    json_decref(rec);
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store witness state", "error=\"%s\"", keten_strerror(e));
    }
}

/* The accepted_at of the first accepted checkpoint larger than size. */
static uint64_t first_unwitnessed(keten_node *node, uint64_t size)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint64_t at = 0;
    if (keten_store_begin(node->store, false, &txn) != KETEN_OK) {
        return keten_now_ms();
    }
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_CHECKPOINTS), &cur) == 0) {
        uint8_t key[KETEN_STORE_U64_KEY];
        keten_store_u64_put(size + 1, key);
        MDB_val k = { sizeof key, key }, v;
        if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0) {
            json_error_t jerr;
            json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, &jerr);
            at = keten_rec_u64(rec, "accepted_at");
            json_decref(rec);
        }
        mdb_cursor_close(cur);
    }
    keten_store_abort(&txn);
    return at != 0 ? at : keten_now_ms();
}

/* cp (with note) is consistent with the node's view: count its witnesses. */
static void count_witnesses(
    keten_node *node, const keten_checkpoint *cp, const char *note, size_t len)
{
    keten_witness *w = node->witness;
    size_t count = 0;
    bool witnessed = false;
    if (keten_checkpoint_witnesses(note, len, node->dir, &count, &witnessed) != KETEN_OK) {
        return;
    }
    if (!witnessed || cp->size <= w->witnessed_size) {
        return;
    }
    w->witnessed_size = cp->size;
    save_witnessed(node, cp->size, cp->size, note, len);
    KETEN_LOG(KETEN_LOG_INFO, "checkpoint witnessed", "tree_size=%llu cosignatures=%zu",
        (unsigned long long)cp->size, count);
    if (!w->have_ref || w->witnessed_size >= w->ref.size) {
        w->unwitnessed_since = 0;
    } else {
        w->unwitnessed_since = first_unwitnessed(node, w->witnessed_size);
    }
    w->warned = false;
}

static void accept(keten_node *node, const keten_checkpoint *cp, const char *note, size_t len)
{
    keten_witness *w = node->witness;
    uint64_t now = keten_now_ms();
    json_t *rec = json_object();
    keten_err e = rec == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "note", json_stringn(note, len));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "origin", json_string(cp->origin));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "size", json_integer((json_int_t)cp->size));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "root", keten_rec_hex(cp->root, KETEN_HASH_BYTES));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "dir_version", json_integer((json_int_t)cp->dir_version));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "dir_hash", keten_rec_hex(cp->dir_hash, KETEN_HASH_BYTES));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "accepted_at", json_integer((json_int_t)now));
    }
    MDB_txn *txn = NULL;
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(cp->size, key);
    if (e == KETEN_OK) {
        e = keten_store_begin(node->store, true, &txn);
    }
    if (e == KETEN_OK) {
        e = keten_store_put_json(node->store, txn, KETEN_DB_CHECKPOINTS, key, sizeof key, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    json_decref(rec);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store checkpoint", "error=\"%s\"", keten_err_detail());
        return;
    }
    w->ref = *cp;
    w->have_ref = true;
    node->counters.checkpoints_accepted++;
    if (w->unwitnessed_since == 0 && w->witnessed_size < cp->size) {
        w->unwitnessed_since = now;
    }
    KETEN_LOG(
        KETEN_LOG_DEBUG, "checkpoint accepted", "tree_size=%llu", (unsigned long long)cp->size);

    /* Cosign: this node vouches that it is an extension of what it saw. */
    char *line = NULL;
    e = keten_cosignature_sign(note, len, node->me->id, node->me->sign_sk, now / 1000, &line);
    if (e == KETEN_OK && keten_link_connected(node->link)) {
        Keten__Cosignature cs = KETEN__COSIGNATURE__INIT;
        cs.node = node->me->id;
        cs.line = line;
        cs.tree_size = cp->size;
        Keten__Frame f = KETEN__FRAME__INIT;
        f.body_case = KETEN__FRAME__BODY_COSIGNATURE;
        f.cosignature = &cs;
        e = keten_link_send(node->link, &f);
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "cosignature not sent", "tree_size=%llu error=\"%s\"",
            (unsigned long long)cp->size, keten_err_detail());
    }
    free(line);
    count_witnesses(node, cp, note, len);
}

static bool same_root(const keten_checkpoint *a, const keten_checkpoint *b)
{
    return sodium_memcmp(a->root, b->root, KETEN_HASH_BYTES) == 0;
}

static bool known_bad(const keten_witness *w, const keten_checkpoint *cp)
{
    for (size_t i = 0; i < w->n_bad && i < BAD_KEEP; i++) {
        if (w->bad_size[i] == cp->size
            && sodium_memcmp(w->bad[i], cp->root, KETEN_HASH_BYTES) == 0) {
            return true;
        }
    }
    return false;
}

static void remember_bad(keten_witness *w, const keten_checkpoint *cp)
{
    size_t slot = w->n_bad % BAD_KEEP;
    memcpy(w->bad[slot], cp->root, KETEN_HASH_BYTES);
    w->bad_size[slot] = cp->size;
    w->n_bad++;
}

/* Directory line checks; false: do not take the checkpoint. */
static bool directory_line_ok(keten_node *node, const keten_checkpoint *cp)
{
    keten_witness *w = node->witness;
    uint64_t mine = keten_directory_version(node->dir);
    if (cp->dir_version > mine) {
        keten_dirs_need(node, cp->dir_version);
        return false;
    }
    if (w->have_ref && cp->dir_version < w->ref.dir_version) {
        remember_bad(w, cp);
        keten_alarm_raise(node, "directory-mismatch",
            "checkpoint of size %llu names directory version %llu, lower than version %llu "
            "named by the accepted checkpoint of size %llu",
            (unsigned long long)cp->size, (unsigned long long)cp->dir_version,
            (unsigned long long)w->ref.dir_version, (unsigned long long)w->ref.size);
        return false;
    }
    if (cp->dir_version == mine) {
        if (sodium_memcmp(cp->dir_hash, keten_directory_hash(node->dir), KETEN_HASH_BYTES) != 0) {
            remember_bad(w, cp);
            keten_alarm_raise(node, "directory-mismatch",
                "checkpoint of size %llu names directory version %llu with another hash than "
                "the version this node holds",
                (unsigned long long)cp->size, (unsigned long long)cp->dir_version);
            return false;
        }
        return true;
    }
    /* An older version than ours: compare with the one we stored, if any. */
    MDB_txn *txn = NULL;
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(cp->dir_version, key);
    MDB_val v;
    bool ok = true;
    if (keten_store_begin(node->store, false, &txn) == KETEN_OK
        && keten_store_get(node->store, txn, KETEN_DB_DIRECTORIES, key, sizeof key, &v)
            == KETEN_OK) {
        Keten__SignedDirectory *sd = NULL;
        if (KETEN_PB_UNPACK(keten__signed_directory, v.mv_data, v.mv_size, KETEN_DIRECTORY_MAX,
                "directory", &sd)
            == KETEN_OK) {
            uint8_t h[KETEN_HASH_BYTES];
            crypto_hash_sha256(h, sd->directory.data, sd->directory.len);
            if (sodium_memcmp(h, cp->dir_hash, sizeof h) != 0) {
                ok = false;
            }
        }
        keten_pb_free((ProtobufCMessage **)(void *)&sd);
    }
    keten_err_clear();
    keten_store_abort(&txn);
    if (!ok) {
        remember_bad(w, cp);
        keten_alarm_raise(node, "directory-mismatch",
            "checkpoint of size %llu names directory version %llu with another hash than the "
            "stored version",
            (unsigned long long)cp->size, (unsigned long long)cp->dir_version);
    }
    return ok;
}

static void refuse(keten_node *node, const char *why, const keten_checkpoint *cp)
{
    node->counters.checkpoints_refused++;
    KETEN_LOG(KETEN_LOG_DEBUG, "checkpoint not taken", "why=\"%s\" tree_size=%llu", why,
        (unsigned long long)cp->size);
}

static keten_err cand_set(candidate *c, const keten_checkpoint *cp, const char *note, size_t len,
    uint64_t request_id, const keten_checkpoint *ref)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return KETEN_ERR_NOMEM;
    }
    memcpy(copy, note, len);
    copy[len] = '\0';
    cand_clear(c);
    c->active = true;
    c->cp = *cp;
    c->note = copy;
    c->len = len;
    c->request_id = request_id;
    c->sent_at = keten_mono_ms();
    c->ref_size = ref->size;
    memcpy(c->ref_root, ref->root, KETEN_HASH_BYTES);
    return KETEN_OK;
}

void keten_witness_on_checkpoint(keten_node *node, const Keten__CheckpointFrame *cf)
{
    keten_witness *w = node->witness;
    const char *note = cf->note != NULL ? cf->note : "";
    size_t len = strlen(note);
    keten_checkpoint cp;
    const Keten__NodeCert *broker = keten_directory_broker(node->dir);
    keten_err e = broker == NULL || broker->log_pk.len != KETEN_SIGN_PK_BYTES
        ? keten_err_set(KETEN_ERR_UNKNOWN_NODE, "the directory has no broker log key")
        : keten_checkpoint_open(note, len, broker->id, broker->log_pk.data, &cp);
    if (e != KETEN_OK) {
        node->counters.checkpoints_refused++;
        KETEN_LOG(KETEN_LOG_WARNING, "checkpoint refused", "error=\"%s\" detail=\"%s\"",
            keten_strerror(e), keten_err_detail());
        return;
    }
    char origin[KETEN_ORIGIN_MAX + 8];
    snprintf(origin, sizeof origin, "keten/%s", keten_directory_network(node->dir));
    if (strcmp(cp.origin, origin) != 0) {
        refuse(node, "wrong origin", &cp);
        return;
    }
    if (known_bad(w, &cp)) {
        node->counters.checkpoints_refused++;
        return;
    }
    if (!directory_line_ok(node, &cp)) {
        refuse(node, "directory line", &cp);
        return;
    }
    if (!w->have_ref) {
        accept(node, &cp, note, len);
        return;
    }
    if (cp.size == w->ref.size) {
        if (!same_root(&cp, &w->ref)) {
            node->counters.checkpoints_refused++;
            remember_bad(w, &cp);
            keten_alarm_raise(node, "inconsistent-checkpoint",
                "the broker signed two checkpoints of size %llu with different roots",
                (unsigned long long)cp.size);
            return;
        }
        count_witnesses(node, &cp, note, len);
        return;
    }
    if (!keten_link_connected(node->link)) {
        return;
    }
    if (cp.size > w->ref.size) {
        if (w->newer.active && w->newer.cp.size == cp.size && same_root(&w->newer.cp, &cp)
            && keten_mono_ms() - w->newer.sent_at < REQUEST_RETRY_MS) {
            return; /* already asked */
        }
        uint64_t rid = keten_node_request_id(node);
        if (cand_set(&w->newer, &cp, note, len, rid, &w->ref) == KETEN_OK) {
            send_proof_request(node, rid, w->ref.size, cp.size, NULL, 0);
        }
        return;
    }
    /* Smaller than the reference. */
    keten_checkpoint old;
    MDB_txn *txn = NULL;
    bool stored = false;
    if (keten_store_begin(node->store, false, &txn) == KETEN_OK
        && stored_cp(node, txn, cp.size, &old, NULL) == KETEN_OK) {
        stored = true;
    }
    keten_err_clear();
    keten_store_abort(&txn);
    if (stored) {
        if (!same_root(&old, &cp)) {
            node->counters.checkpoints_refused++;
            remember_bad(w, &cp);
            keten_alarm_raise(node, "inconsistent-checkpoint",
                "the broker signed two checkpoints of size %llu with different roots",
                (unsigned long long)cp.size);
            return;
        }
        count_witnesses(node, &cp, note, len);
        return;
    }
    if (w->older.active && keten_mono_ms() - w->older.sent_at < REQUEST_RETRY_MS) {
        return;
    }
    uint64_t rid = keten_node_request_id(node);
    if (cand_set(&w->older, &cp, note, len, rid, &w->ref) == KETEN_OK) {
        send_proof_request(node, rid, cp.size, w->ref.size, NULL, 0);
    }
}

static void on_consistency(
    keten_node *node, candidate *c, bool newer, const Keten__ProofResponse *r)
{
    keten_witness *w = node->witness;
    keten_hash proof[KETEN_MERKLE_MAX_PROOF];
    /* The proof was asked for against the reference of that moment
     * (c->ref_*), which may since have moved on. */
    uint64_t old_size = newer ? c->ref_size : c->cp.size;
    uint64_t new_size = newer ? c->cp.size : c->ref_size;
    const uint8_t *old_root = newer ? c->ref_root : c->cp.root;
    const uint8_t *new_root = newer ? c->cp.root : c->ref_root;
    keten_err e = r->old_size != old_size || r->tree_size != new_size
        ? keten_err_set(KETEN_ERR_INCONSISTENT, "the proof is for %llu -> %llu",
            (unsigned long long)r->old_size, (unsigned long long)r->tree_size)
        : proof_hashes(r->consistency, r->n_consistency, proof);
    if (e == KETEN_OK) {
        e = keten_merkle_verify_consistency(
            old_size, new_size, old_root, new_root, (const keten_hash *)proof, r->n_consistency);
    }
    if (e != KETEN_OK) {
        node->counters.checkpoints_refused++;
        remember_bad(w, &c->cp);
        keten_alarm_raise(node, "inconsistent-checkpoint",
            "the broker's checkpoint of size %llu is not consistent with the checkpoint of size "
            "%llu (%s); it was not cosigned",
            (unsigned long long)c->cp.size, (unsigned long long)c->ref_size, keten_err_detail());
        cand_clear(c);
        return;
    }
    bool ref_moved = w->ref.size != c->ref_size
        || sodium_memcmp(w->ref.root, c->ref_root, KETEN_HASH_BYTES) != 0;
    if (newer && ref_moved) {
        /* Consistent with the old reference, but the reference moved on
         * meanwhile (to another checkpoint also consistent with the old
         * one): that says nothing about this one and the new reference.
         * Not taken, no alarm: a later checkpoint is asked for afresh. */
        KETEN_LOG(KETEN_LOG_DEBUG, "checkpoint proof outdated", "tree_size=%llu reference=%llu",
            (unsigned long long)c->cp.size, (unsigned long long)w->ref.size);
        cand_clear(c);
        return;
    }
    if (newer) {
        accept(node, &c->cp, c->note, c->len);
    } else {
        /* Older than a reference that is itself a prefix of the current
         * one: a prefix of the current one too. */
        count_witnesses(node, &c->cp, c->note, c->len);
    }
    cand_clear(c);
}

/* The header bytes the pending message must have in its submitted record. */
static keten_err expected_header(
    keten_node *node, MDB_txn *txn, const uint8_t *pending, uint8_t **hdr, size_t *hdr_len)
{
    json_t *rec = NULL;
    keten_store_db db = pending[24] == 's' ? KETEN_DB_SENT : KETEN_DB_MESSAGES;
    keten_err e = keten_store_get_json(node->store, txn, db, pending, KETEN_MSG_ID_BYTES, &rec);
    if (e == KETEN_OK) {
        e = keten_rec_get_hexbuf(rec, "header", KETEN_ENVELOPE_MAX, hdr, hdr_len);
    }
    json_decref(rec);
    return e;
}

/* Does the inclusion proof p show the submitted record of that message? */
static keten_err check_inclusion(keten_node *node, MDB_txn *txn, const Keten__InclusionProof *p,
    uint64_t size, const keten_checkpoint *cp, const uint8_t *pending)
{
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    keten_hash lh;
    uint8_t *hdr = NULL;
    size_t hdr_len = 0;
    Keten__AuditRecord *ar = NULL;
    keten_err e = proof_hashes(p->path, p->n_path, path);
    if (e != KETEN_OK) {
        return e;
    }
    if (p->leaf.len == 0 || p->leaf.len > KETEN_MERKLE_LEAF_MAX) {
        return keten_err_set(KETEN_ERR_MALFORMED, "no leaf bytes in the proof");
    }
    keten_merkle_leaf_hash(p->leaf.data, p->leaf.len, lh);
    if (p->leaf_hash.len != 0
        && (p->leaf_hash.len != KETEN_HASH_BYTES
            || sodium_memcmp(p->leaf_hash.data, lh, KETEN_HASH_BYTES) != 0)) {
        return keten_err_set(KETEN_ERR_INCONSISTENT, "the proof's leaf hash is not its leaf's");
    }
    e = keten_merkle_verify_inclusion(
        lh, p->leaf_index, size, (const keten_hash *)path, p->n_path, cp->root);
    if (e != KETEN_OK) {
        return e;
    }
    e = KETEN_PB_UNPACK(
        keten__audit_record, p->leaf.data, p->leaf.len, KETEN_MERKLE_LEAF_MAX, "audit record", &ar);
    if (e != KETEN_OK) {
        return e;
    }
    if (ar->seq != p->leaf_index || ar->event != KETEN__EVENT__EVENT_SUBMITTED
        || ar->msg_id.len != KETEN_MSG_ID_BYTES
        || sodium_memcmp(ar->msg_id.data, pending, KETEN_MSG_ID_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "leaf %llu is not the submitted record of this message",
            (unsigned long long)p->leaf_index);
        goto out;
    }
    e = expected_header(node, txn, pending, &hdr, &hdr_len);
    if (e != KETEN_OK) {
        goto out;
    }
    if (ar->header.len != hdr_len || sodium_memcmp(ar->header.data, hdr, hdr_len) != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "leaf %llu holds other header bytes than the message's",
            (unsigned long long)p->leaf_index);
    }
out:
    free(hdr);
    keten_pb_free((ProtobufCMessage **)(void *)&ar);
    return e;
}

static void on_inclusion(keten_node *node, const Keten__ProofResponse *r)
{
    MDB_txn *txn = NULL;
    keten_checkpoint cp;
    if (keten_store_begin(node->store, true, &txn) != KETEN_OK) {
        return;
    }
    if (stored_cp(node, txn, r->tree_size, &cp, NULL) != KETEN_OK) {
        keten_store_abort(&txn);
        KETEN_LOG(KETEN_LOG_WARNING, "inclusion proofs against a checkpoint not accepted",
            "tree_size=%llu", (unsigned long long)r->tree_size);
        return;
    }
    for (size_t i = 0; i < r->n_inclusions; i++) {
        const Keten__InclusionProof *p = r->inclusions[i];
        uint8_t key[KETEN_STORE_U64_KEY];
        keten_store_u64_put(p->leaf_index, key);
        MDB_val v;
        if (p->leaf_index >= r->tree_size
            || keten_store_get(node->store, txn, KETEN_DB_PENDING, key, sizeof key, &v) != KETEN_OK
            || v.mv_size != KETEN_STORE_PENDING_BYTES) {
            continue;
        }
        uint8_t pending[KETEN_STORE_PENDING_BYTES];
        memcpy(pending, v.mv_data, sizeof pending);
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(pending, KETEN_MSG_ID_BYTES, hex);
        keten_err e = check_inclusion(node, txn, p, r->tree_size, &cp, pending);
        if (e == KETEN_OK) {
            node->counters.inclusion_passed++;
            KETEN_LOG(KETEN_LOG_DEBUG, "inclusion verified", "msg_id=%s leaf=%llu", hex,
                (unsigned long long)p->leaf_index);
        } else {
            node->counters.inclusion_failed++;
            keten_alarm_raise(node, "inclusion-failed",
                "message %s (%s) at leaf %llu: the broker's inclusion proof in its checkpoint of "
                "size %llu does not hold: %s",
                hex, pending[24] == 's' ? "sent" : "received", (unsigned long long)p->leaf_index,
                (unsigned long long)r->tree_size, keten_err_detail());
        }
        if (keten_store_del(node->store, txn, KETEN_DB_PENDING, key, sizeof key) != KETEN_OK) {
            break;
        }
    }
    if (keten_store_commit(&txn) != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_ERR, "cannot store inclusion results", "error=\"%s\"", keten_err_detail());
    }
}

/* Ask for the inclusion proofs of pending leaves the reference covers, in
 * leaf order, up to INCLUSION_IN_FLIGHT requests of INCLUSION_BATCH leaves;
 * leaves still pending are asked for again from the start after
 * REQUEST_RETRY_MS. */
static void ask_inclusions(keten_node *node)
{
    keten_witness *w = node->witness;
    if (!w->have_ref || !keten_link_connected(node->link)) {
        return;
    }
    uint64_t mono = keten_mono_ms();
    for (size_t i = 0; i < w->n_incl;) {
        if (mono - w->incl_at[i] > REQUEST_RETRY_MS) { /* lost: forget it */
            w->incl_id[i] = w->incl_id[w->n_incl - 1];
            w->incl_at[i] = w->incl_at[w->n_incl - 1];
            w->n_incl--;
        } else {
            i++;
        }
    }
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (keten_store_begin(node->store, false, &txn) != KETEN_OK) {
        return;
    }
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_PENDING), &cur) != 0) {
        keten_store_abort(&txn);
        return;
    }
    while (w->n_incl < INCLUSION_IN_FLIGHT) {
        uint64_t leaves[INCLUSION_BATCH];
        size_t n = 0;
        uint8_t start[KETEN_STORE_U64_KEY];
        keten_store_u64_put(w->incl_next, start);
        MDB_val k = { sizeof start, start }, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        for (; rc == 0 && n < INCLUSION_BATCH; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != KETEN_STORE_U64_KEY) {
                continue;
            }
            uint64_t leaf = keten_store_u64_get(k.mv_data);
            if (leaf >= w->ref.size) {
                break;
            }
            leaves[n++] = leaf;
        }
        if (n == 0) {
            if (w->n_incl == 0 && w->incl_next != 0 && mono - w->incl_wrapped >= REQUEST_RETRY_MS) {
                w->incl_next = 0; /* ask again for what is still pending */
                w->incl_wrapped = mono;
                continue;
            }
            break;
        }
        w->incl_next = leaves[n - 1] + 1;
        uint64_t id = keten_node_request_id(node);
        w->incl_id[w->n_incl] = id;
        w->incl_at[w->n_incl] = mono;
        w->n_incl++;
        send_proof_request(node, id, 0, w->ref.size, leaves, n);
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
}

void keten_witness_on_proof(keten_node *node, uint64_t request_id, const Keten__ProofResponse *r)
{
    keten_witness *w = node->witness;
    if (w->newer.active && request_id == w->newer.request_id) {
        on_consistency(node, &w->newer, true, r);
    } else if (w->older.active && request_id == w->older.request_id) {
        on_consistency(node, &w->older, false, r);
    } else {
        for (size_t i = 0; i < w->n_incl; i++) {
            if (w->incl_id[i] == request_id) {
                w->incl_id[i] = w->incl_id[w->n_incl - 1];
                w->incl_at[i] = w->incl_at[w->n_incl - 1];
                w->n_incl--;
                on_inclusion(node, r);
                ask_inclusions(node);
                return;
            }
        }
        KETEN_LOG(KETEN_LOG_DEBUG, "proof response not asked for", "request_id=%llu",
            (unsigned long long)request_id);
    }
}

void keten_witness_on_link_up(keten_node *node)
{
    keten_witness *w = node->witness;
    cand_clear(&w->newer);
    cand_clear(&w->older);
    w->n_incl = 0;
    w->incl_next = 0;
    /* The deadline clock runs while connected. */
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (keten_store_begin(node->store, true, &txn) != KETEN_OK) {
        return;
    }
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_PENDING), &cur) != 0) {
        keten_store_abort(&txn);
        return;
    }
    uint64_t floor = keten_now_ms() + node->opts.inclusion_timeout_ms;
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != KETEN_STORE_PENDING_BYTES) {
            continue;
        }
        if (keten_store_u64_get((const uint8_t *)v.mv_data + 16) < floor) {
            uint8_t nv[KETEN_STORE_PENDING_BYTES];
            memcpy(nv, v.mv_data, sizeof nv);
            keten_store_u64_put(floor, nv + 16);
            MDB_val nval = { sizeof nv, nv };
            if (mdb_cursor_put(cur, &k, &nval, MDB_CURRENT) != 0) {
                break;
            }
        }
    }
    mdb_cursor_close(cur);
    if (keten_store_commit(&txn) != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_ERR, "cannot store inclusion deadlines", "error=\"%s\"", keten_err_detail());
    }
}

void keten_witness_tick(keten_node *node)
{
    keten_witness *w = node->witness;
    uint64_t mono = keten_mono_ms();
    ask_inclusions(node);
    if (mono - w->last_tick < TICK_MS) {
        return;
    }
    w->last_tick = mono;
    uint64_t now = keten_now_ms();
    if (w->unwitnessed_since != 0 && !w->warned && now > w->unwitnessed_since
        && now - w->unwitnessed_since > node->opts.witness_timeout_ms) {
        w->warned = true;
        keten_alarm_warn(node, "checkpoint-not-witnessed",
            "the node's reference checkpoint (size %llu) has not been witnessed by a quorum of "
            "partners for %llu s: many partners are offline, or the broker shows this node a "
            "history the others do not see",
            (unsigned long long)w->ref.size,
            (unsigned long long)((now - w->unwitnessed_since) / 1000));
    }
    if (!keten_link_connected(node->link)) {
        return;
    }
    if (w->newer.active && mono - w->newer.sent_at > 3 * REQUEST_RETRY_MS) {
        cand_clear(&w->newer);
    }
    if (w->older.active && mono - w->older.sent_at > 3 * REQUEST_RETRY_MS) {
        cand_clear(&w->older);
    }

    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint64_t missing[MISSING_BATCH];
    uint8_t missing_val[MISSING_BATCH][KETEN_STORE_PENDING_BYTES];
    size_t n_missing = 0;
    if (keten_store_begin(node->store, false, &txn) != KETEN_OK) {
        return;
    }
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_PENDING), &cur) != 0) {
        keten_store_abort(&txn);
        return;
    }
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != KETEN_STORE_U64_KEY || v.mv_size != KETEN_STORE_PENDING_BYTES) {
            continue;
        }
        uint64_t leaf = keten_store_u64_get(k.mv_data);
        uint64_t deadline = keten_store_u64_get((const uint8_t *)v.mv_data + 16);
        if (deadline < now && n_missing < MISSING_BATCH) {
            missing[n_missing] = leaf;
            memcpy(missing_val[n_missing], v.mv_data, KETEN_STORE_PENDING_BYTES);
            n_missing++;
        }
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    if (n_missing == 0) {
        return;
    }
    for (size_t i = 0; i < n_missing; i++) {
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(missing_val[i], KETEN_MSG_ID_BYTES, hex);
        node->counters.inclusion_failed++;
        keten_alarm_raise(node, "inclusion-missing",
            "message %s (%s) at leaf %llu: the broker has not proven it in an accepted "
            "checkpoint within %llu ms (reference size %llu)",
            hex, missing_val[i][24] == 's' ? "sent, acknowledged" : "received",
            (unsigned long long)missing[i], (unsigned long long)node->opts.inclusion_timeout_ms,
            (unsigned long long)(w->have_ref ? w->ref.size : 0));
    }
    if (keten_store_begin(node->store, true, &txn) != KETEN_OK) {
        return;
    }
    for (size_t i = 0; i < n_missing; i++) {
        uint8_t key[KETEN_STORE_U64_KEY];
        keten_store_u64_put(missing[i], key);
        if (keten_store_del(node->store, txn, KETEN_DB_PENDING, key, sizeof key) != KETEN_OK) {
            break;
        }
    }
    if (keten_store_commit(&txn) != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_ERR, "cannot store inclusion results", "error=\"%s\"", keten_err_detail());
    }
}

keten_err keten_witness_status(keten_node *node, json_t *status)
{
    keten_witness *w = node->witness;
    json_t *cp = json_object();
    json_t *warnings = json_array();
    keten_err e = (cp == NULL || warnings == NULL) ? KETEN_ERR_NOMEM : KETEN_OK;
    if (e == KETEN_OK && w->have_ref) {
        e = keten_rec_set(cp, "tree_size", json_integer((json_int_t)w->ref.size));
        if (e == KETEN_OK) {
            e = keten_rec_set(cp, "root", keten_rec_b64(w->ref.root, KETEN_HASH_BYTES));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(
                cp, "directory_version", json_integer((json_int_t)w->ref.dir_version));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(cp, "witnessed", json_boolean(w->witnessed_size >= w->ref.size));
        }
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(cp, "witnessed_size", json_integer((json_int_t)w->witnessed_size));
    }
    uint64_t now = keten_now_ms();
    if (e == KETEN_OK && w->unwitnessed_since != 0 && now > w->unwitnessed_since
        && now - w->unwitnessed_since > node->opts.witness_timeout_ms) {
        char text[200];
        snprintf(text, sizeof text, "checkpoint of size %llu not witnessed by a quorum for %llu s",
            (unsigned long long)w->ref.size,
            (unsigned long long)((now - w->unwitnessed_since) / 1000));
        e = json_array_append_new(warnings, json_string(text)) == 0 ? KETEN_OK : KETEN_ERR_NOMEM;
    }
    size_t pending = 0;
    MDB_txn *txn = NULL;
    if (e == KETEN_OK) {
        e = keten_store_begin(node->store, false, &txn);
    }
    if (e == KETEN_OK) {
        e = keten_store_count(node->store, txn, KETEN_DB_PENDING, &pending);
    }
    keten_store_abort(&txn);
    if (e == KETEN_OK) {
        e = keten_rec_set(status, "checkpoint", cp);
        cp = NULL;
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(status, "pending_inclusion", json_integer((json_int_t)pending));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(status, "warnings", warnings);
        warnings = NULL;
    }
    json_decref(cp);
    json_decref(warnings);
    return e;
}

keten_err keten_witness_evidence(keten_node *node, json_t **out)
{
    *out = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    json_t *latest = NULL, *witnessed = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_CHECKPOINTS), &cur) != 0) {
        keten_store_abort(&txn);
        return keten_err_set(KETEN_ERR_STORE, "cannot read the node's checkpoints");
    }
    /* Newest first: the newest accepted one, and the newest witnessed one. */
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    while (rc == 0 && witnessed == NULL) {
        json_error_t jerr;
        json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, &jerr);
        if (rec != NULL && json_is_string(json_object_get(rec, "note"))) {
            if (latest == NULL) {
                latest = json_incref(rec);
            }
            if (json_is_true(json_object_get(rec, "witnessed"))) {
                witnessed = json_incref(rec);
            }
        }
        json_decref(rec);
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    json_t *pick = witnessed != NULL ? witnessed : latest;
    if (pick == NULL) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "this node has not accepted a checkpoint yet; wait until it has been connected to the "
            "broker for a few seconds");
    }
    *out = json_pack("{s:I, s:b, s:O}", "tree_size", (json_int_t)keten_rec_u64(pick, "size"),
        "witnessed", witnessed != NULL, "note", json_object_get(pick, "note"));
    json_decref(latest);
    json_decref(witnessed);
    return *out != NULL ? KETEN_OK : KETEN_ERR_NOMEM;
}
