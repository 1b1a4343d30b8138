/* node metrics (client/metrics.h): the address of the Prometheus endpoint
 * is checked before anything is bound: loopback only (127.0.0.0/8, ::1)
 * unless remote is allowed; a malformed address is refused. Twins: the
 * loopback addresses, and with remote the others, are accepted; one is
 * served and stopped. And the exit code of a failed start
 * (keten_cli_start_error): 4 for what a restart cannot mend, 3 for a
 * verification failure, 1 for what may pass.
 *
 * The gauge keten_node_inbox_unhandled, read from the served page, on a
 * node without its main loop (fixture_node.h): it follows deliveries (a
 * duplicate, or one refused as expired, adds nothing) and acknowledgements
 * (a second ack takes nothing), not the expiry of replay entries (the
 * message stays in the inbox); the count is kept in the store
 * ("inbox-unhandled" in state), so it is the same after the store is
 * opened again. A store without it (made before it was kept) or with a
 * damaged one is counted: at once when read, and stored at the next start;
 * a count that would go below zero is dropped and counted again, never
 * wrapped. The text of a histogram (lib/promhttp.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "fixture_node.h"
#include "inbox.h"
#include "metrics.h"
#include "nodestore.h"
#include "promhttp.h"
#include "store.h"
#include "util.h"

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

/* ---- the gauge of unhandled messages ---------------------------------------- */

static const char *const specs[] = { "hub:broker", "alpha:municipality", "bravo:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"
#define PAGE_MAX 65536

/* A loopback port free a moment ago. */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* GET /metrics from 127.0.0.1:port; the answer (malloc). */
static char *get_page(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
        .sin_port = htons((uint16_t)port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    char *page = calloc(1, PAGE_MAX + 1);
    assert_non_null(page);
    size_t n = 0;
    for (ssize_t r; n < PAGE_MAX && (r = read(fd, page + n, PAGE_MAX - n)) > 0;) {
        n += (size_t)r;
    }
    close(fd);
    return page;
}

/* The value of keten_node_inbox_unhandled as served after the daemon's
 * keten_metrics_update() (a new endpoint each time: its first update reads
 * the store). */
static long long gauge(fnode_bed *t)
{
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", free_port());
    keten_metrics *m = NULL;
    assert_int_equal(keten_metrics_new(addr, false, &m), KETEN_OK);
    assert_int_equal(keten_metrics_start(m), KETEN_OK);
    keten_metrics_update(m, t->node);
    char *page = get_page((unsigned)atoi(strchr(addr, ':') + 1));
    keten_metrics_destroy(&m);
    const char *line = strstr(page, "\nketen_node_inbox_unhandled ");
    if (line == NULL) {
        fail_msg("no keten_node_inbox_unhandled in the page: %.200s", page);
    }
    long long v = strtoll(line + strlen("\nketen_node_inbox_unhandled "), NULL, 10);
    free(page);
    return v;
}

/* The count stored in the node's store; -1 when there is none, -2 when it
 * is not 8 bytes. */
static long long stored_count(fnode_bed *t)
{
    MDB_txn *txn = NULL;
    MDB_val v;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    keten_err e = keten_store_get(t->node->store, txn, KETEN_DB_STATE, KETEN_INBOX_UNHANDLED_KEY,
        strlen(KETEN_INBOX_UNHANDLED_KEY), &v);
    long long n = e == KETEN_ERR_NOT_FOUND ? -1
        : v.mv_size != KETEN_STORE_U64_KEY ? -2
                                           : (long long)keten_store_u64_get(v.mv_data);
    assert_true(e == KETEN_OK || e == KETEN_ERR_NOT_FOUND);
    keten_store_abort(&txn);
    keten_err_clear();
    return n;
}

/* The gauge, the store's count (or -1: none) and what keten_inbox_unhandled
 * gives, checked together. */
static void expect_unhandled(fnode_bed *t, long long want, long long want_stored)
{
    MDB_txn *txn = NULL;
    uint64_t n = 0;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_inbox_unhandled(t->node, txn, &n), KETEN_OK);
    keten_store_abort(&txn);
    assert_int_equal(n, want);
    assert_int_equal(stored_count(t), want_stored);
    assert_int_equal(gauge(t), want);
}

/* bravo -> alpha, living life_ms, logged, and delivered with its proof. */
static uint8_t *deliver_new(fnode_bed *t, uint64_t life_ms, uint8_t *id, size_t *len)
{
    fnode_seal_opts o = { .kind = KETEN__KIND__KIND_SIGNAL, .life_ms = life_ms };
    uint8_t *env
        = fnode_seal(fixture_node(t->fx, "bravo"), t->node->dir, "alpha", SIGNAL, &o, id, len);
    uint64_t leaf = flog_submitted(t->log, env, *len);
    fnode_bed_deliver_leaf(t, env, *len, leaf, fnode_bed_checkpoint(t));
    return env;
}

static void put_state(fnode_bed *t, const void *val, size_t len)
{
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_store_put(t->node->store, txn, KETEN_DB_STATE, KETEN_INBOX_UNHANDLED_KEY,
                         strlen(KETEN_INBOX_UNHANDLED_KEY), val, len),
        KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
}

/* The store closed and opened again; with start, counted as the daemon
 * does at start (keten_inbox_unhandled_init). */
static void reopen(fnode_bed *t, bool start)
{
    keten_store_destroy(&t->node->store);
    assert_int_equal(keten_store_open(t->fn->home, &t->node->store), KETEN_OK);
    if (start) {
        assert_int_equal(keten_inbox_unhandled_init(t->node), KETEN_OK);
    }
}

static void test_unhandled_gauge(void **state)
{
    (void)state;
    fnode_bed *t = fnode_bed_new(fixture_new(1, 1, specs), "alpha", "hub");
    expect_unhandled(t, 0, 0); /* a new store: counted at start, none */
    uint8_t id[3][KETEN_MSG_ID_BYTES];
    size_t len[3];
    uint8_t *env[3];
    for (size_t i = 0; i < 3; i++) {
        env[i] = deliver_new(t, 3600000, id[i], &len[i]);
        expect_unhandled(t, (long long)i + 1, (long long)i + 1);
    }
    assert_int_equal(t->node->counters.received, 3);

    /* Twins: the same delivery again, and one that expired on the way,
     * add nothing. */
    /* env[0]'s record is leaf 1, after the padding. */
    fnode_bed_deliver_leaf(t, env[0], len[0], 1, fnode_bed_checkpoint(t));
    assert_int_equal(t->node->counters.duplicates, 1);
    uint8_t late_id[KETEN_MSG_ID_BYTES];
    size_t late_len = 0;
    fnode_seal_opts o = { .kind = KETEN__KIND__KIND_SIGNAL, .life_ms = 1 };
    uint8_t *late = fnode_seal(
        fixture_node(t->fx, "bravo"), t->node->dir, "alpha", SIGNAL, &o, late_id, &late_len);
    uint64_t late_leaf = flog_submitted(t->log, late, late_len);
    uint64_t size = fnode_bed_checkpoint(t);
    struct timespec pause = { 0, 5 * 1000 * 1000 }; /* time under test: its 1 ms life passes */
    nanosleep(&pause, NULL);
    fnode_bed_deliver_leaf(t, late, late_len, late_leaf, size);
    assert_int_equal(t->node->counters.rejected, 1);
    free(late);
    expect_unhandled(t, 3, 3);

    /* Acknowledged: one less; again: nothing. */
    assert_int_equal(keten_inbox_ack(t->node, id[1]), KETEN_OK);
    expect_unhandled(t, 2, 2);
    assert_int_equal(keten_inbox_ack(t->node, id[1]), KETEN_OK);
    expect_unhandled(t, 2, 2);

    /* Expiry: a message's replay entry expires and is purged; the message
     * stays in the inbox, unhandled, and in the count. */
    MDB_txn *txn = NULL;
    uint8_t hash[KETEN_HASH_BYTES] = { 0 };
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_seen_put(t->node->store, txn, id[2], 1, hash), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    keten_inbox_purge_seen(t->node);
    Keten__SeenRecord *seen = NULL;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(
        keten_nodestore_seen_get(t->node->store, txn, id[2], &seen), KETEN_ERR_NOT_FOUND);
    keten_store_abort(&txn);
    keten_err_clear();
    expect_unhandled(t, 2, 2);

    /* Kept in the store: the same after it is opened again. */
    reopen(t, true);
    expect_unhandled(t, 2, 2);

    /* A store made before the count was kept: counted when read, left
     * missing by a delivery, stored at the next start. */
    MDB_txn *w = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &w), KETEN_OK);
    assert_int_equal(keten_store_del(t->node->store, w, KETEN_DB_STATE, KETEN_INBOX_UNHANDLED_KEY,
                         strlen(KETEN_INBOX_UNHANDLED_KEY)),
        KETEN_OK);
    assert_int_equal(keten_store_commit(&w), KETEN_OK);
    reopen(t, false);
    expect_unhandled(t, 2, -1);
    uint8_t id4[KETEN_MSG_ID_BYTES];
    size_t len4 = 0;
    uint8_t *env4 = deliver_new(t, 3600000, id4, &len4);
    expect_unhandled(t, 3, -1);
    reopen(t, true);
    expect_unhandled(t, 3, 3);
    assert_int_equal(keten_inbox_ack(t->node, id4), KETEN_OK);
    expect_unhandled(t, 2, 2);

    /* A damaged count (3 bytes) is not read: counted, and stored again at
     * start. */
    put_state(t, "abc", 3);
    expect_unhandled(t, 2, -2);
    reopen(t, true);
    expect_unhandled(t, 2, 2);

    /* A count that is wrong (0 with two unhandled): an ack does not wrap it
     * below zero; it is dropped, and counted again. */
    uint8_t zero[KETEN_STORE_U64_KEY] = { 0 };
    put_state(t, zero, sizeof zero);
    assert_int_equal(keten_inbox_ack(t->node, id[0]), KETEN_OK);
    expect_unhandled(t, 1, -1);
    reopen(t, true);
    expect_unhandled(t, 1, 1);

    for (size_t i = 0; i < 3; i++) {
        free(env[i]);
    }
    free(env4);
    fnode_bed_destroy(&t);
}

/* keten_promhttp_histogram (lib/promhttp.h), which serves the node's
 * keten_node_commit_seconds and the broker's batch and commit histograms: a
 * value equal to a bound falls in that bound's bucket, buckets are
 * cumulative, one above every bound only in +Inf; bounds and sum are scaled. */
static void test_histogram_text(void **state)
{
    (void)state;
    static const uint64_t bounds[] = { 1, 10 };
    keten_promhttp_hist h;
    keten_promhttp_hist_init(&h, bounds, 2);
    static const uint64_t seen[] = { 0, 1, 2, 10, 11, 1000 };
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) {
        keten_promhttp_observe(&h, seen[i]);
    }
    keten_promhttp_page p;
    keten_promhttp_begin(&p, 64, 4096);
    keten_promhttp_histogram(&p, "x", "An example.", &h, 1.0);
    size_t len = 0;
    char *text = keten_promhttp_finish(&p, &len);
    assert_non_null(text);
    assert_string_equal(text,
        "# HELP x An example.\n# TYPE x histogram\n"
        "x_bucket{le=\"1\"} 2\nx_bucket{le=\"10\"} 4\nx_bucket{le=\"+Inf\"} 6\n"
        "x_sum 1024\nx_count 6\n");
    free(text);
    /* Microseconds observed, seconds served; twin: nothing observed. */
    static const uint64_t us[] = { 500, 1000 };
    keten_promhttp_hist_init(&h, us, 2);
    keten_promhttp_begin(&p, 64, 4096);
    keten_promhttp_histogram(&p, "y_seconds", "Durations.", &h, 1e6);
    text = keten_promhttp_finish(&p, &len);
    assert_non_null(text);
    assert_string_equal(text,
        "# HELP y_seconds Durations.\n# TYPE y_seconds histogram\n"
        "y_seconds_bucket{le=\"0.0005\"} 0\ny_seconds_bucket{le=\"0.001\"} 0\n"
        "y_seconds_bucket{le=\"+Inf\"} 0\ny_seconds_sum 0\ny_seconds_count 0\n");
    free(text);
    keten_promhttp_observe(&h, 1500);
    keten_promhttp_observe(&h, 250);
    keten_promhttp_begin(&p, 64, 4096);
    keten_promhttp_histogram(&p, "y_seconds", "Durations.", &h, 1e6);
    text = keten_promhttp_finish(&p, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "y_seconds_bucket{le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(text, "y_seconds_bucket{le=\"0.001\"} 1\n"));
    assert_non_null(strstr(text, "y_seconds_bucket{le=\"+Inf\"} 2\ny_seconds_sum 0.00175\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_only),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_serve_and_stop),
        cmocka_unit_test(test_start_exit_codes),
        cmocka_unit_test(test_unhandled_gauge),
        cmocka_unit_test(test_histogram_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
