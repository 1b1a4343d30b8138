/*
 * auditdb.h - the audit tables, opened read-only: a broker home (HOME/store)
 * or an export made by `keten-audit export` (docs/audit.md).
 *
 * What is read: the Merkle log ("audit-leaf", "audit-node", lib/merkle.h),
 * "directories" (version, 8 bytes big-endian -> SignedDirectory bytes) and
 * "checkpoints" (tree size, 8 bytes big-endian -> signed note with its
 * cosignatures). Nothing else of the broker's store is ever opened.
 *
 * Opening. --db names either a broker home (the environment is HOME/store)
 * or the environment folder itself (an export, or HOME/store). LMDB readers
 * register in the lock file so that a running writer does not reuse the pages
 * they read; so:
 *   - lock.mdb present and writable by us: MDB_RDONLY with the lock. This is
 *     the only safe way to read a store the broker is writing to, and it
 *     works while the broker runs (run as the broker's user).
 *   - lock.mdb absent (an export: it is written without one) or not
 *     writable (a read-only copy or backup): MDB_RDONLY | MDB_NOLOCK. Safe
 *     only while nobody writes the store; for a broker home a warning says so.
 * The whole command reads one snapshot: one read transaction, begun at open,
 * so every table is seen as of one commit.
 *
 * Export: the four audit tables of the snapshot are copied key by key (with
 * cursors, MDB_APPEND) into a fresh environment in AUDIT_DIR, which is
 * therefore compacted; it is written without a lock file and its files are
 * 0644 (auditors may read them). Queues, envelopes, msg_ids and notices are
 * never copied.
 *
 * Ownership: auditdb_open() returns a handle closed with auditdb_close().
 * Pointers into the map (leaves, notes) are valid until auditdb_close().
 * Thread safety: the read transaction belongs to the handle; several threads
 * may read memory it returned, but only one thread may call LMDB through it.
 * Errors: KETEN_ERR_NOT_FOUND (no store there), KETEN_ERR_WRONG_TYPE (a store
 * without an audit log, or a node store without checkpoints),
 * KETEN_ERR_MALFORMED (a node's checkpoint record without its note), KETEN_ERR_STORE (LMDB),
 * KETEN_ERR_EXISTS (a non-empty AUDIT_DIR), KETEN_ERR_IO, KETEN_ERR_NOMEM; each with a detail.
 */
#ifndef KETEN_AUDIT_AUDITDB_H
#define KETEN_AUDIT_AUDITDB_H

#include <limits.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "merkle.h"

#define AUDITDB_LOG_PREFIX "audit-"
#define AUDITDB_DIRECTORIES "directories"
#define AUDITDB_CHECKPOINTS "checkpoints"
#define AUDITDB_KEY_BYTES 8

typedef struct auditdb {
    MDB_env *env;
    MDB_txn *txn; /* the snapshot every read uses */
    keten_mlog *log;
    MDB_dbi leaf_dbi, node_dbi; /* the log's tables, for cursors */
    MDB_dbi directories, checkpoints;
    bool has_directories, has_checkpoints;
    bool is_export; /* none of the broker's other tables is present */
    bool nolock; /* opened without the lock file */
    uint64_t size; /* leaves in the snapshot */
    char path[PATH_MAX]; /* the environment's folder */
} auditdb;

/* Open db (a broker home or an environment folder) read-only. */
keten_err auditdb_open(const char *db, auditdb **out) KETEN_MUST_CHECK;
void auditdb_close(auditdb **self_p);

/* A short description of what was opened, e.g. "broker store /x/store" or
 * "export /y", into out. */
void auditdb_describe(const auditdb *self, char *out, size_t out_size);

/* Stored checkpoint with the largest tree size <= max_size; *found false if
 * none. *note points into the map. */
keten_err auditdb_checkpoint_last(const auditdb *self, uint64_t max_size, uint64_t *size,
    const char **note, size_t *len, bool *found) KETEN_MUST_CHECK;

/* The checkpoint notes a partner node kept, with the cosignatures it saw:
 * home is a node's home (or its store folder); its table "checkpoints"
 * (tree size, 8 bytes big-endian -> JSON record with the "note") is read
 * read-only the same way (lock file when writable). fn gets each note in
 * tree-size order; the note is valid during the call only. */
typedef keten_err (*auditdb_note_fn)(void *ctx, uint64_t size, const char *note, size_t len);
keten_err auditdb_node_notes(const char *home, auditdb_note_fn fn, void *ctx) KETEN_MUST_CHECK;

/* Copy the audit tables of the snapshot into a new environment in out_dir
 * (created 0755 if missing; an existing non-empty folder is refused).
 * *records and root receive the exported log's size and root, read back from
 * the new environment. On failure the files it made are removed. */
keten_err auditdb_export(
    const auditdb *self, const char *out_dir, uint64_t *records, keten_hash root) KETEN_MUST_CHECK;

#endif
