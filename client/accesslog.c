#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "util.h"

struct keten_accesslog {
    int fd;
    uint64_t failures;
    char path[PATH_MAX];
};

keten_err keten_accesslog_open(const char *home, const char *path, keten_accesslog **out)
{
    *out = NULL;
    keten_accesslog *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return KETEN_ERR_NOMEM;
    }
    self->fd = -1;
    int n = path != NULL ? snprintf(self->path, sizeof self->path, "%s", path)
                         : snprintf(self->path, sizeof self->path, "%s/%s",
                             home != NULL ? home : ".", KETEN_ACCESSLOG_NAME);
    keten_err e = KETEN_OK;
    if (n < 0 || (size_t)n >= sizeof self->path) {
        e = keten_err_set(KETEN_ERR_INVALID, "the access log's path is too long");
        goto out;
    }
    self->fd = open(self->path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (self->fd < 0) {
        e = keten_err_set(errno == ELOOP ? KETEN_ERR_PERMISSIONS : KETEN_ERR_IO,
            "cannot open the access log %s: %s%s", self->path, strerror(errno),
            errno == ELOOP ? " (a symbolic link is not followed)" : "");
        goto out;
    }
    struct stat st;
    if (fstat(self->fd, &st) != 0) {
        e = keten_err_set(
            KETEN_ERR_IO, "cannot stat the access log %s: %s", self->path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        e = keten_err_set(
            KETEN_ERR_PERMISSIONS, "the access log %s is not a regular file", self->path);
        goto out;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        e = keten_err_set(KETEN_ERR_PERMISSIONS,
            "the access log %s is %s by %s (mode %03o); run chmod 600 %s", self->path,
            keten_file_mode_access(st.st_mode), (st.st_mode & S_IRWXO) ? "others" : "its group",
            (unsigned)(st.st_mode & 0777), self->path);
        goto out;
    }
    *out = self;
    self = NULL;
out:
    keten_accesslog_destroy(&self);
    return e;
}

void keten_accesslog_destroy(keten_accesslog **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_accesslog *self = *self_p;
    if (self->fd >= 0) {
        close(self->fd);
    }
    free(self);
    *self_p = NULL;
}

/* A string value cut to KETEN_ACCESSLOG_FIELD_MAX bytes (at a character
 * boundary; a value that is not UTF-8, which jansson refuses, is replaced). */
static json_t *field(const char *s)
{
    if (s == NULL) {
        return json_null();
    }
    size_t n = strnlen(s, KETEN_ACCESSLOG_FIELD_MAX);
    /* cut: back off to a character boundary; whole: as it is or not at all */
    size_t tries = n == KETEN_ACCESSLOG_FIELD_MAX ? 4 : 1;
    for (size_t back = 0; back < tries && back <= n; back++) {
        json_t *v = json_stringn(s, n - back); /* NULL for a cut inside a UTF-8 sequence */
        if (v != NULL) {
            return v;
        }
    }
    return json_string("(not valid UTF-8)");
}

void keten_accesslog_write_at(keten_accesslog *self, uint64_t now_ms,
    const keten_auth_principal *who, const char *action, const char *object, const char *result,
    int http_status)
{
    if (self == NULL) {
        return;
    }
    char iso[40];
    keten_time_iso(now_ms, iso, sizeof iso);
    const char *via = who == NULL || who->via == KETEN_VIA_TCP ? "tcp" : "unix";
    json_t *line = json_object();
    int bad = line == NULL;
    bad = bad || json_object_set_new(line, "time", json_string(iso)) != 0;
    bad = bad
        || json_object_set_new(line, "actor", field(who != NULL ? who->actor : "anonymous")) != 0;
    bad = bad || json_object_set_new(line, "via", json_string(via)) != 0;
    bad = bad || json_object_set_new(line, "peer", field(who != NULL ? who->peer : "unknown")) != 0;
    bad = bad
        || json_object_set_new(line, "action", field(action != NULL ? action : "unknown")) != 0;
    bad = bad || json_object_set_new(line, "object", field(object)) != 0;
    bad = bad || json_object_set_new(line, "result", field(result != NULL ? result : "error")) != 0;
    bad = bad || json_object_set_new(line, "status", json_integer(http_status)) != 0;
    char buf[KETEN_ACCESSLOG_LINE_MAX];
    size_t len = 0;
    if (!bad) {
        len = json_dumpb(
            line, buf, sizeof buf - 1, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
        bad = len == 0 || len > sizeof buf - 1;
    }
    json_decref(line);
    ssize_t w = -1;
    int err = ENOMEM;
    if (!bad) {
        buf[len++] = '\n';
        w = write(self->fd, buf, len);
        err = errno;
    }
    if (w < 0 || (size_t)w != len) {
        self->failures++;
        KETEN_LOG(KETEN_LOG_ERR, "access log line not written",
            "path=\"%s\" error=\"%s\" action=%s status=%d failures=%llu", self->path,
            w < 0 ? strerror(err) : "short write", action != NULL ? action : "unknown", http_status,
            (unsigned long long)self->failures);
    }
}

void keten_accesslog_write(keten_accesslog *self, const keten_auth_principal *who,
    const char *action, const char *object, const char *result, int http_status)
{
    keten_accesslog_write_at(self, keten_now_ms(), who, action, object, result, http_status);
}

uint64_t keten_accesslog_failures(const keten_accesslog *self)
{
    return self != NULL ? self->failures : 0;
}

const char *keten_accesslog_path(const keten_accesslog *self)
{
    return self->path;
}
