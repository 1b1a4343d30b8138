/* node_hostile: a broker that holds its keys and sends what it likes, against
 * the node's checks (fixture_node.h: a real node without its main loop, the
 * broker's log written by the test, checkpoints signed with the broker's
 * real log key).
 *
 * What the broker can make the node keep is bounded: a frame sent again is
 * kept as evidence once; the evidence table stops at its number of frames
 * and its size (alarm.h), keeping the first ones; each alarm is still raised
 * and counted (twin: distinct frames below the limits are all kept).
 *
 * An expiry notice must not contradict what the node knows: an `expired`
 * record dated before the message's expires_at, or one listing a recipient
 * whose answer the log holds at an earlier leaf, is an alarm and changes
 * nothing (twins: the record dated at expires_at, listing only who never
 * answered, is recorded; a receipt after an expiry record is recorded).
 *
 * A receipt leaf refused with a reason code no recipient gives, or a receipt
 * by a node that is no recipient, is an alarm, not recorded (twin: a
 * recipient's reason is recorded).
 *
 * Proof edges: a leaf index equal to the tree size is a proof that does not
 * hold (alarm, the message stays queued); a proof against tree size 0, a
 * size the node never took, is ignored (counted, resent); a checkpoint for
 * another network's origin signed with the broker's log key is refused
 * without an alarm, the reference unchanged (twin: the true proof accepts
 * the message).
 *
 * A checkpoint note with hundreds of cosignature lines under one partner's
 * name and key id costs the node one verification for that partner, not
 * hundreds (the first line decides; twin: a valid first line counts, with
 * the bad ones after it).
 *
 * Frames from the broker at the frame limit are read (a delivery of that
 * size is checked like any other); one byte over it, libzmq drops the
 * connection before anything is allocated and the node reads nothing;
 * libzmq does not try again, and the link says it was given up (twin: a
 * broker that went away is tried again, the link is not given up).
 *
 * A witness checkpoint the node keeps is kept with the lines a reader of it
 * checks: a note padded with hundreds of lines (other names, other key ids,
 * more lines of one partner) is stored as the body, the broker's line and
 * each partner's first line (it opens and counts as before; without the
 * trim every stored checkpoint could be 64 KiB, a broker's way to fill the
 * node's store one new tree size at a time).
 *
 * The broker's errors, every reason code, with and without a msg_id, for a
 * message never sent and for one accepted: none changes a message's state
 * (twin: a final refusal of a queued message refuses it). "send Hello
 * first" to a submit sent before the latest Hello (one ZeroMQ queued while
 * the link was down) is not answered with a second Hello (twin: to a submit
 * sent after it, it is).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sodium.h>
#include <zmq.h>

#include "alarm.h"
#include "checkpoint.h"
#include "fixture.h"
#include "fixture_node.h"
#include "inbox.h"
#include "link.h"
#include "nodestore.h"
#include "outbox.h"
#include "pb.h"
#include "receipt.h"
#include "sha256.h"
#include "sigcache.h"
#include "store.h"
#include "util.h"
#include "witness.h"

static const char *const specs[]
    = { "hub:broker", "alpha:municipality", "bravo:police", "charlie:police", NULL };

#define SIGNAL "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}"

typedef fnode_bed ctx;

static int setup(void **state)
{
    *state = fnode_bed_new(fixture_new(1, 1, specs), "alpha", "hub");
    return 0;
}

static int teardown(void **state)
{
    fnode_bed_destroy((ctx **)state);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/* A delivery of len bytes (byte i is fill + i) with no proof: the node
 * raises bad-proof and keeps the frame. */
static void deliver_unproven(ctx *t, size_t len, uint8_t fill)
{
    uint8_t *env = malloc(len);
    assert_non_null(env);
    for (size_t i = 0; i < len; i++) {
        env[i] = (uint8_t)(fill + i);
    }
    fnode_bed_deliver(t, env, len, NULL);
    free(env);
}

/* The evidence table's size in bytes (its pages). */
static uint64_t evidence_bytes(ctx *t)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(mdb_stat(txn, keten_store_dbi(t->node->store, KETEN_DB_EVIDENCE), &st), 0);
    keten_store_abort(&txn);
    return ((uint64_t)st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages)
        * (uint64_t)st.ms_psize;
}

/* The frame of the first evidence record (oldest key), packed again. */
static Keten__EvidenceRecord *first_evidence(ctx *t)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(
        mdb_cursor_open(txn, keten_store_dbi(t->node->store, KETEN_DB_EVIDENCE), &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    Keten__EvidenceRecord *rec = NULL;
    assert_int_equal(keten_nodestore_decode(KETEN_DB_EVIDENCE, k.mv_data, k.mv_size, &v,
                         &keten__evidence_record__descriptor, KETEN_NODESTORE_EVIDENCE_MAX,
                         (ProtobufCMessage **)(void *)&rec),
        KETEN_OK);
    mdb_cursor_close(cur);
    keten_store_abort(&txn);
    return rec;
}

static Keten__SentRecord *record(ctx *t, const uint8_t *id)
{
    Keten__SentRecord *rec = NULL;
    assert_int_equal(keten_outbox_record(t->node, id, &rec), KETEN_OK);
    return rec;
}

static Keten__RecipientState recipient_state(ctx *t, const uint8_t *id, size_t i)
{
    Keten__SentRecord *rec = record(t, id);
    assert_true(i < rec->n_recipients);
    Keten__RecipientState st = rec->recipients[i]->state;
    keten_nodestore_sent_free(&rec);
    return st;
}

/* The receipted record of s by recipient, signed by it now. */
static uint64_t log_receipt(ctx *t, const fnode_sent *s, const char *recipient)
{
    const Keten__NodeCert *c = keten_directory_find_id(t->node->dir, recipient);
    assert_non_null(c);
    return fnode_bed_log_receipt(t, s, recipient, recipient, c, keten_now_ms(), false);
}

/* The refused-by-recipient record of s by recipient, its one-leaf batch
 * signed by the recipient with the leaf's reason code as given (none of
 * the library's checks: what a recipient of another make could sign). */
static uint64_t log_refusal(ctx *t, const fnode_sent *s, const char *recipient, int reason)
{
    const keten_identity *signer = fixture_node(t->fx, recipient);
    const Keten__NodeCert *c = keten_directory_find_id(t->node->dir, recipient);
    assert_non_null(c);
    uint8_t env_hash[KETEN_HASH_BYTES];
    keten_sha256(env_hash, s->env, s->len);
    Keten__ReceiptLeaf leaf = KETEN__RECEIPT_LEAF__INIT;
    leaf.msg_id.data = (uint8_t *)s->id;
    leaf.msg_id.len = KETEN_MSG_ID_BYTES;
    leaf.envelope_hash.data = env_hash;
    leaf.envelope_hash.len = KETEN_HASH_BYTES;
    leaf.outcome = KETEN__OUTCOME__OUTCOME_REFUSED;
    leaf.reason = (Keten__Reason)reason;
    uint8_t *leaf_bytes = NULL;
    size_t leaf_len = 0;
    assert_int_equal(keten_pb_pack(&leaf.base, &leaf_bytes, &leaf_len), KETEN_OK);
    keten_hash root; /* a tree of one leaf: its leaf hash */
    keten_merkle_leaf_hash(leaf_bytes, leaf_len, root);
    Keten__ReceiptBatchHead head = KETEN__RECEIPT_BATCH_HEAD__INIT;
    head.network = (char *)(uintptr_t)keten_directory_network(t->node->dir);
    head.recipient = (char *)(uintptr_t)recipient;
    head.cert_serial = c->serial;
    head.stored_at = keten_now_ms();
    head.count = 1;
    head.root.data = root;
    head.root.len = KETEN_HASH_BYTES;
    uint8_t *head_bytes = NULL;
    size_t head_len = 0;
    assert_int_equal(keten_pb_pack(&head.base, &head_bytes, &head_len), KETEN_OK);
    size_t label = strlen(KETEN_LABEL_RECEIPTS);
    uint8_t *msg = malloc(label + head_len);
    assert_non_null(msg);
    memcpy(msg, KETEN_LABEL_RECEIPTS, label);
    memcpy(msg + label, head_bytes, head_len);
    uint8_t sig[KETEN_SIG_BYTES];
    assert_int_equal(crypto_sign_detached(sig, NULL, msg, label + head_len, signer->sign_sk), 0);
    free(msg);
    Keten__ReceiptProof proof = KETEN__RECEIPT_PROOF__INIT;
    proof.head.data = head_bytes;
    proof.head.len = head_len;
    proof.signature.data = sig;
    proof.signature.len = KETEN_SIG_BYTES;
    proof.leaf.data = leaf_bytes;
    proof.leaf.len = leaf_len;
    proof.index = 0;
    char *rcpt[1] = { (char *)(uintptr_t)recipient };
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    rec.event = KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT;
    rec.msg_id.data = (uint8_t *)s->id;
    rec.msg_id.len = KETEN_MSG_ID_BYTES;
    rec.sender = t->node->me->id;
    rec.node = (char *)(uintptr_t)recipient;
    rec.n_recipients = 1;
    rec.recipients = rcpt;
    rec.receipt = &proof;
    rec.reason = (Keten__Reason)reason;
    rec.directory_version = 1;
    uint64_t at = flog_append(t->log, &rec);
    free(head_bytes);
    free(leaf_bytes);
    return at;
}

/* ---- evidence --------------------------------------------------------------- */

/* The same false delivery sent again and again: one alarm each, its frame
 * kept once. Twin: another false delivery is kept beside it. */
static void test_evidence_same_frame_once(void **state)
{
    ctx *t = *state;
    for (int i = 0; i < 20; i++) {
        deliver_unproven(t, 512, 7);
    }
    assert_int_equal(t->node->counters.alarms, 20);
    assert_int_equal(fnode_alarms(t->fn), 20);
    assert_int_equal(fnode_evidence(t->fn), 1);
    assert_int_equal(t->node->counters.evidence_not_kept, 19);
    assert_int_equal(t->node->counters.rejected, 20);

    deliver_unproven(t, 512, 8);
    assert_int_equal(fnode_evidence(t->fn), 2);
    assert_int_equal(t->node->counters.evidence_not_kept, 19);
}

/* More false deliveries than the table keeps: the first
 * KETEN_ALARM_EVIDENCE_MAX are kept (the first of all among them), every
 * alarm raised and counted. Twin: below the limit each is kept. */
static void test_evidence_count_bounded(void **state)
{
    ctx *t = *state;
    const size_t n = KETEN_ALARM_EVIDENCE_MAX + 40;
    for (size_t i = 0; i < n; i++) {
        deliver_unproven(t, 64, (uint8_t)i);
        if (i < KETEN_ALARM_EVIDENCE_MAX) { /* the twin: each one kept */
            assert_int_equal(fnode_evidence(t->fn), i + 1);
        }
    }
    assert_int_equal(t->node->counters.alarms, n);
    assert_int_equal(fnode_alarms(t->fn), KETEN_ALARM_KEEP); /* the newest */
    assert_int_equal(fnode_evidence(t->fn), KETEN_ALARM_EVIDENCE_MAX);
    assert_int_equal(t->node->counters.evidence_not_kept, n - KETEN_ALARM_EVIDENCE_MAX);
    Keten__EvidenceRecord *first = first_evidence(t);
    Keten__Frame *f = NULL;
    assert_int_equal(KETEN_PB_UNPACK(keten__frame, first->frame.data, first->frame.len,
                         KETEN_FRAME_MAX, "frame", &f),
        KETEN_OK);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_DELIVER);
    assert_int_equal(f->deliver->envelope.len, 64);
    assert_int_equal(f->deliver->envelope.data[0], 0); /* fill 0: the first one */
    assert_non_null(strstr(first->reason, "bad-proof: "));
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    keten_pb_free((ProtobufCMessage **)(void *)&first);
}

/* False deliveries of 1 MiB each: the table stops near
 * KETEN_ALARM_EVIDENCE_BYTES, far below the number of frames. */
static void test_evidence_bytes_bounded(void **state)
{
    ctx *t = *state;
    const size_t mib = (size_t)1 << 20;
    const size_t n = (size_t)(KETEN_ALARM_EVIDENCE_BYTES / mib) + 16;
    for (size_t i = 0; i < n; i++) {
        deliver_unproven(t, mib, (uint8_t)i);
    }
    assert_int_equal(t->node->counters.alarms, n);
    size_t kept = fnode_evidence(t->fn);
    assert_true(kept < n - 8);
    assert_true(kept >= KETEN_ALARM_EVIDENCE_BYTES / mib - 8);
    /* At most one frame past the limit (the one that crossed it). */
    assert_true(evidence_bytes(t) <= KETEN_ALARM_EVIDENCE_BYTES + mib + (64u << 10));
    assert_int_equal(t->node->counters.evidence_not_kept, n - kept);
}

/* ---- expiry notices --------------------------------------------------------- */

/* An expired record dated before the message expires: an alarm, the
 * recipients stay accepted, not confirmed. Twin: the same message's record
 * dated at its expires_at is recorded and confirmed. */
static void test_expiry_dated_too_early(void **state)
{
    ctx *t = *state;
    fnode_sent *s = fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, "bravo", SIGNAL);
    const char *const rcpt[] = { "bravo", NULL };
    uint64_t exp_at = fnode_sent_expires_at(s);
    uint64_t early = fnode_bed_log_expired(t, s, rcpt, exp_at - 1);
    uint64_t in_time = fnode_bed_log_expired(t, s, rcpt, exp_at);
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);
    assert_int_equal(
        recipient_state(t, s->id, 0), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);

    fnode_bed_expiry_notice(t, early, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(fnode_evidence(t->fn), 1);
    assert_int_equal(t->node->counters.proofs_failed, 1);
    assert_int_equal(t->node->n_notice_acks, 0);
    assert_int_equal(
        recipient_state(t, s->id, 0), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);

    fnode_bed_expiry_notice(t, in_time, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(t->node->n_notice_acks, 1);
    assert_int_equal(t->node->notice_acks[0], in_time);
    assert_int_equal(recipient_state(t, s->id, 0), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED);
}

/* An expired record listing a recipient whose receipt the log holds at an
 * earlier leaf: an alarm, nothing recorded (the other recipient stays
 * accepted too), not confirmed. Twin: the record listing only the recipient
 * that never answered is recorded. And the other order: a receipt after an
 * expiry record is recorded (the recipient's signature). */
static void test_expiry_after_receipt(void **state)
{
    ctx *t = *state;
    fnode_sent *s = fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, "bravo,charlie", SIGNAL);
    uint64_t exp_at = fnode_sent_expires_at(s);
    uint64_t rcpt_b = log_receipt(t, s, "bravo");
    const char *const both[] = { "bravo", "charlie", NULL };
    const char *const open[] = { "charlie", NULL };
    uint64_t false_exp = fnode_bed_log_expired(t, s, both, exp_at);
    uint64_t true_exp = fnode_bed_log_expired(t, s, open, exp_at);
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);
    fnode_bed_receipt_notice(t, rcpt_b, size);
    assert_int_equal(
        recipient_state(t, s->id, 0), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    assert_int_equal(t->node->n_notice_acks, 1);

    fnode_bed_expiry_notice(t, false_exp, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(fnode_evidence(t->fn), 1);
    assert_int_equal(t->node->n_notice_acks, 1);
    assert_int_equal(
        recipient_state(t, s->id, 0), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    assert_int_equal(
        recipient_state(t, s->id, 1), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);

    fnode_bed_expiry_notice(t, true_exp, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(t->node->n_notice_acks, 2);
    assert_int_equal(
        recipient_state(t, s->id, 0), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    assert_int_equal(recipient_state(t, s->id, 1), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_EXPIRED);

    /* The other order: charlie's receipt comes after its expiry record (a
     * late answer the broker should not have logged, but charlie's own
     * signature): recorded, no alarm. */
    uint64_t rcpt_c = log_receipt(t, s, "charlie");
    size = fnode_bed_checkpoint(t);
    fnode_bed_receipt_notice(t, rcpt_c, size);
    assert_int_equal(
        recipient_state(t, s->id, 1), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
    assert_int_equal(fnode_alarms(t->fn), 1);
    /* The expiry notice sent again after it changes nothing, no alarm. */
    fnode_bed_expiry_notice(t, true_exp, size);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(
        recipient_state(t, s->id, 1), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_RECEIPTED);
}

/* ---- refusals by a recipient -------------------------------------------------- */

/* A refused-by-recipient record whose leaf carries a reason code no
 * recipient gives (unknown to this node, or a broker's own), and a receipt
 * by a node that is no recipient of the message: an alarm each, the
 * recipient stays accepted. Twin: a recipient's reason (INVALID_SIGNAL) is
 * recorded as refused, with that reason. */
static void test_refusal_unknown_reason(void **state)
{
    ctx *t = *state;
    fnode_sent *s = fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, "bravo", SIGNAL);
    uint64_t unknown = log_refusal(t, s, "bravo", 999);
    uint64_t brokers = log_refusal(t, s, "bravo", KETEN__REASON__REASON_STORE_FULL);
    uint64_t valid = log_refusal(t, s, "bravo", KETEN__REASON__REASON_INVALID_SIGNAL);
    /* And a receipt by charlie, who is no recipient of s (its own key). */
    uint64_t stranger = log_receipt(t, s, "charlie");
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);

    fnode_bed_receipt_notice(t, unknown, size);
    fnode_bed_receipt_notice(t, brokers, size);
    fnode_bed_receipt_notice(t, stranger, size);
    assert_int_equal(fnode_alarms(t->fn), 3);
    assert_int_equal(t->node->n_notice_acks, 0);
    assert_int_equal(
        recipient_state(t, s->id, 0), KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);

    fnode_bed_receipt_notice(t, valid, size);
    assert_int_equal(fnode_alarms(t->fn), 3);
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_REFUSED);
    assert_int_equal(rec->recipients[0]->reason, KETEN__REASON__REASON_INVALID_SIGNAL);
    keten_nodestore_sent_free(&rec);
}

/* ---- proof edges ------------------------------------------------------------------ */

static void test_proof_edges(void **state)
{
    ctx *t = *state;
    fnode_sent *s = fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, "bravo", SIGNAL);
    uint64_t size = fnode_bed_checkpoint(t);

    /* leaf index == tree size (the path of the true leaf). */
    flog_proof *p = flog_proof_new(t->log, s->leaf, size);
    p->buf.msg.leaf_index = size;
    fnode_bed_ack(t, s->rid, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(t->node->counters.proofs_failed, 1);
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_QUEUED);
    keten_nodestore_sent_free(&rec);

    /* Tree size 0: no checkpoint of that size is kept; ignored. */
    p = flog_proof_new(t->log, s->leaf, size);
    p->buf.msg.tree_size = 0;
    p->buf.msg.leaf_index = 0;
    fnode_bed_ack(t, s->rid, &p->buf.msg);
    flog_proof_free(&p);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(t->node->counters.proofs_unknown, 1);

    /* Another network's checkpoint, signed with the broker's log key. */
    flog_pad(t->log, 2);
    keten_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    snprintf(ck.origin, sizeof ck.origin, "keten/othernet");
    ck.size = flog_size(t->log);
    flog_root(t->log, ck.size, ck.root);
    ck.dir_version = keten_directory_version(t->node->dir);
    memcpy(ck.dir_hash, keten_directory_hash(t->node->dir), KETEN_HASH_BYTES);
    char *note = NULL;
    assert_int_equal(keten_checkpoint_sign(&ck, "hub", t->fn->broker->log_sk, &note), KETEN_OK);
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    cf.old_size = size;
    cf.witness = true;
    uint64_t refused = t->node->counters.checkpoints_refused;
    fnode_take_checkpoint(t->fn, &cf);
    free(note);
    assert_int_equal(t->node->counters.checkpoints_refused, refused + 1);
    assert_int_equal(keten_witness_reference_size(t->node), size);
    assert_int_equal(fnode_alarms(t->fn), 1);

    /* Twin: the true proof. */
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);
    rec = record(t, s->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(rec->leaf_index, s->leaf);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(fnode_alarms(t->fn), 1);
}

/* ---- cosignature lines ---------------------------------------------------------- */

#define BAD_LINES 400

/* note + lines (malloc). */
static char *note_cat(const char *note, const char *lines)
{
    size_t a = strlen(note), b = strlen(lines);
    char *out = malloc(a + b + 1);
    assert_non_null(out);
    memcpy(out, note, a);
    memcpy(out + a, lines, b + 1);
    return out;
}

/* The reference checkpoint's note, and bravo's valid cosignature line on
 * it (*valid); both malloc()ed. */
static char *note_with_bravo(ctx *t, uint64_t size, char **valid)
{
    char *note = flog_note(t->log, t->fn->broker, t->node->dir, size);
    *valid = NULL;
    assert_int_equal(keten_checkpoint_cosignature_sign(note, strlen(note), "bravo",
                         fixture_node(t->fx, "bravo")->sign_sk, keten_now_ms() / 1000, valid),
        KETEN_OK);
    return note;
}

/* n cosignature lines made from bravo's valid line, none of which
 * verifies (each with another signature): the first `strangers` under names
 * no directory lists ("x0", ...), the others under bravo's name and
 * cosignature key id. malloc()ed. */
static char *junk_lines(const char *valid, size_t strangers, size_t n)
{
    const char *b64 = strrchr(valid, ' ') + 1;
    uint8_t payload[4 + 8 + 64];
    size_t plen = 0;
    assert_int_equal(sodium_base642bin(payload, sizeof payload, b64, strlen(b64) - 1, NULL, &plen,
                         NULL, sodium_base64_VARIANT_ORIGINAL),
        0);
    assert_int_equal(plen, sizeof payload);
    size_t line_max
        = 32 + sodium_base64_ENCODED_LEN(sizeof payload, sodium_base64_VARIANT_ORIGINAL);
    char *out = calloc(n + 1, line_max);
    assert_non_null(out);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t p[sizeof payload];
        memcpy(p, payload, sizeof p);
        p[12 + i % 64] ^= (uint8_t)(1 + i / 64);
        char enc[sodium_base64_ENCODED_LEN(sizeof payload, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(enc, sizeof enc, p, sizeof p, sodium_base64_VARIANT_ORIGINAL);
        char name[24];
        snprintf(name, sizeof name, i < strangers ? "x%zu" : "bravo", i);
        used += (size_t)snprintf(
            out + used, (n + 1) * line_max - used, "\xe2\x80\x94 %s %s\n", name, enc);
    }
    return out;
}

/* The reference checkpoint's note again, with BAD_LINES cosignature lines
 * under bravo's name and cosignature key id that do not verify (each with
 * another signature), before or after bravo's valid line. */
static void test_note_many_cosignatures(void **state)
{
    ctx *t = *state;
    keten_err e = keten_sigcache_enable(4096);
    assert_true(e == KETEN_OK || e == KETEN_ERR_EXISTS);
    keten_err_clear();
    uint64_t size = fnode_bed_checkpoint(t);
    char *valid = NULL;
    char *note = note_with_bravo(t, size, &valid);
    char *bad = junk_lines(valid, 0, BAD_LINES);
    char *n1 = note_cat(note, valid);
    char *good_first = note_cat(n1, bad);
    char *n2 = note_cat(note, bad);
    char *bad_first = note_cat(n2, valid);
    assert_true(strlen(bad_first) <= KETEN_CHECKPOINT_MAX);

    /* What the lines count: the first line of bravo decides. */
    size_t count = 9;
    bool witnessed = true;
    assert_int_equal(keten_checkpoint_witnesses(
                         good_first, strlen(good_first), t->node->dir, &count, &witnessed),
        KETEN_OK);
    assert_int_equal(count, 1); /* the twin: bravo counts */
    uint64_t hits0 = 0, misses0 = 0, hits1 = 0, misses1 = 0;
    keten_sigcache_counts(&hits0, &misses0);
    assert_int_equal(
        keten_checkpoint_witnesses(bad_first, strlen(bad_first), t->node->dir, &count, &witnessed),
        KETEN_OK);
    assert_int_equal(count, 0);
    keten_sigcache_counts(&hits1, &misses1);
    assert_true(misses1 - misses0 <= 1);

    /* The node takes the note three times (its reference's size, the same
     * root): no alarm, a handful of verifications, not 3 x BAD_LINES. */
    for (int i = 0; i < 3; i++) {
        Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
        cf.note = bad_first;
        cf.old_size = size;
        cf.witness = true;
        fnode_take_checkpoint(t->fn, &cf);
    }
    keten_sigcache_counts(&hits0, &misses0);
    assert_true(misses0 - misses1 <= 3 * 3);
    assert_int_equal(fnode_alarms(t->fn), 0);
    assert_int_equal(keten_witness_reference_size(t->node), size);
    keten_sigcache_disable();
    free(bad_first);
    free(n2);
    free(good_first);
    free(n1);
    free(bad);
    free(valid);
    free(note);
}

/* The reference's note again with bravo's valid line, then 300 lines under
 * names no directory lists and 100 more of bravo's with bad signatures:
 * stored trimmed. */
static void test_note_kept_trimmed(void **state)
{
    ctx *t = *state;
    uint64_t size = fnode_bed_checkpoint(t);
    char *valid = NULL;
    char *note = note_with_bravo(t, size, &valid);
    enum { STRANGERS = 300, BRAVOS = 100 };
    char *pad = junk_lines(valid, STRANGERS, STRANGERS + BRAVOS);
    char *n1 = note_cat(note, valid);
    char *big = note_cat(n1, pad);
    assert_true(strlen(big) > 40000 && strlen(big) <= KETEN_CHECKPOINT_MAX);
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = big;
    cf.old_size = size;
    cf.witness = true;
    fnode_take_checkpoint(t->fn, &cf);
    assert_int_equal(fnode_alarms(t->fn), 0);

    MDB_txn *txn = NULL;
    Keten__CheckpointRecord *rec = NULL;
    assert_int_equal(keten_store_begin(t->node->store, false, &txn), KETEN_OK);
    assert_int_equal(keten_nodestore_checkpoint_get(t->node->store, txn, size, &rec), KETEN_OK);
    keten_store_abort(&txn);
    /* The note (body, broker's line, blank line) and bravo's valid line. */
    size_t want = strlen(note) + strlen(valid);
    assert_int_equal(strlen(rec->note), want);
    assert_memory_equal(rec->note, n1, want);
    keten_checkpoint cp;
    const Keten__NodeCert *b = keten_directory_broker(t->node->dir);
    assert_int_equal(
        keten_checkpoint_open(rec->note, strlen(rec->note), b->id, b->log_pk.data, &cp), KETEN_OK);
    assert_int_equal(cp.size, size);
    size_t count = 0;
    bool witnessed = false;
    assert_int_equal(
        keten_checkpoint_witnesses(rec->note, strlen(rec->note), t->node->dir, &count, &witnessed),
        KETEN_OK);
    assert_int_equal(count, 1);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    free(big);
    free(n1);
    free(pad);
    free(valid);
    free(note);
}

/* ---- frames at and above the limit ------------------------------------------------ */

/* The node's routing id at the broker's end, from the next frame it sends. */
static size_t learn_routing_id(ctx *t, uint8_t *rid, size_t max)
{
    keten_witness_send_hello(t->node);
    int wait = FNODE_RECV_MS;
    assert_int_equal(zmq_setsockopt(t->fn->router, ZMQ_RCVTIMEO, &wait, sizeof wait), 0);
    int n = zmq_recv(t->fn->router, rid, max, 0);
    assert_true(n > 0 && (size_t)n <= max);
    uint8_t rest[64];
    assert_true(zmq_recv(t->fn->router, rest, sizeof rest, 0) >= 0);
    return (size_t)n;
}

/* A Deliver frame (no proof) of exactly total bytes, packed (malloc). */
static uint8_t *deliver_frame_of(size_t total, size_t *env_len)
{
    size_t env = total - 16;
    for (int round = 0; round < 4; round++) {
        Keten__Deliver d = KETEN__DELIVER__INIT;
        d.envelope.len = env;
        Keten__Frame f = KETEN__FRAME__INIT;
        f.body_case = KETEN__FRAME__BODY_DELIVER;
        f.deliver = &d;
        size_t packed = keten__frame__get_packed_size(&f);
        if (packed == total) {
            uint8_t *data = calloc(1, env);
            uint8_t *buf = malloc(total);
            assert_non_null(data);
            assert_non_null(buf);
            d.envelope.data = data;
            assert_int_equal(keten__frame__pack(&f, buf), total);
            free(data);
            *env_len = env;
            return buf;
        }
        env = env + total - packed;
    }
    fail_msg("no Deliver frame of %zu bytes", total);
    return NULL;
}

/* Wait for a link event of kind want; false if none came within the wait. */
static bool link_event(ctx *t, keten_link_event want)
{
    uint64_t until = keten_mono_ms() + 5000;
    while (keten_mono_ms() < until) {
        zmq_pollitem_t item = { keten_link_monitor(t->node->link), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&item, 1, 50) > 0 && keten_link_on_monitor(t->node->link) == want) {
            return true;
        }
    }
    return false;
}

/* How many monitor events came within ms (read as the daemon reads them). */
static size_t quiet_events(ctx *t, uint64_t ms)
{
    size_t n = 0;
    uint64_t until = keten_mono_ms() + ms;
    while (keten_mono_ms() < until) {
        zmq_pollitem_t item = { keten_link_monitor(t->node->link), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&item, 1, 50) > 0) {
            (void)keten_link_on_monitor(t->node->link);
            n++;
        }
    }
    return n;
}

static void test_frame_limit(void **state)
{
    ctx *t = *state;
    uint8_t rid[256];
    size_t rid_len = learn_routing_id(t, rid, sizeof rid);
    size_t env_len = 0;
    uint8_t *at = deliver_frame_of(KETEN_NODE_FRAME_MAX, &env_len);
    assert_true(zmq_send(t->fn->router, rid, rid_len, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(t->fn->router, at, KETEN_NODE_FRAME_MAX, 0) >= 0);
    zmq_pollitem_t item = { keten_link_socket(t->node->link), 0, ZMQ_POLLIN, 0 };
    assert_int_equal(zmq_poll(&item, 1, 5000), 1);
    Keten__Frame *f = NULL;
    assert_int_equal(keten_link_recv(t->node->link, &f), KETEN_OK);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_DELIVER);
    assert_int_equal(f->deliver->envelope.len, env_len);
    /* Checked like any delivery: no proof, an alarm, nothing stored. */
    fnode_frame(t->fn, f);
    keten_inbox_on_deliver(t->node, f->deliver);
    fnode_frame(t->fn, NULL);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    assert_int_equal(fnode_alarms(t->fn), 1);
    assert_int_equal(t->node->counters.rejected, 1);
    assert_int_equal(t->node->counters.received, 0);
    free(at);

    /* One byte more: libzmq drops the connection; nothing is read. */
    uint8_t *over = deliver_frame_of(KETEN_NODE_FRAME_MAX + 1, &env_len);
    assert_true(zmq_send(t->fn->router, rid, rid_len, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(t->fn->router, over, KETEN_NODE_FRAME_MAX + 1, 0) >= 0);
    free(over);
    assert_true(link_event(t, KETEN_LINK_DOWN));
    assert_int_equal(keten_link_recv(t->node->link, &f), KETEN_ERR_NOT_FOUND);
    keten_err_clear();
    assert_int_equal(fnode_alarms(t->fn), 1);
    /* libzmq does not try again after a protocol error: no event for
     * longer than its longest retry interval, and the link says it was
     * given up (the daemon makes it again: node_hostbroker.sh (c)). */
    assert_int_equal(quiet_events(t, KETEN_LINK_RECONNECT_MAX_MS + 1000), 0);
    assert_false(keten_link_connected(t->node->link));
    assert_true(keten_link_given_up(t->node->link, keten_mono_ms() + KETEN_LINK_GIVEN_UP_MS));
}

/* Twin: a broker that went away (its socket closed) is tried again: retries
 * are reported, the link is not given up. */
static void test_broker_gone_not_given_up(void **state)
{
    ctx *t = *state;
    zmq_close(t->fn->router);
    t->fn->router = NULL;
    assert_true(link_event(t, KETEN_LINK_DOWN));
    assert_true(quiet_events(t, KETEN_LINK_RECONNECT_MAX_MS + 1000) > 0);
    assert_false(keten_link_given_up(t->node->link, keten_mono_ms()));
}

/* ---- the broker's errors -------------------------------------------------------- */

static void broker_error(ctx *t, uint64_t rid, const uint8_t *id, Keten__Reason reason)
{
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = reason;
    if (id != NULL) {
        err.msg_id.data = (uint8_t *)(uintptr_t)id;
        err.msg_id.len = KETEN_MSG_ID_BYTES;
    }
    err.detail = (char *)"the broker's detail";
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = rid;
    f.body_case = KETEN__FRAME__BODY_ERROR;
    f.error = &err;
    fnode_frame(t->fn, &f);
    keten_outbox_on_error(t->node, rid, &err);
    fnode_frame(t->fn, NULL);
}

/* Every reason code (and one no version knows), without a msg_id, with the
 * msg_id of a message never sent, with that of an accepted message and the
 * request id of its submit: the accepted message stays accepted at its
 * leaf, nothing is recorded for the unknown one, no alarm. Twin: a final
 * refusal naming a queued message refuses it. */
static void test_errors_change_nothing(void **state)
{
    ctx *t = *state;
    fnode_sent *s = fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, "bravo", SIGNAL);
    uint64_t size = fnode_bed_checkpoint(t);
    fnode_bed_ack_leaf(t, s->rid, s->leaf, size);
    assert_int_equal(t->node->counters.sent, 1);
    uint8_t never[KETEN_MSG_ID_BYTES];
    randombytes_buf(never, sizeof never);

    const ProtobufCEnumDescriptor *d = &keten__reason__descriptor;
    for (unsigned i = 0; i <= d->n_values; i++) {
        Keten__Reason r = i < d->n_values ? (Keten__Reason)d->values[i].value : (Keten__Reason)999;
        if (r == KETEN__REASON__REASON_REVOKED || r == KETEN__REASON__REASON_KEYS_REPLACED
            || r == KETEN__REASON__REASON_UNKNOWN_SENDER
            || r == KETEN__REASON__REASON_UNKNOWN_CHECKPOINT) {
            /* Without a msg_id these end the connection (daemon.c, alarm.h:
             * a refusal), before the outbox sees them; with one they are
             * per-message refusals. */
            broker_error(t, s->rid, s->id, r);
            broker_error(t, 0, never, r);
            continue;
        }
        broker_error(t, 0, NULL, r);
        broker_error(t, s->rid, NULL, r);
        broker_error(t, s->rid, s->id, r);
        broker_error(t, 0, never, r);
    }
    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_ACCEPTED);
    assert_int_equal(rec->leaf_index, s->leaf);
    assert_int_equal(rec->reason, KETEN__REASON__REASON_NONE);
    assert_int_equal(rec->recipients[0]->state, KETEN__RECIPIENT_STATE__RECIPIENT_STATE_ACCEPTED);
    keten_nodestore_sent_free(&rec);
    rec = NULL;
    assert_int_equal(keten_outbox_record(t->node, never, &rec), KETEN_ERR_NOT_FOUND);
    keten_err_clear();
    assert_int_equal(t->node->counters.refused, 0);
    assert_int_equal(t->node->counters.sent, 1);
    assert_int_equal(fnode_alarms(t->fn), 0);

    /* Twin: a queued message refused (POLICY) with the proof of its
     * rejected record is refused (without one it stays queued). */
    fnode_sent *q = fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, "bravo", SIGNAL);
    broker_error(t, q->rid, q->id, KETEN__REASON__REASON_POLICY);
    rec = record(t, q->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_QUEUED);
    keten_nodestore_sent_free(&rec);
    uint64_t rej = fnode_bed_log_rejected(t, q->id, "alpha", KETEN__REASON__REASON_POLICY, 0);
    fnode_bed_refusal_leaf(
        t, q->rid, q->id, KETEN__REASON__REASON_POLICY, 0, rej, fnode_bed_checkpoint(t));
    rec = record(t, q->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_REFUSED);
    assert_int_equal(rec->reason, KETEN__REASON__REASON_POLICY);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(t->node->counters.refused, 1);
}

/* The next frames the node sent are a Hello and a Submit of a request id
 * above after (the outbox resent); returns that request id. */
static uint64_t hello_then_resubmit(ctx *t, uint64_t after)
{
    Keten__Frame *f = fnode_recv(t->fn, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_HELLO);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    f = fnode_recv(t->fn, FNODE_RECV_MS);
    assert_non_null(f);
    assert_int_equal(f->body_case, KETEN__FRAME__BODY_SUBMIT);
    uint64_t rid = f->request_id;
    assert_true(rid > after);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    return rid;
}

/* "send Hello first" (MALFORMED, no msg_id) to a submit sent before the
 * Hello of a new connection: the submit waited in ZeroMQ's queue while the
 * link was down and reached the new connection ahead of the Hello. The
 * node sends no second Hello (two in flight are what row 280 of
 * security.md is about) and nothing else: the message went out again in
 * the resubmitting pass after the Hello. Twin: the same refusal of a
 * submit sent after that Hello (a broker that forgot it) gets the Hello
 * again and the outbox after it. */
static void test_hello_first_queued_submit(void **state)
{
    ctx *t = *state;
    fnode_sent *s = fnode_bed_send(t, KETEN__KIND__KIND_SIGNAL, "bravo", SIGNAL);
    /* The link comes back: the daemon sends Hello, then the outbox. */
    keten_witness_send_hello(t->node);
    keten_outbox_submit_all(t->node);
    uint64_t resent = hello_then_resubmit(t, s->rid);

    broker_error(t, s->rid, NULL, KETEN__REASON__REASON_MALFORMED);
    assert_int_equal(t->node->rehello_at, 0);
    fnode_expect_nothing_more(t->fn);

    /* Twin: the resent submit refused the same way. */
    broker_error(t, resent, NULL, KETEN__REASON__REASON_MALFORMED);
    assert_int_not_equal(t->node->rehello_at, 0);
    (void)hello_then_resubmit(t, resent);
    fnode_expect_nothing_more(t->fn);

    Keten__SentRecord *rec = record(t, s->id);
    assert_int_equal(rec->state, KETEN__SENT_STATE__SENT_STATE_QUEUED);
    keten_nodestore_sent_free(&rec);
    assert_int_equal(fnode_alarms(t->fn), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_evidence_same_frame_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evidence_count_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evidence_bytes_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_dated_too_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_after_receipt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_unknown_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proof_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_note_many_cosignatures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_note_kept_trimmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_gone_not_given_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_first_queued_submit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
