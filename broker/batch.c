#include "batch.h"

#include <stdatomic.h>

#include "audit.h"
#include "checkpointer.h"
#include "dirstate.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "store.h"

void batch_prepare(const broker *b, batch_item *it, bool dir_fresh)
{
    const Keten__Frame *f = it->frame;
    if (it->c == NULL || f == NULL) {
        return;
    }
    if (f->body_case == KETEN__FRAME__BODY_SUBMIT && f->submit != NULL) {
        const ProtobufCBinaryData *env = &f->submit->envelope;
        submit_prepare(b, it->c, env->data, env->len, dir_fresh, &it->prep);
    } else if (f->body_case == KETEN__FRAME__BODY_RECEIPTS && f->receipts != NULL) {
        deliver_receipt_prepare(b, it->c, f->receipts, &it->rprep);
    }
}

keten_err batch_begin(broker *b, MDB_txn *parent, bool degraded)
{
    b->degraded = degraded || atomic_load(&b->st->full);
    b->batch_bytes = 0;
    checkpointer_begin(b);
    if (parent == NULL) {
        return store_begin(b->st, true, &b->txn);
    }
    int rc = mdb_txn_begin(b->st->env, parent, 0, &b->txn);
    if (rc != 0) {
        b->txn = NULL;
        return store_lmdb_err(rc, "starting a nested write transaction");
    }
    return KETEN_OK;
}

static keten_err unexpected(broker *b, const conn *c, uint64_t request_id, const char *what)
{
    keten_err e = audit_rejected(b, NULL, c->node, KETEN__REASON__REASON_MALFORMED, 0, NULL);
    if (e != KETEN_OK) {
        return e;
    }
    metrics_reject(b->m, KETEN__REASON__REASON_MALFORMED);
    return outq_error(b->out, c, request_id, KETEN__REASON__REASON_MALFORMED, NULL, what, 0);
}

/* A submit on a connection that has not said Hello: answered MALFORMED
 * "send Hello first", not examined (its ack is proven from the size the
 * Hello names) and not recorded. It is no refusal of a message: a correct
 * node's submit that waited in ZeroMQ's queue while the link was down
 * reaches its new connection ahead of its Hello, and the node sends it
 * again after the Hello; a `rejected` record would accuse an honest
 * partner at every such reconnect. Counted in the metrics as refused. */
static keten_err before_hello(broker *b, const conn *c, uint64_t request_id)
{
    metrics_reject(b->m, KETEN__REASON__REASON_MALFORMED);
    KETEN_LOG(KETEN_LOG_DEBUG, "a submit before Hello: answered, not recorded",
        "node=%s request_id=%llu", c->node, (unsigned long long)request_id);
    return outq_error(
        b->out, c, request_id, KETEN__REASON__REASON_MALFORMED, NULL, "send Hello first", 0);
}

keten_err batch_dispatch(broker *b, batch_item *it)
{
    conn *c = it->c;
    const Keten__Frame *f = it->frame;
    if (c == NULL) {
        return KETEN_OK;
    }
    if (f == NULL) {
        return unexpected(b, c, 0, "frame does not parse (one Frame per message)");
    }
    uint64_t rid = f->request_id;
    switch (f->body_case) {
    case KETEN__FRAME__BODY_CREDIT:
        deliver_credit(c, f->credit->credit);
        c->more = true;
        return KETEN_OK;
    case KETEN__FRAME__BODY_HELLO:
        return checkpointer_hello(b, c, rid, f->hello);
    case KETEN__FRAME__BODY_SUBMIT: {
        if (!c->hello) {
            return before_hello(b, c, rid);
        }
        const ProtobufCBinaryData *env = &f->submit->envelope;
        return submit_apply(b, c, rid, env->data, env->len, &it->prep);
    }
    case KETEN__FRAME__BODY_RECEIPTS:
        /* Also before Hello: a node's receipts queued while it was cut off
         * reach its new connection ahead of the Hello, and a batch needs no
         * session (the leaves must match this node's deliveries). */
        return deliver_receipts(b, c, rid, f->receipts, &it->rprep);
    case KETEN__FRAME__BODY_NOTICE_ACK:
        return deliver_notice_ack(b, c, f->notice_ack);
    case KETEN__FRAME__BODY_DIRECTORY_REQUEST:
        return dirstate_serve(b, c, rid, f->directory_request->after_version);
    case KETEN__FRAME__BODY_COSIGNATURE:
        return checkpointer_cosign(b, c, rid, f->cosignature);
    case KETEN__FRAME__BODY_PROOF_REQUEST:
        return checkpointer_proof(b, c, rid, f->proof_request);
    default:
        return unexpected(b, c, rid, "not a frame a node sends");
    }
}

keten_err batch_apply(broker *b, size_t n_events, batch_item *items, size_t n)
{
    keten_err e = KETEN_OK;
    for (size_t i = 0; i < n_events && i < b->n_events && e == KETEN_OK; i++) {
        const broker_event *ev = &b->events[i];
        e = ev->reason != KETEN__REASON__REASON_NONE
            ? audit_node_refused(b, ev->node, ev->reason, NULL)
            : audit_node(b, ev->event, ev->node, NULL);
    }
    for (size_t i = 0; i < n && e == KETEN_OK; i++) {
        e = batch_dispatch(b, &items[i]);
    }
    size_t budget = BROKER_BATCH_BYTES_MAX;
    for (size_t i = 0; i < b->conns->n && e == KETEN_OK; i++) {
        conn *c = b->conns->v[i];
        e = deliver_notices(b, c);
        if (e == KETEN_OK) {
            e = deliver_pump(b, c, &budget);
        }
    }
    if (e == KETEN_OK) {
        e = deliver_expire(b);
    }
    if (e == KETEN_OK) {
        e = checkpointer_commit(b); /* last: the proofs are against the final size */
    }
    return e;
}

void batch_item_clear(batch_item *it)
{
    submit_prep_clear(&it->prep);
    deliver_receipt_prep_clear(&it->rprep);
    keten_pb_free((ProtobufCMessage **)(void *)&it->frame);
}
