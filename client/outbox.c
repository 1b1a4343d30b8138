#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alarm.h"
#include "api.h"
#include "dirs.h"
#include "envelope.h"
#include "link.h"
#include "log.h"
#include "pb.h"
#include "policy.h"
#include "rec.h"
#include "signal_json.h"
#include "store.h"
#include "util.h"

#define SUBMIT_BATCH_MAX 256 /* outbox entries looked at per main-loop round */

const char *keten_outbox_reason_name(Keten__Reason reason)
{
    const ProtobufCEnumValue *v
        = protobuf_c_enum_descriptor_get_value(&keten__reason__descriptor, (int)reason);
    if (v == NULL) {
        return "UNKNOWN";
    }
    return strncmp(v->name, "REASON_", 7) == 0 ? v->name + 7 : v->name;
}

static void msg_hex(const uint8_t id[static KETEN_MSG_ID_BYTES], char out[KETEN_MSG_ID_HEX_BYTES])
{
    keten_hex(id, KETEN_MSG_ID_BYTES, out);
}

/* The recipient list, with role: for the policy check. */
static keten_err resolve_recipients(keten_node *node, const char *to, const char ***ids, size_t *n)
{
    const char **all = NULL;
    size_t n_all = 0;
    keten_err e = keten_directory_resolve(node->dir, to, &all, &n_all);
    if (e != KETEN_OK) {
        return e;
    }
    size_t k = 0;
    for (size_t i = 0; i < n_all; i++) {
        if (strcmp(all[i], node->me->id) != 0) { /* never to ourselves */
            all[k++] = all[i];
        }
    }
    if (k == 0) {
        free(all);
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "--to %s names no node other than this one; name node ids or role:NAME", to);
    }
    if (k > KETEN_MAX_RECIPIENTS) {
        free(all);
        return keten_err_set(KETEN_ERR_TOO_LARGE, "--to %s names %zu nodes; at most %d allowed", to,
            k, KETEN_MAX_RECIPIENTS);
    }
    *ids = all;
    *n = k;
    return KETEN_OK;
}

static keten_err policy_check(keten_node *node, const char *const *ids, size_t n, Keten__Kind kind,
    const char *category, const char *purpose)
{
    const Keten__Directory *doc = keten_directory_doc(node->dir);
    for (size_t i = 0; i < n; i++) {
        const Keten__NodeCert *to = keten_directory_find_id(node->dir, ids[i]);
        if (to == NULL) {
            return keten_err_set(KETEN_ERR_UNKNOWN_NODE, "%s is not a current node", ids[i]);
        }
        keten_policy_decision d = keten_policy_evaluate(
            doc, node->me->id, node->me->role, to->id, to->role, kind, category, purpose);
        if (!d.allowed) {
            if (d.rule == KETEN_POLICY_DEFAULT_RULE) {
                return keten_err_set(KETEN_ERR_POLICY,
                    "the sharing policy refuses %s -> %s (kind %s, category %s, purpose %s): "
                    "no rule allows it (default deny, rule 0)",
                    node->me->id, to->id, keten_kind_name(kind), category, purpose);
            }
            return keten_err_set(KETEN_ERR_POLICY,
                "the sharing policy refuses %s -> %s (kind %s, category %s, purpose %s): "
                "deny rule %u",
                node->me->id, to->id, keten_kind_name(kind), category, purpose, d.rule);
        }
    }
    return KETEN_OK;
}

static keten_err submit_one(keten_node *node, const uint8_t *env, size_t len)
{
    Keten__Submit sub = KETEN__SUBMIT__INIT;
    sub.envelope.data = (uint8_t *)(uintptr_t)env;
    sub.envelope.len = len;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = keten_node_request_id(node);
    f.body_case = KETEN__FRAME__BODY_SUBMIT;
    f.submit = &sub;
    return keten_link_send(node->link, &f);
}

static json_t *new_sent_record(keten_node *node, const Keten__Header *h, const uint8_t *hdr,
    size_t hdr_len, const uint8_t env_hash[static KETEN_HASH_BYTES])
{
    json_t *r = json_object();
    json_t *rcpt = json_array();
    if (r == NULL || rcpt == NULL) {
        json_decref(r);
        json_decref(rcpt);
        return NULL;
    }
    keten_err e = keten_rec_set(r, "state", json_string("pending"));
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "kind", json_string(keten_kind_name(h->kind)));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "category", json_string(h->category));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "purpose", json_string(h->purpose));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "created_at", json_integer((json_int_t)h->created_at));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "expires_at", json_integer((json_int_t)h->expires_at));
    }
    if (e == KETEN_OK && h->in_reply_to.len == KETEN_MSG_ID_BYTES) {
        e = keten_rec_set(r, "in_reply_to", keten_rec_hex(h->in_reply_to.data, KETEN_MSG_ID_BYTES));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "envelope_hash", keten_rec_hex(env_hash, KETEN_HASH_BYTES));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "header", keten_rec_hex(hdr, hdr_len));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(
            r, "directory_version", json_integer((json_int_t)keten_directory_version(node->dir)));
    }
    for (size_t i = 0; e == KETEN_OK && i < h->n_recipients; i++) {
        json_t *one = json_pack("{s:s, s:s}", "id", h->recipients[i], "state", "pending");
        if (one == NULL || json_array_append_new(rcpt, one) != 0) {
            e = KETEN_ERR_NOMEM;
        }
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "recipients", rcpt);
        rcpt = NULL;
    }
    json_decref(rcpt);
    if (e != KETEN_OK) {
        json_decref(r);
        return NULL;
    }
    return r;
}

keten_err keten_outbox_send(
    keten_node *node, const keten_send_req *req, uint8_t msg_id_out[static KETEN_MSG_ID_BYTES])
{
    Keten__Signal *signal = NULL;
    Keten__Envelope *env = NULL;
    Keten__Header *hdr = NULL;
    const char **ids = NULL;
    size_t n_ids = 0;
    uint8_t *payload = NULL, *sealed = NULL;
    size_t payload_len = 0, sealed_len = 0;
    json_t *rec = NULL;
    MDB_txn *txn = NULL;

    keten_err e = keten_dirs_send_ok(node);
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = keten_signal_from_json(req->json, req->json_len, &signal)) != KETEN_OK
        || (e = keten_signal_check(signal, node->dir)) != KETEN_OK) {
        goto out;
    }
    if ((e = resolve_recipients(node, req->to, &ids, &n_ids)) != KETEN_OK) {
        goto out;
    }
    if ((e = policy_check(node, ids, n_ids, req->kind, signal->type, signal->purpose))
        != KETEN_OK) {
        goto out;
    }
    uint64_t now = keten_now_ms();
    uint64_t lifetime = KETEN_MAX_LIFETIME_DEFAULT_MS;
    uint64_t dir_max = keten_directory_doc(node->dir)->max_message_lifetime;
    if (dir_max != 0 && dir_max < lifetime) {
        lifetime = dir_max;
    }
    keten_seal_params params = {
        .kind = req->kind,
        .category = signal->type,
        .purpose = signal->purpose,
        .in_reply_to = req->in_reply_to,
        .created_at = now,
        .expires_at = now + lifetime,
    };
    if ((e = keten_signal_pack(signal, &payload, &payload_len)) != KETEN_OK) {
        goto out;
    }
    e = keten_envelope_seal(node->me, node->dir, ids, n_ids, &params, payload, payload_len,
        msg_id_out, &sealed, &sealed_len);
    if (e != KETEN_OK) {
        goto out;
    }
    e = KETEN_PB_UNPACK(keten__envelope, sealed, sealed_len, KETEN_ENVELOPE_MAX, "envelope", &env);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(
            keten__header, env->header.data, env->header.len, KETEN_ENVELOPE_MAX, "header", &hdr);
    }
    if (e != KETEN_OK) {
        goto out;
    }
    uint8_t env_hash[KETEN_HASH_BYTES];
    crypto_hash_sha256(env_hash, sealed, sealed_len);
    rec = new_sent_record(node, hdr, env->header.data, env->header.len, env_hash);
    if (rec == NULL) {
        e = KETEN_ERR_NOMEM;
        goto out;
    }
    if ((e = keten_store_begin(node->store, true, &txn)) != KETEN_OK
        || (e = keten_store_put(node->store, txn, KETEN_DB_OUTBOX, msg_id_out, KETEN_MSG_ID_BYTES,
                sealed, sealed_len))
            != KETEN_OK
        || (e = keten_store_put_json(
                node->store, txn, KETEN_DB_SENT, msg_id_out, KETEN_MSG_ID_BYTES, rec))
            != KETEN_OK
        || (e = keten_store_commit(&txn)) != KETEN_OK) {
        goto out;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(msg_id_out, hex);
    KETEN_LOG(KETEN_LOG_INFO, "message stored in outbox", "msg_id=%s kind=%s recipients=%zu", hex,
        keten_kind_name(req->kind), n_ids);
    if (keten_link_connected(node->link)) {
        if (submit_one(node, sealed, sealed_len) != KETEN_OK) {
            KETEN_LOG(KETEN_LOG_WARNING, "submit deferred", "msg_id=%s error=\"%s\"", hex,
                keten_err_detail());
        }
    }
out:
    keten_store_abort(&txn);
    json_decref(rec);
    keten_pb_free((ProtobufCMessage **)(void *)&hdr);
    keten_pb_free((ProtobufCMessage **)(void *)&env);
    if (payload != NULL) {
        sodium_memzero(payload, payload_len);
        free(payload);
    }
    free(sealed);
    free(ids);
    keten_signal_free(&signal);
    return e;
}

/* Mark outbox entries past expiry as expired (never acknowledged). */
static void expire_entry(keten_node *node, MDB_txn *txn, const uint8_t *id, json_t *rec)
{
    keten_err e = keten_rec_set(rec, "state", json_string("expired"));
    json_t *r;
    size_t i;
    json_array_foreach(json_object_get(rec, "recipients"), i, r)
    {
        if (e == KETEN_OK) {
            e = keten_rec_set(r, "state", json_string("expired"));
        }
    }
    if (e != KETEN_OK
        || keten_store_put_json(node->store, txn, KETEN_DB_SENT, id, KETEN_MSG_ID_BYTES, rec)
            != KETEN_OK
        || keten_store_del(node->store, txn, KETEN_DB_OUTBOX, id, KETEN_MSG_ID_BYTES) != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_ERR, "cannot update expired message", "error=\"%s\"", keten_err_detail());
    }
}

/* One batch of the current resend pass: at most SUBMIT_BATCH_MAX entries
 * after resend_pos; stops early (keeping its place) when libzmq's queue is
 * full; ends the pass at the end of the outbox. */
static void resend_batch(keten_node *node)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint8_t expired[SUBMIT_BATCH_MAX][KETEN_MSG_ID_BYTES];
    size_t n_expired = 0, n_sent = 0, n_seen = 0;
    if (keten_store_begin(node->store, false, &txn) != KETEN_OK
        || mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_OUTBOX), &cur) != 0) {
        keten_store_abort(&txn);
        return;
    }
    uint64_t now = keten_now_ms();
    MDB_val k, v;
    int rc;
    if (node->resend_has_pos) {
        k.mv_size = KETEN_MSG_ID_BYTES;
        k.mv_data = node->resend_pos;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == KETEN_MSG_ID_BYTES
            && memcmp(k.mv_data, node->resend_pos, KETEN_MSG_ID_BYTES) == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    bool blocked = false;
    for (; rc == 0 && n_seen < SUBMIT_BATCH_MAX; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != KETEN_MSG_ID_BYTES) {
            continue;
        }
        n_seen++;
        json_t *rec = NULL;
        uint64_t created = 0, expires = UINT64_MAX;
        if (keten_store_get_json(node->store, txn, KETEN_DB_SENT, k.mv_data, k.mv_size, &rec)
            == KETEN_OK) {
            created = keten_rec_u64(rec, "created_at");
            expires = keten_rec_u64(rec, "expires_at");
        }
        json_decref(rec);
        if (expires <= now) {
            memcpy(expired[n_expired++], k.mv_data, KETEN_MSG_ID_BYTES);
        } else if (node->resend_everything
            || created + KETEN_NODE_RESEND_MS <= node->resend_started) {
            if (submit_one(node, v.mv_data, v.mv_size) != KETEN_OK) {
                blocked = true; /* queue full: this entry again at the next tick */
                break;
            }
            n_sent++;
        }
        memcpy(node->resend_pos, k.mv_data, KETEN_MSG_ID_BYTES);
        node->resend_has_pos = true;
    }
    if (!blocked && rc == MDB_NOTFOUND) {
        node->resend_active = false;
        node->last_resend = keten_mono_ms();
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    if (n_sent > 0) {
        KETEN_LOG(KETEN_LOG_INFO, "outbox resubmitted", "count=%zu", n_sent);
    }
    if (n_expired == 0) {
        return;
    }
    if (keten_store_begin(node->store, true, &txn) != KETEN_OK) {
        return;
    }
    for (size_t i = 0; i < n_expired; i++) {
        json_t *rec = NULL;
        if (keten_store_get_json(
                node->store, txn, KETEN_DB_SENT, expired[i], KETEN_MSG_ID_BYTES, &rec)
            == KETEN_OK) {
            expire_entry(node, txn, expired[i], rec);
        }
        json_decref(rec);
    }
    if (keten_store_commit(&txn) == KETEN_OK) {
        for (size_t i = 0; i < n_expired; i++) {
            keten_api_notify_sent(node, expired[i]);
        }
    }
}

static void start_pass(keten_node *node, bool everything)
{
    node->resend_active = true;
    node->resend_everything = everything;
    node->resend_has_pos = false;
    node->resend_started = keten_now_ms();
}

void keten_outbox_submit_all(keten_node *node)
{
    if (!keten_link_connected(node->link)) {
        return;
    }
    start_pass(node, true);
    resend_batch(node);
}

/* Send the queued notice confirmations in one NoticeAck. One that cannot be
 * sent is dropped: the broker sends its notice again (on the next
 * connection, or after its resend time) and it is confirmed then. */
static void flush_notice_acks(keten_node *node)
{
    if (node->n_notice_acks == 0) {
        return;
    }
    Keten__NoticeAck na = KETEN__NOTICE_ACK__INIT;
    na.n_leaf_indexes = node->n_notice_acks;
    na.leaf_indexes = node->notice_acks;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_NOTICE_ACK;
    f.notice_ack = &na;
    keten_err e = keten_link_connected(node->link) ? keten_link_send(node->link, &f)
                                                   : keten_err_set(KETEN_ERR_IO, "not connected");
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_INFO, "notice confirmations not sent; the broker will send them again",
            "count=%zu detail=\"%s\"", node->n_notice_acks, keten_err_detail());
        keten_err_clear();
    }
    node->n_notice_acks = 0;
}

/* A notice (forwarded receipt or expiry notice) with this leaf index is
 * recorded durably, or needs no record: confirm it to the broker, which
 * otherwise keeps sending it. Sent by keten_outbox_tick(), several at once. */
static void confirm_notice(keten_node *node, uint64_t leaf)
{
    if (node->n_notice_acks == KETEN_NODE_NOTICE_ACKS_MAX) {
        flush_notice_acks(node);
    }
    node->notice_acks[node->n_notice_acks++] = leaf;
}

void keten_outbox_tick(keten_node *node)
{
    flush_notice_acks(node);
    if (!keten_link_connected(node->link)) {
        return;
    }
    if (!node->resend_active && keten_mono_ms() - node->last_resend >= KETEN_NODE_RESEND_MS) {
        start_pass(node, false);
    }
    if (node->resend_active) {
        resend_batch(node);
    }
}

static const Keten__NodeCert *broker_cert(keten_node *node)
{
    const Keten__NodeCert *b = keten_directory_broker(node->dir);
    if (b == NULL || b->log_pk.len != KETEN_SIGN_PK_BYTES) {
        return NULL;
    }
    return b;
}

void keten_outbox_on_ack(keten_node *node, const Keten__Ack *ack)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    Keten__AckBody *body = NULL;
    MDB_txn *txn = NULL;
    json_t *rec = NULL;
    char hex[KETEN_MSG_ID_HEX_BYTES] = "?";
    const Keten__NodeCert *broker = broker_cert(node);
    keten_err e = broker == NULL ? keten_err_set(KETEN_ERR_UNKNOWN_NODE, "no broker certificate")
                                 : keten_pb_pack((const ProtobufCMessage *)ack, &buf, &len);
    if (e == KETEN_OK) {
        e = keten_ack_verify(broker->log_pk.data, buf, len, &body);
    }
    if (e == KETEN_OK && strcmp(body->network, keten_directory_network(node->dir)) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK, "ack for network %s", body->network);
    }
    if (e == KETEN_OK
        && (body->msg_id.len != KETEN_MSG_ID_BYTES
            || body->envelope_hash.len != KETEN_HASH_BYTES)) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "ack with a bad msg_id or envelope hash");
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "ack refused", "error=\"%s\" detail=\"%s\"", keten_strerror(e),
            keten_err_detail());
        goto out;
    }
    msg_hex(body->msg_id.data, hex);
    if ((e = keten_store_begin(node->store, true, &txn)) != KETEN_OK) {
        goto out;
    }
    e = keten_store_get_json(
        node->store, txn, KETEN_DB_SENT, body->msg_id.data, KETEN_MSG_ID_BYTES, &rec);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "ack for a message this node did not send", "msg_id=%s", hex);
        goto out;
    }
    uint8_t stored_hash[KETEN_HASH_BYTES];
    if (!keten_rec_get_hex(rec, "envelope_hash", stored_hash, sizeof stored_hash)) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "stored record of %s has no envelope hash", hex);
        goto out;
    }
    if (sodium_memcmp(stored_hash, body->envelope_hash.data, KETEN_HASH_BYTES) != 0) {
        keten_alarm_raise(node, "bad-ack",
            "the broker signed an ack for msg_id %s naming another envelope than the one this "
            "node sent",
            hex);
        goto out;
    }
    const char *state = keten_rec_str(rec, "state");
    if (strcmp(state, "pending") != 0 && strcmp(state, "rejected") != 0
        && strcmp(state, "expired") != 0) {
        /* Already taken (a resend's DUPLICATE carries the same ack). */
        e = keten_store_del(
            node->store, txn, KETEN_DB_OUTBOX, body->msg_id.data, KETEN_MSG_ID_BYTES);
        if (e == KETEN_OK) {
            e = keten_store_commit(&txn);
        }
        goto out;
    }
    e = keten_rec_set(rec, "state", json_string("accepted"));
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "leaf_index", json_integer((json_int_t)body->leaf_index));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "ack", keten_rec_hex(buf, len));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "accepted_at", json_integer((json_int_t)keten_now_ms()));
    }
    json_t *r;
    size_t i;
    json_array_foreach(json_object_get(rec, "recipients"), i, r)
    {
        if (e == KETEN_OK && strcmp(keten_rec_str(r, "state"), "pending") == 0) {
            e = keten_rec_set(r, "state", json_string("accepted"));
        }
    }
    uint8_t pending[KETEN_STORE_PENDING_BYTES];
    uint8_t key[KETEN_STORE_U64_KEY];
    memcpy(pending, body->msg_id.data, KETEN_MSG_ID_BYTES);
    keten_store_u64_put(keten_now_ms() + node->opts.inclusion_timeout_ms, pending + 16);
    pending[24] = 's';
    keten_store_u64_put(body->leaf_index, key);
    if (e == KETEN_OK) {
        e = keten_store_put_json(
            node->store, txn, KETEN_DB_SENT, body->msg_id.data, KETEN_MSG_ID_BYTES, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_del(
            node->store, txn, KETEN_DB_OUTBOX, body->msg_id.data, KETEN_MSG_ID_BYTES);
    }
    if (e == KETEN_OK) {
        e = keten_store_put(
            node->store, txn, KETEN_DB_PENDING, key, sizeof key, pending, sizeof pending);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    if (e != KETEN_OK) {
        KETEN_LOG(
            KETEN_LOG_ERR, "cannot store ack", "msg_id=%s error=\"%s\"", hex, keten_err_detail());
        goto out;
    }
    node->counters.sent++;
    KETEN_LOG(KETEN_LOG_INFO, "message acknowledged", "msg_id=%s leaf=%llu", hex,
        (unsigned long long)body->leaf_index);
    keten_api_notify_sent(node, body->msg_id.data);
out:
    keten_store_abort(&txn);
    json_decref(rec);
    keten_pb_free((ProtobufCMessage **)(void *)&body);
    free(buf);
}

static bool transient_reason(Keten__Reason r)
{
    return r == KETEN__REASON__REASON_STORE_FULL || r == KETEN__REASON__REASON_DIRECTORY_STALE;
}

void keten_outbox_on_error(keten_node *node, const Keten__Error *err)
{
    if (err->reason == KETEN__REASON__REASON_DUPLICATE && err->ack != NULL) {
        keten_outbox_on_ack(node, err->ack);
        return;
    }
    char detail[200];
    keten_log_quote(err->detail != NULL ? err->detail : "", detail, sizeof detail);
    if (err->msg_id.len != KETEN_MSG_ID_BYTES) {
        KETEN_LOG(KETEN_LOG_WARNING, "broker error", "reason=%s detail=%s",
            keten_outbox_reason_name(err->reason), detail);
        return;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(err->msg_id.data, hex);
    MDB_txn *txn = NULL;
    json_t *rec = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_store_get_json(
            node->store, txn, KETEN_DB_SENT, err->msg_id.data, KETEN_MSG_ID_BYTES, &rec);
    }
    if (e != KETEN_OK || strcmp(keten_rec_str(rec, "state"), "pending") != 0) {
        KETEN_LOG(KETEN_LOG_WARNING, "broker error for a message not pending",
            "msg_id=%s reason=%s", hex, keten_outbox_reason_name(err->reason));
        goto out;
    }
    e = keten_rec_set(rec, "reason", json_string(keten_outbox_reason_name(err->reason)));
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "detail", json_string(err->detail != NULL ? err->detail : ""));
    }
    if (e == KETEN_OK && err->reason == KETEN__REASON__REASON_POLICY) {
        e = keten_rec_set(rec, "rule", json_integer(err->rule));
    }
    bool final = !transient_reason(err->reason);
    if (final) {
        if (e == KETEN_OK) {
            e = keten_rec_set(rec, "state", json_string("rejected"));
        }
        json_t *r;
        size_t i;
        json_array_foreach(json_object_get(rec, "recipients"), i, r)
        {
            if (e == KETEN_OK) {
                e = keten_rec_set(r, "state", json_string("rejected"));
            }
        }
        if (e == KETEN_OK) {
            e = keten_store_del(
                node->store, txn, KETEN_DB_OUTBOX, err->msg_id.data, KETEN_MSG_ID_BYTES);
        }
    }
    if (e == KETEN_OK) {
        e = keten_store_put_json(
            node->store, txn, KETEN_DB_SENT, err->msg_id.data, KETEN_MSG_ID_BYTES, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store refusal", "msg_id=%s error=\"%s\"", hex,
            keten_err_detail());
        goto out;
    }
    if (final) {
        node->counters.refused++;
    }
    KETEN_LOG(KETEN_LOG_WARNING, final ? "message refused by broker" : "message deferred by broker",
        "msg_id=%s reason=%s rule=%u detail=%s", hex, keten_outbox_reason_name(err->reason),
        err->rule, detail);
    keten_api_notify_sent(node, err->msg_id.data);
out:
    keten_store_abort(&txn);
    json_decref(rec);
}

/* The recipient entry of rec for id, or NULL. */
static json_t *recipient_entry(json_t *rec, const char *id)
{
    json_t *r;
    size_t i;
    json_array_foreach(json_object_get(rec, "recipients"), i, r)
    {
        if (strcmp(keten_rec_str(r, "id"), id) == 0) {
            return r;
        }
    }
    return NULL;
}

static const Keten__NodeCert *any_cert(keten_node *node, const char *id)
{
    const Keten__NodeCert *c = keten_directory_find_id(node->dir, id);
    if (c == NULL) {
        const Keten__Revocation *r = keten_directory_find_revoked(node->dir, id);
        c = r != NULL ? r->cert : NULL;
    }
    return c;
}

void keten_outbox_on_receipt(keten_node *node, const Keten__ReceiptFrame *rf)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    Keten__ReceiptBody *peek = NULL, *body = NULL;
    MDB_txn *txn = NULL;
    json_t *rec = NULL;
    char hex[KETEN_MSG_ID_HEX_BYTES] = "?";
    keten_err e = rf->receipt == NULL
        ? keten_err_set(KETEN_ERR_MALFORMED, "empty receipt frame")
        : keten_pb_pack((const ProtobufCMessage *)rf->receipt, &buf, &len);
    if (e == KETEN_OK && len > KETEN_RECEIPT_MAX) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE, "receipt of %zu bytes", len);
    }
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__receipt_body, rf->receipt->body.data, rf->receipt->body.len,
            KETEN_RECEIPT_MAX, "receipt body", &peek);
    }
    const Keten__NodeCert *cert = NULL;
    if (e == KETEN_OK && (cert = any_cert(node, peek->recipient)) == NULL) {
        e = keten_err_set(KETEN_ERR_UNKNOWN_NODE, "receipt from unknown node");
    }
    if (e == KETEN_OK) {
        e = keten_receipt_verify(cert, buf, len, &body);
    }
    if (e == KETEN_OK
        && (body->msg_id.len != KETEN_MSG_ID_BYTES || body->envelope_hash.len != KETEN_HASH_BYTES
            || strcmp(body->network, keten_directory_network(node->dir)) != 0)) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "receipt for another network or malformed");
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "receipt refused", "error=\"%s\" detail=\"%s\"",
            keten_strerror(e), keten_err_detail());
        goto out;
    }
    msg_hex(body->msg_id.data, hex);
    if ((e = keten_store_begin(node->store, true, &txn)) == KETEN_OK) {
        e = keten_store_get_json(
            node->store, txn, KETEN_DB_SENT, body->msg_id.data, KETEN_MSG_ID_BYTES, &rec);
    }
    if (e == KETEN_ERR_NOT_FOUND) {
        /* Nothing to record, now or later: confirmed, so it is not resent. */
        KETEN_LOG(
            KETEN_LOG_WARNING, "receipt for a message this node did not send", "msg_id=%s", hex);
        keten_err_clear();
        confirm_notice(node, rf->leaf_index);
        goto out;
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot read the sent message of a receipt; it comes again",
            "msg_id=%s detail=\"%s\"", hex, keten_err_detail());
        goto out;
    }
    uint8_t stored_hash[KETEN_HASH_BYTES];
    json_t *r = recipient_entry(rec, body->recipient);
    if (!keten_rec_get_hex(rec, "envelope_hash", stored_hash, sizeof stored_hash)
        || sodium_memcmp(stored_hash, body->envelope_hash.data, KETEN_HASH_BYTES) != 0
        || r == NULL) {
        KETEN_LOG(KETEN_LOG_WARNING, "receipt does not match the message", "msg_id=%s node=%s", hex,
            body->recipient);
        confirm_notice(node, rf->leaf_index); /* it never will: not resent */
        goto out;
    }
    if (strcmp(keten_rec_str(r, "state"), "receipted") == 0) {
        /* Sent again (the broker had no confirmation yet): recorded before. */
        KETEN_LOG(
            KETEN_LOG_DEBUG, "receipt recorded before", "msg_id=%s node=%s", hex, body->recipient);
        confirm_notice(node, rf->leaf_index);
        goto out;
    }
    e = keten_rec_set(r, "state", json_string("receipted"));
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "receipted_at", keten_rec_time(body->received_at));
    }
    if (e == KETEN_OK && rf->leaf_index != 0) {
        e = keten_rec_set(r, "receipt_leaf", json_integer((json_int_t)rf->leaf_index));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "receipt", keten_rec_hex(buf, len));
    }
    if (e == KETEN_OK) {
        e = keten_store_put_json(
            node->store, txn, KETEN_DB_SENT, body->msg_id.data, KETEN_MSG_ID_BYTES, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    if (e == KETEN_OK) {
        node->counters.receipts++;
        KETEN_LOG(KETEN_LOG_INFO, "receipt", "msg_id=%s node=%s", hex, body->recipient);
        confirm_notice(node, rf->leaf_index);
        keten_api_notify_sent(node, body->msg_id.data);
    } else {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store a receipt; it comes again",
            "msg_id=%s detail=\"%s\"", hex, keten_err_detail());
    }
out:
    keten_store_abort(&txn);
    json_decref(rec);
    keten_pb_free((ProtobufCMessage **)(void *)&peek);
    keten_pb_free((ProtobufCMessage **)(void *)&body);
    free(buf);
}

void keten_outbox_on_expired(keten_node *node, const Keten__ExpiredNotice *notice)
{
    if (notice->msg_id.len != KETEN_MSG_ID_BYTES) {
        KETEN_LOG(KETEN_LOG_WARNING, "expiry notice without a msg_id ignored", "leaf=%llu",
            (unsigned long long)notice->leaf_index);
        confirm_notice(node, notice->leaf_index); /* nothing to record, ever */
        return;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(notice->msg_id.data, hex);
    MDB_txn *txn = NULL;
    json_t *rec = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_store_get_json(
            node->store, txn, KETEN_DB_SENT, notice->msg_id.data, KETEN_MSG_ID_BYTES, &rec);
    }
    if (e == KETEN_ERR_NOT_FOUND) {
        KETEN_LOG(KETEN_LOG_WARNING, "expiry notice for a message this node did not send",
            "msg_id=%s", hex);
        keten_err_clear();
        keten_store_abort(&txn);
        confirm_notice(node, notice->leaf_index);
        return;
    }
    for (size_t i = 0; e == KETEN_OK && i < notice->n_recipients; i++) {
        json_t *r = recipient_entry(rec, notice->recipients[i]);
        if (r != NULL && strcmp(keten_rec_str(r, "state"), "receipted") != 0) {
            e = keten_rec_set(r, "state", json_string("expired"));
        }
    }
    if (e == KETEN_OK) {
        e = keten_store_put_json(
            node->store, txn, KETEN_DB_SENT, notice->msg_id.data, KETEN_MSG_ID_BYTES, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    json_decref(rec);
    if (e == KETEN_OK) {
        KETEN_LOG(KETEN_LOG_NOTICE, "message expired undelivered", "msg_id=%s recipients=%zu", hex,
            notice->n_recipients);
        confirm_notice(node, notice->leaf_index);
        keten_api_notify_sent(node, notice->msg_id.data);
    } else {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store an expiry notice; it comes again",
            "msg_id=%s detail=\"%s\"", hex, keten_err_detail());
    }
}

keten_err keten_outbox_note_reply(keten_node *node, MDB_txn *txn,
    const uint8_t query_id[static KETEN_MSG_ID_BYTES], const char *from,
    const uint8_t reply_id[static KETEN_MSG_ID_BYTES], uint64_t received_at)
{
    json_t *rec = NULL;
    keten_err e
        = keten_store_get_json(node->store, txn, KETEN_DB_SENT, query_id, KETEN_MSG_ID_BYTES, &rec);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK; /* a reply to something we did not send: just a message */
    }
    if (e != KETEN_OK) {
        return e;
    }
    json_t *replies = json_object_get(rec, "replies");
    if (replies == NULL) {
        replies = json_array();
        e = keten_rec_set(rec, "replies", replies);
    }
    json_t *one = json_object();
    if (e == KETEN_OK && one != NULL) {
        e = keten_rec_set(one, "msg_id", keten_rec_hex(reply_id, KETEN_MSG_ID_BYTES));
        if (e == KETEN_OK) {
            e = keten_rec_set(one, "from", json_string(from));
        }
        if (e == KETEN_OK) {
            e = keten_rec_set(one, "received_at", keten_rec_time(received_at));
        }
        if (e == KETEN_OK) {
            e = json_array_append(replies, one) == 0 ? KETEN_OK : KETEN_ERR_NOMEM;
        }
    } else if (one == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    json_decref(one);
    json_t *r = recipient_entry(rec, from);
    if (e == KETEN_OK && r != NULL) {
        e = keten_rec_set(r, "replied", json_true());
    }
    if (e == KETEN_OK) {
        e = keten_store_put_json(
            node->store, txn, KETEN_DB_SENT, query_id, KETEN_MSG_ID_BYTES, rec);
    }
    json_decref(rec);
    return e;
}

keten_err keten_outbox_record(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out)
{
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_store_get_json(node->store, txn, KETEN_DB_SENT, msg_id, KETEN_MSG_ID_BYTES, out);
    }
    keten_store_abort(&txn);
    return e;
}
