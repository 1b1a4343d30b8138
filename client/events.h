/*
 * events.h - the node's event log: a durable, ordered record of what
 * happened on the node, for applications that follow it with server-sent
 * events (GET /v1/events) and resume after a disconnect or a restart of
 * the daemon with Last-Event-ID.
 *
 * Storage: the store's table `events` (store.h), key the sequence number
 * (8 bytes big-endian, 1, 2, ...), value an EventRecord (nodestore.h,
 * proto/keten.proto): type, msg_id, time and the fields of its type. The
 * newest number ever given is kept in `state` ("events-last"), so a number
 * is never used twice: not after an aborted transaction, not after a
 * restart, not after a purge that removed every event.
 *
 * Types and their data (the JSON an application reads):
 *   message   a new message is in the inbox:
 *             {"msg_id","kind","from","category"[,"in_reply_to"]}
 *   sent      a sent message's state changed (the state status shows:
 *             "accepted", "rejected", "expired"): {"msg_id","state"}
 *   receipt   a recipient of a sent message answered or the message expired
 *             before it did ("receipted", "refused", "expired"):
 *             {"msg_id","recipient","state"}
 *   handled   a received message was acknowledged: {"msg_id","handled_at"}
 *   alarm-acknowledged  the node's operator acknowledged an alarm (alarm.h):
 *             {"alarm_id","kind","by","note","acknowledged_at"}
 *   reset     (made by keten_events_reset_json, never stored) the asked-for
 *             position is no longer kept: re-list; {"oldest":SEQ}
 * Never content, never a subject, never a summary: only what the inbox list
 * and status show of a message's header and state.
 *
 * Atomicity: keten_events_append() writes in the caller's write
 * transaction, so an event is committed with the change that caused it (in
 * the daemon's group commit: with the batch), or not at all.
 *
 * Retention: the newest KETEN_EVENTS_KEEP_MAX events, none older than
 * KETEN_EVENTS_KEEP_MS; keten_events_purge() (the daemon's periodic purge)
 * removes the rest in transactions of at most KETEN_EVENTS_PURGE_CHUNK.
 *
 * Listener: keten_events_set_listener() registers fn, called on the loop
 * thread after a durable commit that added events (store.h's commit hook),
 * with the newest committed sequence number: never before the events it
 * tells of are durable. fn may read the store (keten_events_read), never
 * write it.
 *
 * Ownership: JSON results are new references (json_decref). Text from
 * keten_events_format_sse() is malloc'd (free).
 * Thread safety: one thread (the daemon's loop), as store.h.
 * Errors: KETEN_ERR_STORE / KETEN_ERR_STORE_FULL (LMDB), KETEN_ERR_MALFORMED
 * (a damaged "events-last"), KETEN_ERR_INVALID (an event without the fields
 * of its type, or JSON that is not an event), KETEN_ERR_NOMEM.
 */
#ifndef KETEN_NODE_EVENTS_H
#define KETEN_NODE_EVENTS_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "node.h"

#define KETEN_EVENTS_KEEP_MAX 100000ull /* events kept: the newest */
#define KETEN_EVENTS_KEEP_MS (30ull * 24 * 3600 * 1000) /* and none older than 30 days */
#define KETEN_EVENTS_PURGE_CHUNK 5000u /* events removed in one transaction */
#define KETEN_EVENTS_PURGE_CHUNKS_MAX 64u /* transactions in one purge; the rest waits */
#define KETEN_EVENTS_READ_MAX 1000u /* events in one keten_events_read() */
#define KETEN_EVENTS_LAST_KEY "events-last"

/* One event to append. Pointers are borrowed for the call. */
typedef struct keten_events_item {
    Keten__EventType type;
    const uint8_t *msg_id; /* KETEN_MSG_ID_BYTES */
    uint64_t time; /* wall ms; 0: now */
    Keten__Kind kind; /* message */
    const char *from; /* message */
    const char *category; /* message */
    const uint8_t *in_reply_to; /* message: KETEN_MSG_ID_BYTES, or NULL */
    Keten__SentState sent_state; /* sent */
    const char *recipient; /* receipt */
    Keten__RecipientState recipient_state; /* receipt */
    uint64_t handled_at; /* handled: wall ms */
    uint64_t alarm_id; /* alarm-acknowledged (msg_id NULL) */
    const char *alarm_kind; /* alarm-acknowledged */
    const char *by; /* alarm-acknowledged */
    const char *note; /* alarm-acknowledged */
} keten_events_item;

/* Append ev in txn (a write transaction of node->store) under the next
 * sequence number (*seq_out, may be NULL). */
keten_err keten_events_append(keten_node *node, MDB_txn *txn, const keten_events_item *ev,
    uint64_t *seq_out) KETEN_MUST_CHECK;

/* The call sites' shorthands: a new inbox message (from its header), a sent
 * message's new state, a recipient's new state, an acknowledgement. */
keten_err keten_events_message(keten_node *node, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const Keten__Header *h) KETEN_MUST_CHECK;
keten_err keten_events_sent(keten_node *node, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], Keten__SentState state) KETEN_MUST_CHECK;
keten_err keten_events_receipt(keten_node *node, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *recipient,
    Keten__RecipientState state) KETEN_MUST_CHECK;
keten_err keten_events_handled(keten_node *node, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint64_t handled_at) KETEN_MUST_CHECK;

/* The events with a sequence number above after_seq, oldest first, at most
 * max (0 or above KETEN_EVENTS_READ_MAX: KETEN_EVENTS_READ_MAX), as a JSON
 * array of {"id":SEQ,"event":TYPE,"data":{...}}; *oldest_kept: the oldest
 * number still kept (*last + 1 when none is); *last: the newest number
 * given (0: none ever). A damaged record is logged, counted
 * (counters.store_errors) and given as a `reset` event under its number.
 * It reads only what is durable, also inside a batch (what the batch
 * appended so far is not given before its commit). */
keten_err keten_events_read(keten_node *node, uint64_t after_seq, size_t max, json_t **events,
    uint64_t *oldest_kept, uint64_t *last) KETEN_MUST_CHECK;

/* Must a follower at after_seq re-list? True when events after it are no
 * longer kept (after_seq + 1 < oldest_kept) or it names a number this node
 * never gave (after_seq > last: another node's or an older store's). */
bool keten_events_need_reset(uint64_t after_seq, uint64_t oldest_kept, uint64_t last);

/* {"id":last,"event":"reset","data":{"oldest":oldest_kept}}: re-list, then
 * follow from last; NULL without memory. */
json_t *keten_events_reset_json(uint64_t oldest_kept, uint64_t last);

/* The wire text of one event: "id: N\nevent: TYPE\ndata: {json}\n\n",
 * the data compact JSON on one line (jansson escapes every control
 * character in a string). KETEN_ERR_INVALID when event is not
 * {"id":N>=0,"event":[a-z]+,"data":{...}}. */
keten_err keten_events_format_sse(const json_t *event, char **text, size_t *len) KETEN_MUST_CHECK;

/* Remove what retention does not keep (see above) as of now_ms (wall).
 * *removed (may be NULL): how many. */
keten_err keten_events_purge(keten_node *node, uint64_t now_ms, size_t *removed) KETEN_MUST_CHECK;
/* The same with other limits (tests): keep at most keep_max events, none
 * older than keep_ms, chunk events per transaction. */
keten_err keten_events_purge_limits(keten_node *node, uint64_t now_ms, uint64_t keep_max,
    uint64_t keep_ms, size_t chunk, size_t *removed) KETEN_MUST_CHECK;

/* Called after a durable commit that added events, with the newest
 * committed sequence number (see above). */
typedef void (*keten_events_listener)(void *ctx, uint64_t newest_seq);
/* Register fn (ctx passed back) for node, replacing any before; fn must not
 * be NULL. */
keten_err keten_events_set_listener(
    keten_node *node, keten_events_listener fn, void *ctx) KETEN_MUST_CHECK;
/* Remove the listener and free what it held; call it before node->store is
 * destroyed. Accepts a node without one. */
void keten_events_clear_listener(keten_node *node);

#endif
