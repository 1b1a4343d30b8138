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
 * The bed (fnode_bed) is what the tests of the outbox, the inbox, the event
 * log and the metrics set up alike: the fixture, a node connected to the
 * broker's end, the broker's log; and the frames the broker sends, the
 * messages the node sends, envelopes sealed by others, a next directory.
 *
 * Failures abort the test (cmocka). Destroy the node before the fixture
 * (fnode_bed_destroy does).
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
/* Hand cf to the node as the broker's frame (keten_witness_on_checkpoint
 * with node->frame set, as the daemon does). */
void fnode_take_checkpoint(fnode *self, const Keten__CheckpointFrame *cf);

/* ---- the usual bed of a node's test ------------------------------------------ */

/* What the tests of the outbox, the inbox, the event log and the metrics
 * share: the fixture, the node, the broker's log, and the messages the node
 * sent through its outbox (their envelopes freed with the bed). */
#define FNODE_SENT_MAX 4

typedef struct fnode_sent {
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint64_t rid; /* the submit's request id */
    uint8_t *env; /* the envelope submitted (malloc, the bed's) */
    size_t len;
    uint64_t leaf; /* its "submitted" record in the broker's log */
} fnode_sent;

typedef struct fnode_bed {
    fixture *fx;
    fnode *fn;
    keten_node *node; /* &fn->node */
    flog *log;
    fnode_sent sent[FNODE_SENT_MAX];
    size_t n_sent;
} fnode_bed;

/* Node node_id of fx (the bed owns fx from here) linked to broker_id and
 * connected, and the broker's log "log" with one record of no message (so
 * that leaf 0 is no submit). */
fnode_bed *fnode_bed_new(fixture *fx, const char *node_id, const char *broker_id);
/* The envelopes sent, the log, the node, then the fixture. Accepts NULL. */
void fnode_bed_destroy(fnode_bed **self_p);

/* The node takes the broker's checkpoint of its whole log (a consistency
 * proof from its reference); returns that size. */
uint64_t fnode_bed_checkpoint(fnode_bed *self);

/* Send json of kind to `to` through the real outbox (keten_outbox_send); the
 * Submit the broker's end got, its envelope of the msg_id the send gave,
 * and its "submitted" record appended to the broker's log. */
fnode_sent *fnode_bed_send(fnode_bed *self, Keten__Kind kind, const char *to, const char *json);

/* Frames from the broker, handed to the module with node->frame set:
 * a SubmitAck for request rid (keten_outbox_on_ack) ... */
void fnode_bed_ack(fnode_bed *self, uint64_t rid, const Keten__LeafProof *p);
/* ... with the proof of leaf in the tree of size leaves; */
void fnode_bed_ack_leaf(fnode_bed *self, uint64_t rid, uint64_t leaf, uint64_t size);
/* an Error refusing the submit rid of msg_id (keten_outbox_on_error) with
 * reason, rule and proof p (NULL for none) ... */
void fnode_bed_refusal(fnode_bed *self, uint64_t rid, const uint8_t *msg_id, Keten__Reason reason,
    uint32_t rule, const Keten__LeafProof *p);
/* ... with the proof of leaf in the tree of size leaves; */
void fnode_bed_refusal_leaf(fnode_bed *self, uint64_t rid, const uint8_t *msg_id,
    Keten__Reason reason, uint32_t rule, uint64_t leaf, uint64_t size);
/* The "rejected" record of msg_id (NULL: none) of sender with reason and
 * rule (POLICY), as the broker writes it, appended; returns its leaf. */
uint64_t fnode_bed_log_rejected(fnode_bed *self, const uint8_t *msg_id, const char *sender,
    Keten__Reason reason, uint32_t rule);
/* a Deliver of env (keten_inbox_on_deliver), p NULL for none ... */
void fnode_bed_deliver(fnode_bed *self, const uint8_t *env, size_t len, const Keten__LeafProof *p);
/* ... with the proof of leaf in the tree of size leaves; */
void fnode_bed_deliver_leaf(
    fnode_bed *self, const uint8_t *env, size_t len, uint64_t leaf, uint64_t size);
/* a ReceiptNotice of the record at leaf (keten_outbox_on_receipt_notice). */
void fnode_bed_receipt_notice(fnode_bed *self, uint64_t leaf, uint64_t size);

/* The "receipted" record of message s by recipient, appended to the
 * broker's log: a receipt batch of one leaf (outcome stored) signed by
 * signer (the recipient, or not) under cert's serial, dated stored_at,
 * naming s's envelope (or, other_envelope, another one). Returns its leaf. */
uint64_t fnode_bed_log_receipt(fnode_bed *self, const fnode_sent *s, const char *recipient,
    const char *signer, const Keten__NodeCert *cert, uint64_t stored_at, bool other_envelope);

/* The expires_at of s's header. */
uint64_t fnode_sent_expires_at(const fnode_sent *s);
/* The "expired" record of message s listing recipients (NULL-ended), dated
 * at, appended to the broker's log. Returns its leaf. */
uint64_t fnode_bed_log_expired(
    fnode_bed *self, const fnode_sent *s, const char *const *recipients, uint64_t at);
/* An ExpiredNotice of the record at leaf (keten_outbox_on_expired). */
void fnode_bed_expiry_notice(fnode_bed *self, uint64_t leaf, uint64_t size);

/* Publish the fixture's draft as the next version, valid for valid_ms, and
 * push it to the node as the broker would; the node installs it. */
void fnode_push_next(fnode *self, uint64_t valid_ms);
void fnode_bed_push_next(fnode_bed *self, uint64_t valid_ms);

/* Put a queued SentRecord of env (to one recipient, pending) and its outbox
 * entry into the store by hand, as if the node had been down since. */
void fnode_bed_put_queued(
    fnode_bed *self, const uint8_t *id, uint8_t *env, size_t len, const char *to);

/* How fnode_seal() seals. */
typedef struct fnode_seal_opts {
    Keten__Kind kind;
    const char *category; /* NULL: the signal's type */
    const uint8_t *in_reply_to; /* NULL: none */
    uint64_t life_ms; /* expires_at - created_at; created now */
} fnode_seal_opts;

/* The signal JSON text json, from signer to the one node `to`, sealed with
 * dir (keten_envelope_seal); its purpose is the signal's. The envelope
 * (malloc); id_out may be NULL. */
uint8_t *fnode_seal(const keten_identity *signer, const keten_directory *dir, const char *to,
    const char *json, const fnode_seal_opts *o, uint8_t *id_out, size_t *len_out);

#endif
