#include "receipt.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "pb.h"
#include "sigcache.h"

#define LABEL_LEN (sizeof KETEN_LABEL_RECEIPTS - 1)

bool keten_receipt_reason_valid(Keten__Reason r)
{
    switch (r) {
    case KETEN__REASON__REASON_MALFORMED:
    case KETEN__REASON__REASON_BAD_SIGNATURE:
    case KETEN__REASON__REASON_WRONG_NETWORK:
    case KETEN__REASON__REASON_CLOCK_SKEW:
    case KETEN__REASON__REASON_EXPIRED:
    case KETEN__REASON__REASON_DUPLICATE:
    case KETEN__REASON__REASON_UNKNOWN_RECIPIENT:
    case KETEN__REASON__REASON_UNREGISTERED:
    case KETEN__REASON__REASON_POLICY:
    case KETEN__REASON__REASON_DIRECTORY_STALE:
    case KETEN__REASON__REASON_UNKNOWN_SENDER:
    case KETEN__REASON__REASON_REVOKED:
    case KETEN__REASON__REASON_UNDECRYPTABLE:
    case KETEN__REASON__REASON_INVALID_SIGNAL:
        return true;
    default:
        return false;
    }
}

/* The rules every leaf obeys. */
static keten_err leaf_valid(const Keten__ReceiptLeaf *l)
{
    if (l->msg_id.len != KETEN_MSG_ID_BYTES || l->envelope_hash.len != KETEN_HASH_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "receipt leaf: msg_id must be %d bytes and envelope_hash %d (got %zu and %zu)",
            KETEN_MSG_ID_BYTES, KETEN_HASH_BYTES, l->msg_id.len, l->envelope_hash.len);
    }
    if (l->outcome == KETEN__OUTCOME__OUTCOME_STORED) {
        if (l->reason != KETEN__REASON__REASON_NONE) {
            return keten_err_set(
                KETEN_ERR_MALFORMED, "receipt leaf: outcome stored with a reason (%d)", l->reason);
        }
        return KETEN_OK;
    }
    if (l->outcome == KETEN__OUTCOME__OUTCOME_REFUSED) {
        if (!keten_receipt_reason_valid(l->reason)) {
            return keten_err_set(KETEN_ERR_MALFORMED,
                "receipt leaf: outcome refused needs a recipient's reason (got %d)", l->reason);
        }
        return KETEN_OK;
    }
    return keten_err_set(
        KETEN_ERR_MALFORMED, "receipt leaf: outcome %d is neither stored nor refused", l->outcome);
}

static keten_err head_valid(
    const Keten__ReceiptBatchHead *h, const Keten__NodeCert *cert, const char *network)
{
    if (network == NULL || strcmp(h->network, network) != 0) {
        return keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "receipt batch for network \"%.64s\", this is \"%.64s\"", h->network,
            network != NULL ? network : "");
    }
    if (cert == NULL || strcmp(h->recipient, cert->id) != 0 || h->cert_serial != cert->serial) {
        return keten_err_set(KETEN_ERR_MISMATCH,
            "receipt batch by \"%.32s\" (certificate serial %llu) is checked against another "
            "certificate",
            h->recipient, (unsigned long long)h->cert_serial);
    }
    if (h->count == 0 || h->count > KETEN_RECEIPT_BATCH_MAX) {
        return keten_err_set(KETEN_ERR_MALFORMED, "receipt batch of %llu leaves (1..%d allowed)",
            (unsigned long long)h->count, KETEN_RECEIPT_BATCH_MAX);
    }
    if (h->root.len != KETEN_HASH_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED, "receipt batch root of %zu bytes; must be %d",
            h->root.len, KETEN_HASH_BYTES);
    }
    return KETEN_OK;
}

static keten_err signed_bytes(const uint8_t *head, size_t head_len, uint8_t **out, size_t *out_len)
{
    *out_len = LABEL_LEN + head_len;
    *out = malloc(*out_len);
    if (*out == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "receipt batch signing buffer");
    }
    memcpy(*out, KETEN_LABEL_RECEIPTS, LABEL_LEN);
    memcpy(*out + LABEL_LEN, head, head_len);
    return KETEN_OK;
}

/* Levels of the RFC 9162 tree over n leaf hashes, bottom first: pairs are
 * hashed left to right and a last node without a partner is carried up
 * unchanged, which gives exactly the RFC's tree (split at the largest power
 * of two). levels[0] = leaves; returns the number of levels. */
typedef struct tree_levels {
    keten_hash *v[KETEN_RECEIPT_PATH_MAX + 1];
    size_t len[KETEN_RECEIPT_PATH_MAX + 1];
    size_t n_levels;
} tree_levels;

static void levels_free(tree_levels *t)
{
    for (size_t i = 1; i < t->n_levels; i++) {
        free(t->v[i]);
    }
    memset(t, 0, sizeof *t);
}

static keten_err levels_build(const keten_hash *leaves, size_t n, tree_levels *t)
{
    memset(t, 0, sizeof *t);
    if (n == 0 || n > KETEN_RECEIPT_BATCH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "receipt tree of %zu leaves", n);
    }
    t->v[0] = (keten_hash *)(void *)(uintptr_t)leaves;
    t->len[0] = n;
    t->n_levels = 1;
    while (t->len[t->n_levels - 1] > 1) {
        size_t below = t->len[t->n_levels - 1];
        size_t above = (below + 1) / 2;
        keten_hash *v = malloc(above * sizeof *v);
        if (v == NULL) {
            levels_free(t);
            return keten_err_set(KETEN_ERR_NOMEM, "receipt tree");
        }
        const keten_hash *b = (const keten_hash *)t->v[t->n_levels - 1];
        for (size_t i = 0; i < above; i++) {
            if (2 * i + 1 < below) {
                keten_merkle_node_hash(b[2 * i], b[2 * i + 1], v[i]);
            } else {
                memcpy(v[i], b[2 * i], KETEN_HASH_BYTES);
            }
        }
        t->v[t->n_levels] = v;
        t->len[t->n_levels] = above;
        t->n_levels++;
    }
    return KETEN_OK;
}

static size_t levels_path(const tree_levels *t, size_t index, keten_hash *path)
{
    size_t n = 0;
    for (size_t l = 0; l + 1 < t->n_levels; l++) {
        size_t sib = index ^ 1u;
        if (sib < t->len[l]) {
            memcpy(path[n++], t->v[l][sib], KETEN_HASH_BYTES);
        }
        index >>= 1;
    }
    return n;
}

static const uint8_t *levels_root(const tree_levels *t)
{
    return t->v[t->n_levels - 1][0];
}

/* The levels of n leaves stored one after another in all (leaves first, as
 * keten_receipt_batch_verify returns them), as views: nothing to free. */
static void levels_view(const keten_hash *all, size_t n, tree_levels *t)
{
    memset(t, 0, sizeof *t);
    size_t off = 0, len = n;
    for (;;) {
        t->v[t->n_levels] = (keten_hash *)(void *)(uintptr_t)(all + off);
        t->len[t->n_levels] = len;
        t->n_levels++;
        if (len <= 1) {
            break;
        }
        off += len;
        len = (len + 1) / 2;
    }
}

/* Every level of t, leaves first, in one malloc()ed array. */
static keten_hash *levels_flatten(const tree_levels *t)
{
    size_t total = 0;
    for (size_t l = 0; l < t->n_levels; l++) {
        total += t->len[l];
    }
    keten_hash *all = malloc(total * sizeof *all);
    if (all == NULL) {
        return NULL;
    }
    size_t off = 0;
    for (size_t l = 0; l < t->n_levels; l++) {
        memcpy(all + off, t->v[l], t->len[l] * sizeof *all);
        off += t->len[l];
    }
    return all;
}

void keten_receipt_batch_destroy(keten_receipt_batch **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_receipt_batch *b = *self_p;
    free(b->leaves);
    free(b->leaf_ptrs);
    free(b->items);
    free(b->head);
    free(b);
    *self_p = NULL;
}

keten_err keten_receipt_batch_new(const keten_identity *me, const char *network,
    uint64_t cert_serial, uint64_t stored_at, const keten_receipt_item *items, size_t n,
    keten_receipt_batch **out)
{
    *out = NULL;
    if (me == NULL || network == NULL || network[0] == '\0' || items == NULL || n == 0
        || n > KETEN_RECEIPT_BATCH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID,
            "receipt batch: network, identity and 1..%d items needed (got %zu)",
            KETEN_RECEIPT_BATCH_MAX, n);
    }
    keten_err e = KETEN_OK;
    keten_hash *hashes = NULL;
    uint8_t *signed_buf = NULL;
    size_t signed_len = 0;
    tree_levels t = { 0 };
    keten_receipt_batch *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "receipt batch");
    }
    b->n = n;
    b->items = malloc(n * sizeof *b->items);
    b->leaves = calloc(n, sizeof *b->leaves);
    b->leaf_ptrs = calloc(n, sizeof *b->leaf_ptrs);
    hashes = malloc(n * sizeof *hashes);
    if (b->items == NULL || b->leaves == NULL || b->leaf_ptrs == NULL || hashes == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "receipt batch of %zu", n);
        goto out;
    }
    memcpy(b->items, items, n * sizeof *items);
    for (size_t i = 0; i < n; i++) {
        Keten__ReceiptLeaf *l = &b->leaves[i];
        keten__receipt_leaf__init(l);
        l->msg_id.data = b->items[i].msg_id;
        l->msg_id.len = KETEN_MSG_ID_BYTES;
        l->envelope_hash.data = b->items[i].envelope_hash;
        l->envelope_hash.len = KETEN_HASH_BYTES;
        l->outcome = b->items[i].outcome;
        l->reason = b->items[i].reason;
        if ((e = leaf_valid(l)) != KETEN_OK) {
            goto out;
        }
        uint8_t buf[KETEN_RECEIPT_LEAF_MAX];
        size_t len = keten__receipt_leaf__get_packed_size(l);
        if (len > sizeof buf) {
            e = keten_err_set(KETEN_ERR_TOO_LARGE, "receipt leaf of %zu bytes", len);
            goto out;
        }
        keten__receipt_leaf__pack(l, buf);
        keten_merkle_leaf_hash(buf, len, hashes[i]);
        b->leaf_ptrs[i] = l;
    }
    if ((e = levels_build((const keten_hash *)hashes, n, &t)) != KETEN_OK) {
        goto out;
    }
    Keten__ReceiptBatchHead head = KETEN__RECEIPT_BATCH_HEAD__INIT;
    uint8_t root[KETEN_HASH_BYTES];
    memcpy(root, levels_root(&t), sizeof root);
    head.network = (char *)network;
    head.recipient = (char *)me->id;
    head.cert_serial = cert_serial;
    head.stored_at = stored_at;
    head.count = n;
    head.root.data = root;
    head.root.len = sizeof root;
    if ((e = keten_pb_pack(&head.base, &b->head, &b->head_len)) != KETEN_OK) {
        goto out;
    }
    if ((e = signed_bytes(b->head, b->head_len, &signed_buf, &signed_len)) != KETEN_OK) {
        goto out;
    }
    if (crypto_sign_detached(b->signature, NULL, signed_buf, signed_len, me->sign_sk) != 0
        || crypto_sign_verify_detached(b->signature, signed_buf, signed_len, me->sign_pk) != 0) {
        e = keten_err_set(
            KETEN_ERR_CRYPTO, "signing a receipt batch: the signature does not verify");
        goto out;
    }
    keten__receipt_batch__init(&b->msg);
    b->msg.head.data = b->head;
    b->msg.head.len = b->head_len;
    b->msg.signature.data = b->signature;
    b->msg.signature.len = KETEN_SIG_BYTES;
    b->msg.n_leaves = n;
    b->msg.leaves = b->leaf_ptrs;
    *out = b;
    b = NULL;
out:
    levels_free(&t);
    free(hashes);
    free(signed_buf);
    keten_receipt_batch_destroy(&b);
    return e;
}

keten_err keten_receipt_head_verify(const Keten__NodeCert *cert, const char *network,
    const ProtobufCBinaryData *head, const ProtobufCBinaryData *signature,
    Keten__ReceiptBatchHead **head_out)
{
    *head_out = NULL;
    if (cert == NULL || head == NULL || signature == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_receipt_head_verify: missing argument");
    }
    if (cert->sign_pk.len != KETEN_SIGN_PK_BYTES) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "certificate of %.32s has no signing key", cert->id);
    }
    if (signature->len != KETEN_SIG_BYTES) {
        return keten_err_set(KETEN_ERR_BAD_SIGNATURE,
            "receipt batch signature of %zu bytes; must be %d", signature->len, KETEN_SIG_BYTES);
    }
    Keten__ReceiptBatchHead *h = NULL;
    keten_err e = KETEN_PB_UNPACK_CANONICAL(keten__receipt_batch_head, head->data, head->len,
        KETEN_RECEIPT_HEAD_MAX, "receipt batch head", &h);
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = head_valid(h, cert, network)) != KETEN_OK) {
        goto out;
    }
    uint8_t *signed_buf = NULL;
    size_t signed_len = 0;
    if ((e = signed_bytes(head->data, head->len, &signed_buf, &signed_len)) != KETEN_OK) {
        goto out;
    }
    bool ok = keten_sigcache_verify(signature->data, signed_buf, signed_len, cert->sign_pk.data);
    free(signed_buf);
    if (!ok) {
        e = keten_err_set(KETEN_ERR_BAD_SIGNATURE,
            "receipt batch signature of %.32s does not verify: forged, tampered or signed by "
            "another key",
            cert->id);
        goto out;
    }
    *head_out = h;
    h = NULL;
out:
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    return e;
}

keten_err keten_receipt_batch_verify(const Keten__NodeCert *cert, const char *network,
    const Keten__ReceiptBatch *rb, Keten__ReceiptBatchHead **head_out, keten_hash **leaf_hashes_out)
{
    *head_out = NULL;
    *leaf_hashes_out = NULL;
    if (rb == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "receipt batch missing");
    }
    Keten__ReceiptBatchHead *h = NULL;
    keten_hash *hashes = NULL;
    tree_levels t = { 0 };
    /* The cheap checks first, the signature last. */
    keten_err e = KETEN_PB_UNPACK_CANONICAL(keten__receipt_batch_head, rb->head.data, rb->head.len,
        KETEN_RECEIPT_HEAD_MAX, "receipt batch head", &h);
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = head_valid(h, cert, network)) != KETEN_OK) {
        goto out;
    }
    if (rb->n_leaves != h->count) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "receipt batch head counts %llu leaves; %zu came",
            (unsigned long long)h->count, rb->n_leaves);
        goto out;
    }
    hashes = malloc(rb->n_leaves * sizeof *hashes);
    if (hashes == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "receipt batch of %zu leaves", rb->n_leaves);
        goto out;
    }
    for (size_t i = 0; i < rb->n_leaves; i++) {
        const Keten__ReceiptLeaf *l = rb->leaves[i];
        if ((e = leaf_valid(l)) != KETEN_OK) {
            goto out;
        }
        uint8_t buf[KETEN_RECEIPT_LEAF_MAX];
        size_t len = keten__receipt_leaf__get_packed_size(l);
        if (len > sizeof buf) {
            e = keten_err_set(KETEN_ERR_TOO_LARGE, "receipt leaf of %zu bytes", len);
            goto out;
        }
        keten__receipt_leaf__pack(l, buf);
        keten_merkle_leaf_hash(buf, len, hashes[i]);
    }
    if ((e = levels_build((const keten_hash *)hashes, rb->n_leaves, &t)) != KETEN_OK) {
        goto out;
    }
    if (sodium_memcmp(levels_root(&t), h->root.data, KETEN_HASH_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "receipt batch of %.32s: the leaves do not give the signed root", h->recipient);
        goto out;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    if ((e = keten_receipt_head_verify(cert, network, &rb->head, &rb->signature, &h)) != KETEN_OK) {
        goto out;
    }
    keten_hash *all = levels_flatten(&t);
    if (all == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "receipt batch of %zu leaves", rb->n_leaves);
        goto out;
    }
    *head_out = h;
    h = NULL;
    *leaf_hashes_out = all;
out:
    levels_free(&t);
    free(hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    return e;
}

void keten_receipt_proof_buf_clear(keten_receipt_proof_buf *buf)
{
    if (buf == NULL) {
        return;
    }
    free(buf->leaf);
    memset(buf, 0, sizeof *buf);
}

keten_err keten_receipt_proof_build(const Keten__ReceiptBatch *rb, const keten_hash *leaf_hashes,
    size_t i, keten_receipt_proof_buf *out)
{
    memset(out, 0, sizeof *out);
    if (rb == NULL || leaf_hashes == NULL || i >= rb->n_leaves) {
        return keten_err_set(
            KETEN_ERR_INVALID, "receipt proof: leaf %zu of %zu", i, rb != NULL ? rb->n_leaves : 0);
    }
    tree_levels t;
    levels_view(leaf_hashes, rb->n_leaves, &t);
    size_t n_path = levels_path(&t, i, out->path);
    keten_err e;
    if ((e = keten_pb_pack(&rb->leaves[i]->base, &out->leaf, &(size_t) { 0 })) != KETEN_OK) {
        return e;
    }
    keten__receipt_proof__init(&out->msg);
    out->msg.head = rb->head;
    out->msg.signature = rb->signature;
    out->msg.leaf.data = out->leaf;
    out->msg.leaf.len = keten__receipt_leaf__get_packed_size(rb->leaves[i]);
    out->msg.index = i;
    for (size_t k = 0; k < n_path; k++) {
        out->path_v[k].data = out->path[k];
        out->path_v[k].len = KETEN_HASH_BYTES;
    }
    out->msg.n_path = n_path;
    out->msg.path = n_path > 0 ? out->path_v : NULL;
    return KETEN_OK;
}

keten_err keten_receipt_proof_check_leaf(const Keten__ReceiptBatchHead *head,
    const Keten__ReceiptProof *p, Keten__ReceiptLeaf **leaf_out)
{
    *leaf_out = NULL;
    if (head == NULL || p == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "receipt proof missing");
    }
    if (head->root.len != KETEN_HASH_BYTES || head->count == 0
        || head->count > KETEN_RECEIPT_BATCH_MAX) {
        return keten_err_set(KETEN_ERR_MALFORMED, "receipt batch head is not valid");
    }
    if (p->index >= head->count) {
        return keten_err_set(KETEN_ERR_MALFORMED, "receipt proof: leaf %llu of a batch of %llu",
            (unsigned long long)p->index, (unsigned long long)head->count);
    }
    if (p->n_path > KETEN_RECEIPT_PATH_MAX) {
        return keten_err_set(KETEN_ERR_MALFORMED, "receipt proof: %zu path hashes (at most %d)",
            p->n_path, KETEN_RECEIPT_PATH_MAX);
    }
    keten_hash path[KETEN_RECEIPT_PATH_MAX];
    for (size_t i = 0; i < p->n_path; i++) {
        if (p->path[i].len != KETEN_HASH_BYTES) {
            return keten_err_set(KETEN_ERR_MALFORMED, "receipt proof: path hash %zu is %zu bytes",
                i, p->path[i].len);
        }
        memcpy(path[i], p->path[i].data, KETEN_HASH_BYTES);
    }
    Keten__ReceiptLeaf *l = NULL;
    keten_err e = KETEN_PB_UNPACK_CANONICAL(
        keten__receipt_leaf, p->leaf.data, p->leaf.len, KETEN_RECEIPT_LEAF_MAX, "receipt leaf", &l);
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = leaf_valid(l)) != KETEN_OK) {
        goto out;
    }
    keten_hash lh;
    keten_merkle_leaf_hash(p->leaf.data, p->leaf.len, lh);
    if (keten_merkle_verify_inclusion(
            lh, p->index, head->count, (const keten_hash *)path, p->n_path, head->root.data)
        != KETEN_OK) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "receipt proof: the path of leaf %llu does not lead to the signed batch root",
            (unsigned long long)p->index);
        goto out;
    }
    *leaf_out = l;
    l = NULL;
out:
    keten_pb_free((ProtobufCMessage **)(void *)&l);
    return e;
}

keten_err keten_receipt_proof_verify(const Keten__NodeCert *cert, const char *network,
    const Keten__ReceiptProof *p, Keten__ReceiptBatchHead **head_out, Keten__ReceiptLeaf **leaf_out)
{
    *head_out = NULL;
    *leaf_out = NULL;
    if (p == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "receipt proof missing");
    }
    Keten__ReceiptBatchHead *h = NULL;
    keten_err e = keten_receipt_head_verify(cert, network, &p->head, &p->signature, &h);
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = keten_receipt_proof_check_leaf(h, p, leaf_out)) != KETEN_OK) {
        keten_pb_free((ProtobufCMessage **)(void *)&h);
        return e;
    }
    *head_out = h;
    return KETEN_OK;
}

bool keten_receipt_leaf_names(const Keten__ReceiptLeaf *leaf,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const uint8_t envelope_hash[static KETEN_HASH_BYTES])
{
    return leaf != NULL && leaf->msg_id.len == KETEN_MSG_ID_BYTES
        && leaf->envelope_hash.len == KETEN_HASH_BYTES
        && sodium_memcmp(leaf->msg_id.data, msg_id, KETEN_MSG_ID_BYTES) == 0
        && sodium_memcmp(leaf->envelope_hash.data, envelope_hash, KETEN_HASH_BYTES) == 0;
}
