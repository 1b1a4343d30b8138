/*
 * fixture_broker.h - a keten-broker without its main loop, for the unit
 * tests of broker/'s modules (tests/unit/test_broker_*.c), built on a test
 * network (fixture.h).
 *
 * Real: the broker's identity (the fixture's, with its log key), its LMDB
 * store in the fixture's temporary directory (store_open), the directory
 * installed from the fixture's files by dirstate_open (stored and audited
 * as at start), the checkpointer (checkpointer_open), the connection table,
 * the outgoing queue and the metrics counters (metrics_new; no HTTP
 * server). Set up by hand, as server.c does it around the modules: the
 * configuration (cmd_run's defaults, but witness checkpoints by record
 * count only), the batch clock b->now (the test's to move), connections
 * (conns_add with the node's transport key, as for a node's first frame)
 * and the batch: fbroker_begin() opens the write transaction,
 * fbroker_end() makes the batch's checkpoint and proofs
 * (checkpointer_commit) and commits, fbroker_abort() undoes it as a failed
 * batch does. Nothing is sent: tests read the staged frames from b->out.
 *
 * Failures abort the test (cmocka). fbroker_destroy() closes everything but
 * the fixture and the identity it borrowed.
 */
#ifndef KETEN_TEST_FIXTURE_BROKER_H
#define KETEN_TEST_FIXTURE_BROKER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "conns.h"
#include "fixture.h"

#define FBROKER_MAP_SIZE (256ull << 20)

typedef struct fbroker {
    fixture *fx; /* borrowed */
    broker_config cfg;
    broker b;
    char home[PATH_MAX];
    char anchor[PATH_MAX];
    char directory[PATH_MAX];
} fbroker;

/* A broker whose identity is the fixture's node broker_id. */
fbroker *fbroker_new(fixture *fx, const char *broker_id);
void fbroker_destroy(fbroker **self_p);

/* A connection of node (routing id = its id), admitted with its transport
 * key, without a Hello yet. */
conn *fbroker_conn(fbroker *self, const char *node);

/* The same with an accepted Hello of tree size 0 (a node new to the log),
 * in its own batch; the checkpoint frame it gets is left in b->out. */
conn *fbroker_conn_hello(fbroker *self, const char *node);

/* One batch (see above). */
void fbroker_begin(fbroker *self);
void fbroker_end(fbroker *self);
void fbroker_abort(fbroker *self);

/* Records in the audit log (read in the open batch, if any). */
uint64_t fbroker_log_size(fbroker *self);
/* Audit record at leaf (keten_pb_free). */
Keten__AuditRecord *fbroker_record(fbroker *self, uint64_t leaf);

/* The staged frame i of b->out, parsed (keten_pb_free); it must be a ready
 * frame (not an unproven slot). */
Keten__Frame *fbroker_frame(fbroker *self, size_t i);
/* Index of the first staged ready frame at or after `from` for node with
 * body case `body`, or SIZE_MAX. */
size_t fbroker_find(fbroker *self, size_t from, const char *node, int body);

#endif
