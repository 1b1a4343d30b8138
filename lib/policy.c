/*
 * policy.c - evaluation and syntax of the sharing agreement (see policy.h).
 */
#include "policy.h"

#include <string.h>

#include "util.h"

#define ROLE_PREFIX "role:"
#define ROLE_PREFIX_LEN (sizeof ROLE_PREFIX - 1)

static const char *const kind_names[] = {
    [KETEN__KIND__KIND_SIGNAL] = "signal",
    [KETEN__KIND__KIND_QUERY] = "query",
    [KETEN__KIND__KIND_REPLY] = "reply",
    [KETEN__KIND__KIND_FEEDBACK] = "feedback",
};
#define KIND_MIN KETEN__KIND__KIND_SIGNAL
#define KIND_MAX KETEN__KIND__KIND_FEEDBACK

static bool kind_known(int kind)
{
    return kind >= KIND_MIN && kind <= KIND_MAX;
}

const char *keten_policy_kind_name(Keten__Kind kind)
{
    if (!kind_known((int)kind)) {
        return "unspecified";
    }
    return kind_names[kind];
}

keten_err keten_policy_kind_parse(const char *name, Keten__Kind *out)
{
    if (name != NULL) {
        for (int k = KIND_MIN; k <= KIND_MAX; k++) {
            if (strcmp(name, kind_names[k]) == 0) {
                *out = (Keten__Kind)k;
                return KETEN_OK;
            }
        }
    }
    return keten_err_set(KETEN_ERR_INVALID,
        "kind '%.40s' is unknown; use signal, query, reply or feedback",
        name != NULL ? name : "(none)");
}

bool keten_policy_party_valid(const char *party)
{
    if (party == NULL) {
        return false;
    }
    if (strcmp(party, "*") == 0) {
        return true;
    }
    if (strncmp(party, ROLE_PREFIX, ROLE_PREFIX_LEN) == 0) {
        return keten_name_valid(party + ROLE_PREFIX_LEN);
    }
    return keten_name_valid(party);
}

bool keten_policy_party_matches(const char *party, const char *id, const char *role)
{
    if (party == NULL) {
        return false;
    }
    if (strcmp(party, "*") == 0) {
        return true;
    }
    if (strncmp(party, ROLE_PREFIX, ROLE_PREFIX_LEN) == 0) {
        return role != NULL && role[0] != '\0' && strcmp(party + ROLE_PREFIX_LEN, role) == 0;
    }
    return id != NULL && id[0] != '\0' && strcmp(party, id) == 0;
}

static bool any_party_matches(char *const *parties, size_t n, const char *id, const char *role)
{
    for (size_t i = 0; i < n; i++) {
        if (keten_policy_party_matches(parties[i], id, role)) {
            return true;
        }
    }
    return false;
}

/* A list of labels containing value or "*"; empty_means_all for the
 * optional lists (purposes). */
static bool label_listed(char *const *list, size_t n, const char *value, bool empty_means_all)
{
    if (n == 0) {
        return empty_means_all;
    }
    if (value == NULL || value[0] == '\0') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (list[i] != NULL && (strcmp(list[i], "*") == 0 || strcmp(list[i], value) == 0)) {
            return true;
        }
    }
    return false;
}

static bool kind_listed(const Keten__Kind *kinds, size_t n, Keten__Kind kind)
{
    if (!kind_known((int)kind)) {
        return false; /* never valid on the wire: matches no rule */
    }
    if (n == 0) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        if (kinds[i] == kind) {
            return true;
        }
    }
    return false;
}

static bool rule_matches(const Keten__PolicyRule *r, const char *from_id, const char *from_role,
    const char *to_id, const char *to_role, Keten__Kind kind, const char *category,
    const char *purpose)
{
    return any_party_matches(r->from, r->n_from, from_id, from_role)
        && any_party_matches(r->to, r->n_to, to_id, to_role)
        && label_listed(r->categories, r->n_categories, category, false)
        && kind_listed(r->kinds, r->n_kinds, kind)
        && label_listed(r->purposes, r->n_purposes, purpose, true);
}

keten_policy_decision keten_policy_evaluate(const Keten__Directory *doc, const char *from_id,
    const char *from_role, const char *to_id, const char *to_role, Keten__Kind kind,
    const char *category, const char *purpose)
{
    keten_policy_decision d = { .allowed = false, .rule = KETEN_POLICY_DEFAULT_RULE };
    if (doc == NULL) {
        return d;
    }
    bool have_deny = false;
    bool have_allow = false;
    uint32_t deny_id = 0;
    uint32_t allow_id = 0;
    for (size_t i = 0; i < doc->n_rules; i++) {
        const Keten__PolicyRule *r = doc->rules[i];
        if (r == NULL || r->id == KETEN_POLICY_DEFAULT_RULE) {
            continue;
        }
        if (r->effect != KETEN__EFFECT__EFFECT_ALLOW && r->effect != KETEN__EFFECT__EFFECT_DENY) {
            continue;
        }
        if (!rule_matches(r, from_id, from_role, to_id, to_role, kind, category, purpose)) {
            continue;
        }
        if (r->effect == KETEN__EFFECT__EFFECT_DENY) {
            if (!have_deny || r->id < deny_id) {
                deny_id = r->id;
            }
            have_deny = true;
        } else {
            if (!have_allow || r->id < allow_id) {
                allow_id = r->id;
            }
            have_allow = true;
        }
    }
    if (have_deny) {
        d.rule = deny_id;
    } else if (have_allow) {
        d.allowed = true;
        d.rule = allow_id;
    }
    return d;
}

static keten_err check_labels(char *const *list, size_t n, uint32_t id, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] == NULL || (strcmp(list[i], "*") != 0 && !keten_label_valid(list[i]))) {
            return keten_err_set(KETEN_ERR_BAD_NAME,
                "rule %u: %s '%.70s' is not a valid label ([a-z0-9][a-z0-9./-]{0,63}) or '*'", id,
                what, list[i] != NULL ? list[i] : "");
        }
    }
    return KETEN_OK;
}

static keten_err check_parties(char *const *list, size_t n, uint32_t id, const char *what)
{
    if (n == 0) {
        return keten_err_set(
            KETEN_ERR_INVALID, "rule %u has no '%s' party; give at least one", id, what);
    }
    for (size_t i = 0; i < n; i++) {
        if (!keten_policy_party_valid(list[i])) {
            return keten_err_set(KETEN_ERR_BAD_NAME,
                "rule %u: %s party '%.70s' is not a node id, role:NAME or '*'", id, what,
                list[i] != NULL ? list[i] : "");
        }
    }
    return KETEN_OK;
}

keten_err keten_policy_rule_check(const Keten__PolicyRule *rule)
{
    if (rule == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "a policy rule is missing");
    }
    if (rule->id == KETEN_POLICY_DEFAULT_RULE) {
        return keten_err_set(KETEN_ERR_INVALID,
            "a policy rule has id 0, which is reserved for the default deny; ids start at 1");
    }
    if (rule->effect != KETEN__EFFECT__EFFECT_ALLOW && rule->effect != KETEN__EFFECT__EFFECT_DENY) {
        return keten_err_set(
            KETEN_ERR_INVALID, "rule %u has no effect; it must allow or deny", rule->id);
    }
    keten_err e = check_parties(rule->from, rule->n_from, rule->id, "from");
    if (e != KETEN_OK) {
        return e;
    }
    e = check_parties(rule->to, rule->n_to, rule->id, "to");
    if (e != KETEN_OK) {
        return e;
    }
    if (rule->n_categories == 0) {
        return keten_err_set(
            KETEN_ERR_INVALID, "rule %u names no category; give at least one (or '*')", rule->id);
    }
    e = check_labels(rule->categories, rule->n_categories, rule->id, "category");
    if (e != KETEN_OK) {
        return e;
    }
    e = check_labels(rule->purposes, rule->n_purposes, rule->id, "purpose");
    if (e != KETEN_OK) {
        return e;
    }
    for (size_t i = 0; i < rule->n_kinds; i++) {
        if (!kind_known((int)rule->kinds[i])) {
            return keten_err_set(KETEN_ERR_INVALID,
                "rule %u lists kind %d; use signal, query, reply or feedback", rule->id,
                (int)rule->kinds[i]);
        }
    }
    return KETEN_OK;
}
