/*
 * inbox.h - receiving (DESIGN section 4, docs/wire.md "Deliver and
 * receipt"):
 *
 *   1. every delivery is verified and opened with keten_envelope_open()
 *      (signature, keys hash, this node a recipient, sender's certificate,
 *      not expired, registered category and purpose, the policy re-checked,
 *      commitment, decryption, signal type/purpose = header); a delivery that
 *      fails is logged and counted, not receipted, and its credit returned;
 *   2. replay memory: a msg_id is remembered (`seen`) until it expires; the
 *      same envelope again is receipted again but not stored twice; another
 *      envelope under a stored msg_id is refused and logged;
 *   3. the message, its inbox entry, its replay entry and its pending
 *      inclusion check are committed in one durable transaction, and only then
 *      is the receipt signed and sent;
 *   4. then the --on-message hook runs and `inbox --wait` callers are woken.
 *
 * For testing the crash window between 3 and the receipt, the environment
 * variable KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT=1 makes the daemon kill
 * itself with SIGKILL right after the commit of the first new message.
 *
 * Records returned over the API: "public" form {msg_id, from, kind,
 * received_at (ISO 8601 UTC), in_reply_to (if any), signal} (DESIGN section
 * 8, `inbox --json`), and the full form of `show` which adds category,
 * purpose, created_at, expires_at, leaf_index, handled.
 */
#ifndef KETEN_NODE_INBOX_H
#define KETEN_NODE_INBOX_H

#include <jansson.h>
#include <stdbool.h>

#include "err.h"
#include "keten.h"
#include "node.h"

void keten_inbox_on_deliver(keten_node *node, const Keten__Deliver *d);

/* Messages in arrival order; unhandled only unless all. since_seq: only
 * messages with a larger sequence number. JSON array of public records. */
keten_err keten_inbox_list(keten_node *node, bool all, uint64_t since_seq, json_t **out,
    uint64_t *last_seq) KETEN_MUST_CHECK;

/* Full record of one received message (KETEN_ERR_NOT_FOUND). */
keten_err keten_inbox_show(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    json_t **out) KETEN_MUST_CHECK;

/* The stored record (internal form). */
keten_err keten_inbox_record(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    json_t **out) KETEN_MUST_CHECK;

/* Mark handled (the application has dealt with it). */
keten_err keten_inbox_ack(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES]) KETEN_MUST_CHECK;

/* Forget replay entries of expired messages. */
void keten_inbox_purge_seen(keten_node *node);

#endif
