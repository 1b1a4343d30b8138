/*
 * store.h - the node's LMDB store (docs/wire.md, "What each side stores"):
 * one environment in HOME/store with these named databases:
 *
 *   outbox            msg_id -> (empty): the messages not yet proven
 *                     accepted, resent (the envelope is in `sent`)
 *   sent              msg_id -> SentRecord: state, the envelope while
 *                     queued (then its hash and header), the proven leaf,
 *                     refusal, per-recipient state, replies
 *   inbox             sequence (8 bytes big-endian) -> msg_id
 *   messages          msg_id -> ReceivedRecord: the envelope (once), the
 *                     opened signal, received_at, leaf index, handled
 *   seen              msg_id -> SeenRecord: expires_at and envelope hash,
 *                     replay memory until the message expires
 *   directories       version (8, big-endian) -> SignedDirectory bytes
 *   checkpoints       tree size (8, big-endian) -> CheckpointRecord: an
 *                     accepted witness checkpoint (note, root, accepted_at,
 *                     witnessed, kept as evidence), thinned out by the
 *                     retention rule of witness.h
 *   evidence          time (8, big-endian, ms) || counter (8, big-endian) ->
 *                     EvidenceRecord: a one-line reason and the broker's
 *                     frame that raised an alarm
 *   state             short text keys -> values: "alarms" (NodeAlarms),
 *                     fixed binary: "witnessed-size" (8, big-endian), the
 *                     directory version a checkpoint named (8 || 8), the
 *                     reference checkpoint: size (8, big-endian) || root
 *                     (32) || directory version (8, big-endian) ||
 *                     directory hash (32); "events-last" (8, big-endian):
 *                     the sequence number of the newest event ever
 *                     appended, so a number is never used twice;
 *                     "checkpoints-evidence" (8, big-endian): how many
 *                     stored checkpoints are marked as evidence
 *   events            sequence (8 bytes big-endian, from 1) -> EventRecord:
 *                     the node's event log for applications (events.h)
 *   tokens            SHA-256 of a token's text (32) -> TokenRecord: the
 *                     application tokens of the HTTP API (auth.h); a store
 *                     made before this table existed gains it, empty, when
 *                     it is opened
 *   idempotency       SHA-256 of (caller, Idempotency-Key) (32) ->
 *                     IdempotencyRecord: the message a send with that key
 *                     stored, written with its outbox and sent records
 *                     (idem.h); gained, empty, like tokens
 *
 * The records are protobuf messages (proto/keten.proto, "Node store"),
 * written and read through nodestore.h only, which refuses a damaged one.
 *
 * Every commit outside a batch is durable (LMDB's default fsync). Only the
 * daemon opens the store; the command line goes through the local API.
 *
 * Group commit (batches): keten_store_batch_begin() opens one parent write
 * transaction. Until keten_store_batch_end(), every keten_store_begin() (read
 * or write) returns a child transaction (LMDB nested transaction) of the
 * innermost transaction still open, so it sees everything the batch wrote so
 * far; keten_store_commit() of a child merges it into its parent without a
 * disk sync, keten_store_abort() of a write child discards only that child.
 * A child begun for reading is merged into its parent when it is "aborted"
 * (it wrote nothing itself, but a write child nested in it must not be lost).
 * keten_store_batch_end() commits the parent: the one durable sync for the
 * whole batch; nothing written in a batch is durable before it returned
 * KETEN_OK, so whatever the node tells the broker or an API client about
 * such a change is held back until then (link.h, api.h). Transactions begun
 * in a batch must end before the batch does (last begun, first ended), as
 * with any LMDB nested transaction.
 *
 * Full filesystem: the map is address space (KETEN_STORE_MAP_SIZE); the
 * file grows as pages are written, so what fills up is the filesystem under
 * HOME/store. A durable commit that fails with ENOSPC, EDQUOT, or EIO (LMDB
 * reports a short write as EIO) while less than KETEN_STORE_DISK_IO_FREE
 * bytes are free is KETEN_ERR_STORE_FULL, "the node's store at DIR is full:
 * free space on its filesystem", logged once, and the store counts as full
 * (keten_store_disk_full(), shown by status) until keten_store_disk_tick()
 * finds KETEN_STORE_DISK_FREE_OK bytes free on the filesystem (a small
 * commit that fits in pages the file can reuse does not end it). Nothing
 * is lost: a failed commit stores none of its batch, the deliveries in it
 * are not receipted (their credit is returned) and the broker sends them
 * again (its resend rule, docs/protocol.md).
 *
 * Ownership: keten_store_destroy() closes the environment. Values returned in
 * MDB_val point into the map and are valid until the transaction ends or its
 * next write.
 * Thread safety: one thread (the daemon's main loop).
 * Errors: KETEN_ERR_STORE (LMDB, detail names the call), KETEN_ERR_STORE_FULL
 * (map full, or the filesystem full: see above), KETEN_ERR_NOT_FOUND (no such key),
 * KETEN_ERR_MALFORMED (a key of the wrong size), KETEN_ERR_NOMEM.
 */
#ifndef KETEN_NODE_STORE_H
#define KETEN_NODE_STORE_H

#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "promhttp.h"

typedef enum keten_store_db {
    KETEN_DB_OUTBOX,
    KETEN_DB_SENT,
    KETEN_DB_INBOX,
    KETEN_DB_MESSAGES,
    KETEN_DB_SEEN,
    KETEN_DB_DIRECTORIES,
    KETEN_DB_CHECKPOINTS,
    KETEN_DB_EVIDENCE,
    KETEN_DB_STATE,
    KETEN_DB_EVENTS,
    KETEN_DB_TOKENS,
    KETEN_DB_IDEMPOTENCY,
    KETEN_DB__COUNT
} keten_store_db;

#define KETEN_STORE_MAP_SIZE (4ull << 30) /* 4 GiB of address space, sparse on disk */
#define KETEN_STORE_U64_KEY 8
#define KETEN_STORE_EVIDENCE_KEY (8 + 8)
#define KETEN_STORE_REFERENCE_BYTES (8 + 32 + 8 + 32)
#define KETEN_STORE_DISK_IO_FREE (64ull << 20) /* an I/O error below this much free: full */
#define KETEN_STORE_DISK_FREE_OK (8ull << 20) /* this much free again: no longer full */
#define KETEN_STORE_DISK_CHECK_MS 1000 /* how often a full store looks again */

typedef struct keten_store keten_store;

/* Open (creating) HOME/store. */
keten_err keten_store_open(const char *home, keten_store **out) KETEN_MUST_CHECK;
void keten_store_destroy(keten_store **self_p);

MDB_dbi keten_store_dbi(const keten_store *self, keten_store_db db);

keten_err keten_store_begin(keten_store *self, bool write, MDB_txn **txn) KETEN_MUST_CHECK;
/* A read-only transaction of what is durable: the last commit, never what an
 * open batch wrote so far (also when begun inside a batch), for what may be
 * told outside only once it is on disk (events.h). End it with
 * keten_store_abort() before the batch ends. */
keten_err keten_store_begin_durable(keten_store *self, MDB_txn **txn) KETEN_MUST_CHECK;
/* Commit (durable; in a batch: into the parent, durable with the batch); the
 * txn is gone afterwards, also on failure. */
keten_err keten_store_commit(MDB_txn **txn) KETEN_MUST_CHECK;
/* Abort; accepts NULL. */
void keten_store_abort(MDB_txn **txn);

/* Open a batch (see above). KETEN_ERR_INVALID when one is open already or a
 * transaction of this store is open. */
keten_err keten_store_batch_begin(keten_store *self) KETEN_MUST_CHECK;
/* Commit the batch durably (one sync) and close it; on failure nothing of it
 * is stored. Any transaction of the batch still open is aborted first (a
 * programming error, logged). Without an open batch: KETEN_OK. */
keten_err keten_store_batch_end(keten_store *self) KETEN_MUST_CHECK;
/* Durable commits made since the store was opened (batches count once). */
uint64_t keten_store_commits(const keten_store *self);
/* Observe the duration (microseconds) of every batch commit that wrote
 * something (one durable sync) into h; NULL: none. h must outlive the
 * store or be unset first. */
void keten_store_set_commit_histogram(keten_store *self, keten_promhttp_hist *h);

/* Called after every durable commit that succeeded (a commit outside a
 * batch, or keten_store_batch_end()), with ctx; NULL fn: none. One hook per
 * store (events.h sets it). The hook runs with no transaction of the batch
 * open; it may read the store, never write it. */
typedef void (*keten_store_commit_hook)(keten_store *self, void *ctx);
void keten_store_set_commit_hook(keten_store *self, keten_store_commit_hook fn, void *ctx);

/* Is the store's filesystem full (see "Full filesystem" above)? */
bool keten_store_disk_full(const keten_store *self);
/* While full, look at the free space again (at most every
 * KETEN_STORE_DISK_CHECK_MS; mono_ms: a monotonic clock). */
void keten_store_disk_tick(keten_store *self, uint64_t mono_ms);
/* {dir, full, free_bytes, full_since and detail while full}, for status;
 * new reference, NULL without memory. */
json_t *keten_store_disk_json(const keten_store *self);

keten_err keten_store_get(const keten_store *self, MDB_txn *txn, keten_store_db db, const void *key,
    size_t key_len, MDB_val *val) KETEN_MUST_CHECK;
keten_err keten_store_put(keten_store *self, MDB_txn *txn, keten_store_db db, const void *key,
    size_t key_len, const void *val, size_t val_len) KETEN_MUST_CHECK;
/* Deleting a missing key is not an error. */
keten_err keten_store_del(keten_store *self, MDB_txn *txn, keten_store_db db, const void *key,
    size_t key_len) KETEN_MUST_CHECK;

/* The table's name ("sent", "messages", ...), for messages. */
const char *keten_store_db_name(keten_store_db db);

/* Number of entries in db. */
keten_err keten_store_count(
    const keten_store *self, MDB_txn *txn, keten_store_db db, size_t *out) KETEN_MUST_CHECK;

/* The last (largest) key of a database with 8-byte big-endian keys;
 * KETEN_ERR_NOT_FOUND when empty. */
keten_err keten_store_last_u64(const keten_store *self, MDB_txn *txn, keten_store_db db,
    uint64_t *key_out, MDB_val *val) KETEN_MUST_CHECK;

void keten_store_u64_put(uint64_t v, uint8_t out[static KETEN_STORE_U64_KEY]);
uint64_t keten_store_u64_get(const uint8_t in[static KETEN_STORE_U64_KEY]);

#endif
