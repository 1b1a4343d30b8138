/*
 * dirinfo.h - what the directory versions of an export say about the
 * partners, read for display and filtering (not verified: verify checks the
 * chain): each node id's organisation name, every transport key any
 * certificate of a node ever had (current, rotated away or revoked: an
 * auth-failed record names the refused key, and the key may be one of a
 * node's past certificates), and per version its date and what changed
 * (nodes added, revoked, keys rotated; the administrators, the policy, the
 * registry, the witness quorum or the message lifetime changed), and the
 * rules of its sharing policy.
 *
 * Ownership: dirinfo_load() returns a handle freed with dirinfo_destroy();
 * strings it returns live as long as the handle.
 * Thread safety: read-only after loading.
 * Errors: KETEN_ERR_NOMEM; a version that does not decode is skipped (the
 * reading commands read the log as it is; verify names it).
 */
#ifndef KETEN_AUDIT_DIRINFO_H
#define KETEN_AUDIT_DIRINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auditdb.h"
#include "err.h"

typedef struct dirinfo dirinfo;

/* A change a directory version made to a node's certificate. */
typedef enum dirinfo_change_kind {
    DIRINFO_ADDED = 0, /* a node that was not in the previous version */
    DIRINFO_REVOKED = 1, /* a certificate revoked (not superseded) */
    DIRINFO_ROTATED = 2, /* a certificate superseded by a new one (key rotation) */
} dirinfo_change_kind;

typedef struct dirinfo_change {
    dirinfo_change_kind kind;
    const char *node; /* node id */
    const char *org; /* its organisation */
    uint64_t serial; /* the certificate concerned (added: the new one) */
    uint64_t at; /* revoked, rotated: when it stopped being valid (ms) */
    const char *reason; /* revoked: the administrators' reason ("" if none) */
} dirinfo_change;

/* What a version changed beside the partners' certificates (bits of
 * dirinfo_version.settings; none for the first version read). */
enum {
    DIRINFO_ADMINS = 1u << 0, /* the administrators or their threshold */
    DIRINFO_POLICY = 1u << 1, /* the sharing policy's rules */
    DIRINFO_REGISTRY = 1u << 2, /* the registered categories or purposes */
    DIRINFO_WITNESSES = 1u << 3, /* the witness quorum */
    DIRINFO_LIFETIME = 1u << 4, /* the longest message lifetime */
};

/* A rule of a version's sharing policy, for display: each list joined with
 * ", " ("" for an empty list: kinds and purposes then cover all). */
typedef struct dirinfo_rule {
    uint32_t id;
    const char *effect; /* "allow", "deny", or "none" (a rule without one, which no
                         * check applies) */
    const char *from, *to, *categories, *kinds, *purposes;
} dirinfo_rule;

typedef struct dirinfo_version {
    uint64_t version;
    uint64_t issued_at; /* ms */
    uint64_t expires_at; /* ms */
    size_t n_nodes; /* partners' certificates in force (the broker's not counted) */
    size_t first_change, n_changes; /* into dirinfo_change_at() */
    unsigned settings; /* DIRINFO_ADMINS | ... against the version read before it */
    size_t n_admins, n_rules;
    size_t first_rule; /* its n_rules rules: dirinfo_rule_at(first_rule + j) */
    uint32_t threshold;
    size_t prev_n_admins; /* the version read before it (when settings has DIRINFO_ADMINS) */
    uint32_t prev_threshold;
} dirinfo_version;

keten_err dirinfo_load(const auditdb *db, dirinfo **out) KETEN_MUST_CHECK;
void dirinfo_destroy(dirinfo **self_p);

/* The organisation of node id (latest version that names it), or NULL. */
const char *dirinfo_org(const dirinfo *self, const char *id);
/* The node whose certificate, in any version, had the transport key given
 * as 64 hex characters (any case), or NULL. */
const char *dirinfo_node_of_key(const dirinfo *self, const char *hex);

size_t dirinfo_version_count(const dirinfo *self);
const dirinfo_version *dirinfo_version_at(const dirinfo *self, size_t i);
const dirinfo_change *dirinfo_change_at(const dirinfo *self, size_t i);
const dirinfo_rule *dirinfo_rule_at(const dirinfo *self, size_t i);

#endif
