#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
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

void keten_log_quote(const char *s, char *out, size_t out_size)
{
    if (out_size == 0) {
        return;
    }
    bool bare = s[0] != '\0' && strcspn(s, " \"\\=\t\r\n") == strlen(s);
    size_t o = 0;
    if (!bare && o + 1 < out_size) {
        out[o++] = '"';
    }
    for (const char *p = s; *p != '\0' && o + 3 < out_size; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            out[o++] = '?';
        } else {
            out[o++] = (char)c;
        }
    }
    if (!bare && o + 1 < out_size) {
        out[o++] = '"';
    }
    out[o] = '\0';
}

void keten_log_write(int level, const char *msg, const char *fmt, ...)
{
    char line[2048];
    char qmsg[512];
    keten_log_quote(msg, qmsg, sizeof qmsg);
    int n = snprintf(line, sizeof line, "level=%s prog=%s msg=%s", level_name(level), log_prog,
        qmsg);
    if (n < 0) {
        return;
    }
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (fmt != NULL && fmt[0] != '\0' && len + 2 < sizeof line) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + len, sizeof line - len, fmt, ap);
        va_end(ap);
        if (m > 0) {
            len += (size_t)m < sizeof line - len ? (size_t)m : sizeof line - len - 1;
        }
    }
    if (len + 1 >= sizeof line) {
        len = sizeof line - 2;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
