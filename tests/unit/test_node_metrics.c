/* node metrics (client/metrics.h): the address of the Prometheus endpoint
 * is checked before anything is bound: loopback only (127.0.0.0/8, ::1)
 * unless remote is allowed; a malformed address is refused. Twins: the
 * loopback addresses, and with remote the others, are accepted; one is
 * served and stopped. And the exit code of a failed start
 * (keten_cli_start_error): 4 for what a restart cannot mend, 3 for a
 * verification failure, 1 for what may pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "metrics.h"

static keten_err try_addr(const char *addr, bool remote)
{
    keten_metrics *m = NULL;
    keten_err e = keten_metrics_new(addr, remote, &m);
    assert_true((e == KETEN_OK) == (m != NULL));
    keten_metrics_destroy(&m);
    assert_null(m);
    return e;
}

static void test_loopback_only(void **state)
{
    (void)state;
    static const char *const refused[] = { "0.0.0.0:9760", "192.0.2.1:9760", "10.0.0.1:0",
        "[::]:9760", "[2001:db8::1]:9760", "128.0.0.1:9760" };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(try_addr(refused[i], false), KETEN_ERR_INVALID);
        assert_non_null(strstr(keten_err_detail(), "not a loopback address"));
        assert_non_null(strstr(keten_err_detail(), "metrics-remote"));
        /* The twin: allowed explicitly. */
        assert_int_equal(try_addr(refused[i], true), KETEN_OK);
    }
    static const char *const loopback[]
        = { "127.0.0.1:9760", "127.0.0.1:0", "127.1.2.3:9760", "[::1]:9760" };
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        assert_int_equal(try_addr(loopback[i], false), KETEN_OK);
    }
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = { "127.0.0.1", "127.0.0.1:", "127.0.0.1:port", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(try_addr(bad[i], true), KETEN_ERR_INVALID);
    }
    char longaddr[600];
    memset(longaddr, 'a', sizeof longaddr);
    memcpy(longaddr + sizeof longaddr - 6, ":9760", 6);
    assert_int_equal(try_addr(longaddr, true), KETEN_ERR_INVALID);
}

static void test_serve_and_stop(void **state)
{
    (void)state;
    keten_metrics *m = NULL;
    assert_int_equal(keten_metrics_new("127.0.0.1:0", false, &m), KETEN_OK);
    assert_int_equal(keten_metrics_start(m), KETEN_OK);
    keten_metrics_destroy(&m);
    assert_null(m);
    keten_metrics_destroy(&m); /* NULL is fine */
    keten_metrics_destroy(NULL);
}

static void test_start_exit_codes(void **state)
{
    (void)state;
    keten_cli_init("test_node_metrics");
    /* A restart cannot mend these. */
    assert_int_equal(keten_cli_start_error(KETEN_ERR_PASSPHRASE), KETEN_EXIT_START);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_NEED_PASSPHRASE), KETEN_EXIT_START);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_NOT_FOUND), KETEN_EXIT_START);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_PERMISSIONS), KETEN_EXIT_START);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_MALFORMED), KETEN_EXIT_START);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_INVALID), KETEN_EXIT_START);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_UNKNOWN_NODE), KETEN_EXIT_START);
    /* Verification failures keep their code. */
    assert_int_equal(keten_cli_start_error(KETEN_ERR_BAD_SIGNATURE), KETEN_EXIT_VERIFY);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_ROLLBACK), KETEN_EXIT_VERIFY);
    /* What may pass by itself: restarted. */
    assert_int_equal(keten_cli_start_error(KETEN_ERR_IO), KETEN_EXIT_FAILURE);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_EXISTS), KETEN_EXIT_FAILURE);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_STORE), KETEN_EXIT_FAILURE);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_STORE_FULL), KETEN_EXIT_FAILURE);
    assert_int_equal(keten_cli_start_error(KETEN_ERR_NOMEM), KETEN_EXIT_FAILURE);
    assert_int_equal(keten_cli_start_error(KETEN_OK), KETEN_EXIT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_only),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_serve_and_stop),
        cmocka_unit_test(test_start_exit_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
