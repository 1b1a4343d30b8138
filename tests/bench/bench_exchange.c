/*
 * keten-bench-exchange - the whole exchange under load: real keten-node
 * daemons that seal, sign, verify, unwrap and receipt, through a real
 * keten-broker that audits every message durably before it acknowledges it
 * (issue "Exchange", docs/performance.md). keten-bench measures the broker
 * alone with prebuilt load; this program measures the parties together.
 *
 * It makes a network with libketen (one administrator, a signed directory
 * with an allow-all rule, the broker and the nodes' identities), and per
 * repetition starts, in a fresh temporary directory, one keten-broker and
 * N sending and M receiving keten-node daemons on ipc:// as child processes.
 * One thread per sending node talks to its node's HTTP API over the Unix
 * socket HOME/api.sock (POST /v1/messages, docs/api.md) with libcurl's
 * multi interface: as many requests in flight as the phase allows, each on
 * its own kept-alive connection (HTTP/1.1 answers one request at a time per
 * connection), at most BX_HTTP_CONNS_MAX (48) connections per node, all of
 * which may be opened at once (the node's socket holds 64 connections that
 * wait to be accepted; a connect beyond that fails); more requests in flight
 * wait in libcurl for a free connection. Each
 * signal is ~1 KiB of signal JSON to R of the M receivers (spread evenly).
 *
 * What is measured, and how (the node records no time at which a receipt
 * came back to the sender, so the sender node's own log is the clock): the
 * sending node's standard error is a pipe read by the same thread, which
 * timestamps (CLOCK_MONOTONIC, on read) the lines the node writes once it
 * has verified the proof of an ack and committed it ("message accepted
 * (proven in the log) msg_id=...") and once it has verified and committed a
 * recipient's receipt as the broker forwarded it ("receipt msg_id=...
 * node=..."), after which the status API reports that recipient as
 * "receipted". A signal is done when every recipient's receipt is back.
 *   send -> API answer   until the node answered the send request (parsed,
 *                        sealed, committed durably to its outbox; "pending")
 *   send -> ack          until the broker's ack (sent by the broker only after
 *                        its audit record was durably committed) was verified
 *                        and committed by the sending node
 *   send -> receipts     until the last recipient's receipt was back, verified
 *                        and committed at the sending node
 * Latencies count from the scheduled send time (open loop), so a generator
 * that falls behind does not hide queueing. After the half-rate phase a
 * sample of the messages is also looked up with the status API for the
 * times the nodes record themselves (created_at -> accepted_at, and
 * created_at -> the last recipient's receipted_at, which is the time the
 * recipient states it received the message; ms resolution). Each lookup is
 * also timed, request to answer, one at a time with the load stopped: the
 * status API's round trip on a node that is otherwise idle.
 *
 * Phases per repetition: "max" (closed loop: at most --window signals per
 * sender not yet fully receipted, for --warmup + --duration seconds;
 * throughput = signals fully receipted within the last --duration seconds),
 * then "half" (open loop at half the max throughput). The public-key floor
 * is measured in the same process and run with the same libketen functions
 * the daemons call: the CPU time (thread CPU clock) of each public-key step.
 * Protocol v2 (docs/protocol.md) per signal: seal for R recipients +
 * signature, the broker's envelope verification, per recipient open =
 * verification + unwrap + decryption; per batch: a checkpoint signed by the
 * broker (with the check of its own signature) and verified by a node, a
 * receipt batch head signed by a recipient and verified by the broker and by
 * the sender. The v2 floor per signal counts the per-signal work only (large
 * batches), and once more with one signal per batch (the bound when nothing
 * is batched). The floor of protocol v1 (one ack signature and one receipt
 * signature per message and recipient, each verified) is still measured
 * with the same calls, for comparison: ack = an Ed25519 signature with its
 * self-check over an ack-sized body, and its verification; receipt = a
 * batch of one. Floor throughput = online cores / CPU time per signal.
 *
 * --backlog N: the receivers stay connected and one more node never starts;
 * N signals (1 recipient: that node) are sent to it, and the broker's
 * VmRSS/RssAnon/RssFile/VmHWM (/proc/PID/status) are printed every N/4.
 *
 * Exit code 0 when the runs completed, 1 when something failed (a daemon did
 * not start, a send was refused, messages were not receipted in time), 2 for
 * usage errors, 130 when interrupted. It never fails on time. Every child is
 * stopped at the end (SIGTERM, then SIGKILL after 10 s), also on errors and
 * on SIGINT/SIGTERM; the children also get SIGKILL if this program dies.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#include "dirbuild.h"
#include "directory.h"
#include "envelope.h"
#include "identity.h"
#include "benchnet.h"
#include "checkpoint.h"
#include "keten.h"
#include "merkle.h"
#include "pb.h"
#include "receipt.h"
#include "signal_json.h"
#include "util.h"

#define BX_PROG "keten-bench-exchange"
#define BX_PARTIES_MAX 16
#define BX_PROCS_MAX (2 * BX_PARTIES_MAX + 2)
#define BX_RUNS_MAX 50
#define BX_READY_MS 30000ull
#define BX_DRAIN_MS 60000ull
#define BX_STOP_MS 10000ull
#define BX_OPEN_INFLIGHT_MAX 4096u
#define BX_POLL_MAX_MS 5
#define BX_FLOOR_MIN_NS 100000000ull
#define BX_LINE_MAX 8192
#define BX_STATUS_TIMEOUT_MS 5000
#define BX_HTTP_CONNS_MAX 48 /* connections of a sender to its node (backlog 64) */
#define BX_ANSWER_MAX (1u << 20) /* bytes of one API answer */
#define BX_SOCK_MAX 108 /* sun_path */
#define BX_PCTS 3
#define BX_NAME_WIDTH 30 /* columns of a metric's name in the tables */

static const double pct_values[BX_PCTS] = { 0.50, 0.99, 0.999 };
static const char *const pct_names[BX_PCTS] = { "p50", "p99", "p99.9" };

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
    const char *broker_path;
    const char *node_path;
    const char *json_path;
    const char *store_dir;
    const char *attach_cmd;
    size_t size;
    size_t senders, receivers, recipients;
    double rate; /* 0: max only */
    bool rate_half; /* max, then half of it */
    double duration, warmup;
    unsigned runs;
    unsigned window;
    uint64_t backlog;
    size_t status_sample;
    bool keep;
} opts;

static const char usage_text[]
    = "Usage: " BX_PROG " [OPTIONS]\n"
      "\n"
      "Start a real keten-broker and N sending and M receiving keten-node daemons in a\n"
      "temporary directory, send ~1 KiB signals through the senders' local API, and print\n"
      "the signals/s whose receipts all came back, latencies at half that rate, the\n"
      "daemons' CPU, and the public-key floor of the same work (see the source's header).\n"
      "\n"
      "  --broker PATH      keten-broker to run (default: $KETEN_BROKER, else the one in\n"
      "                     this build tree, else /usr/bin/keten-broker)\n"
      "  --node PATH        keten-node to run (default: $KETEN_NODE, likewise)\n"
      "  --senders N        sending nodes (default 4)\n"
      "  --receivers M      receiving nodes (default 4)\n"
      "  --recipients R     recipients per signal (default 2; at most M)\n"
      "  --size BYTES       signal JSON text size (default 1000: the 1 KiB bucket)\n"
      "  --rate max|half|N  max only; max then half its rate (default); or N signals/s\n"
      "                     in total (open loop)\n"
      "  --duration S       measured seconds per phase (default 10)\n"
      "  --warmup S         seconds of load before the measured ones (default 1)\n"
      "  --runs K           repetitions, each with fresh daemons and stores; medians with\n"
      "                     min-max are printed (default 3)\n"
      "  --window W         signals per sender not yet fully receipted, max phase\n"
      "                     (default 16)\n"
      "  --status-sample N  messages looked up with the status API after an open-loop\n"
      "                     phase for the nodes' own timestamps and the API's round\n"
      "                     trip (default 1000; 0: none)\n"
      "  --backlog N        memory mode: N signals to a node that never starts; print the\n"
      "                     broker's memory every N/4\n"
      "  --store-dir DIR    where the temporary directory (all stores) is made\n"
      "                     (default $TMPDIR or /tmp)\n"
      "  --attach CMD       run CMD (sh -c) during each max phase with KETEN_BROKER_PID,\n"
      "                     KETEN_SENDER_PID and KETEN_RECEIVER_PID set; SIGINT at the end\n"
      "  --json FILE        also write the results as JSON to FILE ('-': stdout)\n"
      "  --keep             keep the temporary directory\n"
      "  --help             show this help\n";

/* ---- the children (for the signal handler) ------------------------------- */

static volatile sig_atomic_t g_pids[BX_PROCS_MAX];
static char **g_child_env = NULL;

/* ---- the network --------------------------------------------------------- */

typedef struct net {
    benchnet bn; /* root, anchor, directory, the broker's identity */
    keten_identity *snd[BX_PARTIES_MAX];
    keten_identity *rcv[BX_PARTIES_MAX];
    keten_identity *offline; /* --backlog: the node that never starts */
    size_t n_snd, n_rcv;
} net;

/* One administrator (threshold 1), an allow-all rule, the broker, the
 * senders s-1.., the receivers r-1.. and the offline o-1; anchor and signed
 * directory written into root. */
static keten_err net_make(net *nt, const opts *o)
{
    benchnet_draft *draft = NULL;
    keten_err e = benchnet_draft_new(&nt->bn, &draft);
    if (e != KETEN_OK) {
        return e;
    }
    nt->n_snd = o->senders;
    nt->n_rcv = o->receivers;
    for (size_t i = 0; i < nt->n_snd; i++) {
        char id[KETEN_NAME_MAX + 1];
        snprintf(id, sizeof id, "s-%zu", i + 1);
        if ((e = benchnet_draft_add(draft, id, "municipality", &nt->snd[i])) != KETEN_OK) {
            goto out;
        }
    }
    for (size_t i = 0; i < nt->n_rcv; i++) {
        char id[KETEN_NAME_MAX + 1];
        snprintf(id, sizeof id, "r-%zu", i + 1);
        if ((e = benchnet_draft_add(draft, id, "police", &nt->rcv[i])) != KETEN_OK) {
            goto out;
        }
    }
    if ((e = benchnet_draft_add(draft, "o-1", "tax", &nt->offline)) != KETEN_OK
        || (e = benchnet_draft_finish(draft, &nt->bn)) != KETEN_OK) {
        goto out;
    }
out:
    benchnet_draft_destroy(&draft);
    return e;
}

static void net_free(net *nt)
{
    for (size_t i = 0; i < BX_PARTIES_MAX; i++) {
        keten_identity_destroy(&nt->snd[i]);
        keten_identity_destroy(&nt->rcv[i]);
    }
    keten_identity_destroy(&nt->offline);
    benchnet_free(&nt->bn);
}

/* ---- child processes ----------------------------------------------------- */

typedef struct proc {
    char name[40];
    char home[PATH_MAX];
    char log_path[PATH_MAX];
    pid_t pid;
    int slot; /* in g_pids */
    int pipe_fd; /* read end of its stderr; -1 when stderr goes to log_path */
    FILE *log; /* copy of what came through the pipe */
    char lbuf[BX_LINE_MAX];
    size_t llen;
    bool eof, connected;
    uint64_t warnings; /* level=warn / level=error lines seen through the pipe */
    char first_warning[240];
    int exit_status; /* -1 while running or unknown */
} proc;

static void on_signal(int sig)
{
    if (benchnet_stop == 0) {
        benchnet_stop = 1; /* the loops notice, and the children are stopped in order */
        return;
    }
    if (benchnet_attach_pid > 0) {
        kill(-(pid_t)benchnet_attach_pid, SIGKILL);
    }
    for (size_t i = 0; i < BX_PROCS_MAX; i++) {
        if (g_pids[i] > 0) {
            kill((pid_t)g_pids[i], SIGKILL);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* The environment for the daemons: ours without KETEN_PASSPHRASE (their key
 * files are unencrypted). Built once, before any fork. */
static void make_child_env(void)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    g_child_env = benchnet_xcalloc(n + 1, sizeof *g_child_env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "KETEN_PASSPHRASE", 16) != 0) {
            g_child_env[k++] = environ[i];
        }
    }
    g_child_env[k] = NULL;
}

static int take_slot(void)
{
    for (int i = 0; i < BX_PROCS_MAX; i++) {
        if (g_pids[i] == 0) {
            return i;
        }
    }
    return -1;
}

/* Start argv (argv[0] a path) with stderr to a pipe (piped) or to p->log_path. */
static keten_err proc_start(proc *p, char *const *argv, bool piped)
{
    p->pid = 0;
    p->pipe_fd = -1;
    p->exit_status = -1;
    p->slot = take_slot();
    if (p->slot < 0) {
        return keten_err_set(KETEN_ERR_INVALID, "too many child processes");
    }
    int errfd = -1, pfd[2] = { -1, -1 };
    if (piped) {
        if (pipe2(pfd, O_CLOEXEC) != 0) {
            return keten_err_set(KETEN_ERR_IO, "pipe: %s", strerror(errno));
        }
        errfd = pfd[1];
        p->log = fopen(p->log_path, "w");
        if (p->log == NULL) {
            close(pfd[0]);
            close(pfd[1]);
            return keten_err_set(KETEN_ERR_IO, "%s: %s", p->log_path, strerror(errno));
        }
    } else {
        errfd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (errfd < 0) {
            return keten_err_set(KETEN_ERR_IO, "%s: %s", p->log_path, strerror(errno));
        }
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t parent = getpid();
    pid_t pid = devnull < 0 ? -1 : fork();
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        (void)setpgid(0, 0); /* out of the terminal's SIGINT: we stop them in order */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        (void)signal(SIGPIPE, SIG_DFL);
        if (dup2(devnull, STDIN_FILENO) < 0 || dup2(devnull, STDOUT_FILENO) < 0
            || dup2(errfd, STDERR_FILENO) < 0) {
            _exit(127);
        }
        execve(argv[0], argv, g_child_env);
        static const char msg[] = BX_PROG ": exec failed\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    int fork_errno = errno;
    if (devnull >= 0) {
        close(devnull);
    }
    close(errfd);
    if (pid < 0) {
        if (piped) {
            close(pfd[0]);
        }
        return keten_err_set(KETEN_ERR_IO, "fork: %s", strerror(fork_errno));
    }
    p->pid = pid;
    g_pids[p->slot] = pid;
    if (piped) {
        p->pipe_fd = pfd[0];
        int fl = fcntl(p->pipe_fd, F_GETFL);
        if (fl < 0 || fcntl(p->pipe_fd, F_SETFL, fl | O_NONBLOCK) != 0) {
            return keten_err_set(KETEN_ERR_IO, "fcntl: %s", strerror(errno));
        }
    }
    return KETEN_OK;
}

typedef void (*line_fn)(void *arg, proc *p, const char *line, uint64_t t_ns);

static void note_warning(proc *p, const char *line)
{
    if (strncmp(line, "level=warn", 10) == 0 || strncmp(line, "level=error", 11) == 0) {
        /* the key-file warning of an unencrypted key is expected here */
        if (strstr(line, "not passphrase-protected") != NULL) {
            return;
        }
        if (p->warnings++ == 0) {
            snprintf(p->first_warning, sizeof p->first_warning, "%s", line);
        }
    }
}

/* Read what the child wrote to its stderr pipe, copy it to its log, and hand
 * each complete line (timestamped at the read) to fn. */
static void proc_pump(proc *p, line_fn fn, void *arg)
{
    if (p->pipe_fd < 0 || p->eof) {
        return;
    }
    for (;;) {
        ssize_t n = read(p->pipe_fd, p->lbuf + p->llen, sizeof p->lbuf - 1 - p->llen);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return; /* EAGAIN: all read */
        }
        if (n == 0) {
            p->eof = true;
            return;
        }
        uint64_t t = benchnet_mono_ns();
        if (p->log != NULL && fwrite(p->lbuf + p->llen, 1, (size_t)n, p->log) != (size_t)n) {
            fclose(p->log);
            p->log = NULL;
        }
        p->llen += (size_t)n;
        size_t start = 0;
        for (size_t i = p->llen - (size_t)n; i < p->llen; i++) {
            if (p->lbuf[i] == '\n') {
                p->lbuf[i] = '\0';
                const char *line = p->lbuf + start;
                if (strstr(line, "msg=\"connected to broker\"") != NULL) {
                    p->connected = true;
                }
                note_warning(p, line);
                if (fn != NULL) {
                    fn(arg, p, line, t);
                }
                start = i + 1;
            }
        }
        memmove(p->lbuf, p->lbuf + start, p->llen - start);
        p->llen -= start;
        if (p->llen >= sizeof p->lbuf - 1) {
            p->llen = 0; /* an overlong line: dropped */
        }
    }
}

static bool proc_reap(proc *p, bool block)
{
    if (p->pid <= 0) {
        return true;
    }
    int status = 0;
    pid_t r = waitpid(p->pid, &status, block ? 0 : WNOHANG);
    if (r == p->pid) {
        p->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        g_pids[p->slot] = 0;
        p->pid = 0;
        return true;
    }
    return false;
}

/* SIGTERM to every running child, then wait (reading their pipes so none
 * blocks on a full one) at most BX_STOP_MS, then SIGKILL. */
static void procs_stop(proc **ps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ps[i]->pid > 0) {
            kill(ps[i]->pid, SIGTERM);
        }
    }
    uint64_t deadline = benchnet_mono_ns() + BX_STOP_MS * BENCHNET_MS;
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n; i++) {
            proc_pump(ps[i], NULL, NULL);
            all = proc_reap(ps[i], false) && all;
        }
        if (all || benchnet_mono_ns() > deadline) {
            break;
        }
        benchnet_sleep_ns(20 * BENCHNET_MS);
    }
    for (size_t i = 0; i < n; i++) {
        if (ps[i]->pid > 0) {
            fprintf(stderr, BX_PROG ": %s did not stop within %llu ms; SIGKILL\n", ps[i]->name,
                (unsigned long long)BX_STOP_MS);
            kill(ps[i]->pid, SIGKILL);
            (void)proc_reap(ps[i], true);
        }
        proc_pump(ps[i], NULL, NULL);
        if (ps[i]->pipe_fd >= 0) {
            close(ps[i]->pipe_fd);
            ps[i]->pipe_fd = -1;
        }
        if (ps[i]->log != NULL) {
            fclose(ps[i]->log);
            ps[i]->log = NULL;
        }
    }
}

static double proc_cpu(const proc *p)
{
    benchnet_proc_stat ps;
    return p->pid > 0 && benchnet_proc_read(p->pid, &ps) ? ps.cpu_s : 0.0;
}

/* ---- the exchange: broker and nodes of one repetition --------------------- */

typedef struct exch {
    char dir[PATH_MAX];
    char endpoint[PATH_MAX + 16];
    proc broker;
    proc snd[BX_PARTIES_MAX];
    proc rcv[BX_PARTIES_MAX];
    size_t n_snd, n_rcv;
    proc *all[BX_PROCS_MAX];
    size_t n_all;
} exch;

static keten_err make_home(proc *p, const char *dir, const char *name, const keten_identity *id)
{
    char key[PATH_MAX];
    keten_err e;
    snprintf(p->name, sizeof p->name, "%s", name);
    if ((e = benchnet_path_in(dir, name, p->home)) != KETEN_OK
        || (e = keten_mkdir(p->home, 0700)) != KETEN_OK
        || (e = benchnet_path_in(p->home, "identity.secret", key)) != KETEN_OK
        || (e = keten_identity_save(id, key, NULL, 0)) != KETEN_OK) {
        return e;
    }
    if (snprintf(p->log_path, sizeof p->log_path, "%s.log", p->home) >= (int)sizeof p->log_path) {
        return keten_err_set(KETEN_ERR_INVALID, "path %s.log is too long", p->home);
    }
    return KETEN_OK;
}

static keten_err start_node(exch *x, const opts *o, const net *nt, proc *p, bool piped)
{
    char *argv[] = { (char *)o->node_path, (char *)"run", (char *)"--home", p->home,
        (char *)"--anchor", (char *)nt->bn.anchor_path, (char *)"--directory",
        (char *)nt->bn.dir_path, (char *)"--broker", x->endpoint, NULL };
    keten_err e = proc_start(p, argv, piped);
    if (e == KETEN_OK) {
        x->all[x->n_all++] = p;
    }
    return e;
}

/* A fresh directory k<rep> with homes for all; the broker, then the nodes;
 * wait until every node is connected. */
static keten_err exch_start(exch *x, const opts *o, const net *nt, unsigned rep)
{
    keten_err e;
    char name[32];
    snprintf(name, sizeof name, "k%u", rep + 1);
    x->n_snd = nt->n_snd;
    x->n_rcv = nt->n_rcv;
    for (size_t i = 0; i < BX_PROCS_MAX; i++) {
        x->all[i] = NULL;
    }
    if ((e = benchnet_path_in(nt->bn.root, name, x->dir)) != KETEN_OK
        || (e = keten_mkdir(x->dir, 0700)) != KETEN_OK
        || (e = make_home(&x->broker, x->dir, "broker", nt->bn.broker)) != KETEN_OK) {
        return e;
    }
    for (size_t i = 0; i < x->n_snd; i++) {
        if ((e = make_home(&x->snd[i], x->dir, nt->snd[i]->id, nt->snd[i])) != KETEN_OK) {
            return e;
        }
    }
    for (size_t i = 0; i < x->n_rcv; i++) {
        if ((e = make_home(&x->rcv[i], x->dir, nt->rcv[i]->id, nt->rcv[i])) != KETEN_OK) {
            return e;
        }
    }
    if (snprintf(x->endpoint, sizeof x->endpoint, "ipc://%s/broker.ipc", x->dir)
        >= (int)sizeof x->endpoint) {
        return keten_err_set(KETEN_ERR_INVALID, "endpoint path too long");
    }
    char map_arg[32];
    snprintf(map_arg, sizeof map_arg, "%llu", o->backlog > 0 ? 8ull << 30 : 2ull << 30);
    const char *bargv[BENCHNET_BROKER_ARGC + 3];
    size_t bn_args
        = benchnet_broker_argv(bargv, o->broker_path, x->broker.home, &nt->bn, x->endpoint);
    bargv[bn_args++] = "--map-size";
    bargv[bn_args++] = map_arg;
    bargv[bn_args] = NULL;
    if ((e = proc_start(&x->broker, (char *const *)bargv, false)) != KETEN_OK) {
        return e;
    }
    x->all[x->n_all++] = &x->broker;
    uint64_t deadline = benchnet_mono_ns() + BX_READY_MS * BENCHNET_MS;
    while (!benchnet_log_has(x->broker.log_path, "msg=\"broker running\"")) {
        if (proc_reap(&x->broker, false)) {
            benchnet_show_log("broker", x->broker.log_path);
            return keten_err_set(
                KETEN_ERR_IO, "the broker exited at start (status %d)", x->broker.exit_status);
        }
        if (benchnet_mono_ns() > deadline || benchnet_stop) {
            benchnet_show_log("broker", x->broker.log_path);
            return keten_err_set(KETEN_ERR_IO, "the broker did not start");
        }
        benchnet_sleep_ns(20 * BENCHNET_MS);
    }
    for (size_t i = 0; i < x->n_rcv; i++) {
        if ((e = start_node(x, o, nt, &x->rcv[i], false)) != KETEN_OK) {
            return e;
        }
    }
    for (size_t i = 0; i < x->n_snd; i++) {
        if ((e = start_node(x, o, nt, &x->snd[i], true)) != KETEN_OK) {
            return e;
        }
    }
    deadline = benchnet_mono_ns() + BX_READY_MS * BENCHNET_MS;
    for (;;) {
        size_t ready = 0;
        for (size_t i = 0; i < x->n_snd; i++) {
            proc_pump(&x->snd[i], NULL, NULL);
            ready += x->snd[i].connected;
        }
        for (size_t i = 0; i < x->n_rcv; i++) {
            if (!x->rcv[i].connected
                && benchnet_log_has(x->rcv[i].log_path, "msg=\"connected to broker\"")) {
                x->rcv[i].connected = true;
            }
            ready += x->rcv[i].connected;
        }
        if (ready == x->n_snd + x->n_rcv) {
            break;
        }
        for (size_t i = 0; i < x->n_all; i++) {
            if (proc_reap(x->all[i], false)) {
                benchnet_show_log(x->all[i]->name, x->all[i]->log_path);
                return keten_err_set(KETEN_ERR_IO, "%s exited at start (status %d)",
                    x->all[i]->name, x->all[i]->exit_status);
            }
        }
        if (benchnet_mono_ns() > deadline || benchnet_stop) {
            return keten_err_set(KETEN_ERR_IO, "not every node connected within %llu ms",
                (unsigned long long)BX_READY_MS);
        }
        benchnet_sleep_ns(20 * BENCHNET_MS);
    }
    /* let the first checkpoint and directory exchange pass */
    uint64_t settle = benchnet_mono_ns() + 1000 * BENCHNET_MS;
    while (benchnet_mono_ns() < settle && !benchnet_stop) {
        for (size_t i = 0; i < x->n_snd; i++) {
            proc_pump(&x->snd[i], NULL, NULL);
        }
        benchnet_sleep_ns(20 * BENCHNET_MS);
    }
    return KETEN_OK;
}

/* Stops every child; returns how many did not exit 0. */
static size_t exch_stop(exch *x)
{
    procs_stop(x->all, x->n_all);
    size_t bad = 0;
    for (size_t i = 0; i < x->n_all; i++) {
        if (x->all[i]->exit_status != 0) {
            fprintf(stderr, BX_PROG ": %s exited with status %d (log %s)\n", x->all[i]->name,
                x->all[i]->exit_status, x->all[i]->log_path);
            bad++;
        }
    }
    x->n_all = 0;
    return bad;
}

/* --attach: sh -c CMD in its own process group. */
static pid_t attach_start(const char *cmd, const exch *x)
{
    if (cmd == NULL) {
        return 0;
    }
    char v[32];
    snprintf(v, sizeof v, "%d", (int)x->broker.pid);
    (void)setenv("KETEN_BROKER_PID", v, 1); /* before fork: the child only execs */
    snprintf(v, sizeof v, "%d", (int)x->snd[0].pid);
    (void)setenv("KETEN_SENDER_PID", v, 1);
    snprintf(v, sizeof v, "%d", (int)x->rcv[0].pid);
    (void)setenv("KETEN_RECEIVER_PID", v, 1);
    return benchnet_attach_start(cmd, true);
}

/* ---- the load: one thread per sending node -------------------------------- */

typedef struct msg_ent {
    uint8_t id[KETEN_MSG_ID_BYTES];
    uint64_t t_sched, t_send, t_reply, t_ack, t_rcpt; /* mono ns; 0: not yet */
    uint32_t rmask; /* receivers whose receipt is back */
    bool replied, done;
} msg_ent;

/* One request on its way: the easy handle (kept for the next request, so
 * that its connection stays in the multi handle's cache), when it was due
 * and sent, and the answer's bytes. */
typedef struct bx_req {
    CURL *easy;
    uint64_t t_sched, t_send;
    char *buf;
    size_t len, cap;
    bool too_large;
} bx_req;

static atomic_uint_fast64_t g_acked; /* --backlog: acks over all senders */

typedef struct sender_thr {
    /* in */
    size_t index;
    proc *node;
    char *const *requests; /* by recipient set */
    size_t n_requests;
    size_t need; /* receipts per message; 0: done at the ack */
    double rate; /* this sender's signals/s; 0: closed loop */
    unsigned window;
    uint64_t start, win_start, win_end, stop_send, drain_until;
    uint64_t max_msgs; /* 0: until stop_send */
    /* state */
    msg_ent *ents;
    size_t n_ents, cap_ents;
    uint32_t *table;
    size_t mask;
    CURLM *multi;
    struct curl_slist *headers;
    bx_req *reqs; /* in_cap of them */
    bx_req **idle; /* the ones not in flight */
    size_t in_cap, n_idle, n_made;
    /* out */
    uint64_t sent, replied, acked, done, failed, rcpts, done_in_window, acked_in_window;
    uint64_t late_max_ns;
    bool complete, node_died;
    char first_error[300];
} sender_thr;

static void table_rebuild(sender_thr *s)
{
    size_t cap = 64;
    while (cap < 2 * s->cap_ents) {
        cap <<= 1;
    }
    free(s->table);
    s->table = benchnet_xcalloc(cap, sizeof *s->table);
    s->mask = cap - 1;
    for (size_t i = 0; i < s->n_ents; i++) {
        size_t h = (size_t)benchnet_id_key(s->ents[i].id) & s->mask;
        while (s->table[h] != 0) {
            h = (h + 1) & s->mask;
        }
        s->table[h] = (uint32_t)(i + 1);
    }
}

static msg_ent *ent_get(sender_thr *s, const uint8_t id[static KETEN_MSG_ID_BYTES])
{
    size_t h = (size_t)benchnet_id_key(id) & s->mask;
    for (;; h = (h + 1) & s->mask) {
        uint32_t v = s->table[h];
        if (v == 0) {
            break;
        }
        if (memcmp(s->ents[v - 1].id, id, KETEN_MSG_ID_BYTES) == 0) {
            return &s->ents[v - 1];
        }
    }
    if (s->n_ents == s->cap_ents) {
        size_t ncap = s->cap_ents * 2;
        msg_ent *n = realloc(s->ents, ncap * sizeof *n);
        if (n == NULL) {
            fprintf(stderr, BX_PROG ": out of memory\n");
            exit(1);
        }
        s->ents = n;
        s->cap_ents = ncap;
        table_rebuild(s);
        h = (size_t)benchnet_id_key(id) & s->mask;
        while (s->table[h] != 0) {
            h = (h + 1) & s->mask;
        }
    }
    msg_ent *e = &s->ents[s->n_ents++];
    memset(e, 0, sizeof *e);
    memcpy(e->id, id, KETEN_MSG_ID_BYTES);
    s->table[h] = (uint32_t)s->n_ents;
    return e;
}

static void check_done(sender_thr *s, msg_ent *e)
{
    if (e->done || !e->replied) {
        return;
    }
    uint64_t t_done = 0;
    if (s->need == 0) {
        t_done = e->t_ack;
    } else if ((size_t)__builtin_popcount(e->rmask) >= s->need) {
        t_done = e->t_rcpt;
    }
    if (t_done == 0) {
        return;
    }
    e->done = true;
    s->done++;
    if (t_done >= s->win_start && t_done < s->win_end) {
        s->done_in_window++;
    }
}

static void set_error(sender_thr *s, const char *fmt, ...) KETEN_PRINTF(2, 3);

static void set_error(sender_thr *s, const char *fmt, ...)
{
    if (s->first_error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(s->first_error, sizeof s->first_error, fmt, ap);
        va_end(ap);
    }
}

/* "msg_id=" followed by 32 hex digits. */
static bool parse_id(const char *p, uint8_t out[static KETEN_MSG_ID_BYTES])
{
    char hex[KETEN_MSG_ID_HEX_BYTES];
    if (strncmp(p, "msg_id=", 7) != 0 || strspn(p + 7, "0123456789abcdef") < 32) {
        return false;
    }
    memcpy(hex, p + 7, 32);
    hex[32] = '\0';
    return keten_unhex(hex, out, KETEN_MSG_ID_BYTES) == KETEN_OK;
}

/* A line of the sending node's log (client/outbox.c writes these after the
 * commit of an ack whose proof verified and of a verified receipt notice). */
static void sender_line(void *arg, proc *p, const char *line, uint64_t t)
{
    (void)p;
    sender_thr *s = arg;
    static const char ack_tag[] = "msg=\"message accepted (proven in the log)\" ";
    static const char rcpt_tag[] = " msg=receipt ";
    uint8_t id[KETEN_MSG_ID_BYTES];
    const char *q = strstr(line, rcpt_tag);
    if (q != NULL && parse_id(q + sizeof rcpt_tag - 1, id)) {
        const char *who = strstr(q, " node=r-");
        unsigned long k = who != NULL ? strtoul(who + 8, NULL, 10) : 0;
        if (k < 1 || k > 32) {
            return;
        }
        msg_ent *e = ent_get(s, id);
        uint32_t bit = 1u << (k - 1);
        if ((e->rmask & bit) == 0) {
            e->rmask |= bit;
            e->t_rcpt = t;
            s->rcpts++;
            check_done(s, e);
        }
        return;
    }
    q = strstr(line, ack_tag);
    if (q != NULL && parse_id(q + sizeof ack_tag - 1, id)) {
        msg_ent *e = ent_get(s, id);
        if (e->t_ack == 0) {
            e->t_ack = t;
            s->acked++;
            atomic_fetch_add(&g_acked, 1);
            if (t >= s->win_start && t < s->win_end) {
                s->acked_in_window++;
            }
            check_done(s, e);
        }
        return;
    }
    if (strstr(line, "msg=\"message refused by broker\"") != NULL
        || strstr(line, "msg=\"refused by recipient\"") != NULL
        || strstr(line, "msg=ALARM ") != NULL) {
        set_error(s, "%s", line);
    }
}

/* libcurl's write callback: the answer's bytes, at most BX_ANSWER_MAX. */
static size_t on_answer(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    bx_req *q = userdata;
    size_t n = size * nmemb;
    if (n > BX_ANSWER_MAX - q->len) {
        q->too_large = true;
        return 0;
    }
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap == 0 ? 512 : q->cap;
        while (cap < q->len + n + 1) {
            cap *= 2;
        }
        char *b = realloc(q->buf, cap);
        if (b == NULL) {
            return 0;
        }
        q->buf = b;
        q->cap = cap;
    }
    memcpy(q->buf + q->len, ptr, n);
    q->len += n;
    q->buf[q->len] = '\0';
    return n;
}

/* An easy handle for the node's API: the Unix socket, the URL, the headers;
 * the body is set per request. NULL when libcurl refuses. */
static CURL *api_easy(const char *sock, const char *url, struct curl_slist *headers, bx_req *q)
{
    CURL *c = curl_easy_init();
    if (c == NULL) {
        return NULL;
    }
    if (curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_PROXY, "") != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_answer) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_WRITEDATA, q) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_PRIVATE, q) != CURLE_OK) {
        curl_easy_cleanup(c);
        return NULL;
    }
    return c;
}

/* The node's answer to a send: 202 {"msg_id", "state": "pending"}, or a
 * problem (application/problem+json) whose detail says why. */
static void sender_reply(sender_thr *s, bx_req *q, CURLcode cc, uint64_t t)
{
    long status = 0;
    (void)curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    json_error_t jerr;
    json_t *r = cc == CURLE_OK && q->len > 0 ? json_loadb(q->buf, q->len, 0, &jerr) : NULL;
    const char *hex = json_string_value(json_object_get(r, "msg_id"));
    uint8_t id[KETEN_MSG_ID_BYTES];
    if (cc != CURLE_OK || status != 202 || hex == NULL || strlen(hex) != 32
        || keten_unhex(hex, id, sizeof id) != KETEN_OK) {
        const char *why = json_string_value(json_object_get(r, "detail"));
        if (cc != CURLE_OK) {
            set_error(s, "the node's API: %s",
                q->too_large ? "answer too large" : curl_easy_strerror(cc));
        } else {
            set_error(s, "the node refused a send (HTTP %ld): %s", status,
                why != NULL ? why : "(no answer text)");
        }
        s->failed++;
        json_decref(r);
        return;
    }
    json_decref(r);
    msg_ent *e = ent_get(s, id);
    e->t_sched = q->t_sched;
    e->t_send = q->t_send;
    e->t_reply = t;
    e->replied = true;
    s->replied++;
    check_done(s, e);
}

/* Every finished request: its answer, and its handle back to the idle ones. */
static bool sender_recv(sender_thr *s)
{
    int left = 0;
    CURLMsg *m;
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        uint64_t t = benchnet_mono_ns();
        CURL *easy = m->easy_handle;
        CURLcode cc = m->data.result;
        bx_req *q = NULL;
        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&q) != CURLE_OK || q == NULL) {
            set_error(s, "%s", "a finished request that is not ours");
            return false;
        }
        (void)curl_multi_remove_handle(s->multi, easy);
        sender_reply(s, q, cc, t);
        s->idle[s->n_idle++] = q;
    }
    return true;
}

static bool sender_send(sender_thr *s, uint64_t i, uint64_t t_sched)
{
    if (s->n_idle == 0 && s->n_made == s->in_cap) {
        return false;
    }
    bx_req *q = s->n_idle > 0 ? s->idle[--s->n_idle] : &s->reqs[s->n_made++];
    if (q->easy == NULL) {
        char sock[BX_SOCK_MAX];
        if (snprintf(sock, sizeof sock, "%s/api.sock", s->node->home) >= (int)sizeof sock) {
            set_error(s, "the API socket path %s/api.sock is too long", s->node->home);
            s->idle[s->n_idle++] = q;
            return false;
        }
        q->easy = api_easy(sock, "http://localhost/v1/messages", s->headers, q);
        if (q->easy == NULL) {
            set_error(s, "%s", "libcurl refused an easy handle");
            s->idle[s->n_idle++] = q;
            return false;
        }
    }
    const char *req = s->requests[(s->index + i) % s->n_requests];
    q->len = 0;
    q->too_large = false;
    if (curl_easy_setopt(q->easy, CURLOPT_POSTFIELDS, req) != CURLE_OK
        || curl_easy_setopt(q->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(req))
            != CURLE_OK
        || curl_multi_add_handle(s->multi, q->easy) != CURLM_OK) {
        set_error(s, "%s", "cannot start a request to the API");
        s->idle[s->n_idle++] = q;
        return false;
    }
    uint64_t now = benchnet_mono_ns();
    q->t_sched = t_sched;
    q->t_send = now;
    s->sent++;
    if (now > t_sched && now - t_sched > s->late_max_ns) {
        s->late_max_ns = now - t_sched;
    }
    return true;
}

static void *sender_main(void *arg)
{
    sender_thr *s = arg;
    uint64_t cap = s->rate > 0 ? BX_OPEN_INFLIGHT_MAX : s->window;
    long conns = cap < BX_HTTP_CONNS_MAX ? (long)cap : BX_HTTP_CONNS_MAX;
    s->in_cap = (size_t)cap;
    s->reqs = benchnet_xcalloc(s->in_cap, sizeof *s->reqs);
    s->idle = benchnet_xcalloc(s->in_cap, sizeof *s->idle);
    s->multi = curl_multi_init();
    struct curl_slist *h1 = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h1 != NULL ? curl_slist_append(h1, "Expect:") : NULL;
    s->headers = h2 != NULL ? h2 : h1;
    if (s->multi == NULL || h2 == NULL
        || curl_multi_setopt(s->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns) != CURLM_OK
        || curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns) != CURLM_OK
        || curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, conns) != CURLM_OK) {
        set_error(s, "%s", "cannot set up libcurl's multi interface");
        return NULL;
    }
    double interval = s->rate > 0 ? 1e9 / s->rate : 0;
    uint64_t i = 0;
    while (!benchnet_stop) {
        uint64_t now = benchnet_mono_ns();
        uint64_t next_due = 0;
        bool sending = now < s->stop_send && (s->max_msgs == 0 || s->sent < s->max_msgs);
        if (sending) {
            while (s->max_msgs == 0 || s->sent < s->max_msgs) {
                uint64_t inflight = s->sent - s->done - s->failed;
                uint64_t due = s->rate > 0 ? s->start + (uint64_t)((double)i * interval) : now;
                if (due > now) {
                    next_due = due;
                    break;
                }
                if (inflight >= cap || !sender_send(s, i, due)) {
                    break;
                }
                i++;
            }
        } else if (s->sent == s->done + s->failed) {
            s->complete = true;
            break;
        } else if (now > s->drain_until) {
            break;
        }
        int timeout = BX_POLL_MAX_MS;
        if (next_due > now) {
            uint64_t ms = (next_due - now + BENCHNET_MS - 1) / BENCHNET_MS;
            timeout = ms < (uint64_t)timeout ? (int)ms : timeout;
        }
        struct curl_waitfd pipe_wait = { s->node->pipe_fd, CURL_WAIT_POLLIN, 0 };
        int running = 0;
        CURLMcode mc = curl_multi_poll(s->multi, s->node->pipe_fd >= 0 ? &pipe_wait : NULL,
            s->node->pipe_fd >= 0, timeout, NULL);
        if (mc == CURLM_OK) {
            mc = curl_multi_perform(s->multi, &running);
        }
        if (mc != CURLM_OK) {
            set_error(s, "libcurl: %s", curl_multi_strerror(mc));
            break;
        }
        if (!sender_recv(s)) {
            break;
        }
        /* The log pipe is non-blocking: read it whether or not poll saw it. */
        proc_pump(s->node, sender_line, s);
        if (s->node->eof) {
            s->node_died = true;
            set_error(s, "node %s closed its log (it exited)", s->node->name);
            break;
        }
    }
    return NULL;
}

static void sender_free(sender_thr *s)
{
    for (size_t i = 0; i < s->n_made; i++) {
        if (s->reqs[i].easy != NULL) {
            if (s->multi != NULL) {
                (void)curl_multi_remove_handle(s->multi, s->reqs[i].easy);
            }
            curl_easy_cleanup(s->reqs[i].easy);
        }
        free(s->reqs[i].buf);
    }
    if (s->multi != NULL) {
        (void)curl_multi_cleanup(s->multi);
    }
    curl_slist_free_all(s->headers);
    free(s->reqs);
    free(s->idle);
    free(s->ents);
    free(s->table);
    s->reqs = NULL;
    s->idle = NULL;
    s->multi = NULL;
    s->headers = NULL;
    s->n_made = s->n_idle = 0;
    s->ents = NULL;
    s->table = NULL;
}

/* ---- the public-key floor ------------------------------------------------- */

typedef struct floor_result {
    double seal_us; /* keten_envelope_seal: R crypto_box_seal + Ed25519 sign */
    double env_verify_us; /* broker: keten_envelope_verify */
    double open_us; /* recipient: keten_envelope_open (verify, unwrap, decrypt) */
    /* Protocol v1, still measured: a receipt per message = a batch of one */
    double rc_sign_us; /* recipient: keten_receipt_batch_new of one leaf */
    double rc_verify_us; /* broker: keten_receipt_batch_verify of one leaf */
    double ack_sign_us; /* broker: Ed25519 sign + self-check, ack-sized body */
    double ack_verify_us; /* sender: Ed25519 verify of it */
    double listed_us; /* seal + env verify + R (2 rc verify + open + rc sign) */
    double all_us; /* listed + ack sign + ack verify */
    double listed_per_s, all_per_s; /* cores / per-signal time */
    /* Protocol v2 */
    double cp_sign_us; /* broker: keten_checkpoint_sign (which checks its own note) */
    double cp_verify_us; /* node: keten_checkpoint_open + consistency proof */
    double head_sign_us; /* recipient: keten_receipt_batch_new (the head's signature) */
    double head_verify_us; /* broker, sender: keten_receipt_head_verify */
    double v2_us; /* seal + env verify + R open (batch work shared by many) */
    double v2_batch1_us; /* v2 + (1 + R)(cp sign + cp verify) + R (head sign + 2 verify) */
    double v2_per_s, v2_batch1_per_s; /* cores / per-signal time */
} floor_result;

typedef struct floor_ctx {
    const net *nt;
    const char *to[KETEN_MAX_RECIPIENTS];
    size_t n_to;
    uint8_t *payload;
    size_t payload_len;
    uint8_t *env;
    size_t env_len;
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t env_hash[KETEN_HASH_BYTES];
    keten_receipt_batch *rc; /* a batch of one leaf, by rcv[0] */
    const Keten__NodeCert *rc_cert;
    uint8_t ack[200]; /* an ack-sized body (v1: network, msg_id, hash, leaf, time) */
    uint8_t ack_sig[KETEN_SIG_BYTES];
    keten_checkpoint cp; /* a checkpoint and its consistency proof from a smaller tree */
    char *note;
    uint64_t cp_old;
    keten_hash cp_old_root;
    keten_hash cons[KETEN_MERKLE_MAX_PROOF];
    size_t n_cons;
    uint64_t now;
    uint64_t serial;
} floor_ctx;

typedef keten_err (*floor_op)(floor_ctx *c);

static keten_err op_seal(floor_ctx *c)
{
    keten_envelope_seal_params sp = {
        .kind = KETEN__KIND__KIND_SIGNAL,
        .category = BENCHNET_CATEGORY,
        .purpose = BENCHNET_PURPOSE,
        .created_at = c->now,
        .expires_at = c->now + 7 * KETEN_MS_PER_DAY,
    };
    uint8_t id[KETEN_MSG_ID_BYTES], *out = NULL;
    size_t len = 0;
    keten_err e = keten_envelope_seal(c->nt->snd[0], c->nt->bn.dir, c->to, c->n_to, &sp, c->payload,
        c->payload_len, id, &out, &len);
    free(out);
    return e;
}

static keten_err op_env_verify(floor_ctx *c)
{
    keten_envelope_verified *v = NULL;
    keten_err e = keten_envelope_verify(c->nt->bn.dir, c->env, c->env_len, &v);
    keten_envelope_verified_destroy(&v);
    return e;
}

static keten_err op_open(floor_ctx *c)
{
    keten_envelope_verified *v = NULL;
    Keten__Signal *sig = NULL;
    keten_err e
        = keten_envelope_open(c->nt->rcv[0], c->nt->bn.dir, c->env, c->env_len, c->now, &v, &sig);
    keten_signal_json_free(&sig);
    keten_envelope_verified_destroy(&v);
    return e;
}

static keten_err op_rc_sign(floor_ctx *c)
{
    keten_receipt_batch *b = NULL;
    keten_receipt_item it
        = { .outcome = KETEN__OUTCOME__OUTCOME_STORED, .reason = KETEN__REASON__REASON_NONE };
    memcpy(it.msg_id, c->msg_id, KETEN_MSG_ID_BYTES);
    memcpy(it.envelope_hash, c->env_hash, KETEN_HASH_BYTES);
    keten_err e
        = keten_receipt_batch_new(c->nt->rcv[0], BENCHNET_NETWORK, c->serial, c->now, &it, 1, &b);
    keten_receipt_batch_destroy(&b);
    return e;
}

static keten_err op_rc_verify(floor_ctx *c)
{
    Keten__ReceiptBatchHead *head = NULL;
    keten_hash *lh = NULL;
    keten_err e = keten_receipt_batch_verify(c->rc_cert, BENCHNET_NETWORK, &c->rc->msg, &head, &lh);
    free(lh);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    return e;
}

static keten_err op_head_verify(floor_ctx *c)
{
    Keten__ReceiptBatchHead *head = NULL;
    ProtobufCBinaryData sig = { KETEN_SIG_BYTES, c->rc->signature };
    ProtobufCBinaryData hb = { c->rc->head_len, c->rc->head };
    keten_err e = keten_receipt_head_verify(c->rc_cert, BENCHNET_NETWORK, &hb, &sig, &head);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    return e;
}

static keten_err op_ack_sign(floor_ctx *c)
{
    uint8_t sig[KETEN_SIG_BYTES];
    if (crypto_sign_detached(sig, NULL, c->ack, sizeof c->ack, c->nt->bn.broker->log_sk) != 0
        || crypto_sign_verify_detached(sig, c->ack, sizeof c->ack, c->nt->bn.broker->log_pk) != 0) {
        return keten_err_set(KETEN_ERR_CRYPTO, "ack-sized signature");
    }
    return KETEN_OK;
}

static keten_err op_ack_verify(floor_ctx *c)
{
    return crypto_sign_verify_detached(c->ack_sig, c->ack, sizeof c->ack, c->nt->bn.broker->log_pk)
            == 0
        ? KETEN_OK
        : keten_err_set(KETEN_ERR_BAD_SIGNATURE, "ack-sized signature");
}

static keten_err op_cp_sign(floor_ctx *c)
{
    char *note = NULL;
    keten_err e
        = keten_checkpoint_sign(&c->cp, c->nt->bn.broker->id, c->nt->bn.broker->log_sk, &note);
    free(note);
    return e;
}

static keten_err op_cp_verify(floor_ctx *c)
{
    keten_checkpoint cp;
    keten_err e = keten_checkpoint_open(
        c->note, strlen(c->note), c->nt->bn.broker->id, c->nt->bn.broker->log_pk, &cp);
    if (e == KETEN_OK) {
        e = keten_merkle_verify_consistency(
            c->cp_old, cp.size, c->cp_old_root, cp.root, (const keten_hash *)c->cons, c->n_cons);
    }
    return e;
}

/* CPU time of this thread per call of op, in µs: median of 3 timings of at
 * least BX_FLOOR_MIN_NS each. */
static keten_err time_op(floor_op op, floor_ctx *c, double *us)
{
    double t[3];
    for (int k = 0; k < 3; k++) {
        uint64_t start = benchnet_thread_cpu_ns(), n = 0;
        do {
            keten_err e = op(c);
            if (e != KETEN_OK) {
                return e;
            }
            n++;
        } while (benchnet_thread_cpu_ns() - start < BX_FLOOR_MIN_NS);
        t[k] = (double)(benchnet_thread_cpu_ns() - start) / 1e3 / (double)n;
    }
    qsort(t, 3, sizeof t[0], benchnet_cmp_double);
    *us = t[1];
    return KETEN_OK;
}

static keten_err measure_floor(const net *nt, const char *signal_json, size_t R, floor_result *fr)
{
    memset(fr, 0, sizeof *fr);
    floor_ctx c;
    memset(&c, 0, sizeof c);
    c.nt = nt;
    c.n_to = R;
    c.now = keten_now_ms();
    for (size_t i = 0; i < R; i++) {
        c.to[i] = nt->rcv[i]->id;
    }
    const Keten__NodeCert *cert = keten_directory_find_id(nt->bn.dir, nt->rcv[0]->id);
    if (cert == NULL) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "no certificate for %s", nt->rcv[0]->id);
    }
    c.serial = cert->serial;
    Keten__Signal *sig = NULL;
    keten_envelope_seal_params sp = {
        .kind = KETEN__KIND__KIND_SIGNAL,
        .category = BENCHNET_CATEGORY,
        .purpose = BENCHNET_PURPOSE,
        .created_at = c.now,
        .expires_at = c.now + 7 * KETEN_MS_PER_DAY,
    };
    /* the payload as the node makes it: JSON -> Signal -> protobuf */
    keten_err e = keten_signal_json_parse(signal_json, strlen(signal_json), &sig);
    if (e == KETEN_OK) {
        e = keten_signal_json_pack(sig, &c.payload, &c.payload_len);
    }
    keten_signal_json_free(&sig);
    if (e == KETEN_OK) {
        e = keten_envelope_seal(nt->snd[0], nt->bn.dir, c.to, R, &sp, c.payload, c.payload_len,
            c.msg_id, &c.env, &c.env_len);
    }
    c.rc_cert = cert;
    if (e == KETEN_OK) {
        crypto_hash_sha256(c.env_hash, c.env, c.env_len);
        keten_receipt_item it
            = { .outcome = KETEN__OUTCOME__OUTCOME_STORED, .reason = KETEN__REASON__REASON_NONE };
        memcpy(it.msg_id, c.msg_id, KETEN_MSG_ID_BYTES);
        memcpy(it.envelope_hash, c.env_hash, KETEN_HASH_BYTES);
        e = keten_receipt_batch_new(nt->rcv[0], BENCHNET_NETWORK, c.serial, c.now, &it, 1, &c.rc);
    }
    if (e == KETEN_OK) {
        randombytes_buf(c.ack, sizeof c.ack);
        if (crypto_sign_detached(c.ack_sig, NULL, c.ack, sizeof c.ack, nt->bn.broker->log_sk)
            != 0) {
            e = keten_err_set(KETEN_ERR_CRYPTO, "ack-sized signature");
        }
    }
    if (e == KETEN_OK) {
        /* A checkpoint of 100,000 leaves and its proof from 99,000: a proof
         * as long as those of a log of that size. */
        enum { CP_LEAVES = 100000, CP_OLD = 99000 };
        keten_hash *lh = calloc(CP_LEAVES, sizeof *lh);
        if (lh == NULL) {
            e = keten_err_set(KETEN_ERR_NOMEM, "checkpoint leaves");
        } else {
            for (size_t i = 0; i < CP_LEAVES; i++) {
                memcpy(lh[i], &i, sizeof i);
            }
            snprintf(c.cp.origin, sizeof c.cp.origin, "keten/%s", BENCHNET_NETWORK);
            c.cp.size = CP_LEAVES;
            keten_merkle_root((const keten_hash *)lh, CP_LEAVES, c.cp.root);
            keten_merkle_root((const keten_hash *)lh, CP_OLD, c.cp_old_root);
            c.cp_old = CP_OLD;
            c.cp.dir_version = keten_directory_version(nt->bn.dir);
            memcpy(c.cp.dir_hash, keten_directory_hash(nt->bn.dir), KETEN_HASH_BYTES);
            e = keten_merkle_consistency_proof(
                (const keten_hash *)lh, CP_OLD, CP_LEAVES, c.cons, &c.n_cons);
            free(lh);
        }
        if (e == KETEN_OK) {
            e = keten_checkpoint_sign(&c.cp, nt->bn.broker->id, nt->bn.broker->log_sk, &c.note);
        }
    }
    if (e == KETEN_OK && (e = time_op(op_seal, &c, &fr->seal_us)) == KETEN_OK
        && (e = time_op(op_env_verify, &c, &fr->env_verify_us)) == KETEN_OK
        && (e = time_op(op_open, &c, &fr->open_us)) == KETEN_OK
        && (e = time_op(op_rc_sign, &c, &fr->rc_sign_us)) == KETEN_OK
        && (e = time_op(op_rc_verify, &c, &fr->rc_verify_us)) == KETEN_OK
        && (e = time_op(op_ack_sign, &c, &fr->ack_sign_us)) == KETEN_OK
        && (e = time_op(op_ack_verify, &c, &fr->ack_verify_us)) == KETEN_OK
        && (e = time_op(op_cp_sign, &c, &fr->cp_sign_us)) == KETEN_OK
        && (e = time_op(op_cp_verify, &c, &fr->cp_verify_us)) == KETEN_OK
        && (e = time_op(op_head_verify, &c, &fr->head_verify_us)) == KETEN_OK) {
        double r = (double)R;
        fr->listed_us = fr->seal_us + fr->env_verify_us
            + r * (2 * fr->rc_verify_us + fr->open_us + fr->rc_sign_us);
        fr->all_us = fr->listed_us + fr->ack_sign_us + fr->ack_verify_us;
        fr->listed_per_s = (double)benchnet_cpu_count() * 1e6 / fr->listed_us;
        fr->all_per_s = (double)benchnet_cpu_count() * 1e6 / fr->all_us;
        /* The head's signature is the whole public-key work of a batch. */
        fr->head_sign_us = fr->rc_sign_us;
        fr->v2_us = fr->seal_us + fr->env_verify_us + r * fr->open_us;
        fr->v2_batch1_us = fr->v2_us + (1 + r) * (fr->cp_sign_us + fr->cp_verify_us)
            + r * (fr->head_sign_us + 2 * fr->head_verify_us);
        fr->v2_per_s = (double)benchnet_cpu_count() * 1e6 / fr->v2_us;
        fr->v2_batch1_per_s = (double)benchnet_cpu_count() * 1e6 / fr->v2_batch1_us;
    }
    free(c.payload);
    free(c.env);
    free(c.note);
    keten_receipt_batch_destroy(&c.rc);
    return e;
}

/* ---- the signal and the requests ------------------------------------------ */

/* Signal JSON text of about size bytes (the summary is the padding). */
static char *make_signal(size_t size)
{
    static const char filler[] = "Adres staat op naam van 9 personen; ramen afgeplakt. ";
    json_t *s = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:s, s:[{s:s, s:s}, "
                          "{s:s, s:s}]}",
        "type", BENCHNET_CATEGORY, "purpose", BENCHNET_PURPOSE, "summary", "", "nature", "soft",
        "grading", "source", "B", "information", "2", "handling", "TLP:AMBER", "observed_at",
        "2026-11-19T10:30:00.000Z", "observed_by", "handhaver", "subjects", "kind", "address",
        "value", "Hoofdstraat 1, 1111 AA Diemen", "kind", "company", "value", "KvK 12345678");
    char *base = s != NULL ? json_dumps(s, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (base == NULL) {
        json_decref(s);
        return NULL;
    }
    size_t pad = size > strlen(base) ? size - strlen(base) : 0;
    free(base);
    if (pad > 4000) {
        pad = 4000; /* the summary's limit is 4096 */
    }
    char *summary = benchnet_xcalloc(pad + 1, 1);
    for (size_t i = 0; i < pad; i++) {
        summary[i] = filler[i % (sizeof filler - 1)];
    }
    char *out = NULL;
    if (json_object_set_new(s, "summary", json_string(summary)) == 0) {
        out = json_dumps(s, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
    free(summary);
    json_decref(s);
    return out;
}

/* The body of POST /v1/messages: {"kind":"signal","to":["r-a","r-b"],
 * "signal":{...}}, to given comma-separated. */
static char *make_request(const char *to, const char *signal)
{
    json_error_t jerr;
    json_t *sig = json_loads(signal, JSON_REJECT_DUPLICATES, &jerr);
    json_t *list = json_array();
    for (const char *p = to; list != NULL && *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (json_array_append_new(list, json_stringn(p, n)) != 0) {
            json_decref(list);
            list = NULL;
            break;
        }
        p += n + (p[n] == ',');
    }
    json_t *r = NULL;
    if (sig != NULL && list != NULL) { /* both stolen, also on failure */
        r = json_pack("{s:s, s:o, s:o}", "kind", "signal", "to", list, "signal", sig);
    } else {
        json_decref(sig);
        json_decref(list);
    }
    char *out = r != NULL ? json_dumps(r, JSON_COMPACT) : NULL;
    json_decref(r);
    return out;
}

/* ---- one phase ------------------------------------------------------------ */

typedef struct phase_result {
    bool open_loop;
    double rate_target;
    double window_s;
    uint64_t sent, replied, acked, done, failed;
    double throughput; /* signals fully receipted per s */
    double acked_per_s;
    double frac_floor, frac_floor_listed;
    double frac_floor_v2, frac_floor_v2_batch1;
    double lat_reply[BX_PCTS], lat_ack[BX_PCTS], lat_rcpt[BX_PCTS];
    double node_acc[BX_PCTS], node_rcpt[BX_PCTS]; /* from the nodes' own times */
    double status_rtt[BX_PCTS]; /* one status lookup, load stopped: request -> answer */
    size_t node_sample;
    double late_max_ms;
    double cpu_broker_s, cpu_senders_s, cpu_receivers_s, cpu_bench_s;
    double cpu_per_signal_us, cpu_busy_pct;
    double wall_s;
    bool complete;
    char load_before[48], load_after[48];
    char first_error[300];
} phase_result;

typedef struct phase_cpu {
    double broker, senders, receivers, bench;
} phase_cpu;

static phase_cpu sample_cpu(const exch *x)
{
    phase_cpu c = { proc_cpu(&x->broker), 0, 0, benchnet_self_cpu_s() };
    for (size_t i = 0; i < x->n_snd; i++) {
        c.senders += proc_cpu(&x->snd[i]);
    }
    for (size_t i = 0; i < x->n_rcv; i++) {
        c.receivers += proc_cpu(&x->rcv[i]);
    }
    return c;
}

static void fill_pcts(uint64_t *v, size_t n, double out[BX_PCTS])
{
    qsort(v, n, sizeof v[0], benchnet_cmp_u64);
    for (int p = 0; p < BX_PCTS; p++) {
        out[p] = benchnet_pct_ms(v, n, pct_values[p]);
    }
}

static void latencies(sender_thr *th, size_t n_th, phase_result *r)
{
    size_t total = 0;
    for (size_t t = 0; t < n_th; t++) {
        total += th[t].n_ents;
    }
    uint64_t *a = benchnet_xcalloc(total, sizeof *a), *b = benchnet_xcalloc(total, sizeof *b),
             *c = benchnet_xcalloc(total, sizeof *c);
    size_t na = 0, nb = 0, nc = 0;
    for (size_t t = 0; t < n_th; t++) {
        for (size_t i = 0; i < th[t].n_ents; i++) {
            const msg_ent *e = &th[t].ents[i];
            if (!e->replied || e->t_sched < th[t].win_start || e->t_sched >= th[t].win_end) {
                continue;
            }
            a[na++] = e->t_reply - e->t_sched;
            if (e->t_ack != 0) {
                b[nb++] = e->t_ack > e->t_sched ? e->t_ack - e->t_sched : 0;
            }
            if (e->done && th[t].need > 0) {
                c[nc++] = e->t_rcpt > e->t_sched ? e->t_rcpt - e->t_sched : 0;
            }
        }
    }
    fill_pcts(a, na, r->lat_reply);
    fill_pcts(b, nb, r->lat_ack);
    fill_pcts(c, nc, r->lat_rcpt);
    free(a);
    free(b);
    free(c);
}

/* GET path on the API of a node (the main thread; the node's pipe is read
 * meanwhile, so that a node writing its log never blocks on it). */
static keten_err api_get(proc *p, const char *path, json_t **out)
{
    *out = NULL;
    char sock[BX_SOCK_MAX], url[128];
    if (snprintf(sock, sizeof sock, "%s/api.sock", p->home) >= (int)sizeof sock
        || snprintf(url, sizeof url, "http://localhost%s", path) >= (int)sizeof url) {
        return keten_err_set(KETEN_ERR_INVALID, "API of %s: path too long", p->name);
    }
    bx_req q = { 0 };
    CURLM *multi = curl_multi_init();
    q.easy = multi != NULL ? api_easy(sock, url, NULL, &q) : NULL;
    keten_err e = KETEN_OK;
    if (q.easy == NULL || curl_multi_add_handle(multi, q.easy) != CURLM_OK) {
        e = keten_err_set(KETEN_ERR_IO, "API of %s: cannot start a request", p->name);
        goto out;
    }
    uint64_t deadline = benchnet_mono_ns() + BX_STATUS_TIMEOUT_MS * BENCHNET_MS;
    for (;;) {
        struct curl_waitfd pipe_wait = { p->pipe_fd, CURL_WAIT_POLLIN, 0 };
        int running = 0;
        CURLMcode mc = curl_multi_poll(
            multi, p->pipe_fd >= 0 ? &pipe_wait : NULL, p->pipe_fd >= 0, 50, NULL);
        if (mc == CURLM_OK) {
            mc = curl_multi_perform(multi, &running);
        }
        proc_pump(p, NULL, NULL);
        if (mc != CURLM_OK) {
            e = keten_err_set(KETEN_ERR_IO, "API of %s: %s", p->name, curl_multi_strerror(mc));
            break;
        }
        int left = 0;
        CURLMsg *m = curl_multi_info_read(multi, &left);
        if (m != NULL && m->msg == CURLMSG_DONE) {
            long status = 0;
            (void)curl_easy_getinfo(q.easy, CURLINFO_RESPONSE_CODE, &status);
            json_error_t jerr;
            if (m->data.result != CURLE_OK) {
                e = keten_err_set(
                    KETEN_ERR_IO, "API of %s: %s", p->name, curl_easy_strerror(m->data.result));
            } else if ((*out = json_loadb(q.buf != NULL ? q.buf : "", q.len, 0, &jerr)) == NULL) {
                e = keten_err_set(KETEN_ERR_JSON, "API of %s: %s", p->name, jerr.text);
            } else if (status != 200) {
                const char *why = json_string_value(json_object_get(*out, "detail"));
                e = keten_err_set(KETEN_ERR_IO, "API of %s: HTTP %ld: %s", p->name, status,
                    why != NULL ? why : "(no answer text)");
                json_decref(*out);
                *out = NULL;
            }
            break;
        }
        if (benchnet_mono_ns() > deadline || benchnet_stop) {
            e = keten_err_set(KETEN_ERR_IO, "API of %s: no answer", p->name);
            break;
        }
    }
out:
    if (multi != NULL && q.easy != NULL) {
        (void)curl_multi_remove_handle(multi, q.easy);
    }
    if (multi != NULL) {
        (void)curl_multi_cleanup(multi);
    }
    if (q.easy != NULL) {
        curl_easy_cleanup(q.easy);
    }
    free(q.buf);
    return e;
}

static bool time_of(const json_t *obj, const char *key, uint64_t *ms)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL && keten_time_parse(s, ms) == KETEN_OK;
}

/* The nodes' own times for a sample of the measured messages. */
static void node_times(exch *x, sender_thr *th, size_t n_th, size_t sample, phase_result *r)
{
    if (sample == 0) {
        return;
    }
    uint64_t *acc = benchnet_xcalloc(sample + n_th, sizeof *acc),
             *rc = benchnet_xcalloc(sample + n_th, sizeof *rc),
             *rtt = benchnet_xcalloc(sample + n_th, sizeof *rtt);
    size_t na = 0, nr = 0, nt = 0, per = (sample + n_th - 1) / n_th;
    for (size_t t = 0; t < n_th && !benchnet_stop; t++) {
        size_t eligible = 0;
        for (size_t i = 0; i < th[t].n_ents; i++) {
            const msg_ent *e = &th[t].ents[i];
            eligible += e->done && e->t_sched >= th[t].win_start && e->t_sched < th[t].win_end;
        }
        size_t step = eligible > per ? eligible / per : 1, seen = 0, taken = 0;
        for (size_t i = 0; i < th[t].n_ents && taken < per && !benchnet_stop; i++) {
            const msg_ent *e = &th[t].ents[i];
            if (!(e->done && e->t_sched >= th[t].win_start && e->t_sched < th[t].win_end)
                || seen++ % step != 0) {
                continue;
            }
            char hex[KETEN_MSG_ID_HEX_BYTES], path[64];
            keten_hex(e->id, KETEN_MSG_ID_BYTES, hex);
            snprintf(path, sizeof path, "/v1/messages/%s", hex);
            json_t *ans = NULL;
            uint64_t t0 = benchnet_mono_ns();
            keten_err err = api_get(&x->snd[t], path, &ans);
            if (err == KETEN_OK) {
                rtt[nt++] = benchnet_mono_ns() - t0;
            }
            const json_t *st = json_object_get(ans, "status");
            uint64_t created = 0, accepted = 0, last = 0;
            if (err == KETEN_OK && time_of(st, "created_at", &created)
                && time_of(st, "accepted_at", &accepted)) {
                acc[na++] = (accepted > created ? accepted - created : 0) * BENCHNET_MS;
                size_t k, got = 0;
                json_t *one;
                json_array_foreach(json_object_get(st, "recipients"), k, one)
                {
                    uint64_t at = 0;
                    if (time_of(one, "receipted_at", &at)) {
                        got++;
                        last = at > last ? at : last;
                    }
                }
                if (got == th[t].need && got > 0) {
                    rc[nr++] = (last > created ? last - created : 0) * BENCHNET_MS;
                }
            } else if (err != KETEN_OK) {
                benchnet_report("status", err);
            }
            json_decref(ans);
            taken++;
        }
    }
    fill_pcts(acc, na, r->node_acc);
    fill_pcts(rc, nr, r->node_rcpt);
    fill_pcts(rtt, nt, r->status_rtt);
    r->node_sample = na;
    free(acc);
    free(rc);
    free(rtt);
}

static keten_err run_phase(const opts *o, exch *x, char *const *requests, size_t n_requests,
    double rate, size_t need, uint64_t max_total, phase_result *r, sender_thr *th)
{
    memset(r, 0, sizeof *r);
    r->open_loop = rate > 0;
    r->rate_target = rate;
    for (int p = 0; p < BX_PCTS; p++) {
        r->node_acc[p] = -1; /* -1: not measured */
        r->node_rcpt[p] = -1;
        r->status_rtt[p] = -1;
    }
    r->window_s = o->duration;
    benchnet_loadavg(r->load_before);
    size_t n = x->n_snd;
    pthread_t tid[BX_PARTIES_MAX];
    bool started[BX_PARTIES_MAX] = { false };
    uint64_t start = benchnet_mono_ns() + 50 * BENCHNET_MS;
    uint64_t win_start = start + (uint64_t)(o->warmup * 1e9);
    uint64_t win_end = win_start + (uint64_t)(o->duration * 1e9);
    if (max_total > 0) { /* --backlog: until all are sent */
        win_start = start;
        win_end = UINT64_MAX / 2;
    }
    pid_t att = rate == 0 && max_total == 0 ? attach_start(o->attach_cmd, x) : 0;
    phase_cpu c0 = sample_cpu(x);
    uint64_t wall0 = benchnet_mono_ns();
    for (size_t t = 0; t < n; t++) {
        sender_thr *s = &th[t];
        memset(s, 0, sizeof *s);
        s->index = t;
        s->node = &x->snd[t];
        s->requests = requests;
        s->n_requests = n_requests;
        s->need = need;
        s->rate = rate / (double)n;
        s->window = o->window;
        s->start = start;
        s->win_start = win_start;
        s->win_end = win_end;
        s->stop_send = win_end;
        s->drain_until = (max_total > 0 ? UINT64_MAX / 2 : win_end) + BX_DRAIN_MS * BENCHNET_MS;
        s->max_msgs = max_total > 0 ? max_total / n + (t < max_total % n) : 0;
        s->cap_ents = 4096;
        s->ents = benchnet_xcalloc(s->cap_ents, sizeof *s->ents);
        table_rebuild(s);
        if (pthread_create(&tid[t], NULL, sender_main, s) != 0) {
            set_error(s, "%s", "cannot start a sender thread");
            benchnet_stop = 1;
            break;
        }
        started[t] = true;
    }
    for (size_t t = 0; t < n; t++) {
        if (started[t]) {
            (void)pthread_join(tid[t], NULL);
        }
    }
    uint64_t wall1 = benchnet_mono_ns();
    phase_cpu c1 = sample_cpu(x);
    benchnet_attach_stop(att);
    benchnet_loadavg(r->load_after);
    r->complete = true;
    for (size_t t = 0; t < n; t++) {
        r->sent += th[t].sent;
        r->replied += th[t].replied;
        r->acked += th[t].acked;
        r->done += th[t].done;
        r->failed += th[t].failed;
        r->throughput += (double)th[t].done_in_window;
        r->acked_per_s += (double)th[t].acked_in_window;
        double late = (double)th[t].late_max_ns / 1e6;
        r->late_max_ms = late > r->late_max_ms ? late : r->late_max_ms;
        r->complete = r->complete && th[t].complete;
        if (r->first_error[0] == '\0' && th[t].first_error[0] != '\0') {
            snprintf(
                r->first_error, sizeof r->first_error, "%s: %s", x->snd[t].name, th[t].first_error);
        }
    }
    r->throughput /= o->duration;
    r->acked_per_s /= o->duration;
    latencies(th, n, r);
    r->wall_s = (double)(wall1 - wall0) / 1e9;
    r->cpu_broker_s = c1.broker - c0.broker;
    r->cpu_senders_s = c1.senders - c0.senders;
    r->cpu_receivers_s = c1.receivers - c0.receivers;
    r->cpu_bench_s = c1.bench - c0.bench;
    double daemons = r->cpu_broker_s + r->cpu_senders_s + r->cpu_receivers_s;
    r->cpu_per_signal_us = r->done > 0 ? daemons * 1e6 / (double)r->done : 0;
    r->cpu_busy_pct
        = 100.0 * (daemons + r->cpu_bench_s) / (r->wall_s * (double)benchnet_cpu_count());
    if (rate > 0 && need > 0 && !benchnet_stop) {
        node_times(x, th, n, o->status_sample, r);
    }
    return KETEN_OK;
}

/* ---- output --------------------------------------------------------------- */

#define M(field) offsetof(phase_result, field)
static const benchnet_metric phase_metrics[] = {
    { "receipted signals/s", "1/s", M(throughput), 0 },
    { "acknowledged signals/s", "1/s", M(acked_per_s), 0 },
    { "fraction of pk floor", "", M(frac_floor), 3 },
    { "  (of listed pk work)", "", M(frac_floor_listed), 3 },
    { "fraction of pk floor v2", "", M(frac_floor_v2), 3 },
    { "  (v2, one signal per batch)", "", M(frac_floor_v2_batch1), 3 },
    { "send->API answer p50", "ms", M(lat_reply[0]), 1 },
    { "send->API answer p99", "ms", M(lat_reply[1]), 1 },
    { "send->ack p50", "ms", M(lat_ack[0]), 1 },
    { "send->ack p99", "ms", M(lat_ack[1]), 1 },
    { "send->ack p99.9", "ms", M(lat_ack[2]), 1 },
    { "send->all receipts p50", "ms", M(lat_rcpt[0]), 1 },
    { "send->all receipts p99", "ms", M(lat_rcpt[1]), 1 },
    { "send->all receipts p99.9", "ms", M(lat_rcpt[2]), 1 },
    { "node: created->accepted p50", "ms", M(node_acc[0]), 0 },
    { "node: created->accepted p99", "ms", M(node_acc[1]), 0 },
    { "node: created->receipted p50", "ms", M(node_rcpt[0]), 0 },
    { "node: created->receipted p99", "ms", M(node_rcpt[1]), 0 },
    { "status API round trip p50", "ms", M(status_rtt[0]), 1 },
    { "status API round trip p99", "ms", M(status_rtt[1]), 1 },
    { "generator late (max)", "ms", M(late_max_ms), 1 },
    { "CPU broker", "s", M(cpu_broker_s), 2 },
    { "CPU sending nodes", "s", M(cpu_senders_s), 2 },
    { "CPU receiving nodes", "s", M(cpu_receivers_s), 2 },
    { "CPU this program", "s", M(cpu_bench_s), 2 },
    { "daemon CPU per signal", "us", M(cpu_per_signal_us), 0 },
    { "CPU busy (all cores)", "%", M(cpu_busy_pct), 0 },
    { "phase wall time", "s", M(wall_s), 1 },
};
#undef M

#define F(field) offsetof(floor_result, field)
static const benchnet_metric floor_metrics[] = {
    { "seal (R recipients) + sign", "us", F(seal_us), 1 },
    { "envelope verify (broker)", "us", F(env_verify_us), 1 },
    { "open (recipient)", "us", F(open_us), 1 },
    { "receipt sign (recipient)", "us", F(rc_sign_us), 1 },
    { "receipt verify", "us", F(rc_verify_us), 1 },
    { "ack sign (broker)", "us", F(ack_sign_us), 1 },
    { "ack verify (sender)", "us", F(ack_verify_us), 1 },
    { "per signal, listed work", "us", F(listed_us), 1 },
    { "per signal, all pk work", "us", F(all_us), 1 },
    { "floor, listed work", "1/s", F(listed_per_s), 0 },
    { "floor, all pk work", "1/s", F(all_per_s), 0 },
    { "checkpoint sign (broker)", "us", F(cp_sign_us), 1 },
    { "checkpoint verify (node)", "us", F(cp_verify_us), 1 },
    { "receipt head sign (recipient)", "us", F(head_sign_us), 1 },
    { "receipt head verify", "us", F(head_verify_us), 1 },
    { "per signal, v2", "us", F(v2_us), 1 },
    { "per signal, v2 batches of 1", "us", F(v2_batch1_us), 1 },
    { "floor v2", "1/s", F(v2_per_s), 0 },
    { "floor v2, batches of 1", "1/s", F(v2_batch1_per_s), 0 },
};
#undef F

static void print_stats(const char *title, const void *base, size_t stride, size_t n,
    const benchnet_metric *ms, size_t n_ms)
{
    benchnet_print_stats(title, base, stride, n, ms, n_ms, BX_NAME_WIDTH);
}

static json_t *pcts_json(const double v[BX_PCTS])
{
    json_t *o = json_object();
    for (int p = 0; p < BX_PCTS; p++) {
        json_object_set_new(o, pct_names[p], json_real(v[p]));
    }
    return o;
}

static json_t *phase_json(const phase_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "mode", json_string(r->open_loop ? "open-loop" : "max"));
    json_object_set_new(o, "rate_target", json_real(r->rate_target));
    json_object_set_new(o, "window_s", json_real(r->window_s));
    json_object_set_new(o, "sent", json_integer((json_int_t)r->sent));
    json_object_set_new(o, "answered", json_integer((json_int_t)r->replied));
    json_object_set_new(o, "acknowledged", json_integer((json_int_t)r->acked));
    json_object_set_new(o, "receipted", json_integer((json_int_t)r->done));
    json_object_set_new(o, "failed", json_integer((json_int_t)r->failed));
    json_object_set_new(o, "complete", json_boolean(r->complete));
    json_object_set_new(o, "receipted_per_s", json_real(r->throughput));
    json_object_set_new(o, "acknowledged_per_s", json_real(r->acked_per_s));
    json_object_set_new(o, "fraction_of_floor", json_real(r->frac_floor));
    json_object_set_new(o, "fraction_of_listed_floor", json_real(r->frac_floor_listed));
    json_object_set_new(o, "fraction_of_floor_v2", json_real(r->frac_floor_v2));
    json_object_set_new(o, "fraction_of_floor_v2_batch1", json_real(r->frac_floor_v2_batch1));
    json_object_set_new(o, "send_to_answer_ms", pcts_json(r->lat_reply));
    json_object_set_new(o, "send_to_ack_ms", pcts_json(r->lat_ack));
    json_object_set_new(o, "send_to_all_receipts_ms", pcts_json(r->lat_rcpt));
    json_object_set_new(o, "node_created_to_accepted_ms", pcts_json(r->node_acc));
    json_object_set_new(o, "node_created_to_receipted_ms", pcts_json(r->node_rcpt));
    json_object_set_new(o, "node_sample", json_integer((json_int_t)r->node_sample));
    json_object_set_new(o, "status_round_trip_ms", pcts_json(r->status_rtt));
    json_object_set_new(o, "generator_late_max_ms", json_real(r->late_max_ms));
    json_object_set_new(o, "cpu_s",
        json_pack("{s:f, s:f, s:f, s:f}", "broker", r->cpu_broker_s, "senders", r->cpu_senders_s,
            "receivers", r->cpu_receivers_s, "this_program", r->cpu_bench_s));
    json_object_set_new(o, "daemon_cpu_per_signal_us", json_real(r->cpu_per_signal_us));
    json_object_set_new(o, "cpu_busy_pct", json_real(r->cpu_busy_pct));
    json_object_set_new(o, "wall_s", json_real(r->wall_s));
    json_object_set_new(o, "loadavg_before", json_string(r->load_before));
    json_object_set_new(o, "loadavg_after", json_string(r->load_after));
    if (r->first_error[0] != '\0') {
        json_object_set_new(o, "first_error", json_string(r->first_error));
    }
    return o;
}

static json_t *floor_json(const floor_result *f)
{
    json_t *o = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "seal_us",
        f->seal_us, "envelope_verify_us", f->env_verify_us, "open_us", f->open_us,
        "receipt_sign_us", f->rc_sign_us, "receipt_verify_us", f->rc_verify_us, "ack_sign_us",
        f->ack_sign_us, "ack_verify_us", f->ack_verify_us, "per_signal_listed_us", f->listed_us,
        "per_signal_all_us", f->all_us, "floor_listed_per_s", f->listed_per_s, "floor_all_per_s",
        f->all_per_s);
    json_t *v2 = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "checkpoint_sign_us",
        f->cp_sign_us, "checkpoint_verify_us", f->cp_verify_us, "receipt_head_sign_us",
        f->head_sign_us, "receipt_head_verify_us", f->head_verify_us, "per_signal_v2_us", f->v2_us,
        "per_signal_v2_batch1_us", f->v2_batch1_us, "floor_v2_per_s", f->v2_per_s,
        "floor_v2_batch1_per_s", f->v2_batch1_per_s);
    if (o != NULL && v2 != NULL) {
        json_object_update(o, v2);
    }
    json_decref(v2);
    return o;
}

static void print_phase(unsigned k, const char *what, const phase_result *r)
{
    printf("run %u %s: %.0f receipted signals/s (%.3f of the pk floor, %.3f of the v2 floor), "
           "%.0f acked/s, all receipts p50 %.1f ms p99 %.1f ms; CPU busy %.0f%%; load %s -> %s%s\n",
        k + 1, what, r->throughput, r->frac_floor, r->frac_floor_v2, r->acked_per_s, r->lat_rcpt[0],
        r->lat_rcpt[1], r->cpu_busy_pct, r->load_before, r->load_after,
        r->complete ? "" : " INCOMPLETE");
    if (r->first_error[0] != '\0' || r->failed > 0) {
        printf("  failed %llu; first error: %s\n", (unsigned long long)r->failed, r->first_error);
    }
    fflush(stdout);
}

/* ---- --backlog ---------------------------------------------------------- */

typedef struct backlog_row {
    uint64_t queued;
    double elapsed_s;
    benchnet_proc_stat ps;
    uint64_t store_kb;
} backlog_row;

static uint64_t store_kb(const exch *x)
{
    char path[PATH_MAX + 32];
    struct stat st;
    snprintf(path, sizeof path, "%s/store/data.mdb", x->broker.home);
    return stat(path, &st) == 0 ? (uint64_t)st.st_blocks / 2 : 0;
}

static void print_backlog_row(const backlog_row *b)
{
    printf("  %10llu %9.1f %10.1f %10.1f %10.1f %10.1f %10.1f\n", (unsigned long long)b->queued,
        b->elapsed_s, (double)b->ps.rss_kb / 1024, (double)b->ps.anon_kb / 1024,
        (double)b->ps.file_kb / 1024, (double)b->ps.hwm_kb / 1024, (double)b->store_kb / 1024);
    fflush(stdout);
}

static json_t *backlog_json(const backlog_row *b)
{
    return json_pack("{s:I, s:f, s:I, s:I, s:I, s:I, s:I}", "queued", (json_int_t)b->queued,
        "elapsed_s", b->elapsed_s, "vm_rss_kib", (json_int_t)b->ps.rss_kb, "rss_anon_kib",
        (json_int_t)b->ps.anon_kb, "rss_file_kib", (json_int_t)b->ps.file_kb, "vm_hwm_kib",
        (json_int_t)b->ps.hwm_kb, "store_kib", (json_int_t)b->store_kb);
}

typedef struct backlog_job {
    const opts *o;
    exch *x;
    char *const *requests;
    phase_result *r;
    sender_thr *th;
    keten_err e;
} backlog_job;

static void *backlog_main(void *arg)
{
    backlog_job *j = arg;
    j->e = run_phase(j->o, j->x, j->requests, 1, 0, 0, j->o->backlog, j->r, j->th);
    return NULL;
}

static keten_err run_backlog(const opts *o, const net *nt, json_t *root)
{
    exch x;
    memset(&x, 0, sizeof x);
    char *req = make_signal(o->size);
    char *request = req != NULL ? make_request(nt->offline->id, req) : NULL;
    free(req);
    if (request == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "the request");
    }
    char *requests[1] = { request };
    sender_thr th[BX_PARTIES_MAX];
    memset(th, 0, sizeof th);
    phase_result r;
    memset(&r, 0, sizeof r);
    json_t *rows = json_array();
    char load0[48];
    keten_err e = exch_start(&x, o, nt, 0);
    if (e != KETEN_OK) {
        goto out;
    }
    benchnet_loadavg(load0);
    printf("\nbacklog: %llu signals of %zu bytes to %s, which never connects; %zu senders "
           "(window %u each), %zu idle receivers; load %s\n",
        (unsigned long long)o->backlog, o->size, nt->offline->id, x.n_snd, o->window, x.n_rcv,
        load0);
    printf("  %10s %9s %10s %10s %10s %10s %10s\n", "queued", "elapsed", "VmRSS MiB", "RssAnon",
        "RssFile", "VmHWM", "store MiB");
    backlog_row row = { .queued = 0, .elapsed_s = 0, .store_kb = store_kb(&x) };
    (void)benchnet_proc_read(x.broker.pid, &row.ps);
    print_backlog_row(&row);
    json_array_append_new(rows, backlog_json(&row));
    atomic_store(&g_acked, 0);
    backlog_job job = { o, &x, requests, &r, th, KETEN_OK };
    pthread_t tid;
    uint64_t t0 = benchnet_mono_ns();
    if (pthread_create(&tid, NULL, backlog_main, &job) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot start the backlog thread");
        goto out;
    }
    uint64_t step = o->backlog / 4 > 0 ? o->backlog / 4 : 1, next = step;
    while (next <= o->backlog && !benchnet_stop) {
        uint64_t acked = atomic_load(&g_acked);
        if (acked >= next) {
            row.queued = acked;
            row.elapsed_s = (double)(benchnet_mono_ns() - t0) / 1e9;
            (void)benchnet_proc_read(x.broker.pid, &row.ps);
            row.store_kb = store_kb(&x);
            print_backlog_row(&row);
            json_array_append_new(rows, backlog_json(&row));
            next += step;
            continue;
        }
        if (x.broker.pid <= 0 || kill(x.broker.pid, 0) != 0) {
            break;
        }
        benchnet_sleep_ns(50 * BENCHNET_MS);
        if (benchnet_mono_ns() - t0 > 3600 * BENCHNET_NS) {
            benchnet_stop = 1; /* an hour: give up */
        }
    }
    (void)pthread_join(tid, NULL);
    e = job.e;
    benchnet_sleep_ns(2000 * BENCHNET_MS);
    row.queued = atomic_load(&g_acked);
    row.elapsed_s = (double)(benchnet_mono_ns() - t0) / 1e9;
    (void)benchnet_proc_read(x.broker.pid, &row.ps);
    row.store_kb = store_kb(&x);
    printf("  after 2 s idle:\n");
    print_backlog_row(&row);
    json_array_append_new(rows, backlog_json(&row));
    benchnet_loadavg(r.load_after);
    printf("  %llu acknowledged in %.1f s (%.0f/s); load after %s%s%s\n",
        (unsigned long long)r.acked, r.wall_s, r.wall_s > 0 ? (double)r.acked / r.wall_s : 0,
        r.load_after, r.first_error[0] != '\0' ? "; first error: " : "", r.first_error);
    if (e == KETEN_OK && r.acked < o->backlog) {
        e = keten_err_set(KETEN_ERR_IO, "only %llu of %llu signals were acknowledged",
            (unsigned long long)r.acked, (unsigned long long)o->backlog);
    }
out:
    if (exch_stop(&x) > 0 && e == KETEN_OK) {
        e = keten_err_set(KETEN_ERR_IO, "a daemon did not stop cleanly");
    }
    for (size_t t = 0; t < BX_PARTIES_MAX; t++) {
        sender_free(&th[t]);
    }
    json_object_set_new(root, "backlog",
        json_pack("{s:I, s:o, s:s, s:s}", "signals", (json_int_t)o->backlog, "rows", rows,
            "loadavg_before", r.load_before, "loadavg_after", r.load_after));
    free(request);
    return e;
}

/* ---- main ----------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || s[0] == '-' || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static int parse_opts(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        { "broker", required_argument, NULL, 'b' },
        { "node", required_argument, NULL, 'n' },
        { "senders", required_argument, NULL, 'N' },
        { "receivers", required_argument, NULL, 'M' },
        { "recipients", required_argument, NULL, 'R' },
        { "size", required_argument, NULL, 's' },
        { "rate", required_argument, NULL, 'r' },
        { "duration", required_argument, NULL, 'd' },
        { "warmup", required_argument, NULL, 'u' },
        { "runs", required_argument, NULL, 'k' },
        { "window", required_argument, NULL, 'w' },
        { "status-sample", required_argument, NULL, 'q' },
        { "backlog", required_argument, NULL, 'B' },
        { "store-dir", required_argument, NULL, 'S' },
        { "attach", required_argument, NULL, 'A' },
        { "json", required_argument, NULL, 'j' },
        { "keep", no_argument, NULL, 'K' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    uint64_t v = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
            o->broker_path = optarg;
            break;
        case 'n':
            o->node_path = optarg;
            break;
        case 'N':
            if (!parse_u64(optarg, 1, BX_PARTIES_MAX, &v)) {
                return benchnet_usage_error("--senders: 1 to 16");
            }
            o->senders = (size_t)v;
            break;
        case 'M':
            if (!parse_u64(optarg, 1, BX_PARTIES_MAX, &v)) {
                return benchnet_usage_error("--receivers: 1 to 16");
            }
            o->receivers = (size_t)v;
            break;
        case 'R':
            if (!parse_u64(optarg, 1, BX_PARTIES_MAX, &v)) {
                return benchnet_usage_error("--recipients: 1 to 16");
            }
            o->recipients = (size_t)v;
            break;
        case 's':
            if (!parse_u64(optarg, 300, 4300, &v)) {
                return benchnet_usage_error(
                    "--size: 300 to 4300 bytes (the summary holds the padding)");
            }
            o->size = (size_t)v;
            break;
        case 'r':
            if (strcmp(optarg, "max") == 0) {
                o->rate = 0;
                o->rate_half = false;
            } else if (strcmp(optarg, "half") == 0) {
                o->rate = 0;
                o->rate_half = true;
            } else if (parse_u64(optarg, 1, 1000000, &v)) {
                o->rate = (double)v;
                o->rate_half = false;
            } else {
                return benchnet_usage_error("--rate: max, half or signals per second");
            }
            break;
        case 'd':
            if (!benchnet_parse_seconds(optarg, 0.5, 3600, &o->duration)) {
                return benchnet_usage_error("--duration: 0.5 to 3600 seconds");
            }
            break;
        case 'u':
            if (!benchnet_parse_seconds(optarg, 0, 600, &o->warmup)) {
                return benchnet_usage_error("--warmup: 0 to 600 seconds");
            }
            break;
        case 'k':
            if (!parse_u64(optarg, 1, BX_RUNS_MAX, &v)) {
                return benchnet_usage_error("--runs: 1 to 50");
            }
            o->runs = (unsigned)v;
            break;
        case 'w':
            if (!parse_u64(optarg, 1, 4096, &v)) {
                return benchnet_usage_error("--window: 1 to 4096");
            }
            o->window = (unsigned)v;
            break;
        case 'q':
            if (!parse_u64(optarg, 0, 1000000, &v)) {
                return benchnet_usage_error("--status-sample: 0 to 1000000");
            }
            o->status_sample = (size_t)v;
            break;
        case 'B':
            if (!parse_u64(optarg, 1, 100000000, &o->backlog)) {
                return benchnet_usage_error("--backlog: 1 to 100000000 signals");
            }
            break;
        case 'S':
            o->store_dir = optarg;
            break;
        case 'A':
            o->attach_cmd = optarg;
            break;
        case 'j':
            o->json_path = optarg;
            break;
        case 'K':
            o->keep = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return -1;
        case ':':
            return benchnet_usage_error("an option is missing its value");
        default:
            return benchnet_usage_error("unknown option");
        }
    }
    if (optind < argc) {
        return benchnet_usage_error("unexpected argument");
    }
    if (o->recipients > o->receivers) {
        return benchnet_usage_error("--recipients must not exceed --receivers");
    }
    return 0;
}

static json_t *config_json(const opts *o, size_t signal_bytes)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:s, s:f, s:f, s:I, s:I, s:I, s:I}", "signal_json_bytes",
        (json_int_t)signal_bytes, "senders", (json_int_t)o->senders, "receivers",
        (json_int_t)o->receivers, "recipients", (json_int_t)o->recipients, "rate",
        o->rate_half      ? "half"
            : o->rate > 0 ? "fixed"
                          : "max",
        "duration_s", o->duration, "warmup_s", o->warmup, "runs", (json_int_t)o->runs, "window",
        (json_int_t)o->window, "cpus", (json_int_t)benchnet_cpu_count(), "backlog",
        (json_int_t)o->backlog);
}

/* The requests, one per recipient set: signal i of sender s goes to the R
 * receivers starting at (s + i) mod M, so each receives the same share. */
static char **make_requests(const opts *o, const net *nt, const char *signal, size_t *n_out)
{
    char **reqs = benchnet_xcalloc(nt->n_rcv, sizeof *reqs);
    for (size_t b = 0; b < nt->n_rcv; b++) {
        char to[BX_PARTIES_MAX * (KETEN_NAME_MAX + 2)];
        size_t len = 0;
        for (size_t j = 0; j < o->recipients; j++) {
            len += (size_t)snprintf(to + len, sizeof to - len, "%s%s", j == 0 ? "" : ",",
                nt->rcv[(b + j) % nt->n_rcv]->id);
        }
        reqs[b] = make_request(to, signal);
        if (reqs[b] == NULL) {
            fprintf(stderr, BX_PROG ": out of memory\n");
            exit(1);
        }
    }
    *n_out = nt->n_rcv;
    return reqs;
}

int main(int argc, char **argv)
{
    benchnet_set_prog(BX_PROG);
    if (keten_init() != KETEN_OK || curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK) {
        return 1;
    }
    opts o = {
        .size = 1000,
        .senders = 4,
        .receivers = 4,
        .recipients = 2,
        .rate_half = true,
        .duration = 10,
        .warmup = 1,
        .runs = 3,
        .window = 16,
        .status_sample = 1000,
    };
    int pr = parse_opts(argc, argv, &o);
    if (pr != 0) {
        return pr < 0 ? 0 : pr;
    }
    char bpath[PATH_MAX], npath[PATH_MAX];
    o.broker_path
        = benchnet_find_prog(o.broker_path, "KETEN_BROKER", "broker", "keten-broker", false, bpath);
    o.node_path
        = benchnet_find_prog(o.node_path, "KETEN_NODE", "client", "keten-node", false, npath);
    if (access(o.broker_path, X_OK) != 0 || access(o.node_path, X_OK) != 0) {
        fprintf(stderr, BX_PROG ": cannot run %s or %s; give --broker PATH and --node PATH\n",
            o.broker_path, o.node_path);
        return 1;
    }
    if (o.backlog > 0) {
        o.recipients = 1;
    }
    make_child_env();
    benchnet_install_signals(on_signal);
    net nt;
    memset(&nt, 0, sizeof nt);
    if (!benchnet_make_root(&nt.bn, o.store_dir, "keten-bx")) {
        return 1;
    }
    int rc = 0;
    json_t *root = json_object();
    char *signal = make_signal(o.size);
    char **requests = NULL;
    size_t n_requests = 0;
    phase_result *res = benchnet_xcalloc(2 * (size_t)o.runs, sizeof *res);
    floor_result *floors = benchnet_xcalloc(o.runs, sizeof *floors);
    sender_thr *th = benchnet_xcalloc(BX_PARTIES_MAX, sizeof *th);
    size_t n_max = 0, n_fixed = 0, n_floor = 0;
    printf(BX_PROG ": broker %s, node %s, %ld online cores, stores in %s\n", o.broker_path,
        o.node_path, benchnet_cpu_count(), nt.bn.root);
    keten_err e = signal == NULL ? keten_err_set(KETEN_ERR_NOMEM, "signal") : net_make(&nt, &o);
    if (e != KETEN_OK) {
        benchnet_report("making the network", e);
        rc = 1;
        goto out;
    }
    json_object_set_new(root, "config", config_json(&o, strlen(signal)));
    if (o.backlog > 0) {
        e = run_backlog(&o, &nt, root);
        if (e != KETEN_OK) {
            benchnet_report("backlog", e);
            rc = 1;
        }
        goto out;
    }
    requests = make_requests(&o, &nt, signal, &n_requests);
    printf("signal JSON %zu bytes, %zu recipient%s each, %zu senders -> %zu receivers, "
           "window %u, %.1f s (+%.1f s warm-up) per phase\n",
        strlen(signal), o.recipients, o.recipients == 1 ? "" : "s", o.senders, o.receivers,
        o.window, o.duration, o.warmup);
    json_t *runs = json_array();
    json_object_set_new(root, "runs", runs);
    for (unsigned k = 0; k < o.runs && rc == 0 && !benchnet_stop; k++) {
        exch x;
        memset(&x, 0, sizeof x);
        json_t *jr = json_object();
        json_array_append_new(runs, jr);
        e = exch_start(&x, &o, &nt, k);
        floor_result *fl = &floors[n_floor];
        if (e == KETEN_OK) {
            char l0[48], l1[48];
            benchnet_loadavg(l0);
            e = measure_floor(&nt, signal, o.recipients, fl);
            benchnet_loadavg(l1);
            if (e == KETEN_OK) {
                n_floor++;
                printf("run %u floor: %.0f us of public-key work per signal -> %.0f signals/s on "
                       "%ld cores (listed work only: %.0f us -> %.0f/s); protocol v2: %.0f us -> "
                       "%.0f/s (%.0f us -> %.0f/s with one signal per batch); load %s -> %s\n",
                    k + 1, fl->all_us, fl->all_per_s, benchnet_cpu_count(), fl->listed_us,
                    fl->listed_per_s, fl->v2_us, fl->v2_per_s, fl->v2_batch1_us,
                    fl->v2_batch1_per_s, l0, l1);
                json_object_set_new(jr, "floor", floor_json(fl));
            }
        }
        for (int step = 0; step < (o.rate_half ? 2 : 1) && e == KETEN_OK && !benchnet_stop;
             step++) {
            double rate = o.rate;
            if (step == 1) {
                rate = res[n_max - 1].throughput / 2;
                if (rate < 1) {
                    rate = 1;
                }
            }
            phase_result *r = rate > 0 ? &res[o.runs + n_fixed] : &res[n_max];
            e = run_phase(&o, &x, requests, n_requests, rate, o.recipients, 0, r, th);
            if (e != KETEN_OK) {
                break;
            }
            r->frac_floor = r->throughput / fl->all_per_s;
            r->frac_floor_listed = r->throughput / fl->listed_per_s;
            r->frac_floor_v2 = r->throughput / fl->v2_per_s;
            r->frac_floor_v2_batch1 = r->throughput / fl->v2_batch1_per_s;
            print_phase(k, rate > 0 ? "open loop" : "max", r);
            json_object_set_new(jr, rate > 0 ? "open_loop" : "max", phase_json(r));
            if (!r->complete || r->failed > 0) {
                rc = 1;
            }
            if (rate > 0) {
                n_fixed++;
            } else {
                n_max++;
            }
            for (size_t t = 0; t < BX_PARTIES_MAX; t++) {
                sender_free(&th[t]);
            }
        }
        if (e != KETEN_OK) {
            benchnet_report("run", e);
            rc = 1;
        }
        for (size_t i = 0; i < x.n_snd; i++) {
            if (x.snd[i].warnings > 0) {
                printf("  %s logged %llu warnings; first: %s\n", x.snd[i].name,
                    (unsigned long long)x.snd[i].warnings, x.snd[i].first_warning);
            }
        }
        if (exch_stop(&x) > 0) {
            rc = 1;
        }
    }
    printf("\n" BX_PROG ": %zu B signal JSON, %zu recipients, %zu senders -> %zu receivers, "
           "ipc://, %.1f s per phase, %ld cores\n",
        strlen(signal), o.recipients, o.senders, o.receivers, o.duration, benchnet_cpu_count());
    json_t *sum = json_object();
    if (n_floor > 0) {
        print_stats("public-key floor (CPU time per call, this process)", floors, sizeof *floors,
            n_floor, floor_metrics, sizeof floor_metrics / sizeof floor_metrics[0]);
        json_object_set_new(sum, "floor",
            benchnet_stats_json(floors, sizeof *floors, n_floor, floor_metrics,
                sizeof floor_metrics / sizeof floor_metrics[0]));
    }
    if (n_max > 0) {
        print_stats("as fast as possible (closed loop)", res, sizeof *res, n_max, phase_metrics,
            sizeof phase_metrics / sizeof phase_metrics[0]);
        json_object_set_new(sum, "max",
            benchnet_stats_json(res, sizeof *res, n_max, phase_metrics,
                sizeof phase_metrics / sizeof phase_metrics[0]));
    }
    if (n_fixed > 0) {
        print_stats(o.rate_half ? "at half the maximum rate (open loop)" : "at the given rate",
            res + o.runs, sizeof *res, n_fixed, phase_metrics,
            sizeof phase_metrics / sizeof phase_metrics[0]);
        json_object_set_new(sum, o.rate_half ? "half" : "fixed",
            benchnet_stats_json(res + o.runs, sizeof *res, n_fixed, phase_metrics,
                sizeof phase_metrics / sizeof phase_metrics[0]));
    }
    json_object_set_new(root, "summary", sum);
out:
    benchnet_write_json(o.json_path, root);
    json_decref(root);
    if (requests != NULL) {
        for (size_t i = 0; i < n_requests; i++) {
            free(requests[i]);
        }
        free(requests);
    }
    free(signal);
    free(th);
    free(floors);
    free(res);
    net_free(&nt);
    if (o.keep) {
        printf("kept %s\n", nt.bn.root);
    } else {
        if (!benchnet_rm_tree(nt.bn.root)) {
            fprintf(stderr, BX_PROG ": could not remove all of %s\n", nt.bn.root);
        }
    }
    free(g_child_env);
    curl_global_cleanup();
    return benchnet_stop ? 130 : rc;
}
