/*
 * checkpointer.h - signed checkpoints of the audit log, the proofs that go
 * with the batch's frames, witness cosignatures and proof requests
 * (docs/wire.md "Checkpoints and witnesses", "Acknowledgement: a proof").
 *
 * The tree grows only inside a batch (one write transaction).
 * checkpointer_commit(), called last in every batch, in its transaction:
 *   - when the tree grew beyond the latest checkpoint, signs the "commit
 *     checkpoint" of the batch's final size N: origin "keten/<network>",
 *     key name = the broker's node id, signed with its log key and checked
 *     with its log_pk before use, with the extension line naming the
 *     installed directory version and hash. It is kept in memory (the
 *     latest one only), not stored; checkpointer_open() signs the one of
 *     the current size again at start, so there is always a latest one
 *     when the log is not empty;
 *   - every `checkpoint_records` records or `checkpoint_ms` ms (only if the
 *     tree grew) the commit checkpoint is also a witness checkpoint: stored
 *     in `checkpoints` (key: tree size) and sent, witness = true, to every
 *     connection with an accepted Hello. Cosignatures attach to stored
 *     ones only; the note is the same bytes either way (Ed25519 is
 *     deterministic) but for the cosignature lines a stored one gains;
 *   - fills every proof slot staged in the batch (outq.h) with a LeafProof
 *     against N, and puts before a connection's first proof frame a
 *     CheckpointFrame{note, old_size = c->cp_sent, consistency proof
 *     cp_sent -> N (empty when cp_sent is 0), witness} when cp_sent != N
 *     (or the batch made a witness checkpoint); cp_sent becomes N. A
 *     connection whose Hello came in this batch gets the checkpoint of N
 *     too, if cp_sent differs.
 * If the batch fails, checkpointer_undo() forgets the batch's commit
 * checkpoint (it was never sent) and server.c restores every cp_sent.
 *
 * Hello{tree_size} (checkpointer_hello()): tree_size larger than the log:
 * Error UNKNOWN_CHECKPOINT ("your checkpoint has N leaves; this log has
 * M"), audited as rejected, and the connection gets nothing more until a
 * Hello is accepted. Otherwise cp_sent = tree_size, and the deliveries in
 * flight on the connection are asked for again (deliver_hello(): they go
 * once the node has returned their credit, as a rewind, at most once every
 * DELIVER_RESEND_MS); unconfirmed notices come again on their own timer.
 *
 * A cosignature (checkpointer_cosign()) is answered, in this order:
 * Cosignature.node not the connection's node: Error SENDER_MISMATCH; no
 * stored checkpoint of tree_size: Error MALFORMED; a line that does not
 * parse as one signature line (or that the note cannot hold): Error
 * MALFORMED (TOO_LARGE); a line under another key name than the node's:
 * Error SENDER_MISMATCH; the note already carries a line of the node:
 * nothing (ignored, the first stays); a line that does not verify with the
 * node's signing key: Error BAD_SIGNATURE; else it is attached to the
 * stored note (keten_checkpoint_add_line), unanswered. When a stored
 * checkpoint of size S becomes witnessed (a quorum of partners cosigned),
 * its note with the cosignatures is sent again at the end of the batch to
 * every connection with an accepted Hello: witness = true with the
 * consistency proof cp_sent -> S when cp_sent <= S (cp_sent becomes S);
 * to a connection already sent a larger checkpoint as news about an older
 * size: old_size = S, no proof, witness = false, cp_sent unchanged.
 *
 * Proof requests are answered from the log: a consistency proof
 * old_size -> tree_size and, for each requested leaf (at most
 * CHECKPOINTER_PROOF_LEAVES), an InclusionProof with the leaf bytes. The
 * leaf bytes are the record, so every requested leaf must be a record the
 * asking node may see (audit_record_shown_to: its own traffic, or a
 * directory-installed record); a request naming any other is refused
 * whole, Error SENDER_MISMATCH naming the leaf, nothing of it sent.
 *
 * Single-threaded (main loop). Errors: those of the store and the Merkle
 * log, KETEN_ERR_NOMEM, KETEN_ERR_INCONSISTENT (a signed note that does not
 * read back; a stored checkpoint larger than the log).
 */
#ifndef KETEN_BROKER_CHECKPOINTER_H
#define KETEN_BROKER_CHECKPOINTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "conns.h"
#include "err.h"
#include "logproof.h"

#define CHECKPOINTER_PROOF_LEAVES 64
#define CHECKPOINTER_MEMO_SLOTS_LOG2 14 /* remembered subtree hashes: 16384 x 56 bytes */

typedef struct checkpointer {
    uint64_t last_size; /* tree size of the latest witness checkpoint (0: none) */
    uint64_t last_mono_ms; /* when it was made */
    /* The latest commit checkpoint (NULL while the log is empty). */
    char *note;
    size_t note_len;
    uint64_t size;
    /* The one before this batch's, while the batch may still fail. */
    char *undo_note;
    size_t undo_len;
    uint64_t undo_size;
    bool has_undo;
    bool witness; /* this batch's commit checkpoint is a witness checkpoint */
    /* A stored checkpoint that became witnessed in this batch. */
    char *rewit_note;
    size_t rewit_len;
    uint64_t rewit_size;
    uint64_t batch_size; /* N, while the proofs are made */
    keten_logproof_buf *lp;
    /* Subtree hashes remembered from one proof to the next: the proofs of
     * a batch share most of their upper path (merkle.h); cleared when a
     * batch is undone. */
    keten_merkle_log_memo *memo;
} checkpointer;

/* Read the latest stored checkpoint; sign the one of the current size. */
keten_err checkpointer_open(broker *b) KETEN_MUST_CHECK;
void checkpointer_destroy(checkpointer **self_p);

/* At the start of every batch (the previous one committed or undone). */
void checkpointer_begin(broker *b);
/* At the end of every batch (see above). */
keten_err checkpointer_commit(broker *b) KETEN_MUST_CHECK;
/* The batch failed. */
void checkpointer_undo(broker *b);

keten_err checkpointer_hello(
    broker *b, conn *c, uint64_t request_id, const Keten__Hello *h) KETEN_MUST_CHECK;

keten_err checkpointer_cosign(
    broker *b, const conn *c, uint64_t request_id, const Keten__Cosignature *cs) KETEN_MUST_CHECK;

keten_err checkpointer_proof(
    broker *b, const conn *c, uint64_t request_id, const Keten__ProofRequest *pr) KETEN_MUST_CHECK;

#endif
