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
 *     on the node's host). Until tokens and sessions exist every /v1/ route
 *     there but /v1/ping is answered 401 (http_identify() in http.c).
 * Each listener is an MHD daemon with MHD_USE_EPOLL and
 * MHD_ALLOW_SUSPEND_RESUME; keten_http_fds() gives their epoll fds for the
 * loop's zmq_poll, and keten_http_run() runs them, always inside a
 * group-commit batch (daemon.c: when a fd is readable, and at the end of
 * every loop round for resumed answers and idle time-outs). A request
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

#endif
