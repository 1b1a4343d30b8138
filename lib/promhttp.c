/* promhttp - see promhttp.h. */
#include "promhttp.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define HTTP_CONNECTIONS 16u
#define HTTP_TIMEOUT_S 10u
#define HTTP_BACKLOG 64
#define MHD_MESSAGE_MAX 512

void keten_promhttp_begin(keten_promhttp_page *p, size_t cap, size_t max)
{
    p->buf = malloc(cap);
    p->len = 0;
    p->cap = cap;
    p->max = max;
    p->failed = p->buf == NULL;
}

void keten_promhttp_put(keten_promhttp_page *p, const char *fmt, ...)
{
    while (!p->failed) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(p->buf + p->len, p->cap - p->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            p->failed = true;
        } else if ((size_t)n < p->cap - p->len) {
            p->len += (size_t)n;
            return;
        } else {
            size_t cap = p->cap * 2;
            char *nb = cap <= p->max ? realloc(p->buf, cap) : NULL;
            if (nb == NULL) {
                p->failed = true;
            } else {
                p->buf = nb;
                p->cap = cap;
            }
        }
    }
}

void keten_promhttp_counter(keten_promhttp_page *p, const char *name, const char *help, uint64_t v)
{
    keten_promhttp_put(p, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
        (unsigned long long)v);
}

void keten_promhttp_gauge(keten_promhttp_page *p, const char *name, const char *help, int64_t v)
{
    keten_promhttp_put(
        p, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, (long long)v);
}

const uint64_t keten_promhttp_latency_us[KETEN_PROMHTTP_LATENCY_US_N]
    = { 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000 };

void keten_promhttp_hist_init(keten_promhttp_hist *h, const uint64_t *bounds, size_t n_bounds)
{
    h->bounds = bounds;
    h->n_bounds = n_bounds < KETEN_PROMHTTP_BUCKETS_MAX ? n_bounds : KETEN_PROMHTTP_BUCKETS_MAX - 1;
    for (size_t i = 0; i < KETEN_PROMHTTP_BUCKETS_MAX; i++) {
        atomic_init(&h->buckets[i], 0);
    }
    atomic_init(&h->count, 0);
    atomic_init(&h->sum, 0);
}

void keten_promhttp_observe(keten_promhttp_hist *h, uint64_t v)
{
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) {
        i++;
    }
    atomic_fetch_add(&h->buckets[i], 1);
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->sum, v);
}

void keten_promhttp_histogram(keten_promhttp_page *p, const char *name, const char *help,
    keten_promhttp_hist *h, double scale)
{
    keten_promhttp_put(p, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        cum += atomic_load(&h->buckets[i]);
        keten_promhttp_put(p, "%s_bucket{le=\"%g\"} %llu\n", name, (double)h->bounds[i] / scale,
            (unsigned long long)cum);
    }
    uint64_t count = atomic_load(&h->count);
    keten_promhttp_put(p, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %g\n%s_count %llu\n", name,
        (unsigned long long)count, name, (double)atomic_load(&h->sum) / scale, name,
        (unsigned long long)count);
}

char *keten_promhttp_finish(keten_promhttp_page *p, size_t *len)
{
    if (p->failed) {
        free(p->buf);
        p->buf = NULL;
        return NULL;
    }
    *len = p->len;
    return p->buf;
}

static struct MHD_Response *text_response(const char *text)
{
    return MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *connection, const char *url,
    const char *method, const char *version, const char *upload_data, size_t *upload_data_size,
    void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    const keten_promhttp_server *s = cls;
    struct MHD_Response *resp = NULL;
    unsigned status = MHD_HTTP_OK;
    if (strcmp(method, "GET") != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        resp = text_response("only GET\n");
    } else if (strcmp(url, "/metrics") != 0) {
        status = MHD_HTTP_NOT_FOUND;
        resp = text_response("not found: try /metrics\n");
    } else {
        size_t len = 0;
        char *body = s->render(s->ctx, &len);
        if (body == NULL) {
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
            resp = text_response("out of memory\n");
        } else {
            resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
            if (resp == NULL) {
                free(body);
            }
        }
    }
    if (resp == NULL) {
        return MHD_NO;
    }
    if (status == MHD_HTTP_OK
        && MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    enum MHD_Result r = MHD_queue_response(connection, status, resp);
    MHD_destroy_response(resp);
    return r;
}

void keten_promhttp_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char text[MHD_MESSAGE_MAX];
    int n = vsnprintf(text, sizeof text, fmt, ap);
    if (n < 0) {
        return;
    }
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) {
        text[--len] = '\0';
    }
    KETEN_LOG(KETEN_LOG_INFO, "libmicrohttpd message", "server=%s text=\"%s\"",
        cls != NULL ? (const char *)cls : "http", text);
}

/* A listening TCP socket on sa, bound here rather than by libmicrohttpd,
 * so that a failure is keten's own message with the system's reason. */
static keten_err listen_on(const struct sockaddr *sa, const char *addr, int *fd_out)
{
    *fd_out = -1;
    socklen_t salen = sa->sa_family == AF_INET6 ? (socklen_t)sizeof(struct sockaddr_in6)
                                                : (socklen_t)sizeof(struct sockaddr_in);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || bind(fd, sa, salen) != 0 || listen(fd, HTTP_BACKLOG) != 0) {
        int err = errno;
        if (fd >= 0) {
            close(fd);
        }
        return keten_err_set(KETEN_ERR_IO,
            "cannot serve metrics on %s: %s; pick another --metrics address", addr, strerror(err));
    }
    *fd_out = fd;
    return KETEN_OK;
}

keten_err keten_promhttp_serve(
    keten_promhttp_server *srv, const struct sockaddr *sa, const char *addr)
{
    int fd = -1;
    keten_err e = listen_on(sa, addr, &fd);
    if (e != KETEN_OK) {
        return e;
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    unsigned port = 0;
    if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) == 0) {
        port = bound.ss_family == AF_INET6
            ? ntohs(((const struct sockaddr_in6 *)(const void *)&bound)->sin6_port)
            : ntohs(((const struct sockaddr_in *)(const void *)&bound)->sin_port);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (sa->sa_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    /* The logger first: libmicrohttpd uses its own for options before it. */
    srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, answer, srv, MHD_OPTION_EXTERNAL_LOGGER,
        keten_promhttp_mhd_log, (void *)"metrics", MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, HTTP_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        HTTP_TIMEOUT_S, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        close(fd);
        return keten_err_set(KETEN_ERR_IO,
            "cannot serve metrics on %s: the HTTP server did not start (see the libmicrohttpd "
            "message before); pick another --metrics address",
            addr);
    }
    KETEN_LOG(KETEN_LOG_INFO, "metrics served", "addr=%s port=%u path=/metrics", addr, port);
    return KETEN_OK;
}

void keten_promhttp_stop(keten_promhttp_server *srv)
{
    if (srv->daemon != NULL) {
        MHD_stop_daemon(srv->daemon);
        srv->daemon = NULL;
    }
}
