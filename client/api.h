/*
 * api.h - the node's API operations, independent of their transport: the
 * routes of the HTTP API (docs/api/openapi.yaml, docs/api/README.md) as one
 * function per operation behind one router, keten_api_handle(). The HTTP
 * server (http.h) and the fuzz harness (tests/fuzz/fuzz_api.c) call it with a
 * request already read whole; it answers with a status, a JSON body or an
 * RFC 9457 problem (application/problem+json), and the extra headers.
 *
 * Routes (base /v1; the scope needed in brackets):
 *   GET  /v1/ping [none]             GET  /v1/node [read]
 *   GET  /v1/capabilities [read]     POST /v1/messages [send] (?wait=MS)
 *   POST /v1/messages/validate [send]
 *   GET  /v1/messages/{msg_id} [read] (a sent message's status)
 *   GET  /v1/inbox [read] (?kind ?category ?unhandled ?since ?wait)
 *   GET  /v1/inbox/{msg_id} [read]   POST /v1/inbox/{msg_id}/ack [ack]
 *   POST /v1/inbox/{msg_id}/reply [send] (?wait=MS)
 *   GET  /v1/sent [read] (?since)    GET /v1/checkpoint, /v1/checkpoints [read]
 *   POST /v1/tokens, GET /v1/tokens, DELETE /v1/tokens/{id} [the Unix socket
 *   only: req->local; from elsewhere 403]
 *   GET  /v1/alarms [read]           POST /v1/alarms/{alarm_id}/ack {"note"}
 *   [the Unix socket only, as the tokens; who acknowledged: req->peer's uid]
 * POST /v1/messages and POST /v1/inbox/{msg_id}/reply (reply and feedback)
 * take the header Idempotency-Key (idem.h): a repeat by the same caller
 * with the same key and request (the body; for an answer also the msg_id
 * answered) sends nothing and is answered for the message the first stored
 * (its current state, as a send with that wait would be, plus "repeated":
 * true), before the check that a query has no reply yet; another request
 * 409 idempotency-key-reused; a key that is not 1-64 of [A-Za-z0-9._:-]
 * 400.
 * A path of none of them is 404, a known path with another method 405 (with
 * resp->allow), a scope the caller lacks 403, a body that is not JSON 415 or
 * 400, a msg_id that is not 32 lowercase hex characters 400; an unknown
 * request field or query parameter is 400, named in the problem's errors[].
 *
 * Answers now or later. keten_api_handle() returns KETEN_API_ANSWERED with
 * *resp filled, or KETEN_API_LATER: the answer is handed to the answer
 * function (keten_api_set_answer) with the request's ticket, when
 *   - a wait ends (a send or reply with ?wait=MS: the broker acknowledged or
 *     refused it, or the time ran out; an inbox list with ?wait=MS: a message
 *     matches, or the time ran out), or
 *   - the group-commit batch it ran in ends (keten_api_hold/release): an
 *     answer given while holding may tell of changes not yet durable, so it is
 *     kept; released with committed=false it becomes a 500 problem.
 * The transport must call keten_api_cancel() for a ticket whose connection
 * went away before its answer.
 *
 * Threads: everything runs on the node's loop thread (node.h).
 * Ownership: resp->body is malloc()ed and may hold signal content; the
 * receiver (of *resp or of the answer function's) owns it and frees it with
 * keten_api_response_clear(), which wipes it.
 */
#ifndef KETEN_NODE_API_H
#define KETEN_NODE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "err.h"
#include "keten.h"
#include "node.h"

#define KETEN_API_REQUEST_MAX (2u << 20) /* request body bytes (413 above) */
#define KETEN_API_WAIT_DEFAULT_MS 30000 /* the ZeroMQ API's send wait */
#define KETEN_API_WAIT_MAX_MS (24 * 3600 * 1000)
#define KETEN_API_WAITERS_MAX 1024
#define KETEN_API_SENT_MAX 1000 /* messages in one "sent" answer: the newest */
#define KETEN_API_QUERY_MAX 16 /* query parameters in one request */
#define KETEN_API_ACTION_MAX 24
#define KETEN_API_OBJECT_MAX 48

typedef struct keten_api_param {
    const char *name;
    const char *value; /* "" for a parameter without "=" */
} keten_api_param;

typedef struct keten_api_request {
    const char *method;
    const char *path; /* without the query string, percent-decoded */
    const keten_api_param *query;
    size_t n_query;
    const char *content_type; /* NULL: no Content-Type header */
    const uint8_t *body; /* NULL when empty; not terminated; may hold content */
    size_t body_len;
    const char *actor; /* "local", "token:NAME", "person:X" */
    unsigned scopes; /* KETEN_SCOPE_* (auth.h) */
    bool local; /* came on the Unix socket: the node's operator (tokens, alarm ack) */
    const char *peer; /* "uid=N" on the Unix socket (SO_PEERCRED), the address over TCP;
                         NULL: not known */
    uint64_t ticket; /* the transport's name for the request, for a later answer */
    /* Idempotency-Key (idem.h): the header's value, NULL when absent;
     * idempotency_key_twice when the header came more than once (400);
     * caller: whose keys they are (keten_idem_caller()), NULL: none. */
    const char *idempotency_key;
    bool idempotency_key_twice;
    const char *caller;
} keten_api_request;

typedef struct keten_api_response {
    unsigned status;
    const char *content_type; /* static string */
    char *body; /* malloc()ed, body_len bytes (terminated); may hold content */
    size_t body_len;
    char allow[40]; /* 405: the methods of the path ("GET, POST"); else "" */
    bool authenticate; /* 401: send WWW-Authenticate: Bearer */
    /* For the access log: what was done to what ("ack", "message:HEX"). */
    char action[KETEN_API_ACTION_MAX];
    char object[KETEN_API_OBJECT_MAX];
} keten_api_response;

typedef enum keten_api_result { KETEN_API_ANSWERED, KETEN_API_LATER } keten_api_result;

/* Receives a later answer; takes resp->body (clear it when sent). */
typedef void (*keten_api_answer_fn)(void *ctx, uint64_t ticket, keten_api_response *resp);

keten_err keten_api_open(keten_node *node, keten_api **out) KETEN_MUST_CHECK;
/* Later answers still pending are dropped (their bodies wiped). */
void keten_api_destroy(keten_api **self_p);
void keten_api_set_answer(keten_api *self, keten_api_answer_fn fn, void *ctx);

/* Route and run one request (see above). resp is overwritten. */
keten_api_result keten_api_handle(
    keten_node *node, const keten_api_request *req, keten_api_response *resp);

/* What a request would be logged as, without running it: resp->action
 * and resp->object only (for the access log line of a request refused
 * before the router: 401, 403). */
void keten_api_describe(const char *method, const char *path, keten_api_response *resp);

/* The connection of ticket is gone: forget its wait or kept answer. */
void keten_api_cancel(keten_api *self, uint64_t ticket);

/* Fill resp with a problem+json answer (for the transport's own refusals:
 * 401, 404, 413, ...). slug: urn:keten:problem:SLUG; exit: 1, 2 or 3. */
void keten_api_problem(keten_api_response *resp, unsigned status, const char *slug,
    const char *title, int exit_code, const char *detail);

/* Wipe and free resp's body; accepts a zeroed response. */
void keten_api_response_clear(keten_api_response *resp);

/* Answer waits whose time is up. */
void keten_api_tick(keten_node *node);

/* Group commit (store.h): between hold and release answers are kept in
 * order; release hands them to the answer function (committed) or replaces
 * each by a 500 problem (not committed: nothing of the request was kept). */
void keten_api_hold(keten_api *self);
void keten_api_release(keten_api *self, bool committed);

/* A sent message's state changed / a new message is in the inbox. */
void keten_api_notify_sent(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES]);
/* The broker refused this node (alarm.h): every waiting send is answered. */
void keten_api_notify_refused(keten_node *node);
void keten_api_notify_inbox(keten_node *node);

#endif
