/*
 * nodestore.h - the records of the node's store (store.h): protobuf
 * messages of proto/keten.proto, section "Node store", one per table:
 *
 *   sent          msg_id -> SentRecord (state, the envelope while queued,
 *                 then its hash and header, proof, refusal, recipients,
 *                 replies)
 *   messages      msg_id -> ReceivedRecord (the envelope once, the opened
 *                 signal, received_at, leaf index, handled, the reply to a query)
 *   seen          msg_id -> SeenRecord (expires_at, envelope hash)
 *   checkpoints   tree size -> CheckpointRecord
 *   evidence      time || counter -> EvidenceRecord
 *   state         "alarms" -> NodeAlarms (with their acknowledgements)
 *   events        sequence -> EventRecord (events.h)
 *   tokens        SHA-256 of a token -> TokenRecord (auth.h)
 *   idempotency   SHA-256 of (caller, key) -> IdempotencyRecord (idem.h)
 *
 * Every value is a StoredRecord: the serialized record and a BLAKE2b-128
 * checksum over the table's name, the key and the record, so that a
 * truncated or flipped value, or one moved under another key, is caught
 * even where the protobuf would still parse. Writers pack with
 * keten_pb_pack(); readers check the checksum, parse with a size cap and
 * the canonical check, then check what the record itself must hold (msg_id
 * equal to the key, known states, 32-byte hashes, the envelope while
 * queued, the header after; a received message's envelope and signal, its
 * reply's msg_id empty or 16 bytes). A record that fails any of it is refused with
 * KETEN_ERR_MALFORMED naming the table and the key: never read as defaults.
 * What the envelope's header says is read from it: one place parses a
 * header for display (keten_nodestore_header_json, the field list spelled
 * once).
 *
 * Ownership: records returned in *out are freed with the matching _free()
 * (ReceivedRecord: its signal bytes, the decrypted content, are wiped
 * first). Buffers packed for writing are wiped when they hold a signal.
 * Thread safety: as store.h (one thread).
 * Errors: KETEN_ERR_NOT_FOUND (no such key), KETEN_ERR_MALFORMED (a damaged
 * record), KETEN_ERR_STORE / KETEN_ERR_STORE_FULL (LMDB), KETEN_ERR_NOMEM.
 */
#ifndef KETEN_NODE_NODESTORE_H
#define KETEN_NODE_NODESTORE_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "store.h"

/* Size caps of stored records. */
#define KETEN_NODESTORE_SENT_MAX (KETEN_ENVELOPE_MAX + (256u << 10))
#define KETEN_NODESTORE_RECEIVED_MAX (2u * KETEN_ENVELOPE_MAX + (64u << 10))
#define KETEN_NODESTORE_SMALL_MAX (256u << 10) /* seen, alarms, checkpoints */
#define KETEN_NODESTORE_EVIDENCE_MAX (KETEN_FRAME_MAX + 4096u)
#define KETEN_NODESTORE_ALARMS_KEY "alarms"
/* The alarm list: 256 alarms with their detail, kind, acknowledgement and
 * note (up to 800 bytes of UTF-8) stay well under it. */
#define KETEN_NODESTORE_ALARMS_MAX (512u << 10)
#define KETEN_NODESTORE_ALARMS_KEEP 256u /* most alarms in the list */
#define KETEN_NODESTORE_NOTE_MAX 200u /* characters of an acknowledgement's note */
#define KETEN_NODESTORE_BY_MAX 64u /* bytes of who acknowledged */

/* Fields of keten_nodestore_header_json(). */
#define KETEN_HDR_SENDER 1u /* "from" */
#define KETEN_HDR_LABELS 2u /* "category", "purpose" */
#define KETEN_HDR_TIMES 4u /* "created_at", "expires_at" (ISO 8601 UTC) */
#define KETEN_HDR_ALL (KETEN_HDR_SENDER | KETEN_HDR_LABELS | KETEN_HDR_TIMES)

/* Parse a stored value of table db under key as desc (cap max); damaged:
 * KETEN_ERR_MALFORMED naming the table and key. For cursors. */
keten_err keten_nodestore_decode(keten_store_db db, const void *key, size_t key_len,
    const MDB_val *val, const ProtobufCMessageDescriptor *desc, size_t max,
    ProtobufCMessage **out) KETEN_MUST_CHECK;

/* sent */
keten_err keten_nodestore_sent_get(const keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], Keten__SentRecord **out) KETEN_MUST_CHECK;
keten_err keten_nodestore_sent_put(
    keten_store *st, MDB_txn *txn, const Keten__SentRecord *rec) KETEN_MUST_CHECK;
void keten_nodestore_sent_free(Keten__SentRecord **rec_p);
/* The header of a sent message (from its envelope while queued). */
keten_err keten_nodestore_sent_header(
    const Keten__SentRecord *rec, Keten__Header **out) KETEN_MUST_CHECK;
/* "pending", "accepted", "rejected", "expired" (the API's names). */
const char *keten_nodestore_sent_state_name(Keten__SentState s);
/* "pending", "accepted", "receipted", "refused", "expired". */
const char *keten_nodestore_recipient_state_name(Keten__RecipientState s);

/* messages (received) */
keten_err keten_nodestore_received_get(const keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    Keten__ReceivedRecord **out) KETEN_MUST_CHECK;
keten_err keten_nodestore_received_put(keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const Keten__ReceivedRecord *rec) KETEN_MUST_CHECK;
void keten_nodestore_received_free(Keten__ReceivedRecord **rec_p);
/* The header of a received message's envelope; its msg_id must be the key. */
keten_err keten_nodestore_received_header(const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const Keten__ReceivedRecord *rec, Keten__Header **out) KETEN_MUST_CHECK;

/* seen */
keten_err keten_nodestore_seen_get(const keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], Keten__SeenRecord **out) KETEN_MUST_CHECK;
keten_err keten_nodestore_seen_put(keten_store *st, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint64_t expires_at,
    const uint8_t envelope_hash[static KETEN_HASH_BYTES]) KETEN_MUST_CHECK;

/* checkpoints */
keten_err keten_nodestore_checkpoint_get(const keten_store *st, MDB_txn *txn, uint64_t size,
    Keten__CheckpointRecord **out) KETEN_MUST_CHECK;
keten_err keten_nodestore_checkpoint_put(
    keten_store *st, MDB_txn *txn, const Keten__CheckpointRecord *rec) KETEN_MUST_CHECK;

/* evidence: key is time (ms) || counter, 8 bytes big-endian each. */
keten_err keten_nodestore_evidence_put(keten_store *st, MDB_txn *txn,
    const uint8_t key[static KETEN_STORE_EVIDENCE_KEY], const char *reason,
    const uint8_t *frame, size_t frame_len) KETEN_MUST_CHECK;

/* state "alarms": an empty list when none is stored. A list is refused as
 * damaged unless it holds at most KETEN_NODESTORE_ALARMS_KEEP alarms, each
 * with a kind; their ids all 0 (a list stored before alarms had numbers:
 * they are given 1, 2, ... in order as read) or all increasing from 1; and
 * each alarm either not acknowledged (acknowledged_at 0, no by, no note) or
 * acknowledged with a time, a valid by and a valid note (below): a damaged
 * record is never read as acknowledged. */
keten_err keten_nodestore_alarms_get(
    const keten_store *st, MDB_txn *txn, Keten__NodeAlarms **out) KETEN_MUST_CHECK;
keten_err keten_nodestore_alarms_put(
    keten_store *st, MDB_txn *txn, const Keten__NodeAlarms *alarms) KETEN_MUST_CHECK;
/* Is s an acknowledgement's note: 1 to KETEN_NODESTORE_NOTE_MAX characters
 * of valid UTF-8, no control character, not only spaces? why: what is wrong. */
bool keten_nodestore_note_ok(const char *s, char *why, size_t why_size);
/* Is s who acknowledged: 1 to KETEN_NODESTORE_BY_MAX of [A-Za-z0-9._=-]? */
bool keten_nodestore_by_ok(const char *s);

/* events: key is the sequence number (8, big-endian). A record read must
 * have a known type, a 16-byte msg_id (none for alarm-acknowledged) and
 * the fields of its type (a message: kind and sender; sent: a state past
 * queued; receipt: recipient and an answered or expired state; handled: its
 * time; alarm-acknowledged: the alarm's id and kind, a valid by and note). */
keten_err keten_nodestore_event_put(
    keten_store *st, MDB_txn *txn, uint64_t seq, const Keten__EventRecord *rec) KETEN_MUST_CHECK;
keten_err keten_nodestore_event_decode(
    uint64_t seq, const MDB_val *val, Keten__EventRecord **out) KETEN_MUST_CHECK;
/* tokens: key = SHA-256 of the token's text. A record is refused as
 * damaged unless its token_hash equals the key, its id is 16 lowercase hex
 * characters, its name 1-64 of [a-z0-9._-], its scopes a non-empty subset
 * of read/send/ack and created_at set. */
#define KETEN_NODESTORE_TOKEN_MAX 1024u
keten_err keten_nodestore_token_get(const keten_store *st, MDB_txn *txn,
    const uint8_t hash[static KETEN_HASH_BYTES], Keten__TokenRecord **out) KETEN_MUST_CHECK;
/* The same checks on a value read with a cursor (key, val). */
keten_err keten_nodestore_token_decode(
    const MDB_val *key, const MDB_val *val, Keten__TokenRecord **out) KETEN_MUST_CHECK;
keten_err keten_nodestore_token_put(
    keten_store *st, MDB_txn *txn, const Keten__TokenRecord *rec) KETEN_MUST_CHECK;

/* idempotency: key = SHA-256 of (caller, key) (idem.h, which checks what
 * the record holds). Writes rec under key, with the checksum. */
keten_err keten_nodestore_idem_put(keten_store *st, MDB_txn *txn,
    const uint8_t key[static KETEN_HASH_BYTES],
    const Keten__IdempotencyRecord *rec) KETEN_MUST_CHECK;

/* KETEN_ERR_MALFORMED saying the record of db under key is damaged (why),
 * for the checks a table's own module makes after keten_nodestore_decode. */
keten_err keten_nodestore_damaged(
    keten_store_db db, const void *key, size_t key_len, const char *why) KETEN_MUST_CHECK;

/* Add the header's fields to obj for display: "kind" and "in_reply_to"
 * (hex, when set) always, and those of fields (KETEN_HDR_*). */
keten_err keten_nodestore_header_json(
    const Keten__Header *h, unsigned fields, json_t *obj) KETEN_MUST_CHECK;

/* Free any record of this module; accepts NULL. */
void keten_nodestore_free(ProtobufCMessage **msg_p);

#endif
