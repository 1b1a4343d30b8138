/*
 * keten-keys policy: the sharing agreement in the next directory version.
 *   allow|deny  add a rule
 *   list        print the rules
 *   explain     say whether a message would pass, and which rule decides
 *   remove      delete a rule by its id
 * Deny wins over allow; what no rule allows is refused (policy.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admindir.h"
#include "cli.h"
#include "cmd.h"
#include "policy.h"
#include "render.h"
#include "util.h"

#define CMD "policy"

static const char usage_text[]
    = "Usage: keten-keys policy --dir ADMIN allow|deny --from PARTIES --to PARTIES\n"
      "                         --category C[,C] [--kind K[,K]] [--purpose P[,P]]\n"
      "                         [--allow-unknown-role]\n"
      "       keten-keys policy --dir ADMIN list [--json]\n"
      "       keten-keys policy --dir ADMIN explain --from ID --to ID --category C\n"
      "                         [--kind K] [--purpose P] [--json]\n"
      "       keten-keys policy --dir ADMIN remove RULE_ID\n"
      "\n"
      "Edit the sharing rules of the next directory version. A party is a node id\n"
      "(politie-mn), a role (role:police) or * (everyone); lists are\n"
      "comma-separated. A rule covers its categories (* for all registered ones),\n"
      "its kinds (signal, query, reply, feedback; all when not given) and its\n"
      "purposes (all when not given); categories and purposes must be registered.\n"
      "A role must be known: a standard role (municipality, police, tax, housing,\n"
      "riec) or the role of a partner in the draft. An unknown role is refused,\n"
      "with the role it most likely meant: a typo would give a rule that never\n"
      "matches, and a deny rule that never matches denies nothing.\n"
      "A message passes when an allow rule matches it and no deny rule does:\n"
      "deny wins, and what no rule allows is refused (default deny).\n"
      "\n"
      "  allow, deny   add a rule; prints its id\n"
      "  list          print the rules\n"
      "  explain       whether a message from node ID (or role:NAME) to node ID would\n"
      "                pass, and which rule decides; exit 0 allowed, 1 refused\n"
      "  remove        delete rule RULE_ID\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --from, --to PARTIES   sender and recipient parties\n"
      "  --category C[,C]       categories (signal types)\n"
      "  --kind K[,K]           kinds (default: all; for explain: signal)\n"
      "  --purpose P[,P]        purposes (default: all)\n"
      "  --allow-unknown-role   accept a role no partner has yet (allow, deny,\n"
      "                         explain): the rule matches once one has it\n"
      "  --json                 JSON output (list, explain)\n"
      "  --help                 show this help\n";

typedef struct args {
    const char *dir, *from, *to, *category, *kind, *purpose;
    bool json, allow_unknown_role;
} args;

/* The roles in --from and --to must be known, unless --allow-unknown-role;
 * with it, each unknown role is warned about. */
static keten_err check_roles(const admindir *ad, const args *a)
{
    const char *lists[2] = { a->from, a->to };
    const char *whats[2] = { "--from", "--to" };
    for (int i = 0; i < 2; i++) {
        if (!a->allow_unknown_role) {
            keten_err e = keten_dirbuild_check_roles(ad->draft, lists[i], whats[i]);
            if (e != KETEN_OK) {
                return e;
            }
            continue;
        }
        char **items = NULL;
        size_t n = 0;
        keten_err e = keten_cli_split(lists[i], whats[i], &items, &n);
        for (size_t j = 0; e == KETEN_OK && j < n; j++) {
            if (strncmp(items[j], "role:", 5) == 0 && keten_name_valid(items[j] + 5)
                && !keten_dirbuild_role_known(ad->draft, items[j] + 5)) {
                keten_cli_warn("%s %s: no partner in the draft has this role and it is not a "
                               "standard role (--allow-unknown-role); the rule matches nobody "
                               "through it until such a partner is approved",
                    whats[i], items[j]);
            }
        }
        keten_cli_split_free(&items, n);
        if (e != KETEN_OK) {
            return e;
        }
    }
    return KETEN_OK;
}

static const Keten__PolicyRule *find_rule(const Keten__Directory *doc, uint32_t id)
{
    for (size_t i = 0; i < doc->n_rules; i++) {
        if (doc->rules[i]->id == id) {
            return doc->rules[i];
        }
    }
    return NULL;
}

static const Keten__NodeCert *find_node(const Keten__Directory *doc, const char *id)
{
    for (size_t i = 0; i < doc->n_nodes; i++) {
        if (strcmp(doc->nodes[i]->id, id) == 0) {
            return doc->nodes[i];
        }
    }
    return NULL;
}

static bool registered(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

/* The current node id of the draft nearest to id, when it is close enough
 * to be a typo of it (2 edits at most), or NULL. */
static const char *closest_node(const Keten__Directory *doc, const char *id)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        size_t d = keten_edit_distance(id, doc->nodes[i]->id);
        if (d < best_d) {
            best_d = d;
            best = doc->nodes[i]->id;
        }
    }
    return best;
}

/* Check a list option item by item so that the message names the bad one. */
static keten_err check_list(
    const Keten__Directory *doc, const char *list, const char *what, int kind)
{
    char **items = NULL;
    size_t n = 0;
    keten_err e = keten_cli_split(list, what, &items, &n);
    for (size_t i = 0; e == KETEN_OK && i < n; i++) {
        const char *s = items[i];
        switch (kind) {
        case 'p': /* party */
            if (!keten_policy_party_valid(s)) {
                e = keten_err_set(KETEN_ERR_BAD_NAME,
                    "%s '%s' is not a party: give a node id, role:NAME or *", what, s);
            } else if (strchr(s, ':') == NULL && strcmp(s, "*") != 0 && find_node(doc, s) == NULL) {
                const char *near = closest_node(doc, s);
                if (near != NULL) {
                    keten_cli_warn("%s %s: no node with that id is enrolled yet (did you mean "
                                   "%s?); the rule applies only to a partner enrolled later "
                                   "under that id",
                        what, s, near);
                } else {
                    keten_cli_warn("%s %s: no node with that id is enrolled yet", what, s);
                }
            }
            break;
        case 'k': { /* kind */
            Keten__Kind k;
            if (keten_policy_kind_parse(s, &k) != KETEN_OK) {
                e = keten_err_set(KETEN_ERR_INVALID,
                    "%s '%s' is not a kind: use signal, query, reply or feedback", what, s);
            }
            break;
        }
        case 'c': /* category */
            if (strcmp(s, "*") != 0 && !registered(doc->categories, doc->n_categories, s)) {
                e = keten_err_set(KETEN_ERR_UNREGISTERED,
                    "category '%s' is not registered; register it first: keten-keys register "
                    "--dir ADMIN --category %s",
                    s, s);
            }
            break;
        default: /* purpose */
            if (strcmp(s, "*") != 0 && !registered(doc->purposes, doc->n_purposes, s)) {
                e = keten_err_set(KETEN_ERR_UNREGISTERED,
                    "purpose '%s' is not registered; register it first: keten-keys register "
                    "--dir ADMIN --purpose %s",
                    s, s);
            }
            break;
        }
    }
    keten_cli_split_free(&items, n);
    return e;
}

static int policy_add(const args *a, Keten__Effect effect)
{
    const char *verb = effect == KETEN__EFFECT__EFFECT_ALLOW ? "allow" : "deny";
    if (a->from == NULL || a->to == NULL || a->category == NULL) {
        return keten_cli_usage(CMD, "%s needs --from, --to and --category", verb);
    }
    admindir *ad = NULL;
    uint32_t id = 0;
    keten_err e = admindir_open(a->dir, &ad);
    if (e != KETEN_OK) {
        goto out;
    }
    const Keten__Directory *doc = keten_dirbuild_doc(ad->draft);
    if ((e = check_list(doc, a->from, "--from", 'p')) != KETEN_OK
        || (e = check_list(doc, a->to, "--to", 'p')) != KETEN_OK
        || (e = check_roles(ad, a)) != KETEN_OK
        || (e = check_list(doc, a->category, "--category", 'c')) != KETEN_OK
        || (a->kind != NULL && (e = check_list(doc, a->kind, "--kind", 'k')) != KETEN_OK)
        || (a->purpose != NULL
            && (e = check_list(doc, a->purpose, "--purpose", 'u')) != KETEN_OK)) {
        goto out;
    }
    if ((e = admindir_reserve_rule_ids(ad)) != KETEN_OK) {
        goto out;
    }
    e = keten_dirbuild_add_rule(
        ad->draft, effect, a->from, a->to, a->category, a->kind, a->purpose, &id);
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = admindir_save(ad)) != KETEN_OK) {
        goto out;
    }
    doc = keten_dirbuild_doc(ad->draft);
    const Keten__PolicyRule *rule = find_rule(doc, id);
    if (a->json) {
        e = keten_cli_json_print(rule != NULL ? render_rule_json(rule) : NULL);
    } else {
        printf("added ");
        if (rule != NULL) {
            render_rule_text(stdout, rule);
        } else {
            printf("rule %u\n", (unsigned)id);
        }
        printf("takes effect when version %llu is published and signed\n",
            (unsigned long long)doc->version);
    }
out:
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}

static int policy_list(const args *a)
{
    admindir *ad = NULL;
    keten_err e = admindir_open(a->dir, &ad);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    const Keten__Directory *doc = keten_dirbuild_doc(ad->draft);
    if (a->json) {
        json_t *rules = json_array();
        for (size_t i = 0; rules != NULL && i < doc->n_rules; i++) {
            json_array_append_new(rules, render_rule_json(doc->rules[i]));
        }
        e = keten_cli_json_print(
            json_pack("{s:I, s:o}", "version", (json_int_t)doc->version, "rules", rules));
    } else {
        printf("rules of the next version %llu (deny wins; what no rule allows is refused):\n",
            (unsigned long long)doc->version);
        if (doc->n_rules == 0) {
            printf("(no rules: everything is refused)\n");
        }
        for (size_t i = 0; i < doc->n_rules; i++) {
            render_rule_text(stdout, doc->rules[i]);
        }
    }
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}

/* A node id from the draft, or role:NAME for any node of that role. */
static keten_err resolve_party(const Keten__Directory *doc, const char *party, const char *what,
    const char **id, const char **role)
{
    if (strncmp(party, "role:", 5) == 0) {
        if (!keten_name_valid(party + 5)) {
            return keten_err_set(KETEN_ERR_BAD_NAME, "%s '%s' has no valid role name", what, party);
        }
        *id = "";
        *role = party + 5;
        return KETEN_OK;
    }
    const Keten__NodeCert *cert = find_node(doc, party);
    if (cert == NULL) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "%s %s is not a node of the next version; approve it first, or give role:NAME", what,
            party);
    }
    *id = cert->id;
    *role = cert->role;
    return KETEN_OK;
}

static int policy_explain(const args *a)
{
    if (a->from == NULL || a->to == NULL || a->category == NULL) {
        return keten_cli_usage(CMD, "explain needs --from, --to and --category");
    }
    if (strchr(a->category, ',') != NULL || (a->kind != NULL && strchr(a->kind, ',') != NULL)
        || (a->purpose != NULL && strchr(a->purpose, ',') != NULL)) {
        return keten_cli_usage(CMD, "explain takes one --category, --kind and --purpose");
    }
    Keten__Kind kind = KETEN__KIND__KIND_SIGNAL;
    if (a->kind != NULL && keten_policy_kind_parse(a->kind, &kind) != KETEN_OK) {
        return keten_cli_usage(CMD, "--kind '%s' is not signal, query, reply or feedback", a->kind);
    }
    const char *purpose = a->purpose != NULL ? a->purpose : "";
    admindir *ad = NULL;
    keten_err e = admindir_open(a->dir, &ad);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    const Keten__Directory *doc = keten_dirbuild_doc(ad->draft);
    const char *from_id, *from_role, *to_id, *to_role;
    if ((e = check_roles(ad, a)) != KETEN_OK
        || (e = resolve_party(doc, a->from, "--from", &from_id, &from_role)) != KETEN_OK
        || (e = resolve_party(doc, a->to, "--to", &to_id, &to_role)) != KETEN_OK) {
        admindir_close(&ad);
        return keten_cli_error(e);
    }
    keten_policy_decision d = { .allowed = false, .rule = KETEN_POLICY_DEFAULT_RULE };
    const char *why;
    char text[256];
    if (!registered(doc->categories, doc->n_categories, a->category)) {
        why = "unregistered";
        snprintf(text, sizeof text, "refused: category '%s' is not registered", a->category);
    } else if (purpose[0] != '\0' && !registered(doc->purposes, doc->n_purposes, purpose)) {
        why = "unregistered";
        snprintf(text, sizeof text, "refused: purpose '%s' is not registered", purpose);
    } else {
        d = keten_policy_evaluate(
            doc, from_id, from_role, to_id, to_role, kind, a->category, purpose);
        if (d.allowed) {
            why = "rule";
            snprintf(text, sizeof text, "allowed by rule %u", (unsigned)d.rule);
        } else if (d.rule != KETEN_POLICY_DEFAULT_RULE) {
            why = "rule";
            snprintf(text, sizeof text, "refused by rule %u", (unsigned)d.rule);
        } else {
            why = "default";
            snprintf(text, sizeof text, "refused: no rule allows it (default deny)");
        }
    }
    const Keten__PolicyRule *rule = d.rule != 0 ? find_rule(doc, d.rule) : NULL;
    if (a->json) {
        json_t *obj = json_pack("{s:b, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "allowed",
            d.allowed, "rule", (json_int_t)d.rule, "decided_by", why, "from", a->from, "from_role",
            from_role, "to", a->to, "to_role", to_role, "kind", keten_policy_kind_name(kind),
            "category", a->category, "purpose", purpose);
        if (obj != NULL && rule != NULL) {
            json_object_set_new(obj, "rule_text", render_rule_json(rule));
        }
        e = keten_cli_json_print(obj);
    } else {
        printf("%s (%s) -> %s (%s), %s, category %s, purpose %s: %s\n", a->from, from_role, a->to,
            to_role, keten_policy_kind_name(kind), a->category,
            purpose[0] != '\0' ? purpose : "(none)", text);
        if (rule != NULL) {
            printf("  ");
            render_rule_text(stdout, rule);
        }
    }
    admindir_close(&ad);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    return d.allowed ? KETEN_EXIT_OK : KETEN_EXIT_FAILURE;
}

static int policy_remove(const args *a, const char *id_arg)
{
    uint64_t id = 0;
    if (!keten_cli_parse_uint(id_arg, 1, UINT32_MAX, &id)) {
        return keten_cli_usage(CMD, "RULE_ID '%s' is not a rule number (see policy list)", id_arg);
    }
    admindir *ad = NULL;
    keten_err e = admindir_open(a->dir, &ad);
    if (e != KETEN_OK) {
        goto out;
    }
    if (find_rule(keten_dirbuild_doc(ad->draft), (uint32_t)id) == NULL) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "there is no rule %llu in the next version; see keten-keys policy --dir %s list",
            (unsigned long long)id, a->dir);
        goto out;
    }
    if ((e = keten_dirbuild_remove_rule(ad->draft, (uint32_t)id)) != KETEN_OK) {
        goto out;
    }
    if ((e = admindir_save(ad)) != KETEN_OK) {
        goto out;
    }
    if (a->json) {
        e = keten_cli_json_print(json_pack("{s:I}", "removed", (json_int_t)id));
    } else {
        printf("removed rule %llu\n", (unsigned long long)id);
    }
out:
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}

int cmd_policy(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "from", required_argument, NULL, 'f' },
        { "to", required_argument, NULL, 't' },
        { "category", required_argument, NULL, 'c' },
        { "kind", required_argument, NULL, 'k' },
        { "purpose", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "allow-unknown-role", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    args a = { 0 };
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            a.dir = optarg;
            break;
        case 'f':
            a.from = optarg;
            break;
        case 't':
            a.to = optarg;
            break;
        case 'c':
            a.category = optarg;
            break;
        case 'k':
            a.kind = optarg;
            break;
        case 'p':
            a.purpose = optarg;
            break;
        case 'j':
            a.json = true;
            break;
        case 'U':
            a.allow_unknown_role = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error(CMD, c, argc, argv);
        }
    }
    if (a.dir == NULL) {
        return keten_cli_usage(CMD, "--dir ADMIN is required");
    }
    if (optind >= argc) {
        return keten_cli_usage(CMD, "say what to do: allow, deny, list, explain or remove");
    }
    const char *verb = argv[optind];
    int rest = argc - optind - 1;
    if (strcmp(verb, "remove") == 0) {
        if (rest != 1) {
            return keten_cli_usage(CMD, "remove takes exactly one RULE_ID");
        }
        return policy_remove(&a, argv[optind + 1]);
    }
    if (rest > 0) {
        return keten_cli_usage(CMD, "unexpected argument '%s'", argv[optind + 1]);
    }
    bool edits = strcmp(verb, "allow") == 0 || strcmp(verb, "deny") == 0;
    if (strcmp(verb, "list") == 0) {
        if (a.from != NULL || a.to != NULL || a.category != NULL || a.kind != NULL
            || a.purpose != NULL) {
            return keten_cli_usage(CMD,
                "list takes no --from, --to, --category, --kind or "
                "--purpose");
        }
        return policy_list(&a);
    }
    if (strcmp(verb, "explain") == 0) {
        return policy_explain(&a);
    }
    if (edits) {
        return policy_add(
            &a, verb[0] == 'a' ? KETEN__EFFECT__EFFECT_ALLOW : KETEN__EFFECT__EFFECT_DENY);
    }
    return keten_cli_usage(CMD,
        "unknown policy action '%s': use allow, deny, list, explain or "
        "remove",
        verb);
}
