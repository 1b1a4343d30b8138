#include "alarm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nodestore.h"
#include "pb.h"
#include "store.h"
#include "util.h"

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
    MDB_txn *txn = NULL;
    keten_err e = node->frame == NULL
        ? keten_err_set(KETEN_ERR_INVALID, "no frame to keep")
        : keten_pb_pack((const ProtobufCMessage *)node->frame, &frame, &frame_len);
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
    if (e == KETEN_OK) {
        e = keten_nodestore_evidence_put(node->store, txn, key, line, frame, frame_len);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    free(frame);
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
            KETEN_LOG_ERR, "cannot store alarm", "alarm=%s error=\"%s\"", kind, keten_strerror(e));
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
