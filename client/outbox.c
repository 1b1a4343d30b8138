#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alarm.h"
#include "api.h"
#include "dirs.h"
#include "envelope.h"
#include "link.h"
#include "logproof.h"
#include "log.h"
#include "pb.h"
#include "policy.h"
#include "receipt.h"
#include "rec.h"
#include "signal_json.h"
#include "store.h"
#include "util.h"
#include "witness.h"

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

static keten_err submit_one(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const uint8_t *env, size_t len)
{
    Keten__Submit sub = KETEN__SUBMIT__INIT;
    sub.envelope.data = (uint8_t *)(uintptr_t)env;
    sub.envelope.len = len;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = keten_node_request_id(node);
    f.body_case = KETEN__FRAME__BODY_SUBMIT;
    f.submit = &sub;
    keten_err e = keten_link_send(node->link, &f);
    if (e == KETEN_OK) { /* the ack must prove this message's record */
        size_t slot = node->submit_next++ % KETEN_NODE_SUBMITS_KEPT;
        node->submit_rid[slot] = f.request_id;
        memcpy(node->submit_id[slot], msg_id, KETEN_MSG_ID_BYTES);
    }
    return e;
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
        if (submit_one(node, msg_id_out, sealed, sealed_len) != KETEN_OK) {
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
            if (submit_one(node, k.mv_data, v.mv_data, v.mv_size) != KETEN_OK) {
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

/* The msg_id of the submit sent with request_id, or NULL if not remembered. */
static const uint8_t *submitted_id(const keten_node *node, uint64_t request_id)
{
    for (size_t i = 0; i < KETEN_NODE_SUBMITS_KEPT; i++) {
        if (node->submit_rid[i] == request_id && request_id != 0) {
            return node->submit_id[i];
        }
    }
    return NULL;
}

/* Check the record a broker proved for one of our messages: a `submitted`
 * record of this node's, of exactly the envelope in the outbox (or, once
 * taken, of the envelope hash and leaf recorded then). *rec_out is the
 * message's sent record; *in_outbox says whether it waits for its ack.
 * KETEN_ERR_NOT_FOUND: not a message of ours (nothing to check against). */
static keten_err check_submitted(keten_node *node, MDB_txn *txn, const Keten__AuditRecord *ar,
    uint64_t leaf_index, json_t **rec_out, bool *in_outbox)
{
    *rec_out = NULL;
    *in_outbox = false;
    if (ar->event != KETEN__EVENT__EVENT_SUBMITTED || ar->msg_id.len != KETEN_MSG_ID_BYTES) {
        return keten_err_set(KETEN_ERR_INCONSISTENT, "the proven record is not a submitted record");
    }
    if (ar->sender == NULL || strcmp(ar->sender, node->me->id) != 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the proven record is a message of %s, not of this node",
            ar->sender != NULL ? ar->sender : "nobody");
    }
    json_t *rec = NULL;
    keten_err e = keten_store_get_json(
        node->store, txn, KETEN_DB_SENT, ar->msg_id.data, KETEN_MSG_ID_BYTES, &rec);
    if (e != KETEN_OK) {
        return e;
    }
    MDB_val v;
    e = keten_store_get(node->store, txn, KETEN_DB_OUTBOX, ar->msg_id.data, KETEN_MSG_ID_BYTES, &v);
    if (e == KETEN_OK) {
        Keten__Envelope *env = NULL;
        e = KETEN_PB_UNPACK(
            keten__envelope, v.mv_data, v.mv_size, KETEN_ENVELOPE_MAX, "stored envelope", &env);
        if (e == KETEN_OK) {
            e = keten_record_is_envelope(ar, v.mv_data, v.mv_size, env);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&env);
        *in_outbox = e == KETEN_OK;
    } else if (e == KETEN_ERR_NOT_FOUND) {
        /* Taken before: the same record at the same leaf. */
        keten_err_clear();
        uint8_t hash[KETEN_HASH_BYTES];
        e = KETEN_OK;
        if (!keten_rec_get_hex(rec, "envelope_hash", hash, sizeof hash)
            || ar->envelope_hash.len != KETEN_HASH_BYTES
            || sodium_memcmp(hash, ar->envelope_hash.data, KETEN_HASH_BYTES) != 0) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "the proven record names another envelope than the one this node sent");
        } else if (json_object_get(rec, "leaf_index") != NULL
            && keten_rec_u64(rec, "leaf_index") != leaf_index) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "the message was proven at leaf %llu before; now at leaf %llu",
                (unsigned long long)keten_rec_u64(rec, "leaf_index"),
                (unsigned long long)leaf_index);
        }
    }
    if (e != KETEN_OK) {
        json_decref(rec);
        return e;
    }
    *rec_out = rec;
    return KETEN_OK;
}

/* An ack (SubmitAck, or a DUPLICATE refusal with the original's proof). */
static void take_ack(
    keten_node *node, uint64_t request_id, const Keten__LeafProof *p, const char *what)
{
    Keten__AuditRecord *ar = NULL;
    MDB_txn *txn = NULL;
    json_t *rec = NULL;
    char hex[KETEN_MSG_ID_HEX_BYTES] = "?";
    keten_err e = keten_witness_leaf(node, p, &ar);
    if (e == KETEN_ERR_NOT_FOUND) {
        KETEN_LOG(KETEN_LOG_NOTICE, "proof against an unknown checkpoint; the message is resent",
            "frame=%s request_id=%llu detail=\"%s\"", what, (unsigned long long)request_id,
            keten_err_detail());
        keten_err_clear();
        goto out;
    }
    if (e != KETEN_OK) {
        keten_alarm_evidence(node, "bad-proof",
            "the broker's %s for request %llu carries a proof that does not hold: %s", what,
            (unsigned long long)request_id, keten_err_detail());
        goto out;
    }
    if (ar->msg_id.len == KETEN_MSG_ID_BYTES) {
        msg_hex(ar->msg_id.data, hex);
    }
    const uint8_t *asked = submitted_id(node, request_id);
    if (asked != NULL
        && (ar->msg_id.len != KETEN_MSG_ID_BYTES
            || sodium_memcmp(asked, ar->msg_id.data, KETEN_MSG_ID_BYTES) != 0)) {
        char want[KETEN_MSG_ID_HEX_BYTES];
        msg_hex(asked, want);
        node->counters.proofs_failed++;
        keten_alarm_evidence(node, "bad-proof",
            "the broker's %s of the submit of message %s proves leaf %llu, the record of "
            "message %s",
            what, want, (unsigned long long)p->leaf_index, hex);
        goto out;
    }
    if ((e = keten_store_begin(node->store, true, &txn)) != KETEN_OK) {
        goto fail;
    }
    bool in_outbox = false;
    e = check_submitted(node, txn, ar, p->leaf_index, &rec, &in_outbox);
    if (e == KETEN_ERR_NOT_FOUND) {
        KETEN_LOG(KETEN_LOG_WARNING, "ack for a message this node does not have", "msg_id=%s", hex);
        keten_err_clear();
        goto out;
    }
    if (e == KETEN_ERR_INCONSISTENT) {
        node->counters.proofs_failed++;
        keten_store_abort(&txn); /* the alarm is stored on its own */
        keten_alarm_evidence(node, "bad-proof",
            "the broker's %s for message %s proves leaf %llu, which is not its record: %s", what,
            hex, (unsigned long long)p->leaf_index, keten_err_detail());
        goto out;
    }
    if (e != KETEN_OK) {
        goto fail;
    }
    if (!in_outbox) { /* taken before (a resend's DUPLICATE proves the same) */
        goto out;
    }
    e = keten_rec_set(rec, "state", json_string("accepted"));
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "leaf_index", json_integer((json_int_t)p->leaf_index));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(rec, "tree_size", json_integer((json_int_t)p->tree_size));
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
    if (e == KETEN_OK) {
        e = keten_store_put_json(
            node->store, txn, KETEN_DB_SENT, ar->msg_id.data, KETEN_MSG_ID_BYTES, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_del(node->store, txn, KETEN_DB_OUTBOX, ar->msg_id.data, KETEN_MSG_ID_BYTES);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    if (e != KETEN_OK) {
        goto fail;
    }
    node->counters.sent++;
    KETEN_LOG(KETEN_LOG_INFO, "message accepted (proven in the log)",
        "msg_id=%s leaf=%llu tree_size=%llu", hex, (unsigned long long)p->leaf_index,
        (unsigned long long)p->tree_size);
    keten_api_notify_sent(node, ar->msg_id.data);
    goto out;
fail:
    KETEN_LOG(KETEN_LOG_ERR, "cannot store ack; the message is resent", "msg_id=%s error=\"%s\"",
        hex, keten_err_detail());
out:
    keten_store_abort(&txn);
    json_decref(rec);
    keten_pb_free((ProtobufCMessage **)(void *)&ar);
}

void keten_outbox_on_ack(keten_node *node, uint64_t request_id, const Keten__SubmitAck *ack)
{
    take_ack(node, request_id, ack->proof, "ack");
}

static bool transient_reason(Keten__Reason r)
{
    return r == KETEN__REASON__REASON_STORE_FULL || r == KETEN__REASON__REASON_DIRECTORY_STALE;
}

void keten_outbox_on_error(keten_node *node, uint64_t request_id, const Keten__Error *err)
{
    if (err->reason == KETEN__REASON__REASON_DUPLICATE && err->proof != NULL) {
        take_ack(node, request_id, err->proof, "duplicate refusal");
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

static bool answered(const char *state)
{
    return strcmp(state, "receipted") == 0 || strcmp(state, "refused") == 0;
}

/* The first checks of a notice: the proof, then a record of one of this
 * node's messages (*rec_out its sent record). false: nothing to record (an
 * unknown checkpoint, logged; or an alarm raised). */
static bool notice_record(keten_node *node, MDB_txn **txn, const Keten__LeafProof *p,
    const char *what, Keten__AuditRecord **ar_out, json_t **rec_out)
{
    *ar_out = NULL;
    *rec_out = NULL;
    keten_err e = keten_witness_leaf(node, p, ar_out);
    if (e == KETEN_ERR_NOT_FOUND) {
        KETEN_LOG(KETEN_LOG_NOTICE, "notice proven against an unknown checkpoint; it comes again",
            "notice=%s detail=\"%s\"", what, keten_err_detail());
        keten_err_clear();
        return false;
    }
    if (e != KETEN_OK) {
        keten_store_abort(txn); /* the alarm is stored on its own */
        keten_alarm_evidence(node, "bad-proof",
            "the broker's %s carries a proof that does not hold: %s", what, keten_err_detail());
        return false;
    }
    const Keten__AuditRecord *ar = *ar_out;
    char hex[KETEN_MSG_ID_HEX_BYTES] = "?";
    if (ar->msg_id.len == KETEN_MSG_ID_BYTES) {
        msg_hex(ar->msg_id.data, hex);
    }
    if (ar->sender == NULL || strcmp(ar->sender, node->me->id) != 0
        || ar->msg_id.len != KETEN_MSG_ID_BYTES) {
        node->counters.proofs_failed++;
        keten_store_abort(txn);
        keten_alarm_evidence(node, "bad-proof",
            "the broker's %s proves leaf %llu, a record of message %s of %s, not of this node",
            what, (unsigned long long)p->leaf_index, hex,
            ar->sender != NULL && ar->sender[0] != '\0' ? ar->sender : "nobody");
        return false;
    }
    e = keten_store_get_json(
        node->store, *txn, KETEN_DB_SENT, ar->msg_id.data, KETEN_MSG_ID_BYTES, rec_out);
    if (e == KETEN_ERR_NOT_FOUND) {
        node->counters.proofs_failed++;
        keten_store_abort(txn);
        keten_alarm_evidence(node, "bad-proof",
            "the broker's %s proves leaf %llu, a record of message %s, which this node never sent",
            what, (unsigned long long)p->leaf_index, hex);
        return false;
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot read the sent message of a notice; it comes again",
            "msg_id=%s detail=\"%s\"", hex, keten_err_detail());
        return false;
    }
    return true;
}

/* Does the ReceiptProof of ar hold for the sent message rec? */
static keten_err check_receipt(keten_node *node, const Keten__AuditRecord *ar, json_t *rec,
    Keten__ReceiptBatchHead **head, Keten__ReceiptLeaf **leaf)
{
    bool refused = ar->event == KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT;
    if (ar->event != KETEN__EVENT__EVENT_RECEIPTED && !refused) {
        return keten_err_set(
            KETEN_ERR_INCONSISTENT, "the record is not a receipted or refused-by-recipient record");
    }
    if (ar->node == NULL || recipient_entry(rec, ar->node) == NULL) {
        return keten_err_set(KETEN_ERR_INCONSISTENT, "the record names %s, not a recipient",
            ar->node != NULL && ar->node[0] != '\0' ? ar->node : "no node");
    }
    if (ar->receipt == NULL) {
        return keten_err_set(KETEN_ERR_INCONSISTENT, "the record holds no receipt");
    }
    const Keten__NodeCert *cert = any_cert(node, ar->node);
    if (cert == NULL) {
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE, "no certificate of %s", ar->node);
    }
    keten_err e = keten_receipt_proof_verify(
        cert, keten_directory_network(node->dir), ar->receipt, head, leaf);
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t env_hash[KETEN_HASH_BYTES];
    if (!keten_rec_get_hex(rec, "envelope_hash", env_hash, sizeof env_hash)
        || !keten_receipt_leaf_names(*leaf, ar->msg_id.data, env_hash)) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the receipt names another message or envelope than the one this node sent");
    }
    bool stored = (*leaf)->outcome == KETEN__OUTCOME__OUTCOME_STORED;
    if (stored == refused) {
        return keten_err_set(
            KETEN_ERR_INCONSISTENT, "the receipt's outcome does not match the record's event");
    }
    return KETEN_OK;
}

void keten_outbox_on_receipt_notice(keten_node *node, const Keten__ReceiptNotice *n)
{
    Keten__AuditRecord *ar = NULL;
    Keten__ReceiptBatchHead *head = NULL;
    Keten__ReceiptLeaf *leaf = NULL;
    json_t *rec = NULL;
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e != KETEN_OK || !notice_record(node, &txn, n->proof, "receipt notice", &ar, &rec)) {
        goto out;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(ar->msg_id.data, hex);
    e = check_receipt(node, ar, rec, &head, &leaf);
    if (e != KETEN_OK) {
        node->counters.proofs_failed++;
        keten_store_abort(&txn); /* the alarm is stored on its own */
        keten_alarm_evidence(node, "bad-proof",
            "the broker's receipt notice for message %s (leaf %llu) does not hold: %s", hex,
            (unsigned long long)n->proof->leaf_index, keten_err_detail());
        goto out;
    }
    json_t *r = recipient_entry(rec, ar->node);
    if (answered(keten_rec_str(r, "state"))) {
        /* Sent again (the broker had no confirmation yet): recorded before. */
        confirm_notice(node, n->proof->leaf_index);
        goto out;
    }
    bool stored = leaf->outcome == KETEN__OUTCOME__OUTCOME_STORED;
    e = keten_rec_set(r, "state", json_string(stored ? "receipted" : "refused"));
    if (e == KETEN_OK && stored) {
        e = keten_rec_set(r, "receipted_at", keten_rec_time(head->stored_at));
    }
    if (e == KETEN_OK && !stored) {
        e = keten_rec_set(r, "reason", json_string(keten_outbox_reason_name(leaf->reason)));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "receipt_leaf", json_integer((json_int_t)n->proof->leaf_index));
    }
    if (e == KETEN_OK) {
        e = keten_store_put_json(
            node->store, txn, KETEN_DB_SENT, ar->msg_id.data, KETEN_MSG_ID_BYTES, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store a receipt; it comes again",
            "msg_id=%s detail=\"%s\"", hex, keten_err_detail());
        goto out;
    }
    node->counters.receipts++;
    KETEN_LOG(KETEN_LOG_INFO, stored ? "receipt" : "refused by recipient",
        "msg_id=%s node=%s reason=%s", hex, ar->node, keten_outbox_reason_name(leaf->reason));
    confirm_notice(node, n->proof->leaf_index);
    keten_api_notify_sent(node, ar->msg_id.data);
out:
    keten_store_abort(&txn);
    json_decref(rec);
    keten_pb_free((ProtobufCMessage **)(void *)&leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    keten_pb_free((ProtobufCMessage **)(void *)&ar);
}

void keten_outbox_on_expired(keten_node *node, const Keten__ExpiredNotice *n)
{
    Keten__AuditRecord *ar = NULL;
    json_t *rec = NULL;
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e != KETEN_OK || !notice_record(node, &txn, n->proof, "expiry notice", &ar, &rec)) {
        goto out;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(ar->msg_id.data, hex);
    e = ar->event != KETEN__EVENT__EVENT_EXPIRED
        ? keten_err_set(KETEN_ERR_INCONSISTENT, "the record is not an expired record")
        : KETEN_OK;
    for (size_t i = 0; e == KETEN_OK && i < ar->n_recipients; i++) {
        if (recipient_entry(rec, ar->recipients[i]) == NULL) {
            e = keten_err_set(
                KETEN_ERR_INCONSISTENT, "the record names %s, not a recipient", ar->recipients[i]);
        }
    }
    if (e != KETEN_OK) {
        node->counters.proofs_failed++;
        keten_store_abort(&txn); /* the alarm is stored on its own */
        keten_alarm_evidence(node, "bad-proof",
            "the broker's expiry notice for message %s (leaf %llu) does not hold: %s", hex,
            (unsigned long long)n->proof->leaf_index, keten_err_detail());
        goto out;
    }
    for (size_t i = 0; e == KETEN_OK && i < ar->n_recipients; i++) {
        json_t *r = recipient_entry(rec, ar->recipients[i]);
        if (!answered(keten_rec_str(r, "state"))) {
            e = keten_rec_set(r, "state", json_string("expired"));
        }
    }
    if (e == KETEN_OK) {
        e = keten_store_put_json(
            node->store, txn, KETEN_DB_SENT, ar->msg_id.data, KETEN_MSG_ID_BYTES, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store an expiry notice; it comes again",
            "msg_id=%s detail=\"%s\"", hex, keten_err_detail());
        goto out;
    }
    KETEN_LOG(KETEN_LOG_NOTICE, "message expired before every recipient answered",
        "msg_id=%s recipients=%zu", hex, ar->n_recipients);
    confirm_notice(node, n->proof->leaf_index);
    keten_api_notify_sent(node, ar->msg_id.data);
out:
    keten_store_abort(&txn);
    json_decref(rec);
    keten_pb_free((ProtobufCMessage **)(void *)&ar);
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
