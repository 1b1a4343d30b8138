/*
 * accesslog.h - the HTTP API's access log (docs/integration.md, "The access
 * log"): one JSON line per request that reads or writes a message, and per
 * refused request, appended to HOME/access.log (or the node's access-log
 * setting):
 *
 *   {"time":"2026-12-06T10:00:00.123Z","actor":"token:case-system",
 *    "via":"tcp","peer":"127.0.0.1","action":"read",
 *    "object":"message:0f1e...","result":"ok","status":200}
 *
 * Exactly these eight fields, in this order; "object" is null when the
 * request named none. Values are escaped by jansson (JSON_ENSURE_ASCII), so
 * no value can end the line or add a field; the caller passes only what the
 * contract allows (an action name, "message:HEX", "inbox", "token:ID"),
 * never content, subjects or query strings with their values.
 *
 * The file is opened O_WRONLY|O_APPEND|O_CREAT|O_NOFOLLOW|O_CLOEXEC, created
 * with mode 0600; an existing file that is not a regular file, or that its
 * group or others may read or write, is refused like a key file
 * (KETEN_ERR_PERMISSIONS, saying to run chmod 600). Each line is one
 * write(2) of at most KETEN_ACCESSLOG_LINE_MAX bytes. A write that fails or
 * is short is logged (KETEN_LOG, once per failure) and counted
 * (keten_accesslog_failures()); it never blocks or stops the request.
 *
 * Ownership: keten_accesslog_open() returns an object closed with
 * keten_accesslog_destroy() (accepts NULL).
 * Thread safety: none; the node's loop thread.
 * Errors: KETEN_ERR_IO (open, stat), KETEN_ERR_PERMISSIONS, KETEN_ERR_INVALID
 * (a path too long), KETEN_ERR_NOMEM.
 */
#ifndef KETEN_NODE_ACCESSLOG_H
#define KETEN_NODE_ACCESSLOG_H

#include <stdint.h>

#include "auth.h"
#include "err.h"

#define KETEN_ACCESSLOG_NAME "access.log" /* in HOME when access-log is unset */
#define KETEN_ACCESSLOG_LINE_MAX 8192 /* bytes of one line with its newline */
#define KETEN_ACCESSLOG_FIELD_MAX KETEN_AUTH_ACTOR_MAX /* bytes of one value */

typedef struct keten_accesslog keten_accesslog;

/* Open path, or HOME/access.log when path is NULL. */
keten_err keten_accesslog_open(
    const char *home, const char *path, keten_accesslog **out) KETEN_MUST_CHECK;
void keten_accesslog_destroy(keten_accesslog **self_p);

/* Append one line: who (NULL: actor "anonymous", via tcp, peer "unknown"),
 * action ("read", "send", ...), object (NULL: null), result ("ok",
 * "denied", "error") and the HTTP status sent. A value over
 * KETEN_ACCESSLOG_FIELD_MAX bytes is cut. */
void keten_accesslog_write(keten_accesslog *self, const keten_auth_principal *who,
    const char *action, const char *object, const char *result, int http_status);

/* The same with the time given (ms), for tests. */
void keten_accesslog_write_at(keten_accesslog *self, uint64_t now_ms,
    const keten_auth_principal *who, const char *action, const char *object, const char *result,
    int http_status);

/* Lines that could not be written since the log was opened. */
uint64_t keten_accesslog_failures(const keten_accesslog *self);

/* The path written to. */
const char *keten_accesslog_path(const keten_accesslog *self);

#endif
