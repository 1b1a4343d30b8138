/*
 * test_policy.c - the sharing agreement: matching by id, role and "*",
 * deny wins whatever the order of the rules, the deciding rule is the lowest
 * matching id, kinds and purposes filter, default deny is rule 0; party and
 * rule syntax; and the policy of a real, signed and verified directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "policy.h"

#define ALLOW KETEN__EFFECT__EFFECT_ALLOW
#define DENY KETEN__EFFECT__EFFECT_DENY
#define SIGNAL KETEN__KIND__KIND_SIGNAL
#define QUERY KETEN__KIND__KIND_QUERY
#define REPLY KETEN__KIND__KIND_REPLY
#define FEEDBACK KETEN__KIND__KIND_FEEDBACK

#define RULES_MAX 8

/* Rules built on the stack; lists are NULL-terminated string arrays. */
typedef struct rule_spec {
    uint32_t id;
    Keten__Effect effect;
    const char *from[4];
    const char *to[4];
    const char *cats[4];
    Keten__Kind kinds[4];
    const char *purps[4];
} rule_spec;

typedef struct policy {
    Keten__Directory doc;
    Keten__PolicyRule rules[RULES_MAX];
    Keten__PolicyRule *ptrs[RULES_MAX];
} policy;

static size_t count_strs(const char *const *list)
{
    size_t n = 0;
    while (n < 4 && list[n] != NULL) {
        n++;
    }
    return n;
}

static void policy_make(policy *p, const rule_spec *specs, size_t n)
{
    assert_true(n <= RULES_MAX);
    keten__directory__init(&p->doc);
    for (size_t i = 0; i < n; i++) {
        Keten__PolicyRule *r = &p->rules[i];
        keten__policy_rule__init(r);
        r->id = specs[i].id;
        r->effect = specs[i].effect;
        r->from = (char **)specs[i].from;
        r->n_from = count_strs(specs[i].from);
        r->to = (char **)specs[i].to;
        r->n_to = count_strs(specs[i].to);
        r->categories = (char **)specs[i].cats;
        r->n_categories = count_strs(specs[i].cats);
        r->kinds = (Keten__Kind *)specs[i].kinds;
        r->n_kinds = 0;
        while (r->n_kinds < 4 && specs[i].kinds[r->n_kinds] != KETEN__KIND__KIND_UNSPECIFIED) {
            r->n_kinds++;
        }
        r->purposes = (char **)specs[i].purps;
        r->n_purposes = count_strs(specs[i].purps);
        assert_int_equal(keten_policy_rule_check(r), KETEN_OK);
        p->ptrs[i] = r;
    }
    p->doc.rules = p->ptrs;
    p->doc.n_rules = n;
}

static keten_policy_decision eval(const policy *p, const char *from_id, const char *from_role,
    const char *to_id, const char *to_role, Keten__Kind kind, const char *cat, const char *purp)
{
    return keten_policy_evaluate(&p->doc, from_id, from_role, to_id, to_role, kind, cat, purp);
}

#define ASSERT_DECISION(d, allow, id)                                                              \
    do {                                                                                           \
        keten_policy_decision d_ = (d);                                                            \
        assert_int_equal(d_.allowed, (allow));                                                     \
        assert_int_equal(d_.rule, (id));                                                           \
    } while (0)

static void test_allow_by_role(void **state)
{
    (void)state;
    rule_spec specs[] = {
        { 3, ALLOW, { "role:municipality" }, { "role:police" }, { "woonfraude" }, { 0 }, { 0 } },
    };
    policy p;
    policy_make(&p, specs, 1);
    ASSERT_DECISION(eval(&p, "gemeente-diemen", "municipality", "politie-mn", "police", SIGNAL,
                        "woonfraude", "handhaving"),
        true, 3);
    /* Reject twins: other recipient role, other sender role, other category. */
    ASSERT_DECISION(eval(&p, "gemeente-diemen", "municipality", "belasting", "tax", SIGNAL,
                        "woonfraude", "handhaving"),
        false, KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(eval(&p, "politie-mn", "police", "politie-ams", "police", SIGNAL, "woonfraude",
                        "handhaving"),
        false, KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(eval(&p, "gemeente-diemen", "municipality", "politie-mn", "police", SIGNAL,
                        "drugs", "handhaving"),
        false, KETEN_POLICY_DEFAULT_RULE);
    /* A role party does not match a node whose *id* is the role name. */
    ASSERT_DECISION(
        eval(&p, "municipality", "tax", "police", "tax", SIGNAL, "woonfraude", "handhaving"), false,
        KETEN_POLICY_DEFAULT_RULE);
}

static void test_allow_by_id(void **state)
{
    (void)state;
    rule_spec specs[] = {
        { 7, ALLOW, { "gemeente-diemen" }, { "politie-mn", "belasting" }, { "drugs" }, { 0 },
            { 0 } },
    };
    policy p;
    policy_make(&p, specs, 1);
    ASSERT_DECISION(eval(&p, "gemeente-diemen", "municipality", "belasting", "tax", SIGNAL, "drugs",
                        "handhaving"),
        true, 7);
    ASSERT_DECISION(eval(&p, "gemeente-diemen", "municipality", "politie-mn", "police", SIGNAL,
                        "drugs", "handhaving"),
        true, 7);
    /* Same roles, other ids: refused. */
    ASSERT_DECISION(eval(&p, "gemeente-amsterdam", "municipality", "politie-mn", "police", SIGNAL,
                        "drugs", "handhaving"),
        false, KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(eval(&p, "gemeente-diemen", "municipality", "politie-ams", "police", SIGNAL,
                        "drugs", "handhaving"),
        false, KETEN_POLICY_DEFAULT_RULE);
    /* An id party does not match a node whose role has that name. */
    ASSERT_DECISION(
        eval(&p, "x", "gemeente-diemen", "politie-mn", "police", SIGNAL, "drugs", "handhaving"),
        false, KETEN_POLICY_DEFAULT_RULE);
}

static void test_allow_by_star(void **state)
{
    (void)state;
    rule_spec specs[] = {
        { 1, ALLOW, { "*" }, { "*" }, { "*" }, { 0 }, { 0 } },
    };
    policy p;
    policy_make(&p, specs, 1);
    ASSERT_DECISION(eval(&p, "a", "r1", "b", "r2", FEEDBACK, "mensenhandel", "x"), true, 1);
    ASSERT_DECISION(eval(&p, "a", "r1", "b", "r2", QUERY, "adrescheck", "y"), true, 1);
    /* Reject twins: no rules at all; an unspecified kind matches no rule. */
    policy none;
    policy_make(&none, specs, 0);
    ASSERT_DECISION(
        eval(&none, "a", "r1", "b", "r2", SIGNAL, "drugs", "x"), false, KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(eval(&p, "a", "r1", "b", "r2", KETEN__KIND__KIND_UNSPECIFIED, "drugs", "x"),
        false, KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(eval(&p, "a", "r1", "b", "r2", (Keten__Kind)99, "drugs", "x"), false,
        KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(keten_policy_evaluate(NULL, "a", "r", "b", "r", SIGNAL, "drugs", "x"), false,
        KETEN_POLICY_DEFAULT_RULE);
}

static void test_deny_wins_both_orders(void **state)
{
    (void)state;
    rule_spec allow = { 1, ALLOW, { "*" }, { "*" }, { "*" }, { 0 }, { 0 } };
    rule_spec deny = { 2, DENY, { "*" }, { "role:tax" }, { "woonfraude" }, { 0 }, { 0 } };
    rule_spec forward[] = { allow, deny };
    rule_spec backward[] = { deny, allow };
    policy p1;
    policy p2;
    policy_make(&p1, forward, 2);
    policy_make(&p2, backward, 2);
    const policy *both[] = { &p1, &p2 };
    for (size_t i = 0; i < 2; i++) {
        ASSERT_DECISION(eval(both[i], "gemeente-diemen", "municipality", "belasting", "tax", SIGNAL,
                            "woonfraude", "handhaving"),
            false, 2);
        /* Twins the deny does not cover stay allowed by rule 1. */
        ASSERT_DECISION(eval(both[i], "gemeente-diemen", "municipality", "politie-mn", "police",
                            SIGNAL, "woonfraude", "handhaving"),
            true, 1);
        ASSERT_DECISION(eval(both[i], "gemeente-diemen", "municipality", "belasting", "tax", SIGNAL,
                            "drugs", "handhaving"),
            true, 1);
    }
}

static void test_lowest_matching_id_decides(void **state)
{
    (void)state;
    rule_spec r9 = { 9, DENY, { "role:police" }, { "*" }, { "*" }, { 0 }, { 0 } };
    rule_spec r4 = { 4, DENY, { "*" }, { "role:tax" }, { "drugs" }, { 0 }, { 0 } };
    rule_spec r6 = { 6, ALLOW, { "*" }, { "*" }, { "drugs" }, { 0 }, { 0 } };
    rule_spec r2 = { 2, ALLOW, { "role:police" }, { "role:tax" }, { "*" }, { 0 }, { 0 } };
    rule_spec orders[3][4] = {
        { r9, r4, r6, r2 },
        { r2, r6, r4, r9 },
        { r6, r9, r2, r4 },
    };
    for (size_t o = 0; o < 3; o++) {
        policy p;
        policy_make(&p, orders[o], 4);
        /* police -> tax, drugs: denies 9 and 4 match; the lowest (4) decides. */
        ASSERT_DECISION(
            eval(&p, "politie-mn", "police", "belasting", "tax", SIGNAL, "drugs", "handhaving"),
            false, 4);
        /* police -> tax, woonfraude: deny 9 matches, allow 2 too; deny wins. */
        ASSERT_DECISION(eval(&p, "politie-mn", "police", "belasting", "tax", SIGNAL, "woonfraude",
                            "handhaving"),
            false, 9);
        /* municipality -> police, drugs: only allow 6. */
        ASSERT_DECISION(eval(&p, "gemeente-diemen", "municipality", "politie-mn", "police", SIGNAL,
                            "drugs", "handhaving"),
            true, 6);
        /* municipality -> tax, drugs: deny 4 beats allow 6. */
        ASSERT_DECISION(eval(&p, "gemeente-diemen", "municipality", "belasting", "tax", SIGNAL,
                            "drugs", "handhaving"),
            false, 4);
    }
    /* Two allows: the lowest id is named, whatever the order. */
    rule_spec a5 = { 5, ALLOW, { "*" }, { "*" }, { "drugs" }, { 0 }, { 0 } };
    rule_spec a3 = { 3, ALLOW, { "role:police" }, { "*" }, { "*" }, { 0 }, { 0 } };
    rule_spec allows[2][2] = { { a5, a3 }, { a3, a5 } };
    for (size_t o = 0; o < 2; o++) {
        policy p;
        policy_make(&p, allows[o], 2);
        ASSERT_DECISION(
            eval(&p, "politie-mn", "police", "belasting", "tax", SIGNAL, "drugs", "x"), true, 3);
        ASSERT_DECISION(
            eval(&p, "gemeente-diemen", "municipality", "belasting", "tax", SIGNAL, "drugs", "x"),
            true, 5);
    }
}

static void test_kinds_filter(void **state)
{
    (void)state;
    rule_spec specs[] = {
        { 1, ALLOW, { "role:riec" }, { "*" }, { "adrescheck" }, { QUERY }, { 0 } },
        { 2, ALLOW, { "*" }, { "role:riec" }, { "adrescheck" }, { REPLY, FEEDBACK }, { 0 } },
    };
    policy p;
    policy_make(&p, specs, 2);
    ASSERT_DECISION(eval(&p, "riec-amsterdam", "riec", "politie-mn", "police", QUERY, "adrescheck",
                        "handhaving"),
        true, 1);
    ASSERT_DECISION(eval(&p, "riec-amsterdam", "riec", "politie-mn", "police", SIGNAL, "adrescheck",
                        "handhaving"),
        false, KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(eval(&p, "politie-mn", "police", "riec-amsterdam", "riec", REPLY, "adrescheck",
                        "handhaving"),
        true, 2);
    ASSERT_DECISION(eval(&p, "politie-mn", "police", "riec-amsterdam", "riec", FEEDBACK,
                        "adrescheck", "handhaving"),
        true, 2);
    ASSERT_DECISION(eval(&p, "politie-mn", "police", "riec-amsterdam", "riec", QUERY, "adrescheck",
                        "handhaving"),
        false, KETEN_POLICY_DEFAULT_RULE);
}

static void test_purposes_filter(void **state)
{
    (void)state;
    rule_spec specs[] = {
        { 1, ALLOW, { "*" }, { "role:police" }, { "drugs" }, { 0 }, { "handhaving" } },
        { 2, ALLOW, { "*" }, { "role:tax" }, { "drugs" }, { 0 }, { "*" } },
        { 3, DENY, { "*" }, { "role:housing" }, { "drugs" }, { 0 }, { "riec-convenant/art-5" } },
        { 4, ALLOW, { "*" }, { "role:housing" }, { "drugs" }, { 0 }, { 0 } },
    };
    policy p;
    policy_make(&p, specs, 4);
    ASSERT_DECISION(
        eval(&p, "a", "municipality", "politie-mn", "police", SIGNAL, "drugs", "handhaving"), true,
        1);
    ASSERT_DECISION(eval(&p, "a", "municipality", "politie-mn", "police", SIGNAL, "drugs",
                        "riec-convenant/art-5"),
        false, KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(eval(&p, "a", "municipality", "politie-mn", "police", SIGNAL, "drugs", ""),
        false, KETEN_POLICY_DEFAULT_RULE);
    ASSERT_DECISION(
        eval(&p, "a", "municipality", "belasting", "tax", SIGNAL, "drugs", "anything-at-all"), true,
        2);
    /* Empty purposes: all purposes; a purpose-limited deny still wins. */
    ASSERT_DECISION(
        eval(&p, "a", "municipality", "woco", "housing", SIGNAL, "drugs", "handhaving"), true, 4);
    ASSERT_DECISION(
        eval(&p, "a", "municipality", "woco", "housing", SIGNAL, "drugs", "riec-convenant/art-5"),
        false, 3);
}

static void test_party_syntax(void **state)
{
    (void)state;
    const char *good[] = { "politie-mn", "role:police", "*", "a", "role:a-b-9",
        "abcdefghijklmnopqrstuvwxyz012345" };
    const char *bad[] = { "", "role:", "Role:police", "role:Police", "Politie", "a,b", "**",
        "role:*", "role: police", " politie", "politie/mn", "abcdefghijklmnopqrstuvwxyz0123456",
        "role:abcdefghijklmnopqrstuvwxyz0123456" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        assert_true(keten_policy_party_valid(good[i]));
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(keten_policy_party_valid(bad[i]));
    }
    assert_false(keten_policy_party_valid(NULL));

    assert_true(keten_policy_party_matches("*", "x", "y"));
    assert_true(keten_policy_party_matches("role:police", "politie-mn", "police"));
    assert_false(keten_policy_party_matches("role:police", "police", "tax"));
    assert_true(keten_policy_party_matches("politie-mn", "politie-mn", "police"));
    assert_false(keten_policy_party_matches("politie-mn", "politie-ams", "politie-mn"));
    assert_false(keten_policy_party_matches("politie-mn", NULL, "police"));
    assert_false(keten_policy_party_matches("role:police", "politie-mn", NULL));
    assert_false(keten_policy_party_matches(NULL, "politie-mn", "police"));
}

static void test_rule_check(void **state)
{
    (void)state;
    char *star[] = { (char *)"*" };
    char *cat[] = { (char *)"woonfraude" };
    Keten__Kind kinds[] = { SIGNAL };
    Keten__PolicyRule r = KETEN__POLICY_RULE__INIT;
    r.id = 1;
    r.effect = ALLOW;
    r.from = star;
    r.n_from = 1;
    r.to = star;
    r.n_to = 1;
    r.categories = cat;
    r.n_categories = 1;
    r.kinds = kinds;
    r.n_kinds = 1;
    assert_int_equal(keten_policy_rule_check(&r), KETEN_OK);

    Keten__PolicyRule t = r;
    t.id = 0;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_INVALID);
    t = r;
    t.effect = KETEN__EFFECT__EFFECT_UNSPECIFIED;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_INVALID);
    t = r;
    t.n_from = 0;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_INVALID);
    t = r;
    t.n_to = 0;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_INVALID);
    t = r;
    t.n_categories = 0;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_INVALID);
    char *bad_party[] = { (char *)"role:" };
    t = r;
    t.to = bad_party;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_BAD_NAME);
    t = r;
    t.from = bad_party;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_BAD_NAME);
    char *bad_label[] = { (char *)"Woon fraude" };
    t = r;
    t.categories = bad_label;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_BAD_NAME);
    t = r;
    t.purposes = bad_label;
    t.n_purposes = 1;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_BAD_NAME);
    Keten__Kind bad_kinds[] = { (Keten__Kind)5 };
    t = r;
    t.kinds = bad_kinds;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_INVALID);
    Keten__Kind zero_kind[] = { KETEN__KIND__KIND_UNSPECIFIED };
    t = r;
    t.kinds = zero_kind;
    assert_int_equal(keten_policy_rule_check(&t), KETEN_ERR_INVALID);
    assert_int_equal(keten_policy_rule_check(NULL), KETEN_ERR_INVALID);

    /* A rule without categories is invalid, and evaluation never lets it
     * match anything. */
    Keten__PolicyRule empty = r;
    empty.n_categories = 0;
    empty.n_kinds = 0;
    Keten__PolicyRule *ptrs[] = { &empty };
    Keten__Directory doc = KETEN__DIRECTORY__INIT;
    doc.rules = ptrs;
    doc.n_rules = 1;
    ASSERT_DECISION(keten_policy_evaluate(&doc, "a", "r", "b", "r", SIGNAL, "woonfraude", "x"),
        false, KETEN_POLICY_DEFAULT_RULE);
    empty.n_categories = 1;
    ASSERT_DECISION(
        keten_policy_evaluate(&doc, "a", "r", "b", "r", SIGNAL, "woonfraude", "x"), true, 1);
}

static void test_kind_names(void **state)
{
    (void)state;
    const char *names[] = { "signal", "query", "reply", "feedback" };
    const Keten__Kind kinds[] = { SIGNAL, QUERY, REPLY, FEEDBACK };
    for (size_t i = 0; i < 4; i++) {
        Keten__Kind k = KETEN__KIND__KIND_UNSPECIFIED;
        assert_int_equal(keten_policy_kind_parse(names[i], &k), KETEN_OK);
        assert_int_equal(k, kinds[i]);
        assert_string_equal(keten_policy_kind_name(kinds[i]), names[i]);
    }
    Keten__Kind k = KETEN__KIND__KIND_UNSPECIFIED;
    const char *bad[] = { "Signal", "signals", "", "unspecified", "kind_signal" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(keten_policy_kind_parse(bad[i], &k), KETEN_ERR_INVALID);
    }
    assert_int_equal(keten_policy_kind_parse(NULL, &k), KETEN_ERR_INVALID);
    assert_int_equal(k, KETEN__KIND__KIND_UNSPECIFIED);
    assert_string_equal(keten_policy_kind_name(KETEN__KIND__KIND_UNSPECIFIED), "unspecified");
}

/* The policy of a real directory, edited with dirbuild, signed and verified. */
static void test_signed_directory_policy(void **state)
{
    (void)state;
    const char *specs[] = { "broker:broker", "gemeente-diemen:municipality", "politie-mn:police",
        "belasting:tax", NULL };
    fixture *f = fixture_new(3, 2, specs);
    uint32_t id = 0;
    assert_int_equal(keten_dirbuild_add_rule(f->draft, DENY, "role:municipality", "belasting",
                         "drugs", "signal,query", NULL, &id),
        KETEN_OK);
    assert_int_equal(id, 2);
    size_t len = 0;
    free(fixture_publish(f, &len));
    const Keten__Directory *doc = keten_directory_doc(f->directory);
    assert_int_equal(keten_directory_version(f->directory), 2);
    keten_policy_decision d = keten_policy_evaluate(
        doc, "gemeente-diemen", "municipality", "belasting", "tax", SIGNAL, "drugs", "handhaving");
    ASSERT_DECISION(d, false, 2);
    d = keten_policy_evaluate(doc, "gemeente-diemen", "municipality", "belasting", "tax", FEEDBACK,
        "drugs", "handhaving");
    ASSERT_DECISION(d, true, 1);
    d = keten_policy_evaluate(doc, "gemeente-diemen", "municipality", "politie-mn", "police",
        SIGNAL, "drugs", "handhaving");
    ASSERT_DECISION(d, true, 1);
    /* Removing the allow-all rule leaves default deny (rule 0). */
    assert_int_equal(keten_dirbuild_remove_rule(f->draft, 1), KETEN_OK);
    free(fixture_publish(f, &len));
    d = keten_policy_evaluate(keten_directory_doc(f->directory), "gemeente-diemen", "municipality",
        "politie-mn", "police", SIGNAL, "drugs", "handhaving");
    ASSERT_DECISION(d, false, KETEN_POLICY_DEFAULT_RULE);
    fixture_destroy(&f);
    assert_null(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_by_role),
        cmocka_unit_test(test_allow_by_id),
        cmocka_unit_test(test_allow_by_star),
        cmocka_unit_test(test_deny_wins_both_orders),
        cmocka_unit_test(test_lowest_matching_id_decides),
        cmocka_unit_test(test_kinds_filter),
        cmocka_unit_test(test_purposes_filter),
        cmocka_unit_test(test_party_syntax),
        cmocka_unit_test(test_rule_check),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_signed_directory_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
