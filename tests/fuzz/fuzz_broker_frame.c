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
 * batch is applied by the broker's own functions, the ones server.c's round
 * calls (broker/batch.h): batch_prepare() on every frame (the stateless
 * checks: submit_prepare, deliver_receipt_prepare), then batch_begin() and
 * batch_apply() (the node events, each frame dispatched by
 * batch_dispatch(), then notices, deliveries, expiry and
 * checkpointer_commit: the checkpoint and every proof); only reading the
 * frames off the socket and sending what was staged are left out. Batches
 * are nested LMDB transactions inside one transaction that is aborted after
 * the input;
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
#include <lmdb.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
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
    fuzz_files f;
    broker_config cfg;
    broker b;
    conn *c[N_PARTNERS];
    conn base[N_PARTNERS];
    uint64_t base_size;
    uint64_t base_now;
    uint64_t base_audit_time;
    bool base_audit_time_known;
} S;

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
    if (S.f.dir[0] != '\0') {
        fuzz_remove_tree(S.f.dir);
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

static void setup(void)
{
    const fuzz_network *net = fuzz_net();
    keten_log_threshold = 0; /* quiet: errors are expected by the thousand */
    fuzz_files_make("broker", &S.f);
    atexit(cleanup);

    S.cfg = (broker_config) {
        .home = S.f.home,
        .anchor_path = S.f.anchor,
        .directory_path = S.f.directory[0],
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
    FUZZ_MUST(store_open(S.f.home, MAP_SIZE, &b->st));
    FUZZ_MUST(dirstate_open(b, S.f.anchor, S.f.directory[0]));
    FUZZ_MUST(checkpointer_open(b));
    FUZZ_MUST(store_room(b->st, b->now, NULL));

    /* Every partner connected, with an accepted Hello of a node new to the log. */
    for (size_t i = 0; i < N_PARTNERS; i++) {
        const keten_identity *id = net->nodes[i];
        FUZZ_MUST(conns_add(b->conns, (const uint8_t *)id->id, strlen(id->id), id->id,
            id->transport_pk, -1, b->now, &S.c[i]));
        Keten__Hello h = KETEN__HELLO__INIT;
        FUZZ_MUST(batch_begin(b, NULL, false));
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

static bool sent_by(const batch_item *it, const keten_directory *dir)
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
static void run_batch(MDB_txn *outer, batch_item *items, size_t n)
{
    broker *b = &S.b;
    const keten_directory *dir = broker_dir(b);
    /* The pool's part: the stateless checks. */
    for (size_t i = 0; i < n; i++) {
        batch_prepare(b, &items[i], true);
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

    FUZZ_MUST(batch_begin(b, outer, false));
    keten_err e = batch_apply(b, b->n_events, items, n);
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
        b->n_events = 0; /* audited (server.c drops them so after the commit) */
    }
    outq_clear(b->out);
    for (size_t i = 0; i < n; i++) {
        batch_item_clear(&items[i]);
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
    batch_item items[MAX_FRAMES];
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
        batch_item *it = &items[n++];
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
