/*
 * witness.h - the node as a witness of the broker's audit log (DESIGN
 * section 7, docs/protocol.md sections 12 and 13).
 *
 * Checkpoints: each CheckpointFrame is opened with the broker certificate's
 * log_pk (origin "keten/" + network). Its directory line is checked first: a
 * newer version than the node holds makes the node fetch the chain and fail
 * closed (dirs.h) and the checkpoint is not taken; the same version with
 * another hash, or a lower version than the reference named, is the alarm
 * directory-mismatch. Then, against the node's reference (the last
 * checkpoint it accepted):
 *   - no reference yet: accepted (every tree is consistent with nothing);
 *   - larger: a consistency proof ref -> new is asked for and verified; only
 *     then is the checkpoint stored as the new reference and cosigned
 *     (keten_cosignature_sign with the node's signing key, under its id);
 *     a proof that fails is the alarm inconsistent-checkpoint and nothing is
 *     cosigned;
 *   - same size: the roots must be equal (else inconsistent-checkpoint);
 *   - smaller: it must be consistent with the reference (proof asked for).
 * Checkpoints consistent with the reference are counted for witnessing
 * (keten_checkpoint_witnesses); a reference not covered by a witnessed
 * checkpoint within opts.witness_timeout_ms is a warning.
 *
 * Inclusion: every acknowledged and every received message leaves its leaf
 * index in `pending-inclusion` with a deadline (opts.inclusion_timeout_ms).
 * Once the reference covers a leaf, its inclusion proof is asked for; it
 * passes only if the proof verifies against the accepted root AND the leaf
 * bytes parse as an AuditRecord with that seq, event submitted, the msg_id,
 * and the exact header bytes of the envelope. Failing: inclusion-failed; not
 * done by the deadline: inclusion-missing. The deadline clock runs while
 * the node is connected: on each (re)connection deadlines are moved to at
 * least now + timeout, so a node that was offline raises no false alarm.
 */
#ifndef KETEN_NODE_WITNESS_H
#define KETEN_NODE_WITNESS_H

#include <jansson.h>

#include "err.h"
#include "keten.h"
#include "node.h"

keten_err keten_witness_new(keten_node *node, keten_witness **out) KETEN_MUST_CHECK;
void keten_witness_destroy(keten_witness **self_p);

void keten_witness_on_checkpoint(keten_node *node, const Keten__CheckpointFrame *cf);
void keten_witness_on_proof(keten_node *node, uint64_t request_id, const Keten__ProofResponse *r);
void keten_witness_on_link_up(keten_node *node);
void keten_witness_tick(keten_node *node);

/* Adds "checkpoint", "pending_inclusion" and "warnings" to a status object. */
keten_err keten_witness_status(keten_node *node, json_t *status) KETEN_MUST_CHECK;

/* The evidence this node keeps: its newest checkpoint witnessed by a quorum
 * (with the cosignatures it saw), or if none is, its newest accepted one:
 * {"tree_size", "witnessed", "note"} (the C2SP signed note text, for
 * keten-audit verify --checkpoint). KETEN_ERR_NOT_FOUND before the first. */
keten_err keten_witness_evidence(keten_node *node, json_t **out) KETEN_MUST_CHECK;

#endif
