#include "signal_json.h"

#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pb.h"
#include "util.h"

#define SIGNAL_SUMMARY_MAX 4096
#define SIGNAL_OBSERVED_BY_MAX 128
#define SIGNAL_MAX_SUBJECTS 64
#define SIGNAL_SUBJECT_VALUE_MAX 1024
#define SIGNAL_MAX_ATTACHMENTS 16
#define SIGNAL_ATTACHMENT_NAME_MAX 255
#define SIGNAL_MEDIA_TYPE_MAX 127
#define SIGNAL_PATH_MAX KETEN_SIGNAL_PATH_MAX
#define SIGNAL_ECHO_MAX 40 /* how much of a bad value a detail line repeats */

static const char *const handling_values[] = {
    "TLP:CLEAR",
    "TLP:GREEN",
    "TLP:AMBER",
    "TLP:AMBER+STRICT",
    "TLP:RED",
};

static const char *const top_keys[] = { "type", "purpose", "summary", "nature", "grading",
    "handling", "observed_at", "observed_by", "subjects", "attachments", NULL };
static const char *const grading_keys[] = { "source", "information", NULL };
static const char *const subject_keys[] = { "kind", "value", NULL };
static const char *const attachment_keys[] = { "name", "media_type", "data_base64", NULL };

/* What each field may hold, as the problem list shows it ("allowed"). */
#define ALLOWED_TYPE "a category name [a-z0-9][a-z0-9./-]{0,63} registered in the directory"
#define ALLOWED_PURPOSE "a purpose name [a-z0-9][a-z0-9./-]{0,63} registered in the directory"
#define ALLOWED_SUMMARY "UTF-8 text of at most 4096 bytes"
#define ALLOWED_NATURE "hard, soft"
#define ALLOWED_GRADING                                                                            \
    "an object {\"source\": A-F, \"information\": 1-6}, e.g. {\"source\": \"B\", "                 \
    "\"information\": \"2\"}"
#define ALLOWED_SOURCE "A, B, C, D, E, F"
#define ALLOWED_INFORMATION "1, 2, 3, 4, 5, 6"
#define ALLOWED_HANDLING "TLP:CLEAR, TLP:GREEN, TLP:AMBER, TLP:AMBER+STRICT, TLP:RED"
#define ALLOWED_OBSERVED_AT                                                                        \
    "an ISO 8601 UTC time YYYY-MM-DDTHH:MM:SS[.fff]Z (e.g. 2026-11-19T10:30:00Z), or ms since "    \
    "the epoch as a string of digits, up to the end of the year 9999"
#define ALLOWED_OBSERVED_BY "UTF-8 text of at most 128 bytes, one line"
#define ALLOWED_SUBJECTS "an array of at most 64 objects {kind, value}"
#define ALLOWED_SUBJECT "an object with the fields kind, value"
#define ALLOWED_SUBJECT_KIND "a short name [a-z0-9-]{1,32}, e.g. address, person, company, vehicle"
#define ALLOWED_SUBJECT_VALUE "non-empty UTF-8 text of at most 1024 bytes, one line"
#define ALLOWED_ATTACHMENTS "an array of at most 16 objects {name, media_type, data_base64}"
#define ALLOWED_ATTACHMENT "an object with the fields name, media_type, data_base64"
#define ALLOWED_ATTACHMENT_NAME                                                                    \
    "a file name of at most 255 bytes without '/' or '\\', not '.' or '..'"
#define ALLOWED_MEDIA_TYPE "a MIME type type/subtype of printable ASCII, e.g. image/jpeg"
#define ALLOWED_BASE64 "standard base64 (A-Z a-z 0-9 + /) with '=' padding, no line breaks"

/* ---- problems ---------------------------------------------------------- */

/* Where the checks report: every problem goes to list (when not NULL, up to
 * KETEN_SIGNAL_PROBLEMS_MAX, the rest counted); the first one is also kept
 * in first, and decides the error the single-error functions return. */
typedef struct problem_sink {
    keten_signal_json_problems *list;
    keten_signal_json_problem first;
    size_t n;
    bool nomem;
} problem_sink;

/* A problem at path is already said by one at path or at a parent of it
 * ("grading" covers "grading.source", "subjects[1]" covers
 * "subjects[1].kind"): the checks of a structure that failed would only
 * repeat it. */
static bool path_covered(const char *have, const char *path)
{
    size_t n = strlen(have);
    if (strncmp(have, path, n) != 0) {
        return false;
    }
    return path[n] == '\0' || path[n] == '.' || path[n] == '[';
}

static bool sink_covered(const problem_sink *sink, const char *path)
{
    if (sink->n == 0) {
        return false;
    }
    if (sink->list == NULL) {
        return path_covered(sink->first.path, path);
    }
    for (size_t i = 0; i < sink->list->n; i++) {
        if (path_covered(sink->list->items[i].path, path)) {
            return true;
        }
    }
    return false;
}

static void copy_text(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size) {
        n = size - 1;
        /* cut on a UTF-8 boundary and mark the cut */
        while (n > 0 && ((unsigned char)src[n] & 0xc0u) == 0x80u) {
            n--;
        }
        if (n >= 3) {
            memcpy(dst, src, n - 3);
            memcpy(dst + n - 3, "...", 3);
            dst[n] = '\0';
            return;
        }
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Append p to the list; false (counted in more) when full or out of memory. */
static bool list_append(keten_signal_json_problems *l, const keten_signal_json_problem *p)
{
    if (l->n >= KETEN_SIGNAL_PROBLEMS_MAX) {
        l->more++;
        return true;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 8 : 2 * l->cap;
        keten_signal_json_problem *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL) {
            l->more++;
            return false;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = *p;
    return true;
}

const char *keten_signal_json_code(keten_err err)
{
    switch (err) {
    case KETEN_ERR_INVALID:
    case KETEN_ERR_MALFORMED:
    case KETEN_ERR_BAD_NAME:
    case KETEN_ERR_INVALID_SIGNAL:
        return KETEN_PROBLEM_INVALID;
    case KETEN_ERR_TOO_LARGE:
        return KETEN_PROBLEM_TOO_LARGE;
    case KETEN_ERR_JSON:
        return KETEN_PROBLEM_MALFORMED;
    case KETEN_ERR_UNREGISTERED:
        return KETEN_PROBLEM_UNREGISTERED;
    case KETEN_ERR_UNKNOWN_NODE:
        return KETEN_PROBLEM_UNKNOWN_RECIPIENT;
    case KETEN_ERR_POLICY:
        return KETEN_PROBLEM_POLICY;
    default:
        return KETEN_PROBLEM_ERROR;
    }
}

void keten_signal_json_problems_add(keten_signal_json_problems *problems, keten_err err,
    const char *code, const char *path, const char *allowed, const char *problem)
{
    keten_signal_json_problem p;
    p.err = err;
    p.code = code != NULL ? code : keten_signal_json_code(err);
    copy_text(p.path, sizeof p.path, path);
    copy_text(p.problem, sizeof p.problem, problem);
    copy_text(p.allowed, sizeof p.allowed, allowed != NULL ? allowed : "");
    (void)list_append(problems, &p);
}

/* Report a problem: code its KETEN_PROBLEM_* (NULL: the one err stands
 * for), err the error it stands for, path the field, allowed what the field
 * may hold (NULL: nothing to add). report(): code NULL; report_missing():
 * a required field is absent or empty. */
static void report_code(problem_sink *sink, const char *code, keten_err err, const char *path,
    const char *allowed, const char *fmt, ...) KETEN_PRINTF(6, 7);
#define report(sink, ...) report_code((sink), NULL, __VA_ARGS__)
#define report_missing(sink, ...) report_code((sink), KETEN_PROBLEM_MISSING, __VA_ARGS__)

static void report_code(problem_sink *sink, const char *code, keten_err err, const char *path,
    const char *allowed, const char *fmt, ...)
{
    if (sink_covered(sink, path)) {
        return;
    }
    keten_signal_json_problem p;
    p.err = err;
    p.code = code != NULL ? code : keten_signal_json_code(err);
    copy_text(p.path, sizeof p.path, path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p.problem, sizeof p.problem, fmt, ap);
    va_end(ap);
    copy_text(p.allowed, sizeof p.allowed, allowed != NULL ? allowed : "");
    if (sink->n == 0) {
        sink->first = p;
    }
    sink->n++;
    if (sink->list != NULL && !list_append(sink->list, &p)) {
        sink->nomem = true;
    }
}

void keten_signal_json_problem_format(const keten_signal_json_problem *p, char *buf, size_t size)
{
    const char *path = p->path[0] != '\0' ? p->path : "signal JSON";
    if (p->allowed[0] != '\0') {
        snprintf(buf, size, "%s: %s (allowed: %s)", path, p->problem, p->allowed);
    } else {
        snprintf(buf, size, "%s: %s", path, p->problem);
    }
}

/* The result of a run of checks: KETEN_OK, or the first problem's error with
 * its detail set. */
static keten_err sink_result(const problem_sink *sink)
{
    if (sink->n == 0) {
        return sink->nomem ? keten_err_set(KETEN_ERR_NOMEM, "signal problems") : KETEN_OK;
    }
    char text[KETEN_SIGNAL_PATH_MAX + 2 * KETEN_SIGNAL_TEXT_MAX + 16];
    keten_signal_json_problem_format(&sink->first, text, sizeof text);
    return keten_err_set(sink->first.err, "%s", text);
}

void keten_signal_json_problems_clear(keten_signal_json_problems *problems)
{
    if (problems == NULL) {
        return;
    }
    free(problems->items);
    problems->items = NULL;
    problems->n = problems->cap = problems->more = 0;
}

/* ---- text checks shared by the JSON and the protobuf side ------------- */

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t extra;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (n - i <= extra) {
            return false;
        }
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0u) != 0x80u) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10ffff
            || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += extra + 1;
    }
    return true;
}

/* The bidirectional controls that embed, override or isolate a run of text
 * (U+202A-U+202E, U+2066-U+2069) at s[i] (valid UTF-8 of n bytes): the code
 * point, else 0. They make a screen show characters in another order than
 * they are stored ("Kerkstraat 12" shown for a stored "Kerkstraat 21"). */
static unsigned bidi_control_at(const unsigned char *s, size_t n, size_t i)
{
    if (i + 2 >= n || s[i] != 0xe2) {
        return 0;
    }
    if ((s[i + 1] == 0x80 && s[i + 2] >= 0xaa && s[i + 2] <= 0xae)
        || (s[i + 1] == 0x81 && s[i + 2] >= 0xa6 && s[i + 2] <= 0xa9)) {
        return 0x2000u | ((unsigned)(s[i + 1] & 0x3f) << 6) | (unsigned)(s[i + 2] & 0x3f);
    }
    return 0;
}

/* A text field: at most max bytes, UTF-8, no control characters (newline and
 * tab allowed when multiline): none of C0 and DEL, none of C1 (U+0080-U+009F:
 * a terminal takes U+009B for the start of an escape sequence) and no
 * bidirectional control (bidi_control_at()). Non-empty when required. */
static void check_text(
    problem_sink *sink, const char *path, const char *s, size_t max, bool multiline, bool required)
{
    keten_err err = KETEN_OK;
    const char *code = NULL;
    char problem[96] = "";
    size_t n = strlen(s);
    if (n == 0) {
        if (required) {
            err = KETEN_ERR_INVALID;
            code = KETEN_PROBLEM_MISSING;
            snprintf(problem, sizeof problem, "is required and must not be empty");
        }
    } else if (n > max) {
        err = KETEN_ERR_TOO_LARGE;
        snprintf(problem, sizeof problem, "is %zu bytes; at most %zu allowed", n, max);
    } else if (!utf8_valid((const unsigned char *)s, n)) {
        err = KETEN_ERR_INVALID;
        snprintf(problem, sizeof problem, "is not valid UTF-8");
    } else {
        const unsigned char *u = (const unsigned char *)s;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = u[i];
            unsigned bidi = bidi_control_at(u, n, i);
            if ((c < 0x20 && !(multiline && (c == '\n' || c == '\t'))) || c == 0x7f
                || (c == 0xc2 && i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)) {
                err = KETEN_ERR_INVALID;
                snprintf(problem, sizeof problem,
                    "contains a control character (byte %zu); remove it", i);
                break;
            }
            if (bidi != 0) {
                err = KETEN_ERR_INVALID;
                snprintf(problem, sizeof problem,
                    "contains U+%04X (byte %zu), which reorders text on screen; remove it", bidi,
                    i);
                break;
            }
        }
    }
    if (err == KETEN_OK) {
        return;
    }
    char allowed[128];
    snprintf(allowed, sizeof allowed, "%sUTF-8 text of at most %zu bytes, %s",
        required ? "non-empty " : "", max,
        multiline ? "no control characters but newline and tab, no bidi controls"
                  : "one line, no control characters, no bidi controls");
    report_code(sink, code, err, path, allowed, "%s", problem);
}

static bool handling_valid(const char *s)
{
    for (size_t i = 0; i < sizeof handling_values / sizeof handling_values[0]; i++) {
        if (strcmp(s, handling_values[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* "image/jpeg": printable ASCII without spaces, exactly one '/', both sides
 * non-empty. */
static bool media_type_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > SIGNAL_MEDIA_TYPE_MAX) {
        return false;
    }
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s || slash[1] == '\0' || strchr(slash + 1, '/') != NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

static void check_grading(problem_sink *sink, const Keten__Grading *g)
{
    const char *src = g->source ? g->source : "";
    const char *inf = g->information ? g->information : "";
    if (strlen(src) != 1 || src[0] < 'A' || src[0] > 'F') {
        report(sink, KETEN_ERR_INVALID, "grading.source", ALLOWED_SOURCE,
            "must be one of A-F (Admiralty source reliability), got '%.*s'", SIGNAL_ECHO_MAX, src);
    }
    if (strlen(inf) != 1 || inf[0] < '1' || inf[0] > '6') {
        report(sink, KETEN_ERR_INVALID, "grading.information", ALLOWED_INFORMATION,
            "must be one of 1-6 (Admiralty credibility), got '%.*s'", SIGNAL_ECHO_MAX, inf);
    }
}

static void check_subject(problem_sink *sink, const Keten__Subject *s, size_t i)
{
    char path[SIGNAL_PATH_MAX];
    snprintf(path, sizeof path, "subjects[%zu]", i);
    if (s == NULL) {
        report_missing(sink, KETEN_ERR_MALFORMED, path, ALLOWED_SUBJECT, "is missing");
        return;
    }
    snprintf(path, sizeof path, "subjects[%zu].kind", i);
    const char *kind = s->kind ? s->kind : "";
    if (!keten_name_valid(kind)) {
        report(sink, KETEN_ERR_INVALID, path, ALLOWED_SUBJECT_KIND,
            "must be a short lowercase name like \"address\"");
    }
    snprintf(path, sizeof path, "subjects[%zu].value", i);
    check_text(sink, path, s->value ? s->value : "", SIGNAL_SUBJECT_VALUE_MAX, false, true);
}

static void check_attachment(problem_sink *sink, const Keten__Attachment *a, size_t i)
{
    char path[SIGNAL_PATH_MAX];
    snprintf(path, sizeof path, "attachments[%zu]", i);
    if (a == NULL) {
        report_missing(sink, KETEN_ERR_MALFORMED, path, ALLOWED_ATTACHMENT, "is missing");
        return;
    }
    snprintf(path, sizeof path, "attachments[%zu].name", i);
    const char *name = a->name ? a->name : "";
    size_t before = sink->n;
    check_text(sink, path, name, SIGNAL_ATTACHMENT_NAME_MAX, false, true);
    if (sink->n == before
        && (strchr(name, '/') != NULL || strchr(name, '\\') != NULL || strcmp(name, ".") == 0
            || strcmp(name, "..") == 0)) {
        report(sink, KETEN_ERR_INVALID, path, ALLOWED_ATTACHMENT_NAME,
            "must be a plain file name without '/' or '\\', not '.' or '..'");
    }
    snprintf(path, sizeof path, "attachments[%zu].media_type", i);
    const char *media_type = a->media_type ? a->media_type : "";
    if (!media_type_valid(media_type)) {
        report(sink, KETEN_ERR_INVALID, path, ALLOWED_MEDIA_TYPE,
            "must be a MIME type such as \"image/jpeg\"");
    }
    if (a->data.len > 0 && a->data.data == NULL) {
        snprintf(path, sizeof path, "attachments[%zu].data_base64", i);
        report(sink, KETEN_ERR_MALFORMED, path, NULL, "data is missing");
    }
}

/* "a, b, c" of a directory's registered values (for the allowed line). */
static void list_registered(char *buf, size_t size, char *const *values, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < size; i++) {
        int w = snprintf(buf + off, size - off, "%s%s", i > 0 ? ", " : "", values[i]);
        if (w < 0) {
            break;
        }
        off += (size_t)w;
    }
    if (n == 0) {
        snprintf(buf, size, "(none registered)");
    }
}

/* What type (category) or purpose may hold: with a directory, its
 * registered values. Built only for a problem. */
static void label_allowed(char *buf, size_t size, const keten_directory *dir, bool category)
{
    const Keten__Directory *doc = dir != NULL ? keten_directory_doc(dir) : NULL;
    if (doc == NULL) {
        snprintf(buf, size, "a %s name [a-z0-9][a-z0-9./-]{0,63} registered in the directory",
            category ? "category" : "purpose");
        return;
    }
    char values[KETEN_SIGNAL_TEXT_MAX];
    if (category) {
        list_registered(values, sizeof values, doc->categories, doc->n_categories);
    } else {
        list_registered(values, sizeof values, doc->purposes, doc->n_purposes);
    }
    snprintf(buf, size, "the %s registered in directory version %llu: %s",
        category ? "categories" : "purposes", (unsigned long long)keten_directory_version(dir),
        values);
}

static void check_label(problem_sink *sink, const char *field, const char *value,
    const keten_directory *dir, bool category)
{
    char allowed[2 * KETEN_SIGNAL_TEXT_MAX];
    if (!keten_label_valid(value)) {
        label_allowed(allowed, sizeof allowed, dir, category);
        if (value[0] == '\0') {
            report_missing(sink, KETEN_ERR_INVALID, field, allowed, "is required");
        } else {
            report(sink, KETEN_ERR_INVALID, field, allowed, "'%.*s' is not a %s name",
                SIGNAL_ECHO_MAX, value, category ? "category" : "purpose");
        }
        return;
    }
    if (dir != NULL
        && !(category ? keten_directory_category_registered(dir, value)
                      : keten_directory_purpose_registered(dir, value))) {
        label_allowed(allowed, sizeof allowed, dir, category);
        report(sink, KETEN_ERR_UNREGISTERED, field, allowed,
            "'%s' is not registered in directory version %llu; ask the administrators to "
            "register it",
            value, (unsigned long long)keten_directory_version(dir));
    }
}

static void check_signal(
    problem_sink *sink, const Keten__Signal *signal, const keten_directory *dir)
{
    if (signal == NULL) {
        report_missing(sink, KETEN_ERR_INVALID, "", NULL, "the signal is missing");
        return;
    }
    check_label(sink, "type", signal->type ? signal->type : "", dir, true);
    check_label(sink, "purpose", signal->purpose ? signal->purpose : "", dir, false);
    if (signal->observed_at > KETEN_TIME_MAX_MS) {
        report(sink, KETEN_ERR_INVALID, "observed_at", ALLOWED_OBSERVED_AT,
            "%llu ms is after the year 9999", (unsigned long long)signal->observed_at);
    }
    check_text(
        sink, "summary", signal->summary ? signal->summary : "", SIGNAL_SUMMARY_MAX, true, false);
    const char *nature = signal->nature ? signal->nature : "";
    if (nature[0] != '\0' && strcmp(nature, "hard") != 0 && strcmp(nature, "soft") != 0) {
        report(sink, KETEN_ERR_INVALID, "nature", ALLOWED_NATURE,
            "must be \"hard\" or \"soft\", got '%.*s'", SIGNAL_ECHO_MAX, nature);
    }
    if (signal->grading != NULL) {
        check_grading(sink, signal->grading);
    } else if (strcmp(nature, "soft") == 0) {
        report_missing(sink, KETEN_ERR_INVALID, "grading", ALLOWED_GRADING,
            "is required when nature is \"soft\" (e.g. {\"source\": \"B\", \"information\": "
            "\"2\"})");
    }
    const char *handling = signal->handling ? signal->handling : "";
    if (handling[0] != '\0' && !handling_valid(handling)) {
        report(sink, KETEN_ERR_INVALID, "handling", ALLOWED_HANDLING,
            "must be a Traffic Light Protocol marking, got '%.*s'", SIGNAL_ECHO_MAX, handling);
    }
    check_text(sink, "observed_by", signal->observed_by ? signal->observed_by : "",
        SIGNAL_OBSERVED_BY_MAX, false, false);
    if (signal->n_subjects > SIGNAL_MAX_SUBJECTS) {
        report(sink, KETEN_ERR_TOO_LARGE, "subjects", ALLOWED_SUBJECTS,
            "%zu given; at most %d allowed", signal->n_subjects, SIGNAL_MAX_SUBJECTS);
    } else {
        for (size_t i = 0; i < signal->n_subjects; i++) {
            check_subject(sink, signal->subjects[i], i);
        }
    }
    if (signal->n_attachments > SIGNAL_MAX_ATTACHMENTS) {
        report(sink, KETEN_ERR_TOO_LARGE, "attachments", ALLOWED_ATTACHMENTS,
            "%zu given; at most %d allowed", signal->n_attachments, SIGNAL_MAX_ATTACHMENTS);
    } else {
        for (size_t i = 0; i < signal->n_attachments; i++) {
            check_attachment(sink, signal->attachments[i], i);
        }
    }
}

keten_err keten_signal_json_check(const Keten__Signal *signal, const keten_directory *dir)
{
    problem_sink sink = { 0 };
    check_signal(&sink, signal, dir);
    return sink_result(&sink);
}

keten_err keten_signal_json_check_all(
    const Keten__Signal *signal, const keten_directory *dir, keten_signal_json_problems *problems)
{
    problem_sink sink = { .list = problems };
    check_signal(&sink, signal, dir);
    return sink_result(&sink);
}

/* ---- JSON -> protobuf -------------------------------------------------- */

/* The key jansson found twice: the string token that ends just before
 * position (jansson reports the position after the key). */
static void duplicate_key_name(
    const char *json, size_t len, int position, char *out, size_t out_size)
{
    out[0] = '\0';
    if (position < 2 || (size_t)position > len) {
        return;
    }
    size_t end = (size_t)position - 1; /* the closing quote */
    if (json[end] != '"') {
        return;
    }
    size_t start = end;
    while (start > 0) {
        start--;
        if (json[start] == '"' && (start == 0 || json[start - 1] != '\\')) {
            break;
        }
    }
    if (json[start] != '"' || end - start - 1 >= out_size) {
        return;
    }
    memcpy(out, json + start + 1, end - start - 1);
    out[end - start - 1] = '\0';
}

/* "a, b, c" of a NULL-terminated key list. */
static void list_keys(char *buf, size_t size, const char *const *keys)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; keys[i] != NULL && off < size; i++) {
        int w = snprintf(buf + off, size - off, "%s%s", i > 0 ? ", " : "", keys[i]);
        if (w < 0) {
            break;
        }
        off += (size_t)w;
    }
}

static void refuse_unknown_keys(
    problem_sink *sink, json_t *obj, const char *prefix, const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        (void)val;
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL; i++) {
            if (strcmp(key, allowed[i]) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok) {
            char path[2 * SIGNAL_PATH_MAX];
            char keys[KETEN_SIGNAL_TEXT_MAX];
            list_keys(keys, sizeof keys, allowed);
            snprintf(
                path, sizeof path, "%s%s%.*s", prefix, prefix[0] ? "." : "", SIGNAL_ECHO_MAX, key);
            report(sink, KETEN_ERR_JSON, path, keys, "unknown field; remove it");
        }
    }
}

/* A string member: absent is "" unless required. Copies it into *dst
 * (malloc) unless it is empty, in which case *dst keeps its default.
 * False only when out of memory. */
static bool take_string(problem_sink *sink, json_t *obj, const char *key, const char *path,
    bool required, const char *allowed, char **dst)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required) {
            report_missing(sink, KETEN_ERR_INVALID, path, allowed, "is required");
        }
        return true;
    }
    if (!json_is_string(v)) {
        report(sink, KETEN_ERR_JSON, path, allowed, "must be a string");
        return true;
    }
    size_t n = json_string_length(v);
    if (n == 0) {
        return true;
    }
    if (memchr(json_string_value(v), '\0', n) != NULL) {
        report(sink, KETEN_ERR_INVALID, path, allowed, "contains a NUL character");
        return true;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        keten_err_set(KETEN_ERR_NOMEM, "%s: copying %zu bytes", path, n);
        return false;
    }
    memcpy(copy, json_string_value(v), n + 1);
    *dst = copy;
    return true;
}

static bool take_grading(problem_sink *sink, json_t *obj, Keten__Signal *sig)
{
    json_t *g = json_object_get(obj, "grading");
    if (g == NULL) {
        return true;
    }
    if (!json_is_object(g)) {
        report(sink, KETEN_ERR_JSON, "grading", ALLOWED_GRADING, "must be an object");
        /* an empty grading stands for it, so that "soft needs grading" is
         * not said as well */
    } else {
        refuse_unknown_keys(sink, g, "grading", grading_keys);
    }
    sig->grading = malloc(sizeof *sig->grading);
    if (sig->grading == NULL) {
        keten_err_set(KETEN_ERR_NOMEM, "grading");
        return false;
    }
    keten__grading__init(sig->grading);
    if (!json_is_object(g)) {
        return true;
    }
    return take_string(
               sink, g, "source", "grading.source", true, ALLOWED_SOURCE, &sig->grading->source)
        && take_string(sink, g, "information", "grading.information", true, ALLOWED_INFORMATION,
            &sig->grading->information);
}

static bool take_subjects(problem_sink *sink, json_t *obj, Keten__Signal *sig)
{
    json_t *arr = json_object_get(obj, "subjects");
    if (arr == NULL) {
        return true;
    }
    if (!json_is_array(arr)) {
        report(sink, KETEN_ERR_JSON, "subjects", ALLOWED_SUBJECTS, "must be an array");
        return true;
    }
    size_t n = json_array_size(arr);
    if (n > SIGNAL_MAX_SUBJECTS) {
        report(sink, KETEN_ERR_TOO_LARGE, "subjects", ALLOWED_SUBJECTS,
            "%zu given; at most %d allowed", n, SIGNAL_MAX_SUBJECTS);
        return true;
    }
    if (n == 0) {
        return true;
    }
    sig->subjects = calloc(n, sizeof *sig->subjects);
    if (sig->subjects == NULL) {
        keten_err_set(KETEN_ERR_NOMEM, "subjects");
        return false;
    }
    char prefix[SIGNAL_PATH_MAX];
    char path[2 * SIGNAL_PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(arr, i);
        snprintf(prefix, sizeof prefix, "subjects[%zu]", i);
        Keten__Subject *s = malloc(sizeof *s);
        if (s == NULL) {
            keten_err_set(KETEN_ERR_NOMEM, "%s", prefix);
            return false;
        }
        keten__subject__init(s);
        sig->subjects[i] = s;
        sig->n_subjects = i + 1;
        if (!json_is_object(item)) {
            report(sink, KETEN_ERR_JSON, prefix, ALLOWED_SUBJECT, "must be an object");
            continue;
        }
        refuse_unknown_keys(sink, item, prefix, subject_keys);
        snprintf(path, sizeof path, "%s.kind", prefix);
        if (!take_string(sink, item, "kind", path, true, ALLOWED_SUBJECT_KIND, &s->kind)) {
            return false;
        }
        snprintf(path, sizeof path, "%s.value", prefix);
        if (!take_string(sink, item, "value", path, true, ALLOWED_SUBJECT_VALUE, &s->value)) {
            return false;
        }
    }
    return true;
}

static bool take_base64(
    problem_sink *sink, json_t *item, const char *path, ProtobufCBinaryData *dst)
{
    json_t *v = json_object_get(item, "data_base64");
    if (v == NULL) {
        report_missing(sink, KETEN_ERR_INVALID, path, ALLOWED_BASE64, "is required");
        return true;
    }
    if (!json_is_string(v)) {
        report(sink, KETEN_ERR_JSON, path, ALLOWED_BASE64, "must be a base64 string");
        return true;
    }
    size_t b64_len = json_string_length(v);
    if (b64_len == 0) {
        return true;
    }
    size_t cap = b64_len / 4 * 3 + 3;
    uint8_t *bin = malloc(cap);
    if (bin == NULL) {
        keten_err_set(KETEN_ERR_NOMEM, "%s: %zu bytes", path, cap);
        return false;
    }
    size_t bin_len = 0;
    if (sodium_base642bin(bin, cap, json_string_value(v), b64_len, NULL, &bin_len, NULL,
            sodium_base64_VARIANT_ORIGINAL)
        != 0) {
        free(bin);
        report(sink, KETEN_ERR_INVALID, path, ALLOWED_BASE64, "is not valid base64");
        return true;
    }
    if (bin_len == 0) {
        free(bin);
        return true;
    }
    dst->data = bin;
    dst->len = bin_len;
    return true;
}

static bool take_attachments(problem_sink *sink, json_t *obj, Keten__Signal *sig)
{
    json_t *arr = json_object_get(obj, "attachments");
    if (arr == NULL) {
        return true;
    }
    if (!json_is_array(arr)) {
        report(sink, KETEN_ERR_JSON, "attachments", ALLOWED_ATTACHMENTS, "must be an array");
        return true;
    }
    size_t n = json_array_size(arr);
    if (n > SIGNAL_MAX_ATTACHMENTS) {
        report(sink, KETEN_ERR_TOO_LARGE, "attachments", ALLOWED_ATTACHMENTS,
            "%zu given; at most %d allowed", n, SIGNAL_MAX_ATTACHMENTS);
        return true;
    }
    if (n == 0) {
        return true;
    }
    sig->attachments = calloc(n, sizeof *sig->attachments);
    if (sig->attachments == NULL) {
        keten_err_set(KETEN_ERR_NOMEM, "attachments");
        return false;
    }
    char prefix[SIGNAL_PATH_MAX];
    char path[2 * SIGNAL_PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(arr, i);
        snprintf(prefix, sizeof prefix, "attachments[%zu]", i);
        Keten__Attachment *a = malloc(sizeof *a);
        if (a == NULL) {
            keten_err_set(KETEN_ERR_NOMEM, "%s", prefix);
            return false;
        }
        keten__attachment__init(a);
        sig->attachments[i] = a;
        sig->n_attachments = i + 1;
        if (!json_is_object(item)) {
            report(sink, KETEN_ERR_JSON, prefix, ALLOWED_ATTACHMENT, "must be an object");
            continue;
        }
        refuse_unknown_keys(sink, item, prefix, attachment_keys);
        snprintf(path, sizeof path, "%s.name", prefix);
        if (!take_string(sink, item, "name", path, true, ALLOWED_ATTACHMENT_NAME, &a->name)) {
            return false;
        }
        snprintf(path, sizeof path, "%s.media_type", prefix);
        if (!take_string(
                sink, item, "media_type", path, true, ALLOWED_MEDIA_TYPE, &a->media_type)) {
            return false;
        }
        snprintf(path, sizeof path, "%s.data_base64", prefix);
        if (!take_base64(sink, item, path, &a->data)) {
            return false;
        }
    }
    return true;
}

static void take_observed_at(problem_sink *sink, json_t *obj, Keten__Signal *sig)
{
    json_t *v = json_object_get(obj, "observed_at");
    if (v == NULL) {
        return;
    }
    if (!json_is_string(v)) {
        report(sink, KETEN_ERR_JSON, "observed_at", ALLOWED_OBSERVED_AT, "must be a string");
        return;
    }
    const char *s = json_string_value(v);
    uint64_t ms = 0;
    if (json_string_length(v) != strlen(s) || keten_time_parse(s, &ms) != KETEN_OK) {
        report(sink, KETEN_ERR_INVALID, "observed_at", ALLOWED_OBSERVED_AT,
            "'%.*s' is not an ISO 8601 UTC time", SIGNAL_ECHO_MAX, s);
        return;
    }
    sig->observed_at = ms;
}

/* Every field of the object into sig, every problem reported; false only
 * when out of memory. */
static bool signal_from_object(problem_sink *sink, json_t *root, Keten__Signal *sig)
{
    refuse_unknown_keys(sink, root, "", top_keys);
    if (!take_string(sink, root, "type", "type", true, ALLOWED_TYPE, &sig->type)
        || !take_string(sink, root, "purpose", "purpose", true, ALLOWED_PURPOSE, &sig->purpose)
        || !take_string(sink, root, "summary", "summary", false, ALLOWED_SUMMARY, &sig->summary)
        || !take_string(sink, root, "nature", "nature", false, ALLOWED_NATURE, &sig->nature)
        || !take_grading(sink, root, sig)
        || !take_string(
            sink, root, "handling", "handling", false, ALLOWED_HANDLING, &sig->handling)) {
        return false;
    }
    take_observed_at(sink, root, sig);
    return take_string(sink, root, "observed_by", "observed_by", false, ALLOWED_OBSERVED_BY,
               &sig->observed_by)
        && take_subjects(sink, root, sig) && take_attachments(sink, root, sig);
}

/* Parse and check; every problem goes to sink. *out only when there is none. */
static keten_err parse_signal(problem_sink *sink, const char *json, size_t len,
    const keten_directory *dir, Keten__Signal **out)
{
    *out = NULL;
    if (len > KETEN_SIGNAL_JSON_MAX) {
        report(sink, KETEN_ERR_TOO_LARGE, "", NULL, "is %zu bytes; at most %u allowed", len,
            KETEN_SIGNAL_JSON_MAX);
        return sink_result(sink);
    }
    if (json == NULL) {
        report_missing(sink, KETEN_ERR_JSON, "", NULL, "no input");
        return sink_result(sink);
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_duplicate_key) {
            char key[SIGNAL_ECHO_MAX + 1];
            duplicate_key_name(json, len, jerr.position, key, sizeof key);
            report(sink, KETEN_ERR_JSON, key[0] ? key : "(key)", NULL,
                "duplicate field (line %d, column %d); give each field once", jerr.line,
                jerr.column);
        } else {
            report(sink, KETEN_ERR_JSON, "", NULL, "%s (line %d, column %d)", jerr.text, jerr.line,
                jerr.column);
        }
        return sink_result(sink);
    }
    keten_err e = KETEN_OK;
    Keten__Signal *sig = NULL;
    if (!json_is_object(root)) {
        report(sink, KETEN_ERR_JSON, "", NULL, "must be an object {\"type\": ...}");
        e = sink_result(sink);
        goto out;
    }
    sig = malloc(sizeof *sig);
    if (sig == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "signal");
        goto out;
    }
    keten__signal__init(sig);
    if (!signal_from_object(sink, root, sig)) {
        e = KETEN_ERR_NOMEM; /* the detail is set */
        goto out;
    }
    check_signal(sink, sig, dir);
    e = sink_result(sink);
    if (e != KETEN_OK) {
        goto out;
    }
    *out = sig;
    sig = NULL;
out:
    keten_signal_json_free(&sig);
    json_decref(root);
    return e;
}

keten_err keten_signal_json_parse(const char *json, size_t len, Keten__Signal **out)
{
    problem_sink sink = { 0 };
    return parse_signal(&sink, json, len, NULL, out);
}

keten_err keten_signal_json_validate(
    const char *json, size_t len, const keten_directory *dir, keten_signal_json_problems *problems)
{
    problem_sink sink = { .list = problems };
    Keten__Signal *sig = NULL;
    keten_err e = parse_signal(&sink, json, len, dir, &sig);
    keten_signal_json_free(&sig);
    return e;
}

/* ---- protobuf -> JSON -------------------------------------------------- */

/* Set key to a string value; false on failure (invalid UTF-8, no memory). */
static bool put_string(json_t *obj, const char *key, const char *value)
{
    json_t *s = json_string(value);
    return s != NULL && json_object_set_new(obj, key, s) == 0;
}

static bool put_optional(json_t *obj, const char *key, const char *value)
{
    if (value == NULL || value[0] == '\0') {
        return true;
    }
    return put_string(obj, key, value);
}

static json_t *attachment_to_json(const Keten__Attachment *a)
{
    json_t *o = json_object();
    char *b64 = NULL;
    if (o == NULL) {
        return NULL;
    }
    if (!put_string(o, "name", a->name ? a->name : "")
        || !put_string(o, "media_type", a->media_type ? a->media_type : "")) {
        goto fail;
    }
    size_t b64_size = sodium_base64_ENCODED_LEN(a->data.len, sodium_base64_VARIANT_ORIGINAL);
    b64 = malloc(b64_size);
    if (b64 == NULL) {
        goto fail;
    }
    if (a->data.len == 0) {
        b64[0] = '\0';
    } else {
        sodium_bin2base64(b64, b64_size, a->data.data, a->data.len, sodium_base64_VARIANT_ORIGINAL);
    }
    if (!put_string(o, "data_base64", b64)) {
        goto fail;
    }
    free(b64);
    return o;
fail:
    free(b64);
    json_decref(o);
    return NULL;
}

static bool signal_fill_json(const Keten__Signal *sig, json_t *root)
{
    if (!put_string(root, "type", sig->type ? sig->type : "")
        || !put_string(root, "purpose", sig->purpose ? sig->purpose : "")
        || !put_optional(root, "summary", sig->summary)
        || !put_optional(root, "nature", sig->nature)) {
        return false;
    }
    if (sig->grading != NULL) {
        json_t *g = json_object();
        if (g == NULL || json_object_set_new(root, "grading", g) != 0) {
            return false;
        }
        if (!put_string(g, "source", sig->grading->source ? sig->grading->source : "")
            || !put_string(
                g, "information", sig->grading->information ? sig->grading->information : "")) {
            return false;
        }
    }
    if (!put_optional(root, "handling", sig->handling)) {
        return false;
    }
    if (sig->observed_at != 0) {
        char iso[40];
        keten_time_iso(sig->observed_at, iso, sizeof iso);
        if (!put_string(root, "observed_at", iso)) {
            return false;
        }
    }
    if (!put_optional(root, "observed_by", sig->observed_by)) {
        return false;
    }
    if (sig->n_subjects > 0) {
        json_t *arr = json_array();
        if (arr == NULL || json_object_set_new(root, "subjects", arr) != 0) {
            return false;
        }
        for (size_t i = 0; i < sig->n_subjects; i++) {
            const Keten__Subject *s = sig->subjects[i];
            json_t *o = json_object();
            if (o == NULL || json_array_append_new(arr, o) != 0 || s == NULL) {
                return false;
            }
            if (!put_string(o, "kind", s->kind ? s->kind : "")
                || !put_string(o, "value", s->value ? s->value : "")) {
                return false;
            }
        }
    }
    if (sig->n_attachments > 0) {
        json_t *arr = json_array();
        if (arr == NULL || json_object_set_new(root, "attachments", arr) != 0) {
            return false;
        }
        for (size_t i = 0; i < sig->n_attachments; i++) {
            if (sig->attachments[i] == NULL) {
                return false;
            }
            json_t *o = attachment_to_json(sig->attachments[i]);
            if (o == NULL || json_array_append_new(arr, o) != 0) {
                return false;
            }
        }
    }
    return true;
}

void *keten_signal_json_to_jansson(const Keten__Signal *signal)
{
    if (signal == NULL) {
        return NULL;
    }
    json_t *root = json_object();
    if (root == NULL) {
        return NULL;
    }
    if (!signal_fill_json(signal, root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

keten_err keten_signal_json_to_text(const Keten__Signal *signal, char **out)
{
    *out = NULL;
    json_t *root = keten_signal_json_to_jansson(signal);
    if (root == NULL) {
        return keten_err_set(KETEN_ERR_JSON,
            "signal: cannot be written as JSON (a text field is not UTF-8, or out of memory)");
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "writing signal JSON");
    }
    *out = text;
    return KETEN_OK;
}

/* ---- protobuf ---------------------------------------------------------- */

keten_err keten_signal_json_pack(const Keten__Signal *signal, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    keten_err e = keten_signal_json_check(signal, NULL);
    if (e != KETEN_OK) {
        return e;
    }
    return keten_pb_pack(&signal->base, out, out_len);
}

keten_err keten_signal_json_unpack(const uint8_t *buf, size_t len, Keten__Signal **out)
{
    *out = NULL;
    Keten__Signal *sig = NULL;
    keten_err e = KETEN_PB_UNPACK_CANONICAL(
        keten__signal, buf, len, KETEN_ENVELOPE_MAX, "signal payload", &sig);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_signal_json_check(sig, NULL);
    if (e != KETEN_OK) {
        keten_signal_json_free(&sig);
        return e;
    }
    *out = sig;
    return KETEN_OK;
}

static void wipe_string(char *s)
{
    /* The empty default is a shared constant; never write to it. */
    if (s != NULL && s[0] != '\0') {
        sodium_memzero(s, strlen(s));
    }
}

void keten_signal_json_free(Keten__Signal **signal_p)
{
    if (signal_p == NULL || *signal_p == NULL) {
        return;
    }
    Keten__Signal *sig = *signal_p;
    wipe_string(sig->summary);
    if (sig->subjects != NULL) {
        for (size_t i = 0; i < sig->n_subjects; i++) {
            if (sig->subjects[i] != NULL) {
                wipe_string(sig->subjects[i]->value);
            }
        }
    }
    if (sig->attachments != NULL) {
        for (size_t i = 0; i < sig->n_attachments; i++) {
            Keten__Attachment *a = sig->attachments[i];
            if (a != NULL && a->data.data != NULL && a->data.len > 0) {
                sodium_memzero(a->data.data, a->data.len);
            }
        }
    }
    protobuf_c_message_free_unpacked(&sig->base, NULL);
    *signal_p = NULL;
}
