/* node_events: the node's event log (client/events.h), on a node without
 * its main loop (fixture_node.h: real identity, directory, LMDB store in a
 * temporary directory, witness, link to a broker's end bound here).
 *
 * Appended events are read back in order after any position, with the
 * oldest kept and the newest given; a follower behind the oldest kept (or
 * ahead of the newest) must re-list. Retention keeps the newest N and none
 * older than the age limit, purging in bounded transactions. An event
 * appended in a transaction that is aborted (alone, or as a child in a
 * group commit) is not there and its number is not used; numbers go on
 * after the store is closed and opened again, even when every event was
 * purged. The listener hears of events only after their commit is
 * durable. The SSE text is one data line whatever a value holds; what is
 * not an event is refused. A damaged record is read as a reset, never as
 * defaults.
 *
 * The exchange: alpha sends a query to bravo and charlie through the real
 * outbox (accepted by a proof of the broker's log), bravo's receipt comes
 * (receipted), the broker's expiry notice names charlie (expired), bravo's
 * reply is delivered to the real inbox (message, in_reply_to the query)
 * and acknowledged (handled), a second send is refused by the broker
 * (rejected): the events are exactly these, in this order, and none holds
 * content. Twins: a notice or ack that is not taken (sent again, a proof
 * that does not hold) adds no event. A message that expires in the outbox
 * is "sent" "expired". */
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

#include "events.h"
#include "fixture.h"
#include "fixture_node.h"
#include "inbox.h"
#include "nodestore.h"
#include "outbox.h"
#include "pb.h"
#include "store.h"
#include "util.h"
#include "witness.h"

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "charlie:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"
#define SUMMARY "Adres Hoofdstraat 1 op naam van 9 personen"
#define SUMMARY_SIGNAL                                                                             \
    "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\",\"summary\":\"" SUMMARY "\"}"
#define DAY_MS (24ull * 3600 * 1000)

typedef fnode_bed ctx;

static int setup(void **state)
{
    *state = fnode_bed_new(fixture_new(1, 1, specs), "alpha", "hub");
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    keten_events_clear_listener(t->node);
    fnode_bed_destroy(&t);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static const uint8_t ID_A[KETEN_MSG_ID_BYTES]
    = { 0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };

/* A handled event for ID_A at time `at`, in txn. */
static uint64_t append_at(ctx *t, MDB_txn *txn, uint64_t at)
{
    keten_events_item ev = { 0 };
    ev.type = KETEN__EVENT_TYPE__EVENT_TYPE_HANDLED;
    ev.msg_id = ID_A;
    ev.time = at;
    ev.handled_at = at;
    uint64_t seq = 0;
    assert_int_equal(keten_events_append(t->node, txn, &ev, &seq), KETEN_OK);
    return seq;
}

/* n handled events at time `at`, committed in one transaction; the last
 * number. */
static uint64_t append_n(ctx *t, size_t n, uint64_t at)
{
    MDB_txn *txn = NULL;
    uint64_t seq = 0;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    for (size_t i = 0; i < n; i++) {
        seq = append_at(t, txn, at);
    }
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    return seq;
}

/* The events after `after`; *oldest and *last as read. */
static json_t *read_after(ctx *t, uint64_t after, size_t max, uint64_t *oldest, uint64_t *last)
{
    json_t *list = NULL;
    assert_int_equal(keten_events_read(t->node, after, max, &list, oldest, last), KETEN_OK);
    assert_true(json_is_array(list));
    return list;
}

static uint64_t id_at(const json_t *list, size_t i)
{
    return (uint64_t)json_integer_value(json_object_get(json_array_get(list, i), "id"));
}

static const char *type_at(const json_t *list, size_t i)
{
    return json_string_value(json_object_get(json_array_get(list, i), "event"));
}

static const char *data_str(const json_t *list, size_t i, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(json_array_get(list, i), "data"), key));
}

static void expect_ids(const json_t *list, uint64_t first, size_t n)
{
    assert_int_equal(json_array_size(list), n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(id_at(list, i), first + i);
    }
}

/* ---- append and read ------------------------------------------------------------ */

static void test_append_read_order(void **state)
{
    ctx *t = *state;
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    assert_int_equal(json_array_size(list), 0);
    assert_int_equal(last, 0);
    assert_int_equal(oldest, 1);
    assert_false(keten_events_need_reset(0, oldest, last));
    json_decref(list);

    uint8_t reply_to[KETEN_MSG_ID_BYTES];
    memset(reply_to, 0x5c, sizeof reply_to);
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    keten_events_item m = { .type = KETEN__EVENT_TYPE__EVENT_TYPE_MESSAGE,
        .msg_id = ID_A,
        .kind = KETEN__KIND__KIND_REPLY,
        .from = "bravo",
        .category = "woonfraude",
        .in_reply_to = reply_to };
    uint64_t seq = 0;
    assert_int_equal(keten_events_append(t->node, txn, &m, &seq), KETEN_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(
        keten_events_sent(t->node, txn, ID_A, KETEN__SENT_STATE__SENT_STATE_ACCEPTED), KETEN_OK);
    assert_int_equal(keten_events_receipt(t->node, txn, ID_A, "charlie",
                         KETEN__RECIPIENT_STATE__RECIPIENT_STATE_REFUSED),
        KETEN_OK);
    assert_int_equal(keten_events_handled(t->node, txn, ID_A, 1765000000000ull), KETEN_OK);
    /* Reject twin: an event without the fields of its type is not stored. */
    keten_events_item bad = { .type = KETEN__EVENT_TYPE__EVENT_TYPE_RECEIPT, .msg_id = ID_A };
    assert_int_equal(keten_events_append(t->node, txn, &bad, NULL), KETEN_ERR_INVALID);
    keten_err_clear();
    keten_events_item none = { .type = KETEN__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED, .msg_id = ID_A };
    assert_int_equal(keten_events_append(t->node, txn, &none, NULL), KETEN_ERR_INVALID);
    keten_err_clear();
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);

    list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, 1, 4);
    assert_int_equal(oldest, 1);
    assert_int_equal(last, 4);
    assert_string_equal(type_at(list, 0), "message");
    assert_string_equal(data_str(list, 0, "msg_id"), "aa0102030405060708090a0b0c0d0e0f");
    assert_string_equal(data_str(list, 0, "kind"), "reply");
    assert_string_equal(data_str(list, 0, "from"), "bravo");
    assert_string_equal(data_str(list, 0, "category"), "woonfraude");
    assert_string_equal(data_str(list, 0, "in_reply_to"), "5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c");
    assert_int_equal(json_object_size(json_object_get(json_array_get(list, 0), "data")), 5);
    assert_string_equal(type_at(list, 1), "sent");
    assert_string_equal(data_str(list, 1, "state"), "accepted");
    assert_int_equal(json_object_size(json_object_get(json_array_get(list, 1), "data")), 2);
    assert_string_equal(type_at(list, 2), "receipt");
    assert_string_equal(data_str(list, 2, "recipient"), "charlie");
    assert_string_equal(data_str(list, 2, "state"), "refused");
    assert_string_equal(type_at(list, 3), "handled");
    assert_string_equal(data_str(list, 3, "handled_at"), "2025-12-06T05:46:40.000Z");
    json_decref(list);

    /* After a position; at most max. */
    list = read_after(t, 2, 0, &oldest, &last);
    expect_ids(list, 3, 2);
    json_decref(list);
    list = read_after(t, 0, 3, &oldest, &last);
    expect_ids(list, 1, 3);
    json_decref(list);
    list = read_after(t, 4, 0, &oldest, &last);
    assert_int_equal(json_array_size(list), 0);
    assert_false(keten_events_need_reset(4, oldest, last));
    json_decref(list);
    list = read_after(t, UINT64_MAX, 0, &oldest, &last);
    assert_int_equal(json_array_size(list), 0);
    assert_true(keten_events_need_reset(UINT64_MAX, oldest, last));
    json_decref(list);
}

/* ---- oldest kept and reset ----------------------------------------------------- */

static void test_oldest_and_reset(void **state)
{
    ctx *t = *state;
    uint64_t now = keten_now_ms();
    assert_int_equal(append_n(t, 10, now), 10);
    size_t removed = 0;
    assert_int_equal(
        keten_events_purge_limits(t->node, now, 4, KETEN_EVENTS_KEEP_MS, 100, &removed), KETEN_OK);
    assert_int_equal(removed, 6);
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, 7, 4);
    assert_int_equal(oldest, 7);
    assert_int_equal(last, 10);
    json_decref(list);
    /* Behind what is kept: reset; at the edge or within: none; ahead of the
     * newest (another store's number): reset. */
    assert_true(keten_events_need_reset(0, oldest, last));
    assert_true(keten_events_need_reset(5, oldest, last));
    assert_false(keten_events_need_reset(6, oldest, last));
    assert_false(keten_events_need_reset(8, oldest, last));
    assert_false(keten_events_need_reset(10, oldest, last));
    assert_true(keten_events_need_reset(11, oldest, last));

    json_t *r = keten_events_reset_json(oldest, last);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 10);
    assert_string_equal(json_string_value(json_object_get(r, "event")), "reset");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "data"), "oldest")), 7);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(keten_events_format_sse(r, &text, &len), KETEN_OK);
    assert_string_equal(text, "id: 10\nevent: reset\ndata: {\"oldest\":7}\n\n");
    free(text);
    json_decref(r);
}

/* ---- retention ------------------------------------------------------------------- */

static void test_retention_by_count(void **state)
{
    ctx *t = *state;
    uint64_t now = keten_now_ms();
    assert_int_equal(append_n(t, 23, now), 23);
    /* Twin: within the limit nothing goes. */
    size_t removed = 99;
    assert_int_equal(
        keten_events_purge_limits(t->node, now, 23, KETEN_EVENTS_KEEP_MS, 5, &removed), KETEN_OK);
    assert_int_equal(removed, 0);
    uint64_t commits = keten_store_commits(t->node->store);
    assert_int_equal(
        keten_events_purge_limits(t->node, now, 10, KETEN_EVENTS_KEEP_MS, 5, &removed), KETEN_OK);
    assert_int_equal(removed, 13);
    /* In transactions of at most 5: 5, 5, 3. */
    assert_int_equal(keten_store_commits(t->node->store) - commits, 3);
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, 14, 10);
    json_decref(list);

    /* One purge makes at most KETEN_EVENTS_PURGE_CHUNKS_MAX transactions;
     * the next goes on. */
    assert_int_equal(append_n(t, KETEN_EVENTS_PURGE_CHUNKS_MAX + 10, now),
        23 + KETEN_EVENTS_PURGE_CHUNKS_MAX + 10);
    assert_int_equal(
        keten_events_purge_limits(t->node, now, 10, KETEN_EVENTS_KEEP_MS, 1, &removed), KETEN_OK);
    assert_int_equal(removed, KETEN_EVENTS_PURGE_CHUNKS_MAX);
    assert_int_equal(
        keten_events_purge_limits(t->node, now, 10, KETEN_EVENTS_KEEP_MS, 1, &removed), KETEN_OK);
    assert_int_equal(removed, 10);
    list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, last - 9, 10);
    json_decref(list);
    assert_int_equal(
        keten_events_purge_limits(t->node, now, 10, 1000, 0, &removed), KETEN_ERR_INVALID);
    keten_err_clear();
}

static void test_retention_by_age(void **state)
{
    ctx *t = *state;
    uint64_t now = keten_now_ms();
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    append_at(t, txn, now - 40 * DAY_MS);
    append_at(t, txn, now - 31 * DAY_MS);
    append_at(t, txn, now - 30 * DAY_MS - 1);
    append_at(t, txn, now - 29 * DAY_MS); /* twin: younger than 30 days, kept */
    append_at(t, txn, now);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    size_t removed = 0;
    assert_int_equal(keten_events_purge(t->node, now, &removed), KETEN_OK);
    assert_int_equal(removed, 3);
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, 4, 2);
    json_decref(list);
    /* 31 days on (time injected), the rest goes too. */
    assert_int_equal(keten_events_purge(t->node, now + 31 * DAY_MS, &removed), KETEN_OK);
    assert_int_equal(removed, 2);
    list = read_after(t, 0, 0, &oldest, &last);
    assert_int_equal(json_array_size(list), 0);
    assert_int_equal(oldest, 6);
    assert_int_equal(last, 5);
    json_decref(list);
}

/* ---- atomicity and numbering ---------------------------------------------------- */

static void test_aborted_leaves_nothing(void **state)
{
    ctx *t = *state;
    uint64_t now = keten_now_ms();
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(append_at(t, txn, now), 1);
    assert_int_equal(append_at(t, txn, now), 2);
    keten_store_abort(&txn);
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    assert_int_equal(json_array_size(list), 0);
    assert_int_equal(last, 0);
    json_decref(list);

    /* In a group commit: a child aborted is gone, a child committed stays;
     * nothing is read before the batch ends. */
    assert_int_equal(keten_store_batch_begin(t->node->store), KETEN_OK);
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(append_at(t, txn, now), 1);
    keten_store_abort(&txn);
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(append_at(t, txn, now), 1); /* the number is not used up */
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(append_at(t, txn, now), 2);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    /* Read inside the batch (a stream served during a group commit): what
     * it appended is not there before its commit. */
    list = read_after(t, 0, 0, &oldest, &last);
    assert_int_equal(json_array_size(list), 0);
    assert_int_equal(last, 0);
    json_decref(list);
    assert_int_equal(keten_store_batch_end(t->node->store), KETEN_OK);
    list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, 1, 2);
    assert_int_equal(last, 2);
    json_decref(list);
}

static void reopen(ctx *t)
{
    keten_store_destroy(&t->node->store);
    assert_int_equal(keten_store_open(t->fn->home, &t->node->store), KETEN_OK);
}

static void test_reopen_monotonic(void **state)
{
    ctx *t = *state;
    uint64_t now = keten_now_ms();
    assert_int_equal(append_n(t, 3, now), 3);
    reopen(t);
    assert_int_equal(append_n(t, 1, now), 4);
    /* Every event purged, then closed and opened: no number is used again. */
    size_t removed = 0;
    assert_int_equal(
        keten_events_purge_limits(t->node, now, 0, KETEN_EVENTS_KEEP_MS, 100, &removed), KETEN_OK);
    assert_int_equal(removed, 4);
    reopen(t);
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    assert_int_equal(json_array_size(list), 0);
    assert_int_equal(last, 4);
    assert_int_equal(oldest, 5);
    assert_true(keten_events_need_reset(2, oldest, last)); /* what 3 and 4 said is gone */
    assert_false(keten_events_need_reset(4, oldest, last));
    json_decref(list);
    assert_int_equal(append_n(t, 1, now), 5);
    list = read_after(t, 4, 0, &oldest, &last);
    expect_ids(list, 5, 1);
    json_decref(list);

    /* A damaged "events-last" is refused, not read as 0. */
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_store_put(t->node->store, txn, KETEN_DB_STATE, KETEN_EVENTS_LAST_KEY,
                         strlen(KETEN_EVENTS_LAST_KEY), "abc", 3),
        KETEN_OK);
    keten_events_item ev
        = { .type = KETEN__EVENT_TYPE__EVENT_TYPE_HANDLED, .msg_id = ID_A, .handled_at = 1 };
    assert_int_equal(keten_events_append(t->node, txn, &ev, NULL), KETEN_ERR_MALFORMED);
    keten_err_clear();
    keten_store_abort(&txn);
}

/* ---- damaged record -------------------------------------------------------------- */

static void test_damaged_is_reset(void **state)
{
    ctx *t = *state;
    assert_int_equal(append_n(t, 3, keten_now_ms()), 3);
    /* Event 2's record with one byte flipped (its checksum no longer holds). */
    MDB_txn *txn = NULL;
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(2, key);
    MDB_val v;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_store_get(t->node->store, txn, KETEN_DB_EVENTS, key, sizeof key, &v), KETEN_OK);
    uint8_t *copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size - 1] ^= 1;
    assert_int_equal(
        keten_store_put(t->node->store, txn, KETEN_DB_EVENTS, key, sizeof key, copy, v.mv_size),
        KETEN_OK);
    free(copy);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);

    uint64_t errors = t->node->counters.store_errors;
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, 1, 3);
    assert_string_equal(type_at(list, 0), "handled");
    assert_string_equal(type_at(list, 1), "reset");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_array_get(list, 1), "data"), "oldest")),
        1);
    assert_string_equal(type_at(list, 2), "handled");
    assert_int_equal(t->node->counters.store_errors, errors + 1);
    json_decref(list);
}

/* ---- SSE text ------------------------------------------------------------------- */

static void test_sse_format(void **state)
{
    (void)state;
    json_t *ev = json_pack("{s:I, s:s, s:{s:s, s:s}}", "id", (json_int_t)42, "event", "sent",
        "data", "msg_id", "00112233445566778899aabbccddeeff", "state", "accepted");
    assert_non_null(ev);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(keten_events_format_sse(ev, &text, &len), KETEN_OK);
    const char *want
        = "id: 42\nevent: sent\ndata: "
          "{\"msg_id\":\"00112233445566778899aabbccddeeff\",\"state\":\"accepted\"}\n\n";
    assert_string_equal(text, want);
    assert_int_equal(len, strlen(want));
    free(text);
    json_decref(ev);

    /* A value with line breaks of every kind stays on the data line. */
    ev = json_pack("{s:I, s:s, s:{s:s}}", "id", (json_int_t)7, "event", "message", "data", "from",
        "a\nb\rc\r\nd\u2028e");
    assert_non_null(ev);
    assert_int_equal(keten_events_format_sse(ev, &text, &len), KETEN_OK);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) {
        lines += text[i] == '\n';
        assert_true(text[i] != '\r');
    }
    assert_int_equal(lines, 4); /* id, event, data, the empty line */
    assert_non_null(strstr(text, "data: {\"from\":\"a\\nb\\rc\\r\\nd"));
    free(text);
    json_decref(ev);

    /* Reject twins: what is not an event. */
    const char *bad[] = {
        "{\"id\":-1,\"event\":\"sent\",\"data\":{}}",
        "{\"id\":\"1\",\"event\":\"sent\",\"data\":{}}",
        "{\"id\":1,\"event\":\"se\\nnt\",\"data\":{}}",
        "{\"id\":1,\"event\":\"Sent\",\"data\":{}}",
        "{\"id\":1,\"event\":\"\",\"data\":{}}",
        "{\"id\":1,\"event\":\"sent\",\"data\":[]}",
        "{\"id\":1,\"data\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ev = json_loads(bad[i], 0, NULL);
        assert_non_null(ev);
        text = (char *)"x";
        assert_int_equal(keten_events_format_sse(ev, &text, &len), KETEN_ERR_INVALID);
        assert_null(text);
        keten_err_clear();
        json_decref(ev);
    }
}

/* ---- listener ------------------------------------------------------------------- */

typedef struct heard {
    size_t calls;
    uint64_t seq;
} heard;

static void listener(void *arg, uint64_t seq)
{
    heard *h = arg;
    h->calls++;
    h->seq = seq;
}

static void test_listener_after_commit(void **state)
{
    ctx *t = *state;
    uint64_t now = keten_now_ms();
    assert_int_equal(append_n(t, 2, now), 2); /* before the listener: not told */
    heard h = { 0 };
    assert_int_equal(keten_events_set_listener(t->node, NULL, &h), KETEN_ERR_INVALID);
    keten_err_clear();
    assert_int_equal(keten_events_set_listener(t->node, listener, &h), KETEN_OK);
    assert_int_equal(h.calls, 0);

    /* In a group commit: nothing until the batch is durable. */
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_batch_begin(t->node->store), KETEN_OK);
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    append_at(t, txn, now);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    append_at(t, txn, now);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    assert_int_equal(h.calls, 0);
    assert_int_equal(keten_store_batch_end(t->node->store), KETEN_OK);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.seq, 4);

    /* Twin: a batch whose event was aborted tells nothing. */
    assert_int_equal(keten_store_batch_begin(t->node->store), KETEN_OK);
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    append_at(t, txn, now);
    keten_store_abort(&txn);
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_store_put(t->node->store, txn, KETEN_DB_STATE, "x", 1, "y", 1), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    assert_int_equal(keten_store_batch_end(t->node->store), KETEN_OK);
    assert_int_equal(h.calls, 1);

    /* Outside a batch: after the durable commit. */
    assert_int_equal(append_n(t, 1, now), 5);
    assert_int_equal(h.calls, 2);
    assert_int_equal(h.seq, 5);

    keten_events_clear_listener(t->node);
    assert_null(t->node->events);
    assert_int_equal(append_n(t, 1, now), 6);
    assert_int_equal(h.calls, 2);
}

/* ---- a real exchange ----------------------------------------------------------- */

/* The "receipted" record of s by recipient, signed by it, now. */
static uint64_t log_receipt(ctx *t, const fnode_sent *s, const char *recipient)
{
    const Keten__NodeCert *cert = keten_directory_find_id(t->node->dir, recipient);
    return fnode_bed_log_receipt(t, s, recipient, recipient, cert, keten_now_ms(), false);
}

/* bravo's reply to query_id, sealed with bravo's keys, to alpha. */
static uint8_t *seal_reply(ctx *t, const uint8_t *query_id, uint8_t *id, size_t *len)
{
    fnode_seal_opts o
        = { .kind = KETEN__KIND__KIND_REPLY, .in_reply_to = query_id, .life_ms = 3600 * 1000 };
    return fnode_seal(fixture_node(t->fx, "bravo"), t->node->dir, "alpha", SIGNAL, &o, id, len);
}

static uint64_t newest(ctx *t)
{
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    json_decref(list);
    return last;
}

static void test_exchange(void **state)
{
    ctx *t = *state;
    heard h = { 0 };
    assert_int_equal(keten_events_set_listener(t->node, listener, &h), KETEN_OK);
    fnode_sent *q = fnode_bed_send(t, KETEN__KIND__KIND_QUERY, "bravo,charlie", SUMMARY_SIGNAL);
    assert_int_equal(newest(t), 0); /* pending: no event */
    uint64_t rcpt = log_receipt(t, q, "bravo");
    /* dated at its expires_at, as the broker dates it (it expires a message
     * once that time has passed) */
    static const char *const charlie[] = { "charlie", NULL };
    uint64_t exp = fnode_bed_log_expired(t, q, charlie, fnode_sent_expires_at(q));
    uint64_t size = fnode_bed_checkpoint(t);

    /* Twin: an ack that proves another leaf is an alarm, not an event. */
    fnode_bed_ack_leaf(t, q->rid, rcpt, size);
    assert_int_equal(newest(t), 0);
    fnode_bed_ack_leaf(t, q->rid, q->leaf, size);
    assert_int_equal(newest(t), 1);
    assert_int_equal(h.seq, 1);
    /* The same again (a resend's duplicate): no second event. */
    fnode_bed_ack_leaf(t, q->rid, q->leaf, size);
    assert_int_equal(newest(t), 1);

    fnode_bed_receipt_notice(t, rcpt, size);
    fnode_bed_receipt_notice(t, rcpt, size); /* sent again: recorded before, no event */
    fnode_bed_expiry_notice(t, exp, size);
    fnode_bed_expiry_notice(t, exp, size);
    assert_int_equal(newest(t), 3);

    uint8_t reply_id[KETEN_MSG_ID_BYTES];
    size_t reply_len = 0;
    uint8_t *reply = seal_reply(t, q->id, reply_id, &reply_len);
    uint64_t reply_leaf = flog_submitted(t->log, reply, reply_len);
    size = fnode_bed_checkpoint(t);
    fnode_bed_deliver_leaf(t, reply, reply_len, reply_leaf, size);
    /* A duplicate: receipted, no event. */
    fnode_bed_deliver_leaf(t, reply, reply_len, reply_leaf, size);
    assert_int_equal(keten_inbox_ack(t->node, reply_id), KETEN_OK);
    assert_int_equal(keten_inbox_ack(t->node, reply_id), KETEN_OK); /* handled before */

    /* Refused by the broker with the proof of its rejected record. */
    fnode_sent *r = fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, "bravo", SUMMARY_SIGNAL);
    uint64_t rej = fnode_bed_log_rejected(t, r->id, "alpha", KETEN__REASON__REASON_POLICY, 0);
    fnode_bed_refusal_leaf(
        t, r->rid, r->id, KETEN__REASON__REASON_POLICY, 0, rej, fnode_bed_checkpoint(t));

    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, 1, 6);
    char qhex[KETEN_MSG_ID_HEX_BYTES], rhex[KETEN_MSG_ID_HEX_BYTES],
        replyhex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(q->id, KETEN_MSG_ID_BYTES, qhex);
    keten_hex(r->id, KETEN_MSG_ID_BYTES, rhex);
    keten_hex(reply_id, KETEN_MSG_ID_BYTES, replyhex);
    assert_string_equal(type_at(list, 0), "sent");
    assert_string_equal(data_str(list, 0, "msg_id"), qhex);
    assert_string_equal(data_str(list, 0, "state"), "accepted");
    assert_string_equal(type_at(list, 1), "receipt");
    assert_string_equal(data_str(list, 1, "msg_id"), qhex);
    assert_string_equal(data_str(list, 1, "recipient"), "bravo");
    assert_string_equal(data_str(list, 1, "state"), "receipted");
    assert_string_equal(type_at(list, 2), "receipt");
    assert_string_equal(data_str(list, 2, "recipient"), "charlie");
    assert_string_equal(data_str(list, 2, "state"), "expired");
    assert_string_equal(type_at(list, 3), "message");
    assert_string_equal(data_str(list, 3, "msg_id"), replyhex);
    assert_string_equal(data_str(list, 3, "kind"), "reply");
    assert_string_equal(data_str(list, 3, "from"), "bravo");
    assert_string_equal(data_str(list, 3, "category"), "woonfraude");
    assert_string_equal(data_str(list, 3, "in_reply_to"), qhex);
    assert_string_equal(type_at(list, 4), "handled");
    assert_string_equal(data_str(list, 4, "msg_id"), replyhex);
    assert_non_null(data_str(list, 4, "handled_at"));
    assert_string_equal(type_at(list, 5), "sent");
    assert_string_equal(data_str(list, 5, "msg_id"), rhex);
    assert_string_equal(data_str(list, 5, "state"), "rejected");
    /* Never content: the summary of the sent signals, the purpose. */
    char *all = json_dumps(list, JSON_COMPACT);
    assert_non_null(all);
    assert_null(strstr(all, "Hoofdstraat"));
    assert_null(strstr(all, "handhaving"));
    assert_null(strstr(all, "summary"));
    for (size_t i = 0; i < json_array_size(list); i++) {
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(keten_events_format_sse(json_array_get(list, i), &text, &len), KETEN_OK);
        free(text);
    }
    free(all);
    json_decref(list);
    /* Each outside a batch: the listener heard every one, in order. */
    assert_int_equal(h.calls, 6);
    assert_int_equal(h.seq, 6);
    /* Small records (docs/operations.md, "A node's disk"): the largest, the
     * message event with in_reply_to, stored with its checksum. */
    MDB_txn *txn = NULL;
    MDB_val v;
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(4, key);
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(
        keten_store_get(t->node->store, txn, KETEN_DB_EVENTS, key, sizeof key, &v), KETEN_OK);
    printf("# the message event's stored value: %zu bytes\n", v.mv_size);
    assert_true(v.mv_size < 160);
    keten_store_abort(&txn);
    free(reply);
}

/* A message that expired in the outbox, never acknowledged (the node was
 * down): "sent" "expired", with the change of its record. */
static void test_outbox_expiry(void **state)
{
    ctx *t = *state;
    fnode_seal_opts o = { .kind = KETEN__KIND__KIND_SIGNAL, .life_ms = 1 };
    uint8_t id[KETEN_MSG_ID_BYTES];
    size_t len = 0;
    uint8_t *env = fnode_seal(t->node->me, t->node->dir, "bravo", SIGNAL, &o, id, &len);
    fnode_bed_put_queued(t, id, env, len, "bravo");
    free(env);
    /* Twin: while it has not expired, a resend pass tells nothing. */
    assert_int_equal(newest(t), 0);
    struct timespec pause = { 0, 5 * 1000 * 1000 }; /* time under test: its 1 ms life passes */
    nanosleep(&pause, NULL);
    keten_outbox_submit_all(t->node);
    uint64_t oldest = 0, last = 0;
    json_t *list = read_after(t, 0, 0, &oldest, &last);
    expect_ids(list, 1, 1);
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(id, KETEN_MSG_ID_BYTES, hex);
    assert_string_equal(type_at(list, 0), "sent");
    assert_string_equal(data_str(list, 0, "msg_id"), hex);
    assert_string_equal(data_str(list, 0, "state"), "expired");
    json_decref(list);
    keten_outbox_submit_all(t->node); /* gone from the outbox: no second event */
    assert_int_equal(newest(t), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_read_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oldest_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_by_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_by_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aborted_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_monotonic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_is_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_expiry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
