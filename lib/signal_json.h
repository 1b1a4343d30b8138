/*
 * signal_json.h - the Signal payload (module "signal": keten_signal_*) and
 * its JSON form at the edges: JSON (the signal format of docs/protocol.md) <->
 * protobuf, with jansson.
 *
 * JSON fields: type, purpose (required labels); summary (string, <= 4096
 * bytes); nature ("hard" or "soft"); grading {source "A".."F", information
 * "1".."6"} (required when nature is "soft"); handling ("TLP:CLEAR",
 * "TLP:GREEN", "TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED"); observed_at (ISO
 * 8601 UTC); observed_by (string <= 128); subjects [{kind, value}] (<= 64);
 * attachments [{name, media_type, data_base64}] (<= 16). Unknown fields are
 * refused. Errors are KETEN_ERR_JSON / KETEN_ERR_INVALID / KETEN_ERR_TOO_LARGE
 * (KETEN_ERR_UNREGISTERED against a directory) with a detail naming the field
 * path, what is wrong and what is allowed ("grading.source: must be one of
 * A-F (Admiralty source reliability), got 'G' (allowed: A, B, C, D, E, F)").
 * The full rules, with examples, are in docs/signals.md.
 *
 * Problems: every check runs to the end and can report every problem it
 * finds, not only the first (keten_signal_json_validate,
 * keten_signal_json_check_all: `keten-node send --dry-run`). Which signals are
 * accepted does not depend on whether problems are collected; the
 * single-error functions return the first problem the list would start with.
 *
 * Ownership: *out Signal freed with keten_signal_json_free(); JSON strings are
 * malloc()ed (free()). Thread-safe.
 */
#ifndef KETEN_SIGNAL_JSON_H
#define KETEN_SIGNAL_JSON_H

#include <stddef.h>

#include "directory.h"
#include "err.h"
#include "keten.h"

#define KETEN_SIGNAL_PATH_MAX 64 /* "attachments[15].data_base64" and the like */
#define KETEN_SIGNAL_TEXT_MAX 320
#define KETEN_SIGNAL_PROBLEMS_MAX 64 /* problems listed; more are only counted */

/* The stable codes of problems (the "code" of a problem in the node's API,
 * docs/api/openapi.yaml): what kind of problem it is, for a program or a
 * page to say in its own words; the path says where. */
#define KETEN_PROBLEM_MISSING "missing" /* a required field is absent or empty */
#define KETEN_PROBLEM_INVALID "invalid" /* a value the field may not hold */
#define KETEN_PROBLEM_TOO_LARGE "too-large" /* too long, or too many */
#define KETEN_PROBLEM_MALFORMED "malformed" /* not JSON, wrong JSON type, unknown field */
#define KETEN_PROBLEM_UNREGISTERED "unregistered" /* category or purpose not registered */
#define KETEN_PROBLEM_UNKNOWN_RECIPIENT "unknown-recipient" /* no current node of the network */
#define KETEN_PROBLEM_POLICY "policy" /* the sharing policy refuses it to a recipient */
#define KETEN_PROBLEM_NODE "node-cannot-send" /* this node may not send now */
#define KETEN_PROBLEM_UNKNOWN_MESSAGE "unknown-message" /* the answered message is not there */
#define KETEN_PROBLEM_CANNOT_ANSWER "cannot-answer" /* not a kind this answer answers */
#define KETEN_PROBLEM_ALREADY_REPLIED "already-replied" /* a query gets one reply */
#define KETEN_PROBLEM_ERROR "error" /* anything else (the node's store, memory) */

/* One problem of a signal. */
typedef struct keten_signal_json_problem {
    keten_err err; /* what it stands for: KETEN_ERR_JSON, _INVALID, _TOO_LARGE, ... */
    const char *code; /* one of KETEN_PROBLEM_* (static) */
    char path[KETEN_SIGNAL_PATH_MAX]; /* "grading.source", "subjects[0].address";
                                         "" for the text as a whole */
    char problem[KETEN_SIGNAL_TEXT_MAX]; /* what is wrong */
    char allowed[KETEN_SIGNAL_TEXT_MAX]; /* the allowed values or fields; may be "" */
} keten_signal_json_problem;

/* The problems found, in check order (the order of the fields in
 * docs/signals.md, structure before values). Zero-initialise it; release it
 * with keten_signal_json_problems_clear(). */
typedef struct keten_signal_json_problems {
    keten_signal_json_problem *items;
    size_t n, cap;
    size_t more; /* problems past KETEN_SIGNAL_PROBLEMS_MAX, not listed */
} keten_signal_json_problems;

/* "path: problem (allowed: ...)" into buf (always terminated). */
void keten_signal_json_problem_format(const keten_signal_json_problem *p, char *buf, size_t size);

/* The problem code an error stands for when nothing more specific is known:
 * KETEN_PROBLEM_INVALID for KETEN_ERR_INVALID, _MALFORMED, _BAD_NAME, ...;
 * KETEN_PROBLEM_ERROR for an error that is no problem of the input. */
const char *keten_signal_json_code(keten_err err);

/* Append a problem found outside the signal (its recipients, the message it
 * answers); code one of KETEN_PROBLEM_* (NULL: keten_signal_json_code(err));
 * allowed may be NULL. Past KETEN_SIGNAL_PROBLEMS_MAX (or out of memory) it
 * is only counted in more. */
void keten_signal_json_problems_add(keten_signal_json_problems *problems, keten_err err,
    const char *code, const char *path, const char *allowed, const char *problem);

/* Free the list's items; accepts NULL; the list can be used again. */
void keten_signal_json_problems_clear(keten_signal_json_problems *problems);

/* Parse and check JSON text as keten_signal_json_parse does, and against dir
 * (when not NULL: type and purpose registered), appending every problem to
 * *problems. KETEN_OK when there is none; else the first problem's error
 * (its detail set as keten_signal_json_parse would set it). JSON that does
 * not parse is one problem (jansson stops at the first syntax error). */
keten_err keten_signal_json_validate(const char *json, size_t len, const keten_directory *dir,
    keten_signal_json_problems *problems) KETEN_MUST_CHECK;

/* Parse JSON text (at most KETEN_SIGNAL_JSON_MAX bytes). */
keten_err keten_signal_json_parse(
    const char *json, size_t len, Keten__Signal **out) KETEN_MUST_CHECK;

/* Compact JSON of a signal (keys in the order of the table of fields in
 * docs/signals.md). */
keten_err keten_signal_json_to_text(const Keten__Signal *signal, char **out) KETEN_MUST_CHECK;

/* The same, as a jansson json_t* (returned as void* to keep jansson out of
 * this header); the caller json_decref()s it. NULL on failure. */
void *keten_signal_json_to_jansson(const Keten__Signal *signal);

/* Check a parsed signal (also one that came out of a ciphertext): type and
 * purpose registered in dir (if dir != NULL), field syntax as above. */
keten_err keten_signal_json_check(
    const Keten__Signal *signal, const keten_directory *dir) KETEN_MUST_CHECK;

/* The same, appending every problem to *problems. */
keten_err keten_signal_json_check_all(const Keten__Signal *signal, const keten_directory *dir,
    keten_signal_json_problems *problems) KETEN_MUST_CHECK;

/* Serialize / parse the protobuf form (the plaintext inside an envelope). */
keten_err keten_signal_json_pack(
    const Keten__Signal *signal, uint8_t **out, size_t *out_len) KETEN_MUST_CHECK;
keten_err keten_signal_json_unpack(
    const uint8_t *buf, size_t len, Keten__Signal **out) KETEN_MUST_CHECK;

/* Free a Signal from keten_signal_json_parse or keten_signal_json_unpack; accepts
 * NULL; sets *signal_p = NULL. Attachment bytes are wiped. */
void keten_signal_json_free(Keten__Signal **signal_p);

#endif
