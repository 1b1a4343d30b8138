/* broker_store: the broker's LMDB store (broker/store.h), on a real store
 * in a temporary directory; the message records are made here by hand (the
 * store does not look inside envelopes).
 *
 * The msg_id index: an accepted message is found by its msg_id (`seen`) and
 * by its leaf, with its queue, expiry and seen entries (twins: an unknown
 * msg_id, a leaf that holds nothing, a second message under a msg_id or a
 * leaf already used, a `seen` entry that leads to another msg_id's record,
 * a damaged record); a deleted message leaves its msg_id remembered. The
 * retry horizon: store_seen_prune() forgets exactly the msg_ids first seen
 * before the cut, at most max at a time, and keeps the message records.
 * Notices stay until confirmed, and only the owner's confirmation deletes
 * one. Also: one broker per store, checkpoints by tree size, the room
 * check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "envelope.h"
#include "outq.h"
#include "store.h"
#include "util.h"

#define MAP (64ull << 20)
#define T0 1700000000000ull

typedef struct ctx {
    char home[64];
    store *st;
    MDB_txn *txn;
} ctx;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    const char *tmp = getenv("TMPDIR");
    snprintf(c->home, sizeof c->home, "%s/keten-bstore.XXXXXX",
        tmp != NULL && tmp[0] != '\0' && strlen(tmp) < 32 ? tmp : "/tmp");
    assert_non_null(mkdtemp(c->home));
    assert_int_equal(store_open(c->home, MAP, &c->st), KETEN_OK);
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    store_abort(&c->txn);
    store_close(&c->st);
    assert_int_equal(nftw(c->home, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(c);
    return 0;
}

/* A message from alpha to bravo and charlie, msg_id = n repeated, at leaf. */
static store_msg make_msg(uint8_t n, uint64_t leaf)
{
    store_msg m;
    memset(&m, 0, sizeof m);
    memset(m.msg_id, n, sizeof m.msg_id);
    m.leaf = leaf;
    m.created_at = T0;
    m.expires_at = T0 + 3600000 + leaf;
    memset(m.envelope_hash, 0xe0 | n, sizeof m.envelope_hash);
    strcpy(m.sender, "alpha");
    m.n_rcpt = 2;
    strcpy(m.rcpt[0].id, "bravo");
    strcpy(m.rcpt[1].id, "charlie");
    return m;
}

static const uint8_t ENV[] = "an envelope: the store keeps its bytes as they are";

static void accept_msg(ctx *c, const store_msg *m, uint64_t now)
{
    assert_int_equal(store_msg_accept(c->st, c->txn, m, ENV, sizeof ENV, now), KETEN_OK);
}

static bool queued(ctx *c, const char *node, uint64_t leaf)
{
    uint8_t k[STORE_NODE_KEY_MAX];
    size_t n = store_node_key(node, leaf, k);
    assert_true(n > 0);
    MDB_val kv = { n, k }, v;
    return mdb_get(c->txn, c->st->queue, &kv, &v) == 0;
}

static bool expiry_entry(ctx *c, uint64_t expires_at, uint64_t leaf)
{
    uint8_t k[16];
    store_be64(expires_at, k);
    store_be64(leaf, k + 8);
    MDB_val kv = { sizeof k, k }, v;
    return mdb_get(c->txn, c->st->expiry, &kv, &v) == 0;
}

/* ---- the msg_id index ---------------------------------------------------- */

static void test_msg_id_index(void **state)
{
    ctx *c = *state;
    store_msg m = make_msg(1, 10);
    accept_msg(c, &m, T0 + 5);

    store_seen seen;
    bool found = false;
    assert_int_equal(store_seen_get(c->st, c->txn, m.msg_id, &seen, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(seen.leaf, 10);
    assert_int_equal(seen.first_seen, T0 + 5);
    assert_memory_equal(seen.envelope_hash, m.envelope_hash, KETEN_HASH_BYTES);

    store_msg got;
    assert_int_equal(store_msg_find(c->st, c->txn, m.msg_id, &got, &found), KETEN_OK);
    assert_true(found);
    assert_memory_equal(got.msg_id, m.msg_id, KETEN_MSG_ID_BYTES);
    assert_int_equal(got.leaf, 10);
    assert_int_equal(got.created_at, m.created_at);
    assert_int_equal(got.expires_at, m.expires_at);
    assert_string_equal(got.sender, "alpha");
    assert_int_equal(got.n_rcpt, 2);
    assert_string_equal(got.rcpt[0].id, "bravo");
    assert_string_equal(got.rcpt[1].id, "charlie");
    assert_int_equal(got.rcpt[0].state, STORE_QUEUED);
    assert_int_equal(store_msg_get(c->st, c->txn, 10, &got, &found), KETEN_OK);
    assert_true(found);
    const uint8_t *env = NULL;
    size_t len = 0;
    assert_int_equal(store_envelope_get(c->st, c->txn, 10, &env, &len), KETEN_OK);
    assert_int_equal(len, sizeof ENV);
    assert_memory_equal(env, ENV, len);
    assert_true(queued(c, "bravo", 10));
    assert_true(queued(c, "charlie", 10));
    assert_false(queued(c, "alpha", 10));
    assert_true(expiry_entry(c, m.expires_at, 10));

    /* A state change is written back under the same leaf. */
    got.rcpt[1].state = STORE_DELIVERED;
    assert_int_equal(store_msg_put(c->st, c->txn, &got), KETEN_OK);
    assert_int_equal(store_msg_find(c->st, c->txn, m.msg_id, &got, &found), KETEN_OK);
    assert_int_equal(got.rcpt[1].state, STORE_DELIVERED);

    /* Twins: what is not there is not found, and is not an error. */
    uint8_t other[KETEN_MSG_ID_BYTES];
    memset(other, 2, sizeof other);
    assert_int_equal(store_seen_get(c->st, c->txn, other, &seen, &found), KETEN_OK);
    assert_false(found);
    assert_int_equal(store_msg_find(c->st, c->txn, other, &got, &found), KETEN_OK);
    assert_false(found);
    assert_int_equal(store_msg_get(c->st, c->txn, 11, &got, &found), KETEN_OK);
    assert_false(found);
    assert_int_equal(store_envelope_get(c->st, c->txn, 11, &env, &len), KETEN_ERR_NOT_FOUND);
}

/* One message per msg_id, one per leaf, leaves only growing. */
static void test_msg_id_taken(void **state)
{
    ctx *c = *state;
    store_msg m = make_msg(1, 10);
    accept_msg(c, &m, T0);
    store_msg again = make_msg(1, 11);
    assert_int_equal(store_msg_accept(c->st, c->txn, &again, ENV, sizeof ENV, T0), KETEN_ERR_STORE);
    store_abort(&c->txn);
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
    accept_msg(c, &m, T0);
    store_msg same_leaf = make_msg(3, 10);
    assert_int_equal(
        store_msg_accept(c->st, c->txn, &same_leaf, ENV, sizeof ENV, T0), KETEN_ERR_STORE);
    store_abort(&c->txn);
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
    accept_msg(c, &m, T0);
    store_msg earlier = make_msg(4, 9);
    assert_int_equal(
        store_msg_accept(c->st, c->txn, &earlier, ENV, sizeof ENV, T0), KETEN_ERR_STORE);
}

/* `seen` leading to a record of another msg_id, and a record that does not
 * decode or names another leaf: the store was altered; never read as
 * something else. */
static void test_index_damage(void **state)
{
    ctx *c = *state;
    store_msg a = make_msg(1, 10), b = make_msg(2, 20);
    accept_msg(c, &a, T0);
    accept_msg(c, &b, T0);
    uint8_t sv[KETEN_HASH_BYTES + 16];
    memcpy(sv, a.envelope_hash, KETEN_HASH_BYTES);
    store_be64(20, sv + KETEN_HASH_BYTES);
    store_be64(T0, sv + KETEN_HASH_BYTES + 8);
    MDB_val k = { KETEN_MSG_ID_BYTES, a.msg_id }, v = { sizeof sv, sv };
    assert_int_equal(mdb_put(c->txn, c->st->seen, &k, &v, 0), 0);
    store_msg got;
    bool found = false;
    assert_int_equal(store_msg_find(c->st, c->txn, a.msg_id, &got, &found), KETEN_ERR_MALFORMED);

    v.mv_size = sizeof sv - 1;
    assert_int_equal(mdb_put(c->txn, c->st->seen, &k, &v, 0), 0);
    store_seen seen;
    assert_int_equal(store_seen_get(c->st, c->txn, a.msg_id, &seen, &found), KETEN_ERR_MALFORMED);

    /* b's record filed under leaf 30, and a record whose version byte is
     * wrong. */
    uint8_t lk[8];
    store_be64(20, lk);
    MDB_val rk = { sizeof lk, lk }, rv;
    assert_int_equal(mdb_get(c->txn, c->st->msgs, &rk, &rv), 0);
    uint8_t rec[1024];
    assert_true(rv.mv_size <= sizeof rec);
    size_t rlen = rv.mv_size;
    memcpy(rec, rv.mv_data, rlen);
    uint8_t lk30[8];
    store_be64(30, lk30);
    MDB_val k30 = { sizeof lk30, lk30 }, v30 = { rlen, rec };
    assert_int_equal(mdb_put(c->txn, c->st->msgs, &k30, &v30, 0), 0);
    assert_int_equal(store_msg_get(c->st, c->txn, 30, &got, &found), KETEN_ERR_MALFORMED);
    rec[0] ^= 0xff;
    MDB_val bad = { rlen, rec };
    assert_int_equal(mdb_put(c->txn, c->st->msgs, &rk, &bad, 0), 0);
    assert_int_equal(store_msg_get(c->st, c->txn, 20, &got, &found), KETEN_ERR_MALFORMED);
    rec[0] ^= 0xff;
    bad.mv_size = rlen - 1; /* the last recipient's name cut short */
    assert_int_equal(mdb_put(c->txn, c->st->msgs, &rk, &bad, 0), 0);
    assert_int_equal(store_msg_get(c->st, c->txn, 20, &got, &found), KETEN_ERR_MALFORMED);
    /* Twin: the record as written reads back. */
    bad.mv_size = rlen;
    assert_int_equal(mdb_put(c->txn, c->st->msgs, &rk, &bad, 0), 0);
    assert_int_equal(store_msg_get(c->st, c->txn, 20, &got, &found), KETEN_OK);
    assert_true(found);
    assert_memory_equal(got.msg_id, b.msg_id, KETEN_MSG_ID_BYTES);
}

/* Deleting a message removes its record, envelope and expiry entry; its
 * msg_id stays remembered (a resend is a DUPLICATE) until the horizon. */
static void test_delete_keeps_msg_id(void **state)
{
    ctx *c = *state;
    store_msg m = make_msg(1, 10);
    accept_msg(c, &m, T0);
    assert_int_equal(store_queue_delete(c->st, c->txn, "bravo", 10), KETEN_OK);
    assert_int_equal(store_queue_delete(c->st, c->txn, "charlie", 10), KETEN_OK);
    assert_int_equal(store_queue_delete(c->st, c->txn, "charlie", 10), KETEN_OK); /* again */
    assert_int_equal(store_msg_delete(c->st, c->txn, &m), KETEN_OK);
    store_msg got;
    bool found = true;
    assert_int_equal(store_msg_get(c->st, c->txn, 10, &got, &found), KETEN_OK);
    assert_false(found);
    const uint8_t *env = NULL;
    size_t len = 0;
    assert_int_equal(store_envelope_get(c->st, c->txn, 10, &env, &len), KETEN_ERR_NOT_FOUND);
    assert_false(expiry_entry(c, m.expires_at, 10));
    assert_false(queued(c, "bravo", 10));
    store_seen seen;
    assert_int_equal(store_seen_get(c->st, c->txn, m.msg_id, &seen, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(seen.leaf, 10);
    assert_int_equal(store_msg_find(c->st, c->txn, m.msg_id, &got, &found), KETEN_OK);
    assert_false(found);
}

/* The slot of the table of recent leaves that holds msg_id n (NULL: none). */
static store_recent *recent_of(ctx *c, uint8_t n)
{
    uint8_t id[KETEN_MSG_ID_BYTES];
    memset(id, n, sizeof id);
    for (size_t i = 0; i < STORE_RECENT_SLOTS; i++) {
        if (c->st->recent[i].used && memcmp(c->st->recent[i].msg_id, id, sizeof id) == 0) {
            return &c->st->recent[i];
        }
    }
    return NULL;
}

/* store_msg_find_recent finds a message accepted lately without reading
 * `seen`, and gives store_msg_find's answer whenever its hint is wrong. */
static void test_find_recent(void **state)
{
    ctx *c = *state;
    /* A fixed key instead of the random one, so that the msg_ids below
     * always have slots of their own (with a random key, msg_ids 1 and 2
     * would share one slot once in 16,384 runs, and the test would fail). */
    memset(c->st->recent_key, 0x5c, sizeof c->st->recent_key);
    store_msg a = make_msg(1, 10), b = make_msg(2, 20);
    accept_msg(c, &a, T0);
    accept_msg(c, &b, T0);
    store_msg got;
    bool found = false;
    unsigned reads = c->st->random_reads;
    assert_int_equal(store_msg_find_recent(c->st, c->txn, a.msg_id, &got, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(got.leaf, 10);
    assert_memory_equal(got.msg_id, a.msg_id, KETEN_MSG_ID_BYTES);
    assert_int_equal(c->st->random_reads, reads); /* `seen` not read */
    /* Twin: store_msg_find reads it. */
    assert_int_equal(store_msg_find(c->st, c->txn, a.msg_id, &got, &found), KETEN_OK);
    assert_int_equal(c->st->random_reads, reads + 1);

    /* A wrong hint (another message's leaf): the record there is not a's,
     * so `seen` decides. */
    store_recent *r = recent_of(c, 1);
    assert_non_null(r);
    assert_non_null(recent_of(c, 2)); /* a slot of its own */
    r->leaf = 20;
    reads = c->st->random_reads;
    assert_int_equal(store_msg_find_recent(c->st, c->txn, a.msg_id, &got, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(got.leaf, 10);
    assert_memory_equal(got.msg_id, a.msg_id, KETEN_MSG_ID_BYTES);
    assert_int_equal(c->st->random_reads, reads + 1);
    /* A hint to a leaf with no record. */
    r->leaf = 99;
    assert_int_equal(store_msg_find_recent(c->st, c->txn, a.msg_id, &got, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(got.leaf, 10);

    /* A message of a transaction that was not committed leaves a hint; its
     * leaf is then another message's: not found, as through `seen`. */
    assert_int_equal(store_commit(c->st, &c->txn), KETEN_OK);
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
    store_msg lost = make_msg(3, 30);
    accept_msg(c, &lost, T0);
    store_abort(&c->txn);
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
    assert_non_null(recent_of(c, 3));
    store_msg other = make_msg(4, 30);
    accept_msg(c, &other, T0);
    assert_int_equal(store_msg_find_recent(c->st, c->txn, lost.msg_id, &got, &found), KETEN_OK);
    assert_false(found);
    assert_int_equal(store_msg_find_recent(c->st, c->txn, other.msg_id, &got, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(got.leaf, 30);

    /* A deleted message is not found (its msg_id stays in `seen`), and its
     * hint is gone. */
    assert_int_equal(store_msg_delete(c->st, c->txn, &b), KETEN_OK);
    assert_null(recent_of(c, 2));
    assert_int_equal(store_msg_find_recent(c->st, c->txn, b.msg_id, &got, &found), KETEN_OK);
    assert_false(found);
    /* Twin: the message left is still found. */
    assert_int_equal(store_msg_find_recent(c->st, c->txn, a.msg_id, &got, &found), KETEN_OK);
    assert_true(found);
}

/* ---- the retry horizon --------------------------------------------------- */

static bool remembered(ctx *c, uint8_t n)
{
    uint8_t id[KETEN_MSG_ID_BYTES];
    memset(id, n, sizeof id);
    store_seen seen;
    bool found = false;
    assert_int_equal(store_seen_get(c->st, c->txn, id, &seen, &found), KETEN_OK);
    return found;
}

static void test_retry_horizon(void **state)
{
    ctx *c = *state;
    for (uint8_t i = 1; i <= 4; i++) {
        store_msg m = make_msg(i, i);
        accept_msg(c, &m, T0 + 10u * i); /* first seen T0+10, +20, +30, +40 */
    }
    size_t n = 99;
    /* Nothing is older than the earliest. */
    assert_int_equal(store_seen_prune(c->st, c->txn, T0 + 10, 100, &n), KETEN_OK);
    assert_int_equal(n, 0);
    assert_true(remembered(c, 1));
    /* Before T0+30: the first two, and at most max at a time. */
    assert_int_equal(store_seen_prune(c->st, c->txn, T0 + 30, 1, &n), KETEN_OK);
    assert_int_equal(n, 1);
    assert_false(remembered(c, 1));
    assert_true(remembered(c, 2));
    assert_int_equal(store_seen_prune(c->st, c->txn, T0 + 30, 100, &n), KETEN_OK);
    assert_int_equal(n, 1);
    assert_false(remembered(c, 2));
    assert_true(remembered(c, 3)); /* first seen exactly at the cut: kept */
    assert_true(remembered(c, 4));
    /* The message records are not the index's to delete. */
    store_msg got;
    bool found = false;
    assert_int_equal(store_msg_get(c->st, c->txn, 1, &got, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(store_seen_prune(c->st, c->txn, UINT64_MAX, 100, &n), KETEN_OK);
    assert_int_equal(n, 2);
    assert_false(remembered(c, 4));
}

/* ---- notices --------------------------------------------------------------- */

static void test_notices_until_confirmed(void **state)
{
    ctx *c = *state;
    uint8_t kind = OUTQ_RECEIPT_NOTICE;
    assert_int_equal(store_notice_put(c->st, c->txn, "alpha", 7, &kind, 1), KETEN_OK);
    kind = OUTQ_EXPIRED_NOTICE;
    assert_int_equal(store_notice_put(c->st, c->txn, "alpha", 8, &kind, 1), KETEN_OK);
    assert_int_equal(store_notice_put(c->st, c->txn, "bravo", 7, &kind, 1), KETEN_OK);
    assert_int_equal(store_commit(c->st, &c->txn), KETEN_OK);
    /* Durable: still there in the next transaction. */
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
    const uint8_t *v = NULL;
    size_t len = 0;
    assert_int_equal(store_notice_get(c->st, c->txn, "alpha", 7, &v, &len), KETEN_OK);
    assert_int_equal(len, 1);
    assert_int_equal(v[0], OUTQ_RECEIPT_NOTICE);

    /* Another node confirming alpha's leaf 8 deletes nothing (it has none
     * there); bravo's confirmation of 7 deletes bravo's, not alpha's. */
    bool found = true;
    assert_int_equal(store_notice_delete(c->st, c->txn, "charlie", 8, &found), KETEN_OK);
    assert_false(found);
    assert_int_equal(store_notice_get(c->st, c->txn, "alpha", 8, &v, &len), KETEN_OK);
    assert_int_equal(store_notice_delete(c->st, c->txn, "bravo", 7, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(store_notice_get(c->st, c->txn, "alpha", 7, &v, &len), KETEN_OK);
    assert_int_equal(store_notice_get(c->st, c->txn, "bravo", 7, &v, &len), KETEN_ERR_NOT_FOUND);

    /* The owner's confirmation deletes; a second one finds nothing. */
    assert_int_equal(store_notice_delete(c->st, c->txn, "alpha", 7, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(store_notice_get(c->st, c->txn, "alpha", 7, &v, &len), KETEN_ERR_NOT_FOUND);
    assert_int_equal(store_notice_delete(c->st, c->txn, "alpha", 7, &found), KETEN_OK);
    assert_false(found);
    assert_int_equal(store_notice_get(c->st, c->txn, "alpha", 8, &v, &len), KETEN_OK);
    /* An invalid node id names no notice. */
    assert_int_equal(
        store_notice_delete(c->st, c->txn, "Not A Node", 8, &found), KETEN_ERR_INVALID);
}

/* ---- the rest ------------------------------------------------------------- */

static void test_one_broker_per_store(void **state)
{
    ctx *c = *state;
    store *second = NULL;
    assert_int_equal(store_open(c->home, MAP, &second), KETEN_ERR_EXISTS);
    assert_null(second);
    assert_int_equal(store_open(c->home, STORE_MAP_SIZE_MIN - 1, &second), KETEN_ERR_INVALID);
}

static void test_checkpoints(void **state)
{
    ctx *c = *state;
    uint64_t size = 0;
    const char *note = NULL;
    size_t len = 0;
    bool found = true;
    assert_int_equal(store_checkpoint_last(c->st, c->txn, &size, &note, &len, &found), KETEN_OK);
    assert_false(found);
    assert_int_equal(store_checkpoint_put(c->st, c->txn, 5, "five", 4), KETEN_OK);
    assert_int_equal(store_checkpoint_put(c->st, c->txn, 300, "three hundred", 13), KETEN_OK);
    assert_int_equal(store_checkpoint_put(c->st, c->txn, 40, "forty", 5), KETEN_OK);
    assert_int_equal(store_checkpoint_last(c->st, c->txn, &size, &note, &len, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(size, 300); /* by tree size, not by when it was written */
    assert_int_equal(len, 13);
    assert_int_equal(store_checkpoint_get(c->st, c->txn, 40, &note, &len), KETEN_OK);
    assert_memory_equal(note, "forty", 5);
    assert_int_equal(store_checkpoint_get(c->st, c->txn, 41, &note, &len), KETEN_ERR_NOT_FOUND);
    /* A cosigned note replaces the one of its size. */
    assert_int_equal(store_checkpoint_put(c->st, c->txn, 40, "forty+cosig", 11), KETEN_OK);
    assert_int_equal(store_checkpoint_get(c->st, c->txn, 40, &note, &len), KETEN_OK);
    assert_int_equal(len, 11);
}

/* The room check: a store with room takes a submit's worth; one marked
 * full (a commit failed for space) refuses until it is measured again
 * after the retry time. */
static void test_room(void **state)
{
    ctx *c = *state;
    store_abort(&c->txn);
    bool full = true;
    assert_int_equal(store_room(c->st, T0, &full), KETEN_OK);
    assert_false(full);
    assert_true(store_fits(c->st, 1u << 20));
    assert_false(store_fits(c->st, c->st->map_size));
    store_mark_full(c->st, T0);
    assert_true(atomic_load(&c->st->full));
    assert_int_equal(store_room(c->st, T0 + 1, &full), KETEN_OK);
    assert_true(full);
    assert_int_equal(store_room(c->st, T0 + 60000, &full), KETEN_OK);
    assert_false(full);
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
}

/* Fill the map with values of `value_len` bytes, one commit each, while
 * the room (the map less its reserve, less the use) is at least `room`. */
static void fill_map(ctx *c, uint64_t *key, size_t value_len, uint64_t room)
{
    static uint8_t value[256u << 10];
    assert_true(value_len <= sizeof value);
    uint64_t limit = c->st->map_size - c->st->reserve;
    while (limit - atomic_load(&c->st->used) >= room) {
        assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
        (*key)++;
        uint8_t kb[8];
        for (size_t i = 0; i < sizeof kb; i++) {
            kb[i] = (uint8_t)(*key >> (56 - 8 * i));
        }
        MDB_val k = { sizeof kb, kb };
        MDB_val v = { value_len, value };
        assert_int_equal(mdb_put(c->txn, c->st->envelopes, &k, &v, 0), 0);
        assert_int_equal(store_commit(c->st, &c->txn), KETEN_OK);
        assert_int_equal(store_room(c->st, T0, NULL), KETEN_OK);
        assert_true(atomic_load(&c->st->used) <= limit);
    }
}

/* A map filled a little at a time stops short of its limit: the use never
 * passes the reserve, yet no submit fits (each needs its envelope, at least
 * the smallest padded payload, and STORE_SUBMIT_OVERHEAD_BYTES). no_room
 * says so (the metrics show the store full); with room for the smallest
 * submit it does not. */
static void test_map_no_room(void **state)
{
    ctx *c = *state;
    store_abort(&c->txn);
    uint64_t smallest = STORE_SUBMIT_OVERHEAD_BYTES + keten_envelope_pad_bucket(0);
    uint64_t limit = c->st->map_size - c->st->reserve;
    uint64_t key = 0;
    assert_int_equal(store_room(c->st, T0, NULL), KETEN_OK);
    fill_map(c, &key, 256u << 10, 2u << 20);
    fill_map(c, &key, 1024, 64u << 10);
    /* Room for the smallest submit: it fits, and the store is not full. */
    fill_map(c, &key, 64, smallest + 4 * (uint64_t)c->st->page_size);
    assert_true(limit - atomic_load(&c->st->used) >= smallest);
    assert_false(atomic_load(&c->st->no_room));
    assert_true(store_fits(c->st, smallest));
    /* Less room than the smallest submit: every submit is refused, and
     * no_room says so although the use is within the limit. */
    fill_map(c, &key, 64, smallest);
    assert_true(atomic_load(&c->st->used) <= limit);
    assert_false(atomic_load(&c->st->full));
    assert_false(store_fits(c->st, smallest));
    assert_true(atomic_load(&c->st->no_room));
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
}

/* A full filesystem: ENOSPC and EDQUOT from a commit are "store full" and
 * give the disk reserve back; EIO is one only when the filesystem has
 * little space left, otherwise a real I/O error. Measured again with
 * space, the store leaves the state and takes its reserve back. */
static void test_disk_full(void **state)
{
    ctx *c = *state;
    store_abort(&c->txn);
    char reserve[PATH_MAX + 64];
    snprintf(reserve, sizeof reserve, "%s/store/%s", c->home, STORE_DISK_RESERVE_FILE);
    struct statvfs sv;
    assert_int_equal(statvfs(c->home, &sv), 0);
    uint64_t fs_free = (uint64_t)sv.f_bavail * sv.f_frsize;
    /* The test needs a filesystem with room for the reserve and a margin. */
    assert_true(fs_free >= STORE_DISK_RESERVE + 2 * STORE_DISK_MARGIN);
    bool full = true;
    assert_int_equal(store_room(c->st, T0, &full), KETEN_OK);
    assert_false(full);
    assert_int_equal(atomic_load(&c->st->reserve_held), STORE_DISK_RESERVE);
    struct stat st;
    assert_int_equal(stat(reserve, &st), 0);
    assert_int_equal((uint64_t)st.st_size, STORE_DISK_RESERVE);
    assert_string_equal(store_full_detail(c->st), "store full: enlarge --map-size");

    /* EIO: a full disk only when little is free. */
    keten_err e = store_env_err(c->st, EIO, "committing");
    if (fs_free >= STORE_DISK_IO_FREE) {
        assert_int_equal(e, KETEN_ERR_STORE);
        assert_non_null(strstr(keten_err_detail(), "Input/output error"));
        assert_false(atomic_load(&c->st->disk_full));
        assert_int_equal(atomic_load(&c->st->reserve_held), STORE_DISK_RESERVE);
    } else {
        assert_int_equal(e, KETEN_ERR_STORE_FULL);
        assert_int_equal(store_room(c->st, T0, &full), KETEN_OK);
    }

    /* ENOSPC and EDQUOT: full, the reserve given back at once. */
    int codes[] = { ENOSPC, EDQUOT };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_int_equal(store_env_err(c->st, codes[i], "committing"), KETEN_ERR_STORE_FULL);
        assert_non_null(strstr(keten_err_detail(), "the broker's filesystem is full"));
        assert_true(atomic_load(&c->st->disk_full));
        assert_true(atomic_load(&c->st->full));
        assert_int_equal(atomic_load(&c->st->reserve_held), 0);
        assert_int_equal(stat(reserve, &st), 0);
        assert_int_equal(st.st_size, 0);
        assert_false(store_fits(c->st, 1));
        assert_string_equal(store_full_detail(c->st),
            "store full: the broker's filesystem is full; free disk space");
        /* Measured again: this filesystem has room, the state is left. */
        assert_int_equal(store_room(c->st, T0, &full), KETEN_OK);
        assert_false(full);
        assert_false(atomic_load(&c->st->disk_full));
        assert_int_equal(atomic_load(&c->st->reserve_held), STORE_DISK_RESERVE);
        assert_true(store_fits(c->st, 1u << 20));
        assert_string_equal(store_full_detail(c->st), "store full: enlarge --map-size");
    }
    assert_int_equal(store_begin(c->st, true, &c->txn), KETEN_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_msg_id_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msg_id_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_keeps_msg_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_recent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_horizon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notices_until_confirmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_broker_per_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_no_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
