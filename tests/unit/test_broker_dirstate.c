/* broker_dirstate: the broker's directory (broker/dirstate.h), on a minimal
 * broker (fixture_broker.h: real store, audit log, connections set up by
 * hand) with directories the fixture's administrators really signed and
 * wrote to the --directory file.
 *
 * At start the file is installed (stored and audited); at a restart the
 * stored chain is verified and the same file changes nothing. A newer file
 * (SIGHUP) is installed, audited, pushed to every connection, and the
 * connections of nodes it no longer lists are cut off: after the push they
 * get one Error (REVOKED, or KEYS_REPLACED for a rotation) naming the
 * version, counted and audited (auth-failed with the reason), and every
 * later frame gets the same Error; a connection of a node the version does
 * not touch is not; an older file, a
 * file the anchor's administrators did not sign, and one that does not
 * list this broker's keys are not installed (the version in force stays).
 * Freshness follows the directory's expiry. A node's certificate is found
 * only for a current partner with its own transport key, never the broker.
 * A DirectoryRequest is answered with the versions after the one named. */
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
#include "dirbuild.h"
#include "dirstate.h"
#include "identity.h"
#include "fixture.h"
#include "fixture_broker.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "util.h"

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "charlie:police", NULL };

typedef struct ctx {
    fixture *fx;
    fbroker *fb;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(2, 2, specs);
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

static uint64_t version(ctx *t)
{
    return keten_directory_version(broker_dir(&t->fb->b));
}

static void write_directory(ctx *t, const uint8_t *buf, size_t len)
{
    assert_int_equal(keten_file_write(t->fb->directory, buf, len, 0644, false), KETEN_OK);
}

static bool reload(ctx *t)
{
    bool installed = false;
    outq_clear(t->fb->b.out);
    assert_int_equal(dirstate_reload(&t->fb->b, &installed), KETEN_OK);
    return installed;
}

static size_t count_events(ctx *t, uint64_t from, Keten__Event event)
{
    size_t n = 0;
    for (uint64_t i = from; i < fbroker_log_size(t->fb); i++) {
        Keten__AuditRecord *r = fbroker_record(t->fb, i);
        n += r->event == event;
        keten_pb_free((ProtobufCMessage **)(void *)&r);
    }
    return n;
}

static void test_start_and_restart(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    assert_int_equal(version(t), 1);
    assert_int_equal(count_events(t, 0, KETEN__EVENT__EVENT_DIRECTORY_INSTALLED), 1);
    assert_int_equal(atomic_load(&b->m->dir_version), 1);
    /* A restart on the same store and file: the chain is verified, nothing
     * is installed again. */
    dirstate_destroy(&b->dirs);
    assert_int_equal(dirstate_open(b, t->fb->anchor, t->fb->directory), KETEN_OK);
    assert_int_equal(version(t), 1);
    assert_int_equal(fbroker_log_size(t->fb), 1);
    /* The same file at SIGHUP: nothing either. */
    assert_false(reload(t));
    assert_int_equal(fbroker_log_size(t->fb), 1);
}

static void test_newer_installed(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn(t->fb, "alpha");
    conn *bravo = fbroker_conn(t->fb, "bravo");
    assert_int_equal(
        keten_dirbuild_revoke(t->fx->draft, "bravo", "left", keten_now_ms()), KETEN_OK);
    size_t len = 0;
    uint8_t *v2 = fixture_publish(t->fx, &len);
    uint64_t log0 = fbroker_log_size(t->fb);
    assert_true(reload(t));
    assert_int_equal(version(t), 2);
    assert_int_equal(count_events(t, log0, KETEN__EVENT__EVENT_DIRECTORY_INSTALLED), 1);
    Keten__AuditRecord *r = fbroker_record(t->fb, log0);
    assert_int_equal(r->directory_version, 2);
    assert_int_equal(r->directory.len, len);
    assert_memory_equal(r->directory.data, v2, len);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    /* Pushed to alpha and bravo; bravo, revoked, is then cut off. */
    size_t i = fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_DIRECTORY_PUSH);
    assert_true(i != SIZE_MAX);
    Keten__Frame *f = fbroker_frame(t->fb, i);
    assert_int_equal(f->directory_push->n_chain, 1);
    assert_int_equal(f->directory_push->chain[0].len, len);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_ERROR), SIZE_MAX);
    size_t pb = fbroker_find(t->fb, 0, "bravo", KETEN__FRAME__BODY_DIRECTORY_PUSH);
    size_t eb = fbroker_find(t->fb, 0, "bravo", KETEN__FRAME__BODY_ERROR);
    assert_true(pb != SIZE_MAX && eb != SIZE_MAX && pb < eb);
    f = fbroker_frame(t->fb, eb);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_REVOKED);
    assert_int_equal(f->error->directory_version, 2);
    assert_int_equal(f->error->msg_id.len, 0);
    assert_string_equal(f->error->detail, "revoked in version 2: ask your administrator");
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(fbroker_find(t->fb, eb + 1, "bravo", KETEN__FRAME__BODY_ERROR), SIZE_MAX);
    assert_true(bravo->revoked);
    assert_int_equal(bravo->refused, KETEN__REASON__REASON_REVOKED);
    assert_int_equal(bravo->credit, 0);
    assert_false(alpha->revoked);
    assert_int_equal(atomic_load(&b->m->auth_failed), 1);
    assert_int_equal(b->n_events, 1);
    assert_int_equal(b->events[0].event, KETEN__EVENT__EVENT_AUTH_FAILED);
    assert_string_equal(b->events[0].node, "bravo");
    assert_int_equal(b->events[0].reason, KETEN__REASON__REASON_REVOKED);
    /* A later frame of the cut-off connection: the same Error, nothing
     * counted again. */
    outq_clear(b->out);
    assert_int_equal(dirstate_refuse_again(b, bravo), KETEN_OK);
    eb = fbroker_find(t->fb, 0, "bravo", KETEN__FRAME__BODY_ERROR);
    assert_true(eb != SIZE_MAX);
    f = fbroker_frame(t->fb, eb);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_REVOKED);
    assert_int_equal(f->error->directory_version, 2);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(atomic_load(&b->m->auth_failed), 1);
    b->n_events = 0;

    /* A restart with a newer file: the stored chain (1, 2), then the file. */
    size_t len3 = 0;
    uint8_t *v3 = fixture_publish(t->fx, &len3);
    dirstate_destroy(&b->dirs);
    assert_int_equal(dirstate_open(b, t->fb->anchor, t->fb->directory), KETEN_OK);
    assert_int_equal(version(t), 3);
    /* An older file at SIGHUP: not installed, version 3 stays. */
    write_directory(t, v2, len);
    assert_false(reload(t));
    assert_int_equal(version(t), 3);
    free(v2);
    free(v3);
}

/* A rotation supersedes charlie's certificate: its connection (old
 * transport key) is cut off with KEYS_REPLACED; audited with the reason. */
static void test_rotation_cut_off(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn(t->fb, "alpha");
    conn *charlie = fbroker_conn(t->fb, "charlie");
    keten_identity *next = NULL;
    assert_int_equal(
        keten_identity_generate("charlie", "police", "Charlie", false, &next), KETEN_OK);
    fixture_approve_rotation(t->fx, next);
    size_t len = 0;
    uint8_t *v2 = fixture_publish(t->fx, &len);
    uint64_t log0 = fbroker_log_size(t->fb);
    assert_true(reload(t));
    /* dirstate_refusal: the old key is replaced, the new one is current. */
    b->now = keten_now_ms(); /* the new certificate is valid from its approval */
    assert_int_equal(dirstate_refusal(broker_dir(b), "charlie", charlie->key, b->now),
        KETEN__REASON__REASON_KEYS_REPLACED);
    assert_int_equal(dirstate_refusal(broker_dir(b), "charlie", next->transport_pk, b->now),
        KETEN__REASON__REASON_NONE);
    assert_int_equal(dirstate_refusal(broker_dir(b), "nobody", charlie->key, b->now),
        KETEN__REASON__REASON_UNKNOWN_SENDER);
    size_t eb = fbroker_find(t->fb, 0, "charlie", KETEN__FRAME__BODY_ERROR);
    assert_true(eb != SIZE_MAX);
    Keten__Frame *f = fbroker_frame(t->fb, eb);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_KEYS_REPLACED);
    assert_int_equal(f->error->directory_version, 2);
    assert_string_equal(f->error->detail, "keys replaced in version 2: start with the new keys");
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_true(charlie->revoked);
    assert_false(alpha->revoked);
    assert_int_equal(fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_ERROR), SIZE_MAX);
    /* The event is audited with its reason at the next batch. */
    fbroker_begin(t->fb);
    assert_int_equal(audit_node_refused(b, b->events[0].node, b->events[0].reason, NULL), KETEN_OK);
    fbroker_end(t->fb);
    Keten__AuditRecord *r = fbroker_record(t->fb, fbroker_log_size(t->fb) - 1);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_AUTH_FAILED);
    assert_string_equal(r->node, "charlie");
    assert_int_equal(r->reason, KETEN__REASON__REASON_KEYS_REPLACED);
    assert_int_equal(r->directory_version, 2);
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    assert_true(fbroker_log_size(t->fb) > log0);
    free(v2);
    keten_identity_destroy(&next);
}

static void test_refused_files(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    uint64_t log0 = fbroker_log_size(t->fb);
    /* Signed by one administrator where two are needed. */
    size_t len = 0;
    size_t one[] = { 0 };
    uint8_t *weak = fixture_sign_draft(t->fx, keten_now_ms(), KETEN_MS_PER_DAY, one, 1, &len);
    write_directory(t, weak, len);
    assert_false(reload(t));
    free(weak);
    /* Not a directory at all. */
    write_directory(t, (const uint8_t *)"not a directory", 15);
    assert_false(reload(t));
    /* A version that does not list this broker's keys. */
    keten_identity *other = NULL;
    assert_int_equal(keten_identity_generate("hub", "broker", "another", true, &other), KETEN_OK);
    keten_identity *me = b->me;
    b->me = other;
    uint8_t *v2 = fixture_publish(t->fx, &len);
    assert_false(reload(t));
    b->me = me;
    keten_identity_destroy(&other);
    assert_int_equal(version(t), 1);
    assert_int_equal(fbroker_log_size(t->fb), log0);
    /* Twin: the same file with the broker's own keys is installed. */
    assert_true(reload(t));
    assert_int_equal(version(t), 2);
    free(v2);
}

static void test_freshness(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    uint64_t expires = keten_directory_doc(broker_dir(b))->expires_at;
    b->now = expires - 1;
    assert_true(dirstate_fresh(b));
    assert_false(atomic_load(&b->m->dir_stale));
    b->now = expires + 1;
    assert_false(dirstate_fresh(b));
    assert_true(atomic_load(&b->m->dir_stale));
    b->now = expires - 1;
    assert_true(dirstate_fresh(b));
}

static void test_node_cert(void **state)
{
    ctx *t = *state;
    const keten_directory *dir = broker_dir(&t->fb->b);
    uint64_t now = keten_now_ms();
    const keten_identity *alpha = fixture_node(t->fx, "alpha");
    const Keten__NodeCert *c = dirstate_node_cert(dir, "alpha", alpha->transport_pk, now);
    assert_non_null(c);
    assert_string_equal(c->id, "alpha");
    assert_non_null(dirstate_node_cert(dir, "alpha", NULL, now));
    /* Twins: another node's key, the broker, no such node, a bad name, the
     * certificate's time over. */
    assert_null(dirstate_node_cert(dir, "alpha", fixture_node(t->fx, "bravo")->transport_pk, now));
    assert_null(dirstate_node_cert(dir, "hub", NULL, now));
    assert_null(dirstate_node_cert(dir, "zulu", NULL, now));
    assert_null(dirstate_node_cert(dir, "Not A Name", NULL, now));
    assert_null(dirstate_node_cert(dir, "alpha", NULL, c->not_after + 1));
    assert_null(dirstate_node_cert(NULL, "alpha", NULL, now));
}

static void test_serve(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    size_t len = 0;
    free(fixture_publish(t->fx, &len));
    assert_true(reload(t));
    free(fixture_publish(t->fx, &len));
    assert_true(reload(t));
    conn *alpha = fbroker_conn(t->fb, "alpha");
    uint64_t after[] = { 0, 1, 3, UINT64_MAX };
    size_t want[] = { 3, 2, 0, 0 };
    for (size_t k = 0; k < 4; k++) {
        outq_clear(b->out);
        fbroker_begin(t->fb);
        assert_int_equal(dirstate_serve(b, alpha, 8, after[k]), KETEN_OK);
        fbroker_end(t->fb);
        Keten__Frame *f = fbroker_frame(t->fb, 0);
        assert_int_equal(f->request_id, 8);
        assert_int_equal(f->directory_push->n_chain, want[k]);
        for (size_t i = 0; i < want[k]; i++) { /* oldest first */
            keten_directory *d = NULL;
            assert_int_equal(
                keten_directory_verify(t->fx->anchor, NULL, f->directory_push->chain[i].data,
                    f->directory_push->chain[i].len, 0, &d),
                KETEN_OK);
            assert_int_equal(keten_directory_version(d), after[k] + 1 + i);
            keten_directory_destroy(&d);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_installed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_cut_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freshness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
