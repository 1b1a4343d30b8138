/*
 * directory.h - the signed, versioned network directory and its trust anchor
 * (docs/protocol.md section 9).
 *
 * A keten_directory is one *verified* directory version: the SignedDirectory
 * bytes as received, the parsed Directory, its SHA-256 (over the Directory
 * bytes, the value named in checkpoints and chained by previous_hash) and
 * lookup indexes. It is immutable once made; it may be shared by threads for
 * reading. Pointers it returns (certificates, strings) stay valid until
 * keten_directory_destroy().
 *
 * Verification of version V against its predecessor P (or the anchor, which
 * plays the role of P for the first version a party installs):
 *   - size cap KETEN_DIRECTORY_MAX; SignedDirectory and Directory canonical;
 *   - network equals P's network (the anchor's);
 *   - structurally valid (keten_directory_check): names, key lengths, admins
 *     distinct and 1..KETEN_MAX_ADMINS, threshold in 1..n, unique node ids,
 *     unique serials, no key (of any kind) in two certificates, current or
 *     revoked, at most one "broker" certificate, policy rules well formed,
 *     categories and purposes valid labels, rules reference only registered
 *     values;
 *   - signatures over "keten/directory/v1" || directory bytes by at least
 *     P.threshold *distinct* keys among P.admins (signatures by keys that are
 *     not administrators, and repeated signatures by one key, count nothing);
 *   - if V's admins or threshold differ from P's: also V.threshold distinct
 *     signatures by V.admins;
 *   - with a predecessor directory: V.version > P.version, and when
 *     V.version == P.version + 1, previous_hash equals P's hash;
 *   - unless now_ms == 0: issued_at <= now + 5 min and now < expires_at.
 * Errors: KETEN_ERR_TOO_LARGE, KETEN_ERR_MALFORMED, KETEN_ERR_NOT_CANONICAL,
 * KETEN_ERR_WRONG_NETWORK, KETEN_ERR_INVALID, KETEN_ERR_BAD_NAME,
 * KETEN_ERR_DUPLICATE_KEY, KETEN_ERR_DUPLICATE_ID, KETEN_ERR_THRESHOLD,
 * KETEN_ERR_ROLLBACK, KETEN_ERR_EXPIRED, KETEN_ERR_NOT_YET_VALID,
 * KETEN_ERR_INCONSISTENT (previous_hash); each with a detail line.
 */
#ifndef KETEN_DIRECTORY_H
#define KETEN_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"

typedef struct keten_directory keten_directory;

#define KETEN_CLOCK_SKEW_MS (5ull * 60ull * 1000ull)

/* ---- anchor ---------------------------------------------------------- */

/* Parse and check an Anchor (canonical, name, admins distinct 32-byte keys,
 * threshold 1..n). *out: keten_pb_free(). */
keten_err keten_directory_anchor_parse(
    const uint8_t *buf, size_t len, Keten__Anchor **out) KETEN_MUST_CHECK;

/* Read and parse an anchor file. Errors as keten_file_read() and
 * keten_directory_anchor_parse(); a file that does not parse has a detail
 * that names it and says what to give instead. */
keten_err keten_directory_anchor_load(const char *path, Keten__Anchor **out) KETEN_MUST_CHECK;

/* ---- verification ---------------------------------------------------- */

/* Verify serialized SignedDirectory bytes. prev == NULL: against the anchor
 * (the first version a party installs); otherwise against prev (anchor may
 * then be NULL). now_ms == 0 skips the time checks (auditors, history). */
keten_err keten_directory_verify(const Keten__Anchor *anchor, const keten_directory *prev,
    const uint8_t *buf, size_t len, uint64_t now_ms, keten_directory **out) KETEN_MUST_CHECK;

/* Walk a chain (oldest first) from prev (or the anchor), verifying each step;
 * *out is the newest. Versions not newer than prev are skipped only if they
 * are byte-identical to what the chain already holds, otherwise
 * KETEN_ERR_ROLLBACK. */
keten_err keten_directory_verify_chain(const Keten__Anchor *anchor, const keten_directory *prev,
    const uint8_t *const *bufs, const size_t *lens, size_t n, uint64_t now_ms,
    keten_directory **out) KETEN_MUST_CHECK;

/* Load and verify a directory file against the anchor. */
keten_err keten_directory_load(const Keten__Anchor *anchor, const char *path, uint64_t now_ms,
    keten_directory **out) KETEN_MUST_CHECK;

/* Free; accepts NULL; sets *self_p = NULL. */
void keten_directory_destroy(keten_directory **self_p);

/* Is the directory fresh at now_ms (issued_at - skew <= now < expires_at)? */
bool keten_directory_fresh(const keten_directory *self, uint64_t now_ms);

/* ---- access ---------------------------------------------------------- */

const Keten__Directory *keten_directory_doc(const keten_directory *self);
uint64_t keten_directory_version(const keten_directory *self);
const char *keten_directory_network(const keten_directory *self);
/* SHA-256 of the Directory bytes (32 bytes). */
const uint8_t *keten_directory_hash(const keten_directory *self);
/* The SignedDirectory bytes as verified. */
const uint8_t *keten_directory_bytes(const keten_directory *self, size_t *len);

/* Current (listed, not revoked) certificate by node id; NULL if none. */
const Keten__NodeCert *keten_directory_find_id(const keten_directory *self, const char *id);
/* Current certificate by CurveZMQ transport key; NULL if none. */
const Keten__NodeCert *keten_directory_find_transport(const keten_directory *self,
    const uint8_t pk[static KETEN_CURVE_KEY_BYTES]);
/* The broker's certificate; NULL if none. */
const Keten__NodeCert *keten_directory_broker(const keten_directory *self);
/* Revocation entry for id (latest one), NULL if never revoked/superseded. */
const Keten__Revocation *keten_directory_find_revoked(const keten_directory *self,
    const char *id);
/* Revocation entry of the certificate of id with this serial, NULL if that
 * certificate was never revoked or superseded. */
const Keten__Revocation *keten_directory_find_revoked_serial(
    const keten_directory *self, const char *id, uint64_t serial);
/* Was r a revocation (or rotation) for key compromise? True when its reason
 * names one: the word "compromise" in any case ("key-compromise: laptop
 * stolen"). Receipts and messages signed with such
 * a key never count, whatever time they state. */
bool keten_directory_revocation_compromised(const Keten__Revocation *r);
/* The longest lifetime (expires_at - created_at, ms) a message may have
 * under this directory: its max_message_lifetime, or
 * KETEN_MAX_LIFETIME_DEFAULT_MS when it sets none. */
uint64_t keten_directory_max_lifetime(const keten_directory *self);
/* Certificate (current or revoked/superseded) whose signing key is pk. */
const Keten__NodeCert *keten_directory_find_sign_key(const keten_directory *self,
    const uint8_t pk[static KETEN_SIGN_PK_BYTES]);

/* Is the certificate usable at now_ms (not_before <= now < not_after)? */
bool keten_directory_cert_valid_at(const Keten__NodeCert *cert, uint64_t now_ms);

bool keten_directory_category_registered(const keten_directory *self, const char *category);
bool keten_directory_purpose_registered(const keten_directory *self, const char *purpose);

/* Resolve a comma-separated party list ("politie-mn,role:tax,*") to current
 * node ids, excluding the broker and duplicates, in directory order per
 * party. *ids is a malloc()ed array of pointers into the directory (free the
 * array only). KETEN_ERR_BAD_NAME for a bad party, KETEN_ERR_UNKNOWN_NODE for
 * an id that is not current or a role with no nodes. */
keten_err keten_directory_resolve(const keten_directory *self, const char *parties,
    const char ***ids, size_t *n) KETEN_MUST_CHECK;

/* Number of partner nodes (non-broker) and the cosignature quorum
 * (witness_quorum, or more than half of the partners when 0). */
size_t keten_directory_partner_count(const keten_directory *self);
size_t keten_directory_quorum(const keten_directory *self);

/* ---- building and signing (administrators) --------------------------- */

/* Structural checks listed above, on an unsigned Directory. */
keten_err keten_directory_check(const Keten__Directory *doc) KETEN_MUST_CHECK;

/* Sign directory bytes with an administrator key: appends a signature to the
 * serialized SignedDirectory in/in_len (or starts a new one from dir_bytes
 * when in == NULL) and returns the new serialized SignedDirectory in *out
 * (malloc()ed). The signature is verified after signing. A second signature
 * by the same key is KETEN_ERR_DUPLICATE_KEY. */
keten_err keten_directory_sign(const uint8_t *dir_bytes, size_t dir_len, const uint8_t *in,
    size_t in_len, const uint8_t sk[static KETEN_SIGN_SK_BYTES], uint8_t **out, size_t *out_len)
    KETEN_MUST_CHECK;

/* How many distinct valid signatures of admins[] the SignedDirectory carries
 * (no other check); for `keten-keys show`. */
keten_err keten_directory_count_signatures(const Keten__SignedDirectory *sd,
    ProtobufCBinaryData *admins, size_t n_admins, size_t *count) KETEN_MUST_CHECK;

#endif
