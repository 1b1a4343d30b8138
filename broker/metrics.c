#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
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

static const uint64_t batch_bounds[METRICS_BATCH_BUCKETS - 1]
    = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };
/* microseconds */
static const uint64_t commit_bounds[METRICS_COMMIT_BUCKETS - 1]
    = { 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000 };

metrics *metrics_new(void)
{
    metrics *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    /* calloc'd atomics of lock-free integer types start at 0. */
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
    if (m->daemon != NULL) {
        MHD_stop_daemon(m->daemon);
    }
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
    size_t i = 0;
    while (i < METRICS_BATCH_BUCKETS - 1 && frames > batch_bounds[i]) {
        i++;
    }
    atomic_fetch_add(&m->batch_buckets[i], 1);
    atomic_fetch_add(&m->batch_count, 1);
    atomic_fetch_add(&m->batch_sum, frames);
    i = 0;
    while (i < METRICS_COMMIT_BUCKETS - 1 && commit_us > commit_bounds[i]) {
        i++;
    }
    atomic_fetch_add(&m->commit_buckets[i], 1);
    atomic_fetch_add(&m->commit_count, 1);
    atomic_fetch_add(&m->commit_sum_us, commit_us);
}

/* ---- the page ---------------------------------------------------------- */

typedef struct page {
    char *buf;
    size_t len, cap;
    bool failed;
} page;

static void put(page *p, const char *fmt, ...) KETEN_PRINTF(2, 3);

static void put(page *p, const char *fmt, ...)
{
    if (p->failed) {
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(p->buf + p->len, p->cap - p->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            p->failed = true;
            return;
        }
        if ((size_t)n < p->cap - p->len) {
            p->len += (size_t)n;
            return;
        }
        size_t cap = p->cap * 2;
        char *nb = cap <= METRICS_PAGE_MAX ? realloc(p->buf, cap) : NULL;
        if (nb == NULL) {
            p->failed = true;
            return;
        }
        p->buf = nb;
        p->cap = cap;
    }
}

static void counter(page *p, const char *name, const char *help, uint64_t v)
{
    put(p, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
        (unsigned long long)v);
}

static void gauge(page *p, const char *name, const char *help, uint64_t v)
{
    put(p, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
        (unsigned long long)v);
}

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
static void store_metrics(page *p, store *st)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (st == NULL || mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) != 0) {
        return;
    }
    put(p,
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
                    put(p, "keten_queue_depth{node=\"%s\"} %llu\n", node,
                        (unsigned long long)count);
                }
                memcpy(node, key, n);
                node[n] = '\0';
                count = 0;
            }
            count++;
        }
        if (count > 0) {
            put(p, "keten_queue_depth{node=\"%s\"} %llu\n", node, (unsigned long long)count);
        }
        mdb_cursor_close(cur);
    }
    MDB_stat ms;
    if (mdb_stat(txn, st->notices, &ms) == 0) {
        gauge(
            p, "keten_notices_pending", "Notices not yet confirmed by their node.", ms.ms_entries);
    }
    mdb_txn_abort(txn);
}

static void histogram(page *p, const char *name, const char *help, const uint64_t *bounds,
    size_t n_bounds, atomic_uint_fast64_t *buckets, uint64_t count, double sum, double scale)
{
    put(p, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < n_bounds; i++) {
        cum += atomic_load(&buckets[i]);
        put(p, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds[i] / scale,
            (unsigned long long)cum);
    }
    put(p, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %g\n%s_count %llu\n", name,
        (unsigned long long)count, name, sum, name, (unsigned long long)count);
}

static char *render(metrics *m, size_t *len)
{
    page p = { malloc(16384), 0, 16384, false };
    if (p.buf == NULL) {
        return NULL;
    }
    counter(&p, "keten_submits_total", "Submits accepted.", atomic_load(&m->submits));
    put(&p,
        "# HELP keten_rejects_total Requests refused, by reason.\n"
        "# TYPE keten_rejects_total counter\n");
    for (int r = 1; r < METRICS_REASONS; r++) {
        char label[32];
        reason_label((Keten__Reason)r, label, sizeof label);
        put(&p, "keten_rejects_total{reason=\"%s\"} %llu\n", label,
            (unsigned long long)atomic_load(&m->rejects[r]));
    }
    counter(&p, "keten_deliveries_total", "Deliver frames sent.", atomic_load(&m->deliveries));
    counter(&p, "keten_receipts_total", "Receipted records: receipt leaves with outcome stored.",
        atomic_load(&m->receipts));
    counter(&p, "keten_refused_by_recipient_total",
        "Refused-by-recipient records: receipt leaves with outcome refused.",
        atomic_load(&m->refused_by_recipient));
    counter(&p, "keten_receipt_batches_total", "Receipt batches whose signature verified.",
        atomic_load(&m->receipt_batches));
    counter(&p, "keten_receipt_leaves_unmatched_total",
        "Receipt leaves naming no message pending for the receipting node (skipped).",
        atomic_load(&m->leaves_unmatched));
    counter(&p, "keten_receipt_leaves_repeated_total",
        "Receipt leaves for a message the node had answered before (ignored).",
        atomic_load(&m->leaves_repeated));
    counter(&p, "keten_expired_total", "Messages expired before every receipt.",
        atomic_load(&m->expired));
    counter(&p, "keten_notices_sent_total",
        "Notice frames (forwarded receipts, expiry notices) sent, resends included.",
        atomic_load(&m->notices_sent));
    counter(&p, "keten_notices_resent_total",
        "Notices sent again because the node had not confirmed them in time.",
        atomic_load(&m->notices_resent));
    counter(&p, "keten_notices_confirmed_total", "Notices confirmed by their node and deleted.",
        atomic_load(&m->notices_confirmed));
    counter(&p, "keten_notice_acks_unknown_total",
        "Leaf indexes in NoticeAck frames that named no notice of the sending node (ignored).",
        atomic_load(&m->notice_acks_unknown));
    counter(&p, "keten_auth_failed_total",
        "Refused keys, connections cut off because their certificate is no longer current, and "
        "frames of another peer than their connection's.",
        atomic_load(&m->auth_failed));
    gauge(&p, "keten_audit_tree_size", "Leaves in the audit log.", atomic_load(&m->tree_size));
    gauge(&p, "keten_checkpoint_tree_size", "Tree size of the latest checkpoint.",
        atomic_load(&m->checkpoint_size));
    counter(&p, "keten_commit_checkpoints_total", "Commit checkpoints signed.",
        atomic_load(&m->commit_checkpoints));
    counter(&p, "keten_witness_checkpoints_total", "Checkpoints stored for witnesses to cosign.",
        atomic_load(&m->witness_checkpoints));
    counter(&p, "keten_checkpoint_frames_total", "Checkpoint frames sent to nodes.",
        atomic_load(&m->checkpoint_frames));
    gauge(&p, "keten_connected_nodes", "Nodes with a live connection.", atomic_load(&m->connected));
    gauge(&p, "keten_directory_version", "Installed directory version.",
        atomic_load(&m->dir_version));
    gauge(&p, "keten_directory_stale", "1 when the installed directory has expired.",
        atomic_load(&m->dir_stale) ? 1 : 0);
    gauge(&p, "keten_insecure_key", "1 when the broker's key file has no passphrase.",
        atomic_load(&m->insecure_key) ? 1 : 0);
    if (m->st != NULL) {
        gauge(&p, "keten_store_full", "1 when new submits are refused: the store is full.",
            atomic_load(&m->st->full) ? 1 : 0);
        gauge(&p, "keten_store_used_bytes", "Bytes of the LMDB map in use.",
            atomic_load(&m->st->used));
        gauge(&p, "keten_store_map_bytes", "Size of the LMDB map (--map-size).", m->st->map_size);
    }
    histogram(&p, "keten_batch_size", "Frames per batch (one write transaction).", batch_bounds,
        METRICS_BATCH_BUCKETS - 1, m->batch_buckets, atomic_load(&m->batch_count),
        (double)atomic_load(&m->batch_sum), 1.0);
    histogram(&p, "keten_commit_seconds", "LMDB commit latency.", commit_bounds,
        METRICS_COMMIT_BUCKETS - 1, m->commit_buckets, atomic_load(&m->commit_count),
        (double)atomic_load(&m->commit_sum_us) / 1e6, 1e6);
    store_metrics(&p, m->st);
    if (p.failed) {
        free(p.buf);
        return NULL;
    }
    *len = p.len;
    return p.buf;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *connection, const char *url,
    const char *method, const char *version, const char *upload_data, size_t *upload_data_size,
    void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    metrics *m = cls;
    struct MHD_Response *resp = NULL;
    unsigned status = MHD_HTTP_OK;
    if (strcmp(method, "GET") != 0) {
        static char text[] = "only GET\n";
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        resp = MHD_create_response_from_buffer(sizeof text - 1, text, MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/metrics") != 0) {
        static char text[] = "not found: try /metrics\n";
        status = MHD_HTTP_NOT_FOUND;
        resp = MHD_create_response_from_buffer(sizeof text - 1, text, MHD_RESPMEM_PERSISTENT);
    } else {
        size_t len = 0;
        char *body = render(m, &len);
        if (body == NULL) {
            static char text[] = "out of memory\n";
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
            resp = MHD_create_response_from_buffer(sizeof text - 1, text, MHD_RESPMEM_PERSISTENT);
        } else {
            resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
            if (resp == NULL) {
                free(body);
            }
        }
    }
    if (resp == NULL) {
        return MHD_NO;
    }
    if (status == MHD_HTTP_OK) {
        MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    }
    enum MHD_Result r = MHD_queue_response(connection, status, resp);
    MHD_destroy_response(resp);
    return r;
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
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    m->st = st;
    m->daemon = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)16, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (m->daemon == NULL) {
        return keten_err_set(KETEN_ERR_IO,
            "cannot serve metrics on %s (address in use or not available); pick another "
            "--metrics address",
            addr);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    KETEN_LOG(KETEN_LOG_INFO, "metrics served", "addr=%s port=%u path=/metrics", addr,
        info != NULL ? (unsigned)info->port : 0u);
    return KETEN_OK;
}
