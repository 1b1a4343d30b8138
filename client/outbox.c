#include "outbox.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alarm.h"
#include "api.h"
#include "dirs.h"
#include "envelope.h"
#include "events.h"
#include "link.h"
#include "logproof.h"
#include "log.h"
#include "nodestore.h"
#include "pb.h"
#include "policy.h"
#include "receipt.h"
#include "signal_json.h"
#include "store.h"
#include "util.h"
#include "witness.h"
#include "sha256.h"

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

/* rule_out (may be NULL): on KETEN_ERR_POLICY, the refusing deny rule's
 * number (0: no rule allows it). */
static keten_err policy_check(keten_node *node, const char *const *ids, size_t n, Keten__Kind kind,
    const char *category, const char *purpose, uint32_t *rule_out)
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
            if (rule_out != NULL) {
                *rule_out = d.rule;
            }
            if (d.rule == KETEN_POLICY_DEFAULT_RULE) {
                return keten_err_set(KETEN_ERR_POLICY,
                    "the sharing policy refuses %s -> %s (kind %s, category %s, purpose %s): "
                    "no rule allows it (default deny, rule 0)",
                    node->me->id, to->id, keten_policy_kind_name(kind), category, purpose);
            }
            return keten_err_set(KETEN_ERR_POLICY,
                "the sharing policy refuses %s -> %s (kind %s, category %s, purpose %s): "
                "deny rule %u",
                node->me->id, to->id, keten_policy_kind_name(kind), category, purpose, d.rule);
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

#define REFUSAL_DETAIL_MAX 512 /* bytes of a broker's refusal detail kept, with its NUL */

/* Replace an unpacked record's string (freed with it). */
static keten_err set_str(char **field, const char *value)
{
    char *copy = strdup(value != NULL ? value : "");
    if (copy == NULL) {
        return KETEN_ERR_NOMEM;
    }
    if (*field != NULL && *field != protobuf_c_empty_string) {
        free(*field);
    }
    *field = copy;
    return KETEN_OK;
}

/* A queued message leaves the outbox (accepted, refused or expired): its
 * record keeps the envelope's hash and header instead of the envelope. */
static keten_err leave_outbox(Keten__SentRecord *rec, Keten__SentState state)
{
    if (rec->state != KETEN__SENT_STATE__SENT_STATE_QUEUED) {
        return keten_err_set(KETEN_ERR_INVALID, "the message is not in the outbox");
    }
    Keten__Envelope *env = NULL;
    keten_err e = KETEN_PB_UNPACK(keten__envelope, rec->envelope.data, rec->envelope.len,
        KETEN_ENVELOPE_MAX, "stored envelope", &env);
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t *hash = malloc(KETEN_HASH_BYTES);
    uint8_t *hdr = malloc(env->header.len ? env->header.len : 1);
    if (hash == NULL || hdr == NULL) {
        free(hash);
        free(hdr);
        keten_pb_free((ProtobufCMessage **)(void *)&env);
        return KETEN_ERR_NOMEM;
    }
    keten_sha256(hash, rec->envelope.data, rec->envelope.len);
    memcpy(hdr, env->header.data, env->header.len);
    rec->header.data = hdr;
    rec->header.len = env->header.len;
    keten_pb_free((ProtobufCMessage **)(void *)&env);
    rec->envelope_hash.data = hash;
    rec->envelope_hash.len = KETEN_HASH_BYTES;
    free(rec->envelope.data);
    rec->envelope.data = NULL;
    rec->envelope.len = 0;
    rec->state = state;
    return KETEN_OK;
}

/* The envelope hash a sent message's receipts name. */
static void sent_envelope_hash(const Keten__SentRecord *rec, uint8_t out[static KETEN_HASH_BYTES])
{
    if (rec->state == KETEN__SENT_STATE__SENT_STATE_QUEUED) {
        keten_sha256(out, rec->envelope.data, rec->envelope.len);
    } else {
        memcpy(out, rec->envelope_hash.data, KETEN_HASH_BYTES); /* 32: checked when read */
    }
}

/* The signal's type and purpose, when both are registered labels (else
 * the signal's own problems say so and the policy is not looked at). */
static bool signal_labels(
    const keten_node *node, const char *json, size_t len, char *type, char *purpose)
{
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    const char *t = json_string_value(json_object_get(root, "type"));
    const char *p = json_string_value(json_object_get(root, "purpose"));
    bool ok = t != NULL && p != NULL && keten_label_valid(t) && keten_label_valid(p)
        && keten_directory_category_registered(node->dir, t)
        && keten_directory_purpose_registered(node->dir, p);
    if (ok) {
        snprintf(type, KETEN_LABEL_MAX + 1, "%s", t);
        snprintf(purpose, KETEN_LABEL_MAX + 1, "%s", p);
    }
    json_decref(root);
    return ok;
}

#define TO_ALLOWED "node ids, role:NAME or *, comma-separated"
#define RECIPIENT_DETAIL_MAX 512 /* a party's problem, as the directory words it */

/* The recipients of a check, every problem of them listed (path "to"): a
 * party that names no current node does not hide the others, so the policy
 * is still checked for every recipient the other parties name (*ids, *n,
 * freed by the caller). The first problem's error, its detail set. */
static keten_err check_recipients(keten_node *node, const char *to,
    keten_signal_json_problems *problems, const char ***ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    keten_err e = resolve_recipients(node, to, ids, n);
    if (e == KETEN_OK || e == KETEN_ERR_NOMEM) {
        return e;
    }
    /* Whole, the list fails: say so for each party that fails alone; a
     * failure of the list as a whole (only this node, too many) as it is. */
    char whole[RECIPIENT_DETAIL_MAX];
    snprintf(whole, sizeof whole, "%s", keten_err_detail());
    keten_err whole_e = e, first = KETEN_OK;
    char first_detail[RECIPIENT_DETAIL_MAX] = "";
    size_t n_nodes = keten_directory_doc(node->dir)->n_nodes;
    const char **all = calloc(n_nodes ? n_nodes : 1, sizeof *all);
    char *copy = strdup(to);
    if (all == NULL || copy == NULL) {
        free(all);
        free(copy);
        return keten_err_set(KETEN_ERR_NOMEM, "checking the recipients");
    }
    size_t k = 0;
    for (char *p = copy, *comma = NULL; p != NULL; p = comma != NULL ? comma + 1 : NULL) {
        comma = strchr(p, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        const char **one = NULL;
        size_t n_one = 0;
        keten_err pe = keten_directory_resolve(node->dir, p, &one, &n_one);
        if (pe == KETEN_ERR_NOMEM) {
            free(all);
            free(copy);
            return pe;
        }
        if (pe != KETEN_OK) {
            keten_signal_json_problems_add(
                problems, pe, NULL, "to", TO_ALLOWED, keten_err_detail());
            if (first == KETEN_OK) {
                first = pe;
                snprintf(first_detail, sizeof first_detail, "%s", keten_err_detail());
            }
            continue;
        }
        for (size_t i = 0; i < n_one; i++) {
            bool seen = strcmp(one[i], node->me->id) == 0; /* never to ourselves */
            for (size_t j = 0; j < k && !seen; j++) {
                seen = strcmp(all[j], one[i]) == 0;
            }
            if (!seen && k < n_nodes) {
                all[k++] = one[i];
            }
        }
        free(one);
    }
    free(copy);
    if (first == KETEN_OK) { /* no party failed alone */
        free(all);
        keten_signal_json_problems_add(problems, whole_e, NULL, "to", TO_ALLOWED, whole);
        return keten_err_set(whole_e, "%s", whole);
    }
    if (k == 0 || k > KETEN_MAX_RECIPIENTS) {
        free(all);
        all = NULL;
        k = 0;
    }
    *ids = all;
    *n = k;
    return keten_err_set(first, "%s", first_detail);
}

keten_err keten_outbox_check(
    keten_node *node, const keten_outbox_send_req *req, keten_signal_json_problems *problems)
{
    keten_err first = KETEN_OK;
    char detail[1200] = "";
    keten_err e = keten_dirs_send_ok(node);
    if (e != KETEN_OK) {
        keten_signal_json_problems_add(
            problems, e, KETEN_PROBLEM_NODE, "node", NULL, keten_err_detail());
        first = e;
        snprintf(detail, sizeof detail, "node: %s", keten_err_detail());
    }
    /* req->json NULL: the caller found no signal to check, and said so */
    e = req->json != NULL
        ? keten_signal_json_validate(req->json, req->json_len, node->dir, problems)
        : KETEN_OK;
    if (e == KETEN_ERR_NOMEM) {
        return e;
    }
    if (e != KETEN_OK && first == KETEN_OK) {
        first = e;
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
    }
    const char **ids = NULL;
    size_t n_ids = 0;
    /* req->to NULL: the caller found no recipients to check, and said so */
    e = req->to != NULL ? check_recipients(node, req->to, problems, &ids, &n_ids) : KETEN_OK;
    if (e == KETEN_ERR_NOMEM) {
        return e;
    }
    if (e != KETEN_OK && first == KETEN_OK) {
        first = e;
        snprintf(detail, sizeof detail, "to: %s", keten_err_detail());
    }
    char type[KETEN_LABEL_MAX + 1], purpose[KETEN_LABEL_MAX + 1];
    if (n_ids > 0 && req->kind != KETEN__KIND__KIND_UNSPECIFIED && req->json != NULL
        && signal_labels(node, req->json, req->json_len, type, purpose)) {
        for (size_t i = 0; i < n_ids; i++) {
            const char *one[1] = { ids[i] };
            keten_err pe = policy_check(node, one, 1, req->kind, type, purpose, NULL);
            if (pe != KETEN_OK) {
                keten_signal_json_problems_add(problems, pe, NULL, "to", NULL, keten_err_detail());
                if (first == KETEN_OK) {
                    first = pe;
                    snprintf(detail, sizeof detail, "to: %s", keten_err_detail());
                }
            }
        }
    }
    free(ids);
    if (first != KETEN_OK) {
        return keten_err_set(first, "%s", detail);
    }
    return KETEN_OK;
}

/* Inside the send's transaction: the query answered gets the reply's
 * msg_id; refused when it already has one. */
static keten_err note_reply_sent(keten_node *node, MDB_txn *txn,
    const uint8_t query_id[static KETEN_MSG_ID_BYTES],
    const uint8_t reply_id[static KETEN_MSG_ID_BYTES])
{
    Keten__ReceivedRecord *rec = NULL;
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(query_id, hex);
    keten_err e = keten_nodestore_received_get(node->store, txn, query_id, &rec);
    if (e == KETEN_ERR_NOT_FOUND) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND, "no message %s in this node's inbox", hex);
    }
    if (e == KETEN_OK && rec->reply_id.len != 0) {
        char prev[KETEN_MSG_ID_HEX_BYTES] = "";
        if (rec->reply_id.len == KETEN_MSG_ID_BYTES) {
            msg_hex(rec->reply_id.data, prev);
        }
        e = keten_err_set(KETEN_ERR_EXISTS,
            "this node already replied to query %s (reply %s); a query gets one reply from each "
            "recipient",
            hex, prev);
    }
    if (e == KETEN_OK) {
        uint8_t *copy = malloc(KETEN_MSG_ID_BYTES);
        if (copy == NULL) {
            e = KETEN_ERR_NOMEM;
        } else {
            memcpy(copy, reply_id, KETEN_MSG_ID_BYTES);
            rec->reply_id.data = copy; /* freed with rec */
            rec->reply_id.len = KETEN_MSG_ID_BYTES;
            e = keten_nodestore_received_put(node->store, txn, query_id, rec);
        }
    }
    keten_nodestore_received_free(&rec);
    return e;
}

keten_err keten_outbox_send(keten_node *node, const keten_outbox_send_req *req,
    uint8_t msg_id_out[static KETEN_MSG_ID_BYTES])
{
    Keten__Signal *signal = NULL;
    Keten__Envelope *env = NULL;
    Keten__Header *hdr = NULL;
    const char **ids = NULL;
    size_t n_ids = 0;
    uint8_t *payload = NULL, *sealed = NULL;
    size_t payload_len = 0, sealed_len = 0;
    MDB_txn *txn = NULL;

    keten_err e = keten_dirs_send_ok(node);
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = keten_signal_json_parse(req->json, req->json_len, &signal)) != KETEN_OK
        || (e = keten_signal_json_check(signal, node->dir)) != KETEN_OK) {
        goto out;
    }
    if ((e = resolve_recipients(node, req->to, &ids, &n_ids)) != KETEN_OK) {
        goto out;
    }
    if ((e = policy_check(
             node, ids, n_ids, req->kind, signal->type, signal->purpose, req->refused_rule))
        != KETEN_OK) {
        goto out;
    }
    uint64_t now = keten_now_ms();
    uint64_t lifetime = KETEN_MAX_LIFETIME_DEFAULT_MS;
    uint64_t dir_max = keten_directory_doc(node->dir)->max_message_lifetime;
    if (dir_max != 0 && dir_max < lifetime) {
        lifetime = dir_max;
    }
    keten_envelope_seal_params params = {
        .kind = req->kind,
        .category = signal->type,
        .purpose = signal->purpose,
        .in_reply_to = req->in_reply_to,
        .created_at = now,
        .expires_at = now + lifetime,
    };
    if ((e = keten_signal_json_pack(signal, &payload, &payload_len)) != KETEN_OK) {
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
    if (hdr->n_recipients == 0 || hdr->n_recipients > KETEN_MAX_RECIPIENTS) {
        e = keten_err_set(KETEN_ERR_INVALID, "sealed a header of %zu recipients", hdr->n_recipients);
        goto out;
    }
    Keten__SentRecipient rcpt[KETEN_MAX_RECIPIENTS];
    Keten__SentRecipient *rcpt_p[KETEN_MAX_RECIPIENTS];
    for (size_t i = 0; i < hdr->n_recipients; i++) {
        keten__sent_recipient__init(&rcpt[i]);
        rcpt[i].id = hdr->recipients[i];
        rcpt[i].state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING;
        rcpt_p[i] = &rcpt[i];
    }
    Keten__SentRecord rec = KETEN__SENT_RECORD__INIT;
    rec.msg_id.data = msg_id_out;
    rec.msg_id.len = KETEN_MSG_ID_BYTES;
    rec.state = KETEN__SENT_STATE__SENT_STATE_QUEUED;
    rec.envelope.data = sealed;
    rec.envelope.len = sealed_len;
    rec.n_recipients = hdr->n_recipients;
    rec.recipients = rcpt_p;
    /* The outbox is an index of the queued messages; the envelope is in
     * their sent record. A reply is noted on the query it answers in the
     * same transaction: at most one reply per query. */
    if ((e = keten_store_begin(node->store, true, &txn)) != KETEN_OK
        || (req->kind == KETEN__KIND__KIND_REPLY && req->in_reply_to != NULL
            && (e = note_reply_sent(node, txn, req->in_reply_to, msg_id_out)) != KETEN_OK)
        || (e = keten_store_put(
                node->store, txn, KETEN_DB_OUTBOX, msg_id_out, KETEN_MSG_ID_BYTES, "", 0))
            != KETEN_OK
        || (e = keten_nodestore_sent_put(node->store, txn, &rec)) != KETEN_OK
        || (req->idem != NULL
            && (e = keten_idem_put(node->store, txn, req->idem, msg_id_out)) != KETEN_OK)
        || (e = keten_store_commit(&txn)) != KETEN_OK) {
        goto out;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(msg_id_out, hex);
    KETEN_LOG(KETEN_LOG_INFO, "message stored in outbox", "msg_id=%s kind=%s recipients=%zu", hex,
        keten_policy_kind_name(req->kind), n_ids);
    if (keten_link_connected(node->link)) {
        if (submit_one(node, msg_id_out, sealed, sealed_len) != KETEN_OK) {
            KETEN_LOG(KETEN_LOG_WARNING, "submit deferred", "msg_id=%s error=\"%s\"", hex,
                keten_err_detail());
        }
    }
out:
    keten_store_abort(&txn);
    keten_pb_free((ProtobufCMessage **)(void *)&hdr);
    keten_pb_free((ProtobufCMessage **)(void *)&env);
    if (payload != NULL) {
        sodium_memzero(payload, payload_len);
        free(payload);
    }
    free(sealed);
    free(ids);
    keten_signal_json_free(&signal);
    return e;
}

/* An outbox entry past expiry (never acknowledged): expired. */
static keten_err expire_entry(keten_node *node, MDB_txn *txn, const uint8_t *id)
{
    Keten__SentRecord *rec = NULL;
    keten_err e = keten_nodestore_sent_get(node->store, txn, id, &rec);
    if (e == KETEN_OK) {
        e = leave_outbox(rec, KETEN__SENT_STATE__SENT_STATE_EXPIRED);
    }
    for (size_t i = 0; e == KETEN_OK && i < rec->n_recipients; i++) {
        rec->recipients[i]->state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED;
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_sent_put(node->store, txn, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_del(node->store, txn, KETEN_DB_OUTBOX, id, KETEN_MSG_ID_BYTES);
    }
    if (e == KETEN_OK) {
        e = keten_events_sent(node, txn, id, KETEN__SENT_STATE__SENT_STATE_EXPIRED);
    }
    keten_nodestore_sent_free(&rec);
    return e;
}

/* The node store failed (detail set): logged as an error and counted in
 * status (counters.store_errors). */
static void store_failed(keten_node *node, const char *what)
{
    node->counters.store_errors++;
    KETEN_LOG(KETEN_LOG_ERR, what, "error=\"%s\"", keten_err_detail());
    keten_err_clear();
}

/* Take the expired entries and the unreadable ones out of the outbox, in
 * one transaction: a step that fails aborts it all (the next pass tries
 * again). */
static void outbox_cleanup(keten_node *node, const uint8_t (*expired)[KETEN_MSG_ID_BYTES],
    size_t n_expired, const uint8_t (*unreadable)[KETEN_MSG_ID_BYTES], size_t n_unreadable)
{
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e != KETEN_OK) {
        store_failed(node, "cannot update the outbox; the next pass tries again");
        return;
    }
    for (size_t i = 0; e == KETEN_OK && i < n_expired; i++) {
        e = expire_entry(node, txn, expired[i]);
    }
    for (size_t i = 0; e == KETEN_OK && i < n_unreadable; i++) {
        e = keten_store_del(node->store, txn, KETEN_DB_OUTBOX, unreadable[i], KETEN_MSG_ID_BYTES);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    if (e != KETEN_OK) {
        store_failed(node,
            "cannot update the outbox; nothing of this pass is changed, the next "
            "pass tries again");
        return;
    }
    for (size_t i = 0; i < n_expired; i++) {
        keten_api_notify_sent(node, expired[i]);
    }
}

/* One batch of the current resend pass: at most SUBMIT_BATCH_MAX entries
 * after resend_pos; stops early (keeping its place) when libzmq's queue is
 * full; ends the pass at the end of the outbox. An entry whose record cannot
 * be read is never resent: it is logged, counted and taken out of the outbox
 * (its record stays for the operator, who restores the store from a
 * backup). */
static void resend_batch(keten_node *node)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint8_t expired[SUBMIT_BATCH_MAX][KETEN_MSG_ID_BYTES];
    uint8_t unreadable[SUBMIT_BATCH_MAX][KETEN_MSG_ID_BYTES];
    size_t n_expired = 0, n_unreadable = 0, n_sent = 0, n_seen = 0;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        int rc = mdb_cursor_open(txn, keten_store_dbi(node->store, KETEN_DB_OUTBOX), &cur);
        if (rc != 0) {
            e = keten_err_set(
                KETEN_ERR_STORE, "opening a cursor on the outbox: %s", mdb_strerror(rc));
        }
    }
    if (e != KETEN_OK) {
        keten_store_abort(&txn);
        store_failed(node, "cannot read the outbox; nothing resent, the next tick tries again");
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
        Keten__SentRecord *rec = NULL;
        Keten__Header *h = NULL;
        e = keten_nodestore_sent_get(node->store, txn, k.mv_data, &rec);
        if (e == KETEN_OK && rec->state != KETEN__SENT_STATE__SENT_STATE_QUEUED) {
            e = keten_err_set(KETEN_ERR_MALFORMED, "the outbox names a message that left it");
        }
        if (e == KETEN_OK) {
            e = keten_nodestore_sent_header(rec, &h);
        }
        if (e != KETEN_OK) {
            /* Never resend what cannot be read; the operator restores it. */
            char hex[KETEN_MSG_ID_HEX_BYTES];
            msg_hex(k.mv_data, hex);
            node->counters.store_errors++;
            KETEN_LOG(KETEN_LOG_ERR,
                "outbox entry cannot be read: not resent, taken out of the outbox (restore the "
                "node store from a backup to send it)",
                "msg_id=%s error=\"%s\"", hex, keten_err_detail());
            keten_err_clear();
            if (e != KETEN_ERR_NOMEM) {
                memcpy(unreadable[n_unreadable++], k.mv_data, KETEN_MSG_ID_BYTES);
            }
        } else if (h->expires_at <= now) {
            memcpy(expired[n_expired++], k.mv_data, KETEN_MSG_ID_BYTES);
        } else if (node->resend_everything
            || h->created_at + KETEN_NODE_RESEND_MS <= node->resend_started) {
            if (submit_one(node, k.mv_data, rec->envelope.data, rec->envelope.len) != KETEN_OK) {
                blocked = true; /* queue full: this entry again at the next tick */
            } else {
                n_sent++;
            }
        }
        keten_pb_free((ProtobufCMessage **)(void *)&h);
        keten_nodestore_sent_free(&rec);
        if (blocked) {
            break;
        }
        memcpy(node->resend_pos, k.mv_data, KETEN_MSG_ID_BYTES);
        node->resend_has_pos = true;
    }
    if (!blocked && rc != 0 && rc != MDB_NOTFOUND) {
        keten_err_set(KETEN_ERR_STORE, "reading the outbox: %s", mdb_strerror(rc));
        store_failed(node, "cannot read the outbox to its end; the next pass tries again");
        node->resend_active = false;
        node->last_resend = keten_mono_ms();
    } else if (!blocked && rc == MDB_NOTFOUND) {
        node->resend_active = false;
        node->last_resend = keten_mono_ms();
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    if (n_sent > 0) {
        KETEN_LOG(KETEN_LOG_INFO, "outbox resubmitted", "count=%zu", n_sent);
    }
    if (n_expired > 0 || n_unreadable > 0) {
        outbox_cleanup(node, (const uint8_t(*)[KETEN_MSG_ID_BYTES])expired, n_expired,
            (const uint8_t(*)[KETEN_MSG_ID_BYTES])unreadable, n_unreadable);
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
    node->resubmit_request_id = node->next_request_id;
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

/* A message refused with a proof of its `rejected` record (tree_size is
 * set only then; a refusal stored before proofs were asked for has 0). The
 * log holds no `submitted` record of it and no answer to it: a proof of
 * one is the broker contradicting its own log. */
static bool proven_refused(const Keten__SentRecord *rec)
{
    return rec->state == KETEN__SENT_STATE__SENT_STATE_REFUSED && rec->tree_size != 0;
}

/* The alarm for a proven record of a message the log also holds a proven
 * refusal of (the record kept as it is: refused). */
static void refused_contradiction(keten_node *node, const Keten__SentRecord *rec, const char *what,
    uint64_t leaf, const char *hex)
{
    node->counters.proofs_failed++;
    keten_alarm_evidence(node, "bad-proof",
        "the broker's %s for message %s proves leaf %llu, but it refused the message with the "
        "proof of its rejected record at leaf %llu (%s): its log holds both; the message stays "
        "refused",
        what, hex, (unsigned long long)leaf, (unsigned long long)rec->leaf_index,
        keten_outbox_reason_name(rec->reason));
}

/* Check the record a broker proved for one of our messages: a `submitted`
 * record of this node's, of exactly the envelope in the outbox (or, once
 * taken, of the envelope hash and leaf recorded then). *rec_out is the
 * message's sent record; *in_outbox says whether it waits for its ack.
 * KETEN_ERR_NOT_FOUND: not a message of ours (nothing to check against). */
static keten_err check_submitted(keten_node *node, MDB_txn *txn, const Keten__AuditRecord *ar,
    uint64_t leaf_index, Keten__SentRecord **rec_out, bool *in_outbox)
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
    Keten__SentRecord *rec = NULL;
    keten_err e = keten_nodestore_sent_get(node->store, txn, ar->msg_id.data, &rec);
    if (e != KETEN_OK) {
        return e;
    }
    if (rec->state == KETEN__SENT_STATE__SENT_STATE_QUEUED) {
        Keten__Envelope *env = NULL;
        e = KETEN_PB_UNPACK(keten__envelope, rec->envelope.data, rec->envelope.len,
            KETEN_ENVELOPE_MAX, "stored envelope", &env);
        if (e == KETEN_OK) {
            e = keten_logproof_record_is_envelope(ar, rec->envelope.data, rec->envelope.len, env);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&env);
        *in_outbox = e == KETEN_OK;
    } else if (ar->envelope_hash.len != KETEN_HASH_BYTES
        || sodium_memcmp(rec->envelope_hash.data, ar->envelope_hash.data, KETEN_HASH_BYTES)
            != 0) {
        /* Taken before: the same record at the same leaf. */
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the proven record names another envelope than the one this node sent");
    } else if (rec->state == KETEN__SENT_STATE__SENT_STATE_ACCEPTED
        && rec->leaf_index != leaf_index) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the message was proven at leaf %llu before; now at leaf %llu",
            (unsigned long long)rec->leaf_index, (unsigned long long)leaf_index);
    }
    if (e != KETEN_OK) {
        keten_nodestore_sent_free(&rec);
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
    Keten__SentRecord *rec = NULL;
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
    if (proven_refused(rec)) {
        keten_store_abort(&txn); /* the alarm is stored on its own */
        refused_contradiction(node, rec, what, p->leaf_index, hex);
        goto out;
    }
    if (!in_outbox) { /* taken before (a resend's DUPLICATE proves the same) */
        goto out;
    }
    e = leave_outbox(rec, KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    if (e == KETEN_OK) {
        rec->leaf_index = p->leaf_index;
        rec->tree_size = p->tree_size;
        rec->accepted_at = keten_now_ms();
        for (size_t i = 0; i < rec->n_recipients; i++) {
            if (rec->recipients[i]->state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_PENDING) {
                rec->recipients[i]->state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED;
            }
        }
        e = keten_nodestore_sent_put(node->store, txn, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_del(node->store, txn, KETEN_DB_OUTBOX, ar->msg_id.data, KETEN_MSG_ID_BYTES);
    }
    if (e == KETEN_OK) {
        e = keten_events_sent(node, txn, ar->msg_id.data, KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
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
    keten_nodestore_sent_free(&rec);
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
    const char *detail = err->detail != NULL ? err->detail : "";
    if (err->msg_id.len != KETEN_MSG_ID_BYTES) {
        if (request_id != 0 && request_id <= node->resubmit_request_id) {
            /* A request sent before the Hello of the latest resubmitting
             * pass: a submit that waited in ZeroMQ's queue while the link
             * was down reaches the new connection ahead of its Hello and
             * is refused "send Hello first". The Hello is on its way
             * already and the message goes out again after it, in that
             * pass: nothing to do, and no fault to warn about. */
            KETEN_LOG(KETEN_LOG_INFO, "broker error to a request sent before the latest Hello",
                "reason=%s detail=%s request_id=%llu", keten_outbox_reason_name(err->reason),
                detail, (unsigned long long)request_id);
            return;
        }
        KETEN_LOG(KETEN_LOG_WARNING, "broker error", "reason=%s detail=%s",
            keten_outbox_reason_name(err->reason), detail);
        if (err->reason == KETEN__REASON__REASON_MALFORMED && request_id != 0) {
            /* A request of ours, sent after the latest Hello, refused
             * without naming a message: the one way a correct frame gets
             * that is a connection the broker does not know to have said
             * Hello ("send Hello first"). Say it again and send the outbox
             * after it, as on a new connection (at most every
             * KETEN_NODE_REHELLO_MS). */
            uint64_t now = keten_mono_ms();
            if (node->rehello_at == 0 || now - node->rehello_at >= KETEN_NODE_REHELLO_MS) {
                node->rehello_at = now;
                KETEN_LOG(KETEN_LOG_NOTICE, "a request refused as malformed: Hello sent again",
                    "request_id=%llu", (unsigned long long)request_id);
                keten_witness_send_hello(node);
                keten_outbox_submit_all(node);
            }
        }
        return;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(err->msg_id.data, hex);
    bool final = !transient_reason(err->reason);
    /* A final refusal is recorded only with the proof of its rejected
     * record; without one (or against a checkpoint this node does not
     * keep) the message stays queued and goes out again at the resend
     * pace, the broker's words kept as its detail. */
    Keten__AuditRecord *ar = NULL;
    const char *unproven = NULL;
    if (final) {
        keten_err pe = KETEN_OK;
        if (err->proof == NULL) {
            unproven = "it carries no proof";
        } else if ((pe = keten_witness_leaf(node, err->proof, &ar)) == KETEN_ERR_NOT_FOUND) {
            unproven = "its proof is against a checkpoint this node does not keep";
            keten_err_clear();
        } else if (pe != KETEN_OK) {
            keten_alarm_evidence(node, "bad-proof",
                "the broker's refusal (%s) of message %s carries a proof that does not hold: %s",
                keten_outbox_reason_name(err->reason), hex, keten_err_detail());
            keten_pb_free((ProtobufCMessage **)(void *)&ar);
            return;
        } else if (keten_outbox_refusal_check(node->me->id, err, ar, submitted_id(node, request_id))
            != KETEN_OK) {
            node->counters.proofs_failed++;
            keten_alarm_evidence(node, "bad-proof",
                "the broker's refusal (%s) of message %s proves leaf %llu, which is not its "
                "rejected record: %s; not recorded",
                keten_outbox_reason_name(err->reason), hex,
                (unsigned long long)err->proof->leaf_index, keten_err_detail());
            keten_pb_free((ProtobufCMessage **)(void *)&ar);
            return;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&ar);
    }
    MDB_txn *txn = NULL;
    Keten__SentRecord *rec = NULL;
    keten_err e = keten_store_begin(node->store, true, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_sent_get(node->store, txn, err->msg_id.data, &rec);
    }
    if (e == KETEN_OK && final && unproven == NULL
        && rec->state == KETEN__SENT_STATE__SENT_STATE_ACCEPTED) {
        keten_store_abort(&txn); /* the alarm is stored on its own */
        node->counters.proofs_failed++;
        keten_alarm_evidence(node, "bad-proof",
            "the broker's refusal (%s) of message %s proves its rejected record at leaf %llu, "
            "but the message was proven accepted at leaf %llu: its log holds both; the message "
            "stays accepted",
            keten_outbox_reason_name(err->reason), hex, (unsigned long long)err->proof->leaf_index,
            (unsigned long long)rec->leaf_index);
        goto out;
    }
    if (e != KETEN_OK || rec->state != KETEN__SENT_STATE__SENT_STATE_QUEUED) {
        KETEN_LOG(KETEN_LOG_WARNING, "broker error for a message not pending",
            "msg_id=%s reason=%s", hex, keten_outbox_reason_name(err->reason));
        keten_err_clear();
        goto out;
    }
    if (unproven != NULL && rec->reason == err->reason) {
        /* Said and counted at its first unproven refusal of this reason. */
        KETEN_LOG(KETEN_LOG_DEBUG, "refusal without proof again; the message stays queued",
            "msg_id=%s reason=%s", hex, keten_outbox_reason_name(err->reason));
        goto out;
    }
    rec->reason = err->reason;
    rec->rule = err->reason == KETEN__REASON__REASON_POLICY ? err->rule : 0;
    /* The broker's words, kept to be shown (status, the sent list, a
     * terminal): printable UTF-8, at most REFUSAL_DETAIL_MAX bytes. */
    char clean[REFUSAL_DETAIL_MAX];
    keten_text_clean(detail, clean, sizeof clean);
    e = set_str(&rec->detail, clean);
    bool refused = final && unproven == NULL;
    if (refused) {
        /* The recipients stay as they were: the message never reached them. */
        if (e == KETEN_OK) {
            e = leave_outbox(rec, KETEN__SENT_STATE__SENT_STATE_REFUSED);
        }
        if (e == KETEN_OK) {
            rec->leaf_index = err->proof->leaf_index;
            rec->tree_size = err->proof->tree_size;
            e = keten_store_del(
                node->store, txn, KETEN_DB_OUTBOX, err->msg_id.data, KETEN_MSG_ID_BYTES);
        }
        if (e == KETEN_OK) {
            e = keten_events_sent(
                node, txn, err->msg_id.data, KETEN__SENT_STATE__SENT_STATE_REFUSED);
        }
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_sent_put(node->store, txn, rec);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot store refusal", "msg_id=%s error=\"%s\"", hex,
            keten_err_detail());
        goto out;
    }
    if (refused) {
        node->counters.refused++;
        KETEN_LOG(KETEN_LOG_WARNING, "message refused by broker",
            "msg_id=%s reason=%s rule=%u detail=%s leaf=%llu tree_size=%llu", hex,
            keten_outbox_reason_name(err->reason), rec->rule, detail,
            (unsigned long long)rec->leaf_index, (unsigned long long)rec->tree_size);
    } else if (unproven != NULL) {
        node->counters.refusals_unproven++;
        KETEN_LOG(KETEN_LOG_WARNING,
            "refusal without proof: not recorded; the message stays queued and is sent again",
            "msg_id=%s reason=%s rule=%u why=\"%s\" detail=%s", hex,
            keten_outbox_reason_name(err->reason), rec->rule, unproven, detail);
    } else {
        KETEN_LOG(KETEN_LOG_WARNING, "message deferred by broker", "msg_id=%s reason=%s detail=%s",
            hex, keten_outbox_reason_name(err->reason), detail);
    }
    keten_api_notify_sent(node, err->msg_id.data);
out:
    keten_store_abort(&txn);
    keten_nodestore_sent_free(&rec);
}

keten_err keten_outbox_refusal_check(
    const char *me, const Keten__Error *err, const Keten__AuditRecord *ar, const uint8_t *asked)
{
    char want[KETEN_MSG_ID_HEX_BYTES] = "?", got[KETEN_MSG_ID_HEX_BYTES] = "none";
    if (err->msg_id.len == KETEN_MSG_ID_BYTES) {
        msg_hex(err->msg_id.data, want);
    }
    if (ar->msg_id.len == KETEN_MSG_ID_BYTES) {
        msg_hex(ar->msg_id.data, got);
    }
    if (ar->event != KETEN__EVENT__EVENT_REJECTED) {
        const ProtobufCEnumValue *v
            = protobuf_c_enum_descriptor_get_value(&keten__event__descriptor, (int)ar->event);
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the proven record is %s, not a rejected record",
            v != NULL ? v->name : "of an unknown event");
    }
    if (err->msg_id.len != KETEN_MSG_ID_BYTES || ar->msg_id.len != KETEN_MSG_ID_BYTES
        || sodium_memcmp(err->msg_id.data, ar->msg_id.data, KETEN_MSG_ID_BYTES) != 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the proven record names message %s, the refusal message %s", got, want);
    }
    if (asked != NULL && sodium_memcmp(asked, ar->msg_id.data, KETEN_MSG_ID_BYTES) != 0) {
        char ask[KETEN_MSG_ID_HEX_BYTES];
        msg_hex(asked, ask);
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the refusal answers the submit of message %s but names message %s", ask, got);
    }
    if (ar->sender == NULL || strcmp(ar->sender, me) != 0) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the proven record is a refusal of %s, not of this node",
            ar->sender != NULL && ar->sender[0] != '\0' ? ar->sender : "nobody");
    }
    if (ar->reason != err->reason) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the proven record's reason is %s, the refusal's %s",
            keten_outbox_reason_name(ar->reason), keten_outbox_reason_name(err->reason));
    }
    if (err->reason == KETEN__REASON__REASON_POLICY && ar->rule != err->rule) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "the proven record's policy rule is %u, the refusal's %u", ar->rule, err->rule);
    }
    return KETEN_OK;
}

/* The recipient entry of rec for id, or NULL. */
static Keten__SentRecipient *recipient_entry(const Keten__SentRecord *rec, const char *id)
{
    for (size_t i = 0; i < rec->n_recipients; i++) {
        if (strcmp(rec->recipients[i]->id, id) == 0) {
            return rec->recipients[i];
        }
    }
    return NULL;
}

/* The certificate a forwarded receipt is checked with: the one of the
 * serial its head names (read before its signature is checked, only to pick
 * the key), current or revoked/superseded (*rev then its revocation); the
 * current one when the head does not parse (its check then fails). */
static keten_err receipt_cert(keten_node *node, const char *id, const Keten__ReceiptProof *p,
    const Keten__NodeCert **cert, const Keten__Revocation **rev)
{
    *cert = keten_directory_find_id(node->dir, id);
    *rev = NULL;
    Keten__ReceiptBatchHead *h = NULL;
    if (KETEN_PB_UNPACK(keten__receipt_batch_head, p->head.data, p->head.len,
            KETEN_RECEIPT_HEAD_MAX, "receipt head", &h)
        != KETEN_OK) {
        keten_err_clear();
    } else if (*cert == NULL || (*cert)->serial != h->cert_serial) {
        *rev = keten_directory_find_revoked_serial(node->dir, id, h->cert_serial);
        *cert = *rev != NULL ? (*rev)->cert : NULL;
        if (*cert == NULL) {
            keten_err e = keten_err_set(KETEN_ERR_UNKNOWN_NODE,
                "the receipt names certificate serial %llu of %s, which directory version %llu "
                "does not hold",
                (unsigned long long)h->cert_serial, id,
                (unsigned long long)keten_directory_version(node->dir));
            keten_pb_free((ProtobufCMessage **)(void *)&h);
            return e;
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    if (*cert == NULL) {
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE, "no certificate of %s", id);
    }
    return KETEN_OK;
}

/* Does a receipt by a revoked or superseded certificate count (docs/protocol.md,
 * "Receipts after a revocation")? Only if the revocation was not for a
 * compromise and the receipt was stored before it. */
static keten_err receipt_counts(const Keten__Revocation *rev, const Keten__ReceiptBatchHead *head)
{
    if (rev == NULL) {
        return KETEN_OK;
    }
    char at[40];
    keten_time_iso(rev->at, at, sizeof at);
    if (keten_directory_revocation_compromised(rev)) {
        return keten_err_set(KETEN_ERR_REVOKED,
            "the receipt is signed with the key of %s (serial %llu), revoked at %s for a "
            "compromise: it does not prove that %s stored the message; ask them",
            rev->cert->id, (unsigned long long)rev->cert->serial, at, rev->cert->id);
    }
    if (head->stored_at >= rev->at) {
        char stored[40];
        keten_time_iso(head->stored_at, stored, sizeof stored);
        return keten_err_set(KETEN_ERR_REVOKED,
            "the receipt is signed with the key of %s (serial %llu) and dated %s, after that "
            "certificate was %s at %s",
            rev->cert->id, (unsigned long long)rev->cert->serial, stored,
            rev->superseded ? "superseded" : "revoked", at);
    }
    return KETEN_OK;
}

static bool answered(Keten__RecipientState state)
{
    return state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED
        || state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_REFUSED;
}

/* The first checks of a notice: the proof, then a record of one of this
 * node's messages (*rec_out its sent record). false: nothing to record (an
 * unknown checkpoint, logged; or an alarm raised). */
static bool notice_record(keten_node *node, MDB_txn **txn, const Keten__LeafProof *p,
    const char *what, Keten__AuditRecord **ar_out, Keten__SentRecord **rec_out)
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
    e = keten_nodestore_sent_get(node->store, *txn, ar->msg_id.data, rec_out);
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
    if (proven_refused(*rec_out)) {
        keten_store_abort(txn);
        refused_contradiction(node, *rec_out, what, p->leaf_index, hex);
        keten_nodestore_sent_free(rec_out);
        return false;
    }
    return true;
}

/* Does the ReceiptProof of ar hold for the sent message rec? */
static keten_err check_receipt(keten_node *node, const Keten__AuditRecord *ar,
    const Keten__SentRecord *rec,
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
    const Keten__NodeCert *cert = NULL;
    const Keten__Revocation *rev = NULL;
    keten_err e = receipt_cert(node, ar->node, ar->receipt, &cert, &rev);
    if (e == KETEN_OK) {
        e = keten_receipt_proof_verify(
            cert, keten_directory_network(node->dir), ar->receipt, head, leaf);
    }
    if (e == KETEN_OK) {
        e = receipt_counts(rev, *head);
    }
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t env_hash[KETEN_HASH_BYTES];
    sent_envelope_hash(rec, env_hash);
    if (!keten_receipt_leaf_names(*leaf, ar->msg_id.data, env_hash)) {
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
    Keten__SentRecord *rec = NULL;
    MDB_txn *txn = NULL;
    /* Past the directory's expiry a revocation may be withheld: no receipt
     * is taken; the broker sends it again after a fresh version. */
    keten_err e = keten_dirs_receive_ok(node);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "receipt notice not checked: the directory has expired",
            "detail=\"%s\"", keten_err_detail());
        keten_err_clear();
        keten_dirs_held(node, 1);
        goto out;
    }
    e = keten_store_begin(node->store, true, &txn);
    if (e != KETEN_OK || !notice_record(node, &txn, n->proof, "receipt notice", &ar, &rec)) {
        goto out;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    msg_hex(ar->msg_id.data, hex);
    e = check_receipt(node, ar, rec, &head, &leaf);
    if (e == KETEN_ERR_REVOKED) {
        /* A valid signature by a key that no longer vouches for anything. */
        keten_store_abort(&txn); /* the alarm is stored on its own */
        keten_alarm_evidence(node, "revoked-receipt",
            "the receipt for message %s (leaf %llu) does not count: %s", hex,
            (unsigned long long)n->proof->leaf_index, keten_err_detail());
        goto out;
    }
    if (e != KETEN_OK) {
        node->counters.proofs_failed++;
        keten_store_abort(&txn); /* the alarm is stored on its own */
        keten_alarm_evidence(node, "bad-proof",
            "the broker's receipt notice for message %s (leaf %llu) does not hold: %s", hex,
            (unsigned long long)n->proof->leaf_index, keten_err_detail());
        goto out;
    }
    Keten__SentRecipient *r = recipient_entry(rec, ar->node); /* checked above */
    if (r == NULL || answered(r->state)) {
        /* Sent again (the broker had no confirmation yet): recorded before. */
        confirm_notice(node, n->proof->leaf_index);
        goto out;
    }
    bool stored = leaf->outcome == KETEN__OUTCOME__OUTCOME_STORED;
    r->state = stored ? KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED
                      : KETEN__RECIPIENT_STATE__RECIPIENT_STATE_REFUSED;
    r->stored_at = stored ? head->stored_at : 0;
    r->reason = stored ? KETEN__REASON__REASON_NONE : leaf->reason;
    r->receipt_leaf = n->proof->leaf_index;
    e = keten_nodestore_sent_put(node->store, txn, rec);
    if (e == KETEN_OK) {
        e = keten_events_receipt(node, txn, ar->msg_id.data, r->id, r->state);
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
    keten_nodestore_sent_free(&rec);
    keten_pb_free((ProtobufCMessage **)(void *)&leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    keten_pb_free((ProtobufCMessage **)(void *)&ar);
}

/* An `expired` record is written when the message's expires_at has passed
 * by the broker's clock, and dated then: one dated before the expires_at of
 * the header this node signed is a claim the record itself refutes.
 * KETEN_ERR_INCONSISTENT for that; another error when the sent record's
 * header cannot be read (store damage, not the broker's doing). */
static keten_err expired_in_time(const Keten__SentRecord *rec, const Keten__AuditRecord *ar)
{
    Keten__Header *h = NULL;
    keten_err e = keten_nodestore_sent_header(rec, &h);
    if (e != KETEN_OK) {
        return e;
    }
    if (ar->time < h->expires_at) {
        char at[40], exp[40];
        keten_time_iso(ar->time, at, sizeof at);
        keten_time_iso(h->expires_at, exp, sizeof exp);
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the record is dated %s, before the message expires at %s", at, exp);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    return e;
}

void keten_outbox_on_expired(keten_node *node, const Keten__ExpiredNotice *n)
{
    Keten__AuditRecord *ar = NULL;
    Keten__SentRecord *rec = NULL;
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
        const Keten__SentRecipient *r = recipient_entry(rec, ar->recipients[i]);
        if (r == NULL) {
            e = keten_err_set(
                KETEN_ERR_INCONSISTENT, "the record names %s, not a recipient", ar->recipients[i]);
        } else if (answered(r->state) && r->receipt_leaf < n->proof->leaf_index) {
            /* The broker expires only who never answered: this answer is
             * in its log before the record that says there was none. */
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "the record lists %s as never answering, but the log holds its %s at leaf %llu",
                r->id,
                r->state == KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED ? "receipt"
                                                                              : "refusal",
                (unsigned long long)r->receipt_leaf);
        }
    }
    if (e == KETEN_OK) {
        e = expired_in_time(rec, ar);
        if (e != KETEN_OK && e != KETEN_ERR_INCONSISTENT) {
            KETEN_LOG(KETEN_LOG_ERR, "cannot read the sent message of a notice; it comes again",
                "msg_id=%s detail=\"%s\"", hex, keten_err_detail());
            node->counters.store_errors++;
            goto out;
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
    for (size_t i = 0; i < ar->n_recipients; i++) {
        Keten__SentRecipient *r = recipient_entry(rec, ar->recipients[i]); /* checked above */
        if (r != NULL && !answered(r->state)
            && r->state != KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED) {
            r->state = KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED;
            if (e == KETEN_OK) {
                e = keten_events_receipt(node, txn, ar->msg_id.data, r->id, r->state);
            }
        }
    }
    if (e == KETEN_OK) {
        e = keten_nodestore_sent_put(node->store, txn, rec);
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
    keten_nodestore_sent_free(&rec);
    keten_pb_free((ProtobufCMessage **)(void *)&ar);
}

keten_err keten_outbox_note_reply(keten_node *node, MDB_txn *txn,
    const uint8_t query_id[static KETEN_MSG_ID_BYTES], const char *from,
    const uint8_t reply_id[static KETEN_MSG_ID_BYTES], uint64_t received_at)
{
    Keten__SentRecord *rec = NULL;
    keten_err e = keten_nodestore_sent_get(node->store, txn, query_id, &rec);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK; /* a reply to something we did not send: just a message */
    }
    if (e != KETEN_OK) {
        return e;
    }
    /* Appended to the unpacked record: freed with it. */
    Keten__SentReply **more = realloc(rec->replies, (rec->n_replies + 1) * sizeof *more);
    Keten__SentReply *one = malloc(sizeof *one);
    uint8_t *id = malloc(KETEN_MSG_ID_BYTES);
    char *who = strdup(from);
    if (more != NULL) {
        rec->replies = more;
    }
    if (more == NULL || one == NULL || id == NULL || who == NULL) {
        free(one);
        free(id);
        free(who);
        keten_nodestore_sent_free(&rec);
        return KETEN_ERR_NOMEM;
    }
    keten__sent_reply__init(one);
    memcpy(id, reply_id, KETEN_MSG_ID_BYTES);
    one->msg_id.data = id;
    one->msg_id.len = KETEN_MSG_ID_BYTES;
    one->from = who;
    one->received_at = received_at;
    rec->replies[rec->n_replies++] = one;
    Keten__SentRecipient *r = recipient_entry(rec, from);
    if (r != NULL) {
        r->replied = true;
    }
    e = keten_nodestore_sent_put(node->store, txn, rec);
    keten_nodestore_sent_free(&rec);
    return e;
}

keten_err keten_outbox_record(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    Keten__SentRecord **out)
{
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_nodestore_sent_get(node->store, txn, msg_id, out);
    }
    keten_store_abort(&txn);
    return e;
}
