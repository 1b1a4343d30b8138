#include "server.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "batch.h"
#include "checkpointer.h"
#include "cli.h"
#include "conns.h"
#include "deliver.h"
#include "dirstate.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "outq.h"
#include "passphrase.h"
#include "pb.h"
#include "pool.h"
#include "store.h"
#include "submit.h"
#include "util.h"
#include "zap.h"
#include "zctx.h"

#define POLL_MS 100
#define ZAP_PER_ROUND 64
#define MONITOR_ENDPOINT "inproc://keten-broker-monitor"
#define HEARTBEAT_IVL_MS 10000
#define HEARTBEAT_TIMEOUT_MS 30000
#define LINGER_MS 2000
#define FAULT_ENV "KETEN_BROKER_FAULT"
/* Test hook: the broker's wall clock, shifted by this many ms (may be
 * negative), to show that audit times never go back when a clock does. */
#define CLOCK_ENV "KETEN_BROKER_TEST_CLOCK_OFFSET_MS"
#define VERIFY_THREADS_ENV "KETEN_BROKER_VERIFY_THREADS"
/* A batch of fewer frames than this is committed in the round that applied
 * it; a larger one in the next round, while the pool verifies that round's
 * frames. Measured at 4,500 submits/s (batches of some 20 frames):
 * committing at once took 1-4 ms off the median ack; always doing so cost
 * about 8 % of the maximum rate (batches of some 200), where the overlap
 * pays. */
#define OVERLAP_MIN_FRAMES 64

/* ---- shared helpers (broker.h) ------------------------------------------ */

void broker_event_add(broker *b, Keten__Event event, const char *node)
{
    if (b->n_events == BROKER_EVENTS_MAX) {
        b->events_dropped++;
        return;
    }
    broker_event *ev = &b->events[b->n_events++];
    ev->event = event;
    ev->reason = KETEN__REASON__REASON_NONE;
    snprintf(ev->node, sizeof ev->node, "%s", node);
}

void broker_event_refused(broker *b, const char *node, Keten__Reason reason)
{
    size_t n = b->n_events;
    broker_event_add(b, KETEN__EVENT__EVENT_AUTH_FAILED, node);
    if (b->n_events > n) {
        b->events[n].reason = reason;
    }
}

const keten_directory *broker_dir(const broker *b)
{
    return b->dirs != NULL ? b->dirs->cur : NULL;
}

/* ---- the server's own state --------------------------------------------- */

/* The frames of one batch. */
typedef struct batchbuf {
    batch_item items[BROKER_BATCH_MAX];
    size_t n;
    bool dir_fresh; /* dirstate_fresh() when it was prepared */
} batchbuf;

typedef struct conn_snapshot {
    conn *c; /* NULL: the connection went away since */
    uint32_t credit;
    uint64_t cursor;
    bool has_cursor, more, notices;
    bool hello, want_cp;
    uint64_t cp_sent, cp_max;
    conn_flight flight;
} conn_snapshot;

/* A batch applied in the open write transaction b->txn, not yet committed,
 * and what is needed to undo its effects on memory if the commit fails. */
typedef struct pending {
    bool open;
    batchbuf *buf;
    size_t n_events; /* node events it audited (the first ones of b->events) */
    size_t n_snap; /* connections in s->snap */
    uint64_t cp_size, cp_ms; /* checkpointer state before it */
    uint64_t submits_before;
} pending;

typedef struct server {
    broker b;
    zap z;
    void *ctx, *zap_sock, *router, *monitor;
    int sigfd;
    bool stopping, reload;
    bool fault_kill_after_commit;
    bool fault_kill_after_notice; /* after a commit whose batch staged a notice */
    int64_t clock_offset_ms; /* CLOCK_ENV */
    pool *pool; /* verifier threads (pool.h) */
    batchbuf bufs[2];
    batchbuf *cur; /* frames being read and verified */
    pending pend; /* the batch waiting for its commit */
    conn_snapshot *snap;
    size_t snap_cap;
} server;

enum batch_mode { MODE_NORMAL, MODE_DEGRADED, MODE_NOSTORE };

/* ---- set-up ------------------------------------------------------------- */

static keten_err block_signals(int *fd_out)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot block signals");
    }
    signal(SIGPIPE, SIG_IGN);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        return keten_err_set(KETEN_ERR_IO, "signalfd: %s", strerror(errno));
    }
    *fd_out = fd;
    return KETEN_OK;
}

static keten_err load_identity(server *s)
{
    broker *b = &s->b;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/identity.secret", b->cfg->home) >= (int)sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "home path %s is too long", b->cfg->home);
    }
    bool encrypted = true;
    keten_err e = keten_identity_file_encrypted(path, &encrypted);
    if (e == KETEN_ERR_NOT_FOUND) {
        return keten_err_set(e,
            "%s does not exist; make the broker's keys with 'keten-broker keygen "
            "--home %s'",
            path, b->cfg->home);
    }
    if (e != KETEN_OK) {
        return e;
    }
    if ((e = keten_cli_identity_open(path, b->cfg->passfile, &b->me)) != KETEN_OK) {
        keten_passphrase_scrub_env();
        return e;
    }
    keten_passphrase_scrub_env();
    if (!b->me->has_log_key || strcmp(b->me->role, "broker") != 0) {
        return keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is a node key (role %s), not a broker key; make one with 'keten-broker keygen'",
            path, b->me->role);
    }
    b->insecure_key = !encrypted;
    metrics_insecure_key(b->m, !encrypted);
    if (!encrypted) {
        KETEN_LOG(KETEN_LOG_WARNING,
            "the broker's key file has no passphrase (written with --no-passphrase): for tests "
            "and demos only",
            "file=%s", path);
    }
    return KETEN_OK;
}

static keten_err zmq_fail(const char *what)
{
    return keten_err_set(KETEN_ERR_IO, "%s: %s", what, zmq_strerror(zmq_errno()));
}

static keten_err open_sockets(server *s)
{
    broker *b = &s->b;
    s->ctx = zmq_ctx_new();
    if (s->ctx == NULL) {
        return zmq_fail("creating the ZeroMQ context");
    }
    /* The ZAP handler first: without it libzmq admits every CURVE client. */
    s->zap_sock = zmq_socket(s->ctx, ZMQ_REP);
    if (s->zap_sock == NULL || zmq_bind(s->zap_sock, ZAP_ENDPOINT) != 0) {
        return zmq_fail("binding the ZAP handler");
    }
    s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
    if (s->router == NULL) {
        return zmq_fail("creating the ROUTER socket");
    }
    int one = 1, zero = 0, hwm = BROKER_SNDHWM, linger = LINGER_MS;
    int ivl = HEARTBEAT_IVL_MS, hto = HEARTBEAT_TIMEOUT_MS;
    /* libzmq counts the encrypted message: a frame of KETEN_FRAME_MAX
     * bytes passes, one byte more ends the connection. */
    int64_t maxmsg = (int64_t)KETEN_FRAME_MAX + KETEN_CURVE_OVERHEAD;
    if (zmq_setsockopt(s->router, ZMQ_CURVE_SERVER, &one, sizeof one) != 0
        || zmq_setsockopt(
               s->router, ZMQ_CURVE_SECRETKEY, b->me->transport_sk, KETEN_CURVE_KEY_BYTES)
            != 0
        || zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, "keten", 5) != 0
        || zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0
        || zmq_setsockopt(s->router, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0
        || zmq_setsockopt(s->router, ZMQ_ROUTER_MANDATORY, &zero, sizeof zero) != 0
        || zmq_setsockopt(s->router, ZMQ_LINGER, &linger, sizeof linger) != 0
        || zmq_setsockopt(s->router, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl) != 0
        || zmq_setsockopt(s->router, ZMQ_HEARTBEAT_TIMEOUT, &hto, sizeof hto) != 0) {
        return zmq_fail("setting up the ROUTER socket");
    }
    if (zmq_socket_monitor(s->router, MONITOR_ENDPOINT, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED)
        != 0) {
        return zmq_fail("monitoring the ROUTER socket");
    }
    s->monitor = zmq_socket(s->ctx, ZMQ_PAIR);
    if (s->monitor == NULL || zmq_connect(s->monitor, MONITOR_ENDPOINT) != 0) {
        return zmq_fail("connecting the socket monitor");
    }
    if (zmq_bind(s->router, b->cfg->listen) != 0) {
        return keten_err_set(
            KETEN_ERR_IO, "cannot listen on %s: %s", b->cfg->listen, zmq_strerror(zmq_errno()));
    }
    return KETEN_OK;
}

/* The wall clock (ms), with the test hook's offset. */
static uint64_t broker_clock(const server *s)
{
    uint64_t now = keten_now_ms();
    if (s->clock_offset_ms < 0) {
        uint64_t back = (uint64_t)(-s->clock_offset_ms);
        return now > back ? now - back : 0;
    }
    return now + (uint64_t)s->clock_offset_ms;
}

static void close_sockets(server *s)
{
    if (s->router != NULL) {
        zmq_socket_monitor(s->router, NULL, 0);
    }
    void **socks[] = { &s->monitor, &s->router, &s->zap_sock };
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++) {
        if (*socks[i] != NULL) {
            if (socks[i] != &s->router) {
                int zero = 0;
                zmq_setsockopt(*socks[i], ZMQ_LINGER, &zero, sizeof zero);
            }
            zmq_close(*socks[i]);
            *socks[i] = NULL;
        }
    }
    (void)keten_zctx_term(&s->ctx, KETEN_ZCTX_TERM_MS);
}

/* ---- signals, monitor, ZAP ---------------------------------------------- */

static void read_signals(server *s)
{
    struct signalfd_siginfo si;
    while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            s->reload = true;
        } else {
            if (!s->stopping) {
                KETEN_LOG(KETEN_LOG_NOTICE, "stopping after this batch", "signal=%u", si.ssi_signo);
                keten_notify_stopping();
            }
            s->stopping = true;
        }
    }
}

static void node_gone(server *s, conn *c, const char *why)
{
    broker *b = &s->b;
    if (!c->revoked) {
        broker_event_add(b, KETEN__EVENT__EVENT_NODE_DISCONNECTED, c->node);
    }
    KETEN_LOG(KETEN_LOG_INFO, "node disconnected", "node=%s why=%s", c->node, why);
    for (size_t k = 0; k < 2; k++) {
        batchbuf *bb = &s->bufs[k];
        for (size_t i = 0; i < bb->n; i++) {
            if (bb->items[i].c == c) {
                bb->items[i].c = NULL; /* read from the old connection: dropped */
            }
        }
    }
    for (size_t i = 0; s->pend.open && i < s->pend.n_snap; i++) {
        if (s->snap[i].c == c) {
            s->snap[i].c = NULL;
        }
    }
    if (conns_closed(b->conns, c) != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot remember an ended connection", "node=%s detail=\"%s\"",
            c->node, keten_err_detail());
        keten_err_clear();
    }
    conns_remove(b->conns, c);
}

static void read_monitor(server *s)
{
    for (;;) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, s->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        zmq_msg_init(&addr);
        if (zmq_msg_more(&ev)) {
            (void)zmq_msg_recv(&addr, s->monitor, 0);
        }
        if (zmq_msg_size(&ev) >= 6) {
            uint16_t event;
            uint32_t value;
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (uint8_t *)zmq_msg_data(&ev) + 2, 4);
            if (event == ZMQ_EVENT_ACCEPTED) {
                conns_fd_accepted(s->b.conns, (int)value);
            } else if (event == ZMQ_EVENT_DISCONNECTED) {
                conn *c = conns_fd_disconnected(s->b.conns, (int)value);
                if (c != NULL) {
                    node_gone(s, c, "closed");
                }
            }
        }
        zmq_msg_close(&addr);
        zmq_msg_close(&ev);
    }
}

/* ---- reading frames ------------------------------------------------------ */

static void drain_parts(void *sock)
{
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
}

/* Cut off a connection whose certificate is no longer current (its frame
 * is dropped); frames already read from it and not yet applied are dropped
 * too. */
static void refuse(server *s, conn *c, Keten__Reason why)
{
    if (dirstate_cut_off(&s->b, c, why) != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "cannot stage the refusal of a connection",
            "node=%s detail=\"%s\"", c->node, keten_err_detail());
        keten_err_clear();
    }
    KETEN_LOG(KETEN_LOG_WARNING, "frames of a node no longer current dropped", "node=%s", c->node);
    for (size_t i = 0; i < s->cur->n; i++) {
        if (s->cur->items[i].c == c) {
            s->cur->items[i].c = NULL;
        }
    }
}

/* The connection of a frame, or NULL when the frame is to be dropped. */
/* Whether data holds a Hello frame. */
static bool frame_is_hello(zmq_msg_t *data)
{
    Keten__Frame *f = NULL;
    bool hello = !zmq_msg_more(data)
        && KETEN_PB_UNPACK(
               keten__frame, zmq_msg_data(data), zmq_msg_size(data), KETEN_FRAME_MAX, "frame", &f)
            == KETEN_OK
        && f->body_case == KETEN__FRAME__BODY_HELLO;
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    keten_err_clear();
    return hello;
}

static conn *frame_conn(server *s, const zmq_msg_t *rid, zmq_msg_t *data, bool *fresh)
{
    broker *b = &s->b;
    *fresh = false;
    const uint8_t *r = zmq_msg_data((zmq_msg_t *)rid);
    size_t rlen = zmq_msg_size((zmq_msg_t *)rid);
    conn *c = conns_find_rid(b->conns, r, rlen);
    const keten_directory *dir = broker_dir(b);
    if (c == NULL) {
        const char *node = zmq_msg_gets(data, "User-Id");
        const char *keyhex = zmq_msg_gets(data, ZAP_KEY_PROPERTY);
        uint8_t key[KETEN_CURVE_KEY_BYTES];
        if (node == NULL || keyhex == NULL || strlen(keyhex) != 2 * KETEN_CURVE_KEY_BYTES
            || keten_unhex(keyhex, key, sizeof key) != KETEN_OK || rlen > CONN_RID_MAX) {
            keten_err_clear();
            return NULL; /* not admitted by our ZAP handler: cannot happen */
        }
        conn *old = conns_find_node(b->conns, node);
        Keten__Reason why = dirstate_refusal(dir, node, key, b->now);
        uint64_t dropped = 0;
        if (old == NULL && why != KETEN__REASON__REASON_NONE
            && conns_from_closed(b->conns, node, r, rlen, &dropped)) {
            /* Still queued from a connection that was cut off and has ended
             * (conns.h): not cut off, and audited, again. */
            if (dropped == 1) {
                KETEN_LOG(KETEN_LOG_INFO, "frames of an ended connection dropped", "node=%s", node);
            }
            return NULL;
        }
        if (old != NULL) {
            int order = conns_rid_order(old, r, rlen);
            bool newer = order > 0;
            if (order == 0) {
                uint64_t session = conns_fd_session(b->conns, zmq_msg_get(data, ZMQ_SRCFD));
                bool hello = session == old->session && session != 0 && frame_is_hello(data);
                newer = conns_newer(old, session, hello);
            }
            if (!newer) {
                /* Sent on a connection this one replaced (conns.h). */
                if (old->stale_frames++ == 0) {
                    KETEN_LOG(
                        KETEN_LOG_INFO, "frames of a replaced connection dropped", "node=%s", node);
                }
                return NULL;
            }
            node_gone(s, old, "replaced");
        }
        if (conns_add(b->conns, r, rlen, node, key, zmq_msg_get(data, ZMQ_SRCFD), b->now, &c)
            != KETEN_OK) {
            KETEN_LOG(KETEN_LOG_ERR, "out of memory for a connection", "node=%s", node);
            return NULL;
        }
        if (why != KETEN__REASON__REASON_NONE) {
            refuse(s, c, why);
            return NULL;
        }
        *fresh = true;
        broker_event_add(b, KETEN__EVENT__EVENT_NODE_CONNECTED, node);
        KETEN_LOG(KETEN_LOG_INFO, "node connected", "node=%s", node);
        return c;
    }
    /* Every frame, not only the first: the peer authenticated for this
     * frame must be the one the routing id was bound to. */
    const char *uid = zmq_msg_gets(data, "User-Id");
    if (!conns_same_peer(c, uid, zmq_msg_gets(data, ZAP_KEY_PROPERTY))) {
        metrics_auth_failed(b->m);
        broker_event_add(b, KETEN__EVENT__EVENT_AUTH_FAILED, uid != NULL ? uid : c->node);
        KETEN_LOG(KETEN_LOG_WARNING,
            "frame dropped: its authenticated peer is not its connection's",
            "connection=%s user_id=%s", c->node, uid != NULL ? uid : "-");
        return NULL;
    }
    if (c->revoked) {
        if (dirstate_refuse_again(b, c) != KETEN_OK) {
            keten_err_clear();
        }
        return NULL;
    }
    Keten__Reason why = dirstate_refusal(dir, c->node, c->key, b->now);
    if (why != KETEN__REASON__REASON_NONE) {
        refuse(s, c, why);
        return NULL;
    }
    return c;
}

/* Read up to BROKER_BATCH_MAX frames into s->cur without blocking. */
static void read_frames(server *s)
{
    batchbuf *bb = s->cur;
    size_t bytes = 0;
    while (bb->n < BROKER_BATCH_MAX && bytes < BROKER_BATCH_BYTES_MAX) {
        zmq_msg_t rid, data;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, s->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            return;
        }
        if (!zmq_msg_more(&rid)) {
            zmq_msg_close(&rid);
            continue;
        }
        zmq_msg_init(&data);
        if (zmq_msg_recv(&data, s->router, 0) < 0) {
            zmq_msg_close(&data);
            zmq_msg_close(&rid);
            return;
        }
        bool extra = zmq_msg_more(&data);
        if (extra) {
            drain_parts(s->router);
        }
        bool fresh = false;
        conn *c = frame_conn(s, &rid, &data, &fresh);
        if (c != NULL) {
            batch_item *it = &bb->items[bb->n++];
            memset(it, 0, sizeof *it);
            it->c = c;
            size_t len = zmq_msg_size(&data);
            bytes += len;
            if (!extra
                && KETEN_PB_UNPACK(
                       keten__frame, zmq_msg_data(&data), len, KETEN_FRAME_MAX, "frame", &it->frame)
                    != KETEN_OK) {
                it->frame = NULL;
            }
            keten_err_clear();
        }
        zmq_msg_close(&data);
        zmq_msg_close(&rid);
    }
}

/* Pool job of a loop round: the stateless checks of every frame just read
 * (signatures above all); one index each. */
static void pool_job(void *ctx, size_t i)
{
    server *s = ctx;
    batch_prepare(&s->b, &s->cur->items[i], s->cur->dir_fresh);
}

/* Start the round's pool job: verify the frames in s->cur. */
static void pool_begin(server *s)
{
    broker *b = &s->b;
    batchbuf *bb = s->cur;
    bool submits = false;
    for (size_t i = 0; i < bb->n && !submits; i++) {
        const Keten__Frame *f = bb->items[i].frame;
        submits = f != NULL && f->body_case == KETEN__FRAME__BODY_SUBMIT;
    }
    bb->dir_fresh = submits ? dirstate_fresh(b) : true;
    pool_start(s->pool, bb->n, pool_job, s);
}

/* Wait for the round's pool job. */
static void pool_end(server *s)
{
    pool_wait(s->pool);
}

static void free_items(batchbuf *bb)
{
    for (size_t i = 0; i < bb->n; i++) {
        batch_item_clear(&bb->items[i]);
    }
    bb->n = 0;
}

/* ---- one batch ----------------------------------------------------------- */

static keten_err snapshot(server *s)
{
    conns *cs = s->b.conns;
    if (cs->n > s->snap_cap) {
        conn_snapshot *v = realloc(s->snap, cs->n * sizeof *v);
        if (v == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "snapshot of %zu connections", cs->n);
        }
        s->snap = v;
        s->snap_cap = cs->n;
    }
    for (size_t i = 0; i < cs->n; i++) {
        conn *c = cs->v[i];
        s->snap[i] = (conn_snapshot) { c, c->credit, c->cursor, c->has_cursor, c->more, c->notices,
            c->hello, c->want_cp, c->cp_sent, c->cp_max, c->flight };
    }
    s->pend.n_snap = cs->n;
    return KETEN_OK;
}

/* Undo what a failed batch did to the connections and the checkpointer. */
static void restore(server *s)
{
    for (size_t i = 0; i < s->pend.n_snap; i++) {
        conn *c = s->snap[i].c;
        if (c == NULL) {
            continue;
        }
        c->credit = s->snap[i].credit;
        c->cursor = s->snap[i].cursor;
        c->has_cursor = s->snap[i].has_cursor;
        c->more = s->snap[i].more;
        c->notices = s->snap[i].notices;
        c->hello = s->snap[i].hello;
        c->want_cp = s->snap[i].want_cp;
        c->cp_sent = s->snap[i].cp_sent;
        c->cp_max = s->snap[i].cp_max;
        c->cp_staged = false;
        c->flight = s->snap[i].flight;
        /* The batch's notice frames were dropped and its confirmations
         * undone: forget what is in flight and send every unconfirmed
         * notice again. */
        c->flight.n_notices = 0;
        c->flight.has_notice_cursor = false;
        c->notices = true;
    }
    checkpointer_undo(&s->b);
    s->b.cp->last_size = s->pend.cp_size;
    s->b.cp->last_mono_ms = s->pend.cp_ms;
    atomic_store(&s->b.m->submits, s->pend.submits_before);
}

/* Apply a batch in a new write transaction, left open in b->txn (the
 * commit comes in the next loop round, while the pool works): the node
 * events, the frames in order, notices, deliveries, expiry, a checkpoint if
 * due. On failure the transaction is aborted and memory restored. */
static keten_err apply(server *s, batchbuf *bb, enum batch_mode mode)
{
    broker *b = &s->b;
    keten_err e = snapshot(s);
    if (e != KETEN_OK) {
        return e;
    }
    s->pend.buf = bb;
    s->pend.cp_size = b->cp->last_size;
    s->pend.cp_ms = b->cp->last_mono_ms;
    s->pend.submits_before = atomic_load(&b->m->submits);
    s->pend.n_events = b->n_events;
    b->stopping = s->stopping;
    if ((e = batch_begin(b, NULL, mode == MODE_DEGRADED)) != KETEN_OK) {
        return e;
    }
    s->pend.open = true;
    e = batch_apply(b, s->pend.n_events, bb->items, bb->n);
    if (e != KETEN_OK) {
        store_abort(&b->txn);
        outq_clear(b->out);
        restore(s);
        s->pend.open = false;
    }
    return e;
}

/* Commit the pending batch (the durability point). The caller has started
 * the pool job; it runs during the fsync. */
static keten_err commit(server *s, uint64_t *commit_us)
{
    broker *b = &s->b;
    uint64_t start = keten_mono_us();
    keten_err e = store_commit(b->st, &b->txn);
    *commit_us = keten_mono_us() - start;
    return e;
}

/* The store cannot take this batch: answer submits, keep credits. */
static void run_nostore(server *s, batchbuf *bb)
{
    broker *b = &s->b;
    for (size_t i = 0; i < bb->n; i++) {
        batch_item *it = &bb->items[i];
        if (it->frame == NULL || it->c == NULL) {
            continue;
        }
        if (it->frame->body_case == KETEN__FRAME__BODY_SUBMIT) {
            metrics_reject(b->m, KETEN__REASON__REASON_STORE_FULL);
            keten_err e = outq_error(b->out, it->c, it->frame->request_id,
                KETEN__REASON__REASON_STORE_FULL, it->prep.has_msg_id ? it->prep.msg_id : NULL,
                "store full or failing: not stored, try again later", 0);
            (void)e;
        } else if (it->frame->body_case == KETEN__FRAME__BODY_CREDIT) {
            deliver_credit(it->c, it->frame->credit->credit);
        }
    }
    if (b->n_events > 0) {
        KETEN_LOG(
            KETEN_LOG_ERR, "node events not audited: the store failed", "events=%zu", b->n_events);
    }
}

/* Forget the first n node events (audited, or given up). */
static void drop_events(broker *b, size_t n)
{
    if (n >= b->n_events) {
        b->n_events = 0;
        return;
    }
    memmove(b->events, b->events + n, (b->n_events - n) * sizeof b->events[0]);
    b->n_events -= n;
}

static void log_failed(keten_err e, enum batch_mode mode)
{
    char detail[512];
    snprintf(detail, sizeof detail, "%s", keten_err_detail());
    KETEN_LOG(KETEN_LOG_ERR, "batch failed; nothing of it was stored",
        "error=\"%s\" detail=\"%s\" mode=%d", keten_err_str(e), detail, (int)mode);
}

/* A batch could not be stored: mark the store, run it again with every
 * submit refused (STORE_FULL, audited) and commit at once; if that fails
 * too, answer its submits without storing anything. */
static keten_err retry_degraded(server *s, batchbuf *bb, keten_err e, uint64_t *commit_us)
{
    broker *b = &s->b;
    if (e == KETEN_ERR_STORE_FULL) {
        store_mark_full(b->st, b->now);
    }
    if (e == KETEN_ERR_STORE_FULL) {
        e = apply(s, bb, MODE_DEGRADED);
        if (e == KETEN_OK) {
            e = commit(s, commit_us);
            s->pend.open = false;
            if (e != KETEN_OK) {
                outq_clear(b->out);
                restore(s);
            }
        }
        if (e == KETEN_OK) {
            drop_events(b, s->pend.n_events);
            return KETEN_OK;
        }
        log_failed(e, MODE_DEGRADED);
    }
    run_nostore(s, bb);
    drop_events(b, b->n_events);
    return e;
}

/* Finish the pending batch: commit (the pool job runs meanwhile), then
 * wait for the pool, and only then send what the batch staged. */
static void finish(server *s)
{
    broker *b = &s->b;
    batchbuf *bb = s->pend.buf;
    uint64_t commit_us = 0;
    keten_err e = commit(s, &commit_us);
    s->pend.open = false;
    pool_end(s);
    store_trim(b->st, keten_mono_ms());
    if (e == KETEN_OK) {
        drop_events(b, s->pend.n_events);
    } else {
        outq_clear(b->out);
        restore(s);
        log_failed(e, MODE_NORMAL);
        e = retry_degraded(s, bb, e, &commit_us);
    }
    if (e == KETEN_OK) {
        if (bb->n > 0) {
            metrics_batch(b->m, bb->n, commit_us);
        }
#ifdef KETEN_TEST_HOOKS
        if ((s->fault_kill_after_commit && atomic_load(&b->m->submits) > s->pend.submits_before)
            || (s->fault_kill_after_notice && b->notices_staged > 0)) {
            KETEN_LOG(KETEN_LOG_WARNING, "test hook: killed after the commit, before the acks",
                "env=%s", FAULT_ENV);
            raise(SIGKILL);
        }
#endif
    }
    b->notices_staged = 0;
    outq_flush(b->out, s->router);
    free_items(bb);
    size_t live = 0;
    for (size_t i = 0; i < b->conns->n; i++) {
        live += b->conns->v[i]->revoked ? 0 : 1;
    }
    metrics_connected(b->m, live);
}

/* Apply s->cur; it becomes the pending batch, committed next round. */
static void start_batch(server *s)
{
    broker *b = &s->b;
    batchbuf *bb = s->cur;
    keten_err e = apply(s, bb, MODE_NORMAL);
    if (e != KETEN_OK) {
        log_failed(e, MODE_NORMAL);
        uint64_t commit_us = 0;
        (void)retry_degraded(s, bb, e, &commit_us);
        outq_flush(b->out, s->router);
        free_items(bb);
        return;
    }
    if (bb->n == 0) {
        /* Nothing read (deliveries, expiry, checkpoints at most): commit now,
         * so that an idle broker sleeps in poll(). */
        pool_begin(s);
        finish(s);
        return;
    }
    s->cur = bb == &s->bufs[0] ? &s->bufs[1] : &s->bufs[0];
}

/* ---- the loop ----------------------------------------------------------- */

static void handle_zap(server *s)
{
    for (int i = 0; i < ZAP_PER_ROUND; i++) {
        int events = 0;
        size_t sz = sizeof events;
        if (zmq_getsockopt(s->zap_sock, ZMQ_EVENTS, &events, &sz) != 0 || !(events & ZMQ_POLLIN)) {
            break;
        }
        keten_err e = zap_handle(&s->z, &s->b, s->zap_sock);
        if (e != KETEN_OK) {
            KETEN_LOG(KETEN_LOG_ERR, "ZAP handler failed", "error=\"%s\" detail=\"%s\"",
                keten_err_str(e), keten_err_detail());
            break;
        }
    }
}

/* READY=1 to the service manager, with what the broker serves as STATUS=. */
static void notify_ready(const server *s, const char *what)
{
    const broker *b = &s->b;
    char status[KETEN_NOTIFY_STATUS_MAX];
    snprintf(status, sizeof status, "directory version %llu%s; listening on %s",
        (unsigned long long)keten_directory_version(broker_dir(b)), what, b->cfg->listen);
    keten_notify_ready(status);
}

/* SIGHUP, at a point where no transaction is open. A newly installed
 * directory invalidates what was verified against the old one: the frames
 * waiting in s->cur are verified again. */
static void reload(server *s)
{
    broker *b = &s->b;
    s->reload = false;
    bool installed = false;
    keten_notify_reloading();
    keten_err e = dirstate_reload(b, &installed);
    if (e != KETEN_OK) {
        outq_clear(b->out);
        KETEN_LOG(KETEN_LOG_ERR, "directory reload failed", "error=\"%s\" detail=\"%s\"",
            keten_err_str(e), keten_err_detail());
    }
    outq_flush(b->out, s->router);
    for (size_t i = 0; installed && i < s->cur->n; i++) {
        if (s->cur->items[i].c != NULL && s->cur->items[i].c->revoked) {
            s->cur->items[i].c = NULL; /* read before the cut-off: dropped unprocessed */
        }
    }
    if (installed && s->cur->n > 0) {
        for (size_t i = 0; i < s->cur->n; i++) {
            submit_prep_clear(&s->cur->items[i].prep);
            deliver_receipt_prep_clear(&s->cur->items[i].rprep);
        }
        pool_begin(s);
        pool_end(s);
    }
    notify_ready(s, installed ? " (installed from the file)" : "");
}

/*
 * One round: read what arrived (frames, monitor, ZAP, signals); hand the
 * pool the verification of the frames just read, and commit the pending
 * batch meanwhile; send what it staged; then apply the new frames in a new
 * transaction, which becomes the pending batch. The writer (LMDB) stays
 * this one thread; the signature checks run on every core while the disk
 * syncs. A small pending batch (under OVERLAP_MIN_FRAMES) is committed and
 * answered in the same round instead: under light load there is little to
 * overlap, and waiting a round only delays its acks.
 */
static void loop(server *s)
{
    broker *b = &s->b;
    for (;;) {
        bool last = s->stopping;
        zmq_pollitem_t items[] = {
            { s->zap_sock, 0, ZMQ_POLLIN, 0 },
            { s->router, 0, ZMQ_POLLIN, 0 },
            { s->monitor, 0, ZMQ_POLLIN, 0 },
            { NULL, s->sigfd, ZMQ_POLLIN, 0 },
        };
        long timeout = s->pend.open || last ? 0 : POLL_MS;
        if (zmq_poll(items, 4, timeout) < 0 && zmq_errno() != EINTR) {
            KETEN_LOG(KETEN_LOG_ERR, "poll failed", "error=\"%s\"", zmq_strerror(zmq_errno()));
            s->stopping = last = true;
        }
        read_signals(s);
        keten_notify_watchdog_tick(keten_mono_ms());
        read_monitor(s);
        handle_zap(s);
        b->now = broker_clock(s);
        if (!last) {
            read_frames(s);
        }
        pool_begin(s);
        if (s->pend.open) {
            finish(s);
        } else {
            pool_end(s);
        }
        if (s->reload) {
            reload(s);
        }
        keten_err e = store_room(b->st, b->now, NULL);
        if (e != KETEN_OK) {
            KETEN_LOG(
                KETEN_LOG_ERR, "cannot read the store's size", "detail=\"%s\"", keten_err_detail());
        }
        start_batch(s);
        /* A small batch is committed now (there is little to overlap), and
         * on SIGTERM the frames already read are applied and committed. */
        if (last || (s->pend.open && s->pend.buf->n < OVERLAP_MIN_FRAMES)) {
            pool_begin(s); /* s->cur is empty: nothing to verify */
            if (s->pend.open) {
                finish(s);
            } else {
                pool_end(s);
            }
        }
        if (last) {
            break;
        }
    }
}

/* Verifier threads: one per CPU (none on a single CPU: the main loop does
 * the work); KETEN_BROKER_VERIFY_THREADS=N overrides it (0: none), for
 * benchmarks. */
static unsigned verify_threads(void)
{
    const char *v = getenv(VERIFY_THREADS_ENV);
    uint64_t n = 0;
    if (v != NULL && keten_cli_parse_uint(v, 0, POOL_THREADS_MAX, &n)) {
        return (unsigned)n;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 1 ? (unsigned)(cpus > POOL_THREADS_MAX ? POOL_THREADS_MAX : cpus) : 0;
}

keten_err server_run(const broker_config *cfg)
{
    server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "broker state");
    }
    broker *b = &s->b;
    b->cfg = cfg;
    s->sigfd = -1;
    s->cur = &s->bufs[0];
    keten_err e = block_signals(&s->sigfd);
    if (e != KETEN_OK) {
        goto out;
    }
    b->m = metrics_new();
    b->conns = conns_new();
    b->out = outq_new();
    s->pool = pool_new(verify_threads());
    if (b->m == NULL || b->conns == NULL || b->out == NULL || s->pool == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "broker state");
        goto out;
    }
#ifdef KETEN_TEST_HOOKS
    const char *offset = getenv(CLOCK_ENV);
    if (offset != NULL) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(offset, &end, 10);
        const long long day = (long long)KETEN_MS_PER_DAY;
        if (errno != 0 || end == offset || *end != '\0' || v < -day || v > day) {
            e = keten_err_set(
                KETEN_ERR_INVALID, "%s must be a number of ms within a day", CLOCK_ENV);
            goto out;
        }
        s->clock_offset_ms = v;
        KETEN_LOG(KETEN_LOG_WARNING, "test hook armed: the broker's clock is shifted",
            "env=%s offset_ms=%lld", CLOCK_ENV, v);
    }
    const char *fault = getenv(FAULT_ENV);
    s->fault_kill_after_notice = fault != NULL && strcmp(fault, "kill-after-notice") == 0;
    if (fault != NULL && (strcmp(fault, "kill-after-commit") == 0 || s->fault_kill_after_notice)) {
        s->fault_kill_after_commit = !s->fault_kill_after_notice;
        KETEN_LOG(KETEN_LOG_WARNING, "test hook armed: the broker will kill itself after a commit",
            "env=%s", FAULT_ENV);
    }
#endif
    if ((e = load_identity(s)) != KETEN_OK) {
        goto out;
    }
    if ((e = store_open(cfg->home, cfg->map_size, &b->st)) != KETEN_OK) {
        goto out;
    }
    b->now = broker_clock(s);
    if ((e = dirstate_open(b, cfg->anchor_path, cfg->directory_path)) != KETEN_OK) {
        goto out;
    }
    if ((e = checkpointer_open(b)) != KETEN_OK) {
        goto out;
    }
    if ((e = store_room(b->st, b->now, NULL)) != KETEN_OK) {
        goto out;
    }
    if ((e = open_sockets(s)) != KETEN_OK) {
        goto out;
    }
    if (cfg->metrics_addr != NULL
        && (e = metrics_start(b->m, cfg->metrics_addr, b->st)) != KETEN_OK) {
        goto out;
    }
    KETEN_LOG(KETEN_LOG_NOTICE, "broker running",
        "node=%s listen=%s directory_version=%llu map_size=%llu verify_threads=%u", b->me->id,
        cfg->listen, (unsigned long long)keten_directory_version(broker_dir(b)),
        (unsigned long long)b->st->map_size, pool_threads(s->pool));
    /* The store is open, the ZAP handler and the ROUTER socket are bound. */
    notify_ready(s, "");
    loop(s);
    KETEN_LOG(KETEN_LOG_NOTICE, "broker stopped", NULL);
out:
    if (b->m != NULL) {
        metrics_destroy(&b->m); /* stops the HTTP thread before the store goes */
    }
    close_sockets(s);
    free_items(&s->bufs[0]);
    free_items(&s->bufs[1]);
    pool_destroy(&s->pool);
    free(s->snap);
    checkpointer_destroy(&b->cp);
    dirstate_destroy(&b->dirs);
    store_close(&b->st);
    outq_destroy(&b->out);
    conns_destroy(&b->conns);
    keten_identity_destroy(&b->me);
    if (s->sigfd >= 0) {
        close(s->sigfd);
    }
    free(s);
    return e;
}
