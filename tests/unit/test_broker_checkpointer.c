/* broker_checkpointer: the broker's signed checkpoints and the proofs that
 * go with a batch's frames (broker/checkpointer.h), on a minimal broker
 * (fixture_broker.h: real store, directory, audit log, log key; the
 * connections and batches set up by hand). Records are appended with
 * audit.c; every note is opened with the broker's real log key and every
 * proof checked against the log's own roots (lib/merkle.h).
 *
 * A commit checkpoint for each batch that appended (twin: none for a batch
 * that did not; a failed batch's is forgotten). A witness checkpoint, stored
 * and sent to every connection with a Hello, every N records (twin: none in
 * between). Hello: beyond the log it is refused (Error UNKNOWN_CHECKPOINT,
 * audited, no checkpoint and no proof frame for that connection); within
 * it, the next checkpoint comes with a consistency proof from the size
 * named. A proof frame's checkpoint comes first and its proof holds against
 * that checkpoint's root. Cosignatures: attached when they verify, refused
 * otherwise (a line that does not parse MALFORMED, one under another key
 * name SENDER_MISMATCH, one that does not verify BAD_SIGNATURE); a second
 * one of the same node ignored, unanswered; a checkpoint that reaches its
 * quorum is sent again. Proof
 * requests out of range are refused; in range they are answered with
 * proofs that hold, of records of the asking node's own traffic (and the
 * directory's) only: one of other partners' traffic is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit.h"
#include "checkpoint.h"
#include "checkpointer.h"
#include "dirstate.h"
#include "fixture.h"
#include "fixture_broker.h"
#include "logproof.h"
#include "merkle.h"
#include "metrics.h"
#include "outq.h"
#include "pb.h"
#include "store.h"
#include "util.h"

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "charlie:police", NULL };

typedef struct ctx {
    fixture *fx;
    fbroker *fb;
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fb = fbroker_new(t->fx, "hub");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    fbroker_destroy(&t->fb);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

static void append(ctx *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(
            audit_node(&t->fb->b, KETEN__EVENT__EVENT_NODE_CONNECTED, "alpha", NULL), KETEN_OK);
    }
}

/* A batch that appends n records (and ends: checkpoint, proofs, commit);
 * what it staged is left in b->out. */
static void batch(ctx *t, size_t n)
{
    outq_clear(t->fb->b.out);
    fbroker_begin(t->fb);
    append(t, n);
    fbroker_end(t->fb);
}

/* A batch that appends n "delivered" records of messages alpha sent to
 * bravo: records of their traffic, whose proofs either of them may ask for
 * (and charlie may not). */
static void batch_alpha_bravo(ctx *t, size_t n)
{
    outq_clear(t->fb->b.out);
    fbroker_begin(t->fb);
    for (size_t i = 0; i < n; i++) {
        uint8_t id[KETEN_MSG_ID_BYTES];
        memset(id, (int)(0x10 + i), sizeof id);
        assert_int_equal(audit_delivered(&t->fb->b, id, "alpha", "bravo", NULL), KETEN_OK);
    }
    fbroker_end(t->fb);
}

static void root_of(ctx *t, uint64_t size, keten_hash out)
{
    broker *b = &t->fb->b;
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    assert_int_equal(keten_merkle_log_root(b->st->log, txn, size, out), KETEN_OK);
    store_abort(&txn);
}

/* Open a note with the broker's log key; check it is the log's at its size. */
static keten_checkpoint open_note(ctx *t, const char *note)
{
    broker *b = &t->fb->b;
    keten_checkpoint cp;
    assert_int_equal(
        keten_checkpoint_open(note, strlen(note), "hub", b->me->log_pk, &cp), KETEN_OK);
    keten_hash root;
    root_of(t, cp.size, root);
    assert_memory_equal(cp.root, root, KETEN_HASH_BYTES);
    assert_string_equal(cp.origin, "keten/testnet");
    assert_int_equal(cp.dir_version, keten_directory_version(broker_dir(b)));
    assert_memory_equal(cp.dir_hash, keten_directory_hash(broker_dir(b)), KETEN_HASH_BYTES);
    return cp;
}

/* The CheckpointFrame staged for node at or after *from (advanced past it);
 * NULL if none. The consistency proof it carries is checked. */
static Keten__Frame *checkpoint_frame(ctx *t, const char *node, size_t *from)
{
    size_t i = fbroker_find(t->fb, *from, node, KETEN__FRAME__BODY_CHECKPOINT);
    if (i == SIZE_MAX) {
        return NULL;
    }
    *from = i + 1;
    Keten__Frame *f = fbroker_frame(t->fb, i);
    const Keten__CheckpointFrame *cf = f->checkpoint;
    keten_checkpoint cp = open_note(t, cf->note);
    if (cf->old_size > 0 && cf->old_size < cp.size) {
        keten_hash old_root, proof[KETEN_MERKLE_MAX_PROOF];
        root_of(t, cf->old_size, old_root);
        assert_true(cf->n_consistency <= KETEN_MERKLE_MAX_PROOF);
        for (size_t k = 0; k < cf->n_consistency; k++) {
            assert_int_equal(cf->consistency[k].len, KETEN_HASH_BYTES);
            memcpy(proof[k], cf->consistency[k].data, KETEN_HASH_BYTES);
        }
        assert_int_equal(keten_merkle_verify_consistency(cf->old_size, cp.size, old_root, cp.root,
                             (const keten_hash *)proof, cf->n_consistency),
            KETEN_OK);
    } else {
        assert_int_equal(cf->n_consistency, 0);
    }
    return f;
}

static void free_frame(Keten__Frame **f)
{
    keten_pb_free((ProtobufCMessage **)(void *)f);
}

static bool stored_checkpoint(ctx *t, uint64_t size)
{
    broker *b = &t->fb->b;
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    const char *note = NULL;
    size_t len = 0;
    keten_err e = store_checkpoint_get(b->st, txn, size, &note, &len);
    store_abort(&txn);
    keten_err_clear();
    return e == KETEN_OK;
}

/* ---- commit checkpoints ----------------------------------------------------- */

static void test_commit_checkpoint_per_batch(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    checkpointer *cp = b->cp;
    /* At start: the one of the current size (the directory's record). */
    assert_int_equal(cp->size, 1);
    assert_non_null(cp->note);
    assert_int_equal(open_note(t, cp->note).size, 1);
    uint64_t signed0 = atomic_load(&b->m->commit_checkpoints);

    batch(t, 2);
    assert_int_equal(cp->size, 3);
    assert_int_equal(open_note(t, cp->note).size, 3);
    assert_int_equal(atomic_load(&b->m->commit_checkpoints), signed0 + 1);
    assert_int_equal(atomic_load(&b->m->checkpoint_size), 3);

    /* Twin: a batch that appended nothing signs nothing. */
    char *before = cp->note;
    batch(t, 0);
    assert_ptr_equal(cp->note, before);
    assert_int_equal(cp->size, 3);
    assert_int_equal(atomic_load(&b->m->commit_checkpoints), signed0 + 1);

    /* A failed batch: its checkpoint (never sent) is forgotten with it. */
    fbroker_begin(t->fb);
    append(t, 4);
    assert_int_equal(checkpointer_commit(b), KETEN_OK);
    assert_int_equal(cp->size, 7);
    fbroker_abort(t->fb);
    assert_int_equal(cp->size, 3);
    assert_int_equal(open_note(t, cp->note).size, 3);
    assert_int_equal(fbroker_log_size(t->fb), 3);

    /* At a restart the one of the current size is signed again: the same
     * note (Ed25519 is deterministic). */
    char *note = strdup(cp->note);
    checkpointer_destroy(&b->cp);
    assert_int_equal(checkpointer_open(b), KETEN_OK);
    assert_string_equal(b->cp->note, note);
    free(note);
}

/* ---- witness checkpoints ------------------------------------------------------- */

static void test_witness_every_n_records(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    t->fb->cfg.checkpoint_records = 3;
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    uint64_t cp_sent = bravo->cp_sent;
    size_t from = 0;
    for (uint64_t size = 2; size <= 7; size++) {
        batch(t, 1);
        assert_int_equal(b->cp->size, size);
        bool witness = size == 3 || size == 6;
        assert_int_equal(stored_checkpoint(t, size), witness);
        from = 0;
        Keten__Frame *f = checkpoint_frame(t, "bravo", &from);
        if (!witness) {
            /* Nothing to prove to bravo: no frame at all. */
            assert_null(f);
            assert_int_equal(bravo->cp_sent, cp_sent);
            continue;
        }
        assert_non_null(f);
        assert_true(f->checkpoint->witness);
        assert_int_equal(f->checkpoint->old_size, cp_sent);
        assert_int_equal(open_note(t, f->checkpoint->note).size, size);
        free_frame(&f);
        assert_int_equal(bravo->cp_sent, size);
        cp_sent = size;
    }
    assert_int_equal(b->cp->last_size, 6);
    assert_int_equal(atomic_load(&b->m->witness_checkpoints), 2);
    assert_false(stored_checkpoint(t, 1));
}

/* ---- Hello --------------------------------------------------------------------- */

static void hello(ctx *t, conn *c, uint64_t tree_size)
{
    Keten__Hello h = KETEN__HELLO__INIT;
    h.tree_size = tree_size;
    outq_clear(t->fb->b.out);
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_hello(&t->fb->b, c, 3, &h), KETEN_OK);
    fbroker_end(t->fb);
}

static void test_hello_beyond_the_log(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    batch(t, 4); /* 5 records */
    conn *bravo = fbroker_conn(t->fb, "bravo");
    uint64_t log0 = fbroker_log_size(t->fb);
    hello(t, bravo, 6);
    assert_false(bravo->hello);
    assert_int_equal(fbroker_log_size(t->fb), log0 + 1);
    Keten__AuditRecord *r = fbroker_record(t->fb, log0);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_REJECTED);
    assert_int_equal(r->reason, KETEN__REASON__REASON_UNKNOWN_CHECKPOINT);
    assert_string_equal(r->sender, "bravo");
    keten_pb_free((ProtobufCMessage **)(void *)&r);
    assert_int_equal(b->out->n, 1);
    Keten__Frame *f = fbroker_frame(t->fb, 0);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_ERROR);
    assert_int_equal(f->request_id, 3);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_UNKNOWN_CHECKPOINT);
    assert_string_equal(f->error->detail, "your checkpoint has 6 leaves; this log has 5");
    free_frame(&f);

    /* No proof frame for it either: its ack slot is dropped. */
    outq_clear(b->out);
    fbroker_begin(t->fb);
    append(t, 1);
    assert_int_equal(outq_proof(b->out, bravo, 4, OUTQ_SUBMIT_ACK, 2), KETEN_OK);
    fbroker_end(t->fb);
    assert_int_equal(b->out->n, 0);

    /* Twin: a Hello of the log's size is accepted (and needs no checkpoint:
     * it holds the latest). */
    uint64_t size = fbroker_log_size(t->fb);
    hello(t, bravo, size);
    assert_true(bravo->hello);
    assert_int_equal(bravo->cp_sent, size);
    assert_int_equal(b->out->n, 0);
}

/* The first checkpoint after a Hello is proven from the size it named. */
static void test_hello_consistency(void **state)
{
    ctx *t = *state;
    batch(t, 9); /* 10 records */
    conn *bravo = fbroker_conn(t->fb, "bravo");
    conn *charlie = fbroker_conn(t->fb, "charlie");
    hello(t, bravo, 3);
    size_t from = 0;
    Keten__Frame *f = checkpoint_frame(t, "bravo", &from);
    assert_non_null(f);
    assert_int_equal(f->checkpoint->old_size, 3);
    assert_true(f->checkpoint->n_consistency > 0);
    assert_false(f->checkpoint->witness);
    assert_int_equal(open_note(t, f->checkpoint->note).size, 10);
    free_frame(&f);
    assert_int_equal(bravo->cp_sent, 10);

    hello(t, charlie, 0); /* a node new to the log */
    from = 0;
    f = checkpoint_frame(t, "charlie", &from);
    assert_non_null(f);
    assert_int_equal(f->checkpoint->old_size, 0);
    assert_int_equal(f->checkpoint->n_consistency, 0);
    free_frame(&f);
}

/* ---- proofs with the batch's frames ---------------------------------------- */

static void test_checkpoint_before_proof(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    outq_clear(b->out);
    fbroker_begin(t->fb);
    append(t, 3);
    uint64_t leaf = fbroker_log_size(t->fb) - 2;
    assert_int_equal(outq_proof(b->out, bravo, 8, OUTQ_SUBMIT_ACK, leaf), KETEN_OK);
    fbroker_end(t->fb);
    assert_int_equal(b->out->n, 2);
    size_t from = 0;
    Keten__Frame *cf = checkpoint_frame(t, "bravo", &from);
    assert_non_null(cf);
    assert_int_equal(from, 1); /* first */
    keten_checkpoint cp = open_note(t, cf->checkpoint->note);
    Keten__Frame *f = fbroker_frame(t->fb, 1);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_SUBMIT_ACK);
    const Keten__LeafProof *p = f->submit_ack->proof;
    assert_int_equal(p->tree_size, cp.size);
    assert_int_equal(p->leaf_index, leaf);
    Keten__AuditRecord *rec = NULL;
    assert_int_equal(keten_logproof_verify(p, cp.root, &rec), KETEN_OK);
    assert_int_equal(rec->seq, leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    /* Twin: against another tree's root it does not hold. */
    keten_hash other;
    root_of(t, cp.size - 1, other);
    assert_int_not_equal(keten_logproof_verify(p, other, &rec), KETEN_OK);
    keten_err_clear();
    free_frame(&f);
    free_frame(&cf);
}

/* ---- cosignatures ----------------------------------------------------------- */

/* A cosignature line under `as`, signed with key_of's key, of the stored
 * checkpoint of that size (else the latest); free() it. */
static char *cosign_sign(ctx *t, const char *as, const char *key_of, uint64_t size)
{
    broker *b = &t->fb->b;
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    const char *note = NULL;
    size_t len = 0;
    char *copy = NULL;
    if (store_checkpoint_get(b->st, txn, size, &note, &len) == KETEN_OK) {
        copy = strndup(note, len);
    } else {
        copy = strdup(b->cp->note);
        keten_err_clear();
    }
    store_abort(&txn);
    char *line = NULL;
    assert_int_equal(keten_checkpoint_cosignature_sign(copy, strlen(copy), as,
                         fixture_node(t->fx, key_of)->sign_sk, keten_now_ms() / 1000, &line),
        KETEN_OK);
    free(copy);
    return line;
}

static void cosign(ctx *t, conn *c, const char *as, const char *key_of, uint64_t size)
{
    broker *b = &t->fb->b;
    char *line = cosign_sign(t, as, key_of, size);
    Keten__Cosignature cs = KETEN__COSIGNATURE__INIT;
    cs.node = (char *)as;
    cs.line = line;
    cs.tree_size = size;
    outq_clear(b->out);
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_cosign(b, c, 6, &cs), KETEN_OK);
    fbroker_end(t->fb);
    free(line);
}

/* A cosignature frame of bravo carrying the line as given. */
static void cosign_line(ctx *t, conn *c, const char *node, const char *line, uint64_t size)
{
    broker *b = &t->fb->b;
    Keten__Cosignature cs = KETEN__COSIGNATURE__INIT;
    cs.node = (char *)node;
    cs.line = (char *)line;
    cs.tree_size = size;
    outq_clear(b->out);
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_cosign(b, c, 6, &cs), KETEN_OK);
    fbroker_end(t->fb);
}

static size_t witnesses_of(ctx *t, uint64_t size)
{
    broker *b = &t->fb->b;
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    const char *note = NULL;
    size_t len = 0;
    assert_int_equal(store_checkpoint_get(b->st, txn, size, &note, &len), KETEN_OK);
    size_t n = 0;
    bool witnessed = false;
    assert_int_equal(
        keten_checkpoint_witnesses(note, len, broker_dir(b), &n, &witnessed), KETEN_OK);
    store_abort(&txn);
    return n;
}

static Keten__Reason error_reason(ctx *t, const char *node)
{
    size_t i = fbroker_find(t->fb, 0, node, KETEN__FRAME__BODY_ERROR);
    if (i == SIZE_MAX) {
        return KETEN__REASON__REASON_NONE;
    }
    Keten__Frame *f = fbroker_frame(t->fb, i);
    Keten__Reason r = f->error->reason;
    free_frame(&f);
    return r;
}

/* A signature line "— NAME AAAA..." that makes the stored note of `size`
 * exactly `total` bytes long (NAME: x's, as many as it takes). */
static char *line_for_total(ctx *t, uint64_t size, size_t total)
{
    broker *b = &t->fb->b;
    MDB_txn *txn = NULL;
    assert_int_equal(store_begin(b->st, false, &txn), KETEN_OK);
    const char *note = NULL;
    size_t len = 0;
    assert_int_equal(store_checkpoint_get(b->st, txn, size, &note, &len), KETEN_OK);
    store_abort(&txn);
    static const char dash[] = "\xe2\x80\x94 ";
    /* total = len + line + 1; line = dash, name, space, base64 (4k). */
    size_t rest = total - len - 1 - (sizeof dash - 1) - 1;
    size_t name = 4 + rest % 4;
    size_t b64 = rest - name;
    assert_true(b64 % 4 == 0 && b64 > 0);
    char *line = malloc(total);
    assert_non_null(line);
    size_t o = 0;
    memcpy(line, dash, sizeof dash - 1);
    o += sizeof dash - 1;
    memset(line + o, 'x', name);
    o += name;
    line[o++] = ' ';
    memset(line + o, 'A', b64);
    o += b64;
    line[o] = '\0';
    assert_int_equal(len + o + 1, total);
    return line;
}

/* A cosignature line that would make the note larger than
 * KETEN_CHECKPOINT_MAX is refused TOO_LARGE (section 12.2, check 4); one
 * that makes it exactly that large passes the check and is judged by the
 * next one (a key name that is not the node's: SENDER_MISMATCH). */
static void test_cosignature_note_limit(void **state)
{
    ctx *t = *state;
    t->fb->cfg.checkpoint_records = 2;
    fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    batch(t, 1); /* 2 records: a witness checkpoint */
    assert_true(stored_checkpoint(t, 2));
    char *over = line_for_total(t, 2, (size_t)KETEN_CHECKPOINT_MAX + 1);
    cosign_line(t, bravo, "bravo", over, 2);
    assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_TOO_LARGE);
    free(over);
    char *at = line_for_total(t, 2, KETEN_CHECKPOINT_MAX);
    cosign_line(t, bravo, "bravo", at, 2);
    assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_SENDER_MISMATCH);
    free(at);
    assert_int_equal(witnesses_of(t, 2), 0);
}

static void test_cosignatures(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    t->fb->cfg.checkpoint_records = 2;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    batch(t, 1); /* 2 records: a witness checkpoint */
    assert_true(stored_checkpoint(t, 2));
    assert_int_equal(witnesses_of(t, 2), 0);

    /* Refused: another node's key, another node's name, a size not stored. */
    cosign(t, bravo, "bravo", "charlie", 2);
    assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_BAD_SIGNATURE);
    cosign(t, bravo, "alpha", "alpha", 2);
    assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_SENDER_MISMATCH);
    cosign(t, bravo, "bravo", "bravo", 1);
    assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_MALFORMED);
    /* A line that does not parse is malformed input, not a bad signature:
     * no em dash, two lines, base64 that is not standard, nothing. */
    const char *unparsed[] = { "- bravo AAAA", "\xe2\x80\x94 bravo AAAAAAAA\nmore",
        "\xe2\x80\x94 bravo AAAA_AAA", "" };
    for (size_t i = 0; i < sizeof unparsed / sizeof unparsed[0]; i++) {
        cosign_line(t, bravo, "bravo", unparsed[i], 2);
        assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_MALFORMED);
    }
    /* A well-formed line that bravo sends under alpha's key name (signed
     * with alpha's key or its own): bravo cosigns only as itself. */
    {
        assert_true(stored_checkpoint(t, 2));
        const char *keys[] = { "alpha", "bravo" };
        for (size_t i = 0; i < 2; i++) {
            char *line = cosign_sign(t, "alpha", keys[i], 2);
            cosign_line(t, bravo, "bravo", line, 2);
            assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_SENDER_MISMATCH);
            free(line);
        }
    }
    assert_int_equal(witnesses_of(t, 2), 0);

    /* Twin: bravo's own; then alpha's makes the quorum (2 of 3 partners) and
     * the witnessed note goes to every connection with a Hello. */
    cosign(t, bravo, "bravo", "bravo", 2);
    assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_NONE);
    assert_int_equal(witnesses_of(t, 2), 1);
    assert_int_equal(b->out->n, 0);
    cosign(t, bravo, "bravo", "bravo", 2); /* again: ignored, unanswered */
    assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_NONE);
    assert_int_equal(b->out->n, 0);
    assert_int_equal(witnesses_of(t, 2), 1);
    cosign(t, bravo, "bravo", "charlie", 2); /* a bad second line: ignored too */
    assert_int_equal(error_reason(t, "bravo"), KETEN__REASON__REASON_NONE);
    assert_int_equal(witnesses_of(t, 2), 1);
    cosign(t, alpha, "alpha", "alpha", 2);
    assert_int_equal(witnesses_of(t, 2), 2);
    size_t from = 0;
    Keten__Frame *f = checkpoint_frame(t, "bravo", &from);
    assert_non_null(f);
    assert_true(f->checkpoint->witness);
    assert_int_equal(open_note(t, f->checkpoint->note).size, 2);
    size_t count = 0;
    bool witnessed = false;
    assert_int_equal(keten_checkpoint_witnesses(f->checkpoint->note, strlen(f->checkpoint->note),
                         broker_dir(b), &count, &witnessed),
        KETEN_OK);
    assert_true(witnessed);
    free_frame(&f);
    from = 0;
    f = checkpoint_frame(t, "alpha", &from);
    assert_non_null(f);
    free_frame(&f);
}

/* A Hello that names less than the connection was already sent (an earlier
 * Hello, still on its way while the node took a larger checkpoint), in the
 * batch where a checkpoint below what was sent becomes witnessed: that
 * checkpoint goes as news (old_size = its size, no proof). Proven from the
 * Hello's size it was below the node's new reference and not news, and
 * keten-node raised inconsistent-checkpoint against an honest broker (seen
 * in fault_broker_crash under load). Twin: a connection never sent more
 * than the Hello's size gets it proven from there, to take and cosign. */
static void test_witnessed_after_earlier_hello(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    t->fb->cfg.checkpoint_records = 2;
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    batch(t, 1);
    uint64_t w = fbroker_log_size(t->fb);
    assert_true(stored_checkpoint(t, w)); /* the witness checkpoint to come */
    batch(t, 3);
    uint64_t sent = bravo->cp_sent;
    assert_true(sent > w);
    assert_int_equal(bravo->cp_max, sent);
    cosign(t, bravo, "bravo", "bravo", w);
    assert_int_equal(witnesses_of(t, w), 1);
    conn *charlie = fbroker_conn(t->fb, "charlie");

    /* One batch: bravo's earlier Hello naming 0 (its first, before it took
     * any checkpoint), charlie's first Hello, and alpha's cosignature, which
     * makes w witnessed. */
    char *line = cosign_sign(t, "alpha", "alpha", w);
    Keten__Cosignature cs = KETEN__COSIGNATURE__INIT;
    cs.node = (char *)"alpha";
    cs.line = line;
    cs.tree_size = w;
    Keten__Hello h = KETEN__HELLO__INIT;
    outq_clear(b->out);
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_hello(b, bravo, 3, &h), KETEN_OK);
    assert_int_equal(checkpointer_hello(b, charlie, 3, &h), KETEN_OK);
    assert_int_equal(checkpointer_cosign(b, alpha, 6, &cs), KETEN_OK);
    fbroker_end(t->fb);
    free(line);
    assert_int_equal(witnesses_of(t, w), 2);

    size_t from = 0;
    Keten__Frame *f = checkpoint_frame(t, "bravo", &from);
    assert_non_null(f);
    assert_int_equal(open_note(t, f->checkpoint->note).size, w);
    assert_int_equal(f->checkpoint->old_size, w); /* news */
    assert_int_equal(f->checkpoint->n_consistency, 0);
    free_frame(&f);
    f = checkpoint_frame(t, "bravo", &from); /* the batch's, from the Hello's size */
    assert_non_null(f);
    assert_int_equal(f->checkpoint->old_size, 0);
    assert_true(open_note(t, f->checkpoint->note).size >= sent);
    free_frame(&f);

    /* Twin: charlie, never sent anything: w as its first checkpoint, to be
     * taken and cosigned; then the batch's checkpoint proven from w. */
    from = 0;
    f = checkpoint_frame(t, "charlie", &from);
    assert_non_null(f);
    assert_int_equal(open_note(t, f->checkpoint->note).size, w);
    assert_int_equal(f->checkpoint->old_size, 0);
    assert_true(f->checkpoint->witness);
    free_frame(&f);
    f = checkpoint_frame(t, "charlie", &from);
    assert_non_null(f);
    assert_int_equal(f->checkpoint->old_size, w);
    free_frame(&f);
}

/* ---- proof requests -------------------------------------------------------- */

static Keten__Frame *ask_as(
    ctx *t, const char *node, uint64_t old_size, uint64_t tree_size, uint64_t *leaves, size_t n)
{
    broker *b = &t->fb->b;
    conn *c = conns_find_node(b->conns, node);
    assert_non_null(c);
    Keten__ProofRequest pr = KETEN__PROOF_REQUEST__INIT;
    pr.old_size = old_size;
    pr.tree_size = tree_size;
    pr.leaf_indexes = leaves;
    pr.n_leaf_indexes = n;
    outq_clear(b->out);
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_proof(b, c, 9, &pr), KETEN_OK);
    fbroker_end(t->fb);
    assert_int_equal(b->out->n, 1);
    return fbroker_frame(t->fb, 0);
}

static Keten__Frame *ask(ctx *t, uint64_t old_size, uint64_t tree_size, uint64_t *leaves, size_t n)
{
    return ask_as(t, "bravo", old_size, tree_size, leaves, n);
}

/* Answers to requests are budgeted per node (conns.h): once bravo's budget
 * is spent, its proof request is refused TOO_LARGE, also on a new
 * connection; alpha's is answered. */
static void test_answer_budget(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    fbroker_conn_hello(t->fb, "bravo");
    conn *alpha = fbroker_conn_hello(t->fb, "alpha");
    batch_alpha_bravo(t, 7); /* 8 records */
    uint64_t want[] = { 0, 5, 7 };
    Keten__Frame *f = ask(t, 3, 8, want, 3);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_PROOF_RESPONSE);
    free_frame(&f);
    assert_int_equal(atomic_load(&b->m->answers_refused), 0);
    bool ok = false;
    uint64_t wait = 0;
    /* Spend all of bravo's budget as of 60 s from now: nothing comes back
     * before then, whatever the clock does while the test runs. */
    assert_int_equal(conns_answer_take(b->conns, "bravo", CONN_ANSWER_BYTES_BURST,
                         keten_mono_ms() + 60000, &ok, &wait),
        KETEN_OK);
    assert_true(ok);
    f = ask(t, 3, 8, want, 3);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_ERROR);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_TOO_LARGE);
    assert_non_null(strstr(f->error->detail, "ask again"));
    assert_int_equal(f->request_id, 9);
    free_frame(&f);
    assert_int_equal(atomic_load(&b->m->answers_refused), 1); /* counted for the operator */
    /* A new connection of bravo does not start afresh, and a directory
     * request is an answer of the same budget. */
    conns_remove(b->conns, conns_find_node(b->conns, "bravo"));
    conn *bravo = fbroker_conn_hello(t->fb, "bravo");
    f = ask(t, 3, 8, want, 3);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_ERROR);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_TOO_LARGE);
    free_frame(&f);
    outq_clear(b->out);
    fbroker_begin(t->fb);
    assert_int_equal(dirstate_serve(b, bravo, 4, 0), KETEN_OK);
    fbroker_end(t->fb);
    f = fbroker_frame(t->fb, 0);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_ERROR);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_TOO_LARGE);
    free_frame(&f);
    assert_int_equal(atomic_load(&b->m->answers_refused), 3);
    /* alpha's budget is its own. */
    Keten__ProofRequest pr = KETEN__PROOF_REQUEST__INIT;
    pr.old_size = 3;
    pr.tree_size = 8;
    pr.leaf_indexes = want;
    pr.n_leaf_indexes = 3;
    outq_clear(b->out);
    fbroker_begin(t->fb);
    assert_int_equal(checkpointer_proof(b, alpha, 9, &pr), KETEN_OK);
    fbroker_end(t->fb);
    f = fbroker_frame(t->fb, 0);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_PROOF_RESPONSE);
    free_frame(&f);
    assert_int_equal(atomic_load(&b->m->answers_refused), 3); /* an answer sent is not counted */
}

static void test_proof_requests(void **state)
{
    ctx *t = *state;
    fbroker_conn_hello(t->fb, "bravo");
    batch_alpha_bravo(t, 7); /* 8 records */
    uint64_t leaves[CHECKPOINTER_PROOF_LEAVES + 1] = { 0 };
    struct {
        uint64_t old_size, tree_size, leaf;
        size_t n;
    } bad[] = {
        { 0, 0, 0, 0 }, /* no tree */
        { 0, 9, 0, 0 }, /* beyond the log */
        { 5, 4, 0, 0 }, /* old after new */
        { 0, 4, 4, 1 }, /* leaf beyond the tree */
        { 0, 8, 0, CHECKPOINTER_PROOF_LEAVES + 1 }, /* too many at once */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        leaves[0] = bad[i].leaf;
        Keten__Frame *f = ask(t, bad[i].old_size, bad[i].tree_size, leaves, bad[i].n);
        assert_int_equal(f->body_case, KETEN__FRAME__BODY_ERROR);
        assert_int_equal(f->error->reason, KETEN__REASON__REASON_MALFORMED);
        free_frame(&f);
    }
    /* Twin of "too many at once": exactly CHECKPOINTER_PROOF_LEAVES. */
    leaves[0] = 0;
    Keten__Frame *f = ask(t, 0, 8, leaves, CHECKPOINTER_PROOF_LEAVES);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_PROOF_RESPONSE);
    assert_int_equal(f->proof_response->n_inclusions, CHECKPOINTER_PROOF_LEAVES);
    free_frame(&f);
    uint64_t want[] = { 0, 5, 7 };
    f = ask(t, 3, 8, want, 3);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_PROOF_RESPONSE);
    const Keten__ProofResponse *pr = f->proof_response;
    assert_int_equal(pr->tree_size, 8);
    keten_hash root, old_root, path[KETEN_MERKLE_MAX_PROOF];
    root_of(t, 8, root);
    root_of(t, 3, old_root);
    for (size_t k = 0; k < pr->n_consistency; k++) {
        memcpy(path[k], pr->consistency[k].data, KETEN_HASH_BYTES);
    }
    assert_int_equal(keten_merkle_verify_consistency(
                         3, 8, old_root, root, (const keten_hash *)path, pr->n_consistency),
        KETEN_OK);
    assert_int_equal(pr->n_inclusions, 3);
    for (size_t i = 0; i < 3; i++) {
        const Keten__InclusionProof *ip = pr->inclusions[i];
        assert_int_equal(ip->leaf_index, want[i]);
        keten_hash lh;
        keten_merkle_leaf_hash(ip->leaf.data, ip->leaf.len, lh);
        assert_memory_equal(lh, ip->leaf_hash.data, KETEN_HASH_BYTES);
        for (size_t k = 0; k < ip->n_path; k++) {
            memcpy(path[k], ip->path[k].data, KETEN_HASH_BYTES);
        }
        assert_int_equal(keten_merkle_verify_inclusion(
                             lh, ip->leaf_index, 8, (const keten_hash *)path, ip->n_path, root),
            KETEN_OK);
    }
    free_frame(&f);
}

/* A Keten__Frame refusing a proof request of node for a record of others'
 * traffic: SENDER_MISMATCH, request 9, naming the leaf and nothing of it. */
static void refused_as(ctx *t, const char *node, uint64_t *leaves, size_t n, uint64_t bad)
{
    uint64_t size = fbroker_log_size(t->fb);
    Keten__Frame *f = ask_as(t, node, 0, size, leaves, n);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_ERROR);
    assert_int_equal(f->error->reason, KETEN__REASON__REASON_SENDER_MISMATCH);
    assert_int_equal(f->request_id, 9);
    assert_int_equal(f->error->msg_id.len, 0);
    char want[64];
    snprintf(want, sizeof want, "leaf %llu is not a record of %s's", (unsigned long long)bad, node);
    assert_non_null(strstr(f->error->detail, want));
    free_frame(&f);
}

/* The proofs served as node asks for them: each inclusion proof's record
 * is the leaf's and holds against the log's root. */
static void served_as(ctx *t, const char *node, uint64_t *leaves, size_t n)
{
    uint64_t size = fbroker_log_size(t->fb);
    Keten__Frame *f = ask_as(t, node, 0, size, leaves, n);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_PROOF_RESPONSE);
    assert_int_equal(f->proof_response->n_inclusions, n);
    keten_hash root, path[KETEN_MERKLE_MAX_PROOF];
    root_of(t, size, root);
    for (size_t i = 0; i < n; i++) {
        const Keten__InclusionProof *ip = f->proof_response->inclusions[i];
        assert_int_equal(ip->leaf_index, leaves[i]);
        Keten__AuditRecord *r = fbroker_record(t->fb, leaves[i]);
        assert_int_equal(r->seq, leaves[i]);
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        keten_hash lh;
        keten_merkle_leaf_hash(ip->leaf.data, ip->leaf.len, lh);
        assert_true(ip->n_path <= KETEN_MERKLE_MAX_PROOF);
        for (size_t k = 0; k < ip->n_path; k++) {
            memcpy(path[k], ip->path[k].data, KETEN_HASH_BYTES);
        }
        assert_int_equal(keten_merkle_verify_inclusion(
                             lh, ip->leaf_index, size, (const keten_hash *)path, ip->n_path, root),
            KETEN_OK);
    }
    free_frame(&f);
}

/* An inclusion proof carries its record (msg_id, sender, recipients,
 * category, purpose, header): a node is served the proofs of records of
 * its own traffic only, and of the directory's. A request naming any other
 * record is refused whole (SENDER_MISMATCH), nothing of it sent; twins:
 * each party gets the proofs of its records, everyone the directory's. */
static void test_proof_parties(void **state)
{
    ctx *t = *state;
    broker *b = &t->fb->b;
    fbroker_conn_hello(t->fb, "alpha");
    fbroker_conn_hello(t->fb, "bravo");
    fbroker_conn_hello(t->fb, "charlie");
    uint8_t id[KETEN_MSG_ID_BYTES];
    memset(id, 0x5a, sizeof id);
    const char *open[] = { "charlie" };
    outq_clear(b->out);
    fbroker_begin(t->fb);
    uint64_t conn_alpha = 0, deliv = 0, rej = 0, exp = 0;
    assert_int_equal(
        audit_node(b, KETEN__EVENT__EVENT_NODE_CONNECTED, "alpha", &conn_alpha), KETEN_OK);
    assert_int_equal(audit_delivered(b, id, "alpha", "bravo", &deliv), KETEN_OK);
    assert_int_equal(
        audit_rejected(b, NULL, "bravo", KETEN__REASON__REASON_BAD_RECEIPT, 0, &rej), KETEN_OK);
    assert_int_equal(audit_expired(b, id, "alpha", open, 1, &exp), KETEN_OK);
    fbroker_end(t->fb);
    Keten__AuditRecord *r = fbroker_record(t->fb, 0);
    assert_int_equal(r->event, KETEN__EVENT__EVENT_DIRECTORY_INSTALLED);
    keten_pb_free((ProtobufCMessage **)(void *)&r);

    /* charlie, no party to alpha's connection, the delivery to bravo or
     * bravo's refusal. */
    uint64_t one[1];
    one[0] = conn_alpha;
    refused_as(t, "charlie", one, 1, conn_alpha);
    one[0] = deliv;
    refused_as(t, "charlie", one, 1, deliv);
    one[0] = rej;
    refused_as(t, "charlie", one, 1, rej);
    /* One such leaf among records of its own refuses the whole request. */
    uint64_t mixed[] = { 0, exp, deliv };
    refused_as(t, "charlie", mixed, 3, deliv);
    /* bravo, no party to alpha's connection nor to the expiry (it answered:
     * only charlie is listed). */
    one[0] = conn_alpha;
    refused_as(t, "bravo", one, 1, conn_alpha);
    one[0] = exp;
    refused_as(t, "bravo", one, 1, exp);

    /* Twins: the parties, and the directory for everyone. */
    uint64_t mine_charlie[] = { 0, exp };
    served_as(t, "charlie", mine_charlie, 2);
    uint64_t mine_alpha[] = { conn_alpha, deliv, exp, 0 };
    served_as(t, "alpha", mine_alpha, 4);
    uint64_t mine_bravo[] = { deliv, rej };
    served_as(t, "bravo", mine_bravo, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_checkpoint_per_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_every_n_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_beyond_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_consistency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_before_proof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cosignatures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witnessed_after_earlier_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cosignature_note_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proof_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proof_parties, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_budget, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
