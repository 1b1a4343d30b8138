#include "metrics.h"

#include "promhttp.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "alarm.h"
#include "directory.h"
#include "inbox.h"
#include "link.h"
#include "log.h"
#include "nodestore.h"
#include "store.h"
#include "util.h"

#define ADDR_MAX 256
#define PAGE_START 8192u
#define PAGE_MAX (1u << 20) /* the page stops growing here */

/* The counters of keten_node_counters served as keten_node_NAME_total. */
static const struct {
    const char *name;
    const char *help;
    size_t offset;
} counters[] = {
#define C(f, h)                                                                                    \
    {                                                                                              \
#f, h, offsetof(keten_node_counters, f)                                                    \
    }
    C(sent, "Messages the broker acknowledged (proven in its log)."),
    C(refused, "Messages the broker refused (proven in its log)."),
    C(refusals_unproven, "Final refusals without a proof: not recorded, the message is resent."),
    C(received, "New messages received, verified and stored."),
    C(duplicates, "Deliveries receipted again, not stored twice."),
    C(rejected, "Deliveries that failed a check (not receipted)."),
    C(receipts, "Receipts for this node's messages."),
    C(receipt_batches, "Receipt batches signed and sent."),
    C(checkpoints_accepted, "Checkpoints accepted (new tree sizes)."),
    C(checkpoints_refused, "Checkpoints refused."),
    C(checkpoints_unknown_old, "Checkpoints from a size the node does not keep (Hello again)."),
    C(proofs_passed, "Leaf proofs that held."),
    C(proofs_failed, "Leaf proofs that failed (alarm bad-proof)."),
    C(proofs_unknown, "Proofs against a checkpoint the node does not keep."),
    C(alarms, "Alarms raised since the daemon started."),
    C(warnings, "Warnings logged since the daemon started."),
    C(hooks_run, "--on-message commands run."),
    C(hooks_failed, "--on-message commands that failed."),
    C(store_errors, "Store reads or writes that failed."),
    C(signatures_remembered,
        "Signatures (receipt heads, checkpoints, cosignatures) verified before: not checked "
        "again."),
    C(signatures_checked,
        "Signatures of receipt heads, checkpoints and cosignatures checked in full."),
    C(evidence_not_kept,
        "Frames of alarms not kept as evidence: kept before, or the evidence table full."),
    C(checkpoints_removed, "Old witness checkpoints removed by the retention rule."),
#undef C
};
#define N_COUNTERS (sizeof counters / sizeof counters[0])

struct keten_metrics {
    char addr[ADDR_MAX];
    struct sockaddr_storage sa;
    keten_promhttp_server http; /* GET /metrics (lib/promhttp) */
    /* Written by the daemon's thread, read by the HTTP thread. */
    atomic_bool connected, refused, have_checkpoint;
    atomic_uint_fast64_t dir_version, dir_expires_at, outbox, inbox_unhandled, alarms;
    atomic_uint_fast64_t alarms_acknowledged;
    atomic_uint_fast64_t checkpoints_kept;
    atomic_uint_fast64_t checkpoint_at; /* wall ms */
    atomic_uint_fast64_t values[N_COUNTERS];
    keten_promhttp_hist commit; /* group commits' durations (us), observed by the store */
    /* The daemon's thread only. */
    uint64_t commits_seen; /* keten_store_commits() at the last refresh */
    uint64_t refreshed_at; /* mono ms */
    bool refreshed;
    uint64_t checkpoints_seen;
};

keten_promhttp_hist *keten_metrics_commit_histogram(keten_metrics *m)
{
    return m != NULL ? &m->commit : NULL;
}

/* ---- the address ------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
            return true;
        }
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

keten_err keten_metrics_new(const char *addr, bool remote, keten_metrics **out)
{
    *out = NULL;
    char host[ADDR_MAX];
    const char *colon = strrchr(addr, ':');
    if (strlen(addr) >= ADDR_MAX || colon == NULL || colon[1] == '\0'
        || (size_t)(colon - addr) >= sizeof host) {
        return keten_err_set(
            KETEN_ERR_INVALID, "--metrics %s: expected ADDRESS:PORT, e.g. 127.0.0.1:9760", addr);
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
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "--metrics %s: %s", addr, gai_strerror(rc));
    }
    keten_err e = KETEN_OK;
    if (ai->ai_addrlen > sizeof(struct sockaddr_storage)
        || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)) {
        e = keten_err_set(KETEN_ERR_INVALID, "--metrics %s: not an IPv4 or IPv6 address", addr);
    } else if (!remote && !is_loopback(ai->ai_addr)) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "--metrics %s is not a loopback address and the metrics have no authentication; "
            "serve them on 127.0.0.1 or ::1 (scrape through a proxy or tunnel), or set "
            "metrics-remote = yes to allow this address",
            addr);
    }
    keten_metrics *m = e == KETEN_OK ? calloc(1, sizeof *m) : NULL;
    if (e == KETEN_OK && m == NULL) {
        e = KETEN_ERR_NOMEM;
    }
    if (e == KETEN_OK) {
        memcpy(&m->sa, ai->ai_addr, ai->ai_addrlen);
        memcpy(m->addr, addr, strlen(addr) + 1);
        /* calloc'd atomics of lock-free integer types start at 0. */
        atomic_init(&m->connected, false);
        atomic_init(&m->refused, false);
        atomic_init(&m->have_checkpoint, false);
        keten_promhttp_hist_init(
            &m->commit, keten_promhttp_latency_us, KETEN_PROMHTTP_LATENCY_US_N);
        *out = m;
    }
    freeaddrinfo(ai);
    return e;
}

void keten_metrics_destroy(keten_metrics **m_p)
{
    if (m_p == NULL || *m_p == NULL) {
        return;
    }
    keten_metrics *m = *m_p;
    keten_promhttp_stop(&m->http);
    free(m);
    *m_p = NULL;
}

/* ---- the daemon's side --------------------------------------------------- */

/* When the latest stored checkpoint was accepted (0: none stored). */
static keten_err last_checkpoint_at(keten_node *node, MDB_txn *txn, uint64_t *at)
{
    *at = 0;
    uint64_t size = 0;
    MDB_val v;
    keten_err e = keten_store_last_u64(node->store, txn, KETEN_DB_CHECKPOINTS, &size, &v);
    if (e == KETEN_ERR_NOT_FOUND) {
        keten_err_clear();
        return KETEN_OK;
    }
    Keten__CheckpointRecord *rec = NULL;
    if (e == KETEN_OK) {
        e = keten_nodestore_checkpoint_get(node->store, txn, size, &rec);
    }
    if (e == KETEN_OK) {
        *at = rec->accepted_at;
    }
    keten_nodestore_free((ProtobufCMessage **)(void *)&rec);
    return e;
}

/* What the store holds: the outbox, unhandled messages, alarms. */
static void refresh_store(keten_metrics *m, keten_node *node)
{
    MDB_txn *txn = NULL;
    size_t outbox = 0, kept = 0;
    uint64_t unhandled = 0, cp_at = 0;
    size_t alarms = 0, acknowledged = 0;
    keten_err e = keten_store_begin(node->store, false, &txn);
    if (e == KETEN_OK) {
        e = keten_store_count(node->store, txn, KETEN_DB_OUTBOX, &outbox);
    }
    if (e == KETEN_OK) {
        e = keten_inbox_unhandled(node, txn, &unhandled); /* kept in the store: O(1) */
    }
    if (e == KETEN_OK) {
        e = keten_store_count(node->store, txn, KETEN_DB_CHECKPOINTS, &kept); /* O(1) */
    }
    if (e == KETEN_OK && !m->refreshed) {
        e = last_checkpoint_at(node, txn, &cp_at);
    }
    keten_store_abort(&txn);
    if (e == KETEN_OK) {
        e = keten_alarm_count(node, &alarms, &acknowledged);
    }
    if (e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot read the store for the metrics", "error=\"%s\"",
            keten_err_detail());
        keten_err_clear();
        return;
    }
    atomic_store(&m->outbox, (uint64_t)outbox);
    atomic_store(&m->inbox_unhandled, unhandled);
    atomic_store(&m->alarms, (uint64_t)alarms);
    atomic_store(&m->alarms_acknowledged, (uint64_t)acknowledged);
    atomic_store(&m->checkpoints_kept, (uint64_t)kept);
    if (!atomic_load(&m->have_checkpoint) && cp_at != 0) {
        atomic_store(&m->checkpoint_at, cp_at);
        atomic_store(&m->have_checkpoint, true);
    }
    m->refreshed = true;
    m->commits_seen = keten_store_commits(node->store);
    m->refreshed_at = keten_mono_ms();
}

void keten_metrics_update(keten_metrics *m, keten_node *node)
{
    if (m == NULL) {
        return;
    }
    const Keten__Directory *doc = keten_directory_doc(node->dir);
    atomic_store(&m->connected, keten_link_connected(node->link));
    atomic_store(&m->refused, node->refused != KETEN__REASON__REASON_NONE);
    atomic_store(&m->dir_version, keten_directory_version(node->dir));
    atomic_store(&m->dir_expires_at, doc != NULL ? doc->expires_at : 0);
    const unsigned char *c = (const unsigned char *)&node->counters;
    for (size_t i = 0; i < N_COUNTERS; i++) {
        uint64_t v;
        memcpy(&v, c + counters[i].offset, sizeof v);
        atomic_store(&m->values[i], v);
    }
    if (node->counters.checkpoints_accepted != m->checkpoints_seen) {
        m->checkpoints_seen = node->counters.checkpoints_accepted;
        atomic_store(&m->checkpoint_at, keten_now_ms());
        atomic_store(&m->have_checkpoint, true);
    }
    if (!m->refreshed
        || (keten_store_commits(node->store) != m->commits_seen
            && keten_mono_ms() - m->refreshed_at >= KETEN_NODE_METRICS_REFRESH_MS)) {
        refresh_store(m, node);
    }
}

/* ---- the page (HTTP thread) ---------------------------------------------- */

/* The page (keten_promhttp_render). */
static char *render(void *ctx, size_t *len)
{
    keten_metrics *m = ctx;
    keten_promhttp_page p;
    keten_promhttp_begin(&p, PAGE_START, PAGE_MAX);
    long long now = (long long)keten_now_ms();
    keten_promhttp_gauge(&p, "keten_node_connected", "1 while the link to the broker is up.",
        atomic_load(&m->connected) ? 1 : 0);
    keten_promhttp_gauge(&p, "keten_node_refused_by_broker",
        "1 while the broker refuses this node (revoked, keys replaced, not current).",
        atomic_load(&m->refused) ? 1 : 0);
    keten_promhttp_gauge(&p, "keten_node_directory_version", "Installed directory version.",
        (long long)atomic_load(&m->dir_version));
    keten_promhttp_gauge(&p, "keten_node_directory_expires_seconds",
        "Seconds until the installed directory expires (negative: expired).",
        ((long long)atomic_load(&m->dir_expires_at) - now) / 1000);
    keten_promhttp_gauge(&p, "keten_node_outbox_depth",
        "Messages not yet proven accepted by the broker.", (long long)atomic_load(&m->outbox));
    keten_promhttp_gauge(&p, "keten_node_inbox_unhandled",
        "Received messages not yet acknowledged (keten-node ack).",
        (long long)atomic_load(&m->inbox_unhandled));
    keten_promhttp_gauge(&p, "keten_node_alarms",
        "Alarms the node holds that no operator acknowledged (keten-node status exits 3).",
        (long long)atomic_load(&m->alarms));
    keten_promhttp_gauge(&p, "keten_node_alarms_acknowledged",
        "Alarms the node holds that an operator acknowledged (keten-node alarm ack).",
        (long long)atomic_load(&m->alarms_acknowledged));
    keten_promhttp_gauge(&p, "keten_node_checkpoints_kept",
        "Witness checkpoints the node keeps in its store (the retention rule thins out old ones).",
        (long long)atomic_load(&m->checkpoints_kept));
    if (atomic_load(&m->have_checkpoint)) {
        keten_promhttp_gauge(&p, "keten_node_checkpoint_age_seconds",
            "Seconds since the node last accepted a checkpoint that grew the broker's log.",
            (now - (long long)atomic_load(&m->checkpoint_at)) / 1000);
    }
    for (size_t i = 0; i < N_COUNTERS; i++) {
        keten_promhttp_put(&p,
            "# HELP keten_node_%s_total %s\n# TYPE keten_node_%s_total counter\n"
            "keten_node_%s_total %llu\n",
            counters[i].name, counters[i].help, counters[i].name, counters[i].name,
            (unsigned long long)atomic_load(&m->values[i]));
    }
    keten_promhttp_histogram(&p, "keten_node_commit_seconds",
        "How long each durable commit of the node's store took (one per group commit that "
        "wrote something).",
        &m->commit, 1e6);
    return keten_promhttp_finish(&p, len);
}

keten_err keten_metrics_start(keten_metrics *m)
{
    m->http.render = render;
    m->http.ctx = m;
    return keten_promhttp_serve(&m->http, (const struct sockaddr *)&m->sa, m->addr);
}
