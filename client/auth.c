#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keten.h"
#include "log.h"
#include "nodestore.h"
#include "pb.h"
#include "rec.h"
#include "sha256.h"
#include "util.h"

#define TOKEN_ID_BYTES (KETEN_AUTH_TOKEN_ID_CHARS / 2)
#define PREFIX_CHARS (sizeof KETEN_AUTH_TOKEN_PREFIX - 1)
#define B64URL_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define NAME_ALPHABET "abcdefghijklmnopqrstuvwxyz0123456789._-"
#define HEX_ALPHABET "0123456789abcdef"
#define SCOPES_TEXT_MAX sizeof "read,send,ack"

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    { "read", KETEN_SCOPE_READ },
    { "send", KETEN_SCOPE_SEND },
    { "ack", KETEN_SCOPE_ACK },
};
#define N_SCOPES (sizeof scope_names / sizeof scope_names[0])

/* ---- scopes ------------------------------------------------------------- */

keten_err keten_auth_scopes_parse(const char *text, unsigned *out)
{
    *out = 0;
    if (text == NULL || text[0] == '\0') {
        return keten_err_set(KETEN_ERR_INVALID, "no scope given: use read, send and ack");
    }
    unsigned got = 0;
    const char *p = text;
    for (;;) {
        size_t n = strcspn(p, ",");
        unsigned bit = 0;
        for (size_t i = 0; i < N_SCOPES; i++) {
            if (n == strlen(scope_names[i].name) && strncmp(p, scope_names[i].name, n) == 0) {
                bit = scope_names[i].bit;
            }
        }
        if (bit == 0) {
            return keten_err_set(KETEN_ERR_INVALID,
                "'%.*s' is not a scope: use read, send and ack, separated by commas",
                (int)(n < 32 ? n : 32), p);
        }
        if ((got & bit) != 0) {
            return keten_err_set(KETEN_ERR_INVALID, "scope '%.*s' is named twice", (int)n, p);
        }
        got |= bit;
        if (p[n] == '\0') {
            break;
        }
        p += n + 1;
    }
    *out = got;
    return KETEN_OK;
}

void keten_auth_scopes_text(unsigned scopes, char *out, size_t out_size)
{
    size_t len = 0;
    if (out_size == 0) {
        return;
    }
    out[0] = '\0';
    for (size_t i = 0; i < N_SCOPES; i++) {
        if ((scopes & scope_names[i].bit) != 0) {
            int w = snprintf(
                out + len, out_size - len, "%s%s", len > 0 ? "," : "", scope_names[i].name);
            if (w < 0 || (size_t)w >= out_size - len) {
                return;
            }
            len += (size_t)w;
        }
    }
}

json_t *keten_auth_scopes_json(unsigned scopes)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < N_SCOPES; i++) {
        if ((scopes & scope_names[i].bit) != 0
            && json_array_append_new(a, json_string(scope_names[i].name)) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/* ---- principals --------------------------------------------------------- */

void keten_auth_peer_text(const struct sockaddr *peer, char out[static KETEN_AUTH_PEER_MAX])
{
    snprintf(out, KETEN_AUTH_PEER_MAX, "unknown");
    if (peer == NULL) {
        return;
    }
    if (peer->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)peer;
        if (inet_ntop(AF_INET, &a->sin_addr, out, KETEN_AUTH_PEER_MAX) == NULL) {
            snprintf(out, KETEN_AUTH_PEER_MAX, "unknown");
        }
    } else if (peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)peer;
        const void *addr = &a->sin6_addr;
        int family = AF_INET6;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            addr = &a->sin6_addr.s6_addr[12];
            family = AF_INET;
        }
        if (inet_ntop(family, addr, out, KETEN_AUTH_PEER_MAX) == NULL) {
            snprintf(out, KETEN_AUTH_PEER_MAX, "unknown");
        }
    }
}

static void principal_init(keten_auth_principal *out, keten_auth_via via)
{
    memset(out, 0, sizeof *out);
    out->via = via;
    snprintf(out->peer, sizeof out->peer, "unknown");
}

void keten_auth_local(unsigned uid, keten_auth_principal *out)
{
    principal_init(out, KETEN_VIA_UNIX);
    snprintf(out->actor, sizeof out->actor, "local");
    snprintf(out->peer, sizeof out->peer, "uid=%u", uid);
    out->scopes = KETEN_SCOPE_ALL;
}

keten_err keten_auth_local_fd(int fd, keten_auth_principal *out)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    principal_init(out, KETEN_VIA_UNIX);
    snprintf(out->actor, sizeof out->actor, "anonymous");
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
        return keten_err_set(
            KETEN_ERR_IO, "cannot tell who is connected to the API socket: %s", strerror(errno));
    }
    keten_auth_local((unsigned)cred.uid, out);
    return KETEN_OK;
}

void keten_auth_anonymous(
    keten_auth_via via, const struct sockaddr *peer, keten_auth_principal *out)
{
    principal_init(out, via);
    snprintf(out->actor, sizeof out->actor, "anonymous");
    keten_auth_peer_text(peer, out->peer);
}

/* ---- secrets ------------------------------------------------------------ */

/* 32 random bytes (in sodium_malloc memory, wiped) as 43 base64url chars. */
static keten_err random_b64(char out[static KETEN_AUTH_B64_CHARS + 1])
{
    uint8_t *raw = sodium_malloc(KETEN_AUTH_SECRET_BYTES);
    if (raw == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "no memory for a secret");
    }
    randombytes_buf(raw, KETEN_AUTH_SECRET_BYTES);
    sodium_bin2base64(out, KETEN_AUTH_B64_CHARS + 1, raw, KETEN_AUTH_SECRET_BYTES,
        sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_free(raw); /* wipes */
    return KETEN_OK;
}

/* Are the len bytes at s exactly 43 base64url characters encoding 32 bytes
 * canonically (the last character's unused bits zero)? */
static bool b64_secret_ok(const char *s, size_t len)
{
    if (len != KETEN_AUTH_B64_CHARS || strspn(s, B64URL_ALPHABET) < len) {
        return false;
    }
    uint8_t *raw = sodium_malloc(KETEN_AUTH_SECRET_BYTES);
    if (raw == NULL) {
        return false;
    }
    size_t got = 0;
    const char *end = NULL;
    int rc = sodium_base642bin(raw, KETEN_AUTH_SECRET_BYTES, s, len, NULL, &got, &end,
        sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_free(raw);
    return rc == 0 && got == KETEN_AUTH_SECRET_BYTES && end == s + len;
}

/* ---- tokens ------------------------------------------------------------- */

static bool token_name_ok(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    return n >= 1 && n <= KETEN_AUTH_TOKEN_NAME_MAX && strspn(name, NAME_ALPHABET) == n;
}

static bool token_live(const Keten__TokenRecord *r, uint64_t now_ms)
{
    return r->revoked_at == 0 && (r->expires_at == 0 || now_ms < r->expires_at);
}

typedef keten_err (*token_visit)(const MDB_val *key, Keten__TokenRecord *r, void *arg);

/* Call visit for every record of `tokens` (decoded and checked); stops at
 * the first error. */
static keten_err tokens_each(keten_store *st, MDB_txn *txn, token_visit visit, void *arg)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, keten_store_dbi(st, KETEN_DB_TOKENS), &cur);
    if (rc != 0) {
        return keten_err_set(KETEN_ERR_STORE, "mdb_cursor_open (tokens): %s", mdb_strerror(rc));
    }
    keten_err e = KETEN_OK;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        Keten__TokenRecord *r = NULL;
        e = keten_nodestore_token_decode(&k, &v, &r);
        if (e == KETEN_OK) {
            e = visit(&k, r, arg);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        if (e != KETEN_OK) {
            break;
        }
    }
    if (e == KETEN_OK && rc != MDB_NOTFOUND) {
        e = keten_err_set(KETEN_ERR_STORE, "mdb_cursor_get (tokens): %s", mdb_strerror(rc));
    }
    mdb_cursor_close(cur);
    return e;
}

typedef struct create_scan {
    const char *name;
    const char *id;
    uint64_t now_ms;
    size_t count;
    bool id_taken;
} create_scan;

static keten_err create_visit(const MDB_val *key, Keten__TokenRecord *r, void *arg)
{
    (void)key;
    create_scan *c = arg;
    c->count++;
    if (strcmp(r->id, c->id) == 0) {
        c->id_taken = true;
    }
    if (strcmp(r->name, c->name) == 0 && token_live(r, c->now_ms)) {
        return keten_err_set(KETEN_ERR_EXISTS,
            "a token named %s exists already (id %s): revoke it first or choose another name",
            r->name, r->id);
    }
    return KETEN_OK;
}

keten_err keten_auth_token_create(keten_store *st, const char *name, unsigned scopes,
    uint64_t expires_at, uint64_t now_ms, char token_out[static KETEN_AUTH_TOKEN_CHARS + 1],
    char id_out[static KETEN_AUTH_TOKEN_ID_CHARS + 1])
{
    token_out[0] = '\0';
    id_out[0] = '\0';
    if (!token_name_ok(name)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "a token's name is 1 to %d characters of a-z, 0-9, '.', '_' and '-'",
            KETEN_AUTH_TOKEN_NAME_MAX);
    }
    if (scopes == 0 || (scopes & ~KETEN_SCOPE_ALL) != 0) {
        return keten_err_set(
            KETEN_ERR_INVALID, "a token needs one or more of the scopes read, send and ack");
    }
    if (expires_at != 0 && (expires_at <= now_ms || expires_at > KETEN_TIME_MAX_MS)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "a token's expiry must lie in the future (and before the year 10000)");
    }
    char id[KETEN_AUTH_TOKEN_ID_CHARS + 1];
    char token[KETEN_AUTH_TOKEN_CHARS + 1];
    uint8_t hash[KETEN_SHA256_BYTES];
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(st, true, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    create_scan scan = { .name = name, .id = id, .now_ms = now_ms };
    for (int attempt = 0;; attempt++) {
        uint8_t idb[TOKEN_ID_BYTES];
        randombytes_buf(idb, sizeof idb);
        keten_hex(idb, sizeof idb, id);
        scan.count = 0;
        scan.id_taken = false;
        e = tokens_each(st, txn, create_visit, &scan);
        if (e != KETEN_OK || !scan.id_taken) {
            break;
        }
        if (attempt == 8) { /* 2^-64 per attempt: a broken random source */
            e = keten_err_set(KETEN_ERR_CRYPTO, "no unused token id found");
            break;
        }
    }
    if (e == KETEN_OK && scan.count >= KETEN_AUTH_TOKENS_MAX) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "the node holds %zu tokens, the most it keeps; revoked ones count too", scan.count);
    }
    if (e == KETEN_OK) {
        memcpy(token, KETEN_AUTH_TOKEN_PREFIX, PREFIX_CHARS);
        e = random_b64(token + PREFIX_CHARS);
    }
    if (e == KETEN_OK) {
        keten_sha256(hash, token, KETEN_AUTH_TOKEN_CHARS);
        Keten__TokenRecord r = KETEN__TOKEN_RECORD__INIT;
        r.id = id;
        r.name = (char *)(uintptr_t)name;
        r.scopes = scopes;
        r.created_at = now_ms;
        r.expires_at = expires_at;
        r.token_hash.data = hash;
        r.token_hash.len = sizeof hash;
        e = keten_nodestore_token_put(st, txn, &r);
    }
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    if (e == KETEN_OK) {
        memcpy(token_out, token, sizeof token);
        memcpy(id_out, id, sizeof id);
    }
    sodium_memzero(token, sizeof token);
    return e;
}

static json_t *time_or_null(uint64_t ms)
{
    return ms == 0 ? json_null() : keten_rec_time(ms);
}

/* Reject: set the field, what is allowed, and a detail. */
static keten_err request_bad(const char **field_out, const char **allowed_out, const char *field,
    const char *allowed, const char *detail)
{
    *field_out = field;
    *allowed_out = allowed;
    return keten_err_set(KETEN_ERR_INVALID, "%s", detail);
}

keten_err keten_auth_token_request(const json_t *body, uint64_t now_ms, keten_auth_token_params *out,
    const char **field_out, const char **allowed_out)
{
    static const char name_allowed[] = "1 to 64 characters of a-z, 0-9, '.', '_' and '-'";
    static const char scopes_allowed[] = "a list of read, send and ack, each at most once";
    static const char expires_allowed[]
        = "a future time: ISO 8601 UTC (2027-01-31T00:00:00Z) or ms since 1970, or null";
    memset(out, 0, sizeof *out);
    *field_out = "";
    *allowed_out = "";
    if (!json_is_object(body)) {
        return request_bad(field_out, allowed_out, "", "an object {\"name\",\"scopes\"}",
            "the body is not a JSON object");
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "scopes") != 0
            && strcmp(key, "expires_at") != 0) {
            return request_bad(field_out, allowed_out, "", "name, scopes, expires_at",
                "the body has a field a token request does not have");
        }
    }
    const char *name = json_string_value(json_object_get(body, "name"));
    if (name == NULL || !token_name_ok(name)) {
        return request_bad(field_out, allowed_out, "/name", name_allowed,
            name == NULL ? "name is missing or not a string" : "name is not a token name");
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    const json_t *scopes = json_object_get(body, "scopes");
    if (!json_is_array(scopes) || json_array_size(scopes) == 0) {
        return request_bad(field_out, allowed_out, "/scopes", scopes_allowed,
            "scopes is missing, empty or not a list");
    }
    static const char *const pointers[] = { "/scopes/0", "/scopes/1", "/scopes/2" };
    for (size_t i = 0; i < json_array_size(scopes); i++) {
        const char *field = i < N_SCOPES ? pointers[i] : "/scopes";
        const char *word = json_string_value(json_array_get(scopes, i));
        unsigned bit = 0;
        for (size_t k = 0; word != NULL && k < N_SCOPES; k++) {
            if (strcmp(word, scope_names[k].name) == 0) {
                bit = scope_names[k].bit;
            }
        }
        if (bit == 0 || (out->scopes & bit) != 0 || i >= N_SCOPES) {
            return request_bad(field_out, allowed_out, field, scopes_allowed,
                bit == 0 ? "not a scope" : "a scope named twice");
        }
        out->scopes |= bit;
    }
    const json_t *exp = json_object_get(body, "expires_at");
    if (exp != NULL && !json_is_null(exp)) {
        uint64_t t = 0;
        bool ok = false;
        if (json_is_string(exp)) {
            ok = keten_time_parse(json_string_value(exp), &t) == KETEN_OK;
        } else if (json_is_integer(exp) && json_integer_value(exp) > 0) {
            t = (uint64_t)json_integer_value(exp);
            ok = t <= KETEN_TIME_MAX_MS;
        }
        if (!ok || t <= now_ms) {
            keten_err_clear();
            return request_bad(field_out, allowed_out, "/expires_at", expires_allowed,
                ok ? "expires_at is not in the future" : "expires_at is not a time");
        }
        out->expires_at = t;
    }
    return KETEN_OK;
}

json_t *keten_auth_token_created_json(
    const keten_auth_token_params *req, const char *id, const char *token, uint64_t created_at)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    if (keten_rec_set(o, "id", json_string(id)) != KETEN_OK
        || keten_rec_set(o, "name", json_string(req->name)) != KETEN_OK
        || keten_rec_set(o, "scopes", keten_auth_scopes_json(req->scopes)) != KETEN_OK
        || keten_rec_set(o, "created_at", keten_rec_time(created_at)) != KETEN_OK
        || keten_rec_set(o, "expires_at", time_or_null(req->expires_at)) != KETEN_OK
        || keten_rec_set(o, "token", json_string(token)) != KETEN_OK) {
        keten_auth_json_wipe_token(o);
        json_decref(o);
        return NULL;
    }
    return o;
}

void keten_auth_json_wipe_token(json_t *obj)
{
    json_t *t = json_object_get(obj, "token");
    if (json_is_string(t)) {
        /* jansson owns the bytes; they are overwritten, never freed here */
        sodium_memzero((char *)(uintptr_t)json_string_value(t), json_string_length(t));
    }
}

typedef struct list_scan {
    Keten__TokenRecord **recs;
    size_t n, cap;
} list_scan;

static keten_err list_visit(const MDB_val *key, Keten__TokenRecord *r, void *arg)
{
    (void)key;
    list_scan *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 16 : 2 * l->cap;
        Keten__TokenRecord **recs = realloc(l->recs, cap * sizeof *recs);
        if (recs == NULL) {
            return KETEN_ERR_NOMEM;
        }
        l->recs = recs;
        l->cap = cap;
    }
    /* Keep a copy: the visitor's record is freed after the call. */
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&r->base, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    Keten__TokenRecord *copy = keten__token_record__unpack(NULL, len, buf);
    free(buf);
    if (copy == NULL) {
        return KETEN_ERR_NOMEM;
    }
    l->recs[l->n++] = copy;
    return KETEN_OK;
}

static int by_creation(const void *a, const void *b)
{
    const Keten__TokenRecord *x = *(Keten__TokenRecord *const *)a;
    const Keten__TokenRecord *y = *(Keten__TokenRecord *const *)b;
    if (x->created_at != y->created_at) {
        return x->created_at < y->created_at ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

static keten_err token_json(const Keten__TokenRecord *r, uint64_t now_ms, json_t **out)
{
    *out = NULL;
    const char *state
        = r->revoked_at != 0 ? "revoked" : (token_live(r, now_ms) ? "active" : "expired");
    json_t *o = json_object();
    if (o == NULL) {
        return KETEN_ERR_NOMEM;
    }
    keten_err e = keten_rec_set(o, "id", json_string(r->id));
    if (e == KETEN_OK) {
        e = keten_rec_set(o, "name", json_string(r->name));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(o, "scopes", keten_auth_scopes_json(r->scopes));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(o, "created_at", keten_rec_time(r->created_at));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(o, "expires_at", time_or_null(r->expires_at));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(o, "revoked_at", time_or_null(r->revoked_at));
    }
    if (e == KETEN_OK) {
        e = keten_rec_set(o, "state", json_string(state));
    }
    if (e != KETEN_OK) {
        json_decref(o);
        return e;
    }
    *out = o;
    return KETEN_OK;
}

keten_err keten_auth_token_list(keten_store *st, uint64_t now_ms, json_t **out)
{
    *out = NULL;
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(st, false, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    list_scan l = { 0 };
    e = tokens_each(st, txn, list_visit, &l);
    keten_store_abort(&txn);
    json_t *arr = NULL;
    if (e == KETEN_OK) {
        if (l.n > 1) {
            qsort(l.recs, l.n, sizeof *l.recs, by_creation); /* l.recs is NULL when none */
        }
        arr = json_array();
        e = arr == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    }
    for (size_t i = 0; e == KETEN_OK && i < l.n; i++) {
        json_t *t = NULL;
        e = token_json(l.recs[i], now_ms, &t);
        if (e == KETEN_OK && json_array_append_new(arr, t) != 0) {
            e = KETEN_ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < l.n; i++) {
        keten__token_record__free_unpacked(l.recs[i], NULL);
    }
    free(l.recs);
    if (e == KETEN_OK) {
        *out = json_pack("{s:o}", "tokens", arr);
        arr = NULL;
        e = *out == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    }
    json_decref(arr);
    return e;
}

typedef struct revoke_scan {
    const char *id;
    uint8_t key[KETEN_SHA256_BYTES];
    bool found;
    uint64_t revoked_at;
    char name[KETEN_AUTH_TOKEN_NAME_MAX + 1];
} revoke_scan;

static keten_err revoke_visit(const MDB_val *key, Keten__TokenRecord *r, void *arg)
{
    revoke_scan *s = arg;
    if (strcmp(r->id, s->id) == 0) {
        s->found = true;
        s->revoked_at = r->revoked_at;
        memcpy(s->key, key->mv_data, sizeof s->key);
        snprintf(s->name, sizeof s->name, "%s", r->name);
    }
    return KETEN_OK;
}

keten_err keten_auth_token_revoke(keten_store *st, const char *id, uint64_t now_ms)
{
    if (id == NULL || strlen(id) != KETEN_AUTH_TOKEN_ID_CHARS
        || strspn(id, HEX_ALPHABET) != KETEN_AUTH_TOKEN_ID_CHARS) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "a token id is 16 lowercase hex characters (see keten-node token list)");
    }
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(st, true, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    revoke_scan s = { .id = id };
    e = tokens_each(st, txn, revoke_visit, &s);
    if (e == KETEN_OK && !s.found) {
        e = keten_err_set(
            KETEN_ERR_NOT_FOUND, "no token with id %s (see keten-node token list)", id);
    }
    if (e == KETEN_OK && s.revoked_at != 0) {
        char iso[40];
        keten_time_iso(s.revoked_at, iso, sizeof iso);
        e = keten_err_set(
            KETEN_ERR_REVOKED, "token %s (%s) was revoked before, at %s", id, s.name, iso);
    }
    Keten__TokenRecord *r = NULL;
    if (e == KETEN_OK) {
        e = keten_nodestore_token_get(st, txn, s.key, &r);
    }
    if (e == KETEN_OK) {
        r->revoked_at = now_ms != 0 ? now_ms : 1;
        e = keten_nodestore_token_put(st, txn, r);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    if (e == KETEN_OK) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    return e;
}

keten_err keten_auth_bearer(keten_store *st, const char *header_value, uint64_t now_ms,
    const struct sockaddr *peer, keten_auth_principal *out)
{
    principal_init(out, KETEN_VIA_TCP);
    keten_auth_peer_text(peer, out->peer);
    snprintf(out->actor, sizeof out->actor, "anonymous");
    if (header_value == NULL) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "no Authorization header");
    }
    size_t hlen = strnlen(header_value, KETEN_AUTH_HEADER_MAX + 1);
    if (hlen > KETEN_AUTH_HEADER_MAX) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "the Authorization header is longer than %d bytes", KETEN_AUTH_HEADER_MAX);
    }
    static const char scheme[] = "Bearer";
    const size_t slen = sizeof scheme - 1;
    if (hlen <= slen || strncasecmp(header_value, scheme, slen) != 0
        || (header_value[slen] != ' ' && header_value[slen] != '\t')) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "the Authorization header is not \"Bearer TOKEN\"");
    }
    const char *tok = header_value + slen;
    tok += strspn(tok, " \t");
    size_t tlen = strcspn(tok, " \t");
    if (tok[tlen + strspn(tok + tlen, " \t")] != '\0') {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "the Authorization header holds more than \"Bearer TOKEN\"");
    }
    if (tlen != KETEN_AUTH_TOKEN_CHARS || strncmp(tok, KETEN_AUTH_TOKEN_PREFIX, PREFIX_CHARS) != 0
        || !b64_secret_ok(tok + PREFIX_CHARS, tlen - PREFIX_CHARS)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "the bearer token is not a keten token (ktn_ and 43 base64url characters)");
    }
    uint8_t hash[KETEN_SHA256_BYTES];
    keten_sha256(hash, tok, tlen);
    MDB_txn *txn = NULL;
    keten_err e = keten_store_begin(st, false, &txn);
    if (e != KETEN_OK) {
        return e;
    }
    Keten__TokenRecord *r = NULL;
    e = keten_nodestore_token_get(st, txn, hash, &r);
    keten_store_abort(&txn);
    if (e == KETEN_ERR_NOT_FOUND) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "the token is not known to this node: ask the node's operator for one");
    } else if (e
        == KETEN_ERR_MALFORMED) { /* a damaged record: the store's fault, not the caller's */
        char why[400];
        snprintf(why, sizeof why, "%s", keten_err_detail());
        KETEN_LOG(KETEN_LOG_ERR, "damaged token record", "error=\"%s\"", why);
        e = keten_err_set(KETEN_ERR_STORE, "%s", why);
    } else if (e == KETEN_OK && sodium_memcmp(r->token_hash.data, hash, sizeof hash) != 0) {
        /* keten_nodestore_token_get() checked it; a second look costs nothing */
        e = keten_err_set(KETEN_ERR_NOT_FOUND, "the token is not known to this node");
    } else if (e == KETEN_OK && r->revoked_at != 0) {
        char iso[40];
        keten_time_iso(r->revoked_at, iso, sizeof iso);
        e = keten_err_set(KETEN_ERR_REVOKED,
            "the token %s was revoked at %s: ask the node's operator for a new one", r->name, iso);
    } else if (e == KETEN_OK && r->expires_at != 0 && now_ms >= r->expires_at) {
        char iso[40];
        keten_time_iso(r->expires_at, iso, sizeof iso);
        e = keten_err_set(KETEN_ERR_EXPIRED,
            "the token %s expired at %s: ask the node's operator for a new one", r->name, iso);
    }
    if (e == KETEN_OK) {
        snprintf(out->actor, sizeof out->actor, "token:%s", r->name);
        snprintf(out->token_id, sizeof out->token_id, "%s", r->id);
        out->scopes = r->scopes;
        out->expires_at = r->expires_at;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    sodium_memzero(hash, sizeof hash);
    return e;
}

/* ---- proxy identity ----------------------------------------------------- */

keten_err keten_auth_config_from(const keten_config *cfg, keten_auth_config *out)
{
    memset(out, 0, sizeof *out);
    const char *addr = keten_config_get_str(cfg, "proxy-address");
    const char *header = keten_config_get_str(cfg, "proxy-user-header");
    const char *scopes = keten_config_get_str(cfg, "proxy-scopes");
    if ((addr == NULL) != (header == NULL)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s is set without %s: set both (the proxy's address and the header naming the person) "
            "or neither",
            addr != NULL ? "proxy-address" : "proxy-user-header",
            addr != NULL ? "proxy-user-header" : "proxy-address");
    }
    keten_err e = keten_auth_scopes_parse(scopes != NULL ? scopes : "read", &out->proxy_scopes);
    if (e != KETEN_OK) {
        return keten_err_set(e, "proxy-scopes: %s", keten_err_detail());
    }
    if (addr == NULL) {
        return KETEN_OK;
    }
    if (strlen(header) > KETEN_AUTH_HEADER_NAME_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "proxy-user-header is longer than %d characters",
            KETEN_AUTH_HEADER_NAME_MAX);
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)&out->proxy_addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)&out->proxy_addr;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) { /* keep one form: IPv4 */
            struct in_addr v4;
            memcpy(&v4, &a6->sin6_addr.s6_addr[12], sizeof v4);
            memset(&out->proxy_addr, 0, sizeof out->proxy_addr);
            a4->sin_family = AF_INET;
            a4->sin_addr = v4;
        }
    } else {
        return keten_err_set(KETEN_ERR_INVALID, "proxy-address %s is not an IP address", addr);
    }
    snprintf(out->proxy_header, sizeof out->proxy_header, "%s", header);
    out->proxy = true;
    return KETEN_OK;
}

/* Is peer the configured proxy (address only; mapped IPv4 as IPv4)? */
static bool peer_is_proxy(const keten_auth_config *cfg, const struct sockaddr *peer)
{
    if (peer == NULL) {
        return false;
    }
    const struct sockaddr_in *p4 = (const struct sockaddr_in *)(const void *)&cfg->proxy_addr;
    const struct sockaddr_in6 *p6 = (const struct sockaddr_in6 *)(const void *)&cfg->proxy_addr;
    if (peer->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)peer;
        return p4->sin_family == AF_INET
            && memcmp(&a->sin_addr, &p4->sin_addr, sizeof a->sin_addr) == 0;
    }
    if (peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)peer;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            return p4->sin_family == AF_INET
                && memcmp(&a->sin6_addr.s6_addr[12], &p4->sin_addr, sizeof p4->sin_addr) == 0;
        }
        return p6->sin6_family == AF_INET6
            && memcmp(&a->sin6_addr, &p6->sin6_addr, sizeof a->sin6_addr) == 0;
    }
    return false;
}

/* The length of the UTF-8 sequence at s and its code point; 0 if invalid
 * (overlong, surrogate, above U+10FFFF, truncated). */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return 0;
    }
    *cp = v;
    return n;
}

bool keten_auth_person_valid(const char *value, char *why, size_t why_size)
{
    if (value == NULL || value[0] == '\0') {
        snprintf(why, why_size, "the user name is empty");
        return false;
    }
    const unsigned char *p = (const unsigned char *)value;
    size_t chars = 0;
    while (*p != '\0') {
        uint32_t cp = 0;
        size_t n = utf8_next(p, &cp);
        if (n == 0) {
            snprintf(why, why_size, "the user name is not valid UTF-8 (byte %zu)",
                (size_t)(p - (const unsigned char *)value) + 1);
            return false;
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
            snprintf(why, why_size, "the user name holds a control character (U+%04X)", cp);
            return false;
        }
        if (cp == ' ') {
            snprintf(why, why_size, "the user name holds a space");
            return false;
        }
        if (++chars > KETEN_AUTH_PERSON_MAX) {
            snprintf(
                why, why_size, "the user name is longer than %d characters", KETEN_AUTH_PERSON_MAX);
            return false;
        }
        p += n;
    }
    return true;
}

keten_err keten_auth_proxy(const keten_auth_config *cfg, const struct sockaddr *peer,
    const char *header_value, keten_auth_principal *out)
{
    principal_init(out, KETEN_VIA_TCP);
    keten_auth_peer_text(peer, out->peer);
    snprintf(out->actor, sizeof out->actor, "anonymous");
    if (cfg == NULL || !cfg->proxy || header_value == NULL) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "no proxy identity");
    }
    if (!peer_is_proxy(cfg, peer)) {
        return keten_err_set(KETEN_ERR_PERMISSIONS,
            "the header %s is believed only from the configured proxy, and %s is not it: the "
            "request is refused",
            cfg->proxy_header, out->peer);
    }
    char why[128];
    if (!keten_auth_person_valid(header_value, why, sizeof why)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "the proxy's %s header is not a user name: %s (1 to %d characters, no spaces or "
            "control characters)",
            cfg->proxy_header, why, KETEN_AUTH_PERSON_MAX);
    }
    snprintf(out->actor, sizeof out->actor, "person:%s", header_value);
    out->scopes = cfg->proxy_scopes;
    return KETEN_OK;
}

/* ---- sessions ----------------------------------------------------------- */

struct keten_auth_session {
    bool used;
    /* !used: a session ended by the revocation of its token, kept (cookie
     * hash and actor only) so that its cookie is told why, until the slot
     * is taken again */
    bool token_revoked;
    uint8_t cookie_hash[KETEN_SHA256_BYTES];
    char csrf[KETEN_AUTH_B64_CHARS + 1];
    keten_auth_principal principal;
    uint64_t created_at, last_used;
};

struct keten_auth_sessions {
    keten_auth_session *slots; /* sodium_malloc: cookie hashes and CSRF tokens */
    size_t max;
};

#define SESSIONS_HARD_MAX 65536u

keten_auth_sessions *keten_auth_sessions_new(size_t max)
{
    if (max == 0 || max > SESSIONS_HARD_MAX) {
        return NULL;
    }
    keten_auth_sessions *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return NULL;
    }
    self->slots = sodium_allocarray(max, sizeof *self->slots);
    if (self->slots == NULL) {
        free(self);
        return NULL;
    }
    memset(self->slots, 0, max * sizeof *self->slots);
    self->max = max;
    return self;
}

void keten_auth_sessions_destroy(keten_auth_sessions **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_auth_sessions *self = *self_p;
    sodium_free(self->slots); /* wipes */
    free(self);
    *self_p = NULL;
}

uint64_t keten_auth_session_expires_at(const keten_auth_session *s)
{
    uint64_t idle = s->last_used + KETEN_SESSION_IDLE_MS;
    uint64_t abs = s->created_at + KETEN_SESSION_MAX_MS;
    uint64_t t = idle < abs ? idle : abs;
    if (s->principal.expires_at != 0 && s->principal.expires_at < t) {
        t = s->principal.expires_at;
    }
    return t;
}

static void slot_wipe(keten_auth_session *s)
{
    sodium_memzero(s, sizeof *s);
}

keten_err keten_auth_sessions_create(keten_auth_sessions *self,
    const keten_auth_principal *principal, uint64_t now_ms,
    char cookie_out[static KETEN_AUTH_B64_CHARS + 1],
    char csrf_out[static KETEN_AUTH_B64_CHARS + 1])
{
    cookie_out[0] = '\0';
    csrf_out[0] = '\0';
    if (principal->scopes == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "a session needs a caller with a scope");
    }
    keten_auth_session *slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < self->max; i++) {
        keten_auth_session *s = &self->slots[i];
        if (s->used && now_ms >= keten_auth_session_expires_at(s)) {
            slot_wipe(s);
        }
        if (!s->used) {
            if (slot == NULL) {
                slot = s;
            }
        } else if (oldest == NULL || s->created_at < oldest->created_at) {
            oldest = s;
        }
    }
    if (slot == NULL) {
        KETEN_LOG(KETEN_LOG_NOTICE, "web sessions full: the oldest ended", "actor=\"%s\" max=%zu",
            oldest->principal.actor, self->max);
        slot_wipe(oldest);
        slot = oldest;
    }
    slot_wipe(slot); /* a free slot may keep a revoked session's cookie hash */
    char cookie[KETEN_AUTH_B64_CHARS + 1];
    keten_err e = random_b64(cookie);
    if (e == KETEN_OK) {
        e = random_b64(slot->csrf);
    }
    if (e != KETEN_OK) {
        slot_wipe(slot);
        sodium_memzero(cookie, sizeof cookie);
        return e;
    }
    keten_sha256(slot->cookie_hash, cookie, KETEN_AUTH_B64_CHARS);
    slot->principal = *principal;
    slot->created_at = now_ms;
    slot->last_used = now_ms;
    slot->used = true;
    memcpy(cookie_out, cookie, sizeof cookie);
    memcpy(csrf_out, slot->csrf, sizeof slot->csrf);
    sodium_memzero(cookie, sizeof cookie);
    return KETEN_OK;
}

/* The slot of a cookie value, compared with every live slot in constant
 * time per slot; NULL if none. */
static keten_err slot_of(keten_auth_sessions *self, const char *cookie, keten_auth_session **out)
{
    *out = NULL;
    size_t len = cookie != NULL ? strnlen(cookie, KETEN_AUTH_B64_CHARS + 1) : 0;
    if (!b64_secret_ok(cookie != NULL ? cookie : "", len)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "the session cookie is not 43 base64url characters: sign in again");
    }
    uint8_t hash[KETEN_SHA256_BYTES];
    keten_sha256(hash, cookie, len);
    keten_auth_session *revoked = NULL;
    for (size_t i = 0; i < self->max; i++) {
        keten_auth_session *s = &self->slots[i];
        if (sodium_memcmp(s->cookie_hash, hash, sizeof hash) == 0) {
            if (s->used) {
                *out = s;
            } else if (s->token_revoked) {
                revoked = s;
            }
        }
    }
    sodium_memzero(hash, sizeof hash);
    if (*out == NULL && revoked != NULL) {
        return keten_err_set(KETEN_ERR_REVOKED,
            "the web session ended when its token (%s) was revoked: sign in with a token that "
            "is not revoked",
            revoked->principal.actor);
    }
    if (*out == NULL) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "no such session: sign in again");
    }
    return KETEN_OK;
}

keten_err keten_auth_sessions_find(
    keten_auth_sessions *self, const char *cookie, uint64_t now_ms, keten_auth_session **out)
{
    *out = NULL;
    keten_auth_session *s = NULL;
    keten_err e = slot_of(self, cookie, &s);
    if (e != KETEN_OK) {
        return e;
    }
    if (now_ms >= keten_auth_session_expires_at(s)) {
        slot_wipe(s);
        return keten_err_set(KETEN_ERR_EXPIRED, "the session has ended: sign in again");
    }
    s->last_used = now_ms;
    *out = s;
    return KETEN_OK;
}

keten_err keten_auth_sessions_alive(keten_auth_sessions *self, const char *cookie, uint64_t now_ms)
{
    keten_auth_session *s = NULL;
    keten_err e = slot_of(self, cookie, &s);
    if (e != KETEN_OK) {
        return e;
    }
    if (now_ms >= keten_auth_session_expires_at(s)) {
        slot_wipe(s);
        return keten_err_set(KETEN_ERR_EXPIRED, "the session has ended: sign in again");
    }
    return KETEN_OK;
}

const keten_auth_principal *keten_auth_session_principal(const keten_auth_session *s)
{
    return &s->principal;
}

json_t *keten_auth_session_json(const keten_auth_session *s)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    if (keten_rec_set(o, "actor", json_string(s->principal.actor)) != KETEN_OK
        || keten_rec_set(o, "scopes", keten_auth_scopes_json(s->principal.scopes)) != KETEN_OK
        || keten_rec_set(o, "csrf_token", json_string(s->csrf)) != KETEN_OK
        || keten_rec_set(o, "expires_at", keten_rec_time(keten_auth_session_expires_at(s)))
            != KETEN_OK) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Is origin "http://HOST" or "https://HOST" exactly? */
static bool origin_is_host(const char *origin, const char *host)
{
    if (host == NULL || host[0] == '\0') {
        return false;
    }
    const char *rest = NULL;
    if (strncmp(origin, "http://", 7) == 0) {
        rest = origin + 7;
    } else if (strncmp(origin, "https://", 8) == 0) {
        rest = origin + 8;
    } else {
        return false;
    }
    return strcasecmp(rest, host) == 0;
}

keten_err keten_auth_sessions_check_csrf(
    const keten_auth_session *s, const char *header, const char *origin, const char *host)
{
    size_t len = header != NULL ? strnlen(header, KETEN_AUTH_B64_CHARS + 1) : 0;
    if (len != KETEN_AUTH_B64_CHARS || sodium_memcmp(header, s->csrf, KETEN_AUTH_B64_CHARS) != 0) {
        return keten_err_set(KETEN_ERR_PERMISSIONS,
            header == NULL ? "the request has no X-CSRF-Token header: the web page sends the "
                             "csrf_token of its session in it"
                           : "the X-CSRF-Token header is not this session's csrf_token");
    }
    if (origin != NULL && !origin_is_host(origin, host)) {
        return keten_err_set(KETEN_ERR_PERMISSIONS,
            "the request comes from another site (Origin is not this node's own address)");
    }
    return KETEN_OK;
}

keten_err keten_auth_sessions_end(keten_auth_sessions *self, const char *cookie)
{
    keten_auth_session *s = NULL;
    keten_err e = slot_of(self, cookie, &s);
    if (e != KETEN_OK) {
        return e;
    }
    slot_wipe(s);
    return KETEN_OK;
}

size_t keten_auth_sessions_end_token(keten_auth_sessions *self, const char *token_id)
{
    size_t n = 0;
    if (token_id == NULL || token_id[0] == '\0') {
        return 0;
    }
    for (size_t i = 0; i < self->max; i++) {
        keten_auth_session *s = &self->slots[i];
        if (s->used && strcmp(s->principal.token_id, token_id) == 0) {
            /* ended: only the cookie's hash and the actor stay, to say why */
            uint8_t hash[KETEN_SHA256_BYTES];
            char actor[sizeof s->principal.actor];
            memcpy(hash, s->cookie_hash, sizeof hash);
            memcpy(actor, s->principal.actor, sizeof actor);
            slot_wipe(s);
            memcpy(s->cookie_hash, hash, sizeof hash);
            memcpy(s->principal.actor, actor, sizeof actor);
            s->token_revoked = true;
            sodium_memzero(hash, sizeof hash);
            n++;
        }
    }
    return n;
}

size_t keten_auth_sessions_count(const keten_auth_sessions *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->max; i++) {
        n += self->slots[i].used ? 1 : 0;
    }
    return n;
}
