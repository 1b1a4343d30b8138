/*
 * deliver.h - store and forward (DESIGN section 6, docs/wire.md "Deliver
 * and receipt"): per-recipient queues with a credit window, receipts,
 * notices for senders, expiry, and forgetting msg_ids after the retry
 * horizon. Everything runs in the batch transaction (b->txn); frames are
 * staged in b->out and sent after the commit.
 *
 * Delivery: a connection's queue is read oldest first from just after its
 * cursor, at most `credit` deliveries, and at most BROKER_INFLIGHT_BYTES_MAX
 * envelope bytes in flight (handed out on this connection and not yet
 * receipted or expired; when nothing is in flight one delivery goes
 * whatever its size, so a large message is never stuck); the first delivery
 * of a message to a recipient is audited ("delivered", once per recipient,
 * the broker's claim); a new connection starts again at the oldest entry,
 * with nothing in flight, so whatever was in flight on a lost connection is
 * delivered again. A delivery the node refuses (it returns the credit but
 * sends no receipt) keeps its bytes counted until the message expires or
 * the connection is replaced: a returned credit cannot say which delivery
 * it stands for, and a node that does not read must not free budget by
 * returning credit.
 *
 * Receipt: verified against the recipient's current certificate (signature,
 * canonical body, recipient and serial) and the network by
 * deliver_receipt_prepare(), which runs on the verifier pool before the
 * batch's transaction; then, in the transaction, checked against the stored
 * envelope hash and the recipient list; then audited ("receipted", the whole signed
 * receipt), the recipient's queue entry removed, the envelope deleted once
 * every recipient has receipted, and the receipt forwarded to the sender as
 * a notice. A receipt returns one credit. A receipt that does not verify or
 * match is refused (BAD_RECEIPT, audited as rejected); a repeated receipt
 * for a message already receipted or gone is ignored.
 *
 * Notices (forwarded receipts, expiry notices) are stored under the
 * sender's id and the leaf index of their audit record, and stay stored
 * until the sender confirms them with a NoticeAck naming that leaf index
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
 * Expiry: at expires_at a message still unreceipted by some recipient is
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

/* What the pool found out about a receipt (no store access, no shared state
 * written: thread-safe). refused == NULL: it verified, body holds it. */
typedef struct receipt_prep {
    keten_err e; /* a failure that is not the receipt's fault (out of memory) */
    const char *refused; /* why it is refused (points to detail or a static text) */
    char detail[DELIVER_DETAIL_MAX];
    const uint8_t *msg_id; /* in body, when it could be read */
    uint8_t *bytes; /* the serialized signed Receipt */
    size_t len;
    Keten__ReceiptBody *body;
} receipt_prep;

void deliver_receipt_prepare(
    const broker *b, const conn *c, const Keten__ReceiptFrame *rf, receipt_prep *rp);
void deliver_receipt_prep_clear(receipt_prep *rp);

/* A receipt from c, prepared by deliver_receipt_prepare(). */
keten_err deliver_receipt(broker *b, conn *c, uint64_t request_id, const Keten__ReceiptFrame *rf,
    const receipt_prep *rp) KETEN_MUST_CHECK;

/* Send c the notices it has not been sent yet (up to its in-flight cap),
 * and again those unconfirmed for DELIVER_NOTICE_RESEND_MS. */
keten_err deliver_notices(broker *b, conn *c) KETEN_MUST_CHECK;

/* A NoticeAck from c: delete the notices of c's node it names. */
keten_err deliver_notice_ack(broker *b, conn *c, const Keten__NoticeAck *na) KETEN_MUST_CHECK;

/* Expire what is due at b->now; forget msg_ids older than the horizon. */
keten_err deliver_expire(broker *b) KETEN_MUST_CHECK;

#endif
