/*
 * outbox.h - sending (docs/protocol.md, docs/wire.md "Submit"):
 *
 *   1. fail closed first (keten_dirs_send_ok), parse and check the signal
 *      JSON, resolve the parties, check the sharing policy for every
 *      recipient (refused early, naming the deciding rule);
 *   2. seal (created now, expiring after 7 days or the directory's
 *      max_message_lifetime if that is shorter);
 *   3. commit the envelope to the outbox and its record to `sent` in one
 *      durable transaction, and only then submit it;
 *   4. resend every unacknowledged envelope, the same bytes under the same
 *      msg_id, after each (re)connection (so also after a restart), and,
 *      while connected, every KETEN_NODE_RESEND_MS those older than that;
 *      a pass over a large outbox goes in batches, one per main-loop round,
 *      pausing when libzmq's send queue is full.
 *
 * An ack (SubmitAck, or a DUPLICATE refusal carrying the original's proof)
 * is a LeafProof of the message's `submitted` record. The message is
 * accepted only when the proof holds against a checkpoint the node accepted
 * and keeps (witness.h), the record names a msg_id of this node's outbox
 * (found by the record's msg_id, never by leaf index or request id alone),
 * the submit the ack answers (request_id) was of that msg_id, the record's
 * sender is this node, and keten_logproof_record_is_envelope() holds for the stored
 * envelope. A proof against an unknown tree size is ignored (logged,
 * counted): the message stays in the outbox and is resent, and the resend's
 * DUPLICATE carries a fresh proof. Anything else that fails is the alarm
 * bad-proof, the frame kept as evidence, nothing recorded.
 * A refusal is final except STORE_FULL and DIRECTORY_STALE, after which the
 * envelope stays in the outbox and is resent. A final refusal is recorded
 * (state refused, with the broker's reason, rule, detail and the leaf and
 * tree size of its proof) only when its Error carries the proof of the
 * message's `rejected` record (keten_outbox_refusal_check()) against a
 * checkpoint the node keeps. Without a proof, or against an unknown
 * checkpoint, it is not recorded: the message stays queued with the
 * broker's reason and detail (status shows them), is resent at the resend
 * pace, and the first such refusal of each reason is logged and counted
 * (refusals_unproven). A proof of another record is the alarm bad-proof
 * (evidence kept, nothing recorded). A proven refusal of a message proven
 * accepted, or an ack or notice proven for a message proven refused, is the
 * log holding both: the alarm bad-proof, the recorded state unchanged.
 * Notices: a ReceiptNotice proves a receipted or refused-by-recipient record
 * of one of this node's messages; its ReceiptProof must verify with the
 * recipient's certificate (current or superseded), name the msg_id and the
 * sent envelope hash, and its outcome must match the event: the recipient's
 * state becomes "receipted" (receipted_at: the batch head's stored_at) or
 * "refused" (reason). An
 * ExpiredNotice proves an expired record; the recipients it lists become
 * "expired". A notice that fails is the alarm bad-proof (evidence kept, not
 * recorded, not confirmed). Each recorded notice is confirmed to the broker
 * (NoticeAck with its leaf index, several per frame, sent by
 * keten_outbox_tick()) once it is durably recorded, or was recorded before;
 * the broker sends an unconfirmed notice again, so one that failed for a
 * passing reason (store, unknown checkpoint) is simply not confirmed.
 */
#ifndef KETEN_NODE_OUTBOX_H
#define KETEN_NODE_OUTBOX_H

#include <lmdb.h>

#include "err.h"
#include "idem.h"
#include "keten.h"
#include "node.h"
#include "signal_json.h"

typedef struct keten_outbox_send_req {
    const char *to; /* parties (node ids, role:NAME, *), comma-separated */
    Keten__Kind kind;
    const char *json; /* the signal as JSON (docs/protocol.md, "Signal") */
    size_t json_len;
    const uint8_t *in_reply_to; /* NULL or KETEN_MSG_ID_BYTES */
    /* NULL, or where keten_outbox_send() writes the number of the policy
     * rule that refused the message when it returns KETEN_ERR_POLICY (0: no
     * rule allows it, the default deny) */
    uint32_t *refused_rule;
    const keten_idem_entry *idem; /* NULL, or the Idempotency-Key record to write with it */
} keten_outbox_send_req;

/* Seal, store durably, submit. msg_id_out receives the new msg_id. With
 * req->idem, its record (idem.h) is written in the same transaction as the
 * outbox and sent records: both are stored, or neither. */
keten_err keten_outbox_send(keten_node *node, const keten_outbox_send_req *req,
    uint8_t msg_id_out[static KETEN_MSG_ID_BYTES]) KETEN_MUST_CHECK;

/* The checks of keten_outbox_send before it seals, all of them, for a dry
 * run: the node may send (path "node"), the signal against the installed
 * directory (keten_signal_json_validate), the parties (path "to": each party
 * that names no current node is one problem, and the recipients the others
 * name are still checked) and the sharing policy for each recipient (path
 * "to", the refusal naming the rule). A request whose own problems the
 * caller has already listed checks what it can: req->to NULL skips the
 * parties and the policy, req->json NULL the signal and the policy,
 * req->kind KETEN__KIND__KIND_UNSPECIFIED the policy. Every problem is appended to *problems (zero-initialised by the
 * caller, keten_signal_json_problems_clear() after). Nothing is sealed or
 * stored. KETEN_OK when there is none; else the first problem's error. */
keten_err keten_outbox_check(keten_node *node, const keten_outbox_send_req *req,
    keten_signal_json_problems *problems) KETEN_MUST_CHECK;

/* Start a pass that resubmits every envelope in the outbox. Called right
 * after a Hello (on connect, and after a refusal "send Hello first"): an
 * Error without msg_id to a request sent before it is then ignored
 * (keten_outbox_on_error()), its message being in this pass. */
void keten_outbox_submit_all(keten_node *node);

/* Continue a resend pass; start the periodic one (while connected). */
void keten_outbox_tick(keten_node *node);

void keten_outbox_on_ack(keten_node *node, uint64_t request_id, const Keten__SubmitAck *ack);
void keten_outbox_on_error(keten_node *node, uint64_t request_id, const Keten__Error *err);
void keten_outbox_on_receipt_notice(keten_node *node, const Keten__ReceiptNotice *n);
void keten_outbox_on_expired(keten_node *node, const Keten__ExpiredNotice *n);

/* Inside the inbox's transaction: a reply to one of our queries arrived. */
keten_err keten_outbox_note_reply(keten_node *node, MDB_txn *txn,
    const uint8_t query_id[static KETEN_MSG_ID_BYTES], const char *from,
    const uint8_t reply_id[static KETEN_MSG_ID_BYTES], uint64_t received_at) KETEN_MUST_CHECK;

/* The stored record of a sent message (keten_nodestore_sent_free());
 * KETEN_ERR_NOT_FOUND, KETEN_ERR_MALFORMED (damaged). */
keten_err keten_outbox_record(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    Keten__SentRecord **out) KETEN_MUST_CHECK;

/* Does ar, the record proven by the final refusal err, say that refusal?
 * A rejected record naming err's msg_id (and, when asked is not NULL, the
 * msg_id of the submit the refusal answers), of sender me, with err's
 * reason and, for POLICY, its rule. KETEN_ERR_INCONSISTENT (with a detail
 * saying which) when not. */
keten_err keten_outbox_refusal_check(const char *me, const Keten__Error *err,
    const Keten__AuditRecord *ar, const uint8_t *asked) KETEN_MUST_CHECK;
/* "POLICY" for REASON_POLICY, etc. */
const char *keten_outbox_reason_name(Keten__Reason reason);

#endif
