/*
 * inbox.h - receiving (docs/protocol.md, docs/wire.md "Deliver and
 * receipt"):
 *
 *   1. the delivery's LeafProof must hold against a checkpoint the node
 *      accepted and keeps (witness.h), its record must be the `submitted`
 *      record of exactly the delivered envelope (keten_logproof_record_is_envelope)
 *      and list this node among the recipients. A proof or record that
 *      fails is the alarm bad-proof (frame kept as evidence); a proof
 *      against an unknown tree size is logged. Either way the delivery is
 *      not stored, gets no receipt leaf, and its credit is returned;
 *   2. then it is verified and opened with keten_envelope_open() (signature,
 *      keys hash, this node a recipient, sender's certificate, not expired,
 *      registered category and purpose, the policy re-checked, commitment,
 *      decryption, signal type/purpose = header); one that fails is logged,
 *      counted, and gets a REFUSED leaf with the reason of the failing check;
 *   3. replay memory: a msg_id is remembered (`seen`) until it expires; the
 *      same envelope again gets a STORED leaf again but is not stored twice;
 *      another envelope under a stored msg_id gets a REFUSED leaf
 *      (REASON_DUPLICATE);
 *   4. the message, its inbox entry and its replay entry are committed in
 *      one transaction (part of the daemon's group commit) and it gets a
 *      STORED leaf;
 *   5. then the --on-message hook runs and `inbox --wait` callers are woken.
 *
 * Receipts: keten_inbox_flush_receipts(), called once per group commit
 * before the commit, signs ONE ReceiptBatch head over the leaves of the
 * deliveries handled in it (split above KETEN_RECEIPT_BATCH_MAX) and sends
 * it; the link holds it until the commit is durable (link.h). Each leaf
 * returns one credit at the broker.
 *
 * For testing the crash window between 4 and the receipt, the environment
 * variable KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT=1 makes the daemon kill
 * itself with SIGKILL right before a receipt batch goes to the socket (a
 * test hook: only in a build with -Dtest_hooks=true).
 *
 * Records returned over the API: "public" form {msg_id, from, kind,
 * in_reply_to (if any), received_at (ISO 8601 UTC), signal} (the hook's
 * input), the same with reply_msg_id (a query this node replied to: its
 * reply's msg_id) for `inbox --json`, and the full form of `show` which adds
 * category, purpose, created_at, expires_at, leaf_index, handled. They are
 * built from the stored ReceivedRecord (nodestore.h): the header's fields
 * from its envelope, the signal from its opened Signal; a damaged record is
 * refused (KETEN_ERR_MALFORMED), never shown with defaults.
 */
#ifndef KETEN_NODE_INBOX_H
#define KETEN_NODE_INBOX_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "node.h"

void keten_inbox_on_deliver(keten_node *node, const Keten__Deliver *d);

/* Sign and send (held until the commit is durable) the receipt batch of the
 * deliveries handled since the last call. */
void keten_inbox_flush_receipts(keten_node *node);

/* Messages in arrival order; unhandled only unless all. since_seq: only
 * messages with a larger sequence number. JSON array of public records. */
keten_err keten_inbox_list(keten_node *node, bool all, uint64_t since_seq, json_t **out,
    uint64_t *last_seq) KETEN_MUST_CHECK;

/* Full record of one received message (KETEN_ERR_NOT_FOUND). */
keten_err keten_inbox_show(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    json_t **out) KETEN_MUST_CHECK;

/* The stored record (keten_nodestore_received_free()); KETEN_ERR_NOT_FOUND,
 * KETEN_ERR_MALFORMED (damaged). */
keten_err keten_inbox_record(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    Keten__ReceivedRecord **out) KETEN_MUST_CHECK;

/* The sender of a received message (its header's sender) into out. */
keten_err keten_inbox_sender(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    char *out, size_t size) KETEN_MUST_CHECK;

/* Set "reply_msg_id" in obj (32 lowercase hex) when rec is a query this
 * node replied to (its reply stored with the reply in the outbox, whatever
 * became of it); nothing otherwise. KETEN_ERR_NOMEM. */
keten_err keten_inbox_reply_json(const Keten__ReceivedRecord *rec, json_t *obj) KETEN_MUST_CHECK;

/* Mark handled (the application has dealt with it). */
keten_err keten_inbox_ack(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES]) KETEN_MUST_CHECK;

/* The number of received messages not yet handled (the metric
 * keten_node_inbox_unhandled) is kept in the state table under this key
 * (8 bytes big-endian), changed in the transaction that stores a message
 * and in the one that acknowledges it: nothing else changes the inbox (no
 * message is ever deleted from it; replay entries that expire are another
 * table). */
#define KETEN_INBOX_UNHANDLED_KEY "inbox-unhandled"

/* The count, read in txn. When it is missing (a store made before it was
 * kept) or damaged, the inbox is counted instead (every record read:
 * O(inbox); KETEN_ERR_MALFORMED for a damaged record, as keten_inbox_list). */
keten_err keten_inbox_unhandled(keten_node *node, MDB_txn *txn, uint64_t *out) KETEN_MUST_CHECK;

/* At start: when the count is missing or damaged, count the inbox once and
 * store the count (its own transaction). KETEN_OK when it was there. On an
 * error nothing is stored and keten_inbox_unhandled() goes on counting. */
keten_err keten_inbox_unhandled_init(keten_node *node) KETEN_MUST_CHECK;

/* Forget replay entries of expired messages. */
void keten_inbox_purge_seen(keten_node *node);

#endif
