/*
 * apiclient.h - the command line's side of the local API (api.h): the
 * commands send, inbox, show, ack, reply and status are thin clients that
 * send one JSON request on a REQ socket to ipc://HOME/api.sock and print the
 * answer.
 *
 * Whether a daemon runs for HOME is told by HOME/node.lock, which the daemon
 * holds locked (flock) while it lives: no lock, no daemon, and the command
 * says so and how to start it (exit 1) instead of waiting.
 *
 * Ownership: *reply is a new reference (json_decref()); *text from
 * keten_apiclient_read_signal() is malloc()ed (free()).
 */
#ifndef KETEN_NODE_APICLIENT_H
#define KETEN_NODE_APICLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define KETEN_APICLIENT_TIMEOUT_MS 15000

/* Send req to the daemon of home and wait at most timeout_ms for the reply.
 * KETEN_ERR_NOT_FOUND (detail: how to start it) when no daemon runs;
 * KETEN_ERR_IO when it does not answer in time. */
keten_err keten_apiclient_call(
    const char *home, const json_t *req, int timeout_ms, json_t **reply) KETEN_MUST_CHECK;

/* For a reply with "ok": false: print its error and return its exit code;
 * 0 for a reply that is ok. */
int keten_apiclient_check(const json_t *reply);

/* Read the signal JSON text of --signal FILE, or standard input for "-"
 * (at most KETEN_SIGNAL_JSON_MAX bytes). */
keten_err keten_apiclient_read_signal(const char *arg, char **text, size_t *len) KETEN_MUST_CHECK;

/* --dry-run of send and reply: req ({"cmd": "dry-run", "for": ...}) goes to the
 * daemon, which runs every check of a send without sealing (the signal
 * against its directory, the recipients, the policy; for a reply the message
 * answered). When no daemon runs for home, the signal text alone is checked
 * here (its fields, not its type and purpose against a directory), and a
 * line on standard error says so. Prints "valid" or one line per problem
 * ("path: problem (allowed: ...)"), or with as_json one object {valid,
 * checked ("node" or "signal only"), problems [{path, problem, allowed,
 * error}], more}. Returns the exit code: 0 valid, 1 problems, else that of
 * the failure. req NULL (a signal text that is not UTF-8, which a request
 * cannot carry): the text is checked here, and its problem listed. */
int keten_apiclient_dry_run(
    const char *home, const json_t *req, const char *text, size_t len, bool as_json);

/* Print a successful send or reply's answer: the msg_id, or with as_json
 * {msg_id, state[, leaf_index]}. */
void keten_apiclient_print_sent(const json_t *reply, bool as_json);

#endif
