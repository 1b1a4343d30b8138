/*
 * fixture_node.c - a keten-node without its main loop, the broker's end of
 * its link and a broker's audit log (see fixture_node.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "alarm.h"
#include "api.h"
#include "checkpoint.h"
#include "dirs.h"
#include "envelope.h"
#include "fixture_forge.h"
#include "fixture_node.h"
#include "inbox.h"
#include "link.h"
#include "nodestore.h"
#include "outbox.h"
#include "pb.h"
#include "receipt.h"
#include "sha256.h"
#include "signal_json.h"
#include "store.h"
#include "util.h"
#include "witness.h"
#include "zctx.h"

#define FLOG_MAP (64u << 20)
#define FLOG_PREFIX "audit-"
#define CONNECT_MS 5000
#define POLL_MS 50

#define CHECK(call, what)                                                                          \
    do {                                                                                           \
        keten_err check_e_ = (call);                                                               \
        if (check_e_ != KETEN_OK) {                                                                \
            fail_msg(                                                                              \
                "fixture_node: %s: %s: %s", (what), keten_err_str(check_e_), keten_err_detail());  \
        }                                                                                          \
    } while (0)

/* ---- the node ------------------------------------------------------------ */

static void *broker_end(fnode *self)
{
    void *s = zmq_socket(self->node.zctx, ZMQ_ROUTER);
    assert_non_null(s);
    int one = 1, zero = 0;
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) != 0
        || zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, self->broker->transport_sk, KETEN_CURVE_KEY_BYTES)
            != 0
        || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_bind(s, self->endpoint) != 0) {
        fail_msg(
            "fixture_node: the broker's end on %s: %s", self->endpoint, zmq_strerror(zmq_errno()));
    }
    return s;
}

fnode *fnode_new(fixture *fx, const char *node_id, const char *broker_id)
{
    fnode *self = calloc(1, sizeof *self);
    assert_non_null(self);
    self->fx = fx;
    self->broker = fixture_node(fx, broker_id);
    keten_identity *me = fixture_node(fx, node_id);
    if (self->broker == NULL || me == NULL) {
        fail_msg("fixture_node: no node '%s' or broker '%s' in the fixture", node_id, broker_id);
    }
    fixture_path(fx, node_id, self->home);
    if (mkdir(self->home, 0700) != 0) {
        fail_msg("fixture_node: cannot make %s", self->home);
    }
    fixture_path(fx, "network.pub", self->anchor);
    fixture_path(fx, "directory", self->directory);
    char sock[PATH_MAX];
    fixture_path(fx, "broker.sock", sock);
    snprintf(self->endpoint, sizeof self->endpoint, "ipc://%s", sock);

    keten_node *node = &self->node;
    node->opts = (keten_node_opts) {
        .home = self->home,
        .anchor = self->anchor,
        .directory = self->directory,
        .broker = self->endpoint,
        .witness_timeout_ms = KETEN_NODE_WITNESS_TIMEOUT_MS,
        .checkpoint_keep_ms = KETEN_NODE_CHECKPOINT_KEEP_MS,
        .checkpoint_hourly_ms = KETEN_NODE_CHECKPOINT_HOURLY_MS,
    };
    node->me = me; /* borrowed from the fixture */
    node->started_at = keten_now_ms();
    CHECK(keten_directory_anchor_load(self->anchor, &node->anchor), "loading the anchor");
    CHECK(keten_store_open(self->home, &node->store), "opening the store");
    CHECK(keten_dirs_load(node), "loading the directory");
    CHECK(keten_inbox_unhandled_init(node), "counting the unhandled messages");
    node->zctx = zmq_ctx_new();
    assert_non_null(node->zctx);
    CHECK(keten_witness_new(node, &node->witness), "the witness");
    CHECK(keten_api_open(node, &node->api), "the API operations");
    self->router = broker_end(self);
    CHECK(keten_link_new(node->zctx, self->endpoint, me, self->broker->transport_pk, &node->link),
        "the link");
    return self;
}

void fnode_destroy(fnode **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    fnode *self = *self_p;
    keten_node *node = &self->node;
    keten_api_destroy(&node->api);
    keten_link_destroy(&node->link);
    if (self->router != NULL) {
        zmq_close(self->router);
    }
    keten_witness_destroy(&node->witness);
    keten_dirs_forget_needed(node);
    free(node->receipts);
    (void)keten_zctx_term(&node->zctx, KETEN_ZCTX_TERM_MS);
    keten_directory_destroy(&node->dir);
    keten_store_destroy(&node->store);
    keten_pb_free((ProtobufCMessage **)(void *)&node->anchor);
    free(self);
    *self_p = NULL;
}

void fnode_connect(fnode *self)
{
    keten_node *node = &self->node;
    uint64_t until = keten_mono_ms() + CONNECT_MS;
    while (!keten_link_connected(node->link)) {
        if (keten_mono_ms() > until) {
            fail_msg("fixture_node: no handshake with the broker's end within %d ms (%s)",
                CONNECT_MS, keten_link_last_error(node->link));
        }
        zmq_pollitem_t item = { keten_link_monitor(node->link), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&item, 1, POLL_MS) > 0) {
            (void)keten_link_on_monitor(node->link);
        }
    }
}

Keten__Frame *fnode_recv(fnode *self, int timeout_ms)
{
    assert_int_equal(zmq_setsockopt(self->router, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms), 0);
    zmq_msg_t rid, data;
    zmq_msg_init(&rid);
    if (zmq_msg_recv(&rid, self->router, 0) < 0) {
        zmq_msg_close(&rid);
        return NULL;
    }
    assert_true(zmq_msg_more(&rid));
    zmq_msg_close(&rid);
    zmq_msg_init(&data);
    assert_true(zmq_msg_recv(&data, self->router, 0) >= 0);
    assert_false(zmq_msg_more(&data));
    Keten__Frame *f = NULL;
    CHECK(KETEN_PB_UNPACK(keten__frame, zmq_msg_data(&data), zmq_msg_size(&data), KETEN_FRAME_MAX,
              "frame from the node", &f),
        "parsing a frame the node sent");
    zmq_msg_close(&data);
    return f;
}

Keten__Frame *fnode_recv_body(fnode *self, int body, int timeout_ms)
{
    for (;;) {
        Keten__Frame *f = fnode_recv(self, timeout_ms);
        if (f == NULL || (int)f->body_case == body) {
            return f;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&f);
    }
}

void fnode_expect_nothing_more(fnode *self)
{
    keten_witness_send_hello(&self->node);
    Keten__Frame *f = fnode_recv(self, FNODE_RECV_MS);
    if (f == NULL || f->body_case != KETEN__FRAME__BODY_HELLO) {
        fail_msg("fixture_node: the node sent a frame of body %d before the marker",
            f != NULL ? (int)f->body_case : -1);
    }
    assert_int_equal(f->hello->tree_size, keten_witness_reference_size(&self->node));
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

void fnode_frame(fnode *self, const Keten__Frame *f)
{
    self->node.frame = f;
}

size_t fnode_alarms(fnode *self)
{
    json_t *list = NULL;
    CHECK(keten_alarm_list(&self->node, &list), "listing the alarms");
    size_t n = json_array_size(list);
    json_decref(list);
    return n;
}

size_t fnode_evidence(fnode *self)
{
    size_t n = 0;
    CHECK(keten_alarm_evidence_count(&self->node, &n), "counting the evidence");
    return n;
}

/* ---- the broker's log ------------------------------------------------------ */

static void lmdb_check(int rc, const char *what)
{
    if (rc != 0) {
        fail_msg("fixture_node: %s: %s", what, mdb_strerror(rc));
    }
}

flog *flog_new(fixture *fx, const char *name)
{
    flog *self = calloc(1, sizeof *self);
    assert_non_null(self);
    fixture_path(fx, name, self->dir);
    if (mkdir(self->dir, 0700) != 0) {
        fail_msg("fixture_node: cannot make %s", self->dir);
    }
    lmdb_check(mdb_env_create(&self->env), "mdb_env_create");
    lmdb_check(mdb_env_set_maxdbs(self->env, 4), "mdb_env_set_maxdbs");
    lmdb_check(mdb_env_set_mapsize(self->env, FLOG_MAP), "mdb_env_set_mapsize");
    lmdb_check(mdb_env_open(self->env, self->dir, MDB_NOTLS, 0600), "mdb_env_open");
    MDB_txn *txn = NULL;
    lmdb_check(mdb_txn_begin(self->env, NULL, 0, &txn), "mdb_txn_begin");
    CHECK(keten_merkle_log_open(txn, FLOG_PREFIX, &self->log), "opening the log");
    lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
    return self;
}

void flog_destroy(flog **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    flog *self = *self_p;
    keten_merkle_log_destroy(&self->log);
    mdb_env_close(self->env);
    free(self);
    *self_p = NULL;
}

static MDB_txn *reader(flog *self)
{
    MDB_txn *txn = NULL;
    lmdb_check(mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
    return txn;
}

uint64_t flog_size(flog *self)
{
    MDB_txn *txn = reader(self);
    uint64_t size = 0;
    CHECK(keten_merkle_log_size(self->log, txn, &size), "the log's size");
    mdb_txn_abort(txn);
    return size;
}

void flog_root(flog *self, uint64_t size, keten_hash out)
{
    MDB_txn *txn = reader(self);
    CHECK(keten_merkle_log_root(self->log, txn, size, out), "the log's root");
    mdb_txn_abort(txn);
}

uint64_t flog_append(flog *self, Keten__AuditRecord *rec)
{
    MDB_txn *txn = NULL;
    lmdb_check(mdb_txn_begin(self->env, NULL, 0, &txn), "mdb_txn_begin");
    uint64_t size = 0;
    CHECK(keten_merkle_log_size(self->log, txn, &size), "the log's size");
    rec->seq = size;
    if (rec->time == 0) {
        rec->time = keten_now_ms();
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(keten_pb_pack(&rec->base, &buf, &len), "packing a record");
    uint64_t index = 0;
    CHECK(keten_merkle_log_append(self->log, txn, buf, len, &index), "appending a record");
    free(buf);
    lmdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
    assert_int_equal(index, size);
    return index;
}

uint64_t flog_submitted(flog *self, const uint8_t *env, size_t len)
{
    Keten__Envelope *e = NULL;
    Keten__Header *h = NULL;
    CHECK(KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "envelope", &e),
        "parsing an envelope to log");
    CHECK(KETEN_PB_UNPACK(
              keten__header, e->header.data, e->header.len, KETEN_ENVELOPE_MAX, "header", &h),
        "parsing a header to log");
    uint8_t ct_hash[KETEN_HASH_BYTES], env_hash[KETEN_HASH_BYTES];
    keten_sha256(ct_hash, e->ciphertext.data, e->ciphertext.len);
    keten_sha256(env_hash, env, len);
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_SUBMITTED;
    rec.msg_id = h->msg_id;
    rec.sender = h->sender;
    rec.n_recipients = h->n_recipients;
    rec.recipients = h->recipients;
    rec.kind = h->kind;
    rec.category = h->category;
    rec.purpose = h->purpose;
    rec.rule = 1;
    rec.header = e->header;
    rec.ciphertext_hash.data = ct_hash;
    rec.ciphertext_hash.len = sizeof ct_hash;
    rec.signature = e->signature;
    rec.size_bucket = h->padded_len;
    rec.envelope_hash.data = env_hash;
    rec.envelope_hash.len = sizeof env_hash;
    rec.directory_version = 1;
    uint64_t leaf = flog_append(self, &rec);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    return leaf;
}

void flog_pad(flog *self, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
        rec.event = KETEN__EVENT__EVENT_NODE_CONNECTED;
        rec.node = (char *)"padding";
        rec.directory_version = 1;
        (void)flog_append(self, &rec);
    }
}

char *flog_note(flog *self, const keten_identity *broker, const keten_directory *dir, uint64_t size)
{
    keten_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    snprintf(ck.origin, sizeof ck.origin, "keten/%s", keten_directory_network(dir));
    ck.size = size;
    flog_root(self, size, ck.root);
    ck.dir_version = keten_directory_version(dir);
    memcpy(ck.dir_hash, keten_directory_hash(dir), KETEN_HASH_BYTES);
    char *note = NULL;
    CHECK(keten_checkpoint_sign(&ck, broker->id, broker->log_sk, &note), "signing a checkpoint");
    return note;
}

flog_proof *flog_proof_new(flog *self, uint64_t leaf, uint64_t size)
{
    flog_proof *p = calloc(1, sizeof *p);
    assert_non_null(p);
    MDB_txn *txn = reader(self);
    CHECK(keten_logproof_build(self->log, txn, leaf, size, &p->buf), "building a leaf proof");
    p->leaf = malloc(p->buf.msg.leaf.len);
    assert_non_null(p->leaf);
    memcpy(p->leaf, p->buf.msg.leaf.data, p->buf.msg.leaf.len);
    p->buf.msg.leaf.data = p->leaf;
    mdb_txn_abort(txn);
    return p;
}

void flog_proof_free(flog_proof **p)
{
    if (p == NULL || *p == NULL) {
        return;
    }
    free((*p)->leaf);
    free(*p);
    *p = NULL;
}

void fnode_checkpoint(fnode *self, flog *log, uint64_t old_size, uint64_t size, bool witness)
{
    char *note = flog_note(log, self->broker, self->node.dir, size);
    keten_hash proof[KETEN_MERKLE_MAX_PROOF];
    ProtobufCBinaryData bins[KETEN_MERKLE_MAX_PROOF];
    size_t n = 0;
    if (old_size > 0 && old_size < size) {
        MDB_txn *txn = reader(log);
        CHECK(keten_merkle_log_consistency_proof(log->log, txn, old_size, size, proof, &n),
            "a consistency proof");
        mdb_txn_abort(txn);
    }
    for (size_t i = 0; i < n; i++) {
        bins[i].data = proof[i];
        bins[i].len = KETEN_HASH_BYTES;
    }
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    cf.old_size = old_size;
    cf.n_consistency = n;
    cf.consistency = bins;
    cf.witness = witness;
    fnode_take_checkpoint(self, &cf);
    free(note);
}

void fnode_take_checkpoint(fnode *self, const Keten__CheckpointFrame *cf)
{
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    f.checkpoint = (Keten__CheckpointFrame *)(uintptr_t)cf;
    fnode_frame(self, &f);
    keten_witness_on_checkpoint(&self->node, cf);
    fnode_frame(self, NULL);
}

/* ---- the usual bed of a node's test ------------------------------------------ */

fnode_bed *fnode_bed_new(fixture *fx, const char *node_id, const char *broker_id)
{
    fnode_bed *self = calloc(1, sizeof *self);
    assert_non_null(self);
    self->fx = fx;
    self->fn = fnode_new(fx, node_id, broker_id);
    self->node = &self->fn->node;
    fnode_connect(self->fn);
    self->log = flog_new(fx, "log");
    flog_pad(self->log, 1);
    return self;
}

void fnode_bed_destroy(fnode_bed **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    fnode_bed *self = *self_p;
    for (size_t i = 0; i < self->n_sent; i++) {
        free(self->sent[i].env);
    }
    flog_destroy(&self->log);
    fnode_destroy(&self->fn);
    fixture_destroy(&self->fx);
    free(self);
    *self_p = NULL;
}

uint64_t fnode_bed_checkpoint(fnode_bed *self)
{
    uint64_t size = flog_size(self->log);
    fnode_checkpoint(self->fn, self->log, keten_witness_reference_size(self->node), size, false);
    assert_int_equal(keten_witness_reference_size(self->node), size);
    return size;
}

fnode_sent *fnode_bed_send(fnode_bed *self, Keten__Kind kind, const char *to, const char *json)
{
    assert_true(self->n_sent < FNODE_SENT_MAX);
    fnode_sent *s = &self->sent[self->n_sent++];
    keten_outbox_send_req req = { .to = to, .kind = kind, .json = json, .json_len = strlen(json) };
    assert_int_equal(keten_outbox_send(self->node, &req, s->id), KETEN_OK);
    Keten__Frame *f = fnode_recv_body(self->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    s->rid = f->request_id;
    s->len = f->submit->envelope.len;
    s->env = malloc(s->len);
    assert_non_null(s->env);
    memcpy(s->env, f->submit->envelope.data, s->len);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    uint8_t id[KETEN_MSG_ID_BYTES];
    forge_msg_id(s->env, s->len, id);
    assert_memory_equal(id, s->id, KETEN_MSG_ID_BYTES);
    s->leaf = flog_submitted(self->log, s->env, s->len);
    return s;
}

void fnode_bed_ack(fnode_bed *self, uint64_t rid, const Keten__LeafProof *p)
{
    Keten__SubmitAck a = KETEN__SUBMIT_ACK__INIT;
    a.proof = (Keten__LeafProof *)p;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = rid;
    f.body_case = KETEN__FRAME__BODY_SUBMIT_ACK;
    f.submit_ack = &a;
    fnode_frame(self->fn, &f);
    keten_outbox_on_ack(self->node, rid, &a);
    fnode_frame(self->fn, NULL);
}

void fnode_bed_ack_leaf(fnode_bed *self, uint64_t rid, uint64_t leaf, uint64_t size)
{
    flog_proof *p = flog_proof_new(self->log, leaf, size);
    fnode_bed_ack(self, rid, &p->buf.msg);
    flog_proof_free(&p);
}

void fnode_bed_refusal(fnode_bed *self, uint64_t rid, const uint8_t *msg_id, Keten__Reason reason,
    uint32_t rule, const Keten__LeafProof *p)
{
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = reason;
    err.msg_id.data = (uint8_t *)(uintptr_t)msg_id;
    err.msg_id.len = KETEN_MSG_ID_BYTES;
    err.rule = rule;
    err.detail = (char *)"the broker's refusal";
    err.proof = (Keten__LeafProof *)p;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = rid;
    f.body_case = KETEN__FRAME__BODY_ERROR;
    f.error = &err;
    fnode_frame(self->fn, &f);
    keten_outbox_on_error(self->node, rid, &err);
    fnode_frame(self->fn, NULL);
}

void fnode_bed_refusal_leaf(fnode_bed *self, uint64_t rid, const uint8_t *msg_id,
    Keten__Reason reason, uint32_t rule, uint64_t leaf, uint64_t size)
{
    flog_proof *p = flog_proof_new(self->log, leaf, size);
    fnode_bed_refusal(self, rid, msg_id, reason, rule, &p->buf.msg);
    flog_proof_free(&p);
}

uint64_t fnode_bed_log_rejected(
    fnode_bed *self, const uint8_t *msg_id, const char *sender, Keten__Reason reason, uint32_t rule)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_REJECTED;
    if (msg_id != NULL) {
        rec.msg_id.data = (uint8_t *)(uintptr_t)msg_id;
        rec.msg_id.len = KETEN_MSG_ID_BYTES;
    }
    rec.sender = (char *)sender;
    rec.reason = reason;
    rec.rule = reason == KETEN__REASON__REASON_POLICY ? rule : 0;
    return flog_append(self->log, &rec);
}

void fnode_bed_deliver(fnode_bed *self, const uint8_t *env, size_t len, const Keten__LeafProof *p)
{
    Keten__Deliver d = KETEN__DELIVER__INIT;
    d.envelope.data = (uint8_t *)env;
    d.envelope.len = len;
    d.proof = (Keten__LeafProof *)p;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_DELIVER;
    f.deliver = &d;
    fnode_frame(self->fn, &f);
    keten_inbox_on_deliver(self->node, &d);
    fnode_frame(self->fn, NULL);
}

void fnode_bed_deliver_leaf(
    fnode_bed *self, const uint8_t *env, size_t len, uint64_t leaf, uint64_t size)
{
    flog_proof *p = flog_proof_new(self->log, leaf, size);
    fnode_bed_deliver(self, env, len, &p->buf.msg);
    flog_proof_free(&p);
}

void fnode_bed_receipt_notice(fnode_bed *self, uint64_t leaf, uint64_t size)
{
    flog_proof *p = flog_proof_new(self->log, leaf, size);
    Keten__ReceiptNotice n = KETEN__RECEIPT_NOTICE__INIT;
    n.proof = &p->buf.msg;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_RECEIPT_NOTICE;
    f.receipt_notice = &n;
    fnode_frame(self->fn, &f);
    keten_outbox_on_receipt_notice(self->node, &n);
    fnode_frame(self->fn, NULL);
    flog_proof_free(&p);
}

uint64_t fnode_sent_expires_at(const fnode_sent *s)
{
    Keten__Envelope *env = NULL;
    Keten__Header *h = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK(keten__envelope, s->env, s->len, KETEN_ENVELOPE_MAX, "envelope", &env),
        KETEN_OK);
    assert_int_equal(KETEN_PB_UNPACK(keten__header, env->header.data, env->header.len,
                         KETEN_ENVELOPE_MAX, "header", &h),
        KETEN_OK);
    uint64_t at = h->expires_at;
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&env);
    return at;
}

uint64_t fnode_bed_log_expired(
    fnode_bed *self, const fnode_sent *s, const char *const *recipients, uint64_t at)
{
    size_t n = 0;
    while (recipients[n] != NULL) {
        n++;
    }
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_EXPIRED;
    rec.time = at;
    rec.msg_id.data = (uint8_t *)s->id;
    rec.msg_id.len = KETEN_MSG_ID_BYTES;
    rec.sender = self->node->me->id;
    rec.n_recipients = n;
    rec.recipients = (char **)(uintptr_t)recipients;
    rec.directory_version = 1;
    return flog_append(self->log, &rec);
}

void fnode_bed_expiry_notice(fnode_bed *self, uint64_t leaf, uint64_t size)
{
    flog_proof *p = flog_proof_new(self->log, leaf, size);
    Keten__ExpiredNotice n = KETEN__EXPIRED_NOTICE__INIT;
    n.proof = &p->buf.msg;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_EXPIRED;
    f.expired = &n;
    fnode_frame(self->fn, &f);
    keten_outbox_on_expired(self->node, &n);
    fnode_frame(self->fn, NULL);
    flog_proof_free(&p);
}

uint64_t fnode_bed_log_receipt(fnode_bed *self, const fnode_sent *s, const char *recipient,
    const char *signer, const Keten__NodeCert *cert, uint64_t stored_at, bool other_envelope)
{
    const keten_directory *dir = self->node->dir;
    keten_receipt_item it;
    memset(&it, 0, sizeof it);
    memcpy(it.msg_id, s->id, KETEN_MSG_ID_BYTES);
    keten_sha256(it.envelope_hash, s->env, s->len);
    if (other_envelope) {
        it.envelope_hash[0] ^= 1;
    }
    it.outcome = KETEN__OUTCOME__OUTCOME_STORED;
    keten_receipt_batch *rb = NULL;
    assert_int_equal(keten_receipt_batch_new(fixture_node(self->fx, signer),
                         keten_directory_network(dir), cert->serial, stored_at, &it, 1, &rb),
        KETEN_OK);
    Keten__ReceiptBatchHead *head = NULL;
    keten_hash *leaf_hashes = NULL;
    assert_int_equal(keten_receipt_batch_verify(
                         cert, keten_directory_network(dir), &rb->msg, &head, &leaf_hashes),
        KETEN_OK);
    keten_receipt_proof_buf pb;
    memset(&pb, 0, sizeof pb);
    assert_int_equal(
        keten_receipt_proof_build(&rb->msg, (const keten_hash *)leaf_hashes, 0, &pb), KETEN_OK);
    char *rcpt[1] = { (char *)recipient };
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_RECEIPTED;
    rec.msg_id.data = (uint8_t *)s->id;
    rec.msg_id.len = KETEN_MSG_ID_BYTES;
    rec.sender = self->node->me->id;
    rec.node = (char *)recipient;
    rec.n_recipients = 1;
    rec.recipients = rcpt;
    rec.receipt = &pb.msg;
    rec.directory_version = 1;
    uint64_t leaf = flog_append(self->log, &rec);
    keten_receipt_proof_buf_clear(&pb);
    free(leaf_hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    keten_receipt_batch_destroy(&rb);
    return leaf;
}

void fnode_push_next(fnode *self, uint64_t valid_ms)
{
    size_t len = 0;
    uint8_t *sd = fixture_publish_valid(self->fx, valid_ms, &len);
    ProtobufCBinaryData chain = { len, sd };
    Keten__DirectoryPush push = KETEN__DIRECTORY_PUSH__INIT;
    push.n_chain = 1;
    push.chain = &chain;
    uint64_t before = keten_directory_version(self->node.dir);
    assert_int_equal(keten_dirs_on_push(&self->node, &push), KETEN_OK);
    assert_int_equal(keten_directory_version(self->node.dir), before + 1);
    free(sd);
}

void fnode_bed_push_next(fnode_bed *self, uint64_t valid_ms)
{
    fnode_push_next(self->fn, valid_ms);
}

void fnode_bed_put_queued(
    fnode_bed *self, const uint8_t *id, uint8_t *env, size_t len, const char *to)
{
    Keten__SentRecipient r = KETEN__SENT_RECIPIENT__INIT, *rp = &r;
    r.id = (char *)to;
    r.state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING;
    Keten__SentRecord rec = KETEN__SENT_RECORD__INIT;
    rec.msg_id.data = (uint8_t *)id;
    rec.msg_id.len = KETEN_MSG_ID_BYTES;
    rec.state = KETEN__SENT_STATE__SENT_STATE_QUEUED;
    rec.envelope.data = env;
    rec.envelope.len = len;
    rec.n_recipients = 1;
    rec.recipients = &rp;
    keten_store *st = self->node->store;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_store_put(st, txn, KETEN_DB_OUTBOX, id, KETEN_MSG_ID_BYTES, "", 0), KETEN_OK);
    assert_int_equal(keten_nodestore_sent_put(st, txn, &rec), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
}

uint8_t *fnode_seal(const keten_identity *signer, const keten_directory *dir, const char *to,
    const char *json, const fnode_seal_opts *o, uint8_t *id_out, size_t *len_out)
{
    Keten__Signal *sig = NULL;
    assert_int_equal(keten_signal_json_parse(json, strlen(json), &sig), KETEN_OK);
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    assert_int_equal(keten_signal_json_pack(sig, &payload, &payload_len), KETEN_OK);
    uint64_t now = keten_now_ms();
    keten_envelope_seal_params params = { .kind = o->kind,
        .category = o->category != NULL ? o->category : sig->type,
        .purpose = sig->purpose,
        .in_reply_to = o->in_reply_to,
        .created_at = now,
        .expires_at = now + o->life_ms };
    const char *rcpt[] = { to };
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint8_t *env = NULL;
    assert_int_equal(keten_envelope_seal(signer, dir, rcpt, 1, &params, payload, payload_len,
                         id_out != NULL ? id_out : id, &env, len_out),
        KETEN_OK);
    free(payload);
    keten_signal_json_free(&sig);
    return env;
}
