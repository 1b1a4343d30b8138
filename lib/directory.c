/*
 * directory.c - verification, lookup and signing of the network directory
 * (see directory.h and docs/protocol.md section 9).
 */
#include "directory.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pb.h"
#include "policy.h"
#include "util.h"
#include "sha256.h"

#define ROLE_BROKER "broker"
#define ROLE_PREFIX "role:"
#define ROLE_PREFIX_LEN (sizeof ROLE_PREFIX - 1)
#define LABEL_DIRECTORY_LEN (sizeof KETEN_LABEL_DIRECTORY - 1)
/* A valid version never needs more than the old and the new administrators. */
#define MAX_SIGNATURES (2 * KETEN_MAX_ADMINS)
/* Longest party list keten_directory_resolve() takes. */
#define PARTIES_MAX (16u << 10)
/* How much of an untrusted name an error line repeats. */
#define SHOWN_MAX 48

/* ---- a small hash index: bytes -> (pointer, position) ------------------ */

typedef struct index_entry {
    const uint8_t *key; /* NULL: empty slot */
    size_t len;
    const void *val;
    size_t pos;
} index_entry;

typedef struct key_index {
    index_entry *slots;
    size_t mask; /* capacity - 1, capacity a power of two */
    uint8_t sipkey[crypto_shorthash_KEYBYTES];
} key_index;

static keten_err index_init(key_index *idx, size_t expected)
{
    if (sodium_init() < 0) {
        return keten_err_set(KETEN_ERR_CRYPTO, "libsodium could not be initialised");
    }
    size_t cap = 8;
    while (cap < 2 * expected + 2) {
        if (cap > SIZE_MAX / 4 / sizeof(index_entry)) {
            return keten_err_set(
                KETEN_ERR_TOO_LARGE, "an index of %zu entries is too large", expected);
        }
        cap *= 2;
    }
    idx->slots = calloc(cap, sizeof(index_entry));
    if (idx->slots == NULL) {
        return keten_err_set(
            KETEN_ERR_NOMEM, "building a directory index of %zu entries", expected);
    }
    idx->mask = cap - 1;
    randombytes_buf(idx->sipkey, sizeof idx->sipkey);
    return KETEN_OK;
}

static void index_free(key_index *idx)
{
    free(idx->slots);
    idx->slots = NULL;
    idx->mask = 0;
}

static size_t index_slot(const key_index *idx, const uint8_t *key, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, len, idx->sipkey);
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof h; i++) {
        v = v << 8 | h[i];
    }
    return (size_t)v & idx->mask;
}

/* Keys are compared in constant time (sodium_memcmp): transport and
 * signing keys come from the network. */
static index_entry *index_find(const key_index *idx, const uint8_t *key, size_t len)
{
    if (idx->slots == NULL || key == NULL || len == 0) {
        return NULL;
    }
    for (size_t s = index_slot(idx, key, len);; s = (s + 1) & idx->mask) {
        index_entry *e = &idx->slots[s];
        if (e->key == NULL) {
            return NULL;
        }
        if (e->len == len && sodium_memcmp(e->key, key, len) == 0) {
            return e;
        }
    }
}

/* Insert; returns the existing entry (and inserts nothing) when key is
 * already there, NULL after inserting. The index never fills: it was sized
 * for at least twice its entries. */
static index_entry *index_put(
    key_index *idx, const uint8_t *key, size_t len, const void *val, size_t pos)
{
    for (size_t s = index_slot(idx, key, len);; s = (s + 1) & idx->mask) {
        index_entry *e = &idx->slots[s];
        if (e->key == NULL) {
            e->key = key;
            e->len = len;
            e->val = val;
            e->pos = pos;
            return NULL;
        }
        if (e->len == len && sodium_memcmp(e->key, key, len) == 0) {
            return e;
        }
    }
}

static const uint8_t *str_key(const char *s)
{
    return (const uint8_t *)s;
}

/* ---- the verified directory -------------------------------------------- */

struct keten_directory {
    uint8_t *bytes; /* SignedDirectory as verified */
    size_t len;
    Keten__SignedDirectory *sd;
    Keten__Directory *doc;
    uint8_t hash[KETEN_HASH_BYTES];
    const Keten__NodeCert *broker;
    size_t partners;
    key_index by_id; /* current certificates by id (pos: index in nodes) */
    key_index by_transport; /* current certificates by transport key */
    key_index by_sign; /* all certificates by signing key */
    key_index revoked; /* latest revocation by id */
    key_index categories;
    key_index purposes;
};

/* A printable, shortened copy of an untrusted string for an error line. */
static void shown(const char *s, char out[static SHOWN_MAX + 4])
{
    size_t i = 0;
    if (s == NULL) {
        s = "";
    }
    for (; s[i] != '\0' && i < SHOWN_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

static void key_prefix_hex(const uint8_t *key, size_t len, char out[17])
{
    keten_hex(key, len < 8 ? len : 8, out);
}

static bool text_valid(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* ---- structural checks --------------------------------------------------- */

/* Administrator list and threshold, shared by anchors and directories. */
static keten_err check_admins(
    const ProtobufCBinaryData *admins, size_t n, uint32_t threshold, const char *what)
{
    if (n < 1 || n > KETEN_MAX_ADMINS) {
        return keten_err_set(KETEN_ERR_INVALID, "%s lists %zu administrators; 1 to %d allowed",
            what, n, KETEN_MAX_ADMINS);
    }
    for (size_t i = 0; i < n; i++) {
        if (admins[i].len != KETEN_SIGN_PK_BYTES || admins[i].data == NULL) {
            return keten_err_set(KETEN_ERR_INVALID,
                "%s: administrator key %zu is %zu bytes; an Ed25519 key is %d", what, i + 1,
                admins[i].len, KETEN_SIGN_PK_BYTES);
        }
        for (size_t j = 0; j < i; j++) {
            if (sodium_memcmp(admins[i].data, admins[j].data, KETEN_SIGN_PK_BYTES) == 0) {
                char hex[17];
                key_prefix_hex(admins[i].data, KETEN_SIGN_PK_BYTES, hex);
                return keten_err_set(KETEN_ERR_DUPLICATE_KEY,
                    "%s lists administrator key %s... twice (entries %zu and %zu)", what, hex,
                    j + 1, i + 1);
            }
        }
    }
    if (threshold < 1 || threshold > n) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s has threshold %u with %zu administrators; it must be 1 to %zu", what, threshold, n,
            n);
    }
    return KETEN_OK;
}

static keten_err check_anchor(const Keten__Anchor *a)
{
    char name[SHOWN_MAX + 4];
    if (a->network == NULL || !keten_name_valid(a->network)) {
        shown(a->network, name);
        return keten_err_set(
            KETEN_ERR_BAD_NAME, "anchor network name '%s' is not valid ([a-z0-9-]{1,32})", name);
    }
    return check_admins(a->admins, a->n_admins, a->threshold, "the anchor");
}

static keten_err check_key_len(const ProtobufCBinaryData *k, const char *what, const char *id)
{
    if (k->len != KETEN_SIGN_PK_BYTES || k->data == NULL) {
        char name[SHOWN_MAX + 4];
        shown(id, name);
        return keten_err_set(KETEN_ERR_INVALID,
            "certificate of '%s': %s is %zu bytes; it must be %d", name, what, k->len,
            KETEN_SIGN_PK_BYTES);
    }
    return KETEN_OK;
}

static keten_err check_cert(const Keten__NodeCert *c, const char *where)
{
    char name[SHOWN_MAX + 4];
    if (c == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "%s: a certificate is missing", where);
    }
    shown(c->id, name);
    if (c->id == NULL || !keten_name_valid(c->id)) {
        return keten_err_set(
            KETEN_ERR_BAD_NAME, "%s: node id '%s' is not valid ([a-z0-9-]{1,32})", where, name);
    }
    if (c->role == NULL || !keten_name_valid(c->role)) {
        char role[SHOWN_MAX + 4];
        shown(c->role, role);
        return keten_err_set(KETEN_ERR_BAD_NAME,
            "%s: role '%s' of '%s' is not valid ([a-z0-9-]{1,32})", where, role, name);
    }
    if (c->org == NULL || !text_valid(c->org, 1, KETEN_ORG_MAX)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s: organisation name of '%s' must be 1 to %d bytes without control characters", where,
            name, KETEN_ORG_MAX);
    }
    keten_err e = check_key_len(&c->sign_pk, "the signing key", c->id);
    if (e == KETEN_OK) {
        e = check_key_len(&c->enc_pk, "the encryption key", c->id);
    }
    if (e == KETEN_OK) {
        e = check_key_len(&c->transport_pk, "the transport key", c->id);
    }
    if (e != KETEN_OK) {
        return e;
    }
    bool broker = strcmp(c->role, ROLE_BROKER) == 0;
    if (broker) {
        e = check_key_len(&c->log_pk, "the log key", c->id);
        if (e != KETEN_OK) {
            return e;
        }
    } else if (c->log_pk.len != 0) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s: '%s' is not the broker but its certificate carries a log key", where, name);
    }
    if (c->not_after <= c->not_before) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s: certificate of '%s' ends (%llu) before it starts (%llu)", where, name,
            (unsigned long long)c->not_after, (unsigned long long)c->not_before);
    }
    return KETEN_OK;
}

static keten_err put_key(key_index *keys, const ProtobufCBinaryData *k, const Keten__NodeCert *c)
{
    if (k->len == 0) {
        return KETEN_OK;
    }
    index_entry *old = index_put(keys, k->data, k->len, c, 0);
    if (old != NULL) {
        char hex[17];
        char a[SHOWN_MAX + 4];
        char b[SHOWN_MAX + 4];
        key_prefix_hex(k->data, k->len, hex);
        shown(((const Keten__NodeCert *)old->val)->id, a);
        shown(c->id, b);
        return keten_err_set(KETEN_ERR_DUPLICATE_KEY,
            "key %s... appears twice (certificates of '%s' and '%s'); every key of every "
            "certificate, current or past, must be distinct",
            hex, a, b);
    }
    return KETEN_OK;
}

static keten_err put_cert_keys(key_index *keys, const Keten__NodeCert *c)
{
    keten_err e = put_key(keys, &c->sign_pk, c);
    if (e == KETEN_OK) {
        e = put_key(keys, &c->enc_pk, c);
    }
    if (e == KETEN_OK) {
        e = put_key(keys, &c->transport_pk, c);
    }
    if (e == KETEN_OK) {
        e = put_key(keys, &c->log_pk, c);
    }
    return e;
}

static keten_err put_serial(key_index *serials, const uint64_t *serial, const Keten__NodeCert *c)
{
    if (*serial == 0) {
        char name[SHOWN_MAX + 4];
        shown(c->id, name);
        return keten_err_set(
            KETEN_ERR_INVALID, "certificate of '%s' has serial 0; serials start at 1", name);
    }
    index_entry *old = index_put(serials, (const uint8_t *)serial, sizeof *serial, c, 0);
    if (old != NULL) {
        char a[SHOWN_MAX + 4];
        char b[SHOWN_MAX + 4];
        shown(((const Keten__NodeCert *)old->val)->id, a);
        shown(c->id, b);
        return keten_err_set(KETEN_ERR_DUPLICATE_ID,
            "serial %llu is used twice (certificates of '%s' and '%s'); serials are never reused",
            (unsigned long long)*serial, a, b);
    }
    return KETEN_OK;
}

static keten_err check_certs(const Keten__Directory *doc)
{
    keten_err e;
    key_index ids = { 0 };
    key_index keys = { 0 };
    key_index serials = { 0 };
    size_t total = doc->n_nodes + doc->n_revocations;
    size_t brokers = 0;
    uint64_t max_serial = 0;

    if ((e = index_init(&ids, doc->n_nodes)) != KETEN_OK
        || (e = index_init(&keys, 4 * total)) != KETEN_OK
        || (e = index_init(&serials, total)) != KETEN_OK) {
        goto out;
    }
    for (size_t i = 0; i < doc->n_nodes; i++) {
        const Keten__NodeCert *c = doc->nodes[i];
        if ((e = check_cert(c, "node")) != KETEN_OK) {
            goto out;
        }
        if (index_put(&ids, str_key(c->id), strlen(c->id), c, i) != NULL) {
            e = keten_err_set(
                KETEN_ERR_DUPLICATE_ID, "node id '%s' has two current certificates", c->id);
            goto out;
        }
        if (strcmp(c->role, ROLE_BROKER) == 0 && ++brokers > 1) {
            e = keten_err_set(KETEN_ERR_INVALID,
                "two current certificates have role 'broker' (the second is '%s'); a network "
                "has one broker",
                c->id);
            goto out;
        }
        if ((e = put_cert_keys(&keys, c)) != KETEN_OK
            || (e = put_serial(&serials, &c->serial, c)) != KETEN_OK) {
            goto out;
        }
        if (c->serial > max_serial) {
            max_serial = c->serial;
        }
    }
    for (size_t i = 0; i < doc->n_revocations; i++) {
        const Keten__Revocation *r = doc->revocations[i];
        if (r == NULL || r->cert == NULL) {
            e = keten_err_set(KETEN_ERR_INVALID, "revocation %zu has no certificate", i + 1);
            goto out;
        }
        if ((e = check_cert(r->cert, "revocation")) != KETEN_OK) {
            goto out;
        }
        if (r->reason == NULL || !text_valid(r->reason, 0, KETEN_REASON_MAX)) {
            e = keten_err_set(KETEN_ERR_INVALID,
                "revocation of '%s': the reason must be at most %d bytes without control "
                "characters",
                r->cert->id, KETEN_REASON_MAX);
            goto out;
        }
        if ((e = put_cert_keys(&keys, r->cert)) != KETEN_OK
            || (e = put_serial(&serials, &r->cert->serial, r->cert)) != KETEN_OK) {
            goto out;
        }
        if (r->cert->serial > max_serial) {
            max_serial = r->cert->serial;
        }
    }
    /* Serials are never reused: the next one lies beyond all that exist. */
    if (doc->next_serial <= max_serial || doc->next_serial == 0) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "next serial %llu is not beyond the highest serial in use (%llu)",
            (unsigned long long)doc->next_serial, (unsigned long long)max_serial);
        goto out;
    }
out:
    index_free(&ids);
    index_free(&keys);
    index_free(&serials);
    return e;
}

static keten_err check_labels(char *const *list, size_t n, const char *what, key_index *idx)
{
    keten_err e = index_init(idx, n);
    if (e != KETEN_OK) {
        return e;
    }
    for (size_t i = 0; i < n; i++) {
        char name[SHOWN_MAX + 4];
        shown(list[i], name);
        if (list[i] == NULL || !keten_label_valid(list[i])) {
            return keten_err_set(KETEN_ERR_BAD_NAME,
                "registered %s '%s' is not valid ([a-z0-9][a-z0-9./-]{0,63})", what, name);
        }
        if (index_put(idx, str_key(list[i]), strlen(list[i]), list[i], i) != NULL) {
            return keten_err_set(KETEN_ERR_INVALID, "%s '%s' is registered twice", what, name);
        }
    }
    return KETEN_OK;
}

static keten_err check_registered(
    char *const *list, size_t n, const key_index *registered, uint32_t rule, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], "*") == 0) {
            continue;
        }
        if (index_find(registered, str_key(list[i]), strlen(list[i])) == NULL) {
            return keten_err_set(KETEN_ERR_UNREGISTERED,
                "rule %u names %s '%s', which is not registered; register it first", rule, what,
                list[i]);
        }
    }
    return KETEN_OK;
}

static keten_err check_rules(
    const Keten__Directory *doc, const key_index *cats, const key_index *purps)
{
    key_index ids = { 0 };
    keten_err e = index_init(&ids, doc->n_rules);
    if (e != KETEN_OK) {
        return e;
    }
    for (size_t i = 0; i < doc->n_rules; i++) {
        const Keten__PolicyRule *r = doc->rules[i];
        if ((e = keten_policy_rule_check(r)) != KETEN_OK) {
            goto out;
        }
        if (index_put(&ids, (const uint8_t *)&r->id, sizeof r->id, r, i) != NULL) {
            e = keten_err_set(KETEN_ERR_DUPLICATE_ID, "policy rule id %u is used twice", r->id);
            goto out;
        }
        if ((e = check_registered(r->categories, r->n_categories, cats, r->id, "category"))
                != KETEN_OK
            || (e = check_registered(r->purposes, r->n_purposes, purps, r->id, "purpose"))
                != KETEN_OK) {
            goto out;
        }
    }
out:
    index_free(&ids);
    return e;
}

keten_err keten_directory_check(const Keten__Directory *doc)
{
    keten_err e;
    key_index cats = { 0 };
    key_index purps = { 0 };
    char name[SHOWN_MAX + 4];

    if (doc == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "no directory to check");
    }
    if (doc->network == NULL || !keten_name_valid(doc->network)) {
        shown(doc->network, name);
        return keten_err_set(
            KETEN_ERR_BAD_NAME, "directory network name '%s' is not valid ([a-z0-9-]{1,32})", name);
    }
    if (doc->version < 1) {
        return keten_err_set(KETEN_ERR_INVALID,
            "directory version 0 is not valid; versions "
            "start at 1");
    }
    if (doc->version == 1 && doc->previous_hash.len != 0) {
        return keten_err_set(KETEN_ERR_INVALID,
            "directory version 1 carries a previous hash; the first version has none");
    }
    if (doc->version > 1 && doc->previous_hash.len != KETEN_HASH_BYTES) {
        return keten_err_set(KETEN_ERR_INVALID,
            "directory version %llu has a previous hash of %zu bytes; it must be %d",
            (unsigned long long)doc->version, doc->previous_hash.len, KETEN_HASH_BYTES);
    }
    e = check_admins(doc->admins, doc->n_admins, doc->threshold, "the directory");
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = check_certs(doc)) != KETEN_OK) {
        return e;
    }
    if ((e = check_labels(doc->categories, doc->n_categories, "category", &cats)) != KETEN_OK
        || (e = check_labels(doc->purposes, doc->n_purposes, "purpose", &purps)) != KETEN_OK) {
        goto out;
    }
    e = check_rules(doc, &cats, &purps);
out:
    index_free(&cats);
    index_free(&purps);
    return e;
}

/* ---- anchor -------------------------------------------------------------- */

keten_err keten_directory_anchor_parse(const uint8_t *buf, size_t len, Keten__Anchor **out)
{
    *out = NULL;
    if (len > KETEN_ANCHOR_MAX) {
        return keten_err_set(
            KETEN_ERR_TOO_LARGE, "anchor is %zu bytes; at most %u allowed", len, KETEN_ANCHOR_MAX);
    }
    if (buf == NULL || len == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED, "anchor is empty");
    }
    Keten__Anchor *a = NULL;
    keten_err e
        = KETEN_PB_UNPACK_CANONICAL(keten__anchor, buf, len, KETEN_ANCHOR_MAX, "anchor", &a);
    if (e != KETEN_OK) {
        return e;
    }
    e = check_anchor(a);
    if (e != KETEN_OK) {
        keten_pb_free((ProtobufCMessage **)(void *)&a);
        return e;
    }
    *out = a;
    return KETEN_OK;
}

keten_err keten_directory_anchor_load(const char *path, Keten__Anchor **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *out = NULL;
    keten_err e = keten_file_read(path, KETEN_ANCHOR_MAX, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_directory_anchor_parse(buf, len, out);
    sodium_memzero(buf, len); /* the wrong file may be a secret key file */
    free(buf);
    if (e != KETEN_OK) {
        /* Name the file: the parser only knows bytes. */
        char detail[400];
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        return keten_err_set(e,
            "%s is not a network anchor (%s); give the network's network.pub, written by "
            "keten-keys init",
            path, detail);
    }
    return KETEN_OK;
}

/* ---- building the object --------------------------------------------- */

void keten_directory_destroy(keten_directory **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_directory *self = *self_p;
    index_free(&self->by_id);
    index_free(&self->by_transport);
    index_free(&self->by_sign);
    index_free(&self->revoked);
    index_free(&self->categories);
    index_free(&self->purposes);
    keten_pb_free((ProtobufCMessage **)(void *)&self->doc);
    keten_pb_free((ProtobufCMessage **)(void *)&self->sd);
    free(self->bytes);
    free(self);
    *self_p = NULL;
}

/* Is revocation a later than b (for "the latest one")? */
static bool revocation_later(
    const Keten__Revocation *a, size_t apos, const Keten__Revocation *b, size_t bpos)
{
    if (a->at != b->at) {
        return a->at > b->at;
    }
    return apos > bpos;
}

static keten_err build_indexes(keten_directory *self)
{
    const Keten__Directory *doc = self->doc;
    keten_err e;
    size_t total = doc->n_nodes + doc->n_revocations;
    if ((e = index_init(&self->by_id, doc->n_nodes)) != KETEN_OK
        || (e = index_init(&self->by_transport, doc->n_nodes)) != KETEN_OK
        || (e = index_init(&self->by_sign, total)) != KETEN_OK
        || (e = index_init(&self->revoked, doc->n_revocations)) != KETEN_OK
        || (e = index_init(&self->categories, doc->n_categories)) != KETEN_OK
        || (e = index_init(&self->purposes, doc->n_purposes)) != KETEN_OK) {
        return e;
    }
    for (size_t i = 0; i < doc->n_nodes; i++) {
        const Keten__NodeCert *c = doc->nodes[i];
        (void)index_put(&self->by_id, str_key(c->id), strlen(c->id), c, i);
        (void)index_put(&self->by_transport, c->transport_pk.data, c->transport_pk.len, c, i);
        (void)index_put(&self->by_sign, c->sign_pk.data, c->sign_pk.len, c, i);
        if (strcmp(c->role, ROLE_BROKER) == 0) {
            self->broker = c;
        } else {
            self->partners++;
        }
    }
    for (size_t i = 0; i < doc->n_revocations; i++) {
        const Keten__Revocation *r = doc->revocations[i];
        const Keten__NodeCert *c = r->cert;
        (void)index_put(&self->by_sign, c->sign_pk.data, c->sign_pk.len, c, doc->n_nodes + i);
        index_entry *old = index_put(&self->revoked, str_key(c->id), strlen(c->id), r, i);
        if (old != NULL && revocation_later(r, i, old->val, old->pos)) {
            old->val = r;
            old->pos = i;
        }
    }
    for (size_t i = 0; i < doc->n_categories; i++) {
        const char *s = doc->categories[i];
        (void)index_put(&self->categories, str_key(s), strlen(s), s, i);
    }
    for (size_t i = 0; i < doc->n_purposes; i++) {
        const char *s = doc->purposes[i];
        (void)index_put(&self->purposes, str_key(s), strlen(s), s, i);
    }
    return KETEN_OK;
}

/* Parse SignedDirectory bytes and the Directory inside them (both
 * canonical), with the basic shape of the signatures. */
static keten_err parse_signed(
    const uint8_t *buf, size_t len, Keten__SignedDirectory **sd_out, Keten__Directory **doc_out)
{
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    keten_err e;

    *sd_out = NULL;
    *doc_out = NULL;
    if (len > KETEN_DIRECTORY_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "directory is %zu bytes; at most %u allowed", len,
            KETEN_DIRECTORY_MAX);
    }
    if (buf == NULL || len == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED, "directory is empty");
    }
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, "signed directory", &sd);
    if (e != KETEN_OK) {
        return e;
    }
    if (sd->directory.len == 0) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "signed directory holds no directory");
        goto fail;
    }
    if (sd->n_signatures > MAX_SIGNATURES) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE,
            "signed directory carries %zu signatures; at most %d are meaningful", sd->n_signatures,
            MAX_SIGNATURES);
        goto fail;
    }
    for (size_t i = 0; i < sd->n_signatures; i++) {
        const Keten__DirectorySignature *s = sd->signatures[i];
        if (s->admin_pk.len != KETEN_SIGN_PK_BYTES || s->signature.len != KETEN_SIG_BYTES) {
            e = keten_err_set(KETEN_ERR_MALFORMED,
                "directory signature %zu has a %zu-byte key and a %zu-byte signature; expected "
                "%d and %d",
                i + 1, s->admin_pk.len, s->signature.len, KETEN_SIGN_PK_BYTES, KETEN_SIG_BYTES);
            goto fail;
        }
    }
    e = KETEN_PB_UNPACK_CANONICAL(keten__directory, sd->directory.data, sd->directory.len,
        KETEN_DIRECTORY_MAX, "directory", &doc);
    if (e != KETEN_OK) {
        goto fail;
    }
    *sd_out = sd;
    *doc_out = doc;
    return KETEN_OK;
fail:
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return e;
}

/* Take ownership of sd/doc and make the object (copies buf). */
static keten_err directory_make(const uint8_t *buf, size_t len, Keten__SignedDirectory **sd,
    Keten__Directory **doc, keten_directory **out)
{
    keten_directory *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "loading a directory");
    }
    self->bytes = malloc(len);
    if (self->bytes == NULL) {
        free(self);
        return keten_err_set(KETEN_ERR_NOMEM, "loading a directory of %zu bytes", len);
    }
    memcpy(self->bytes, buf, len);
    self->len = len;
    self->sd = *sd;
    self->doc = *doc;
    *sd = NULL;
    *doc = NULL;
    keten_sha256(self->hash, self->sd->directory.data, self->sd->directory.len);
    keten_err e = build_indexes(self);
    if (e != KETEN_OK) {
        keten_directory_destroy(&self);
        return e;
    }
    *out = self;
    return KETEN_OK;
}

/* ---- signatures ---------------------------------------------------------- */

static int admin_index(const ProtobufCBinaryData *admins, size_t n, const uint8_t *pk)
{
    for (size_t i = 0; i < n; i++) {
        if (admins[i].len == KETEN_SIGN_PK_BYTES
            && sodium_memcmp(admins[i].data, pk, KETEN_SIGN_PK_BYTES) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static bool same_admins(const ProtobufCBinaryData *a, size_t na, uint32_t ta,
    const ProtobufCBinaryData *b, size_t nb, uint32_t tb)
{
    if (na != nb || ta != tb) {
        return false;
    }
    /* Both lists hold distinct keys (checked), so equal size and inclusion
     * mean the same set. */
    for (size_t i = 0; i < na; i++) {
        if (admin_index(b, nb, a[i].data) < 0) {
            return false;
        }
    }
    return true;
}

/* "keten/directory/v1" || directory, malloc()ed. */
static keten_err signed_message(const uint8_t *dir, size_t len, uint8_t **msg, size_t *msg_len)
{
    if (len > KETEN_DIRECTORY_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "directory is %zu bytes; at most %u allowed", len,
            KETEN_DIRECTORY_MAX);
    }
    uint8_t *m = malloc(LABEL_DIRECTORY_LEN + len);
    if (m == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "preparing a directory signature check");
    }
    memcpy(m, KETEN_LABEL_DIRECTORY, LABEL_DIRECTORY_LEN);
    if (len > 0) {
        memcpy(m + LABEL_DIRECTORY_LEN, dir, len);
    }
    *msg = m;
    *msg_len = LABEL_DIRECTORY_LEN + len;
    return KETEN_OK;
}

/* Count distinct valid signatures of old (and, when changed, new)
 * administrators. A signature by a listed administrator that does not
 * verify is KETEN_ERR_BAD_SIGNATURE; other signatures are ignored. */
static keten_err check_signatures(const Keten__SignedDirectory *sd, const Keten__Directory *doc,
    const ProtobufCBinaryData *old_admins, size_t n_old, uint32_t old_threshold)
{
    bool changed = !same_admins(
        old_admins, n_old, old_threshold, doc->admins, doc->n_admins, doc->threshold);
    bool old_seen[KETEN_MAX_ADMINS] = { false };
    bool new_seen[KETEN_MAX_ADMINS] = { false };
    size_t old_count = 0;
    size_t new_count = 0;
    uint8_t *msg = NULL;
    size_t msg_len = 0;

    keten_err e = signed_message(sd->directory.data, sd->directory.len, &msg, &msg_len);
    if (e != KETEN_OK) {
        return e;
    }
    for (size_t i = 0; i < sd->n_signatures; i++) {
        const Keten__DirectorySignature *s = sd->signatures[i];
        int oi = admin_index(old_admins, n_old, s->admin_pk.data);
        int ni = changed ? admin_index(doc->admins, doc->n_admins, s->admin_pk.data) : -1;
        if (oi < 0 && ni < 0) {
            continue; /* not an administrator: counts nothing */
        }
        if (crypto_sign_verify_detached(s->signature.data, msg, msg_len, s->admin_pk.data) != 0) {
            char hex[17];
            key_prefix_hex(s->admin_pk.data, s->admin_pk.len, hex);
            e = keten_err_set(KETEN_ERR_BAD_SIGNATURE,
                "directory signature %zu by administrator %s... does not verify; the directory "
                "was altered or damaged",
                i + 1, hex);
            goto out;
        }
        if (oi >= 0 && !old_seen[oi]) {
            old_seen[oi] = true;
            old_count++;
        }
        if (ni >= 0 && !new_seen[ni]) {
            new_seen[ni] = true;
            new_count++;
        }
    }
    if (old_count < old_threshold) {
        e = keten_err_set(KETEN_ERR_THRESHOLD,
            "directory version %llu carries valid signatures of %zu distinct administrators; "
            "%u of the previous administrators are needed",
            (unsigned long long)doc->version, old_count, old_threshold);
        goto out;
    }
    if (changed && new_count < doc->threshold) {
        e = keten_err_set(KETEN_ERR_THRESHOLD,
            "directory version %llu changes the administrators or threshold and carries "
            "signatures of %zu of its new administrators; %u are needed",
            (unsigned long long)doc->version, new_count, doc->threshold);
        goto out;
    }
out:
    free(msg);
    return e;
}

keten_err keten_directory_count_signatures(
    const Keten__SignedDirectory *sd, ProtobufCBinaryData *admins, size_t n_admins, size_t *count)
{
    *count = 0;
    if (sd == NULL || (admins == NULL && n_admins > 0)) {
        return keten_err_set(KETEN_ERR_INVALID, "no signed directory to count signatures of");
    }
    if (n_admins > KETEN_MAX_ADMINS) {
        return keten_err_set(
            KETEN_ERR_INVALID, "%zu administrators; at most %d", n_admins, KETEN_MAX_ADMINS);
    }
    bool seen[KETEN_MAX_ADMINS] = { false };
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    keten_err e = signed_message(sd->directory.data, sd->directory.len, &msg, &msg_len);
    if (e != KETEN_OK) {
        return e;
    }
    size_t n = 0;
    for (size_t i = 0; i < sd->n_signatures; i++) {
        const Keten__DirectorySignature *s = sd->signatures[i];
        if (s == NULL || s->admin_pk.len != KETEN_SIGN_PK_BYTES
            || s->signature.len != KETEN_SIG_BYTES) {
            continue;
        }
        int ai = admin_index(admins, n_admins, s->admin_pk.data);
        if (ai < 0 || seen[ai]) {
            continue;
        }
        if (crypto_sign_verify_detached(s->signature.data, msg, msg_len, s->admin_pk.data) == 0) {
            seen[ai] = true;
            n++;
        }
    }
    free(msg);
    *count = n;
    return KETEN_OK;
}

/* ---- verification ------------------------------------------------------- */

static keten_err check_time(const Keten__Directory *doc, uint64_t now_ms)
{
    if (now_ms == 0) {
        return KETEN_OK;
    }
    char when[32];
    if (now_ms >= doc->expires_at) {
        keten_time_iso(doc->expires_at, when, sizeof when);
        return keten_err_set(KETEN_ERR_EXPIRED,
            "directory version %llu expired at %s; get a fresh directory from the "
            "administrators",
            (unsigned long long)doc->version, when);
    }
    if (doc->issued_at > now_ms && doc->issued_at - now_ms > KETEN_CLOCK_SKEW_MS) {
        keten_time_iso(doc->issued_at, when, sizeof when);
        return keten_err_set(KETEN_ERR_NOT_YET_VALID,
            "directory version %llu is issued at %s, in the future; check this machine's clock",
            (unsigned long long)doc->version, when);
    }
    return KETEN_OK;
}

keten_err keten_directory_verify(const Keten__Anchor *anchor, const keten_directory *prev,
    const uint8_t *buf, size_t len, uint64_t now_ms, keten_directory **out)
{
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    const ProtobufCBinaryData *old_admins;
    size_t n_old;
    uint32_t old_threshold;
    const char *network;
    keten_err e;

    *out = NULL;
    if (prev == NULL) {
        if (anchor == NULL) {
            return keten_err_set(KETEN_ERR_INVALID,
                "no trust anchor and no previous directory to verify a directory against");
        }
        if ((e = check_anchor(anchor)) != KETEN_OK) {
            return e;
        }
        old_admins = anchor->admins;
        n_old = anchor->n_admins;
        old_threshold = anchor->threshold;
        network = anchor->network;
    } else {
        old_admins = prev->doc->admins;
        n_old = prev->doc->n_admins;
        old_threshold = prev->doc->threshold;
        network = prev->doc->network;
    }
    if ((e = parse_signed(buf, len, &sd, &doc)) != KETEN_OK) {
        return e;
    }
    if (strcmp(doc->network, network) != 0) {
        char name[SHOWN_MAX + 4];
        shown(doc->network, name);
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "directory is for network '%s'; this party belongs to '%s'", name, network);
        goto out;
    }
    if ((e = keten_directory_check(doc)) != KETEN_OK) {
        goto out;
    }
    if (doc->expires_at <= doc->issued_at) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "directory version %llu expires (%llu) before it is issued (%llu)",
            (unsigned long long)doc->version, (unsigned long long)doc->expires_at,
            (unsigned long long)doc->issued_at);
        goto out;
    }
    if ((e = check_signatures(sd, doc, old_admins, n_old, old_threshold)) != KETEN_OK) {
        goto out;
    }
    if (prev != NULL) {
        if (doc->version <= prev->doc->version) {
            e = keten_err_set(KETEN_ERR_ROLLBACK,
                "directory version %llu is not newer than the installed version %llu; refusing "
                "to go back",
                (unsigned long long)doc->version, (unsigned long long)prev->doc->version);
            goto out;
        }
        if (doc->version == prev->doc->version + 1
            && (doc->previous_hash.len != KETEN_HASH_BYTES
                || sodium_memcmp(doc->previous_hash.data, prev->hash, KETEN_HASH_BYTES) != 0)) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "directory version %llu does not name version %llu as its predecessor (previous "
                "hash differs); the history was forked",
                (unsigned long long)doc->version, (unsigned long long)prev->doc->version);
            goto out;
        }
    }
    if ((e = check_time(doc, now_ms)) != KETEN_OK) {
        goto out;
    }
    e = directory_make(buf, len, &sd, &doc, out);
out:
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return e;
}

/* A held version: its number and the SHA-256 of its SignedDirectory bytes. */
typedef struct held_version {
    uint64_t version;
    uint8_t digest[KETEN_HASH_BYTES];
} held_version;

static keten_err peek_version(const uint8_t *buf, size_t len, uint64_t *version)
{
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    keten_err e = parse_signed(buf, len, &sd, &doc);
    if (e != KETEN_OK) {
        return e;
    }
    *version = doc->version;
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return KETEN_OK;
}

/* A new object for an already verified directory. */
static keten_err directory_copy(const keten_directory *src, keten_directory **out)
{
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    keten_err e = parse_signed(src->bytes, src->len, &sd, &doc);
    if (e != KETEN_OK) {
        return e;
    }
    e = directory_make(src->bytes, src->len, &sd, &doc, out);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return e;
}

keten_err keten_directory_verify_chain(const Keten__Anchor *anchor, const keten_directory *prev,
    const uint8_t *const *bufs, const size_t *lens, size_t n, uint64_t now_ms,
    keten_directory **out)
{
    keten_directory *cur = NULL; /* owned: the newest verified in this walk */
    held_version *held = NULL;
    size_t n_held = 0;
    keten_err e = KETEN_OK;

    *out = NULL;
    if (prev == NULL && n == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "an empty directory chain and nothing installed");
    }
    if (n > 0 && (bufs == NULL || lens == NULL)) {
        return keten_err_set(KETEN_ERR_INVALID, "directory chain of %zu entries is missing", n);
    }
    held = calloc(n + 1, sizeof *held);
    if (held == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "walking a directory chain of %zu versions", n);
    }
    if (prev != NULL) {
        held[0].version = prev->doc->version;
        keten_sha256(held[0].digest, prev->bytes, prev->len);
        n_held = 1;
    }
    for (size_t i = 0; i < n; i++) {
        const keten_directory *base = cur != NULL ? cur : prev;
        if (lens[i] > KETEN_DIRECTORY_MAX) {
            e = keten_err_set(KETEN_ERR_TOO_LARGE,
                "directory %zu of the chain is %zu bytes; at most %u allowed", i + 1, lens[i],
                KETEN_DIRECTORY_MAX);
            goto out;
        }
        if (base != NULL) {
            uint64_t version = 0;
            if ((e = peek_version(bufs[i], lens[i], &version)) != KETEN_OK) {
                goto out;
            }
            if (version <= base->doc->version) {
                uint8_t digest[KETEN_HASH_BYTES];
                keten_sha256(digest, bufs[i], lens[i]);
                bool same = false;
                for (size_t h = 0; h < n_held; h++) {
                    if (held[h].version == version
                        && sodium_memcmp(held[h].digest, digest, sizeof digest) == 0) {
                        same = true;
                        break;
                    }
                }
                if (same) {
                    continue;
                }
                e = keten_err_set(KETEN_ERR_ROLLBACK,
                    "directory %zu of the chain has version %llu, not newer than version %llu "
                    "and not identical to the version held; refusing it",
                    i + 1, (unsigned long long)version, (unsigned long long)base->doc->version);
                goto out;
            }
        }
        keten_directory *next = NULL;
        if ((e = keten_directory_verify(anchor, base, bufs[i], lens[i], 0, &next)) != KETEN_OK) {
            goto out;
        }
        keten_directory_destroy(&cur);
        cur = next;
        held[n_held].version = cur->doc->version;
        keten_sha256(held[n_held].digest, cur->bytes, cur->len);
        n_held++;
    }
    if (cur == NULL && (e = directory_copy(prev, &cur)) != KETEN_OK) {
        goto out;
    }
    if ((e = check_time(cur->doc, now_ms)) != KETEN_OK) {
        goto out;
    }
    *out = cur;
    cur = NULL;
out:
    keten_directory_destroy(&cur);
    free(held);
    return e;
}

keten_err keten_directory_load(
    const Keten__Anchor *anchor, const char *path, uint64_t now_ms, keten_directory **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *out = NULL;
    keten_err e = keten_file_read(path, KETEN_DIRECTORY_MAX, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_directory_verify(anchor, NULL, buf, len, now_ms, out);
    free(buf);
    return e;
}

bool keten_directory_fresh(const keten_directory *self, uint64_t now_ms)
{
    if (self == NULL) {
        return false;
    }
    const Keten__Directory *d = self->doc;
    return d->issued_at <= now_ms + KETEN_CLOCK_SKEW_MS && now_ms < d->expires_at;
}

/* ---- access ---------------------------------------------------------- */

const Keten__Directory *keten_directory_doc(const keten_directory *self)
{
    return self->doc;
}

uint64_t keten_directory_version(const keten_directory *self)
{
    return self->doc->version;
}

const char *keten_directory_network(const keten_directory *self)
{
    return self->doc->network;
}

const uint8_t *keten_directory_hash(const keten_directory *self)
{
    return self->hash;
}

const uint8_t *keten_directory_bytes(const keten_directory *self, size_t *len)
{
    *len = self->len;
    return self->bytes;
}

const Keten__NodeCert *keten_directory_find_id(const keten_directory *self, const char *id)
{
    if (id == NULL) {
        return NULL;
    }
    const index_entry *e = index_find(&self->by_id, str_key(id), strlen(id));
    return e != NULL ? e->val : NULL;
}

const Keten__NodeCert *keten_directory_find_transport(
    const keten_directory *self, const uint8_t pk[static KETEN_CURVE_KEY_BYTES])
{
    const index_entry *e = index_find(&self->by_transport, pk, KETEN_CURVE_KEY_BYTES);
    return e != NULL ? e->val : NULL;
}

const Keten__NodeCert *keten_directory_broker(const keten_directory *self)
{
    return self->broker;
}

const Keten__Revocation *keten_directory_find_revoked(const keten_directory *self, const char *id)
{
    if (id == NULL) {
        return NULL;
    }
    const index_entry *e = index_find(&self->revoked, str_key(id), strlen(id));
    return e != NULL ? e->val : NULL;
}

const Keten__Revocation *keten_directory_find_revoked_serial(
    const keten_directory *self, const char *id, uint64_t serial)
{
    if (id == NULL) {
        return NULL;
    }
    const Keten__Directory *d = keten_directory_doc(self);
    for (size_t i = 0; i < d->n_revocations; i++) {
        const Keten__Revocation *r = d->revocations[i];
        if (r->cert != NULL && r->cert->serial == serial && r->cert->id != NULL
            && strcmp(r->cert->id, id) == 0) {
            return r;
        }
    }
    return NULL;
}

bool keten_directory_revocation_compromised(const Keten__Revocation *r)
{
    static const char word[] = "compromise";
    if (r == NULL || r->reason == NULL) {
        return false;
    }
    size_t n = strlen(r->reason);
    for (size_t i = 0; i + sizeof word - 1 <= n; i++) {
        if (strncasecmp(r->reason + i, word, sizeof word - 1) == 0) {
            return true;
        }
    }
    return false;
}

uint64_t keten_directory_max_lifetime(const keten_directory *self)
{
    uint64_t life = keten_directory_doc(self)->max_message_lifetime;
    return life != 0 ? life : KETEN_MAX_LIFETIME_DEFAULT_MS;
}

const Keten__NodeCert *keten_directory_find_sign_key(
    const keten_directory *self, const uint8_t pk[static KETEN_SIGN_PK_BYTES])
{
    const index_entry *e = index_find(&self->by_sign, pk, KETEN_SIGN_PK_BYTES);
    return e != NULL ? e->val : NULL;
}

bool keten_directory_cert_valid_at(const Keten__NodeCert *cert, uint64_t now_ms)
{
    return cert != NULL && cert->not_before <= now_ms && now_ms < cert->not_after;
}

bool keten_directory_category_registered(const keten_directory *self, const char *category)
{
    return category != NULL
        && index_find(&self->categories, str_key(category), strlen(category)) != NULL;
}

bool keten_directory_purpose_registered(const keten_directory *self, const char *purpose)
{
    return purpose != NULL
        && index_find(&self->purposes, str_key(purpose), strlen(purpose)) != NULL;
}

size_t keten_directory_partner_count(const keten_directory *self)
{
    return self->partners;
}

size_t keten_directory_quorum(const keten_directory *self)
{
    if (self->doc->witness_quorum != 0) {
        return self->doc->witness_quorum;
    }
    return self->partners / 2 + 1;
}

/* ---- resolving parties ------------------------------------------------- */

static void resolve_add(
    const keten_directory *self, size_t pos, bool *taken, const char **ids, size_t *n)
{
    if (!taken[pos]) {
        taken[pos] = true;
        ids[(*n)++] = self->doc->nodes[pos]->id;
    }
}

static keten_err resolve_one(
    const keten_directory *self, const char *party, bool *taken, const char **ids, size_t *n)
{
    char name[SHOWN_MAX + 4];
    shown(party, name);
    if (!keten_policy_party_valid(party)) {
        return keten_err_set(
            KETEN_ERR_BAD_NAME, "party '%s' is not a node id, role:NAME or '*'", name);
    }
    const Keten__Directory *doc = self->doc;
    if (strcmp(party, "*") == 0 || strncmp(party, ROLE_PREFIX, ROLE_PREFIX_LEN) == 0) {
        const char *role = party[0] == '*' ? NULL : party + ROLE_PREFIX_LEN;
        size_t found = 0;
        for (size_t i = 0; i < doc->n_nodes; i++) {
            const Keten__NodeCert *c = doc->nodes[i];
            if (c == self->broker || (role != NULL && strcmp(c->role, role) != 0)) {
                continue;
            }
            resolve_add(self, i, taken, ids, n);
            found++;
        }
        if (found == 0) {
            return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
                "party '%s' names no current node of directory version %llu", name,
                (unsigned long long)doc->version);
        }
        return KETEN_OK;
    }
    const index_entry *e = index_find(&self->by_id, str_key(party), strlen(party));
    if (e == NULL) {
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "'%s' is not a current node of directory version %llu", name,
            (unsigned long long)doc->version);
    }
    if (e->val == self->broker) {
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "'%s' is the broker, which is not a partner; it cannot be addressed", name);
    }
    resolve_add(self, e->pos, taken, ids, n);
    return KETEN_OK;
}

keten_err keten_directory_resolve(
    const keten_directory *self, const char *parties, const char ***ids_out, size_t *n_out)
{
    keten_err e = KETEN_OK;
    char *copy = NULL;
    bool *taken = NULL;
    const char **ids = NULL;
    size_t n = 0;

    *ids_out = NULL;
    *n_out = 0;
    if (parties == NULL || parties[0] == '\0') {
        return keten_err_set(KETEN_ERR_BAD_NAME, "no parties given; name node ids, role:NAME or *");
    }
    size_t plen = strlen(parties);
    if (plen > PARTIES_MAX) {
        return keten_err_set(
            KETEN_ERR_BAD_NAME, "party list of %zu bytes; at most %u allowed", plen, PARTIES_MAX);
    }
    size_t n_nodes = self->doc->n_nodes;
    copy = strdup(parties);
    taken = calloc(n_nodes ? n_nodes : 1, sizeof *taken);
    ids = calloc(n_nodes ? n_nodes : 1, sizeof *ids);
    if (copy == NULL || taken == NULL || ids == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "resolving parties");
        goto out;
    }
    /* Split by hand: strtok would skip empty items, which must be refused. */
    char *p = copy;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if ((e = resolve_one(self, p, taken, ids, &n)) != KETEN_OK) {
            goto out;
        }
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    *ids_out = ids;
    *n_out = n;
    ids = NULL;
out:
    free(ids);
    free(taken);
    free(copy);
    return e;
}

/* ---- signing ------------------------------------------------------------ */

keten_err keten_directory_sign(const uint8_t *dir_bytes, size_t dir_len, const uint8_t *in,
    size_t in_len, const uint8_t sk[static KETEN_SIGN_SK_BYTES], uint8_t **out, size_t *out_len)
{
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    Keten__DirectorySignature **sigs = NULL;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    uint8_t pk[KETEN_SIGN_PK_BYTES];
    uint8_t sig[KETEN_SIG_BYTES];
    keten_err e;

    *out = NULL;
    *out_len = 0;
    if (in != NULL) {
        if ((e = parse_signed(in, in_len, &sd, &doc)) != KETEN_OK) {
            return e;
        }
        if (dir_bytes != NULL
            && (dir_len != sd->directory.len
                || memcmp(dir_bytes, sd->directory.data, dir_len) != 0)) {
            e = keten_err_set(KETEN_ERR_MISMATCH,
                "the signed directory holds other directory bytes than the ones to sign");
            goto out;
        }
    } else {
        if (dir_bytes == NULL || dir_len == 0) {
            return keten_err_set(KETEN_ERR_MALFORMED, "no directory bytes to sign");
        }
        e = KETEN_PB_UNPACK_CANONICAL(
            keten__directory, dir_bytes, dir_len, KETEN_DIRECTORY_MAX, "directory to sign", &doc);
        if (e != KETEN_OK) {
            return e;
        }
    }
    const uint8_t *dir = sd != NULL ? sd->directory.data : dir_bytes;
    size_t dlen = sd != NULL ? sd->directory.len : dir_len;
    size_t n_old = sd != NULL ? sd->n_signatures : 0;

    if (crypto_sign_ed25519_sk_to_pk(pk, sk) != 0) {
        e = keten_err_set(KETEN_ERR_CRYPTO, "cannot derive the administrator's public key");
        goto out;
    }
    for (size_t i = 0; i < n_old; i++) {
        if (sodium_memcmp(sd->signatures[i]->admin_pk.data, pk, KETEN_SIGN_PK_BYTES) == 0) {
            char hex[17];
            key_prefix_hex(pk, sizeof pk, hex);
            e = keten_err_set(KETEN_ERR_DUPLICATE_KEY,
                "administrator %s... has already signed this directory", hex);
            goto out;
        }
    }
    if (n_old >= MAX_SIGNATURES) {
        e = keten_err_set(
            KETEN_ERR_TOO_LARGE, "the directory already carries %zu signatures", n_old);
        goto out;
    }
    if ((e = signed_message(dir, dlen, &msg, &msg_len)) != KETEN_OK) {
        goto out;
    }
    if (crypto_sign_detached(sig, NULL, msg, msg_len, sk) != 0) {
        e = keten_err_set(KETEN_ERR_CRYPTO, "signing the directory failed");
        goto out;
    }
    if (crypto_sign_verify_detached(sig, msg, msg_len, pk) != 0) {
        e = keten_err_set(KETEN_ERR_CRYPTO,
            "the new directory signature does not verify; the secret key is damaged");
        goto out;
    }
    sigs = calloc(n_old + 1, sizeof *sigs);
    if (sigs == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "signing the directory");
        goto out;
    }
    for (size_t i = 0; i < n_old; i++) {
        sigs[i] = sd->signatures[i];
    }
    Keten__DirectorySignature mine = KETEN__DIRECTORY_SIGNATURE__INIT;
    mine.admin_pk.data = pk;
    mine.admin_pk.len = sizeof pk;
    mine.signature.data = sig;
    mine.signature.len = sizeof sig;
    sigs[n_old] = &mine;
    Keten__SignedDirectory result = KETEN__SIGNED_DIRECTORY__INIT;
    result.directory.data = (uint8_t *)dir;
    result.directory.len = dlen;
    result.signatures = sigs;
    result.n_signatures = n_old + 1;
    if ((e = keten_pb_pack(&result.base, out, out_len)) != KETEN_OK) {
        goto out;
    }
    if (*out_len > KETEN_DIRECTORY_MAX) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE,
            "the signed directory would be %zu bytes; at most %u allowed", *out_len,
            KETEN_DIRECTORY_MAX);
        free(*out);
        *out = NULL;
        *out_len = 0;
        goto out;
    }
out:
    free(sigs);
    free(msg);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return e;
}
