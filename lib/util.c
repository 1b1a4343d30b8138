#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keten.h"

static keten_err read_fd(int fd, const char *path, size_t max, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return keten_err_set(KETEN_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        }
        if (n == 0) {
            return keten_err_set(KETEN_ERR_IO, "%s changed while being read", path);
        }
        got += (size_t)n;
    }
    (void)max;
    return KETEN_OK;
}

bool keten_file_peek(const char *path, uint8_t *buf, size_t max, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    while (ok && *len < max) {
        ssize_t n = read(fd, buf + *len, max - *len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            ok = n == 0;
            break;
        }
        *len += (size_t)n;
    }
    close(fd);
    return ok;
}

static keten_err open_and_size(const char *path, int flags, size_t max, int *fd_out,
    struct stat *st)
{
    /* O_NONBLOCK: opening a FIFO (or a device) for reading would wait for a
     * writer, for ever; it is refused below as not a regular file instead
     * (reading a regular file never blocks, flag or not). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);
    if (fd < 0) {
        if (errno == ENOENT) {
            return keten_err_set(KETEN_ERR_NOT_FOUND, "%s does not exist", path);
        }
        if (errno == ELOOP) {
            return keten_err_set(KETEN_ERR_PERMISSIONS, "%s is a symbolic link; refusing it",
                path);
        }
        return keten_err_set(KETEN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    if (fstat(fd, st) != 0) {
        keten_err e = keten_err_set(KETEN_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return e;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return keten_err_set(KETEN_ERR_IO, "%s is not a regular file", path);
    }
    if ((uint64_t)st->st_size > (uint64_t)max) {
        close(fd);
        return keten_err_set(KETEN_ERR_TOO_LARGE, "%s is %lld bytes; at most %zu allowed", path,
            (long long)st->st_size, max);
    }
    *fd_out = fd;
    return KETEN_OK;
}

keten_err keten_file_read(const char *path, size_t max, uint8_t **out, size_t *out_len)
{
    int fd;
    struct stat st;
    keten_err e = open_and_size(path, 0, max, &fd, &st);
    if (e != KETEN_OK) {
        return e;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len + 1);
    if (buf == NULL) {
        close(fd);
        return keten_err_set(KETEN_ERR_NOMEM, "reading %s", path);
    }
    e = read_fd(fd, path, max, buf, len);
    close(fd);
    if (e != KETEN_OK) {
        free(buf);
        return e;
    }
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return KETEN_OK;
}

const char *keten_file_mode_access(unsigned mode)
{
    if ((mode & (S_IRGRP | S_IROTH)) != 0) {
        return "readable";
    }
    return (mode & (S_IWGRP | S_IWOTH)) != 0 ? "writable" : "accessible";
}

keten_err keten_file_read_secret(const char *path, size_t max, uint8_t **out, size_t *out_len)
{
    int fd;
    struct stat st;
    keten_err e = open_and_size(path, O_NOFOLLOW, max, &fd, &st);
    if (e != KETEN_OK) {
        return e;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        close(fd);
        return keten_err_set(KETEN_ERR_PERMISSIONS,
            "%s is %s by %s (mode %03o); a secret file must be for its owner only: run "
            "chmod 600 %s",
            path, keten_file_mode_access(st.st_mode),
            (st.st_mode & S_IRWXO) ? "others" : "its group", (unsigned)(st.st_mode & 0777), path);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = sodium_malloc(len + 1);
    if (buf == NULL) {
        close(fd);
        return keten_err_set(KETEN_ERR_NOMEM, "reading %s", path);
    }
    e = read_fd(fd, path, max, buf, len);
    close(fd);
    if (e != KETEN_OK) {
        sodium_free(buf);
        return e;
    }
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return KETEN_OK;
}

static keten_err fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "fsync of directory");
    }
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (dfd < 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot open the directory of %s: %s", path,
            strerror(errno));
    }
    int rc = fsync(dfd);
    close(dfd);
    if (rc != 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot fsync the directory of %s: %s", path,
            strerror(errno));
    }
    return KETEN_OK;
}

static keten_err write_all(int fd, const char *path, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return keten_err_set(errno == ENOSPC ? KETEN_ERR_STORE_FULL : KETEN_ERR_IO,
                "cannot write %s: %s", path, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot fsync %s: %s", path, strerror(errno));
    }
    return KETEN_OK;
}

#ifdef KETEN_TEST_HOOKS
/* The test hook KETEN_TEST_CRASH_WRITE (only in a build with
 * -Dtest_hooks=true): "N" kills the process with SIGKILL right after its
 * N-th keten_file_write() has completed (renamed and synced), "N-partial"
 * during the N-th, when half of its bytes are written; so that a test can
 * stop a command between any two of its writes, or in the middle of one,
 * without relying on timing. */
#define TEST_CRASH_WRITE_ENV "KETEN_TEST_CRASH_WRITE"
static atomic_ulong test_writes;

static bool test_crash_due(unsigned long n, bool partial)
{
    const char *hook = getenv(TEST_CRASH_WRITE_ENV);
    if (hook == NULL) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    unsigned long want = strtoul(hook, &end, 10);
    if (errno != 0 || end == hook || want != n) {
        return false;
    }
    return partial ? strcmp(end, "-partial") == 0 : *end == '\0';
}

static void test_crash_if_due(unsigned long n, bool partial)
{
    if (test_crash_due(n, partial)) {
        raise(SIGKILL);
    }
}
#endif

/* The N-partial hook: half of data into fd, then SIGKILL. */
static void test_crash_half_way(
    int fd, const char *path, const void *data, size_t len, unsigned long n_write)
{
#ifdef KETEN_TEST_HOOKS
    if (test_crash_due(n_write, true)) {
        (void)write_all(fd, path, data, len / 2);
        raise(SIGKILL);
    }
#else
    (void)fd;
    (void)path;
    (void)data;
    (void)len;
    (void)n_write;
#endif
}

/* The data into a new temporary file beside path (mode), synced; *tmp_out
 * (malloc()ed) names it. */
static keten_err write_temp(const char *path, const void *data, size_t len, unsigned mode,
    unsigned long n_write, char **tmp_out)
{
    keten_err e;
    size_t tlen = strlen(path) + 16;
    char *tmp = malloc(tlen);
    if (tmp == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "writing %s", path);
    }
    snprintf(tmp, tlen, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot create a temporary file beside %s: %s", path,
            strerror(errno));
        free(tmp);
        return e;
    }
    if (fchmod(fd, mode) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot chmod %s: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    test_crash_half_way(fd, path, data, len, n_write);
    e = write_all(fd, path, data, len);
    if (close(fd) != 0 && e == KETEN_OK) {
        e = keten_err_set(KETEN_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
    }
    if (e != KETEN_OK) {
        goto fail;
    }
    *tmp_out = tmp;
    return KETEN_OK;
fail:
    unlink(tmp);
    free(tmp);
    return e;
}

/* exclusive on a file system without hard links: create the final name
 * itself (O_EXCL), so that the existence check and the creation cannot
 * race; a partial file is removed on failure. */
static keten_err write_exclusive_in_place(
    const char *path, const void *data, size_t len, unsigned mode, unsigned long n_write)
{
    keten_err e;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST) {
            return keten_err_set(
                KETEN_ERR_EXISTS, "%s already exists; refusing to overwrite it", path);
        }
        return keten_err_set(KETEN_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    }
    test_crash_half_way(fd, path, data, len, n_write);
    e = write_all(fd, path, data, len);
    if (close(fd) != 0 && e == KETEN_OK) {
        e = keten_err_set(KETEN_ERR_IO, "cannot close %s: %s", path, strerror(errno));
    }
    if (e != KETEN_OK) {
        unlink(path);
        return e;
    }
    return fsync_dir_of(path);
}

keten_err keten_file_write(const char *path, const void *data, size_t len, unsigned mode,
    bool exclusive)
{
    unsigned long n_write = 0;
#ifdef KETEN_TEST_HOOKS
    n_write = atomic_fetch_add(&test_writes, 1) + 1;
#endif
    char *tmp = NULL;
    keten_err e = write_temp(path, data, len, mode, n_write, &tmp);
    if (e != KETEN_OK) {
        return e;
    }
    if (exclusive) {
        /* link() never replaces an existing name (nor follows a symbolic
         * link there): the check and the creation are one step, and the
         * file appears whole or not at all. */
        if (link(tmp, path) != 0) {
            int err = errno;
            unlink(tmp);
            free(tmp);
            if (err == EEXIST) {
                return keten_err_set(
                    KETEN_ERR_EXISTS, "%s already exists; refusing to overwrite it", path);
            }
            if (err == EPERM || err == EOPNOTSUPP || err == EMLINK) {
                e = write_exclusive_in_place(path, data, len, mode, n_write);
                goto hooked;
            }
            return keten_err_set(KETEN_ERR_IO, "cannot create %s: %s", path, strerror(err));
        }
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return e;
    }
    free(tmp);
    e = fsync_dir_of(path);
hooked:
#ifdef KETEN_TEST_HOOKS
    if (e == KETEN_OK) {
        test_crash_if_due(n_write, false);
    }
#endif
    return e;
}

keten_err keten_mkdir(const char *path, unsigned mode)
{
    if (mkdir(path, mode) == 0) {
        return KETEN_OK;
    }
    if (errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            return KETEN_OK;
        }
        return keten_err_set(KETEN_ERR_EXISTS, "%s exists and is not a directory", path);
    }
    return keten_err_set(KETEN_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
}

void keten_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

keten_err keten_unhex(const char *hex, uint8_t *out, size_t len)
{
    if (strlen(hex) != 2 * len) {
        return keten_err_set(KETEN_ERR_INVALID, "expected %zu hex characters, got %zu", 2 * len,
            strlen(hex));
    }
    for (size_t i = 0; i < len; i++) {
        int hi = hexval(hex[2 * i]);
        int lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return keten_err_set(KETEN_ERR_INVALID, "'%s' is not hexadecimal", hex);
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return KETEN_OK;
}

uint64_t keten_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t keten_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t keten_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void keten_time_iso(uint64_t ms, char *out, size_t out_size)
{
    time_t secs = (time_t)(ms / 1000u);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, out_size, "invalid-time");
        return;
    }
    snprintf(out, out_size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000u));
}

/* The value of n decimal digits (checked by the caller). */
static int time_digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

keten_err keten_time_parse(const char *s, uint64_t *ms_out)
{
    size_t n = strlen(s);
    if (n > 0 && n <= 20 && strspn(s, "0123456789") == n) {
        errno = 0;
        unsigned long long v = strtoull(s, NULL, 10);
        if (errno != 0 || v > KETEN_TIME_MAX_MS) {
            return keten_err_set(KETEN_ERR_INVALID, "time '%s' is out of range", s);
        }
        *ms_out = v;
        return KETEN_OK;
    }
    /* RFC 3339's date-time: exactly these digits and separators (no sign,
     * space or missing digit inside a field, as sscanf's %d would take) */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    const size_t used = sizeof shape - 1;
    bool ok = n <= 40 && n >= used;
    for (size_t i = 0; ok && i < used; i++) {
        ok = shape[i] == 'd' ? s[i] >= '0' && s[i] <= '9' : s[i] == shape[i];
    }
    if (!ok) {
        return keten_err_set(KETEN_ERR_INVALID,
            "time '%s' is not ISO 8601 UTC (use 2026-11-19T10:30:00Z)", s);
    }
    int y = time_digits(s, 4), mo = time_digits(s + 5, 2), d = time_digits(s + 8, 2),
        h = time_digits(s + 11, 2), mi = time_digits(s + 14, 2), sec = time_digits(s + 17, 2);
    unsigned frac = 0;
    const char *p = s + used;
    if (*p == '.') {
        p++;
        unsigned digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3) {
                frac = frac * 10 + (unsigned)(*p - '0');
            }
            digits++;
            p++;
        }
        if (digits == 0) {
            return keten_err_set(KETEN_ERR_INVALID, "time '%s' has an empty fraction", s);
        }
        for (; digits < 3; digits++) {
            frac *= 10;
        }
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0) {
        return keten_err_set(KETEN_ERR_INVALID, "time '%s' must be UTC (end it with Z)", s);
    }
    /* sec 60 (a leap second) too: ms since 1970 cannot hold one, and it
     * would read as the next minute's 00 (two texts for one time) */
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59
        || sec > 59 || h < 0 || mi < 0 || sec < 0) {
        return keten_err_set(KETEN_ERR_INVALID, "time '%s' is out of range", s);
    }
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
        .tm_min = mi, .tm_sec = sec };
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != d) {
        return keten_err_set(KETEN_ERR_INVALID, "time '%s' is not a real date", s);
    }
    *ms_out = (uint64_t)t * 1000u + frac;
    return KETEN_OK;
}

void keten_text_clean(const char *in, char *out, size_t size)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)in;
    while (*p != '\0' && o + 1 < size) {
        unsigned char c = *p;
        size_t n = c < 0x80          ? 1
            : c >= 0xc2 && c <= 0xdf ? 2
            : c >= 0xe0 && c <= 0xef ? 3
            : c >= 0xf0 && c <= 0xf4 ? 4
                                     : 0;
        bool ok = n > 0 && (n == 1 ? c >= 0x20 && c != 0x7f : true);
        for (size_t i = 1; ok && i < n; i++) {
            ok = (p[i] & 0xc0) == 0x80;
        }
        if (ok && n == 2) { /* no C1 control (U+0080..U+009F) */
            ok = !(c == 0xc2 && p[1] < 0xa0);
        } else if (ok && n == 3) {
            /* no overlong form, no surrogate, no bidirectional control
             * (U+202A..U+202E, U+2066..U+2069: they reorder what follows) */
            ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0)
                && !(c == 0xe2 && p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae)
                && !(c == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9);
        } else if (ok && n == 4) { /* no overlong form, nothing past U+10FFFF */
            ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
        }
        if (!ok) {
            out[o++] = '?';
            p++;
            continue;
        }
        if (o + n >= size) {
            break;
        }
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
}

bool keten_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > KETEN_NAME_MAX) {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

bool keten_label_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > KETEN_LABEL_MAX) {
        return false;
    }
    if (strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") < 1) {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-./") == n;
}

/* libsodium must be initialised before sodium_malloc() and the random
 * generator are used; every program linking libketen links this file, so the
 * library initialises itself before main(). sodium_init() is idempotent and
 * thread-safe; keten_init() lets a program check the result. */
static int sodium_state = -1;

__attribute__((constructor)) static void keten_init_sodium(void)
{
    sodium_state = sodium_init() < 0 ? -1 : 0;
}

keten_err keten_init(void)
{
    if (sodium_state < 0 && sodium_init() < 0) {
        return keten_err_set(KETEN_ERR_CRYPTO, "libsodium could not be initialised");
    }
    sodium_state = 0;
    return KETEN_OK;
}

size_t keten_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > KETEN_EDIT_DISTANCE_MAX || lb > KETEN_EDIT_DISTANCE_MAX) {
        return SIZE_MAX;
    }
    size_t prev[KETEN_EDIT_DISTANCE_MAX + 1], cur[KETEN_EDIT_DISTANCE_MAX + 1];
    for (size_t j = 0; j <= lb; j++) {
        prev[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            size_t del = prev[j] + 1;
            size_t ins = cur[j - 1] + 1;
            size_t m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}
