/*
 * store.h - the broker's one LMDB environment (HOME/store) and the layout of
 * its databases (docs/wire.md, "What each side stores"):
 *
 *   audit-leaf, audit-node  the Merkle audit log (lib/merkle.h)
 *   msgs         leaf (8 BE) -> message record (store_msg below, without the
 *                envelope); the leaf is the message's "submitted" record
 *   envelopes    leaf (8 BE) -> envelope bytes, deleted once every recipient
 *                has answered (receipted or refused) or the message expired
 *   queue        recipient id, NUL, leaf (8 BE) -> msg_id, so a queue is
 *                oldest first
 *   seen         msg_id -> envelope hash (32) | leaf (8 BE) | first seen (8 BE);
 *                also how a msg_id (in a receipt) finds its message
 *   seen-time    first seen (8 BE) | msg_id -> (empty), to forget msg_ids
 *                after the retry horizon
 *   expiry       expires_at (8 BE) | leaf (8 BE) -> (empty)
 *   notices      node id, NUL, leaf (8 BE) -> one byte, the notice's kind
 *                (enum outq_kind: OUTQ_RECEIPT_NOTICE for a "receipted" or
 *                "refused-by-recipient" record, OUTQ_EXPIRED_NOTICE for an
 *                "expired" one; the leaf is that record). The frame is
 *                made when it is sent, with a proof against the tree of
 *                that batch. Kept until the node confirms it (NoticeAck)
 *   directories  version (8 BE) -> SignedDirectory bytes
 *   checkpoints  tree size (8 BE) -> signed note with its cosignatures
 *
 * Messages and envelopes are keyed by their leaf index, which only grows:
 * new ones are appended at the end of their B-trees and old ones leave from
 * the front (queues are oldest first), so a message touches few pages and
 * few pages stay hot, however long the backlog; only `seen` is keyed by the
 * random msg_id.
 *
 * Durability: the environment is opened without MDB_NOSYNC/MDB_NOMETASYNC,
 * so mdb_txn_commit() returning 0 means the data is on disk.
 *
 * Memory: the map's pages are page cache. When the process has more than
 * STORE_TRIM_SLACK bytes of file pages mapped beyond what it had at open
 * (/proc/self/statm, looked at after commits at most every STORE_TRIM_MS,
 * and after every STORE_TRIM_RANDOM reads of `seen`, each of which maps its
 * page and, by the kernel's fault-around, up to 15 neighbours), the store
 * drops its mappings of the map (madvise MADV_DONTNEED on the read-only
 * map: nothing is lost, the next read maps the page again). So the
 * broker's resident memory is what it holds itself plus the pages in use,
 * not every page a backlog ever touched; a small working set is never
 * dropped (mapping pages again costs page faults).
 *
 * Why 32 MiB: every page fault maps up to 16 pages (the kernel's
 * fault-around), so the pages a busy broker reads again and again (the
 * B-trees' upper levels and right edges, the pages of `seen` it hits) take
 * far more than their own size in the count. With 8 MiB that count was
 * reached again within tens of milliseconds of every drop: the broker
 * dropped its map 25-40 times a second at its maximum rate and faulted the
 * same pages back in, 0.75-0.8 page faults per message. With 32 MiB it drops
 * it one to three times a second (as the store grows), 0.14-0.21 faults per message,
 * and about 19 % less CPU per message, for about 15 MiB more resident (clean
 * page cache the kernel can reclaim).
 *
 * Full store: store_room() says whether new submits may still be taken: the
 * pages in use (last page number + 1 - free pages) times the page size must
 * stay below map size - reserve, reserve = max(10% of the map, 8 MiB) but at
 * most half of the map. What stays in the reserve is for receipts,
 * deliveries and expiry, which free space. A commit that fails with
 * MDB_MAP_FULL is KETEN_ERR_STORE_FULL and the transaction is gone
 * (nothing partial is left: LMDB aborts it).
 *
 * Full filesystem: the map is only address space; the file data.mdb grows
 * as pages are first written, so the filesystem under HOME/store can fill
 * long before the map does. Three things make that a "store full" state
 * like a full map:
 *   - the room for new pages is read with the map use in store_room(): the
 *     free space of the filesystem (statvfs, for the broker's user) plus
 *     what the data file holds that LMDB reuses without growing it (its
 *     free pages; LMDB never shrinks the file, so after receipts delete
 *     payloads the space is there although the filesystem does not show
 *     it). A submit that would leave less than STORE_DISK_MARGIN of room
 *     is refused and the filesystem counts as full (store_fits()), as it
 *     does when the room is below the margin;
 *   - a commit that fails with ENOSPC, EDQUOT or EIO (LMDB reports a short
 *     write, which is how a full filesystem often shows, as EIO) while the
 *     filesystem has less than STORE_DISK_IO_FREE bytes free is
 *     KETEN_ERR_STORE_FULL ("the broker's filesystem is full"); with more
 *     free it is a real I/O error (KETEN_ERR_STORE) and is reported as one;
 *   - HOME/store/disk-reserve, a file of STORE_DISK_RESERVE bytes allocated
 *     (posix_fallocate) while there is room, is emptied the moment the
 *     filesystem is found full. The space it gives back is what the batch
 *     that refuses the submits (each refusal audited), receipts, deliveries
 *     and expiry write into, even when another program filled the disk.
 * The filesystem counts as full until the room is STORE_DISK_RESERVE +
 * 2 * STORE_DISK_MARGIN again (so it does not flap at the edge); then
 * submits are taken again, without a restart. The reserve is allocated
 * again whenever the filesystem itself has that much free.
 *
 * Threads: the environment is opened with MDB_NOTLS; the main thread is the
 * only writer; the metrics thread reads with its own read transactions.
 * Pointers returned into the map are valid until the transaction ends or
 * the next write in it.
 * Errors: KETEN_ERR_STORE (detail names the LMDB error and what was done),
 * KETEN_ERR_STORE_FULL, KETEN_ERR_NOMEM, KETEN_ERR_MALFORMED (a record that
 * does not decode: the store was altered).
 */
#ifndef KETEN_BROKER_STORE_H
#define KETEN_BROKER_STORE_H

#include <limits.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "merkle.h"

#define STORE_MAP_SIZE_DEFAULT (1ull << 30)
#define STORE_MAP_SIZE_MIN (16ull << 20)
#define STORE_RESERVE_MIN (8ull << 20)
#define STORE_LOG_PREFIX "audit-"
#define STORE_TRIM_MS 50
#define STORE_TRIM_RANDOM 128
#define STORE_TRIM_SLACK (32u << 20)
/* The leaves of msg_ids accepted lately, kept in memory (a power of 2). */
#define STORE_RECENT_SLOTS 16384
/* Full filesystem (see above). */
#define STORE_DISK_RESERVE (8ull << 20) /* the reserve file's size */
#define STORE_DISK_MARGIN (4ull << 20) /* left free by accepted submits */
#define STORE_DISK_IO_FREE (64ull << 20) /* an I/O error below this much free: full */
#define STORE_DISK_RESERVE_FILE "disk-reserve"
/* What a submit needs in the map besides its envelope (its records, queue
 * entries and indexes): store_fits() is asked for the envelope's length
 * plus this. */
#define STORE_SUBMIT_OVERHEAD_BYTES 8192
/* Test hook: "1" turns off the free-space checks before commits (store_fits()
 * and the margin in store_room()), so that a test can show a commit running
 * into a full filesystem; the reserve and the handling of a failed commit
 * stay. */
#define STORE_NO_DISK_CHECK_ENV "KETEN_BROKER_TEST_NO_DISK_CHECK"

/* Per-recipient state of a stored message. */
enum store_rcpt_state {
    STORE_QUEUED = 0, /* not yet handed out */
    STORE_DELIVERED = 1, /* delivered (audited once) */
    STORE_RECEIPTED = 2, /* the recipient's receipt came back: stored */
    STORE_REFUSED = 3, /* the recipient's receipt came back: refused */
};

/* A queue or notice key: node id, NUL, 8-byte big-endian sequence. */
#define STORE_NODE_KEY_MAX (KETEN_NAME_MAX + 1 + 8)

typedef struct store_rcpt {
    char id[KETEN_NAME_MAX + 1];
    uint8_t state; /* enum store_rcpt_state */
} store_rcpt;

/* The record in `msgs`. */
typedef struct store_msg {
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint64_t leaf; /* its "submitted" audit leaf: the key */
    uint64_t created_at; /* header created_at (ms) */
    uint64_t expires_at; /* header expires_at (ms) */
    uint8_t envelope_hash[KETEN_HASH_BYTES];
    char sender[KETEN_NAME_MAX + 1];
    size_t n_rcpt;
    store_rcpt rcpt[KETEN_MAX_RECIPIENTS];
} store_msg;

/* One slot of the table of recent leaves (store_msg_find_recent). */
typedef struct store_recent {
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint64_t leaf;
    bool used;
} store_recent;

typedef struct store {
    int lock_fd; /* HOME/store/broker.lock, flock()ed while the broker runs */
    MDB_env *env;
    MDB_dbi msgs, envelopes, queue, seen, seen_time, expiry, notices, directories, checkpoints;
    keten_merkle_log *log;
    uint64_t map_size;
    uint64_t reserve;
    unsigned page_size;
    atomic_bool full; /* refusing new submits (metrics read it) */
    atomic_bool no_room; /* no submit fits in the map (store_room(); metrics) */
    atomic_uint_fast64_t used; /* bytes in use at the last check */
    char dir[PATH_MAX]; /* HOME/store */
    int reserve_fd; /* HOME/store/disk-reserve (-1: could not be opened) */
    atomic_bool disk_full; /* the filesystem is full (part of `full`) */
    atomic_uint_fast64_t disk_free; /* bytes free on the filesystem, last look */
    atomic_uint_fast64_t disk_room; /* disk_free + what the data file can reuse */
    atomic_uint_fast64_t reserve_held; /* bytes allocated to the reserve file */
    bool refused_for_disk; /* the last store_fits() said no for the filesystem */
    bool disk_check_off; /* test hook STORE_NO_DISK_CHECK_ENV */
    uint64_t last_free_scan_ms;
    uint64_t free_pages; /* at the last scan of the free list */
    uint64_t disk_full_until_ms; /* ENOSPC seen: full until then, then retry */
    uint64_t last_trim_ms; /* store_trim() */
    void *map_addr; /* the map of data.mdb (NULL: not found, no trim) */
    size_t map_len;
    unsigned random_reads; /* of `seen` since the last look */
    uint64_t file_pages_base; /* file pages mapped at open (statm "shared") */
    store_recent *recent; /* STORE_RECENT_SLOTS slots */
    uint8_t recent_key[16]; /* the slots' hash key (random, per process) */
} store;

/* Open (creating HOME/store, 0700) with map_size bytes of map. Only one
 * broker may run on a store: a second one gets KETEN_ERR_EXISTS. */
keten_err store_open(const char *home, uint64_t map_size, store **out) KETEN_MUST_CHECK;
void store_close(store **self_p);

/* Transactions. store_commit() ends the transaction in every case. */
keten_err store_begin(store *self, bool write, MDB_txn **txn) KETEN_MUST_CHECK;
keten_err store_commit(store *self, MDB_txn **txn) KETEN_MUST_CHECK;
void store_abort(MDB_txn **txn);

/* An LMDB return code as a keten_err (MDB_MAP_FULL and ENOSPC are
 * KETEN_ERR_STORE_FULL), with "what" in the detail. */
keten_err store_lmdb_err(int rc, const char *what) KETEN_MUST_CHECK;

/* The same for a failure of self's environment: ENOSPC, EDQUOT and EIO
 * while its filesystem is (nearly) full are KETEN_ERR_STORE_FULL and put the
 * store in the full-filesystem state (the reserve is given back). */
keten_err store_env_err(store *self, int rc, const char *what) KETEN_MUST_CHECK;

/* What a submit refused for a full store is told: enlarge --map-size, or
 * free space on the broker's filesystem (a static string). */
const char *store_full_detail(const store *self);

/* Recompute whether the store is full (see above); now_ms limits how often
 * the free list is scanned. *full_out may be NULL. It also sets no_room when
 * the map, less its reserve, has less room than the smallest submit needs
 * (STORE_SUBMIT_OVERHEAD_BYTES and the smallest padded payload): every
 * submit is then refused by store_fits() although `full` is not set (the
 * use has not passed the reserve), and the metrics say the store is full. */
keten_err store_room(store *self, uint64_t now_ms, bool *full_out) KETEN_MUST_CHECK;

/* Would `extra` more bytes (on top of the use measured by store_room())
 * still leave the map's reserve free, and STORE_DISK_MARGIN free on the
 * filesystem? Not while the filesystem is full. */
bool store_fits(store *self, uint64_t extra);

/* A failed commit with KETEN_ERR_STORE_FULL: refuse submits from now on
 * (ENOSPC: for a while, then look again). */
void store_mark_full(store *self, uint64_t now_ms);

/* Drop the process's mappings of the map's pages (see "Memory" above), at
 * most every STORE_TRIM_MS (mono_ms: a monotonic clock). Safe while
 * transactions hold pointers into the map: the pages stay where they are in
 * the page cache and are mapped again on access. */
void store_trim(store *self, uint64_t mono_ms);

/* ---- keys ------------------------------------------------------------- */

void store_be64(uint64_t v, uint8_t out[static 8]);
uint64_t store_get_be64(const uint8_t in[static 8]);
/* node id, NUL, seq: returns the key length (0 if id is not a valid name). */
size_t store_node_key(const char *id, uint64_t seq, uint8_t out[static STORE_NODE_KEY_MAX]);

/* ---- messages --------------------------------------------------------- */

/* The record of the message whose "submitted" leaf is `leaf`; *found false
 * (and KETEN_OK) if there is none. */
keten_err store_msg_get(
    store *self, MDB_txn *txn, uint64_t leaf, store_msg *out, bool *found) KETEN_MUST_CHECK;
/* The record of msg_id (through `seen`); *found false if none is held. */
keten_err store_msg_find(store *self, MDB_txn *txn, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    store_msg *out, bool *found) KETEN_MUST_CHECK;
/* The same result as store_msg_find, for a msg_id accepted lately found
 * without reading `seen`: a receipt names its message by msg_id, and `seen`
 * is keyed by it, so each read of it maps a page at a random place of the
 * store (see Memory above). The leaf of every message accepted by this
 * process is kept in a table of STORE_RECENT_SLOTS slots in memory (a keyed
 * hash of the msg_id picks the slot; a newer msg_id replaces an older one).
 * It is a hint only: the record at that leaf is read and used only if it is
 * that msg_id's; otherwise (or with no hint) the answer is store_msg_find's. */
keten_err store_msg_find_recent(store *self, MDB_txn *txn,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], store_msg *out, bool *found) KETEN_MUST_CHECK;
/* Write m under m->leaf. */
keten_err store_msg_put(store *self, MDB_txn *txn, const store_msg *m) KETEN_MUST_CHECK;
/* Delete the record, its envelope and its expiry entry. */
keten_err store_msg_delete(store *self, MDB_txn *txn, const store_msg *m) KETEN_MUST_CHECK;

/* Envelope bytes of the message at leaf (pointer into the map);
 * KETEN_ERR_NOT_FOUND. */
keten_err store_envelope_get(
    store *self, MDB_txn *txn, uint64_t leaf, const uint8_t **env, size_t *len) KETEN_MUST_CHECK;

/* Store a newly accepted message (m->msg_id, m->leaf set): record, envelope,
 * queue entries, expiry and seen entries. */
keten_err store_msg_accept(store *self, MDB_txn *txn, const store_msg *m, const uint8_t *env,
    size_t env_len, uint64_t now_ms) KETEN_MUST_CHECK;

/* ---- seen ------------------------------------------------------------- */

typedef struct store_seen {
    uint8_t envelope_hash[KETEN_HASH_BYTES];
    uint64_t leaf;
    uint64_t first_seen;
} store_seen;

keten_err store_seen_get(store *self, MDB_txn *txn, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    store_seen *out, bool *found) KETEN_MUST_CHECK;

/* Forget msg_ids first seen before `before` (at most max of them);
 * *n_out how many were forgotten. */
keten_err store_seen_prune(
    store *self, MDB_txn *txn, uint64_t before, size_t max, size_t *n_out) KETEN_MUST_CHECK;

/* ---- queue and notices ------------------------------------------------ */

keten_err store_queue_delete(
    store *self, MDB_txn *txn, const char *node, uint64_t leaf) KETEN_MUST_CHECK;
/* Add a notice for node under sequence seq (a leaf index): its value
 * bytes (see `notices` above). */
keten_err store_notice_put(store *self, MDB_txn *txn, const char *node, uint64_t seq,
    const uint8_t *frame, size_t len) KETEN_MUST_CHECK;
/* Delete node's notice seq (confirmed by that node); *found false if there
 * was none. */
keten_err store_notice_delete(
    store *self, MDB_txn *txn, const char *node, uint64_t seq, bool *found) KETEN_MUST_CHECK;
/* The value bytes of node's notice seq (a pointer into the map, valid until
 * the next write in txn); KETEN_ERR_NOT_FOUND. */
keten_err store_notice_get(store *self, MDB_txn *txn, const char *node, uint64_t seq,
    const uint8_t **frame, size_t *len) KETEN_MUST_CHECK;

/* ---- backup ----------------------------------------------------------- */

/* What a backup holds (read back from the copy). */
typedef struct store_backup_info {
    uint64_t bytes; /* size of the copy's data.mdb */
    uint64_t records; /* audit records (the log's tree size) */
    uint8_t root[KETEN_HASH_BYTES]; /* the log's root hash at that size */
    uint64_t messages; /* messages held (not yet receipted by every recipient) */
    uint64_t envelopes; /* envelopes held */
    uint64_t directories; /* directory versions */
    uint64_t checkpoints; /* signed checkpoints */
} store_backup_info;

/* A consistent, compacted copy of HOME/store into the directory out_dir
 * (created 0700; an existing one must be empty: else KETEN_ERR_EXISTS),
 * made from one read transaction (mdb_env_copy2 with MDB_CP_COMPACT), so it
 * may run while the broker writes; the copy is fsynced, then opened
 * read-only and counted into *info. The broker's key file is not part of
 * it. Errors: KETEN_ERR_NOT_FOUND (no store in HOME), KETEN_ERR_EXISTS,
 * KETEN_ERR_IO, KETEN_ERR_STORE, KETEN_ERR_STORE_FULL (disk full). */
keten_err store_backup(
    const char *home, const char *out_dir, store_backup_info *info) KETEN_MUST_CHECK;

/* ---- directories and checkpoints ------------------------------------- */

keten_err store_directory_put(
    store *self, MDB_txn *txn, uint64_t version, const uint8_t *buf, size_t len) KETEN_MUST_CHECK;
keten_err store_checkpoint_put(
    store *self, MDB_txn *txn, uint64_t size, const char *note, size_t len) KETEN_MUST_CHECK;
/* Note of tree size `size` (pointer into the map); KETEN_ERR_NOT_FOUND. */
keten_err store_checkpoint_get(
    store *self, MDB_txn *txn, uint64_t size, const char **note, size_t *len) KETEN_MUST_CHECK;
/* The latest checkpoint; *found false if none. */
keten_err store_checkpoint_last(store *self, MDB_txn *txn, uint64_t *size, const char **note,
    size_t *len, bool *found) KETEN_MUST_CHECK;

#endif
