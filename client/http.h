/*
 * http.h - the node's HTTP server: the API of api.h as JSON over HTTP/1.1
 * (libmicrohttpd), in the node's own loop, without a thread of its own.
 *
 * Listeners:
 *   - HOME/api.sock, a Unix stream socket created under umask 077 and chmod
 *     0600, unlinked on exit: whoever connects is the node's own operator
 *     (actor "local", every scope);
 *   - api-listen HOST:PORT (optional), loopback only (127.0.0.1, ::1,
 *     localhost; anything else is refused at start: put a TLS reverse proxy
 *     on the node's host). Its callers show who they are (http_identify()
 *     in http.c): the proxy's header (from proxy-address only; from anyone
 *     else 403), an application token (Authorization: Bearer; a bad one
 *     401), or the keten_session cookie of a web session (POST and DELETE
 *     with it need X-CSRF-Token; a foreign Origin is 403). Without any,
 *     only /v1/ping, POST /v1/session and the web page's files (GET /,
 *     GET /static/NAME from web-root) are answered; the rest is 401.
 * Served here, besides the router of api.h: /v1/session (TCP), the event
 * stream GET /v1/events (at most KETEN_HTTP_STREAMS; a suspended
 * connection woken by the event log's listener, a keep-alive every
 * KETEN_HTTP_KEEPALIVE_MS, or its client going away; the caller's
 * credential checked again before each write) and the web files. Token
 * routes are the router's, on the Unix socket only. Every /v1/ request but
 * a ping, and every 401 and 403, is a line of the access log (accesslog.h).
 * Each listener is an MHD daemon with MHD_USE_EPOLL and
 * MHD_ALLOW_SUSPEND_RESUME; keten_http_fds() gives their epoll fds for the
 * loop's zmq_poll, keten_http_timeout_ms() how long that poll may wait (not
 * at all while a resumed answer waits to be written), and keten_http_run()
 * runs them, always inside a group-commit batch (daemon.c: when a fd is
 * readable, and at the end of every loop round for resumed answers and idle
 * time-outs). A request
 * whose answer comes later (a wait, or a batch not yet committed: api.h) is
 * suspended and resumed with its answer.
 * Limits: request body KETEN_API_REQUEST_MAX (413 above), KETEN_HTTP_CONNECTIONS
 * connections per listener, idle timeout KETEN_HTTP_TIMEOUT_S.
 * Every answer carries the security headers (Content-Security-Policy,
 * X-Content-Type-Options, Referrer-Policy; Cache-Control: no-store on /v1/).
 *
 * Threads: the loop thread only (node.h).
 * Test hook (-Dtest_hooks): KETEN_NODE_TEST_API_TRACE=FILE appends one JSON
 * line per answered request: method, path, query, request_body, status,
 * content_type, response_body (tests/tools/openapi_check.py reads it).
 */
#ifndef KETEN_NODE_HTTP_H
#define KETEN_NODE_HTTP_H

#include "err.h"
#include "keten.h"
#include "node.h"

#define KETEN_HTTP_CONNECTIONS 256u
#define KETEN_HTTP_TIMEOUT_S 60u
#define KETEN_HTTP_LISTENERS 2 /* the Unix socket and api-listen */
#define KETEN_HTTP_STREAMS 64u /* event streams open at once (503 beyond) */
#define KETEN_HTTP_KEEPALIVE_MS 15000u /* an idle event stream's keep-alive comment */

/* Open HOME/api.sock and, when node->opts.api_listen is set, the TCP
 * listener. KETEN_ERR_INVALID for an api-listen that is not loopback. */
keten_err keten_http_open(keten_node *node, keten_http **out) KETEN_MUST_CHECK;

/* Check an api-listen address before anything starts: KETEN_ERR_INVALID
 * (with a detail saying what to do) unless it is HOST:PORT on loopback. */
keten_err keten_http_check_listen(const char *addr) KETEN_MUST_CHECK;

/* Stop the listeners (open connections are closed, pending answers dropped)
 * and unlink the socket. Accepts NULL. */
void keten_http_destroy(keten_http **self_p);

/* The listeners' epoll fds, for zmq_poll; returns how many (<= KETEN_HTTP_LISTENERS). */
size_t keten_http_fds(const keten_http *self, int fds[static KETEN_HTTP_LISTENERS]);

/* Accept, read, answer and time out whatever is ready (never blocks). */
void keten_http_run(keten_http *self);

/* How long the loop may wait before keten_http_run has work again: 0 when
 * a listener has work now (an answer resumed after its batch committed, data
 * already read), else its nearest time-out; at most max_ms. */
long keten_http_timeout_ms(const keten_http *self, long max_ms);

#endif
