/* node_api: the node's local API (client/api.h), on a node without its
 * main loop (fixture_node.h: real store, directory, witness, link to a
 * broker's end bound here), with a real REQ client on the API's ipc://
 * socket in the node's home; the daemon's poll is played by calling
 * keten_apizmq_on_readable() and keten_api_tick(). The broker's ack of a send
 * is a real proof from a broker's log written by the test.
 *
 * Every request has its answer ({"ok":true,...} or {"ok":false,"error",
 * "exit"}): usage errors exit 2 (no JSON object, no or an unknown cmd,
 * duplicate keys, a missing --to or signal, a reply kind, a bad msg_id),
 * what is not there exits 1. A send answers with its msg_id, pending; with
 * "wait" it answers once the broker's proof is taken (accepted, with the
 * leaf) or when its time is up. While a group commit holds replies they go
 * only when it commits; when it fails each becomes an error. */
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
#include <zmq.h>

#include "apizmq.h"
#include "fixture.h"
#include "fixture_node.h"
#include "outbox.h"
#include "pb.h"
#include "util.h"
#include "witness.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", "bravo:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"
#define WAIT_MS 5000 /* a bound on a wait for an answer that must come */

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
    void *req;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->node = &t->fn->node;
    fnode_connect(t->fn);
    t->req = zmq_socket(t->node->zctx, ZMQ_REQ);
    assert_non_null(t->req);
    int zero = 0, wait = WAIT_MS;
    assert_int_equal(zmq_setsockopt(t->req, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(t->req, ZMQ_RCVTIMEO, &wait, sizeof wait), 0);
    assert_int_equal(zmq_connect(t->req, t->node->api_endpoint), 0);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    zmq_close(t->req);
    fnode_destroy(&t->fn);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

/* Send a request and let the API handle it. */
static void request(ctx *t, const char *text)
{
    assert_int_equal(zmq_send(t->req, text, strlen(text), 0), (int)strlen(text));
    zmq_pollitem_t item = { keten_apizmq_socket(t->node->apizmq), 0, ZMQ_POLLIN, 0 };
    assert_int_equal(zmq_poll(&item, 1, WAIT_MS), 1);
    keten_apizmq_on_readable(t->node);
}

static json_t *answer(ctx *t)
{
    char buf[16384];
    int n = zmq_recv(t->req, buf, sizeof buf - 1, 0);
    if (n < 0) {
        fail_msg("no answer from the API within %d ms", WAIT_MS);
    }
    buf[n] = '\0';
    json_error_t err;
    json_t *r = json_loads(buf, 0, &err);
    assert_non_null(r);
    return r;
}

static json_t *call(ctx *t, const char *text)
{
    request(t, text);
    return answer(t);
}

/* A request as JSON text (json_pack format and arguments). */
static char *req_text(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *j = json_vpack_ex(NULL, 0, fmt, ap);
    va_end(ap);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    assert_non_null(s);
    return s;
}

static bool ok(const json_t *r)
{
    return json_is_true(json_object_get(r, "ok"));
}

static void expect_failure(ctx *t, const char *text, int exit_code)
{
    json_t *r = call(t, text);
    if (ok(r) || json_integer_value(json_object_get(r, "exit")) != exit_code) {
        char *s = json_dumps(r, JSON_COMPACT);
        fail_msg("%s: answered %s, not exit %d", text, s, exit_code);
    }
    assert_non_null(json_string_value(json_object_get(r, "error")));
    json_decref(r);
}

static void test_requests(void **state)
{
    ctx *t = *state;
    json_t *r = call(t, "{\"cmd\":\"ping\"}");
    assert_true(ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "node")), "alpha");
    json_decref(r);
    r = call(t, "{\"cmd\":\"status\"}");
    assert_true(ok(r));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "status"), "node")), "alpha");
    json_decref(r);

    expect_failure(t, "not json", 2);
    expect_failure(t, "[1,2]", 2);
    expect_failure(t, "{}", 2);
    expect_failure(t, "{\"cmd\":\"reboot\"}", 2);
    expect_failure(t, "{\"cmd\":\"ping\",\"cmd\":\"ping\"}", 2);
    char *s = req_text("{s:s, s:s}", "cmd", "send", "signal", SIGNAL);
    expect_failure(t, s, 2); /* no --to */
    free(s);
    expect_failure(t, "{\"cmd\":\"send\",\"to\":\"bravo\"}", 2); /* no signal */
    s = req_text(
        "{s:s, s:s, s:s, s:s}", "cmd", "send", "to", "bravo", "kind", "reply", "signal", SIGNAL);
    expect_failure(t, s, 2);
    free(s);
    s = req_text(
        "{s:s, s:s, s:s, s:s}", "cmd", "send", "to", "bravo", "kind", "gossip", "signal", SIGNAL);
    expect_failure(t, s, 2);
    free(s);
    expect_failure(t, "{\"cmd\":\"show\",\"msg_id\":\"xyz\"}", 2);
    expect_failure(t, "{\"cmd\":\"ack\",\"msg_id\":\"0102\"}", 2);
    expect_failure(t, "{\"cmd\":\"status\",\"msg_id\":\"0102\"}", 2);
    const char *unknown = "00112233445566778899aabbccddeeff";
    s = req_text("{s:s, s:s}", "cmd", "show", "msg_id", unknown);
    expect_failure(t, s, 1);
    free(s);
    s = req_text("{s:s, s:s}", "cmd", "ack", "msg_id", unknown);
    expect_failure(t, s, 1);
    free(s);
    s = req_text("{s:s, s:s}", "cmd", "status", "msg_id", unknown);
    expect_failure(t, s, 1);
    free(s);
    s = req_text("{s:s, s:s, s:s}", "cmd", "reply", "msg_id", unknown, "signal", SIGNAL);
    expect_failure(t, s, 1);
    free(s);
    expect_failure(t, "{\"cmd\":\"checkpoint\"}", 1); /* none accepted yet */
    expect_failure(t, "{\"cmd\":\"checkpoint\",\"all\":true}", 1); /* none kept yet */
    r = call(t, "{\"cmd\":\"inbox\"}");
    assert_true(ok(r));
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 0);
    json_decref(r);
}

static void test_send_and_wait(void **state)
{
    ctx *t = *state;
    char *s = req_text("{s:s, s:s, s:s}", "cmd", "send", "to", "bravo", "signal", SIGNAL);
    json_t *r = call(t, s);
    free(s);
    assert_true(ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "state")), "pending");
    const char *hex = json_string_value(json_object_get(r, "msg_id"));
    assert_int_equal(strlen(hex), 2 * KETEN_MSG_ID_BYTES);
    json_decref(r);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);

    /* With "wait": the answer comes when the broker's proof is taken. */
    s = req_text("{s:s, s:s, s:s, s:b}", "cmd", "send", "to", "bravo", "signal", SIGNAL, "wait", 1);
    request(t, s);
    free(s);
    f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    flog *log = flog_new(t->fx, "log");
    uint64_t leaf = flog_submitted(log, f->submit->envelope.data, f->submit->envelope.len);
    uint64_t size = flog_size(log);
    fnode_checkpoint(t->fn, log, 0, size, false);
    assert_int_equal(keten_witness_reference_size(t->node), size);
    flog_proof *p = flog_proof_new(log, leaf, size);
    Keten__SubmitAck ack = KETEN__SUBMIT_ACK__INIT;
    ack.proof = &p->buf.msg;
    keten_outbox_on_ack(t->node, f->request_id, &ack);
    flog_proof_free(&p);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    r = answer(t);
    assert_true(ok(r));
    assert_string_equal(json_string_value(json_object_get(r, "state")), "accepted");
    assert_int_equal(json_integer_value(json_object_get(r, "leaf_index")), leaf);
    json_decref(r);
    /* Every checkpoint kept, for an auditor (keten-node checkpoint --all). */
    fnode_checkpoint(t->fn, log, size, size, true); /* a witness checkpoint: kept */
    json_t *all = call(t, "{\"cmd\":\"checkpoint\",\"all\":true}");
    assert_true(ok(all));
    json_t *list = json_object_get(all, "checkpoints");
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "tree_size")), size);
    const char *note = json_string_value(json_object_get(json_array_get(list, 0), "note"));
    assert_non_null(note);
    assert_non_null(strstr(note, "\n\n\xe2\x80\x94 "));
    json_decref(all);
    flog_destroy(&log);

    /* Twin: no proof in time: the answer says so, exit 1. */
    s = req_text("{s:s, s:s, s:s, s:b, s:i}", "cmd", "send", "to", "bravo", "signal", SIGNAL,
        "wait", 1, "timeout_ms", 1);
    request(t, s);
    free(s);
    struct timespec pause = { 0, 5 * 1000 * 1000 }; /* time under test: the 1 ms passes */
    nanosleep(&pause, NULL);
    keten_api_tick(t->node);
    r = answer(t);
    assert_false(ok(r));
    assert_int_equal(json_integer_value(json_object_get(r, "exit")), 1);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "no acknowledgement"));
    json_decref(r);

    /* inbox with wait_ms: the empty list when the time is up. */
    request(t, "{\"cmd\":\"inbox\",\"wait_ms\":1}");
    nanosleep(&pause, NULL);
    keten_api_tick(t->node);
    r = answer(t);
    assert_true(ok(r));
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 0);
    json_decref(r);
}

static void test_held_replies(void **state)
{
    ctx *t = *state;
    keten_apizmq_hold(t->node->apizmq);
    request(t, "{\"cmd\":\"ping\"}");
    keten_apizmq_release(t->node->apizmq, true);
    json_t *r = answer(t);
    assert_true(ok(r));
    json_decref(r);

    /* Twin: the commit failed: the held answer becomes an error. */
    keten_apizmq_hold(t->node->apizmq);
    request(t, "{\"cmd\":\"ping\"}");
    keten_apizmq_release(t->node->apizmq, false);
    r = answer(t);
    assert_false(ok(r));
    assert_int_equal(json_integer_value(json_object_get(r, "exit")), 1);
    json_decref(r);

    /* Released: answers go at once again. */
    r = call(t, "{\"cmd\":\"ping\"}");
    assert_true(ok(r));
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_and_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_replies, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
