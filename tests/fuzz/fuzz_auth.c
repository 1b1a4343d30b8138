/*
 * fuzz_auth.c - who calls the node's HTTP API (client/auth.c): the input's
 * first byte chooses what the rest is, as a request header or body would
 * bring it (up to the first NUL):
 *
 *   0  an Authorization header value, against a store holding one token
 *      (FUZZ_TOKEN, name "fuzz", scopes read and send) and one revoked one
 *   1  the proxy's user header, from the proxy's address and from another
 *   2  the body of POST /v1/tokens (JSON)
 *   3  an X-CSRF-Token header, then after a newline an Origin header, for
 *      a session whose CSRF token is known to the harness
 *
 * Invariants:
 *   0. OK exactly for "Bearer" (any case), spaces or tabs, FUZZ_TOKEN,
 *      spaces or tabs; then actor token:fuzz with read and send. Otherwise
 *      MALFORMED, NOT_FOUND or REVOKED (REVOKED only for FUZZ_REVOKED),
 *      actor anonymous and no scope.
 *   1. From another address always PERMISSIONS. From the proxy, OK exactly
 *      when the value is 1 to 128 characters of valid UTF-8 without
 *      control characters or spaces; then actor person:VALUE with the
 *      proxy's scopes; else INVALID, anonymous, no scope.
 *   2. An accepted request has a valid name and a non-empty set of known
 *      scopes and an expiry of 0 or later than now; a refused one is
 *      INVALID and names a field ("" or a JSON pointer) and what is allowed.
 *   3. OK exactly when the header is the session's CSRF token and the
 *      Origin is absent or http(s)://HOST of the request.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "auth.h"
#include "fuzz_common.h"
#include "nodestore.h"
#include "sha256.h"
#include "store.h"
#include "util.h"

/* base64url of the 32 bytes "fuzz token for the auth harness!" */
#define FUZZ_TOKEN "ktn_ZnV6eiB0b2tlbiBmb3IgdGhlIGF1dGggaGFybmVzcyE"
/* and of "a revoked token for the harness." */
#define FUZZ_REVOKED "ktn_YSByZXZva2VkIHRva2VuIGZvciB0aGUgaGFybmVzcy4"
#define FUZZ_NOW (FUZZ_T0 + 1000)
#define FUZZ_HOST "127.0.0.1:8080"
#define INPUT_MAX 4096

static char dir[PATH_MAX];
static keten_store *store;
static keten_auth_config proxy_cfg;
static keten_auth_sessions *sessions;
static keten_auth_session *session;
static char csrf[KETEN_AUTH_B64_CHARS + 1];

static void cleanup(void)
{
    keten_auth_sessions_destroy(&sessions);
    keten_store_destroy(&store);
    if (dir[0] != '\0') {
        fuzz_remove_tree(dir);
    }
}

static void put_token(const char *token, const char *id, const char *name, uint64_t revoked_at)
{
    uint8_t hash[KETEN_SHA256_BYTES];
    keten_sha256(hash, token, strlen(token));
    Keten__TokenRecord r = KETEN__TOKEN_RECORD__INIT;
    r.id = (char *)id;
    r.name = (char *)name;
    r.scopes = KETEN_SCOPE_READ | KETEN_SCOPE_SEND;
    r.created_at = FUZZ_T0;
    r.revoked_at = revoked_at;
    r.token_hash.data = hash;
    r.token_hash.len = sizeof hash;
    MDB_txn *txn = NULL;
    FUZZ_CHECK(keten_store_begin(store, true, &txn) == KETEN_OK);
    FUZZ_CHECK(keten_nodestore_token_put(store, txn, &r) == KETEN_OK);
    FUZZ_CHECK(keten_store_commit(&txn) == KETEN_OK);
}

static void setup(void)
{
    fuzz_tmpdir_make("auth", dir);
    FUZZ_CHECK(keten_store_open(dir, &store) == KETEN_OK);
    atexit(cleanup);
    put_token(FUZZ_TOKEN, "0123456789abcdef", "fuzz", 0);
    put_token(FUZZ_REVOKED, "fedcba9876543210", "old", FUZZ_T0 + 1);

    memset(&proxy_cfg, 0, sizeof proxy_cfg);
    struct sockaddr_in *a = (struct sockaddr_in *)(void *)&proxy_cfg.proxy_addr;
    a->sin_family = AF_INET;
    FUZZ_CHECK(inet_pton(AF_INET, "127.0.0.1", &a->sin_addr) == 1);
    snprintf(proxy_cfg.proxy_header, sizeof proxy_cfg.proxy_header, "X-Remote-User");
    proxy_cfg.proxy_scopes = KETEN_SCOPE_READ | KETEN_SCOPE_ACK;
    proxy_cfg.proxy = true;

    sessions = keten_auth_sessions_new(4);
    FUZZ_CHECK(sessions != NULL);
    keten_auth_principal p;
    keten_auth_local(1000, &p);
    char cookie[KETEN_AUTH_B64_CHARS + 1];
    FUZZ_CHECK(keten_auth_sessions_create(sessions, &p, FUZZ_NOW, cookie, csrf) == KETEN_OK);
    FUZZ_CHECK(keten_auth_sessions_find(sessions, cookie, FUZZ_NOW, &session) == KETEN_OK);
}

static struct sockaddr_in addr(const char *text)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    FUZZ_CHECK(inet_pton(AF_INET, text, &a.sin_addr) == 1);
    return a;
}

static bool refused(const keten_auth_principal *p)
{
    return p->scopes == 0 && strcmp(p->actor, "anonymous") == 0;
}

/* Is s "Bearer", spaces or tabs, token, spaces or tabs? */
static bool is_bearer_of(const char *s, const char *token)
{
    if (strncasecmp(s, "Bearer", 6) != 0 || (s[6] != ' ' && s[6] != '\t')) {
        return false;
    }
    s += 6 + strspn(s + 6, " \t");
    size_t n = strlen(token);
    if (strncmp(s, token, n) != 0) {
        return false;
    }
    s += n;
    return s[strspn(s, " \t")] == '\0';
}

static void check_bearer(const char *in)
{
    struct sockaddr_in a = addr("127.0.0.1");
    keten_auth_principal p;
    keten_err e = keten_auth_bearer(store, in, FUZZ_NOW, (struct sockaddr *)&a, &p);
    bool valid = strlen(in) <= KETEN_AUTH_HEADER_MAX && is_bearer_of(in, FUZZ_TOKEN);
    bool revoked = strlen(in) <= KETEN_AUTH_HEADER_MAX && is_bearer_of(in, FUZZ_REVOKED);
    FUZZ_CHECK((e == KETEN_OK) == valid);
    FUZZ_CHECK((e == KETEN_ERR_REVOKED) == revoked);
    if (e == KETEN_OK) {
        FUZZ_CHECK(strcmp(p.actor, "token:fuzz") == 0);
        FUZZ_CHECK(p.scopes == (KETEN_SCOPE_READ | KETEN_SCOPE_SEND));
        FUZZ_CHECK(strcmp(p.peer, "127.0.0.1") == 0);
    } else {
        FUZZ_CHECK(e == KETEN_ERR_MALFORMED || e == KETEN_ERR_NOT_FOUND || e == KETEN_ERR_REVOKED);
        FUZZ_CHECK(refused(&p));
    }
}

/* The rule of keten_auth_person_valid, written again: 1-128 characters of
 * valid UTF-8 (jansson checks), none of them a control character or space. */
static bool person_ok(const char *v)
{
    size_t len = strlen(v);
    json_t *j = json_stringn(v, len);
    if (j == NULL) {
        return false;
    }
    json_decref(j);
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
        if (*p <= 0x20 || *p == 0x7f) {
            return false;
        }
        if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) { /* C1 controls */
            return false;
        }
        chars += (*p & 0xc0) != 0x80;
    }
    return chars >= 1 && chars <= KETEN_AUTH_PERSON_MAX;
}

static void check_proxy(const char *in)
{
    keten_auth_principal p;
    struct sockaddr_in other = addr("127.0.0.2");
    FUZZ_CHECK(
        keten_auth_proxy(&proxy_cfg, (struct sockaddr *)&other, in, &p) == KETEN_ERR_PERMISSIONS);
    FUZZ_CHECK(refused(&p));
    struct sockaddr_in from = addr("127.0.0.1");
    keten_err e = keten_auth_proxy(&proxy_cfg, (struct sockaddr *)&from, in, &p);
    FUZZ_CHECK((e == KETEN_OK) == person_ok(in));
    if (e == KETEN_OK) {
        FUZZ_CHECK(strncmp(p.actor, "person:", 7) == 0 && strcmp(p.actor + 7, in) == 0);
        FUZZ_CHECK(p.scopes == (KETEN_SCOPE_READ | KETEN_SCOPE_ACK));
    } else {
        FUZZ_CHECK(e == KETEN_ERR_INVALID && refused(&p));
    }
}

static void check_request(const char *in)
{
    json_t *body = json_loads(in, JSON_REJECT_DUPLICATES, NULL);
    if (body == NULL) {
        return; /* the server refuses it before this */
    }
    keten_auth_token_params r;
    const char *field = NULL, *allowed = NULL;
    keten_err e = keten_auth_token_request(body, FUZZ_NOW, &r, &field, &allowed);
    if (e == KETEN_OK) {
        size_t n = strlen(r.name);
        FUZZ_CHECK(n >= 1 && n <= KETEN_AUTH_TOKEN_NAME_MAX);
        FUZZ_CHECK(strspn(r.name, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n);
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(body, "name")), r.name) == 0);
        FUZZ_CHECK(r.scopes != 0 && (r.scopes & ~KETEN_SCOPE_ALL) == 0);
        FUZZ_CHECK(
            r.expires_at == 0 || (r.expires_at > FUZZ_NOW && r.expires_at <= KETEN_TIME_MAX_MS));
        FUZZ_CHECK(json_object_size(body) <= 3);
    } else {
        FUZZ_CHECK(e == KETEN_ERR_INVALID);
        FUZZ_CHECK(field != NULL && (field[0] == '\0' || field[0] == '/'));
        FUZZ_CHECK(allowed != NULL && allowed[0] != '\0');
    }
    json_decref(body);
}

static void check_csrf(char *in)
{
    char *nl = strchr(in, '\n');
    const char *origin = NULL;
    if (nl != NULL) {
        *nl = '\0';
        origin = nl + 1;
    }
    keten_err e = keten_auth_sessions_check_csrf(session, in, origin, FUZZ_HOST);
    bool origin_ok = origin == NULL || strcmp(origin, "http://" FUZZ_HOST) == 0
        || strcmp(origin, "https://" FUZZ_HOST) == 0;
    FUZZ_CHECK((e == KETEN_OK) == (strcmp(in, csrf) == 0 && origin_ok));
    FUZZ_CHECK(e == KETEN_OK || e == KETEN_ERR_PERMISSIONS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL) {
        setup();
    }
    if (size < 1 || size > INPUT_MAX) {
        return 0;
    }
    char in[INPUT_MAX + 1];
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    switch (data[0] & 3) {
    case 0:
        check_bearer(in);
        break;
    case 1:
        check_proxy(in);
        break;
    case 2:
        check_request(in);
        break;
    default:
        check_csrf(in);
        break;
    }
    return 0;
}
