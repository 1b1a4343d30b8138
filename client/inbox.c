#include "inbox.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dirs.h"
#include "envelope.h"
#include "hook.h"
#include "link.h"
#include "log.h"
#include "outbox.h"
#include "pb.h"
#include "policy.h"
#include "rec.h"
#include "signal_json.h"
#include "store.h"
#include "util.h"

static void give_credit(keten_node *node, uint32_t n)
{
    Keten__Credit c = KETEN__CREDIT__INIT;
    c.credit = n;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &c;
    if (keten_link_send(node->link, &f) != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot return credit", "error=\"%s\"", keten_err_detail());
    }
}

static void send_receipt(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const uint8_t env_hash[static KETEN_HASH_BYTES], uint64_t received_at)
{
    const Keten__NodeCert *mine = keten_dirs_my_cert(node);
    uint8_t *buf = NULL;
    size_t len = 0;
    Keten__Receipt *r = NULL;
    keten_err e = mine == NULL
        ? keten_err_set(KETEN_ERR_UNKNOWN_NODE, "this node is not current; no receipt")
        : keten_receipt_sign(node->me, keten_directory_network(node->dir), mine->serial, msg_id,
            env_hash, received_at, &buf, &len);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__receipt, buf, len, KETEN_RECEIPT_MAX, "receipt", &r);
    }
    if (e == KETEN_OK) {
        Keten__ReceiptFrame rf = KETEN__RECEIPT_FRAME__INIT;
        rf.receipt = r;
        Keten__Frame f = KETEN__FRAME__INIT;
        f.body_case = KETEN__FRAME__BODY_RECEIPT;
        f.receipt = &rf;
        e = keten_link_send(node->link, &f);
    }
    if (e != KETEN_OK) {
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
        KETEN_LOG(KETEN_LOG_WARNING, "receipt not sent", "msg_id=%s error=\"%s\"", hex,
            keten_err_detail());
    }
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    free(buf);
}

/* The stored record of a new message. */
static json_t *message_record(const keten_verified *v, const Keten__Signal *signal,
    const uint8_t *env, size_t env_len, uint64_t seq, uint64_t received_at, uint64_t leaf)
{
    const Keten__Header *h = v->header;
    json_t *sig = keten_signal_to_jansson(signal);
    json_t *r = json_object();
    keten_err e = (sig == NULL || r == NULL) ? KETEN_ERR_NOMEM : KETEN_OK;
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "seq", json_integer((json_int_t)seq));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "from", json_string(h->sender));
    }
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
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "received_at", json_integer((json_int_t)received_at));
    }
    if (e == KETEN_OK && h->in_reply_to.len == KETEN_MSG_ID_BYTES) {
        e = keten_rec_set(r, "in_reply_to", keten_rec_hex(h->in_reply_to.data, KETEN_MSG_ID_BYTES));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "leaf_index", json_integer((json_int_t)leaf));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "handled", json_false());
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "envelope_hash", keten_rec_hex(v->envelope_hash, KETEN_HASH_BYTES));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(
            r, "header", keten_rec_hex(v->envelope->header.data, v->envelope->header.len));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "envelope", keten_rec_b64(env, env_len));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(r, "signal", sig);
        sig = NULL;
    }
    json_decref(sig);
    if (e != KETEN_OK) {
        json_decref(r);
        return NULL;
    }
    return r;
}

/* The public form of a stored record (DESIGN section 8). */
static json_t *public_record(const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const json_t *rec)
{
    json_t *p = json_object();
    keten_err e = p == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "msg_id", keten_rec_hex(msg_id, KETEN_MSG_ID_BYTES));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "from", json_string(keten_rec_str(rec, "from")));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "kind", json_string(keten_rec_str(rec, "kind")));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "received_at", keten_rec_time(keten_rec_u64(rec, "received_at")));
    }
    json_t *irt = json_object_get(rec, "in_reply_to");
    if (e == KETEN_OK && irt != NULL) {
        e = keten_rec_set(p, "in_reply_to", json_incref(irt));
    }
    json_t *sig = json_object_get(rec, "signal");
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "signal", sig != NULL ? json_incref(sig) : json_object());
    }
    if (e != KETEN_OK) {
        json_decref(p);
        return NULL;
    }
    return p;
}

static void after_store(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const json_t *rec)
{
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    if (node->opts.on_message != NULL) {
        json_t *p = public_record(msg_id, rec);
        char *text = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
        json_decref(p);
        if (text == NULL || keten_hook_run(node, hex, text, strlen(text)) != KETEN_OK) {
            node->counters.hooks_failed++;
            KETEN_LOG(KETEN_LOG_WARNING, "hook not run", "msg_id=%s error=\"%s\"", hex,
                keten_err_detail());
        }
        if (text != NULL) {
            sodium_memzero(text, strlen(text));
            free(text);
        }
    }
    keten_api_notify_inbox(node);
}

void keten_inbox_on_deliver(keten_node *node, const Keten__Deliver *d)
{
    keten_verified *v = NULL;
    Keten__Signal *signal = NULL;
    MDB_txn *txn = NULL;
    json_t *rec = NULL;
    uint64_t now = keten_now_ms();
    char hex[KETEN_MSG_ID_HEX_BYTES] = "?";

    keten_err e = d->envelope.len > KETEN_ENVELOPE_MAX
        ? keten_err_set(KETEN_ERR_TOO_LARGE, "delivered envelope of %zu bytes", d->envelope.len)
        : keten_envelope_open(
            node->me, node->dir, d->envelope.data, d->envelope.len, now, &v, &signal);
    if (e != KETEN_OK) {
        char q[300];
        keten_log_quote(keten_err_detail(), q, sizeof q);
        KETEN_LOG(KETEN_LOG_WARNING, "delivery refused", "leaf=%llu error=\"%s\" detail=%s",
            (unsigned long long)d->leaf_index, keten_strerror(e), q);
        node->counters.rejected++;
        give_credit(node, 1);
        goto out;
    }
    const uint8_t *msg_id = v->header->msg_id.data;
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    if ((e = keten_store_begin(node->store, true, &txn)) != KETEN_OK) {
        goto fail;
    }
    MDB_val seen;
    e = keten_store_get(node->store, txn, KETEN_DB_SEEN, msg_id, KETEN_MSG_ID_BYTES, &seen);
    if (e == KETEN_OK) {
        if (seen.mv_size != KETEN_STORE_SEEN_BYTES
            || sodium_memcmp((const uint8_t *)seen.mv_data + 8, v->envelope_hash, KETEN_HASH_BYTES)
                != 0) {
            KETEN_LOG(KETEN_LOG_WARNING,
                "delivery refused: another envelope under a msg_id already received",
                "msg_id=%s from=%s leaf=%llu", hex, v->header->sender,
                (unsigned long long)d->leaf_index);
            node->counters.rejected++;
            give_credit(node, 1);
            goto out;
        }
        uint64_t received_at = now;
        json_t *old = NULL;
        if (keten_store_get_json(
                node->store, txn, KETEN_DB_MESSAGES, msg_id, KETEN_MSG_ID_BYTES, &old)
            == KETEN_OK) {
            received_at = keten_rec_u64(old, "received_at");
        }
        json_decref(old);
        keten_store_abort(&txn);
        node->counters.duplicates++;
        KETEN_LOG(KETEN_LOG_INFO, "duplicate delivery receipted again", "msg_id=%s", hex);
        send_receipt(node, msg_id, v->envelope_hash, received_at);
        goto out;
    }
    if (e != KETEN_ERR_NOT_FOUND) {
        goto fail;
    }
    keten_err_clear();
    uint64_t seq = 0;
    e = keten_store_last_u64(node->store, txn, KETEN_DB_INBOX, &seq, NULL);
    if (e == KETEN_ERR_NOT_FOUND) {
        seq = 0;
        e = KETEN_OK;
    } else if (e != KETEN_OK) {
        goto fail;
    }
    seq++;
    rec = message_record(v, signal, d->envelope.data, d->envelope.len, seq, now, d->leaf_index);
    if (rec == NULL) {
        e = KETEN_ERR_NOMEM;
        goto fail;
    }
    uint8_t seq_key[KETEN_STORE_U64_KEY], leaf_key[KETEN_STORE_U64_KEY];
    uint8_t seen_val[KETEN_STORE_SEEN_BYTES], pending[KETEN_STORE_PENDING_BYTES];
    keten_store_u64_put(seq, seq_key);
    keten_store_u64_put(d->leaf_index, leaf_key);
    keten_store_u64_put(v->header->expires_at, seen_val);
    memcpy(seen_val + 8, v->envelope_hash, KETEN_HASH_BYTES);
    memcpy(pending, msg_id, KETEN_MSG_ID_BYTES);
    keten_store_u64_put(now + node->opts.inclusion_timeout_ms, pending + 16);
    pending[24] = 'r';
    if ((e = keten_store_put_json(
             node->store, txn, KETEN_DB_MESSAGES, msg_id, KETEN_MSG_ID_BYTES, rec))
            != KETEN_OK
        || (e = keten_store_put(node->store, txn, KETEN_DB_INBOX, seq_key, sizeof seq_key, msg_id,
                KETEN_MSG_ID_BYTES))
            != KETEN_OK
        || (e = keten_store_put(node->store, txn, KETEN_DB_SEEN, msg_id, KETEN_MSG_ID_BYTES,
                seen_val, sizeof seen_val))
            != KETEN_OK
        || (e = keten_store_put(node->store, txn, KETEN_DB_PENDING, leaf_key, sizeof leaf_key,
                pending, sizeof pending))
            != KETEN_OK) {
        goto fail;
    }
    if (v->header->kind == KETEN__KIND__KIND_REPLY
        && v->header->in_reply_to.len == KETEN_MSG_ID_BYTES) {
        e = keten_outbox_note_reply(
            node, txn, v->header->in_reply_to.data, v->header->sender, msg_id, now);
        if (e != KETEN_OK) {
            goto fail;
        }
    }
    if ((e = keten_store_commit(&txn)) != KETEN_OK) {
        goto fail;
    }
    node->counters.received++;
    KETEN_LOG(KETEN_LOG_INFO, "message received", "msg_id=%s from=%s kind=%s leaf=%llu", hex,
        v->header->sender, keten_kind_name(v->header->kind), (unsigned long long)d->leaf_index);
    /* In a group commit the receipt is held until the batch is durable; the
     * test hook KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT is in link.c, where the
     * receipt goes to the socket. */
    send_receipt(node, msg_id, v->envelope_hash, now);
    after_store(node, msg_id, rec);
    goto out;
fail:
    KETEN_LOG(KETEN_LOG_ERR, "cannot store delivered message; not receipted",
        "msg_id=%s error=\"%s\" detail=\"%s\"", hex, keten_strerror(e), keten_err_detail());
    give_credit(node, 1);
out:
    keten_store_abort(&txn);
    json_decref(rec);
    keten_signal_free(&signal);
    keten_verified_destroy(&v);
}

keten_err keten_inbox_list(
    keten_node *node, bool all, uint64_t since_seq, json_t **out, uint64_t *last_seq)
{
    *out = json_array();
    if (*out == NULL) {
        return KETEN_ERR_NOMEM;
    }
    *last_seq = since_seq;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_INBOX), &cur) != 0) {
        keten_store_abort(&txn);
        return keten_err_set(KETEN_ERR_STORE, "cannot read the inbox");
    }
    uint8_t start[KETEN_STORE_U64_KEY];
    keten_store_u64_put(since_seq + 1, start);
    MDB_val k = { sizeof start, start }, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; rc == 0 && e == KETEN_OK; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != KETEN_STORE_U64_KEY || v.mv_size != KETEN_MSG_ID_BYTES) {
            continue;
        }
        *last_seq = keten_store_u64_get(k.mv_data);
        json_t *rec = NULL;
        if (keten_store_get_json(
                node->store, txn, KETEN_DB_MESSAGES, v.mv_data, KETEN_MSG_ID_BYTES, &rec)
            != KETEN_OK) {
            continue;
        }
        if (all || !json_is_true(json_object_get(rec, "handled"))) {
            json_t *p = public_record(v.mv_data, rec);
            if (p == NULL || json_array_append_new(*out, p) != 0) {
                e = KETEN_ERR_NOMEM;
            }
        }
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    return e;
}

keten_err keten_inbox_record(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out)
{
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_store_get_json(
            node->store, txn, KETEN_DB_MESSAGES, msg_id, KETEN_MSG_ID_BYTES, out);
    }
    keten_store_abort(&txn);
    return e;
}

keten_err keten_inbox_show(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out)
{
    json_t *rec = NULL;
    keten_err e = keten_inbox_record(node, msg_id, &rec);
    if (e != KETEN_OK) {
        return e;
    }
    json_t *p = public_record(msg_id, rec);
    if (p == NULL) {
        json_decref(rec);
        return KETEN_ERR_NOMEM;
    }
    e = keten_rec_set(p, "category", json_string(keten_rec_str(rec, "category")));
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "purpose", json_string(keten_rec_str(rec, "purpose")));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "created_at", keten_rec_time(keten_rec_u64(rec, "created_at")));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "expires_at", keten_rec_time(keten_rec_u64(rec, "expires_at")));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(
            p, "leaf_index", json_integer((json_int_t)keten_rec_u64(rec, "leaf_index")));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(
            p, "handled", json_boolean(json_is_true(json_object_get(rec, "handled"))));
    }
    json_decref(rec);
    if (e != KETEN_OK) {
        json_decref(p);
        return e;
    }
    *out = p;
    return KETEN_OK;
}

keten_err keten_inbox_ack(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    MDB_txn *txn = NULL;
    json_t *rec = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_store_get_json(
            node->store, txn, KETEN_DB_MESSAGES, msg_id, KETEN_MSG_ID_BYTES, &rec);
    }
    if (e == KETEN_OK && !json_is_true(json_object_get(rec, "handled"))) {
        e = keten_rec_set(rec, "handled", json_true());
        if (e == KETEN_OK) {
            e = keten_rec_set(rec, "handled_at", json_integer((json_int_t)keten_now_ms()));
        }
        if (e == KETEN_OK) {
            e = keten_store_put_json(
                node->store, txn, KETEN_DB_MESSAGES, msg_id, KETEN_MSG_ID_BYTES, rec);
        }
        if (e == KETEN_OK) {
            e = keten_store_commit(&txn);
        }
    }
    keten_store_abort(&txn);
    json_decref(rec);
    return e;
}

void keten_inbox_purge_seen(keten_node *node)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (keten_store_begin(node->store, true, &txn) != KETEN_OK) {
        return;
    }
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_SEEN), &cur) != 0) {
        keten_store_abort(&txn);
        return;
    }
    uint64_t cutoff = keten_now_ms() - KETEN_CLOCK_SKEW_MS;
    size_t n = 0;
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (v.mv_size == KETEN_STORE_SEEN_BYTES && keten_store_u64_get(v.mv_data) < cutoff) {
            if (mdb_cursor_del(cur, 0) != 0) {
                break;
            }
            n++;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (keten_store_commit(&txn) == KETEN_OK && n > 0) {
        KETEN_LOG(KETEN_LOG_INFO, "replay memory purged", "expired=%zu", n);
    }
}
