#include "inbox.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dirs.h"
#include "envelope.h"
#include "events.h"
#include "hook.h"
#include "link.h"
#include "logproof.h"
#include "log.h"
#include "nodestore.h"
#include "outbox.h"
#include "pb.h"
#include "policy.h"
#include "receipt.h"
#include "rec.h"
#include "signal_json.h"
#include "store.h"
#include "util.h"
#include "witness.h"
#include "alarm.h"
#include "sha256.h"

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

/* The public form of a received message (`inbox --json`, the hook,
 * keten-node(8)): msg_id, the header's from, kind and in_reply_to (and those
 * of more, KETEN_HDR_*), received_at and the signal. */
static keten_err public_json(const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const Keten__Header *h, const Keten__Signal *signal, uint64_t received_at, unsigned more,
    json_t **out)
{
    *out = NULL;
    json_t *p = json_object();
    keten_err e = p == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "msg_id", keten_rec_hex(msg_id, KETEN_MSG_ID_BYTES));
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_header_json(h, KETEN_HDR_SENDER | more, p);
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "received_at", keten_rec_time(received_at));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "signal", keten_signal_json_to_jansson(signal));
    }
    if (e != KETEN_OK) {
        json_decref(p);
        return e;
    }
    *out = p;
    return KETEN_OK;
}

keten_err keten_inbox_reply_json(const Keten__ReceivedRecord *rec, json_t *obj)
{
    if (rec->reply_id.len != KETEN_MSG_ID_BYTES) { /* no reply (the store checks the length) */
        return KETEN_OK;
    }
    return keten_rec_set(
        obj, "reply_msg_id", keten_rec_hex(rec->reply_id.data, KETEN_MSG_ID_BYTES));
}

/* The same, of a stored record, with reply_msg_id when this node replied. */
static keten_err stored_json(const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const Keten__ReceivedRecord *rec, unsigned more, json_t **out)
{
    *out = NULL;
    Keten__Header *h = NULL;
    Keten__Signal *signal = NULL;
    keten_err e = keten_nodestore_received_header(msg_id, rec, &h);
    if (e == KETEN_OK) {
        e = keten_signal_json_unpack(rec->signal.data, rec->signal.len, &signal);
        if (e != KETEN_OK && e != KETEN_ERR_NOMEM) {
            char hex[KETEN_MSG_ID_HEX_BYTES];
            keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
            e = keten_err_set(KETEN_ERR_MALFORMED,
                "the node store's messages record %s is damaged: its signal does not parse; it "
                "is not read (restore the store from a backup)",
                hex);
        }
    }
    if (e == KETEN_OK) {
        e = public_json(msg_id, h, signal, rec->received_at, more, out);
    }
    if (e == KETEN_OK) {
        e = keten_inbox_reply_json(rec, *out);
        if (e != KETEN_OK) {
            json_decref(*out);
            *out = NULL;
        }
    }
    keten_signal_json_free(&signal);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    return e;
}

static void after_store(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const Keten__Header *h, const Keten__Signal *signal, uint64_t received_at)
{
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    if (node->opts.on_message != NULL) {
        json_t *p = NULL;
        keten_err e = public_json(msg_id, h, signal, received_at, 0, &p);
        char *text = e == KETEN_OK ? json_dumps(p, JSON_COMPACT) : NULL;
        json_decref(p);
        if (text == NULL || keten_hook_run(node, hex, text, strlen(text)) != KETEN_OK) {
            node->counters.hooks_failed++;
            KETEN_LOG(KETEN_LOG_WARNING, "hook not run", "hook=%s msg_id=%s error=\"%s\"",
                KETEN_HOOK_KIND, hex, keten_err_detail());
        }
        if (text != NULL) {
            sodium_memzero(text, strlen(text));
            free(text);
        }
    }
    keten_api_notify_inbox(node);
}

/* A leaf for the next receipt batch (keten_inbox_flush_receipts). false when
 * it cannot be kept (no memory): the delivery's credit is returned instead. */
static bool add_receipt(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const uint8_t env_hash[static KETEN_HASH_BYTES], Keten__Outcome outcome, Keten__Reason reason)
{
    if (node->n_receipts == node->cap_receipts) {
        size_t cap = node->cap_receipts == 0 ? 64 : 2 * node->cap_receipts;
        keten_receipt_item *r = realloc(node->receipts, cap * sizeof *r);
        if (r == NULL) {
            give_credit(node, 1);
            return false;
        }
        node->receipts = r;
        node->cap_receipts = cap;
    }
    keten_receipt_item *it = &node->receipts[node->n_receipts++];
    memcpy(it->msg_id, msg_id, KETEN_MSG_ID_BYTES);
    memcpy(it->envelope_hash, env_hash, KETEN_HASH_BYTES);
    it->outcome = outcome;
    it->reason = reason;
    return true;
}

/* The reason a recipient gives for a delivery keten_envelope_open() refused. */
static Keten__Reason refusal_reason(keten_err e)
{
    switch (e) {
    case KETEN_ERR_BAD_SIGNATURE:
    case KETEN_ERR_UNKNOWN_NODE:
    case KETEN_ERR_REVOKED:
    case KETEN_ERR_NOT_YET_VALID:
        return KETEN__REASON__REASON_BAD_SIGNATURE;
    case KETEN_ERR_KEYS_HASH:
    case KETEN_ERR_COMMITMENT:
    case KETEN_ERR_DECRYPT:
        return KETEN__REASON__REASON_UNDECRYPTABLE;
    case KETEN_ERR_MISMATCH:
    case KETEN_ERR_INVALID_SIGNAL:
        return KETEN__REASON__REASON_INVALID_SIGNAL;
    case KETEN_ERR_POLICY:
        return KETEN__REASON__REASON_POLICY;
    case KETEN_ERR_EXPIRED: /* past expires_at, or a lifetime over the maximum */
        return KETEN__REASON__REASON_EXPIRED;
    case KETEN_ERR_CLOCK_SKEW:
        return KETEN__REASON__REASON_CLOCK_SKEW;
    case KETEN_ERR_WRONG_NETWORK:
        return KETEN__REASON__REASON_WRONG_NETWORK;
    case KETEN_ERR_UNREGISTERED:
        return KETEN__REASON__REASON_UNREGISTERED;
    default:
        return KETEN__REASON__REASON_MALFORMED;
    }
}

/* The proof of a delivery and its record: KETEN_OK, KETEN_ERR_NOT_FOUND for
 * an unknown tree size (logged), or an alarm raised. */
static keten_err check_delivery_proof(keten_node *node, const Keten__Deliver *d)
{
    Keten__AuditRecord *ar = NULL;
    Keten__Envelope *env = NULL;
    keten_err e = keten_witness_leaf(node, d->proof, &ar);
    if (e == KETEN_ERR_NOT_FOUND) {
        KETEN_LOG(KETEN_LOG_NOTICE,
            "delivery proven against an unknown checkpoint; not stored, not receipted",
            "detail=\"%s\"", keten_err_detail());
        return e;
    }
    if (e != KETEN_OK) {
        keten_alarm_evidence(node, "bad-proof",
            "the broker's delivery carries a proof that does not hold: %s", keten_err_detail());
        goto out;
    }
    e = d->envelope.len > KETEN_ENVELOPE_MAX
        ? keten_err_set(KETEN_ERR_TOO_LARGE, "delivered envelope of %zu bytes", d->envelope.len)
        : KETEN_PB_UNPACK(keten__envelope, d->envelope.data, d->envelope.len, KETEN_ENVELOPE_MAX,
            "delivered envelope", &env);
    if (e == KETEN_OK) {
        e = keten_logproof_record_is_envelope(ar, d->envelope.data, d->envelope.len, env);
    }
    if (e == KETEN_OK) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT, "the record does not list this node");
        for (size_t i = 0; i < ar->n_recipients; i++) {
            if (strcmp(ar->recipients[i], node->me->id) == 0) {
                keten_err_clear();
                e = KETEN_OK;
                break;
            }
        }
    }
    if (e != KETEN_OK) {
        node->counters.proofs_failed++;
        char hex[KETEN_MSG_ID_HEX_BYTES] = "?";
        if (ar->msg_id.len == KETEN_MSG_ID_BYTES) {
            keten_hex(ar->msg_id.data, KETEN_MSG_ID_BYTES, hex);
        }
        keten_alarm_evidence(node, "bad-proof",
            "the broker's delivery proves leaf %llu (the record of message %s), which is not the "
            "delivered envelope's: %s",
            (unsigned long long)d->proof->leaf_index, hex, keten_err_detail());
    }
out:
    keten_pb_free((ProtobufCMessage **)(void *)&env);
    keten_pb_free((ProtobufCMessage **)(void *)&ar);
    return e;
}

/* ---- the count of unhandled messages (KETEN_INBOX_UNHANDLED_KEY) ---------- */

/* The stored count; *have false when it is missing or not 8 bytes. */
static keten_err unhandled_stored(keten_node *node, MDB_txn *txn, bool *have, uint64_t *n)
{
    MDB_val v;
    *have = false;
    *n = 0;
    keten_err e = keten_store_get(node->store, txn, KETEN_DB_STATE, KETEN_INBOX_UNHANDLED_KEY,
        strlen(KETEN_INBOX_UNHANDLED_KEY), &v);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK;
    }
    if (e != KETEN_OK) {
        return e;
    }
    if (v.mv_size == KETEN_STORE_U64_KEY) {
        *have = true;
        *n = keten_store_u64_get(v.mv_data);
    }
    return KETEN_OK;
}

/* Every message of the inbox read: those not handled. */
static keten_err unhandled_recount(keten_node *node, MDB_txn *txn, uint64_t *out)
{
    MDB_cursor *cur = NULL;
    *out = 0;
    if (mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_INBOX), &cur) != 0) {
        return keten_err_set(KETEN_ERR_STORE, "cannot read the inbox");
    }
    keten_err e = KETEN_OK;
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && e == KETEN_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != KETEN_MSG_ID_BYTES) {
            continue;
        }
        Keten__ReceivedRecord *rec = NULL;
        e = keten_nodestore_received_get(node->store, txn, v.mv_data, &rec);
        if (e == KETEN_OK && !rec->handled) {
            (*out)++;
        }
        keten_nodestore_received_free(&rec);
    }
    mdb_cursor_close(cur);
    return e;
}

static keten_err unhandled_put(keten_node *node, MDB_txn *txn, uint64_t n)
{
    uint8_t b[KETEN_STORE_U64_KEY];
    keten_store_u64_put(n, b);
    return keten_store_put(node->store, txn, KETEN_DB_STATE, KETEN_INBOX_UNHANDLED_KEY,
        strlen(KETEN_INBOX_UNHANDLED_KEY), b, sizeof b);
}

/* One more (a message stored) or one less (a message handled), in the
 * transaction of that change. A missing count stays missing (counted at the
 * next start, keten_inbox_unhandled_init); one that would go below zero is
 * wrong and is removed, so that it is counted again rather than trusted. */
static keten_err unhandled_add(keten_node *node, MDB_txn *txn, bool more)
{
    bool have = false;
    uint64_t n = 0;
    keten_err e = unhandled_stored(node, txn, &have, &n);
    if (e != KETEN_OK || !have) {
        return e;
    }
    if (!more && n == 0) {
        KETEN_LOG(KETEN_LOG_WARNING,
            "the stored count of unhandled messages was wrong; the inbox is counted again",
            "key=%s", KETEN_INBOX_UNHANDLED_KEY);
        return keten_store_del(node->store, txn, KETEN_DB_STATE, KETEN_INBOX_UNHANDLED_KEY,
            strlen(KETEN_INBOX_UNHANDLED_KEY));
    }
    return unhandled_put(node, txn, more ? n + 1 : n - 1);
}

keten_err keten_inbox_unhandled(keten_node *node, MDB_txn *txn, uint64_t *out)
{
    bool have = false;
    keten_err e = unhandled_stored(node, txn, &have, out);
    if (e == KETEN_OK && !have) {
        e = unhandled_recount(node, txn, out);
    }
    return e;
}

keten_err keten_inbox_unhandled_init(keten_node *node)
{
    MDB_txn *txn = NULL;
    bool have = false;
    uint64_t n = 0;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = unhandled_stored(node, txn, &have, &n);
    }
    if (e == KETEN_OK && !have) {
        e = unhandled_recount(node, txn, &n);
        if (e == KETEN_OK) {
            e = unhandled_put(node, txn, n);
        }
        if (e == KETEN_OK) {
            e = keten_store_commit(&txn);
        }
        if (e == KETEN_OK) {
            KETEN_LOG(KETEN_LOG_INFO, "unhandled messages counted", "unhandled=%llu",
                (unsigned long long)n);
        }
    }
    keten_store_abort(&txn);
    return e;
}

void keten_inbox_on_deliver(keten_node *node, const Keten__Deliver *d)
{
    keten_envelope_verified *v = NULL;
    Keten__Signal *signal = NULL;
    MDB_txn *txn = NULL;
    Keten__SeenRecord *seen = NULL;
    uint8_t *sig_bytes = NULL;
    size_t sig_len = 0;
    uint64_t now = keten_now_ms();
    char hex[KETEN_MSG_ID_HEX_BYTES] = "?";

    /* Past the directory's expiry nothing is opened or receipted (a
     * revocation may be withheld): the delivery stays at the broker, which
     * sends it again once a fresh directory is installed (dirs.c). */
    keten_err e = keten_dirs_receive_ok(node);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING,
            "delivery not opened, not receipted: the directory has expired", "detail=\"%s\"",
            keten_err_detail());
        keten_err_clear();
        keten_dirs_held(node, 1);
        give_credit(node, 1);
        goto out;
    }
    /* A delivery the broker cannot be held to gets no leaf at all. */
    e = check_delivery_proof(node, d);
    if (e != KETEN_OK) {
        keten_err_clear();
        node->counters.rejected++;
        give_credit(node, 1);
        goto out;
    }
    const uint64_t leaf = d->proof->leaf_index;
    e = keten_envelope_open(
        node->me, node->dir, d->envelope.data, d->envelope.len, now, &v, &signal);
    if (e == KETEN_ERR_DECRYPT && node->old != NULL) {
        /* Sealed to the encryption key a rotation replaced (rotate.h). */
        keten_err_clear();
        e = keten_envelope_open(
            node->old, node->dir, d->envelope.data, d->envelope.len, now, &v, &signal);
    }
    if (e != KETEN_OK) {
        Keten__Reason reason = refusal_reason(e);
        KETEN_LOG(KETEN_LOG_WARNING, "delivery refused",
            "leaf=%llu error=\"%s\" reason=%s detail=%s", (unsigned long long)leaf,
            keten_err_str(e), keten_outbox_reason_name(reason), keten_err_detail());
        node->counters.rejected++;
        /* The record is the envelope's (checked above): its msg_id is the
         * header's. */
        Keten__Envelope *env = NULL;
        Keten__Header *h = NULL;
        uint8_t env_hash[KETEN_HASH_BYTES];
        keten_sha256(env_hash, d->envelope.data, d->envelope.len);
        if (KETEN_PB_UNPACK(keten__envelope, d->envelope.data, d->envelope.len, KETEN_ENVELOPE_MAX,
                "envelope", &env)
                == KETEN_OK
            && KETEN_PB_UNPACK(keten__header, env->header.data, env->header.len, KETEN_ENVELOPE_MAX,
                   "header", &h)
                == KETEN_OK
            && h->msg_id.len == KETEN_MSG_ID_BYTES) {
            (void)add_receipt(
                node, h->msg_id.data, env_hash, KETEN__OUTCOME__OUTCOME_REFUSED, reason);
        } else {
            give_credit(node, 1);
        }
        keten_err_clear();
        keten_pb_free((ProtobufCMessage **)(void *)&h);
        keten_pb_free((ProtobufCMessage **)(void *)&env);
        goto out;
    }
    const uint8_t *msg_id = v->header->msg_id.data;
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    if ((e = keten_store_begin(node->store, true, &txn)) != KETEN_OK) {
        goto fail;
    }
    e = keten_nodestore_seen_get(node->store, txn, msg_id, &seen);
    if (e == KETEN_OK) {
        bool other = sodium_memcmp(seen->envelope_hash.data, v->envelope_hash, KETEN_HASH_BYTES)
            != 0; /* 32 bytes: checked when read */
        keten_store_abort(&txn);
        if (other) {
            KETEN_LOG(KETEN_LOG_WARNING,
                "delivery refused: another envelope under a msg_id already received",
                "msg_id=%s from=%s leaf=%llu", hex, v->header->sender, (unsigned long long)leaf);
            node->counters.rejected++;
            (void)add_receipt(node, msg_id, v->envelope_hash, KETEN__OUTCOME__OUTCOME_REFUSED,
                KETEN__REASON__REASON_DUPLICATE);
            goto out;
        }
        node->counters.duplicates++;
        KETEN_LOG(KETEN_LOG_INFO, "duplicate delivery receipted again", "msg_id=%s", hex);
        (void)add_receipt(node, msg_id, v->envelope_hash, KETEN__OUTCOME__OUTCOME_STORED,
            KETEN__REASON__REASON_NONE);
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
    if ((e = keten_signal_json_pack(signal, &sig_bytes, &sig_len)) != KETEN_OK) {
        goto fail;
    }
    Keten__ReceivedRecord rec = KETEN__RECEIVED_RECORD__INIT;
    rec.envelope.data = d->envelope.data;
    rec.envelope.len = d->envelope.len;
    rec.signal.data = sig_bytes;
    rec.signal.len = sig_len;
    rec.received_at = now;
    rec.leaf_index = leaf;
    uint8_t seq_key[KETEN_STORE_U64_KEY];
    keten_store_u64_put(seq, seq_key);
    if ((e = keten_nodestore_received_put(node->store, txn, msg_id, &rec)) != KETEN_OK
        || (e = keten_store_put(node->store, txn, KETEN_DB_INBOX, seq_key, sizeof seq_key, msg_id,
                KETEN_MSG_ID_BYTES))
            != KETEN_OK
        || (e = keten_nodestore_seen_put(
                node->store, txn, msg_id, v->header->expires_at, v->envelope_hash))
            != KETEN_OK
        || (e = unhandled_add(node, txn, true)) != KETEN_OK) {
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
    if ((e = keten_events_message(node, txn, msg_id, v->header)) != KETEN_OK) {
        goto fail;
    }
    if ((e = keten_store_commit(&txn)) != KETEN_OK) {
        goto fail;
    }
    node->counters.received++;
    KETEN_LOG(KETEN_LOG_INFO, "message received", "msg_id=%s from=%s kind=%s leaf=%llu", hex,
        v->header->sender, keten_policy_kind_name(v->header->kind), (unsigned long long)leaf);
    /* Its receipt leaf is signed with the others of this group commit and
     * sent once the commit is durable (keten_inbox_flush_receipts); the test
     * hook KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT is in link.c, where the
     * batch goes to the socket. */
    (void)add_receipt(
        node, msg_id, v->envelope_hash, KETEN__OUTCOME__OUTCOME_STORED, KETEN__REASON__REASON_NONE);
    after_store(node, msg_id, v->header, signal, now);
    goto out;
fail:
    KETEN_LOG(KETEN_LOG_ERR, "cannot store delivered message; not receipted",
        "msg_id=%s error=\"%s\" detail=\"%s\"", hex, keten_err_str(e), keten_err_detail());
    give_credit(node, 1);
out:
    keten_store_abort(&txn);
    keten_pb_free((ProtobufCMessage **)(void *)&seen);
    if (sig_bytes != NULL) {
        sodium_memzero(sig_bytes, sig_len);
        free(sig_bytes);
    }
    keten_signal_json_free(&signal);
    keten_envelope_verified_destroy(&v);
}

void keten_inbox_flush_receipts(keten_node *node)
{
    size_t n = node->n_receipts;
    node->n_receipts = 0;
    if (n == 0) {
        return;
    }
    if (keten_dirs_receive_ok(node) != KETEN_OK) {
        /* Expired since these leaves were decided: none is signed. The
         * broker sends them again after a fresh directory; the stored ones
         * are receipted then, as duplicates. */
        KETEN_LOG(KETEN_LOG_WARNING, "receipts not signed: the directory has expired",
            "leaves=%zu detail=\"%s\"", n, keten_err_detail());
        keten_err_clear();
        keten_dirs_held(node, n);
        give_credit(node, (uint32_t)n);
        return;
    }
    const Keten__NodeCert *mine = keten_dirs_my_cert(node);
    uint64_t stored_at = keten_now_ms();
    for (size_t off = 0; off < n; off += KETEN_RECEIPT_BATCH_MAX) {
        size_t count = n - off < KETEN_RECEIPT_BATCH_MAX ? n - off : KETEN_RECEIPT_BATCH_MAX;
        keten_receipt_batch *b = NULL;
        keten_err e = mine == NULL
            ? keten_err_set(KETEN_ERR_UNKNOWN_NODE, "this node is not current; no receipts")
            : keten_receipt_batch_new(node->me, keten_directory_network(node->dir), mine->serial,
                stored_at, node->receipts + off, count, &b);
        if (e == KETEN_OK) {
            Keten__Frame f = KETEN__FRAME__INIT;
            f.body_case = KETEN__FRAME__BODY_RECEIPTS;
            f.receipts = &b->msg;
            e = keten_link_send(node->link, &f);
        }
        keten_receipt_batch_destroy(&b);
        if (e != KETEN_OK) {
            KETEN_LOG(KETEN_LOG_WARNING, "receipt batch not sent; the broker delivers again",
                "leaves=%zu error=\"%s\"", count, keten_err_detail());
            give_credit(node, (uint32_t)count);
            continue;
        }
        node->counters.receipt_batches++;
        KETEN_LOG(KETEN_LOG_DEBUG, "receipt batch", "leaves=%zu", count);
    }
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
        Keten__ReceivedRecord *rec = NULL;
        e = keten_nodestore_received_get(node->store, txn, v.mv_data, &rec);
        if (e == KETEN_OK && (all || !rec->handled)) {
            json_t *p = NULL;
            e = stored_json(v.mv_data, rec, 0, &p);
            if (e == KETEN_OK && json_array_append_new(*out, p) != 0) {
                e = KETEN_ERR_NOMEM;
            }
        }
        keten_nodestore_received_free(&rec);
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    return e;
}

keten_err keten_inbox_record(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    Keten__ReceivedRecord **out)
{
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_received_get(node->store, txn, msg_id, out);
    }
    keten_store_abort(&txn);
    return e;
}

keten_err keten_inbox_sender(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    char *out, size_t size)
{
    Keten__ReceivedRecord *rec = NULL;
    Keten__Header *h = NULL;
    keten_err e = keten_inbox_record(node, msg_id, &rec);
    if (e == KETEN_OK) {
        e = keten_nodestore_received_header(msg_id, rec, &h);
    }
    if (e == KETEN_OK
        && (h->sender == NULL || snprintf(out, size, "%s", h->sender) >= (int)size)) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE, "a sender id longer than %zu bytes", size - 1);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_nodestore_received_free(&rec);
    return e;
}

keten_err keten_inbox_show(
    keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out)
{
    *out = NULL;
    Keten__ReceivedRecord *rec = NULL;
    json_t *p = NULL;
    keten_err e = keten_inbox_record(node, msg_id, &rec);
    if (e == KETEN_OK) {
        e = stored_json(msg_id, rec, KETEN_HDR_LABELS | KETEN_HDR_TIMES, &p);
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "leaf_index", json_integer((json_int_t)rec->leaf_index));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(p, "handled", json_boolean(rec->handled));
    }
    keten_nodestore_received_free(&rec);
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
    Keten__ReceivedRecord *rec = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_received_get(node->store, txn, msg_id, &rec);
    }
    if (e == KETEN_OK && !rec->handled) {
        rec->handled = true;
        rec->handled_at = keten_now_ms();
        e = keten_nodestore_received_put(node->store, txn, msg_id, rec);
        if (e == KETEN_OK) {
            e = unhandled_add(node, txn, false);
        }
        if (e == KETEN_OK) {
            e = keten_events_handled(node, txn, msg_id, rec->handled_at);
        }
        if (e == KETEN_OK) {
            e = keten_store_commit(&txn);
        }
    }
    keten_store_abort(&txn);
    keten_nodestore_received_free(&rec);
    return e;
}

void keten_inbox_purge_seen(keten_node *node)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        int rc = mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_SEEN), &cur);
        if (rc != 0) {
            e = keten_err_set(
                KETEN_ERR_STORE, "opening a cursor on the replay memory: %s", mdb_strerror(rc));
        }
    }
    if (e != KETEN_OK) {
        keten_store_abort(&txn);
        node->counters.store_errors++;
        KETEN_LOG(KETEN_LOG_ERR, "replay memory not purged; the next purge tries again",
            "error=\"%s\"", keten_err_detail());
        keten_err_clear();
        return;
    }
    uint64_t cutoff = keten_now_ms() - KETEN_CLOCK_SKEW_MS;
    size_t n = 0;
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        Keten__SeenRecord *seen = NULL;
        if (keten_nodestore_decode(KETEN_DB_SEEN, k.mv_data, k.mv_size, &v,
                &keten__seen_record__descriptor, KETEN_NODESTORE_SMALL_MAX,
                (ProtobufCMessage **)(void *)&seen)
            != KETEN_OK) {
            /* Kept: it still refuses the replay of that msg_id. */
            node->counters.store_errors++;
            KETEN_LOG(KETEN_LOG_ERR, "replay entry not purged", "error=\"%s\"",
                keten_err_detail());
            keten_err_clear();
        } else if (seen->expires_at < cutoff) {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0) {
                keten_pb_free((ProtobufCMessage **)(void *)&seen);
                break;
            }
            n++;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&seen);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) { /* a read or a delete failed: nothing of it is kept */
        keten_store_abort(&txn);
        node->counters.store_errors++;
        KETEN_LOG(KETEN_LOG_ERR, "replay memory not purged; the next purge tries again",
            "error=\"%s\"", mdb_strerror(rc));
        return;
    }
    e = keten_store_commit(&txn);
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        node->counters.store_errors++;
        KETEN_LOG(KETEN_LOG_ERR, "replay memory not purged; the next purge tries again",
            "error=\"%s\"", keten_err_detail());
        keten_err_clear();
        return;
    }
    if (n > 0) {
        KETEN_LOG(KETEN_LOG_INFO, "replay memory purged", "expired=%zu", n);
    }
}
