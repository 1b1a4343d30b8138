/*
 * auth.h - who is calling the node's HTTP API: application tokens, the
 * identity a single sign-on reverse proxy vouches for, and the web page's
 * sessions (docs/integration.md, "Tokens", "Behind a reverse proxy with
 * single sign-on").
 *
 * Every caller ends up as a keten_auth_principal: an actor ("local",
 * "token:NAME", "person:VALUE", "anonymous" before anything was shown), the
 * scopes it holds (KETEN_SCOPE_*), how it came (Unix socket or TCP) and its
 * peer ("uid=N" or the address). The HTTP server decides with it and writes
 * it to the access log (accesslog.h).
 *
 * Tokens. A token is "ktn_" followed by the unpadded base64url encoding of
 * 32 random bytes (47 characters). The node keeps only its SHA-256 (of the
 * token's 47 characters), as the key of the store's `tokens` table
 * (TokenRecord, proto/keten.proto): the lookup is by hash, so no secret is
 * compared byte by byte; the record's own copy of the hash is then compared
 * with sodium_memcmp as a check of the record. A token is checked for its
 * exact shape (prefix, length, alphabet, canonical last character) before
 * it is hashed. The random bytes live in sodium_malloc memory and are wiped;
 * the caller of keten_auth_token_create() wipes token_out (sodium_memzero)
 * after showing it once. Revoked tokens stay in the table (listed with
 * revoked_at, refused); their name may be used again by a new token.
 *
 * Proxy identity. With proxy-address and proxy-user-header set, a request
 * whose TCP peer is exactly proxy-address (an IPv4 address mapped into IPv6
 * counts as the IPv4 address) and that carries the header is the person the
 * header names, with proxy-scopes. The same header from any other peer is
 * refused: someone is trying to claim a name. The value is 1 to 128
 * characters of valid UTF-8 without control characters or spaces.
 *
 * Sessions (the web page). keten_auth_sessions_create() hands out a cookie value
 * and a CSRF token (each 32 random bytes, unpadded base64url, 43
 * characters). The set keeps only the SHA-256 of the cookie (compared with
 * sodium_memcmp against each live session) and the CSRF token, in
 * sodium_malloc memory, wiped when a session ends. A session ends after
 * KETEN_SESSION_IDLE_MS without use, KETEN_SESSION_MAX_MS after it was
 * opened, when the token that opened it expires, on keten_auth_sessions_end(),
 * or on keten_auth_sessions_end_token() (call it after revoking a token). At
 * most the set's bound are kept; opening one more drops the oldest.
 *
 * Ownership: keten_auth_sessions_new() returns a set freed with
 * keten_auth_sessions_destroy() (wipes it). A keten_auth_session pointer returned by
 * keten_auth_sessions_find() is valid until the next call that changes the set
 * (create, find, end, end_token, destroy). JSON returned is a new reference.
 * Thread safety: none; the node's loop thread only.
 * Errors: KETEN_ERR_MALFORMED (a token, cookie or header of the wrong
 * shape), KETEN_ERR_NOT_FOUND (no such token, session or credential),
 * KETEN_ERR_REVOKED, KETEN_ERR_EXPIRED, KETEN_ERR_PERMISSIONS (the proxy
 * header from another peer, a CSRF token or Origin that does not match),
 * KETEN_ERR_INVALID (a bad name, scope, value or setting), KETEN_ERR_EXISTS
 * (a live token has that name), KETEN_ERR_STORE*, KETEN_ERR_NOMEM,
 * KETEN_ERR_CRYPTO; each with a detail line a person can act on.
 */
#ifndef KETEN_NODE_AUTH_H
#define KETEN_NODE_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "err.h"
#include "store.h"

/* Scopes (bitmask). */
#define KETEN_SCOPE_READ 1u /* lists, show, status, capabilities, events */
#define KETEN_SCOPE_SEND 2u /* send, reply, feedback, validate */
#define KETEN_SCOPE_ACK 4u /* acknowledge */
#define KETEN_SCOPE_ALL (KETEN_SCOPE_READ | KETEN_SCOPE_SEND | KETEN_SCOPE_ACK)

#define KETEN_AUTH_TOKEN_PREFIX "ktn_"
#define KETEN_AUTH_SECRET_BYTES 32 /* random bytes of a token, cookie or CSRF token */
#define KETEN_AUTH_B64_CHARS 43 /* their unpadded base64url length */
#define KETEN_AUTH_TOKEN_CHARS (4 + KETEN_AUTH_B64_CHARS) /* "ktn_" + 43 */
#define KETEN_AUTH_TOKEN_ID_CHARS 16 /* 8 random bytes in hex */
#define KETEN_AUTH_TOKEN_NAME_MAX 64
#define KETEN_AUTH_TOKENS_MAX 1024 /* live and revoked tokens in the table */
#define KETEN_AUTH_HEADER_MAX 1024 /* an Authorization or proxy header's value, bytes */
#define KETEN_AUTH_PERSON_MAX 128 /* characters of a proxy user name */
#define KETEN_AUTH_ACTOR_MAX (7 + 4 * KETEN_AUTH_PERSON_MAX + 1) /* "person:" + UTF-8 + NUL */
#define KETEN_AUTH_PEER_MAX 64 /* "uid=N", an IPv4 or IPv6 address */
#define KETEN_AUTH_HEADER_NAME_MAX 64

#define KETEN_SESSION_IDLE_MS (15ull * 60 * 1000)
#define KETEN_SESSION_MAX_MS (8ull * 3600 * 1000)
#define KETEN_SESSIONS_DEFAULT_MAX 1024

typedef enum keten_auth_via {
    KETEN_VIA_UNIX, /* HOME/api.sock: the node's operator */
    KETEN_VIA_TCP, /* api-listen */
} keten_auth_via;

typedef struct keten_auth_principal {
    char actor[KETEN_AUTH_ACTOR_MAX]; /* "local", "token:NAME", "person:VALUE", "anonymous" */
    unsigned scopes; /* KETEN_SCOPE_* */
    keten_auth_via via;
    char peer[KETEN_AUTH_PEER_MAX]; /* "uid=1000", "127.0.0.1", "::1" */
    char token_id[KETEN_AUTH_TOKEN_ID_CHARS + 1]; /* a token's id; "" otherwise */
    uint64_t expires_at; /* a token's expiry (ms); 0: none */
} keten_auth_principal;

/* ---- scopes ------------------------------------------------------------- */

/* Parse "read,send,ack" (any order, no repeats, no spaces) into *out;
 * KETEN_ERR_INVALID naming the word that is not a scope. */
keten_err keten_auth_scopes_parse(const char *text, unsigned *out) KETEN_MUST_CHECK;
/* "read,send,ack" (the set ones, in that order) into out (>= 15 bytes). */
void keten_auth_scopes_text(unsigned scopes, char *out, size_t out_size);
/* ["read","send"]; NULL without memory. */
json_t *keten_auth_scopes_json(unsigned scopes);

/* ---- principals --------------------------------------------------------- */

/* The node's operator on the Unix socket: actor "local", every scope,
 * peer "uid=N" (the SO_PEERCRED uid). */
void keten_auth_local(unsigned uid, keten_auth_principal *out);
/* The same for a connected Unix socket: the uid from SO_PEERCRED.
 * KETEN_ERR_IO when the kernel does not tell (not a Unix socket). */
keten_err keten_auth_local_fd(int fd, keten_auth_principal *out) KETEN_MUST_CHECK;
/* Nobody yet (for the access log line of a refused request): actor
 * "anonymous", no scope; peer from the address (NULL: "unknown"). */
void keten_auth_anonymous(
    keten_auth_via via, const struct sockaddr *peer, keten_auth_principal *out);
/* The address of peer as text ("127.0.0.1", "::1"); a mapped IPv4 address
 * as IPv4; "unknown" for NULL or another family. */
void keten_auth_peer_text(const struct sockaddr *peer, char out[static KETEN_AUTH_PEER_MAX]);

/* ---- tokens ------------------------------------------------------------- */

/* Make a token: name 1-64 of [a-z0-9._-] not used by a live (not revoked,
 * not expired) token (KETEN_ERR_EXISTS), scopes a non-empty subset of
 * KETEN_SCOPE_ALL, expires_at 0 (never) or later than now_ms. Writes the
 * token (NUL-terminated; the caller wipes it) and its id. At most
 * KETEN_AUTH_TOKENS_MAX tokens (revoked ones included; KETEN_ERR_INVALID). */
keten_err keten_auth_token_create(keten_store *st, const char *name, unsigned scopes,
    uint64_t expires_at, uint64_t now_ms, char token_out[static KETEN_AUTH_TOKEN_CHARS + 1],
    char id_out[static KETEN_AUTH_TOKEN_ID_CHARS + 1]) KETEN_MUST_CHECK;

/* The body of POST /v1/tokens, parsed strictly: {"name":NAME,
 * "scopes":["read",...],"expires_at":TIME (optional: ISO 8601 UTC or ms
 * since 1970, or null)}; any other field refused. On error
 * KETEN_ERR_INVALID with a detail, and *field_out the JSON pointer of the
 * field at fault ("/name", "/scopes/1", "" for the body itself) and
 * *allowed_out what is allowed there (static strings). */
typedef struct keten_auth_token_params {
    char name[KETEN_AUTH_TOKEN_NAME_MAX + 1];
    unsigned scopes;
    uint64_t expires_at; /* 0: never */
} keten_auth_token_params;
keten_err keten_auth_token_request(const json_t *body, uint64_t now_ms, keten_auth_token_params *out,
    const char **field_out, const char **allowed_out) KETEN_MUST_CHECK;

/* The answer of POST /v1/tokens (201): {"id","name","scopes","created_at",
 * "expires_at" (null: never),"token"}; NULL without memory. The caller
 * wipes the token in it before freeing (keten_auth_json_wipe_token). */
json_t *keten_auth_token_created_json(
    const keten_auth_token_params *req, const char *id, const char *token, uint64_t created_at);
/* Overwrite the "token" string of obj in place (before json_decref). */
void keten_auth_json_wipe_token(json_t *obj);

/* {"tokens":[{"id","name","scopes":[...],"created_at","expires_at",
 * "revoked_at","state"}...]} oldest first; times ISO 8601 UTC or null;
 * state "active", "expired" or "revoked" at now_ms. Never the token or
 * its hash. */
keten_err keten_auth_token_list(keten_store *st, uint64_t now_ms, json_t **out) KETEN_MUST_CHECK;

/* Revoke the token with this id: KETEN_ERR_NOT_FOUND (no such id; an id
 * that is not 16 lowercase hex is KETEN_ERR_MALFORMED), KETEN_ERR_REVOKED
 * (revoked before: nothing changes). Sessions the token opened are not
 * ended here: call keten_auth_sessions_end_token(). */
keten_err keten_auth_token_revoke(
    keten_store *st, const char *id, uint64_t now_ms) KETEN_MUST_CHECK;

/* The caller of an Authorization header value ("Bearer ktn_..."; the scheme
 * in any case, one or more spaces): actor "token:NAME", the token's scopes,
 * via TCP, peer as given (NULL: "unknown"). KETEN_ERR_MALFORMED (not
 * Bearer, or not a token's shape), KETEN_ERR_NOT_FOUND (no such token),
 * KETEN_ERR_REVOKED, KETEN_ERR_EXPIRED (at or after expires_at). */
keten_err keten_auth_bearer(keten_store *st, const char *header_value, uint64_t now_ms,
    const struct sockaddr *peer, keten_auth_principal *out) KETEN_MUST_CHECK;

/* ---- proxy identity ----------------------------------------------------- */

typedef struct keten_auth_config {
    bool proxy; /* proxy-address and proxy-user-header are set */
    struct sockaddr_storage proxy_addr; /* AF_INET or AF_INET6, port ignored */
    char proxy_header[KETEN_AUTH_HEADER_NAME_MAX + 1]; /* "X-Remote-User" */
    unsigned proxy_scopes; /* proxy-scopes */
} keten_auth_config;

/* Read proxy-address, proxy-user-header and proxy-scopes from a node
 * configuration. KETEN_ERR_INVALID when only one of address and header is
 * set. */
keten_err keten_auth_config_from(const keten_config *cfg, keten_auth_config *out) KETEN_MUST_CHECK;

/* The person a proxy vouches for. header_value is the value of the
 * configured proxy-user-header in the request, NULL when absent.
 * KETEN_ERR_NOT_FOUND: no proxy configured, or no header (try the other
 * credentials). KETEN_ERR_PERMISSIONS: the header came from a peer that is
 * not proxy-address (refuse the request: 403). KETEN_ERR_INVALID: the
 * proxy sent a value that is not a user name (refuse: 403). On KETEN_OK:
 * actor "person:VALUE", proxy-scopes, via TCP. */
keten_err keten_auth_proxy(const keten_auth_config *cfg, const struct sockaddr *peer,
    const char *header_value, keten_auth_principal *out) KETEN_MUST_CHECK;

/* Is value a user name a proxy may send (1-128 characters of valid UTF-8,
 * no control characters, no spaces)? why: what is wrong. */
bool keten_auth_person_valid(const char *value, char *why, size_t why_size);

/* ---- sessions ----------------------------------------------------------- */

typedef struct keten_auth_sessions keten_auth_sessions;
typedef struct keten_auth_session keten_auth_session;

/* A set holding at most max sessions (1 to 65536); NULL without memory. */
keten_auth_sessions *keten_auth_sessions_new(size_t max);
void keten_auth_sessions_destroy(keten_auth_sessions **self_p);

/* Open a session for principal at now_ms: writes the cookie value and the
 * CSRF token (each KETEN_AUTH_B64_CHARS + NUL; the caller wipes the cookie
 * after sending it). A full set first drops expired sessions, then the
 * oldest one. KETEN_ERR_INVALID for a principal without scopes. */
keten_err keten_auth_sessions_create(keten_auth_sessions *self,
    const keten_auth_principal *principal, uint64_t now_ms,
    char cookie_out[static KETEN_AUTH_B64_CHARS + 1],
    char csrf_out[static KETEN_AUTH_B64_CHARS + 1]) KETEN_MUST_CHECK;

/* The session of a cookie value at now_ms, its idle time restarted.
 * KETEN_ERR_MALFORMED (not 43 base64url characters), KETEN_ERR_NOT_FOUND
 * (unknown), KETEN_ERR_EXPIRED (ended by time now: it is dropped),
 * KETEN_ERR_REVOKED (ended by keten_auth_sessions_end_token(): the detail
 * names the token's actor; said until its slot is taken again). */
keten_err keten_auth_sessions_find(keten_auth_sessions *self, const char *cookie, uint64_t now_ms,
    keten_auth_session **out) KETEN_MUST_CHECK;

/* Is the session of a cookie value still open at now_ms? The same answers
 * as keten_auth_sessions_find(), but its idle time is not restarted: for a
 * check that is not a use (an open event stream before its next write),
 * so that a page left open still ends after KETEN_SESSION_IDLE_MS. */
keten_err keten_auth_sessions_alive(
    keten_auth_sessions *self, const char *cookie, uint64_t now_ms) KETEN_MUST_CHECK;

/* The principal of a session. */
const keten_auth_principal *keten_auth_session_principal(const keten_auth_session *s);
/* When the session ends if unused (ms): the earliest of idle, absolute and
 * token expiry. */
uint64_t keten_auth_session_expires_at(const keten_auth_session *s);
/* {"actor","scopes":[...],"csrf_token","expires_at"} (the answer of POST
 * and GET /v1/session); NULL without memory. */
json_t *keten_auth_session_json(const keten_auth_session *s);

/* A POST or DELETE with the session's cookie: header is the X-CSRF-Token
 * value (NULL: absent), origin the Origin header (NULL: absent) and host
 * the request's Host header. KETEN_ERR_PERMISSIONS when the CSRF token is
 * missing or differs (sodium_memcmp), or an Origin is present and is not
 * http://HOST or https://HOST. */
keten_err keten_auth_sessions_check_csrf(const keten_auth_session *s, const char *header,
    const char *origin, const char *host) KETEN_MUST_CHECK;

/* End the session of a cookie value: KETEN_ERR_NOT_FOUND if none,
 * KETEN_ERR_REVOKED if its token's revocation ended it already. */
keten_err keten_auth_sessions_end(keten_auth_sessions *self, const char *cookie) KETEN_MUST_CHECK;
/* End every session a token opened (its token was revoked); returns how
 * many. Of each only the cookie's SHA-256 and the actor stay, for
 * keten_auth_sessions_find() to say why it ended. */
size_t keten_auth_sessions_end_token(keten_auth_sessions *self, const char *token_id);
/* Live sessions (expired ones still kept count until found or dropped). */
size_t keten_auth_sessions_count(const keten_auth_sessions *self);

#endif
