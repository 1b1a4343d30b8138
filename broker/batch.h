/*
 * batch.h - one batch of frames applied to the broker's state: the part of
 * a round of the main loop (server.h) that does no I/O. The server reads
 * the frames and sends what the batch staged; everything between is here,
 * so that the fuzz harness of the broker's frame handling
 * (tests/fuzz/fuzz_broker_frame.c) runs exactly the broker's own code.
 *
 *   batch_prepare()   the stateless checks of one frame: a Submit's
 *                     envelope (submit_prepare()), a receipt batch
 *                     (deliver_receipt_prepare()). No store access; it
 *                     writes only its own item, so the verifier pool
 *                     (pool.h) runs it on many items at once.
 *   batch_begin()     starts the batch: b->degraded (asked for, or the
 *                     store marked full), b->batch_bytes, the
 *                     checkpointer (checkpointer_begin()), and the write
 *                     transaction b->txn (nested in `parent` when it is not
 *                     NULL: the fuzz harness throws every input away so).
 *   batch_apply()     in b->txn: the first n_events node events of
 *                     b->events audited, each frame dispatched in order
 *                     (batch_dispatch()), then notices and deliveries for
 *                     every connection, expiry, and last the checkpointer's
 *                     commit (the checkpoint, and every staged proof against
 *                     the batch's final tree size).
 *   batch_dispatch()  one frame, by its kind: Credit, Hello, Submit,
 *                     ReceiptBatch, NoticeAck, DirectoryRequest,
 *                     Cosignature, ProofRequest. Submit only after an
 *                     accepted Hello: before it, it is answered MALFORMED
 *                     "send Hello first" and not audited (a node's submit
 *                     queued while it was cut off arrives before its Hello);
 *                     a ReceiptBatch or a Cosignature needs no session and
 *                     is taken (a node's receipts queued while it was cut
 *                     off reach its new connection before its Hello); a frame
 *                     that did not parse, or is not one a node sends, is
 *                     audited as rejected (MALFORMED) and answered with an
 *                     Error. An item without a connection (dropped since it
 *                     was read) is skipped.
 *
 * Errors: batch_begin() and batch_apply() return a store error
 * (KETEN_ERR_STORE_FULL, KETEN_ERR_STORE) or KETEN_ERR_NOMEM; a refused
 * frame is not an error (it is audited and answered). After an error of
 * batch_apply() the caller aborts b->txn, drops b->out and undoes what the
 * batch did to memory (checkpointer_undo(), the connections' state);
 * committing b->txn and sending b->out are the caller's too.
 *
 * Ownership: an item owns its frame and what its checks hold;
 * batch_item_clear() frees them. Thread safety: batch_prepare() as
 * submit_prepare() (it reads the directory, the configuration and b->now);
 * the rest on the main loop only.
 */
#ifndef KETEN_BROKER_BATCH_H
#define KETEN_BROKER_BATCH_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>

#include "broker.h"
#include "conns.h"
#include "deliver.h"
#include "err.h"
#include "submit.h"

/* One frame of a batch. */
typedef struct batch_item {
    conn *c; /* NULL: dropped (its connection went away or was cut off) */
    Keten__Frame *frame; /* NULL: did not parse */
    submit_prep prep; /* a submit, verified by batch_prepare() */
    receipt_prep rprep; /* a receipt batch, verified by batch_prepare() */
} batch_item;

/* The stateless checks of it; dir_fresh as submit_prepare() takes it. */
void batch_prepare(const broker *b, batch_item *it, bool dir_fresh);

keten_err batch_begin(broker *b, MDB_txn *parent, bool degraded) KETEN_MUST_CHECK;

keten_err batch_apply(broker *b, size_t n_events, batch_item *items, size_t n) KETEN_MUST_CHECK;

keten_err batch_dispatch(broker *b, batch_item *it) KETEN_MUST_CHECK;

/* Free what it holds (its frame, its checks' results); it may be used again. */
void batch_item_clear(batch_item *it);

#endif
