#include "checkpointer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "checkpoint.h"
#include "deliver.h"
#include "dirstate.h"
#include "log.h"
#include "logproof.h"
#include "merkle.h"
#include "metrics.h"
#include "outq.h"
#include "store.h"
#include "util.h"

/* Sign the checkpoint of the first size leaves (read in txn) with the log
 * key; keten_checkpoint_sign() verifies the note and reads it back before
 * it returns it. */
static keten_err sign_note(broker *b, MDB_txn *txn, uint64_t size, char **note_out)
{
    *note_out = NULL;
    const keten_directory *dir = broker_dir(b);
    keten_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    snprintf(ck.origin, sizeof ck.origin, "keten/%s", keten_directory_network(dir));
    ck.size = size;
    keten_err e = keten_merkle_log_root_memo(b->st->log, txn, b->cp->memo, size, ck.root);
    if (e != KETEN_OK) {
        return e;
    }
    ck.dir_version = keten_directory_version(dir);
    memcpy(ck.dir_hash, keten_directory_hash(dir), KETEN_HASH_BYTES);
    char *note = NULL;
    if ((e = keten_checkpoint_sign(&ck, b->me->id, b->me->log_sk, &note)) != KETEN_OK) {
        return e;
    }
    *note_out = note;
    return KETEN_OK;
}

keten_err checkpointer_open(broker *b)
{
    checkpointer *cp = calloc(1, sizeof *cp);
    if (cp == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "checkpointer");
    }
    b->cp = cp;
    cp->lp = malloc(sizeof *cp->lp);
    if (cp->lp == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "checkpointer");
    }
    keten_err me = keten_merkle_log_memo_new(CHECKPOINTER_MEMO_SLOTS_LOG2, &cp->memo);
    if (me != KETEN_OK) {
        return me;
    }
    MDB_txn *txn = NULL;
    keten_err e = store_begin(b->st, false, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    uint64_t size = 0;
    const char *note = NULL;
    size_t len = 0;
    bool found = false;
    e = store_checkpoint_last(b->st, txn, &size, &note, &len, &found);
    uint64_t tree = 0;
    if (e == KETEN_OK) {
        e = keten_merkle_log_size(b->st->log, txn, &tree);
    }
    if (e == KETEN_OK && found && size > tree) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the latest stored checkpoint covers %llu records but the log has %llu; the store "
            "was altered",
            (unsigned long long)size, (unsigned long long)tree);
    }
    /* The latest checkpoint is always that of the current size: sign it
     * again (Ed25519 is deterministic: the same note when nothing changed). */
    if (e == KETEN_OK && tree > 0 && (e = sign_note(b, txn, tree, &cp->note)) == KETEN_OK) {
        cp->note_len = strlen(cp->note);
        cp->size = tree;
        metrics_commit_checkpoint(b->m);
    }
    store_abort(&txn);
    if (e != KETEN_OK) {
        return e;
    }
    cp->last_size = found ? size : 0;
    cp->last_mono_ms = keten_mono_ms();
    metrics_tree_size(b->m, tree);
    metrics_checkpoint(b->m, cp->size);
    return KETEN_OK;
}

static void forget_resend(checkpointer *cp)
{
    free(cp->rewit_note);
    cp->rewit_note = NULL;
    cp->rewit_len = 0;
    cp->rewit_size = 0;
}

void checkpointer_destroy(checkpointer **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    checkpointer *cp = *self_p;
    free(cp->note);
    free(cp->undo_note);
    forget_resend(cp);
    free(cp->lp);
    keten_merkle_log_memo_destroy(&cp->memo);
    free(cp);
    *self_p = NULL;
}

void checkpointer_begin(broker *b)
{
    checkpointer *cp = b->cp;
    free(cp->undo_note);
    cp->undo_note = NULL;
    cp->has_undo = false;
    cp->witness = false;
    forget_resend(cp);
}

void checkpointer_undo(broker *b)
{
    checkpointer *cp = b->cp;
    /* The undone transaction may have appended leaves whose subtree hashes
     * were remembered. */
    keten_merkle_log_memo_clear(cp->memo);
    if (cp->has_undo) {
        free(cp->note);
        cp->note = cp->undo_note;
        cp->note_len = cp->undo_len;
        cp->size = cp->undo_size;
        cp->undo_note = NULL;
        cp->has_undo = false;
        metrics_checkpoint(b->m, cp->size);
    }
    cp->witness = false;
    forget_resend(cp);
}

/* Stage for c a CheckpointFrame of note (tree size `size`) with the
 * consistency proof from c->cp_sent; c->cp_sent becomes size. */
static keten_err stage_note(
    broker *b, outq *q, conn *c, const char *note, size_t len, uint64_t size, bool witness)
{
    uint64_t old = c->cp_sent;
    if (old > size) {
        return keten_err_set(KETEN_ERR_INVALID,
            "a checkpoint of %llu leaves for %s, which was sent one of %llu",
            (unsigned long long)size, c->node, (unsigned long long)old);
    }
    keten_hash hashes[KETEN_MERKLE_MAX_PROOF];
    ProtobufCBinaryData bins[KETEN_MERKLE_MAX_PROOF];
    size_t n = 0;
    if (old > 0 && old < size) {
        keten_err e = keten_merkle_log_consistency_proof_memo(
            b->st->log, b->txn, b->cp->memo, old, size, hashes, &n);
        if (e != KETEN_OK) {
            return e;
        }
    }
    for (size_t i = 0; i < n; i++) {
        bins[i].data = hashes[i];
        bins[i].len = KETEN_HASH_BYTES;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "checkpoint of %zu bytes", len);
    }
    memcpy(copy, note, len);
    copy[len] = '\0';
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = copy;
    cf.old_size = old;
    cf.n_consistency = n;
    cf.consistency = bins;
    cf.witness = witness;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    f.checkpoint = &cf;
    keten_err e = outq_frame(q, c, 0, &f);
    free(copy);
    if (e == KETEN_OK) {
        c->cp_sent = size;
        if (size > c->cp_max) {
            c->cp_max = size;
        }
        metrics_checkpoint_sent(b->m);
    }
    return e;
}

/* Stage for c the note of an older checkpoint of size `size` (one c may be
 * past: <= c->cp_sent or <= c->cp_max) with the cosignatures it gained, as
 * news (old_size = size, no proof); c->cp_sent does not change. */
static keten_err stage_witnessed(
    broker *b, outq *q, conn *c, const char *note, size_t len, uint64_t size)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "checkpoint of %zu bytes", len);
    }
    memcpy(copy, note, len);
    copy[len] = '\0';
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = copy;
    cf.old_size = size;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    f.checkpoint = &cf;
    keten_err e = outq_frame(q, c, 0, &f);
    free(copy);
    if (e == KETEN_OK) {
        metrics_checkpoint_sent(b->m);
    }
    return e;
}

/* outq_prover: what c needs before its first proof frame of the batch. */
static keten_err stage_checkpoints(void *ctx, outq *q, conn *c)
{
    broker *b = ctx;
    checkpointer *cp = b->cp;
    keten_err e = KETEN_OK;
    /* Proven as a new reference only to a connection that cannot be past
     * it: nothing larger was sent to it or named by its Hellos (the last
     * Hello may be an earlier one that was still on its way when the node
     * took a larger checkpoint: proven from that Hello's size, an older
     * checkpoint would be below the node's reference and not news, which
     * a node must take for a lie), or it is the very size last sent. */
    uint64_t w = cp->rewit_size;
    if (cp->rewit_note != NULL && (c->cp_sent == w || (c->cp_sent < w && c->cp_max < w))) {
        e = stage_note(b, q, c, cp->rewit_note, cp->rewit_len, w, true);
    } else if (cp->rewit_note != NULL) {
        /* The connection is (or may be) past the checkpoint that became
         * witnessed: it gets the note with its cosignatures as news about a
         * size it holds (old_size = that size, no proof, not to be cosigned
         * again), so a busy node also learns that its witness checkpoint is
         * witnessed. */
        e = stage_witnessed(b, q, c, cp->rewit_note, cp->rewit_len, cp->rewit_size);
    }
    uint64_t n = cp->batch_size;
    if (e == KETEN_OK && n > 0 && (c->cp_sent != n || cp->witness)) {
        e = stage_note(b, q, c, cp->note, cp->note_len, n, cp->witness);
    }
    return e;
}

/* outq_prover: the proof of leaf in the batch's tree. */
static keten_err prove(void *ctx, uint64_t leaf, const Keten__LeafProof **out)
{
    broker *b = ctx;
    checkpointer *cp = b->cp;
    keten_err e
        = keten_logproof_build_memo(b->st->log, b->txn, cp->memo, leaf, cp->batch_size, cp->lp);
    *out = e == KETEN_OK ? &cp->lp->msg : NULL;
    return e;
}

keten_err checkpointer_commit(broker *b)
{
    checkpointer *cp = b->cp;
    uint64_t size = 0;
    keten_err e = keten_merkle_log_size(b->st->log, b->txn, &size);
    if (e != KETEN_OK) {
        return e;
    }
    if (size > cp->size) {
        char *note = NULL;
        if ((e = sign_note(b, b->txn, size, &note)) != KETEN_OK) {
            return e;
        }
        if (!cp->has_undo) {
            cp->undo_note = cp->note;
            cp->undo_len = cp->note_len;
            cp->undo_size = cp->size;
            cp->has_undo = true;
        } else {
            free(cp->note);
        }
        cp->note = note;
        cp->note_len = strlen(note);
        cp->size = size;
        metrics_commit_checkpoint(b->m);
        metrics_checkpoint(b->m, size);
    }
    uint64_t mono = keten_mono_ms();
    /* A stopping broker stores one too, so that every record is covered by
     * a stored checkpoint (keten-audit prove) however soon it stops. */
    if (size > cp->last_size
        && (size - cp->last_size >= b->cfg->checkpoint_records
            || mono - cp->last_mono_ms >= b->cfg->checkpoint_ms || b->stopping)) {
        if ((e = store_checkpoint_put(b->st, b->txn, size, cp->note, cp->note_len)) != KETEN_OK) {
            return e;
        }
        /* The batch may still fail; server.c then restores last_size. */
        cp->witness = true;
        cp->last_size = size;
        cp->last_mono_ms = mono;
        metrics_witness_checkpoint(b->m);
        KETEN_LOG(
            KETEN_LOG_DEBUG, "witness checkpoint stored", "size=%llu", (unsigned long long)size);
    }
    cp->batch_size = size;
    outq_prover p = { b, stage_checkpoints, prove };
    e = outq_prove(b->out, &p);
    for (size_t i = 0; i < b->conns->n && e == KETEN_OK; i++) {
        conn *c = b->conns->v[i];
        if (c->hello && !c->revoked && !c->cp_staged
            && (c->want_cp || cp->witness || cp->rewit_note != NULL)) {
            c->cp_staged = true;
            e = stage_checkpoints(b, b->out, c);
        }
    }
    for (size_t i = 0; i < b->conns->n; i++) {
        b->conns->v[i]->cp_staged = false;
        b->conns->v[i]->want_cp = false;
    }
    return e;
}

keten_err checkpointer_hello(broker *b, conn *c, uint64_t request_id, const Keten__Hello *h)
{
    uint64_t size = 0;
    keten_err e = keten_merkle_log_size(b->st->log, b->txn, &size);
    if (e != KETEN_OK) {
        return e;
    }
    c->more = true;
    c->notices = true;
    if (h->tree_size > size) {
        c->hello = false;
        c->want_cp = false;
        c->cp_sent = 0;
        char detail[128];
        snprintf(detail, sizeof detail, "your checkpoint has %llu leaves; this log has %llu",
            (unsigned long long)h->tree_size, (unsigned long long)size);
        if ((e = audit_rejected(b, NULL, c->node, KETEN__REASON__REASON_UNKNOWN_CHECKPOINT, 0,
                 NULL))
            != KETEN_OK) {
            return e;
        }
        metrics_reject(b->m, KETEN__REASON__REASON_UNKNOWN_CHECKPOINT);
        KETEN_LOG(KETEN_LOG_WARNING, "hello refused: a checkpoint this log does not have",
            "node=%s tree_size=%llu log_size=%llu", c->node, (unsigned long long)h->tree_size,
            (unsigned long long)size);
        return outq_error(b->out, c, request_id, KETEN__REASON__REASON_UNKNOWN_CHECKPOINT, NULL,
            detail, 0);
    }
    c->hello = true;
    c->want_cp = true;
    c->cp_sent = h->tree_size;
    if (h->tree_size > c->cp_max) {
        c->cp_max = h->tree_size;
    }
    /* Deliveries and notices start once a Hello is accepted. A later Hello
     * on the same connection asks for the deliveries in flight again; they
     * go only as a rewind does (deliver_hello()), or each Hello would have
     * the queue handed out again past the connection's byte budget.
     * Unconfirmed notices come again on their own timer. */
    deliver_hello(c);
    KETEN_LOG(KETEN_LOG_DEBUG, "hello", "node=%s tree_size=%llu", c->node,
        (unsigned long long)h->tree_size);
    return KETEN_OK;
}

/* Whether the signature line (already parsed: "— <name> <base64>") is
 * under the key name node. */
static bool line_names(const char *line, const char *node)
{
    static const char dash[] = "\xe2\x80\x94 "; /* U+2014, then a space */
    size_t dl = sizeof dash - 1;
    size_t nl = strlen(node);
    return strncmp(line, dash, dl) == 0 && strncmp(line + dl, node, nl) == 0
        && line[dl + nl] == ' ';
}

keten_err checkpointer_cosign(
    broker *b, const conn *c, uint64_t request_id, const Keten__Cosignature *cs)
{
    char *with = NULL;
    char *copy = NULL;
    keten_err e = KETEN_OK;
    if (strcmp(cs->node, c->node) != 0) {
        KETEN_LOG(KETEN_LOG_WARNING, "cosignature for another node ignored", "node=%s", c->node);
        return outq_error(b->out, c, request_id, KETEN__REASON__REASON_SENDER_MISMATCH, NULL,
            "a node cosigns only as itself", 0);
    }
    const char *note = NULL;
    size_t len = 0;
    e = store_checkpoint_get(b->st, b->txn, cs->tree_size, &note, &len);
    if (e == KETEN_ERR_NOT_FOUND) {
        return outq_error(b->out, c, request_id, KETEN__REASON__REASON_MALFORMED, NULL,
            "no checkpoint of that tree size", 0);
    }
    if (e != KETEN_OK) {
        return e;
    }
    /* Copy out of the map: the note is rewritten below. */
    copy = malloc(len + 1);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "checkpoint of %zu bytes", len);
    }
    memcpy(copy, note, len);
    copy[len] = '\0';
    const Keten__NodeCert *cert = dirstate_node_cert(broker_dir(b), c->node, c->key, b->now);
    if (cert == NULL || cert->sign_pk.len != KETEN_SIGN_PK_BYTES) {
        goto out;
    }
    e = keten_checkpoint_add_line(copy, len, cs->line, &with);
    if (e == KETEN_ERR_MALFORMED || e == KETEN_ERR_TOO_LARGE) {
        /* Not one signature line "— <name> <base64>" (or one the note
         * cannot hold): input that does not parse, not a bad signature. */
        char detail[256];
        snprintf(detail, sizeof detail, "cosignature line refused: %s", keten_err_detail());
        KETEN_LOG(KETEN_LOG_WARNING, "cosignature line does not parse", "node=%s size=%llu",
            c->node, (unsigned long long)cs->tree_size);
        e = outq_error(b->out, c, request_id,
            e == KETEN_ERR_TOO_LARGE ? KETEN__REASON__REASON_TOO_LARGE
                                     : KETEN__REASON__REASON_MALFORMED,
            NULL, detail, 0);
        goto out;
    }
    if ((e == KETEN_OK || e == KETEN_ERR_EXISTS) && !line_names(cs->line, c->node)) {
        KETEN_LOG(KETEN_LOG_WARNING, "cosignature line under another name refused", "node=%s",
            c->node);
        e = outq_error(b->out, c, request_id, KETEN__REASON__REASON_SENDER_MISMATCH, NULL,
            "the cosignature line is signed under another key name; a node cosigns only as "
            "itself",
            0);
        goto out;
    }
    if (e == KETEN_ERR_EXISTS) {
        e = KETEN_OK; /* cosigned before: the first line stays, this one is ignored */
        goto out;
    }
    uint64_t t = 0;
    if (e == KETEN_OK) {
        e = keten_checkpoint_cosignature_verify(
            with, strlen(with), c->node, cert->sign_pk.data, &t);
    }
    if (e != KETEN_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "cosignature refused: %s", keten_err_str(e));
        KETEN_LOG(KETEN_LOG_WARNING, "cosignature refused", "node=%s size=%llu error=\"%s\"",
            c->node, (unsigned long long)cs->tree_size, keten_err_str(e));
        e = outq_error(
            b->out, c, request_id, KETEN__REASON__REASON_BAD_SIGNATURE, NULL, detail, 0);
        goto out;
    }
    size_t with_len = strlen(with);
    size_t before = 0, after = 0;
    bool was = false, is = false;
    if ((e = keten_checkpoint_witnesses(copy, len, broker_dir(b), &before, &was)) != KETEN_OK
        || (e = keten_checkpoint_witnesses(with, with_len, broker_dir(b), &after, &is)) != KETEN_OK
        || (e = store_checkpoint_put(b->st, b->txn, cs->tree_size, with, with_len)) != KETEN_OK) {
        goto out;
    }
    KETEN_LOG(KETEN_LOG_DEBUG, "cosignature attached", "node=%s size=%llu witnesses=%zu", c->node,
        (unsigned long long)cs->tree_size, after);
    if (is && !was) {
        KETEN_LOG(KETEN_LOG_INFO, "checkpoint witnessed", "size=%llu witnesses=%zu",
            (unsigned long long)cs->tree_size, after);
        /* Sent again to every connection (checkpointer_commit()). */
        if (b->cp->rewit_note == NULL || cs->tree_size > b->cp->rewit_size) {
            forget_resend(b->cp);
            b->cp->rewit_note = with;
            b->cp->rewit_len = with_len;
            b->cp->rewit_size = cs->tree_size;
            with = NULL;
        }
    }
out:
    free(with);
    free(copy);
    return e;
}

static keten_err proof_refused(broker *b, const conn *c, uint64_t request_id, const char *detail)
{
    return outq_error(
        b->out, c, request_id, KETEN__REASON__REASON_MALFORMED, NULL, detail, 0);
}

keten_err checkpointer_proof(
    broker *b, const conn *c, uint64_t request_id, const Keten__ProofRequest *pr)
{
    uint64_t size = 0;
    keten_err e = keten_merkle_log_size(b->st->log, b->txn, &size);
    if (e != KETEN_OK) {
        return e;
    }
    if (pr->tree_size == 0 || pr->tree_size > size || pr->old_size > pr->tree_size) {
        return proof_refused(b, c, request_id, "proof request: sizes out of range");
    }
    if (pr->n_leaf_indexes > CHECKPOINTER_PROOF_LEAVES) {
        return proof_refused(b, c, request_id, "proof request: too many leaves at once");
    }
    for (size_t i = 0; i < pr->n_leaf_indexes; i++) {
        if (pr->leaf_indexes[i] >= pr->tree_size) {
            return proof_refused(b, c, request_id, "proof request: leaf beyond the tree size");
        }
    }
    /* An inclusion proof carries the record: only the node's own (and the
     * directory's) are served, never other partners' traffic. */
    for (size_t i = 0; i < pr->n_leaf_indexes; i++) {
        const uint8_t *leaf = NULL;
        size_t leaf_len = 0;
        uint64_t idx = pr->leaf_indexes[i];
        if ((e = keten_merkle_log_leaf(b->st->log, b->txn, idx, &leaf, &leaf_len)) != KETEN_OK) {
            return e;
        }
        if (!audit_record_shown_to(leaf, leaf_len, c->node)) {
            char detail[192];
            snprintf(detail, sizeof detail,
                "proof request: leaf %llu is not a record of %s's own traffic; a node is sent "
                "the proofs of its own records only",
                (unsigned long long)idx, c->node);
            KETEN_LOG(KETEN_LOG_WARNING,
                "proof request for a record of other partners' traffic refused",
                "node=%s leaf=%llu", c->node, (unsigned long long)idx);
            return outq_error(
                b->out, c, request_id, KETEN__REASON__REASON_SENDER_MISMATCH, NULL, detail, 0);
        }
    }
    size_t n = pr->n_leaf_indexes;
    size_t slots = (n + 1) * KETEN_MERKLE_MAX_PROOF;
    keten_hash *hashes = calloc(slots, sizeof(keten_hash));
    keten_hash *leaf_hashes = calloc(n + 1, sizeof(keten_hash));
    ProtobufCBinaryData *bins = calloc(slots, sizeof *bins);
    Keten__InclusionProof *incl = calloc(n + 1, sizeof *incl);
    Keten__InclusionProof **inclp = calloc(n + 1, sizeof *inclp);
    if (hashes == NULL || leaf_hashes == NULL || bins == NULL || incl == NULL || inclp == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "a proof of %zu leaves", n);
        goto out;
    }
    Keten__ProofResponse resp = KETEN__PROOF_RESPONSE__INIT;
    resp.old_size = pr->old_size;
    resp.tree_size = pr->tree_size;
    size_t clen = 0;
    if (pr->old_size > 0 && pr->old_size < pr->tree_size) {
        e = keten_merkle_log_consistency_proof_memo(
            b->st->log, b->txn, b->cp->memo, pr->old_size, pr->tree_size, hashes, &clen);
        if (e != KETEN_OK) {
            goto out;
        }
    }
    for (size_t j = 0; j < clen; j++) {
        bins[j].data = hashes[j];
        bins[j].len = KETEN_HASH_BYTES;
    }
    resp.n_consistency = clen;
    resp.consistency = bins;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        keten__inclusion_proof__init(&incl[i]);
        keten_hash *path = hashes + (i + 1) * KETEN_MERKLE_MAX_PROOF;
        ProtobufCBinaryData *pb = bins + (i + 1) * KETEN_MERKLE_MAX_PROOF;
        size_t plen = 0;
        const uint8_t *leaf = NULL;
        size_t leaf_len = 0;
        uint64_t idx = pr->leaf_indexes[i];
        if ((e = keten_merkle_log_inclusion_proof(
                 b->st->log, b->txn, idx, pr->tree_size, path, &plen))
                != KETEN_OK
            || (e = keten_merkle_log_leaf_hash(b->st->log, b->txn, idx, leaf_hashes[i])) != KETEN_OK
            || (e = keten_merkle_log_leaf(b->st->log, b->txn, idx, &leaf, &leaf_len)) != KETEN_OK) {
            goto out;
        }
        for (size_t j = 0; j < plen; j++) {
            pb[j].data = path[j];
            pb[j].len = KETEN_HASH_BYTES;
        }
        incl[i].leaf_index = idx;
        incl[i].leaf_hash.data = leaf_hashes[i];
        incl[i].leaf_hash.len = KETEN_HASH_BYTES;
        incl[i].n_path = plen;
        incl[i].path = pb;
        incl[i].leaf.data = (uint8_t *)leaf; /* in the map; packed before any write */
        incl[i].leaf.len = leaf_len;
        inclp[i] = &incl[i];
        total += leaf_len + plen * KETEN_HASH_BYTES + 64;
    }
    if (total > KETEN_FRAME_MAX - 4096) {
        e = proof_refused(b, c, request_id, "proof response too large: ask for fewer leaves");
        goto out;
    }
    resp.n_inclusions = n;
    resp.inclusions = inclp;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_PROOF_RESPONSE;
    f.proof_response = &resp;
    bool sent = false;
    e = outq_answer(b->out, b->conns, c, request_id, &f, keten_mono_ms(), &sent);
    if (e == KETEN_OK && !sent) {
        metrics_answer_refused(b->m);
    }
out:
    free(inclp);
    free(incl);
    free(bins);
    free(leaf_hashes);
    free(hashes);
    return e;
}
