/*
 * pool.h - a small fixed pool of worker threads for the broker's CPU-bound,
 * stateless work: verifying the envelopes and receipt batches of a batch
 * before the writer applies it, while the writer waits for the previous
 * batch's fsync (docs/performance.md).
 *
 * The LMDB writer stays one thread (the main loop); workers never touch the
 * store, the connection table, the outgoing queue or the metrics' non-atomic
 * state. A job is a function called once per index 0..n-1 with a context;
 * what it reads must not change while the job runs, and each index writes
 * only its own slot of the results.
 *
 *   pool_run()    runs a job to completion; the calling thread works too.
 *   pool_start()  hands a job to the workers and returns at once (the caller
 *                 does something else, e.g. an fsync); pool_wait() then
 *                 helps with what is left and returns when every index ran.
 * One job at a time: pool_start() must be followed by pool_wait() before the
 * next pool_run() or pool_start().
 *
 * With 0 workers (pool_new(0), or when no thread could be started) every job
 * runs on the calling thread, in pool_run() or in pool_wait().
 *
 * Ownership: pool_destroy() stops and joins the workers; accepts NULL.
 * Thread safety: pool_* are called by one thread (the main loop).
 */
#ifndef KETEN_BROKER_POOL_H
#define KETEN_BROKER_POOL_H

#include <stddef.h>

#define POOL_THREADS_MAX 64

typedef struct pool pool;

typedef void (*pool_fn)(void *ctx, size_t index);

/* A pool of `threads` workers (0..POOL_THREADS_MAX); NULL when out of
 * memory. Threads that cannot be started are simply not there. */
pool *pool_new(unsigned threads);
void pool_destroy(pool **self_p);

/* Workers actually running. */
unsigned pool_threads(const pool *self);

void pool_run(pool *self, size_t n, pool_fn fn, void *ctx);
void pool_start(pool *self, size_t n, pool_fn fn, void *ctx);
void pool_wait(pool *self);

#endif
