#include "checkpointer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "dirstate.h"
#include "log.h"
#include "merkle.h"
#include "metrics.h"
#include "outq.h"
#include "store.h"
#include "util.h"

keten_err checkpointer_open(broker *b)
{
    checkpointer *cp = calloc(1, sizeof *cp);
    if (cp == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "checkpointer");
    }
    b->cp = cp;
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
        e = keten_mlog_size(b->st->log, txn, &tree);
    }
    store_abort(&txn);
    if (e != KETEN_OK) {
        return e;
    }
    if (found && size > tree) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the latest stored checkpoint covers %llu records but the log has %llu; the store "
            "was altered",
            (unsigned long long)size, (unsigned long long)tree);
    }
    cp->last_size = found ? size : 0;
    cp->last_mono_ms = keten_mono_ms();
    metrics_tree_size(b->m, tree);
    metrics_checkpoint(b->m, cp->last_size);
    return KETEN_OK;
}

void checkpointer_destroy(checkpointer **self_p)
{
    if (self_p != NULL && *self_p != NULL) {
        free(*self_p);
        *self_p = NULL;
    }
}

static keten_err stage_note(broker *b, const conn *c, const char *note, size_t len)
{
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "checkpoint of %zu bytes", len);
    }
    memcpy(copy, note, len);
    copy[len] = '\0';
    cf.note = copy;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    f.checkpoint = &cf;
    keten_err e = outq_frame(b->out, c, 0, &f);
    free(copy);
    return e;
}

static keten_err stage_all(broker *b, const char *note, size_t len)
{
    for (size_t i = 0; i < b->conns->n; i++) {
        const conn *c = b->conns->v[i];
        if (c->revoked) {
            continue;
        }
        keten_err e = stage_note(b, c, note, len);
        if (e != KETEN_OK) {
            return e;
        }
    }
    return KETEN_OK;
}

keten_err checkpointer_tick(broker *b)
{
    checkpointer *cp = b->cp;
    uint64_t size = 0;
    keten_err e = keten_mlog_size(b->st->log, b->txn, &size);
    if (e != KETEN_OK || size <= cp->last_size) {
        return e;
    }
    uint64_t mono = keten_mono_ms();
    if (size - cp->last_size < b->cfg->checkpoint_records
        && mono - cp->last_mono_ms < b->cfg->checkpoint_ms) {
        return KETEN_OK;
    }
    const keten_directory *dir = broker_dir(b);
    keten_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    snprintf(ck.origin, sizeof ck.origin, "keten/%s", keten_directory_network(dir));
    ck.size = size;
    if ((e = keten_mlog_root(b->st->log, b->txn, size, ck.root)) != KETEN_OK) {
        return e;
    }
    ck.dir_version = keten_directory_version(dir);
    memcpy(ck.dir_hash, keten_directory_hash(dir), KETEN_HASH_BYTES);
    char *note = NULL;
    if ((e = keten_checkpoint_sign(&ck, b->me->id, b->me->log_sk, &note)) != KETEN_OK) {
        return e;
    }
    size_t len = strlen(note);
    keten_checkpoint check;
    e = keten_checkpoint_open(note, len, b->me->id, b->me->log_pk, &check);
    if (e == KETEN_OK
        && (check.size != size || memcmp(check.root, ck.root, KETEN_HASH_BYTES) != 0)) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT, "a signed checkpoint does not read back");
    }
    if (e == KETEN_OK) {
        e = store_checkpoint_put(b->st, b->txn, size, note, len);
    }
    if (e == KETEN_OK) {
        e = stage_all(b, note, len);
    }
    free(note);
    if (e != KETEN_OK) {
        return e;
    }
    /* The batch may still fail; last_size then only delays the next one. */
    cp->last_size = size;
    cp->last_mono_ms = mono;
    metrics_checkpoint(b->m, size);
    KETEN_LOG(KETEN_LOG_DEBUG, "checkpoint signed", "size=%llu", (unsigned long long)size);
    return KETEN_OK;
}

keten_err checkpointer_send_latest(broker *b, const conn *c)
{
    uint64_t size = 0;
    const char *note = NULL;
    size_t len = 0;
    bool found = false;
    keten_err e = store_checkpoint_last(b->st, b->txn, &size, &note, &len, &found);
    if (e != KETEN_OK || !found) {
        return e;
    }
    return stage_note(b, c, note, len);
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
            "a node cosigns only as itself", 0, NULL, 0);
    }
    const char *note = NULL;
    size_t len = 0;
    e = store_checkpoint_get(b->st, b->txn, cs->tree_size, &note, &len);
    if (e == KETEN_ERR_NOT_FOUND) {
        return outq_error(b->out, c, request_id, KETEN__REASON__REASON_MALFORMED, NULL,
            "no checkpoint of that tree size", 0, NULL, 0);
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
    if (e == KETEN_ERR_EXISTS) {
        e = KETEN_OK; /* cosigned before */
        goto out;
    }
    uint64_t t = 0;
    if (e == KETEN_OK) {
        e = keten_cosignature_verify(with, strlen(with), c->node, cert->sign_pk.data, &t);
    }
    if (e != KETEN_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "cosignature refused: %s", keten_strerror(e));
        KETEN_LOG(KETEN_LOG_WARNING, "cosignature refused", "node=%s size=%llu error=\"%s\"",
            c->node, (unsigned long long)cs->tree_size, keten_strerror(e));
        e = outq_error(
            b->out, c, request_id, KETEN__REASON__REASON_BAD_SIGNATURE, NULL, detail, 0, NULL, 0);
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
        e = stage_all(b, with, with_len);
    }
out:
    free(with);
    free(copy);
    return e;
}

static keten_err proof_refused(broker *b, const conn *c, uint64_t request_id, const char *detail)
{
    return outq_error(
        b->out, c, request_id, KETEN__REASON__REASON_MALFORMED, NULL, detail, 0, NULL, 0);
}

keten_err checkpointer_proof(
    broker *b, const conn *c, uint64_t request_id, const Keten__ProofRequest *pr)
{
    uint64_t size = 0;
    keten_err e = keten_mlog_size(b->st->log, b->txn, &size);
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
        e = keten_mlog_consistency_proof(
            b->st->log, b->txn, pr->old_size, pr->tree_size, hashes, &clen);
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
        if ((e = keten_mlog_inclusion_proof(b->st->log, b->txn, idx, pr->tree_size, path, &plen))
                != KETEN_OK
            || (e = keten_mlog_leaf_hash(b->st->log, b->txn, idx, leaf_hashes[i])) != KETEN_OK
            || (e = keten_mlog_leaf(b->st->log, b->txn, idx, &leaf, &leaf_len)) != KETEN_OK) {
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
    e = outq_frame(b->out, c, request_id, &f);
out:
    free(inclp);
    free(incl);
    free(bins);
    free(leaf_hashes);
    free(hashes);
    return e;
}
