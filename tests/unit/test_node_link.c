/* node_link: the node's connection to the broker (client/link.h): a real
 * CurveZMQ DEALER (keten_link_new) and, as the broker's end, a ROUTER bound
 * here on ipc:// as a CurveZMQ server (fixture_node.h), both in this
 * process. The handshake is seen through the socket monitor (twin: a
 * broker's end with another key fails it, with the reason kept); frames
 * sent while a group commit holds them leave only when it commits, in
 * order; when it fails they are dropped, each leaf of a dropped receipt
 * batch returning its credit. What the broker sends is read one frame per
 * message (twins: several parts, bytes that are no frame, nothing
 * waiting); a frame over the cap is not sent. The end going away is seen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sodium.h>
#include <zmq.h>

#include "fixture.h"
#include "fixture_node.h"
#include "link.h"
#include "pb.h"
#include "receipt.h"
#include "util.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", NULL };

#define WAIT_MS 5000 /* a bound on a wait for something that must come */

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_link *link;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->link = t->fn->node.link;
    fnode_connect(t->fn);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    fnode_destroy(&t->fn);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

static void send_credit(ctx *t, uint32_t credit)
{
    Keten__Credit c = KETEN__CREDIT__INIT;
    c.credit = credit;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &c;
    assert_int_equal(keten_link_send(t->link, &f), KETEN_OK);
}

/* The next frame is a Credit of credit. */
static void expect_credit(ctx *t, uint32_t credit)
{
    Keten__Frame *f = fnode_recv(t->fn, WAIT_MS);
    assert_non_null(f);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_CREDIT);
    assert_int_equal(f->credit->credit, credit);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

static void test_connected(void **state)
{
    ctx *t = *state;
    assert_true(keten_link_connected(t->link));
    assert_int_equal(keten_link_connects(t->link), 1);
    assert_string_equal(keten_link_last_error(t->link), "");
    send_credit(t, 1);
    expect_credit(t, 1);

    /* Twin: a broker's end with another key fails the handshake. */
    keten_identity *impostor = NULL;
    assert_int_equal(keten_identity_generate("hub", "broker", "x", true, &impostor), KETEN_OK);
    void *zctx = t->fn->node.zctx;
    void *fake = zmq_socket(zctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    char sock[PATH_MAX], endpoint[PATH_MAX + 8];
    fixture_path(t->fx, "impostor.sock", sock);
    snprintf(endpoint, sizeof endpoint, "ipc://%s", sock);
    assert_int_equal(zmq_setsockopt(fake, ZMQ_CURVE_SERVER, &one, sizeof one), 0);
    assert_int_equal(
        zmq_setsockopt(fake, ZMQ_CURVE_SECRETKEY, impostor->transport_sk, KETEN_CURVE_KEY_BYTES),
        0);
    assert_int_equal(zmq_setsockopt(fake, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_bind(fake, endpoint), 0);
    keten_link *other = NULL;
    assert_int_equal(
        keten_link_new(zctx, endpoint, t->fn->node.me, t->fn->broker->transport_pk, &other),
        KETEN_OK);
    uint64_t until = keten_mono_ms() + WAIT_MS;
    while (keten_link_last_error(other)[0] == '\0' && keten_mono_ms() < until) {
        zmq_pollitem_t item = { keten_link_monitor(other), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&item, 1, 50) > 0) {
            assert_int_not_equal(keten_link_on_monitor(other), KETEN_LINK_UP);
        }
    }
    assert_non_null(strstr(keten_link_last_error(other), "handshake"));
    assert_false(keten_link_connected(other));
    keten_link_destroy(&other);
    assert_null(other);
    zmq_close(fake);
    keten_identity_destroy(&impostor);
}

static void test_held_until_committed(void **state)
{
    ctx *t = *state;
    keten_link_hold(t->link);
    send_credit(t, 2);
    send_credit(t, 3);
    keten_link_release(t->link, true);
    send_credit(t, 4); /* after the release: after them */
    expect_credit(t, 2);
    expect_credit(t, 3);
    expect_credit(t, 4);
}

static void test_dropped_when_commit_fails(void **state)
{
    ctx *t = *state;
    keten_receipt_item items[3];
    memset(items, 0, sizeof items);
    for (size_t i = 0; i < 3; i++) {
        items[i].msg_id[0] = (uint8_t)(i + 1);
        items[i].outcome = KETEN__OUTCOME__OUTCOME_STORED;
    }
    const Keten__NodeCert *cert = keten_directory_find_id(t->fn->node.dir, "alpha");
    keten_receipt_batch *rb = NULL;
    assert_int_equal(keten_receipt_batch_new(
                         t->fn->node.me, "testnet", cert->serial, keten_now_ms(), items, 3, &rb),
        KETEN_OK);
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_RECEIPTS;
    f.receipts = &rb->msg;

    keten_link_hold(t->link);
    send_credit(t, 7);
    assert_int_equal(keten_link_send(t->link, &f), KETEN_OK);
    keten_link_release(t->link, false);
    send_credit(t, 8); /* the marker: nothing held comes before it */
    expect_credit(t, 3); /* the receipts' three leaves return their credit */
    expect_credit(t, 8);

    /* Twin: committed, the receipt batch goes. */
    keten_link_hold(t->link);
    assert_int_equal(keten_link_send(t->link, &f), KETEN_OK);
    keten_link_release(t->link, true);
    Keten__Frame *got = fnode_recv(t->fn, WAIT_MS);
    assert_non_null(got);
    assert_int_equal(got->body_case, KETEN__FRAME__BODY_RECEIPTS);
    assert_int_equal(got->receipts->n_leaves, 3);
    keten_pb_free((ProtobufCMessage **)(void *)&got);
    keten_receipt_batch_destroy(&rb);
}

static void test_frame_cap(void **state)
{
    ctx *t = *state;
    size_t big = KETEN_NODE_FRAME_MAX;
    uint8_t *env = calloc(1, big);
    assert_non_null(env);
    Keten__Submit s = KETEN__SUBMIT__INIT;
    s.envelope.data = env;
    s.envelope.len = big;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_SUBMIT;
    f.submit = &s;
    assert_int_equal(keten_link_send(t->link, &f), KETEN_ERR_TOO_LARGE);
    keten_err_clear();
    keten_link_hold(t->link);
    assert_int_equal(keten_link_send(t->link, &f), KETEN_ERR_TOO_LARGE);
    keten_err_clear();
    keten_link_release(t->link, true);
    free(env);
    send_credit(t, 5);
    expect_credit(t, 5);
}

/* The node's routing id at the broker's end, learnt from a frame it sent. */
typedef struct routing_id {
    uint8_t data[256];
    size_t len;
} routing_id;

static routing_id learn_routing_id(ctx *t)
{
    send_credit(t, 1);
    routing_id r;
    int wait = WAIT_MS;
    assert_int_equal(zmq_setsockopt(t->fn->router, ZMQ_RCVTIMEO, &wait, sizeof wait), 0);
    int n = zmq_recv(t->fn->router, r.data, sizeof r.data, 0);
    assert_true(n > 0 && (size_t)n <= sizeof r.data);
    r.len = (size_t)n;
    uint8_t rest[64];
    assert_true(zmq_recv(t->fn->router, rest, sizeof rest, 0) >= 0);
    return r;
}

/* The broker's end sends parts to the node; wait until the link has them. */
static void broker_sends(
    ctx *t, const routing_id *rid, const void *const *parts, const size_t *lens, size_t n)
{
    assert_true(zmq_send(t->fn->router, rid->data, rid->len, ZMQ_SNDMORE) >= 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(zmq_send(t->fn->router, parts[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
    }
    zmq_pollitem_t item = { keten_link_socket(t->link), 0, ZMQ_POLLIN, 0 };
    assert_int_equal(zmq_poll(&item, 1, WAIT_MS), 1);
}

static void test_receive(void **state)
{
    ctx *t = *state;
    Keten__Frame *f = NULL;
    assert_int_equal(keten_link_recv(t->link, &f), KETEN_ERR_NOT_FOUND);
    keten_err_clear();
    routing_id rid = learn_routing_id(t);

    Keten__Credit c = KETEN__CREDIT__INIT;
    c.credit = 11;
    Keten__Frame out = KETEN__FRAME__INIT;
    out.request_id = 12;
    out.body_case = KETEN__FRAME__BODY_CREDIT;
    out.credit = &c;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(keten_pb_pack(&out.base, &buf, &len), KETEN_OK);
    const void *one[] = { buf };
    broker_sends(t, &rid, one, &len, 1);
    assert_int_equal(keten_link_recv(t->link, &f), KETEN_OK);
    assert_int_equal(f->request_id, 12);
    assert_int_equal(f->credit->credit, 11);
    keten_pb_free((ProtobufCMessage **)(void *)&f);

    /* Twins: a message of two parts, bytes that are no frame. */
    const void *two[] = { buf, buf };
    size_t lens[] = { len, len };
    broker_sends(t, &rid, two, lens, 2);
    assert_int_equal(keten_link_recv(t->link, &f), KETEN_ERR_MALFORMED);
    assert_null(f);
    keten_err_clear();
    static const uint8_t junk[] = { 0xff, 0xff, 0xff };
    const void *bad[] = { junk };
    size_t bad_len = sizeof junk;
    broker_sends(t, &rid, bad, &bad_len, 1);
    assert_int_equal(keten_link_recv(t->link, &f), KETEN_ERR_MALFORMED);
    keten_err_clear();
    /* The next good one is read as before. */
    broker_sends(t, &rid, one, &len, 1);
    assert_int_equal(keten_link_recv(t->link, &f), KETEN_OK);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(keten_link_recv(t->link, &f), KETEN_ERR_NOT_FOUND);
    keten_err_clear();
    free(buf);
}

static void test_broker_gone(void **state)
{
    ctx *t = *state;
    zmq_close(t->fn->router);
    t->fn->router = NULL;
    keten_link_event ev = KETEN_LINK_NOTHING;
    uint64_t until = keten_mono_ms() + WAIT_MS;
    while (ev != KETEN_LINK_DOWN && keten_mono_ms() < until) {
        zmq_pollitem_t item = { keten_link_monitor(t->link), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&item, 1, 50) > 0) {
            ev = keten_link_on_monitor(t->link);
        }
    }
    assert_int_equal(ev, KETEN_LINK_DOWN);
    assert_false(keten_link_connected(t->link));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_until_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_when_commit_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
