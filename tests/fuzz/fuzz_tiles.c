/*
 * fuzz_tiles.c - the reader of keten-audit's export (audit/tiles.c: the
 * tlog-tiles layout, docs/audit.md) on folders made from the input.
 *
 * Two shapes of input, by the first byte:
 *   even: "records" - the rest is records ([u16 length][bytes]...) after a
 *         4-byte tamper selector. The harness writes a valid export of them
 *         (entry bundles, level-0 and level-1 tiles, partial tiles, a
 *         directory, a checkpoint, the manifest) with the writer's helpers,
 *         reads it back, then flips one byte of one file (the selector picks
 *         the file, the offset and the bit) and reads it again.
 *   odd:  "files" - the rest is [u8 file][u16 length][bytes]... written as
 *         files of an export (manifest, checkpoints, directories,
 *         checkpoint, bundles and tiles of several widths), then read.
 *
 * Reading = tiles_open, every record through a tiles_reader, every
 * directory, and the "verification": each record's leaf hash equals its
 * level-0 tile hash, each complete 256-record subtree equals its level-1
 * tile hash, the tiles' root equals the root of the records.
 *
 * Invariants:
 *   1. no crash, no read past a buffer, whatever the files hold;
 *   2. the export the harness writes reads back: the same records, the
 *      directory and checkpoint, and the verification passes;
 *   3. after any one byte of it is flipped, reading either fails with an
 *      error, or the verification fails, or what is read differs (records,
 *      directories or checkpoints): a tampered byte never goes unseen.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "merkle.h"
#include "tiles.h"

#define MAX_RECORDS 600
#define MAX_FILES 32

typedef struct view {
    keten_err e; /* KETEN_OK: everything read */
    bool verified;
    uint64_t n;
    uint8_t *blob; /* records, directories and notes, framed, for comparison */
    size_t len, cap;
} view;

static void blob_add(view *v, const void *p, size_t n)
{
    if (v->len + n + 8 > v->cap) {
        size_t c = v->cap == 0 ? 4096 : v->cap;
        while (c < v->len + n + 8) {
            c *= 2;
        }
        uint8_t *nb = realloc(v->blob, c);
        FUZZ_CHECK(nb != NULL);
        v->blob = nb;
        v->cap = c;
    }
    uint64_t len = n;
    memcpy(v->blob + v->len, &len, 8);
    if (n > 0) {
        memcpy(v->blob + v->len + 8, p, n);
    }
    v->len += n + 8;
}

static keten_err add_dir(void *ctx, uint64_t version, const uint8_t *bytes, size_t len, size_t i)
{
    (void)i;
    view *v = ctx;
    blob_add(v, &version, sizeof version);
    blob_add(v, bytes, len);
    return KETEN_OK;
}

static void read_export(const char *dir, view *v)
{
    memset(v, 0, sizeof *v);
    tiles *t = NULL;
    tiles_reader *r = NULL;
    keten_hash *leaves = NULL;
    if ((v->e = tiles_open(dir, &t)) != KETEN_OK) {
        return;
    }
    v->n = tiles_size(t);
    size_t n_notes = 0;
    const tiles_note *notes = tiles_notes(t, &n_notes);
    for (size_t i = 0; i < n_notes; i++) {
        blob_add(v, &notes[i].size, sizeof notes[i].size);
        blob_add(v, notes[i].note, notes[i].len);
    }
    if ((v->e = tiles_directories(t, add_dir, v)) != KETEN_OK
        || (v->e = tiles_reader_new(t, &r)) != KETEN_OK) {
        goto out;
    }
    size_t cap = 0;
    for (uint64_t i = 0;; i++) {
        uint64_t at = 0;
        const uint8_t *leaf = NULL;
        size_t len = 0;
        bool end = false;
        if ((v->e = tiles_reader_next(r, &at, &leaf, &len, &end)) != KETEN_OK) {
            goto out;
        }
        if (end) {
            FUZZ_CHECK(i == v->n);
            break;
        }
        FUZZ_CHECK(at == i && i < v->n);
        if (i == cap) {
            cap = cap == 0 ? 64 : cap * 2;
            keten_hash *nl = realloc(leaves, cap * sizeof *leaves);
            FUZZ_CHECK(nl != NULL);
            leaves = nl;
        }
        blob_add(v, leaf, len);
        keten_merkle_leaf_hash(leaf, len, leaves[i]);
    }
    /* The verification: tiles against the records. */
    v->verified = true;
    for (uint64_t i = 0; i < v->n && v->verified; i++) {
        keten_hash h;
        if ((v->e = tiles_node(t, 0, i, h)) != KETEN_OK) {
            goto out;
        }
        v->verified = memcmp(h, leaves[i], KETEN_HASH_BYTES) == 0;
    }
    for (uint64_t i = 0; i < v->n / TILES_WIDTH && v->verified; i++) {
        keten_hash h, want;
        if ((v->e = tiles_node(t, TILES_HEIGHT, i, h)) != KETEN_OK) {
            goto out;
        }
        keten_merkle_root((const keten_hash *)(leaves + i * TILES_WIDTH), TILES_WIDTH, want);
        v->verified = memcmp(h, want, KETEN_HASH_BYTES) == 0;
    }
    keten_hash root, want;
    if ((v->e = tiles_root(t, v->n, root)) != KETEN_OK) {
        goto out;
    }
    keten_merkle_root((const keten_hash *)leaves, v->n, want);
    v->verified = v->verified && memcmp(root, want, KETEN_HASH_BYTES) == 0;
    if (v->verified && v->n > 0) {
        /* An inclusion proof cut from the tiles verifies against the root. */
        keten_hash path[KETEN_MERKLE_MAX_PROOF];
        size_t plen = 0;
        uint64_t idx = v->n / 2;
        FUZZ_MUST(tiles_inclusion_proof(t, idx, v->n, path, &plen));
        FUZZ_CHECK(keten_merkle_verify_inclusion(
                       leaves[idx], idx, v->n, (const keten_hash *)path, plen, root)
            == KETEN_OK);
    }
out:
    free(leaves);
    tiles_reader_destroy(&r);
    tiles_close(&t);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(p);
    return 0;
}

static void rm_tree(const char *dir)
{
    (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- records: a valid export, then one byte flipped ----------------------- */

typedef struct out_files {
    char rel[MAX_FILES][TILES_PATH_MAX];
    size_t n;
} out_files;

static void put(const char *dir, out_files *of, const char *rel, const void *data, size_t len)
{
    FUZZ_MUST(tiles_write_file(dir, rel, data, len, false));
    if (of->n < MAX_FILES) {
        snprintf(of->rel[of->n++], TILES_PATH_MAX, "%s", rel);
    }
}

static void put_tile(const char *dir, out_files *of, int level, uint64_t idx, const uint8_t *data,
    size_t len, unsigned width)
{
    char rel[TILES_PATH_MAX];
    tiles_path(rel, level, idx, width);
    put(dir, of, rel, data, len);
}

static void records_mode(const uint8_t *data, size_t size)
{
    if (size < 4) {
        return;
    }
    uint32_t sel
        = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
    data += 4;
    size -= 4;
    const uint8_t *rec[MAX_RECORDS];
    size_t rlen[MAX_RECORDS];
    size_t n = 0;
    while (n < MAX_RECORDS && size >= 2) {
        size_t l = (size_t)data[0] << 8 | data[1];
        data += 2;
        size -= 2;
        if (l > size) {
            l = size;
        }
        if (l > TILES_SHORT_MAX) {
            l = TILES_SHORT_MAX;
        }
        rec[n] = data;
        rlen[n] = l;
        n++;
        data += l;
        size -= l;
    }
    char dir[] = "/tmp/fuzz-tiles.XXXXXX";
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    out_files of = { .n = 0 };
    /* Entry bundles and level-0 hashes. */
    static uint8_t bundle[MAX_RECORDS * (2 + 65536)];
    static keten_hash hashes[MAX_RECORDS];
    size_t blen = 0;
    for (size_t i = 0; i < n; i++) {
        bundle[blen++] = (uint8_t)(rlen[i] >> 8);
        bundle[blen++] = (uint8_t)rlen[i];
        memcpy(bundle + blen, rec[i], rlen[i]);
        blen += rlen[i];
        keten_merkle_leaf_hash(rec[i], rlen[i], hashes[i]);
        if ((i + 1) % TILES_WIDTH == 0 || i + 1 == n) {
            unsigned w = (unsigned)(i % TILES_WIDTH) + 1;
            put_tile(dir, &of, -1, i / TILES_WIDTH, bundle, blen, w);
            put_tile(dir, &of, 0, i / TILES_WIDTH,
                (const uint8_t *)hashes[i / TILES_WIDTH * TILES_WIDTH],
                (size_t)w * KETEN_HASH_BYTES, w);
            blen = 0;
        }
    }
    if (n >= TILES_WIDTH) {
        keten_hash l1[MAX_RECORDS / TILES_WIDTH];
        size_t k = n / TILES_WIDTH;
        for (size_t i = 0; i < k; i++) {
            keten_merkle_root((const keten_hash *)(hashes + i * TILES_WIDTH), TILES_WIDTH, l1[i]);
        }
        put_tile(dir, &of, 1, 0, (const uint8_t *)l1, k * KETEN_HASH_BYTES, (unsigned)k);
    }
    /* keten's files. */
    uint8_t *fb = NULL;
    size_t flen = 0, fcap = 0;
    static const char dirbytes[] = "a directory version";
    FUZZ_MUST(
        tiles_frame_append(&fb, &flen, &fcap, 1, (const uint8_t *)dirbytes, sizeof dirbytes - 1));
    put(dir, &of, TILES_DIRECTORIES, fb, flen);
    flen = 0;
    char note[160];
    int nl = snprintf(note, sizeof note, "keten/fuzz\n%zu\nAAAA\n\n\xe2\x80\x94 broker AAAA\n", n);
    FUZZ_MUST(tiles_frame_append(&fb, &flen, &fcap, n, (const uint8_t *)note, (size_t)nl));
    put(dir, &of, TILES_CHECKPOINTS, fb, flen);
    free(fb);
    put(dir, &of, TILES_CHECKPOINT, note, (size_t)nl);
    char manifest[64];
    int ml = snprintf(manifest, sizeof manifest, TILES_FORMAT_LINE "\nsize %zu\n", n);
    put(dir, &of, TILES_MANIFEST, manifest, (size_t)ml);

    view before, after;
    read_export(dir, &before);
    FUZZ_CHECK(before.e == KETEN_OK);
    FUZZ_CHECK(before.verified);
    FUZZ_CHECK(before.n == n);

    /* Flip one bit of one byte of one file. */
    const char *rel = of.rel[sel % of.n];
    char path[TILES_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "r+b");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fseek(f, 0, SEEK_END) == 0);
    long fsize = ftell(f);
    if (fsize > 0) {
        long off = (long)((sel / of.n) % (uint32_t)fsize);
        uint8_t b = 0;
        FUZZ_CHECK(fseek(f, off, SEEK_SET) == 0 && fread(&b, 1, 1, f) == 1);
        b ^= (uint8_t)(1u << ((sel >> 24) % 8));
        FUZZ_CHECK(fseek(f, off, SEEK_SET) == 0 && fwrite(&b, 1, 1, f) == 1);
    }
    FUZZ_CHECK(fclose(f) == 0);
    read_export(dir, &after);
    if (fsize > 0) {
        bool same = after.e == KETEN_OK && after.verified && after.n == before.n
            && after.len == before.len && memcmp(after.blob, before.blob, before.len) == 0;
        FUZZ_CHECK(!same);
    }
    free(before.blob);
    free(after.blob);
    rm_tree(dir);
}

/* ---- files: arbitrary contents --------------------------------------------- */

static const char *const names[] = {
    TILES_MANIFEST,
    TILES_CHECKPOINTS,
    TILES_DIRECTORIES,
    TILES_CHECKPOINT,
    "tile/entries/000",
    "tile/entries/000.p/1",
    "tile/entries/000.p/2",
    "tile/entries/000.p/3",
    "tile/entries/001.p/1",
    "tile/0/000",
    "tile/0/000.p/1",
    "tile/0/000.p/2",
    "tile/0/000.p/3",
    "tile/0/001.p/1",
    "tile/1/000.p/1",
};

static void files_mode(const uint8_t *data, size_t size)
{
    char dir[] = "/tmp/fuzz-tiles.XXXXXX";
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    bool made[sizeof names / sizeof names[0]] = { false };
    while (size >= 3) {
        size_t which = data[0] % (sizeof names / sizeof names[0]);
        size_t l = (size_t)data[1] << 8 | data[2];
        data += 3;
        size -= 3;
        if (l > size) {
            l = size;
        }
        if (!made[which]) {
            FUZZ_MUST(tiles_write_file(dir, names[which], data, l, false));
            made[which] = true;
        }
        data += l;
        size -= l;
    }
    view v;
    read_export(dir, &v);
    free(v.blob);
    rm_tree(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    if (data[0] % 2 == 0) {
        records_mode(data + 1, size - 1);
    } else {
        files_mode(data + 1, size - 1);
    }
    return 0;
}
