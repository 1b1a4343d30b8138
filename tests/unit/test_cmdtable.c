/* cmdtable: the one dispatcher of the four programs and the "did you mean"
 * of mistyped commands and options. A mistyped command or option is exit 2
 * naming the closest one and runs nothing; twins: the right name runs its
 * command, --version and help exit 0, a word close to nothing gets no
 * suggestion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "cmdtable.h"

static int publish_runs, init_runs;
static char last_argv0[32];

static int fake_publish(int argc, char **argv)
{
    (void)argc;
    publish_runs++;
    snprintf(last_argv0, sizeof last_argv0, "%s", argv[0]);
    return 0;
}

static int fake_init(int argc, char **argv)
{
    static const struct option opts[] = {
        { "network", required_argument, NULL, 'n' },
        { "threshold", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    init_runs++;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
        case 't':
        case 'h':
            break;
        default:
            return keten_cli_getopt_error("init", c, argc, argv);
        }
    }
    return 0;
}

static const keten_cmdtable_command commands[] = {
    { "init", fake_init, "create" },
    { "publish", fake_publish, "publish" },
};

static const keten_cmdtable_program program = {
    .name = "keten-test",
    .about = "A test.\n",
    .footer = NULL,
    .commands = commands,
    .n_commands = 2,
};

/* Run the dispatcher with argv; stderr and stdout of the run into err/out. */
static int run(
    char *err, size_t err_size, char *out, size_t out_size, int argc, const char *const *words)
{
    char *argv[8] = { NULL };
    assert_true(argc < 8);
    for (int i = 0; i < argc; i++) {
        argv[i] = strdup(words[i]);
        assert_non_null(argv[i]);
    }
    FILE *fe = tmpfile(), *fo = tmpfile();
    assert_non_null(fe);
    assert_non_null(fo);
    fflush(stderr);
    fflush(stdout);
    int save_e = dup(STDERR_FILENO), save_o = dup(STDOUT_FILENO);
    assert_true(save_e >= 0 && save_o >= 0);
    assert_true(dup2(fileno(fe), STDERR_FILENO) >= 0);
    assert_true(dup2(fileno(fo), STDOUT_FILENO) >= 0);
    int rc = keten_cmdtable_main(&program, argc, argv);
    fflush(stderr);
    fflush(stdout);
    assert_true(dup2(save_e, STDERR_FILENO) >= 0);
    assert_true(dup2(save_o, STDOUT_FILENO) >= 0);
    close(save_e);
    close(save_o);
    rewind(fe);
    rewind(fo);
    size_t ne = fread(err, 1, err_size - 1, fe), no = fread(out, 1, out_size - 1, fo);
    err[ne] = '\0';
    out[no] = '\0';
    fclose(fe);
    fclose(fo);
    for (int i = 0; i < argc; i++) {
        free(argv[i]);
    }
    return rc;
}

static void test_suggest(void **state)
{
    (void)state;
    const char *names[] = { "admin-keygen", "init", "publish", "sign", "status" };
    assert_string_equal(keten_cmdtable_suggest("publsh", names, 5), "publish");
    assert_string_equal(keten_cmdtable_suggest("pubish", names, 5), "publish");
    assert_string_equal(keten_cmdtable_suggest("admin", names, 5), "admin-keygen"); /* a prefix */
    assert_string_equal(keten_cmdtable_suggest("stauts", names, 5), "status");
    /* Twins: nothing close, nothing suggested. */
    assert_null(keten_cmdtable_suggest("frobnicate", names, 5));
    assert_null(keten_cmdtable_suggest("", names, 5));
    char longword[200];
    memset(longword, 'a', sizeof longword - 1);
    longword[sizeof longword - 1] = '\0';
    assert_null(keten_cmdtable_suggest(longword, names, 5));
}

static void test_dispatch(void **state)
{
    (void)state;
    char err[2048], out[4096];
    publish_runs = 0;
    const char *a1[] = { "keten-test", "publish", "--x", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 3, a1), 0);
    assert_int_equal(publish_runs, 1);
    assert_string_equal(last_argv0, "publish");

    /* A mistyped command: exit 2, the suggestion, nothing run. */
    const char *a2[] = { "keten-test", "publsh", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 2, a2), KETEN_EXIT_USAGE);
    assert_int_equal(publish_runs, 1);
    assert_non_null(strstr(err, "unknown command 'publsh' (did you mean 'publish'?)"));
    const char *a3[] = { "keten-test", "frobnicate", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 2, a3), KETEN_EXIT_USAGE);
    assert_non_null(strstr(err, "unknown command 'frobnicate'\n"));

    const char *a4[] = { "keten-test", "--version", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 2, a4), 0);
    char want[64];
    snprintf(want, sizeof want, "keten-test %s\n", keten_cmdtable_version());
    assert_string_equal(out, want);
    const char *a5[] = { "keten-test", "version", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 2, a5), 0);
    assert_string_equal(out, want);

    const char *a6[] = { "keten-test", "help", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 2, a6), 0);
    assert_non_null(strstr(out, "Usage: keten-test COMMAND"));
    assert_non_null(strstr(out, "  publish  publish\n"));
    const char *a7[] = { "keten-test", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 1, a7), KETEN_EXIT_USAGE);
    assert_non_null(strstr(err, "Usage: keten-test COMMAND"));

    const char *a8[] = { "keten-test", "completion", "bash", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 3, a8), 0);
    assert_non_null(strstr(out, "init publish "));
    assert_non_null(strstr(out, "complete -F _keten_test keten-test\n"));
    const char *a9[] = { "keten-test", "completion", "fish", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 3, a9), KETEN_EXIT_USAGE);
}

static void test_option_suggest(void **state)
{
    (void)state;
    char err[2048], out[256];
    const char *a1[] = { "keten-test", "init", "--netwrok", "x", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 4, a1), KETEN_EXIT_USAGE);
    assert_non_null(strstr(err, "unknown option --netwrok (did you mean --network?)"));
    const char *a2[] = { "keten-test", "init", "--netwrok=x", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 3, a2), KETEN_EXIT_USAGE);
    assert_non_null(strstr(err, "unknown option --netwrok (did you mean --network?)"));
    /* Twins: nothing close; the right option is accepted. */
    const char *a3[] = { "keten-test", "init", "--frobnicate", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 3, a3), KETEN_EXIT_USAGE);
    assert_non_null(strstr(err, "unknown option --frobnicate\n"));
    assert_null(strstr(err, "did you mean"));
    const char *a4[] = { "keten-test", "init", "--network", "x", NULL };
    assert_int_equal(run(err, sizeof err, out, sizeof out, 4, a4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_option_suggest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
