/*
 * checkpoint.h - signed checkpoints of the audit log and witness
 * cosignatures (docs/protocol.md section 12), in the C2SP formats so that tools outside
 * keten can verify them:
 *   - c2sp.org/tlog-checkpoint: body = origin line, tree size (decimal),
 *     base64 root hash, then extension lines; each line ends in "\n".
 *     keten's origin is "keten/" + network; it adds one extension line
 *     "directory <version> <base64 SHA-256 of the Directory bytes>".
 *   - c2sp.org/signed-note: body, an empty line, then signature lines
 *     "\u2014 <key name> <base64(key hash (4) || signature)>\n". Ed25519 keys
 *     (type 0x01): key hash = SHA-256(name || "\n" || 0x01 || pk)[:4],
 *     signature over the body bytes.
 *   - c2sp.org/tlog-cosignature (cosignature/v1, type 0x04): key hash =
 *     SHA-256(name || "\n" || 0x04 || pk)[:4]; signed message =
 *     "cosignature/v1\ntime <decimal seconds>\n" || checkpoint body;
 *     signature line payload = key hash (4) || timestamp (8, big-endian) ||
 *     Ed25519 signature (64).
 * The broker's key name is its node id and it signs with its log key; a
 * witness (partner node) signs cosignatures with its certificate's sign key
 * under its node id.
 *
 * Ownership: returned strings are malloc()ed (free()). Thread-safe.
 * Errors: KETEN_ERR_TOO_LARGE (over KETEN_CHECKPOINT_MAX), KETEN_ERR_MALFORMED
 * (detail: which line), KETEN_ERR_BAD_SIGNATURE, KETEN_ERR_NOT_FOUND (no
 * signature by that key), KETEN_ERR_WRONG_NETWORK (origin).
 */
#ifndef KETEN_CHECKPOINT_H
#define KETEN_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directory.h"
#include "err.h"
#include "keten.h"
#include "merkle.h"

#define KETEN_ORIGIN_MAX 128

typedef struct keten_checkpoint {
    char origin[KETEN_ORIGIN_MAX + 1];
    uint64_t size;
    keten_hash root;
    uint64_t dir_version;
    uint8_t dir_hash[KETEN_HASH_BYTES];
} keten_checkpoint;

/* Body text of a checkpoint (no signatures). */
keten_err keten_checkpoint_body(const keten_checkpoint *cp, char **out) KETEN_MUST_CHECK;

/* Signed note: body + broker signature line. Before it returns, the note is
 * opened as a reader would (its signature verified) and must read back as
 * cp; otherwise KETEN_ERR_CRYPTO or KETEN_ERR_INCONSISTENT and no note. */
keten_err keten_checkpoint_sign(const keten_checkpoint *cp, const char *key_name,
    const uint8_t sk[static KETEN_SIGN_SK_BYTES], char **note_out) KETEN_MUST_CHECK;

/* Parse a signed note and verify the signature line of key_name/pk on it;
 * other signature lines are kept but not checked here. */
keten_err keten_checkpoint_open(const char *note, size_t len, const char *key_name,
    const uint8_t pk[static KETEN_SIGN_PK_BYTES], keten_checkpoint *out) KETEN_MUST_CHECK;

/* Parse the body only (no signature check), e.g. to see what a note claims. */
keten_err keten_checkpoint_parse_body(const char *body, size_t len, keten_checkpoint *out)
    KETEN_MUST_CHECK;

/* A witness cosignature line over the note's body, at time_s (seconds). */
keten_err keten_checkpoint_cosignature_sign(const char *note, size_t len, const char *witness_name,
    const uint8_t sk[static KETEN_SIGN_SK_BYTES], uint64_t time_s,
    char **line_out) KETEN_MUST_CHECK;

/* Verify witness_name/pk's cosignature line in the note; *time_s_out. */
keten_err keten_checkpoint_cosignature_verify(const char *note, size_t len,
    const char *witness_name, const uint8_t pk[static KETEN_SIGN_PK_BYTES],
    uint64_t *time_s_out) KETEN_MUST_CHECK;

/* Append a signature line to a note (refuses a second line of that key name,
 * KETEN_ERR_EXISTS); *out is the new note. */
keten_err keten_checkpoint_add_line(const char *note, size_t len, const char *line, char **out)
    KETEN_MUST_CHECK;

/* The note with only the signature lines a reader of it checks: of the
 * broker and of each partner node of dir, the first line under its node id
 * with its key id (the broker's log key, the partner's cosignature key); the
 * others (other names, other key ids, a second line of one name) dropped.
 * Each line signs the body alone, so the note reads as before. For keeping
 * a note the broker sent: its lines cost the store nothing past one per
 * node. *out is malloc()ed, NUL-terminated. */
keten_err keten_checkpoint_note_trim(
    const char *note, size_t len, const keten_directory *dir, char **out) KETEN_MUST_CHECK;

/* Count distinct current partner nodes of dir (not the broker) whose valid
 * cosignature the note carries: of a partner's lines under its name and
 * cosignature key id only the first is checked (docs/protocol.md);
 * *witnessed = count >= quorum. */
keten_err keten_checkpoint_witnesses(const char *note, size_t len, const keten_directory *dir,
    size_t *count_out, bool *witnessed) KETEN_MUST_CHECK;

#endif
