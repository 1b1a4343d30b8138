/* broker_audit: the broker's audit records (broker/audit.h), appended to
 * the real log of a minimal broker (fixture_broker.h) in its batch
 * transaction and read back. Each record is at the leaf of its seq, in the
 * batch's time and the installed directory version, with what audit.h says
 * goes in and nothing else (the rule only with a POLICY refusal, a reason
 * only with a refusal by the recipient). Times never go back: a record made
 * with the clock stepped back gets the previous record's time (twin: a
 * clock that moves on is taken), also after a restart, when the last time
 * is read from the log. */
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
#include "envelope.h"
#include "fixture.h"
#include "fixture_broker.h"
#include "pb.h"
#include "util.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", "bravo:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"

typedef struct ctx {
    fixture *fx;
    fbroker *fb;
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
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

static Keten__AuditRecord *record(ctx *t, uint64_t leaf)
{
    Keten__AuditRecord *r = fbroker_record(t->fb, leaf);
    assert_int_equal(r->seq, leaf);
    assert_int_equal(r->directory_version, 1);
    return r;
}

static void free_record(Keten__AuditRecord **r)
{
    keten_pb_free((ProtobufCMessage **)(void *)r);
}

static const uint8_t ID[KETEN_MSG_ID_BYTES] = { 0x1d };

static void test_records(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    /* The directory installed at start is the first record. */
    Keten__AuditRecord *r = record(t, 0);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_DIRECTORY_INSTALLED);
    assert_true(r->directory.len > 0);
    free_record(&r);

    size_t len = 0;
    uint8_t *env = fixture_seal(t->fx, "alpha", "bravo", SIGNAL, NULL, &len);
    keten_envelope_verified *v = NULL;
    assert_int_equal(keten_envelope_verify(broker_dir(b), env, len, &v), KETEN_OK);
    fbroker_begin(t->fb);
    b->now = keten_now_ms();
    uint64_t leaf = 0;
    assert_int_equal(audit_submitted(b, v, 4, &leaf), KETEN_OK);
    assert_int_equal(leaf, 1);
    assert_int_equal(
        audit_rejected(b, ID, "alpha", KETEN__REASON__REASON_POLICY, 3, &leaf), KETEN_OK);
    assert_int_equal(
        audit_rejected(b, NULL, "bravo", KETEN__REASON__REASON_EXPIRED, 3, &leaf), KETEN_OK);
    assert_int_equal(audit_delivered(b, ID, "alpha", "bravo", &leaf), KETEN_OK);
    assert_int_equal(audit_answered(b, KETEN__EVENT__EVENT_RECEIPTED,
                         KETEN__REASON__REASON_UNDECRYPTABLE, ID, "alpha", "bravo", NULL, &leaf),
        KETEN_OK);
    assert_int_equal(audit_answered(b, KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT,
                         KETEN__REASON__REASON_UNDECRYPTABLE, ID, "alpha", "bravo", NULL, &leaf),
        KETEN_OK);
    const char *open[] = { "bravo" };
    assert_int_equal(audit_expired(b, ID, "alpha", open, 1, &leaf), KETEN_OK);
    assert_int_equal(audit_node(b, KETEN__EVENT__EVENT_NODE_CONNECTED, "bravo", &leaf), KETEN_OK);
    assert_int_equal(leaf, 8);
    fbroker_end(t->fb);

    r = record(t, 1);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_SUBMITTED);
    assert_int_equal(r->time, b->now);
    assert_memory_equal(r->msg_id.data, v->header->msg_id.data, KETEN_MSG_ID_BYTES);
    assert_string_equal(r->sender, "alpha");
    assert_int_equal(r->n_recipients, 1);
    assert_string_equal(r->recipients[0], "bravo");
    assert_string_equal(r->category, "woonfraude");
    assert_int_equal(r->rule, 4);
    assert_int_equal(r->size_bucket, v->header->padded_len);
    assert_memory_equal(r->envelope_hash.data, v->envelope_hash, KETEN_HASH_BYTES);
    assert_memory_equal(r->ciphertext_hash.data, v->ciphertext_hash, KETEN_HASH_BYTES);
    assert_int_equal(r->header.len, v->envelope->header.len);
    assert_memory_equal(r->header.data, v->envelope->header.data, r->header.len);
    free_record(&r);
    r = record(t, 2);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_REJECTED);
    assert_int_equal(r->reason, KETEN__REASON__REASON_POLICY);
    assert_int_equal(r->rule, 3);
    assert_int_equal(r->msg_id.len, KETEN_MSG_ID_BYTES);
    free_record(&r);
    r = record(t, 3); /* no rule but with POLICY, no msg_id when none was read */
    assert_int_equal(r->reason, KETEN__REASON__REASON_EXPIRED);
    assert_int_equal(r->rule, 0);
    assert_int_equal(r->msg_id.len, 0);
    assert_string_equal(r->sender, "bravo");
    free_record(&r);
    r = record(t, 4);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_DELIVERED);
    assert_string_equal(r->node, "bravo");
    free_record(&r);
    r = record(t, 5); /* receipted: no reason */
    assert_int_equal(r->reason, KETEN__REASON__REASON_NONE);
    assert_int_equal(r->n_recipients, 1);
    free_record(&r);
    r = record(t, 6);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT);
    assert_int_equal(r->reason, KETEN__REASON__REASON_UNDECRYPTABLE);
    free_record(&r);
    r = record(t, 7);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_EXPIRED);
    assert_int_equal(r->n_recipients, 1);
    free_record(&r);
    r = record(t, 8);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_NODE_CONNECTED);
    assert_string_equal(r->node, "bravo");
    assert_int_equal(r->msg_id.len, 0);
    assert_int_equal(r->header.len, 0);
    free_record(&r);
    keten_envelope_verified_destroy(&v);
    free(env);
}

static uint64_t time_of(ctx *t, uint64_t leaf)
{
    Keten__AuditRecord *r = record(t, leaf);
    uint64_t at = r->time;
    free_record(&r);
    return at;
}

static uint64_t node_record(ctx *t, uint64_t now)
{
    t->fb->b.now = now;
    uint64_t leaf = 0;
    fbroker_begin(t->fb);
    assert_int_equal(
        audit_node(&t->fb->b, KETEN__EVENT__EVENT_NODE_CONNECTED, "alpha", &leaf), KETEN_OK);
    fbroker_end(t->fb);
    return leaf;
}

static void test_time_never_goes_back(void **state)
{
    ctx *t = *state;
    uint64_t now = keten_now_ms();
    uint64_t a = node_record(t, now + 5000);
    assert_int_equal(time_of(t, a), now + 5000);
    /* The clock stepped back: the record keeps the last time. */
    uint64_t b = node_record(t, now);
    assert_int_equal(time_of(t, b), now + 5000);
    /* Twin: a clock that moves on is taken. */
    uint64_t c = node_record(t, now + 6000);
    assert_int_equal(time_of(t, c), now + 6000);

    /* After a restart the last time comes from the log. */
    t->fb->b.audit_time_known = false;
    t->fb->b.audit_time = 0;
    uint64_t d = node_record(t, now);
    assert_int_equal(time_of(t, d), now + 6000);
    assert_true(t->fb->b.audit_time_known);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_never_goes_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
