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
 * verified (keten_identity_request_verify). A request whose id is current is refused
 * (KETEN_ERR_DUPLICATE_ID) unless rotate is set: then the old certificate
 * moves to revocations with superseded = true and the new one replaces it.
 * A request reusing any key of any certificate, current or past, is refused
 * (KETEN_ERR_DUPLICATE_KEY). Serials come from next_serial and are never
 * reused. A second "broker" certificate is refused unless it rotates the
 * broker's.
 *
 * Registered values may be removed from the draft again
 * (keten_dirbuild_unregister), never while a rule names them; versions
 * already published keep them.
 *
 * Roles: a rule may name any role; keten_dirbuild_check_roles() is the
 * check a person's command line gets, refusing a role that is neither a
 * standard role (KETEN_DIRBUILD_STANDARD_ROLES) nor the role of a current
 * node of the draft, with "did you mean" and the known roles. It is separate
 * from keten_dirbuild_add_rule() so that a rule for a role no partner has
 * yet can still be written on purpose.
 *
 * Differences: keten_dirbuild_diff() says what a directory (the draft)
 * changes against an earlier one (the last published version): partners
 * added, rotated and revoked, rules, registered values, administrators and
 * threshold. It compares everything but version, times and previous_hash.
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

/* Remove a registered category and/or purpose (either may be NULL) from the
 * draft. KETEN_ERR_NOT_FOUND when it is not registered; KETEN_ERR_INVALID
 * when a rule names it (not through "*"): the detail names the rule, and
 * *rule_out (may be NULL) receives its id. The draft is unchanged on error. */
keten_err keten_dirbuild_unregister(keten_dirbuild *self, const char *category,
    const char *purpose, uint32_t *rule_out) KETEN_MUST_CHECK;

/* Add a certificate for a verified request, valid [now, now + valid_ms).
 * *serial_out receives its serial. */
keten_err keten_dirbuild_approve(keten_dirbuild *self, const Keten__NodeRequest *req,
    uint64_t now_ms, uint64_t valid_ms, bool rotate, uint64_t *serial_out) KETEN_MUST_CHECK;

/* Revoke a current certificate. KETEN_ERR_NOT_FOUND if id is not current. */
keten_err keten_dirbuild_revoke(keten_dirbuild *self, const char *id, const char *reason,
    uint64_t now_ms) KETEN_MUST_CHECK;

/* Add a rule from comma-separated lists (kinds and purposes may be NULL or
 * "" for all). Categories and purposes other than "*" must be registered.
 * *id_out receives the new rule's id: one above the highest id of the
 * draft and of keten_dirbuild_rule_ids_used(). */
keten_err keten_dirbuild_add_rule(keten_dirbuild *self, Keten__Effect effect, const char *from,
    const char *to, const char *categories, const char *kinds, const char *purposes,
    uint32_t *id_out) KETEN_MUST_CHECK;

/* The roles every network knows, whether or not a partner has them yet. */
#define KETEN_DIRBUILD_STANDARD_ROLES "municipality", "police", "tax", "housing", "riec"

/* Is role a standard role or the role of a current node of the draft? */
bool keten_dirbuild_role_known(const keten_dirbuild *self, const char *role);

/* Check every "role:NAME" party of a comma-separated party list (what names
 * the option, e.g. "--to"). KETEN_ERR_NOT_FOUND for the first unknown role,
 * with a detail that names it, suggests the known role it most likely
 * meant ("did you mean role:police?") and lists the known roles. Node ids
 * and "*" are not checked here. */
keten_err keten_dirbuild_check_roles(const keten_dirbuild *self, const char *parties,
    const char *what) KETEN_MUST_CHECK;

/* Rule ids are never reused: the caller names the highest rule id of every
 * version published so far (the draft holds only the rules in force), and
 * later keten_dirbuild_add_rule() calls number above it. Kept in memory
 * only; calls only raise it. */
void keten_dirbuild_rule_ids_used(keten_dirbuild *self, uint32_t max_id);

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

/* ---- differences ---------------------------------------------------- */

/* What `to` changes against `from`. Every pointer points into `from` or
 * `to` and is valid while both are; the arrays are owned by the diff. */
typedef struct keten_dirbuild_changes {
    /* certificates of `to` whose id has no current certificate in `from` */
    const Keten__NodeCert **added;
    size_t n_added;
    /* ids current in both with another certificate: new ones and old ones */
    const Keten__NodeCert **rotated_new, **rotated_old;
    size_t n_rotated;
    /* revocations (not supersessions) in `to` that `from` does not have */
    const Keten__Revocation **revoked;
    size_t n_revoked;
    const Keten__PolicyRule **rules_added, **rules_removed; /* by id and content */
    size_t n_rules_added, n_rules_removed;
    const char **categories_added, **categories_removed;
    size_t n_categories_added, n_categories_removed;
    const char **purposes_added, **purposes_removed;
    size_t n_purposes_added, n_purposes_removed;
    const ProtobufCBinaryData **admins_added, **admins_removed;
    size_t n_admins_added, n_admins_removed;
    uint32_t threshold_from, threshold_to; /* threshold_from is 0 without `from` */
    bool other; /* something else differs (message lifetime, witness quorum) */
    bool changed; /* anything differs but version, times and previous_hash */
} keten_dirbuild_changes;

/* The differences of `to` against `from`; from == NULL (nothing published
 * yet) is an empty directory. *out: keten_dirbuild_changes_destroy(). */
keten_err keten_dirbuild_diff(const Keten__Directory *from, const Keten__Directory *to,
    keten_dirbuild_changes **out) KETEN_MUST_CHECK;

/* Free; accepts NULL; sets *self_p = NULL. */
void keten_dirbuild_changes_destroy(keten_dirbuild_changes **self_p);

#endif
