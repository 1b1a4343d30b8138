/*
 * proof.h - proof bundles (keten-audit prove and check-proof): everything
 * needed to show, without the database, that a message's records are in the
 * log the broker signed, in a JSON document any RFC 9162 / C2SP tool can
 * check (fields in docs/audit.md, "Proof bundles"):
 *
 *   format       "keten-proof/v1"
 *   network      network name
 *   msg_id       the message (32 hex)
 *   checkpoint   the C2SP signed note the proofs lead to, with its
 *                cosignature lines, exactly as stored
 *   log_key      {name, public_key (base64 Ed25519), key_id (hex, the C2SP
 *                signed-note key hash)}: the broker's log key
 *   directories  the SignedDirectory bytes (base64) of versions 1 up to the
 *                version the checkpoint names, oldest first, so that the log
 *                key can be tied to the network anchor
 *   records      [{leaf_index, tree_size, event, leaf (base64 of the exact
 *                AuditRecord bytes), leaf_hash (base64), audit_path (base64
 *                hashes, RFC 9162 order)}]
 *
 * check: the directory chain verifies from the anchor; the checkpoint names a
 * version of it with that version's hash; log_key is that version's broker
 * log key; the checkpoint's signature verifies with it; every leaf hashes to
 * its leaf_hash and its audit path leads to the checkpoint's root at
 * tree_size (RFC 9162 2.1.3.2); every leaf is an AuditRecord of msg_id with
 * seq == leaf_index; submitted and receipted records' signatures verify with
 * the directory version in force (the record's directory_version). The
 * cosignatures are counted against that directory's quorum.
 *
 * Ownership: proof_build() returns a new JSON object (json_decref()).
 * Thread safety: reentrant. Errors: KETEN_ERR_NOT_FOUND (no record of the
 * message; no checkpoint covering them yet), KETEN_ERR_INCONSISTENT (the log
 * does not match its own checkpoint), KETEN_ERR_NOMEM, KETEN_ERR_STORE;
 * proof_check(): KETEN_ERR_MALFORMED (not a bundle: the detail says where),
 * and the verification errors of the checks above, each with a detail.
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

#define PROOF_FORMAT "keten-proof/v1"
#define PROOF_MAX (64u << 20) /* bytes of a bundle */
#define PROOF_MAX_RECORDS 4096
#define PROOF_MAX_DIRECTORIES 4096

keten_err proof_build(const auditdb *db, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    json_t **out) KETEN_MUST_CHECK;

typedef struct proof_record {
    uint64_t leaf_index;
    int event;
    char node[KETEN_NAME_MAX + 1]; /* delivered / receipted: the recipient */
} proof_record;

typedef struct proof_result {
    char network[KETEN_NAME_MAX + 1];
    char msg_id[KETEN_MSG_ID_HEX_BYTES];
    uint64_t tree_size;
    keten_hash root;
    uint64_t directory_version;
    char log_key_name[KETEN_NAME_MAX + 1];
    size_t n_records;
    proof_record records[PROOF_MAX_RECORDS];
    size_t cosigners, quorum;
    bool witnessed;
} proof_result;

/* Check a bundle (its bytes) against the anchor. */
keten_err proof_check(const uint8_t *buf, size_t len, const Keten__Anchor *anchor,
    proof_result *res) KETEN_MUST_CHECK;

#endif
