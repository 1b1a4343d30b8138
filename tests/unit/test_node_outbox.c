/* node_outbox: sending and the sent message's state machine
 * (client/outbox.h), on a node without its main loop (fixture_node.h: real
 * identity, directory, store, witness, local API, and a link to a broker's
 * end bound here, which reads the node's submits). The broker's answers are
 * made here: its log is a Merkle log written by the test, its checkpoints
 * signed with the broker's real log key, its acks real LeafProofs; the
 * expired outbox entry and the receipts are made with real keys too.
 *
 * queued (stored durably, then submitted) -> accepted only on a proof that
 * holds against a checkpoint the node took, of exactly this message's
 * "submitted" record; its reject twins change nothing: a proof against a
 * size the node does not keep (no alarm: it comes again), a path that does
 * not hold, a proof of another message of this node for this submit, of
 * another envelope under this msg_id, of another node's message, of a
 * record that is no submit (alarms, the frame kept as evidence). queued ->
 * refused on a final refusal (twin: STORE_FULL and DIRECTORY_STALE leave it
 * queued), -> accepted also on a DUPLICATE carrying the proof, -> expired
 * when a resend pass finds it past expires_at (twin: one not expired is
 * resent, the same bytes). A receipt notice proven with the recipient's
 * signature marks the recipient and is confirmed (twins: a receipt signed
 * by another node, or naming another envelope, is an alarm, not recorded,
 * not confirmed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <jansson.h>

#include "alarm.h"
#include "dirs.h"
#include "envelope.h"
#include "fixture.h"
#include "fixture_forge.h"
#include "fixture_node.h"
#include "nodestore.h"
#include "outbox.h"
#include "pb.h"
#include "receipt.h"
#include "sha256.h"
#include "signal_json.h"
#include "store.h"
#include "util.h"
#include "witness.h"

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "charlie:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"

typedef struct sent {
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint64_t rid; /* the submit's request id */
    uint8_t *env;
    size_t len;
    uint64_t leaf; /* its submitted record */
} sent;

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
    flog *log;
    sent s[4];
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->node = &t->fn->node;
    fnode_connect(t->fn);
    t->log = flog_new(t->fx, "log");
    flog_pad(t->log, 1);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    for (size_t i = 0; i < sizeof t->s / sizeof t->s[0]; i++) {
        free(t->s[i].env);
    }
    flog_destroy(&t->log);
    fnode_destroy(&t->fn);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/* Send to `to`; the Submit the broker's end got; its submitted record in the
 * broker's log. */
static sent *send_to(ctx *t, size_t i, const char *to)
{
    sent *s = &t->s[i];
    keten_outbox_send_req req = {
        .to = to,
        .kind = KETEN__KIND__KIND_SIGNAL,
        .json = SIGNAL,
        .json_len = strlen(SIGNAL),
    };
    assert_int_equal(keten_outbox_send(t->node, &req, s->id), KETEN_OK);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
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
    s->leaf = flog_submitted(t->log, s->env, s->len);
    return s;
}

static Keten__SentRecord *record(ctx *t, const uint8_t *id)
{
    Keten__SentRecord *rec = NULL;
    assert_int_equal(keten_outbox_record(t->node, id, &rec), KETEN_OK);
    return rec;
}

static Keten__SentState state_of(ctx *t, const uint8_t *id)
{
    Keten__SentRecord *rec = record(t, id);
    Keten__SentState st = rec->state;
    keten_nodestore_sent_free(&rec);
    return st;
}

static bool in_outbox(ctx *t, const uint8_t *id)
{
    MDB_txn *txn = NULL;
    MDB_val v;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    keten_err e = keten_store_get(t->node->store, txn, KETEN_DB_OUTBOX, id, KETEN_MSG_ID_BYTES, &v);
    keten_store_abort(&txn);
    keten_err_clear();
    return e == KETEN_OK;
}

/* The node takes the broker's checkpoint of its whole log. */
static uint64_t checkpoint(ctx *t)
{
    uint64_t size = flog_size(t->log);
    fnode_checkpoint(t->fn, t->log, keten_witness_reference_size(t->node), size, false);
    assert_int_equal(keten_witness_reference_size(t->node), size);
    return size;
}

static void ack(ctx *t, uint64_t rid, const Keten__LeafProof *p)
{
    Keten__SubmitAck a = KETEN__SUBMIT_ACK__INIT;
    a.proof = (Keten__LeafProof *)p;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = rid;
    f.body_case = KETEN__FRAME__BODY_SUBMIT_ACK;
    f.submit_ack = &a;
    fnode_frame(t->fn, &f);
    keten_outbox_on_ack(t->node, rid, &a);
    fnode_frame(t->fn, NULL);
}

static void ack_leaf(ctx *t, uint64_t rid, uint64_t leaf, uint64_t size)
{
    flog_proof *p = flog_proof_new(t->log, leaf, size);
    ack(t, rid, &p->buf.msg);
    flog_proof_free(&p);
}

static void refuse(ctx *t, uint64_t rid, const uint8_t *id, Keten__Reason reason, uint32_t rule,
    const Keten__LeafProof *proof)
{
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = reason;
    if (id != NULL) {
        err.msg_id.data = (uint8_t *)id;
        err.msg_id.len = KETEN_MSG_ID_BYTES;
    }
    err.detail = (char *)"the broker's detail";
    err.rule = rule;
    err.proof = (Keten__LeafProof *)proof;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = rid;
    f.body_case = KETEN__FRAME__BODY_ERROR;
    f.error = &err;
    fnode_frame(t->fn, &f);
    keten_outbox_on_error(t->node, rid, &err);
    fnode_frame(t->fn, NULL);
}

/* Still queued, in the outbox, and resent as the same bytes. */
static void expect_queued(ctx *t, const sent *s)
{
    assert_int_equal(state_of(t, s->id), KETEN__SENT_STATE__SENT_STATE_QUEUED);
    assert_true(in_outbox(t, s->id));
}

/* ---- queued ------------------------------------------------------------------ */

static void test_queued(void **state)
{
    ctx *t = *state;
    sent *s = send_to(t, 0, "bravo,charlie");
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_QUEUED);
    assert_int_equal(rec->envelope.len, s->len);
    assert_memory_equal(rec->envelope.data, s->env, s->len); /* what was submitted */
    assert_int_equal(rec->n_recipients, 2);
    assert_string_equal(rec->recipients[0]->id, "bravo");
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING);
    keten_nodestore_sent_free(&rec);
    assert_true(in_outbox(t, s->id));

    /* Twin: a node that must fail closed (a checkpoint named a directory it
     * does not have) stores and sends nothing. */
    t->node->dir_needed = 2;
    keten_outbox_send_req req = {
        .to = "bravo", .kind = KETEN__KIND__KIND_SIGNAL, .json = SIGNAL, .json_len = strlen(SIGNAL)
    };
    uint8_t id[KETEN_MSG_ID_BYTES];
    assert_int_equal(keten_outbox_send(t->node, &req, id), KETEN_ERR_ROLLBACK);
    keten_err_clear();
    fnode_expect_nothing_more(t->fn);
    size_t n = 0;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_store_count(t->node->store, txn, KETEN_DB_SENT, &n), KETEN_OK);
    keten_store_abort(&txn);
    assert_int_equal(n, 1);
}

/* ---- accepted -------------------------------------------------------------- */

static void test_accepted_on_valid_proof(void **state)
{
    ctx *t = *state;
    sent *s = send_to(t, 0, "bravo,charlie");
    uint64_t size = checkpoint(t);
    ack_leaf(t, s->rid, s->leaf, size);
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(rec->leaf_index, s->leaf);
    assert_int_equal(rec->tree_size, size);
    assert_true(rec->accepted_at > 0);
    assert_int_equal(rec->envelope.len, 0); /* its hash and header instead */
    uint8_t hash[KETEN_HASH_BYTES];
    keten_sha256(hash, s->env, s->len);
    assert_int_equal(rec->envelope_hash.len, KETEN_HASH_BYTES);
    assert_memory_equal(rec->envelope_hash.data, hash, KETEN_HASH_BYTES);
    for (size_t i = 0; i < rec->n_recipients; i++) {
        assert_int_equal(
            rec->recipients[i]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    }
    keten_nodestore_sent_free(&rec);
    assert_false(in_outbox(t, s->id));
    assert_int_equal(t->node->counters.sent, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* The same proof again (a resend's DUPLICATE): nothing changes. */
    flog_proof *p = flog_proof_new(t->log, s->leaf, size);
    refuse(t, s->rid, s->id, KETEN__REASON__REASON_DUPLICATE, 0, &p->buf.msg);
    ack(t, s->rid, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(state_of(t, s->id), KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(t->node->counters.sent, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);
}

static void set_created_later(Keten__Header *h, void *arg)
{
    (void)arg;
    h->created_at += 1;
}

/* Everything that is not the proof of this message's record. */
static void test_ack_reject_twins(void **state)
{
    ctx *t = *state;
    sent *a = send_to(t, 0, "bravo");
    sent *b = send_to(t, 1, "charlie");
    size_t other_len = 0, forged_len = 0;
    uint8_t *other = fixture_seal(t->fx, "bravo", "charlie", SIGNAL, NULL, &other_len);
    uint64_t bravos = flog_submitted(t->log, other, other_len);
    uint8_t *forged
        = forge_envelope(a->env, a->len, t->node->me, set_created_later, NULL, &forged_len);
    uint64_t a_again = flog_submitted(t->log, forged, forged_len);
    uint64_t size = checkpoint(t);

    /* Against a tree the node does not keep: not judged, no alarm. */
    flog_pad(t->log, 1);
    ack_leaf(t, a->rid, a->leaf, size + 1);
    assert_int_equal(t->node->counters.proofs_unknown, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);
    expect_queued(t, a);

    size_t alarms = 0;
    /* A path that does not lead to the root. */
    flog_proof *p = flog_proof_new(t->log, a->leaf, size);
    p->buf.path[0][3] ^= 0x10;
    ack(t, a->rid, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    /* a's submit answered with the proof of b's record: both stay. */
    ack_leaf(t, a->rid, b->leaf, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    expect_queued(t, b);
    /* The record of another envelope under a's msg_id. */
    ack_leaf(t, a->rid, a_again, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    /* Another node's message, for no submit the node remembers. */
    ack_leaf(t, 0, bravos, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    /* A record that is no submit at all. */
    ack_leaf(t, 0, 0, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    assert_int_equal(fnode_evidence(t->fn), alarms);
    expect_queued(t, a);
    expect_queued(t, b);
    assert_int_equal(t->node->counters.sent, 0);

    /* Twins: each with its own proof. */
    ack_leaf(t, a->rid, a->leaf, size);
    ack_leaf(t, b->rid, b->leaf, size);
    assert_int_equal(state_of(t, a->id), KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(state_of(t, b->id), KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(fnode_alarms(t->fn), alarms);
    free(other);
    free(forged);
}

/* ---- refused ----------------------------------------------------------------- */

static void test_refused(void **state)
{
    ctx *t = *state;
    sent *a = send_to(t, 0, "bravo");
    sent *b = send_to(t, 1, "bravo");
    sent *c = send_to(t, 2, "bravo");

    refuse(t, a->rid, a->id, KETEN__REASON__REASON_POLICY, 7, NULL);
    Keten__SentRecord *rec = record(t, a->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_REFUSED);
    assert_int_equal(rec->reason, KETEN__REASON__REASON_POLICY);
    assert_int_equal(rec->rule, 7);
    assert_string_equal(rec->detail, "the broker's detail");
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING);
    keten_nodestore_sent_free(&rec);
    assert_false(in_outbox(t, a->id));
    assert_int_equal(t->node->counters.refused, 1);

    /* Twins: a passing refusal leaves it queued (resent), with the reason. */
    refuse(t, b->rid, b->id, KETEN__REASON__REASON_STORE_FULL, 0, NULL);
    expect_queued(t, b);
    rec = record(t, b->id);
    assert_int_equal(rec->reason, KETEN__REASON__REASON_STORE_FULL);
    keten_nodestore_sent_free(&rec);
    refuse(t, b->rid, b->id, KETEN__REASON__REASON_DIRECTORY_STALE, 0, NULL);
    expect_queued(t, b);
    assert_int_equal(t->node->counters.refused, 1);
    /* ... and is accepted once proven. */
    uint64_t size = checkpoint(t);
    ack_leaf(t, b->rid, b->leaf, size);
    assert_int_equal(state_of(t, b->id), KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    /* A refusal of a message that is no longer queued changes nothing. */
    refuse(t, b->rid, b->id, KETEN__REASON__REASON_POLICY, 3, NULL);
    assert_int_equal(state_of(t, b->id), KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    /* A DUPLICATE carrying the proof of its record is an ack. */
    flog_proof *p = flog_proof_new(t->log, c->leaf, size);
    refuse(t, c->rid, c->id, KETEN__REASON__REASON_DUPLICATE, 0, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(state_of(t, c->id), KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(t->node->counters.refused, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);
}

/* ---- expired ----------------------------------------------------------------- */

static void put_queued(ctx *t, const uint8_t *id, uint8_t *env, size_t len, const char *to)
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
    keten_store *st = t->node->store;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_store_put(st, txn, KETEN_DB_OUTBOX, id, KETEN_MSG_ID_BYTES, "", 0), KETEN_OK);
    assert_int_equal(keten_nodestore_sent_put(st, txn, &rec), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
}

static void test_expired(void **state)
{
    ctx *t = *state;
    sent *fresh = send_to(t, 0, "bravo");
    /* Sealed with a life of 1 ms and put in the outbox by hand, as if the
     * node had been down since. */
    Keten__Signal *sig = NULL;
    assert_int_equal(keten_signal_json_parse(SIGNAL, strlen(SIGNAL), &sig), KETEN_OK);
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    assert_int_equal(keten_signal_json_pack(sig, &payload, &payload_len), KETEN_OK);
    uint64_t now = keten_now_ms();
    keten_envelope_seal_params params = { .kind = KETEN__KIND__KIND_SIGNAL,
        .category = sig->type,
        .purpose = sig->purpose,
        .created_at = now,
        .expires_at = now + 1 };
    const char *to[] = { "bravo" };
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint8_t *env = NULL;
    size_t len = 0;
    assert_int_equal(keten_envelope_seal(t->node->me, t->node->dir, to, 1, &params, payload,
                         payload_len, id, &env, &len),
        KETEN_OK);
    free(payload);
    keten_signal_json_free(&sig);
    put_queued(t, id, env, len, "bravo");
    struct timespec pause = { 0, 5 * 1000 * 1000 }; /* time under test: its 1 ms life passes */
    nanosleep(&pause, NULL);

    keten_outbox_submit_all(t->node);
    Keten__SentRecord *rec = record(t, id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_EXPIRED);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED);
    assert_int_equal(rec->envelope.len, 0);
    keten_nodestore_sent_free(&rec);
    assert_false(in_outbox(t, id));

    /* Twin: the one not expired was submitted again, the same bytes, and
     * stays queued; the expired one was not. */
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->submit->envelope.len, fresh->len);
    assert_memory_equal(f->submit->envelope.data, fresh->env, fresh->len);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    fnode_expect_nothing_more(t->fn);
    expect_queued(t, fresh);
    free(env);
}

/* An outbox entry whose record cannot be read (one byte of it flipped on
 * disk) is never resent: logged, counted in status, and taken out of the
 * outbox, so the next pass does not meet it again; its record stays for the
 * operator. Twin: the readable entry beside it is resent, stays queued. */
static void test_unreadable_not_resent(void **state)
{
    ctx *t = *state;
    sent *fresh = send_to(t, 0, "bravo");
    sent *bad = send_to(t, 1, "charlie");
    keten_store *st = t->node->store;
    MDB_txn *txn = NULL;
    MDB_val v;
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_store_get(st, txn, KETEN_DB_SENT, bad->id, KETEN_MSG_ID_BYTES, &v), KETEN_OK);
    uint8_t *copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size / 2] ^= 0x01;
    assert_int_equal(
        keten_store_put(st, txn, KETEN_DB_SENT, bad->id, KETEN_MSG_ID_BYTES, copy, v.mv_size),
        KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    free(copy);
    assert_int_equal(t->node->counters.store_errors, 0);

    keten_outbox_submit_all(t->node);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    assert_memory_equal(f->submit->envelope.data, fresh->env, fresh->len);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    fnode_expect_nothing_more(t->fn);
    assert_int_equal(t->node->counters.store_errors, 1);
    assert_false(in_outbox(t, bad->id));
    expect_queued(t, fresh);
    /* Its record is still there, still damaged: not rewritten. */
    Keten__SentRecord *rec = NULL;
    assert_int_equal(keten_outbox_record(t->node, bad->id, &rec), KETEN_ERR_MALFORMED);
    keten_err_clear();

    /* The next pass does not meet it again. */
    keten_outbox_submit_all(t->node);
    f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    assert_memory_equal(f->submit->envelope.data, fresh->env, fresh->len);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    fnode_expect_nothing_more(t->fn);
    assert_int_equal(t->node->counters.store_errors, 1);
}

/* ---- receipt notices ---------------------------------------------------------- */

/* The "receipted" record of message s by recipient, its receipt signed by
 * signer (the recipient, or not) and naming s's envelope (or, other_envelope,
 * another one), appended to the broker's log. */
static uint64_t log_receipt_by(ctx *t, const sent *s, const char *recipient, const char *signer,
    const Keten__NodeCert *cert, uint64_t stored_at, bool other_envelope)
{
    const keten_directory *dir = t->node->dir;
    keten_receipt_item it;
    memset(&it, 0, sizeof it);
    memcpy(it.msg_id, s->id, KETEN_MSG_ID_BYTES);
    keten_sha256(it.envelope_hash, s->env, s->len);
    if (other_envelope) {
        it.envelope_hash[0] ^= 1;
    }
    it.outcome = KETEN__OUTCOME__OUTCOME_STORED;
    keten_receipt_batch *rb = NULL;
    assert_int_equal(keten_receipt_batch_new(fixture_node(t->fx, signer),
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
    rec.sender = t->node->me->id;
    rec.node = (char *)recipient;
    rec.n_recipients = 1;
    rec.recipients = rcpt;
    rec.receipt = &pb.msg;
    rec.directory_version = 1;
    uint64_t leaf = flog_append(t->log, &rec);
    keten_receipt_proof_buf_clear(&pb);
    free(leaf_hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    keten_receipt_batch_destroy(&rb);
    return leaf;
}

static uint64_t log_receipt(
    ctx *t, const sent *s, const char *recipient, const char *signer, bool other_envelope)
{
    const Keten__NodeCert *cert = keten_directory_find_id(t->node->dir, signer);
    return log_receipt_by(t, s, recipient, signer, cert, keten_now_ms(), other_envelope);
}

static void notice(ctx *t, uint64_t leaf, uint64_t size)
{
    flog_proof *p = flog_proof_new(t->log, leaf, size);
    Keten__ReceiptNotice n = KETEN__RECEIPT_NOTICE__INIT;
    n.proof = &p->buf.msg;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_RECEIPT_NOTICE;
    f.receipt_notice = &n;
    fnode_frame(t->fn, &f);
    keten_outbox_on_receipt_notice(t->node, &n);
    fnode_frame(t->fn, NULL);
    flog_proof_free(&p);
}

static void test_receipt_notice(void **state)
{
    ctx *t = *state;
    sent *s = send_to(t, 0, "bravo,charlie");
    uint64_t forged = log_receipt(t, s, "bravo", "charlie", false); /* signed by charlie */
    uint64_t other = log_receipt(t, s, "bravo", "bravo", true); /* of another envelope */
    uint64_t real = log_receipt(t, s, "bravo", "bravo", false);
    uint64_t size = checkpoint(t);
    ack_leaf(t, s->rid, s->leaf, size);

    notice(t, forged, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    notice(t, other, size);
    assert_int_equal(fnode_alarms(t->fn), 2);
    assert_int_equal(fnode_evidence(t->fn), 2);
    assert_int_equal(t->node->n_notice_acks, 0); /* not confirmed: the broker sends them again */
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);

    notice(t, real, size);
    rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    assert_true(rec->recipients[0]->stored_at > 0);
    assert_int_equal(rec->recipients[0]->receipt_leaf, real);
    assert_int_equal(rec->recipients[1]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.receipts, 1);
    assert_int_equal(fnode_alarms(t->fn), 2);

    /* Confirmed to the broker at the next tick; sent again, confirmed again
     * without a second record. */
    notice(t, real, size);
    assert_int_equal(t->node->counters.receipts, 1);
    assert_int_equal(t->node->n_notice_acks, 2);
    keten_outbox_tick(t->node);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_NOTICE_ACK, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->notice_ack->n_leaf_indexes, 2);
    assert_int_equal(f->notice_ack->leaf_indexes[0], real);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

/* ---- receipts after a revocation ------------------------------------------- */

/* The kind of the last alarm stored. */
static void expect_last_alarm(ctx *t, const char *kind)
{
    json_t *alarms = NULL;
    assert_int_equal(keten_alarm_list(t->node, &alarms), KETEN_OK);
    size_t n = json_array_size(alarms);
    assert_true(n > 0);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(alarms, n - 1), "kind")), kind);
    json_decref(alarms);
}

/* Which receipts count after a revocation: one by a certificate revoked for
 * another reason counts if it was stored before the revocation (twin) and
 * not if dated after; one by a key revoked for compromise never counts,
 * whatever its date. Those that do not count are an alarm
 * (revoked-receipt), not recorded, not confirmed. */
static void test_receipts_after_revocation(void **state)
{
    ctx *t = *state;
    sent *s = send_to(t, 0, "bravo,charlie");
    const Keten__NodeCert *b = keten_directory_find_id(t->node->dir, "bravo");
    const Keten__NodeCert *c = keten_directory_find_id(t->node->dir, "charlie");
    assert_non_null(b);
    assert_non_null(c);
    uint64_t b_serial = b->serial, c_serial = c->serial;
    uint64_t before = keten_now_ms();
    uint64_t b_before = log_receipt_by(t, s, "bravo", "bravo", b, before, false);
    uint64_t c_before = log_receipt_by(t, s, "charlie", "charlie", c, before, false);

    uint64_t at = before + 1000;
    assert_int_equal(
        keten_dirbuild_revoke(t->fx->draft, "bravo", "left the network", at), KETEN_OK);
    assert_int_equal(
        keten_dirbuild_revoke(t->fx->draft, "charlie", "key-compromise: laptop stolen", at),
        KETEN_OK);
    size_t len = 0;
    uint8_t *sd = fixture_publish(t->fx, &len);
    ProtobufCBinaryData chain = { len, sd };
    Keten__DirectoryPush push = KETEN__DIRECTORY_PUSH__INIT;
    push.n_chain = 1;
    push.chain = &chain;
    assert_int_equal(keten_dirs_on_push(t->node, &push), KETEN_OK);
    free(sd);
    assert_null(keten_directory_find_id(t->node->dir, "bravo"));
    const Keten__Revocation *rb
        = keten_directory_find_revoked_serial(t->node->dir, "bravo", b_serial);
    const Keten__Revocation *rc
        = keten_directory_find_revoked_serial(t->node->dir, "charlie", c_serial);
    assert_non_null(rb);
    assert_non_null(rc);
    assert_false(keten_directory_revocation_compromised(rb));
    assert_true(keten_directory_revocation_compromised(rc));
    /* Signed with bravo's revoked key, dated after its revocation. */
    uint64_t b_after = log_receipt_by(t, s, "bravo", "bravo", rb->cert, at + 1, false);
    uint64_t size = checkpoint(t);
    ack_leaf(t, s->rid, s->leaf, size);

    notice(t, c_before, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    expect_last_alarm(t, "revoked-receipt");
    notice(t, b_after, size);
    assert_int_equal(fnode_alarms(t->fn), 2);
    expect_last_alarm(t, "revoked-receipt");
    assert_int_equal(fnode_evidence(t->fn), 2);
    assert_int_equal(t->node->n_notice_acks, 0);
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    assert_int_equal(rec->recipients[1]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.receipts, 0);

    /* Twin: bravo's receipt stored before the revocation counts. */
    notice(t, b_before, size);
    rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    assert_int_equal(rec->recipients[0]->stored_at, before);
    assert_int_equal(rec->recipients[1]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.receipts, 1);
    assert_int_equal(t->node->n_notice_acks, 1);
    assert_int_equal(fnode_alarms(t->fn), 2);
}

/* Publish the draft as the next version, valid for valid_ms, and push it to
 * the node as the broker would. */
static void push_next(ctx *t, uint64_t valid_ms)
{
    size_t len = 0;
    uint8_t *sd = fixture_publish_valid(t->fx, valid_ms, &len);
    ProtobufCBinaryData chain = { len, sd };
    Keten__DirectoryPush push = KETEN__DIRECTORY_PUSH__INIT;
    push.n_chain = 1;
    push.chain = &chain;
    assert_int_equal(keten_dirs_on_push(t->node, &push), KETEN_OK);
    free(sd);
}

/* Past the directory's expiry a forwarded receipt is not taken (a
 * revocation of its signer may be withheld): not recorded, not confirmed,
 * counted as held. Twin: after a fresh version (the node says Hello, so
 * the broker sends its notices again) the same notice is recorded. */
static void test_no_receipt_past_expiry(void **state)
{
    ctx *t = *state;
    sent *s = send_to(t, 0, "bravo");
    uint64_t real = log_receipt(t, s, "bravo", "bravo", false);
    uint64_t size = checkpoint(t);
    ack_leaf(t, s->rid, s->leaf, size);
    push_next(t, 1000);
    struct timespec pause = { 0, 20 * 1000 * 1000 }; /* time under test: the version expires */
    for (int i = 0; i < 250 && keten_directory_fresh(t->node->dir, keten_now_ms()); i++) {
        nanosleep(&pause, NULL);
    }
    assert_false(keten_directory_fresh(t->node->dir, keten_now_ms()));

    notice(t, real, size);
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->n_notice_acks, 0);
    assert_int_equal(t->node->counters.receipts, 0);
    assert_int_equal(t->node->held_deliveries, 1);
    assert_int_equal(fnode_alarms(t->fn), 1);
    expect_last_alarm(t, "directory-expired");

    push_next(t, 3600000);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_HELLO, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    notice(t, real, size);
    rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.receipts, 1);
    assert_int_equal(t->node->n_notice_acks, 1);
    assert_int_equal(fnode_alarms(t->fn), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accepted_on_valid_proof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_reject_twins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_not_resent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipt_notice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipts_after_revocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_receipt_past_expiry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
