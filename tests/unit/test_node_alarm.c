/* node_alarm: the node's alarms and warnings (client/alarm.h), on a node
 * without its main loop (fixture_node.h: real store). An alarm is counted
 * and stored (kind, detail, time) and survives a restart of the store; with
 * a frame being handled, that frame is kept as evidence (twin: without one,
 * the alarm is still stored, no evidence); a warning is counted, never
 * stored. The store keeps the newest KETEN_ALARM_KEEP alarms. A refusal by
 * the broker (Error REVOKED / KEYS_REPLACED without msg_id) is counted and
 * kept apart from the alarm list, stops sends with what to do, survives a
 * restart with the same transport key and is dropped with another (twin).
 *
 * An operator's acknowledgement of an alarm (keten_alarm_ack): it is stored
 * with the alarm (time, who, note), leaves the alarm and its detail as they
 * were, counts apart, survives a restart of the store and appends an
 * alarm-acknowledged event; an unknown number, a second acknowledgement and a
 * bad note are refused, changing nothing. A stored alarm list that is damaged (a
 * flipped byte, an acknowledgement without its note or without its time,
 * numbers not increasing) is refused as damaged, never read as acknowledged;
 * its twins (the same record made valid, a list stored before alarms had
 * numbers) are read. An alarm whose state still holds (an expired directory)
 * is not acknowledged; twin: once the directory is fresh it is. Past
 * KETEN_ALARM_KEEP alarms an acknowledged one goes before the oldest.
 */
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
#include <sodium.h>

#include "alarm.h"
#include "api.h"
#include "dirs.h"
#include "err.h"
#include "events.h"
#include "fixture.h"
#include "fixture_node.h"
#include "nodestore.h"
#include "pb.h"
#include "store.h"
#include "util.h"

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

static const char *field(const json_t *list, size_t i, const char *k)
{
    const char *s = json_string_value(json_object_get(json_array_get(list, i), k));
    return s != NULL ? s : "";
}

static void counts(ctx *t, size_t open, size_t acknowledged)
{
    size_t o = 99, a = 99;
    assert_int_equal(keten_alarm_count(t->node, &o, &a), KETEN_OK);
    assert_int_equal(o, open);
    assert_int_equal(a, acknowledged);
}

/* The events after 0 as a JSON array (events.h). */
static json_t *events(ctx *t)
{
    json_t *list = NULL;
    uint64_t oldest = 0, last = 0;
    assert_int_equal(keten_events_read(t->node, 0, 0, &list, &oldest, &last), KETEN_OK);
    return list;
}

static void test_ack(void **state)
{
    ctx *t = *state;
    keten_alarm_raise(t->node, "bad-proof", "leaf %d does not lead to the root", 3);
    keten_alarm_raise(t->node, "inconsistent-checkpoint", "different roots");
    json_t *list = alarms(t);
    assert_int_equal(json_array_size(list), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 1), "id")), 2);
    assert_true(json_is_false(json_object_get(json_array_get(list, 0), "acknowledged")));
    assert_null(json_object_get(json_array_get(list, 0), "note"));
    json_decref(list);
    counts(t, 2, 0);

    json_t *out = NULL;
    assert_int_equal(
        keten_alarm_ack(t->node, 1, "alice", "broker restored; INC-4711", &out), KETEN_OK);
    assert_string_equal(json_string_value(json_object_get(out, "acknowledged_by")), "alice");
    assert_string_equal(
        json_string_value(json_object_get(out, "note")), "broker restored; INC-4711");
    json_decref(out);
    counts(t, 1, 1);
    list = alarms(t);
    assert_true(json_is_true(json_object_get(json_array_get(list, 0), "acknowledged")));
    assert_string_equal(field(list, 0, "acknowledged_by"), "alice");
    assert_non_null(strstr(field(list, 0, "acknowledged_at"), "T"));
    /* The alarm itself stays as it was. */
    assert_string_equal(field(list, 0, "kind"), "bad-proof");
    assert_string_equal(field(list, 0, "detail"), "leaf 3 does not lead to the root");
    assert_true(json_is_false(json_object_get(json_array_get(list, 1), "acknowledged")));
    json_decref(list);

    /* The event, in the same transaction. */
    json_t *ev = events(t);
    assert_int_equal(json_array_size(ev), 1);
    json_t *e0 = json_array_get(ev, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "event")), "alarm-acknowledged");
    json_t *d = json_object_get(e0, "data");
    assert_int_equal(json_integer_value(json_object_get(d, "alarm_id")), 1);
    assert_string_equal(json_string_value(json_object_get(d, "kind")), "bad-proof");
    assert_string_equal(json_string_value(json_object_get(d, "by")), "alice");
    assert_string_equal(json_string_value(json_object_get(d, "note")), "broker restored; INC-4711");
    assert_null(json_object_get(d, "msg_id"));
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(keten_events_format_sse(e0, &text, &len), KETEN_OK);
    assert_non_null(strstr(text, "event: alarm-acknowledged\n"));
    free(text);
    json_decref(ev);

    /* Refusals change nothing. */
    assert_int_equal(keten_alarm_ack(t->node, 1, "bob", "again", &out), KETEN_ERR_EXISTS);
    assert_non_null(strstr(keten_err_detail(), "already acknowledged by alice"));
    assert_int_equal(keten_alarm_ack(t->node, 3, "bob", "no such", &out), KETEN_ERR_NOT_FOUND);
    assert_int_equal(keten_alarm_ack(t->node, 0, "bob", "no such", &out), KETEN_ERR_NOT_FOUND);
    assert_int_equal(keten_alarm_ack(t->node, 2, "bob", "", &out), KETEN_ERR_INVALID);
    assert_int_equal(keten_alarm_ack(t->node, 2, "bob", "   ", &out), KETEN_ERR_INVALID);
    assert_int_equal(keten_alarm_ack(t->node, 2, "bob", "two\nlines", &out), KETEN_ERR_INVALID);
    assert_int_equal(keten_alarm_ack(t->node, 2, "bob", "bad \xff utf-8", &out), KETEN_ERR_INVALID);
    assert_int_equal(keten_alarm_ack(t->node, 2, "b o b", "who", &out), KETEN_ERR_INVALID);
    char note[2 * 201 + 1];
    note[0] = '\0';
    for (int i = 0; i < 201; i++) {
        strcat(note, "\xc3\xa9"); /* e-acute: 201 characters, 402 bytes */
    }
    assert_int_equal(keten_alarm_ack(t->node, 2, "bob", note, &out), KETEN_ERR_INVALID);
    assert_null(out);
    counts(t, 1, 1);
    ev = events(t);
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);

    /* Twin: 200 characters are a note. */
    note[2 * 200] = '\0';
    assert_int_equal(keten_alarm_ack(t->node, 2, "uid=1000", note, &out), KETEN_OK);
    json_decref(out);
    counts(t, 0, 2);

    /* A new alarm, of a kind acknowledged before, is not acknowledged. */
    keten_alarm_raise(t->node, "bad-proof", "again");
    counts(t, 1, 2);
    list = alarms(t);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 2), "id")), 3);
    json_decref(list);

    /* Stored: still there after the store is opened again. */
    keten_store_destroy(&t->node->store);
    assert_int_equal(keten_store_open(t->fn->home, &t->node->store), KETEN_OK);
    counts(t, 1, 2);
    list = alarms(t);
    assert_string_equal(field(list, 0, "note"), "broker restored; INC-4711");
    assert_string_equal(field(list, 1, "acknowledged_by"), "uid=1000");
    json_decref(list);
}

/* ---- damaged records -------------------------------------------------------- */

/* Store list under state "alarms" as the node's writer does (StoredRecord
 * with its checksum, nodestore.h), without the writer's checks. */
static void put_raw(ctx *t, const Keten__NodeAlarms *list, bool flip)
{
    uint8_t *rec = NULL, *buf = NULL;
    size_t rec_len = 0, len = 0;
    assert_int_equal(keten_pb_pack(&list->base, &rec, &rec_len), KETEN_OK);
    uint8_t check[16];
    crypto_generichash_state st;
    const char *name = keten_store_db_name(KETEN_DB_STATE);
    crypto_generichash_init(&st, NULL, 0, sizeof check);
    crypto_generichash_update(&st, (const uint8_t *)name, strlen(name) + 1);
    crypto_generichash_update(
        &st, (const uint8_t *)KETEN_NODESTORE_ALARMS_KEY, strlen(KETEN_NODESTORE_ALARMS_KEY));
    crypto_generichash_update(&st, rec, rec_len);
    crypto_generichash_final(&st, check, sizeof check);
    Keten__StoredRecord sr = KETEN__STORED_RECORD__INIT;
    sr.record.data = rec;
    sr.record.len = rec_len;
    sr.check.data = check;
    sr.check.len = sizeof check;
    assert_int_equal(keten_pb_pack(&sr.base, &buf, &len), KETEN_OK);
    if (flip) {
        buf[len - 1] ^= 0x01;
    }
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_store_put(t->node->store, txn, KETEN_DB_STATE,
                         KETEN_NODESTORE_ALARMS_KEY, strlen(KETEN_NODESTORE_ALARMS_KEY), buf, len),
        KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    free(rec);
    free(buf);
}

/* Two alarms: a (id, acknowledged_at, by, note) and b (id2, not acknowledged). */
static void put_two(
    ctx *t, uint64_t id, uint64_t at, const char *by, const char *note, uint64_t id2, bool flip)
{
    Keten__NodeAlarm a = KETEN__NODE_ALARM__INIT, b = KETEN__NODE_ALARM__INIT;
    a.kind = (char *)"bad-proof";
    a.detail = (char *)"first";
    a.at = 1000;
    a.id = id;
    a.acknowledged_at = at;
    a.acknowledged_by = (char *)by;
    a.note = (char *)note;
    b.kind = (char *)"bad-checkpoint";
    b.detail = (char *)"second";
    b.at = 2000;
    b.id = id2;
    Keten__NodeAlarm *all[] = { &a, &b };
    Keten__NodeAlarms list = KETEN__NODE_ALARMS__INIT;
    list.alarms = all;
    list.n_alarms = 2;
    put_raw(t, &list, flip);
}

/* The list is refused as damaged everywhere it is read, and nothing is
 * acknowledged. */
static void refused_as_damaged(ctx *t, const char *why)
{
    json_t *list = NULL;
    assert_int_equal(keten_alarm_list(t->node, &list), KETEN_ERR_MALFORMED);
    assert_null(list);
    assert_non_null(strstr(keten_err_detail(), "\"alarms\" is damaged"));
    assert_non_null(strstr(keten_err_detail(), why));
    size_t o = 0, a = 0;
    assert_int_equal(keten_alarm_count(t->node, &o, &a), KETEN_ERR_MALFORMED);
    json_t *out = NULL;
    assert_int_equal(keten_alarm_ack(t->node, 2, "alice", "dealt with", &out), KETEN_ERR_MALFORMED);
    assert_null(out);
    /* Nothing was written: still damaged, no event. */
    assert_int_equal(keten_alarm_list(t->node, &list), KETEN_ERR_MALFORMED);
    json_t *ev = events(t);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
    keten_err_clear();
}

static void test_damaged(void **state)
{
    ctx *t = *state;
    put_two(t, 1, 5000, "alice", "", 2, false);
    refused_as_damaged(t, "valid note");
    put_two(t, 1, 5000, "", "dealt with", 2, false);
    refused_as_damaged(t, "who acknowledged");
    put_two(t, 1, 0, "alice", "dealt with", 2, false);
    refused_as_damaged(t, "without the time");
    put_two(t, 1, 5000, "alice", "dealt with", 1, false);
    refused_as_damaged(t, "not increasing");
    put_two(t, 0, 0, "", "", 2, false);
    refused_as_damaged(t, "not increasing");
    put_two(t, 1, 5000, "alice", "dealt with", 2, true);
    refused_as_damaged(t, "checksum");

    /* Twin: the same record made valid is read, acknowledged. */
    put_two(t, 1, 5000, "alice", "dealt with", 2, false);
    json_t *list = alarms(t);
    assert_true(json_is_true(json_object_get(json_array_get(list, 0), "acknowledged")));
    assert_string_equal(field(list, 0, "note"), "dealt with");
    json_decref(list);
    counts(t, 1, 1);
}

static void test_list_without_numbers(void **state)
{
    ctx *t = *state;
    /* A list stored before alarms had numbers: read as 1, 2. */
    put_two(t, 0, 0, "", "", 0, false);
    json_t *list = alarms(t);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 1), "id")), 2);
    json_decref(list);
    json_t *out = NULL;
    assert_int_equal(keten_alarm_ack(t->node, 2, "alice", "checked", &out), KETEN_OK);
    json_decref(out);
    keten_alarm_raise(t->node, "bad-proof", "third");
    list = alarms(t);
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(field(list, 1, "detail"), "second");
    assert_true(json_is_true(json_object_get(json_array_get(list, 1), "acknowledged")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 2), "id")), 3);
    json_decref(list);
    counts(t, 2, 1);
}

static void test_state_holds(void **state)
{
    ctx *t = *state;
    keten_alarm_raise(t->node, "directory-expired", "directory version 1 expired");
    t->node->dir_clock_ahead_ms = 3650ull * 24 * 3600 * 1000; /* the directory has expired */
    json_t *out = NULL;
    assert_int_equal(
        keten_alarm_ack(t->node, 1, "alice", "asked the admins", &out), KETEN_ERR_MISMATCH);
    assert_non_null(strstr(keten_err_detail(), "still expired"));
    assert_null(out);
    counts(t, 1, 0);
    /* Another kind is not a state: acknowledged even now. */
    keten_alarm_raise(t->node, "bad-proof", "a lie");
    assert_int_equal(keten_alarm_ack(t->node, 2, "alice", "reported", &out), KETEN_OK);
    json_decref(out);
    /* Twin: once the directory is fresh, the expiry alarm is acknowledged. */
    t->node->dir_clock_ahead_ms = 0;
    assert_int_equal(keten_alarm_ack(t->node, 1, "alice", "version 2 installed", &out), KETEN_OK);
    json_decref(out);
    counts(t, 0, 2);

    /* directory-withheld: while the named version is not installed. */
    keten_alarm_raise(t->node, "directory-withheld", "version 9 never came");
    t->node->dir_needed = 9;
    assert_int_equal(keten_alarm_ack(t->node, 3, "alice", "asked", &out), KETEN_ERR_MISMATCH);
    t->node->dir_needed = 0;
    assert_int_equal(keten_alarm_ack(t->node, 3, "alice", "installed", &out), KETEN_OK);
    json_decref(out);
    counts(t, 0, 3);
}

static void test_acknowledged_go_first(void **state)
{
    ctx *t = *state;
    for (int i = 0; i < KETEN_ALARM_KEEP; i++) {
        keten_alarm_raise(t->node, "bad-proof", "alarm %d", i + 1);
    }
    json_t *out = NULL;
    assert_int_equal(keten_alarm_ack(t->node, 5, "alice", "seen", &out), KETEN_OK);
    json_decref(out);
    keten_alarm_raise(t->node, "bad-proof", "one more");
    json_t *list = alarms(t);
    assert_int_equal(json_array_size(list), KETEN_ALARM_KEEP);
    /* Alarm 5 (acknowledged) went; alarm 1 (not) stays. */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 4), "id")), 6);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(list, KETEN_ALARM_KEEP - 1), "id")),
        KETEN_ALARM_KEEP + 1);
    json_decref(list);
    counts(t, KETEN_ALARM_KEEP, 0);
    /* Twin: with none acknowledged the oldest goes. */
    keten_alarm_raise(t->node, "bad-proof", "and another");
    list = alarms(t);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), 2);
    json_decref(list);
}

static void test_event_record(void **state)
{
    ctx *t = *state;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    keten_events_item ev = { 0 };
    ev.type = KETEN__EVENT_TYPE__EVENT_TYPE_ALARM_ACKNOWLEDGED;
    ev.alarm_id = 1;
    ev.alarm_kind = "bad-proof";
    ev.by = "alice";
    ev.note = ""; /* no note: not an event */
    assert_int_equal(keten_events_append(t->node, txn, &ev, NULL), KETEN_ERR_INVALID);
    ev.note = "ok";
    uint8_t id[KETEN_MSG_ID_BYTES] = { 1 };
    ev.msg_id = id; /* with a msg_id: not one either */
    assert_int_equal(keten_events_append(t->node, txn, &ev, NULL), KETEN_ERR_INVALID);
    ev.msg_id = NULL; /* twin */
    assert_int_equal(keten_events_append(t->node, txn, &ev, NULL), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    json_t *list = events(t);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    keten_err_clear();
}

/* Is s valid UTF-8 without a control character (C0, DEL, C1)? */
static bool clean_text(const char *s)
{
    char copy[2048];
    keten_text_clean(s, copy, sizeof copy);
    return strlen(s) < sizeof copy && strcmp(copy, s) == 0;
}

/* A hostile broker's words in an alarm: the detail of its refusal of the
 * node's Hello (log-shorter) is the broker's own text. Terminal escapes,
 * a line break and bytes that are not UTF-8 in it reach neither the list
 * nor a terminal (keten-node alarm list and status print the detail); a
 * long detail cut inside a character does not break the list either.
 * Twin: plain text, accents included, is kept as it was. */
static void test_hostile_detail(void **state)
{
    ctx *t = *state;
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = KETEN__REASON__REASON_UNKNOWN_CHECKPOINT;
    err.detail = (char *)"ok\x1b[1A\x1b[2K\r\nalarm 1 acknowledged \xff\xfe\xc2\x9b"
                         "2J end";
    keten_alarm_refused(t->node, &err);
    /* keten_alarm_raise with a detail cut inside a character: 600 bytes of
     * two-byte characters, one byte ahead */
    char longer[602];
    longer[0] = 'x';
    for (size_t i = 1; i + 2 < sizeof longer; i += 2) {
        longer[i] = (char)0xc3;
        longer[i + 1] = (char)0xa9; /* U+00E9 */
    }
    longer[sizeof longer - 1] = '\0';
    keten_alarm_raise(t->node, "bad-proof", "%s", longer);
    keten_alarm_raise(t->node, "bad-proof", "plain: caf\xc3\xa9 leaf 3"); /* the twin */
    json_t *list = alarms(t);
    assert_int_equal(json_array_size(list), 3);
    const char *d0 = field(list, 0, "detail");
    assert_true(clean_text(d0));
    assert_non_null(strstr(d0, "(the broker says: ok?[1A?[2K??alarm 1 acknowledged ????2J end)"));
    const char *d1 = field(list, 1, "detail");
    assert_true(clean_text(d1));
    assert_true(strlen(d1) > 400);
    assert_string_equal(field(list, 2, "detail"), "plain: caf\xc3\xa9 leaf 3");
    json_decref(list);
    counts(t, 3, 0);
    keten_err_clear();
}

/* POST /v1/alarms/ID/ack through the API router as the HTTP server hands
 * it over: status of the answer, body kept in *body (NULL: dropped). */
static unsigned ack_call(ctx *t, const char *method, const char *path, bool local, unsigned scopes,
    const char *note_body, json_t **body)
{
    keten_api_request req = {
        .method = method,
        .path = path,
        .content_type = note_body != NULL ? "application/json" : NULL,
        .body = (const uint8_t *)note_body,
        .body_len = note_body != NULL ? strlen(note_body) : 0,
        .actor = local ? "local" : "token:app",
        .scopes = scopes,
        .local = local,
        .peer = local ? "uid=0" : "127.0.0.1",
        .ticket = 1,
    };
    keten_api_response resp;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(keten_api_handle(t->node, &req, &resp), KETEN_API_ANSWERED);
    unsigned status = resp.status;
    if (body != NULL) {
        *body = json_loadb(resp.body, resp.body_len, 0, NULL);
        assert_non_null(*body);
    }
    keten_api_response_clear(&resp);
    return status;
}

/* Alarm numbers that are not numbers, or not the node's, and callers that
 * are not the node's operator: refused, and the alarm stays not
 * acknowledged. 0, a leading zero, a sign, an exponent, a space, 20 digits
 * (past 2^64): 400; 2^63 and 10^19 - 1 (numbers, held by no alarm): 404; a
 * token over TCP with every scope: 403. Twins: the operator's request with
 * "1" is 200, and a second one 409; a token with scope read lists the
 * alarms (GET /v1/alarms, the acknowledgement with who and the note). */
static void test_api_alarm_numbers(void **state)
{
    ctx *t = *state;
    keten_alarm_raise(t->node, "bad-proof", "leaf 3 does not lead to the root");
    static const char *const bad[] = { "0", "01", "+1", "-1", "1e3", "0x1", " 1", "1 ", "1.0",
        "18446744073709551616", "99999999999999999999", NULL };
    const char *note = "{\"note\":\"broker restored\"}";
    char path[96];
    for (size_t i = 0; bad[i] != NULL; i++) {
        snprintf(path, sizeof path, "/v1/alarms/%s/ack", bad[i]);
        json_t *b = NULL;
        unsigned st = ack_call(t, "POST", path, true, KETEN_SCOPE_ALL, note, &b);
        if (st != 400) {
            fail_msg("%s: answered %u, not 400", path, st);
        }
        assert_non_null(strstr(json_string_value(json_object_get(b, "detail")), "alarm number"));
        json_decref(b);
    }
    static const char *const unknown[]
        = { "9223372036854775808", "9999999999999999999", "2", NULL };
    for (size_t i = 0; unknown[i] != NULL; i++) {
        snprintf(path, sizeof path, "/v1/alarms/%s/ack", unknown[i]);
        unsigned st = ack_call(t, "POST", path, true, KETEN_SCOPE_ALL, note, NULL);
        if (st != 404) {
            fail_msg("%s: answered %u, not 404", path, st);
        }
    }
    assert_int_equal(
        ack_call(t, "POST", "/v1/alarms/1/ack", false, KETEN_SCOPE_ALL, note, NULL), 403);
    counts(t, 1, 0);
    /* the twins */
    json_t *b = NULL;
    assert_int_equal(ack_call(t, "POST", "/v1/alarms/1/ack", true, KETEN_SCOPE_ALL, note, &b), 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(b, "alarm"), "note")), "broker restored");
    json_decref(b);
    counts(t, 0, 1);
    assert_int_equal(
        ack_call(t, "POST", "/v1/alarms/1/ack", true, KETEN_SCOPE_ALL, note, NULL), 409);
    assert_int_equal(ack_call(t, "GET", "/v1/alarms", false, KETEN_SCOPE_READ, NULL, &b), 200);
    json_t *a0 = json_array_get(json_object_get(b, "alarms"), 0);
    assert_true(json_is_true(json_object_get(a0, "acknowledged")));
    json_decref(b);
    assert_int_equal(ack_call(t, "GET", "/v1/alarms", false, KETEN_SCOPE_SEND, NULL, NULL), 403);
    keten_err_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_raise_and_evidence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newest_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_without_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acknowledged_go_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_detail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_alarm_numbers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
