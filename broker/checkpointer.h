/*
 * checkpointer.h - signed checkpoints of the audit log, witness
 * cosignatures and proofs (DESIGN section 7, docs/wire.md "Checkpoints and
 * witnesses").
 *
 * checkpointer_tick(), called last in every batch, signs a checkpoint when
 * the tree grew by the configured number of records or the configured time
 * has passed since the last one (and only if it grew): origin
 * "keten/<network>", key name = the broker's node id, signed with its log
 * key, with the extension line naming the installed directory version and
 * hash. It is stored in `checkpoints` (key: tree size) in the same
 * transaction as the records it covers and sent to every connected node
 * after the commit.
 *
 * A cosignature from a node is accepted only for the node of the
 * connection, is verified against that node's signing key, and is attached
 * to the stored note (keten_checkpoint_add_line). Whenever a checkpoint is
 * sent, it is sent as stored, with the cosignatures it has so far; when
 * one becomes witnessed (a quorum of partners cosigned) it is sent again to
 * every connected node, and every new connection gets the latest one.
 *
 * Proof requests are answered from the log: a consistency proof
 * old_size -> tree_size and, for each requested leaf (at most
 * CHECKPOINTER_PROOF_LEAVES), an InclusionProof with the leaf bytes.
 */
#ifndef KETEN_BROKER_CHECKPOINTER_H
#define KETEN_BROKER_CHECKPOINTER_H

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "conns.h"
#include "err.h"

#define CHECKPOINTER_PROOF_LEAVES 64

typedef struct checkpointer {
    uint64_t last_size; /* tree size of the latest checkpoint (0: none) */
    uint64_t last_mono_ms; /* when it was signed */
} checkpointer;

/* Read the latest stored checkpoint. */
keten_err checkpointer_open(broker *b) KETEN_MUST_CHECK;
void checkpointer_destroy(checkpointer **self_p);

keten_err checkpointer_tick(broker *b) KETEN_MUST_CHECK;

/* Stage the latest checkpoint (with its cosignatures) for c, if any. */
keten_err checkpointer_send_latest(broker *b, const conn *c) KETEN_MUST_CHECK;

keten_err checkpointer_cosign(
    broker *b, const conn *c, uint64_t request_id, const Keten__Cosignature *cs) KETEN_MUST_CHECK;

keten_err checkpointer_proof(
    broker *b, const conn *c, uint64_t request_id, const Keten__ProofRequest *pr) KETEN_MUST_CHECK;

#endif
