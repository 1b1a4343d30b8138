/*
 * log.h - one logging module: syslog levels, logfmt lines on stderr.
 *
 *   level=warn prog=keten-node msg="broker unreachable" node=politie-mn
 *
 * The level is checked before arguments are formatted (KETEN_LOG macro).
 * Never log a secret, a passphrase or signal content: only ids, codes, sizes
 * and hashes.
 *
 * Fields are passed structurally, and the logger escapes every value
 * itself: a caller never quotes or escapes anything. The field template is
 * a list of `key=VALUE` separated by single spaces:
 *
 *   KETEN_LOG(KETEN_LOG_WARNING, "delivery refused", "msg_id=%s error=\"%s\" n=%zu",
 *       id, keten_err_detail(), n);
 *
 * - a key is [A-Za-z0-9_.-]+ and is written as it is;
 * - a VALUE is a printf template (the usual conversions, type-checked by the
 *   compiler) up to the next space, or between double quotes when it holds
 *   spaces of its own (`action="publish a new directory"`); it is formatted
 *   on its own (at most KETEN_LOG_VALUE_MAX bytes) and then escaped;
 * - a value is written bare when it is non-empty printable ASCII without
 *   space, `"`, `\` or `=`; otherwise (and always when its template was
 *   quoted) between double quotes, with `"` and `\` escaped as `\"` and
 *   `\\`, newline, carriage return and tab as `\n`, `\r`, `\t`, every other
 *   control byte, the two bytes of a C1 control character (U+0080..U+009F)
 *   and every byte that is not part of valid UTF-8 as `\xHH`.
 * So no value, whatever a peer or a file put into it, can end the line,
 * start a field of its own or break the quoting: one call, one line.
 * A template that does not follow this shape is a programming error; the
 * line then ends with `log_error="bad field template"` and the fields
 * before it.
 *
 * The message (msg) is a short fixed text; it is escaped the same way.
 * A line is at most KETEN_LOG_LINE_MAX bytes with its newline; a value that
 * does not fit is cut (never inside an escape) and the line ends with
 * `truncated=1`.
 *
 * Thread-safe: each line is written with one write(2); no state but the
 * program name and threshold set once at start.
 */
#ifndef KETEN_LOG_H
#define KETEN_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

enum keten_log_level {
    KETEN_LOG_ERR = 3,
    KETEN_LOG_WARNING = 4,
    KETEN_LOG_NOTICE = 5,
    KETEN_LOG_INFO = 6,
    KETEN_LOG_DEBUG = 7,
};

#define KETEN_LOG_LINE_MAX 4096
#define KETEN_LOG_VALUE_MAX 1024

extern int keten_log_threshold; /* lines above this level are dropped */

/* Program name printed as prog=...; default "keten". */
void keten_log_init(const char *prog, int threshold);

/* Write one line: msg, then the fields of tmpl (see above). tmpl may be
 * NULL for a line without fields. */
void keten_log_write(int level, const char *msg, const char *tmpl, ...) KETEN_PRINTF(3, 4);

/* The line keten_log_write would write (with its newline) into out, NUL
 * terminated; returns its length. For tests. out_size >= 2. */
size_t keten_log_format(char *out, size_t out_size, int level, const char *msg, const char *tmpl,
    ...) KETEN_PRINTF(5, 6);
size_t keten_log_vformat(char *out, size_t out_size, int level, const char *msg, const char *tmpl,
    va_list ap) KETEN_PRINTF(5, 0);

#define KETEN_LOG(level, msg, ...)                                                               \
    do {                                                                                         \
        if ((level) <= keten_log_threshold) {                                                    \
            keten_log_write((level), (msg), __VA_ARGS__);                                        \
        }                                                                                        \
    } while (0)

#endif
