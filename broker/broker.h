/*
 * broker.h - the state of one running keten-broker, shared by its modules
 * (docs/wire.md).
 *
 * One thread (the main loop in server.c) owns all of it; the metrics thread
 * reads only the atomics in metrics.h and the LMDB store with its own read
 * transactions; the verifier threads (pool.h) only run the stateless checks
 * and signatures server.c hands them, reading the directory, the
 * configuration and b->now, which do not change while they run. A batch is
 * up to BROKER_BATCH_MAX frames: the main loop opens ONE write transaction
 * (b->txn), lets the modules process the frames, deliveries, expiry and
 * checkpoints in it; at its end the batch's commit checkpoint is signed and
 * every staged frame that carries a proof gets it, against the batch's
 * final tree size (checkpointer.h); then it commits (the durability point,
 * in the next loop round, while the pool verifies the next frames), and
 * only then sends the frames the modules staged in b->out. If the batch
 * fails, its transaction is aborted, the staged frames are dropped and the
 * connections' state (credit, cursors, what each was sent: cp_sent) and the
 * commit checkpoint are restored, so nothing is ever answered that is not
 * durably stored.
 */
#ifndef KETEN_BROKER_BROKER_H
#define KETEN_BROKER_BROKER_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directory.h"
#include "identity.h"
#include "keten.h"

#define BROKER_BATCH_MAX 256 /* frames per batch (one transaction) */
#define BROKER_BATCH_BYTES_MAX (64u << 20) /* bytes of frames per batch */
#define BROKER_EVENTS_MAX 1024 /* node events waiting for the next batch */
#define BROKER_CLOCK_WINDOW_DEFAULT_MS (5ull * 60ull * 1000ull)
#define BROKER_RETRY_HORIZON_DEFAULT_DAYS 7
#define BROKER_CHECKPOINT_RECORDS_DEFAULT 1000
#define BROKER_CHECKPOINT_MS_DEFAULT 1000
#define BROKER_SNDHWM 1000 /* frames queued per peer before libzmq drops */
#define BROKER_CREDIT_MAX 4096 /* credit a connection holds (deliveries it may take), at most */
/* Envelope bytes in flight per connection, at most (one delivery always
 * goes, however large); see deliver.h. */
#define BROKER_INFLIGHT_BYTES_MAX (16u << 20)

typedef struct broker_config {
    const char *home;
    const char *anchor_path;
    const char *directory_path;
    const char *listen;
    const char *metrics_addr; /* NULL: no metrics server */
    const char *passfile; /* NULL: KETEN_PASSPHRASE or the terminal */
    uint64_t map_size;
    uint64_t clock_window_ms;
    uint64_t retry_horizon_ms;
    uint64_t checkpoint_records;
    uint64_t checkpoint_ms;
    int log_level;
} broker_config;

typedef struct store store;
typedef struct dirstate dirstate;
typedef struct conns conns;
typedef struct outq outq;
typedef struct metrics metrics;
typedef struct checkpointer checkpointer;

/* A node event noticed outside a batch (ZAP refusal, connect, disconnect),
 * audited at the start of the next batch. */
typedef struct broker_event {
    Keten__Event event;
    char node[2 * KETEN_CURVE_KEY_BYTES + 1]; /* node id, or a key's hex for auth-failed */
    Keten__Reason reason; /* auth-failed of a connection cut off (broker_refuse_conn), else NONE */
} broker_event;

typedef struct broker {
    const broker_config *cfg;
    keten_identity *me;
    store *st;
    dirstate *dirs;
    conns *conns;
    outq *out;
    metrics *m;
    checkpointer *cp;
    bool insecure_key;

    /* The batch being processed. */
    MDB_txn *txn;
    uint64_t now; /* broker clock of this batch (ms since the epoch) */
    /* The time of the last audit record (audit.c): records never go back in
     * time, even when the wall clock does (NTP stepping it back). */
    uint64_t audit_time;
    bool audit_time_known;
    bool degraded; /* the store is full: submits are refused in this batch */
    bool stopping; /* the last batch before a stop: its checkpoint is stored */
    uint64_t batch_bytes; /* bytes the accepted submits of this batch will take */

    uint64_t notices_staged; /* notice frames staged (deliver.c), for a test hook */

    broker_event events[BROKER_EVENTS_MAX];
    size_t n_events;
    uint64_t events_dropped;
} broker;

/* Queue a node event for the next batch (dropped and counted when full). */
void broker_event_add(broker *b, Keten__Event event, const char *node);
/* The same for an auth-failed event with a reason (a connection cut off). */
void broker_event_refused(broker *b, const char *node, Keten__Reason reason);

/* The installed directory (never NULL once the broker runs). */
const keten_directory *broker_dir(const broker *b);

#endif
