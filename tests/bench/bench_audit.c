/*
 * bench_audit: keten-audit's throughput on a large log.
 *
 * Builds, in a temporary directory, an audit log of BENCH_AUDIT_RECORDS
 * records (default 1,000,000) as the broker writes it: record 0 installs a
 * real signed directory (the test fixture's network), then "submitted"
 * records of realistic headers (random msg_ids, 1-3 recipients, registered
 * categories and purposes), each with a real Ed25519 signature of its sender
 * over "keten/envelope/v1" || header || ciphertext hash (signed by two
 * threads), appended with keten_merkle_log_append, with a checkpoint signed by the
 * broker's log key every 1,000 records as the broker does. Then it measures:
 *   - verify (verifier_run: tree, records, every signature, every
 *     checkpoint) in records/s, with all cores and with one thread;
 *   - replay with filters (records_scan + records_filter_match, matching
 *     records rendered as JSON lines to /dev/null) in records/s.
 * Prints figures only; never fails on time (it fails if the log it built
 * does not verify).
 */
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auditdb.h"
#include "checkpoint.h"
#include "fixture.h"
#include "merkle.h"
#include "pb.h"
#include "records.h"
#include "render.h"
#include "util.h"
#include "verifier.h"

#define DEFAULT_RECORDS 1000000ull
#define CHUNK 65536
#define CHECKPOINT_EVERY 1000
#define SIGNERS 2
#define MAP_SIZE (8ull << 30)
#define LIFETIME_MS 3600000ull

static const char *const senders[]
    = { "gemeente-diemen", "politie-mn", "belastingdienst", "woonstad" };
static const char *const categories[] = { "woonfraude", "drugs", "mensenhandel", "adrescheck" };
static const char *const purposes[] = { "riec-convenant/art-5", "handhaving" };
#define N_NODES 4

typedef struct leafbuf {
    uint8_t *data;
    size_t len;
} leafbuf;

typedef struct gen {
    fixture *fx;
    uint64_t first, count; /* record indexes of this job */
    uint64_t base_ms;
    leafbuf *out; /* count entries */
    int failed;
} gen;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the whole process (all threads): on a machine shared with
 * other work the wall-clock rate understates what the code does, the CPU
 * cost per record does not. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One submitted record, seq i. */
static int make_record(fixture *fx, uint64_t i, uint64_t base_ms, leafbuf *out)
{
    uint32_t r = randombytes_uniform(1u << 30);
    size_t s = r % N_NODES;
    keten_identity *sender = fixture_node(fx, senders[s]);
    size_t n_rcpt = 1 + (r >> 4) % 3;
    char *rcpt[3];
    for (size_t k = 0; k < n_rcpt; k++) {
        rcpt[k] = (char *)senders[(s + 1 + k) % N_NODES];
    }
    uint8_t msg_id[KETEN_MSG_ID_BYTES], nonce[KETEN_NONCE_BYTES], commit[KETEN_HASH_BYTES],
        keys_hash[KETEN_HASH_BYTES], ct_hash[KETEN_HASH_BYTES], env_hash[KETEN_HASH_BYTES];
    randombytes_buf(msg_id, sizeof msg_id);
    randombytes_buf(nonce, sizeof nonce);
    randombytes_buf(commit, sizeof commit);
    randombytes_buf(keys_hash, sizeof keys_hash);
    randombytes_buf(ct_hash, sizeof ct_hash);
    randombytes_buf(env_hash, sizeof env_hash);
    uint64_t t = base_ms + i;
    Keten__Header h = KETEN__HEADER__INIT;
    h.network = (char *)keten_directory_network(fx->directory);
    h.msg_id = (ProtobufCBinaryData) { sizeof msg_id, msg_id };
    h.sender = sender->id;
    h.n_recipients = n_rcpt;
    h.recipients = rcpt;
    h.created_at = t;
    h.expires_at = t + LIFETIME_MS;
    h.kind = KETEN__KIND__KIND_SIGNAL;
    h.category = (char *)categories[(r >> 8) % 4];
    h.purpose = (char *)purposes[(r >> 12) % 2];
    h.nonce = (ProtobufCBinaryData) { sizeof nonce, nonce };
    h.key_commitment = (ProtobufCBinaryData) { sizeof commit, commit };
    h.keys_hash = (ProtobufCBinaryData) { sizeof keys_hash, keys_hash };
    h.padded_len = 1024;
    uint8_t *hdr = NULL;
    size_t hdr_len = 0;
    if (keten_pb_pack(&h.base, &hdr, &hdr_len) != KETEN_OK) {
        return -1;
    }
    size_t label = strlen(KETEN_LABEL_ENVELOPE);
    uint8_t msg[512];
    if (label + hdr_len + KETEN_HASH_BYTES > sizeof msg) {
        free(hdr);
        return -1;
    }
    memcpy(msg, KETEN_LABEL_ENVELOPE, label);
    memcpy(msg + label, hdr, hdr_len);
    memcpy(msg + label + hdr_len, ct_hash, KETEN_HASH_BYTES);
    uint8_t sig[KETEN_SIG_BYTES];
    crypto_sign_detached(sig, NULL, msg, label + hdr_len + KETEN_HASH_BYTES, sender->sign_sk);
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.seq = i;
    rec.time = t;
    rec.event = KETEN__EVENT__EVENT_SUBMITTED;
    rec.msg_id = h.msg_id;
    rec.sender = h.sender;
    rec.n_recipients = n_rcpt;
    rec.recipients = rcpt;
    rec.kind = h.kind;
    rec.category = h.category;
    rec.purpose = h.purpose;
    rec.rule = 1;
    rec.header = (ProtobufCBinaryData) { hdr_len, hdr };
    rec.ciphertext_hash = (ProtobufCBinaryData) { sizeof ct_hash, ct_hash };
    rec.signature = (ProtobufCBinaryData) { sizeof sig, sig };
    rec.size_bucket = 1024;
    rec.directory_version = 1;
    rec.envelope_hash = (ProtobufCBinaryData) { sizeof env_hash, env_hash };
    keten_err e = keten_pb_pack(&rec.base, &out->data, &out->len);
    free(hdr);
    return e == KETEN_OK ? 0 : -1;
}

static void *gen_thread(void *arg)
{
    gen *g = arg;
    for (uint64_t k = 0; k < g->count; k++) {
        if (make_record(g->fx, g->first + k, g->base_ms, &g->out[k]) != 0) {
            g->failed = 1;
            return NULL;
        }
    }
    return NULL;
}

static int put_checkpoint(MDB_txn *txn, MDB_dbi cps, keten_merkle_log *log, const fixture *fx,
    const keten_identity *broker, uint64_t size)
{
    keten_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "keten/%s", keten_directory_network(fx->directory));
    cp.size = size;
    cp.dir_version = keten_directory_version(fx->directory);
    memcpy(cp.dir_hash, keten_directory_hash(fx->directory), KETEN_HASH_BYTES);
    char *note = NULL;
    if (keten_merkle_log_root(log, txn, size, cp.root) != KETEN_OK
        || keten_checkpoint_sign(&cp, broker->id, broker->log_sk, &note) != KETEN_OK) {
        return -1;
    }
    uint8_t key[8];
    for (int b = 7; b >= 0; b--) {
        key[7 - b] = (uint8_t)(size >> (8 * b));
    }
    MDB_val k = { sizeof key, key }, v = { strlen(note), note };
    int rc = mdb_put(txn, cps, &k, &v, MDB_APPEND);
    free(note);
    return rc == 0 ? 0 : -1;
}

/* Build the log in dir/store; returns 0 on success. */
static int build(fixture *fx, const char *store, uint64_t n, double *seconds)
{
    double t0 = now_s();
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dirs, cps;
    keten_merkle_log *log = NULL;
    keten_identity *broker = fixture_node(fx, "broker");
    if (keten_mkdir(store, 0700) != KETEN_OK || mdb_env_create(&env) != 0
        || mdb_env_set_maxdbs(env, 16) != 0 || mdb_env_set_mapsize(env, MAP_SIZE) != 0
        || mdb_env_open(env, store, MDB_NOSYNC, 0600) != 0 || mdb_txn_begin(env, NULL, 0, &txn) != 0
        || keten_merkle_log_open(txn, "audit-", &log) != KETEN_OK
        || mdb_dbi_open(txn, "directories", MDB_CREATE, &dirs) != 0
        || mdb_dbi_open(txn, "checkpoints", MDB_CREATE, &cps) != 0) {
        fprintf(stderr, "bench_audit: cannot make the store in %s\n", store);
        return -1;
    }
    /* Record 0: the directory, as the broker installs it. */
    size_t dlen = 0;
    const uint8_t *dbytes = keten_directory_bytes(fx->directory, &dlen);
    Keten__AuditRecord d = KETEN__AUDIT_RECORD__INIT;
    uint64_t base = keten_now_ms();
    d.time = base;
    d.event = KETEN__EVENT__EVENT_DIRECTORY_INSTALLED;
    d.directory = (ProtobufCBinaryData) { dlen, (uint8_t *)dbytes };
    d.directory_version = 1;
    uint8_t *leaf = NULL;
    size_t leaf_len = 0;
    uint8_t vkey[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
    MDB_val vk = { sizeof vkey, vkey }, vv = { dlen, (void *)dbytes };
    if (keten_pb_pack(&d.base, &leaf, &leaf_len) != KETEN_OK
        || keten_merkle_log_append(log, txn, leaf, leaf_len, NULL) != KETEN_OK
        || mdb_put(txn, dirs, &vk, &vv, 0) != 0) {
        fprintf(stderr, "bench_audit: cannot write the directory record\n");
        return -1;
    }
    free(leaf);
    leafbuf *buf = calloc(CHUNK, sizeof *buf);
    if (buf == NULL) {
        return -1;
    }
    for (uint64_t first = 1; first < n; first += CHUNK) {
        uint64_t count = n - first < CHUNK ? n - first : CHUNK;
        gen g[SIGNERS];
        pthread_t th[SIGNERS];
        uint64_t per = (count + SIGNERS - 1) / SIGNERS;
        for (int t = 0; t < SIGNERS; t++) {
            uint64_t a = (uint64_t)t * per;
            uint64_t c = a >= count ? 0 : (count - a < per ? count - a : per);
            g[t] = (gen) { fx, first + a, c, base, buf + a, 0 };
            if (pthread_create(&th[t], NULL, gen_thread, &g[t]) != 0) {
                return -1;
            }
        }
        for (int t = 0; t < SIGNERS; t++) {
            pthread_join(th[t], NULL);
            if (g[t].failed) {
                fprintf(stderr, "bench_audit: cannot make a record\n");
                return -1;
            }
        }
        for (uint64_t k = 0; k < count; k++) {
            uint64_t index = 0;
            if (keten_merkle_log_append(log, txn, buf[k].data, buf[k].len, &index) != KETEN_OK) {
                fprintf(stderr, "bench_audit: append: %s\n", keten_err_detail());
                return -1;
            }
            free(buf[k].data);
            buf[k].data = NULL;
            if ((index + 1) % CHECKPOINT_EVERY == 0
                && put_checkpoint(txn, cps, log, fx, broker, index + 1) != 0) {
                fprintf(stderr, "bench_audit: checkpoint: %s\n", keten_err_detail());
                return -1;
            }
        }
        if (mdb_txn_commit(txn) != 0 || mdb_txn_begin(env, NULL, 0, &txn) != 0) {
            fprintf(stderr, "bench_audit: commit failed\n");
            return -1;
        }
    }
    free(buf);
    int rc = mdb_txn_commit(txn);
    keten_merkle_log_destroy(&log);
    if (rc != 0 || mdb_env_sync(env, 1) != 0) {
        return -1;
    }
    mdb_env_close(env);
    *seconds = now_s() - t0;
    return 0;
}

typedef struct replay_ctx {
    const records_filter *f;
    records_index *idx;
    FILE *out;
    uint64_t matched;
} replay_ctx;

static keten_err replay_visit(
    void *ctx, const Keten__AuditRecord *rec, const records_msg *m, const uint8_t *leaf, size_t len)
{
    (void)leaf;
    (void)len;
    replay_ctx *c = ctx;
    if (records_filter_match(c->f, c->idx, rec, m)) {
        render_record(c->out, RENDER_JSONL, c->idx, rec, m);
        c->matched++;
    }
    return KETEN_OK;
}

static int verify_once(const char *store, const Keten__Anchor *anchor, unsigned threads,
    double *rate, double *cpu_us, verifier_result *res)
{
    auditdb *db = NULL;
    if (auditdb_open_env(store, &db) != KETEN_OK) {
        fprintf(stderr, "bench_audit: open: %s\n", keten_err_detail());
        return -1;
    }
    verifier_opts o = { .anchor = anchor, .threads = threads };
    double t0 = now_s(), c0 = cpu_s();
    keten_err e = verifier_run(db, &o, res);
    double dt = now_s() - t0;
    *cpu_us = (cpu_s() - c0) * 1e6 / (double)(res->records > 0 ? res->records : 1);
    auditdb_close(&db);
    if (e != KETEN_OK || !res->ok) {
        fprintf(stderr, "bench_audit: the log does not verify: %s\n",
            e != KETEN_OK ? keten_err_detail() : res->failure.what);
        return -1;
    }
    *rate = (double)res->records / dt;
    return 0;
}

static int replay_once(
    const char *store, const records_filter *f, double *rate, double *cpu_us, uint64_t *matched)
{
    auditdb *db = NULL;
    records_index *idx = records_index_new();
    FILE *null = fopen("/dev/null", "w");
    if (idx == NULL || null == NULL || auditdb_open_env(store, &db) != KETEN_OK) {
        return -1;
    }
    replay_ctx c = { f, idx, null, 0 };
    double t0 = now_s(), c0 = cpu_s();
    keten_err e = records_scan(db, idx, replay_visit, &c);
    double dt = now_s() - t0;
    uint64_t n = db->size;
    *cpu_us = (cpu_s() - c0) * 1e6 / (double)(n > 0 ? n : 1);
    auditdb_close(&db);
    records_index_destroy(&idx);
    fclose(null);
    if (e != KETEN_OK) {
        return -1;
    }
    *rate = (double)n / dt;
    *matched = c.matched;
    return 0;
}

int main(void)
{
    uint64_t n = DEFAULT_RECORDS;
    const char *s = getenv("BENCH_AUDIT_RECORDS");
    if (s != NULL && s[0] != '\0') {
        n = strtoull(s, NULL, 10);
        if (n < 2) {
            n = 2;
        }
    }
    const char *specs[] = { "gemeente-diemen:municipality", "politie-mn:police",
        "belastingdienst:tax", "woonstad:housing", "broker:broker", NULL };
    fixture *fx = fixture_new(3, 2, specs);
    char store[PATH_MAX];
    fixture_path(fx, "store", store);
    double build_s = 0;
    if (build(fx, store, n, &build_s) != 0) {
        fixture_destroy(&fx);
        return 1;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_audit: a log of %" PRIu64 " records (submitted, real signatures, a checkpoint "
           "every %d) built in %.1f s\n",
        n, CHECKPOINT_EVERY, build_s);
    verifier_result *res = calloc(1, sizeof *res);
    double all = 0, one = 0, cpu_all = 0, cpu_one = 0;
    if (res == NULL || verify_once(store, fx->anchor, 0, &all, &cpu_all, res) != 0) {
        fixture_destroy(&fx);
        return 1;
    }
    printf("verify (tree, records, %" PRIu64 " sender signatures, %" PRIu64
           " checkpoints), %u signature threads on %ld cores: %.0f records/s "
           "(target >= 20000); %.1f us of CPU per record, i.e. %.0f records/s when the %ld "
           "cores are free\n",
        res->sender_signatures, res->checkpoints, res->threads, cores, all, cpu_all,
        (double)cores * 1e6 / cpu_all, cores);
    if (verify_once(store, fx->anchor, 1, &one, &cpu_one, res) != 0) {
        fixture_destroy(&fx);
        return 1;
    }
    printf("verify, 1 signature thread: %.0f records/s; %.1f us of CPU per record\n", one, cpu_one);
    records_filter f;
    memset(&f, 0, sizeof f);
    f.node = "woonstad";
    f.category = "drugs";
    double rate = 0, cpu = 0;
    uint64_t matched = 0;
    if (replay_once(store, &f, &rate, &cpu, &matched) != 0) {
        fixture_destroy(&fx);
        return 1;
    }
    printf("replay --node woonstad --category drugs (%" PRIu64 " matches, JSON lines to "
           "/dev/null): %.0f records/s (target >= 200000); %.2f us of CPU per record, i.e. "
           "%.0f records/s on a free core\n",
        matched, rate, cpu, 1e6 / cpu);
    memset(&f, 0, sizeof f);
    f.has_from = true;
    f.from_ms = 0;
    f.has_to = true;
    f.to_ms = UINT64_MAX;
    f.purpose = "handhaving";
    if (replay_once(store, &f, &rate, &cpu, &matched) != 0) {
        fixture_destroy(&fx);
        return 1;
    }
    printf("replay --from --to --purpose handhaving (%" PRIu64 " matches): %.0f records/s; "
           "%.2f us of CPU per record\n",
        matched, rate, cpu);
    free(res);
    fixture_destroy(&fx);
    return 0;
}
