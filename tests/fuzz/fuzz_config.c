/*
 * fuzz_config.c - the daemons' configuration files (lib/config.c): the
 * input is written to a file of mode 0600 in a temporary directory made
 * once per process and loaded with the broker's table and with the node's
 * (keten_config_load), as broker.conf and node.conf are.
 *
 * Invariants:
 *   1. a load is all or nothing: after a refused file the effective
 *      configuration (keten_config_print) is what it was before, and the
 *      refusal lists at least one error (a file with a NUL byte is refused
 *      whole, before its lines, with the detail only); an accepted file
 *      records none;
 *   2. a refused file of the right size is refused as MALFORMED or INVALID
 *      (never an I/O or memory error for text that fits);
 *   3. an accepted file gives a configuration whose printed form loads
 *      again into a fresh configuration with the same values (the printed
 *      settings are a fixed point), and passes or fails keten_config_check
 *      the same way.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "fuzz_common.h"

static char dir[PATH_MAX];
static char conf_path[PATH_MAX];
static char again_path[PATH_MAX];

static void remove_dir(void)
{
    unlink(conf_path);
    unlink(again_path);
    rmdir(dir);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(dir, sizeof dir, "%s/keten-fuzz-config-XXXXXX",
        tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof dir && mkdtemp(dir) != NULL);
    n = snprintf(conf_path, sizeof conf_path, "%s/keten.conf", dir);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof conf_path);
    n = snprintf(again_path, sizeof again_path, "%s/again.conf", dir);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof again_path);
    atexit(remove_dir);
}

static void write_file(const char *path, const void *data, size_t size)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    const uint8_t *p = data;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, p + done, size - done);
        FUZZ_CHECK(w > 0);
        done += (size_t)w;
    }
    FUZZ_CHECK(close(fd) == 0);
}

/* The effective configuration as keten_config_print writes it (malloc). */
static char *printed(const keten_config *cfg, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(keten_config_print(cfg, f) == KETEN_OK);
    FUZZ_CHECK(fclose(f) == 0);
    return buf;
}

/* The printed settings without comment lines (their sources name files and
 * lines, which differ between two loads of the same values). */
static char *settings_only(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n + 1);
    FUZZ_CHECK(out != NULL);
    size_t o = 0;
    const char *p = text;
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t line = eol != NULL ? (size_t)(eol - p) + 1 : strlen(p);
        if (p[0] != '#') {
            memcpy(out + o, p, line);
            o += line;
        }
        p += line;
    }
    out[o] = '\0';
    return out;
}

static void one_table(const keten_config_table *table, const uint8_t *data, size_t size)
{
    keten_config *cfg = keten_config_new(table);
    FUZZ_CHECK(cfg != NULL);
    size_t before_len = 0;
    char *before = printed(cfg, &before_len);

    keten_err e = keten_config_load(cfg, conf_path);
    size_t after_len = 0;
    char *after = printed(cfg, &after_len);
    if (e != KETEN_OK) {
        /* 1 and 2 */
        FUZZ_CHECK(before_len == after_len && memcmp(before, after, before_len) == 0);
        if (size <= KETEN_CONFIG_FILE_MAX) {
            FUZZ_CHECK(e == KETEN_ERR_MALFORMED || e == KETEN_ERR_INVALID);
            /* A NUL byte refuses the file before any line is read: the
             * detail names it, the list of line errors is empty. */
            bool text = memchr(data, '\0', size) == NULL;
            FUZZ_CHECK(!text || keten_config_error_count(cfg) > 0);
            FUZZ_CHECK(!text || keten_config_error(cfg, 0) != NULL);
        } else {
            FUZZ_CHECK(e == KETEN_ERR_TOO_LARGE);
        }
        keten_err_clear();
    } else {
        FUZZ_CHECK(size <= KETEN_CONFIG_FILE_MAX);
        FUZZ_CHECK(keten_config_error_count(cfg) == 0);
        /* 3 */
        write_file(again_path, after, after_len);
        keten_config *again = keten_config_new(table);
        FUZZ_CHECK(again != NULL);
        if (keten_config_load(again, again_path) != KETEN_OK) {
            fprintf(stderr, "printed configuration:\n%s\nreload: %s\n", after, keten_err_detail());
            FUZZ_CHECK(!"the printed configuration loads again");
        }
        size_t again_len = 0;
        char *again_text = printed(again, &again_len);
        char *s1 = settings_only(after);
        char *s2 = settings_only(again_text);
        if (strcmp(s1, s2) != 0) {
            fprintf(stderr, "first:\n%s\nagain:\n%s\n", s1, s2);
            FUZZ_CHECK(!"the printed settings are a fixed point");
        }
        bool ok1 = keten_config_check(cfg) == KETEN_OK;
        bool ok2 = keten_config_check(again) == KETEN_OK;
        keten_err_clear();
        FUZZ_CHECK(ok1 == ok2);
        free(s1);
        free(s2);
        free(again_text);
        keten_config_destroy(&again);
    }
    free(before);
    free(after);
    keten_config_destroy(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        setup();
    }
    write_file(conf_path, data, size);
    one_table(&keten_config_broker_table, data, size);
    one_table(&keten_config_node_table, data, size);
    return 0;
}
