/*
 * keten-auditedit - what a dishonest operator with the files could do to the
 * broker's audit log, for keten-audit's integration tests (never for
 * production). It edits a stopped broker's store (HOME/store) in place:
 *
 *   keten-auditedit flip --store DIR --leaf N [--byte K]
 *       change one byte of record N (byte K, default the middle); the stored
 *       tree is left as it was
 *   keten-auditedit delete --store DIR --leaf N
 *       remove record N, move the later ones down one place and rebuild the
 *       stored tree, so that the tree is consistent again
 *   keten-auditedit truncate --store DIR --keep N [--drop-checkpoints]
 *       remove records N.. and their tree hashes (and the checkpoints that
 *       cover them)
 *   keten-auditedit swap --store DIR --leaf N --with M
 *       exchange records N and M, rebuild the stored tree
 *   keten-auditedit corrupt-signature --store DIR --leaf N
 *       flip one bit of the sender's signature in submitted record N (the
 *       record is re-encoded), rebuild the stored tree
 *   keten-auditedit receipt-path --store DIR --leaf N
 *       change one byte of the audit path (or, for a batch of one leaf, add
 *       a hash to the empty path) of the ReceiptProof in receipted or
 *       refused-by-recipient record N, rebuild the stored tree
 *   keten-auditedit receipt-signature --store DIR --leaf N
 *       flip one bit of the batch head's signature in record N's
 *       ReceiptProof, rebuild the stored tree
 *   keten-auditedit refused-as-receipted --store DIR --leaf N
 *       turn refused-by-recipient record N into a receipted one (event
 *       changed, reason cleared; the recipient's signed refusal kept),
 *       rebuild the stored tree
 *   keten-auditedit receipt-envelope --store DIR --leaf N --key FILE
 *       replace record N's ReceiptProof with a batch of one leaf signed with
 *       the secret key file FILE (the recipient's, no passphrase) that names
 *       the same message and outcome but another envelope hash (same head
 *       network, serial and time), rebuild the stored tree
 *   keten-auditedit set-rule --store DIR --leaf N --rule R
 *       set the policy rule of submitted record N to R (the record is
 *       re-encoded), rebuild the stored tree
 *   keten-auditedit set-category --store DIR --leaf N --category C
 *       set the category of record N (any event) to C (the record is
 *       re-encoded), rebuild the stored tree
 *   keten-auditedit append-submitted --store DIR --key FILE --to ID
 *       --network NAME --directory-version V [--category C] [--purpose P]
 *       append a submitted record signed with the secret key file FILE (no
 *       passphrase) at the end of the log, with the tree updated as the
 *       broker would (keten_merkle_log_append)
 *   keten-auditedit repeat --store DIR --leaf N
 *       append a copy of record N at the end of the log, as the next record
 *       (its seq), dated at the last record's time and naming the last
 *       record's directory version, with the tree updated as the broker
 *       would: a record repeated, every signature in it still genuine
 *   keten-auditedit set-time --store DIR --leaf N --time MS [--drop-checkpoints]
 *       set record N's time (ms since the epoch), rebuild the stored tree;
 *       with --drop-checkpoints also delete every stored checkpoint (as an
 *       operator who rewrote the log would, so that the broker signs it anew)
 *   keten-auditedit set-node --store DIR --leaf N --node TEXT
 *       set record N's `node` field (the node a connection, delivery or
 *       receipt record concerns) to TEXT, any bytes, rebuild the stored
 *       tree: a record naming something the broker never writes there
 *   keten-auditedit checkpoint --store DIR [--size N | --most-cosigned]
 *       print the stored checkpoint note of tree size N (default: the latest;
 *       --most-cosigned: the one with the most signature lines, the latest
 *       of those)
 *   keten-auditedit tables --store DIR
 *       list the named tables of the store, one per line (read-only)
 *
 * Exit code 0 done, 1 failure, 2 usage.
 */
#include <getopt.h>
#include <lmdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "identity.h"
#include "keten.h"
#include "merkle.h"
#include "pb.h"
#include "receipt.h"
#include "util.h"

#define MAP_SIZE (1ull << 30)
#define NODE_KEY KETEN_MERKLE_NODE_KEY_BYTES

static MDB_env *env;
static MDB_txn *txn;
static MDB_dbi leaf_db, node_db, cp_db;

static void be64(uint64_t v, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | in[i];
    }
    return v;
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "keten-auditedit: %s: %s\n", what, rc != 0 ? mdb_strerror(rc) : "failed");
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return 1;
}

/* read_only: a reader registered in the lock file (safe next to a running
 * broker); otherwise one write transaction (the broker must be stopped). */
static int open_store(const char *store, bool read_only)
{
    int rc;
    if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, 64)) != 0
        || (!read_only && (rc = mdb_env_set_mapsize(env, MAP_SIZE)) != 0)
        || (rc = mdb_env_open(env, store, read_only ? MDB_RDONLY : 0, 0600)) != 0) {
        return die(store, rc);
    }
    if ((rc = mdb_txn_begin(env, NULL, read_only ? MDB_RDONLY : 0, &txn)) != 0
        || (rc = mdb_dbi_open(txn, "audit-leaf", 0, &leaf_db)) != 0
        || (rc = mdb_dbi_open(txn, "audit-node", 0, &node_db)) != 0
        || (rc = mdb_dbi_open(txn, "checkpoints", 0, &cp_db)) != 0) {
        return die("opening the audit tables", rc);
    }
    return 0;
}

static int finish(void)
{
    int rc = mdb_txn_commit(txn);
    txn = NULL;
    mdb_env_close(env);
    return rc != 0 ? die("commit", rc) : 0;
}

static uint64_t log_size(void)
{
    MDB_stat st;
    return mdb_stat(txn, leaf_db, &st) == 0 ? st.ms_entries : 0;
}

static int get_leaf(uint64_t i, MDB_val *v)
{
    uint8_t k[8];
    be64(i, k);
    MDB_val key = { 8, k };
    return mdb_get(txn, leaf_db, &key, v);
}

static int put_leaf(uint64_t i, const void *data, size_t len)
{
    uint8_t k[8];
    be64(i, k);
    MDB_val key = { 8, k }, val = { len, (void *)data };
    return mdb_put(txn, leaf_db, &key, &val, 0);
}

/* Drop every stored subtree hash and store them again from the leaves. */
static int rebuild_tree(void)
{
    int rc = mdb_drop(txn, node_db, 0);
    if (rc != 0) {
        return die("emptying audit-node", rc);
    }
    uint64_t n = log_size();
    keten_hash stack[65];
    size_t depth = 0;
    for (uint64_t i = 0; i < n; i++) {
        MDB_val v;
        if ((rc = get_leaf(i, &v)) != 0) {
            return die("reading a leaf", rc);
        }
        keten_hash h;
        keten_merkle_leaf_hash(v.mv_data, v.mv_size, h);
        unsigned level = 0;
        uint64_t index = i;
        for (;;) {
            uint8_t k[NODE_KEY];
            if (!keten_merkle_node_key(k, level, index)) {
                return die("a subtree no tree has", 0);
            }
            MDB_val key = { NODE_KEY, k }, val = { KETEN_HASH_BYTES, h };
            if ((rc = mdb_put(txn, node_db, &key, &val, 0)) != 0) {
                return die("writing a node", rc);
            }
            if ((index & 1) == 0) {
                break;
            }
            keten_merkle_node_hash(stack[--depth], h, h);
            level++;
            index >>= 1;
        }
        memcpy(stack[depth++], h, KETEN_HASH_BYTES);
    }
    return 0;
}

static uint8_t *copy_of(const MDB_val *v)
{
    uint8_t *p = malloc(v->mv_size + 1);
    if (p != NULL) {
        memcpy(p, v->mv_data, v->mv_size);
    }
    return p;
}

static int cmd_flip(uint64_t leaf, bool have_byte, uint64_t byte)
{
    MDB_val v;
    int rc = get_leaf(leaf, &v);
    if (rc != 0) {
        return die("no such leaf", rc);
    }
    uint8_t *p = copy_of(&v);
    size_t at = have_byte ? (size_t)byte : v.mv_size / 2;
    if (p == NULL || at >= v.mv_size) {
        return die("byte out of range", 0);
    }
    p[at] ^= 0x01;
    rc = put_leaf(leaf, p, v.mv_size);
    free(p);
    if (rc != 0) {
        return die("rewriting the leaf", rc);
    }
    printf("flipped byte %zu of leaf %llu\n", at, (unsigned long long)leaf);
    return finish();
}

static int cmd_delete(uint64_t leaf)
{
    uint64_t n = log_size();
    if (leaf >= n) {
        return die("no such leaf", 0);
    }
    for (uint64_t i = leaf + 1; i < n; i++) {
        MDB_val v;
        int rc = get_leaf(i, &v);
        uint8_t *p = rc == 0 ? copy_of(&v) : NULL;
        if (p == NULL || (rc = put_leaf(i - 1, p, v.mv_size)) != 0) {
            free(p);
            return die("moving a leaf", rc);
        }
        free(p);
    }
    uint8_t k[8];
    be64(n - 1, k);
    MDB_val key = { 8, k };
    int rc = mdb_del(txn, leaf_db, &key, NULL);
    if (rc != 0 || rebuild_tree() != 0) {
        return die("deleting the last leaf", rc);
    }
    printf("deleted leaf %llu of %llu; tree rebuilt\n", (unsigned long long)leaf,
        (unsigned long long)n);
    return finish();
}

static int cmd_truncate(uint64_t keep, bool drop_checkpoints)
{
    uint64_t n = log_size();
    for (uint64_t i = keep; i < n; i++) {
        uint8_t k[8];
        be64(i, k);
        MDB_val key = { 8, k };
        int rc = mdb_del(txn, leaf_db, &key, NULL);
        if (rc != 0) {
            return die("deleting a leaf", rc);
        }
    }
    if (rebuild_tree() != 0) {
        return 1;
    }
    size_t dropped = 0;
    if (drop_checkpoints) {
        MDB_cursor *cur = NULL;
        int rc = mdb_cursor_open(txn, cp_db, &cur);
        MDB_val k, v;
        while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
            if (k.mv_size == 8 && get_be64(k.mv_data) > keep) {
                if ((rc = mdb_cursor_del(cur, 0)) != 0) {
                    return die("deleting a checkpoint", rc);
                }
                dropped++;
            }
        }
        if (cur != NULL) {
            mdb_cursor_close(cur);
        }
    }
    printf("kept %llu of %llu leaves; tree rebuilt; %zu checkpoints dropped\n",
        (unsigned long long)keep, (unsigned long long)n, dropped);
    return finish();
}

static int cmd_swap(uint64_t a, uint64_t b)
{
    MDB_val va, vb;
    int rc;
    if ((rc = get_leaf(a, &va)) != 0 || (rc = get_leaf(b, &vb)) != 0) {
        return die("no such leaf", rc);
    }
    uint8_t *pa = copy_of(&va), *pb = copy_of(&vb);
    size_t la = va.mv_size, lb = vb.mv_size;
    if (pa == NULL || pb == NULL || put_leaf(a, pb, lb) != 0 || put_leaf(b, pa, la) != 0
        || rebuild_tree() != 0) {
        free(pa);
        free(pb);
        return die("swapping", 0);
    }
    free(pa);
    free(pb);
    printf("swapped leaves %llu and %llu; tree rebuilt\n", (unsigned long long)a,
        (unsigned long long)b);
    return finish();
}

/* Record leaf, decoded (NULL: said why, transaction aborted). */
static Keten__AuditRecord *load_record(uint64_t leaf)
{
    MDB_val v;
    int rc = get_leaf(leaf, &v);
    if (rc != 0) {
        die("no such leaf", rc);
        return NULL;
    }
    Keten__AuditRecord *r = NULL;
    if (KETEN_PB_UNPACK(
            keten__audit_record, v.mv_data, v.mv_size, KETEN_MERKLE_LEAF_MAX, "leaf", &r)
        != KETEN_OK) {
        die("the leaf is not a record", 0);
        return NULL;
    }
    return r;
}

static int cmd_corrupt_signature(uint64_t leaf)
{
    Keten__AuditRecord *r = load_record(leaf);
    if (r == NULL) {
        return 1;
    }
    if (r->signature.len == 0) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return die("the leaf is not a record with a signature", 0);
    }
    r->signature.data[r->signature.len / 2] ^= 0x01;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&r->base, &buf, &len);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK || put_leaf(leaf, buf, len) != 0 || rebuild_tree() != 0) {
        free(buf);
        return die("rewriting the leaf", 0);
    }
    free(buf);
    printf("corrupted the signature of leaf %llu; tree rebuilt\n", (unsigned long long)leaf);
    return finish();
}

/* Record leaf, decoded; its receipt must be present. */
static Keten__AuditRecord *receipt_record(uint64_t leaf)
{
    Keten__AuditRecord *r = load_record(leaf);
    if (r != NULL && (r->receipt == NULL || r->receipt->signature.len == 0)) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        die("the leaf is not a record with a receipt", 0);
        return NULL;
    }
    return r;
}

/* Re-encode r as leaf N, rebuild the tree, commit. Frees r. */
static int put_record(uint64_t leaf, Keten__AuditRecord *r, const char *what)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&r->base, &buf, &len);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK || put_leaf(leaf, buf, len) != 0 || rebuild_tree() != 0) {
        free(buf);
        return die("rewriting the leaf", 0);
    }
    free(buf);
    printf("%s of leaf %llu; tree rebuilt\n", what, (unsigned long long)leaf);
    return finish();
}

static int cmd_receipt_path(uint64_t leaf)
{
    Keten__AuditRecord *r = receipt_record(leaf);
    if (r == NULL) {
        return 1;
    }
    Keten__ReceiptProof *p = r->receipt;
    static uint8_t extra[KETEN_HASH_BYTES];
    static ProtobufCBinaryData one[1];
    if (p->n_path > 0 && p->path[0].len > 0) {
        p->path[0].data[p->path[0].len / 2] ^= 0x01;
        return put_record(leaf, r, "changed one byte of the receipt's leaf path");
    }
    /* A batch of one leaf has no path: give it one (detached again before
     * the record is freed). */
    ProtobufCBinaryData *old_path = p->path;
    size_t old_n = p->n_path;
    randombytes_buf(extra, sizeof extra);
    one[0].data = extra;
    one[0].len = sizeof extra;
    p->path = one;
    p->n_path = 1;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&r->base, &buf, &len);
    p->path = old_path;
    p->n_path = old_n;
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK || put_leaf(leaf, buf, len) != 0 || rebuild_tree() != 0) {
        free(buf);
        return die("rewriting the leaf", 0);
    }
    free(buf);
    printf("added a hash to the receipt's empty leaf path of leaf %llu; tree rebuilt\n",
        (unsigned long long)leaf);
    return finish();
}

static int cmd_receipt_signature(uint64_t leaf)
{
    Keten__AuditRecord *r = receipt_record(leaf);
    if (r == NULL) {
        return 1;
    }
    ProtobufCBinaryData *sig = &r->receipt->signature;
    sig->data[sig->len / 2] ^= 0x01;
    return put_record(leaf, r, "flipped one bit of the receipt head's signature");
}

static int cmd_refused_as_receipted(uint64_t leaf)
{
    Keten__AuditRecord *r = receipt_record(leaf);
    if (r == NULL) {
        return 1;
    }
    if (r->event != KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return die("the leaf is not a refused-by-recipient record", 0);
    }
    r->event = KETEN__EVENT__EVENT_RECEIPTED;
    r->reason = KETEN__REASON__REASON_NONE;
    return put_record(leaf, r, "turned refused-by-recipient into receipted");
}

/* Set one string field of r (as unpacked: an absent one is protobuf-c's
 * shared default, not to be freed), then write r back as leaf N. */
static int set_string(
    uint64_t leaf, Keten__AuditRecord *r, char **field, const char *value, const char *what)
{
    char *copy = strdup(value);
    if (copy == NULL) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return die("out of memory", 0);
    }
    if (*field != NULL && *field != protobuf_c_empty_string) {
        free(*field);
    }
    *field = copy;
    return put_record(leaf, r, what);
}

static int cmd_set_node(uint64_t leaf, const char *node)
{
    Keten__AuditRecord *r = load_record(leaf);
    return r == NULL ? 1 : set_string(leaf, r, &r->node, node, "set the node");
}

static int cmd_set_category(uint64_t leaf, const char *category)
{
    Keten__AuditRecord *r = load_record(leaf);
    return r == NULL ? 1 : set_string(leaf, r, &r->category, category, "set the category");
}

static int cmd_set_time(uint64_t leaf, uint64_t time, bool drop_checkpoints)
{
    if (drop_checkpoints) {
        int rc = mdb_drop(txn, cp_db, 0);
        if (rc != 0) {
            return die("deleting the checkpoints", rc);
        }
    }
    Keten__AuditRecord *r = load_record(leaf);
    if (r == NULL) {
        return 1;
    }
    r->time = time;
    return put_record(leaf, r, "set the time");
}

static int cmd_set_rule(uint64_t leaf, uint32_t rule)
{
    Keten__AuditRecord *r = load_record(leaf);
    if (r == NULL) {
        return 1;
    }
    if (r->event != KETEN__EVENT__EVENT_SUBMITTED) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return die("the leaf is not a submitted record", 0);
    }
    r->rule = rule;
    return put_record(leaf, r, "set the policy rule");
}

static int cmd_receipt_envelope(uint64_t leaf, const char *key_path)
{
    keten_identity *id = NULL;
    if (keten_identity_load(key_path, NULL, 0, &id) != KETEN_OK) {
        fprintf(stderr, "keten-auditedit: %s: %s\n", key_path, keten_err_detail());
        mdb_txn_abort(txn);
        return 1;
    }
    Keten__AuditRecord *r = receipt_record(leaf);
    Keten__ReceiptBatchHead *h = NULL;
    Keten__ReceiptLeaf *l = NULL;
    keten_receipt_batch *b = NULL;
    keten_hash *hashes = NULL;
    Keten__ReceiptBatchHead *vh = NULL;
    keten_receipt_proof_buf pb;
    memset(&pb, 0, sizeof pb);
    int rc = 1;
    if (r == NULL) {
        keten_identity_destroy(&id);
        return 1;
    }
    if (KETEN_PB_UNPACK(keten__receipt_batch_head, r->receipt->head.data, r->receipt->head.len,
            KETEN_RECEIPT_HEAD_MAX, "head", &h)
            != KETEN_OK
        || KETEN_PB_UNPACK(keten__receipt_leaf, r->receipt->leaf.data, r->receipt->leaf.len,
               KETEN_RECEIPT_LEAF_MAX, "leaf", &l)
            != KETEN_OK
        || l->msg_id.len != KETEN_MSG_ID_BYTES || l->envelope_hash.len != KETEN_HASH_BYTES) {
        rc = die("the record's receipt does not parse", 0);
        goto out;
    }
    keten_receipt_item item;
    memcpy(item.msg_id, l->msg_id.data, KETEN_MSG_ID_BYTES);
    memcpy(item.envelope_hash, l->envelope_hash.data, KETEN_HASH_BYTES);
    item.envelope_hash[0] ^= 0x01;
    item.outcome = l->outcome;
    item.reason = l->reason;
    Keten__NodeCert cert = KETEN__NODE_CERT__INIT;
    cert.id = id->id;
    cert.serial = h->cert_serial;
    cert.sign_pk = (ProtobufCBinaryData) { KETEN_SIGN_PK_BYTES, id->sign_pk };
    if (keten_receipt_batch_new(id, h->network, h->cert_serial, h->stored_at, &item, 1, &b)
            != KETEN_OK
        || keten_receipt_batch_verify(&cert, h->network, &b->msg, &vh, &hashes) != KETEN_OK
        || keten_receipt_proof_build(&b->msg, (const keten_hash *)hashes, 0, &pb) != KETEN_OK) {
        fprintf(stderr, "keten-auditedit: signing a receipt: %s\n", keten_err_detail());
        rc = die("signing a receipt", 0);
        goto out;
    }
    Keten__ReceiptProof *old = r->receipt;
    r->receipt = &pb.msg;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&r->base, &buf, &len);
    r->receipt = old;
    if (e != KETEN_OK || put_leaf(leaf, buf, len) != 0 || rebuild_tree() != 0) {
        free(buf);
        rc = die("rewriting the leaf", 0);
        goto out;
    }
    free(buf);
    printf("re-signed the receipt of leaf %llu by %s naming another envelope hash; tree "
           "rebuilt\n",
        (unsigned long long)leaf, id->id);
    rc = finish();
out:
    keten_receipt_proof_buf_clear(&pb);
    free(hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&vh);
    keten_receipt_batch_destroy(&b);
    keten_pb_free((ProtobufCMessage **)(void *)&l);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    keten_identity_destroy(&id);
    return rc;
}

static int cmd_append(const char *key_path, const char *to, const char *network,
    uint64_t dir_version, const char *category, const char *purpose)
{
    keten_identity *id = NULL;
    if (keten_identity_load(key_path, NULL, 0, &id) != KETEN_OK) {
        fprintf(stderr, "keten-auditedit: %s: %s\n", key_path, keten_err_detail());
        mdb_txn_abort(txn);
        return 1;
    }
    uint64_t n = log_size();
    uint64_t now = keten_now_ms();
    if (n > 0) {
        MDB_val v;
        Keten__AuditRecord *last = NULL;
        if (get_leaf(n - 1, &v) == 0
            && KETEN_PB_UNPACK(
                   keten__audit_record, v.mv_data, v.mv_size, KETEN_MERKLE_LEAF_MAX, "leaf", &last)
                == KETEN_OK) {
            if (last->time > now) {
                now = last->time;
            }
            keten_pb_free((ProtobufCMessage **)(void *)&last);
        }
    }
    uint8_t msg_id[KETEN_MSG_ID_BYTES], nonce[KETEN_NONCE_BYTES], commit[KETEN_HASH_BYTES],
        keys_hash[KETEN_HASH_BYTES], ct_hash[KETEN_HASH_BYTES], env_hash[KETEN_HASH_BYTES];
    randombytes_buf(msg_id, sizeof msg_id);
    randombytes_buf(nonce, sizeof nonce);
    randombytes_buf(commit, sizeof commit);
    randombytes_buf(keys_hash, sizeof keys_hash);
    randombytes_buf(ct_hash, sizeof ct_hash);
    randombytes_buf(env_hash, sizeof env_hash);
    char *rcpt[1] = { (char *)to };
    Keten__Header h = KETEN__HEADER__INIT;
    h.network = (char *)network;
    h.msg_id = (ProtobufCBinaryData) { sizeof msg_id, msg_id };
    h.sender = id->id;
    h.n_recipients = 1;
    h.recipients = rcpt;
    h.created_at = now;
    h.expires_at = now + 3600000;
    h.kind = KETEN__KIND__KIND_SIGNAL;
    h.category = (char *)category;
    h.purpose = (char *)purpose;
    h.nonce = (ProtobufCBinaryData) { sizeof nonce, nonce };
    h.key_commitment = (ProtobufCBinaryData) { sizeof commit, commit };
    h.keys_hash = (ProtobufCBinaryData) { sizeof keys_hash, keys_hash };
    h.padded_len = 1024;
    uint8_t *hdr = NULL, *msg = NULL, *leaf = NULL;
    size_t hdr_len = 0, leaf_len = 0;
    uint8_t sig[KETEN_SIG_BYTES];
    if (keten_pb_pack(&h.base, &hdr, &hdr_len) != KETEN_OK) {
        return die("packing a header", 0);
    }
    size_t label = strlen(KETEN_LABEL_ENVELOPE);
    msg = malloc(label + hdr_len + KETEN_HASH_BYTES);
    if (msg == NULL) {
        return die("out of memory", 0);
    }
    memcpy(msg, KETEN_LABEL_ENVELOPE, label);
    memcpy(msg + label, hdr, hdr_len);
    memcpy(msg + label + hdr_len, ct_hash, KETEN_HASH_BYTES);
    crypto_sign_detached(sig, NULL, msg, label + hdr_len + KETEN_HASH_BYTES, id->sign_sk);
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.seq = n;
    r.time = now;
    r.event = KETEN__EVENT__EVENT_SUBMITTED;
    r.msg_id = h.msg_id;
    r.sender = id->id;
    r.n_recipients = 1;
    r.recipients = rcpt;
    r.kind = h.kind;
    r.category = h.category;
    r.purpose = h.purpose;
    r.rule = 1;
    r.header = (ProtobufCBinaryData) { hdr_len, hdr };
    r.ciphertext_hash = (ProtobufCBinaryData) { sizeof ct_hash, ct_hash };
    r.signature = (ProtobufCBinaryData) { sizeof sig, sig };
    r.size_bucket = 1024;
    r.directory_version = dir_version;
    r.envelope_hash = (ProtobufCBinaryData) { sizeof env_hash, env_hash };
    keten_merkle_log *log = NULL;
    uint64_t index = 0;
    if (keten_pb_pack(&r.base, &leaf, &leaf_len) != KETEN_OK
        || keten_merkle_log_open(txn, "audit-", &log) != KETEN_OK
        || keten_merkle_log_append(log, txn, leaf, leaf_len, &index) != KETEN_OK) {
        fprintf(stderr, "keten-auditedit: appending: %s\n", keten_err_detail());
        return die("appending", 0);
    }
    keten_merkle_log_destroy(&log);
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, sizeof msg_id, hex);
    printf("appended leaf %llu: submitted %s by %s\n", (unsigned long long)index, hex, id->id);
    free(hdr);
    free(msg);
    free(leaf);
    keten_identity_destroy(&id);
    return finish();
}

/* Leaf i decoded (NULL after a message when it is not there or does not decode). */
static Keten__AuditRecord *record_at(uint64_t i)
{
    MDB_val v;
    Keten__AuditRecord *r = NULL;
    int rc = get_leaf(i, &v);
    if (rc != 0) {
        die("no such leaf", rc);
        return NULL;
    }
    if (KETEN_PB_UNPACK(
            keten__audit_record, v.mv_data, v.mv_size, KETEN_MERKLE_LEAF_MAX, "leaf", &r)
        != KETEN_OK) {
        die("the leaf is not a record", 0);
        return NULL;
    }
    return r;
}

static int cmd_repeat(uint64_t leaf)
{
    uint64_t n = log_size();
    if (n == 0) {
        return die("the log is empty", 0);
    }
    Keten__AuditRecord *r = record_at(leaf);
    Keten__AuditRecord *last = r != NULL ? record_at(n - 1) : NULL;
    if (last == NULL) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return 1;
    }
    r->seq = n;
    r->time = last->time;
    if (r->event != KETEN__EVENT__EVENT_DIRECTORY_INSTALLED) {
        /* the version in force after the last record (the one it installs,
         * for a directory-installed record) */
        r->directory_version = last->directory_version;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&last);
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_merkle_log *log = NULL;
    uint64_t index = 0;
    keten_err e = keten_pb_pack(&r->base, &buf, &len);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK || keten_merkle_log_open(txn, "audit-", &log) != KETEN_OK
        || keten_merkle_log_append(log, txn, buf, len, &index) != KETEN_OK) {
        fprintf(stderr, "keten-auditedit: appending: %s\n", keten_err_detail());
        keten_merkle_log_destroy(&log);
        free(buf);
        return die("appending", 0);
    }
    keten_merkle_log_destroy(&log);
    free(buf);
    printf("appended leaf %llu: a copy of leaf %llu\n", (unsigned long long)index,
        (unsigned long long)leaf);
    return finish();
}

static size_t sig_lines(const MDB_val *v)
{
    const char *p = v->mv_data;
    size_t n = 0;
    for (size_t i = 0; i + 3 < v->mv_size; i++) {
        n += p[i] == '\n' && memcmp(p + i + 1, "\xe2\x80\x94", 3) == 0;
    }
    return n;
}

static int cmd_checkpoint(bool have_size, uint64_t size, bool most)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v, best = { 0, NULL };
    size_t best_lines = 0;
    int rc = mdb_cursor_open(txn, cp_db, &cur);
    if (rc == 0 && have_size) {
        uint8_t kb[8];
        be64(size, kb);
        k = (MDB_val) { 8, kb };
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
        best = v;
    } else if (rc == 0 && most) {
        while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
            if (best.mv_data == NULL || sig_lines(&v) >= best_lines) {
                best = v;
                best_lines = sig_lines(&v);
            }
        }
        rc = best.mv_data != NULL ? 0 : MDB_NOTFOUND;
    } else if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        best = v;
    }
    if (rc != 0) {
        return die("no such checkpoint", rc);
    }
    fwrite(best.mv_data, 1, best.mv_size, stdout);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    txn = NULL;
    mdb_env_close(env);
    return 0;
}

static int cmd_tables(const char *store)
{
    int rc;
    MDB_dbi main_db;
    MDB_cursor *cur = NULL;
    if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, 64)) != 0
        || (rc = mdb_env_open(env, store, MDB_RDONLY | MDB_NOLOCK, 0600)) != 0
        || (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0
        || (rc = mdb_dbi_open(txn, NULL, 0, &main_db)) != 0
        || (rc = mdb_cursor_open(txn, main_db, &cur)) != 0) {
        return die(store, rc);
    }
    MDB_val k, v;
    while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
        printf("%.*s\n", (int)k.mv_size, (const char *)k.mv_data);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    txn = NULL;
    mdb_env_close(env);
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
        "usage: keten-auditedit flip|delete|truncate|swap|corrupt-signature|receipt-path|"
        "receipt-signature|refused-as-receipted|receipt-envelope|set-rule|set-category|"
        "set-node|set-time|append-submitted|repeat|checkpoint|tables --store DIR [options] (see "
        "the "
        "source)\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "store", required_argument, NULL, 's' },
        { "leaf", required_argument, NULL, 'l' },
        { "byte", required_argument, NULL, 'b' },
        { "keep", required_argument, NULL, 'k' },
        { "with", required_argument, NULL, 'w' },
        { "size", required_argument, NULL, 'z' },
        { "drop-checkpoints", no_argument, NULL, 'D' },
        { "most-cosigned", no_argument, NULL, 'M' },
        { "key", required_argument, NULL, 'K' },
        { "to", required_argument, NULL, 't' },
        { "network", required_argument, NULL, 'n' },
        { "directory-version", required_argument, NULL, 'v' },
        { "category", required_argument, NULL, 'c' },
        { "purpose", required_argument, NULL, 'p' },
        { "node", required_argument, NULL, 'N' },
        { "time", required_argument, NULL, 'T' },
        { "rule", required_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    if (argc < 2) {
        return usage();
    }
    const char *verb = argv[1];
    const char *store = NULL, *key = NULL, *to = NULL, *network = NULL, *node = NULL;
    const char *category = "woonfraude", *purpose = "handhaving";
    uint64_t leaf = 0, byte = 0, keep = 0, with = 0, size = 0, dir_version = 0, rule = 0,
             time_ms = 0;
    bool have_leaf = false, have_byte = false, have_keep = false, have_with = false,
         have_size = false, have_rule = false, drop = false, most = false, have_time = false;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 's':
            store = optarg;
            break;
        case 'l':
            ok = have_leaf = keten_cli_parse_uint(optarg, 0, UINT64_MAX - 1, &leaf);
            break;
        case 'r':
            ok = have_rule = keten_cli_parse_uint(optarg, 0, UINT32_MAX, &rule);
            break;
        case 'b':
            ok = have_byte = keten_cli_parse_uint(optarg, 0, UINT32_MAX, &byte);
            break;
        case 'k':
            ok = have_keep = keten_cli_parse_uint(optarg, 0, UINT64_MAX - 1, &keep);
            break;
        case 'w':
            ok = have_with = keten_cli_parse_uint(optarg, 0, UINT64_MAX - 1, &with);
            break;
        case 'z':
            ok = have_size = keten_cli_parse_uint(optarg, 0, UINT64_MAX - 1, &size);
            break;
        case 'D':
            drop = true;
            break;
        case 'M':
            most = true;
            break;
        case 'K':
            key = optarg;
            break;
        case 't':
            to = optarg;
            break;
        case 'n':
            network = optarg;
            break;
        case 'v':
            ok = keten_cli_parse_uint(optarg, 1, UINT64_MAX - 1, &dir_version);
            break;
        case 'c':
            category = optarg;
            break;
        case 'p':
            purpose = optarg;
            break;
        case 'N':
            node = optarg;
            break;
        case 'T':
            ok = have_time = keten_cli_parse_uint(optarg, 0, UINT64_MAX - 1, &time_ms);
            break;
        default:
            ok = false;
        }
        if (!ok) {
            return usage();
        }
    }
    if (store == NULL || keten_init() != KETEN_OK) {
        return usage();
    }
    if (strcmp(verb, "flip") == 0 && have_leaf) {
        return open_store(store, false) != 0 ? 1 : cmd_flip(leaf, have_byte, byte);
    }
    if (strcmp(verb, "delete") == 0 && have_leaf) {
        return open_store(store, false) != 0 ? 1 : cmd_delete(leaf);
    }
    if (strcmp(verb, "truncate") == 0 && have_keep) {
        return open_store(store, false) != 0 ? 1 : cmd_truncate(keep, drop);
    }
    if (strcmp(verb, "swap") == 0 && have_leaf && have_with) {
        return open_store(store, false) != 0 ? 1 : cmd_swap(leaf, with);
    }
    if (strcmp(verb, "corrupt-signature") == 0 && have_leaf) {
        return open_store(store, false) != 0 ? 1 : cmd_corrupt_signature(leaf);
    }
    if (strcmp(verb, "receipt-path") == 0 && have_leaf) {
        return open_store(store, false) != 0 ? 1 : cmd_receipt_path(leaf);
    }
    if (strcmp(verb, "receipt-signature") == 0 && have_leaf) {
        return open_store(store, false) != 0 ? 1 : cmd_receipt_signature(leaf);
    }
    if (strcmp(verb, "refused-as-receipted") == 0 && have_leaf) {
        return open_store(store, false) != 0 ? 1 : cmd_refused_as_receipted(leaf);
    }
    if (strcmp(verb, "set-rule") == 0 && have_leaf && have_rule) {
        return open_store(store, false) != 0 ? 1 : cmd_set_rule(leaf, (uint32_t)rule);
    }
    if (strcmp(verb, "set-category") == 0 && have_leaf) {
        return open_store(store, false) != 0 ? 1 : cmd_set_category(leaf, category);
    }
    if (strcmp(verb, "receipt-envelope") == 0 && have_leaf && key != NULL) {
        return open_store(store, false) != 0 ? 1 : cmd_receipt_envelope(leaf, key);
    }
    if (strcmp(verb, "append-submitted") == 0 && key != NULL && to != NULL && network != NULL
        && dir_version > 0) {
        return open_store(store, false) != 0
            ? 1
            : cmd_append(key, to, network, dir_version, category, purpose);
    }
    if (strcmp(verb, "repeat") == 0 && have_leaf) {
        return open_store(store, false) != 0 ? 1 : cmd_repeat(leaf);
    }
    if (strcmp(verb, "set-time") == 0 && have_leaf && have_time) {
        return open_store(store, false) != 0 ? 1 : cmd_set_time(leaf, time_ms, drop);
    }
    if (strcmp(verb, "set-node") == 0 && have_leaf && node != NULL) {
        return open_store(store, false) != 0 ? 1 : cmd_set_node(leaf, node);
    }
    if (strcmp(verb, "tables") == 0) {
        return cmd_tables(store);
    }
    if (strcmp(verb, "checkpoint") == 0) {
        return open_store(store, true) != 0 ? 1 : cmd_checkpoint(have_size, size, most);
    }
    return usage();
}
