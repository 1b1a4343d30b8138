/*
 * fixture_broker.c - a keten-broker without its main loop (see
 * fixture_broker.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpointer.h"
#include "dirstate.h"
#include "fixture_broker.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "store.h"
#include "util.h"

#define FBROKER_RETRY_HORIZON_MS (BROKER_RETRY_HORIZON_DEFAULT_DAYS * KETEN_MS_PER_DAY)
/* Witness checkpoints by record count only: never by time in a test. */
#define FBROKER_CHECKPOINT_MS (1000ull * KETEN_MS_PER_DAY)

#define CHECK(call, what)                                                                          \
    do {                                                                                           \
        keten_err check_e_ = (call);                                                               \
        if (check_e_ != KETEN_OK) {                                                                \
            fail_msg("fixture_broker: %s: %s: %s", (what), keten_err_str(check_e_),               \
                keten_err_detail());                                                               \
        }                                                                                          \
    } while (0)

fbroker *fbroker_new(fixture *fx, const char *broker_id)
{
    fbroker *self = calloc(1, sizeof *self);
    assert_non_null(self);
    self->fx = fx;
    fixture_path(fx, "broker-home", self->home);
    fixture_path(fx, "network.pub", self->anchor);
    fixture_path(fx, "directory", self->directory);
    if (mkdir(self->home, 0700) != 0) {
        fail_msg("fixture_broker: cannot make %s", self->home);
    }
    self->cfg = (broker_config) {
        .home = self->home,
        .anchor_path = self->anchor,
        .directory_path = self->directory,
        .listen = "inproc://not-listening",
        .map_size = FBROKER_MAP_SIZE,
        .clock_window_ms = BROKER_CLOCK_WINDOW_DEFAULT_MS,
        .retry_horizon_ms = FBROKER_RETRY_HORIZON_MS,
        .checkpoint_records = BROKER_CHECKPOINT_RECORDS_DEFAULT,
        .checkpoint_ms = FBROKER_CHECKPOINT_MS,
        .log_level = KETEN_LOG_WARNING,
    };
    broker *b = &self->b;
    b->cfg = &self->cfg;
    b->me = fixture_node(fx, broker_id);
    if (b->me == NULL || !b->me->has_log_key) {
        fail_msg("fixture_broker: no broker identity '%s' in the fixture", broker_id);
    }
    b->m = metrics_new();
    b->conns = conns_new();
    b->out = outq_new();
    assert_non_null(b->m);
    assert_non_null(b->conns);
    assert_non_null(b->out);
    b->now = keten_now_ms();
    CHECK(store_open(self->home, self->cfg.map_size, &b->st), "opening the store");
    CHECK(dirstate_open(b, self->anchor, self->directory), "installing the directory");
    CHECK(checkpointer_open(b), "opening the checkpointer");
    CHECK(store_room(b->st, b->now, NULL), "measuring the store");
    return self;
}

void fbroker_destroy(fbroker **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    fbroker *self = *self_p;
    broker *b = &self->b;
    store_abort(&b->txn);
    metrics_destroy(&b->m);
    checkpointer_destroy(&b->cp);
    dirstate_destroy(&b->dirs);
    store_close(&b->st);
    outq_destroy(&b->out);
    conns_destroy(&b->conns);
    free(self);
    *self_p = NULL;
}

conn *fbroker_conn(fbroker *self, const char *node)
{
    keten_identity *id = fixture_node(self->fx, node);
    if (id == NULL) {
        fail_msg("fixture_broker: no node '%s' in the fixture", node);
    }
    conn *c = NULL;
    CHECK(conns_add(self->b.conns, (const uint8_t *)node, strlen(node), node, id->transport_pk, -1,
              self->b.now, &c),
        node);
    return c;
}

conn *fbroker_conn_hello(fbroker *self, const char *node)
{
    conn *c = fbroker_conn(self, node);
    Keten__Hello h = KETEN__HELLO__INIT;
    fbroker_begin(self);
    CHECK(checkpointer_hello(&self->b, c, 1, &h), "Hello");
    fbroker_end(self);
    assert_true(c->hello);
    outq_clear(self->b.out);
    return c;
}

void fbroker_begin(fbroker *self)
{
    broker *b = &self->b;
    assert_null(b->txn);
    b->batch_bytes = 0;
    b->degraded = atomic_load(&b->st->full);
    checkpointer_begin(b);
    CHECK(store_begin(b->st, true, &b->txn), "starting a batch");
}

void fbroker_end(fbroker *self)
{
    broker *b = &self->b;
    CHECK(checkpointer_commit(b), "the batch's checkpoint and proofs");
    CHECK(store_commit(b->st, &b->txn), "committing the batch");
}

void fbroker_abort(fbroker *self)
{
    broker *b = &self->b;
    store_abort(&b->txn);
    outq_clear(b->out);
    checkpointer_undo(b);
}

uint64_t fbroker_log_size(fbroker *self)
{
    broker *b = &self->b;
    MDB_txn *txn = b->txn;
    if (txn == NULL) {
        CHECK(store_begin(b->st, false, &txn), "reading the log");
    }
    uint64_t size = 0;
    CHECK(keten_merkle_log_size(b->st->log, txn, &size), "the log's size");
    if (txn != b->txn) {
        store_abort(&txn);
    }
    return size;
}

Keten__AuditRecord *fbroker_record(fbroker *self, uint64_t leaf)
{
    broker *b = &self->b;
    MDB_txn *txn = b->txn;
    if (txn == NULL) {
        CHECK(store_begin(b->st, false, &txn), "reading the log");
    }
    const uint8_t *bytes = NULL;
    size_t len = 0;
    Keten__AuditRecord *rec = NULL;
    CHECK(keten_merkle_log_leaf(b->st->log, txn, leaf, &bytes, &len), "reading a record");
    CHECK(keten_pb_unpack(&keten__audit_record__descriptor, bytes, len, len, "audit record",
              (ProtobufCMessage **)(void *)&rec),
        "parsing a record");
    if (txn != b->txn) {
        store_abort(&txn);
    }
    return rec;
}

Keten__Frame *fbroker_frame(fbroker *self, size_t i)
{
    const outq *q = self->b.out;
    assert_true(i < q->n);
    const outq_item *it = &q->v[i];
    if (it->kind != OUTQ_READY || it->data == NULL) {
        fail_msg("fixture_broker: staged item %zu is an unproven slot (kind %d)", i, (int)it->kind);
    }
    Keten__Frame *f = NULL;
    CHECK(KETEN_PB_UNPACK(keten__frame, it->data, it->len, KETEN_FRAME_MAX, "staged frame", &f),
        "parsing a staged frame");
    return f;
}

size_t fbroker_find(fbroker *self, size_t from, const char *node, int body)
{
    const outq *q = self->b.out;
    size_t n = strlen(node);
    for (size_t i = from; i < q->n; i++) {
        const outq_item *it = &q->v[i];
        if (it->kind != OUTQ_READY || it->rid_len != n || memcmp(it->rid, node, n) != 0) {
            continue;
        }
        Keten__Frame *f = fbroker_frame(self, i);
        bool hit = (int)f->body_case == body;
        keten_pb_free((ProtobufCMessage **)(void *)&f);
        if (hit) {
            return i;
        }
    }
    return SIZE_MAX;
}
