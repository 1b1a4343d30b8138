#include "status.h"

#include <string.h>

#include "alarm.h"
#include "dirs.h"
#include "inbox.h"
#include "link.h"
#include "nodestore.h"
#include "pb.h"
#include "outbox.h"
#include "rec.h"
#include "store.h"
#include "util.h"
#include "witness.h"

#define REFUSAL_TEXT_MAX 1024 /* bytes of a refusal's detail shown */

static json_t *counters_json(const keten_node_counters *c)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                     "s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "sent", (json_int_t)c->sent, "refused", (json_int_t)c->refused, "refusals_unproven",
        (json_int_t)c->refusals_unproven, "received", (json_int_t)c->received, "duplicates",
        (json_int_t)c->duplicates, "rejected", (json_int_t)c->rejected, "receipts",
        (json_int_t)c->receipts, "receipt_batches", (json_int_t)c->receipt_batches,
        "checkpoints_accepted", (json_int_t)c->checkpoints_accepted, "checkpoints_refused",
        (json_int_t)c->checkpoints_refused, "checkpoints_unknown_old",
        (json_int_t)c->checkpoints_unknown_old, "proofs_passed", (json_int_t)c->proofs_passed,
        "proofs_failed", (json_int_t)c->proofs_failed, "proofs_unknown",
        (json_int_t)c->proofs_unknown, "alarms", (json_int_t)c->alarms, "warnings",
        (json_int_t)c->warnings, "hooks_run", (json_int_t)c->hooks_run, "hooks_failed",
        (json_int_t)c->hooks_failed, "store_errors", (json_int_t)c->store_errors,
        "signatures_remembered", (json_int_t)c->signatures_remembered, "signatures_checked",
        (json_int_t)c->signatures_checked, "evidence_not_kept", (json_int_t)c->evidence_not_kept,
        "checkpoints_removed", (json_int_t)c->checkpoints_removed);
}

keten_err keten_status_node(keten_node *node, json_t **out)
{
    *out = NULL;
    json_t *st = json_object();
    json_t *alarms = NULL;
    if (st == NULL) {
        return KETEN_ERR_NOMEM;
    }
    uint64_t now = keten_dirs_now_ms(node);
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
    if (e == KETEN_OK && node->refused != KETEN__REASON__REASON_NONE) {
        /* The broker cut this node off (alarm.h): what, when, what to do. */
        char text[160], at[40];
        keten_alarm_refusal_text(node->refused, node->refused_version, text, sizeof text);
        keten_time_iso(node->refused_at, at, sizeof at);
        e = keten_rec_set(st, "refused",
            json_pack("{s:s, s:I, s:s, s:s, s:b, s:i}", "kind",
                keten_alarm_refusal_kind(node->refused), "directory_version",
                (json_int_t)node->refused_version, "at", at, "action", text, "confirmed",
                node->refused_confirmed, "exit",
                keten_err_exit_code(keten_alarm_refusal_err(node->refused))));
    }
    if (e == KETEN_OK) {
        char expires[40];
        keten_time_iso(doc->expires_at, expires, sizeof expires);
        e = keten_rec_set(st, "directory",
            json_pack("{s:I, s:s, s:b, s:I, s:I}", "version", (json_int_t)doc->version,
                "expires_at", expires, "fresh", keten_directory_fresh(node->dir, now),
                "needed_version", (json_int_t)node->dir_needed, "held_deliveries",
                (json_int_t)node->held_deliveries));
    }
    const char *advice = keten_dirs_expired_advice(node);
    if (e == KETEN_OK && advice != NULL) { /* why, and what to do */
        e = keten_rec_set(json_object_get(st, "directory"), "problem", json_string(advice));
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
    if (e == KETEN_OK) { /* the store's filesystem: full or not (store.h) */
        e = keten_rec_set(st, "store", keten_store_disk_json(node->store));
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

static keten_err sent_status(const Keten__SentRecord *rec, json_t *st)
{
    Keten__Header *h = NULL;
    const bool accepted = rec->state == KETEN__SENT_STATE__SENT_STATE_ACCEPTED;
    const bool has_reason = rec->reason != KETEN__REASON__REASON_NONE;
    const char *reason = keten_outbox_reason_name(rec->reason);
    keten_err e = keten_rec_set(st, "msg_id", keten_rec_hex(rec->msg_id.data, KETEN_MSG_ID_BYTES));
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "direction", json_string("sent"));
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_sent_header(rec, &h);
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_header_json(h, KETEN_HDR_LABELS | KETEN_HDR_TIMES, st);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "state", json_string(keten_nodestore_sent_state_name(rec->state)));
    }
    if (e == KETEN_OK && accepted) {
        e = keten_rec_set(st, "leaf_index", json_integer((json_int_t)rec->leaf_index));
        if (e == KETEN_OK) {
            e = keten_rec_set(st, "tree_size", json_integer((json_int_t)rec->tree_size));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(st, "accepted_at", keten_rec_time(rec->accepted_at));
        }
    }
    if (e == KETEN_OK && rec->state == KETEN__SENT_STATE__SENT_STATE_REFUSED
        && rec->tree_size != 0) { /* the proof of its rejected record */
        e = keten_rec_set(st, "leaf_index", json_integer((json_int_t)rec->leaf_index));
        if (e == KETEN_OK) {
            e = keten_rec_set(st, "tree_size", json_integer((json_int_t)rec->tree_size));
        }
    }
    if (e == KETEN_OK && has_reason) {
        e = keten_rec_set(st, "reason", json_string(reason));
        if (e == KETEN_OK && rec->reason == KETEN__REASON__REASON_POLICY) {
            e = keten_rec_set(st, "rule", json_integer((json_int_t)rec->rule));
        }
        if (e == KETEN_OK) { /* the broker's words: printable, also as stored before */
            char detail[REFUSAL_TEXT_MAX];
            keten_text_clean(rec->detail != NULL ? rec->detail : "", detail, sizeof detail);
            e = keten_rec_set(st, "detail", json_string(detail));
        }
    }
    json_t *rcpts = json_array();
    if (rcpts == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    for (size_t i = 0; e == KETEN_OK && i < rec->n_recipients; i++) {
        const Keten__SentRecipient *r = rec->recipients[i];
        json_t *one = json_object();
        e = one == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
        if (e == KETEN_OK) {
            e = keten_rec_set(one, "id", json_string(r->id));
        }
        /* A message the broker refused never reached its recipients. */
        bool rejected = rec->state == KETEN__SENT_STATE__SENT_STATE_REFUSED;
        if (e == KETEN_OK) {
            e = keten_rec_set(one, "state",
                json_string(
                    rejected ? "rejected" : keten_nodestore_recipient_state_name(r->state)));
        }
        if (e == KETEN_OK && r->state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED) {
            e = keten_rec_set(one, "receipted_at", keten_rec_time(r->stored_at));
        }
        if (e == KETEN_OK && r->state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_REFUSED) {
            e = keten_rec_set(one, "reason", json_string(keten_outbox_reason_name(r->reason)));
        }
        if (e == KETEN_OK
            && (r->state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED
                || r->state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_REFUSED)) {
            e = keten_rec_set(one, "receipt_leaf", json_integer((json_int_t)r->receipt_leaf));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(one, "replied", json_boolean(r->replied));
        }
        if (e == KETEN_OK && rejected && has_reason) {
            e = keten_rec_set(one, "reason", json_string(reason));
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
    json_t *replies = json_array();
    if (e == KETEN_OK && replies == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    for (size_t i = 0; e == KETEN_OK && i < rec->n_replies; i++) {
        const Keten__SentReply *r = rec->replies[i];
        json_t *one = json_object();
        e = one == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
        if (e == KETEN_OK) {
            e = keten_rec_set(one, "msg_id", keten_rec_hex(r->msg_id.data, KETEN_MSG_ID_BYTES));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(one, "from", json_string(r->from != NULL ? r->from : ""));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(one, "received_at", keten_rec_time(r->received_at));
        }
        if (one != NULL && (e != KETEN_OK || json_array_append_new(replies, one) != 0)) {
            e = e == KETEN_OK ? KETEN_ERR_NOMEM : e;
        }
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "replies", replies);
        replies = NULL;
    }
    json_decref(replies);
    return e;
}

static keten_err received_status(
    const uint8_t *msg_id, const Keten__ReceivedRecord *rec, json_t *st)
{
    Keten__Header *h = NULL;
    keten_err e = keten_rec_set(st, "msg_id", keten_rec_hex(msg_id, KETEN_MSG_ID_BYTES));
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "direction", json_string("received"));
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_received_header(msg_id, rec, &h);
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_header_json(h, KETEN_HDR_ALL, st);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "leaf_index", json_integer((json_int_t)rec->leaf_index));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "handled", json_boolean(rec->handled));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "received_at", keten_rec_time(rec->received_at));
    }
    if (e == KETEN_OK) {
        e = keten_inbox_reply_json(rec, st);
    }
    return e;
}

keten_err keten_status_message_record(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out)
{
    *out = NULL;
    Keten__SentRecord *sent = NULL;
    Keten__ReceivedRecord *received = NULL;
    json_t *st = json_object();
    if (st == NULL) {
        return KETEN_ERR_NOMEM;
    }
    keten_err e = keten_outbox_record(node, msg_id, &sent);
    if (e == KETEN_OK) {
        e = sent_status(sent, st);
    } else if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        e = keten_inbox_record(node, msg_id, &received);
        if (e == KETEN_OK) {
            e = received_status(msg_id, received, st);
        }
    }
    keten_nodestore_sent_free(&sent);
    keten_nodestore_received_free(&received);
    if (e != KETEN_OK) {
        json_decref(st);
        return e;
    }
    *out = st;
    return KETEN_OK;
}

keten_err keten_status_message(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out)
{
    json_t *st = NULL;
    keten_err e = keten_status_message_record(node, msg_id, &st);
    size_t open = 0, acknowledged = 0;
    if (e == KETEN_OK) {
        e = keten_alarm_count(node, &open, &acknowledged);
    }
    if (e == KETEN_OK) { /* the ones that make status exit 3 */
        e = keten_rec_set(st, "alarms", json_integer((json_int_t)open));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(st, "alarms_acknowledged", json_integer((json_int_t)acknowledged));
    }
    if (e != KETEN_OK) {
        json_decref(st);
        return e;
    }
    *out = st;
    return KETEN_OK;
}
