/*
 * apiclient.h - the command line's side of the node's HTTP API: the commands
 * send, inbox, show, ack, reply, sent, status and checkpoint are thin
 * clients that make one HTTP/1.1 request (libcurl) over the Unix socket
 * HOME/api.sock, to http://localhost/v1/..., and print the answer. Whoever
 * connects to that socket (mode 0600) is the node's own operator: no token
 * is sent.
 *
 * Requests carry JSON (application/json); a success is answered with a JSON
 * object (2xx), a failure with an RFC 9457 problem (application/problem+json)
 * whose "detail" says what was wrong and what to do and whose "exit" is the
 * command's exit code (1 failure, 2 usage, 3 verification).
 *
 * Whether a daemon runs for HOME is told by HOME/node.lock, which the daemon
 * holds locked (flock) while it lives: no lock, no daemon, and the command
 * says so and how to start it (exit 1) instead of waiting.
 *
 * Ownership: *reply is a new reference (json_decref()), NULL for an answer
 * without a body; *text from keten_apiclient_read_signal() is malloc()ed
 * (free(), after sodium_memzero(): it is signal content). Request and answer
 * bytes are wiped before they are freed. One call at a time per thread.
 */
#ifndef KETEN_NODE_APICLIENT_H
#define KETEN_NODE_APICLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "err.h"

#define KETEN_APICLIENT_TIMEOUT_MS 15000
#define KETEN_APICLIENT_REPLY_MAX (1u << 30) /* bytes of one answer */
#define KETEN_APICLIENT_QUERY_MAX 512 /* bytes of a query string */
#define KETEN_APICLIENT_PATH_MAX 128 /* bytes of a path: /v1/inbox/HEX/reply and the like */
#define KETEN_APICLIENT_MSG_ID_HEX 33 /* 32 lowercase hex characters and the terminator */

/* One request: method ("GET", "POST", "DELETE") on path ("/v1/inbox"),
 * with query (without '?'; NULL or "" for none) and a JSON body (NULL for
 * none), to the daemon of home; waits at most timeout_ms for the whole
 * answer. *status is the HTTP status, *reply the JSON answer (a problem for
 * a status of 400 and up). KETEN_ERR_NOT_FOUND (detail: how to start it)
 * when no daemon runs; KETEN_ERR_IO when it cannot be reached or does not
 * answer in time; KETEN_ERR_MALFORMED for an answer that is not JSON. */
keten_err keten_apiclient_call(const char *home, const char *method, const char *path,
    const char *query, const json_t *body, int timeout_ms, long *status,
    json_t **reply) KETEN_MUST_CHECK;

/* The same for a request that carries a signal: body gets "signal", the
 * signal text parsed strictly (duplicate fields refused). A text that is not
 * a JSON object is refused here with the error the node gives for it
 * (keten_signal_json_parse), after the check that a daemon runs. body is
 * borrowed: "signal" is removed again, its strings wiped. */
keten_err keten_apiclient_call_signal(const char *home, const char *method, const char *path,
    const char *query, json_t *body, const char *text, size_t len, int timeout_ms, long *status,
    json_t **reply) KETEN_MUST_CHECK;

/* For an answer of status 400 and up: print the problem's detail (in the
 * command line's words, keten_apiclient_cli_text) and return its exit code
 * (1, 2 or 3; any other code it names, or none, is 1);
 * 0 for a success (2xx). */
int keten_apiclient_check(long status, const json_t *reply);

/* A command's request over HOME/api.sock (keten_apiclient_call() with no
 * query and KETEN_APICLIENT_TIMEOUT_MS): on success *status (may be NULL)
 * is the HTTP status and *reply the answer's JSON (NULL for 204); an answer
 * of 400 and up is printed and its exit code returned in *rc (else 0). */
keten_err keten_apiclient_request(const char *home, const char *method, const char *path,
    const json_t *body, long *status, json_t **reply, int *rc) KETEN_MUST_CHECK;

/* text, a detail the node wrote for any client of its API, in the command
 * line's words: where it names a request's field or route ("kind":
 * "feedback", GET /v1/messages/ID) the command that does it (keten-node reply
 * --kind feedback, status ID). Into out (size bytes, always terminated; a
 * longer text is cut). */
#define KETEN_APICLIENT_TEXT_MAX 2048
void keten_apiclient_cli_text(const char *text, char *out, size_t size);

/* The option --idempotency-key KEY of command cmd (send, reply): 0 when it
 * was not given or is a valid key to send; else the usage error's exit code,
 * said (a key with --dry-run, which sends nothing; a key that is not one). */
int keten_apiclient_idem_option(const char *cmd, const char *key, bool dry_run);

/* Append "key=value" (value percent-encoded) to the query string in buf
 * (size bytes, always terminated). KETEN_ERR_TOO_LARGE when it does not fit. */
keten_err keten_apiclient_query_add(
    char *buf, size_t size, const char *key, const char *value) KETEN_MUST_CHECK;

/* A msg_id from the command line, as the API's paths take it: 32 hex
 * characters (either case) into out (lowercase). false if it is not one. */
bool keten_apiclient_msg_id(const char *arg, char out[static KETEN_APICLIENT_MSG_ID_HEX]);

/* What a command prints for an argument that is not a msg_id: that no
 * daemon runs (exit 1), as for any request, else "MSG_ID must be 32 hex
 * characters" (exit 2). Returns the exit code. */
int keten_apiclient_bad_msg_id(const char *home);

/* A request refused here, before it is made, as the node would refuse it:
 * that no daemon runs (exit 1), as for any request, else err with the detail
 * set (keten_err_set) just before. Returns the exit code. */
int keten_apiclient_refuse(const char *home, keten_err err);

/* Read the signal JSON text of --signal FILE, or standard input for "-"
 * (at most KETEN_SIGNAL_JSON_MAX bytes). */
keten_err keten_apiclient_read_signal(const char *arg, char **text, size_t *len) KETEN_MUST_CHECK;

/* --dry-run of send and reply: req, the body of POST /v1/messages/validate
 * without its signal ({"for": "send"|"reply", ...}), goes to the daemon with
 * the signal text, and the daemon runs every check of a send without sealing
 * (the signal against its directory, the recipients, the policy; for a reply
 * the message answered). When no daemon runs for home, the signal text alone
 * is checked here (its fields, not its type and purpose against a
 * directory), and a line on standard error says so; the same for a text that
 * is not a JSON object, which the request cannot carry. Prints "valid" or
 * one line per problem ("path: problem (allowed: ...)"), or with as_json one
 * object {valid, checked ("node" or "signal only"), problems [{path,
 * problem, allowed, error}], more}. Returns the exit code: 0 valid, 1
 * problems, else that of the failure. req NULL (a signal text that is not
 * UTF-8, which a request cannot carry): the text is checked here, and its
 * problem listed. req is borrowed (see keten_apiclient_call_signal). */
int keten_apiclient_dry_run(
    const char *home, json_t *req, const char *text, size_t len, bool as_json);

/* The answer to a send or a reply (POST /v1/messages, POST
 * /v1/inbox/HEX/reply): print the msg_id (for a repeat, "repeated": true,
 * also a line on standard error saying nothing new was sent), or with
 * as_json {msg_id, state[, leaf_index][, repeated]}, and return 0; a failure is printed as
 * keten_apiclient_check() does. With waited (the request had wait=MS), an
 * answer still pending (202: the wait ran out) is a failure (exit 1) that
 * says the message stays in the outbox. */
int keten_apiclient_sent(long status, const json_t *reply, bool waited, bool as_json);

/* A send or a reply: POST body with the signal text (as
 * keten_apiclient_call_signal) to path; with idem_key (not NULL: a valid
 * key, keten_idem_key_check), the header Idempotency-Key, so that the same
 * command repeated with the same key and signal sends once; with wait,
 * ?wait= the timeout, and the request's own time-out that much longer. The
 * answer is printed as keten_apiclient_sent() does; returns the exit code. */
int keten_apiclient_post_signal(const char *home, const char *path, json_t *body, const char *text,
    size_t len, const char *idem_key, bool wait, uint64_t timeout_s, bool as_json);

/* A listing (GET /v1/inbox, GET /v1/sent): path with query (as
 * keten_apiclient_call), waiting at most timeout_ms. *reply is the answer
 * (also on a failure: json_decref() it). Returns the exit code: 0 when the
 * answer is a success whose "messages" is an array; else the failure,
 * printed (no daemon, a problem, an answer without "messages"). */
int keten_apiclient_list_get(
    const char *home, const char *path, const char *query, int timeout_ms, json_t **reply);

/* Print the "messages" of a listing's answer, oldest first: with as_json
 * each as one compact JSON line (its fields in the daemon's order) and
 * nothing else; in text, header() before the first (nothing for an empty
 * list), then print_item(item, arg) for each, which prints its line and
 * says whether the item counts for the summary (*counted: how many did; 0
 * with as_json). The summary line is the caller's. Returns the exit code: 0,
 * or 1 (printed) when memory ran out, the list then cut short. */
int keten_apiclient_list_print(const json_t *reply, bool as_json, void (*header)(void),
    bool (*print_item)(const json_t *item, void *arg), void *arg, size_t *counted);

/* Wipe the string values (and keys) of a JSON tree in place: signal content
 * before json_decref(). Accepts NULL. */
void keten_apiclient_wipe_json(json_t *json);

#endif
