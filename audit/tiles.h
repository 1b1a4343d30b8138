/*
 * tiles.h - the audit export as a C2SP tlog-tiles layout (docs/audit.md,
 * "The export, file by file"), read by a bounds-checked parser.
 *
 * An export folder holds:
 *   checkpoint               the latest stored checkpoint note (C2SP signed
 *                            note, with its cosignatures); absent when the
 *                            broker had signed none;
 *   tile/<L>/<N>[.p/<W>]     hash tiles, height 8: level 0 holds leaf hashes,
 *                            level L the hashes of complete subtrees of 256^L
 *                            leaves; partial tiles for the export's size and
 *                            for the checkpoint's size;
 *   tile/entries/<N>[.p/<W>] entry bundles: each record as a big-endian
 *                            uint16 length and its bytes; a record of 65535
 *                            bytes or more as 0xffff, a big-endian uint32
 *                            length and its bytes (keten's extension: only a
 *                            directory-installed record can be that large);
 *   keten/manifest           "keten-audit-export 1\nsize N\n": the format and
 *                            the number of records exported;
 *   keten/directories        every directory version the broker kept:
 *                            [version u64][length u32][SignedDirectory]...;
 *   keten/checkpoints        every stored checkpoint with its cosignatures:
 *                            [tree size u64][length u32][note]... (all
 *                            integers big-endian, keys strictly increasing).
 *
 * Reading. Files are read with read(2), never mapped; every file is opened
 * without following a symbolic link, must be a regular file under its size
 * cap, and every length and count is checked against the bytes left in the
 * file before it is used. A tile must be exactly its width times 32 bytes; a
 * bundle must hold exactly its width of entries and nothing after them. An
 * error names the file and, for a bundle, the record's index; its code is
 * KETEN_ERR_MALFORMED (a file that does not parse, or is missing),
 * KETEN_ERR_TOO_LARGE (over a cap), KETEN_ERR_INCONSISTENT (files that
 * contradict each other), KETEN_ERR_IO, KETEN_ERR_NOMEM, and
 * KETEN_ERR_WRONG_TYPE when the folder is no export of this format (an
 * export in the old LMDB format is named as such).
 *
 * Ownership: tiles_open() returns a handle closed with tiles_close(); notes
 * it returns are valid until then. A tiles_reader yields leaves valid until
 * its next call. Thread safety: one thread per handle (tiles keep a cache).
 */
#ifndef KETEN_AUDIT_TILES_H
#define KETEN_AUDIT_TILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"
#include "merkle.h"

#define TILES_HEIGHT 8
#define TILES_WIDTH 256u
#define TILES_TILE_BYTES (TILES_WIDTH * KETEN_HASH_BYTES)
#define TILES_SHORT_MAX 0xfffeu /* longest entry with a uint16 length */
#define TILES_LONG_MARK 0xffffu /* then a uint32 length follows */
#define TILES_FORMAT_LINE "keten-audit-export 1"
#define TILES_MANIFEST "keten/manifest"
#define TILES_DIRECTORIES "keten/directories"
#define TILES_CHECKPOINTS "keten/checkpoints"
#define TILES_CHECKPOINT "checkpoint"
#define TILES_MANIFEST_MAX 4096u
#define TILES_BUNDLE_MAX (1ull << 32) /* bytes of one entry bundle */
#define TILES_DIRECTORIES_MAX (1ull << 32) /* bytes of keten/directories */
#define TILES_CHECKPOINTS_MAX (1ull << 30) /* bytes of keten/checkpoints */
#define TILES_PATH_MAX 4096
#define TILES_MAX_SIZE (1ull << 48) /* records in one export */

typedef struct tiles tiles;

typedef struct tiles_note {
    uint64_t size; /* the tree size it is filed under */
    const char *note;
    size_t len;
} tiles_note;

/* Open the export in dir: reads the manifest, the checkpoints and the
 * checkpoint file (which must equal the last stored one). */
keten_err tiles_open(const char *dir, tiles **out) KETEN_MUST_CHECK;
void tiles_close(tiles **self_p);

/* Is dir an export of this format (keten/manifest present)? */
bool tiles_is_export(const char *dir);

uint64_t tiles_size(const tiles *self);
const tiles_note *tiles_notes(const tiles *self, size_t *n);

/* The hash of complete subtree (level, index) of the tree, level a multiple
 * of TILES_HEIGHT, read from its tile. */
keten_err tiles_node(tiles *self, unsigned level, uint64_t index, keten_hash out) KETEN_MUST_CHECK;

/* RFC 9162 root of the first size records, and an inclusion proof (path
 * needs KETEN_MERKLE_MAX_PROOF hashes), from the tiles alone. */
keten_err tiles_root(tiles *self, uint64_t size, keten_hash out) KETEN_MUST_CHECK;
keten_err tiles_inclusion_proof(tiles *self, uint64_t index, uint64_t size, keten_hash *path,
    size_t *path_len) KETEN_MUST_CHECK;

/* Each directory version in order: fn(ctx, version, bytes, len, index). */
typedef keten_err (*tiles_dir_fn)(
    void *ctx, uint64_t version, const uint8_t *bytes, size_t len, size_t index);
keten_err tiles_directories(const tiles *self, tiles_dir_fn fn, void *ctx) KETEN_MUST_CHECK;

/* The records in order, from the entry bundles. *end at the last one. */
typedef struct tiles_reader tiles_reader;
keten_err tiles_reader_new(const tiles *self, tiles_reader **out) KETEN_MUST_CHECK;
keten_err tiles_reader_next(tiles_reader *r, uint64_t *index, const uint8_t **leaf, size_t *len,
    bool *end) KETEN_MUST_CHECK;
void tiles_reader_destroy(tiles_reader **self_p);

/* ---- writing (keten-audit export) ---------------------------------------- */

/* The path under an export of tile (level, n) of width (TILES_WIDTH: full);
 * level < 0: the entry bundle. */
void tiles_path(char out[static TILES_PATH_MAX], int level, uint64_t n, unsigned width);

/* Write a new file rel under dir (made with its parent folders, 0755;
 * the file 0644, never over an existing one); fsync when sync. */
keten_err tiles_write_file(
    const char *dir, const char *rel, const void *data, size_t len, bool sync) KETEN_MUST_CHECK;

/* Framing of keten/directories and keten/checkpoints: append one
 * [key u64][length u32][bytes] item to a growing buffer. */
keten_err tiles_frame_append(uint8_t **buf, size_t *len, size_t *cap, uint64_t key,
    const uint8_t *data, size_t data_len) KETEN_MUST_CHECK;

#endif
