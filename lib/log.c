#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

int keten_log_threshold = KETEN_LOG_INFO;
static const char *log_prog = "keten";

void keten_log_init(const char *prog, int threshold)
{
    log_prog = prog;
    keten_log_threshold = threshold;
}

static const char *level_name(int level)
{
    switch (level) {
    case KETEN_LOG_ERR:
        return "error";
    case KETEN_LOG_WARNING:
        return "warn";
    case KETEN_LOG_NOTICE:
        return "notice";
    case KETEN_LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

/* ---- the line being built ------------------------------------------------ */

typedef struct line {
    char *buf;
    size_t cap; /* bytes usable for text: the newline and NUL are kept apart */
    size_t len;
    bool truncated;
} line;

static bool put(line *l, const char *s, size_t n)
{
    if (l->len + n > l->cap) {
        l->truncated = true;
        return false;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (need > n) {
        return 0;
    }
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0u) != 0x80u) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0; /* overlong, beyond Unicode, or a surrogate */
    }
    return need;
}

static bool bare_ok(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '=') {
            return false;
        }
    }
    return true;
}

/* Append s[0..n) as a logfmt value (log.h says how). A value that does
 * not fit is cut before the escape that would not fit, and quoted. */
static void put_value(line *l, const char *s, size_t n, bool quote)
{
    if (!quote && bare_ok(s, n)) {
        if (!put(l, s, n)) {
            /* Cut: as much as fits. */
            size_t room = l->cap > l->len ? l->cap - l->len : 0;
            memcpy(l->buf + l->len, s, room);
            l->len += room;
        }
        return;
    }
    if (l->len + 2 > l->cap) { /* not even room for the two quotes */
        l->truncated = true;
        return;
    }
    put(l, "\"", 1);
    /* Keep room for the closing quote. */
    size_t cap = l->cap;
    l->cap = cap - 1;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        char esc[5];
        size_t en = 0;
        size_t adv = 1;
        const char *src = esc;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            en = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            en = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            en = 4;
        } else if (c < 0x80) {
            src = s + i;
            en = 1;
        } else {
            size_t k = utf8_len(u + i, n - i);
            if (k == 2 && c == 0xc2 && u[i + 1] < 0xa0) {
                k = 0; /* a C1 control (U+0080..U+009F, CSI among them): escaped bytes */
            }
            if (k > 0) {
                src = s + i;
                en = k;
                adv = k;
            } else {
                snprintf(esc, sizeof esc, "\\x%02x", c);
                en = 4;
            }
        }
        if (!put(l, src, en)) {
            break;
        }
        i += adv;
    }
    l->cap = cap;
    l->buf[l->len++] = '"';
}

/* ---- one value: its printf template, one conversion at a time ------------ */

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#endif

/* Format the one conversion spec[0..n) (starting at '%') with its
 * arguments from ap into out; false for a conversion the logger does not
 * take (%n, wide strings, an unknown letter). */
static bool one_conversion(const char *spec, size_t n, va_list *ap, char *out, size_t out_size)
{
    char f[32];
    if (n >= sizeof f) {
        return false;
    }
    memcpy(f, spec, n);
    f[n] = '\0';
    int star[2] = { 0, 0 };
    int nstar = 0;
    size_t i = 1;
    while (i < n && strchr("-+ #0'", f[i]) != NULL) {
        i++;
    }
    for (int part = 0; part < 2; part++) {
        if (part == 1) {
            if (i < n && f[i] == '.') {
                i++;
            } else {
                break;
            }
        }
        if (i < n && f[i] == '*') {
            star[nstar++] = va_arg(*ap, int);
            i++;
        } else {
            while (i < n && f[i] >= '0' && f[i] <= '9') {
                i++;
            }
        }
    }
    char len[3] = { 0 };
    size_t nl = 0;
    while (i < n && nl < 2 && strchr("hljztL", f[i]) != NULL) {
        len[nl++] = f[i++];
    }
    if (i + 1 != n) {
        return false;
    }
    char conv = f[i];
#define EMIT(val)                                                                                  \
    (nstar == 0          ? snprintf(out, out_size, f, (val))                                       \
            : nstar == 1 ? snprintf(out, out_size, f, star[0], (val))                              \
                         : snprintf(out, out_size, f, star[0], star[1], (val)))
    int r = -1;
    switch (conv) {
    case 'd':
    case 'i':
        if (strcmp(len, "l") == 0) {
            r = EMIT(va_arg(*ap, long));
        } else if (strcmp(len, "ll") == 0) {
            r = EMIT(va_arg(*ap, long long));
        } else if (strcmp(len, "j") == 0) {
            r = EMIT(va_arg(*ap, intmax_t));
        } else if (strcmp(len, "z") == 0) {
            r = EMIT(va_arg(*ap, ssize_t));
        } else if (strcmp(len, "t") == 0) {
            r = EMIT(va_arg(*ap, ptrdiff_t));
        } else if (len[0] == '\0' || len[0] == 'h') {
            r = EMIT(va_arg(*ap, int));
        }
        break;
    case 'u':
    case 'o':
    case 'x':
    case 'X':
        if (strcmp(len, "l") == 0) {
            r = EMIT(va_arg(*ap, unsigned long));
        } else if (strcmp(len, "ll") == 0) {
            r = EMIT(va_arg(*ap, unsigned long long));
        } else if (strcmp(len, "j") == 0) {
            r = EMIT(va_arg(*ap, uintmax_t));
        } else if (strcmp(len, "z") == 0) {
            r = EMIT(va_arg(*ap, size_t));
        } else if (strcmp(len, "t") == 0) {
            r = EMIT(va_arg(*ap, ptrdiff_t));
        } else if (len[0] == '\0' || len[0] == 'h') {
            r = EMIT(va_arg(*ap, unsigned int));
        }
        break;
    case 'c':
        if (len[0] == '\0') {
            r = EMIT(va_arg(*ap, int));
        }
        break;
    case 's':
        if (len[0] == '\0') {
            const char *sv = va_arg(*ap, const char *);
            r = EMIT(sv != NULL ? sv : "(null)");
        }
        break;
    case 'p':
        if (len[0] == '\0') {
            r = EMIT(va_arg(*ap, void *));
        }
        break;
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G':
    case 'a':
    case 'A':
        if (strcmp(len, "L") == 0) {
            r = EMIT(va_arg(*ap, long double));
        } else if (len[0] == '\0' || strcmp(len, "l") == 0) {
            r = EMIT(va_arg(*ap, double));
        }
        break;
    default:
        break;
    }
#undef EMIT
    return r >= 0;
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* Format the value template t[0..n) into out (NUL terminated, cut at
 * out_size); its length, or SIZE_MAX for a template the logger refuses. */
static size_t format_value(const char *t, size_t n, va_list *ap, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (t[i] != '%') {
            if (o + 1 < out_size) {
                out[o++] = t[i];
            }
            i++;
            continue;
        }
        if (i + 1 < n && t[i + 1] == '%') {
            if (o + 1 < out_size) {
                out[o++] = '%';
            }
            i += 2;
            continue;
        }
        size_t j = i + 1;
        while (j < n && strchr("diuoxXcspeEfFgGaAn", t[j]) == NULL) {
            j++;
        }
        if (j == n) {
            return SIZE_MAX;
        }
        if (!one_conversion(t + i, j + 1 - i, ap, out + o, out_size - o)) {
            return SIZE_MAX;
        }
        o += strlen(out + o);
        i = j + 1;
    }
    out[o] = '\0';
    return o;
}

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
        || c == '.' || c == '-';
}

/* Append the fields of tmpl; false on a template of the wrong shape. */
static bool put_fields(line *l, const char *tmpl, va_list *ap)
{
    char value[KETEN_LOG_VALUE_MAX];
    const char *p = tmpl;
    while (*p != '\0') {
        const char *key = p;
        while (key_char(*p)) {
            p++;
        }
        if (p == key || *p != '=') {
            return false;
        }
        size_t klen = (size_t)(p - key);
        p++;
        bool quoted = *p == '"';
        const char *vt = quoted ? p + 1 : p;
        const char *end = quoted ? strchr(vt, '"') : vt + strcspn(vt, " ");
        if (end == NULL) {
            return false;
        }
        size_t vn = format_value(vt, (size_t)(end - vt), ap, value, sizeof value);
        if (vn == SIZE_MAX) {
            return false;
        }
        p = quoted ? end + 1 : end;
        if (*p == ' ') {
            p++;
            if (*p == '\0' || *p == ' ') {
                return false;
            }
        } else if (*p != '\0') {
            return false;
        }
        if (l->len + klen + 2 > l->cap) { /* " key=" does not fit: no half field */
            l->truncated = true;
            return true;
        }
        put(l, " ", 1);
        put(l, key, klen);
        put(l, "=", 1);
        put_value(l, value, vn, quoted);
        if (l->truncated) {
            return true;
        }
    }
    return true;
}

size_t keten_log_vformat(
    char *out, size_t out_size, int level, const char *msg, const char *tmpl, va_list ap)
{
    if (out_size < 2) {
        if (out_size == 1) {
            out[0] = '\0';
        }
        return 0;
    }
    /* The newline and the NUL are kept apart; " truncated=1" too. */
    static const char trunc[] = " truncated=1";
    static const char bad[] = " log_error=\"bad field template\"";
    size_t reserve = sizeof bad - 1 > sizeof trunc - 1 ? sizeof bad - 1 : sizeof trunc - 1;
    if (out_size < 2 * reserve) {
        reserve = 0; /* a buffer too small for any of it: what fits */
    }
    line l = { .buf = out, .cap = out_size - 2 - reserve };
    put(&l, "level=", 6);
    const char *lv = level_name(level);
    put(&l, lv, strlen(lv));
    put(&l, " prog=", 6);
    put_value(&l, log_prog, strlen(log_prog), false);
    put(&l, " msg=", 5);
    put_value(&l, msg != NULL ? msg : "", msg != NULL ? strlen(msg) : 0, false);
    bool ok = true;
    if (tmpl != NULL && tmpl[0] != '\0' && !l.truncated) {
        va_list aq;
        va_copy(aq, ap);
        ok = put_fields(&l, tmpl, &aq);
        va_end(aq);
    }
    l.cap += reserve;
    if (!ok) {
        put(&l, bad, sizeof bad - 1);
    } else if (l.truncated) {
        put(&l, trunc, sizeof trunc - 1);
    }
    out[l.len++] = '\n';
    out[l.len] = '\0';
    return l.len;
}

size_t keten_log_format(
    char *out, size_t out_size, int level, const char *msg, const char *tmpl, ...)
{
    va_list ap;
    va_start(ap, tmpl);
    size_t n = keten_log_vformat(out, out_size, level, msg, tmpl, ap);
    va_end(ap);
    return n;
}

void keten_log_write(int level, const char *msg, const char *tmpl, ...)
{
    char buf[KETEN_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, tmpl);
    size_t n = keten_log_vformat(buf, sizeof buf, level, msg, tmpl, ap);
    va_end(ap);
    ssize_t w = write(STDERR_FILENO, buf, n);
    (void)w;
}
