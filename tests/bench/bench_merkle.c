/*
 * bench_merkle - throughput of the LMDB-backed Merkle log (lib/merkle.c).
 *
 * Measures, each as the median of 5 repeats with min and max:
 *   - appending 1,000,000 leaves of 200 bytes (the size of an audit record)
 *     in write transactions of 1,000 leaves, environment opened with
 *     MDB_NOSYNC (the figure excludes fsync);
 *   - inclusion proofs for random indexes in the 1M-leaf tree;
 *   - consistency proofs from random old sizes to the 1M-leaf tree;
 *   - roots of random tree sizes.
 * It prints figures and checks that the work was real (the log's root equals
 * the in-memory root over the same leaves; sampled proofs verify). It never
 * passes or fails on time.
 *
 * Usage: bench_merkle [leaves] (default 1000000). Temporary LMDB files go to
 * a fresh directory under $TMPDIR (or /tmp) and are removed at the end.
 */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "merkle.h"

#define DEFAULT_LEAVES 1000000u
#define LEAF_BYTES 200
#define BATCH 1000
#define REPEATS 5
#define MAP_SIZE (4ull << 30) /* 4 GiB */
#define INCLUSION_OPS 200000u
#define CONSISTENCY_OPS 100000u
#define ROOT_OPS 200000u
#define VERIFY_SAMPLE 1000u

typedef struct bench_env {
    char dir[512];
    MDB_env *env;
    keten_merkle_log *log;
} bench_env;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of this thread: wall / cpu shows whether the machine was busy. */
static double cpu_s(void)
{
    return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

/* xorshift64*: cheap reproducible numbers for leaf contents and indexes. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

static void make_leaf(uint64_t i, uint8_t leaf[LEAF_BYTES])
{
    uint64_t s = i * 0x9E3779B97F4A7C15ull + 1;
    for (size_t j = 0; j < LEAF_BYTES; j += 8) {
        uint64_t v = rng_next(&s);
        size_t n = LEAF_BYTES - j < 8 ? LEAF_BYTES - j : 8;
        memcpy(leaf + j, &v, n);
    }
}

static int fail(const char *what, keten_err err)
{
    fprintf(stderr, "bench_merkle: %s: %s: %s\n", what, keten_err_str(err), keten_err_detail());
    return 1;
}

static int fail_mdb(const char *what, int rc)
{
    fprintf(stderr, "bench_merkle: %s: %s\n", what, mdb_strerror(rc));
    return 1;
}

static void env_remove(bench_env *b)
{
    if (b->log != NULL) {
        keten_merkle_log_destroy(&b->log);
    }
    if (b->env != NULL) {
        mdb_env_close(b->env);
        b->env = NULL;
    }
    if (b->dir[0] != '\0') {
        char p[600];
        snprintf(p, sizeof p, "%s/data.mdb", b->dir);
        (void)unlink(p);
        snprintf(p, sizeof p, "%s/lock.mdb", b->dir);
        (void)unlink(p);
        if (rmdir(b->dir) != 0) {
            fprintf(stderr, "bench_merkle: cannot remove %s: %s\n", b->dir, strerror(errno));
        }
        b->dir[0] = '\0';
    }
}

static int env_new(bench_env *b)
{
    memset(b, 0, sizeof *b);
    const char *t = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/keten-bench-merkle-XXXXXX",
        t != NULL && t[0] != '\0' ? t : "/tmp");
    if (mkdtemp(b->dir) == NULL) {
        fprintf(stderr, "bench_merkle: cannot make a temporary directory: %s\n", strerror(errno));
        b->dir[0] = '\0';
        return 1;
    }
    int rc = mdb_env_create(&b->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(b->env, 4);
    }
    if (rc == 0) {
        rc = mdb_env_set_mapsize(b->env, (size_t)MAP_SIZE);
    }
    if (rc == 0) {
        rc = mdb_env_open(b->env, b->dir, MDB_NOSYNC, 0600);
    }
    if (rc != 0) {
        return fail_mdb("opening the LMDB environment", rc);
    }
    MDB_txn *txn = NULL;
    rc = mdb_txn_begin(b->env, NULL, 0, &txn);
    if (rc != 0) {
        return fail_mdb("beginning a transaction", rc);
    }
    keten_err err = keten_merkle_log_open(txn, "audit-", &b->log);
    if (err != KETEN_OK) {
        mdb_txn_abort(txn);
        return fail("opening the log", err);
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return fail_mdb("committing", rc);
    }
    return 0;
}

/* Append n leaves in batches; *secs receives the elapsed time. */
static int append_all(bench_env *b, uint64_t n, double *secs, double *cpu)
{
    uint8_t leaf[LEAF_BYTES];
    double t0 = now_s();
    double c0 = cpu_s();
    for (uint64_t i = 0; i < n;) {
        MDB_txn *txn = NULL;
        int rc = mdb_txn_begin(b->env, NULL, 0, &txn);
        if (rc != 0) {
            return fail_mdb("beginning a write transaction", rc);
        }
        for (unsigned j = 0; j < BATCH && i < n; j++, i++) {
            make_leaf(i, leaf);
            uint64_t idx = 0;
            keten_err err = keten_merkle_log_append(b->log, txn, leaf, sizeof leaf, &idx);
            if (err != KETEN_OK || idx != i) {
                mdb_txn_abort(txn);
                return fail("appending", err);
            }
        }
        rc = mdb_txn_commit(txn);
        if (rc != 0) {
            return fail_mdb("committing a batch", rc);
        }
    }
    *secs = now_s() - t0;
    *cpu = cpu_s() - c0;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static double median(const double *v)
{
    double s[REPEATS];
    memcpy(s, v, sizeof s);
    qsort(s, REPEATS, sizeof s[0], cmp_double);
    return s[REPEATS / 2];
}

/* rates: ops per wall-clock second; cpu_share: CPU time / wall time of each
 * repeat (well below 100% means other processes took the CPU). */
static void report(const char *name, const double *rates, const double *cpu_share, const char *note)
{
    double s[REPEATS];
    memcpy(s, rates, sizeof s);
    qsort(s, REPEATS, sizeof s[0], cmp_double);
    printf("%-32s %9.0f ops/s (min %.0f, max %.0f, median of %d; cpu %.0f%%)%s%s\n", name,
        s[REPEATS / 2], s[0], s[REPEATS - 1], REPEATS, 100.0 * median(cpu_share),
        note[0] != '\0' ? "  " : "", note);
    fflush(stdout);
}

/* The log's root must equal the in-memory root over the same leaves. */
static int check_root(bench_env *b, uint64_t n)
{
    keten_hash *lh = malloc((size_t)n * sizeof *lh);
    if (lh == NULL) {
        fprintf(stderr, "bench_merkle: out of memory for %" PRIu64 " leaf hashes\n", n);
        return 1;
    }
    uint8_t leaf[LEAF_BYTES];
    for (uint64_t i = 0; i < n; i++) {
        make_leaf(i, leaf);
        keten_merkle_leaf_hash(leaf, sizeof leaf, lh[i]);
    }
    keten_hash mem, stored;
    keten_merkle_root((const keten_hash *)lh, n, mem);
    free(lh);
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return fail_mdb("beginning a read transaction", rc);
    }
    keten_err err = keten_merkle_log_root(b->log, txn, n, stored);
    mdb_txn_abort(txn);
    if (err != KETEN_OK) {
        return fail("root", err);
    }
    if (sodium_memcmp(mem, stored, sizeof mem) != 0) {
        fprintf(stderr, "bench_merkle: the log's root differs from the in-memory root\n");
        return 1;
    }
    return 0;
}

enum op { OP_INCLUSION, OP_CONSISTENCY, OP_ROOT };

/* ops operations of one kind in one read transaction; the first
 * VERIFY_SAMPLE results are verified after the clock stops. */
static int run_reads(bench_env *b, uint64_t n, enum op op, unsigned ops, uint64_t seed,
    double *rate, double *cpu_share)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return fail_mdb("beginning a read transaction", rc);
    }
    keten_hash root_n;
    keten_err err = keten_merkle_log_root(b->log, txn, n, root_n);
    if (err != KETEN_OK) {
        mdb_txn_abort(txn);
        return fail("root", err);
    }
    uint64_t s = seed;
    keten_hash proof[KETEN_MERKLE_MAX_PROOF];
    size_t len = 0;
    keten_hash out;
    volatile uint8_t sink = 0;
    double t0 = now_s();
    double c0 = cpu_s();
    for (unsigned k = 0; k < ops; k++) {
        uint64_t x = op == OP_ROOT ? 1 + rng_below(&s, n) : rng_below(&s, n);
        if (op == OP_INCLUSION) {
            err = keten_merkle_log_inclusion_proof(b->log, txn, x, n, proof, &len);
            sink ^= proof[0][0];
        } else if (op == OP_CONSISTENCY) {
            err = keten_merkle_log_consistency_proof(b->log, txn, x == 0 ? 1 : x, n, proof, &len);
            sink ^= proof[0][0];
        } else {
            err = keten_merkle_log_root(b->log, txn, x, out);
            sink ^= out[0];
        }
        if (err != KETEN_OK) {
            mdb_txn_abort(txn);
            return fail("reading", err);
        }
    }
    double secs = now_s() - t0;
    double cpu = cpu_s() - c0;
    (void)sink;
    /* Were they right? Redo a sample with the same numbers and verify. */
    s = seed;
    for (unsigned k = 0; k < VERIFY_SAMPLE && k < ops && err == KETEN_OK; k++) {
        uint64_t x = op == OP_ROOT ? 1 + rng_below(&s, n) : rng_below(&s, n);
        if (op == OP_INCLUSION) {
            keten_hash lh;
            err = keten_merkle_log_inclusion_proof(b->log, txn, x, n, proof, &len);
            if (err == KETEN_OK) {
                err = keten_merkle_log_leaf_hash(b->log, txn, x, lh);
            }
            if (err == KETEN_OK) {
                err = keten_merkle_verify_inclusion(
                    lh, x, n, (const keten_hash *)proof, len, root_n);
            }
        } else if (op == OP_CONSISTENCY) {
            uint64_t m = x == 0 ? 1 : x;
            keten_hash root_m;
            err = keten_merkle_log_consistency_proof(b->log, txn, m, n, proof, &len);
            if (err == KETEN_OK) {
                err = keten_merkle_log_root(b->log, txn, m, root_m);
            }
            if (err == KETEN_OK) {
                err = keten_merkle_verify_consistency(
                    m, n, root_m, root_n, (const keten_hash *)proof, len);
            }
        } else {
            /* A root of size x is right if it is consistent with the root of n. */
            err = keten_merkle_log_root(b->log, txn, x, out);
            if (err == KETEN_OK) {
                err = keten_merkle_log_consistency_proof(b->log, txn, x, n, proof, &len);
            }
            if (err == KETEN_OK) {
                err = keten_merkle_verify_consistency(
                    x, n, out, root_n, (const keten_hash *)proof, len);
            }
        }
    }
    mdb_txn_abort(txn);
    if (err != KETEN_OK) {
        return fail("verifying a sampled result", err);
    }
    *rate = (double)ops / secs;
    *cpu_share = cpu / secs;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = DEFAULT_LEAVES;
    if (argc > 1) {
        char *end = NULL;
        unsigned long long v = strtoull(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || v < 2 || v > 100000000ull) {
            fprintf(stderr, "usage: bench_merkle [leaves: 2..100000000]\n");
            return 2;
        }
        n = v;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "bench_merkle: libsodium could not be initialised\n");
        return 1;
    }
    printf("bench_merkle: RFC 9162 Merkle log in LMDB, %" PRIu64 " leaves of %d bytes, "
           "%d leaves per write transaction, %d repeats\n",
        n, LEAF_BYTES, BATCH, REPEATS);
    printf("append figures use MDB_NOSYNC: they exclude fsync (a durable commit adds one "
           "fsync per write transaction)\n");
    fflush(stdout);

    int ret = 1;
    bench_env b = { .dir = "" };
    double rates[REPEATS];
    double share[REPEATS];
    for (int r = 0; r < REPEATS; r++) {
        env_remove(&b);
        if (env_new(&b) != 0) {
            goto out;
        }
        double secs = 0;
        double cpu = 0;
        if (append_all(&b, n, &secs, &cpu) != 0) {
            goto out;
        }
        rates[r] = (double)n / secs;
        share[r] = cpu / secs;
    }
    report("append (batch 1000, NOSYNC)", rates, share, "target >= 200000");
    if (check_root(&b, n) != 0) {
        goto out;
    }

    static const struct {
        const char *name;
        enum op op;
        unsigned ops;
        const char *note;
    } reads[] = {
        { "inclusion proof (random index)", OP_INCLUSION, INCLUSION_OPS, "target >= 50000" },
        { "consistency proof (random old)", OP_CONSISTENCY, CONSISTENCY_OPS, "" },
        { "root (random size)", OP_ROOT, ROOT_OPS, "" },
    };
    for (size_t k = 0; k < sizeof reads / sizeof reads[0]; k++) {
        for (int r = 0; r < REPEATS; r++) {
            if (run_reads(&b, n, reads[k].op, reads[k].ops, 0x1234567ull + (uint64_t)r * 7919,
                    &rates[r], &share[r])
                != 0) {
                goto out;
            }
        }
        report(reads[k].name, rates, share, reads[k].note);
    }
    ret = 0;
out:
    env_remove(&b);
    return ret;
}
