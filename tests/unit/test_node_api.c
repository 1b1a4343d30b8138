/* node_api: the node's API operations (client/api.h), on a node without its
 * main loop (fixture_node.h: real store, directory, witness, link to a
 * broker's end bound here), called through the transport-free router
 * keten_api_handle() as the HTTP server calls it; the daemon's loop is played
 * by calling keten_api_tick() and the hold/release of a group commit. The
 * broker's ack of a send is a real proof from a broker's log written by the
 * test.
 *
 * Every request has its answer: a status and a JSON body, or a problem+json
 * with "exit" (2 usage, 1 failure): 400 for what is malformed (not JSON,
 * duplicate keys, an unknown field, a missing "to" or signal, a reply kind,
 * a bad msg_id, a bad query parameter), 404 for an unknown route or message,
 * 405 with Allow, 415 for a body that is not JSON, 403 for a scope missing.
 * A send answers 202 pending; with ?wait it answers later, once the broker's
 * proof is taken (201 accepted, with the leaf) or when its time is up (202).
 * While a group commit holds answers they go only when it commits; when it
 * fails each becomes a 500 problem; a cancelled request's answer is dropped. */
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

#include "api.h"
#include "fixture.h"
#include "fixture_node.h"
#include "outbox.h"
#include "pb.h"
#include "util.h"
#include "witness.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", "bravo:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"
#define SEND_BODY "{\"kind\":\"signal\",\"to\":[\"bravo\"],\"signal\":" SIGNAL "}"
#define UNKNOWN_ID "00112233445566778899aabbccddeeff"
#define LATER_MAX 8

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
    uint64_t ticket; /* the last request's */
    /* Later answers, by ticket. */
    uint64_t later_ticket[LATER_MAX];
    keten_api_response later[LATER_MAX];
    size_t n_later;
} ctx;

static void on_answer(void *c, uint64_t ticket, keten_api_response *resp)
{
    ctx *t = c;
    if (ticket == 0) { /* a cancelled request's */
        keten_api_response_clear(resp);
        return;
    }
    assert_true(t->n_later < LATER_MAX);
    t->later_ticket[t->n_later] = ticket;
    t->later[t->n_later++] = *resp;
    memset(resp, 0, sizeof *resp);
}

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->node = &t->fn->node;
    fnode_connect(t->fn);
    keten_api_set_answer(t->node->api, on_answer, t);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    for (size_t i = 0; i < t->n_later; i++) {
        keten_api_response_clear(&t->later[i]);
    }
    fnode_destroy(&t->fn);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

/* Hand a request to the router. query: "a=1&b=2" or NULL; scopes 0 means
 * every scope. */
static keten_api_result handle(ctx *t, const char *method, const char *path, const char *query,
    const char *body, const char *ctype, unsigned scopes, keten_api_response *resp)
{
    keten_api_param params[KETEN_API_QUERY_MAX];
    char qbuf[512] = "";
    size_t n = 0;
    if (query != NULL) {
        snprintf(qbuf, sizeof qbuf, "%s", query);
        for (char *save = NULL, *kv = strtok_r(qbuf, "&", &save);
             kv != NULL && n < KETEN_API_QUERY_MAX; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (eq != NULL) {
                *eq = '\0';
            }
            params[n].name = kv;
            params[n].value = eq != NULL ? eq + 1 : "";
            n++;
        }
    }
    keten_api_request req = {
        .method = method,
        .path = path,
        .query = params,
        .n_query = n,
        .content_type = body != NULL ? (ctype != NULL ? ctype : "application/json") : NULL,
        .body = (const uint8_t *)body,
        .body_len = body != NULL ? strlen(body) : 0,
        .actor = "local",
        .scopes = scopes != 0 ? scopes : KETEN_SCOPE_ALL,
        .ticket = ++t->ticket,
    };
    return keten_api_handle(t->node, &req, resp);
}

/* The JSON of an answer (and its body cleared). */
static json_t *body_of(keten_api_response *resp)
{
    assert_non_null(resp->body);
    json_t *j = json_loads(resp->body, 0, NULL);
    assert_non_null(j);
    keten_api_response_clear(resp);
    return j;
}

/* A request answered at once with status; its JSON. */
static json_t *call_full(ctx *t, const char *method, const char *path, const char *query,
    const char *body, const char *ctype, unsigned scopes, unsigned status)
{
    keten_api_response resp;
    assert_int_equal(
        handle(t, method, path, query, body, ctype, scopes, &resp), KETEN_API_ANSWERED);
    if (resp.status != status) {
        fail_msg("%s %s?%s: answered %u %s, not %u", method, path, query != NULL ? query : "",
            resp.status, resp.body, status);
    }
    bool problem = strcmp(resp.content_type, "application/problem+json") == 0;
    assert_true(problem == (status >= 400));
    if (resp.allow[0] != '\0') {
        assert_int_equal(status, 405);
    }
    json_t *j = body_of(&resp);
    if (problem) {
        assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
        assert_non_null(
            strstr(json_string_value(json_object_get(j, "type")), "urn:keten:problem:"));
        assert_non_null(json_string_value(json_object_get(j, "detail")));
    }
    return j;
}

static json_t *call(ctx *t, const char *method, const char *path, const char *query,
    const char *body, unsigned status)
{
    return call_full(t, method, path, query, body, NULL, 0, status);
}

static void expect_problem(ctx *t, const char *method, const char *path, const char *query,
    const char *body, unsigned status, int exit_code, const char *field)
{
    json_t *j = call(t, method, path, query, body, status);
    assert_int_equal(json_integer_value(json_object_get(j, "exit")), exit_code);
    if (field != NULL) {
        json_t *e = json_array_get(json_object_get(j, "errors"), 0);
        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(e, "field")), field);
    }
    json_decref(j);
}

/* The later answer of ticket, which must have come. */
static json_t *later(ctx *t, uint64_t ticket, unsigned status)
{
    for (size_t i = 0; i < t->n_later; i++) {
        if (t->later_ticket[i] == ticket) {
            keten_api_response resp = t->later[i];
            t->later[i] = t->later[--t->n_later];
            t->later_ticket[i] = t->later_ticket[t->n_later];
            if (resp.status != status) {
                fail_msg("later answer %u %s, not %u", resp.status, resp.body, status);
            }
            return body_of(&resp);
        }
    }
    fail_msg("no later answer for request %llu", (unsigned long long)ticket);
    return NULL;
}

static void test_requests(void **state)
{
    ctx *t = *state;
    json_t *r = call(t, "GET", "/v1/ping", NULL, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(r, "node")), "alpha");
    json_decref(r);
    r = call(t, "GET", "/v1/node", NULL, NULL, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "status"), "node")), "alpha");
    json_decref(r);
    r = call(t, "GET", "/v1/capabilities", NULL, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(r, "node")), "alpha");
    json_decref(r);

    /* Routes and methods. */
    expect_problem(t, "GET", "/v1/reboot", NULL, NULL, 404, 2, NULL);
    expect_problem(t, "GET", "/v1/pingx", NULL, NULL, 404, 2, NULL);
    expect_problem(t, "GET", "/v1/inbox/" UNKNOWN_ID "/ack/x", NULL, NULL, 404, 2, NULL);
    /* Bytes that are not UTF-8 in what the answer echoes: a readable problem,
     * the bytes replaced (found by fuzz_api). */
    r = call(t, "GET", "/v1/\xc7\xce\x01x", NULL, NULL, 404);
    assert_non_null(strstr(json_string_value(json_object_get(r, "detail")), "/v1/???x"));
    json_decref(r);
    keten_api_response resp0;
    assert_int_equal(
        handle(t, "POST", "/v1/inbox/00\xc7\xce", NULL, NULL, NULL, 0, &resp0), KETEN_API_ANSWERED);
    assert_int_equal(resp0.status, 405);
    assert_string_equal(resp0.allow, "GET");
    keten_api_response_clear(&resp0);
    expect_problem(t, "GET", "/v1/inbox", "\xff=1", NULL, 400, 2, "??");
    keten_api_response resp;
    assert_int_equal(
        handle(t, "DELETE", "/v1/inbox", NULL, NULL, NULL, 0, &resp), KETEN_API_ANSWERED);
    assert_int_equal(resp.status, 405);
    assert_string_equal(resp.allow, "GET");
    keten_api_response_clear(&resp);
    assert_int_equal(
        handle(t, "GET", "/v1/messages/validate", NULL, NULL, NULL, 0, &resp), KETEN_API_ANSWERED);
    assert_int_equal(resp.status, 405); /* a literal path, not a msg_id */
    assert_string_equal(resp.allow, "POST");
    keten_api_response_clear(&resp);

    /* Bodies. */
    expect_problem(t, "POST", "/v1/messages", NULL, "not json", 400, 2, NULL);
    expect_problem(t, "POST", "/v1/messages", NULL, "[1,2]", 400, 2, NULL);
    expect_problem(
        t, "POST", "/v1/messages", NULL, "{\"kind\":\"signal\",\"kind\":\"query\"}", 400, 2, NULL);
    expect_problem(t, "POST", "/v1/messages", NULL,
        "{\"kind\":\"signal\",\"to\":[\"bravo\"],\"signal\":{\"type\":\"a\",\"type\":\"b\"}}", 400,
        2, NULL);
    expect_problem(t, "POST", "/v1/messages", NULL,
        "{\"kind\":\"signal\",\"to\":[\"bravo\"],\"colour\":1,\"signal\":" SIGNAL "}", 400, 2,
        "/colour");
    expect_problem(t, "POST", "/v1/messages", NULL, "{\"kind\":\"signal\",\"signal\":" SIGNAL "}",
        400, 2, "/to");
    expect_problem(
        t, "POST", "/v1/messages", NULL, "{\"kind\":\"signal\",\"to\":[]}", 400, 2, "/to");
    expect_problem(t, "POST", "/v1/messages", NULL,
        "{\"kind\":\"signal\",\"to\":[\"bravo\"],\"signal\":\""
        "x"
        "\"}",
        400, 2, "/signal");
    expect_problem(t, "POST", "/v1/messages", NULL,
        "{\"kind\":\"reply\",\"to\":[\"bravo\"],\"signal\":" SIGNAL "}", 400, 2, "/kind");
    expect_problem(t, "POST", "/v1/messages", NULL,
        "{\"kind\":\"gossip\",\"to\":[\"bravo\"],\"signal\":" SIGNAL "}", 400, 2, "/kind");
    expect_problem(t, "POST", "/v1/messages", NULL,
        "{\"kind\":\"signal\",\"to\":[\"bravo,charlie\"],\"signal\":" SIGNAL "}", 400, 2, "/to/0");
    expect_problem(t, "GET", "/v1/ping", NULL, "{}", 400, 2, NULL); /* takes no body */
    json_decref(call_full(t, "POST", "/v1/messages", NULL, SEND_BODY, "text/plain", 0, 415));
    /* Twin: the same body as JSON is taken (charset and case allowed). */
    json_decref(call_full(
        t, "POST", "/v1/messages", NULL, SEND_BODY, "Application/JSON; charset=utf-8", 0, 202));
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);

    /* Scopes: read only cannot send; send can. */
    json_decref(call_full(t, "POST", "/v1/messages/validate", NULL,
        "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"bravo\"],\"signal\":" SIGNAL "}", NULL,
        KETEN_SCOPE_READ, 403));
    r = call_full(t, "POST", "/v1/messages/validate", NULL,
        "{\"for\":\"send\",\"kind\":\"signal\",\"to\":[\"bravo\"],\"signal\":" SIGNAL "}", NULL,
        KETEN_SCOPE_SEND, 200);
    assert_true(json_is_true(json_object_get(r, "valid")));
    json_decref(r);
    json_decref(call_full(t, "GET", "/v1/inbox", NULL, NULL, NULL, KETEN_SCOPE_SEND, 403));
    json_decref(call_full(t, "GET", "/v1/ping", NULL, NULL, NULL, KETEN_SCOPE_ACK, 200));

    /* msg_ids and query parameters. */
    expect_problem(t, "GET", "/v1/inbox/xyz", NULL, NULL, 400, 2, "msg_id");
    expect_problem(
        t, "GET", "/v1/inbox/00112233445566778899AABBCCDDEEFF", NULL, NULL, 400, 2, "msg_id");
    expect_problem(t, "POST", "/v1/inbox/0102/ack", NULL, NULL, 400, 2, "msg_id");
    expect_problem(t, "GET", "/v1/messages/0102", NULL, NULL, 400, 2, "msg_id");
    expect_problem(t, "GET", "/v1/inbox", "wait=abc", NULL, 400, 2, "?wait");
    expect_problem(t, "GET", "/v1/inbox", "wait=86400001", NULL, 400, 2, "?wait");
    expect_problem(t, "GET", "/v1/inbox", "since=soon", NULL, 400, 2, "?since");
    expect_problem(t, "GET", "/v1/inbox", "kind=memo", NULL, 400, 2, "?kind");
    expect_problem(t, "GET", "/v1/inbox", "unhandled=maybe", NULL, 400, 2, "?unhandled");
    expect_problem(t, "GET", "/v1/inbox", "kind=query&kind=signal", NULL, 400, 2, "?kind");
    expect_problem(t, "GET", "/v1/sent", "colour=red", NULL, 400, 2, "?colour");
    expect_problem(t, "GET", "/v1/node", "x=1", NULL, 400, 2, "?x");

    /* What is not there. */
    expect_problem(t, "GET", "/v1/inbox/" UNKNOWN_ID, NULL, NULL, 404, 1, NULL);
    expect_problem(t, "POST", "/v1/inbox/" UNKNOWN_ID "/ack", NULL, NULL, 404, 1, NULL);
    expect_problem(t, "GET", "/v1/messages/" UNKNOWN_ID, NULL, NULL, 404, 1, NULL);
    expect_problem(
        t, "POST", "/v1/inbox/" UNKNOWN_ID "/reply", NULL, "{\"signal\":" SIGNAL "}", 404, 1, NULL);
    r = call(t, "GET", "/v1/inbox", "unhandled=true&since=2026-01-01T00:00:00Z", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 0);
    json_decref(r);
}

/* The broker accepts the last submit the node sent: a proof from a log. */
static uint64_t broker_accepts(ctx *t, flog *log)
{
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
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
    return leaf;
}

static void test_send_and_wait(void **state)
{
    ctx *t = *state;
    json_t *r = call(t, "POST", "/v1/messages", NULL, SEND_BODY, 202);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "pending");
    assert_int_equal(strlen(json_string_value(json_object_get(r, "msg_id"))), 32);
    json_decref(r);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);

    /* With ?wait: the answer comes when the broker's proof is taken. */
    keten_api_response resp;
    assert_int_equal(
        handle(t, "POST", "/v1/messages", "wait=5000", SEND_BODY, NULL, 0, &resp), KETEN_API_LATER);
    uint64_t ticket = t->ticket;
    assert_int_equal(t->n_later, 0);
    flog *log = flog_new(t->fx, "log");
    uint64_t leaf = broker_accepts(t, log);
    r = later(t, ticket, 201);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "accepted");
    assert_int_equal(json_integer_value(json_object_get(r, "leaf_index")), leaf);
    const char *hex = json_string_value(json_object_get(r, "msg_id"));
    char path[80];
    snprintf(path, sizeof path, "/v1/messages/%s", hex);
    json_t *st = call(t, "GET", path, NULL, NULL, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(st, "status"), "state")), "accepted");
    json_decref(st);
    json_decref(r);
    /* Every checkpoint kept, for an auditor. */
    uint64_t size = flog_size(log);
    fnode_checkpoint(t->fn, log, size, size, true); /* a witness checkpoint: kept */
    json_t *all = call(t, "GET", "/v1/checkpoints", NULL, NULL, 200);
    json_t *list = json_object_get(all, "checkpoints");
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(list, 0), "tree_size")), size);
    json_decref(all);
    json_decref(call(t, "GET", "/v1/checkpoint", NULL, NULL, 200));
    flog_destroy(&log);
    r = call(t, "GET", "/v1/sent", NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 2);
    /* The node's alarm counts are the node's, not each message's: status
     * MSG_ID carries them, the list does not. */
    for (size_t i = 0; i < 2; i++) {
        const json_t *m = json_array_get(json_object_get(r, "messages"), i);
        assert_non_null(json_object_get(m, "msg_id"));
        assert_null(json_object_get(m, "alarms"));
        assert_null(json_object_get(m, "alarms_acknowledged"));
    }
    json_decref(r);
    r = call(t, "GET", "/v1/sent", "since=2999-01-01T00:00:00Z", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 0);
    json_decref(r);

    /* Twin: no proof in time: 202 pending when the time is up. */
    assert_int_equal(
        handle(t, "POST", "/v1/messages", "wait=1", SEND_BODY, NULL, 0, &resp), KETEN_API_LATER);
    ticket = t->ticket;
    struct timespec pause = { 0, 5 * 1000 * 1000 }; /* time under test: the 1 ms passes */
    nanosleep(&pause, NULL);
    keten_api_tick(t->node);
    r = later(t, ticket, 202);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "pending");
    json_decref(r);

    /* The inbox with ?wait: the empty list when the time is up. */
    assert_int_equal(
        handle(t, "GET", "/v1/inbox", "wait=1", NULL, NULL, 0, &resp), KETEN_API_LATER);
    ticket = t->ticket;
    nanosleep(&pause, NULL);
    keten_api_tick(t->node);
    r = later(t, ticket, 200);
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 0);
    json_decref(r);
}

static void test_held_answers(void **state)
{
    ctx *t = *state;
    keten_api_response resp;
    keten_api_hold(t->node->api);
    assert_int_equal(handle(t, "GET", "/v1/ping", NULL, NULL, NULL, 0, &resp), KETEN_API_LATER);
    uint64_t ticket = t->ticket;
    assert_int_equal(t->n_later, 0);
    keten_api_release(t->node->api, true);
    json_decref(later(t, ticket, 200));

    /* Twin: the commit failed: the held answer becomes a 500 problem. */
    keten_api_hold(t->node->api);
    assert_int_equal(
        handle(t, "POST", "/v1/messages", NULL, SEND_BODY, NULL, 0, &resp), KETEN_API_LATER);
    ticket = t->ticket;
    keten_api_release(t->node->api, false);
    json_t *r = later(t, ticket, 500);
    assert_string_equal(
        json_string_value(json_object_get(r, "type")), "urn:keten:problem:store-failed");
    assert_int_equal(json_integer_value(json_object_get(r, "exit")), 1);
    json_decref(r);

    /* A request whose connection went away: its held answer is dropped. */
    keten_api_hold(t->node->api);
    assert_int_equal(handle(t, "GET", "/v1/ping", NULL, NULL, NULL, 0, &resp), KETEN_API_LATER);
    keten_api_cancel(t->node->api, t->ticket);
    keten_api_release(t->node->api, true);
    assert_int_equal(t->n_later, 0);

    /* Released: answers go at once again. */
    json_decref(call(t, "GET", "/v1/ping", NULL, NULL, 200));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_and_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_answers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
