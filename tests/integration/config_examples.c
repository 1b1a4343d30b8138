/*
 * config_examples: the commented example configuration files shipped in
 * etc/ (installed as /etc/keten/broker.conf and node.conf) against the
 * settings tables of lib/config:
 *   - each file loads with zero errors and sets every required setting;
 *   - every setting of the table is documented in it: a comment paragraph
 *     starting "# NAME (" that states its default ("default X", X as in the
 *     table) and its bounds ("MIN to MAX"), followed by an active
 *     "NAME = value" line or a commented "#NAME = value" line;
 *   - with every "#NAME = value" line uncommented the file still loads, and
 *     each uncommented setting that has a default shows exactly that default.
 *
 *   config-examples BROKER_CONF NODE_CONF
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"

#define LINES_MAX 1024
#define LINE_BYTES 512

static const char *broker_conf;
static const char *node_conf;
static char tmpdir[64];

typedef struct text {
    char lines[LINES_MAX][LINE_BYTES];
    size_t n;
} text;

static text *read_lines(const char *path)
{
    text *t = calloc(1, sizeof *t);
    assert_non_null(t);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fail_msg("cannot open %s", path);
    }
    while (t->n < LINES_MAX && fgets(t->lines[t->n], LINE_BYTES, f) != NULL) {
        size_t len = strlen(t->lines[t->n]);
        if (len > 0 && t->lines[t->n][len - 1] == '\n') {
            t->lines[t->n][len - 1] = '\0';
        }
        t->n++;
    }
    assert_false(ferror(f));
    assert_true(feof(f)); /* the whole file fit */
    fclose(f);
    return t;
}

/* line is "NAME = ..." (active) or "#NAME = ..." (commented, with commented
 * set); NAME a setting of the table. Returns it or NULL. */
static const keten_config_setting *setting_line(
    const keten_config_table *tb, const char *line, bool *commented)
{
    *commented = line[0] == '#';
    const char *p = *commented ? line + 1 : line;
    size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-");
    if (n == 0 || strncmp(p + n, " =", 2) != 0) {
        return NULL;
    }
    char name[64];
    if (n >= sizeof name) {
        return NULL;
    }
    memcpy(name, p, n);
    name[n] = '\0';
    return keten_config_find(tb, name);
}

/* "16M" / "1T" / "1G": the largest binary unit that divides v. */
static void size_short(uint64_t v, char *out, size_t size)
{
    static const char units[] = "KMGT";
    int u = -1;
    while (u < 3 && v != 0 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    if (u < 0) {
        snprintf(out, size, "%llu", (unsigned long long)v);
    } else {
        snprintf(out, size, "%llu%c", (unsigned long long)v, units[u]);
    }
}

/* The comment paragraph documenting s: from its "# NAME (" line to the first
 * line that is not a prose comment ("# ..."), joined with spaces. */
static bool paragraph(const text *t, const keten_config_setting *s, char *out, size_t size)
{
    char head[80];
    snprintf(head, sizeof head, "# %s (", s->name);
    out[0] = '\0';
    for (size_t i = 0; i < t->n; i++) {
        if (strncmp(t->lines[i], head, strlen(head)) != 0) {
            continue;
        }
        size_t len = 0;
        for (size_t j = i; j < t->n && strncmp(t->lines[j], "# ", 2) == 0; j++) {
            int n = snprintf(out + len, size - len, "%s ", t->lines[j] + 2);
            assert_true(n > 0 && (size_t)n < size - len);
            len += (size_t)n;
        }
        return true;
    }
    return false;
}

/* needle in hay, not followed by a letter or digit ("default 60000" is not
 * found in "default 600000"). */
static void has(const char *hay, const char *needle, const char *path, const char *name)
{
    size_t n = strlen(needle);
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) {
        char next = p[n];
        if (!((next >= '0' && next <= '9') || (next >= 'a' && next <= 'z')
                || (next >= 'A' && next <= 'Z'))) {
            return;
        }
    }
    fail_msg("%s: the comment on %s does not say \"%s\": \"%s\"", path, name, needle, hay);
}

static keten_config *load(const keten_config_table *tb, const char *path)
{
    keten_config *cfg = keten_config_new(tb);
    assert_non_null(cfg);
    if (keten_config_load(cfg, path) != KETEN_OK) {
        for (size_t i = 0; keten_config_error(cfg, i) != NULL; i++) {
            print_error("%s\n", keten_config_error(cfg, i));
        }
        fail_msg("%s does not load: %s", path, keten_err_detail());
    }
    assert_int_equal(keten_config_error_count(cfg), 0);
    return cfg;
}

static void check_example(const keten_config_table *tb, const char *path)
{
    /* 1. It loads as shipped, with every required setting. */
    keten_config *cfg = load(tb, path);
    if (keten_config_check(cfg) != KETEN_OK) {
        fail_msg("%s: %s", path, keten_err_detail());
    }
    keten_config *defaults = keten_config_new(tb);
    assert_non_null(defaults);

    /* 2. Every setting documented, with its default and bounds, and shown. */
    text *t = read_lines(path);
    bool active[KETEN_CONFIG_SETTINGS_MAX] = { false };
    bool commented[KETEN_CONFIG_SETTINGS_MAX] = { false };
    for (size_t i = 0; i < t->n; i++) {
        bool c = false;
        const keten_config_setting *s = setting_line(tb, t->lines[i], &c);
        if (s != NULL) {
            size_t k = (size_t)(s - tb->settings);
            if (c) {
                commented[k] = true;
            } else {
                active[k] = true;
            }
        }
    }
    char para[4096], want[128];
    for (size_t k = 0; k < tb->n_settings; k++) {
        const keten_config_setting *s = &tb->settings[k];
        if (!paragraph(t, s, para, sizeof para)) {
            fail_msg(
                "%s: no comment \"# %s (...\" documents the setting %s", path, s->name, s->name);
        }
        if (!active[k] && !commented[k]) {
            fail_msg("%s: neither \"%s = ...\" nor \"#%s = ...\"", path, s->name, s->name);
        }
        if (s->flags & KETEN_CONFIG_REQUIRED) {
            has(para, "required", path, s->name);
            assert_true(active[k]);
        }
        if (s->default_value != NULL) {
            snprintf(want, sizeof want, "default %s", s->default_value);
            has(para, want, path, s->name);
        } else if (!(s->flags & KETEN_CONFIG_REQUIRED)) {
            has(para, "default: unset", path, s->name);
        }
        if (s->type == KETEN_CONFIG_UINT || s->type == KETEN_CONFIG_DURATION_MS) {
            snprintf(want, sizeof want, "%llu to %llu", (unsigned long long)s->min,
                (unsigned long long)s->max);
            has(para, want, path, s->name);
        } else if (s->type == KETEN_CONFIG_SIZE_BYTES) {
            char lo[32], hi[32];
            size_short(s->min, lo, sizeof lo);
            size_short(s->max, hi, sizeof hi);
            snprintf(want, sizeof want, "%s to %s", lo, hi);
            has(para, want, path, s->name);
        } else if (s->type == KETEN_CONFIG_ENUM) {
            for (size_t c = 0; s->choices[c] != NULL; c++) {
                has(para, s->choices[c], path, s->name);
            }
        }
    }

    /* 3. Uncommented, it still loads, and shows the defaults. */
    char copy[128];
    snprintf(copy, sizeof copy, "%s/uncommented.conf", tmpdir);
    FILE *f = fopen(copy, "w");
    assert_non_null(f);
    for (size_t i = 0; i < t->n; i++) {
        bool c = false;
        const keten_config_setting *s = setting_line(tb, t->lines[i], &c);
        bool take = s != NULL && c && !active[s - tb->settings];
        fprintf(f, "%s\n", take ? t->lines[i] + 1 : t->lines[i]);
    }
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(copy, 0600), 0);
    keten_config *all = load(tb, copy);
    for (size_t k = 0; k < tb->n_settings; k++) {
        const keten_config_setting *s = &tb->settings[k];
        if (!commented[k] || active[k]) {
            continue;
        }
        assert_true(keten_config_is_set(all, s->name));
        if (s->default_value == NULL) {
            continue; /* an example value: it loaded, that is enough */
        }
        switch (s->type) {
        case KETEN_CONFIG_UINT:
        case KETEN_CONFIG_DURATION_MS:
        case KETEN_CONFIG_SIZE_BYTES:
            if (keten_config_get_uint(all, s->name) != keten_config_get_uint(defaults, s->name)) {
                fail_msg("%s: #%s shows %llu, the default is %llu", path, s->name,
                    (unsigned long long)keten_config_get_uint(all, s->name),
                    (unsigned long long)keten_config_get_uint(defaults, s->name));
            }
            break;
        case KETEN_CONFIG_BOOL:
            assert_int_equal(
                keten_config_get_bool(all, s->name), keten_config_get_bool(defaults, s->name));
            break;
        default:
            assert_string_equal(
                keten_config_get_str(all, s->name), keten_config_get_str(defaults, s->name));
        }
    }
    unlink(copy);
    free(t);
    keten_config_destroy(&all);
    keten_config_destroy(&defaults);
    keten_config_destroy(&cfg);
}

static void test_broker_conf(void **state)
{
    (void)state;
    check_example(&keten_config_broker_table, broker_conf);
}

static void test_node_conf(void **state)
{
    (void)state;
    check_example(&keten_config_node_table, node_conf);
}

/* The check itself catches an undocumented setting and a wrong default. */
static void test_check_rejects(void **state)
{
    (void)state;
    char bad[128];
    snprintf(bad, sizeof bad, "%s/bad.conf", tmpdir);
    text *t = read_lines(node_conf);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    size_t changed = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->lines[i], "#witness-timeout-ms = 3600000") == 0) {
            fprintf(f, "#witness-timeout-ms = 3500000\n"); /* not the default */
            changed++;
        } else {
            fprintf(f, "%s\n", t->lines[i]);
        }
    }
    assert_int_equal(fclose(f), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(chmod(bad, 0600), 0);
    /* It loads (commented out), but check_example would refuse it. */
    keten_config *cfg = load(&keten_config_node_table, bad);
    keten_config_destroy(&cfg);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* In a child, quietly: it must fail, and exit non-zero. */
        if (freopen("/dev/null", "w", stdout) == NULL
            || freopen("/dev/null", "w", stderr) == NULL) {
            _exit(0); /* counted as "did not fail" by the parent */
        }
        check_example(&keten_config_node_table, bad);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(t);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/keten-confex-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: config-examples BROKER_CONF NODE_CONF\n");
        return 2;
    }
    broker_conf = argv[1];
    node_conf = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broker_conf),
        cmocka_unit_test(test_node_conf),
        cmocka_unit_test(test_check_rejects),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
