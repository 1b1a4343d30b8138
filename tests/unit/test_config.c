/* config: the daemons' configuration files (lib/config.h) with the real
 * broker and node tables: every type's good and bad values, bounds, unknown
 * keys with suggestions, duplicates, sections, syntax, files that are
 * missing, too large or writable by others, command-line overrides and
 * defaults. Each accepted input has rejected twins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"

#define GIB (1ull << 30)
#define MIB (1ull << 20)

static char tmpdir[64];
static unsigned file_no;

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/keten-config-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

/* Write text to a new file (mode) in tmpdir; its path into out. */
static void write_file(const char *text, size_t len, unsigned mode, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/c%u.conf", tmpdir, file_no++);
    FILE *f = fopen(out, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(out, mode), 0);
}

static void write_conf(const char *text, char *out, size_t out_size)
{
    write_file(text, strlen(text), 0644, out, out_size);
}

/* Load text (a whole file) into a new configuration of table; returns the
 * error, the configuration in *cfg_out and the file's path in path. */
static keten_err load_text(
    const keten_config_table *t, const char *text, keten_config **cfg_out, char *path, size_t n)
{
    write_conf(text, path, n);
    keten_config *cfg = keten_config_new(t);
    assert_non_null(cfg);
    keten_err e = keten_config_load(cfg, path);
    *cfg_out = cfg;
    return e;
}

/* The detail must contain each of the NULL-terminated strings. */
static void detail_has(const char *first, ...)
{
    const char *d = keten_err_detail();
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s != NULL; s = va_arg(ap, const char *)) {
        if (strstr(d, s) == NULL) {
            fail_msg("detail \"%s\" lacks \"%s\"", d, s);
        }
    }
    va_end(ap);
}

/* "[broker]\nKEY = VALUE\n" must load, and must leave the value readable. */
static keten_config *broker_ok(const char *key, const char *val)
{
    char text[512], path[128];
    snprintf(text, sizeof text, "[broker]\n%s = %s\n", key, val);
    keten_config *cfg = NULL;
    keten_err e = load_text(&keten_config_broker_table, text, &cfg, path, sizeof path);
    if (e != KETEN_OK) {
        fail_msg("%s = %s refused: %s", key, val, keten_err_detail());
    }
    assert_int_equal(keten_config_source_of(cfg, key), KETEN_CONFIG_SRC_FILE);
    return cfg;
}

/* "[broker]\n# comment\nKEY = VALUE\n" must fail with code; the detail names
 * the file, line 3, the key and contains why. The value stays as it was. */
static void broker_bad(const char *key, const char *val, keten_err code, const char *why)
{
    char text[512], path[128], where[160], k[80];
    snprintf(text, sizeof text, "[broker]\n# a comment\n%s = %s\n", key, val);
    keten_config *cfg = NULL;
    keten_err e = load_text(&keten_config_broker_table, text, &cfg, path, sizeof path);
    if (e != code) {
        fail_msg("%s = %s: expected %s, got %s (%s)", key, val, keten_err_str(code),
            keten_err_str(e), keten_err_detail());
    }
    snprintf(where, sizeof where, "%s:3: ", path);
    snprintf(k, sizeof k, "'%s'", key);
    detail_has(where, k, why, NULL);
    assert_int_equal(keten_config_error_count(cfg), 1);
    if (keten_config_find(&keten_config_broker_table, key) != NULL) {
        assert_int_equal(keten_config_source_of(cfg, key), KETEN_CONFIG_SRC_DEFAULT);
    }
    keten_config_destroy(&cfg);
}

static keten_config *node_ok(const char *key, const char *val)
{
    char text[512], path[128];
    snprintf(text, sizeof text, "[node]\n%s = %s\n", key, val);
    keten_config *cfg = NULL;
    keten_err e = load_text(&keten_config_node_table, text, &cfg, path, sizeof path);
    if (e != KETEN_OK) {
        fail_msg("%s = %s refused: %s", key, val, keten_err_detail());
    }
    return cfg;
}

static void node_bad(const char *key, const char *val, const char *why)
{
    char text[512], path[128], where[160];
    snprintf(text, sizeof text, "[node]\n%s = %s\n", key, val);
    keten_config *cfg = NULL;
    keten_err e = load_text(&keten_config_node_table, text, &cfg, path, sizeof path);
    if (e != KETEN_ERR_INVALID) {
        fail_msg("%s = %s: expected invalid, got %s", key, val, keten_err_str(e));
    }
    snprintf(where, sizeof where, "%s:2: bad value for key '%s'", path, key);
    detail_has(where, why, NULL);
    keten_config_destroy(&cfg);
}

static uint64_t broker_uint(const char *key, const char *val)
{
    keten_config *cfg = broker_ok(key, val);
    uint64_t v = keten_config_get_uint(cfg, key);
    keten_config_destroy(&cfg);
    return v;
}

/* ---- tables and defaults ------------------------------------------------ */

static void check_table(const keten_config_table *t)
{
    assert_true(t->n_settings > 0 && t->n_settings <= KETEN_CONFIG_SETTINGS_MAX);
    for (size_t i = 0; i < t->n_settings; i++) {
        const keten_config_setting *s = &t->settings[i];
        assert_true(strlen(s->name) > 0
            && strspn(s->name, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(s->name));
        assert_non_null(s->help);
        assert_ptr_equal(keten_config_find(t, s->name), s);
        for (size_t j = i + 1; j < t->n_settings; j++) {
            assert_string_not_equal(s->name, t->settings[j].name);
        }
        if (s->flags & KETEN_CONFIG_REQUIRED) {
            assert_null(s->default_value); /* a default would make "required" meaningless */
        }
        if (s->type == KETEN_CONFIG_UINT || s->type == KETEN_CONFIG_DURATION_MS
            || s->type == KETEN_CONFIG_SIZE_BYTES) {
            assert_true(s->min <= s->max);
            assert_non_null(s->default_value);
        }
        if (s->type == KETEN_CONFIG_ENUM) {
            assert_non_null(s->choices);
            assert_non_null(s->choices[0]);
        }
    }
    assert_null(keten_config_find(t, "no-such-setting"));
    /* keten_config_new() checks every default against its own setting. */
    keten_config *cfg = keten_config_new(t);
    assert_non_null(cfg);
    keten_config_destroy(&cfg);
    keten_config_destroy(&cfg); /* NULL is fine */
}

static void test_tables(void **state)
{
    (void)state;
    check_table(&keten_config_broker_table);
    check_table(&keten_config_node_table);
    assert_string_equal(keten_config_broker_table.section, "broker");
    assert_string_equal(keten_config_node_table.section, "node");
    /* Every option of `keten-broker run` and `keten-node run` is a setting. */
    static const char *const broker_opts[] = { "home", "anchor", "directory", "listen", "metrics",
        "map-size", "passphrase-file", "clock-window-ms", "retry-horizon-days",
        "checkpoint-records", "checkpoint-ms", "log-level" };
    for (size_t i = 0; i < sizeof broker_opts / sizeof broker_opts[0]; i++) {
        assert_non_null(keten_config_find(&keten_config_broker_table, broker_opts[i]));
    }
    static const char *const node_opts[]
        = { "home", "anchor", "directory", "broker", "on-message", "passphrase-file",
              "witness-timeout-ms", "checkpoint-keep-days", "checkpoint-hourly-days", "log-level" };
    for (size_t i = 0; i < sizeof node_opts / sizeof node_opts[0]; i++) {
        assert_non_null(keten_config_find(&keten_config_node_table, node_opts[i]));
    }
    assert_string_equal(keten_config_type_name(KETEN_CONFIG_DURATION_MS), "duration-ms");
    assert_string_equal(keten_config_type_name(KETEN_CONFIG_SIZE_BYTES), "size-bytes");
}

/* A bad default is refused when the configuration is made. */
static void test_bad_default_refused(void **state)
{
    (void)state;
    static const keten_config_setting good[] = {
        { .name = "n",
            .type = KETEN_CONFIG_UINT,
            .default_value = "5",
            .min = 1,
            .max = 9,
            .help = "h" },
    };
    static const keten_config_setting bad[] = {
        { .name = "n",
            .type = KETEN_CONFIG_UINT,
            .default_value = "10",
            .min = 1,
            .max = 9,
            .help = "h" },
    };
    const keten_config_table tg = { "t", "t", good, 1 };
    const keten_config_table tb = { "t", "t", bad, 1 };
    keten_config *cfg = keten_config_new(&tg);
    assert_non_null(cfg);
    assert_int_equal(keten_config_get_uint(cfg, "n"), 5);
    keten_config_destroy(&cfg);
    assert_null(keten_config_new(&tb));
}

static void test_defaults(void **state)
{
    (void)state;
    keten_config *cfg = keten_config_new(&keten_config_broker_table);
    assert_non_null(cfg);
    assert_int_equal(keten_config_get_uint(cfg, "map-size"), GIB);
    assert_int_equal(keten_config_get_uint(cfg, "clock-window-ms"), 300000);
    assert_int_equal(keten_config_get_uint(cfg, "retry-horizon-days"), 7);
    assert_int_equal(keten_config_get_uint(cfg, "checkpoint-records"), 1000);
    assert_int_equal(keten_config_get_uint(cfg, "checkpoint-ms"), 1000);
    assert_string_equal(keten_config_get_str(cfg, "log-level"), "info");
    assert_int_equal(keten_config_get_enum(cfg, "log-level"), 1);
    assert_int_equal(keten_config_source_of(cfg, "map-size"), KETEN_CONFIG_SRC_DEFAULT);
    assert_true(keten_config_is_set(cfg, "map-size"));
    /* Unset settings: no value, and the required ones make check() fail. */
    assert_false(keten_config_is_set(cfg, "home"));
    assert_null(keten_config_get_str(cfg, "home"));
    assert_null(keten_config_get_str(cfg, "metrics"));
    assert_null(keten_config_get_str(cfg, "passphrase-file"));
    assert_int_equal(keten_config_check(cfg), KETEN_ERR_INVALID);
    detail_has("home is not set", "--home", "[broker]", NULL);
    keten_config_destroy(&cfg);

    cfg = keten_config_new(&keten_config_node_table);
    assert_non_null(cfg);
    assert_int_equal(keten_config_get_uint(cfg, "witness-timeout-ms"), 3600000);
    assert_int_equal(keten_config_get_uint(cfg, "checkpoint-keep-days"), 7);
    assert_int_equal(keten_config_get_uint(cfg, "checkpoint-hourly-days"), 90);
    assert_string_equal(keten_config_get_str(cfg, "log-level"), "info");
    assert_null(keten_config_get_str(cfg, "on-message"));
    assert_int_equal(keten_config_check(cfg), KETEN_ERR_INVALID);
    keten_config_destroy(&cfg);
}

/* ---- a whole good file ------------------------------------------------- */

static void test_load_full_file(void **state)
{
    (void)state;
    const char *text = "# keten-broker\n"
                       "; another comment\n"
                       "\n"
                       "[broker]\n"
                       "home = /var/lib/keten/broker\n"
                       "anchor = /etc/keten/network.pub\n"
                       "directory = /etc/keten/directory\n"
                       "listen = tcp://0.0.0.0:7250\n"
                       "metrics = 127.0.0.1:9750\n"
                       "  map-size   =   4G  \n"
                       "passphrase-file = /run/credentials/keten-broker.service/passphrase\n"
                       "clock-window-ms = 2min\n"
                       "retry-horizon-days = 30\n"
                       "checkpoint-records = 500 ; inih strips this comment\n"
                       "checkpoint-ms = 2s\n"
                       "log-level = notice\n";
    char path[128];
    keten_config *cfg = NULL;
    assert_int_equal(
        load_text(&keten_config_broker_table, text, &cfg, path, sizeof path), KETEN_OK);
    assert_int_equal(keten_config_error_count(cfg), 0);
    assert_null(keten_config_error(cfg, 0));
    assert_string_equal(keten_config_get_str(cfg, "home"), "/var/lib/keten/broker");
    assert_string_equal(keten_config_get_str(cfg, "anchor"), "/etc/keten/network.pub");
    assert_string_equal(keten_config_get_str(cfg, "directory"), "/etc/keten/directory");
    assert_string_equal(keten_config_get_str(cfg, "listen"), "tcp://0.0.0.0:7250");
    assert_string_equal(keten_config_get_str(cfg, "metrics"), "127.0.0.1:9750");
    assert_int_equal(keten_config_get_uint(cfg, "map-size"), 4 * GIB);
    assert_string_equal(keten_config_get_str(cfg, "passphrase-file"),
        "/run/credentials/keten-broker.service/passphrase");
    assert_int_equal(keten_config_get_uint(cfg, "clock-window-ms"), 120000);
    assert_int_equal(keten_config_get_uint(cfg, "retry-horizon-days"), 30);
    assert_int_equal(keten_config_get_uint(cfg, "checkpoint-records"), 500);
    assert_int_equal(keten_config_get_uint(cfg, "checkpoint-ms"), 2000);
    assert_int_equal(keten_config_get_enum(cfg, "log-level"), 2);
    assert_int_equal(keten_config_source_of(cfg, "listen"), KETEN_CONFIG_SRC_FILE);
    assert_int_equal(keten_config_check(cfg), KETEN_OK);
    keten_config_destroy(&cfg);
}

/* A UTF-8 byte order mark and CRLF line ends are fine; a section may be
 * repeated. */
static void test_bom_crlf(void **state)
{
    (void)state;
    char path[128];
    keten_config *cfg = NULL;
    const char *text
        = "\xEF\xBB\xBF[node]\r\nlog-level = debug\r\n[node]\r\nbroker = tcp://b:7250\r\n";
    assert_int_equal(load_text(&keten_config_node_table, text, &cfg, path, sizeof path), KETEN_OK);
    assert_string_equal(keten_config_get_str(cfg, "log-level"), "debug");
    assert_string_equal(keten_config_get_str(cfg, "broker"), "tcp://b:7250");
    keten_config_destroy(&cfg);
}

/* ---- types: accept and reject ------------------------------------------- */

static void test_uint(void **state)
{
    (void)state;
    assert_int_equal(broker_uint("retry-horizon-days", "1"), 1);
    assert_int_equal(broker_uint("retry-horizon-days", "3650"), 3650);
    assert_int_equal(broker_uint("checkpoint-records", "10000000"), 10000000);
    broker_bad("retry-horizon-days", "0", KETEN_ERR_INVALID, "below the minimum of 1");
    broker_bad("retry-horizon-days", "3651", KETEN_ERR_INVALID, "above the maximum of 3650");
    broker_bad("checkpoint-records", "10000001", KETEN_ERR_INVALID, "above the maximum");
    broker_bad("retry-horizon-days", "-1", KETEN_ERR_INVALID, "not a number");
    broker_bad("retry-horizon-days", "+7", KETEN_ERR_INVALID, "not a number");
    broker_bad("retry-horizon-days", "7d", KETEN_ERR_INVALID, "not a number");
    broker_bad("retry-horizon-days", "1e3", KETEN_ERR_INVALID, "not a number");
    broker_bad("retry-horizon-days", "0x10", KETEN_ERR_INVALID, "not a number");
    broker_bad("retry-horizon-days", "7 7", KETEN_ERR_INVALID, "not a number");
    broker_bad(
        "retry-horizon-days", "99999999999999999999999", KETEN_ERR_INVALID, "above the maximum");
}

static void test_duration(void **state)
{
    (void)state;
    assert_int_equal(broker_uint("clock-window-ms", "1000"), 1000);
    assert_int_equal(broker_uint("clock-window-ms", "5min"), 300000);
    assert_int_equal(broker_uint("clock-window-ms", "300 s"), 300000);
    assert_int_equal(broker_uint("clock-window-ms", "1500ms"), 1500);
    assert_int_equal(broker_uint("clock-window-ms", "1h"), 3600000);
    assert_int_equal(broker_uint("clock-window-ms", "1d"), 86400000);
    assert_int_equal(broker_uint("checkpoint-ms", "10"), 10);
    broker_bad("clock-window-ms", "999", KETEN_ERR_INVALID, "below the minimum of 1000 ms");
    broker_bad("clock-window-ms", "500ms", KETEN_ERR_INVALID, "below the minimum");
    broker_bad("clock-window-ms", "2d", KETEN_ERR_INVALID, "above the maximum of 86400000 ms");
    broker_bad("checkpoint-ms", "9", KETEN_ERR_INVALID, "below the minimum of 10 ms");
    broker_bad("clock-window-ms", "5 minutes", KETEN_ERR_INVALID, "not a duration");
    broker_bad("clock-window-ms", "5MIN", KETEN_ERR_INVALID, "not a duration");
    broker_bad("clock-window-ms", "1.5s", KETEN_ERR_INVALID, "not a duration");
    broker_bad("clock-window-ms", "s", KETEN_ERR_INVALID, "not a duration");
    broker_bad("clock-window-ms", "5  s", KETEN_ERR_INVALID, "not a duration");
    broker_bad("clock-window-ms", "99999999999999999d", KETEN_ERR_INVALID, "above the maximum");
}

static void test_size(void **state)
{
    (void)state;
    assert_int_equal(broker_uint("map-size", "16777216"), 16 * MIB);
    assert_int_equal(broker_uint("map-size", "16M"), 16 * MIB);
    assert_int_equal(broker_uint("map-size", "512 MiB"), 512 * MIB);
    assert_int_equal(broker_uint("map-size", "4g"), 4 * GIB);
    assert_int_equal(broker_uint("map-size", "1T"), 1024 * GIB);
    assert_int_equal(broker_uint("map-size", "65536k"), 64 * MIB);
    broker_bad(
        "map-size", "16777215", KETEN_ERR_INVALID, "below the minimum of 16777216 bytes (16 MiB)");
    broker_bad("map-size", "15M", KETEN_ERR_INVALID, "below the minimum");
    broker_bad(
        "map-size", "2T", KETEN_ERR_INVALID, "above the maximum of 1099511627776 bytes (1 TiB)");
    broker_bad("map-size", "1GB", KETEN_ERR_INVALID, "not a size");
    broker_bad("map-size", "1.5G", KETEN_ERR_INVALID, "not a size");
    broker_bad("map-size", "G", KETEN_ERR_INVALID, "not a size");
    broker_bad("map-size", "-1G", KETEN_ERR_INVALID, "not a size");
    broker_bad("map-size", "18446744073709551615G", KETEN_ERR_INVALID, "above the maximum");
}

/* The daemons' tables have no boolean now; a table of one, for the type. */
static const keten_config_setting flag_settings[] = {
    { .name = "flag", .type = KETEN_CONFIG_BOOL, .default_value = "no", .help = "a flag" },
};
static const keten_config_table flag_table = {
    .program = "keten-test",
    .section = "test",
    .settings = flag_settings,
    .n_settings = 1,
};

static keten_err flag_load(const char *val, keten_config **cfg)
{
    char text[128], path[128];
    snprintf(text, sizeof text, "[test]\nflag = %s\n", val);
    return load_text(&flag_table, text, cfg, path, sizeof path);
}

static void test_bool(void **state)
{
    (void)state;
    static const char *const yes[] = { "yes", "Yes", "TRUE", "on", "1" };
    static const char *const no[] = { "no", "false", "Off", "0" };
    static const char *const bad[] = { "maybe", "2", "y", "yes please" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        keten_config *cfg = NULL;
        assert_int_equal(flag_load(yes[i], &cfg), KETEN_OK);
        assert_true(keten_config_get_bool(cfg, "flag"));
        keten_config_destroy(&cfg);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        keten_config *cfg = NULL;
        assert_int_equal(flag_load(no[i], &cfg), KETEN_OK);
        assert_false(keten_config_get_bool(cfg, "flag"));
        keten_config_destroy(&cfg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keten_config *cfg = NULL;
        assert_int_equal(flag_load(bad[i], &cfg), KETEN_ERR_INVALID);
        detail_has("bad value for key 'flag'", "not yes or no", NULL);
        keten_config_destroy(&cfg);
    }
}

static void test_enum(void **state)
{
    (void)state;
    keten_config *cfg = broker_ok("log-level", "warn");
    assert_string_equal(keten_config_get_str(cfg, "log-level"), "warn");
    assert_int_equal(keten_config_get_enum(cfg, "log-level"), 3);
    keten_config_destroy(&cfg);
    cfg = broker_ok("log-level", "debug");
    assert_int_equal(keten_config_get_enum(cfg, "log-level"), 0);
    keten_config_destroy(&cfg);
    broker_bad("log-level", "WARN", KETEN_ERR_INVALID, "not one of: debug, info, notice, warn");
    broker_bad("log-level", "trace", KETEN_ERR_INVALID, "not one of");
    broker_bad("log-level", "info,debug", KETEN_ERR_INVALID, "not one of");
}

static void test_path(void **state)
{
    (void)state;
    keten_config *cfg = broker_ok("home", "/srv/keten broker/home");
    assert_string_equal(keten_config_get_str(cfg, "home"), "/srv/keten broker/home");
    keten_config_destroy(&cfg);
    broker_bad("home", "var/lib/keten", KETEN_ERR_INVALID, "not an absolute path");
    broker_bad("home", "./home", KETEN_ERR_INVALID, "not an absolute path");
    broker_bad("home", "\"/var/lib/keten\"", KETEN_ERR_INVALID, "without quotes");
    broker_bad("home", "'/var/lib/keten'", KETEN_ERR_INVALID, "without quotes");
    broker_bad("home", "/var/lib/keten # the home", KETEN_ERR_INVALID, "a comment goes on a line");
    char long_path[300];
    long_path[0] = '/';
    memset(long_path + 1, 'a', 180);
    long_path[181] = '\0';
    cfg = broker_ok("anchor", long_path); /* fits a line */
    keten_config_destroy(&cfg);
    /* On the command line a relative path is fine (relative to the cwd). */
    cfg = keten_config_new(&keten_config_broker_table);
    assert_non_null(cfg);
    assert_int_equal(keten_config_set(cfg, "home", "state/broker", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_string_equal(keten_config_get_str(cfg, "home"), "state/broker");
    assert_int_equal(
        keten_config_set(cfg, "home", "state/b", KETEN_CONFIG_SRC_FILE), KETEN_ERR_INVALID);
    detail_has("home: ", "not an absolute path", NULL);
    char huge[KETEN_CONFIG_VALUE_MAX + 8];
    huge[0] = '/';
    memset(huge + 1, 'p', sizeof huge - 2);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(keten_config_set(cfg, "home", huge, KETEN_CONFIG_SRC_CLI), KETEN_ERR_INVALID);
    detail_has("--home: ", "longer than", NULL);
    keten_config_destroy(&cfg);
}

static void test_string(void **state)
{
    (void)state;
    keten_config *cfg = node_ok("on-message", "/usr/local/bin/keten-hook --queue \"signals\"");
    assert_string_equal(
        keten_config_get_str(cfg, "on-message"), "/usr/local/bin/keten-hook --queue \"signals\"");
    keten_config_destroy(&cfg);
    cfg = node_ok("on-message", "logger -t keten");
    keten_config_destroy(&cfg);
    node_bad("on-message", "hook # comment", "a comment goes on a line");
    /* A control character on the command line. */
    cfg = keten_config_new(&keten_config_node_table);
    assert_non_null(cfg);
    assert_int_equal(
        keten_config_set(cfg, "on-message", "a\nb", KETEN_CONFIG_SRC_CLI), KETEN_ERR_INVALID);
    detail_has("--on-message: ", "control character", NULL);
    assert_int_equal(
        keten_config_set(cfg, "on-message", "", KETEN_CONFIG_SRC_CLI), KETEN_ERR_INVALID);
    detail_has("--on-message: ", "empty value", NULL);
    keten_config_destroy(&cfg);
}

static void test_endpoint(void **state)
{
    (void)state;
    static const char *const good[]
        = { "tcp://0.0.0.0:7250", "tcp://*:7250", "tcp://[::]:7250", "tcp://[::1]:1",
              "tcp://broker.example.org:65535", "tcp://eth0:7250", "ipc:///run/keten/broker.sock" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        keten_config *cfg = broker_ok("listen", good[i]);
        assert_string_equal(keten_config_get_str(cfg, "listen"), good[i]);
        keten_config_destroy(&cfg);
    }
    broker_bad("listen", "tcp://0.0.0.0", KETEN_ERR_INVALID, "expected HOST:PORT");
    broker_bad("listen", "tcp://0.0.0.0:0", KETEN_ERR_INVALID, "from 1 to 65535, or * for any");
    broker_bad("listen", "tcp://0.0.0.0:65536", KETEN_ERR_INVALID, "port must be");
    broker_bad("listen", "tcp://0.0.0.0:http", KETEN_ERR_INVALID, "port must be");
    broker_bad("listen", "tcp://:7250", KETEN_ERR_INVALID, "no host");
    broker_bad("listen", "tcp://::1:7250", KETEN_ERR_INVALID, "in brackets");
    broker_bad("listen", "tcp://[::1:7250", KETEN_ERR_INVALID, "in brackets");
    broker_bad("listen", "tcp://bro ker:7250", KETEN_ERR_INVALID, "in the host name");
    broker_bad("listen", "udp://0.0.0.0:7250", KETEN_ERR_INVALID, "not an endpoint");
    broker_bad("listen", "0.0.0.0:7250", KETEN_ERR_INVALID, "not an endpoint");
    broker_bad("listen", "ipc://", KETEN_ERR_INVALID, "needs a socket path");
    broker_bad("listen", "ipc://run/keten.sock", KETEN_ERR_INVALID, "not absolute");
    char text[300];
    snprintf(text, sizeof text, "ipc:///%0108d", 0); /* 109-byte path */
    broker_bad("listen", text, KETEN_ERR_INVALID, "longer than 107 bytes");
    /* The node connects: the wildcard host is the broker's, not the node's. */
    keten_config *cfg = node_ok("broker", "tcp://broker.example.org:7250");
    keten_config_destroy(&cfg);
    node_bad("broker", "tcp://*:7250", "'*' is for listening");
    node_bad("broker", "tcp://broker.example.org:*", "'*' is for listening");
    cfg = node_ok("broker", "ipc:///run/keten/broker.sock");
    keten_config_destroy(&cfg);
    node_bad("broker", "tcp://broker.example.org", "expected HOST:PORT");
}

static void test_metrics_host_port(void **state)
{
    (void)state;
    /* Port 0: any free port (the daemon logs the one it got; tests use it). */
    static const char *const good[]
        = { "127.0.0.1:9750", "[::1]:9750", "localhost:9750", "127.0.0.1:0" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        keten_config *cfg = broker_ok("metrics", good[i]);
        assert_string_equal(keten_config_get_str(cfg, "metrics"), good[i]);
        keten_config_destroy(&cfg);
    }
    broker_bad("metrics", "127.0.0.1", KETEN_ERR_INVALID, "expected HOST:PORT");
    broker_bad("metrics", "127.0.0.1:x", KETEN_ERR_INVALID, "port must be");
    broker_bad("metrics", "127.0.0.1:65536", KETEN_ERR_INVALID, "from 0 to 65535");
    broker_bad("metrics", "127.0.0.1:*", KETEN_ERR_INVALID, "port must be");
    broker_bad("metrics", ":9750", KETEN_ERR_INVALID, "no host");
    broker_bad("metrics", "http://127.0.0.1:9750", KETEN_ERR_INVALID, "without a scheme");
    broker_bad("metrics", "", KETEN_ERR_INVALID, "empty value");
}

/* ---- keys, sections, syntax ----------------------------------------------- */

static void test_unknown_key_suggestion(void **state)
{
    (void)state;
    char path[128], want[256];
    keten_config *cfg = NULL;
    assert_int_equal(load_text(&keten_config_broker_table,
                         "[broker]\nhome = /var/lib/keten/broker\nlisten-adress = tcp://*:7250\n",
                         &cfg, path, sizeof path),
        KETEN_ERR_INVALID);
    snprintf(want, sizeof want, "%s:3: unknown key 'listen-adress' (did you mean 'listen'?)", path);
    assert_string_equal(keten_err_detail(), want);
    assert_string_equal(keten_config_error(cfg, 0), want);
    /* All or nothing: home was not taken either. */
    assert_false(keten_config_is_set(cfg, "home"));
    keten_config_destroy(&cfg);

    broker_bad("map_size", "1G", KETEN_ERR_INVALID, "did you mean 'map-size'?");
    broker_bad("retry-horizon", "7", KETEN_ERR_INVALID, "did you mean 'retry-horizon-days'?");
    broker_bad("Listen", "tcp://*:1", KETEN_ERR_INVALID, "did you mean 'listen'?");
    broker_bad("chekpoint-record", "5", KETEN_ERR_INVALID, "did you mean 'checkpoint-records'?");
    broker_bad("compression", "yes", KETEN_ERR_INVALID, "keten-broker has no such setting");
    /* The other program's key. */
    broker_bad("on-message", "x", KETEN_ERR_INVALID, "unknown key 'on-message'");

    cfg = keten_config_new(&keten_config_broker_table);
    assert_non_null(cfg);
    assert_int_equal(
        keten_config_set(cfg, "listn", "tcp://*:1", KETEN_CONFIG_SRC_CLI), KETEN_ERR_INVALID);
    detail_has("unknown option 'listn' (did you mean 'listen'?)", NULL);
    keten_config_destroy(&cfg);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    char path[128], want[256];
    keten_config *cfg = NULL;
    assert_int_equal(load_text(&keten_config_broker_table,
                         "[broker]\nlisten = tcp://*:1\n\n[broker]\nlisten = tcp://*:2\n", &cfg,
                         path, sizeof path),
        KETEN_ERR_INVALID);
    snprintf(want, sizeof want, "%s:5: duplicate key 'listen' (first set on line 2)", path);
    assert_string_equal(keten_err_detail(), want);
    assert_false(keten_config_is_set(cfg, "listen"));
    keten_config_destroy(&cfg);
}

static void test_sections(void **state)
{
    (void)state;
    char path[128], want[256];
    keten_config *cfg = NULL;
    /* Another program's section. */
    assert_int_equal(load_text(&keten_config_broker_table, "[node]\nhome = /var/lib/keten/node\n",
                         &cfg, path, sizeof path),
        KETEN_ERR_INVALID);
    snprintf(want, sizeof want,
        "%s:1: section [node] is not for keten-broker: its settings go in [broker], the only "
        "section",
        path);
    assert_string_equal(keten_err_detail(), want);
    assert_int_equal(keten_config_error_count(cfg), 1); /* its keys are not reported again */
    keten_config_destroy(&cfg);
    /* A section after the right one, even empty. */
    assert_int_equal(load_text(&keten_config_node_table, "[node]\nlog-level = debug\n[extra]\n",
                         &cfg, path, sizeof path),
        KETEN_ERR_INVALID);
    detail_has(":3: section [extra] is not for keten-node", NULL);
    assert_string_equal(keten_config_get_str(cfg, "log-level"), "info"); /* nothing used */
    keten_config_destroy(&cfg);
    /* A key before any section. */
    assert_int_equal(
        load_text(&keten_config_node_table, "log-level = debug\n[node]\n", &cfg, path, sizeof path),
        KETEN_ERR_INVALID);
    snprintf(
        want, sizeof want, "%s:1: key 'log-level' is outside a section: put it under [node]", path);
    assert_string_equal(keten_err_detail(), want);
    keten_config_destroy(&cfg);
    /* "[ node ]" is not [node]. */
    assert_int_equal(load_text(&keten_config_node_table, "[ node ]\n", &cfg, path, sizeof path),
        KETEN_ERR_INVALID);
    detail_has("section [ node ] is not for keten-node", NULL);
    keten_config_destroy(&cfg);
    /* An empty file, or only the section: nothing set, no error. */
    assert_int_equal(load_text(&keten_config_node_table, "", &cfg, path, sizeof path), KETEN_OK);
    keten_config_destroy(&cfg);
    assert_int_equal(
        load_text(&keten_config_node_table, "[node] # the node\n", &cfg, path, sizeof path),
        KETEN_OK);
    keten_config_destroy(&cfg);
}

static void syntax_bad(const char *text, unsigned line, const char *why)
{
    char path[128], where[160];
    keten_config *cfg = NULL;
    keten_err e = load_text(&keten_config_broker_table, text, &cfg, path, sizeof path);
    if (e != KETEN_ERR_MALFORMED) {
        fail_msg("expected a syntax error, got %s (%s)", keten_err_str(e), keten_err_detail());
    }
    snprintf(where, sizeof where, "%s:%u: ", path, line);
    detail_has(where, why, NULL);
    keten_config_destroy(&cfg);
}

static void test_syntax(void **state)
{
    (void)state;
    syntax_bad("[broker]\nlisten tcp://*:7250\n", 2, "expected 'key = value'");
    syntax_bad("[broker]\nlisten: tcp://*:7250\n", 2, "expected 'key = value'");
    syntax_bad("[broker]\n= tcp://*:7250\n", 2, "no key before '='");
    syntax_bad("[broker\nlisten = tcp://*:7250\n", 1, "without ']'");
    syntax_bad("[broker] listen = tcp://*:7250\n", 1, "text after the section header");
    syntax_bad("[broker]\nlisten = tcp://*:7250\x01\n", 2, "control character");
    /* No multi-line values: an indented line is a line of its own. */
    syntax_bad("[broker]\nhome = /var/lib\n    /keten\n", 3, "expected 'key = value'");
    /* Lines longer than inih's buffer would be cut in two: refused. */
    char text[400];
    int n = snprintf(text, sizeof text, "[broker]\n# a comment\nhome = /");
    memset(text + n, 'x', 250);
    strcpy(text + n + 250, "\n");
    syntax_bad(text, 3, "line longer than 197 characters");
    /* A long comment is harmless. */
    n = snprintf(text, sizeof text, "[broker]\n# ");
    memset(text + n, 'c', 300);
    strcpy(text + n + 300, "\nretry-horizon-days = 9\n");
    char path[128];
    keten_config *cfg = NULL;
    assert_int_equal(
        load_text(&keten_config_broker_table, text, &cfg, path, sizeof path), KETEN_OK);
    assert_int_equal(keten_config_get_uint(cfg, "retry-horizon-days"), 9);
    keten_config_destroy(&cfg);
    /* The longest line that fits. */
    n = snprintf(text, sizeof text, "[broker]\nhome = /");
    memset(text + n, 'y', KETEN_CONFIG_LINE_MAX - 8);
    strcpy(text + n + KETEN_CONFIG_LINE_MAX - 8, "\n");
    assert_int_equal(
        load_text(&keten_config_broker_table, text, &cfg, path, sizeof path), KETEN_OK);
    assert_int_equal(strlen(keten_config_get_str(cfg, "home")), KETEN_CONFIG_LINE_MAX - 7);
    keten_config_destroy(&cfg);
    /* A NUL byte: not a text file. */
    char nulpath[128];
    write_file("[broker]\nhome = /a\0b\n", 21, 0644, nulpath, sizeof nulpath);
    cfg = keten_config_new(&keten_config_broker_table);
    assert_non_null(cfg);
    assert_int_equal(keten_config_load(cfg, nulpath), KETEN_ERR_MALFORMED);
    detail_has(":2: a NUL byte", NULL);
    keten_config_destroy(&cfg);
}

static void test_several_errors(void **state)
{
    (void)state;
    char path[128];
    keten_config *cfg = NULL;
    assert_int_equal(load_text(&keten_config_broker_table,
                         "[broker]\n"
                         "listen = nowhere\n" /* 2: bad value */
                         "lisen = tcp://*:1\n" /* 3: unknown */
                         "home = /a\n"
                         "home = /b\n", /* 5: duplicate */
                         &cfg, path, sizeof path),
        KETEN_ERR_INVALID);
    assert_int_equal(keten_config_error_count(cfg), 3);
    detail_has(":2: bad value for key 'listen'", "(and 2 more errors)", NULL);
    assert_non_null(strstr(keten_config_error(cfg, 0), ":2: bad value for key 'listen'"));
    assert_non_null(strstr(keten_config_error(cfg, 1), ":3: unknown key 'lisen'"));
    assert_non_null(strstr(keten_config_error(cfg, 2), ":5: duplicate key 'home'"));
    assert_null(keten_config_error(cfg, 3));
    assert_false(keten_config_is_set(cfg, "home"));
    /* The next load starts a fresh list. */
    char good[128];
    write_conf("[broker]\nhome = /c\n", good, sizeof good);
    assert_int_equal(keten_config_load(cfg, good), KETEN_OK);
    assert_int_equal(keten_config_error_count(cfg), 0);
    assert_string_equal(keten_config_get_str(cfg, "home"), "/c");
    keten_config_destroy(&cfg);

    /* More errors than are kept: all counted. */
    char text[4096];
    size_t len = (size_t)snprintf(text, sizeof text, "[broker]\n");
    for (int i = 0; i < KETEN_CONFIG_ERRORS_MAX + 5; i++) {
        len += (size_t)snprintf(text + len, sizeof text - len, "bogus-%d = 1\n", i);
    }
    assert_int_equal(
        load_text(&keten_config_broker_table, text, &cfg, path, sizeof path), KETEN_ERR_INVALID);
    assert_int_equal(keten_config_error_count(cfg), KETEN_CONFIG_ERRORS_MAX + 5);
    assert_non_null(keten_config_error(cfg, KETEN_CONFIG_ERRORS_MAX - 1));
    assert_null(keten_config_error(cfg, KETEN_CONFIG_ERRORS_MAX));
    keten_config_destroy(&cfg);
}

/* ---- files ------------------------------------------------------------------ */

static void test_files(void **state)
{
    (void)state;
    char path[160];
    keten_config *cfg = keten_config_new(&keten_config_broker_table);
    assert_non_null(cfg);
    snprintf(path, sizeof path, "%s/missing.conf", tmpdir);
    assert_int_equal(keten_config_load(cfg, path), KETEN_ERR_NOT_FOUND);
    detail_has(path, "no such configuration file", NULL);
    /* A folder. */
    assert_int_equal(keten_config_load(cfg, tmpdir), KETEN_ERR_WRONG_TYPE);
    /* Writable by others (or group): refused; the same file 0644 is read. */
    write_file("[broker]\nhome = /h\n", 19, 0666, path, sizeof path);
    assert_int_equal(keten_config_load(cfg, path), KETEN_ERR_PERMISSIONS);
    detail_has("the configuration file is writable by others (mode 666)", "chmod go-w", NULL);
    /* The error's own text fits a configuration file too: it is no secret,
     * and what is wrong is who can write it (the detail says so). */
    assert_null(strstr(keten_err_str(KETEN_ERR_PERMISSIONS), "secret"));
    assert_null(strstr(keten_err_str(KETEN_ERR_PERMISSIONS), "readable"));
    assert_int_equal(chmod(path, 0664), 0);
    assert_int_equal(keten_config_load(cfg, path), KETEN_ERR_PERMISSIONS);
    detail_has("writable by its group (mode 664)", NULL);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(keten_config_load(cfg, path), KETEN_OK);
    assert_string_equal(keten_config_get_str(cfg, "home"), "/h");
    /* At most KETEN_CONFIG_FILE_MAX bytes (comments count). */
    char *big = malloc(KETEN_CONFIG_FILE_MAX + 1);
    assert_non_null(big);
    memset(big, '\n', KETEN_CONFIG_FILE_MAX + 1);
    big[0] = '#';
    write_file(big, KETEN_CONFIG_FILE_MAX, 0600, path, sizeof path);
    assert_int_equal(keten_config_load(cfg, path), KETEN_OK);
    write_file(big, KETEN_CONFIG_FILE_MAX + 1, 0600, path, sizeof path);
    assert_int_equal(keten_config_load(cfg, path), KETEN_ERR_TOO_LARGE);
    free(big);
    keten_config_destroy(&cfg);
}

/* A FIFO (a named pipe) given as the configuration file is refused at once
 * as not a regular file: opening it for reading must not wait for a writer
 * (keten-broker run --config FIFO used to hang before its first log line).
 * alarm() ends the test if it hangs. The twin: a regular file of that name
 * is read. */
static void test_fifo_refused(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/fifo.conf", tmpdir);
    assert_int_equal(mkfifo(path, 0600), 0);
    keten_config *cfg = keten_config_new(&keten_config_broker_table);
    assert_non_null(cfg);
    alarm(10);
    assert_int_equal(keten_config_load(cfg, path), KETEN_ERR_WRONG_TYPE);
    alarm(0);
    detail_has(path, "not a regular file", NULL);
    assert_int_equal(unlink(path), 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs("[broker]\nhome = /h\n", f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(keten_config_load(cfg, path), KETEN_OK);
    assert_string_equal(keten_config_get_str(cfg, "home"), "/h");
    keten_config_destroy(&cfg);
}

/* ---- the command line ----------------------------------------------------- */

static void test_cli_override(void **state)
{
    (void)state;
    char path[128];
    write_conf("[broker]\nlisten = tcp://0.0.0.0:7250\nmap-size = 2G\nlog-level = warn\n", path,
        sizeof path);

    /* File first, then the command line: the command line wins. */
    keten_config *cfg = keten_config_new(&keten_config_broker_table);
    assert_non_null(cfg);
    assert_int_equal(keten_config_load(cfg, path), KETEN_OK);
    assert_int_equal(
        keten_config_set(cfg, "listen", "ipc:///tmp/b.sock", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_string_equal(keten_config_get_str(cfg, "listen"), "ipc:///tmp/b.sock");
    assert_int_equal(keten_config_source_of(cfg, "listen"), KETEN_CONFIG_SRC_CLI);
    assert_int_equal(keten_config_get_uint(cfg, "map-size"), 2 * GIB);
    assert_int_equal(keten_config_source_of(cfg, "map-size"), KETEN_CONFIG_SRC_FILE);
    /* The same checks on the command line, naming the option. */
    assert_int_equal(
        keten_config_set(cfg, "map-size", "1M", KETEN_CONFIG_SRC_CLI), KETEN_ERR_INVALID);
    detail_has("--map-size: '1M' is below the minimum", NULL);
    assert_int_equal(keten_config_get_uint(cfg, "map-size"), 2 * GIB); /* unchanged */
    assert_int_equal(
        keten_config_set(cfg, "log-level", "loud", KETEN_CONFIG_SRC_CLI), KETEN_ERR_INVALID);
    detail_has("--log-level: 'loud' is not one of", NULL);
    /* Given twice on the command line: the last one counts. */
    assert_int_equal(keten_config_set(cfg, "log-level", "debug", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_int_equal(keten_config_set(cfg, "log-level", "error", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_string_equal(keten_config_get_str(cfg, "log-level"), "error");
    /* Loading the file again does not undo the command line. */
    assert_int_equal(keten_config_load(cfg, path), KETEN_OK);
    assert_string_equal(keten_config_get_str(cfg, "listen"), "ipc:///tmp/b.sock");
    assert_string_equal(keten_config_get_str(cfg, "log-level"), "error");
    keten_config_destroy(&cfg);

    /* Command line first (as getopt runs), then the file: the command line
     * still wins, and the file's other values are used. */
    cfg = keten_config_new(&keten_config_broker_table);
    assert_non_null(cfg);
    assert_int_equal(keten_config_set(cfg, "map-size", "64M", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_int_equal(keten_config_load(cfg, path), KETEN_OK);
    assert_int_equal(keten_config_get_uint(cfg, "map-size"), 64 * MIB);
    assert_int_equal(keten_config_source_of(cfg, "map-size"), KETEN_CONFIG_SRC_CLI);
    assert_string_equal(keten_config_get_str(cfg, "listen"), "tcp://0.0.0.0:7250");
    /* The file is still checked in full for a key the command line set. */
    char bad[128];
    write_conf("[broker]\nmap-size = lots\n", bad, sizeof bad);
    assert_int_equal(keten_config_load(cfg, bad), KETEN_ERR_INVALID);
    detail_has(":2: bad value for key 'map-size'", NULL);
    /* Bad arguments. */
    assert_int_equal(
        keten_config_set(cfg, "map-size", "1G", KETEN_CONFIG_SRC_DEFAULT), KETEN_ERR_INVALID);
    assert_int_equal(
        keten_config_set(cfg, "map-size", NULL, KETEN_CONFIG_SRC_CLI), KETEN_ERR_INVALID);
    /* A value set "from a file" by the API: same checks as in a file. */
    assert_int_equal(keten_config_set(cfg, "home", "/srv/keten", KETEN_CONFIG_SRC_FILE), KETEN_OK);
    assert_int_equal(keten_config_source_of(cfg, "home"), KETEN_CONFIG_SRC_FILE);
    keten_config_destroy(&cfg);
}

static void test_check_required(void **state)
{
    (void)state;
    keten_config *cfg = keten_config_new(&keten_config_node_table);
    assert_non_null(cfg);
    assert_int_equal(keten_config_set(cfg, "home", "/h", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_int_equal(keten_config_set(cfg, "anchor", "/a", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_int_equal(keten_config_set(cfg, "directory", "/d", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_int_equal(keten_config_check(cfg), KETEN_ERR_INVALID);
    detail_has("broker is not set: give --broker, or set broker in the [node] section", NULL);
    assert_int_equal(
        keten_config_set(cfg, "broker", "tcp://b.example:7250", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    assert_int_equal(keten_config_check(cfg), KETEN_OK);
    keten_config_destroy(&cfg);
}

/* The printed configuration loads again into the same values. */
static void test_print_roundtrip(void **state)
{
    (void)state;
    char path[128], out[160];
    keten_config *cfg = NULL;
    assert_int_equal(load_text(&keten_config_broker_table,
                         "[broker]\nhome = /h\nanchor = /a\ndirectory = /d\n"
                         "listen = tcp://*:7250\nmap-size = 3G\nlog-level = notice\n",
                         &cfg, path, sizeof path),
        KETEN_OK);
    assert_int_equal(keten_config_set(cfg, "checkpoint-ms", "5s", KETEN_CONFIG_SRC_CLI), KETEN_OK);
    snprintf(out, sizeof out, "%s/printed.conf", tmpdir);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    assert_int_equal(keten_config_print(cfg, f), KETEN_OK);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(out, 0600), 0);
    keten_config *again = keten_config_new(&keten_config_broker_table);
    assert_non_null(again);
    if (keten_config_load(again, out) != KETEN_OK) {
        fail_msg("printed configuration refused: %s", keten_err_detail());
    }
    const keten_config_table *t = &keten_config_broker_table;
    for (size_t i = 0; i < t->n_settings; i++) {
        const char *name = t->settings[i].name;
        assert_int_equal(keten_config_is_set(cfg, name), keten_config_is_set(again, name));
        switch (t->settings[i].type) {
        case KETEN_CONFIG_UINT:
        case KETEN_CONFIG_DURATION_MS:
        case KETEN_CONFIG_SIZE_BYTES:
            assert_int_equal(keten_config_get_uint(cfg, name), keten_config_get_uint(again, name));
            break;
        case KETEN_CONFIG_BOOL:
            assert_int_equal(keten_config_get_bool(cfg, name), keten_config_get_bool(again, name));
            break;
        default:
            if (keten_config_is_set(cfg, name)) {
                assert_string_equal(
                    keten_config_get_str(cfg, name), keten_config_get_str(again, name));
            }
        }
    }
    assert_int_equal(keten_config_get_uint(again, "checkpoint-ms"), 5000);
    keten_config_destroy(&again);
    keten_config_destroy(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_bad_default_refused),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_load_full_file),
        cmocka_unit_test(test_bom_crlf),
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_string),
        cmocka_unit_test(test_endpoint),
        cmocka_unit_test(test_metrics_host_port),
        cmocka_unit_test(test_unknown_key_suggestion),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_fifo_refused),
        cmocka_unit_test(test_cli_override),
        cmocka_unit_test(test_check_required),
        cmocka_unit_test(test_print_roundtrip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
