#include "zctx.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <zmq.h>

#include "log.h"

/* The terminating thread and its waiter share this; whoever of the two
 * finishes last frees it. */
typedef struct term_job {
    void *ctx;
    atomic_int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} term_job;

/* Shared with a thread that may outlive the wait: kept reachable. */
static term_job *_Atomic abandoned;

static void job_release(term_job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) == 1) {
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
        free(j);
    }
}

static void *term_thread(void *arg)
{
    term_job *j = arg;
    while (zmq_ctx_term(j->ctx) != 0 && zmq_errno() == EINTR) {
    }
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_release(j);
    return NULL;
}

bool keten_zctx_term(void **ctx, unsigned timeout_ms)
{
    if (*ctx == NULL) {
        return true;
    }
    term_job *j = calloc(1, sizeof *j);
    pthread_t t;
    if (j == NULL) {
        goto inline_term;
    }
    j->ctx = *ctx;
    atomic_init(&j->refs, 2);
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        goto inline_term;
    }
    if (pthread_cond_init(&j->cv, NULL) != 0) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        goto inline_term;
    }
    if (pthread_create(&t, NULL, term_thread, j) != 0) {
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
        free(j);
        goto inline_term;
    }
    *ctx = NULL;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000u;
    until.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->mu);
    int rc = 0;
    while (!j->done && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&j->cv, &j->mu, &until);
    }
    bool done = j->done;
    pthread_mutex_unlock(&j->mu);
    if (done) {
        (void)pthread_join(t, NULL);
        job_release(j);
        return true;
    }
    KETEN_LOG(KETEN_LOG_WARNING, "ZeroMQ did not end its context in time; exiting without it",
        "timeout_ms=%u", timeout_ms);
    atomic_store(&abandoned, j);
    (void)pthread_detach(t);
    job_release(j);
    return false;

inline_term:
    /* No thread to wait with: wait without a bound. */
    while (zmq_ctx_term(*ctx) != 0 && zmq_errno() == EINTR) {
    }
    *ctx = NULL;
    return true;
}
