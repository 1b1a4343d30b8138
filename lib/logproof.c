#include "logproof.h"

#include <sodium.h>
#include <string.h>

#include "pb.h"
#include "sha256.h"

keten_err keten_logproof_verify(
    const Keten__LeafProof *p, const keten_hash root, Keten__AuditRecord **rec_out)
{
    *rec_out = NULL;
    if (p == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "leaf proof missing");
    }
    if (p->tree_size == 0 || p->leaf_index >= p->tree_size) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "leaf proof: leaf %llu is not in a tree of %llu leaves",
            (unsigned long long)p->leaf_index, (unsigned long long)p->tree_size);
    }
    if (p->leaf.len == 0 || p->leaf.len > KETEN_AUDIT_RECORD_MAX) {
        return keten_err_set(KETEN_ERR_MALFORMED, "leaf proof: leaf of %zu bytes (1..%u allowed)",
            p->leaf.len, (unsigned)KETEN_AUDIT_RECORD_MAX);
    }
    if (p->n_path > KETEN_MERKLE_MAX_PROOF) {
        return keten_err_set(KETEN_ERR_MALFORMED, "leaf proof: %zu path hashes (at most %d)",
            p->n_path, KETEN_MERKLE_MAX_PROOF);
    }
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    for (size_t i = 0; i < p->n_path; i++) {
        if (p->path[i].len != KETEN_HASH_BYTES) {
            return keten_err_set(KETEN_ERR_MALFORMED,
                "leaf proof: path hash %zu is %zu bytes; must be %d", i, p->path[i].len,
                KETEN_HASH_BYTES);
        }
        memcpy(path[i], p->path[i].data, KETEN_HASH_BYTES);
    }
    keten_hash leaf_hash;
    keten_merkle_leaf_hash(p->leaf.data, p->leaf.len, leaf_hash);
    keten_err e = keten_merkle_verify_inclusion(
        leaf_hash, p->leaf_index, p->tree_size, (const keten_hash *)path, p->n_path, root);
    if (e != KETEN_OK) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "leaf proof: the path of leaf %llu does not lead to the signed root of the %llu-leaf "
            "tree",
            (unsigned long long)p->leaf_index, (unsigned long long)p->tree_size);
    }
    Keten__AuditRecord *rec = NULL;
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__audit_record, p->leaf.data, p->leaf.len, KETEN_AUDIT_RECORD_MAX, "audit record",
        &rec);
    if (e != KETEN_OK) {
        return e;
    }
    if (rec->seq != p->leaf_index) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "leaf proof: the record says it is leaf %llu, the proof leaf %llu",
            (unsigned long long)rec->seq, (unsigned long long)p->leaf_index);
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
        return e;
    }
    *rec_out = rec;
    return KETEN_OK;
}

static bool bytes_eq(const ProtobufCBinaryData *a, const uint8_t *b, size_t len)
{
    return a->len == len && (len == 0 || sodium_memcmp(a->data, b, len) == 0);
}

static keten_err differs(const char *what)
{
    return keten_err_set(KETEN_ERR_INCONSISTENT,
        "the audit record is not this message's submitted record: %s differs", what);
}

keten_err keten_logproof_record_is_envelope(
    const Keten__AuditRecord *r, const uint8_t *env, size_t env_len, const Keten__Envelope *e)
{
    if (r == NULL || env == NULL || e == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_logproof_record_is_envelope: missing argument");
    }
    if (r->event != KETEN__EVENT__EVENT_SUBMITTED) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the audit record is not a submitted record (event %d)", (int)r->event);
    }
    if (!bytes_eq(&r->header, e->header.data, e->header.len)) {
        return differs("the header");
    }
    Keten__Header *h = NULL;
    keten_err err = KETEN_PB_UNPACK_CANONICAL(
        keten__header, e->header.data, e->header.len, KETEN_ENVELOPE_MAX, "header", &h);
    if (err != KETEN_OK) {
        return err;
    }
    if (!bytes_eq(&r->msg_id, h->msg_id.data, h->msg_id.len) || h->msg_id.len != KETEN_MSG_ID_BYTES) {
        err = differs("msg_id");
        goto out;
    }
    if (strcmp(r->sender, h->sender) != 0) {
        err = differs("the sender");
        goto out;
    }
    if (r->n_recipients != h->n_recipients) {
        err = differs("the recipient list");
        goto out;
    }
    for (size_t i = 0; i < h->n_recipients; i++) {
        if (strcmp(r->recipients[i], h->recipients[i]) != 0) {
            err = differs("the recipient list");
            goto out;
        }
    }
    if (r->kind != h->kind || strcmp(r->category, h->category) != 0
        || strcmp(r->purpose, h->purpose) != 0) {
        err = differs("kind, category or purpose");
        goto out;
    }
    uint8_t hash[KETEN_HASH_BYTES];
    keten_sha256(hash, e->ciphertext.data, e->ciphertext.len);
    if (!bytes_eq(&r->ciphertext_hash, hash, sizeof hash)) {
        err = differs("the ciphertext hash");
        goto out;
    }
    if (!bytes_eq(&r->signature, e->signature.data, e->signature.len)
        || e->signature.len != KETEN_SIG_BYTES) {
        err = differs("the signature");
        goto out;
    }
    keten_sha256(hash, env, env_len);
    if (!bytes_eq(&r->envelope_hash, hash, sizeof hash)) {
        err = differs("the envelope hash");
        goto out;
    }
    err = KETEN_OK;
out:
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    return err;
}

void keten_logproof_set(keten_logproof_buf *out, uint64_t tree_size, uint64_t index,
    const uint8_t *leaf, size_t leaf_len, const keten_hash *path, size_t path_len)
{
    keten__leaf_proof__init(&out->msg);
    if (path_len > KETEN_MERKLE_MAX_PROOF) {
        path_len = KETEN_MERKLE_MAX_PROOF;
    }
    if ((const void *)path != (const void *)out->path) {
        memcpy(out->path, path, path_len * sizeof(keten_hash));
    }
    for (size_t i = 0; i < path_len; i++) {
        out->path_v[i].data = out->path[i];
        out->path_v[i].len = KETEN_HASH_BYTES;
    }
    out->msg.tree_size = tree_size;
    out->msg.leaf_index = index;
    out->msg.leaf.data = (uint8_t *)leaf;
    out->msg.leaf.len = leaf_len;
    out->msg.n_path = path_len;
    out->msg.path = path_len > 0 ? out->path_v : NULL;
}

keten_err keten_logproof_build_memo(const keten_merkle_log *log, MDB_txn *txn, keten_merkle_log_memo *memo,
    uint64_t index, uint64_t size, keten_logproof_buf *out)
{
    const uint8_t *leaf = NULL;
    size_t leaf_len = 0;
    size_t path_len = 0;
    keten_err e = keten_merkle_log_leaf(log, txn, index, &leaf, &leaf_len);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_merkle_log_inclusion_proof_memo(log, txn, memo, index, size, out->path, &path_len);
    if (e != KETEN_OK) {
        return e;
    }
    keten_logproof_set(out, size, index, leaf, leaf_len, (const keten_hash *)out->path, path_len);
    return KETEN_OK;
}

keten_err keten_logproof_build(const keten_merkle_log *log, MDB_txn *txn, uint64_t index, uint64_t size,
    keten_logproof_buf *out)
{
    return keten_logproof_build_memo(log, txn, NULL, index, size, out);
}
