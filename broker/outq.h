/*
 * outq.h - frames the broker has decided to send, held until the batch's
 * transaction is committed (acks, errors, deliveries, notices, directory
 * pushes, checkpoints, proofs). outq_flush() sends them on the ROUTER socket
 * with ZMQ_DONTWAIT; outq_clear() drops them (failed batch).
 *
 * Ready frames are serialized when staged, so a staged frame owns its bytes
 * and does not point into the LMDB map.
 *
 * Proof frames (SubmitAck, Error DUPLICATE of an accepted envelope, an
 * Error refusing a submit whose "rejected" record names its msg_id,
 * Deliver, ReceiptNotice, ExpiredNotice) carry a LeafProof against the tree
 * size the batch ends with, which is known only at the batch's end: they
 * are staged as a slot naming the record's leaf index (and, for a delivery,
 * a copy of the envelope; for an error, its reason, rule, msg_id and
 * detail), in the
 * order of the other frames. outq_prove(), called once at the end of the
 * batch (checkpointer_commit()), fills every slot with its proof through
 * the prover's callbacks and lets the prover stage a connection's
 * checkpoint frames just before that connection's first proof frame. A
 * slot of a connection that has no accepted Hello by then is dropped.
 *
 * Ownership: the queue owns the staged bytes; a slot's conn pointer is only
 * used by outq_prove() in the same batch (connections are not removed while
 * a batch is applied). Single-threaded (main loop).
 */
#ifndef KETEN_BROKER_OUTQ_H
#define KETEN_BROKER_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#include "conns.h"
#include "err.h"
#include "keten.h"

/* What a staged item is. */
enum outq_kind {
    OUTQ_READY = 0, /* data: a serialized Frame */
    OUTQ_SUBMIT_ACK, /* SubmitAck{proof} */
    OUTQ_DUPLICATE, /* Error{DUPLICATE, msg_id, detail (data), proof} */
    OUTQ_REFUSED, /* Error{reason, msg_id, rule, detail (data), proof} */
    OUTQ_DELIVER, /* Deliver{envelope (data), proof} */
    OUTQ_RECEIPT_NOTICE, /* ReceiptNotice{proof} */
    OUTQ_EXPIRED_NOTICE, /* ExpiredNotice{proof} */
};

typedef struct outq_item {
    uint8_t rid[CONN_RID_MAX];
    size_t rid_len;
    uint8_t *data;
    size_t len;
    enum outq_kind kind;
    conn *c; /* proof slots: the connection */
    uint64_t request_id; /* proof slots */
    uint64_t leaf; /* proof slots: the leaf index the proof is of */
    uint8_t msg_id[KETEN_MSG_ID_BYTES]; /* OUTQ_DUPLICATE, OUTQ_REFUSED */
    Keten__Reason reason; /* OUTQ_REFUSED */
    uint32_t rule; /* OUTQ_REFUSED, reason POLICY */
} outq_item;

typedef struct outq {
    outq_item *v;
    size_t n, cap;
    size_t bytes;
    size_t n_proofs; /* proof slots staged */
} outq;

outq *outq_new(void);
void outq_destroy(outq **self_p);

/* Stage frame (request_id is set from the argument) for connection c. */
keten_err outq_frame(
    outq *self, const conn *c, uint64_t request_id, Keten__Frame *frame) KETEN_MUST_CHECK;
/* Stage frame as the answer to a request of c's node (ProofResponse,
 * DirectoryPush), within the node's answer budget (conns_answer_take(),
 * now_ms monotonic): if it does not fit, an Error TOO_LARGE saying when to
 * ask again is staged instead, and *sent is false. */
keten_err outq_answer(outq *self, conns *cs, const conn *c, uint64_t request_id,
    Keten__Frame *frame, uint64_t now_ms, bool *sent) KETEN_MUST_CHECK;
/* Stage already serialized frame bytes (copied). */
keten_err outq_raw(outq *self, const conn *c, const uint8_t *data, size_t len) KETEN_MUST_CHECK;

/* Stage an Error frame (no proof). */
keten_err outq_error(outq *self, const conn *c, uint64_t request_id, Keten__Reason reason,
    const uint8_t *msg_id, const char *detail, uint32_t rule) KETEN_MUST_CHECK;

/* Stage the Error that ends a connection whose certificate is no longer
 * current: no msg_id, reason (REVOKED, KEYS_REPLACED, UNKNOWN_SENDER) and the
 * directory version that made it so (docs/wire.md, "Connection refusals"). */
keten_err outq_refusal(outq *self, const conn *c, Keten__Reason reason, uint64_t version,
    const char *detail) KETEN_MUST_CHECK;

/* Proof slots (see above). */
keten_err outq_proof(outq *self, conn *c, uint64_t request_id, enum outq_kind kind,
    uint64_t leaf) KETEN_MUST_CHECK;
keten_err outq_duplicate(outq *self, conn *c, uint64_t request_id,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *detail,
    uint64_t leaf) KETEN_MUST_CHECK;
/* The final refusal of a submit, with the proof of its "rejected" record
 * (leaf), which names msg_id, the reason and (POLICY) the rule. */
keten_err outq_refused(outq *self, conn *c, uint64_t request_id, Keten__Reason reason,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *detail, uint32_t rule,
    uint64_t leaf) KETEN_MUST_CHECK;
keten_err outq_deliver(outq *self, conn *c, const uint8_t *env, size_t env_len,
    uint64_t leaf) KETEN_MUST_CHECK;

/* How the slots are filled. */
typedef struct outq_prover {
    void *ctx;
    /* Stage (outq_frame) what c must get before its first proof frame. */
    keten_err (*checkpoints)(void *ctx, outq *q, conn *c);
    /* The LeafProof of leaf; valid until the next call. */
    keten_err (*proof)(void *ctx, uint64_t leaf, const Keten__LeafProof **out);
} outq_prover;

/* Fill every proof slot (see above); sets c->cp_staged of the connections
 * whose checkpoints it staged. On failure the queue is to be cleared. */
keten_err outq_prove(outq *self, const outq_prover *p) KETEN_MUST_CHECK;

/* Send everything staged; returns how many frames libzmq took. */
size_t outq_flush(outq *self, void *router);
void outq_clear(outq *self);

#endif
