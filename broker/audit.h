/*
 * audit.h - the broker's audit records (docs/audit.md): one AuditRecord
 * per event, appended to the Merkle log in the batch's write transaction
 * (b->txn). seq is the leaf index, time the broker clock of the batch
 * (b->now), directory_version the installed version.
 *
 * What goes in: ids, codes, the exact signed header bytes, hashes and
 * signatures, a recipient's receipt proof (signed batch head, leaf, path),
 * signed directory bytes. Never
 * content, subject identifiers, wrapped keys or anything a sender typed
 * outside the signed header.
 *
 * Every function returns the new leaf index in *leaf (may be NULL).
 * Errors: those of keten_merkle_log_append() (KETEN_ERR_STORE_FULL on a full map),
 * KETEN_ERR_NOMEM, KETEN_ERR_STORE (the leaf index is not the expected seq).
 */
#ifndef KETEN_BROKER_AUDIT_H
#define KETEN_BROKER_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "envelope.h"
#include "err.h"

/* An accepted message: header bytes, hashes, signature, size bucket, the
 * allowing rule. */
keten_err audit_submitted(
    broker *b, const keten_envelope_verified *v, uint32_t rule, uint64_t *leaf) KETEN_MUST_CHECK;

/* A refused request: msg_id (NULL if none could be read), the authenticated
 * node as sender, the reason, the deciding rule (REASON_POLICY only). */
keten_err audit_rejected(broker *b, const uint8_t *msg_id, const char *sender, Keten__Reason reason,
    uint32_t rule, uint64_t *leaf) KETEN_MUST_CHECK;

/* A message handed to recipient `node` (once per recipient). */
keten_err audit_delivered(broker *b, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const char *sender, const char *node, uint64_t *leaf) KETEN_MUST_CHECK;

/* A recipient's answer from a verified receipt batch: event RECEIPTED
 * (reason REASON_NONE) or REFUSED_BY_RECIPIENT (the leaf's reason), the
 * recipient as node and as the one recipient, and its ReceiptProof. */
keten_err audit_answered(broker *b, Keten__Event event, Keten__Reason reason,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *sender, const char *node,
    const Keten__ReceiptProof *receipt, uint64_t *leaf) KETEN_MUST_CHECK;

/* A message that expired; recipients: those that never answered it. */
keten_err audit_expired(broker *b, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const char *sender, const char *const *recipients, size_t n, uint64_t *leaf) KETEN_MUST_CHECK;

/* An installed directory version (its signed bytes). */
keten_err audit_directory(broker *b, const uint8_t *signed_dir, size_t len, uint64_t version,
    uint64_t *leaf) KETEN_MUST_CHECK;

/* node-connected, node-disconnected, auth-failed: only the node (or, for
 * an unknown key, the key's hex). */
keten_err audit_node(
    broker *b, Keten__Event event, const char *node, uint64_t *leaf) KETEN_MUST_CHECK;

/* auth-failed for a connection cut off because its certificate stopped being
 * current: the node, the reason (REVOKED, KEYS_REPLACED, UNKNOWN_SENDER) and
 * the directory version in force (the one that made it so). */
keten_err audit_node_refused(
    broker *b, const char *node, Keten__Reason reason, uint64_t *leaf) KETEN_MUST_CHECK;

/* Whether the audit record in leaf (len bytes) may be shown to node: node
 * is a party to it (its sender, one of its recipients, or the node it
 * concerns: delivered to, receipted by, connected, refused), or it is a
 * directory-installed record (every partner holds the directory). A record
 * of other partners' traffic (their msg_ids, who sent what category and
 * purpose to whom, when) is not node's to see; nor is a leaf that does not
 * parse. */
bool audit_record_shown_to(const uint8_t *leaf, size_t len, const char *node);

#endif
