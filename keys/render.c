#include "render.h"

#include "cli.h"
#include "policy.h"
#include "util.h"

const char *render_effect(Keten__Effect effect)
{
    switch (effect) {
    case KETEN__EFFECT__EFFECT_ALLOW:
        return "allow";
    case KETEN__EFFECT__EFFECT_DENY:
        return "deny";
    default:
        return "unspecified";
    }
}

static void joined(FILE *f, char *const *v, size_t n, const char *none)
{
    if (n == 0) {
        fputs(none, f);
    }
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s%s", i > 0 ? "," : "", v[i]);
    }
}

void render_rule_text(FILE *f, const Keten__PolicyRule *r)
{
    fprintf(f, "rule %u: %s from ", (unsigned)r->id, render_effect(r->effect));
    joined(f, r->from, r->n_from, "-");
    fputs(" to ", f);
    joined(f, r->to, r->n_to, "-");
    fputs(" category ", f);
    joined(f, r->categories, r->n_categories, "-");
    fputs(" kind ", f);
    if (r->n_kinds == 0) {
        fputs("all", f);
    }
    for (size_t i = 0; i < r->n_kinds; i++) {
        fprintf(f, "%s%s", i > 0 ? "," : "", keten_policy_kind_name(r->kinds[i]));
    }
    fputs(" purpose ", f);
    joined(f, r->purposes, r->n_purposes, "all");
    fputc('\n', f);
}

json_t *render_strings_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *render_rule_json(const Keten__PolicyRule *r)
{
    json_t *kinds = json_array();
    for (size_t i = 0; kinds != NULL && i < r->n_kinds; i++) {
        json_array_append_new(kinds, json_string(keten_policy_kind_name(r->kinds[i])));
    }
    return json_pack("{s:I, s:s, s:o, s:o, s:o, s:o, s:o}", "id", (json_int_t)r->id, "effect",
        render_effect(r->effect), "from", render_strings_json(r->from, r->n_from), "to",
        render_strings_json(r->to, r->n_to), "categories",
        render_strings_json(r->categories, r->n_categories), "kinds", kinds, "purposes",
        render_strings_json(r->purposes, r->n_purposes));
}

json_t *render_key_json(const ProtobufCBinaryData *key)
{
    if (key->len != KETEN_SIGN_PK_BYTES) {
        return json_string("(invalid length)");
    }
    char b64[KETEN_CLI_KEY_B64_BYTES];
    keten_cli_key_b64(key->data, b64);
    return json_string(b64);
}

json_t *render_cert_json(const Keten__NodeCert *c)
{
    char nb[32], na[32];
    keten_time_iso(c->not_before, nb, sizeof nb);
    keten_time_iso(c->not_after, na, sizeof na);
    json_t *obj = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:o, s:o, s:o}", "id", c->id, "role",
        c->role, "org", c->org, "serial", (json_int_t)c->serial, "not_before", nb, "not_after", na,
        "sign_pk", render_key_json(&c->sign_pk), "enc_pk", render_key_json(&c->enc_pk),
        "transport_pk", render_key_json(&c->transport_pk));
    if (obj != NULL && c->log_pk.len > 0
        && json_object_set_new(obj, "log_pk", render_key_json(&c->log_pk)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *render_admin_json(const adminnames *names, const ProtobufCBinaryData *k)
{
    if (k->len != KETEN_SIGN_PK_BYTES) {
        return json_pack("{s:o}", "key", render_key_json(k));
    }
    char fpr[ADMINKEY_FPR_BYTES];
    adminkey_fingerprint(k->data, fpr);
    return json_pack("{s:o, s:s, s:s?}", "key", render_key_json(k), "fingerprint", fpr, "name",
        adminnames_find(names, k->data));
}
