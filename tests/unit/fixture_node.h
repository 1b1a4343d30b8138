/*
 * fixture_node.h - a keten-node without its main loop, the broker's end of
 * its link, and a broker's audit log, for the unit tests of client/'s
 * modules (tests/unit/test_node_*.c), built on a test network (fixture.h).
 *
 * The node (fnode) is real but for the loop: its identity (the fixture's),
 * the anchor and directory files the fixture wrote (keten_directory_anchor_load,
 * keten_dirs_load), its LMDB store in the fixture's temporary directory,
 * the witness (keten_witness_new), the local API socket (keten_api_open)
 * and the link (keten_link_new: a CurveZMQ DEALER with the node's transport
 * keys). The broker's end is a ROUTER socket bound here as a CurveZMQ
 * server with the broker identity's transport keys on ipc:// (no ZAP
 * handler: any client is admitted); fnode_connect() waits for the handshake
 * as the daemon's monitor does, and fnode_recv() reads what the node sent.
 * Frames from the broker are handed to the module under test directly,
 * with node->frame set as the daemon's dispatch sets it (fnode_frame()).
 *
 * The broker's log (flog) is a Merkle log (lib/merkle.h) in an LMDB
 * environment of its own, written by the test: any AuditRecord, or the
 * "submitted" record of an envelope as the broker writes it (from the
 * envelope's bytes, without verifying them, so a test can log what a
 * broker should never accept); checkpoints signed with the broker's real
 * log key naming the node's directory; leaf and consistency proofs.
 *
 * Failures abort the test (cmocka). Destroy the node before the fixture.
 */
#ifndef KETEN_TEST_FIXTURE_NODE_H
#define KETEN_TEST_FIXTURE_NODE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "fixture.h"
#include "logproof.h"
#include "merkle.h"
#include "node.h"

#define FNODE_RECV_MS 2000 /* how long fnode_recv() waits for a frame */

typedef struct fnode {
    fixture *fx; /* borrowed */
    keten_node node;
    const keten_identity *broker; /* borrowed */
    char home[PATH_MAX];
    char anchor[PATH_MAX];
    char directory[PATH_MAX];
    char endpoint[PATH_MAX + 8];
    void *router; /* the broker's end of the link */
} fnode;

/* Node node_id of the fixture, linked to a broker end for broker_id. */
fnode *fnode_new(fixture *fx, const char *node_id, const char *broker_id);
void fnode_destroy(fnode **self_p);

/* Wait until the link's handshake succeeded (keten_link_connected). */
void fnode_connect(fnode *self);

/* The next frame the node sent, parsed (keten_pb_free); NULL when none came
 * within timeout_ms. */
Keten__Frame *fnode_recv(fnode *self, int timeout_ms);
/* The next frame of body case `body`, skipping others; NULL if none. */
Keten__Frame *fnode_recv_body(fnode *self, int body, int timeout_ms);

/* That the node sent nothing more: it sends a Hello as a marker (the node's
 * frames arrive in the order sent), and the next frame must be that Hello. */
void fnode_expect_nothing_more(fnode *self);

/* Set node->frame to f (the evidence an alarm keeps), as the daemon does
 * while a frame is handled; NULL after. */
void fnode_frame(fnode *self, const Keten__Frame *f);

/* Alarms stored, and frames kept as evidence. */
size_t fnode_alarms(fnode *self);
size_t fnode_evidence(fnode *self);

/* ---- the broker's log ---------------------------------------------------- */

typedef struct flog {
    MDB_env *env;
    keten_merkle_log *log;
    char dir[PATH_MAX];
} flog;

/* A new empty log in the fixture's temporary directory (name: a folder). */
flog *flog_new(fixture *fx, const char *name);
void flog_destroy(flog **self_p);

uint64_t flog_size(flog *self);
void flog_root(flog *self, uint64_t size, keten_hash out);

/* Append rec (its seq and, if 0, its time are set); returns its leaf. */
uint64_t flog_append(flog *self, Keten__AuditRecord *rec);
/* Append the "submitted" record of the envelope env (parsed, not verified). */
uint64_t flog_submitted(flog *self, const uint8_t *env, size_t len);
/* Append n records of no message (node-connected) to grow the tree. */
void flog_pad(flog *self, size_t n);

/* The checkpoint of the first size leaves, signed by the broker with its
 * log key, naming dir's version and hash (malloc). */
char *flog_note(
    flog *self, const keten_identity *broker, const keten_directory *dir, uint64_t size);

/* The LeafProof of leaf in the tree of size leaves; its leaf bytes are
 * copied (freed by flog_proof_free). */
typedef struct flog_proof {
    keten_logproof_buf buf;
    uint8_t *leaf;
} flog_proof;

flog_proof *flog_proof_new(flog *self, uint64_t leaf, uint64_t size);
void flog_proof_free(flog_proof **p);

/* A CheckpointFrame from old_size to size (consistency proof when
 * 0 < old_size < size), handed to the node's witness. */
void fnode_checkpoint(fnode *self, flog *log, uint64_t old_size, uint64_t size, bool witness);

#endif
