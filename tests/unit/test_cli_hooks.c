/* cli: the start-up check of every program against the test hooks. A
 * build without them (-Dtest_hooks=false, the release and the Debian
 * package) refuses to start, exit 2 with a message naming the variable,
 * when any KETEN_TEST_*, KETEN_*_TEST_* or KETEN_*_FAULT variable is set;
 * twin: the same environment in a build with them, and an environment
 * without any, start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"

static void test_names(void **state)
{
    (void)state;
    /* Every hook the programs read. */
    assert_true(keten_cli_is_test_hook("KETEN_TEST_FAST_KDF=1"));
    assert_true(keten_cli_is_test_hook("KETEN_TEST_NOW_MS=1700000000000"));
    assert_true(keten_cli_is_test_hook("KETEN_BROKER_FAULT=kill-after-commit"));
    assert_true(keten_cli_is_test_hook("KETEN_BROKER_TEST_CLOCK_OFFSET_MS=-4000"));
    assert_true(keten_cli_is_test_hook("KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT=1"));
    /* Any value, even empty, and the names of hooks to come. */
    assert_true(keten_cli_is_test_hook("KETEN_TEST_FAST_KDF="));
    assert_true(keten_cli_is_test_hook("KETEN_TEST_FAST_KDF"));
    assert_true(keten_cli_is_test_hook("KETEN_NODE_FAULT_X=1"));
    assert_true(keten_cli_is_test_hook("KETEN_TEST_=1"));
    /* Twins: what is not a test hook. */
    assert_false(keten_cli_is_test_hook("KETEN_PASSPHRASE=secret"));
    assert_false(keten_cli_is_test_hook("KETEN_BROKER_VERIFY_THREADS=0"));
    assert_false(keten_cli_is_test_hook("KETEN_TESTING=1")); /* no "_TEST_" */
    assert_false(keten_cli_is_test_hook("KETEN_FAULTY=1"));
    assert_false(keten_cli_is_test_hook("KETEN_=1"));
    assert_false(keten_cli_is_test_hook("MY_KETEN_TEST_X=1"));
    assert_false(keten_cli_is_test_hook("PATH=/usr/bin:KETEN_TEST_X"));
    assert_false(keten_cli_is_test_hook("NOTIFY_SOCKET=/run/x"));
    assert_false(keten_cli_is_test_hook("KETEN_X=A_TEST_B")); /* only the name counts */
}

/* Run the check with stderr to a file; the exit code, the message in msg. */
static int check(const char *const *env, bool built, char *msg, size_t msg_size)
{
    char path[] = "/tmp/keten-cli-hooks-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    int rc = keten_cli_test_hooks_check(env, built);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    ssize_t n = pread(fd, msg, msg_size - 1, 0);
    assert_true(n >= 0);
    msg[n] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

static void test_refusal(void **state)
{
    (void)state;
    char msg[512];
    keten_cli_init("keten-keys");
    const char *hooked[] = { "PATH=/usr/bin", "KETEN_PASSPHRASE=x", "KETEN_TEST_FAST_KDF=1", NULL };
    assert_int_equal(check(hooked, false, msg, sizeof msg), 2);
    assert_string_equal(msg,
        "keten-keys: KETEN_TEST_FAST_KDF is set, but this build has no test hooks (they "
        "exist only in a build configured with -Dtest_hooks=true, for the tests); unset "
        "KETEN_TEST_FAST_KDF\n");
    const char *fault[] = { "KETEN_BROKER_FAULT=kill-after-commit", NULL };
    assert_int_equal(check(fault, false, msg, sizeof msg), 2);
    assert_non_null(strstr(msg, "KETEN_BROKER_FAULT is set"));
    /* Twins: a build with the hooks starts under the same environment; a
     * release build starts without one. */
    assert_int_equal(check(hooked, true, msg, sizeof msg), 0);
    assert_string_equal(msg, "");
    const char *clean[]
        = { "PATH=/usr/bin", "KETEN_PASSPHRASE=x", "KETEN_BROKER_VERIFY_THREADS=2", NULL };
    assert_int_equal(check(clean, false, msg, sizeof msg), 0);
    assert_string_equal(msg, "");
    const char *empty[] = { NULL };
    assert_int_equal(check(empty, false, msg, sizeof msg), 0);
    /* This test program is built with the hooks (the tests need them). */
    assert_true(KETEN_CLI_TEST_HOOKS_BUILT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_refusal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
