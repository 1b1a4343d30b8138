#include "status.h"

#include <string.h>

#include "alarm.h"
#include "dirs.h"
#include "inbox.h"
#include "link.h"
#include "outbox.h"
#include "rec.h"
#include "store.h"
#include "util.h"
#include "witness.h"

static json_t *counters_json(const keten_node_counters *c)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                     "s:I, s:I}",
        "sent", (json_int_t)c->sent, "refused", (json_int_t)c->refused, "received",
        (json_int_t)c->received, "duplicates", (json_int_t)c->duplicates, "rejected",
        (json_int_t)c->rejected, "receipts", (json_int_t)c->receipts, "receipt_batches",
        (json_int_t)c->receipt_batches, "checkpoints_accepted", (json_int_t)c->checkpoints_accepted,
        "checkpoints_refused", (json_int_t)c->checkpoints_refused, "checkpoints_unknown_old",
        (json_int_t)c->checkpoints_unknown_old, "proofs_passed", (json_int_t)c->proofs_passed,
        "proofs_failed", (json_int_t)c->proofs_failed, "proofs_unknown",
        (json_int_t)c->proofs_unknown, "alarms", (json_int_t)c->alarms, "warnings",
        (json_int_t)c->warnings, "hooks_run", (json_int_t)c->hooks_run, "hooks_failed",
        (json_int_t)c->hooks_failed);
}

keten_err keten_status_node(keten_node *node, json_t **out)
{
    *out = NULL;
    json_t *st = json_object();
    json_t *alarms = NULL;
    if (st == NULL) {
        return KETEN_ERR_NOMEM;
    }
    uint64_t now = keten_now_ms();
    const Keten__Directory *doc = keten_directory_doc(node->dir);
    keten_err e = keten_rec_set(st, "node", json_string(node->me->id));
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "role", json_string(node->me->role));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "connected", json_boolean(keten_link_connected(node->link)));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "broker", json_string(node->opts.broker));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "last_connect_error", json_string(keten_link_last_error(node->link)));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "member", json_boolean(keten_dirs_my_cert(node) != NULL));
    }
    if (e == KETEN_OK) {
        char expires[40];
        keten_time_iso(doc->expires_at, expires, sizeof expires);
        e = keten_rec_set(st, "directory",
            json_pack("{s:I, s:s, s:b, s:I}", "version", (json_int_t)doc->version, "expires_at",
                expires, "fresh", keten_directory_fresh(node->dir, now), "needed_version",
                (json_int_t)node->dir_needed));
    }
    if (e == KETEN_OK) {
        e = keten_witness_status(node, st);
    }
    size_t outbox = 0;
    MDB_txn *txn = NULL;
    if (e == KETEN_OK) {
        e = keten_store_begin(node->store, false, &txn);
    }
    if (e == KETEN_OK) {
        e = keten_store_count(node->store, txn, KETEN_DB_OUTBOX, &outbox);
    }
    keten_store_abort(&txn);
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "outbox", json_integer((json_int_t)outbox));
    }
    if (e == KETEN_OK) {
        e = keten_alarm_list(node, &alarms);
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "alarms", alarms);
        alarms = NULL;
    }
    size_t evidence = 0;
    if (e == KETEN_OK) {
        e = keten_alarm_evidence_count(node, &evidence);
    }
    if (e == KETEN_OK) { /* broker frames kept as the evidence of alarms */
        e = keten_rec_set(st, "evidence", json_integer((json_int_t)evidence));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "counters", counters_json(&node->counters));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "started_at", keten_rec_time(node->started_at));
    }
    if (e == KETEN_OK) { /* durable commits (a group commit counts once) */
        e = keten_rec_set(
            st, "store_commits", json_integer((json_int_t)keten_store_commits(node->store)));
    }
    json_decref(alarms);
    if (e != KETEN_OK) {
        json_decref(st);
        return e;
    }
    *out = st;
    return KETEN_OK;
}

static keten_err copy_field(const json_t *from, json_t *to, const char *key)
{
    json_t *v = json_object_get(from, key);
    return v == NULL ? KETEN_OK : keten_rec_set(to, key, json_incref(v));
}

static keten_err time_field(const json_t *from, json_t *to, const char *key)
{
    return json_object_get(from, key) == NULL
        ? KETEN_OK
        : keten_rec_set(to, key, keten_rec_time(keten_rec_u64(from, key)));
}

static keten_err sent_status(const uint8_t *msg_id, const json_t *rec, json_t *st)
{
    keten_err e = keten_rec_set(st, "msg_id", keten_rec_hex(msg_id, KETEN_MSG_ID_BYTES));
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "direction", json_string("sent"));
    }
    const char *keys[] = { "kind", "category", "purpose", "state", "in_reply_to", "leaf_index",
        "tree_size", "reason", "rule", "detail", "replies" };
    for (size_t i = 0; e == KETEN_OK && i < sizeof keys / sizeof keys[0]; i++) {
        e = copy_field(rec, st, keys[i]);
    }
    const char *times[] = { "created_at", "expires_at", "accepted_at" };
    for (size_t i = 0; e == KETEN_OK && i < sizeof times / sizeof times[0]; i++) {
        e = time_field(rec, st, times[i]);
    }
    json_t *rcpts = json_array();
    json_t *r;
    size_t i;
    if (rcpts == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    json_array_foreach(json_object_get(rec, "recipients"), i, r)
    {
        if (e != KETEN_OK) {
            break;
        }
        json_t *one = json_object();
        e = one == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
        const char *rkeys[]
            = { "id", "state", "receipted_at", "reason", "receipt_leaf", "replied" };
        for (size_t k = 0; e == KETEN_OK && k < sizeof rkeys / sizeof rkeys[0]; k++) {
            e = copy_field(r, one, rkeys[k]);
        }
        if (e == KETEN_OK && json_object_get(one, "replied") == NULL) {
            e = keten_rec_set(one, "replied", json_false());
        }
        if (e == KETEN_OK && strcmp(keten_rec_str(r, "state"), "rejected") == 0) {
            e = copy_field(rec, one, "reason");
        }
        if (one != NULL && (e != KETEN_OK || json_array_append_new(rcpts, one) != 0)) {
            e = e == KETEN_OK ? KETEN_ERR_NOMEM : e;
        }
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "recipients", rcpts);
        rcpts = NULL;
    }
    json_decref(rcpts);
    if (e == KETEN_OK && json_object_get(st, "replies") == NULL) {
        e = keten_rec_set(st, "replies", json_array());
    }
    return e;
}

static keten_err received_status(const uint8_t *msg_id, const json_t *rec, json_t *st)
{
    keten_err e = keten_rec_set(st, "msg_id", keten_rec_hex(msg_id, KETEN_MSG_ID_BYTES));
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "direction", json_string("received"));
    }
    const char *keys[]
        = { "from", "kind", "category", "purpose", "in_reply_to", "leaf_index", "handled" };
    for (size_t i = 0; e == KETEN_OK && i < sizeof keys / sizeof keys[0]; i++) {
        e = copy_field(rec, st, keys[i]);
    }
    const char *times[] = { "received_at", "created_at", "expires_at" };
    for (size_t i = 0; e == KETEN_OK && i < sizeof times / sizeof times[0]; i++) {
        e = time_field(rec, st, times[i]);
    }
    return e;
}

keten_err keten_status_message(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out)
{
    *out = NULL;
    json_t *rec = NULL, *alarms = NULL;
    json_t *st = json_object();
    if (st == NULL) {
        return KETEN_ERR_NOMEM;
    }
    keten_err e = keten_outbox_record(node, msg_id, &rec);
    if (e == KETEN_OK) {
        e = sent_status(msg_id, rec, st);
    } else if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        e = keten_inbox_record(node, msg_id, &rec);
        if (e == KETEN_OK) {
            e = received_status(msg_id, rec, st);
        }
    }
    if (e == KETEN_OK) {
        e = keten_alarm_list(node, &alarms);
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "alarms", json_integer((json_int_t)json_array_size(alarms)));
    }
    json_decref(alarms);
    json_decref(rec);
    if (e != KETEN_OK) {
        json_decref(st);
        return e;
    }
    *out = st;
    return KETEN_OK;
}
