/*
 * fuzz_node_frame.c - frames from the broker into the node's frame handling
 * (client/): acks, errors, deliveries, receipt and expiry notices,
 * directory pushes and checkpoints, handed to the modules as the daemon's
 * on_frame() does (daemon.c), in one group-commit batch (store.h), with a
 * real node store in a temporary directory (on /dev/shm when there is one).
 *
 * The node is set up once as tests/unit/fixture_node.c does it (identity,
 * anchor, directory, store, witness, local API, link), on the test network
 * of fuzz_common.h; its link is never connected and everything it would
 * send is held and dropped (keten_link_hold / release(false)). Before each
 * input the store is made again empty, and the directory, the witness and
 * the node's counters start afresh.
 *
 * The corpus frames were made at fixed times in 2026 (fuzz_common.h): the
 * wall clock this process sees (CLOCK_REALTIME) is moved back to start at
 * NODE_CLOCK_START, two minutes before FUZZ_T_ROTATE, when directory version
 * 2 (issued at FUZZ_T_ROTATE) is fresh within the allowed clock skew and the
 * corpus envelopes (expiring at FUZZ_T_ROTATE) have not expired; it runs on
 * from there. Other clocks are untouched.
 *
 * Input: [sel] then frames, each [length, 2 bytes big endian][Frame bytes]
 * (the last may be short), at most MAX_FRAMES. sel & 3 picks the node
 * (fuzz_node_ids order); sel & 4 gives it directory version 2 instead of
 * version 1 (the corpus checkpoints name version 2); sel & 8 gives
 * politie-mn its rotated keys of version 2.
 *
 * Invariants:
 *   1. nothing recorded as accepted unless its proof verifies: a delivery
 *      is stored (counters.received) only when its LeafProof leads to the
 *      root of a checkpoint of that tree size that the broker's log key
 *      signed (a Checkpoint frame of this input), its record is the
 *      "submitted" record of that very envelope, and the envelope opens for
 *      this node; a proof counted as passed (acks, deliveries, notices,
 *      duplicates) leads to such a root too;
 *   2. a checkpoint is accepted only when the broker's log key signed it;
 *   3. with nothing ever sent, nothing is counted as acknowledged or
 *      receipted;
 *   4. every alarm is kept (the evidence count never goes down).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "checkpoint.h"
#include "dirs.h"
#include "envelope.h"
#include "fuzz_common.h"
#include "inbox.h"
#include "log.h"
#include "logproof.h"
#include "merkle.h"
#include "node.h"
#include "outbox.h"
#include "pb.h"
#include "store.h"
#include "util.h"
#include "witness.h"

#define MAX_FRAMES 16
#define MAX_CPS MAX_FRAMES
#define NODE_CLOCK_START (FUZZ_T_ROTATE - 2ull * 60ull * 1000ull)

/* ---- the wall clock, moved back to the corpus's time --------------------- */

int clock_gettime(clockid_t id, struct timespec *ts);
int clock_gettime(clockid_t id, struct timespec *ts)
{
    return fuzz_clock_gettime(id, ts, NODE_CLOCK_START);
}

/* ---- the node ------------------------------------------------------------ */

static struct {
    bool ready;
    fuzz_files f;
    char store[PATH_MAX];
    keten_node node;
} S;

static void cleanup(void)
{
    fuzz_node_teardown(&S.node);
    if (S.f.dir[0] != '\0') {
        fuzz_remove_tree(S.f.dir);
    }
}

static void setup(void)
{
    keten_log_threshold = 0; /* quiet: refusals are expected by the thousand */
    fuzz_files_make("node", &S.f);
    atexit(cleanup);
    fuzz_path_join(S.store, S.f.home, "store");
    keten_node *node = &S.node;
    fuzz_node_setup(node, &S.f);
    /* The local API stays open for every input (held and released by each). */
    FUZZ_MUST(keten_store_open(S.f.home, &node->store));
    FUZZ_MUST(keten_dirs_load(node));
    FUZZ_MUST(keten_api_open(node, &node->api));
    fuzz_node_close(node);
    keten_err_clear();
    S.ready = true;
}

/* The node afresh: an empty store, the chosen identity and directory. */
static void node_open(uint8_t sel)
{
    const fuzz_network *net = fuzz_net();
    keten_node *node = &S.node;
    fuzz_remove_tree(S.store);
    size_t who = sel & 3u;
    bool v2 = (sel & 4u) != 0;
    node->me = (sel & 8u) != 0 && who == 1 ? net->politie2 : net->nodes[who];
    node->opts.directory = S.f.directory[v2 ? 1 : 0];
    fuzz_node_open(node);
}

/* ---- what the input's checkpoints prove -------------------------------- */

typedef struct signed_cp {
    uint64_t size;
    keten_hash root;
} signed_cp;

static bool signed_by_broker(const Keten__CheckpointFrame *cf, signed_cp *out)
{
    if (cf == NULL || cf->note == NULL) {
        return false;
    }
    keten_checkpoint cp;
    bool ok = keten_checkpoint_open(
                  cf->note, strlen(cf->note), FUZZ_BROKER, fuzz_node(FUZZ_BROKER)->log_pk, &cp)
        == KETEN_OK;
    keten_err_clear();
    if (ok) {
        out->size = cp.size;
        memcpy(out->root, cp.root, sizeof out->root);
    }
    return ok;
}

/* Does p lead to the root of a signed checkpoint of its tree size? */
static bool proven(const Keten__LeafProof *p, const signed_cp *cps, size_t n_cps)
{
    if (p == NULL) {
        return false;
    }
    keten_hash lh;
    keten_hash root;
    keten_merkle_leaf_hash(p->leaf.data, p->leaf.len, lh);
    if (!fuzz_root_from_path(lh, p->leaf_index, p->tree_size, p->path, p->n_path, root)) {
        return false;
    }
    for (size_t i = 0; i < n_cps; i++) {
        if (cps[i].size == p->tree_size && memcmp(cps[i].root, root, sizeof root) == 0) {
            return true;
        }
    }
    return false;
}

static const Keten__LeafProof *proof_of(const Keten__Frame *f)
{
    switch (f->body_case) {
    case KETEN__FRAME__BODY_SUBMIT_ACK:
        return f->submit_ack->proof;
    case KETEN__FRAME__BODY_ERROR:
        return f->error->proof;
    case KETEN__FRAME__BODY_DELIVER:
        return f->deliver->proof;
    case KETEN__FRAME__BODY_RECEIPT_NOTICE:
        return f->receipt_notice->proof;
    case KETEN__FRAME__BODY_EXPIRED:
        return f->expired->proof;
    default:
        return NULL;
    }
}

/* A stored delivery: its record is the "submitted" record of the envelope,
 * and the envelope opens for this node. */
static void check_delivery(const Keten__Deliver *d)
{
    keten_node *node = &S.node;
    const ProtobufCBinaryData *env = &d->envelope;
    Keten__AuditRecord *rec = NULL;
    Keten__Envelope *e = NULL;
    FUZZ_CHECK(d->proof != NULL);
    FUZZ_MUST(KETEN_PB_UNPACK(keten__audit_record, d->proof->leaf.data, d->proof->leaf.len,
        KETEN_AUDIT_RECORD_MAX, "record", &rec));
    FUZZ_MUST(KETEN_PB_UNPACK(keten__envelope, env->data, env->len, KETEN_ENVELOPE_MAX, "e", &e));
    FUZZ_CHECK(keten_logproof_record_is_envelope(rec, env->data, env->len, e) == KETEN_OK);
    keten_envelope_verified *v = NULL;
    FUZZ_CHECK(
        keten_envelope_open(node->me, node->dir, env->data, env->len, keten_now_ms(), &v, NULL)
        == KETEN_OK);
    keten_envelope_verified_destroy(&v);
    keten_pb_free((ProtobufCMessage **)(void *)&e);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
}

/* As daemon.c's on_frame(). */
static void on_frame(keten_node *node, const Keten__Frame *f)
{
    node->frame = f;
    switch (f->body_case) {
    case KETEN__FRAME__BODY_SUBMIT_ACK:
        keten_outbox_on_ack(node, f->request_id, f->submit_ack);
        break;
    case KETEN__FRAME__BODY_ERROR:
        keten_outbox_on_error(node, f->request_id, f->error);
        break;
    case KETEN__FRAME__BODY_DELIVER:
        keten_inbox_on_deliver(node, f->deliver);
        break;
    case KETEN__FRAME__BODY_RECEIPT_NOTICE:
        keten_outbox_on_receipt_notice(node, f->receipt_notice);
        break;
    case KETEN__FRAME__BODY_EXPIRED:
        keten_outbox_on_expired(node, f->expired);
        break;
    case KETEN__FRAME__BODY_DIRECTORY_PUSH:
        if (keten_dirs_on_push(node, f->directory_push) != KETEN_OK) {
            keten_err_clear(); /* refused: the daemon logs it */
        }
        break;
    case KETEN__FRAME__BODY_CHECKPOINT:
        keten_witness_on_checkpoint(node, f->checkpoint);
        break;
    default:
        break;
    }
    node->frame = NULL;
    keten_err_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!S.ready) {
        setup();
    }
    if (size == 0) {
        return 0;
    }
    keten_node *node = &S.node;
    node_open(data[0]);
    signed_cp cps[MAX_CPS];
    size_t n_cps = 0;

    fuzz_node_batch_begin(node);
    size_t at = 1;
    size_t frames = 0;
    while (at < size && frames < MAX_FRAMES) {
        size_t len = 0;
        if (at + 2 <= size) {
            len = ((size_t)data[at] << 8) | data[at + 1];
            at += 2;
        } else {
            at = size;
        }
        if (len > size - at) {
            len = size - at;
        }
        Keten__Frame *f = NULL;
        keten_err pe
            = KETEN_PB_UNPACK(keten__frame, data + at, len, KETEN_NODE_FRAME_MAX, "frame", &f);
        at += len;
        frames++;
        if (pe != KETEN_OK) {
            keten_err_clear();
            continue;
        }
        if (f->body_case == KETEN__FRAME__BODY_CHECKPOINT && n_cps < MAX_CPS
            && signed_by_broker(f->checkpoint, &cps[n_cps])) {
            n_cps++;
        }
        keten_node_counters before = node->counters;
        on_frame(node, f);
        const keten_node_counters *after = &node->counters;
        /* 1 */
        if (after->received > before.received) {
            FUZZ_CHECK(f->body_case == KETEN__FRAME__BODY_DELIVER);
            FUZZ_CHECK(proven(f->deliver->proof, cps, n_cps));
            check_delivery(f->deliver);
        }
        if (after->proofs_passed > before.proofs_passed) {
            FUZZ_CHECK(proven(proof_of(f), cps, n_cps));
        }
        /* 2 */
        if (after->checkpoints_accepted > before.checkpoints_accepted) {
            signed_cp cp;
            FUZZ_CHECK(f->body_case == KETEN__FRAME__BODY_CHECKPOINT
                && signed_by_broker(f->checkpoint, &cp));
        }
        /* 3 */
        FUZZ_CHECK(after->sent == 0 && after->receipts == 0);
        keten_pb_free((ProtobufCMessage **)(void *)&f);
    }
    fuzz_node_batch_end(node);
    fuzz_node_close(node);
    return 0;
}
