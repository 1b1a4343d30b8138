/*
 * test_node_accesslog: the HTTP API's access log (client/accesslog.h):
 *   - the file is made with mode 0600 and appended to, also across opens;
 *   - every line parses as JSON with exactly the contract's eight fields,
 *     in order, and nothing else (no content field can be passed);
 *   - a value holding a newline, quotes or bytes that are not UTF-8 stays
 *     inside its field, on one line;
 *   - an existing file readable or writable by group or others, a symbolic
 *     link or a folder is refused;
 *   - a write that fails is counted and logged, and the next one works.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "accesslog.h"
#include "auth.h"
#include "util.h"

#define T0 1796000000123ull /* 2026-11-30T00:53:20.123Z */

typedef struct ctx {
    char dir[64];
    char path[128];
} ctx;

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    snprintf(c->dir, sizeof c->dir, "/tmp/keten-accesslog.XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    snprintf(c->path, sizeof c->path, "%s/access.log", c->dir);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    assert_int_equal(system(cmd), 0);
    free(c);
    return 0;
}

/* The file's lines, parsed; each must be one JSON object. */
static json_t *read_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    json_t *arr = json_array();
    char line[16384];
    while (fgets(line, sizeof line, f) != NULL) {
        size_t n = strlen(line);
        assert_true(n > 0 && line[n - 1] == '\n'); /* whole lines only */
        json_error_t err;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
        if (o == NULL) {
            fail_msg("not JSON: %s (%s)", line, err.text);
        }
        assert_true(json_is_object(o));
        assert_int_equal(json_array_append_new(arr, o), 0);
    }
    fclose(f);
    return arr;
}

static const char *const fields[]
    = { "time", "actor", "via", "peer", "action", "object", "result", "status" };

/* Exactly the contract's fields, in order. */
static void check_fields(const json_t *o)
{
    assert_int_equal(json_object_size(o), sizeof fields / sizeof fields[0]);
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        assert_string_equal(key, fields[i]);
        i++;
    }
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    assert_non_null(s);
    return s;
}

static void test_lines(void **state)
{
    ctx *c = *state;
    keten_accesslog *log = NULL;
    assert_int_equal(keten_accesslog_open(c->dir, NULL, &log), KETEN_OK);
    assert_string_equal(keten_accesslog_path(log), c->path);
    struct stat st;
    assert_int_equal(stat(c->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(S_ISREG(st.st_mode));

    keten_auth_principal tok;
    memset(&tok, 0, sizeof tok);
    snprintf(tok.actor, sizeof tok.actor, "token:case-system");
    tok.via = KETEN_VIA_TCP;
    tok.scopes = KETEN_SCOPE_READ;
    snprintf(tok.peer, sizeof tok.peer, "127.0.0.1");
    keten_auth_principal local;
    keten_auth_local(1000, &local);

    keten_accesslog_write_at(
        log, T0, &tok, "read", "message:0f1e2d3c4b5a69788796a5b4c3d2e1f0", "ok", 200);
    keten_accesslog_write_at(
        log, T0 + 1, &local, "token-create", "token:0123456789abcdef", "ok", 201);
    keten_accesslog_write_at(log, T0 + 2, NULL, "list-inbox", "inbox", "denied", 401);
    keten_accesslog_write_at(log, T0 + 3, &tok, "send", NULL, "error", 503);
    keten_accesslog_write(log, &tok, "ack", "message:00", "denied", 403);
    assert_int_equal(keten_accesslog_failures(log), 0);
    keten_accesslog_destroy(&log);
    assert_null(log);
    keten_accesslog_destroy(&log);

    json_t *lines = read_lines(c->path);
    assert_int_equal(json_array_size(lines), 5);
    for (size_t i = 0; i < 5; i++) {
        check_fields(json_array_get(lines, i));
    }
    const json_t *l0 = json_array_get(lines, 0);
    assert_string_equal(str(l0, "time"), "2026-11-30T00:53:20.123Z");
    assert_string_equal(str(l0, "actor"), "token:case-system");
    assert_string_equal(str(l0, "via"), "tcp");
    assert_string_equal(str(l0, "peer"), "127.0.0.1");
    assert_string_equal(str(l0, "action"), "read");
    assert_string_equal(str(l0, "object"), "message:0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    assert_string_equal(str(l0, "result"), "ok");
    assert_int_equal(json_integer_value(json_object_get(l0, "status")), 200);
    const json_t *l1 = json_array_get(lines, 1);
    assert_string_equal(str(l1, "actor"), "local");
    assert_string_equal(str(l1, "via"), "unix");
    assert_string_equal(str(l1, "peer"), "uid=1000");
    assert_string_equal(str(l1, "time"), "2026-11-30T00:53:20.124Z");
    const json_t *l2 = json_array_get(lines, 2);
    assert_string_equal(str(l2, "actor"), "anonymous");
    assert_string_equal(str(l2, "result"), "denied");
    assert_int_equal(json_integer_value(json_object_get(l2, "status")), 401);
    assert_true(json_is_null(json_object_get(json_array_get(lines, 3), "object")));
    /* keten_accesslog_write() writes the current time */
    uint64_t t = 0;
    assert_int_equal(keten_time_parse(str(json_array_get(lines, 4), "time"), &t), KETEN_OK);
    assert_true(t + 60000 > keten_now_ms() && t <= keten_now_ms());
    json_decref(lines);

    /* opened again: appended, not truncated */
    assert_int_equal(keten_accesslog_open(NULL, c->path, &log), KETEN_OK);
    keten_accesslog_write_at(
        log, T0 + 9, &local, "token-revoke", "token:0123456789abcdef", "ok", 204);
    keten_accesslog_destroy(&log);
    lines = read_lines(c->path);
    assert_int_equal(json_array_size(lines), 6);
    assert_string_equal(str(json_array_get(lines, 5), "action"), "token-revoke");
    json_decref(lines);
}

/* Whatever a value holds, it stays in its field on one line. */
static void test_escaping(void **state)
{
    ctx *c = *state;
    keten_accesslog *log = NULL;
    assert_int_equal(keten_accesslog_open(c->dir, NULL, &log), KETEN_OK);
    keten_auth_principal p;
    memset(&p, 0, sizeof p);
    p.via = KETEN_VIA_TCP;
    snprintf(p.actor, sizeof p.actor, "person:jan\",\"actor\":\"local\n{\"x\":1}");
    snprintf(p.peer, sizeof p.peer, "127.0.0.1");
    keten_accesslog_write_at(log, T0, &p, "read\r\n", "message:\xff\xfe", "ok", 200);
    /* a value longer than a field: cut, still one line */
    char big[4 * KETEN_ACCESSLOG_FIELD_MAX];
    for (size_t i = 0; i + 3 < sizeof big; i += 3) {
        memcpy(big + i, "\xe2\x82\xac", 3);
    }
    big[sizeof big - 1 - (sizeof big - 1) % 3] = '\0';
    snprintf(p.actor, sizeof p.actor, "person:\xc3\xab");
    keten_accesslog_write_at(log, T0, &p, "read", big, "ok", 200);
    assert_int_equal(keten_accesslog_failures(log), 0);
    keten_accesslog_destroy(&log);

    json_t *lines = read_lines(c->path);
    assert_int_equal(json_array_size(lines), 2);
    const json_t *l0 = json_array_get(lines, 0);
    check_fields(l0);
    assert_string_equal(str(l0, "actor"), "person:jan\",\"actor\":\"local\n{\"x\":1}");
    assert_string_equal(str(l0, "action"), "read\r\n");
    assert_string_equal(str(l0, "object"), "(not valid UTF-8)");
    const json_t *l1 = json_array_get(lines, 1);
    check_fields(l1);
    assert_string_equal(str(l1, "actor"), "person:\xc3\xab");
    size_t n = strlen(str(l1, "object"));
    assert_true(n <= KETEN_ACCESSLOG_FIELD_MAX && n > KETEN_ACCESSLOG_FIELD_MAX - 3);
    assert_int_equal(n % 3, 0); /* cut between characters */
    json_decref(lines);

    /* the bytes in the file are ASCII */
    uint8_t *raw = NULL;
    size_t len = 0;
    assert_int_equal(keten_file_read(c->path, 1 << 20, &raw, &len), KETEN_OK);
    for (size_t i = 0; i < len; i++) {
        assert_true(raw[i] < 0x80);
    }
    free(raw);
}

static void test_refused_files(void **state)
{
    ctx *c = *state;
    keten_accesslog *log = NULL;
    /* an existing file the group or others may read or write */
    const mode_t modes[] = { 0640, 0604, 0620, 0602, 0644 };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        int fd = open(c->path, O_WRONLY | O_CREAT, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(chmod(c->path, modes[i]), 0);
        assert_int_equal(keten_accesslog_open(c->dir, NULL, &log), KETEN_ERR_PERMISSIONS);
        assert_null(log);
        assert_non_null(strstr(keten_err_detail(), "chmod 600"));
    }
    /* the twin: mode 0600 is accepted, and the file is kept */
    assert_int_equal(chmod(c->path, 0600), 0);
    assert_int_equal(keten_accesslog_open(c->dir, NULL, &log), KETEN_OK);
    keten_accesslog_destroy(&log);
    /* 0400 (read-only for the owner) opens for writing? no: open fails, an I/O error */
    if (geteuid() != 0) {
        assert_int_equal(chmod(c->path, 0400), 0);
        assert_int_equal(keten_accesslog_open(c->dir, NULL, &log), KETEN_ERR_IO);
        assert_null(log);
        assert_int_equal(chmod(c->path, 0600), 0);
    }
    /* a symbolic link */
    char link[160];
    snprintf(link, sizeof link, "%s/link.log", c->dir);
    assert_int_equal(symlink(c->path, link), 0);
    assert_int_equal(keten_accesslog_open(NULL, link, &log), KETEN_ERR_PERMISSIONS);
    assert_non_null(strstr(keten_err_detail(), "symbolic link"));
    /* a folder */
    char sub[160];
    snprintf(sub, sizeof sub, "%s/folder", c->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_not_equal(keten_accesslog_open(NULL, sub, &log), KETEN_OK);
    assert_null(log);
    /* a missing folder */
    snprintf(sub, sizeof sub, "%s/missing/access.log", c->dir);
    assert_int_equal(keten_accesslog_open(NULL, sub, &log), KETEN_ERR_IO);
    assert_non_null(strstr(keten_err_detail(), sub));
}

/* A write that fails (the file size limit) is counted; the next works. */
static void test_write_failure(void **state)
{
    ctx *c = *state;
    keten_accesslog *log = NULL;
    assert_int_equal(keten_accesslog_open(c->dir, NULL, &log), KETEN_OK);
    keten_auth_principal local;
    keten_auth_local(1000, &local);
    keten_accesslog_write_at(log, T0, &local, "read", "inbox", "ok", 200);
    struct stat st;
    assert_int_equal(stat(c->path, &st), 0);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    keten_accesslog_write_at(log, T0 + 1, &local, "read", "inbox", "ok", 200);
    keten_accesslog_write_at(log, T0 + 2, &local, "read", "inbox", "ok", 200);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(keten_accesslog_failures(log), 2);

    keten_accesslog_write_at(log, T0 + 3, &local, "ack", "message:00", "ok", 200);
    assert_int_equal(keten_accesslog_failures(log), 2);
    keten_accesslog_destroy(&log);
    json_t *lines = read_lines(c->path);
    assert_int_equal(json_array_size(lines), 2);
    assert_string_equal(str(json_array_get(lines, 1), "action"), "ack");
    json_decref(lines);
}

int main(void)
{
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
