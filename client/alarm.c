#include "alarm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pb.h"
#include "store.h"
#include "util.h"

#define ALARMS_KEY "alarms"

static keten_err load_alarms(keten_node *node, MDB_txn *txn, json_t **out)
{
    MDB_val v;
    keten_err e
        = keten_store_get(node->store, txn, KETEN_DB_STATE, ALARMS_KEY, strlen(ALARMS_KEY), &v);
    if (e == KETEN_ERR_NOT_FOUND) {
        *out = json_array();
        return *out != NULL ? KETEN_OK : KETEN_ERR_NOMEM;
    }
    if (e != KETEN_OK) {
        return e;
    }
    json_error_t jerr;
    *out = json_loadb(v.mv_data, v.mv_size, 0, &jerr);
    if (*out == NULL || !json_is_array(*out)) {
        json_decref(*out);
        *out = NULL;
        return keten_err_set(KETEN_ERR_MALFORMED, "the stored alarms do not parse: %s", jerr.text);
    }
    return KETEN_OK;
}

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

    uint8_t *frame = NULL, *val = NULL;
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
    size_t line_len = strlen(line);
    if (e == KETEN_OK) {
        val = malloc(line_len + 1 + frame_len);
        e = val == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    }
    uint8_t key[KETEN_STORE_EVIDENCE_KEY];
    if (e == KETEN_OK) {
        memcpy(val, line, line_len + 1);
        memcpy(val + line_len + 1, frame, frame_len);
        keten_store_u64_put(keten_now_ms(), key);
        keten_store_u64_put(++counter, key + 8);
        e = keten_store_begin(node->store, true, &txn);
    }
    if (e == KETEN_OK) {
        e = keten_store_put(
            node->store, txn, KETEN_DB_EVIDENCE, key, sizeof key, val, line_len + 1 + frame_len);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    free(frame);
    free(val);
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
    char q[600];
    keten_log_quote(detail, q, sizeof q);
    KETEN_LOG(KETEN_LOG_ERR, "ALARM", "alarm=%s detail=%s", kind, q);

    MDB_txn *txn = NULL;
    json_t *list = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = load_alarms(node, txn, &list);
    }
    if (e == KETEN_OK) {
        char at[40];
        keten_time_iso(keten_now_ms(), at, sizeof at);
        json_t *a = json_pack("{s:s, s:s, s:s}", "kind", kind, "detail", detail, "at", at);
        if (a == NULL || json_array_append_new(list, a) != 0) {
            e = KETEN_ERR_NOMEM;
        }
        while (e == KETEN_OK && json_array_size(list) > KETEN_ALARM_KEEP) {
            json_array_remove(list, 0);
        }
    }
    if (e == KETEN_OK) {
        char *text = json_dumps(list, JSON_COMPACT);
        e = text == NULL ? KETEN_ERR_NOMEM
                         : keten_store_put(node->store, txn, KETEN_DB_STATE, ALARMS_KEY,
                             strlen(ALARMS_KEY), text, strlen(text));
        free(text);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    json_decref(list);
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
    char q[600];
    keten_log_quote(detail, q, sizeof q);
    KETEN_LOG(KETEN_LOG_WARNING, "warning", "warning=%s detail=%s", what, q);
}

keten_err keten_alarm_list(keten_node *node, json_t **out)
{
    *out = NULL;
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = load_alarms(node, txn, out);
    }
    keten_store_abort(&txn);
    return e;
}
