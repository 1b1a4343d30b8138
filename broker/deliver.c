#include "deliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "dirstate.h"
#include "envelope.h"
#include "log.h"
#include "logproof.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "receipt.h"
#include "store.h"
#include "util.h"

/* ---- helpers ----------------------------------------------------------- */

static int rcpt_index(const store_msg *m, const char *node)
{
    for (size_t i = 0; i < m->n_rcpt; i++) {
        if (strcmp(m->rcpt[i].id, node) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Store a notice of kind (OUTQ_RECEIPT_NOTICE, OUTQ_EXPIRED_NOTICE) for node,
 * about the record at leaf seq, and flag its connection. */
static keten_err notify(broker *b, const char *node, uint64_t seq, enum outq_kind kind)
{
    uint8_t v = (uint8_t)kind;
    keten_err e = store_notice_put(b->st, b->txn, node, seq, &v, 1);
    if (e != KETEN_OK) {
        return e;
    }
    conn *c = conns_find_node(b->conns, node);
    if (c != NULL) {
        c->notices = true;
    }
    return KETEN_OK;
}

/* The kind of a stored notice value. */
static keten_err notice_kind(const uint8_t *v, size_t len, enum outq_kind *kind)
{
    if (len != 1 || (v[0] != OUTQ_RECEIPT_NOTICE && v[0] != OUTQ_EXPIRED_NOTICE)) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "a notice of %zu bytes that names no kind; the store was altered",
            len);
    }
    *kind = (enum outq_kind)v[0];
    return KETEN_OK;
}

/* Has the recipient answered (receipted or refused)? */
static bool answered(uint8_t state)
{
    return state == STORE_RECEIPTED || state == STORE_REFUSED;
}

/* The first queue entry of node at or after leaf `from`. */
static keten_err queue_next(broker *b, const char *node, uint64_t from, bool *found, uint64_t *leaf,
    uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    *found = false;
    uint8_t key[STORE_NODE_KEY_MAX];
    size_t klen = store_node_key(node, from, key);
    size_t plen = klen - 8;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(b->txn, b->st->queue, &cur);
    if (rc != 0) {
        return store_lmdb_err(rc, "opening a queue");
    }
    MDB_val k = { klen, key }, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        return KETEN_OK;
    }
    if (rc != 0) {
        return store_lmdb_err(rc, "reading a queue");
    }
    if (k.mv_size != klen || memcmp(k.mv_data, key, plen) != 0) {
        return KETEN_OK; /* another node's queue */
    }
    if (v.mv_size != KETEN_MSG_ID_BYTES) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "a queue entry of %zu bytes; the store was altered", v.mv_size);
    }
    *leaf = store_get_be64((const uint8_t *)k.mv_data + plen);
    memcpy(msg_id, v.mv_data, KETEN_MSG_ID_BYTES);
    *found = true;
    return KETEN_OK;
}

/* ---- delivery ---------------------------------------------------------- */

static void add_credit(conn *c, uint32_t credit)
{
    uint64_t n = (uint64_t)c->credit + credit;
    c->credit = n > BROKER_CREDIT_MAX ? BROKER_CREDIT_MAX : (uint32_t)n;
}

void deliver_hello(conn *c)
{
    /* Each rewind halves the byte budget and at most one comes every
     * DELIVER_RESEND_MS, so Hellos cannot have the queue handed out again
     * and again into a connection that does not read it. */
    c->flight.rewind_due = c->has_cursor && c->flight.bytes > 0;
}

void deliver_credit(conn *c, uint32_t credit)
{
    add_credit(c, credit);
    /* Returned without a receipt: deliveries the node read and dropped (or
     * refused without a leaf), once deliveries are in flight. */
    if (c->flight.count > 0) {
        c->flight.returned += credit;
    }
}

/* Whether a delivery of len bytes fits c's byte budget (always, when
 * nothing is in flight). The budget is halved by every rewind since the
 * last receipt (deliver.h), down to one delivery at a time. */
static bool fits_budget(const conn *c, size_t len)
{
    uint64_t used = c->flight.bytes;
    uint32_t shift = c->flight.rewinds < DELIVER_RESEND_HALVINGS_MAX ? c->flight.rewinds
                                                                     : DELIVER_RESEND_HALVINGS_MAX;
    uint64_t budget = (uint64_t)BROKER_INFLIGHT_BYTES_MAX >> shift;
    return used == 0 || (used < budget && len <= budget - used);
}

/* The delivery of the message at leaf is no longer in flight on c (its
 * receipt came, or it expired): its bytes go back to c's budget if it was
 * handed out on this connection (at or before the cursor: queue entries are
 * appended in leaf order, so every entry up to the cursor was). */
static keten_err release_bytes(broker *b, conn *c, uint64_t leaf)
{
    if (c == NULL || !c->has_cursor || leaf > c->cursor || c->flight.bytes == 0) {
        return KETEN_OK;
    }
    const uint8_t *env = NULL;
    size_t len = 0;
    keten_err e = store_envelope_get(b->st, b->txn, leaf, &env, &len);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK;
    }
    if (e != KETEN_OK) {
        return e;
    }
    c->flight.bytes = len >= c->flight.bytes ? 0 : c->flight.bytes - len;
    c->flight.count -= c->flight.count > 0 ? 1 : 0;
    c->flight.full = false;
    return KETEN_OK;
}

/* Hand the message at leaf to c. *sent: a Deliver frame was staged;
 * *blocked: it does not fit c's byte budget now (nothing was done). */
static keten_err deliver_one(broker *b, conn *c, uint64_t leaf,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], size_t *budget, bool *sent, bool *blocked)
{
    *sent = false;
    *blocked = false;
    store_msg m;
    bool found = false;
    keten_err e = store_msg_get(b->st, b->txn, leaf, &m, &found);
    if (e != KETEN_OK) {
        return e;
    }
    int i = found ? rcpt_index(&m, c->node) : -1;
    if (i < 0 || memcmp(m.msg_id, msg_id, KETEN_MSG_ID_BYTES) != 0) {
        /* A queue entry without its message: remove it, say so. */
        KETEN_LOG(KETEN_LOG_WARNING, "queue entry without a message removed", "node=%s leaf=%llu",
            c->node, (unsigned long long)leaf);
        return store_queue_delete(b->st, b->txn, c->node, leaf);
    }
    const uint8_t *env = NULL;
    size_t env_len = 0;
    if ((e = store_envelope_get(b->st, b->txn, leaf, &env, &env_len)) != KETEN_OK) {
        return e;
    }
    if (!fits_budget(c, env_len)) {
        *blocked = true;
        return KETEN_OK;
    }
    if (m.rcpt[i].state == STORE_QUEUED) {
        if ((e = audit_delivered(b, msg_id, m.sender, c->node, NULL)) != KETEN_OK) {
            return e;
        }
        m.rcpt[i].state = STORE_DELIVERED;
        if ((e = store_msg_put(b->st, b->txn, &m)) != KETEN_OK) {
            return e;
        }
        /* The write may have moved the envelope's page: read it again. */
        if ((e = store_envelope_get(b->st, b->txn, leaf, &env, &env_len)) != KETEN_OK) {
            return e;
        }
    }
    /* The proof of its "submitted" record is added at the batch's end. */
    if ((e = outq_deliver(b->out, c, env, env_len, m.leaf)) != KETEN_OK) {
        return e;
    }
    *budget = env_len >= *budget ? 0 : *budget - env_len;
    if (c->flight.bytes == 0) {
        c->flight.progress_ms = keten_mono_ms();
        c->flight.count = 0;
        c->flight.returned = 0;
    }
    c->flight.bytes += env_len;
    c->flight.count++;
    *sent = true;
    metrics_delivery(b->m);
    return KETEN_OK;
}

/* Whether c has deliveries in flight whose credit the node returned (it
 * read them and dropped them). */
static bool dropped_in_flight(const conn *c)
{
    return !c->revoked && c->hello && c->has_cursor && c->flight.bytes > 0
        && c->flight.returned >= c->flight.count;
}

/* Whether a rewind asked for by a Hello may happen now: at most one every
 * DELIVER_RESEND_MS on a connection. */
static bool hello_rewind_now(const conn *c, uint64_t mono)
{
    return c->flight.rewound_ms == 0 || mono - c->flight.rewound_ms >= DELIVER_RESEND_MS;
}

/* Nothing receipted on c for its resend wait while deliveries are in
 * flight, and the node returned their credit (it read them and dropped
 * them); or a Hello asked for them and the last rewind is
 * DELIVER_RESEND_MS ago (or there was none): start again at the oldest
 * queue entry (deliver.h). */
static void rewind_if_stalled(broker *b, conn *c)
{
    uint64_t mono = keten_mono_ms();
    uint64_t wait = c->flight.resend_wait_ms != 0 ? c->flight.resend_wait_ms : DELIVER_RESEND_MS;
    /* A Hello asks for what is in flight whether or not its credit came
     * back (a node that held deliveries, its directory expired, need not
     * return it); at most one such rewind every DELIVER_RESEND_MS, each
     * halving the budget. */
    c->flight.rewind_due
        = c->flight.rewind_due && !c->revoked && c->hello && c->has_cursor && c->flight.bytes > 0;
    bool hello = c->flight.rewind_due && hello_rewind_now(c, mono);
    if (!hello && (!dropped_in_flight(c) || mono - c->flight.progress_ms < wait)) {
        return;
    }
    KETEN_LOG(KETEN_LOG_NOTICE,
        hello ? "deliveries asked for again (Hello): unreceipted messages are sent again on the "
                "same connection"
              : "no delivery receipted in time: unreceipted messages are sent again on the same "
                "connection",
        "node=%s in_flight=%llu in_flight_bytes=%llu credit_returned=%llu waited_ms=%llu", c->node,
        (unsigned long long)c->flight.count, (unsigned long long)c->flight.bytes,
        (unsigned long long)c->flight.returned, (unsigned long long)(mono - c->flight.progress_ms));
    c->flight.rewind_due = false;
    c->flight.rewound_ms = mono;
    c->has_cursor = false;
    c->cursor = 0;
    c->more = true;
    c->flight.bytes = 0;
    c->flight.count = 0;
    c->flight.returned = 0;
    c->flight.full = false;
    c->flight.progress_ms = mono;
    c->flight.resend_wait_ms = 2 * wait > DELIVER_RESEND_MAX_MS ? DELIVER_RESEND_MAX_MS : 2 * wait;
    c->flight.rewinds += c->flight.rewinds < UINT32_MAX ? 1 : 0;
    metrics_deliveries_resent(b->m);
}

keten_err deliver_pump(broker *b, conn *c, size_t *budget)
{
    rewind_if_stalled(b, c);
    while (!c->revoked && c->hello && c->credit > 0 && c->more && !c->flight.full && *budget > 0) {
        uint64_t from = c->has_cursor ? c->cursor + 1 : 0;
        if (c->has_cursor && c->cursor == UINT64_MAX) {
            c->more = false;
            break;
        }
        bool found = false;
        uint64_t leaf = 0;
        uint8_t msg_id[KETEN_MSG_ID_BYTES];
        keten_err e = queue_next(b, c->node, from, &found, &leaf, msg_id);
        if (e != KETEN_OK) {
            return e;
        }
        if (!found) {
            c->more = false;
            break;
        }
        bool sent = false, blocked = false;
        if ((e = deliver_one(b, c, leaf, msg_id, budget, &sent, &blocked)) != KETEN_OK) {
            return e;
        }
        if (blocked) {
            c->flight.full = true; /* until a receipt or an expiry frees bytes */
            break;
        }
        c->cursor = leaf;
        c->has_cursor = true;
        if (sent) {
            c->credit--;
        }
    }
    return KETEN_OK;
}

/* ---- receipts ---------------------------------------------------------- */

static keten_err bad_receipt(broker *b, const conn *c, uint64_t request_id, const char *detail)
{
    keten_err e = audit_rejected(b, NULL, c->node, KETEN__REASON__REASON_BAD_RECEIPT, 0, NULL);
    if (e != KETEN_OK) {
        return e;
    }
    metrics_reject(b->m, KETEN__REASON__REASON_BAD_RECEIPT);
    KETEN_LOG(KETEN_LOG_WARNING, "receipt batch refused", "node=%s detail=\"%s\"", c->node, detail);
    return outq_error(b->out, c, request_id, KETEN__REASON__REASON_BAD_RECEIPT, NULL, detail, 0);
}

void deliver_receipt_prepare(
    const broker *b, const conn *c, const Keten__ReceiptBatch *rb, receipt_prep *rp)
{
    memset(rp, 0, sizeof *rp);
    const keten_directory *dir = broker_dir(b);
    const Keten__NodeCert *cert = dirstate_node_cert(dir, c->node, c->key, b->now);
    if (cert == NULL) {
        rp->refused = "the receipting node is not current";
        return;
    }
    if (rb->n_leaves == 0 || rb->n_leaves > KETEN_RECEIPT_BATCH_MAX) {
        snprintf(rp->detail, sizeof rp->detail, "a receipt batch of %zu leaves; 1 to %d allowed",
            rb->n_leaves, KETEN_RECEIPT_BATCH_MAX);
        rp->refused = rp->detail;
        return;
    }
    keten_err e = keten_receipt_batch_verify(
        cert, keten_directory_network(dir), rb, &rp->head, &rp->leaf_hashes);
    if (e == KETEN_ERR_NOMEM) {
        rp->e = e;
        return;
    }
    if (e != KETEN_OK) {
        snprintf(rp->detail, sizeof rp->detail, "receipt batch does not verify: %s: %s",
            keten_err_str(e), keten_err_detail());
        rp->refused = rp->detail;
        keten_err_clear();
    }
}

void deliver_receipt_prep_clear(receipt_prep *rp)
{
    keten_pb_free((ProtobufCMessage **)(void *)&rp->head);
    free(rp->leaf_hashes);
    memset(rp, 0, sizeof *rp);
}

/* Leaf i of a verified batch from c: the answer of c's node to one message
 * queued for it, or *matched false. */
/* *repeated: msg_id was seen with this envelope hash and its submitted
 * record lists c's node among the recipients. */
static keten_err answered_before(
    broker *b, const conn *c, const Keten__ReceiptLeaf *lf, bool *repeated)
{
    store_seen sn;
    bool found = false;
    keten_err e = store_seen_get(b->st, b->txn, lf->msg_id.data, &sn, &found);
    if (e != KETEN_OK || !found
        || sodium_memcmp(sn.envelope_hash, lf->envelope_hash.data, KETEN_HASH_BYTES) != 0) {
        return e;
    }
    const uint8_t *leaf = NULL;
    size_t len = 0;
    if ((e = keten_merkle_log_leaf(b->st->log, b->txn, sn.leaf, &leaf, &len)) != KETEN_OK) {
        return e;
    }
    Keten__AuditRecord *rec = NULL;
    if (KETEN_PB_UNPACK(keten__audit_record, leaf, len, KETEN_AUDIT_RECORD_MAX, "audit record", &rec)
        != KETEN_OK) {
        keten_err_clear();
        return KETEN_OK;
    }
    for (size_t i = 0; rec->event == KETEN__EVENT__EVENT_SUBMITTED && i < rec->n_recipients; i++) {
        if (strcmp(rec->recipients[i], c->node) == 0) {
            *repeated = true;
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    return KETEN_OK;
}

static keten_err receipt_leaf(broker *b, conn *c, const Keten__ReceiptBatch *rb,
    const receipt_prep *rp, size_t i, bool *matched, bool *repeated)
{
    *matched = false;
    *repeated = false;
    const Keten__ReceiptLeaf *lf = rb->leaves[i];
    if (lf == NULL || lf->msg_id.len != KETEN_MSG_ID_BYTES
        || lf->envelope_hash.len != KETEN_HASH_BYTES) {
        return KETEN_OK;
    }
    const uint8_t *msg_id = lf->msg_id.data;
    store_msg m;
    bool found = false;
    keten_err e = store_msg_find_recent(b->st, b->txn, msg_id, &m, &found);
    if (e != KETEN_OK) {
        return e;
    }
    if (!found) {
        /* Every recipient answered (or it expired) and its record is gone:
         * a leaf of one of its recipients, for its very envelope, is an
         * answer repeated (a redelivery raced the first), not a stranger's
         * claim. The submitted record says who the recipients were. */
        return answered_before(b, c, lf, repeated);
    }
    int r = rcpt_index(&m, c->node);
    if (r < 0 || sodium_memcmp(lf->envelope_hash.data, m.envelope_hash, KETEN_HASH_BYTES) != 0) {
        return KETEN_OK;
    }
    if (answered(m.rcpt[r].state)) {
        *repeated = true;
        return KETEN_OK;
    }
    if (m.rcpt[r].state != STORE_DELIVERED) {
        /* Never handed out to the node: no delivery for it to answer. */
        return KETEN_OK;
    }
    bool stored = lf->outcome == KETEN__OUTCOME__OUTCOME_STORED;
    Keten__Event ev
        = stored ? KETEN__EVENT__EVENT_RECEIPTED : KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT;
    keten_receipt_proof_buf pb;
    memset(&pb, 0, sizeof pb);
    uint64_t leaf = 0;
    if ((e = keten_receipt_proof_build(rb, (const keten_hash *)rp->leaf_hashes, i, &pb)) != KETEN_OK) {
        return e;
    }
    e = release_bytes(b, c, m.leaf);
    if (e == KETEN_OK) {
        e = audit_answered(b, ev, lf->reason, msg_id, m.sender, c->node, &pb.msg, &leaf);
    }
    keten_receipt_proof_buf_clear(&pb);
    if (e != KETEN_OK || (e = store_queue_delete(b->st, b->txn, c->node, m.leaf)) != KETEN_OK) {
        return e;
    }
    m.rcpt[r].state = stored ? STORE_RECEIPTED : STORE_REFUSED;
    bool all = true;
    for (size_t j = 0; j < m.n_rcpt; j++) {
        all = all && answered(m.rcpt[j].state);
    }
    e = all ? store_msg_delete(b->st, b->txn, &m) : store_msg_put(b->st, b->txn, &m);
    if (e != KETEN_OK || (e = notify(b, m.sender, leaf, OUTQ_RECEIPT_NOTICE)) != KETEN_OK) {
        return e;
    }
    if (stored) {
        metrics_receipt(b->m);
    } else {
        metrics_refused_by_recipient(b->m);
    }
    *matched = true;
    return KETEN_OK;
}

keten_err deliver_receipts(broker *b, conn *c, uint64_t request_id, const Keten__ReceiptBatch *rb,
    const receipt_prep *rp)
{
    /* Each leaf stands for one delivery, and so for one credit. */
    size_t n = rb->n_leaves;
    add_credit(c, n > KETEN_RECEIPT_BATCH_MAX ? KETEN_RECEIPT_BATCH_MAX : (uint32_t)n);
    if (rp->e != KETEN_OK) {
        return keten_err_set(rp->e, "preparing a receipt batch of %s", c->node);
    }
    if (rp->refused != NULL) {
        return bad_receipt(b, c, request_id, rp->refused);
    }
    metrics_receipt_batch(b->m);
    size_t unmatched = 0, matched_n = 0;
    for (size_t i = 0; i < n; i++) {
        bool matched = false, repeated = false;
        keten_err e = receipt_leaf(b, c, rb, rp, i, &matched, &repeated);
        if (e != KETEN_OK) {
            return e;
        }
        if (matched || repeated) {
            /* The node answers: deliveries progress (resend, deliver.h). */
            c->flight.progress_ms = keten_mono_ms();
        }
        if (matched) {
            /* Only a new answer shows that the node reads what it is
             * sent: an answer repeated (one the node holds from long ago)
             * does not restore the wait and the byte budget. */
            c->flight.resend_wait_ms = 0;
            c->flight.rewinds = 0;
        }
        if (matched) {
            matched_n++;
        } else if (repeated) {
            metrics_leaf_repeated(b->m);
        } else {
            unmatched++;
            metrics_leaf_unmatched(b->m);
        }
    }
    KETEN_LOG(KETEN_LOG_DEBUG, "receipt batch", "node=%s leaves=%zu matched=%zu unmatched=%zu",
        c->node, n, matched_n, unmatched);
    if (unmatched > 0) {
        KETEN_LOG(KETEN_LOG_WARNING,
            "receipt leaves naming no message pending for the node skipped", "node=%s leaves=%zu",
            c->node, unmatched);
        keten_err e
            = audit_rejected(b, NULL, c->node, KETEN__REASON__REASON_BAD_RECEIPT, 0, NULL);
        if (e != KETEN_OK) {
            return e;
        }
        metrics_reject(b->m, KETEN__REASON__REASON_BAD_RECEIPT);
    }
    return KETEN_OK;
}

/* ---- notices ----------------------------------------------------------- */

/* Stage the stored notice leaf of c's node for c; *found false if it is no
 * longer stored. */
static keten_err stage_notice(broker *b, conn *c, uint64_t leaf, bool *found)
{
    const uint8_t *v = NULL;
    size_t len = 0;
    enum outq_kind kind = OUTQ_READY;
    *found = false;
    keten_err e = store_notice_get(b->st, b->txn, c->node, leaf, &v, &len);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK;
    }
    if (e != KETEN_OK || (e = notice_kind(v, len, &kind)) != KETEN_OK
        || (e = outq_proof(b->out, c, 0, kind, leaf)) != KETEN_OK) {
        return e;
    }
    *found = true;
    b->notices_staged++;
    metrics_notice_sent(b->m);
    return KETEN_OK;
}

static void forget_notice(conn *c, size_t i)
{
    c->notice_v[i] = c->notice_v[--c->flight.n_notices];
}

/* Send again the notices unconfirmed for DELIVER_NOTICE_RESEND_MS. */
static keten_err resend_notices(broker *b, conn *c, uint64_t mono)
{
    size_t i = 0;
    while (i < c->flight.n_notices) {
        conn_notice *cn = &c->notice_v[i];
        if (mono - cn->sent_ms < DELIVER_NOTICE_RESEND_MS) {
            i++;
            continue;
        }
        bool found = false;
        keten_err e = stage_notice(b, c, cn->leaf, &found);
        if (e != KETEN_OK) {
            return e;
        }
        if (!found) {
            forget_notice(c, i); /* gone from the store: nothing to wait for */
            continue;
        }
        cn->sent_ms = mono;
        metrics_notice_resent(b->m);
        i++;
    }
    return KETEN_OK;
}

/* Send the notices after c's notice cursor, oldest first, while fewer than
 * CONN_NOTICES_IN_FLIGHT are unconfirmed. */
static keten_err send_new_notices(broker *b, conn *c, uint64_t mono)
{
    if (c->flight.has_notice_cursor && c->flight.notice_cursor == UINT64_MAX) {
        c->notices = false;
        return KETEN_OK;
    }
    uint64_t from = c->flight.has_notice_cursor ? c->flight.notice_cursor + 1 : 0;
    uint8_t key[STORE_NODE_KEY_MAX];
    size_t klen = store_node_key(c->node, from, key);
    if (klen == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "notices of an invalid node id");
    }
    size_t plen = klen - 8;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(b->txn, b->st->notices, &cur);
    if (rc != 0) {
        return store_lmdb_err(rc, "opening the notices");
    }
    keten_err e = KETEN_OK;
    MDB_val k = { klen, key }, v;
    MDB_cursor_op op = MDB_SET_RANGE;
    bool end = false;
    for (size_t n = 0; n < DELIVER_NOTICES_PER_BATCH; n++) {
        if (c->flight.n_notices == CONN_NOTICES_IN_FLIGHT) {
            break; /* more once some are confirmed; the flag stays */
        }
        rc = mdb_cursor_get(cur, &k, &v, op);
        op = MDB_NEXT;
        if (rc == MDB_NOTFOUND) {
            end = true;
            break;
        }
        if (rc != 0) {
            e = store_lmdb_err(rc, "reading the notices");
            goto out;
        }
        if (k.mv_size != klen || memcmp(k.mv_data, key, plen) != 0) {
            end = true; /* another node's notices */
            break;
        }
        uint64_t leaf = store_get_be64((const uint8_t *)k.mv_data + plen);
        if (c->notice_v == NULL
            && (c->notice_v = calloc(CONN_NOTICES_IN_FLIGHT, sizeof *c->notice_v)) == NULL) {
            e = keten_err_set(KETEN_ERR_NOMEM, "notices in flight");
            goto out;
        }
        enum outq_kind kind = OUTQ_READY;
        if ((e = notice_kind(v.mv_data, v.mv_size, &kind)) != KETEN_OK
            || (e = outq_proof(b->out, c, 0, kind, leaf)) != KETEN_OK) {
            goto out;
        }
        b->notices_staged++;
        metrics_notice_sent(b->m);
        c->notice_v[c->flight.n_notices++] = (conn_notice) { leaf, mono };
        c->flight.notice_cursor = leaf;
        c->flight.has_notice_cursor = true;
        if (leaf == UINT64_MAX) {
            end = true;
            break;
        }
    }
    if (end) {
        c->notices = false; /* until notify() stores another one */
    }
out:
    mdb_cursor_close(cur);
    return e;
}

keten_err deliver_notices(broker *b, conn *c)
{
    if (c->revoked || !c->hello) {
        return KETEN_OK;
    }
    uint64_t mono = keten_mono_ms();
    keten_err e = resend_notices(b, c, mono);
    if (e == KETEN_OK && c->notices) {
        e = send_new_notices(b, c, mono);
    }
    return e;
}

keten_err deliver_notice_ack(broker *b, conn *c, const Keten__NoticeAck *na)
{
    size_t n = na->n_leaf_indexes;
    if (n > DELIVER_NOTICE_ACK_MAX) {
        KETEN_LOG(KETEN_LOG_WARNING, "notice confirmation too long; the rest ignored",
            "node=%s leaf_indexes=%zu read=%d", c->node, n, DELIVER_NOTICE_ACK_MAX);
        for (size_t i = DELIVER_NOTICE_ACK_MAX; i < n; i++) {
            metrics_notice_ack_unknown(b->m);
        }
        n = DELIVER_NOTICE_ACK_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t leaf = na->leaf_indexes[i];
        bool found = false;
        keten_err e = store_notice_delete(b->st, b->txn, c->node, leaf, &found);
        if (e != KETEN_OK) {
            return e;
        }
        if (!found) {
            /* Confirmed before, or never this node's: nothing to do. */
            metrics_notice_ack_unknown(b->m);
            KETEN_LOG(KETEN_LOG_DEBUG, "confirmation of no notice of this node ignored",
                "node=%s leaf=%llu", c->node, (unsigned long long)leaf);
            continue;
        }
        metrics_notice_confirmed(b->m);
        for (size_t j = 0; j < c->flight.n_notices; j++) {
            if (c->notice_v[j].leaf == leaf) {
                forget_notice(c, j);
                break;
            }
        }
    }
    return KETEN_OK;
}

/* ---- expiry ------------------------------------------------------------ */

static keten_err expire_one(
    broker *b, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const store_msg *m)
{
    const char *open[KETEN_MAX_RECIPIENTS];
    size_t n = 0;
    keten_err e;
    for (size_t i = 0; i < m->n_rcpt; i++) {
        if (!answered(m->rcpt[i].state)) {
            open[n++] = m->rcpt[i].id;
            conn *rc = conns_find_node(b->conns, m->rcpt[i].id);
            if ((e = release_bytes(b, rc, m->leaf)) != KETEN_OK
                || (e = store_queue_delete(b->st, b->txn, m->rcpt[i].id, m->leaf)) != KETEN_OK) {
                return e;
            }
        }
    }
    if (n > 0) {
        uint64_t leaf = 0;
        if ((e = audit_expired(b, msg_id, m->sender, open, n, &leaf)) != KETEN_OK) {
            return e;
        }
        if ((e = notify(b, m->sender, leaf, OUTQ_EXPIRED_NOTICE)) != KETEN_OK) {
            return e;
        }
        metrics_expired(b->m);
        char idhex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(msg_id, KETEN_MSG_ID_BYTES, idhex);
        KETEN_LOG(KETEN_LOG_INFO, "message expired",
            "msg_id=%s sender=%s unreceipted=%zu leaf=%llu", idhex, m->sender, n,
            (unsigned long long)leaf);
    }
    return store_msg_delete(b->st, b->txn, m);
}

static uint64_t horizon_ms(const broker *b)
{
    uint64_t life = keten_directory_doc(broker_dir(b))->max_message_lifetime;
    if (life == 0) {
        life = KETEN_MAX_LIFETIME_DEFAULT_MS;
    }
    uint64_t min = life + b->cfg->clock_window_ms;
    return b->cfg->retry_horizon_ms > min ? b->cfg->retry_horizon_ms : min;
}

keten_err deliver_expire(broker *b)
{
    keten_err e = KETEN_OK;
    for (size_t n = 0; n < DELIVER_EXPIRE_PER_BATCH; n++) {
        /* The first entry of the index: expires_at (8 BE) | leaf (8 BE). */
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        int rc = mdb_cursor_open(b->txn, b->st->expiry, &cur);
        if (rc != 0) {
            return store_lmdb_err(rc, "opening the expiry index");
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND) {
            break;
        }
        if (rc != 0) {
            return store_lmdb_err(rc, "reading the expiry index");
        }
        if (k.mv_size != 16) {
            return keten_err_set(KETEN_ERR_MALFORMED, "an expiry key of %zu bytes", k.mv_size);
        }
        uint8_t kb[16];
        memcpy(kb, k.mv_data, sizeof kb);
        if (store_get_be64(kb) > b->now) {
            break;
        }
        uint64_t leaf = store_get_be64(kb + 8);
        store_msg m;
        bool found = false;
        if ((e = store_msg_get(b->st, b->txn, leaf, &m, &found)) != KETEN_OK) {
            return e;
        }
        if (!found) {
            MDB_val dk = { sizeof kb, kb };
            if ((rc = mdb_del(b->txn, b->st->expiry, &dk, NULL)) != 0) {
                return store_lmdb_err(rc, "removing a stale expiry entry");
            }
            continue;
        }
        if ((e = expire_one(b, m.msg_id, &m)) != KETEN_OK) {
            return e;
        }
    }
    size_t pruned = 0;
    uint64_t h = horizon_ms(b);
    if (b->now > h) {
        e = store_seen_prune(b->st, b->txn, b->now - h, DELIVER_PRUNE_PER_BATCH, &pruned);
    }
    return e;
}
