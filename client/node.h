/*
 * node.h - the state of one running keten-node daemon, shared by the modules
 * of client/ that each do one part of its work:
 *
 *   daemon.c   main loop: broker link, local API, timers, signals
 *   link.c     the CurveZMQ DEALER connection to the broker
 *   dirs.c     directory versions: load, install pushed chains, fail closed
 *   outbox.c   durable send, resend until proven accepted; acks and notices
 *   inbox.c    verify, store, receipt batches; replay memory; the message list
 *   witness.c  checkpoints and their consistency proofs, leaf proofs,
 *              cosignatures, Hello
 *   alarm.c    alarms (log line, counter, persisted, numbered) and their
 *              acknowledgement by the operator; warnings; the broker's
 *              refusal of this node
 *   rotate.c   a key rotation in the node's own home
 *   api.c      the API's operations (routes, waits, answers held for a
 *              group commit), independent of the transport
 *   http.c     the API over HTTP: HOME/api.sock and api-listen (libmicrohttpd
 *              in the daemon's loop)
 *   status.c   node and message status as JSON
 *   hook.c     the --on-message hook
 *   events.c   the event log applications follow (GET /v1/events)
 *   store.c    the LMDB store
 *   nodestore.c  its records (protobuf, checked when read)
 *
 * Everything runs in the daemon's one thread; no locking.
 */
#ifndef KETEN_NODE_NODE_H
#define KETEN_NODE_NODE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directory.h"
#include "err.h"
#include "identity.h"
#include "idem.h"
#include "keten.h"
#include "link.h"
#include "receipt.h"
#include "store.h"

/* Largest frame the node accepts from the broker (docs/wire.md). */
#define KETEN_NODE_FRAME_MAX KETEN_FRAME_MAX
#define KETEN_NODE_CREDIT_WINDOW 64
/* A checkpoint named a directory version this node does not have: alarm
 * directory-withheld when the broker has not served it within this time. */
#define KETEN_NODE_DIR_WITHHELD_MS 10000ull
/* Hello again on a request refused MALFORMED without a msg_id, at most this
 * often (outbox.c). */
#define KETEN_NODE_REHELLO_MS 5000ull
#define KETEN_NODE_WITNESS_TIMEOUT_MS (3600ull * 1000ull)
/* The defaults of checkpoint-keep-days and checkpoint-hourly-days
 * (lib/config_tables.c), in ms. */
#define KETEN_NODE_CHECKPOINT_KEEP_MS (7ull * KETEN_MS_PER_DAY)
#define KETEN_NODE_CHECKPOINT_HOURLY_MS (90ull * KETEN_MS_PER_DAY)
#define KETEN_NODE_RESEND_MS 30000ull
#define KETEN_NODE_NOTICE_ACKS_MAX 256 /* notice confirmations sent in one NoticeAck */
#define KETEN_NODE_SUBMITS_KEPT 1024 /* submits remembered for pairing their acks */
/* Frames kept as evidence since the start, remembered by their SHA-256 so
 * that one frame sent again is kept once (alarm.c). */
#define KETEN_NODE_EVIDENCE_SEEN 64
#define KETEN_NODE_API_SOCK "api.sock" /* HTTP (http.h) */
#define KETEN_NODE_LOCK "node.lock"

typedef struct keten_link keten_link;
typedef struct keten_api keten_api;
typedef struct keten_http keten_http;
typedef struct keten_witness keten_witness;
typedef struct keten_events keten_events;
typedef struct keten_auth_sessions keten_auth_sessions;
typedef struct keten_config keten_config;

typedef struct keten_node_opts {
    const char *home;
    const char *anchor;
    const char *directory;
    const char *broker;
    const char *on_message; /* NULL: no hook */
    const char *passfile; /* NULL: KETEN_PASSPHRASE or the terminal */
    uint64_t witness_timeout_ms;
    /* The retention of stored witness checkpoints (witness.h): every one
     * accepted in the last checkpoint_keep_ms is kept; older ones one per
     * hour until checkpoint_hourly_ms old, then one per day. 0 for
     * checkpoint_keep_ms: none is ever removed. */
    uint64_t checkpoint_keep_ms;
    uint64_t checkpoint_hourly_ms;
    const char *metrics; /* ADDR:PORT of the Prometheus endpoint (metrics.h); NULL: none */
    bool metrics_remote; /* allow a metrics address that is not loopback */
    const char *api_listen; /* HOST:PORT of the HTTP API on loopback (http.h); NULL: none */
    const char *web_root; /* the web page's files (index.html, static/) for api-listen */
    const char *access_log; /* the HTTP API's access log; NULL: HOME/access.log */
    const keten_config *config; /* proxy-address, proxy-user-header, proxy-scopes (auth.h) */
} keten_node_opts;

typedef struct keten_node_counters {
    uint64_t sent; /* acknowledged by the broker */
    uint64_t refused; /* refused by the broker (proven) */
    uint64_t refusals_unproven; /* final refusals without a proof: not recorded, resent */
    uint64_t received; /* new messages stored */
    uint64_t duplicates; /* deliveries receipted again, not stored twice */
    uint64_t rejected; /* deliveries that failed a check (not receipted) */
    uint64_t receipts; /* receipts for our messages */
    uint64_t checkpoints_accepted;
    uint64_t checkpoints_refused;
    uint64_t checkpoints_unknown_old; /* old_size not among the kept ones: Hello again */
    uint64_t proofs_passed; /* leaf proofs (acks, deliveries, notices) that held */
    uint64_t proofs_failed; /* leaf proofs that failed: alarm bad-proof */
    uint64_t proofs_unknown; /* proofs against a checkpoint the node does not keep */
    uint64_t receipt_batches; /* receipt batches signed and sent */
    uint64_t alarms;
    uint64_t warnings;
    uint64_t hooks_run;
    uint64_t hooks_failed;
    uint64_t store_errors; /* node store reads or writes that failed (logged as errors) */
    /* Receipt heads, checkpoints and cosignatures whose signature was
     * verified before (lib/sigcache.h), and ones verified in full. */
    uint64_t signatures_remembered;
    uint64_t signatures_checked;
    /* Frames of alarms not kept as evidence: kept before (the same bytes),
     * or the evidence table at its limit (alarm.h). */
    uint64_t evidence_not_kept;
    /* Witness checkpoints removed by the retention rule (witness.h). */
    uint64_t checkpoints_removed;
} keten_node_counters;

typedef struct keten_node {
    keten_node_opts opts;
    keten_identity *me;
    /* Key rotation (rotate.h): new keys waiting for their certificate, and
     * the keys a switch replaced (they open deliveries sealed to the old
     * encryption key until old_wipe_at, wall ms). NULL when none. */
    keten_identity *next;
    keten_identity *old;
    uint64_t old_wipe_at;
    /* identity.secret's passphrase (sodium_malloc, no access between uses;
     * NULL when the file has none), kept to open next keys made while the
     * daemon runs (rotate.h, keten_rotate_keep_passphrase). */
    char *rotate_pass;
    size_t rotate_passlen;
    Keten__Anchor *anchor;
    keten_directory *dir;
    keten_store *store;
    void *zctx;
    keten_link *link;
    keten_api *api;
    keten_http *http;
    keten_witness *witness;
    keten_events *events; /* the event log's listener (events.h); NULL: none */
    keten_auth_sessions *sessions; /* the web page's sessions (auth.h), owned by http.c */
    keten_node_counters counters;
    uint64_t next_request_id;
    uint64_t started_at; /* wall ms */
    /* A checkpoint named a directory version this node does not have: it
     * sends nothing until it has installed at least that version. */
    uint64_t dir_needed;
    uint64_t dir_needed_since; /* wall ms */
    uint64_t dir_requested_at; /* mono ms of the last DirectoryRequest */
    uint64_t last_resend; /* mono ms of the end of the last resend pass */
    bool resend_active; /* a resend pass over the outbox is under way */
    bool resend_everything; /* this pass resends every entry (after connecting) */
    bool resend_has_pos; /* resend_pos holds the last msg_id handled */
    uint8_t resend_pos[KETEN_MSG_ID_BYTES];
    uint64_t resend_started; /* wall ms when the pass started */
    bool dir_alarmed; /* directory-withheld raised for dir_needed */
    /* The broker's frame (packed, malloc) whose signed checkpoint named
     * dir_needed: the evidence kept with directory-withheld (dirs.c);
     * freed when that version is installed and with the node
     * (keten_dirs_forget_needed). */
    uint8_t *dir_needed_frame;
    size_t dir_needed_frame_len;
    uint64_t dir_expired_alarmed; /* version whose expiry raised directory-expired */
    uint64_t rehello_at; /* when Hello was last sent again after a refusal (mono ms) */
    /* next_request_id when the latest pass resubmitting the whole outbox
     * began (keten_outbox_submit_all(), right after a Hello): every request
     * up to it went out before that Hello, and its message goes out again
     * in that pass. */
    uint64_t resubmit_request_id;
    uint64_t held_deliveries; /* left unreceipted while the directory was expired (dirs.c) */
    uint64_t dir_clock_ahead_ms; /* test hook: freshness judged this much later (dirs.c) */
    /* Leaf indexes of notices (forwarded receipts, expiry notices) recorded
     * durably, to confirm to the broker (outbox.c). */
    uint64_t notice_acks[KETEN_NODE_NOTICE_ACKS_MAX];
    size_t n_notice_acks;
    /* Submits in flight: request_id -> msg_id, so that an ack is paired with
     * the submit it answers (outbox.c). A ring; the oldest is forgotten. */
    uint64_t submit_rid[KETEN_NODE_SUBMITS_KEPT];
    uint8_t submit_id[KETEN_NODE_SUBMITS_KEPT][KETEN_MSG_ID_BYTES];
    size_t submit_next;
    /* Deliveries handled since the last receipt batch (inbox.c): each gets
     * one leaf of the batch signed when their commit is durable. */
    keten_receipt_item *receipts;
    size_t n_receipts, cap_receipts;
    /* The frame being handled (evidence for an alarm), or NULL. */
    const Keten__Frame *frame;
    /* SHA-256 of the frames kept as evidence since the start (a ring). */
    uint8_t evidence_seen[KETEN_NODE_EVIDENCE_SEEN][KETEN_HASH_BYTES];
    size_t n_evidence_seen;
    bool relink; /* the broker's transport key changed: reconnect */
    /* The broker cut this node off (alarm.h, keten_alarm_refused()): why
     * (REASON_REVOKED, REASON_KEYS_REPLACED, REASON_UNKNOWN_SENDER; NONE:
     * not cut off), in which directory version, when (wall ms), and whether
     * a signed directory the node holds says the same. Persisted; it
     * concerns the transport key the node ran with. */
    Keten__Reason refused;
    uint64_t refused_version;
    uint64_t refused_at;
    bool refused_confirmed;
    char last_link_error[KETEN_LINK_ERROR_MAX]; /* last connection failure logged */
    keten_idem_purge_pos idem_purge; /* where the next idempotency purge goes on */
    bool stop;
} keten_node;

/* A fresh request id for a frame this node asks something with. */
uint64_t keten_node_request_id(keten_node *node);

#endif
