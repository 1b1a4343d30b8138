/*
 * witness.h - the node as a witness of the broker's audit log, and the
 * checker of every proof the broker sends it (docs/protocol.md,
 * "Checkpoints and witnesses" and "Acknowledgements and receipts: proofs,
 * not promises").
 *
 * Hello: the first frame on every (re)connection says the size of the
 * node's reference checkpoint (0: none), so that the broker proves its next
 * checkpoint from there.
 *
 * Checkpoints: each CheckpointFrame is opened with the broker certificate's
 * log_pk (origin "keten/" + network); one that does not open is the alarm
 * bad-checkpoint. Its directory line is checked next: a newer version than
 * the node holds makes the node fetch the chain and fail closed (dirs.h) and
 * the checkpoint is not taken; the same version with another hash, or a
 * lower version than the reference named, is the alarm directory-mismatch.
 * Then, with N its size:
 *   - N smaller than the reference's size, or N the size of a kept
 *     checkpoint with another root: alarm inconsistent-checkpoint;
 *   - the frame's old_size must be the size of a kept checkpoint (or 0 when
 *     the node has no reference); if not, the node logs it, counts it and
 *     says Hello again (no alarm: it cannot judge);
 *   - the consistency proof old_size -> N must verify against the kept root
 *     of old_size (else inconsistent-checkpoint).
 * Accepted, it becomes the reference (persisted: state "reference") and is
 * kept in memory with the last KETEN_WITNESS_KEPT accepted; a witness
 * checkpoint (witness=true) is also stored in `checkpoints` and cosigned
 * (keten_checkpoint_cosignature_sign with the node's signing key, under its id).
 * Every alarm keeps the frame as evidence (alarm.h). Witness checkpoints are
 * counted for witnessing (keten_checkpoint_witnesses); one not covered by a
 * witnessed checkpoint within opts.witness_timeout_ms is a warning.
 *
 * Leaf proofs (acks, deliveries, notices): keten_witness_leaf() checks a
 * LeafProof against the root of a kept checkpoint of its tree size.
 */
#ifndef KETEN_NODE_WITNESS_H
#define KETEN_NODE_WITNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "merkle.h"
#include "node.h"

#define KETEN_WITNESS_KEPT 64 /* accepted checkpoints kept for proofs */

keten_err keten_witness_new(keten_node *node, keten_witness **out) KETEN_MUST_CHECK;
void keten_witness_destroy(keten_witness **self_p);

/* Hello{reference size}: the first frame after every (re)connection. */
void keten_witness_send_hello(keten_node *node);

void keten_witness_on_checkpoint(keten_node *node, const Keten__CheckpointFrame *cf);
void keten_witness_tick(keten_node *node);

/* The root of the kept checkpoint of that size, if there is one. */
bool keten_witness_root(const keten_node *node, uint64_t size, keten_hash root_out);
uint64_t keten_witness_reference_size(const keten_node *node);

/* Check p against the kept checkpoint of its size and parse its record
 * (*rec_out, keten_pb_free()). KETEN_ERR_NOT_FOUND: no kept checkpoint of
 * that size (not an alarm: the frame is ignored and comes again); any other
 * error: the proof is false (the caller raises bad-proof). Counted. */
keten_err keten_witness_leaf(
    keten_node *node, const Keten__LeafProof *p, Keten__AuditRecord **rec_out) KETEN_MUST_CHECK;

/* Adds "checkpoint" ({tree_size, root, directory_version, witnessed,
 * witnessed_size, last_witness_size}) and "warnings" to a status object. */
keten_err keten_witness_status(keten_node *node, json_t *status) KETEN_MUST_CHECK;

/* The evidence this node keeps: its newest checkpoint witnessed by a quorum
 * (with the cosignatures it saw), or if none is, its newest accepted
 * witness checkpoint: {"tree_size", "witnessed", "note"} (the C2SP signed
 * note text, for keten-audit verify --checkpoint). KETEN_ERR_NOT_FOUND
 * before the first. */
keten_err keten_witness_evidence(keten_node *node, json_t **out) KETEN_MUST_CHECK;
/* Every checkpoint the node kept (the newest max of them), in tree-size
 * order: [{"tree_size","witnessed","note"}...] (keten-node checkpoint --all,
 * for an auditor's keten-audit verify --checkpoint FILE). */
#define KETEN_WITNESS_EVIDENCE_ALL_MAX 1000
keten_err keten_witness_evidence_all(keten_node *node, size_t max, json_t **out)
    KETEN_MUST_CHECK;

#endif
