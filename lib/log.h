/*
 * log.h - one logging module: syslog levels, logfmt lines on stderr.
 *
 *   level=warn prog=keten-node msg="broker unreachable" node=politie-mn
 *
 * The level is checked before arguments are formatted (KETEN_LOG macro).
 * Never log a secret, a passphrase or signal content: only ids, codes, sizes
 * and hashes. Values passed with keten_log_kv() are quoted and escaped.
 * Thread-safe: each line is written with one write(2).
 */
#ifndef KETEN_LOG_H
#define KETEN_LOG_H

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

extern int keten_log_threshold; /* lines above this level are dropped */

/* Program name printed as prog=...; default "keten". */
void keten_log_init(const char *prog, int threshold);

/* msg is a short fixed text; fmt adds logfmt fields ("node=%s n=%d"),
 * already formatted as key=value pairs; string values should go through
 * keten_log_quote(). */
void keten_log_write(int level, const char *msg, const char *fmt, ...) KETEN_PRINTF(3, 4);

#define KETEN_LOG(level, msg, ...)                                                               \
    do {                                                                                         \
        if ((level) <= keten_log_threshold) {                                                    \
            keten_log_write((level), (msg), __VA_ARGS__);                                        \
        }                                                                                        \
    } while (0)

/* Copy s into out as a logfmt value: bare if safe, else quoted with \" and
 * \\ escaped and control characters replaced by '?'. */
void keten_log_quote(const char *s, char *out, size_t out_size);

#endif
