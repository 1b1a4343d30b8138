/* broker_zap: who may connect (broker/zap.h). The handler answers real ZAP
 * requests (RFC 27) on a REP socket bound here on inproc://, sent by a REQ
 * socket as libzmq would send them, on a minimal broker (fixture_broker.h)
 * whose directory has revoked echo. A current partner's transport key is
 * admitted with its node id as User-Id and the key as X-Key; refused (400,
 * counted, audited as auth-failed once per key per interval) are an unknown
 * key, a revoked node's, the broker's own, and anything but CURVE (500 for
 * a request that is no request). */
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
#include "fixture_broker.h"
#include "metrics.h"
#include "util.h"
#include "zap.h"

#define ENDPOINT "inproc://test-broker-zap"
#define WAIT_MS 2000 /* a bound on a wait for a message that must come */

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "echo:municipality", NULL };

typedef struct ctx {
    fixture *fx;
    fbroker *fb;
    zap z;
    void *zctx, *rep, *req;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    assert_int_equal(keten_dirbuild_revoke(t->fx->draft, "echo", "left", keten_now_ms()), KETEN_OK);
    size_t len = 0;
    free(fixture_publish(t->fx, &len));
    t->fb = fbroker_new(t->fx, "hub");
    t->zctx = zmq_ctx_new();
    t->rep = zmq_socket(t->zctx, ZMQ_REP);
    t->req = zmq_socket(t->zctx, ZMQ_REQ);
    int zero = 0, wait = WAIT_MS;
    assert_int_equal(zmq_setsockopt(t->rep, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(t->req, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(t->req, ZMQ_RCVTIMEO, &wait, sizeof wait), 0);
    assert_int_equal(zmq_bind(t->rep, ENDPOINT), 0);
    assert_int_equal(zmq_connect(t->req, ENDPOINT), 0);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    zmq_close(t->req);
    zmq_close(t->rep);
    zmq_ctx_term(t->zctx);
    fbroker_destroy(&t->fb);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

#define PART_MAX 128

typedef struct answer {
    char status[PART_MAX];
    char user_id[PART_MAX];
    char meta[PART_MAX];
    size_t meta_len;
    char request_id[PART_MAX];
} answer;

/* Send the parts as one request, let the handler answer, read the answer. */
static answer ask(ctx *t, const char *const *parts, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_true(zmq_send(t->req, parts[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
    }
    zmq_pollitem_t item = { t->rep, 0, ZMQ_POLLIN, 0 };
    assert_int_equal(zmq_poll(&item, 1, WAIT_MS), 1);
    assert_int_equal(zap_handle(&t->z, &t->fb->b, t->rep), KETEN_OK);
    answer a;
    memset(&a, 0, sizeof a);
    char buf[6][PART_MAX];
    int got[6];
    for (int i = 0; i < 6; i++) {
        got[i] = zmq_recv(t->req, buf[i], sizeof buf[i] - 1, 0);
        assert_true(got[i] >= 0);
        buf[i][got[i]] = '\0';
        int more = 0;
        size_t sz = sizeof more;
        assert_int_equal(zmq_getsockopt(t->req, ZMQ_RCVMORE, &more, &sz), 0);
        assert_int_equal(more != 0, i < 5);
    }
    assert_string_equal(buf[0], "1.0");
    snprintf(a.request_id, sizeof a.request_id, "%s", buf[1]);
    snprintf(a.status, sizeof a.status, "%s", buf[2]);
    snprintf(a.user_id, sizeof a.user_id, "%s", buf[4]);
    memcpy(a.meta, buf[5], (size_t)got[5]);
    a.meta_len = (size_t)got[5];
    return a;
}

static answer ask_curve(ctx *t, const uint8_t key[KETEN_CURVE_KEY_BYTES], const char *mechanism)
{
    const char *parts[] = { "1.0", "42", "keten", "127.0.0.1", "", mechanism, (const char *)key };
    size_t lens[] = { 3, 2, 5, 9, 0, strlen(mechanism), KETEN_CURVE_KEY_BYTES };
    return ask(t, parts, lens, 7);
}

static void test_admitted(void **state)
{
    ctx *t = *state;
    const keten_identity *alpha = fixture_node(t->fx, "alpha");
    answer a = ask_curve(t, alpha->transport_pk, "CURVE");
    assert_string_equal(a.status, "200");
    assert_string_equal(a.request_id, "42");
    assert_string_equal(a.user_id, "alpha");
    /* Metadata: the property X-Key with the admitted key in hex. */
    char hex[2 * KETEN_CURVE_KEY_BYTES + 1];
    keten_hex(alpha->transport_pk, KETEN_CURVE_KEY_BYTES, hex);
    size_t name = strlen(ZAP_KEY_PROPERTY);
    assert_int_equal(a.meta_len, 1 + name + 4 + strlen(hex));
    assert_int_equal((unsigned char)a.meta[0], name);
    assert_memory_equal(a.meta + 1, ZAP_KEY_PROPERTY, name);
    assert_memory_equal(a.meta + 1 + name + 4, hex, strlen(hex));
    assert_int_equal(t->fb->b.n_events, 0);
    assert_int_equal(atomic_load(&t->fb->b.m->auth_failed), 0);
}

static void test_refused(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    uint8_t unknown[KETEN_CURVE_KEY_BYTES];
    randombytes_buf(unknown, sizeof unknown);
    answer a = ask_curve(t, unknown, "CURVE");
    assert_string_equal(a.status, "400");
    assert_string_equal(a.user_id, "");
    assert_int_equal(a.meta_len, 0);
    assert_int_equal(b->n_events, 1);
    assert_int_equal(b->events[0].event, KETEN__EVENT__EVENT_AUTH_FAILED);
    char hex[2 * KETEN_CURVE_KEY_BYTES + 1];
    keten_hex(unknown, sizeof unknown, hex);
    assert_string_equal(b->events[0].node, hex);
    /* The same key again: refused and counted, audited once per interval. */
    a = ask_curve(t, unknown, "CURVE");
    assert_string_equal(a.status, "400");
    assert_int_equal(b->n_events, 1);
    assert_int_equal(atomic_load(&b->m->auth_failed), 2);

    a = ask_curve(t, fixture_node(t->fx, "echo")->transport_pk, "CURVE"); /* revoked */
    assert_string_equal(a.status, "400");
    a = ask_curve(t, fixture_node(t->fx, "hub")->transport_pk, "CURVE"); /* the broker */
    assert_string_equal(a.status, "400");
    a = ask_curve(t, fixture_node(t->fx, "alpha")->transport_pk, "PLAIN");
    assert_string_equal(a.status, "400");
    assert_int_equal(b->n_events, 4);
    assert_string_equal(b->events[3].node, "unknown");

    const char *one[] = { "1.0" };
    size_t one_len[] = { 3 };
    a = ask(t, one, one_len, 1);
    assert_string_equal(a.status, "500");
    assert_int_equal(atomic_load(&b->m->auth_failed), 6);

    /* Twin: a current partner right after is admitted. */
    a = ask_curve(t, fixture_node(t->fx, "bravo")->transport_pk, "CURVE");
    assert_string_equal(a.status, "200");
    assert_string_equal(a.user_id, "bravo");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admitted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
