#include "audit.h"

#include <stdlib.h>
#include <string.h>

#include "directory.h"
#include "metrics.h"
#include "pb.h"
#include "store.h"

/* b->audit_time from the last record of a log of `size` records. */
static keten_err load_audit_time(broker *b, uint64_t size)
{
    b->audit_time = 0;
    if (size > 0) {
        const uint8_t *leaf = NULL;
        size_t len = 0;
        Keten__AuditRecord *last = NULL;
        keten_err e = keten_merkle_log_leaf(b->st->log, b->txn, size - 1, &leaf, &len);
        if (e == KETEN_OK) {
            e = keten_pb_unpack(&keten__audit_record__descriptor, leaf, len, len,
                "the last audit record", (ProtobufCMessage **)(void *)&last);
        }
        if (e != KETEN_OK) {
            return e;
        }
        b->audit_time = last->time;
        keten_pb_free((ProtobufCMessage **)(void *)&last);
    }
    b->audit_time_known = true;
    return KETEN_OK;
}

/* Fill seq, time and (unless set) the directory version in force; serialize;
 * append. The time is the batch's clock, but never before the previous
 * record's: auditors check that times never go back. */
static keten_err append(broker *b, Keten__AuditRecord *rec, uint64_t *leaf)
{
    uint64_t size = 0;
    keten_err e = keten_merkle_log_size(b->st->log, b->txn, &size);
    if (e != KETEN_OK) {
        return e;
    }
    if (!b->audit_time_known && (e = load_audit_time(b, size)) != KETEN_OK) {
        return e;
    }
    rec->seq = size;
    rec->time = b->now > b->audit_time ? b->now : b->audit_time;
    if (rec->directory_version == 0) {
        const keten_directory *dir = broker_dir(b);
        rec->directory_version = dir != NULL ? keten_directory_version(dir) : 0;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if ((e = keten_pb_pack(&rec->base, &buf, &len)) != KETEN_OK) {
        return e;
    }
    uint64_t index = 0;
    e = keten_merkle_log_append(b->st->log, b->txn, buf, len, &index);
    free(buf);
    if (e != KETEN_OK) {
        return e;
    }
    if (index != size) {
        return keten_err_set(KETEN_ERR_STORE,
            "audit leaf %llu was written at index %llu; the log was changed under the broker",
            (unsigned long long)size, (unsigned long long)index);
    }
    b->audit_time = rec->time;
    metrics_tree_size(b->m, index + 1);
    if (leaf != NULL) {
        *leaf = index;
    }
    return KETEN_OK;
}

static void set_msg_id(Keten__AuditRecord *rec, const uint8_t *msg_id)
{
    if (msg_id != NULL) {
        rec->msg_id.data = (uint8_t *)msg_id;
        rec->msg_id.len = KETEN_MSG_ID_BYTES;
    }
}

keten_err audit_submitted(
    broker *b, const keten_envelope_verified *v, uint32_t rule, uint64_t *leaf)
{
    const Keten__Header *h = v->header;
    const Keten__Envelope *env = v->envelope;
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_SUBMITTED;
    set_msg_id(&rec, h->msg_id.data);
    rec.sender = h->sender;
    rec.n_recipients = h->n_recipients;
    rec.recipients = h->recipients;
    rec.kind = h->kind;
    rec.category = h->category;
    rec.purpose = h->purpose;
    rec.rule = rule;
    rec.header = env->header;
    rec.ciphertext_hash.data = (uint8_t *)v->ciphertext_hash;
    rec.ciphertext_hash.len = KETEN_HASH_BYTES;
    rec.signature = env->signature;
    rec.size_bucket = h->padded_len;
    rec.envelope_hash.data = (uint8_t *)v->envelope_hash;
    rec.envelope_hash.len = KETEN_HASH_BYTES;
    return append(b, &rec, leaf);
}

keten_err audit_rejected(broker *b, const uint8_t *msg_id, const char *sender, Keten__Reason reason,
    uint32_t rule, uint64_t *leaf)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_REJECTED;
    set_msg_id(&rec, msg_id);
    rec.sender = (char *)(sender != NULL ? sender : "");
    rec.reason = reason;
    rec.rule = reason == KETEN__REASON__REASON_POLICY ? rule : 0;
    return append(b, &rec, leaf);
}

keten_err audit_delivered(broker *b, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const char *sender, const char *node, uint64_t *leaf)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_DELIVERED;
    set_msg_id(&rec, msg_id);
    rec.sender = (char *)sender;
    rec.node = (char *)node;
    return append(b, &rec, leaf);
}

keten_err audit_answered(broker *b, Keten__Event event, Keten__Reason reason,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *sender, const char *node,
    const Keten__ReceiptProof *receipt, uint64_t *leaf)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    char *rcpt[1] = { (char *)node };
    rec.event = event;
    set_msg_id(&rec, msg_id);
    rec.sender = (char *)sender;
    rec.node = (char *)node;
    rec.n_recipients = 1;
    rec.recipients = rcpt;
    rec.receipt = (Keten__ReceiptProof *)receipt;
    rec.reason = event == KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT ? reason
                                                                    : KETEN__REASON__REASON_NONE;
    return append(b, &rec, leaf);
}

keten_err audit_expired(broker *b, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const char *sender, const char *const *recipients, size_t n, uint64_t *leaf)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_EXPIRED;
    set_msg_id(&rec, msg_id);
    rec.sender = (char *)sender;
    rec.n_recipients = n;
    rec.recipients = (char **)recipients;
    return append(b, &rec, leaf);
}

keten_err audit_directory(
    broker *b, const uint8_t *signed_dir, size_t len, uint64_t version, uint64_t *leaf)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_DIRECTORY_INSTALLED;
    rec.directory.data = (uint8_t *)signed_dir;
    rec.directory.len = len;
    rec.directory_version = version; /* the version it installs */
    return append(b, &rec, leaf);
}

keten_err audit_node(broker *b, Keten__Event event, const char *node, uint64_t *leaf)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = event;
    rec.node = (char *)node;
    return append(b, &rec, leaf);
}

keten_err audit_node_refused(broker *b, const char *node, Keten__Reason reason, uint64_t *leaf)
{
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_AUTH_FAILED;
    rec.node = (char *)node;
    rec.reason = reason;
    return append(b, &rec, leaf);
}

bool audit_record_shown_to(const uint8_t *leaf, size_t len, const char *node)
{
    Keten__AuditRecord *rec = NULL;
    if (keten_pb_unpack(&keten__audit_record__descriptor, leaf, len, len, "an audit record",
            (ProtobufCMessage **)(void *)&rec)
        != KETEN_OK) {
        keten_err_clear();
        return false;
    }
    bool shown = rec->event == KETEN__EVENT__EVENT_DIRECTORY_INSTALLED
        || strcmp(rec->sender, node) == 0 || strcmp(rec->node, node) == 0;
    for (size_t i = 0; !shown && i < rec->n_recipients; i++) {
        shown = strcmp(rec->recipients[i], node) == 0;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    return shown;
}
