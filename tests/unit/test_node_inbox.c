/* node_inbox: receiving (client/inbox.h), on a node without its main loop
 * (fixture_node.h: real identity, directory, store, witness, local API, and
 * a link to a broker's end bound here, which reads the node's credits and
 * receipt batches). Deliveries are real envelopes sealed by the fixture
 * (or changed and signed again with the sender's key, fixture_forge.h),
 * with LeafProofs of their "submitted" records in a broker's log written by
 * the test, against checkpoints signed with the broker's real log key. The
 * node's directory denies bravo -> alpha for drugs.
 *
 * A delivery whose proof does not hold, is against a checkpoint the node
 * does not keep, proves another message's record, or a record that does
 * not list this node, is not stored and gets no receipt leaf; its credit is
 * returned (the false ones are alarms, with evidence). A valid one is
 * stored once and gets a STORED leaf; the same envelope again gets a STORED
 * leaf again and is not stored twice; another envelope under a stored
 * msg_id gets REFUSED DUPLICATE. A delivery keten_envelope_open() refuses
 * gets a REFUSED leaf with the reason of the check that failed (signature,
 * decryption, network, expiry, registration, policy, signal, encoding).
 * The leaves of a group commit go out as one signed receipt batch. */
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

#include "envelope.h"
#include "fixture.h"
#include "fixture_forge.h"
#include "alarm.h"
#include "fixture_node.h"
#include "dirs.h"
#include "inbox.h"
#include "nodestore.h"
#include "outbox.h"
#include "pb.h"
#include "receipt.h"
#include "sha256.h"
#include "signal_json.h"
#include "status.h"
#include "store.h"
#include "util.h"
#include "witness.h"

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "charlie:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"
#define DRUGS "{\"type\":\"drugs\",\"purpose\":\"handhaving\"}"

typedef fnode_bed ctx;

static int setup(void **state)
{
    fixture *fx = fixture_new(1, 1, specs);
    uint32_t rule = 0;
    assert_int_equal(keten_dirbuild_add_rule(fx->draft, KETEN__EFFECT__EFFECT_DENY, "bravo",
                         "alpha", "drugs", NULL, NULL, &rule),
        KETEN_OK);
    size_t len = 0;
    free(fixture_publish(fx, &len));
    ctx *t = fnode_bed_new(fx, "alpha", "hub");
    assert_int_equal(keten_directory_version(t->node->dir), 2);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    fnode_bed_destroy((ctx **)state);
    return 0;
}

/* ---- helpers ----------------------------------------------------------------- */

static bool stored(ctx *t, const uint8_t *env, size_t len)
{
    uint8_t id[KETEN_MSG_ID_BYTES];
    forge_msg_id(env, len, id);
    Keten__ReceivedRecord *rec = NULL;
    keten_err e = keten_inbox_record(t->node, id, &rec);
    keten_nodestore_received_free(&rec);
    keten_err_clear();
    assert_true(e == KETEN_OK || e == KETEN_ERR_NOT_FOUND);
    return e == KETEN_OK;
}

static size_t inbox_count(ctx *t)
{
    json_t *list = NULL;
    uint64_t last = 0;
    assert_int_equal(keten_inbox_list(t->node, true, 0, &list, &last), KETEN_OK);
    size_t n = json_array_size(list);
    json_decref(list);
    return n;
}

/* The last receipt leaf waiting: for env, with outcome and reason. */
static void expect_leaf(
    ctx *t, const uint8_t *env, size_t len, Keten__Outcome outcome, Keten__Reason reason)
{
    assert_true(t->node->n_receipts > 0);
    const keten_receipt_item *it = &t->node->receipts[t->node->n_receipts - 1];
    uint8_t id[KETEN_MSG_ID_BYTES], hash[KETEN_HASH_BYTES];
    forge_msg_id(env, len, id);
    keten_sha256(hash, env, len);
    assert_memory_equal(it->msg_id, id, KETEN_MSG_ID_BYTES);
    assert_memory_equal(it->envelope_hash, hash, KETEN_HASH_BYTES);
    assert_int_equal(it->outcome, outcome);
    assert_int_equal(it->reason, reason);
}

/* The credit the node returned for a delivery it did not take. */
static void expect_credit(ctx *t)
{
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_CREDIT, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->credit->credit, 1);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

/* ---- stored once --------------------------------------------------------------- */

static void test_stored_once(void **state)
{
    ctx *t = *state;
    size_t len = 0;
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint8_t *env = fixture_seal(t->fx, "bravo", "alpha", SIGNAL, id, &len);
    uint64_t leaf = flog_submitted(t->log, env, len);
    uint64_t size = fnode_bed_checkpoint(t);

    fnode_bed_deliver_leaf(t, env, len, leaf, size);
    assert_true(stored(t, env, len));
    Keten__ReceivedRecord *rec = NULL;
    assert_int_equal(keten_inbox_record(t->node, id, &rec), KETEN_OK);
    assert_int_equal(rec->leaf_index, leaf);
    assert_int_equal(rec->envelope.len, len);
    assert_false(rec->handled);
    keten_nodestore_received_free(&rec);
    char sender[KETEN_NAME_MAX + 1];
    assert_int_equal(keten_inbox_sender(t->node, id, sender, sizeof sender), KETEN_OK);
    assert_string_equal(sender, "bravo");
    assert_int_equal(t->node->counters.received, 1);
    assert_int_equal(t->node->n_receipts, 1);
    expect_leaf(t, env, len, KETEN__OUTCOME__OUTCOME_STORED, KETEN__REASON__REASON_NONE);

    /* The same delivery again: receipted again, not stored twice. */
    fnode_bed_deliver_leaf(t, env, len, leaf, size);
    assert_int_equal(t->node->counters.duplicates, 1);
    assert_int_equal(t->node->counters.received, 1);
    assert_int_equal(t->node->n_receipts, 2);
    expect_leaf(t, env, len, KETEN__OUTCOME__OUTCOME_STORED, KETEN__REASON__REASON_NONE);
    assert_int_equal(inbox_count(t), 1);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* One signed batch for both leaves. */
    keten_inbox_flush_receipts(t->node);
    assert_int_equal(t->node->n_receipts, 0);
    assert_int_equal(t->node->counters.receipt_batches, 1);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_RECEIPTS, FNODE_RECV_MS);
    assert_non_null(f);
    const Keten__NodeCert *cert = keten_directory_find_id(t->node->dir, "alpha");
    Keten__ReceiptBatchHead *head = NULL;
    keten_hash *leaf_hashes = NULL;
    assert_int_equal(keten_receipt_batch_verify(cert, keten_directory_network(t->node->dir),
                         f->receipts, &head, &leaf_hashes),
        KETEN_OK);
    assert_int_equal(head->count, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->receipts->leaves[i]->outcome, KETEN__OUTCOME__OUTCOME_STORED);
        assert_memory_equal(f->receipts->leaves[i]->msg_id.data, id, KETEN_MSG_ID_BYTES);
    }
    free(leaf_hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    free(env);
}

/* ---- not stored ---------------------------------------------------------------- */

static void test_bad_proof_not_stored(void **state)
{
    ctx *t = *state;
    size_t len = 0, len2 = 0, len3 = 0;
    uint8_t *env = fixture_seal(t->fx, "bravo", "alpha", SIGNAL, NULL, &len);
    uint8_t *env2 = fixture_seal(t->fx, "bravo", "alpha", SIGNAL, NULL, &len2);
    uint8_t *to_charlie = fixture_seal(t->fx, "bravo", "charlie", SIGNAL, NULL, &len3);
    uint64_t leaf = flog_submitted(t->log, env, len);
    uint64_t leaf2 = flog_submitted(t->log, env2, len2);
    uint64_t leaf3 = flog_submitted(t->log, to_charlie, len3);
    uint64_t size = fnode_bed_checkpoint(t);
    size_t alarms = 0;

    /* A path that does not lead to the root. */
    flog_proof *p = flog_proof_new(t->log, leaf, size);
    p->buf.path[0][0] ^= 0x80;
    fnode_bed_deliver(t, env, len, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    expect_credit(t);
    /* Another message's record. */
    fnode_bed_deliver_leaf(t, env, len, leaf2, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    expect_credit(t);
    /* The record of a message that is not for this node. */
    fnode_bed_deliver_leaf(t, to_charlie, len3, leaf3, size);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    expect_credit(t);
    assert_int_equal(fnode_evidence(t->fn), alarms);
    /* Against a checkpoint the node does not keep: no alarm, not taken. */
    flog_pad(t->log, 1);
    fnode_bed_deliver_leaf(t, env, len, leaf, size + 1);
    assert_int_equal(fnode_alarms(t->fn), alarms);
    expect_credit(t);
    /* No proof at all. */
    fnode_bed_deliver(t, env, len, NULL);
    assert_int_equal(fnode_alarms(t->fn), ++alarms);
    expect_credit(t);

    assert_false(stored(t, env, len));
    assert_false(stored(t, to_charlie, len3));
    assert_int_equal(t->node->n_receipts, 0);
    assert_int_equal(t->node->counters.rejected, 5);
    assert_int_equal(t->node->counters.received, 0);

    /* Twin: with its own proof. */
    fnode_bed_deliver_leaf(t, env, len, leaf, size);
    assert_true(stored(t, env, len));
    assert_int_equal(t->node->n_receipts, 1);
    assert_int_equal(fnode_alarms(t->fn), alarms);
    free(env);
    free(env2);
    free(to_charlie);
}

/* Another envelope under a msg_id already stored (its replay entry put here
 * by hand, with another envelope's hash). */
static void test_replay_other_envelope(void **state)
{
    ctx *t = *state;
    size_t len = 0;
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint8_t *env = fixture_seal(t->fx, "bravo", "alpha", SIGNAL, id, &len);
    uint64_t leaf = flog_submitted(t->log, env, len);
    uint64_t size = fnode_bed_checkpoint(t);
    uint8_t other_hash[KETEN_HASH_BYTES];
    memset(other_hash, 0x77, sizeof other_hash);
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_nodestore_seen_put(t->node->store, txn, id, keten_now_ms() + 3600000, other_hash),
        KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);

    fnode_bed_deliver_leaf(t, env, len, leaf, size);
    expect_leaf(t, env, len, KETEN__OUTCOME__OUTCOME_REFUSED, KETEN__REASON__REASON_DUPLICATE);
    assert_false(stored(t, env, len));
    assert_int_equal(t->node->counters.rejected, 1);
    assert_int_equal(t->node->counters.duplicates, 0);
    assert_int_equal(fnode_alarms(t->fn), 0);
    free(env);
}

/* ---- the refusal reasons ----------------------------------------------------- */

static void set_created_later(Keten__Header *h, void *arg)
{
    (void)arg;
    h->created_at += 1;
}

static void set_network(Keten__Header *h, void *arg)
{
    (void)arg;
    h->network = (char *)"othernet";
}

static void set_category(Keten__Header *h, void *arg)
{
    h->category = arg;
}

static void set_long_life(Keten__Header *h, void *arg)
{
    (void)arg;
    h->expires_at = h->created_at + KETEN_MAX_LIFETIME_DEFAULT_MS + 1;
}

static void set_ahead(Keten__Header *h, void *arg)
{
    (void)arg;
    h->created_at += KETEN_CLOCK_SKEW_MS + 60000;
    h->expires_at += KETEN_CLOCK_SKEW_MS + 60000;
}

static void set_short_life(Keten__Header *h, void *arg)
{
    (void)arg;
    h->expires_at = h->created_at + 1;
}

/* bravo -> alpha, sealed with category and purpose that need not be the
 * signal's. */
static uint8_t *seal_labelled(ctx *t, const char *json, const char *category, size_t *len)
{
    fnode_seal_opts o
        = { .kind = KETEN__KIND__KIND_SIGNAL, .category = category, .life_ms = 3600000 };
    return fnode_seal(fixture_node(t->fx, "bravo"), t->fx->directory, "alpha", json, &o, NULL, len);
}

/* A woonfraude signal whose summary is `summary` as it is, packed without
 * the sender's checks: what a sender's own program might send. */
static uint8_t *seal_raw_summary(ctx *t, const char *summary, size_t *len)
{
    Keten__Signal sig = KETEN__SIGNAL__INIT;
    sig.type = (char *)"woonfraude";
    sig.purpose = (char *)"handhaving";
    sig.summary = (char *)summary;
    size_t plen = keten__signal__get_packed_size(&sig);
    uint8_t *payload = malloc(plen);
    assert_non_null(payload);
    keten__signal__pack(&sig, payload);
    uint64_t now = keten_now_ms();
    keten_envelope_seal_params params = { .kind = KETEN__KIND__KIND_SIGNAL,
        .category = "woonfraude",
        .purpose = "handhaving",
        .created_at = now,
        .expires_at = now + 3600000 };
    const char *rcpt[] = { "alpha" };
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint8_t *env = NULL;
    assert_int_equal(keten_envelope_seal(fixture_node(t->fx, "bravo"), t->fx->directory, rcpt, 1,
                         &params, payload, plen, id, &env, len),
        KETEN_OK);
    free(payload);
    return env;
}

/* The same fields, not in field order: parses, but is not canonical. */
static uint8_t *reorder(const uint8_t *env, size_t len, size_t *out_len)
{
    Keten__Envelope *e = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "e", &e), KETEN_OK);
    Keten__Envelope first = KETEN__ENVELOPE__INIT, second = KETEN__ENVELOPE__INIT,
                    rest = KETEN__ENVELOPE__INIT;
    first.header = e->header;
    second.sender = e->sender;
    rest.keys = e->keys;
    rest.ciphertext = e->ciphertext;
    rest.signature = e->signature;
    uint8_t *parts[3] = { NULL, NULL, NULL };
    size_t lens[3] = { 0, 0, 0 };
    assert_int_equal(keten_pb_pack(&first.base, &parts[0], &lens[0]), KETEN_OK);
    assert_int_equal(keten_pb_pack(&second.base, &parts[1], &lens[1]), KETEN_OK);
    assert_int_equal(keten_pb_pack(&rest.base, &parts[2], &lens[2]), KETEN_OK);
    uint8_t *out = malloc(lens[0] + lens[1] + lens[2]);
    assert_non_null(out);
    *out_len = 0;
    for (size_t i = 0; i < 3; i++) {
        memcpy(out + *out_len, parts[i], lens[i]);
        *out_len += lens[i];
        free(parts[i]);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    return out;
}

typedef struct refusal {
    const char *what;
    uint8_t *env;
    size_t len;
    Keten__Reason reason;
    uint64_t leaf;
} refusal;

static void test_refusal_reasons(void **state)
{
    ctx *t = *state;
    const keten_identity *bravo = fixture_node(t->fx, "bravo");
    size_t len = 0;
    uint8_t *good = fixture_seal(t->fx, "bravo", "alpha", SIGNAL, NULL, &len);
    refusal r[13];
    memset(r, 0, sizeof r);
    size_t n = 0;
    r[n].what = "signature";
    r[n].env = forge_flip_ciphertext(good, len, &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_BAD_SIGNATURE;
    r[n].what = "decryption"; /* the AEAD binds the header it was sealed with */
    r[n].env = forge_envelope(good, len, bravo, set_created_later, NULL, &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_UNDECRYPTABLE;
    r[n].what = "network";
    r[n].env = forge_envelope(good, len, bravo, set_network, NULL, &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_WRONG_NETWORK;
    r[n].what = "expiry";
    r[n].env = forge_envelope(good, len, bravo, set_short_life, NULL, &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_EXPIRED;
    r[n].what = "lifetime"; /* the broker would refuse it; a recipient does not rely on that */
    r[n].env = forge_envelope(good, len, bravo, set_long_life, NULL, &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_EXPIRED;
    r[n].what = "created ahead of the clock";
    r[n].env = forge_envelope(good, len, bravo, set_ahead, NULL, &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_CLOCK_SKEW;
    r[n].what = "category";
    r[n].env = forge_envelope(good, len, bravo, set_category, (void *)"vervoer", &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_UNREGISTERED;
    r[n].what = "policy";
    r[n].env = fixture_seal(t->fx, "bravo", "alpha", DRUGS, NULL, &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_POLICY;
    r[n].what = "signal"; /* a woonfraude signal labelled adrescheck */
    r[n].env = seal_labelled(t, SIGNAL, "adrescheck", &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_INVALID_SIGNAL;
    r[n].what = "a C1 control in the text (U+009B: a terminal's escape)";
    r[n].env = seal_raw_summary(t,
        "rood \xc2\x9b"
        "31m",
        &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_INVALID_SIGNAL;
    r[n].what = "a bidirectional override in the text";
    r[n].env = seal_raw_summary(t,
        "Kerkstraat \xe2\x80\xae"
        "12",
        &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_INVALID_SIGNAL;
    r[n].what = "encoding";
    r[n].env = reorder(good, len, &r[n].len);
    r[n++].reason = KETEN__REASON__REASON_MALFORMED;
    for (size_t i = 0; i < n; i++) {
        r[i].leaf = flog_submitted(t->log, r[i].env, r[i].len);
    }
    uint64_t good_leaf = flog_submitted(t->log, good, len);
    /* The twin of the two texts above: the characters next to theirs. */
    size_t plain_len = 0;
    uint8_t *plain = seal_raw_summary(t,
        "Caf\xc3\xa9 \xe2\x82\xac 12\xc2\xa0\xc2\xbf\xe2\x80\xa9\xe2\x80\x8f\xe2\x81\xa5\xd8\xb4",
        &plain_len);
    uint64_t plain_leaf = flog_submitted(t->log, plain, plain_len);
    uint64_t size = fnode_bed_checkpoint(t);
    struct timespec pause = { 0, 5 * 1000 * 1000 }; /* time under test: the 1 ms life passes */
    nanosleep(&pause, NULL);

    for (size_t i = 0; i < n; i++) {
        size_t before = t->node->n_receipts;
        fnode_bed_deliver_leaf(t, r[i].env, r[i].len, r[i].leaf, size);
        if (t->node->n_receipts != before + 1) {
            fail_msg("%s: no receipt leaf", r[i].what);
        }
        const keten_receipt_item *it = &t->node->receipts[before];
        if (it->outcome != KETEN__OUTCOME__OUTCOME_REFUSED || it->reason != r[i].reason) {
            fail_msg("%s: outcome %d reason %d, not REFUSED %d", r[i].what, (int)it->outcome,
                (int)it->reason, (int)r[i].reason);
        }
        expect_leaf(t, r[i].env, r[i].len, KETEN__OUTCOME__OUTCOME_REFUSED, r[i].reason);
        assert_false(stored(t, r[i].env, r[i].len));
    }
    assert_int_equal(t->node->counters.rejected, n);
    assert_int_equal(t->node->counters.received, 0);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* Twin: the envelope they were made from is stored. */
    fnode_bed_deliver_leaf(t, good, len, good_leaf, size);
    expect_leaf(t, good, len, KETEN__OUTCOME__OUTCOME_STORED, KETEN__REASON__REASON_NONE);
    assert_true(stored(t, good, len));
    fnode_bed_deliver_leaf(t, plain, plain_len, plain_leaf, size);
    expect_leaf(t, plain, plain_len, KETEN__OUTCOME__OUTCOME_STORED, KETEN__REASON__REASON_NONE);
    assert_true(stored(t, plain, plain_len));

    /* All of them go in one batch, each leaf as it was decided. */
    keten_inbox_flush_receipts(t->node);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_RECEIPTS, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->receipts->n_leaves, n + 2);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(f->receipts->leaves[i]->reason, r[i].reason);
        free(r[i].env);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    free(good);
    free(plain);
}

/* ---- past the directory's expiry ------------------------------------------ */

/* Wait (bounded) until the node's directory has expired: time under test. */
static void wait_expired(ctx *t)
{
    struct timespec pause = { 0, 20 * 1000 * 1000 };
    for (int i = 0; i < 250 && keten_directory_fresh(t->node->dir, keten_now_ms()); i++) {
        nanosleep(&pause, NULL);
    }
    assert_false(keten_directory_fresh(t->node->dir, keten_now_ms()));
}

/* A JSON value of `keten-node status --json`'s directory object. */
static json_t *status_directory(ctx *t)
{
    json_t *st = NULL;
    assert_int_equal(keten_status_node(t->node, &st), KETEN_OK);
    json_t *d = json_incref(json_object_get(st, "directory"));
    assert_non_null(d);
    json_decref(st);
    return d;
}

/* Past expiry the node opens nothing and receipts nothing: a delivery is
 * not stored and gets no leaf, its credit is returned, the alarm
 * directory-expired is raised (once for the version), and status says why
 * and what to do. Leaves decided before the expiry are not signed either.
 * The deliveries are not lost: once a fresh version is installed the node
 * says Hello again (the broker then sends every unreceipted delivery
 * again), and the same delivery is stored and receipted. */
static void test_expired_directory_holds_deliveries(void **state)
{
    ctx *t = *state;
    size_t len = 0, len2 = 0;
    uint8_t *early = fixture_seal(t->fx, "bravo", "alpha", SIGNAL, NULL, &len);
    uint8_t *env = fixture_seal(t->fx, "bravo", "alpha", SIGNAL, NULL, &len2);
    uint64_t leaf_early = flog_submitted(t->log, early, len);
    uint64_t leaf = flog_submitted(t->log, env, len2);
    uint64_t size = fnode_bed_checkpoint(t);

    fnode_bed_push_next(t, 1500); /* version 3, valid for 1.5 s */
    json_t *d = status_directory(t);
    assert_true(json_is_true(json_object_get(d, "fresh")));
    assert_null(json_object_get(d, "problem"));
    json_decref(d);
    /* Decided while fresh: stored, a STORED leaf waits for the batch. */
    fnode_bed_deliver_leaf(t, early, len, leaf_early, size);
    assert_true(stored(t, early, len));
    assert_int_equal(t->node->n_receipts, 1);

    wait_expired(t);
    /* The waiting leaf is not signed: no batch, its credit comes back. */
    keten_inbox_flush_receipts(t->node);
    assert_int_equal(t->node->n_receipts, 0);
    assert_int_equal(t->node->counters.receipt_batches, 0);
    expect_credit(t);
    assert_int_equal(fnode_alarms(t->fn), 1);

    /* A delivery: not opened, not stored, no leaf, credit returned. */
    fnode_bed_deliver_leaf(t, env, len2, leaf, size);
    assert_false(stored(t, env, len2));
    assert_int_equal(t->node->n_receipts, 0);
    assert_int_equal(t->node->counters.received, 1);
    expect_credit(t);
    fnode_bed_deliver_leaf(t, env, len2, leaf, size);
    assert_int_equal(t->node->n_receipts, 0);
    expect_credit(t);
    assert_int_equal(fnode_alarms(t->fn), 1); /* once per version */
    assert_int_equal(t->node->held_deliveries, 3);
    json_t *alarms = NULL;
    assert_int_equal(keten_alarm_list(t->node, &alarms), KETEN_OK);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(alarms, 0), "kind")), "directory-expired");
    json_decref(alarms);
    d = status_directory(t);
    assert_false(json_is_true(json_object_get(d, "fresh")));
    assert_int_equal(json_integer_value(json_object_get(d, "held_deliveries")), 3);
    const char *problem = json_string_value(json_object_get(d, "problem"));
    assert_non_null(problem);
    assert_non_null(strstr(problem, "expired"));
    assert_non_null(strstr(problem, "publish"));
    json_decref(d);

    /* Twin: a fresh version comes; the node asks for the held ones again
     * (Hello), and the delivery the broker sends again is stored and
     * receipted, the early one receipted again. */
    fnode_bed_push_next(t, 3600000);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_HELLO, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(t->node->held_deliveries, 0);
    d = status_directory(t);
    assert_null(json_object_get(d, "problem"));
    json_decref(d);
    fnode_bed_deliver_leaf(t, early, len, leaf_early, size);
    expect_leaf(t, early, len, KETEN__OUTCOME__OUTCOME_STORED, KETEN__REASON__REASON_NONE);
    fnode_bed_deliver_leaf(t, env, len2, leaf, size);
    assert_true(stored(t, env, len2));
    expect_leaf(t, env, len2, KETEN__OUTCOME__OUTCOME_STORED, KETEN__REASON__REASON_NONE);
    keten_inbox_flush_receipts(t->node);
    assert_int_equal(t->node->counters.receipt_batches, 1);
    f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_RECEIPTS, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->receipts->n_leaves, 2);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(fnode_alarms(t->fn), 1);
    free(env);
    free(early);
}

/* ---- one reply per query ------------------------------------------------------ */

static size_t sent_count(ctx *t)
{
    size_t n = 0;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_store_count(t->node->store, txn, KETEN_DB_SENT, &n), KETEN_OK);
    keten_store_abort(&txn);
    return n;
}

/* The reply_msg_id a received message's JSON gives in the inbox list, in
 * show and in its status (GET /v1/inbox, /v1/inbox/ID, /v1/messages/ID):
 * each into out[i] ("" when the field is absent). */
static void reply_fields(
    ctx *t, const uint8_t id[static KETEN_MSG_ID_BYTES], char out[3][KETEN_MSG_ID_HEX_BYTES])
{
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(id, KETEN_MSG_ID_BYTES, hex);
    json_t *list = NULL, *one = NULL, *st = NULL;
    uint64_t last = 0;
    assert_int_equal(keten_inbox_list(t->node, true, 0, &list, &last), KETEN_OK);
    assert_int_equal(keten_inbox_show(t->node, id, &one), KETEN_OK);
    assert_int_equal(keten_status_message(t->node, id, &st), KETEN_OK);
    json_t *item = NULL, *m;
    size_t i;
    json_array_foreach(list, i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "msg_id")), hex) == 0) {
            item = m;
        }
    }
    assert_non_null(item);
    json_t *got[3] = { json_object_get(item, "reply_msg_id"), json_object_get(one, "reply_msg_id"),
        json_object_get(st, "reply_msg_id") };
    for (i = 0; i < 3; i++) {
        assert_true(got[i] == NULL || json_is_string(got[i]));
        snprintf(
            out[i], KETEN_MSG_ID_HEX_BYTES, "%s", got[i] != NULL ? json_string_value(got[i]) : "");
    }
    json_decref(list);
    json_decref(one);
    json_decref(st);
}

/* A received query gets one reply: keten_outbox_send notes the reply on the
 * query in the transaction that stores it, and refuses a second one itself
 * (whatever the caller checked before), storing nothing. Twin: the first
 * reply is stored and noted. */
static void test_one_reply_per_query(void **state)
{
    ctx *t = *state;
    fnode_seal_opts o = { .kind = KETEN__KIND__KIND_QUERY, .life_ms = 3600000 };
    uint8_t q[KETEN_MSG_ID_BYTES];
    size_t len = 0;
    uint8_t *env
        = fnode_seal(fixture_node(t->fx, "bravo"), t->fx->directory, "alpha", SIGNAL, &o, q, &len);
    uint64_t leaf = flog_submitted(t->log, env, len);
    fnode_bed_deliver_leaf(t, env, len, leaf, fnode_bed_checkpoint(t));
    assert_true(stored(t, env, len));

    keten_outbox_send_req req = { .to = "bravo",
        .kind = KETEN__KIND__KIND_REPLY,
        .json = SIGNAL,
        .json_len = strlen(SIGNAL),
        .in_reply_to = q };
    uint8_t r1[KETEN_MSG_ID_BYTES], r2[KETEN_MSG_ID_BYTES];
    /* Not answered yet: the list, show and status give no reply_msg_id. */
    char shown[3][KETEN_MSG_ID_HEX_BYTES];
    reply_fields(t, q, shown);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(shown[i], "");
    }
    size_t before = sent_count(t);
    assert_int_equal(keten_outbox_send(t->node, &req, r1), KETEN_OK);
    assert_int_equal(sent_count(t), before + 1);
    Keten__ReceivedRecord *rec = NULL;
    assert_int_equal(keten_inbox_record(t->node, q, &rec), KETEN_OK);
    assert_int_equal(rec->reply_id.len, KETEN_MSG_ID_BYTES);
    assert_memory_equal(rec->reply_id.data, r1, KETEN_MSG_ID_BYTES);
    keten_nodestore_received_free(&rec);
    /* Answered: each gives the reply's msg_id. */
    char r1_hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(r1, KETEN_MSG_ID_BYTES, r1_hex);
    reply_fields(t, q, shown);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(shown[i], r1_hex);
    }

    keten_err_clear();
    assert_int_equal(keten_outbox_send(t->node, &req, r2), KETEN_ERR_EXISTS);
    assert_non_null(strstr(keten_err_detail(), "already replied"));
    assert_int_equal(sent_count(t), before + 1);
    assert_int_equal(keten_inbox_record(t->node, q, &rec), KETEN_OK);
    assert_memory_equal(rec->reply_id.data, r1, KETEN_MSG_ID_BYTES);
    keten_nodestore_received_free(&rec);

    /* A reply naming a message this node never received: nothing stored. */
    uint8_t unknown[KETEN_MSG_ID_BYTES] = { 0 };
    req.in_reply_to = unknown;
    assert_int_equal(keten_outbox_send(t->node, &req, r2), KETEN_ERR_NOT_FOUND);
    assert_int_equal(sent_count(t), before + 1);
    keten_err_clear();
    free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stored_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_proof_not_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_other_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_directory_holds_deliveries, setup, teardown),

        cmocka_unit_test_setup_teardown(test_one_reply_per_query, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
