#include "sigcheck.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "pb.h"
#include "util.h"

#define TIME_TEXT 32

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

keten_err sigcheck_header(
    const keten_directory *dir, const Keten__AuditRecord *r, uint64_t *created_at)
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
            keten_strerror(e), detail);
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
        if (!keten_cert_valid_at(cur, created_at)) {
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
        if (!keten_cert_valid_at(rv->cert, created_at)) {
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

keten_err sigcheck_receipt(
    const keten_directory *dir, const Keten__AuditRecord *r, const uint8_t *envelope_hash)
{
    uint64_t seq = r->seq;
    Keten__Receipt *rc = NULL;
    Keten__ReceiptBody *b = NULL;
    Keten__ReceiptBody *verified = NULL;
    keten_err e = KETEN_OK;
    if (KETEN_PB_UNPACK(
            keten__receipt, r->receipt.data, r->receipt.len, KETEN_RECEIPT_MAX, "receipt", &rc)
            != KETEN_OK
        || KETEN_PB_UNPACK(keten__receipt_body, rc->body.data, rc->body.len, KETEN_RECEIPT_MAX,
               "receipt body", &b)
            != KETEN_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (receipted): the receipt does not parse: %s", seq, detail);
        goto out;
    }
    const char *field = NULL;
    if (!str_eq(b->recipient, r->node)) {
        field = "recipient";
    } else if (r->msg_id.len != KETEN_MSG_ID_BYTES || b->msg_id.len != KETEN_MSG_ID_BYTES
        || memcmp(b->msg_id.data, r->msg_id.data, KETEN_MSG_ID_BYTES) != 0) {
        field = "msg_id";
    } else if (envelope_hash != NULL
        && (b->envelope_hash.len != KETEN_HASH_BYTES
            || memcmp(b->envelope_hash.data, envelope_hash, KETEN_HASH_BYTES) != 0)) {
        field = "envelope hash (the submitted record's)";
    } else if (!str_eq(b->network, keten_directory_network(dir))) {
        field = "network";
    }
    if (field != NULL) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (receipted): the receipt's %s differs from the record's", seq,
            field);
        goto out;
    }
    const Keten__NodeCert *cert = keten_directory_find_id(dir, r->node);
    const Keten__Revocation *rev = NULL;
    if (cert == NULL || cert->serial != b->cert_serial) {
        cert = NULL;
        const Keten__Directory *doc = keten_directory_doc(dir);
        for (size_t i = 0; i < doc->n_revocations; i++) {
            const Keten__Revocation *rv = doc->revocations[i];
            if (rv != NULL && rv->cert != NULL && str_eq(rv->cert->id, r->node)
                && rv->cert->serial == b->cert_serial) {
                cert = rv->cert;
                rev = rv;
                break;
            }
        }
    }
    if (cert == NULL) {
        e = keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "record %" PRIu64 " (receipted): directory version %" PRIu64
            " has no certificate of '%s' with serial %" PRIu64,
            seq, keten_directory_version(dir), r->node, b->cert_serial);
        goto out;
    }
    e = keten_receipt_verify(cert, r->receipt.data, r->receipt.len, &verified);
    if (e != KETEN_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        e = keten_err_set(e == KETEN_ERR_NOMEM ? e : KETEN_ERR_BAD_SIGNATURE,
            "record %" PRIu64 " (receipted): the receipt of '%s' does not verify with its "
            "certificate (serial %" PRIu64 "): %s: %s",
            seq, r->node, cert->serial, keten_strerror(e), detail);
        goto out;
    }
    if (rev != NULL && r->time >= rev->at) {
        char t1[TIME_TEXT];
        keten_time_iso(rev->at, t1, sizeof t1);
        e = keten_err_set(KETEN_ERR_REVOKED,
            "record %" PRIu64 " (receipted): the receipt is signed with the %s key of '%s' "
            "(serial %" PRIu64 ", %s at %s), before the record's time",
            seq, rev->superseded ? "superseded" : "revoked", r->node, cert->serial,
            rev->superseded ? "replaced" : "revoked", t1);
        goto out;
    }
out:
    keten_pb_free((ProtobufCMessage **)(void *)&verified);
    keten_pb_free((ProtobufCMessage **)(void *)&b);
    keten_pb_free((ProtobufCMessage **)(void *)&rc);
    return e;
}
