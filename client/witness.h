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
 *
 * Retention (docs/operations.md, "What a node keeps of the broker's
 * checkpoints"): without it the
 * `checkpoints` table gains one record per witness checkpoint (about one a
 * second while the broker's log grows) for ever. keten_witness_prune()
 * removes what this rule does not keep, with opts.checkpoint_keep_ms (K) and
 * opts.checkpoint_hourly_ms (H):
 *   - always kept: the newest stored checkpoint (the reference, or the last
 *     witness checkpoint below it); the one of the node's witnessed size;
 *     the first one above the witnessed size (its accepted_at says since
 *     when the node waits for a quorum; should the witnessed size later
 *     move to one in thinned days, the next kept one after it is dated at
 *     most an hour or a day later, so the warning comes at most that much
 *     later); every one marked as evidence of an alarm
 *     (keten_witness_keep_as_evidence); every one accepted less than
 *     KETEN_WITNESS_ALL_MS (an hour) ago, or later than now (a clock set
 *     back);
 *   - older: one per minute of accepted_at while accepted less than K ago
 *     (a busy broker makes a witness checkpoint every 1,000 records: dozens
 *     a second, and a hostile one as many as it likes), one per hour (UTC)
 *     while less than H ago, one per day (UTC) after that, for ever: in each
 *     minute, hour or day the first witnessed one (it carries the partners'
 *     cosignatures), or the first one when none of them is witnessed.
 * Every kept checkpoint larger than a record the broker later rewrote shows
 * the rewrite (keten-audit verify --checkpoint), so the thinned series goes
 * on catching it; it only places the rewrite less exactly. With K = 0 no
 * checkpoint is ever removed.
 * A pass walks the table in tree-size order from its start to the first
 * checkpoint it keeps whole (of the last hour, or the newest), one transaction of at
 * most `chunk` records per call, so the daemon's loop is never held long; a
 * crash between two calls leaves each whole, and the next pass starts over.
 * keten_witness_tick() runs one call a second while a pass is under way, and
 * starts one at the first tick and KETEN_WITNESS_PRUNE_EVERY_MS after the
 * last one ended. A damaged record is kept, logged and counted
 * (store_errors).
 */
#ifndef KETEN_NODE_WITNESS_H
#define KETEN_NODE_WITNESS_H

#include <jansson.h>
#include <lmdb.h>
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
 * witnessed_size, last_witness_size, kept, kept_as_evidence}) and
 * "warnings" to a status object. kept: the witness checkpoints stored;
 * kept_as_evidence: how many of them are marked as evidence of an alarm. */
keten_err keten_witness_status(keten_node *node, json_t *status) KETEN_MUST_CHECK;

#define KETEN_WITNESS_PRUNE_CHUNK 1000 /* records looked at in one transaction */
/* Every witness checkpoint accepted this recently is kept; older ones of
 * the keep window one per minute. */
#define KETEN_WITNESS_ALL_MS (3600ull * 1000ull)
#define KETEN_WITNESS_PRUNE_EVERY_MS (10ull * 60ull * 1000ull) /* between two passes */
/* Checkpoints marked as evidence of alarms, at most: a broker that raises
 * alarms without end cannot make every checkpoint stay. The first ones
 * stay marked; past the limit a mark is not made (logged). */
#define KETEN_WITNESS_EVIDENCE_KEEP_MAX 256

/* One step of the retention pass (above) at now_ms: at most chunk records
 * looked at, in one write transaction (committed only when it removed
 * some). *removed: how many it removed; *done: the pass reached its end
 * (the next call starts a new one from the table's start). On failure
 * nothing of the step is stored and the pass starts over at the next call. */
keten_err keten_witness_prune(
    keten_node *node, uint64_t now_ms, size_t chunk, size_t *removed, bool *done) KETEN_MUST_CHECK;

/* Mark the stored witness checkpoint of that tree size (0: the newest
 * stored) as evidence of an alarm, in txn: the retention never removes it.
 * Nothing when none of that size is stored, when it is marked already, or
 * when KETEN_WITNESS_EVIDENCE_KEEP_MAX are marked (logged). The number
 * marked is kept in the state table ("checkpoints-evidence", 8 bytes,
 * big-endian), written with the mark. */
keten_err keten_witness_keep_as_evidence(
    keten_node *node, MDB_txn *txn, uint64_t size) KETEN_MUST_CHECK;

/* What an alarm keeps, in txn, just before the alarm is stored (alarm.c):
 * the newest stored checkpoint, and the one the alarm concerns when the
 * witness named it just before (a leaf proof that failed against it, a
 * checkpoint of its size with another root); that name is then forgotten.
 * The witness names it without writing, as its callers may hold a
 * transaction. node->witness may be NULL (an alarm before the witness
 * exists). */
keten_err keten_witness_keep_for_alarm(keten_node *node, MDB_txn *txn) KETEN_MUST_CHECK;

/* The evidence this node keeps: its newest checkpoint witnessed by a quorum
 * (with the cosignatures it saw), or if none is, its newest accepted
 * witness checkpoint: {"tree_size", "witnessed", "note"} (the C2SP signed
 * note text, for keten-audit verify --checkpoint). KETEN_ERR_NOT_FOUND
 * before the first. */
keten_err keten_witness_evidence(keten_node *node, json_t **out) KETEN_MUST_CHECK;
/* The checkpoints the node kept, in tree-size order:
 * [{"tree_size","witnessed","note"}...] (keten-node checkpoint --all, for an
 * auditor's keten-audit verify --checkpoint FILE): every one
 * accepted an hour or more before now_ms (the thinned series: at most
 * older_max, the oldest first, and after those every one kept as an alarm's
 * evidence, at most KETEN_WITNESS_EVIDENCE_KEEP_MAX), then the newest max
 * of the others. */
#define KETEN_WITNESS_EVIDENCE_ALL_MAX 1000
#define KETEN_WITNESS_EVIDENCE_OLDER_MAX 20000
keten_err keten_witness_evidence_all(
    keten_node *node, uint64_t now_ms, size_t older_max, size_t max, json_t **out) KETEN_MUST_CHECK;

#endif
