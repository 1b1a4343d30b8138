/*
 * proof.h - proof bundles (keten-audit prove and check-proof): everything
 * needed to show, without the database, what happened to one message and
 * that its records are in the log the broker signed, in a JSON document
 * (format v2; fields in docs/audit.md, "Proof bundles"):
 *
 *   format       "keten-proof/v2" (the version: a "keten-proof/v1" bundle,
 *                from before receipt batches, is refused with a message
 *                saying so)
 *   network      network name
 *   msg_id       the message (32 hex)
 *   checkpoint   the C2SP signed note the proofs lead to, with its
 *                cosignature lines, exactly as stored
 *   log_key      {name, public_key (base64 Ed25519), key_id (hex, the C2SP
 *                signed-note key hash)}: the broker's log key
 *   directories  the SignedDirectory bytes (base64) of versions 1 up to the
 *                version the checkpoint names, oldest first: they tie the log
 *                key and the partners' certificates (senders', recipients')
 *                to the network anchor
 *   records      [{leaf_index, tree_size, event, leaf (base64 of the exact
 *                AuditRecord bytes), leaf_hash (base64), audit_path (base64
 *                hashes, RFC 9162 order)}], every record of the message in
 *                log order: submitted, delivered, receipted,
 *                refused-by-recipient, expired, rejected. A receipted or
 *                refused-by-recipient record holds the recipient's
 *                ReceiptProof (AuditRecord field 14: signed batch head, the
 *                message's ReceiptLeaf, its path to the head's root).
 *
 * check: the directory chain verifies from the anchor; the checkpoint names a
 * version of it with that version's hash; log_key is that version's broker
 * log key; the checkpoint's signature verifies with it; every leaf hashes to
 * its leaf_hash and its audit path leads to the checkpoint's root at
 * tree_size (RFC 9162 2.1.3.2); every leaf is an AuditRecord of msg_id with
 * seq == leaf_index; the submitted record's header and sender signature
 * verify with the directory version in force (the record's
 * directory_version); every later record names the submitted record's
 * sender, and its node (or expired recipients) among its recipients; every
 * receipt's batch head verifies with the recipient's certificate of the
 * serial it names (once per distinct head), its leaf's path leads to the
 * head's root, the leaf names msg_id and the submitted record's envelope
 * hash, and its outcome is the record's (STORED: receipted; REFUSED with a
 * recipient's reason: refused-by-recipient). The cosignatures are counted
 * against the checkpoint directory's quorum.
 *
 * Ownership: proof_build() returns a new JSON object (json_decref()).
 * Thread safety: reentrant. Errors: KETEN_ERR_NOT_FOUND (no record of the
 * message; no checkpoint covering them yet), KETEN_ERR_INCONSISTENT (the log
 * does not match its own checkpoint), KETEN_ERR_NOMEM, KETEN_ERR_STORE;
 * proof_check(): KETEN_ERR_MALFORMED (not a bundle, or a version 1 bundle:
 * the detail says which), and the verification errors of the checks above,
 * each with a detail.
 */
#ifndef KETEN_AUDIT_PROOF_H
#define KETEN_AUDIT_PROOF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auditdb.h"
#include "err.h"
#include "keten.h"

#define PROOF_FORMAT "keten-proof/v2"
#define PROOF_FORMAT_V1 "keten-proof/v1" /* refused: before receipt batches */
#define PROOF_MAX (64u << 20) /* bytes of a bundle */
#define PROOF_MAX_RECORDS 4096
#define PROOF_MAX_DIRECTORIES 4096

keten_err proof_build(const auditdb *db, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    json_t **out) KETEN_MUST_CHECK;

typedef struct proof_record {
    uint64_t leaf_index;
    uint64_t time; /* the record's time (ms): the broker's claim */
    uint32_t rule; /* rejected: the rule the broker recorded (0: the default deny) */
    int event;
    int reason; /* rejected: the broker's; refused-by-recipient: the recipient's */
    char node[KETEN_NAME_MAX + 1]; /* delivered / receipted / refused: the recipient */
    /* expired: the recipients it expired for, a bit per recipient of the
     * message (bit i: proof_result.message.recipients[i]) */
    uint64_t expired_for;
} proof_record;

/* What the message's submitted record says: its header's fields, which the
 * sender signed (checked), and the rule the broker recorded as allowing it. */
typedef struct proof_message {
    bool known; /* the bundle holds the submitted record */
    char sender[KETEN_NAME_MAX + 1];
    size_t n_recipients;
    char recipients[KETEN_MAX_RECIPIENTS][KETEN_NAME_MAX + 1];
    int kind;
    char category[KETEN_LABEL_MAX + 1];
    char purpose[KETEN_LABEL_MAX + 1];
    uint64_t created_at; /* ms, the sender's clock, signed */
    uint32_t rule; /* the allowing policy rule: the broker's record */
} proof_message;

typedef struct proof_result {
    char network[KETEN_NAME_MAX + 1];
    char msg_id[KETEN_MSG_ID_HEX_BYTES];
    proof_message message;
    uint64_t tree_size;
    keten_hash root;
    uint64_t directory_version;
    char log_key_name[KETEN_NAME_MAX + 1];
    size_t n_records;
    proof_record records[PROOF_MAX_RECORDS];
    size_t cosigners, quorum;
    bool witnessed;
    uint64_t receipt_heads; /* receipt batch head signatures verified */
} proof_result;

/* Check a bundle (its bytes) against the anchor. */
keten_err proof_check(const uint8_t *buf, size_t len, const Keten__Anchor *anchor,
    proof_result *res) KETEN_MUST_CHECK;

#endif
