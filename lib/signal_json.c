#include "signal_json.h"

#include <jansson.h>
#include <sodium.h>
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
#define SIGNAL_PATH_MAX 64 /* "attachments[15].media_type" and the like */
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

/* A text field: at most max bytes, UTF-8, no control characters (newline and
 * tab allowed when multiline), non-empty when required. */
static keten_err check_text(
    const char *path, const char *s, size_t max, bool multiline, bool required)
{
    size_t n = strlen(s);
    if (n == 0) {
        if (required) {
            return keten_err_set(KETEN_ERR_INVALID, "%s: is required and must not be empty", path);
        }
        return KETEN_OK;
    }
    if (n > max) {
        return keten_err_set(
            KETEN_ERR_TOO_LARGE, "%s: is %zu bytes; at most %zu allowed", path, n, max);
    }
    if (!utf8_valid((const unsigned char *)s, n)) {
        return keten_err_set(KETEN_ERR_INVALID, "%s: is not valid UTF-8", path);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(multiline && (c == '\n' || c == '\t'))) || c == 0x7f) {
            return keten_err_set(KETEN_ERR_INVALID,
                "%s: contains a control character (byte %zu); remove it", path, i);
        }
    }
    return KETEN_OK;
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

static keten_err check_grading(const Keten__Grading *g)
{
    const char *src = g->source ? g->source : "";
    const char *inf = g->information ? g->information : "";
    if (strlen(src) != 1 || src[0] < 'A' || src[0] > 'F') {
        return keten_err_set(KETEN_ERR_INVALID,
            "grading.source: must be one of A-F (Admiralty source reliability), got '%.*s'",
            SIGNAL_ECHO_MAX, src);
    }
    if (strlen(inf) != 1 || inf[0] < '1' || inf[0] > '6') {
        return keten_err_set(KETEN_ERR_INVALID,
            "grading.information: must be one of 1-6 (Admiralty credibility), got '%.*s'",
            SIGNAL_ECHO_MAX, inf);
    }
    return KETEN_OK;
}

static keten_err check_subject(const Keten__Subject *s, size_t i)
{
    char path[SIGNAL_PATH_MAX];
    if (s == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "subjects[%zu]: is missing", i);
    }
    snprintf(path, sizeof path, "subjects[%zu].kind", i);
    const char *kind = s->kind ? s->kind : "";
    if (!keten_name_valid(kind)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s: must be a short lowercase name like \"address\" ([a-z0-9-]{1,32})", path);
    }
    snprintf(path, sizeof path, "subjects[%zu].value", i);
    return check_text(path, s->value ? s->value : "", SIGNAL_SUBJECT_VALUE_MAX, false, true);
}

static keten_err check_attachment(const Keten__Attachment *a, size_t i)
{
    char path[SIGNAL_PATH_MAX];
    if (a == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "attachments[%zu]: is missing", i);
    }
    snprintf(path, sizeof path, "attachments[%zu].name", i);
    const char *name = a->name ? a->name : "";
    keten_err e = check_text(path, name, SIGNAL_ATTACHMENT_NAME_MAX, false, true);
    if (e != KETEN_OK) {
        return e;
    }
    if (strchr(name, '/') != NULL || strchr(name, '\\') != NULL || strcmp(name, ".") == 0
        || strcmp(name, "..") == 0) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s: must be a plain file name without '/' or '\\', not '.' or '..'", path);
    }
    snprintf(path, sizeof path, "attachments[%zu].media_type", i);
    if (!media_type_valid(a->media_type ? a->media_type : "")) {
        return keten_err_set(
            KETEN_ERR_INVALID, "%s: must be a MIME type such as \"image/jpeg\"", path);
    }
    if (a->data.len > 0 && a->data.data == NULL) {
        snprintf(path, sizeof path, "attachments[%zu].data_base64", i);
        return keten_err_set(KETEN_ERR_MALFORMED, "%s: data is missing", path);
    }
    return KETEN_OK;
}

keten_err keten_signal_check(const Keten__Signal *signal, const keten_directory *dir)
{
    if (signal == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "signal: is missing");
    }
    const char *type = signal->type ? signal->type : "";
    const char *purpose = signal->purpose ? signal->purpose : "";
    if (!keten_label_valid(type)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "type: '%.*s' is not a category name ([a-z0-9][a-z0-9./-]{0,63})", SIGNAL_ECHO_MAX,
            type);
    }
    if (!keten_label_valid(purpose)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "purpose: '%.*s' is not a purpose name ([a-z0-9][a-z0-9./-]{0,63})", SIGNAL_ECHO_MAX,
            purpose);
    }
    if (dir != NULL && !keten_directory_category_registered(dir, type)) {
        return keten_err_set(KETEN_ERR_UNREGISTERED,
            "type: category '%s' is not registered in directory version %llu; "
            "ask the administrators to register it",
            type, (unsigned long long)keten_directory_version(dir));
    }
    if (dir != NULL && !keten_directory_purpose_registered(dir, purpose)) {
        return keten_err_set(KETEN_ERR_UNREGISTERED,
            "purpose: '%s' is not registered in directory version %llu; "
            "ask the administrators to register it",
            purpose, (unsigned long long)keten_directory_version(dir));
    }
    if (signal->observed_at > KETEN_TIME_MAX_MS) {
        return keten_err_set(KETEN_ERR_INVALID, "observed_at: %llu ms is after the year 9999",
            (unsigned long long)signal->observed_at);
    }
    keten_err e = check_text(
        "summary", signal->summary ? signal->summary : "", SIGNAL_SUMMARY_MAX, true, false);
    if (e != KETEN_OK) {
        return e;
    }
    const char *nature = signal->nature ? signal->nature : "";
    if (nature[0] != '\0' && strcmp(nature, "hard") != 0 && strcmp(nature, "soft") != 0) {
        return keten_err_set(KETEN_ERR_INVALID, "nature: must be \"hard\" or \"soft\", got '%.*s'",
            SIGNAL_ECHO_MAX, nature);
    }
    if (signal->grading != NULL) {
        e = check_grading(signal->grading);
        if (e != KETEN_OK) {
            return e;
        }
    } else if (strcmp(nature, "soft") == 0) {
        return keten_err_set(KETEN_ERR_INVALID,
            "grading: is required when nature is \"soft\" (e.g. {\"source\": \"B\", "
            "\"information\": \"2\"})");
    }
    const char *handling = signal->handling ? signal->handling : "";
    if (handling[0] != '\0' && !handling_valid(handling)) {
        return keten_err_set(KETEN_ERR_INVALID,
            "handling: must be one of TLP:CLEAR, TLP:GREEN, TLP:AMBER, TLP:AMBER+STRICT, "
            "TLP:RED; got '%.*s'",
            SIGNAL_ECHO_MAX, handling);
    }
    e = check_text("observed_by", signal->observed_by ? signal->observed_by : "",
        SIGNAL_OBSERVED_BY_MAX, false, false);
    if (e != KETEN_OK) {
        return e;
    }
    if (signal->n_subjects > SIGNAL_MAX_SUBJECTS) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "subjects: %zu given; at most %d allowed",
            signal->n_subjects, SIGNAL_MAX_SUBJECTS);
    }
    for (size_t i = 0; i < signal->n_subjects; i++) {
        e = check_subject(signal->subjects[i], i);
        if (e != KETEN_OK) {
            return e;
        }
    }
    if (signal->n_attachments > SIGNAL_MAX_ATTACHMENTS) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "attachments: %zu given; at most %d allowed",
            signal->n_attachments, SIGNAL_MAX_ATTACHMENTS);
    }
    for (size_t i = 0; i < signal->n_attachments; i++) {
        e = check_attachment(signal->attachments[i], i);
        if (e != KETEN_OK) {
            return e;
        }
    }
    return KETEN_OK;
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

static keten_err refuse_unknown_keys(json_t *obj, const char *prefix, const char *const *allowed)
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
            return keten_err_set(KETEN_ERR_JSON, "%s%s%.*s: unknown field; remove it", prefix,
                prefix[0] ? "." : "", SIGNAL_ECHO_MAX, key);
        }
    }
    return KETEN_OK;
}

/* A string member: absent is "" unless required. Copies it into *dst
 * (malloc) unless it is empty, in which case *dst keeps its default. */
static keten_err take_string(
    json_t *obj, const char *key, const char *path, bool required, char **dst)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required) {
            return keten_err_set(KETEN_ERR_INVALID, "%s: is required", path);
        }
        return KETEN_OK;
    }
    if (!json_is_string(v)) {
        return keten_err_set(KETEN_ERR_JSON, "%s: must be a string", path);
    }
    size_t n = json_string_length(v);
    if (n == 0) {
        return KETEN_OK;
    }
    if (memchr(json_string_value(v), '\0', n) != NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "%s: contains a NUL character", path);
    }
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "%s: copying %zu bytes", path, n);
    }
    memcpy(copy, json_string_value(v), n + 1);
    *dst = copy;
    return KETEN_OK;
}

static keten_err take_grading(json_t *obj, Keten__Signal *sig)
{
    json_t *g = json_object_get(obj, "grading");
    if (g == NULL) {
        return KETEN_OK;
    }
    if (!json_is_object(g)) {
        return keten_err_set(KETEN_ERR_JSON,
            "grading: must be an object like {\"source\": \"B\", \"information\": \"2\"}");
    }
    keten_err e = refuse_unknown_keys(g, "grading", grading_keys);
    if (e != KETEN_OK) {
        return e;
    }
    sig->grading = malloc(sizeof *sig->grading);
    if (sig->grading == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "grading");
    }
    keten__grading__init(sig->grading);
    e = take_string(g, "source", "grading.source", true, &sig->grading->source);
    if (e != KETEN_OK) {
        return e;
    }
    return take_string(g, "information", "grading.information", true, &sig->grading->information);
}

static keten_err take_subjects(json_t *obj, Keten__Signal *sig)
{
    json_t *arr = json_object_get(obj, "subjects");
    if (arr == NULL) {
        return KETEN_OK;
    }
    if (!json_is_array(arr)) {
        return keten_err_set(KETEN_ERR_JSON, "subjects: must be an array of {kind, value}");
    }
    size_t n = json_array_size(arr);
    if (n > SIGNAL_MAX_SUBJECTS) {
        return keten_err_set(
            KETEN_ERR_TOO_LARGE, "subjects: %zu given; at most %d allowed", n, SIGNAL_MAX_SUBJECTS);
    }
    if (n == 0) {
        return KETEN_OK;
    }
    sig->subjects = calloc(n, sizeof *sig->subjects);
    if (sig->subjects == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "subjects");
    }
    char prefix[SIGNAL_PATH_MAX];
    char path[2 * SIGNAL_PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(arr, i);
        snprintf(prefix, sizeof prefix, "subjects[%zu]", i);
        if (!json_is_object(item)) {
            return keten_err_set(KETEN_ERR_JSON, "%s: must be an object {kind, value}", prefix);
        }
        keten_err e = refuse_unknown_keys(item, prefix, subject_keys);
        if (e != KETEN_OK) {
            return e;
        }
        Keten__Subject *s = malloc(sizeof *s);
        if (s == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "%s", prefix);
        }
        keten__subject__init(s);
        sig->subjects[i] = s;
        sig->n_subjects = i + 1;
        snprintf(path, sizeof path, "%s.kind", prefix);
        e = take_string(item, "kind", path, true, &s->kind);
        if (e != KETEN_OK) {
            return e;
        }
        snprintf(path, sizeof path, "%s.value", prefix);
        e = take_string(item, "value", path, true, &s->value);
        if (e != KETEN_OK) {
            return e;
        }
    }
    return KETEN_OK;
}

static keten_err take_base64(json_t *item, const char *path, ProtobufCBinaryData *dst)
{
    json_t *v = json_object_get(item, "data_base64");
    if (v == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "%s: is required", path);
    }
    if (!json_is_string(v)) {
        return keten_err_set(KETEN_ERR_JSON, "%s: must be a base64 string", path);
    }
    size_t b64_len = json_string_length(v);
    if (b64_len == 0) {
        return KETEN_OK;
    }
    size_t cap = b64_len / 4 * 3 + 3;
    uint8_t *bin = malloc(cap);
    if (bin == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "%s: %zu bytes", path, cap);
    }
    size_t bin_len = 0;
    if (sodium_base642bin(bin, cap, json_string_value(v), b64_len, NULL, &bin_len, NULL,
            sodium_base64_VARIANT_ORIGINAL)
        != 0) {
        free(bin);
        return keten_err_set(KETEN_ERR_INVALID,
            "%s: is not valid base64 (standard alphabet with '=' padding, no line breaks)", path);
    }
    if (bin_len == 0) {
        free(bin);
        return KETEN_OK;
    }
    dst->data = bin;
    dst->len = bin_len;
    return KETEN_OK;
}

static keten_err take_attachments(json_t *obj, Keten__Signal *sig)
{
    json_t *arr = json_object_get(obj, "attachments");
    if (arr == NULL) {
        return KETEN_OK;
    }
    if (!json_is_array(arr)) {
        return keten_err_set(
            KETEN_ERR_JSON, "attachments: must be an array of {name, media_type, data_base64}");
    }
    size_t n = json_array_size(arr);
    if (n > SIGNAL_MAX_ATTACHMENTS) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "attachments: %zu given; at most %d allowed", n,
            SIGNAL_MAX_ATTACHMENTS);
    }
    if (n == 0) {
        return KETEN_OK;
    }
    sig->attachments = calloc(n, sizeof *sig->attachments);
    if (sig->attachments == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "attachments");
    }
    char prefix[SIGNAL_PATH_MAX];
    char path[2 * SIGNAL_PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(arr, i);
        snprintf(prefix, sizeof prefix, "attachments[%zu]", i);
        if (!json_is_object(item)) {
            return keten_err_set(
                KETEN_ERR_JSON, "%s: must be an object {name, media_type, data_base64}", prefix);
        }
        keten_err e = refuse_unknown_keys(item, prefix, attachment_keys);
        if (e != KETEN_OK) {
            return e;
        }
        Keten__Attachment *a = malloc(sizeof *a);
        if (a == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "%s", prefix);
        }
        keten__attachment__init(a);
        sig->attachments[i] = a;
        sig->n_attachments = i + 1;
        snprintf(path, sizeof path, "%s.name", prefix);
        e = take_string(item, "name", path, true, &a->name);
        if (e != KETEN_OK) {
            return e;
        }
        snprintf(path, sizeof path, "%s.media_type", prefix);
        e = take_string(item, "media_type", path, true, &a->media_type);
        if (e != KETEN_OK) {
            return e;
        }
        snprintf(path, sizeof path, "%s.data_base64", prefix);
        e = take_base64(item, path, &a->data);
        if (e != KETEN_OK) {
            return e;
        }
    }
    return KETEN_OK;
}

static keten_err take_observed_at(json_t *obj, Keten__Signal *sig)
{
    json_t *v = json_object_get(obj, "observed_at");
    if (v == NULL) {
        return KETEN_OK;
    }
    if (!json_is_string(v)) {
        return keten_err_set(KETEN_ERR_JSON,
            "observed_at: must be an ISO 8601 UTC string like \"2026-11-19T10:30:00Z\"");
    }
    const char *s = json_string_value(v);
    uint64_t ms = 0;
    if (json_string_length(v) != strlen(s) || keten_time_parse(s, &ms) != KETEN_OK) {
        return keten_err_set(KETEN_ERR_INVALID,
            "observed_at: '%.*s' is not ISO 8601 UTC (use e.g. \"2026-11-19T10:30:00Z\")",
            SIGNAL_ECHO_MAX, s);
    }
    sig->observed_at = ms;
    return KETEN_OK;
}

static keten_err signal_from_object(json_t *root, Keten__Signal *sig)
{
    keten_err e = refuse_unknown_keys(root, "", top_keys);
    if (e == KETEN_OK) {
        e = take_string(root, "type", "type", true, &sig->type);
    }
    if (e == KETEN_OK) {
        e = take_string(root, "purpose", "purpose", true, &sig->purpose);
    }
    if (e == KETEN_OK) {
        e = take_string(root, "summary", "summary", false, &sig->summary);
    }
    if (e == KETEN_OK) {
        e = take_string(root, "nature", "nature", false, &sig->nature);
    }
    if (e == KETEN_OK) {
        e = take_grading(root, sig);
    }
    if (e == KETEN_OK) {
        e = take_string(root, "handling", "handling", false, &sig->handling);
    }
    if (e == KETEN_OK) {
        e = take_observed_at(root, sig);
    }
    if (e == KETEN_OK) {
        e = take_string(root, "observed_by", "observed_by", false, &sig->observed_by);
    }
    if (e == KETEN_OK) {
        e = take_subjects(root, sig);
    }
    if (e == KETEN_OK) {
        e = take_attachments(root, sig);
    }
    return e;
}

keten_err keten_signal_from_json(const char *json, size_t len, Keten__Signal **out)
{
    *out = NULL;
    if (len > KETEN_SIGNAL_JSON_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "signal JSON is %zu bytes; at most %u allowed",
            len, KETEN_SIGNAL_JSON_MAX);
    }
    if (json == NULL) {
        return keten_err_set(KETEN_ERR_JSON, "signal JSON: no input");
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_duplicate_key) {
            char key[SIGNAL_ECHO_MAX + 1];
            duplicate_key_name(json, len, jerr.position, key, sizeof key);
            return keten_err_set(KETEN_ERR_JSON,
                "%s: duplicate field (line %d, column %d); give each field once",
                key[0] ? key : "(key)", jerr.line, jerr.column);
        }
        return keten_err_set(KETEN_ERR_JSON, "signal JSON: %s (line %d, column %d)", jerr.text,
            jerr.line, jerr.column);
    }
    keten_err e = KETEN_OK;
    Keten__Signal *sig = NULL;
    if (!json_is_object(root)) {
        e = keten_err_set(KETEN_ERR_JSON, "signal JSON: must be an object {\"type\": ...}");
        goto out;
    }
    sig = malloc(sizeof *sig);
    if (sig == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "signal");
        goto out;
    }
    keten__signal__init(sig);
    e = signal_from_object(root, sig);
    if (e != KETEN_OK) {
        goto out;
    }
    e = keten_signal_check(sig, NULL);
    if (e != KETEN_OK) {
        goto out;
    }
    *out = sig;
    sig = NULL;
out:
    keten_signal_free(&sig);
    json_decref(root);
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

void *keten_signal_to_jansson(const Keten__Signal *signal)
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

keten_err keten_signal_to_json(const Keten__Signal *signal, char **out)
{
    *out = NULL;
    json_t *root = keten_signal_to_jansson(signal);
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

keten_err keten_signal_pack(const Keten__Signal *signal, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    keten_err e = keten_signal_check(signal, NULL);
    if (e != KETEN_OK) {
        return e;
    }
    return keten_pb_pack(&signal->base, out, out_len);
}

keten_err keten_signal_unpack(const uint8_t *buf, size_t len, Keten__Signal **out)
{
    *out = NULL;
    Keten__Signal *sig = NULL;
    keten_err e = KETEN_PB_UNPACK_CANONICAL(
        keten__signal, buf, len, KETEN_ENVELOPE_MAX, "signal payload", &sig);
    if (e != KETEN_OK) {
        return e;
    }
    e = keten_signal_check(sig, NULL);
    if (e != KETEN_OK) {
        keten_signal_free(&sig);
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

void keten_signal_free(Keten__Signal **signal_p)
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
