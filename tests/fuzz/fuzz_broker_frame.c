/*
 * fuzz_broker_frame.c - frames from authenticated nodes into the broker's
 * frame handling (broker/): the modules server.c runs on each frame of a
 * batch, with a real LMDB store in a temporary directory (on /dev/shm when
 * there is one) made once per process.
 *
 * The broker is set up once as tests/unit/fixture_broker.c does it, on the
 * test network of fuzz_common.h (directory version 1, the broker's own
 * identity with its log key), with a connection and an accepted Hello for
 * each of the four partner nodes, and the clock at FUZZ_T_SEAL + 1 s (so
 * that the corpus envelopes are inside the clock window).
 *
 * The input is a list of frames, each [sel][length, 2 bytes big endian]
 * [Frame bytes] (the last one may be short: it takes what is left), at most
 * MAX_FRAMES. sel & 3 picks the node that sent it (fuzz_node_ids order);
 * sel & 0x80 ends the batch before this frame, and then (sel >> 2) & 7
 * moves the broker's clock on by that many times six hours (expiry). Each
 * batch is applied as server.c's apply() does it: the stateless checks
 * (submit_prepare, deliver_receipt_prepare), then each frame dispatched as
 * server.c's dispatch() does, then notices, deliveries, expiry and
 * checkpointer_commit (the checkpoint and every proof). Batches are nested
 * LMDB transactions inside one transaction that is aborted after the input;
 * the connections and the checkpointer are then put back as they were, so
 * every input starts from the same state.
 *
 * Invariants, per batch:
 *   1. the audit log only grows; every staged frame is a Frame that parses
 *      within KETEN_FRAME_MAX and goes to a connected node;
 *   2. nothing is stored unless it verifies: the messages the store holds
 *      grow by at most the number of the batch's Submit frames whose
 *      envelope verifies (keten_envelope_verify) and whose sender is the
 *      node that sent it; SubmitAcks staged: at most as many;
 *   3. a frame that is not what a node sends, or does not parse, gets an
 *      Error back (MALFORMED), never silence.
 * After the input: the log is back at its base size.
 */
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "broker.h"
#include "checkpointer.h"
#include "conns.h"
#include "deliver.h"
#include "dirstate.h"
#include "envelope.h"
#include "fuzz_common.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "store.h"
#include "submit.h"
#include "util.h"

#define MAX_FRAMES 32
#define N_PARTNERS 4
#define MAP_SIZE (64ull << 20)
#define STEP_MS (6ull * 3600ull * 1000ull)

static struct {
    bool ready;
    char dir[PATH_MAX];
    char home[PATH_MAX];
    char anchor[PATH_MAX];
    char directory[PATH_MAX];
    broker_config cfg;
    broker b;
    conn *c[N_PARTNERS];
    conn base[N_PARTNERS];
    uint64_t base_size;
    uint64_t base_now;
    uint64_t base_audit_time;
    bool base_audit_time_known;
} S;

static void join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", a, b);
    FUZZ_CHECK(n > 0 && n < PATH_MAX);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    /* gone already: libzmq removes a closed ipc socket's file itself */
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Remove path and everything under it (our own temporary files); a path
 * that is not there is no error. */
static void remove_tree(const char *path)
{
    if (access(path, F_OK) == 0) {
        FUZZ_CHECK(nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    }
}

static void cleanup(void)
{
    broker *b = &S.b;
    store_abort(&b->txn);
    checkpointer_destroy(&b->cp);
    dirstate_destroy(&b->dirs);
    store_close(&b->st);
    metrics_destroy(&b->m);
    outq_destroy(&b->out);
    conns_destroy(&b->conns);
    if (S.dir[0] != '\0') {
        remove_tree(S.dir);
    }
}

static uint64_t log_size(MDB_txn *txn)
{
    broker *b = &S.b;
    MDB_txn *own = NULL;
    if (txn == NULL) {
        FUZZ_MUST(store_begin(b->st, false, &own));
        txn = own;
    }
    uint64_t size = 0;
    FUZZ_MUST(keten_merkle_log_size(b->st->log, txn, &size));
    store_abort(&own);
    return size;
}

static uint64_t msgs_held(MDB_txn *txn)
{
    MDB_stat st;
    FUZZ_CHECK(mdb_stat(txn, S.b.st->msgs, &st) == 0);
    return st.ms_entries;
}

static void batch_begin(MDB_txn *outer)
{
    broker *b = &S.b;
    b->batch_bytes = 0;
    b->degraded = atomic_load(&b->st->full);
    checkpointer_begin(b);
    FUZZ_CHECK(mdb_txn_begin(b->st->env, outer, 0, &b->txn) == 0);
}

static void setup(void)
{
    const fuzz_network *net = fuzz_net();
    keten_log_threshold = 0; /* quiet: errors are expected by the thousand */
    struct stat st;
    const char *tmp = getenv("TMPDIR");
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
        tmp = "/dev/shm";
    } else if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }
    int n = snprintf(S.dir, sizeof S.dir, "%s/keten-fuzz-broker-XXXXXX", tmp);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof S.dir && mkdtemp(S.dir) != NULL);
    atexit(cleanup);
    join(S.home, S.dir, "home");
    join(S.anchor, S.dir, "network.pub");
    join(S.directory, S.dir, "directory");
    FUZZ_CHECK(mkdir(S.home, 0700) == 0);
    FUZZ_MUST(keten_file_write(S.anchor, net->anchor_bytes, net->anchor_len, 0644, false));
    FUZZ_MUST(keten_file_write(S.directory, net->dir1, net->dir1_len, 0644, false));

    S.cfg = (broker_config) {
        .home = S.home,
        .anchor_path = S.anchor,
        .directory_path = S.directory,
        .listen = "inproc://not-listening",
        .map_size = MAP_SIZE,
        .clock_window_ms = BROKER_CLOCK_WINDOW_DEFAULT_MS,
        .retry_horizon_ms = BROKER_RETRY_HORIZON_DEFAULT_DAYS * KETEN_MS_PER_DAY,
        .checkpoint_records = 4, /* witness checkpoints come often */
        .checkpoint_ms = 1000ull * KETEN_MS_PER_DAY,
        .log_level = 0,
    };
    broker *b = &S.b;
    b->cfg = &S.cfg;
    b->me = net->nodes[FUZZ_N_NODES - 1];
    FUZZ_CHECK(strcmp(b->me->id, FUZZ_BROKER) == 0 && b->me->has_log_key);
    b->m = metrics_new();
    b->conns = conns_new();
    b->out = outq_new();
    FUZZ_CHECK(b->m != NULL && b->conns != NULL && b->out != NULL);
    b->now = FUZZ_T_SEAL + 1000;
    FUZZ_MUST(store_open(S.home, MAP_SIZE, &b->st));
    FUZZ_MUST(dirstate_open(b, S.anchor, S.directory));
    FUZZ_MUST(checkpointer_open(b));
    FUZZ_MUST(store_room(b->st, b->now, NULL));

    /* Every partner connected, with an accepted Hello of a node new to the log. */
    for (size_t i = 0; i < N_PARTNERS; i++) {
        const keten_identity *id = net->nodes[i];
        FUZZ_MUST(conns_add(b->conns, (const uint8_t *)id->id, strlen(id->id), id->id,
            id->transport_pk, -1, b->now, &S.c[i]));
        Keten__Hello h = KETEN__HELLO__INIT;
        batch_begin(NULL);
        FUZZ_MUST(checkpointer_hello(b, S.c[i], 1, &h));
        FUZZ_MUST(checkpointer_commit(b));
        FUZZ_MUST(store_commit(b->st, &b->txn));
        outq_clear(b->out);
        FUZZ_CHECK(S.c[i]->hello);
    }
    for (size_t i = 0; i < N_PARTNERS; i++) {
        FUZZ_CHECK(S.c[i]->notice_v == NULL);
        S.base[i] = *S.c[i];
    }
    S.base_size = log_size(NULL);
    S.base_now = b->now;
    S.base_audit_time = b->audit_time;
    S.base_audit_time_known = b->audit_time_known;
    keten_err_clear();
    S.ready = true;
}

/* Put the broker's memory back as it was after setup (the store is, once
 * the outer transaction is aborted). */
static void reset(void)
{
    broker *b = &S.b;
    outq_clear(b->out);
    for (size_t i = 0; i < N_PARTNERS; i++) {
        free(S.c[i]->notice_v);
        *S.c[i] = S.base[i];
    }
    checkpointer_destroy(&b->cp);
    FUZZ_MUST(checkpointer_open(b));
    b->now = S.base_now;
    b->audit_time = S.base_audit_time;
    b->audit_time_known = S.base_audit_time_known;
    b->n_events = 0;
    b->notices_staged = 0;
    atomic_store(&b->st->full, false);
    keten_err_clear();
}

typedef struct item {
    conn *c;
    Keten__Frame *frame; /* NULL: did not parse */
    submit_prep prep;
    receipt_prep rprep;
} item;

/* As server.c's unexpected() and dispatch(). */
static keten_err unexpected(broker *b, const conn *c, uint64_t request_id, const char *what)
{
    keten_err e = audit_rejected(b, NULL, c->node, KETEN__REASON__REASON_MALFORMED, 0, NULL);
    if (e != KETEN_OK) {
        return e;
    }
    metrics_reject(b->m, KETEN__REASON__REASON_MALFORMED);
    return outq_error(b->out, c, request_id, KETEN__REASON__REASON_MALFORMED, NULL, what, 0);
}

static keten_err dispatch(broker *b, item *it)
{
    conn *c = it->c;
    const Keten__Frame *f = it->frame;
    if (f == NULL) {
        return unexpected(b, c, 0, "frame does not parse (one Frame per message)");
    }
    uint64_t rid = f->request_id;
    switch (f->body_case) {
    case KETEN__FRAME__BODY_CREDIT:
        deliver_credit(c, f->credit->credit);
        c->more = true;
        return KETEN_OK;
    case KETEN__FRAME__BODY_HELLO:
        return checkpointer_hello(b, c, rid, f->hello);
    case KETEN__FRAME__BODY_SUBMIT: {
        if (!c->hello) {
            return unexpected(b, c, rid, "send Hello first");
        }
        const ProtobufCBinaryData *env = &f->submit->envelope;
        return submit_apply(b, c, rid, env->data, env->len, &it->prep);
    }
    case KETEN__FRAME__BODY_RECEIPTS:
        return deliver_receipts(b, c, rid, f->receipts, &it->rprep);
    case KETEN__FRAME__BODY_NOTICE_ACK:
        return deliver_notice_ack(b, c, f->notice_ack);
    case KETEN__FRAME__BODY_DIRECTORY_REQUEST:
        return dirstate_serve(b, c, rid, f->directory_request->after_version);
    case KETEN__FRAME__BODY_COSIGNATURE:
        return checkpointer_cosign(b, c, rid, f->cosignature);
    case KETEN__FRAME__BODY_PROOF_REQUEST:
        return checkpointer_proof(b, c, rid, f->proof_request);
    default:
        return unexpected(b, c, rid, "not a frame a node sends");
    }
}

static bool sent_by(const item *it, const keten_directory *dir)
{
    const ProtobufCBinaryData *env = &it->frame->submit->envelope;
    keten_envelope_verified *v = NULL;
    bool ok = keten_envelope_verify(dir, env->data, env->len, &v) == KETEN_OK;
    ok = ok && v->sender != NULL && strcmp(v->sender->id, it->c->node) == 0;
    keten_envelope_verified_destroy(&v);
    keten_err_clear();
    return ok;
}

/* One batch of items, in a transaction nested in outer. */
static void run_batch(MDB_txn *outer, item *items, size_t n)
{
    broker *b = &S.b;
    const keten_directory *dir = broker_dir(b);
    /* The pool's part: the stateless checks. */
    for (size_t i = 0; i < n; i++) {
        const Keten__Frame *f = items[i].frame;
        if (f == NULL) {
            continue;
        }
        if (f->body_case == KETEN__FRAME__BODY_SUBMIT) {
            const ProtobufCBinaryData *env = &f->submit->envelope;
            submit_prepare(b, items[i].c, env->data, env->len, true, &items[i].prep);
        } else if (f->body_case == KETEN__FRAME__BODY_RECEIPTS) {
            deliver_receipt_prepare(b, items[i].c, f->receipts, &items[i].rprep);
        }
    }
    uint64_t size_before = log_size(outer);
    uint64_t msgs_before = msgs_held(outer);
    size_t valid_submits = 0;
    size_t errors_due = 0;
    for (size_t i = 0; i < n; i++) {
        const Keten__Frame *f = items[i].frame;
        if (f == NULL) {
            errors_due++;
        } else if (f->body_case == KETEN__FRAME__BODY_SUBMIT) {
            valid_submits += sent_by(&items[i], dir) ? 1 : 0;
        } else if (f->body_case != KETEN__FRAME__BODY_CREDIT
            && f->body_case != KETEN__FRAME__BODY_HELLO
            && f->body_case != KETEN__FRAME__BODY_RECEIPTS
            && f->body_case != KETEN__FRAME__BODY_NOTICE_ACK
            && f->body_case != KETEN__FRAME__BODY_DIRECTORY_REQUEST
            && f->body_case != KETEN__FRAME__BODY_COSIGNATURE
            && f->body_case != KETEN__FRAME__BODY_PROOF_REQUEST) {
            errors_due++;
        }
    }

    batch_begin(outer);
    keten_err e = KETEN_OK;
    for (size_t i = 0; i < n && e == KETEN_OK; i++) {
        e = dispatch(b, &items[i]);
    }
    size_t budget = BROKER_BATCH_BYTES_MAX;
    for (size_t i = 0; i < b->conns->n && e == KETEN_OK; i++) {
        e = deliver_notices(b, b->conns->v[i]);
        if (e == KETEN_OK) {
            e = deliver_pump(b, b->conns->v[i], &budget);
        }
    }
    if (e == KETEN_OK) {
        e = deliver_expire(b);
    }
    if (e == KETEN_OK) {
        e = checkpointer_commit(b);
    }
    if (e != KETEN_OK) {
        /* A store error, as a failed batch: nothing of it stays. */
        fprintf(stderr, "batch failed: %s: %s\n", keten_err_str(e), keten_err_detail());
        FUZZ_CHECK(e == KETEN_ERR_STORE_FULL || e == KETEN_ERR_NOMEM);
        store_abort(&b->txn);
        checkpointer_undo(b);
    } else {
        /* 1 */
        uint64_t size_after = log_size(b->txn);
        FUZZ_CHECK(size_after >= size_before);
        /* 2 */
        FUZZ_CHECK(msgs_held(b->txn) <= msgs_before + valid_submits);
        size_t acks = 0;
        size_t errors = 0;
        const outq *q = b->out;
        for (size_t i = 0; i < q->n; i++) {
            const outq_item *it = &q->v[i];
            FUZZ_CHECK(conns_find_rid(b->conns, it->rid, it->rid_len) != NULL);
            if (it->kind != OUTQ_READY) {
                continue;
            }
            FUZZ_CHECK(it->data != NULL && it->len <= KETEN_FRAME_MAX);
            Keten__Frame *f = NULL;
            FUZZ_MUST(
                KETEN_PB_UNPACK(keten__frame, it->data, it->len, KETEN_FRAME_MAX, "staged", &f));
            acks += f->body_case == KETEN__FRAME__BODY_SUBMIT_ACK ? 1 : 0;
            errors += f->body_case == KETEN__FRAME__BODY_ERROR ? 1 : 0;
            keten_pb_free((ProtobufCMessage **)(void *)&f);
        }
        FUZZ_CHECK(acks <= valid_submits);
        /* 3 */
        FUZZ_CHECK(errors >= errors_due);
        FUZZ_CHECK(mdb_txn_commit(b->txn) == 0);
        b->txn = NULL;
    }
    outq_clear(b->out);
    for (size_t i = 0; i < n; i++) {
        submit_prep_clear(&items[i].prep);
        deliver_receipt_prep_clear(&items[i].rprep);
        keten_pb_free((ProtobufCMessage **)(void *)&items[i].frame);
    }
    keten_err_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!S.ready) {
        setup();
    }
    broker *b = &S.b;
    MDB_txn *outer = NULL;
    FUZZ_CHECK(mdb_txn_begin(b->st->env, NULL, 0, &outer) == 0);
    item items[MAX_FRAMES];
    size_t n = 0;
    size_t at = 0;
    while (at < size && n < MAX_FRAMES) {
        uint8_t sel = data[at++];
        size_t len = 0;
        if (at + 2 <= size) {
            len = ((size_t)data[at] << 8) | data[at + 1];
            at += 2;
        } else {
            at = size;
        }
        if (len > size - at) {
            len = size - at;
        }
        if ((sel & 0x80) != 0 && n > 0) {
            run_batch(outer, items, n);
            n = 0;
            b->now += ((sel >> 2) & 7u) * STEP_MS;
        }
        item *it = &items[n++];
        memset(it, 0, sizeof *it);
        it->c = S.c[sel & 3];
        if (KETEN_PB_UNPACK(keten__frame, data + at, len, KETEN_FRAME_MAX, "frame", &it->frame)
            != KETEN_OK) {
            it->frame = NULL;
        }
        keten_err_clear();
        at += len;
    }
    if (n > 0) {
        run_batch(outer, items, n);
    }
    mdb_txn_abort(outer);
    reset();
    FUZZ_CHECK(log_size(NULL) == S.base_size);
    return 0;
}
