/*
 * verifier.h - the full verification of an audit log (keten-audit verify,
 * docs/audit.md "What verify checks"), trusting nothing
 * but the network anchor:
 *
 *   1. every leaf: its key is its index (no gap), SHA-256 leaf hash, and the
 *      RFC 9162 tree recomputed from the leaves; every stored subtree hash
 *      ("audit-node") is compared with the recomputed one, the stored tree
 *      holds no hash beyond the log, and the stored root equals the computed
 *      root;
 *   2. every record decodes canonically, seq == leaf index, times never go
 *      back, directory_version names the version in force;
 *   3. directory-installed records: each SignedDirectory verifies as a chain
 *      from the anchor (administrators' signatures, versions only go up);
 *      the "directories" table holds the same versions;
 *   4. submitted records: the header parses canonically and its sender,
 *      recipients, kind, category, purpose, msg_id, network and padded size
 *      equal the record's; the sender's Ed25519 signature over
 *      "keten/envelope/v1" || header || ciphertext_hash verifies with the
 *      sender's certificate in the directory in force, valid at the header's
 *      created_at; a key revoked before the record's time, or a superseded
 *      key used after its rotation, fails; a msg_id submitted twice fails;
 *   5. receipted and refused-by-recipient records hold the recipient's
 *      ReceiptProof (lib/receipt.h): the batch head's signature verifies
 *      with the recipient's certificate of the serial the head names (from
 *      the directory in force; a revoked or superseded one only for a
 *      record dated before its revocation), once per distinct head and
 *      signature; the leaf's audit path leads to the head's root; the leaf
 *      names the record's msg_id and the envelope hash of the message's
 *      submitted record; the outcome is STORED for receipted and REFUSED
 *      with a recipient's reason (equal to the record's) for
 *      refused-by-recipient; the head names the record's node, which is a
 *      recipient of the message and the record's only recipient, and the
 *      record's sender is the message's; delivered and expired records
 *      name an earlier submitted message, its sender and its recipients;
 *      per recipient of a message at most one delivered record and one
 *      final record (receipted, refused-by-recipient or expired), the
 *      delivered one first (the broker logs no more);
 *   6. every stored checkpoint, and every checkpoint given from outside (a
 *      note file, or all the notes a partner node kept in its home):
 *      the broker's signature with the log key of the directory version it
 *      names, which must be the version in force at its size with the same
 *      hash; its size is not beyond the log, and its root equals the root of
 *      the log's first `size` records; its cosignatures are counted against
 *      that directory's quorum (witnessed or not).
 *
 * The first inconsistency by sequence number is reported (a checkpoint of
 * size S counts as record S - 1, or as the first missing record when S is
 * beyond the log). Sender signatures are checked by worker threads over
 * batches of records while the main thread reads the log in order; the
 * main thread checks receipts (one signature per receipt batch).
 *
 * Ownership: the result is plain data. Thread safety: one call at a time per
 * auditdb (it uses the db's transaction from the calling thread only).
 * Errors: verifier_run() returns KETEN_OK when the verification ran to a
 * verdict (res->ok tells which); other errors (a --checkpoint file that
 * cannot be read, KETEN_ERR_NOMEM, KETEN_ERR_STORE) mean no verdict.
 */
#ifndef KETEN_AUDIT_VERIFIER_H
#define KETEN_AUDIT_VERIFIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auditdb.h"
#include "err.h"
#include "keten.h"
#include "merkle.h"

#define VERIFIER_WHAT_MAX 1024
#define VERIFIER_THREADS_MAX 64
#define VERIFIER_EVENTS 11 /* Event enum values 0..10 */

typedef struct verifier_opts {
    const Keten__Anchor *anchor; /* required */
    const char *const *checkpoints; /* --checkpoint files (notes) */
    size_t n_checkpoints;
    unsigned threads; /* signature workers; 0: online CPUs */
    bool progress; /* progress lines on stderr */
} verifier_opts;

typedef struct verifier_failure {
    uint64_t seq; /* the record concerned (see no_record) */
    /* A failure of a file given beside the records (a --checkpoint file or
     * keten/directories that does not parse), found once every record
     * passed: seq is then the number of records and names none. */
    bool no_record;
    keten_err err;
    char what[VERIFIER_WHAT_MAX];
} verifier_failure;

typedef struct verifier_result {
    bool ok;
    verifier_failure failure; /* when !ok */
    char network[KETEN_NAME_MAX + 1];
    uint64_t records; /* leaves read (the tree size when ok) */
    keten_hash root;
    uint64_t first_time, last_time; /* broker's clock, ms */
    uint64_t events[VERIFIER_EVENTS];
    uint64_t sender_signatures; /* submitted records whose signature verified */
    uint64_t receipts; /* receipted and refused-by-recipient records checked */
    uint64_t receipt_signatures; /* distinct receipt batch heads whose signature verified */
    uint64_t directory_versions; /* versions installed in the log */
    uint64_t directory_version; /* the latest */
    uint64_t checkpoints; /* stored checkpoints checked */
    uint64_t checkpoints_witnessed;
    uint64_t latest_checkpoint; /* largest stored checkpoint size */
    uint64_t witnessed_size; /* largest witnessed stored checkpoint size */
    size_t quorum, partners; /* of the latest directory */
    uint64_t external; /* --checkpoint notes checked */
    uint64_t external_witnessed;
    uint64_t external_max_size;
    size_t external_cosigners; /* largest cosignature count among them */
    unsigned threads;
    double seconds;
} verifier_result;

/* Where a failure is, for its one-line message: " at record N", or "" when
 * it names no record (no_record). */
#define VERIFIER_AT_MAX 40
void verifier_failure_at(const verifier_failure *f, char out[static VERIFIER_AT_MAX]);

keten_err verifier_run(
    const auditdb *db, const verifier_opts *opts, verifier_result *res) KETEN_MUST_CHECK;

#endif
