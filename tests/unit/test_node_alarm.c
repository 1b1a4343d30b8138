/* node_alarm: the node's alarms and warnings (client/alarm.h), on a node
 * without its main loop (fixture_node.h: real store). An alarm is counted
 * and stored (kind, detail, time) and survives a restart of the store; with
 * a frame being handled, that frame is kept as evidence (twin: without one,
 * the alarm is still stored, no evidence); a warning is counted, never
 * stored. The store keeps the newest KETEN_ALARM_KEEP alarms. A refusal by
 * the broker (Error REVOKED / KEYS_REPLACED without msg_id) is counted and
 * kept apart from the alarm list, stops sends with what to do, survives a
 * restart with the same transport key and is dropped with another (twin). */
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
#include "dirs.h"
#include "err.h"
#include "fixture.h"
#include "fixture_node.h"
#include "nodestore.h"
#include "pb.h"
#include "store.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", NULL };

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->node = &t->fn->node;
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

static json_t *alarms(ctx *t)
{
    json_t *list = NULL;
    assert_int_equal(keten_alarm_list(t->node, &list), KETEN_OK);
    return list;
}

static void forget_refusal(keten_node *node)
{
    node->refused = KETEN__REASON__REASON_NONE;
    node->refused_version = 0;
    node->refused_at = 0;
    node->refused_confirmed = false;
}

static void test_refusal(void **state)
{
    ctx *t = *state;
    keten_node *node = t->node;
    assert_int_equal(keten_dirs_send_ok(node), KETEN_OK);
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = KETEN__REASON__REASON_REVOKED;
    err.directory_version = 5;
    err.detail = (char *)"revoked in version 5: ask your administrator";
    keten_alarm_refused(node, &err);
    assert_int_equal(node->refused, KETEN__REASON__REASON_REVOKED);
    assert_int_equal(node->refused_version, 5);
    /* The node holds version 1, where it is current: the broker's word only. */
    assert_false(node->refused_confirmed);
    assert_int_equal(node->counters.alarms, 1);
    json_t *list = alarms(t);
    assert_int_equal(json_array_size(list), 0); /* kept apart from the stored alarms */
    json_decref(list);
    assert_int_equal(keten_dirs_send_ok(node), KETEN_ERR_REVOKED);
    assert_non_null(strstr(keten_err_detail(), "revoked in version 5: ask your administrator"));
    keten_err_clear();

    /* A restart with the same keys: the refusal is loaded again. */
    forget_refusal(node);
    keten_alarm_refusal_load(node);
    assert_int_equal(node->refused, KETEN__REASON__REASON_REVOKED);
    assert_int_equal(node->refused_version, 5);

    /* KEYS_REPLACED: another line, another error code. */
    err.reason = KETEN__REASON__REASON_KEYS_REPLACED;
    err.directory_version = 6;
    keten_alarm_refused(node, &err);
    assert_int_equal(node->counters.alarms, 1); /* one refusal, counted once */
    assert_int_equal(keten_dirs_send_ok(node), KETEN_ERR_UNKNOWN_NODE);
    assert_non_null(
        strstr(keten_err_detail(), "keys replaced in version 6: start with the new keys"));
    keten_err_clear();

    /* Twin: a restart with other keys (a rotation) drops it for good. */
    forget_refusal(node);
    node->me->transport_pk[0] ^= 1;
    keten_alarm_refusal_load(node);
    assert_int_equal(node->refused, KETEN__REASON__REASON_NONE);
    node->me->transport_pk[0] ^= 1;
    keten_alarm_refusal_load(node);
    assert_int_equal(node->refused, KETEN__REASON__REASON_NONE);
    assert_int_equal(keten_dirs_send_ok(node), KETEN_OK);

    /* Admitted again: cleared. */
    keten_alarm_refused(node, &err);
    keten_alarm_refusal_clear(node);
    assert_int_equal(node->refused, KETEN__REASON__REASON_NONE);
    forget_refusal(node);
    keten_alarm_refusal_load(node);
    assert_int_equal(node->refused, KETEN__REASON__REASON_NONE);
}

static void test_raise_and_evidence(void **state)
{
    ctx *t = *state;
    json_t *list = alarms(t);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    keten_alarm_raise(t->node, "directory-withheld", "version %d never came", 7);
    assert_int_equal(t->node->counters.alarms, 1);
    assert_int_equal(fnode_evidence(t->fn), 0);

    /* With the frame being handled: the frame is kept. */
    Keten__Credit cr = KETEN__CREDIT__INIT;
    cr.credit = 5;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = 9;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &cr;
    fnode_frame(t->fn, &f);
    keten_alarm_evidence(t->node, "bad-proof", "leaf %d", 3);
    fnode_frame(t->fn, NULL);
    assert_int_equal(fnode_evidence(t->fn), 1);
    /* Twin: without a frame, the alarm is stored, no evidence. */
    keten_alarm_evidence(t->node, "bad-proof", "no frame");
    assert_int_equal(fnode_evidence(t->fn), 1);
    assert_int_equal(t->node->counters.alarms, 3);

    /* A warning is counted, not stored. */
    keten_alarm_warn(t->node, "checkpoint-not-witnessed", "for %d s", 10);
    assert_int_equal(t->node->counters.warnings, 1);
    assert_int_equal(t->node->counters.alarms, 3);

    list = alarms(t);
    assert_int_equal(json_array_size(list), 3);
    json_t *a = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(a, "kind")), "directory-withheld");
    assert_string_equal(json_string_value(json_object_get(a, "detail")), "version 7 never came");
    assert_non_null(strstr(json_string_value(json_object_get(a, "at")), "T"));
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(list, 1), "detail")), "leaf 3");
    json_decref(list);

    /* The evidence is the frame, with the reason. */
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    MDB_cursor *cur = NULL;
    assert_int_equal(
        mdb_cursor_open(txn, keten_store_dbi(t->node->store, KETEN_DB_EVIDENCE), &cur), 0);
    MDB_val k, v;
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    Keten__EvidenceRecord *ev = NULL;
    assert_int_equal(keten_nodestore_decode(KETEN_DB_EVIDENCE, k.mv_data, k.mv_size, &v,
                         &keten__evidence_record__descriptor, KETEN_NODESTORE_EVIDENCE_MAX,
                         (ProtobufCMessage **)(void *)&ev),
        KETEN_OK);
    assert_non_null(strstr(ev->reason, "bad-proof: leaf 3"));
    Keten__Frame *kept = NULL;
    assert_int_equal(KETEN_PB_UNPACK(keten__frame, ev->frame.data, ev->frame.len, KETEN_FRAME_MAX,
                         "kept frame", &kept),
        KETEN_OK);
    assert_int_equal(kept->request_id, 9);
    assert_int_equal(kept->credit->credit, 5);
    keten_pb_free((ProtobufCMessage **)(void *)&kept);
    keten_pb_free((ProtobufCMessage **)(void *)&ev);
    mdb_cursor_close(cur);
    keten_store_abort(&txn);

    /* Stored: still there after the store is opened again. */
    keten_store_destroy(&t->node->store);
    assert_int_equal(keten_store_open(t->fn->home, &t->node->store), KETEN_OK);
    list = alarms(t);
    assert_int_equal(json_array_size(list), 3);
    json_decref(list);
}

static void test_newest_kept(void **state)
{
    ctx *t = *state;
    for (int i = 0; i < KETEN_ALARM_KEEP + 4; i++) {
        keten_alarm_raise(t->node, "bad-proof", "alarm %d", i);
    }
    json_t *list = alarms(t);
    assert_int_equal(json_array_size(list), KETEN_ALARM_KEEP);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(list, 0), "detail")), "alarm 4");
    char last[32];
    snprintf(last, sizeof last, "alarm %d", KETEN_ALARM_KEEP + 3);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(list, KETEN_ALARM_KEEP - 1), "detail")),
        last);
    json_decref(list);
    assert_int_equal(t->node->counters.alarms, KETEN_ALARM_KEEP + 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_raise_and_evidence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newest_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
