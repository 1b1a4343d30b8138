/* node_witness: the node as a witness of the broker's log
 * (client/witness.h), on a node without its main loop (fixture_node.h:
 * real identity, directory, store, witness, local API, and a link to a
 * broker's end bound here, which reads what the node sends). The broker's
 * logs are Merkle logs written by the test; its checkpoints are signed with
 * the broker's real log key (a second log, the same records or other ones,
 * is the broker showing another history).
 *
 * Checkpoints: the first is taken from size 0, a consistent one extends the
 * reference (persisted: a new witness starts from it); an inconsistent one,
 * one of a kept size with another root, one smaller than the reference, one
 * not signed by the broker's log key and one naming the node's directory
 * version with another hash are alarms with the frame kept as evidence and
 * change nothing; one proven from a size the node does not keep is not
 * judged: the node says Hello again, and so is one proven from a kept size
 * older than the reference (a fork beneath it would pass); one naming a newer directory is not
 * taken until the node has it. News about an older checkpoint: one the node
 * keeps counts its cosignatures, one it never took is ignored (twin: with
 * another root, or not sent as news, an alarm); one naming the directory
 * version of its time, older than the reference's, is no mismatch (twin: a
 * smaller tree naming a newer version than the reference is). A witness checkpoint is
 * stored and cosigned (twin: a commit checkpoint is neither). Leaf proofs
 * hold only against a kept checkpoint of their size.
 *
 * Retention: stored witness checkpoints dated back (their accepted_at set
 * as if the node had run for months; keten_witness_prune is given the
 * time) are thinned out to exactly what the rule of witness.h keeps, in
 * bounded steps, also across a restart in the middle of a pass; what the
 * node's state needs and what alarms marked as evidence stays; recent ones
 * stay (twins); marks are bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "alarm.h"
#include "checkpoint.h"
#include "dirs.h"
#include "fixture.h"
#include "fixture_node.h"
#include "nodestore.h"
#include "pb.h"
#include "store.h"
#include "util.h"
#include "witness.h"

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "charlie:police", NULL };

typedef struct ctx {
    fixture *fx;
    fnode *fn;
    keten_node *node;
    flog *log; /* the broker's log */
    flog *fork; /* another history */
} ctx;

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = fixture_new(1, 1, specs);
    t->fn = fnode_new(t->fx, "alpha", "hub");
    t->node = &t->fn->node;
    fnode_connect(t->fn);
    t->log = flog_new(t->fx, "log");
    t->fork = flog_new(t->fx, "fork");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    flog_destroy(&t->log);
    flog_destroy(&t->fork);
    fnode_destroy(&t->fn);
    fixture_destroy(&t->fx);
    free(t);
    return 0;
}

static uint64_t ref_size(ctx *t)
{
    return keten_witness_reference_size(t->node);
}

static bool kept(ctx *t, flog *log, uint64_t size)
{
    keten_hash root, want;
    if (!keten_witness_root(t->node, size, root)) {
        return false;
    }
    flog_root(log, size, want);
    assert_memory_equal(root, want, KETEN_HASH_BYTES);
    return true;
}

/* Nothing changed, and one alarm more (with its evidence). */
/* Append n records of another history to t->fork: "bravo" disconnected,
 * each dated by flog_append(). */
static void fork_append(ctx *t, int n)
{
    Keten__AuditRecord other = KETEN__AUDIT_RECORD__INIT;
    other.event = KETEN__EVENT__EVENT_NODE_DISCONNECTED;
    other.node = (char *)"bravo";
    for (int i = 0; i < n; i++) {
        (void)flog_append(t->fork, &other);
        other.time = 0;
    }
}

static void expect_alarm(ctx *t, size_t alarms_before, uint64_t ref)
{
    assert_int_equal(fnode_alarms(t->fn), alarms_before + 1);
    assert_int_equal(fnode_evidence(t->fn), alarms_before + 1);
    assert_int_equal(ref_size(t), ref);
}

/* ---- accepted ------------------------------------------------------------- */

static void test_first_and_consistent(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 3);
    fnode_checkpoint(t->fn, t->log, 0, 3, false);
    assert_int_equal(ref_size(t), 3);
    assert_true(kept(t, t->log, 3));
    assert_int_equal(t->node->counters.checkpoints_accepted, 1);

    flog_pad(t->log, 4);
    fnode_checkpoint(t->fn, t->log, 3, 7, false);
    assert_int_equal(ref_size(t), 7);
    assert_true(kept(t, t->log, 7));
    assert_true(kept(t, t->log, 3));
    assert_int_equal(t->node->counters.checkpoints_accepted, 2);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* The same again changes nothing and is no alarm. */
    fnode_checkpoint(t->fn, t->log, 7, 7, false);
    assert_int_equal(ref_size(t), 7);
    assert_int_equal(t->node->counters.checkpoints_accepted, 2);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* The reference is persisted: a new witness starts from it. */
    keten_witness *again = NULL;
    assert_int_equal(keten_witness_new(t->node, &again), KETEN_OK);
    keten_witness *mine = t->node->witness;
    t->node->witness = again;
    assert_int_equal(ref_size(t), 7);
    assert_true(kept(t, t->log, 7));
    t->node->witness = mine;
    keten_witness_destroy(&again);
}

/* ---- alarms ----------------------------------------------------------------- */

static void test_inconsistent(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 3);
    fnode_checkpoint(t->fn, t->log, 0, 3, false);
    /* Another history of 7 records, proven from 3 with its own proof. */
    fork_append(t, 7);
    fnode_checkpoint(t->fn, t->fork, 3, 7, false);
    expect_alarm(t, 0, 3);
    assert_int_equal(t->node->counters.checkpoints_refused, 1);
    assert_false(kept(t, t->fork, 7));
    /* Sent again, it is remembered as refused: no second alarm. */
    fnode_checkpoint(t->fn, t->fork, 3, 7, false);
    assert_int_equal(fnode_alarms(t->fn), 1);

    /* Twin: the broker's own history of 7 is taken. */
    flog_pad(t->log, 4);
    fnode_checkpoint(t->fn, t->log, 3, 7, false);
    assert_int_equal(ref_size(t), 7);
    assert_int_equal(fnode_alarms(t->fn), 1);
}

static void test_same_size_other_root(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 5);
    fnode_checkpoint(t->fn, t->log, 0, 5, false);
    fork_append(t, 5);
    fnode_checkpoint(t->fn, t->fork, 5, 5, false);
    expect_alarm(t, 0, 5);
    assert_true(kept(t, t->log, 5)); /* the kept root is still the first one */

    /* Smaller than the reference, never kept, not sent as news: alarm. */
    flog_pad(t->log, 3); /* 8 */
    fnode_checkpoint(t->fn, t->log, 5, 8, false);
    assert_int_equal(ref_size(t), 8);
    fnode_checkpoint(t->fn, t->log, 0, 6, false);
    expect_alarm(t, 1, 8);
}

static void test_not_the_brokers_key(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 3);
    keten_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    snprintf(ck.origin, sizeof ck.origin, "keten/testnet");
    ck.size = 3;
    flog_root(t->log, 3, ck.root);
    ck.dir_version = keten_directory_version(t->node->dir);
    memcpy(ck.dir_hash, keten_directory_hash(t->node->dir), KETEN_HASH_BYTES);
    /* Signed under the broker's name with a partner's key. */
    char *note = NULL;
    assert_int_equal(
        keten_checkpoint_sign(&ck, "hub", fixture_node(t->fx, "bravo")->sign_sk, &note), KETEN_OK);
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    fnode_take_checkpoint(t->fn, &cf);
    expect_alarm(t, 0, 0);
    free(note);

    /* The node's directory version with another hash: directory-mismatch. */
    memset(ck.dir_hash, 0x5a, sizeof ck.dir_hash);
    assert_int_equal(keten_checkpoint_sign(&ck, "hub", t->fn->broker->log_sk, &note), KETEN_OK);
    cf.note = note;
    keten_witness_on_checkpoint(t->node, &cf);
    assert_int_equal(fnode_alarms(t->fn), 2);
    assert_int_equal(ref_size(t), 0);
    free(note);

    /* Twin: the broker's own signature on the right directory (of another
     * size: the root refused with the wrong directory line stays refused). */
    flog_pad(t->log, 1);
    fnode_checkpoint(t->fn, t->log, 0, 4, false);
    assert_int_equal(ref_size(t), 4);
    assert_int_equal(fnode_alarms(t->fn), 2);
}

/* ---- not judged -------------------------------------------------------------- */

static void test_unknown_old_size(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 3);
    fnode_checkpoint(t->fn, t->log, 0, 3, false);
    flog_pad(t->log, 6); /* 9 */
    fnode_checkpoint(t->fn, t->log, 5, 9, false);
    assert_int_equal(t->node->counters.checkpoints_unknown_old, 1);
    assert_int_equal(ref_size(t), 3);
    assert_int_equal(fnode_alarms(t->fn), 0);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_HELLO, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->hello->tree_size, 3);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    /* From size 0 while the node has a reference: the same. */
    fnode_checkpoint(t->fn, t->log, 0, 9, false);
    assert_int_equal(t->node->counters.checkpoints_unknown_old, 2);
    assert_int_equal(ref_size(t), 3);

    /* Twin: proven from the size it keeps. */
    fnode_checkpoint(t->fn, t->log, 3, 9, false);
    assert_int_equal(ref_size(t), 9);
    assert_int_equal(fnode_alarms(t->fn), 0);
}

/* A fork beneath the reference, proven from an older checkpoint: the
 * broker showed 4 and 8 of its log, then 10 of another history that shares
 * only the first 4 records, with that history's true proof from 4. The
 * proof holds from 4, and says nothing of 8: it is not judged (it used to
 * be taken, and the node held 8 and 10 of two histories side by side, with
 * no alarm); the node says Hello again, naming 8, and the fork proven from
 * 8 is an alarm. Twin: the broker's own 10 proven from 4 is not judged
 * either, and proven from 8 it is taken. */
static void test_fork_proven_from_older(void **state)
{
    ctx *t = *state;
    Keten__AuditRecord shared = KETEN__AUDIT_RECORD__INIT;
    shared.event = KETEN__EVENT__EVENT_NODE_CONNECTED;
    shared.node = (char *)"bravo";
    shared.time = 1000;
    for (int i = 0; i < 4; i++) {
        (void)flog_append(t->log, &shared);
        (void)flog_append(t->fork, &shared);
    }
    flog_pad(t->log, 4); /* 8 */
    fork_append(t, 6); /* 10 */
    keten_hash a, b;
    flog_root(t->log, 4, a);
    flog_root(t->fork, 4, b);
    assert_memory_equal(a, b, KETEN_HASH_BYTES); /* one history up to 4 */

    fnode_checkpoint(t->fn, t->log, 0, 4, false);
    fnode_checkpoint(t->fn, t->log, 4, 8, false);
    assert_int_equal(ref_size(t), 8);
    assert_true(kept(t, t->log, 4));

    fnode_checkpoint(t->fn, t->fork, 4, 10, false);
    assert_int_equal(ref_size(t), 8);
    assert_false(keten_witness_root(t->node, 10, a));
    assert_true(kept(t, t->log, 8));
    assert_int_equal(t->node->counters.checkpoints_unknown_old, 1);
    assert_int_equal(t->node->counters.checkpoints_accepted, 2);
    assert_int_equal(fnode_alarms(t->fn), 0);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_HELLO, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->hello->tree_size, 8);
    keten_pb_free((ProtobufCMessage **)(void *)&f);

    /* Proven from the reference, the fork is caught. */
    fnode_checkpoint(t->fn, t->fork, 8, 10, false);
    expect_alarm(t, 0, 8);
    assert_false(keten_witness_root(t->node, 10, a));

    /* Twin: the broker's own history. */
    flog_pad(t->log, 2); /* 10 */
    fnode_checkpoint(t->fn, t->log, 4, 10, false);
    assert_int_equal(ref_size(t), 8);
    assert_int_equal(t->node->counters.checkpoints_unknown_old, 2);
    fnode_checkpoint(t->fn, t->log, 8, 10, false);
    assert_int_equal(ref_size(t), 10);
    assert_true(kept(t, t->log, 10));
    assert_int_equal(fnode_alarms(t->fn), 1);
}

static void test_newer_directory(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 3);
    size_t len = 0;
    free(fixture_publish(t->fx, &len)); /* version 2, which the node does not have */
    char *note = flog_note(t->log, t->fn->broker, t->fx->directory, 3);
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    keten_witness_on_checkpoint(t->node, &cf);
    free(note);
    assert_int_equal(ref_size(t), 0);
    assert_int_equal(t->node->dir_needed, 2);
    assert_int_equal(keten_dirs_send_ok(t->node), KETEN_ERR_ROLLBACK);
    keten_err_clear();
    assert_int_equal(fnode_alarms(t->fn), 0);
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_DIRECTORY_REQUEST, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->directory_request->after_version, 1);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

/* ---- news about older checkpoints ------------------------------------------ */

/* The stored note of size with a cosignature line of each of names. */
static char *cosigned(ctx *t, flog *log, uint64_t size, const char *const *names, size_t n)
{
    char *note = flog_note(log, t->fn->broker, t->node->dir, size);
    for (size_t i = 0; i < n; i++) {
        char *line = NULL, *with = NULL;
        assert_int_equal(keten_checkpoint_cosignature_sign(note, strlen(note), names[i],
                             fixture_node(t->fx, names[i])->sign_sk, keten_now_ms() / 1000, &line),
            KETEN_OK);
        assert_int_equal(keten_checkpoint_add_line(note, strlen(note), line, &with), KETEN_OK);
        free(line);
        free(note);
        note = with;
    }
    return note;
}

static void news(ctx *t, char *note, uint64_t size)
{
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    cf.old_size = size;
    fnode_take_checkpoint(t->fn, &cf);
    free(note);
}

/* The broker serves one directory version (a DirectoryPush). */
static void serve(ctx *t, uint8_t *buf, size_t len)
{
    ProtobufCBinaryData chain[1] = { { len, buf } };
    Keten__DirectoryPush p = KETEN__DIRECTORY_PUSH__INIT;
    p.chain = chain;
    p.n_chain = 1;
    assert_int_equal(keten_dirs_on_push(t->node, &p), KETEN_OK);
}

/* The first evidence frame kept (oldest key), or NULL. */
static Keten__EvidenceRecord *first_evidence(ctx *t)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    Keten__EvidenceRecord *rec = NULL;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(
        mdb_cursor_open(txn, keten_store_dbi(t->node->store, KETEN_DB_EVIDENCE), &cur), 0);
    if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0) {
        assert_int_equal(keten_nodestore_decode(KETEN_DB_EVIDENCE, k.mv_data, k.mv_size, &v,
                             &keten__evidence_record__descriptor, KETEN_NODESTORE_EVIDENCE_MAX,
                             (ProtobufCMessage **)(void *)&rec),
            KETEN_OK);
    }
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    return rec;
}

/* A version named by signed checkpoints and never served: the alarm
 * directory-withheld keeps the broker's checkpoint that named it (it was
 * raised with nothing kept, and the broker's signature on the version it
 * withheld was lost). Twin: the version served in time raises nothing. */
static void test_withheld_directory_evidence(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 3);
    size_t len = 0;
    uint8_t *v2 = fixture_publish(t->fx, &len); /* version 2, not served */
    char *note = flog_note(t->log, t->fn->broker, t->fx->directory, 3);
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    fnode_take_checkpoint(t->fn, &cf);
    assert_int_equal(t->node->dir_needed, 2);
    keten_dirs_tick(t->node);
    assert_int_equal(fnode_alarms(t->fn), 0);
    t->node->dir_needed_since -= KETEN_NODE_DIR_WITHHELD_MS + 1;
    keten_dirs_tick(t->node);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(fnode_evidence(t->fn), 1);
    Keten__EvidenceRecord *ev = first_evidence(t);
    assert_non_null(ev);
    assert_non_null(strstr(ev->reason, "directory-withheld"));
    Keten__Frame *f = NULL;
    assert_int_equal(KETEN_PB_UNPACK(keten__frame, ev->frame.data, ev->frame.len,
                         KETEN_NODE_FRAME_MAX, "frame", &f),
        KETEN_OK);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_CHECKPOINT);
    assert_string_equal(f->checkpoint->note, note); /* signed, naming version 2 */
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    keten_pb_free((ProtobufCMessage **)(void *)&ev);
    free(note);

    /* Version 2 served: the kept checkpoint is let go. Twin: version 3
     * named, and served before the time-out: no alarm. */
    serve(t, v2, len);
    assert_int_equal(t->node->dir_needed, 0);
    assert_null(t->node->dir_needed_frame);
    uint8_t *v3 = fixture_publish(t->fx, &len);
    note = flog_note(t->log, t->fn->broker, t->fx->directory, 3);
    cf.note = note;
    fnode_take_checkpoint(t->fn, &cf);
    free(note);
    assert_int_equal(t->node->dir_needed, 3);
    assert_non_null(t->node->dir_needed_frame);
    serve(t, v3, len);
    assert_int_equal(t->node->dir_needed, 0);
    assert_null(t->node->dir_needed_frame);
    keten_dirs_tick(t->node);
    assert_int_equal(fnode_alarms(t->fn), 1);
    free(v2);
    free(v3);
}

static void test_news_about_older(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 3);
    fnode_checkpoint(t->fn, t->log, 0, 3, true);
    flog_pad(t->log, 4);
    fnode_checkpoint(t->fn, t->log, 3, 7, false);
    assert_int_equal(ref_size(t), 7);

    /* A kept one, now witnessed by a quorum (2 of 3): counted, the
     * reference stays. */
    static const char *const quorum[] = { "bravo", "charlie" };
    json_t *status = json_object();
    news(t, cosigned(t, t->log, 3, quorum, 2), 3);
    assert_int_equal(ref_size(t), 7);
    assert_int_equal(fnode_alarms(t->fn), 0);
    assert_int_equal(keten_witness_status(t->node, status), KETEN_OK);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(status, "checkpoint"), "witnessed_size")),
        3);
    json_decref(status);

    /* One it went past without taking it: ignored. */
    flog_pad(t->log, 3); /* 10: 8 and 9 were never sent */
    fnode_checkpoint(t->fn, t->log, 7, 10, false);
    news(t, cosigned(t, t->log, 8, quorum, 2), 8);
    assert_int_equal(t->node->counters.checkpoints_unknown_old, 1);
    assert_int_equal(ref_size(t), 10);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* Twins: a kept size with another root, and an older size that is not
     * sent as news about itself. */
    fork_append(t, 3);
    news(t, cosigned(t, t->fork, 3, quorum, 2), 3);
    expect_alarm(t, 0, 10);
    fnode_checkpoint(t->fn, t->log, 7, 9, false);
    expect_alarm(t, 1, 10);
}

/* A directory version installed between two checkpoints: news about the
 * older one, which names the older version, is counted and raises nothing
 * (it once raised directory-mismatch: "lower than version 2 named by the
 * accepted checkpoint"). Twin: an older size naming a newer version than
 * the accepted checkpoint of a larger size is directory-mismatch. */
static void test_news_names_older_directory(void **state)
{
    ctx *t = *state;
    static const char *const quorum[] = { "bravo", "charlie" };
    flog_pad(t->log, 3);
    fnode_checkpoint(t->fn, t->log, 0, 3, true); /* names version 1 */
    char *then = cosigned(t, t->log, 3, quorum, 2); /* version 1 too */
    fnode_push_next(t->fn, KETEN_DIRECTORY_VALID_DAYS_DEFAULT * KETEN_MS_PER_DAY);
    assert_int_equal(keten_directory_version(t->node->dir), 2);
    flog_pad(t->log, 4);
    fnode_checkpoint(t->fn, t->log, 3, 7, false); /* names version 2 */
    assert_int_equal(ref_size(t), 7);

    json_t *status = json_object();
    news(t, then, 3);
    assert_int_equal(fnode_alarms(t->fn), 0);
    assert_int_equal(ref_size(t), 7);
    assert_int_equal(keten_witness_status(t->node, status), KETEN_OK);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(status, "checkpoint"), "witnessed_size")),
        3);
    json_decref(status);

    /* Twin: version 3 installed, then a checkpoint of size 5 naming it. */
    fnode_push_next(t->fn, KETEN_DIRECTORY_VALID_DAYS_DEFAULT * KETEN_MS_PER_DAY);
    assert_int_equal(keten_directory_version(t->node->dir), 3);
    news(t, cosigned(t, t->log, 5, quorum, 2), 5);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(ref_size(t), 7);
}

/* ---- witness checkpoints --------------------------------------------------- */

static bool stored(ctx *t, uint64_t size)
{
    MDB_txn *txn = NULL;
    Keten__CheckpointRecord *rec = NULL;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    keten_err e = keten_nodestore_checkpoint_get(t->node->store, txn, size, &rec);
    keten_store_abort(&txn);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    keten_err_clear();
    return e == KETEN_OK;
}

static void test_witness_checkpoint_cosigned(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 3);
    fnode_checkpoint(t->fn, t->log, 0, 3, false);
    assert_false(stored(t, 3));
    fnode_expect_nothing_more(t->fn); /* no cosignature */

    flog_pad(t->log, 2);
    fnode_checkpoint(t->fn, t->log, 3, 5, true);
    assert_true(stored(t, 5));
    Keten__Frame *f = fnode_recv_body(t->fn, KETEN__FRAME__BODY_COSIGNATURE, FNODE_RECV_MS);
    assert_non_null(f);
    assert_string_equal(f->cosignature->node, "alpha");
    assert_int_equal(f->cosignature->tree_size, 5);
    char *note = flog_note(t->log, t->fn->broker, t->node->dir, 5);
    char *with = NULL;
    assert_int_equal(
        keten_checkpoint_add_line(note, strlen(note), f->cosignature->line, &with), KETEN_OK);
    uint64_t when = 0;
    assert_int_equal(keten_checkpoint_cosignature_verify(
                         with, strlen(with), "alpha", fixture_node(t->fx, "alpha")->sign_pk, &when),
        KETEN_OK);
    free(with);
    free(note);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

/* ---- leaf proofs ------------------------------------------------------------ */

static void test_leaf_proofs(void **state)
{
    ctx *t = *state;
    flog_pad(t->log, 6);
    fnode_checkpoint(t->fn, t->log, 0, 6, false);
    flog_proof *p = flog_proof_new(t->log, 2, 6);
    Keten__AuditRecord *rec = NULL;
    assert_int_equal(keten_witness_leaf(t->node, &p->buf.msg, &rec), KETEN_OK);
    assert_int_equal(rec->seq, 2);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    assert_int_equal(t->node->counters.proofs_passed, 1);
    flog_proof_free(&p);

    /* Against a size the node does not keep: not judged. */
    flog_pad(t->log, 1);
    p = flog_proof_new(t->log, 2, 7);
    assert_int_equal(keten_witness_leaf(t->node, &p->buf.msg, &rec), KETEN_ERR_NOT_FOUND);
    assert_null(rec);
    assert_int_equal(t->node->counters.proofs_unknown, 1);
    flog_proof_free(&p);

    /* A path that does not lead to the kept root: false. */
    p = flog_proof_new(t->log, 2, 6);
    p->buf.path[0][0] ^= 1;
    assert_int_not_equal(keten_witness_leaf(t->node, &p->buf.msg, &rec), KETEN_OK);
    assert_int_equal(t->node->counters.proofs_failed, 1);
    keten_err_clear();
    flog_proof_free(&p);
    assert_int_equal(keten_witness_leaf(t->node, NULL, &rec), KETEN_ERR_MALFORMED);
}

/* ---- retention of stored witness checkpoints ---------------------------------- */

#define HOUR (3600ull * 1000ull)
#define MIN (60ull * 1000ull)
#define DAY KETEN_MS_PER_DAY
/* A simulated "now": 12:00 UTC, 20000 days after the epoch (2024-10-04). */
#define NOW (20000ull * DAY + 12ull * HOUR)

static const char *const quorum[] = { "bravo", "charlie" };

/* The stored checkpoint of size: accepted at `at` (as if the node had
 * accepted it then). */
static void set_accepted_at(ctx *t, uint64_t size, uint64_t at)
{
    MDB_txn *txn = NULL;
    Keten__CheckpointRecord *rec = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_checkpoint_get(t->node->store, txn, size, &rec), KETEN_OK);
    rec->accepted_at = at;
    assert_int_equal(keten_nodestore_checkpoint_put(t->node->store, txn, rec), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
}

static Keten__CheckpointRecord *stored_rec(ctx *t, uint64_t size)
{
    MDB_txn *txn = NULL;
    Keten__CheckpointRecord *rec = NULL;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_checkpoint_get(t->node->store, txn, size, &rec), KETEN_OK);
    keten_store_abort(&txn);
    return rec;
}

static bool marked(ctx *t, uint64_t size)
{
    Keten__CheckpointRecord *rec = stored_rec(t, size);
    bool m = rec->evidence;
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    return m;
}

/* Witness checkpoints of sizes from+1 .. to, each the node's new reference
 * (one record more in the log each); those listed in witnessed (0-ended)
 * become witnessed by a quorum at once, as the broker's news says. */
static void witness_upto(ctx *t, uint64_t from, uint64_t to, const uint64_t *witnessed)
{
    for (uint64_t s = from + 1; s <= to; s++) {
        flog_pad(t->log, 1);
        fnode_checkpoint(t->fn, t->log, s - 1, s, true);
        assert_int_equal(ref_size(t), s);
        for (const uint64_t *w = witnessed; w != NULL && *w != 0; w++) {
            if (*w == s) {
                news(t, cosigned(t, t->log, s, quorum, 2), s);
            }
        }
    }
}

/* Run retention passes at now, chunk records a step, until one ends;
 * returns the number of steps, and adds what they removed to *removed. */
static size_t prune_pass(ctx *t, uint64_t now, size_t chunk, size_t *removed)
{
    size_t steps = 0;
    bool done = false;
    while (!done) {
        size_t n = 0;
        assert_int_equal(keten_witness_prune(t->node, now, chunk, &n, &done), KETEN_OK);
        assert_true(n <= chunk); /* bounded work per step */
        *removed += n;
        steps++;
        assert_true(steps < 1000);
    }
    return steps;
}

/* Exactly the sizes in want (0-ended) of 1 .. n are stored. */
static void expect_stored(ctx *t, uint64_t n, const uint64_t *want)
{
    for (uint64_t s = 1; s <= n; s++) {
        bool w = false;
        for (const uint64_t *p = want; *p != 0; p++) {
            w = w || *p == s;
        }
        if (stored(t, s) != w) {
            fail_msg("checkpoint of size %llu: %s, the rule says %s", (unsigned long long)s,
                stored(t, s) ? "kept" : "removed", w ? "kept" : "removed");
        }
    }
}

/* The node starts again: a new witness from its store (nothing of the
 * old one's memory, such as where a retention pass was). */
static void restart_witness(ctx *t)
{
    keten_witness_destroy(&t->node->witness);
    assert_int_equal(keten_witness_new(t->node, &t->node->witness), KETEN_OK);
}

/* A node that kept 19 witness checkpoints accepted over 200 days ends
 * with exactly the set the rule says: every one of the last 7 days; of
 * the 7 to 90 days old, the first of each hour (the first witnessed one
 * when there is one); older, the first (witnessed) of each day; and the
 * one kept as evidence of an alarm whatever its day. A pass goes in steps
 * of 2 records, and one broken off by a restart ends with the same set.
 * A second pass removes nothing. The --all list is the thinned series then
 * the newest, each note the broker's signature over its root. Afterwards,
 * a fork at a kept size is still an alarm (the root comes from the store,
 * not from memory); twin: at a removed size it can no longer be judged
 * (news about a size the node does not keep: ignored, counted). */
static void test_retention_thins_out(void **state)
{
    ctx *t = *state;
    static const uint64_t witnessed[] = { 2, 3, 7, 8, 13, 14, 17, 0 };
    witness_upto(t, 0, 6, witnessed);
    /* Size 6 is kept as evidence: the broker signs another root of size 6. */
    fork_append(t, 6);
    fnode_checkpoint(t->fn, t->fork, 6, 6, false);
    expect_alarm(t, 0, 6);
    assert_true(marked(t, 6));
    witness_upto(t, 6, 19, witnessed);

    static const uint64_t at[20] = {
        0, /* no size 0 */
        NOW - 200 * DAY + 1 * HOUR, /* 1: day A, first, not witnessed: gives way to 2 */
        NOW - 200 * DAY + 2 * HOUR, /* 2: day A, the first witnessed: kept */
        NOW - 200 * DAY + 3 * HOUR, /* 3: day A, witnessed: removed */
        NOW - 150 * DAY, /* 4: day B, the first, none witnessed: kept */
        NOW - 150 * DAY + 1 * HOUR, /* 5: day B: removed */
        NOW - 120 * DAY, /* 6: day C, evidence of an alarm: kept */
        NOW - 120 * DAY + 1 * HOUR, /* 7: day C, the first witnessed: kept */
        NOW - 120 * DAY + 2 * HOUR, /* 8: day C, witnessed: removed */
        NOW - 30 * DAY, /* 9: hour D, the first: kept */
        NOW - 30 * DAY + 10 * MIN, /* 10: hour D: removed */
        NOW - 30 * DAY + 20 * MIN, /* 11: hour D: removed */
        NOW - 30 * DAY + 1 * HOUR, /* 12: hour E: kept */
        NOW - 10 * DAY, /* 13: hour F, the first witnessed: kept */
        NOW - 10 * DAY + 5 * MIN, /* 14: hour F: removed */
        NOW - 6 * DAY, /* 15..19: the last 7 days: kept */
        NOW - 6 * DAY + 1 * MIN, /* 16 */
        NOW - 1 * HOUR, /* 17: the node's witnessed checkpoint */
        NOW - 1 * MIN, /* 18 */
        NOW - 10 * 1000, /* 19: the newest, the reference */
    };
    for (uint64_t s = 1; s <= 19; s++) {
        set_accepted_at(t, s, at[s]);
    }
    static const uint64_t kept_sizes[] = { 2, 4, 6, 7, 9, 12, 13, 15, 16, 17, 18, 19, 0 };

    /* One step, then a restart in the middle of the pass. */
    size_t removed = 0;
    bool done = false;
    assert_int_equal(keten_witness_prune(t->node, NOW, 2, &removed, &done), KETEN_OK);
    assert_false(done);
    restart_witness(t);
    size_t steps = prune_pass(t, NOW, 2, &removed);
    assert_true(steps > 1);
    expect_stored(t, 19, kept_sizes);
    assert_int_equal(removed, 7);
    assert_int_equal(t->node->counters.checkpoints_removed, 7);
    assert_int_equal(ref_size(t), 19);
    removed = 0;
    prune_pass(t, NOW, 2, &removed);
    assert_int_equal(removed, 0); /* the rule holds: a second pass changes nothing */
    expect_stored(t, 19, kept_sizes);

    json_t *status = json_object();
    assert_int_equal(keten_witness_status(t->node, status), KETEN_OK);
    json_t *cp = json_object_get(status, "checkpoint");
    assert_int_equal(json_integer_value(json_object_get(cp, "kept")), 12);
    assert_int_equal(json_integer_value(json_object_get(cp, "kept_as_evidence")), 1);
    assert_int_equal(json_integer_value(json_object_get(cp, "witnessed_size")), 17);
    json_decref(status);

    /* --all: the thinned series, then the newest (2 of the 5 recent ones
     * when max is 2), each the broker's signed note of the log's root. */
    json_t *list = NULL;
    assert_int_equal(
        keten_witness_evidence_all(t->node, NOW, KETEN_WITNESS_EVIDENCE_OLDER_MAX, 1000, &list),
        KETEN_OK);
    assert_int_equal(json_array_size(list), 12);
    const Keten__NodeCert *broker = keten_directory_broker(t->node->dir);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *o = json_array_get(list, i);
        uint64_t size = (uint64_t)json_integer_value(json_object_get(o, "tree_size"));
        assert_int_equal(size, kept_sizes[i]);
        const char *note = json_string_value(json_object_get(o, "note"));
        keten_checkpoint ck;
        assert_int_equal(
            keten_checkpoint_open(note, strlen(note), broker->id, broker->log_pk.data, &ck),
            KETEN_OK);
        keten_hash want;
        flog_root(t->log, size, want);
        assert_int_equal(ck.size, size);
        assert_memory_equal(ck.root, want, KETEN_HASH_BYTES);
    }
    json_decref(list);
    /* The thinned series (all but the last hour's), then the newest 2. */
    static const uint64_t with_two[] = { 2, 4, 6, 7, 9, 12, 13, 15, 16, 17, 18, 19 };
    assert_int_equal(
        keten_witness_evidence_all(t->node, NOW, KETEN_WITNESS_EVIDENCE_OLDER_MAX, 2, &list),
        KETEN_OK);
    assert_int_equal(json_array_size(list), 12);
    for (size_t i = 0; i < 12; i++) {
        assert_int_equal(
            json_integer_value(json_object_get(json_array_get(list, i), "tree_size")), with_two[i]);
    }
    json_decref(list);
    /* The older series cut at 2 (2 and 4): the checkpoint kept as an
     * alarm's evidence (6) is listed all the same, the others between are
     * not; then the newest 2. */
    static const uint64_t cut_at_two[] = { 2, 4, 6, 18, 19 };
    assert_int_equal(keten_witness_evidence_all(t->node, NOW, 2, 2, &list), KETEN_OK);
    assert_int_equal(json_array_size(list), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(json_integer_value(json_object_get(json_array_get(list, i), "tree_size")),
            cut_at_two[i]);
    }
    json_decref(list);

    /* After a restart (the roots of older sizes come from the store): news
     * of another root at a kept size is an alarm ... */
    restart_witness(t);
    news(t, cosigned(t, t->fork, 2, quorum, 2), 2);
    expect_alarm(t, 1, 19);
    assert_true(marked(t, 2)); /* the checkpoint it contradicts stays as evidence */
    /* ... twin: the true root at that size is news, no alarm ... */
    news(t, cosigned(t, t->log, 4, quorum, 2), 4);
    assert_int_equal(fnode_alarms(t->fn), 2);
    /* ... and at a removed size the node cannot judge it: ignored. */
    uint64_t unknown = t->node->counters.checkpoints_unknown_old;
    news(t, cosigned(t, t->fork, 3, quorum, 2), 3);
    assert_int_equal(fnode_alarms(t->fn), 2);
    assert_int_equal(t->node->counters.checkpoints_unknown_old, unknown + 1);
}

/* What the node's state needs stays, whatever its day: the checkpoint of
 * its witnessed size (keten-node checkpoint gives it to an auditor), the
 * first one above it (since when the node waits for a quorum), the
 * newest. Six checkpoints of one day 100 days ago, 2 and 3 witnessed: 2 is
 * the day's first witnessed one, 3 is the witnessed size, 4 the first
 * above it, 6 the newest; 1 and 5 go. After a restart the node reads the
 * same state from its store. */
/* Within the keep window a busy (or hostile) broker's witness checkpoints,
 * many a minute, are kept one per minute; those of the last hour all. Two
 * days ago, 12 checkpoints 10 s apart over two minutes: the first of each
 * minute stays. Twin: 3 of the last half hour, 10 s apart, all stay. */
static void test_retention_minutes(void **state)
{
    ctx *t = *state;
    witness_upto(t, 0, 16, NULL);
    uint64_t base = (NOW - 2 * DAY) / MIN * MIN;
    for (uint64_t s = 1; s <= 12; s++) {
        set_accepted_at(t, s, base + (s - 1) * 10 * 1000);
    }
    for (uint64_t s = 13; s <= 15; s++) {
        set_accepted_at(t, s, NOW - 30 * MIN + (s - 13) * 10 * 1000);
    }
    set_accepted_at(t, 16, NOW - 1000);
    size_t removed = 0;
    prune_pass(t, NOW, KETEN_WITNESS_PRUNE_CHUNK, &removed);
    static const uint64_t kept_sizes[] = { 1, 7, 13, 14, 15, 16, 0 };
    expect_stored(t, 16, kept_sizes);
    assert_int_equal(removed, 10);
}

static void test_retention_keeps_state(void **state)
{
    ctx *t = *state;
    static const uint64_t witnessed[] = { 2, 3, 0 };
    witness_upto(t, 0, 6, witnessed);
    for (uint64_t s = 1; s <= 6; s++) {
        set_accepted_at(t, s, NOW - 100 * DAY + s * MIN);
    }
    size_t removed = 0;
    prune_pass(t, NOW, KETEN_WITNESS_PRUNE_CHUNK, &removed);
    static const uint64_t kept_sizes[] = { 2, 3, 4, 6, 0 };
    expect_stored(t, 6, kept_sizes);
    assert_int_equal(removed, 2);

    restart_witness(t);
    assert_int_equal(ref_size(t), 6);
    json_t *status = json_object();
    assert_int_equal(keten_witness_status(t->node, status), KETEN_OK);
    json_t *cp = json_object_get(status, "checkpoint");
    assert_int_equal(json_integer_value(json_object_get(cp, "witnessed_size")), 3);
    assert_int_equal(json_integer_value(json_object_get(cp, "last_witness_size")), 6);
    json_decref(status);
    json_t *ev = NULL;
    assert_int_equal(keten_witness_evidence(t->node, &ev), KETEN_OK);
    assert_int_equal(json_integer_value(json_object_get(ev, "tree_size")), 3);
    assert_true(json_is_true(json_object_get(ev, "witnessed")));
    json_decref(ev);
}

/* Alarms keep their checkpoints: the alarm of a leaf proof that failed
 * keeps the checkpoint of its size, and every alarm the newest stored one
 * (4 too, marked by a second alarm); the retention removes none of them.
 * Twin: without the marks they go (checkpoints of one old day, none
 * witnessed: the first and the newest stay). */
/* The same checkpoint sent again (the broker does so when it becomes
 * witnessed, or after a Hello naming it): the stored one keeps its mark as
 * an alarm's evidence and the time it was first accepted, so a later pass
 * still keeps it. (Stored anew, it lost both, and the pass removed it.)
 * Twin: a checkpoint never marked and sent again is thinned like any other. */
static void test_resent_keeps_mark(void **state)
{
    ctx *t = *state;
    witness_upto(t, 0, 3, NULL);
    keten_alarm_raise(t->node, "directory-mismatch", "a test alarm");
    assert_true(marked(t, 3));
    Keten__CheckpointRecord *before = stored_rec(t, 3);
    uint64_t at = before->accepted_at;
    keten_pb_free((ProtobufCMessage **)(void *)&before);
    fnode_checkpoint(t->fn, t->log, 3, 3, true); /* 3 again, as a witness checkpoint */
    assert_int_equal(ref_size(t), 3);
    assert_true(marked(t, 3));
    Keten__CheckpointRecord *after = stored_rec(t, 3);
    assert_int_equal(after->accepted_at, at);
    keten_pb_free((ProtobufCMessage **)(void *)&after);
    witness_upto(t, 3, 6, NULL);
    fnode_checkpoint(t->fn, t->log, 6, 6, true); /* the newest again: never marked */
    assert_false(marked(t, 6));
    for (uint64_t s = 1; s <= 6; s++) {
        set_accepted_at(t, s, NOW - 100 * DAY + s * MIN);
    }
    size_t removed = 0;
    prune_pass(t, NOW, KETEN_WITNESS_PRUNE_CHUNK, &removed);
    static const uint64_t kept_sizes[] = { 1, 3, 6, 0 };
    expect_stored(t, 6, kept_sizes);
    assert_int_equal(removed, 3);
}

static void test_retention_keeps_alarm_evidence(void **state)
{
    ctx *t = *state;
    witness_upto(t, 0, 3, NULL);
    flog_proof *p = flog_proof_new(t->log, 1, 2);
    p->buf.path[0][0] ^= 1;
    Keten__AuditRecord *rec = NULL;
    assert_int_not_equal(keten_witness_leaf(t->node, &p->buf.msg, &rec), KETEN_OK);
    keten_err_clear();
    flog_proof_free(&p);
    assert_false(marked(t, 2)); /* marked with the alarm, in its transaction */
    keten_alarm_raise(t->node, "bad-proof", "a proof against size %d that does not hold", 2);
    assert_true(marked(t, 2)); /* the one the proof failed against */
    assert_true(marked(t, 3)); /* the newest */
    assert_false(marked(t, 1));
    /* A later alarm marks the newest only. */
    witness_upto(t, 3, 4, NULL);
    keten_alarm_raise(t->node, "directory-mismatch", "a test alarm");
    assert_true(marked(t, 4));
    assert_false(marked(t, 1));
    witness_upto(t, 4, 6, NULL);
    for (uint64_t s = 1; s <= 6; s++) {
        set_accepted_at(t, s, NOW - 100 * DAY + s * MIN);
    }
    size_t removed = 0;
    prune_pass(t, NOW, KETEN_WITNESS_PRUNE_CHUNK, &removed);
    static const uint64_t kept_sizes[] = { 1, 2, 3, 4, 6, 0 };
    expect_stored(t, 6, kept_sizes);
    assert_int_equal(removed, 1);

    /* Twin: unmarked, only the first of the day and the newest stay. */
    MDB_txn *txn = NULL;
    for (uint64_t s = 2; s <= 4; s++) {
        Keten__CheckpointRecord *r = stored_rec(t, s);
        r->evidence = false;
        assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
        assert_int_equal(keten_nodestore_checkpoint_put(t->node->store, txn, r), KETEN_OK);
        assert_int_equal(keten_store_commit(&txn), KETEN_OK);
        keten_pb_free((ProtobufCMessage **)(void *)&r);
    }
    prune_pass(t, NOW, KETEN_WITNESS_PRUNE_CHUNK, &removed);
    static const uint64_t twin[] = { 1, 6, 0 };
    expect_stored(t, 6, twin);
}

/* A broker that raises alarms without end cannot make every checkpoint
 * stay: at most KETEN_WITNESS_EVIDENCE_KEEP_MAX are marked, the first
 * ones; below the limit every mark is made. */
static void test_retention_evidence_bounded(void **state)
{
    ctx *t = *state;
    uint64_t n = KETEN_WITNESS_EVIDENCE_KEEP_MAX + 1;
    witness_upto(t, 0, n, NULL);
    for (uint64_t s = 1; s <= n; s++) {
        MDB_txn *txn = NULL;
        assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
        assert_int_equal(keten_witness_keep_as_evidence(t->node, txn, s), KETEN_OK);
        assert_int_equal(keten_store_commit(&txn), KETEN_OK);
        assert_int_equal(marked(t, s), s <= KETEN_WITNESS_EVIDENCE_KEEP_MAX);
    }
    /* Marking one again counts nothing twice; a size not stored is no error. */
    MDB_txn *txn = NULL;
    assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
    assert_int_equal(keten_witness_keep_as_evidence(t->node, txn, 1), KETEN_OK);
    assert_int_equal(keten_witness_keep_as_evidence(t->node, txn, n + 100), KETEN_OK);
    assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    json_t *status = json_object();
    assert_int_equal(keten_witness_status(t->node, status), KETEN_OK);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(status, "checkpoint"), "kept_as_evidence")),
        KETEN_WITNESS_EVIDENCE_KEEP_MAX);
    json_decref(status);
}

/* Twins: what the rule keeps whole is never removed. Checkpoints accepted
 * within the last checkpoint-keep-days (here: minutes ago, and one dated
 * after now: a clock set back) stay; with a keep window of 0 (none is
 * ever removed) old ones stay too. A step of 0 records is refused. */
/* With one mark left, an alarm about a failed proof spends it on the
 * checkpoint the proof failed against, not on the newest. */
static void test_retention_last_mark_to_the_alarm(void **state)
{
    ctx *t = *state;
    uint64_t n = KETEN_WITNESS_EVIDENCE_KEEP_MAX + 2;
    witness_upto(t, 0, n, NULL);
    for (uint64_t s = 3; s < KETEN_WITNESS_EVIDENCE_KEEP_MAX + 2; s++) {
        MDB_txn *txn = NULL;
        assert_int_equal(keten_store_begin(t->node->store, true, &txn), KETEN_OK);
        assert_int_equal(keten_witness_keep_as_evidence(t->node, txn, s), KETEN_OK);
        assert_int_equal(keten_store_commit(&txn), KETEN_OK);
    }
    assert_false(marked(t, 2));
    assert_false(marked(t, n));
    flog_proof *p = flog_proof_new(t->log, 1, 2);
    p->buf.path[0][0] ^= 1;
    Keten__AuditRecord *rec = NULL;
    assert_int_not_equal(keten_witness_leaf(t->node, &p->buf.msg, &rec), KETEN_OK);
    keten_err_clear();
    flog_proof_free(&p);
    keten_alarm_raise(t->node, "bad-proof", "a proof against size %d that does not hold", 2);
    assert_true(marked(t, 2));
    assert_false(marked(t, n)); /* the limit reached: the newest unmarked */
}

static void test_retention_recent_kept(void **state)
{
    ctx *t = *state;
    witness_upto(t, 0, 6, NULL);
    for (uint64_t s = 1; s <= 5; s++) {
        set_accepted_at(t, s, NOW - (6 - s) * MIN);
    }
    set_accepted_at(t, 6, NOW + HOUR);
    size_t removed = 0;
    prune_pass(t, NOW, 1, &removed);
    assert_int_equal(removed, 0);
    static const uint64_t all[] = { 1, 2, 3, 4, 5, 6, 0 };
    expect_stored(t, 6, all);
    /* 6 days and 23 hours old: still within the default 7 days. */
    for (uint64_t s = 1; s <= 5; s++) {
        set_accepted_at(t, s, NOW - 7 * DAY + HOUR + s * MIN);
    }
    prune_pass(t, NOW, 1, &removed);
    assert_int_equal(removed, 0);
    expect_stored(t, 6, all);

    for (uint64_t s = 1; s <= 5; s++) {
        set_accepted_at(t, s, NOW - 300 * DAY + s * MIN);
    }
    t->node->opts.checkpoint_keep_ms = 0;
    prune_pass(t, NOW, 1, &removed);
    assert_int_equal(removed, 0);
    expect_stored(t, 6, all);
    /* The --all list: with no keep window every one is of the newest. */
    json_t *list = NULL;
    assert_int_equal(
        keten_witness_evidence_all(t->node, NOW, KETEN_WITNESS_EVIDENCE_OLDER_MAX, 1000, &list),
        KETEN_OK);
    assert_int_equal(json_array_size(list), 6);
    json_decref(list);
    t->node->opts.checkpoint_keep_ms = KETEN_NODE_CHECKPOINT_KEEP_MS;
    bool done = false;
    assert_int_equal(keten_witness_prune(t->node, NOW, 0, &removed, &done), KETEN_ERR_INVALID);
    keten_err_clear();
    /* Back to the default: the old day thinned to its first, the newest kept. */
    prune_pass(t, NOW, 1, &removed);
    assert_int_equal(removed, 4);
    static const uint64_t thinned[] = { 1, 6, 0 };
    expect_stored(t, 6, thinned);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_and_consistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inconsistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_size_other_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_the_brokers_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_old_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_proven_from_older, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_withheld_directory_evidence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_news_about_older, setup, teardown),
        cmocka_unit_test_setup_teardown(test_news_names_older_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_checkpoint_cosigned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leaf_proofs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_thins_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_keeps_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_keeps_alarm_evidence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resent_keeps_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_minutes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_last_mark_to_the_alarm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_evidence_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_recent_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
