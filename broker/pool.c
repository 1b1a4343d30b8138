#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* workers: a job was started, or stop */
    pthread_cond_t done; /* caller: a worker finished its share */
    pthread_t th[POOL_THREADS_MAX];
    unsigned n_threads;
    bool stop;
    /* The current job (under mu, except `next`). */
    bool active;
    uint64_t generation;
    pool_fn fn;
    void *ctx;
    size_t n;
    atomic_size_t next; /* next index to take */
    size_t finished; /* indices that ran */
    unsigned busy; /* workers inside the job; pool_wait() waits for 0 */
};

/* Take indices of the current job until none is left; how many ran. */
static size_t take(pool *p, pool_fn fn, void *ctx, size_t n)
{
    size_t did = 0;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= n) {
            return did;
        }
        fn(ctx, i);
        did++;
    }
}

static void *worker(void *arg)
{
    pool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && (!p->active || p->generation == seen)) {
            pthread_cond_wait(&p->work, &p->mu);
        }
        if (p->stop) {
            break;
        }
        seen = p->generation;
        pool_fn fn = p->fn;
        void *ctx = p->ctx;
        size_t n = p->n;
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        size_t did = take(p, fn, ctx, n);
        pthread_mutex_lock(&p->mu);
        p->finished += did;
        p->busy--;
        pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pool *pool_new(unsigned threads)
{
    pool *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->work, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->done, NULL) != 0) {
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    atomic_init(&p->next, 0);
    if (threads > POOL_THREADS_MAX) {
        threads = POOL_THREADS_MAX;
    }
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->th[p->n_threads], NULL, worker, p) != 0) {
            break;
        }
        p->n_threads++;
    }
    return p;
}

void pool_destroy(pool **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    pool *p = *self_p;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++) {
        pthread_join(p->th[i], NULL);
    }
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p);
    *self_p = NULL;
}

unsigned pool_threads(const pool *self)
{
    return self->n_threads;
}

void pool_start(pool *self, size_t n, pool_fn fn, void *ctx)
{
    pthread_mutex_lock(&self->mu);
    self->fn = fn;
    self->ctx = ctx;
    self->n = n;
    self->finished = 0;
    atomic_store(&self->next, 0);
    self->active = true;
    self->generation++;
    if (n > 0) {
        pthread_cond_broadcast(&self->work);
    }
    pthread_mutex_unlock(&self->mu);
}

void pool_wait(pool *self)
{
    pthread_mutex_lock(&self->mu);
    if (!self->active) {
        pthread_mutex_unlock(&self->mu);
        return;
    }
    pool_fn fn = self->fn;
    void *ctx = self->ctx;
    size_t n = self->n;
    pthread_mutex_unlock(&self->mu);
    size_t did = take(self, fn, ctx, n);
    pthread_mutex_lock(&self->mu);
    self->finished += did;
    /* Every index ran, and no worker is still inside this job (a worker that
     * took the job late must not see the next one's counter). */
    while (self->finished < n || self->busy > 0) {
        pthread_cond_wait(&self->done, &self->mu);
    }
    self->active = false;
    pthread_mutex_unlock(&self->mu);
}

void pool_run(pool *self, size_t n, pool_fn fn, void *ctx)
{
    pool_start(self, n, fn, ctx);
    pool_wait(self);
}
