/*
 * records.h - reading audit records (docs/audit.md): decoding a leaf into
 * an AuditRecord, the names tools print for events, reasons and kinds, what
 * backs each event (a partner's signature or only the broker's claim), an
 * index of messages (msg_id -> what its "submitted" record says), filters,
 * and a scan over the whole log in order.
 *
 * Delivered, receipted, refused-by-recipient and expired records carry no
 * category, purpose or kind of their own: filters and outputs take them from
 * the message's submitted record (the index), which always comes earlier in
 * the log.
 *
 * Ownership: records_decode() returns a record freed with records_free().
 * The index owns its entries and interned strings; pointers it returns stay
 * valid until records_index_destroy() (entries may move when the index grows:
 * do not keep a records_msg pointer across records_index_add()).
 * Thread safety: an index is used by one thread; the name functions are
 * reentrant.
 * Errors: KETEN_ERR_MALFORMED / KETEN_ERR_NOT_CANONICAL (a leaf that does not
 * decode), KETEN_ERR_INCONSISTENT (records_scan: the log is damaged; detail
 * names the record), KETEN_ERR_NOMEM, KETEN_ERR_STORE.
 */
#ifndef KETEN_AUDIT_RECORDS_H
#define KETEN_AUDIT_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auditdb.h"
#include "err.h"
#include "keten.h"

/* What backs an event. */
typedef enum records_evidence {
    RECORDS_BROKER_CLAIM = 0, /* nobody but the broker signed it */
    RECORDS_SENDER_SIGNATURE = 1, /* submitted: the sender's envelope signature */
    RECORDS_RECIPIENT_SIGNATURE = 2, /* receipted, refused-by-recipient: the recipient's signed receipt */
    RECORDS_ADMIN_SIGNATURES = 3, /* directory-installed: the administrators' */
} records_evidence;

/* "submitted", "rejected", ..., "auth-failed"; "unknown" outside the enum. */
const char *records_event_name(int event);
/* "none", "too-large", ..., "bad-receipt", "undecryptable", ... */
const char *records_reason_name(int reason);
/* A reason the broker gives when it rejects (REASON_NONE and the
 * recipient-only reasons are not). */
bool records_reason_is_broker(int reason);
/* "signal", "query", "reply", "feedback"; "" for unspecified. */
const char *records_kind_name(int kind);
records_evidence records_event_evidence(int event);
/* "sender-signature", "recipient-signature", "administrator-signatures", "broker-claim". */
const char *records_evidence_name(records_evidence e);

/* Decode one leaf. canonical: also refuse bytes that do not re-serialize
 * identically (verify does; replay and reports read faster without it). */
keten_err records_decode(
    const uint8_t *leaf, size_t len, bool canonical, Keten__AuditRecord **out) KETEN_MUST_CHECK;
void records_free(Keten__AuditRecord **rec_p);

/* ---- index of messages ------------------------------------------------ */

typedef struct records_msg {
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t envelope_hash[KETEN_HASH_BYTES];
    uint64_t seq; /* its submitted record */
    uint64_t time; /* broker time of the submit */
    const char *sender, *category, *purpose; /* interned */
    uint32_t rule;
    int kind;
    uint32_t n_recipients;
    size_t recipients; /* first of n_recipients in the index's recipient array */
    uint32_t user; /* free for the caller (filters, counters) */
    uint64_t expires_at; /* the signed header's; set by verify only (0: not read) */
    /* For verify, a bit per recipient (i: recipient i): its delivered
     * record, its answer (receipted or refused-by-recipient), its expiry. */
    uint64_t delivered, answered, expired;
} records_msg;

typedef struct records_index records_index;

records_index *records_index_new(void);
void records_index_destroy(records_index **self_p);

/* Add the message of a submitted record. *dup_seq receives the seq of an
 * earlier submitted record of the same msg_id (and nothing is added), else
 * UINT64_MAX. *out (may be NULL) is the entry. */
keten_err records_index_add(records_index *self, const Keten__AuditRecord *rec, records_msg **out,
    uint64_t *dup_seq) KETEN_MUST_CHECK;
/* The directory versions of the log (dirinfo.h, not owned, may be NULL):
 * with them, an auth-failed record that names a refused transport key is
 * matched to the node any of whose certificates, current or past, had it. */
typedef struct dirinfo dirinfo;
void records_index_set_dirs(records_index *self, const dirinfo *dirs);
const dirinfo *records_index_dirs(const records_index *self);
/* For an auth-failed record naming a key: the node that key belonged to, or
 * NULL (another event, an unknown key, no directories). */
const char *records_key_owner(const records_index *idx, const Keten__AuditRecord *rec);
/* The entry of msg_id (16 bytes), or NULL. */
records_msg *records_index_find(const records_index *self, const uint8_t *msg_id);
/* Recipient i of m. */
const char *records_msg_recipient(const records_index *self, const records_msg *m, size_t i);
bool records_msg_has_recipient(const records_index *self, const records_msg *m, const char *id);
/* The index of recipient id in m's recipients (its first place), or -1. */
int records_msg_recipient_index(const records_index *self, const records_msg *m, const char *id);
/* A stable copy of s (NULL when out of memory). */
const char *records_intern(records_index *self, const char *s);
size_t records_index_count(const records_index *self);

/* ---- filters ---------------------------------------------------------- */

typedef struct records_filter {
    bool has_from, has_to;
    uint64_t from_ms, to_ms; /* from inclusive, to exclusive (broker time) */
    const char *node; /* sender, recipient or node of the record */
    const char *category;
    const char *purpose;
    bool has_msg;
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
} records_filter;

/* Does rec (m: its message from the index, or NULL) pass the filter? */
bool records_filter_match(const records_filter *f, const records_index *idx,
    const Keten__AuditRecord *rec, const records_msg *m);

/* Category, purpose and kind of rec, from its message when it has none. */
const char *records_category(const Keten__AuditRecord *rec, const records_msg *m);
const char *records_purpose(const Keten__AuditRecord *rec, const records_msg *m);
int records_kind(const Keten__AuditRecord *rec, const records_msg *m);

/* ---- scan ------------------------------------------------------------- */

/* Called for each record in log order; m is its message (NULL if none). The
 * record and m are valid during the call only. Return non-OK to stop.
 *
 * A "rejected" record is given with its msg_id and its message only when
 * the node it names (the one that was refused) is the sender of the
 * message accepted under that msg_id, or no message was accepted under it
 * before. Otherwise (a log of an older broker, which recorded whatever
 * msg_id a refused envelope claimed) the record is given without msg_id
 * and without message: no tool presents a node's refused attempt as part
 * of another party's message (docs/audit.md). */
typedef keten_err (*records_visit_fn)(void *ctx, const Keten__AuditRecord *rec,
    const records_msg *m, const uint8_t *leaf, size_t len);

/* Read every leaf of db in order, decode it, keep idx up to date (submitted
 * records are added before fn sees them), call fn. A missing, misplaced or
 * undecodable record is KETEN_ERR_INCONSISTENT naming its sequence number. */
keten_err records_scan(
    const auditdb *db, records_index *idx, records_visit_fn fn, void *ctx) KETEN_MUST_CHECK;

#endif
