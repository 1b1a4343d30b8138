/* node_dirs: the node's directory versions and failing closed
 * (client/dirs.h), on a node without its main loop (fixture_node.h: real
 * store, and a link to a broker's end bound here, which reads the node's
 * directory requests), with directories the fixture's two administrators
 * really signed.
 *
 * At start the stored chain and then the --directory file: a newer file is
 * installed and stored, an older one changes nothing, one that does not
 * verify stops the start; at SIGHUP only a newer file is installed. A
 * pushed chain is installed only if it verifies from the version in force
 * and is newer (twins: signed by too few administrators; the version in
 * force again changes nothing; an older one is refused). A checkpoint
 * naming a newer version makes the node ask for it and send nothing until
 * it has it, across a restart; when it does not come in time, the alarm
 * directory-withheld, once. The node sends only while it is a current node
 * with its own keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dirs.h"
#include "fixture.h"
#include "fixture_node.h"
#include "pb.h"
#include "store.h"
#include "util.h"

static const char *const specs[] = { "hub:broker", "alpha:municipality", "bravo:police", NULL };

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(2, 2, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->node = &t->fn->node;
    fnode_connect(t->fn);
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

static uint64_t version(ctx *t)
{
    return keten_directory_version(t->node->dir);
}

static size_t stored_versions(ctx *t)
{
    MDB_txn *txn = NULL;
    size_t n = 0;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_store_count(t->node->store, txn, KETEN_DB_DIRECTORIES, &n), KETEN_OK);
    keten_store_abort(&txn);
    return n;
}

/* The node starts again on its store and the file. */
static keten_err restart(ctx *t)
{
    keten_directory_destroy(&t->node->dir);
    t->node->dir_needed = 0;
    return keten_dirs_load(t->node);
}

static keten_err push(ctx *t, uint8_t **bufs, size_t *lens, size_t n)
{
    ProtobufCBinaryData chain[4];
    for (size_t i = 0; i < n; i++) {
        chain[i].data = bufs[i];
        chain[i].len = lens[i];
    }
    Keten__DirectoryPush p = KETEN__DIRECTORY_PUSH__INIT;
    p.chain = chain;
    p.n_chain = n;
    return keten_dirs_on_push(t->node, &p);
}

static void test_load(void **state)
{
    ctx *t = *state;
    assert_int_equal(version(t), 1);
    assert_int_equal(stored_versions(t), 1);
    uint8_t *v1 = NULL;
    size_t v1_len = 0;
    assert_int_equal(
        keten_file_read(t->fn->directory, KETEN_DIRECTORY_MAX, &v1, &v1_len), KETEN_OK);
    size_t len = 0;
    uint8_t *v2 = fixture_publish(t->fx, &len); /* the file is version 2 now */
    assert_int_equal(restart(t), KETEN_OK);
    assert_int_equal(version(t), 2);
    assert_int_equal(stored_versions(t), 2);

    /* An older file: the stored version stays. */
    assert_int_equal(keten_file_write(t->fn->directory, v1, v1_len, 0644, false), KETEN_OK);
    assert_int_equal(restart(t), KETEN_OK);
    assert_int_equal(version(t), 2);
    /* A file that does not verify stops the start. */
    assert_int_equal(
        keten_file_write(t->fn->directory, (const uint8_t *)"not signed", 10, 0644, false),
        KETEN_OK);
    assert_int_not_equal(restart(t), KETEN_OK);
    assert_null(t->node->dir);
    keten_err_clear();
    assert_int_equal(keten_file_write(t->fn->directory, v1, v1_len, 0644, false), KETEN_OK);
    assert_int_equal(restart(t), KETEN_OK);
    assert_int_equal(version(t), 2);

    /* SIGHUP: the version in force is not installed again, an older one is
     * refused, a newer one is installed. */
    bool installed = true;
    assert_int_equal(keten_file_write(t->fn->directory, v2, len, 0644, false), KETEN_OK);
    assert_int_equal(keten_dirs_reload(t->node, &installed), KETEN_OK);
    assert_false(installed);
    assert_int_equal(keten_file_write(t->fn->directory, v1, v1_len, 0644, false), KETEN_OK);
    assert_int_equal(keten_dirs_reload(t->node, &installed), KETEN_ERR_ROLLBACK);
    keten_err_clear();
    assert_false(installed);
    free(fixture_publish(t->fx, &len));
    assert_int_equal(keten_dirs_reload(t->node, &installed), KETEN_OK);
    assert_true(installed);
    assert_int_equal(version(t), 3);
    free(v2);
    free(v1);
}

static void test_push(void **state)
{
    ctx *t = *state;
    uint8_t *v[4];
    size_t len[4];
    v[0] = fixture_publish(t->fx, &len[0]); /* 2 */
    assert_int_equal(push(t, v, len, 1), KETEN_OK);
    assert_int_equal(version(t), 2);
    assert_int_equal(stored_versions(t), 2);
    /* The same again, or nothing at all: no change. */
    assert_int_equal(push(t, v, len, 1), KETEN_OK);
    assert_int_equal(push(t, v, len, 0), KETEN_OK);
    assert_int_equal(version(t), 2);

    /* Version 3 signed by one of the two administrators: refused. */
    size_t one[] = { 0 };
    v[1] = fixture_sign_draft(t->fx, keten_now_ms(), KETEN_MS_PER_DAY, one, 1, &len[1]);
    assert_int_not_equal(push(t, v + 1, len + 1, 1), KETEN_OK);
    keten_err_clear();
    assert_int_equal(version(t), 2);
    assert_int_equal(stored_versions(t), 2);
    free(v[1]);
    /* Twin: versions 3 and 4 as a chain, each signed by both. */
    v[1] = fixture_publish(t->fx, &len[1]);
    v[2] = fixture_publish(t->fx, &len[2]);
    assert_int_equal(push(t, v + 1, len + 1, 2), KETEN_OK);
    assert_int_equal(version(t), 4);
    assert_int_equal(stored_versions(t), 4);
    /* An older version afterwards is refused and changes nothing. */
    assert_int_equal(push(t, v, len, 1), KETEN_ERR_ROLLBACK);
    keten_err_clear();
    assert_int_equal(version(t), 4);
    for (int i = 0; i < 3; i++) {
        free(v[i]);
    }
}

static void test_needed_and_withheld(void **state)
{
    ctx *t = *state;
    keten_node *node = t->node;
    assert_int_equal(keten_dirs_send_ok(node), KETEN_OK);
    keten_dirs_need(node, 1); /* not newer: nothing */
    assert_int_equal(node->dir_needed, 0);

    keten_dirs_need(node, 3);
    assert_int_equal(node->dir_needed, 3);
    assert_int_equal(keten_dirs_send_ok(node), KETEN_ERR_ROLLBACK);
    keten_err_clear();
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_DIRECTORY_REQUEST, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->directory_request->after_version, 1);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    /* Remembered across a restart. */
    uint64_t since = node->dir_needed_since;
    assert_int_equal(restart(t), KETEN_OK);
    assert_int_equal(node->dir_needed, 3);
    assert_int_equal(node->dir_needed_since, since);

    /* Not served in time: one alarm, not one per tick. */
    keten_dirs_tick(node);
    assert_int_equal(fnode_alarms(t->fn), 0);
    node->dir_needed_since -= KETEN_NODE_DIR_WITHHELD_MS + 1;
    keten_dirs_tick(node);
    keten_dirs_tick(node);
    assert_int_equal(fnode_alarms(t->fn), 1);

    /* Version 2 is not enough; version 3 is. */
    uint8_t *v[2];
    size_t len[2];
    v[0] = fixture_publish(t->fx, &len[0]);
    v[1] = fixture_publish(t->fx, &len[1]);
    assert_int_equal(push(t, v, len, 1), KETEN_OK);
    assert_int_equal(keten_dirs_send_ok(node), KETEN_ERR_ROLLBACK);
    keten_err_clear();
    assert_int_equal(push(t, v + 1, len + 1, 1), KETEN_OK);
    assert_int_equal(node->dir_needed, 0);
    assert_int_equal(keten_dirs_send_ok(node), KETEN_OK);
    assert_int_equal(restart(t), KETEN_OK);
    assert_int_equal(node->dir_needed, 0);
    free(v[0]);
    free(v[1]);
}

static void test_send_only_as_current_node(void **state)
{
    ctx *t = *state;
    keten_node *node = t->node;
    assert_non_null(keten_dirs_my_cert(node));
    /* Other keys under this node's id: not this node's certificate. */
    keten_identity *other = NULL;
    assert_int_equal(
        keten_identity_generate("alpha", "municipality", "Other", false, &other), KETEN_OK);
    keten_identity *me = node->me;
    node->me = other;
    assert_null(keten_dirs_my_cert(node));
    assert_int_equal(keten_dirs_send_ok(node), KETEN_ERR_UNKNOWN_NODE);
    keten_err_clear();
    node->me = me;
    keten_identity_destroy(&other);
    assert_int_equal(keten_dirs_send_ok(node), KETEN_OK);

    /* Revoked: it sends nothing. */
    assert_int_equal(
        keten_dirbuild_revoke(t->fx->draft, "alpha", "left", keten_now_ms()), KETEN_OK);
    uint8_t *v = NULL;
    size_t len = 0;
    v = fixture_publish(t->fx, &len);
    assert_int_equal(push(t, &v, &len, 1), KETEN_OK);
    assert_null(keten_dirs_my_cert(node));
    assert_int_equal(keten_dirs_send_ok(node), KETEN_ERR_REVOKED);
    keten_err_clear();
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_needed_and_withheld, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_only_as_current_node, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
