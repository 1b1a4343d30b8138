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
#include "logproof.h"
#include "merkle.h"
#include "nodestore.h"
#include "pb.h"
#include "rec.h"
#include "store.h"
#include "util.h"
#include "sha256.h"

#define WITNESSED_KEY "witnessed-size"
#define REFERENCE_KEY "reference"
#define EVIDENCE_COUNT_KEY "checkpoints-evidence"
#define TICK_MS 1000ull
#define MINUTE_MS (60ull * 1000ull)
#define HOUR_MS (3600ull * 1000ull)
#define BAD_KEEP 16 /* refused checkpoints remembered (no second alarm) */

struct keten_witness {
    bool have_ref;
    keten_checkpoint ref;
    /* The last KETEN_WITNESS_KEPT checkpoints accepted (a ring): proofs are
     * checked against these roots only. */
    uint64_t kept_size[KETEN_WITNESS_KEPT];
    keten_hash kept_root[KETEN_WITNESS_KEPT];
    size_t n_kept; /* entries ever added; slot = n % KETEN_WITNESS_KEPT */
    uint64_t last_witness_size; /* the last witness checkpoint accepted (0: none) */
    uint64_t witnessed_size;
    uint64_t unwitnessed_since; /* wall ms of the first accepted, unwitnessed reference */
    bool warned;
    uint64_t last_tick; /* mono */
    keten_hash bad[BAD_KEEP]; /* roots of checkpoints already refused */
    uint64_t bad_size[BAD_KEEP];
    size_t n_bad;
    /* The retention pass (witness.h): where it is, and the checkpoint it
     * keeps so far for the hour or day it is in (rep, of bucket). */
    bool prune_active;
    bool prune_ran; /* a pass was started since the node started */
    uint64_t prune_from; /* the first tree size the pass has not looked at */
    uint64_t prune_last_end; /* mono ms when the last pass ended */
    bool prune_have_rep;
    uint64_t prune_bucket;
    uint64_t prune_rep;
    bool prune_rep_witnessed;
    size_t prune_removed; /* removed by the pass under way */
    /* The stored checkpoint the alarm about to be raised concerns (0:
     * none), marked as evidence with it (keten_witness_keep_for_alarm). */
    uint64_t alarm_size;
};

void keten_witness_destroy(keten_witness **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    free(*self_p);
    *self_p = NULL;
}

static void keep(keten_witness *w, uint64_t size, const keten_hash root)
{
    size_t n = w->n_kept < KETEN_WITNESS_KEPT ? w->n_kept : KETEN_WITNESS_KEPT;
    for (size_t i = 0; i < n; i++) {
        if (w->kept_size[i] == size) {
            return; /* kept already (its root was checked equal) */
        }
    }
    size_t slot = w->n_kept % KETEN_WITNESS_KEPT;
    w->kept_size[slot] = size;
    memcpy(w->kept_root[slot], root, KETEN_HASH_BYTES);
    w->n_kept++;
}

static void record_to_cp(
    const Keten__CheckpointRecord *rec, const char *network, keten_checkpoint *cp);

bool keten_witness_root(const keten_node *node, uint64_t size, keten_hash root_out)
{
    const keten_witness *w = node->witness;
    size_t n = w->n_kept < KETEN_WITNESS_KEPT ? w->n_kept : KETEN_WITNESS_KEPT;
    for (size_t i = 0; i < n; i++) {
        if (w->kept_size[i] == size) {
            memcpy(root_out, w->kept_root[i], KETEN_HASH_BYTES);
            return true;
        }
    }
    /* Older than the ones kept in memory: the witness checkpoints this node
     * accepted are in its store. */
    MDB_txn *txn = NULL;
    Keten__CheckpointRecord *rec = NULL;
    bool found = keten_store_begin(node->store, false, &txn) == KETEN_OK
        && keten_nodestore_checkpoint_get(node->store, txn, size, &rec) == KETEN_OK;
    if (found) {
        memcpy(root_out, rec->root.data, KETEN_HASH_BYTES); /* 32: checked when read */
    } else if (keten_err_detail()[0] != '\0') {
        KETEN_LOG(KETEN_LOG_DEBUG, "no stored checkpoint for a proof", "tree_size=%llu detail=\"%s\"",
            (unsigned long long)size, keten_err_detail());
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    keten_store_abort(&txn);
    keten_err_clear();
    return found;
}

uint64_t keten_witness_reference_size(const keten_node *node)
{
    return node->witness->have_ref ? node->witness->ref.size : 0;
}

static void ref_pack(const keten_checkpoint *cp, uint8_t out[static KETEN_STORE_REFERENCE_BYTES])
{
    keten_store_u64_put(cp->size, out);
    memcpy(out + 8, cp->root, KETEN_HASH_BYTES);
    keten_store_u64_put(cp->dir_version, out + 40);
    memcpy(out + 48, cp->dir_hash, KETEN_HASH_BYTES);
}

static void ref_unpack(
    const uint8_t in[static KETEN_STORE_REFERENCE_BYTES], const char *network, keten_checkpoint *cp)
{
    memset(cp, 0, sizeof *cp);
    snprintf(cp->origin, sizeof cp->origin, "keten/%s", network);
    cp->size = keten_store_u64_get(in);
    memcpy(cp->root, in + 8, KETEN_HASH_BYTES);
    cp->dir_version = keten_store_u64_get(in + 40);
    memcpy(cp->dir_hash, in + 48, KETEN_HASH_BYTES);
}

static void record_to_cp(
    const Keten__CheckpointRecord *rec, const char *network, keten_checkpoint *cp)
{
    memset(cp, 0, sizeof *cp);
    snprintf(cp->origin, sizeof cp->origin, "keten/%s", network);
    cp->size = rec->size;
    memcpy(cp->root, rec->root.data, KETEN_HASH_BYTES); /* 32: checked when read */
    cp->dir_version = rec->directory_version;
    memcpy(cp->dir_hash, rec->directory_hash.data, KETEN_HASH_BYTES);
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
    MDB_val v;
    e = keten_store_get(node->store, txn, KETEN_DB_STATE, REFERENCE_KEY, strlen(REFERENCE_KEY), &v);
    if (e == KETEN_OK && v.mv_size == KETEN_STORE_REFERENCE_BYTES) {
        ref_unpack(v.mv_data, keten_directory_network(node->dir), &self->ref);
        self->have_ref = true;
    } else if (e == KETEN_OK || e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        e = KETEN_OK;
    }
    /* The last witness checkpoint accepted (stored), and the reference of a
     * store that kept only those. */
    uint64_t size = 0;
    if (e == KETEN_OK) {
        e = keten_store_last_u64(node->store, txn, KETEN_DB_CHECKPOINTS, &size, &v);
        if (e == KETEN_OK) {
            Keten__CheckpointRecord *rec = NULL;
            e = keten_nodestore_checkpoint_get(node->store, txn, size, &rec);
            if (e == KETEN_OK) {
                keten_checkpoint cp;
                record_to_cp(rec, keten_directory_network(node->dir), &cp);
                self->last_witness_size = cp.size;
                if (!self->have_ref || self->ref.size < cp.size) {
                    self->ref = cp;
                    self->have_ref = true;
                }
                if (!rec->witnessed) {
                    self->unwitnessed_since = rec->accepted_at;
                }
            }
            keten_pb_free((ProtobufCMessage **)(void *)&rec);
        } else if (e == KETEN_ERR_NOT_FOUND) {
            keten_err_clear();
            e = KETEN_OK;
        }
    }
    if (e == KETEN_OK && self->have_ref) {
        keep(self, self->ref.size, self->ref.root);
    }
    if (e == KETEN_OK
        && keten_store_get(
               node->store, txn, KETEN_DB_STATE, WITNESSED_KEY, strlen(WITNESSED_KEY), &v)
            == KETEN_OK
        && v.mv_size == KETEN_STORE_U64_KEY) {
        self->witnessed_size = keten_store_u64_get(v.mv_data);
    }
    keten_err_clear();
    if (self->witnessed_size >= self->last_witness_size) {
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

void keten_witness_send_hello(keten_node *node)
{
    Keten__Hello h = KETEN__HELLO__INIT;
    h.tree_size = keten_witness_reference_size(node);
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_HELLO;
    f.hello = &h;
    if (keten_link_send(node->link, &f) != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot send Hello", "error=\"%s\"", keten_err_detail());
        return;
    }
    KETEN_LOG(KETEN_LOG_DEBUG, "Hello sent", "tree_size=%llu", (unsigned long long)h.tree_size);
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
    Keten__CheckpointRecord *rec = NULL;
    if (e == KETEN_OK) {
        e = keten_nodestore_checkpoint_get(node->store, txn, cp_size, &rec);
        if (e == KETEN_ERR_NOT_FOUND) {
            keten_err_clear();
            e = KETEN_OK;
        } else if (e == KETEN_OK) {
            char *copy = NULL;
            e = keten_checkpoint_note_trim(note, len, node->dir, &copy);
            if (e == KETEN_OK) {
                if (rec->note != NULL && rec->note != protobuf_c_empty_string) {
                    free(rec->note);
                }
                rec->note = copy;
                rec->witnessed = true;
                e = keten_nodestore_checkpoint_put(node->store, txn, rec);
            }
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store witness state", "error=\"%s\"", keten_err_str(e));
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
            Keten__CheckpointRecord *rec = NULL;
            if (keten_nodestore_decode(KETEN_DB_CHECKPOINTS, k.mv_data, k.mv_size, &v,
                    &keten__checkpoint_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
                    (ProtobufCMessage **)(void *)&rec)
                == KETEN_OK) {
                at = rec->accepted_at;
            } else {
                KETEN_LOG(KETEN_LOG_ERR, "cannot read a stored checkpoint", "error=\"%s\"",
                    keten_err_detail());
            }
            keten_pb_free((ProtobufCMessage **)(void *)&rec);
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
    /* The same fields as the broker's line (broker/checkpointer.c). */
    KETEN_LOG(KETEN_LOG_INFO, "checkpoint witnessed", "size=%llu witnesses=%zu",
        (unsigned long long)cp->size, count);
    if (w->witnessed_size >= w->last_witness_size) {
        w->unwitnessed_since = 0;
    } else {
        w->unwitnessed_since = first_unwitnessed(node, w->witnessed_size);
    }
    w->warned = false;
}

static bool same_root_hash(const keten_hash a, const keten_hash b)
{
    return sodium_memcmp(a, b, KETEN_HASH_BYTES) == 0;
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
    /* The version a checkpoint names never goes down as the log grows. An
     * older checkpoint sent again as news (its cosignatures) names the
     * version of its own time, which may be below the reference's, never
     * above it; a checkpoint of the reference's size or larger never names
     * a version below it. */
    bool older = w->have_ref && cp->size < w->ref.size;
    if (w->have_ref
        && (older ? cp->dir_version > w->ref.dir_version : cp->dir_version < w->ref.dir_version)) {
        remember_bad(w, cp);
        keten_alarm_raise(node, "directory-mismatch",
            "checkpoint of size %llu names directory version %llu, %s than version %llu named by "
            "the accepted checkpoint of size %llu",
            (unsigned long long)cp->size, (unsigned long long)cp->dir_version,
            older ? "higher" : "lower", (unsigned long long)w->ref.dir_version,
            (unsigned long long)w->ref.size);
        return false;
    }
    if (cp->dir_version > mine) {
        keten_dirs_need(node, cp->dir_version);
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
            keten_sha256(h, sd->directory.data, sd->directory.len);
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

/* Persist the reference (state "reference"); a witness checkpoint also goes
 * to the checkpoints table, its note trimmed to the lines a reader checks
 * (keten_checkpoint_note_trim). */
static keten_err store_accepted(
    keten_node *node, const keten_checkpoint *cp, const char *note, size_t len, bool witness)
{
    uint8_t ref[KETEN_STORE_REFERENCE_BYTES];
    ref_pack(cp, ref);
    char *text = NULL;
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_store_put(node->store, txn, KETEN_DB_STATE, REFERENCE_KEY, strlen(REFERENCE_KEY),
            ref, sizeof ref);
    }
    if (e == KETEN_OK && witness) {
        /* Kept with the lines a reader checks, not what else the broker
         * put there (checkpoint.h). */
        e = keten_checkpoint_note_trim(note, len, node->dir, &text);
    }
    Keten__CheckpointRecord *old = NULL;
    if (e == KETEN_OK && witness) {
        /* The same checkpoint sent again (it became witnessed, or a Hello
         * named it): what the stored one holds stays (when it was
         * accepted, its mark as an alarm's evidence, witnessed), and its
         * note is replaced only by one that more partners cosigned. */
        e = keten_nodestore_checkpoint_get(node->store, txn, cp->size, &old);
        if (e == KETEN_ERR_NOT_FOUND || e == KETEN_ERR_MALFORMED) {
            keten_err_clear(); /* none, or damaged: stored anew */
            e = KETEN_OK;
            keten_pb_free((ProtobufCMessage **)(void *)&old);
        }
    }
    bool keep_old_note = false;
    if (e == KETEN_OK && old != NULL && old->note != NULL) {
        size_t n_old = 0, n_new = 0;
        bool w_old = false, w_new = false;
        keep_old_note
            = keten_checkpoint_witnesses(old->note, strlen(old->note), node->dir, &n_old, &w_old)
                == KETEN_OK
            && keten_checkpoint_witnesses(text, strlen(text), node->dir, &n_new, &w_new) == KETEN_OK
            && n_old >= n_new;
        keten_err_clear();
    }
    if (e == KETEN_OK && witness) {
        Keten__CheckpointRecord rec = KETEN__CHECKPOINT_RECORD__INIT;
        rec.note = keep_old_note ? old->note : text;
        rec.size = cp->size;
        rec.root.data = (uint8_t *)(uintptr_t)cp->root;
        rec.root.len = KETEN_HASH_BYTES;
        rec.directory_version = cp->dir_version;
        rec.directory_hash.data = (uint8_t *)(uintptr_t)cp->dir_hash;
        rec.directory_hash.len = KETEN_HASH_BYTES;
        rec.accepted_at = old != NULL ? old->accepted_at : keten_now_ms();
        rec.evidence = old != NULL && old->evidence;
        rec.witnessed = old != NULL && old->witnessed;
        e = keten_nodestore_checkpoint_put(node->store, txn, &rec);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&old);
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    free(text);
    return e;
}

static void cosign(keten_node *node, const keten_checkpoint *cp, const char *note, size_t len)
{
    char *line = NULL;
    keten_err e = keten_checkpoint_cosignature_sign(
        note, len, node->me->id, node->me->sign_sk, keten_now_ms() / 1000, &line);
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
}

static void accept(
    keten_node *node, const keten_checkpoint *cp, const char *note, size_t len, bool witness)
{
    keten_witness *w = node->witness;
    bool same = w->have_ref && w->ref.size == cp->size;
    if (!same || witness) {
        keten_err e = store_accepted(node, cp, note, len, witness);
        if (e != KETEN_OK) {
            KETEN_LOG(KETEN_LOG_ERR, "cannot store checkpoint", "error=\"%s\"", keten_err_detail());
            return;
        }
    }
    keep(w, cp->size, cp->root);
    w->ref = *cp;
    w->have_ref = true;
    if (witness) {
        w->last_witness_size = cp->size;
    }
    if (!same) {
        node->counters.checkpoints_accepted++;
        KETEN_LOG(KETEN_LOG_DEBUG, "checkpoint accepted", "tree_size=%llu witness=%d",
            (unsigned long long)cp->size, witness ? 1 : 0);
    }
    if (witness) {
        if (w->unwitnessed_since == 0 && w->witnessed_size < cp->size) {
            w->unwitnessed_since = keten_now_ms();
        }
        /* Cosign: this node vouches that it is an extension of what it saw. */
        cosign(node, cp, note, len);
    }
    count_witnesses(node, cp, note, len);
}

static void refuse(keten_node *node, const char *why, const keten_checkpoint *cp)
{
    node->counters.checkpoints_refused++;
    KETEN_LOG(KETEN_LOG_DEBUG, "checkpoint not taken", "why=\"%s\" tree_size=%llu", why,
        (unsigned long long)cp->size);
}

void keten_witness_on_checkpoint(keten_node *node, const Keten__CheckpointFrame *cf)
{
    keten_witness *w = node->witness;
    const char *note = cf->note != NULL ? cf->note : "";
    size_t len = strlen(note);
    keten_checkpoint cp;
    const Keten__NodeCert *broker = keten_directory_broker(node->dir);
    if (broker == NULL || broker->log_pk.len != KETEN_SIGN_PK_BYTES) {
        node->counters.checkpoints_refused++;
        KETEN_LOG(KETEN_LOG_WARNING, "checkpoint refused: the directory has no broker log key",
            "version=%llu", (unsigned long long)keten_directory_version(node->dir));
        return;
    }
    keten_err e = keten_checkpoint_open(note, len, broker->id, broker->log_pk.data, &cp);
    if (e != KETEN_OK) {
        node->counters.checkpoints_refused++;
        keten_alarm_evidence(node, "bad-checkpoint",
            "a checkpoint that does not open with the broker's log key (%s: %s); not accepted",
            keten_err_str(e), keten_err_detail());
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
    keten_hash kept;
    if (w->have_ref && cp.size < w->ref.size && keten_witness_root(node, cp.size, kept)) {
        /* An older checkpoint this node accepted, sent again with the
         * cosignatures it gained since: news about whether it became
         * witnessed, never a new reference. */
        if (!same_root_hash(cp.root, kept)) {
            node->counters.checkpoints_refused++;
            remember_bad(w, &cp);
            w->alarm_size = cp.size; /* the one it contradicts stays, if stored */
            keten_alarm_evidence(node, "inconsistent-checkpoint",
                "the broker signed two checkpoints of size %llu with different roots; not "
                "accepted",
                (unsigned long long)cp.size);
            return;
        }
        count_witnesses(node, &cp, note, len);
        return;
    }
    if (w->have_ref && cp.size < w->ref.size && cf->old_size == cp.size) {
        /* News about an older checkpoint (its cosignatures) that this node
         * never took as a reference (it went past it): nothing to check it
         * against, and it claims nothing about the node's reference. */
        node->counters.checkpoints_unknown_old++;
        KETEN_LOG(KETEN_LOG_DEBUG, "news about a checkpoint this node did not take; ignored",
            "tree_size=%llu reference=%llu", (unsigned long long)cp.size,
            (unsigned long long)w->ref.size);
        return;
    }
    if (w->have_ref && cp.size < w->ref.size) {
        node->counters.checkpoints_refused++;
        remember_bad(w, &cp);
        keten_alarm_evidence(node, "inconsistent-checkpoint",
            "the broker sent a checkpoint of size %llu, smaller than the node's reference of "
            "size %llu; not accepted",
            (unsigned long long)cp.size, (unsigned long long)w->ref.size);
        return;
    }
    if (keten_witness_root(node, cp.size, kept)) {
        if (!same_root_hash(cp.root, kept)) {
            node->counters.checkpoints_refused++;
            remember_bad(w, &cp);
            w->alarm_size = cp.size; /* the one it contradicts stays, if stored */
            keten_alarm_evidence(node, "inconsistent-checkpoint",
                "the broker signed two checkpoints of size %llu with different roots; not "
                "accepted",
                (unsigned long long)cp.size);
            return;
        }
        accept(node, &cp, note, len, cf->witness);
        return;
    }
    /* The proof must start at the reference. One from an older checkpoint
     * the node keeps shows only that the new tree extends that one: a
     * history that forks after it, beneath the reference, would pass, and
     * the node would hold two checkpoints that contradict each other. */
    keten_hash old_root;
    bool known_old = cf->old_size == 0 ? !w->have_ref : w->have_ref && cf->old_size == w->ref.size;
    if (known_old && w->have_ref) {
        memcpy(old_root, w->ref.root, KETEN_HASH_BYTES);
    }
    if (!known_old) {
        node->counters.checkpoints_unknown_old++;
        KETEN_LOG(KETEN_LOG_NOTICE,
            "checkpoint not proven from the node's reference; Hello sent again",
            "tree_size=%llu old_size=%llu reference=%llu", (unsigned long long)cp.size,
            (unsigned long long)cf->old_size,
            (unsigned long long)keten_witness_reference_size(node));
        keten_witness_send_hello(node);
        return;
    }
    if (cf->old_size != 0) {
        keten_hash proof[KETEN_MERKLE_MAX_PROOF];
        e = cf->old_size > cp.size
            ? keten_err_set(KETEN_ERR_INCONSISTENT, "the proof starts after the checkpoint")
            : proof_hashes(cf->consistency, cf->n_consistency, proof);
        if (e == KETEN_OK) {
            e = keten_merkle_verify_consistency(cf->old_size, cp.size, old_root, cp.root,
                (const keten_hash *)proof, cf->n_consistency);
        }
        if (e != KETEN_OK) {
            node->counters.checkpoints_refused++;
            remember_bad(w, &cp);
            keten_alarm_evidence(node, "inconsistent-checkpoint",
                "the broker's checkpoint of size %llu is not consistent with the accepted "
                "checkpoint of size %llu (%s); not accepted, not cosigned",
                (unsigned long long)cp.size, (unsigned long long)cf->old_size, keten_err_detail());
            return;
        }
    }
    accept(node, &cp, note, len, cf->witness);
}

keten_err keten_witness_leaf(
    keten_node *node, const Keten__LeafProof *p, Keten__AuditRecord **rec_out)
{
    *rec_out = NULL;
    if (p == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "no proof in the frame");
    }
    keten_hash root;
    if (!keten_witness_root(node, p->tree_size, root)) {
        node->counters.proofs_unknown++;
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "a proof against a tree of size %llu: not a checkpoint this node accepted and keeps",
            (unsigned long long)p->tree_size);
    }
    keten_err e = keten_logproof_verify(p, root, rec_out);
    if (e == KETEN_OK) {
        node->counters.proofs_passed++;
    } else {
        node->counters.proofs_failed++;
        /* The checkpoint it fails against stays as evidence, marked with
         * the alarm the caller raises (no write here: the caller may hold
         * a transaction). */
        node->witness->alarm_size = p->tree_size;
    }
    return e;
}

/* ---- retention (witness.h) ------------------------------------------------ */

keten_err keten_witness_keep_as_evidence(keten_node *node, MDB_txn *txn, uint64_t size)
{
    MDB_val v;
    keten_err e = KETEN_OK;
    if (size == 0) {
        e = keten_store_last_u64(node->store, txn, KETEN_DB_CHECKPOINTS, &size, &v);
        if (e == KETEN_ERR_NOT_FOUND) {
            keten_err_clear();
            return KETEN_OK; /* none stored */
        }
        if (e != KETEN_OK) {
            return e;
        }
    }
    Keten__CheckpointRecord *rec = NULL;
    e = keten_nodestore_checkpoint_get(node->store, txn, size, &rec);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK;
    }
    uint64_t marked = 0;
    if (e == KETEN_OK && !rec->evidence) {
        e = keten_store_get(
            node->store, txn, KETEN_DB_STATE, EVIDENCE_COUNT_KEY, strlen(EVIDENCE_COUNT_KEY), &v);
        if (e == KETEN_OK && v.mv_size != KETEN_STORE_U64_KEY) {
            e = keten_err_set(KETEN_ERR_MALFORMED, "the state %s is %zu bytes, not %d",
                EVIDENCE_COUNT_KEY, v.mv_size, KETEN_STORE_U64_KEY);
        } else if (e == KETEN_OK) {
            marked = keten_store_u64_get(v.mv_data);
        } else if (e == KETEN_ERR_NOT_FOUND) {
            keten_err_clear();
            e = KETEN_OK;
        }
        if (e == KETEN_OK && marked >= KETEN_WITNESS_EVIDENCE_KEEP_MAX) {
            KETEN_LOG(KETEN_LOG_WARNING,
                "checkpoint not marked as evidence: as many as the limit are marked already",
                "tree_size=%llu marked=%llu", (unsigned long long)size, (unsigned long long)marked);
        } else if (e == KETEN_OK) {
            rec->evidence = true;
            e = keten_nodestore_checkpoint_put(node->store, txn, rec);
            uint8_t count[KETEN_STORE_U64_KEY];
            keten_store_u64_put(marked + 1, count);
            if (e == KETEN_OK) {
                e = keten_store_put(node->store, txn, KETEN_DB_STATE, EVIDENCE_COUNT_KEY,
                    strlen(EVIDENCE_COUNT_KEY), count, sizeof count);
            }
            if (e == KETEN_OK) {
                KETEN_LOG(KETEN_LOG_NOTICE, "checkpoint kept as evidence of an alarm",
                    "tree_size=%llu", (unsigned long long)size);
            }
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    return e;
}

keten_err keten_witness_keep_for_alarm(keten_node *node, MDB_txn *txn)
{
    keten_witness *w = node->witness;
    uint64_t size = 0;
    if (w != NULL) {
        size = w->alarm_size;
        w->alarm_size = 0;
    }
    /* The one the alarm is about first (should the limit of marks be
     * reached, it is the one to keep), then the newest; each whatever the
     * other's outcome. */
    keten_err e = KETEN_OK;
    if (size != 0) {
        e = keten_witness_keep_as_evidence(node, txn, size);
    }
    keten_err e2 = keten_witness_keep_as_evidence(node, txn, 0);
    return e != KETEN_OK ? e : e2;
}

/* The minute, hour or day a checkpoint accepted at `at` is thinned in, at
 * now: false when it is kept whatever the others (accepted in the last
 * KETEN_WITNESS_ALL_MS, or later than now). Minutes, hours and days of the
 * epoch, told apart by the low two bits. */
static bool bucket_of(const keten_node_opts *o, uint64_t now, uint64_t at, uint64_t *bucket)
{
    if (o->checkpoint_keep_ms == 0 || at > now || now - at < KETEN_WITNESS_ALL_MS) {
        return false;
    }
    if (now - at < o->checkpoint_keep_ms) {
        *bucket = (at / MINUTE_MS) << 2;
    } else if (now - at < o->checkpoint_hourly_ms) {
        *bucket = ((at / HOUR_MS) << 2) | 1;
    } else {
        *bucket = ((at / KETEN_MS_PER_DAY) << 2) | 2;
    }
    return true;
}

/* Is the stored checkpoint kept whatever its hour or day (witness.h)?
 * first_above: the first stored size above the witnessed size. */
static bool kept_always(
    const keten_witness *w, const Keten__CheckpointRecord *rec, uint64_t first_above)
{
    return rec->evidence || rec->size == w->witnessed_size || rec->size == first_above;
}

/* The first stored tree size above the witnessed size (UINT64_MAX: none). */
static keten_err first_above_witnessed(keten_node *node, MDB_txn *txn, uint64_t *out)
{
    *out = UINT64_MAX;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_CHECKPOINTS), &cur);
    if (rc != 0) {
        return keten_err_set(
            KETEN_ERR_STORE, "cannot read the node's checkpoints: %s", mdb_strerror(rc));
    }
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(node->witness->witnessed_size + 1, key);
    MDB_val k = { sizeof key, key }, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == KETEN_STORE_U64_KEY) {
        *out = keten_store_u64_get(k.mv_data);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return keten_err_set(
            KETEN_ERR_STORE, "cannot read the node's checkpoints: %s", mdb_strerror(rc));
    }
    return KETEN_OK;
}

/* Where the pass is: copied in, changed by a step, copied back only once
 * the step's transaction is committed. */
typedef struct prune_pos {
    uint64_t from;
    bool have_rep;
    uint64_t bucket;
    uint64_t rep;
    bool rep_witnessed;
} prune_pos;

/* The decisions of one step over the records from pos->from: the sizes to
 * remove in gone (at most chunk), *end when the pass reached its end. */
static keten_err prune_plan(keten_node *node, MDB_txn *txn, uint64_t now, size_t chunk,
    prune_pos *pos, uint64_t *gone, size_t *n_gone, bool *end)
{
    keten_witness *w = node->witness;
    *n_gone = 0;
    *end = false;
    uint64_t newest = 0, first_above = UINT64_MAX;
    MDB_val k, v;
    keten_err e = keten_store_last_u64(node->store, txn, KETEN_DB_CHECKPOINTS, &newest, &v);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        *end = true;
        return KETEN_OK;
    }
    if (e == KETEN_OK) {
        e = first_above_witnessed(node, txn, &first_above);
    }
    if (e != KETEN_OK) {
        return e;
    }
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_CHECKPOINTS), &cur);
    if (rc != 0) {
        return keten_err_set(
            KETEN_ERR_STORE, "cannot read the node's checkpoints: %s", mdb_strerror(rc));
    }
    uint8_t from[KETEN_STORE_U64_KEY];
    keten_store_u64_put(pos->from, from);
    k.mv_size = sizeof from;
    k.mv_data = from;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (size_t looked = 0; rc == 0 && looked < chunk && e == KETEN_OK; looked++) {
        if (k.mv_size != KETEN_STORE_U64_KEY) { /* not a key of this table: leave it */
            node->counters.store_errors++;
            KETEN_LOG(KETEN_LOG_ERR, "a stored checkpoint under a key of the wrong size; kept",
                "bytes=%zu", k.mv_size);
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        uint64_t size = keten_store_u64_get(k.mv_data);
        if (size >= newest) {
            *end = true;
            break;
        }
        pos->from = size + 1;
        Keten__CheckpointRecord *rec = NULL;
        if (keten_nodestore_decode(KETEN_DB_CHECKPOINTS, k.mv_data, k.mv_size, &v,
                &keten__checkpoint_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
                (ProtobufCMessage **)(void *)&rec)
            != KETEN_OK) {
            node->counters.store_errors++;
            KETEN_LOG(KETEN_LOG_ERR, "a stored checkpoint is damaged; kept",
                "tree_size=%llu error=\"%s\"", (unsigned long long)size, keten_err_detail());
            keten_err_clear();
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        uint64_t bucket = 0;
        if (!bucket_of(&node->opts, now, rec->accepted_at, &bucket)) {
            keten_pb_free((ProtobufCMessage **)(void *)&rec);
            *end = true; /* the last hour: from here on every one is kept */
            break;
        }
        if (!pos->have_rep || bucket != pos->bucket) {
            /* The first of its hour or day: kept, so far. */
            pos->have_rep = true;
            pos->bucket = bucket;
            pos->rep = size;
            pos->rep_witnessed = rec->witnessed;
        } else if (pos->rep_witnessed || !rec->witnessed) {
            if (!kept_always(w, rec, first_above)) {
                gone[(*n_gone)++] = size;
            }
        } else {
            /* The first witnessed one of its hour or day: it is kept
             * instead of the unwitnessed one before it. */
            Keten__CheckpointRecord *old = NULL;
            e = keten_nodestore_checkpoint_get(node->store, txn, pos->rep, &old);
            if (e == KETEN_OK && !kept_always(w, old, first_above)) {
                gone[(*n_gone)++] = pos->rep;
            } else if (e == KETEN_ERR_NOT_FOUND || e == KETEN_ERR_MALFORMED) {
                keten_err_clear(); /* gone meanwhile, or damaged: nothing to remove */
                e = KETEN_OK;
            }
            keten_pb_free((ProtobufCMessage **)(void *)&old);
            pos->rep = size;
            pos->rep_witnessed = true;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
        if (e == KETEN_OK) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    }
    mdb_cursor_close(cur);
    if (e == KETEN_OK && rc == MDB_NOTFOUND) {
        *end = true;
    } else if (e == KETEN_OK && rc != 0) {
        e = keten_err_set(
            KETEN_ERR_STORE, "cannot read the node's checkpoints: %s", mdb_strerror(rc));
    }
    return e;
}

keten_err keten_witness_prune(
    keten_node *node, uint64_t now_ms, size_t chunk, size_t *removed, bool *done)
{
    *removed = 0;
    *done = false;
    keten_witness *w = node->witness;
    if (chunk == 0 || chunk > SIZE_MAX / (2 * sizeof(uint64_t))) {
        return keten_err_set(
            KETEN_ERR_INVALID, "a checkpoint retention step of %zu records", chunk);
    }
    if (!w->prune_active) {
        w->prune_active = true;
        w->prune_ran = true;
        w->prune_from = 0;
        w->prune_have_rep = false;
        w->prune_removed = 0;
    }
    prune_pos pos = { w->prune_from, w->prune_have_rep, w->prune_bucket, w->prune_rep,
        w->prune_rep_witnessed };
    /* A step removes at most one record per record it looks at, and one
     * more (an hour's first witnessed one replacing the one before it). */
    uint64_t *gone = malloc((chunk + 1) * sizeof *gone);
    if (gone == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "the checkpoint retention");
    }
    size_t n_gone = 0;
    bool end = false;
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = prune_plan(node, txn, now_ms, chunk, &pos, gone, &n_gone, &end);
    }
    for (size_t i = 0; i < n_gone && e == KETEN_OK; i++) {
        uint8_t key[KETEN_STORE_U64_KEY];
        keten_store_u64_put(gone[i], key);
        e = keten_store_del(node->store, txn, KETEN_DB_CHECKPOINTS, key, sizeof key);
    }
    if (e == KETEN_OK && n_gone > 0) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    free(gone);
    if (e != KETEN_OK) {
        w->prune_active = false; /* the next call starts over */
        w->prune_last_end = keten_mono_ms();
        return e;
    }
    w->prune_from = pos.from;
    w->prune_have_rep = pos.have_rep;
    w->prune_bucket = pos.bucket;
    w->prune_rep = pos.rep;
    w->prune_rep_witnessed = pos.rep_witnessed;
    w->prune_removed += n_gone;
    node->counters.checkpoints_removed += n_gone;
    *removed = n_gone;
    if (end) {
        w->prune_active = false;
        w->prune_last_end = keten_mono_ms();
        *done = true;
        if (w->prune_removed > 0) {
            KETEN_LOG(KETEN_LOG_INFO, "old witness checkpoints thinned out", "removed=%zu",
                w->prune_removed);
        }
    }
    return KETEN_OK;
}

/* The daemon's side: one step a second while a pass is under way. */
static void prune_tick(keten_node *node, uint64_t mono)
{
    keten_witness *w = node->witness;
    if (node->opts.checkpoint_keep_ms == 0) {
        return;
    }
    if (!w->prune_active && w->prune_ran
        && mono - w->prune_last_end < KETEN_WITNESS_PRUNE_EVERY_MS) {
        return;
    }
    size_t removed = 0;
    bool done = false;
    if (keten_witness_prune(node, keten_now_ms(), KETEN_WITNESS_PRUNE_CHUNK, &removed, &done)
        != KETEN_OK) {
        node->counters.store_errors++;
        KETEN_LOG(KETEN_LOG_ERR,
            "old witness checkpoints not thinned out; the next pass tries again", "error=\"%s\"",
            keten_err_detail());
        keten_err_clear();
    }
}

void keten_witness_tick(keten_node *node)
{
    keten_witness *w = node->witness;
    uint64_t mono = keten_mono_ms();
    if (mono - w->last_tick < TICK_MS) {
        return;
    }
    w->last_tick = mono;
    prune_tick(node, mono);
    uint64_t now = keten_now_ms();
    if (w->unwitnessed_since != 0 && !w->warned && now > w->unwitnessed_since
        && now - w->unwitnessed_since > node->opts.witness_timeout_ms) {
        w->warned = true;
        keten_alarm_warn(node, "checkpoint-not-witnessed",
            "the node's checkpoint (size %llu) has not been witnessed by a quorum of "
            "partners for %llu s: many partners are offline, or the broker shows this node a "
            "history the others do not see",
            (unsigned long long)w->last_witness_size,
            (unsigned long long)((now - w->unwitnessed_since) / 1000));
    }
}

/* How many witness checkpoints are stored, and how many of them are
 * marked as evidence. */
static keten_err kept_counts(keten_node *node, size_t *kept, uint64_t *marked)
{
    *kept = 0;
    *marked = 0;
    MDB_txn *txn = NULL;
    MDB_val v;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_store_count(node->store, txn, KETEN_DB_CHECKPOINTS, kept);
    }
    if (e == KETEN_OK) {
        e = keten_store_get(
            node->store, txn, KETEN_DB_STATE, EVIDENCE_COUNT_KEY, strlen(EVIDENCE_COUNT_KEY), &v);
        if (e == KETEN_OK && v.mv_size == KETEN_STORE_U64_KEY) {
            *marked = keten_store_u64_get(v.mv_data);
        } else if (e == KETEN_OK) { /* damaged: status goes on without it */
            node->counters.store_errors++;
            KETEN_LOG(KETEN_LOG_ERR, "a damaged state value in the node's store",
                "key=%s bytes=%zu", EVIDENCE_COUNT_KEY, v.mv_size);
        } else if (e == KETEN_ERR_NOT_FOUND) {
            keten_err_clear();
            e = KETEN_OK;
        }
    }
    keten_store_abort(&txn);
    return e;
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
            e = keten_rec_set(cp, "witnessed",
                json_boolean(
                    w->last_witness_size > 0 && w->witnessed_size >= w->last_witness_size));
        }
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(cp, "witnessed_size", json_integer((json_int_t)w->witnessed_size));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(cp, "last_witness_size", json_integer((json_int_t)w->last_witness_size));
    }
    size_t kept = 0;
    uint64_t marked = 0;
    if (e == KETEN_OK) {
        e = kept_counts(node, &kept, &marked);
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(cp, "kept", json_integer((json_int_t)kept));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(cp, "kept_as_evidence", json_integer((json_int_t)marked));
    }
    uint64_t now = keten_now_ms();
    if (e == KETEN_OK && w->unwitnessed_since != 0 && now > w->unwitnessed_since
        && now - w->unwitnessed_since > node->opts.witness_timeout_ms) {
        char text[200];
        snprintf(text, sizeof text, "checkpoint of size %llu not witnessed by a quorum for %llu s",
            (unsigned long long)w->last_witness_size,
            (unsigned long long)((now - w->unwitnessed_since) / 1000));
        e = json_array_append_new(warnings, json_string(text)) == 0 ? KETEN_OK : KETEN_ERR_NOMEM;
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(status, "checkpoint", cp);
        cp = NULL;
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
    Keten__CheckpointRecord *latest = NULL, *witnessed = NULL;
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
    while (rc == 0 && witnessed == NULL && e == KETEN_OK) {
        Keten__CheckpointRecord *rec = NULL;
        e = keten_nodestore_decode(KETEN_DB_CHECKPOINTS, k.mv_data, k.mv_size, &v,
            &keten__checkpoint_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
            (ProtobufCMessage **)(void *)&rec);
        if (e == KETEN_OK) {
            if (rec->witnessed) {
                witnessed = rec;
            } else if (latest == NULL) {
                latest = rec;
            } else {
                keten_pb_free((ProtobufCMessage **)(void *)&rec);
            }
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    const Keten__CheckpointRecord *pick = witnessed != NULL ? witnessed : latest;
    if (e == KETEN_OK && pick == NULL) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "this node has not accepted a checkpoint yet; wait until it has been connected to the "
            "broker for a few seconds");
    }
    if (e == KETEN_OK) {
        *out = json_pack("{s:I, s:b, s:s}", "tree_size", (json_int_t)pick->size, "witnessed",
            witnessed != NULL, "note", pick->note != NULL ? pick->note : "");
        e = *out != NULL ? KETEN_OK : KETEN_ERR_NOMEM;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&latest);
    keten_pb_free((ProtobufCMessage **)(void *)&witnessed);
    return e;
}

/* One kept checkpoint for the --all list, appended to list at index at
 * (json_array_size(list): at the end). A record without a note is left
 * out. */
static keten_err list_put(json_t *list, size_t at, const Keten__CheckpointRecord *rec)
{
    if (rec->note == NULL || rec->note[0] == '\0') {
        return KETEN_OK;
    }
    json_t *o = json_pack("{s:I, s:b, s:s}", "tree_size", (json_int_t)rec->size, "witnessed",
        rec->witnessed, "note", rec->note);
    if (o == NULL || json_array_insert_new(list, at, o) != 0) {
        return keten_err_set(KETEN_ERR_NOMEM, "listing the node's checkpoints");
    }
    return KETEN_OK;
}

keten_err keten_witness_evidence_all(
    keten_node *node, uint64_t now_ms, size_t older_max, size_t max, json_t **out)
{
    *out = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    json_t *list = json_array();
    if (list == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "listing the node's checkpoints");
    }
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e != KETEN_OK) {
        json_decref(list);
        return e;
    }
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_CHECKPOINTS), &cur) != 0) {
        keten_store_abort(&txn);
        json_decref(list);
        return keten_err_set(KETEN_ERR_STORE, "cannot read the node's checkpoints");
    }
    /* The thinned series: from the oldest, those accepted before the keep
     * window. */
    MDB_val k, v;
    bool have_older = false;
    uint64_t older_end = 0; /* the largest size listed so far */
    size_t n_older = 0;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && e == KETEN_OK) {
        Keten__CheckpointRecord *rec = NULL;
        e = keten_nodestore_decode(KETEN_DB_CHECKPOINTS, k.mv_data, k.mv_size, &v,
            &keten__checkpoint_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
            (ProtobufCMessage **)(void *)&rec);
        uint64_t bucket = 0;
        bool older = e == KETEN_OK && bucket_of(&node->opts, now_ms, rec->accepted_at, &bucket);
        /* Past older_max, only those kept as an alarm's evidence: an
         * auditor must be able to have every one of them. */
        if (older && (n_older < older_max || rec->evidence)) {
            e = list_put(list, json_array_size(list), rec);
            have_older = true;
            older_end = rec->size;
            n_older++;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
        if (!older) {
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    /* Then the newest, up to max, newest first, each put before the ones
     * it precedes: tree-size order. */
    size_t at = json_array_size(list), newest = 0;
    rc = e == KETEN_OK ? mdb_cursor_get(cur, &k, &v, MDB_LAST) : MDB_NOTFOUND;
    while (rc == 0 && e == KETEN_OK && newest < max) {
        Keten__CheckpointRecord *rec = NULL;
        e = keten_nodestore_decode(KETEN_DB_CHECKPOINTS, k.mv_data, k.mv_size, &v,
            &keten__checkpoint_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
            (ProtobufCMessage **)(void *)&rec);
        if (e == KETEN_OK && have_older && rec->size <= older_end) {
            keten_pb_free((ProtobufCMessage **)(void *)&rec);
            break;
        }
        if (e == KETEN_OK) {
            e = list_put(list, at, rec);
            newest++;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    if (e == KETEN_OK && json_array_size(list) == 0) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "this node has not accepted a checkpoint yet; wait until it has been connected to the "
            "broker for a few seconds");
    }
    if (e != KETEN_OK) {
        json_decref(list);
        return e;
    }
    *out = list;
    return KETEN_OK;
}
