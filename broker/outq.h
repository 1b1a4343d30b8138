/*
 * outq.h - frames the broker has decided to send, held until the batch's
 * transaction is committed (acks, errors, deliveries, forwarded receipts,
 * directory pushes, checkpoints, proofs). outq_flush() sends them on the
 * ROUTER socket with ZMQ_DONTWAIT; outq_clear() drops them (failed batch).
 *
 * Frames are serialized when staged, so a staged frame owns its bytes and
 * does not point into the LMDB map.
 * Ownership: the queue owns the staged bytes. Single-threaded.
 */
#ifndef KETEN_BROKER_OUTQ_H
#define KETEN_BROKER_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#include "conns.h"
#include "err.h"
#include "keten.h"

typedef struct outq_item {
    uint8_t rid[CONN_RID_MAX];
    size_t rid_len;
    uint8_t *data;
    size_t len;
} outq_item;

typedef struct outq {
    outq_item *v;
    size_t n, cap;
    size_t bytes;
} outq;

outq *outq_new(void);
void outq_destroy(outq **self_p);

/* Stage frame (request_id is set from the argument) for connection c. */
keten_err outq_frame(
    outq *self, const conn *c, uint64_t request_id, Keten__Frame *frame) KETEN_MUST_CHECK;
/* Stage already serialized frame bytes (copied). */
keten_err outq_raw(outq *self, const conn *c, const uint8_t *data, size_t len) KETEN_MUST_CHECK;

/* Stage an Error frame. ack (serialized Ack) may be NULL. */
keten_err outq_error(outq *self, const conn *c, uint64_t request_id, Keten__Reason reason,
    const uint8_t *msg_id, const char *detail, uint32_t rule, const uint8_t *ack,
    size_t ack_len) KETEN_MUST_CHECK;

/* Send everything staged; returns how many frames libzmq took. */
size_t outq_flush(outq *self, void *router);
void outq_clear(outq *self);

#endif
