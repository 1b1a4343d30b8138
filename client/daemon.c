#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "alarm.h"
#include "api.h"
#include "http.h"
#include "cli.h"
#include "dirs.h"
#include "events.h"
#include "hook.h"
#include "idem.h"
#include "inbox.h"
#include "link.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "outbox.h"
#include "passphrase.h"
#include "pb.h"
#include "rotate.h"
#include "sigcache.h"
#include "util.h"
#include "witness.h"
#include "zctx.h"

#define POLL_MS 200
#define PURGE_EVERY_MS (3600ull * 1000ull)
#define FRAMES_PER_ROUND 256
#define FRAMES_PER_BATCH 64 /* broker frames handled in one group commit */
#define LOCK_WAIT_MS 2000 /* how long a starting daemon waits for node.lock */
#define LOCK_STEP_MS 20
#define SIGCACHE_SLOTS 4096 /* signatures remembered as verified (about 132 KiB) */

uint64_t keten_node_request_id(keten_node *node)
{
    return ++node->next_request_id;
}

static keten_err take_lock(const char *home, int *fd_out)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", home, KETEN_NODE_LOCK) >= (int)sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "home path too long: %s", home);
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot open %s: %s (does --home %s exist?)", path,
            strerror(errno), home);
    }
    /* A command such as keten-node status holds a shared lock on this file
     * for a moment to see whether a daemon runs: a daemon starting in that
     * moment waits for it (at most LOCK_WAIT_MS) instead of mistaking it for
     * another daemon. A daemon holds its lock for as long as it runs. */
    int rc;
    int waited_ms = 0;
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EWOULDBLOCK
        && waited_ms < LOCK_WAIT_MS) {
        struct timespec step = { .tv_nsec = LOCK_STEP_MS * 1000000L };
        (void)nanosleep(&step, NULL);
        waited_ms += LOCK_STEP_MS;
    }
    if (rc != 0) {
        int err = errno;
        close(fd);
        if (err != EWOULDBLOCK) {
            return keten_err_set(KETEN_ERR_IO, "cannot lock %s: %s", path, strerror(err));
        }
        return keten_err_set(
            KETEN_ERR_EXISTS, "another keten-node daemon is running for %s; stop it first", home);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)n) != n) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot write pid to lock file", "path=%s", path);
    }
    *fd_out = fd;
    return KETEN_OK;
}

/* Open identity.secret; the passphrase read for it (NULL for a key written
 * with --no-passphrase) is handed back in *pass, kept in secure memory to
 * open the rotation's keys with (keten_rotate_open): KETEN_PASSPHRASE can be
 * read only once. The caller frees it (keten_passphrase_free). */
static keten_err open_identity(keten_node *node, char **pass, size_t *passlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/identity.secret", node->opts.home) >= (int)sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "home path too long");
    }
    bool encrypted = true;
    keten_err e = keten_rotate_recover(node->opts.home);
    if (e == KETEN_OK) {
        e = keten_identity_file_encrypted(path, &encrypted);
    }
    if (e == KETEN_ERR_NOT_FOUND) {
        return keten_err_set(
            e, "no key file %s; make one with keten-node keygen --home %s", path, node->opts.home);
    }
    if (e == KETEN_OK && encrypted) {
        e = keten_cli_passphrase(node->opts.passfile, path, false, pass, passlen);
    }
    if (e == KETEN_OK) {
        e = keten_identity_load(
            path, (const uint8_t *)*pass, *pass != NULL ? *passlen : 0, &node->me);
        if (e == KETEN_ERR_PASSPHRASE) {
            e = keten_err_set(e,
                "the passphrase does not open %s (or the file was altered); check the "
                "passphrase (--passphrase-file, KETEN_PASSPHRASE or the prompt) and try again",
                path);
        }
    }
    keten_passphrase_scrub_env();
    if (e == KETEN_OK && !encrypted) {
        KETEN_LOG(KETEN_LOG_WARNING,
            "key file is not passphrase-protected (--no-passphrase); for tests and demos only",
            "path=%s", path);
    }
    return e;
}

static keten_err connect_broker(keten_node *node)
{
    const Keten__NodeCert *b = keten_directory_broker(node->dir);
    if (b == NULL || b->transport_pk.len != KETEN_CURVE_KEY_BYTES
        || b->log_pk.len != KETEN_SIGN_PK_BYTES) {
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE,
            "directory version %llu has no broker certificate; the administrators must approve "
            "the broker's request first",
            (unsigned long long)keten_directory_version(node->dir));
    }
    keten_link_destroy(&node->link);
    keten_err e = keten_link_new(
        node->zctx, node->opts.broker, node->me, b->transport_pk.data, &node->link);
    if (e == KETEN_OK) {
        KETEN_LOG(KETEN_LOG_INFO, "connecting to broker", "broker=%s endpoint=%s", b->id,
            node->opts.broker);
    }
    return e;
}

static void on_link_up(keten_node *node)
{
    KETEN_LOG(KETEN_LOG_NOTICE, "connected to broker", "endpoint=%s connects=%llu",
        node->opts.broker, (unsigned long long)keten_link_connects(node->link));
    /* Admitted with these keys: an earlier refusal no longer holds (if it
     * still does, the broker says so again at the first frame). */
    keten_alarm_refusal_clear(node);
    /* Hello first: the broker proves everything from the size it names. */
    keten_witness_send_hello(node);
    Keten__Credit c = KETEN__CREDIT__INIT;
    c.credit = KETEN_NODE_CREDIT_WINDOW;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &c;
    if (keten_link_send(node->link, &f) != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot send credit", "error=\"%s\"", keten_err_detail());
    }
    keten_dirs_request(node);
    keten_outbox_submit_all(node);
}

/* The broker refused this node's keys as revoked before (a refusal kept
 * across restarts) and this node's own signed directory says the same:
 * trying again with these keys can only be refused, each attempt an
 * auth-failed record in the broker's log, for as long as the node runs. */
static bool revoked_for_good(keten_node *node)
{
    return node->refused == KETEN__REASON__REASON_REVOKED && node->refused_confirmed
        && keten_dirs_my_cert(node) == NULL;
}

/* The handshake was refused, or libzmq gave the connection up, while
 * revoked_for_good(): stop, as at the refusal itself (true: stopped). */
static bool stop_if_revoked(keten_node *node)
{
    if (!revoked_for_good(node) || keten_link_stopped(node->link)) {
        return false;
    }
    char text[160];
    keten_alarm_refusal_text(node->refused, node->refused_version, text, sizeof text);
    KETEN_LOG(KETEN_LOG_ERR,
        "the broker refused this node's keys again and its directory says they are revoked: "
        "not reconnecting",
        "endpoint=%s version=%llu action=\"%s\"", node->opts.broker,
        (unsigned long long)node->refused_version, text);
    keten_link_stop(node->link, text);
    keten_api_notify_refused(node);
    return true;
}

/* Every waiting monitor event (connection up, down, handshake refused). */
static void on_monitor(keten_node *node)
{
    for (int i = 0; i < 64; i++) {
        zmq_pollitem_t item = { keten_link_monitor(node->link), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&item, 1, 0) <= 0) {
            return;
        }
        keten_link_event ev = keten_link_on_monitor(node->link);
        if (ev == KETEN_LINK_UP) {
            on_link_up(node);
        } else if (ev == KETEN_LINK_DOWN) {
            KETEN_LOG(
                KETEN_LOG_WARNING, "disconnected from broker", "endpoint=%s", node->opts.broker);
        }
        if (keten_link_auth_refused(node->link) && stop_if_revoked(node)) {
            return;
        }
        const char *why = keten_link_last_error(node->link);
        if (why[0] != '\0' && strcmp(why, node->last_link_error) != 0) {
            KETEN_LOG(KETEN_LOG_WARNING, "cannot connect to broker", "endpoint=%s why=%s",
                node->opts.broker, why);
        }
        snprintf(node->last_link_error, sizeof node->last_link_error, "%s", why);
    }
}

/* An Error that ends the connection (docs/wire.md, "Connection refusals"):
 * no msg_id, a connection reason and the directory version that made it
 * so; or UNKNOWN_CHECKPOINT, the answer to a Hello naming a checkpoint
 * larger than the broker's log, which only a node holding a checkpoint can
 * get (a Hello from size 0 is never larger). */
static bool is_refusal(const keten_node *node, const Keten__Error *err)
{
    if (err->msg_id.len != 0) {
        return false;
    }
    if (err->reason == KETEN__REASON__REASON_UNKNOWN_CHECKPOINT) {
        return keten_witness_reference_size(node) > 0;
    }
    return err->directory_version > 0
        && (err->reason == KETEN__REASON__REASON_REVOKED
            || err->reason == KETEN__REASON__REASON_KEYS_REPLACED
            || err->reason == KETEN__REASON__REASON_UNKNOWN_SENDER);
}

/* The broker cut this node off: alarm, and no reconnecting until restarted
 * (a node whose keys were replaced switches to the new ones at a directory
 * reload or its start; a revoked one waits for its administrator; one whose
 * checkpoint the broker's log no longer holds waits for the broker's log to
 * be whole again). */
static void on_refused(keten_node *node, const Keten__Error *err)
{
    if (err->reason == KETEN__REASON__REASON_KEYS_REPLACED && keten_rotate_try_switch(node)) {
        /* The new keys are ready (opened now if made after the start) and
         * the directory the broker pushed just before lists them: reconnect
         * with them. */
        node->relink = true;
        return;
    }
    keten_alarm_refused(node, err);
    char text[160];
    keten_alarm_refusal_text(node->refused, node->refused_version, text, sizeof text);
    if (!keten_link_stopped(node->link)) {
        KETEN_LOG(KETEN_LOG_ERR, "the broker refuses this node: not reconnecting",
            "endpoint=%s version=%llu action=\"%s\"", node->opts.broker,
            (unsigned long long)node->refused_version, text);
    }
    keten_link_stop(node->link, text);
    keten_api_notify_refused(node);
}

static void on_frame(keten_node *node, const Keten__Frame *f)
{
    node->frame = f; /* evidence, should an alarm be raised */
    switch (f->body_case) {
    case KETEN__FRAME__BODY_SUBMIT_ACK:
        keten_outbox_on_ack(node, f->request_id, f->submit_ack);
        break;
    case KETEN__FRAME__BODY_ERROR:
        if (is_refusal(node, f->error)) {
            on_refused(node, f->error);
        } else {
            keten_outbox_on_error(node, f->request_id, f->error);
        }
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
            KETEN_LOG(
                KETEN_LOG_WARNING, "pushed directory refused", "error=\"%s\"", keten_err_detail());
        }
        break;
    case KETEN__FRAME__BODY_CHECKPOINT:
        keten_witness_on_checkpoint(node, f->checkpoint);
        break;
    default:
        KETEN_LOG(KETEN_LOG_DEBUG, "unexpected frame from broker", "body=%d", (int)f->body_case);
        break;
    }
    node->frame = NULL;
}

/* Handle up to max frames; false when none was waiting or the link must be
 * made again. */
static bool read_frames(keten_node *node, int max)
{
    for (int i = 0; i < max; i++) {
        Keten__Frame *f = NULL;
        keten_err e = keten_link_recv(node->link, &f);
        if (e == KETEN_ERR_NOT_FOUND) {
            keten_err_clear();
            return false;
        }
        if (e != KETEN_OK) {
            KETEN_LOG(
                KETEN_LOG_WARNING, "bad frame from broker", "error=\"%s\"", keten_err_detail());
            continue;
        }
        on_frame(node, f);
        keten_pb_free((ProtobufCMessage **)(void *)&f);
        if (node->relink) {
            return false;
        }
    }
    return true;
}

/* Group commit (store.h): the frames and API requests waiting are handled in
 * batches, each committed with one durable sync; what they send to the
 * broker or answer to API clients is held until their batch is durable: the
 * receipt batch of the deliveries handled in it is signed before the commit
 * and leaves after it. A failed commit stores none of the batch: its frames
 * are dropped (the broker sends again what was not receipted), its API
 * requests answered with an error, and the notice confirmations it queued
 * forgotten (sent again). */
static void handle_batched(keten_node *node, bool frames, bool http)
{
    bool more = true;
    for (int round = 0; more && round < FRAMES_PER_ROUND / FRAMES_PER_BATCH; round++) {
        size_t acks_before = node->n_notice_acks;
        keten_err e = keten_store_batch_begin(node->store);
        bool batch = e == KETEN_OK;
        if (!batch) { /* each change commits alone, as without batches */
            KETEN_LOG(KETEN_LOG_WARNING, "no group commit this round", "error=\"%s\"",
                keten_err_detail());
            keten_err_clear();
        } else {
            keten_link_hold(node->link);
            keten_api_hold(node->api);
        }
        more = frames && read_frames(node, FRAMES_PER_BATCH);
        if (http && round == 0) {
            keten_http_run(node->http);
        }
        keten_inbox_flush_receipts(node);
        if (!batch) {
            continue;
        }
        e = keten_store_batch_end(node->store);
        if (e != KETEN_OK) {
            KETEN_LOG(KETEN_LOG_ERR, "group commit failed; nothing of it is stored",
                "error=\"%s\" detail=\"%s\"", keten_err_str(e), keten_err_detail());
            keten_err_clear();
            if (node->n_notice_acks > acks_before) {
                node->n_notice_acks = acks_before;
            }
        }
        keten_link_release(node->link, e == KETEN_OK);
        keten_api_release(node->api, e == KETEN_OK);
    }
}

/* READY=1 to the service manager, with the node's state as STATUS=. */
static void notify_ready(const keten_node *node, const char *what)
{
    char status[KETEN_NOTIFY_STATUS_MAX];
    snprintf(status, sizeof status, "node %s, directory version %llu%s; broker %s", node->me->id,
        (unsigned long long)keten_directory_version(node->dir), what, node->opts.broker);
    keten_notify_ready(status);
}

/* SIGHUP: install the --directory file if it verifies and is newer; with
 * anything else the node goes on with the version it has. Then, whether or
 * not the file was newer, switch to next keys the version in force lists
 * (they may have come in a push, before a refusal) and reconnect. */
static void reload_directory(keten_node *node)
{
    const char *file = node->opts.directory;
    keten_notify_reloading();
    KETEN_LOG(KETEN_LOG_NOTICE, "reloading the directory file", "file=%s", file);
    bool installed = false;
    keten_err e = keten_dirs_reload(node, &installed);
    unsigned long long version = (unsigned long long)keten_directory_version(node->dir);
    const char *what = installed ? " (installed from the file)" : "";
    if (e != KETEN_OK) {
        KETEN_LOG(e == KETEN_ERR_ROLLBACK ? KETEN_LOG_WARNING : KETEN_LOG_ERR,
            "directory file not installed; the installed version stays",
            "file=%s installed=%llu error=\"%s\" detail=%s", file, version, keten_err_str(e),
            keten_err_detail());
        keten_err_clear();
        what = " (the reloaded file was refused)";
    } else if (!installed) {
        KETEN_LOG(KETEN_LOG_NOTICE, "directory file is the installed version; nothing changed",
            "file=%s installed=%llu", file, version);
    }
    if (keten_rotate_try_switch(node)) {
        node->relink = true;
    }
    notify_ready(node, what);
}

static bool read_signals(keten_node *node, int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            KETEN_LOG(KETEN_LOG_NOTICE, "stopping", "signal=%u", si.ssi_signo);
            if (!node->stop) {
                keten_notify_stopping();
            }
            node->stop = true;
            break;
        case SIGHUP:
            if (!node->stop) {
                reload_directory(node);
            }
            break;
        case SIGCHLD:
            keten_hook_reap(node);
            break;
        default:
            KETEN_LOG(KETEN_LOG_INFO, "signal ignored", "signal=%u", si.ssi_signo);
            break;
        }
    }
    return node->stop;
}

/* The periodic purge: replay memory of expired messages, the events
 * retention does not keep (events.h), and idempotency keys older than
 * KETEN_IDEM_KEEP_MS (idem.h). */
static void purge(keten_node *node)
{
    keten_inbox_purge_seen(node);
    size_t n = 0, damaged = 0;
    if (keten_idem_purge(node->store, keten_now_ms(), KETEN_IDEM_KEEP_MS, KETEN_IDEM_PURGE_CHUNK,
            &node->idem_purge, &n, &damaged)
        != KETEN_OK) {
        node->counters.store_errors++;
        KETEN_LOG(KETEN_LOG_ERR, "idempotency keys not purged; the next purge tries again",
            "error=\"%s\"", keten_err_detail());
        keten_err_clear();
    } else if (n > 0 || damaged > 0) {
        KETEN_LOG(damaged > 0 ? KETEN_LOG_ERR : KETEN_LOG_INFO, "idempotency keys purged",
            "removed=%zu damaged_kept=%zu", n, damaged);
    }
    if (damaged > 0) {
        node->counters.store_errors++;
    }
    n = 0;
    if (keten_events_purge(node, keten_now_ms(), &n) != KETEN_OK) {
        node->counters.store_errors++;
        KETEN_LOG(KETEN_LOG_ERR, "event log not purged; the next purge tries again", "error=\"%s\"",
            keten_err_detail());
        keten_err_clear();
    } else if (n > 0) {
        KETEN_LOG(KETEN_LOG_INFO, "event log purged", "removed=%zu", n);
    }
}

static keten_err loop(keten_node *node, int sfd, keten_metrics *metrics)
{
    uint64_t last_purge = keten_mono_ms();
    purge(node);
    while (!node->stop) {
        zmq_pollitem_t items[3 + KETEN_HTTP_LISTENERS] = {
            { keten_link_socket(node->link), 0, ZMQ_POLLIN, 0 },
            { keten_link_monitor(node->link), 0, ZMQ_POLLIN, 0 },
            { NULL, sfd, ZMQ_POLLIN, 0 },
        };
        int http_fds[KETEN_HTTP_LISTENERS];
        size_t n_http = keten_http_fds(node->http, http_fds);
        for (size_t i = 0; i < n_http; i++) {
            items[3 + i] = (zmq_pollitem_t) { NULL, http_fds[i], ZMQ_POLLIN, 0 };
        }
        int rc = zmq_poll(items, (int)(3 + n_http), keten_http_timeout_ms(node->http, POLL_MS));
        bool http_ready = false;
        for (size_t i = 0; rc > 0 && i < n_http; i++) {
            http_ready = http_ready || (items[3 + i].revents & ZMQ_POLLIN);
        }
        if (rc < 0 && zmq_errno() != EINTR) {
            return keten_err_set(KETEN_ERR_IO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        }
        if (rc > 0 && (items[2].revents & ZMQ_POLLIN) && read_signals(node, sfd)) {
            break;
        }
        if (rc > 0 && (items[1].revents & ZMQ_POLLIN)) {
            on_monitor(node);
        }
        if (rc > 0 && ((items[0].revents & ZMQ_POLLIN) || http_ready)) {
            handle_batched(node, items[0].revents & ZMQ_POLLIN, http_ready);
        }
        bool given_up = !node->relink && keten_link_given_up(node->link, keten_mono_ms())
            && !stop_if_revoked(node);
        if (given_up) {
            /* The broker broke the protocol (a frame over the limit) and
             * libzmq closed the connection for good. */
            KETEN_LOG(KETEN_LOG_WARNING,
                "the connection to the broker was given up (no connection attempt since it "
                "ended); making it again",
                "endpoint=%s after_ms=%llu", node->opts.broker,
                (unsigned long long)KETEN_LINK_GIVEN_UP_MS);
        }
        if (node->relink || given_up) {
            if (node->relink) {
                KETEN_LOG(KETEN_LOG_NOTICE, "broker or own keys changed; reconnecting",
                    "endpoint=%s", node->opts.broker);
            }
            node->relink = false;
            keten_err e = connect_broker(node);
            if (e != KETEN_OK) {
                return e;
            }
        }
        keten_sigcache_counts(
            &node->counters.signatures_remembered, &node->counters.signatures_checked);
        keten_store_disk_tick(node->store, keten_mono_ms());
        keten_outbox_tick(node);
        keten_witness_tick(node);
        keten_dirs_tick(node);
        keten_api_tick(node);
        /* Answers resumed above, idle time-outs, and requests that came
         * meanwhile: inside a group commit too, as every API request. */
        handle_batched(node, false, true);
        keten_hook_reap(node);
        keten_rotate_tick(node);
        keten_notify_watchdog_tick(keten_mono_ms());
        keten_metrics_update(metrics, node);
        if (keten_mono_ms() - last_purge > PURGE_EVERY_MS) {
            last_purge = keten_mono_ms();
            purge(node);
        }
    }
    return KETEN_OK;
}

keten_err keten_daemon_run(const keten_node_opts *opts, bool *running)
{
    *running = false;
    keten_node node;
    memset(&node, 0, sizeof node);
    node.opts = *opts;
    node.started_at = keten_now_ms();
    int lock_fd = -1, sfd = -1;
    keten_metrics *metrics = NULL;
    keten_err e;
    char *pass = NULL; /* identity.secret's passphrase, until kept for the rotation's keys */
    size_t passlen = 0;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    /* Blocked before any thread exists, so libzmq's threads inherit it. */
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0
        || (sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        return keten_err_set(KETEN_ERR_IO, "signalfd: %s", strerror(errno));
    }
    signal(SIGPIPE, SIG_IGN);

    if ((opts->api_listen != NULL && (e = keten_http_check_listen(opts->api_listen)) != KETEN_OK)
        || (e = take_lock(opts->home, &lock_fd)) != KETEN_OK
        || (e = keten_sigcache_enable(SIGCACHE_SLOTS)) != KETEN_OK
        || (opts->metrics != NULL
            && (e = keten_metrics_new(opts->metrics, opts->metrics_remote, &metrics)) != KETEN_OK)
        || (e = open_identity(&node, &pass, &passlen)) != KETEN_OK
        || (e = keten_directory_anchor_load(opts->anchor, &node.anchor)) != KETEN_OK
        || (e = keten_store_open(opts->home, &node.store)) != KETEN_OK
        || (e = keten_dirs_load(&node)) != KETEN_OK) {
        goto out;
    }
    if (strcmp(keten_directory_network(node.dir), node.anchor->network) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK, "directory and anchor name other networks");
        goto out;
    }
    e = keten_rotate_open(&node, pass, passlen);
    if (e != KETEN_OK) {
        goto out;
    }
    /* Kept for next keys made while the daemon runs (rotate.h). */
    keten_rotate_keep_passphrase(&node, &pass, passlen);
    (void)keten_rotate_try_switch(&node);
    keten_alarm_refusal_load(&node);
    if (keten_inbox_unhandled_init(&node) != KETEN_OK) {
        /* Not fatal: the metric then counts the inbox each time it is read. */
        KETEN_LOG(KETEN_LOG_WARNING, "unhandled messages not counted", "error=\"%s\"",
            keten_err_detail());
        keten_err_clear();
    }
    if (keten_dirs_my_cert(&node) == NULL) {
        KETEN_LOG(KETEN_LOG_WARNING,
            "this node is not a current node of the directory with these keys; it cannot send "
            "or receive until it is",
            "node=%s version=%llu", node.me->id,
            (unsigned long long)keten_directory_version(node.dir));
    }
    node.zctx = zmq_ctx_new();
    if (node.zctx == NULL) {
        e = keten_err_set(KETEN_ERR_IO, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        goto out;
    }
    if ((e = keten_witness_new(&node, &node.witness)) != KETEN_OK
        || (e = keten_api_open(&node, &node.api)) != KETEN_OK
        || (e = keten_http_open(&node, &node.http)) != KETEN_OK
        || (e = connect_broker(&node)) != KETEN_OK
        || (metrics != NULL && (e = keten_metrics_start(metrics)) != KETEN_OK)) {
        goto out;
    }
    keten_metrics_update(metrics, &node);
    keten_store_set_commit_histogram(node.store, keten_metrics_commit_histogram(metrics));
    KETEN_LOG(KETEN_LOG_NOTICE, "keten-node running", "node=%s directory=%llu api=%s/%s",
        node.me->id, (unsigned long long)keten_directory_version(node.dir), node.opts.home,
        KETEN_NODE_API_SOCK);
    /* Ready without waiting for the broker: a node starts while it is down. */
    notify_ready(&node, "");
    *running = true;
    e = loop(&node, sfd, metrics);
    if (e == KETEN_OK) {
        KETEN_LOG(KETEN_LOG_NOTICE, "keten-node stopped", "node=%s", node.me->id);
    }
out:
    if (node.store != NULL) {
        keten_store_set_commit_histogram(node.store, NULL);
    }
    keten_metrics_destroy(&metrics); /* stops the HTTP thread */
    keten_passphrase_free(&pass);
    keten_rotate_forget_passphrase(&node);
    keten_passphrase_scrub_env();
    keten_http_destroy(&node.http);
    keten_api_destroy(&node.api);
    keten_link_destroy(&node.link);
    keten_witness_destroy(&node.witness);
    keten_dirs_forget_needed(&node);
    free(node.receipts);
    (void)keten_zctx_term(&node.zctx, KETEN_ZCTX_TERM_MS);
    keten_directory_destroy(&node.dir);
    keten_events_clear_listener(&node);
    keten_store_destroy(&node.store);
    keten_sigcache_disable();
    keten_pb_free((ProtobufCMessage **)(void *)&node.anchor);
    keten_identity_destroy(&node.me);
    keten_identity_destroy(&node.next);
    keten_identity_destroy(&node.old);
    if (lock_fd >= 0) {
        close(lock_fd);
    }
    if (sfd >= 0) {
        close(sfd);
    }
    return e;
}
