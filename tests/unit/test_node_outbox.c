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

typedef fnode_bed ctx;
typedef fnode_sent sent;

static int setup(void **state)
{
    *state = fnode_bed_new(fixture_new(1, 1, specs), "alpha", "hub");
    return 0;
}

static int teardown(void **state)
{
    fnode_bed_destroy((ctx **)state);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/* Send SIGNAL to `to` (fnode_bed_send). */
static sent *send_to(ctx *t, const char *to)
{
    return fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, to, SIGNAL);
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
    sent *s = send_to(t, "bravo,charlie");
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
    sent *s = send_to(t, "bravo,charlie");
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);
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
    fnode_bed_ack(t, s->rid, &p->buf.msg);
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
    sent *a = send_to(t, "bravo");
    sent *b = send_to(t, "charlie");
    size_t other_len = 0, forged_len = 0;
    uint8_t *other = fixture_seal(t->fx, "bravo", "charlie", SIGNAL, NULL, &other_len);
    uint64_t bravos = flog_submitted(t->log, other, other_len);
    uint8_t *forged
        = forge_envelope(a->env, a->len, t->node->me, set_created_later, NULL, &forged_len);
    uint64_t a_again = flog_submitted(t->log, forged, forged_len);
    uint64_t size = fnode_bed_checkpoint(t);

    /* Against a tree the node does not keep: not judged, no alarm. */
    flog_pad(t->log, 1);
    fnode_bed_ack_leaf(t, a->rid, a->leaf, size + 1);
    assert_int_equal(t->node->counters.proofs_unknown, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);
    expect_queued(t, a);

    size_t alarms = 0;
    /* A path that does not lead to the root. */
    flog_proof *p = flog_proof_new(t->log, a->leaf, size);
    p->buf.path[0][3] ^= 0x10;
    fnode_bed_ack(t, a->rid, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    /* a's submit answered with the proof of b's record: both stay. */
    fnode_bed_ack_leaf(t, a->rid, b->leaf, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    expect_queued(t, b);
    /* The record of another envelope under a's msg_id. */
    fnode_bed_ack_leaf(t, a->rid, a_again, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    /* Another node's message, for no submit the node remembers. */
    fnode_bed_ack_leaf(t, 0, bravos, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    /* A record that is no submit at all. */
    fnode_bed_ack_leaf(t, 0, 0, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    assert_int_equal(fnode_evidence(t->fn), alarms);
    expect_queued(t, a);
    expect_queued(t, b);
    assert_int_equal(t->node->counters.sent, 0);

    /* Twins: each with its own proof. */
    fnode_bed_ack_leaf(t, a->rid, a->leaf, size);
    fnode_bed_ack_leaf(t, b->rid, b->leaf, size);
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
    sent *a = send_to(t, "bravo");
    sent *b = send_to(t, "bravo");
    sent *c = send_to(t, "bravo");

    /* A final refusal with the proof of its rejected record. */
    uint64_t rej = fnode_bed_log_rejected(t, a->id, "alpha", KETEN__REASON__REASON_POLICY, 7);
    uint64_t rsize = fnode_bed_checkpoint(t);
    flog_proof *rp = flog_proof_new(t->log, rej, rsize);
    refuse(t, a->rid, a->id, KETEN__REASON__REASON_POLICY, 7, &rp->buf.msg);
    flog_proof_free(&rp);
    Keten__SentRecord *rec = record(t, a->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_REFUSED);
    assert_int_equal(rec->reason, KETEN__REASON__REASON_POLICY);
    assert_int_equal(rec->rule, 7);
    assert_int_equal(rec->leaf_index, rej);
    assert_int_equal(rec->tree_size, rsize);
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
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, b->rid, b->leaf, size);
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

static void test_expired(void **state)
{
    ctx *t = *state;
    sent *fresh = send_to(t, "bravo");
    /* Sealed with a life of 1 ms and put in the outbox by hand, as if the
     * node had been down since. */
    fnode_seal_opts o = { .kind = KETEN__KIND__KIND_SIGNAL, .life_ms = 1 };
    uint8_t id[KETEN_MSG_ID_BYTES];
    size_t len = 0;
    uint8_t *env = fnode_seal(t->node->me, t->node->dir, "bravo", SIGNAL, &o, id, &len);
    fnode_bed_put_queued(t, id, env, len, "bravo");
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
    sent *fresh = send_to(t, "bravo");
    sent *bad = send_to(t, "charlie");
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

static uint64_t log_receipt(
    ctx *t, const sent *s, const char *recipient, const char *signer, bool other_envelope)
{
    const Keten__NodeCert *cert = keten_directory_find_id(t->node->dir, signer);
    return fnode_bed_log_receipt(t, s, recipient, signer, cert, keten_now_ms(), other_envelope);
}

static void test_receipt_notice(void **state)
{
    ctx *t = *state;
    sent *s = send_to(t, "bravo,charlie");
    uint64_t forged = log_receipt(t, s, "bravo", "charlie", false); /* signed by charlie */
    uint64_t other = log_receipt(t, s, "bravo", "bravo", true); /* of another envelope */
    uint64_t real = log_receipt(t, s, "bravo", "bravo", false);
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);

    fnode_bed_receipt_notice(t, forged, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    fnode_bed_receipt_notice(t, other, size);
    assert_int_equal(fnode_alarms(t->fn), 2);
    assert_int_equal(fnode_evidence(t->fn), 2);
    assert_int_equal(t->node->n_notice_acks, 0); /* not confirmed: the broker sends them again */
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);

    fnode_bed_receipt_notice(t, real, size);
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
    fnode_bed_receipt_notice(t, real, size);
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
    sent *s = send_to(t, "bravo,charlie");
    const Keten__NodeCert *b = keten_directory_find_id(t->node->dir, "bravo");
    const Keten__NodeCert *c = keten_directory_find_id(t->node->dir, "charlie");
    assert_non_null(b);
    assert_non_null(c);
    uint64_t b_serial = b->serial, c_serial = c->serial;
    uint64_t before = keten_now_ms();
    uint64_t b_before = fnode_bed_log_receipt(t, s, "bravo", "bravo", b, before, false);
    uint64_t c_before = fnode_bed_log_receipt(t, s, "charlie", "charlie", c, before, false);

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
    uint64_t b_after = fnode_bed_log_receipt(t, s, "bravo", "bravo", rb->cert, at + 1, false);
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);

    fnode_bed_receipt_notice(t, c_before, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    expect_last_alarm(t, "revoked-receipt");
    fnode_bed_receipt_notice(t, b_after, size);
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
    fnode_bed_receipt_notice(t, b_before, size);
    rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    assert_int_equal(rec->recipients[0]->stored_at, before);
    assert_int_equal(rec->recipients[1]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.receipts, 1);
    assert_int_equal(t->node->n_notice_acks, 1);
    assert_int_equal(fnode_alarms(t->fn), 2);
}

/* Past the directory's expiry a forwarded receipt is not taken (a
 * revocation of its signer may be withheld): not recorded, not confirmed,
 * counted as held. Twin: after a fresh version (the node says Hello, so
 * the broker sends its notices again) the same notice is recorded. */
static void test_no_receipt_past_expiry(void **state)
{
    ctx *t = *state;
    sent *s = send_to(t, "bravo");
    uint64_t real = log_receipt(t, s, "bravo", "bravo", false);
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);
    fnode_bed_push_next(t, 1000);
    struct timespec pause = { 0, 20 * 1000 * 1000 }; /* time under test: the version expires */
    for (int i = 0; i < 250 && keten_directory_fresh(t->node->dir, keten_now_ms()); i++) {
        nanosleep(&pause, NULL);
    }
    assert_false(keten_directory_fresh(t->node->dir, keten_now_ms()));

    fnode_bed_receipt_notice(t, real, size);
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->n_notice_acks, 0);
    assert_int_equal(t->node->counters.receipts, 0);
    assert_int_equal(t->node->held_deliveries, 1);
    assert_int_equal(fnode_alarms(t->fn), 1);
    expect_last_alarm(t, "directory-expired");

    fnode_bed_push_next(t, 3600000);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_HELLO, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    fnode_bed_receipt_notice(t, real, size);
    rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.receipts, 1);
    assert_int_equal(t->node->n_notice_acks, 1);
    assert_int_equal(fnode_alarms(t->fn), 1);
}

/* ---- refusals are proofs ------------------------------------------------------ */

/* Refused: the proof of rejected record leaf (tree size) for s, POLICY rule. */
static void refuse_proven(
    ctx *t, const sent *s, Keten__Reason reason, uint32_t rule, uint64_t leaf, uint64_t size)
{
    fnode_bed_refusal_leaf(t, s->rid, s->id, reason, rule, leaf, size);
}

static void expect_refused(
    ctx *t, const sent *s, Keten__Reason reason, uint32_t rule, uint64_t leaf)
{
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_REFUSED);
    assert_int_equal(rec->reason, reason);
    assert_int_equal(rec->rule, rule);
    assert_int_equal(rec->leaf_index, leaf);
    assert_true(rec->tree_size > leaf);
    keten_nodestore_sent_free(&rec);
    assert_false(in_outbox(t, s->id));
}

/* A final refusal without a proof, or proven against a checkpoint the node
 * does not keep: not recorded; the message stays queued with the broker's
 * reason and detail and goes out again on the next pass; said and counted
 * once per message and reason; no alarm. Twin: the proof of its rejected
 * record refuses it, with its rule. */
static void test_refusal_unproven(void **state)
{
    ctx *t = *state;
    sent *a = send_to(t, "bravo"); /* its submit was read by the broker's end */
    refuse(t, a->rid, a->id, KETEN__REASON__REASON_POLICY, 4, NULL);
    refuse(t, a->rid, a->id, KETEN__REASON__REASON_POLICY, 4, NULL);
    expect_queued(t, a);
    Keten__SentRecord *rec = record(t, a->id);
    assert_int_equal(rec->reason, KETEN__REASON__REASON_POLICY);
    assert_int_equal(rec->rule, 4);
    assert_string_equal(rec->detail, "the broker's detail");
    assert_int_equal(rec->tree_size, 0);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.refused, 0);
    assert_int_equal(t->node->counters.refusals_unproven, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* Against a tree size the node has no checkpoint of. */
    uint64_t rej = fnode_bed_log_rejected(t, a->id, "alpha", KETEN__REASON__REASON_UNREGISTERED, 0);
    refuse_proven(t, a, KETEN__REASON__REASON_UNREGISTERED, 0, rej, flog_size(t->log));
    expect_queued(t, a);
    assert_int_equal(t->node->counters.refusals_unproven, 2);
    assert_int_equal(t->node->counters.proofs_unknown, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* It goes out again, the same bytes, on the next pass. */
    keten_outbox_submit_all(t->node);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->submit->envelope.len, a->len);
    assert_memory_equal(f->submit->envelope.data, a->env, a->len);
    keten_pb_free((ProtobufCMessage **)(void *)&f);

    /* Twin: the proof, now that the node holds the checkpoint. */
    uint64_t size = fnode_bed_checkpoint(t);
    refuse_proven(t, a, KETEN__REASON__REASON_UNREGISTERED, 0, rej, size);
    expect_refused(t, a, KETEN__REASON__REASON_UNREGISTERED, 0, rej);
    assert_int_equal(t->node->counters.refused, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);
}

/* A refusal whose proof holds but proves another record: the rejected
 * record of another message, of another sender, with another reason or
 * rule; a submitted record; a proof that does not hold. Each: alarm
 * bad-proof with the frame kept, the message stays queued. Twin: the
 * proof of its own rejected record refuses it (POLICY, rule 2). */
static void test_refusal_lies(void **state)
{
    ctx *t = *state;
    sent *a = send_to(t, "bravo");
    sent *b = send_to(t, "bravo");
    uint64_t of_b = fnode_bed_log_rejected(t, b->id, "alpha", KETEN__REASON__REASON_POLICY, 2);
    uint64_t of_other
        = fnode_bed_log_rejected(t, a->id, "charlie", KETEN__REASON__REASON_POLICY, 2);
    uint64_t no_id = fnode_bed_log_rejected(t, NULL, "alpha", KETEN__REASON__REASON_POLICY, 2);
    uint64_t reason
        = fnode_bed_log_rejected(t, a->id, "alpha", KETEN__REASON__REASON_UNREGISTERED, 0);
    uint64_t rule = fnode_bed_log_rejected(t, a->id, "alpha", KETEN__REASON__REASON_POLICY, 5);
    uint64_t real = fnode_bed_log_rejected(t, a->id, "alpha", KETEN__REASON__REASON_POLICY, 2);
    uint64_t size = fnode_bed_checkpoint(t);
    const uint64_t lies[] = { of_b, of_other, no_id, reason, rule, a->leaf /* submitted */ };
    size_t alarms = 0;
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        refuse_proven(t, a, KETEN__REASON__REASON_POLICY, 2, lies[i], size);
        assert_int_equal(fnode_alarms(t->fn), ++alarms);
        assert_int_equal(fnode_evidence(t->fn), alarms);
        expect_queued(t, a);
    }
    /* The proof of b's record answering the submit of a, naming b. */
    fnode_bed_refusal_leaf(t, a->rid, b->id, KETEN__REASON__REASON_POLICY, 2, of_b, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    expect_queued(t, b);
    /* A path that does not lead to the root. */
    flog_proof *p = flog_proof_new(t->log, real, size);
    p->buf.msg.leaf_index = rule;
    fnode_bed_refusal(t, a->rid, a->id, KETEN__REASON__REASON_POLICY, 2, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    expect_queued(t, a);
    assert_int_equal(t->node->counters.refused, 0);

    /* Twins. */
    refuse_proven(t, a, KETEN__REASON__REASON_POLICY, 2, real, size);
    expect_refused(t, a, KETEN__REASON__REASON_POLICY, 2, real);
    refuse_proven(t, b, KETEN__REASON__REASON_POLICY, 2, of_b, size);
    expect_refused(t, b, KETEN__REASON__REASON_POLICY, 2, of_b);
    assert_int_equal(t->node->counters.refused, 2);
    assert_int_equal(fnode_alarms(t->fn), alarms);
}

/* The log holds both a proven refusal and a proven submit (or an answer)
 * of one message: a proven refusal, then a proven ack, a DUPLICATE with the
 * proof, a receipt notice: each the alarm bad-proof, the message stays
 * refused. A proven accept, then a proven refusal: alarm, it stays
 * accepted. Twin: the same refusal again changes nothing, no alarm. */
static void test_refusal_contradicted(void **state)
{
    ctx *t = *state;
    sent *a = send_to(t, "bravo");
    sent *b = send_to(t, "bravo");
    uint64_t rej_a = fnode_bed_log_rejected(t, a->id, "alpha", KETEN__REASON__REASON_EXPIRED, 0);
    uint64_t rcpt = log_receipt(t, a, "bravo", "bravo", false);
    uint64_t rej_b = fnode_bed_log_rejected(t, b->id, "alpha", KETEN__REASON__REASON_POLICY, 0);
    uint64_t size = fnode_bed_checkpoint(t);
    refuse_proven(t, a, KETEN__REASON__REASON_EXPIRED, 0, rej_a, size);
    expect_refused(t, a, KETEN__REASON__REASON_EXPIRED, 0, rej_a);
    refuse_proven(t, a, KETEN__REASON__REASON_EXPIRED, 0, rej_a, size); /* again */
    assert_int_equal(fnode_alarms(t->fn), 0);

    fnode_bed_ack_leaf(t, a->rid, a->leaf, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(fnode_evidence(t->fn), 1);
    flog_proof *p = flog_proof_new(t->log, a->leaf, size);
    refuse(t, a->rid, a->id, KETEN__REASON__REASON_DUPLICATE, 0, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(fnode_alarms(t->fn), 2);
    fnode_bed_receipt_notice(t, rcpt, size);
    assert_int_equal(fnode_alarms(t->fn), 3);
    expect_refused(t, a, KETEN__REASON__REASON_EXPIRED, 0, rej_a);
    Keten__SentRecord *rec = record(t, a->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.sent, 0);

    /* Accepted first, then refused with a proof. */
    fnode_bed_ack_leaf(t, b->rid, b->leaf, size);
    assert_int_equal(state_of(t, b->id), KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    refuse_proven(t, b, KETEN__REASON__REASON_POLICY, 0, rej_b, size);
    assert_int_equal(fnode_alarms(t->fn), 4);
    assert_int_equal(state_of(t, b->id), KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(t->node->counters.refused, 1);
}

/* keten_outbox_refusal_check on its own: each field that differs is named. */
static void test_refusal_check(void **state)
{
    (void)state;
    uint8_t id[KETEN_MSG_ID_BYTES], other[KETEN_MSG_ID_BYTES];
    memset(id, 0x11, sizeof id);
    memset(other, 0x22, sizeof other);
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = KETEN__REASON__REASON_POLICY;
    err.rule = 3;
    err.msg_id.data = id;
    err.msg_id.len = sizeof id;
    Keten__AuditRecord ar = KETEN__AUDIT_RECORD__INIT;
    ar.event = KETEN__EVENT__EVENT_REJECTED;
    ar.msg_id.data = id;
    ar.msg_id.len = sizeof id;
    ar.sender = (char *)"alpha";
    ar.reason = KETEN__REASON__REASON_POLICY;
    ar.rule = 3;
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, id), KETEN_OK);
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, NULL), KETEN_OK);
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, other), KETEN_ERR_INCONSISTENT);
    assert_non_null(strstr(keten_err_detail(), "answers the submit"));
    assert_int_equal(keten_outbox_refusal_check("bravo", &err, &ar, id), KETEN_ERR_INCONSISTENT);
    assert_non_null(strstr(keten_err_detail(), "refusal of alpha"));
    ar.rule = 4;
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, id), KETEN_ERR_INCONSISTENT);
    assert_non_null(strstr(keten_err_detail(), "rule is 4"));
    /* The rule is the decision of a POLICY refusal only. */
    err.reason = ar.reason = KETEN__REASON__REASON_EXPIRED;
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, id), KETEN_OK);
    ar.reason = KETEN__REASON__REASON_CLOCK_SKEW;
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, id), KETEN_ERR_INCONSISTENT);
    assert_non_null(strstr(keten_err_detail(), "reason is CLOCK_SKEW"));
    ar.reason = KETEN__REASON__REASON_EXPIRED;
    ar.msg_id.data = other;
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, NULL), KETEN_ERR_INCONSISTENT);
    ar.msg_id.len = 0;
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, NULL), KETEN_ERR_INCONSISTENT);
    ar.msg_id.data = id;
    ar.msg_id.len = sizeof id;
    ar.event = KETEN__EVENT__EVENT_SUBMITTED;
    assert_int_equal(keten_outbox_refusal_check("alpha", &err, &ar, NULL), KETEN_ERR_INCONSISTENT);
    assert_non_null(strstr(keten_err_detail(), "not a rejected record"));
    keten_err_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accepted_on_valid_proof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_reject_twins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_unproven, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_lies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_contradicted, setup, teardown),
        cmocka_unit_test(test_refusal_check),
        cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_not_resent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipt_notice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipts_after_revocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_receipt_past_expiry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
