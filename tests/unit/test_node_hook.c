/* node_hook: the --on-message hook (client/hook.h), run for real with
 * /bin/sh in this process's temporary directory (no daemon: the test reaps
 * its children with keten_hook_reap(), as the daemon's loop does). The hook
 * gets the message's JSON on its standard input and a clean environment
 * (KETEN_HOME, KETEN_MSG_ID, a fixed PATH; never the daemon's
 * KETEN_PASSPHRASE); a hook that fails is counted (twin: one that succeeds
 * is not); without --on-message nothing runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fixture.h"
#include "fixture_node.h"
#include "hook.h"
#include "util.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", NULL };

#define REAP_MS 5000 /* a bound on a wait for a child that must end */
#define MSG_JSON "{\"msg_id\":\"00112233445566778899aabbccddeeff\",\"from\":\"bravo\"}"
#define MSG_HEX "00112233445566778899aabbccddeeff"

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->node = &t->fn->node;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    fnode_destroy(&t->fn);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

static void reap_all(ctx *t)
{
    uint64_t until = keten_mono_ms() + REAP_MS;
    while (keten_hook_running() > 0) {
        if (keten_mono_ms() > until) {
            fail_msg("a hook did not end within %d ms", REAP_MS);
        }
        keten_hook_reap(t->node);
        struct timespec pause = { 0, 2 * 1000 * 1000 }; /* polling a child, bounded above */
        nanosleep(&pause, NULL);
    }
}

static char *read_home_file(ctx *t, const char *name)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", t->fn->home, name);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(keten_file_read(path, 1 << 16, &buf, &len), KETEN_OK);
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, buf, len);
    s[len] = '\0';
    free(buf);
    return s;
}

static void test_runs_with_clean_environment(void **state)
{
    ctx *t = *state;
    /* Without --on-message: nothing runs. */
    assert_int_equal(keten_hook_run(t->node, MSG_HEX, MSG_JSON, strlen(MSG_JSON)), KETEN_OK);
    assert_int_equal(keten_hook_running(), 0);
    assert_int_equal(t->node->counters.hooks_run, 0);

    setenv("KETEN_PASSPHRASE", "the daemon's secret", 1);
    t->node->opts.on_message = "cat > \"$KETEN_HOME/hook.in\"; env > \"$KETEN_HOME/hook.env\"";
    assert_int_equal(keten_hook_run(t->node, MSG_HEX, MSG_JSON, strlen(MSG_JSON)), KETEN_OK);
    assert_int_equal(t->node->counters.hooks_run, 1);
    reap_all(t);
    unsetenv("KETEN_PASSPHRASE");
    assert_int_equal(t->node->counters.hooks_failed, 0);
    char *in = read_home_file(t, "hook.in");
    assert_string_equal(in, MSG_JSON "\n");
    free(in);
    char *env = read_home_file(t, "hook.env");
    assert_non_null(strstr(env, "KETEN_MSG_ID=" MSG_HEX "\n"));
    char home[PATH_MAX + 16];
    snprintf(home, sizeof home, "KETEN_HOME=%s\n", t->fn->home);
    assert_non_null(strstr(env, home));
    assert_non_null(strstr(env, "PATH=/usr/local/bin:/usr/bin:/bin\n"));
    assert_null(strstr(env, "KETEN_PASSPHRASE"));
    assert_null(strstr(env, "secret"));
    free(env);
}

static void test_failure_counted(void **state)
{
    ctx *t = *state;
    t->node->opts.on_message = "exit 3";
    assert_int_equal(keten_hook_run(t->node, MSG_HEX, MSG_JSON, strlen(MSG_JSON)), KETEN_OK);
    reap_all(t);
    assert_int_equal(t->node->counters.hooks_failed, 1);
    t->node->opts.on_message = "kill -9 $$";
    assert_int_equal(keten_hook_run(t->node, MSG_HEX, MSG_JSON, strlen(MSG_JSON)), KETEN_OK);
    reap_all(t);
    assert_int_equal(t->node->counters.hooks_failed, 2);
    /* Twin: exit 0 is no failure. */
    t->node->opts.on_message = "cat > /dev/null";
    assert_int_equal(keten_hook_run(t->node, MSG_HEX, MSG_JSON, strlen(MSG_JSON)), KETEN_OK);
    reap_all(t);
    assert_int_equal(t->node->counters.hooks_failed, 2);
    assert_int_equal(t->node->counters.hooks_run, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runs_with_clean_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_counted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
