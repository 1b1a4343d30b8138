#include "metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "store.h"

#define METRICS_ADDR_MAX 256
#define METRICS_PAGE_MAX (4u << 20) /* the page stops growing here */

static const uint64_t batch_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };

metrics *metrics_new(void)
{
    metrics *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    /* calloc'd atomics of lock-free integer types start at 0. */
    keten_promhttp_hist_init(&m->batch, batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
    keten_promhttp_hist_init(&m->commit, keten_promhttp_latency_us, KETEN_PROMHTTP_LATENCY_US_N);
    atomic_init(&m->dir_stale, false);
    atomic_init(&m->insecure_key, false);
    return m;
}

void metrics_destroy(metrics **m_p)
{
    if (m_p == NULL || *m_p == NULL) {
        return;
    }
    metrics *m = *m_p;
    keten_promhttp_stop(&m->http);
    free(m);
    *m_p = NULL;
}

void metrics_submit(metrics *m)
{
    atomic_fetch_add(&m->submits, 1);
}

void metrics_reject(metrics *m, Keten__Reason reason)
{
    if ((unsigned)reason < METRICS_REASONS) {
        atomic_fetch_add(&m->rejects[reason], 1);
    }
}

void metrics_delivery(metrics *m)
{
    atomic_fetch_add(&m->deliveries, 1);
}

void metrics_receipt(metrics *m)
{
    atomic_fetch_add(&m->receipts, 1);
}

void metrics_refused_by_recipient(metrics *m)
{
    atomic_fetch_add(&m->refused_by_recipient, 1);
}

void metrics_receipt_batch(metrics *m)
{
    atomic_fetch_add(&m->receipt_batches, 1);
}

void metrics_leaf_unmatched(metrics *m)
{
    atomic_fetch_add(&m->leaves_unmatched, 1);
}

void metrics_answer_refused(metrics *m)
{
    atomic_fetch_add(&m->answers_refused, 1);
}

void metrics_leaf_repeated(metrics *m)
{
    atomic_fetch_add(&m->leaves_repeated, 1);
}

void metrics_commit_checkpoint(metrics *m)
{
    atomic_fetch_add(&m->commit_checkpoints, 1);
}

void metrics_witness_checkpoint(metrics *m)
{
    atomic_fetch_add(&m->witness_checkpoints, 1);
}

void metrics_checkpoint_sent(metrics *m)
{
    atomic_fetch_add(&m->checkpoint_frames, 1);
}

void metrics_expired(metrics *m)
{
    atomic_fetch_add(&m->expired, 1);
}

void metrics_notice_sent(metrics *m)
{
    atomic_fetch_add(&m->notices_sent, 1);
}

void metrics_notice_resent(metrics *m)
{
    atomic_fetch_add(&m->notices_resent, 1);
}

void metrics_deliveries_resent(metrics *m)
{
    atomic_fetch_add(&m->deliveries_resent, 1);
}

void metrics_notice_confirmed(metrics *m)
{
    atomic_fetch_add(&m->notices_confirmed, 1);
}

void metrics_notice_ack_unknown(metrics *m)
{
    atomic_fetch_add(&m->notice_acks_unknown, 1);
}

void metrics_auth_failed(metrics *m)
{
    atomic_fetch_add(&m->auth_failed, 1);
}

void metrics_tree_size(metrics *m, uint64_t n)
{
    atomic_store(&m->tree_size, n);
}

void metrics_checkpoint(metrics *m, uint64_t size)
{
    atomic_store(&m->checkpoint_size, size);
}

void metrics_directory(metrics *m, uint64_t version, bool stale)
{
    atomic_store(&m->dir_version, version);
    atomic_store(&m->dir_stale, stale);
}

void metrics_connected(metrics *m, uint64_t n)
{
    atomic_store(&m->connected, n);
}

void metrics_insecure_key(metrics *m, bool insecure)
{
    atomic_store(&m->insecure_key, insecure);
}

void metrics_batch(metrics *m, uint64_t frames, uint64_t commit_us)
{
    keten_promhttp_observe(&m->batch, frames);
    keten_promhttp_observe(&m->commit, commit_us);
}

/* ---- the page ---------------------------------------------------------- */

static void reason_label(Keten__Reason r, char *out, size_t size)
{
    const ProtobufCEnumValue *v
        = protobuf_c_enum_descriptor_get_value(&keten__reason__descriptor, r);
    const char *name = v != NULL ? v->name : "unknown";
    if (strncmp(name, "REASON_", 7) == 0) {
        name += 7;
    }
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < size; i++) {
        char ch = name[i];
        out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    out[i] = '\0';
}

/* Queue depth per node and pending notices, from a read transaction. */
static void store_metrics(keten_promhttp_page *p, store *st)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (st == NULL || mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) != 0) {
        return;
    }
    keten_promhttp_put(p,
        "# HELP keten_queue_depth Messages waiting for a node's receipt.\n"
        "# TYPE keten_queue_depth gauge\n");
    if (mdb_cursor_open(txn, st->queue, &cur) == 0) {
        MDB_val k, v;
        char node[KETEN_NAME_MAX + 1] = "";
        uint64_t count = 0;
        int rc;
        while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
            const char *key = k.mv_data;
            size_t n = strnlen(key, k.mv_size);
            if (n == 0 || n > KETEN_NAME_MAX) {
                continue;
            }
            if (strlen(node) != n || memcmp(node, key, n) != 0) {
                if (count > 0) {
                    keten_promhttp_put(p, "keten_queue_depth{node=\"%s\"} %llu\n", node,
                        (unsigned long long)count);
                }
                memcpy(node, key, n);
                node[n] = '\0';
                count = 0;
            }
            count++;
        }
        if (count > 0) {
            keten_promhttp_put(
                p, "keten_queue_depth{node=\"%s\"} %llu\n", node, (unsigned long long)count);
        }
        mdb_cursor_close(cur);
    }
    MDB_stat ms;
    if (mdb_stat(txn, st->notices, &ms) == 0) {
        keten_promhttp_gauge(
            p, "keten_notices_pending", "Notices not yet confirmed by their node.", ms.ms_entries);
    }
    mdb_txn_abort(txn);
}

/* The page (keten_promhttp_render, on the HTTP thread). */
static char *render(void *ctx, size_t *len)
{
    metrics *m = ctx;
    keten_promhttp_page p;
    keten_promhttp_begin(&p, 16384, METRICS_PAGE_MAX);
    keten_promhttp_counter(
        &p, "keten_submits_total", "Submits accepted.", atomic_load(&m->submits));
    keten_promhttp_put(&p,
        "# HELP keten_rejects_total Requests refused, by reason.\n"
        "# TYPE keten_rejects_total counter\n");
    for (int r = 1; r < METRICS_REASONS; r++) {
        char label[32];
        reason_label((Keten__Reason)r, label, sizeof label);
        keten_promhttp_put(&p, "keten_rejects_total{reason=\"%s\"} %llu\n", label,
            (unsigned long long)atomic_load(&m->rejects[r]));
    }
    keten_promhttp_counter(
        &p, "keten_deliveries_total", "Deliver frames sent.", atomic_load(&m->deliveries));
    keten_promhttp_counter(&p, "keten_receipts_total",
        "Receipted records: receipt leaves with outcome stored.", atomic_load(&m->receipts));
    keten_promhttp_counter(&p, "keten_refused_by_recipient_total",
        "Refused-by-recipient records: receipt leaves with outcome refused.",
        atomic_load(&m->refused_by_recipient));
    keten_promhttp_counter(&p, "keten_receipt_batches_total",
        "Receipt batches whose signature verified.", atomic_load(&m->receipt_batches));
    keten_promhttp_counter(&p, "keten_receipt_leaves_unmatched_total",
        "Receipt leaves naming no message pending for the receipting node (skipped).",
        atomic_load(&m->leaves_unmatched));
    keten_promhttp_counter(&p, "keten_answers_refused_total",
        "Answers to proof and directory requests refused over the node's answer budget.",
        atomic_load(&m->answers_refused));
    keten_promhttp_counter(&p, "keten_receipt_leaves_repeated_total",
        "Receipt leaves for a message the node had answered before (ignored).",
        atomic_load(&m->leaves_repeated));
    keten_promhttp_counter(&p, "keten_expired_total", "Messages expired before every receipt.",
        atomic_load(&m->expired));
    keten_promhttp_counter(&p, "keten_notices_sent_total",
        "Notice frames (forwarded receipts, expiry notices) sent, resends included.",
        atomic_load(&m->notices_sent));
    keten_promhttp_counter(&p, "keten_notices_resent_total",
        "Notices sent again because the node had not confirmed them in time.",
        atomic_load(&m->notices_resent));
    keten_promhttp_counter(&p, "keten_deliveries_resent_total",
        "Times a connection's unreceipted deliveries were sent again (none receipted in time).",
        atomic_load(&m->deliveries_resent));
    keten_promhttp_counter(&p, "keten_notices_confirmed_total",
        "Notices confirmed by their node and deleted.", atomic_load(&m->notices_confirmed));
    keten_promhttp_counter(&p, "keten_notice_acks_unknown_total",
        "Leaf indexes in NoticeAck frames that named no notice of the sending node (ignored).",
        atomic_load(&m->notice_acks_unknown));
    keten_promhttp_counter(&p, "keten_auth_failed_total",
        "Refused keys, connections cut off because their certificate is no longer current, and "
        "frames of another peer than their connection's.",
        atomic_load(&m->auth_failed));
    keten_promhttp_gauge(
        &p, "keten_audit_tree_size", "Leaves in the audit log.", atomic_load(&m->tree_size));
    keten_promhttp_gauge(&p, "keten_checkpoint_tree_size", "Tree size of the latest checkpoint.",
        atomic_load(&m->checkpoint_size));
    keten_promhttp_counter(&p, "keten_commit_checkpoints_total", "Commit checkpoints signed.",
        atomic_load(&m->commit_checkpoints));
    keten_promhttp_counter(&p, "keten_witness_checkpoints_total",
        "Checkpoints stored for witnesses to cosign.", atomic_load(&m->witness_checkpoints));
    keten_promhttp_counter(&p, "keten_checkpoint_frames_total", "Checkpoint frames sent to nodes.",
        atomic_load(&m->checkpoint_frames));
    keten_promhttp_gauge(
        &p, "keten_connected_nodes", "Nodes with a live connection.", atomic_load(&m->connected));
    keten_promhttp_gauge(&p, "keten_directory_version", "Installed directory version.",
        atomic_load(&m->dir_version));
    keten_promhttp_gauge(&p, "keten_directory_stale", "1 when the installed directory has expired.",
        atomic_load(&m->dir_stale) ? 1 : 0);
    keten_promhttp_gauge(&p, "keten_insecure_key",
        "1 when the broker's key file has no passphrase.", atomic_load(&m->insecure_key) ? 1 : 0);
    if (m->st != NULL) {
        keten_promhttp_gauge(&p, "keten_store_full",
            "1 when new submits are refused: the store (map or filesystem) is full.",
            atomic_load(&m->st->full) || atomic_load(&m->st->no_room) ? 1 : 0);
        keten_promhttp_gauge(&p, "keten_store_disk_full",
            "1 when the store's filesystem is full (submits refused until space is freed).",
            atomic_load(&m->st->disk_full) ? 1 : 0);
        uint64_t disk_free = atomic_load(&m->st->disk_free);
        if (disk_free != UINT64_MAX) {
            keten_promhttp_gauge(&p, "keten_store_disk_free_bytes",
                "Bytes free on the store's filesystem for the broker.", disk_free);
        }
        keten_promhttp_gauge(&p, "keten_store_disk_reserve_bytes",
            "Bytes held in the disk reserve file (0: given back for a full filesystem).",
            atomic_load(&m->st->reserve_held));
        keten_promhttp_gauge(&p, "keten_store_used_bytes", "Bytes of the LMDB map in use.",
            atomic_load(&m->st->used));
        keten_promhttp_gauge(
            &p, "keten_store_map_bytes", "Size of the LMDB map (--map-size).", m->st->map_size);
    }
    keten_promhttp_histogram(
        &p, "keten_batch_size", "Frames per batch (one write transaction).", &m->batch, 1.0);
    keten_promhttp_histogram(&p, "keten_commit_seconds", "LMDB commit latency.", &m->commit, 1e6);
    store_metrics(&p, m->st);
    return keten_promhttp_finish(&p, len);
}

keten_err metrics_start(metrics *m, const char *addr, store *st)
{
    char host[METRICS_ADDR_MAX];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon[1] == '\0' || (size_t)(colon - addr) >= sizeof host) {
        return keten_err_set(KETEN_ERR_INVALID, "--metrics %s: expected ADDRESS:PORT", addr);
    }
    size_t hlen = (size_t)(colon - addr);
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host[0] != '\0' ? host : NULL, colon + 1, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "--metrics %s: %s", addr, gai_strerror(rc));
    }
    m->st = st;
    m->http.render = render;
    m->http.ctx = m;
    keten_err e = keten_promhttp_serve(&m->http, ai->ai_addr, addr);
    freeaddrinfo(ai);
    return e;
}
