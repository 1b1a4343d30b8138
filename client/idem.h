/*
 * idem.h - idempotency keys of the send API (docs/integration.md, "Sending
 * once: Idempotency-Key"): a send, a reply or a feedback repeated after a
 * lost answer goes out once.
 *
 * POST /v1/messages and POST /v1/inbox/{msg_id}/reply (reply and feedback)
 * take an optional header Idempotency-Key: 1 to
 * KETEN_IDEM_KEY_MAX characters of [A-Za-z0-9._:-]. The key belongs to its
 * caller (keten_idem_caller(): "token:ID" for an application token, or for
 * a web session opened with one; "person:NAME" for the person a proxy
 * names; "local:uid=N" on the node's Unix socket), so two callers using
 * the same key do not meet.
 *
 * The first send with a key that stores a message writes an
 * IdempotencyRecord (proto/keten.proto): caller, key, the new msg_id, the
 * request's hash (keten_idem_request_hash: the body's SHA-256 for a send;
 * for an answer a hash of its body and the msg_id it answers, which is part
 * of the request) and the time, into the store's `idempotency`
 * table under SHA-256("keten/idempotency/v1" || caller || NUL || key), in
 * the same transaction as the message's outbox and sent records (outbox.h):
 * a crash leaves both or neither. A send refused before anything is stored
 * writes nothing, and may be sent again with the same key. A later send by
 * the same caller with the same key finds the record (keten_idem_find) and
 * is answered with that message: the same request sends nothing new;
 * another body, another message answered, or a send's key used for an
 * answer (or the other way round) is refused (409). A repeated answer is
 * found before the check that a query has no reply yet, so the repeat of a
 * reply is answered as a repeat, not refused as a second reply. A record
 * is kept KETEN_IDEM_KEEP_MS after it was
 * written: older, it is not found, and keten_idem_purge() (the daemon's
 * hourly purge, each going on where the one before stopped) removes it.
 *
 * Every record read is checked after nodestore.h's checksum and canonical
 * check: its caller and key must hash to its table key, its key must be a
 * valid key, its msg_id 16 bytes, its request hash 32 bytes and its time
 * set; a damaged record is KETEN_ERR_MALFORMED naming the table and key,
 * never taken as absent (a send with that key is then refused, not sent
 * again).
 *
 * Growth: one record per message stored with a key (at most
 * KETEN_IDEM_RECORD_MAX bytes each, against the message's own sent record
 * of at least one padded envelope), so a caller adds no more records than
 * messages it sends, and none stays longer than KETEN_IDEM_KEEP_MS plus one
 * purge period.
 *
 * Thread safety: the node's loop thread (node.h). Errors: as nodestore.h;
 * KETEN_ERR_INVALID for a key or caller that is not one.
 */
#ifndef KETEN_NODE_IDEM_H
#define KETEN_NODE_IDEM_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "store.h"

#define KETEN_IDEM_HEADER "Idempotency-Key"
#define KETEN_IDEM_KEY_MAX 64 /* characters of a key */
#define KETEN_IDEM_KEY_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
#define KETEN_IDEM_CALLER_MAX 600 /* bytes of a caller ("person:" + 128 UTF-8 characters) */
#define KETEN_IDEM_KEEP_MS (7ull * KETEN_MS_PER_DAY) /* a record is kept 7 days */
#define KETEN_IDEM_RECORD_MAX 1024u /* bytes of a stored record */
#define KETEN_IDEM_PURGE_CHUNK 5000u /* records looked at in one purge transaction */
#define KETEN_IDEM_PURGE_CHUNKS_MAX 64u /* transactions in one purge; the rest waits */

/* One send's key, as outbox.h writes it with the message. */
typedef struct keten_idem_entry {
    const char *caller; /* keten_idem_caller() */
    const char *key; /* a valid key (keten_idem_key_check) */
    uint8_t request_hash[KETEN_HASH_BYTES]; /* keten_idem_request_hash() */
    uint64_t created_at; /* ms */
} keten_idem_entry;

#define KETEN_IDEM_ANSWER_LABEL "keten/idempotency/answer/v1"

/* The hash kept with a key for a request: for a send (answered NULL) the
 * SHA-256 of its body; for an answer (reply or feedback) to the message
 * answered, SHA-256(KETEN_IDEM_ANSWER_LABEL || body || answered), so that the
 * same body answering another message, or a send's body, is another
 * request. */
void keten_idem_request_hash(const uint8_t *answered, const uint8_t *body, size_t body_len,
    uint8_t out[static KETEN_HASH_BYTES]);

/* Is key (the header's value, NUL-terminated) a valid key? false: why
 * (a line naming the header and what is allowed) in why. */
bool keten_idem_key_check(const char *key, char *why, size_t why_size);

/* The caller a key belongs to, from the request's principal: token_id
 * non-empty: "token:ID"; else on the Unix socket (local) "local:" + peer
 * ("uid=N"); else the actor ("person:NAME"). KETEN_ERR_INVALID when it does
 * not fit out (KETEN_IDEM_CALLER_MAX + 1 bytes). */
keten_err keten_idem_caller(const char *token_id, const char *actor, bool local, const char *peer,
    char out[static KETEN_IDEM_CALLER_MAX + 1]) KETEN_MUST_CHECK;

/* The table key of (caller, key). */
void keten_idem_table_key(
    const char *caller, const char *key, uint8_t out[static KETEN_HASH_BYTES]);

/* The record of (caller, key), if one younger than KETEN_IDEM_KEEP_MS at
 * now_ms is stored: *found, and its msg_id and request hash. Not found is
 * KETEN_OK with *found false. A damaged record: KETEN_ERR_MALFORMED. */
keten_err keten_idem_find(const keten_store *st, MDB_txn *txn, const char *caller, const char *key,
    uint64_t now_ms, bool *found, uint8_t msg_id_out[static KETEN_MSG_ID_BYTES],
    uint8_t request_hash_out[static KETEN_HASH_BYTES]) KETEN_MUST_CHECK;

/* Write the record of entry for msg_id in txn (the send's transaction). */
keten_err keten_idem_put(keten_store *st, MDB_txn *txn, const keten_idem_entry *entry,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES]) KETEN_MUST_CHECK;

/* Read one stored value (a cursor's key and val) with every check above. */
keten_err keten_idem_decode(
    const MDB_val *key, const MDB_val *val, Keten__IdempotencyRecord **out) KETEN_MUST_CHECK;

/* Where a purge stopped, for the next one to go on from (the table is in
 * the order of its hashed keys, not of time). Zero: the table's start. */
typedef struct keten_idem_purge_pos {
    uint8_t from[KETEN_HASH_BYTES]; /* the first key not looked at yet */
    bool started; /* from is set */
} keten_idem_purge_pos;

/* Remove the records older than keep_ms at now_ms, at most chunk looked at
 * per transaction and KETEN_IDEM_PURGE_CHUNKS_MAX transactions; a damaged
 * record is kept (it still stops a second send), counted in *damaged.
 * *removed: how many went. pos (NULL: from the start each time): where the
 * purge starts, and on return where the next one goes on (the start again
 * once the table's end was reached), so that a table holding more records
 * than one purge looks at is still gone through whole, one purge after the
 * other, and an old record is never left behind fresh ones. */
keten_err keten_idem_purge(keten_store *st, uint64_t now_ms, uint64_t keep_ms, size_t chunk,
    keten_idem_purge_pos *pos, size_t *removed, size_t *damaged) KETEN_MUST_CHECK;

#endif
