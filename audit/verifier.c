#include "verifier.h"

#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "directory.h"
#include "envelope.h"
#include "filekind.h"
#include "pb.h"
#include "records.h"
#include "sigcheck.h"
#include "util.h"
#include "sha256.h"

#define BATCH_JOBS 256
#define MAX_QUEUED 16 /* batches waiting for a worker */
#define MAX_LEVELS 64
#define PROGRESS_EVERY 8192 /* records between looks at the clock */
#define PROGRESS_MS 250
#define ORIGIN_PREFIX "keten/"
#define NO_SEQ UINT64_MAX
/* One --checkpoint file: as large as the broker's keten/checkpoints may
 * be, and as what keten-node checkpoint --all can write (its daemon's answer
 * is at most KETEN_APICLIENT_REPLY_MAX, 1 GiB): up to 21,000 kept notes,
 * each with the first cosignature line of every partner, some 5 KB each in
 * a network of 40 partners. */
#define VERIFIER_NOTE_FILE_MAX TILES_CHECKPOINTS_MAX

/* ---- failures ---------------------------------------------------------- */

typedef struct shared {
    pthread_mutex_t mu;
    _Atomic uint64_t fail_seq; /* lowest failing seq so far, NO_SEQ if none */
    verifier_failure failure;
    atomic_uint_fast64_t sender_sigs;
} shared;

/* Record a failure at seq; the lowest seq wins (ties: the first). */
static void vfail(shared *sh, uint64_t seq, bool no_record, keten_err err, const char *fmt,
    va_list ap) KETEN_PRINTF(5, 0);

static void vfail(
    shared *sh, uint64_t seq, bool no_record, keten_err err, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&sh->mu);
    if (seq < atomic_load(&sh->fail_seq)) {
        vsnprintf(sh->failure.what, sizeof sh->failure.what, fmt, ap);
        sh->failure.seq = seq;
        sh->failure.no_record = no_record;
        sh->failure.err = err;
        atomic_store(&sh->fail_seq, seq);
    }
    pthread_mutex_unlock(&sh->mu);
}

static void fail_at(shared *sh, uint64_t seq, keten_err err, const char *fmt, ...)
    KETEN_PRINTF(4, 5);

static void fail_at(shared *sh, uint64_t seq, keten_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(sh, seq, false, err, fmt, ap);
    va_end(ap);
}

/* A file beside the records that does not parse: ordered after every
 * record (seq = n), and naming none. */
static void fail_file(shared *sh, uint64_t n, keten_err err, const char *fmt, ...)
    KETEN_PRINTF(4, 5);

static void fail_file(shared *sh, uint64_t n, keten_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(sh, n, true, err, fmt, ap);
    va_end(ap);
}

static bool failed_before(shared *sh, uint64_t seq)
{
    return atomic_load(&sh->fail_seq) < seq;
}

/* ---- signature jobs ----------------------------------------------------- */

typedef struct job {
    const Keten__AuditRecord *rec;
    const keten_directory *dir; /* in force at the record */
    uint64_t created_at; /* submitted: header created_at */
} job;

typedef struct batch {
    size_t n;
    job jobs[BATCH_JOBS];
    Keten__AuditRecord *own[BATCH_JOBS];
    struct batch *next;
} batch;

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
    batch *head, *tail;
    size_t queued;
    bool closing;
    pthread_t th[VERIFIER_THREADS_MAX];
    unsigned n_threads;
    shared *sh;
} pool;

static void batch_free(batch **b_p)
{
    batch *b = *b_p;
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        records_free(&b->own[i]);
    }
    free(b);
    *b_p = NULL;
}

static void check_job(shared *sh, const job *j, uint8_t **buf, size_t *cap)
{
    const Keten__AuditRecord *r = j->rec;
    keten_err e = sigcheck_submitted(j->dir, r, j->created_at, buf, cap);
    if (e == KETEN_OK) {
        e = sigcheck_rule(j->dir, r);
    }
    if (e != KETEN_OK) {
        fail_at(sh, r->seq, e, "%s", keten_err_detail());
    } else {
        atomic_fetch_add(&sh->sender_sigs, 1);
    }
}

static void *worker(void *arg)
{
    pool *p = arg;
    uint8_t *buf = NULL;
    size_t cap = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->head == NULL && !p->closing) {
            pthread_cond_wait(&p->nonempty, &p->mu);
        }
        batch *b = p->head;
        if (b == NULL) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->head = b->next;
        if (p->head == NULL) {
            p->tail = NULL;
        }
        p->queued--;
        pthread_cond_signal(&p->nonfull);
        pthread_mutex_unlock(&p->mu);
        for (size_t i = 0; i < b->n; i++) {
            const job *j = &b->jobs[i];
            if (failed_before(p->sh, j->rec->seq)) {
                continue; /* an earlier failure is already known */
            }
            check_job(p->sh, j, &buf, &cap);
        }
        batch_free(&b);
    }
    free(buf);
    return NULL;
}

static keten_err pool_start(pool *p, shared *sh, unsigned n)
{
    memset(p, 0, sizeof *p);
    p->sh = sh;
    if (pthread_mutex_init(&p->mu, NULL) != 0 || pthread_cond_init(&p->nonempty, NULL) != 0
        || pthread_cond_init(&p->nonfull, NULL) != 0) {
        return keten_err_set(KETEN_ERR_NOMEM, "cannot make the workers' lock");
    }
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&p->th[i], NULL, worker, p) != 0) {
            break;
        }
        p->n_threads++;
    }
    if (p->n_threads == 0) {
        return keten_err_set(KETEN_ERR_NOMEM, "cannot start a signature worker thread");
    }
    return KETEN_OK;
}

static void pool_push(pool *p, batch *b)
{
    pthread_mutex_lock(&p->mu);
    while (p->queued >= MAX_QUEUED) {
        pthread_cond_wait(&p->nonfull, &p->mu);
    }
    b->next = NULL;
    if (p->tail != NULL) {
        p->tail->next = b;
    } else {
        p->head = b;
    }
    p->tail = b;
    p->queued++;
    pthread_cond_signal(&p->nonempty);
    pthread_mutex_unlock(&p->mu);
}

static void pool_finish(pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    pthread_cond_broadcast(&p->nonempty);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++) {
        pthread_join(p->th[i], NULL);
    }
    pthread_cond_destroy(&p->nonempty);
    pthread_cond_destroy(&p->nonfull);
    pthread_mutex_destroy(&p->mu);
}

/* ---- verifier state ---------------------------------------------------- */

typedef struct dirent_ {
    uint64_t version;
    uint64_t seq; /* its directory-installed record, NO_SEQ: only in the table */
    keten_directory *dir;
} dirent_;

typedef struct note_in {
    char *name; /* "stored checkpoint" / file name */
    uint64_t key; /* stored: its key; files: NO_SEQ */
    const char *note;
    size_t len;
    uint8_t *owned; /* file contents */
    keten_checkpoint body; /* parsed without signature, when body_ok */
    bool body_ok;
    char body_err[256];
} note_in;

typedef struct verifier {
    const auditdb *db;
    const verifier_opts *opts;
    verifier_result *res;
    shared sh;
    pool pool;
    bool pool_up;
    batch *cur;
    records_index *idx;
    sigcheck_heads *heads; /* receipt batch heads verified so far */
    dirent_ *dirs;
    size_t n_dirs, cap_dirs;
    const keten_directory *in_force; /* at the record being read */
    uint64_t in_force_seq;
    keten_hash stack[MAX_LEVELS + 1];
    size_t depth;
    note_in *notes;
    size_t n_notes;
    note_in *beyond; /* the largest signed checkpoint larger than the log */
    size_t n_beyond; /* how many are larger than the log */
    uint64_t *want; /* tree sizes whose roots checkpoints need, sorted */
    keten_hash *roots;
    bool *have_root;
    size_t n_want, next_want;
    uint64_t n; /* records read */
    uint64_t last_time;
    uint64_t progress_mono;
} verifier;

static keten_err add_dir(verifier *v, keten_directory *d, uint64_t seq)
{
    if (v->n_dirs == v->cap_dirs) {
        size_t c = v->cap_dirs == 0 ? 8 : v->cap_dirs * 2;
        dirent_ *nd = realloc(v->dirs, c * sizeof *nd);
        if (nd == NULL) {
            keten_directory_destroy(&d);
            return keten_err_set(KETEN_ERR_NOMEM, "keeping directory versions");
        }
        v->dirs = nd;
        v->cap_dirs = c;
    }
    v->dirs[v->n_dirs++] = (dirent_) { keten_directory_version(d), seq, d };
    return KETEN_OK;
}

/* The logged version (seq != NO_SEQ) of version, else one from the table. */
static const keten_directory *dir_version(const verifier *v, uint64_t version)
{
    const keten_directory *table = NULL;
    for (size_t i = 0; i < v->n_dirs; i++) {
        if (v->dirs[i].version == version) {
            if (v->dirs[i].seq != NO_SEQ) {
                return v->dirs[i].dir;
            }
            table = v->dirs[i].dir;
        }
    }
    return table;
}

/* The logged directory in force after the first `size` records. */
static const keten_directory *dir_at_size(const verifier *v, uint64_t size)
{
    const keten_directory *d = NULL;
    for (size_t i = 0; i < v->n_dirs; i++) {
        if (v->dirs[i].seq != NO_SEQ && v->dirs[i].seq < size) {
            d = v->dirs[i].dir;
        }
    }
    return d;
}

/* ---- the tree ------------------------------------------------------------ */

/* The stored hash of subtree (level, index) must be h; seq: the leaf that
 * completed it. The export stores the levels its tiles hold (multiples of
 * TILES_HEIGHT); the others are recomputed only. false when a failure was
 * recorded. */
static bool expect_node(
    verifier *v, unsigned level, uint64_t index, const keten_hash h, uint64_t seq)
{
    if (level % TILES_HEIGHT != 0) {
        return true;
    }
    uint64_t first = index << level;
    uint64_t last = first + (1ull << level) - 1;
    keten_hash stored;
    keten_err e = tiles_node(v->db->t, level, index, stored);
    if (e != KETEN_OK) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 ": the hash tiles give no hash of records %" PRIu64 "..%" PRIu64
            ": %s: %s",
            seq, first, last, keten_err_str(e), keten_err_detail());
        return false;
    }
    if (sodium_memcmp(stored, h, KETEN_HASH_BYTES) != 0) {
        if (level == 0) {
            fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
                "record %" PRIu64 " does not match its hash in the stored tree: the record "
                "was changed after it was logged",
                seq);
        } else {
            fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
                "record %" PRIu64 ": the stored hash of records %" PRIu64 "..%" PRIu64
                " differs from the hash of those records: the stored tree was altered",
                seq, first, last);
        }
        return false;
    }
    return true;
}

/* Append leaf n's hash: compare every subtree it completes; keep the frontier. */
static bool tree_add(verifier *v, uint64_t n, const keten_hash leaf_hash)
{
    keten_hash h;
    memcpy(h, leaf_hash, KETEN_HASH_BYTES);
    if (!expect_node(v, 0, n, h, n)) {
        return false;
    }
    unsigned level = 0;
    uint64_t index = n;
    while ((index & 1) != 0) {
        if (v->depth == 0) {
            fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT, "internal: tree frontier underflow");
            return false;
        }
        keten_merkle_node_hash(v->stack[v->depth - 1], h, h);
        v->depth--;
        level++;
        index >>= 1;
        if (!expect_node(v, level, index, h, n)) {
            return false;
        }
    }
    if (v->depth > MAX_LEVELS) {
        fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT, "internal: tree frontier overflow");
        return false;
    }
    memcpy(v->stack[v->depth++], h, KETEN_HASH_BYTES);
    return true;
}

/* Root of the records read so far (RFC 9162 MTH of the first n leaves). */
static void tree_root(const verifier *v, keten_hash out)
{
    if (v->depth == 0) {
        keten_sha256(out, NULL, 0);
        return;
    }
    keten_hash acc;
    memcpy(acc, v->stack[v->depth - 1], KETEN_HASH_BYTES);
    for (size_t i = v->depth - 1; i > 0; i--) {
        keten_merkle_node_hash(v->stack[i - 1], acc, acc);
    }
    memcpy(out, acc, KETEN_HASH_BYTES);
}

/* ---- records ------------------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool flush_batch(verifier *v)
{
    if (v->cur != NULL && v->cur->n > 0) {
        pool_push(&v->pool, v->cur);
        v->cur = NULL;
    }
    return true;
}

/* Hand rec (ownership) to a worker. */
static bool add_job(verifier *v, Keten__AuditRecord **rec_p, const job *j)
{
    if (v->cur == NULL) {
        v->cur = calloc(1, sizeof *v->cur);
        if (v->cur == NULL) {
            fail_at(&v->sh, (*rec_p)->seq, KETEN_ERR_NOMEM, "out of memory");
            return false;
        }
    }
    batch *b = v->cur;
    b->jobs[b->n] = *j;
    b->own[b->n] = *rec_p;
    *rec_p = NULL;
    b->n++;
    if (b->n == BATCH_JOBS) {
        flush_batch(v);
    }
    return true;
}

static bool check_directory(verifier *v, const Keten__AuditRecord *r)
{
    uint64_t seq = r->seq;
    if (r->directory.len == 0) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (directory-installed) holds no directory", seq);
        return false;
    }
    const keten_directory *prev = v->in_force;
    if (prev != NULL && r->directory_version == keten_directory_version(prev)) {
        size_t len = 0;
        const uint8_t *bytes = keten_directory_bytes(prev, &len);
        if (len == r->directory.len && memcmp(bytes, r->directory.data, len) == 0) {
            return true; /* the same version again: nothing changes */
        }
    }
    keten_directory *d = NULL;
    keten_err e = keten_directory_verify(
        prev == NULL ? v->opts->anchor : NULL, prev, r->directory.data, r->directory.len, 0, &d);
    if (e != KETEN_OK) {
        fail_at(&v->sh, seq, e,
            "record %" PRIu64 " (directory-installed): the directory does not verify %s: %s: %s",
            seq, prev == NULL ? "against the anchor" : "as the next version of the chain",
            keten_err_str(e), keten_err_detail());
        return false;
    }
    if (keten_directory_version(d) != r->directory_version) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " says it installs directory version %" PRIu64
            " but holds version %" PRIu64,
            seq, r->directory_version, keten_directory_version(d));
        keten_directory_destroy(&d);
        return false;
    }
    if (add_dir(v, d, seq) != KETEN_OK) {
        fail_at(&v->sh, seq, KETEN_ERR_NOMEM, "out of memory");
        return false;
    }
    v->in_force = d;
    v->in_force_seq = seq;
    v->res->directory_versions++;
    v->res->directory_version = keten_directory_version(d);
    return true;
}

static bool check_submitted(verifier *v, Keten__AuditRecord **rec_p)
{
    const Keten__AuditRecord *r = *rec_p;
    uint64_t seq = r->seq;
    const keten_directory *dir = v->in_force;
    if (dir == NULL) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (submitted) comes before any directory was installed", seq);
        return false;
    }
    uint64_t created_at = 0, expires_at = 0;
    keten_err e = sigcheck_header(dir, r, &created_at, &expires_at);
    if (e != KETEN_OK) {
        fail_at(&v->sh, seq, e, "%s", keten_err_detail());
        return false;
    }
    uint64_t dup = NO_SEQ;
    records_msg *m = NULL;
    if ((e = records_index_add(v->idx, r, &m, &dup)) != KETEN_OK) {
        fail_at(&v->sh, seq, e, "record %" PRIu64 ": %s", seq, keten_err_detail());
        return false;
    }
    if (dup != NO_SEQ) {
        char id[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(r->msg_id.data, KETEN_MSG_ID_BYTES, id);
        fail_at(&v->sh, seq, KETEN_ERR_REPLAY,
            "record %" PRIu64 " (submitted): message %s was already submitted at record %" PRIu64,
            seq, id, dup);
        return false;
    }
    if (m != NULL) {
        m->expires_at = expires_at;
    }
    if (keten_directory_find_id(dir, r->sender) == NULL
        && keten_directory_find_revoked(dir, r->sender) == NULL) {
        fail_at(&v->sh, seq, KETEN_ERR_UNKNOWN_NODE,
            "record %" PRIu64 " (submitted): sender '%s' is not in directory version %" PRIu64, seq,
            r->sender, keten_directory_version(dir));
        return false;
    }
    job j = { .rec = r, .dir = dir, .created_at = created_at };
    return add_job(v, rec_p, &j);
}

/* The earlier submitted record of rec's msg_id, with the same sender. */
static const records_msg *message_of(verifier *v, const Keten__AuditRecord *r)
{
    const char *ev = records_event_name((int)r->event);
    if (r->msg_id.len != KETEN_MSG_ID_BYTES) {
        fail_at(&v->sh, r->seq, KETEN_ERR_INCONSISTENT, "record %" PRIu64 " (%s) names no message",
            r->seq, ev);
        return NULL;
    }
    const records_msg *m = records_index_find(v->idx, r->msg_id.data);
    char id[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(r->msg_id.data, KETEN_MSG_ID_BYTES, id);
    if (m == NULL) {
        fail_at(&v->sh, r->seq, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (%s) names message %s, which has no submitted record before it",
            r->seq, ev, id);
        return NULL;
    }
    if (!str_eq(r->sender, m->sender)) {
        fail_at(&v->sh, r->seq, KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s) says message %s came from '%s', its submitted record "
            "(%" PRIu64 ") says '%s'",
            r->seq, ev, id, r->sender, m->seq, m->sender);
        return NULL;
    }
    /* The broker writes no kind, category or purpose in these records;
     * replay shows the record's own when it has one, so one it has must be
     * the message's. */
    const char *field = NULL;
    if (r->kind != KETEN__KIND__KIND_UNSPECIFIED && (int)r->kind != m->kind) {
        field = "kind";
    } else if (r->category != NULL && r->category[0] != '\0' && !str_eq(r->category, m->category)) {
        field = "category";
    } else if (r->purpose != NULL && r->purpose[0] != '\0' && !str_eq(r->purpose, m->purpose)) {
        field = "purpose";
    }
    if (field != NULL) {
        fail_at(&v->sh, r->seq, KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s) gives message %s another %s than its submitted record "
            "(%" PRIu64 ") and the sender's signed header",
            r->seq, ev, id, field, m->seq);
        return NULL;
    }
    return m;
}

static bool check_delivery(verifier *v, const Keten__AuditRecord *r)
{
    const records_msg *m = message_of(v, r);
    if (m == NULL) {
        return false;
    }
    if (!records_msg_has_recipient(v->idx, m, r->node != NULL ? r->node : "")) {
        fail_at(&v->sh, r->seq, KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s): '%s' is not a recipient of the message (submitted at "
            "record %" PRIu64 ")",
            r->seq, records_event_name((int)r->event), r->node, m->seq);
        return false;
    }
    return true;
}

_Static_assert(KETEN_MAX_RECIPIENTS <= 64, "one bit per recipient in records_msg");

/* The broker writes, per message and recipient, at most one delivered
 * record (the first time it hands the message out; a redelivery is not
 * logged again) and at most one final record: the recipient's answer
 * (receipted or refused-by-recipient), after which it no longer sends it
 * the message and does not log a repeated answer, or an expiry, which names
 * only the recipients that had not answered, after which the message is
 * gone. Record r is event ev for recipient id of m: anything else than that
 * order is a record added or repeated. */
typedef enum { STEP_DELIVERED, STEP_ANSWERED, STEP_EXPIRED } step;

static bool recipient_step(
    verifier *v, const Keten__AuditRecord *r, records_msg *m, const char *id, step st)
{
    const char *ev = records_event_name((int)r->event);
    int i = records_msg_recipient_index(v->idx, m, id);
    if (i < 0) {
        fail_at(&v->sh, r->seq, KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s): '%s' is not a recipient of the message (submitted at "
            "record %" PRIu64 ")",
            r->seq, ev, id, m->seq);
        return false;
    }
    uint64_t bit = UINT64_C(1) << (unsigned)i;
    const char *before = NULL, *also = "";
    if ((m->answered & bit) != 0) {
        before = "answered by";
        also = " (receipted or refused-by-recipient)";
    } else if ((m->expired & bit) != 0) {
        before = "expired for";
    } else if (st == STEP_DELIVERED && (m->delivered & bit) != 0) {
        before = "delivered to";
        also = " (a redelivery is not logged again)";
    }
    if (before != NULL) {
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(m->msg_id, KETEN_MSG_ID_BYTES, hex);
        fail_at(&v->sh, r->seq, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (%s): message %s was already %s '%s'%s in an earlier record; "
            "the broker writes one delivery and one receipt, refusal or expiry per recipient: "
            "this record was added or repeated",
            r->seq, ev, hex, before, id, also);
        return false;
    }
    if (st == STEP_DELIVERED) {
        m->delivered |= bit;
    } else if (st == STEP_ANSWERED) {
        m->answered |= bit;
    } else {
        m->expired |= bit;
    }
    return true;
}

static bool check_expired(verifier *v, const Keten__AuditRecord *r)
{
    if (message_of(v, r) == NULL) {
        return false;
    }
    records_msg *m = records_index_find(v->idx, r->msg_id.data);
    if (r->n_recipients == 0) {
        fail_at(&v->sh, r->seq, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (expired) names no recipient (submitted at record %" PRIu64 ")",
            r->seq, m->seq);
        return false;
    }
    if (r->time < m->expires_at) {
        /* The broker expires a message once its clock has passed
         * expires_at, and dates the record at that clock or later. */
        char t1[32], t2[32];
        keten_time_iso(r->time, t1, sizeof t1);
        keten_time_iso(m->expires_at, t2, sizeof t2);
        fail_at(&v->sh, r->seq, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " (expired) is dated %s, before the message expires at %s (its "
            "signed header, record %" PRIu64 "): the broker expires a message only after that",
            r->seq, t1, t2, m->seq);
        return false;
    }
    for (size_t i = 0; i < r->n_recipients; i++) {
        if (!recipient_step(v, r, m, r->recipients[i], STEP_EXPIRED)) {
            return false;
        }
    }
    return true;
}

static bool check_delivered(verifier *v, const Keten__AuditRecord *r)
{
    if (!check_delivery(v, r)) {
        return false;
    }
    records_msg *m = records_index_find(v->idx, r->msg_id.data);
    return recipient_step(v, r, m, r->node, STEP_DELIVERED);
}

/* A receipted or refused-by-recipient record: the recipient's ReceiptProof,
 * checked here on the main thread: each distinct batch head's signature is
 * verified once (v->heads), the leaf's path to its root for every record. */
static bool check_receipted(verifier *v, const Keten__AuditRecord *r)
{
    const char *ev = records_event_name((int)r->event);
    if (!check_delivery(v, r)) {
        return false;
    }
    records_msg *m = records_index_find(v->idx, r->msg_id.data);
    if (r->n_recipients != 1 || !str_eq(r->recipients[0], r->node)) {
        fail_at(&v->sh, r->seq, KETEN_ERR_MISMATCH,
            "record %" PRIu64 " (%s): its recipients are not exactly its node '%s'", r->seq, ev,
            r->node);
        return false;
    }
    keten_err e = sigcheck_receipt(v->in_force, r, m->envelope_hash, v->heads, NULL);
    if (e != KETEN_OK) {
        char what[VERIFIER_WHAT_MAX];
        snprintf(what, sizeof what, "%s", keten_err_detail());
        fail_at(&v->sh, r->seq, e, "%s (the message was submitted at record %" PRIu64 ")", what,
            m->seq);
        return false;
    }
    if (!recipient_step(v, r, m, r->node, STEP_ANSWERED)) {
        return false;
    }
    v->res->receipts++;
    return true;
}

/* Everything about one record the main thread checks; signature checks go
 * to the workers (taking *rec_p). */
/* A key in hexadecimal, as an auth-failed record names a key no
 * certificate has. */
static bool key_hex(const char *s)
{
    return strlen(s) == 2 * KETEN_CURVE_KEY_BYTES
        && strspn(s, "0123456789abcdef") == 2 * KETEN_CURVE_KEY_BYTES;
}

/* The broker writes only node ids in a record's sender, node and
 * recipients (an auth-failed record's node may be the key it refused, in
 * hex, or "unknown") and only registered-label syntax in its category and
 * purpose: names taken from authenticated connections and from headers it
 * verified. Anything else (a text that would write escape sequences to the
 * reader's terminal, say) was not written by the broker as it is. */
static bool check_names(verifier *v, uint64_t n, const Keten__AuditRecord *r)
{
    const char *field = NULL, *value = NULL, *want = "a node id";
    if (r->sender != NULL && r->sender[0] != '\0' && !keten_name_valid(r->sender)) {
        field = "sender";
        value = r->sender;
    } else if (r->node != NULL && r->node[0] != '\0' && !keten_name_valid(r->node)
        && !(r->event == KETEN__EVENT__EVENT_AUTH_FAILED && key_hex(r->node))) {
        field = "node";
        value = r->node;
    }
    for (size_t i = 0; field == NULL && i < r->n_recipients; i++) {
        if (r->recipients[i] == NULL || !keten_name_valid(r->recipients[i])) {
            field = "recipient";
            value = r->recipients[i];
        }
    }
    if (field == NULL && r->category != NULL && r->category[0] != '\0'
        && !keten_label_valid(r->category)) {
        field = "category";
        value = r->category;
        want = "a category name";
    } else if (field == NULL && r->purpose != NULL && r->purpose[0] != '\0'
        && !keten_label_valid(r->purpose)) {
        field = "purpose";
        value = r->purpose;
        want = "a purpose name";
    }
    if (field == NULL) {
        return true;
    }
    char shown[80];
    keten_text_clean(value != NULL ? value : "", shown, sizeof shown);
    fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
        "record %" PRIu64 ": its %s '%s' is not %s; the broker writes no such record "
        "(it was written or changed by something else)",
        n, field, shown, want);
    return false;
}

static bool check_record(verifier *v, uint64_t n, Keten__AuditRecord **rec_p)
{
    const Keten__AuditRecord *r = *rec_p;
    if (r->seq != n) {
        fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " says it is record %" PRIu64
            ": records were removed, inserted or reordered here",
            n, r->seq);
        return false;
    }
    if (n > 0 && r->time < v->last_time) {
        char t1[32], t2[32];
        keten_time_iso(r->time, t1, sizeof t1);
        keten_time_iso(v->last_time, t2, sizeof t2);
        fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " is dated %s, before record %" PRIu64 " (%s): records were "
            "reordered or the time changed",
            n, t1, n - 1, t2);
        return false;
    }
    v->last_time = r->time;
    if (n == 0) {
        v->res->first_time = r->time;
    }
    v->res->last_time = r->time;
    if (r->event <= KETEN__EVENT__EVENT_UNSPECIFIED
        || r->event > KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT) {
        fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT, "record %" PRIu64 " has no valid event (%d)", n,
            (int)r->event);
        return false;
    }
    v->res->events[r->event]++;
    if (!check_names(v, n, r)) {
        return false;
    }
    if (r->event == KETEN__EVENT__EVENT_DIRECTORY_INSTALLED) {
        return check_directory(v, r);
    }
    uint64_t version = v->in_force != NULL ? keten_directory_version(v->in_force) : 0;
    if (r->directory_version != version) {
        fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
            "record %" PRIu64 " names directory version %" PRIu64 " but version %" PRIu64
            " was in force",
            n, r->directory_version, version);
        return false;
    }
    switch (r->event) {
    case KETEN__EVENT__EVENT_SUBMITTED:
        return check_submitted(v, rec_p);
    case KETEN__EVENT__EVENT_RECEIPTED:
    case KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT:
        return check_receipted(v, r);
    case KETEN__EVENT__EVENT_DELIVERED:
        return check_delivered(v, r);
    case KETEN__EVENT__EVENT_EXPIRED:
        return check_expired(v, r);
    case KETEN__EVENT__EVENT_REJECTED:
        if (!records_reason_is_broker((int)r->reason)) {
            fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
                "record %" PRIu64 " (rejected) has no valid reason (%d)", n, (int)r->reason);
            return false;
        }
        if (r->rule != 0 && r->reason != KETEN__REASON__REASON_POLICY) {
            /* The broker records a rule only for a refusal by the policy. */
            fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
                "record %" PRIu64 " (rejected, reason %s) names policy rule %" PRIu32
                "; the broker records a rule only for a refusal by the policy",
                n, records_reason_name((int)r->reason), r->rule);
            return false;
        }
        return true;
    default:
        return true;
    }
}

static void progress(verifier *v, bool last)
{
    if (!v->opts->progress) {
        return;
    }
    uint64_t now = keten_mono_ms();
    if (!last && now - v->progress_mono < PROGRESS_MS) {
        return;
    }
    v->progress_mono = now;
    uint64_t total = v->db->size > 0 ? v->db->size : 1;
    if (last) {
        fprintf(stderr, "\r%60s\r", "");
    } else {
        fprintf(stderr, "\rverifying: %" PRIu64 " of %" PRIu64 " records (%" PRIu64 "%%)", v->n,
            v->db->size, v->n * 100 / total);
    }
    fflush(stderr);
}

static void keep_root(verifier *v)
{
    while (v->next_want < v->n_want && v->want[v->next_want] <= v->n) {
        if (v->want[v->next_want] == v->n) {
            tree_root(v, v->roots[v->next_want]);
            v->have_root[v->next_want] = true;
        }
        v->next_want++;
    }
}

static keten_err read_log(verifier *v)
{
    tiles_reader *rd = NULL;
    keten_err e = tiles_reader_new(v->db->t, &rd);
    if (e != KETEN_OK) {
        return e;
    }
    keep_root(v); /* size 0 */
    for (;;) {
        uint64_t n = v->n;
        if (failed_before(&v->sh, n)) {
            break; /* a worker found an earlier failure */
        }
        uint64_t at = 0;
        const uint8_t *leaf = NULL;
        size_t len = 0;
        bool end = false;
        e = tiles_reader_next(rd, &at, &leaf, &len, &end);
        if (e == KETEN_ERR_NOMEM) {
            break;
        }
        if (e != KETEN_OK) {
            /* A file of the export that does not parse: a verdict, naming it. */
            fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT, "record %" PRIu64 ": %s: %s", n,
                keten_err_str(e), keten_err_detail());
            e = KETEN_OK;
            break;
        }
        if (end) {
            break;
        }
        keten_hash lh;
        keten_merkle_leaf_hash(leaf, len, lh);
        if (!tree_add(v, n, lh)) {
            break;
        }
        v->n = n + 1;
        keep_root(v);
        Keten__AuditRecord *rec = NULL;
        e = records_decode(leaf, len, true, &rec);
        if (e != KETEN_OK) {
            fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
                "record %" PRIu64 " does not decode as an audit record: %s: %s", n,
                keten_err_str(e), keten_err_detail());
            e = KETEN_OK;
            break;
        }
        bool ok = check_record(v, n, &rec);
        records_free(&rec);
        if (!ok) {
            break;
        }
        if ((n & (PROGRESS_EVERY - 1)) == 0) {
            progress(v, false);
        }
    }
    tiles_reader_destroy(&rd);
    progress(v, true);
    return e;
}

/* After a complete pass: the root of the hash tiles. (A tile wider or
 * narrower than the export's size needs is refused by the reader.) */
static void check_tree_end(verifier *v)
{
    uint64_t n = v->n;
    keten_hash stored;
    keten_err e = tiles_root(v->db->t, n, stored);
    if (e != KETEN_OK || sodium_memcmp(stored, v->res->root, KETEN_HASH_BYTES) != 0) {
        fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
            "the stored tree's root of %" PRIu64 " records differs from the root computed "
            "from the records",
            n);
    }
}

/* ---- directories table --------------------------------------------------- */

typedef struct dirtab {
    verifier *v;
    const keten_directory *chain;
    bool failed;
} dirtab;

static keten_err dir_item(void *ctx, uint64_t key, const uint8_t *bytes, size_t len, size_t i)
{
    (void)i;
    dirtab *c = ctx;
    verifier *v = c->v;
    keten_directory *d = NULL;
    keten_err e = keten_directory_verify(
        c->chain == NULL ? v->opts->anchor : NULL, c->chain, bytes, len, 0, &d);
    const keten_directory *logged = dir_version(v, key);
    uint64_t seq = v->n;
    for (size_t j = 0; j < v->n_dirs; j++) {
        if (v->dirs[j].version == key && v->dirs[j].seq != NO_SEQ) {
            seq = v->dirs[j].seq;
        }
    }
    c->failed = true;
    if (e != KETEN_OK) {
        fail_at(&v->sh, seq, e,
            "the directories table: version %" PRIu64 " does not verify as a chain from "
            "the anchor: %s: %s",
            key, keten_err_str(e), keten_err_detail());
        return KETEN_ERR_INCONSISTENT;
    }
    if (keten_directory_version(d) != key) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "the directories table files version %" PRIu64 " under %" PRIu64,
            keten_directory_version(d), key);
        keten_directory_destroy(&d);
        return KETEN_ERR_INCONSISTENT;
    }
    if (logged != NULL) {
        size_t l1 = 0, l2 = 0;
        const uint8_t *b1 = keten_directory_bytes(logged, &l1);
        const uint8_t *b2 = keten_directory_bytes(d, &l2);
        if (l1 != l2 || memcmp(b1, b2, l1) != 0) {
            fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
                "the directories table holds another version %" PRIu64
                " than the one logged at record %" PRIu64,
                key, seq);
            keten_directory_destroy(&d);
            return KETEN_ERR_INCONSISTENT;
        }
    }
    keten_directory *added = d;
    if (add_dir(v, d, NO_SEQ) != KETEN_OK) {
        fail_at(&v->sh, seq, KETEN_ERR_NOMEM, "out of memory");
        return KETEN_ERR_NOMEM;
    }
    c->chain = added;
    c->failed = false;
    return KETEN_OK;
}

static void check_directory_table(verifier *v)
{
    dirtab c = { v, NULL, false };
    size_t n_logged = v->n_dirs; /* the table's versions are added after these */
    keten_err e = tiles_directories(v->db->t, dir_item, &c);
    if (e != KETEN_OK && !c.failed) {
        /* The file itself does not parse: name it. */
        fail_file(
            &v->sh, v->n, KETEN_ERR_INCONSISTENT, "%s: %s", keten_err_str(e), keten_err_detail());
    }
    if (e != KETEN_OK) {
        return;
    }
    /* The broker keeps every version it installs: one the log installed and
     * the table lacks was taken out of the file. */
    for (size_t j = 0; j < n_logged; j++) {
        if (v->dirs[j].seq == NO_SEQ) {
            continue;
        }
        bool held = false;
        for (size_t k = n_logged; k < v->n_dirs && !held; k++) {
            held = v->dirs[k].version == v->dirs[j].version;
        }
        if (!held) {
            fail_at(&v->sh, v->dirs[j].seq, KETEN_ERR_INCONSISTENT,
                "keten/directories lacks directory version %" PRIu64 ", which the log installed "
                "at record %" PRIu64 ": the broker keeps every version it installs, so the file "
                "was cut; ask the operator for a new export",
                v->dirs[j].version, v->dirs[j].seq);
        }
    }
}

/* ---- checkpoints ---------------------------------------------------------- */

static keten_err add_note(
    verifier *v, const char *name, uint64_t key, const char *note, size_t len, uint8_t *owned)
{
    note_in *nn = realloc(v->notes, (v->n_notes + 1) * sizeof *nn);
    if (nn == NULL) {
        free(owned);
        return keten_err_set(KETEN_ERR_NOMEM, "reading checkpoints");
    }
    v->notes = nn;
    note_in *x = &v->notes[v->n_notes];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    if (x->name == NULL) {
        free(owned);
        return keten_err_set(KETEN_ERR_NOMEM, "reading checkpoints");
    }
    v->n_notes++;
    x->key = key;
    x->note = note;
    x->len = len;
    x->owned = owned;
    /* The body ends at the first empty line (keten bodies have none inside). */
    const char *end = NULL;
    for (size_t i = 0; i + 1 < len; i++) {
        if (note[i] == '\n' && note[i + 1] == '\n') {
            end = note + i + 1;
            break;
        }
    }
    keten_err e = end != NULL ? keten_checkpoint_parse_body(note, (size_t)(end - note), &x->body)
                              : keten_err_set(KETEN_ERR_MALFORMED, "no empty line after the body");
    x->body_ok = e == KETEN_OK;
    if (!x->body_ok) {
        snprintf(x->body_err, sizeof x->body_err, "%s", keten_err_detail());
    }
    return KETEN_OK;
}

/* The end of the note that begins at text: after its body (up to the first
 * empty line) and the signature lines ("— " ...) that follow it. A file
 * that keten-node checkpoint --all wrote holds several notes one after the
 * other. */
static size_t note_end(const char *text, size_t len)
{
    static const char dash[] = "\xe2\x80\x94 ";
    size_t i = 0;
    while (i + 1 < len && !(text[i] == '\n' && text[i + 1] == '\n')) {
        i++;
    }
    if (i + 1 >= len) {
        return len;
    }
    i += 2; /* the first signature line */
    while (i < len && len - i >= sizeof dash - 1 && memcmp(text + i, dash, sizeof dash - 1) == 0) {
        const char *nl = memchr(text + i, '\n', len - i);
        if (nl == NULL) {
            return len;
        }
        i = (size_t)(nl - text) + 1;
    }
    return i;
}

/* The notes of a --checkpoint file: one note, or several (keten-node
 * checkpoint --all). */
static keten_err read_note_file(verifier *v, const char *path)
{
    struct stat st;
    char what[256];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (filekind_of_path(path, what, sizeof what) != FILEKIND_FOLDER) {
            snprintf(what, sizeof what, "a folder");
        }
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "--checkpoint %s is %s, not a file: keten-audit reads no partner node's store. On "
            "the node, write every checkpoint it kept to a file with 'keten-node checkpoint "
            "--home DIR --all --out FILE' and give that file",
            path, what);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_file_read(path, VERIFIER_NOTE_FILE_MAX, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    /* Not a file of checkpoint notes at all (empty, another keten file, no
     * "keten/NETWORK" first line): the wrong file was given, which says
     * nothing about the log, so no record is named (exit 1). */
    filekind_kind kind = filekind_of_bytes(buf, len, what, sizeof what);
    if (kind != FILEKIND_CHECKPOINT) {
        sodium_memzero(buf, len); /* it may be a secret key file */
        free(buf);
        if (kind == FILEKIND_EMPTY) {
            return keten_err_set(KETEN_ERR_WRONG_TYPE,
                "--checkpoint %s is empty (0 bytes): give a file of checkpoint notes a partner "
                "node kept ('keten-node checkpoint --home DIR --all --out FILE' on the node)",
                path);
        }
        if (kind != FILEKIND_UNKNOWN) {
            return keten_err_set(KETEN_ERR_WRONG_TYPE,
                "--checkpoint %s is %s, not a file of checkpoint notes: give a file of "
                "checkpoint notes a partner node kept ('keten-node checkpoint --home DIR --all "
                "--out FILE' on the node)",
                path, what);
        }
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "--checkpoint %s is not a file of checkpoint notes (a note begins with a line "
            "'keten/NETWORK', then the tree size): give a file of checkpoint notes a partner "
            "node kept ('keten-node checkpoint --home DIR --all --out FILE' on the node)",
            path);
    }
    size_t off = 0, k = 0;
    do {
        size_t n = note_end((const char *)buf + off, len - off);
        if (n > KETEN_CHECKPOINT_MAX) {
            free(buf);
            return keten_err_set(KETEN_ERR_TOO_LARGE,
                "checkpoint file %s: note %zu is over %u bytes", path, k + 1,
                KETEN_CHECKPOINT_MAX);
        }
        uint8_t *copy = malloc(n + 1);
        if (copy == NULL) {
            free(buf);
            return keten_err_set(KETEN_ERR_NOMEM, "reading %s", path);
        }
        memcpy(copy, buf + off, n);
        copy[n] = '\0';
        char name[600];
        if (off == 0 && n == len) {
            snprintf(name, sizeof name, "checkpoint file %s", path);
        } else {
            snprintf(name, sizeof name, "checkpoint file %s (note %zu)", path, k + 1);
        }
        if ((e = add_note(v, name, NO_SEQ, (const char *)copy, n, copy)) != KETEN_OK) {
            free(buf);
            return e;
        }
        off += n;
        k++;
    } while (off < len);
    free(buf);
    return KETEN_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static keten_err read_notes(verifier *v)
{
    size_t n_stored = 0;
    const tiles_note *stored = auditdb_notes(v->db, &n_stored);
    for (size_t i = 0; i < n_stored; i++) {
        keten_err e = add_note(v, "stored checkpoint", stored[i].size, stored[i].note,
            stored[i].len, NULL);
        if (e != KETEN_OK) {
            return e;
        }
    }
    for (size_t i = 0; i < v->opts->n_checkpoints; i++) {
        keten_err e = read_note_file(v, v->opts->checkpoints[i]);
        if (e != KETEN_OK) {
            return e;
        }
    }
    v->want = calloc(v->n_notes + 1, sizeof *v->want);
    v->roots = calloc(v->n_notes + 1, sizeof *v->roots);
    v->have_root = calloc(v->n_notes + 1, sizeof *v->have_root);
    if (v->want == NULL || v->roots == NULL || v->have_root == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "reading checkpoints");
    }
    for (size_t i = 0; i < v->n_notes; i++) {
        if (v->notes[i].body_ok) {
            v->want[v->n_want++] = v->notes[i].body.size;
        }
    }
    if (v->n_want > 1) {
        qsort(v->want, v->n_want, sizeof *v->want, cmp_u64);
    }
    return KETEN_OK;
}

static bool root_at(const verifier *v, uint64_t size, keten_hash out)
{
    for (size_t i = 0; i < v->n_want; i++) {
        if (v->want[i] == size && v->have_root[i]) {
            memcpy(out, v->roots[i], KETEN_HASH_BYTES);
            return true;
        }
    }
    return false;
}

static void check_note(verifier *v, note_in *x)
{
    uint64_t n = v->n;
    bool external = x->key == NO_SEQ && x->owned != NULL;
    if (!x->body_ok) {
        uint64_t seq = x->key != NO_SEQ && x->key > 0 && x->key <= n ? x->key - 1 : n;
        if (external) {
            fail_file(&v->sh, n, KETEN_ERR_MALFORMED, "%s is not a keten checkpoint: %s", x->name,
                x->body_err);
        } else {
            fail_at(&v->sh, seq, KETEN_ERR_MALFORMED,
                "%s filed under size %" PRIu64 " is not a keten checkpoint: %s", x->name, x->key,
                x->body_err);
        }
        return;
    }
    const keten_checkpoint *cp = &x->body;
    uint64_t seq = cp->size == 0 ? 0 : cp->size <= n ? cp->size - 1 : n;
    if (failed_before(&v->sh, seq)) {
        return;
    }
    char what[700];
    snprintf(what, sizeof what, "%s of size %" PRIu64, x->name, cp->size);
    if (!external && x->key != cp->size) {
        fail_at(
            &v->sh, seq, KETEN_ERR_INCONSISTENT, "%s is filed under size %" PRIu64, what, x->key);
        return;
    }
    /* The origin first: a note of another network (a partner's file from
     * another region) is named as such, not as a bad signature or an
     * unknown directory version of this one. */
    char origin[KETEN_ORIGIN_MAX + 1];
    snprintf(origin, sizeof origin, ORIGIN_PREFIX "%s", v->opts->anchor->network);
    if (strcmp(cp->origin, origin) != 0) {
        fail_at(&v->sh, seq, KETEN_ERR_WRONG_NETWORK,
            "%s has origin '%s', expected '%s': it is a checkpoint of another network, not of "
            "this log",
            what, cp->origin, origin);
        return;
    }
    const keten_directory *dir = dir_version(v, cp->dir_version);
    if (dir == NULL) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "%s names directory version %" PRIu64 ", which neither the log nor the directories "
            "table holds",
            what, cp->dir_version);
        return;
    }
    const Keten__NodeCert *broker = keten_directory_broker(dir);
    if (broker == NULL || broker->log_pk.len != KETEN_SIGN_PK_BYTES) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "%s: directory version %" PRIu64 " lists no broker log key", what, cp->dir_version);
        return;
    }
    keten_checkpoint opened;
    keten_err e = keten_checkpoint_open(x->note, x->len, broker->id, broker->log_pk.data, &opened);
    if (e != KETEN_OK) {
        fail_at(&v->sh, seq, e == KETEN_ERR_NOT_FOUND ? KETEN_ERR_BAD_SIGNATURE : e,
            "%s: the broker's signature (key '%s' of directory version %" PRIu64
            ") does not verify: %s: %s",
            what, broker->id, cp->dir_version, keten_err_str(e), keten_err_detail());
        return;
    }
    if (strcmp(opened.origin, origin) != 0) {
        fail_at(&v->sh, seq, KETEN_ERR_WRONG_NETWORK, "%s has origin '%s', expected '%s'", what,
            opened.origin, origin);
        return;
    }
    if (sodium_memcmp(opened.dir_hash, keten_directory_hash(dir), KETEN_HASH_BYTES) != 0) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "%s names directory version %" PRIu64 " with another hash than the version in the "
            "chain: the broker showed a different directory",
            what, cp->dir_version);
        return;
    }
    if (cp->size > n) {
        /* Records are missing from the end. Every such checkpoint is read
         * first: the largest one says how many at least (check_beyond); of
         * two as large, a partner's (evidence the operator does not hold). */
        v->n_beyond++;
        if (v->beyond == NULL || cp->size > v->beyond->body.size
            || (cp->size == v->beyond->body.size && external && v->beyond->key != NO_SEQ)) {
            v->beyond = x;
        }
        return;
    }
    keten_hash root;
    if (!root_at(v, cp->size, root)) {
        return; /* beyond an earlier failure */
    }
    if (sodium_memcmp(root, opened.root, KETEN_HASH_BYTES) != 0) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "%s is signed by the broker's log key but its root differs from the root of the "
            "log's first %" PRIu64 " records: the log was changed at or before record %" PRIu64
            ", or the checkpoint comes from a forked log",
            what, cp->size, seq);
        return;
    }
    const keten_directory *at = dir_at_size(v, cp->size);
    if (at != NULL && keten_directory_version(at) != cp->dir_version) {
        fail_at(&v->sh, seq, KETEN_ERR_INCONSISTENT,
            "%s names directory version %" PRIu64 ", but version %" PRIu64
            " was in force at that size in the log",
            what, cp->dir_version, keten_directory_version(at));
        return;
    }
    size_t count = 0;
    bool witnessed = false;
    e = keten_checkpoint_witnesses(x->note, x->len, dir, &count, &witnessed);
    if (e != KETEN_OK) {
        fail_at(
            &v->sh, seq, e, "%s: its cosignatures cannot be read: %s", what, keten_err_detail());
        return;
    }
    verifier_result *res = v->res;
    if (external) {
        res->external++;
        res->external_witnessed += witnessed;
        if (cp->size > res->external_max_size) {
            res->external_max_size = cp->size;
        }
        if (count > res->external_cosigners) {
            res->external_cosigners = count;
        }
    } else {
        res->checkpoints++;
        res->checkpoints_witnessed += witnessed;
        if (cp->size > res->latest_checkpoint) {
            res->latest_checkpoint = cp->size;
        }
        if (witnessed && cp->size > res->witnessed_size) {
            res->witnessed_size = cp->size;
        }
    }
}

/* Signed checkpoints larger than the log: the records beyond the log's end
 * are missing, and the largest checkpoint shows at least how many. Named at
 * the first missing record. */
static void check_beyond(verifier *v)
{
    const note_in *x = v->beyond;
    if (x == NULL) {
        return;
    }
    uint64_t n = v->n, size = x->body.size;
    bool external = x->key == NO_SEQ && x->owned != NULL;
    char held[96], whose[700], others[128] = "";
    if (n == 0) {
        snprintf(held, sizeof held, "holds no records");
    } else {
        snprintf(held, sizeof held, "holds only %" PRIu64 " records (0 to %" PRIu64 ")", n, n - 1);
    }
    if (external) {
        snprintf(whose, sizeof whose,
            "%s, given with --checkpoint and signed by the broker's log key,", x->name);
    } else {
        snprintf(whose, sizeof whose,
            "a checkpoint the broker stored with the log, signed by the broker's log key,");
    }
    if (v->n_beyond > 1) {
        snprintf(others, sizeof others,
            "; %zu checkpoints are larger than the log, this is the largest", v->n_beyond);
    }
    fail_at(&v->sh, n, KETEN_ERR_INCONSISTENT,
        "the log %s, but %s covers %" PRIu64 " records: at least records %" PRIu64 "..%" PRIu64
        " are missing from the end of the log%s",
        held, whose, size, n, size - 1, others);
}

void verifier_failure_at(const verifier_failure *f, char out[static VERIFIER_AT_MAX])
{
    if (f->no_record) {
        out[0] = '\0';
    } else {
        snprintf(out, VERIFIER_AT_MAX, " at record %" PRIu64, f->seq);
    }
}

/* ---- run --------------------------------------------------------------------- */

static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) {
        n = 1;
    }
    if (n > VERIFIER_THREADS_MAX) {
        n = VERIFIER_THREADS_MAX;
    }
    return (unsigned)n;
}

static void verifier_free(verifier *v)
{
    for (size_t i = 0; i < v->n_dirs; i++) {
        keten_directory_destroy(&v->dirs[i].dir);
    }
    free(v->dirs);
    for (size_t i = 0; i < v->n_notes; i++) {
        free(v->notes[i].name);
        free(v->notes[i].owned);
    }
    free(v->notes);
    free(v->want);
    free(v->roots);
    free(v->have_root);
    batch_free(&v->cur);
    records_index_destroy(&v->idx);
    sigcheck_heads_destroy(&v->heads);
    pthread_mutex_destroy(&v->sh.mu);
}

keten_err verifier_run(const auditdb *db, const verifier_opts *opts, verifier_result *res)
{
    memset(res, 0, sizeof *res);
    if (opts->anchor == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "verification needs the network anchor");
    }
    uint64_t t0 = keten_mono_ms();
    verifier v;
    memset(&v, 0, sizeof v);
    v.db = db;
    v.opts = opts;
    v.res = res;
    if (pthread_mutex_init(&v.sh.mu, NULL) != 0) {
        return keten_err_set(KETEN_ERR_NOMEM, "cannot make a lock");
    }
    atomic_init(&v.sh.fail_seq, NO_SEQ);
    atomic_init(&v.sh.sender_sigs, 0);
    snprintf(res->network, sizeof res->network, "%s", opts->anchor->network);
    keten_err e = KETEN_OK;
    v.idx = records_index_new();
    v.heads = sigcheck_heads_new();
    if (v.idx == NULL || v.heads == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "making the message index");
        goto out;
    }
    if ((e = read_notes(&v)) != KETEN_OK) {
        goto out;
    }
    unsigned threads = opts->threads != 0 ? opts->threads : default_threads();
    if (threads > VERIFIER_THREADS_MAX) {
        threads = VERIFIER_THREADS_MAX;
    }
    if ((e = pool_start(&v.pool, &v.sh, threads)) != KETEN_OK) {
        goto out;
    }
    v.pool_up = true;
    res->threads = v.pool.n_threads;
    e = read_log(&v);
    flush_batch(&v);
    pool_finish(&v.pool);
    v.pool_up = false;
    if (e != KETEN_OK) {
        goto out;
    }
    res->records = v.n;
    tree_root(&v, res->root);
    res->sender_signatures = atomic_load(&v.sh.sender_sigs);
    res->receipt_signatures = sigcheck_heads_verified(v.heads);
    if (!failed_before(&v.sh, NO_SEQ)) {
        check_tree_end(&v);
    }
    check_directory_table(&v);
    for (size_t i = 0; i < v.n_notes; i++) {
        check_note(&v, &v.notes[i]);
    }
    check_beyond(&v);
    const keten_directory *latest = v.in_force;
    if (latest != NULL) {
        res->quorum = keten_directory_quorum(latest);
        res->partners = keten_directory_partner_count(latest);
    }
    res->ok = atomic_load(&v.sh.fail_seq) == NO_SEQ;
    if (!res->ok) {
        res->failure = v.sh.failure;
    }
out:
    if (v.pool_up) {
        pool_finish(&v.pool);
    }
    res->seconds = (double)(keten_mono_ms() - t0) / 1000.0;
    verifier_free(&v);
    return e;
}
