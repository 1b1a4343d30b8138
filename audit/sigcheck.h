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
 * before the rotation. A receipt is checked with the certificate of the
 * serial it names (current, or revoked/superseded after the record's time).
 *
 * Thread safety: reentrant (the directory is only read); error details are
 * thread-local (err.h).
 * Errors (detail names the record by its seq): KETEN_ERR_INCONSISTENT (a
 * field missing or not decodable), KETEN_ERR_MISMATCH (record and signed
 * bytes disagree), KETEN_ERR_BAD_SIGNATURE, KETEN_ERR_REVOKED,
 * KETEN_ERR_EXPIRED (certificate not valid at that time),
 * KETEN_ERR_UNKNOWN_NODE, KETEN_ERR_NOMEM.
 */
#ifndef KETEN_AUDIT_SIGCHECK_H
#define KETEN_AUDIT_SIGCHECK_H

#include <stdint.h>

#include "directory.h"
#include "err.h"
#include "keten.h"

/* A submitted record's header: canonical, and its msg_id, sender,
 * recipients, kind, category, purpose, padded size and network (the
 * directory's) equal the record's; *created_at receives the header's. */
keten_err sigcheck_header(const keten_directory *dir, const Keten__AuditRecord *rec,
    uint64_t *created_at) KETEN_MUST_CHECK;

/* A submitted record's sender signature over "keten/envelope/v1" || header
 * || ciphertext_hash. buf/cap: a scratch buffer the caller keeps (realloc). */
keten_err sigcheck_submitted(const keten_directory *dir, const Keten__AuditRecord *rec,
    uint64_t created_at, uint8_t **buf, size_t *cap) KETEN_MUST_CHECK;

/* A receipted record's receipt: it parses, names the record's node, msg_id
 * and network and (unless envelope_hash is NULL) that envelope hash, and
 * verifies with the recipient's certificate of the serial it names. */
keten_err sigcheck_receipt(const keten_directory *dir, const Keten__AuditRecord *rec,
    const uint8_t *envelope_hash) KETEN_MUST_CHECK;

#endif
