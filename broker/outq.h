/*
 * outq.h - frames the broker has decided to send, held until the batch's
 * transaction is committed (acks, errors, deliveries, forwarded receipts,
 * directory pushes, checkpoints, proofs). outq_flush() sends them on the
 * ROUTER socket with ZMQ_DONTWAIT; outq_clear() drops them (failed batch).
 *
 * Frames are serialized when staged, so a staged frame owns its bytes and
 * does not point into the LMDB map.
 *
 * Acknowledgements are staged unsigned (outq_ack_later(): a slot in the
 * order of the other frames, and what to sign). Their signing
 * (keten_ack_sign with the broker's log key, then the SubmitAck frame) is a
 * pool job (pool.h) that runs while the main loop waits for the commit's
 * fsync: outq_sign_begin() says how many there are, outq_sign_one(i) signs
 * ack i into its slot (any thread, each i once), outq_sign_end() closes the
 * round. An ack whose signing failed is dropped (and logged): its message
 * is stored, and the sender's retry gets the original ack back (DUPLICATE).
 *
 * Ownership: the queue owns the staged bytes. Single-threaded, except that
 * between outq_sign_begin() and outq_sign_end() the pool writes the ack
 * slots: nothing may be staged, flushed or cleared in between.
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

typedef struct outq_ack {
    size_t slot; /* index into v */
    uint64_t request_id;
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t envelope_hash[KETEN_HASH_BYTES];
    uint64_t leaf;
    keten_err e; /* of the signing */
} outq_ack;

typedef struct outq {
    outq_item *v;
    size_t n, cap;
    size_t bytes;
    outq_ack *acks;
    size_t n_acks, cap_acks;
    /* while signing: */
    const char *network;
    const uint8_t *log_sk;
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

/* Stage the ack of an accepted submit, to be signed by outq_sign_start(). */
keten_err outq_ack_later(outq *self, const conn *c, uint64_t request_id,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const uint8_t envelope_hash[static KETEN_HASH_BYTES], uint64_t leaf) KETEN_MUST_CHECK;

/* The acks to sign (network and log_sk stay valid until outq_sign_end()). */
size_t outq_sign_begin(
    outq *self, const char *network, const uint8_t log_sk[static KETEN_SIGN_SK_BYTES]);
/* Sign ack i (0 <= i < what outq_sign_begin() returned). Thread-safe for
 * distinct i. */
void outq_sign_one(outq *self, size_t i);
/* How many of them could not be signed (they are not sent). */
size_t outq_sign_end(outq *self);

/* Send everything staged; returns how many frames libzmq took. */
size_t outq_flush(outq *self, void *router);
void outq_clear(outq *self);

#endif
