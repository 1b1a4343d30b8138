/* node_idem: idempotency keys of the send API (client/idem.h), on a node
 * without its main loop (fixture_node.h: real store, directory, link to a
 * broker's end bound here).
 *
 * The header's value: 1 to 64 of [A-Za-z0-9._:-] accepted, everything else
 * refused with a line naming the header. Callers: a token by its id, the
 * Unix socket by its uid, a person by name; no identity, none. The table
 * key separates caller and key. Records: round trip; not found for another
 * caller or key or once KETEN_IDEM_KEEP_MS old; damaged (every byte
 * flipped, cut short, moved under another key, content behind a valid
 * checksum that is not a record's) refused with KETEN_ERR_MALFORMED, never
 * taken as absent; the purge takes the old ones, keeps the fresh and the
 * damaged, across transactions. The send: the key is written in the send's
 * own transaction (a key that cannot be written stores no message either);
 * through the router, a repeat answers the first msg_id with "repeated"
 * and sends nothing (with ?wait too, when its time is up), another body is
 * 409, another caller is another key, a damaged record is 500 and sends
 * nothing, bad keys are 400 naming the header (on the reply route too,
 * which takes a valid key). Answers: the request hash holds the message
 * answered; a reply repeated with its key in one batch is a repeat, not a
 * second reply (node_idem_answer.sh drives the rest through a broker). */
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
#include "idem.h"
#include "link.h"
#include "nodestore.h"
#include "outbox.h"
#include "pb.h"
#include "store.h"
#include "util.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", "bravo:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"
#define SEND_BODY "{\"kind\":\"signal\",\"to\":[\"bravo\"],\"signal\":" SIGNAL "}"
#define SEND_BODY_2 "{\"kind\":\"query\",\"to\":[\"bravo\"],\"signal\":" SIGNAL "}"
#define LATER_MAX 4
#define NOW 1800000000000ull

static const uint8_t ID[KETEN_MSG_ID_BYTES]
    = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
    uint64_t ticket;
    uint64_t later_ticket[LATER_MAX];
    keten_api_response later[LATER_MAX];
    size_t n_later;
} ctx;

static void on_answer(void *c, uint64_t ticket, keten_api_response *resp)
{
    ctx *t = c;
    if (ticket == 0) {
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

/* ---- keys and callers ----------------------------------------------------- */

static void test_key_check(void **state)
{
    (void)state;
    char why[200];
    char k64[KETEN_IDEM_KEY_MAX + 2];
    memset(k64, 'a', KETEN_IDEM_KEY_MAX);
    k64[KETEN_IDEM_KEY_MAX] = '\0';
    assert_true(keten_idem_key_check("a", why, sizeof why));
    assert_true(keten_idem_key_check(k64, why, sizeof why));
    assert_true(keten_idem_key_check("AZaz09._:-", why, sizeof why));
    assert_true(keten_idem_key_check("550e8400-e29b-41d4-a716-446655440000", why, sizeof why));
    /* Twins: 65 characters, none, and each kind of character not allowed. */
    k64[KETEN_IDEM_KEY_MAX] = 'a';
    k64[KETEN_IDEM_KEY_MAX + 1] = '\0';
    assert_false(keten_idem_key_check(k64, why, sizeof why));
    assert_non_null(strstr(why, "Idempotency-Key"));
    assert_non_null(strstr(why, "it has 65"));
    assert_false(keten_idem_key_check("", why, sizeof why));
    assert_non_null(strstr(why, "1 to 64"));
    assert_false(keten_idem_key_check(NULL, why, sizeof why));
    static const char *const bad[]
        = { "a b", "a/b", "a,b", "a;b", "a\"b", "a\tb", "a\xc3\xa9", "a\x7f", "a{b}", "a=b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(keten_idem_key_check(bad[i], why, sizeof why));
        assert_non_null(strstr(why, "Idempotency-Key"));
        assert_non_null(strstr(why, "position 2"));
    }
    assert_false(keten_idem_key_check("a/b", why, sizeof why));
    assert_non_null(strstr(why, "'/'"));
    assert_false(keten_idem_key_check("caf\xc3\xa9", why, sizeof why));
    assert_non_null(strstr(why, "0xc3 at position 4"));
}

static void test_caller(void **state)
{
    (void)state;
    char c[KETEN_IDEM_CALLER_MAX + 1];
    assert_int_equal(
        keten_idem_caller("0123456789abcdef", "token:app", false, "127.0.0.1", c), KETEN_OK);
    assert_string_equal(c, "token:0123456789abcdef");
    /* A web session opened with a token: the token's id, over its name. */
    assert_int_equal(
        keten_idem_caller("0123456789abcdef", "token:other", false, "::1", c), KETEN_OK);
    assert_string_equal(c, "token:0123456789abcdef");
    assert_int_equal(keten_idem_caller("", "local", true, "uid=1000", c), KETEN_OK);
    assert_string_equal(c, "local:uid=1000");
    assert_int_equal(keten_idem_caller("", "person:jan", false, "127.0.0.1", c), KETEN_OK);
    assert_string_equal(c, "person:jan");
    /* Twins: nobody, or a token's name without its id, has no keys. */
    assert_int_equal(keten_idem_caller("", "anonymous", false, "127.0.0.1", c), KETEN_ERR_INVALID);
    assert_int_equal(
        keten_idem_caller(NULL, "token:app", false, "127.0.0.1", c), KETEN_ERR_INVALID);
    assert_int_equal(keten_idem_caller(NULL, "person:", false, "127.0.0.1", c), KETEN_ERR_INVALID);
    keten_err_clear();
}

static void test_table_key(void **state)
{
    (void)state;
    uint8_t a[KETEN_HASH_BYTES], b[KETEN_HASH_BYTES];
    keten_idem_table_key("token:0123456789abcdef", "k1", a);
    keten_idem_table_key("token:0123456789abcdef", "k1", b);
    assert_memory_equal(a, b, sizeof a);
    keten_idem_table_key("token:0123456789abcdee", "k1", b);
    assert_memory_not_equal(a, b, sizeof a);
    keten_idem_table_key("token:0123456789abcdef", "k2", b);
    assert_memory_not_equal(a, b, sizeof a);
    /* The caller ends where the key begins. */
    keten_idem_table_key("person:ab", "c", a);
    keten_idem_table_key("person:a", "bc", b);
    assert_memory_not_equal(a, b, sizeof a);
}

/* The request hash: a send's body alone (as keys stored before answers
 * took keys); an answer's body with the msg_id it answers, behind a label,
 * so that the same body answering another message, or a send of those
 * bytes, is another request (known answers from Python's hashlib). */
static void test_answer_hash(void **state)
{
    (void)state;
    static const char body[] = "{\"kind\":\"feedback\",\"signal\":{}}";
    const size_t n = strlen(body);
    uint8_t h[KETEN_HASH_BYTES], want[KETEN_HASH_BYTES], other[KETEN_HASH_BYTES];
    keten_idem_request_hash(NULL, (const uint8_t *)body, n, h);
    assert_int_equal(keten_unhex("4b0a314f2027997d53dca110c01cb7fc46e41340f5e119d028c16be266c9bca0",
                         want, sizeof want),
        KETEN_OK);
    assert_memory_equal(h, want, sizeof h);
    keten_idem_request_hash(ID, (const uint8_t *)body, n, h);
    assert_int_equal(keten_unhex("363f67bc6ccb452c76deff57aeecaaa286c05833ae28fe6c37d0a27229454c59",
                         want, sizeof want),
        KETEN_OK);
    assert_memory_equal(h, want, sizeof h);
    /* Twins: another message answered, another body, the send's hash. */
    uint8_t id2[KETEN_MSG_ID_BYTES];
    memcpy(id2, ID, sizeof id2);
    id2[15] ^= 1;
    keten_idem_request_hash(id2, (const uint8_t *)body, n, other);
    assert_memory_not_equal(h, other, sizeof h);
    keten_idem_request_hash(ID, (const uint8_t *)body, n - 1, other);
    assert_memory_not_equal(h, other, sizeof h);
    keten_idem_request_hash(NULL, (const uint8_t *)body, n, other);
    assert_memory_not_equal(h, other, sizeof h);
    /* No body: the hash of nothing, not a crash. */
    keten_idem_request_hash(NULL, NULL, 0, h);
    assert_int_equal(keten_unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                         want, sizeof want),
        KETEN_OK);
    assert_memory_equal(h, want, sizeof h);
}

/* ---- records ------------------------------------------------------------ */

static void put_entry(keten_store *st, const char *caller, const char *key, uint64_t at,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint8_t hash_byte)
{
    keten_idem_entry e = { .caller = caller, .key = key, .created_at = at };
    memset(e.request_hash, hash_byte, sizeof e.request_hash);
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(keten_idem_put(st, txn, &e, msg_id), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
}

static keten_err find(keten_store *st, const char *caller, const char *key, uint64_t now,
    bool *found, uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint8_t hash[static KETEN_HASH_BYTES])
{
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(st, false, &txn), KETEN_OK);
    keten_err e = keten_idem_find(st, txn, caller, key, now, found, msg_id, hash);
    keten_store_abort(&txn);
    return e;
}

/* The stored value of (caller, key), copied (free()). */
static uint8_t *raw_get(keten_store *st, const char *caller, const char *key, size_t *len)
{
    uint8_t k[KETEN_HASH_BYTES];
    keten_idem_table_key(caller, key, k);
    MDB_txn *txn = NULL;
    MDB_val v;
    assert_int_equal(keten_store_begin(st, false, &txn), KETEN_OK);
    assert_int_equal(keten_store_get(st, txn, KETEN_DB_IDEMPOTENCY, k, sizeof k, &v), KETEN_OK);
    uint8_t *copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    *len = v.mv_size;
    keten_store_abort(&txn);
    return copy;
}

static void raw_put(
    keten_store *st, const char *caller, const char *key, const uint8_t *val, size_t len)
{
    uint8_t k[KETEN_HASH_BYTES];
    keten_idem_table_key(caller, key, k);
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_store_put(st, txn, KETEN_DB_IDEMPOTENCY, k, sizeof k, val, len), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
}

/* find() of (caller, key) is refused as damaged, naming the table. */
static void expect_damaged(keten_store *st, const char *caller, const char *key)
{
    bool found = true;
    uint8_t id[KETEN_MSG_ID_BYTES], h[KETEN_HASH_BYTES];
    assert_int_equal(find(st, caller, key, NOW, &found, id, h), KETEN_ERR_MALFORMED);
    assert_false(found);
    assert_non_null(strstr(keten_err_detail(), "idempotency record"));
    assert_non_null(strstr(keten_err_detail(), "damaged"));
    keten_err_clear();
}

static void test_records(void **state)
{
    ctx *t = *state;
    keten_store *st = t->node->store;
    const char *caller = "token:0123456789abcdef";
    bool found = false;
    uint8_t id[KETEN_MSG_ID_BYTES], h[KETEN_HASH_BYTES], want_h[KETEN_HASH_BYTES];
    memset(want_h, 0xab, sizeof want_h);
    put_entry(st, caller, "order-1", NOW, ID, 0xab);
    assert_int_equal(find(st, caller, "order-1", NOW + 1, &found, id, h), KETEN_OK);
    assert_true(found);
    assert_memory_equal(id, ID, sizeof id);
    assert_memory_equal(h, want_h, sizeof h);
    /* Kept until KETEN_IDEM_KEEP_MS have passed, not after. */
    assert_int_equal(
        find(st, caller, "order-1", NOW + KETEN_IDEM_KEEP_MS - 1, &found, id, h), KETEN_OK);
    assert_true(found);
    assert_int_equal(
        find(st, caller, "order-1", NOW + KETEN_IDEM_KEEP_MS, &found, id, h), KETEN_OK);
    assert_false(found);
    /* Another caller, another key: not found. */
    assert_int_equal(find(st, "token:0123456789abcdee", "order-1", NOW, &found, id, h), KETEN_OK);
    assert_false(found);
    assert_int_equal(find(st, caller, "order-2", NOW, &found, id, h), KETEN_OK);
    assert_false(found);

    /* Writing what could not be read back is refused. */
    MDB_txn *txn = NULL;
    keten_idem_entry bad = { .caller = caller, .key = "a b", .created_at = NOW };
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(keten_idem_put(st, txn, &bad, ID), KETEN_ERR_INVALID);
    bad.key = "ok";
    bad.created_at = 0;
    assert_int_equal(keten_idem_put(st, txn, &bad, ID), KETEN_ERR_INVALID);
    bad.created_at = NOW;
    bad.caller = "";
    assert_int_equal(keten_idem_put(st, txn, &bad, ID), KETEN_ERR_INVALID);
    keten_store_abort(&txn);
    keten_err_clear();

    /* Damaged: every byte flipped, cut short anywhere. */
    size_t len = 0;
    uint8_t *orig = raw_get(st, caller, "order-1", &len);
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, orig, len);
        copy[i] ^= 0x01;
        raw_put(st, caller, "order-1", copy, len);
        expect_damaged(st, caller, "order-1");
    }
    for (size_t n = 0; n < len; n++) {
        raw_put(st, caller, "order-1", orig, n);
        expect_damaged(st, caller, "order-1");
    }
    /* Moved under another caller's key. */
    raw_put(st, caller, "order-1", orig, len);
    raw_put(st, "person:jan", "order-1", orig, len);
    expect_damaged(st, "person:jan", "order-1");
    /* Twin: put back as it was, it is read again. */
    assert_int_equal(find(st, caller, "order-1", NOW, &found, id, h), KETEN_OK);
    assert_true(found);
    free(copy);
    free(orig);

    /* Behind a valid checksum, content that is not a record's. */
    uint8_t k[KETEN_HASH_BYTES];
    Keten__IdempotencyRecord r = KETEN__IDEMPOTENCY_RECORD__INIT;
    r.caller = (char *)"person:jan";
    r.key = (char *)"order-9";
    r.msg_id.data = (uint8_t *)(uintptr_t)ID;
    r.msg_id.len = 15; /* not 16 */
    r.request_hash.data = want_h;
    r.request_hash.len = KETEN_HASH_BYTES;
    r.created_at = NOW;
    keten_idem_table_key("person:jan", "order-9", k);
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_idem_put(st, txn, k, &r), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    expect_damaged(st, "person:jan", "order-9");
    r.msg_id.len = KETEN_MSG_ID_BYTES;
    r.request_hash.len = 31;
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_idem_put(st, txn, k, &r), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    expect_damaged(st, "person:jan", "order-9");
    r.request_hash.len = KETEN_HASH_BYTES;
    r.created_at = 0;
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_idem_put(st, txn, k, &r), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    expect_damaged(st, "person:jan", "order-9");
    r.created_at = NOW;
    r.key = (char *)"order-8"; /* names another key than its table key's */
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_idem_put(st, txn, k, &r), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    expect_damaged(st, "person:jan", "order-9");
    r.key = (char *)"order 9"; /* not a key */
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_idem_put(st, txn, k, &r), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    expect_damaged(st, "person:jan", "order-9");
    /* Twin: the same record whole is read. */
    r.key = (char *)"order-9";
    assert_int_equal(keten_store_begin(st, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_idem_put(st, txn, k, &r), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    assert_int_equal(find(st, "person:jan", "order-9", NOW, &found, id, h), KETEN_OK);
    assert_true(found);
}

/* What one key costs in the store (security.md counts it): a token's key
 * of 64 characters, and the largest caller there is (a person's name of 128
 * four-byte characters) with one. */
static void test_record_size(void **state)
{
    ctx *t = *state;
    keten_store *st = t->node->store;
    char key[KETEN_IDEM_KEY_MAX + 1];
    memset(key, 'k', KETEN_IDEM_KEY_MAX);
    key[KETEN_IDEM_KEY_MAX] = '\0';
    put_entry(st, "token:0123456789abcdef", key, NOW, ID, 1);
    size_t len = 0;
    free(raw_get(st, "token:0123456789abcdef", key, &len));
    print_message("a token's key of 64 characters: %zu bytes\n", len);
    assert_true(len <= 200);
    char person[7 + 4 * 128 + 1] = "person:";
    for (size_t i = 0; i < 128; i++) {
        memcpy(person + 7 + 4 * i, "\xf0\x9f\x98\x80", 4); /* U+1F600 */
    }
    person[sizeof person - 1] = '\0';
    put_entry(st, person, key, NOW, ID, 1);
    free(raw_get(st, person, key, &len));
    print_message("the largest person's key of 64 characters: %zu bytes\n", len);
    assert_true(len <= KETEN_IDEM_RECORD_MAX);
    bool found = false;
    uint8_t id[KETEN_MSG_ID_BYTES], h[KETEN_HASH_BYTES];
    assert_int_equal(find(st, person, key, NOW, &found, id, h), KETEN_OK);
    assert_true(found);
}

static size_t table_count(keten_store *st)
{
    MDB_txn *txn = NULL;
    size_t n = 0;
    assert_int_equal(keten_store_begin(st, false, &txn), KETEN_OK);
    assert_int_equal(keten_store_count(st, txn, KETEN_DB_IDEMPOTENCY, &n), KETEN_OK);
    keten_store_abort(&txn);
    return n;
}

static void test_purge(void **state)
{
    ctx *t = *state;
    keten_store *st = t->node->store;
    char key[32];
    /* 7 old, 5 fresh, 1 damaged. */
    for (int i = 0; i < 7; i++) {
        snprintf(key, sizeof key, "old-%d", i);
        put_entry(st, "local:uid=0", key, NOW - KETEN_IDEM_KEEP_MS - 1, ID, 1);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "fresh-%d", i);
        put_entry(st, "local:uid=0", key, NOW - KETEN_IDEM_KEEP_MS + 1, ID, 1);
    }
    raw_put(st, "local:uid=0", "damaged", (const uint8_t *)"junk", 4);
    assert_int_equal(table_count(st), 13);
    size_t removed = 0, damaged = 0;
    assert_int_equal(keten_idem_purge(st, NOW, KETEN_IDEM_KEEP_MS, 0, NULL, &removed, &damaged),
        KETEN_ERR_INVALID);
    keten_err_clear();
    /* Two records per transaction: 7 transactions cover all 13. */
    assert_int_equal(
        keten_idem_purge(st, NOW, KETEN_IDEM_KEEP_MS, 2, NULL, &removed, &damaged), KETEN_OK);
    assert_int_equal(removed, 7);
    assert_int_equal(damaged, 1);
    assert_int_equal(table_count(st), 6);
    bool found = false;
    uint8_t id[KETEN_MSG_ID_BYTES], h[KETEN_HASH_BYTES];
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "fresh-%d", i);
        assert_int_equal(find(st, "local:uid=0", key, NOW, &found, id, h), KETEN_OK);
        assert_true(found);
    }
    expect_damaged(st, "local:uid=0", "damaged");
    /* Again: nothing more to take. */
    assert_int_equal(
        keten_idem_purge(st, NOW, KETEN_IDEM_KEEP_MS, 2, NULL, &removed, &damaged), KETEN_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(table_count(st), 6);
}

/* A table holding more fresh records than one purge looks at (one record
 * per transaction: KETEN_IDEM_PURGE_CHUNKS_MAX looked at), old ones among
 * them in the hashed keys' order: each purge goes on where the one before
 * stopped, so two purges remove every old record. (A purge that started
 * at the table's start each time never reached the old records behind the
 * first fresh ones: the table grew for ever once a node kept more fresh
 * records than one purge looks at.) Twin: the fresh ones all stay. */
static void test_purge_goes_on(void **state)
{
    ctx *t = *state;
    keten_store *st = t->node->store;
    char key[32];
    const int fresh = (int)KETEN_IDEM_PURGE_CHUNKS_MAX + 36, old = 10;
    for (int i = 0; i < fresh; i++) {
        snprintf(key, sizeof key, "fresh-%d", i);
        put_entry(st, "local:uid=0", key, NOW - KETEN_IDEM_KEEP_MS + 1, ID, 1);
    }
    for (int i = 0; i < old; i++) {
        snprintf(key, sizeof key, "old-%d", i);
        put_entry(st, "local:uid=0", key, NOW - KETEN_IDEM_KEEP_MS - 1, ID, 1);
    }
    assert_int_equal(table_count(st), (size_t)(fresh + old));
    keten_idem_purge_pos pos = { .started = false };
    size_t removed = 0, damaged = 0, total = 0;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(
            keten_idem_purge(st, NOW, KETEN_IDEM_KEEP_MS, 1, &pos, &removed, &damaged), KETEN_OK);
        assert_int_equal(damaged, 0);
        total += removed;
    }
    assert_int_equal(total, (size_t)old);
    assert_int_equal(table_count(st), (size_t)fresh);
    /* The end was reached: the next purge starts at the start again. */
    assert_false(pos.started);
    bool found = false;
    uint8_t id[KETEN_MSG_ID_BYTES], h[KETEN_HASH_BYTES];
    for (int i = 0; i < fresh; i++) {
        snprintf(key, sizeof key, "fresh-%d", i);
        assert_int_equal(find(st, "local:uid=0", key, NOW, &found, id, h), KETEN_OK);
        assert_true(found);
    }
}

/* ---- the send --------------------------------------------------------------- */

static size_t count_of(keten_store *st, keten_store_db db)
{
    MDB_txn *txn = NULL;
    size_t n = 0;
    assert_int_equal(keten_store_begin(st, false, &txn), KETEN_OK);
    assert_int_equal(keten_store_count(st, txn, db, &n), KETEN_OK);
    keten_store_abort(&txn);
    return n;
}

static void test_outbox_same_transaction(void **state)
{
    ctx *t = *state;
    keten_store *st = t->node->store;
    keten_idem_entry e = { .caller = "local:uid=0", .key = "not a key", .created_at = NOW };
    keten_outbox_send_req sr = {
        .to = "bravo",
        .kind = KETEN__KIND__KIND_SIGNAL,
        .json = SIGNAL,
        .json_len = strlen(SIGNAL),
        .idem = &e,
    };
    uint8_t id[KETEN_MSG_ID_BYTES];
    /* The key cannot be written: neither is the message. */
    assert_int_equal(keten_outbox_send(t->node, &sr, id), KETEN_ERR_INVALID);
    keten_err_clear();
    assert_int_equal(count_of(st, KETEN_DB_OUTBOX), 0);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 0);
    assert_int_equal(count_of(st, KETEN_DB_IDEMPOTENCY), 0);
    /* Twin: a valid key, and both are stored. */
    e.key = "order-1";
    assert_int_equal(keten_outbox_send(t->node, &sr, id), KETEN_OK);
    assert_int_equal(count_of(st, KETEN_DB_OUTBOX), 1);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 1);
    assert_int_equal(count_of(st, KETEN_DB_IDEMPOTENCY), 1);
    bool found = false;
    uint8_t got[KETEN_MSG_ID_BYTES], h[KETEN_HASH_BYTES];
    assert_int_equal(find(st, "local:uid=0", "order-1", NOW, &found, got, h), KETEN_OK);
    assert_true(found);
    assert_memory_equal(got, id, sizeof id);
}

typedef struct req_opts {
    const char *path; /* default /v1/messages */
    const char *query; /* "wait=1" or NULL */
    const char *body; /* default SEND_BODY */
    const char *key; /* the header, NULL: none */
    bool twice;
    const char *caller; /* default "token:0123456789abcdef" */
} req_opts;

static keten_api_result handle(ctx *t, const req_opts *o, keten_api_response *resp)
{
    keten_api_param q = { "wait", "" };
    if (o->query != NULL) {
        assert_int_equal(strncmp(o->query, "wait=", 5), 0);
        q.value = o->query + 5;
    }
    const char *body = o->body != NULL ? o->body : SEND_BODY;
    keten_api_request req = {
        .method = "POST",
        .path = o->path != NULL ? o->path : "/v1/messages",
        .query = &q,
        .n_query = o->query != NULL ? 1 : 0,
        .content_type = "application/json",
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .actor = "token:app",
        .scopes = KETEN_SCOPE_ALL,
        .ticket = ++t->ticket,
        .idempotency_key = o->key,
        .idempotency_key_twice = o->twice,
        .caller = o->caller != NULL ? o->caller : "token:0123456789abcdef",
    };
    return keten_api_handle(t->node, &req, resp);
}

/* A request answered at once with status: its JSON. */
static json_t *call(ctx *t, const req_opts *o, unsigned status)
{
    keten_api_response resp;
    assert_int_equal(handle(t, o, &resp), KETEN_API_ANSWERED);
    if (resp.status != status) {
        fail_msg("answered %u %s, not %u", resp.status, resp.body, status);
    }
    json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_non_null(j);
    keten_api_response_clear(&resp);
    return j;
}

static const char *str(json_t *j, const char *k)
{
    const char *s = json_string_value(json_object_get(j, k));
    assert_non_null(s);
    return s;
}

static void expect_header_problem(ctx *t, const req_opts *o, const char *text)
{
    json_t *j = call(t, o, 400);
    assert_string_equal(str(j, "type"), "urn:keten:problem:invalid-request");
    assert_int_equal(json_integer_value(json_object_get(j, "exit")), 2);
    json_t *e = json_array_get(json_object_get(j, "errors"), 0);
    assert_string_equal(str(e, "field"), "Idempotency-Key");
    assert_non_null(strstr(str(j, "detail"), text));
    json_decref(j);
}

static void test_api(void **state)
{
    ctx *t = *state;
    keten_store *st = t->node->store;
    json_t *a = call(t, &(req_opts) { .key = "order-1" }, 202);
    assert_string_equal(str(a, "state"), "pending");
    assert_null(json_object_get(a, "repeated"));
    char first[KETEN_MSG_ID_HEX_BYTES];
    snprintf(first, sizeof first, "%s", str(a, "msg_id"));
    json_decref(a);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 1);

    /* The repeat: the first msg_id, repeated, nothing sent. */
    json_t *r = call(t, &(req_opts) { .key = "order-1" }, 202);
    assert_string_equal(str(r, "msg_id"), first);
    assert_string_equal(str(r, "state"), "pending");
    assert_true(json_is_true(json_object_get(r, "repeated")));
    json_decref(r);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 1);
    /* With ?wait: answered when the time is up, repeated too. */
    keten_api_response resp;
    assert_int_equal(
        handle(t, &(req_opts) { .key = "order-1", .query = "wait=1" }, &resp), KETEN_API_LATER);
    uint64_t ticket = t->ticket;
    struct timespec pause = { 0, 5 * 1000 * 1000 }; /* time under test: the 1 ms passes */
    nanosleep(&pause, NULL);
    keten_api_tick(t->node);
    assert_int_equal(t->n_later, 1);
    assert_int_equal(t->later_ticket[0], ticket);
    assert_int_equal(t->later[0].status, 202);
    r = json_loadb(t->later[0].body, t->later[0].body_len, 0, NULL);
    assert_non_null(r);
    keten_api_response_clear(&t->later[0]);
    t->n_later = 0;
    assert_string_equal(str(r, "msg_id"), first);
    assert_true(json_is_true(json_object_get(r, "repeated")));
    json_decref(r);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 1);

    /* Another body: 409 naming the first message. */
    r = call(t, &(req_opts) { .key = "order-1", .body = SEND_BODY_2 }, 409);
    assert_string_equal(str(r, "type"), "urn:keten:problem:idempotency-key-reused");
    assert_string_equal(str(r, "msg_id"), first);
    assert_int_equal(json_integer_value(json_object_get(r, "exit")), 2);
    json_decref(r);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 1);

    /* Another caller: its own message. */
    r = call(t, &(req_opts) { .key = "order-1", .caller = "person:jan" }, 202);
    assert_string_not_equal(str(r, "msg_id"), first);
    assert_null(json_object_get(r, "repeated"));
    json_decref(r);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 2);
    f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);

    /* A refused send keeps no key: the corrected one then sends. */
    const char *unknown = "{\"kind\":\"signal\",\"to\":[\"nobody\"],\"signal\":" SIGNAL "}";
    keten_api_response_clear(&resp);
    assert_int_equal(
        handle(t, &(req_opts) { .key = "order-2", .body = unknown }, &resp), KETEN_API_ANSWERED);
    assert_true(resp.status >= 400);
    keten_api_response_clear(&resp);
    assert_int_equal(count_of(st, KETEN_DB_IDEMPOTENCY), 2);
    r = call(t, &(req_opts) { .key = "order-2" }, 202);
    assert_null(json_object_get(r, "repeated"));
    json_decref(r);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 3);

    /* A damaged record: 500, nothing sent. */
    raw_put(st, "token:0123456789abcdef", "order-1", (const uint8_t *)"junk", 4);
    r = call(t, &(req_opts) { .key = "order-1" }, 500);
    assert_string_equal(str(r, "type"), "urn:keten:problem:store-damaged");
    assert_non_null(strstr(str(r, "detail"), "idempotency record"));
    json_decref(r);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 3);

    /* Keys that are not keys; the reply route; a caller without keys. */
    expect_header_problem(t, &(req_opts) { .key = "" }, "1 to 64");
    expect_header_problem(t, &(req_opts) { .key = "a b" }, "byte 0x20 at position 2");
    expect_header_problem(t, &(req_opts) { .key = "a", .twice = true }, "more than once");
    /* The reply route checks the header as the send route does ... */
    expect_header_problem(t,
        &(req_opts) { .key = "order 3",
            .path = "/v1/inbox/00112233445566778899aabbccddeeff/reply",
            .body = "{\"signal\":" SIGNAL "}" },
        "byte 0x20 at position 6");
    expect_header_problem(t,
        &(req_opts) { .key = "order-3",
            .twice = true,
            .path = "/v1/inbox/00112233445566778899aabbccddeeff/reply",
            .body = "{\"signal\":" SIGNAL "}" },
        "more than once");
    /* ... and takes a valid key: here no such message (404), no key kept. */
    json_decref(call(t,
        &(req_opts) { .key = "order-3",
            .path = "/v1/inbox/00112233445566778899aabbccddeeff/reply",
            .body = "{\"signal\":" SIGNAL "}" },
        404));
    assert_int_equal(count_of(st, KETEN_DB_IDEMPOTENCY), 3);
    keten_api_request req = {
        .method = "POST",
        .path = "/v1/messages",
        .content_type = "application/json",
        .body = (const uint8_t *)SEND_BODY,
        .body_len = strlen(SEND_BODY),
        .actor = "anonymous",
        .scopes = KETEN_SCOPE_ALL,
        .ticket = ++t->ticket,
        .idempotency_key = "order-4",
    };
    assert_int_equal(keten_api_handle(t->node, &req, &resp), KETEN_API_ANSWERED);
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(resp.body, "no identity"));
    keten_api_response_clear(&resp);
    assert_int_equal(count_of(st, KETEN_DB_SENT), 3);
}

/* Two identical sends with one key in one group-commit batch (two
 * connections whose requests the loop handles in the same round), and a
 * third with another body: the second finds the first's record written in
 * the batch, so one message is stored and submitted once; both answers,
 * given when the batch is durable, name it, the second "repeated"; the
 * third is 409. Twin: another key in the same batch is a message of its
 * own. */
static void test_same_batch(void **state)
{
    ctx *t = *state;
    keten_store *st = t->node->store;
    assert_int_equal(keten_store_batch_begin(st), KETEN_OK);
    keten_link_hold(t->node->link);
    keten_api_hold(t->node->api);
    keten_api_response resp;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(handle(t, &(req_opts) { .key = "batch-1" }, &resp), KETEN_API_LATER);
    assert_int_equal(handle(t, &(req_opts) { .key = "batch-1" }, &resp), KETEN_API_LATER);
    assert_int_equal(
        handle(t, &(req_opts) { .key = "batch-1", .body = SEND_BODY_2 }, &resp), KETEN_API_LATER);
    assert_int_equal(handle(t, &(req_opts) { .key = "batch-2" }, &resp), KETEN_API_LATER);
    assert_int_equal(t->n_later, 0); /* nothing answered before the commit */
    assert_int_equal(keten_store_batch_end(st), KETEN_OK);
    keten_link_release(t->node->link, true);
    keten_api_release(t->node->api, true);
    assert_int_equal(t->n_later, 4);
    json_t *a[4];
    for (size_t i = 0; i < 4; i++) {
        a[i] = json_loadb(t->later[i].body, t->later[i].body_len, 0, NULL);
        assert_non_null(a[i]);
    }
    assert_int_equal(t->later[0].status, 202);
    assert_int_equal(t->later[1].status, 202);
    assert_string_equal(str(a[1], "msg_id"), str(a[0], "msg_id"));
    assert_null(json_object_get(a[0], "repeated"));
    assert_true(json_is_true(json_object_get(a[1], "repeated")));
    assert_int_equal(t->later[2].status, 409);
    assert_string_equal(str(a[2], "msg_id"), str(a[0], "msg_id"));
    assert_int_equal(t->later[3].status, 202);
    assert_string_not_equal(str(a[3], "msg_id"), str(a[0], "msg_id"));
    for (size_t i = 0; i < 4; i++) {
        json_decref(a[i]);
        keten_api_response_clear(&t->later[i]);
    }
    t->n_later = 0;
    assert_int_equal(count_of(st, KETEN_DB_SENT), 2);
    assert_int_equal(count_of(st, KETEN_DB_IDEMPOTENCY), 2);
    /* submitted once each: two submits, then nothing more */
    for (int i = 0; i < 2; i++) {
        Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
        assert_non_null(f);
        keten_pb_free((ProtobufCMessage **)(void *)&f);
    }
    Keten__Frame *none = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, 200);
    assert_null(none);
}

/* Answers in one group-commit batch (two connections in one round of the
 * loop): a reply to a query with a key, the same request again, then a
 * reply with another key and one with none, and a feedback to the query.
 * The repeat finds the record the first wrote in the batch and is answered
 * with the first reply, "repeated", not refused as a second reply; the
 * other replies are 409 (already replied), the feedback 400 (a query gets
 * none); one message stored and submitted once, one key kept. */
static void test_same_batch_answers(void **state)
{
    (void)state;
    ctx c = { 0 };
    ctx *t = &c;
    fnode_bed *bed = fnode_bed_new(fixture_new(1, 1, specs), "alpha", "hub");
    t->fx = bed->fx;
    t->fn = bed->fn;
    t->node = bed->node;
    keten_api_set_answer(t->node->api, on_answer, t);
    keten_store *st = t->node->store;

    /* bravo's query, delivered to alpha with the proof of its record. */
    uint8_t qid[KETEN_MSG_ID_BYTES];
    size_t len = 0;
    fnode_seal_opts o = { .kind = KETEN__KIND__KIND_QUERY, .life_ms = 3600 * 1000 };
    uint8_t *env
        = fnode_seal(fixture_node(t->fx, "bravo"), t->node->dir, "alpha", SIGNAL, &o, qid, &len);
    uint64_t leaf = flog_submitted(bed->log, env, len);
    fnode_bed_deliver_leaf(bed, env, len, leaf, fnode_bed_checkpoint(bed));
    free(env);
    assert_int_equal(count_of(st, KETEN_DB_INBOX), 1);
    char hex[KETEN_MSG_ID_HEX_BYTES], path[64];
    keten_hex(qid, KETEN_MSG_ID_BYTES, hex);
    snprintf(path, sizeof path, "/v1/inbox/%s/reply", hex);
    static const char reply[] = "{\"kind\":\"reply\",\"signal\":" SIGNAL "}";
    static const char feedback[] = "{\"kind\":\"feedback\",\"signal\":" SIGNAL "}";

    assert_int_equal(keten_store_batch_begin(st), KETEN_OK);
    keten_link_hold(t->node->link);
    keten_api_hold(t->node->api);
    keten_api_response resp;
    memset(&resp, 0, sizeof resp);
    const req_opts reqs[] = {
        { .path = path, .body = reply, .key = "answer-1" },
        { .path = path, .body = reply, .key = "answer-1" },
        { .path = path, .body = reply, .key = "answer-2" },
        { .path = path, .body = reply },
        { .path = path, .body = feedback, .key = "answer-3" },
    };
    const size_t n = sizeof reqs / sizeof reqs[0];
    for (size_t i = 0; i < n - 1; i++) {
        assert_int_equal(handle(t, &reqs[i], &resp), KETEN_API_LATER);
    }
    assert_int_equal(t->n_later, 0); /* nothing answered before the commit */
    assert_int_equal(keten_store_batch_end(st), KETEN_OK);
    keten_link_release(t->node->link, true);
    keten_api_release(t->node->api, true);
    assert_int_equal(t->n_later, n - 1);
    json_t *a[LATER_MAX];
    for (size_t i = 0; i < n - 1; i++) {
        a[i] = json_loadb(t->later[i].body, t->later[i].body_len, 0, NULL);
        assert_non_null(a[i]);
    }
    assert_int_equal(t->later[0].status, 202);
    assert_null(json_object_get(a[0], "repeated"));
    assert_int_equal(t->later[1].status, 202);
    assert_string_equal(str(a[1], "msg_id"), str(a[0], "msg_id"));
    assert_true(json_is_true(json_object_get(a[1], "repeated")));
    for (size_t i = 2; i < 4; i++) {
        assert_int_equal(t->later[i].status, 409);
        assert_string_equal(str(a[i], "type"), "urn:keten:problem:conflict");
        assert_non_null(strstr(str(a[i], "detail"), str(a[0], "msg_id")));
    }
    for (size_t i = 0; i < n - 1; i++) {
        json_decref(a[i]);
        keten_api_response_clear(&t->later[i]);
    }
    t->n_later = 0;
    /* Outside a batch: feedback to a query is refused, and keeps no key. */
    json_decref(call(t, &reqs[n - 1], 400));
    assert_int_equal(count_of(st, KETEN_DB_SENT), 1);
    assert_int_equal(count_of(st, KETEN_DB_IDEMPOTENCY), 1);
    /* submitted once: one submit, then nothing more */
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, FNODE_RECV_MS);
    assert_non_null(f);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    Keten__Frame *none = fnode_recv_body(t->fn, KETEN__FRAME__BODY_SUBMIT, 200);
    assert_null(none);
    fnode_bed_destroy(&bed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_check),
        cmocka_unit_test(test_caller),
        cmocka_unit_test(test_table_key),
        cmocka_unit_test(test_answer_hash),
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_goes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_same_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_batch, setup, teardown),
        cmocka_unit_test(test_same_batch_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
