/*
 * test_dirbuild.c - the administrators' draft: enrollment of real, signed
 * requests, rotation, revocation, registered values, policy rules,
 * administrator changes, finishing and advancing, and the saved form. Every
 * refused edit is checked to leave the draft byte-for-byte unchanged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirbuild.h"
#include "directory.h"
#include "identity.h"
#include "pb.h"
#include "util.h"

#define DAY KETEN_MS_PER_DAY
#define N_ADMINS 3
#define NETWORK "testnet"

typedef struct ctx {
    uint8_t admin_pk[N_ADMINS][KETEN_SIGN_PK_BYTES];
    uint8_t *admin_sk[N_ADMINS];
    keten_dirbuild *b;
    uint64_t now;
} ctx;

#define ADMINS(a) ((const uint8_t(*)[KETEN_SIGN_PK_BYTES])(a))

static int setup(void **state)
{
    if (sodium_init() < 0) {
        return -1;
    }
    ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -1;
    }
    for (size_t i = 0; i < N_ADMINS; i++) {
        c->admin_sk[i] = sodium_malloc(KETEN_SIGN_SK_BYTES);
        if (c->admin_sk[i] == NULL || crypto_sign_keypair(c->admin_pk[i], c->admin_sk[i]) != 0) {
            return -1;
        }
    }
    if (keten_dirbuild_new(NETWORK, ADMINS(c->admin_pk), N_ADMINS, 2, &c->b) != KETEN_OK) {
        return -1;
    }
    if (keten_dirbuild_register(c->b, "woonfraude", "handhaving") != KETEN_OK
        || keten_dirbuild_register(c->b, "drugs", NULL) != KETEN_OK) {
        return -1;
    }
    c->now = keten_now_ms();
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    keten_dirbuild_destroy(&c->b);
    for (size_t i = 0; i < N_ADMINS; i++) {
        sodium_free(c->admin_sk[i]);
    }
    free(c);
    return 0;
}

/* A fresh identity and its verified request. */
typedef struct member {
    keten_identity *id;
    Keten__NodeRequest *req;
} member;

static member member_new(const char *id, const char *role, const char *network)
{
    member m = { 0 };
    assert_int_equal(
        keten_identity_generate(id, role, "Organisatie", strcmp(role, "broker") == 0, &m.id),
        KETEN_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(keten_identity_request(m.id, network, keten_now_ms(), &buf, &len), KETEN_OK);
    assert_int_equal(keten_identity_request_verify(buf, len, &m.req), KETEN_OK);
    free(buf);
    return m;
}

static void member_free(member *m)
{
    keten_identity_destroy(&m->id);
    keten_pb_free((ProtobufCMessage **)(void *)&m->req);
}

/* The saved form of the draft, for before/after comparisons. */
typedef struct snapshot {
    uint8_t *buf;
    size_t len;
} snapshot;

static snapshot snap(const keten_dirbuild *b)
{
    snapshot s = { NULL, 0 };
    assert_int_equal(keten_dirbuild_save(b, &s.buf, &s.len), KETEN_OK);
    return s;
}

static void assert_unchanged(const keten_dirbuild *b, snapshot *before)
{
    snapshot after = snap(b);
    assert_int_equal(after.len, before->len);
    assert_memory_equal(after.buf, before->buf, before->len);
    free(after.buf);
    free(before->buf);
    before->buf = NULL;
}

/* Run a refused edit: the exact error, and the draft unchanged. */
#define REFUSED(c, call, want)                                                                     \
    do {                                                                                           \
        snapshot before_ = snap((c)->b);                                                           \
        assert_int_equal((call), (want));                                                          \
        assert_unchanged((c)->b, &before_);                                                        \
    } while (0)

static const Keten__NodeCert *node(const keten_dirbuild *b, const char *id)
{
    const Keten__Directory *d = keten_dirbuild_doc(b);
    for (size_t i = 0; i < d->n_nodes; i++) {
        if (strcmp(d->nodes[i]->id, id) == 0) {
            return d->nodes[i];
        }
    }
    fail_msg("no current certificate for '%s' in the draft", id);
    abort(); /* not reached: fail_msg leaves the test */
}

/* ---- tests ---------------------------------------------------------------- */

static void test_new(void **state)
{
    ctx *c = *state;
    keten_dirbuild *b = NULL;
    assert_int_equal(keten_dirbuild_new(NETWORK, ADMINS(c->admin_pk), N_ADMINS, 2, &b), KETEN_OK);
    const Keten__Directory *d = keten_dirbuild_doc(b);
    assert_string_equal(d->network, NETWORK);
    assert_int_equal(d->version, 1);
    assert_int_equal(d->next_serial, 1);
    assert_int_equal(d->threshold, 2);
    assert_int_equal(d->n_admins, N_ADMINS);
    for (size_t i = 0; i < N_ADMINS; i++) {
        assert_memory_equal(d->admins[i].data, c->admin_pk[i], KETEN_SIGN_PK_BYTES);
    }
    assert_int_equal(d->max_message_lifetime, KETEN_MAX_LIFETIME_DEFAULT_MS);
    assert_int_equal(d->previous_hash.len, 0);
    assert_int_equal(d->n_nodes, 0);
    assert_int_equal(d->n_rules, 0);
    keten_dirbuild_destroy(&b);
    assert_null(b);
    keten_dirbuild_destroy(&b);
    keten_dirbuild_destroy(NULL);

    /* Reject twins. */
    assert_int_equal(
        keten_dirbuild_new("Test Net", ADMINS(c->admin_pk), N_ADMINS, 2, &b), KETEN_ERR_BAD_NAME);
    assert_int_equal(
        keten_dirbuild_new("", ADMINS(c->admin_pk), N_ADMINS, 2, &b), KETEN_ERR_BAD_NAME);
    assert_int_equal(
        keten_dirbuild_new(NULL, ADMINS(c->admin_pk), N_ADMINS, 2, &b), KETEN_ERR_BAD_NAME);
    assert_int_equal(
        keten_dirbuild_new(NETWORK, ADMINS(c->admin_pk), N_ADMINS, 0, &b), KETEN_ERR_INVALID);
    assert_int_equal(
        keten_dirbuild_new(NETWORK, ADMINS(c->admin_pk), N_ADMINS, 4, &b), KETEN_ERR_INVALID);
    assert_int_equal(keten_dirbuild_new(NETWORK, ADMINS(c->admin_pk), 0, 0, &b), KETEN_ERR_INVALID);
    assert_int_equal(keten_dirbuild_new(NETWORK, NULL, 1, 1, &b), KETEN_ERR_INVALID);
    assert_int_equal(keten_dirbuild_new(NETWORK, ADMINS(c->admin_pk), KETEN_MAX_ADMINS + 1, 1, &b),
        KETEN_ERR_INVALID);
    uint8_t twice[2][KETEN_SIGN_PK_BYTES];
    memcpy(twice[0], c->admin_pk[1], KETEN_SIGN_PK_BYTES);
    memcpy(twice[1], c->admin_pk[1], KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_dirbuild_new(NETWORK, ADMINS(twice), 2, 1, &b), KETEN_ERR_DUPLICATE_KEY);
    assert_null(b);
}

static void test_approve(void **state)
{
    ctx *c = *state;
    member m1 = member_new("gemeente-diemen", "municipality", NETWORK);
    member m2 = member_new("broker", "broker", "");
    uint64_t serial = 0;
    assert_int_equal(
        keten_dirbuild_approve(c->b, m1.req, c->now, 30 * DAY, false, &serial), KETEN_OK);
    assert_int_equal(serial, 1);
    assert_int_equal(
        keten_dirbuild_approve(c->b, m2.req, c->now, 30 * DAY, false, &serial), KETEN_OK);
    assert_int_equal(serial, 2);
    const Keten__Directory *d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->next_serial, 3);
    assert_int_equal(d->n_nodes, 2);
    const Keten__NodeCert *cert = node(c->b, "gemeente-diemen");
    assert_non_null(cert);
    assert_string_equal(cert->role, "municipality");
    assert_string_equal(cert->org, "Organisatie");
    assert_memory_equal(cert->sign_pk.data, m1.id->sign_pk, KETEN_SIGN_PK_BYTES);
    assert_memory_equal(cert->enc_pk.data, m1.id->enc_pk, KETEN_ENC_PK_BYTES);
    assert_memory_equal(cert->transport_pk.data, m1.id->transport_pk, KETEN_CURVE_KEY_BYTES);
    assert_int_equal(cert->log_pk.len, 0);
    assert_int_equal(cert->not_before, c->now);
    assert_int_equal(cert->not_after, c->now + 30 * DAY);
    assert_int_equal(cert->serial, 1);
    cert = node(c->b, "broker");
    assert_non_null(cert);
    assert_int_equal(cert->log_pk.len, KETEN_SIGN_PK_BYTES);
    assert_memory_equal(cert->log_pk.data, m2.id->log_pk, KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_directory_check(d), KETEN_OK);

    /* Reject twins: another network's request, unusable validity. */
    member other = member_new("politie-mn", "police", "othernet");
    REFUSED(c, keten_dirbuild_approve(c->b, other.req, c->now, DAY, false, &serial),
        KETEN_ERR_WRONG_NETWORK);
    member ok = member_new("politie-mn", "police", NETWORK);
    REFUSED(c, keten_dirbuild_approve(c->b, ok.req, c->now, 0, false, &serial), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_approve(c->b, ok.req, c->now, UINT64_MAX, false, &serial),
        KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_approve(c->b, NULL, c->now, DAY, false, &serial), KETEN_ERR_INVALID);
    /* ... and the good one after them still gets the next serial. */
    assert_int_equal(keten_dirbuild_approve(c->b, ok.req, c->now, DAY, false, &serial), KETEN_OK);
    assert_int_equal(serial, 3);
    member_free(&m1);
    member_free(&m2);
    member_free(&other);
    member_free(&ok);
}

static void test_duplicate_id_refused_without_rotate(void **state)
{
    ctx *c = *state;
    member m1 = member_new("politie-mn", "police", NETWORK);
    member m2 = member_new("politie-mn", "police", NETWORK);
    uint64_t serial = 0;
    assert_int_equal(keten_dirbuild_approve(c->b, m1.req, c->now, DAY, false, &serial), KETEN_OK);
    /* The same id with new keys, and the very same request again. */
    REFUSED(c, keten_dirbuild_approve(c->b, m2.req, c->now, DAY, false, &serial),
        KETEN_ERR_DUPLICATE_ID);
    REFUSED(c, keten_dirbuild_approve(c->b, m1.req, c->now, DAY, false, &serial),
        KETEN_ERR_DUPLICATE_ID);
    assert_int_equal(serial, 1);
    member_free(&m1);
    member_free(&m2);
}

static void test_rotation_supersedes(void **state)
{
    ctx *c = *state;
    member a = member_new("gemeente-diemen", "municipality", NETWORK);
    member m1 = member_new("politie-mn", "police", NETWORK);
    member m2 = member_new("politie-mn", "police", NETWORK);
    member z = member_new("woco", "housing", NETWORK);
    uint64_t serial = 0;
    assert_int_equal(keten_dirbuild_approve(c->b, a.req, c->now, DAY, false, &serial), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, m1.req, c->now, DAY, false, &serial), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, z.req, c->now, DAY, false, &serial), KETEN_OK);
    uint64_t later = c->now + 1000;
    assert_int_equal(keten_dirbuild_approve(c->b, m2.req, later, 2 * DAY, true, &serial), KETEN_OK);
    assert_int_equal(serial, 4);
    const Keten__Directory *d = keten_dirbuild_doc(c->b);
    /* Still three current nodes, in the same order; the new cert in place. */
    assert_int_equal(d->n_nodes, 3);
    assert_string_equal(d->nodes[0]->id, "gemeente-diemen");
    assert_string_equal(d->nodes[1]->id, "politie-mn");
    assert_string_equal(d->nodes[2]->id, "woco");
    assert_int_equal(d->nodes[1]->serial, 4);
    assert_memory_equal(d->nodes[1]->sign_pk.data, m2.id->sign_pk, KETEN_SIGN_PK_BYTES);
    assert_int_equal(d->nodes[1]->not_before, later);
    /* The old one superseded. */
    assert_int_equal(d->n_revocations, 1);
    const Keten__Revocation *r = d->revocations[0];
    assert_true(r->superseded);
    assert_int_equal(r->at, later);
    assert_string_equal(r->reason, "superseded by serial 4");
    assert_int_equal(r->cert->serial, 2);
    assert_memory_equal(r->cert->sign_pk.data, m1.id->sign_pk, KETEN_SIGN_PK_BYTES);
    assert_int_equal(d->next_serial, 5);

    /* Rotation of an id that is not current is a plain enrollment. */
    member n = member_new("belasting", "tax", NETWORK);
    assert_int_equal(keten_dirbuild_approve(c->b, n.req, c->now, DAY, true, &serial), KETEN_OK);
    assert_int_equal(serial, 5);
    assert_int_equal(keten_dirbuild_doc(c->b)->n_revocations, 1);
    member_free(&a);
    member_free(&m1);
    member_free(&m2);
    member_free(&z);
    member_free(&n);
}

static void test_reused_key_refused(void **state)
{
    ctx *c = *state;
    member m1 = member_new("politie-mn", "police", NETWORK);
    member m2 = member_new("politie-mn", "police", NETWORK);
    uint64_t serial = 0;
    assert_int_equal(keten_dirbuild_approve(c->b, m1.req, c->now, DAY, false, &serial), KETEN_OK);

    /* Another id presenting m1's keys (each kind in turn). */
    member other = member_new("politie-ams", "police", NETWORK);
    Keten__NodeRequest forged = *other.req;
    forged.sign_pk = m1.req->sign_pk;
    REFUSED(c, keten_dirbuild_approve(c->b, &forged, c->now, DAY, false, &serial),
        KETEN_ERR_DUPLICATE_KEY);
    forged = *other.req;
    forged.enc_pk = m1.req->enc_pk;
    REFUSED(c, keten_dirbuild_approve(c->b, &forged, c->now, DAY, false, &serial),
        KETEN_ERR_DUPLICATE_KEY);
    forged = *other.req;
    forged.transport_pk = m1.req->transport_pk;
    REFUSED(c, keten_dirbuild_approve(c->b, &forged, c->now, DAY, false, &serial),
        KETEN_ERR_DUPLICATE_KEY);
    /* One key used for two purposes in one request. */
    forged = *other.req;
    forged.transport_pk = other.req->enc_pk;
    REFUSED(c, keten_dirbuild_approve(c->b, &forged, c->now, DAY, false, &serial),
        KETEN_ERR_DUPLICATE_KEY);

    /* Rotate m1 -> m2; m1's keys now belong to a superseded certificate. */
    assert_int_equal(keten_dirbuild_approve(c->b, m2.req, c->now, DAY, true, &serial), KETEN_OK);
    REFUSED(c, keten_dirbuild_approve(c->b, m1.req, c->now, DAY, true, &serial),
        KETEN_ERR_DUPLICATE_KEY);
    forged = *other.req;
    forged.enc_pk = m1.req->enc_pk;
    REFUSED(c, keten_dirbuild_approve(c->b, &forged, c->now, DAY, false, &serial),
        KETEN_ERR_DUPLICATE_KEY);
    /* And rotating to the current keys again is a reuse too. */
    REFUSED(c, keten_dirbuild_approve(c->b, m2.req, c->now, DAY, true, &serial),
        KETEN_ERR_DUPLICATE_KEY);
    /* After revocation the keys stay burnt. */
    assert_int_equal(keten_dirbuild_revoke(c->b, "politie-mn", "stolen laptop", c->now), KETEN_OK);
    forged = *other.req;
    forged.sign_pk = m2.req->sign_pk;
    REFUSED(c, keten_dirbuild_approve(c->b, &forged, c->now, DAY, false, &serial),
        KETEN_ERR_DUPLICATE_KEY);
    /* Twin: the honest request of politie-ams. */
    assert_int_equal(
        keten_dirbuild_approve(c->b, other.req, c->now, DAY, false, &serial), KETEN_OK);
    member_free(&m1);
    member_free(&m2);
    member_free(&other);
}

static void test_second_broker(void **state)
{
    ctx *c = *state;
    member b1 = member_new("broker", "broker", NETWORK);
    member b2 = member_new("broker-2", "broker", NETWORK);
    member b3 = member_new("broker", "broker", NETWORK);
    uint64_t serial = 0;
    assert_int_equal(keten_dirbuild_approve(c->b, b1.req, c->now, DAY, false, &serial), KETEN_OK);
    REFUSED(
        c, keten_dirbuild_approve(c->b, b2.req, c->now, DAY, false, &serial), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_approve(c->b, b2.req, c->now, DAY, true, &serial), KETEN_ERR_INVALID);
    /* Twin: rotating the broker itself. */
    assert_int_equal(keten_dirbuild_approve(c->b, b3.req, c->now, DAY, true, &serial), KETEN_OK);
    const Keten__NodeCert *cert = node(c->b, "broker");
    assert_memory_equal(cert->log_pk.data, b3.id->log_pk, KETEN_SIGN_PK_BYTES);
    /* Once the broker is revoked another may enrol. */
    assert_int_equal(keten_dirbuild_revoke(c->b, "broker", "moved", c->now), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, b2.req, c->now, DAY, false, &serial), KETEN_OK);
    member_free(&b1);
    member_free(&b2);
    member_free(&b3);
}

static void test_revoke(void **state)
{
    ctx *c = *state;
    member m = member_new("politie-mn", "police", NETWORK);
    member w = member_new("woco", "housing", NETWORK);
    uint64_t serial = 0;
    assert_int_equal(keten_dirbuild_approve(c->b, m.req, c->now, DAY, false, &serial), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, w.req, c->now, DAY, false, &serial), KETEN_OK);
    REFUSED(c, keten_dirbuild_revoke(c->b, "onbekend", "why", c->now), KETEN_ERR_NOT_FOUND);
    REFUSED(c, keten_dirbuild_revoke(c->b, "politie-mn", "", c->now), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_revoke(c->b, "politie-mn", "bad\nreason", c->now), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_revoke(c->b, "politie-mn", NULL, c->now), KETEN_ERR_INVALID);
    char long_reason[KETEN_REASON_MAX + 2];
    memset(long_reason, 'x', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    REFUSED(c, keten_dirbuild_revoke(c->b, "politie-mn", long_reason, c->now), KETEN_ERR_INVALID);

    assert_int_equal(
        keten_dirbuild_revoke(c->b, "politie-mn", "left the covenant", c->now + 5), KETEN_OK);
    const Keten__Directory *d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->n_nodes, 1);
    assert_string_equal(d->nodes[0]->id, "woco");
    assert_int_equal(d->n_revocations, 1);
    assert_false(d->revocations[0]->superseded);
    assert_string_equal(d->revocations[0]->reason, "left the covenant");
    assert_int_equal(d->revocations[0]->at, c->now + 5);
    assert_string_equal(d->revocations[0]->cert->id, "politie-mn");
    assert_int_equal(d->revocations[0]->cert->serial, 1);
    /* Revoked once: not current any more. */
    REFUSED(c, keten_dirbuild_revoke(c->b, "politie-mn", "again", c->now), KETEN_ERR_NOT_FOUND);
    /* The id may enrol again with new keys; the old serial is not reused. */
    member m2 = member_new("politie-mn", "police", NETWORK);
    assert_int_equal(keten_dirbuild_approve(c->b, m2.req, c->now, DAY, false, &serial), KETEN_OK);
    assert_int_equal(serial, 3);
    member_free(&m);
    member_free(&w);
    member_free(&m2);
}

static void test_register(void **state)
{
    ctx *c = *state;
    const Keten__Directory *d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->n_categories, 2);
    assert_int_equal(d->n_purposes, 1);
    /* Registering what exists changes nothing. */
    REFUSED(c, keten_dirbuild_register(c->b, "woonfraude", "handhaving"), KETEN_OK);
    const char *bad[] = { "Woonfraude", "*", "", "-drugs", "woon fraude", "a\tb",
        "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz012" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        REFUSED(c, keten_dirbuild_register(c->b, bad[i], NULL), KETEN_ERR_BAD_NAME);
        REFUSED(c, keten_dirbuild_register(c->b, NULL, bad[i]), KETEN_ERR_BAD_NAME);
        /* A bad one next to a good one registers neither. */
        REFUSED(c, keten_dirbuild_register(c->b, "mensenhandel", bad[i]), KETEN_ERR_BAD_NAME);
    }
    REFUSED(c, keten_dirbuild_register(c->b, NULL, NULL), KETEN_ERR_INVALID);
    assert_int_equal(
        keten_dirbuild_register(c->b, "mensenhandel", "riec-convenant/art-5"), KETEN_OK);
    d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->n_categories, 3);
    assert_string_equal(d->categories[2], "mensenhandel");
    assert_int_equal(d->n_purposes, 2);
    assert_string_equal(d->purposes[1], "riec-convenant/art-5");
}

static void test_rules(void **state)
{
    ctx *c = *state;
    uint32_t id = 0;
    assert_int_equal(keten_dirbuild_add_rule(c->b, KETEN__EFFECT__EFFECT_ALLOW,
                         "role:municipality,gemeente-diemen", "*", "woonfraude,drugs",
                         "signal,query", "handhaving", &id),
        KETEN_OK);
    assert_int_equal(id, 1);
    assert_int_equal(keten_dirbuild_add_rule(
                         c->b, KETEN__EFFECT__EFFECT_DENY, "*", "role:tax", "*", NULL, "", &id),
        KETEN_OK);
    assert_int_equal(id, 2);
    const Keten__Directory *d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->n_rules, 2);
    const Keten__PolicyRule *r = d->rules[0];
    assert_int_equal(r->effect, KETEN__EFFECT__EFFECT_ALLOW);
    assert_int_equal(r->n_from, 2);
    assert_string_equal(r->from[0], "role:municipality");
    assert_string_equal(r->from[1], "gemeente-diemen");
    assert_int_equal(r->n_categories, 2);
    assert_int_equal(r->n_kinds, 2);
    assert_int_equal(r->kinds[0], KETEN__KIND__KIND_SIGNAL);
    assert_int_equal(r->kinds[1], KETEN__KIND__KIND_QUERY);
    assert_int_equal(r->n_purposes, 1);
    assert_int_equal(d->rules[1]->n_kinds, 0);
    assert_int_equal(d->rules[1]->n_purposes, 0);

    /* Reject twins, each leaving the draft as it was. */
    const Keten__Effect allow = KETEN__EFFECT__EFFECT_ALLOW;
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "*", "*", "mensenhandel", NULL, NULL, &id),
        KETEN_ERR_UNREGISTERED);
    REFUSED(c,
        keten_dirbuild_add_rule(c->b, allow, "*", "*", "drugs,mensenhandel", NULL, NULL, &id),
        KETEN_ERR_UNREGISTERED);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "*", "*", "drugs", NULL, "riec", &id),
        KETEN_ERR_UNREGISTERED);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "*", "*", "Drugs", NULL, NULL, &id),
        KETEN_ERR_BAD_NAME);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "role:", "*", "drugs", NULL, NULL, &id),
        KETEN_ERR_BAD_NAME);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "*", "Politie", "drugs", NULL, NULL, &id),
        KETEN_ERR_BAD_NAME);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "a,,b", "*", "drugs", NULL, NULL, &id),
        KETEN_ERR_BAD_NAME);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "*", "*", "drugs", "signal,shout", NULL, &id),
        KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "", "*", "drugs", NULL, NULL, &id),
        KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "*", NULL, "drugs", NULL, NULL, &id),
        KETEN_ERR_INVALID);
    REFUSED(
        c, keten_dirbuild_add_rule(c->b, allow, "*", "*", "", NULL, NULL, &id), KETEN_ERR_INVALID);
    REFUSED(c,
        keten_dirbuild_add_rule(
            c->b, KETEN__EFFECT__EFFECT_UNSPECIFIED, "*", "*", "drugs", NULL, NULL, &id),
        KETEN_ERR_INVALID);
    assert_int_equal(id, 2);

    /* Removing: unknown ids refused; ids come from the highest one left. */
    REFUSED(c, keten_dirbuild_remove_rule(c->b, 7), KETEN_ERR_NOT_FOUND);
    REFUSED(c, keten_dirbuild_remove_rule(c->b, 0), KETEN_ERR_NOT_FOUND);
    assert_int_equal(keten_dirbuild_remove_rule(c->b, 1), KETEN_OK);
    REFUSED(c, keten_dirbuild_remove_rule(c->b, 1), KETEN_ERR_NOT_FOUND);
    d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->n_rules, 1);
    assert_int_equal(d->rules[0]->id, 2);
    assert_int_equal(
        keten_dirbuild_add_rule(c->b, allow, "*", "*", "*", NULL, NULL, &id), KETEN_OK);
    assert_int_equal(id, 3);
}

static void test_unregister(void **state)
{
    ctx *c = *state;
    uint32_t rule = 0, id = 0;
    /* A mistyped value, registered and removed again. */
    assert_int_equal(keten_dirbuild_register(c->b, "woonfruade", "handhavng"), KETEN_OK);
    assert_int_equal(keten_dirbuild_unregister(c->b, "woonfruade", NULL, &rule), KETEN_OK);
    assert_int_equal(keten_dirbuild_unregister(c->b, NULL, "handhavng", &rule), KETEN_OK);
    const Keten__Directory *d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->n_categories, 2);
    assert_string_equal(d->categories[0], "woonfraude");
    assert_string_equal(d->categories[1], "drugs");
    assert_int_equal(d->n_purposes, 1);
    /* Its twins: what is not registered, and what a rule names. */
    REFUSED(c, keten_dirbuild_unregister(c->b, "woonfruade", NULL, &rule), KETEN_ERR_NOT_FOUND);
    REFUSED(c, keten_dirbuild_unregister(c->b, NULL, NULL, &rule), KETEN_ERR_INVALID);
    assert_int_equal(keten_dirbuild_add_rule(c->b, KETEN__EFFECT__EFFECT_DENY, "*", "role:tax",
                         "drugs", NULL, "handhaving", &id),
        KETEN_OK);
    rule = 0;
    REFUSED(c, keten_dirbuild_unregister(c->b, "drugs", NULL, &rule), KETEN_ERR_INVALID);
    assert_int_equal(rule, id);
    assert_non_null(strstr(keten_err_detail(), "still used by rule 1"));
    rule = 0;
    REFUSED(c, keten_dirbuild_unregister(c->b, NULL, "handhaving", &rule), KETEN_ERR_INVALID);
    assert_int_equal(rule, id);
    /* Both at once: one refused refuses both. */
    REFUSED(
        c, keten_dirbuild_unregister(c->b, "woonfraude", "handhaving", NULL), KETEN_ERR_INVALID);
    /* A rule with "*" names no value in particular. */
    assert_int_equal(
        keten_dirbuild_add_rule(c->b, KETEN__EFFECT__EFFECT_ALLOW, "*", "*", "*", NULL, NULL, &id),
        KETEN_OK);
    assert_int_equal(keten_dirbuild_unregister(c->b, "woonfraude", NULL, NULL), KETEN_OK);
    /* Once the rule is gone, so may its values be. */
    assert_int_equal(keten_dirbuild_remove_rule(c->b, 1), KETEN_OK);
    assert_int_equal(keten_dirbuild_unregister(c->b, "drugs", "handhaving", NULL), KETEN_OK);
    d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->n_categories, 0);
    assert_int_equal(d->n_purposes, 0);
}

/* A rule number, once published, is never given to another rule: ids
 * continue above keten_dirbuild_rule_ids_used(), even when the rule that
 * had the highest id is gone from the draft. */
static void test_rule_ids_not_reused(void **state)
{
    ctx *c = *state;
    uint32_t id = 0;
    const Keten__Effect allow = KETEN__EFFECT__EFFECT_ALLOW;
    assert_int_equal(
        keten_dirbuild_add_rule(c->b, allow, "*", "*", "drugs", NULL, NULL, &id), KETEN_OK);
    assert_int_equal(
        keten_dirbuild_add_rule(c->b, allow, "*", "*", "woonfraude", NULL, NULL, &id), KETEN_OK);
    assert_int_equal(id, 2);
    assert_int_equal(keten_dirbuild_remove_rule(c->b, 2), KETEN_OK);
    /* Without a published version naming rule 2, the number may come back. */
    assert_int_equal(
        keten_dirbuild_add_rule(c->b, allow, "*", "*", "woonfraude", NULL, NULL, &id), KETEN_OK);
    assert_int_equal(id, 2);
    assert_int_equal(keten_dirbuild_remove_rule(c->b, 2), KETEN_OK);
    /* A published version had rules up to 5: the next is 6. */
    keten_dirbuild_rule_ids_used(c->b, 5);
    keten_dirbuild_rule_ids_used(c->b, 3); /* a lower one changes nothing */
    assert_int_equal(
        keten_dirbuild_add_rule(c->b, allow, "*", "*", "woonfraude", NULL, NULL, &id), KETEN_OK);
    assert_int_equal(id, 6);
    assert_int_equal(keten_dirbuild_doc(c->b)->n_rules, 2);
    assert_int_equal(keten_dirbuild_doc(c->b)->rules[1]->id, 6);
    /* The last id refuses another. */
    keten_dirbuild_rule_ids_used(c->b, UINT32_MAX);
    REFUSED(c, keten_dirbuild_add_rule(c->b, allow, "*", "*", "drugs", NULL, NULL, &id),
        KETEN_ERR_INVALID);
}

static void test_roles(void **state)
{
    ctx *c = *state;
    /* The standard roles are known in an empty network. */
    const char *standard[] = { "municipality", "police", "tax", "housing", "riec" };
    for (size_t i = 0; i < sizeof standard / sizeof *standard; i++) {
        assert_true(keten_dirbuild_role_known(c->b, standard[i]));
    }
    assert_int_equal(
        keten_dirbuild_check_roles(c->b, "role:police,role:tax,politie-mn,*", "--to"), KETEN_OK);
    /* Typos: refused, with the role meant and the known roles. */
    assert_false(keten_dirbuild_role_known(c->b, "polise"));
    REFUSED(
        c, keten_dirbuild_check_roles(c->b, "role:tax,role:polise", "--to"), KETEN_ERR_NOT_FOUND);
    assert_non_null(strstr(keten_err_detail(), "--to role:polise"));
    assert_non_null(strstr(keten_err_detail(), "did you mean role:police?"));
    assert_non_null(
        strstr(keten_err_detail(), "known roles: municipality, police, tax, housing, riec"));
    assert_non_null(strstr(keten_err_detail(), "--allow-unknown-role"));
    assert_int_equal(
        keten_dirbuild_check_roles(c->b, "role:housingcorp", "--to"), KETEN_ERR_NOT_FOUND);
    assert_non_null(strstr(keten_err_detail(), "did you mean role:housing?"));
    assert_int_equal(
        keten_dirbuild_check_roles(c->b, "role:muncipality", "--from"), KETEN_ERR_NOT_FOUND);
    assert_non_null(strstr(keten_err_detail(), "did you mean role:municipality?"));
    /* Nothing close: no suggestion, only the list. */
    assert_int_equal(keten_dirbuild_check_roles(c->b, "role:zorg", "--to"), KETEN_ERR_NOT_FOUND);
    assert_null(strstr(keten_err_detail(), "did you mean"));
    assert_non_null(strstr(keten_err_detail(), "known roles:"));
    /* A role that a node of the draft has is known from then on. */
    member m = member_new("ggd-amsterdam", "zorg", NETWORK);
    assert_int_equal(keten_dirbuild_approve(c->b, m.req, c->now, DAY, false, NULL), KETEN_OK);
    assert_true(keten_dirbuild_role_known(c->b, "zorg"));
    assert_int_equal(keten_dirbuild_check_roles(c->b, "role:zorg", "--to"), KETEN_OK);
    assert_int_equal(keten_dirbuild_check_roles(c->b, "role:zrog", "--to"), KETEN_ERR_NOT_FOUND);
    assert_non_null(strstr(keten_err_detail(), "did you mean role:zorg?"));
    assert_non_null(strstr(keten_err_detail(), "riec, zorg"));
    /* ... and no longer once it is revoked. */
    assert_int_equal(keten_dirbuild_revoke(c->b, "ggd-amsterdam", "left", c->now), KETEN_OK);
    assert_false(keten_dirbuild_role_known(c->b, "zorg"));
    member_free(&m);
}

/* Publish the draft as it is (finish and advance) and return the Directory
 * as published (keten_pb_free). */
static Keten__Directory *publish_draft(ctx *c)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    Keten__Directory *pub = NULL;
    assert_int_equal(keten_dirbuild_finish(c->b, c->now, DAY, &bytes, &len), KETEN_OK);
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(
                         keten__directory, bytes, len, KETEN_DIRECTORY_MAX, "published", &pub),
        KETEN_OK);
    assert_int_equal(keten_dirbuild_advance(c->b, bytes, len), KETEN_OK);
    free(bytes);
    return pub;
}

static void test_diff(void **state)
{
    ctx *c = *state;
    member a = member_new("gemeente-diemen", "municipality", NETWORK);
    member b = member_new("politie-mn", "police", NETWORK);
    member r = member_new("woonstad", "housing", NETWORK);
    member r2 = member_new("woonstad", "housing", NETWORK);
    member n = member_new("belastingdienst", "tax", NETWORK);
    uint32_t id = 0;
    keten_dirbuild_changes *d = NULL;

    /* Nothing published: everything in the draft is added. */
    assert_int_equal(keten_dirbuild_approve(c->b, a.req, c->now, DAY, false, NULL), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, b.req, c->now, DAY, false, NULL), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, r.req, c->now, DAY, false, NULL), KETEN_OK);
    assert_int_equal(keten_dirbuild_add_rule(c->b, KETEN__EFFECT__EFFECT_ALLOW, "role:municipality",
                         "role:police", "woonfraude", NULL, NULL, &id),
        KETEN_OK);
    assert_int_equal(keten_dirbuild_diff(NULL, keten_dirbuild_doc(c->b), &d), KETEN_OK);
    assert_true(d->changed);
    assert_false(d->other);
    assert_int_equal(d->n_added, 3);
    assert_int_equal(d->n_rules_added, 1);
    assert_int_equal(d->n_categories_added, 2);
    assert_int_equal(d->n_admins_added, N_ADMINS);
    assert_int_equal(d->threshold_from, 0);
    assert_int_equal(d->threshold_to, 2);
    keten_dirbuild_changes_destroy(&d);
    assert_null(d);
    keten_dirbuild_changes_destroy(&d);

    /* Published, and nothing changed since: an empty diff. */
    Keten__Directory *v1 = publish_draft(c);
    assert_int_equal(keten_dirbuild_diff(v1, keten_dirbuild_doc(c->b), &d), KETEN_OK);
    assert_false(d->changed);
    assert_false(d->other);
    assert_int_equal(d->n_added + d->n_rotated + d->n_revoked + d->n_rules_added
            + d->n_rules_removed + d->n_categories_added + d->n_categories_removed
            + d->n_purposes_added + d->n_purposes_removed + d->n_admins_added + d->n_admins_removed,
        0);
    assert_int_equal(d->threshold_from, d->threshold_to);
    keten_dirbuild_changes_destroy(&d);

    /* Every kind of change, each found once. */
    assert_int_equal(keten_dirbuild_approve(c->b, n.req, c->now, DAY, false, NULL), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, r2.req, c->now, DAY, true, NULL), KETEN_OK);
    assert_int_equal(keten_dirbuild_revoke(c->b, "politie-mn", "key lost", c->now), KETEN_OK);
    assert_int_equal(keten_dirbuild_remove_rule(c->b, 1), KETEN_OK);
    assert_int_equal(keten_dirbuild_add_rule(c->b, KETEN__EFFECT__EFFECT_DENY, "*", "role:housing",
                         "drugs", NULL, NULL, &id),
        KETEN_OK);
    assert_int_equal(keten_dirbuild_register(c->b, "mensenhandel", "riec-convenant"), KETEN_OK);
    assert_int_equal(keten_dirbuild_unregister(c->b, NULL, "handhaving", NULL), KETEN_OK);
    uint8_t keys[N_ADMINS][KETEN_SIGN_PK_BYTES];
    memcpy(keys, c->admin_pk, sizeof keys);
    randombytes_buf(keys[2], KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_dirbuild_set_admins(c->b, ADMINS(keys), N_ADMINS, 3), KETEN_OK);
    assert_int_equal(keten_dirbuild_diff(v1, keten_dirbuild_doc(c->b), &d), KETEN_OK);
    assert_true(d->changed);
    assert_false(d->other);
    assert_int_equal(d->n_added, 1);
    assert_string_equal(d->added[0]->id, "belastingdienst");
    assert_int_equal(d->n_rotated, 1);
    assert_string_equal(d->rotated_new[0]->id, "woonstad");
    assert_int_equal(d->rotated_old[0]->serial, 3);
    assert_int_equal(d->rotated_new[0]->serial, 5);
    assert_int_equal(d->n_revoked, 1);
    assert_string_equal(d->revoked[0]->cert->id, "politie-mn");
    /* The new rule took id 1 again (the highest id left was 0): a rule is
     * compared by id and content, so this is one removed and one added. */
    assert_int_equal(d->n_rules_added, 1);
    assert_int_equal(d->rules_added[0]->id, 1);
    assert_int_equal(d->rules_added[0]->effect, KETEN__EFFECT__EFFECT_DENY);
    assert_int_equal(d->n_rules_removed, 1);
    assert_int_equal(d->rules_removed[0]->id, 1);
    assert_int_equal(d->rules_removed[0]->effect, KETEN__EFFECT__EFFECT_ALLOW);
    assert_int_equal(d->n_categories_added, 1);
    assert_string_equal(d->categories_added[0], "mensenhandel");
    assert_int_equal(d->n_categories_removed, 0);
    assert_int_equal(d->n_purposes_added, 1);
    assert_string_equal(d->purposes_added[0], "riec-convenant");
    assert_int_equal(d->n_purposes_removed, 1);
    assert_string_equal(d->purposes_removed[0], "handhaving");
    assert_int_equal(d->n_admins_added, 1);
    assert_memory_equal(d->admins_added[0]->data, keys[2], KETEN_SIGN_PK_BYTES);
    assert_int_equal(d->n_admins_removed, 1);
    assert_memory_equal(d->admins_removed[0]->data, c->admin_pk[2], KETEN_SIGN_PK_BYTES);
    assert_int_equal(d->threshold_from, 2);
    assert_int_equal(d->threshold_to, 3);
    keten_dirbuild_changes_destroy(&d);

    /* Published again: those changes are history, nothing is new. */
    Keten__Directory *v2 = publish_draft(c);
    assert_int_equal(keten_dirbuild_diff(v2, keten_dirbuild_doc(c->b), &d), KETEN_OK);
    assert_false(d->changed);
    keten_dirbuild_changes_destroy(&d);
    /* A revoked id enrolled again is a revocation and an addition. */
    member b2 = member_new("politie-mn", "police", NETWORK);
    assert_int_equal(keten_dirbuild_approve(c->b, b2.req, c->now, DAY, false, NULL), KETEN_OK);
    assert_int_equal(keten_dirbuild_diff(v2, keten_dirbuild_doc(c->b), &d), KETEN_OK);
    assert_int_equal(d->n_added, 1);
    assert_int_equal(d->n_revoked, 0);
    assert_int_equal(d->n_rotated, 0);
    keten_dirbuild_changes_destroy(&d);

    keten_pb_free((ProtobufCMessage **)(void *)&v1);
    keten_pb_free((ProtobufCMessage **)(void *)&v2);
    member_free(&a);
    member_free(&b);
    member_free(&b2);
    member_free(&r);
    member_free(&r2);
    member_free(&n);
}

static void test_set_admins(void **state)
{
    ctx *c = *state;
    uint8_t keys[2][KETEN_SIGN_PK_BYTES];
    randombytes_buf(keys, sizeof keys);
    REFUSED(c, keten_dirbuild_set_admins(c->b, ADMINS(keys), 2, 0), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_set_admins(c->b, ADMINS(keys), 2, 3), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_set_admins(c->b, ADMINS(keys), 0, 0), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_set_admins(c->b, NULL, 2, 1), KETEN_ERR_INVALID);
    memcpy(keys[1], keys[0], KETEN_SIGN_PK_BYTES);
    REFUSED(c, keten_dirbuild_set_admins(c->b, ADMINS(keys), 2, 1), KETEN_ERR_DUPLICATE_KEY);
    randombytes_buf(keys[1], KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_dirbuild_set_admins(c->b, ADMINS(keys), 2, 2), KETEN_OK);
    const Keten__Directory *d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->n_admins, 2);
    assert_int_equal(d->threshold, 2);
    assert_memory_equal(d->admins[0].data, keys[0], KETEN_SIGN_PK_BYTES);
    assert_memory_equal(d->admins[1].data, keys[1], KETEN_SIGN_PK_BYTES);
}

static void test_finish_and_advance(void **state)
{
    ctx *c = *state;
    member m = member_new("politie-mn", "police", NETWORK);
    uint64_t serial = 0;
    assert_int_equal(keten_dirbuild_approve(c->b, m.req, c->now, DAY, false, &serial), KETEN_OK);
    uint8_t *dir = NULL;
    size_t len = 0;
    REFUSED(c, keten_dirbuild_finish(c->b, c->now, 0, &dir, &len), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_finish(c->b, 0, DAY, &dir, &len), KETEN_ERR_INVALID);
    REFUSED(c, keten_dirbuild_finish(c->b, c->now, UINT64_MAX, &dir, &len), KETEN_ERR_INVALID);
    assert_null(dir);
    assert_int_equal(keten_dirbuild_finish(c->b, c->now, 14 * DAY, &dir, &len), KETEN_OK);
    Keten__Directory *doc = NULL;
    assert_int_equal(
        KETEN_PB_UNPACK_CANONICAL(keten__directory, dir, len, KETEN_DIRECTORY_MAX, "test", &doc),
        KETEN_OK);
    assert_int_equal(doc->version, 1);
    assert_int_equal(doc->issued_at, c->now);
    assert_int_equal(doc->expires_at, c->now + 14 * DAY);
    assert_int_equal(doc->n_nodes, 1);
    assert_int_equal(keten_directory_check(doc), KETEN_OK);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);

    /* Signed by two administrators it verifies against the anchor. */
    ProtobufCBinaryData admins[N_ADMINS];
    for (size_t i = 0; i < N_ADMINS; i++) {
        admins[i].data = c->admin_pk[i];
        admins[i].len = KETEN_SIGN_PK_BYTES;
    }
    Keten__Anchor anchor = KETEN__ANCHOR__INIT;
    anchor.network = (char *)NETWORK;
    anchor.admins = admins;
    anchor.n_admins = N_ADMINS;
    anchor.threshold = 2;
    uint8_t *s1 = NULL;
    uint8_t *s2 = NULL;
    size_t l1 = 0;
    size_t l2 = 0;
    assert_int_equal(keten_directory_sign(dir, len, NULL, 0, c->admin_sk[2], &s1, &l1), KETEN_OK);
    assert_int_equal(keten_directory_sign(dir, len, s1, l1, c->admin_sk[0], &s2, &l2), KETEN_OK);
    keten_directory *v1 = NULL;
    assert_int_equal(keten_directory_verify(&anchor, NULL, s2, l2, c->now, &v1), KETEN_OK);

    /* Advance: refused with other bytes, then done with the published ones. */
    REFUSED(c, keten_dirbuild_advance(c->b, dir, len - 1), KETEN_ERR_MALFORMED);
    REFUSED(c, keten_dirbuild_advance(c->b, NULL, 0), KETEN_ERR_MALFORMED);
    assert_int_equal(keten_dirbuild_advance(c->b, dir, len), KETEN_OK);
    const Keten__Directory *d = keten_dirbuild_doc(c->b);
    assert_int_equal(d->version, 2);
    assert_int_equal(d->previous_hash.len, KETEN_HASH_BYTES);
    assert_memory_equal(d->previous_hash.data, keten_directory_hash(v1), KETEN_HASH_BYTES);
    /* The same version-1 bytes cannot advance version 2. */
    REFUSED(c, keten_dirbuild_advance(c->b, dir, len), KETEN_ERR_MISMATCH);

    /* Version 2 follows version 1. */
    uint8_t *dir2 = NULL;
    size_t len2 = 0;
    assert_int_equal(keten_dirbuild_finish(c->b, c->now + 1, 14 * DAY, &dir2, &len2), KETEN_OK);
    uint8_t *t1 = NULL;
    uint8_t *t2 = NULL;
    size_t tl1 = 0;
    size_t tl2 = 0;
    assert_int_equal(
        keten_directory_sign(dir2, len2, NULL, 0, c->admin_sk[0], &t1, &tl1), KETEN_OK);
    assert_int_equal(
        keten_directory_sign(dir2, len2, t1, tl1, c->admin_sk[1], &t2, &tl2), KETEN_OK);
    keten_directory *v2 = NULL;
    assert_int_equal(keten_directory_verify(NULL, v1, t2, tl2, c->now, &v2), KETEN_OK);
    assert_int_equal(keten_directory_version(v2), 2);
    keten_directory_destroy(&v2);
    keten_directory_destroy(&v1);
    free(t1);
    free(t2);
    free(dir2);
    free(s1);
    free(s2);
    free(dir);
    member_free(&m);
}

static void test_save_load_round_trip(void **state)
{
    ctx *c = *state;
    member m1 = member_new("politie-mn", "police", NETWORK);
    member m2 = member_new("politie-mn", "police", NETWORK);
    member b = member_new("broker", "broker", NETWORK);
    uint64_t serial = 0;
    uint32_t id = 0;
    assert_int_equal(keten_dirbuild_approve(c->b, m1.req, c->now, DAY, false, &serial), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, b.req, c->now, DAY, false, &serial), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(c->b, m2.req, c->now, DAY, true, &serial), KETEN_OK);
    assert_int_equal(keten_dirbuild_add_rule(c->b, KETEN__EFFECT__EFFECT_DENY, "role:police", "*",
                         "drugs", "feedback", "handhaving", &id),
        KETEN_OK);
    snapshot s = snap(c->b);
    keten_dirbuild *loaded = NULL;
    assert_int_equal(keten_dirbuild_load(s.buf, s.len, &loaded), KETEN_OK);
    snapshot again = snap(loaded);
    assert_int_equal(again.len, s.len);
    assert_memory_equal(again.buf, s.buf, s.len);
    /* Edits continue where they left off. */
    member w = member_new("woco", "housing", NETWORK);
    assert_int_equal(keten_dirbuild_approve(loaded, w.req, c->now, DAY, false, &serial), KETEN_OK);
    assert_int_equal(serial, 4);
    keten_dirbuild_destroy(&loaded);

    /* A fresh draft with no nodes saves and loads too. */
    keten_dirbuild *empty = NULL;
    assert_int_equal(keten_dirbuild_new(NETWORK, ADMINS(c->admin_pk), 1, 1, &empty), KETEN_OK);
    snapshot e = snap(empty);
    keten_dirbuild_destroy(&empty);
    assert_int_equal(keten_dirbuild_load(e.buf, e.len, &empty), KETEN_OK);
    keten_dirbuild_destroy(&empty);
    free(e.buf);

    /* Reject twins: empty, truncated, extended, tampered, oversize. */
    assert_int_equal(keten_dirbuild_load(s.buf, 0, &loaded), KETEN_ERR_MALFORMED);
    assert_int_equal(keten_dirbuild_load(NULL, 0, &loaded), KETEN_ERR_MALFORMED);
    for (size_t l = 1; l < s.len; l++) {
        uint8_t *t = malloc(l);
        assert_non_null(t);
        memcpy(t, s.buf, l);
        assert_int_not_equal(keten_dirbuild_load(t, l, &loaded), KETEN_OK);
        assert_null(loaded);
        free(t);
    }
    uint8_t *longer = malloc(s.len + 3);
    assert_non_null(longer);
    memcpy(longer, s.buf, s.len);
    memcpy(longer + s.len, "\x98\x06\x01", 3);
    assert_int_equal(keten_dirbuild_load(longer, s.len + 3, &loaded), KETEN_ERR_NOT_CANONICAL);
    free(longer);
    /* A saved draft whose second certificate reuses the first one's key. */
    Keten__Directory *doc = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(
                         keten__directory, s.buf, s.len, KETEN_DIRECTORY_MAX, "test", &doc),
        KETEN_OK);
    memcpy(doc->nodes[1]->enc_pk.data, doc->nodes[0]->enc_pk.data, KETEN_ENC_PK_BYTES);
    uint8_t *bad = NULL;
    size_t bad_len = 0;
    assert_int_equal(keten_pb_pack(&doc->base, &bad, &bad_len), KETEN_OK);
    assert_int_equal(keten_dirbuild_load(bad, bad_len, &loaded), KETEN_ERR_DUPLICATE_KEY);
    assert_null(loaded);
    free(bad);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    uint8_t *big = calloc(1, (size_t)KETEN_DIRECTORY_MAX + 1);
    assert_non_null(big);
    assert_int_equal(
        keten_dirbuild_load(big, (size_t)KETEN_DIRECTORY_MAX + 1, &loaded), KETEN_ERR_TOO_LARGE);
    free(big);
    free(s.buf);
    free(again.buf);
    member_free(&m1);
    member_free(&m2);
    member_free(&b);
    member_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_id_refused_without_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_supersedes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_key_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_broker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unregister, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule_ids_not_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_admins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_and_advance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
