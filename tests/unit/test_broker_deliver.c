/* broker_deliver: store and forward (broker/deliver.h) on a minimal broker
 * (fixture_broker.h: real store, directory, audit log, checkpointer; the
 * connections and batches set up by hand). Messages are real envelopes
 * submitted through submit.c, except for the in-flight byte budget, whose
 * messages of exact sizes are put in the store by hand (store_msg_accept:
 * delivery never reads inside an envelope). Receipt batches are signed with
 * the recipients' real keys (lib/receipt.h).
 *
 * Credit: one delivery per credit, a new Hello starts again at the oldest
 * entry without a second "delivered" record, credit capped, nothing without
 * a Hello. The 16 MiB in-flight bound: deliveries stop before it, exactly at
 * it is still in, one delivery always goes when nothing is in flight (twin:
 * not when something is), a receipt frees its bytes. Receipt batches: each
 * leaf returns a credit; a stored and a refused leaf each get their record
 * and remove the queue entry (a refused message is not delivered again);
 * a leaf for a message not pending for that node, or naming another
 * envelope, is skipped with one "rejected" record for the batch; a repeated
 * leaf is ignored; a batch that does not verify is refused whole. Notices
 * go to their sender until it confirms them; only its own confirmation
 * deletes one. Expiry, and msg_ids forgotten only after the horizon. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit.h"
#include "checkpointer.h"
#include "deliver.h"
#include "fixture.h"
#include "fixture_broker.h"
#include "fixture_forge.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "receipt.h"
#include "sha256.h"
#include "store.h"
#include "submit.h"
#include "util.h"

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "charlie:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"
#define MIB (1u << 20)

typedef struct msg {
    uint8_t *env;
    size_t len;
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint8_t hash[KETEN_HASH_BYTES];
    uint64_t leaf;
} msg;

typedef struct ctx {
    fixture *fx;
    fbroker *fb;
    msg m[8];
    size_t n;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fb = fbroker_new(t->fx, "hub");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    fbroker_destroy(&t->fb);
    for (size_t i = 0; i < t->n; i++) {
        free(t->m[i].env);
    }
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/* A real message from -> to, submitted and accepted in a batch of its own. */
static msg *send_msg(ctx *t, conn *from, const char *to)
{
    broker *b = &t->fb->b;
    assert_true(t->n < sizeof t->m / sizeof t->m[0]);
    msg *m = &t->m[t->n++];
    b->now = keten_now_ms();
    m->env = fixture_seal(t->fx, from->node, to, SIGNAL, m->id, &m->len);
    keten_sha256(m->hash, m->env, m->len);
    submit_prep p;
    submit_prepare(b, from, m->env, m->len, true, &p);
    fbroker_begin(t->fb);
    m->leaf = fbroker_log_size(t->fb);
    assert_int_equal(submit_apply(b, from, 1, m->env, m->len, &p), KETEN_OK);
    assert_int_equal(b->out->v[b->out->n - 1].kind, OUTQ_SUBMIT_ACK);
    fbroker_end(t->fb);
    submit_prep_clear(&p);
    outq_clear(b->out);
    return m;
}

/* A message of exactly env_len envelope bytes from alpha to node, put in
 * the store by hand; its leaf is a record appended for it (a delivery
 * carries the proof of whatever record its leaf holds). */
static uint64_t put_sized(ctx *t, uint8_t tag, size_t env_len, const char *node)
{
    broker *b = &t->fb->b;
    uint64_t leaf = 0;
    store_msg m;
    memset(&m, 0, sizeof m);
    memset(m.msg_id, tag, sizeof m.msg_id);
    m.created_at = b->now;
    m.expires_at = b->now + 3600000;
    memset(m.envelope_hash, tag, sizeof m.envelope_hash);
    strcpy(m.sender, "alpha");
    m.n_rcpt = 1;
    strcpy(m.rcpt[0].id, node);
    uint8_t *env = calloc(1, env_len);
    assert_non_null(env);
    fbroker_begin(t->fb);
    assert_int_equal(audit_node(b, KETEN__EVENT__EVENT_NODE_CONNECTED, "alpha", &leaf), KETEN_OK);
    m.leaf = leaf;
    assert_int_equal(store_msg_accept(b->st, b->txn, &m, env, env_len, b->now), KETEN_OK);
    fbroker_end(t->fb);
    outq_clear(b->out);
    free(env);
    return leaf;
}

/* Make node a second recipient of the message at leaf (queued for it). */
static void add_recipient(ctx *t, uint64_t leaf, const char *node)
{
    broker *b = &t->fb->b;
    store_msg m;
    bool found = false;
    fbroker_begin(t->fb);
    assert_int_equal(store_msg_get(b->st, b->txn, leaf, &m, &found), KETEN_OK);
    assert_true(found);
    strcpy(m.rcpt[m.n_rcpt].id, node);
    m.rcpt[m.n_rcpt++].state = STORE_QUEUED;
    assert_int_equal(store_msg_put(b->st, b->txn, &m), KETEN_OK);
    fbroker_end(t->fb);
}

/* One batch that pumps c; the leaves of the Deliver frames c got. */
static size_t pump(ctx *t, conn *c, uint64_t *leaves, size_t max)
{
    broker *b = &t->fb->b;
    outq_clear(b->out);
    fbroker_begin(t->fb);
    size_t budget = BROKER_BATCH_BYTES_MAX;
    assert_int_equal(deliver_pump(b, c, &budget), KETEN_OK);
    fbroker_end(t->fb);
    size_t n = 0;
    for (size_t i = 0;
         (i = fbroker_find(t->fb, i, c->node, KETEN__FRAME__BODY_DELIVER)) != SIZE_MAX; i++) {
        Keten__Frame *f = fbroker_frame(t->fb, i);
        assert_true(n < max);
        leaves[n++] = f->deliver->proof->leaf_index;
        keten_pb_free((ProtobufCMessage **)(void *)&f);
    }
    outq_clear(b->out);
    return n;
}

/* Records of event in [from, size of the log). */
static size_t count_events(ctx *t, uint64_t from, Keten__Event event)
{
    size_t n = 0;
    uint64_t size = fbroker_log_size(t->fb);
    for (uint64_t i = from; i < size; i++) {
        Keten__AuditRecord *r = fbroker_record(t->fb, i);
        n += r->event == event;
        keten_pb_free((ProtobufCMessage **)(void *)&r);
    }
    return n;
}

static store_msg get_msg(ctx *t, uint64_t leaf, bool *found)
{
    broker *b = &t->fb->b;
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    store_msg m;
    memset(&m, 0, sizeof m);
    assert_int_equal(store_msg_get(b->st, txn, leaf, &m, found), KETEN_OK);
    store_abort(&txn);
    return m;
}

static uint8_t rcpt_state(ctx *t, uint64_t leaf, const char *node)
{
    bool found = false;
    store_msg m = get_msg(t, leaf, &found);
    assert_true(found);
    for (size_t i = 0; i < m.n_rcpt; i++) {
        if (strcmp(m.rcpt[i].id, node) == 0) {
            return m.rcpt[i].state;
        }
    }
    fail_msg("%s is no recipient of leaf %llu", node, (unsigned long long)leaf);
    return 0;
}

static keten_receipt_item item(
    const uint8_t *id, const uint8_t *hash, Keten__Outcome outcome, Keten__Reason reason)
{
    keten_receipt_item it;
    memset(&it, 0, sizeof it);
    memcpy(it.msg_id, id, KETEN_MSG_ID_BYTES);
    memcpy(it.envelope_hash, hash, KETEN_HASH_BYTES);
    it.outcome = outcome;
    it.reason = reason;
    return it;
}

/* A receipt batch signed by signer, its head naming certificate serial
 * and stored_at, delivered on c, in a batch of its own. */
static void receipts_head(ctx *t, conn *c, const char *signer, uint64_t serial, uint64_t stored_at,
    const keten_receipt_item *items, size_t n)
{
    broker *b = &t->fb->b;
    const keten_directory *dir = broker_dir(b);
    keten_receipt_batch *rb = NULL;
    assert_int_equal(keten_receipt_batch_new(fixture_node(t->fx, signer),
                         keten_directory_network(dir), serial, stored_at, items, n, &rb),
        KETEN_OK);
    receipt_prep rp;
    deliver_receipt_prepare(b, c, &rb->msg, &rp);
    outq_clear(b->out);
    fbroker_begin(t->fb);
    assert_int_equal(deliver_receipts(b, c, 5, &rb->msg, &rp), KETEN_OK);
    fbroker_end(t->fb);
    deliver_receipt_prep_clear(&rp);
    keten_receipt_batch_destroy(&rb);
}

/* A receipt batch signed by signer with its certificate's serial, stored
 * now, delivered on c, in a batch of its own. */
static void receipts(ctx *t, conn *c, const char *signer, const keten_receipt_item *items, size_t n)
{
    const Keten__NodeCert *cert = keten_directory_find_id(broker_dir(&t->fb->b), signer);
    assert_non_null(cert);
    receipts_head(t, c, signer, cert->serial, t->fb->b.now, items, n);
}

/* ---- credit ---------------------------------------------------------------- */

static void test_credit(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    for (int i = 0; i < 5; i++) {
        send_msg(t, alpha, "bravo");
    }
    uint64_t leaves[16];
    uint64_t log0 = fbroker_log_size(t->fb);

    /* No credit: nothing goes. */
    assert_int_equal(pump(t, bravo, leaves, 16), 0);
    deliver_credit(bravo, 3);
    assert_int_equal(pump(t, bravo, leaves, 16), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(leaves[i], t->m[i].leaf); /* oldest first */
        assert_int_equal(rcpt_state(t, t->m[i].leaf, "bravo"), STORE_DELIVERED);
    }
    assert_int_equal(rcpt_state(t, t->m[3].leaf, "bravo"), STORE_QUEUED);
    assert_int_equal(bravo->credit, 0);
    assert_true(bravo->has_cursor);
    assert_int_equal(bravo->cursor, t->m[2].leaf);
    assert_int_equal(count_events(t, log0, KETEN__EVENT__EVENT_DELIVERED), 3);
    assert_int_equal(atomic_load(&t->fb->b.m->deliveries), 3);

    deliver_credit(bravo, 10);
    assert_int_equal(pump(t, bravo, leaves, 16), 2);
    assert_int_equal(leaves[0], t->m[3].leaf);
    assert_int_equal(bravo->credit, 8);
    assert_false(bravo->more); /* the end of its queue */
    assert_int_equal(pump(t, bravo, leaves, 16), 0);

    /* A new Hello on the connection, the credit of what is in flight
     * returned (the 10 above count), starts at the oldest entry again: all
     * five go, without a second "delivered" record. */
    Keten__Hello h = KETEN__HELLO__INIT;
    h.tree_size = bravo->cp_sent;
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_hello(&t->fb->b, bravo, 2, &h), KETEN_OK);
    fbroker_end(t->fb);
    uint64_t log1 = fbroker_log_size(t->fb);
    assert_int_equal(pump(t, bravo, leaves, 16), 5);
    assert_int_equal(leaves[0], t->m[0].leaf);
    assert_int_equal(count_events(t, log1, KETEN__EVENT__EVENT_DELIVERED), 0);

    /* Credit is capped. */
    deliver_credit(bravo, UINT32_MAX);
    assert_int_equal(bravo->credit, BROKER_CREDIT_MAX);
}

/* Nothing that carries a proof before a Hello, nothing for a revoked
 * connection; twin: the same queue goes once the Hello is accepted. */
static void test_no_hello_no_delivery(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn(t->fb, "bravo");
    send_msg(t, alpha, "bravo");
    deliver_credit(bravo, 10);
    uint64_t leaves[4];
    assert_int_equal(pump(t, bravo, leaves, 4), 0);
    assert_int_equal(rcpt_state(t, t->m[0].leaf, "bravo"), STORE_QUEUED);
    bravo->hello = true;
    bravo->revoked = true;
    assert_int_equal(pump(t, bravo, leaves, 4), 0);
    bravo->revoked = false;
    assert_int_equal(pump(t, bravo, leaves, 4), 1);
}

/* ---- resend on the same connection ----------------------------------------- */

/* Deliveries the node read and dropped (it returned their credit in a
 * Credit frame, no receipt) are delivered again on the same connection once
 * nothing was receipted for DELIVER_RESEND_MS, without a second
 * "delivered" record; twins: not before the wait, and not to a node that
 * returned no credit (it may not be reading: nothing more is queued for
 * it). The wait doubles while nothing is receipted. */
static void test_resend_unreceipted(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    for (int i = 0; i < 3; i++) {
        send_msg(t, alpha, "bravo");
    }
    uint64_t leaves[8];
    deliver_credit(bravo, 3);
    uint64_t log0 = fbroker_log_size(t->fb);
    assert_int_equal(pump(t, bravo, leaves, 8), 3);
    assert_int_equal(bravo->flight.count, 3);
    assert_int_equal(bravo->flight.returned, 0);

    /* Twin: the wait is over, but the node returned no credit. */
    bravo->flight.progress_ms = keten_mono_ms() - DELIVER_RESEND_MS - 1;
    assert_int_equal(pump(t, bravo, leaves, 8), 0);
    assert_int_equal(atomic_load(&t->fb->b.m->deliveries_resent), 0);
    assert_true(bravo->has_cursor);
    assert_int_equal(bravo->cursor, t->m[2].leaf);
    assert_int_equal(bravo->flight.count, 3);

    /* The node returns two of the three credits: still not every delivery
     * in flight is accounted for. */
    deliver_credit(bravo, 2);
    assert_int_equal(pump(t, bravo, leaves, 8), 0);
    assert_int_equal(atomic_load(&t->fb->b.m->deliveries_resent), 0);

    /* Twin: all three returned, but the wait is not over. */
    deliver_credit(bravo, 1);
    bravo->flight.progress_ms = keten_mono_ms();
    assert_int_equal(pump(t, bravo, leaves, 8), 0);
    assert_int_equal(atomic_load(&t->fb->b.m->deliveries_resent), 0);

    /* Returned and waited: the three go again, oldest first, on the same
     * connection, with no second "delivered" record. */
    bravo->flight.progress_ms = keten_mono_ms() - DELIVER_RESEND_MS - 1;
    assert_int_equal(pump(t, bravo, leaves, 8), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(leaves[i], t->m[i].leaf);
    }
    assert_int_equal(atomic_load(&t->fb->b.m->deliveries_resent), 1);
    assert_int_equal(count_events(t, log0, KETEN__EVENT__EVENT_DELIVERED), 3);
    assert_int_equal(bravo->flight.resend_wait_ms, 2 * DELIVER_RESEND_MS);

    /* Dropped again: the next rewind waits twice as long. */
    deliver_credit(bravo, 3);
    bravo->flight.progress_ms = keten_mono_ms() - DELIVER_RESEND_MS - 1;
    assert_int_equal(pump(t, bravo, leaves, 8), 0);
    bravo->flight.progress_ms = keten_mono_ms() - 2 * DELIVER_RESEND_MS - 1;
    assert_int_equal(pump(t, bravo, leaves, 8), 3);
    assert_int_equal(atomic_load(&t->fb->b.m->deliveries_resent), 2);
    assert_int_equal(bravo->flight.resend_wait_ms, DELIVER_RESEND_MAX_MS);
    assert_int_equal(bravo->flight.rewinds, 2);
}

/* The node says Hello again on its connection. */
static void say_hello(ctx *t, conn *c)
{
    Keten__Hello h = KETEN__HELLO__INIT;
    h.tree_size = c->cp_sent;
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_hello(&t->fb->b, c, 0, &h), KETEN_OK);
    fbroker_end(t->fb);
}

/* A Hello on a connection with deliveries in flight sends them again
 * (whether or not their credit came back: a node that held them while its
 * directory had expired need not return it), as a rewind (the budget
 * halves), and at most once every DELIVER_RESEND_MS: Hellos cannot have
 * the queue handed out again and again into a connection that does not
 * read it. */
static void test_hello_rewind(void **state)
{
    ctx *t = *state;
    metrics *mx = t->fb->b.m;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    for (int i = 0; i < 3; i++) {
        send_msg(t, alpha, "bravo");
    }
    uint64_t leaves[8];
    deliver_credit(bravo, 10);
    uint64_t log0 = fbroker_log_size(t->fb);
    assert_int_equal(pump(t, bravo, leaves, 8), 3);

    /* No credit returned: the Hello has the three sent again, oldest
     * first, with the credit the node still has. */
    say_hello(t, bravo);
    assert_int_equal(pump(t, bravo, leaves, 8), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(leaves[i], t->m[i].leaf);
    }
    assert_int_equal(atomic_load(&mx->deliveries_resent), 1);
    assert_int_equal(bravo->flight.rewinds, 1);

    /* Ten more Hellos, each with the credit back: nothing within
     * DELIVER_RESEND_MS of that rewind. */
    for (int i = 0; i < 10; i++) {
        deliver_credit(bravo, 3);
        say_hello(t, bravo);
        assert_int_equal(pump(t, bravo, leaves, 8), 0);
    }
    assert_int_equal(atomic_load(&mx->deliveries_resent), 1);

    /* Past it, the Hello's rewind comes (one), and counts as one. */
    bravo->flight.rewound_ms = keten_mono_ms() - DELIVER_RESEND_MS - 1;
    assert_int_equal(pump(t, bravo, leaves, 8), 3);
    assert_int_equal(atomic_load(&mx->deliveries_resent), 2);
    assert_int_equal(bravo->flight.rewinds, 2);
    assert_false(bravo->flight.rewind_due);

    assert_int_equal(count_events(t, log0, KETEN__EVENT__EVENT_DELIVERED), 3);
}

/* Each rewind without a receipt halves the byte budget, down to one
 * delivery at a time (a node that returns credit for deliveries it does
 * not read gets little more queued for it); a receipt restores it. */
static void test_resend_budget_halves(void **state)
{
    ctx *t = *state;
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    deliver_credit(bravo, 100);
    uint64_t first = put_sized(t, 1, 3 * MIB, "bravo");
    put_sized(t, 2, 3 * MIB, "bravo");
    put_sized(t, 3, 3 * MIB, "bravo");
    uint64_t leaves[8];
    assert_int_equal(pump(t, bravo, leaves, 8), 3); /* 9 MiB: within 16 */
    deliver_credit(bravo, 3);
    bravo->flight.progress_ms = keten_mono_ms() - DELIVER_RESEND_MS - 1;
    /* Rewound once: 8 MiB, two of them. */
    assert_int_equal(pump(t, bravo, leaves, 8), 2);
    assert_int_equal(leaves[0], first);
    assert_int_equal(bravo->flight.rewinds, 1);
    deliver_credit(bravo, 2);
    bravo->flight.progress_ms = keten_mono_ms() - DELIVER_RESEND_MAX_MS - 1;
    /* Twice: 4 MiB, one (one always goes when nothing is in flight). */
    assert_int_equal(pump(t, bravo, leaves, 8), 1);
    assert_int_equal(leaves[0], first);
    assert_int_equal(bravo->flight.rewinds, 2);

    /* Its receipt restores the budget: the other two follow. */
    uint8_t id[KETEN_MSG_ID_BYTES], hash[KETEN_HASH_BYTES];
    memset(id, 1, sizeof id);
    memset(hash, 1, sizeof hash);
    keten_receipt_item it = item(id, hash, KETEN__OUTCOME__OUTCOME_STORED, 0);
    receipts(t, bravo, "bravo", &it, 1);
    assert_int_equal(bravo->flight.rewinds, 0);
    assert_int_equal(pump(t, bravo, leaves, 8), 2);

    /* A message for bravo and charlie, delivered to bravo and answered
     * (matched: the budget is whole). */
    uint64_t both = put_sized(t, 9, 1, "bravo");
    add_recipient(t, both, "charlie");
    bravo->more = true; /* as a submit for bravo sets it */
    assert_int_equal(pump(t, bravo, leaves, 8), 1);
    assert_int_equal(leaves[0], both);
    uint8_t id9[KETEN_MSG_ID_BYTES], hash9[KETEN_HASH_BYTES];
    memset(id9, 9, sizeof id9);
    memset(hash9, 9, sizeof hash9);
    keten_receipt_item it9 = item(id9, hash9, KETEN__OUTCOME__OUTCOME_STORED, 0);
    receipts(t, bravo, "bravo", &it9, 1);
    assert_int_equal(rcpt_state(t, both, "bravo"), STORE_RECEIPTED);

    /* Dropped and rewound: the same answer repeated (the message is still
     * held for charlie) is no receipt of what is in flight: the budget
     * stays halved, the wait doubled. */
    deliver_credit(bravo, 2);
    bravo->flight.progress_ms = keten_mono_ms() - DELIVER_RESEND_MS - 1;
    assert_int_equal(pump(t, bravo, leaves, 8), 2); /* 8 MiB: both 3 MiB ones */
    assert_int_equal(bravo->flight.rewinds, 1);
    receipts(t, bravo, "bravo", &it9, 1);
    assert_int_equal(atomic_load(&t->fb->b.m->leaves_repeated), 1);
    assert_int_equal(bravo->flight.rewinds, 1);
    assert_int_equal(bravo->flight.resend_wait_ms, 2 * DELIVER_RESEND_MS);
}

/* ---- the in-flight byte bound --------------------------------------------- */

static void test_inflight_bound(void **state)
{
    ctx *t = *state;
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    deliver_credit(bravo, 100);
    /* 6 + 6 MiB in flight; a third 6 MiB would pass 16 MiB. */
    put_sized(t, 1, 6 * MIB, "bravo");
    uint64_t second = put_sized(t, 2, 6 * MIB, "bravo");
    uint64_t third = put_sized(t, 3, 6 * MIB, "bravo");
    uint64_t fourth = put_sized(t, 4, 4 * MIB, "bravo");
    uint64_t leaves[8];
    assert_int_equal(pump(t, bravo, leaves, 8), 2);
    assert_int_equal(bravo->flight.bytes, 12 * MIB);
    assert_true(bravo->flight.full);
    assert_int_equal(bravo->cursor, second);
    assert_int_equal(bravo->credit, 98);
    assert_int_equal(pump(t, bravo, leaves, 8), 0); /* still full */

    /* The receipt of the first frees its bytes: the next two fit (6 + 6 + 4
     * = 16 MiB: exactly the bound is in). */
    uint8_t id[KETEN_MSG_ID_BYTES], hash[KETEN_HASH_BYTES];
    memset(id, 1, sizeof id);
    memset(hash, 1, sizeof hash);
    keten_receipt_item it = item(id, hash, KETEN__OUTCOME__OUTCOME_STORED, 0);
    receipts(t, bravo, "bravo", &it, 1);
    assert_int_equal(bravo->flight.bytes, 6 * MIB);
    assert_false(bravo->flight.full);
    assert_int_equal(pump(t, bravo, leaves, 8), 2);
    assert_int_equal(leaves[0], third);
    assert_int_equal(leaves[1], fourth);
    assert_int_equal(bravo->flight.bytes, 16 * MIB);
}

/* When nothing is in flight, one delivery goes whatever its size (here one
 * larger than the bound that still fits a frame); twin: with anything in
 * flight, it waits. */
static void test_one_delivery_always_goes(void **state)
{
    ctx *t = *state;
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    conn *charlie = fbroker_conn_hello(t->fb, "charlie");
    deliver_credit(bravo, 10);
    deliver_credit(charlie, 10);
    const size_t big = BROKER_INFLIGHT_BYTES_MAX + (16u << 10);
    uint64_t huge = put_sized(t, 1, big, "bravo");
    put_sized(t, 2, 1, "bravo");
    uint64_t small = put_sized(t, 3, 1, "charlie");
    put_sized(t, 4, big, "charlie");
    uint64_t leaves[4];
    assert_int_equal(pump(t, bravo, leaves, 4), 1);
    assert_int_equal(leaves[0], huge);
    assert_int_equal(bravo->flight.bytes, big);
    assert_true(bravo->flight.full); /* not even one more byte */

    assert_int_equal(pump(t, charlie, leaves, 4), 1);
    assert_int_equal(leaves[0], small);
    assert_true(charlie->flight.full);
    assert_int_equal(charlie->flight.bytes, 1);
    assert_int_equal(charlie->cursor, small);
}

/* ---- receipt batches --------------------------------------------------------- */

static void test_receipt_leaves(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    metrics *mx = b->m;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    msg *m1 = send_msg(t, alpha, "bravo,charlie");
    msg *m2 = send_msg(t, alpha, "bravo,charlie");
    msg *m3 = send_msg(t, alpha, "charlie");
    deliver_credit(bravo, 2);
    uint64_t leaves[8];
    assert_int_equal(pump(t, bravo, leaves, 8), 2);
    uint64_t bytes = bravo->flight.bytes;
    assert_int_equal(bytes, m1->len + m2->len);
    assert_int_equal(bravo->credit, 0);

    uint8_t ghost[KETEN_MSG_ID_BYTES] = { 0x99 };
    uint8_t wrong_hash[KETEN_HASH_BYTES] = { 0x42 };
    keten_receipt_item items[] = {
        item(m1->id, m1->hash, KETEN__OUTCOME__OUTCOME_STORED, KETEN__REASON__REASON_NONE),
        item(
            m2->id, m2->hash, KETEN__OUTCOME__OUTCOME_REFUSED, KETEN__REASON__REASON_UNDECRYPTABLE),
        item(m3->id, m3->hash, KETEN__OUTCOME__OUTCOME_STORED, 0), /* charlie's, not bravo's */
        item(ghost, m1->hash, KETEN__OUTCOME__OUTCOME_STORED, 0), /* no such message */
        item(m1->id, wrong_hash, KETEN__OUTCOME__OUTCOME_REFUSED, KETEN__REASON__REASON_POLICY),
    };
    uint64_t log0 = fbroker_log_size(t->fb);
    receipts(t, bravo, "bravo", items, 5);
    assert_int_equal(bravo->credit, 5); /* every leaf returns its credit */
    assert_int_equal(b->out->n, 0); /* no Error frame */
    assert_int_equal(fbroker_log_size(t->fb), log0 + 3);
    Keten__AuditRecord *r = fbroker_record(t->fb, log0);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_RECEIPTED);
    assert_memory_equal(r->msg_id.data, m1->id, KETEN_MSG_ID_BYTES);
    assert_string_equal(r->node, "bravo");
    assert_string_equal(r->sender, "alpha");
    assert_int_equal(r->n_recipients, 1);
    assert_non_null(r->receipt);
    assert_int_equal(r->reason, KETEN__REASON__REASON_NONE);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    r = fbroker_record(t->fb, log0 + 1);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT);
    assert_memory_equal(r->msg_id.data, m2->id, KETEN_MSG_ID_BYTES);
    assert_int_equal(r->reason, KETEN__REASON__REASON_UNDECRYPTABLE);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    r = fbroker_record(t->fb, log0 + 2); /* one for the three that did not match */
    assert_int_equal(r->event, KETEN__EVENT__EVENT_REJECTED);
    assert_int_equal(r->reason, KETEN__REASON__REASON_BAD_RECEIPT);
    assert_string_equal(r->sender, "bravo");
    assert_int_equal(r->msg_id.len, 0);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    assert_int_equal(atomic_load(&mx->receipts), 1);
    assert_int_equal(atomic_load(&mx->refused_by_recipient), 1);
    assert_int_equal(atomic_load(&mx->leaves_unmatched), 3);
    assert_int_equal(atomic_load(&mx->receipt_batches), 1);

    assert_int_equal(rcpt_state(t, m1->leaf, "bravo"), STORE_RECEIPTED);
    assert_int_equal(rcpt_state(t, m2->leaf, "bravo"), STORE_REFUSED);
    assert_int_equal(rcpt_state(t, m1->leaf, "charlie"), STORE_QUEUED);
    assert_int_equal(rcpt_state(t, m3->leaf, "charlie"), STORE_QUEUED);
    assert_int_equal(bravo->flight.bytes, 0);

    /* Both answers went into notices for alpha. */
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    const uint8_t *v = NULL;
    size_t len = 0;
    assert_int_equal(store_notice_get(b->st, txn, "alpha", log0, &v, &len), KETEN_OK);
    assert_int_equal(v[0], OUTQ_RECEIPT_NOTICE);
    assert_int_equal(store_notice_get(b->st, txn, "alpha", log0 + 1, &v, &len), KETEN_OK);
    assert_int_equal(
        store_notice_get(b->st, txn, "alpha", log0 + 2, &v, &len), KETEN_ERR_NOT_FOUND);
    store_abort(&txn);
    assert_true(alpha->notices);

    /* Neither is delivered to bravo again, not even after a new Hello. */
    Keten__Hello h = KETEN__HELLO__INIT;
    h.tree_size = bravo->cp_sent;
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_hello(b, bravo, 2, &h), KETEN_OK);
    fbroker_end(t->fb);
    assert_int_equal(pump(t, bravo, leaves, 8), 0);

    /* A repeated leaf (m1 is still held for charlie) is ignored: no record
     * at all, still a credit. */
    uint64_t log1 = fbroker_log_size(t->fb);
    uint32_t credit = bravo->credit;
    receipts(t, bravo, "bravo", items, 1);
    assert_int_equal(fbroker_log_size(t->fb), log1);
    assert_int_equal(atomic_load(&mx->leaves_repeated), 1);
    assert_int_equal(atomic_load(&mx->leaves_unmatched), 3);
    assert_int_equal(bravo->credit, credit + 1);

    /* charlie answers m1 before it was handed out to charlie: no delivery
     * to answer, skipped and audited, still a credit. */
    conn *charlie = fbroker_conn_hello(t->fb, "charlie");
    uint64_t log_q = fbroker_log_size(t->fb);
    receipts(t, charlie, "charlie", items, 1);
    assert_int_equal(fbroker_log_size(t->fb), log_q + 1);
    r = fbroker_record(t->fb, log_q);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_REJECTED);
    assert_int_equal(r->reason, KETEN__REASON__REASON_BAD_RECEIPT);
    assert_string_equal(r->sender, "charlie");
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    assert_int_equal(atomic_load(&mx->leaves_unmatched), 4);
    assert_int_equal(rcpt_state(t, m1->leaf, "charlie"), STORE_QUEUED);
    assert_int_equal(charlie->credit, 1);

    /* Delivered, charlie answers m1 too: every recipient has, the message
     * goes. */
    assert_int_equal(pump(t, charlie, leaves, 1), 1);
    assert_int_equal(leaves[0], m1->leaf);
    receipts(t, charlie, "charlie", items, 1);
    bool found = true;
    get_msg(t, m1->leaf, &found);
    assert_false(found);
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    const uint8_t *env = NULL;
    assert_int_equal(store_envelope_get(b->st, txn, m1->leaf, &env, &len), KETEN_ERR_NOT_FOUND);
    assert_int_equal(store_envelope_get(b->st, txn, m2->leaf, &env, &len), KETEN_OK);
    store_abort(&txn);

    /* Its record is gone: a recipient's answer repeated now (a redelivery
     * that raced the first) is still only ignored, no record... */
    uint64_t log2 = fbroker_log_size(t->fb);
    receipts(t, charlie, "charlie", items, 1);
    assert_int_equal(fbroker_log_size(t->fb), log2);
    assert_int_equal(atomic_load(&mx->leaves_repeated), 2);
    assert_int_equal(atomic_load(&mx->leaves_unmatched), 4);
    /* ... while the same leaf from a node that was never a recipient (the
     * sender itself) is not: skipped and audited. */
    receipts(t, alpha, "alpha", items, 1);
    assert_int_equal(fbroker_log_size(t->fb), log2 + 1);
    assert_int_equal(atomic_load(&mx->leaves_unmatched), 5);
    r = fbroker_record(t->fb, log2);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_REJECTED);
    assert_int_equal(r->reason, KETEN__REASON__REASON_BAD_RECEIPT);
    assert_string_equal(r->sender, "alpha");
    keten_pb_free((ProtobufCMessage **)(void *)&r);
}

/* A batch that does not verify (another node's signature, a node that is not
 * the connection's) is refused whole: an Error, one "rejected" record,
 * nothing of it recorded, its credit still returned. */
static void test_receipt_batch_refused(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    msg *m1 = send_msg(t, alpha, "bravo");
    deliver_credit(bravo, 1);
    uint64_t leaves[2];
    assert_int_equal(pump(t, bravo, leaves, 2), 1);
    keten_receipt_item it = item(m1->id, m1->hash, KETEN__OUTCOME__OUTCOME_STORED, 0);
    uint64_t log0 = fbroker_log_size(t->fb);
    receipts(t, bravo, "charlie", &it, 1); /* charlie's batch on bravo's connection */
    assert_int_equal(bravo->credit, 1);
    assert_int_equal(fbroker_log_size(t->fb), log0 + 1);
    Keten__AuditRecord *r = fbroker_record(t->fb, log0);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_REJECTED);
    assert_int_equal(r->reason, KETEN__REASON__REASON_BAD_RECEIPT);
    assert_string_equal(r->sender, "bravo");
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    size_t i = fbroker_find(t->fb, 0, "bravo", KETEN__FRAME__BODY_ERROR);
    assert_true(i != SIZE_MAX);
    Keten__Frame *f = fbroker_frame(t->fb, i);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_BAD_RECEIPT);
    assert_int_equal(f->request_id, 5);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(rcpt_state(t, m1->leaf, "bravo"), STORE_DELIVERED);
    assert_int_equal(atomic_load(&b->m->receipt_batches), 0);

    /* Twin: bravo's own batch is taken. */
    receipts(t, bravo, "bravo", &it, 1);
    assert_int_equal(atomic_load(&b->m->receipts), 1);
    bool found = true;
    get_msg(t, m1->leaf, &found);
    assert_false(found);
}

/* What a recipient states in its signed head, the broker takes as stated
 * or refuses whole: a serial that is not its certificate's (one more, one
 * less) is refused BAD_RECEIPT, nothing recorded; a stored_at of 0 or of
 * 2^64 - 1 is the recipient's claim (protocol.md section 7.4: a receipt
 * does not prove when), recorded as signed, while the record's own time
 * stays the broker's. */
static void test_receipt_head_claims(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    msg *m1 = send_msg(t, alpha, "bravo");
    msg *m2 = send_msg(t, alpha, "bravo");
    deliver_credit(bravo, 2);
    uint64_t leaves[2];
    assert_int_equal(pump(t, bravo, leaves, 2), 2);
    uint64_t serial = keten_directory_find_id(broker_dir(b), "bravo")->serial;
    keten_receipt_item it1 = item(m1->id, m1->hash, KETEN__OUTCOME__OUTCOME_STORED, 0);
    keten_receipt_item it2 = item(m2->id, m2->hash, KETEN__OUTCOME__OUTCOME_STORED, 0);
    uint64_t wrong[] = { serial + 1, serial - 1 };
    for (size_t i = 0; i < 2; i++) {
        uint64_t log0 = fbroker_log_size(t->fb);
        receipts_head(t, bravo, "bravo", wrong[i], b->now, &it1, 1);
        size_t k = fbroker_find(t->fb, 0, "bravo", KETEN__FRAME__BODY_ERROR);
        assert_true(k != SIZE_MAX);
        Keten__Frame *f = fbroker_frame(t->fb, k);
        assert_int_equal(f->error->reason, KETEN__REASON__REASON_BAD_RECEIPT);
        keten_pb_free((ProtobufCMessage **)(void *)&f);
        assert_int_equal(fbroker_log_size(t->fb), log0 + 1); /* the rejection only */
        assert_int_equal(rcpt_state(t, m1->leaf, "bravo"), STORE_DELIVERED);
    }
    uint64_t claims[] = { 0, UINT64_MAX };
    keten_receipt_item its[] = { it1, it2 };
    for (size_t i = 0; i < 2; i++) {
        uint64_t log0 = fbroker_log_size(t->fb);
        receipts_head(t, bravo, "bravo", serial, claims[i], &its[i], 1);
        assert_int_equal(fbroker_find(t->fb, 0, "bravo", KETEN__FRAME__BODY_ERROR), SIZE_MAX);
        assert_int_equal(fbroker_log_size(t->fb), log0 + 1);
        Keten__AuditRecord *r = fbroker_record(t->fb, log0);
        assert_int_equal(r->event, KETEN__EVENT__EVENT_RECEIPTED);
        assert_int_equal(r->time, b->now);
        Keten__ReceiptBatchHead *h = NULL;
        assert_int_equal(KETEN_PB_UNPACK(keten__receipt_batch_head, r->receipt->head.data,
                             r->receipt->head.len, KETEN_RECEIPT_HEAD_MAX, "head", &h),
            KETEN_OK);
        assert_int_equal(h->stored_at, claims[i]);
        assert_int_equal(h->cert_serial, serial);
        keten_pb_free((ProtobufCMessage **)(void *)&h);
        keten_pb_free((ProtobufCMessage **)(void *)&r);
    }
    assert_int_equal(atomic_load(&b->m->receipts), 2);
}

/* ---- notices ------------------------------------------------------------------- */

static size_t stage_notices(ctx *t, conn *c, uint64_t *leaves, size_t max)
{
    broker *b = &t->fb->b;
    outq_clear(b->out);
    fbroker_begin(t->fb);
    assert_int_equal(deliver_notices(b, c), KETEN_OK);
    fbroker_end(t->fb);
    size_t n = 0;
    for (size_t i = 0;
         (i = fbroker_find(t->fb, i, c->node, KETEN__FRAME__BODY_RECEIPT_NOTICE)) != SIZE_MAX;
         i++) {
        Keten__Frame *f = fbroker_frame(t->fb, i);
        assert_true(n < max);
        leaves[n++] = f->receipt_notice->proof->leaf_index;
        keten_pb_free((ProtobufCMessage **)(void *)&f);
    }
    outq_clear(b->out);
    return n;
}

/* Two messages from alpha delivered to bravo and receipted (stored) by it;
 * returns the leaf of the first receipt record (the second follows it). */
static uint64_t two_receipted(ctx *t, conn *alpha, conn *bravo)
{
    msg *m1 = send_msg(t, alpha, "bravo");
    msg *m2 = send_msg(t, alpha, "bravo");
    deliver_credit(bravo, 2);
    uint64_t leaves[8];
    assert_int_equal(pump(t, bravo, leaves, 8), 2);
    keten_receipt_item items[] = {
        item(m1->id, m1->hash, KETEN__OUTCOME__OUTCOME_STORED, 0),
        item(m2->id, m2->hash, KETEN__OUTCOME__OUTCOME_STORED, 0),
    };
    uint64_t first = fbroker_log_size(t->fb);
    receipts(t, bravo, "bravo", items, 2);
    return first;
}

static void notice_ack(ctx *t, conn *c, uint64_t *leaves, size_t n)
{
    Keten__NoticeAck na = KETEN__NOTICE_ACK__INIT;
    na.leaf_indexes = leaves;
    na.n_leaf_indexes = n;
    fbroker_begin(t->fb);
    assert_int_equal(deliver_notice_ack(&t->fb->b, c, &na), KETEN_OK);
    fbroker_end(t->fb);
}

/* A NoticeAck is read up to DELIVER_NOTICE_ACK_MAX leaf indexes: a notice
 * named at that place is confirmed, one named just after it is not (the
 * rest is counted as unknown), and the connection goes on. */
static void test_notice_ack_limit(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    uint64_t leaves[8];
    uint64_t first = two_receipted(t, alpha, bravo);
    assert_int_equal(stage_notices(t, alpha, leaves, 8), 2);

    /* The second notice last of DELIVER_NOTICE_ACK_MAX + 1 indexes: not
     * read, still stored. */
    size_t n = DELIVER_NOTICE_ACK_MAX + 1;
    uint64_t *v = calloc(n, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        v[i] = UINT64_MAX - i; /* no notice */
    }
    v[n - 1] = first + 1;
    notice_ack(t, alpha, v, n);
    assert_int_equal(atomic_load(&b->m->notices_confirmed), 0);
    assert_int_equal(atomic_load(&b->m->notice_acks_unknown), n);

    /* Twin: at place DELIVER_NOTICE_ACK_MAX, it is read and confirmed. */
    v[n - 2] = first + 1;
    notice_ack(t, alpha, v, n - 1);
    assert_int_equal(atomic_load(&b->m->notices_confirmed), 1);
    assert_int_equal(alpha->flight.n_notices, 1);
    free(v);
    MDB_txn *txn = NULL;
    const uint8_t *val = NULL;
    size_t len = 0;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    assert_int_equal(store_notice_get(b->st, txn, "alpha", first, &val, &len), KETEN_OK);
    assert_int_equal(
        store_notice_get(b->st, txn, "alpha", first + 1, &val, &len), KETEN_ERR_NOT_FOUND);
    store_abort(&txn);
}

static void test_notices_until_confirmed(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    uint64_t leaves[8];
    uint64_t first = two_receipted(t, alpha, bravo);

    /* Nothing for a connection without a Hello, nor for bravo (it has none). */
    assert_int_equal(stage_notices(t, bravo, leaves, 8), 0);
    assert_int_equal(stage_notices(t, alpha, leaves, 8), 2);
    assert_int_equal(leaves[0], first);
    assert_int_equal(leaves[1], first + 1);
    assert_int_equal(alpha->flight.n_notices, 2);
    /* Sent once; not again before the resend time. */
    assert_int_equal(stage_notices(t, alpha, leaves, 8), 0);

    /* bravo confirming alpha's notices deletes nothing. */
    uint64_t both[] = { first, first + 1 };
    notice_ack(t, bravo, both, 2);
    assert_int_equal(atomic_load(&b->m->notice_acks_unknown), 2);
    assert_int_equal(atomic_load(&b->m->notices_confirmed), 0);
    /* alpha confirms the first; the second is sent again once it is due. */
    notice_ack(t, alpha, both, 1);
    assert_int_equal(atomic_load(&b->m->notices_confirmed), 1);
    assert_int_equal(alpha->flight.n_notices, 1);
    alpha->notice_v[0].sent_ms -= DELIVER_NOTICE_RESEND_MS;
    assert_int_equal(stage_notices(t, alpha, leaves, 8), 1);
    assert_int_equal(leaves[0], first + 1);
    assert_int_equal(atomic_load(&b->m->notices_resent), 1);

    /* A new connection of alpha gets every unconfirmed one again: the
     * second only. */
    conns_remove(b->conns, alpha);
    alpha = fbroker_conn_hello(t->fb, "alpha");
    assert_int_equal(stage_notices(t, alpha, leaves, 8), 1);
    assert_int_equal(leaves[0], first + 1);
    notice_ack(t, alpha, both + 1, 1);
    conns_remove(b->conns, alpha);
    alpha = fbroker_conn_hello(t->fb, "alpha");
    assert_int_equal(stage_notices(t, alpha, leaves, 8), 0);
}

/* ---- expiry and the retry horizon ------------------------------------------------ */

static void set_lifetime(Keten__Header *h, void *arg)
{
    h->expires_at = h->created_at + *(const uint64_t *)arg;
}

static void expire(ctx *t)
{
    fbroker_begin(t->fb);
    assert_int_equal(deliver_expire(&t->fb->b), KETEN_OK);
    fbroker_end(t->fb);
    outq_clear(t->fb->b.out);
}

static bool remembered(ctx *t, const uint8_t *id)
{
    broker *b = &t->fb->b;
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    store_seen seen;
    bool found = false;
    assert_int_equal(store_seen_get(b->st, txn, id, &seen, &found), KETEN_OK);
    store_abort(&txn);
    return found;
}

static void test_expiry(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    b->now = keten_now_ms();
    size_t len = 0, flen = 0;
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint8_t *env = fixture_seal(t->fx, "alpha", "bravo,charlie", SIGNAL, id, &len);
    uint64_t life = 60000;
    uint8_t *forged
        = forge_envelope(env, len, fixture_node(t->fx, "alpha"), set_lifetime, &life, &flen);
    free(env);
    submit_prep p;
    submit_prepare(b, alpha, forged, flen, true, &p);
    uint64_t created = p.v->header->created_at;
    fbroker_begin(t->fb);
    uint64_t leaf = fbroker_log_size(t->fb);
    assert_int_equal(submit_apply(b, alpha, 1, forged, flen, &p), KETEN_OK);
    fbroker_end(t->fb);
    submit_prep_clear(&p);
    free(forged);
    uint64_t first_seen = b->now;
    conn *charlie = fbroker_conn_hello(t->fb, "charlie");
    deliver_credit(charlie, 1);
    uint64_t leaves[2];
    assert_int_equal(pump(t, charlie, leaves, 2), 1);
    uint8_t hash[KETEN_HASH_BYTES];
    bool found = false;
    store_msg m = get_msg(t, leaf, &found);
    memcpy(hash, m.envelope_hash, sizeof hash);
    keten_receipt_item it = item(id, hash, KETEN__OUTCOME__OUTCOME_STORED, 0);
    receipts(t, charlie, "charlie", &it, 1);

    /* Not yet due: nothing happens. */
    uint64_t log0 = fbroker_log_size(t->fb);
    b->now = created + life - 1;
    expire(t);
    assert_int_equal(fbroker_log_size(t->fb), log0);
    get_msg(t, leaf, &found);
    assert_true(found);

    b->now = created + life;
    expire(t);
    assert_int_equal(fbroker_log_size(t->fb), log0 + 1);
    Keten__AuditRecord *r = fbroker_record(t->fb, log0);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_EXPIRED);
    assert_string_equal(r->sender, "alpha");
    assert_int_equal(r->n_recipients, 1); /* only the one that never answered */
    assert_string_equal(r->recipients[0], "bravo");
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    get_msg(t, leaf, &found);
    assert_false(found);
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    const uint8_t *v = NULL;
    assert_int_equal(store_notice_get(b->st, txn, "alpha", log0, &v, &len), KETEN_OK);
    assert_int_equal(v[0], OUTQ_EXPIRED_NOTICE);
    store_abort(&txn);
    assert_int_equal(atomic_load(&b->m->expired), 1);
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    deliver_credit(bravo, 1);
    assert_int_equal(pump(t, bravo, leaves, 2), 0); /* gone from its queue */

    /* The msg_id is remembered for the horizon: the longer of the retry
     * horizon and a message's longest life plus the clock window. */
    t->fb->cfg.retry_horizon_ms = 1000;
    uint64_t horizon = KETEN_MAX_LIFETIME_DEFAULT_MS + t->fb->cfg.clock_window_ms;
    b->now = first_seen + horizon;
    expire(t);
    assert_true(remembered(t, id));
    b->now = first_seen + horizon + 1;
    expire(t);
    assert_false(remembered(t, id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_hello_no_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_unreceipted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_rewind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_budget_halves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_delivery_always_goes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipt_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipt_batch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipt_head_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notices_until_confirmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notice_ack_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
