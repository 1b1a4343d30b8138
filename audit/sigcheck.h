/*
 * sigcheck.h - the checks of one audit record that need no other record
 * than its message's submitted one: the signed header against the record's
 * fields, the sender's envelope signature and a recipient's receipt, each
 * with the certificate valid at that time in the directory in force at the
 * record (verify and check-proof both use them).
 *
 * Certificates "valid at that time": the sender's current certificate must
 * be valid at the header's created_at; a certificate that the directory
 * lists as revoked is accepted only for a record dated before the
 * revocation; a superseded one (key rotation) only for a message created
 * before the rotation. A receipt (a ReceiptProof: a recipient's signed
 * receipt batch head, the message's leaf and its path to the head's root,
 * lib/receipt.h) is checked with the certificate of the serial its head
 * names (current, or revoked/superseded after the record's time).
 *
 * Thread safety: reentrant (the directory is only read; a sigcheck_heads
 * cache belongs to one thread); error details are thread-local (err.h).
 * Errors (detail names the record by its seq): KETEN_ERR_INCONSISTENT (a
 * field missing or not decodable), KETEN_ERR_MISMATCH (record and signed
 * bytes disagree), KETEN_ERR_BAD_SIGNATURE, KETEN_ERR_REVOKED,
 * KETEN_ERR_EXPIRED (certificate not valid at that time),
 * KETEN_ERR_UNKNOWN_NODE, KETEN_ERR_NOMEM.
 */
#ifndef KETEN_AUDIT_SIGCHECK_H
#define KETEN_AUDIT_SIGCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "directory.h"
#include "err.h"
#include "keten.h"

/* A submitted record's header: canonical, and its msg_id, sender,
 * recipients, kind, category, purpose, padded size and network (the
 * directory's) equal the record's; *created_at and *expires_at (may be
 * NULL) receive the header's. */
keten_err sigcheck_header(const keten_directory *dir, const Keten__AuditRecord *rec,
    uint64_t *created_at, uint64_t *expires_at) KETEN_MUST_CHECK;

/* A submitted record's sender signature over "keten/envelope/v1" || header
 * || ciphertext_hash. buf/cap: a scratch buffer the caller keeps (realloc). */
keten_err sigcheck_submitted(const keten_directory *dir, const Keten__AuditRecord *rec,
    uint64_t created_at, uint8_t **buf, size_t *cap) KETEN_MUST_CHECK;

/* A submitted record's policy rule (AuditRecord.rule), against the sharing
 * policy of dir (docs/protocol.md section 8), evaluated from the record's
 * sender, recipients, kind, category and purpose (sigcheck_header has
 * checked them against the signed header) as the broker evaluates it: every
 * recipient must be a current node of dir and allowed, and the rule
 * recorded is the lowest rule id that allowed one of the recipients. Call
 * it after sigcheck_submitted (a sender with no current certificate is
 * named there). KETEN_ERR_POLICY: the policy refuses the message, or
 * allows it by another rule than the one recorded; KETEN_ERR_UNKNOWN_NODE:
 * a recipient is not a current node of dir. */
keten_err sigcheck_rule(const keten_directory *dir, const Keten__AuditRecord *rec) KETEN_MUST_CHECK;

/* ---- receipts (receipted and refused-by-recipient records) -------------- */

/* The receipt batch heads already verified, so that each distinct head is
 * checked once however many records its batch answered: key = SHA-256 of the
 * certificate's signing key, the head and the signature (length-prefixed).
 * Owns parsed copies of the heads. One thread at a time. */
typedef struct sigcheck_heads sigcheck_heads;

sigcheck_heads *sigcheck_heads_new(void);
void sigcheck_heads_destroy(sigcheck_heads **self_p);
/* Head signatures actually verified (cache misses that verified). */
uint64_t sigcheck_heads_verified(const sigcheck_heads *self);

/* A receipted or refused-by-recipient record's ReceiptProof, against the
 * submitted record of its message (envelope_hash; NULL: not checked):
 *   - the head parses canonically and names the record's node as recipient;
 *   - the certificate of that node with the head's cert_serial, in dir:
 *     current, or revoked/superseded after the record's time;
 *   - the head's signature by that certificate over "keten/receipts/v2" ||
 *     head for dir's network (once per distinct head: heads may be NULL to
 *     check every time);
 *   - the leaf's audit path leads to the head's root;
 *   - the leaf names the record's msg_id and envelope_hash;
 *   - the outcome matches the event: STORED for receipted (record reason
 *     REASON_NONE), REFUSED for refused-by-recipient with a reason a
 *     recipient may give, equal to the record's reason.
 * *leaf_out (may be NULL) receives the parsed leaf (keten_pb_free). */
keten_err sigcheck_receipt(const keten_directory *dir, const Keten__AuditRecord *rec,
    const uint8_t *envelope_hash, sigcheck_heads *heads,
    Keten__ReceiptLeaf **leaf_out) KETEN_MUST_CHECK;

/* What a receipt's unverified head says (for display: stored_at); false
 * when the record holds no parsable head. */
bool sigcheck_receipt_stored_at(const Keten__AuditRecord *rec, uint64_t *stored_at);

#endif
