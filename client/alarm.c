#include "alarm.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "dirs.h"
#include "events.h"
#include "log.h"
#include "nodestore.h"
#include "pb.h"
#include "sha256.h"
#include "store.h"
#include "util.h"
#include "witness.h"

#define DETAIL_MAX 512 /* bytes of an alarm's detail, with its NUL */

static void raise_alarm(keten_node *node, const char *kind, const char *detail);

void keten_alarm_raise(keten_node *node, const char *kind, const char *fmt, ...)
{
    char detail[DETAIL_MAX];
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
    char detail[DETAIL_MAX];
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

static void raise_alarm(keten_node *node, const char *kind, const char *detail_in)
{
    node->counters.alarms++;
    /* The detail may quote the broker (its refusal's words, a parser's
     * message about its frame), and is printed on the operator's terminal
     * (alarm list, status): valid UTF-8 without control characters, cut
     * between characters. */
    char detail[DETAIL_MAX];
    keten_text_clean(detail_in, detail, sizeof detail);

    /* The newest checkpoint the node kept when the alarm came stays, as
     * evidence of what it had accepted, and the one the alarm concerns
     * (witness.h, retention): first, in a transaction of its own, so that
     * a failure to mark them never keeps the alarm from being stored. */
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_witness_keep_for_alarm(node, txn);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        node->counters.store_errors++;
        KETEN_LOG(KETEN_LOG_ERR, "cannot mark the alarm's checkpoints as evidence",
            "alarm=%s error=\"%s\"", kind, keten_err_detail());
        keten_err_clear();
    }

    Keten__NodeAlarms *list = NULL;
    e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_alarms_get(node->store, txn, &list);
    }
    uint64_t id = 0;
    if (e == KETEN_OK) {
        /* The new one is last, numbered after the newest (always kept). Past
         * KETEN_ALARM_KEEP the oldest acknowledged one goes, else the oldest:
         * an alarm nobody has looked at outlives one that was dealt with. */
        Keten__NodeAlarm a = KETEN__NODE_ALARM__INIT;
        a.kind = (char *)(uintptr_t)kind;
        a.detail = (char *)(uintptr_t)detail;
        a.at = keten_now_ms();
        a.id = id = list->n_alarms > 0 ? list->alarms[list->n_alarms - 1]->id + 1 : 1;
        size_t drop = list->n_alarms; /* none */
        if (list->n_alarms >= KETEN_ALARM_KEEP) {
            drop = 0;
            for (size_t i = 0; i < list->n_alarms; i++) {
                if (list->alarms[i]->acknowledged_at != 0) {
                    drop = i;
                    break;
                }
            }
        }
        Keten__NodeAlarm **all = malloc((list->n_alarms + 1) * sizeof *all);
        if (all == NULL) {
            e = KETEN_ERR_NOMEM;
        } else {
            size_t n = 0;
            for (size_t i = 0; i < list->n_alarms; i++) {
                if (i != drop) {
                    all[n++] = list->alarms[i];
                }
            }
            all[n++] = &a;
            Keten__NodeAlarms out = KETEN__NODE_ALARMS__INIT;
            out.alarms = all;
            out.n_alarms = n;
            e = keten_nodestore_alarms_put(node->store, txn, &out);
            free(all);
        }
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    keten_pb_free((ProtobufCMessage **)(void *)&list);
    if (e == KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "ALARM", "alarm=%s id=%llu detail=%s", kind,
            (unsigned long long)id, detail);
    } else {
        KETEN_LOG(KETEN_LOG_ERR, "ALARM", "alarm=%s detail=%s", kind, detail);
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

/* One stored alarm as JSON (alarm.h); NULL without memory. */
static json_t *alarm_json(const Keten__NodeAlarm *a)
{
    char at[40];
    keten_time_iso(a->at, at, sizeof at);
    /* as raise_alarm stores it; a detail stored before it did so is made
     * printable here (bytes that are not UTF-8 would fail the whole list) */
    char detail[DETAIL_MAX];
    keten_text_clean(a->detail != NULL ? a->detail : "", detail, sizeof detail);
    json_t *one = json_pack("{s:I, s:s, s:s, s:s, s:b}", "id", (json_int_t)a->id, "kind", a->kind,
        "detail", detail, "at", at, "acknowledged", a->acknowledged_at != 0);
    if (one != NULL && a->acknowledged_at != 0) {
        char ack[40];
        keten_time_iso(a->acknowledged_at, ack, sizeof ack);
        if (json_object_set_new(one, "acknowledged_at", json_string(ack)) != 0
            || json_object_set_new(one, "acknowledged_by", json_string(a->acknowledged_by)) != 0
            || json_object_set_new(one, "note", json_string(a->note)) != 0) {
            json_decref(one);
            one = NULL;
        }
    }
    return one;
}

static keten_err alarms_read(keten_node *node, Keten__NodeAlarms **list)
{
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_alarms_get(node->store, txn, list);
    }
    keten_store_abort(&txn);
    return e;
}

keten_err keten_alarm_list(keten_node *node, json_t **out)
{
    *out = NULL;
    Keten__NodeAlarms *list = NULL;
    keten_err e = alarms_read(node, &list);
    json_t *arr = e == KETEN_OK ? json_array() : NULL;
    if (e == KETEN_OK && arr == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    for (size_t i = 0; e == KETEN_OK && i < list->n_alarms; i++) {
        json_t *one = alarm_json(list->alarms[i]);
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

keten_err keten_alarm_count(keten_node *node, size_t *open, size_t *acknowledged)
{
    *open = 0;
    *acknowledged = 0;
    Keten__NodeAlarms *list = NULL;
    keten_err e = alarms_read(node, &list);
    for (size_t i = 0; e == KETEN_OK && i < list->n_alarms; i++) {
        if (list->alarms[i]->acknowledged_at != 0) {
            (*acknowledged)++;
        } else {
            (*open)++;
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&list);
    return e;
}

/* ---- acknowledgement -------------------------------------------------------- */

void keten_alarm_who(const char *peer, char out[static KETEN_ALARM_WHO_BYTES])
{
    unsigned long long uid = (unsigned long long)geteuid();
    if (peer != NULL && strncmp(peer, "uid=", 4) == 0) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(peer + 4, &end, 10);
        if (errno == 0 && end != peer + 4 && *end == '\0' && v <= UINT32_MAX) {
            uid = v;
        }
    }
    snprintf(out, KETEN_ALARM_WHO_BYTES, "uid=%llu", uid);
    struct passwd pw, *res = NULL;
    char buf[2048];
    if (getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &res) == 0 && res != NULL
        && res->pw_name != NULL && keten_nodestore_by_ok(res->pw_name)
        && strncmp(res->pw_name, "uid=", 4) != 0) {
        snprintf(out, KETEN_ALARM_WHO_BYTES, "%s", res->pw_name);
    }
}

const char *keten_alarm_state_holds(keten_node *node, const char *kind)
{
    if (strcmp(kind, "directory-expired") == 0
        && !keten_directory_fresh(node->dir, keten_dirs_now_ms(node))) {
        return "the directory in force is still expired: status goes on exiting 3 for it until a "
               "fresh version is installed; acknowledge the alarm after that";
    }
    if (strcmp(kind, "directory-withheld") == 0
        && node->dir_needed > keten_directory_version(node->dir)) {
        return "the directory version the broker's checkpoints name is still not installed (the "
               "node sends nothing): acknowledge the alarm once it is";
    }
    return NULL;
}

keten_err keten_alarm_ack(
    keten_node *node, uint64_t id, const char *by, const char *note, json_t **out)
{
    *out = NULL;
    char why[160];
    if (!keten_nodestore_by_ok(by)) {
        return keten_err_set(KETEN_ERR_INVALID, "who acknowledges is not a user name");
    }
    if (!keten_nodestore_note_ok(note, why, sizeof why)) {
        return keten_err_set(KETEN_ERR_INVALID, "%s", why);
    }
    MDB_txn *txn = NULL;
    Keten__NodeAlarms *list = NULL;
    Keten__NodeAlarm *a = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_alarms_get(node->store, txn, &list);
    }
    for (size_t i = 0; e == KETEN_OK && i < list->n_alarms && a == NULL; i++) {
        if (list->alarms[i]->id == id) {
            a = list->alarms[i];
        }
    }
    const char *holds = NULL;
    if (e == KETEN_OK && a == NULL) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "this node holds no alarm %llu (keten-node alarm list shows their numbers; the "
            "oldest go past %u alarms)",
            (unsigned long long)id, KETEN_ALARM_KEEP);
    }
    if (a == NULL) {
        /* e says why */
    } else if (e == KETEN_OK && a->acknowledged_at != 0) {
        char t[40];
        keten_time_iso(a->acknowledged_at, t, sizeof t);
        e = keten_err_set(KETEN_ERR_EXISTS, "alarm %llu was already acknowledged by %s at %s: %s",
            (unsigned long long)id, a->acknowledged_by, t, a->note);
    } else if (e == KETEN_OK && (holds = keten_alarm_state_holds(node, a->kind)) != NULL) {
        e = keten_err_set(KETEN_ERR_MISMATCH, "alarm %llu (%s) is not acknowledged: %s",
            (unsigned long long)id, a->kind, holds);
    }
    if (e == KETEN_OK && a != NULL) {
        a->acknowledged_at = keten_now_ms();
        a->acknowledged_by = (char *)(uintptr_t)by; /* borrowed until the list is freed */
        a->note = (char *)(uintptr_t)note;
        e = keten_nodestore_alarms_put(node->store, txn, list);
    }
    if (e == KETEN_OK && a != NULL) {
        keten_events_item ev = { 0 };
        ev.type = KETEN__EVENT_TYPE__EVENT_TYPE_ALARM_ACKNOWLEDGED;
        ev.time = a->acknowledged_at;
        ev.alarm_id = a->id;
        ev.alarm_kind = a->kind;
        ev.by = by;
        ev.note = note;
        e = keten_events_append(node, txn, &ev, NULL);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    json_t *one = NULL;
    if (e == KETEN_OK && a != NULL) {
        KETEN_LOG(KETEN_LOG_NOTICE, "alarm acknowledged", "id=%llu kind=%s by=%s note=\"%s\"",
            (unsigned long long)a->id, a->kind, by, note);
        one = alarm_json(a);
        if (one == NULL) {
            e = KETEN_ERR_NOMEM;
        }
    }
    if (a != NULL) { /* not the list's to free */
        if (a->acknowledged_by == by) {
            a->acknowledged_by = NULL;
        }
        if (a->note == note) {
            a->note = NULL;
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&list);
    *out = one;
    return e;
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
