/*
 * auditdb.h - the audit log as keten-audit's reading commands see it: an
 * export in the tlog-tiles layout (tiles.h, docs/audit.md), read through
 * the bounds-checked reader alone.
 *
 * Opening. --db names either
 *   - an export made by `keten-audit export` (it holds keten/manifest): read
 *     as it is;
 *   - a broker home (HOME/store/data.mdb): the operator's own store. It is
 *     first exported (brokerstore.h: one read-only snapshot, with LMDB's
 *     lock) into a new private temporary folder, which is then read exactly
 *     as an auditor's export is, and removed at auditdb_close(). So every
 *     check runs on the same format, through the same reader;
 *   - anything else is refused: a folder with a bare data.mdb is an export
 *     in the old LMDB format (or a store folder), which keten-audit never
 *     maps: "ask for a new export with keten-audit export".
 * keten-audit maps no LMDB file but a broker home's store in export
 * (brokerstore.c).
 *
 * Ownership: auditdb_open() returns a handle closed with auditdb_close().
 * Notes returned are valid until auditdb_close(). Thread safety: one thread
 * uses the handle (the tiles reader keeps a cache).
 * Errors: KETEN_ERR_NOT_FOUND (nothing there), KETEN_ERR_WRONG_TYPE (an old
 * export, a store folder), the reader's errors (tiles.h: KETEN_ERR_MALFORMED,
 * KETEN_ERR_TOO_LARGE, KETEN_ERR_INCONSISTENT name the file), the export's
 * (brokerstore.h), KETEN_ERR_IO, KETEN_ERR_NOMEM; each with a detail.
 */
#ifndef KETEN_AUDIT_AUDITDB_H
#define KETEN_AUDIT_AUDITDB_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "merkle.h"
#include "tiles.h"

typedef struct auditdb {
    tiles *t; /* the export read */
    uint64_t size; /* records exported */
    bool is_export; /* given an export (false: a broker home, exported first) */
    bool nolock; /* a broker home whose store was read without LMDB's lock */
    char path[PATH_MAX]; /* what --db named */
    char tmp[PATH_MAX]; /* the temporary export of a broker home, or "" */
} auditdb;

/* Open db (an export or a broker home) read-only. */
keten_err auditdb_open(const char *db, auditdb **out) KETEN_MUST_CHECK;
void auditdb_close(auditdb **self_p);

/* Open an LMDB environment folder env (data.mdb) that the caller made (unit
 * tests, benchmarks): exported into a temporary folder and read as above. */
keten_err auditdb_open_env(const char *env, auditdb **out) KETEN_MUST_CHECK;

/* A short description of what was opened, e.g. "audit export /y", into out. */
void auditdb_describe(const auditdb *self, char *out, size_t out_size);

/* The stored checkpoints in tree-size order. */
const tiles_note *auditdb_notes(const auditdb *self, size_t *n);

/* Stored checkpoint with the largest tree size <= max_size; *found false if
 * none. */
keten_err auditdb_checkpoint_last(const auditdb *self, uint64_t max_size, uint64_t *size,
    const char **note, size_t *len, bool *found) KETEN_MUST_CHECK;

#endif
