#include "records.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirinfo.h"
#include "pb.h"

#define INITIAL_SLOTS 1024u
#define INITIAL_STR_SLOTS 256u
#define INDEX_MAX (UINT32_MAX / 4u) /* messages in one index */
#define STRING_MAX 4096u /* bytes of an interned string */

static const char *const event_names[] = {
    [KETEN__EVENT__EVENT_UNSPECIFIED] = "unspecified",
    [KETEN__EVENT__EVENT_SUBMITTED] = "submitted",
    [KETEN__EVENT__EVENT_REJECTED] = "rejected",
    [KETEN__EVENT__EVENT_DELIVERED] = "delivered",
    [KETEN__EVENT__EVENT_RECEIPTED] = "receipted",
    [KETEN__EVENT__EVENT_EXPIRED] = "expired",
    [KETEN__EVENT__EVENT_DIRECTORY_INSTALLED] = "directory-installed",
    [KETEN__EVENT__EVENT_NODE_CONNECTED] = "node-connected",
    [KETEN__EVENT__EVENT_NODE_DISCONNECTED] = "node-disconnected",
    [KETEN__EVENT__EVENT_AUTH_FAILED] = "auth-failed",
    [KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT] = "refused-by-recipient",
};

static const char *const reason_names[] = {
    [KETEN__REASON__REASON_NONE] = "none",
    [KETEN__REASON__REASON_TOO_LARGE] = "too-large",
    [KETEN__REASON__REASON_MALFORMED] = "malformed",
    [KETEN__REASON__REASON_BAD_SIGNATURE] = "bad-signature",
    [KETEN__REASON__REASON_SENDER_MISMATCH] = "sender-mismatch",
    [KETEN__REASON__REASON_WRONG_NETWORK] = "wrong-network",
    [KETEN__REASON__REASON_CLOCK_SKEW] = "clock-skew",
    [KETEN__REASON__REASON_EXPIRED] = "expired",
    [KETEN__REASON__REASON_DUPLICATE] = "duplicate",
    [KETEN__REASON__REASON_UNKNOWN_RECIPIENT] = "unknown-recipient",
    [KETEN__REASON__REASON_UNREGISTERED] = "unregistered",
    [KETEN__REASON__REASON_POLICY] = "policy",
    [KETEN__REASON__REASON_STORE_FULL] = "store-full",
    [KETEN__REASON__REASON_DIRECTORY_STALE] = "directory-stale",
    [KETEN__REASON__REASON_UNKNOWN_SENDER] = "unknown-sender",
    [KETEN__REASON__REASON_REVOKED] = "revoked",
    [KETEN__REASON__REASON_BAD_RECEIPT] = "bad-receipt",
    [KETEN__REASON__REASON_UNDECRYPTABLE] = "undecryptable",
    [KETEN__REASON__REASON_INVALID_SIGNAL] = "invalid-signal",
    [KETEN__REASON__REASON_UNKNOWN_CHECKPOINT] = "unknown-checkpoint",
    [KETEN__REASON__REASON_KEYS_REPLACED] = "keys-replaced",
};

static const char *const kind_names[] = {
    [KETEN__KIND__KIND_UNSPECIFIED] = "",
    [KETEN__KIND__KIND_SIGNAL] = "signal",
    [KETEN__KIND__KIND_QUERY] = "query",
    [KETEN__KIND__KIND_REPLY] = "reply",
    [KETEN__KIND__KIND_FEEDBACK] = "feedback",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *records_event_name(int event)
{
    return event >= 0 && (size_t)event < COUNT(event_names) ? event_names[event] : "unknown";
}

const char *records_reason_name(int reason)
{
    return reason >= 0 && (size_t)reason < COUNT(reason_names) ? reason_names[reason] : "unknown";
}

const char *records_kind_name(int kind)
{
    return kind >= 0 && (size_t)kind < COUNT(kind_names) ? kind_names[kind] : "unknown";
}

bool records_reason_is_broker(int reason)
{
    return (reason >= KETEN__REASON__REASON_TOO_LARGE
               && reason <= KETEN__REASON__REASON_BAD_RECEIPT)
        || reason == KETEN__REASON__REASON_UNKNOWN_CHECKPOINT;
}

records_evidence records_event_evidence(int event)
{
    switch (event) {
    case KETEN__EVENT__EVENT_SUBMITTED:
        return RECORDS_SENDER_SIGNATURE;
    case KETEN__EVENT__EVENT_RECEIPTED:
    case KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT:
        return RECORDS_RECIPIENT_SIGNATURE;
    case KETEN__EVENT__EVENT_DIRECTORY_INSTALLED:
        return RECORDS_ADMIN_SIGNATURES;
    default:
        return RECORDS_BROKER_CLAIM;
    }
}

const char *records_evidence_name(records_evidence e)
{
    switch (e) {
    case RECORDS_SENDER_SIGNATURE:
        return "sender-signature";
    case RECORDS_RECIPIENT_SIGNATURE:
        return "recipient-signature";
    case RECORDS_ADMIN_SIGNATURES:
        return "administrator-signatures";
    default:
        return "broker-claim";
    }
}

keten_err records_decode(const uint8_t *leaf, size_t len, bool canonical, Keten__AuditRecord **out)
{
    *out = NULL;
    if (canonical) {
        return KETEN_PB_UNPACK_CANONICAL(
            keten__audit_record, leaf, len, KETEN_MERKLE_LEAF_MAX, "audit record", out);
    }
    return KETEN_PB_UNPACK(
        keten__audit_record, leaf, len, KETEN_MERKLE_LEAF_MAX, "audit record", out);
}

void records_free(Keten__AuditRecord **rec_p)
{
    keten_pb_free((ProtobufCMessage **)(void *)rec_p);
}

/* ---- index ------------------------------------------------------------ */

struct records_index {
    uint8_t key[crypto_shorthash_KEYBYTES];
    records_msg *msgs;
    size_t n, cap;
    uint32_t *slots; /* 0: empty, else entry + 1 */
    size_t n_slots; /* power of two */
    const char **rcpts;
    size_t n_rcpts, cap_rcpts;
    char **strs;
    size_t n_strs, cap_strs;
    uint32_t *str_slots;
    size_t n_str_slots;
    const dirinfo *dirs; /* not owned; may be NULL */
};

void records_index_set_dirs(records_index *self, const dirinfo *dirs)
{
    self->dirs = dirs;
}

const dirinfo *records_index_dirs(const records_index *self)
{
    return self != NULL ? self->dirs : NULL;
}

const char *records_key_owner(const records_index *idx, const Keten__AuditRecord *rec)
{
    if (rec->event != KETEN__EVENT__EVENT_AUTH_FAILED || idx == NULL) {
        return NULL;
    }
    return dirinfo_node_of_key(idx->dirs, rec->node);
}

static uint64_t hash_of(const records_index *self, const void *p, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, p, len, self->key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return v;
}

records_index *records_index_new(void)
{
    records_index *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return NULL;
    }
    randombytes_buf(self->key, sizeof self->key);
    self->n_slots = INITIAL_SLOTS;
    self->slots = calloc(self->n_slots, sizeof *self->slots);
    self->n_str_slots = INITIAL_STR_SLOTS;
    self->str_slots = calloc(self->n_str_slots, sizeof *self->str_slots);
    if (self->slots == NULL || self->str_slots == NULL) {
        records_index_destroy(&self);
    }
    return self;
}

void records_index_destroy(records_index **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    records_index *self = *self_p;
    for (size_t i = 0; i < self->n_strs; i++) {
        free(self->strs[i]);
    }
    free(self->strs);
    free(self->str_slots);
    free(self->rcpts);
    free(self->slots);
    free(self->msgs);
    free(self);
    *self_p = NULL;
}

size_t records_index_count(const records_index *self)
{
    return self->n;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) {
        return true;
    }
    size_t c = *cap == 0 ? 64 : *cap;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) {
            return false;
        }
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (q == NULL) {
        return false;
    }
    *p = q;
    *cap = c;
    return true;
}

const char *records_intern(records_index *self, const char *s)
{
    if (s == NULL) {
        s = "";
    }
    size_t len = strnlen(s, STRING_MAX + 1);
    if (len > STRING_MAX) {
        return NULL;
    }
    size_t mask = self->n_str_slots - 1;
    size_t i = (size_t)hash_of(self, s, len) & mask;
    while (self->str_slots[i] != 0) {
        const char *t = self->strs[self->str_slots[i] - 1];
        if (strcmp(t, s) == 0) {
            return t;
        }
        i = (i + 1) & mask;
    }
    if (self->n_strs + 1 > self->n_str_slots / 2) {
        size_t ns = self->n_str_slots * 2;
        uint32_t *slots = calloc(ns, sizeof *slots);
        if (slots == NULL) {
            return NULL;
        }
        for (size_t k = 0; k < self->n_strs; k++) {
            const char *t = self->strs[k];
            size_t j = (size_t)hash_of(self, t, strlen(t)) & (ns - 1);
            while (slots[j] != 0) {
                j = (j + 1) & (ns - 1);
            }
            slots[j] = (uint32_t)(k + 1);
        }
        free(self->str_slots);
        self->str_slots = slots;
        self->n_str_slots = ns;
        return records_intern(self, s);
    }
    if (self->n_strs >= INDEX_MAX
        || !grow((void **)&self->strs, &self->cap_strs, self->n_strs + 1, sizeof *self->strs)) {
        return NULL;
    }
    char *copy = strndup(s, len);
    if (copy == NULL) {
        return NULL;
    }
    self->strs[self->n_strs++] = copy;
    self->str_slots[i] = (uint32_t)self->n_strs;
    return copy;
}

static size_t find_slot(const records_index *self, const uint8_t *msg_id, bool *found)
{
    size_t mask = self->n_slots - 1;
    size_t i = (size_t)hash_of(self, msg_id, KETEN_MSG_ID_BYTES) & mask;
    while (self->slots[i] != 0) {
        if (memcmp(self->msgs[self->slots[i] - 1].msg_id, msg_id, KETEN_MSG_ID_BYTES) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
    *found = false;
    return i;
}

records_msg *records_index_find(const records_index *self, const uint8_t *msg_id)
{
    bool found = false;
    size_t i = find_slot(self, msg_id, &found);
    return found ? &self->msgs[self->slots[i] - 1] : NULL;
}

static keten_err rehash(records_index *self)
{
    size_t ns = self->n_slots * 2;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (slots == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "growing the message index to %zu slots", ns);
    }
    for (size_t k = 0; k < self->n; k++) {
        size_t j = (size_t)hash_of(self, self->msgs[k].msg_id, KETEN_MSG_ID_BYTES) & (ns - 1);
        while (slots[j] != 0) {
            j = (j + 1) & (ns - 1);
        }
        slots[j] = (uint32_t)(k + 1);
    }
    free(self->slots);
    self->slots = slots;
    self->n_slots = ns;
    return KETEN_OK;
}

keten_err records_index_add(
    records_index *self, const Keten__AuditRecord *rec, records_msg **out, uint64_t *dup_seq)
{
    if (out != NULL) {
        *out = NULL;
    }
    *dup_seq = UINT64_MAX;
    if (rec->msg_id.len != KETEN_MSG_ID_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "record %llu: a submitted record with a msg_id of %zu bytes",
            (unsigned long long)rec->seq, rec->msg_id.len);
    }
    bool found = false;
    size_t slot = find_slot(self, rec->msg_id.data, &found);
    if (found) {
        *dup_seq = self->msgs[self->slots[slot] - 1].seq;
        return KETEN_OK;
    }
    if (self->n + 1 > self->n_slots / 2) {
        keten_err e = rehash(self);
        if (e != KETEN_OK) {
            return e;
        }
        slot = find_slot(self, rec->msg_id.data, &found);
    }
    if (self->n >= INDEX_MAX || rec->n_recipients > KETEN_MAX_RECIPIENTS
        || !grow((void **)&self->msgs, &self->cap, self->n + 1, sizeof *self->msgs)
        || !grow((void **)&self->rcpts, &self->cap_rcpts, self->n_rcpts + rec->n_recipients,
            sizeof *self->rcpts)) {
        return keten_err_set(KETEN_ERR_NOMEM, "indexing message %zu", self->n + 1);
    }
    records_msg *m = &self->msgs[self->n];
    memset(m, 0, sizeof *m);
    memcpy(m->msg_id, rec->msg_id.data, KETEN_MSG_ID_BYTES);
    if (rec->envelope_hash.len == KETEN_HASH_BYTES) {
        memcpy(m->envelope_hash, rec->envelope_hash.data, KETEN_HASH_BYTES);
    }
    m->seq = rec->seq;
    m->time = rec->time;
    m->sender = records_intern(self, rec->sender);
    m->category = records_intern(self, rec->category);
    m->purpose = records_intern(self, rec->purpose);
    if (m->sender == NULL || m->category == NULL || m->purpose == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "indexing message %zu", self->n + 1);
    }
    m->rule = rec->rule;
    m->kind = (int)rec->kind;
    m->recipients = self->n_rcpts;
    for (size_t i = 0; i < rec->n_recipients; i++) {
        const char *r = records_intern(self, rec->recipients[i]);
        if (r == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "indexing message %zu", self->n + 1);
        }
        self->rcpts[self->n_rcpts + i] = r;
    }
    m->n_recipients = (uint32_t)rec->n_recipients;
    self->n_rcpts += rec->n_recipients;
    self->n++;
    self->slots[slot] = (uint32_t)self->n;
    if (out != NULL) {
        *out = m;
    }
    return KETEN_OK;
}

const char *records_msg_recipient(const records_index *self, const records_msg *m, size_t i)
{
    return i < m->n_recipients ? self->rcpts[m->recipients + i] : "";
}

int records_msg_recipient_index(const records_index *self, const records_msg *m, const char *id)
{
    for (size_t i = 0; i < m->n_recipients; i++) {
        if (strcmp(self->rcpts[m->recipients + i], id) == 0) {
            return (int)i;
        }
    }
    return -1;
}

bool records_msg_has_recipient(const records_index *self, const records_msg *m, const char *id)
{
    return records_msg_recipient_index(self, m, id) >= 0;
}

/* ---- filters ---------------------------------------------------------- */

const char *records_category(const Keten__AuditRecord *rec, const records_msg *m)
{
    if (rec->category != NULL && rec->category[0] != '\0') {
        return rec->category;
    }
    return m != NULL ? m->category : "";
}

const char *records_purpose(const Keten__AuditRecord *rec, const records_msg *m)
{
    if (rec->purpose != NULL && rec->purpose[0] != '\0') {
        return rec->purpose;
    }
    return m != NULL ? m->purpose : "";
}

int records_kind(const Keten__AuditRecord *rec, const records_msg *m)
{
    if (rec->kind != KETEN__KIND__KIND_UNSPECIFIED) {
        return (int)rec->kind;
    }
    return m != NULL ? m->kind : KETEN__KIND__KIND_UNSPECIFIED;
}

static bool eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

bool records_filter_match(const records_filter *f, const records_index *idx,
    const Keten__AuditRecord *rec, const records_msg *m)
{
    if (f->has_from && rec->time < f->from_ms) {
        return false;
    }
    if (f->has_to && rec->time >= f->to_ms) {
        return false;
    }
    if (f->has_msg
        && (rec->msg_id.len != KETEN_MSG_ID_BYTES
            || memcmp(rec->msg_id.data, f->msg_id, KETEN_MSG_ID_BYTES) != 0)) {
        return false;
    }
    if (f->category != NULL && !eq(records_category(rec, m), f->category)) {
        return false;
    }
    if (f->purpose != NULL && !eq(records_purpose(rec, m), f->purpose)) {
        return false;
    }
    if (f->node != NULL) {
        bool hit = eq(rec->sender, f->node) || eq(rec->node, f->node);
        const char *owner = records_key_owner(idx, rec);
        hit = hit || (owner != NULL && eq(owner, f->node));
        for (size_t i = 0; !hit && i < rec->n_recipients; i++) {
            hit = eq(rec->recipients[i], f->node);
        }
        if (!hit && m != NULL) {
            hit = eq(m->sender, f->node) || records_msg_has_recipient(idx, m, f->node);
        }
        if (!hit) {
            return false;
        }
    }
    return true;
}

/* ---- scan ------------------------------------------------------------- */

keten_err records_scan(const auditdb *db, records_index *idx, records_visit_fn fn, void *ctx)
{
    tiles_reader *rd = NULL;
    keten_err e = tiles_reader_new(db->t, &rd);
    if (e != KETEN_OK) {
        return e;
    }
    for (;;) {
        uint64_t at = 0;
        const uint8_t *leaf = NULL;
        size_t len = 0;
        bool end = false;
        if ((e = tiles_reader_next(rd, &at, &leaf, &len, &end)) != KETEN_OK) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s", keten_err_detail());
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "the log of %s is damaged: %s; run keten-audit verify", db->path, detail);
            break;
        }
        if (end) {
            break;
        }
        Keten__AuditRecord *rec = NULL;
        e = records_decode(leaf, len, false, &rec);
        if (e != KETEN_OK) {
            char detail[256];
            snprintf(detail, sizeof detail, "%s", keten_err_detail());
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "record %llu does not decode (%s); the log is damaged: run keten-audit verify",
                (unsigned long long)at, detail);
            break;
        }
        const records_msg *m = NULL;
        if (rec->msg_id.len == KETEN_MSG_ID_BYTES) {
            if (rec->event == KETEN__EVENT__EVENT_SUBMITTED) {
                records_msg *added = NULL;
                uint64_t dup = 0;
                e = records_index_add(idx, rec, &added, &dup);
                m = added != NULL ? added : records_index_find(idx, rec->msg_id.data);
            } else {
                m = records_index_find(idx, rec->msg_id.data);
                const char *who = rec->sender[0] != '\0' ? rec->sender : rec->node;
                if (rec->event == KETEN__EVENT__EVENT_REJECTED && m != NULL
                    && strcmp(who, m->sender) != 0) {
                    /* Another node's refused attempt: not this message's. */
                    rec->msg_id.len = 0;
                    m = NULL;
                }
            }
        }
        if (e == KETEN_OK) {
            e = fn(ctx, rec, m, leaf, len);
        }
        records_free(&rec);
        if (e != KETEN_OK) {
            break;
        }
    }
    tiles_reader_destroy(&rd);
    return e;
}
