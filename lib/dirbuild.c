/*
 * dirbuild.c - the administrators' draft of the next directory version
 * (see dirbuild.h).
 *
 * Every edit works on a deep copy of the draft, runs keten_directory_check()
 * on the result and only then replaces the draft, so that a refused edit
 * leaves the draft exactly as it was. All parts of the draft are allocated
 * the way protobuf-c's own parser allocates them (malloc), so the whole draft
 * is freed with protobuf_c_message_free_unpacked().
 */
#include "dirbuild.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "directory.h"
#include "pb.h"
#include "policy.h"
#include "util.h"
#include "sha256.h"

#define ROLE_BROKER "broker"
/* Room the signatures need beside the Directory bytes in a SignedDirectory:
 * per signature a 32-byte key, a 64-byte signature and field framing. */
#define SIGNATURES_ROOM (2u * KETEN_MAX_ADMINS * 112u + 64u)
/* Comma-separated lists given to keten_dirbuild_add_rule(). */
#define LIST_MAX_ITEMS 1024
#define LIST_MAX_BYTES (16u << 10)
#define SHOWN_MAX 48
#define SUPERSEDED_REASON_MAX 64

struct keten_dirbuild {
    Keten__Directory *doc;
    uint32_t rule_ids_used; /* highest rule id of a published version (not saved) */
};

/* ---- helpers ------------------------------------------------------------ */

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

static void msg_free(void *msg_p)
{
    keten_pb_free((ProtobufCMessage **)msg_p);
}

/* A deep copy of msg owned by the caller, allocated like parsed messages. */
static keten_err own_copy(const ProtobufCMessage *msg, ProtobufCMessage **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *out = NULL;
    keten_err e = keten_pb_pack(msg, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    ProtobufCMessage *copy = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
    free(buf);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "copying a %s", msg->descriptor->short_name);
    }
    *out = copy;
    return KETEN_OK;
}

static keten_err clone_doc(const keten_dirbuild *self, Keten__Directory **out)
{
    return own_copy(&self->doc->base, (ProtobufCMessage **)(void *)out);
}

/* Check the edited copy and make it the draft; frees *work either way. */
static keten_err commit(keten_dirbuild *self, Keten__Directory **work)
{
    keten_err e = keten_directory_check(*work);
    if (e != KETEN_OK) {
        msg_free(work);
        return e;
    }
    msg_free(&self->doc);
    self->doc = *work;
    *work = NULL;
    return KETEN_OK;
}

/* Append item to a malloc()ed array of pointers. */
static keten_err append_ptr(void *arr_p, size_t *n, void *item)
{
    void ***arr = arr_p;
    if (*n >= SIZE_MAX / sizeof(void *) - 1) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the draft directory is full");
    }
    void **grown = realloc(*arr, (*n + 1) * sizeof(void *));
    if (grown == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "editing the draft directory");
    }
    grown[*n] = item;
    *arr = grown;
    (*n)++;
    return KETEN_OK;
}

static ssize_t find_node(const Keten__Directory *doc, const char *id)
{
    for (size_t i = 0; i < doc->n_nodes; i++) {
        if (strcmp(doc->nodes[i]->id, id) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

static bool listed(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], s) == 0) {
            return true;
        }
    }
    return false;
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

/* ---- life cycle ---------------------------------------------------------- */

static keten_err check_admin_args(
    const uint8_t (*admins)[KETEN_SIGN_PK_BYTES], size_t n_admins, uint32_t threshold)
{
    if (admins == NULL || n_admins < 1 || n_admins > KETEN_MAX_ADMINS) {
        return keten_err_set(KETEN_ERR_INVALID, "%zu administrators given; 1 to %d allowed",
            admins == NULL ? 0 : n_admins, KETEN_MAX_ADMINS);
    }
    if (threshold < 1 || threshold > n_admins) {
        return keten_err_set(KETEN_ERR_INVALID,
            "threshold %u with %zu administrators; it must be 1 to %zu", threshold, n_admins,
            n_admins);
    }
    for (size_t i = 0; i < n_admins; i++) {
        for (size_t j = 0; j < i; j++) {
            if (sodium_memcmp(admins[i], admins[j], KETEN_SIGN_PK_BYTES) == 0) {
                return keten_err_set(KETEN_ERR_DUPLICATE_KEY,
                    "administrator keys %zu and %zu are the same key; every administrator needs "
                    "their own",
                    j + 1, i + 1);
            }
        }
    }
    return KETEN_OK;
}

/* A malloc()ed array of copies of the keys. */
static keten_err admin_array(
    const uint8_t (*admins)[KETEN_SIGN_PK_BYTES], size_t n, ProtobufCBinaryData **out)
{
    ProtobufCBinaryData *arr = calloc(n, sizeof *arr);
    if (arr == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "copying administrator keys");
    }
    for (size_t i = 0; i < n; i++) {
        arr[i].data = malloc(KETEN_SIGN_PK_BYTES);
        if (arr[i].data == NULL) {
            for (size_t j = 0; j < i; j++) {
                free(arr[j].data);
            }
            free(arr);
            return keten_err_set(KETEN_ERR_NOMEM, "copying administrator keys");
        }
        memcpy(arr[i].data, admins[i], KETEN_SIGN_PK_BYTES);
        arr[i].len = KETEN_SIGN_PK_BYTES;
    }
    *out = arr;
    return KETEN_OK;
}

static void admin_array_free(ProtobufCBinaryData *arr, size_t n)
{
    if (arr == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(arr[i].data);
    }
    free(arr);
}

keten_err keten_dirbuild_new(const char *network, const uint8_t (*admins)[KETEN_SIGN_PK_BYTES],
    size_t n_admins, uint32_t threshold, keten_dirbuild **out)
{
    ProtobufCBinaryData *arr = NULL;
    keten_dirbuild *self = NULL;
    keten_err e;

    *out = NULL;
    if (network == NULL || !keten_name_valid(network)) {
        char name[SHOWN_MAX + 4];
        shown(network, name);
        return keten_err_set(KETEN_ERR_BAD_NAME,
            "network name '%s' is not valid; use 1 to %d of [a-z0-9-]", name, KETEN_NAME_MAX);
    }
    if ((e = check_admin_args(admins, n_admins, threshold)) != KETEN_OK) {
        return e;
    }
    if ((e = admin_array(admins, n_admins, &arr)) != KETEN_OK) {
        return e;
    }
    Keten__Directory d = KETEN__DIRECTORY__INIT;
    d.network = (char *)network;
    d.version = 1;
    d.admins = arr;
    d.n_admins = n_admins;
    d.threshold = threshold;
    d.max_message_lifetime = KETEN_MAX_LIFETIME_DEFAULT_MS;
    d.next_serial = 1;
    if ((e = keten_directory_check(&d)) != KETEN_OK) {
        goto out;
    }
    self = calloc(1, sizeof *self);
    if (self == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "starting a directory draft");
        goto out;
    }
    if ((e = own_copy(&d.base, (ProtobufCMessage **)(void *)&self->doc)) != KETEN_OK) {
        free(self);
        self = NULL;
        goto out;
    }
    *out = self;
out:
    admin_array_free(arr, n_admins);
    return e;
}

keten_err keten_dirbuild_load(const uint8_t *buf, size_t len, keten_dirbuild **out)
{
    Keten__Directory *doc = NULL;
    *out = NULL;
    if (buf == NULL || len == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED, "the saved directory draft is empty");
    }
    keten_err e = KETEN_PB_UNPACK_CANONICAL(
        keten__directory, buf, len, KETEN_DIRECTORY_MAX, "directory draft", &doc);
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = keten_directory_check(doc)) != KETEN_OK) {
        msg_free(&doc);
        return e;
    }
    keten_dirbuild *self = calloc(1, sizeof *self);
    if (self == NULL) {
        msg_free(&doc);
        return keten_err_set(KETEN_ERR_NOMEM, "loading a directory draft");
    }
    self->doc = doc;
    *out = self;
    return KETEN_OK;
}

keten_err keten_dirbuild_save(const keten_dirbuild *self, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    return keten_pb_pack(&self->doc->base, out, out_len);
}

void keten_dirbuild_destroy(keten_dirbuild **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    msg_free(&(*self_p)->doc);
    free(*self_p);
    *self_p = NULL;
}

const Keten__Directory *keten_dirbuild_doc(const keten_dirbuild *self)
{
    return self->doc;
}

/* ---- registered values ------------------------------------------------ */

static keten_err register_one(const char *label, const char *what, char ***list, size_t *n)
{
    if (label == NULL || listed(*list, *n, label)) {
        return KETEN_OK;
    }
    char *copy = strdup(label);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "registering a %s", what);
    }
    keten_err e = append_ptr(list, n, copy);
    if (e != KETEN_OK) {
        free(copy);
    }
    return e;
}

keten_err keten_dirbuild_register(keten_dirbuild *self, const char *category, const char *purpose)
{
    const char *labels[2] = { category, purpose };
    const char *whats[2] = { "category", "purpose" };
    if (category == NULL && purpose == NULL) {
        return keten_err_set(KETEN_ERR_INVALID,
            "nothing to register; give a category or a "
            "purpose");
    }
    for (size_t i = 0; i < 2; i++) {
        if (labels[i] != NULL && !keten_label_valid(labels[i])) {
            char name[SHOWN_MAX + 4];
            shown(labels[i], name);
            return keten_err_set(KETEN_ERR_BAD_NAME,
                "%s '%s' is not valid; use [a-z0-9][a-z0-9./-]{0,63}", whats[i], name);
        }
    }
    Keten__Directory *work = NULL;
    keten_err e = clone_doc(self, &work);
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = register_one(category, "category", &work->categories, &work->n_categories)) != KETEN_OK
        || (e = register_one(purpose, "purpose", &work->purposes, &work->n_purposes)) != KETEN_OK) {
        msg_free(&work);
        return e;
    }
    return commit(self, &work);
}

/* The first rule that names label (not through "*") as a category or a
 * purpose, or NULL. */
static const Keten__PolicyRule *rule_naming(
    const Keten__Directory *doc, const char *label, bool category)
{
    for (size_t i = 0; i < doc->n_rules; i++) {
        const Keten__PolicyRule *r = doc->rules[i];
        if (category ? listed(r->categories, r->n_categories, label)
                     : listed(r->purposes, r->n_purposes, label)) {
            return r;
        }
    }
    return NULL;
}

static keten_err unregister_check(
    const Keten__Directory *doc, const char *label, bool category, uint32_t *rule_out)
{
    const char *what = category ? "category" : "purpose";
    char name[SHOWN_MAX + 4];
    shown(label, name);
    if (!(category ? listed(doc->categories, doc->n_categories, label)
                   : listed(doc->purposes, doc->n_purposes, label))) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "%s '%s' is not registered in the draft; nothing to remove", what, name);
    }
    const Keten__PolicyRule *r = rule_naming(doc, label, category);
    if (r != NULL) {
        if (rule_out != NULL) {
            *rule_out = r->id;
        }
        return keten_err_set(KETEN_ERR_INVALID,
            "%s '%s' is still used by rule %u; remove that rule first (keten-keys policy "
            "remove %u), then the %s",
            what, name, (unsigned)r->id, (unsigned)r->id, what);
    }
    return KETEN_OK;
}

/* Remove label from a malloc()ed list of strings (it is there). */
static void unlist(char **list, size_t *n, const char *label)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(list[i], label) == 0) {
            free(list[i]);
            memmove(&list[i], &list[i + 1], (*n - i - 1) * sizeof *list);
            (*n)--;
            return;
        }
    }
}

keten_err keten_dirbuild_unregister(
    keten_dirbuild *self, const char *category, const char *purpose, uint32_t *rule_out)
{
    if (category == NULL && purpose == NULL) {
        return keten_err_set(
            KETEN_ERR_INVALID, "nothing to unregister; give a category or a purpose");
    }
    keten_err e;
    if ((category != NULL
            && (e = unregister_check(self->doc, category, true, rule_out)) != KETEN_OK)
        || (purpose != NULL
            && (e = unregister_check(self->doc, purpose, false, rule_out)) != KETEN_OK)) {
        return e;
    }
    Keten__Directory *work = NULL;
    if ((e = clone_doc(self, &work)) != KETEN_OK) {
        return e;
    }
    if (category != NULL) {
        unlist(work->categories, &work->n_categories, category);
    }
    if (purpose != NULL) {
        unlist(work->purposes, &work->n_purposes, purpose);
    }
    return commit(self, &work);
}

/* ---- certificates ------------------------------------------------------ */

keten_err keten_dirbuild_approve(keten_dirbuild *self, const Keten__NodeRequest *req,
    uint64_t now_ms, uint64_t valid_ms, bool rotate, uint64_t *serial_out)
{
    Keten__Directory *work = NULL;
    Keten__NodeCert *cert = NULL;
    Keten__Revocation *rev = NULL;
    keten_err e;
    char name[SHOWN_MAX + 4];
    const Keten__Directory *doc = self->doc;

    if (req == NULL || req->id == NULL || req->role == NULL || req->org == NULL
        || req->network == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "no enrollment request to approve");
    }
    shown(req->id, name);
    if (req->network[0] != '\0' && strcmp(req->network, doc->network) != 0) {
        char net[SHOWN_MAX + 4];
        shown(req->network, net);
        return keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "the request of '%s' is for network '%s'; this is '%s'", name, net, doc->network);
    }
    if (!keten_name_valid(req->id) || !keten_name_valid(req->role)) {
        return keten_err_set(KETEN_ERR_BAD_NAME,
            "the request of '%s' has an invalid id or role; use [a-z0-9-]{1,32}", name);
    }
    if (now_ms == 0 || valid_ms == 0 || valid_ms > UINT64_MAX - now_ms) {
        return keten_err_set(KETEN_ERR_INVALID,
            "certificate validity from %" PRIu64 " for %" PRIu64 " ms is not usable", now_ms,
            valid_ms);
    }
    ssize_t pos = find_node(doc, req->id);
    if (pos >= 0 && !rotate) {
        return keten_err_set(KETEN_ERR_DUPLICATE_ID,
            "'%s' already has a current certificate; approve with rotation to replace it", name);
    }
    bool broker = strcmp(req->role, ROLE_BROKER) == 0;
    for (size_t i = 0; broker && i < doc->n_nodes; i++) {
        const Keten__NodeCert *c = doc->nodes[i];
        if (strcmp(c->role, ROLE_BROKER) == 0 && (ssize_t)i != pos) {
            char other[SHOWN_MAX + 4];
            shown(c->id, other);
            return keten_err_set(KETEN_ERR_INVALID,
                "the network already has a broker, '%s'; a second broker is refused (rotate "
                "'%s' instead, or revoke it first)",
                other, other);
        }
    }
    uint64_t serial = doc->next_serial != 0 ? doc->next_serial : 1;
    if (serial == UINT64_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "certificate serials are exhausted");
    }

    Keten__NodeCert c = KETEN__NODE_CERT__INIT;
    c.id = req->id;
    c.role = req->role;
    c.org = req->org;
    c.sign_pk = req->sign_pk;
    c.enc_pk = req->enc_pk;
    c.transport_pk = req->transport_pk;
    c.log_pk = req->log_pk;
    c.not_before = now_ms;
    c.not_after = now_ms + valid_ms;
    c.serial = serial;
    if ((e = own_copy(&c.base, (ProtobufCMessage **)(void *)&cert)) != KETEN_OK) {
        goto out;
    }
    if ((e = clone_doc(self, &work)) != KETEN_OK) {
        goto out;
    }
    if (pos >= 0) {
        char reason[SUPERSEDED_REASON_MAX];
        snprintf(reason, sizeof reason, "superseded by serial %" PRIu64, serial);
        Keten__Revocation r = KETEN__REVOCATION__INIT;
        r.cert = work->nodes[pos];
        r.at = now_ms;
        r.reason = reason;
        r.superseded = 1;
        if ((e = own_copy(&r.base, (ProtobufCMessage **)(void *)&rev)) != KETEN_OK) {
            goto out;
        }
        if ((e = append_ptr(&work->revocations, &work->n_revocations, rev)) != KETEN_OK) {
            goto out;
        }
        rev = NULL;
        msg_free(&work->nodes[pos]);
        work->nodes[pos] = cert;
        cert = NULL;
    } else {
        if ((e = append_ptr(&work->nodes, &work->n_nodes, cert)) != KETEN_OK) {
            goto out;
        }
        cert = NULL;
    }
    work->next_serial = serial + 1;
    if ((e = commit(self, &work)) != KETEN_OK) {
        goto out;
    }
    if (serial_out != NULL) {
        *serial_out = serial;
    }
out:
    msg_free(&rev);
    msg_free(&cert);
    msg_free(&work);
    return e;
}

keten_err keten_dirbuild_revoke(
    keten_dirbuild *self, const char *id, const char *reason, uint64_t now_ms)
{
    Keten__Directory *work = NULL;
    Keten__Revocation *rev = NULL;
    char name[SHOWN_MAX + 4];
    keten_err e;

    if (id == NULL || reason == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "revoking needs a node id and a reason");
    }
    shown(id, name);
    if (!text_valid(reason, 1, KETEN_REASON_MAX)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "the reason for revoking '%s' must be 1 to %d bytes without control characters", name,
            KETEN_REASON_MAX);
    }
    ssize_t pos = find_node(self->doc, id);
    if (pos < 0) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "'%s' has no current certificate in the draft; nothing to revoke", name);
    }
    if ((e = clone_doc(self, &work)) != KETEN_OK) {
        return e;
    }
    Keten__Revocation r = KETEN__REVOCATION__INIT;
    r.cert = work->nodes[pos];
    r.at = now_ms;
    r.reason = (char *)reason;
    r.superseded = 0;
    if ((e = own_copy(&r.base, (ProtobufCMessage **)(void *)&rev)) != KETEN_OK) {
        goto out;
    }
    if ((e = append_ptr(&work->revocations, &work->n_revocations, rev)) != KETEN_OK) {
        goto out;
    }
    rev = NULL;
    msg_free(&work->nodes[pos]);
    memmove(&work->nodes[pos], &work->nodes[pos + 1],
        (work->n_nodes - (size_t)pos - 1) * sizeof *work->nodes);
    work->n_nodes--;
    e = commit(self, &work);
out:
    msg_free(&rev);
    msg_free(&work);
    return e;
}

/* ---- policy rules ------------------------------------------------------- */

/* A comma-separated list split into a malloc()ed array of pointers into
 * *copy_out (both freed by the caller). NULL or "" is the empty list; an
 * empty item is KETEN_ERR_BAD_NAME. */
static keten_err split_list(
    const char *list, const char *what, char **copy_out, char ***items, size_t *n)
{
    *copy_out = NULL;
    *items = NULL;
    *n = 0;
    if (list == NULL || list[0] == '\0') {
        return KETEN_OK;
    }
    size_t len = strlen(list);
    if (len > LIST_MAX_BYTES) {
        return keten_err_set(
            KETEN_ERR_TOO_LARGE, "the %s list is %zu bytes; at most %u", what, len, LIST_MAX_BYTES);
    }
    size_t count = 1;
    for (size_t i = 0; i < len; i++) {
        count += list[i] == ',';
    }
    if (count > LIST_MAX_ITEMS) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the %s list has %zu items; at most %d", what,
            count, LIST_MAX_ITEMS);
    }
    char *copy = strdup(list);
    char **arr = calloc(count, sizeof *arr);
    if (copy == NULL || arr == NULL) {
        free(copy);
        free(arr);
        return keten_err_set(KETEN_ERR_NOMEM, "reading the %s list", what);
    }
    size_t k = 0;
    char *p = copy;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (*p == '\0') {
            free(copy);
            free(arr);
            return keten_err_set(KETEN_ERR_BAD_NAME,
                "the %s list '%.60s' has an empty item; separate items by single commas", what,
                list);
        }
        arr[k++] = p;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    *copy_out = copy;
    *items = arr;
    *n = k;
    return KETEN_OK;
}

static keten_err check_rule_labels(
    char *const *items, size_t n, char *const *registered, size_t n_registered, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        char name[SHOWN_MAX + 4];
        shown(items[i], name);
        if (strcmp(items[i], "*") == 0) {
            continue;
        }
        if (!keten_label_valid(items[i])) {
            return keten_err_set(KETEN_ERR_BAD_NAME,
                "%s '%s' is not valid; use [a-z0-9][a-z0-9./-]{0,63} or '*'", what, name);
        }
        if (!listed(registered, n_registered, items[i])) {
            return keten_err_set(KETEN_ERR_UNREGISTERED,
                "%s '%s' is not registered; register it first (keten-keys register)", what, name);
        }
    }
    return KETEN_OK;
}

static keten_err check_parties(char *const *items, size_t n, const char *what)
{
    if (n == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "a rule needs at least one '%s' party", what);
    }
    for (size_t i = 0; i < n; i++) {
        if (!keten_policy_party_valid(items[i])) {
            char name[SHOWN_MAX + 4];
            shown(items[i], name);
            return keten_err_set(KETEN_ERR_BAD_NAME,
                "'%s' party '%s' is not a node id, role:NAME or '*'", what, name);
        }
    }
    return KETEN_OK;
}

keten_err keten_dirbuild_add_rule(keten_dirbuild *self, Keten__Effect effect, const char *from,
    const char *to, const char *categories, const char *kinds, const char *purposes,
    uint32_t *id_out)
{
    enum { L_FROM, L_TO, L_CAT, L_KIND, L_PURP, L_COUNT };
    static const char *const what[L_COUNT] = { "from", "to", "category", "kind", "purpose" };
    const char *src[L_COUNT] = { from, to, categories, kinds, purposes };
    char *copies[L_COUNT] = { NULL };
    char **items[L_COUNT] = { NULL };
    size_t n[L_COUNT] = { 0 };
    Keten__Kind *kind_arr = NULL;
    Keten__Directory *work = NULL;
    Keten__PolicyRule *owned = NULL;
    const Keten__Directory *doc = self->doc;
    keten_err e = KETEN_OK;

    if (effect != KETEN__EFFECT__EFFECT_ALLOW && effect != KETEN__EFFECT__EFFECT_DENY) {
        return keten_err_set(KETEN_ERR_INVALID, "a rule must allow or deny");
    }
    for (int i = 0; i < L_COUNT; i++) {
        if ((e = split_list(src[i], what[i], &copies[i], &items[i], &n[i])) != KETEN_OK) {
            goto out;
        }
    }
    if ((e = check_parties(items[L_FROM], n[L_FROM], "from")) != KETEN_OK
        || (e = check_parties(items[L_TO], n[L_TO], "to")) != KETEN_OK) {
        goto out;
    }
    if (n[L_CAT] == 0) {
        e = keten_err_set(KETEN_ERR_INVALID, "a rule needs at least one category (or '*')");
        goto out;
    }
    if ((e = check_rule_labels(
             items[L_CAT], n[L_CAT], doc->categories, doc->n_categories, "category"))
            != KETEN_OK
        || (e = check_rule_labels(
                items[L_PURP], n[L_PURP], doc->purposes, doc->n_purposes, "purpose"))
            != KETEN_OK) {
        goto out;
    }
    if (n[L_KIND] > 0) {
        kind_arr = calloc(n[L_KIND], sizeof *kind_arr);
        if (kind_arr == NULL) {
            e = keten_err_set(KETEN_ERR_NOMEM, "reading the kind list");
            goto out;
        }
        for (size_t i = 0; i < n[L_KIND]; i++) {
            if ((e = keten_policy_kind_parse(items[L_KIND][i], &kind_arr[i])) != KETEN_OK) {
                goto out;
            }
        }
    }
    uint32_t max_id = self->rule_ids_used;
    for (size_t i = 0; i < doc->n_rules; i++) {
        if (doc->rules[i]->id > max_id) {
            max_id = doc->rules[i]->id;
        }
    }
    if (max_id == UINT32_MAX) {
        e = keten_err_set(KETEN_ERR_INVALID, "policy rule ids are exhausted");
        goto out;
    }
    Keten__PolicyRule r = KETEN__POLICY_RULE__INIT;
    r.id = max_id + 1;
    r.effect = effect;
    r.from = items[L_FROM];
    r.n_from = n[L_FROM];
    r.to = items[L_TO];
    r.n_to = n[L_TO];
    r.categories = items[L_CAT];
    r.n_categories = n[L_CAT];
    r.kinds = kind_arr;
    r.n_kinds = n[L_KIND];
    r.purposes = items[L_PURP];
    r.n_purposes = n[L_PURP];
    if ((e = keten_policy_rule_check(&r)) != KETEN_OK) {
        goto out;
    }
    if ((e = own_copy(&r.base, (ProtobufCMessage **)(void *)&owned)) != KETEN_OK
        || (e = clone_doc(self, &work)) != KETEN_OK) {
        goto out;
    }
    if ((e = append_ptr(&work->rules, &work->n_rules, owned)) != KETEN_OK) {
        goto out;
    }
    owned = NULL;
    if ((e = commit(self, &work)) != KETEN_OK) {
        goto out;
    }
    if (id_out != NULL) {
        *id_out = max_id + 1;
    }
out:
    msg_free(&owned);
    msg_free(&work);
    free(kind_arr);
    for (int i = 0; i < L_COUNT; i++) {
        free(items[i]);
        free(copies[i]);
    }
    return e;
}

/* ---- roles --------------------------------------------------------------- */

static const char *const standard_roles[] = { KETEN_DIRBUILD_STANDARD_ROLES };
#define N_STANDARD_ROLES (sizeof standard_roles / sizeof standard_roles[0])
#define ROLE_SUGGEST_MAX KETEN_NAME_MAX
#define KNOWN_ROLES_TEXT_MAX 320

bool keten_dirbuild_role_known(const keten_dirbuild *self, const char *role)
{
    for (size_t i = 0; i < N_STANDARD_ROLES; i++) {
        if (strcmp(standard_roles[i], role) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < self->doc->n_nodes; i++) {
        if (strcmp(self->doc->nodes[i]->role, role) == 0) {
            return true;
        }
    }
    return false;
}


/* How far role is from a known one: its edit distance when within a few
 * typing mistakes; a known role that starts the typed one ("housingcorp")
 * or that the typed one starts ("mun") comes after those. SIZE_MAX: not
 * close. */
static size_t closeness(const char *typed, const char *known)
{
    size_t lt = strlen(typed), lk = strlen(known);
    size_t d = strlen(typed) > ROLE_SUGGEST_MAX || strlen(known) > ROLE_SUGGEST_MAX
        ? SIZE_MAX
        : keten_edit_distance(typed, known);
    size_t limit = lt / 3 > 2 ? lt / 3 : 2;
    if (d <= limit) {
        return d;
    }
    size_t shorter = lt < lk ? lt : lk;
    if (shorter >= 3 && strncmp(typed, known, shorter) == 0) {
        return limit + 1 + (lt > lk ? lt - lk : lk - lt);
    }
    return SIZE_MAX;
}

/* The known roles, each once: the standard ones, then the draft's others. */
static size_t known_roles(const Keten__Directory *doc, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < N_STANDARD_ROLES && n < cap; i++) {
        out[n++] = standard_roles[i];
    }
    for (size_t i = 0; i < doc->n_nodes && n < cap; i++) {
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++) {
            seen = strcmp(out[j], doc->nodes[i]->role) == 0;
        }
        if (!seen) {
            out[n++] = doc->nodes[i]->role;
        }
    }
    return n;
}

static keten_err unknown_role(const Keten__Directory *doc, const char *role, const char *what)
{
    const char *known[N_STANDARD_ROLES + 64];
    size_t n = known_roles(doc, known, sizeof known / sizeof known[0]);
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t d = closeness(role, known[i]);
        if (d < best_d) {
            best = known[i];
            best_d = d;
        }
    }
    char list[KNOWN_ROLES_TEXT_MAX];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i > 0 ? ", " : "", known[i]);
        if (w < 0) {
            break;
        }
        used += (size_t)w;
    }
    char name[SHOWN_MAX + 4], hint[ROLE_SUGGEST_MAX + 32] = "";
    shown(role, name);
    if (best != NULL) {
        snprintf(hint, sizeof hint, " (did you mean role:%s?)", best);
    }
    return keten_err_set(KETEN_ERR_NOT_FOUND,
        "%s role:%s: no partner in the draft has role '%s' and it is not a standard role%s; "
        "known roles: %s. A rule for a role no partner has yet needs --allow-unknown-role",
        what, name, name, hint, list);
}

keten_err keten_dirbuild_check_roles(
    const keten_dirbuild *self, const char *parties, const char *what)
{
    char *copy = NULL;
    char **items = NULL;
    size_t n = 0;
    keten_err e = split_list(parties, what, &copy, &items, &n);
    for (size_t i = 0; e == KETEN_OK && i < n; i++) {
        const char *role = items[i];
        if (strncmp(role, "role:", 5) != 0) {
            continue;
        }
        role += 5;
        if (keten_name_valid(role) && !keten_dirbuild_role_known(self, role)) {
            e = unknown_role(self->doc, role, what);
        }
    }
    free(items);
    free(copy);
    return e;
}

void keten_dirbuild_rule_ids_used(keten_dirbuild *self, uint32_t max_id)
{
    if (max_id > self->rule_ids_used) {
        self->rule_ids_used = max_id;
    }
}

keten_err keten_dirbuild_remove_rule(keten_dirbuild *self, uint32_t id)
{
    size_t pos = SIZE_MAX;
    for (size_t i = 0; i < self->doc->n_rules; i++) {
        if (self->doc->rules[i]->id == id) {
            pos = i;
            break;
        }
    }
    if (pos == SIZE_MAX) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "the draft has no policy rule %u", id);
    }
    Keten__Directory *work = NULL;
    keten_err e = clone_doc(self, &work);
    if (e != KETEN_OK) {
        return e;
    }
    msg_free(&work->rules[pos]);
    memmove(
        &work->rules[pos], &work->rules[pos + 1], (work->n_rules - pos - 1) * sizeof *work->rules);
    work->n_rules--;
    return commit(self, &work);
}

/* ---- administrators ----------------------------------------------------- */

keten_err keten_dirbuild_set_admins(keten_dirbuild *self,
    const uint8_t (*admins)[KETEN_SIGN_PK_BYTES], size_t n_admins, uint32_t threshold)
{
    ProtobufCBinaryData *arr = NULL;
    Keten__Directory *work = NULL;
    keten_err e = check_admin_args(admins, n_admins, threshold);
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = admin_array(admins, n_admins, &arr)) != KETEN_OK) {
        return e;
    }
    if ((e = clone_doc(self, &work)) != KETEN_OK) {
        admin_array_free(arr, n_admins);
        return e;
    }
    admin_array_free(work->admins, work->n_admins);
    work->admins = arr;
    work->n_admins = n_admins;
    work->threshold = threshold;
    return commit(self, &work);
}

/* ---- publishing --------------------------------------------------------- */

keten_err keten_dirbuild_finish(
    keten_dirbuild *self, uint64_t now_ms, uint64_t valid_ms, uint8_t **out, size_t *out_len)
{
    Keten__Directory *work = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e;

    *out = NULL;
    *out_len = 0;
    if (now_ms == 0 || valid_ms == 0 || valid_ms > UINT64_MAX - now_ms) {
        return keten_err_set(KETEN_ERR_INVALID,
            "directory validity from %" PRIu64 " for %" PRIu64 " ms is not usable", now_ms,
            valid_ms);
    }
    if ((e = clone_doc(self, &work)) != KETEN_OK) {
        return e;
    }
    work->issued_at = now_ms;
    work->expires_at = now_ms + valid_ms;
    if ((e = keten_directory_check(work)) != KETEN_OK
        || (e = keten_pb_pack(&work->base, &buf, &len)) != KETEN_OK) {
        goto out;
    }
    if (len > KETEN_DIRECTORY_MAX - SIGNATURES_ROOM) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE,
            "the directory is %zu bytes; with its signatures it must stay under %u", len,
            KETEN_DIRECTORY_MAX);
        goto out;
    }
    if ((e = commit(self, &work)) != KETEN_OK) {
        goto out;
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    free(buf);
    msg_free(&work);
    return e;
}

keten_err keten_dirbuild_advance(keten_dirbuild *self, const uint8_t *dir_bytes, size_t len)
{
    Keten__Directory *pub = NULL;
    Keten__Directory *work = NULL;
    uint8_t *hash = NULL;
    keten_err e;

    if (dir_bytes == NULL || len == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED, "no published directory bytes");
    }
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__directory, dir_bytes, len, KETEN_DIRECTORY_MAX, "published directory", &pub);
    if (e != KETEN_OK) {
        return e;
    }
    if (strcmp(pub->network, self->doc->network) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "the published directory is for another network than the draft ('%s')",
            self->doc->network);
        goto out;
    }
    if (pub->version != self->doc->version) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "the published directory has version %" PRIu64 " but the draft is version %" PRIu64,
            pub->version, self->doc->version);
        goto out;
    }
    if (self->doc->version == UINT64_MAX) {
        e = keten_err_set(KETEN_ERR_INVALID, "directory versions are exhausted");
        goto out;
    }
    hash = malloc(KETEN_HASH_BYTES);
    if (hash == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "advancing the draft");
        goto out;
    }
    keten_sha256(hash, dir_bytes, len);
    if ((e = clone_doc(self, &work)) != KETEN_OK) {
        goto out;
    }
    free(work->previous_hash.data);
    work->previous_hash.data = hash;
    work->previous_hash.len = KETEN_HASH_BYTES;
    hash = NULL;
    work->version++;
    e = commit(self, &work);
out:
    free(hash);
    msg_free(&work);
    msg_free(&pub);
    return e;
}

/* ---- differences --------------------------------------------------------- */

void keten_dirbuild_changes_destroy(keten_dirbuild_changes **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_dirbuild_changes *d = *self_p;
    free(d->added);
    free(d->rotated_new);
    free(d->rotated_old);
    free(d->revoked);
    free(d->rules_added);
    free(d->rules_removed);
    free(d->categories_added);
    free(d->categories_removed);
    free(d->purposes_added);
    free(d->purposes_removed);
    free(d->admins_added);
    free(d->admins_removed);
    free(d);
    *self_p = NULL;
}

/* Append a pointer into one of the directories to a diff array. */
static keten_err push(void *arr_p, size_t *n, const void *item)
{
    return append_ptr(arr_p, n, (void *)(uintptr_t)item);
}

static const Keten__NodeCert *cert_by_id(const Keten__Directory *doc, const char *id)
{
    ssize_t i = doc != NULL ? find_node(doc, id) : -1;
    return i < 0 ? NULL : doc->nodes[i];
}

static bool has_revocation(const Keten__Directory *doc, const Keten__Revocation *r)
{
    for (size_t i = 0; doc != NULL && i < doc->n_revocations; i++) {
        const Keten__Revocation *o = doc->revocations[i];
        if (o->cert != NULL && r->cert != NULL && o->cert->serial == r->cert->serial
            && strcmp(o->cert->id, r->cert->id) == 0 && o->superseded == r->superseded) {
            return true;
        }
    }
    return false;
}

/* A revocation (not a supersession) of serial in `to` that `from` lacks. */
static bool newly_revoked(const Keten__Directory *from, const Keten__Directory *to, uint64_t serial)
{
    for (size_t i = 0; i < to->n_revocations; i++) {
        const Keten__Revocation *r = to->revocations[i];
        if (!r->superseded && r->cert != NULL && r->cert->serial == serial
            && !has_revocation(from, r)) {
            return true;
        }
    }
    return false;
}

static const Keten__PolicyRule *rule_by_id(const Keten__Directory *doc, uint32_t id)
{
    for (size_t i = 0; doc != NULL && i < doc->n_rules; i++) {
        if (doc->rules[i]->id == id) {
            return doc->rules[i];
        }
    }
    return NULL;
}

/* Same id and the same content? */
static keten_err rules_equal(const Keten__PolicyRule *a, const Keten__PolicyRule *b, bool *equal)
{
    uint8_t *pa = NULL, *pb = NULL;
    size_t la = 0, lb = 0;
    keten_err e = keten_pb_pack(&a->base, &pa, &la);
    if (e == KETEN_OK) {
        e = keten_pb_pack(&b->base, &pb, &lb);
    }
    *equal = e == KETEN_OK && la == lb && (la == 0 || memcmp(pa, pb, la) == 0);
    free(pa);
    free(pb);
    return e;
}

static bool key_listed(const ProtobufCBinaryData *keys, size_t n, const ProtobufCBinaryData *k)
{
    for (size_t i = 0; i < n; i++) {
        if (keys[i].len == k->len && (k->len == 0 || memcmp(keys[i].data, k->data, k->len) == 0)) {
            return true;
        }
    }
    return false;
}

/* The directory's bytes with version, times and previous_hash left out. */
static keten_err content_bytes(const Keten__Directory *doc, uint8_t **out, size_t *len)
{
    Keten__Directory c = *doc;
    c.version = 0;
    c.issued_at = 0;
    c.expires_at = 0;
    c.previous_hash.data = NULL;
    c.previous_hash.len = 0;
    return keten_pb_pack(&c.base, out, len);
}

static keten_err diff_certs(
    const Keten__Directory *from, const Keten__Directory *to, keten_dirbuild_changes *d)
{
    keten_err e = KETEN_OK;
    for (size_t i = 0; e == KETEN_OK && i < to->n_nodes; i++) {
        const Keten__NodeCert *c = to->nodes[i];
        const Keten__NodeCert *old = cert_by_id(from, c->id);
        if (old == NULL || (old->serial != c->serial && newly_revoked(from, to, old->serial))) {
            e = push(&d->added, &d->n_added, c);
        } else if (old->serial != c->serial) {
            size_t n = d->n_rotated;
            e = push(&d->rotated_new, &n, c);
            if (e == KETEN_OK) {
                e = push(&d->rotated_old, &d->n_rotated, old);
            }
        }
    }
    for (size_t i = 0; e == KETEN_OK && i < to->n_revocations; i++) {
        const Keten__Revocation *r = to->revocations[i];
        if (!r->superseded && !has_revocation(from, r)) {
            e = push(&d->revoked, &d->n_revoked, r);
        }
    }
    return e;
}

static keten_err diff_rules(
    const Keten__Directory *from, const Keten__Directory *to, keten_dirbuild_changes *d)
{
    keten_err e = KETEN_OK;
    bool equal = false;
    for (size_t i = 0; e == KETEN_OK && i < to->n_rules; i++) {
        const Keten__PolicyRule *old = rule_by_id(from, to->rules[i]->id);
        if (old == NULL || ((e = rules_equal(old, to->rules[i], &equal)) == KETEN_OK && !equal)) {
            e = push(&d->rules_added, &d->n_rules_added, to->rules[i]);
        }
    }
    for (size_t i = 0; e == KETEN_OK && from != NULL && i < from->n_rules; i++) {
        const Keten__PolicyRule *now = rule_by_id(to, from->rules[i]->id);
        if (now == NULL || ((e = rules_equal(now, from->rules[i], &equal)) == KETEN_OK && !equal)) {
            e = push(&d->rules_removed, &d->n_rules_removed, from->rules[i]);
        }
    }
    return e;
}

/* Strings of b not in a, appended to *out. */
static keten_err diff_strings(
    char *const *a, size_t na, char *const *b, size_t nb, const char ***out, size_t *n)
{
    keten_err e = KETEN_OK;
    for (size_t i = 0; e == KETEN_OK && i < nb; i++) {
        if (!listed(a, na, b[i])) {
            e = push(out, n, b[i]);
        }
    }
    return e;
}

static keten_err diff_admins(
    const Keten__Directory *from, const Keten__Directory *to, keten_dirbuild_changes *d)
{
    keten_err e = KETEN_OK;
    size_t n_from = from != NULL ? from->n_admins : 0;
    const ProtobufCBinaryData *from_admins = from != NULL ? from->admins : NULL;
    for (size_t i = 0; e == KETEN_OK && i < to->n_admins; i++) {
        if (!key_listed(from_admins, n_from, &to->admins[i])) {
            e = push(&d->admins_added, &d->n_admins_added, &to->admins[i]);
        }
    }
    for (size_t i = 0; e == KETEN_OK && i < n_from; i++) {
        if (!key_listed(to->admins, to->n_admins, &from_admins[i])) {
            e = push(&d->admins_removed, &d->n_admins_removed, &from_admins[i]);
        }
    }
    d->threshold_from = from != NULL ? from->threshold : 0;
    d->threshold_to = to->threshold;
    return e;
}

keten_err keten_dirbuild_diff(
    const Keten__Directory *from, const Keten__Directory *to, keten_dirbuild_changes **out)
{
    *out = NULL;
    keten_dirbuild_changes *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "comparing directories");
    }
    char *const *from_cats = from != NULL ? from->categories : NULL;
    char *const *from_purps = from != NULL ? from->purposes : NULL;
    size_t n_from_cats = from != NULL ? from->n_categories : 0;
    size_t n_from_purps = from != NULL ? from->n_purposes : 0;
    keten_err e = diff_certs(from, to, d);
    if (e == KETEN_OK) {
        e = diff_rules(from, to, d);
    }
    if (e == KETEN_OK) {
        e = diff_strings(from_cats, n_from_cats, to->categories, to->n_categories,
            &d->categories_added, &d->n_categories_added);
    }
    if (e == KETEN_OK) {
        e = diff_strings(to->categories, to->n_categories, from_cats, n_from_cats,
            &d->categories_removed, &d->n_categories_removed);
    }
    if (e == KETEN_OK) {
        e = diff_strings(from_purps, n_from_purps, to->purposes, to->n_purposes, &d->purposes_added,
            &d->n_purposes_added);
    }
    if (e == KETEN_OK) {
        e = diff_strings(to->purposes, to->n_purposes, from_purps, n_from_purps,
            &d->purposes_removed, &d->n_purposes_removed);
    }
    if (e == KETEN_OK) {
        e = diff_admins(from, to, d);
    }
    if (e == KETEN_OK && from == NULL) {
        d->changed = true;
    } else if (e == KETEN_OK) {
        uint8_t *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        e = content_bytes(from, &a, &la);
        if (e == KETEN_OK) {
            e = content_bytes(to, &b, &lb);
        }
        d->changed = e == KETEN_OK && (la != lb || (la > 0 && memcmp(a, b, la) != 0));
        free(a);
        free(b);
    }
    if (e != KETEN_OK) {
        keten_dirbuild_changes_destroy(&d);
        return e;
    }
    size_t listed_changes = d->n_added + d->n_rotated + d->n_revoked + d->n_rules_added
        + d->n_rules_removed + d->n_categories_added + d->n_categories_removed + d->n_purposes_added
        + d->n_purposes_removed + d->n_admins_added + d->n_admins_removed
        + (d->threshold_from != d->threshold_to ? 1 : 0);
    d->other = d->changed && listed_changes == 0 && from != NULL;
    *out = d;
    return KETEN_OK;
}
