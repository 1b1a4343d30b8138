/* broker_submit: the broker's submit path (broker/submit.h), on a minimal
 * broker (fixture_broker.h: real store, directory, checkpointer, audit log;
 * the connections and the batch set up by hand). Envelopes are sealed by
 * the fixture with real keys; the ones a sealer would never make are
 * changed and signed again with the sender's own key (fixture_forge.h).
 *
 * The directory: alpha may send anything to charlie (rule 1) and bravo
 * (rule 2), anyone woonfraude to anyone (rule 3); drugs from alpha to
 * charlie (rule 4) and to bravo (rule 5) are denied, and mensenhandel from
 * alpha to anyone (rule 6); echo is revoked.
 *
 * One accepted submit (its "submitted" record with the allowing rule, the
 * message stored and queued for each recipient, a SubmitAck slot proven at
 * the batch's end), and for every refusal reason its reject twin: an Error
 * frame with that reason (and the msg_id when it can be read), one
 * "rejected" record naming the connection's node, the reason, the msg_id
 * (only one the node signed and that names no other accepted envelope) and
 * (POLICY) the deciding rule, the reject counted, nothing stored.
 * The order of the checks (a stale directory first, a full store second,
 * the msg_id before recipients and policy) and the rule recorded for a
 * message to several recipients, the same in either recipient order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "fixture_broker.h"
#include "fixture_forge.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "store.h"
#include "submit.h"
#include "util.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", "bravo:police",
    "charlie:police", "delta:tax", "echo:municipality", NULL };

#define WOONFRAUDE "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"
#define DRUGS "{\"type\":\"drugs\",\"purpose\":\"handhaving\"}"
#define MENSENHANDEL "{\"type\":\"mensenhandel\",\"purpose\":\"handhaving\"}"
#define ADRESCHECK "{\"type\":\"adrescheck\",\"purpose\":\"handhaving\"}"

enum {
    RULE_TO_CHARLIE = 1,
    RULE_TO_BRAVO,
    RULE_WOONFRAUDE,
    RULE_NO_DRUGS_CHARLIE,
    RULE_NO_DRUGS_BRAVO,
    RULE_NO_MENSENHANDEL
};

typedef struct ctx {
    fixture *fx;
    fbroker *fb;
    uint8_t *echo_env; /* sealed while echo was current */
    size_t echo_len;
} ctx;

static void add_rule(fixture *fx, Keten__Effect effect, const char *from, const char *to,
    const char *categories, uint32_t want)
{
    uint32_t id = 0;
    assert_int_equal(
        keten_dirbuild_add_rule(fx->draft, effect, from, to, categories, NULL, NULL, &id),
        KETEN_OK);
    assert_int_equal(id, want);
}

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->echo_env = fixture_seal(t->fx, "echo", "bravo", WOONFRAUDE, NULL, &t->echo_len);
    /* Version 2: the rules above instead of the fixture's allow-all. */
    keten_dirbuild *d = t->fx->draft;
    assert_int_equal(keten_dirbuild_remove_rule(d, 1), KETEN_OK);
    add_rule(t->fx, KETEN__EFFECT__EFFECT_ALLOW, "alpha", "charlie", "*", RULE_TO_CHARLIE);
    add_rule(t->fx, KETEN__EFFECT__EFFECT_ALLOW, "alpha", "bravo", "*", RULE_TO_BRAVO);
    add_rule(t->fx, KETEN__EFFECT__EFFECT_ALLOW, "*", "*", "woonfraude", RULE_WOONFRAUDE);
    add_rule(t->fx, KETEN__EFFECT__EFFECT_DENY, "alpha", "charlie", "drugs", RULE_NO_DRUGS_CHARLIE);
    add_rule(t->fx, KETEN__EFFECT__EFFECT_DENY, "alpha", "bravo", "drugs", RULE_NO_DRUGS_BRAVO);
    add_rule(t->fx, KETEN__EFFECT__EFFECT_DENY, "alpha", "*", "mensenhandel", RULE_NO_MENSENHANDEL);
    assert_int_equal(
        keten_dirbuild_revoke(d, "echo", "left the covenant", keten_now_ms()), KETEN_OK);
    size_t len = 0;
    free(fixture_publish(t->fx, &len));
    t->fb = fbroker_new(t->fx, "hub");
    assert_int_equal(keten_directory_version(broker_dir(&t->fb->b)), 2);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    fbroker_destroy(&t->fb);
    free(t->echo_env);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

/* ---- running one submit -------------------------------------------------- */

typedef struct result {
    Keten__Reason reason; /* of the Error frame, or REASON_NONE if accepted */
    uint32_t rule; /* the record's rule */
    uint64_t leaf; /* the record's leaf */
    bool rec_msg_id; /* a rejected record names the msg_id (the envelope's, p.msg_id) */
    bool frame_msg_id; /* the Error frame names it */
    char detail[SUBMIT_DETAIL_MAX];
} result;

static bool is_seen(ctx *t, const uint8_t *msg_id)
{
    broker *b = &t->fb->b;
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    store_seen seen;
    bool found = false;
    assert_int_equal(store_seen_get(b->st, txn, msg_id, &seen, &found), KETEN_OK);
    store_abort(&txn);
    return found;
}

/* Submit env on c in a batch of its own; check what every outcome has in
 * common (one record, one frame for c, the reject counted) and return it. */
static result submit(ctx *t, conn *c, const uint8_t *env, size_t len, bool fresh)
{
    fbroker *fb = t->fb;
    broker *b = &fb->b;
    result r;
    memset(&r, 0, sizeof r);
    outq_clear(b->out);
    fbroker_begin(fb);
    uint64_t size0 = fbroker_log_size(fb);
    uint64_t submits0 = atomic_load(&b->m->submits);
    submit_prep p;
    submit_prepare(b, c, env, len, fresh, &p);
    assert_int_equal(submit_apply(b, c, 77, env, len, &p), KETEN_OK);
    assert_int_equal(fbroker_log_size(fb), size0 + 1);
    assert_int_equal(b->out->n, 1);
    const outq_item *it = &b->out->v[0];
    assert_int_equal(it->rid_len, strlen(c->node));
    assert_memory_equal(it->rid, c->node, it->rid_len);
    Keten__AuditRecord *rec = fbroker_record(fb, size0);
    r.leaf = size0;
    r.rule = rec->rule;
    assert_string_equal(rec->sender, c->node);
    if (rec->event == KETEN__EVENT__EVENT_SUBMITTED) {
        r.reason = KETEN__REASON__REASON_NONE;
        assert_int_equal(it->kind, OUTQ_SUBMIT_ACK);
        assert_int_equal(it->leaf, size0);
        assert_int_equal(it->request_id, 77);
        assert_int_equal(atomic_load(&b->m->submits), submits0 + 1);
        assert_memory_equal(rec->msg_id.data, p.msg_id, KETEN_MSG_ID_BYTES);
    } else {
        assert_int_equal(rec->event, KETEN__EVENT__EVENT_REJECTED);
        r.reason = rec->reason;
        assert_int_equal(atomic_load(&b->m->submits), submits0);
        /* The record names a msg_id only when the node signed it (submit.h);
         * then it is the envelope's. */
        r.rec_msg_id = rec->msg_id.len != 0;
        if (r.rec_msg_id) {
            assert_true(p.own_msg_id);
            assert_int_equal(rec->msg_id.len, KETEN_MSG_ID_BYTES);
            assert_memory_equal(rec->msg_id.data, p.msg_id, KETEN_MSG_ID_BYTES);
        }
        r.frame_msg_id = p.has_msg_id;
        /* A final refusal whose record names the msg_id is a proof slot of
         * that record, with its reason and rule; DUPLICATE of the very
         * envelope, of the submitted record. */
        bool passing = r.reason == KETEN__REASON__REASON_STORE_FULL
            || r.reason == KETEN__REASON__REASON_DIRECTORY_STALE;
        if (r.rec_msg_id && !passing && it->kind != OUTQ_DUPLICATE) {
            assert_int_equal(it->kind, OUTQ_REFUSED);
            assert_int_equal(it->leaf, size0);
            assert_int_equal(it->request_id, 77);
            assert_int_equal(it->reason, r.reason);
            assert_int_equal(it->rule, r.reason == KETEN__REASON__REASON_POLICY ? r.rule : 0);
            assert_memory_equal(it->msg_id, p.msg_id, KETEN_MSG_ID_BYTES);
        }
        if (it->kind == OUTQ_DUPLICATE || it->kind == OUTQ_REFUSED) {
            snprintf(r.detail, sizeof r.detail, "%s", (const char *)it->data);
        } else {
            assert_true(!r.rec_msg_id || passing);
            assert_int_equal(it->kind, OUTQ_READY);
            Keten__Frame *f = fbroker_frame(fb, 0);
            assert_int_equal(f->body_case, KETEN__FRAME__BODY_ERROR);
            assert_int_equal(f->request_id, 77);
            assert_int_equal(f->error->reason, r.reason);
            assert_int_equal(f->error->rule, r.reason == KETEN__REASON__REASON_POLICY ? r.rule : 0);
            assert_int_equal(f->error->msg_id.len, p.has_msg_id ? KETEN_MSG_ID_BYTES : 0);
            assert_true(f->error->detail[0] != '\0');
            snprintf(r.detail, sizeof r.detail, "%s", f->error->detail);
            keten_pb_free((ProtobufCMessage **)(void *)&f);
        }
        if (r.reason != KETEN__REASON__REASON_POLICY) {
            assert_int_equal(r.rule, 0);
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    fbroker_end(fb);
    submit_prep_clear(&p);
    return r;
}

/* The msg_id of bytes that parse as an envelope with a header. */
static bool readable_msg_id(const uint8_t *env, size_t len, uint8_t id[KETEN_MSG_ID_BYTES])
{
    Keten__Envelope *e = NULL;
    Keten__Header *h = NULL;
    bool ok
        = KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "envelope", &e) == KETEN_OK
        && KETEN_PB_UNPACK(
               keten__header, e->header.data, e->header.len, KETEN_ENVELOPE_MAX, "header", &h)
            == KETEN_OK
        && h->msg_id.len == KETEN_MSG_ID_BYTES;
    if (ok) {
        memcpy(id, h->msg_id.data, KETEN_MSG_ID_BYTES);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    keten_err_clear();
    return ok;
}

/* A refusal with reason; nothing of the message is stored (its msg_id is
 * as held, or not, as before). */
static result expect_reject(
    ctx *t, conn *c, const uint8_t *env, size_t len, bool fresh, Keten__Reason reason)
{
    uint8_t id[KETEN_MSG_ID_BYTES];
    bool has_id = readable_msg_id(env, len, id);
    bool seen_before = has_id && is_seen(t, id);
    uint64_t rejects0 = atomic_load(&t->fb->b.m->rejects[reason]);
    result r = submit(t, c, env, len, fresh);
    assert_int_equal(r.reason, reason);
    assert_int_equal(atomic_load(&t->fb->b.m->rejects[reason]), rejects0 + 1);
    if (has_id) {
        assert_int_equal(is_seen(t, id), seen_before);
    }
    return r;
}

static uint8_t *seal(ctx *t, const char *from, const char *to, const char *json, size_t *len)
{
    t->fb->b.now = keten_now_ms();
    return fixture_seal(t->fx, from, to, json, NULL, len);
}

/* ---- accepted ------------------------------------------------------------- */

static void test_accept(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    bravo->more = false;
    size_t len = 0;
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t *env = seal(t, "alpha", "bravo,charlie", WOONFRAUDE, &len);
    forge_msg_id(env, len, msg_id);
    result r = submit(t, alpha, env, len, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
    assert_int_equal(r.rule, RULE_TO_CHARLIE); /* the lowest allowing rule of any recipient */
    assert_true(bravo->more); /* the recipient's connection looks at its queue again */

    Keten__AuditRecord *rec = fbroker_record(t->fb, r.leaf);
    assert_string_equal(rec->sender, "alpha");
    assert_int_equal(rec->n_recipients, 2);
    assert_string_equal(rec->category, "woonfraude");
    assert_int_equal(rec->envelope_hash.len, KETEN_HASH_BYTES);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);

    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    store_msg m;
    bool found = false;
    assert_int_equal(store_msg_find(b->st, txn, msg_id, &m, &found), KETEN_OK);
    assert_true(found);
    assert_int_equal(m.leaf, r.leaf);
    assert_int_equal(m.n_rcpt, 2);
    assert_string_equal(m.rcpt[0].id, "bravo");
    assert_int_equal(m.rcpt[0].state, STORE_QUEUED);
    const uint8_t *stored = NULL;
    size_t stored_len = 0;
    assert_int_equal(store_envelope_get(b->st, txn, r.leaf, &stored, &stored_len), KETEN_OK);
    assert_int_equal(stored_len, len);
    assert_memory_equal(stored, env, len);
    store_abort(&txn);

    /* The batch's end proved the slot: a checkpoint for alpha, then the
     * SubmitAck with the proof of the "submitted" record. */
    size_t cp = fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_CHECKPOINT);
    size_t ack = fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_SUBMIT_ACK);
    assert_true(cp != SIZE_MAX && ack != SIZE_MAX && cp < ack);
    Keten__Frame *f = fbroker_frame(t->fb, ack);
    assert_int_equal(f->request_id, 77);
    assert_int_equal(f->submit_ack->proof->leaf_index, r.leaf);
    assert_int_equal(f->submit_ack->proof->tree_size, fbroker_log_size(t->fb));
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    free(env);
}

/* Accepted with the same rule whatever the order of the recipients. */
static void test_accept_rule_independent_of_order(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    const char *orders[] = { "bravo,charlie", "charlie,bravo" };
    for (size_t i = 0; i < 2; i++) {
        size_t len = 0;
        uint8_t *env = seal(t, "alpha", orders[i], WOONFRAUDE, &len);
        result r = submit(t, alpha, env, len, true);
        assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
        assert_int_equal(r.rule, RULE_TO_CHARLIE);
        free(env);
    }
    /* One recipient: its own lowest allowing rule. */
    size_t len = 0;
    uint8_t *env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);
    result r = submit(t, alpha, env, len, true);
    assert_int_equal(r.rule, RULE_TO_BRAVO);
    free(env);
}

/* ---- every refusal ----------------------------------------------------------- */

static void set_network(Keten__Header *h, void *arg)
{
    (void)arg;
    h->network = (char *)"othernet";
}

static void set_sender(Keten__Header *h, void *arg)
{
    h->sender = arg;
}

static void set_category(Keten__Header *h, void *arg)
{
    h->category = arg;
}

static void set_purpose(Keten__Header *h, void *arg)
{
    h->purpose = arg;
}

static void set_recipients(Keten__Header *h, void *arg)
{
    static char *two[2];
    two[0] = (char *)"bravo";
    two[1] = arg;
    h->recipients = two;
    h->n_recipients = 2;
}

static void set_lifetime(Keten__Header *h, void *arg)
{
    h->expires_at = h->created_at + *(const uint64_t *)arg;
}

static void set_created_later(Keten__Header *h, void *arg)
{
    (void)arg;
    h->created_at += 1;
}

/* Before the envelope is read: a stale directory, the size cap, bytes that
 * are no envelope, a header that breaks the rules. */
static void test_reject_unread(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    size_t len = 0;
    uint8_t *env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);
    result r = expect_reject(t, alpha, env, len, false, KETEN__REASON__REASON_DIRECTORY_STALE);
    assert_non_null(strstr(r.detail, "expired"));
    assert_true(r.frame_msg_id); /* read, for alpha's outbox */
    assert_false(r.rec_msg_id); /* not verified: not audited */

    uint8_t *big = calloc(1, KETEN_ENVELOPE_MAX + 1);
    assert_non_null(big);
    r = expect_reject(t, alpha, big, KETEN_ENVELOPE_MAX + 1, true, KETEN__REASON__REASON_TOO_LARGE);
    /* Twin: exactly KETEN_ENVELOPE_MAX bytes pass the size check and are
     * judged by the next one (zeros do not parse). */
    r = expect_reject(t, alpha, big, KETEN_ENVELOPE_MAX, true, KETEN__REASON__REASON_MALFORMED);
    free(big);

    static const uint8_t junk[] = "this is not an envelope at all";
    expect_reject(t, alpha, junk, sizeof junk, true, KETEN__REASON__REASON_MALFORMED);

    uint64_t zero = 0; /* expires_at == created_at */
    size_t flen = 0;
    uint8_t *forged
        = forge_envelope(env, len, fixture_node(t->fx, "alpha"), set_lifetime, &zero, &flen);
    expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_MALFORMED);
    free(forged);

    /* Twin: the envelope itself is accepted. */
    r = submit(t, alpha, env, len, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
    free(env);
}

/* Who signed it: an unknown or revoked sender, a signature that does not
 * hold, another network, another node than the connection's. */
static void test_reject_sender(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    conn *echo = fbroker_conn_hello(t->fb, "echo");
    keten_identity *alpha_id = fixture_node(t->fx, "alpha");
    size_t len = 0, flen = 0;
    uint8_t *env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);

    uint8_t *forged = forge_envelope(env, len, alpha_id, set_sender, (void *)"zulu", &flen);
    expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_UNKNOWN_SENDER);
    free(forged);

    expect_reject(t, echo, t->echo_env, t->echo_len, true, KETEN__REASON__REASON_REVOKED);

    forged = forge_flip_ciphertext(env, len, &flen);
    expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_BAD_SIGNATURE);
    free(forged);
    /* Signed by bravo's key under alpha's name. */
    forged = forge_envelope(env, len, fixture_node(t->fx, "bravo"), NULL, NULL, &flen);
    expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_BAD_SIGNATURE);
    free(forged);

    forged = forge_envelope(env, len, alpha_id, set_network, NULL, &flen);
    expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_WRONG_NETWORK);
    free(forged);

    result r = expect_reject(t, bravo, env, len, true, KETEN__REASON__REASON_SENDER_MISMATCH);
    assert_non_null(strstr(r.detail, "'alpha'"));
    assert_false(r.rec_msg_id); /* alpha's msg_id, not bravo's: not audited */

    /* Twin: on its own connection, signed by its sender, it goes. */
    r = submit(t, alpha, env, len, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
    free(env);
}

/* When sealed, as the envelope's header says. */
static uint64_t created_at(const uint8_t *env, size_t len)
{
    Keten__Envelope *e = NULL;
    Keten__Header *h = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "envelope", &e), KETEN_OK);
    assert_int_equal(KETEN_PB_UNPACK(keten__header, e->header.data, e->header.len,
                         KETEN_ENVELOPE_MAX, "header", &h),
        KETEN_OK);
    uint64_t at = h->created_at;
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    return at;
}

/* When: outside the clock window either way, expired, too long a life; each
 * twin a message of its own (an accepted msg_id is a DUPLICATE after). */
static void test_reject_time(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    keten_identity *alpha_id = fixture_node(t->fx, "alpha");
    uint64_t window = b->cfg->clock_window_ms;
    size_t len = 0, flen = 0;

    uint8_t *env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);
    uint64_t at = created_at(env, len);
    b->now = at + window + 1;
    result r = expect_reject(t, alpha, env, len, true, KETEN__REASON__REASON_CLOCK_SKEW);
    b->now = at - window - 1;
    r = expect_reject(t, alpha, env, len, true, KETEN__REASON__REASON_CLOCK_SKEW);
    b->now = at + window; /* twin: at the window's edge */
    r = submit(t, alpha, env, len, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
    free(env);

    uint64_t short_life = 1000;
    env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);
    at = created_at(env, len);
    uint8_t *forged = forge_envelope(env, len, alpha_id, set_lifetime, &short_life, &flen);
    b->now = at + short_life; /* expires_at <= now */
    r = expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_EXPIRED);
    b->now = at + short_life - 1; /* twin: a millisecond before */
    r = submit(t, alpha, forged, flen, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
    free(forged);
    free(env);

    uint64_t too_long = KETEN_MAX_LIFETIME_DEFAULT_MS + 1;
    env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);
    forged = forge_envelope(env, len, alpha_id, set_lifetime, &too_long, &flen);
    r = expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_EXPIRED);
    assert_non_null(strstr(r.detail, "lifetime"));
    free(forged);
    uint64_t longest = KETEN_MAX_LIFETIME_DEFAULT_MS;
    forged = forge_envelope(env, len, alpha_id, set_lifetime, &longest, &flen);
    r = submit(t, alpha, forged, flen, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
    free(forged);
    free(env);
}

/* To whom and what: a recipient that is no node, a category or purpose that
 * is not registered, the policy (default deny). */
static void test_reject_routing(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    keten_identity *alpha_id = fixture_node(t->fx, "alpha");
    size_t len = 0, flen = 0;
    uint8_t *env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);

    uint8_t *forged = forge_envelope(env, len, alpha_id, set_recipients, (void *)"zulu", &flen);
    result r = expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_UNKNOWN_RECIPIENT);
    assert_non_null(strstr(r.detail, "'zulu'"));
    free(forged);
    /* The broker is no recipient either. */
    forged = forge_envelope(env, len, alpha_id, set_recipients, (void *)"hub", &flen);
    expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_UNKNOWN_RECIPIENT);
    free(forged);

    forged = forge_envelope(env, len, alpha_id, set_category, (void *)"vervoer", &flen);
    r = expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_UNREGISTERED);
    assert_non_null(strstr(r.detail, "category"));
    free(forged);
    forged = forge_envelope(env, len, alpha_id, set_purpose, (void *)"nieuwsgierigheid", &flen);
    r = expect_reject(t, alpha, forged, flen, true, KETEN__REASON__REASON_UNREGISTERED);
    assert_non_null(strstr(r.detail, "purpose"));
    free(forged);

    /* No rule lets alpha send delta an adrescheck: the default (rule 0). */
    size_t dlen = 0;
    uint8_t *to_delta = seal(t, "alpha", "delta", ADRESCHECK, &dlen);
    r = expect_reject(t, alpha, to_delta, dlen, true, KETEN__REASON__REASON_POLICY);
    assert_int_equal(r.rule, 0);
    free(to_delta);
    /* The batch's end made the slot the Error with the proof of its
     * rejected record, whose msg_id, reason and rule it repeats. */
    Keten__Frame *f
        = fbroker_frame(t->fb, fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_ERROR));
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_POLICY);
    assert_int_equal(f->error->msg_id.len, KETEN_MSG_ID_BYTES);
    assert_non_null(f->error->proof);
    assert_int_equal(f->error->proof->leaf_index, r.leaf);
    assert_true(f->error->proof->tree_size > r.leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&f);

    r = submit(t, alpha, env, len, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
    free(env);
}

/* A full store: refused (degraded batch, or no room for this message),
 * second only to a stale directory; twin: room again, accepted. */
static void test_reject_store_full(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    size_t len = 0;
    uint8_t *env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);
    size_t bad_len = 0;
    uint8_t *bad = forge_flip_ciphertext(env, len, &bad_len);

    atomic_store(&b->st->full, true); /* what store_room() found */
    expect_reject(t, alpha, env, len, true, KETEN__REASON__REASON_STORE_FULL);
    expect_reject(t, alpha, bad, bad_len, true, KETEN__REASON__REASON_STORE_FULL);
    expect_reject(t, alpha, env, len, false, KETEN__REASON__REASON_DIRECTORY_STALE);
    atomic_store(&b->st->full, false);

    uint64_t used = atomic_load(&b->st->used);
    atomic_store(&b->st->used, b->st->map_size - b->st->reserve - len);
    expect_reject(t, alpha, env, len, true, KETEN__REASON__REASON_STORE_FULL);
    atomic_store(&b->st->used, used);
    result r = submit(t, alpha, env, len, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);
    free(bad);
    free(env);
}

/* A msg_id held before: the same envelope gets DUPLICATE with the proof of
 * its original record; another envelope under it gets DUPLICATE without.
 * The msg_id check comes after the envelope's own checks and before the
 * recipients and policy. */
static void test_reject_duplicate(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    keten_identity *alpha_id = fixture_node(t->fx, "alpha");
    size_t len = 0, flen = 0;
    uint8_t *env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);
    result first = submit(t, alpha, env, len, true);
    assert_int_equal(first.reason, KETEN__REASON__REASON_NONE);

    outq_clear(t->fb->b.out);
    result r = expect_reject(t, alpha, env, len, true, KETEN__REASON__REASON_DUPLICATE);
    /* submit() ended the batch: the slot became an Error with the proof. */
    size_t i = fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_ERROR);
    assert_true(i != SIZE_MAX);
    Keten__Frame *f = fbroker_frame(t->fb, i);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_DUPLICATE);
    assert_non_null(f->error->proof);
    assert_int_equal(f->error->proof->leaf_index, first.leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_non_null(strstr(r.detail, "already accepted"));

    uint8_t *other = forge_envelope(env, len, alpha_id, set_created_later, NULL, &flen);
    r = expect_reject(t, alpha, other, flen, true, KETEN__REASON__REASON_DUPLICATE);
    assert_non_null(strstr(r.detail, "another envelope"));
    f = fbroker_frame(t->fb, fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_ERROR));
    assert_null(f->error->proof);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    free(other);

    /* The very envelope again long after its ack was lost (a broker killed
     * between commit and ack, down for longer than the clock window):
     * outside the clock window, then expired. It is still answered with
     * the proof of its record (it used to be refused CLOCK_SKEW, then
     * EXPIRED: its sender was told "refused" of a message the log holds
     * and delivers). Twin: another envelope under that msg_id, outside the
     * window, is refused for its clock. */
    broker *b = &t->fb->b;
    uint64_t now = b->now;
    uint64_t later[2] = { created_at(env, len) + b->cfg->clock_window_ms + 1,
        created_at(env, len) + KETEN_MAX_LIFETIME_DEFAULT_MS };
    for (size_t k = 0; k < 2; k++) {
        b->now = later[k];
        outq_clear(b->out);
        r = expect_reject(t, alpha, env, len, true, KETEN__REASON__REASON_DUPLICATE);
        assert_non_null(strstr(r.detail, "already accepted"));
        f = fbroker_frame(t->fb, fbroker_find(t->fb, 0, "alpha", KETEN__FRAME__BODY_ERROR));
        assert_int_equal(f->error->reason, KETEN__REASON__REASON_DUPLICATE);
        assert_non_null(f->error->proof);
        assert_int_equal(f->error->proof->leaf_index, first.leaf);
        keten_pb_free((ProtobufCMessage **)(void *)&f);
    }
    b->now = later[0] + 1; /* created 1 ms later: past its window too */
    other = forge_envelope(env, len, alpha_id, set_created_later, NULL, &flen);
    r = expect_reject(t, alpha, other, flen, true, KETEN__REASON__REASON_CLOCK_SKEW);
    free(other);
    b->now = now;

    /* After the envelope's checks, before the recipients' and policy's. */
    uint8_t *bad = forge_flip_ciphertext(env, len, &flen);
    expect_reject(t, alpha, bad, flen, true, KETEN__REASON__REASON_BAD_SIGNATURE);
    free(bad);
    uint8_t *ghost = forge_envelope(env, len, alpha_id, set_recipients, (void *)"zulu", &flen);
    expect_reject(t, alpha, ghost, flen, true, KETEN__REASON__REASON_DUPLICATE);
    free(ghost);
    free(env);
}

/* The msg_id of a rejected record. A node that learned another party's
 * msg_id (bravo is the recipient of alpha's message) cannot attach a
 * "rejected" record to that message: alpha's envelope tampered, relayed, or
 * signed again by bravo as its own (refused as a DUPLICATE of another
 * envelope, or before that check for its clock) is audited without msg_id,
 * though bravo's Error names the msg_id it sent. Twins: alpha's very
 * envelope sent again, and bravo's own envelopes refused before they were
 * ever accepted, are audited with their msg_id. */
static void test_reject_msg_id_attribution(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    keten_identity *bravo_id = fixture_node(t->fx, "bravo");
    size_t len = 0, flen = 0;
    uint8_t *env = seal(t, "alpha", "bravo", WOONFRAUDE, &len);
    result r = submit(t, alpha, env, len, true);
    assert_int_equal(r.reason, KETEN__REASON__REASON_NONE);

    uint8_t *forged = forge_flip_ciphertext(env, len, &flen);
    r = expect_reject(t, bravo, forged, flen, true, KETEN__REASON__REASON_BAD_SIGNATURE);
    assert_false(r.rec_msg_id);
    assert_true(r.frame_msg_id);
    free(forged);

    r = expect_reject(t, bravo, env, len, true, KETEN__REASON__REASON_SENDER_MISMATCH);
    assert_false(r.rec_msg_id);
    assert_true(r.frame_msg_id);

    /* Signed by bravo as its own, under alpha's msg_id. */
    forged = forge_envelope(env, len, bravo_id, set_sender, (void *)"bravo", &flen);
    r = expect_reject(t, bravo, forged, flen, true, KETEN__REASON__REASON_DUPLICATE);
    assert_non_null(strstr(r.detail, "another envelope"));
    assert_false(r.rec_msg_id);
    assert_true(r.frame_msg_id);
    uint64_t now = b->now;
    b->now = created_at(env, len) + b->cfg->clock_window_ms + 1;
    r = expect_reject(t, bravo, forged, flen, true, KETEN__REASON__REASON_CLOCK_SKEW);
    assert_false(r.rec_msg_id);
    b->now = now;
    free(forged);

    /* Twins: alpha's very envelope again; bravo's own, never accepted. */
    r = expect_reject(t, alpha, env, len, true, KETEN__REASON__REASON_DUPLICATE);
    assert_true(r.rec_msg_id);
    free(env);
    env = seal(t, "bravo", "alpha", WOONFRAUDE, &len);
    b->now = created_at(env, len) + b->cfg->clock_window_ms + 1;
    r = expect_reject(t, bravo, env, len, true, KETEN__REASON__REASON_CLOCK_SKEW);
    assert_true(r.rec_msg_id);
    b->now = now;
    free(env);
    env = seal(t, "bravo", "charlie", DRUGS, &len);
    r = expect_reject(t, bravo, env, len, true, KETEN__REASON__REASON_POLICY);
    assert_true(r.rec_msg_id);
    free(env);
}

/* ---- the policy rule recorded -------------------------------------------------- */

static void expect_policy(
    ctx *t, conn *c, const char *to, const char *json, uint32_t rule, const char *names)
{
    size_t len = 0;
    uint8_t *env = seal(t, "alpha", to, json, &len);
    result r = expect_reject(t, c, env, len, true, KETEN__REASON__REASON_POLICY);
    assert_int_equal(r.rule, rule);
    /* The Error sent at the batch's end names the rule and proves the
     * rejected record that names it. */
    Keten__Frame *f
        = fbroker_frame(t->fb, fbroker_find(t->fb, 0, c->node, KETEN__FRAME__BODY_ERROR));
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_POLICY);
    assert_int_equal(f->error->rule, rule);
    assert_non_null(f->error->proof);
    assert_int_equal(f->error->proof->leaf_index, r.leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    char want[64];
    snprintf(want, sizeof want, "alpha -> %s ", names);
    if (strstr(r.detail, want) == NULL) {
        fail_msg("to %s: detail '%s' does not name %s", to, r.detail, names);
    }
    free(env);
}

static void test_policy_rule_independent_of_order(void **state)
{
    ctx *t = *state;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    /* Two deny rules: the lowest, whichever recipient comes first. */
    expect_policy(t, alpha, "bravo,charlie", DRUGS, RULE_NO_DRUGS_CHARLIE, "charlie");
    expect_policy(t, alpha, "charlie,bravo", DRUGS, RULE_NO_DRUGS_CHARLIE, "charlie");
    /* One deny rule for both: its first recipient by id. */
    expect_policy(t, alpha, "charlie,bravo", MENSENHANDEL, RULE_NO_MENSENHANDEL, "bravo");
    expect_policy(t, alpha, "bravo,charlie", MENSENHANDEL, RULE_NO_MENSENHANDEL, "bravo");
    /* An explicit deny before the default deny (rule 0) of another. */
    expect_policy(t, alpha, "delta,bravo", DRUGS, RULE_NO_DRUGS_BRAVO, "bravo");
    expect_policy(t, alpha, "bravo,delta", DRUGS, RULE_NO_DRUGS_BRAVO, "bravo");
    expect_policy(t, alpha, "delta", DRUGS, 0, "delta");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_rule_independent_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_unread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_sender, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_store_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_msg_id_attribution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_rule_independent_of_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
