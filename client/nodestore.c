#include "nodestore.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pb.h"
#include "policy.h"
#include "rec.h"
#include "util.h"

/* The key of a record as people read it: text (state), a number (8-byte
 * keys), or hex (msg_ids, evidence keys). */
static void key_text(keten_store_db db, const void *key, size_t key_len, char *out, size_t size)
{
    if (db == KETEN_DB_STATE) {
        snprintf(out, size, "\"%.*s\"", (int)(key_len < 64 ? key_len : 64), (const char *)key);
    } else if (key_len == KETEN_STORE_U64_KEY) {
        snprintf(out, size, "%llu", (unsigned long long)keten_store_u64_get(key));
    } else if (2 * key_len < size && key_len <= 32) {
        keten_hex(key, key_len, out);
    } else {
        snprintf(out, size, "of %zu bytes", key_len);
    }
}

/* KETEN_ERR_MALFORMED naming the table and key; why: what is wrong. */
static keten_err damaged(keten_store_db db, const void *key, size_t key_len, const char *why)
{
    char k[80];
    key_text(db, key, key_len, k, sizeof k);
    char copy[400];
    snprintf(copy, sizeof copy, "%s", why); /* why may be keten_err_detail() */
    return keten_err_set(KETEN_ERR_MALFORMED,
        "the node store's %s record %s is damaged: %s; it is not read (restore the store from a "
        "backup)",
        keten_store_db_name(db), k, copy);
}

#define CHECK_BYTES 16

/* The checksum of a record under (db, key). */
static void record_check(keten_store_db db, const void *key, size_t key_len, const uint8_t *rec,
    size_t rec_len, uint8_t out[static CHECK_BYTES])
{
    crypto_generichash_state st;
    const char *name = keten_store_db_name(db);
    crypto_generichash_init(&st, NULL, 0, CHECK_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)name, strlen(name) + 1);
    crypto_generichash_update(&st, key, key_len);
    crypto_generichash_update(&st, rec, rec_len);
    crypto_generichash_final(&st, out, CHECK_BYTES);
}

keten_err keten_nodestore_decode(keten_store_db db, const void *key, size_t key_len,
    const MDB_val *val, const ProtobufCMessageDescriptor *desc, size_t max, ProtobufCMessage **out)
{
    *out = NULL;
    const size_t frame_max = max + 64; /* tags, lengths and the checksum */
    if (val->mv_size > frame_max) {
        char why[80];
        snprintf(why, sizeof why, "%zu bytes, at most %zu expected", val->mv_size, frame_max);
        return damaged(db, key, key_len, why);
    }
    Keten__StoredRecord *sr = NULL;
    keten_err e = KETEN_PB_UNPACK_CANONICAL(
        keten__stored_record, val->mv_data, val->mv_size, frame_max, "stored record", &sr);
    if (e == KETEN_OK) {
        uint8_t check[CHECK_BYTES];
        record_check(db, key, key_len, sr->record.data, sr->record.len, check);
        if (sr->check.len != CHECK_BYTES || sodium_memcmp(check, sr->check.data, CHECK_BYTES) != 0) {
            e = keten_err_set(KETEN_ERR_MALFORMED, "its checksum does not match");
        }
    }
    if (e == KETEN_OK) {
        e = keten_pb_unpack_canonical(
            desc, sr->record.data, sr->record.len, max, desc->short_name, out);
    }
    /* The bytes may hold decrypted content (a received signal). */
    if (sr != NULL && sr->record.data != NULL && sr->record.len > 0) {
        sodium_memzero(sr->record.data, sr->record.len);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&sr);
    if (e == KETEN_ERR_NOMEM) {
        return e;
    }
    if (e != KETEN_OK) {
        return damaged(db, key, key_len, keten_err_detail());
    }
    return KETEN_OK;
}

static keten_err read_record(const keten_store *st, MDB_txn *txn, keten_store_db db,
    const void *key, size_t key_len, const ProtobufCMessageDescriptor *desc, size_t max,
    ProtobufCMessage **out)
{
    *out = NULL;
    MDB_val v;
    keten_err e = keten_store_get(st, txn, db, key, key_len, &v);
    if (e != KETEN_OK) {
        return e;
    }
    return keten_nodestore_decode(db, key, key_len, &v, desc, max, out);
}

/* Pack and store; wipe: the bytes hold decrypted content. */
static keten_err write_record(keten_store *st, MDB_txn *txn, keten_store_db db, const void *key,
    size_t key_len, const ProtobufCMessage *msg, bool wipe)
{
    uint8_t *rec = NULL, *buf = NULL;
    size_t rec_len = 0, len = 0;
    keten_err e = keten_pb_pack(msg, &rec, &rec_len);
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t check[CHECK_BYTES];
    record_check(db, key, key_len, rec, rec_len, check);
    Keten__StoredRecord sr = KETEN__STORED_RECORD__INIT;
    sr.record.data = rec;
    sr.record.len = rec_len;
    sr.check.data = check;
    sr.check.len = CHECK_BYTES;
    e = keten_pb_pack(&sr.base, &buf, &len);
    if (e == KETEN_OK) {
        e = keten_store_put(st, txn, db, key, key_len, buf, len);
    }
    if (wipe) {
        sodium_memzero(rec, rec_len);
        if (buf != NULL) {
            sodium_memzero(buf, len);
        }
    }
    free(rec);
    free(buf);
    return e;
}

void keten_nodestore_free(ProtobufCMessage **msg_p)
{
    keten_pb_free(msg_p);
}

/* ---- events ------------------------------------------------------------ */

/* What an event record must hold; NULL when it does. */
static const char *event_invalid(const Keten__EventRecord *r)
{
    char why[160];
    if (r->type == KETEN__EVENT_TYPE__EVENT_TYPE_ALARM_ACKNOWLEDGED) {
        return r->msg_id.len == 0 && r->alarm_id != 0 && r->alarm_kind != NULL
                && r->alarm_kind[0] != '\0' && keten_nodestore_by_ok(r->by)
                && keten_nodestore_note_ok(r->note, why, sizeof why)
            ? NULL
            : "an alarm-acknowledged event without the alarm's number and kind, a valid name of "
              "who acknowledged it and a valid note, or with a msg_id";
    }
    if (r->msg_id.len != KETEN_MSG_ID_BYTES) {
        return "its msg_id is not 16 bytes";
    }
    switch (r->type) {
    case KETEN__EVENT_TYPE__EVENT_TYPE_MESSAGE:
        if (r->kind < KETEN__KIND__KIND_SIGNAL || r->kind > KETEN__KIND__KIND_FEEDBACK
            || r->from == NULL || r->from[0] == '\0' || r->category == NULL
            || (r->in_reply_to.len != 0 && r->in_reply_to.len != KETEN_MSG_ID_BYTES)) {
            return "a message event without a kind or sender, or a bad in_reply_to";
        }
        return NULL;
    case KETEN__EVENT_TYPE__EVENT_TYPE_SENT:
        return r->sent_state > KETEN__SENT_STATE__SENT_STATE_QUEUED
                && r->sent_state <= KETEN__SENT_STATE__SENT_STATE_EXPIRED
            ? NULL
            : "a sent event without a state past queued";
    case KETEN__EVENT_TYPE__EVENT_TYPE_RECEIPT:
        return r->recipient != NULL && r->recipient[0] != '\0'
                && (r->recipient_state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED
                    || r->recipient_state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_REFUSED
                    || r->recipient_state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED)
            ? NULL
            : "a receipt event without a recipient or an answered state";
    case KETEN__EVENT_TYPE__EVENT_TYPE_HANDLED:
        return r->handled_at != 0 ? NULL : "a handled event without its time";
    default:
        return "its type is not a known event type";
    }
}

keten_err keten_nodestore_event_put(
    keten_store *st, MDB_txn *txn, uint64_t seq, const Keten__EventRecord *rec)
{
    const char *why = event_invalid(rec);
    if (why != NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "an event not stored: %s", why);
    }
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(seq, key);
    return write_record(st, txn, KETEN_DB_EVENTS, key, sizeof key, &rec->base, false);
}

keten_err keten_nodestore_event_decode(uint64_t seq, const MDB_val *val, Keten__EventRecord **out)
{
    *out = NULL;
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(seq, key);
    Keten__EventRecord *r = NULL;
    keten_err e = keten_nodestore_decode(KETEN_DB_EVENTS, key, sizeof key, val,
        &keten__event_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
        (ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK) {
        return e;
    }
    const char *why = event_invalid(r);
    if (why != NULL) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return damaged(KETEN_DB_EVENTS, key, sizeof key, why);
    }
    *out = r;
    return KETEN_OK;
}

/* ---- sent -------------------------------------------------------------- */

const char *keten_nodestore_sent_state_name(Keten__SentState s)
{
    switch (s) {
    case KETEN__SENT_STATE__SENT_STATE_QUEUED:
        return "pending";
    case KETEN__SENT_STATE__SENT_STATE_ACCEPTED:
        return "accepted";
    case KETEN__SENT_STATE__SENT_STATE_REFUSED:
        return "rejected";
    case KETEN__SENT_STATE__SENT_STATE_EXPIRED:
        return "expired";
    default:
        return "unknown";
    }
}

const char *keten_nodestore_recipient_state_name(Keten__RecipientState s)
{
    switch (s) {
    case KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING:
        return "pending";
    case KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED:
        return "accepted";
    case KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED:
        return "receipted";
    case KETEN__RECIPIENT_STATE__RECIPIENT_STATE_REFUSED:
        return "refused";
    case KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED:
        return "expired";
    default:
        return "unknown";
    }
}

static bool sent_state_valid(Keten__SentState s)
{
    return s >= KETEN__SENT_STATE__SENT_STATE_QUEUED && s <= KETEN__SENT_STATE__SENT_STATE_EXPIRED;
}

static bool recipient_state_valid(Keten__RecipientState s)
{
    return s >= KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING
        && s <= KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED;
}

/* What a sent record must hold; NULL when it does. */
static const char *sent_invalid(const Keten__SentRecord *r, const uint8_t *key)
{
    if (r->msg_id.len != KETEN_MSG_ID_BYTES
        || sodium_memcmp(r->msg_id.data, key, KETEN_MSG_ID_BYTES) != 0) {
        return "its msg_id is not its key";
    }
    if (!sent_state_valid(r->state)) {
        return "its state is not a known state";
    }
    if (r->state == KETEN__SENT_STATE__SENT_STATE_QUEUED) {
        if (r->envelope.len == 0 || r->envelope_hash.len != 0 || r->header.len != 0) {
            return "a queued message holds its envelope, and no hash or header";
        }
    } else if (r->envelope.len != 0 || r->envelope_hash.len != KETEN_HASH_BYTES
        || r->header.len == 0) {
        return "a message past the outbox holds its envelope hash and header, not the envelope";
    }
    if (r->n_recipients == 0 || r->n_recipients > KETEN_MAX_RECIPIENTS) {
        return "its recipient list is empty or too long";
    }
    for (size_t i = 0; i < r->n_recipients; i++) {
        if (r->recipients[i]->id == NULL || r->recipients[i]->id[0] == '\0'
            || !recipient_state_valid(r->recipients[i]->state)) {
            return "a recipient entry has no id or an unknown state";
        }
    }
    for (size_t i = 0; i < r->n_replies; i++) {
        if (r->replies[i]->msg_id.len != KETEN_MSG_ID_BYTES) {
            return "a reply's msg_id is not 16 bytes";
        }
    }
    return NULL;
}

keten_err keten_nodestore_sent_get(const keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], Keten__SentRecord **out)
{
    *out = NULL;
    Keten__SentRecord *r = NULL;
    keten_err e = read_record(st, txn, KETEN_DB_SENT, msg_id, KETEN_MSG_ID_BYTES,
        &keten__sent_record__descriptor, KETEN_NODESTORE_SENT_MAX, (ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK) {
        return e;
    }
    const char *why = sent_invalid(r, msg_id);
    if (why != NULL) {
        keten_nodestore_sent_free(&r);
        return damaged(KETEN_DB_SENT, msg_id, KETEN_MSG_ID_BYTES, why);
    }
    *out = r;
    return KETEN_OK;
}

keten_err keten_nodestore_sent_put(keten_store *st, MDB_txn *txn, const Keten__SentRecord *rec)
{
    if (rec->msg_id.len != KETEN_MSG_ID_BYTES) {
        return keten_err_set(KETEN_ERR_INVALID, "a sent record without a msg_id");
    }
    const char *why = sent_invalid(rec, rec->msg_id.data);
    if (why != NULL) { /* a programming error: never store what cannot be read */
        return keten_err_set(KETEN_ERR_INVALID, "not storing a sent record: %s", why);
    }
    return write_record(st, txn, KETEN_DB_SENT, rec->msg_id.data, KETEN_MSG_ID_BYTES,
        &rec->base, false);
}

void keten_nodestore_sent_free(Keten__SentRecord **rec_p)
{
    keten_pb_free((ProtobufCMessage **)(void *)rec_p);
}

/* Header bytes of an envelope. */
static keten_err envelope_header(keten_store_db db, const uint8_t *key, const uint8_t *env,
    size_t env_len, Keten__Header **out)
{
    *out = NULL;
    Keten__Envelope *e_msg = NULL;
    keten_err e
        = KETEN_PB_UNPACK(keten__envelope, env, env_len, KETEN_ENVELOPE_MAX, "envelope", &e_msg);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__header, e_msg->header.data, e_msg->header.len,
            KETEN_ENVELOPE_MAX, "header", out);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&e_msg);
    if (e == KETEN_ERR_NOMEM) {
        return e;
    }
    if (e == KETEN_OK
        && ((*out)->msg_id.len != KETEN_MSG_ID_BYTES
            || sodium_memcmp((*out)->msg_id.data, key, KETEN_MSG_ID_BYTES) != 0)) {
        keten_pb_free((ProtobufCMessage **)(void *)out);
        return damaged(db, key, KETEN_MSG_ID_BYTES, "its envelope is of another msg_id");
    }
    return e == KETEN_OK ? KETEN_OK : damaged(db, key, KETEN_MSG_ID_BYTES, keten_err_detail());
}

keten_err keten_nodestore_sent_header(const Keten__SentRecord *rec, Keten__Header **out)
{
    *out = NULL;
    if (rec->state == KETEN__SENT_STATE__SENT_STATE_QUEUED) {
        return envelope_header(
            KETEN_DB_SENT, rec->msg_id.data, rec->envelope.data, rec->envelope.len, out);
    }
    keten_err e = KETEN_PB_UNPACK(
        keten__header, rec->header.data, rec->header.len, KETEN_ENVELOPE_MAX, "header", out);
    if (e == KETEN_ERR_NOMEM) {
        return e;
    }
    if (e == KETEN_OK
        && ((*out)->msg_id.len != KETEN_MSG_ID_BYTES
            || sodium_memcmp((*out)->msg_id.data, rec->msg_id.data, KETEN_MSG_ID_BYTES) != 0)) {
        keten_pb_free((ProtobufCMessage **)(void *)out);
        return damaged(
            KETEN_DB_SENT, rec->msg_id.data, KETEN_MSG_ID_BYTES, "its header is of another msg_id");
    }
    return e == KETEN_OK
        ? KETEN_OK
        : damaged(KETEN_DB_SENT, rec->msg_id.data, KETEN_MSG_ID_BYTES, keten_err_detail());
}

/* ---- messages (received) ----------------------------------------------- */

/* What a received record must hold; NULL when it does. */
static const char *received_invalid(const Keten__ReceivedRecord *r)
{
    if (r->envelope.len == 0 || r->signal.len == 0) {
        return "it holds no envelope or no signal";
    }
    if (r->reply_id.len != 0 && r->reply_id.len != KETEN_MSG_ID_BYTES) {
        return "its reply's msg_id is not 16 bytes";
    }
    return NULL;
}

keten_err keten_nodestore_received_get(const keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], Keten__ReceivedRecord **out)
{
    *out = NULL;
    Keten__ReceivedRecord *r = NULL;
    keten_err e = read_record(st, txn, KETEN_DB_MESSAGES, msg_id, KETEN_MSG_ID_BYTES,
        &keten__received_record__descriptor, KETEN_NODESTORE_RECEIVED_MAX,
        (ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK) {
        return e;
    }
    const char *why = received_invalid(r);
    if (why != NULL) {
        keten_nodestore_received_free(&r);
        return damaged(KETEN_DB_MESSAGES, msg_id, KETEN_MSG_ID_BYTES, why);
    }
    *out = r;
    return KETEN_OK;
}

keten_err keten_nodestore_received_put(keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const Keten__ReceivedRecord *rec)
{
    const char *why = received_invalid(rec);
    if (why != NULL) { /* a programming error: never store what cannot be read */
        return keten_err_set(KETEN_ERR_INVALID, "not storing a received record: %s", why);
    }
    return write_record(st, txn, KETEN_DB_MESSAGES, msg_id, KETEN_MSG_ID_BYTES, &rec->base, true);
}

void keten_nodestore_received_free(Keten__ReceivedRecord **rec_p)
{
    if (rec_p == NULL || *rec_p == NULL) {
        return;
    }
    if ((*rec_p)->signal.data != NULL && (*rec_p)->signal.len > 0) {
        sodium_memzero((*rec_p)->signal.data, (*rec_p)->signal.len);
    }
    keten_pb_free((ProtobufCMessage **)(void *)rec_p);
}

keten_err keten_nodestore_received_header(const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const Keten__ReceivedRecord *rec, Keten__Header **out)
{
    return envelope_header(KETEN_DB_MESSAGES, msg_id, rec->envelope.data, rec->envelope.len, out);
}

/* ---- seen -------------------------------------------------------------- */

keten_err keten_nodestore_seen_get(const keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], Keten__SeenRecord **out)
{
    *out = NULL;
    Keten__SeenRecord *r = NULL;
    keten_err e = read_record(st, txn, KETEN_DB_SEEN, msg_id, KETEN_MSG_ID_BYTES,
        &keten__seen_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
        (ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK) {
        return e;
    }
    if (r->envelope_hash.len != KETEN_HASH_BYTES || r->expires_at == 0) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return damaged(KETEN_DB_SEEN, msg_id, KETEN_MSG_ID_BYTES,
            "it holds no expiry time or no 32-byte envelope hash");
    }
    *out = r;
    return KETEN_OK;
}

keten_err keten_nodestore_seen_put(keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint64_t expires_at,
    const uint8_t envelope_hash[static KETEN_HASH_BYTES])
{
    Keten__SeenRecord r = KETEN__SEEN_RECORD__INIT;
    r.expires_at = expires_at;
    r.envelope_hash.data = (uint8_t *)(uintptr_t)envelope_hash;
    r.envelope_hash.len = KETEN_HASH_BYTES;
    return write_record(st, txn, KETEN_DB_SEEN, msg_id, KETEN_MSG_ID_BYTES, &r.base, false);
}

/* ---- checkpoints ------------------------------------------------------- */

keten_err keten_nodestore_checkpoint_get(
    const keten_store *st, MDB_txn *txn, uint64_t size, Keten__CheckpointRecord **out)
{
    *out = NULL;
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(size, key);
    Keten__CheckpointRecord *r = NULL;
    keten_err e = read_record(st, txn, KETEN_DB_CHECKPOINTS, key, sizeof key,
        &keten__checkpoint_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
        (ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK) {
        return e;
    }
    if (r->size != size || r->root.len != KETEN_HASH_BYTES
        || r->directory_hash.len != KETEN_HASH_BYTES || r->note == NULL || r->note[0] == '\0') {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return damaged(KETEN_DB_CHECKPOINTS, key, sizeof key,
            "its size is not its key, or it lacks the note, the root or the directory hash");
    }
    *out = r;
    return KETEN_OK;
}

keten_err keten_nodestore_checkpoint_put(
    keten_store *st, MDB_txn *txn, const Keten__CheckpointRecord *rec)
{
    if (rec->root.len != KETEN_HASH_BYTES || rec->directory_hash.len != KETEN_HASH_BYTES
        || rec->note == NULL || rec->note[0] == '\0') {
        return keten_err_set(KETEN_ERR_INVALID, "not storing an incomplete checkpoint record");
    }
    uint8_t key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(rec->size, key);
    return write_record(st, txn, KETEN_DB_CHECKPOINTS, key, sizeof key, &rec->base, false);
}

/* ---- evidence ---------------------------------------------------------- */

keten_err keten_nodestore_evidence_put(keten_store *st, MDB_txn *txn,
    const uint8_t key[static KETEN_STORE_EVIDENCE_KEY], const char *reason, const uint8_t *frame,
    size_t frame_len)
{
    Keten__EvidenceRecord r = KETEN__EVIDENCE_RECORD__INIT;
    r.reason = (char *)(uintptr_t)reason;
    r.frame.data = (uint8_t *)(uintptr_t)frame;
    r.frame.len = frame_len;
    return write_record(st, txn, KETEN_DB_EVIDENCE, key, KETEN_STORE_EVIDENCE_KEY, &r.base, false);
}

/* ---- alarms ------------------------------------------------------------ */

/* The next code point of valid UTF-8 at p (no overlong form, no
 * surrogate, nothing past U+10FFFF): its length, 0 when invalid. */
static size_t utf8_next(const unsigned char *p, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t n = c < 0x80      ? 1
        : (c & 0xE0) == 0xC0 ? 2
        : (c & 0xF0) == 0xE0 ? 3
        : (c & 0xF8) == 0xF0 ? 4
                             : 0;
    if (n == 0) {
        return 0;
    }
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (p[i] & 0x3Fu);
    }
    static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return 0;
    }
    *cp = v;
    return n;
}

bool keten_nodestore_note_ok(const char *s, char *why, size_t why_size)
{
    if (s == NULL || s[0] == '\0') {
        snprintf(why, why_size, "the note is empty: say what was done (1 to %u characters)",
            KETEN_NODESTORE_NOTE_MAX);
        return false;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    bool text = false;
    while (*p != '\0') {
        uint32_t cp = 0;
        size_t n = utf8_next(p, &cp);
        if (n == 0) {
            snprintf(why, why_size, "the note is not valid UTF-8 (byte %zu)",
                (size_t)(p - (const unsigned char *)s) + 1);
            return false;
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
            snprintf(why, why_size, "the note holds a control character (U+%04X): one line of text",
                (unsigned)cp);
            return false;
        }
        if (++chars > KETEN_NODESTORE_NOTE_MAX) {
            snprintf(
                why, why_size, "the note is longer than %u characters", KETEN_NODESTORE_NOTE_MAX);
            return false;
        }
        text = text || cp != ' ';
        p += n;
    }
    if (!text) {
        snprintf(why, why_size, "the note is only spaces: say what was done");
        return false;
    }
    return true;
}

bool keten_nodestore_by_ok(const char *s)
{
    if (s == NULL) {
        return false;
    }
    size_t n = strlen(s);
    return n >= 1 && n <= KETEN_NODESTORE_BY_MAX
        && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=-") == n;
}

/* What a stored alarm list must hold (nodestore.h); NULL when it does. */
static const char *alarms_invalid(const Keten__NodeAlarms *r)
{
    if (r->n_alarms > KETEN_NODESTORE_ALARMS_KEEP) {
        return "it holds more alarms than are kept";
    }
    bool numbered = r->n_alarms > 0 && r->alarms[0]->id != 0;
    char why[160];
    for (size_t i = 0; i < r->n_alarms; i++) {
        const Keten__NodeAlarm *a = r->alarms[i];
        if (a->kind == NULL || a->kind[0] == '\0') {
            return "an alarm has no kind";
        }
        if (numbered ? a->id == 0 || (i > 0 && a->id <= r->alarms[i - 1]->id) : a->id != 0) {
            return "its alarm numbers are not increasing from 1";
        }
        bool by = a->acknowledged_by != NULL && a->acknowledged_by[0] != '\0';
        bool note = a->note != NULL && a->note[0] != '\0';
        if (a->acknowledged_at == 0) {
            if (by || note) {
                return "an alarm holds who acknowledged it, or a note, without the time";
            }
        } else if (!numbered || !keten_nodestore_by_ok(a->acknowledged_by)
            || !keten_nodestore_note_ok(a->note, why, sizeof why)) {
            return "an acknowledged alarm lacks its number, a valid name of who acknowledged "
                   "it or a valid note";
        }
    }
    return NULL;
}

keten_err keten_nodestore_alarms_get(const keten_store *st, MDB_txn *txn, Keten__NodeAlarms **out)
{
    *out = NULL;
    Keten__NodeAlarms *r = NULL;
    keten_err e = read_record(st, txn, KETEN_DB_STATE, KETEN_NODESTORE_ALARMS_KEY,
        strlen(KETEN_NODESTORE_ALARMS_KEY), &keten__node_alarms__descriptor,
        KETEN_NODESTORE_ALARMS_MAX, (ProtobufCMessage **)(void *)&r);
    if (e == KETEN_ERR_NOT_FOUND) { /* none stored: an empty list */
        keten_err_clear();
        return KETEN_PB_UNPACK(
            keten__node_alarms, NULL, 0, KETEN_NODESTORE_ALARMS_MAX, "alarms", out);
    }
    if (e != KETEN_OK) {
        return e;
    }
    const char *why = alarms_invalid(r);
    if (why != NULL) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return damaged(
            KETEN_DB_STATE, KETEN_NODESTORE_ALARMS_KEY, strlen(KETEN_NODESTORE_ALARMS_KEY), why);
    }
    for (size_t i = 0; i < r->n_alarms; i++) { /* a list from before numbers */
        if (r->alarms[i]->id == 0) {
            r->alarms[i]->id = i + 1;
        }
    }
    *out = r;
    return KETEN_OK;
}

keten_err keten_nodestore_alarms_put(keten_store *st, MDB_txn *txn, const Keten__NodeAlarms *alarms)
{
    const char *why = alarms_invalid(alarms);
    if (why != NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "an alarm list not stored: %s", why);
    }
    return write_record(st, txn, KETEN_DB_STATE, KETEN_NODESTORE_ALARMS_KEY,
        strlen(KETEN_NODESTORE_ALARMS_KEY), &alarms->base, false);
}

/* ---- tokens ------------------------------------------------------------ */

#define TOKEN_ID_CHARS 16
#define TOKEN_NAME_MAX 64
#define TOKEN_SCOPES_ALL 7u
#define TOKEN_NAME_CHARS "abcdefghijklmnopqrstuvwxyz0123456789._-"

static bool token_text_ok(const char *s, size_t min, size_t max, const char *allowed)
{
    if (s == NULL) {
        return false;
    }
    size_t n = strlen(s);
    return n >= min && n <= max && strspn(s, allowed) == n;
}

keten_err keten_nodestore_token_decode(
    const MDB_val *key, const MDB_val *val, Keten__TokenRecord **out)
{
    *out = NULL;
    Keten__TokenRecord *r = NULL;
    keten_err e = keten_nodestore_decode(KETEN_DB_TOKENS, key->mv_data, key->mv_size, val,
        &keten__token_record__descriptor, KETEN_NODESTORE_TOKEN_MAX,
        (ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK) {
        return e;
    }
    const char *why = NULL;
    if (key->mv_size != KETEN_HASH_BYTES || r->token_hash.len != KETEN_HASH_BYTES
        || sodium_memcmp(r->token_hash.data, key->mv_data, KETEN_HASH_BYTES) != 0) {
        why = "its token hash is not its key";
    } else if (!token_text_ok(r->id, TOKEN_ID_CHARS, TOKEN_ID_CHARS, "0123456789abcdef")) {
        why = "its id is not 16 lowercase hex characters";
    } else if (!token_text_ok(r->name, 1, TOKEN_NAME_MAX, TOKEN_NAME_CHARS)) {
        why = "its name is not 1-64 characters [a-z0-9._-]";
    } else if (r->scopes == 0 || (r->scopes & ~TOKEN_SCOPES_ALL) != 0) {
        why = "its scopes are not a non-empty set of read, send, ack";
    } else if (r->created_at == 0) {
        why = "it holds no creation time";
    }
    if (why != NULL) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return damaged(KETEN_DB_TOKENS, key->mv_data, key->mv_size, why);
    }
    *out = r;
    return KETEN_OK;
}

keten_err keten_nodestore_token_get(const keten_store *st, MDB_txn *txn,
    const uint8_t hash[static KETEN_HASH_BYTES], Keten__TokenRecord **out)
{
    *out = NULL;
    MDB_val v;
    keten_err e = keten_store_get(st, txn, KETEN_DB_TOKENS, hash, KETEN_HASH_BYTES, &v);
    if (e != KETEN_OK) {
        return e;
    }
    MDB_val k = { .mv_size = KETEN_HASH_BYTES, .mv_data = (void *)(uintptr_t)hash };
    return keten_nodestore_token_decode(&k, &v, out);
}

keten_err keten_nodestore_token_put(keten_store *st, MDB_txn *txn, const Keten__TokenRecord *rec)
{
    if (rec->token_hash.len != KETEN_HASH_BYTES) {
        return keten_err_set(KETEN_ERR_INVALID, "a token record needs its 32-byte hash");
    }
    return write_record(st, txn, KETEN_DB_TOKENS, rec->token_hash.data, KETEN_HASH_BYTES,
        &rec->base, false);
}

/* ---- idempotency (idem.h checks the content) ---------------------------- */

keten_err keten_nodestore_idem_put(keten_store *st, MDB_txn *txn,
    const uint8_t key[static KETEN_HASH_BYTES], const Keten__IdempotencyRecord *rec)
{
    return write_record(st, txn, KETEN_DB_IDEMPOTENCY, key, KETEN_HASH_BYTES, &rec->base, false);
}

keten_err keten_nodestore_damaged(
    keten_store_db db, const void *key, size_t key_len, const char *why)
{
    return damaged(db, key, key_len, why);
}

/* ---- display ----------------------------------------------------------- */

keten_err keten_nodestore_header_json(const Keten__Header *h, unsigned fields, json_t *obj)
{
    keten_err e = KETEN_OK;
    if (fields & KETEN_HDR_SENDER) {
        e = keten_rec_set(obj, "from", json_string(h->sender != NULL ? h->sender : ""));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(obj, "kind", json_string(keten_policy_kind_name(h->kind)));
    }
    if (e == KETEN_OK && (fields & KETEN_HDR_LABELS)) {
        e = keten_rec_set(obj, "category", json_string(h->category != NULL ? h->category : ""));
        if (e == KETEN_OK) {
            e = keten_rec_set(obj, "purpose", json_string(h->purpose != NULL ? h->purpose : ""));
        }
    }
    if (e == KETEN_OK && (fields & KETEN_HDR_TIMES)) {
        e = keten_rec_set(obj, "created_at", keten_rec_time(h->created_at));
        if (e == KETEN_OK) {
            e = keten_rec_set(obj, "expires_at", keten_rec_time(h->expires_at));
        }
    }
    if (e == KETEN_OK && h->in_reply_to.len == KETEN_MSG_ID_BYTES) {
        e = keten_rec_set(obj, "in_reply_to", keten_rec_hex(h->in_reply_to.data, KETEN_MSG_ID_BYTES));
    }
    return e;
}
