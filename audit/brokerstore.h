/*
 * brokerstore.h - keten-audit export: the audit tables of a broker's own
 * LMDB store written as a tlog-tiles export (tiles.h, docs/audit.md). This is
 * the only code in keten-audit that opens an LMDB file, and only the
 * operator's store of a broker home, read-only.
 *
 * What is read: the Merkle log ("audit-leaf", "audit-node", lib/merkle.h),
 * "directories" (version -> SignedDirectory) and "checkpoints" (tree size ->
 * signed note with its cosignatures), all in one read transaction, so the
 * export is one snapshot. Queues, envelopes, msg_ids and notices are never
 * read. The store is opened MDB_RDONLY with LMDB's lock when lock.mdb is
 * writable by us (the only safe way while the broker runs: run as its user),
 * else with MDB_NOLOCK (a stopped broker, a copy or a backup). nolock says
 * that lock.mdb is there but not writable (a warning: a broker may be
 * writing); a copy or backup without lock.mdb is read without a warning.
 *
 * What is written, into out_dir (new or empty; made 0755): the records'
 * entry bundles, the hash tiles made of the hashes the broker stored
 * ("audit-node", levels 0, 8, 16...; never recomputed, so that a verifier
 * compares the broker's tree with its records), partial tiles and bundles
 * for the export's size and for the latest checkpoint's size, the
 * checkpoint, keten/directories, keten/checkpoints and, last, keten/manifest.
 * Files are 0644. The export is read back with the tiles reader and must give
 * the snapshot's size and root.
 *
 * Errors: KETEN_ERR_NOT_FOUND (no broker home there), KETEN_ERR_WRONG_TYPE
 * (a store without an audit log, a bare store folder where only a home is
 * accepted, an export given as a store, a log whose subtree hashes are in an
 * earlier version's layout: lib/merkle.h), KETEN_ERR_INCONSISTENT (the store's log or tree is
 * damaged: a missing record or hash, hashes beyond the log), KETEN_ERR_TOO_LARGE, KETEN_ERR_EXISTS
 * (a non-empty out_dir), KETEN_ERR_STORE (LMDB), KETEN_ERR_IO, KETEN_ERR_NOMEM. On failure the
 * files made are removed. Thread safety: one call at a time.
 */
#ifndef KETEN_AUDIT_BROKERSTORE_H
#define KETEN_AUDIT_BROKERSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "merkle.h"

typedef struct brokerstore_result {
    uint64_t records;
    keten_hash root;
    bool nolock; /* read without LMDB's lock although lock.mdb is there */
} brokerstore_result;

/* What home may be: a broker home (home/store/data.mdb), a bare store
 * folder (home/data.mdb: the operator's backup made by keten-broker backup,
 * HOME/store itself, an old export the operator made; tests). */
#define BROKERSTORE_HOME 1u
#define BROKERSTORE_BARE 2u

/* Export the store at home (as accept allows) into out_dir. sync: fsync
 * every file (an export to hand over; not for a temporary one). */
keten_err brokerstore_export(const char *home, unsigned accept, const char *out_dir, bool sync,
    brokerstore_result *res) KETEN_MUST_CHECK;

/* Remove a folder tree that keten-audit made (an export it failed to finish,
 * a temporary export); symbolic links are removed, never followed.
 * Async-signal-safe (openat, getdents64, unlinkat, close only): keten-audit
 * calls it from its handler of fatal signals. */
void brokerstore_remove_tree(const char *dir);

#endif
