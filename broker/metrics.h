/*
 * metrics.h - the broker's counters and its Prometheus endpoint
 * (--metrics ADDR:PORT, libmicrohttpd in its own thread; GET /metrics).
 *
 * The main loop updates C11 atomics; the HTTP thread reads them and, with
 * its own LMDB read transaction, the queue depths and the audit tree size.
 *
 * Metrics served (text format 0.0.4):
 *   keten_submits_total                     accepted submits
 *   keten_rejects_total{reason="policy"}    refused requests, by Reason
 *   keten_deliveries_total                  deliver frames sent
 *   keten_receipts_total                    receipted records (leaves with outcome stored)
 *   keten_refused_by_recipient_total        refused-by-recipient records (leaves with
 *                                           outcome refused)
 *   keten_receipt_batches_total             receipt batches that verified
 *   keten_receipt_leaves_unmatched_total    leaves of verified batches naming no
 *                                           message pending for that node (skipped)
 *   keten_receipt_leaves_repeated_total     leaves for a message the node had
 *                                           answered before (ignored)
 *   keten_expired_total                     messages expired undelivered
 *   keten_answers_refused_total             answers to proof and directory requests
 *                                           refused over the node's answer budget
 *   keten_auth_failed_total                 refused keys, connections cut off (no longer
 *                                           current), frames of another peer than their
 *                                           connection's
 *   keten_queue_depth{node="id"}            undelivered/unreceipted entries per node
 *   keten_notices_pending                   notices not yet confirmed by their node
 *   keten_notices_sent_total                notice frames sent (resends included)
 *   keten_notices_resent_total              notices sent again, unconfirmed in time
 *   keten_notices_confirmed_total           notices confirmed (NoticeAck) and deleted
 *   keten_notice_acks_unknown_total         NoticeAck leaf indexes naming no notice
 *                                           of the sending node (ignored)
 *   keten_audit_tree_size                   leaves in the audit log
 *   keten_checkpoint_tree_size              tree size of the latest (commit) checkpoint
 *   keten_commit_checkpoints_total          commit checkpoints signed (one per batch that
 *                                           grew the log, and one at start)
 *   keten_witness_checkpoints_total         commit checkpoints also stored for witnesses
 *   keten_checkpoint_frames_total           CheckpointFrames sent to nodes
 *   keten_batch_size (histogram)            frames per batch (one transaction)
 *   keten_commit_seconds (histogram)        LMDB commit latency
 *   keten_connected_nodes                   nodes with a live connection
 *   keten_directory_version                 installed directory version
 *   keten_directory_stale                   1 when the directory has expired
 *   keten_deliveries_resent_total           rewinds of a connection's deliveries: none
 *                                           receipted for a while, sent again (deliver.h)
 *   keten_store_full                        1 when new submits are refused (full map or
 *                                           full filesystem)
 *   keten_store_disk_full                   1 when the filesystem is the reason
 *   keten_store_disk_free_bytes             free bytes on the store's filesystem
 *   keten_store_disk_reserve_bytes          bytes held in HOME/store/disk-reserve
 *   keten_store_used_bytes, keten_store_map_bytes
 *   keten_insecure_key                      1 when the key file has no passphrase
 *
 * Thread safety: every update function may be called from any thread.
 * Ownership: metrics_destroy() stops the server and frees.
 */
#ifndef KETEN_BROKER_METRICS_H
#define KETEN_BROKER_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "promhttp.h"
#include "keten.h"

#define METRICS_REASONS 20 /* Reason values 0..19 */

typedef struct store store;

typedef struct metrics {
    atomic_uint_fast64_t submits, deliveries, receipts, expired, auth_failed;
    atomic_uint_fast64_t notices_sent, notices_resent, notices_confirmed, notice_acks_unknown;
    atomic_uint_fast64_t deliveries_resent, answers_refused;
    atomic_uint_fast64_t refused_by_recipient, receipt_batches, leaves_unmatched, leaves_repeated;
    atomic_uint_fast64_t commit_checkpoints, witness_checkpoints, checkpoint_frames;
    atomic_uint_fast64_t rejects[METRICS_REASONS];
    atomic_uint_fast64_t tree_size, checkpoint_size, dir_version, connected;
    atomic_bool dir_stale, insecure_key;
    keten_promhttp_hist batch, commit; /* frames per batch; commit latency (us) */
    store *st;
    keten_promhttp_server http; /* GET /metrics (lib/promhttp) */
} metrics;

metrics *metrics_new(void);
/* Serve on addr ("127.0.0.1:9750", "[::1]:9750", ":9750"), reading st. Port
 * 0 picks a free port; the port is logged ("metrics served ... port=N"). */
keten_err metrics_start(metrics *m, const char *addr, store *st) KETEN_MUST_CHECK;
void metrics_destroy(metrics **m_p);

void metrics_submit(metrics *m);
void metrics_reject(metrics *m, Keten__Reason reason);
void metrics_delivery(metrics *m);
void metrics_deliveries_resent(metrics *m);
void metrics_receipt(metrics *m);
void metrics_refused_by_recipient(metrics *m);
void metrics_receipt_batch(metrics *m);
void metrics_leaf_unmatched(metrics *m);
void metrics_leaf_repeated(metrics *m);
void metrics_commit_checkpoint(metrics *m);
void metrics_witness_checkpoint(metrics *m);
void metrics_checkpoint_sent(metrics *m);
void metrics_expired(metrics *m);
void metrics_answer_refused(metrics *m);
void metrics_notice_sent(metrics *m);
void metrics_notice_resent(metrics *m);
void metrics_notice_confirmed(metrics *m);
void metrics_notice_ack_unknown(metrics *m);
void metrics_auth_failed(metrics *m);
void metrics_tree_size(metrics *m, uint64_t n);
void metrics_checkpoint(metrics *m, uint64_t size);
void metrics_directory(metrics *m, uint64_t version, bool stale);
void metrics_connected(metrics *m, uint64_t n);
void metrics_insecure_key(metrics *m, bool insecure);
void metrics_batch(metrics *m, uint64_t frames, uint64_t commit_us);

#endif
