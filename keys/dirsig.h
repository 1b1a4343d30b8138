/*
 * dirsig.h - how the signatures on a SignedDirectory stand: which verify,
 * whose they are, and how many of the required ones it carries
 * (docs/protocol.md section 9.3: k distinct keys of the previous version's
 * administrators, and on a change of administrators also k' of the new ones).
 *
 * These are the numbers keten-keys prints ("1 of 2 signatures; needs 1 more");
 * whether a directory is valid is decided by keten_directory_verify() alone.
 * Thread safety: reentrant.
 */
#ifndef KETEN_KEYS_DIRSIG_H
#define KETEN_KEYS_DIRSIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adminkey.h"
#include "err.h"
#include "keten.h"

/* "keten/directory/v1" || directory bytes, malloc()ed. */
keten_err dirsig_message(
    const ProtobufCBinaryData *dir, uint8_t **msg, size_t *len) KETEN_MUST_CHECK;

/* Does sig (32-byte key, 64-byte signature) verify over msg? */
bool dirsig_verifies(const uint8_t *msg, size_t len, const Keten__DirectorySignature *sig);

typedef struct dirsig_tally {
    size_t signatures; /* signatures in the file, valid or not */
    size_t old_valid; /* distinct valid signatures by the signing set */
    uint32_t old_threshold; /* the signing set's threshold */
    bool admin_change; /* the version changes administrators or threshold */
    size_t new_valid; /* distinct valid signatures by the new set */
    uint32_t new_threshold; /* the new set's threshold */
    bool enough; /* every required count is met */
} dirsig_tally;

/* Count sd's signatures against the signing set (the previous version's
 * administrators) and, when `next` differs from it, against `next`. */
keten_err dirsig_count(const Keten__SignedDirectory *sd, const adminkey_set *signing,
    const adminkey_set *next, dirsig_tally *out) KETEN_MUST_CHECK;

/* One line: "1 of 2 signatures; needs 1 more (keten-keys sign)" and so on. */
void dirsig_tally_text(const dirsig_tally *t, char *out, size_t size);

/* The tally as a JSON object (NULL when out of memory). */
json_t *dirsig_tally_json(const dirsig_tally *t);

/* Verify SignedDirectory bytes with `signing` (network, administrators,
 * threshold) in the place of the anchor, as keten_directory_verify() does.
 * now_ms == 0 skips the time checks. */
keten_err dirsig_verify_with_set(const char *network, const adminkey_set *signing, const uint8_t *buf,
    size_t len, uint64_t now_ms) KETEN_MUST_CHECK;

#endif
