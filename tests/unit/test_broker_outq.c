/* broker_outq: the broker's queue of frames held until the batch commits
 * (broker/outq.h). Real: the queue, the frames it serializes, and, for what
 * is sent, a ZeroMQ ROUTER socket with one DEALER per node on inproc://
 * (what outq_flush writes to is read back). Set up by hand: the connections
 * (a routing id, the Hello and revoked flags: all the queue reads of one)
 * and the prover, whose callbacks stage a marker checkpoint frame per
 * connection and return a canned LeafProof of the slot's leaf (the real
 * prover, checkpointer.c, is tested in test_broker_checkpointer.c).
 *
 * Staging keeps the order frames were staged in; outq_prove() puts a
 * connection's checkpoint frames right before its first proof frame, once
 * per connection, fills each slot with the proof of its own leaf, and drops
 * the slots of connections without an accepted Hello (twin: their ready
 * frames stay). A failed batch sends nothing: a prover that fails leaves the
 * queue to be cleared, and a cleared queue flushes no frame (twin: the same
 * queue proven sends every frame, in order); a proof slot that was never
 * proven is never sent, whatever else is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <zmq.h>

#include "conns.h"
#include "outq.h"
#include "pb.h"

#define ROUTER_ENDPOINT "inproc://test-broker-outq"
#define RECV_TIMEOUT_MS 2000 /* a bound on a wait for a frame that must come */
#define MARKER_REQUEST 999
#define PROOF_TREE_SIZE 99

/* ---- connections and the prover ------------------------------------------ */

static conn *make_conn(const char *node, bool hello)
{
    conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    snprintf(c->node, sizeof c->node, "%s", node);
    c->rid_len = strlen(node);
    memcpy(c->rid, node, c->rid_len);
    c->hello = hello;
    return c;
}

typedef struct fake_prover {
    size_t checkpoint_calls;
    size_t proof_calls;
    size_t fail_proof_at; /* 1-based call that fails; 0: none */
    bool fail_checkpoints;
    uint8_t leaf_bytes[4];
    Keten__LeafProof lp;
} fake_prover;

/* A checkpoint frame whose note names the connection. */
static keten_err fake_checkpoints(void *ctx, outq *q, conn *c)
{
    fake_prover *fp = ctx;
    fp->checkpoint_calls++;
    if (fp->fail_checkpoints) {
        return keten_err_set(KETEN_ERR_STORE, "test: checkpoints fail");
    }
    char note[64];
    snprintf(note, sizeof note, "cp:%s", c->node);
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    f.checkpoint = &cf;
    return outq_frame(q, c, 0, &f);
}

static keten_err fake_proof(void *ctx, uint64_t leaf, const Keten__LeafProof **out)
{
    fake_prover *fp = ctx;
    fp->proof_calls++;
    if (fp->fail_proof_at != 0 && fp->proof_calls == fp->fail_proof_at) {
        *out = NULL;
        return keten_err_set(KETEN_ERR_STORE, "test: proof %zu fails", fp->proof_calls);
    }
    keten__leaf_proof__init(&fp->lp);
    fp->lp.tree_size = PROOF_TREE_SIZE;
    fp->lp.leaf_index = leaf;
    fp->leaf_bytes[0] = (uint8_t)leaf;
    fp->lp.leaf.data = fp->leaf_bytes;
    fp->lp.leaf.len = sizeof fp->leaf_bytes;
    *out = &fp->lp;
    return KETEN_OK;
}

static outq_prover prover_of(fake_prover *fp)
{
    return (outq_prover) { fp, fake_checkpoints, fake_proof };
}

/* ---- reading the queue --------------------------------------------------- */

static Keten__Frame *frame_at(const outq *q, size_t i)
{
    assert_true(i < q->n);
    assert_int_equal(q->v[i].kind, OUTQ_READY);
    assert_non_null(q->v[i].data);
    Keten__Frame *f = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK(keten__frame, q->v[i].data, q->v[i].len, KETEN_FRAME_MAX, "frame", &f),
        KETEN_OK);
    return f;
}

static void free_frame(Keten__Frame **f)
{
    keten_pb_free((ProtobufCMessage **)(void *)f);
}

static bool rid_is(const outq_item *it, const char *node)
{
    return it->rid_len == strlen(node) && memcmp(it->rid, node, it->rid_len) == 0;
}

/* What the item at i is: for node, this body case, and (proof frames) the
 * proof of leaf, or (checkpoints) the marker note of node. */
static void expect_item(
    const outq *q, size_t i, const char *node, Keten__Frame__BodyCase body, uint64_t leaf)
{
    assert_true(rid_is(&q->v[i], node));
    Keten__Frame *f = frame_at(q, i);
    assert_int_equal(f->body_case, body);
    const Keten__LeafProof *p = NULL;
    switch (body) {
    case KETEN__FRAME__BODY_SUBMIT_ACK:
        p = f->submit_ack->proof;
        break;
    case KETEN__FRAME__BODY_DELIVER:
        p = f->deliver->proof;
        break;
    case KETEN__FRAME__BODY_RECEIPT_NOTICE:
        p = f->receipt_notice->proof;
        break;
    case KETEN__FRAME__BODY_EXPIRED:
        p = f->expired->proof;
        break;
    case KETEN__FRAME__BODY_ERROR:
        p = f->error->proof; /* NULL but for DUPLICATE */
        break;
    case KETEN__FRAME__BODY_CHECKPOINT: {
        char note[64];
        snprintf(note, sizeof note, "cp:%s", node);
        assert_string_equal(f->checkpoint->note, note);
        break;
    }
    default:
        break;
    }
    if (p != NULL) {
        assert_int_equal(p->leaf_index, leaf);
        assert_int_equal(p->tree_size, PROOF_TREE_SIZE);
    }
    free_frame(&f);
}

static void stage_credit_like(outq *q, const conn *c, uint64_t request_id, uint32_t credit)
{
    Keten__Credit cr = KETEN__CREDIT__INIT;
    cr.credit = credit;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &cr;
    assert_int_equal(outq_frame(q, c, request_id, &f), KETEN_OK);
}

/* A batch's worth of frames for a (Hello accepted) and b (Hello accepted):
 *   0 a  Error (ready)          1 b  Credit (ready, request 7)
 *   2 a  SubmitAck slot, leaf 3  3 b  Deliver slot, leaf 5
 *   4 a  ready raw bytes         5 a  Duplicate slot, leaf 2
 *   6 b  ReceiptNotice slot, 8   7 a  ExpiredNotice slot, leaf 9 */
static const uint8_t ENV[] = { 0x0a, 0x01, 'x' };
static const uint8_t DUP_ID[KETEN_MSG_ID_BYTES] = { 0xd0, 0x0d };

static void stage_batch(outq *q, conn *a, conn *b)
{
    assert_int_equal(
        outq_error(q, a, 1, KETEN__REASON__REASON_MALFORMED, NULL, "bad", 0), KETEN_OK);
    stage_credit_like(q, b, 7, 3);
    assert_int_equal(outq_proof(q, a, 11, OUTQ_SUBMIT_ACK, 3), KETEN_OK);
    assert_int_equal(outq_deliver(q, b, ENV, sizeof ENV, 5), KETEN_OK);
    Keten__Frame raw = KETEN__FRAME__INIT;
    raw.request_id = 42;
    raw.body_case = KETEN__FRAME__BODY_CREDIT;
    Keten__Credit cr = KETEN__CREDIT__INIT;
    raw.credit = &cr;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(keten_pb_pack(&raw.base, &buf, &len), KETEN_OK);
    assert_int_equal(outq_raw(q, a, buf, len), KETEN_OK);
    free(buf);
    assert_int_equal(outq_duplicate(q, a, 12, DUP_ID, "again", 2), KETEN_OK);
    assert_int_equal(outq_proof(q, b, 0, OUTQ_RECEIPT_NOTICE, 8), KETEN_OK);
    assert_int_equal(outq_proof(q, a, 0, OUTQ_EXPIRED_NOTICE, 9), KETEN_OK);
}

/* ---- staging and proving -------------------------------------------------- */

static void test_staging_order(void **state)
{
    (void)state;
    outq *q = outq_new();
    conn *a = make_conn("alpha", true);
    conn *b = make_conn("bravo", true);
    stage_batch(q, a, b);
    assert_int_equal(q->n, 8);
    assert_int_equal(q->n_proofs, 5);
    const enum outq_kind kinds[] = { OUTQ_READY, OUTQ_READY, OUTQ_SUBMIT_ACK, OUTQ_DELIVER,
        OUTQ_READY, OUTQ_DUPLICATE, OUTQ_RECEIPT_NOTICE, OUTQ_EXPIRED_NOTICE };
    const char *nodes[]
        = { "alpha", "bravo", "alpha", "bravo", "alpha", "alpha", "bravo", "alpha" };
    for (size_t i = 0; i < q->n; i++) {
        assert_int_equal(q->v[i].kind, kinds[i]);
        assert_true(rid_is(&q->v[i], nodes[i]));
    }
    /* Only ready frames count as bytes to send before the proofs exist. */
    assert_int_equal(q->bytes, q->v[0].len + q->v[1].len + q->v[4].len);
    Keten__Frame *f = frame_at(q, 1);
    assert_int_equal(f->request_id, 7);
    free_frame(&f);

    fake_prover fp = { 0 };
    outq_prover p = prover_of(&fp);
    assert_int_equal(outq_prove(q, &p), KETEN_OK);
    assert_int_equal(q->n_proofs, 0);
    assert_int_equal(fp.proof_calls, 5);
    assert_int_equal(fp.checkpoint_calls, 2);
    assert_int_equal(q->n, 10);
    /* The order staged, a connection's checkpoint right before its first
     * proof frame (not before its earlier ready frames). */
    expect_item(q, 0, "alpha", KETEN__FRAME__BODY_ERROR, 0);
    expect_item(q, 1, "bravo", KETEN__FRAME__BODY_CREDIT, 0);
    expect_item(q, 2, "alpha", KETEN__FRAME__BODY_CHECKPOINT, 0);
    expect_item(q, 3, "alpha", KETEN__FRAME__BODY_SUBMIT_ACK, 3);
    expect_item(q, 4, "bravo", KETEN__FRAME__BODY_CHECKPOINT, 0);
    expect_item(q, 5, "bravo", KETEN__FRAME__BODY_DELIVER, 5);
    expect_item(q, 6, "alpha", KETEN__FRAME__BODY_CREDIT, 0);
    expect_item(q, 7, "alpha", KETEN__FRAME__BODY_ERROR, 2);
    expect_item(q, 8, "bravo", KETEN__FRAME__BODY_RECEIPT_NOTICE, 8);
    expect_item(q, 9, "alpha", KETEN__FRAME__BODY_EXPIRED, 9);
    /* Each slot's own data and request id went into its frame. */
    f = frame_at(q, 3);
    assert_int_equal(f->request_id, 11);
    free_frame(&f);
    f = frame_at(q, 5);
    assert_int_equal(f->deliver->envelope.len, sizeof ENV);
    assert_memory_equal(f->deliver->envelope.data, ENV, sizeof ENV);
    free_frame(&f);
    f = frame_at(q, 6);
    assert_int_equal(f->request_id, 42);
    free_frame(&f);
    f = frame_at(q, 7);
    assert_int_equal(f->request_id, 12);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_DUPLICATE);
    assert_int_equal(f->error->msg_id.len, KETEN_MSG_ID_BYTES);
    assert_memory_equal(f->error->msg_id.data, DUP_ID, KETEN_MSG_ID_BYTES);
    assert_string_equal(f->error->detail, "again");
    free_frame(&f);
    assert_true(a->cp_staged);
    assert_true(b->cp_staged);
    size_t bytes = 0;
    for (size_t i = 0; i < q->n; i++) {
        bytes += q->v[i].len;
    }
    assert_int_equal(q->bytes, bytes);

    outq_destroy(&q);
    assert_null(q);
    free(a);
    free(b);
}

/* A connection whose checkpoints were staged already in this batch
 * (cp_staged) does not get them twice; one without a proof slot gets none. */
static void test_checkpoints_once_per_connection(void **state)
{
    (void)state;
    outq *q = outq_new();
    conn *a = make_conn("alpha", true);
    conn *b = make_conn("bravo", true);
    conn *c = make_conn("charlie", true);
    a->cp_staged = true;
    assert_int_equal(outq_proof(q, a, 1, OUTQ_SUBMIT_ACK, 1), KETEN_OK);
    assert_int_equal(outq_proof(q, b, 2, OUTQ_SUBMIT_ACK, 2), KETEN_OK);
    assert_int_equal(outq_proof(q, b, 3, OUTQ_SUBMIT_ACK, 4), KETEN_OK);
    stage_credit_like(q, c, 4, 1);
    fake_prover fp = { 0 };
    outq_prover p = prover_of(&fp);
    assert_int_equal(outq_prove(q, &p), KETEN_OK);
    assert_int_equal(fp.checkpoint_calls, 1);
    assert_int_equal(q->n, 5);
    expect_item(q, 0, "alpha", KETEN__FRAME__BODY_SUBMIT_ACK, 1);
    expect_item(q, 1, "bravo", KETEN__FRAME__BODY_CHECKPOINT, 0);
    expect_item(q, 2, "bravo", KETEN__FRAME__BODY_SUBMIT_ACK, 2);
    expect_item(q, 3, "bravo", KETEN__FRAME__BODY_SUBMIT_ACK, 4);
    expect_item(q, 4, "charlie", KETEN__FRAME__BODY_CREDIT, 0);
    assert_false(c->cp_staged);
    outq_destroy(&q);
    free(a);
    free(b);
    free(c);
}

/* No Hello accepted (or revoked): its proof slots are dropped, no
 * checkpoint is made for it; its ready frames stay. Twin: the connection
 * with a Hello gets everything. */
static void test_no_hello_no_proof_frames(void **state)
{
    (void)state;
    outq *q = outq_new();
    conn *a = make_conn("alpha", false);
    conn *b = make_conn("bravo", true);
    conn *r = make_conn("romeo", true);
    r->revoked = true;
    assert_int_equal(
        outq_error(q, a, 1, KETEN__REASON__REASON_MALFORMED, NULL, "hello?", 0), KETEN_OK);
    assert_int_equal(outq_proof(q, a, 2, OUTQ_SUBMIT_ACK, 1), KETEN_OK);
    assert_int_equal(outq_deliver(q, a, ENV, sizeof ENV, 2), KETEN_OK);
    assert_int_equal(outq_proof(q, r, 3, OUTQ_SUBMIT_ACK, 3), KETEN_OK);
    assert_int_equal(outq_proof(q, b, 4, OUTQ_SUBMIT_ACK, 4), KETEN_OK);
    fake_prover fp = { 0 };
    outq_prover p = prover_of(&fp);
    assert_int_equal(outq_prove(q, &p), KETEN_OK);
    assert_int_equal(fp.checkpoint_calls, 1);
    assert_int_equal(fp.proof_calls, 1);
    assert_int_equal(q->n, 3);
    expect_item(q, 0, "alpha", KETEN__FRAME__BODY_ERROR, 0);
    expect_item(q, 1, "bravo", KETEN__FRAME__BODY_CHECKPOINT, 0);
    expect_item(q, 2, "bravo", KETEN__FRAME__BODY_SUBMIT_ACK, 4);
    assert_false(a->cp_staged);
    assert_false(r->cp_staged);
    outq_destroy(&q);
    free(a);
    free(b);
    free(r);
}

/* outq_proof() is for the kinds without extra data only. */
static void test_proof_kinds(void **state)
{
    (void)state;
    outq *q = outq_new();
    conn *a = make_conn("alpha", true);
    assert_int_equal(outq_proof(q, a, 1, OUTQ_READY, 1), KETEN_ERR_INVALID);
    assert_int_equal(outq_proof(q, a, 1, OUTQ_DELIVER, 1), KETEN_ERR_INVALID);
    assert_int_equal(outq_proof(q, a, 1, OUTQ_DUPLICATE, 1), KETEN_ERR_INVALID);
    assert_int_equal(q->n, 0);
    assert_int_equal(outq_proof(q, a, 1, OUTQ_RECEIPT_NOTICE, 1), KETEN_OK);
    assert_int_equal(q->n_proofs, 1);
    outq_destroy(&q);
    free(a);
}

/* An error's detail is printable and at most 200 bytes; the rule goes only
 * with a POLICY refusal. */
static void test_error_frames(void **state)
{
    (void)state;
    outq *q = outq_new();
    conn *a = make_conn("alpha", true);
    char detail[400];
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    detail[0] = '\n';
    detail[1] = (char)0xc3;
    uint8_t id[KETEN_MSG_ID_BYTES] = { 1 };
    assert_int_equal(outq_error(q, a, 5, KETEN__REASON__REASON_POLICY, id, detail, 7), KETEN_OK);
    assert_int_equal(outq_error(q, a, 6, KETEN__REASON__REASON_EXPIRED, NULL, NULL, 7), KETEN_OK);
    Keten__Frame *f = frame_at(q, 0);
    assert_int_equal(f->request_id, 5);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_POLICY);
    assert_int_equal(f->error->rule, 7);
    assert_int_equal(strlen(f->error->detail), 200);
    assert_int_equal(f->error->detail[0], '?');
    assert_int_equal(f->error->detail[1], '?');
    assert_int_equal(f->error->msg_id.len, KETEN_MSG_ID_BYTES);
    free_frame(&f);
    f = frame_at(q, 1);
    assert_int_equal(f->error->rule, 0);
    assert_string_equal(f->error->detail, "");
    assert_int_equal(f->error->msg_id.len, 0);
    free_frame(&f);
    outq_destroy(&q);
    free(a);
}

/* A frame over KETEN_FRAME_MAX is refused and nothing is staged; twin: the
 * largest envelope fits. */
static void test_frame_cap(void **state)
{
    (void)state;
    outq *q = outq_new();
    conn *a = make_conn("alpha", true);
    size_t big = KETEN_FRAME_MAX + 1;
    uint8_t *env = calloc(1, big);
    assert_non_null(env);
    Keten__Deliver d = KETEN__DELIVER__INIT;
    d.envelope.data = env;
    d.envelope.len = big;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_DELIVER;
    f.deliver = &d;
    assert_int_equal(outq_frame(q, a, 1, &f), KETEN_ERR_TOO_LARGE);
    assert_int_equal(q->n, 0);
    assert_int_equal(q->bytes, 0);
    d.envelope.len = KETEN_ENVELOPE_MAX;
    assert_int_equal(outq_frame(q, a, 1, &f), KETEN_OK);
    assert_int_equal(q->n, 1);
    free(env);
    outq_destroy(&q);
    free(a);
}

/* ---- what is sent -------------------------------------------------------- */

typedef struct sockets {
    void *ctx;
    void *router;
    void *dealer[2]; /* alpha, bravo */
} sockets;

static void *dealer_for(void *ctx, void *router, const char *node)
{
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(d);
    int zero = 0, timeout = RECV_TIMEOUT_MS;
    assert_int_equal(zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(d, ZMQ_RCVTIMEO, &timeout, sizeof timeout), 0);
    assert_int_equal(zmq_setsockopt(d, ZMQ_ROUTING_ID, node, strlen(node)), 0);
    assert_int_equal(zmq_connect(d, ROUTER_ENDPOINT), 0);
    /* The ROUTER knows a peer once it has read from it. */
    assert_int_equal(zmq_send(d, "hi", 2, 0), 2);
    char rid[64], body[8];
    int n = zmq_recv(router, rid, sizeof rid, 0);
    assert_int_equal(n, (int)strlen(node));
    assert_memory_equal(rid, node, strlen(node));
    assert_int_equal(zmq_recv(router, body, sizeof body, 0), 2);
    return d;
}

static sockets *sockets_new(void)
{
    sockets *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->ctx = zmq_ctx_new();
    assert_non_null(s->ctx);
    s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
    assert_non_null(s->router);
    int zero = 0, timeout = RECV_TIMEOUT_MS;
    assert_int_equal(zmq_setsockopt(s->router, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(s->router, ZMQ_RCVTIMEO, &timeout, sizeof timeout), 0);
    assert_int_equal(zmq_bind(s->router, ROUTER_ENDPOINT), 0);
    s->dealer[0] = dealer_for(s->ctx, s->router, "alpha");
    s->dealer[1] = dealer_for(s->ctx, s->router, "bravo");
    return s;
}

static void sockets_destroy(sockets **s_p)
{
    sockets *s = *s_p;
    zmq_close(s->dealer[0]);
    zmq_close(s->dealer[1]);
    zmq_close(s->router);
    zmq_ctx_term(s->ctx);
    free(s);
    *s_p = NULL;
}

/* The next frame a dealer receives, parsed; NULL when none comes. */
static Keten__Frame *recv_frame(void *dealer)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, dealer, 0) < 0) {
        zmq_msg_close(&m);
        return NULL;
    }
    Keten__Frame *f = NULL;
    assert_int_equal(KETEN_PB_UNPACK(keten__frame, zmq_msg_data(&m), zmq_msg_size(&m),
                         KETEN_FRAME_MAX, "received frame", &f),
        KETEN_OK);
    zmq_msg_close(&m);
    return f;
}

/* After what is under test, a marker frame is flushed to every peer (a
 * ROUTER delivers to one peer in the order sent): each peer must get
 * exactly bodies, then the marker. */
static void flush_markers(outq *q, void *router, conn *a, conn *b)
{
    stage_credit_like(q, a, MARKER_REQUEST, 0);
    stage_credit_like(q, b, MARKER_REQUEST, 0);
    assert_int_equal(outq_flush(q, router), 2);
}

static void expect_received(void *dealer, const Keten__Frame__BodyCase *bodies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        Keten__Frame *f = recv_frame(dealer);
        assert_non_null(f);
        assert_int_equal(f->body_case, bodies[i]);
        assert_int_not_equal(f->request_id, MARKER_REQUEST);
        free_frame(&f);
    }
    Keten__Frame *marker = recv_frame(dealer);
    assert_non_null(marker);
    assert_int_equal(marker->body_case, KETEN__FRAME__BODY_CREDIT);
    assert_int_equal(marker->request_id, MARKER_REQUEST);
    free_frame(&marker);
}

/* A proven batch: every frame goes, each peer's in the order staged. */
static void test_flush_sends_proven_batch(void **state)
{
    (void)state;
    sockets *s = sockets_new();
    outq *q = outq_new();
    conn *a = make_conn("alpha", true);
    conn *b = make_conn("bravo", true);
    stage_batch(q, a, b);
    fake_prover fp = { 0 };
    outq_prover p = prover_of(&fp);
    assert_int_equal(outq_prove(q, &p), KETEN_OK);
    assert_int_equal(outq_flush(q, s->router), 10);
    assert_int_equal(q->n, 0);
    assert_int_equal(q->bytes, 0);
    flush_markers(q, s->router, a, b);
    const Keten__Frame__BodyCase to_a[]
        = { KETEN__FRAME__BODY_ERROR, KETEN__FRAME__BODY_CHECKPOINT, KETEN__FRAME__BODY_SUBMIT_ACK,
              KETEN__FRAME__BODY_CREDIT, KETEN__FRAME__BODY_ERROR, KETEN__FRAME__BODY_EXPIRED };
    const Keten__Frame__BodyCase to_b[]
        = { KETEN__FRAME__BODY_CREDIT, KETEN__FRAME__BODY_CHECKPOINT, KETEN__FRAME__BODY_DELIVER,
              KETEN__FRAME__BODY_RECEIPT_NOTICE };
    expect_received(s->dealer[0], to_a, sizeof to_a / sizeof *to_a);
    expect_received(s->dealer[1], to_b, sizeof to_b / sizeof *to_b);
    outq_destroy(&q);
    free(a);
    free(b);
    sockets_destroy(&s);
}

/* The reject twin: the prover fails at the third proof (a batch that did not
 * reach its end); the caller clears the queue, as server.c does for a
 * failed batch, and nothing at all is sent. */
static void test_failed_batch_sends_nothing(void **state)
{
    (void)state;
    sockets *s = sockets_new();
    outq *q = outq_new();
    conn *a = make_conn("alpha", true);
    conn *b = make_conn("bravo", true);
    stage_batch(q, a, b);
    fake_prover fp = { .fail_proof_at = 3 };
    outq_prover p = prover_of(&fp);
    assert_int_equal(outq_prove(q, &p), KETEN_ERR_STORE);
    outq_clear(q);
    assert_int_equal(q->n, 0);
    assert_int_equal(q->n_proofs, 0);
    assert_int_equal(outq_flush(q, s->router), 0);
    flush_markers(q, s->router, a, b);
    expect_received(s->dealer[0], NULL, 0);
    expect_received(s->dealer[1], NULL, 0);

    /* The same with the checkpoints failing. */
    a->cp_staged = b->cp_staged = false;
    stage_batch(q, a, b);
    fake_prover fc = { .fail_checkpoints = true };
    p = prover_of(&fc);
    assert_int_equal(outq_prove(q, &p), KETEN_ERR_STORE);
    assert_int_equal(fc.proof_calls, 0);
    outq_clear(q);
    assert_int_equal(outq_flush(q, s->router), 0);
    flush_markers(q, s->router, a, b);
    expect_received(s->dealer[0], NULL, 0);
    expect_received(s->dealer[1], NULL, 0);

    /* The queue is usable for the next batch. */
    stage_credit_like(q, a, 1, 1);
    assert_int_equal(outq_flush(q, s->router), 1);
    flush_markers(q, s->router, a, b);
    const Keten__Frame__BodyCase credit[] = { KETEN__FRAME__BODY_CREDIT };
    expect_received(s->dealer[0], credit, 1);
    expect_received(s->dealer[1], NULL, 0);
    outq_destroy(&q);
    free(a);
    free(b);
    sockets_destroy(&s);
}

/* Flushed without outq_prove(): the ready frames go, never a slot without
 * its proof. */
static void test_unproven_slots_never_sent(void **state)
{
    (void)state;
    sockets *s = sockets_new();
    outq *q = outq_new();
    conn *a = make_conn("alpha", true);
    conn *b = make_conn("bravo", true);
    stage_batch(q, a, b);
    assert_int_equal(outq_flush(q, s->router), 3);
    assert_int_equal(q->n, 0);
    flush_markers(q, s->router, a, b);
    const Keten__Frame__BodyCase to_a[] = { KETEN__FRAME__BODY_ERROR, KETEN__FRAME__BODY_CREDIT };
    const Keten__Frame__BodyCase to_b[] = { KETEN__FRAME__BODY_CREDIT };
    expect_received(s->dealer[0], to_a, 2);
    expect_received(s->dealer[1], to_b, 1);
    outq_destroy(&q);
    free(a);
    free(b);
    sockets_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_staging_order),
        cmocka_unit_test(test_checkpoints_once_per_connection),
        cmocka_unit_test(test_no_hello_no_proof_frames),
        cmocka_unit_test(test_proof_kinds),
        cmocka_unit_test(test_error_frames),
        cmocka_unit_test(test_frame_cap),
        cmocka_unit_test(test_flush_sends_proven_batch),
        cmocka_unit_test(test_failed_batch_sends_nothing),
        cmocka_unit_test(test_unproven_slots_never_sent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
