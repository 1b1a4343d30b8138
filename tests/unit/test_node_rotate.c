/* node_rotate: a key rotation in the node's own home (client/rotate.h), on a
 * node without its main loop (fixture_node.h: real store, real directory
 * files). With next keys waiting, the node does not switch while the
 * installed directory lists its current keys (twin), and switches once a
 * reloaded version lists the next ones: the files are renamed
 * (identity.secret -> identity.superseded.secret, identity.next.* ->
 * identity.*), the next keys become the node's, the old ones are kept for
 * opening, the refusal of the old key is forgotten. The superseded keys are
 * wiped only once their time has passed (twin: not before). An interrupted
 * switch is finished at the next start. Protected next keys open with
 * identity.secret's passphrase, handed over once (KETEN_PASSPHRASE can be
 * read only once); a wrong one or none is refused, saying why. Next keys
 * made while the node runs are opened with the passphrase it kept when the
 * directory lists them (twins: not before; not while the file is readable by
 * others or the passphrase is wrong), and the node switches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "dirbuild.h"
#include "dirs.h"
#include "fixture.h"
#include "fixture_node.h"
#include "identity.h"
#include "passphrase.h"
#include "pb.h"
#include "rotate.h"
#include "util.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", NULL };

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
    keten_identity *borrowed; /* the fixture's identity of alpha */
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->node = &t->fn->node;
    t->borrowed = t->node->me;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    keten_node *node = t->node;
    /* Give the fixture back its identity; free what the test made. */
    if (node->me != t->borrowed) {
        keten_identity_destroy(&node->me);
    }
    if (node->old != t->borrowed) {
        keten_identity_destroy(&node->old);
    }
    keten_identity_destroy(&node->next);
    keten_rotate_forget_passphrase(node);
    node->me = t->borrowed;
    node->old = NULL;
    fnode_destroy(&t->fn);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

static void path(ctx *t, const char *name, char out[static PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/%s", t->fn->home, name);
    assert_true(n > 0 && n < PATH_MAX);
}

static bool exists(ctx *t, const char *name)
{
    char p[PATH_MAX];
    path(t, name, p);
    struct stat st;
    return lstat(p, &st) == 0;
}

static void save(ctx *t, const keten_identity *id, const char *name)
{
    char p[PATH_MAX];
    path(t, name, p);
    unlink(p);
    assert_int_equal(keten_identity_save(id, p, NULL, 0), KETEN_OK);
}

/* Approve next's request as a rotation into the fixture's draft, publish it
 * as the directory file, and reload it into the node. */
static void approve_and_reload(ctx *t, const keten_identity *next)
{
    fixture_approve_rotation(t->fx, next);
    size_t len = 0;
    free(fixture_publish(t->fx, &len));
    bool installed = false;
    assert_int_equal(keten_dirs_reload(t->node, &installed), KETEN_OK);
    assert_true(installed);
}

/* The node runs with next's keys, the old ones kept as superseded, nothing
 * left to switch to, no refusal. */
static void assert_switched(ctx *t, const keten_identity *next)
{
    keten_node *node = t->node;
    assert_memory_equal(node->me->sign_pk, next->sign_pk, KETEN_SIGN_PK_BYTES);
    assert_true(node->old == t->borrowed);
    assert_null(node->next);
    assert_int_equal(node->refused, KETEN__REASON__REASON_NONE);
    assert_non_null(keten_dirs_my_cert(node));
    assert_true(exists(t, KETEN_ROTATE_SUPERSEDED));
    assert_false(exists(t, KETEN_ROTATE_NEXT));
}

static void test_switch(void **state)
{
    ctx *t = *state;
    keten_node *node = t->node;
    save(t, node->me, KETEN_ROTATE_CURRENT);
    keten_identity *next = NULL;
    assert_int_equal(
        keten_identity_generate("alpha", "municipality", "Alpha", false, &next), KETEN_OK);
    save(t, next, KETEN_ROTATE_NEXT);
    char p[PATH_MAX];
    path(t, KETEN_ROTATE_NEXT_REQUEST, p);
    assert_int_equal(keten_file_write(p, "req", 3, 0644, false), KETEN_OK);
    assert_int_equal(keten_rotate_open(node, NULL, 0), KETEN_OK);
    assert_non_null(node->next);
    assert_memory_equal(node->next->sign_pk, next->sign_pk, KETEN_SIGN_PK_BYTES);

    /* Twin: the directory still lists the current keys: no switch. */
    assert_false(keten_rotate_try_switch(node));
    assert_true(node->me == t->borrowed);
    assert_true(exists(t, KETEN_ROTATE_NEXT));

    /* The administrators approve the rotation; the node reloads. */
    uint64_t now = keten_now_ms();
    approve_and_reload(t, next);
    node->refused = KETEN__REASON__REASON_KEYS_REPLACED;
    assert_true(keten_rotate_try_switch(node));
    assert_switched(t, next);
    assert_true(exists(t, KETEN_ROTATE_CURRENT));
    assert_true(exists(t, KETEN_ROTATE_REQUEST));
    assert_false(exists(t, KETEN_ROTATE_NEXT_REQUEST));
    /* Kept until the switch plus the longest lifetime (7 days by default). */
    assert_true(node->old_wipe_at >= now + 7ull * KETEN_MS_PER_DAY);
    /* The file that is now identity.secret holds the next keys. */
    keten_identity *cur = NULL;
    path(t, KETEN_ROTATE_CURRENT, p);
    assert_int_equal(keten_identity_load(p, NULL, 0, &cur), KETEN_OK);
    assert_memory_equal(cur->transport_pk, next->transport_pk, KETEN_CURVE_KEY_BYTES);
    keten_identity_destroy(&cur);
    /* Nothing more to switch to. */
    assert_false(keten_rotate_try_switch(node));
    keten_identity_destroy(&next);
}

static void test_open_with_passphrase(void **state)
{
    ctx *t = *state;
    keten_node *node = t->node;
    keten_identity *next = NULL;
    assert_int_equal(
        keten_identity_generate("alpha", "municipality", "Alpha", false, &next), KETEN_OK);
    char p[PATH_MAX];
    path(t, KETEN_ROTATE_NEXT, p);
    static const char pass[] = "a passphrase of the node";
    assert_int_equal(
        keten_identity_save(next, p, (const uint8_t *)pass, sizeof pass - 1), KETEN_OK);
    /* Twins: no passphrase, a wrong one. */
    assert_int_equal(keten_rotate_open(node, NULL, 0), KETEN_ERR_NEED_PASSPHRASE);
    assert_non_null(strstr(keten_err_detail(), "the same passphrase"));
    assert_null(node->next);
    assert_int_equal(keten_rotate_open(node, "another one", 11), KETEN_ERR_PASSPHRASE);
    assert_non_null(strstr(keten_err_detail(), "does not open"));
    assert_null(node->next);
    keten_err_clear();
    assert_int_equal(keten_rotate_open(node, pass, sizeof pass - 1), KETEN_OK);
    assert_non_null(node->next);
    assert_memory_equal(node->next->sign_pk, next->sign_pk, KETEN_SIGN_PK_BYTES);
    keten_identity_destroy(&next);
}

/* A passphrase in sodium_malloc memory, as keten_passphrase_get() gives it
 * (KETEN_PASSPHRASE_MAX + 1 bytes, which keten_passphrase_free() wipes). */
static char *secure_copy(const char *text)
{
    size_t n = strlen(text);
    assert_true(n <= KETEN_PASSPHRASE_MAX);
    char *p = sodium_malloc(KETEN_PASSPHRASE_MAX + 1);
    assert_non_null(p);
    memset(p, 0, KETEN_PASSPHRASE_MAX + 1);
    memcpy(p, text, n + 1);
    return p;
}

/* keygen --rotate on a running node: the daemon opened no next keys at its
 * start; it opens them (with the passphrase it kept) once the installed
 * directory lists other keys for it, and switches. A file it cannot open
 * (readable by others, a wrong passphrase) changes nothing and is tried
 * again at the next call. */
static void test_open_late(void **state)
{
    ctx *t = *state;
    keten_node *node = t->node;
    static const char pass[] = "a passphrase of the node";
    save(t, node->me, KETEN_ROTATE_CURRENT);
    assert_int_equal(keten_rotate_open(node, pass, sizeof pass - 1), KETEN_OK);
    assert_null(node->next);
    char *kept = secure_copy("not the passphrase");
    keten_rotate_keep_passphrase(node, &kept, strlen("not the passphrase"));
    assert_null(kept);

    /* Made after the start. */
    keten_identity *next = NULL;
    assert_int_equal(
        keten_identity_generate("alpha", "municipality", "Alpha", false, &next), KETEN_OK);
    char p[PATH_MAX];
    path(t, KETEN_ROTATE_NEXT, p);
    assert_int_equal(
        keten_identity_save(next, p, (const uint8_t *)pass, sizeof pass - 1), KETEN_OK);

    /* Twin: the directory lists the current keys: nothing is opened. */
    assert_false(keten_rotate_try_switch(node));
    assert_null(node->next);

    approve_and_reload(t, next);
    node->refused = KETEN__REASON__REASON_KEYS_REPLACED;
    /* A wrong kept passphrase: not opened, not switched, tried again later. */
    assert_false(keten_rotate_try_switch(node));
    assert_null(node->next);
    assert_true(node->me == t->borrowed);
    assert_true(exists(t, KETEN_ROTATE_NEXT));
    assert_int_equal(node->refused, KETEN__REASON__REASON_KEYS_REPLACED);
    /* The file readable by others: refused before the passphrase is tried. */
    kept = secure_copy(pass);
    keten_rotate_keep_passphrase(node, &kept, sizeof pass - 1);
    assert_int_equal(chmod(p, 0644), 0);
    assert_false(keten_rotate_try_switch(node));
    assert_null(node->next);
    assert_true(exists(t, KETEN_ROTATE_NEXT));
    /* Mended: the next call opens the keys and switches. */
    assert_int_equal(chmod(p, 0600), 0);
    assert_true(keten_rotate_try_switch(node));
    assert_switched(t, next);
    keten_rotate_forget_passphrase(node);
    assert_null(node->rotate_pass);
    keten_identity_destroy(&next);
}

static void test_wipe(void **state)
{
    ctx *t = *state;
    keten_node *node = t->node;
    keten_identity *old = NULL;
    assert_int_equal(
        keten_identity_generate("alpha", "municipality", "Alpha", false, &old), KETEN_OK);
    save(t, old, KETEN_ROTATE_SUPERSEDED);
    node->old = old;
    /* Twin: before its time nothing goes. */
    node->old_wipe_at = keten_now_ms() + KETEN_MS_PER_DAY;
    keten_rotate_tick(node);
    assert_non_null(node->old);
    assert_true(exists(t, KETEN_ROTATE_SUPERSEDED));
    node->old_wipe_at = 1;
    keten_rotate_tick(node);
    assert_null(node->old);
    assert_false(exists(t, KETEN_ROTATE_SUPERSEDED));
}

static void test_recover(void **state)
{
    ctx *t = *state;
    keten_identity *a = NULL, *b = NULL;
    assert_int_equal(
        keten_identity_generate("alpha", "municipality", "Alpha", false, &a), KETEN_OK);
    assert_int_equal(
        keten_identity_generate("alpha", "municipality", "Alpha", false, &b), KETEN_OK);
    /* Twin: a home in its normal state is left alone. */
    save(t, a, KETEN_ROTATE_CURRENT);
    save(t, b, KETEN_ROTATE_NEXT);
    assert_int_equal(keten_rotate_recover(t->fn->home), KETEN_OK);
    assert_true(exists(t, KETEN_ROTATE_NEXT));
    /* Stopped between the two renames: current moved away, next not yet in. */
    char cur[PATH_MAX], sup[PATH_MAX];
    path(t, KETEN_ROTATE_CURRENT, cur);
    path(t, KETEN_ROTATE_SUPERSEDED, sup);
    assert_int_equal(rename(cur, sup), 0);
    assert_int_equal(keten_rotate_recover(t->fn->home), KETEN_OK);
    assert_false(exists(t, KETEN_ROTATE_NEXT));
    keten_identity *got = NULL;
    assert_int_equal(keten_identity_load(cur, NULL, 0, &got), KETEN_OK);
    assert_memory_equal(got->sign_pk, b->sign_pk, KETEN_SIGN_PK_BYTES);
    keten_identity_destroy(&got);
    keten_identity_destroy(&a);
    keten_identity_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_switch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_with_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_late, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
