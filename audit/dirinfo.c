#include "dirinfo.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keten.h"
#include "pb.h"
#include "policy.h"
#include "util.h"

typedef struct key_entry {
    char hex[2 * KETEN_CURVE_KEY_BYTES + 1];
    char *node;
} key_entry;

typedef struct org_entry {
    char *node, *org;
} org_entry;

/* One version's certificates and settings, kept while the next is compared
 * with it. */
typedef struct certset {
    bool read; /* a version was read */
    size_t n_nodes, n_revoked;
    char **node_ids;
    uint64_t *revoked_serials;
    size_t n_admins;
    uint8_t admins[32][KETEN_SIGN_PK_BYTES]; /* at most 32 (structural limit) */
    uint32_t threshold, witness_quorum;
    uint64_t max_lifetime;
    uint8_t policy_hash[crypto_generichash_BYTES], registry_hash[crypto_generichash_BYTES];
} certset;

struct dirinfo {
    key_entry *keys;
    size_t n_keys, cap_keys;
    org_entry *orgs;
    size_t n_orgs, cap_orgs;
    dirinfo_version *versions;
    size_t n_versions, cap_versions;
    dirinfo_change *changes;
    size_t n_changes, cap_changes;
    dirinfo_rule *rules;
    size_t n_rules, cap_rules;
    char **strs; /* every string owned */
    size_t n_strs, cap_strs;
    certset prev;
    bool failed;
};

static bool grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) {
        return true;
    }
    size_t nc = *cap == 0 ? 16 : *cap * 2;
    void *q = realloc(*p, nc * elem);
    if (q == NULL) {
        return false;
    }
    *p = q;
    *cap = nc;
    return true;
}

static const char *own(dirinfo *d, const char *s)
{
    if (s == NULL) {
        s = "";
    }
    if (!grow((void **)&d->strs, &d->cap_strs, d->n_strs, sizeof *d->strs)) {
        d->failed = true;
        return "";
    }
    char *c = strdup(s);
    if (c == NULL) {
        d->failed = true;
        return "";
    }
    d->strs[d->n_strs++] = c;
    return c;
}

static void add_key(dirinfo *d, const Keten__NodeCert *c)
{
    if (c == NULL || c->transport_pk.len != KETEN_CURVE_KEY_BYTES || c->id == NULL) {
        return;
    }
    char hex[2 * KETEN_CURVE_KEY_BYTES + 1];
    keten_hex(c->transport_pk.data, KETEN_CURVE_KEY_BYTES, hex);
    for (size_t i = 0; i < d->n_keys; i++) {
        if (strcmp(d->keys[i].hex, hex) == 0) {
            return;
        }
    }
    if (!grow((void **)&d->keys, &d->cap_keys, d->n_keys, sizeof *d->keys)) {
        d->failed = true;
        return;
    }
    key_entry *k = &d->keys[d->n_keys++];
    memcpy(k->hex, hex, sizeof hex);
    k->node = (char *)own(d, c->id);
}

static void set_org(dirinfo *d, const Keten__NodeCert *c)
{
    if (c == NULL || c->id == NULL || c->org == NULL || c->org[0] == '\0') {
        return;
    }
    for (size_t i = 0; i < d->n_orgs; i++) {
        if (strcmp(d->orgs[i].node, c->id) == 0) {
            if (strcmp(d->orgs[i].org, c->org) != 0) {
                d->orgs[i].org = (char *)own(d, c->org); /* the latest name */
            }
            return;
        }
    }
    if (!grow((void **)&d->orgs, &d->cap_orgs, d->n_orgs, sizeof *d->orgs)) {
        d->failed = true;
        return;
    }
    org_entry *o = &d->orgs[d->n_orgs++];
    o->node = (char *)own(d, c->id);
    o->org = (char *)own(d, c->org);
}

static void add_change(
    dirinfo *d, dirinfo_change_kind kind, const Keten__NodeCert *c, uint64_t at, const char *reason)
{
    if (!grow((void **)&d->changes, &d->cap_changes, d->n_changes, sizeof *d->changes)) {
        d->failed = true;
        return;
    }
    dirinfo_change *x = &d->changes[d->n_changes++];
    x->kind = kind;
    x->node = own(d, c->id);
    x->org = own(d, c->org);
    x->serial = c->serial;
    x->at = at;
    x->reason = own(d, reason);
}

/* v joined with ", ", owned by d. */
static const char *joined(dirinfo *d, char *const *v, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++) {
        len += strlen(v[i] != NULL ? v[i] : "") + 2;
    }
    char *buf = malloc(len);
    if (buf == NULL) {
        d->failed = true;
        return "";
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const char *x = v[i] != NULL ? v[i] : "";
        size_t xl = strlen(x);
        if (i > 0) {
            memcpy(buf + at, ", ", 2);
            at += 2;
        }
        memcpy(buf + at, x, xl);
        at += xl;
    }
    buf[at] = '\0';
    const char *r = own(d, buf);
    free(buf);
    return r;
}

static void add_rules(dirinfo *d, const Keten__Directory *doc, dirinfo_version *v)
{
    v->first_rule = d->n_rules;
    v->n_rules = 0;
    for (size_t i = 0; i < doc->n_rules; i++) {
        const Keten__PolicyRule *r = doc->rules[i];
        if (!grow((void **)&d->rules, &d->cap_rules, d->n_rules, sizeof *d->rules)) {
            d->failed = true;
            return;
        }
        char **kinds = calloc(r->n_kinds + 1, sizeof *kinds);
        if (kinds == NULL) {
            d->failed = true;
            return;
        }
        for (size_t j = 0; j < r->n_kinds; j++) {
            kinds[j] = (char *)keten_policy_kind_name(r->kinds[j]);
        }
        dirinfo_rule *x = &d->rules[d->n_rules++];
        x->id = r->id;
        x->effect = r->effect == KETEN__EFFECT__EFFECT_ALLOW ? "allow"
            : r->effect == KETEN__EFFECT__EFFECT_DENY        ? "deny"
                                                             : "none";
        x->from = joined(d, r->from, r->n_from);
        x->to = joined(d, r->to, r->n_to);
        x->categories = joined(d, r->categories, r->n_categories);
        x->kinds = joined(d, kinds, r->n_kinds);
        free(kinds);
        x->purposes = joined(d, r->purposes, r->n_purposes);
        v->n_rules++;
    }
}

static void certset_free(certset *s)
{
    free(s->node_ids);
    free(s->revoked_serials);
    memset(s, 0, sizeof *s);
}

static bool in_prev_nodes(const certset *s, const char *id)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        if (strcmp(s->node_ids[i], id) == 0) {
            return true;
        }
    }
    return false;
}

static bool in_prev_revoked(const certset *s, uint64_t serial)
{
    for (size_t i = 0; i < s->n_revoked; i++) {
        if (s->revoked_serials[i] == serial) {
            return true;
        }
    }
    return false;
}

static void store_u64be(uint8_t out[8], uint64_t x)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)x;
        x >>= 8;
    }
}

/* A hash of one section of a version, to tell whether it changed: each
 * item's length and bytes (a rule in its packed form), in order. */
static bool hash_rules(const Keten__Directory *doc, uint8_t out[crypto_generichash_BYTES])
{
    crypto_generichash_state st;
    bool ok = crypto_generichash_init(&st, NULL, 0, crypto_generichash_BYTES) == 0;
    for (size_t i = 0; ok && i < doc->n_rules; i++) {
        size_t n = protobuf_c_message_get_packed_size(&doc->rules[i]->base);
        uint8_t *buf = malloc(n + 1);
        uint8_t len[8];
        ok = buf != NULL && protobuf_c_message_pack(&doc->rules[i]->base, buf) == n;
        store_u64be(len, n);
        ok = ok && crypto_generichash_update(&st, len, sizeof len) == 0
            && crypto_generichash_update(&st, buf, n) == 0;
        free(buf);
    }
    return ok && crypto_generichash_final(&st, out, crypto_generichash_BYTES) == 0;
}

static bool hash_strings(char *const *a, size_t n, crypto_generichash_state *st)
{
    uint8_t len[8];
    store_u64be(len, n);
    bool ok = crypto_generichash_update(st, len, sizeof len) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        size_t l = strlen(a[i]);
        store_u64be(len, l);
        ok = crypto_generichash_update(st, len, sizeof len) == 0
            && crypto_generichash_update(st, (const uint8_t *)a[i], l) == 0;
    }
    return ok;
}

static bool hash_registry(const Keten__Directory *doc, uint8_t out[crypto_generichash_BYTES])
{
    crypto_generichash_state st;
    return crypto_generichash_init(&st, NULL, 0, crypto_generichash_BYTES) == 0
        && hash_strings(doc->categories, doc->n_categories, &st)
        && hash_strings(doc->purposes, doc->n_purposes, &st)
        && crypto_generichash_final(&st, out, crypto_generichash_BYTES) == 0;
}

static bool same_admins(const certset *prev, const certset *cur)
{
    if (prev->n_admins != cur->n_admins || prev->threshold != cur->threshold) {
        return false;
    }
    for (size_t i = 0; i < cur->n_admins; i++) {
        bool found = false;
        for (size_t j = 0; j < prev->n_admins && !found; j++) {
            found = sodium_memcmp(cur->admins[i], prev->admins[j], KETEN_SIGN_PK_BYTES) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

/* The version's settings into cur, and what changed against prev into v. */
static bool read_settings(
    const Keten__Directory *doc, const certset *prev, certset *cur, dirinfo_version *v)
{
    cur->read = true;
    cur->n_admins = 0;
    for (size_t i = 0; i < doc->n_admins && cur->n_admins < 32; i++) {
        if (doc->admins[i].len == KETEN_SIGN_PK_BYTES) {
            memcpy(cur->admins[cur->n_admins++], doc->admins[i].data, KETEN_SIGN_PK_BYTES);
        }
    }
    cur->threshold = doc->threshold;
    cur->witness_quorum = doc->witness_quorum;
    cur->max_lifetime = doc->max_message_lifetime;
    if (!hash_rules(doc, cur->policy_hash) || !hash_registry(doc, cur->registry_hash)) {
        return false;
    }
    v->expires_at = doc->expires_at;
    v->n_admins = doc->n_admins;
    v->threshold = doc->threshold;
    v->n_rules = doc->n_rules;
    v->settings = 0;
    if (!prev->read) {
        return true;
    }
    v->prev_n_admins = prev->n_admins;
    v->prev_threshold = prev->threshold;
    bool same_policy
        = sodium_memcmp(prev->policy_hash, cur->policy_hash, sizeof cur->policy_hash) == 0;
    bool same_registry
        = sodium_memcmp(prev->registry_hash, cur->registry_hash, sizeof cur->registry_hash) == 0;
    v->settings |= same_admins(prev, cur) ? 0 : DIRINFO_ADMINS;
    v->settings |= same_policy ? 0 : DIRINFO_POLICY;
    v->settings |= same_registry ? 0 : DIRINFO_REGISTRY;
    v->settings |= prev->witness_quorum != cur->witness_quorum ? DIRINFO_WITNESSES : 0;
    v->settings |= prev->max_lifetime != cur->max_lifetime ? DIRINFO_LIFETIME : 0;
    return true;
}

static keten_err dir_item(
    void *ctx, uint64_t version, const uint8_t *bytes, size_t len, size_t index)
{
    (void)index;
    dirinfo *d = ctx;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    if (KETEN_PB_UNPACK(
            keten__signed_directory, bytes, len, KETEN_DIRECTORY_MAX, "signed directory", &sd)
        != KETEN_OK) {
        return KETEN_OK; /* skipped: verify names it */
    }
    if (KETEN_PB_UNPACK(keten__directory, sd->directory.data, sd->directory.len,
            KETEN_DIRECTORY_MAX, "directory", &doc)
        != KETEN_OK) {
        keten_pb_free((ProtobufCMessage **)(void *)&sd);
        return KETEN_OK;
    }
    if (!grow((void **)&d->versions, &d->cap_versions, d->n_versions, sizeof *d->versions)) {
        d->failed = true;
        goto out;
    }
    dirinfo_version *v = &d->versions[d->n_versions++];
    v->version = version;
    v->issued_at = doc->issued_at;
    v->n_nodes = 0;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        const char *role = doc->nodes[i]->role;
        v->n_nodes += role == NULL || strcmp(role, "broker") != 0;
    }
    v->first_change = d->n_changes;
    certset cur = { 0 };
    cur.node_ids = calloc(doc->n_nodes + 1, sizeof *cur.node_ids);
    cur.revoked_serials = calloc(doc->n_revocations + 1, sizeof *cur.revoked_serials);
    if (cur.node_ids == NULL || cur.revoked_serials == NULL) {
        certset_free(&cur);
        d->failed = true;
        goto out;
    }
    for (size_t i = 0; i < doc->n_nodes; i++) {
        const Keten__NodeCert *c = doc->nodes[i];
        add_key(d, c);
        set_org(d, c);
        cur.node_ids[cur.n_nodes++] = (char *)own(d, c->id);
        if (!in_prev_nodes(&d->prev, c->id)) {
            add_change(d, DIRINFO_ADDED, c, doc->issued_at, "");
        }
    }
    for (size_t i = 0; i < doc->n_revocations; i++) {
        const Keten__Revocation *r = doc->revocations[i];
        if (r->cert == NULL) {
            continue;
        }
        add_key(d, r->cert);
        set_org(d, r->cert);
        cur.revoked_serials[cur.n_revoked++] = r->cert->serial;
        if (!in_prev_revoked(&d->prev, r->cert->serial)) {
            add_change(
                d, r->superseded ? DIRINFO_ROTATED : DIRINFO_REVOKED, r->cert, r->at, r->reason);
        }
    }
    v->n_changes = d->n_changes - v->first_change;
    if (!read_settings(doc, &d->prev, &cur, v)) {
        certset_free(&cur);
        d->failed = true;
        goto out;
    }
    add_rules(d, doc, v);
    certset_free(&d->prev);
    d->prev = cur;
out:
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return d->failed ? keten_err_set(KETEN_ERR_NOMEM, "reading the directory versions") : KETEN_OK;
}

keten_err dirinfo_load(const auditdb *db, dirinfo **out)
{
    *out = NULL;
    dirinfo *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "reading the directory versions");
    }
    keten_err e = tiles_directories(db->t, dir_item, d);
    certset_free(&d->prev);
    if (e != KETEN_OK && e != KETEN_ERR_NOMEM) {
        e = KETEN_OK; /* a damaged file: what was read is kept; verify names it */
    }
    if (e != KETEN_OK || d->failed) {
        dirinfo_destroy(&d);
        return keten_err_set(KETEN_ERR_NOMEM, "reading the directory versions");
    }
    *out = d;
    return KETEN_OK;
}

void dirinfo_destroy(dirinfo **self_p)
{
    dirinfo *d = *self_p;
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->n_strs; i++) {
        free(d->strs[i]);
    }
    free(d->strs);
    free(d->keys);
    free(d->orgs);
    free(d->versions);
    free(d->changes);
    free(d->rules);
    certset_free(&d->prev);
    free(d);
    *self_p = NULL;
}

const char *dirinfo_org(const dirinfo *self, const char *id)
{
    if (self == NULL || id == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < self->n_orgs; i++) {
        if (strcmp(self->orgs[i].node, id) == 0) {
            return self->orgs[i].org;
        }
    }
    return NULL;
}

const char *dirinfo_node_of_key(const dirinfo *self, const char *hex)
{
    if (self == NULL || hex == NULL || strlen(hex) != 2 * KETEN_CURVE_KEY_BYTES) {
        return NULL;
    }
    char low[2 * KETEN_CURVE_KEY_BYTES + 1];
    for (size_t i = 0; i < 2 * KETEN_CURVE_KEY_BYTES; i++) {
        low[i] = (char)tolower((unsigned char)hex[i]);
    }
    low[2 * KETEN_CURVE_KEY_BYTES] = '\0';
    for (size_t i = 0; i < self->n_keys; i++) {
        if (strcmp(self->keys[i].hex, low) == 0) {
            return self->keys[i].node;
        }
    }
    return NULL;
}

size_t dirinfo_version_count(const dirinfo *self)
{
    return self != NULL ? self->n_versions : 0;
}

const dirinfo_version *dirinfo_version_at(const dirinfo *self, size_t i)
{
    return &self->versions[i];
}

const dirinfo_rule *dirinfo_rule_at(const dirinfo *self, size_t i)
{
    return &self->rules[i];
}

const dirinfo_change *dirinfo_change_at(const dirinfo *self, size_t i)
{
    return &self->changes[i];
}
