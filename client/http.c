/* http - see http.h. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "util.h"

#define LISTEN_BACKLOG 64
#define ADDR_MAX 300
#define BODY_INITIAL 4096

#define CSP                                                                                        \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

typedef enum via { VIA_UNIX, VIA_TCP } via;

typedef struct keten_http keten_http;

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
    FILE *trace; /* test hook */
};

/* ---- identity: the one place that says who is calling -------------------- */

/* Who is calling, and with which scopes. The Unix socket is the node's own
 * operator. Over TCP nobody is known until tokens and sessions exist: only
 * /v1/ping and non-API paths are answered (false: 401). */
static bool http_identify(
    const http_req *r, struct MHD_Connection *conn, const char **actor, unsigned *scopes)
{
    (void)conn;
    if (r->via == VIA_UNIX) {
        *actor = "local";
        *scopes = KETEN_API_SCOPE_ALL;
        return true;
    }
    *actor = "anonymous";
    *scopes = 0;
    return false;
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
    json_t *line = json_pack("{s:s, s:s, s:o, s:o, s:i, s:s, s:o}", "method", method, "path", url,
        "query", q.obj, "request_body",
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

/* MHD frees an answer's body with this: it may hold content. */
static void wipe_free(void *body)
{
    sodium_memzero(body, strlen(body));
    free(body);
}

/* Queue resp (MHD takes its body, wiped when freed) with the security headers. */
static enum MHD_Result send_answer(keten_http *h, struct MHD_Connection *conn, const char *method,
    const char *url, const http_req *r, keten_api_response *resp)
{
    unsigned status = resp->status != 0 ? resp->status : 500;
#ifdef KETEN_TEST_HOOKS
    trace_answer(h, conn, method, url, r, status, resp);
#else
    (void)h, (void)method, (void)r;
#endif
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
    bool ok = add_header(m, "Content-Security-Policy", CSP)
        && add_header(m, "X-Content-Type-Options", "nosniff")
        && add_header(m, "Referrer-Policy", "no-referrer")
        && (strncmp(url, "/v1/", 4) != 0 || add_header(m, "Cache-Control", "no-store"))
        && (resp->content_type == NULL || add_header(m, "Content-Type", resp->content_type))
        && (resp->allow[0] == '\0' || add_header(m, "Allow", resp->allow))
        && (!resp->authenticate || add_header(m, "WWW-Authenticate", "Bearer realm=\"keten\""));
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

static void problem_answer(keten_api_response *resp, unsigned status, const char *slug,
    const char *title, int exit_code, const char *detail)
{
    memset(resp, 0, sizeof *resp);
    keten_api_problem(resp, status, slug, title, exit_code, detail);
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
        char detail[160];
        snprintf(detail, sizeof detail, "the request body is larger than %u bytes",
            (unsigned)KETEN_API_REQUEST_MAX);
        problem_answer(&resp, 413, "too-large", "Request body too large", 2, detail);
        return send_answer(h, conn, method, url, r, &resp);
    }
    const char *actor = NULL;
    unsigned scopes = 0;
    bool api_path = strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/v1") == 0;
    bool known = http_identify(r, conn, &actor, &scopes);
    if (!known && api_path && strcmp(url, "/v1/ping") != 0) {
        problem_answer(&resp, 401, "unauthorized", "Credentials needed", 1,
            "this listener needs credentials: Authorization: Bearer TOKEN (a token from POST "
            "/v1/tokens on the node's Unix socket) or a web session");
        resp.authenticate = true;
        return send_answer(h, conn, method, url, r, &resp);
    }
    /* Other handlers slot in here, before the API router: /v1/events (event
     * stream), /v1/tokens (Unix socket only), /v1/session, and the web files
     * (GET / and /static/NAME, TCP only). */
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
    keten_api_request req = {
        .method = method,
        .path = url,
        .query = q.items,
        .n_query = q.n,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
        .body = r->body,
        .body_len = r->len,
        .actor = actor,
        .scopes = scopes,
        .ticket = r->ticket,
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
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    l->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, l, MHD_OPTION_LISTEN_SOCKET, fd,
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
    keten_err e = open_unix(h, node->opts.home);
    if (e == KETEN_OK && node->opts.api_listen != NULL) {
        e = open_tcp(h, node->opts.api_listen);
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

void keten_http_run(keten_http *self)
{
    for (size_t i = 0; i < self->n_lis; i++) {
        (void)MHD_run(self->lis[i].daemon);
    }
}
