/* nodestore: the node store's protobuf records - each round trips, and a
 * damaged one (truncated anywhere, any flipped byte, moved to another key,
 * an unknown field, a non-canonical encoding, too large, inconsistent) is
 * refused with KETEN_ERR_MALFORMED naming its table and key, never read as
 * defaults. Records with a valid checksum but bad content test the checks
 * behind the checksum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "keten.h"
#include "nodestore.h"
#include "pb.h"
#include "store.h"
#include "util.h"

static const uint8_t ID[KETEN_MSG_ID_BYTES]
    = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static const char ID_HEX[] = "0102030405060708090a0b0c0d0e0f10";

typedef struct ctx {
    char dir[64];
    keten_store *store;
    uint8_t *env;
    size_t env_len;
} ctx;

static uint8_t *pack_envelope(size_t *len)
{
    char r1[] = "politie-mn";
    char r2[] = "belastingdienst";
    char *recips[] = { r1, r2 };
    Keten__Header h = KETEN__HEADER__INIT;
    h.network = (char *)"testnet";
    h.msg_id.data = (uint8_t *)(uintptr_t)ID;
    h.msg_id.len = sizeof ID;
    h.sender = (char *)"gemeente-diemen";
    h.n_recipients = 2;
    h.recipients = recips;
    h.created_at = 1700000000000;
    h.expires_at = 1700003600000;
    h.kind = KETEN__KIND__KIND_QUERY;
    h.category = (char *)"woonfraude";
    h.purpose = (char *)"riec";
    uint8_t *hdr = NULL;
    size_t hdr_len = 0;
    assert_int_equal(keten_pb_pack(&h.base, &hdr, &hdr_len), KETEN_OK);
    uint8_t ct[48] = { 7 };
    Keten__Envelope e = KETEN__ENVELOPE__INIT;
    e.sender = (char *)"gemeente-diemen";
    e.header.data = hdr;
    e.header.len = hdr_len;
    e.ciphertext.data = ct;
    e.ciphertext.len = sizeof ct;
    uint8_t *out = NULL;
    assert_int_equal(keten_pb_pack(&e.base, &out, len), KETEN_OK);
    free(hdr);
    return out;
}

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    snprintf(c->dir, sizeof c->dir, "/tmp/keten-nodestore.XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    assert_int_equal(keten_store_open(c->dir, &c->store), KETEN_OK);
    c->env = pack_envelope(&c->env_len);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    keten_store_destroy(&c->store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    assert_int_equal(system(cmd), 0);
    free(c->env);
    free(c);
    return 0;
}

/* A queued sent record of the test envelope, with two recipients. */
static void put_queued(ctx *c)
{
    Keten__SentRecipient r[2], *rp[2] = { &r[0], &r[1] };
    keten__sent_recipient__init(&r[0]);
    keten__sent_recipient__init(&r[1]);
    r[0].id = (char *)"politie-mn";
    r[0].state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING;
    r[1].id = (char *)"belastingdienst";
    r[1].state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING;
    Keten__SentRecord s = KETEN__SENT_RECORD__INIT;
    s.msg_id.data = (uint8_t *)(uintptr_t)ID;
    s.msg_id.len = sizeof ID;
    s.state = KETEN__SENT_STATE__SENT_STATE_QUEUED;
    s.envelope.data = c->env;
    s.envelope.len = c->env_len;
    s.reason = KETEN__REASON__REASON_STORE_FULL;
    s.detail = (char *)"full";
    s.n_recipients = 2;
    s.recipients = rp;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_sent_put(c->store, txn, &s), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
}

/* The stored bytes of (db, key), copied. */
static uint8_t *frame_get(ctx *c, keten_store_db db, const void *key, size_t key_len, size_t *len)
{
    MDB_txn *txn = NULL;
    MDB_val v;
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_store_get(c->store, txn, db, key, key_len, &v), KETEN_OK);
    uint8_t *b = malloc(v.mv_size + 1);
    assert_non_null(b);
    memcpy(b, v.mv_data, v.mv_size);
    *len = v.mv_size;
    keten_store_abort(&txn);
    return b;
}

static void frame_put(ctx *c, keten_store_db db, const void *key, size_t key_len,
    const uint8_t *b, size_t len)
{
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_store_put(c->store, txn, db, key, key_len, b, len), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
}

/* The checksum the store keeps: BLAKE2b-128 over name || NUL || key || record. */
static void check_of(keten_store_db db, const void *key, size_t key_len, const uint8_t *rec,
    size_t len, uint8_t out[16])
{
    const char *name = keten_store_db_name(db);
    size_t n = strlen(name) + 1 + key_len + len;
    uint8_t *m = malloc(n + 1);
    assert_non_null(m);
    memcpy(m, name, strlen(name) + 1);
    memcpy(m + strlen(name) + 1, key, key_len);
    memcpy(m + strlen(name) + 1 + key_len, rec, len);
    crypto_generichash(out, 16, m, n, NULL, 0);
    free(m);
}

/* The record inside the stored value (its checksum checked). */
static uint8_t *raw_get(ctx *c, keten_store_db db, const void *key, size_t key_len, size_t *len)
{
    size_t flen = 0;
    uint8_t *f = frame_get(c, db, key, key_len, &flen);
    Keten__StoredRecord *sr = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK_CANONICAL(keten__stored_record, f, flen, flen, "stored", &sr), KETEN_OK);
    uint8_t check[16];
    check_of(db, key, key_len, sr->record.data, sr->record.len, check);
    assert_int_equal(sr->check.len, 16);
    assert_memory_equal(check, sr->check.data, 16);
    uint8_t *b = malloc(sr->record.len + 1);
    assert_non_null(b);
    memcpy(b, sr->record.data, sr->record.len);
    *len = sr->record.len;
    keten_nodestore_free((ProtobufCMessage **)(void *)&sr);
    free(f);
    return b;
}

/* Store record bytes b under (db, key) with a valid checksum: what is
 * refused then is refused for what the record says. */
static void raw_put(ctx *c, keten_store_db db, const void *key, size_t key_len, const uint8_t *b,
    size_t len)
{
    uint8_t check[16];
    check_of(db, key, key_len, b, len, check);
    Keten__StoredRecord sr = KETEN__STORED_RECORD__INIT;
    sr.record.data = (uint8_t *)(uintptr_t)b;
    sr.record.len = len;
    sr.check.data = check;
    sr.check.len = sizeof check;
    uint8_t *f = NULL;
    size_t flen = 0;
    assert_int_equal(keten_pb_pack(&sr.base, &f, &flen), KETEN_OK);
    frame_put(c, db, key, key_len, f, flen);
    free(f);
}

static keten_err read_sent(ctx *c, Keten__SentRecord **out)
{
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    keten_err e = keten_nodestore_sent_get(c->store, txn, ID, out);
    keten_store_abort(&txn);
    return e;
}

/* Store b as the sent record of ID: it must be refused, naming the table
 * and the key, and nothing is returned. */
static void assert_refused_now(ctx *c)
{
    Keten__SentRecord *r = (Keten__SentRecord *)(uintptr_t)1;
    assert_int_equal(read_sent(c, &r), KETEN_ERR_MALFORMED);
    assert_null(r);
    assert_non_null(strstr(keten_err_detail(), "sent record"));
    assert_non_null(strstr(keten_err_detail(), ID_HEX));
}

static void assert_sent_refused(ctx *c, const uint8_t *b, size_t len)
{
    raw_put(c, KETEN_DB_SENT, ID, sizeof ID, b, len);
    Keten__SentRecord *r = (Keten__SentRecord *)(uintptr_t)1;
    assert_int_equal(read_sent(c, &r), KETEN_ERR_MALFORMED);
    assert_null(r);
    assert_non_null(strstr(keten_err_detail(), "sent record"));
    assert_non_null(strstr(keten_err_detail(), ID_HEX));
    assert_non_null(strstr(keten_err_detail(), "damaged"));
}

static void test_sent_round_trip(void **state)
{
    ctx *c = *state;
    put_queued(c);
    Keten__SentRecord *r = NULL;
    assert_int_equal(read_sent(c, &r), KETEN_OK);
    assert_int_equal(r->state, KETEN__SENT_STATE__SENT_STATE_QUEUED);
    assert_int_equal(r->envelope.len, c->env_len);
    assert_memory_equal(r->envelope.data, c->env, c->env_len);
    assert_int_equal(r->reason, KETEN__REASON__REASON_STORE_FULL);
    assert_string_equal(r->detail, "full");
    assert_int_equal(r->n_recipients, 2);
    assert_string_equal(r->recipients[1]->id, "belastingdienst");
    assert_int_equal(r->recipients[1]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING);
    /* The header is read from the envelope, the field list spelled once. */
    Keten__Header *h = NULL;
    assert_int_equal(keten_nodestore_sent_header(r, &h), KETEN_OK);
    json_t *o = json_object();
    assert_int_equal(keten_nodestore_header_json(h, KETEN_HDR_ALL, o), KETEN_OK);
    assert_string_equal(json_string_value(json_object_get(o, "from")), "gemeente-diemen");
    assert_string_equal(json_string_value(json_object_get(o, "kind")), "query");
    assert_string_equal(json_string_value(json_object_get(o, "category")), "woonfraude");
    assert_string_equal(json_string_value(json_object_get(o, "purpose")), "riec");
    assert_non_null(json_string_value(json_object_get(o, "created_at")));
    assert_null(json_object_get(o, "in_reply_to"));
    json_decref(o);
    keten_nodestore_free((ProtobufCMessage **)(void *)&h);
    assert_string_equal(keten_nodestore_sent_state_name(r->state), "pending");

    /* Accepted: the envelope gives way to its hash and header. */
    uint8_t hash[KETEN_HASH_BYTES];
    crypto_hash_sha256(hash, c->env, c->env_len);
    Keten__Envelope *env = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK(keten__envelope, c->env, c->env_len, KETEN_ENVELOPE_MAX, "e", &env),
        KETEN_OK);
    Keten__SentRecord acc = *r;
    acc.state = KETEN__SENT_STATE__SENT_STATE_ACCEPTED;
    acc.envelope.data = NULL;
    acc.envelope.len = 0;
    acc.envelope_hash.data = hash;
    acc.envelope_hash.len = sizeof hash;
    acc.header = env->header;
    acc.leaf_index = 41;
    acc.tree_size = 42;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_sent_put(c->store, txn, &acc), KETEN_OK);
    /* What could not be read back is not written either. */
    acc.header.len = 0;
    assert_int_equal(keten_nodestore_sent_put(c->store, txn, &acc), KETEN_ERR_INVALID);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    keten_nodestore_free((ProtobufCMessage **)(void *)&env);
    keten_nodestore_sent_free(&r);
    assert_int_equal(read_sent(c, &r), KETEN_OK);
    assert_int_equal(r->state, KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(r->leaf_index, 41);
    assert_memory_equal(r->envelope_hash.data, hash, sizeof hash);
    assert_int_equal(keten_nodestore_sent_header(r, &h), KETEN_OK);
    assert_string_equal(h->sender, "gemeente-diemen");
    keten_nodestore_free((ProtobufCMessage **)(void *)&h);
    keten_nodestore_sent_free(&r);

    uint8_t other[KETEN_MSG_ID_BYTES] = { 9 };
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_sent_get(c->store, txn, other, &r), KETEN_ERR_NOT_FOUND);
    keten_store_abort(&txn);
}

static void test_sent_truncated(void **state)
{
    ctx *c = *state;
    put_queued(c);
    size_t len = 0;
    uint8_t *b = raw_get(c, KETEN_DB_SENT, ID, sizeof ID, &len);
    assert_sent_refused(c, b, len - 1); /* the last recipient entry cut short */
    assert_sent_refused(c, b, 0); /* nothing: no msg_id, no state */
    free(b);
    /* The stored value cut anywhere, also between two fields. */
    put_queued(c);
    uint8_t *f = frame_get(c, KETEN_DB_SENT, ID, sizeof ID, &len);
    for (size_t n = 0; n < len; n++) {
        frame_put(c, KETEN_DB_SENT, ID, sizeof ID, f, n);
        assert_refused_now(c);
    }
    free(f);
}

static void test_sent_every_flip(void **state)
{
    ctx *c = *state;
    put_queued(c);
    size_t len = 0;
    uint8_t *f = frame_get(c, KETEN_DB_SENT, ID, sizeof ID, &len);
    uint8_t *d = malloc(len);
    assert_non_null(d);
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            memcpy(d, f, len);
            d[i] ^= (uint8_t)(1u << bit);
            frame_put(c, KETEN_DB_SENT, ID, sizeof ID, d, len);
            assert_refused_now(c);
        }
    }
    /* The intact value under another msg_id: moved, refused. */
    uint8_t other[KETEN_MSG_ID_BYTES] = { 9 };
    frame_put(c, KETEN_DB_SENT, other, sizeof other, f, len);
    MDB_txn *txn = NULL;
    Keten__SentRecord *r = NULL;
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_sent_get(c->store, txn, other, &r), KETEN_ERR_MALFORMED);
    keten_store_abort(&txn);
    assert_null(r);
    free(d);
    free(f);
}

static void test_sent_flipped_byte(void **state)
{
    ctx *c = *state;
    put_queued(c);
    size_t len = 0;
    uint8_t *b = raw_get(c, KETEN_DB_SENT, ID, sizeof ID, &len);
    /* field 1 (msg_id): tag 0x0a, length 16, then the id */
    assert_int_equal(b[0], 0x0a);
    assert_int_equal(b[1], KETEN_MSG_ID_BYTES);
    /* field 2 (state): tag 0x10, then the value */
    assert_int_equal(b[18], 0x10);
    uint8_t *d = malloc(len);
    assert_non_null(d);
    struct {
        size_t at;
        uint8_t xor;
    } flips[] = {
        { 0, 0x01 }, /* tag of msg_id: wire type 3, an unsupported group */
        { 1, 0x01 }, /* msg_id 17 bytes long: swallows the state's tag */
        { 5, 0x01 }, /* a byte of msg_id: not the key */
        { 19, 0x08 }, /* state 1 -> 9: not a known state */
        { 18, 0x08 }, /* state's tag -> field 3 as a varint: the envelope's tag type */
    };
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        memcpy(d, b, len);
        d[flips[i].at] ^= flips[i].xor;
        assert_sent_refused(c, d, len);
    }
    free(d);
    free(b);
}

static void test_sent_unknown_field(void **state)
{
    ctx *c = *state;
    put_queued(c);
    size_t len = 0;
    uint8_t *b = raw_get(c, KETEN_DB_SENT, ID, sizeof ID, &len);
    uint8_t *d = malloc(len + 2);
    assert_non_null(d);
    memcpy(d, b, len);
    d[len] = 0xa0; /* field 20, varint: 20 << 3 = 160, 0xa0 0x01 */
    d[len + 1] = 0x01;
    uint8_t *e = malloc(len + 3);
    assert_non_null(e);
    memcpy(e, d, len + 2);
    e[len + 2] = 0x05; /* value 5 */
    assert_sent_refused(c, e, len + 3);
    free(e);
    free(d);
    free(b);
}

static void test_sent_not_canonical(void **state)
{
    ctx *c = *state;
    put_queued(c);
    size_t len = 0;
    uint8_t *b = raw_get(c, KETEN_DB_SENT, ID, sizeof ID, &len);
    uint8_t *d = malloc(len + 2);
    assert_non_null(d);
    /* A default value written out: leaf_index (field 6) = 0 at the end. */
    memcpy(d, b, len);
    d[len] = 0x30;
    d[len + 1] = 0x00;
    assert_sent_refused(c, d, len + 2);
    /* A non-minimal varint: state 1 as 0x81 0x00. */
    memcpy(d, b, 19);
    d[19] = 0x81;
    d[20] = 0x00;
    memcpy(d + 21, b + 20, len - 20);
    assert_sent_refused(c, d, len + 1);
    /* Fields out of order: state before msg_id. */
    memcpy(d, b + 18, 2);
    memcpy(d + 2, b, 18);
    memcpy(d + 20, b + 20, len - 20);
    assert_sent_refused(c, d, len);
    free(d);
    free(b);
}

static void test_sent_too_large(void **state)
{
    ctx *c = *state;
    size_t len = KETEN_NODESTORE_SENT_MAX + 1;
    uint8_t *b = calloc(1, len);
    assert_non_null(b);
    assert_sent_refused(c, b, len);
    free(b);
}

static void test_sent_inconsistent(void **state)
{
    ctx *c = *state;
    /* Canonical protobuf, but not what a sent record must hold. */
    Keten__SentRecipient r, *rp[1] = { &r };
    keten__sent_recipient__init(&r);
    r.id = (char *)"politie-mn";
    r.state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED;
    Keten__SentRecord s = KETEN__SENT_RECORD__INIT;
    s.msg_id.data = (uint8_t *)(uintptr_t)ID;
    s.msg_id.len = sizeof ID;
    s.state = KETEN__SENT_STATE__SENT_STATE_ACCEPTED; /* accepted, but no hash or header */
    s.n_recipients = 1;
    s.recipients = rp;
    uint8_t *b = NULL;
    size_t len = 0;
    assert_int_equal(keten_pb_pack(&s.base, &b, &len), KETEN_OK);
    assert_sent_refused(c, b, len);
    free(b);
    s.state = KETEN__SENT_STATE__SENT_STATE_QUEUED;
    s.envelope.data = c->env;
    s.envelope.len = c->env_len;
    r.state = 7; /* not a recipient state */
    assert_int_equal(keten_pb_pack(&s.base, &b, &len), KETEN_OK);
    assert_sent_refused(c, b, len);
    free(b);
    r.state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING;
    s.n_recipients = 0; /* nobody */
    assert_int_equal(keten_pb_pack(&s.base, &b, &len), KETEN_OK);
    assert_sent_refused(c, b, len);
    free(b);
}

static void test_received(void **state)
{
    ctx *c = *state;
    uint8_t sig[] = { 0x0a, 0x03, 'a', 'b', 'c' };
    Keten__ReceivedRecord r = KETEN__RECEIVED_RECORD__INIT;
    r.envelope.data = c->env;
    r.envelope.len = c->env_len;
    r.signal.data = sig;
    r.signal.len = sizeof sig;
    r.received_at = 1700000001000;
    r.leaf_index = 7;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_received_put(c->store, txn, ID, &r), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    Keten__ReceivedRecord *got = NULL;
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_received_get(c->store, txn, ID, &got), KETEN_OK);
    keten_store_abort(&txn);
    assert_memory_equal(got->signal.data, sig, sizeof sig);
    assert_int_equal(got->leaf_index, 7);
    assert_false(got->handled);
    Keten__Header *h = NULL;
    assert_int_equal(keten_nodestore_received_header(ID, got, &h), KETEN_OK);
    assert_string_equal(h->sender, "gemeente-diemen");
    keten_nodestore_free((ProtobufCMessage **)(void *)&h);
    /* Its envelope under another msg_id: refused. */
    uint8_t other[KETEN_MSG_ID_BYTES] = { 9 };
    assert_int_equal(keten_nodestore_received_header(other, got, &h), KETEN_ERR_MALFORMED);
    assert_non_null(strstr(keten_err_detail(), "messages record"));
    assert_null(h);
    keten_nodestore_received_free(&got);
    assert_null(got);

    /* Its last field (leaf_index, 2 bytes) dropped, the checksum of the
     * whole record kept: the rest still parses, the checksum does not match. */
    size_t rlen = 0, len = 0;
    uint8_t *b = raw_get(c, KETEN_DB_MESSAGES, ID, sizeof ID, &rlen);
    uint8_t check[16];
    check_of(KETEN_DB_MESSAGES, ID, sizeof ID, b, rlen, check);
    Keten__StoredRecord sr = KETEN__STORED_RECORD__INIT;
    sr.record.data = b;
    sr.record.len = rlen - 2;
    sr.check.data = check;
    sr.check.len = sizeof check;
    uint8_t *cut = NULL;
    assert_int_equal(keten_pb_pack(&sr.base, &cut, &len), KETEN_OK);
    frame_put(c, KETEN_DB_MESSAGES, ID, sizeof ID, cut, len);
    free(cut);
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_received_get(c->store, txn, ID, &got), KETEN_ERR_MALFORMED);
    keten_store_abort(&txn);
    assert_null(got);
    assert_non_null(strstr(keten_err_detail(), "messages record"));
    assert_non_null(strstr(keten_err_detail(), ID_HEX));
    free(b);
}

/* A received query's reply msg_id: 16 bytes round trip; any other length
 * is not stored, and a record holding one (a valid checksum) is refused. */
static void test_received_reply_id(void **state)
{
    ctx *c = *state;
    uint8_t sig[] = { 0x0a, 0x03, 'a', 'b', 'c' };
    uint8_t reply[KETEN_MSG_ID_BYTES + 1];
    memset(reply, 0x5a, sizeof reply);
    Keten__ReceivedRecord r = KETEN__RECEIVED_RECORD__INIT;
    r.envelope.data = c->env;
    r.envelope.len = c->env_len;
    r.signal.data = sig;
    r.signal.len = sizeof sig;
    r.received_at = 1700000001000;
    r.reply_id.data = reply;
    r.reply_id.len = KETEN_MSG_ID_BYTES;
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_received_put(c->store, txn, ID, &r), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    Keten__ReceivedRecord *got = NULL;
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_received_get(c->store, txn, ID, &got), KETEN_OK);
    keten_store_abort(&txn);
    assert_int_equal(got->reply_id.len, KETEN_MSG_ID_BYTES);
    assert_memory_equal(got->reply_id.data, reply, KETEN_MSG_ID_BYTES);
    keten_nodestore_received_free(&got);

    size_t bad[] = { 1, KETEN_MSG_ID_BYTES - 1, KETEN_MSG_ID_BYTES + 1 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r.reply_id.len = bad[i];
        assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
        assert_int_equal(keten_nodestore_received_put(c->store, txn, ID, &r), KETEN_ERR_INVALID);
        assert_non_null(strstr(keten_err_detail(), "reply's msg_id is not 16 bytes"));
        keten_store_abort(&txn);
        uint8_t *b = NULL;
        size_t len = 0;
        assert_int_equal(keten_pb_pack(&r.base, &b, &len), KETEN_OK);
        raw_put(c, KETEN_DB_MESSAGES, ID, sizeof ID, b, len);
        free(b);
        got = (Keten__ReceivedRecord *)(uintptr_t)1;
        assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
        assert_int_equal(
            keten_nodestore_received_get(c->store, txn, ID, &got), KETEN_ERR_MALFORMED);
        keten_store_abort(&txn);
        assert_null(got);
        assert_non_null(strstr(keten_err_detail(), "messages record"));
        assert_non_null(strstr(keten_err_detail(), ID_HEX));
        assert_non_null(strstr(keten_err_detail(), "reply's msg_id is not 16 bytes"));
    }
}

static void test_seen_and_checkpoint(void **state)
{
    ctx *c = *state;
    uint8_t hash[KETEN_HASH_BYTES] = { 3 };
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_seen_put(c->store, txn, ID, 1700003600000, hash), KETEN_OK);
    Keten__CheckpointRecord cp = KETEN__CHECKPOINT_RECORD__INIT;
    cp.note = (char *)"keten/testnet\n12\nroot\n";
    cp.size = 12;
    cp.root.data = hash;
    cp.root.len = sizeof hash;
    cp.directory_version = 3;
    cp.directory_hash.data = hash;
    cp.directory_hash.len = sizeof hash;
    assert_int_equal(keten_nodestore_checkpoint_put(c->store, txn, &cp), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);

    Keten__SeenRecord *seen = NULL;
    Keten__CheckpointRecord *got = NULL;
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_seen_get(c->store, txn, ID, &seen), KETEN_OK);
    assert_int_equal(seen->expires_at, 1700003600000);
    assert_memory_equal(seen->envelope_hash.data, hash, sizeof hash);
    assert_int_equal(keten_nodestore_checkpoint_get(c->store, txn, 12, &got), KETEN_OK);
    assert_int_equal(got->directory_version, 3);
    keten_store_abort(&txn);
    keten_nodestore_free((ProtobufCMessage **)(void *)&seen);
    keten_nodestore_free((ProtobufCMessage **)(void *)&got);

    /* A seen entry of 40 fixed bytes (the old layout) is not a record. */
    uint8_t old[40] = { 0 };
    frame_put(c, KETEN_DB_SEEN, ID, sizeof ID, old, sizeof old);
    /* A checkpoint stored under another size than it says. */
    size_t len = 0;
    uint8_t k12[KETEN_STORE_U64_KEY], k13[KETEN_STORE_U64_KEY];
    keten_store_u64_put(12, k12);
    keten_store_u64_put(13, k13);
    uint8_t *b = raw_get(c, KETEN_DB_CHECKPOINTS, k12, sizeof k12, &len);
    raw_put(c, KETEN_DB_CHECKPOINTS, k13, sizeof k13, b, len);
    free(b);
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_seen_get(c->store, txn, ID, &seen), KETEN_ERR_MALFORMED);
    assert_non_null(strstr(keten_err_detail(), "seen record"));
    assert_int_equal(keten_nodestore_checkpoint_get(c->store, txn, 13, &got), KETEN_ERR_MALFORMED);
    assert_non_null(strstr(keten_err_detail(), "checkpoints record 13"));
    keten_store_abort(&txn);
    assert_null(seen);
    assert_null(got);
}

static void test_alarms(void **state)
{
    ctx *c = *state;
    MDB_txn *txn = NULL;
    Keten__NodeAlarms *list = NULL;
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_alarms_get(c->store, txn, &list), KETEN_OK);
    keten_store_abort(&txn);
    assert_int_equal(list->n_alarms, 0); /* none stored: an empty list */
    keten_nodestore_free((ProtobufCMessage **)(void *)&list);

    Keten__NodeAlarm a = KETEN__NODE_ALARM__INIT, *ap[1] = { &a };
    a.kind = (char *)"bad-proof";
    a.detail = (char *)"the proof does not hold";
    a.at = 1700000000000;
    Keten__NodeAlarms l = KETEN__NODE_ALARMS__INIT;
    l.alarms = ap;
    l.n_alarms = 1;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_alarms_put(c->store, txn, &l), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_alarms_get(c->store, txn, &list), KETEN_OK);
    keten_store_abort(&txn);
    assert_int_equal(list->n_alarms, 1);
    assert_string_equal(list->alarms[0]->kind, "bad-proof");
    keten_nodestore_free((ProtobufCMessage **)(void *)&list);

    /* The old JSON list is damage, not "no alarms": status must not go quiet. */
    const char *json = "[{\"kind\":\"bad-proof\",\"detail\":\"x\",\"at\":\"2026\"}]";
    frame_put(c, KETEN_DB_STATE, KETEN_NODESTORE_ALARMS_KEY, strlen(KETEN_NODESTORE_ALARMS_KEY),
        (const uint8_t *)json, strlen(json));
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_alarms_get(c->store, txn, &list), KETEN_ERR_MALFORMED);
    keten_store_abort(&txn);
    assert_null(list);
    assert_non_null(strstr(keten_err_detail(), "state record \"alarms\""));
}

static void test_evidence(void **state)
{
    ctx *c = *state;
    uint8_t key[KETEN_STORE_EVIDENCE_KEY] = { 0 };
    uint8_t frame[] = { 0x08, 0x01 };
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_nodestore_evidence_put(c->store, txn, key, "bad-proof: x", frame, sizeof frame),
        KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    size_t len = 0;
    uint8_t *b = frame_get(c, KETEN_DB_EVIDENCE, key, sizeof key, &len);
    MDB_val v = { len, b };
    Keten__EvidenceRecord *ev = NULL;
    assert_int_equal(keten_nodestore_decode(KETEN_DB_EVIDENCE, key, sizeof key, &v,
                         &keten__evidence_record__descriptor, KETEN_NODESTORE_EVIDENCE_MAX,
                         (ProtobufCMessage **)(void *)&ev),
        KETEN_OK);
    assert_string_equal(ev->reason, "bad-proof: x");
    assert_memory_equal(ev->frame.data, frame, sizeof frame);
    keten_nodestore_free((ProtobufCMessage **)(void *)&ev);
    v.mv_size = len - 1;
    assert_int_equal(keten_nodestore_decode(KETEN_DB_EVIDENCE, key, sizeof key, &v,
                         &keten__evidence_record__descriptor, KETEN_NODESTORE_EVIDENCE_MAX,
                         (ProtobufCMessage **)(void *)&ev),
        KETEN_ERR_MALFORMED);
    assert_null(ev);
    assert_non_null(strstr(keten_err_detail(), "evidence record"));
    free(b);
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sent_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_every_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_unknown_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_not_canonical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_inconsistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_received, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seen_and_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evidence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_received_reply_id, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
