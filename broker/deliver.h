/*
 * deliver.h - store and forward (docs/wire.md "Deliver and receipt"):
 * per-recipient queues with a credit window, receipt batches, notices for
 * senders, expiry, and forgetting msg_ids after the retry horizon.
 * Everything runs in the batch transaction (b->txn); frames are staged in
 * b->out and sent after the commit. Nothing that carries a proof goes to a
 * connection before its Hello was accepted (conns.h): its deliveries and
 * notices wait.
 *
 * Delivery: a connection's queue is read oldest first from just after its
 * cursor, at most `credit` deliveries, and at most BROKER_INFLIGHT_BYTES_MAX
 * envelope bytes in flight (handed out on this connection and not yet
 * answered or expired; when nothing is in flight one delivery goes
 * whatever its size, so a large message is never stuck); the first delivery
 * of a message to a recipient is audited ("delivered", once per recipient,
 * the broker's claim); a new connection starts again at the oldest entry,
 * with nothing in flight, so whatever was in flight on a lost connection is
 * delivered again (a new Hello on the same connection rewinds it, below).
 * A Deliver carries the envelope and the proof of its "submitted" record
 * (a proof slot, outq.h). A delivery the node refuses without a receipt
 * leaf (it returns the credit) keeps its bytes counted until the message
 * expires, the connection is replaced, or it is sent again:
 *
 * Resend on the same connection: when deliveries are in flight on a
 * connection, none has been receipted for DELIVER_RESEND_MS (counted from
 * the last receipt, or from the first delivery handed out with nothing in
 * flight), and the node has returned at least as much credit in Credit
 * frames as there are deliveries in flight (it read them and dropped them:
 * a node whose store commit failed returns the credit of the receipts it
 * could not send), the connection is rewound as a new one would be: its
 * cursor goes back to the oldest queue entry and nothing counts as in
 * flight, so every unanswered message is delivered again, within the
 * credit and the byte budget. That is how a node that could not store
 * deliveries (its disk was full) gets them again without a reconnect. A
 * node that does not read (and so returns no credit) is never sent more
 * than the byte budget: its frames are not resent into a queue it does not
 * drain. Each rewind without a receipt since doubles the wait, up to
 * DELIVER_RESEND_MAX_MS, and halves the connection's byte budget (down to
 * one delivery at a time after DELIVER_RESEND_HALVINGS_MAX rewinds); a
 * receipt that matches a delivery sets both back (a leaf repeating an
 * answer given before does not: a node can repeat an old one at will). A
 * Hello on the connection (deliver_hello()) rewinds it without the wait and
 * without the credit back (a node that held deliveries unopened need not
 * return it), at most once every DELIVER_RESEND_MS after the last rewind:
 * it counts as one. So
 * a node that returns credit for deliveries it never reads gets at most
 * twice the budget, and then one delivery a minute (every
 * DELIVER_RESEND_MS if it says Hello), queued for it in all; an honest
 * node that gets space back stores the next one sent, and its receipt
 * opens the full budget again. The node keeps one copy
 * of a message however often it is sent (msg_id) and receipts a repeated
 * one again; the broker ignores a repeated leaf. "delivered" is audited
 * once.
 *
 * Receipt batches: deliver_receipt_prepare(), on the verifier pool before
 * the batch's transaction, checks the batch against the sending node's
 * current certificate and the network (keten_receipt_batch_verify: one
 * signature, the root over the leaves, every leaf's rules). A batch that
 * does not verify is refused whole: Error BAD_RECEIPT, audited as rejected,
 * nothing of it recorded. Then, in the transaction, each leaf must name a
 * message held for THIS node (its msg_id, the stored envelope hash),
 * handed out to it (delivered, not merely queued) and not answered yet: it
 * gets one record, "receipted" (outcome
 * STORED) or "refused-by-recipient" (outcome REFUSED, the leaf's reason),
 * with the leaf's ReceiptProof (keten_receipt_proof_build), node and
 * recipients = the recipient; the node's queue entry goes either way (a
 * refused message is not delivered again), its in-flight bytes are
 * released, the envelope is deleted once every recipient has answered, and
 * the sender gets a ReceiptNotice. A leaf for a message the node answered
 * before is ignored (counted); any other leaf that does not match is
 * skipped (counted), and a batch with such leaves gets one "rejected"
 * record, reason BAD_RECEIPT, naming the node (no Error frame). Every leaf
 * of a batch returns one credit (a leaf stands for one delivery).
 *
 * Notices (ReceiptNotice, ExpiredNotice) are stored under the sender's id
 * and the leaf index of their audit record, as their kind only: the frame
 * is made when it is sent, with the proof of that record against the tree
 * of the sending batch (outq.h). They stay stored until the sender
 * confirms them with a NoticeAck naming that leaf index
 * (deliver_notice_ack(), in the batch's transaction). Each connection sends
 * them oldest first, at most CONN_NOTICES_IN_FLIGHT unconfirmed at a time,
 * and sends one again when it is still unconfirmed DELIVER_NOTICE_RESEND_MS
 * after it was sent; a new connection (and so a restarted broker) starts
 * again from the oldest unconfirmed one. So a notice survives a broker
 * crash after the commit and a frame sent to a connection that died; the
 * node records notices idempotently. A NoticeAck can delete only notices of
 * the node that sent it; a leaf index it names that is not such a notice is
 * ignored (counted in a metric), never an error.
 *
 * Expiry: at expires_at a message still unanswered by some recipient is
 * audited ("expired", listing them), removed from their queues and deleted;
 * the sender gets an ExpiredNotice.
 */
#ifndef KETEN_BROKER_DELIVER_H
#define KETEN_BROKER_DELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "conns.h"
#include "err.h"
#include "merkle.h"

#define DELIVER_RESEND_MS 15000 /* nothing receipted for this long: deliver again */
#define DELIVER_RESEND_MAX_MS 60000 /* the longest wait between two rewinds */
#define DELIVER_RESEND_HALVINGS_MAX 24 /* 16 MiB >> 24: one delivery at a time */
#define DELIVER_NOTICES_PER_BATCH 256
#define DELIVER_NOTICE_RESEND_MS 10000 /* an unconfirmed notice is sent again after this */
#define DELIVER_NOTICE_ACK_MAX 4096 /* leaf indexes read from one NoticeAck */
#define DELIVER_DETAIL_MAX 200
#define DELIVER_EXPIRE_PER_BATCH 1000
#define DELIVER_PRUNE_PER_BATCH 1000

/* Hand out queued messages to c while it has credit; *budget is the number
 * of bytes this batch may still stage (decreased). */
keten_err deliver_pump(broker *b, conn *c, size_t *budget) KETEN_MUST_CHECK;

/* A Credit frame. */
void deliver_credit(conn *c, uint32_t credit);
/* A Hello on c: the deliveries in flight on it are sent again, as a rewind
 * (above), once the last rewind on c is DELIVER_RESEND_MS ago (at once if
 * there was none); until then they stay in flight. */
void deliver_hello(conn *c);

/* What the pool found out about a receipt batch (no store access, no
 * shared state written: thread-safe). refused == NULL and e == KETEN_OK: it
 * verified; head and leaf_hashes hold what keten_receipt_batch_verify gave. */
typedef struct receipt_prep {
    keten_err e; /* a failure that is not the batch's fault (out of memory) */
    const char *refused; /* why it is refused (points to detail or a static text) */
    char detail[DELIVER_DETAIL_MAX];
    Keten__ReceiptBatchHead *head;
    keten_hash *leaf_hashes;
} receipt_prep;

void deliver_receipt_prepare(
    const broker *b, const conn *c, const Keten__ReceiptBatch *rb, receipt_prep *rp);
void deliver_receipt_prep_clear(receipt_prep *rp);

/* A receipt batch from c, prepared by deliver_receipt_prepare(). */
keten_err deliver_receipts(broker *b, conn *c, uint64_t request_id, const Keten__ReceiptBatch *rb,
    const receipt_prep *rp) KETEN_MUST_CHECK;

/* Send c the notices it has not been sent yet (up to its in-flight cap),
 * and again those unconfirmed for DELIVER_NOTICE_RESEND_MS. */
keten_err deliver_notices(broker *b, conn *c) KETEN_MUST_CHECK;

/* A NoticeAck from c: delete the notices of c's node it names. */
keten_err deliver_notice_ack(broker *b, conn *c, const Keten__NoticeAck *na) KETEN_MUST_CHECK;

/* Expire what is due at b->now; forget msg_ids older than the horizon. */
keten_err deliver_expire(broker *b) KETEN_MUST_CHECK;

#endif
