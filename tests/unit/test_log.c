/* log: every field value is escaped by the logger itself. A value with a
 * newline, quotes, `key=`, control bytes and invalid UTF-8 gives one line
 * with all of it escaped; twin: a plain value is written as it is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

static char buf[KETEN_LOG_LINE_MAX];

static size_t count(const char *s, char c)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += *s == c;
    }
    return n;
}

/* Double quotes in s that are not escaped with a backslash. */
static size_t unescaped_quotes(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        if (*s == '\\' && s[1] != '\0') {
            s++;
        } else {
            n += *s == '"';
        }
    }
    return n;
}

static void test_plain_values(void **state)
{
    (void)state;
    keten_log_init("keten-test", KETEN_LOG_INFO);
    size_t n = keten_log_format(buf, sizeof buf, KETEN_LOG_WARNING, "broker unreachable",
        "node=%s n=%d size=%zu leaf=%llu", "politie-mn", -3, (size_t)42, 7ULL);
    assert_string_equal(buf,
        "level=warn prog=keten-test msg=\"broker unreachable\" node=politie-mn n=-3 size=42 "
        "leaf=7\n");
    assert_int_equal(n, strlen(buf));
    /* A quoted template value stays quoted; several conversions in one. */
    keten_log_format(buf, sizeof buf, KETEN_LOG_ERR, "ALARM",
        "error=\"%s\" peer=%s:%u action=\"publish a new directory\"", "expired", "host", 80u);
    assert_string_equal(buf,
        "level=error prog=keten-test msg=ALARM error=\"expired\" peer=host:80 "
        "action=\"publish a new directory\"\n");
    /* No fields; widths, precision and %% */
    keten_log_format(buf, sizeof buf, KETEN_LOG_NOTICE, "broker stopped", NULL);
    assert_string_equal(buf, "level=notice prog=keten-test msg=\"broker stopped\"\n");
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "x", "a=%05d b=%.*s c=%*d d=100%% e=%c", 42,
        3, "abcdef", 4, 7, 'z');
    assert_string_equal(
        buf, "level=info prog=keten-test msg=x a=00042 b=abc c=\"   7\" d=100% e=z\n");
}

static void test_hostile_value(void **state)
{
    (void)state;
    keten_log_init("keten-broker", KETEN_LOG_INFO);
    /* What a peer could put in a detail: a new line that looks like a log
     * line, quotes, key=, control bytes, an invalid UTF-8 byte, an overlong
     * encoding and a surrogate; then a valid two-byte character. */
    const char *evil = "x\"\nlevel=error prog=keten-broker msg=ALARM alarm=forged\r\t\x01\x1b"
                       "[2J\x7f\\ node=other \xff\xc0\xaf\xed\xa0\x80 \xc3\xa9";
    keten_log_format(buf, sizeof buf, KETEN_LOG_WARNING, "submit refused", "node=%s detail=%s n=%d",
        "gemeente-diemen", evil, 1);
    assert_string_equal(buf,
        "level=warn prog=keten-broker msg=\"submit refused\" node=gemeente-diemen "
        "detail=\"x\\\"\\nlevel=error prog=keten-broker msg=ALARM alarm=forged\\r\\t\\x01\\x1b"
        "[2J\\x7f\\\\ node=other \\xff\\xc0\\xaf\\xed\\xa0\\x80 \xc3\xa9\" n=1\n");
    /* One line: the only newline is the last byte, and the quotes that are
     * not escaped are the value's own pair and the msg's. */
    assert_int_equal(count(buf, '\n'), 1);
    assert_int_equal(buf[strlen(buf) - 1], '\n');
    assert_null(strchr(buf, '\r'));
    assert_null(strchr(buf, '\x01'));
    assert_null(strchr(buf, '\x7f'));

    /* A bare template value that holds key=, a space or a quote is quoted. */
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "node=%s", "a node=b");
    assert_string_equal(buf, "level=info prog=keten-broker msg=m node=\"a node=b\"\n");
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "node=%s", "a=b");
    assert_string_equal(buf, "level=info prog=keten-broker msg=m node=\"a=b\"\n");
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "node=%s", "");
    assert_string_equal(buf, "level=info prog=keten-broker msg=m node=\"\"\n");
    /* A NULL string is not a crash. */
    const char *volatile none = NULL;
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "node=%s", none);
    assert_string_equal(buf, "level=info prog=keten-broker msg=m node=(null)\n");
    /* The message is escaped too. */
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "two\nlines", NULL);
    assert_string_equal(buf, "level=info prog=keten-broker msg=\"two\\nlines\"\n");
    /* A C1 control character (U+009B, a terminal's CSI, and U+0085) is
     * escaped byte by byte; twin: U+00A0, the first character after them,
     * is written as it is. */
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "detail=%s",
        "a\xc2\x9b"
        "2Jb\xc2\x85\xc2\xa0");
    assert_string_equal(
        buf, "level=info prog=keten-broker msg=m detail=\"a\\xc2\\x9b2Jb\\xc2\\x85\xc2\xa0\"\n");
}

static void test_long_value(void **state)
{
    (void)state;
    /* A value longer than the line: cut inside the quotes, never inside an
     * escape, closed, and the line says it was cut. */
    char big[3000];
    memset(big, '\n', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char small[200];
    size_t n = keten_log_format(small, sizeof small, KETEN_LOG_INFO, "m", "a=%s b=%s", big, "x");
    assert_int_equal(n, strlen(small));
    assert_true(n < sizeof small);
    assert_int_equal(count(small, '\n'), 1);
    const char *tail = " truncated=1\n";
    assert_string_equal(small + n - strlen(tail), tail);
    assert_int_equal(small[n - strlen(tail) - 1], '"');
    assert_int_equal(small[n - strlen(tail) - 2], 'n'); /* a whole "\n" */
    assert_int_equal(small[n - strlen(tail) - 3], '\\');
    /* Every buffer size: one line, NUL-terminated within the buffer, never
     * a half escape or a half field. */
    for (size_t size = 2; size < 120; size++) {
        char tiny[120];
        memset(tiny, 'Z', sizeof tiny);
        n = keten_log_format(
            tiny, size, KETEN_LOG_INFO, "a message", "key=%s other=%s", "v\n\"w", "plain");
        assert_true(n < size);
        assert_int_equal(tiny[n], '\0');
        assert_int_equal(tiny[n - 1], '\n');
        assert_int_equal(tiny[size], 'Z'); /* nothing written beyond the buffer */
        assert_int_equal(count(tiny, '\n'), 1);
        assert_int_equal(unescaped_quotes(tiny) % 2, 0);
    }
    /* The full-size line holds a value of KETEN_LOG_VALUE_MAX - 1 bytes cut
     * to fit, and still one line. */
    n = keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "a=%s", big);
    assert_int_equal(count(buf, '\n'), 1);
    assert_true(n < sizeof buf);
}

static void test_bad_template(void **state)
{
    (void)state;
    /* A template of the wrong shape is flagged, not written as it stands. */
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "%s", "node=forged");
    assert_string_equal(
        buf, "level=info prog=keten-broker msg=m log_error=\"bad field template\"\n");
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "a=%s  b=%s", "1", "2");
    assert_non_null(strstr(buf, "log_error=\"bad field template\""));
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "a=\"%s", "1");
    assert_non_null(strstr(buf, "log_error=\"bad field template\""));
    /* Twin: the same value through a field. */
    keten_log_format(buf, sizeof buf, KETEN_LOG_INFO, "m", "v=%s", "node=forged");
    assert_string_equal(buf, "level=info prog=keten-broker msg=m v=\"node=forged\"\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_values),
        cmocka_unit_test(test_hostile_value),
        cmocka_unit_test(test_long_value),
        cmocka_unit_test(test_bad_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
