/* promhttp - the daemons' Prometheus page: the text format (a growing page
 * of HELP/TYPE/value lines) and the HTTP server that serves it on GET
 * /metrics (libmicrohttpd, its own thread). Used by keten-broker
 * (broker/metrics.c) and keten-node (client/metrics.c).
 *
 * libmicrohttpd writes its own messages (a connection it could not accept,
 * a request it could not parse) to standard error unless told otherwise:
 * every keten daemon hands them to keten_promhttp_mhd_log() instead, and
 * binds its listening sockets itself, so that a busy port is reported once,
 * by keten, with the system's reason. */
#ifndef KETEN_PROMHTTP_H
#define KETEN_PROMHTTP_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "util.h"

struct MHD_Daemon;
struct sockaddr;

/* A page being written; a failed write (no memory, past max bytes) makes
 * every later one a no-op and keten_promhttp_finish return NULL. */
typedef struct keten_promhttp_page {
    char *buf;
    size_t len, cap, max;
    bool failed;
} keten_promhttp_page;

/* Start a page of cap bytes that may grow to max. */
void keten_promhttp_begin(keten_promhttp_page *p, size_t cap, size_t max);
void keten_promhttp_put(keten_promhttp_page *p, const char *fmt, ...) KETEN_PRINTF(2, 3);
void keten_promhttp_counter(keten_promhttp_page *p, const char *name, const char *help, uint64_t v);
void keten_promhttp_gauge(keten_promhttp_page *p, const char *name, const char *help, int64_t v);
/* A histogram: observed on one thread, served from the HTTP thread. bounds
 * are the buckets' upper bounds (inclusive, ascending, in the unit observed;
 * at most KETEN_PROMHTTP_BUCKETS_MAX - 1 of them, the last bucket is +Inf).
 * Zero-initialised memory (calloc) holds an empty one once bounds are set. */
#define KETEN_PROMHTTP_BUCKETS_MAX 16
typedef struct keten_promhttp_hist {
    const uint64_t *bounds;
    size_t n_bounds;
    atomic_uint_fast64_t buckets[KETEN_PROMHTTP_BUCKETS_MAX], count, sum;
} keten_promhttp_hist;

/* Bounds for durations observed in microseconds (0.5 ms to 1 s), as the
 * daemons' commit histograms use them. */
extern const uint64_t keten_promhttp_latency_us[];
#define KETEN_PROMHTTP_LATENCY_US_N 11

void keten_promhttp_hist_init(keten_promhttp_hist *h, const uint64_t *bounds, size_t n_bounds);
void keten_promhttp_observe(keten_promhttp_hist *h, uint64_t v);
/* Its _bucket, _sum and _count lines; bounds and sum are divided by scale
 * (1e6: microseconds observed, seconds shown). */
void keten_promhttp_histogram(keten_promhttp_page *p, const char *name, const char *help,
    keten_promhttp_hist *h, double scale);
/* The page's text (the caller frees it) and its length; NULL when a write
 * failed (the page is freed then). */
char *keten_promhttp_finish(keten_promhttp_page *p, size_t *len);

/* Renders the page for one GET (on the HTTP thread); NULL: out of memory. */
typedef char *(*keten_promhttp_render)(void *ctx, size_t *len);

/* A metrics server: set render and ctx, then keten_promhttp_serve; it must stay
 * where it is until keten_promhttp_stop. */
typedef struct keten_promhttp_server {
    keten_promhttp_render render;
    void *ctx;
    struct MHD_Daemon *daemon;
} keten_promhttp_server;

/* Serve the page on http://sa/metrics; addr is the address as the operator
 * wrote it (for messages and the "metrics served" log line, which names the
 * port bound). KETEN_ERR_IO when the address cannot be bound ("cannot serve
 * metrics on ADDR: Address already in use; ..."). */
keten_err keten_promhttp_serve(
    keten_promhttp_server *srv, const struct sockaddr *sa, const char *addr);
/* An MHD_OPTION_EXTERNAL_LOGGER callback: one logfmt line per libmicrohttpd
 * message, `level=info msg="libmicrohttpd message" server=NAME text="..."`,
 * with NAME the const char * given as cls ("metrics", "api"). Any thread. */
void keten_promhttp_mhd_log(void *cls, const char *fmt, va_list ap) KETEN_PRINTF(2, 0);

/* Stop serving (nothing when not started). */
void keten_promhttp_stop(keten_promhttp_server *srv);

#endif
