/*
 * metrics.h - the node's Prometheus endpoint (keten-node run --metrics
 * ADDR:PORT; GET /metrics, text format 0.0.4, libmicrohttpd in its own
 * thread).
 *
 * Metrics served:
 *   keten_node_connected                  1 while the link to the broker is up
 *   keten_node_directory_version          installed directory version
 *   keten_node_directory_expires_seconds  seconds until that directory expires
 *                                         (negative once expired)
 *   keten_node_outbox_depth               messages not yet proven accepted
 *   keten_node_inbox_unhandled            received messages not yet acknowledged
 *                                         (keten-node ack)
 *   keten_node_alarms                     alarms the node holds that no operator
 *                                         acknowledged (status exit 3)
 *   keten_node_alarms_acknowledged        alarms the node holds that an operator
 *                                         acknowledged (keten-node alarm ack)
 *   keten_node_refused_by_broker          1 while the broker refuses this node
 *   keten_node_checkpoint_age_seconds     seconds since the node last accepted a
 *                                         checkpoint that grew the broker's log
 *                                         (absent until it has one)
 *   keten_node_checkpoints_kept           witness checkpoints in the store
 *   keten_node_*_total                    the daemon's counters (node.h,
 *                                         keten_node_counters)
 *   keten_node_commit_seconds             histogram: how long each group commit
 *                                         that wrote something took (observed
 *                                         by the store on the daemon's thread)
 *
 * Threads: the daemon's thread owns the node and calls
 * keten_metrics_update() from its loop; it copies what is served into
 * C11 atomics, which the HTTP thread reads. The HTTP thread never touches
 * the node or its store. Values read from the store (inbox, alarms,
 * checkpoint) are refreshed at most once a second, and only after the store
 * changed; the number of unhandled messages is a count the store keeps
 * (keten_inbox_unhandled), not a walk through the inbox.
 *
 * Address: "HOST:PORT" or "[IPv6]:PORT". Port 0 picks a
 * free port (logged: msg="metrics served" port=N). The endpoint has no
 * authentication: an address that is not loopback (127.0.0.0/8, ::1) is
 * refused unless `remote` (metrics-remote = yes) says so.
 *
 * Ownership: keten_metrics_destroy() stops the HTTP thread and frees;
 * it accepts NULL.
 * Errors: KETEN_ERR_INVALID (a bad or non-loopback address: the detail says
 * which and what to do), KETEN_ERR_IO (cannot bind), KETEN_ERR_NOMEM.
 */
#ifndef KETEN_NODE_METRICS_H
#define KETEN_NODE_METRICS_H

#include <stdbool.h>

#include "err.h"
#include "node.h"

/* Refresh from the store at most this often. */
#define KETEN_NODE_METRICS_REFRESH_MS 1000u

typedef struct keten_metrics keten_metrics;

/* Check addr (and whether it is loopback) without binding yet. */
keten_err keten_metrics_new(const char *addr, bool remote, keten_metrics **out) KETEN_MUST_CHECK;
/* Bind and serve. */
keten_err keten_metrics_start(keten_metrics *m) KETEN_MUST_CHECK;
/* Copy the node's state for the HTTP thread (the daemon's thread only). */
void keten_metrics_update(keten_metrics *m, keten_node *node);
/* The histogram of the store's group commits (keten_store_set_commit_histogram),
 * served as keten_node_commit_seconds; NULL for m NULL. */
keten_promhttp_hist *keten_metrics_commit_histogram(keten_metrics *m);
void keten_metrics_destroy(keten_metrics **m_p);

#endif
