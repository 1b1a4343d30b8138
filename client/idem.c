/* idem - see idem.h. */
#include "idem.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodestore.h"
#include "pb.h"
#include "sha256.h"

#define TABLE_KEY_LABEL "keten/idempotency/v1"

bool keten_idem_key_check(const char *key, char *why, size_t why_size)
{
    size_t n = key != NULL ? strlen(key) : 0;
    if (n == 0 || n > KETEN_IDEM_KEY_MAX) {
        snprintf(why, why_size,
            "the header " KETEN_IDEM_HEADER " must be 1 to %d characters [A-Za-z0-9._:-] (it has "
            "%zu)",
            KETEN_IDEM_KEY_MAX, n);
        return false;
    }
    size_t ok = strspn(key, KETEN_IDEM_KEY_CHARS);
    if (ok != n) {
        unsigned char c = (unsigned char)key[ok];
        if (c >= 0x21 && c < 0x7f) {
            snprintf(why, why_size,
                "the header " KETEN_IDEM_HEADER " has the character '%c' at position %zu; a key is "
                "1 to %d characters [A-Za-z0-9._:-]",
                (char)c, ok + 1, KETEN_IDEM_KEY_MAX);
        } else {
            snprintf(why, why_size,
                "the header " KETEN_IDEM_HEADER " has the byte 0x%02x at position %zu; a key is 1 "
                "to %d characters [A-Za-z0-9._:-]",
                c, ok + 1, KETEN_IDEM_KEY_MAX);
        }
        return false;
    }
    return true;
}

keten_err keten_idem_caller(const char *token_id, const char *actor, bool local, const char *peer,
    char out[static KETEN_IDEM_CALLER_MAX + 1])
{
    int n;
    out[0] = '\0';
    if (token_id != NULL && token_id[0] != '\0') {
        n = snprintf(out, KETEN_IDEM_CALLER_MAX + 1, "token:%s", token_id);
    } else if (local) {
        n = snprintf(out, KETEN_IDEM_CALLER_MAX + 1, "local:%s", peer != NULL ? peer : "");
    } else if (actor != NULL && strncmp(actor, "person:", 7) == 0 && actor[7] != '\0') {
        n = snprintf(out, KETEN_IDEM_CALLER_MAX + 1, "%s", actor);
    } else {
        return keten_err_set(KETEN_ERR_INVALID,
            "this caller has no identity an " KETEN_IDEM_HEADER " can belong to");
    }
    if (n < 0 || n > KETEN_IDEM_CALLER_MAX) {
        out[0] = '\0';
        return keten_err_set(
            KETEN_ERR_INVALID, "a caller's name longer than %d bytes", KETEN_IDEM_CALLER_MAX);
    }
    return KETEN_OK;
}

void keten_idem_request_hash(const uint8_t *answered, const uint8_t *body, size_t body_len,
    uint8_t out[static KETEN_HASH_BYTES])
{
    static const uint8_t empty[1] = { 0 };
    if (body == NULL) {
        body = empty;
        body_len = 0;
    }
    if (answered == NULL) {
        keten_sha256(out, body, body_len);
        return;
    }
    keten_sha256_state st;
    keten_sha256_init(&st);
    keten_sha256_update(&st, KETEN_IDEM_ANSWER_LABEL, strlen(KETEN_IDEM_ANSWER_LABEL));
    keten_sha256_update(&st, body, body_len);
    keten_sha256_update(&st, answered, KETEN_MSG_ID_BYTES);
    keten_sha256_final(&st, out);
}

void keten_idem_table_key(const char *caller, const char *key, uint8_t out[static KETEN_HASH_BYTES])
{
    keten_sha256_state st;
    keten_sha256_init(&st);
    keten_sha256_update(&st, TABLE_KEY_LABEL, strlen(TABLE_KEY_LABEL));
    keten_sha256_update(&st, caller, strlen(caller) + 1); /* with its NUL */
    keten_sha256_update(&st, key, strlen(key));
    keten_sha256_final(&st, out);
}

/* What a record must hold under table key k; NULL when it does. */
static const char *record_invalid(const Keten__IdempotencyRecord *r, const uint8_t *k, size_t k_len)
{
    char why[200];
    if (r->caller == NULL || r->caller[0] == '\0' || strlen(r->caller) > KETEN_IDEM_CALLER_MAX) {
        return "its caller is empty or too long";
    }
    if (!keten_idem_key_check(r->key, why, sizeof why)) {
        return "its key is not 1-64 characters [A-Za-z0-9._:-]";
    }
    uint8_t want[KETEN_HASH_BYTES];
    keten_idem_table_key(r->caller, r->key, want);
    if (k_len != KETEN_HASH_BYTES || sodium_memcmp(want, k, KETEN_HASH_BYTES) != 0) {
        return "its caller and key are not those of its table key";
    }
    if (r->msg_id.len != KETEN_MSG_ID_BYTES) {
        return "its msg_id is not 16 bytes";
    }
    if (r->request_hash.len != KETEN_HASH_BYTES) {
        return "its request hash is not 32 bytes";
    }
    if (r->created_at == 0) {
        return "it holds no creation time";
    }
    return NULL;
}

keten_err keten_idem_decode(const MDB_val *key, const MDB_val *val, Keten__IdempotencyRecord **out)
{
    *out = NULL;
    Keten__IdempotencyRecord *r = NULL;
    keten_err e = keten_nodestore_decode(KETEN_DB_IDEMPOTENCY, key->mv_data, key->mv_size, val,
        &keten__idempotency_record__descriptor, KETEN_IDEM_RECORD_MAX,
        (ProtobufCMessage **)(void *)&r);
    if (e != KETEN_OK) {
        return e;
    }
    const char *why = record_invalid(r, key->mv_data, key->mv_size);
    if (why != NULL) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return keten_nodestore_damaged(KETEN_DB_IDEMPOTENCY, key->mv_data, key->mv_size, why);
    }
    *out = r;
    return KETEN_OK;
}

keten_err keten_idem_find(const keten_store *st, MDB_txn *txn, const char *caller, const char *key,
    uint64_t now_ms, bool *found, uint8_t msg_id_out[static KETEN_MSG_ID_BYTES],
    uint8_t request_hash_out[static KETEN_HASH_BYTES])
{
    *found = false;
    uint8_t k[KETEN_HASH_BYTES];
    keten_idem_table_key(caller, key, k);
    MDB_val v;
    keten_err e = keten_store_get(st, txn, KETEN_DB_IDEMPOTENCY, k, sizeof k, &v);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK;
    }
    if (e != KETEN_OK) {
        return e;
    }
    MDB_val mk = { .mv_size = sizeof k, .mv_data = k };
    Keten__IdempotencyRecord *r = NULL;
    e = keten_idem_decode(&mk, &v, &r);
    if (e != KETEN_OK) {
        return e;
    }
    /* The table key is a hash: the record must name this very caller and key. */
    if (strcmp(r->caller, caller) != 0 || strcmp(r->key, key) != 0) {
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        return keten_nodestore_damaged(
            KETEN_DB_IDEMPOTENCY, k, sizeof k, "it names another caller or key");
    }
    if (r->created_at > now_ms || now_ms - r->created_at < KETEN_IDEM_KEEP_MS) {
        *found = true;
        memcpy(msg_id_out, r->msg_id.data, KETEN_MSG_ID_BYTES);
        memcpy(request_hash_out, r->request_hash.data, KETEN_HASH_BYTES);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    return KETEN_OK;
}

keten_err keten_idem_put(keten_store *st, MDB_txn *txn, const keten_idem_entry *entry,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    char why[200];
    if (entry->caller == NULL || entry->caller[0] == '\0'
        || strlen(entry->caller) > KETEN_IDEM_CALLER_MAX
        || !keten_idem_key_check(entry->key, why, sizeof why) || entry->created_at == 0) {
        return keten_err_set(
            KETEN_ERR_INVALID, "not storing an idempotency record without a caller, key or time");
    }
    Keten__IdempotencyRecord r = KETEN__IDEMPOTENCY_RECORD__INIT;
    r.caller = (char *)(uintptr_t)entry->caller;
    r.key = (char *)(uintptr_t)entry->key;
    r.msg_id.data = (uint8_t *)(uintptr_t)msg_id;
    r.msg_id.len = KETEN_MSG_ID_BYTES;
    r.request_hash.data = (uint8_t *)(uintptr_t)entry->request_hash;
    r.request_hash.len = KETEN_HASH_BYTES;
    r.created_at = entry->created_at;
    uint8_t k[KETEN_HASH_BYTES];
    keten_idem_table_key(entry->caller, entry->key, k);
    return keten_nodestore_idem_put(st, txn, k, &r);
}

/* One purge transaction: look at up to chunk records from the first key at
 * or after from (from_len 0: the start), remove the old ones. *next: where
 * the next chunk starts (*more false: the table's end was reached). */
static keten_err purge_chunk(keten_store *st, uint64_t cutoff, size_t chunk,
    uint8_t from[static KETEN_HASH_BYTES], bool *started, size_t *removed, size_t *damaged,
    bool *more)
{
    *more = false;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    size_t n_removed = 0;
    keten_err e = keten_store_begin(st, true, &txn);
    if (e == KETEN_OK) {
        int rc = mdb_cursor_open(txn, keten_store_dbi(st, KETEN_DB_IDEMPOTENCY), &cur);
        if (rc != 0) {
            e = keten_err_set(
                KETEN_ERR_STORE, "opening a cursor on the idempotency keys: %s", mdb_strerror(rc));
        }
    }
    MDB_val k = { .mv_size = KETEN_HASH_BYTES, .mv_data = from }, v;
    int rc = MDB_NOTFOUND;
    if (e == KETEN_OK) {
        rc = *started ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                      : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    size_t looked = 0;
    while (e == KETEN_OK && rc == 0) {
        if (looked == chunk) {
            /* The next chunk starts here. */
            if (k.mv_size == KETEN_HASH_BYTES) {
                memcpy(from, k.mv_data, KETEN_HASH_BYTES);
                *started = true;
                *more = true;
            }
            break;
        }
        looked++;
        Keten__IdempotencyRecord *r = NULL;
        keten_err de = keten_idem_decode(&k, &v, &r);
        if (de == KETEN_ERR_NOMEM) {
            e = de;
            break;
        }
        bool drop = false;
        if (de != KETEN_OK) {
            /* Kept: a send with its key is refused rather than sent twice. */
            (*damaged)++;
            keten_err_clear();
        } else {
            drop = r->created_at < cutoff;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        if (drop) {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0) {
                break;
            }
            n_removed++;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (e == KETEN_OK && rc != 0 && rc != MDB_NOTFOUND) {
        e = keten_err_set(KETEN_ERR_STORE, "purging the idempotency keys: %s", mdb_strerror(rc));
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (e == KETEN_OK && n_removed > 0) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        *more = false;
        return e;
    }
    *removed += n_removed;
    return KETEN_OK;
}

keten_err keten_idem_purge(keten_store *st, uint64_t now_ms, uint64_t keep_ms, size_t chunk,
    keten_idem_purge_pos *pos, size_t *removed, size_t *damaged)
{
    *removed = 0;
    *damaged = 0;
    if (chunk == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "an idempotency purge chunk of 0");
    }
    const uint64_t cutoff = now_ms > keep_ms ? now_ms - keep_ms : 0;
    keten_idem_purge_pos here = { .started = false };
    if (pos != NULL) {
        here = *pos;
    }
    bool more = true;
    keten_err e = KETEN_OK;
    for (unsigned i = 0; more && e == KETEN_OK && i < KETEN_IDEM_PURGE_CHUNKS_MAX; i++) {
        e = purge_chunk(st, cutoff, chunk, here.from, &here.started, removed, damaged, &more);
    }
    if (pos != NULL) {
        if (e != KETEN_OK || !more) { /* the end reached (or a failure): the start next */
            memset(pos, 0, sizeof *pos);
        } else { /* the budget spent: on from here next time */
            *pos = here;
        }
    }
    return e;
}
