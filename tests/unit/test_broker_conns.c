/* broker_conns: the broker's table of live connections (broker/conns.h),
 * with file descriptor numbers as the socket monitor reports them (no
 * socket: the table only keeps numbers). A connection is found by its
 * routing id and by its node; it belongs to the session of the descriptor
 * its first frame came from, so a disconnect of that descriptor finds it
 * (twin: a descriptor accepted again since, or never seen, finds nothing,
 * so a reused number never cuts off a newer connection). Of two connections
 * of one node, only a frame of the newer one replaces the older
 * (conns_newer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conns.h"
#include "util.h"

static const uint8_t KEY[KETEN_CURVE_KEY_BYTES] = { 0x4b };

static conn *add(conns *t, const char *rid, const char *node, int fd)
{
    conn *c = NULL;
    assert_int_equal(
        conns_add(t, (const uint8_t *)rid, strlen(rid), node, KEY, fd, 1000, &c), KETEN_OK);
    assert_non_null(c);
    return c;
}

static void test_find(void **state)
{
    (void)state;
    conns *t = conns_new();
    assert_non_null(t);
    conn *a = add(t, "rid-a", "alpha", -1);
    conn *b = add(t, "rid-b", "bravo", -1);
    assert_ptr_equal(conns_find_rid(t, (const uint8_t *)"rid-a", 5), a);
    assert_ptr_equal(conns_find_node(t, "bravo"), b);
    assert_null(conns_find_rid(t, (const uint8_t *)"rid-a", 4)); /* a prefix is another id */
    assert_null(conns_find_node(t, "charlie"));
    /* A new connection starts looking at its queue and notices, with no
     * Hello, no credit and nothing in flight. */
    assert_true(a->more);
    assert_true(a->notices);
    assert_false(a->hello);
    assert_int_equal(a->credit, 0);
    assert_int_equal(a->flight.bytes, 0);
    assert_int_equal(a->connected_at, 1000);
    assert_memory_equal(a->key, KEY, sizeof KEY);
    conns_remove(t, a);
    assert_null(conns_find_node(t, "alpha"));
    assert_ptr_equal(conns_find_node(t, "bravo"), b);
    /* Many connections: the table grows. */
    char rid[16], node[16];
    for (int i = 0; i < 100; i++) {
        snprintf(rid, sizeof rid, "r%d", i);
        snprintf(node, sizeof node, "n%d", i);
        add(t, rid, node, -1);
    }
    assert_int_equal(t->n, 101);
    assert_non_null(conns_find_node(t, "n99"));
    conns_destroy(&t);
    assert_null(t);
    conns_destroy(&t);
}

static void test_invalid(void **state)
{
    (void)state;
    conns *t = conns_new();
    conn *c = NULL;
    uint8_t long_rid[CONN_RID_MAX + 1] = { 0 };
    assert_int_equal(conns_add(t, long_rid, 0, "alpha", KEY, -1, 0, &c), KETEN_ERR_INVALID);
    assert_int_equal(
        conns_add(t, long_rid, sizeof long_rid, "alpha", KEY, -1, 0, &c), KETEN_ERR_INVALID);
    assert_int_equal(
        conns_add(t, long_rid, 1, "a-node-id-longer-than-thirty-two-bytes", KEY, -1, 0, &c),
        KETEN_ERR_INVALID);
    assert_null(c);
    assert_int_equal(t->n, 0);
    assert_int_equal(conns_add(t, long_rid, CONN_RID_MAX, "alpha", KEY, -1, 0, &c), KETEN_OK);
    conns_destroy(&t);
}

static void test_sessions(void **state)
{
    (void)state;
    conns *t = conns_new();
    conns_fd_accepted(t, 7);
    conn *a = add(t, "rid-a", "alpha", 7);
    assert_true(a->session != 0);
    /* The descriptor closes: its connection is found. */
    assert_ptr_equal(conns_fd_disconnected(t, 7), a);
    /* Twin: a second report of it finds nothing. */
    assert_null(conns_fd_disconnected(t, 7));

    /* The number is reused by a new connection before the old one's frames
     * are gone: closing it names the new one only. */
    conns_fd_accepted(t, 7);
    conn *b = add(t, "rid-b", "bravo", 7);
    assert_true(b->session != a->session);
    conns_fd_accepted(t, 7); /* accepted again: b's session is over */
    assert_null(conns_fd_disconnected(t, 7));
    conns_fd_accepted(t, 7);
    conn *c = add(t, "rid-c", "charlie", 7);
    assert_ptr_equal(conns_fd_disconnected(t, 7), c);

    /* Descriptors never accepted, or out of range, have no session. */
    conn *d = add(t, "rid-d", "delta", 9);
    assert_int_equal(d->session, 0);
    assert_null(conns_fd_disconnected(t, 9));
    assert_null(conns_fd_disconnected(t, -1));
    conns_fd_accepted(t, -1);
    conns_fd_accepted(t, 1 << 21);
    assert_null(conns_fd_disconnected(t, 1 << 21));
    conns_fd_accepted(t, 200); /* the table of descriptors grows */
    conn *e = add(t, "rid-e", "echo", 200);
    assert_ptr_equal(conns_fd_disconnected(t, 200), e);
    conns_destroy(&t);
}

/* A node connects again while frames of its old connection still wait:
 * only a frame from a later session replaces its connection; a frame from
 * an earlier session, or from a descriptor already disconnected, is stale.
 * Twins: the later session replaces; a connection of unknown session is
 * replaced by any; the same session under another routing id is decided by
 * a Hello. */
/* Routing ids the ROUTER made (a zero and a 32-bit counter) order two
 * connections whatever the descriptors say; the counter wraps. */
static void test_rid_order(void **state)
{
    (void)state;
    conns *t = conns_new();
    conn *c = NULL;
    static const uint8_t old_rid[5] = { 0, 0x12, 0x34, 0x56, 0x78 };
    static const uint8_t next[5] = { 0, 0x12, 0x34, 0x56, 0x79 };
    static const uint8_t before[5] = { 0, 0x12, 0x34, 0x56, 0x77 };
    static const uint8_t peer_set[5] = { 'n', 'o', 'd', 'e', '1' };
    assert_int_equal(
        conns_add(t, old_rid, 5, "alpha", (const uint8_t[32]) { 1 }, 7, 0, &c), KETEN_OK);
    assert_int_equal(conns_rid_order(c, next, 5), 1); /* accepted later */
    assert_int_equal(conns_rid_order(c, before, 5), -1); /* accepted earlier: stale */
    assert_int_equal(conns_rid_order(c, old_rid, 5), 0); /* the same */
    assert_int_equal(conns_rid_order(c, peer_set, 5), 0); /* not the ROUTER's: sessions decide */
    assert_int_equal(conns_rid_order(c, next, 4), 0);
    conns_remove(t, c);
    static const uint8_t last[5] = { 0, 0xff, 0xff, 0xff, 0xff };
    static const uint8_t wrapped[5] = { 0, 0, 0, 0, 1 };
    assert_int_equal(conns_add(t, last, 5, "alpha", (const uint8_t[32]) { 1 }, 7, 0, &c), KETEN_OK);
    assert_int_equal(conns_rid_order(c, wrapped, 5), 1); /* the counter wrapped */
    conns_remove(t, c);
    assert_int_equal(
        conns_add(t, wrapped, 5, "alpha", (const uint8_t[32]) { 1 }, 7, 0, &c), KETEN_OK);
    assert_int_equal(conns_rid_order(c, last, 5), -1);
    conns_destroy(&t);
}

/* Frames still queued from a connection that ended, read after the monitor
 * told that it closed, are known for what they are: the routing id of that
 * connection or of an earlier one of the node; a later connection's frames,
 * another node's, and routing ids a peer set itself are not. */
static void test_from_closed(void **state)
{
    (void)state;
    conns *t = conns_new();
    conn *c = NULL;
    static const uint8_t rid[5] = { 0, 0x12, 0x34, 0x56, 0x78 };
    static const uint8_t next[5] = { 0, 0x12, 0x34, 0x56, 0x79 };
    static const uint8_t before[5] = { 0, 0x12, 0x34, 0x56, 0x77 };
    static const uint8_t peer_set[5] = { 'n', 'o', 'd', 'e', '1' };
    uint64_t dropped = 9;
    assert_false(conns_from_closed(t, "alpha", rid, 5, &dropped)); /* nothing ended yet */
    assert_int_equal(dropped, 0);
    assert_int_equal(conns_add(t, rid, 5, "alpha", (const uint8_t[32]) { 1 }, 7, 0, &c), KETEN_OK);
    assert_int_equal(conns_closed(t, c), KETEN_OK);
    conns_remove(t, c);
    assert_true(conns_from_closed(t, "alpha", rid, 5, &dropped)); /* the ended connection's */
    assert_int_equal(dropped, 1);
    assert_true(conns_from_closed(t, "alpha", rid, 5, &dropped));
    assert_int_equal(dropped, 2); /* counted, so that the broker logs the first only */
    assert_true(conns_from_closed(t, "alpha", before, 5, &dropped)); /* an earlier one's */
    assert_false(conns_from_closed(t, "alpha", next, 5, &dropped)); /* a new connection */
    assert_false(conns_from_closed(t, "bravo", rid, 5, &dropped)); /* another node */
    assert_false(conns_from_closed(t, "alpha", peer_set, 5, &dropped)); /* not the ROUTER's id */
    assert_false(conns_from_closed(t, "alpha", rid, 4, &dropped));
    /* The later connection ends too: the count starts again, and an earlier
     * one ending after it does not move the mark back. */
    assert_int_equal(conns_add(t, next, 5, "alpha", (const uint8_t[32]) { 1 }, 7, 0, &c), KETEN_OK);
    assert_int_equal(conns_closed(t, c), KETEN_OK);
    conns_remove(t, c);
    assert_true(conns_from_closed(t, "alpha", next, 5, &dropped));
    assert_int_equal(dropped, 1);
    assert_int_equal(
        conns_add(t, before, 5, "alpha", (const uint8_t[32]) { 1 }, 7, 0, &c), KETEN_OK);
    assert_int_equal(conns_closed(t, c), KETEN_OK);
    conns_remove(t, c);
    assert_true(conns_from_closed(t, "alpha", next, 5, &dropped));
    /* A routing id the peer set itself is not remembered. */
    assert_int_equal(
        conns_add(t, peer_set, 5, "bravo", (const uint8_t[32]) { 2 }, 8, 0, &c), KETEN_OK);
    assert_int_equal(conns_closed(t, c), KETEN_OK);
    conns_remove(t, c);
    assert_false(conns_from_closed(t, "bravo", peer_set, 5, &dropped));
    /* Across the counter's wrap. */
    static const uint8_t last[5] = { 0, 0xff, 0xff, 0xff, 0xfe };
    static const uint8_t wrapped[5] = { 0, 0, 0, 0, 1 };
    static const uint8_t last_before[5] = { 0, 0xff, 0xff, 0xff, 0xf0 };
    assert_int_equal(conns_add(t, last, 5, "carol", (const uint8_t[32]) { 3 }, 9, 0, &c), KETEN_OK);
    assert_int_equal(conns_closed(t, c), KETEN_OK);
    conns_remove(t, c);
    assert_false(conns_from_closed(t, "carol", wrapped, 5, &dropped));
    assert_true(conns_from_closed(t, "carol", last_before, 5, &dropped));
    conns_destroy(&t);
}

static void test_newer(void **state)
{
    (void)state;
    conns *t = conns_new();
    conns_fd_accepted(t, 7);
    conns_fd_accepted(t, 8);
    uint64_t s7 = conns_fd_session(t, 7), s8 = conns_fd_session(t, 8);
    assert_true(s7 != 0 && s8 > s7);
    conn *old = add(t, "rid-old", "alpha", 7);
    assert_int_equal(old->session, s7);
    assert_true(conns_newer(old, s8, false)); /* the later connection replaces */
    assert_true(conns_newer(old, s8, true));
    conns_remove(t, old); /* replaced */
    conn *cur = add(t, "rid-new", "alpha", 8);
    assert_false(conns_newer(cur, s7, false)); /* a frame of the earlier one: stale */
    assert_false(conns_newer(cur, s7, true)); /* even its Hello */
    assert_null(conns_fd_disconnected(t, 7)); /* the old descriptor closes */
    assert_int_equal(conns_fd_session(t, 7), 0);
    assert_false(conns_newer(cur, 0, false)); /* its descriptor since closed: stale */
    assert_false(conns_newer(cur, 0, true));
    /* The same session under another routing id: only a Hello starts it. */
    assert_false(conns_newer(cur, s8, false));
    assert_true(conns_newer(cur, s8, true));
    /* Nothing to compare with (a descriptor not tracked): any frame replaces. */
    conn *untracked = add(t, "rid-u", "bravo", 9);
    assert_int_equal(untracked->session, 0);
    assert_true(conns_newer(untracked, 0, false));
    assert_true(conns_newer(untracked, s7, false));
    conns_destroy(&t);
}

/* Every frame's authenticated peer (User-Id and the admitted CurveZMQ key,
 * as ZAP set them) is compared with the peer the routing id was bound to:
 * another node's id, another key, a missing or malformed property is a
 * mismatch; twin: the bound node with its own key matches. */
static void test_same_peer(void **state)
{
    (void)state;
    conns *t = conns_new();
    conn *a = add(t, "rid-a", "alpha", -1);
    char hex[2 * KETEN_CURVE_KEY_BYTES + 1];
    keten_hex(KEY, sizeof KEY, hex);
    assert_true(conns_same_peer(a, "alpha", hex));

    assert_false(conns_same_peer(a, "bravo", hex)); /* another node's User-Id */
    assert_false(conns_same_peer(a, "alph", hex)); /* a prefix is another id */
    assert_false(conns_same_peer(a, "alpha2", hex));
    assert_false(conns_same_peer(a, NULL, hex)); /* no User-Id at all */
    assert_false(conns_same_peer(a, "alpha", NULL)); /* no admitted key */
    uint8_t other[KETEN_CURVE_KEY_BYTES] = { 0x4c };
    char ohex[2 * KETEN_CURVE_KEY_BYTES + 1];
    keten_hex(other, sizeof other, ohex);
    assert_false(conns_same_peer(a, "alpha", ohex)); /* the same node id, another key */
    for (size_t i = 0; i < 2 * KETEN_CURVE_KEY_BYTES; i++) { /* any one character differing */
        char h2[sizeof hex];
        memcpy(h2, hex, sizeof hex);
        h2[i] = h2[i] == 'f' ? 'e' : 'f';
        assert_false(conns_same_peer(a, "alpha", h2));
    }
    hex[2 * KETEN_CURVE_KEY_BYTES - 1] = '\0'; /* one hex digit short */
    assert_false(conns_same_peer(a, "alpha", hex));
    assert_false(conns_same_peer(a, "alpha", "zz")); /* not hex */
    char bad[2 * KETEN_CURVE_KEY_BYTES + 1];
    memset(bad, 'z', sizeof bad - 1);
    bad[sizeof bad - 1] = '\0';
    assert_false(conns_same_peer(a, "alpha", bad)); /* the right length, not hex */
    conns_destroy(&t);
}

/* A node's answer budget: CONN_ANSWER_BYTES_BURST at once, then
 * CONN_ANSWER_BYTES_PER_S; per node, never above the burst. */
static void test_answer_budget(void **state)
{
    (void)state;
    conns *cs = conns_new();
    assert_non_null(cs);
    bool ok = false;
    uint64_t wait = 0, t0 = 1000000;
    assert_int_equal(
        conns_answer_take(cs, "alpha", CONN_ANSWER_BYTES_BURST, t0, &ok, &wait), KETEN_OK);
    assert_true(ok);
    /* Empty: one byte more waits (a millisecond), nothing is taken. */
    assert_int_equal(conns_answer_take(cs, "alpha", 1, t0, &ok, &wait), KETEN_OK);
    assert_false(ok);
    assert_int_equal(wait, 1);
    assert_int_equal(
        conns_answer_take(cs, "alpha", CONN_ANSWER_BYTES_PER_S, t0, &ok, &wait), KETEN_OK);
    assert_false(ok);
    assert_int_equal(wait, 1000);
    /* Another node has its own. */
    assert_int_equal(
        conns_answer_take(cs, "bravo", CONN_ANSWER_BYTES_BURST, t0, &ok, &wait), KETEN_OK);
    assert_true(ok);
    /* A second later, one second's worth, and not a byte more. */
    assert_int_equal(
        conns_answer_take(cs, "alpha", CONN_ANSWER_BYTES_PER_S, t0 + 1000, &ok, &wait), KETEN_OK);
    assert_true(ok);
    assert_int_equal(conns_answer_take(cs, "alpha", 1, t0 + 1000, &ok, &wait), KETEN_OK);
    assert_false(ok);
    /* Long after, the burst again, never more. */
    uint64_t later = t0 + 1000000000ull;
    assert_int_equal(
        conns_answer_take(cs, "alpha", CONN_ANSWER_BYTES_BURST + 1, later, &ok, &wait), KETEN_OK);
    assert_false(ok);
    assert_int_equal(
        conns_answer_take(cs, "alpha", CONN_ANSWER_BYTES_BURST, later, &ok, &wait), KETEN_OK);
    assert_true(ok);
    conns_destroy(&cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_newer),
        cmocka_unit_test(test_rid_order),
        cmocka_unit_test(test_from_closed),
        cmocka_unit_test(test_same_peer),
        cmocka_unit_test(test_answer_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
