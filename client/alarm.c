#include "alarm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dirs.h"
#include "log.h"
#include "nodestore.h"
#include "pb.h"
#include "sha256.h"
#include "store.h"
#include "util.h"
#include "witness.h"

static void raise_alarm(keten_node *node, const char *kind, const char *detail);

void keten_alarm_raise(keten_node *node, const char *kind, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    raise_alarm(node, kind, detail);
}

/* Was a frame of this hash kept since the start? */
static bool evidence_seen(const keten_node *node, const uint8_t hash[static KETEN_HASH_BYTES])
{
    size_t n = node->n_evidence_seen < KETEN_NODE_EVIDENCE_SEEN ? node->n_evidence_seen
                                                                : KETEN_NODE_EVIDENCE_SEEN;
    for (size_t i = 0; i < n; i++) {
        if (sodium_memcmp(node->evidence_seen[i], hash, KETEN_HASH_BYTES) == 0) {
            return true;
        }
    }
    return false;
}

/* KETEN_OK when the evidence table has room for one more frame, else
 * KETEN_ERR_TOO_LARGE saying which limit it reached. */
static keten_err evidence_room(keten_node *node, MDB_txn *txn)
{
    MDB_stat st;
    int rc = mdb_stat(txn, keten_store_dbi(node->store, KETEN_DB_EVIDENCE), &st);
    if (rc != 0) {
        return keten_err_set(KETEN_ERR_STORE, "reading the evidence table: %s", mdb_strerror(rc));
    }
    uint64_t bytes = ((uint64_t)st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages)
        * (uint64_t)st.ms_psize;
    if (st.ms_entries >= KETEN_ALARM_EVIDENCE_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the evidence table holds %zu frames (the limit)",
            (size_t)st.ms_entries);
    }
    if (bytes >= KETEN_ALARM_EVIDENCE_BYTES) {
        return keten_err_set(KETEN_ERR_TOO_LARGE,
            "the evidence table takes %llu bytes (the limit is %llu)", (unsigned long long)bytes,
            (unsigned long long)KETEN_ALARM_EVIDENCE_BYTES);
    }
    return KETEN_OK;
}

void keten_alarm_evidence(keten_node *node, const char *kind, const char *fmt, ...)
{
    static uint64_t counter;
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    raise_alarm(node, kind, detail);

    uint8_t *frame = NULL;
    size_t frame_len = 0;
    uint8_t hash[KETEN_HASH_BYTES];
    MDB_txn *txn = NULL;
    keten_err e = node->frame == NULL
        ? keten_err_set(KETEN_ERR_INVALID, "no frame to keep")
        : keten_pb_pack((const ProtobufCMessage *)node->frame, &frame, &frame_len);
    if (e == KETEN_OK) {
        keten_sha256(hash, frame, frame_len);
        if (evidence_seen(node, hash)) {
            node->counters.evidence_not_kept++;
            KETEN_LOG(KETEN_LOG_NOTICE, "evidence kept before: the same frame again",
                "alarm=%s bytes=%zu", kind, frame_len);
            free(frame);
            return;
        }
    }
    char line[600];
    snprintf(line, sizeof line, "%s: %s", kind, detail);
    for (char *p = line; *p != '\0'; p++) { /* one line */
        if (*p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }
    uint8_t key[KETEN_STORE_EVIDENCE_KEY];
    if (e == KETEN_OK) {
        keten_store_u64_put(keten_now_ms(), key);
        keten_store_u64_put(++counter, key + 8);
        e = keten_store_begin(node->store, true, &txn);
    }
    if (e == KETEN_OK && (e = evidence_room(node, txn)) == KETEN_ERR_TOO_LARGE) {
        keten_store_abort(&txn);
        free(frame);
        node->counters.evidence_not_kept++;
        KETEN_LOG(KETEN_LOG_WARNING, "evidence not kept: the evidence table is full",
            "alarm=%s bytes=%zu detail=\"%s\"", kind, frame_len, keten_err_detail());
        keten_err_clear();
        return;
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_evidence_put(node->store, txn, key, line, frame, frame_len);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    free(frame);
    if (e == KETEN_OK) {
        memcpy(node->evidence_seen[node->n_evidence_seen % KETEN_NODE_EVIDENCE_SEEN], hash,
            KETEN_HASH_BYTES);
        node->n_evidence_seen++;
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot keep the evidence of an alarm", "alarm=%s error=\"%s\"",
            kind, keten_err_detail());
    } else {
        KETEN_LOG(KETEN_LOG_NOTICE, "evidence kept", "alarm=%s bytes=%zu", kind, frame_len);
    }
}

keten_err keten_alarm_evidence_count(keten_node *node, size_t *out)
{
    *out = 0;
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_store_count(node->store, txn, KETEN_DB_EVIDENCE, out);
    }
    keten_store_abort(&txn);
    return e;
}

static void raise_alarm(keten_node *node, const char *kind, const char *detail)
{
    node->counters.alarms++;
    KETEN_LOG(KETEN_LOG_ERR, "ALARM", "alarm=%s detail=%s", kind, detail);

    MDB_txn *txn = NULL;
    Keten__NodeAlarms *list = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_alarms_get(node->store, txn, &list);
    }
    if (e == KETEN_OK) {
        /* The oldest beyond KETEN_ALARM_KEEP go; the new one is last. */
        Keten__NodeAlarm a = KETEN__NODE_ALARM__INIT;
        a.kind = (char *)(uintptr_t)kind;
        a.detail = (char *)(uintptr_t)detail;
        a.at = keten_now_ms();
        size_t keep = list->n_alarms < KETEN_ALARM_KEEP ? list->n_alarms : KETEN_ALARM_KEEP - 1;
        Keten__NodeAlarm **all = malloc((keep + 1) * sizeof *all);
        if (all == NULL) {
            e = KETEN_ERR_NOMEM;
        } else {
            if (keep > 0) {
                memcpy(all, list->alarms + (list->n_alarms - keep), keep * sizeof *all);
            }
            all[keep] = &a;
            Keten__NodeAlarms out = KETEN__NODE_ALARMS__INIT;
            out.alarms = all;
            out.n_alarms = keep + 1;
            e = keten_nodestore_alarms_put(node->store, txn, &out);
            free(all);
        }
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    keten_pb_free((ProtobufCMessage **)(void *)&list);
    if (e != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_ERR, "cannot store alarm", "alarm=%s error=\"%s\"", kind, keten_err_str(e));
    }
}

void keten_alarm_warn(keten_node *node, const char *what, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    node->counters.warnings++;
    KETEN_LOG(KETEN_LOG_WARNING, "warning", "warning=%s detail=%s", what, detail);
}

keten_err keten_alarm_list(keten_node *node, json_t **out)
{
    *out = NULL;
    MDB_txn *txn = NULL;
    Keten__NodeAlarms *list = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_alarms_get(node->store, txn, &list);
    }
    keten_store_abort(&txn);
    json_t *arr = e == KETEN_OK ? json_array() : NULL;
    if (e == KETEN_OK && arr == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    for (size_t i = 0; e == KETEN_OK && i < list->n_alarms; i++) {
        const Keten__NodeAlarm *a = list->alarms[i];
        char at[40];
        keten_time_iso(a->at, at, sizeof at);
        json_t *one = json_pack("{s:s, s:s, s:s}", "kind", a->kind, "detail",
            a->detail != NULL ? a->detail : "", "at", at);
        if (one == NULL || json_array_append_new(arr, one) != 0) {
            e = KETEN_ERR_NOMEM;
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&list);
    if (e != KETEN_OK) {
        json_decref(arr);
        return e;
    }
    *out = arr;
    return KETEN_OK;
}

/* ---- refusal by the broker ------------------------------------------------ */

#define REFUSED_KEY "refused"
/* reason (8, big-endian) || version (8) || at (8) || confirmed (1) || transport key */
#define REFUSED_BYTES (8 + 8 + 8 + 1 + KETEN_CURVE_KEY_BYTES)

const char *keten_alarm_refusal_kind(Keten__Reason reason)
{
    switch (reason) {
    case KETEN__REASON__REASON_NONE:
        return "";
    case KETEN__REASON__REASON_REVOKED:
        return "revoked";
    case KETEN__REASON__REASON_KEYS_REPLACED:
        return "keys-replaced";
    case KETEN__REASON__REASON_UNKNOWN_CHECKPOINT:
        return "log-shorter";
    default:
        return "not-current";
    }
}

void keten_alarm_refusal_text(Keten__Reason reason, uint64_t version, char *out, size_t size)
{
    unsigned long long v = (unsigned long long)version;
    switch (reason) {
    case KETEN__REASON__REASON_NONE:
        snprintf(out, size, "%s", "");
        break;
    case KETEN__REASON__REASON_REVOKED:
        snprintf(out, size, "revoked in version %llu: ask your administrator", v);
        break;
    case KETEN__REASON__REASON_KEYS_REPLACED:
        snprintf(out, size, "keys replaced in version %llu: start with the new keys", v);
        break;
    case KETEN__REASON__REASON_UNKNOWN_CHECKPOINT:
        snprintf(out, size, "%s",
            "its log is shorter than the checkpoint this node accepted: keep this node's store "
            "and tell your administrators");
        break;
    default:
        snprintf(out, size,
            "not a current node of version %llu with these keys: ask your administrator", v);
        break;
    }
}

keten_err keten_alarm_refusal_err(Keten__Reason reason)
{
    switch (reason) {
    case KETEN__REASON__REASON_REVOKED:
        return KETEN_ERR_REVOKED;
    case KETEN__REASON__REASON_UNKNOWN_CHECKPOINT:
        return KETEN_ERR_INCONSISTENT;
    default:
        return KETEN_ERR_UNKNOWN_NODE;
    }
}

static keten_err refusal_store(keten_node *node, bool clear)
{
    uint8_t v[REFUSED_BYTES];
    keten_store_u64_put((uint64_t)node->refused, v);
    keten_store_u64_put(node->refused_version, v + 8);
    keten_store_u64_put(node->refused_at, v + 16);
    v[24] = node->refused_confirmed ? 1 : 0;
    memcpy(v + 25, node->me->transport_pk, KETEN_CURVE_KEY_BYTES);
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = clear
            ? keten_store_del(node->store, txn, KETEN_DB_STATE, REFUSED_KEY, strlen(REFUSED_KEY))
            : keten_store_put(
                node->store, txn, KETEN_DB_STATE, REFUSED_KEY, strlen(REFUSED_KEY), v, sizeof v);
    }
    if (e == KETEN_ERR_NOT_FOUND && clear) {
        e = KETEN_OK;
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    return e;
}

/* A refusal reason as kept: the three of a cut connection, or the refused
 * Hello; anything else counts as not current. */
static Keten__Reason refusal_reason(uint64_t r)
{
    return r == KETEN__REASON__REASON_REVOKED || r == KETEN__REASON__REASON_KEYS_REPLACED
            || r == KETEN__REASON__REASON_UNKNOWN_CHECKPOINT
        ? (Keten__Reason)r
        : KETEN__REASON__REASON_UNKNOWN_SENDER;
}

void keten_alarm_refused(keten_node *node, const Keten__Error *err)
{
    Keten__Reason reason = refusal_reason((uint64_t)err->reason);
    bool first = node->refused == KETEN__REASON__REASON_NONE;
    if (!first && node->refused == reason && node->refused_version == err->directory_version) {
        return; /* the same refusal again (frames sent before the node stopped) */
    }
    node->refused = reason;
    node->refused_version = err->directory_version;
    node->refused_at = keten_now_ms();
    char text[160];
    keten_alarm_refusal_text(reason, err->directory_version, text, sizeof text);
    if (reason == KETEN__REASON__REASON_UNKNOWN_CHECKPOINT) {
        /* Not a matter of keys: the broker no longer has records it signed.
         * The checkpoint this node holds is the evidence, with the answer. */
        node->refused_confirmed = true;
        keten_alarm_evidence(node, keten_alarm_refusal_kind(reason),
            "the broker refused this node's Hello: its log is shorter than the checkpoint of %llu "
            "records this node accepted, so records it had signed are gone from it (the "
            "broker says: %s)",
            (unsigned long long)keten_witness_reference_size(node),
            err->detail != NULL ? err->detail : "");
    } else {
        /* The broker's word, or also what a signed directory the node holds says? */
        uint64_t held = keten_directory_version(node->dir);
        node->refused_confirmed
            = held >= err->directory_version && keten_dirs_my_cert(node) == NULL;
        char detail[400];
        snprintf(detail, sizeof detail, "the broker ended the connection: %s (%s)", text,
            node->refused_confirmed
                ? "this node's directory says the same"
                : "not in a directory this node holds: the broker's word only");
        if (first) {
            node->counters.alarms++;
        }
        KETEN_LOG(KETEN_LOG_ERR, "ALARM", "alarm=%s version=%llu detail=%s",
            keten_alarm_refusal_kind(reason), (unsigned long long)err->directory_version, detail);
    }
    keten_err e = refusal_store(node, false);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store the refusal", "error=\"%s\"", keten_err_str(e));
        keten_err_clear();
    }
}

void keten_alarm_refusal_load(keten_node *node)
{
    MDB_txn *txn = NULL;
    MDB_val v;
    bool drop = false;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_store_get(node->store, txn, KETEN_DB_STATE, REFUSED_KEY, strlen(REFUSED_KEY), &v);
    }
    if (e == KETEN_OK && v.mv_size == REFUSED_BYTES) {
        const uint8_t *p = v.mv_data;
        if (sodium_memcmp(p + 25, node->me->transport_pk, KETEN_CURVE_KEY_BYTES) == 0) {
            node->refused = refusal_reason(keten_store_u64_get(p));
            node->refused_version = keten_store_u64_get(p + 8);
            node->refused_at = keten_store_u64_get(p + 16);
            node->refused_confirmed = p[24] != 0;
        } else {
            drop = true;
        }
    } else if (e == KETEN_OK) {
        drop = true; /* not the size it is written with */
    }
    keten_store_abort(&txn);
    keten_err_clear();
    if (node->refused != KETEN__REASON__REASON_NONE) {
        char text[160];
        keten_alarm_refusal_text(node->refused, node->refused_version, text, sizeof text);
        KETEN_LOG(KETEN_LOG_ERR, "the broker cut this node off before its restart",
            "alarm=%s version=%llu action=\"%s\"", keten_alarm_refusal_kind(node->refused),
            (unsigned long long)node->refused_version, text);
    } else if (drop) {
        KETEN_LOG(KETEN_LOG_NOTICE,
            "a refusal stored for other keys is dropped: this node runs with new keys", NULL);
        if (refusal_store(node, true) != KETEN_OK) {
            keten_err_clear();
        }
    }
}

void keten_alarm_refusal_clear(keten_node *node)
{
    if (node->refused == KETEN__REASON__REASON_NONE) {
        return;
    }
    node->refused = KETEN__REASON__REASON_NONE;
    node->refused_version = 0;
    node->refused_at = 0;
    node->refused_confirmed = false;
    if (refusal_store(node, true) != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_ERR, "cannot clear the stored refusal", "error=\"%s\"", keten_err_detail());
        keten_err_clear();
    }
}
