/* broker_pool: the verifier threads (broker/pool.h), with real threads.
 * Every index of a job runs exactly once, with any number of workers
 * (none: all on the calling thread) and for both ways of running a job
 * (pool_run, and pool_start then pool_wait while the caller does something
 * else); after pool_wait() every index has run (twin: before it, with the
 * workers held back, not all have). A pool is used for many jobs in turn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "pool.h"

#define N 5000

typedef struct job {
    atomic_uint runs[N];
    pthread_t caller;
    atomic_uint on_caller;
    atomic_bool hold; /* workers wait while set */
} job;

static void count(void *ctx, size_t i)
{
    job *j = ctx;
    if (pthread_equal(pthread_self(), j->caller)) {
        atomic_fetch_add(&j->on_caller, 1);
    } else {
        while (atomic_load(&j->hold)) {
            sched_yield();
        }
    }
    atomic_fetch_add(&j->runs[i], 1);
}

static job *job_new(void)
{
    job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->caller = pthread_self();
    return j;
}

static void expect_once(job *j, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (atomic_load(&j->runs[i]) != 1) {
            fail_msg("index %zu ran %u times", i, atomic_load(&j->runs[i]));
        }
    }
    for (size_t i = n; i < N; i++) {
        assert_int_equal(atomic_load(&j->runs[i]), 0);
    }
}

static void test_no_workers(void **state)
{
    (void)state;
    pool *p = pool_new(0);
    assert_non_null(p);
    assert_int_equal(pool_threads(p), 0);
    job *j = job_new();
    pool_run(p, N, count, j);
    expect_once(j, N);
    assert_int_equal(atomic_load(&j->on_caller), N);
    memset(j, 0, sizeof *j);
    j->caller = pthread_self();
    pool_start(p, 10, count, j);
    pool_wait(p);
    expect_once(j, 10);
    pool_destroy(&p);
    assert_null(p);
    pool_destroy(&p);
    free(j);
}

static void test_workers(void **state)
{
    (void)state;
    pool *p = pool_new(3);
    assert_int_equal(pool_threads(p), 3);
    for (int round = 0; round < 20; round++) {
        job *j = job_new();
        if (round % 2 == 0) {
            pool_run(p, N, count, j);
        } else {
            pool_start(p, N, count, j);
            pool_wait(p);
        }
        expect_once(j, N);
        free(j);
    }
    job *j = job_new();
    pool_run(p, 0, count, j); /* an empty job */
    expect_once(j, 0);
    free(j);
    pool_destroy(&p);
}

/* Workers held back inside the job: pool_wait() does the rest itself and
 * returns only when the held ones have finished too. */
static void test_wait_waits(void **state)
{
    (void)state;
    pool *p = pool_new(2);
    job *j = job_new();
    atomic_store(&j->hold, true);
    pool_start(p, N, count, j);
    unsigned before = 0;
    for (size_t i = 0; i < N; i++) {
        before += atomic_load(&j->runs[i]);
    }
    assert_true(before < N); /* the held workers' indices have not run */
    atomic_store(&j->hold, false);
    pool_wait(p);
    expect_once(j, N);
    free(j);
    pool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_workers),
        cmocka_unit_test(test_workers),
        cmocka_unit_test(test_wait_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
