/* util: capped and permission-checked file reads, atomic writes, hex, time,
 * names; err: texts and exit codes. */
#include <dirent.h>
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

#include <sodium.h>

#include "err.h"
#include "util.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/keten-util-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static void path_of(const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static void test_write_read_roundtrip(void **state)
{
    (void)state;
    char p[128];
    path_of("a", p, sizeof p);
    assert_int_equal(keten_file_write(p, "hello", 5, 0644, false), KETEN_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(keten_file_read(p, 16, &buf, &len), KETEN_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    free(buf);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    /* Replace atomically: a new file with the new bytes and the new mode
     * takes the name. The old file is not rewritten in place (a second link
     * to it still reads the old bytes), and no temporary file is left. */
    char old[128];
    path_of("a-old", old, sizeof old);
    assert_int_equal(link(p, old), 0);
    assert_int_equal(keten_file_write(p, "bye", 3, 0600, false), KETEN_OK);
    assert_int_equal(keten_file_read(p, 16, &buf, &len), KETEN_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "bye", 3);
    free(buf);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(keten_file_read(old, 16, &buf, &len), KETEN_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    free(buf);
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        assert_null(strstr(de->d_name, ".tmp"));
    }
    closedir(d);
    assert_int_equal(unlink(old), 0);
    /* size cap */
    assert_int_equal(keten_file_read(p, 2, &buf, &len), KETEN_ERR_TOO_LARGE);
    path_of("missing", p, sizeof p);
    assert_int_equal(keten_file_read(p, 2, &buf, &len), KETEN_ERR_NOT_FOUND);
}

static void test_exclusive_refuses_existing(void **state)
{
    (void)state;
    char p[128];
    path_of("ex", p, sizeof p);
    assert_int_equal(keten_file_write(p, "one", 3, 0600, true), KETEN_OK);
    assert_int_equal(keten_file_write(p, "two", 3, 0600, true), KETEN_ERR_EXISTS);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(keten_file_read_secret(p, 16, &buf, &len), KETEN_OK);
    assert_memory_equal(buf, "one", 3);
    sodium_free(buf);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Written under a temporary name and linked to its own: one name in
     * the end, no temporary file left beside it, after success or refusal. */
    assert_int_equal(st.st_nlink, 1);
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        assert_null(strstr(de->d_name, ".tmp"));
    }
    closedir(d);
    /* A symbolic link at the name, even a dangling one, is never followed:
     * refused, and its target is not created. */
    char target[128], link[128];
    path_of("ex-target", target, sizeof target);
    path_of("ex-link", link, sizeof link);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(keten_file_write(link, "x", 1, 0600, true), KETEN_ERR_EXISTS);
    assert_int_equal(lstat(target, &st), -1);
    assert_int_equal(unlink(link), 0);
}

static void test_secret_permissions(void **state)
{
    (void)state;
    char p[128], link[128];
    path_of("s", p, sizeof p);
    assert_int_equal(keten_file_write(p, "k", 1, 0600, true), KETEN_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    const unsigned bad[] = { 0640, 0604, 0660, 0602, 0620 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(chmod(p, bad[i]), 0);
        assert_int_equal(keten_file_read_secret(p, 16, &buf, &len), KETEN_ERR_PERMISSIONS);
        assert_non_null(strstr(keten_err_detail(), "chmod 600"));
    }
    assert_int_equal(chmod(p, 0400), 0);
    assert_int_equal(keten_file_read_secret(p, 16, &buf, &len), KETEN_OK);
    sodium_free(buf);
    path_of("link", link, sizeof link);
    assert_int_equal(symlink(p, link), 0);
    assert_int_equal(keten_file_read_secret(link, 16, &buf, &len), KETEN_ERR_PERMISSIONS);
}

/* A FIFO (a named pipe) given as a file is refused at once as not a
 * regular file, for plain and secret reads: opening it for reading must not
 * wait for a writer. alarm() ends the test if it hangs. */
static void test_fifo_refused(void **state)
{
    (void)state;
    char p[128];
    path_of("fifo", p, sizeof p);
    assert_int_equal(mkfifo(p, 0600), 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    alarm(10);
    assert_int_equal(keten_file_read(p, 16, &buf, &len), KETEN_ERR_IO);
    assert_non_null(strstr(keten_err_detail(), "is not a regular file"));
    assert_int_equal(keten_file_read_secret(p, 16, &buf, &len), KETEN_ERR_IO);
    assert_non_null(strstr(keten_err_detail(), "is not a regular file"));
    alarm(0);
    assert_null(buf);
    /* the twin: a regular file of the same name is read */
    assert_int_equal(unlink(p), 0);
    assert_int_equal(keten_file_write(p, "ok", 2, 0600, true), KETEN_OK);
    assert_int_equal(keten_file_read(p, 16, &buf, &len), KETEN_OK);
    assert_int_equal(len, 2);
    free(buf);
}

static void test_hex(void **state)
{
    (void)state;
    const uint8_t in[] = { 0x00, 0xab, 0xff, 0x10 };
    char out[9];
    keten_hex(in, sizeof in, out);
    assert_string_equal(out, "00abff10");
    uint8_t back[4];
    assert_int_equal(keten_unhex("00abff10", back, 4), KETEN_OK);
    assert_memory_equal(back, in, 4);
    assert_int_equal(keten_unhex("00abff1", back, 4), KETEN_ERR_INVALID);
    assert_int_equal(keten_unhex("00abff1g", back, 4), KETEN_ERR_INVALID);
}

static void test_time(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(keten_time_parse("2026-11-19T10:30:00Z", &ms), KETEN_OK);
    assert_int_equal(ms, 1795084200000ull);
    char out[40];
    keten_time_iso(ms, out, sizeof out);
    assert_string_equal(out, "2026-11-19T10:30:00.000Z");
    assert_int_equal(keten_time_parse("2026-11-19T10:30:00.25Z", &ms), KETEN_OK);
    assert_int_equal(ms % 1000, 250);
    assert_int_equal(keten_time_parse("253402300799999", &ms), KETEN_OK);
    assert_int_equal(keten_time_parse("253402300800000", &ms), KETEN_ERR_INVALID);
    assert_int_equal(keten_time_parse("9999-12-31T23:59:59.999Z", &ms), KETEN_OK);
    assert_int_equal(ms, KETEN_TIME_MAX_MS);
    assert_int_equal(keten_time_parse("1795084200000", &ms), KETEN_OK);
    assert_int_equal(ms, 1795084200000ull);
    const char *bad[] = { "2026-11-19 10:30:00Z", "2026-11-19T10:30:00", "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z", "2026-11-19T10:30:00+01:00", "yesterday", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(keten_time_parse(bad[i], &ms), KETEN_ERR_INVALID);
    }
    /* Strict RFC 3339 digits: a sign, a space or a missing digit inside a
     * field (each of which sscanf's %d took) is refused, in every field */
    const char *loose[] = { "2026-+1-19T10:30:00Z", "2026-11-+9T10:30:00Z", "2026-11-19T+1:30:00Z",
        "2026-11-19T10:-0:00Z", "2026-11-19T10:30:+0Z", "+026-11-19T10:30:00Z",
        "-026-11-19T10:30:00Z", "2026- 1-19T10:30:00Z", "2026-11- 9T10:30:00Z",
        " 2026-11-19T10:30:00Z", "2026-1-19T10:30:00Z", "226-11-19T10:30:00Z",
        "2026-11-19T1:30:00Z", "2026-11-19T10:30:0Z", "02026-11-19T10:30:00Z",
        "2026-11-19t10:30:00Z", "2026-11-19T10:30:00.Z", "2026-11-19T10:30:00.-1Z",
        "2026-11-19T10:30:00z", "2026-11-19T10:30:00Z ", "2026-11-19T10:30" };
    for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
        ms = 7;
        assert_int_equal(keten_time_parse(loose[i], &ms), KETEN_ERR_INVALID);
        assert_int_equal(ms, 7); /* nothing written */
        assert_non_null(strstr(keten_err_detail(), "time '"));
    }
    /* the twins: the same times with their digits, and the forms RFC 3339
     * allows (a fraction of any length, +00:00) */
    assert_int_equal(keten_time_parse("2026-01-19T10:30:00Z", &ms), KETEN_OK);
    assert_int_equal(ms, 1768818600000ull);
    assert_int_equal(keten_time_parse("2026-11-09T01:00:00.123456Z", &ms), KETEN_OK);
    assert_int_equal(ms, 1794186000123ull);
    assert_int_equal(keten_time_parse("2026-11-19T10:30:00+00:00", &ms), KETEN_OK);
    assert_int_equal(ms, 1795084200000ull);
    assert_int_equal(keten_time_parse("1970-01-01T00:00:00Z", &ms), KETEN_OK);
    assert_int_equal(ms, 0);
    /* A second 60 (a leap second, which ms since 1970 cannot hold) is
     * refused: it was read as the next minute's 00, a second text for a
     * time that has one. Twin: 59. */
    const char *sixty[] = { "2026-11-19T10:30:60Z", "2026-11-19T10:59:60.5Z",
        "2016-12-31T23:59:60Z", "2026-11-19T10:30:61Z" };
    for (size_t i = 0; i < sizeof sixty / sizeof sixty[0]; i++) {
        ms = 7;
        assert_int_equal(keten_time_parse(sixty[i], &ms), KETEN_ERR_INVALID);
        assert_int_equal(ms, 7);
    }
    assert_int_equal(keten_time_parse("2026-11-19T10:30:59Z", &ms), KETEN_OK);
    assert_int_equal(ms, 1795084259000ull);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(keten_name_valid("gemeente-diemen"));
    assert_true(keten_name_valid("a"));
    assert_true(keten_name_valid("abcdefghijklmnopqrstuvwxyz012345"));
    assert_false(keten_name_valid("abcdefghijklmnopqrstuvwxyz0123456"));
    assert_false(keten_name_valid(""));
    assert_false(keten_name_valid("Politie"));
    assert_false(keten_name_valid("role:police"));
    assert_false(keten_name_valid("a b"));
    assert_true(keten_label_valid("riec-convenant-2024/art-5"));
    assert_false(keten_label_valid("/art-5"));
    assert_false(keten_label_valid("Woonfraude"));
    assert_false(keten_label_valid("*"));
}

static void test_err_texts(void **state)
{
    (void)state;
    for (int e = 0; e < KETEN_ERR__COUNT; e++) {
        assert_string_not_equal(keten_err_str((keten_err)e), "unknown error");
        for (int f = 0; f < e; f++) {
            assert_string_not_equal(keten_err_str((keten_err)e), keten_err_str((keten_err)f));
        }
    }
    assert_string_equal(keten_err_str(KETEN_ERR__COUNT), "unknown error");
    assert_int_equal(keten_err_exit_code(KETEN_OK), 0);
    assert_int_equal(keten_err_exit_code(KETEN_ERR_BAD_SIGNATURE), 3);
    assert_int_equal(keten_err_exit_code(KETEN_ERR_ROLLBACK), 3);
    assert_int_equal(keten_err_exit_code(KETEN_ERR_INCONSISTENT), 3);
    assert_int_equal(keten_err_exit_code(KETEN_ERR_IO), 1);
    assert_int_equal(keten_err_exit_code(KETEN_ERR_PASSPHRASE), 1);
    assert_int_equal(keten_err_set(KETEN_ERR_IO, "file %s", "x"), KETEN_ERR_IO);
    assert_string_equal(keten_err_detail(), "file x");
    keten_err_clear();
    assert_string_equal(keten_err_detail(), "");
}

/* Text another party sent, cleaned for a terminal or JSON: C0, DEL, C1,
 * the bidirectional controls that reorder text and bytes that are not
 * UTF-8 become '?', one per byte; the characters next to them stay. */
static void test_text_clean(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "a\x1b[2Jb\x07\x7f", "a?[2Jb??" },
        { "x\xc2\x9b"
          "31m\xc2\x80\xc2\x9f",
            "x??31m????" },
        { "Kerkstraat \xe2\x80\xae"
          "12\xe2\x80\xac",
            "Kerkstraat ???12???" },
        { "\xe2\x81\xa6"
          "a\xe2\x81\xa9",
            "???a???" },
        { "\xff\xc3\x28",
            "?"
            "?(" },
        /* twins: NBSP, the euro sign, RLM, U+2029, U+2065, U+206A, Arabic */
        { "Caf\xc3\xa9\xc2\xa0\xe2\x82\xac\xe2\x80\x8f\xe2\x80\xa9\xe2\x81\xa5\xe2\x81\xaa"
          "\xd8\xb4",
            "Caf\xc3\xa9\xc2\xa0\xe2\x82\xac\xe2\x80\x8f\xe2\x80\xa9\xe2\x81\xa5\xe2\x81\xaa"
            "\xd8\xb4" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        keten_text_clean(cases[i].in, out, sizeof out);
        if (strcmp(out, cases[i].out) != 0) {
            fail_msg("case %zu: '%s', expected '%s'", i, out, cases[i].out);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_read_roundtrip),
        cmocka_unit_test(test_exclusive_refuses_existing),
        cmocka_unit_test(test_secret_permissions),
        cmocka_unit_test(test_fifo_refused),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_err_texts),
        cmocka_unit_test(test_text_clean),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
