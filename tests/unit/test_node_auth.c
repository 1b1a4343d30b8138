/*
 * test_node_auth: who calls the node's HTTP API (client/auth.h), with a real
 * LMDB store in a temporary folder:
 *   - tokens: made, listed, revoked, expired; a wrong, changed, malformed,
 *     revoked or expired token refused with its own error; a live name not
 *     given twice; kept across a reopen; a store made before the table
 *     existed gains it; a damaged record is a store error, never a caller;
 *   - the proxy's header believed from proxy-address only, refused from
 *     another peer, bad user names refused;
 *   - web sessions: idle and absolute expiry (the clock injected), the
 *     token's expiry, CSRF token and Origin, ending, the bound.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>
#include <sodium.h>

#include "auth.h"
#include "config.h"
#include "keten.h"
#include "nodestore.h"
#include "sha256.h"
#include "store.h"
#include "util.h"

#define T0 1796000000000ull /* 2026-11-30T00:53:20Z */
#define MIN_MS (60ull * 1000)
#define HOUR_MS (60 * MIN_MS)

typedef struct ctx {
    char dir[64];
    keten_store *store;
} ctx;

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    snprintf(c->dir, sizeof c->dir, "/tmp/keten-auth.XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    assert_int_equal(keten_store_open(c->dir, &c->store), KETEN_OK);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    keten_store_destroy(&c->store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    assert_int_equal(system(cmd), 0);
    free(c);
    return 0;
}

typedef struct made {
    char token[KETEN_AUTH_TOKEN_CHARS + 1];
    char id[KETEN_AUTH_TOKEN_ID_CHARS + 1];
    char header[KETEN_AUTH_TOKEN_CHARS + 16];
} made;

static void make(ctx *c, const char *name, unsigned scopes, uint64_t expires_at, made *m)
{
    assert_int_equal(
        keten_auth_token_create(c->store, name, scopes, expires_at, T0, m->token, m->id), KETEN_OK);
    snprintf(m->header, sizeof m->header, "Bearer %s", m->token);
}

static keten_err bearer(ctx *c, const char *header, uint64_t now, keten_auth_principal *p)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
    return keten_auth_bearer(c->store, header, now, (struct sockaddr *)&a, p);
}

/* ---- scopes ------------------------------------------------------------- */

static void test_scopes(void **state)
{
    (void)state;
    unsigned s = 0;
    assert_int_equal(keten_auth_scopes_parse("read", &s), KETEN_OK);
    assert_int_equal(s, KETEN_SCOPE_READ);
    assert_int_equal(keten_auth_scopes_parse("ack,read,send", &s), KETEN_OK);
    assert_int_equal(s, KETEN_SCOPE_ALL);
    char text[32];
    keten_auth_scopes_text(s, text, sizeof text);
    assert_string_equal(text, "read,send,ack");
    keten_auth_scopes_text(KETEN_SCOPE_ACK | KETEN_SCOPE_READ, text, sizeof text);
    assert_string_equal(text, "read,ack");
    /* the reject twins */
    assert_int_equal(keten_auth_scopes_parse("read,write", &s), KETEN_ERR_INVALID);
    assert_non_null(strstr(keten_err_detail(), "'write' is not a scope"));
    assert_int_equal(s, 0);
    assert_int_equal(keten_auth_scopes_parse("read,read", &s), KETEN_ERR_INVALID);
    assert_non_null(strstr(keten_err_detail(), "twice"));
    assert_int_equal(keten_auth_scopes_parse("", &s), KETEN_ERR_INVALID);
    assert_int_equal(keten_auth_scopes_parse("read,", &s), KETEN_ERR_INVALID);
    assert_int_equal(keten_auth_scopes_parse("read, send", &s), KETEN_ERR_INVALID);
    assert_int_equal(keten_auth_scopes_parse("READ", &s), KETEN_ERR_INVALID);
    /* the configuration's validator agrees */
    char why[128];
    assert_true(keten_config_valid_scopes("read,send,ack", why, sizeof why));
    assert_false(keten_config_valid_scopes("read,admin", why, sizeof why));
    assert_false(keten_config_valid_scopes("send,send", why, sizeof why));
}

/* ---- tokens ------------------------------------------------------------- */

static void test_token_create_and_use(void **state)
{
    ctx *c = *state;
    made m;
    make(c, "case-system", KETEN_SCOPE_READ | KETEN_SCOPE_ACK, 0, &m);
    /* ktn_ + 43 base64url characters, an id of 16 hex */
    assert_int_equal(strlen(m.token), KETEN_AUTH_TOKEN_CHARS);
    assert_memory_equal(m.token, "ktn_", 4);
    assert_int_equal(
        strspn(m.token + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        43);
    assert_int_equal(strlen(m.id), 16);
    assert_int_equal(strspn(m.id, "0123456789abcdef"), 16);

    keten_auth_principal p;
    assert_int_equal(bearer(c, m.header, T0 + 1, &p), KETEN_OK);
    assert_string_equal(p.actor, "token:case-system");
    assert_int_equal(p.scopes, KETEN_SCOPE_READ | KETEN_SCOPE_ACK);
    assert_int_equal(p.via, KETEN_VIA_TCP);
    assert_string_equal(p.peer, "127.0.0.1");
    assert_string_equal(p.token_id, m.id);
    assert_int_equal(p.expires_at, 0);

    /* the scheme in any case, more than one space, trailing space */
    char h[128];
    snprintf(h, sizeof h, "bearer   %s  ", m.token);
    assert_int_equal(bearer(c, h, T0 + 1, &p), KETEN_OK);
    assert_string_equal(p.actor, "token:case-system");

    /* the store holds the hash, never the token */
    uint8_t hash[KETEN_SHA256_BYTES];
    keten_sha256(hash, m.token, strlen(m.token));
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    MDB_val v;
    assert_int_equal(
        keten_store_get(c->store, txn, KETEN_DB_TOKENS, hash, sizeof hash, &v), KETEN_OK);
    assert_null(memmem(v.mv_data, v.mv_size, m.token + 4, 43));
    assert_null(memmem(v.mv_data, v.mv_size, m.token + 4, 16));
    keten_store_abort(&txn);

    /* two tokens differ */
    made m2;
    make(c, "dashboard", KETEN_SCOPE_READ, 0, &m2);
    assert_string_not_equal(m.token, m2.token);
    assert_string_not_equal(m.id, m2.id);
}

static void test_token_wrong_refused(void **state)
{
    ctx *c = *state;
    made m;
    make(c, "case-system", KETEN_SCOPE_READ, 0, &m);
    keten_auth_principal p;
    assert_int_equal(bearer(c, m.header, T0, &p), KETEN_OK); /* the accept twin */

    /* a token of the right shape this node never made */
    char other[KETEN_AUTH_TOKEN_CHARS + 16];
    snprintf(other, sizeof other, "%s", m.header);
    other[7 + 4 + 5] = other[7 + 4 + 5] == 'A' ? 'B' : 'A';
    assert_int_equal(bearer(c, other, T0, &p), KETEN_ERR_NOT_FOUND);
    assert_non_null(strstr(keten_err_detail(), "not known"));
    assert_string_equal(p.actor, "anonymous");
    assert_int_equal(p.scopes, 0);

    struct {
        const char *header;
        const char *why;
    } bad[] = {
        { "", "not \"Bearer TOKEN\"" },
        { "Bearer", "not \"Bearer TOKEN\"" },
        { "Bearer ", "not a keten token" },
        { "Basic a3RuXzpwYXNz", "not \"Bearer TOKEN\"" },
        { "BearerX ktn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not \"Bearer TOKEN\"" },
        { "Bearer ktn_AAAA", "not a keten token" },
        { "Bearer ktx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not a keten token" },
        /* '+' and '/' are base64, not base64url */
        { "Bearer ktn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", "not a keten token" },
        /* 44 characters */
        { "Bearer ktn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not a keten token" },
        /* the last character's unused bits set: not canonical */
        { "Bearer ktn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", "not a keten token" },
        { "Bearer ktn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA extra", "more than" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(bearer(c, bad[i].header, T0, &p), KETEN_ERR_MALFORMED);
        assert_non_null(strstr(keten_err_detail(), bad[i].why));
        assert_int_equal(p.scopes, 0);
    }
    /* the canonical twin of the last ones has the right shape (and is unknown) */
    assert_int_equal(bearer(c, "Bearer ktn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", T0, &p),
        KETEN_ERR_NOT_FOUND);
    assert_int_equal(bearer(c, NULL, T0, &p), KETEN_ERR_NOT_FOUND);
    /* the token with a NUL-free tail added */
    char longer[KETEN_AUTH_TOKEN_CHARS + 32];
    snprintf(longer, sizeof longer, "%sA", m.header);
    assert_int_equal(bearer(c, longer, T0, &p), KETEN_ERR_MALFORMED);
    /* an over-long header */
    char *huge = malloc(KETEN_AUTH_HEADER_MAX + 64);
    assert_non_null(huge);
    memset(huge, 'A', KETEN_AUTH_HEADER_MAX + 63);
    memcpy(huge, "Bearer ", 7);
    huge[KETEN_AUTH_HEADER_MAX + 63] = '\0';
    assert_int_equal(bearer(c, huge, T0, &p), KETEN_ERR_MALFORMED);
    assert_non_null(strstr(keten_err_detail(), "longer than"));
    free(huge);
}

static void test_token_names(void **state)
{
    ctx *c = *state;
    char tok[KETEN_AUTH_TOKEN_CHARS + 1], id[KETEN_AUTH_TOKEN_ID_CHARS + 1];
    const char *bad[] = { "", "Case", "case system", "case/system", "käse", "a;b",
        "0123456789012345678901234567890123456789012345678901234567890123x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            keten_auth_token_create(c->store, bad[i], KETEN_SCOPE_READ, 0, T0, tok, id),
            KETEN_ERR_INVALID);
        assert_string_equal(tok, "");
    }
    assert_int_equal(keten_auth_token_create(c->store,
                         "0123456789012345678901234567890123456789012345678901234567890123",
                         KETEN_SCOPE_READ, 0, T0, tok, id),
        KETEN_OK);
    assert_int_equal(
        keten_auth_token_create(c->store, "a.b_c-9", KETEN_SCOPE_SEND, 0, T0, tok, id), KETEN_OK);
    /* scopes: none, or an unknown bit */
    assert_int_equal(keten_auth_token_create(c->store, "x", 0, 0, T0, tok, id), KETEN_ERR_INVALID);
    assert_int_equal(keten_auth_token_create(c->store, "x", 8, 0, T0, tok, id), KETEN_ERR_INVALID);
    /* an expiry in the past or now */
    assert_int_equal(keten_auth_token_create(c->store, "x", KETEN_SCOPE_READ, T0, T0, tok, id),
        KETEN_ERR_INVALID);
    assert_non_null(strstr(keten_err_detail(), "future"));
    assert_int_equal(
        keten_auth_token_create(c->store, "x", KETEN_SCOPE_READ, T0 + 1, T0, tok, id), KETEN_OK);
}

static void test_token_duplicate_name(void **state)
{
    ctx *c = *state;
    made a, b;
    make(c, "case-system", KETEN_SCOPE_READ, 0, &a);
    char tok[KETEN_AUTH_TOKEN_CHARS + 1], id[KETEN_AUTH_TOKEN_ID_CHARS + 1];
    assert_int_equal(
        keten_auth_token_create(c->store, "case-system", KETEN_SCOPE_SEND, 0, T0, tok, id),
        KETEN_ERR_EXISTS);
    assert_non_null(strstr(keten_err_detail(), a.id));
    assert_string_equal(tok, "");
    /* the first one is unchanged */
    keten_auth_principal p;
    assert_int_equal(bearer(c, a.header, T0, &p), KETEN_OK);
    assert_int_equal(p.scopes, KETEN_SCOPE_READ);
    /* revoked: the name is free again, and the old token stays refused */
    assert_int_equal(keten_auth_token_revoke(c->store, a.id, T0 + 5), KETEN_OK);
    make(c, "case-system", KETEN_SCOPE_SEND, 0, &b);
    assert_int_equal(bearer(c, b.header, T0 + 6, &p), KETEN_OK);
    assert_int_equal(p.scopes, KETEN_SCOPE_SEND);
    assert_int_equal(bearer(c, a.header, T0 + 6, &p), KETEN_ERR_REVOKED);
    /* expired: the name is free again */
    made e;
    make(c, "nightly", KETEN_SCOPE_READ, T0 + 10, &e);
    assert_int_equal(
        keten_auth_token_create(c->store, "nightly", KETEN_SCOPE_READ, 0, T0 + 9, tok, id),
        KETEN_ERR_EXISTS);
    assert_int_equal(
        keten_auth_token_create(c->store, "nightly", KETEN_SCOPE_READ, 0, T0 + 10, tok, id),
        KETEN_OK);
}

static void test_token_revoke(void **state)
{
    ctx *c = *state;
    made m, other;
    make(c, "case-system", KETEN_SCOPE_READ, 0, &m);
    make(c, "dashboard", KETEN_SCOPE_READ, 0, &other);
    keten_auth_principal p;
    assert_int_equal(bearer(c, m.header, T0 + 1, &p), KETEN_OK);
    assert_int_equal(keten_auth_token_revoke(c->store, m.id, T0 + 2), KETEN_OK);
    assert_int_equal(bearer(c, m.header, T0 + 3, &p), KETEN_ERR_REVOKED);
    assert_non_null(strstr(keten_err_detail(), "revoked"));
    assert_int_equal(p.scopes, 0);
    assert_string_equal(p.actor, "anonymous");
    /* the other token still works */
    assert_int_equal(bearer(c, other.header, T0 + 3, &p), KETEN_OK);
    /* twice, unknown, malformed */
    assert_int_equal(keten_auth_token_revoke(c->store, m.id, T0 + 4), KETEN_ERR_REVOKED);
    assert_non_null(strstr(keten_err_detail(), "before"));
    assert_int_equal(
        keten_auth_token_revoke(c->store, "0000000000000000", T0), KETEN_ERR_NOT_FOUND);
    assert_int_equal(
        keten_auth_token_revoke(c->store, "ABCDEF0000000000", T0), KETEN_ERR_MALFORMED);
    assert_int_equal(keten_auth_token_revoke(c->store, "abc", T0), KETEN_ERR_MALFORMED);
    assert_int_equal(keten_auth_token_revoke(c->store, NULL, T0), KETEN_ERR_MALFORMED);
}

static void test_token_expiry(void **state)
{
    ctx *c = *state;
    made m;
    make(c, "nightly", KETEN_SCOPE_READ, T0 + HOUR_MS, &m);
    keten_auth_principal p;
    assert_int_equal(bearer(c, m.header, T0 + HOUR_MS - 1, &p), KETEN_OK);
    assert_int_equal(p.expires_at, T0 + HOUR_MS);
    assert_int_equal(bearer(c, m.header, T0 + HOUR_MS, &p), KETEN_ERR_EXPIRED);
    assert_non_null(strstr(keten_err_detail(), "expired"));
    assert_int_equal(p.scopes, 0);
    assert_int_equal(bearer(c, m.header, T0 + 2 * HOUR_MS, &p), KETEN_ERR_EXPIRED);
}

static void test_token_list(void **state)
{
    ctx *c = *state;
    made a, b, x;
    char tok[KETEN_AUTH_TOKEN_CHARS + 1];
    /* made in this order with rising times: listed oldest first */
    assert_int_equal(
        keten_auth_token_create(c->store, "zeta", KETEN_SCOPE_ALL, 0, T0, a.token, a.id), KETEN_OK);
    assert_int_equal(keten_auth_token_create(
                         c->store, "alpha", KETEN_SCOPE_READ, T0 + HOUR_MS, T0 + 1, b.token, b.id),
        KETEN_OK);
    assert_int_equal(
        keten_auth_token_create(c->store, "mid", KETEN_SCOPE_SEND, 0, T0 + 2, x.token, x.id),
        KETEN_OK);
    assert_int_equal(keten_auth_token_revoke(c->store, x.id, T0 + 3), KETEN_OK);
    (void)tok;

    json_t *list = NULL;
    assert_int_equal(keten_auth_token_list(c->store, T0 + 2 * HOUR_MS, &list), KETEN_OK);
    json_t *arr = json_object_get(list, "tokens");
    assert_int_equal(json_array_size(arr), 3);
    const char *names[] = { "zeta", "alpha", "mid" };
    const char *states[] = { "active", "expired", "revoked" };
    const char *ids[] = { a.id, b.id, x.id };
    for (size_t i = 0; i < 3; i++) {
        json_t *t = json_array_get(arr, i);
        assert_string_equal(json_string_value(json_object_get(t, "name")), names[i]);
        assert_string_equal(json_string_value(json_object_get(t, "state")), states[i]);
        assert_string_equal(json_string_value(json_object_get(t, "id")), ids[i]);
        assert_int_equal(json_object_size(t), 7); /* id name scopes created expires revoked state */
        assert_non_null(json_object_get(t, "created_at"));
    }
    json_t *z = json_array_get(arr, 0);
    assert_int_equal(json_array_size(json_object_get(z, "scopes")), 3);
    assert_true(json_is_null(json_object_get(z, "expires_at")));
    assert_true(json_is_null(json_object_get(z, "revoked_at")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "expires_at")),
        "2026-11-30T01:53:20.000Z");
    assert_true(json_is_string(json_object_get(json_array_get(arr, 2), "revoked_at")));
    /* never a token or its hash */
    char *text = json_dumps(list, JSON_COMPACT);
    assert_non_null(text);
    assert_null(strstr(text, a.token + 4));
    assert_null(strstr(text, "ktn_"));
    assert_null(strstr(text, "hash"));
    free(text);
    json_decref(list);

    /* an empty table */
    keten_store_destroy(&c->store);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/store'", c->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(keten_store_open(c->dir, &c->store), KETEN_OK);
    assert_int_equal(keten_auth_token_list(c->store, T0, &list), KETEN_OK);
    assert_int_equal(json_array_size(json_object_get(list, "tokens")), 0);
    json_decref(list);
}

static void test_token_reopen(void **state)
{
    ctx *c = *state;
    made m, r;
    make(c, "case-system", KETEN_SCOPE_READ | KETEN_SCOPE_SEND, 0, &m);
    make(c, "old", KETEN_SCOPE_READ, 0, &r);
    assert_int_equal(keten_auth_token_revoke(c->store, r.id, T0 + 1), KETEN_OK);
    keten_store_destroy(&c->store);
    assert_int_equal(keten_store_open(c->dir, &c->store), KETEN_OK);
    keten_auth_principal p;
    assert_int_equal(bearer(c, m.header, T0 + 2, &p), KETEN_OK);
    assert_string_equal(p.actor, "token:case-system");
    assert_int_equal(p.scopes, KETEN_SCOPE_READ | KETEN_SCOPE_SEND);
    assert_int_equal(bearer(c, r.header, T0 + 2, &p), KETEN_ERR_REVOKED);
}

/* A store made before the tokens table existed (the other tables only)
 * opens and gains it, its records kept. */
static void test_old_store_gains_table(void **state)
{
    ctx *c = *state;
    keten_store_destroy(&c->store);
    char path[128];
    snprintf(path, sizeof path, "%s/old", c->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    char store_dir[160];
    snprintf(store_dir, sizeof store_dir, "%s/store", path);
    assert_int_equal(mkdir(store_dir, 0700), 0);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, store_dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    const char *old_tables[] = { "outbox", "sent", "inbox", "messages", "seen", "directories",
        "checkpoints", "evidence", "state" };
    for (size_t i = 0; i < sizeof old_tables / sizeof old_tables[0]; i++) {
        assert_int_equal(mdb_dbi_open(txn, old_tables[i], MDB_CREATE, &dbi), 0);
    }
    MDB_val k = { .mv_size = 3, .mv_data = (void *)"old" },
            v = { .mv_size = 1, .mv_data = (void *)"1" };
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_dbi_open(txn, "tokens", 0, &dbi), MDB_NOTFOUND); /* not there yet */
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(keten_store_open(path, &c->store), KETEN_OK);
    made m;
    make(c, "case-system", KETEN_SCOPE_READ, 0, &m);
    keten_auth_principal p;
    assert_int_equal(bearer(c, m.header, T0, &p), KETEN_OK);
    /* the old table's record is still there */
    assert_int_equal(keten_store_begin(c->store, false, &txn), KETEN_OK);
    MDB_val got;
    assert_int_equal(keten_store_get(c->store, txn, KETEN_DB_STATE, "old", 3, &got), KETEN_OK);
    assert_int_equal(got.mv_size, 1);
    keten_store_abort(&txn);
}

/* A damaged record is the store's failure, never a caller let in. */
static void test_token_damaged(void **state)
{
    ctx *c = *state;
    made m;
    make(c, "case-system", KETEN_SCOPE_READ, 0, &m);
    uint8_t hash[KETEN_SHA256_BYTES];
    keten_sha256(hash, m.token, strlen(m.token));
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    MDB_val v;
    assert_int_equal(
        keten_store_get(c->store, txn, KETEN_DB_TOKENS, hash, sizeof hash, &v), KETEN_OK);
    uint8_t copy[1024];
    assert_true(v.mv_size <= sizeof copy);
    size_t len = v.mv_size;
    memcpy(copy, v.mv_data, len);
    copy[len / 2] ^= 0x01;
    assert_int_equal(
        keten_store_put(c->store, txn, KETEN_DB_TOKENS, hash, sizeof hash, copy, len), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    keten_auth_principal p;
    assert_int_equal(bearer(c, m.header, T0, &p), KETEN_ERR_STORE);
    assert_non_null(strstr(keten_err_detail(), "damaged"));
    assert_int_equal(p.scopes, 0);
    json_t *list = NULL;
    assert_int_equal(keten_auth_token_list(c->store, T0, &list), KETEN_ERR_MALFORMED);
    assert_null(list);
    /* restored: let in again (the twin) */
    copy[len / 2] ^= 0x01;
    assert_int_equal(keten_store_begin(c->store, true, &txn), KETEN_OK);
    assert_int_equal(
        keten_store_put(c->store, txn, KETEN_DB_TOKENS, hash, sizeof hash, copy, len), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    assert_int_equal(bearer(c, m.header, T0, &p), KETEN_OK);
}

/* ---- token requests (POST /v1/tokens) ------------------------------------ */

static keten_err request(
    const char *text, keten_auth_token_params *r, const char **field, const char **allowed)
{
    json_error_t err;
    json_t *body = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(body);
    keten_err e = keten_auth_token_request(body, T0, r, field, allowed);
    json_decref(body);
    return e;
}

static void test_token_request(void **state)
{
    (void)state;
    keten_auth_token_params r;
    const char *field = NULL, *allowed = NULL;
    assert_int_equal(
        request("{\"name\":\"case-system\",\"scopes\":[\"read\",\"ack\"]}", &r, &field, &allowed),
        KETEN_OK);
    assert_string_equal(r.name, "case-system");
    assert_int_equal(r.scopes, KETEN_SCOPE_READ | KETEN_SCOPE_ACK);
    assert_int_equal(r.expires_at, 0);
    assert_int_equal(request("{\"name\":\"a\",\"scopes\":[\"send\"],\"expires_at\":"
                             "\"2026-12-31T00:00:00Z\"}",
                         &r, &field, &allowed),
        KETEN_OK);
    assert_int_equal(r.expires_at, 1798675200000ull);
    assert_int_equal(request("{\"name\":\"a\",\"scopes\":[\"send\"],\"expires_at\":1798675200000}",
                         &r, &field, &allowed),
        KETEN_OK);
    assert_int_equal(r.expires_at, 1798675200000ull);
    assert_int_equal(
        request("{\"name\":\"a\",\"scopes\":[\"send\"],\"expires_at\":null}", &r, &field, &allowed),
        KETEN_OK);
    assert_int_equal(r.expires_at, 0);

    struct {
        const char *body;
        const char *field;
    } bad[] = {
        { "[]", "" },
        { "{\"name\":\"a\",\"scopes\":[\"read\"],\"admin\":true}", "" },
        { "{\"scopes\":[\"read\"]}", "/name" },
        { "{\"name\":7,\"scopes\":[\"read\"]}", "/name" },
        { "{\"name\":\"Case System\",\"scopes\":[\"read\"]}", "/name" },
        { "{\"name\":\"a\"}", "/scopes" },
        { "{\"name\":\"a\",\"scopes\":[]}", "/scopes" },
        { "{\"name\":\"a\",\"scopes\":\"read\"}", "/scopes" },
        { "{\"name\":\"a\",\"scopes\":[\"read\",\"admin\"]}", "/scopes/1" },
        { "{\"name\":\"a\",\"scopes\":[\"read\",\"read\"]}", "/scopes/1" },
        { "{\"name\":\"a\",\"scopes\":[1]}", "/scopes/0" },
        { "{\"name\":\"a\",\"scopes\":[\"read\",\"send\",\"ack\",\"read\"]}", "/scopes" },
        { "{\"name\":\"a\",\"scopes\":[\"read\"],\"expires_at\":\"tomorrow\"}", "/expires_at" },
        { "{\"name\":\"a\",\"scopes\":[\"read\"],\"expires_at\":\"2026-11-01T00:00:00Z\"}",
            "/expires_at" },
        { "{\"name\":\"a\",\"scopes\":[\"read\"],\"expires_at\":-5}", "/expires_at" },
        { "{\"name\":\"a\",\"scopes\":[\"read\"],\"expires_at\":true}", "/expires_at" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        field = allowed = NULL;
        assert_int_equal(request(bad[i].body, &r, &field, &allowed), KETEN_ERR_INVALID);
        assert_non_null(field);
        assert_string_equal(field, bad[i].field);
        assert_non_null(allowed);
        assert_true(allowed[0] != '\0');
        assert_true(keten_err_detail()[0] != '\0');
    }
}

static void test_token_created_json(void **state)
{
    ctx *c = *state;
    keten_auth_token_params r = { .name = "case-system", .scopes = KETEN_SCOPE_READ, .expires_at = 0 };
    char tok[KETEN_AUTH_TOKEN_CHARS + 1], id[KETEN_AUTH_TOKEN_ID_CHARS + 1];
    assert_int_equal(
        keten_auth_token_create(c->store, r.name, r.scopes, r.expires_at, T0, tok, id), KETEN_OK);
    json_t *o = keten_auth_token_created_json(&r, id, tok, T0);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 6);
    assert_string_equal(json_string_value(json_object_get(o, "token")), tok);
    assert_string_equal(json_string_value(json_object_get(o, "id")), id);
    assert_string_equal(
        json_string_value(json_object_get(o, "created_at")), "2026-11-30T00:53:20.000Z");
    assert_true(json_is_null(json_object_get(o, "expires_at")));
    keten_auth_json_wipe_token(o);
    const char *wiped = json_string_value(json_object_get(o, "token"));
    for (size_t i = 0; i < KETEN_AUTH_TOKEN_CHARS; i++) {
        assert_int_equal(wiped[i], 0);
    }
    json_decref(o);
}

static void test_local_fd(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    keten_auth_principal p;
    assert_int_equal(keten_auth_local_fd(sv[0], &p), KETEN_OK);
    char want[32];
    snprintf(want, sizeof want, "uid=%u", (unsigned)geteuid());
    assert_string_equal(p.peer, want);
    assert_string_equal(p.actor, "local");
    assert_int_equal(p.scopes, KETEN_SCOPE_ALL);
    close(sv[0]);
    close(sv[1]);
    /* not a socket: no one is let in */
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(keten_auth_local_fd(fd, &p), KETEN_ERR_IO);
    assert_int_equal(p.scopes, 0);
    assert_string_equal(p.actor, "anonymous");
    close(fd);
}

/* ---- proxy -------------------------------------------------------------- */

static keten_config *node_cfg(const char *addr, const char *header, const char *scopes)
{
    keten_config *cfg = keten_config_new(&keten_config_node_table);
    assert_non_null(cfg);
    if (addr != NULL) {
        assert_int_equal(
            keten_config_set(cfg, "proxy-address", addr, KETEN_CONFIG_SRC_FILE), KETEN_OK);
    }
    if (header != NULL) {
        assert_int_equal(
            keten_config_set(cfg, "proxy-user-header", header, KETEN_CONFIG_SRC_FILE), KETEN_OK);
    }
    if (scopes != NULL) {
        assert_int_equal(
            keten_config_set(cfg, "proxy-scopes", scopes, KETEN_CONFIG_SRC_FILE), KETEN_OK);
    }
    return cfg;
}

static struct sockaddr_storage addr_of(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(40000);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &a6->sin6_addr), 1);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(40000);
    }
    return ss;
}

static keten_err proxy(
    const keten_auth_config *ac, const char *from, const char *value, keten_auth_principal *p)
{
    struct sockaddr_storage ss = addr_of(from);
    return keten_auth_proxy(ac, (struct sockaddr *)&ss, value, p);
}

static void test_proxy_config(void **state)
{
    (void)state;
    keten_auth_config ac;
    keten_config *cfg = node_cfg(NULL, NULL, NULL);
    assert_int_equal(keten_auth_config_from(cfg, &ac), KETEN_OK);
    assert_false(ac.proxy);
    assert_int_equal(ac.proxy_scopes, KETEN_SCOPE_READ); /* the default */
    keten_config_destroy(&cfg);

    cfg = node_cfg("127.0.0.1", NULL, NULL);
    assert_int_equal(keten_auth_config_from(cfg, &ac), KETEN_ERR_INVALID);
    assert_non_null(strstr(keten_err_detail(), "proxy-address is set without proxy-user-header"));
    keten_config_destroy(&cfg);
    cfg = node_cfg(NULL, "X-Remote-User", NULL);
    assert_int_equal(keten_auth_config_from(cfg, &ac), KETEN_ERR_INVALID);
    keten_config_destroy(&cfg);

    cfg = node_cfg("127.0.0.1", "X-Remote-User", "read,send");
    assert_int_equal(keten_auth_config_from(cfg, &ac), KETEN_OK);
    assert_true(ac.proxy);
    assert_string_equal(ac.proxy_header, "X-Remote-User");
    assert_int_equal(ac.proxy_scopes, KETEN_SCOPE_READ | KETEN_SCOPE_SEND);
    keten_config_destroy(&cfg);

    /* the table's validators */
    cfg = keten_config_new(&keten_config_node_table);
    assert_non_null(cfg);
    assert_int_equal(
        keten_config_set(cfg, "proxy-address", "proxy.example.org", KETEN_CONFIG_SRC_FILE),
        KETEN_ERR_INVALID);
    assert_non_null(strstr(keten_err_detail(), "not an IP address"));
    assert_int_equal(
        keten_config_set(cfg, "proxy-address", "::1", KETEN_CONFIG_SRC_FILE), KETEN_OK);
    assert_int_equal(
        keten_config_set(cfg, "proxy-user-header", "X Remote User", KETEN_CONFIG_SRC_FILE),
        KETEN_ERR_INVALID);
    assert_int_equal(
        keten_config_set(cfg, "proxy-user-header", "X-Remote-User:", KETEN_CONFIG_SRC_FILE),
        KETEN_ERR_INVALID);
    assert_int_equal(keten_config_set(cfg, "proxy-scopes", "read,admin", KETEN_CONFIG_SRC_FILE),
        KETEN_ERR_INVALID);
    assert_int_equal(
        keten_config_set(cfg, "access-log", "/var/log/keten/access.log", KETEN_CONFIG_SRC_FILE),
        KETEN_OK);
    keten_config_destroy(&cfg);
}

static void test_proxy_identity(void **state)
{
    (void)state;
    keten_auth_config ac;
    keten_config *cfg = node_cfg("127.0.0.1", "X-Remote-User", "read,ack");
    assert_int_equal(keten_auth_config_from(cfg, &ac), KETEN_OK);
    keten_config_destroy(&cfg);
    keten_auth_principal p;

    /* from the proxy: believed */
    assert_int_equal(proxy(&ac, "127.0.0.1", "j.devries@politie.example", &p), KETEN_OK);
    assert_string_equal(p.actor, "person:j.devries@politie.example");
    assert_int_equal(p.scopes, KETEN_SCOPE_READ | KETEN_SCOPE_ACK);
    assert_int_equal(p.via, KETEN_VIA_TCP);
    assert_string_equal(p.peer, "127.0.0.1");
    /* the same address mapped into IPv6 (a dual-stack listener) */
    assert_int_equal(proxy(&ac, "::ffff:127.0.0.1", "jan", &p), KETEN_OK);
    assert_string_equal(p.peer, "127.0.0.1");

    /* from anyone else: refused, not merely ignored */
    const char *others[] = { "127.0.0.2", "::1", "::ffff:127.0.0.2", "10.0.0.1" };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        assert_int_equal(proxy(&ac, others[i], "jan", &p), KETEN_ERR_PERMISSIONS);
        assert_non_null(strstr(keten_err_detail(), "X-Remote-User"));
        assert_int_equal(p.scopes, 0);
        assert_string_equal(p.actor, "anonymous");
    }
    assert_int_equal(keten_auth_proxy(&ac, NULL, "jan", &p), KETEN_ERR_PERMISSIONS);
    /* without the header: no identity from it (other credentials decide) */
    assert_int_equal(proxy(&ac, "127.0.0.1", NULL, &p), KETEN_ERR_NOT_FOUND);
    assert_int_equal(proxy(&ac, "10.0.0.1", NULL, &p), KETEN_ERR_NOT_FOUND);
    assert_int_equal(p.scopes, 0);
    /* without a proxy configured */
    keten_auth_config none;
    memset(&none, 0, sizeof none);
    assert_int_equal(proxy(&none, "127.0.0.1", "jan", &p), KETEN_ERR_NOT_FOUND);

    /* an IPv6 proxy */
    cfg = node_cfg("::1", "X-Forwarded-User", NULL);
    assert_int_equal(keten_auth_config_from(cfg, &ac), KETEN_OK);
    keten_config_destroy(&cfg);
    assert_int_equal(proxy(&ac, "::1", "jan", &p), KETEN_OK);
    assert_string_equal(p.peer, "::1");
    assert_int_equal(p.scopes, KETEN_SCOPE_READ);
    assert_int_equal(proxy(&ac, "127.0.0.1", "jan", &p), KETEN_ERR_PERMISSIONS);
}

static void test_proxy_values(void **state)
{
    (void)state;
    keten_auth_config ac;
    keten_config *cfg = node_cfg("127.0.0.1", "X-Remote-User", NULL);
    assert_int_equal(keten_auth_config_from(cfg, &ac), KETEN_OK);
    keten_config_destroy(&cfg);
    keten_auth_principal p;

    char max_ascii[KETEN_AUTH_PERSON_MAX + 2];
    memset(max_ascii, 'a', KETEN_AUTH_PERSON_MAX);
    max_ascii[KETEN_AUTH_PERSON_MAX] = '\0';
    /* 128 characters of three bytes each */
    char max_utf8[3 * KETEN_AUTH_PERSON_MAX + 1];
    for (size_t i = 0; i < KETEN_AUTH_PERSON_MAX; i++) {
        memcpy(max_utf8 + 3 * i, "\xe2\x82\xac", 3); /* U+20AC */
    }
    max_utf8[3 * KETEN_AUTH_PERSON_MAX] = '\0';
    const char *good[]
        = { "jan", "Zo\xc3\xab", "\xf0\x9f\x98\x80", max_ascii, max_utf8, "CN=jan,O=politie" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(proxy(&ac, "127.0.0.1", good[i], &p), KETEN_OK);
        assert_memory_equal(p.actor, "person:", 7);
        assert_string_equal(p.actor + 7, good[i]);
    }

    char too_long[KETEN_AUTH_PERSON_MAX + 2];
    memset(too_long, 'a', KETEN_AUTH_PERSON_MAX + 1);
    too_long[KETEN_AUTH_PERSON_MAX + 1] = '\0';
    struct {
        const char *value;
        const char *why;
    } bad[] = {
        { "", "empty" }, { too_long, "longer than 128" }, { "jan de vries", "space" },
        { "jan\tx", "control" }, { "jan\nX-Admin: 1", "control" }, { "jan\x7f", "control" },
        { "jan\xc2\x85", "control" }, /* U+0085, a C1 control */
        { "jan\xc0\xaf", "UTF-8" }, /* overlong '/' */
        { "jan\xed\xa0\x80", "UTF-8" }, /* a surrogate */
        { "jan\xe2\x82", "UTF-8" }, /* cut short */
        { "jan\xff", "UTF-8" }, { "\xf4\x90\x80\x80", "UTF-8" }, /* above U+10FFFF */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(proxy(&ac, "127.0.0.1", bad[i].value, &p), KETEN_ERR_INVALID);
        assert_non_null(strstr(keten_err_detail(), bad[i].why));
        assert_int_equal(p.scopes, 0);
        assert_string_equal(p.actor, "anonymous");
    }
}

static void test_principals(void **state)
{
    (void)state;
    keten_auth_principal p;
    keten_auth_local(1000, &p);
    assert_string_equal(p.actor, "local");
    assert_string_equal(p.peer, "uid=1000");
    assert_int_equal(p.via, KETEN_VIA_UNIX);
    assert_int_equal(p.scopes, KETEN_SCOPE_ALL);
    struct sockaddr_storage ss = addr_of("::1");
    keten_auth_anonymous(KETEN_VIA_TCP, (struct sockaddr *)&ss, &p);
    assert_string_equal(p.actor, "anonymous");
    assert_string_equal(p.peer, "::1");
    assert_int_equal(p.scopes, 0);
    keten_auth_anonymous(KETEN_VIA_TCP, NULL, &p);
    assert_string_equal(p.peer, "unknown");
}

/* ---- sessions ----------------------------------------------------------- */

static keten_auth_principal person(const char *name, unsigned scopes)
{
    keten_auth_principal p;
    memset(&p, 0, sizeof p);
    snprintf(p.actor, sizeof p.actor, "person:%s", name);
    p.scopes = scopes;
    p.via = KETEN_VIA_TCP;
    snprintf(p.peer, sizeof p.peer, "127.0.0.1");
    return p;
}

static void test_session_open_and_find(void **state)
{
    (void)state;
    keten_auth_sessions *s = keten_auth_sessions_new(8);
    assert_non_null(s);
    keten_auth_principal jan = person("jan", KETEN_SCOPE_READ | KETEN_SCOPE_SEND);
    char cookie[KETEN_AUTH_B64_CHARS + 1], csrf[KETEN_AUTH_B64_CHARS + 1];
    assert_int_equal(keten_auth_sessions_create(s, &jan, T0, cookie, csrf), KETEN_OK);
    assert_int_equal(strlen(cookie), 43);
    assert_int_equal(strlen(csrf), 43);
    assert_string_not_equal(cookie, csrf);
    keten_auth_session *ses = NULL;
    assert_int_equal(keten_auth_sessions_find(s, cookie, T0 + 1, &ses), KETEN_OK);
    assert_string_equal(keten_auth_session_principal(ses)->actor, "person:jan");
    assert_int_equal(
        keten_auth_session_principal(ses)->scopes, KETEN_SCOPE_READ | KETEN_SCOPE_SEND);
    json_t *j = keten_auth_session_json(ses);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 4);
    assert_string_equal(json_string_value(json_object_get(j, "actor")), "person:jan");
    assert_string_equal(json_string_value(json_object_get(j, "csrf_token")), csrf);
    assert_int_equal(json_array_size(json_object_get(j, "scopes")), 2);
    assert_true(json_is_string(json_object_get(j, "expires_at")));
    json_decref(j);

    /* a changed cookie, a malformed one */
    char other[KETEN_AUTH_B64_CHARS + 1];
    memcpy(other, cookie, sizeof other);
    other[3] = other[3] == 'A' ? 'B' : 'A';
    assert_int_equal(keten_auth_sessions_find(s, other, T0 + 2, &ses), KETEN_ERR_NOT_FOUND);
    assert_null(ses);
    assert_int_equal(keten_auth_sessions_find(s, "abc", T0 + 2, &ses), KETEN_ERR_MALFORMED);
    assert_int_equal(keten_auth_sessions_find(s, NULL, T0 + 2, &ses), KETEN_ERR_MALFORMED);
    char longer[KETEN_AUTH_B64_CHARS + 2];
    snprintf(longer, sizeof longer, "%sA", cookie);
    assert_int_equal(keten_auth_sessions_find(s, longer, T0 + 2, &ses), KETEN_ERR_MALFORMED);

    /* a principal without scopes gets no session */
    keten_auth_principal none = person("nobody", 0);
    assert_int_equal(keten_auth_sessions_create(s, &none, T0, cookie, csrf), KETEN_ERR_INVALID);
    assert_string_equal(cookie, "");
    assert_int_equal(keten_auth_sessions_count(s), 1);
    keten_auth_sessions_destroy(&s);
    assert_null(s);
    keten_auth_sessions_destroy(&s);
    assert_null(keten_auth_sessions_new(0));
}

static void test_session_expiry(void **state)
{
    (void)state;
    keten_auth_sessions *s = keten_auth_sessions_new(8);
    assert_non_null(s);
    keten_auth_principal jan = person("jan", KETEN_SCOPE_READ);
    char cookie[KETEN_AUTH_B64_CHARS + 1], csrf[KETEN_AUTH_B64_CHARS + 1];
    keten_auth_session *ses = NULL;

    /* idle: 15 minutes after the last use */
    assert_int_equal(keten_auth_sessions_create(s, &jan, T0, cookie, csrf), KETEN_OK);
    assert_int_equal(keten_auth_sessions_find(s, cookie, T0 + 15 * MIN_MS - 1, &ses), KETEN_OK);
    assert_int_equal(keten_auth_session_expires_at(ses), T0 + 30 * MIN_MS - 1);
    assert_int_equal(keten_auth_sessions_find(s, cookie, T0 + 30 * MIN_MS - 2, &ses), KETEN_OK);
    assert_int_equal(
        keten_auth_sessions_find(s, cookie, T0 + 45 * MIN_MS - 2, &ses), KETEN_ERR_EXPIRED);
    assert_int_equal(keten_auth_sessions_count(s), 0); /* dropped */
    assert_int_equal(
        keten_auth_sessions_find(s, cookie, T0 + 45 * MIN_MS - 1, &ses), KETEN_ERR_NOT_FOUND);

    /* alive: checked every minute (an event stream), not used: still ends
     * 15 minutes after the last use */
    assert_int_equal(keten_auth_sessions_create(s, &jan, T0, cookie, csrf), KETEN_OK);
    for (uint64_t t = T0; t < T0 + 15 * MIN_MS; t += MIN_MS) {
        assert_int_equal(keten_auth_sessions_alive(s, cookie, t), KETEN_OK);
    }
    assert_int_equal(keten_auth_sessions_alive(s, cookie, T0 + 15 * MIN_MS), KETEN_ERR_EXPIRED);
    assert_int_equal(keten_auth_sessions_alive(s, cookie, T0 + 15 * MIN_MS), KETEN_ERR_NOT_FOUND);
    assert_int_equal(keten_auth_sessions_alive(s, "abc", T0), KETEN_ERR_MALFORMED);
    /* twin: a use in between restarts the idle time */
    assert_int_equal(keten_auth_sessions_create(s, &jan, T0, cookie, csrf), KETEN_OK);
    assert_int_equal(keten_auth_sessions_find(s, cookie, T0 + 10 * MIN_MS, &ses), KETEN_OK);
    assert_int_equal(keten_auth_sessions_alive(s, cookie, T0 + 15 * MIN_MS), KETEN_OK);
    assert_int_equal(keten_auth_sessions_alive(s, cookie, T0 + 25 * MIN_MS), KETEN_ERR_EXPIRED);

    /* absolute: 8 hours, even when used every 10 minutes */
    assert_int_equal(keten_auth_sessions_create(s, &jan, T0, cookie, csrf), KETEN_OK);
    for (uint64_t t = T0; t <= T0 + 8 * HOUR_MS - 10 * MIN_MS; t += 10 * MIN_MS) {
        assert_int_equal(keten_auth_sessions_find(s, cookie, t, &ses), KETEN_OK);
    }
    assert_int_equal(keten_auth_session_expires_at(ses), T0 + 8 * HOUR_MS);
    assert_int_equal(keten_auth_sessions_find(s, cookie, T0 + 8 * HOUR_MS - 1, &ses), KETEN_OK);
    assert_int_equal(
        keten_auth_sessions_find(s, cookie, T0 + 8 * HOUR_MS, &ses), KETEN_ERR_EXPIRED);

    /* a token's session ends when the token expires */
    keten_auth_principal tok = person("x", KETEN_SCOPE_READ);
    snprintf(tok.actor, sizeof tok.actor, "token:dashboard");
    snprintf(tok.token_id, sizeof tok.token_id, "0123456789abcdef");
    tok.expires_at = T0 + 5 * MIN_MS;
    assert_int_equal(keten_auth_sessions_create(s, &tok, T0, cookie, csrf), KETEN_OK);
    assert_int_equal(keten_auth_sessions_find(s, cookie, T0 + 5 * MIN_MS - 1, &ses), KETEN_OK);
    assert_int_equal(keten_auth_session_expires_at(ses), T0 + 5 * MIN_MS);
    assert_int_equal(keten_auth_sessions_find(s, cookie, T0 + 5 * MIN_MS, &ses), KETEN_ERR_EXPIRED);
    keten_auth_sessions_destroy(&s);
}

static void test_session_csrf(void **state)
{
    (void)state;
    keten_auth_sessions *s = keten_auth_sessions_new(8);
    assert_non_null(s);
    keten_auth_principal jan = person("jan", KETEN_SCOPE_ALL);
    char cookie[KETEN_AUTH_B64_CHARS + 1], csrf[KETEN_AUTH_B64_CHARS + 1];
    char cookie2[KETEN_AUTH_B64_CHARS + 1], csrf2[KETEN_AUTH_B64_CHARS + 1];
    assert_int_equal(keten_auth_sessions_create(s, &jan, T0, cookie, csrf), KETEN_OK);
    assert_int_equal(keten_auth_sessions_create(s, &jan, T0, cookie2, csrf2), KETEN_OK);
    keten_auth_session *ses = NULL;
    assert_int_equal(keten_auth_sessions_find(s, cookie, T0, &ses), KETEN_OK);
    const char *host = "127.0.0.1:8080";
    /* the accept twins */
    assert_int_equal(keten_auth_sessions_check_csrf(ses, csrf, NULL, host), KETEN_OK);
    assert_int_equal(
        keten_auth_sessions_check_csrf(ses, csrf, "http://127.0.0.1:8080", host), KETEN_OK);
    assert_int_equal(
        keten_auth_sessions_check_csrf(ses, csrf, "https://127.0.0.1:8080", host), KETEN_OK);
    /* missing, another session's, changed, short, longer */
    assert_int_equal(keten_auth_sessions_check_csrf(ses, NULL, NULL, host), KETEN_ERR_PERMISSIONS);
    assert_non_null(strstr(keten_err_detail(), "no X-CSRF-Token"));
    assert_int_equal(keten_auth_sessions_check_csrf(ses, csrf2, NULL, host), KETEN_ERR_PERMISSIONS);
    char changed[KETEN_AUTH_B64_CHARS + 2];
    memcpy(changed, csrf, KETEN_AUTH_B64_CHARS + 1);
    changed[42] = changed[42] == 'A' ? 'Q' : 'A';
    assert_int_equal(
        keten_auth_sessions_check_csrf(ses, changed, NULL, host), KETEN_ERR_PERMISSIONS);
    assert_int_equal(keten_auth_sessions_check_csrf(ses, "", NULL, host), KETEN_ERR_PERMISSIONS);
    memcpy(changed, csrf, KETEN_AUTH_B64_CHARS);
    changed[KETEN_AUTH_B64_CHARS] = 'A';
    changed[KETEN_AUTH_B64_CHARS + 1] = '\0';
    assert_int_equal(
        keten_auth_sessions_check_csrf(ses, changed, NULL, host), KETEN_ERR_PERMISSIONS);
    /* the right token from another site */
    const char *origins[] = { "http://evil.example", "http://127.0.0.1:8081", "null",
        "http://127.0.0.1:8080.evil.example", "ftp://127.0.0.1:8080", "http://127.0.0.1:8080/" };
    for (size_t i = 0; i < sizeof origins / sizeof origins[0]; i++) {
        assert_int_equal(
            keten_auth_sessions_check_csrf(ses, csrf, origins[i], host), KETEN_ERR_PERMISSIONS);
        assert_non_null(strstr(keten_err_detail(), "Origin"));
    }
    assert_int_equal(keten_auth_sessions_check_csrf(ses, csrf, "http://127.0.0.1:8080", NULL),
        KETEN_ERR_PERMISSIONS);
    keten_auth_sessions_destroy(&s);
}

static void test_session_end(void **state)
{
    (void)state;
    keten_auth_sessions *s = keten_auth_sessions_new(8);
    assert_non_null(s);
    keten_auth_principal jan = person("jan", KETEN_SCOPE_READ);
    keten_auth_principal tok = person("x", KETEN_SCOPE_READ);
    snprintf(tok.actor, sizeof tok.actor, "token:dashboard");
    snprintf(tok.token_id, sizeof tok.token_id, "0123456789abcdef");
    char c1[KETEN_AUTH_B64_CHARS + 1], c2[KETEN_AUTH_B64_CHARS + 1], c3[KETEN_AUTH_B64_CHARS + 1];
    char csrf[KETEN_AUTH_B64_CHARS + 1];
    assert_int_equal(keten_auth_sessions_create(s, &jan, T0, c1, csrf), KETEN_OK);
    assert_int_equal(keten_auth_sessions_create(s, &tok, T0, c2, csrf), KETEN_OK);
    assert_int_equal(keten_auth_sessions_create(s, &tok, T0, c3, csrf), KETEN_OK);
    keten_auth_session *ses = NULL;
    assert_int_equal(keten_auth_sessions_end(s, c1), KETEN_OK);
    assert_int_equal(keten_auth_sessions_find(s, c1, T0, &ses), KETEN_ERR_NOT_FOUND);
    assert_int_equal(keten_auth_sessions_end(s, c1), KETEN_ERR_NOT_FOUND);
    /* the token revoked: its sessions end, others stay */
    assert_int_equal(keten_auth_sessions_end_token(s, "fedcba9876543210"), 0);
    assert_int_equal(keten_auth_sessions_end_token(s, ""), 0);
    assert_int_equal(keten_auth_sessions_find(s, c2, T0, &ses), KETEN_OK);
    assert_int_equal(keten_auth_sessions_end_token(s, "0123456789abcdef"), 2);
    /* ended by the revocation: its cookie is told so (not "signed out") */
    assert_int_equal(keten_auth_sessions_find(s, c2, T0, &ses), KETEN_ERR_REVOKED);
    assert_non_null(strstr(keten_err_detail(), "token (token:dashboard) was revoked"));
    assert_null(ses);
    assert_int_equal(keten_auth_sessions_alive(s, c3, T0), KETEN_ERR_REVOKED);
    assert_int_equal(keten_auth_sessions_end(s, c3), KETEN_ERR_REVOKED);
    /* the twin: the session signed out is still just unknown */
    assert_int_equal(keten_auth_sessions_find(s, c1, T0, &ses), KETEN_ERR_NOT_FOUND);
    assert_int_equal(keten_auth_sessions_count(s), 0);
    /* a new session may take a revoked one's slot: it works, and the old
     * cookie does not open it */
    for (int i = 0; i < 8; i++) {
        assert_int_equal(keten_auth_sessions_create(s, &jan, T0, c1, csrf), KETEN_OK);
    }
    assert_int_equal(keten_auth_sessions_find(s, c1, T0, &ses), KETEN_OK);
    assert_int_equal(keten_auth_sessions_find(s, c2, T0, &ses), KETEN_ERR_NOT_FOUND);
    assert_int_equal(keten_auth_sessions_count(s), 8);
    keten_auth_sessions_destroy(&s);
}

static void test_session_bound(void **state)
{
    (void)state;
    enum { MAX = 4 };
    keten_auth_sessions *s = keten_auth_sessions_new(MAX);
    assert_non_null(s);
    char cookies[MAX + 2][KETEN_AUTH_B64_CHARS + 1], csrf[KETEN_AUTH_B64_CHARS + 1];
    keten_auth_session *ses = NULL;
    for (int i = 0; i < MAX; i++) {
        keten_auth_principal p = person("p", KETEN_SCOPE_READ);
        snprintf(p.actor, sizeof p.actor, "person:p%d", i);
        assert_int_equal(
            keten_auth_sessions_create(s, &p, T0 + (uint64_t)i, cookies[i], csrf), KETEN_OK);
    }
    assert_int_equal(keten_auth_sessions_count(s), MAX);
    /* the oldest (p0) gives way, though it was used last */
    assert_int_equal(keten_auth_sessions_find(s, cookies[0], T0 + 10, &ses), KETEN_OK);
    keten_auth_principal n = person("new", KETEN_SCOPE_READ);
    assert_int_equal(keten_auth_sessions_create(s, &n, T0 + 11, cookies[MAX], csrf), KETEN_OK);
    assert_int_equal(keten_auth_sessions_count(s), MAX);
    assert_int_equal(keten_auth_sessions_find(s, cookies[0], T0 + 12, &ses), KETEN_ERR_NOT_FOUND);
    for (int i = 1; i <= MAX; i++) {
        assert_int_equal(keten_auth_sessions_find(s, cookies[i], T0 + 12, &ses), KETEN_OK);
    }
    /* expired ones give way before the oldest live one */
    keten_auth_sessions_destroy(&s);
    s = keten_auth_sessions_new(2);
    assert_non_null(s);
    keten_auth_principal a = person("a", KETEN_SCOPE_READ), b = person("b", KETEN_SCOPE_READ);
    assert_int_equal(keten_auth_sessions_create(s, &a, T0, cookies[0], csrf), KETEN_OK);
    assert_int_equal(
        keten_auth_sessions_create(s, &b, T0 + 10 * MIN_MS, cookies[1], csrf), KETEN_OK);
    /* at T0 + 20 min a has been idle for 20 minutes: it gives way, not b */
    assert_int_equal(keten_auth_sessions_find(s, cookies[1], T0 + 20 * MIN_MS, &ses), KETEN_OK);
    assert_int_equal(
        keten_auth_sessions_create(s, &n, T0 + 20 * MIN_MS, cookies[2], csrf), KETEN_OK);
    assert_int_equal(keten_auth_sessions_find(s, cookies[1], T0 + 20 * MIN_MS, &ses), KETEN_OK);
    assert_int_equal(keten_auth_sessions_find(s, cookies[2], T0 + 20 * MIN_MS, &ses), KETEN_OK);
    assert_int_equal(
        keten_auth_sessions_find(s, cookies[0], T0 + 20 * MIN_MS, &ses), KETEN_ERR_NOT_FOUND);
    keten_auth_sessions_destroy(&s);
}

int main(void)
{
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scopes),
        cmocka_unit_test_setup_teardown(test_token_create_and_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_wrong_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_duplicate_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_store_gains_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_damaged, setup, teardown),
        cmocka_unit_test(test_token_request),
        cmocka_unit_test_setup_teardown(test_token_created_json, setup, teardown),
        cmocka_unit_test(test_local_fd),
        cmocka_unit_test(test_proxy_config),
        cmocka_unit_test(test_proxy_identity),
        cmocka_unit_test(test_proxy_values),
        cmocka_unit_test(test_principals),
        cmocka_unit_test(test_session_open_and_find),
        cmocka_unit_test(test_session_expiry),
        cmocka_unit_test(test_session_csrf),
        cmocka_unit_test(test_session_end),
        cmocka_unit_test(test_session_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
