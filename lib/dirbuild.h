/*
 * dirbuild.h - the administrators' working copy of the next directory
 * version (keten-keys keeps it in ADMIN/state).
 *
 * A keten_dirbuild owns a draft Keten__Directory (version = the version the
 * next publish will carry, previous_hash = SHA-256 of the last published
 * Directory bytes or empty before the first). Every edit checks its input
 * and leaves the draft unchanged on error. keten_dirbuild_finish() stamps
 * issued_at/expires_at, runs keten_directory_check() and serializes;
 * keten_dirbuild_advance() is called once that version has been published.
 *
 * Rules on enrollment (keten_dirbuild_approve): the request must already be
 * verified (keten_request_verify). A request whose id is current is refused
 * (KETEN_ERR_DUPLICATE_ID) unless rotate is set: then the old certificate
 * moves to revocations with superseded = true and the new one replaces it.
 * A request reusing any key of any certificate, current or past, is refused
 * (KETEN_ERR_DUPLICATE_KEY). Serials come from next_serial and are never
 * reused. A second "broker" certificate is refused unless it rotates the
 * broker's.
 *
 * Ownership: *out buffers malloc()ed. Not thread-safe (one administrator
 * process edits one draft).
 */
#ifndef KETEN_DIRBUILD_H
#define KETEN_DIRBUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"

typedef struct keten_dirbuild keten_dirbuild;

/* A new draft for version 1. admins: n distinct 32-byte Ed25519 keys,
 * 1 <= threshold <= n <= KETEN_MAX_ADMINS. */
keten_err keten_dirbuild_new(const char *network, const uint8_t (*admins)[KETEN_SIGN_PK_BYTES],
    size_t n_admins, uint32_t threshold, keten_dirbuild **out) KETEN_MUST_CHECK;

/* The draft from/to its saved form (a serialized Directory). */
keten_err keten_dirbuild_load(const uint8_t *buf, size_t len, keten_dirbuild **out)
    KETEN_MUST_CHECK;
keten_err keten_dirbuild_save(const keten_dirbuild *self, uint8_t **out, size_t *out_len)
    KETEN_MUST_CHECK;

void keten_dirbuild_destroy(keten_dirbuild **self_p);

/* Read access to the draft; valid until the next edit or destroy. */
const Keten__Directory *keten_dirbuild_doc(const keten_dirbuild *self);

/* Register a category and/or a purpose (either may be NULL); registering one
 * that exists is a no-op. KETEN_ERR_BAD_NAME for a bad label. */
keten_err keten_dirbuild_register(keten_dirbuild *self, const char *category,
    const char *purpose) KETEN_MUST_CHECK;

/* Add a certificate for a verified request, valid [now, now + valid_ms).
 * *serial_out receives its serial. */
keten_err keten_dirbuild_approve(keten_dirbuild *self, const Keten__NodeRequest *req,
    uint64_t now_ms, uint64_t valid_ms, bool rotate, uint64_t *serial_out) KETEN_MUST_CHECK;

/* Revoke a current certificate. KETEN_ERR_NOT_FOUND if id is not current. */
keten_err keten_dirbuild_revoke(keten_dirbuild *self, const char *id, const char *reason,
    uint64_t now_ms) KETEN_MUST_CHECK;

/* Add a rule from comma-separated lists (kinds and purposes may be NULL or
 * "" for all). Categories and purposes other than "*" must be registered.
 * *id_out receives the new rule's id (max id + 1). */
keten_err keten_dirbuild_add_rule(keten_dirbuild *self, Keten__Effect effect, const char *from,
    const char *to, const char *categories, const char *kinds, const char *purposes,
    uint32_t *id_out) KETEN_MUST_CHECK;

/* Remove a rule by id. KETEN_ERR_NOT_FOUND. */
keten_err keten_dirbuild_remove_rule(keten_dirbuild *self, uint32_t id) KETEN_MUST_CHECK;

/* Replace the administrator set and threshold of the next version. */
keten_err keten_dirbuild_set_admins(keten_dirbuild *self,
    const uint8_t (*admins)[KETEN_SIGN_PK_BYTES], size_t n_admins, uint32_t threshold)
    KETEN_MUST_CHECK;

/* Serialized Directory of the draft, issued now, expiring now + valid_ms. */
keten_err keten_dirbuild_finish(keten_dirbuild *self, uint64_t now_ms, uint64_t valid_ms,
    uint8_t **out, size_t *out_len) KETEN_MUST_CHECK;

/* The draft's version was published with these Directory bytes: version + 1,
 * previous_hash = SHA-256(dir_bytes). */
keten_err keten_dirbuild_advance(keten_dirbuild *self, const uint8_t *dir_bytes, size_t len)
    KETEN_MUST_CHECK;

#endif
