#include "sigcheck.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "pb.h"
#include "policy.h"
#include "receipt.h"
#include "util.h"
#include "sha256.h"

#define TIME_TEXT 32

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

keten_err sigcheck_header(const keten_directory *dir, const Keten__AuditRecord *r,
    uint64_t *created_at, uint64_t *expires_at)
{
    uint64_t seq = r->seq;
    if (r->signature.len != KETEN_SIG_BYTES || r->ciphertext_hash.len != KETEN_HASH_BYTES
        || r->envelope_hash.len != KETEN_HASH_BYTES || r->msg_id.len != KETEN_MSG_ID_BYTES) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (submitted) lacks its msg_id, signature, ciphertext hash or "
            "envelope hash",
            seq);
    }
    Keten__Header *h = NULL;
    keten_err e = KETEN_PB_UNPACK_CANONICAL(
        keten__header, r->header.data, r->header.len, KETEN_ENVELOPE_MAX, "header", &h);
    if (e != KETEN_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (submitted): its header does not parse: %s: %s", seq,
            keten_err_str(e), detail);
    }
    const char *field = NULL;
    if (h->msg_id.len != KETEN_MSG_ID_BYTES
        || memcmp(h->msg_id.data, r->msg_id.data, KETEN_MSG_ID_BYTES) != 0) {
        field = "msg_id";
    } else if (!str_eq(h->sender, r->sender)) {
        field = "sender";
    } else if (h->n_recipients != r->n_recipients) {
        field = "recipients";
    } else if (h->kind != r->kind) {
        field = "kind";
    } else if (!str_eq(h->category, r->category)) {
        field = "category";
    } else if (!str_eq(h->purpose, r->purpose)) {
        field = "purpose";
    } else if (h->padded_len != r->size_bucket) {
        field = "size_bucket";
    } else if (!str_eq(h->network, keten_directory_network(dir))) {
        field = "network";
    }
    for (size_t i = 0; field == NULL && i < h->n_recipients; i++) {
        if (!str_eq(h->recipients[i], r->recipients[i])) {
            field = "recipients";
        }
    }
    bool times_ok = h->created_at < h->expires_at;
    *created_at = h->created_at;
    if (expires_at != NULL) {
        *expires_at = h->expires_at;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    if (field != NULL) {
        return keten_err_set(KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (submitted): its %s differs from the %s in the signed header", seq,
            field, field);
    }
    if (!times_ok || r->n_recipients == 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (submitted): the header has no recipients or expires before it "
            "was created",
            seq);
    }
    return KETEN_OK;
}

/* "keten/envelope/v1" || header || ciphertext_hash into *buf. */
static keten_err signed_string(const Keten__AuditRecord *r, uint8_t **buf, size_t *cap, size_t *len)
{
    size_t label = sizeof KETEN_LABEL_ENVELOPE - 1;
    if (r->header.len > KETEN_ENVELOPE_MAX) {
        return keten_err_set(
            KETEN_ERR_TOO_LARGE, "record %" PRIu64 ": header of %zu bytes", r->seq, r->header.len);
    }
    size_t need = label + r->header.len + KETEN_HASH_BYTES;
    if (need > *cap) {
        uint8_t *nb = realloc(*buf, need);
        if (nb == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "a signed string of %zu bytes", need);
        }
        *buf = nb;
        *cap = need;
    }
    memcpy(*buf, KETEN_LABEL_ENVELOPE, label);
    if (r->header.len > 0) {
        memcpy(*buf + label, r->header.data, r->header.len);
    }
    memcpy(*buf + label + r->header.len, r->ciphertext_hash.data, KETEN_HASH_BYTES);
    *len = need;
    return KETEN_OK;
}

static bool sig_ok(
    const Keten__AuditRecord *r, const Keten__NodeCert *c, const uint8_t *m, size_t len)
{
    return c != NULL && c->sign_pk.len == KETEN_SIGN_PK_BYTES && r->signature.len == KETEN_SIG_BYTES
        && crypto_sign_verify_detached(r->signature.data, m, len, c->sign_pk.data) == 0;
}

keten_err sigcheck_submitted(const keten_directory *dir, const Keten__AuditRecord *r,
    uint64_t created_at, uint8_t **buf, size_t *cap)
{
    size_t len = 0;
    char t1[TIME_TEXT], t2[TIME_TEXT];
    if (r->ciphertext_hash.len != KETEN_HASH_BYTES) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (submitted) has no ciphertext hash", r->seq);
    }
    keten_err e = signed_string(r, buf, cap, &len);
    if (e != KETEN_OK) {
        return e;
    }
    uint64_t version = keten_directory_version(dir);
    const Keten__NodeCert *cur = keten_directory_find_id(dir, r->sender);
    if (sig_ok(r, cur, *buf, len)) {
        if (!keten_directory_cert_valid_at(cur, created_at)) {
            keten_time_iso(created_at, t1, sizeof t1);
            keten_time_iso(
                created_at < cur->not_before ? cur->not_before : cur->not_after, t2, sizeof t2);
            return keten_err_set(KETEN_ERR_EXPIRED,
                "record %" PRIu64 " (submitted): the certificate of '%s' (serial %" PRIu64
                ") was not valid at the message's created_at %s (it is valid %s %s)",
                r->seq, r->sender, cur->serial, t1, created_at < cur->not_before ? "from" : "until",
                t2);
        }
        return KETEN_OK;
    }
    const Keten__Directory *doc = keten_directory_doc(dir);
    for (size_t i = 0; i < doc->n_revocations; i++) {
        const Keten__Revocation *rv = doc->revocations[i];
        if (rv == NULL || rv->cert == NULL || !str_eq(rv->cert->id, r->sender)
            || !sig_ok(r, rv->cert, *buf, len)) {
            continue;
        }
        keten_time_iso(rv->at, t1, sizeof t1);
        if (rv->superseded && created_at >= rv->at) {
            keten_time_iso(created_at, t2, sizeof t2);
            return keten_err_set(KETEN_ERR_REVOKED,
                "record %" PRIu64 " (submitted): signed with the superseded key of '%s' (serial "
                "%" PRIu64 ", replaced at %s) for a message created at %s, after the rotation "
                "(directory version %" PRIu64 ")",
                r->seq, r->sender, rv->cert->serial, t1, t2, version);
        }
        if (!rv->superseded && r->time >= rv->at) {
            keten_time_iso(r->time, t2, sizeof t2);
            return keten_err_set(KETEN_ERR_REVOKED,
                "record %" PRIu64 " (submitted at %s): signed with the key of '%s' (serial "
                "%" PRIu64 ") revoked at %s, before the record's time (directory version "
                "%" PRIu64 ")",
                r->seq, t2, r->sender, rv->cert->serial, t1, version);
        }
        if (!keten_directory_cert_valid_at(rv->cert, created_at)) {
            keten_time_iso(created_at, t2, sizeof t2);
            return keten_err_set(KETEN_ERR_EXPIRED,
                "record %" PRIu64 " (submitted): the certificate of '%s' (serial %" PRIu64
                ") was not valid at the message's created_at %s",
                r->seq, r->sender, rv->cert->serial, t2);
        }
        return KETEN_OK;
    }
    if (cur == NULL && keten_directory_find_revoked(dir, r->sender) == NULL) {
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "record %" PRIu64 " (submitted): sender '%s' is not in directory version %" PRIu64,
            r->seq, r->sender, version);
    }
    return keten_err_set(KETEN_ERR_BAD_SIGNATURE,
        "record %" PRIu64 " (submitted): the sender's signature does not verify with any key "
        "of '%s' in directory version %" PRIu64 ": the header, the ciphertext hash or the "
        "signature was changed, or someone else signed it",
        r->seq, r->sender, version);
}

keten_err sigcheck_rule(const keten_directory *dir, const Keten__AuditRecord *r)
{
    uint64_t version = keten_directory_version(dir);
    const Keten__Directory *doc = keten_directory_doc(dir);
    const Keten__NodeCert *from = keten_directory_find_id(dir, r->sender);
    if (from == NULL) {
        const Keten__Revocation *rv = keten_directory_find_revoked(dir, r->sender);
        from = rv != NULL ? rv->cert : NULL;
    }
    if (from == NULL) {
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "record %" PRIu64 " (submitted): sender '%s' is not in directory version %" PRIu64,
            r->seq, r->sender, version);
    }
    bool allowed_any = false;
    uint32_t allow_rule = 0;
    for (size_t i = 0; i < r->n_recipients; i++) {
        const Keten__NodeCert *to = keten_directory_find_id(dir, r->recipients[i]);
        if (to == NULL) {
            return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
                "record %" PRIu64 " (submitted): recipient '%s' is not a current node of "
                "directory version %" PRIu64 ", in force at the record: the broker accepts no "
                "message to it",
                r->seq, r->recipients[i], version);
        }
        keten_policy_decision d = keten_policy_evaluate(
            doc, r->sender, from->role, to->id, to->role, r->kind, r->category, r->purpose);
        if (!d.allowed) {
            return keten_err_set(KETEN_ERR_POLICY,
                "record %" PRIu64 " (submitted): the sharing policy of directory version "
                "%" PRIu64 ", in force at the record, refuses %s -> %s (%s, %s, %s) by rule "
                "%" PRIu32 "%s, yet the broker accepted the message",
                r->seq, version, r->sender, to->id, keten_policy_kind_name(r->kind), r->category,
                r->purpose, d.rule,
                d.rule == KETEN_POLICY_DEFAULT_RULE ? " (the default deny)" : "");
        }
        if (!allowed_any || d.rule < allow_rule) {
            allow_rule = d.rule;
            allowed_any = true;
        }
    }
    if (allowed_any && r->rule != allow_rule) {
        return keten_err_set(KETEN_ERR_POLICY,
            "record %" PRIu64 " (submitted) names policy rule %" PRIu32 " as allowing the "
            "message, but the sharing policy of directory version %" PRIu64 ", in force at the "
            "record, allows it by rule %" PRIu32 " (the lowest rule that allows one of its "
            "recipients): the record's rule was changed",
            r->seq, r->rule, version, allow_rule);
    }
    return KETEN_OK;
}

/* ---- receipts ------------------------------------------------------------ */

#define HEADS_INITIAL_SLOTS 256u

typedef struct head_slot {
    uint8_t key[KETEN_HASH_BYTES];
    Keten__ReceiptBatchHead *head; /* NULL: empty */
} head_slot;

struct sigcheck_heads {
    head_slot *slots;
    size_t n_slots; /* power of two */
    size_t n;
    uint64_t verified;
};

sigcheck_heads *sigcheck_heads_new(void)
{
    sigcheck_heads *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return NULL;
    }
    self->n_slots = HEADS_INITIAL_SLOTS;
    self->slots = calloc(self->n_slots, sizeof *self->slots);
    if (self->slots == NULL) {
        free(self);
        return NULL;
    }
    return self;
}

void sigcheck_heads_destroy(sigcheck_heads **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    sigcheck_heads *self = *self_p;
    for (size_t i = 0; i < self->n_slots; i++) {
        keten_pb_free((ProtobufCMessage **)(void *)&self->slots[i].head);
    }
    free(self->slots);
    free(self);
    *self_p = NULL;
}

uint64_t sigcheck_heads_verified(const sigcheck_heads *self)
{
    return self != NULL ? self->verified : 0;
}

static size_t slot_of(const head_slot *slots, size_t n_slots, const uint8_t *key)
{
    uint64_t h = 0;
    memcpy(&h, key, sizeof h); /* the key is a SHA-256: already uniform */
    size_t i = (size_t)h & (n_slots - 1);
    while (slots[i].head != NULL && memcmp(slots[i].key, key, KETEN_HASH_BYTES) != 0) {
        i = (i + 1) & (n_slots - 1);
    }
    return i;
}

static const Keten__ReceiptBatchHead *heads_find(const sigcheck_heads *self, const uint8_t *key)
{
    return self->slots[slot_of(self->slots, self->n_slots, key)].head;
}

/* Keep head (taking it) under key. */
static keten_err heads_add(sigcheck_heads *self, const uint8_t *key, Keten__ReceiptBatchHead **head)
{
    if (self->n + 1 > self->n_slots / 2) {
        size_t ns = self->n_slots * 2;
        head_slot *slots = ns > SIZE_MAX / sizeof *slots ? NULL : calloc(ns, sizeof *slots);
        if (slots == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "keeping %zu verified receipt heads", self->n);
        }
        for (size_t i = 0; i < self->n_slots; i++) {
            if (self->slots[i].head != NULL) {
                slots[slot_of(slots, ns, self->slots[i].key)] = self->slots[i];
            }
        }
        free(self->slots);
        self->slots = slots;
        self->n_slots = ns;
    }
    head_slot *s = &self->slots[slot_of(self->slots, self->n_slots, key)];
    memcpy(s->key, key, KETEN_HASH_BYTES);
    s->head = *head;
    *head = NULL;
    self->n++;
    return KETEN_OK;
}

static void hash_part(keten_sha256_state *st, const uint8_t *p, size_t len)
{
    uint8_t l[8];
    uint64_t x = len;
    for (int i = 7; i >= 0; i--) {
        l[i] = (uint8_t)(x & 0xff);
        x >>= 8;
    }
    keten_sha256_update(st, l, sizeof l);
    if (len > 0) {
        keten_sha256_update(st, p, len);
    }
}

static void head_key(const Keten__NodeCert *cert, const Keten__ReceiptProof *p,
    uint8_t key[static KETEN_HASH_BYTES])
{
    keten_sha256_state st;
    keten_sha256_init(&st);
    hash_part(&st, cert->sign_pk.data, cert->sign_pk.len);
    hash_part(&st, p->head.data, p->head.len);
    hash_part(&st, p->signature.data, p->signature.len);
    keten_sha256_final(&st, key);
}

static const char *outcome_name(Keten__Outcome o)
{
    switch (o) {
    case KETEN__OUTCOME__OUTCOME_STORED:
        return "stored";
    case KETEN__OUTCOME__OUTCOME_REFUSED:
        return "refused";
    default:
        return "unspecified";
    }
}

/* The certificate of node with serial in dir: current, or among the
 * revocations (*rev set). */
static const Keten__NodeCert *cert_of(const keten_directory *dir, const char *node,
    uint64_t serial, const Keten__Revocation **rev)
{
    *rev = NULL;
    const Keten__NodeCert *cert = keten_directory_find_id(dir, node);
    if (cert != NULL && cert->serial == serial) {
        return cert;
    }
    const Keten__Directory *doc = keten_directory_doc(dir);
    for (size_t i = 0; i < doc->n_revocations; i++) {
        const Keten__Revocation *rv = doc->revocations[i];
        if (rv != NULL && rv->cert != NULL && str_eq(rv->cert->id, node)
            && rv->cert->serial == serial) {
            *rev = rv;
            return rv->cert;
        }
    }
    return NULL;
}

keten_err sigcheck_receipt(const keten_directory *dir, const Keten__AuditRecord *r,
    const uint8_t *envelope_hash, sigcheck_heads *heads, Keten__ReceiptLeaf **leaf_out)
{
    uint64_t seq = r->seq;
    bool refused = r->event == KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT;
    const char *ev = refused ? "refused-by-recipient" : "receipted";
    const Keten__ReceiptProof *p = r->receipt;
    Keten__ReceiptBatchHead *unverified = NULL, *verified = NULL;
    const Keten__ReceiptBatchHead *head = NULL;
    Keten__ReceiptLeaf *leaf = NULL;
    keten_err e = KETEN_OK;
    char detail[256];
    if (leaf_out != NULL) {
        *leaf_out = NULL;
    }
    if (!refused && r->event != KETEN__EVENT__EVENT_RECEIPTED) {
        return keten_err_set(KETEN_ERR_INVALID,
            "record %" PRIu64 " is neither receipted nor refused-by-recipient: no receipt to "
            "check",
            seq);
    }
    if (p == NULL || p->head.len == 0 || p->signature.len != KETEN_SIG_BYTES) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (%s) holds no signed receipt (head and signature)", seq, ev);
    }
    if (r->msg_id.len != KETEN_MSG_ID_BYTES) {
        return keten_err_set(
            KETEN_ERR_INCONSISTENT, "record %" PRIu64 " (%s) names no message", seq, ev);
    }
    e = KETEN_PB_UNPACK_CANONICAL(keten__receipt_batch_head, p->head.data, p->head.len,
        KETEN_RECEIPT_HEAD_MAX, "receipt batch head", &unverified);
    if (e != KETEN_OK) {
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (%s): the receipt's batch head does not parse: %s", seq, ev,
            detail);
        goto out;
    }
    if (!str_eq(unverified->recipient, r->node)) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s): the receipt's head is for recipient '%s', the record "
            "names '%s'",
            seq, ev, unverified->recipient, r->node);
        goto out;
    }
    const Keten__Revocation *rev = NULL;
    const Keten__NodeCert *cert = cert_of(dir, r->node, unverified->cert_serial, &rev);
    if (cert == NULL) {
        e = keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "record %" PRIu64 " (%s): directory version %" PRIu64
            " has no certificate of '%s' with serial %" PRIu64,
            seq, ev, keten_directory_version(dir), r->node, unverified->cert_serial);
        goto out;
    }
    uint8_t key[KETEN_HASH_BYTES];
    head_key(cert, p, key);
    head = heads != NULL ? heads_find(heads, key) : NULL;
    if (head == NULL) {
        e = keten_receipt_head_verify(
            cert, keten_directory_network(dir), &p->head, &p->signature, &verified);
        if (e != KETEN_OK) {
            snprintf(detail, sizeof detail, "%s", keten_err_detail());
            e = keten_err_set(e == KETEN_ERR_NOMEM ? e : KETEN_ERR_BAD_SIGNATURE,
                "record %" PRIu64 " (%s): the receipt batch head of '%s' does not verify with "
                "its certificate (serial %" PRIu64 "): %s: %s",
                seq, ev, r->node, cert->serial, keten_err_str(e), detail);
            goto out;
        }
        head = verified;
        if (heads != NULL) {
            heads->verified++;
            if ((e = heads_add(heads, key, &verified)) != KETEN_OK) {
                goto out;
            }
        }
    }
    if (rev != NULL && r->time >= rev->at) {
        char t1[TIME_TEXT];
        keten_time_iso(rev->at, t1, sizeof t1);
        e = keten_err_set(KETEN_ERR_REVOKED,
            "record %" PRIu64 " (%s): the receipt is signed with the %s key of '%s' "
            "(serial %" PRIu64 ", %s at %s), before the record's time",
            seq, ev, rev->superseded ? "superseded" : "revoked", r->node, cert->serial,
            rev->superseded ? "replaced" : "revoked", t1);
        goto out;
    }
    e = keten_receipt_proof_check_leaf(head, p, &leaf);
    if (e != KETEN_OK) {
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        e = keten_err_set(e == KETEN_ERR_NOMEM ? e : KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (%s): the receipt's leaf %" PRIu64 " and its path do not lead "
            "to the root of the signed batch head (%" PRIu64 " leaves): %s",
            seq, ev, p->index, head->count, detail);
        goto out;
    }
    if (leaf->msg_id.len != KETEN_MSG_ID_BYTES
        || sodium_memcmp(leaf->msg_id.data, r->msg_id.data, KETEN_MSG_ID_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s): the receipt's leaf names another message than the "
            "record's",
            seq, ev);
        goto out;
    }
    if (envelope_hash != NULL
        && (leaf->envelope_hash.len != KETEN_HASH_BYTES
            || sodium_memcmp(leaf->envelope_hash.data, envelope_hash, KETEN_HASH_BYTES) != 0)) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s): the receipt's leaf names another envelope hash than the "
            "message's submitted record: the recipient answered for another envelope",
            seq, ev);
        goto out;
    }
    Keten__Outcome want
        = refused ? KETEN__OUTCOME__OUTCOME_REFUSED : KETEN__OUTCOME__OUTCOME_STORED;
    if (leaf->outcome != want) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s): the recipient's signed outcome is '%s', the record "
            "says %s",
            seq, ev, outcome_name(leaf->outcome), ev);
        goto out;
    }
    if (refused && !keten_receipt_reason_valid(leaf->reason)) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (%s): the receipt's reason (%d) is not one a recipient gives",
            seq, ev, (int)leaf->reason);
        goto out;
    }
    if (r->reason != leaf->reason) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s): the record's reason (%d) is not the recipient's signed "
            "reason (%d)",
            seq, ev, (int)r->reason, (int)leaf->reason);
        goto out;
    }
    if (leaf_out != NULL) {
        *leaf_out = leaf;
        leaf = NULL;
    }
out:
    keten_pb_free((ProtobufCMessage **)(void *)&leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&verified);
    keten_pb_free((ProtobufCMessage **)(void *)&unverified);
    return e;
}

bool sigcheck_receipt_stored_at(const Keten__AuditRecord *rec, uint64_t *stored_at)
{
    if (rec->receipt == NULL || rec->receipt->head.len == 0) {
        return false;
    }
    Keten__ReceiptBatchHead *h = NULL;
    if (KETEN_PB_UNPACK(keten__receipt_batch_head, rec->receipt->head.data, rec->receipt->head.len,
            KETEN_RECEIPT_HEAD_MAX, "receipt batch head", &h)
        != KETEN_OK) {
        return false;
    }
    *stored_at = h->stored_at;
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    return true;
}
