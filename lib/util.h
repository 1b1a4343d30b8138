/*
 * util.h - small helpers every part of keten needs: files with size caps and
 * permission checks, hex, clocks, name syntax.
 *
 * Ownership: buffers returned through `uint8_t **out` are malloc()ed and
 * owned by the caller (free()); keten_file_read_secret() returns
 * sodium_malloc() memory, released with sodium_free().
 * Thread safety: all functions are reentrant.
 */
#ifndef KETEN_UTIL_H
#define KETEN_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* libsodium is initialised when the program starts (a constructor in
 * util.c); keten_init() reports whether that worked. Call it first in main(). */
keten_err keten_init(void) KETEN_MUST_CHECK;

/* Read a whole file of at most max bytes. KETEN_ERR_NOT_FOUND, KETEN_ERR_IO,
 * KETEN_ERR_TOO_LARGE. An empty file is returned as a 0-byte buffer (non-NULL). */
keten_err keten_file_read(const char *path, size_t max, uint8_t **out, size_t *out_len)
    KETEN_MUST_CHECK;

/* Read a secret file (key, passphrase) of at most max bytes into
 * sodium_malloc memory; refuses (KETEN_ERR_PERMISSIONS) a file that is not a
 * regular file or is readable or writable by group or others, and never
 * follows a symbolic link. The buffer is NUL-terminated after out_len bytes. */
/* The first bytes of the regular file at path, at most max, into buf
 * (*len of them): false when it cannot be opened or read, is a symbolic
 * link or is not a regular file. Opened without blocking, so a FIFO never
 * waits for a writer; for telling what a file is before reading it whole. */
bool keten_file_peek(const char *path, uint8_t *buf, size_t max, size_t *len);

keten_err keten_file_read_secret(const char *path, size_t max, uint8_t **out, size_t *out_len)
    KETEN_MUST_CHECK;

/* How group or others may use a file of this mode, for a message:
 * "readable" (a read bit), else "writable" (a write bit), else "accessible".
 * Static text. */
const char *keten_file_mode_access(unsigned mode);

/* Write data to path atomically (temporary file, fsync, rename, fsync of
 * the directory): after a crash path holds the old contents or the new,
 * never a part (a temporary file path.tmpXXXXXX may be left beside it).
 * mode is the new file's mode. With exclusive, an existing path is
 * KETEN_ERR_EXISTS: the temporary file is hard-linked to path, which never
 * replaces an existing name, so the check and the creation are one step (on
 * a file system without hard links, one O_EXCL open of path itself). In a
 * build with test hooks, KETEN_TEST_CRASH_WRITE=N or N-partial kills the
 * process after or during its N-th call (util.c). */
keten_err keten_file_write(const char *path, const void *data, size_t len, unsigned mode,
    bool exclusive) KETEN_MUST_CHECK;

/* Make a directory (mode) if it does not exist. */
keten_err keten_mkdir(const char *path, unsigned mode) KETEN_MUST_CHECK;

/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void keten_hex(const uint8_t *in, size_t len, char *out);

/* Parse exactly 2*len hex characters; KETEN_ERR_INVALID otherwise. */
keten_err keten_unhex(const char *hex, uint8_t *out, size_t len) KETEN_MUST_CHECK;

/* Wall clock, ms since the Unix epoch (UTC). */
uint64_t keten_now_ms(void);

/* Monotonic clock in ms, for timeouts. */
uint64_t keten_mono_ms(void);
/* The same clock in microseconds (durations of commits). */
uint64_t keten_mono_us(void);

/* ISO 8601 UTC ("2026-11-19T10:30:00.000Z") of ms into out (at least 32 bytes). */
void keten_time_iso(uint64_t ms, char *out, size_t out_size);

/* The last millisecond that ISO 8601 with a four-digit year can show:
 * 9999-12-31T23:59:59.999Z. Later times are refused everywhere. */
#define KETEN_TIME_MAX_MS 253402300799999ull

/* Parse ISO 8601 UTC in RFC 3339's form ("YYYY-MM-DDTHH:MM:SS[.fff]Z" or
 * "+00:00": exactly these digits, no sign or space inside a field, seconds
 * 00 to 59 (no leap second); digits after the third of the fraction are
 * ignored), or a plain number of ms; at most KETEN_TIME_MAX_MS.
 * KETEN_ERR_INVALID naming the text otherwise. */
keten_err keten_time_parse(const char *s, uint64_t *ms_out) KETEN_MUST_CHECK;

/* Copy text that may hold what another party sent (a path, a parser's
 * message, a broker's error detail) into out (size >= 1, NUL-terminated) as
 * valid UTF-8 without control characters (C0, DEL, C1) and without the
 * bidirectional controls that reorder text (U+202A-U+202E, U+2066-U+2069):
 * every byte that is not part of such a character becomes '?', and the text
 * is cut only between characters. Safe to print on a terminal and to put in
 * JSON. */
void keten_text_clean(const char *in, char *out, size_t size);

/* [a-z0-9-]{1,32}: node ids and roles. */
bool keten_name_valid(const char *s);

/* [a-z0-9][a-z0-9./-]{0,63}: registered categories and purposes. */
bool keten_label_valid(const char *s);

/* Levenshtein distance of two names, for "did you mean" hints; SIZE_MAX
 * when either is longer than KETEN_EDIT_DISTANCE_MAX bytes. */
#define KETEN_EDIT_DISTANCE_MAX 64
size_t keten_edit_distance(const char *a, const char *b);

#endif
