/* node_status: what `keten-node status` shows (client/status.h), built on
 * a node without its main loop (fixture_node.h: real store, directory,
 * witness, link to a broker's end bound here) whose state the test changes
 * through the modules themselves: a send (outbox), a broker's refusal and a
 * proven ack, a delivery with a real proof, an alarm, a checkpoint, a
 * directory named but not held. The node's status follows each; a message's
 * status is its sent or received record as the user reads it (twin: a
 * msg_id the node never saw is not found). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "alarm.h"
#include "fixture.h"
#include "fixture_node.h"
#include "inbox.h"
#include "outbox.h"
#include "pb.h"
#include "status.h"
#include "util.h"
#include "witness.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", "bravo:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
    flog *log;
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
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    flog_destroy(&t->log);
    fnode_destroy(&t->fn);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

static json_t *node_status(ctx *t)
{
    json_t *st = NULL;
    assert_int_equal(keten_status_node(t->node, &st), KETEN_OK);
    return st;
}

static json_t *msg_status(ctx *t, const uint8_t *id)
{
    json_t *st = NULL;
    assert_int_equal(keten_status_message(t->node, id, &st), KETEN_OK);
    return st;
}

static json_int_t int_at(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    return json_integer_value(b != NULL ? json_object_get(v, b) : v);
}

static const char *str_at(json_t *o, const char *a)
{
    return json_string_value(json_object_get(o, a));
}

/* Send to bravo: the msg_id and the submit's request id and envelope. */
static void send_one(ctx *t, uint8_t id[KETEN_MSG_ID_BYTES], uint64_t *rid, uint64_t *leaf)
{
    keten_outbox_send_req req = {
        .to = "bravo", .kind = KETEN__KIND__KIND_SIGNAL, .json = SIGNAL, .json_len = strlen(SIGNAL)
    };
    assert_int_equal(keten_outbox_send(t->node, &req, id), KETEN_OK);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    *rid = f->request_id;
    *leaf = flog_submitted(t->log, f->submit->envelope.data, f->submit->envelope.len);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

/* The node takes the checkpoint of the whole log (from its reference). */
static uint64_t checkpoint(ctx *t)
{
    uint64_t size = flog_size(t->log);
    fnode_checkpoint(t->fn, t->log, keten_witness_reference_size(t->node), size, false);
    return size;
}

/* err, a final refusal of message id answering request rid, handed to the
 * node with the proof of its "rejected" record (appended to the log). */
static uint64_t refuse_proven(ctx *t, Keten__Error *err, uint64_t rid)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_REJECTED;
    rec.msg_id = err->msg_id;
    rec.sender = (char *)"alpha";
    rec.reason = err->reason;
    rec.rule = err->rule;
    uint64_t leaf = flog_append(t->log, &rec);
    flog_proof *p = flog_proof_new(t->log, leaf, checkpoint(t));
    err->proof = &p->buf.msg;
    keten_outbox_on_error(t->node, rid, err);
    err->proof = NULL;
    flog_proof_free(&p);
    return leaf;
}

static void test_node(void **state)
{
    ctx *t = *state;
    json_t *st = node_status(t);
    assert_string_equal(str_at(st, "node"), "alpha");
    assert_string_equal(str_at(st, "role"), "municipality");
    assert_true(json_is_true(json_object_get(st, "connected")));
    assert_true(json_is_true(json_object_get(st, "member")));
    assert_int_equal(int_at(st, "directory", "version"), 1);
    assert_true(json_is_true(json_object_get(json_object_get(st, "directory"), "fresh")));
    assert_int_equal(int_at(st, "directory", "needed_version"), 0);
    assert_int_equal(int_at(st, "outbox", NULL), 0);
    assert_int_equal(json_array_size(json_object_get(st, "alarms")), 0);
    assert_int_equal(int_at(st, "evidence", NULL), 0);
    assert_int_equal(int_at(st, "counters", "sent"), 0);
    assert_null(json_object_get(json_object_get(st, "checkpoint"), "tree_size"));
    json_decref(st);

    uint8_t id[KETEN_MSG_ID_BYTES];
    uint64_t rid = 0, leaf = 0;
    send_one(t, id, &rid, &leaf);
    uint64_t size = flog_size(t->log);
    fnode_checkpoint(t->fn, t->log, 0, size, false);
    keten_alarm_raise(t->node, "directory-withheld", "test");
    t->node->dir_needed = 2;
    st = node_status(t);
    assert_int_equal(int_at(st, "outbox", NULL), 1);
    assert_int_equal(json_array_size(json_object_get(st, "alarms")), 1);
    assert_int_equal(int_at(st, "directory", "needed_version"), 2);
    assert_int_equal(int_at(st, "checkpoint", "tree_size"), size);
    assert_int_equal(int_at(st, "counters", "checkpoints_accepted"), 1);
    json_decref(st);
}

static void test_messages(void **state)
{
    ctx *t = *state;
    uint8_t a[KETEN_MSG_ID_BYTES], b[KETEN_MSG_ID_BYTES];
    uint64_t rid_a = 0, rid_b = 0, leaf_a = 0, leaf_b = 0;
    send_one(t, a, &rid_a, &leaf_a);
    send_one(t, b, &rid_b, &leaf_b);
    json_t *st = msg_status(t, a);
    assert_string_equal(str_at(st, "direction"), "sent");
    assert_string_equal(str_at(st, "state"), "pending");
    assert_string_equal(str_at(st, "category"), "woonfraude");
    json_t *r0 = json_array_get(json_object_get(st, "recipients"), 0);
    assert_string_equal(str_at(r0, "id"), "bravo");
    assert_string_equal(str_at(r0, "state"), "pending");
    assert_int_equal(int_at(st, "alarms", NULL), 0);
    json_decref(st);

    /* Refused by the broker without a proof: still pending (it is sent
     * again), the broker's unproven reason, rule and words shown. */
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = KETEN__REASON__REASON_POLICY;
    err.rule = 4;
    err.detail = (char *)"not allowed";
    err.msg_id.data = a;
    err.msg_id.len = KETEN_MSG_ID_BYTES;
    keten_outbox_on_error(t->node, rid_a, &err);
    st = msg_status(t, a);
    assert_string_equal(str_at(st, "state"), "pending");
    assert_string_equal(str_at(st, "reason"), "POLICY");
    assert_int_equal(int_at(st, "rule", NULL), 4);
    assert_string_equal(str_at(st, "detail"), "not allowed");
    assert_null(json_object_get(st, "leaf_index"));
    json_decref(st);

    /* Refused with the proof of its rejected record: rejected, with reason,
     * rule and the record's leaf, and so is each recipient. */
    uint64_t rej = refuse_proven(t, &err, rid_a);
    st = msg_status(t, a);
    assert_string_equal(str_at(st, "state"), "rejected");
    assert_string_equal(str_at(st, "reason"), "POLICY");
    assert_int_equal(int_at(st, "rule", NULL), 4);
    assert_string_equal(str_at(st, "detail"), "not allowed");
    assert_int_equal(int_at(st, "leaf_index", NULL), rej);
    assert_int_equal(int_at(st, "tree_size", NULL), rej + 1);
    r0 = json_array_get(json_object_get(st, "recipients"), 0);
    assert_string_equal(str_at(r0, "state"), "rejected");
    json_decref(st);

    /* Proven: accepted, with its leaf. */
    uint64_t size = checkpoint(t);
    flog_proof *p = flog_proof_new(t->log, leaf_b, size);
    Keten__SubmitAck ack = KETEN__SUBMIT_ACK__INIT;
    ack.proof = &p->buf.msg;
    keten_outbox_on_ack(t->node, rid_b, &ack);
    flog_proof_free(&p);
    st = msg_status(t, b);
    assert_string_equal(str_at(st, "state"), "accepted");
    assert_int_equal(int_at(st, "leaf_index", NULL), leaf_b);
    assert_int_equal(int_at(st, "tree_size", NULL), size);
    r0 = json_array_get(json_object_get(st, "recipients"), 0);
    assert_string_equal(str_at(r0, "state"), "accepted");
    json_decref(st);

    /* Received from bravo, then handled. */
    size_t len = 0;
    uint8_t in[KETEN_MSG_ID_BYTES];
    uint8_t *env = fixture_seal(t->fx, "bravo", "alpha", SIGNAL, in, &len);
    uint64_t leaf = flog_submitted(t->log, env, len);
    fnode_checkpoint(t->fn, t->log, size, flog_size(t->log), false);
    p = flog_proof_new(t->log, leaf, flog_size(t->log));
    Keten__Deliver d = KETEN__DELIVER__INIT;
    d.envelope.data = env;
    d.envelope.len = len;
    d.proof = &p->buf.msg;
    keten_inbox_on_deliver(t->node, &d);
    flog_proof_free(&p);
    free(env);
    st = msg_status(t, in);
    assert_string_equal(str_at(st, "direction"), "received");
    assert_string_equal(str_at(st, "from"), "bravo");
    assert_int_equal(int_at(st, "leaf_index", NULL), leaf);
    assert_false(json_is_true(json_object_get(st, "handled")));
    json_decref(st);
    assert_int_equal(keten_inbox_ack(t->node, in), KETEN_OK);
    st = msg_status(t, in);
    assert_true(json_is_true(json_object_get(st, "handled")));
    json_decref(st);

    uint8_t never[KETEN_MSG_ID_BYTES] = { 0x0e };
    json_t *none = NULL;
    assert_int_equal(keten_status_message(t->node, never, &none), KETEN_ERR_NOT_FOUND);
    assert_null(none);
    keten_err_clear();
}

/* A broker's refusal of a submit whose detail holds terminal escapes, a
 * line break, a C1 control and bytes that are not UTF-8: the message's
 * status (keten-node status MSG_ID, GET /v1/messages/ID, and each item of
 * GET /v1/sent) still reads, its detail printable UTF-8 (each other byte
 * '?'). Such bytes made the status unreadable, and the whole sent list
 * with it. Twin: a plain detail with an accent is kept as it is. */
static void test_hostile_refusal_detail(void **state)
{
    ctx *t = *state;
    uint8_t a[KETEN_MSG_ID_BYTES], b[KETEN_MSG_ID_BYTES];
    uint64_t rid_a = 0, rid_b = 0, leaf_a = 0, leaf_b = 0;
    send_one(t, a, &rid_a, &leaf_a);
    send_one(t, b, &rid_b, &leaf_b);
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = KETEN__REASON__REASON_POLICY;
    err.rule = 4;
    err.detail = (char *)"no\x1b[1A\x1b[2K\r\naccepted \xff\xc2\x9b"
                         "2J";
    err.msg_id.data = a;
    err.msg_id.len = KETEN_MSG_ID_BYTES;
    refuse_proven(t, &err, rid_a);
    json_t *st = msg_status(t, a);
    assert_string_equal(str_at(st, "state"), "rejected");
    assert_string_equal(str_at(st, "detail"), "no?[1A?[2K??accepted ???2J");
    json_decref(st);
    err.detail = (char *)"niet toegestaan: caf\xc3\xa9"; /* the twin */
    err.msg_id.data = b;
    refuse_proven(t, &err, rid_b);
    st = msg_status(t, b);
    assert_string_equal(str_at(st, "detail"), "niet toegestaan: caf\xc3\xa9");
    json_decref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_refusal_detail, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
