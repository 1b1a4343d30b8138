/*
 * policy.h - the sharing agreement (docs/protocol.md section 8).
 *
 * A rule matches a message when its `from` has a party matching the sender,
 * its `to` a party matching the recipient, its categories contain the
 * category (or "*"), its kinds contain the kind (empty: all kinds) and its
 * purposes contain the purpose (empty: all purposes). A party is a node id,
 * "role:NAME" or "*".
 *
 * Decision: deny wins. If any deny rule matches, the message is refused and
 * the deciding rule is the matching deny rule with the lowest id; else if any
 * allow rule matches it is allowed by the matching allow rule with the lowest
 * id; else it is refused by the default (rule 0). The result does not depend
 * on the order of the rules in the directory.
 *
 * A message to several recipients is evaluated per recipient; all must be
 * allowed. Pure functions; thread-safe.
 */
#ifndef KETEN_POLICY_H
#define KETEN_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"

#define KETEN_POLICY_DEFAULT_RULE 0

typedef struct keten_policy_decision {
    bool allowed;
    uint32_t rule; /* deciding rule id; KETEN_POLICY_DEFAULT_RULE for default deny */
} keten_policy_decision;

keten_policy_decision keten_policy_evaluate(const Keten__Directory *doc, const char *from_id,
    const char *from_role, const char *to_id, const char *to_role, Keten__Kind kind,
    const char *category, const char *purpose);

/* Party syntax: a node id, "role:" + name, or "*". */
bool keten_policy_party_valid(const char *party);

/* Does party match the node (id, role)? */
bool keten_policy_party_matches(const char *party, const char *id, const char *role);

/* Structural check of one rule: id >= 1, effect set, at least one from, to
 * and category, valid parties, categories/purposes valid labels or "*". */
keten_err keten_policy_rule_check(const Keten__PolicyRule *rule) KETEN_MUST_CHECK;

/* Kind names: "signal", "query", "reply", "feedback". */
const char *keten_policy_kind_name(Keten__Kind kind);
keten_err keten_policy_kind_parse(const char *name, Keten__Kind *out) KETEN_MUST_CHECK;

#endif
