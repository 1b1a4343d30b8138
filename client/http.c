/* http - see http.h. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "accesslog.h"
#include "api.h"
#include "auth.h"
#include "events.h"
#include "idem.h"
#include "log.h"
#include "promhttp.h"
#include "util.h"

#define LISTEN_BACKLOG 64
#define ADDR_MAX 300
#define BODY_INITIAL 4096
#define WEB_FILE_MAX (4u << 20) /* bytes of one file of the web page */
#define WEB_NAME_MAX 128
#define SESSION_BODY_MAX 256 /* bytes of POST /v1/session's body */
#define COOKIE_NAME "keten_session"
#define COOKIE_HEADER_MAX 200

#define CSP                                                                                        \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

typedef enum via { VIA_UNIX, VIA_TCP } via;

/* How a caller showed who it is (what an event stream checks again). */
typedef enum by { BY_NONE, BY_LOCAL, BY_PROXY, BY_TOKEN, BY_SESSION } by;

typedef struct keten_http keten_http;
typedef struct stream stream;

/* One request on a connection, from its first call to its completion. */
typedef struct http_req {
    keten_http *http;
    via via;
    uint64_t ticket;
    uint8_t *body; /* may hold content: wiped before it is freed */
    size_t len, cap;
    bool too_large;
    bool started; /* handed to the API */
    bool suspended;
    bool ready; /* resp holds the later answer */
    keten_api_response resp;
    struct MHD_Connection *conn;
    struct http_req *next; /* the requests waiting for a later answer */
    keten_auth_principal who; /* the caller (for the access log: also when refused) */
    by by;
    char *cred; /* sodium_malloc: the Authorization value or the cookie (BY_TOKEN, BY_SESSION) */
    keten_auth_session *session; /* BY_SESSION, valid while the request is handled */
    char set_cookie[COOKIE_HEADER_MAX]; /* a Set-Cookie header to send; "" none */
} http_req;

typedef struct listener {
    struct MHD_Daemon *daemon;
    via via;
    keten_http *http;
} listener;

struct keten_http {
    keten_node *node;
    listener lis[KETEN_HTTP_LISTENERS];
    size_t n_lis;
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool sock_made;
    uint64_t next_ticket;
    http_req *waiting;
    keten_auth_config auth;
    keten_auth_sessions *sessions;
    keten_accesslog *alog;
    stream *streams;
    size_t n_streams;
    FILE *trace; /* test hook */
    /* A connection was resumed since the last keten_http_run: MHD sends its
     * answer only in the next MHD_run, so the loop must not wait. */
    bool resumed;
};

/* ---- identity: the one place that says who is calling -------------------- */

static void problem_answer(keten_api_response *resp, unsigned status, const char *slug,
    const char *title, int exit_code, const char *detail)
{
    memset(resp, 0, sizeof *resp);
    keten_api_problem(resp, status, slug, title, exit_code, detail);
}

static bool is_write(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

/* A copy of a credential in sodium_malloc memory (wiped when freed). */
static char *cred_dup(const char *text)
{
    size_t n = strlen(text);
    char *c = sodium_malloc(n + 1);
    if (c != NULL) {
        memcpy(c, text, n + 1);
    }
    return c;
}

static void cred_free(char **c)
{
    if (*c != NULL) {
        sodium_free(*c);
        *c = NULL;
    }
}

/* An Origin header is absent, or names this very host (http:// or
 * https:// followed by the Host header). */
static bool origin_ok(struct MHD_Connection *conn)
{
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (origin == NULL) {
        return true;
    }
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (host == NULL || host[0] == '\0') {
        return false;
    }
    const char *rest = strncmp(origin, "http://", 7) == 0 ? origin + 7
        : strncmp(origin, "https://", 8) == 0             ? origin + 8
                                                          : NULL;
    return rest != NULL && strcmp(rest, host) == 0;
}

static bool refuse(keten_api_response *resp, unsigned status, const char *detail)
{
    if (status == 401) {
        problem_answer(resp, 401, "unauthorized", "Credentials needed", 1, detail);
        resp->authenticate = true;
    } else {
        problem_answer(resp, 403, "forbidden", "Not allowed", 1, detail);
    }
    return false;
}

/* What a refused bearer token was, for the 401's detail ("certificate
 * revoked" is the library's word for a node's certificate, not a token). */
static const char *token_refusal(keten_err e)
{
    switch (e) {
    case KETEN_ERR_REVOKED:
        return "token revoked";
    case KETEN_ERR_EXPIRED:
        return "token expired";
    case KETEN_ERR_NOT_FOUND:
        return "unknown token";
    case KETEN_ERR_MALFORMED:
        return "not a keten token";
    default:
        return keten_err_str(e);
    }
}

/* Who is calling, and with which scopes: fills r->who and r->by. The Unix
 * socket is the node's own operator (uid from SO_PEERCRED). Over TCP: a
 * proxy's header (from proxy-address only: from anyone else 403), then an
 * Authorization: Bearer token (a bad one 401), then the keten_session
 * cookie (a POST or DELETE with it needs X-CSRF-Token, 403). A cross-site
 * Origin on a POST or DELETE is 403 whatever the credentials. Nobody known:
 * only /v1/ping, POST /v1/session and the web files are answered, the rest
 * 401. false: resp holds the refusal. */
static bool identify_caller(keten_http *h, http_req *r, struct MHD_Connection *conn,
    const char *method, const char *url, keten_api_response *resp)
{
    const union MHD_ConnectionInfo *ci
        = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *peer = ci != NULL ? ci->client_addr : NULL;
    if (r->via == VIA_UNIX) {
        const union MHD_ConnectionInfo *fi
            = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (fi == NULL || keten_auth_local_fd(fi->connect_fd, &r->who) != KETEN_OK) {
            keten_err_clear();
            return refuse(resp, 403, "the node cannot tell who is connected to its socket");
        }
        r->by = BY_LOCAL;
        return true;
    }
    keten_auth_anonymous(KETEN_VIA_TCP, peer, &r->who);
    bool api = strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/v1") == 0;
    bool open_session = strcmp(url, "/v1/session") == 0 && strcmp(method, "POST") == 0;
    if (h->auth.proxy) {
        const char *hv = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, h->auth.proxy_header);
        keten_auth_principal p;
        keten_err e = keten_auth_proxy(&h->auth, peer, hv, &p);
        if (e == KETEN_OK) {
            r->who = p;
            r->by = BY_PROXY;
        } else if (e != KETEN_ERR_NOT_FOUND) {
            char detail[300];
            snprintf(detail, sizeof detail, "%s: %s", keten_err_str(e), keten_err_detail());
            keten_err_clear();
            return refuse(resp, 403, detail);
        }
        keten_err_clear();
    }
    const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (authz != NULL) {
        keten_auth_principal p;
        keten_err e = keten_auth_bearer(h->node->store, authz, keten_now_ms(), peer, &p);
        if (e != KETEN_OK) {
            char detail[300];
            snprintf(detail, sizeof detail, "%s: %s", token_refusal(e), keten_err_detail());
            keten_err_clear();
            return refuse(resp, 401, detail);
        }
        r->who = p;
        r->by = BY_TOKEN;
        r->cred = cred_dup(authz);
        return true;
    }
    const char *cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE_NAME);
    if (cookie != NULL && !open_session) {
        keten_auth_session *sess = NULL;
        keten_err e = keten_auth_sessions_find(h->sessions, cookie, keten_now_ms(), &sess);
        char ended[300] = "";
        if (e == KETEN_ERR_REVOKED) { /* its token was revoked: say so, not "signed out" */
            snprintf(ended, sizeof ended, "%s", keten_err_detail());
        }
        keten_err_clear();
        if (e == KETEN_OK) {
            const keten_auth_principal *sp = keten_auth_session_principal(sess);
            if (is_write(method)) {
                const char *csrf
                    = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token");
                const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
                const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
                r->who = *sp;
                keten_auth_peer_text(peer, r->who.peer);
                if (keten_auth_sessions_check_csrf(sess, csrf, origin, host != NULL ? host : "")
                    != KETEN_OK) {
                    keten_err_clear();
                    return refuse(resp, 403,
                        "a POST or DELETE with the session cookie needs the header X-CSRF-Token "
                        "with the session's csrf_token (GET /v1/session gives it)");
                }
            }
            r->who = *sp;
            keten_auth_peer_text(peer, r->who.peer);
            r->by = BY_SESSION;
            r->session = sess;
            r->cred = cred_dup(cookie);
            return true;
        }
        if (r->by == BY_NONE && api && strcmp(url, "/v1/ping") != 0 && ended[0] != '\0') {
            char detail[400];
            snprintf(detail, sizeof detail, "%s: sign in again with POST /v1/session", ended);
            return refuse(resp, 401, detail);
        }
        if (r->by == BY_NONE && api && strcmp(url, "/v1/ping") != 0) {
            return refuse(resp, 401,
                "the web session has ended (signed out, or unused too long): sign in again "
                "with POST /v1/session");
        }
    }
    if (r->by == BY_PROXY && is_write(method) && !open_session) {
        return refuse(resp, 403,
            "a person the proxy names changes nothing without a web session: open one with "
            "POST /v1/session {} and send its X-CSRF-Token");
    }
    if (r->by == BY_NONE && api && strcmp(url, "/v1/ping") != 0 && !open_session) {
        return refuse(resp, 401,
            "this listener needs credentials: Authorization: Bearer TOKEN (a token from POST "
            "/v1/tokens on the node's Unix socket) or a web session");
    }
    return true;
}

/* identify_caller, and a cross-site Origin on a POST or DELETE under /v1/
 * refused (403) whatever the credentials: after the caller is known, so
 * that the access log names whose session or token another site tried to
 * use. */
static bool http_identify(keten_http *h, http_req *r, struct MHD_Connection *conn,
    const char *method, const char *url, keten_api_response *resp)
{
    bool api = strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/v1") == 0;
    bool cross_site = r->via != VIA_UNIX && api && is_write(method) && !origin_ok(conn);
    bool known = identify_caller(h, r, conn, method, url, resp);
    if (!cross_site) {
        return known;
    }
    keten_api_response_clear(resp);
    return refuse(resp, 403,
        "the Origin of this request is not this host: the API answers its own web page "
        "only (no cross-site requests)");
}

/* ---- answers ------------------------------------------------------------- */

#ifdef KETEN_TEST_HOOKS
typedef struct trace_query {
    json_t *obj;
} trace_query;

static enum MHD_Result trace_arg(
    void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    trace_query *q = cls;
    (void)json_object_set_new(q->obj, key, json_string(value != NULL ? value : ""));
    return MHD_YES;
}

static json_t *trace_body(const char *b, size_t n)
{
    if (b == NULL || n == 0) {
        return json_null();
    }
    json_t *v = json_loadb(b, n, JSON_DECODE_ANY, NULL);
    return v != NULL ? v : json_stringn(b, n);
}

static void trace_answer(keten_http *h, struct MHD_Connection *conn, const char *method,
    const char *url, const http_req *r, unsigned status, const keten_api_response *resp)
{
    if (h->trace == NULL) {
        return;
    }
    trace_query q = { json_object() };
    (void)MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, trace_arg, &q);
    const char *ua = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
    json_t *line = json_pack("{s:s, s:s, s:s, s:o, s:o, s:i, s:s, s:o}", "method", method, "path",
        url, "user_agent", ua != NULL ? ua : "", "query", q.obj, "request_body",
        trace_body(r != NULL ? (const char *)r->body : NULL, r != NULL ? r->len : 0), "status",
        (int)status, "content_type", resp->content_type != NULL ? resp->content_type : "",
        "response_body", trace_body(resp->body, resp->body_len));
    char *text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
    if (text != NULL) {
        fprintf(h->trace, "%s\n", text);
        fflush(h->trace);
    }
    free(text);
    json_decref(line);
}
#endif

static bool add_header(struct MHD_Response *m, const char *name, const char *value)
{
    return MHD_add_response_header(m, name, value) == MHD_YES;
}

/* The access log's line for an answer: every /v1/ request but a ping,
 * and every refusal (401, 403) anywhere. Only the action and object the
 * router names (never a query value, never content). */
static void access_line(keten_http *h, const http_req *r, const char *method, const char *url,
    unsigned status, const keten_api_response *resp)
{
    bool api = strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/v1") == 0;
    bool denied = status == 401 || status == 403;
    if (h->alog == NULL || r == NULL || (!api && !denied)) {
        return;
    }
    keten_api_response d;
    memset(&d, 0, sizeof d);
    if (resp->action[0] != '\0' && strcmp(resp->action, "request") != 0) {
        memcpy(d.action, resp->action, sizeof d.action);
        memcpy(d.object, resp->object, sizeof d.object);
    } else {
        keten_api_describe(method, url, &d);
    }
    if (strcmp(d.action, "ping") == 0 && !denied) {
        return;
    }
    const char *result = denied ? "denied" : status < 400 ? "ok" : "error";
    keten_accesslog_write(
        h->alog, &r->who, d.action, d.object[0] != '\0' ? d.object : NULL, result, (int)status);
}

/* MHD frees an answer's body with this: it may hold content. */
static void wipe_free(void *body)
{
    sodium_memzero(body, strlen(body));
    free(body);
}

/* The headers on every answer (and Cache-Control: no-store on /v1/). */
static bool add_security_headers(struct MHD_Response *m, const char *url)
{
    return add_header(m, "Content-Security-Policy", CSP)
        && add_header(m, "X-Content-Type-Options", "nosniff")
        && add_header(m, "Referrer-Policy", "no-referrer")
        && (strncmp(url, "/v1/", 4) != 0 || add_header(m, "Cache-Control", "no-store"));
}

/* Queue resp (MHD takes its body, wiped when freed) with the security headers. */
static enum MHD_Result send_answer(keten_http *h, struct MHD_Connection *conn, const char *method,
    const char *url, http_req *r, keten_api_response *resp)
{
    unsigned status = resp->status != 0 ? resp->status : 500;
#ifdef KETEN_TEST_HOOKS
    trace_answer(h, conn, method, url, r, status, resp);
#endif
    access_line(h, r, method, url, status, resp);
    struct MHD_Response *m = NULL;
    if (resp->body != NULL) {
        m = MHD_create_response_from_buffer_with_free_callback(
            resp->body_len, resp->body, wipe_free);
        if (m != NULL) {
            resp->body = NULL; /* MHD's now */
            resp->body_len = 0;
        }
    } else {
        m = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    keten_api_response_clear(resp);
    if (m == NULL) {
        return MHD_NO;
    }
    bool ok = add_security_headers(m, url)
        && (resp->content_type == NULL || add_header(m, "Content-Type", resp->content_type))
        && (resp->allow[0] == '\0' || add_header(m, "Allow", resp->allow))
        && (!resp->authenticate || add_header(m, "WWW-Authenticate", "Bearer realm=\"keten\""))
        && (r == NULL || r->set_cookie[0] == '\0' || add_header(m, "Set-Cookie", r->set_cookie));
    if (r != NULL && r->set_cookie[0] != '\0') {
        sodium_memzero(r->set_cookie, sizeof r->set_cookie); /* MHD keeps its own copy */
    }
    enum MHD_Result rc = ok ? MHD_queue_response(conn, status, m) : MHD_NO;
    MHD_destroy_response(m);
    return rc;
}

/* The API hands a later answer: resume the request's connection. */
static void on_answer(void *ctx, uint64_t ticket, keten_api_response *resp)
{
    keten_http *h = ctx;
    for (http_req **p = &h->waiting; ticket != 0 && *p != NULL; p = &(*p)->next) {
        http_req *r = *p;
        if (r->ticket != ticket) {
            continue;
        }
        *p = r->next;
        r->next = NULL;
        r->resp = *resp;
        r->ready = true;
        if (r->suspended) {
            r->suspended = false;
            MHD_resume_connection(r->conn);
            h->resumed = true;
        }
        return;
    }
    keten_api_response_clear(resp); /* its connection is gone */
}

static void unlink_waiting(keten_http *h, http_req *r)
{
    for (http_req **p = &h->waiting; *p != NULL; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            return;
        }
    }
}

/* ---- requests ------------------------------------------------------------ */

typedef struct query_list {
    keten_api_param items[KETEN_API_QUERY_MAX];
    size_t n;
    bool too_many;
} query_list;

static enum MHD_Result collect_arg(
    void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    query_list *q = cls;
    if (q->n == KETEN_API_QUERY_MAX) {
        q->too_many = true;
        return MHD_NO;
    }
    q->items[q->n].name = key;
    q->items[q->n].value = value != NULL ? value : "";
    q->n++;
    return MHD_YES;
}

static bool append_body(http_req *r, const char *data, size_t n)
{
    if (r->too_large || n > KETEN_API_REQUEST_MAX - r->len) {
        r->too_large = true;
        return true;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap == 0 ? BODY_INITIAL : r->cap;
        while (cap < r->len + n) {
            cap *= 2;
        }
        if (cap > KETEN_API_REQUEST_MAX) {
            cap = KETEN_API_REQUEST_MAX;
        }
        uint8_t *nb = malloc(cap);
        if (nb == NULL) {
            return false;
        }
        if (r->len > 0) {
            memcpy(nb, r->body, r->len);
            sodium_memzero(r->body, r->len);
        }
        free(r->body);
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return true;
}

/* ---- JSON answers of the routes served here -------------------------------- */

static void json_resp(keten_api_response *resp, unsigned status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        problem_answer(resp, 500, "internal", "The node failed", 1,
            "the node ran out of memory answering this request; try again");
        return;
    }
    resp->status = status;
    resp->content_type = "application/json; charset=utf-8";
    resp->body = text;
    resp->body_len = strlen(text);
}

static bool content_is_json(struct MHD_Connection *conn)
{
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0) {
        return false;
    }
    return ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ';
}

static void method_not_allowed(keten_api_response *resp, const char *allow)
{
    char detail[120];
    snprintf(detail, sizeof detail, "this path is answered to %s only", allow);
    problem_answer(resp, 405, "method-not-allowed", "Method not allowed", 2, detail);
    snprintf(resp->allow, sizeof resp->allow, "%s", allow);
}

static void field_refusal(keten_api_response *resp, const char *field, const char *problem,
    const char *allowed, const char *detail)
{
    problem_answer(resp, 400, "invalid-request", "Invalid request", 2, detail);
    json_t *p = resp->body != NULL ? json_loads(resp->body, 0, NULL) : NULL;
    json_t *errs
        = json_pack("[{s:s, s:s, s:s}]", "field", field, "problem", problem, "allowed", allowed);
    if (p != NULL && errs != NULL && json_object_set_new(p, "errors", errs) == 0) {
        errs = NULL;
        keten_api_response_clear(resp);
        json_resp(resp, 400, p);
        resp->content_type = "application/problem+json";
        p = NULL;
    }
    json_decref(errs);
    json_decref(p);
}

/* ---- web sessions (the page on api-listen) --------------------------------- */

/* POST /v1/session {"token":T} or {} (a person the proxy names). */
static void session_open(
    keten_http *h, http_req *r, struct MHD_Connection *conn, keten_api_response *resp)
{
    if (!content_is_json(conn)) {
        problem_answer(resp, 415, "unsupported-media-type", "Not JSON", 2,
            "the body must be JSON: send Content-Type: application/json");
        return;
    }
    if (r->len == 0 || r->len > SESSION_BODY_MAX) {
        field_refusal(resp, "", "missing or too long", "{\"token\":TOKEN} or {}",
            "send {\"token\":TOKEN} (an application token) or {} behind the configured proxy");
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb((const char *)r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
    const char *token = NULL;
    const char *bad = NULL;
    if (body == NULL || !json_is_object(body)) {
        bad = "";
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(body, k, v)
        {
            if (strcmp(k, "token") != 0) {
                bad = "/";
            } else if (!json_is_string(v) || json_string_length(v) > KETEN_AUTH_TOKEN_CHARS) {
                bad = "/token";
            } else {
                token = json_string_value(v);
            }
        }
    }
    keten_auth_principal p;
    keten_err e = KETEN_OK;
    if (bad != NULL) {
        field_refusal(resp, bad[0] == '/' && bad[1] == '\0' ? "/" : bad, "not allowed here",
            "token (a string: ktn_ and 43 characters)",
            "send {\"token\":TOKEN} (an application token) or {} behind the configured proxy; "
            "no other field");
        goto out;
    }
    if (token != NULL) {
        char *hv = sodium_malloc(8 + KETEN_AUTH_TOKEN_CHARS + 1);
        if (hv == NULL) {
            e = KETEN_ERR_NOMEM;
        } else {
            snprintf(hv, 8 + KETEN_AUTH_TOKEN_CHARS + 1, "Bearer %s", token);
            e = keten_auth_bearer(h->node->store, hv, keten_now_ms(), NULL, &p);
            sodium_free(hv);
        }
        if (e != KETEN_OK) {
            char detail[300];
            snprintf(detail, sizeof detail, "%s: %s; ask the node's operator for a token",
                keten_err_str(e), keten_err_detail());
            keten_err_clear();
            (void)refuse(resp, 401, detail);
            goto out;
        }
        snprintf(p.peer, sizeof p.peer, "%s", r->who.peer);
    } else if (r->by == BY_PROXY) {
        p = r->who;
    } else {
        (void)refuse(resp, 401,
            "no credentials: send {\"token\":TOKEN} with an application token, or sign in "
            "through the configured proxy");
        goto out;
    }
    char *cookie = sodium_malloc(KETEN_AUTH_B64_CHARS + 1);
    char csrf[KETEN_AUTH_B64_CHARS + 1];
    uint64_t now = keten_now_ms();
    keten_auth_session *sess = NULL;
    e = cookie == NULL ? KETEN_ERR_NOMEM
                       : keten_auth_sessions_create(h->sessions, &p, now, cookie, csrf);
    if (e == KETEN_OK) {
        e = keten_auth_sessions_find(h->sessions, cookie, now, &sess);
    }
    if (e == KETEN_OK) {
        json_resp(resp, 201, keten_auth_session_json(sess));
        snprintf(r->set_cookie, sizeof r->set_cookie,
            COOKIE_NAME "=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%llu%s", cookie,
            (unsigned long long)(KETEN_SESSION_MAX_MS / 1000), h->auth.proxy ? "; Secure" : "");
        r->who = p;
    } else {
        char detail[300];
        snprintf(detail, sizeof detail, "%s: %s", keten_err_str(e), keten_err_detail());
        keten_err_clear();
        problem_answer(resp, 500, "internal", "The node failed", 1, detail);
    }
    sodium_memzero(csrf, sizeof csrf);
    if (cookie != NULL) {
        sodium_free(cookie);
    }
out:
    if (body != NULL) {
        json_t *v = json_object_get(body, "token");
        if (json_is_string(v)) {
            sodium_memzero((void *)(uintptr_t)json_string_value(v), json_string_length(v));
        }
        json_decref(body);
    }
}

static void session_route(keten_http *h, http_req *r, struct MHD_Connection *conn,
    const char *method, keten_api_response *resp)
{
    bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0,
         del = strcmp(method, "DELETE") == 0;
    snprintf(resp->action, sizeof resp->action, "%s",
        post      ? "session-open"
            : del ? "session-end"
                  : "session");
    snprintf(resp->object, sizeof resp->object, "session");
    char action[KETEN_API_ACTION_MAX], object[KETEN_API_OBJECT_MAX];
    memcpy(action, resp->action, sizeof action);
    memcpy(object, resp->object, sizeof object);
    if (!post && !get && !del) {
        method_not_allowed(resp, "GET, POST, DELETE");
    } else if (r->via == VIA_UNIX) {
        (void)refuse(resp, 403,
            "web sessions are for the web page on the api-listen address; on the node's Unix "
            "socket the caller is the node's operator already");
    } else if (post) {
        session_open(h, r, conn, resp);
    } else if (r->by != BY_SESSION) {
        (void)refuse(resp, 401, "no web session: sign in with POST /v1/session");
    } else if (get) {
        json_resp(resp, 200, keten_auth_session_json(r->session));
    } else {
        if (keten_auth_sessions_end(h->sessions, r->cred) != KETEN_OK) {
            keten_err_clear();
        }
        r->session = NULL;
        resp->status = 204;
        snprintf(r->set_cookie, sizeof r->set_cookie,
            COOKIE_NAME "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0%s",
            h->auth.proxy ? "; Secure" : "");
    }
    memcpy(resp->action, action, sizeof action);
    memcpy(resp->object, object, sizeof object);
}

/* ---- the web page's files (TCP only) --------------------------------------- */

static const char *web_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".svg", "image/svg+xml" },
        { ".json", "application/json; charset=utf-8" },
        { ".png", "image/png" },
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(dot, types[i].ext) == 0) {
            return types[i].type;
        }
    }
    return NULL;
}

/* A flat file name of the web page: [A-Za-z0-9][A-Za-z0-9._-]*, no "..". */
static bool web_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > WEB_NAME_MAX || strstr(name, "..") != NULL
        || !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')
            || (name[0] >= '0' && name[0] <= '9'))) {
        return false;
    }
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Read a regular file of at most WEB_FILE_MAX bytes (not through a link).
 * Opened without blocking: a named pipe there would otherwise wait for a
 * writer, and the node's one thread with it; it is then refused as not a
 * regular file. */
static char *web_read(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0
        && (uint64_t)st.st_size <= WEB_FILE_MAX) {
        size_t size = (size_t)st.st_size;
        buf = malloc(size + 1);
        size_t got = 0;
        while (buf != NULL && got < size) {
            ssize_t n = read(fd, buf + got, size - got);
            if (n <= 0) {
                free(buf);
                buf = NULL;
            } else {
                got += (size_t)n;
            }
        }
        if (buf != NULL) {
            buf[size] = '\0';
            *len = size;
        }
    }
    close(fd);
    return buf;
}

/* The folder the web page's files are read from. */
static const char *web_root(const keten_node *node)
{
    return node->opts.web_root != NULL ? node->opts.web_root : KETEN_WEB_ROOT;
}

/* At start, with api-listen: say when the web page's files are not in the
 * web root (GET / would answer 404 without a word in the log). The API is
 * served all the same. */
static void web_root_check(const keten_node *node)
{
    const char *root = web_root(node);
    char path[PATH_MAX];
    struct stat st;
    bool has_index = snprintf(path, sizeof path, "%s/index.html", root) < (int)sizeof path
        && stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
    bool has_static = snprintf(path, sizeof path, "%s/static", root) < (int)sizeof path
        && stat(path, &st) == 0 && S_ISDIR(st.st_mode) && access(path, R_OK | X_OK) == 0;
    if (has_index && has_static) {
        return;
    }
    bool folder = stat(root, &st) == 0 && S_ISDIR(st.st_mode);
    KETEN_LOG(KETEN_LOG_WARNING,
        "the web page's files are missing: GET / answers 404; the API is served",
        "web_root=%s missing=\"%s%s%s\" folder=%s action=\"install keten's web files there, or "
        "set web-root (--web-root) to the folder that holds index.html and static/\"",
        root, has_index ? "" : "index.html", has_index || has_static ? "" : " ",
        has_static ? "" : "static/", folder ? "exists" : "missing");
}

static void web_route(
    keten_http *h, http_req *r, const char *method, const char *url, keten_api_response *resp)
{
    const char *root = web_root(h->node);
    char rel[WEB_NAME_MAX + 16] = "";
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        snprintf(rel, sizeof rel, "index.html");
    } else if (strncmp(url, "/static/", 8) == 0 && web_name_ok(url + 8)) {
        snprintf(rel, sizeof rel, "static/%s", url + 8);
    }
    const char *type = rel[0] != '\0' ? web_type(rel) : NULL;
    /* HEAD as GET: libmicrohttpd sends the headers (Content-Length
     * included) and no body */
    if (r->via == VIA_TCP && type != NULL && strcmp(method, "GET") != 0
        && strcmp(method, "HEAD") != 0) {
        method_not_allowed(resp, "GET, HEAD");
        return;
    }
    char path[PATH_MAX];
    size_t len = 0;
    char *body = NULL;
    if (r->via == VIA_TCP && type != NULL && root != NULL
        && snprintf(path, sizeof path, "%s/%s", root, rel) < (int)sizeof path) {
        body = web_read(path, &len);
    }
    if (body == NULL && r->via == VIA_TCP && strcmp(rel, "index.html") == 0) {
        problem_answer(resp, 404, "not-found", "Not found", 2,
            "the web page's files are not installed on this node; the API is served under "
            "/v1/ (the node's log names the folder it looked in)");
        return;
    }
    if (body == NULL) {
        problem_answer(resp, 404, "not-found", "Not found", 2,
            "no such page: the web page is GET / and its files GET /static/NAME, on the "
            "api-listen address");
        return;
    }
    resp->status = 200;
    resp->content_type = type;
    resp->body = body;
    resp->body_len = len;
}

/* ---- the event stream (GET /v1/events) ------------------------------------- */

struct stream {
    keten_http *h;
    struct MHD_Connection *conn;
    stream *next;
    uint64_t pos; /* the last event id sent (or the starting point) */
    by by;
    char *cred; /* the credential checked again before each write (sodium_malloc) */
    char *buf; /* what is to be written: event ids, types and headers, never content */
    size_t len, off, cap;
    uint64_t last_write; /* mono ms */
    bool suspended;
    bool ended;
};

static bool stream_append(stream *st, const char *text, size_t n)
{
    if (st->len + n > st->cap) {
        size_t cap = st->cap == 0 ? 4096 : st->cap;
        while (cap < st->len + n) {
            cap *= 2;
        }
        char *nb = realloc(st->buf, cap);
        if (nb == NULL) {
            return false;
        }
        st->buf = nb;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, text, n);
    st->len += n;
    return true;
}

static bool stream_append_event(stream *st, const json_t *ev)
{
    char *text = NULL;
    size_t n = 0;
    if (keten_events_format_sse(ev, &text, &n) != KETEN_OK) {
        keten_err_clear();
        return false;
    }
    bool ok = stream_append(st, text, n);
    free(text);
    return ok;
}

/* Does the caller that opened the stream still hold the scope read? A
 * revoked or expired token, or a session that ended, ends the stream. */
static bool stream_still_allowed(stream *st)
{
    keten_http *h = st->h;
    uint64_t now = keten_now_ms();
    keten_err e = KETEN_OK;
    if (st->by == BY_TOKEN) {
        keten_auth_principal p;
        e = keten_auth_bearer(h->node->store, st->cred, now, NULL, &p);
        if (e == KETEN_OK && (p.scopes & KETEN_SCOPE_READ) == 0) {
            e = KETEN_ERR_PERMISSIONS;
        }
    } else if (st->by == BY_SESSION) {
        e = keten_auth_sessions_alive(
            h->sessions, st->cred, now); /* not a use: idle time runs on */
    }
    keten_err_clear();
    return e == KETEN_OK;
}

/* Fill the buffer: a reset when what follows pos is no longer kept, the
 * events after pos (a chunk), or a keep-alive when one is due. */
static void stream_fill(stream *st)
{
    keten_node *node = st->h->node;
    json_t *evs = NULL;
    uint64_t oldest = 0, last = 0;
    keten_err e = keten_events_read(node, st->pos, 100, &evs, &oldest, &last);
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "event stream: cannot read the event log", "error=\"%s\"",
            keten_err_detail());
        keten_err_clear();
    } else if (keten_events_need_reset(st->pos, oldest, last)) {
        json_t *reset = keten_events_reset_json(oldest, last);
        if (reset != NULL && stream_append_event(st, reset)) {
            st->pos = last;
        }
        json_decref(reset);
    } else {
        size_t i;
        json_t *ev;
        json_array_foreach(evs, i, ev)
        {
            json_int_t id = json_integer_value(json_object_get(ev, "id"));
            if (!stream_append_event(st, ev)) {
                break;
            }
            st->pos = (uint64_t)id;
        }
    }
    json_decref(evs);
    if (st->len == 0 && keten_mono_ms() - st->last_write >= KETEN_HTTP_KEEPALIVE_MS) {
        static const char ka[] = ": keep-alive\n\n";
        (void)stream_append(st, ka, sizeof ka - 1);
    }
    if (st->len > 0 && !stream_still_allowed(st)) {
        st->len = 0;
        st->ended = true;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream *st = cls;
    if (st->off == st->len) {
        st->off = st->len = 0;
        if (!st->ended) {
            stream_fill(st);
        }
        if (st->ended) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (st->len == 0) { /* nothing yet: wait for an event or the keep-alive */
            st->suspended = true;
            MHD_suspend_connection(st->conn);
            return 0;
        }
    }
    size_t n = st->len - st->off < max ? st->len - st->off : max;
    memcpy(buf, st->buf + st->off, n);
    st->off += n;
    st->last_write = keten_mono_ms();
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream *st = cls;
    keten_http *h = st->h;
    for (stream **p = &h->streams; *p != NULL; p = &(*p)->next) {
        if (*p == st) {
            *p = st->next;
            h->n_streams--;
            break;
        }
    }
    cred_free(&st->cred);
    free(st->buf);
    free(st);
}

/* Has the client of a suspended stream gone? libmicrohttpd does not watch
 * a suspended connection, so the stream would hold its place until its
 * next keep-alive: a peek at the socket tells (0: closed by the peer). */
static bool stream_peer_gone(const stream *st)
{
    const union MHD_ConnectionInfo *fi
        = MHD_get_connection_info(st->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (fi == NULL) {
        return false;
    }
    char c;
    ssize_t n = recv(fi->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Wake the streams: new events were committed (all), a keep-alive is due,
 * the client went away, or the server stops. */
static void streams_wake(keten_http *h, bool all)
{
    uint64_t now = keten_mono_ms();
    for (stream *st = h->streams; st != NULL; st = st->next) {
        if (st->suspended && !all && !st->ended && stream_peer_gone(st)) {
            st->ended = true;
        }
        if (st->suspended
            && (all || st->ended || now - st->last_write >= KETEN_HTTP_KEEPALIVE_MS)) {
            st->suspended = false;
            MHD_resume_connection(st->conn);
            h->resumed = true;
        }
    }
}

static void on_events(void *ctx, uint64_t newest_seq)
{
    (void)newest_seq;
    streams_wake(ctx, true);
}

/* A Last-Event-ID or after: 1 to 20 digits, at most UINT64_MAX. */
static bool parse_event_id(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 20 || strspn(s, "0123456789") != n) {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE) {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

static enum MHD_Result stream_arg(
    void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    const char **bad = cls;
    if (strcmp(key, "after") != 0 && *bad == NULL) {
        *bad = key;
    }
    return MHD_YES;
}

static enum MHD_Result events_route(keten_http *h, http_req *r, struct MHD_Connection *conn,
    const char *method, const char *url, keten_api_response *resp)
{
    snprintf(resp->action, sizeof resp->action, "events");
    snprintf(resp->object, sizeof resp->object, "events");
    const char *bad = NULL;
    (void)MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, stream_arg, &bad);
    const char *hdr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *after = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "after");
    const char *given = hdr != NULL ? hdr : after;
    uint64_t pos = 0;
    if (strcmp(method, "GET") != 0) {
        method_not_allowed(resp, "GET");
    } else if (r->body != NULL) {
        problem_answer(
            resp, 400, "invalid-request", "Invalid request", 2, "this request takes no body");
    } else if ((r->who.scopes & KETEN_SCOPE_READ) == 0) {
        char detail[200];
        snprintf(detail, sizeof detail,
            "GET /v1/events needs the scope read, which %.140s does not have", r->who.actor);
        problem_answer(resp, 403, "forbidden", "Scope missing", 1, detail);
    } else if (bad != NULL) {
        char field[80];
        snprintf(field, sizeof field, "?%.64s", bad);
        for (char *c = field; *c != '\0'; c++) {
            *c = (*c >= 0x20 && *c < 0x7f) ? *c : '?';
        }
        field_refusal(resp, field, "unknown query parameter", "after",
            "GET /v1/events takes only ?after=ID (or the Last-Event-ID header)");
    } else if (given != NULL && !parse_event_id(given, &pos)) {
        field_refusal(resp, hdr != NULL ? "Last-Event-ID" : "?after", "not an event id",
            "1 to 20 digits, at most 18446744073709551615",
            "an event id is the number after \"id:\" of an event this node sent");
    } else if (h->n_streams >= KETEN_HTTP_STREAMS) {
        char detail[160];
        snprintf(detail, sizeof detail,
            "this node serves at most %u event streams at once; close one or try again later",
            (unsigned)KETEN_HTTP_STREAMS);
        problem_answer(resp, 503, "busy", "Too many event streams", 1, detail);
    } else if (given == NULL) { /* live only: from the newest */
        json_t *evs = NULL;
        uint64_t oldest = 0;
        if (keten_events_read(h->node, UINT64_MAX - 1, 1, &evs, &oldest, &pos) != KETEN_OK) {
            char detail[300];
            snprintf(detail, sizeof detail, "the event log cannot be read: %s", keten_err_detail());
            keten_err_clear();
            problem_answer(resp, 500, "store-failed", "The node's store failed", 1, detail);
        }
        json_decref(evs);
    }
    if (resp->status != 0) {
        return send_answer(h, conn, method, url, r, resp);
    }
    stream *st = calloc(1, sizeof *st);
    struct MHD_Response *m = NULL;
    if (st != NULL) {
        st->h = h;
        st->conn = conn;
        st->pos = pos;
        st->by = r->by;
        st->cred = r->cred != NULL ? cred_dup(r->cred) : NULL;
        st->last_write = keten_mono_ms();
        m = (r->cred == NULL || st->cred != NULL) ? MHD_create_response_from_callback(
                MHD_SIZE_UNKNOWN, 8192, stream_read, st, stream_free)
                                                  : NULL;
        if (m == NULL) {
            cred_free(&st->cred);
            free(st);
        } else {
            st->next = h->streams;
            h->streams = st;
            h->n_streams++;
        }
    }
    if (m == NULL) {
        problem_answer(resp, 500, "internal", "The node failed", 1,
            "the node ran out of memory opening the event stream; try again");
        return send_answer(h, conn, method, url, r, resp);
    }
    resp->status = 200;
    resp->content_type = "text/event-stream";
#ifdef KETEN_TEST_HOOKS
    trace_answer(h, conn, method, url, r, 200, resp);
#endif
    access_line(h, r, method, url, 200, resp);
    bool ok = add_security_headers(m, url) && add_header(m, "Content-Type", "text/event-stream")
        && add_header(m, "X-Accel-Buffering", "no");
    enum MHD_Result rc = ok ? MHD_queue_response(conn, 200, m) : MHD_NO;
    MHD_destroy_response(m);
    return rc;
}

/* How many times a request header came (MHD_get_connection_values). */
typedef struct header_count {
    const char *name;
    unsigned n;
} header_count;

static enum MHD_Result count_header(
    void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    header_count *hc = cls;
    if (key != NULL && strcasecmp(key, hc->name) == 0) {
        hc->n++;
    }
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data, size_t *upload_data_size,
    void **con_cls)
{
    (void)version;
    listener *l = cls;
    keten_http *h = l->http;
    http_req *r = *con_cls;
    if (r == NULL) {
        r = calloc(1, sizeof *r);
        if (r == NULL) {
            return MHD_NO;
        }
        r->http = h;
        r->via = l->via;
        r->conn = conn;
        const union MHD_ConnectionInfo *ci
            = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        keten_auth_anonymous(l->via == VIA_UNIX ? KETEN_VIA_UNIX : KETEN_VIA_TCP,
            l->via == VIA_TCP && ci != NULL ? ci->client_addr : NULL, &r->who);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > KETEN_API_REQUEST_MAX) {
            r->too_large = true; /* answered once the body is read (and dropped) */
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        bool ok = append_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (r->ready) {
        r->ready = false;
        return send_answer(h, conn, method, url, r, &r->resp);
    }
    if (r->started) {
        return MHD_YES; /* resumed without an answer: wait on */
    }
    r->started = true;
    keten_api_response resp;
    memset(&resp, 0, sizeof resp);
    if (r->too_large) {
        /* The body was dropped unread; the headers still say who sent it,
         * so that the access log names the caller: checked as for any
         * request, the answer 413 whatever they say (a refused credential
         * leaves the caller anonymous). */
        keten_auth_principal anonymous = r->who;
        if (!http_identify(h, r, conn, method, url, &resp)) {
            r->who = anonymous;
        }
        keten_api_response_clear(&resp);
        memset(&resp, 0, sizeof resp);
        keten_err_clear();
        char detail[160];
        snprintf(detail, sizeof detail, "the request body is larger than %u bytes",
            (unsigned)KETEN_API_REQUEST_MAX);
        problem_answer(&resp, 413, "too-large", "Request body too large", 2, detail);
        return send_answer(h, conn, method, url, r, &resp);
    }
    if (!http_identify(h, r, conn, method, url, &resp)) {
        return send_answer(h, conn, method, url, r, &resp);
    }
    if (strcmp(url, "/v1/session") == 0) {
        session_route(h, r, conn, method, &resp);
        return send_answer(h, conn, method, url, r, &resp);
    }
    if (strcmp(url, "/v1/events") == 0) {
        return events_route(h, r, conn, method, url, &resp);
    }
    if (strncmp(url, "/v1/", 4) != 0 && strcmp(url, "/v1") != 0) {
        web_route(h, r, method, url, &resp);
        return send_answer(h, conn, method, url, r, &resp);
    }
    query_list q;
    memset(&q, 0, sizeof q);
    (void)MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
    if (q.too_many) {
        char detail[120];
        snprintf(detail, sizeof detail, "more than %d query parameters", KETEN_API_QUERY_MAX);
        problem_answer(&resp, 400, "invalid-request", "Invalid request", 2, detail);
        return send_answer(h, conn, method, url, r, &resp);
    }
    r->ticket = ++h->next_ticket;
    /* Only a request that carries an Idempotency-Key needs its count and
     * the caller the key belongs to. */
    const char *idem_key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, KETEN_IDEM_HEADER);
    header_count idem_count = { KETEN_IDEM_HEADER, 0 };
    char caller[KETEN_IDEM_CALLER_MAX + 1];
    bool has_caller = false;
    if (idem_key != NULL) {
        (void)MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &idem_count);
        has_caller = keten_idem_caller(
                         r->who.token_id, r->who.actor, r->via == VIA_UNIX, r->who.peer, caller)
            == KETEN_OK;
        keten_err_clear();
    }
    keten_api_request req = {
        .method = method,
        .path = url,
        .query = q.items,
        .n_query = q.n,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
        .body = r->body,
        .body_len = r->len,
        .actor = r->who.actor,
        .scopes = r->who.scopes,
        .local = r->via == VIA_UNIX,
        .peer = r->who.peer,
        .ticket = r->ticket,
        .idempotency_key = idem_key,
        .idempotency_key_twice = idem_count.n > 1,
        .caller = has_caller ? caller : NULL,
    };
    /* Registered first: an answer may come before the handler returns. */
    r->next = h->waiting;
    h->waiting = r;
    if (keten_api_handle(h->node, &req, &resp) == KETEN_API_ANSWERED) {
        unlink_waiting(h, r);
        return send_answer(h, conn, method, url, r, &resp);
    }
    if (r->ready) {
        r->ready = false;
        return send_answer(h, conn, method, url, r, &r->resp);
    }
    r->suspended = true;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

static void completed(
    void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    listener *l = cls;
    http_req *r = *con_cls;
    if (r == NULL) {
        return;
    }
    unlink_waiting(l->http, r);
    if (r->ticket != 0 && l->http->node->api != NULL) {
        keten_api_cancel(l->http->node->api, r->ticket);
    }
    keten_api_response_clear(&r->resp);
    cred_free(&r->cred);
    if (r->body != NULL) {
        sodium_memzero(r->body, r->cap);
        free(r->body);
    }
    free(r);
    *con_cls = NULL;
}

/* ---- listeners ----------------------------------------------------------- */

static keten_err start(keten_http *h, via v, int fd, const char *what)
{
    listener *l = &h->lis[h->n_lis];
    l->via = v;
    l->http = h;
    /* libmicrohttpd's own messages go through keten's log, not to stderr (the
     * logger first: libmicrohttpd uses its own for the options before it). */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    l->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, l, MHD_OPTION_EXTERNAL_LOGGER,
        keten_promhttp_mhd_log, (void *)"api", MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, KETEN_HTTP_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        KETEN_HTTP_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, completed, l, MHD_OPTION_END);
    if (l->daemon == NULL) {
        close(fd);
        return keten_err_set(KETEN_ERR_IO, "cannot serve the HTTP API on %s", what);
    }
    h->n_lis++;
    return KETEN_OK;
}

static keten_err open_unix(keten_http *h, const char *home)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (snprintf(h->sock_path, sizeof h->sock_path, "%s/%s", home, KETEN_NODE_API_SOCK)
        >= (int)sizeof h->sock_path) {
        return keten_err_set(KETEN_ERR_INVALID,
            "the API socket path %s/%s is too long for a local socket; use a shorter --home", home,
            KETEN_NODE_API_SOCK);
    }
    memcpy(sa.sun_path, h->sock_path, strlen(h->sock_path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return keten_err_set(KETEN_ERR_IO, "API socket: %s", strerror(errno));
    }
    (void)unlink(h->sock_path); /* a stale socket of a daemon that died (node.lock is held) */
    mode_t old = umask(077);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    umask(old);
    if (rc != 0) {
        close(fd);
        return keten_err_set(
            KETEN_ERR_IO, "cannot bind the local API on %s: %s", h->sock_path, strerror(err));
    }
    h->sock_made = true;
    if (chmod(h->sock_path, 0600) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        err = errno;
        close(fd);
        return keten_err_set(KETEN_ERR_IO, "local API %s: %s", h->sock_path, strerror(err));
    }
    return start(h, VIA_UNIX, fd, h->sock_path);
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)
            || (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
    }
    return false;
}

/* Resolve api-listen and refuse an address that is not loopback. On
 * success *ai_out is the getaddrinfo() list (freeaddrinfo it). */
static keten_err resolve_listen(const char *addr, struct addrinfo **ai_out)
{
    *ai_out = NULL;
    char host[ADDR_MAX];
    const char *colon = strrchr(addr, ':');
    if (strlen(addr) >= ADDR_MAX || colon == NULL || colon[1] == '\0'
        || (size_t)(colon - addr) >= sizeof host) {
        return keten_err_set(KETEN_ERR_INVALID,
            "api-listen %s: expected HOST:PORT on loopback, e.g. 127.0.0.1:7260", addr);
    }
    size_t hlen = (size_t)(colon - addr);
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "api-listen %s: %s", addr, gai_strerror(rc));
    }
    for (const struct addrinfo *p = ai; p != NULL; p = p->ai_next) {
        if (!is_loopback(p->ai_addr)) {
            freeaddrinfo(ai);
            return keten_err_set(KETEN_ERR_INVALID,
                "api-listen %s is not a loopback address: the node serves its API in plain HTTP "
                "on 127.0.0.1, ::1 or localhost only; to reach it from elsewhere put a TLS "
                "reverse proxy on the node's host and set api-listen to a loopback address",
                addr);
        }
    }
    *ai_out = ai;
    return KETEN_OK;
}

keten_err keten_http_check_listen(const char *addr)
{
    struct addrinfo *ai = NULL;
    keten_err e = resolve_listen(addr, &ai);
    if (ai != NULL) {
        freeaddrinfo(ai);
    }
    return e;
}

static keten_err open_tcp(keten_http *h, const char *addr)
{
    struct addrinfo *ai = NULL;
    keten_err e = resolve_listen(addr, &ai);
    int fd = -1;
    if (e == KETEN_OK) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
            || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
            e = keten_err_set(KETEN_ERR_IO,
                "cannot serve the API on %s: %s; pick another api-listen address", addr,
                strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            fd = -1;
        }
    }
    if (ai != NULL) {
        freeaddrinfo(ai);
    }
    if (e != KETEN_OK) {
        return e;
    }
    e = start(h, VIA_TCP, fd, addr);
    if (e == KETEN_OK) {
        KETEN_LOG(KETEN_LOG_NOTICE, "HTTP API listening", "addr=%s", addr);
    }
    return e;
}

keten_err keten_http_open(keten_node *node, keten_http **out)
{
    *out = NULL;
    keten_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return KETEN_ERR_NOMEM;
    }
    h->node = node;
    keten_err e = KETEN_OK;
    if (node->opts.config != NULL) {
        e = keten_auth_config_from(node->opts.config, &h->auth);
    }
    h->sessions = e == KETEN_OK ? keten_auth_sessions_new(KETEN_SESSIONS_DEFAULT_MAX) : NULL;
    if (e == KETEN_OK && h->sessions == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    if (e == KETEN_OK) {
        e = keten_accesslog_open(node->opts.home, node->opts.access_log, &h->alog);
    }
    if (e == KETEN_OK) {
        e = keten_events_set_listener(node, on_events, h);
    }
    if (e == KETEN_OK) {
        e = open_unix(h, node->opts.home);
    }
    if (e == KETEN_OK && node->opts.api_listen != NULL) {
        e = open_tcp(h, node->opts.api_listen);
        if (e == KETEN_OK) {
            web_root_check(node);
        }
    }
#ifdef KETEN_TEST_HOOKS
    const char *trace = getenv("KETEN_NODE_TEST_API_TRACE");
    if (e == KETEN_OK && trace != NULL && trace[0] != '\0') {
        int fd = open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        h->trace = fd >= 0 ? fdopen(fd, "a") : NULL;
        if (h->trace == NULL) {
            if (fd >= 0) {
                close(fd);
            }
            e = keten_err_set(
                KETEN_ERR_IO, "KETEN_NODE_TEST_API_TRACE %s: %s", trace, strerror(errno));
        }
    }
#endif
    if (e != KETEN_OK) {
        keten_http_destroy(&h);
        return e;
    }
    keten_api_set_answer(node->api, on_answer, h);
    node->sessions = h->sessions;
    *out = h;
    return KETEN_OK;
}

void keten_http_destroy(keten_http **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_http *h = *self_p;
    if (h->node->api != NULL) {
        keten_api_set_answer(h->node->api, NULL, NULL);
    }
    keten_events_clear_listener(h->node);
    h->node->sessions = NULL;
    for (stream *st = h->streams; st != NULL; st = st->next) {
        st->ended = true;
    }
    streams_wake(h, true);
    for (size_t i = 0; i < h->n_lis; i++) {
        /* Suspended connections must be resumed before the daemon stops. */
        for (http_req *r = h->waiting; r != NULL; r = r->next) {
            if (r->suspended) {
                r->suspended = false;
                MHD_resume_connection(r->conn);
            }
        }
        MHD_stop_daemon(h->lis[i].daemon);
    }
    if (h->sock_made) {
        (void)unlink(h->sock_path);
    }
    if (h->trace != NULL) {
        fclose(h->trace);
    }
    keten_auth_sessions_destroy(&h->sessions);
    keten_accesslog_destroy(&h->alog);
    free(h);
    *self_p = NULL;
}

size_t keten_http_fds(const keten_http *self, int fds[static KETEN_HTTP_LISTENERS])
{
    size_t n = 0;
    for (size_t i = 0; i < self->n_lis; i++) {
        const union MHD_DaemonInfo *info
            = MHD_get_daemon_info(self->lis[i].daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (info != NULL) {
            fds[n++] = info->epoll_fd;
        }
    }
    return n;
}

long keten_http_timeout_ms(const keten_http *self, long max_ms)
{
    if (self->resumed) {
        return 0;
    }
    long t = max_ms;
    for (size_t i = 0; i < self->n_lis; i++) {
        MHD_UNSIGNED_LONG_LONG ms = 0;
        if (MHD_get_timeout(self->lis[i].daemon, &ms) == MHD_YES
            && ms < (MHD_UNSIGNED_LONG_LONG)t) {
            t = (long)ms;
        }
    }
    return t;
}

void keten_http_run(keten_http *self)
{
    streams_wake(self, false); /* keep-alives due: resumed for this run */
    self->resumed = false;
    for (size_t i = 0; i < self->n_lis; i++) {
        (void)MHD_run(self->lis[i].daemon);
    }
}
