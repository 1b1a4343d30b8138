#include "submit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "dirstate.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "policy.h"
#include "store.h"
#include "util.h"

static void set_detail(submit_prep *p, const char *fmt, ...) KETEN_PRINTF(2, 3);

static void set_detail(submit_prep *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof p->detail, fmt, ap);
    va_end(ap);
}

static Keten__Reason reason_of(keten_err e)
{
    switch (e) {
    case KETEN_ERR_TOO_LARGE:
        return KETEN__REASON__REASON_TOO_LARGE;
    case KETEN_ERR_BAD_SIGNATURE:
        return KETEN__REASON__REASON_BAD_SIGNATURE;
    case KETEN_ERR_WRONG_NETWORK:
        return KETEN__REASON__REASON_WRONG_NETWORK;
    case KETEN_ERR_REVOKED:
        return KETEN__REASON__REASON_REVOKED;
    case KETEN_ERR_UNKNOWN_NODE:
    case KETEN_ERR_EXPIRED: /* the sender's certificate at created_at */
    case KETEN_ERR_NOT_YET_VALID: /* idem */
        return KETEN__REASON__REASON_UNKNOWN_SENDER;
    default:
        return KETEN__REASON__REASON_MALFORMED;
    }
}

/* The msg_id of an envelope that did not verify, if one can be read. */
static void peek_msg_id(const uint8_t *env, size_t len, submit_prep *p)
{
    Keten__Envelope *e = NULL;
    Keten__Header *h = NULL;
    if (KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "envelope", &e) == KETEN_OK
        && KETEN_PB_UNPACK(
               keten__header, e->header.data, e->header.len, KETEN_ENVELOPE_MAX, "header", &h)
            == KETEN_OK
        && h->msg_id.len == KETEN_MSG_ID_BYTES) {
        memcpy(p->msg_id, h->msg_id.data, KETEN_MSG_ID_BYTES);
        p->has_msg_id = true;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    keten_err_clear();
}

/* Recipients, registration, policy: p->post and p->rule. */
static void check_routing(const broker *b, submit_prep *p)
{
    const keten_directory *dir = broker_dir(b);
    const Keten__Directory *doc = keten_directory_doc(dir);
    const Keten__Header *h = p->v->header;
    for (size_t i = 0; i < h->n_recipients; i++) {
        if (dirstate_node_cert(dir, h->recipients[i], NULL, b->now) == NULL) {
            p->post = KETEN__REASON__REASON_UNKNOWN_RECIPIENT;
            set_detail(p, "recipient '%s' is not a current node of directory version %llu",
                h->recipients[i], (unsigned long long)keten_directory_version(dir));
            return;
        }
    }
    if (!keten_directory_category_registered(dir, h->category)) {
        p->post = KETEN__REASON__REASON_UNREGISTERED;
        set_detail(p, "category '%s' is not registered in directory version %llu", h->category,
            (unsigned long long)keten_directory_version(dir));
        return;
    }
    if (!keten_directory_purpose_registered(dir, h->purpose)) {
        p->post = KETEN__REASON__REASON_UNREGISTERED;
        set_detail(p, "purpose '%s' is not registered in directory version %llu", h->purpose,
            (unsigned long long)keten_directory_version(dir));
        return;
    }
    /* Every recipient is evaluated, so that the decision recorded does not
     * depend on the order of the recipients: a refusal names an explicit
     * deny rule before the default (rule 0), the lowest such rule, and of
     * its recipients the first by id; an accepted message records the
     * lowest rule that allowed one of its recipients. */
    const Keten__NodeCert *from = p->v->sender;
    bool refused = false, allowed_any = false;
    uint32_t refuse_rule = 0, allow_rule = 0;
    const Keten__NodeCert *refused_to = NULL;
    for (size_t i = 0; i < h->n_recipients; i++) {
        const Keten__NodeCert *to = keten_directory_find_id(dir, h->recipients[i]);
        keten_policy_decision d = keten_policy_evaluate(
            doc, from->id, from->role, to->id, to->role, h->kind, h->category, h->purpose);
        if (!d.allowed) {
            bool better = !refused
                || (d.rule != 0 && (refuse_rule == 0 || d.rule < refuse_rule))
                || (d.rule == refuse_rule && strcmp(to->id, refused_to->id) < 0);
            if (better) {
                refuse_rule = d.rule;
                refused_to = to;
            }
            refused = true;
        } else if (!allowed_any || d.rule < allow_rule) {
            allow_rule = d.rule;
            allowed_any = true;
        }
    }
    if (refused) {
        p->post = KETEN__REASON__REASON_POLICY;
        p->rule = refuse_rule;
        set_detail(p, "policy rule %u refuses %s -> %s (%s, %s, %s)", refuse_rule, from->id,
            refused_to->id, keten_policy_kind_name(h->kind), h->category, h->purpose);
        return;
    }
    p->rule = allow_rule;
}

void submit_prepare(
    const broker *b, const conn *c, const uint8_t *env, size_t len, bool dir_fresh, submit_prep *p)
{
    memset(p, 0, sizeof *p);
    p->pre = KETEN__REASON__REASON_NONE;
    p->post = KETEN__REASON__REASON_NONE;
    const keten_directory *dir = broker_dir(b);
    if (!dir_fresh) {
        p->pre = KETEN__REASON__REASON_DIRECTORY_STALE;
        set_detail(p, "the broker's directory (version %llu) has expired; try again later",
            (unsigned long long)keten_directory_version(dir));
        peek_msg_id(env, len, p);
        return;
    }
    if (len > KETEN_ENVELOPE_MAX) {
        p->pre = KETEN__REASON__REASON_TOO_LARGE;
        set_detail(p, "envelope is %zu bytes; at most %u", len, KETEN_ENVELOPE_MAX);
        return;
    }
    keten_err e = keten_envelope_verify(dir, env, len, &p->v);
    if (e != KETEN_OK) {
        p->pre = reason_of(e);
        set_detail(p, "%s: %s", keten_err_str(e), keten_err_detail());
        if (e == KETEN_ERR_NOMEM) {
            KETEN_LOG(KETEN_LOG_ERR, "out of memory verifying an envelope", "node=%s", c->node);
        }
        peek_msg_id(env, len, p);
        return;
    }
    const Keten__Header *h = p->v->header;
    memcpy(p->msg_id, h->msg_id.data, KETEN_MSG_ID_BYTES);
    p->has_msg_id = true;
    if (strcmp(h->sender, c->node) != 0) {
        p->pre = KETEN__REASON__REASON_SENDER_MISMATCH;
        set_detail(
            p, "the envelope is signed by '%s' but this connection is '%s'", h->sender, c->node);
        return;
    }
    p->own_msg_id = true;
    uint64_t window = b->cfg->clock_window_ms;
    if (h->created_at > b->now + window || h->created_at + window < b->now) {
        p->pre = KETEN__REASON__REASON_CLOCK_SKEW;
        set_detail(p, "created_at is %lld ms from the broker's clock; the window is %llu ms",
            (long long)(h->created_at - b->now), (unsigned long long)window);
        return;
    }
    uint64_t max_life = keten_directory_doc(dir)->max_message_lifetime;
    if (max_life == 0) {
        max_life = KETEN_MAX_LIFETIME_DEFAULT_MS;
    }
    if (h->expires_at <= b->now) {
        p->pre = KETEN__REASON__REASON_EXPIRED;
        set_detail(
            p, "the message expired %llu ms ago", (unsigned long long)(b->now - h->expires_at));
        return;
    }
    if (h->expires_at - h->created_at > max_life) {
        p->pre = KETEN__REASON__REASON_EXPIRED;
        set_detail(p, "lifetime %llu ms is longer than the directory's maximum of %llu ms",
            (unsigned long long)(h->expires_at - h->created_at), (unsigned long long)max_life);
        return;
    }
    check_routing(b, p);
}

void submit_prep_clear(submit_prep *p)
{
    keten_envelope_verified_destroy(&p->v);
}

/* The msg_id a "rejected" record may carry (submit.h): the node's own,
 * naming no other envelope accepted before; NULL for none. */
static keten_err audited_msg_id(broker *b, const submit_prep *p, const uint8_t **out)
{
    *out = NULL;
    if (!p->own_msg_id || p->v == NULL) {
        return KETEN_OK;
    }
    store_seen seen;
    bool found = false;
    keten_err e = store_seen_get(b->st, b->txn, p->msg_id, &seen, &found);
    if (e != KETEN_OK) {
        return e;
    }
    if (!found || sodium_memcmp(seen.envelope_hash, p->v->envelope_hash, KETEN_HASH_BYTES) == 0) {
        *out = p->msg_id;
    }
    return KETEN_OK;
}

/* proof_leaf: for DUPLICATE of the very envelope accepted before, its
 * "submitted" leaf, whose proof the Error carries; else UINT64_MAX. A final
 * refusal whose "rejected" record names the msg_id carries the proof of
 * that record instead: the node records the refusal only with it. A passing
 * one (STORE_FULL, DIRECTORY_STALE) carries none: the node sends again. */
static keten_err reject(broker *b, conn *c, uint64_t request_id, const submit_prep *p,
    Keten__Reason reason, uint32_t rule, const char *detail, uint64_t proof_leaf)
{
    const uint8_t *msg_id = p->has_msg_id ? p->msg_id : NULL;
    const uint8_t *audited = NULL;
    keten_err e = audited_msg_id(b, p, &audited);
    if (e != KETEN_OK) {
        return e;
    }
    uint64_t leaf = 0;
    e = audit_rejected(b, audited, c->node, reason, rule, &leaf);
    if (e != KETEN_OK) {
        return e;
    }
    metrics_reject(b->m, reason);
    char idhex[KETEN_MSG_ID_HEX_BYTES] = "-";
    if (audited != NULL) {
        keten_hex(audited, KETEN_MSG_ID_BYTES, idhex);
    }
    const char *rname
        = protobuf_c_enum_descriptor_get_value(&keten__reason__descriptor, reason)->name;
    KETEN_LOG(KETEN_LOG_INFO, "submit refused", "node=%s msg_id=%s reason=%s rule=%u leaf=%llu",
        c->node, idhex, rname, reason == KETEN__REASON__REASON_POLICY ? rule : 0,
        (unsigned long long)leaf);
    if (proof_leaf != UINT64_MAX && msg_id != NULL) {
        return outq_duplicate(b->out, c, request_id, msg_id, detail, proof_leaf);
    }
    if (audited != NULL && reason != KETEN__REASON__REASON_STORE_FULL
        && reason != KETEN__REASON__REASON_DIRECTORY_STALE) {
        return outq_refused(b->out, c, request_id, reason, audited, detail, rule, leaf);
    }
    return outq_error(b->out, c, request_id, reason, msg_id, detail, rule);
}

static keten_err accept(broker *b, conn *c, uint64_t request_id, const uint8_t *env,
    size_t len, const submit_prep *p)
{
    const Keten__Header *h = p->v->header;
    uint64_t leaf = 0;
    keten_err e = audit_submitted(b, p->v, p->rule, &leaf);
    if (e != KETEN_OK) {
        return e;
    }
    store_msg m;
    memset(&m, 0, sizeof m);
    memcpy(m.msg_id, p->msg_id, KETEN_MSG_ID_BYTES);
    m.leaf = leaf;
    m.created_at = h->created_at;
    m.expires_at = h->expires_at;
    memcpy(m.envelope_hash, p->v->envelope_hash, KETEN_HASH_BYTES);
    memcpy(m.sender, h->sender, strlen(h->sender) + 1);
    m.n_rcpt = h->n_recipients;
    for (size_t i = 0; i < h->n_recipients; i++) {
        memcpy(m.rcpt[i].id, h->recipients[i], strlen(h->recipients[i]) + 1);
        m.rcpt[i].state = STORE_QUEUED;
    }
    if ((e = store_msg_accept(b->st, b->txn, &m, env, len, b->now)) != KETEN_OK) {
        return e;
    }
    /* Its proof against the batch's checkpoint is added at the batch's end. */
    e = outq_proof(b->out, c, request_id, OUTQ_SUBMIT_ACK, leaf);
    if (e != KETEN_OK) {
        return e;
    }
    for (size_t i = 0; i < h->n_recipients; i++) {
        conn *rc = conns_find_node(b->conns, h->recipients[i]);
        if (rc != NULL) {
            rc->more = true;
        }
    }
    metrics_submit(b->m);
    char idhex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(p->msg_id, KETEN_MSG_ID_BYTES, idhex);
    KETEN_LOG(KETEN_LOG_DEBUG, "submit accepted", "node=%s msg_id=%s leaf=%llu recipients=%zu",
        c->node, idhex, (unsigned long long)leaf, h->n_recipients);
    return KETEN_OK;
}

keten_err submit_apply(broker *b, conn *c, uint64_t request_id, const uint8_t *env,
    size_t len, const submit_prep *p)
{
    if (p->pre == KETEN__REASON__REASON_DIRECTORY_STALE) {
        return reject(b, c, request_id, p, p->pre, 0, p->detail, UINT64_MAX);
    }
    if (b->degraded) {
        return reject(b, c, request_id, p, KETEN__REASON__REASON_STORE_FULL, 0,
            store_full_detail(b->st), UINT64_MAX);
    }
    /* The sender's retry of the very envelope accepted before gets the
     * proof of its record even when the envelope is now outside the clock
     * window or expired: its ack was lost (a broker killed between commit
     * and ack, a long outage), and a refusal would tell the sender that a
     * message the log holds, and delivers, was refused. */
    bool timed
        = p->pre == KETEN__REASON__REASON_CLOCK_SKEW || p->pre == KETEN__REASON__REASON_EXPIRED;
    if (p->pre != KETEN__REASON__REASON_NONE && !timed) {
        return reject(b, c, request_id, p, p->pre, p->rule, p->detail, UINT64_MAX);
    }
    store_seen seen;
    bool found = false;
    keten_err e = store_seen_get(b->st, b->txn, p->msg_id, &seen, &found);
    if (e != KETEN_OK) {
        return e;
    }
    if (found && sodium_memcmp(seen.envelope_hash, p->v->envelope_hash, KETEN_HASH_BYTES) == 0) {
        return reject(b, c, request_id, p, KETEN__REASON__REASON_DUPLICATE, 0,
            "already accepted: this is the proof of its submitted record", seen.leaf);
    }
    if (timed) {
        return reject(b, c, request_id, p, p->pre, p->rule, p->detail, UINT64_MAX);
    }
    if (found) {
        return reject(b, c, request_id, p, KETEN__REASON__REASON_DUPLICATE, 0,
            "msg_id was used before for another envelope", UINT64_MAX);
    }
    if (p->post != KETEN__REASON__REASON_NONE) {
        return reject(b, c, request_id, p, p->post, p->rule, p->detail, UINT64_MAX);
    }
    /* The use was measured before the batch; count what it adds. */
    uint64_t need = (uint64_t)len + STORE_SUBMIT_OVERHEAD_BYTES;
    if (!store_fits(b->st, b->batch_bytes + need)) {
        return reject(b, c, request_id, p, KETEN__REASON__REASON_STORE_FULL, 0,
            store_full_detail(b->st), UINT64_MAX);
    }
    b->batch_bytes += need;
    return accept(b, c, request_id, env, len, p);
}
