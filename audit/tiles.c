#include "tiles.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logproof.h"
#include "sha256.h"

#define FRAME_HEAD 12 /* key u64 + length u32 */
#define MAX_TILE_LEVELS 8 /* 256^8 > TILES_MAX_SIZE */
#define DIR_MODE 0755
#define FILE_MODE 0644

/* ---- bounded files ------------------------------------------------------- */

typedef struct bfile {
    int fd;
    uint64_t size, off;
    char path[TILES_PATH_MAX];
} bfile;

static keten_err bfile_open(bfile *f, const char *dir, const char *rel, uint64_t cap, bool *missing)
{
    f->fd = -1;
    f->size = f->off = 0;
    if (snprintf(f->path, sizeof f->path, "%s/%s", dir, rel) >= (int)sizeof f->path) {
        return keten_err_set(KETEN_ERR_INVALID, "the path %s/%s is too long", dir, rel);
    }
    if (missing != NULL) {
        *missing = false;
    }
    /* O_NONBLOCK: a FIFO in the folder would make open() wait for a writer
     * for ever; it is refused below as not a regular file instead (reading a
     * regular file never blocks either way). */
    f->fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (f->fd < 0) {
        if (errno == ENOENT && missing != NULL) {
            *missing = true;
            return KETEN_OK;
        }
        return keten_err_set(errno == ENOENT || errno == ELOOP ? KETEN_ERR_MALFORMED : KETEN_ERR_IO,
            "%s: cannot read it: %s%s", rel, strerror(errno),
            errno == ELOOP ? " (a symbolic link: an export holds plain files)" : "");
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        keten_err e = keten_err_set(KETEN_ERR_IO, "%s: %s", rel, strerror(errno));
        close(f->fd);
        f->fd = -1;
        return e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(f->fd);
        f->fd = -1;
        return keten_err_set(KETEN_ERR_MALFORMED, "%s is not a regular file", rel);
    }
    if ((uint64_t)st.st_size > cap) {
        close(f->fd);
        f->fd = -1;
        return keten_err_set(KETEN_ERR_TOO_LARGE,
            "%s is %" PRIu64 " bytes, over the cap of %" PRIu64 " for that file", rel,
            (uint64_t)st.st_size, cap);
    }
    f->size = (uint64_t)st.st_size;
    return KETEN_OK;
}

static void bfile_close(bfile *f)
{
    if (f->fd >= 0) {
        close(f->fd);
    }
    f->fd = -1;
}

static uint64_t bfile_left(const bfile *f)
{
    return f->size - f->off;
}

/* Read exactly n bytes (checked against the size first). what names the
 * item for the error. */
static keten_err bfile_read(bfile *f, void *buf, size_t n, const char *what)
{
    if (n > bfile_left(f)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s: %s needs %zu bytes at offset %" PRIu64 ", the file has %" PRIu64 " left", f->path,
            what, n, f->off, bfile_left(f));
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(f->fd, (uint8_t *)buf + got, n - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return keten_err_set(r == 0 ? KETEN_ERR_MALFORMED : KETEN_ERR_IO,
                "%s: %s: %s at offset %" PRIu64, f->path, what,
                r == 0 ? "the file ended early (changed while read)" : strerror(errno),
                f->off + got);
        }
        got += (size_t)r;
    }
    f->off += n;
    return KETEN_OK;
}

static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        p[i - 1] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

/* ---- paths ---------------------------------------------------------------- */

void tiles_path(char out[static TILES_PATH_MAX], int level, uint64_t n, unsigned width)
{
    unsigned groups[8];
    size_t g = 0;
    do {
        groups[g++] = (unsigned)(n % 1000);
        n /= 1000;
    } while (n > 0 && g < sizeof groups / sizeof groups[0]);
    size_t off = 0;
    if (level < 0) {
        off = (size_t)snprintf(out, TILES_PATH_MAX, "tile/entries/");
    } else {
        off = (size_t)snprintf(out, TILES_PATH_MAX, "tile/%d/", level);
    }
    for (size_t i = g; i > 0; i--) {
        off += (size_t)snprintf(
            out + off, TILES_PATH_MAX - off, i > 1 ? "x%03u/" : "%03u", groups[i - 1]);
    }
    if (width < TILES_WIDTH) {
        snprintf(out + off, TILES_PATH_MAX - off, ".p/%u", width);
    }
}

/* ---- the handle -------------------------------------------------------------- */

typedef struct tile_cache {
    bool loaded;
    uint64_t n;
    unsigned width;
    uint8_t hashes[TILES_TILE_BYTES];
} tile_cache;

struct tiles {
    char dir[TILES_PATH_MAX];
    uint64_t size;
    uint8_t *notes_buf;
    tiles_note *notes;
    size_t n_notes;
    tile_cache cache[MAX_TILE_LEVELS];
};

bool tiles_is_export(const char *dir)
{
    char p[TILES_PATH_MAX];
    struct stat st;
    return snprintf(p, sizeof p, "%s/" TILES_MANIFEST, dir) < (int)sizeof p && lstat(p, &st) == 0;
}

static keten_err read_manifest(tiles *t)
{
    bfile f;
    keten_err e = bfile_open(&f, t->dir, TILES_MANIFEST, TILES_MANIFEST_MAX, NULL);
    if (e != KETEN_OK) {
        return e;
    }
    char buf[TILES_MANIFEST_MAX + 1];
    size_t n = (size_t)f.size;
    e = bfile_read(&f, buf, n, "the manifest");
    bfile_close(&f);
    if (e != KETEN_OK) {
        return e;
    }
    buf[n] = '\0';
    static const char head[] = TILES_FORMAT_LINE "\nsize ";
    if (n < sizeof head || memcmp(buf, head, sizeof head - 1) != 0) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            TILES_MANIFEST " does not begin with '" TILES_FORMAT_LINE
                           "' and a size line: an export of another format or version");
    }
    const char *p = buf + sizeof head - 1;
    uint64_t size = 0;
    size_t digits = 0;
    while (p[digits] >= '0' && p[digits] <= '9') {
        if (digits == 16) {
            return keten_err_set(KETEN_ERR_MALFORMED, TILES_MANIFEST ": the size is too long");
        }
        size = size * 10 + (uint64_t)(p[digits] - '0');
        digits++;
    }
    if (digits == 0 || (digits > 1 && p[0] == '0') || strcmp(p + digits, "\n") != 0
        || strlen(buf) != n) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            TILES_MANIFEST ": the size line is not 'size N' (decimal, no leading zero) followed "
                           "by the end of the file");
    }
    if (size > TILES_MAX_SIZE) {
        return keten_err_set(KETEN_ERR_TOO_LARGE,
            TILES_MANIFEST ": a size of %" PRIu64 " records is over the cap of %llu", size,
            TILES_MAX_SIZE);
    }
    t->size = size;
    return KETEN_OK;
}

/* Walk a framed file: fn gets each item (bytes valid during the call). */
typedef keten_err (*frame_fn)(void *ctx, uint64_t key, const uint8_t *data, size_t len, size_t i);

static keten_err read_frames(const char *dir, const char *rel, uint64_t cap, size_t item_max,
    const char *item, frame_fn fn, void *ctx)
{
    bfile f;
    keten_err e = bfile_open(&f, dir, rel, cap, NULL);
    if (e != KETEN_OK) {
        return e;
    }
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    uint64_t prev = 0;
    for (size_t i = 0; e == KETEN_OK && bfile_left(&f) > 0; i++) {
        uint8_t head[FRAME_HEAD];
        char what[96];
        snprintf(what, sizeof what, "the head of %s %zu", item, i);
        if ((e = bfile_read(&f, head, sizeof head, what)) != KETEN_OK) {
            break;
        }
        uint64_t key = get_be(head, 8);
        size_t len = (size_t)get_be(head + 8, 4);
        if (i > 0 && key <= prev) {
            e = keten_err_set(KETEN_ERR_MALFORMED,
                "%s: %s %zu is filed under %" PRIu64 ", not above the one before (%" PRIu64 ")",
                rel, item, i, key, prev);
            break;
        }
        if (len == 0 || len > item_max) {
            e = keten_err_set(KETEN_ERR_MALFORMED,
                "%s: %s %zu (key %" PRIu64 ") has a length of %zu bytes, outside 1..%zu", rel, item,
                i, key, len, item_max);
            break;
        }
        if (len > bfile_left(&f)) {
            e = keten_err_set(KETEN_ERR_MALFORMED,
                "%s: %s %zu (key %" PRIu64 ") has a length of %zu bytes, but only %" PRIu64
                " are left in the file",
                rel, item, i, key, len, bfile_left(&f));
            break;
        }
        if (len > buf_cap) {
            uint8_t *nb = realloc(buf, len);
            if (nb == NULL) {
                e = keten_err_set(KETEN_ERR_NOMEM, "reading %s", rel);
                break;
            }
            buf = nb;
            buf_cap = len;
        }
        snprintf(what, sizeof what, "%s %zu", item, i);
        if ((e = bfile_read(&f, buf, len, what)) != KETEN_OK) {
            break;
        }
        e = fn(ctx, key, buf, len, i);
        prev = key;
    }
    free(buf);
    bfile_close(&f);
    return e;
}

typedef struct notes_ctx {
    tiles *t;
    size_t cap;
    size_t bytes;
} notes_ctx;

static keten_err keep_note(void *ctx, uint64_t key, const uint8_t *data, size_t len, size_t i)
{
    (void)i;
    notes_ctx *c = ctx;
    tiles *t = c->t;
    if (t->n_notes == c->cap) {
        size_t nc = c->cap == 0 ? 16 : c->cap * 2;
        tiles_note *nn = realloc(t->notes, nc * sizeof *nn);
        if (nn == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "reading the checkpoints");
        }
        t->notes = nn;
        c->cap = nc;
    }
    /* Each note is its own allocation, NUL-terminated for the parsers. */
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "reading the checkpoints");
    }
    memcpy(copy, data, len);
    copy[len] = '\0';
    t->notes[t->n_notes++] = (tiles_note) { key, copy, len };
    c->bytes += len;
    return KETEN_OK;
}

static keten_err read_checkpoint_file(tiles *t)
{
    bfile f;
    bool missing = false;
    keten_err e = bfile_open(&f, t->dir, TILES_CHECKPOINT, KETEN_CHECKPOINT_MAX, &missing);
    if (e != KETEN_OK) {
        return e;
    }
    if (missing) {
        if (t->n_notes > 0) {
            return keten_err_set(KETEN_ERR_MALFORMED,
                TILES_CHECKPOINT " is missing, but " TILES_CHECKPOINTS
                                 " holds %zu checkpoints: the export is incomplete",
                t->n_notes);
        }
        return KETEN_OK;
    }
    uint8_t *buf = malloc(f.size + 1);
    if (buf == NULL) {
        bfile_close(&f);
        return keten_err_set(KETEN_ERR_NOMEM, "reading " TILES_CHECKPOINT);
    }
    size_t n = (size_t)f.size;
    e = bfile_read(&f, buf, n, "the checkpoint");
    bfile_close(&f);
    if (e == KETEN_OK) {
        const tiles_note *last = t->n_notes > 0 ? &t->notes[t->n_notes - 1] : NULL;
        if (last == NULL || last->len != n || memcmp(last->note, buf, n) != 0) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                TILES_CHECKPOINT " is not the latest checkpoint of " TILES_CHECKPOINTS
                                 ": the export was altered");
        }
    }
    free(buf);
    return e;
}

keten_err tiles_open(const char *dir, tiles **out)
{
    *out = NULL;
    tiles *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "opening %s", dir);
    }
    keten_err e = KETEN_OK;
    if (snprintf(t->dir, sizeof t->dir, "%s", dir) >= (int)sizeof t->dir) {
        e = keten_err_set(KETEN_ERR_INVALID, "the folder name %s is too long", dir);
        goto fail;
    }
    notes_ctx nc = { t, 0, 0 };
    if ((e = read_manifest(t)) != KETEN_OK
        || (e = read_frames(t->dir, TILES_CHECKPOINTS, TILES_CHECKPOINTS_MAX, KETEN_CHECKPOINT_MAX,
                "checkpoint", keep_note, &nc))
            != KETEN_OK
        || (e = read_checkpoint_file(t)) != KETEN_OK) {
        goto fail;
    }
    *out = t;
    return KETEN_OK;
fail:
    tiles_close(&t);
    return e;
}

void tiles_close(tiles **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    tiles *t = *self_p;
    for (size_t i = 0; i < t->n_notes; i++) {
        free((char *)t->notes[i].note);
    }
    free(t->notes);
    free(t);
    *self_p = NULL;
}

uint64_t tiles_size(const tiles *self)
{
    return self->size;
}

const tiles_note *tiles_notes(const tiles *self, size_t *n)
{
    *n = self->n_notes;
    return self->notes;
}

/* ---- hash tiles --------------------------------------------------------------- */

static keten_err load_tile(tiles *t, unsigned tl, uint64_t n, unsigned width)
{
    tile_cache *c = &t->cache[tl];
    c->loaded = false;
    char rel[TILES_PATH_MAX];
    tiles_path(rel, (int)tl, n, width);
    bfile f;
    keten_err e = bfile_open(&f, t->dir, rel, TILES_TILE_BYTES, NULL);
    if (e != KETEN_OK) {
        return e;
    }
    if (f.size != (uint64_t)width * KETEN_HASH_BYTES) {
        e = keten_err_set(KETEN_ERR_MALFORMED,
            "%s is %" PRIu64 " bytes; a tile of %u hashes is %u bytes", rel, f.size, width,
            width * KETEN_HASH_BYTES);
    } else {
        e = bfile_read(&f, c->hashes, (size_t)f.size, "the tile");
    }
    bfile_close(&f);
    if (e == KETEN_OK) {
        c->loaded = true;
        c->n = n;
        c->width = width;
    }
    return e;
}

keten_err tiles_node(tiles *self, unsigned level, uint64_t index, keten_hash out)
{
    if (level % TILES_HEIGHT != 0 || level / TILES_HEIGHT >= MAX_TILE_LEVELS) {
        return keten_err_set(KETEN_ERR_INVALID, "no tile holds level %u", level);
    }
    unsigned tl = level / TILES_HEIGHT;
    uint64_t count = self->size >> level; /* complete subtrees at that level */
    if (index >= count) {
        return keten_err_set(KETEN_ERR_INVALID,
            "subtree %" PRIu64 " of level %u is beyond an export of %" PRIu64 " records", index,
            level, self->size);
    }
    uint64_t n = index / TILES_WIDTH;
    unsigned width = (n + 1) * TILES_WIDTH <= count ? TILES_WIDTH : (unsigned)(count % TILES_WIDTH);
    tile_cache *c = &self->cache[tl];
    if (!c->loaded || c->n != n || c->width != width) {
        keten_err e = load_tile(self, tl, n, width);
        if (e != KETEN_OK) {
            return e;
        }
    }
    memcpy(out, c->hashes + (index % TILES_WIDTH) * KETEN_HASH_BYTES, KETEN_HASH_BYTES);
    return KETEN_OK;
}

/* MTH(D[a:b]) with a a multiple of the largest power of two <= b - a (as
 * RFC 9162's recursion from 0 always is). */
static keten_err range_hash(tiles *t, uint64_t a, uint64_t b, keten_hash out)
{
    uint64_t n = b - a;
    if (n == 0) {
        keten_sha256(out, NULL, 0);
        return KETEN_OK;
    }
    if ((n & (n - 1)) == 0) {
        unsigned level = 0;
        while ((1ull << level) < n) {
            level++;
        }
        if (level % TILES_HEIGHT == 0 && a % n == 0) {
            return tiles_node(t, level, a >> level, out);
        }
    }
    uint64_t k = 1;
    while (k * 2 < n) {
        k *= 2;
    }
    keten_hash l, r;
    keten_err e = range_hash(t, a, a + k, l);
    if (e == KETEN_OK) {
        e = range_hash(t, a + k, b, r);
    }
    if (e == KETEN_OK) {
        keten_merkle_node_hash(l, r, out);
    }
    return e;
}

keten_err tiles_root(tiles *self, uint64_t size, keten_hash out)
{
    if (size > self->size) {
        return keten_err_set(KETEN_ERR_INVALID,
            "a root of %" PRIu64 " records from an export of %" PRIu64, size, self->size);
    }
    return range_hash(self, 0, size, out);
}

/* RFC 9162 2.1.3.1 PATH(m, D[a:b]), hashes appended bottom-up. */
static keten_err path_rec(
    tiles *t, uint64_t m, uint64_t a, uint64_t b, keten_hash *path, size_t *len)
{
    uint64_t n = b - a;
    if (n <= 1) {
        return KETEN_OK;
    }
    uint64_t k = 1;
    while (k * 2 < n) {
        k *= 2;
    }
    keten_err e;
    keten_hash h;
    if (m < k) {
        if ((e = path_rec(t, m, a, a + k, path, len)) != KETEN_OK
            || (e = range_hash(t, a + k, b, h)) != KETEN_OK) {
            return e;
        }
    } else {
        if ((e = path_rec(t, m - k, a + k, b, path, len)) != KETEN_OK
            || (e = range_hash(t, a, a + k, h)) != KETEN_OK) {
            return e;
        }
    }
    if (*len >= KETEN_MERKLE_MAX_PROOF) {
        return keten_err_set(KETEN_ERR_INVALID, "an inclusion proof too long");
    }
    memcpy(path[(*len)++], h, KETEN_HASH_BYTES);
    return KETEN_OK;
}

keten_err tiles_inclusion_proof(
    tiles *self, uint64_t index, uint64_t size, keten_hash *path, size_t *path_len)
{
    *path_len = 0;
    if (size > self->size || index >= size) {
        return keten_err_set(KETEN_ERR_INVALID,
            "an inclusion proof of record %" PRIu64 " in %" PRIu64 " of an export of %" PRIu64,
            index, size, self->size);
    }
    return path_rec(self, index, 0, size, path, path_len);
}

/* ---- directories ----------------------------------------------------------- */

typedef struct dir_ctx {
    tiles_dir_fn fn;
    void *ctx;
} dir_ctx;

static keten_err dir_item(void *ctx, uint64_t key, const uint8_t *data, size_t len, size_t i)
{
    dir_ctx *c = ctx;
    return c->fn(c->ctx, key, data, len, i);
}

keten_err tiles_directories(const tiles *self, tiles_dir_fn fn, void *ctx)
{
    dir_ctx c = { fn, ctx };
    return read_frames(self->dir, TILES_DIRECTORIES, TILES_DIRECTORIES_MAX, KETEN_DIRECTORY_MAX,
        "directory", dir_item, &c);
}

/* ---- entry bundles -------------------------------------------------------- */

struct tiles_reader {
    const tiles *t;
    bfile f;
    bool open;
    uint64_t next; /* index of the next record */
    uint64_t bundle_end; /* index after the open bundle's last record */
    uint8_t *buf;
    size_t cap;
};

keten_err tiles_reader_new(const tiles *self, tiles_reader **out)
{
    *out = calloc(1, sizeof **out);
    if (*out == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "reading the entry bundles");
    }
    (*out)->t = self;
    (*out)->f.fd = -1;
    return KETEN_OK;
}

void tiles_reader_destroy(tiles_reader **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    bfile_close(&(*self_p)->f);
    free((*self_p)->buf);
    free(*self_p);
    *self_p = NULL;
}

static keten_err close_bundle(tiles_reader *r)
{
    keten_err e = KETEN_OK;
    if (r->open && bfile_left(&r->f) != 0) {
        e = keten_err_set(KETEN_ERR_MALFORMED,
            "%s has %" PRIu64 " bytes after its last record %" PRIu64
            ": a record's length was changed, or bytes added",
            r->f.path, bfile_left(&r->f), r->next - 1);
    }
    bfile_close(&r->f);
    r->open = false;
    return e;
}

keten_err tiles_reader_next(
    tiles_reader *r, uint64_t *index, const uint8_t **leaf, size_t *len, bool *end)
{
    *end = false;
    keten_err e;
    uint64_t size = r->t->size;
    if (r->open && r->next == r->bundle_end && (e = close_bundle(r)) != KETEN_OK) {
        return e;
    }
    if (r->next >= size) {
        *end = true;
        return KETEN_OK;
    }
    if (!r->open) {
        uint64_t n = r->next / TILES_WIDTH;
        unsigned width
            = (n + 1) * TILES_WIDTH <= size ? TILES_WIDTH : (unsigned)(size % TILES_WIDTH);
        char rel[TILES_PATH_MAX];
        tiles_path(rel, -1, n, width);
        if ((e = bfile_open(&r->f, r->t->dir, rel, TILES_BUNDLE_MAX, NULL)) != KETEN_OK) {
            return e;
        }
        r->open = true;
        r->bundle_end = n * TILES_WIDTH + width;
    }
    uint64_t i = r->next;
    char what[96];
    snprintf(what, sizeof what, "the length of record %" PRIu64, i);
    uint8_t lb[4];
    if ((e = bfile_read(&r->f, lb, 2, what)) != KETEN_OK) {
        return e;
    }
    size_t n = (size_t)get_be(lb, 2);
    if (n == TILES_LONG_MARK) {
        if ((e = bfile_read(&r->f, lb, 4, what)) != KETEN_OK) {
            return e;
        }
        n = (size_t)get_be(lb, 4);
        if (n <= TILES_SHORT_MAX || n > KETEN_AUDIT_RECORD_MAX) {
            return keten_err_set(KETEN_ERR_MALFORMED,
                "%s: record %" PRIu64 " has a long length of %zu bytes, outside %u..%u", r->f.path,
                i, n, TILES_SHORT_MAX + 1, (unsigned)KETEN_AUDIT_RECORD_MAX);
        }
    }
    if (n > bfile_left(&r->f)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s: record %" PRIu64 " has a length of %zu bytes, but only %" PRIu64
            " are left in the file: its length was changed or the file cut",
            r->f.path, i, n, bfile_left(&r->f));
    }
    if (n > r->cap || r->buf == NULL) {
        uint8_t *nb = realloc(r->buf, n > 0 ? n : 1);
        if (nb == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "reading record %" PRIu64, i);
        }
        r->buf = nb;
        r->cap = n > 0 ? n : 1;
    }
    snprintf(what, sizeof what, "record %" PRIu64, i);
    if ((e = bfile_read(&r->f, r->buf, n, what)) != KETEN_OK) {
        return e;
    }
    r->next = i + 1;
    if (r->next == r->bundle_end && (e = close_bundle(r)) != KETEN_OK) {
        return e;
    }
    *index = i;
    *leaf = r->buf;
    *len = n;
    return KETEN_OK;
}

/* ---- writing ---------------------------------------------------------------- */

static keten_err mkdirs(const char *dir, const char *rel)
{
    char p[TILES_PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, rel) >= (int)sizeof p) {
        return keten_err_set(KETEN_ERR_INVALID, "the path %s/%s is too long", dir, rel);
    }
    size_t base = strlen(dir) + 1;
    for (size_t i = base; p[i] != '\0'; i++) {
        if (p[i] != '/') {
            continue;
        }
        p[i] = '\0';
        if (mkdir(p, DIR_MODE) != 0 && errno != EEXIST) {
            return keten_err_set(KETEN_ERR_IO, "cannot make %s: %s", p, strerror(errno));
        }
        p[i] = '/';
    }
    return KETEN_OK;
}

keten_err tiles_write_file(
    const char *dir, const char *rel, const void *data, size_t len, bool sync)
{
    keten_err e = mkdirs(dir, rel);
    if (e != KETEN_OK) {
        return e;
    }
    char p[TILES_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, FILE_MODE);
    if (fd < 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot write %s: %s", p, strerror(errno));
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, (const uint8_t *)data + done, len - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            e = keten_err_set(errno == ENOSPC ? KETEN_ERR_STORE_FULL : KETEN_ERR_IO,
                "cannot write %s: %s", p, strerror(errno));
            break;
        }
        done += (size_t)w;
    }
    if (e == KETEN_OK && sync && fsync(fd) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot sync %s: %s", p, strerror(errno));
    }
    if (close(fd) != 0 && e == KETEN_OK) {
        e = keten_err_set(KETEN_ERR_IO, "cannot write %s: %s", p, strerror(errno));
    }
    if (e == KETEN_OK && fchmodat(AT_FDCWD, p, FILE_MODE, 0) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot make %s readable: %s", p, strerror(errno));
    }
    return e;
}

keten_err tiles_frame_append(
    uint8_t **buf, size_t *len, size_t *cap, uint64_t key, const uint8_t *data, size_t data_len)
{
    if (data_len == 0 || data_len > UINT32_MAX || *len > SIZE_MAX - FRAME_HEAD - data_len) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "an item of %zu bytes", data_len);
    }
    size_t need = *len + FRAME_HEAD + data_len;
    if (need > *cap) {
        size_t nc = *cap == 0 ? 4096 : *cap;
        while (nc < need) {
            nc *= 2;
        }
        uint8_t *nb = realloc(*buf, nc);
        if (nb == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "writing the export");
        }
        *buf = nb;
        *cap = nc;
    }
    put_be(*buf + *len, key, 8);
    put_be(*buf + *len + 8, data_len, 4);
    memcpy(*buf + *len + FRAME_HEAD, data, data_len);
    *len = need;
    return KETEN_OK;
}
